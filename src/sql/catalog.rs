//! Reads of PostgreSQL's catalog and of TimescaleDB's public views
//! (`timescaledb_information.*`); never `_timescaledb_catalog`.

use crate::timescale::TimeKind;

/// The destination's chunks whose time range meets `[$3, $4]` (the staging span, in the
/// time column's type), with their status. `$1`, `$2`: hypertable schema and name.
pub fn chunks_overlapping(kind: TimeKind, timescale_schema_fn: &str) -> String {
    let (lo_col, hi_col, min, max) = match kind {
        TimeKind::Integer => ("range_start_integer", "range_end_integer", "$3::bigint".to_string(), "$4::bigint".to_string()),
        TimeKind::TimestampTz => ("range_start", "range_end", "$3::timestamptz".to_string(), "$4::timestamptz".to_string()),
        TimeKind::Timestamp | TimeKind::Date => (
            "range_start",
            "range_end",
            "($3::timestamp AT TIME ZONE 'UTC')".to_string(),
            "($4::timestamp AT TIME ZONE 'UTC')".to_string(),
        ),
    };
    format!(
        "SELECT c.chunk_schema::text, c.chunk_name::text, c.{lo_col}::text, c.{hi_col}::text, \
         {timescale_schema_fn}(format('%I.%I', c.chunk_schema, c.chunk_name)::regclass), \
         format('%I.%I', c.chunk_schema, c.chunk_name)::regclass::oid::int8 \
         FROM timescaledb_information.chunks AS c \
         WHERE c.hypertable_schema = $1 AND c.hypertable_name = $2 \
         AND (c.{hi_col} IS NULL OR c.{hi_col} > {min}) AND (c.{lo_col} IS NULL OR c.{lo_col} <= {max}) \
         ORDER BY c.{lo_col}, c.chunk_name"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::QualifiedName;
    use crate::sql::route::staging_span;

    #[test]
    fn span_and_chunk_queries() {
        let q = staging_span(&QualifiedName::new("public", "st"), "time");
        assert_eq!(q, "SELECT min(s.\"time\")::text, max(s.\"time\")::text, count(*)::bigint, (count(*) - count(s.\"time\"))::bigint FROM \"public\".\"st\" AS s");
        let q = chunks_overlapping(TimeKind::Integer, "_timescaledb_functions.chunk_status");
        assert!(q.contains("c.range_end_integer > $3::bigint"), "{q}");
        let q = chunks_overlapping(TimeKind::Date, "_timescaledb_functions.chunk_status");
        assert!(q.contains("c.range_start <= ($4::timestamp AT TIME ZONE 'UTC')"), "{q}");
        assert!(q.contains("FROM timescaledb_information.chunks AS c"));
    }
}
