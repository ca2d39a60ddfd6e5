//! A hypertable with nothing a row could conflict with (no unique or exclusion index)
//! takes its late rows as compressed batches written by TimescaleDB's direct
//! compression: no heap, no index, no recompression; the chunk ends compressed (and
//! unordered, as TimescaleDB leaves it), with every row there once. Where a trigger, a
//! continuous aggregate or a unique index stands in the way, or a chunk takes fewer rows
//! than a batch holds, the rows take another way and the chunk is compressed again. Run where a
//! full TimescaleDB is
//! installed (ignored, with the reason, elsewhere).

use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{scalar, timescale_cluster, Client, Notices};

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

timescale_test! {
    fn rows_without_a_key_to_meet_are_written_as_compressed_batches() {
        let cl = timescale_cluster();
        let mut setup = cl.create_db("t");
        tables(&mut setup, "");
        let (mut c, notices) = cl.connect_with_notices("t");
        let (before, staged) = (rows(&mut c, "m"), rows(&mut c, "st"));
        let (chunk_notices, strategies) = backfill(&mut c, &notices);
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
