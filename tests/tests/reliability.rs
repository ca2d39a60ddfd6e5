//! Timeouts, locks, max_runtime, concurrent writers and privileges. The TimescaleDB
//! cases run when a full TimescaleDB is installed (ignored, with the reason, elsewhere);
//! the plain ones everywhere.

use backfill_ext_client_tests::config::{call_backfill, event_config};
use backfill_ext_client_tests::fixtures::{
    assert_compressed_and_policy_as_before, state, timescale_dataset, Dataset, State, START,
};
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{expect_error, scalar, Client, Cluster, NoTls, Options};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use backfill_ext_client_tests::timescale_cluster as ts_cluster;

const CONFIG: &str =
    r#"{"staging_table":"backfill_event_data", "destination_hypertable":"event_data"}"#;

/// 144 new rows in each of days 1, 2 and 3, and one row after the last chunk.
fn stage(c: &mut Client) -> i64 {
    c.batch_execute(&format!(
        "INSERT INTO backfill_event_data (time, device_id, value)
           SELECT t, 99, 1 FROM generate_series(timestamptz '{START}' + interval '1 day',
                                                timestamptz '{START}' + interval '4 days' - \
                                                interval '1 minute', interval '10 minutes') t;
         INSERT INTO backfill_event_data (time, device_id, value) VALUES (timestamptz '{START}' + \
         interval '30 days', 1, 0);"
    ))
    .unwrap();
    3 * 144 + 1
}

/// The chunk of day 2 of the dataset (days counted from 0).
fn chunk_of_day_2(c: &mut Client) -> String {
    scalar(
        c,
        "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks
         WHERE hypertable_name = 'event_data' ORDER BY range_start OFFSET 2 LIMIT 1",
    )
}

/// Nothing lost, nothing half-done: rows are in staging or the destination, chunks
/// compressed before are compressed, the policy schedule is as before.
fn assert_clean(c: &mut Client, before: &State, moved_so_far: i64) {
    let now = state(c, "event_data", "backfill_event_data");
    assert_eq!(now.dest_rows, before.dest_rows + moved_so_far);
    assert_eq!(now.staging_rows, before.staging_rows - moved_so_far);
    assert_compressed_and_policy_as_before(before, &now, "after the run");
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
}

