//! The statements of a direct step whose rows all belong to segments the chunk lacks,
//! or (`NOTHING`) whose rows with keys the chunk has are left out
//! (`strategy::new_segments`): the rows go, one per key, into a temporary table, one of
//! them is inserted through the hypertable (TimescaleDB marks the chunk partial), the
//! rest are written into the chunk in bulk and its indexes rebuilt, and the chunk is
//! compressed.

use super::keys::keys_match;
use super::moves::{insert_clause, take_one_per_key};
use super::MoveSpec;
use crate::ident::{quote_list, QualifiedName};

/// The temporary table the step's rows wait in.
pub const BULK_NEW: &str = "pg_temp._backfill_new_segments";

pub struct NewSegmentsSql {
    /// Whether a staging row the step takes has a segment the chunk has (each segment
    /// looked up once).
    pub staging_meets_chunk: String,
    /// Creates BULK_NEW, with the destination's columns.
    pub create: String,
    /// Moves the step's rows from staging into BULK_NEW, one per key; returns (taken, kept).
    pub take: String,
    /// Whether a row of BULK_NEW has a segment the chunk has (then the rows are inserted).
    pub meets_chunk: String,
    /// Removes the rows of BULK_NEW whose key the chunk has (under `NOTHING` they are
    /// conflicts; the others cannot meet a row of the chunk); returns how many. A join,
    /// not a semi-join: the chunk holds a key once, and a semi-join would have the
    /// planner make the chunk's rows unique first.
    pub drop_existing_keys: String,
    /// Inserts one row of BULK_NEW through the destination, and removes it from BULK_NEW.
    pub insert_first: String,
    /// Inserts every row of BULK_NEW through the destination, with the run's
    /// `ON CONFLICT`; returns (inserted, updated).
    pub insert_all: String,
    /// Rebuilds the chunk's indexes after its rows were written in bulk.
    pub reindex_chunk: String,
    /// Drops BULK_NEW.
    pub drop: String,
}

