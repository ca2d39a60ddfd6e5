//! Chunk transactions handed to background workers (`_backfill_ext.run_task`, which
//! only the extension reads and writes, as the state's owner: `spi::state_query`): the
//! run writes a task, the worker reads it, does it and writes what happened; the run
//! takes the outcome once the worker has stopped.

/// A task of run `$1`, number `$2`, with its work (`$3`, JSON).
pub const ADD: &str = "INSERT INTO _backfill_ext.run_task (run_id, task, work) VALUES ($1::int8, \
    $2::int4, $3::jsonb)";

/// The work of task `$2` of run `$1`, while it is still to be done, and only while
/// that run is running, as role `$3` (the worker's), from backend `$4` (the one that
/// started the worker).
pub const WORK: &str = "SELECT t.work::text FROM _backfill_ext.run_task AS t JOIN \
    _backfill_ext.run AS r ON r.id = t.run_id \
     WHERE t.run_id = $1::int8 AND t.task = $2::int4 AND t.status = 'queued' \
       AND r.status = 'running' AND r.run_by = $3::name AND r.pid = $4::int";

/// Adds to task `$2` of run `$1` the routed staging rows of its chunk number `$3`:
/// `$4`, a slice of their row ids (`tid[]`).
pub const ADD_ROWS: &str = "INSERT INTO _backfill_ext.run_task_rows (run_id, task, idx, tids) \
    VALUES ($1, $2, $3, $4)";

/// The routed staging rows of task `$2` of run `$1`, read by its worker in the
/// transaction that read its work (`WORK`): chunk numbers and row ids.
pub const ROWS: &str = "SELECT w.idx, w.tids FROM _backfill_ext.run_task_rows AS w \
     WHERE w.run_id = $1::int8 AND w.task = $2::int4";

/// Task `$2` of run `$1` done, with its results (`$3`, JSON); returns the task marked
/// (exactly one, or the worker's transaction must not commit).
pub const DONE: &str = "UPDATE _backfill_ext.run_task SET status = 'done', results = $3::jsonb \
     WHERE run_id = $1::int8 AND task = $2::int4 AND status = 'queued' RETURNING task";

/// Task `$2` of run `$1` failed: SQLSTATE `$3`, message `$4`, detail `$5`, hint `$6`.
pub const FAILED: &str = "UPDATE _backfill_ext.run_task SET status = 'failed', sqlstate = $3, \
    error = $4, detail = $5, hint = $6 \
     WHERE run_id = $1::int8 AND task = $2::int4 AND status = 'queued'";

/// Takes task `$2` of run `$1` away, returning its status, results (JSON text),
/// SQLSTATE, message, detail and hint.
pub const TAKE: &str =
    "DELETE FROM _backfill_ext.run_task WHERE run_id = $1::int8 AND task = $2::int4 \
     RETURNING status, results::text, sqlstate, error, detail, hint";

/// Forgets the tasks of run `$1` (a run that failed: its workers were stopped).
pub const FORGET_RUN: &str = "DELETE FROM _backfill_ext.run_task WHERE run_id = $1::int8";

/// Forgets the tasks left by runs of destination `$1` (an oid) that are no longer
/// running (a run whose backend ended).
pub const FORGET_ENDED: &str =
    "DELETE FROM _backfill_ext.run_task AS t USING _backfill_ext.run AS r \
     WHERE r.id = t.run_id AND r.destination_oid = $1::oid AND r.status <> 'running'";

/// The values in this session of the settings `$1` (a text array), as `(name,
/// value)`; a setting that does not exist here is left out.
pub const SETTINGS: &str = "SELECT n, v FROM (SELECT n, pg_catalog.current_setting(n, true) AS v \
    FROM pg_catalog.unnest($1::text[]) AS n) AS s \
     WHERE v IS NOT NULL";

/// Whether the task tables exist (not before `ALTER EXTENSION backfill_ext UPDATE`
/// when the library is newer than the extension's objects).
pub const HAS_TABLE: &str = "SELECT pg_catalog.to_regclass('_backfill_ext.run_task') IS NOT NULL \
    AND pg_catalog.to_regclass('_backfill_ext.run_task_rows') IS NOT NULL";

/// Whether the current role may log in (a worker connects as it; before PostgreSQL 17
/// a worker cannot connect as a role that may not).
pub const CAN_LOG_IN: &str =
    "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = current_user";

/// The session settings a worker takes over from the run, so that its transaction
/// behaves as the run's own would: how names resolve and values print, the memory
/// and lock settings, TimescaleDB's decompression limit (and in test builds the test
/// hooks', `run::worker::inherited_settings`).
pub const INHERITED: &[&str] = &[
    "search_path",
    "TimeZone",
    "DateStyle",
    "IntervalStyle",
    "maintenance_work_mem",
    "work_mem",
    "temp_buffers",
    "lock_timeout",
    "timescaledb.max_tuples_decompressed_per_dml_transaction",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_done_once() {
        // only a queued task is read or finished: a worker never redoes a task
        assert!(WORK
            .contains("WHERE t.run_id = $1::int8 AND t.task = $2::int4 AND t.status = 'queued'"));
        // only a task of a run that is running, as the worker's role, from the backend that started
        // it
        assert!(
            WORK.ends_with("AND r.status = 'running' AND r.run_by = $3::name AND r.pid = $4::int")
        );
        assert!(
            DONE.ends_with("AND status = 'queued' RETURNING task")
                && FAILED.ends_with("AND status = 'queued'")
        );
        assert!(TAKE.starts_with(
            "DELETE FROM _backfill_ext.run_task WHERE run_id = $1::int8 AND task = $2::int4"
        ));
        assert_eq!(
            ADD,
            "INSERT INTO _backfill_ext.run_task (run_id, task, work) VALUES ($1::int8, \
            $2::int4, $3::jsonb)"
        );
        // a failed run's tasks, and those of runs whose backend ended, only
        assert_eq!(FORGET_RUN, "DELETE FROM _backfill_ext.run_task WHERE run_id = $1::int8");
        assert!(FORGET_ENDED.ends_with("r.destination_oid = $1::oid AND r.status <> 'running'"));
    }

    #[test]
    fn a_worker_takes_over_the_settings_that_change_what_a_step_does() {
        for s in [
            "search_path",
            "TimeZone",
            "maintenance_work_mem",
            "timescaledb.max_tuples_decompressed_per_dml_transaction",
        ] {
            assert!(INHERITED.contains(&s), "{s}");
        }
        assert!(
            SETTINGS.contains("pg_catalog.current_setting(n, true)")
                && SETTINGS.ends_with("WHERE v IS NOT NULL")
        );
    }
}
