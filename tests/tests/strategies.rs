//! How each chunk takes its rows: the plan, auto's choice per chunk against forced
//! strategies, and merging by segments where a rewrite must not happen.

use backfill_ext_client_tests::config::{call_backfill, config, event_config, literal};
use backfill_ext_client_tests::fixtures::{
    assert_compressed_and_policy_as_before, stage_correction_from_day, stage_late_rows, state,
    timescale_dataset, Dataset, START,
};
use backfill_ext_client_tests::timescale_cluster as cluster;
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{expect_error, scalar, Client, Cluster};
use serde_json::json;

/// Hypertable `h` of device 1 hourly over four days, the first two compressed; staging
/// `s` with two rows for day 2, one for day 4 and one for February (no chunk).
fn plan_tables(c: &mut Client) {
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
}

timescale_test! {
    fn plans_only_chunks_that_receive_rows() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        plan_tables(&mut c);
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

timescale_test! {
    fn the_plan_of_a_config_follows_its_keys_and_refuses_what_a_run_would() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        plan_tables(&mut c);
        let actions = |c: &mut Client, extra: serde_json::Value| -> Vec<String> {
            let cfg = literal(&config("s", "h", extra));
            let q = format!("SELECT action FROM backfill_plan({cfg}::jsonb)");
            c.query(&q, &[]).unwrap().iter().map(|r| r.get(0)).collect()
        };
        let default: Vec<String> = (c.query("SELECT action FROM backfill_plan('s', 'h')", &[]))
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(default.len(), 3, "{default:?}");
        assert_eq!(actions(&mut c, json!({})), default);
        let forced = actions(&mut c, json!({"strategy": "decompress"}));
        assert_eq!(forced[0], "decompress, insert, recompress");
        assert_eq!(forced[1..], default[1..]);
        // and refuses what a run would refuse, with the run's SQLSTATE and hint
        let (code, msg, hint) = expect_error(
            &mut c,
            &format!(
                "SELECT * FROM backfill_plan({}::jsonb)",
                literal(&config("s", "h", json!({"strategy": "fastest"})))
            ),
        );
        assert_eq!(code, "22023", "{msg}");
        assert!(hint.is_some_and(|h| h.contains("auto")), "{msg}");
        let (code, msg, _) = expect_error(&mut c, "SELECT * FROM backfill_plan(NULL::jsonb)");
        assert_eq!((code.as_str(), msg.contains("config")), ("22004", true), "{msg}");
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM s"), 4, "the plan changed nothing");
    }
}

/// What one run with `strategy` did to late rows and a dense correction of day 4 (with
/// one new key in it): the strategy of each chunk, a digest of the destination's rows,
/// their count, and the NOTICEs of the chunks merged. Database `r` runs auto with the
/// staging rows routed through the row-id table, and a rewrite holding the merged rows
/// in a temporary table, not in memory (what only a staging table or a chunk far bigger
/// than a test's would get).
fn upsert_with_strategy(cl: &Cluster, db: &str, strategy: &str) -> StrategyResult {
    let mut c = cl.create_db(db);
    timescale_dataset(&mut c, &Dataset::default());
    stage_late_rows(&mut c);
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
    let cfg = event_config(json!({"on_conflict_action": "UPDATE", "strategy": strategy}));
    run.batch_execute(&call_backfill(&cfg)).unwrap();
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
    (strategies, digest, after.dest_rows, merges)
}

/// The strategy of each chunk, a digest of the rows, their count, the merges' NOTICEs.
type StrategyResult = (Vec<String>, String, i64, Vec<String>);

/// Day 0 (30 rows of one device of five) merged into its segments; day 4 (every device)
/// rewritten, as `rewrite` says. With workers the two chunks' NOTICEs come in the order
/// their transactions end.
fn assert_merged_then_rewritten(merges: &[String], rewrite: &str) {
    assert_eq!(merges.len(), 2, "{merges:#?}");
    let merged = "30 rows moved, 30 conflicts, merged into its segments, recompressed";
    assert!(merges.iter().any(|m| m.contains(merged)), "{merges:#?}");
    let rewritten = format!("merged, every segment touched: {rewrite}");
    assert!(merges.iter().any(|m| m.contains(&rewritten)), "{merges:#?}");
}

timescale_test! {
    fn auto_chooses_per_chunk_and_forced_strategies_agree_on_the_result() {
        let cl = cluster();
        let results: Vec<StrategyResult> =
            [("a", "auto"), ("d", "direct"), ("x", "decompress"), ("r", "auto")]
                .into_iter()
                .map(|(db, strategy)| upsert_with_strategy(&cl, db, strategy))
                .collect();
        assert_eq!(
            results[0].0,
            ["merge", "direct", "direct", "merge"],
            "auto: the upserts meeting existing batches merge, new devices go direct"
        );
        assert!(results[1].0.iter().all(|s| s == "direct"));
        assert!(results[2].0.iter().all(|s| s == "decompress"));
        assert_eq!(results[3].0, results[0].0, "routed or not, the same choices");
        assert_merged_then_rewritten(&results[0].3, "chunk rewritten, recompressed");
        assert_merged_then_rewritten(
            &results[3].3,
            "chunk rewritten (through a temporary table), recompressed",
        );
        assert!(
            results.windows(2).all(|w| w[0].1 == w[1].1 && w[0].2 == w[1].2),
            "the same rows whatever the strategy"
        );
    }
}

timescale_test! {
    fn a_dense_upsert_on_a_chunk_being_read_merges_by_segments_instead_of_waiting() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let staged = stage_correction_from_day(&mut c, 4);
        let sum_after: f64 = scalar(
            &mut c,
            &format!(
                "SELECT sum(value) + {staged} FROM \
            event_data"
            ),
        );
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
        r.batch_execute(&call_backfill(&event_config(json!({"on_conflict_action": "UPDATE"}))))
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
        let sum_after: f64 = scalar(
            &mut c,
            &format!(
                "SELECT sum(value) + {staged} FROM \
            event_data"
            ),
        );
        let (mut r, notices) = cl.connect_with_notices("t");
        r.batch_execute(&call_backfill(&event_config(json!({"on_conflict_action": "UPDATE"}))))
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
