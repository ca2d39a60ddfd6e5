//! Catalog lookups over SPI: tables, columns, unique keys, privileges, and TimescaleDB's
//! public views (`timescaledb_information.*`, `_timescaledb_functions.chunk_status`).
//! Never `_timescaledb_catalog`, whose tables change between releases.

use crate::columns::{Column, UniqueKey};
use crate::error::{BackfillError, Code};
use crate::ident::{parse_qualified_name, quote_ident, quote_qualified, QualifiedName};
use crate::timescale::capabilities::Capabilities;
use crate::timescale::constraint::parse_space_check;
use crate::timescale::{Chunk, Hypertable, Policy, SpaceRange, TimeKind, Timescale, CHUNK_STATUS_FN};
use crate::spi::{self, col, p, query, query_one, raise};

/// A resolved table.
#[derive(Debug, Clone)]
pub struct Table {
    pub oid: u32,
    pub name: QualifiedName,
    /// `pg_class.relkind`: r table, p partitioned table, v view, ...
    pub relkind: String,
}

/// TimescaleDB, if installed in this database with its compression and job API.
pub fn timescale() -> Option<Timescale> {
    query_one(
        "SELECT n.nspname::text, e.extversion::text, \
                coalesce(current_setting('timescaledb.license', true), 'timescale') = 'timescale' \
         FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = 'timescaledb'",
        &[],
        |r| (col::<String>(r, 1).unwrap(), col::<String>(r, 2).unwrap(), col::<bool>(r, 3).unwrap_or(false)),
    )
    .filter(|(_, _, full)| *full)
    .map(|(schema, version, _)| Timescale { schema: quote_ident(&schema), version })
}

/// Reads what a run needs of this TimescaleDB (see `capabilities`): functions by
/// their signature and kind in its schemas, settings by their presence.
pub fn timescale_capabilities(ts: &Timescale) -> Capabilities {
    query_one(
        "SELECT pg_catalog.to_regprocedure('_timescaledb_functions.chunk_status(regclass)') IS NOT NULL, \
                pg_catalog.current_setting('timescaledb.max_tuples_decompressed_per_dml_transaction', true) IS NOT NULL, \
                pg_catalog.current_setting('timescaledb.enable_compressed_direct_batch_delete', true) IS NOT NULL, \
                pg_catalog.current_setting('timescaledb.enable_direct_compress_insert', true) IS NOT NULL, \
                (SELECT count(*) = 2 FROM pg_catalog.pg_proc \
                  WHERE pronamespace = $1::regnamespace AND prokind = 'f' AND proname IN ('compress_chunk', 'decompress_chunk') \
                    AND proargtypes[0] = 'regclass'::regtype AND proargtypes[1] = 'boolean'::regtype), \
                EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = $1::regnamespace AND proname = 'alter_job')",
        &[p(&ts.schema)],
        |r| Capabilities {
            chunk_status_fn: col(r, 1).unwrap_or(false),
            decompress_limit_setting: col(r, 2).unwrap_or(false),
            direct_batch_delete_setting: col(r, 3).unwrap_or(false),
            chunk_delete_fixed: col(r, 4).unwrap_or(false),
            compress_functions: col(r, 5).unwrap_or(false),
            alter_job: col(r, 6).unwrap_or(false),
        },
    )
    .unwrap_or_default()
}

/// Resolves a table name given under config key `key` (`role` names it in messages).
pub fn resolve_table(key: &str, role: &str, text: &str) -> Table {
    let Some((schema, name)) = parse_qualified_name(text) else {
        raise(
            BackfillError::new(Code::InvalidName, format!("config key \"{key}\": \"{text}\" is not a valid table name"))
                .hint("write table or schema.table; quote names with capitals or special characters, e.g. \"\\\"My Table\\\"\""),
        )
    };
    let quoted = match &schema {
        Some(s) => quote_qualified(s, &name),
        None => quote_ident(&name),
    };
    let found = query_one(
        "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.oid = pg_catalog.to_regclass($1)",
        &[p(quoted)],
        |r| Table {
            oid: col::<i64>(r, 1).unwrap() as u32,
            name: QualifiedName::new(col::<String>(r, 2).unwrap(), col::<String>(r, 3).unwrap()),
            relkind: col::<String>(r, 4).unwrap(),
        },
    );
    match found {
        Some(t) => t,
        None => {
            let path = query_one("SELECT pg_catalog.current_setting('search_path')", &[], |r| col::<String>(r, 1))
                .flatten()
                .unwrap_or_default();
            raise(
                BackfillError::new(Code::UndefinedTable, format!("{role} \"{text}\" (config key \"{key}\") does not exist"))
                    .hint(format!("create it or correct the name; an unqualified name is looked up in search_path ({path})")),
            )
        }
    }
}

