//! Counting the staging rows of each chunk and routing them to their chunks (one
//! scan of staging), and the counts a strategy is chosen from.

use super::RowFilter;
use crate::ident::{quote_ident, QualifiedName};
use crate::timescale::{Chunk, TimeKind};

/// The temporary table a run routes staging rows through: rows of a chunk number and
/// an array of its staging rows' ctids (`route_slices`), written from one scan of the
/// staging table.
pub const ROUTE_TABLE: &str = "pg_temp._backfill_rows";

/// The chunks' lower and upper bounds as two array texts (the `$1`, `$2` of
/// `route_by_time`, `count_by_time`, `count_in_chunks` and `moves::move_bucketed_rows`).
pub fn bounds<'a>(chunks: impl Iterator<Item = &'a Chunk> + Clone) -> Vec<String> {
    let lows: Vec<String> = chunks.clone().map(|c| c.lo.clone().unwrap_or_default()).collect();
    let highs: Vec<String> = chunks.map(|c| c.hi.clone().unwrap_or_default()).collect();
    vec![super::array_literal(&lows), super::array_literal(&highs)]
}

/// Writes one row of the route table: `$1` a chunk number, `$2` a tid[].
pub const WRITE_ROUTE: &str = "INSERT INTO pg_temp._backfill_rows (idx, tids) VALUES ($1, $2)";

/// The route table's rows (chunk number, row ids) of chunk numbers `$1` (an int4[]).
pub const ROUTE_OF_CHUNKS: &str =
    "SELECT r.idx, r.tids FROM pg_temp._backfill_rows AS r WHERE r.idx = ANY ($1::int4[])";

/// The routed ctids (`u.src`) of the chunks `cond` takes (on `r.idx`).
fn routed_from(cond: &str) -> String {
    format!("FROM {ROUTE_TABLE} AS r, pg_catalog.unnest(r.tids) AS u(src) WHERE {cond}")
}

/// The condition that takes the staging rows (`s`) routed to the chunks `cond` takes:
/// a TID scan, only the routed rows are visited, never the whole staging table.
pub fn routed_where(cond: &str) -> String {
    format!("s.ctid = ANY (ARRAY(SELECT u.src {}))", routed_from(cond))
}

/// The routed ctids and their chunk numbers (`idx`, `src`) of the chunks `cond` takes.
pub fn routed_rows(cond: &str) -> String {
    format!("SELECT r.idx, u.src {}", routed_from(cond))
}

/// The condition that takes the staging rows routed to chunk number `$1`.
pub fn routed_to_chunk() -> String {
    routed_where("r.idx = $1::int4")
}

/// `$1` or `$2`, the chunks' lower or upper bounds as array text (see `bounds`), as an
/// array of the time column's type.
fn typed_bounds(kind: TimeKind, param: usize) -> String {
    match kind {
        TimeKind::TimestampTz => format!("${param}::timestamptz[]"),
        TimeKind::Timestamp | TimeKind::Date => format!(
            "ARRAY(SELECT b.v AT TIME ZONE 'UTC' FROM pg_catalog.unnest(${param}::timestamptz[]) \
             WITH ORDINALITY AS b(v, o) ORDER BY b.o)"
        ),
        TimeKind::Integer => format!("${param}::int8[]"),
    }
}

/// The bounds of `move_bucketed_rows` as a CTE `bounds` (`lo`, `hi`), cast once.
pub(super) fn bounds_cte(kind: TimeKind) -> String {
    format!(
        "WITH bounds AS MATERIALIZED (SELECT {} AS lo, {} AS hi)",
        typed_bounds(kind, 1),
        typed_bounds(kind, 2)
    )
}

/// The lower and upper bounds of the reading queries below, each an uncorrelated
/// subquery: cast once (an initplan), not once per staging row, and, unlike a CTE,
/// they let the scan of staging run in parallel. The bounds are sorted and do not
/// overlap (no space dimension); each row gets the number of the chunk it falls in by
/// binary search (`width_bucket` on the lower bounds).
fn bound_subqueries(kind: TimeKind) -> (String, String) {
    (format!("(SELECT {})", typed_bounds(kind, 1)), format!("(SELECT {})", typed_bounds(kind, 2)))
}

