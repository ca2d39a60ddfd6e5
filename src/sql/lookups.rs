//! Reads of PostgreSQL's catalog and of TimescaleDB's public views
//! (`timescaledb_information.*`); never `_timescaledb_catalog`.

use crate::timescale::{TimeKind, Timescale, CHUNK_STATUS_FN};

/// TimescaleDB's schema and version, and whether its license (the full one unless
/// `timescaledb.license` says otherwise) gives the compression and job API.
pub const TIMESCALE: &str = "SELECT n.nspname::text, e.extversion::text, \
        coalesce(current_setting('timescaledb.license', true), 'timescale') = 'timescale' \
     FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
     WHERE e.extname = 'timescaledb'";

/// What a run needs of this TimescaleDB, a boolean each: the chunk status function, three
/// settings, `compress_chunk`/`decompress_chunk(regclass, boolean)` and `alter_job` in
/// schema `$1` (TimescaleDB's). Column order is `Capabilities`' field order.
pub const CAPABILITIES: &str = "SELECT \
    pg_catalog.to_regprocedure('_timescaledb_functions.chunk_status(regclass)') IS NOT NULL, \
        pg_catalog.current_setting('timescaledb.max_tuples_decompressed_per_dml_transaction', \
        true) IS NOT NULL, \
        pg_catalog.current_setting('timescaledb.enable_compressed_direct_batch_delete', true) IS \
        NOT NULL, \
        pg_catalog.current_setting('timescaledb.enable_direct_compress_insert', true) IS NOT NULL, \
        (SELECT count(*) = 2 FROM pg_catalog.pg_proc \
          WHERE pronamespace = $1::regnamespace AND prokind = 'f' AND proname IN \
          ('compress_chunk', 'decompress_chunk') \
            AND proargtypes[0] = 'regclass'::regtype AND proargtypes[1] = 'boolean'::regtype), \
        EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = $1::regnamespace AND proname \
        = 'alter_job')";

/// The table `$1` (a quoted name, looked up in search_path when unqualified) names:
/// oid, schema, name, relkind; no row when there is none.
pub const RESOLVE_TABLE: &str =
    "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.oid = pg_catalog.to_regclass($1)";

/// The session's search_path, for messages.
pub const SEARCH_PATH: &str = "SELECT pg_catalog.current_setting('search_path')";

/// The text form of regclass `$1` (an oid).
pub const REGCLASS_TEXT: &str = "SELECT $1::oid::regclass::text";

/// The oid of the relation `$1` (a quoted name) names, as text; NULL when there is none.
pub const REGCLASS_OID: &str = "SELECT pg_catalog.to_regclass($1)::oid::text";

/// The live columns of table `$1` in order: name, type, type oid, NOT NULL, default,
/// generated, identity, collation (a quoted qualified name; '' for a type without one).
pub const COLUMNS: &str = "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, \
    a.atttypmod), a.atttypid::int8, \
        a.attnotnull, a.atthasdef, a.attgenerated <> '', a.attidentity <> '', \
        CASE WHEN co.oid IS NULL THEN '' ELSE pg_catalog.format('%I.%I', cn.nspname, co.collname) \
        END \
     FROM pg_catalog.pg_attribute a \
     LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation \
     LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace \
     WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";

/// Whether type `$1` casts to type `$2` by assignment or implicitly.
pub const CASTABLE: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_cast \
                    WHERE castsource = $1::oid AND casttarget = $2::oid AND castcontext IN ('a', \
                    'i'))";

