//! Chunk transactions in background workers (config key `workers`): every row moved
//! exactly once, workers running at once, and a cancel, a terminate or a failed task
//! leaving no worker, no task, no hold and the rows accounted for. Run where a full
//! TimescaleDB is installed (ignored, with the reason, elsewhere).

use backfill_ext_client_tests::config::{call_backfill, event_config};
use backfill_ext_client_tests::fixtures::{
    assert_compressed_and_policy_as_before, state, timescale_dataset, Dataset, State, START,
};
use backfill_ext_client_tests::timescale_cluster as ts_cluster;
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{expect_error, scalar, wait_for, Client, Cluster, NoTls};
use serde_json::json;
use std::time::Duration;

/// Upserts in five chunks (every row of days 0 to 4 corrected, and a new device), and
/// one row after the last chunk. Returns the rows that are new by key.
fn stage(c: &mut Client) -> i64 {
    c.batch_execute(&format!(
        "INSERT INTO backfill_event_data (time, device_id, value) SELECT time, device_id, value + \
         1000 FROM event_data;
         INSERT INTO backfill_event_data (time, device_id, value)
           SELECT t, 99, 1 FROM generate_series(timestamptz '{START}', timestamptz '{START}' + \
           interval '5 days' - interval '1 hour', interval '1 hour') t;
         INSERT INTO backfill_event_data (time, device_id, value) VALUES (timestamptz '{START}' + \
         interval '30 days', 1, 0);"
    ))
    .unwrap();
    5 * 24 + 1
}

fn upsert() -> String {
    event_config(json!({"on_conflict_action": "UPDATE", "workers": 2}))
}

/// A hypertable with staged upserts, and what every run must end with.
struct Staged {
    cl: Cluster,
    c: Client,
    /// Destination rows the staging table corrects, and staging rows with new keys.
    corrections: i64,
    new: i64,
    before: State,
}

fn staged() -> Staged {
    let cl = ts_cluster();
    let mut c = cl.create_db("t");
    timescale_dataset(&mut c, &Dataset::default());
    let corrections: i64 = scalar(&mut c, "SELECT count(*) FROM event_data");
    let new = stage(&mut c);
    let before = state(&mut c, "event_data", "backfill_event_data");
    Staged { cl, c, corrections, new, before }
}

impl Staged {
    /// Every staged row is in the destination once, corrections applied, chunks
    /// compressed and the policy as before.
    fn assert_moved_once(&mut self, when: &str) {
        let after = state(&mut self.c, "event_data", "backfill_event_data");
        assert_eq!(
            (after.staging_rows, after.dest_rows),
            (0, self.before.dest_rows + self.new),
            "{when}"
        );
        assert_eq!(
            scalar::<i64>(&mut self.c, "SELECT count(*) FROM event_data WHERE value >= 1000"),
            self.corrections,
            "{when}"
        );
        assert_compressed_and_policy_as_before(&self.before, &after, when);
    }
}

/// The backfill_ext workers running now.
fn workers(c: &mut Client, wait_event: Option<&str>) -> i64 {
    scalar(
        c,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'backfill_ext worker'{}",
            wait_event.map(|w| format!(" AND wait_event = '{w}'")).unwrap_or_default()
        ),
    )
}

