//! A direct step whose rows all belong to segments the compressed chunk lacks (rows of
//! new devices, with a unique key holding the segment column): none of them can meet a
//! row of the chunk, so none needs TimescaleDB's check against the compressed batches
//! nor an insert of its own. Under a lock that keeps other writers out of the chunk
//! (readers go on), the rows go, one per key, into a temporary table; one of them is
//! inserted through the hypertable (TimescaleDB marks the chunk partial, so that its
//! queries and its compression read the chunk's rows beside its batches); the rest are
//! written into the chunk in bulk (`spi::bulk`), its indexes rebuilt (which checks the
//! unique key among them), and the chunk compressed: TimescaleDB compresses the new
//! segments' rows and leaves the others' batches as they are. One transaction.
//!
//! Under `NOTHING` the rows may also be of segments the chunk has (an outage replay):
//! the rows whose key the chunk has are left out (conflicts, found in one join against
//! the chunk's rows, not by TimescaleDB's check of a batch per row), and the others,
//! which cannot meet a row of the chunk, are written in bulk the same way; compressing
//! the chunk then merges them into their segments' batches.
//!
//! Where a row taken turns out to meet a segment of the chunk (under `UPDATE`: staged
//! after the check), or the chunk cannot be written in bulk (triggers, such as a
//! continuous aggregate's), the rows are inserted through the hypertable instead, with
//! the run's `ON CONFLICT`.

use super::source::RowSource;
use crate::config::ConflictAction;
use crate::plan::{self, Step, Strategy};
use crate::spi::{self, col, execute, query_one};
use crate::sql::{self, new_segments, route};
use crate::step::{ms, settings, temp_tables, Prepared, StepResult};
use crate::timescale::{status, Chunk};
use std::time::Instant;

/// The step done so, or `None`, having changed nothing but its lock on the chunk, where
/// it does not apply: the destination does not allow it (`Prepared::new_segments`), the
/// step has fewer rows than `plan::NEW_SEGMENTS_FROM_ROWS`, the chunk is not fully
/// compressed, or (under `UPDATE`) a staging row of the step has a segment the chunk
/// has (looked for first unless the plan counted none).
pub fn apply(prep: &Prepared, step: &Step, take: RowSource) -> Option<StepResult> {
    let chunk = &step.chunk;
    let spec = prep.new_segments.as_ref()?;
    if step.staging_rows < plan::NEW_SEGMENTS_FROM_ROWS {
        return None;
    }
    execute(&sql::chunk::lock(&chunk.name, "EXCLUSIVE"), &[]);
    if !status::is_fully_compressed(super::chunk_status(&chunk.name)) {
        return None;
    }
    let (take_where, take_params) = super::merge::take_condition(take, step);
    let same = route::same_segment(&prep.segments_collated);
    let q = new_segments::new_segments_sql(spec, &chunk.name, &take_where, &prep.segmentby, &same);
    // where the plan found no row meeting the chunk's segments, the check after taking
    // the rows is enough (a row that does goes in with the run's ON CONFLICT); under
    // NOTHING such rows go in bulk too
    let nothing = spec.conflict.action == ConflictAction::Nothing;
    if !nothing && step.rows_meeting != Some(0) {
        let meets = query_one(&q.staging_meets_chunk, &take_params, |x| col::<bool>(x, 1));
        if meets.flatten().unwrap_or(true) {
            return None;
        }
    }
    settings::apply_sort_work_mem(&prep.cfg);
    temp_tables::drop_named(&[new_segments::BULK_NEW]);
    execute(&q.create, &[]);
    let mut r = StepResult { strategy: Some(Strategy::Direct), ..Default::default() };
    let t = Instant::now();
    let (moved, mut kept) = query_one(&q.take, &take_params, |x| {
        (col::<i64>(x, 1).unwrap_or(0), col::<i64>(x, 2).unwrap_or(0))
    })
    .unwrap();
    r.moved = moved;
    let mut meets =
        query_one(&q.meets_chunk, &[], |x| col::<bool>(x, 1).unwrap_or(true)).unwrap_or(true);
    if meets && nothing {
        kept -= settings::hash_joins_only(|| {
            query_one(&q.drop_existing_keys, &[], |x| col::<i64>(x, 1).unwrap_or(0)).unwrap_or(0)
        });
        (meets, r.met_segments) = (false, true);
    }
    if meets || kept == 0 {
        pgrx::debug1!(
            "backfill_ext: chunk {}: a row taken meets a segment of the chunk; the rows go in \
             with ON CONFLICT",
            chunk.name
        );
        insert_all(&q, &mut r);
    } else {
        write_in_bulk(&q, chunk, &mut r);
    }
    r.insert_ms = ms(t);
    spi::pause_point("after_insert");
    let t = Instant::now();
    super::compress(prep, &chunk.name);
    r.recompressed = true;
    r.recompress_ms = ms(t);
    execute(&q.drop, &[]);
    Some(r)
}

/// Inserts one row through the hypertable (the chunk marked partial) and writes the
/// rest into the chunk in bulk, its indexes rebuilt; where the chunk cannot be written
/// in bulk, inserts them through the hypertable.
fn write_in_bulk(q: &new_segments::NewSegmentsSql, chunk: &Chunk, r: &mut StepResult) {
    execute(&q.insert_first, &[]);
    let written = spi::bulk::write_table(
        super::rewrite::chunk_oid(chunk),
        super::rewrite::existing(new_segments::BULK_NEW),
    );
    match written {
        Ok(n) => {
            r.inserted = n + 1;
            r.wrote_in_bulk = true;
            settings::with_serial_index_build(|| execute(&q.reindex_chunk, &[]));
        }
        Err(_) => {
            insert_all(q, r);
            r.inserted += 1;
        }
    }
}

/// Inserts the rows waiting in the temporary table through the hypertable.
fn insert_all(q: &new_segments::NewSegmentsSql, r: &mut StepResult) {
    let (inserted, updated) = query_one(&q.insert_all, &[], |x| {
        (col::<i64>(x, 1).unwrap_or(0), col::<i64>(x, 2).unwrap_or(0))
    })
    .unwrap_or((0, 0));
    r.inserted += inserted;
    r.updated += updated;
}
