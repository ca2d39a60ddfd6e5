//! Validation before a run touches anything: the tables, their columns and keys,
//! privileges, TimescaleDB's capabilities, the config's intervals and settings. What
//! it finds is `Prepared` (`crate::step`), which every later phase reads.

use crate::catalog::{self, Table};
use crate::columns::{self, Column, Conflict, Names, UniqueKey};
use crate::config::{Config, ConflictAction, StrategyChoice};
use crate::error::{BackfillError, Code};
use crate::ident::quote_ident;
use crate::spi::{self, col, query_one, raise};
use crate::sql::moves::CompressOrder;
use crate::sql::{self, segment_merge::MergeSpec, MoveSpec};
use crate::step::{settings, CheckedInterval, Prepared};
use crate::timescale::Hypertable;

/// The intervals of the config, checked.
struct Intervals {
    push_interval: CheckedInterval,
    history_retention: String,
    max_runtime_s: Option<f64>,
}

/// Resolves and checks everything; raises (having changed nothing) on any problem.
pub fn prepare(mut cfg: Config) -> Prepared {
    let (staging, dest) = resolve_tables(&cfg);
    let ts = catalog::timescale();
    let ht = ts.as_ref().and_then(|_| catalog::hypertable(&dest));
    if let (Some(ts), Some(_)) = (&ts, &ht) {
        spi::check(catalog::timescale_capabilities(ts).check(&ts.version));
    }
    let (copied, d_cols, keys, conflict) = resolve_columns(&cfg, &staging, &dest);
    let intervals = check_intervals(&mut cfg);
    settings::validate(&cfg);
    require_privileges(&cfg, &staging, &dest, conflict.action);
    warn_of_others_triggers(&staging, &dest);
    if let Some(h) = &ht {
        check_time_column(&staging, &dest, h, &copied);
    }
    let spec = MoveSpec {
        staging: staging.name.clone(),
        destination: dest.name.clone(),
        columns: copied,
        conflict,
        delete_from_staging: cfg.delete_from_staging,
        dest_partitioned: dest.relkind == "p",
    };
    // segments matter only where rows may meet compressed rows (estimates, merges, keys)
    let meet = spec.conflict.action != ConflictAction::Nothing || !keys.is_empty();
    let segmentby = if ht.is_some() && meet { catalog::segmentby(&dest) } else { vec![] };
    let checking_indexes = catalog::checking_index_count(dest.oid);
    // a unique index that is not a plain key (partial, or on expressions) may hold
    // rows of other segments: a merge of touched segments alone would not meet them
    let merge = merge_spec(&spec, &dest, &d_cols, &keys, &segmentby)
        .filter(|_| checking_indexes == keys.len() as i64);
    let truncate_ok = merge.is_some() && catalog::chunks_can_be_rewritten(dest.oid);
    let new_segments = (ht.is_some() && checking_indexes == 1)
        .then(|| new_segments_spec(&cfg, &spec, &dest, (&d_cols, &keys), &segmentby))
        .flatten();
    Prepared {
        compress_order: (ht.is_some() && checking_indexes == 0)
            .then(|| compress_order(&cfg, &dest, &spec.columns, &d_cols))
            .flatten(),
        row_array_type: if truncate_ok { catalog::row_array_type(dest.oid) } else { 0 },
        push_interval: intervals.push_interval,
        history_retention: intervals.history_retention,
        max_runtime_s: intervals.max_runtime_s,
        has_unique: !keys.is_empty(),
        direct_meets_conflicts: checking_indexes <= 1
            && keys.iter().all(|k| k.rules.deterministic && !k.rules.nulls_not_distinct),
        decompress_limit: catalog::decompress_limit(),
        cfg,
        staging,
        dest,
        ts,
        ht,
        spec,
        segments_collated: collated(&segmentby, &d_cols),
        segmentby,
        merge,
        truncate_ok,
        new_segments,
    }
}

/// Where rows of segments a chunk lacks may be written into it in bulk
/// (`Prepared::new_segments`), the move that does it: the run's, with the key as its
/// target. One unique key, a plain one that holds every segmentby column and is the
/// conflict target (or there is none: `NOTHING` meets every unique key), compared as
/// bytes compare; staging with every column of the destination; `NOTHING` or `UPDATE`.
fn new_segments_spec(
    cfg: &Config,
    spec: &MoveSpec,
    dest: &Table,
    (d_cols, keys): (&[Column], &[UniqueKey]),
    segmentby: &[String],
) -> Option<MoveSpec> {
    if !cfg.delete_from_staging || cfg.strategy != StrategyChoice::Auto {
        return None;
    }
    let c = &spec.conflict;
    let [key] = keys else {
        return None;
    };
    let same_key = (c.target.is_empty() && c.action == ConflictAction::Nothing)
        || (key.columns.len() == c.target.len()
            && key.columns.iter().all(|k| c.target.contains(k)));
    let allowed = matches!(c.action, ConflictAction::Nothing | ConflictAction::Update)
        && same_key
        && key.rules.deterministic
        && !key.rules.nulls_not_distinct
        && !segmentby.is_empty()
        && segmentby.iter().all(|s| key.columns.contains(s))
        && d_cols.iter().all(|d| spec.columns.contains(&d.name));
    if !allowed || catalog::has_user_triggers(dest.oid) || catalog::has_continuous_aggregates(dest)
    {
        return None;
    }
    Some(with_key_as_target(spec, key))
}

