//! Continuous aggregates on a hypertable, and bringing them up to date for the time
//! range a run changed. TimescaleDB's public views list them; a continuous
//! aggregate's buckets (width, origin, offset, time zone) are read with
//! `_timescaledb_functions.cagg_get_bucket_function_info`, which takes the id of its
//! materialization hypertable.

use crate::timescale::TimeKind;

/// Where the id of a materialization hypertable comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatId {
    /// `_timescaledb_functions.get_hypertable_info(regclass)` (newer releases).
    HypertableInfo,
    /// The number in the materialization hypertable's name, `_materialized_hypertable_<id>`
    /// (releases without `get_hypertable_info`).
    TableName,
}

/// Whether any view reads table `$1` (an oid): a continuous aggregate's own views read
/// its hypertable, so without one there is none to list. An index lookup, where
/// planning the listing through TimescaleDB's views takes milliseconds.
pub const ANY_VIEW_READS: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
     WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = $1::oid \
       AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass)";

/// Whether this TimescaleDB has what listing continuous aggregates with their buckets
/// needs: (`cagg_get_bucket_function_info`, `get_hypertable_info`).
pub const FUNCTIONS: &str = "SELECT \
    pg_catalog.to_regprocedure('_timescaledb_functions.cagg_get_bucket_function_info(integer)') IS \
    NOT NULL, \
     pg_catalog.to_regprocedure('_timescaledb_functions.get_hypertable_info(regclass)') IS NOT \
     NULL";

/// The continuous aggregates on hypertable `$1`.`$2` and those built on them, parents
/// first: depth, view schema, view name, whether the current role owns it, bucket
/// width, origin, offset and time zone (as text; NULL where unset, or where the
/// materialization hypertable's id cannot be told).
pub fn list(mat_id: MatId) -> String {
    let id = match mat_id {
        MatId::HypertableInfo => {
            "(_timescaledb_functions.get_hypertable_info(pg_catalog.format('%I.%I', t.ms, \
             t.mn)::regclass)).hypertable_id"
        }
        MatId::TableName => {
            "(pg_catalog.substring(t.mn::text, \
            '^_materialized_hypertable_([0-9]+)$'))::int4"
        }
    };
    format!(
        "WITH RECURSIVE tree AS (\
           SELECT ca.view_schema, ca.view_name, ca.view_owner, \
           ca.materialization_hypertable_schema AS ms, \
                  ca.materialization_hypertable_name AS mn, 1 AS depth \
           FROM timescaledb_information.continuous_aggregates AS ca WHERE ca.hypertable_schema = \
           $1 AND ca.hypertable_name = $2 \
           UNION ALL \
           SELECT ca.view_schema, ca.view_name, ca.view_owner, \
           ca.materialization_hypertable_schema, \
                  ca.materialization_hypertable_name, t.depth + 1 \
           FROM timescaledb_information.continuous_aggregates AS ca \
           JOIN tree AS t ON ca.hypertable_schema = t.ms AND ca.hypertable_name = t.mn) \
         SELECT t.depth, t.view_schema::text, t.view_name::text, \
         pg_catalog.pg_has_role(t.view_owner, 'USAGE'), \
                b.bucket_width::text, b.bucket_origin::text, b.bucket_offset::text, \
                b.bucket_timezone::text \
         FROM tree AS t LEFT JOIN LATERAL \
         _timescaledb_functions.cagg_get_bucket_function_info({id}) AS b ON true \
         ORDER BY t.depth, t.view_schema, t.view_name"
    )
}

/// The bucket that holds the value `$v` (text, of the time column's `kind`): `$1` the
/// width, `$2` the origin, `$3` the offset, `$4` the time zone, as `list` gives them.
fn bucket(time_bucket: &str, kind: TimeKind, v: usize) -> String {
    match kind {
        TimeKind::TimestampTz => format!(
            "CASE WHEN $4::text IS NOT NULL THEN {time_bucket}($1::interval, ${v}::timestamptz, \
             $4::text, $2::timestamptz, $3::interval) \
                  WHEN $2::text IS NOT NULL THEN {time_bucket}($1::interval, ${v}::timestamptz, \
                  $2::timestamptz) \
                  WHEN $3::text IS NOT NULL THEN {time_bucket}($1::interval, ${v}::timestamptz, \
                  $3::interval) \
                  ELSE {time_bucket}($1::interval, ${v}::timestamptz) END"
        ),
        TimeKind::Timestamp | TimeKind::Date => {
            let t = if kind == TimeKind::Date { "date" } else { "timestamp" };
            format!(
                "CASE WHEN $2::text IS NOT NULL THEN {time_bucket}($1::interval, ${v}::{t}, \
                 $2::{t}) \
                      WHEN $3::text IS NOT NULL THEN {time_bucket}($1::interval, ${v}::{t}, \
                      $3::interval) \
                      ELSE {time_bucket}($1::interval, ${v}::{t}) END"
            )
        }
        TimeKind::Integer => format!(
            "CASE WHEN $3::text IS NOT NULL THEN {time_bucket}($1::int8, ${v}::int8, $3::int8) \
                  ELSE {time_bucket}($1::int8, ${v}::int8) END"
        ),
    }
}

