//! A dense upsert's merge by segments and whole-chunk rewrite: the statements, in
//! the order the merge strategy runs them.

use super::keys::keys_match;
use super::moves::insert_clause;
use super::MoveSpec;
use crate::ident::{quote_ident, quote_list, QualifiedName};

/// The temporary tables of a merge: the step's staging rows, and the touched segments'
/// merged rows.
pub const MERGE_NEW: &str = "pg_temp._backfill_new";

pub const MERGE_OLD: &str = "pg_temp._backfill_old";

/// Everything a merge step needs to know about the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSpec {
    /// Every column of the destination, in order.
    pub dest_columns: Vec<String>,
    /// The one segmentby column, and its type as `regtype` prints it (from the catalog).
    pub segment: String,
    pub segment_type: String,
    /// The conflict key's collation of the segment column (a quoted name), where its
    /// type has one: the touched values compare by it.
    pub segment_collation: Option<String>,
}

/// The statements of a merge step on `chunk`, in order. The step's staging rows are
/// those `take_where` selects (alias `s`, its parameters first); `$1` of the later
/// statements is the touched segment values as array text.
pub struct MergeSql {
    /// Creates the step's two temporary tables (in its own transaction, so that
    /// emptying them gives their space back at once).
    pub create: [String; 2],
    /// Moves the step's rows from staging into MERGE_NEW, one per key; returns (taken, kept).
    pub take: String,
    /// The touched segment values as array text.
    pub segments: String,
    /// Writes the touched segments' rows into MERGE_OLD, with the staging values applied;
    /// returns (rows written, rows a staging row updated, 0).
    pub read_old: String,
    /// For a rewrite through MERGE_OLD where staging has every column of the
    /// destination: every row of the chunk, with the staging values applied, and the
    /// staging rows with new keys, into MERGE_OLD; returns (rows written, rows a staging
    /// row updated, staging rows with new keys). None where staging lacks a column.
    pub read_all: Option<String>,
    /// Whether the chunk has rows outside the touched segments.
    pub untouched: String,
    /// Removes the touched segments from the chunk (whole compressed batches).
    pub delete_segments: String,
    /// Empties the whole chunk, compressed part included (every segment was touched).
    pub truncate_chunk: String,
    /// Puts the merged rows back into the chunk.
    pub write_old: String,
    /// Inserts the staging rows with new keys; returns one row per insert.
    pub insert_new: String,
    /// Whether the chunk's rows fit in `maintenance_work_mem` three times over (the
    /// rows being aggregated, the array, and its copy), each sized as the larger of a
    /// staging row and a sampled row of the chunk: a rewrite then holds them in
    /// memory, not on disk.
    pub fits_in_memory: String,
    /// For a rewrite in memory: every row of the chunk with the staging values applied,
    /// as one array of the destination's row type, the rows a staging row updated, and
    /// the staging rows with new keys the array holds too (all of them when staging has
    /// every column of the destination; none otherwise: they are inserted afterwards).
    pub read_merged: String,
    /// Writes that array (`$1`) into the emptied chunk, row by row.
    pub write_merged: String,
    /// Rebuilds the chunk's indexes after its rows were written in bulk, without them.
    pub reindex_chunk: String,
    /// After a rewrite in memory: inserts the staging rows whose key the chunk lacks.
    pub insert_new_after_rewrite: String,
    /// Empties a temporary table (in place: it was created in this transaction).
    pub empty_new: String,
    pub empty_old: String,
    /// Drops both temporary tables.
    pub drop: String,
}

/// ` COLLATE x` for the segment column's collation, where it has one.
fn collate(m: &MergeSpec) -> String {
    m.segment_collation.as_ref().map(|c| format!(" COLLATE {c}")).unwrap_or_default()
}

/// `base`, or `base` followed by underscores: a column name none of the destination's
/// columns has.
fn free_column(base: &str, dest_columns: &[String]) -> String {
    let mut name = base.to_string();
    while dest_columns.contains(&name) {
        name.push('_');
    }
    name
}

