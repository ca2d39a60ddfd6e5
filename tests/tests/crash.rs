//! Kill a run at every step, then run again: every staging row ends in the
//! destination exactly once, staging is empty, every chunk compressed before is fully
//! compressed, and the compression policy's schedule is what it was before the first
//! run. A run is stopped at a step with the `backfill_ext.debug_pause_at` hook (or,
//! mid-insert, by a lock), then its backend is terminated or the server is stopped
//! with `-m immediate` and restarted.
//!
//! The TimescaleDB variants run when a full TimescaleDB is installed (and are reported
//! as ignored, with the reason, elsewhere); the plain-PostgreSQL variants run everywhere.

use backfill_ext_client_tests::config::{call_backfill, event_config};
use backfill_ext_client_tests::fixtures::{
    assert_compressed_and_policy_as_before, not_fully_compressed, stage_correction_from_day,
    stage_late_rows, state, timescale_dataset, Dataset, State, START,
};
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{
    pid_of_run, run_statuses, scalar, Client, Cluster, NoTls, Options,
};
use serde_json::json;

#[derive(Clone, Copy, Debug)]
enum Kill {
    /// `pg_terminate_backend` on the run's backend.
    Terminate,
    /// The server stopped with `-m immediate` (a crash) and started again.
    Crash,
}

/// The run's own session does every chunk (`workers`: 1), so a pause at a step inside
/// a chunk stops the backend these tests cancel, terminate or crash; runs with
/// background workers have their own tests (`tests/tests/workers.rs`).
fn run_config() -> String {
    event_config(json!({"workers": 1}))
}
/// One transaction per chunk: the steps between and inside chunks exist in every run.
fn per_chunk_config() -> String {
    event_config(json!({"strategy": "decompress", "workers": 1}))
}

/// Staging rows that are not (by key) in the destination, plus destination rows:
/// constant while nothing is lost or doubled.
fn rows_accounted(c: &mut Client) -> i64 {
    scalar(
        c,
        "SELECT (SELECT count(*) FROM event_data)
              + (SELECT count(*) FROM (SELECT DISTINCT time, device_id FROM backfill_event_data s
                                       WHERE NOT EXISTS (SELECT 1 FROM event_data e WHERE e.time = \
                                       s.time AND e.device_id = s.device_id)) x)",
    )
}

fn plain_setup(c: &mut Client) {
    c.batch_execute(&format!(
        "CREATE TABLE event_data (time timestamptz NOT NULL, device_id int NOT NULL, value double \
         precision, note text,
                                  PRIMARY KEY (device_id, time));
         INSERT INTO event_data (time, device_id, value)
           SELECT t, d, 1 FROM generate_series(timestamptz '{START}', timestamptz '{START}' + \
           interval '5 days' - interval '1 minute',
                                                 interval '10 minutes') t, generate_series(1, 5) d;
         CREATE TABLE backfill_event_data (LIKE event_data);"
    ))
    .unwrap();
}

/// A run stopped at `point` (by the pause hook, or mid-insert by a lock), then killed.
fn kill_a_run_at(cl: &mut Cluster, c: &mut Client, point: &str, kill: Kill) {
    let mut blocker = None;
    if point == "mid_insert" {
        // the move's DELETE from staging waits for this lock, inside the chunk's transaction
        let mut b = cl.connect("t");
        b.batch_execute("BEGIN; LOCK TABLE backfill_event_data IN SHARE MODE;").unwrap();
        blocker = Some(b);
    } else {
        c.batch_execute(&format!("ALTER DATABASE t SET backfill_ext.debug_pause_at = '{point}'"))
            .unwrap();
    }
    let conn = cl.conn_string("t");
    // the direct strategy moves these chunks in one transaction; decompressing has a
    // transaction per chunk, with steps after a decompress and between chunks
    let config = if matches!(point, "after_decompress" | "between_chunks") {
        per_chunk_config()
    } else {
        run_config()
    };
    let run = std::thread::spawn(move || {
        let mut r = Client::connect(&conn, NoTls).unwrap();
        r.batch_execute(&call_backfill(&config)).map_err(|e| e.to_string())
    });
    let pid = pid_of_run(c, if point == "mid_insert" { "relation" } else { "PgSleep" });
    match kill {
        Kill::Terminate => {
            c.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
        }
        Kill::Crash => cl.restart("immediate"),
    }
    let outcome = run.join().unwrap();
    assert!(outcome.is_err(), "the run was killed at {point}");
    drop(blocker);
}