/// The text form of a regclass, for procedures that take `regclass` arguments.
pub fn regclass_text(oid: u32) -> String {
    query_one("SELECT $1::oid::regclass::text", &[p(oid.to_string())], |r| col::<String>(r, 1))
        .flatten()
        .unwrap_or_else(|| raise(BackfillError::new(Code::UndefinedTable, format!("relation with OID {oid} does not exist"))))
}

/// The table's live columns in order.
pub fn columns(oid: u32) -> Vec<Column> {
    query(
        "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.atttypid::int8, \
                a.attnotnull, a.atthasdef, a.attgenerated <> '', a.attidentity <> '' \
         FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        &[p(oid.to_string())],
        |r| Column {
            name: col(r, 1).unwrap(),
            type_name: col(r, 2).unwrap(),
            type_oid: col::<i64>(r, 3).unwrap() as u32,
            not_null: col(r, 4).unwrap(),
            has_default: col(r, 5).unwrap(),
            generated: col(r, 6).unwrap(),
            identity: col(r, 7).unwrap(),
        },
    )
}

/// Whether a value of type `from` can be stored into a column of type `to`.
pub fn castable(from: u32, to: u32) -> bool {
    query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_cast \
                        WHERE castsource = $1::oid AND casttarget = $2::oid AND castcontext IN ('a', 'i'))",
        &[p(from.to_string()), p(to.to_string())],
        |r| col::<bool>(r, 1),
    )
    .flatten()
    .unwrap_or(false)
}

/// Unique indexes that can serve as ON CONFLICT targets, primary key first.
pub fn unique_keys(oid: u32) -> Vec<UniqueKey> {
    query(
        "SELECT coalesce(con.conname, ic.relname)::text, i.indisprimary, \
                ARRAY(SELECT a.attname::text \
                      FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(num, ord) \
                      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num \
                      ORDER BY k.ord) \
         FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
         LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid \
         WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL \
         ORDER BY i.indisprimary DESC, 1",
        &[p(oid.to_string())],
        |r| UniqueKey { name: col(r, 1).unwrap(), primary: col(r, 2).unwrap(), columns: col::<Vec<String>>(r, 3).unwrap() },
    )
}

/// Raises 42501 unless the current role has every one of `privs` on the table,
/// naming the ones it lacks.
pub fn require_privileges(t: &Table, role: &str, privs: &[&str]) {
    let missing: Vec<&str> = privs
        .iter()
        .copied()
        .filter(|priv_| {
            !query_one(
                "SELECT pg_catalog.has_table_privilege($1::oid, $2)",
                &[p(t.oid.to_string()), p(*priv_)],
                |r| col::<bool>(r, 1),
            )
            .flatten()
            .unwrap_or(false)
        })
        .collect();
    if !missing.is_empty() {
        let list = missing.join(", ");
        raise(
            BackfillError::new(Code::InsufficientPrivilege, format!("role \"{}\" lacks {list} on {role} {}", current_user(), t.name))
                .hint(format!("GRANT {list} ON {} TO the role that runs the job", t.name.quoted())),
        );
    }
}

/// Raises 42501 unless the current role owns the table (needed to decompress chunks).
pub fn require_owner(t: &Table, why: &str) {
    let ok = query_one(
        "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c WHERE c.oid = $1::oid",
        &[p(t.oid.to_string())],
        |r| col::<bool>(r, 1),
    )
    .flatten()
    .unwrap_or(false);
    if !ok {
        raise(
            BackfillError::new(Code::InsufficientPrivilege, format!("role \"{}\" must own hypertable {} {why}", current_user(), t.name))
                .hint("run the job as the hypertable's owner (alter_job(..., owner => ...)) or grant the owner role to this one"),
        );
    }
}

/// Raises 42501 unless the current role may alter the job (owns it, or is a member of its owner).
pub fn require_job_owner(pol: &Policy) {
    if !pol.owned {
        raise(
            BackfillError::new(
                Code::InsufficientPrivilege,
                format!("role \"{}\" cannot postpone compression policy job {}, which is owned by \"{}\"", current_user(), pol.job_id, pol.owner),
            )
            .hint("run the backfill as the owner of the hypertable and its compression policy"),
        );
    }
}

