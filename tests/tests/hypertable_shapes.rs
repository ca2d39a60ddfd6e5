//! Hypertables of other shapes: integer, smallint and date time columns, and hypertables
//! set up with the columnstore API or CREATE TABLE … WITH, backfilled like the rest.

use backfill_ext_client_tests::config::{call_backfill, config, event_config};
use backfill_ext_client_tests::fixtures::{
    assert_compressed_and_policy_as_before, not_fully_compressed, stage_correction_from_day,
    stage_late_rows, state, timescale_dataset, Api, Dataset,
};
use backfill_ext_client_tests::timescale_cluster as cluster;
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{scalar, Client, Cluster};
use serde_json::json;

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
        c.batch_execute(&call_backfill(&config("s", "m", json!({})))).unwrap();
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

/// In a Tokyo session: `daily` (a date time column, 7-day chunks, devices 1-3 daily
/// through February 25), compressed, and `daily_late` (a new device for the week of
/// 2024-01-15, one update of 2024-01-01); `small` (a smallint time column, chunks of
/// 100), compressed, and `small_late` (a new device in [300, 400), a conflict, a new chunk).
fn date_and_smallint_hypertables(c: &mut Client) {
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
}

/// Each of `daily`'s chunks that took device 9 was reported with exactly the rows
/// TimescaleDB placed in it.
fn assert_reported_as_placed(c: &mut Client, chunk_lines: &[&String], n: &[String]) {
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
}

/// The rows of `daily` and `small` after the runs, no chunk left partial, staging empty.
fn assert_date_and_smallint_rows(c: &mut Client) {
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM daily"), 56 * 3 + 7);
    assert_eq!(scalar::<i32>(c, "SELECT v FROM daily WHERE day = '2024-01-01' AND k = 1"), 5);
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM small"), 1000 + 100 + 1);
    assert_eq!(
        scalar::<i32>(c, "SELECT v FROM small WHERE t = 5 AND k = 1"),
        5,
        "DO NOTHING kept the existing row"
    );
    for table in ["daily", "small"] {
        let partial: i64 = scalar(
            c,
            &format!(
                "SELECT count(*) FROM show_chunks('{table}') ch WHERE \
            _timescaledb_functions.chunk_status(ch) & 10 <> 0"
            ),
        );
        assert_eq!(partial, 0, "{table}");
    }
    assert_eq!(
        scalar::<i64>(
            c,
            "SELECT (SELECT count(*) FROM daily_late) + (SELECT count(*) FROM small_late)"
        ),
        0
    );
}

timescale_test! {
    fn date_and_smallint_time_columns() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        date_and_smallint_hypertables(&mut c);
        let (mut r, notices) = cl.connect_with_notices("t");
        let daily = config("daily_late", "daily", json!({"on_conflict_action": "UPDATE"}));
        let small = config("small_late", "small", json!({}));
        r.batch_execute(&format!("{};\n{};", call_backfill(&daily), call_backfill(&small)))
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
        assert_reported_as_placed(&mut c, &chunk_lines, &n);
        assert_date_and_smallint_rows(&mut c);
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
    let cfg = event_config(json!({"on_conflict_action": "UPDATE"}));
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