/// After the kill: every row in staging or the destination once, and (on a hypertable)
/// the chunk being worked on rolled back with its decompression.
fn assert_nothing_lost_by_the_kill(
    cl: &Cluster,
    point: &str,
    expected: i64,
    before: &Option<State>,
) {
    let mut c = cl.connect("t");
    c.batch_execute("ALTER DATABASE t RESET backfill_ext.debug_pause_at").unwrap();
    assert_eq!(
        rows_accounted(&mut c),
        expected,
        "after the kill at {point}, every row is in staging or the destination, once"
    );
    if let Some(before) = before {
        // the chunk being worked on was rolled back with its decompression
        let now = state(&mut c, "event_data", "backfill_event_data");
        let was_compressed: Vec<_> = not_fully_compressed(&now)
            .into_iter()
            .filter(|(n, _)| before.chunks.iter().any(|(b, s)| b == n && *s == 1))
            .collect();
        assert!(
            was_compressed.is_empty(),
            "no chunk left decompressed at {point}: {:?}",
            now.chunks
        );
    }
}

/// The next run repairs and finishes; the killed run is recorded as failed.
fn assert_the_next_run_repairs(cl: &Cluster, point: &str, expected: i64, before: Option<State>) {
    let mut c = cl.connect("t");
    c.batch_execute(&call_backfill(&run_config())).unwrap();
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM backfill_event_data"),
        0,
        "staging is empty"
    );
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM event_data"),
        expected,
        "every row once"
    );
    if let Some(before) = before {
        let after = state(&mut c, "event_data", "backfill_event_data");
        assert_compressed_and_policy_as_before(
            &before,
            &after,
            &format!("kill at {point}, then a run"),
        );
    }
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
    assert_eq!(
        run_statuses(&mut c),
        ["failed", "succeeded"],
        "the killed run is recorded as failed by the next one"
    );
}

fn scenario(timescale: bool, point: &str, kill: Kill) {
    let mut cl = Cluster::start(Options { timescale, ..Default::default() });
    let mut c = cl.create_db("t");
    if timescale {
        timescale_dataset(&mut c, &Dataset::default());
    } else {
        plain_setup(&mut c);
    }
    // new rows in days 1-2, 30 duplicates, a row before the first chunk and one after the last
    stage_late_rows(&mut c);
    let expected = rows_accounted(&mut c);
    let before: Option<State> =
        timescale.then(|| state(&mut c, "event_data", "backfill_event_data"));
    kill_a_run_at(&mut cl, &mut c, point, kill);
    assert_nothing_lost_by_the_kill(&cl, point, expected, &before);
    assert_the_next_run_repairs(&cl, point, expected, before);
}

/// A kill test per step: a run on a hypertable (`timescale`, TimescaleDB-only) or on a
/// plain table (`plain`) killed at that step.
macro_rules! kill_tests {
    (timescale: $($name:ident: $point:expr, $kill:expr;)*) => {
        timescale_test! {$(
            fn $name() {
                scenario(true, $point, $kill);
            }
        )*}
    };
    (plain: $($name:ident: $point:expr, $kill:expr;)*) => {$(
        #[test]
        fn $name() {
            scenario(false, $point, $kill);
        }
    )*};
}

kill_tests! {
    timescale:
    timescale_after_policy_postponed_terminate: "after_hold", Kill::Terminate;
    timescale_after_policy_postponed_crash: "after_hold", Kill::Crash;
    timescale_after_decompress_terminate: "after_decompress", Kill::Terminate;
    timescale_after_decompress_crash: "after_decompress", Kill::Crash;
    timescale_mid_insert_terminate: "mid_insert", Kill::Terminate;
    timescale_mid_insert_crash: "mid_insert", Kill::Crash;
    timescale_after_insert_before_recompress_terminate: "after_insert", Kill::Terminate;
    timescale_after_insert_before_recompress_crash: "after_insert", Kill::Crash;
    timescale_between_chunks_terminate: "between_chunks", Kill::Terminate;
    timescale_between_chunks_crash: "between_chunks", Kill::Crash;
    timescale_before_policy_restored_terminate: "before_restore", Kill::Terminate;
    timescale_before_policy_restored_crash: "before_restore", Kill::Crash;
}

kill_tests! {
    plain:
    plain_after_start_terminate: "after_hold", Kill::Terminate;
    plain_after_start_crash: "after_hold", Kill::Crash;
    plain_mid_insert_terminate: "mid_insert", Kill::Terminate;
    plain_mid_insert_crash: "mid_insert", Kill::Crash;
    plain_after_insert_terminate: "after_insert", Kill::Terminate;
    plain_after_insert_crash: "after_insert", Kill::Crash;
    plain_before_restore_terminate: "before_restore", Kill::Terminate;
    plain_before_restore_crash: "before_restore", Kill::Crash;
}

