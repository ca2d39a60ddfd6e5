//! The TimescaleDB tier: real hypertables with compressed chunks, the real job
//! scheduler. Runs whenever a full TimescaleDB (with compression and add_job) is
//! installed; elsewhere the runner reports each test as ignored, with the reason.

use backfill_ext_client_tests::fixtures::{
    assert_compressed_and_policy_as_before, not_fully_compressed, stage_correction_from_day,
    stage_late_rows, state, timescale_dataset, Api, Dataset, START,
};
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{expect_error, scalar, wait_for, Client, Cluster, Notices};
use std::time::Duration;

fn cluster() -> Cluster {
    backfill_ext_client_tests::timescale_cluster()
}

const CONFIG: &str =
    r#"{"staging_table":"backfill_event_data", "destination_hypertable":"event_data"}"#;

fn assert_promises(
    c: &mut Client,
    before: &backfill_ext_client_tests::fixtures::State,
    added: i64,
) {
    let after = state(c, "event_data", "backfill_event_data");
    assert_eq!(after.staging_rows, 0, "staging is empty");
    assert_eq!(
        after.dest_rows,
        before.dest_rows + added,
        "every staging row is in, duplicates once"
    );
    assert_compressed_and_policy_as_before(before, &after, "after the run");
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
}

timescale_test! {
    fn add_job_as_users_type_it_runs_on_the_scheduler() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let added = stage_late_rows(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        assert!(not_fully_compressed(&before).is_empty());
        let job: i32 = scalar(
            &mut c,
            &format!("SELECT add_job('backfill_on_schedule', '10 days', '{CONFIG}', NOW())"),
        );
        assert_eq!(cl.wait_for_job(&mut c, job), 1);
        assert_promises(&mut c, &before, added);
        // the job stays scheduled for its next run
        assert!(scalar::<bool>(
            &mut c,
            &format!("SELECT scheduled FROM timescaledb_information.jobs WHERE job_id = {job}")
        ));
    }
}

timescale_test! {
    fn run_job_commits_chunk_by_chunk_and_reports_each() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let added = stage_late_rows(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        let job: i32 = scalar(
            &mut c,
            &format!(
                "SELECT add_job('backfill_on_schedule', '10 days', '{CONFIG}', scheduled => false)"
            ),
        );
        let (mut c2, notices) = cl.connect_with_notices("t");
        c2.batch_execute(&format!("CALL run_job({job})")).unwrap();
        assert_promises(&mut c, &before, added);
        let notices = notices.lock().unwrap().clone();
        let chunk_lines: Vec<&String> =
            notices.iter().filter(|n| n.starts_with("backfill_ext: chunk ")).collect();
        // days 1-2 get the new device, day 0 the duplicates: three compressed chunks, nothing else
        // touched
        assert_eq!(chunk_lines.len(), 3, "{notices:#?}");
        // DO NOTHING decompresses nothing: every chunk takes its rows directly (day 0's
        // duplicates are checked against the compressed batches in place)
        assert!(
            chunk_lines[0].contains(
                ": 30 rows moved, 30 conflicts, inserted into the compressed chunk, recompressed"
            ),
            "{notices:#?}"
        );
        assert!(
            chunk_lines[1].contains(
                ": 144 rows moved, 0 conflicts, inserted into the compressed chunk, recompressed"
            ),
            "{notices:#?}"
        );
        assert!(
            chunk_lines[2].contains(
                ": 144 rows moved, 0 conflicts, inserted into the compressed chunk, recompressed"
            ),
            "{notices:#?}"
        );
        assert!(
            notices
                .iter()
                .any(|n| n
                    .contains("rows outside existing chunks: 2 rows moved, 0 conflicts, 2 new \
                        chunks")),
            "{notices:#?}"
        );
    }
}

timescale_test! {
    fn update_overwrites_values_in_compressed_chunks() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        c.batch_execute(&format!(
            "INSERT INTO backfill_event_data (time, device_id, value, note)
           SELECT time, device_id, -1, 'corrected' FROM event_data WHERE time < timestamptz \
           '{START}' + interval '2 days'"
        ))
        .unwrap();
        let staged: i64 = scalar(&mut c, "SELECT count(*) FROM backfill_event_data");
        let before = state(&mut c, "event_data", "backfill_event_data");
        c.batch_execute(
            r#"CALL backfill_on_schedule(NULL, '{"staging_table":"backfill_event_data","destination_hypertable":"event_data",
                                          "on_conflict_action":"UPDATE","on_conflict_update_columns":["value"]}')"#,
        )
        .unwrap();
        assert_promises(&mut c, &before, 0);
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM event_data WHERE value = \
            -1"), staged);
        // only the listed column was overwritten
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM event_data WHERE note IS NOT \
            NULL"), 0);
    }
}

timescale_test! {
    fn restrict_fails_in_the_middle_and_loses_nothing() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        // new rows in days 0, 1, 3 and 4; one conflicting row in day 2
        c.batch_execute(&format!(
            "INSERT INTO backfill_event_data (time, device_id, value)
           SELECT t, 77, 0 FROM generate_series(timestamptz '{START}', timestamptz '{START}' + \
           interval '5 days' - interval '1 minute',
                                                interval '1 hour') t
           WHERE t < timestamptz '{START}' + interval '2 days' OR t >= timestamptz '{START}' + \
           interval '3 days';
         INSERT INTO backfill_event_data (time, device_id, value)
           SELECT time, device_id, value FROM event_data WHERE device_id = 3 AND time >= \
           timestamptz '{START}' + interval '2 days' LIMIT 1;
         INSERT INTO backfill_event_data (time, device_id, value)
           VALUES (timestamptz '{START}' + interval '2 days 1 minute', 78, 0);"
        ))
        .unwrap();
        let before = state(&mut c, "event_data", "backfill_event_data");
        let (code, msg, hint) = expect_error(
            &mut c,
            // one chunk after another in this session: with workers, day 3 could be under way when
            // day
            // 2 fails
            r#"CALL backfill_on_schedule(NULL, '{"staging_table":"backfill_event_data","destination_hypertable":"event_data","on_conflict_action":"RESTRICT","workers":1}')"#,
        );
        assert_eq!(code, "23505");
        assert!(
            msg.contains("key (device_id, time)=(3,")
                && msg.contains("already exists in chunk _timescaledb_internal."),
            "{msg}"
        );
        assert!(hint.is_some());
        let after = state(&mut c, "event_data", "backfill_event_data");
        // days 0 and 1 are done and committed; day 2 rolled back; days 3, 4 not started
        assert_eq!(after.dest_rows, before.dest_rows + 48);
        assert_eq!(after.staging_rows, before.staging_rows - 48);
        assert!(
            not_fully_compressed(&after).is_empty(),
            "no chunk left decompressed: {:?}",
            after.chunks
        );
        assert_eq!(after.policies, before.policies, "policy schedule restored on the error path");
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
        // with the conflict removed, the next run finishes the job
        c.batch_execute("DELETE FROM backfill_event_data WHERE device_id = 3").unwrap();
        c.batch_execute(
            r#"CALL backfill_on_schedule(NULL, '{"staging_table":"backfill_event_data","destination_hypertable":"event_data","on_conflict_action":"RESTRICT"}')"#,
        )
        .unwrap();
        assert_promises(&mut c, &before, 24 * 4 + 1);
    }
}

timescale_test! {
    fn staging_columns_in_another_order_and_omitted() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        c.batch_execute(&format!(
            "DROP TABLE backfill_event_data;
         CREATE TABLE backfill_event_data (value double precision, device_id int, time timestamptz);
         INSERT INTO backfill_event_data (time, device_id, value)
           SELECT t, 50, 5 FROM generate_series(timestamptz '{START}', timestamptz '{START}' + \
           interval '1 day', interval '1 hour') t;"
        ))
        .unwrap();
        let before = state(&mut c, "event_data", "backfill_event_data");
        c.batch_execute("CALL decompress_backfill('backfill_event_data', 'event_data')").unwrap();
        assert_promises(&mut c, &before, 25);
        assert_eq!(
            scalar::<i64>(
                &mut c,
                "SELECT count(*) FROM event_data WHERE device_id = 50 AND value = 5 AND note IS \
                 NULL"
            ),
            25
        );
    }
}

