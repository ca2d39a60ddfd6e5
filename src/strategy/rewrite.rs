//! A merge that touched every segment of a chunk rewrites it: the chunk is emptied
//! and its merged rows written back uncompressed, so compressing it again is a full
//! compression that gives the uncompressed pages back when the transaction commits.
//! The merged rows are held in memory (one array of the destination's row type) when
//! they fit in `maintenance_work_mem`, else in a temporary table. From either they are
//! written in bulk and the chunk's indexes rebuilt once (`spi::bulk`), where the chunk
//! allows it; where nothing reads the chunk before it is compressed, only the indexes
//! that check its rows (compression truncates them all right after). Readers of the
//! chunk wait for the step; when one is already reading, the chunk is merged by
//! segments.

use super::segments;
use crate::ident::QualifiedName;
use crate::spi::{self, col, execute, p, query, query_one};
use crate::sql;
use crate::sql::segment_merge::{reindex_index, MergeSql, CHECKING_INDEXES, MERGE_OLD};
use crate::sql::split::{part, SplitSql, PARTS};
use crate::step::settings;
use crate::step::Prepared;
use crate::step::{ms, StepResult};
use crate::timescale::Chunk;
use pgrx::{notice, pg_sys};
use std::time::Instant;

/// Takes the lock a rewrite needs. Waits at most a second, or `lock_timeout` if
/// shorter: when a query is already reading the chunk, the step merges by segments
/// instead, which readers never wait for.
pub fn lock_chunk(prep: &Prepared, chunk: &Chunk) -> bool {
    let got = spi::in_subtransaction(std::panic::AssertUnwindSafe(|| {
        settings::apply_rewrite_lock_timeout(&prep.cfg);
        execute(&sql::chunk::lock(&chunk.name, "ACCESS EXCLUSIVE"), &[]);
    }));
    settings::apply(&prep.cfg);
    match got {
        Ok(()) => true,
        Err(e) if spi::caught_sqlstate(&e) == "55P03" => {
            notice!(
                "backfill_ext: chunk {}: being read; merging by segments instead of rewriting it",
                chunk.name
            );
            false
        }
        Err(e) => e.rethrow(),
    }
}

/// Whether the merged rows may be held in memory (see `MergeSql::fits_in_memory`).
pub fn fits_in_memory(prep: &Prepared, q: &MergeSql) -> bool {
    prep.row_array_type != 0
        && !spi::rewrite_on_disk()
        && query_one(&q.fits_in_memory, &[], |x| col::<bool>(x, 1).unwrap_or(false))
            .unwrap_or(false)
}

/// Reads every row of the chunk, merged, into memory, empties the chunk and writes
/// them back; then inserts the staging rows with new keys the array did not hold.
pub fn in_memory(
    prep: &Prepared,
    q: &MergeSql,
    chunk: &Chunk,
    kept: i64,
    r: &mut StepResult,
    t: Instant,
) -> Indexes {
    let (rows, counts) = spi::query_value_and_counts(&q.read_merged, &[], 2);
    let new_keys = segments::after_read(q, counts[0], counts[1], kept, r, t);
    let t = Instant::now();
    r.rewrote = true;
    empty_chunk(prep, q, chunk);
    let mut indexes = Indexes::Built;
    if let Some(rows) = rows {
        indexes = write_rows(prep, q, chunk, rows, new_keys, r);
        spi::free_value(rows);
    }
    insert_new_keys(q, new_keys, r);
    r.insert_ms = ms(t);
    indexes
}

/// What a rewrite left of the chunk's indexes for its compression.
pub enum Indexes {
    /// Every index holds every row.
    Built,
    /// Only the unique and exclusion indexes were built; compression must read the
    /// chunk without an index (`compress`). Holds the caller's setting.
    Checking(String),
}

/// Builds the chunk's indexes from the rows written in bulk, before anything reads them.
/// Compressing the chunk truncates every index right after, so where nothing reads the
/// chunk before (no new keys to insert) and TimescaleDB's compression can be told to
/// read it without an index, only the indexes that check the rows are built: unique
/// and exclusion indexes.
fn rebuild_indexes(q: &MergeSql, chunk: &Chunk, new_keys: i64) -> Indexes {
    let saved = if new_keys == 0 { settings::compression_without_indexscan() } else { None };
    let Some(saved) = saved else {
        settings::with_serial_index_build(|| execute(&q.reindex_chunk, &[]));
        return Indexes::Built;
    };
    let checking = query(CHECKING_INDEXES, &[p(chunk.name.quoted())], |x| {
        QualifiedName::new(
            col::<String>(x, 1).unwrap_or_default(),
            col::<String>(x, 2).unwrap_or_default(),
        )
    });
    settings::with_serial_index_build(|| {
        for index in &checking {
            execute(&reindex_index(index), &[]);
        }
    });
    Indexes::Checking(saved)
}

/// Compresses the rewritten chunk; without reading an index where some were left unbuilt.
pub fn compress(prep: &Prepared, chunk: &Chunk, indexes: Indexes) {
    super::compress(prep, &chunk.name);
    if let Indexes::Checking(saved) = indexes {
        settings::restore_compression_indexscan(&saved);
    }
}

