use super::*;
use crate::ident::QualifiedName;
use crate::sql::fixtures::*;
use crate::timescale::SpaceRange;

#[test]
fn move_do_nothing_with_target() {
    let (sql, p) = move_rows(
        &spec(ConflictAction::Nothing, &["device_id", "time"], &[], true),
        &day_filter(TimeKind::TimestampTz),
    );
    assert_eq!(p.len(), 2);
    assert!(
        sql.starts_with(
            "WITH moved AS (DELETE FROM \"public\".\"backfill_event_data\" AS \
        s WHERE s.\"time\" >= (SELECT $1::timestamptz) AND s.\"time\" < (SELECT \
        $2::timestamptz) RETURNING s.\"time\", s.\"device_id\", s.\"value\", s.ctid AS \
        backfill_src), "
        ),
        "{sql}"
    );
    assert!(
        sql.contains(
            "INSERT INTO \"public\".\"event_data\" AS d \
        (\"time\", \"device_id\", \"value\") SELECT \"time\", \"device_id\", \"value\" FROM \
        moved ON CONFLICT (\"device_id\", \"time\") DO NOTHING RETURNING"
        ),
        "{sql}"
    );
}

#[test]
fn move_do_nothing_without_unique_constraint() {
    let (sql, _) = move_rows(
        &spec(ConflictAction::Nothing, &[], &[], true),
        &day_filter(TimeKind::TimestampTz),
    );
    assert!(sql.contains("FROM moved ON CONFLICT DO NOTHING RETURNING"), "{sql}");
}

#[test]
fn move_update_dedups_and_sets_columns() {
    let (sql, _) = move_rows(
        &spec(ConflictAction::Update, &["device_id", "time"], &["value"], true),
        &day_filter(TimeKind::TimestampTz),
    );
    // one row per key, as the index compares keys (a key with a NULL is its own),
    // the last staging row of a key winning
    let one = "SELECT DISTINCT ON (\"device_id\", \"time\", CASE WHEN \"device_id\" IS NULL \
        OR \"time\" IS NULL THEN backfill_src END) \"time\", \"device_id\", \"value\" FROM \
        moved \
               ORDER BY \"device_id\", \"time\", CASE WHEN \"device_id\" IS NULL OR \"time\" \
               IS NULL THEN backfill_src END, backfill_src DESC";
    assert!(
        sql.contains(&format!(
            "{one} ON CONFLICT (\"device_id\", \"time\") DO UPDATE \
        SET \"value\" = EXCLUDED.\"value\" RETURNING"
        )),
        "{sql}"
    );
}

#[test]
fn move_update_with_nothing_to_update_is_do_nothing() {
    let (sql, _) = move_rows(
        &spec(ConflictAction::Update, &["device_id", "time"], &[], true),
        &day_filter(TimeKind::TimestampTz),
    );
    assert!(sql.contains("FROM moved ON CONFLICT (\"device_id\", \"time\") DO NOTHING"), "{sql}");
}

#[test]
fn move_counts_inserts_and_updates() {
    let (sql, _) = move_rows(
        &spec(ConflictAction::Nothing, &[], &[], true),
        &day_filter(TimeKind::TimestampTz),
    );
    assert!(
        sql.ends_with(
            "SELECT (SELECT count(*) FROM moved)::bigint, (SELECT count(*) FROM \
        ins)::bigint, 0::bigint"
        ),
        "{sql}"
    );
    let mut s = spec(ConflictAction::Update, &["device_id", "time"], &["value"], true);
    let (sql, _) = move_rows(&s, &day_filter(TimeKind::TimestampTz));
    assert!(sql.contains("RETURNING (d.xmax::text <> '0') AS updated"), "{sql}");
    s.dest_partitioned = true;
    let (sql, _) = move_rows(&s, &day_filter(TimeKind::TimestampTz));
    assert!(!sql.contains("xmax"), "{sql}");
    assert!(
        sql.contains(
            "count(DISTINCT ROW(m.\"device_id\", m.\"time\")) FROM moved AS m \
        WHERE EXISTS (SELECT 1 FROM \"public\".\"event_data\" AS e WHERE m.\"device_id\" = \
        e.\"device_id\" AND m.\"time\" = e.\"time\")"
        ),
        "{sql}"
    );
}

#[test]
fn move_restrict_has_no_on_conflict() {
    let (sql, _) = move_rows(
        &spec(ConflictAction::Restrict, &["device_id", "time"], &[], true),
        &day_filter(TimeKind::TimestampTz),
    );
    assert!(!sql.contains("ON CONFLICT"), "{sql}");
}

