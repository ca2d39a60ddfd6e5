//! Conflict keys as the target's unique index compares them: a key holding a NULL meets
//! no other (unless the index is NULLS NOT DISTINCT), and text compares by the index's
//! collation, whatever staging's is. Each test checks against what `INSERT … ON
//! CONFLICT` does on a plain table with the same index. Run where a full TimescaleDB is
//! installed (ignored, with the reason, elsewhere).

use backfill_ext_client_tests::config::{call_backfill_job, config};
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{scalar, timescale_cluster, Client};
use serde_json::json;

/// Hypertable `m` (dev, tag nullable; unique on dev, tag, time), a day of rows, its
/// chunks compressed segmented by dev when `compressed`; staging `st`.
fn null_key_tables(c: &mut Client, unique: &str, compressed: bool) {
    c.batch_execute(&format!(
        "CREATE TABLE m (time timestamptz NOT NULL, dev int, tag text, v int);
         CREATE UNIQUE INDEX m_key ON m {unique};
         SELECT create_hypertable('m', 'time', chunk_time_interval => interval '1 day');
         ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'dev');
         INSERT INTO m SELECT t, d, 'a', 0 FROM generate_series(timestamptz '2026-01-02', \
         '2026-01-02 23:00', interval '1 hour') t, generate_series(1, 3) d;
         CREATE TABLE st (time timestamptz NOT NULL, dev int, tag text, v int);
         INSERT INTO st VALUES ('2026-01-02 05:00', NULL, 'a', 1), ('2026-01-02 05:00', NULL, 'a', \
         2),
                               ('2026-01-02 06:00', NULL, NULL, 3), ('2026-01-02 06:00', NULL, \
                               NULL, 4),
                               ('2026-01-02 07:00', 2, NULL, 5), ('2026-01-02 07:00', 2, NULL, 6);"
    ))
    .unwrap();
    if compressed {
        c.batch_execute("SELECT compress_chunk(c) FROM show_chunks('m') c").unwrap();
    }
}

