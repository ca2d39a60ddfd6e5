//! A chunk rewrite through temporary tables split by the segment column's hash: the
//! step's staging rows (MERGE_NEW) and the merged rows (MERGE_OLD) are each a table
//! partitioned into `PARTS`, so that a rewrite reads, writes and empties one part at a
//! time. A part made in the step's transaction gives its space back at `TRUNCATE`, so
//! the rewrite holds one copy of the chunk's rows and a part, not two copies: while it
//! reads, the parts of staging rows not yet read and the merged parts already read;
//! while it writes, the chunk's heap and the merged parts not yet written. Every
//! statement on the whole of MERGE_NEW or MERGE_OLD reads or empties every part.

use super::segment_merge::{MergeSpec, Parts, FITS, MERGE_NEW, MERGE_OLD};
use super::MoveSpec;
use crate::ident::QualifiedName;

/// The parts of each table.
pub const PARTS: usize = 4;

/// Part `k` of `table` (`pg_temp.` names).
pub fn part(table: &str, k: usize) -> String {
    format!("{table}_{k}")
}

/// The statements of a split rewrite; those with one entry a part are in part order.
pub struct SplitSql {
    /// Whether the chunk's rows would not fit in `maintenance_work_mem` (the rewrite
    /// goes through its tables: see `MergeSql::fits_in_memory`, sized from the chunk's
    /// rows alone, before the step has taken its staging rows), and whether the tables
    /// can be split: the segment column's type `$1` has a default hash operator class,
    /// and staging's segment column (table `$2`, column `$3`) has that type too, so that
    /// a row hashes to the same part of both tables.
    pub on_disk_and_splittable: String,
    /// Creates MERGE_NEW and MERGE_OLD as partitioned tables and their parts (in place
    /// of `MergeSql::create`).
    pub create: Vec<String>,
    /// The segment values of a part of MERGE_NEW, as array text (NULL when it is empty).
    pub segments: Vec<String>,
    /// Reads a part: the chunk's rows of that part's segments (`$1`) merged with the
    /// part's staging rows, into MERGE_OLD's part; returns what `MergeSql::read_all` does.
    pub read: Vec<String>,
    pub empty_new: Vec<String>,
    pub empty_old: Vec<String>,
}

/// None where staging lacks a column of the destination: new keys are then inserted
/// through the chunk after it is written, which reads MERGE_NEW whole.
pub fn split_sql(spec: &MoveSpec, m: &MergeSpec, chunk: &QualifiedName) -> Option<SplitSql> {
    let x = Parts::new(spec, m, chunk);
    if !x.staging_has_every_column() {
        return None;
    }
    let (rows, width) = x.chunk_rows_and_width();
    let create = create_statements(&x);
    let each = |f: &dyn Fn(usize) -> String| (0..PARTS).map(f).collect::<Vec<_>>();
    Some(SplitSql {
        on_disk_and_splittable: format!(
            "SELECT NOT ({FITS}), \
             EXISTS (SELECT 1 FROM pg_catalog.pg_opclass AS o JOIN pg_catalog.pg_am AS a ON a.oid \
             = o.opcmethod \
                     WHERE a.amname = 'hash' AND o.opcdefault AND o.opcintype = $1::text::regtype) \
             AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS s \
                         WHERE s.attrelid = $2::text::regclass AND s.attname = $3 AND s.atttypid = \
                         $1::text::regtype \
                         AND s.attcollation = (SELECT d.attcollation FROM pg_catalog.pg_attribute \
                         AS d \
                                               WHERE d.attrelid = $4::text::regclass AND d.attname \
                                               = $3)) \
             FROM (SELECT {rows} AS n, {width} AS w) AS size"
        ),
        create,
        segments: each(&|k| {
            format!("SELECT array_agg(DISTINCT n.{})::text FROM {} AS n", x.seg, part(MERGE_NEW, k))
        }),
        read: each(&|k| {
            let touched = format!(" WHERE c.{} = {}", x.seg, x.seg_values);
            x.read_all_into(&part(MERGE_OLD, k), &touched, &part(MERGE_NEW, k))
        }),
        empty_new: each(&|k| format!("TRUNCATE {}", part(MERGE_NEW, k))),
        empty_old: each(&|k| format!("TRUNCATE {}", part(MERGE_OLD, k))),
    })
}

