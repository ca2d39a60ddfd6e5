//! Catalog lookups over SPI: tables, columns, unique keys, privileges, and TimescaleDB's
//! public views (`timescaledb_information.*`, `_timescaledb_functions.chunk_status`).
//! Never `_timescaledb_catalog`, whose tables change between releases.

use crate::columns::{Column, KeyRules, UniqueKey};
use crate::error::{BackfillError, Code};
use crate::ident::{parse_qualified_name, quote_ident, quote_qualified, QualifiedName};
use crate::spi::{self, col, p, query, query_one, raise};
use crate::sql;
use crate::timescale::capabilities::Capabilities;
use crate::timescale::constraint;
use crate::timescale::{
    Chunk, Hypertable, Policy, SpaceRange, TimeKind, Timescale, CHUNK_STATUS_FN,
};

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
    query_one(sql::lookups::TIMESCALE, &[], |r| {
        (
            col::<String>(r, 1).unwrap(),
            col::<String>(r, 2).unwrap(),
            col::<bool>(r, 3).unwrap_or(false),
        )
    })
    .filter(|(_, _, full)| *full)
    .map(|(schema, version, _)| Timescale { schema: quote_ident(&schema), version })
}

/// Reads what a run needs of this TimescaleDB (see `capabilities`): functions by
/// their signature and kind in its schemas, settings by their presence.
pub fn timescale_capabilities(ts: &Timescale) -> Capabilities {
    query_one(sql::lookups::CAPABILITIES, &[p(&ts.schema)], |r| Capabilities {
        chunk_status_fn: col(r, 1).unwrap_or(false),
        decompress_limit_setting: col(r, 2).unwrap_or(false),
        direct_batch_delete_setting: col(r, 3).unwrap_or(false),
        chunk_delete_fixed: col(r, 4).unwrap_or(false),
        compress_functions: col(r, 5).unwrap_or(false),
        alter_job: col(r, 6).unwrap_or(false),
    })
    .unwrap_or_default()
}

/// Resolves a table name given under config key `key` (`role` names it in messages).
pub fn resolve_table(key: &str, role: &str, text: &str) -> Table {
    let Some((schema, name)) = parse_qualified_name(text) else {
        raise(
            BackfillError::new(
                Code::InvalidName,
                format!(
                    "config key \"{key}\": \"{text}\" is not \
                a valid table name"
                ),
            )
            .hint(
                "write table or schema.table; quote names with capitals or special \
                    characters, e.g. \"\\\"My Table\\\"\"",
            ),
        )
    };
    let quoted = match &schema {
        Some(s) => quote_qualified(s, &name),
        None => quote_ident(&name),
    };
    let found = query_one(sql::lookups::RESOLVE_TABLE, &[p(quoted)], |r| Table {
        oid: col::<i64>(r, 1).unwrap() as u32,
        name: QualifiedName::new(col::<String>(r, 2).unwrap(), col::<String>(r, 3).unwrap()),
        relkind: col::<String>(r, 4).unwrap(),
    });
    match found {
        Some(t) => t,
        None => {
            let path = query_one(sql::lookups::SEARCH_PATH, &[], |r| col::<String>(r, 1))
                .flatten()
                .unwrap_or_default();
            raise(
                BackfillError::new(
                    Code::UndefinedTable,
                    format!(
                        "{role} \"{text}\" (config \
                    key \"{key}\") does not exist"
                    ),
                )
                .hint(format!(
                    "create it or correct the name; an unqualified name is looked up \
                        in search_path ({path})"
                )),
            )
        }
    }
}

/// The text form of a regclass, for procedures that take `regclass` arguments.
pub fn regclass_text(oid: u32) -> String {
    query_one(sql::lookups::REGCLASS_TEXT, &[p(oid.to_string())], |r| col::<String>(r, 1))
        .flatten()
        .unwrap_or_else(|| {
            raise(BackfillError::new(
                Code::UndefinedTable,
                format!("relation with OID {oid} does not exist"),
            ))
        })
}

