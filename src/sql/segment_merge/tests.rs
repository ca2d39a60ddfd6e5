use super::*;
use crate::config::ConflictAction;
use crate::sql::fixtures::*;
use crate::sql::route::routed_to_chunk;

/// An upsert of `value` on (device_id, time), segmented by device_id; staging lacks
/// the destination's column `note`.
fn upsert_with_a_column_staging_lacks() -> (MoveSpec, MergeSpec) {
    let mut s = spec(ConflictAction::Update, &["device_id", "time"], &["value"], true);
    s.columns = vec!["time".into(), "device_id".into(), "value".into()];
    let m = MergeSpec {
        dest_columns: vec!["time".into(), "device_id".into(), "value".into(), "note".into()],
        segment: "device_id".into(),
        segment_type: "integer".into(),
        segment_collation: None,
    };
    (s, m)
}

#[test]
fn merge_old_reads_new_keys_with_the_chunks_rows_where_staging_has_every_column() {
    let (mut s, m) = upsert_with_a_column_staging_lacks();
    let chunk = QualifiedName::new("_ti", "c1");
    assert!(
        merge_sql(&s, &m, &chunk, "true").read_all.is_none(),
        "staging lacks a column: new keys are inserted after the write"
    );
    s.columns.push("note".into());
    // the full join of a rewrite in memory, its new keys flagged false and counted apart
    let all = merge_sql(&s, &m, &chunk, "true").read_all.unwrap();
    assert!(
        all.starts_with(
            "WITH w AS (INSERT INTO pg_temp._backfill_old \
        (\"time\", \"device_id\", \"value\", \"note\", \"backfill_ext_untouched\") \
        SELECT "
        ),
        "{all}"
    );
    assert!(
        all.contains("CASE WHEN o.\"backfill_old\" IS NULL THEN n.\"time\" ELSE o.\"time\" END"),
        "{all}"
    );
    assert!(
        all.contains(
            "CASE WHEN n.ctid IS NULL THEN true WHEN o.\"backfill_old\" IS NULL \
        THEN false END FROM (SELECT c.*, true AS \"backfill_old\" FROM \"_ti\".\"c1\" AS c) AS \
        o FULL JOIN pg_temp._backfill_new AS n ON n.\"device_id\" = o.\"device_id\" AND \
        n.\"time\" = o.\"time\" RETURNING"
        ),
        "{all}"
    );
    assert!(
        all.ends_with(
            "SELECT count(*)::int8, count(*) FILTER \
        (WHERE \"backfill_ext_untouched\" IS NULL)::int8, count(*) FILTER (WHERE \
        NOT \"backfill_ext_untouched\")::int8 FROM w"
        ),
        "{all}"
    );
    assert!(!all.contains("$1"), "a rewrite reads every segment: {all}");
}

#[test]
fn the_flag_and_marker_columns_never_take_a_destination_columns_name() {
    let mut s = spec(ConflictAction::Update, &["device_id", "time"], &["value"], true);
    let names = ["backfill_ext_untouched", "backfill_old"];
    let m = MergeSpec {
        dest_columns: ["time", "device_id", "value"]
            .iter()
            .chain(names.iter())
            .map(|c| c.to_string())
            .collect(),
        segment: "device_id".into(),
        segment_type: "integer".into(),
        segment_collation: None,
    };
    s.columns = m.dest_columns.clone();
    let q = merge_sql(&s, &m, &QualifiedName::new("_ti", "c1"), "true");
    assert!(q.create[1].contains("\"backfill_ext_untouched_\" boolean"), "{}", q.create[1]);
    assert!(q.read_merged.contains("true AS \"backfill_old_\" FROM"), "{}", q.read_merged);
    assert!(
        q.read_merged.contains(
            "WHEN o.\"backfill_old_\" IS NULL THEN n.\"backfill_old\" \
        ELSE o.\"backfill_old\" END"
        ),
        "{}",
        q.read_merged
    );
    assert!(q.read_all.unwrap().contains("WHEN o.\"backfill_old_\" IS NULL THEN false END"));
}

