//! A hypertable with nothing a row could conflict with (no unique or exclusion index)
//! takes its late rows as compressed batches written by TimescaleDB's direct
//! compression: no heap, no index, no recompression; the chunk ends compressed (and
//! unordered, as TimescaleDB leaves it), with every row there once. Where a trigger, a
//! continuous aggregate or a unique index stands in the way, or a chunk takes fewer rows
//! than a batch holds, the rows take another way and the chunk is compressed again.
//! Where every staging row goes so and staging may be truncated, the whole table goes in
//! one transaction, emptied with TRUNCATE; a writer holding staging, a trigger, row
//! security, a foreign key or a missing TRUNCATE privilege keep the run chunk by chunk,
//! and a run killed inside that transaction leaves both tables as they were. Run where a
//! full TimescaleDB is installed (ignored, with the reason, elsewhere).

use backfill_ext_client_tests::config::{call_backfill, config};
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{
    pid_of_run, run_statuses, scalar, timescale_cluster, Client, Notices,
};
use serde_json::json;

/// The NOTICE of a run that moved the whole staging table in one transaction.
const WHOLE: &str = "in one transaction, and public.st was emptied with TRUNCATE";

/// Hypertable `m` (`extra` appended to its definition), two daily chunks of 4 devices
/// at 10-minute steps, compressed segmented by dev and ordered by time; staging `st`
/// with rows of 8 new devices (1,152 a day) and, for the old devices, the 5-minute marks
/// of 3 hours.
fn tables(c: &mut Client, extra: &str) {
    c.batch_execute(&format!(
        "CREATE TABLE m (time timestamptz NOT NULL, dev int, v double precision{extra});
         SELECT create_hypertable('m', 'time', chunk_time_interval => interval '1 day');
         ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'dev',
                            timescaledb.compress_orderby = 'time');
         INSERT INTO m SELECT t, d, d FROM generate_series(timestamptz '2026-01-02',
             '2026-01-03 23:50', interval '10 minutes') t, generate_series(1, 4) d;
         SELECT compress_chunk(c) FROM show_chunks('m') c;
         CREATE TABLE st (time timestamptz NOT NULL, dev int, v double precision);
         INSERT INTO st SELECT t, d, -d FROM generate_series(timestamptz '2026-01-02',
             '2026-01-03 23:50', interval '10 minutes') t, generate_series(5, 12) d;
         INSERT INTO st SELECT t, d, -d FROM generate_series(timestamptz '2026-01-02 06:05',
             '2026-01-02 08:55', interval '10 minutes') t, generate_series(1, 4) d;"
    ))
    .unwrap();
}