/// The table's live columns in order.
pub fn columns(oid: u32) -> Vec<Column> {
    query(sql::lookups::COLUMNS, &[p(oid.to_string())], |r| Column {
        name: col(r, 1).unwrap(),
        type_name: col(r, 2).unwrap(),
        type_oid: col::<i64>(r, 3).unwrap() as u32,
        not_null: col(r, 4).unwrap(),
        has_default: col(r, 5).unwrap(),
        generated: col(r, 6).unwrap(),
        identity: col(r, 7).unwrap(),
        collation: col::<String>(r, 8).filter(|c| !c.is_empty()),
    })
}

/// Whether a value of type `from` can be stored into a column of type `to`.
pub fn castable(from: u32, to: u32) -> bool {
    query_one(sql::lookups::CASTABLE, &[p(from.to_string()), p(to.to_string())], |r| {
        col::<bool>(r, 1)
    })
    .flatten()
    .unwrap_or(false)
}

/// Unique indexes that can serve as ON CONFLICT targets, primary key first.
pub fn unique_keys(oid: u32) -> Vec<UniqueKey> {
    query(sql::lookups::UNIQUE_KEYS, &[p(oid.to_string())], |r| UniqueKey {
        name: col(r, 1).unwrap(),
        primary: col(r, 2).unwrap(),
        columns: col::<Vec<String>>(r, 3).unwrap(),
        rules: KeyRules {
            nulls_not_distinct: col(r, 4).unwrap(),
            collations: col::<Vec<String>>(r, 5)
                .unwrap()
                .into_iter()
                .map(|c| (!c.is_empty()).then_some(c))
                .collect(),
            deterministic: col(r, 6).unwrap(),
        },
    })
}

/// Raises 42501 unless the current role has every one of `privs` on the table,
/// naming the ones it lacks.
pub fn require_privileges(t: &Table, role: &str, privs: &[&str]) {
    let missing: Vec<&str> = privs
        .iter()
        .copied()
        .filter(|priv_| {
            !query_one(sql::lookups::HAS_TABLE_PRIVILEGE, &[p(t.oid.to_string()), p(*priv_)], |r| {
                col::<bool>(r, 1)
            })
            .flatten()
            .unwrap_or(false)
        })
        .collect();
    if !missing.is_empty() {
        let list = missing.join(", ");
        raise(
            BackfillError::new(
                Code::InsufficientPrivilege,
                format!("role \"{}\" lacks {list} on {role} {}", current_user(), t.name),
            )
            .hint(format!("GRANT {list} ON {} TO the role that runs the job", t.name.quoted())),
        );
    }
}

/// Raises 42501 unless the current role owns the table (needed to decompress chunks).
pub fn require_owner(t: &Table, why: &str) {
    let ok = query_one(sql::lookups::OWNS_TABLE, &[p(t.oid.to_string())], |r| col::<bool>(r, 1))
        .flatten()
        .unwrap_or(false);
    if !ok {
        raise(
            BackfillError::new(
                Code::InsufficientPrivilege,
                format!(
                    "role \"{}\" must own \
                hypertable {} {why}",
                    current_user(),
                    t.name
                ),
            )
            .hint(
                "run the job as the hypertable's owner (alter_job(..., owner => ...)) or \
                    grant the owner role to this one",
            ),
        );
    }
}

/// Raises 42501 unless the current role may alter the job (owns it, or is a member of its owner).
pub fn require_job_owner(pol: &Policy) {
    if !pol.owned {
        raise(
            BackfillError::new(
                Code::InsufficientPrivilege,
                format!(
                    "role \"{}\" cannot postpone compression policy job {}, which is owned \
                    by \"{}\"",
                    current_user(),
                    pol.job_id,
                    pol.owner
                ),
            )
            .hint("run the backfill as the owner of the hypertable and its compression policy"),
        );
    }
}