pub fn merge_sql(
    spec: &MoveSpec,
    m: &MergeSpec,
    chunk: &QualifiedName,
    take_where: &str,
) -> MergeSql {
    let x = Parts::new(spec, m, chunk);
    MergeSql {
        create: x.create(),
        take: x.take(take_where),
        segments: format!("SELECT array_agg(DISTINCT n.{})::text FROM {MERGE_NEW} AS n", x.seg),
        read_old: x.read_old(),
        read_all: x.read_all(),
        untouched: x.untouched(),
        delete_segments: format!(
            "DELETE FROM {} AS c WHERE c.{} = {}",
            x.chunk, x.seg, x.seg_values
        ),
        truncate_chunk: format!("TRUNCATE {}", x.chunk),
        write_old: format!(
            "INSERT INTO {} ({all}) SELECT {all} FROM {MERGE_OLD}",
            x.chunk,
            all = x.all
        ),
        insert_new: x.insert_new(MERGE_OLD),
        fits_in_memory: x.fits_in_memory(),
        read_merged: x.read_merged(),
        write_merged: format!(
            "INSERT INTO {} ({}) SELECT {} FROM pg_catalog.unnest($1::{}[]) AS x",
            x.chunk,
            x.all,
            quote_list(&m.dest_columns, Some("x")),
            spec.destination.quoted()
        ),
        reindex_chunk: format!("REINDEX TABLE {}", x.chunk),
        insert_new_after_rewrite: x.insert_new(&x.chunk),
        empty_new: format!("TRUNCATE {MERGE_NEW}"),
        empty_old: format!("TRUNCATE {MERGE_OLD}"),
        drop: format!("DROP TABLE {MERGE_NEW}, {MERGE_OLD}"),
    }
}

/// The unique and exclusion indexes of table `$1` (a quoted name): schema, name.
pub const CHECKING_INDEXES: &str = "SELECT n.nspname::text, c.relname::text FROM \
    pg_catalog.pg_index i \
     JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid JOIN pg_catalog.pg_namespace n ON n.oid = \
     c.relnamespace \
     WHERE i.indrelid = $1::regclass AND (i.indisunique OR i.indisexclusion) ORDER BY c.oid";

/// Whether `n` rows of `w` bytes fit in `maintenance_work_mem` three times over (the
/// rows being aggregated, the array, and its copy), and the array under PostgreSQL's 1
/// GB allocation limit.
pub const FITS: &str = "n * w * 3 <= \
    pg_catalog.pg_size_bytes(pg_catalog.current_setting('maintenance_work_mem')) AND n * w * 2 < \
    1073741824";

/// Rebuilds one index.
pub fn reindex_index(index: &QualifiedName) -> String {
    format!("REINDEX INDEX {}", index.quoted())
}

/// The pieces the merge statements share.
pub(super) struct Parts<'a> {
    pub(super) spec: &'a MoveSpec,
    m: &'a MergeSpec,
    pub(super) chunk: String,
    /// The copied columns, bare and of staging (`s`).
    pub(super) cols: String,
    /// Every destination column.
    all: String,
    pub(super) seg: String,
    /// The segment column's values as `$1`.
    pub(super) seg_values: String,
    /// MERGE_OLD's "no staging row updated this row" flag: true; NULL for an updated row
    /// (every row of a dense correction), which takes a bit of the null bitmap (room a
    /// row's header has up to 8 columns) instead of a byte and its padding; false for a
    /// staging row with a new key (`read_all`).
    pub(super) flag: String,
    /// The column a full join adds to the chunk's rows to tell them from none (they
    /// have no usable ctid).
    marker: String,
    /// The insert of the staging rows with new keys (from `moved`).
    insert: String,
}