/// The order a direct insert writes compressed batches in, where TimescaleDB's direct
/// compression takes a destination with no unique or exclusion index: none where the
/// config asks to decompress, or the hypertable has triggers or continuous aggregates
/// (TimescaleDB's direct compression does not run them).
fn compress_order(
    cfg: &Config,
    dest: &Table,
    copied: &[String],
    d_cols: &[Column],
) -> Option<CompressOrder> {
    if cfg.strategy == StrategyChoice::Decompress
        || catalog::has_user_triggers(dest.oid)
        || catalog::has_continuous_aggregates(dest)
    {
        return None;
    }
    let collation = |c: &str| d_cols.iter().find(|d| d.name == c)?.collation.clone();
    sql::moves::compression_order_by(&catalog::compression_order(dest), copied, &collation)
}

/// The segmentby columns with their collations (where their type has one).
fn collated(segmentby: &[String], columns: &[Column]) -> Vec<(String, Option<String>)> {
    let collation = |s: &String| columns.iter().find(|c| &c.name == s)?.collation.clone();
    segmentby.iter().map(|s| (s.clone(), collation(s))).collect()
}

/// The columns a run copies, the destination's columns and unique keys, and the
/// conflict target and update columns.
fn resolve_columns(
    cfg: &Config,
    staging: &Table,
    dest: &Table,
) -> (Vec<String>, Vec<Column>, Vec<UniqueKey>, Conflict) {
    let (names_s, names_d) = (staging.name.to_string(), dest.name.to_string());
    let names = Names { staging: &names_s, destination: &names_d };
    let d_cols = catalog::columns(dest.oid);
    let s_cols = catalog::columns(staging.oid);
    let copied = spi::check(columns::match_columns(&s_cols, &d_cols, &names, &catalog::castable));
    let keys = catalog::unique_keys(dest.oid);
    let mut conflict = spi::check(columns::resolve_conflict(cfg, &copied, &d_cols, &keys, &names));
    conflict.not_null_in_staging = s_cols
        .iter()
        .filter(|c| c.not_null && copied.contains(&c.name))
        .map(|c| c.name.clone())
        .collect();
    (copied, d_cols, keys, conflict)
}

/// The staging table and the destination: tables, and not the same one.
fn resolve_tables(cfg: &Config) -> (Table, Table) {
    let staging = catalog::resolve_table("staging_table", "staging table", &cfg.staging_table);
    if staging.relkind != "r" && staging.relkind != "p" {
        raise(
            BackfillError::new(
                Code::WrongObjectType,
                format!(
                    "staging table {} is not a table ({})",
                    staging.name,
                    relkind_name(&staging.relkind)
                ),
            )
            .hint("rows are deleted from the staging table as they move: give a table"),
        );
    }
    let dest = catalog::resolve_table("destination_hypertable", "destination", &cfg.destination);
    if dest.relkind != "r" && dest.relkind != "p" {
        raise(
            BackfillError::new(
                Code::WrongObjectType,
                format!(
                    "destination {} is not a table ({})",
                    dest.name,
                    relkind_name(&dest.relkind)
                ),
            )
            .hint("give a hypertable, or a plain or partitioned table"),
        );
    }
    if staging.oid == dest.oid {
        raise(
            BackfillError::new(
                Code::InvalidParameterValue,
                format!("staging table and destination are the same table, {}", dest.name),
            )
            .hint("the staging table is a separate table with the destination's columns"),
        );
    }
    (staging, dest)
}

/// Checks every interval of the config, and settles `lock_timeout` (see
/// `settings::resolve_lock_timeout`).
fn check_intervals(cfg: &mut Config) -> Intervals {
    let push_interval =
        catalog::check_interval("compression_job_push_interval", &cfg.push_interval);
    let history_retention = catalog::check_interval("history_retention", &cfg.history_retention);
    catalog::check_interval("lock_wait", &cfg.lock_wait);
    let lock_timeout = settings::resolve_lock_timeout(cfg.lock_timeout.take());
    catalog::check_interval("lock_timeout", &lock_timeout);
    cfg.lock_timeout = Some(lock_timeout);
    let max_runtime_s = cfg
        .max_runtime
        .as_ref()
        .map(|m| settings::seconds(&catalog::check_interval("max_runtime", m)));
    let push_interval =
        CheckedInterval { seconds: settings::seconds(&push_interval), text: push_interval };
    Intervals { push_interval, history_retention, max_runtime_s }
}

