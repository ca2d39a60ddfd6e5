//! The rows no chunk step took: they create new chunks, or the destination is not a
//! hypertable. Moved in one statement; then any chunk this left partial is compressed
//! again (the chunk steps left theirs fully compressed; a chunk partial before stays
//! as it was).

use super::source::{self, three_counts, RowSource};
use crate::ident::QualifiedName;
use crate::plan::Plan;
use crate::run::outcome::{ms, StepResult};
use crate::run::prepare::Prepared;
use crate::run::settings;
use crate::spi::{self, col, query_one};
use crate::sql::{chunk as chunk_sql, moves, RowFilter};
use crate::timescale::status;
use std::collections::HashSet;
use std::time::Instant;

/// Moves the rest; returns what it did and the chunks it created.
pub fn apply(prep: &Prepared, plan: &Plan) -> (StepResult, i64) {
    settings::apply(&prep.cfg);
    let mut r = StepResult::default();
    if prep.cfg.delete_from_staging && !staging_has_rows(prep) {
        return (r, 0);
    }
    let before = chunk_statuses(prep);
    let t = Instant::now();
    let all = prep.filter_all();
    if prep.cfg.delete_from_staging {
        (r.moved, r.inserted, r.updated) = source::move_rows(prep, RowSource::Filter(&all), &all, "the new chunks").total();
        spi::pause_point("after_insert");
    } else {
        // rows stay in staging: take only those no chunk step took
        let steps: Vec<RowFilter> = plan.steps.iter().map(|s| prep.filter_for(&s.chunk)).collect();
        (r.moved, r.inserted, r.updated) = move_excluding(prep, &all, &steps);
    }
    r.insert_ms = ms(t);
    // no row moved: no chunk was made, none became partial
    let new_chunks = if r.moved > 0 { recompress_new_partials(prep, &before, &mut r) } else { 0 };
    (r, new_chunks)
}

fn staging_has_rows(prep: &Prepared) -> bool {
    query_one(&chunk_sql::has_rows(&prep.staging.name), &[], |x| col::<bool>(x, 1).unwrap_or(true)).unwrap_or(true)
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
fn recompress_new_partials(prep: &Prepared, before: &[(QualifiedName, i32)], r: &mut StepResult) -> i64 {
    if prep.ht.is_none() || prep.ts.is_none() {
        return 0;
    }
    let partial_before: HashSet<&QualifiedName> = before.iter().filter(|(_, s)| !status::is_fully_compressed(*s)).map(|(n, _)| n).collect();
    let t = Instant::now();
    let now = chunk_statuses(prep);
    let new_chunks = (now.len() as i64 - before.len() as i64).max(0);
    for (name, st) in now {
        if status::is_compressed(st) && !status::is_fully_compressed(st) && !partial_before.contains(&name) {
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
        return source::move_rows(prep, RowSource::Filter(base), base, "the new chunks").total();
    }
    let (q, params) = moves::move_rows_excluding(&prep.spec, base, exclude);
    query_one(&q, &spi::params(params), three_counts).unwrap()
}