pub fn current_user() -> String {
    query_one("SELECT current_user::text", &[], |r| col::<String>(r, 1)).flatten().unwrap_or_default()
}

/// The hypertable behind `t`, if it is one.
pub fn hypertable(t: &Table) -> Option<Hypertable> {
    let row = query_one(
        "SELECT d.column_name::text, d.column_type::text, \
                (SELECT count(*) FROM timescaledb_information.dimensions x \
                 WHERE x.hypertable_schema = d.hypertable_schema AND x.hypertable_name = d.hypertable_name)::int8 \
         FROM timescaledb_information.dimensions d \
         WHERE d.hypertable_schema = $1 AND d.hypertable_name = $2 ORDER BY d.dimension_number LIMIT 1",
        &[p(&t.name.schema), p(&t.name.name)],
        |r| (col::<String>(r, 1).unwrap(), col::<String>(r, 2).unwrap(), col::<i64>(r, 3).unwrap()),
    )?;
    let kind = TimeKind::from_type_name(&row.1).unwrap_or_else(|| {
        raise(
            BackfillError::new(
                Code::WrongObjectType,
                format!("hypertable {} is partitioned by \"{}\" of type {}, which backfill_ext does not support", t.name, row.0, row.1),
            )
            .hint("supported time column types: timestamptz, timestamp, date, smallint, integer, bigint"),
        )
    });
    Some(Hypertable { time_column: row.0, kind, dimensions: row.2 })
}

pub fn compression_policies(t: &Table) -> Vec<Policy> {
    query(
        "SELECT j.job_id, j.next_start::text, j.scheduled, j.owner::text, pg_catalog.pg_has_role(j.owner, 'USAGE') \
         FROM timescaledb_information.jobs j \
         WHERE j.hypertable_schema = $1 AND j.hypertable_name = $2 AND j.proc_name = 'policy_compression' \
         ORDER BY j.job_id",
        &[p(&t.name.schema), p(&t.name.name)],
        |r| Policy {
            job_id: col(r, 1).unwrap(),
            next_start: col(r, 2),
            scheduled: col(r, 3).unwrap_or(true),
            owner: col(r, 4).unwrap_or_default(),
            owned: col(r, 5).unwrap_or(false),
        },
    )
}

/// Chunks whose time range meets the staging span `[min, max]`, with status and space ranges.
pub fn chunks_overlapping(t: &Table, ht: &Hypertable, min: &str, max: &str) -> Vec<Chunk> {
    let sql = crate::sql::catalog::chunks_overlapping(ht.kind, CHUNK_STATUS_FN);
    let mut chunks = query(&sql, &[p(&t.name.schema), p(&t.name.name), p(min), p(max)], |r| Chunk {
        name: QualifiedName::new(col::<String>(r, 1).unwrap(), col::<String>(r, 2).unwrap()),
        oid: col::<i64>(r, 6).unwrap_or(0) as u32,
        lo: col(r, 3),
        hi: col(r, 4),
        space: vec![],
        status: col::<i32>(r, 5).unwrap_or(0),
    });
    if ht.dimensions > 1 {
        for c in &mut chunks {
            c.space = space_ranges(&c.name);
        }
    }
    chunks
}

/// The hash ranges a chunk's CHECK constraints give its space dimensions; empty when
/// any of them cannot be read (then the chunk is matched on time alone).
fn space_ranges(chunk: &QualifiedName) -> Vec<SpaceRange> {
    let defs: Vec<String> = query(
        "SELECT pg_catalog.pg_get_constraintdef(con.oid) FROM pg_catalog.pg_constraint con \
         WHERE con.conrelid = pg_catalog.to_regclass($1) AND con.contype = 'c' \
           AND pg_catalog.pg_get_constraintdef(con.oid) LIKE '%get_partition_hash(%'",
        &[p(chunk.quoted())],
        |r| col::<String>(r, 1).unwrap_or_default(),
    );
    let parsed: Vec<_> = defs.iter().map(|d| parse_space_check(d)).collect();
    if parsed.iter().all(|s| s.is_some()) {
        parsed.into_iter().flatten().collect()
    } else {
        vec![]
    }
}

/// Every chunk of the hypertable with its status bits (from `show_chunks`, cheaper
/// than the chunks view where ranges are not needed).
pub fn chunk_statuses(ts: &Timescale, t: &Table) -> Vec<(QualifiedName, i32)> {
    query(
        &format!(
            "SELECT n.nspname::text, cl.relname::text, {CHUNK_STATUS_FN}(c) FROM {}($1::oid::regclass) AS c \
             JOIN pg_catalog.pg_class cl ON cl.oid = c JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace",
            ts.func("show_chunks")
        ),
        &[p(t.oid.to_string())],
        |r| (QualifiedName::new(col::<String>(r, 1).unwrap(), col::<String>(r, 2).unwrap()), col::<i32>(r, 3).unwrap_or(0)),
    )
}

