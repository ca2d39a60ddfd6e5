//! The statements that move a step's rows: each deletes them from staging and
//! inserts them into the destination in one statement, so a row is never lost nor
//! in both; and the RESTRICT probe that runs before.

use super::keys::{can_meet, keys_match, one_per_key, staged_key};
use super::route::{routed_rows, routed_where, time_buckets};
use super::{MoveSpec, RowFilter};
use crate::config::ConflictAction;
use crate::ident::{quote_ident, quote_list, QualifiedName};
use crate::timescale::TimeKind;

/// The statement that moves one step's rows: it deletes them from staging and inserts
/// them into the destination in one statement, so a row is never lost nor in both.
/// It returns three bigints: rows taken from staging, rows inserted, rows updated.
pub fn move_rows(spec: &MoveSpec, filter: &RowFilter) -> (String, Vec<String>) {
    let (cond, params) = filter.render("s", 1);
    (move_rows_where(spec, &cond), params)
}

/// Like `move_rows`, for the rows `base` takes that none of `exclude` takes.
pub fn move_rows_excluding(
    spec: &MoveSpec,
    base: &RowFilter,
    exclude: &[RowFilter],
) -> (String, Vec<String>) {
    let (cond, params) = excluding(base, exclude);
    (move_rows_where(spec, &cond), params)
}

/// The condition for the staging rows (alias `s`) `base` takes and none of `exclude`.
fn excluding(base: &RowFilter, exclude: &[RowFilter]) -> (String, Vec<String>) {
    let (mut cond, mut params) = base.render("s", 1);
    for f in exclude {
        let (c, p) = f.render("s", params.len() + 1);
        cond = format!("{cond} AND NOT ({c})");
        params.extend(p);
    }
    (cond, params)
}

/// The staging rows `base` takes that none of `exclude` takes, counted per block of
/// staging, in block order: `(block, rows)`. The rest is cut into slices from it.
pub fn rows_per_block(
    spec: &MoveSpec,
    base: &RowFilter,
    exclude: &[RowFilter],
) -> (String, Vec<String>) {
    let (cond, params) = excluding(base, exclude);
    (
        format!(
            "SELECT (s.ctid::text::point)[0]::int8 AS block, count(*)::int8 FROM {} AS s WHERE \
             {cond} GROUP BY 1 ORDER BY 1",
            spec.staging.quoted()
        ),
        params,
    )
}

fn move_rows_where(spec: &MoveSpec, cond: &str) -> String {
    let scols = quote_list(&spec.columns, Some("s"));
    let take = if spec.delete_from_staging {
        format!(
            "DELETE FROM {} AS s WHERE {cond} RETURNING {scols}, s.ctid AS backfill_src",
            spec.staging.quoted()
        )
    } else {
        format!(
            "SELECT {scols}, s.ctid AS backfill_src FROM {} AS s WHERE {cond}",
            spec.staging.quoted()
        )
    };
    let dest = spec.destination.quoted();
    let c = &spec.conflict;
    // inserted and updated rows: an updated row version has a transaction id in xmax
    let updated_expr = if spec.dest_partitioned { "true" } else { "(d.xmax::text <> '0')" };
    let (insert, upsert) = insert_clause(spec, updated_expr);
    let counts = if !upsert {
        "(SELECT count(*) FROM ins)::bigint, 0::bigint".to_string()
    } else if !spec.dest_partitioned {
        "(SELECT count(*) FILTER (WHERE NOT updated) FROM ins)::bigint, (SELECT count(*) FILTER \
         (WHERE updated) FROM ins)::bigint"
            .to_string()
    } else {
        let join = keys_match(c, "m", "e");
        let keys = quote_list(&c.target, Some("m"));
        let existing = format!(
            "(SELECT count(DISTINCT ROW({keys})) FROM moved AS m WHERE EXISTS \
            (SELECT 1 FROM {dest} AS e WHERE {join}))::bigint"
        );
        format!("(SELECT count(*) FROM ins)::bigint - {existing}, {existing}")
    };
    format!(
        "WITH moved AS ({take}), ins AS ({insert}) SELECT (SELECT count(*) FROM \
        moved)::bigint, {counts}"
    )
}