/// Table `$1`'s unique indexes on plain columns, without predicate: name, primary, key
/// columns in order, whether NULLs are not distinct, each key column's collation as a
/// quoted qualified name ('' where the type has none), and whether every collation of
/// the key is deterministic; primary key first.
pub const UNIQUE_KEYS: &str = "SELECT coalesce(con.conname, ic.relname)::text, i.indisprimary, \
        ARRAY(SELECT a.attname::text \
              FROM unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(num, ord) \
              JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num \
              ORDER BY k.ord), \
        i.indnullsnotdistinct, \
        ARRAY(SELECT CASE WHEN co.oid IS NULL THEN '' ELSE pg_catalog.format('%I.%I', cn.nspname, \
        co.collname) END \
              FROM unnest((i.indcollation::oid[])[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(coll, \
              ord) \
              LEFT JOIN pg_catalog.pg_collation co ON co.oid = k.coll \
              LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace \
              ORDER BY k.ord), \
        NOT EXISTS (SELECT 1 FROM unnest(i.indcollation::oid[]) AS k(coll) \
                    JOIN pg_catalog.pg_collation co ON co.oid = k.coll WHERE NOT \
                    co.collisdeterministic) \
     FROM pg_catalog.pg_index i \
     JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
     LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = \
     i.indrelid \
     WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL \
     ORDER BY i.indisprimary DESC, 1";

/// Whether the current role has privilege `$2` on table `$1`.
pub const HAS_TABLE_PRIVILEGE: &str = "SELECT pg_catalog.has_table_privilege($1::oid, $2)";

/// Whether the current role is (a member of) the owner of table `$1`.
pub const OWNS_TABLE: &str = "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM \
    pg_catalog.pg_class c WHERE c.oid = $1::oid";

/// The first dimension of hypertable `$1`.`$2` (schema, name): its column, type, and
/// how many dimensions the hypertable has; no row for a table that is not one.
pub const HYPERTABLE: &str = "SELECT d.column_name::text, d.column_type::text, \
        (SELECT count(*) FROM timescaledb_information.dimensions x \
         WHERE x.hypertable_schema = d.hypertable_schema AND x.hypertable_name = \
         d.hypertable_name)::int8 \
     FROM timescaledb_information.dimensions d \
     WHERE d.hypertable_schema = $1 AND d.hypertable_name = $2 ORDER BY d.dimension_number LIMIT 1";

/// Hypertable `$1`.`$2`'s compression policy jobs: id, next start, scheduled, owner, and
/// whether the current role may act as that owner.
pub const COMPRESSION_POLICIES: &str =
    "SELECT j.job_id, j.next_start::text, j.scheduled, j.owner::text, \
     pg_catalog.pg_has_role(j.owner, 'USAGE') \
     FROM timescaledb_information.jobs j \
     WHERE j.hypertable_schema = $1 AND j.hypertable_name = $2 AND j.proc_name = \
     'policy_compression' \
     ORDER BY j.job_id";

/// The destination's chunks whose time range meets `[$3, $4]` (the staging span, in the
/// time column's type), with their status. `$1`, `$2`: hypertable schema and name.
pub fn chunks_overlapping(kind: TimeKind, timescale_schema_fn: &str) -> String {
    let (lo_col, hi_col, min, max) = match kind {
        TimeKind::Integer => (
            "range_start_integer",
            "range_end_integer",
            "$3::bigint".to_string(),
            "$4::bigint".to_string(),
        ),
        TimeKind::TimestampTz => (
            "range_start",
            "range_end",
            "$3::timestamptz".to_string(),
            "$4::timestamptz".to_string(),
        ),
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
         AND (c.{hi_col} IS NULL OR c.{hi_col} > {min}) AND (c.{lo_col} IS NULL OR c.{lo_col} <= \
         {max}) \
         ORDER BY c.{lo_col}, c.chunk_name"
    )
}

/// The CHECK constraints of chunk `$1` (a quoted name) that bound a space dimension's hash.
pub const SPACE_CONSTRAINT_DEFS: &str =
    "SELECT pg_catalog.pg_get_constraintdef(con.oid) FROM pg_catalog.pg_constraint con \
     WHERE con.conrelid = pg_catalog.to_regclass($1) AND con.contype = 'c' \
       AND pg_catalog.pg_get_constraintdef(con.oid) LIKE '%get_partition_hash(%'";

/// Every chunk of hypertable `$1` (an oid): schema, name, status bits.
pub fn chunk_statuses(ts: &Timescale) -> String {
    format!(
        "SELECT n.nspname::text, cl.relname::text, {CHUNK_STATUS_FN}(c) FROM {}($1::oid::regclass) \
         AS c \
         JOIN pg_catalog.pg_class cl ON cl.oid = c JOIN pg_catalog.pg_namespace n ON n.oid = \
         cl.relnamespace",
        ts.func("show_chunks")
    )
}

