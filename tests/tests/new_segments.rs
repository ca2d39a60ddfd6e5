//! A hypertable with a unique key that holds its segmentby column takes rows of
//! segments a compressed chunk lacks (new devices) written into the chunk in bulk, then
//! compressed: no row checked against the compressed batches, none inserted one by one.
//! Under `NOTHING` rows of segments the chunk has go in bulk too, their keys the chunk
//! has left out (an outage replay). The end state is what `INSERT … ON CONFLICT` gives
//! on a plain table (staging's repeated keys included, for `NOTHING` and `UPDATE`); under
//! `UPDATE` a step with a row of a segment the chunk has takes the ordinary way, and
//! with a continuous aggregate every step does (an outage replay is merged); a run
//! killed after the bulk write leaves both tables as they were. Run where a full
//! TimescaleDB is installed (ignored, with the reason, elsewhere).

use backfill_ext_client_tests::config::{call_backfill, config, literal};
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{pid_of_run, scalar, timescale_cluster, Client, Notices};
use serde_json::json;

/// What the NOTICE of a chunk written so says: rows of new segments alone, or (under
/// `NOTHING`) rows of existing segments too, their keys the chunk has left out.
const IN_BULK: &str = "new segments written into the chunk in bulk, recompressed";
const NEW_KEYS: &str = "new keys written into the chunk in bulk, recompressed";
/// What `backfill_plan` of the run's config says of a chunk whose rows go so: under
/// `NOTHING` whatever their segments, under `UPDATE` where none has a segment of the
/// chunk; and of one whose rows TimescaleDB inserts into the compressed chunk.
const PLANNED_NEW_KEYS: &str =
    "write the rows whose keys the chunk lacks into it in bulk, recompress";
const PLANNED_NEW_SEGMENTS: &str = "write the new segments into the chunk in bulk, recompress";
const PLANNED_DIRECT: &str = "insert into the compressed chunk, recompress what became partial";

/// Hypertable `m` with the key (dev, time), two daily chunks of 4 devices at 10-minute
/// steps, compressed segmented by dev; its plain twin `twin` with the same rows and key;
/// staging `st` with 8 new devices (1,152 rows a day), each of their rows twice (values
/// -dev, then -dev - 100).
fn tables(c: &mut Client) {
    c.batch_execute(
        "CREATE TABLE m (time timestamptz NOT NULL, dev int NOT NULL, v double precision,
                         PRIMARY KEY (dev, time));
         SELECT create_hypertable('m', 'time', chunk_time_interval => interval '1 day');
         ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'dev',
                            timescaledb.compress_orderby = 'time');
         INSERT INTO m SELECT t, d, d FROM generate_series(timestamptz '2026-01-02',
             '2026-01-03 23:50', interval '10 minutes') t, generate_series(1, 4) d;
         SELECT compress_chunk(c) FROM show_chunks('m') c;
         CREATE TABLE twin (LIKE m INCLUDING ALL);
         INSERT INTO twin SELECT * FROM m;
         CREATE TABLE st (time timestamptz NOT NULL, dev int NOT NULL, v double precision);
         INSERT INTO st SELECT t, d, -d FROM generate_series(timestamptz '2026-01-02',
             '2026-01-03 23:50', interval '10 minutes') t, generate_series(5, 12) d;
         INSERT INTO st SELECT time, dev, v - 100 FROM st;",
    )
    .unwrap();
}

