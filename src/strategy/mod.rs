//! The ways a chunk takes its rows, one file each, behind one interface: the run
//! calls `run_transaction` with the steps of one transaction (the plan named each
//! step's `Strategy`), and gets one `StepResult` per step.
//!
//! - `insert`: a chunk that is not compressed, an ordinary insert;
//! - `direct`: an insert into the compressed chunk, alone or batched with the next
//!   chunks', then the partial chunks compressed again;
//! - `decompress`: decompress the chunk, insert, compress it;
//! - `merge`: a dense upsert merged into the touched segments;
//! - `new_segments`: a direct step whose rows all belong to segments the chunk lacks,
//!   written in bulk (with a unique key holding the segment column);
//! - `rewrite`: a merge that touched every segment rewrites the whole chunk;
//! - `segments`: the touched segments read and written back, for both;
//! - `rest`: the rows outside every existing chunk (new chunks, or a table that is
//!   not a hypertable);
//! - `source`: where a step's rows come from, and the statement that moves them;
//! - `whole`: the whole staging table in one transaction, where every row of it goes
//!   into a compressed chunk as compressed batches (before any chunk step).
//!
//! A direct insert or a merge that would pass TimescaleDB's decompression limit
//! (SQLSTATE 53400), or that meets a unique violation its `ON CONFLICT` should have
//! handled (23505), is rolled back and done by decompressing instead.

pub(crate) mod decompress;
pub(crate) mod direct;
pub(crate) mod insert;
pub(crate) mod merge;
pub(crate) mod new_segments;
pub(crate) mod rest;
pub(crate) mod rewrite;
pub(crate) mod segments;
pub(crate) mod source;
pub(crate) mod whole;

use crate::config::ConflictAction;
use crate::ident::QualifiedName;
use crate::plan::{Step, Strategy};
use crate::spi::{self, col, execute, p, query_one};
use crate::sql;
use crate::step::settings;
use crate::step::Prepared;
use crate::step::StepResult;
use crate::timescale::{status, Chunk};
use pgrx::notice;
use source::RowSource;

/// Runs the steps of one transaction: one chunk, or several chunks' direct inserts.
pub fn run_transaction(prep: &Prepared, steps: &[&Step], routed: bool) -> Vec<StepResult> {
    if steps.len() == 1 {
        vec![run_step(prep, steps[0], routed)]
    } else {
        direct::run_batch(prep, steps, routed)
    }
}

/// Moves one chunk's rows with the planned strategy, re-checked against the chunk's
/// status now (a chunk the plan saw compressed may have been decompressed since).
pub fn run_step(prep: &Prepared, step: &Step, routed: bool) -> StepResult {
    settings::apply(&prep.cfg);
    let chunk = &step.chunk;
    let now = chunk_status(&chunk.name);
    let strategy = match (status::is_compressed(now), step.strategy) {
        (false, _) => Strategy::Insert,
        (true, Strategy::Insert) => Strategy::Decompress,
        // a chunk that became partial since the plan is not merged (see `planning::estimate`)
        (true, Strategy::Merge) if !status::is_fully_compressed(now) => Strategy::Decompress,
        (true, s) => s,
    };
    let filter = prep.filter_for(chunk);
    let idx = [step.idx];
    let take = if routed { RowSource::Routed(&idx) } else { RowSource::Filter(&filter) };
    match (strategy, &prep.merge) {
        (Strategy::Merge, Some((m, spec))) => {
            or_decompress(prep, chunk, take, "a merge", || merge::apply(prep, m, spec, step, take))
        }
        (Strategy::Direct, _) => {
            or_decompress(prep, chunk, take, "a direct insert", || direct::apply(prep, step, take))
        }
        (Strategy::Insert, _) => insert::apply(prep, chunk, take),
        (Strategy::Decompress | Strategy::Merge, _) => decompress::apply(prep, chunk, take),
    }
}

/// Whether a step into a compressed chunk that failed with `sqlstate` is done again by
/// decompressing the chunk: when it would pass TimescaleDB's decompression limit
/// (53400), and when an insert with `ON CONFLICT` still met a unique violation (23505;
/// some TimescaleDB releases miss a conflict with a compressed batch): on the
/// decompressed chunk PostgreSQL's own checks decide. Under RESTRICT a unique
/// violation is the answer.
pub fn decompress_instead(sqlstate: &str, action: ConflictAction) -> bool {
    sqlstate == "53400" || (sqlstate == "23505" && action != ConflictAction::Restrict)
}

/// Runs `attempt` in a subtransaction; if it fails as `decompress_instead` says, rolls
/// it back and decompresses the chunk instead.
fn or_decompress(
    prep: &Prepared,
    chunk: &Chunk,
    take: RowSource,
    what: &str,
    attempt: impl FnOnce() -> StepResult,
) -> StepResult {
    match spi::in_subtransaction(std::panic::AssertUnwindSafe(attempt)) {
        Ok(r) => r,
        Err(e) if decompress_instead(&spi::caught_sqlstate(&e), prep.spec.conflict.action) => {
            let why = if spi::caught_sqlstate(&e) == "53400" {
                "would pass timescaledb.max_tuples_decompressed_per_dml_transaction"
            } else {
                "met a conflict TimescaleDB's insert into the compressed chunk did not handle"
            };
            notice!(
                "backfill_ext: chunk {}: {what} {why}; decompressing the chunk instead",
                chunk.name
            );
            let mut r = decompress::apply(prep, chunk, take);
            r.fell_back = true;
            r
        }
        Err(e) => e.rethrow(),
    }
}

/// A chunk's status bits now.
fn chunk_status(c: &QualifiedName) -> i32 {
    query_one(&sql::chunk::status(), &[p(c.quoted())], |r| col::<i32>(r, 1).unwrap_or(0))
        .unwrap_or(0)
}

/// Compresses a chunk (whole: whatever it holds uncompressed).
fn compress(prep: &Prepared, c: &QualifiedName) {
    execute(&sql::chunk::compress(&prep.timescale().func("compress_chunk")), &[p(c.quoted())]);
}

/// Decompresses a chunk.
fn decompress_chunk(prep: &Prepared, c: &QualifiedName) {
    execute(&sql::chunk::decompress(&prep.timescale().func("decompress_chunk")), &[p(c.quoted())]);
}

/// Changing compressed chunks takes the hypertable's owner.
pub fn require_owner(prep: &Prepared) {
    crate::catalog::require_owner(&prep.dest, "to decompress and compress its chunks");
}

/// Moves a step's rows into `r`, timed; the name of the chunk goes into a RESTRICT error.
fn move_timed(prep: &Prepared, chunk: &Chunk, take: RowSource, r: &mut StepResult) {
    let t = std::time::Instant::now();
    let moved = source::move_rows(
        prep,
        take,
        &prep.filter_for(chunk),
        &format!("chunk {}", chunk.name),
        Some(&chunk.name),
    );
    (r.moved, r.inserted, r.updated) = moved.total();
    r.insert_ms = crate::step::result::ms(t);
    spi::pause_point("after_insert");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_falls_back_to_decompressing_past_the_limit_and_on_a_missed_conflict() {
        for action in [ConflictAction::Nothing, ConflictAction::Update, ConflictAction::Restrict] {
            assert!(decompress_instead("53400", action));
            assert!(!decompress_instead("23502", action));
        }
        assert!(decompress_instead("23505", ConflictAction::Nothing));
        assert!(decompress_instead("23505", ConflictAction::Update));
        // RESTRICT's answer to an existing key
        assert!(!decompress_instead("23505", ConflictAction::Restrict));
    }
}
