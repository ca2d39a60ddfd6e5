//! Continuous aggregates after a backfill: a run brings every continuous aggregate on
//! the destination up to date for the time range it changed, even where the
//! aggregate's refresh policy covers only the last week.

use backfill_ext_client_tests::config::event_config;
use backfill_ext_client_tests::fixtures::{
    stage_correction_from_day, stage_late_rows, timescale_dataset, Dataset, START,
};
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{scalar, Client, Cluster};
use serde_json::json;

fn cluster() -> Cluster {
    backfill_ext_client_tests::timescale_cluster()
}

/// An hourly aggregate on `event_data` and a daily one on the hourly one, both
/// materialized as of now, with refresh policies that cover the last week only.
fn with_continuous_aggregates(c: &mut Client) {
    c.batch_execute(
        "CREATE MATERIALIZED VIEW event_hourly WITH (timescaledb.continuous, \
         timescaledb.materialized_only = true) AS
           SELECT time_bucket('1 hour', time) AS bucket, device_id, count(*) AS n, \
           sum(value::numeric) AS total
           FROM event_data GROUP BY 1, 2 WITH NO DATA;
         CREATE MATERIALIZED VIEW event_daily WITH (timescaledb.continuous, \
         timescaledb.materialized_only = true) AS
           SELECT time_bucket('1 day', bucket) AS bucket, device_id, sum(n) AS n, sum(total) AS \
           total
           FROM event_hourly GROUP BY 1, 2 WITH NO DATA;",
    )
    .unwrap();
    // a refresh runs outside a transaction block: one statement at a time
    c.batch_execute("CALL refresh_continuous_aggregate('event_hourly', NULL, NULL)").unwrap();
    c.batch_execute("CALL refresh_continuous_aggregate('event_daily', NULL, NULL)").unwrap();
    c.batch_execute(
        "SELECT add_continuous_aggregate_policy('event_hourly', start_offset => interval '7 days', \
         end_offset => interval '1 hour',
                                                schedule_interval => interval '1 hour');
         SELECT add_continuous_aggregate_policy('event_daily', start_offset => interval '7 days', \
         end_offset => interval '1 day',
                                                schedule_interval => interval '1 hour');",
    )
    .unwrap();
    assert_eq!(stale_rows(c), (0, 0), "the aggregates start up to date");
}

/// Rows of each aggregate that differ from the same aggregate computed now from the
/// hypertable (both ways): (hourly, daily).
fn stale_rows(c: &mut Client) -> (i64, i64) {
    let hourly = "SELECT time_bucket('1 hour', time) AS bucket, device_id, count(*) AS n, \
        sum(value::numeric) AS total FROM event_data GROUP BY 1, 2";
    let daily = "SELECT time_bucket('1 day', time) AS bucket, device_id, count(*)::numeric AS n, \
        sum(value::numeric) AS total FROM event_data GROUP BY 1, 2";
    let diff = |c: &mut Client, view: &str, fresh: &str, n: &str| -> i64 {
        scalar(
            c,
            &format!(
                "SELECT count(*) FROM ((SELECT bucket, device_id, n{n}, total FROM {view} EXCEPT \
                 ALL {fresh})
                                       UNION ALL ({fresh} EXCEPT ALL SELECT bucket, device_id, \
                                       n{n}, total FROM {view})) AS d"
            ),
        )
    };
    (diff(c, "event_hourly", hourly, ""), diff(c, "event_daily", daily, "::numeric"))
}

fn config(refresh: bool) -> String {
    event_config(json!({"refresh_continuous_aggregates": refresh}))
}

/// Without the refresh (database `off`), a scheduled run's backfilled history never
/// reaches the aggregates.
fn assert_aggregates_miss_the_rows_without_the_refresh(cl: &Cluster) {
    let mut off = cl.create_db("off");
    timescale_dataset(&mut off, &Dataset::default());
    with_continuous_aggregates(&mut off);
    stage_late_rows(&mut off);
    let job: i32 = scalar(
        &mut off,
        &format!("SELECT add_job('backfill_on_schedule', '10 days', '{}', now())", config(false)),
    );
    assert_eq!(cl.wait_for_job(&mut off, job), 1);
    let (hourly, daily) = stale_rows(&mut off);
    assert!(
        hourly > 0 && daily > 0,
        "without a refresh the aggregates miss the rows: {hourly}, {daily}"
    );
    assert_eq!(scalar::<i64>(&mut off, "SELECT count(*) FROM backfill_run_refreshes"), 0);
}