pub fn current_user() -> String {
    query_one("SELECT current_user::text", &[], |r| col::<String>(r, 1))
        .flatten()
        .unwrap_or_default()
}

/// The hypertable behind `t`, if it is one.
pub fn hypertable(t: &Table) -> Option<Hypertable> {
    let row = query_one(sql::lookups::HYPERTABLE, &[p(&t.name.schema), p(&t.name.name)], |r| {
        (col::<String>(r, 1).unwrap(), col::<String>(r, 2).unwrap(), col::<i64>(r, 3).unwrap())
    })?;
    let kind =
        TimeKind::from_type_name(&row.1).unwrap_or_else(|| {
            raise(
            BackfillError::new(
                Code::WrongObjectType,
                format!("hypertable {} is partitioned by \"{}\" of type {}, which backfill_ext \
                    does not support", t.name, row.0, row.1),
            )
            .hint("supported time column types: timestamptz, timestamp, date, smallint, integer, \
                bigint"),
        )
        });
    Some(Hypertable { time_column: row.0, kind, time_type: row.1, dimensions: row.2 })
}

pub fn compression_policies(t: &Table) -> Vec<Policy> {
    query(sql::lookups::COMPRESSION_POLICIES, &[p(&t.name.schema), p(&t.name.name)], |r| Policy {
        job_id: col(r, 1).unwrap(),
        next_start: col(r, 2),
        scheduled: col(r, 3).unwrap_or(true),
        owner: col(r, 4).unwrap_or_default(),
        owned: col(r, 5).unwrap_or(false),
    })
}

/// Chunks whose time range meets the staging span `[min, max]`, with status and space ranges.
pub fn chunks_overlapping(t: &Table, ht: &Hypertable, min: &str, max: &str) -> Vec<Chunk> {
    let mut chunks = query(
        &sql::lookups::chunks_overlapping(ht.kind, CHUNK_STATUS_FN),
        &[p(&t.name.schema), p(&t.name.name), p(min), p(max)],
        |r| Chunk {
            name: QualifiedName::new(col::<String>(r, 1).unwrap(), col::<String>(r, 2).unwrap()),
            oid: col::<i64>(r, 6).unwrap_or(0) as u32,
            lo: col(r, 3),
            hi: col(r, 4),
            space: vec![],
            status: col::<i32>(r, 5).unwrap_or(0),
        },
    );
    if ht.dimensions > 1 {
        for c in &mut chunks {
            c.space = space_ranges(&c.name);
        }
    }
    chunks
}

/// The hash ranges a chunk's CHECK constraints give its space dimensions; raises
/// 0A000, having changed nothing, when one of them cannot be read.
fn space_ranges(chunk: &QualifiedName) -> Vec<SpaceRange> {
    let defs: Vec<String> = query(sql::lookups::SPACE_CONSTRAINT_DEFS, &[p(chunk.quoted())], |r| {
        col::<String>(r, 1).unwrap_or_default()
    });
    constraint::space_ranges(&defs).unwrap_or_else(|def| {
        raise(
            BackfillError::new(
                Code::FeatureNotSupported,
                format!(
                    "cannot read the space partition \
                of chunk {chunk} from its constraint"
                ),
            )
            .detail(format!("constraint: {def}"))
            .hint(
                "backfill_ext reads the hash range TimescaleDB gives each chunk; a \
                    constraint of another form on a chunk (or a TimescaleDB that writes them \
                    differently) stops the run before anything changes",
            ),
        )
    })
}

/// Every chunk of the hypertable with its status bits (from `show_chunks`, cheaper
/// than the chunks view where ranges are not needed).
pub fn chunk_statuses(ts: &Timescale, t: &Table) -> Vec<(QualifiedName, i32)> {
    query(&sql::lookups::chunk_statuses(ts), &[p(t.oid.to_string())], |r| {
        (
            QualifiedName::new(col::<String>(r, 1).unwrap(), col::<String>(r, 2).unwrap()),
            col::<i32>(r, 3).unwrap_or(0),
        )
    })
}