timescale_test! {
    fn integer_time_hypertable() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        c.batch_execute(
            "CREATE TABLE m (t bigint NOT NULL, k int NOT NULL, v int, UNIQUE (k, t));
         SELECT create_hypertable('m', 't', chunk_time_interval => 1000);
         ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'k');
         INSERT INTO m SELECT t, k, t FROM generate_series(0, 4999, 5) t, generate_series(1, 3) k;
         SELECT count(compress_chunk(ch)) FROM show_chunks('m') ch;
         CREATE TABLE s (LIKE m);
         INSERT INTO s SELECT t, 9, 0 FROM generate_series(2000, 2999, 10) t;
         INSERT INTO s SELECT t, 1, 0 FROM generate_series(1000, 1099, 5) t;
         INSERT INTO s VALUES (-500, 1, 1), (9000, 1, 1);",
        )
        .unwrap();
        let before = state(&mut c, "m", "s");
        c.batch_execute(
            r#"CALL backfill_on_schedule(NULL, '{"staging_table":"s","destination_hypertable":"m"}')"#,
        )
        .unwrap();
        let after = state(&mut c, "m", "s");
        assert_eq!(after.staging_rows, 0);
        assert_eq!(after.dest_rows, before.dest_rows + 100 + 2);
        assert_eq!(
            not_fully_compressed(&after).len(),
            2,
            "only the two new chunks are uncompressed: {:?}",
            after.chunks
        );
        assert_eq!(after.chunks.len(), before.chunks.len() + 2);
    }
}

timescale_test! {
    fn space_partitioned_hypertable_touches_only_receiving_chunks() {
        let cl = cluster();
        // "r": the rows routed to their chunks by each chunk's filter, in route table rows of a few
        // ids
        for (db, routed) in [("t", false), ("r", true)] {
            let mut c = cl.create_db(db);
            timescale_dataset(
                &mut c,
                &Dataset { space_partitions: 2, devices: 8, ..Default::default() },
            );
            // one device's rows land in exactly one space partition per day
            c.batch_execute(&format!(
                "INSERT INTO backfill_event_data (time, device_id, value)
               SELECT t, 1, 0.5 FROM generate_series(timestamptz '{START}' + interval '1 day', \
               timestamptz '{START}' + interval '2 days' - interval '1 minute', interval '1 \
               minute') t
               ON CONFLICT DO NOTHING;"
            ))
            .unwrap();
            let before = state(&mut c, "event_data", "backfill_event_data");
            assert_eq!(before.chunks.len(), 10);
            let (mut c2, notices) = cl.connect_with_notices(db);
            c2.batch_execute(&format!("SET backfill_ext.debug_always_route = {routed}")).unwrap();
            c2.batch_execute(&format!("CALL backfill_on_schedule(NULL, '{CONFIG}')")).unwrap();
            let notices = notices.lock().unwrap().clone();
            let chunk_lines: Vec<&String> =
                notices.iter().filter(|n| n.starts_with("backfill_ext: chunk ")).collect();
            assert_eq!(chunk_lines.len(), 1, "one chunk of the two in that day: {notices:#?}");
            assert!(
                chunk_lines[0].contains(
                    ": 1440 rows moved, 144 conflicts, inserted into the \
            compressed chunk, recompressed"
                ),
                "{notices:#?}"
            );
            assert_promises(&mut c, &before, 1440 - 144);
        }
    }
}

timescale_test! {
    fn timestamp_without_time_zone_in_a_non_utc_session() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset { time_type: "timestamp", ..Default::default() });
        c.batch_execute(
            "ALTER DATABASE t SET timezone = 'America/Los_Angeles';
         INSERT INTO backfill_event_data (time, device_id, value)
           SELECT t, 42, 1 FROM generate_series(timestamp '2024-01-02 00:00', timestamp \
           '2024-01-02 23:59', interval '1 minute') t;",
        )
        .unwrap();
        let before = state(&mut c, "event_data", "backfill_event_data");
        let (mut c2, notices) = cl.connect_with_notices("t");
        c2.batch_execute(&format!("CALL backfill_on_schedule(NULL, '{CONFIG}')")).unwrap();
        let notices = notices.lock().unwrap().clone();
        let chunk_lines: Vec<&String> =
            notices.iter().filter(|n| n.starts_with("backfill_ext: chunk ")).collect();
        assert_eq!(chunk_lines.len(), 1, "exactly the chunk of 2024-01-02: {notices:#?}");
        assert!(chunk_lines[0].contains(": 1440 rows moved"), "{notices:#?}");
        assert_promises(&mut c, &before, 1440);
    }
}