/// The run's own backend, once it is waiting for its workers.
fn run_backend(c: &mut Client) -> i32 {
    wait_for("the run's backend", Duration::from_secs(60), || {
        c.query_opt(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CALL \
            backfill_on_schedule%' AND state = 'active'",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0))
    })
}

/// Starts the upsert in another session, its workers stopping at `after_insert` for
/// `seconds`; returns once two workers are stopped there at the same time.
fn start_paused(
    cl: &Cluster,
    c: &mut Client,
    seconds: i32,
    routed: bool,
) -> std::thread::JoinHandle<Result<(), (String, String)>> {
    let conn = cl.conn_string("t");
    let run = std::thread::spawn(move || {
        let mut r = Client::connect(&conn, NoTls).unwrap();
        r.batch_execute(&format!(
            "SET backfill_ext.debug_pause_at = 'after_insert'; SET \
            backfill_ext.debug_pause_seconds = {seconds}"
        ))
        .unwrap();
        r.batch_execute(&format!("SET backfill_ext.debug_always_route = {routed}")).unwrap();
        r.batch_execute(&call_backfill(&upsert())).map_err(|e| {
            let db =
                e.as_db_error().map(|d| (d.code().code().to_string(), d.message().to_string()));
            db.unwrap_or_else(|| ("".into(), e.to_string()))
        })
    });
    wait_for("two workers at once", Duration::from_secs(60), || {
        (workers(c, Some("PgSleep")) == 2).then_some(())
    });
    run
}

/// Nothing left behind by a run that stopped: no worker, no task, no hold, every row
/// in staging or the destination once, chunks compressed, policy as before.
fn assert_nothing_left(c: &mut Client, before: &State) {
    wait_for("the workers to stop", Duration::from_secs(60), || {
        (workers(c, None) == 0).then_some(())
    });
    assert_eq!(
        scalar::<i64>(c, "SELECT count(*) FROM _backfill_ext.run_task"),
        0,
        "no task is left"
    );
    assert_eq!(
        scalar::<i64>(c, "SELECT count(*) FROM _backfill_ext.policy_hold"),
        0,
        "no hold is left"
    );
    let now = state(c, "event_data", "backfill_event_data");
    let moved = now.dest_rows - before.dest_rows;
    let corrected: i64 = scalar(c, "SELECT count(*) FROM event_data WHERE value >= 1000");
    // a chunk is either all moved (its corrections and new rows) or not at all
    assert_eq!(
        now.staging_rows + corrected + moved,
        before.staging_rows,
        "every staged row is in staging or the destination, once"
    );
    assert_compressed_and_policy_as_before(before, &now, "after the run stopped");
}

timescale_test! {
    fn workers_move_every_row_exactly_once_two_at_a_time() {
        two_at_a_time(false);
    }
}

timescale_test! {
    /// The plan routed the rows through the run's temporary table; each task carries its
    /// chunks' row ids, and its worker takes exactly those: a row staged for a later
    /// chunk after the plan is left to the rows outside every chunk step, moved last.
    fn workers_move_a_routed_plans_rows_exactly_once_two_at_a_time() {
        two_at_a_time(true);
    }
}

/// Day 4, a chunk whose task has not started while the first two chunks' workers are
/// paused: a row staged then, and the staging rows it had before.
const LATE: &str = "INSERT INTO backfill_event_data (time, device_id, value) VALUES \
    (timestamptz '2024-01-05 00:30+00', 98, 7)";
const DAY_4: &str = "time >= timestamptz '2024-01-05' AND time < timestamptz '2024-01-06'";

fn two_at_a_time(routed: bool) {
    let mut s = staged();
    let day_4: i64 =
        scalar(&mut s.c, &format!("SELECT count(*) FROM backfill_event_data WHERE {DAY_4}"));
    // two chunk transactions are seen under way at once, each in a worker
    let run = start_paused(&s.cl, &mut s.c, 2, routed);
    if routed {
        let rows = "SELECT count(*) FROM _backfill_ext.run_task_rows";
        assert!(scalar::<i64>(&mut s.c, rows) > 0, "the tasks carry their row ids");
        s.c.batch_execute(LATE).unwrap();
        s.new += 1;
    }
    run.join().unwrap().unwrap();
    if routed {
        let q = "SELECT rows_moved FROM backfill_run_chunks \
                 WHERE range_start::timestamptz = '2024-01-05'";
        assert_eq!(scalar::<i64>(&mut s.c, q), day_4, "day 4's step took its routed rows only");
        let q = "SELECT count(*) FROM event_data WHERE device_id = 98";
        assert_eq!(scalar::<i64>(&mut s.c, q), 1, "the late row is moved, once");
        let left = "SELECT count(*) FROM _backfill_ext.run_task_rows";
        assert_eq!(scalar::<i64>(&mut s.c, left), 0, "no row id is left");
    }
    s.assert_moved_once("after a run with workers");
    let c = &mut s.c;
    let r = c.query_one("SELECT status, rows_moved FROM backfill_status", &[]).unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, i64>(1)),
        ("succeeded".to_string(), s.corrections + s.new)
    );
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM backfill_run_chunks"), 5);
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM _backfill_ext.run_task"), 0);
    assert_eq!(workers(c, None), 0);
}

