//! Statements on one chunk or on the staging table as a whole: compressing,
//! decompressing, reading a chunk's status, locking, and the run's temporary tables.

use super::route::ROUTE_TABLE;
use crate::ident::{quote_ident, QualifiedName};
use crate::timescale::CHUNK_STATUS_FN;

/// Compresses chunk `$1` (`compress_chunk`, `if_not_compressed`).
pub fn compress(compress_chunk: &str) -> String {
    format!("SELECT {compress_chunk}($1::regclass, true)")
}

/// Decompresses chunk `$1` (`decompress_chunk`, `if_compressed`).
pub fn decompress(decompress_chunk: &str) -> String {
    format!("SELECT {decompress_chunk}($1::regclass, true)")
}

/// The status bits of chunk `$1`.
pub fn status() -> String {
    format!("SELECT {CHUNK_STATUS_FN}($1::regclass)")
}

/// Compresses again those of the chunks `$1` (regclass[] text) whose status has a bit
/// of `$2`; returns each compressed chunk's OID.
pub fn compress_partial(compress_chunk: &str) -> String {
    format!(
        "SELECT x.c::oid::int8, {compress_chunk}(x.c, true) FROM (SELECT c FROM \
         pg_catalog.unnest($1::regclass[]) AS c \
         WHERE {CHUNK_STATUS_FN}(c) & $2::int <> 0 OFFSET 0) AS x"
    )
}

/// Locks a table in `mode` (an SQL lock mode keyword) until the end of the transaction.
pub fn lock(table: &QualifiedName, mode: &str) -> String {
    format!("LOCK TABLE {} IN {mode} MODE", table.quoted())
}

/// A table's rows.
pub fn count_rows(table: &QualifiedName) -> String {
    format!("SELECT count(*)::int8 FROM {}", table.quoted())
}

/// Staging rows with a NULL time.
pub fn count_null_times(staging: &QualifiedName, time_column: &str) -> String {
    format!(
        "SELECT count(*)::int8 FROM {} AS s WHERE s.{} IS NULL",
        staging.quoted(),
        quote_ident(time_column)
    )
}

/// Creates the route table (see `route::ROUTE_TABLE`).
pub fn create_route_table() -> String {
    // the ids are stored as they are: compressing a slice of 8,192 ids took about half a
    // millisecond, longer than writing it (2.16 million staging rows: 158 ms of the plan)
    format!(
        "CREATE TEMP TABLE {} (idx int4 NOT NULL, tids tid[] NOT NULL); ALTER TABLE {ROUTE_TABLE} \
         ALTER COLUMN tids SET STORAGE EXTERNAL",
        ROUTE_TABLE.trim_start_matches("pg_temp.")
    )
}

/// Whether temporary table `$1` (`pg_temp.name`) exists.
pub const TEMP_TABLE_EXISTS: &str = "SELECT pg_catalog.to_regclass($1) IS NOT NULL";

/// Drops one of the run's temporary tables (`pg_temp.` names from this module's callers).
pub fn drop_temp_table(name: &str) -> String {
    debug_assert!(name.starts_with("pg_temp."));
    format!("DROP TABLE {name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_functions_take_regclass_parameters() {
        assert_eq!(
            compress("public.compress_chunk"),
            "SELECT public.compress_chunk($1::regclass, true)"
        );
        assert_eq!(
            decompress("ts.decompress_chunk"),
            "SELECT ts.decompress_chunk($1::regclass, true)"
        );
        assert_eq!(status(), "SELECT _timescaledb_functions.chunk_status($1::regclass)");
        let q = compress_partial("public.compress_chunk");
        assert!(q.contains("public.compress_chunk(x.c, true)"));
        assert!(q.contains("_timescaledb_functions.chunk_status(c) & $2::int <> 0"));
        assert!(q.contains("unnest($1::regclass[])"));
    }

    #[test]
    fn names_are_quoted() {
        let t = QualifiedName::new("my schema", "Odd\"Name");
        assert_eq!(
            lock(&t, "EXCLUSIVE"),
            "LOCK TABLE \"my schema\".\"Odd\"\"Name\" IN EXCLUSIVE MODE"
        );
        assert_eq!(count_rows(&t), "SELECT count(*)::int8 FROM \"my schema\".\"Odd\"\"Name\"");
        assert_eq!(
            count_null_times(&t, "Time"),
            "SELECT count(*)::int8 FROM \"my \
            schema\".\"Odd\"\"Name\" AS s WHERE s.\"Time\" IS NULL"
        );
    }

    #[test]
    fn the_route_table_is_temporary() {
        assert_eq!(
            create_route_table(),
            "CREATE TEMP TABLE _backfill_rows (idx int4 NOT NULL, tids tid[] NOT NULL); ALTER \
             TABLE pg_temp._backfill_rows ALTER COLUMN tids SET STORAGE EXTERNAL"
        );
        assert_eq!(drop_temp_table(ROUTE_TABLE), "DROP TABLE pg_temp._backfill_rows");
    }
}
