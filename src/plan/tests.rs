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
    let c = chunk("c", "2024-01-01", 1);
    Step { idx: 0, chunk: c, staging_rows: rows, strategy, decompression, rows_meeting: None }
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
        batches(&steps, 100_000, i64::MAX),
        vec![vec![0, 1], vec![2], vec![3], vec![4, 5], vec![6], vec![7], vec![8]]
    );
    // without a decompression limit only rows and chunk counts bound a batch
    assert_eq!(
        batches(&steps, 0, i64::MAX),
        vec![vec![0, 1], vec![2], vec![3], vec![4, 5, 6], vec![7], vec![8]]
    );
    let many: Vec<Step> = (0..130).map(|_| step(Direct, 1, 0)).collect();
    let b = batches(&many, 100_000, i64::MAX);
    assert_eq!(b.iter().map(|x| x.len()).collect::<Vec<_>>(), [64, 64, 2]);
    assert!(batches(&[], 0, i64::MAX).is_empty());
    // direct steps of 1,000 rows or more alone (they may write new segments in bulk)
    assert_eq!(
        batches(&steps, 0, 1000),
        vec![vec![0, 1], vec![2], vec![3], vec![4], vec![5, 6], vec![7], vec![8]]
    );
}

#[test]
fn direct_steps_below_the_bulk_way_join_the_batch() {
    use Strategy::*;
    let n = NEW_SEGMENTS_FROM_ROWS;
    let steps =
        vec![step(Direct, 100, 0), step(Direct, n - 1, 0), step(Direct, n, 0), step(Direct, 1, 0)];
    assert_eq!(batches(&steps, 0, n), vec![vec![0, 1], vec![2], vec![3]]);
}

#[test]
fn the_plan_names_the_way_a_direct_step_takes_its_rows() {
    let n = NEW_SEGMENTS_FROM_ROWS;
    let with = |rows: i64, status: i32, meeting: Option<i64>| Step {
        chunk: chunk("c", "2024-01-01", status),
        rows_meeting: meeting,
        ..step(Strategy::Direct, rows, 0)
    };
    let batches = DirectWays { compressed_batches: true, ..Default::default() };
    let update = DirectWays { in_bulk: true, ..Default::default() };
    let nothing = DirectWays { in_bulk: true, nothing: true, ..Default::default() };
    let cases = [
        // no key: compressed batches from a batch's worth
        (with(COMPRESS_DIRECTLY_FROM_ROWS, 1, None), batches, Way::CompressedBatches),
        (with(COMPRESS_DIRECTLY_FROM_ROWS - 1, 1, None), batches, Way::Direct),
        // a key holding the segment: in bulk from NEW_SEGMENTS_FROM_ROWS rows
        (with(n, 1, Some(0)), update, Way::NewSegmentsInBulk),
        (with(n - 1, 1, Some(0)), update, Way::Direct),
        (with(n, 1, Some(3)), update, Way::Direct),
        (with(n, 1, None), update, Way::Direct),
        (with(n, 1, None), nothing, Way::NewKeysInBulk),
        (with(n, 1, Some(3)), nothing, Way::NewKeysInBulk),
        (with(n, 1, Some(0)), nothing, Way::NewSegmentsInBulk),
        // a partial or unordered chunk is not written in bulk
        (with(n, 1 | 8, Some(0)), update, Way::Direct),
        (with(n, 1 | 2, None), nothing, Way::Direct),
        (with(n, 1, Some(0)), DirectWays::default(), Way::Direct),
    ];
    for (i, (s, ways, expected)) in cases.into_iter().enumerate() {
        assert_eq!(way(&s, ways), expected, "case {i}");
    }
    use Strategy::{Decompress, Insert, Merge};
    for (strategy, expected) in [(Insert, Way::Insert), (Merge, Way::Merge)] {
        assert_eq!(way(&step(strategy, n, 0), nothing), expected);
    }
    assert_eq!(way(&step(Decompress, n, 0), nothing), Way::Decompress);
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
        rows_meeting_batches: Some(meeting),
        conflicts_decompress: conflicts,
        checks_batches: conflicts,
        staging_rows: 0,
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
    assert_eq!(choose_strategy(StrategyChoice::Decompress, true, Some(&e)), Strategy::Decompress);
    assert_eq!(Strategy::Merge.as_str(), "merge");
}

#[test]
fn rows_whose_checks_would_read_more_than_a_merge_writes_merge_under_nothing() {
    // an outage replay: 18,000 rows, each meeting its device's batches, into 54,000
    let mut e = est(54_000, 18_000, false, 100_000);
    e.checks_batches = true;
    e.staging_rows = 18_000;
    assert_eq!(direct_decompression(&e), 0, "NOTHING decompresses nothing to disk");
    assert!(reads_outweigh_a_merge(&e));
    assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Direct);
    e.merge_possible = true;
    assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Merge);
    // the count that settles it: 100 x 72,000 rows written / 1,000 read a row
    let k = meeting_rows_that_outweigh(54_000, 18_000);
    assert_eq!(k, 7_201);
    e.rows_meeting_batches = Some(k);
    assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Merge);
    e.rows_meeting_batches = Some(k - 1);
    assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Direct);
    // a few duplicates in a small chunk: a batch is at most the chunk
    let mut small = est(1_440, 30, false, 100_000);
    (small.checks_batches, small.merge_possible, small.staging_rows) = (true, true, 30);
    assert!(!reads_outweigh_a_merge(&small));
    assert_eq!(meeting_rows_that_outweigh(1_440, 30), 148, "100 x 1,470 / 1,000 + 1");
    // no key: no check, no read; a forced choice is kept
    e.rows_meeting_batches = Some(18_000);
    e.checks_batches = false;
    assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Direct);
    e.checks_batches = true;
    assert_eq!(choose_strategy(StrategyChoice::Direct, true, Some(&e)), Strategy::Direct);
    assert_eq!(meeting_rows_that_outweigh(0, 0), 1, "an empty chunk");
}

