//! Rows outside every chunk (the rest) move in slices of at most `rest_batch_rows` rows,
//! one transaction each; on TimescaleDB, a chunk compressed since the run's plan waits
//! for the next run. The TimescaleDB case runs when a full TimescaleDB is installed
//! (ignored, with the reason, elsewhere); the plain one everywhere.

use backfill_ext_client_tests::config::{call_backfill, config, event_config};
use backfill_ext_client_tests::fixtures::{state, timescale_dataset, Dataset, State, START};
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{scalar, Client, Cluster, NoTls, Options};
use serde_json::json;

use backfill_ext_client_tests::timescale_cluster as ts_cluster;

/// The rows of `table` by the transaction that wrote them: how many transactions.
fn writers(c: &mut Client, table: &str) -> i64 {
    scalar(c, &format!("SELECT count(DISTINCT xmin::text)::int8 FROM {table}"))
}

/// Plain tables `readings` and `staging`, with 3000 rows in staging. Returns how many
/// blocks staging takes.
fn plain_tables_of_3000_rows(c: &mut Client) -> i64 {
    c.batch_execute(
        "CREATE TABLE readings (id int NOT NULL, ts timestamptz NOT NULL, value float8, PRIMARY \
         KEY (id, ts));
         CREATE TABLE staging (LIKE readings);
         INSERT INTO staging SELECT i, timestamptz '2024-01-01' + i \
        * interval '1 minute', i FROM generate_series(1, 3000) i;",
    )
    .unwrap();
    let blocks: i64 = scalar(c, "SELECT count(DISTINCT (ctid::text::point)[0])::int8 FROM staging");
    assert!(blocks >= 10, "{blocks} blocks");
    blocks
}

#[test]
fn the_rest_moves_in_transactions_of_at_most_rest_batch_rows() {
    let cl = Cluster::start(Options::default());
    let mut c = cl.create_db("t");
    let blocks = plain_tables_of_3000_rows(&mut c);
    // rows stay in staging: copied in slices, once each
    let keep = config(
        "staging",
        "readings",
        json!({"rest_batch_rows": 500, "delete_from_staging": false}),
    );
    c.batch_execute(&call_backfill(&keep)).unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 3000);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM staging"), 3000);
    let slices = writers(&mut c, "readings");
    assert!(
        (6..=blocks).contains(&slices),
        "3000 rows in slices of at most 500: {slices} transactions"
    );
    c.batch_execute(&call_backfill(&keep)).unwrap();
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM readings"),
        3000,
        "a second run adds nothing"
    );
    // moved: each slice deleted from staging and inserted together
    c.batch_execute("TRUNCATE readings").unwrap();
    let (mut r, notices) = cl.connect_with_notices("t");
    r.batch_execute(&call_backfill(&config(
        "staging",
        "readings",
        json!({"rest_batch_rows": 1000}),
    )))
    .unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 3000);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM staging"), 0);
    assert!((3..=blocks).contains(&writers(&mut c, "readings")));
    let n = notices.lock().unwrap().clone();
    assert!(n.iter().any(|m| m.contains("rows outside existing chunks (slice 1 of ")), "{n:#?}");
    assert_eq!(scalar::<i64>(&mut c, "SELECT rows_moved FROM backfill_status"), 3000);
    // the default takes them in one transaction
    c.batch_execute(
        "TRUNCATE readings; INSERT INTO staging SELECT i, now(), i FROM generate_series(1, 3000) i",
    )
    .unwrap();
    c.batch_execute(&call_backfill(&config("staging", "readings", json!({})))).unwrap();
    assert_eq!(writers(&mut c, "readings"), 1);
}

/// 2000 rows on days 40 to 41 and 600 of device 1 on day 30: outside every chunk.
fn stage_days_30_40_and_41(c: &mut Client) {
    c.batch_execute(&format!(
        "INSERT INTO backfill_event_data (time, device_id, value)
           SELECT timestamptz '{START}' + interval '40 days' + i * interval '1 minute', 2, 2 FROM \
           generate_series(0, 1999) i;
         INSERT INTO backfill_event_data (time, device_id, value)
           SELECT timestamptz '{START}' + interval '30 days' + i * interval '1 minute', 1, 2 FROM \
           generate_series(0, 599) i;"
    ))
    .unwrap();
}