/// The privileges the run needs on both tables.
fn require_privileges(cfg: &Config, staging: &Table, dest: &Table, action: ConflictAction) {
    let mut st_privs = vec!["SELECT"];
    if cfg.delete_from_staging {
        st_privs.push("DELETE");
    }
    catalog::require_privileges(staging, "staging table", &st_privs);
    let d_privs: &[&str] = match action {
        ConflictAction::Nothing => &["INSERT"],
        ConflictAction::Update => &["SELECT", "INSERT", "UPDATE"],
        ConflictAction::Restrict => &["SELECT", "INSERT"],
    };
    catalog::require_privileges(dest, "destination", d_privs);
}

/// Staging has the hypertable's time column, and no row without a time (declared NOT
/// NULL, or none found).
fn check_time_column(staging: &Table, dest: &Table, h: &Hypertable, copied: &[String]) {
    if !copied.contains(&h.time_column) {
        raise(
            BackfillError::new(
                Code::UndefinedColumn,
                format!(
                    "staging table {} has no column \"{}\", the time column of hypertable {}",
                    staging.name, h.time_column, dest.name
                ),
            )
            .hint("add the time column to the staging table"),
        );
    }
    // a column declared NOT NULL needs no scan of staging
    let declared =
        catalog::columns(staging.oid).iter().any(|c| c.name == h.time_column && c.not_null);
    let nulls = if declared {
        0
    } else {
        query_one(&sql::chunk::count_null_times(&staging.name, &h.time_column), &[], |r| {
            col::<i64>(r, 1).unwrap_or(0)
        })
        .unwrap_or(0)
    };
    if nulls > 0 {
        raise(
            BackfillError::new(
                Code::NotNullViolation,
                format!(
                    "{nulls} rows of staging table {} have NULL in the time column \"{}\"",
                    staging.name, h.time_column
                ),
            )
            .hint(format!(
                "correct or delete them: DELETE FROM {} WHERE {} IS NULL",
                staging.name.quoted(),
                quote_ident(&h.time_column)
            )),
        );
    }
}

/// A run as a superuser over another role's tables with triggers of their own runs
/// that code with superuser rights: say so.
fn warn_of_others_triggers(staging: &Table, dest: &Table) {
    if let Some(tables) = catalog::others_triggers_under_superuser(&[staging.oid, dest.oid]) {
        pgrx::warning!(
            "backfill_ext: this run executes as a superuser, and the triggers of {tables} run with \
             its rights; run it as the tables' owner instead"
        );
    }
}

/// Whether dense rows may be merged by segments instead of decompressing the chunk: an
/// UPDATE, or a `NOTHING` with a target (or one unique key, which then is the target),
/// on one segmentby column that every unique key contains (so conflicts stay inside a
/// segment), no generated or identity columns, and no triggers of the user's (rows of a
/// touched segment are written again). Returns the merge and the move it makes (the
/// run's, with the target filled in).
fn merge_spec(
    spec: &MoveSpec,
    dest: &Table,
    d_cols: &[Column],
    keys: &[UniqueKey],
    segmentby: &[String],
) -> Option<(MergeSpec, MoveSpec)> {
    let keyed = match (spec.conflict.action, keys) {
        (ConflictAction::Update, _) if !spec.conflict.update_columns.is_empty() => spec.clone(),
        (ConflictAction::Nothing, _) if !spec.conflict.target.is_empty() => spec.clone(),
        (ConflictAction::Nothing, [key]) => with_key_as_target(spec, key),
        _ => return None,
    };
    let c = &keyed.conflict;
    if c.target.is_empty() || segmentby.len() != 1 {
        return None;
    }
    let segment = &segmentby[0];
    if !c.target.contains(segment) || !keys.iter().all(|k| k.columns.contains(segment)) {
        return None;
    }
    // joins on keys that NULLs may equal, or that compare by a nondeterministic
    // collation, are left to TimescaleDB's own insert
    if c.rules.nulls_not_distinct || !c.rules.deterministic {
        return None;
    }
    let at = c.target.iter().position(|t| t == segment)?;
    if d_cols.iter().any(|c| c.generated || c.identity) || catalog::has_user_triggers(dest.oid) {
        return None;
    }
    let m = MergeSpec {
        dest_columns: d_cols.iter().map(|c| c.name.clone()).collect(),
        segment: segment.clone(),
        segment_type: catalog::column_type(dest.oid, segment)?,
        segment_collation: c.rules.collations.get(at).cloned().flatten(),
    };
    Some((m, keyed))
}

/// The run's move with `key` as its conflict target: the same for `NOTHING` without a
/// target where `key` is the destination's only unique key.
fn with_key_as_target(spec: &MoveSpec, key: &UniqueKey) -> MoveSpec {
    let mut s = spec.clone();
    s.conflict.target = key.columns.clone();
    s.conflict.rules = key.rules.clone();
    s
}

fn relkind_name(k: &str) -> &'static str {
    match k {
        "v" => "a view",
        "m" => "a materialized view",
        "f" => "a foreign table",
        "S" => "a sequence",
        "i" | "I" => "an index",
        "c" => "a composite type",
        "t" => "a TOAST table",
        _ => "not a table",
    }
}
