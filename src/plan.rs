//! Which chunks a run touches and what it does to each. Pure: built from what the SPI
//! layer read (chunk ranges, status bits, staging row counts) and tested without Postgres.

use crate::config::StrategyChoice;
use crate::timescale::{status, Chunk};

/// A chunk with the number of staging rows that belong in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The chunk's number in the routing of staging rows (1-based).
    pub idx: i32,
    pub chunk: Chunk,
    pub staging_rows: i64,
    /// For a compressed chunk under `auto`: what the strategy is chosen from.
    pub estimate: Option<Estimate>,
}

/// How a chunk's rows go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Strategy {
    /// The chunk is not compressed: an ordinary insert.
    Insert,
    /// Insert into the compressed chunk (TimescaleDB decompresses only the batches a
    /// conflict check needs), then compress again what became partial.
    Direct,
    /// Decompress the whole chunk, insert, compress it.
    Decompress,
    /// For upserts: read the touched segments' rows (decompressing in memory), merge
    /// the staging rows into them, replace the segments' batches, compress. Writes
    /// each row once instead of decompressing, then updating it.
    Merge,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Insert => "insert",
            Strategy::Direct => "direct",
            Strategy::Decompress => "decompress",
            Strategy::Merge => "merge",
        }
    }
}

/// What the plan knows of a compressed chunk to choose a strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Rows in the chunk.
    pub chunk_rows: i64,
    /// Staging rows whose segment (segmentby values) already has batches in the chunk:
    /// each may make a conflict check decompress a batch.
    pub rows_meeting_batches: i64,
    /// Whether a conflict makes TimescaleDB decompress the batch it meets: with a
    /// unique index and UPDATE or RESTRICT. (DO NOTHING checks compressed batches in
    /// place and decompresses nothing.)
    pub conflicts_decompress: bool,
    /// `timescaledb.max_tuples_decompressed_per_dml_transaction` (0: no limit).
    pub decompress_limit: i64,
    /// Whether the chunk's segments can be merged (see `Strategy::Merge`).
    pub merge_possible: bool,
}

/// Rows in a full compressed batch.
pub const BATCH_ROWS: i64 = 1000;

/// Rows a direct insert would decompress, at most: a batch per staging row that meets
/// existing batches, never more than the chunk.
pub fn direct_decompression(e: &Estimate) -> i64 {
    if !e.conflicts_decompress {
        return 0;
    }
    e.rows_meeting_batches.saturating_mul(BATCH_ROWS).min(e.chunk_rows)
}

/// How many staging rows meeting existing batches settle the choice for decompressing:
/// counting beyond this changes nothing, so the estimate query stops there.
pub fn meeting_rows_that_decide(chunk_rows: i64, decompress_limit: i64) -> i64 {
    let by_size = chunk_rows / (2 * BATCH_ROWS);
    let by_limit = if decompress_limit > 0 { decompress_limit / BATCH_ROWS } else { i64::MAX };
    by_size.min(by_limit) + 1
}

/// Chooses how a chunk's rows go in. A direct insert wins when it would decompress at
/// most half the chunk and stay within TimescaleDB's decompression limit; otherwise
/// the chunk is decompressed whole. (A direct insert that hits the limit anyway falls
/// back to decompressing; see `run`.)
pub fn choose_strategy(choice: StrategyChoice, compressed: bool, e: Option<&Estimate>) -> Strategy {
    if !compressed {
        return Strategy::Insert;
    }
    match choice {
        StrategyChoice::Direct => Strategy::Direct,
        StrategyChoice::Decompress => Strategy::Decompress,
        StrategyChoice::Auto => match e {
            None => Strategy::Decompress,
            Some(e) => {
                let d = direct_decompression(e);
                let within_limit = e.decompress_limit <= 0 || d <= e.decompress_limit;
                if within_limit && d.saturating_mul(2) <= e.chunk_rows {
                    Strategy::Direct
                } else if e.merge_possible {
                    Strategy::Merge
                } else {
                    Strategy::Decompress
                }
            }
        },
    }
}

/// The strategy choice a destination allows. TimescaleDB's insert into a compressed
/// chunk meets conflicts in compressed batches by their bytes, and an upsert's update
/// only against the conflict target: where a unique index compares text by a
/// nondeterministic collation ('a' = 'A'), treats NULLs as equal, or a second unique
/// index could be violated, it would let a second row with an equal key in. Such a destination's
/// compressed
/// chunks are decompressed first.
pub fn allowed_choice(choice: StrategyChoice, direct_meets_conflicts: bool) -> StrategyChoice {
    if direct_meets_conflicts {
        choice
    } else {
        StrategyChoice::Decompress
    }
}