/// Inserts the staging rows whose key the rewritten chunk lacks, and empties their
/// temporary table.
fn insert_new_keys(q: &MergeSql, new_keys: i64, r: &mut StepResult) {
    if new_keys > 0 {
        r.inserted += query(&q.insert_new_after_rewrite, &[], |_| ()).len() as i64;
        execute(&q.empty_new, &[]);
    }
}

/// Writes the merged rows into the emptied chunk: in bulk, its indexes rebuilt after;
/// row by row where the chunk needs an ordinary insert (`r` says why).
fn write_rows(
    prep: &Prepared,
    q: &MergeSql,
    chunk: &Chunk,
    rows: pg_sys::Datum,
    new_keys: i64,
    r: &mut StepResult,
) -> Indexes {
    match spi::bulk::write_array(chunk_oid(chunk), rows) {
        Ok(_) => rebuild_indexes(q, chunk, new_keys),
        Err(why) => {
            r.rewrote_by_insert = Some(why.to_string());
            spi::run_with_value(&q.write_merged, rows, pg_sys::Oid::from(prep.row_array_type));
            Indexes::Built
        }
    }
}

/// A chunk's oid (looked up where the plan did not read it).
pub(super) fn chunk_oid(chunk: &Chunk) -> pg_sys::Oid {
    pg_sys::Oid::from(match chunk.oid {
        0 => crate::catalog::existing_oid(&chunk.name.quoted()),
        oid => oid,
    })
}

/// Like `in_memory`, through the merge's temporary tables: one part at a time where
/// they are split by segments (`sql::split`).
#[allow(clippy::too_many_arguments)]
pub fn on_disk(
    prep: &Prepared,
    q: &MergeSql,
    split: Option<&SplitSql>,
    chunk: &Chunk,
    segments: &str,
    kept: i64,
    r: &mut StepResult,
    t: Instant,
) -> Indexes {
    // where staging has every column, the rows with new keys go into MERGE_OLD too, and
    // nothing is left to insert through the chunk after it is written
    let new_keys = match (split, &q.read_all) {
        (Some(split), _) => read_parts(q, split, kept, r, t),
        (None, Some(read_all)) => segments::read_into_old(q, read_all, &[], kept, r, t),
        (None, None) => segments::read_touched(q, segments, kept, r, t),
    };
    let t = Instant::now();
    r.rewrote = true;
    r.rewrote_on_disk = true;
    empty_chunk(prep, q, chunk);
    let written = match split {
        Some(split) => write_parts(split, chunk),
        None => spi::bulk::write_table(chunk_oid(chunk), existing(MERGE_OLD))
            .map(|_| execute(&q.empty_old, &[])),
    };
    let indexes = match written {
        // the rows are in the chunk, their temporary table's space given back before its indexes
        // are built
        Ok(()) => {
            let indexes = rebuild_indexes(q, chunk, new_keys);
            insert_new_keys(q, new_keys, r);
            indexes
        }
        Err(why) => {
            r.rewrote_by_insert = Some(why.to_string());
            segments::write_back(q, new_keys, r);
            Indexes::Built
        }
    };
    r.insert_ms = ms(t);
    indexes
}

/// The oid of an existing table (a run's temporary table).
pub(super) fn existing(table: &str) -> pg_sys::Oid {
    pg_sys::Oid::from(crate::catalog::existing_oid(table))
}

/// Reads the chunk part by part into MERGE_OLD's parts, emptying each part of
/// MERGE_NEW once read; returns the staging rows with new keys left to insert.
fn read_parts(q: &MergeSql, split: &SplitSql, kept: i64, r: &mut StepResult, t: Instant) -> i64 {
    let (mut updated, mut new_in_rows) = (0, 0);
    for k in 0..PARTS {
        // a part without staging rows has no segment of the chunk: every segment was touched
        if let Some(segments) =
            query_one(&split.segments[k], &[], |x| col::<String>(x, 1)).flatten()
        {
            let (u, n) = query_one(&split.read[k], &[p(segments)], |x| {
                (col::<i64>(x, 2).unwrap_or(0), col::<i64>(x, 3).unwrap_or(0))
            })
            .unwrap();
            updated += u;
            new_in_rows += n;
            execute(&split.empty_new[k], &[]);
        }
    }
    segments::after_read(q, updated, new_in_rows, kept, r, t)
}

/// Writes MERGE_OLD's parts into the emptied chunk in bulk, emptying each once written.
/// A chunk that cannot be written in bulk is refused before its first row.
fn write_parts(split: &SplitSql, chunk: &Chunk) -> Result<(), &'static str> {
    for k in 0..PARTS {
        spi::bulk::write_table(chunk_oid(chunk), existing(&part(MERGE_OLD, k)))?;
        execute(&split.empty_old[k], &[]);
    }
    Ok(())
}

/// Empties a chunk for its rewrite, compressed part included, and marks it
/// uncompressed (decompressing what is now empty), so that its rows go back in as
/// plain rows and compressing it again is a full compression.
fn empty_chunk(prep: &Prepared, q: &MergeSql, chunk: &Chunk) {
    execute(&q.truncate_chunk, &[]);
    super::decompress_chunk(prep, &chunk.name);
}
