//! Only the extension writes its state: no role can forge, change or block run
//! history, policy holds or worker tasks. Each attack is tried as a non-superuser and
//! must be refused (42501, no privilege), and the victims' runs must work afterwards.
//! The plain-PostgreSQL cases run anywhere; the TimescaleDB ones (a policy hold,
//! workers) where a full TimescaleDB is installed.

use backfill_ext_client_tests::config::{call_backfill, config, event_config};
use backfill_ext_client_tests::fixtures::{state, timescale_dataset, Dataset};
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{
    expect_error, scalar, timescale_cluster, wait_for, Client, Cluster, NoTls, Options,
};
use serde_json::json;
use std::time::Duration;

/// Roles `t_owner` (owns table `m` and its staging `st`), `t_writer` (may INSERT into
/// `m`) and `t_nobody` (no privilege); a superuser's run on `m` has made history.
fn roles_and_history(cl: &Cluster, c: &mut Client) {
    c.batch_execute(
        "CREATE ROLE t_owner LOGIN; CREATE ROLE t_writer LOGIN; CREATE ROLE t_nobody LOGIN;
         GRANT CREATE ON SCHEMA public TO t_owner;",
    )
    .unwrap();
    let mut owner = cl.connect_as("t", "t_owner");
    owner
        .batch_execute(
            "CREATE TABLE m (id int NOT NULL, ts timestamptz NOT NULL, v float8, PRIMARY KEY (id, \
             ts));
             CREATE TABLE st (LIKE m);
             INSERT INTO st SELECT i, now(), i FROM generate_series(1, 10) i;
             GRANT INSERT, SELECT ON m TO t_writer;",
        )
        .unwrap();
    c.batch_execute(
        r#"CALL backfill_on_schedule(NULL, '{"staging_table":"st","destination_hypertable":"m"}')"#,
    )
    .unwrap();
}

/// Every write an attacker could try on the state, as `role`.
const ATTACKS: &[&str] = &[
    // taking over the superuser's run
    "UPDATE _backfill_ext.run SET run_by = current_user WHERE run_by = 'postgres'",
    // planting a running row that blocks the owner's runs
    "INSERT INTO _backfill_ext.run (run_by, staging, destination, destination_oid, status, pid) \
     VALUES (current_user, 'st', 'm', 'm'::regclass, 'running', pg_backend_pid())",
    // claiming the next ids
    "SELECT nextval('_backfill_ext.run_id_seq')",
    // forged chunk and refresh rows
    "INSERT INTO _backfill_ext.run_chunk (run_id, chunk, rows_moved, conflicts, decompressed, \
     recompressed, decompress_ms, insert_ms, recompress_ms) \
     SELECT id, 'x', 1, 0, false, false, 0, 0, 0 FROM _backfill_ext.run",
    "INSERT INTO _backfill_ext.run_refresh (run_id, continuous_aggregate, status) SELECT id, 'x', \
     'refreshed' FROM _backfill_ext.run",
    // erasing history
    "DELETE FROM _backfill_ext.run",
    // a hold under a job id
    "INSERT INTO _backfill_ext.policy_hold (job_id, hypertable) VALUES (1000, 'm')",
    // reading or changing worker tasks
    "SELECT count(*) FROM _backfill_ext.run_task",
    "UPDATE _backfill_ext.run_task SET work = '{}'",
    // reading or planting the row ids a worker takes
    "SELECT count(*) FROM _backfill_ext.run_task_rows",
    "INSERT INTO _backfill_ext.run_task_rows VALUES (1, 0, 1, '{\"(0,1)\"}')",
];