#[test]
fn merge_statements() {
    let (s, m) = upsert_with_a_column_staging_lacks();
    let q = merge_sql(&s, &m, &QualifiedName::new("_ti", "c1"), &routed_to_chunk());
    assert!(
        q.take.contains(
            "WHERE s.ctid = ANY (ARRAY(SELECT u.src FROM \
        pg_temp._backfill_rows AS r, pg_catalog.unnest(r.tids) AS u(src) WHERE r.idx = \
        $1::int4)) RETURNING"
        ),
        "{}",
        q.take
    );
    assert!(
        q.take.contains(
            "RETURNING s.\"time\", s.\"device_id\", s.\"value\", s.ctid AS backfill_src), "
        ),
        "{}",
        q.take
    );
    assert!(
        q.take.contains(
            "INSERT INTO pg_temp._backfill_new \
        (\"time\", \"device_id\", \"value\") SELECT DISTINCT ON (\"device_id\", \"time\", CASE \
        WHEN"
        ),
        "{}",
        q.take
    );
    assert!(q.take.contains("backfill_src DESC RETURNING 1"), "{}", q.take);
    assert_eq!(
        q.read_old,
        "WITH w AS (INSERT INTO pg_temp._backfill_old \
         (\"time\", \"device_id\", \"value\", \"note\", \"backfill_ext_untouched\") SELECT \
         o.\"time\", o.\"device_id\", \
         CASE WHEN n.ctid IS NULL THEN o.\"value\" ELSE n.\"value\" END, o.\"note\", CASE WHEN \
         n.ctid IS NULL THEN true END FROM \"_ti\".\"c1\" AS o \
         LEFT JOIN pg_temp._backfill_new AS n ON n.\"device_id\" = o.\"device_id\" AND \
         n.\"time\" = o.\"time\" \
         WHERE o.\"device_id\" = ANY ($1::text::integer[]) \
         RETURNING \"backfill_ext_untouched\") \
         SELECT count(*)::int8, count(*) FILTER (WHERE \"backfill_ext_untouched\" IS \
         NULL)::int8, 0::int8 FROM w"
    );
    assert_eq!(
        q.create[1],
        "CREATE TEMP TABLE _backfill_old \
        (LIKE \"public\".\"event_data\", \"backfill_ext_untouched\" boolean)"
    );
    assert_eq!(
        q.untouched,
        "SELECT EXISTS (SELECT 1 FROM \"_ti\".\"c1\" AS c WHERE \
        c.\"device_id\" <> ALL (pg_catalog.array_remove($1::text::integer[], NULL)) OR \
        c.\"device_id\" IS NULL)"
    );
}

#[test]
fn a_merge_measures_its_new_rows_by_their_pages() {
    let (s, m) = upsert_with_a_column_staging_lacks();
    let q = merge_sql(&s, &m, &QualifiedName::new("_ti", "c1"), &routed_to_chunk());
    // MERGE_NEW's pages whether it is one table (no partition tree) or split into parts
    assert!(
        q.fits_in_memory.contains(
            "coalesce((SELECT \
        sum(pg_catalog.pg_relation_size(t.relid)) FROM \
        pg_catalog.pg_partition_tree('pg_temp._backfill_new') AS t), \
        pg_catalog.pg_relation_size('pg_temp._backfill_new'))"
        ),
        "{}",
        q.fits_in_memory
    );
    assert_eq!(q.truncate_chunk, "TRUNCATE \"_ti\".\"c1\"");
    assert_eq!(q.reindex_chunk, "REINDEX TABLE \"_ti\".\"c1\"");
    assert!(
        CHECKING_INDEXES
            .contains("WHERE i.indrelid = $1::regclass AND (i.indisunique OR i.indisexclusion)"),
        "{CHECKING_INDEXES}"
    );
    assert_eq!(
        reindex_index(&QualifiedName::new("_ti", "c1_pkey \"x")),
        "REINDEX INDEX \"_ti\".\"c1_pkey \"\"x\""
    );
    // staging lacks "note": new keys are inserted after the rewrite (so "note" gets its
    // default)
    assert_eq!(
        q.read_merged,
        "SELECT pg_catalog.array_agg(ROW(o.\"time\", o.\"device_id\", CASE WHEN n.ctid IS NULL \
         THEN o.\"value\" ELSE n.\"value\" END, o.\"note\")::\"public\".\"event_data\"), \
         count(*) FILTER (WHERE n.ctid IS NOT NULL)::int8, 0::int8 FROM \"_ti\".\"c1\" AS o \
         LEFT JOIN pg_temp._backfill_new AS n ON n.\"device_id\" = o.\"device_id\" AND \
         n.\"time\" = o.\"time\""
    );
}

