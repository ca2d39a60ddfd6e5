//! The rows no chunk step took: they create new chunks, or the destination is not a
//! hypertable. Moved in slices of staging (at most `rest_batch_rows` rows each), one
//! transaction each; then any chunk a slice left partial is compressed again (the
//! chunk steps left theirs fully compressed; a chunk partial before stays as it was).

use super::source::{self, three_counts, RowSource};
use crate::ident::QualifiedName;
use crate::plan::{self, Plan};
use crate::spi::{self, col, query, query_one};
use crate::sql::{moves, RowFilter};
use crate::step::settings;
use crate::step::Prepared;
use crate::step::{ms, StepResult};
use crate::timescale::status;
use std::collections::HashSet;
use std::time::Instant;

/// A slice of staging's blocks, `[from, to)` (see `plan::rest_slices`).
pub type Slice = (Option<i64>, Option<i64>);

/// The slices the rest is moved in (none when no row is left).
pub fn slices(prep: &Prepared, plan: &Plan) -> Vec<Slice> {
    settings::apply(&prep.cfg);
    let all = prep.filter_all();
    let (q, params) = moves::rows_per_block(&prep.spec, &all, &excluded(prep, plan));
    let blocks = query(&q, &spi::params(params), |r| {
        (col::<i64>(r, 1).unwrap_or(0), col::<i64>(r, 2).unwrap_or(0))
    });
    plan::rest_slices(&blocks, prep.cfg.rest_batch_rows)
}

/// The rows chunk steps take, which the rest leaves (rows stay in staging: the chunk
/// steps did not delete theirs).
fn excluded(prep: &Prepared, plan: &Plan) -> Vec<RowFilter> {
    if prep.cfg.delete_from_staging {
        vec![]
    } else {
        plan.steps.iter().map(|s| prep.filter_for(&s.chunk)).collect()
    }
}

/// Moves one slice of the rest; returns what it did and the chunks it created, or
/// `None` when its rows would make TimescaleDB decompress past its limit (a chunk was
/// created and compressed since the plan): the slice is rolled back, its rows stay in
/// staging, and the next run moves them chunk by chunk.
pub fn apply(prep: &Prepared, plan: &Plan, slice: Slice) -> Option<(StepResult, i64)> {
    settings::apply(&prep.cfg);
    match spi::in_subtransaction(std::panic::AssertUnwindSafe(|| apply_slice(prep, plan, slice))) {
        Ok(done) => Some(done),
        Err(e) if spi::caught_sqlstate(&e) == "53400" => {
            pgrx::notice!(
                "backfill_ext: rows outside the planned chunks would decompress past \
                 timescaledb.max_tuples_decompressed_per_dml_transaction \
                 (a chunk was compressed since the plan); they stay in {} for the next run, which \
                 moves them chunk by chunk",
                prep.staging.name
            );
            None
        }
        Err(e) => e.rethrow(),
    }
}

fn apply_slice(prep: &Prepared, plan: &Plan, slice: Slice) -> (StepResult, i64) {
    let mut r = StepResult::default();
    let before = chunk_statuses(prep);
    let t = Instant::now();
    let rows = prep.filter_all().in_blocks(slice);
    (r.moved, r.inserted, r.updated) = if prep.cfg.delete_from_staging {
        let moved =
            source::move_rows(prep, RowSource::Filter(&rows), &rows, "the new chunks", None)
                .total();
        spi::pause_point("after_insert");
        moved
    } else {
        move_excluding(prep, &rows, &excluded(prep, plan))
    };
    r.insert_ms = ms(t);
    // no row moved: no chunk was made, none became partial
    let new_chunks = if r.moved > 0 { recompress_new_partials(prep, &before, &mut r) } else { 0 };
    (r, new_chunks)
}

/// The hypertable's chunks and their status bits (none for another table).
fn chunk_statuses(prep: &Prepared) -> Vec<(QualifiedName, i32)> {
    match (&prep.ts, &prep.ht) {
        (Some(ts), Some(_)) => crate::catalog::chunk_statuses(ts, &prep.dest),
        _ => vec![],
    }
}

/// Compresses again the compressed chunks that became partial since `before`;
/// returns how many chunks were created.
fn recompress_new_partials(
    prep: &Prepared,
    before: &[(QualifiedName, i32)],
    r: &mut StepResult,
) -> i64 {
    if prep.ht.is_none() || prep.ts.is_none() {
        return 0;
    }
    let partial_before: HashSet<&QualifiedName> =
        before.iter().filter(|(_, s)| !status::is_fully_compressed(*s)).map(|(n, _)| n).collect();
    let t = Instant::now();
    let now = chunk_statuses(prep);
    let new_chunks = (now.len() as i64 - before.len() as i64).max(0);
    for (name, st) in now {
        if status::is_compressed(st)
            && !status::is_fully_compressed(st)
            && !partial_before.contains(&name)
        {
            super::compress(prep, &name);
            r.recompressed = true;
        }
    }
    r.recompress_ms = ms(t);
    new_chunks
}

/// The rows `base` takes that none of `exclude` takes (rows stay in staging).
fn move_excluding(prep: &Prepared, base: &RowFilter, exclude: &[RowFilter]) -> (i64, i64, i64) {
    if exclude.is_empty() {
        return source::move_rows(prep, RowSource::Filter(base), base, "the new chunks", None)
            .total();
    }
    let (q, params) = moves::move_rows_excluding(&prep.spec, base, exclude);
    query_one(&q, &spi::params(params), three_counts).unwrap()
}
