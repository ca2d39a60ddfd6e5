//! The rewrite of a densely corrected compressed chunk (tables `m`, `m_late`): the merged
//! rows held in memory or in a temporary table, written back in bulk or row by row, with
//! every constraint, default, dropped column and index as the chunk has them.

use backfill_ext_client_tests::config::{call_backfill, config};
use backfill_ext_client_tests::fixtures::{assert_compressed_and_policy_as_before, state};
use backfill_ext_client_tests::timescale_cluster as cluster;
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{expect_error, scalar, Client, Cluster, Notices};
use serde_json::json;

/// The upsert of `m_late` into `m` that the rewrite tests run.
fn rewrite_m() -> String {
    call_backfill(&config("m_late", "m", json!({"on_conflict_action": "UPDATE"})))
}

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
            r.batch_execute(&rewrite_m()).unwrap();
            let n = notices.lock().unwrap().clone();
            let how = rewritten(on_disk);
            assert!(
                n.iter().any(|m| m.contains(&format!(
                    "73 rows moved, 72 conflicts, merged, every segment touched: {how}"
                ))),
                "{n:#?}"
            );
            assert!(
                n.iter().any(|m| m.contains(
                    "(1 inserted, 72 updated, 72 \
                conflicts)"
                )),
                "{n:#?}"
            );
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
            r.batch_execute(&rewrite_m()).unwrap();
            let n = notices.lock().unwrap().clone();
            let how = rewritten(on_disk);
            assert!(
                n.iter().any(|m| m.contains(&format!(
                    "75 rows moved, 73 conflicts, merged, every segment touched: {how}"
                ))),
                "{n:#?}"
            );
            // the second copy of device 4's row is a conflict within staging
            assert!(
                n.iter().any(|m| m.contains(
                    "(2 inserted, 72 updated, 73 \
                conflicts)"
                )),
                "{n:#?}"
            );
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
            r.batch_execute(&rewrite_m()).unwrap();
            let n = notices.lock().unwrap().clone();
            assert!(
                n.iter().any(|m| m.contains(
                    "(1 inserted, 72 updated, 72 \
                conflicts)"
                )),
                "{n:#?}"
            );
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
        r.batch_execute(&rewrite_m()).unwrap();
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
        r.batch_execute(&rewrite_m()).unwrap();
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
        for ((name, bad, code, names), on_disk) in
            cases.iter().flat_map(|c| [(c, false), (c, true)])
        {
            let db = &format!("{name}_{on_disk}");
            let mut c = cl.create_db(db);
            rewritable_chunk(&mut c, "v int NOT NULL CHECK (v < 100)");
            c.batch_execute(&format!(
                "UPDATE m_late SET v = {bad} WHERE dev = 2 AND time = '2024-01-01 12:00'"
            ))
            .unwrap();
            let before = state(&mut c, "m", "m_late");
            let (got, message, hint) =
                expect_error(&mut rewriting_session(&cl, db, on_disk).0, &rewrite_m());
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

/// `m` with two compressed chunks that number their columns differently, and `m_late`
/// correcting both.
fn chunks_before_and_after_a_dropped_column(c: &mut Client) {
    // day 1's chunk keeps the dropped column; day 2's, made after the drop, never had
    // it, so the two chunks and the hypertable number their columns differently
    rewritable_chunk(c, "gone int, v int, note text DEFAULT 'old'");
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
}

timescale_test! {
    fn a_bulk_rewrite_matches_columns_by_name_in_chunks_made_before_and_after_a_column_was_dropped()
    {
        let cl = cluster();
        for on_disk in [false, true] {
            let db = &format!("t_{on_disk}");
            let mut c = cl.create_db(db);
            chunks_before_and_after_a_dropped_column(&mut c);
            let (mut r, notices) = rewriting_session(&cl, db, on_disk);
            // inside a transaction block, the run leaves the caller's settings as they were
            r.batch_execute(&format!(
                "BEGIN; SET LOCAL max_parallel_maintenance_workers = 1; {}",
                rewrite_m()
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
            assert_eq!(
                rows,
                [
                    (
                        "day \
                2/added"
                            .to_string(),
                        72,
                        144
                    ),
                    ("old/added".to_string(), 72, 72)
                ]
            );
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
            r.batch_execute(&rewrite_m()).unwrap();
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
            assert_eq!(
                rows,
                [(Some(1), 24, 24), (Some(2), 24, 24), (Some(3), 24, 0), (None, 1, 7)]
            );
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
            r.batch_execute(&rewrite_m()).unwrap();
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
            r.batch_execute(&rewrite_m()).unwrap();
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

/// `m` and `m_late` as `rewritable_chunk` makes them, the primary key on (time, dev) and a
/// plain index on (dev, time).
fn rewritable_chunk_with_a_plain_index_to_compress_by(c: &mut Client) {
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
}

/// Decompressed, the chunk's indexes hold every row.
fn assert_indexes_hold_every_row(c: &mut Client) {
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
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM m WHERE dev = 2"), 24);
    assert_eq!(
        scalar::<i64>(
            c,
            "SELECT count(*) FROM m WHERE time >= '2024-01-01 12:00' AND time < '2024-01-02'"
        ),
        36
    );
}

timescale_test! {
    fn a_bulk_rewrite_is_compressed_without_its_unbuilt_indexes_where_compression_may_read_one() {
        let cl = cluster();
        for on_disk in [false, true] {
            let db = &format!("t_{on_disk}");
            let mut c = cl.create_db(db);
            rewritable_chunk_with_a_plain_index_to_compress_by(&mut c);
            let (mut r, notices) = rewriting_session(&cl, db, on_disk);
            // the session lets compression read an index, outside a transaction block and
            // inside one
            r.batch_execute("SET timescaledb.enable_compression_indexscan = on").unwrap();
            if on_disk {
                r.batch_execute(&format!(
                    "BEGIN; SET LOCAL timescaledb.enable_compression_indexscan = on; {}",
                    rewrite_m()
                ))
                .unwrap();
                assert_eq!(
                    scalar::<String>(&mut r, "SHOW timescaledb.enable_compression_indexscan"),
                    "on"
                );
                r.batch_execute("COMMIT").unwrap();
            } else {
                r.batch_execute(&rewrite_m()).unwrap();
            }
            assert_eq!(
                scalar::<String>(&mut r, "SHOW timescaledb.enable_compression_indexscan"),
                "on"
            );
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
            assert_indexes_hold_every_row(&mut c);
        }
    }
}
