//! SQL text builders. Pure: every identifier goes through `ident`, every value is a
//! `$n` parameter (always passed as text and cast here), so these are unit-tested as text.

use crate::columns::Conflict;
use crate::config::ConflictAction;
use crate::ident::{quote_ident, quote_list, QualifiedName};
use crate::timescale::{SpaceRange, TimeKind};

/// Which rows of the staging table a step takes: a time range and, on a
/// space-partitioned hypertable, hash ranges. Bounds are text parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilter {
    pub time_column: String,
    pub kind: TimeKind,
    pub lo: Option<String>,
    pub hi: Option<String>,
    pub space: Vec<SpaceRange>,
    /// Schema TimescaleDB's internal functions live in (for the hash function).
    pub hash_function: String,
}

impl RowFilter {
    /// A filter that takes every row.
    pub fn everything(time_column: &str, kind: TimeKind) -> RowFilter {
        RowFilter {
            time_column: time_column.to_string(),
            kind,
            lo: None,
            hi: None,
            space: vec![],
            hash_function: String::new(),
        }
    }

    /// A chunk range bound (text of the view's range column) as a value comparable to
    /// the time column. TimescaleDB keeps `timestamp` and `date` ranges as if in UTC.
    /// Each is a one-row subquery, so the text parameter is cast once per statement
    /// rather than once per staging row.
    fn bound(kind: TimeKind, param: usize) -> String {
        match kind {
            TimeKind::TimestampTz => format!("(SELECT ${param}::timestamptz)"),
            TimeKind::Timestamp | TimeKind::Date => format!("(SELECT ${param}::timestamptz AT TIME ZONE 'UTC')"),
            TimeKind::Integer => format!("(SELECT ${param}::bigint)"),
        }
    }

    /// The WHERE condition, with parameters numbered from `first`; returns the text and
    /// the values to bind in order.
    pub fn render(&self, alias: &str, first: usize) -> (String, Vec<String>) {
        let col = format!("{alias}.{}", quote_ident(&self.time_column));
        let mut parts = Vec::new();
        let mut params = Vec::new();
        let mut n = first;
        if let Some(lo) = &self.lo {
            parts.push(format!("{col} >= {}", Self::bound(self.kind, n)));
            params.push(lo.clone());
            n += 1;
        }
        if let Some(hi) = &self.hi {
            parts.push(format!("{col} < {}", Self::bound(self.kind, n)));
            params.push(hi.clone());
            n += 1;
        }
        for s in &self.space {
            let hash = format!("{}({alias}.{})", self.hash_function, quote_ident(&s.column));
            if let Some(lo) = s.lo {
                parts.push(format!("{hash} >= (SELECT ${n}::integer)"));
                params.push(lo.to_string());
                n += 1;
            }
            if let Some(hi) = s.hi {
                parts.push(format!("{hash} < (SELECT ${n}::integer)"));
                params.push(hi.to_string());
                n += 1;
            }
        }
        if parts.is_empty() {
            ("true".to_string(), params)
        } else {
            (parts.join(" AND "), params)
        }
    }
}

/// Everything one move statement needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveSpec {
    pub staging: QualifiedName,
    pub destination: QualifiedName,
    /// Columns copied, by name, in the order they are listed.
    pub columns: Vec<String>,
    pub conflict: Conflict,
    pub delete_from_staging: bool,
    /// A natively partitioned destination cannot return system columns, so updates
    /// are told from inserts by looking the keys up before the insert.
    pub dest_partitioned: bool,
}

/// The statement that moves one step's rows: it deletes them from staging and inserts
/// them into the destination in one statement, so a row is never lost nor in both.
/// It returns three bigints: rows taken from staging, rows inserted, rows updated.
pub fn move_rows(spec: &MoveSpec, filter: &RowFilter) -> (String, Vec<String>) {
    let (cond, params) = filter.render("s", 1);
    (move_rows_where(spec, &cond), params)
}

/// Like `move_rows`, for the rows `base` takes that none of `exclude` takes.
pub fn move_rows_excluding(spec: &MoveSpec, base: &RowFilter, exclude: &[RowFilter]) -> (String, Vec<String>) {
    let (mut cond, mut params) = base.render("s", 1);
    for f in exclude {
        let (c, p) = f.render("s", params.len() + 1);
        cond = format!("{cond} AND NOT ({c})");
        params.extend(p);
    }
    (move_rows_where(spec, &cond), params)
}

/// The temporary table a run routes staging rows through: each row's ctid and the
/// number of the chunk it belongs in, written in one scan of the staging table.
pub const ROUTE_TABLE: &str = "pg_temp._backfill_rows";

/// Like `move_rows`, for the rows routed to the chunks numbered `$1` (an int4[] as
/// text). Returns rows `(kind, key, a, b)`: `('moved', chunk number, rows taken, 0)`
/// and `('inserted', chunk oid, rows inserted, rows updated)`.
pub fn move_routed_rows(spec: &MoveSpec) -> String {
    let scols = quote_list(&spec.columns, Some("s"));
    // a TID scan: only the routed rows are visited, never the whole staging table
    let take = format!(
        "DELETE FROM {} AS s WHERE s.ctid = ANY (ARRAY(SELECT r.src FROM {ROUTE_TABLE} AS r WHERE r.idx = ANY ($1::int4[]))) \
         RETURNING {scols}, s.ctid AS backfill_src",
        spec.staging.quoted()
    );
    let (insert, _) = insert_clause(spec, "(d.xmax::text <> '0')");
    format!(
        "WITH moved AS ({take}), ins AS ({insert}, d.tableoid::oid::int8 AS chunk_oid) \
         SELECT 'moved'::text, r.idx::int8, count(*)::int8, 0::int8 FROM moved AS m JOIN {ROUTE_TABLE} AS r ON r.src = m.backfill_src \
         WHERE r.idx = ANY ($1::int4[]) GROUP BY r.idx \
         UNION ALL \
         SELECT 'inserted', chunk_oid, count(*) FILTER (WHERE NOT updated)::int8, count(*) FILTER (WHERE updated)::int8 FROM ins GROUP BY chunk_oid"
    )
}