timescale_test! {
    fn statement_timeout_ends_the_run_cleanly() {
        let cl = ts_cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let staged = stage(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        // the second chunk is slow (paused after its decompression); the statement times out there
        let mut r = cl.connect("t");
        r.batch_execute(
            "SET backfill_ext.debug_pause_at = 'after_decompress'; SET statement_timeout = '3s'",
        )
        .unwrap();
        let decompress = event_config(json!({"strategy": "decompress"}));
        let (code, msg, hint) = expect_error(&mut r, &call_backfill(&decompress));
        assert_eq!(code, "57014", "{msg}");
        assert!(hint.as_deref().is_some_and(|h| h.contains("rolled back")), "{msg} {hint:?}");
        assert_clean(&mut c, &before, 0);
        assert_eq!(
            scalar::<String>(&mut c, "SELECT status || ' ' || sqlstate FROM backfill_status"),
            "failed 57014"
        );
        c.batch_execute(&call_backfill(CONFIG)).unwrap();
        assert_clean(&mut c, &before, staged);
    }
}

timescale_test! {
    fn lock_timeout_and_a_long_transaction_on_a_chunk_end_the_run_cleanly() {
        let cl = ts_cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let staged = stage(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        let second = chunk_of_day_2(&mut c);
        // a long transaction holds a lock on the chunk of day 2 that writers must wait for
        let mut long = cl.connect("t");
        long.batch_execute(&format!("BEGIN; LOCK TABLE {second} IN EXCLUSIVE MODE;")).unwrap();
        // one transaction per chunk (direct inserts into several chunks would share one)
        // in this session (`workers`: 1), so the chunk after the locked one never starts
        let cfg =
            event_config(json!({"lock_timeout": "500ms", "strategy": "decompress", "workers": 1}));
        let (code, msg, hint) = expect_error(&mut c, &call_backfill(&cfg));
        assert_eq!(code, "55P03", "{msg}");
        assert!(hint.is_some());
        // day 1 was done and committed; day 2 was rolled back
        assert_clean(&mut c, &before, 144);
        // a session's own lock_timeout, with none in the config, ends it the same way (and
        // soon: the default of 5 minutes applies only where the session has none)
        let mut r = cl.connect("t");
        r.batch_execute("SET lock_timeout = '500ms'").unwrap();
        let no_timeout = event_config(json!({"strategy": "decompress", "workers": 1}));
        let t = std::time::Instant::now();
        let (code, _, _) = expect_error(&mut r, &call_backfill(&no_timeout));
        assert_eq!(code, "55P03");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "the session's 500ms, not the 5-minute default: {:?}",
            t.elapsed()
        );
        assert_eq!(
            scalar::<String>(&mut r, "SHOW lock_timeout"),
            "500ms",
            "the session keeps its setting"
        );
        assert_clean(&mut c, &before, 144);
        long.batch_execute("COMMIT").unwrap();
        c.batch_execute(&call_backfill(CONFIG)).unwrap();
        assert_clean(&mut c, &before, staged);
    }
}

timescale_test! {
    fn max_runtime_stops_between_chunks_and_the_next_run_continues() {
        let cl = ts_cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let staged = stage(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        // decompressing each chunk makes each its own transaction (direct inserts would share one)
        let cfg = event_config(json!({"max_runtime": "1 millisecond", "strategy": "decompress"}));
        for run in 1..=3 {
            let (mut r, notices) = cl.connect_with_notices("t");
            r.batch_execute(&call_backfill(&cfg)).unwrap();
            let n = notices.lock().unwrap().clone();
            let last = run == 3;
            assert_eq!(
                n.iter().any(|m| m.contains("max_runtime (1 millisecond) reached after 1 chunks")),
                !last,
                "run {run}: {n:#?}"
            );
            let moved = if last { staged } else { 144 * run };
            assert_clean(&mut c, &before, moved);
            let r = c.query_one("SELECT status, stopped_early FROM backfill_status", &[]).unwrap();
            assert_eq!(
                (r.get::<_, String>(0), r.get::<_, bool>(1)),
                ("succeeded".to_string(), !last)
            );
        }
    }
}

timescale_test! {
    fn writers_on_both_tables_during_runs_lose_nothing() {
        let cl = ts_cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let staged = stage(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        let stop = Arc::new(AtomicBool::new(false));
        // writer 1 adds late rows to staging across every day; writer 2 adds live rows
        // to the destination after the last chunk; writer 3 reads the destination
        let writer = |sql: &'static str| {
            let conn = cl.conn_string("t");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut w = Client::connect(&conn, NoTls).unwrap();
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    w.execute(sql, &[&n]).unwrap();
                    n += 1;
                }
                n
            })
        };
        let w1 = writer(
            "INSERT INTO backfill_event_data (time, device_id, value)
         VALUES (timestamptz '2024-01-01' + ($1::int8 % 5) * interval '1 day' + ($1::int8 / 5) * \
         interval '1 second', 1000, 1)",
        );
        let w2 = writer(
            "INSERT INTO event_data (time, device_id, value) VALUES (timestamptz \
        '2024-03-01' + $1::int8 * interval '1 second', 2000, 1)",
        );
        let w3 = writer("SELECT count(*) FROM event_data WHERE device_id = $1::int8::int % 5");
        for _ in 0..4 {
            c.batch_execute(&call_backfill(CONFIG)).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let (n1, n2, _) = (w1.join().unwrap(), w2.join().unwrap(), w3.join().unwrap());
        assert!(n1 > 0 && n2 > 0, "the writers wrote ({n1}, {n2})");
        // rows written to staging during a run were moved by it or are left for the next
        c.batch_execute(&call_backfill(CONFIG)).unwrap();
        let after = state(&mut c, "event_data", "backfill_event_data");
        assert_eq!(after.staging_rows, 0);
        assert_eq!(after.dest_rows, before.dest_rows + staged + n1 + n2, "every row once");
        assert_eq!(
            scalar::<i64>(&mut c, "SELECT count(*) FROM event_data WHERE device_id = 1000"),
            n1
        );
        assert_compressed_and_policy_as_before(&before, &after, "with writers");
    }
}