/// A run in slices of 300 rows that pauses after its plan, in a thread of its own; returns
/// once it has paused.
fn start_a_run_that_pauses_after_its_plan(
    cl: &Cluster,
    c: &mut Client,
) -> std::thread::JoinHandle<Result<(), String>> {
    let conn = cl.conn_string("t");
    let run = std::thread::spawn(move || {
        let mut r = Client::connect(&conn, NoTls).unwrap();
        r.batch_execute(
            "SET backfill_ext.debug_pause_at = 'after_hold'; SET backfill_ext.debug_pause_seconds \
             = 3;
             SET timescaledb.max_tuples_decompressed_per_dml_transaction = 100",
        )
        .unwrap();
        let cfg = event_config(json!({"on_conflict_action": "UPDATE", "rest_batch_rows": 300}));
        r.batch_execute(&call_backfill(&cfg)).map_err(|e| e.to_string())
    });
    backfill_ext_client_tests::wait_for(
        "the run to pause",
        std::time::Duration::from_secs(60),
        || {
            c.query_opt(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CALL \
                backfill_on_schedule%' AND wait_event = 'PgSleep'",
                &[],
            )
            .unwrap()
            .map(|r| r.get::<_, i32>(0))
        },
    );
    run
}

/// Days 40 and 41 came in, in slices (but a slice that shares a block with day 30);
/// day 30's rows wait in staging; nothing lost.
fn assert_days_40_and_41_moved_in_slices(c: &mut Client) {
    let later = format!("time >= timestamptz '{START}' + interval '40 days'");
    let moved: i64 = scalar(c, &format!("SELECT count(*) FROM event_data WHERE {later}"));
    assert!(moved >= 1500, "{moved} of 2000 rows of days 40 and 41 moved");
    assert_eq!(
        scalar::<i64>(c, &format!("SELECT count(*) FROM backfill_event_data WHERE {later}")),
        2000 - moved
    );
    assert!(writers(c, &format!("event_data WHERE {later}")) >= 3);
    assert_eq!(
        scalar::<i64>(c, &format!("SELECT count(*) FROM backfill_event_data WHERE NOT ({later})")),
        600
    );
    let r = c.query_one("SELECT status, stopped_early FROM backfill_status", &[]).unwrap();
    assert_eq!((r.get::<_, String>(0), r.get::<_, bool>(1)), ("succeeded".to_string(), true));
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
}

/// The next run moves day 30's rows into the compressed chunk, chunk by chunk, and leaves
/// the chunk compressed.
fn assert_the_next_run_moves_day_30(cl: &Cluster, c: &mut Client, before: &State) {
    let (mut r, notices) = cl.connect_with_notices("t");
    r.batch_execute("SET timescaledb.max_tuples_decompressed_per_dml_transaction = 100").unwrap();
    r.batch_execute(&call_backfill(&event_config(json!({"on_conflict_action": "UPDATE"}))))
        .unwrap();
    let n = notices.lock().unwrap().clone();
    assert!(n.iter().any(|m| m.contains("600 rows moved, 600 conflicts")), "{n:#?}");
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM backfill_event_data"), 0);
    assert_eq!(
        scalar::<i64>(
            c,
            "SELECT count(*) FROM backfill_status WHERE status = 'succeeded' AND NOT stopped_early"
        ),
        1
    );
    assert_eq!(
        scalar::<f64>(
            c,
            &format!(
                "SELECT sum(value) FROM event_data WHERE time >= \
        timestamptz '{START}' + interval '30 days'"
            )
        ),
        2.0 * 2600.0
    );
    let after = state(c, "event_data", "backfill_event_data");
    assert_eq!(after.dest_rows, before.dest_rows + 2600);
    let day_30 = format!(
        "show_chunks('event_data', newer_than => timestamptz '{START}' + interval \
        '29 days', older_than => timestamptz '{START}' + interval '31 days')"
    );
    assert_eq!(
        scalar::<String>(
            c,
            &format!(
                "SELECT \
        string_agg(_timescaledb_functions.chunk_status(ch)::text, ',') FROM {day_30} ch"
            )
        ),
        "1"
    );
}

timescale_test! {
    fn new_chunks_fill_in_slices_and_a_chunk_compressed_since_the_plan_waits_for_the_next_run() {
        let cl = ts_cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        stage_days_30_40_and_41(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        // while the run is paused after its plan, a writer fills day 30 with the same keys and
        // compresses it
        let run = start_a_run_that_pauses_after_its_plan(&cl, &mut c);
        c.batch_execute(&format!(
            "INSERT INTO event_data (time, device_id, value)
           SELECT timestamptz '{START}' + interval '30 days' + i * interval '1 minute', 1, 1 FROM \
           generate_series(0, 599) i;
         SELECT count(compress_chunk(ch)) FROM show_chunks('event_data', newer_than => timestamptz \
         '{START}' + interval '29 days') ch;"
        ))
        .unwrap();
        run.join().unwrap().unwrap();
        assert_days_40_and_41_moved_in_slices(&mut c);
        assert_the_next_run_moves_day_30(&cl, &mut c, &before);
    }
}