/// `INSERT INTO dest ... SELECT ... FROM moved [ON CONFLICT ...] RETURNING <updated> AS updated`,
/// and whether it is an upsert.
fn insert_clause(spec: &MoveSpec, updated_expr: &str) -> (String, bool) {
    let cols = quote_list(&spec.columns, None);
    let c = &spec.conflict;
    let upsert = c.action == ConflictAction::Update && !c.target.is_empty() && !c.update_columns.is_empty();
    // one row per key: ON CONFLICT DO UPDATE cannot touch a row twice in one statement
    let source = if upsert {
        format!("SELECT DISTINCT ON ({}) {cols} FROM moved", quote_list(&c.target, None))
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
        format!("INSERT INTO {} AS d ({cols}) {source}{on_conflict} RETURNING {updated} AS updated", spec.destination.quoted()),
        upsert,
    )
}

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
    /// returns (rows written, rows a staging row updated).
    pub read_old: String,
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
    /// Whether the chunk's rows, sized like the step's staging rows, fit in
    /// `maintenance_work_mem` three times over (the rows being aggregated, the array,
    /// and its copy): a rewrite then holds them in memory, not on disk.
    pub fits_in_memory: String,
    /// For a rewrite in memory: every row of the chunk with the staging values applied,
    /// as one array of the destination's row type, the rows a staging row updated, and
    /// the staging rows with new keys the array holds too (all of them when staging has
    /// every column of the destination; none otherwise: they are inserted afterwards).
    pub read_merged: String,
    /// Writes that array (`$1`) into the emptied chunk.
    pub write_merged: String,
    /// After a rewrite in memory: inserts the staging rows whose key the chunk lacks.
    pub insert_new_after_rewrite: String,
    /// Empties a temporary table (in place: it was created in this transaction).
    pub empty_new: String,
    pub empty_old: String,
    /// Drops both temporary tables.
    pub drop: String,
}

/// A column name for MERGE_OLD's "a staging row updated this row" flag that is not
/// one of the destination's columns.
fn flag_column(dest_columns: &[String]) -> String {
    let mut name = "backfill_ext_updated".to_string();
    while dest_columns.contains(&name) {
        name.push('_');
    }
    name
}

pub fn merge_sql(spec: &MoveSpec, m: &MergeSpec, chunk: &QualifiedName, take_where: &str) -> MergeSql {
    let cols = quote_list(&spec.columns, None);
    let scols = quote_list(&spec.columns, Some("s"));
    let target = &spec.conflict.target;
    let keys_on = |a: &str, b: &str| target.iter().map(|k| format!("{a}.{q} = {b}.{q}", q = quote_ident(k))).collect::<Vec<_>>().join(" AND ");
    let seg = quote_ident(&m.segment);
    let seg_values = format!("ANY ($1::text::{}[])", m.segment_type);
    let flag = quote_ident(&flag_column(&m.dest_columns));
    // a matched staging row is told by its row's ctid, never NULL for a joined row;
    // `other` is what a column the upsert does not overwrite takes
    let merged_with = |other: &dyn Fn(&str) -> String| -> Vec<String> {
        m.dest_columns
            .iter()
            .map(|c| {
                let q = quote_ident(c);
                if spec.conflict.update_columns.contains(c) {
                    format!("CASE WHEN n.ctid IS NULL THEN o.{q} ELSE n.{q} END")
                } else {
                    other(&q)
                }
            })
            .collect()
    };
    let merged = merged_with(&|q| format!("o.{q}"));
    let all = quote_list(&m.dest_columns, None);
    let (insert, _) = insert_clause(spec, "false");
    let bare = |t: &str| t.trim_start_matches("pg_temp.").to_string();
    MergeSql {
        create: [
            format!("CREATE TEMP TABLE {} AS SELECT {cols} FROM {} WITH NO DATA", bare(MERGE_NEW), spec.staging.quoted()),
            format!("CREATE TEMP TABLE {} (LIKE {}, {flag} boolean)", bare(MERGE_OLD), spec.destination.quoted()),
        ],
        take: format!(
            "WITH moved AS (DELETE FROM {st} AS s WHERE {take_where} RETURNING {scols}), \
             kept AS (INSERT INTO {MERGE_NEW} ({cols}) SELECT DISTINCT ON ({t}) {cols} FROM moved RETURNING 1) \
             SELECT (SELECT count(*) FROM moved)::int8, (SELECT count(*) FROM kept)::int8",
            st = spec.staging.quoted(),
            t = quote_list(target, None),
        ),
        segments: format!("SELECT array_agg(DISTINCT n.{seg})::text FROM {MERGE_NEW} AS n"),
        read_old: format!(
            "WITH w AS (INSERT INTO {MERGE_OLD} ({all}, {flag}) SELECT {}, n.ctid IS NOT NULL FROM {} AS o LEFT JOIN {MERGE_NEW} AS n ON {} \
             WHERE o.{seg} = {seg_values} RETURNING {flag}) \
             SELECT count(*)::int8, count(*) FILTER (WHERE {flag})::int8 FROM w",
            merged.join(", "),
            chunk.quoted(),
            keys_on("n", "o"),
        ),
        // a condition on the segment column alone is tested on the compressed rows
        untouched: format!(
            "SELECT EXISTS (SELECT 1 FROM {} AS c WHERE c.{seg} <> ALL ($1::text::{}[]) OR c.{seg} IS NULL)",
            chunk.quoted(),
            m.segment_type
        ),
        delete_segments: format!("DELETE FROM {} AS c WHERE c.{seg} = {seg_values}", chunk.quoted()),
        truncate_chunk: format!("TRUNCATE {}", chunk.quoted()),
        write_old: format!("INSERT INTO {} ({all}) SELECT {all} FROM {MERGE_OLD}", chunk.quoted()),
        insert_new: format!(
            "WITH moved AS (SELECT {cols} FROM {MERGE_NEW} AS n WHERE NOT EXISTS (SELECT 1 FROM {MERGE_OLD} AS o WHERE {})) {insert}",
            keys_on("o", "n")
        ),
        fits_in_memory: format!(
            "SELECT 3 * (SELECT count(*) FROM {chunk})::numeric * pg_catalog.pg_relation_size('{MERGE_NEW}') \
                    / greatest((SELECT count(*) FROM {MERGE_NEW}), 1) \
                    <= pg_catalog.pg_size_bytes(pg_catalog.current_setting('maintenance_work_mem'))",
            chunk = chunk.quoted()
        ),
        read_merged: if m.dest_columns.iter().all(|c| spec.columns.contains(c)) {
            // staging has every column: rows with new keys join the array too (a marker
            // column tells the chunk's rows, which have no usable ctid, from none)
            let full = merged_with(&|q| format!("CASE WHEN o.backfill_old IS NULL THEN n.{q} ELSE o.{q} END"));
            format!(
                "SELECT pg_catalog.array_agg(ROW({})::{dest}), count(*) FILTER (WHERE o.backfill_old AND n.ctid IS NOT NULL)::int8, \
                 count(*) FILTER (WHERE o.backfill_old IS NULL)::int8 \
                 FROM (SELECT c.*, true AS backfill_old FROM {} AS c) AS o FULL JOIN {MERGE_NEW} AS n ON {}",
                full.join(", "),
                chunk.quoted(),
                keys_on("n", "o"),
                dest = spec.destination.quoted(),
            )
        } else {
            format!(
                "SELECT pg_catalog.array_agg(ROW({})::{dest}), count(*) FILTER (WHERE n.ctid IS NOT NULL)::int8, 0::int8 \
                 FROM {} AS o LEFT JOIN {MERGE_NEW} AS n ON {}",
                merged.join(", "),
                chunk.quoted(),
                keys_on("n", "o"),
                dest = spec.destination.quoted(),
            )
        },
        write_merged: format!(
            "INSERT INTO {} ({all}) SELECT {} FROM pg_catalog.unnest($1::{}[]) AS x",
            chunk.quoted(),
            quote_list(&m.dest_columns, Some("x")),
            spec.destination.quoted()
        ),
        insert_new_after_rewrite: format!(
            "WITH moved AS (SELECT {cols} FROM {MERGE_NEW} AS n WHERE NOT EXISTS (SELECT 1 FROM {} AS o WHERE {})) {insert}",
            chunk.quoted(),
            keys_on("o", "n")
        ),
        empty_new: format!("TRUNCATE {MERGE_NEW}"),
        empty_old: format!("TRUNCATE {MERGE_OLD}"),
        drop: format!("DROP TABLE {MERGE_NEW}, {MERGE_OLD}"),
    }
}

