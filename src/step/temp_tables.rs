//! The run's temporary tables (the route table, a merge's two tables, new segments'):
//! dropped by name where they exist, by a step that makes them anew and at the end of a
//! run.

use crate::spi::{col, execute, p, query_one};
use crate::sql::{chunk, new_segments, route, segment_merge};

fn exists(table: &str) -> bool {
    query_one(chunk::TEMP_TABLE_EXISTS, &[p(table)], |r| col::<bool>(r, 1).unwrap_or(false))
        .unwrap_or(false)
}

/// Drops the run's temporary tables of `names` that exist.
pub fn drop_named(names: &[&str]) {
    for table in names {
        if exists(table) {
            execute(&chunk::drop_temp_table(table), &[]);
        }
    }
}

/// Drops every temporary table of the run (routing, merge), at its end.
pub fn drop_all() {
    drop_named(&[
        route::ROUTE_TABLE,
        segment_merge::MERGE_NEW,
        segment_merge::MERGE_OLD,
        new_segments::BULK_NEW,
    ]);
}