timescale_test! {
    fn check_config_rejects_bad_configs_at_registration() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        c.batch_execute(
            "CREATE TABLE plain_copy (LIKE event_data); CREATE TABLE odd (time \
        timestamptz, device_id text);",
        )
        .unwrap();
        let add = |cfg: &str| {
            format!(
                "SELECT add_job('backfill_on_schedule', '10 days', config => '{cfg}', check_config \
            => 'backfill_check_config')"
            )
        };
        let bad: &[(&str, &str, &str)] = &[
            (r#"{"destination_hypertable":"event_data"}"#, "22023", "config key \"staging_table\" \
                is \
            required"),
            (r#"{"staging_table":"backfill_event_data","destination_hypertable":"event_data","on_conflict":"UPDATE"}"#, "22023", "unknown config key \"on_conflict\""),
            (r#"{"staging_table":"no_such_table","destination_hypertable":"event_data"}"#, "42P01", "staging table \"no_such_table\" (config key \"staging_table\") does not exist"),
            (r#"{"staging_table":"backfill_event_data","destination_hypertable":"plain_copy"}"#, "42809", "destination public.plain_copy is not a hypertable"),
            (r#"{"staging_table":"odd","destination_hypertable":"event_data"}"#, "42804", "column \"device_id\" is text in staging table public.odd but integer in destination public.event_data"),
        ];
        for (cfg, code, msg) in bad {
            let (got, m, hint) = expect_error(&mut c, &add(cfg));
            assert_eq!(&got, code, "{cfg}: {m}");
            assert!(m.contains(msg), "{cfg}: {m}");
            assert!(hint.is_some(), "{cfg}");
        }
        assert_eq!(
            scalar::<i64>(
                &mut c,
                "SELECT count(*) FROM timescaledb_information.jobs WHERE \
        proc_name = 'backfill_on_schedule'"
            ),
            0
        );
        // a good config registers; alter_job re-checks a new config
        let job: i32 = scalar(&mut c, &add(CONFIG));
        let (code, msg, _) = expect_error(
            &mut c,
            &format!(
                r#"SELECT alter_job({job}, config => '{{"staging_table":"backfill_event_data","destination_hypertable":"nope"}}')"#
            ),
        );
        assert_eq!(code, "42P01", "{msg}");
        // and the scheduler runs it
        c.batch_execute(&format!(
            "INSERT INTO backfill_event_data (time, device_id, value) VALUES \
        ('{START}'::timestamptz + interval '1 hour 1 minute', 9, 1)"
        ))
        .unwrap();
        c.batch_execute(&format!("SELECT alter_job({job}, next_start => now())")).unwrap();
        wait_for("the scheduler to run the checked job", Duration::from_secs(120), || {
            (scalar::<i64>(&mut c, "SELECT count(*) FROM backfill_event_data") == 0).then_some(())
        });
        assert_eq!(scalar::<String>(&mut c, "SELECT status FROM backfill_status"), "succeeded");
    }
}

timescale_test! {
    fn schedule_backfill_registers_a_named_checked_job() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let (mut c2, notices) = cl.connect_with_notices("t");
        let job: i32 = c2
            .query_one(
                "SELECT schedule_backfill('backfill_event_data', 'event_data', '1 day', \
             '{\"on_conflict_action\":\"UPDATE\"}', now() + interval '1 hour')",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains(&format!("scheduled with TimescaleDB's job scheduler as job \
                {job}"))));
        let r = c
            .query_one(
                "SELECT proc_name::text, check_name::text, schedule_interval::text, \
             config->>'on_conflict_action',
                    config->>'staging_table', config->>'destination_hypertable', \
                    application_name::text
             FROM timescaledb_information.jobs WHERE job_id = $1",
                &[&job],
            )
            .unwrap();
        assert_eq!(r.get::<_, String>(0), "backfill_on_schedule");
        assert_eq!(r.get::<_, String>(1), "backfill_check_config");
        assert_eq!(r.get::<_, String>(2), "1 day");
        assert_eq!(r.get::<_, String>(3), "UPDATE");
        assert_eq!(r.get::<_, String>(4), "backfill_event_data");
        assert_eq!(r.get::<_, String>(5), "event_data");
        // add_job names jobs from TimescaleDB 2.20 (job_name); before, the job keeps TimescaleDB's
        // own
        // name
        let named: bool = scalar(
            &mut c,
            "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = \
        'add_job' AND 'job_name' = ANY (proargnames))",
        );
        let expected = if named {
            "backfill backfill_event_data -> event_data".to_string()
        } else {
            format!("User-Defined Action [{job}]")
        };
        assert!(r.get::<_, String>(6).contains(&expected), "{}", r.get::<_, String>(6));
        // a bad extra key is refused before anything is registered
        let (code, msg, _) = expect_error(
            &mut c,
            "SELECT schedule_backfill('backfill_event_data', 'event_data', '1 day', \
             '{\"bogus\":1}')",
        );
        assert_eq!(code, "22023", "{msg}");
        c.batch_execute(&format!("SELECT unschedule_backfill({job})")).unwrap();
        assert_eq!(
            scalar::<i64>(
                &mut c,
                "SELECT count(*) FROM timescaledb_information.jobs WHERE \
        proc_name = 'backfill_on_schedule'"
            ),
            0
        );
        let (code, _, _) = expect_error(&mut c, &format!("SELECT unschedule_backfill({job})"));
        assert_eq!(code, "42704");
    }
}

timescale_test! {
    fn progress_is_visible_live_and_the_plan_matches_the_run() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let added = stage_late_rows(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        let plan: Vec<(Option<String>, i64, String)> = c
            .query(
                "SELECT chunk, staging_rows, action FROM backfill_plan('backfill_event_data', \
            'event_data')",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(plan.len(), 4, "{plan:?}");
        assert!(
            plan[..3]
                .iter()
                .all(|p| p.2 == "insert into the compressed chunk, recompress what became partial"),
            "{plan:?}"
        );
        assert_eq!(plan[3], (None, 2, "insert, creating new chunks".to_string()));
        assert_eq!(
            state(&mut c, "event_data", "backfill_event_data"),
            before,
            "the plan changed nothing"
        );
        // hold the third chunk so the run stops there, in flight, after committing two
        let third = plan[2].0.clone().unwrap();
        let mut locker = cl.connect("t");
        locker.batch_execute("BEGIN").unwrap();
        locker.batch_execute(&format!("LOCK TABLE {third} IN EXCLUSIVE MODE")).unwrap();
        let conn = cl.conn_string("t");
        let run = std::thread::spawn(move || {
            let mut c1 =
                backfill_ext_client_tests::Client::connect(&conn, backfill_ext_client_tests::NoTls)
                    .unwrap();
            // one transaction per chunk, so progress shows chunk by chunk
            c1.batch_execute(
                r#"CALL backfill_on_schedule(NULL, '{"staging_table":"backfill_event_data", "destination_hypertable":"event_data", "strategy":"decompress"}')"#,
            )
        });
        let done: Vec<(String, i64)> = wait_for(
            "two chunks to be reported while the run is in flight",
            Duration::from_secs(60),
            || {
                let rows: Vec<(String, i64)> = c
                    .query("SELECT chunk, rows_moved FROM backfill_run_chunks ORDER BY \
                        finished", &[])
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                (rows.len() == 2).then_some(rows)
            },
        );
        let live =
            c.query_one("SELECT status, rows_moved, chunks_done FROM \
                backfill_status", &[]).unwrap();
        assert_eq!(live.get::<_, String>(0), "running");
        assert_eq!(live.get::<_, i64>(1), done.iter().map(|d| d.1).sum::<i64>());
        assert_eq!(live.get::<_, i64>(2), 2);
        locker.batch_execute("COMMIT").unwrap();
        run.join().unwrap().unwrap();
        assert_promises(&mut c, &before, added);
        // (background workers finish chunks in any order)
        let touched: Vec<String> = c
            .query("SELECT chunk FROM backfill_run_chunks ORDER BY chunk", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut planned: Vec<String> = plan[..3].iter().map(|p| p.0.clone().unwrap()).collect();
        planned.sort();
        assert_eq!(touched, planned, "the run touched exactly the planned chunks");
        let r = c
            .query_one(
                "SELECT status, rows_moved, conflicts, chunks_decompressed, \
        chunks_recompressed, new_chunks FROM backfill_status",
                &[],
            )
            .unwrap();
        assert_eq!(r.get::<_, String>(0), "succeeded");
        assert_eq!(r.get::<_, i64>(1), added + 30);
        assert_eq!(r.get::<_, i64>(2), 30);
        assert_eq!((r.get::<_, i32>(3), r.get::<_, i32>(4), r.get::<_, i32>(5)), (3, 3, 2));
    }
}

timescale_test! {
    fn two_runs_started_together_give_the_result_of_one() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let added = stage_late_rows(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        let a: i32 = scalar(
            &mut c,
            &format!(
                "SELECT add_job('backfill_on_schedule', '10 days', '{CONFIG}', scheduled => false)"
            ),
        );
        let b: i32 = scalar(
            &mut c,
            &format!(
                "SELECT add_job('backfill_on_schedule', '10 days', '{CONFIG}', scheduled => false)"
            ),
        );
        let handles: Vec<_> = [a, b]
            .into_iter()
            .map(|job| {
                let conn = cl.conn_string("t");
                std::thread::spawn(move || {
                    let mut c1 = backfill_ext_client_tests::Client::connect(
                        &conn,
                        backfill_ext_client_tests::NoTls,
                    )
                    .unwrap();
                    c1.batch_execute(&format!("CALL run_job({job})"))
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        assert_promises(&mut c, &before, added);
        let moved: i64 = scalar(
            &mut c,
            "SELECT coalesce(sum(rows_moved), 0)::int8 FROM backfill_runs WHERE status = \
             'succeeded'",
        );
        assert_eq!(moved, added + 30, "every row moved once, by one run or split between them");
    }
}

timescale_test! {
    fn direct_inserts_that_would_pass_the_decompression_limit_fall_back_and_never_fail() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        c.batch_execute(
            "ALTER DATABASE t SET timescaledb.max_tuples_decompressed_per_dml_transaction = 50",
        )
        .unwrap();
        // every existing row of day 1 again, corrected: a direct upsert would decompress the whole
        // chunk
        c.batch_execute(&format!(
            "INSERT INTO backfill_event_data (time, device_id, value)
           SELECT time, device_id, -1 FROM event_data
           WHERE time >= timestamptz '{START}' + interval '1 day' AND time < timestamptz '{START}' \
           + interval '2 days'"
        ))
        .unwrap();
        let staged: i64 = scalar(&mut c, "SELECT count(*) FROM backfill_event_data");
        let before = state(&mut c, "event_data", "backfill_event_data");
        // TimescaleDB's own upsert fails here
        let mut plain = cl.connect("t");
        let (code, _, _) = expect_error(
            &mut plain,
            "INSERT INTO event_data SELECT * FROM backfill_event_data ON CONFLICT (device_id, \
             time) DO \
         UPDATE SET value = excluded.value",
        );
        assert_eq!(code, "53400");
        // forced direct: it hits the limit, rolls back and decompresses instead
        let (mut c2, notices) = cl.connect_with_notices("t");
        c2.batch_execute(
            r#"CALL backfill_on_schedule(NULL, '{"staging_table":"backfill_event_data","destination_hypertable":"event_data",
                                          "on_conflict_action":"UPDATE","strategy":"direct"}')"#,
        )
        .unwrap();
        let n = notices.lock().unwrap().clone();
        assert!(
            n.iter().any(|m| m.contains(
                "a direct insert would pass timescaledb.max_tuples_decompressed_per_dml_transaction"
            )),
            "{n:#?}"
        );
        assert!(
            n.iter().any(|m| m.contains(
                "decompressed, recompressed (the direct insert would have \
        passed the decompression limit)"
            )),
            "{n:#?}"
        );
        assert_promises(&mut c, &before, 0);
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM event_data WHERE value = \
            -1"), staged);
        assert_eq!(
            scalar::<String>(&mut c, "SELECT strategy FROM backfill_run_chunks"),
            "decompress (fell back)"
        );
    }
}

timescale_test! {
    fn auto_chooses_per_chunk_and_forced_strategies_agree_on_the_result() {
        let cl = cluster();
        let mut results = vec![];
        // "r": auto again, with the staging rows routed through the row-id table, and a
        // rewrite holding the merged rows in a temporary table, not in memory (what only a
        // staging table or a chunk far bigger than a test's would get)
        for (db, strategy) in [("a", "auto"), ("d", "direct"), ("x", "decompress"), ("r", "auto")] {
            let mut c = cl.create_db(db);
            timescale_dataset(&mut c, &Dataset::default());
            stage_late_rows(&mut c);
            // and a dense correction of day 4, with one new key in it
            c.batch_execute(&format!(
                "INSERT INTO backfill_event_data (time, device_id, value)
               SELECT time, device_id, value + 1 FROM event_data WHERE time >= timestamptz \
               '{START}' + interval '4 days';
             INSERT INTO backfill_event_data (time, device_id, value) VALUES (timestamptz \
             '{START}' + interval '4 days 5 minutes', 3, 42);"
            ))
            .unwrap();
            let before = state(&mut c, "event_data", "backfill_event_data");
            let (mut run, notices) = cl.connect_with_notices(db);
            if db == "r" {
                run.batch_execute(
                    "SET backfill_ext.debug_always_route = on; SET \
                backfill_ext.debug_rewrite_on_disk = on",
                )
                .unwrap();
            }
            run.batch_execute(&format!(
                r#"CALL backfill_on_schedule(NULL, '{{"staging_table":"backfill_event_data","destination_hypertable":"event_data",
                                                 "on_conflict_action":"UPDATE","strategy":"{strategy}"}}')"#
            ))
            .unwrap();
            let after = state(&mut c, "event_data", "backfill_event_data");
            assert_eq!(after.staging_rows, 0);
            assert!(before
                .chunks
                .iter()
                .filter(|(_, s)| *s == 1)
                .all(|(n, _)| after.chunks.iter().any(|(m, s)| m == n && *s == 1)));
            let strategies: Vec<String> = c
                .query("SELECT strategy FROM backfill_run_chunks ORDER BY chunk", &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let digest: String = scalar(
                &mut c,
                "SELECT md5(string_agg(e::text, ',' ORDER BY time, device_id)) FROM event_data e",
            );
            let n = notices.lock().unwrap().clone();
            let merges: Vec<String> =
                n.iter().filter(|m| m.contains(" conflicts, merged")).cloned().collect();
            results.push((strategy, strategies, digest, after.dest_rows, merges));
        }
        assert_eq!(
            results[0].1,
            ["merge", "direct", "direct", "merge"],
            "auto: the upserts meeting existing batches merge, new devices go direct"
        );
        assert!(results[1].1.iter().all(|s| s == "direct"));
        assert!(results[2].1.iter().all(|s| s == "decompress"));
        assert_eq!(results[3].1, results[0].1, "routed or not, the same choices");
        for (merges, rewrite) in [
            (&results[0].4, "chunk rewritten, recompressed"),
            (&results[3].4, "chunk rewritten (through a temporary table), recompressed"),
        ] {
            // day 0: 30 rows of one device of five; day 4: every device
            assert_eq!(merges.len(), 2, "{merges:#?}");
            assert!(
                merges[0]
                    .contains("30 rows moved, 30 conflicts, merged into its segments, \
                        recompressed"),
                "{merges:#?}"
            );
            assert!(
                merges[1].contains(&format!("merged, every segment touched: {rewrite}")),
                "{merges:#?}"
            );
        }
        assert!(
            results.windows(2).all(|w| w[0].2 == w[1].2 && w[0].3 == w[1].3),
            "the same rows whatever the strategy"
        );
    }
}

timescale_test! {
    fn date_and_smallint_time_columns() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        c.batch_execute(
            "ALTER DATABASE t SET timezone = 'Asia/Tokyo';
         CREATE TABLE daily (day date NOT NULL, k int NOT NULL, v int, PRIMARY KEY (k, day));
         SELECT create_hypertable('daily', 'day', chunk_time_interval => interval '7 days');
         ALTER TABLE daily SET (timescaledb.compress, timescaledb.compress_segmentby = 'k');
         INSERT INTO daily SELECT d::date, k, 0 FROM generate_series(date '2024-01-01', date \
         '2024-02-25', interval '1 day') d, generate_series(1, 3) k;
         SELECT count(compress_chunk(ch)) FROM show_chunks('daily') ch;
         CREATE TABLE daily_late (LIKE daily);
         INSERT INTO daily_late SELECT d::date, 9, 1 FROM generate_series(date '2024-01-15', date \
         '2024-01-21', interval '1 day') d;
         INSERT INTO daily_late VALUES ('2024-01-01', 1, 5);
         CREATE TABLE small (t smallint NOT NULL, k int NOT NULL, v int, UNIQUE (k, t));
         SELECT create_hypertable('small', 't', chunk_time_interval => 100);
         ALTER TABLE small SET (timescaledb.compress, timescaledb.compress_segmentby = 'k');
         INSERT INTO small SELECT t, 1, t FROM generate_series(0, 999) t;
         SELECT count(compress_chunk(ch)) FROM show_chunks('small') ch;
         CREATE TABLE small_late (LIKE small);
         INSERT INTO small_late SELECT t, 2, 0 FROM generate_series(300, 399) t;
         INSERT INTO small_late VALUES (5, 1, -1), (2000, 1, 0);",
        )
        .unwrap();
        let (mut r, notices) = cl.connect_with_notices("t");
        r.batch_execute(
            r#"CALL backfill_on_schedule(NULL, '{"staging_table":"daily_late","destination_hypertable":"daily","on_conflict_action":"UPDATE"}');
           CALL backfill_on_schedule(NULL, '{"staging_table":"small_late","destination_hypertable":"small"}');"#,
        )
        .unwrap();
        let n = notices.lock().unwrap().clone();
        let chunk_lines: Vec<&String> =
            n.iter().filter(|m| m.starts_with("backfill_ext: chunk ")).collect();
        // dates: the two 7-day chunks the week of 2024-01-15 falls in, and the chunk of
        // 2024-01-01 (the update); smallint: the chunk [300, 400) and the chunk [0, 100)
        assert_eq!(chunk_lines.len(), 5, "{n:#?}");
        assert!(
            chunk_lines
                .iter()
                .any(|l| l.contains(": 1 rows moved, 1 conflicts, merged into its segments")),
            "{n:#?}"
        );
        assert!(chunk_lines.iter().any(|l| l.contains(": 100 rows moved, 0 conflicts")), "{n:#?}");
        // each chunk was reported with exactly the rows TimescaleDB placed in it
        let placed: Vec<(String, i64)> = c
            .query(
                "SELECT tableoid::regclass::text, count(*) FROM daily WHERE k = 9 GROUP BY 1 ORDER \
            BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(placed.len(), 2, "{placed:?}");
        for (chunk, rows) in &placed {
            assert!(
                chunk_lines
                    .iter()
                    .any(|l| l.contains(&format!("chunk {chunk}: {rows} rows moved, 0 conflicts"))),
                "{chunk} holds {rows} rows: {n:#?}"
            );
        }
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM daily"), 56 * 3 + 7);
        assert_eq!(scalar::<i32>(&mut c, "SELECT v FROM daily WHERE day = '2024-01-01' AND k = \
            1"), 5);
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM small"), 1000 + 100 + 1);
        assert_eq!(
            scalar::<i32>(&mut c, "SELECT v FROM small WHERE t = 5 AND k = 1"),
            5,
            "DO NOTHING kept the existing row"
        );
        for table in ["daily", "small"] {
            let partial: i64 = scalar(
                &mut c,
                &format!(
                    "SELECT count(*) FROM show_chunks('{table}') ch WHERE \
                _timescaledb_functions.chunk_status(ch) & 10 <> 0"
                ),
            );
            assert_eq!(partial, 0, "{table}");
        }
        assert_eq!(
            scalar::<i64>(
                &mut c,
                "SELECT (SELECT count(*) FROM daily_late) + (SELECT count(*) FROM small_late)"
            ),
            0
        );
    }
}

/// The upsert of `m_late` into `m` that the rewrite tests run.
const REWRITE_M: &str = r#"CALL backfill_on_schedule(NULL, '{"staging_table":"m_late","destination_hypertable":"m","on_conflict_action":"UPDATE"}')"#;

/// How a rewrite's NOTICE ends, with the merged rows in memory or in a temporary table.
fn rewritten(on_disk: bool) -> &'static str {
    if on_disk {
        "chunk rewritten (through a temporary table), recompressed"
    } else {
        "chunk rewritten, recompressed"
    }
}

/// The chunks of `m` left not fully compressed.
fn uncompressed_chunks_of_m(c: &mut Client) -> i64 {
    scalar(
        c,
        "SELECT count(*) FROM show_chunks('m') ch WHERE \
        _timescaledb_functions.chunk_status(ch) <> 1",
    )
}

/// A session whose rewrites hold the merged rows in memory, or in a temporary table.
fn rewriting_session(cl: &Cluster, db: &str, on_disk: bool) -> (Client, Notices) {
    let (mut r, notices) = cl.connect_with_notices(db);
    r.batch_execute(&format!("SET backfill_ext.debug_rewrite_on_disk = {on_disk}")).unwrap();
    (r, notices)
}

timescale_test! {
    fn a_rewrite_updates_every_row_and_new_keys_get_defaults_for_columns_staging_lacks() {
        let cl = cluster();
        // in memory, then through the temporary table
        for (db, on_disk) in [("m", false), ("d", true)] {
            let mut c = cl.create_db(db);
            c.batch_execute(
                "CREATE TABLE m (time timestamptz NOT NULL, dev int NOT NULL, v int, note text \
                 DEFAULT \
             'default', PRIMARY KEY (dev, time));
             SELECT create_hypertable('m', 'time', chunk_time_interval => interval '1 day');
             ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'dev', \
             timescaledb.compress_orderby = 'time');
             INSERT INTO m (time, dev, v, note)
               SELECT t, d, 0, 'old' FROM generate_series(timestamptz '2024-01-01', timestamptz \
               '2024-01-01 23:00', interval '1 hour') t,
                                            generate_series(1, 3) d;
             SELECT count(compress_chunk(ch)) FROM show_chunks('m') ch;
             CREATE TABLE m_late (time timestamptz, dev int, v int);
             INSERT INTO m_late SELECT time, dev, 1 FROM m;
             INSERT INTO m_late VALUES (timestamptz '2024-01-01 00:30', 2, 7);",
            )
            .unwrap();
            let (mut r, notices) = rewriting_session(&cl, db, on_disk);
            r.batch_execute(REWRITE_M).unwrap();
            let n = notices.lock().unwrap().clone();
            let how = rewritten(on_disk);
            assert!(
                n.iter().any(|m| m.contains(&format!(
                    "73 rows moved, 72 conflicts, merged, every segment touched: {how}"
                ))),
                "{n:#?}"
            );
            assert!(n.iter().any(|m| m.contains("(1 inserted, 72 updated, 72 \
                conflicts)")), "{n:#?}");
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m"), 73);
            assert_eq!(scalar::<i64>(&mut c, "SELECT sum(v) FROM m"), 72 + 7);
            assert_eq!(
                scalar::<i64>(&mut c, "SELECT count(*) FROM m WHERE note = 'old'"),
                72,
                "updated rows keep the columns staging lacks"
            );
            assert_eq!(
                scalar::<String>(&mut c, "SELECT note FROM m WHERE v = 7"),
                "default",
                "a new key gets the column's default"
            );
            assert_eq!(uncompressed_chunks_of_m(&mut c), 0);
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m_late"), 0);
        }
    }
}

timescale_test! {
    fn a_rewrite_writes_new_keys_with_the_chunks_rows_where_staging_has_every_column() {
        let cl = cluster();
        for on_disk in [false, true] {
            let db = &format!("t_{on_disk}");
            let mut c = cl.create_db(db);
            rewritable_chunk(&mut c, "v int");
            // a new time for device 2, and device 4, a segment the chunk does not have yet
            c.batch_execute(
                "INSERT INTO m_late VALUES ('2024-01-01 00:30', 2, 7), ('2024-01-01 \
            05:00', 4, 9), ('2024-01-01 05:00', 4, 9)",
            )
            .unwrap();
            let (mut r, notices) = rewriting_session(&cl, db, on_disk);
            r.batch_execute(REWRITE_M).unwrap();
            let n = notices.lock().unwrap().clone();
            let how = rewritten(on_disk);
            assert!(
                n.iter().any(|m| m.contains(&format!(
                    "75 rows moved, 73 conflicts, merged, every segment touched: {how}"
                ))),
                "{n:#?}"
            );
            // the second copy of device 4's row is a conflict within staging
            assert!(n.iter().any(|m| m.contains("(2 inserted, 72 updated, 73 \
                conflicts)")), "{n:#?}");
            let rows: Vec<(i32, i64, i64)> = c
                .query("SELECT dev, count(*), sum(v) FROM m GROUP BY dev ORDER BY dev", &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            assert_eq!(rows, [(1, 24, 24), (2, 25, 31), (3, 24, 24), (4, 1, 9)]);
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m_late"), 0);
            assert_eq!(uncompressed_chunks_of_m(&mut c), 0);
        }
    }
}

timescale_test! {
    fn a_rewrite_works_on_a_destination_with_columns_named_like_its_own_helper_columns() {
        let cl = cluster();
        for on_disk in [false, true] {
            let db = &format!("t_{on_disk}");
            let mut c = cl.create_db(db);
            rewritable_chunk(
                &mut c,
                "v int, backfill_old int DEFAULT 5, backfill_ext_untouched boolean DEFAULT true",
            );
            // staging has every column: the chunk's rows and the new key are read in one full join
            c.batch_execute(
                "DROP TABLE m_late; CREATE TABLE m_late (LIKE m);
             INSERT INTO m_late SELECT time, dev, 1, 6, false FROM m;
             INSERT INTO m_late VALUES ('2024-01-01 00:30', 2, 7, 7, NULL);",
            )
            .unwrap();
            let (mut r, notices) = rewriting_session(&cl, db, on_disk);
            r.batch_execute(REWRITE_M).unwrap();
            let n = notices.lock().unwrap().clone();
            assert!(n.iter().any(|m| m.contains("(1 inserted, 72 updated, 72 \
                conflicts)")), "{n:#?}");
            let rows: Vec<(i64, i64, i64, i64)> = c
                .query(
                    "SELECT count(*), sum(v), sum(backfill_old), count(*) FILTER (WHERE \
                backfill_ext_untouched IS NULL) FROM m",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            assert_eq!(rows, [(73, 72 + 7, 72 * 6 + 7, 1)]);
            assert_eq!(uncompressed_chunks_of_m(&mut c), 0);
        }
    }
}

timescale_test! {
    fn a_rewrite_sizes_its_rows_by_the_chunks_columns_not_by_stagings() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        // 72 rows of about 8 kB each (a column staging lacks); a staging row takes about 110 bytes
        c.batch_execute(
            "CREATE TABLE m (time timestamptz NOT NULL, dev int NOT NULL, v int, note text, \
             PRIMARY \
         KEY (dev, time));
         SELECT create_hypertable('m', 'time', chunk_time_interval => interval '1 day');
         ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'dev', \
         timescaledb.compress_orderby = 'time');
         INSERT INTO m (time, dev, v, note)
           SELECT t, d, 0, repeat(md5(t::text || d), 250) FROM generate_series(timestamptz \
           '2024-01-01', timestamptz '2024-01-01 23:00', interval '1 hour') t,
                                                               generate_series(1, 3) d;
         SELECT count(compress_chunk(ch)) FROM show_chunks('m') ch;
         CREATE TABLE m_late (time timestamptz, dev int, v int);
         INSERT INTO m_late SELECT time, dev, 1 FROM m;",
        )
        .unwrap();
        let notes: String =
            scalar(&mut c, "SELECT md5(string_agg(note, ',' ORDER BY dev, time)) FROM m");
        let (mut r, notices) = cl.connect_with_notices("t");
        // 72 staging-sized rows fit in 1MB three times over; 72 rows of 8 kB do not
        r.batch_execute("SET maintenance_work_mem = '1MB'").unwrap();
        r.batch_execute(REWRITE_M).unwrap();
        let n = notices.lock().unwrap().clone();
        assert!(
            n.iter().any(|m| m.contains(
                "72 rows moved, 72 conflicts, merged, every segment touched: \
            chunk rewritten (through a temporary table), recompressed"
            )),
            "{n:#?}"
        );
        assert_eq!(scalar::<i64>(&mut c, "SELECT sum(v) FROM m"), 72);
        assert_eq!(
            scalar::<String>(&mut c, "SELECT md5(string_agg(note, ',' ORDER BY dev, time)) FROM m"),
            notes,
            "the wide column is kept"
        );
        assert_eq!(uncompressed_chunks_of_m(&mut c), 0);
        // the same rows with a narrow column do fit: the choice follows the rows' width
        c.batch_execute("INSERT INTO m_late SELECT time, dev, 2 FROM m").unwrap();
        c.batch_execute(
            "SELECT count(decompress_chunk(ch)) FROM show_chunks('m') ch; UPDATE m SET \
        note = 'n'; SELECT count(compress_chunk(ch)) FROM show_chunks('m') ch;",
        )
        .unwrap();
        notices.lock().unwrap().clear();
        r.batch_execute(REWRITE_M).unwrap();
        let n = notices.lock().unwrap().clone();
        assert!(
            n.iter().any(|m| m.contains(
                "72 rows moved, 72 conflicts, merged, every segment \
        touched: chunk rewritten, recompressed"
            )),
            "{n:#?}"
        );
        assert_eq!(scalar::<i64>(&mut c, "SELECT sum(v) FROM m"), 144);
    }
}

/// `m`: one daily chunk of 72 rows (devices 1-3, hourly), compressed, segmented by
/// `dev`, its other columns `columns` (`v int` among them, 0 in every row); `m_late`:
/// the value 1 for every row of `m`, a dense correction that rewrites the chunk.
fn rewritable_chunk(c: &mut Client, columns: &str) {
    c.batch_execute(&format!(
        "CREATE TABLE m (time timestamptz NOT NULL, dev int NOT NULL, {columns}, PRIMARY KEY (dev, \
         time));
         SELECT create_hypertable('m', 'time', chunk_time_interval => interval '1 day');
         ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'dev', \
         timescaledb.compress_orderby = 'time');
         INSERT INTO m (time, dev, v)
           SELECT t, d, 0 FROM generate_series(timestamptz '2024-01-01', timestamptz '2024-01-01 \
           23:00', interval '1 hour') t, generate_series(1, 3) d;
         SELECT count(compress_chunk(ch)) FROM show_chunks('m') ch;
         CREATE TABLE m_late (time timestamptz, dev int, v int);
         INSERT INTO m_late SELECT time, dev, 1 FROM m;"
    ))
    .unwrap();
}

timescale_test! {
    fn a_rewrite_in_bulk_checks_every_rows_constraints_and_a_violation_loses_nothing() {
        let cl = cluster();
        // one corrected value breaks a CHECK constraint, or a NOT NULL one; rows from memory, or
        // from a
        // temporary table
        let cases = [("chk", "500", "23514", "\"m_v_check\""), ("nn", "NULL", "23502", "\"v\"")];
        for ((name, bad, code, names), on_disk) in cases.iter().flat_map(|c| [(c, false), (c, true)]) {
            let db = &format!("{name}_{on_disk}");
            let mut c = cl.create_db(db);
            rewritable_chunk(&mut c, "v int NOT NULL CHECK (v < 100)");
            c.batch_execute(&format!(
                "UPDATE m_late SET v = {bad} WHERE dev = 2 AND time = '2024-01-01 12:00'"
            ))
            .unwrap();
            let before = state(&mut c, "m", "m_late");
            let (got, message, hint) =
                expect_error(&mut rewriting_session(&cl, db, on_disk).0, REWRITE_M);
            assert_eq!(got, *code, "{message}");
            assert!(message.contains(names), "{message}");
            assert!(hint.is_some(), "{message}");
            let after = state(&mut c, "m", "m_late");
            assert_eq!(after.staging_rows, 72, "every staging row stays");
            assert_eq!(
                scalar::<i64>(&mut c, "SELECT sum(v) FROM m"),
                0,
                "the chunk's rows are as before"
            );
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m"), 72);
            assert_compressed_and_policy_as_before(&before, &after, db);
        }
    }
}

timescale_test! {
    fn a_rewrite_in_bulk_matches_columns_by_name_in_chunks_made_before_and_after_a_column_was_dropped()
    {
        let cl = cluster();
        for on_disk in [false, true] {
            let db = &format!("t_{on_disk}");
            let mut c = cl.create_db(db);
            // day 1's chunk keeps the dropped column; day 2's, made after the drop, never had
            // it, so the two chunks and the hypertable number their columns differently
            rewritable_chunk(&mut c, "gone int, v int, note text DEFAULT 'old'");
            c.batch_execute(
                "ALTER TABLE m DROP COLUMN gone;
             ALTER TABLE m ADD COLUMN added text DEFAULT 'added';
             INSERT INTO m (time, dev, v, note)
               SELECT t, d, 0, 'day 2' FROM generate_series(timestamptz '2024-01-02', timestamptz \
               '2024-01-02 23:00', interval '1 hour') t, generate_series(1, 3) d;
             SELECT count(compress_chunk(ch, if_not_compressed => true)) FROM show_chunks('m') ch;
             INSERT INTO m_late SELECT time, dev, 2 FROM m WHERE time >= '2024-01-02';",
            )
            .unwrap();
            let natts: Vec<i32> = c
                .query(
                    "SELECT relnatts::int FROM pg_class WHERE oid IN (SELECT show_chunks('m')) \
                ORDER BY relname",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_ne!(natts[0], natts[1], "the chunks' columns are numbered differently");
            let (mut r, notices) = rewriting_session(&cl, db, on_disk);
            // inside a transaction block, the run leaves the caller's settings as they were
            r.batch_execute(&format!(
                "BEGIN; SET LOCAL max_parallel_maintenance_workers = 1; {REWRITE_M}"
            ))
            .unwrap();
            assert_eq!(scalar::<String>(&mut r, "SHOW max_parallel_maintenance_workers"), "1");
            r.batch_execute("COMMIT").unwrap();
            let n = notices.lock().unwrap().clone();
            let how = rewritten(on_disk);
            assert_eq!(
                n.iter()
                    .filter(|m| m.contains(&format!(
                        "72 rows moved, 72 conflicts, merged, every segment touched: {how}"
                    )))
                    .count(),
                2,
                "{n:#?}"
            );
            let rows: Vec<(String, i64, i64)> = c
                .query(
                    "SELECT note || '/' || added, count(*), sum(v) FROM m GROUP BY 1 ORDER BY 1",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            assert_eq!(rows, [("day \
                2/added".to_string(), 72, 144), ("old/added".to_string(), 72, 72)]);
            assert_eq!(uncompressed_chunks_of_m(&mut c), 0);
        }
    }
}

timescale_test! {
    fn a_staging_row_without_a_segment_never_makes_the_untouched_segments_look_touched() {
        let cl = cluster();
        for on_disk in [false, true] {
            let db = &format!("t_{on_disk}");
            let mut c = cl.create_db(db);
            // a nullable segment column in a unique key; staging corrects devices 1 and 2 and
            // adds a row without a device: device 3 is untouched, and must stay
            c.batch_execute(
                "CREATE TABLE m (time timestamptz NOT NULL, dev int, v int, UNIQUE (dev, time));
             SELECT create_hypertable('m', 'time', chunk_time_interval => interval '1 day');
             ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'dev', \
             timescaledb.compress_orderby = 'time');
             INSERT INTO m SELECT t, d, 0 FROM generate_series(timestamptz '2024-01-01', \
             timestamptz '2024-01-01 23:00', interval '1 hour') t, generate_series(1, 3) d;
             SELECT count(compress_chunk(ch)) FROM show_chunks('m') ch;
             CREATE TABLE m_late (time timestamptz, dev int, v int);
             INSERT INTO m_late SELECT time, dev, 1 FROM m WHERE dev IN (1, 2);
             INSERT INTO m_late VALUES ('2024-01-01 05:30', NULL, 7);",
            )
            .unwrap();
            let (mut r, notices) = rewriting_session(&cl, db, on_disk);
            r.batch_execute(REWRITE_M).unwrap();
            let n = notices.lock().unwrap().clone();
            assert!(n.iter().any(|m| m.contains("49 rows moved, 48 conflicts, merged")), "{n:#?}");
            assert!(
                !n.iter().any(|m| m.contains("every segment touched")),
                "device 3 was not touched: {n:#?}"
            );
            let rows: Vec<(Option<i32>, i64, i64)> = c
                .query("SELECT dev, count(*), sum(v) FROM m GROUP BY dev ORDER BY dev", &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            assert_eq!(rows, [(Some(1), 24, 24), (Some(2), 24, 24), (Some(3), 24, 0), (None, 1, 7)]);
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m_late"), 0);
            assert_eq!(uncompressed_chunks_of_m(&mut c), 0);
        }
    }
}

timescale_test! {
    fn a_rewrite_works_where_stagings_segment_column_has_another_type_than_the_destinations() {
        let cl = cluster();
        for (staging_type, on_disk) in [("numeric", false), ("numeric", true), ("bigint", true)] {
            let db = &format!("t_{staging_type}_{on_disk}");
            let mut c = cl.create_db(db);
            rewritable_chunk(&mut c, "v int");
            // the temporary tables split by a hash of the segment only where both types hash alike
            c.batch_execute(&format!("ALTER TABLE m_late ALTER COLUMN dev TYPE {staging_type}"))
                .unwrap();
            let (mut r, notices) = rewriting_session(&cl, db, on_disk);
            r.batch_execute(REWRITE_M).unwrap();
            let n = notices.lock().unwrap().clone();
            let how = rewritten(on_disk);
            assert!(
                n.iter().any(|m| m.contains(&format!(
                    "72 rows moved, 72 conflicts, merged, every segment touched: {how}"
                ))),
                "{n:#?}"
            );
            assert_eq!(scalar::<i64>(&mut c, "SELECT sum(v) FROM m"), 72);
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m"), 72);
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m_late"), 0);
        }
    }
}

timescale_test! {
    fn a_chunk_with_a_trigger_of_its_own_is_rewritten_row_by_row_and_its_trigger_fires() {
        let cl = cluster();
        for on_disk in [false, true] {
            let db = &format!("t_{on_disk}");
            let mut c = cl.create_db(db);
            rewritable_chunk(&mut c, "v int");
            c.batch_execute(
                "CREATE TABLE fired (dev int);
             CREATE FUNCTION count_insert() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT \
             INTO fired VALUES (NEW.dev); RETURN NULL; END$$;
             DO $$BEGIN EXECUTE format('CREATE TRIGGER counted AFTER INSERT ON %s FOR EACH ROW \
             EXECUTE FUNCTION count_insert()',
                                       (SELECT ch FROM show_chunks('m') ch)); END$$;",
            )
            .unwrap();
            let (mut r, notices) = rewriting_session(&cl, db, on_disk);
            r.batch_execute(REWRITE_M).unwrap();
            let n = notices.lock().unwrap().clone();
            let how = if on_disk { "through a temporary table, row by row" } else { "row by row" };
            assert!(
                n.iter().any(|m| m.contains(&format!(
                    "merged, every segment touched: chunk \
            rewritten ({how}: the chunk has triggers), recompressed"
                ))),
                "{n:#?}"
            );
            assert_eq!(
                scalar::<i64>(&mut c, "SELECT count(*) FROM fired"),
                72,
                "the trigger saw every row written back"
            );
            assert_eq!(scalar::<i64>(&mut c, "SELECT sum(v) FROM m"), 72);
        }
    }
}

timescale_test! {
    fn a_bulk_rewrite_is_compressed_without_its_unbuilt_indexes_where_compression_may_read_one() {
        let cl = cluster();
        for on_disk in [false, true] {
            let db = &format!("t_{on_disk}");
            let mut c = cl.create_db(db);
            // the index TimescaleDB's compression would read (segmentby, then orderby) is
            // not unique, so a rewrite leaves it unbuilt until compression truncates it
            c.batch_execute(
                "CREATE TABLE m (time timestamptz NOT NULL, dev int NOT NULL, v int, PRIMARY KEY \
             (time, dev));
             SELECT create_hypertable('m', 'time', chunk_time_interval => interval '1 day');
             CREATE INDEX m_dev_time ON m (dev, time);
             ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'dev', \
             timescaledb.compress_orderby = 'time');
             INSERT INTO m (time, dev, v)
               SELECT t, d, 0 FROM generate_series(timestamptz '2024-01-01', timestamptz \
               '2024-01-01 23:00', interval '1 hour') t, generate_series(1, 3) d;
             SELECT count(compress_chunk(ch)) FROM show_chunks('m') ch;
             CREATE TABLE m_late (time timestamptz, dev int, v int);
             INSERT INTO m_late SELECT time, dev, 1 FROM m;",
            )
            .unwrap();
            let (mut r, notices) = rewriting_session(&cl, db, on_disk);
            // the session lets compression read an index, outside a transaction block and inside one
            r.batch_execute("SET timescaledb.enable_compression_indexscan = on").unwrap();
            if on_disk {
                r.batch_execute(&format!(
                    "BEGIN; SET LOCAL timescaledb.enable_compression_indexscan = on; {REWRITE_M}"
                ))
                .unwrap();
                assert_eq!(
                    scalar::<String>(&mut r, "SHOW timescaledb.enable_compression_indexscan"),
                    "on"
                );
                r.batch_execute("COMMIT").unwrap();
            } else {
                r.batch_execute(REWRITE_M).unwrap();
            }
            assert_eq!(scalar::<String>(&mut r, "SHOW timescaledb.enable_compression_indexscan"), "on");
            let n = notices.lock().unwrap().clone();
            let how = rewritten(on_disk);
            assert!(
                n.iter().any(|m| m.contains(&format!(
                    "72 rows moved, 72 conflicts, merged, every segment touched: {how}"
                ))),
                "{n:#?}"
            );
            assert_eq!(
                scalar::<i64>(&mut c, "SELECT count(*) FROM m"),
                72,
                "compression read every row written back"
            );
            assert_eq!(scalar::<i64>(&mut c, "SELECT sum(v) FROM m"), 72);
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m_late"), 0);
            assert_eq!(uncompressed_chunks_of_m(&mut c), 0);
            // decompressed, the chunk's indexes hold every row
            c.batch_execute(
                "SELECT count(decompress_chunk(ch)) FROM show_chunks('m') ch; SET \
            enable_seqscan = off; SET enable_bitmapscan = off",
            )
            .unwrap();
            let plan: Vec<String> = c
                .query("EXPLAIN (COSTS OFF) SELECT count(*) FROM m WHERE dev = 2", &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(plan.iter().any(|l| l.contains("Index")), "{plan:#?}");
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m WHERE dev = 2"), 24);
            assert_eq!(
                scalar::<i64>(
                    &mut c,
                    "SELECT count(*) FROM m WHERE time >= '2024-01-01 12:00' AND time < '2024-01-02'"
                ),
                36
            );
        }
    }
}

timescale_test! {
    fn a_dense_upsert_on_a_chunk_being_read_merges_by_segments_instead_of_waiting() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let staged = stage_correction_from_day(&mut c, 4);
        let sum_after: f64 = scalar(&mut c, &format!("SELECT sum(value) + {staged} FROM \
            event_data"));
        let before = state(&mut c, "event_data", "backfill_event_data");
        // a long report holds the chunk open
        let mut reader = cl.connect("t");
        reader
            .batch_execute(&format!(
                "BEGIN; SELECT count(*) FROM event_data WHERE time >= timestamptz \
            '{START}' + interval '4 days';"
            ))
            .unwrap();
        let (mut r, notices) = cl.connect_with_notices("t");
        let t = std::time::Instant::now();
        r.batch_execute(
            r#"CALL backfill_on_schedule(NULL, '{"staging_table":"backfill_event_data","destination_hypertable":"event_data","on_conflict_action":"UPDATE"}')"#,
        )
        .unwrap();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "the run did not wait for the reader"
        );
        let n = notices.lock().unwrap().clone();
        assert!(
            n.iter().any(|m| m.contains("being read; merging by segments instead of rewriting it")),
            "{n:#?}"
        );
        assert!(
            n.iter().any(|m| m.contains(&format!(
                "{staged} rows moved, {staged} conflicts, merged into its segments, recompressed"
            ))),
            "{n:#?}"
        );
        reader.batch_execute("COMMIT").unwrap();
        let got: f64 = scalar(&mut c, "SELECT sum(value) FROM event_data");
        assert!((got - sum_after).abs() < 1e-6, "{got} vs {sum_after}");
        let after = state(&mut c, "event_data", "backfill_event_data");
        assert_eq!(after.staging_rows, 0);
        assert_compressed_and_policy_as_before(&before, &after, "a chunk being read");
    }
}

timescale_test! {
    fn a_foreign_key_to_the_hypertable_rules_out_the_rewrite() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        c.batch_execute(
            "CREATE TABLE annotation (time timestamptz NOT NULL, device_id int NOT NULL, \
        FOREIGN KEY (device_id, time) REFERENCES event_data)",
        )
        .unwrap();
        let staged = stage_correction_from_day(&mut c, 4);
        let sum_after: f64 = scalar(&mut c, &format!("SELECT sum(value) + {staged} FROM \
            event_data"));
        let (mut r, notices) = cl.connect_with_notices("t");
        r.batch_execute(
            r#"CALL backfill_on_schedule(NULL, '{"staging_table":"backfill_event_data","destination_hypertable":"event_data","on_conflict_action":"UPDATE"}')"#,
        )
        .unwrap();
        let n = notices.lock().unwrap().clone();
        assert!(
            n.iter().any(|m| m.contains(&format!(
                "{staged} rows moved, {staged} conflicts, merged into its segments, recompressed"
            ))),
            "{n:#?}"
        );
        let got: f64 = scalar(&mut c, "SELECT sum(value) FROM event_data");
        assert!((got - sum_after).abs() < 1e-6, "{got} vs {sum_after}");
        assert_eq!(
            scalar::<i64>(
                &mut c,
                "SELECT count(*) FROM show_chunks('event_data') ch WHERE \
        _timescaledb_functions.chunk_status(ch) <> 1"
            ),
            0
        );
    }
}

timescale_test! {
    fn null_times_are_refused_on_hypertables() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        c.batch_execute(
            "CREATE TABLE h (time timestamptz NOT NULL, v int);
         SELECT create_hypertable('h', 'time');
         CREATE TABLE s (time timestamptz, v int);
         INSERT INTO s VALUES (NULL, 1), (now(), 2);",
        )
        .unwrap();
        let (code, msg, hint) = expect_error(
            &mut c,
            r#"CALL backfill_on_schedule(NULL, '{"staging_table":"s", "destination_hypertable":"h"}')"#,
        );
        assert_eq!(
            (code.as_str(), msg.as_str()),
            (
                "23502",
                "backfill_ext: 1 rows of staging table public.s have NULL in the time \
                 column \"time\""
            )
        );
        assert_eq!(
            hint.as_deref(),
            Some(r#"correct or delete them: DELETE FROM "public"."s" WHERE "time" IS NULL"#)
        );
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM s"), 2, "nothing moved");
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM h"), 0);
    }
}

timescale_test! {
    fn plans_only_chunks_that_receive_rows() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        c.batch_execute(
            "CREATE TABLE h (time timestamp NOT NULL, d int NOT NULL, v int);
         SELECT create_hypertable('h', 'time', chunk_time_interval => interval '1 day');
         ALTER TABLE h SET (timescaledb.compress, timescaledb.compress_segmentby = 'd');
         INSERT INTO h SELECT t, 1, 0 FROM generate_series('2024-01-01'::timestamp, \
         '2024-01-05'::timestamp - interval '1 hour', '1 hour') t;
         SELECT compress_chunk(c) FROM show_chunks('h') c ORDER BY c LIMIT 2;
         CREATE TABLE s (LIKE h);
         INSERT INTO s VALUES ('2024-01-02 05:00', 2, 0), ('2024-01-02 06:00', 2, 0), ('2024-01-04 \
         23:59', 2, 0), ('2024-02-01', 2, 0);",
        )
        .unwrap();
        let got: Vec<(Option<String>, Option<bool>, i64, String)> = c
            .query(
                "SELECT range_start, compressed, staging_rows, action FROM backfill_plan('s', 'h')",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        // day 2 is compressed (2 rows; no unique index, so nothing to decompress: direct),
        // day 4 is not (1 row); the February row makes a new chunk. Chunk ranges read as
        // TimescaleDB's chunks view gives them (timestamptz, in the session's UTC).
        assert_eq!(
            got,
            [
                (
                    Some("2024-01-02 00:00:00+00".into()),
                    Some(true),
                    2,
                    "insert into the compressed chunk, recompress what became partial".into()
                ),
                (Some("2024-01-04 00:00:00+00".into()), Some(false), 1, "insert".into()),
                (None, None, 1, "insert, creating new chunks".into()),
            ]
        );
    }
}

/// Late rows and corrections (an upsert) into a hypertable set up with `api`, run by
/// the scheduler through `add_job` exactly as in the quick start; returns the
/// destination's rows afterwards (as one fingerprint) and the strategies chosen.
fn backfill_with_api(cl: &Cluster, db: &str, api: Api) -> (String, Vec<String>) {
    let mut c = cl.create_db(db);
    timescale_dataset(&mut c, &Dataset { api, ..Default::default() });
    let added = stage_late_rows(&mut c);
    let corrected = stage_correction_from_day(&mut c, 4) - added - 30;
    let before = state(&mut c, "event_data", "backfill_event_data");
    assert!(
        not_fully_compressed(&before).is_empty(),
        "{api:?}: every chunk compressed: {:?}",
        before.chunks
    );
    assert_eq!(before.policies.len(), 1, "{api:?}: one columnstore policy");
    let cfg = r#"{"staging_table":"backfill_event_data", "destination_hypertable":"event_data", "on_conflict_action":"UPDATE"}"#;
    let job: i32 = scalar(
        &mut c,
        &format!("SELECT add_job('backfill_on_schedule', '10 days', '{cfg}', NOW())"),
    );
    assert_eq!(cl.wait_for_job(&mut c, job), 1, "{api:?}");
    let after = state(&mut c, "event_data", "backfill_event_data");
    assert_eq!(after.staging_rows, 0, "{api:?}: staging is empty");
    assert_eq!(
        after.dest_rows,
        before.dest_rows + added,
        "{api:?}: every row once ({corrected} corrections)"
    );
    assert_compressed_and_policy_as_before(&before, &after, &format!("{api:?}"));
    let fingerprint = scalar(
        &mut c,
        "SELECT md5(string_agg(format('%s|%s|%s|%s', time, device_id, \
        value, note), ',' ORDER BY device_id, time)) FROM event_data",
    );
    let strategies = c
        .query("SELECT strategy FROM backfill_run_chunks ORDER BY range_start", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (fingerprint, strategies)
}

/// The same backfill into a hypertable set up with `api` and with the compression API
/// gives the same rows and the same strategies.
fn assert_backfilled_like_the_compression_api(api: Api) {
    let cl = cluster();
    let old = backfill_with_api(&cl, "compression", Api::Compression);
    let new = backfill_with_api(&cl, "other_api", api);
    assert_eq!(new, old, "{api:?}: same rows, same strategies");
}

#[test]
#[cfg_attr(
    not(columnstore_api),
    ignore = "this TimescaleDB has no columnstore API (add_columnstore_policy, \
        convert_to_columnstore: 2.18+)"
)]
fn a_hypertable_set_up_with_the_columnstore_api_is_backfilled_the_same() {
    assert_backfilled_like_the_compression_api(Api::Columnstore);
}