/// The refreshes a run of the staged late rows makes, parents first: (aggregate, range
/// start, range end, status); the staging rows span START - 3 days to START + 40 days.
fn expected_refreshes(c: &mut Client) -> Vec<(String, String, String, String)> {
    let mut tz = |s: &str| {
        scalar::<String>(c, &format!("SELECT (timestamptz '{START}' + interval '{s}')::text"))
    };
    vec![
        (
            "public.event_hourly".to_string(),
            tz("-3 days"),
            tz("40 days 1 hour"),
            "refreshed".to_string(),
        ),
        ("public.event_daily".to_string(), tz("-3 days"), tz("41 days"), "refreshed".to_string()),
    ]
}

timescale_test! {
    fn a_scheduled_run_refreshes_the_aggregates_for_the_range_it_changed() {
        let cl = cluster();
        assert_aggregates_miss_the_rows_without_the_refresh(&cl);
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        with_continuous_aggregates(&mut c);
        stage_late_rows(&mut c);
        // the plan says which aggregates a run refreshes, and for which buckets
        let planned: Vec<(String, String, String)> = c
            .query(
                "SELECT action, range_start, range_end FROM backfill_plan('backfill_event_data', \
            'event_data') WHERE action LIKE 'refresh%'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let job: i32 = scalar(
            &mut c,
            &format!(
                "SELECT add_job('backfill_on_schedule', '10 days', '{}', \
                now())",
                config(true)
            ),
        );
        assert_eq!(cl.wait_for_job(&mut c, job), 1);
        assert_eq!(stale_rows(&mut c), (0, 0), "both aggregates equal a fresh computation");
        // parents first; the staging rows span START - 3 days to START + 40 days
        let done: Vec<(String, String, String, String)> = c
            .query(
                "SELECT continuous_aggregate, range_start, range_end, status FROM \
             backfill_run_refreshes ORDER BY finished",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let expected = expected_refreshes(&mut c);
        assert_eq!(done, expected);
        let planned_expected: Vec<(String, String, String)> = expected
            .iter()
            .map(|(n, lo, hi, _)| {
                (
                    format!(
                        "refresh continuous aggregate \
                {n}"
                    ),
                    lo.clone(),
                    hi.clone(),
                )
            })
            .collect();
        assert_eq!(planned, planned_expected);
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
    }
}

timescale_test! {
    fn inside_a_transaction_block_the_run_records_the_refresh_to_make() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        with_continuous_aggregates(&mut c);
        stage_late_rows(&mut c);
        let (mut r, notices) = cl.connect_with_notices("t");
        r.batch_execute(&format!(
            "BEGIN; CALL backfill_on_schedule(NULL, '{}'); COMMIT;",
            config(true)
        ))
        .unwrap();
        let notices = notices.lock().unwrap().clone();
        assert!(
            notices.iter().any(|n| n.contains(
                "continuous aggregate public.event_hourly was not \
            refreshed: the backfill was called inside a transaction block"
            )),
            "{notices:#?}"
        );
        assert!(stale_rows(&mut c).0 > 0);
        let todo: Vec<(String, String)> = c
            .query(
                "SELECT status, note FROM backfill_run_refreshes ORDER BY continuous_aggregate \
                 DESC",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(todo.len(), 2);
        // the note gives the CALL that makes each refresh; parents first
        for (status, note) in &todo {
            assert_eq!(status, "not refreshed");
            let call = note.split("; to refresh it: ").nth(1).unwrap_or_else(|| {
                panic!(
                    "no CALL in \
                    {note}"
                )
            });
            c.batch_execute(call).unwrap();
        }
        assert_eq!(stale_rows(&mut c), (0, 0));
    }
}

timescale_test! {
    fn a_chunk_rewritten_in_bulk_reaches_the_aggregates() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        with_continuous_aggregates(&mut c);
        // a corrected value for every row of the last day: its chunk is rewritten
        stage_correction_from_day(&mut c, 4);
        let (mut r, notices) = cl.connect_with_notices("t");
        r.batch_execute(&format!(
            "CALL backfill_on_schedule(NULL, '{}')",
            config(true).replace('}', r#", "on_conflict_action":"UPDATE"}"#)
        ))
        .unwrap();
        let notices = notices.lock().unwrap().clone();
        assert!(
            notices.iter().any(|n| n.contains(
                "merged, every segment touched: chunk rewritten, \
                    recompressed"
            )),
            "{notices:#?}"
        );
        assert_eq!(stale_rows(&mut c), (0, 0), "both aggregates equal a fresh computation");
    }
}
