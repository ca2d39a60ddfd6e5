//! An insert into the compressed chunk: TimescaleDB decompresses only the batches a
//! conflict check needs; what became partial is compressed again. Consecutive direct
//! inserts share one transaction (one statement moves their rows).
//!
//! Where nothing can conflict (no unique or exclusion index) and TimescaleDB's direct
//! compression takes the hypertable (`Prepared::compress_order`), the insert writes
//! the rows as new compressed batches, sorted by segment and order columns: no heap,
//! no index, nothing to compress again. TimescaleDB marks the chunk unordered (its new
//! batches overlap the old ones in time), which its queries and policy read as they
//! read any compressed chunk.

use super::source::{self, Moved, RowSource};
use crate::plan::{self, Step, Strategy};
use crate::spi::{self, col, p, query};
use crate::sql::moves::CompressOrder;
use crate::sql::{self, RowFilter};
use crate::step::settings;
use crate::step::Prepared;
use crate::step::{ms, StepResult};
use crate::timescale::{status, Chunk};
use std::time::Instant;

/// One chunk's direct insert.
pub fn apply(prep: &Prepared, step: &Step, take: RowSource) -> StepResult {
    super::require_owner(prep);
    let chunk = &step.chunk;
    if let Some(r) = super::new_segments::apply(prep, step, take) {
        return r;
    }
    let mut r = StepResult { strategy: Some(Strategy::Direct), ..Default::default() };
    match &prep.compress_order {
        Some(order) if step.staging_rows >= plan::COMPRESS_DIRECTLY_FROM_ROWS => {
            compress_directly(prep, order, take, &mut r)
        }
        _ => super::move_timed(prep, chunk, take, &mut r),
    }
    let t = Instant::now();
    let now = super::chunk_status(&chunk.name);
    // rows TimescaleDB wrote as compressed batches leave the chunk compressed (and
    // unordered), with nothing to compress again; rows it wrote as rows (a step it would
    // not compress directly) left it partial
    r.compressed_directly =
        r.compressed_directly && status::is_compressed(now) && !status::is_partial(now);
    if !r.compressed_directly && !status::is_fully_compressed(now) {
        super::compress(prep, &chunk.name);
        r.recompressed = true;
    }
    r.recompress_ms = ms(t);
    r
}

/// Moves a step's rows with TimescaleDB's direct compression on, in `order`. Nothing
/// conflicts without a unique or exclusion index, so every row moved is inserted (the
/// direct path returns no rows for `RETURNING` to count).
fn compress_directly(prep: &Prepared, order: &CompressOrder, take: RowSource, r: &mut StepResult) {
    let t = Instant::now();
    settings::direct_compress_insert(true, order.complete);
    r.moved = source::compress_rows(prep, take, &order.by);
    settings::direct_compress_insert(false, order.complete);
    r.inserted = r.moved;
    r.insert_ms = ms(t);
    r.compressed_directly = true;
    spi::pause_point("after_insert");
}

/// Moves the rows of several chunks in one statement, then compresses again each chunk
/// that became partial; one result per step. If the statement fails as
/// `decompress_instead` says, each chunk is done on its own.
pub fn run_batch(prep: &Prepared, steps: &[&Step], routed: bool) -> Vec<StepResult> {
    settings::apply(&prep.cfg);
    match spi::in_subtransaction(std::panic::AssertUnwindSafe(|| batch(prep, steps, routed))) {
        Ok(results) => results,
        Err(e)
            if super::decompress_instead(&spi::caught_sqlstate(&e), prep.spec.conflict.action) =>
        {
            steps.iter().map(|s| super::run_step(prep, s, routed)).collect()
        }
        Err(e) => e.rethrow(),
    }
}

fn batch(prep: &Prepared, steps: &[&Step], routed: bool) -> Vec<StepResult> {
    super::require_owner(prep);
    let idxs: Vec<i32> = steps.iter().map(|s| s.idx).collect();
    let ht = prep.ht.as_ref().expect("chunks belong to a hypertable");
    let by_time = ht.by_time(steps.iter().map(|s| &s.chunk));
    let filters: Vec<(i32, RowFilter)> = if routed || by_time {
        vec![]
    } else {
        steps.iter().map(|s| (s.idx, prep.filter_for(&s.chunk))).collect()
    };
    let buckets: Vec<(i32, &Chunk)> =
        if by_time { steps.iter().map(|s| (s.idx, &s.chunk)).collect() } else { vec![] };
    let take = if routed {
        RowSource::Routed(&idxs)
    } else if by_time {
        RowSource::Buckets(&buckets)
    } else {
        RowSource::Chunks(&filters)
    };
    let t = Instant::now();
    let moved =
        source::move_rows(prep, take, &prep.filter_for(&steps[0].chunk), "these chunks", None);
    let insert_ms = ms(t);
    spi::pause_point("after_insert");
    let mut results = share_out(&moved, steps, insert_ms);
    recompress_partial(prep, steps, &mut results);
    results
}

/// One result per step from what the batch's statement did (its time shared out by rows).
fn share_out(moved: &Moved, steps: &[&Step], insert_ms: f64) -> Vec<StepResult> {
    let total_moved: i64 = moved.moved.iter().map(|(_, n)| n).sum::<i64>().max(1);
    let mut results: Vec<StepResult> = steps
        .iter()
        .map(|s| {
            let m = moved.moved.iter().filter(|(i, _)| *i == s.idx).map(|(_, n)| *n).sum::<i64>();
            let (ins, upd) = moved
                .inserted
                .iter()
                .filter(|(o, _, _)| *o == s.chunk.oid)
                .fold((0, 0), |a, (_, i, u)| (a.0 + i, a.1 + u));
            StepResult {
                strategy: Some(Strategy::Direct),
                moved: m,
                inserted: ins,
                updated: upd,
                insert_ms: insert_ms * m as f64 / total_moved as f64,
                ..Default::default()
            }
        })
        .collect();
    // rows that landed outside the batch's chunks still count, on its first chunk
    let stray: (i64, i64) = moved
        .inserted
        .iter()
        .filter(|(o, _, _)| !steps.iter().any(|s| s.chunk.oid == *o))
        .fold((0, 0), |a, (_, i, u)| (a.0 + i, a.1 + u));
    results[0].inserted += stray.0;
    results[0].updated += stray.1;
    results
}

/// The chunks left partial, compressed again in one statement (its time shared out).
fn recompress_partial(prep: &Prepared, steps: &[&Step], results: &mut [StepResult]) {
    let t = Instant::now();
    let partial: Vec<u32> = query(
        &sql::chunk::compress_partial(&prep.timescale().func("compress_chunk")),
        &[
            p(sql::array_literal(
                &steps.iter().map(|s| s.chunk.oid.to_string()).collect::<Vec<_>>(),
            )),
            p((status::UNORDERED | status::PARTIAL).to_string()),
        ],
        |r| col::<i64>(r, 1).unwrap_or(0) as u32,
    );
    let each_ms = ms(t) / partial.len().max(1) as f64;
    for (s, r) in steps.iter().zip(results.iter_mut()) {
        if partial.contains(&s.chunk.oid) {
            r.recompressed = true;
            r.recompress_ms = each_ms;
        }
    }
}