#[test]
#[cfg_attr(
    not(create_table_with),
    ignore = "this TimescaleDB has no CREATE TABLE … WITH (tsdb.hypertable, tsdb.columnstore) \
        (2.21+)"
)]
fn a_hypertable_created_with_create_table_with_is_backfilled_the_same() {
    assert_backfilled_like_the_compression_api(Api::CreateTableWith);
}

timescale_test! {
    fn a_timescaledb_without_a_needed_capability_is_refused_before_anything_changes() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        stage_late_rows(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        let version: String =
            scalar(&mut c, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'");
        // a TimescaleDB older than 2.12 has no _timescaledb_functions.chunk_status(regclass)
        c.batch_execute(
            "ALTER FUNCTION _timescaledb_functions.chunk_status(regclass) RENAME TO \
        chunk_status_hidden",
        )
        .unwrap();
        let err = c.batch_execute(&format!("CALL backfill_on_schedule(NULL, \
            '{CONFIG}')")).unwrap_err();
        let db = err.as_db_error().unwrap();
        assert_eq!(db.code().code(), "0A000");
        assert_eq!(
            db.message(),
            format!(
                "backfill_ext: TimescaleDB {version} lacks what backfill_ext \
        needs (TimescaleDB 2.23 or later)"
            )
        );
        assert_eq!(
            db.detail(),
            Some("This TimescaleDB lacks: function _timescaledb_functions.chunk_status(regclass).")
        );
        assert!(
            db.hint().unwrap().starts_with("update TimescaleDB to 2.23 or later"),
            "{:?}",
            db.hint()
        );
        c.batch_execute(
            "ALTER FUNCTION _timescaledb_functions.chunk_status_hidden(regclass) RENAME TO \
        chunk_status",
        )
        .unwrap();
        assert_eq!(state(&mut c, "event_data", "backfill_event_data"), before, "nothing changed");
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
        // a check at registration says the same
        c.batch_execute(
            "ALTER FUNCTION _timescaledb_functions.chunk_status(regclass) RENAME TO \
        chunk_status_hidden",
        )
        .unwrap();
        let (code, _, _) = expect_error(
            &mut c,
            &format!(
                "SELECT add_job('backfill_on_schedule', '1 \
        day', '{CONFIG}', check_config => 'backfill_check_config')"
            ),
        );
        assert_eq!(code, "0A000");
    }
}

#[test]
#[cfg_attr(
    not(old_timescaledb),
    ignore = "no TimescaleDB older than 2.23 is installed beside the default one"
)]
fn a_timescaledb_older_than_the_minimum_is_refused_before_anything_changes() {
    let old = option_env!("BACKFILL_OLD_TIMESCALEDB")
        .unwrap_or_else(|| panic!("tests/build.rs names no older TimescaleDB"));
    let cl = cluster();
    cl.connect("postgres").batch_execute("CREATE DATABASE t").unwrap();
    let mut c = cl.connect("t");
    c.batch_execute(&format!(
        "CREATE EXTENSION timescaledb VERSION '{old}'; CREATE EXTENSION backfill_ext"
    ))
    .unwrap();
    assert_eq!(
        scalar::<String>(
            &mut c,
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ),
        old
    );
    timescale_dataset(&mut c, &Dataset::default());
    stage_late_rows(&mut c);
    let before = state(&mut c, "event_data", "backfill_event_data");
    let err = c.batch_execute(&format!("CALL backfill_on_schedule(NULL, '{CONFIG}')")).unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "0A000");
    assert_eq!(
        db.message(),
        format!(
            "backfill_ext: TimescaleDB {old} lacks what backfill_ext \
        needs (TimescaleDB 2.23 or later)"
        )
    );
    assert!(db.detail().unwrap().starts_with("This TimescaleDB lacks: "), "{:?}", db.detail());
    assert_eq!(state(&mut c, "event_data", "backfill_event_data"), before, "nothing changed");
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
}