/// What one transaction of the run does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub idx: i32,
    pub chunk: Chunk,
    pub staging_rows: i64,
    pub strategy: Strategy,
    /// Rows a direct insert is expected to decompress (0 when unknown or none).
    pub decompression: i64,
}

/// The whole run: one step per chunk that receives rows, in time order, then the rows
/// that belong in no existing chunk (ordinary inserts that create new chunks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub rows_for_new_chunks: i64,
    /// Whether the staging rows were routed to their chunks in one scan (the steps
    /// then take them by chunk number instead of filtering staging again).
    pub routed: bool,
    /// The staging rows' first and last time (text of the time column's type), on a
    /// hypertable: the range the run changes.
    pub span: Option<(String, String)>,
}

/// Builds the plan. `total_rows` is the staging row count; what the chunk steps do not
/// cover goes to new chunks. A chunk that receives no rows is never touched.
pub fn plan(candidates: Vec<Candidate>, total_rows: i64, choice: StrategyChoice) -> Plan {
    let mut steps: Vec<Step> = candidates
        .into_iter()
        .filter(|c| c.staging_rows > 0)
        .map(|c| {
            let compressed = status::is_compressed(c.chunk.status);
            let strategy = choose_strategy(choice, compressed, c.estimate.as_ref());
            let decompression = c.estimate.as_ref().map(direct_decompression).unwrap_or(0);
            Step {
                idx: c.idx,
                strategy,
                staging_rows: c.staging_rows,
                chunk: c.chunk,
                decompression,
            }
        })
        .collect();
    steps.sort_by_key(|s| range_key(&s.chunk));
    let covered: i64 = steps.iter().map(|s| s.staging_rows).sum();
    Plan { steps, rows_for_new_chunks: (total_rows - covered).max(0), routed: false, span: None }
}

/// Above this many row visits (staging rows times chunks that receive rows), a run
/// routes the staging rows to their chunks once, into a temporary table of row ids,
/// instead of each step filtering the staging table by its chunk's range. Below it the
/// scans are cheaper than the table (about 40 bytes of disk a staging row).
pub const ROUTE_ABOVE_ROW_VISITS: i64 = 20_000_000;

/// Whether to route: see `ROUTE_ABOVE_ROW_VISITS`.
pub fn should_route(chunks_with_rows: usize, staging_rows: i64) -> bool {
    chunks_with_rows > 1
        && (chunks_with_rows as i64).saturating_mul(staging_rows) > ROUTE_ABOVE_ROW_VISITS
}

/// Limits of one transaction that inserts directly into several compressed chunks.
pub const BATCH_MAX_ROWS: i64 = 100_000;
pub const BATCH_MAX_CHUNKS: usize = 64;

/// Whether a plan whose rows were routed (see `ROUTE_ABOVE_ROW_VISITS`) may still run
/// its `transactions` in `workers` background workers. A worker cannot read the run's
/// temporary table of row ids, so each of its transactions filters staging by its
/// chunks' ranges again: one scan of `staging_rows` a transaction, spread over the
/// workers. They may while those scans stay under the routing threshold per worker.
pub fn workers_may_filter(transactions: usize, staging_rows: i64, workers: usize) -> bool {
    (transactions as i64).saturating_mul(staging_rows)
        <= ROUTE_ABOVE_ROW_VISITS.saturating_mul(workers as i64)
}

/// Groups the plan's steps into transactions. Consecutive direct inserts share one
/// transaction (one statement moves their rows) while it stays small: at most
/// `BATCH_MAX_ROWS` staging rows, `BATCH_MAX_CHUNKS` chunks, and half of
/// TimescaleDB's decompression limit. Every other step is a transaction of its own.
pub fn batches(steps: &[Step], decompress_limit: i64) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = vec![];
    let (mut rows, mut decomp) = (0i64, 0i64);
    for (i, s) in steps.iter().enumerate() {
        let joinable = s.strategy == Strategy::Direct
            && out.last().is_some_and(|b| {
                let last = &steps[*b.last().unwrap()];
                last.strategy == Strategy::Direct
                    && b.len() < BATCH_MAX_CHUNKS
                    && rows + s.staging_rows <= BATCH_MAX_ROWS
                    && (decompress_limit <= 0
                        || (decomp + s.decompression).saturating_mul(2) <= decompress_limit)
            });
        if joinable {
            out.last_mut().unwrap().push(i);
            rows += s.staging_rows;
            decomp += s.decompression;
        } else {
            out.push(vec![i]);
            rows = s.staging_rows;
            decomp = s.decompression;
        }
    }
    out
}