/// Validates an interval given under a config key; returns its text form.
pub fn check_interval(key: &str, text: &str) -> String {
    let r = spi::in_subtransaction(std::panic::AssertUnwindSafe(|| {
        query_one(sql::lookups::CHECK_INTERVAL, &[p(text)], |r| {
            (col::<String>(r, 1).unwrap(), col::<bool>(r, 2).unwrap(), col::<bool>(r, 3).unwrap())
        })
        .unwrap()
    }));
    match r {
        Ok((_, true, _)) => raise(
            BackfillError::new(
                Code::InvalidParameterValue,
                format!("config key \"{key}\" must not be negative, got \"{text}\""),
            )
            .hint("give a positive interval such as '1 day'"),
        ),
        Ok((_, _, true)) => raise(
            BackfillError::new(
                Code::InvalidParameterValue,
                format!("config key \"{key}\" is too large: \"{text}\""),
            )
            .hint("give an interval of at most 100 years, such as '1 day'"),
        ),
        Ok((v, _, _)) => v,
        Err(e) => raise(
            BackfillError::new(
                Code::InvalidParameterValue,
                format!("config key \"{key}\" is not an interval: \"{text}\""),
            )
            .detail(spi::caught_message(&e))
            .hint("give an interval such as '1 day' or '12 hours'"),
        ),
    }
}

/// The hypertable's segmentby columns, in order.
pub fn segmentby(t: &Table) -> Vec<String> {
    query(sql::lookups::SEGMENTBY, &[p(&t.name.schema), p(&t.name.name)], |r| {
        col::<String>(r, 1).unwrap_or_default()
    })
}

/// The order TimescaleDB compresses `t`'s rows in: `(column, Some((asc, nulls first)))`
/// for an orderby column, `(column, None)` for a segmentby one; segmentby first.
pub fn compression_order(t: &Table) -> Vec<(String, Option<(bool, bool)>)> {
    query(sql::lookups::COMPRESSION_ORDER, &[p(&t.name.schema), p(&t.name.name)], |r| {
        let order = col::<bool>(r, 2).map(|asc| (asc, col::<bool>(r, 3).unwrap_or(!asc)));
        (col::<String>(r, 1).unwrap_or_default(), order)
    })
}

/// Whether any view reads table `oid` (one index lookup): without one, the table has no
/// continuous aggregate.
pub fn any_view_reads(oid: u32) -> bool {
    query_one(sql::caggs::ANY_VIEW_READS, &[p(oid.to_string())], |r| {
        col::<bool>(r, 1).unwrap_or(true)
    })
    .unwrap_or(true)
}

/// Whether hypertable `t` has continuous aggregates (asked of TimescaleDB's view only
/// where some view reads `t`: planning that view takes milliseconds).
pub fn has_continuous_aggregates(t: &Table) -> bool {
    if !any_view_reads(t.oid) {
        return false;
    }
    query_one(sql::lookups::HAS_CONTINUOUS_AGGREGATES, &[p(&t.name.schema), p(&t.name.name)], |r| {
        col::<bool>(r, 1).unwrap_or(true)
    })
    .unwrap_or(true)
}

/// TimescaleDB's limit on rows one DML transaction may decompress (0: none).
pub fn decompress_limit() -> i64 {
    query_one(sql::lookups::DECOMPRESS_LIMIT, &[], |r| col::<i64>(r, 1).unwrap_or(0)).unwrap_or(0)
}

/// How many unique and exclusion indexes the table has, partial and expression ones
/// included.
pub fn checking_index_count(oid: u32) -> i64 {
    query_one(sql::lookups::CHECKING_INDEX_COUNT, &[p(oid.to_string())], |r| {
        col::<i64>(r, 1).unwrap_or(0)
    })
    .unwrap_or(0)
}