/// The refresh window, as text, that covers the values `$5` to `$6` whole: from the
/// start of the bucket that holds `$5` to the end of the one that holds `$6`. The end
/// of a bucket in a time zone is computed in that zone (months, and days that change
/// to or from summer time, differ in length).
pub fn window(time_bucket: &str, kind: TimeKind) -> String {
    let (lo, last) = (bucket(time_bucket, kind, 5), bucket(time_bucket, kind, 6));
    let end = match kind {
        TimeKind::TimestampTz => {
            "((x.last AT TIME ZONE coalesce($4::text, 'UTC')) + $1::interval) AT TIME ZONE \
             coalesce($4::text, 'UTC')"
                .to_string()
        }
        TimeKind::Timestamp => "x.last + $1::interval".to_string(),
        TimeKind::Date => "(x.last + $1::interval)::date".to_string(),
        TimeKind::Integer => "x.last + $1::int8".to_string(),
    };
    format!("SELECT x.lo::text, ({end})::text FROM (SELECT {lo} AS lo, {last} AS last) AS x")
}

/// Brings continuous aggregate `$1` up to date for `[$2, $3)` (text, of `time_type`,
/// the hypertable's time column type as `format_type` prints it).
pub fn refresh(refresh_fn: &str, time_type: &str) -> String {
    format!("CALL {refresh_fn}($1::text::regclass, $2::text::{time_type}, $3::text::{time_type})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_for_views_reads_the_dependency_catalog_by_oid() {
        assert!(ANY_VIEW_READS.contains("d.refobjid = $1::oid"));
        assert!(ANY_VIEW_READS.contains(
            "d.classid = \
            'pg_catalog.pg_rewrite'::pg_catalog.regclass"
        ));
        assert!(!ANY_VIEW_READS.contains("_timescaledb_catalog"));
    }

    #[test]
    fn hierarchical_aggregates_are_listed_parents_first() {
        let q = list(MatId::HypertableInfo);
        assert!(q.starts_with("WITH RECURSIVE tree AS ("));
        assert!(q.contains("WHERE ca.hypertable_schema = $1 AND ca.hypertable_name = $2"));
        // a child's hypertable is its parent's materialization hypertable
        assert!(q.contains(
            "JOIN tree AS t ON ca.hypertable_schema = t.ms AND ca.hypertable_name = t.mn"
        ));
        assert!(q.ends_with("ORDER BY t.depth, t.view_schema, t.view_name"));
        assert!(q.contains(
            "get_hypertable_info(pg_catalog.format('%I.%I', t.ms, \
            t.mn)::regclass)"
        ));
        assert!(!q.contains("_timescaledb_catalog"));
        let q = list(MatId::TableName);
        // the regular-expression form of substring as a function call (the FROM form is syntax, not
        // a function)
        assert!(q.contains(
            "cagg_get_bucket_function_info((pg_catalog.substring(t.mn::text, \
            '^_materialized_hypertable_([0-9]+)$'))::int4)"
        ));
        assert!(!q.contains("get_hypertable_info"));
    }

    #[test]
    fn windows_cover_whole_buckets() {
        let q = window("public.time_bucket", TimeKind::TimestampTz);
        assert!(q.contains(
            "public.time_bucket($1::interval, $5::timestamptz, $4::text, \
            $2::timestamptz, $3::interval)"
        ));
        assert!(q.contains("public.time_bucket($1::interval, $6::timestamptz, $2::timestamptz)"));
        assert!(q.contains("public.time_bucket($1::interval, $6::timestamptz, $3::interval)"));
        assert!(q.contains(
            "((x.last AT TIME ZONE coalesce($4::text, 'UTC')) + $1::interval) AT \
            TIME ZONE coalesce($4::text, 'UTC')"
        ));
        let q = window("ts.time_bucket", TimeKind::Integer);
        assert!(q.contains("ts.time_bucket($1::int8, $5::int8, $3::int8)"));
        assert!(q.contains("x.last + $1::int8"));
        assert!(!q.contains("interval"));
        let q = window("ts.time_bucket", TimeKind::Date);
        assert!(q.contains("ts.time_bucket($1::interval, $6::date, $2::date)"));
        assert!(q.contains("(x.last + $1::interval)::date"));
        let q = window("ts.time_bucket", TimeKind::Timestamp);
        assert!(q.contains("$5::timestamp, $2::timestamp)") && !q.contains("timestamptz"));
    }

    #[test]
    fn the_refresh_is_a_call_with_typed_parameters() {
        assert_eq!(
            refresh("public.refresh_continuous_aggregate", "timestamp with time zone"),
            "CALL public.refresh_continuous_aggregate($1::text::regclass, $2::text::timestamp with \
             time zone, $3::text::timestamp with time zone)"
        );
    }
}
