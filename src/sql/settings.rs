//! The run's own settings (`lock_timeout`, `work_mem`), set for the current
//! transaction only, and reading intervals given in the config.

/// The session's `lock_timeout` where it has one (a role's or database's setting for
/// jobs), else `$1`, the default.
pub const SESSION_LOCK_TIMEOUT: &str =
    "SELECT CASE WHEN pg_catalog.current_setting('lock_timeout') = '0' THEN $1 \
     ELSE pg_catalog.current_setting('lock_timeout') END";

/// An interval (`$1`) in seconds.
pub const INTERVAL_SECONDS: &str = "SELECT extract(epoch FROM $1::interval)::float8";

/// The current value of setting `$1`.
pub const CURRENT_SETTING: &str = "SELECT pg_catalog.current_setting($1)";

/// Sets setting `$1` to `$2` until the end of the transaction.
pub const SET_LOCAL: &str = "SELECT pg_catalog.set_config($1, $2, true)";

/// Builds indexes without parallel workers until the end of the transaction; returns
/// the setting it replaced.
pub const SERIAL_INDEX_BUILD: &str =
    "SELECT pg_catalog.current_setting('max_parallel_maintenance_workers'), \
     pg_catalog.set_config('max_parallel_maintenance_workers', '0', true)";

/// Joins without a merge join until the end of the transaction; returns the setting it
/// replaced.
pub const WITHOUT_MERGE_JOIN: &str = "SELECT pg_catalog.current_setting('enable_mergejoin'), \
     pg_catalog.set_config('enable_mergejoin', 'off', true)";

/// Joins without a nested loop until the end of the transaction; returns the setting it
/// replaced.
pub const WITHOUT_NESTED_LOOP: &str = "SELECT pg_catalog.current_setting('enable_nestloop'), \
     pg_catalog.set_config('enable_nestloop', 'off', true)";

/// TimescaleDB's compression reads a chunk with a sequential scan and a sort, never
/// through one of its indexes, until the end of the transaction; returns the setting
/// it replaced, or NULL (and sets nothing) where this TimescaleDB has no such setting.
pub const COMPRESSION_WITHOUT_INDEXSCAN: &str = "SELECT s, CASE WHEN s IS NOT NULL THEN \
       pg_catalog.set_config('timescaledb.enable_compression_indexscan', 'off', true) END \
     FROM (SELECT pg_catalog.current_setting('timescaledb.enable_compression_indexscan', true) AS \
     s) AS setting";

/// Raises `work_mem` to `maintenance_work_mem` until the end of the transaction, where
/// that is larger (a merge step's sorts and hashes then stay in memory).
pub const RAISE_WORK_MEM_TO_MAINTENANCE: &str = "SELECT pg_catalog.set_config('work_mem', \
    pg_catalog.current_setting('maintenance_work_mem'), true) \
     WHERE pg_catalog.pg_size_bytes(pg_catalog.current_setting('maintenance_work_mem')) > \
     pg_catalog.pg_size_bytes(pg_catalog.current_setting('work_mem'))";

/// Sets `lock_timeout` (milliseconds) from an interval (`$1`) until the end of the transaction.
pub const SET_LOCK_TIMEOUT: &str =
    "SELECT pg_catalog.set_config('lock_timeout', (extract(epoch FROM $1::interval) * \
     1000)::int8::text, true)";

/// Sets `lock_timeout` to one second, or to `$1` (an interval) if that is shorter and
/// not zero, until the end of the transaction (a chunk rewrite's lock attempt).
pub const SET_REWRITE_LOCK_TIMEOUT: &str = "SELECT pg_catalog.set_config('lock_timeout', \
     (CASE WHEN $1::interval > interval '0' AND $1::interval < interval '1 second' \
           THEN extract(epoch FROM $1::interval) * 1000 ELSE 1000 END)::int8::text, true)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_last_for_the_transaction_only() {
        for q in [SET_LOCAL, SET_LOCK_TIMEOUT, SET_REWRITE_LOCK_TIMEOUT] {
            assert!(q.starts_with("SELECT pg_catalog.set_config("), "{q}");
            assert!(q.ends_with(", true)"), "is_local must be true: {q}");
        }
        // the compression setting is local, and set only where it exists
        assert!(COMPRESSION_WITHOUT_INDEXSCAN.contains(
            "CASE WHEN s IS NOT NULL THEN \
            pg_catalog.set_config('timescaledb.enable_compression_indexscan', 'off', true) END"
        ));
        // never lowers work_mem
        assert!(RAISE_WORK_MEM_TO_MAINTENANCE.contains(", true) WHERE "));
        assert!(RAISE_WORK_MEM_TO_MAINTENANCE
            .ends_with("> pg_catalog.pg_size_bytes(pg_catalog.current_setting('work_mem'))"));
        for q in [SERIAL_INDEX_BUILD, WITHOUT_MERGE_JOIN, WITHOUT_NESTED_LOOP] {
            assert!(q.contains(", true)"), "is_local must be true: {q}");
        }
        for q in [SET_LOCAL] {
            assert!(q.starts_with("SELECT pg_catalog.set_config("), "{q}");
            assert!(q.ends_with(", true)"), "is_local must be true: {q}");
        }
    }

    #[test]
    fn intervals_are_parameters_converted_to_milliseconds() {
        assert!(SET_LOCK_TIMEOUT.contains("extract(epoch FROM $1::interval) * 1000"));
        assert!(SET_REWRITE_LOCK_TIMEOUT.contains("$1::interval < interval '1 second'"));
        assert!(SET_REWRITE_LOCK_TIMEOUT.contains("ELSE 1000 END"));
        assert_eq!(INTERVAL_SECONDS, "SELECT extract(epoch FROM $1::interval)::float8");
    }

    #[test]
    fn an_unset_lock_timeout_takes_the_default() {
        assert!(SESSION_LOCK_TIMEOUT.contains("current_setting('lock_timeout') = '0' THEN $1"));
    }
}
