//! The statements that move a step's rows: each deletes them from staging and
//! inserts them into the destination in one statement, so a row is never lost nor
//! in both; and the RESTRICT probe that runs before.

use super::keys::{can_meet, keys_match, one_per_key, staged_key};
use super::route::{bounds_cte, routed_rows, routed_where};
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

/// The staging rows `cond` takes (alias `s`), deleted from staging unless the config
/// keeps them, with their `ctid` as `backfill_src`.
fn take_rows(spec: &MoveSpec, cond: &str) -> String {
    let scols = quote_list(&spec.columns, Some("s"));
    if spec.delete_from_staging {
        format!(
            "DELETE FROM {} AS s WHERE {cond} RETURNING {scols}, s.ctid AS backfill_src",
            spec.staging.quoted()
        )
    } else {
        format!(
            "SELECT {scols}, s.ctid AS backfill_src FROM {} AS s WHERE {cond}",
            spec.staging.quoted()
        )
    }
}

/// The statement that moves the staging rows `cond` takes (alias `s`) into a
/// destination with nothing to conflict with, in `order`
/// (`compression_order_by`), for TimescaleDB to write as compressed batches. The
/// insert is the statement itself, with no `RETURNING` (TimescaleDB's direct
/// compression returns no rows): its row count is the rows moved.
pub fn compress_rows(spec: &MoveSpec, cond: &str, order: &str) -> String {
    let cols = quote_list(&spec.columns, None);
    // TimescaleDB compresses directly only where the planner expects 10 rows or more, and
    // the planner cannot see through staging's filter: joined to one row it expects 100
    // of, the rows are estimated at a hundred times what the filter lets through
    format!(
        "WITH moved AS ({}) INSERT INTO {} ({cols}) SELECT {cols} FROM moved, \
         pg_catalog.json_array_elements('[0]') AS one(backfill_one) ORDER BY {order}",
        take_rows(spec, cond),
        spec.destination.quoted()
    )
}

/// Moves the staging rows `take_where` selects (alias `s`) into the temporary table
/// `into`, one per key (`one_per_key`); returns (rows taken, rows kept). A merge's and
/// new segments' first statement.
pub fn take_one_per_key(spec: &MoveSpec, take_where: &str, into: &str) -> String {
    let cols = quote_list(&spec.columns, None);
    format!(
        "WITH moved AS (DELETE FROM {} AS s WHERE {take_where} RETURNING {}, s.ctid AS \
         backfill_src), \
         kept AS (INSERT INTO {into} ({cols}) {} RETURNING 1) \
         SELECT (SELECT count(*) FROM moved)::int8, (SELECT count(*) FROM kept)::int8",
        spec.staging.quoted(),
        quote_list(&spec.columns, Some("s")),
        one_per_key(&spec.conflict, &cols, "moved", "backfill_src"),
    )
}

/// Moves every staging row into the destination in one statement, sorted by `order`
/// (TimescaleDB's direct compression writes them as compressed batches); with
/// `lock_staging` before it and `truncate_staging` after it, in one transaction (see
/// `strategy::whole`).
pub fn insert_all_sorted(spec: &MoveSpec, order: &str) -> String {
    let cols = quote_list(&spec.columns, None);
    format!(
        "INSERT INTO {} ({cols}) SELECT {cols} FROM ONLY {} ORDER BY {order}",
        spec.destination.quoted(),
        spec.staging.quoted()
    )
}

/// Locks staging against writers (reads go on), or fails at once (55P03) where one
/// holds it.
pub fn lock_staging(spec: &MoveSpec) -> String {
    format!("LOCK TABLE ONLY {} IN EXCLUSIVE MODE NOWAIT", spec.staging.quoted())
}

/// Empties staging, every row of which `insert_all_sorted` moved.
pub fn truncate_staging(spec: &MoveSpec) -> String {
    format!("TRUNCATE ONLY {}", spec.staging.quoted())
}