/// Cuts the rest (rows outside every chunk, or all rows for a destination that is not
/// a hypertable) into slices of staging's blocks of at most `max_rows` rows each (a
/// block with more is a slice of its own), one transaction each. `blocks` holds
/// `(block, rows)` in block order; a slice is `[from, to)`. The slices are contiguous,
/// the first open below and the last above, so a row staged meanwhile into any block
/// is still in one of them. No rows: no slice.
pub fn rest_slices(blocks: &[(i64, i64)], max_rows: i64) -> Vec<(Option<i64>, Option<i64>)> {
    let mut starts: Vec<i64> = vec![];
    let mut rows = 0i64;
    for &(block, n) in blocks {
        if starts.is_empty() || rows + n > max_rows {
            starts.push(block);
            rows = 0;
        }
        rows += n;
    }
    (0..starts.len()).map(|i| ((i > 0).then(|| starts[i]), starts.get(i + 1).copied())).collect()
}

/// Orders chunks by their place in time; the view's text forms sort correctly only
/// within one type, which is all one hypertable has. Integers are compared as numbers.
fn range_key(c: &Chunk) -> (Option<i128>, Option<String>, String) {
    let num = c.lo.as_deref().and_then(|s| s.parse::<i128>().ok());
    (num, c.lo.clone(), c.name.name.clone())
}

#[cfg(test)]
mod rest_tests {
    use super::{rest_slices, workers_may_filter};

    #[test]
    fn workers_filter_a_routed_plans_staging_only_while_that_stays_cheap() {
        // 7 transactions of a 3.6M-row staging table: 25.2M row visits, under 2 x 20M
        assert!(workers_may_filter(7, 3_600_000, 2));
        assert!(!workers_may_filter(7, 3_600_000, 1));
        // 100 transactions of 50M rows: the run keeps its routing and its session
        assert!(!workers_may_filter(100, 50_000_000, 4));
        assert!(workers_may_filter(0, i64::MAX, 2));
    }

