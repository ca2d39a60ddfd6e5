//! The run history's statements (`_backfill_ext.run`, `_backfill_ext.run_chunk`).

/// Marks the runs of destination `$1` (an oid) still "running" whose backend is gone
/// (or is this one, which runs no other run now) as failed: interrupted.
pub const MARK_INTERRUPTED: &str = "UPDATE _backfill_ext.run SET status = 'failed', finished = \
    clock_timestamp(), sqlstate = '57P01', \
            error = 'interrupted: the backend running it ended before it finished' \
     WHERE destination_oid = $1::oid AND status = 'running' \
       AND (pid = pg_catalog.pg_backend_pid() \
            OR pid NOT IN (SELECT pg_catalog.pg_stat_get_backend_pid(b) FROM \
            pg_catalog.pg_stat_get_backend_idset() AS b))";

/// Deletes destination `$2`'s finished runs that started more than `$1` (an interval)
/// ago and that role `$3` may see: its own, and all runs on destinations it owns.
pub const PRUNE: &str =
    "DELETE FROM _backfill_ext.run WHERE destination_oid = $2::oid AND started \
    < now() - $1::interval \
       AND status <> 'running' AND (pg_catalog.pg_has_role($3::name, run_by, 'USAGE') \
            OR pg_catalog.pg_has_role($3::name, (SELECT c.relowner FROM pg_catalog.pg_class AS c \
            WHERE c.oid = destination_oid), 'USAGE'))";

/// Deletes the finished runs of job `$1` (NULL: run by hand) whose destination was never
/// resolved, that started more than `$2` ago, made by role `$3`.
pub const PRUNE_UNRESOLVED: &str = "DELETE FROM _backfill_ext.run WHERE destination_oid IS NULL \
    AND job_id IS NOT DISTINCT FROM $1::int \
       AND started < now() - $2::interval AND status <> 'running' AND \
       pg_catalog.pg_has_role($3::name, run_by, 'USAGE')";

/// Starts a run's record (job, staging, destination, destination oid, the role that
/// runs it); returns its id.
pub const START: &str =
    "INSERT INTO _backfill_ext.run (job_id, staging, destination, destination_oid, run_by) \
     VALUES ($1::int, $2, $3, $4::oid, $5::name) RETURNING id";

/// Records the chunks a transaction finished: run `$1`, then one array per column (NULL
/// bounds given as the text NULL).
pub const RECORD_CHUNKS: &str = "INSERT INTO _backfill_ext.run_chunk (run_id, chunk, range_start, \
    range_end, rows_moved, conflicts, \
            decompressed, recompressed, decompress_ms, insert_ms, recompress_ms, strategy) \
     SELECT $1::int8, c, nullif(lo, 'NULL'), nullif(hi, 'NULL'), m, k, d, r, dm, im, rm, st \
     FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::bool[], \
     $8::bool[], \
                 $9::float8[], $10::float8[], $11::float8[], $12::text[]) AS x(c, lo, hi, m, k, d, \
                 r, dm, im, rm, st)";

/// Adds to run `$1`'s totals: rows moved, conflicts, chunks decompressed and
/// recompressed, new chunks (`$2`..`$6`).
pub const ADD_TOTALS: &str = "UPDATE _backfill_ext.run SET rows_moved = rows_moved + $2::int8, \
    conflicts = conflicts + $3::int8, \
            chunks_decompressed = chunks_decompressed + $4::int, chunks_recompressed = \
            chunks_recompressed + $5::int, \
            new_chunks = new_chunks + $6::int \
     WHERE id = $1::int8";

/// Marks run `$1` succeeded; `$2`: whether it stopped early.
pub const SUCCEED: &str =
    "UPDATE _backfill_ext.run SET status = 'succeeded', finished = clock_timestamp(), \
     stopped_early = $2::bool WHERE id = $1::int8";

/// Marks run `$1` failed with SQLSTATE `$2` and message `$3`.
pub const FAIL: &str = "UPDATE _backfill_ext.run SET status = 'failed', finished = \
    clock_timestamp(), sqlstate = $2, error = $3 \
     WHERE id = $1::int8";

/// One finished record for a run that ended before it started: job, staging,
/// destination, destination oid, status, SQLSTATE, message, the role that ran it.
pub const ENDED: &str = "INSERT INTO _backfill_ext.run (job_id, staging, destination, \
    destination_oid, status, finished, sqlstate, error, run_by) \
     VALUES ($1::int, $2, $3, $4::oid, $5, clock_timestamp(), $6, $7, $8::name)";

/// The latest running run of destination `$1`, as "run N (job J, backend P, started T)".
pub const HOLDER: &str =
    "SELECT format('run %s (%sbackend %s, started %s)', id, coalesce('job ' || job_id || ', ', \
     ''), pid, started) \
     FROM _backfill_ext.run WHERE destination_oid = $1::oid AND status = 'running' ORDER BY \
     started DESC LIMIT 1";

