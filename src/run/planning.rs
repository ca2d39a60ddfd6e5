//! Reading what the plan is made from: the staging rows' span, the chunks they meet,
//! the rows per chunk (one scan), the estimates a strategy is chosen from, and the
//! routing of staging rows to their chunks when that is cheaper than scanning staging
//! per chunk. The choice itself is pure (`plan`).

use crate::catalog;
use crate::config::{ConflictAction, StrategyChoice};
use crate::ident::QualifiedName;
use crate::plan::{self, Candidate, Estimate, Plan};
use crate::route_slices::{self, RouteSlices};
use crate::spi::{self, col, execute, p, query, query_one, Param};
use crate::sql::route::{self, Meeting};
use crate::sql::{self, RowFilter};
use crate::step::Prepared;
use crate::timescale::{status, Chunk, Hypertable, TimeKind};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;

/// Staging rows and their time span.
pub struct Span {
    pub min: Option<String>,
    pub max: Option<String>,
    pub rows: i64,
}

pub fn staging_span(prep: &Prepared) -> Span {
    match &prep.ht {
        Some(h) => query_one(&route::staging_span(&prep.staging.name, &h.time_column), &[], |r| {
            Span { min: col(r, 1), max: col(r, 2), rows: col::<i64>(r, 3).unwrap_or(0) }
        })
        .unwrap(),
        None => Span {
            min: None,
            max: None,
            rows: query_one(&sql::chunk::count_rows(&prep.staging.name), &[], |r| {
                col::<i64>(r, 1).unwrap_or(0)
            })
            .unwrap_or(0),
        },
    }
}

/// The plan: chunks that receive rows, counted per chunk.
pub fn make_plan(prep: &Prepared) -> Plan {
    let span = staging_span(prep);
    let choice = plan::allowed_choice(prep.cfg.strategy, prep.direct_meets_conflicts);
    if choice != prep.cfg.strategy && prep.cfg.strategy == StrategyChoice::Direct {
        pgrx::notice!(
            "backfill_ext: TimescaleDB's insert into a compressed chunk of {} would not meet every \
             conflict (several unique indexes, or one comparing by a nondeterministic collation or \
             with NULLS NOT DISTINCT); its compressed chunks are decompressed instead",
            prep.dest.name
        );
    }
    let (Some(ht), Some(min), Some(max)) = (&prep.ht, &span.min, &span.max) else {
        return plan::plan(vec![], span.rows, choice);
    };
    let chunks = catalog::chunks_overlapping(&prep.dest, ht, min, max);
    // with rows leaving staging as they move, and many chunks to scan it for, route the
    // rows to their chunks once, counting them on the way; else count them in one scan
    let routed = prep.cfg.delete_from_staging
        && (plan::should_route(chunks.len(), span.rows) || spi::always_route());
    let counts = if chunks.is_empty() {
        vec![]
    } else if routed {
        route_rows(prep, ht, &chunks)
    } else {
        count_by_chunk(prep, ht, &chunks)
    };
    let candidates = chunks
        .into_iter()
        .zip(counts)
        .enumerate()
        .map(|(i, (chunk, staging_rows))| {
            let idx = i as i32 + 1;
            let estimate = (staging_rows > 0
                && choice == StrategyChoice::Auto
                && status::is_compressed(chunk.status))
            .then(|| estimate(prep, &chunk, idx, routed, staging_rows));
            Candidate { idx, chunk, staging_rows, estimate }
        })
        .collect();
    let mut plan = plan::plan(candidates, span.rows, choice);
    plan.routed = routed;
    plan.span = Some((min.clone(), max.clone()));
    plan
}

/// Counts the staging rows of each chunk in one scan; in chunk order.
fn count_by_chunk(prep: &Prepared, ht: &Hypertable, chunks: &[Chunk]) -> Vec<i64> {
    let (q, params) =
        per_chunk_query(prep, ht, chunks, route::count_by_time, route::count_by_filters);
    let mut counts = vec![0i64; chunks.len()];
    for (idx, n) in
        query(&q, &params, |r| (col::<i32>(r, 1).unwrap_or(0), col::<i64>(r, 2).unwrap_or(0)))
    {
        if idx >= 1 && (idx as usize) <= counts.len() {
            counts[idx as usize - 1] = n;
        }
    }
    counts
}

/// A statement over staging that numbers each row by its chunk, and its parameters:
/// `by_time` where chunks are told apart by time alone (one binary search a row), else
/// `by_filters`, testing each chunk's filter in turn.
fn per_chunk_query(
    prep: &Prepared,
    ht: &Hypertable,
    chunks: &[Chunk],
    by_time_sql: fn(&QualifiedName, &str, TimeKind) -> String,
    by_filters_sql: fn(&QualifiedName, &[RowFilter]) -> (String, Vec<String>),
) -> (String, Vec<Param>) {
    if ht.by_time(chunks.iter()) {
        let bounds = spi::params(route::bounds(chunks.iter()));
        (by_time_sql(&prep.staging.name, &ht.time_column, ht.kind), bounds)
    } else {
        let filters: Vec<RowFilter> = chunks.iter().map(|c| prep.filter_for(c)).collect();
        let (q, params) = by_filters_sql(&prep.staging.name, &filters);
        (q, spi::params(params))
    }
}