    #[test]
    fn the_rest_is_cut_into_contiguous_slices_of_staging_blocks() {
        assert!(rest_slices(&[], 10).is_empty(), "no rows, no transaction");
        // everything fits: one slice, open at both ends (the statement of one transaction)
        assert_eq!(rest_slices(&[(0, 4), (1, 4), (7, 2)], 10), [(None, None)]);
        // 4 + 4 fit, 2 more would pass 9
        assert_eq!(
            rest_slices(&[(0, 4), (1, 4), (7, 2), (8, 9)], 9),
            [(None, Some(7)), (Some(7), Some(8)), (Some(8), None)]
        );
        // a block with more rows than the limit is a slice of its own
        assert_eq!(rest_slices(&[(3, 50), (4, 1)], 10), [(None, Some(4)), (Some(4), None)]);
        // every block is in exactly one slice
        let blocks: Vec<(i64, i64)> = (0..100).map(|b| (b * 2, 1 + b % 7)).collect();
        let slices = rest_slices(&blocks, 25);
        for &(b, _) in &blocks {
            let n = slices
                .iter()
                .filter(|(f, t)| f.is_none_or(|f| b >= f) && t.is_none_or(|t| b < t))
                .count();
            assert_eq!(n, 1, "block {b}");
        }
        // and none holds more than the limit (no block here passes it alone)
        for (f, t) in &slices {
            let rows: i64 = blocks
                .iter()
                .filter(|(b, _)| f.is_none_or(|f| *b >= f) && t.is_none_or(|t| *b < t))
                .map(|x| x.1)
                .sum();
            assert!(rows <= 25, "{f:?}..{t:?}: {rows}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::QualifiedName;

    fn chunk(name: &str, lo: &str, status: i32) -> Chunk {
        Chunk {
            name: QualifiedName::new("_timescaledb_internal", name),
            oid: 0,
            lo: Some(lo.into()),
            hi: None,
            space: vec![],
            status,
        }
    }

    #[test]
    fn plan_touches_only_chunks_with_rows_in_time_order() {
        let p = plan(
            vec![
                Candidate {
                    idx: 0,
                    chunk: chunk("c3", "2024-01-03", 1),
                    staging_rows: 5,
                    estimate: None,
                },
                Candidate {
                    idx: 0,
                    chunk: chunk("c1", "2024-01-01", 1),
                    staging_rows: 0,
                    estimate: None,
                },
                Candidate {
                    idx: 0,
                    chunk: chunk("c2", "2024-01-02", 0),
                    staging_rows: 7,
                    estimate: None,
                },
                Candidate {
                    idx: 0,
                    chunk: chunk("c4", "2024-01-04", 9),
                    staging_rows: 1,
                    estimate: None,
                },
            ],
            20,
            StrategyChoice::Auto,
        );
        let names: Vec<_> = p.steps.iter().map(|s| s.chunk.name.name.as_str()).collect();
        assert_eq!(names, ["c2", "c3", "c4"]);
        assert_eq!(p.steps[0].strategy, Strategy::Insert);
        // without an estimate a compressed chunk is decompressed; a partial one too
        assert_eq!(p.steps[1].strategy, Strategy::Decompress);
        assert_eq!(p.steps[2].strategy, Strategy::Decompress);
        assert_eq!(p.rows_for_new_chunks, 7);
    }

    #[test]
    fn integer_ranges_sort_numerically() {
        let p = plan(
            vec![
                Candidate { idx: 0, chunk: chunk("b", "1000", 0), staging_rows: 1, estimate: None },
                Candidate { idx: 0, chunk: chunk("a", "-50", 0), staging_rows: 1, estimate: None },
                Candidate { idx: 0, chunk: chunk("c", "200", 0), staging_rows: 1, estimate: None },
            ],
            3,
            StrategyChoice::Auto,
        );
        let names: Vec<_> = p.steps.iter().map(|s| s.chunk.name.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "b"]);
        assert_eq!(p.rows_for_new_chunks, 0);
    }

    fn step(strategy: Strategy, rows: i64, decompression: i64) -> Step {
        Step {
            idx: 0,
            chunk: chunk("c", "2024-01-01", 1),
            staging_rows: rows,
            strategy,
            decompression,
        }
    }

    #[test]
    fn direct_steps_share_transactions_within_limits() {
        use Strategy::*;
        let steps = vec![
            step(Direct, 100, 0),
            step(Direct, 100, 0),
            step(Decompress, 100, 0),
            step(Direct, 60_000, 0),
            step(Direct, 50_000, 0),
            step(Direct, 10, 40_000),
            step(Direct, 10, 20_000),
            step(Insert, 10, 0),
            step(Direct, 10, 0),
        ];
        assert_eq!(
            batches(&steps, 100_000),
            vec![vec![0, 1], vec![2], vec![3], vec![4, 5], vec![6], vec![7], vec![8]]
        );
        // without a decompression limit only rows and chunk counts bound a batch
        assert_eq!(
            batches(&steps, 0),
            vec![vec![0, 1], vec![2], vec![3], vec![4, 5, 6], vec![7], vec![8]]
        );
        let many: Vec<Step> = (0..130).map(|_| step(Direct, 1, 0)).collect();
        let b = batches(&many, 100_000);
        assert_eq!(b.iter().map(|x| x.len()).collect::<Vec<_>>(), [64, 64, 2]);
        assert!(batches(&[], 0).is_empty());
    }

    #[test]
    fn empty_plan() {
        let p = plan(vec![], 0, StrategyChoice::Auto);
        assert!(p.steps.is_empty());
        assert_eq!(p.rows_for_new_chunks, 0);
    }

    fn est(chunk_rows: i64, meeting: i64, conflicts: bool, limit: i64) -> Estimate {
        Estimate {
            chunk_rows,
            rows_meeting_batches: meeting,
            conflicts_decompress: conflicts,
            decompress_limit: limit,
            merge_possible: false,
        }
    }

    #[test]
    fn sparse_rows_go_in_directly() {
        // a new device: no existing batch to decompress
        let e = est(72_000, 0, true, 100_000);
        assert_eq!(direct_decompression(&e), 0);
        assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Direct);
        // not where a unique index compares by a nondeterministic collation
        assert_eq!(
            choose_strategy(allowed_choice(StrategyChoice::Auto, false), true, Some(&e)),
            Strategy::Decompress
        );
        assert_eq!(allowed_choice(StrategyChoice::Direct, false), StrategyChoice::Decompress);
        assert_eq!(allowed_choice(StrategyChoice::Direct, true), StrategyChoice::Direct);
        // a few duplicates: some batches
        let e = est(72_000, 30, true, 100_000);
        assert_eq!(direct_decompression(&e), 30_000);
        assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Direct);
        // no unique index, or DO NOTHING: nothing is ever decompressed
        let e = est(72_000, 72_000, false, 100_000);
        assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Direct);
    }

    #[test]
    fn the_estimate_stops_counting_once_the_choice_is_made() {
        assert_eq!(meeting_rows_that_decide(72_000, 100_000), 37);
        assert_eq!(meeting_rows_that_decide(10_000_000, 100_000), 101);
        assert_eq!(meeting_rows_that_decide(10_000_000, 0), 5001);
        // one more than the cap flips the choice; the cap itself does not
        for (rows, limit) in [(72_000, 100_000), (10_000_000, 100_000), (10_000_000, 0)] {
            let k = meeting_rows_that_decide(rows, limit);
            assert_eq!(
                choose_strategy(StrategyChoice::Auto, true, Some(&est(rows, k, true, limit))),
                Strategy::Decompress
            );
            assert_eq!(
                choose_strategy(StrategyChoice::Auto, true, Some(&est(rows, k - 1, true, limit))),
                Strategy::Direct
            );
        }
    }

    #[test]
    fn dense_rows_decompress_the_chunk() {
        let e = est(72_000, 72_000, true, 100_000);
        assert_eq!(direct_decompression(&e), 72_000);
        assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Decompress);
        // over half the chunk
        let e = est(72_000, 37, true, 0);
        assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Decompress);
    }

    #[test]
    fn dense_upserts_merge_where_they_can() {
        let mut e = est(72_000, 72_000, true, 100_000);
        e.merge_possible = true;
        assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Merge);
        // sparse work still goes direct; a forced choice is kept
        let mut sparse = est(72_000, 0, true, 100_000);
        sparse.merge_possible = true;
        assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&sparse)), Strategy::Direct);
        assert_eq!(
            choose_strategy(StrategyChoice::Decompress, true, Some(&e)),
            Strategy::Decompress
        );
        assert_eq!(Strategy::Merge.as_str(), "merge");
    }

    #[test]
    fn the_decompression_limit_forces_decompress() {
        let e = est(1_000_000, 200, true, 100_000);
        assert_eq!(direct_decompression(&e), 200_000);
        assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Decompress);
        let e = est(1_000_000, 200, true, 0);
        assert_eq!(
            choose_strategy(StrategyChoice::Auto, true, Some(&e)),
            Strategy::Direct,
            "no limit"
        );
    }

    #[test]
    fn forced_and_uncompressed_strategies() {
        let e = est(72_000, 0, true, 100_000);
        assert_eq!(
            choose_strategy(StrategyChoice::Decompress, true, Some(&e)),
            Strategy::Decompress
        );
        assert_eq!(choose_strategy(StrategyChoice::Direct, true, None), Strategy::Direct);
        assert_eq!(choose_strategy(StrategyChoice::Direct, false, None), Strategy::Insert);
        assert_eq!(choose_strategy(StrategyChoice::Auto, false, Some(&e)), Strategy::Insert);
        assert_eq!(StrategyChoice::parse(" AUTO "), Some(StrategyChoice::Auto));
        assert_eq!(StrategyChoice::parse("decompress"), Some(StrategyChoice::Decompress));
        assert_eq!(StrategyChoice::parse("fast"), None);
        assert_eq!(Strategy::Direct.as_str(), "direct");
    }

    #[test]
    fn routing_only_when_scans_would_cost_more() {
        assert!(!should_route(1, 50_000_000), "one chunk: one scan either way");
        assert!(!should_route(5, 360_000), "a few chunks: scanning staging per step is cheaper");
        assert!(!should_route(32, 374_000));
        assert!(should_route(30, 2_160_000));
        assert!(should_route(1000, 100_000));
        assert!(!should_route(0, i64::MAX) && should_route(3, i64::MAX), "no overflow");
    }
}