/// The rows of `m` with v > 0 (the staged ones), as text, sorted.
fn staged_rows_in(c: &mut Client, table: &str) -> Vec<String> {
    c.query(
        &format!("SELECT ROW(time, dev, tag, v)::text FROM {table} WHERE v > 0 ORDER BY 1"),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The reference: the same rows upserted into a plain table with the same index.
fn reference(c: &mut Client, unique: &str, action: &str) -> Vec<String> {
    c.batch_execute(&format!(
        "CREATE TABLE ref (LIKE m); CREATE UNIQUE INDEX ON ref {unique}; INSERT INTO ref SELECT * \
         FROM m;
         INSERT INTO ref SELECT * FROM st ORDER BY ctid ON CONFLICT (dev, tag, time) {action};"
    ))
    .unwrap();
    staged_rows_in(c, "ref")
}

fn null_keys_arrive(unique: &str, action: &str, compressed: bool, workers: i32) {
    let cl = timescale_cluster();
    let mut c = cl.create_db("t");
    null_key_tables(&mut c, unique, compressed);
    let want = reference(&mut c, unique, action);
    let verb = if action.starts_with("DO UPDATE") { "UPDATE" } else { "NOTHING" };
    let cfg = config("st", "m", json!({"on_conflict_action": verb, "workers": workers}));
    c.batch_execute(&call_backfill_job(0, &cfg)).unwrap();
    assert_eq!(staged_rows_in(&mut c, "m"), want, "{unique} {action}, compressed: {compressed}");
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM st"), 0);
}

const UPSERT: &str = "DO UPDATE SET v = EXCLUDED.v";

timescale_test! {
    fn staging_rows_whose_key_holds_a_null_all_arrive_as_insert_on_conflict_keeps_them() {
        for (compressed, workers) in [(true, 1), (false, 1), (true, 2)] {
            // NULLs distinct: all six rows arrive (before: three of them were lost)
            null_keys_arrive("(dev, tag, time)", UPSERT, compressed, workers);
            null_keys_arrive("(dev, tag, time)", "DO NOTHING", compressed, workers);
        }
    }
}

timescale_test! {
    fn under_nulls_not_distinct_the_last_staging_row_of_a_key_wins() {
        let cl = timescale_cluster();
        let mut c = cl.create_db("t");
        null_key_tables(&mut c, "(dev, tag, time) NULLS NOT DISTINCT", true);
        let cfg = config("st", "m", json!({"on_conflict_action": "UPDATE"}));
        c.batch_execute(&call_backfill_job(0, &cfg)).unwrap();
        // one row per key, the later value of each pair
        let got = staged_rows_in(&mut c, "m");
        assert_eq!(
            got,
            [
                "(\"2026-01-02 05:00:00+00\",,a,2)",
                "(\"2026-01-02 06:00:00+00\",,,4)",
                "(\"2026-01-02 07:00:00+00\",2,,6)"
            ]
        );
    }
}

/// Destination `m` keyed on (dev, tag, time) with `tag` of collation `dest_coll`,
/// segmented by dev and compressed; staging's `tag` of collation `staging_coll`.
fn collated_tables(c: &mut Client, dest_coll: &str, staging_coll: &str) {
    c.batch_execute(&format!(
        "CREATE TABLE m (time timestamptz NOT NULL, dev int NOT NULL, tag text COLLATE {dest_coll} \
         NOT NULL, v int, PRIMARY KEY (dev, tag, time));
         SELECT create_hypertable('m', 'time', chunk_time_interval => interval '1 day');
         ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'dev');
         INSERT INTO m SELECT t, d, 'a', 0 FROM generate_series(timestamptz '2026-01-02', \
         '2026-01-02 23:00', interval '1 hour') t, generate_series(1, 3) d;
         SELECT compress_chunk(c) FROM show_chunks('m') c;
         CREATE TABLE st (time timestamptz NOT NULL, dev int NOT NULL, tag text COLLATE \
         {staging_coll} NOT NULL, v int);"
    ))
    .unwrap();
}

timescale_test! {
    fn a_staging_key_column_of_another_collation_merges_in_every_strategy() {
        let cl = timescale_cluster();
        let mut c = cl.create_db("t");
        collated_tables(&mut c, "\"C\"", "\"POSIX\"");
        for (round, (on_disk, strategy)) in
            [(false, "auto"), (true, "auto"), (false, "direct"), (false, "decompress")]
                .into_iter()
                .enumerate()
        {
            // every row of device 1 corrected (a dense upsert), and one new tag
            c.batch_execute(&format!(
                "INSERT INTO st SELECT time, dev, tag, {v} FROM m WHERE dev = 1;
             INSERT INTO st VALUES ('2026-01-02 03:3{round}', 2, 'b', {v});
             SET backfill_ext.debug_rewrite_on_disk = {on_disk};",
                v = round + 1
            ))
            .unwrap();
            let cfg =
                config("st", "m", json!({"on_conflict_action": "UPDATE", "strategy": strategy}));
            c.batch_execute(&call_backfill_job(0, &cfg)).unwrap();
            assert_eq!(
                scalar::<i64>(&mut c, &format!("SELECT count(*) FROM m WHERE v = {}", round + 1)),
                25,
                "{strategy}, on disk: {on_disk}"
            );
            assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m"), 72 + round as i64 + 1);
        }
    }
}

timescale_test! {
    #[cfg_attr(
        not(icu),
        ignore = "this PostgreSQL is built without ICU, so it has no nondeterministic collation"
    )]
    fn a_nondeterministic_collation_of_the_key_is_followed_in_a_compressed_chunk() {
        let cl = timescale_cluster();
        let mut c = cl.create_db("t");
        c.batch_execute(
            "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', \
             deterministic = false)",
        )
        .unwrap();
        collated_tables(&mut c, "ci", "\"C\"");
        // 'A' is the key 'a' under the index's collation: two updates, one new row ('b')
        c.batch_execute(
            "INSERT INTO st VALUES ('2026-01-02 05:00', 1, 'A', 1), \
             ('2026-01-02 05:00', 1, 'a', 2), ('2026-01-02 06:00', 2, 'A', 3), \
             ('2026-01-02 06:00', 2, 'b', 4)",
        )
        .unwrap();
        let cfg = config("st", "m", json!({"on_conflict_action": "UPDATE", "strategy": "direct"}));
        c.batch_execute(&call_backfill_job(0, &cfg)).unwrap();
        let got: Vec<String> = c
            .query("SELECT ROW(time, dev, tag, v)::text FROM m WHERE v > 0 ORDER BY 1", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            got,
            [
                "(\"2026-01-02 05:00:00+00\",1,a,2)",
                "(\"2026-01-02 06:00:00+00\",2,a,3)",
                "(\"2026-01-02 06:00:00+00\",2,b,4)"
            ]
        );
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM m"), 73);
        let partial: i64 = scalar(
            &mut c,
            "SELECT count(*) FROM show_chunks('m') c WHERE \
        _timescaledb_functions.chunk_status(c) & 9 <> 1",
        );
        assert_eq!(partial, 0, "every chunk compressed, none partial");
    }
}
