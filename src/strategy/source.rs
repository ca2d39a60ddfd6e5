//! Where a step's rows come from and the one statement that moves them: deleted from
//! staging and inserted into the destination together, so a row is never lost nor in
//! both. Every strategy moves its rows through `move_rows`.

use crate::config::ConflictAction;
use crate::error::{BackfillError, Code};
use crate::ident::QualifiedName;
use crate::spi::{self, col, p, query, query_one, raise, Param};
use crate::sql::{self, moves, RowFilter};
use crate::step::Prepared;
use crate::timescale::Chunk;

/// Where a step's rows come from: a filter on staging, or the routing table.
#[derive(Clone, Copy)]
pub enum RowSource<'a> {
    Filter(&'a RowFilter),
    Routed(&'a [i32]),
    /// Several chunks' rows by their filters (numbered by chunk number).
    Chunks(&'a [(i32, RowFilter)]),
    /// Several chunks' rows by their time ranges alone: (chunk number, chunk), in time order.
    Buckets(&'a [(i32, &'a Chunk)]),
}

/// What a move statement did: rows taken per chunk number, and rows inserted and
/// updated per chunk OID (0 for both on the filter path).
pub struct Moved {
    pub moved: Vec<(i32, i64)>,
    pub inserted: Vec<(u32, i64, i64)>,
}

impl Moved {
    /// Rows taken, inserted and updated.
    pub fn total(&self) -> (i64, i64, i64) {
        (
            self.moved.iter().map(|m| m.1).sum(),
            self.inserted.iter().map(|i| i.1).sum(),
            self.inserted.iter().map(|i| i.2).sum(),
        )
    }
}

/// Moves rows from staging into the destination in one statement. `filter` also
/// scopes the RESTRICT probe, which looks in `probed` (the step's chunk, else the
/// destination); `label` names the rows' place in its error.
pub fn move_rows(
    prep: &Prepared,
    take: RowSource,
    filter: &RowFilter,
    label: &str,
    probed: Option<&QualifiedName>,
) -> Moved {
    let spec = &prep.spec;
    if spec.conflict.action == ConflictAction::Restrict && !spec.conflict.target.is_empty() {
        refuse_existing_keys(prep, filter, label, probed.unwrap_or(&spec.destination));
    }
    match take {
        RowSource::Filter(f) => {
            let (q, params) = moves::move_rows(spec, f);
            let (m, i, u) = query_one(&q, &spi::params(params), three_counts).unwrap();
            Moved { moved: vec![(0, m)], inserted: vec![(0, i, u)] }
        }
        RowSource::Routed(_) | RowSource::Chunks(_) | RowSource::Buckets(_) => {
            move_numbered(prep, take)
        }
    }
}

/// Three bigints of a row.
pub fn three_counts(r: &pgrx::spi::SpiHeapTupleData) -> (i64, i64, i64) {
    (col::<i64>(r, 1).unwrap_or(0), col::<i64>(r, 2).unwrap_or(0), col::<i64>(r, 3).unwrap_or(0))
}

/// RESTRICT: raises 23505 naming the first key of the step's rows that exists already.
fn refuse_existing_keys(prep: &Prepared, filter: &RowFilter, label: &str, probed: &QualifiedName) {
    let (q, params) = moves::restrict_probe(&prep.spec, filter, probed);
    if let Some(key) = query_one(&q, &spi::params(params), |r| col::<String>(r, 1)).flatten() {
        raise(
            BackfillError::new(
                Code::UniqueViolation,
                format!(
                    "key {key} already exists in {label} \
                of destination {}",
                    prep.dest.name
                ),
            )
            .detail(
                "on_conflict_action is RESTRICT; this chunk was rolled back and its rows \
                    stay in the staging table",
            )
            .hint(
                "remove the conflicting staging rows, or use on_conflict_action NOTHING or \
                    UPDATE",
            ),
        );
    }
}

/// Moves one chunk's rows, taken by its filter or its routed rows, for TimescaleDB to
/// write as compressed batches in `order` (`moves::compress_rows`); returns the rows
/// moved, each of them inserted.
pub fn compress_rows(prep: &Prepared, take: RowSource, order: &str) -> i64 {
    let (cond, params) = match take {
        RowSource::Filter(f) => {
            let (cond, params) = f.render("s", 1);
            (cond, spi::params(params))
        }
        RowSource::Routed(idxs) => (
            sql::route::routed_where("r.idx = ANY ($1::int4[])"),
            vec![idx_array(idxs.iter().copied())],
        ),
        RowSource::Chunks(_) | RowSource::Buckets(_) => {
            unreachable!("a step of its own takes its rows by filter or route")
        }
    };
    spi::execute_counted(&moves::compress_rows(&prep.spec, &cond, order), &params)
}

/// The rows of chunks told by number (routed, by filters or by time buckets).
fn move_numbered(prep: &Prepared, take: RowSource) -> Moved {
    let spec = &prep.spec;
    let (q, params): (String, Vec<Param>) = match take {
        RowSource::Routed(idxs) => {
            (moves::move_routed_rows(spec, idxs.len() == 1), vec![idx_array(idxs.iter().copied())])
        }
        RowSource::Chunks(chunks) => {
            let (q, params) = moves::move_chunk_rows(spec, chunks);
            (q, spi::params(params))
        }
        RowSource::Buckets(chunks) => {
            let ht = prep.ht.as_ref().expect("chunks belong to a hypertable");
            let mut params = spi::params(sql::route::bounds(chunks.iter().map(|(_, c)| *c)));
            params.push(idx_array(chunks.iter().map(|(i, _)| *i)));
            (moves::move_bucketed_rows(spec, &ht.time_column, ht.kind), params)
        }
        RowSource::Filter(_) => unreachable!("a filter moves through moves::move_rows"),
    };
    let rows = query(&q, &params, |r| {
        (
            col::<String>(r, 1).unwrap_or_default(),
            col::<i64>(r, 2).unwrap_or(0),
            col::<i64>(r, 3).unwrap_or(0),
            col::<i64>(r, 4).unwrap_or(0),
        )
    });
    let mut out = Moved { moved: vec![], inserted: vec![] };
    for (kind, key, a, b) in rows {
        if kind == "moved" {
            out.moved.push((key as i32, a));
        } else {
            out.inserted.push((key as u32, a, b));
        }
    }
    out
}

/// Chunk numbers as an int4[] parameter.
fn idx_array(idxs: impl Iterator<Item = i32>) -> Param {
    p(format!("{{{}}}", idxs.map(|i| i.to_string()).collect::<Vec<_>>().join(",")))
}