/// The condition that takes the staging rows routed to chunk number `$1`.
pub fn routed_to_chunk() -> String {
    format!("s.ctid = ANY (ARRAY(SELECT r.src FROM {ROUTE_TABLE} AS r WHERE r.idx = $1::int4))")
}

/// The bounds and the per-row chunk number of `route_by_time` and `count_by_time`:
/// `$1`, `$2` are the chunks' lower and upper bounds as array text, sorted and not
/// overlapping (no space dimension); each row gets the number of the chunk it falls in
/// by binary search. Returns (WITH clause, FROM-WHERE clause).
fn time_buckets(staging: &QualifiedName, time_column: &str, kind: TimeKind) -> (String, String) {
    let t = format!("s.{}", quote_ident(time_column));
    let typed = |param: usize| match kind {
        TimeKind::TimestampTz => format!("${param}::timestamptz[]"),
        TimeKind::Timestamp | TimeKind::Date => format!(
            "ARRAY(SELECT b.v AT TIME ZONE 'UTC' FROM pg_catalog.unnest(${param}::timestamptz[]) WITH ORDINALITY AS b(v, o) ORDER BY b.o)"
        ),
        TimeKind::Integer => format!("${param}::int8[]"),
    };
    // the bounds are cast once (a materialized CTE), not once per staging row
    (
        format!("WITH bounds AS MATERIALIZED (SELECT {} AS lo, {} AS hi)", typed(1), typed(2)),
        format!(
            "FROM bounds, {st} AS s, LATERAL (SELECT pg_catalog.width_bucket({t}, bounds.lo) AS b) AS w WHERE w.b > 0 AND {t} < bounds.hi[w.b]",
            st = staging.quoted()
        ),
    )
}

/// Writes the route table in one scan of staging (see `time_buckets`).
pub fn route_by_time(staging: &QualifiedName, time_column: &str, kind: TimeKind) -> String {
    let (with, from) = time_buckets(staging, time_column, kind);
    format!("{with} INSERT INTO {ROUTE_TABLE} (src, idx) SELECT s.ctid, w.b {from}")
}