fn plain_tables(c: &mut Client) {
    c.batch_execute(
        "CREATE TABLE readings (id int NOT NULL, ts timestamptz NOT NULL, value float8, PRIMARY \
         KEY (id, ts));
         CREATE TABLE staging (LIKE readings);
         INSERT INTO staging SELECT i, now(), i FROM generate_series(1, 20) i;",
    )
    .unwrap();
}

/// The extension is trusted: alice, the database's owner, installs it without superuser
/// and runs a backfill; 10 more rows wait in staging. Returns alice's session.
fn alice_installs_and_runs_it(cl: &Cluster, admin: &mut Client) -> Client {
    admin.batch_execute("CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;").unwrap();
    admin.batch_execute("CREATE DATABASE t OWNER alice").unwrap();
    let mut alice = cl.connect_as("t", "alice");
    alice.batch_execute("CREATE EXTENSION backfill_ext").unwrap();
    plain_tables(&mut alice);
    alice
        .batch_execute(
            "CALL backfill_on_schedule(1, \
        '{\"staging_table\":\"staging\",\"destination_hypertable\":\"readings\"}')",
        )
        .unwrap();
    assert_eq!(scalar::<i64>(&mut alice, "SELECT count(*) FROM readings"), 20);
    alice
        .batch_execute("INSERT INTO staging SELECT i, now(), i FROM generate_series(21, 30) i")
        .unwrap();
    alice
}

/// Each privilege bob lacks is named, one grant at a time, before anything changes; with
/// them all, bob's run moves the rows.
fn missing_privileges_are_named_first(alice: &mut Client, bob: &mut Client) {
    let call = "CALL backfill_on_schedule(2, \
        '{\"staging_table\":\"staging\",\"destination_hypertable\":\"readings\"}')";
    let steps: &[(&str, &str)] = &[
        ("", "role \"bob\" lacks SELECT, DELETE on staging table public.staging"),
        (
            "GRANT SELECT ON staging TO bob",
            "role \"bob\" lacks DELETE on staging table public.staging",
        ),
        (
            "GRANT DELETE ON staging TO bob",
            "role \"bob\" lacks INSERT on destination public.readings",
        ),
    ];
    for (grant, msg) in steps {
        if !grant.is_empty() {
            alice.batch_execute(grant).unwrap();
        }
        let (code, m, hint) = expect_error(bob, call);
        assert_eq!(code, "42501", "{m}");
        assert!(m.contains(msg), "{m}");
        assert!(hint.unwrap().starts_with("GRANT "));
        assert_eq!(scalar::<i64>(alice, "SELECT count(*) FROM staging"), 10, "nothing changed");
    }
    alice.batch_execute("GRANT INSERT ON readings TO bob").unwrap();
    bob.batch_execute(call).unwrap();
    assert_eq!(scalar::<i64>(alice, "SELECT count(*) FROM readings"), 30);
}

/// No role but the extension writes its tables: bob cannot plant a policy hold for alice's
/// table, and no role (not even bob, who may insert into readings) can plant a "running"
/// run on it, as if a run were working there.
fn nobody_plants_holds_or_runs(
    cl: &Cluster,
    admin: &mut Client,
    alice: &mut Client,
    bob: &mut Client,
) {
    let (code, _, _) = expect_error(
        bob,
        "INSERT INTO _backfill_ext.policy_hold (job_id, hypertable) VALUES (1, 'readings')",
    );
    assert_eq!(code, "42501");
    admin.batch_execute("CREATE ROLE carol LOGIN").unwrap();
    let mut carol = cl.connect_as("t", "carol");
    let plant = "INSERT INTO _backfill_ext.run (staging, destination, destination_oid) VALUES \
        ('public.staging', 'public.readings', 'readings'::regclass)";
    for who in [&mut carol, bob] {
        let (code, m, _) = expect_error(who, plant);
        assert_eq!(code, "42501", "{m}");
        assert!(m.contains("permission denied for table run"), "{m}");
    }
    assert_eq!(
        scalar::<i64>(alice, "SELECT count(*) FROM backfill_runs WHERE status = 'running'"),
        0
    );
}