#[test]
fn move_keep_staging_selects() {
    let (sql, _) = move_rows(
        &spec(ConflictAction::Nothing, &[], &[], false),
        &day_filter(TimeKind::TimestampTz),
    );
    assert!(
        sql.starts_with(
            "WITH moved AS (SELECT s.\"time\", s.\"device_id\", s.\"value\", \
        s.ctid AS backfill_src FROM \"public\".\"backfill_event_data\" AS s WHERE"
        ),
        "{sql}"
    );
    assert!(!sql.contains("DELETE"));
}

#[test]
fn move_excluding_numbers_parameters_on() {
    let mut a = day_filter(TimeKind::TimestampTz);
    a.space = vec![SpaceRange { column: "d".into(), lo: Some(1), hi: None }];
    let b = day_filter(TimeKind::TimestampTz);
    let (sql, p) = move_rows_excluding(
        &spec(ConflictAction::Nothing, &[], &[], false),
        &RowFilter::everything("time", TimeKind::TimestampTz),
        &[a, b],
    );
    assert!(
        sql.contains(
            "WHERE true AND NOT (s.\"time\" >= (SELECT $1::timestamptz) AND \
        s.\"time\" < (SELECT $2::timestamptz) AND \
        _timescaledb_functions.get_partition_hash(s.\"d\") >= (SELECT $3::integer)) AND NOT \
        (s.\"time\" >= (SELECT $4::timestamptz) AND s.\"time\" < (SELECT \
        $5::timestamptz))"
        ),
        "{sql}"
    );
    assert_eq!(p.len(), 5);
}

#[test]
fn the_rest_is_counted_per_block_of_staging() {
    let s = spec(ConflictAction::Nothing, &[], &[], false);
    let (sql, p) = rows_per_block(
        &s,
        &RowFilter::everything("time", TimeKind::TimestampTz),
        &[day_filter(TimeKind::TimestampTz)],
    );
    assert_eq!(
        sql,
        "SELECT (s.ctid::text::point)[0]::int8 AS block, count(*)::int8 \
         FROM \"public\".\"backfill_event_data\" AS s \
         WHERE true AND NOT (s.\"time\" >= (SELECT $1::timestamptz) AND s.\"time\" < (SELECT \
         $2::timestamptz)) GROUP BY 1 ORDER BY 1"
    );
    assert_eq!(p.len(), 2);
    // a slice's move takes its blocks only
    let (sql, p) = move_rows(
        &spec(ConflictAction::Nothing, &[], &[], true),
        &RowFilter::everything("time", TimeKind::TimestampTz).in_blocks((Some(3), None)),
    );
    assert!(
        sql.contains(
            "DELETE FROM \"public\".\"backfill_event_data\" AS s WHERE s.ctid >= \
        (SELECT $1::tid) RETURNING"
        ),
        "{sql}"
    );
    assert_eq!(p, ["(3,0)"]);
}

#[test]
fn hostile_names_stay_quoted() {
    let mut s = spec(ConflictAction::Nothing, &["k\"; DROP TABLE x; --"], &[], true);
    s.staging = QualifiedName::new("we\"ird", "x; DROP TABLE y");
    let (sql, _) = move_rows(&s, &day_filter(TimeKind::TimestampTz));
    assert!(sql.contains("DELETE FROM \"we\"\"ird\".\"x; DROP TABLE y\" AS s"), "{sql}");
    assert!(sql.contains("ON CONFLICT (\"k\"\"; DROP TABLE x; --\")"), "{sql}");
}