#[test]
fn no_role_writes_the_extensions_state_and_the_victims_runs_work() {
    let cl = Cluster::start(Options::default());
    let mut c = cl.create_db("t");
    roles_and_history(&cl, &mut c);
    for role in ["t_owner", "t_writer", "t_nobody"] {
        let mut r = cl.connect_as("t", role);
        for attack in ATTACKS {
            let (code, msg, _) = expect_error(&mut r, attack);
            assert_eq!(code, "42501", "{role}: {attack}: {msg}");
        }
    }
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.run WHERE run_by = 'postgres'"),
        1,
        "the superuser's run is its own"
    );
    // the owner's and the superuser's runs work, each recorded as its own role
    let mut owner = cl.connect_as("t", "t_owner");
    owner
        .batch_execute("INSERT INTO st SELECT i, now(), i FROM generate_series(11, 20) i")
        .unwrap();
    owner.batch_execute(&call_backfill(&config("st", "m", json!({})))).unwrap();
    assert_eq!(scalar::<i64>(&mut owner, "SELECT count(*) FROM m"), 20);
    c.batch_execute("INSERT INTO st SELECT i, now(), i FROM generate_series(21, 25) i").unwrap();
    c.batch_execute(
        r#"CALL backfill_on_schedule(NULL, '{"staging_table":"st","destination_hypertable":"m"}')"#,
    )
    .unwrap();
    let runs: Vec<String> = c
        .query("SELECT run_by || ' ' || status FROM _backfill_ext.run ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(runs, ["postgres succeeded", "t_owner succeeded", "postgres succeeded"]);
    // reading stays as documented: the owner of the destination sees every run on it
    assert_eq!(scalar::<i64>(&mut owner, "SELECT count(*) FROM backfill_runs"), 3);
    let mut writer = cl.connect_as("t", "t_writer");
    assert_eq!(scalar::<i64>(&mut writer, "SELECT count(*) FROM backfill_runs"), 0);
}

/// A superuser's run over another role's tables warns that their triggers run with
/// superuser rights; the table owner's own run goes on as before.
#[test]
fn a_superusers_run_over_another_roles_triggers_warns() {
    let cl = Cluster::start(Options::default());
    let mut c = cl.create_db("t");
    roles_and_history(&cl, &mut c);
    let mut owner = cl.connect_as("t", "t_owner");
    owner
        .batch_execute(
            "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
             CREATE TRIGGER t BEFORE INSERT ON m FOR EACH ROW EXECUTE FUNCTION noop();
             INSERT INTO st SELECT i, now(), i FROM generate_series(11, 12) i;",
        )
        .unwrap();
    let (mut su, notices) = cl.connect_with_notices("t");
    su.batch_execute(
        r#"CALL backfill_on_schedule(NULL, '{"staging_table":"st","destination_hypertable":"m"}')"#,
    )
    .unwrap();
    let said = notices.lock().unwrap().join("\n");
    assert!(
        said.contains(
            "this run executes as a superuser, and the triggers of m (owned by \
        t_owner) run with its rights"
        ),
        "{said}"
    );
    owner
        .batch_execute("INSERT INTO st SELECT i, now(), i FROM generate_series(13, 14) i")
        .unwrap();
    owner.batch_execute(&call_backfill(&config("st", "m", json!({})))).unwrap();
    assert_eq!(scalar::<i64>(&mut owner, "SELECT count(*) FROM m"), 14);
}

#[test]
fn a_role_without_any_privilege_calls_every_public_function_and_nothing_is_written() {
    let cl = Cluster::start(Options::default());
    let mut c = cl.create_db("t");
    roles_and_history(&cl, &mut c);
    let before: i64 = scalar(&mut c, "SELECT count(*) FROM _backfill_ext.run");
    let mut nobody = cl.connect_as("t", "t_nobody");
    for call in [
        r#"CALL backfill_on_schedule(NULL, '{"staging_table":"st","destination_hypertable":"m"}')"#,
        "CALL decompress_backfill('st', 'm')",
        "SELECT * FROM backfill_plan('st', 'm')",
        r#"SELECT * FROM backfill_plan('{"staging_table":"st","destination_hypertable":"m"}')"#,
        r#"SELECT backfill_check_config('{"staging_table":"st","destination_hypertable":"m"}')"#,
    ] {
        let (code, msg, _) = expect_error(&mut nobody, call);
        assert_eq!(code, "42501", "{call}: {msg}");
    }
    // scheduling needs a scheduler (none here) before it needs privileges; unscheduling
    // a job that is not the caller's is refused
    for call in ["SELECT schedule_backfill('st', 'm')", "SELECT unschedule_backfill(1)"] {
        let (code, msg, _) = expect_error(&mut nobody, call);
        assert!(["42501", "55000", "42704"].contains(&code.as_str()), "{call}: {code} {msg}");
    }
    // a refused run is recorded as the caller's own, and changes nothing else
    let rows: Vec<String> = c
        .query(
            "SELECT run_by || ' ' || status FROM _backfill_ext.run ORDER BY id OFFSET $1",
            &[&before],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(rows.iter().all(|r| r == "t_nobody failed"), "{rows:?}");
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM st"), 0);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m"), 10);
}