/// Interval `$1` as text, whether it is negative, and whether it exceeds 100 years.
pub const CHECK_INTERVAL: &str =
    "SELECT $1::interval::text, $1::interval < '0'::interval, $1::interval > '100 years'::interval";

/// Hypertable `$1`.`$2`'s segmentby columns, in order.
pub const SEGMENTBY: &str =
    "SELECT attname::text FROM timescaledb_information.compression_settings \
     WHERE hypertable_schema = $1 AND hypertable_name = $2 AND segmentby_column_index IS NOT NULL \
     ORDER BY segmentby_column_index";

/// The order TimescaleDB compresses hypertable `$1`.`$2`'s rows in: its segmentby
/// columns, then its orderby columns with their direction (`asc`, `nulls first`; NULL
/// for a segmentby column).
pub const COMPRESSION_ORDER: &str = "SELECT attname::text, orderby_asc, orderby_nullsfirst \
     FROM timescaledb_information.compression_settings \
     WHERE hypertable_schema = $1 AND hypertable_name = $2 \
       AND (segmentby_column_index IS NOT NULL OR orderby_column_index IS NOT NULL) \
     ORDER BY segmentby_column_index NULLS LAST, orderby_column_index";

/// Whether hypertable `$1`.`$2` has continuous aggregates.
pub const HAS_CONTINUOUS_AGGREGATES: &str = "SELECT EXISTS (SELECT 1 \
     FROM timescaledb_information.continuous_aggregates \
     WHERE hypertable_schema = $1 AND hypertable_name = $2)";

/// TimescaleDB's limit on rows one DML transaction may decompress; 0 when unset or empty.
pub const DECOMPRESS_LIMIT: &str = "SELECT coalesce(nullif(pg_catalog.current_setting(\
     'timescaledb.max_tuples_decompressed_per_dml_transaction', true), ''), '0')::int8";

/// Whether table `$1` has triggers of its own (TimescaleDB's insert blocker aside).
/// Where the current role is a superuser: the tables of `$1` (an oid array) that
/// another role owns and that have triggers of their own, as "table (owned by role)"
/// text; NULL when there is none (or the role is no superuser).
pub const OTHERS_TRIGGERS_UNDER_SUPERUSER: &str = "SELECT \
    pg_catalog.string_agg(pg_catalog.format('%s (owned by %s)', c.oid::regclass, \
            pg_catalog.pg_get_userbyid(c.relowner)), ', ') \
     FROM pg_catalog.pg_class AS c \
     WHERE c.oid = ANY ($1::oid[]) AND c.relowner <> (SELECT r.oid FROM pg_catalog.pg_roles AS r \
     WHERE r.rolname = current_user) \
       AND (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) \
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS t WHERE t.tgrelid = c.oid AND NOT \
       t.tgisinternal AND t.tgname <> 'ts_insert_blocker')";

pub const HAS_USER_TRIGGERS: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger \
                    WHERE tgrelid = $1::oid AND NOT tgisinternal AND tgname <> \
                    'ts_insert_blocker')";

/// How many unique and exclusion indexes table `$1` has, partial and expression ones
/// included.
pub const CHECKING_INDEX_COUNT: &str = "SELECT count(*)::int8 FROM pg_catalog.pg_index \
     WHERE indrelid = $1::oid AND (indisunique OR indisexclusion)";

/// Whether no foreign key refers to table `$1` or a child of it, and none of them has
/// row-level security.
pub const CHUNKS_CAN_BE_REWRITTEN: &str =
    "WITH t AS (SELECT $1::oid AS oid UNION ALL SELECT inhrelid FROM pg_catalog.pg_inherits WHERE \
     inhparent = $1::oid) \
     SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE contype = 'f' AND confrelid \
     IN (SELECT oid FROM t)) \
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid IN (SELECT oid FROM t) AND \
        relrowsecurity)";