timescale_test! {
    fn a_cancel_of_the_run_stops_its_workers_and_leaves_nothing_held() {
        let mut s = staged();
        let run = start_paused(&s.cl, &mut s.c, 3600, false);
        let c = &mut s.c;
        let pid = run_backend(c);
        c.batch_execute(&format!("SELECT pg_cancel_backend({pid})")).unwrap();
        let (code, _) = run.join().unwrap().unwrap_err();
        assert_eq!(code, "57014");
        assert_nothing_left(c, &s.before);
        assert_eq!(
            scalar::<i64>(c, "SELECT count(*) FROM backfill_event_data"),
            s.before.staging_rows,
            "the paused chunks rolled back"
        );
        let r = c.query_one("SELECT status, sqlstate FROM backfill_status", &[]).unwrap();
        assert_eq!(
            (r.get::<_, String>(0), r.get::<_, String>(1)),
            ("failed".to_string(), "57014".to_string())
        );
        assert_eq!(
            scalar::<i64>(
                c,
                &format!(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = {pid}"
                )
            ),
            0
        );
    }
}

timescale_test! {
    fn terminating_the_run_stops_its_workers_and_the_next_run_finishes_exactly_once() {
        let mut s = staged();
        let run = start_paused(&s.cl, &mut s.c, 3600, false);
        let c = &mut s.c;
        let pid = run_backend(c);
        c.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
        assert!(run.join().unwrap().is_err());
        // the terminated run's backend stopped its workers as it exited
        wait_for("the workers to stop", Duration::from_secs(60), || {
            (workers(c, None) == 0).then_some(())
        });
        assert_eq!(
            scalar::<i64>(c, "SELECT count(*) FROM backfill_event_data"),
            s.before.staging_rows,
            "the paused chunks rolled back"
        );
        c.batch_execute(&call_backfill(&upsert())).unwrap();
        s.assert_moved_once("after the next run");
        assert_eq!(scalar::<i64>(&mut s.c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
        assert_eq!(
            scalar::<i64>(&mut s.c, "SELECT count(*) FROM _backfill_ext.run_task"),
            0,
            "the terminated run's tasks are forgotten"
        );
    }
}

timescale_test! {
    fn a_failed_task_fails_the_run_with_the_workers_error_and_the_next_run_finishes() {
        let mut s = staged();
        // a long transaction holds the chunk of day 2 against writers
        let second: String = scalar(
            &mut s.c,
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks \
         WHERE hypertable_name = 'event_data' ORDER BY range_start OFFSET 2 LIMIT 1",
        );
        let mut long = s.cl.connect("t");
        long.batch_execute(&format!("BEGIN; LOCK TABLE {second} IN EXCLUSIVE MODE;")).unwrap();
        let cfg = event_config(
            json!({"on_conflict_action": "UPDATE", "workers": 2, "lock_timeout": "500ms"}),
        );
        let (code, msg, hint) = expect_error(&mut s.c, &call_backfill(&cfg));
        assert_eq!(code, "55P03", "{msg}");
        assert!(hint.is_some());
        assert_nothing_left(&mut s.c, &s.before);
        let r = s.c.query_one("SELECT status, sqlstate FROM backfill_status", &[]).unwrap();
        assert_eq!(
            (r.get::<_, String>(0), r.get::<_, String>(1)),
            ("failed".to_string(), "55P03".to_string())
        );
        long.batch_execute("COMMIT").unwrap();
        s.c.batch_execute(&call_backfill(&upsert())).unwrap();
        s.assert_moved_once("after the next run");
    }
}

timescale_test! {
    /// A worker's task row removed while it works: the worker's transaction rolls back and
    /// the run moves those rows itself, once (recorded once per chunk).
    fn a_task_removed_while_its_worker_works_is_done_once_by_the_run() {
        let mut s = staged();
        let run = start_paused(&s.cl, &mut s.c, 2, false);
        assert_eq!(
            scalar::<i64>(
                &mut s.c,
                "WITH d AS (DELETE FROM _backfill_ext.run_task RETURNING 1) SELECT count(*) FROM d"
            ),
            2
        );
        run.join().unwrap().unwrap();
        s.assert_moved_once("after tasks were removed under their workers");
        let c = &mut s.c;
        let r = c.query_one("SELECT status, rows_moved FROM backfill_status", &[]).unwrap();
        assert_eq!(
            (r.get::<_, String>(0), r.get::<_, i64>(1)),
            ("succeeded".to_string(), s.corrections + s.new)
        );
        assert_eq!(
            scalar::<i64>(c, "SELECT count(*) FROM backfill_run_chunks"),
            5,
            "each chunk recorded once"
        );
        assert_eq!(scalar::<i64>(c, "SELECT count(DISTINCT chunk) FROM backfill_run_chunks"), 5);
    }
}

timescale_test! {
    /// Workers that do not answer a terminate for longer than a minute: the cancelled run
    /// waits for them before it puts anything back, so none of them outlives its hold.
    fn a_cancelled_run_lets_go_of_nothing_while_a_worker_that_does_not_stop_could_commit() {
        let mut s = staged();
        let conn = s.cl.conn_string("t");
        let run = std::thread::spawn(move || {
            let mut r = Client::connect(&conn, NoTls).unwrap();
            r.batch_execute(
                "SET backfill_ext.debug_pause_at = 'worker_before_done'; SET \
            backfill_ext.debug_pause_seconds = 65",
            )
            .unwrap();
            r.batch_execute(&call_backfill(&upsert()))
                .map_err(|e| e.as_db_error().map(|d| d.code().code().to_string()))
        });
        let c = &mut s.c;
        wait_for("two workers at once", Duration::from_secs(60), || {
            (workers(c, None) == 2).then_some(())
        });
        let pid = run_backend(c);
        c.batch_execute(&format!("SELECT pg_cancel_backend({pid})")).unwrap();
        let code = run.join().unwrap().unwrap_err();
        assert_eq!(code.as_deref(), Some("57014"));
        // at the moment the run returns, no worker of it is left
        assert_eq!(workers(c, None), 0, "the run returned while a worker of it was running");
        assert_nothing_left(c, &s.before);
        assert_eq!(
            scalar::<i64>(c, "SELECT count(*) FROM backfill_event_data"),
            s.before.staging_rows,
            "the workers' chunks rolled back"
        );
    }
}

timescale_test! {
    /// Without a `workers` key, a plan of little work goes in the session: two chunk
    /// transactions (two new devices' day in bulk, four days of hourly rows later) of
    /// 2,976 rows start no worker, which the same staging with `"workers": 2` does.
    fn a_plan_of_little_work_goes_in_the_session_unless_workers_are_asked_for() {
        let cl = ts_cluster();
        for (workers, in_workers) in [(None, false), (Some(2), true)] {
            let db = &format!("w{}", workers.unwrap_or(0));
            let mut c = cl.create_db(db);
            timescale_dataset(&mut c, &Dataset::default());
            c.batch_execute(&format!(
                "INSERT INTO backfill_event_data (time, device_id, value) SELECT t, d, 1 FROM \
                 generate_series(timestamptz '{START}', timestamptz '{START}' + interval '1 day' \
                 - interval '1 minute', interval '1 minute') t, generate_series(97, 98) d;
                 INSERT INTO backfill_event_data (time, device_id, value) SELECT t, 97, 2 FROM \
                 generate_series(timestamptz '{START}' + interval '1 day', timestamptz '{START}' \
                 + interval '5 days' - interval '1 hour', interval '1 hour') t;"
            ))
            .unwrap();
            let (mut r, notices) = cl.connect_with_notices(db);
            r.batch_execute("SET client_min_messages = debug1").unwrap();
            let config = match workers {
                Some(w) => event_config(json!({ "workers": w })),
                None => event_config(json!({})),
            };
            r.batch_execute(&call_backfill(&config)).unwrap();
            let n = notices.lock().unwrap().clone();
            let waited = n.iter().any(|m| m.starts_with("backfill_ext: wait for workers done"));
            let here = n.iter().any(|m| m.starts_with("backfill_ext: batch done"));
            assert_eq!((waited, here), (in_workers, !in_workers), "{workers:?}: {n:#?}");
            let moved = "SELECT count(*) FROM event_data WHERE device_id IN (97, 98)";
            assert_eq!(scalar::<i64>(&mut c, moved), 2 * 1440 + 96, "{workers:?}");
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM backfill_event_data"), 0);
        }
    }
}