timescale_test! {
    fn a_space_constraint_that_cannot_be_read_stops_the_run_before_anything_changes() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset { space_partitions: 2, ..Dataset::default() });
        stage_late_rows(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        // a constraint on a chunk that names the hash function in a form TimescaleDB does not write
        let chunk: String = scalar(
            &mut c,
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks
         WHERE hypertable_name = 'event_data' ORDER BY range_start, chunk_name OFFSET 2 LIMIT 1",
        );
        c.batch_execute(&format!(
            "ALTER TABLE {chunk} ADD CONSTRAINT odd CHECK \
         (_timescaledb_functions.get_partition_hash(device_id) <> -1) NOT VALID"
        ))
        .unwrap();
        let (code, msg, hint) =
            expect_error(&mut c, &format!("CALL backfill_on_schedule(NULL, '{CONFIG}')"));
        assert_eq!(code, "0A000", "{msg}");
        assert!(msg.contains("cannot read the space partition of chunk"), "{msg}");
        assert!(hint.is_some());
        let after = state(&mut c, "event_data", "backfill_event_data");
        assert_eq!(
            (after.dest_rows, after.staging_rows),
            (before.dest_rows, before.staging_rows),
            "nothing moved"
        );
        assert_compressed_and_policy_as_before(&before, &after, "after the refusal");
    }
}
