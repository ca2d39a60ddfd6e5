//! The whole staging table in one transaction. Where TimescaleDB's direct compression
//! takes the destination (`Prepared::compress_order`: no unique or exclusion index, no
//! triggers, no continuous aggregates) and every staging row belongs in a compressed
//! chunk with at least a batch's worth of rows (what a `direct` step would write as
//! compressed batches, `plan::whole_staging`), one sorted INSERT writes every row as
//! compressed batches and TRUNCATE empties staging, in the same transaction. Deleting
//! the rows one by one costs more than the rest of such a move; TRUNCATE costs nothing
//! whatever their number, and a row is never in both tables nor in neither.
//!
//! Staging is locked against writers first (EXCLUSIVE: reads go on), so no row arrives
//! between the count and the TRUNCATE. The lock is taken with NOWAIT: where a writer
//! holds staging the run goes chunk by chunk instead, as it does where staging has
//! triggers, row security, inheritance or a foreign key pointing at it, or where the
//! user may not truncate it (`catalog::staging_can_be_truncated`).

use crate::catalog;
use crate::config::StrategyChoice;
use crate::error::{BackfillError, Code};
use crate::plan::{self, ChunkGroup, Strategy};
use crate::spi::{self, col, execute, execute_counted, query, raise};
use crate::sql::moves::{self, CompressOrder};
use crate::sql::route;
use crate::step::{ms, settings, Prepared, StepResult};
use crate::timescale::{status, Chunk};
use std::time::Instant;

/// Moves the whole staging table where it may (see the module); returns each chunk that
/// received rows and what it took, or `None`, having changed nothing, where it may not.
pub fn try_move(prep: &Prepared) -> Option<Vec<(Chunk, StepResult)>> {
    let (order, ht) = (prep.compress_order.as_ref()?, prep.ht.as_ref()?);
    let may = prep.cfg.delete_from_staging
        && prep.cfg.strategy == StrategyChoice::Auto
        && catalog::staging_can_be_truncated(prep.staging.oid);
    if !may || !lock_staging(prep) {
        return None;
    }
    let chunks = catalog::all_chunks(&prep.dest, ht);
    if chunks.is_empty() || !ht.by_time(chunks.iter()) {
        return None;
    }
    let q = route::count_in_chunks(&prep.staging.name, &ht.time_column, ht.kind);
    let groups = query(&q, &spi::params(route::bounds(chunks.iter())), |r| ChunkGroup {
        idx: col::<i32>(r, 1),
        rows: col::<i64>(r, 2).unwrap_or(0),
        inside: col::<bool>(r, 3).unwrap_or(false),
    });
    let statuses: Vec<i32> = chunks.iter().map(|c| c.status).collect();
    let rows = plan::whole_staging(&groups, &statuses)?;
    super::require_owner(prep);
    Some(move_all(prep, order, chunks, rows))
}

/// Locks staging against writers, or returns false where one holds it.
fn lock_staging(prep: &Prepared) -> bool {
    let q = moves::lock_staging(&prep.spec);
    match spi::in_subtransaction(|| execute(&q, &[])) {
        Ok(()) => true,
        Err(e) if spi::caught_sqlstate(&e) == "55P03" => {
            pgrx::debug1!("backfill_ext: staging is being written; the run goes chunk by chunk");
            false
        }
        Err(e) => e.rethrow(),
    }
}

/// The sorted INSERT and the TRUNCATE, then the chunks TimescaleDB left partial (rows
/// it did not write as batches) compressed again; one result per chunk with rows.
fn move_all(
    prep: &Prepared,
    order: &CompressOrder,
    chunks: Vec<Chunk>,
    rows: Vec<i64>,
) -> Vec<(Chunk, StepResult)> {
    let expected: i64 = rows.iter().sum();
    let t = Instant::now();
    settings::direct_compress_insert(true, order.complete);
    let moved = execute_counted(&moves::insert_all_sorted(&prep.spec, &order.by), &[]);
    settings::direct_compress_insert(false, order.complete);
    if moved != expected {
        raise(BackfillError::new(
            Code::ObjectNotInPrerequisiteState,
            format!("moving the whole staging table inserted {moved} rows of {expected}"),
        ));
    }
    execute(&moves::truncate_staging(&prep.spec), &[]);
    let insert_ms = ms(t);
    spi::pause_point("after_insert");
    chunks
        .into_iter()
        .zip(rows)
        .filter(|(_, n)| *n > 0)
        .map(|(chunk, n)| {
            let mut r = StepResult {
                strategy: Some(Strategy::Direct),
                moved: n,
                inserted: n,
                insert_ms: insert_ms * n as f64 / expected.max(1) as f64,
                compressed_directly: true,
                ..Default::default()
            };
            let t = Instant::now();
            let now = super::chunk_status(&chunk.name);
            if status::is_partial(now) {
                super::compress(prep, &chunk.name);
                r.recompressed = true;
                r.compressed_directly = false;
            }
            r.recompress_ms = ms(t);
            (chunk, r)
        })
        .collect()
}