/// A run stopped inside the rewrite of a chunk (it holds the chunk it emptied), then
/// killed.
fn kill_inside_the_rewrite(cl: &mut Cluster, c: &mut Client, kill: Kill) {
    c.batch_execute("ALTER DATABASE t SET backfill_ext.debug_pause_at = 'after_insert'").unwrap();
    let conn = cl.conn_string("t");
    let run = std::thread::spawn(move || {
        let mut r = Client::connect(&conn, NoTls).unwrap();
        r.batch_execute(&call_backfill(&event_config(json!({"on_conflict_action": "UPDATE"}))))
            .map_err(|e| e.to_string())
    });
    let pid = pid_of_run(c, "PgSleep");
    // it stopped inside the rewrite: the emptied chunk is locked against everyone
    let truncated: i64 = scalar(
        c,
        &format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_class r ON r.oid = l.relation
             WHERE l.pid = {pid} AND l.mode = 'AccessExclusiveLock' AND l.granted AND r.relname \
             LIKE '\\_hyper\\_%\\_chunk'"
        ),
    );
    assert!(truncated >= 1, "the run holds the chunk it emptied");
    match kill {
        Kill::Terminate => {
            c.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).map(|_| ()).unwrap()
        }
        Kill::Crash => cl.restart("immediate"),
    }
    assert!(run.join().unwrap().is_err(), "the run was killed");
}

/// A dense correction of a whole chunk merges by rewriting the chunk: it is emptied
/// (TRUNCATE) and its merged rows written back before it is compressed again. Killed
/// there, the chunk comes back whole and compressed, and the next run applies every
/// correction once.
fn rewrite_scenario(kill: Kill) {
    let mut cl = Cluster::start(Options { timescale: true, ..Default::default() });
    let mut c = cl.create_db("t");
    timescale_dataset(&mut c, &Dataset::default());
    let staged = stage_correction_from_day(&mut c, 4);
    let rows: i64 = scalar(&mut c, "SELECT count(*) FROM event_data");
    let sum = "SELECT sum(value::numeric)::text FROM event_data";
    let sum_before: String = scalar(&mut c, sum);
    let sum_after: String =
        scalar(&mut c, &format!("SELECT (sum(value::numeric) + {staged})::text FROM event_data"));
    let before = state(&mut c, "event_data", "backfill_event_data");
    kill_inside_the_rewrite(&mut cl, &mut c, kill);

    let mut c = cl.connect("t");
    c.batch_execute("ALTER DATABASE t RESET backfill_ext.debug_pause_at").unwrap();
    let mut c = cl.connect("t");
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM event_data"),
        rows,
        "the emptied chunk's rows are back"
    );
    assert_eq!(scalar::<String>(&mut c, sum), sum_before, "no correction applied yet");
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM backfill_event_data"),
        staged,
        "the corrections are still staged"
    );
    let now = state(&mut c, "event_data", "backfill_event_data");
    assert!(not_fully_compressed(&now).is_empty(), "every chunk compressed: {:?}", now.chunks);

    c.batch_execute(&call_backfill(&event_config(json!({"on_conflict_action": "UPDATE"}))))
        .unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM event_data"), rows);
    assert_eq!(scalar::<String>(&mut c, sum), sum_after, "every correction applied once");
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM backfill_event_data"), 0);
    let after = state(&mut c, "event_data", "backfill_event_data");
    assert_compressed_and_policy_as_before(&before, &after, "kill during a rewrite, then a run");
}

timescale_test! {
    fn timescale_kill_during_rewrite_terminate() {
        rewrite_scenario(Kill::Terminate);
    }
}

timescale_test! {
    fn timescale_kill_during_rewrite_crash() {
        rewrite_scenario(Kill::Crash);
    }
}