/// Every row of `table`, as text, sorted.
fn rows(c: &mut Client, table: &str) -> Vec<String> {
    let q = format!("SELECT ROW(time, dev, v)::text FROM {table} ORDER BY 1");
    c.query(&q, &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// Runs the backfill of `st` into `m`; returns the chunks' NOTICEs and the
/// strategies the history recorded.
fn backfill(c: &mut Client, notices: &Notices) -> (Vec<String>, Vec<String>) {
    notices.lock().unwrap().clear();
    c.batch_execute(
        "CALL backfill_on_schedule(NULL, \
         '{\"staging_table\":\"st\",\"destination_hypertable\":\"m\",\"workers\":1}')",
    )
    .unwrap();
    let chunk_notices =
        notices.lock().unwrap().iter().filter(|n| n.contains(": chunk ")).cloned().collect();
    let strategies = c
        .query("SELECT strategy FROM backfill_run_chunks ORDER BY chunk", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (chunk_notices, strategies)
}

/// Checks that every staged row is in `m` once, beside every row it had, and that
/// staging is empty and every chunk compressed with no rows beside its batches.
fn every_row_once_and_compressed(c: &mut Client, before: &[String], staged: &[String]) {
    let mut expected: Vec<String> = before.iter().chain(staged).cloned().collect();
    expected.sort();
    assert_eq!(rows(c, "m"), expected, "every row of m and of staging, once");
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM st"), 0);
    // a device's rows in time order as TimescaleDB reads its batches (the order is pushed
    // down to them): the batches written directly are sorted inside
    let in_order: bool = scalar(
        c,
        "SELECT bool_and(t >= p) FROM (SELECT time AS t, lag(time, 1, '-infinity') OVER () AS p \
         FROM (SELECT time FROM m WHERE dev = 5 ORDER BY time) AS o) AS x",
    );
    assert!(in_order, "rows of a device come back in time order");
    let statuses: Vec<i32> = c
        .query("SELECT _timescaledb_functions.chunk_status(c) FROM show_chunks('m') c", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses.len(), 2);
    for s in statuses {
        assert!(s & 1 == 1 && s & 8 == 0, "compressed, not partial: status {s}");
    }
}

/// The file node of staging: TRUNCATE gives it a new one, a DELETE keeps it.
fn filenode(c: &mut Client) -> i64 {
    scalar(c, "SELECT pg_relation_filenode('st')::int8")
}

timescale_test! {
    fn rows_without_a_key_to_meet_are_written_as_compressed_batches() {
        let cl = timescale_cluster();
        for db in ["whole", "chunked"] {
            let mut setup = cl.create_db(db);
            tables(&mut setup, "");
            let (mut c, notices) = cl.connect_with_notices(db);
            let (before, staged, node) = (rows(&mut c, "m"), rows(&mut c, "st"), filenode(&mut c));
            // a writer inside a transaction on staging keeps the run chunk by chunk
            let mut writer = cl.connect(db);
            if db == "chunked" {
                writer.batch_execute("BEGIN; INSERT INTO st VALUES ('2026-01-02', 99, 0)").unwrap();
            }
            let (chunk_notices, strategies) = backfill(&mut c, &notices);
            let whole = notices.lock().unwrap().iter().any(|n| n.contains(WHOLE));
            assert_eq!((whole, filenode(&mut c) != node), (db == "whole", db == "whole"), "{db}");
            if db == "chunked" {
                writer.batch_execute("ROLLBACK").unwrap();
            }
            every_row_once_and_compressed(&mut c, &before, &staged);
            assert_eq!(chunk_notices.len(), 2, "{chunk_notices:?}");
            for n in &chunk_notices {
                assert!(
                    n.contains("written into the compressed chunk as compressed batches"),
                    "{n}: {:?}",
                    notices.lock().unwrap()
                );
            }
            assert_eq!(strategies, ["direct", "direct"]);
            // nothing was compressed again: the chunks were never partial
            let recompressed: i64 =
                scalar(&mut c, "SELECT count(*) FROM backfill_run_chunks WHERE recompressed");
            assert_eq!(recompressed, 0);
            let moved: i64 =
                scalar(&mut c, "SELECT sum(rows_moved)::int8 FROM backfill_run_chunks");
            assert_eq!(moved, staged.len() as i64, "{db}: the history counts every row");
        }
    }
}

timescale_test! {
    fn staging_that_truncate_would_pass_by_goes_chunk_by_chunk() {
        let cl = timescale_cluster();
        let deletes = "CREATE TABLE deleted (n int); \
            CREATE FUNCTION count_delete() RETURNS trigger LANGUAGE plpgsql AS \
            $$BEGIN INSERT INTO deleted VALUES (1); RETURN OLD; END$$; \
            CREATE TRIGGER count_delete BEFORE DELETE ON st FOR EACH ROW \
            EXECUTE FUNCTION count_delete();";
        let foreign_key = "ALTER TABLE st ADD UNIQUE (time, dev, v); \
            CREATE TABLE refers (time timestamptz, dev int, v double precision, \
            FOREIGN KEY (time, dev, v) REFERENCES st (time, dev, v));";
        let no_truncate = "CREATE ROLE t_runner LOGIN; ALTER TABLE m OWNER TO t_runner; \
            GRANT SELECT, DELETE ON st TO t_runner;";
        for (db, after, user) in [
            ("trigger", deletes, "postgres"),
            ("security", "ALTER TABLE st ENABLE ROW LEVEL SECURITY", "postgres"),
            ("foreign_key", foreign_key, "postgres"),
            ("privilege", no_truncate, "t_runner"),
        ] {
            let mut setup = cl.create_db(db);
            tables(&mut setup, "");
            setup.batch_execute(after).unwrap();
            let (before, staged) = (rows(&mut setup, "m"), rows(&mut setup, "st"));
            let node = filenode(&mut setup);
            let mut c = cl.connect_as(db, user);
            c.batch_execute(&call_backfill(&config("st", "m", json!({"workers": 1})))).unwrap();
            assert_eq!(filenode(&mut setup), node, "{db}: staging emptied row by row");
            every_row_once_and_compressed(&mut setup, &before, &staged);
            if db == "trigger" {
                let fired: i64 = scalar(&mut setup, "SELECT count(*) FROM deleted");
                assert_eq!(fired, staged.len() as i64, "every row deleted, its trigger fired");
            }
        }
    }
}

timescale_test! {
    fn a_run_killed_inside_the_whole_staging_transaction_leaves_both_tables_as_they_were() {
        let cl = timescale_cluster();
        let mut c = cl.create_db("t");
        tables(&mut c, "");
        c.batch_execute("ALTER DATABASE t SET backfill_ext.debug_pause_at = 'after_insert'")
            .unwrap();
        let (before, staged) = (rows(&mut c, "m"), rows(&mut c, "st"));
        let conn = cl.conn_string("t");
        let run = std::thread::spawn(move || {
            let mut r = postgres::Client::connect(&conn, postgres::NoTls).unwrap();
            let call = call_backfill(&config("st", "m", json!({})));
            r.batch_execute(&call).map_err(|e| e.to_string())
        });
        let pid = pid_of_run(&mut c, "PgSleep");
        // TRUNCATE has run in the paused transaction: staging is locked against everyone
        let held: i64 = scalar(
            &mut c,
            &format!(
                "SELECT count(*) FROM pg_locks WHERE pid = {pid} AND relation = 'st'::regclass \
                 AND mode = 'AccessExclusiveLock' AND granted"
            ),
        );
        assert_eq!(held, 1);
        c.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
        assert!(run.join().unwrap().is_err(), "the run was ended");
        c.batch_execute("ALTER DATABASE t RESET backfill_ext.debug_pause_at").unwrap();
        assert_eq!((rows(&mut c, "m"), rows(&mut c, "st")), (before.clone(), staged.clone()));
        let mut c = cl.connect("t");
        c.batch_execute(&call_backfill(&config("st", "m", json!({})))).unwrap();
        every_row_once_and_compressed(&mut c, &before, &staged);
        assert_eq!(run_statuses(&mut c), ["failed", "succeeded"]);
        let leftovers: i64 = scalar(
            &mut c,
            "SELECT (SELECT count(*) FROM _backfill_ext.policy_hold) + (SELECT count(*) FROM \
             pg_locks WHERE relation = 'st'::regclass)",
        );
        assert_eq!(leftovers, 0, "no hold, no lock");
    }
}

timescale_test! {
    fn a_key_a_trigger_a_continuous_aggregate_or_few_rows_keep_rows_out_of_direct_compression() {
        let cl = timescale_cluster();
        let with_trigger = "CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS \
        $$BEGIN RETURN NEW; END$$; \
        CREATE TRIGGER keep BEFORE INSERT ON m FOR EACH ROW EXECUTE FUNCTION keep();";
        let with_cagg = "CREATE MATERIALIZED VIEW daily WITH (timescaledb.continuous) AS \
        SELECT time_bucket('1 day', time) AS day, dev, count(*) FROM m GROUP BY 1, 2 WITH NO DATA;";
        for (db, extra, after) in [
            ("key", ", UNIQUE (time, dev)", ""),
            ("trigger", "", with_trigger),
            ("cagg", "", with_cagg),
            // fewer rows than a compressed batch holds
            ("few", "", "DELETE FROM st WHERE dev > 5"),
        ] {
            let mut setup = cl.create_db(db);
            tables(&mut setup, extra);
            setup.batch_execute(after).unwrap();
            let (mut c, notices) = cl.connect_with_notices(db);
            let (before, staged) = (rows(&mut c, "m"), rows(&mut c, "st"));
            let (chunk_notices, _) = backfill(&mut c, &notices);
            every_row_once_and_compressed(&mut c, &before, &staged);
            assert_eq!(chunk_notices.len(), 2, "{db}: {chunk_notices:?}");
            for n in &chunk_notices {
                assert!(
                    !n.contains("as compressed batches") && n.contains("recompressed"),
                    "{db}: {n}"
                );
            }
        }
    }
}