/// Each staging row's chunk number and ctid (`idx`, `src`), in one scan of staging (see
/// `bound_subqueries`): what the route table is written from.
pub fn route_by_time(staging: &QualifiedName, time_column: &str, kind: TimeKind) -> String {
    let (lo, hi) = bound_subqueries(kind);
    let t = format!("s.{}", quote_ident(time_column));
    // read through a cursor, which never runs in parallel: the bucket is computed once a
    // row (OFFSET 0 keeps the subquery from being flattened into three computations)
    format!(
        "SELECT x.b, x.src FROM (SELECT pg_catalog.width_bucket({t}, {lo}) AS b, {t} AS t, \
         s.ctid AS src FROM {} AS s OFFSET 0) AS x WHERE x.b > 0 AND x.t < {hi}[x.b]",
        staging.quoted()
    )
}

/// Counts the staging rows of each chunk in one scan (see `bound_subqueries`): rows of
/// (chunk number, rows).
pub fn count_by_time(staging: &QualifiedName, time_column: &str, kind: TimeKind) -> String {
    let (lo, hi) = bound_subqueries(kind);
    let t = format!("s.{}", quote_ident(time_column));
    // the bucket is computed more than once a row here (the subquery is flattened), but
    // the scan may run in parallel, which the routing form's OFFSET 0 rules out: 205 ms
    // against 274 ms for 2.16 million rows
    format!(
        "SELECT x.b, count(*) FILTER (WHERE x.t < {hi}[x.b])::int8 FROM (SELECT \
         pg_catalog.width_bucket({t}, {lo}) AS b, {t} AS t FROM {} AS s) AS x WHERE x.b > 0 \
         GROUP BY x.b",
        staging.quoted()
    )
}

/// The staging rows grouped by the chunk their time falls in (see `bound_subqueries`),
/// in one scan: rows of (chunk number, rows, whether every one of them is inside the
/// chunk's range). Rows before the first chunk have number 0, rows with no time NULL;
/// neither is inside.
pub fn count_in_chunks(staging: &QualifiedName, time_column: &str, kind: TimeKind) -> String {
    let (lo, hi) = bound_subqueries(kind);
    let t = format!("s.{}", quote_ident(time_column));
    format!(
        "SELECT x.b, x.n, COALESCE(x.b > 0 AND x.top < {hi}[x.b], false) FROM (SELECT \
         pg_catalog.width_bucket({t}, {lo}) AS b, count(*)::int8 AS n, max({t}) AS top FROM {} \
         AS s GROUP BY 1) AS x",
        staging.quoted()
    )
}

/// Each staging row's chunk number, testing each chunk's filter in turn
/// (space-partitioned hypertables, where chunks share time ranges).
fn filter_buckets(staging: &QualifiedName, filters: &[RowFilter]) -> (String, Vec<String>) {
    let mut params = vec![];
    let mut arms = vec![];
    for (i, f) in filters.iter().enumerate() {
        let (c, p) = f.render("s", params.len() + 1);
        params.extend(p);
        arms.push(format!("WHEN {c} THEN {}", i + 1));
    }
    (
        format!(
            "SELECT s.ctid AS src, CASE {} END AS idx FROM {} AS s",
            arms.join(" "),
            staging.quoted()
        ),
        params,
    )
}

/// Like `route_by_time`, testing each chunk's filter in turn.
pub fn route_by_filters(staging: &QualifiedName, filters: &[RowFilter]) -> (String, Vec<String>) {
    let (rows, params) = filter_buckets(staging, filters);
    (format!("SELECT idx, src FROM ({rows}) AS x WHERE idx IS NOT NULL"), params)
}

