//! A dense upsert merged by segments. Under a lock that keeps other writers out of
//! the chunk (readers go on), the step's rows go to a temporary table, the touched
//! segments' rows are read (decompressed in memory) with the new values applied and
//! written back: their compressed batches are deleted whole and their rows written
//! again. When the step touched every segment, the chunk is rewritten instead
//! (`rewrite`). Staging rows with new keys are inserted, and the chunk is compressed.
//! One transaction.

use super::source::RowSource;
use super::{rewrite, segments};
use crate::config::ConflictAction;
use crate::plan::{Step, Strategy};
use crate::spi::{self, col, execute, p, query_one, Param};
use crate::sql::segment_merge::{MergeSpec, MergeSql};
use crate::sql::{self, split::SplitSql, MoveSpec};
use crate::step::temp_tables;
use crate::step::Prepared;
use crate::step::{ms, StepResult};
use std::time::Instant;

/// Merges the step's rows by `m`, moving them as `spec` does (the run's move, its
/// conflict target filled in).
pub fn apply(
    prep: &Prepared,
    m: &MergeSpec,
    spec: &MoveSpec,
    step: &Step,
    take: RowSource,
) -> StepResult {
    let chunk = &step.chunk;
    super::require_owner(prep);
    crate::step::settings::apply_sort_work_mem(&prep.cfg);
    let (take_where, take_params) = take_condition(take, step);
    let q = sql::segment_merge::merge_sql(spec, m, &chunk.name, &take_where);
    execute(&sql::chunk::lock(&chunk.name, "EXCLUSIVE"), &[]);
    temp_tables::drop_named(&[sql::segment_merge::MERGE_NEW, sql::segment_merge::MERGE_OLD]);
    let split = split_for(prep, m, spec, step);
    for create in split.as_ref().map_or(&q.create[..], |s| &s.create[..]) {
        execute(create, &[]);
    }
    let mut r = StepResult { strategy: Some(Strategy::Merge), ..Default::default() };
    let t = Instant::now();
    let (moved, kept) = query_one(&q.take, &take_params, |x| {
        (col::<i64>(x, 1).unwrap_or(0), col::<i64>(x, 2).unwrap_or(0))
    })
    .unwrap();
    r.moved = moved;
    let Some(segments) = query_one(&q.segments, &[], |x| col::<String>(x, 1)).flatten() else {
        execute(&q.drop, &[]);
        return r;
    };
    let every_segment =
        !query_one(&q.untouched, &[p(&segments)], |x| col::<bool>(x, 1).unwrap_or(true))
            .unwrap_or(true);
    let rewrite = prep.truncate_ok && every_segment && rewrite::lock_chunk(prep, chunk);
    let indexes = if rewrite && rewrite::fits_in_memory(prep, &q) {
        rewrite::in_memory(prep, &q, chunk, kept, &mut r, t)
    } else if rewrite {
        rewrite::on_disk(prep, &q, split.as_ref(), chunk, &segments, kept, &mut r, t)
    } else {
        by_segments(&q, &segments, kept, &mut r, t);
        rewrite::Indexes::Built
    };
    if spec.conflict.action == ConflictAction::Nothing {
        // the rows a staging row met were kept as they were
        r.updated = 0;
    }
    spi::pause_point("after_insert");
    let t = Instant::now();
    rewrite::compress(prep, chunk, indexes);
    r.recompressed = true;
    r.recompress_ms = ms(t);
    execute(&q.drop, &[]);
    r
}

/// The statements of a rewrite split by segments (`sql::split`), where the chunk can
/// be rewritten and its rows would not fit in memory, so that a rewrite would go
/// through its temporary tables.
fn split_for(prep: &Prepared, m: &MergeSpec, spec: &MoveSpec, step: &Step) -> Option<SplitSql> {
    let s = sql::split::split_sql(spec, m, &step.chunk.name).filter(|_| prep.truncate_ok)?;
    let params = [
        p(&m.segment_type),
        p(prep.spec.staging.quoted()),
        p(&m.segment),
        p(prep.spec.destination.quoted()),
    ];
    let (on_disk, splittable) = query_one(&s.on_disk_and_splittable, &params, |x| {
        (col::<bool>(x, 1).unwrap_or(false), col::<bool>(x, 2).unwrap_or(false))
    })?;
    ((on_disk || spi::rewrite_on_disk()) && splittable).then_some(s)
}

/// The condition (alias `s`) that takes the step's staging rows, and its parameters
/// (one chunk's: a merge's, or new segments').
pub(super) fn take_condition(take: RowSource, step: &Step) -> (String, Vec<Param>) {
    match take {
        RowSource::Routed(_) => (sql::route::routed_to_chunk(), vec![p(step.idx.to_string())]),
        RowSource::Filter(f) => {
            let (c, params) = f.render("s", 1);
            (c, spi::params(params))
        }
        RowSource::Chunks(_) | RowSource::Buckets(_) => {
            unreachable!("a merge or new segments take one chunk's rows")
        }
    }
}

/// Replaces the touched segments' batches with their merged rows.
fn by_segments(q: &MergeSql, segments: &str, kept: i64, r: &mut StepResult, t: Instant) {
    let new_keys = segments::read_touched(q, segments, kept, r, t);
    let t = Instant::now();
    execute(&q.delete_segments, &[p(segments)]);
    segments::write_back(q, new_keys, r);
    r.insert_ms = ms(t);
}