#[test]
fn where_staging_has_every_column_one_full_join_reads_the_chunk() {
    let (s, m) = upsert_with_a_column_staging_lacks();
    let q = merge_sql(&s, &m, &QualifiedName::new("_ti", "c1"), &routed_to_chunk());
    // staging has every column: one full join
    let mut s2 = s.clone();
    s2.columns.push("note".into());
    let full = merge_sql(&s2, &m, &QualifiedName::new("_ti", "c1"), "true").read_merged;
    assert!(
        full.contains("CASE WHEN o.\"backfill_old\" IS NULL THEN n.\"time\" ELSE o.\"time\" END"),
        "{full}"
    );
    assert!(
        full.contains("CASE WHEN n.ctid IS NULL THEN o.\"value\" ELSE n.\"value\" END"),
        "{full}"
    );
    assert!(
        full.contains(
            "FROM (SELECT c.*, true AS \"backfill_old\" FROM \"_ti\".\"c1\" AS \
        c) AS o FULL JOIN pg_temp._backfill_new AS n"
        ),
        "{full}"
    );
    assert!(full.contains("count(*) FILTER (WHERE o.\"backfill_old\" IS NULL)::int8"), "{full}");
    assert_eq!(
        q.write_merged,
        "INSERT INTO \"_ti\".\"c1\" (\"time\", \"device_id\", \"value\", \"note\") SELECT \
         x.\"time\", x.\"device_id\", x.\"value\", x.\"note\" FROM \
         pg_catalog.unnest($1::\"public\".\"event_data\"[]) AS x"
    );
    assert!(
        q.insert_new_after_rewrite.contains(
            "NOT EXISTS (SELECT 1 FROM \"_ti\".\"c1\" AS o \
        WHERE n.\"device_id\" = o.\"device_id\" AND n.\"time\" = \
        o.\"time\")"
        ),
        "{}",
        q.insert_new_after_rewrite
    );
    assert!(
        q.fits_in_memory.starts_with(
            "SELECT n * w * 3 <= \
        pg_catalog.pg_size_bytes(pg_catalog.current_setting('maintenance_work_mem')) AND n * w \
        * 2 < 1073741824 "
        ),
        "{}",
        q.fits_in_memory
    );
    assert!(
        q.fits_in_memory.contains("(SELECT count(*) FROM \"_ti\".\"c1\")::numeric AS n"),
        "{}",
        q.fits_in_memory
    );
}

#[test]
fn rows_are_sized_from_the_chunks_rows_too() {
    let (s, m) = upsert_with_a_column_staging_lacks();
    let q = merge_sql(&s, &m, &QualifiedName::new("_ti", "c1"), &routed_to_chunk());
    // rows are sized from the chunk's own rows too, not from staging's alone
    assert!(
        q.fits_in_memory.contains(
            "(SELECT coalesce(avg(pg_catalog.pg_column_size(c.*)), \
        0) FROM (SELECT * FROM \"_ti\".\"c1\" LIMIT 1000) AS c)"
        ),
        "{}",
        q.fits_in_memory
    );
    assert_eq!(
        q.delete_segments,
        "DELETE FROM \"_ti\".\"c1\" AS c WHERE c.\"device_id\" = ANY ($1::text::integer[])"
    );
    assert!(
        q.write_old.starts_with(
            "INSERT INTO \"_ti\".\"c1\" (\"time\", \"device_id\", \"value\", \"note\") SELECT"
        ),
        "{}",
        q.write_old
    );
    assert!(
        q.insert_new.contains(
            "NOT EXISTS (SELECT 1 FROM pg_temp._backfill_old AS o WHERE \
        n.\"device_id\" = o.\"device_id\" AND n.\"time\" = o.\"time\"))"
        ),
        "{}",
        q.insert_new
    );
    assert!(
        q.insert_new.contains(
            "ON CONFLICT (\"device_id\", \"time\") DO UPDATE \
        SET \"value\" = EXCLUDED.\"value\""
        ),
        "{}",
        q.insert_new
    );
}