/// Counts the staging rows of each chunk in one scan (see `time_buckets`): rows of
/// (chunk number, rows).
pub fn count_by_time(staging: &QualifiedName, time_column: &str, kind: TimeKind) -> String {
    let (with, _) = time_buckets(staging, time_column, kind);
    let t = format!("s.{}", quote_ident(time_column));
    // the bucket computed once per row (cheaper than the routing form's lateral subquery)
    format!(
        "{with} SELECT x.b, count(*) FILTER (WHERE x.t < x.hi[x.b])::int8 FROM \
         (SELECT pg_catalog.width_bucket({t}, bounds.lo) AS b, {t} AS t, bounds.hi FROM bounds, {} AS s) AS x WHERE x.b > 0 GROUP BY x.b",
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
    (format!("SELECT s.ctid AS src, CASE {} END AS idx FROM {} AS s", arms.join(" "), staging.quoted()), params)
}

/// Writes the route table testing each chunk's filter in turn.
pub fn route_by_filters(staging: &QualifiedName, filters: &[RowFilter]) -> (String, Vec<String>) {
    let (rows, params) = filter_buckets(staging, filters);
    (format!("INSERT INTO {ROUTE_TABLE} (src, idx) SELECT src, idx FROM ({rows}) AS x WHERE idx IS NOT NULL"), params)
}

/// Counts the staging rows of each chunk, testing each chunk's filter in turn.
pub fn count_by_filters(staging: &QualifiedName, filters: &[RowFilter]) -> (String, Vec<String>) {
    let (rows, params) = filter_buckets(staging, filters);
    (format!("SELECT idx, count(*)::int8 FROM ({rows}) AS x WHERE idx IS NOT NULL GROUP BY idx"), params)
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
         RETURNING {scols}, ($3::int4[])[{b}] AS backfill_idx), \
         ins AS ({insert}, d.tableoid::oid::int8 AS chunk_oid) \
         SELECT 'moved'::text, m.backfill_idx::int8, count(*)::int8, 0::int8 FROM moved AS m GROUP BY m.backfill_idx \
         UNION ALL \
         SELECT 'inserted', chunk_oid, count(*) FILTER (WHERE NOT updated)::int8, count(*) FILTER (WHERE updated)::int8 FROM ins GROUP BY chunk_oid",
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
        "DELETE FROM {} AS s WHERE {} RETURNING {scols}, CASE {} END AS backfill_idx",
        spec.staging.quoted(),
        any.join(" OR "),
        arms.join(" ")
    );
    let (insert, _) = insert_clause(spec, "(d.xmax::text <> '0')");
    (
        format!(
            "WITH moved AS ({take}), ins AS ({insert}, d.tableoid::oid::int8 AS chunk_oid) \
             SELECT 'moved'::text, m.backfill_idx::int8, count(*)::int8, 0::int8 FROM moved AS m GROUP BY m.backfill_idx \
             UNION ALL \
             SELECT 'inserted', chunk_oid, count(*) FILTER (WHERE NOT updated)::int8, count(*) FILTER (WHERE updated)::int8 FROM ins GROUP BY chunk_oid"
        ),
        params,
    )
}

/// Counts, up to `$2`, the routed rows of chunk `$1` whose segment already has batches in `chunk`.
pub fn count_routed_meeting_segments(staging: &QualifiedName, chunk: &QualifiedName, segmentby: &[String]) -> String {
    let join = segmentby.iter().map(|c| format!("c.{q} = s.{q}", q = quote_ident(c))).collect::<Vec<_>>().join(" AND ");
    format!(
        "SELECT count(*)::bigint FROM (SELECT 1 FROM {} AS s \
         WHERE s.ctid = ANY (ARRAY(SELECT r.src FROM {ROUTE_TABLE} AS r WHERE r.idx = $1::int4)) \
         AND EXISTS (SELECT 1 FROM {} AS c WHERE {join}) LIMIT $2::int8) AS m",
        staging.quoted(),
        chunk.quoted()
    )
}

/// An array literal of text values, for a `$n::type[]` parameter.
pub fn array_literal(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("{{{}}}", items.join(","))
}

fn move_rows_where(spec: &MoveSpec, cond: &str) -> String {
    let scols = quote_list(&spec.columns, Some("s"));
    let take = if spec.delete_from_staging {
        format!("DELETE FROM {} AS s WHERE {cond} RETURNING {scols}", spec.staging.quoted())
    } else {
        format!("SELECT {scols} FROM {} AS s WHERE {cond}", spec.staging.quoted())
    };
    let dest = spec.destination.quoted();
    let c = &spec.conflict;
    // inserted and updated rows: an updated row version has a transaction id in xmax
    let updated_expr = if spec.dest_partitioned { "true" } else { "(d.xmax::text <> '0')" };
    let (insert, upsert) = insert_clause(spec, updated_expr);
    let counts = if !upsert {
        "(SELECT count(*) FROM ins)::bigint, 0::bigint".to_string()
    } else if !spec.dest_partitioned {
        "(SELECT count(*) FILTER (WHERE NOT updated) FROM ins)::bigint, (SELECT count(*) FILTER (WHERE updated) FROM ins)::bigint".to_string()
    } else {
        let join = c.target.iter().map(|k| format!("e.{q} = m.{q}", q = quote_ident(k))).collect::<Vec<_>>().join(" AND ");
        let keys = quote_list(&c.target, Some("m"));
        let existing = format!("(SELECT count(DISTINCT ROW({keys})) FROM moved AS m WHERE EXISTS (SELECT 1 FROM {dest} AS e WHERE {join}))::bigint");
        format!("(SELECT count(*) FROM ins)::bigint - {existing}, {existing}")
    };
    format!("WITH moved AS ({take}), ins AS ({insert}) SELECT (SELECT count(*) FROM moved)::bigint, {counts}")
}

