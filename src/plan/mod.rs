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
    /// each may make a conflict check decompress a batch. None where they were not
    /// counted (nothing depends on them).
    pub rows_meeting_batches: Option<i64>,
    /// Whether a conflict makes TimescaleDB decompress the batch it meets: with a
    /// unique index and UPDATE or RESTRICT. (DO NOTHING checks compressed batches in
    /// place and decompresses nothing.)
    pub conflicts_decompress: bool,
    /// Whether a staging row that meets batches makes TimescaleDB read them (each
    /// decompressed in memory) to check its key: with a unique index, under every
    /// action, `NOTHING` included.
    pub checks_batches: bool,
    /// The staging rows the chunk takes.
    pub staging_rows: i64,
    /// `timescaledb.max_tuples_decompressed_per_dml_transaction` (0: no limit).
    pub decompress_limit: i64,
    /// Whether the chunk's segments can be merged (see `Strategy::Merge`).
    pub merge_possible: bool,
}

/// Rows in a full compressed batch.
pub const BATCH_ROWS: i64 = 1000;

/// The fewest staging rows a step writes as compressed batches itself (TimescaleDB's
/// direct compression): one batch's worth. Fewer rows make batches too small to keep;
/// they go in as rows, and the chunk is compressed again.
pub const COMPRESS_DIRECTLY_FROM_ROWS: i64 = BATCH_ROWS;

/// The fewest staging rows a direct step writes into its chunk in bulk, as new segments
/// or new keys (`strategy::new_segments`), in a transaction of its own. That way has a
/// fixed cost (a temporary table, the chunk's indexes rebuilt, under `NOTHING` a join
/// that reads the whole chunk, and a transaction): fewer rows go in with the batch of
/// direct inserts the step joins, which costs less. Measured on a chunk of 72,000 rows
/// (PostgreSQL 15, TimescaleDB 2.28; see `docs/strategies.md`): the bulk way loses at
/// 1,500 rows and wins from 2,000 for an outage's hours and 3,000-4,000 for new devices.
pub const NEW_SEGMENTS_FROM_ROWS: i64 = 2 * BATCH_ROWS;
const _: () = assert!(NEW_SEGMENTS_FROM_ROWS >= COMPRESS_DIRECTLY_FROM_ROWS);

/// The staging rows grouped by the chunk their time falls in (numbered from 1 in the
/// chunks' order; 0 before the first, `None` for rows without a time), with whether
/// every row of the group is inside its chunk's range.
pub struct ChunkGroup {
    pub idx: Option<i32>,
    pub rows: i64,
    pub inside: bool,
}

/// Whether the whole staging table may go in one transaction as compressed batches
/// (`strategy::whole`), from its rows grouped by chunk and the chunks' statuses (in
/// chunk order): every row inside an existing chunk, each chunk that receives rows
/// compressed and not frozen, and each receiving at least a batch's worth
/// (`COMPRESS_DIRECTLY_FROM_ROWS`, the rule a direct step follows). Returns each
/// chunk's rows, in chunk order.
pub fn whole_staging(groups: &[ChunkGroup], statuses: &[i32]) -> Option<Vec<i64>> {
    let mut rows = vec![0i64; statuses.len()];
    for g in groups {
        let i = usize::try_from(g.idx? - 1).ok().filter(|i| *i < statuses.len())?;
        let fits = g.inside
            && status::is_compressed(statuses[i])
            && !status::is_frozen(statuses[i])
            && g.rows >= COMPRESS_DIRECTLY_FROM_ROWS;
        if !fits {
            return None;
        }
        rows[i] += g.rows;
    }
    rows.iter().any(|n| *n > 0).then_some(rows)
}

/// Rows a direct insert would decompress, at most: a batch per staging row that meets
/// existing batches, never more than the chunk.
pub fn direct_decompression(e: &Estimate) -> i64 {
    if !e.conflicts_decompress {
        return 0;
    }
    e.rows_meeting_batches.unwrap_or(0).saturating_mul(BATCH_ROWS).min(e.chunk_rows)
}

/// What reading a row costs a direct insert's key check (a batch decompressed in memory
/// for each staging row that meets its segment), against what writing a row costs a
/// merge (decompressed, written to the heap and its index, compressed again): measured
/// on the benchmark's outage replay, about 12 ns against 2 µs a row.
pub const ROWS_READ_PER_ROW_WRITTEN: i64 = 100;