fn move_rows_where(spec: &MoveSpec, cond: &str) -> String {
    let take = take_rows(spec, cond);
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

/// The order rows go in as compressed batches (`compression_order_by`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressOrder {
    /// The `ORDER BY` list.
    pub by: String,
    /// Whether it holds every column TimescaleDB sorts a batch by: rows sorted so come
    /// as TimescaleDB would sort them, and it need not sort them again.
    pub complete: bool,
}

/// The `ORDER BY` list of rows compressed as TimescaleDB compresses `order`'s columns
/// (`catalog::compression_order`: segmentby columns, then orderby columns with their
/// direction), each compared by the destination column's collation (`collation`), over
/// the columns a step copies; None where it names none of them.
pub fn compression_order_by(
    order: &[(String, Option<(bool, bool)>)],
    copied: &[String],
    collation: &dyn Fn(&str) -> Option<String>,
) -> Option<CompressOrder> {
    let items: Vec<String> = order
        .iter()
        .filter(|(c, _)| copied.contains(c))
        .map(|(c, dir)| {
            let col = match collation(c) {
                Some(coll) => format!("{} COLLATE {coll}", quote_ident(c)),
                None => quote_ident(c),
            };
            match dir {
                None => col,
                Some((asc, nulls_first)) => format!(
                    "{col} {} NULLS {}",
                    if *asc { "ASC" } else { "DESC" },
                    if *nulls_first { "FIRST" } else { "LAST" }
                ),
            }
        })
        .collect();
    let complete = items.len() == order.len();
    (!items.is_empty()).then(|| CompressOrder { by: items.join(", "), complete })
}

/// Like `move_rows`, for the rows routed to the chunks numbered `$1` (an int4[] as
/// text). Returns rows `(kind, key, a, b)`: `('moved', chunk number, rows taken, 0)`
/// and `('inserted', chunk oid, rows inserted, rows updated)`. With `one_chunk` (`$1`
/// holds one number) the rows taken are counted as they are; else each is matched to
/// its chunk number through the route table.
pub fn move_routed_rows(spec: &MoveSpec, one_chunk: bool) -> String {
    let scols = quote_list(&spec.columns, Some("s"));
    let chunks = "r.idx = ANY ($1::int4[])";
    let take = format!(
        "DELETE FROM {} AS s WHERE {} RETURNING {scols}, s.ctid AS backfill_src",
        spec.staging.quoted(),
        routed_where(chunks)
    );
    let (insert, _) = insert_clause(spec, "(d.xmax::text <> '0')");
    let moved_counts = if one_chunk {
        "SELECT 'moved'::text, ($1::int4[])[1]::int8, count(*)::int8, 0::int8 FROM moved"
            .to_string()
    } else {
        format!(
            "SELECT 'moved'::text, r.idx::int8, count(*)::int8, 0::int8 FROM moved AS m JOIN ({}) \
             AS r ON r.src = m.backfill_src GROUP BY r.idx",
            routed_rows(chunks)
        )
    };
    format!(
        "WITH moved AS ({take}), ins AS ({insert}, d.tableoid::oid::int8 AS chunk_oid) \
         {moved_counts} \
         UNION ALL \
         SELECT 'inserted', chunk_oid, count(*) FILTER (WHERE NOT updated)::int8, count(*) FILTER \
         (WHERE updated)::int8 FROM ins GROUP BY chunk_oid"
    )
}

/// Like `move_routed_rows`, for the rows of several chunks told apart by time alone:
/// `$1`, `$2` are the chunks' lower and upper bounds as array text (sorted, not
/// overlapping), `$3` their chunk numbers (int4[] text). Each staging row is matched
/// to its chunk by one binary search, in one scan of staging.
pub fn move_bucketed_rows(spec: &MoveSpec, time_column: &str, kind: TimeKind) -> String {
    let with = bounds_cte(kind);
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
mod tests;