/// The split rewrite's temporary tables: each hash-partitioned by the segment column
/// into `PARTS` parts, the staging rows' in staging's column types.
fn create_statements(x: &Parts) -> Vec<String> {
    let bare = |t: &str| t.trim_start_matches("pg_temp.").to_string();
    let shape = format!("{MERGE_NEW}_shape");
    let mut create = vec![
        // the staging columns' types, without staging's constraints
        format!(
            "CREATE TEMP TABLE {} AS SELECT {} FROM {} WITH NO DATA",
            bare(&shape),
            x.cols,
            x.spec.staging.quoted()
        ),
        format!(
            "CREATE TEMP TABLE {} (LIKE {shape}) PARTITION BY HASH ({})",
            bare(MERGE_NEW),
            x.seg
        ),
        format!("DROP TABLE {shape}"),
        format!(
            "CREATE TEMP TABLE {} (LIKE {}, {} boolean) PARTITION BY HASH ({})",
            bare(MERGE_OLD),
            x.spec.destination.quoted(),
            x.flag,
            x.seg
        ),
    ];
    for table in [MERGE_NEW, MERGE_OLD] {
        create.extend((0..PARTS).map(|k| {
            format!(
                "CREATE TEMP TABLE {} PARTITION OF {table} \
                 FOR VALUES WITH (MODULUS {PARTS}, REMAINDER {k})",
                bare(&part(table, k))
            )
        }));
    }
    create
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConflictAction;
    use crate::sql::fixtures::*;

    fn merge_spec() -> MergeSpec {
        MergeSpec {
            dest_columns: vec!["time".into(), "device_id".into(), "value".into()],
            segment: "device_id".into(),
            segment_type: "integer".into(),
            segment_collation: None,
        }
    }

    #[test]
    fn a_split_rewrite_reads_and_empties_one_part_at_a_time() {
        let mut s = spec(ConflictAction::Update, &["device_id", "time"], &["value"], true);
        s.columns = vec!["time".into(), "device_id".into(), "value".into()];
        let q = split_sql(&s, &merge_spec(), &QualifiedName::new("_ti", "c1")).unwrap();
        assert_eq!(
            q.create[0],
            "CREATE TEMP TABLE _backfill_new_shape AS \
            SELECT \"time\", \"device_id\", \"value\" FROM \"public\".\"backfill_event_data\" WITH \
            NO DATA"
        );
        assert_eq!(
            q.create[1],
            "CREATE TEMP TABLE _backfill_new (LIKE \
            pg_temp._backfill_new_shape) PARTITION BY HASH (\"device_id\")"
        );
        assert_eq!(q.create[2], "DROP TABLE pg_temp._backfill_new_shape");
        assert_eq!(
            q.create[3],
            "CREATE TEMP TABLE _backfill_old \
            (LIKE \"public\".\"event_data\", \"backfill_ext_untouched\" boolean) PARTITION BY HASH \
            (\"device_id\")"
        );
        assert_eq!(q.create.len(), 4 + 2 * PARTS);
        assert_eq!(
            q.create[4],
            "CREATE TEMP TABLE _backfill_new_0 PARTITION OF \
            pg_temp._backfill_new FOR VALUES WITH (MODULUS 4, REMAINDER 0)"
        );
        assert_eq!(
            q.create[4 + 2 * PARTS - 1],
            "CREATE TEMP TABLE _backfill_old_3 PARTITION OF \
            pg_temp._backfill_old FOR VALUES WITH (MODULUS 4, REMAINDER 3)"
        );
        assert_eq!(
            q.segments[2],
            "SELECT array_agg(DISTINCT n.\"device_id\")::text FROM pg_temp._backfill_new_2 AS n"
        );
    }

    #[test]
    fn each_part_reads_its_own_segments_and_staging_rows() {
        let mut s = spec(ConflictAction::Update, &["device_id", "time"], &["value"], true);
        s.columns = vec!["time".into(), "device_id".into(), "value".into()];
        let q = split_sql(&s, &merge_spec(), &QualifiedName::new("_ti", "c1")).unwrap();
        // part 1: that part's segments of the chunk, pushed down to its compressed batches, with
        // that part's staging rows
        let r = &q.read[1];
        assert!(
            r.starts_with(
                "WITH w AS (INSERT INTO pg_temp._backfill_old_1 \
            (\"time\", \"device_id\", \"value\", \"backfill_ext_untouched\") SELECT"
            ),
            "{r}"
        );
        assert!(
            r.contains(
                "FROM (SELECT c.*, true AS \"backfill_old\" FROM \"_ti\".\"c1\" AS c \
            WHERE c.\"device_id\" = ANY ($1::text::integer[])) AS o FULL JOIN \
            pg_temp._backfill_new_1 AS n ON n.\"device_id\" = o.\"device_id\" AND n.\"time\" = \
            o.\"time\""
            ),
            "{r}"
        );
        assert_eq!(
            (q.empty_new[3].as_str(), q.empty_old[0].as_str()),
            ("TRUNCATE pg_temp._backfill_new_3", "TRUNCATE pg_temp._backfill_old_0")
        );
    }

    #[test]
    fn a_chunk_is_split_where_it_is_too_big_and_its_segment_hashes() {
        let mut s = spec(ConflictAction::Update, &["device_id", "time"], &["value"], true);
        s.columns = vec!["time".into(), "device_id".into(), "value".into()];
        let q = split_sql(&s, &merge_spec(), &QualifiedName::new("_ti", "c1")).unwrap();
        let d = &q.on_disk_and_splittable;
        assert!(
            d.starts_with(
                "SELECT NOT (n * w * 3 <= \
            pg_catalog.pg_size_bytes(pg_catalog.current_setting('maintenance_work_mem'))"
            ),
            "{d}"
        );
        assert!(
            d.contains(
                "o.opcintype = $1::text::regtype) AND EXISTS (SELECT 1 FROM \
            pg_catalog.pg_attribute AS s WHERE s.attrelid = $2::text::regclass AND s.attname = $3 \
            AND s.atttypid = $1::text::regtype AND s.attcollation = (SELECT d.attcollation FROM \
            pg_catalog.pg_attribute AS d WHERE d.attrelid = $4::text::regclass AND d.attname = \
            $3))"
            ),
            "{d}"
        );
        // staging lacks a destination column: no split
        s.columns.pop();
        let mut m = merge_spec();
        m.dest_columns.push("note".into());
        assert!(split_sql(&s, &m, &QualifiedName::new("_ti", "c1")).is_none());
    }
}