/// Under `NOTHING` with a unique key (nothing decompressed to disk), whether merging
/// the chunk costs less than the reads of a direct insert's checks: a batch (at most
/// the chunk) for each staging row meeting its segment, against the chunk's and the
/// staging rows written once.
pub fn reads_outweigh_a_merge(e: &Estimate) -> bool {
    let reads = e.rows_meeting_batches.unwrap_or(0).saturating_mul(BATCH_ROWS.min(e.chunk_rows));
    let writes = e.chunk_rows.saturating_add(e.staging_rows);
    e.checks_batches
        && !e.conflicts_decompress
        && reads > ROWS_READ_PER_ROW_WRITTEN.saturating_mul(writes)
}

/// The staging rows meeting batches that settle `reads_outweigh_a_merge`: counting
/// beyond this changes nothing.
pub fn meeting_rows_that_outweigh(chunk_rows: i64, staging_rows: i64) -> i64 {
    let writes = chunk_rows.saturating_add(staging_rows);
    ROWS_READ_PER_ROW_WRITTEN.saturating_mul(writes) / BATCH_ROWS.min(chunk_rows).max(1) + 1
}

/// The staging rows a sampled count looks at for a `NOTHING` merge's choice (where a
/// wrong guess costs time, never a row): the first of the chunk's rows, not all.
pub const MEETING_SAMPLE_ROWS: i64 = 1000;

/// The staging rows meeting existing batches, from a count of `meeting` among `looked_at`
/// rows (None: an exact count) of the chunk's `staging_rows`, rounded up.
pub fn scaled_meeting(meeting: i64, looked_at: Option<i64>, staging_rows: i64) -> i64 {
    match looked_at {
        Some(n) if n > 0 && n < staging_rows => {
            let scaled = (meeting as i128 * staging_rows as i128 + n as i128 - 1) / n as i128;
            scaled.min(staging_rows as i128) as i64
        }
        _ => meeting,
    }
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
/// the chunk is merged where it can be, else decompressed whole. (A direct insert that
/// hits the limit anyway falls back to decompressing; see `run`.) Under `NOTHING`,
/// which decompresses nothing to disk, a chunk that can be merged is merged where a
/// direct insert's checks would read more than a merge writes
/// (`reads_outweigh_a_merge`).
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
                    if e.merge_possible && reads_outweigh_a_merge(e) {
                        Strategy::Merge
                    } else {
                        Strategy::Direct
                    }
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
    /// Staging rows the plan found meeting the chunk's batches (None: not counted;
    /// from a sample under `NOTHING` where the rows were routed).
    #[serde(default)]
    pub rows_meeting: Option<i64>,
}

/// How a step takes its rows, as far as the plan can tell (`backfill_plan` says it; the
/// run looks again under the chunk's lock, so rows staged after the plan may change it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Insert,
    /// TimescaleDB's insert into the compressed chunk, then what became partial compressed.
    Direct,
    /// TimescaleDB's direct compression writes the rows as new compressed batches.
    CompressedBatches,
    /// Rows of segments the chunk lacks, written into it in bulk (`strategy::new_segments`).
    NewSegmentsInBulk,
    /// Under `NOTHING`: the rows whose key the chunk lacks, written into it in bulk.
    NewKeysInBulk,
    Merge,
    Decompress,
}

/// What a destination lets a direct step do besides TimescaleDB's insert
/// (`step::Prepared`'s `compress_order` and `new_segments`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectWays {
    /// Rows go in as compressed batches (no unique or exclusion index).
    pub compressed_batches: bool,
    /// Rows of new segments (and, under `NOTHING`, of new keys) go in bulk.
    pub in_bulk: bool,
    /// The action is `NOTHING`.
    pub nothing: bool,
}