timescale_test! {
    /// A non-superuser owning a compressed hypertable runs with workers 1 and 2; while its
    /// workers wait, no role (not even the run's own) can read or change their tasks, or
    /// take over the run, and the run ends with every row moved once and no hold left.
    fn a_non_superusers_run_with_workers_keeps_its_tasks_and_hold_to_itself() {
        let cl = timescale_cluster();
        let mut c = cl.create_db("t");
        // the test hooks are set for the role (a setting a session sets before the library
        // is loaded would be a placeholder)
        c.batch_execute(
            "CREATE ROLE t_owner LOGIN; CREATE ROLE t_writer LOGIN;
             GRANT CREATE ON SCHEMA public TO t_owner;
             ALTER ROLE t_owner SET backfill_ext.debug_pause_at = 'after_insert';
             ALTER ROLE t_owner SET backfill_ext.debug_pause_seconds = 3;",
        )
        .unwrap();
        let mut owner = cl.connect_as("t", "t_owner");
        timescale_dataset(&mut owner, &Dataset::default());
        owner.batch_execute("GRANT SELECT, INSERT ON event_data TO t_writer").unwrap();
        for workers in [1, 2] {
            owner
                .batch_execute(
                    "INSERT INTO backfill_event_data SELECT time, device_id, value + 1 \
                     FROM event_data",
                )
                .unwrap();
            let before = state(&mut owner, "event_data", "backfill_event_data");
            let run = paused_run(&cl, &mut c, workers);
            attacks_fail(&cl, &mut owner);
            run.join().unwrap().unwrap();
            let after = state(&mut owner, "event_data", "backfill_event_data");
            assert_eq!(after.staging_rows, 0);
            assert_eq!(after.dest_rows, before.dest_rows);
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.run_task"), 0);
            let last: String = scalar(
                &mut c,
                "SELECT run_by || ' ' || status FROM _backfill_ext.run ORDER BY id DESC LIMIT 1",
            );
            assert_eq!(last, "t_owner succeeded", "workers {workers}");
        }
    }
}

/// Starts a run of `t_owner`'s with `workers` in a thread of its own, and waits until it
/// pauses (the role's `debug_pause_at`); returns the thread, which ends with the run.
fn paused_run(
    cl: &Cluster,
    c: &mut Client,
    workers: i32,
) -> std::thread::JoinHandle<Result<(), String>> {
    let conn = cl.conn_string_as("t", "t_owner");
    let cfg = event_config(json!({"on_conflict_action": "UPDATE", "workers": workers}));
    let run = std::thread::spawn(move || {
        let mut r = Client::connect(&conn, NoTls).unwrap();
        r.batch_execute(&call_backfill(&cfg)).map_err(|e| e.to_string())
    });
    wait_for("the run to pause", Duration::from_secs(60), || {
        (run.is_finished()
            || scalar::<i64>(
                c,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
            ) > 0)
            .then_some(())
    });
    assert!(
        !run.is_finished(),
        "workers {workers}: the run ended before it paused: {:?}",
        run.join().unwrap()
    );
    run
}

/// Neither the run's owner nor another role can change its tasks or its run row.
fn attacks_fail(cl: &Cluster, owner: &mut Client) {
    for attacker in [owner, &mut cl.connect_as("t", "t_writer")] {
        for attack in [
            "UPDATE _backfill_ext.run_task SET work = '{}'",
            "DELETE FROM _backfill_ext.run_task",
            "UPDATE _backfill_ext.run SET status = 'failed'",
        ] {
            let (code, msg, _) = expect_error(attacker, attack);
            assert_eq!(code, "42501", "{attack}: {msg}");
        }
    }
}