/// A run stopped at `point` in a session that lives on, cancelled: it ends with
/// query_canceled and leaves no advisory lock in that session.
fn cancel_a_run_at(cl: &Cluster, c: &mut Client, point: &str) {
    let (conn, at) = (cl.conn_string("t"), point.to_string());
    let run = std::thread::spawn(move || {
        let mut r = Client::connect(&conn, NoTls).unwrap();
        r.batch_execute(&format!("SET backfill_ext.debug_pause_at = '{at}'")).unwrap();
        let err = r.batch_execute(&call_backfill(&per_chunk_config())).unwrap_err();
        let code = err
            .as_db_error()
            .map(|e| e.code().code().to_string())
            .unwrap_or_else(|| err.to_string());
        let locks: i64 = r
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND \
                pid = pg_catalog.pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0);
        (code, locks)
    });
    let pid = pid_of_run(c, "PgSleep");
    c.batch_execute(&format!("SELECT pg_cancel_backend({pid})")).unwrap();
    let (code, locks) = run.join().unwrap();
    assert_eq!(code, "57014", "the run cancelled at {point} ends with query_canceled");
    assert_eq!(locks, 0, "the session holds no advisory lock after a cancel at {point}");
}

/// A cancel (`pg_cancel_backend`) at a phase boundary or inside a step, of a run
/// called by an interactive session that lives on: the run ends with SQLSTATE 57014,
/// and leaves no advisory lock in that session, no policy hold, the policy's schedule
/// as before, every row in staging or the destination once, and its own history row
/// saying it failed; the next run finishes the work.
fn cancel_scenario(point: &str) {
    let cl = Cluster::start(Options { timescale: true, ..Default::default() });
    let mut c = cl.create_db("t");
    timescale_dataset(&mut c, &Dataset::default());
    stage_late_rows(&mut c);
    let expected = rows_accounted(&mut c);
    let before = state(&mut c, "event_data", "backfill_event_data");
    cancel_a_run_at(&cl, &mut c, point);
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"),
        0,
        "no policy hold after a cancel at {point}"
    );
    assert_compressed_and_policy_as_before(
        &before,
        &state(&mut c, "event_data", "backfill_event_data"),
        &format!("cancel at {point}"),
    );
    assert_eq!(
        rows_accounted(&mut c),
        expected,
        "after a cancel at {point}, every row is in staging or the destination, once"
    );
    let runs: Vec<(String, Option<String>)> = c
        .query("SELECT status, sqlstate FROM backfill_runs ORDER BY run_id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        runs,
        [("failed".to_string(), Some("57014".to_string()))],
        "the cancelled run recorded itself"
    );
    c.batch_execute(&call_backfill(&run_config())).unwrap();
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM backfill_event_data"),
        0,
        "the next run finishes"
    );
    assert_compressed_and_policy_as_before(
        &before,
        &state(&mut c, "event_data", "backfill_event_data"),
        "the run after a cancel",
    );
}

macro_rules! cancel_tests {
    ($($name:ident: $point:expr;)*) => {
        timescale_test! {$(
            fn $name() {
                cancel_scenario($point);
            }
        )*}
    };
}

cancel_tests! {
    cancel_after_policy_postponed: "after_hold";
    cancel_after_decompress: "after_decompress";
    cancel_after_insert_before_recompress: "after_insert";
    cancel_between_chunks: "between_chunks";
    cancel_before_policy_restored: "before_restore";
}

timescale_test! {
    /// A run cancelled while it waits for another run on its destination holds nothing
    /// and records that it failed.
    fn cancel_while_waiting_for_the_destination() {
        let cl = Cluster::start(Options { timescale: true, ..Default::default() });
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        stage_late_rows(&mut c);
        // another session holds the destination's lock, as a run does
        let mut holder = cl.connect("t");
        holder
            .batch_execute(
                "SELECT pg_advisory_lock(((x'6266696c'::int8 << 32) | \
        'event_data'::regclass::oid::int8))",
            )
            .unwrap();
        let conn = cl.conn_string("t");
        let run = std::thread::spawn(move || {
            let mut r = Client::connect(&conn, NoTls).unwrap();
            let cfg = event_config(json!({"lock_wait": "5 minutes"}));
            let err = r.batch_execute(&call_backfill(&cfg)).unwrap_err();
            err.as_db_error()
                .map(|e| e.code().code().to_string())
                .unwrap_or_else(|| err.to_string())
        });
        let pid = pid_of_run(&mut c, "PgSleep");
        c.batch_execute(&format!("SELECT pg_cancel_backend({pid})")).unwrap();
        assert_eq!(run.join().unwrap(), "57014");
        let runs: Vec<(String, Option<String>, String)> = c
            .query("SELECT status, sqlstate, destination FROM backfill_runs ORDER BY run_id", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(
            runs,
            [("failed".to_string(), Some("57014".to_string()), "public.event_data".to_string())]
        );
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
        assert_eq!(
            scalar::<i64>(&mut c, "SELECT count(*) FROM event_data WHERE device_id = 99"),
            0,
            "nothing moved"
        );
    }
}