/// Every row of `table`, as text, sorted.
fn rows(c: &mut Client, table: &str) -> Vec<String> {
    let q = format!("SELECT ROW(time, dev, v)::text FROM {table} ORDER BY 1");
    c.query(&q, &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// The reference: `twin` after `INSERT … ON CONFLICT` of staging's rows, the first of
/// each key kept (`NOTHING`) or the last applied (`UPDATE`), as the README says.
fn reference(c: &mut Client, action: &str) -> Vec<String> {
    let (order, set) = match action {
        "UPDATE" => ("DESC", "DO UPDATE SET v = excluded.v"),
        _ => ("", "DO NOTHING"),
    };
    c.batch_execute(&format!(
        "INSERT INTO twin SELECT DISTINCT ON (dev, time) time, dev, v FROM st
         ORDER BY dev, time, ctid {order} ON CONFLICT (dev, time) {set}"
    ))
    .unwrap();
    rows(c, "twin")
}

/// `backfill_plan`'s action for each chunk of `m`, in time order, for the config of a
/// run with `action` (the default config's where `action` is `NOTHING`, its default).
fn planned(c: &mut Client, action: &str) -> Vec<String> {
    let q = match action {
        "NOTHING" => "SELECT action FROM backfill_plan('st', 'm') WHERE chunk IS NOT NULL".into(),
        _ => format!(
            "SELECT action FROM backfill_plan({}::jsonb) WHERE chunk IS NOT NULL",
            literal(&config("st", "m", json!({"workers": 1, "on_conflict_action": action})))
        ),
    };
    c.query(&q, &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// Runs the backfill with `action`; returns the chunks' NOTICEs.
fn backfill(c: &mut Client, notices: &Notices, action: &str) -> Vec<String> {
    notices.lock().unwrap().clear();
    let extra = json!({"workers": 1, "on_conflict_action": action});
    c.batch_execute(&call_backfill(&config("st", "m", extra))).unwrap();
    let all = notices.lock().unwrap();
    all.iter().filter(|n| n.contains(": chunk ")).cloned().collect()
}

/// The destination holds `expected`, staging is empty, and every chunk is compressed
/// with no rows beside its batches.
fn as_expected_and_compressed(c: &mut Client, expected: &[String], what: &str) {
    assert_eq!(rows(c, "m"), expected, "{what}: the rows INSERT … ON CONFLICT gives");
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM st"), 0, "{what}");
    let partial: i64 = scalar(
        c,
        "SELECT count(*) FROM show_chunks('m') ch \
         WHERE _timescaledb_functions.chunk_status(ch) & 1 = 0 \
            OR _timescaledb_functions.chunk_status(ch) & 8 <> 0",
    );
    assert_eq!(partial, 0, "{what}: every chunk compressed, none partial");
}

timescale_test! {
    fn rows_of_new_segments_are_written_in_bulk_as_insert_on_conflict_would_leave_them() {
        let cl = timescale_cluster();
        for action in ["NOTHING", "UPDATE"] {
            let db = action.to_lowercase();
            let mut setup = cl.create_db(&db);
            tables(&mut setup);
            let expected = reference(&mut setup, action);
            let (mut c, notices) = cl.connect_with_notices(&db);
            let planned_how = match action {
                "NOTHING" => PLANNED_NEW_KEYS,
                _ => PLANNED_NEW_SEGMENTS,
            };
            assert_eq!(planned(&mut c, action), [planned_how; 2], "{action}: the plan says so");
            let chunk_notices = backfill(&mut c, &notices, action);
            as_expected_and_compressed(&mut c, &expected, action);
            assert_eq!(chunk_notices.len(), 2, "{chunk_notices:?}");
            for n in &chunk_notices {
                assert!(n.contains(IN_BULK), "{action}: {n}");
                // 2,304 taken, 1,152 kept: the repeated keys count as conflicts
                assert!(n.contains("2304 rows moved, 1152 conflicts"), "{action}: {n}");
            }
            let kept = "SELECT sum(rows_moved - conflicts)::int8 FROM backfill_run_chunks";
            let inserted: i64 = scalar(&mut c, kept);
            assert_eq!(inserted, 2304, "the history counts every row kept");
        }
    }
}

timescale_test! {
    /// A chunk taking fewer rows than the bulk way pays for (1,152 rows of new devices;
    /// `plan::NEW_SEGMENTS_FROM_ROWS` is 2,000) takes them with the batch of direct
    /// inserts the other chunks share, inserted into the compressed chunk.
    fn a_few_rows_of_new_segments_go_with_the_batch_of_direct_inserts() {
        let cl = timescale_cluster();
        let mut setup = cl.create_db("few");
        tables(&mut setup);
        setup.batch_execute("DELETE FROM st WHERE v < -100").unwrap();
        let expected = reference(&mut setup, "NOTHING");
        let (mut c, notices) = cl.connect_with_notices("few");
        assert_eq!(planned(&mut c, "NOTHING"), [PLANNED_DIRECT; 2], "the plan says so");
        c.batch_execute("SET client_min_messages = debug1").unwrap();
        let chunk_notices = backfill(&mut c, &notices, "NOTHING");
        as_expected_and_compressed(&mut c, &expected, "few");
        assert_eq!(chunk_notices.len(), 2, "{chunk_notices:?}");
        for n in &chunk_notices {
            assert!(
                n.contains("1152 rows moved, 0 conflicts, inserted into the compressed chunk"),
                "{n}"
            );
        }
        let batches = notices.lock().unwrap().iter().filter(|n| n.contains("batch done")).count();
        assert_eq!(batches, 1, "both chunks in one transaction");
    }
}

timescale_test! {
    fn a_segment_the_chunk_has_takes_new_keys_or_the_ordinary_way() {
        let cl = timescale_cluster();
        let cagg = "CREATE MATERIALIZED VIEW daily WITH (timescaledb.continuous) AS \
            SELECT time_bucket('1 day', time) AS day, dev, count(*) FROM m GROUP BY 1, 2 \
            WITH NO DATA;";
        // a row of device 1, which the first chunk has, staged last (routed, the plan's
        // sample of the first 1,000 rows misses it): under NOTHING the first chunk's rows
        // go in bulk all the same (new keys); under UPDATE it takes the ordinary way
        let old = "INSERT INTO st VALUES ('2026-01-02 00:05', 1, -1)";
        let cases = [
            ("old", old, "NOTHING", false, (1, 1)),
            ("routed", old, "NOTHING", true, (1, 1)),
            ("update", old, "UPDATE", true, (1, 0)),
            ("cagg", cagg, "NOTHING", false, (0, 0)),
        ];
        for (db, after, action, routed, in_bulk) in cases {
            let mut setup = cl.create_db(db);
            tables(&mut setup);
            setup.batch_execute(after).unwrap();
            let expected = reference(&mut setup, action);
            let (mut c, notices) = cl.connect_with_notices(db);
            c.batch_execute(&format!("SET backfill_ext.debug_always_route = {routed}")).unwrap();
            let plan = planned(&mut c, action);
            let chunk_notices = backfill(&mut c, &notices, action);
            as_expected_and_compressed(&mut c, &expected, db);
            let count = |text: &str| chunk_notices.iter().filter(|n| n.contains(text)).count();
            assert_eq!((count(IN_BULK), count(NEW_KEYS)), in_bulk, "{db}: {chunk_notices:?}");
            // the plan names the chunks that go in bulk
            let in_bulk_planned = plan.iter().filter(|a| a.contains(" in bulk,")).count();
            assert_eq!(in_bulk_planned, in_bulk.0 + in_bulk.1, "{db}: {plan:?}");
        }
    }
}

timescale_test! {
    fn a_run_killed_after_writing_new_segments_in_bulk_leaves_both_tables_as_they_were() {
        let cl = timescale_cluster();
        let mut c = cl.create_db("t");
        tables(&mut c);
        let expected = reference(&mut c, "NOTHING");
        let (before, staged) = (rows(&mut c, "m"), rows(&mut c, "st"));
        c.batch_execute("ALTER DATABASE t SET backfill_ext.debug_pause_at = 'after_insert'")
            .unwrap();
        let conn = cl.conn_string("t");
        let run = std::thread::spawn(move || {
            let mut r = postgres::Client::connect(&conn, postgres::NoTls).unwrap();
            r.batch_execute(&call_backfill(&config("st", "m", json!({"workers": 1}))))
                .map_err(|e| e.to_string())
        });
        let pid = pid_of_run(&mut c, "PgSleep");
        c.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
        assert!(run.join().unwrap().is_err(), "the run was ended");
        c.batch_execute("ALTER DATABASE t RESET backfill_ext.debug_pause_at").unwrap();
        assert_eq!((rows(&mut c, "m"), rows(&mut c, "st")), (before, staged));
        let mut c = cl.connect("t");
        c.batch_execute(&call_backfill(&config("st", "m", json!({"workers": 1})))).unwrap();
        as_expected_and_compressed(&mut c, &expected, "after the kill, the next run");
    }
}

timescale_test! {
    fn an_outage_replay_under_nothing_goes_in_bulk_or_merged_as_insert_on_conflict_would() {
        let cl = timescale_cluster();
        // with a continuous aggregate nothing is written in bulk past its trigger: merged
        let merge = "merge into the touched segments, recompress them";
        let cases =
            [("outage", false, NEW_KEYS, PLANNED_NEW_KEYS), ("cagg", true, "merged, every", merge)];
        for (db, cagg, how, planned_how) in cases {
            let mut setup = cl.create_db(db);
            tables(&mut setup);
            // the chunks' own devices: each 5-minute key three times (new keys), each
            // 10-minute key once (keys the chunks have, with other values)
            setup
                .batch_execute(
                    "TRUNCATE st;
                     INSERT INTO st SELECT t + interval '5 minutes', d, -d
                       FROM generate_series(timestamptz '2026-01-02', '2026-01-03 23:50',
                                            interval '10 minutes') t, generate_series(1, 4) d;
                     INSERT INTO st SELECT time, dev, v - 100 FROM st;
                     INSERT INTO st SELECT time, dev, v - 200 FROM st WHERE v > -100;
                     INSERT INTO st SELECT time, dev, -1000 FROM m;",
                )
                .unwrap();
            if cagg {
                setup
                    .batch_execute(
                        "CREATE MATERIALIZED VIEW daily WITH (timescaledb.continuous) AS SELECT \
                         time_bucket('1 day', time) AS day, dev, count(*) FROM m GROUP BY 1, 2 \
                         WITH NO DATA",
                    )
                    .unwrap();
            }
            let expected = reference(&mut setup, "NOTHING");
            let (mut c, notices) = cl.connect_with_notices(db);
            assert_eq!(planned(&mut c, "NOTHING"), [planned_how; 2], "{db}: the plan says so");
            let chunk_notices = backfill(&mut c, &notices, "NOTHING");
            as_expected_and_compressed(&mut c, &expected, db);
            assert_eq!(chunk_notices.len(), 2, "{chunk_notices:?}");
            for n in &chunk_notices {
                // no row checked against the batches one by one
                assert!(n.contains(how), "{db}: {n}");
                // 2,304 taken a day, 576 inserted: repeated keys and existing ones conflict
                assert!(n.contains("2304 rows moved, 1728 conflicts"), "{db}: {n}");
            }
        }
    }
}