/// The way step `s` takes its rows: a direct step of `COMPRESS_DIRECTLY_FROM_ROWS` rows
/// or more as compressed batches where the destination allows it; one of
/// `NEW_SEGMENTS_FROM_ROWS` or more into a fully compressed chunk in bulk where it
/// allows that, under `NOTHING` whatever segments the rows have (the conflicts are left
/// out), else only where the plan found no row meeting the chunk's segments.
pub fn way(s: &Step, ways: DirectWays) -> Way {
    match s.strategy {
        Strategy::Insert => Way::Insert,
        Strategy::Merge => Way::Merge,
        Strategy::Decompress => Way::Decompress,
        Strategy::Direct => {
            let in_bulk = ways.in_bulk
                && s.staging_rows >= NEW_SEGMENTS_FROM_ROWS
                && status::is_fully_compressed(s.chunk.status);
            if in_bulk && s.rows_meeting == Some(0) {
                Way::NewSegmentsInBulk
            } else if in_bulk && ways.nothing {
                Way::NewKeysInBulk
            } else if ways.compressed_batches && s.staging_rows >= COMPRESS_DIRECTLY_FROM_ROWS {
                Way::CompressedBatches
            } else {
                Way::Direct
            }
        }
    }
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
            let rows_meeting = c.estimate.as_ref().and_then(|e| e.rows_meeting_batches);
            Step {
                idx: c.idx,
                strategy,
                staging_rows: c.staging_rows,
                chunk: c.chunk,
                decompression,
                rows_meeting,
            }
        })
        .collect();
    steps.sort_by_key(|s| range_key(&s.chunk));
    let covered: i64 = steps.iter().map(|s| s.staging_rows).sum();
    Plan { steps, rows_for_new_chunks: (total_rows - covered).max(0), routed: false, span: None }
}

/// Above this many row visits (staging rows times the chunks their span meets), a run
/// routes the staging rows to their chunks once, into a temporary table of row ids,
/// instead of each step filtering the staging table by its chunk's range. Below it the
/// scans are cheaper than the table (6 bytes of disk a staging row, and a task's share
/// handed to its worker): measured on the outage replay (540,000 rows, 30 chunks: 16.2
/// million visits), routing took 2.32–2.38 s against 2.37–2.51 s.
pub const ROUTE_ABOVE_ROW_VISITS: i64 = 10_000_000;

/// Whether to route: see `ROUTE_ABOVE_ROW_VISITS`.
/// `chunks`: the chunks the staging rows' span meets (an upper bound of the chunks
/// with rows, known before any scan of staging).
pub fn should_route(chunks: usize, staging_rows: i64) -> bool {
    chunks > 1 && (chunks as i64).saturating_mul(staging_rows) > ROUTE_ABOVE_ROW_VISITS
}

/// The work, in rows written, from which a plan is worth more than one session: a
/// background worker takes about 45 ms to start and prepare (measured on the
/// benchmark's sparse additions), the time a direct insert takes for about 6,000 rows,
/// so two workers, each starting while it takes half of the work, save time only from
/// twice that.
pub const ROWS_WORTH_WORKERS: i64 = 12_000;

/// What reading a row costs a direct insert's key check against what inserting a row
/// directly costs (about 12 ns against 7 µs with its share of compressing again, the
/// sparse additions' 4,320 rows into 29 chunks).
pub const ROWS_READ_PER_ROW_INSERTED: i64 = 500;

/// Whether the plan's steps are work enough for background workers (see
/// `ROWS_WORTH_WORKERS`): any step that rewrites or decompresses a chunk is; so are
/// ordinary and direct inserts whose rows, with their key checks' reads
/// (`ROWS_READ_PER_ROW_INSERTED`), add up to it.
pub fn worth_workers(steps: &[Step]) -> bool {
    let mut work = 0i64;
    for s in steps {
        if !matches!(s.strategy, Strategy::Insert | Strategy::Direct) {
            return true;
        }
        work = work
            .saturating_add(s.staging_rows)
            .saturating_add(s.decompression / ROWS_READ_PER_ROW_INSERTED);
    }
    work >= ROWS_WORTH_WORKERS
}

/// Limits of one transaction that inserts directly into several compressed chunks.
pub const BATCH_MAX_ROWS: i64 = 100_000;
pub const BATCH_MAX_CHUNKS: usize = 64;

/// Groups the plan's steps into transactions. Consecutive direct inserts share one
/// transaction (one statement moves their rows) while it stays small: at most
/// `BATCH_MAX_ROWS` staging rows, `BATCH_MAX_CHUNKS` chunks, and half of
/// TimescaleDB's decompression limit. Every other step is a transaction of its own, and
/// so is a direct step of `alone_from` rows or more (one a chunk's own way may take:
/// `strategy::new_segments`).
pub fn batches(steps: &[Step], decompress_limit: i64, alone_from: i64) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = vec![];
    let (mut rows, mut decomp) = (0i64, 0i64);
    let batched = |s: &Step| s.strategy == Strategy::Direct && s.staging_rows < alone_from;
    for (i, s) in steps.iter().enumerate() {
        let joinable = batched(s)
            && out.last().is_some_and(|b| {
                let last = &steps[*b.last().unwrap()];
                batched(last)
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
mod tests;