/// `take_where`: the condition (alias `s`, its parameters first) that takes the step's
/// staging rows; `segments`: the segmentby columns; `same_segment`: a row `s` and a row
/// `c` of the chunk share their segment.
pub fn new_segments_sql(
    spec: &MoveSpec,
    chunk: &QualifiedName,
    take_where: &str,
    segments: &[String],
    same_segment: &str,
) -> NewSegmentsSql {
    let cols = quote_list(&spec.columns, None);
    let meets = |from: &str| {
        format!(
            "SELECT EXISTS (SELECT 1 FROM (SELECT DISTINCT {} {from}) AS s WHERE EXISTS \
             (SELECT 1 FROM {} AS c WHERE {same_segment}))",
            quote_list(segments, Some("s")),
            chunk.quoted()
        )
    };
    let dest = spec.destination.quoted();
    let (insert, _) = insert_clause(spec, "(d.xmax::text <> '0')");
    NewSegmentsSql {
        staging_meets_chunk: meets(&format!(
            "FROM {} AS s WHERE {take_where}",
            spec.staging.quoted()
        )),
        create: format!(
            "CREATE TEMP TABLE {} (LIKE {dest})",
            BULK_NEW.trim_start_matches("pg_temp.")
        ),
        take: take_one_per_key(spec, take_where, BULK_NEW),
        meets_chunk: meets(&format!("FROM {BULK_NEW} AS s")),
        drop_existing_keys: format!(
            "WITH d AS (DELETE FROM {BULK_NEW} AS n USING {} AS o WHERE {} RETURNING 1) SELECT \
             count(*)::int8 FROM d",
            chunk.quoted(),
            keys_match(&spec.conflict, "n", "o")
        ),
        insert_first: format!(
            "WITH f AS (DELETE FROM {BULK_NEW} AS b WHERE b.ctid = (SELECT ctid FROM {BULK_NEW} \
             LIMIT 1) RETURNING {}) INSERT INTO {dest} ({cols}) SELECT {cols} FROM f",
            quote_list(&spec.columns, Some("b"))
        ),
        insert_all: format!(
            "WITH moved AS (SELECT {cols}, b.ctid AS backfill_src FROM {BULK_NEW} AS b), \
             ins AS ({insert}) \
             SELECT count(*) FILTER (WHERE NOT updated)::int8, \
             count(*) FILTER (WHERE updated)::int8 FROM ins"
        ),
        reindex_chunk: format!("REINDEX TABLE {}", chunk.quoted()),
        drop: format!("DROP TABLE {BULK_NEW}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConflictAction;
    use crate::sql::fixtures::*;

    #[test]
    fn new_segments_wait_in_a_temporary_table_one_per_key() {
        let s = spec(ConflictAction::Nothing, &["device_id", "time"], &[], true);
        let chunk = QualifiedName::new("_ti", "c1");
        let same = "c.\"device_id\" = s.\"device_id\"";
        let q = new_segments_sql(&s, &chunk, "s.ctid = ANY ($1)", &["device_id".into()], same);
        assert_eq!(
            q.create,
            "CREATE TEMP TABLE _backfill_new_segments (LIKE \"public\".\"event_data\")"
        );
        assert!(
            q.take.starts_with(
                "WITH moved AS (DELETE FROM \"public\".\"backfill_event_data\" AS s WHERE \
                 s.ctid = ANY ($1) RETURNING s.\"time\", s.\"device_id\", s.\"value\", s.ctid AS \
                 backfill_src), kept AS (INSERT INTO pg_temp._backfill_new_segments (\"time\", \
                 \"device_id\", \"value\") SELECT DISTINCT ON ("
            ),
            "{}",
            q.take
        );
        assert!(q.take.ends_with(
            "SELECT (SELECT count(*) FROM moved)::int8, (SELECT count(*) FROM kept)::int8"
        ));
        assert_eq!(
            q.drop_existing_keys,
            "WITH d AS (DELETE FROM pg_temp._backfill_new_segments AS n USING \"_ti\".\"c1\" \
             AS o WHERE n.\"device_id\" = o.\"device_id\" AND n.\"time\" = o.\"time\" RETURNING \
             1) SELECT count(*)::int8 FROM d"
        );
        assert!(crate::sql::checks::params(&q.drop_existing_keys).is_empty());
        assert_eq!(
            q.meets_chunk,
            "SELECT EXISTS (SELECT 1 FROM (SELECT DISTINCT s.\"device_id\" FROM \
             pg_temp._backfill_new_segments AS s) AS s WHERE EXISTS (SELECT 1 FROM \
             \"_ti\".\"c1\" AS c WHERE c.\"device_id\" = s.\"device_id\"))"
        );
        assert_eq!(
            q.staging_meets_chunk,
            "SELECT EXISTS (SELECT 1 FROM (SELECT DISTINCT s.\"device_id\" FROM \
             \"public\".\"backfill_event_data\" AS s WHERE s.ctid = ANY ($1)) AS s WHERE \
             EXISTS (SELECT 1 FROM \"_ti\".\"c1\" AS c WHERE c.\"device_id\" = s.\"device_id\"))"
        );
        assert!(q.insert_first.starts_with(
            "WITH f AS (DELETE FROM pg_temp._backfill_new_segments AS b WHERE b.ctid = (SELECT \
             ctid FROM pg_temp._backfill_new_segments LIMIT 1) RETURNING b.\"time\""
        ));
        assert!(q.insert_first.ends_with(
            "INSERT INTO \"public\".\"event_data\" (\"time\", \"device_id\", \"value\") SELECT \
             \"time\", \"device_id\", \"value\" FROM f"
        ));
        assert!(
            q.insert_all.contains("ON CONFLICT (\"device_id\", \"time\") DO NOTHING"),
            "{}",
            q.insert_all
        );
        assert_eq!(q.reindex_chunk, "REINDEX TABLE \"_ti\".\"c1\"");
        assert_eq!(q.drop, "DROP TABLE pg_temp._backfill_new_segments");
        assert!(crate::sql::checks::params(&q.take) == ["$1"]);
    }
}
