//! The touched segments of a merge, through the temporary table MERGE_OLD: read with
//! the staging values applied, then written back (a merge by segments, or a chunk
//! rewrite that does not fit in memory).

use crate::spi::{col, execute, p, query, query_one, Param};
use crate::sql::segment_merge::MergeSql;
use crate::step::{ms, StepResult};
use std::time::Instant;

/// Writes the touched segments' rows, merged, into MERGE_OLD; returns the staging rows
/// with keys the chunk lacks. `t`: when the step began reading.
pub fn read_touched(
    q: &MergeSql,
    segments: &str,
    kept: i64,
    r: &mut StepResult,
    t: Instant,
) -> i64 {
    read_into_old(q, &q.read_old, &[p(segments)], kept, r, t)
}

/// Runs `read` (`read_old` or `read_all`), which writes merged rows into MERGE_OLD and
/// returns (rows written, rows updated, staging rows with new keys written); returns
/// the staging rows with new keys left to insert.
pub fn read_into_old(
    q: &MergeSql,
    read: &str,
    params: &[Param],
    kept: i64,
    r: &mut StepResult,
    t: Instant,
) -> i64 {
    let (updated, new_in_rows) =
        query_one(read, params, |x| (col::<i64>(x, 2).unwrap_or(0), col::<i64>(x, 3).unwrap_or(0)))
            .unwrap();
    after_read(q, updated, new_in_rows, kept, r, t)
}

/// Records a merge's read (rows `updated`, staging rows with new keys `new_in_rows`
/// already among the merged rows, of the `kept` staging rows); returns the staging rows
/// with new keys left to insert. Where none is left, every staging row's values are
/// among the merged rows: MERGE_NEW's space goes back before the write.
pub fn after_read(
    q: &MergeSql,
    updated: i64,
    new_in_rows: i64,
    kept: i64,
    r: &mut StepResult,
    t: Instant,
) -> i64 {
    r.updated = updated;
    r.inserted = new_in_rows;
    let new_keys = kept - updated - new_in_rows;
    if new_keys == 0 {
        execute(&q.empty_new, &[]);
    }
    r.decompress_ms = ms(t);
    new_keys
}

/// Writes MERGE_OLD back into the chunk, inserts the staging rows with new keys, and
/// empties both temporary tables.
pub fn write_back(q: &MergeSql, new_keys: i64, r: &mut StepResult) {
    execute(&q.write_old, &[]);
    if new_keys > 0 {
        r.inserted = query(&q.insert_new, &[], |_| ()).len() as i64;
    }
    execute(&q.empty_old, &[]);
    if new_keys > 0 {
        execute(&q.empty_new, &[]);
    }
}