/// Validates an interval given under a config key; returns its text form.
pub fn check_interval(key: &str, text: &str) -> String {
    let r = spi::in_subtransaction(std::panic::AssertUnwindSafe(|| {
        query_one("SELECT $1::interval::text, $1::interval < '0'::interval, $1::interval > '100 years'::interval", &[p(text)], |r| {
            (col::<String>(r, 1).unwrap(), col::<bool>(r, 2).unwrap(), col::<bool>(r, 3).unwrap())
        })
        .unwrap()
    }));
    match r {
        Ok((_, true, _)) => raise(
            BackfillError::new(Code::InvalidParameterValue, format!("config key \"{key}\" must not be negative, got \"{text}\""))
                .hint("give a positive interval such as '1 day'"),
        ),
        Ok((_, _, true)) => raise(
            BackfillError::new(Code::InvalidParameterValue, format!("config key \"{key}\" is too large: \"{text}\""))
                .hint("give an interval of at most 100 years, such as '1 day'"),
        ),
        Ok((v, _, _)) => v,
        Err(e) => raise(
            BackfillError::new(Code::InvalidParameterValue, format!("config key \"{key}\" is not an interval: \"{text}\""))
                .detail(spi::caught_message(&e))
                .hint("give an interval such as '1 day' or '12 hours'"),
        ),
    }
}

/// The hypertable's segmentby columns, in order.
pub fn segmentby(t: &Table) -> Vec<String> {
    query(
        "SELECT attname::text FROM timescaledb_information.compression_settings
         WHERE hypertable_schema = $1 AND hypertable_name = $2 AND segmentby_column_index IS NOT NULL
         ORDER BY segmentby_column_index",
        &[p(&t.name.schema), p(&t.name.name)],
        |r| col::<String>(r, 1).unwrap_or_default(),
    )
}

/// TimescaleDB's limit on rows one DML transaction may decompress (0: none).
pub fn decompress_limit() -> i64 {
    query_one(
        "SELECT coalesce(nullif(pg_catalog.current_setting('timescaledb.max_tuples_decompressed_per_dml_transaction', true), ''), '0')::int8",
        &[],
        |r| col::<i64>(r, 1).unwrap_or(0),
    )
    .unwrap_or(0)
}

/// Whether the table has triggers of its own (TimescaleDB's insert blocker aside).
pub fn has_user_triggers(oid: u32) -> bool {
    query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                        WHERE tgrelid = $1::oid AND NOT tgisinternal AND tgname <> 'ts_insert_blocker')",
        &[p(oid.to_string())],
        |r| col::<bool>(r, 1).unwrap_or(true),
    )
    .unwrap_or(true)
}

/// Whether the table's chunks may be emptied with TRUNCATE and written again: no
/// foreign key refers to the table or a chunk (TRUNCATE would fail), and neither has
/// row-level security (a read could miss rows that TRUNCATE removes; TimescaleDB
/// refuses it on hypertables with compression today, so this only guards the future).
pub fn chunks_can_be_rewritten(oid: u32) -> bool {
    query_one(
        "WITH t AS (SELECT $1::oid AS oid UNION ALL SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1::oid)
         SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE contype = 'f' AND confrelid IN (SELECT oid FROM t))
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid IN (SELECT oid FROM t) AND relrowsecurity)",
        &[p(oid.to_string())],
        |r| col::<bool>(r, 1).unwrap_or(false),
    )
    .unwrap_or(false)
}

/// The array type of a table's row type.
pub fn row_array_type(oid: u32) -> u32 {
    query_one(
        "SELECT t.typarray::int8 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_type t ON t.oid = c.reltype WHERE c.oid = $1::oid",
        &[p(oid.to_string())],
        |r| col::<i64>(r, 1).unwrap_or(0) as u32,
    )
    .unwrap_or(0)
}

/// A column's type as `regtype` prints it (a valid, quoted SQL type name).
pub fn column_type(oid: u32, column: &str) -> Option<String> {
    query_one(
        "SELECT a.atttypid::regtype::text FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = $1::oid AND a.attname = $2 AND NOT a.attisdropped",
        &[p(oid.to_string()), p(column)],
        |r| col::<String>(r, 1),
    )
    .flatten()
}