#[test]
fn a_non_superuser_installs_and_runs_it_and_missing_privileges_are_named_first() {
    let cl = Cluster::start(Options::default());
    let mut admin = cl.connect("postgres");
    let mut alice = alice_installs_and_runs_it(&cl, &mut admin);
    let mut bob = cl.connect_as("t", "bob");
    missing_privileges_are_named_first(&mut alice, &mut bob);
    // each sees the runs it made, and the owner of the destination sees all of them
    assert_eq!(
        scalar::<i64>(&mut bob, "SELECT count(*) FROM backfill_runs"),
        4,
        "its three refused runs and the one that worked"
    );
    assert_eq!(scalar::<i64>(&mut alice, "SELECT count(*) FROM backfill_runs"), 5);
    nobody_plants_holds_or_runs(&cl, &mut admin, &mut alice, &mut bob);
    // nothing runs as SECURITY DEFINER
    assert_eq!(
        scalar::<i64>(
            &mut alice,
            "SELECT count(*) FROM pg_proc p JOIN pg_depend d ON \
        d.objid = p.oid JOIN pg_extension e ON e.oid = d.refobjid WHERE e.extname = 'backfill_ext' \
        AND p.prosecdef"
        ),
        0
    );
}

timescale_test! {
    fn a_job_owner_who_does_not_own_the_hypertable_is_stopped_before_anything_changes() {
        let cl = ts_cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        stage(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        c.batch_execute(
            "CREATE ROLE bob LOGIN;
         GRANT SELECT, DELETE ON backfill_event_data TO bob; GRANT SELECT, INSERT ON event_data TO \
         bob;",
        )
        .unwrap();
        let mut bob = cl.connect_as("t", "bob");
        let (code, msg, hint) = expect_error(&mut bob, &call_backfill(CONFIG));
        assert_eq!(code, "42501", "{msg}");
        assert!(
            msg.contains(
                "role \"bob\" must own hypertable public.event_data to decompress and \
        compress its chunks"
            ),
            "{msg}"
        );
        assert!(hint.is_some());
        assert_eq!(state(&mut c, "event_data", "backfill_event_data"), before, "nothing changed");
    }
}

timescale_test! {
    fn a_policy_schedule_changed_during_the_run_is_left_as_it_was_set() {
        let cl = ts_cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        stage(&mut c);
        let job: i32 = scalar(
            &mut c,
            "SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_name = \
            'event_data' AND proc_name = 'policy_compression'",
        );
        let second = chunk_of_day_2(&mut c);
        // the run waits for a long transaction on the chunk of day 2, its policy held
        let mut long = cl.connect("t");
        long.batch_execute(&format!("BEGIN; LOCK TABLE {second} IN EXCLUSIVE MODE;")).unwrap();
        let conn = cl.conn_string("t");
        let run = std::thread::spawn(move || {
            let mut r = Client::connect(&conn, NoTls).unwrap();
            let cfg = event_config(
                json!({"lock_timeout": "2 minutes", "strategy": "decompress", "workers": 1}),
            );
            r.batch_execute(&call_backfill(&cfg)).map_err(|e| e.to_string())
        });
        backfill_ext_client_tests::wait_for(
            "the run to wait for the chunk",
            std::time::Duration::from_secs(60),
            || {
                c.query_opt(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CALL \
                backfill_on_schedule%' AND wait_event_type = 'Lock'",
                    &[],
                )
                .unwrap()
                .map(|r| r.get::<_, i32>(0))
            },
        );
        assert_eq!(
            scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"),
            1,
            "the run holds the policy"
        );
        // an administrator moves the policy meanwhile
        c.batch_execute(&format!(
            "SELECT alter_job({job}, next_start => '2030-06-01 00:00:00+00')"
        ))
        .unwrap();
        long.batch_execute("COMMIT").unwrap();
        run.join().unwrap().unwrap();
        assert_eq!(
            scalar::<String>(
                &mut c,
                &format!(
                    "SELECT next_start::text FROM timescaledb_information.jobs WHERE job_id = {job}"
                )
            ),
            "2030-06-01 00:00:00+00",
            "the administrator's schedule stays"
        );
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM backfill_event_data"), 0);
    }
}

timescale_test! {
    fn unschedule_backfill_puts_back_a_policy_an_interrupted_run_left_held() {
        let cl = ts_cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        stage(&mut c);
        let job: i32 = scalar(
            &mut c,
            "SELECT schedule_backfill('backfill_event_data', 'event_data', interval '1 day', '{}', \
         timestamptz '2099-01-01 00:00:00+00')",
        );
        let policy: i32 = scalar(
            &mut c,
            "SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_name = \
            'event_data' AND proc_name = 'policy_compression'",
        );
        let next_start = |c: &mut Client| {
            scalar::<String>(
                c,
                &format!(
                    "SELECT next_start::text FROM timescaledb_information.jobs \
                     WHERE job_id = {policy}"
                ),
            )
        };
        let original = next_start(&mut c);
        // what a run of the job leaves when its backend ends mid-run: the hold, and the
        // policy pushed out
        c.batch_execute(&format!(
            "INSERT INTO _backfill_ext.policy_hold (job_id, hypertable, original_next_start, \
         original_scheduled, held_at)
           VALUES ({policy}, 'event_data', '{original}', true, now() - interval '1 hour');
         SELECT alter_job({policy}, next_start => now() + interval '1 day');"
        ))
        .unwrap();
        assert_ne!(next_start(&mut c), original);
        c.batch_execute(&format!("SELECT unschedule_backfill({job})")).unwrap();
        assert_eq!(
            scalar::<i64>(
                &mut c,
                &format!("SELECT count(*) FROM timescaledb_information.jobs WHERE job_id = {job}")
            ),
            0
        );
        assert_eq!(
            scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"),
            0,
            "no hold outlives the job"
        );
        assert_eq!(
            next_start(&mut c),
            original,
            "the policy's schedule is as before the interrupted run"
        );
    }
}

timescale_test! {
    fn a_run_longer_than_the_push_interval_keeps_the_policy_held_to_its_end() {
        let cl = ts_cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset { days: 7, ..Dataset::default() });
        c.batch_execute(&format!(
            "INSERT INTO backfill_event_data (time, device_id, value)
           SELECT t, 99, 1 FROM generate_series(timestamptz '{START}', timestamptz '{START}' + \
           interval '7 days' - interval '1 hour', interval '1 hour') t"
        ))
        .unwrap();
        let before = state(&mut c, "event_data", "backfill_event_data");
        let job: i32 = scalar(
            &mut c,
            "SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_name = \
            'event_data' AND proc_name = 'policy_compression'",
        );
        // seven chunk transactions with a second between each: about 6 s, three times the
        // push interval
        let conn = cl.conn_string("t");
        let run = std::thread::spawn(move || {
            let mut r = Client::connect(&conn, NoTls).unwrap();
            r.batch_execute(
                "SET backfill_ext.debug_pause_at = 'between_chunks'; SET \
            backfill_ext.debug_pause_seconds = 1",
            )
            .unwrap();
            let cfg = event_config(
                json!({"compression_job_push_interval": "2 seconds", "strategy": "decompress"}),
            );
            r.batch_execute(&call_backfill(&cfg)).map_err(|e| e.to_string())
        });
        let mut looks = 0;
        while !run.is_finished() {
            let held: Option<bool> = c
                .query_opt(
                    "SELECT j.next_start > now() FROM timescaledb_information.jobs j JOIN \
                 _backfill_ext.policy_hold h ON h.job_id = j.job_id WHERE j.job_id = $1",
                    &[&job],
                )
                .unwrap()
                .map(|r| r.get(0));
            if let Some(ahead) = held {
                assert!(
                    ahead,
                    "the compression policy came due during the run (after {looks} looks)"
                );
                looks += 1;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        run.join().unwrap().unwrap();
        assert!(looks >= 30, "the run held the policy for {looks} looks of 0.1 s only");
        let after = state(&mut c, "event_data", "backfill_event_data");
        assert_eq!(after.staging_rows, 0);
        assert_eq!(after.dest_rows, before.dest_rows + before.staging_rows);
        assert_compressed_and_policy_as_before(&before, &after, "after a long run");
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
    }
}