/// Counts the staging rows of each chunk, testing each chunk's filter in turn.
pub fn count_by_filters(staging: &QualifiedName, filters: &[RowFilter]) -> (String, Vec<String>) {
    let (rows, params) = filter_buckets(staging, filters);
    (
        format!("SELECT idx, count(*)::int8 FROM ({rows}) AS x WHERE idx IS NOT NULL GROUP BY idx"),
        params,
    )
}

/// A staging row's (`s`) segment is a chunk row's (`c`): each segmentby column (name,
/// and the destination's collation where it has one) compared by the destination's
/// collation, whatever staging's is.
pub(crate) fn same_segment(segmentby: &[(String, Option<String>)]) -> String {
    segmentby
        .iter()
        .map(|(c, coll)| {
            let collate = coll.as_ref().map(|x| format!(" COLLATE {x}")).unwrap_or_default();
            format!("c.{q} = s.{q}{collate}", q = quote_ident(c))
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// How the staging rows meeting a chunk's segments are counted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Meeting {
    /// Exactly, up to the last parameter (the count that settles the choice): returns
    /// (rows meeting, NULL).
    UpTo,
    /// Among the first rows only, as many as the last parameter: returns (rows
    /// meeting, rows looked at), for the plan to scale (`plan::scaled_meeting`).
    Sampled,
}

/// Counts the routed rows of chunk `$1` whose segment (segmentby values) already has
/// batches in `chunk` (see `Meeting`; its limit is `$2`).
pub fn count_routed_meeting_segments(
    staging: &QualifiedName,
    chunk: &QualifiedName,
    segmentby: &[(String, Option<String>)],
    how: Meeting,
) -> String {
    // a sample takes its first routed ids, not the chunk's every id
    let cond = match how {
        Meeting::UpTo => routed_to_chunk(),
        Meeting::Sampled => routed_where("r.idx = $1::int4 LIMIT $2::int8"),
    };
    meeting_sql(staging, &cond, chunk, segmentby, how, 2)
}

/// Counts the staging rows a filter takes whose segment (segmentby values) already has
/// compressed batches in `chunk` (see `Meeting`; its limit is the last parameter).
pub fn count_rows_meeting_segments(
    staging: &QualifiedName,
    filter: &RowFilter,
    chunk: &QualifiedName,
    segmentby: &[(String, Option<String>)],
    how: Meeting,
) -> (String, Vec<String>) {
    let (cond, params) = filter.render("s", 1);
    let q = meeting_sql(staging, &cond, chunk, segmentby, how, params.len() + 1);
    (q, params)
}

fn meeting_sql(
    staging: &QualifiedName,
    cond: &str,
    chunk: &QualifiedName,
    segmentby: &[(String, Option<String>)],
    how: Meeting,
    limit: usize,
) -> String {
    let meets =
        format!("EXISTS (SELECT 1 FROM {} AS c WHERE {})", chunk.quoted(), same_segment(segmentby));
    let st = staging.quoted();
    match how {
        Meeting::UpTo => format!(
            "SELECT count(*)::int8, NULL::int8 FROM (SELECT 1 FROM {st} AS s WHERE {cond} AND \
             {meets} LIMIT ${limit}::int8) AS m"
        ),
        Meeting::Sampled => format!(
            "SELECT (count(*) FILTER (WHERE {meets}))::int8, count(*)::int8 FROM (SELECT s.* \
             FROM {st} AS s WHERE {cond} LIMIT ${limit}::int8) AS s"
        ),
    }
}

/// The staging table's time span and its rows with a NULL time, as text.
pub fn staging_span(staging: &QualifiedName, time_column: &str) -> String {
    let t = format!("s.{}", quote_ident(time_column));
    format!(
        "SELECT min({t})::text, max({t})::text, count(*)::bigint, (count(*) - count({t}))::bigint \
         FROM {} AS s",
        staging.quoted()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConflictAction;
    use crate::sql::array_literal;
    use crate::sql::checks::params;
    use crate::sql::fixtures::*;
    use crate::sql::moves::*;

    #[test]
    fn routed_moves() {
        let update = spec(ConflictAction::Update, &["device_id", "time"], &["value"], true);
        let sql = move_routed_rows(&update, false);
        assert!(
            sql.starts_with(
                "WITH moved AS (DELETE FROM \"public\".\"backfill_event_data\" AS \
            s WHERE s.ctid = ANY (ARRAY(SELECT u.src FROM pg_temp._backfill_rows AS r, \
            pg_catalog.unnest(r.tids) AS u(src) WHERE r.idx = ANY ($1::int4[]))) RETURNING \
            s.\"time\", s.\"device_id\", s.\"value\", s.ctid AS backfill_src)"
            ),
            "{sql}"
        );
        assert!(
            sql.contains(
                "ON CONFLICT (\"device_id\", \"time\") DO UPDATE SET \"value\" = \
            EXCLUDED.\"value\" RETURNING (d.xmax::text <> '0') AS updated, d.tableoid::oid::int8 \
            AS chunk_oid"
            ),
            "{sql}"
        );
        assert!(
            sql.contains(
                "JOIN (SELECT r.idx, u.src FROM pg_temp._backfill_rows AS r, \
            pg_catalog.unnest(r.tids) AS u(src) WHERE r.idx = ANY ($1::int4[])) AS r ON r.src = \
            m.backfill_src GROUP BY r.idx"
            ) && sql.contains("GROUP BY chunk_oid"),
            "{sql}"
        );
        let sql = move_routed_rows(&spec(ConflictAction::Nothing, &[], &[], true), false);
        assert!(sql.contains("ON CONFLICT DO NOTHING RETURNING false AS updated"), "{sql}");
        // one chunk's rows are counted as they are, without the route table
        let one = move_routed_rows(&update, true);
        assert_eq!(one.matches("pg_temp._backfill_rows").count(), 1, "{one}");
        assert!(
            one.contains(
                "SELECT 'moved'::text, ($1::int4[])[1]::int8, count(*)::int8, 0::int8 FROM moved \
                 UNION ALL SELECT 'inserted'"
            ),
            "{one}"
        );
    }

    #[test]
    fn routing_by_time_finds_each_rows_chunk_by_binary_search() {
        let r = route_by_time(&QualifiedName::new("public", "st"), "time", TimeKind::TimestampTz);
        assert_eq!(
            r,
            "SELECT x.b, x.src FROM (SELECT pg_catalog.width_bucket(s.\"time\", (SELECT \
             $1::timestamptz[])) AS b, s.\"time\" AS t, s.ctid AS src FROM \"public\".\"st\" AS \
             s OFFSET 0) AS x WHERE x.b > 0 AND x.t < (SELECT $2::timestamptz[])[x.b]"
        );
        // no CTE: a CTE scan would keep the scan of staging from running in parallel
        assert!(!r.contains("WITH"), "{r}");
        let r = route_by_time(&QualifiedName::new("public", "st"), "t", TimeKind::Date);
        assert!(
            r.contains(
                "(SELECT ARRAY(SELECT b.v AT TIME ZONE 'UTC' FROM \
            pg_catalog.unnest($1::timestamptz[]) WITH ORDINALITY AS b(v, o) ORDER BY b.o))"
            ),
            "{r}"
        );
        let with = bounds_cte(TimeKind::Integer);
        assert_eq!(with, "WITH bounds AS MATERIALIZED (SELECT $1::int8[] AS lo, $2::int8[] AS hi)");
    }

    #[test]
    fn routing_by_filters_tests_each_chunks_filter() {
        let (r, p) = route_by_filters(
            &QualifiedName::new("public", "st"),
            &[day_filter(TimeKind::Integer), day_filter(TimeKind::Integer)],
        );
        assert!(
            r.contains(
                "CASE WHEN s.\"time\" >= (SELECT $1::bigint) AND s.\"time\" < (SELECT \
            $2::bigint) THEN 1 WHEN s.\"time\" >= (SELECT $3::bigint) AND s.\"time\" < (SELECT \
            $4::bigint) THEN 2 END"
            ),
            "{r}"
        );
        assert!(
            r.starts_with("SELECT idx, src FROM (SELECT s.ctid AS src, CASE WHEN")
                && r.ends_with("WHERE idx IS NOT NULL"),
            "{r}"
        );
        assert_eq!(WRITE_ROUTE, "INSERT INTO pg_temp._backfill_rows (idx, tids) VALUES ($1, $2)");
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn counting_in_chunks_groups_by_chunk_number_and_checks_the_upper_bound() {
        let c = count_in_chunks(&QualifiedName::new("public", "st"), "time", TimeKind::TimestampTz);
        assert_eq!(
            c,
            "SELECT x.b, x.n, COALESCE(x.b > 0 AND x.top < (SELECT $2::timestamptz[])[x.b], \
             false) FROM (SELECT pg_catalog.width_bucket(s.\"time\", (SELECT \
             $1::timestamptz[])) AS b, count(*)::int8 AS n, max(s.\"time\") AS top FROM \
             \"public\".\"st\" AS s GROUP BY 1) AS x"
        );
        assert_eq!(crate::sql::checks::params(&c), ["$1::timestamptz[]", "$2::timestamptz[]"]);
        let i = count_in_chunks(&QualifiedName::new("public", "st"), "t", TimeKind::Integer);
        assert!(i.contains("(SELECT $1::int8[])") && i.contains("(SELECT $2::int8[])[x.b]"));
    }

    #[test]
    fn counting_uses_the_same_chunk_numbers() {
        // counting uses the same chunk numbers, without the table
        let c = count_by_time(&QualifiedName::new("public", "st"), "time", TimeKind::TimestampTz);
        assert_eq!(
            c,
            "SELECT x.b, count(*) FILTER (WHERE x.t < (SELECT $2::timestamptz[])[x.b])::int8 \
             FROM (SELECT pg_catalog.width_bucket(s.\"time\", (SELECT $1::timestamptz[])) AS b, \
             s.\"time\" AS t FROM \"public\".\"st\" AS s) AS x WHERE x.b > 0 GROUP BY x.b"
        );
        let (c, p) = count_by_filters(
            &QualifiedName::new("public", "st"),
            &[day_filter(TimeKind::Integer), day_filter(TimeKind::Integer)],
        );
        assert!(
            c.starts_with("SELECT idx, count(*)::int8 FROM (SELECT s.ctid AS src, CASE WHEN")
                && c.ends_with("WHERE idx IS NOT NULL GROUP BY idx"),
            "{c}"
        );
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn moves_by_time_bucket_and_by_chunk_filters() {
        let m = move_bucketed_rows(
            &spec(ConflictAction::Nothing, &[], &[], true),
            "time",
            TimeKind::TimestampTz,
        );
        assert!(
            m.starts_with(
                "WITH bounds AS MATERIALIZED (SELECT $1::timestamptz[] AS lo, \
            $2::timestamptz[] AS hi), moved AS (DELETE FROM \"public\".\"backfill_event_data\" AS \
            s USING bounds WHERE pg_catalog.width_bucket(s.\"time\", bounds.lo) > 0 AND s.\"time\" \
            < bounds.hi[pg_catalog.width_bucket(s.\"time\", bounds.lo)]"
            ),
            "{m}"
        );
        assert!(
            m.contains(
                "($3::int4[])[pg_catalog.width_bucket(s.\"time\", bounds.lo)] AS backfill_idx"
            ) && m.contains("GROUP BY m.backfill_idx"),
            "{m}"
        );
        let (m, p) = move_chunk_rows(
            &spec(ConflictAction::Nothing, &[], &[], true),
            &[(3, day_filter(TimeKind::TimestampTz)), (7, day_filter(TimeKind::TimestampTz))],
        );
        assert!(
            m.contains(
                "WHERE (s.\"time\" >= (SELECT $1::timestamptz) AND s.\"time\" < (SELECT \
            $2::timestamptz)) OR (s.\"time\" >= (SELECT $3::timestamptz)"
            ),
            "{m}"
        );
        assert!(
            m.contains(
                "CASE WHEN s.\"time\" >= (SELECT $1::timestamptz) AND s.\"time\" < \
            (SELECT $2::timestamptz) THEN 3 WHEN"
            ),
            "{m}"
        );
        assert!(
            m.contains("THEN 7 END AS backfill_idx")
                && m.contains("GROUP BY m.backfill_idx")
                && m.contains("GROUP BY chunk_oid"),
            "{m}"
        );
        assert_eq!(p.len(), 4);
        assert_eq!(
            array_literal(&["2024-01-01 00:00:00+00".into(), "a\"b\\c".into()]),
            "{\"2024-01-01 00:00:00+00\",\"a\\\"b\\\\c\"}"
        );
    }

    #[test]
    fn counts_routed_rows_meeting_segments() {
        let q = count_routed_meeting_segments(
            &QualifiedName::new("public", "st"),
            &QualifiedName::new("_ti", "c1"),
            &[("device_id".into(), None)],
            Meeting::UpTo,
        );
        assert_eq!(
            q,
            "SELECT count(*)::int8, NULL::int8 FROM (SELECT 1 FROM \"public\".\"st\" AS s WHERE \
             s.ctid = ANY (ARRAY(SELECT u.src FROM pg_temp._backfill_rows AS r, \
             pg_catalog.unnest(r.tids) AS u(src) WHERE r.idx = $1::int4)) AND EXISTS (SELECT 1 \
             FROM \"_ti\".\"c1\" AS c WHERE c.\"device_id\" = s.\"device_id\") LIMIT $2::int8) \
             AS m"
        );
        assert_eq!(params(&q), ["$1::int4", "$2::int8"]);
        // a sample: the first rows, each tested
        let q = count_routed_meeting_segments(
            &QualifiedName::new("public", "st"),
            &QualifiedName::new("_ti", "c1"),
            &[("device_id".into(), None)],
            Meeting::Sampled,
        );
        assert_eq!(
            q,
            "SELECT (count(*) FILTER (WHERE EXISTS (SELECT 1 FROM \"_ti\".\"c1\" AS c WHERE \
             c.\"device_id\" = s.\"device_id\")))::int8, count(*)::int8 FROM (SELECT s.* FROM \
             \"public\".\"st\" AS s WHERE s.ctid = ANY (ARRAY(SELECT u.src FROM \
             pg_temp._backfill_rows AS r, pg_catalog.unnest(r.tids) AS u(src) WHERE r.idx = \
             $1::int4 LIMIT $2::int8)) LIMIT $2::int8) AS s"
        );
        assert_eq!(params(&q), ["$1::int4", "$2::int8"]);
    }

    #[test]
    fn rows_meeting_segments() {
        let segments = [
            ("device_id".to_string(), None),
            ("site".to_string(), Some("pg_catalog.\"C\"".to_string())),
        ];
        let chunk = QualifiedName::new("_timescaledb_internal", "_hyper_1_1_chunk");
        let st = QualifiedName::new("public", "st");
        let filter = day_filter(TimeKind::TimestampTz);
        let (q, p) = count_rows_meeting_segments(&st, &filter, &chunk, &segments, Meeting::UpTo);
        // a text segment compares by the destination's collation, whatever staging's is
        assert!(
            q.ends_with(
                "AND EXISTS (SELECT 1 \
            FROM \"_timescaledb_internal\".\"_hyper_1_1_chunk\" AS c WHERE c.\"device_id\" = \
            s.\"device_id\" AND c.\"site\" = s.\"site\" COLLATE pg_catalog.\"C\") LIMIT $3::int8) \
            AS m"
            ),
            "{q}"
        );
        assert_eq!(p.len(), 2);
        let (q, p) = count_rows_meeting_segments(&st, &filter, &chunk, &segments, Meeting::Sampled);
        assert!(q.ends_with("LIMIT $3::int8) AS s"), "{q}");
        assert!(q.contains("s.\"site\" COLLATE pg_catalog.\"C\")))::int8, count(*)::int8"), "{q}");
        assert_eq!(p.len(), 2);
    }
}