/// `INSERT INTO dest ... SELECT ... FROM moved [ON CONFLICT ...] RETURNING <updated> AS updated`,
/// and whether it is an upsert.
pub(super) fn insert_clause(spec: &MoveSpec, updated_expr: &str) -> (String, bool) {
    let cols = quote_list(&spec.columns, None);
    let c = &spec.conflict;
    let upsert =
        c.action == ConflictAction::Update && !c.target.is_empty() && !c.update_columns.is_empty();
    // one row per key: ON CONFLICT DO UPDATE cannot touch a row twice in one statement
    let source = if upsert {
        one_per_key(c, &cols, "moved", "backfill_src")
    } else {
        format!("SELECT {cols} FROM moved")
    };
    let on_conflict = match c.action {
        ConflictAction::Restrict => String::new(),
        _ if c.target.is_empty() => " ON CONFLICT DO NOTHING".to_string(),
        ConflictAction::Update if upsert => format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            quote_list(&c.target, None),
            c.update_columns
                .iter()
                .map(|u| format!("{q} = EXCLUDED.{q}", q = quote_ident(u)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!(" ON CONFLICT ({}) DO NOTHING", quote_list(&c.target, None)),
    };
    let updated = if upsert { updated_expr } else { "false" };
    (
        format!(
            "INSERT INTO {} AS d ({cols}) {source}{on_conflict} RETURNING {updated} AS updated",
            spec.destination.quoted()
        ),
        upsert,
    )
}

/// Like `move_rows`, for the rows routed to the chunks numbered `$1` (an int4[] as
/// text). Returns rows `(kind, key, a, b)`: `('moved', chunk number, rows taken, 0)`
/// and `('inserted', chunk oid, rows inserted, rows updated)`.
pub fn move_routed_rows(spec: &MoveSpec) -> String {
    let scols = quote_list(&spec.columns, Some("s"));
    let chunks = "r.idx = ANY ($1::int4[])";
    let take = format!(
        "DELETE FROM {} AS s WHERE {} RETURNING {scols}, s.ctid AS backfill_src",
        spec.staging.quoted(),
        routed_where(chunks)
    );
    let (insert, _) = insert_clause(spec, "(d.xmax::text <> '0')");
    format!(
        "WITH moved AS ({take}), ins AS ({insert}, d.tableoid::oid::int8 AS chunk_oid) \
         SELECT 'moved'::text, r.idx::int8, count(*)::int8, 0::int8 FROM moved AS m JOIN ({}) AS r \
         ON r.src = m.backfill_src GROUP BY r.idx \
         UNION ALL \
         SELECT 'inserted', chunk_oid, count(*) FILTER (WHERE NOT updated)::int8, count(*) FILTER \
         (WHERE updated)::int8 FROM ins GROUP BY chunk_oid",
        routed_rows(chunks)
    )
}

/// Like `move_routed_rows`, for the rows of several chunks told apart by time alone:
/// `$1`, `$2` are the chunks' lower and upper bounds as array text (sorted, not
/// overlapping), `$3` their chunk numbers (int4[] text). Each staging row is matched
/// to its chunk by one binary search, in one scan of staging.
pub fn move_bucketed_rows(spec: &MoveSpec, time_column: &str, kind: TimeKind) -> String {
    let (with, _) = time_buckets(&spec.staging, time_column, kind);
    let t = format!("s.{}", quote_ident(time_column));
    let scols = quote_list(&spec.columns, Some("s"));
    let b = format!("pg_catalog.width_bucket({t}, bounds.lo)");
    let (insert, _) = insert_clause(spec, "(d.xmax::text <> '0')");
    format!(
        "{with}, moved AS (DELETE FROM {} AS s USING bounds WHERE {b} > 0 AND {t} < bounds.hi[{b}] \
         RETURNING {scols}, s.ctid AS backfill_src, ($3::int4[])[{b}] AS backfill_idx), \
         ins AS ({insert}, d.tableoid::oid::int8 AS chunk_oid) \
         SELECT 'moved'::text, m.backfill_idx::int8, count(*)::int8, 0::int8 FROM moved AS m GROUP \
         BY m.backfill_idx \
         UNION ALL \
         SELECT 'inserted', chunk_oid, count(*) FILTER (WHERE NOT updated)::int8, count(*) FILTER \
         (WHERE updated)::int8 FROM ins GROUP BY chunk_oid",
        spec.staging.quoted()
    )
}

/// Like `move_routed_rows`, for several chunks' rows taken by their filters (numbered
/// by the chunks' numbers), in one scan of staging.
pub fn move_chunk_rows(spec: &MoveSpec, chunks: &[(i32, RowFilter)]) -> (String, Vec<String>) {
    let scols = quote_list(&spec.columns, Some("s"));
    let mut params = vec![];
    let (mut arms, mut any) = (vec![], vec![]);
    for (idx, f) in chunks {
        let (c, p) = f.render("s", params.len() + 1);
        params.extend(p);
        arms.push(format!("WHEN {c} THEN {idx}"));
        any.push(format!("({c})"));
    }
    let take = format!(
        "DELETE FROM {} AS s WHERE {} RETURNING {scols}, s.ctid AS backfill_src, CASE {} END AS \
         backfill_idx",
        spec.staging.quoted(),
        any.join(" OR "),
        arms.join(" ")
    );
    let (insert, _) = insert_clause(spec, "(d.xmax::text <> '0')");
    (
        format!(
            "WITH moved AS ({take}), ins AS ({insert}, d.tableoid::oid::int8 AS chunk_oid) \
             SELECT 'moved'::text, m.backfill_idx::int8, count(*)::int8, 0::int8 FROM moved AS m \
             GROUP BY m.backfill_idx \
             UNION ALL \
             SELECT 'inserted', chunk_oid, count(*) FILTER (WHERE NOT updated)::int8, count(*) \
             FILTER (WHERE updated)::int8 FROM ins GROUP BY chunk_oid"
        ),
        params,
    )
}

/// For RESTRICT: the first key among the step's staging rows that already exists in
/// `probed` (the step's chunk, where a key's rows can only be, or the destination) or
/// appears twice in staging, as `(col, ...)=(value, ...)` text; no row when there is
/// none. Probing the chunk alone locks no other chunk, which a worker may be
/// decompressing.
pub fn restrict_probe(
    spec: &MoveSpec,
    filter: &RowFilter,
    probed: &QualifiedName,
) -> (String, Vec<String>) {
    let (cond, params) = filter.render("s", 1);
    let t = &spec.conflict.target;
    let keys = quote_list(t, Some("s"));
    let join = keys_match(&spec.conflict, "s", "d");
    let (meet, grouped) = (can_meet(&spec.conflict, "s"), staged_key(&spec.conflict, "s"));
    let label =
        format!("({})", t.iter().map(|k| k.replace('\'', "''")).collect::<Vec<_>>().join(", "));
    let sql = format!(
        "SELECT '{label}=' || k FROM (\
         (SELECT ROW({keys})::text AS k FROM {st} AS s WHERE {cond} AND EXISTS (SELECT 1 FROM \
         {dest} AS d WHERE {join}) LIMIT 1) \
         UNION ALL \
         (SELECT min(ROW({keys})::text) FROM {st} AS s WHERE {cond} AND {meet} GROUP BY {grouped} \
         HAVING count(*) > 1 LIMIT 1)\
         ) probe LIMIT 1",
        st = spec.staging.quoted(),
        dest = probed.quoted(),
    );
    (sql, params)
}

#[cfg(test)]
mod tests {
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
        assert!(
            sql.contains("FROM moved ON CONFLICT (\"device_id\", \"time\") DO NOTHING"),
            "{sql}"
        );
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
}