#[test]
fn a_sampled_count_is_scaled_to_the_chunks_rows() {
    assert_eq!(scaled_meeting(7, None, 100_000), 7, "an exact count");
    assert_eq!(scaled_meeting(1000, Some(1000), 18_000), 18_000, "every row meets");
    assert_eq!(scaled_meeting(0, Some(1000), 72_000), 0, "none meets");
    assert_eq!(scaled_meeting(2, Some(1000), 18_000), 36, "2 in 1,000");
    assert_eq!(scaled_meeting(1, Some(1000), 1001), 2, "rounded up");
    assert_eq!(scaled_meeting(3, Some(500), 500), 3, "the sample was every row");
    assert_eq!(scaled_meeting(0, Some(0), 0), 0);
    assert_eq!(scaled_meeting(1000, Some(1000), i64::MAX), i64::MAX, "no overflow");
}

#[test]
fn the_decompression_limit_forces_decompress() {
    let e = est(1_000_000, 200, true, 100_000);
    assert_eq!(direct_decompression(&e), 200_000);
    assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Decompress);
    let e = est(1_000_000, 200, true, 0);
    assert_eq!(choose_strategy(StrategyChoice::Auto, true, Some(&e)), Strategy::Direct, "no limit");
}

#[test]
fn forced_and_uncompressed_strategies() {
    let e = est(72_000, 0, true, 100_000);
    assert_eq!(choose_strategy(StrategyChoice::Decompress, true, Some(&e)), Strategy::Decompress);
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
    assert!(!should_route(32, 300_000));
    assert!(should_route(30, 540_000), "an outage replay: 16.2 million row visits");
    assert!(should_route(30, 2_160_000));
    assert!(should_route(1000, 100_000));
    assert!(!should_route(0, i64::MAX) && should_route(3, i64::MAX), "no overflow");
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

fn group(idx: Option<i32>, rows: i64, inside: bool) -> ChunkGroup {
    ChunkGroup { idx, rows, inside }
}

#[test]
fn the_whole_staging_table_goes_at_once_only_where_every_row_fits_a_compressed_chunk() {
    use crate::timescale::status::{COMPRESSED, FROZEN, PARTIAL, UNORDERED};
    let statuses = [COMPRESSED, COMPRESSED | UNORDERED, COMPRESSED | PARTIAL, COMPRESSED];
    let fit = [group(Some(1), 1000, true), group(Some(3), 72_000, true)];
    assert_eq!(whole_staging(&fit, &statuses), Some(vec![1000, 0, 72_000, 0]));
    let cases: [(&str, Vec<ChunkGroup>, [i32; 4]); 7] = [
        ("rows before the first chunk", vec![group(Some(0), 5000, false)], statuses),
        ("rows without a time", vec![group(None, 5000, false)], statuses),
        ("rows past a chunk's end (a gap)", vec![group(Some(2), 5000, false)], statuses),
        ("a chunk number past the last", vec![group(Some(5), 5000, true)], statuses),
        ("fewer rows than a batch", vec![group(Some(1), 999, true)], statuses),
        ("an uncompressed chunk", vec![group(Some(4), 5000, true)], [1, 1, 1, 0]),
        ("a frozen chunk", vec![group(Some(1), 5000, true)], [COMPRESSED | FROZEN, 1, 1, 1]),
    ];
    for (why, groups, statuses) in cases {
        let mut all = vec![group(Some(3), 72_000, true)];
        all.extend(groups);
        assert_eq!(whole_staging(&all, &statuses), None, "{why}");
    }
    assert_eq!(whole_staging(&[], &statuses), None, "an empty staging table");
}

#[test]
fn workers_start_only_for_work_that_outweighs_their_start() {
    // the benchmark's sparse additions: 29 chunks of 144 rows, one of 1,144 with 1,000
    // key checks reading a batch each
    let mut sparse: Vec<Step> = (0..29).map(|_| step(Strategy::Direct, 144, 0)).collect();
    sparse.push(step(Strategy::Direct, 1144, 1_000_000));
    assert!(!worth_workers(&sparse));
    // the same rows twice over are worth two workers
    let twice: Vec<Step> = sparse.iter().chain(sparse.iter()).cloned().collect();
    assert!(worth_workers(&twice));
    assert!(worth_workers(&[step(Strategy::Insert, ROWS_WORTH_WORKERS, 0)]));
    assert!(!worth_workers(&[step(Strategy::Insert, ROWS_WORTH_WORKERS - 1, 0)]));
    // reads count a fraction of an inserted row
    let reads = ROWS_READ_PER_ROW_INSERTED * ROWS_WORTH_WORKERS;
    assert!(!worth_workers(&[step(Strategy::Direct, 0, reads - ROWS_READ_PER_ROW_INSERTED)]));
    assert!(worth_workers(&[step(Strategy::Direct, 0, reads)]));
    // a rewrite or a decompression is worth a worker, whatever its rows
    assert!(worth_workers(&[step(Strategy::Merge, 1, 0)]));
    assert!(worth_workers(&[step(Strategy::Decompress, 1, 0)]));
    assert!(!worth_workers(&[]));
}