impl<'a> Parts<'a> {
    pub(super) fn new(spec: &'a MoveSpec, m: &'a MergeSpec, chunk: &QualifiedName) -> Parts<'a> {
        Parts {
            spec,
            m,
            chunk: chunk.quoted(),
            cols: quote_list(&spec.columns, None),
            all: quote_list(&m.dest_columns, None),
            seg: quote_ident(&m.segment),
            seg_values: format!("ANY ($1::text::{}[]{})", m.segment_type, collate(m)),
            flag: quote_ident(&free_column("backfill_ext_untouched", &m.dest_columns)),
            marker: quote_ident(&free_column("backfill_old", &m.dest_columns)),
            insert: insert_clause(spec, "false").0,
        }
    }

    /// The key of staging's row `staged` is the key of stored row `stored`.
    fn keys_on(&self, staged: &str, stored: &str) -> String {
        keys_match(&self.spec.conflict, staged, stored)
    }

    /// Each destination column merged: a matched staging row (told by its row's ctid,
    /// never NULL for a joined row) gives the columns the upsert overwrites; `other`
    /// is what every other column takes.
    fn merged_with(&self, other: &dyn Fn(&str) -> String) -> String {
        let cols: Vec<String> = self
            .m
            .dest_columns
            .iter()
            .map(|c| {
                let q = quote_ident(c);
                if self.spec.conflict.update_columns.contains(c) {
                    format!("CASE WHEN n.ctid IS NULL THEN o.{q} ELSE n.{q} END")
                } else {
                    other(&q)
                }
            })
            .collect();
        cols.join(", ")
    }

    fn create(&self) -> [String; 2] {
        let bare = |t: &str| t.trim_start_matches("pg_temp.").to_string();
        [
            format!(
                "CREATE TEMP TABLE {} AS SELECT {} FROM {} WITH NO DATA",
                bare(MERGE_NEW),
                self.cols,
                self.spec.staging.quoted()
            ),
            format!(
                "CREATE TEMP TABLE {} (LIKE {}, {} boolean)",
                bare(MERGE_OLD),
                self.spec.destination.quoted(),
                self.flag
            ),
        ]
    }

    fn take(&self, take_where: &str) -> String {
        super::moves::take_one_per_key(self.spec, take_where, MERGE_NEW)
    }

    fn read_old(&self) -> String {
        format!(
            "WITH w AS (INSERT INTO {MERGE_OLD} ({all}, {flag}) SELECT {}, CASE WHEN n.ctid IS \
             NULL THEN true END FROM {} AS o LEFT JOIN {MERGE_NEW} AS n ON {} \
             WHERE o.{seg} = {seg_values} RETURNING {flag}) \
             SELECT count(*)::int8, count(*) FILTER (WHERE {flag} IS NULL)::int8, 0::int8 FROM w",
            self.merged_with(&|q| format!("o.{q}")),
            self.chunk,
            self.keys_on("n", "o"),
            all = self.all,
            flag = self.flag,
            seg = self.seg,
            seg_values = self.seg_values,
        )
    }

    /// A condition on the segment column alone is tested on the compressed rows. A NULL
    /// among the touched values (a staging row without a segment) is left out: `<> ALL`
    /// of a list holding a NULL is never true, which would call every segment touched.
    fn untouched(&self) -> String {
        format!(
            "SELECT EXISTS (SELECT 1 FROM {} AS c WHERE c.{seg} <> ALL \
             (pg_catalog.array_remove($1::text::{}[], NULL){}) OR c.{seg} IS NULL)",
            self.chunk,
            self.m.segment_type,
            collate(self.m),
            seg = self.seg,
        )
    }

    /// Inserts the staging rows whose key `existing` lacks.
    fn insert_new(&self, existing: &str) -> String {
        format!(
            "WITH moved AS (SELECT {}, n.ctid AS backfill_src FROM {MERGE_NEW} AS n WHERE NOT \
             EXISTS (SELECT 1 FROM {existing} AS o WHERE {})) {}",
            self.cols,
            self.keys_on("n", "o"),
            self.insert
        )
    }

    fn fits_in_memory(&self) -> String {
        // a row's size: the larger of a staging row's (table pages per row) and the
        // chunk's own rows' (a sample of one batch), which hold the columns staging
        // lacks; the array itself stays well under PostgreSQL's 1 GB allocation limit
        let (rows, width) = self.chunk_rows_and_width();
        format!(
            "SELECT {FITS} FROM (SELECT {rows} AS n, \
                          greatest(coalesce((SELECT sum(pg_catalog.pg_relation_size(t.relid)) FROM \
                          pg_catalog.pg_partition_tree('{MERGE_NEW}') AS t), \
                                            pg_catalog.pg_relation_size('{MERGE_NEW}'))::numeric / \
                                            greatest((SELECT count(*) FROM {MERGE_NEW}), 1), \
                                   {width}) AS w) AS size"
        )
    }

    /// The chunk's rows, and the size of a row of a sample of them (one batch), as
    /// two expressions.
    pub(super) fn chunk_rows_and_width(&self) -> (String, String) {
        (
            format!("(SELECT count(*) FROM {})::numeric", self.chunk),
            format!(
                "(SELECT coalesce(avg(pg_catalog.pg_column_size(c.*)), 0) FROM (SELECT * FROM \
                {} LIMIT 1000) AS c)",
                self.chunk
            ),
        )
    }

    /// Whether staging has every column of the destination: rows with new keys can then
    /// be written with the chunk's rows.
    pub(super) fn staging_has_every_column(&self) -> bool {
        self.m.dest_columns.iter().all(|c| self.spec.columns.contains(c))
    }

    /// Every destination column merged from a full join of the chunk's rows (`o`, a
    /// marker column telling them from none, as they have no usable ctid) and staging's
    /// (`n`), and that join.
    fn full_join(&self) -> (String, String) {
        self.full_join_of("", MERGE_NEW)
    }

    /// Like `full_join`, of the chunk's rows `chunk_where` takes (alias `c`; empty for
    /// all) and the staging rows in table `new`.
    pub(super) fn full_join_of(&self, chunk_where: &str, new: &str) -> (String, String) {
        (
            self.merged_with(&|q| {
                format!(
                    "CASE WHEN o.{mk} IS NULL THEN n.{q} ELSE o.{q} \
                END",
                    mk = self.marker
                )
            }),
            format!(
                "(SELECT c.*, true AS {} FROM {} AS c{chunk_where}) AS o FULL JOIN {new} AS n \
                ON {}",
                self.marker,
                self.chunk,
                self.keys_on("n", "o")
            ),
        )
    }

    fn read_merged(&self) -> String {
        let dest = self.spec.destination.quoted();
        if self.staging_has_every_column() {
            // staging has every column: rows with new keys join the array too
            let (merged, from) = self.full_join();
            format!(
                "SELECT pg_catalog.array_agg(ROW({merged})::{dest}), count(*) FILTER (WHERE o.{mk} \
                 AND n.ctid IS NOT NULL)::int8, \
                 count(*) FILTER (WHERE o.{mk} IS NULL)::int8 FROM {from}",
                mk = self.marker
            )
        } else {
            format!(
                "SELECT pg_catalog.array_agg(ROW({})::{dest}), count(*) FILTER (WHERE n.ctid IS \
                 NOT NULL)::int8, 0::int8 \
                 FROM {} AS o LEFT JOIN {MERGE_NEW} AS n ON {}",
                self.merged_with(&|q| format!("o.{q}")),
                self.chunk,
                self.keys_on("n", "o"),
            )
        }
    }

    /// The flag is true for a row no staging row updated, NULL for an updated one and
    /// false for a staging row with a new key.
    fn read_all(&self) -> Option<String> {
        self.staging_has_every_column().then(|| self.read_all_into(MERGE_OLD, "", MERGE_NEW))
    }

    /// `read_all` of the chunk's rows `chunk_where` takes and the staging rows in `new`,
    /// into table `old`.
    pub(super) fn read_all_into(&self, old: &str, chunk_where: &str, new: &str) -> String {
        let (merged, from) = self.full_join_of(chunk_where, new);
        format!(
            "WITH w AS (INSERT INTO {old} ({all}, {flag}) SELECT {merged}, \
             CASE WHEN n.ctid IS NULL THEN true WHEN o.{mk} IS NULL THEN false END FROM {from} \
             RETURNING {flag}) \
             SELECT count(*)::int8, count(*) FILTER (WHERE {flag} IS NULL)::int8, count(*) FILTER \
             (WHERE NOT {flag})::int8 FROM w",
            all = self.all,
            flag = self.flag,
            mk = self.marker,
        )
    }
}

#[cfg(test)]
mod tests;