#[test]
fn restrict_probe_text() {
    let (sql, p) = restrict_probe(
        &spec(ConflictAction::Restrict, &["device_id", "time"], &[], true),
        &day_filter(TimeKind::TimestampTz),
        &QualifiedName::new("public", "event_data"),
    );
    assert_eq!(p.len(), 2);
    assert!(
        sql.starts_with(
            "SELECT '(device_id, time)=' || k FROM ((SELECT \
        ROW(s.\"device_id\", s.\"time\")::text AS k FROM \"public\".\"backfill_event_data\" AS \
        s WHERE"
        ),
        "{sql}"
    );
    assert!(
        sql.contains(
            "EXISTS (SELECT 1 FROM \"public\".\"event_data\" AS d WHERE \
        s.\"device_id\" = d.\"device_id\" AND s.\"time\" = d.\"time\")"
        ),
        "{sql}"
    );
    // a key holding a NULL is no duplicate
    assert!(
        sql.contains(
            "(SELECT min(ROW(s.\"device_id\", s.\"time\")::text) \
        FROM \"public\".\"backfill_event_data\" AS s WHERE"
        ),
        "{sql}"
    );
    assert!(
        sql.contains(
            "AND s.\"device_id\" IS NOT NULL AND s.\"time\" IS NOT NULL GROUP BY \
        s.\"device_id\", s.\"time\" HAVING count(*) > 1"
        ),
        "{sql}"
    );
    // the probe reads the relation it is given (a step's chunk)
    let (sql, _) = restrict_probe(
        &spec(ConflictAction::Restrict, &["device_id", "time"], &[], true),
        &day_filter(TimeKind::TimestampTz),
        &QualifiedName::new("_ti", "c1"),
    );
    assert!(sql.contains("EXISTS (SELECT 1 FROM \"_ti\".\"c1\" AS d WHERE"), "{sql}");
    // a quote in a column name cannot end the label literal
    let (sql, _) = restrict_probe(
        &spec(ConflictAction::Restrict, &["o'k"], &[], true),
        &day_filter(TimeKind::TimestampTz),
        &QualifiedName::new("_ti", "c1"),
    );
    assert!(sql.starts_with("SELECT '(o''k)=' || k"), "{sql}");
}

#[test]
fn rows_compressed_directly_go_in_by_segment_then_order_columns() {
    let copied: Vec<String> = ["time", "device_id", "value"].map(String::from).to_vec();
    let order = [
        ("device_id".to_string(), None),
        ("time".to_string(), Some((false, true))),
        ("note".to_string(), Some((true, false))),
    ];
    // a column the step does not copy cannot order it, and then TimescaleDB sorts again
    let none = |_: &str| None;
    let o = compression_order_by(&order, &copied, &none).unwrap();
    let by = o.by.clone();
    assert_eq!((by.as_str(), o.complete), ("\"device_id\", \"time\" DESC NULLS FIRST", false));
    assert_eq!(compression_order_by(&order[2..], &copied, &none), None);
    // text compares by the destination column's collation, whatever staging's is
    let c = |col: &str| (col == "device_id").then(|| "pg_catalog.\"C\"".to_string());
    let o = compression_order_by(&order[..2], &copied, &c).unwrap();
    assert_eq!(o.by, "\"device_id\" COLLATE pg_catalog.\"C\", \"time\" DESC NULLS FIRST");
    assert!(o.complete);
    let sql = compress_rows(&spec(ConflictAction::Nothing, &[], &[], true), "s.x = $1", &by);
    assert_eq!(
        sql,
        "WITH moved AS (DELETE FROM \"public\".\"backfill_event_data\" AS s WHERE s.x = $1 \
         RETURNING s.\"time\", s.\"device_id\", s.\"value\", s.ctid AS backfill_src) \
         INSERT INTO \"public\".\"event_data\" (\"time\", \"device_id\", \"value\") \
         SELECT \"time\", \"device_id\", \"value\" FROM moved, \
         pg_catalog.json_array_elements('[0]') AS one(backfill_one) \
         ORDER BY \"device_id\", \"time\" DESC NULLS FIRST"
    );
    // rows kept in staging are read, not deleted
    let kept = compress_rows(&spec(ConflictAction::Nothing, &[], &[], false), "true", &by);
    assert!(kept.starts_with("WITH moved AS (SELECT s.\"time\""), "{kept}");
}

#[test]
fn the_whole_staging_table_moves_sorted_between_a_lock_and_a_truncate() {
    let s = spec(ConflictAction::Nothing, &[], &[], true);
    assert_eq!(
        insert_all_sorted(&s, "\"device_id\", \"time\" ASC NULLS LAST"),
        "INSERT INTO \"public\".\"event_data\" (\"time\", \"device_id\", \"value\") SELECT \
         \"time\", \"device_id\", \"value\" FROM ONLY \"public\".\"backfill_event_data\" ORDER BY \
         \"device_id\", \"time\" ASC NULLS LAST"
    );
    assert_eq!(
        lock_staging(&s),
        "LOCK TABLE ONLY \"public\".\"backfill_event_data\" IN EXCLUSIVE MODE NOWAIT"
    );
    assert_eq!(truncate_staging(&s), "TRUNCATE ONLY \"public\".\"backfill_event_data\"");
}