/// Marks the refreshes of destination `$1`'s runs that never finished (the refresh
/// raised an error, which ended the run's call) as failed.
pub const MARK_REFRESHES_FAILED: &str = "UPDATE _backfill_ext.run_refresh AS f SET status = \
    'failed', finished = clock_timestamp(), \
            note = 'the refresh raised an error (see timescaledb_information.job_errors or the \
            server log)' \
     FROM _backfill_ext.run AS r WHERE r.id = f.run_id AND r.destination_oid = $1::oid AND \
     f.status = 'refreshing'";

/// Whether the refresh history exists (an extension not yet updated to 0.2.0 lacks it).
pub const HAS_REFRESH_TABLE: &str =
    "SELECT pg_catalog.to_regclass('_backfill_ext.run_refresh') IS NOT NULL";

/// Records run `$1`'s refresh of continuous aggregate `$2` over `[$3, $4)` with status
/// `$5` and note `$6` (the refresh commits on its own, so it is recorded first as
/// 'refreshing').
pub const REFRESH: &str = "INSERT INTO _backfill_ext.run_refresh (run_id, continuous_aggregate, \
    range_start, range_end, status, note) \
     VALUES ($1::int8, $2, $3, $4, $5, $6)";

/// Marks run `$1`'s refresh of `$2` done, in `$3` milliseconds.
pub const REFRESHED: &str =
    "UPDATE _backfill_ext.run_refresh SET status = 'refreshed', refresh_ms \
    = $3::float8, finished = clock_timestamp() \
     WHERE run_id = $1::int8 AND continuous_aggregate = $2 AND status = 'refreshing'";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::checks::params;

    /// The items of the first parenthesized list after `after` (split at its own commas).
    fn list_after<'a>(sql: &'a str, after: &str) -> Vec<&'a str> {
        let rest =
            &sql[sql.find(after).unwrap_or_else(|| panic!("{after}: {sql}")) + after.len()..];
        let (mut items, mut depth, mut start) = (vec![], 0, 0);
        for (i, c) in rest.char_indices() {
            match c {
                '(' if depth == 0 => (depth, start) = (1, i + 1),
                '(' => depth += 1,
                ',' | ')' if depth == 1 => {
                    items.push(rest[start..i].trim());
                    if c == ')' {
                        return items;
                    }
                    start = i + 1;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        panic!("no list after {after}: {sql}")
    }

    #[test]
    fn start_fails_the_interrupted_and_prunes_its_destination_only() {
        assert_eq!(params(MARK_INTERRUPTED), ["$1::oid"]);
        assert!(MARK_INTERRUPTED.starts_with(
            "UPDATE _backfill_ext.run SET status = 'failed', \
            finished = clock_timestamp(), sqlstate = '57P01'"
        ));
        assert!(MARK_INTERRUPTED.contains(
            "WHERE destination_oid = $1::oid AND status = \
            'running'"
        ));
        // only runs whose backend is gone (or is this one)
        assert!(MARK_INTERRUPTED.ends_with(
            "AND (pid = pg_catalog.pg_backend_pid() OR pid NOT IN (SELECT \
             pg_catalog.pg_stat_get_backend_pid(b) FROM pg_catalog.pg_stat_get_backend_idset() AS \
             b))"
        ));
        assert_eq!(params(PRUNE), ["$1::interval", "$2::oid", "$3::name"]);
        assert!(
            PRUNE.starts_with("DELETE FROM _backfill_ext.run WHERE destination_oid = $2::oid AND ")
        );
        assert!(PRUNE.contains(" AND started < now() - $1::interval AND status <> 'running'"));
        // only what the role may see: its own runs, and the runs on destinations it owns
        assert!(PRUNE.contains(
            "AND (pg_catalog.pg_has_role($3::name, run_by, 'USAGE') OR \
            pg_catalog.pg_has_role($3::name, (SELECT c.relowner"
        ));
        assert_eq!(params(START), ["$1::int", "$2", "$3", "$4::oid", "$5::name"]);
        assert_eq!(
            list_after(START, "INSERT INTO _backfill_ext.run"),
            ["job_id", "staging", "destination", "destination_oid", "run_by"]
        );
        assert!(START.ends_with("VALUES ($1::int, $2, $3, $4::oid, $5::name) RETURNING id"));
    }

    #[test]
    fn runs_that_never_started() {
        assert_eq!(params(PRUNE_UNRESOLVED), ["$1::int", "$2::interval", "$3::name"]);
        assert!(PRUNE_UNRESOLVED.starts_with(
            "DELETE FROM _backfill_ext.run WHERE destination_oid \
            IS NULL AND job_id IS NOT DISTINCT FROM $1::int"
        ));
        assert!(PRUNE_UNRESOLVED.ends_with(
            "AND started < now() - $2::interval AND status <> \
            'running' AND pg_catalog.pg_has_role($3::name, run_by, 'USAGE')"
        ));
        assert_eq!(params(ENDED), ["$1::int", "$2", "$3", "$4::oid", "$5", "$6", "$7", "$8::name"]);
        let columns = list_after(ENDED, "INSERT INTO _backfill_ext.run");
        assert_eq!(
            columns,
            [
                "job_id",
                "staging",
                "destination",
                "destination_oid",
                "status",
                "finished",
                "sqlstate",
                "error",
                "run_by"
            ]
        );
        assert_eq!(list_after(ENDED, "VALUES").len(), columns.len());
        assert!(ENDED.contains("$5, clock_timestamp(), $6, $7"));
    }

    #[test]
    fn chunks_and_totals() {
        let casts = [
            "int8", "text[]", "text[]", "text[]", "int8[]", "int8[]", "bool[]", "bool[]",
            "float8[]", "float8[]", "float8[]", "text[]",
        ];
        let expected: Vec<String> =
            casts.iter().enumerate().map(|(i, c)| format!("${}::{c}", i + 1)).collect();
        assert_eq!(params(RECORD_CHUNKS), expected);
        let columns = list_after(RECORD_CHUNKS, "INSERT INTO _backfill_ext.run_chunk");
        assert_eq!(columns.first(), Some(&"run_id"));
        assert_eq!(columns.last(), Some(&"strategy"));
        assert_eq!(columns.len(), 12);
        assert!(RECORD_CHUNKS.contains(
            " SELECT $1::int8, c, nullif(lo, 'NULL'), nullif(hi, \
            'NULL'), m, k, d, r, dm, im, rm, st FROM unnest("
        ));
        assert_eq!(list_after(RECORD_CHUNKS, "FROM unnest").len(), columns.len() - 1);
        assert_eq!(list_after(RECORD_CHUNKS, "AS x").len(), columns.len() - 1);
        assert_eq!(
            params(ADD_TOTALS),
            ["$1::int8", "$2::int8", "$3::int8", "$4::int", "$5::int", "$6::int"]
        );
        for total in [
            "rows_moved = rows_moved + $2",
            "conflicts = conflicts + $3",
            "chunks_decompressed = chunks_decompressed + $4",
        ] {
            assert!(ADD_TOTALS.contains(total), "{total}");
        }
        assert!(ADD_TOTALS.contains(
            "chunks_recompressed = chunks_recompressed + $5::int, \
            new_chunks = new_chunks + $6::int"
        ));
        assert!(ADD_TOTALS.ends_with("WHERE id = $1::int8"));
    }

    #[test]
    fn run_ends_and_holder() {
        assert_eq!(params(SUCCEED), ["$1::int8", "$2::bool"]);
        assert!(SUCCEED.contains(
            "SET status = 'succeeded', finished = clock_timestamp(), \
            stopped_early = $2::bool WHERE id = $1::int8"
        ));
        assert_eq!(params(FAIL), ["$1::int8", "$2", "$3"]);
        assert!(FAIL.contains(
            "SET status = 'failed', finished = clock_timestamp(), sqlstate = $2, \
            error = $3 WHERE id = $1::int8"
        ));
        assert_eq!(params(HOLDER), ["$1::oid"]);
        assert!(HOLDER.contains(
            "FROM _backfill_ext.run WHERE destination_oid = $1::oid AND status \
            = 'running' ORDER BY started DESC LIMIT 1"
        ));
        assert!(HOLDER.starts_with(
            "SELECT format('run %s (%sbackend %s, started %s)', id, \
            coalesce('job ' || job_id || ', ', ''), pid, started)"
        ));
    }

    #[test]
    fn refreshes_are_recorded_before_and_after() {
        assert!(REFRESH.starts_with(
            "INSERT INTO _backfill_ext.run_refresh (run_id, \
            continuous_aggregate, range_start, range_end, status, note)"
        ));
        assert!(REFRESH.ends_with("VALUES ($1::int8, $2, $3, $4, $5, $6)"));
        assert!(REFRESHED.contains("SET status = 'refreshed', refresh_ms = $3::float8"));
        assert!(REFRESHED.ends_with(
            "WHERE run_id = $1::int8 AND continuous_aggregate = $2 AND status = 'refreshing'"
        ));
        // only this destination's unfinished refreshes
        assert!(MARK_REFRESHES_FAILED
            .contains("r.destination_oid = $1::oid AND f.status = 'refreshing'"));
        assert_eq!(
            HAS_REFRESH_TABLE,
            "SELECT pg_catalog.to_regclass('_backfill_ext.run_refresh') IS NOT NULL"
        );
    }
}