/// Writes the route table (each staging row's ctid under its chunk number) from one
/// scan of the staging table, in bounded slices (`route_slices`); returns the rows
/// routed to each chunk, in chunk order (as `count_by_chunk`).
fn route_rows(prep: &Prepared, ht: &Hypertable, chunks: &[Chunk]) -> Vec<i64> {
    crate::step::temp_tables::drop_all();
    execute(&sql::chunk::create_route_table(), &[]);
    let (q, params) =
        per_chunk_query(prep, ht, chunks, route::route_by_time, route::route_by_filters);
    let (slice, held) =
        if spi::always_route() { (3, 10) } else { (route_slices::SLICE, route_slices::HELD) };
    let mut slices = RouteSlices::new(slice, held);
    let mut counts = vec![0i64; chunks.len()];
    spi::for_each_int4_tid_batch(&q, &params, 10_000, |rows| {
        for (idx, tid) in rows {
            if let Some(n) = usize::try_from(idx - 1).ok().and_then(|i| counts.get_mut(i)) {
                *n += 1;
            }
            slices.push(idx, tid).into_iter().for_each(write_route);
        }
    });
    slices.drain().into_iter().for_each(write_route);
    counts
}

/// A row of the route table: a chunk number and a slice of its staging rows' ids.
pub(super) type RouteRow = (i32, Vec<pg_sys::ItemPointerData>);

/// Writes a row of the route table.
pub(super) fn write_route((idx, tids): RouteRow) {
    spi::run_typed(route::WRITE_ROUTE, || vec![DatumWithOid::from(idx), DatumWithOid::from(tids)]);
}

/// Reads a route row (chunk number, row ids) of a query's result.
pub(super) fn route_row(r: &pgrx::spi::SpiHeapTupleData) -> RouteRow {
    (col::<i32>(r, 1).unwrap_or(0), col::<Vec<pg_sys::ItemPointerData>>(r, 2).unwrap_or_default())
}

/// What choosing a strategy for a compressed chunk needs: its rows, and the staging
/// rows whose segment already has batches there.
fn estimate(prep: &Prepared, chunk: &Chunk, idx: i32, routed: bool, staging_rows: i64) -> Estimate {
    let conflicts_decompress =
        prep.has_unique && prep.spec.conflict.action != ConflictAction::Nothing;
    // under NOTHING, a direct step writes the rows with new keys in bulk where it may
    // (`strategy::new_segments`): cheaper than a merge, which rewrites the chunk's rows
    let new_keys_in_bulk = !conflicts_decompress && prep.new_segments.is_some();
    let mut e = Estimate {
        chunk_rows: 0,
        rows_meeting_batches: None,
        conflicts_decompress,
        checks_batches: prep.has_unique,
        staging_rows,
        decompress_limit: prep.decompress_limit,
        // a partial chunk is not merged: some TimescaleDB releases (2.23) left a
        // touched segment's compressed batches in place beside its rows written back
        merge_possible: prep.cfg.delete_from_staging
            && prep.merge.is_some()
            && status::is_fully_compressed(chunk.status)
            && !new_keys_in_bulk,
    };
    // without a decompression to fear, the rows meeting batches matter only to a merge
    if !conflicts_decompress && !(e.checks_batches && e.merge_possible) {
        return e;
    }
    e.chunk_rows =
        query_one(&sql::chunk::count_rows(&chunk.name), &[], |r| col::<i64>(r, 1).unwrap_or(0))
            .unwrap_or(0);
    // under NOTHING a wrong guess costs time, never a row: a sample of the routed rows
    // decides (a filter scans staging for them anyway)
    let (how, limit) = if conflicts_decompress || !routed {
        let cap = if conflicts_decompress {
            plan::meeting_rows_that_decide(e.chunk_rows, e.decompress_limit)
        } else {
            plan::meeting_rows_that_outweigh(e.chunk_rows, staging_rows)
        };
        (Meeting::UpTo, cap)
    } else {
        (Meeting::Sampled, plan::MEETING_SAMPLE_ROWS)
    };
    let counted = count_meeting(prep, chunk, (idx, routed), how, limit);
    e.rows_meeting_batches = Some(counted.map_or(staging_rows, |(meeting, looked_at)| {
        plan::scaled_meeting(meeting, looked_at, staging_rows)
    }));
    e
}

/// The staging rows of chunk number `idx` meeting its segments, counted `how` up to
/// `limit`: (rows meeting, rows looked at where sampled); None without segments.
fn count_meeting(
    prep: &Prepared,
    chunk: &Chunk,
    (idx, routed): (i32, bool),
    how: Meeting,
    limit: i64,
) -> Option<(i64, Option<i64>)> {
    let segments = &prep.segments_collated;
    let read = |r: &pgrx::spi::SpiHeapTupleData| (col::<i64>(r, 1).unwrap_or(0), col::<i64>(r, 2));
    if prep.segmentby.is_empty() {
        return None;
    }
    let staging = &prep.staging.name;
    if routed {
        let q = route::count_routed_meeting_segments(staging, &chunk.name, segments, how);
        return query_one(&q, &[p(idx.to_string()), p(limit.to_string())], read);
    }
    let filter = prep.filter_for(chunk);
    let (q, params) =
        route::count_rows_meeting_segments(staging, &filter, &chunk.name, segments, how);
    let mut params = spi::params(params);
    params.push(p(limit.to_string()));
    query_one(&q, &params, read)
}
