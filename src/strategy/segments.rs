//! The touched segments of a merge, through the temporary table MERGE_OLD: read with
//! the staging values applied, then written back (a merge by segments, or a chunk
//! rewrite that does not fit in memory).

use crate::run::outcome::{ms, StepResult};
use crate::spi::{col, p, query, query_one, run as exec};
use crate::sql::merge::MergeSql;
use std::time::Instant;

/// Writes the touched segments' rows, merged, into MERGE_OLD; returns the staging rows
/// with keys the chunk lacks. `t`: when the step began reading.
pub fn read_touched(q: &MergeSql, segments: &str, kept: i64, r: &mut StepResult, t: Instant) -> i64 {
    let (_, updated) = query_one(&q.read_old, &[p(segments)], |x| (col::<i64>(x, 1).unwrap_or(0), col::<i64>(x, 2).unwrap_or(0))).unwrap();
    r.updated = updated;
    let new_keys = kept - updated;
    if new_keys == 0 {
        // every staging row updated a row now in MERGE_OLD: give its space back before writing
        exec(&q.empty_new, &[]);
    }
    r.decompress_ms = ms(t);
    new_keys
}

/// Writes MERGE_OLD back into the chunk, inserts the staging rows with new keys, and
/// empties both temporary tables.
pub fn write_back(q: &MergeSql, new_keys: i64, r: &mut StepResult) {
    exec(&q.write_old, &[]);
    if new_keys > 0 {
        r.inserted = query(&q.insert_new, &[], |_| ()).len() as i64;
    }
    exec(&q.empty_old, &[]);
    if new_keys > 0 {
        exec(&q.empty_new, &[]);
    }
}