/// Where the current role is a superuser, the tables among `oids` that another role
/// owns and that have triggers of their own (which would run with superuser rights).
pub fn others_triggers_under_superuser(oids: &[u32]) -> Option<String> {
    let list = format!("{{{}}}", oids.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(","));
    query_one(sql::lookups::OTHERS_TRIGGERS_UNDER_SUPERUSER, &[p(list)], |r| col::<String>(r, 1))
        .flatten()
}

/// Whether the table has triggers of its own (TimescaleDB's insert blocker aside).
pub fn has_user_triggers(oid: u32) -> bool {
    query_one(sql::lookups::HAS_USER_TRIGGERS, &[p(oid.to_string())], |r| {
        col::<bool>(r, 1).unwrap_or(true)
    })
    .unwrap_or(true)
}

/// Whether the table's chunks may be emptied with TRUNCATE and written again: no
/// foreign key refers to the table or a chunk (TRUNCATE would fail), and neither has
/// row-level security (a read could miss rows that TRUNCATE removes; TimescaleDB
/// refuses it on hypertables with compression today, so this only guards the future).
pub fn chunks_can_be_rewritten(oid: u32) -> bool {
    query_one(sql::lookups::CHUNKS_CAN_BE_REWRITTEN, &[p(oid.to_string())], |r| {
        col::<bool>(r, 1).unwrap_or(false)
    })
    .unwrap_or(false)
}

/// Whether a staging table may be emptied with TRUNCATE in place of deleting its rows
/// (see `sql::lookups::STAGING_CAN_BE_TRUNCATED`).
pub fn staging_can_be_truncated(oid: u32) -> bool {
    query_one(sql::lookups::STAGING_CAN_BE_TRUNCATED, &[p(oid.to_string())], |r| {
        col::<bool>(r, 1).unwrap_or(false)
    })
    .unwrap_or(false)
}

/// Every chunk of a hypertable, in range order.
pub fn all_chunks(t: &Table, ht: &Hypertable) -> Vec<Chunk> {
    let (min, max) = match ht.kind {
        TimeKind::Integer => (i64::MIN.to_string(), i64::MAX.to_string()),
        _ => ("-infinity".to_string(), "infinity".to_string()),
    };
    chunks_overlapping(t, ht, &min, &max)
}

/// The array type of a table's row type.
pub fn row_array_type(oid: u32) -> u32 {
    query_one(sql::lookups::ROW_ARRAY_TYPE, &[p(oid.to_string())], |r| {
        col::<i64>(r, 1).unwrap_or(0) as u32
    })
    .unwrap_or(0)
}

/// A column's type as `regtype` prints it (a valid, quoted SQL type name).
pub fn column_type(oid: u32, column: &str) -> Option<String> {
    query_one(sql::lookups::COLUMN_TYPE, &[p(oid.to_string()), p(column)], |r| col::<String>(r, 1))
        .flatten()
}

/// The OID of the table a config names (`name`, `schema.name`, quoted parts), if it exists.
pub fn oid_of_name(text: &str) -> Option<u32> {
    let (schema, name) = parse_qualified_name(text)?;
    let quoted = match schema {
        Some(s) => quote_qualified(&s, &name),
        None => quote_ident(&name),
    };
    oid_of_quoted(&quoted)
}

/// The OID of the relation a quoted name names, if it exists.
fn oid_of_quoted(quoted: &str) -> Option<u32> {
    query_one(sql::lookups::REGCLASS_OID, &[p(quoted)], |r| col::<String>(r, 1))
        .flatten()
        .and_then(|o| o.parse().ok())
}

/// The OID of a relation the run made or holds (a quoted name); 42P01 if it is gone.
pub fn existing_oid(quoted: &str) -> u32 {
    oid_of_quoted(quoted).unwrap_or_else(|| {
        raise(BackfillError::new(Code::UndefinedTable, format!("relation {quoted} does not exist")))
    })
}