/// For RESTRICT: the first key among the step's staging rows that already exists in the
/// destination or appears twice in staging, as `(col, ...)=(value, ...)` text; no row
/// when there is none.
pub fn restrict_probe(spec: &MoveSpec, filter: &RowFilter) -> (String, Vec<String>) {
    let (cond, params) = filter.render("s", 1);
    let t = &spec.conflict.target;
    let keys = quote_list(t, Some("s"));
    let join = t
        .iter()
        .map(|k| format!("d.{q} = s.{q}", q = quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let label = format!("({})", t.iter().map(|k| k.replace('\'', "''")).collect::<Vec<_>>().join(", "));
    let sql = format!(
        "SELECT '{label}=' || k FROM (\
         (SELECT ROW({keys})::text AS k FROM {st} AS s WHERE {cond} AND EXISTS (SELECT 1 FROM {dest} AS d WHERE {join}) LIMIT 1) \
         UNION ALL \
         (SELECT ROW({keys})::text FROM {st} AS s WHERE {cond} GROUP BY {keys} HAVING count(*) > 1 LIMIT 1)\
         ) probe LIMIT 1",
        st = spec.staging.quoted(),
        dest = spec.destination.quoted(),
    );
    (sql, params)
}

/// Counts, up to the last parameter, the staging rows a filter takes whose segment
/// (segmentby values) already has compressed batches in `chunk`.
pub fn count_rows_meeting_segments(
    staging: &QualifiedName,
    filter: &RowFilter,
    chunk: &QualifiedName,
    segmentby: &[String],
) -> (String, Vec<String>) {
    let (cond, params) = filter.render("s", 1);
    let join = segmentby.iter().map(|c| format!("c.{q} = s.{q}", q = quote_ident(c))).collect::<Vec<_>>().join(" AND ");
    (
        format!(
            "SELECT count(*)::bigint FROM (SELECT 1 FROM {} AS s WHERE {cond} AND EXISTS (SELECT 1 FROM {} AS c WHERE {join}) LIMIT ${}::int8) AS m",
            staging.quoted(),
            chunk.quoted(),
            params.len() + 1
        ),
        params,
    )
}

/// The staging table's time span and its rows with a NULL time, as text.
pub fn staging_span(staging: &QualifiedName, time_column: &str) -> String {
    let t = format!("s.{}", quote_ident(time_column));
    format!(
        "SELECT min({t})::text, max({t})::text, count(*)::bigint, (count(*) - count({t}))::bigint FROM {} AS s",
        staging.quoted()
    )
}

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
    use crate::config::ConflictAction;

    fn spec(action: ConflictAction, target: &[&str], update: &[&str], delete: bool) -> MoveSpec {
        MoveSpec {
            staging: QualifiedName::new("public", "backfill_event_data"),
            destination: QualifiedName::new("public", "event_data"),
            columns: vec!["time".into(), "device_id".into(), "value".into()],
            conflict: Conflict {
                action,
                target: target.iter().map(|s| s.to_string()).collect(),
                update_columns: update.iter().map(|s| s.to_string()).collect(),
            },
            delete_from_staging: delete,
            dest_partitioned: false,
        }
    }

    fn day_filter(kind: TimeKind) -> RowFilter {
        RowFilter {
            time_column: "time".into(),
            kind,
            lo: Some("2024-01-01 00:00:00+00".into()),
            hi: Some("2024-01-02 00:00:00+00".into()),
            space: vec![],
            hash_function: "_timescaledb_functions.get_partition_hash".into(),
        }
    }

    #[test]
    fn filter_by_time_kind() {
        let (c, p) = day_filter(TimeKind::TimestampTz).render("s", 1);
        assert_eq!(c, "s.\"time\" >= (SELECT $1::timestamptz) AND s.\"time\" < (SELECT $2::timestamptz)");
        assert_eq!(p, ["2024-01-01 00:00:00+00", "2024-01-02 00:00:00+00"]);
        let (c, _) = day_filter(TimeKind::Timestamp).render("s", 3);
        assert_eq!(c, "s.\"time\" >= (SELECT $3::timestamptz AT TIME ZONE 'UTC') AND s.\"time\" < (SELECT $4::timestamptz AT TIME ZONE 'UTC')");
        let (c, _) = day_filter(TimeKind::Integer).render("x", 1);
        assert_eq!(c, "x.\"time\" >= (SELECT $1::bigint) AND x.\"time\" < (SELECT $2::bigint)");
        let (c, p) = RowFilter::everything("time", TimeKind::Date).render("s", 1);
        assert_eq!((c.as_str(), p.len()), ("true", 0));
    }

    #[test]
    fn filter_with_space_ranges() {
        let mut f = day_filter(TimeKind::TimestampTz);
        f.hi = None;
        f.space = vec![SpaceRange { column: "device id".into(), lo: Some(10), hi: Some(20) }];
        let (c, p) = f.render("s", 1);
        assert_eq!(
            c,
            "s.\"time\" >= (SELECT $1::timestamptz) AND _timescaledb_functions.get_partition_hash(s.\"device id\") >= (SELECT $2::integer) AND _timescaledb_functions.get_partition_hash(s.\"device id\") < (SELECT $3::integer)"
        );
        assert_eq!(p, ["2024-01-01 00:00:00+00", "10", "20"]);
    }

    #[test]
    fn move_do_nothing_with_target() {
        let (sql, p) = move_rows(&spec(ConflictAction::Nothing, &["device_id", "time"], &[], true), &day_filter(TimeKind::TimestampTz));
        assert_eq!(p.len(), 2);
        assert!(sql.starts_with("WITH moved AS (DELETE FROM \"public\".\"backfill_event_data\" AS s WHERE s.\"time\" >= (SELECT $1::timestamptz) AND s.\"time\" < (SELECT $2::timestamptz) RETURNING s.\"time\", s.\"device_id\", s.\"value\"), "), "{sql}");
        assert!(sql.contains("INSERT INTO \"public\".\"event_data\" AS d (\"time\", \"device_id\", \"value\") SELECT \"time\", \"device_id\", \"value\" FROM moved ON CONFLICT (\"device_id\", \"time\") DO NOTHING RETURNING"), "{sql}");
    }

    #[test]
    fn move_do_nothing_without_unique_constraint() {
        let (sql, _) = move_rows(&spec(ConflictAction::Nothing, &[], &[], true), &day_filter(TimeKind::TimestampTz));
        assert!(sql.contains("FROM moved ON CONFLICT DO NOTHING RETURNING"), "{sql}");
    }

    #[test]
    fn move_update_dedups_and_sets_columns() {
        let (sql, _) = move_rows(&spec(ConflictAction::Update, &["device_id", "time"], &["value"], true), &day_filter(TimeKind::TimestampTz));
        assert!(sql.contains("SELECT DISTINCT ON (\"device_id\", \"time\") \"time\", \"device_id\", \"value\" FROM moved ON CONFLICT (\"device_id\", \"time\") DO UPDATE SET \"value\" = EXCLUDED.\"value\" RETURNING"), "{sql}");
    }

    #[test]
    fn move_update_with_nothing_to_update_is_do_nothing() {
        let (sql, _) = move_rows(&spec(ConflictAction::Update, &["device_id", "time"], &[], true), &day_filter(TimeKind::TimestampTz));
        assert!(sql.contains("FROM moved ON CONFLICT (\"device_id\", \"time\") DO NOTHING"), "{sql}");
    }

    #[test]
    fn move_counts_inserts_and_updates() {
        let (sql, _) = move_rows(&spec(ConflictAction::Nothing, &[], &[], true), &day_filter(TimeKind::TimestampTz));
        assert!(sql.ends_with("SELECT (SELECT count(*) FROM moved)::bigint, (SELECT count(*) FROM ins)::bigint, 0::bigint"), "{sql}");
        let mut s = spec(ConflictAction::Update, &["device_id", "time"], &["value"], true);
        let (sql, _) = move_rows(&s, &day_filter(TimeKind::TimestampTz));
        assert!(sql.contains("RETURNING (d.xmax::text <> '0') AS updated"), "{sql}");
        s.dest_partitioned = true;
        let (sql, _) = move_rows(&s, &day_filter(TimeKind::TimestampTz));
        assert!(!sql.contains("xmax"), "{sql}");
        assert!(sql.contains("count(DISTINCT ROW(m.\"device_id\", m.\"time\")) FROM moved AS m WHERE EXISTS (SELECT 1 FROM \"public\".\"event_data\" AS e WHERE e.\"device_id\" = m.\"device_id\" AND e.\"time\" = m.\"time\")"), "{sql}");
    }

    #[test]
    fn move_restrict_has_no_on_conflict() {
        let (sql, _) = move_rows(&spec(ConflictAction::Restrict, &["device_id", "time"], &[], true), &day_filter(TimeKind::TimestampTz));
        assert!(!sql.contains("ON CONFLICT"), "{sql}");
    }

    #[test]
    fn move_keep_staging_selects() {
        let (sql, _) = move_rows(&spec(ConflictAction::Nothing, &[], &[], false), &day_filter(TimeKind::TimestampTz));
        assert!(sql.starts_with("WITH moved AS (SELECT s.\"time\", s.\"device_id\", s.\"value\" FROM \"public\".\"backfill_event_data\" AS s WHERE"), "{sql}");
        assert!(!sql.contains("DELETE"));
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
    fn move_excluding_numbers_parameters_on() {
        let mut a = day_filter(TimeKind::TimestampTz);
        a.space = vec![SpaceRange { column: "d".into(), lo: Some(1), hi: None }];
        let b = day_filter(TimeKind::TimestampTz);
        let (sql, p) = move_rows_excluding(&spec(ConflictAction::Nothing, &[], &[], false), &RowFilter::everything("time", TimeKind::TimestampTz), &[a, b]);
        assert!(sql.contains("WHERE true AND NOT (s.\"time\" >= (SELECT $1::timestamptz) AND s.\"time\" < (SELECT $2::timestamptz) AND _timescaledb_functions.get_partition_hash(s.\"d\") >= (SELECT $3::integer)) AND NOT (s.\"time\" >= (SELECT $4::timestamptz) AND s.\"time\" < (SELECT $5::timestamptz))"), "{sql}");
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn routed_moves_and_routing() {
        let sql = move_routed_rows(&spec(ConflictAction::Update, &["device_id", "time"], &["value"], true));
        assert!(sql.starts_with("WITH moved AS (DELETE FROM \"public\".\"backfill_event_data\" AS s WHERE s.ctid = ANY (ARRAY(SELECT r.src FROM pg_temp._backfill_rows AS r WHERE r.idx = ANY ($1::int4[]))) RETURNING s.\"time\", s.\"device_id\", s.\"value\", s.ctid AS backfill_src)"), "{sql}");
        assert!(sql.contains("ON CONFLICT (\"device_id\", \"time\") DO UPDATE SET \"value\" = EXCLUDED.\"value\" RETURNING (d.xmax::text <> '0') AS updated, d.tableoid::oid::int8 AS chunk_oid"), "{sql}");
        assert!(sql.contains("JOIN pg_temp._backfill_rows AS r ON r.src = m.backfill_src WHERE r.idx = ANY ($1::int4[]) GROUP BY r.idx") && sql.contains("GROUP BY chunk_oid"), "{sql}");
        let sql = move_routed_rows(&spec(ConflictAction::Nothing, &[], &[], true));
        assert!(sql.contains("ON CONFLICT DO NOTHING RETURNING false AS updated"), "{sql}");
        let r = route_by_time(&QualifiedName::new("public", "st"), "time", TimeKind::TimestampTz);
        assert!(r.starts_with("WITH bounds AS MATERIALIZED (SELECT $1::timestamptz[] AS lo, $2::timestamptz[] AS hi) INSERT INTO pg_temp._backfill_rows"), "{r}");
        assert!(r.contains("pg_catalog.width_bucket(s.\"time\", bounds.lo)") && r.contains("s.\"time\" < bounds.hi[w.b]"), "{r}");
        let r = route_by_time(&QualifiedName::new("public", "st"), "t", TimeKind::Date);
        assert!(r.contains("ARRAY(SELECT b.v AT TIME ZONE 'UTC' FROM pg_catalog.unnest($1::timestamptz[]) WITH ORDINALITY AS b(v, o) ORDER BY b.o)"), "{r}");
        let (r, p) = route_by_filters(&QualifiedName::new("public", "st"), &[day_filter(TimeKind::Integer), day_filter(TimeKind::Integer)]);
        assert!(r.contains("CASE WHEN s.\"time\" >= (SELECT $1::bigint) AND s.\"time\" < (SELECT $2::bigint) THEN 1 WHEN s.\"time\" >= (SELECT $3::bigint) AND s.\"time\" < (SELECT $4::bigint) THEN 2 END"), "{r}");
        assert_eq!(p.len(), 4);
        // counting uses the same chunk numbers, without the table
        let c = count_by_time(&QualifiedName::new("public", "st"), "time", TimeKind::TimestampTz);
        assert!(c.starts_with("WITH bounds AS MATERIALIZED (SELECT $1::timestamptz[] AS lo, $2::timestamptz[] AS hi) SELECT x.b, count(*) FILTER (WHERE x.t < x.hi[x.b])::int8 FROM"), "{c}");
        assert!(c.ends_with("(SELECT pg_catalog.width_bucket(s.\"time\", bounds.lo) AS b, s.\"time\" AS t, bounds.hi FROM bounds, \"public\".\"st\" AS s) AS x WHERE x.b > 0 GROUP BY x.b"), "{c}");
        let (c, p) = count_by_filters(&QualifiedName::new("public", "st"), &[day_filter(TimeKind::Integer), day_filter(TimeKind::Integer)]);
        assert!(c.starts_with("SELECT idx, count(*)::int8 FROM (SELECT s.ctid AS src, CASE WHEN") && c.ends_with("WHERE idx IS NOT NULL GROUP BY idx"), "{c}");
        assert_eq!(p.len(), 4);
        let m = move_bucketed_rows(&spec(ConflictAction::Nothing, &[], &[], true), "time", TimeKind::TimestampTz);
        assert!(m.starts_with("WITH bounds AS MATERIALIZED (SELECT $1::timestamptz[] AS lo, $2::timestamptz[] AS hi), moved AS (DELETE FROM \"public\".\"backfill_event_data\" AS s USING bounds WHERE pg_catalog.width_bucket(s.\"time\", bounds.lo) > 0 AND s.\"time\" < bounds.hi[pg_catalog.width_bucket(s.\"time\", bounds.lo)]"), "{m}");
        assert!(m.contains("($3::int4[])[pg_catalog.width_bucket(s.\"time\", bounds.lo)] AS backfill_idx") && m.contains("GROUP BY m.backfill_idx"), "{m}");
        let (m, p) = move_chunk_rows(&spec(ConflictAction::Nothing, &[], &[], true), &[(3, day_filter(TimeKind::TimestampTz)), (7, day_filter(TimeKind::TimestampTz))]);
        assert!(m.contains("WHERE (s.\"time\" >= (SELECT $1::timestamptz) AND s.\"time\" < (SELECT $2::timestamptz)) OR (s.\"time\" >= (SELECT $3::timestamptz)"), "{m}");
        assert!(m.contains("CASE WHEN s.\"time\" >= (SELECT $1::timestamptz) AND s.\"time\" < (SELECT $2::timestamptz) THEN 3 WHEN"), "{m}");
        assert!(m.contains("THEN 7 END AS backfill_idx") && m.contains("GROUP BY m.backfill_idx") && m.contains("GROUP BY chunk_oid"), "{m}");
        assert_eq!(p.len(), 4);
        assert_eq!(array_literal(&["2024-01-01 00:00:00+00".into(), "a\"b\\c".into()]), "{\"2024-01-01 00:00:00+00\",\"a\\\"b\\\\c\"}");
        let q = count_routed_meeting_segments(&QualifiedName::new("public", "st"), &QualifiedName::new("_ti", "c1"), &["device_id".into()]);
        assert!(q.contains("FROM \"public\".\"st\" AS s WHERE s.ctid = ANY (ARRAY(SELECT r.src FROM pg_temp._backfill_rows AS r WHERE r.idx = $1::int4)) AND EXISTS (SELECT 1 FROM \"_ti\".\"c1\" AS c WHERE c.\"device_id\" = s.\"device_id\") LIMIT $2::int8) AS m"), "{q}");
    }

    #[test]
    fn merge_statements() {
        let mut s = spec(ConflictAction::Update, &["device_id", "time"], &["value"], true);
        s.columns = vec!["time".into(), "device_id".into(), "value".into()];
        let m = MergeSpec {
            dest_columns: vec!["time".into(), "device_id".into(), "value".into(), "note".into()],
            segment: "device_id".into(),
            segment_type: "integer".into(),
        };
        let q = merge_sql(&s, &m, &QualifiedName::new("_ti", "c1"), &routed_to_chunk());
        assert!(q.take.contains("WHERE s.ctid = ANY (ARRAY(SELECT r.src FROM pg_temp._backfill_rows AS r WHERE r.idx = $1::int4)) RETURNING"), "{}", q.take);
        assert!(q.take.contains("INSERT INTO pg_temp._backfill_new (\"time\", \"device_id\", \"value\") SELECT DISTINCT ON (\"device_id\", \"time\")"), "{}", q.take);
        assert_eq!(
            q.read_old,
            "WITH w AS (INSERT INTO pg_temp._backfill_old (\"time\", \"device_id\", \"value\", \"note\", \"backfill_ext_updated\") SELECT o.\"time\", o.\"device_id\", \
             CASE WHEN n.ctid IS NULL THEN o.\"value\" ELSE n.\"value\" END, o.\"note\", n.ctid IS NOT NULL FROM \"_ti\".\"c1\" AS o \
             LEFT JOIN pg_temp._backfill_new AS n ON n.\"device_id\" = o.\"device_id\" AND n.\"time\" = o.\"time\" \
             WHERE o.\"device_id\" = ANY ($1::text::integer[]) RETURNING \"backfill_ext_updated\") \
             SELECT count(*)::int8, count(*) FILTER (WHERE \"backfill_ext_updated\")::int8 FROM w"
        );
        assert_eq!(q.create[1], "CREATE TEMP TABLE _backfill_old (LIKE \"public\".\"event_data\", \"backfill_ext_updated\" boolean)");
        assert_eq!(q.untouched, "SELECT EXISTS (SELECT 1 FROM \"_ti\".\"c1\" AS c WHERE c.\"device_id\" <> ALL ($1::text::integer[]) OR c.\"device_id\" IS NULL)");
        assert_eq!(q.truncate_chunk, "TRUNCATE \"_ti\".\"c1\"");
        // staging lacks "note": new keys are inserted after the rewrite (so "note" gets its default)
        assert_eq!(
            q.read_merged,
            "SELECT pg_catalog.array_agg(ROW(o.\"time\", o.\"device_id\", CASE WHEN n.ctid IS NULL THEN o.\"value\" ELSE n.\"value\" END, o.\"note\")::\"public\".\"event_data\"), \
             count(*) FILTER (WHERE n.ctid IS NOT NULL)::int8, 0::int8 FROM \"_ti\".\"c1\" AS o LEFT JOIN pg_temp._backfill_new AS n ON n.\"device_id\" = o.\"device_id\" AND n.\"time\" = o.\"time\""
        );
        // staging has every column: one full join
        let mut s2 = s.clone();
        s2.columns.push("note".into());
        let full = merge_sql(&s2, &m, &QualifiedName::new("_ti", "c1"), "true").read_merged;
        assert!(full.contains("CASE WHEN o.backfill_old IS NULL THEN n.\"time\" ELSE o.\"time\" END"), "{full}");
        assert!(full.contains("CASE WHEN n.ctid IS NULL THEN o.\"value\" ELSE n.\"value\" END"), "{full}");
        assert!(full.contains("FROM (SELECT c.*, true AS backfill_old FROM \"_ti\".\"c1\" AS c) AS o FULL JOIN pg_temp._backfill_new AS n"), "{full}");
        assert!(full.contains("count(*) FILTER (WHERE o.backfill_old IS NULL)::int8"), "{full}");
        assert_eq!(
            q.write_merged,
            "INSERT INTO \"_ti\".\"c1\" (\"time\", \"device_id\", \"value\", \"note\") SELECT x.\"time\", x.\"device_id\", x.\"value\", x.\"note\" FROM pg_catalog.unnest($1::\"public\".\"event_data\"[]) AS x"
        );
        assert!(q.insert_new_after_rewrite.contains("NOT EXISTS (SELECT 1 FROM \"_ti\".\"c1\" AS o WHERE o.\"device_id\" = n.\"device_id\" AND o.\"time\" = n.\"time\")"), "{}", q.insert_new_after_rewrite);
        assert!(q.fits_in_memory.starts_with("SELECT 3 * (SELECT count(*) FROM \"_ti\".\"c1\")::numeric"), "{}", q.fits_in_memory);
        assert!(q.fits_in_memory.contains("<= pg_catalog.pg_size_bytes(pg_catalog.current_setting('maintenance_work_mem'))"), "{}", q.fits_in_memory);
        // the flag column never takes a destination column's name
        let mut m2 = m.clone();
        m2.dest_columns.push("backfill_ext_updated".into());
        assert!(merge_sql(&s, &m2, &QualifiedName::new("_ti", "c1"), "true").create[1].contains("\"backfill_ext_updated_\" boolean"));
        assert_eq!(q.delete_segments, "DELETE FROM \"_ti\".\"c1\" AS c WHERE c.\"device_id\" = ANY ($1::text::integer[])");
        assert!(q.write_old.starts_with("INSERT INTO \"_ti\".\"c1\" (\"time\", \"device_id\", \"value\", \"note\") SELECT"), "{}", q.write_old);
        assert!(q.insert_new.contains("NOT EXISTS (SELECT 1 FROM pg_temp._backfill_old AS o WHERE o.\"device_id\" = n.\"device_id\" AND o.\"time\" = n.\"time\"))"), "{}", q.insert_new);
        assert!(q.insert_new.contains("ON CONFLICT (\"device_id\", \"time\") DO UPDATE SET \"value\" = EXCLUDED.\"value\""), "{}", q.insert_new);
    }

    #[test]
    fn restrict_probe_text() {
        let (sql, p) = restrict_probe(&spec(ConflictAction::Restrict, &["device_id", "time"], &[], true), &day_filter(TimeKind::TimestampTz));
        assert_eq!(p.len(), 2);
        assert!(sql.starts_with("SELECT '(device_id, time)=' || k FROM ((SELECT ROW(s.\"device_id\", s.\"time\")::text AS k FROM \"public\".\"backfill_event_data\" AS s WHERE"), "{sql}");
        assert!(sql.contains("EXISTS (SELECT 1 FROM \"public\".\"event_data\" AS d WHERE d.\"device_id\" = s.\"device_id\" AND d.\"time\" = s.\"time\")"), "{sql}");
        assert!(sql.contains("GROUP BY s.\"device_id\", s.\"time\" HAVING count(*) > 1"), "{sql}");
        // a quote in a column name cannot end the label literal
        let (sql, _) = restrict_probe(&spec(ConflictAction::Restrict, &["o'k"], &[], true), &day_filter(TimeKind::TimestampTz));
        assert!(sql.starts_with("SELECT '(o''k)=' || k"), "{sql}");
    }

    #[test]
    fn rows_meeting_segments() {
        let (q, p) = count_rows_meeting_segments(
            &QualifiedName::new("public", "st"),
            &day_filter(TimeKind::TimestampTz),
            &QualifiedName::new("_timescaledb_internal", "_hyper_1_1_chunk"),
            &["device_id".to_string(), "site".to_string()],
        );
        assert!(q.ends_with("AND EXISTS (SELECT 1 FROM \"_timescaledb_internal\".\"_hyper_1_1_chunk\" AS c WHERE c.\"device_id\" = s.\"device_id\" AND c.\"site\" = s.\"site\") LIMIT $3::int8) AS m"), "{q}");
        assert_eq!(p.len(), 2);
    }

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
