//! The TimescaleDB tier: real hypertables with compressed chunks, the real job
//! scheduler. Runs whenever a full TimescaleDB (with compression and add_job) is
//! installed; elsewhere the runner reports each test as ignored, with the reason.
//! Here: a run on the scheduler and by hand, chunk by chunk, with each conflict action,
//! its live progress, two runs at once, and what it promises afterwards.

use backfill_ext_client_tests::config::{call_backfill, event_config};
use backfill_ext_client_tests::fixtures::{
    assert_compressed_and_policy_as_before, not_fully_compressed, stage_late_rows, state,
    timescale_dataset, Dataset, State, START,
};
use backfill_ext_client_tests::timescale_cluster as cluster;
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{expect_error, scalar, wait_for, Client, Cluster};
use serde_json::json;
use std::time::Duration;

const CONFIG: &str =
    r#"{"staging_table":"backfill_event_data", "destination_hypertable":"event_data"}"#;

fn assert_promises(c: &mut Client, before: &State, added: i64) {
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
            notices.iter().any(|n| n.contains(
                "rows outside existing chunks: 2 rows moved, 0 conflicts, 2 new \
                        chunks"
            )),
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
        let columns =
            json!({"on_conflict_action": "UPDATE", "on_conflict_update_columns": ["value"]});
        c.batch_execute(&call_backfill(&event_config(columns))).unwrap();
        assert_promises(&mut c, &before, 0);
        assert_eq!(
            scalar::<i64>(&mut c, "SELECT count(*) FROM event_data WHERE value = -1"),
            staged
        );
        // only the listed column was overwritten
        assert_eq!(
            scalar::<i64>(
                &mut c,
                "SELECT count(*) FROM event_data WHERE note IS NOT \
            NULL"
            ),
            0
        );
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
            &call_backfill(&event_config(json!({"on_conflict_action": "RESTRICT", "workers": 1}))),
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
        c.batch_execute(&call_backfill(&event_config(json!({"on_conflict_action": "RESTRICT"}))))
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
            c2.batch_execute(&call_backfill(CONFIG)).unwrap();
            let notices = notices.lock().unwrap().clone();
            let chunk_lines: Vec<&String> =
                notices.iter().filter(|n| n.starts_with("backfill_ext: chunk ")).collect();
            assert_eq!(chunk_lines.len(), 1, "one chunk of the two in that day: {notices:#?}");
            // every staged row meets its device's batches: 144 keys the chunk has, too few
            // rows for the bulk way (2,000), so they are checked as they are inserted
            assert!(
                chunk_lines[0].contains(
                    ": 1440 rows moved, 144 conflicts, inserted into the compressed chunk"
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
        c2.batch_execute(&call_backfill(CONFIG)).unwrap();
        let notices = notices.lock().unwrap().clone();
        let chunk_lines: Vec<&String> =
            notices.iter().filter(|n| n.starts_with("backfill_ext: chunk ")).collect();
        assert_eq!(chunk_lines.len(), 1, "exactly the chunk of 2024-01-02: {notices:#?}");
        assert!(chunk_lines[0].contains(": 1440 rows moved"), "{notices:#?}");
        assert_promises(&mut c, &before, 1440);
    }
}

/// What `backfill_plan` says for the default dataset with late rows staged: three
/// compressed chunks taking rows in place and the new chunks; the plan changes nothing.
fn planned_chunks(c: &mut Client, before: &State) -> Vec<(Option<String>, i64, String)> {
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
    assert_eq!(&state(c, "event_data", "backfill_event_data"), before, "the plan changed nothing");
    plan
}

/// Waits for a run in flight to report two chunks done, and checks `backfill_status`
/// counts them while it runs.
fn assert_two_chunks_reported_live(c: &mut Client) {
    let done: Vec<(String, i64)> = wait_for(
        "two chunks to be reported while the run is in flight",
        Duration::from_secs(60),
        || {
            let rows: Vec<(String, i64)> = c
                .query("SELECT chunk, rows_moved FROM backfill_run_chunks ORDER BY finished", &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            (rows.len() == 2).then_some(rows)
        },
    );
    let live =
        c.query_one("SELECT status, rows_moved, chunks_done FROM backfill_status", &[]).unwrap();
    assert_eq!(live.get::<_, String>(0), "running");
    assert_eq!(live.get::<_, i64>(1), done.iter().map(|d| d.1).sum::<i64>());
    assert_eq!(live.get::<_, i64>(2), 2);
}

/// The finished run touched exactly the planned chunks and its status counts them.
fn assert_the_run_followed_the_plan(
    c: &mut Client,
    plan: &[(Option<String>, i64, String)],
    added: i64,
) {
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

timescale_test! {
    fn progress_is_visible_live_and_the_plan_matches_the_run() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let added = stage_late_rows(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        let plan = planned_chunks(&mut c, &before);
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
            c1.batch_execute(&call_backfill(&event_config(json!({"strategy": "decompress"}))))
        });
        assert_two_chunks_reported_live(&mut c);
        locker.batch_execute("COMMIT").unwrap();
        run.join().unwrap().unwrap();
        assert_promises(&mut c, &before, added);
        assert_the_run_followed_the_plan(&mut c, &plan, added);
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

/// Every existing row of day 1 again, corrected, in a database whose decompression limit
/// is 50 rows a transaction: a direct upsert would decompress the whole chunk. Returns the
/// rows staged.
fn stage_day_one_past_the_decompression_limit(c: &mut Client) -> i64 {
    c.batch_execute(
        "ALTER DATABASE t SET timescaledb.max_tuples_decompressed_per_dml_transaction = 50",
    )
    .unwrap();
    c.batch_execute(&format!(
        "INSERT INTO backfill_event_data (time, device_id, value)
           SELECT time, device_id, -1 FROM event_data
           WHERE time >= timestamptz '{START}' + interval '1 day' AND time < timestamptz '{START}' \
           + interval '2 days'"
    ))
    .unwrap();
    scalar(c, "SELECT count(*) FROM backfill_event_data")
}

/// TimescaleDB's own upsert of the staged rows fails on the decompression limit.
fn assert_timescaledbs_own_upsert_fails(cl: &Cluster) {
    let mut plain = cl.connect("t");
    let (code, _, _) = expect_error(
        &mut plain,
        "INSERT INTO event_data SELECT * FROM backfill_event_data \
         ON CONFLICT (device_id, time) DO UPDATE SET value = excluded.value",
    );
    assert_eq!(code, "53400");
}

timescale_test! {
    fn direct_inserts_that_would_pass_the_decompression_limit_fall_back_and_never_fail() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let staged = stage_day_one_past_the_decompression_limit(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        assert_timescaledbs_own_upsert_fails(&cl);
        // forced direct: it hits the limit, rolls back and decompresses instead
        let (mut c2, notices) = cl.connect_with_notices("t");
        let direct = event_config(json!({"on_conflict_action": "UPDATE", "strategy": "direct"}));
        c2.batch_execute(&call_backfill(&direct)).unwrap();
        let n = notices.lock().unwrap().clone();
        assert!(
            n.iter().any(|m| m.contains(
                "a direct insert would pass \
                 timescaledb.max_tuples_decompressed_per_dml_transaction"
            )),
            "{n:#?}"
        );
        assert!(
            n.iter().any(|m| m.contains(
                "decompressed, recompressed (the direct insert would have passed the \
                 decompression limit)"
            )),
            "{n:#?}"
        );
        assert_promises(&mut c, &before, 0);
        assert_eq!(
            scalar::<i64>(&mut c, "SELECT count(*) FROM event_data WHERE value = -1"),
            staged
        );
        assert_eq!(
            scalar::<String>(&mut c, "SELECT strategy FROM backfill_run_chunks"),
            "decompress (fell back)"
        );
    }
}