/// Whether staging table `$1` (an oid) may be emptied with TRUNCATE in place of
/// deleting its rows: a plain table without inheritance or partitions, triggers, row
/// security or foreign keys pointing at it, that the current user may truncate.
pub const STAGING_CAN_BE_TRUNCATED: &str = "SELECT c.relkind = 'r' AND NOT c.relrowsecurity \
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid OR \
        i.inhrelid = c.oid) \
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid) \
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.contype = 'f' AND \
        k.confrelid = c.oid) \
        AND pg_catalog.has_table_privilege(c.oid, 'TRUNCATE') \
     FROM pg_catalog.pg_class c WHERE c.oid = $1::oid";

/// The array type of table `$1`'s row type.
pub const ROW_ARRAY_TYPE: &str =
    "SELECT t.typarray::int8 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_type t ON t.oid = \
     c.reltype WHERE c.oid = $1::oid";

/// The type of column `$2` (a name) of table `$1`, as `regtype` prints it.
pub const COLUMN_TYPE: &str = "SELECT a.atttypid::regtype::text FROM pg_catalog.pg_attribute a \
     WHERE a.attrelid = $1::oid AND a.attname = $2 AND NOT a.attisdropped";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::{quote_ident, QualifiedName};
    use crate::sql::checks::params;
    use crate::sql::route::staging_span;

    #[test]
    fn span_and_chunk_queries() {
        let q = staging_span(&QualifiedName::new("public", "st"), "time");
        assert_eq!(
            q,
            "SELECT min(s.\"time\")::text, max(s.\"time\")::text, count(*)::bigint, \
            (count(*) - count(s.\"time\"))::bigint FROM \"public\".\"st\" AS s"
        );
        let q = chunks_overlapping(TimeKind::Integer, "_timescaledb_functions.chunk_status");
        assert!(q.contains("c.range_end_integer > $3::bigint"), "{q}");
        let q = chunks_overlapping(TimeKind::Date, "_timescaledb_functions.chunk_status");
        assert!(q.contains("c.range_start <= ($4::timestamp AT TIME ZONE 'UTC')"), "{q}");
        assert!(q.contains("FROM timescaledb_information.chunks AS c"));
    }

    #[test]
    fn timescale_and_its_capabilities() {
        assert!(params(TIMESCALE).is_empty());
        assert!(TIMESCALE.contains(
            "FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n \
            ON n.oid = e.extnamespace"
        ));
        assert!(TIMESCALE.ends_with("WHERE e.extname = 'timescaledb'"));
        assert!(TIMESCALE.contains(
            "coalesce(current_setting('timescaledb.license', true), 'timescale') = 'timescale'"
        ));
        assert_eq!(params(CAPABILITIES), ["$1::regnamespace"]);
        assert!(CAPABILITIES.starts_with(
            "SELECT \
            pg_catalog.to_regprocedure('_timescaledb_functions.chunk_status(regclass)') IS NOT \
            NULL, "
        ));
        let settings = [
            "max_tuples_decompressed_per_dml_transaction",
            "enable_compressed_direct_batch_delete",
            "enable_direct_compress_insert",
        ];
        let mut at = 0;
        for name in settings {
            let setting =
                format!("pg_catalog.current_setting('timescaledb.{name}', true) IS NOT NULL");
            at = at.max(CAPABILITIES.find(&setting).unwrap_or_else(|| panic!("{name}")));
        }
        let compress =
            CAPABILITIES.find("proname IN ('compress_chunk', 'decompress_chunk')").unwrap();
        assert!(
            compress > at
                && CAPABILITIES[compress..].contains("proargtypes[1] = 'boolean'::regtype")
        );
        assert!(
            CAPABILITIES.ends_with("pronamespace = $1::regnamespace AND proname = 'alter_job')")
        );
    }

    #[test]
    fn names_and_oids() {
        assert_eq!(params(RESOLVE_TABLE), ["$1"]);
        assert!(RESOLVE_TABLE.starts_with(
            "SELECT c.oid::int8, n.nspname::text, c.relname::text, \
            c.relkind::text FROM pg_catalog.pg_class c"
        ));
        assert!(RESOLVE_TABLE.ends_with("WHERE c.oid = pg_catalog.to_regclass($1)"));
        assert_eq!(SEARCH_PATH, "SELECT pg_catalog.current_setting('search_path')");
        assert_eq!(params(REGCLASS_TEXT), ["$1::oid::regclass::text"]);
        assert_eq!(REGCLASS_OID, "SELECT pg_catalog.to_regclass($1)::oid::text");
    }

    #[test]
    fn columns_keys_and_casts() {
        assert_eq!(params(COLUMNS), ["$1::oid"]);
        assert!(COLUMNS.contains(
            "FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_collation \
            co ON co.oid = a.attcollation"
        ));
        assert!(COLUMNS.ends_with(
            "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ));
        assert!(COLUMNS.contains(
            "pg_catalog.format_type(a.atttypid, a.atttypmod), \
            a.atttypid::int8, a.attnotnull, a.atthasdef, a.attgenerated <> '', a.attidentity <> \
            ''"
        ));
        assert!(COLUMNS.contains(
            "CASE WHEN co.oid IS NULL THEN '' ELSE pg_catalog.format('%I.%I', \
            cn.nspname, co.collname) END"
        ));
        assert!(UNIQUE_KEYS.contains("i.indnullsnotdistinct"), "{UNIQUE_KEYS}");
        assert!(
            UNIQUE_KEYS.contains(
                "unnest((i.indcollation::oid[])[0:i.indnkeyatts - 1]) WITH \
            ORDINALITY AS k(coll, ord)"
            ),
            "{UNIQUE_KEYS}"
        );
        assert!(UNIQUE_KEYS.contains("WHERE NOT co.collisdeterministic"), "{UNIQUE_KEYS}");
        assert_eq!(params(CASTABLE), ["$1::oid", "$2::oid"]);
        assert!(CASTABLE.contains(
            "castsource = $1::oid AND casttarget = $2::oid AND castcontext IN ('a', 'i')"
        ));
        assert_eq!(params(UNIQUE_KEYS), ["$1::oid"]);
        assert!(UNIQUE_KEYS.contains(
            "WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred \
            IS NULL AND i.indexprs IS NULL"
        ));
        assert!(UNIQUE_KEYS.contains(
            "unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(num, ord)"
        ));
        assert!(UNIQUE_KEYS.ends_with("ORDER BY i.indisprimary DESC, 1"));
        assert_eq!(params(COLUMN_TYPE), ["$1::oid", "$2"]);
        assert!(COLUMN_TYPE
            .starts_with("SELECT a.atttypid::regtype::text FROM pg_catalog.pg_attribute a"));
        assert!(COLUMN_TYPE.contains("a.attname = $2 AND NOT a.attisdropped"));
        assert_eq!(params(ROW_ARRAY_TYPE), ["$1::oid"]);
        assert!(ROW_ARRAY_TYPE
            .contains("JOIN pg_catalog.pg_type t ON t.oid = c.reltype WHERE c.oid = $1::oid"));
    }

    #[test]
    fn privileges_and_owner() {
        assert_eq!(HAS_TABLE_PRIVILEGE, "SELECT pg_catalog.has_table_privilege($1::oid, $2)");
        assert_eq!(params(OWNS_TABLE), ["$1::oid"]);
        assert!(OWNS_TABLE.starts_with(
            "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c"
        ));
    }

    #[test]
    fn hypertable_policies_and_settings() {
        for q in [
            HYPERTABLE,
            COMPRESSION_POLICIES,
            SEGMENTBY,
            COMPRESSION_ORDER,
            HAS_CONTINUOUS_AGGREGATES,
        ] {
            assert_eq!(params(q), ["$1", "$2"], "{q}");
            assert!(
                q.contains("hypertable_schema = $1 AND ") && q.contains("hypertable_name = $2"),
                "{q}"
            );
        }
        assert!(HYPERTABLE.contains("FROM timescaledb_information.dimensions d"));
        assert!(HYPERTABLE.ends_with("ORDER BY d.dimension_number LIMIT 1"));
        assert!(COMPRESSION_POLICIES.contains("FROM timescaledb_information.jobs j"));
        assert!(COMPRESSION_POLICIES.contains("AND j.proc_name = 'policy_compression'"));
        assert!(COMPRESSION_POLICIES.contains("pg_catalog.pg_has_role(j.owner, 'USAGE')"));
        assert!(SEGMENTBY.contains("FROM timescaledb_information.compression_settings WHERE"));
        assert!(SEGMENTBY
            .ends_with("segmentby_column_index IS NOT NULL ORDER BY segmentby_column_index"));
        assert!(params(DECOMPRESS_LIMIT).is_empty());
        assert!(DECOMPRESS_LIMIT.contains(
            "coalesce(nullif(pg_catalog.current_setting(\
             'timescaledb.max_tuples_decompressed_per_dml_transaction', true), ''), '0')::int8"
        ));
    }

    #[test]
    fn chunk_statuses_and_space_constraints() {
        let ts = Timescale { schema: quote_ident("my ts"), version: "2.18.0".into() };
        let q = chunk_statuses(&ts);
        assert_eq!(params(&q), ["$1::oid::regclass"]);
        assert!(
            q.starts_with(
                "SELECT n.nspname::text, cl.relname::text, \
            _timescaledb_functions.chunk_status(c) FROM \"my \
            ts\".\"show_chunks\"($1::oid::regclass) AS c"
            ),
            "{q}"
        );
        assert!(q.contains(
            "JOIN pg_catalog.pg_class cl ON cl.oid = c JOIN pg_catalog.pg_namespace \
            n ON n.oid = cl.relnamespace"
        ));
        assert_eq!(params(SPACE_CONSTRAINT_DEFS), ["$1"]);
        assert!(SPACE_CONSTRAINT_DEFS
            .contains("WHERE con.conrelid = pg_catalog.to_regclass($1) AND con.contype = 'c'"));
        assert!(SPACE_CONSTRAINT_DEFS.ends_with("LIKE '%get_partition_hash(%'"));
    }

    #[test]
    fn interval_check() {
        assert_eq!(params(CHECK_INTERVAL), ["$1::interval", "$1::interval::text"]);
        assert!(CHECK_INTERVAL.contains("$1::interval < '0'::interval"));
        assert!(CHECK_INTERVAL.ends_with("$1::interval > '100 years'::interval"));
    }

    #[test]
    fn triggers_and_rewrite() {
        assert_eq!(params(HAS_USER_TRIGGERS), ["$1::oid"]);
        assert_eq!(params(OTHERS_TRIGGERS_UNDER_SUPERUSER), ["$1::oid[]"]);
        assert!(OTHERS_TRIGGERS_UNDER_SUPERUSER.contains(
            "AND (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user)"
        ));
        assert_eq!(params(CHECKING_INDEX_COUNT), ["$1::oid"]);
        assert!(CHECKING_INDEX_COUNT
            .ends_with("WHERE indrelid = $1::oid AND (indisunique OR indisexclusion)"));
        assert!(HAS_USER_TRIGGERS.contains(
            "FROM pg_catalog.pg_trigger WHERE tgrelid = $1::oid AND \
            NOT tgisinternal AND tgname <> 'ts_insert_blocker'"
        ));
        let q = STAGING_CAN_BE_TRUNCATED;
        assert_eq!(params(q), ["$1::oid"]);
        for part in [
            "c.relkind = 'r' AND NOT c.relrowsecurity",
            "pg_catalog.pg_inherits i WHERE i.inhparent = c.oid OR i.inhrelid = c.oid",
            "pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid",
            "k.contype = 'f' AND k.confrelid = c.oid",
            "pg_catalog.has_table_privilege(c.oid, 'TRUNCATE')",
        ] {
            assert!(q.contains(part), "{part} in {q}");
        }
        let q = CHUNKS_CAN_BE_REWRITTEN;
        assert_eq!(params(q), ["$1::oid"]);
        assert!(q.starts_with(
            "WITH t AS (SELECT $1::oid AS oid UNION ALL SELECT inhrelid FROM \
            pg_catalog.pg_inherits WHERE inhparent = $1::oid)"
        ));
        assert!(q.contains(
            "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE contype = 'f' \
            AND confrelid IN (SELECT oid FROM t))"
        ));
        assert!(q.contains(
            " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid IN \
            (SELECT oid FROM t) AND relrowsecurity)"
        ));
    }
}
