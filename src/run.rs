//! One backfill run: validate, hold the compression policy, move chunk by chunk
//! (each in its own transaction when the call may commit), put the policy back.

use crate::catalog::{self, Table};
use crate::timescale::{status, Chunk, Hypertable, Policy, Timescale, HASH_FN};
use crate::columns::{self, Names};
use crate::config::{Config, ConflictAction};
use crate::error::{BackfillError, Code};
use crate::ident::QualifiedName;
use crate::config::StrategyChoice;
use crate::plan::{self, Candidate, Estimate, Plan, Step, Strategy};
use crate::spi::{self, col, p, query, query_one, raise, run as exec, Session};
use crate::sql::{self, MoveSpec, RowFilter};
use pgrx::{notice, pg_sys};
use std::collections::HashSet;
use std::time::Instant;

/// Everything validated before the run touches anything.
pub struct Prepared {
    pub cfg: Config,
    pub staging: Table,
    pub dest: Table,
    pub ts: Option<Timescale>,
    pub ht: Option<Hypertable>,
    pub spec: MoveSpec,
    pub push_interval: String,
    pub history_retention: String,
    /// `max_runtime` in seconds, if set.
    pub max_runtime_s: Option<f64>,
    /// Whether the destination has a unique index (inserts check for conflicts).
    pub has_unique: bool,
    /// The hypertable's segmentby columns.
    pub segmentby: Vec<String>,
    /// `timescaledb.max_tuples_decompressed_per_dml_transaction` (0: none).
    pub decompress_limit: i64,
    /// Set when dense upserts can merge segments (see `Strategy::Merge`).
    pub merge: Option<sql::merge::MergeSpec>,
    /// Whether a merge that touches every segment of a chunk may empty the chunk with
    /// TRUNCATE and rewrite it (see `catalog::chunks_can_be_rewritten`).
    pub truncate_ok: bool,
    /// The array type of the destination's row type (a rewrite holds rows in one).
    pub row_array_type: u32,
}

impl Prepared {
    fn filter_for(&self, c: &Chunk) -> RowFilter {
        let ht = self.ht.as_ref().expect("chunks belong to a hypertable");
        RowFilter {
            time_column: ht.time_column.clone(),
            kind: ht.kind,
            lo: c.lo.clone(),
            hi: c.hi.clone(),
            space: c.space.clone(),
            hash_function: HASH_FN.to_string(),
        }
    }
}

/// Resolves and checks everything; raises (having changed nothing) on any problem.
pub fn prepare(cfg: Config) -> Prepared {
    let staging = catalog::resolve_table("staging_table", "staging table", &cfg.staging_table);
    if staging.relkind != "r" && staging.relkind != "p" {
        raise(
            BackfillError::new(Code::WrongObjectType, format!("staging table {} is not a table ({})", staging.name, relkind_name(&staging.relkind)))
                .hint("rows are deleted from the staging table as they move: give a table"),
        );
    }
    let dest = catalog::resolve_table("destination_hypertable", "destination", &cfg.destination);
    if dest.relkind != "r" && dest.relkind != "p" {
        raise(
            BackfillError::new(Code::WrongObjectType, format!("destination {} is not a table ({})", dest.name, relkind_name(&dest.relkind)))
                .hint("give a hypertable, or a plain or partitioned table"),
        );
    }
    if staging.oid == dest.oid {
        raise(
            BackfillError::new(Code::InvalidParameterValue, format!("staging table and destination are the same table, {}", dest.name))
                .hint("the staging table is a separate table with the destination's columns"),
        );
    }
    let ts = catalog::timescale();
    let ht = ts.as_ref().and_then(|_| catalog::hypertable(&dest));
    if let (Some(ts), Some(_)) = (&ts, &ht) {
        spi::check(catalog::timescale_capabilities(ts).check(&ts.version));
    }

    let names_s = staging.name.to_string();
    let names_d = dest.name.to_string();
    let names = Names { staging: &names_s, destination: &names_d };
    let st_cols = catalog::columns(staging.oid);
    let d_cols = catalog::columns(dest.oid);
    let copied = spi::check(columns::match_columns(&st_cols, &d_cols, &names, &catalog::castable));
    let keys = catalog::unique_keys(dest.oid);
    let has_unique = !keys.is_empty();
    let conflict = spi::check(columns::resolve_conflict(&cfg, &copied, &d_cols, &keys, &names));
    let push_interval = catalog::check_interval("compression_job_push_interval", &cfg.push_interval);
    let history_retention = catalog::check_interval("history_retention", &cfg.history_retention);
    catalog::check_interval("lock_wait", &cfg.lock_wait);
    // unset: the session's lock_timeout where it has one (a role's or database's
    // setting for jobs), else the default
    let mut cfg = cfg;
    let lock_timeout = match cfg.lock_timeout.take() {
        Some(t) => t,
        None => query_one(
            "SELECT CASE WHEN pg_catalog.current_setting('lock_timeout') = '0' THEN $1 ELSE pg_catalog.current_setting('lock_timeout') END",
            &[p(crate::config::DEFAULT_LOCK_TIMEOUT)],
            |r| col::<String>(r, 1),
        )
        .flatten()
        .unwrap_or_else(|| crate::config::DEFAULT_LOCK_TIMEOUT.into()),
    };
    catalog::check_interval("lock_timeout", &lock_timeout);
    cfg.lock_timeout = Some(lock_timeout);
    let max_runtime_s = cfg.max_runtime.as_ref().map(|m| {
        let text = catalog::check_interval("max_runtime", m);
        query_one("SELECT extract(epoch FROM $1::interval)::float8", &[p(text)], |r| col::<f64>(r, 1).unwrap_or(0.0)).unwrap_or(0.0)
    });
    validate_settings(&cfg);

    let mut st_privs = vec!["SELECT"];
    if cfg.delete_from_staging {
        st_privs.push("DELETE");
    }
    catalog::require_privileges(&staging, "staging table", &st_privs);
    let d_privs: &[&str] = match conflict.action {
        ConflictAction::Nothing => &["INSERT"],
        ConflictAction::Update => &["SELECT", "INSERT", "UPDATE"],
        ConflictAction::Restrict => &["SELECT", "INSERT"],
    };
    catalog::require_privileges(&dest, "destination", d_privs);
    if let Some(h) = &ht {
        if !copied.contains(&h.time_column) {
            raise(
                BackfillError::new(Code::UndefinedColumn, format!("staging table {} has no column \"{}\", the time column of hypertable {}", staging.name, h.time_column, dest.name))
                    .hint("add the time column to the staging table"),
            );
        }
        let nulls = query_one(
            &format!("SELECT count(*)::int8 FROM {} AS s WHERE s.{} IS NULL", staging.name.quoted(), crate::ident::quote_ident(&h.time_column)),
            &[],
            |r| col::<i64>(r, 1).unwrap_or(0),
        )
        .unwrap_or(0);
        if nulls > 0 {
            raise(
                BackfillError::new(Code::NotNullViolation, format!("{nulls} rows of staging table {} have NULL in the time column \"{}\"", staging.name, h.time_column))
                    .hint(format!("correct or delete them: DELETE FROM {} WHERE {} IS NULL", staging.name.quoted(), crate::ident::quote_ident(&h.time_column))),
            );
        }
    }
    let spec = MoveSpec {
        staging: staging.name.clone(),
        destination: dest.name.clone(),
        columns: copied,
        conflict,
        delete_from_staging: cfg.delete_from_staging,
        dest_partitioned: dest.relkind == "p",
    };
    // segments matter only where conflicts touch compressed rows (estimates, merges)
    let segmentby = if ht.is_some() && spec.conflict.action != ConflictAction::Nothing { catalog::segmentby(&dest) } else { vec![] };
    let decompress_limit = catalog::decompress_limit();
    let merge = merge_spec(&spec, &dest, &d_cols, &keys, &segmentby);
    let truncate_ok = merge.is_some() && catalog::chunks_can_be_rewritten(dest.oid);
    let row_array_type = if truncate_ok { catalog::row_array_type(dest.oid) } else { 0 };
    Prepared {
        cfg,
        staging,
        dest,
        ts,
        ht,
        spec,
        push_interval,
        history_retention,
        max_runtime_s,
        has_unique,
        segmentby,
        decompress_limit,
        merge,
        truncate_ok,
        row_array_type,
    }
}

/// Whether a dense upsert may merge segments instead of decompressing the chunk: an
/// UPDATE on one segmentby column that every unique key contains (so conflicts stay
/// inside a segment), no generated or identity columns, and no triggers of the user's
/// (rows of a touched segment are written again).
fn merge_spec(
    spec: &MoveSpec,
    dest: &Table,
    d_cols: &[crate::columns::Column],
    keys: &[crate::columns::UniqueKey],
    segmentby: &[String],
) -> Option<sql::merge::MergeSpec> {
    let c = &spec.conflict;
    if c.action != ConflictAction::Update || c.target.is_empty() || c.update_columns.is_empty() || segmentby.len() != 1 {
        return None;
    }
    let segment = &segmentby[0];
    if !c.target.contains(segment) || !keys.iter().all(|k| k.columns.contains(segment)) {
        return None;
    }
    if d_cols.iter().any(|c| c.generated || c.identity) || catalog::has_user_triggers(dest.oid) {
        return None;
    }
    Some(sql::merge::MergeSpec {
        dest_columns: d_cols.iter().map(|c| c.name.clone()).collect(),
        segment: segment.clone(),
        segment_type: catalog::column_type(dest.oid, segment)?,
    })
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

/// Checks the config's `work_mem` and `lock_timeout` without leaving them set: the
/// caller's transaction keeps its own values (`backfill_plan`, `backfill_check_config`
/// and `schedule_backfill` validate in it). A run applies them where it works.
fn validate_settings(cfg: &Config) {
    let saved: Vec<(&str, String)> = ["lock_timeout", "work_mem"]
        .into_iter()
        .map(|name| (name, query_one("SELECT pg_catalog.current_setting($1)", &[p(name)], |r| col::<String>(r, 1)).flatten().unwrap_or_default()))
        .collect();
    apply_settings(cfg);
    for (name, value) in saved {
        exec("SELECT pg_catalog.set_config($1, $2, true)", &[p(name), p(value)]);
    }
}

/// Sets the run's `work_mem` and `lock_timeout` for the current transaction.
fn apply_settings(cfg: &Config) {
    let lock_timeout = cfg.lock_timeout_or_default();
    let mut settings = vec![("lock_timeout", lock_timeout, "an interval such as \"30 seconds\"")];
    if let Some(wm) = &cfg.work_mem {
        settings.push(("work_mem", wm, "a size such as \"256MB\""));
    }
    for (name, value, example) in settings {
        let r = spi::in_subtransaction(std::panic::AssertUnwindSafe(|| {
            if name == "lock_timeout" {
                // the setting takes milliseconds; the config, an interval
                exec(
                    "SELECT pg_catalog.set_config('lock_timeout', (extract(epoch FROM $1::interval) * 1000)::int8::text, true)",
                    &[p(value)],
                )
            } else {
                exec("SELECT pg_catalog.set_config($1, $2, true)", &[p(name), p(value)])
            }
        }));
        if let Err(e) = r {
            raise(
                BackfillError::new(Code::InvalidParameterValue, format!("config key \"{name}\" is not valid: \"{value}\""))
                    .detail(spi::caught_message(&e))
                    .hint(format!("give {example}")),
            );
        }
    }
}

/// Staging rows and their time span.
pub struct Span {
    pub min: Option<String>,
    pub max: Option<String>,
    pub rows: i64,
}

pub fn staging_span(prep: &Prepared) -> Span {
    match &prep.ht {
        Some(h) => query_one(&sql::route::staging_span(&prep.staging.name, &h.time_column), &[], |r| Span {
            min: col(r, 1),
            max: col(r, 2),
            rows: col::<i64>(r, 3).unwrap_or(0),
        })
        .unwrap(),
        None => Span {
            min: None,
            max: None,
            rows: query_one(&format!("SELECT count(*)::int8 FROM {}", prep.staging.name.quoted()), &[], |r| col::<i64>(r, 1).unwrap_or(0))
                .unwrap_or(0),
        },
    }
}

/// The plan: chunks that receive rows, counted per chunk.
pub fn make_plan(prep: &Prepared) -> Plan {
    let span = staging_span(prep);
    let (Some(ht), Some(min), Some(max)) = (&prep.ht, &span.min, &span.max) else {
        return plan::plan(vec![], span.rows, prep.cfg.strategy);
    };
    let chunks = catalog::chunks_overlapping(&prep.dest, ht, min, max);
    let counts = if chunks.is_empty() { vec![] } else { count_by_chunk(prep, ht, &chunks) };
    // with rows leaving staging as they move, and many chunks to scan it for, route the
    // rows to their chunks once
    let with_rows = counts.iter().filter(|n| **n > 0).count();
    let routed = prep.cfg.delete_from_staging && (plan::should_route(with_rows, span.rows) || spi::debug_setting("always_route"));
    if routed {
        route_rows(prep, ht, &chunks);
    }
    let candidates = chunks
        .into_iter()
        .zip(counts)
        .enumerate()
        .map(|(i, (chunk, staging_rows))| {
            let idx = i as i32 + 1;
            let estimate = (staging_rows > 0 && prep.cfg.strategy == StrategyChoice::Auto && status::is_compressed(chunk.status))
                .then(|| estimate(prep, &chunk, idx, routed, staging_rows));
            Candidate { idx, chunk, staging_rows, estimate }
        })
        .collect();
    let mut plan = plan::plan(candidates, span.rows, prep.cfg.strategy);
    plan.routed = routed;
    plan
}

/// Counts the staging rows of each chunk in one scan; in chunk order.
fn count_by_chunk(prep: &Prepared, ht: &Hypertable, chunks: &[Chunk]) -> Vec<i64> {
    let (q, params) = if by_time(ht, chunks.iter()) {
        (sql::route::count_by_time(&prep.staging.name, &ht.time_column, ht.kind), bounds_params(chunks.iter()))
    } else {
        let filters: Vec<RowFilter> = chunks.iter().map(|c| prep.filter_for(c)).collect();
        let (q, params) = sql::route::count_by_filters(&prep.staging.name, &filters);
        (q, spi::params(params))
    };
    let mut counts = vec![0i64; chunks.len()];
    for (idx, n) in query(&q, &params, |r| (col::<i32>(r, 1).unwrap_or(0), col::<i64>(r, 2).unwrap_or(0))) {
        if idx >= 1 && (idx as usize) <= counts.len() {
            counts[idx as usize - 1] = n;
        }
    }
    counts
}

/// The chunks' lower and upper bounds as two array parameters (`time_buckets`'s `$1`, `$2`).
fn bounds_params<'a>(chunks: impl Iterator<Item = &'a Chunk> + Clone) -> Vec<spi::Param> {
    let lows: Vec<String> = chunks.clone().map(|c| c.lo.clone().unwrap_or_default()).collect();
    let highs: Vec<String> = chunks.map(|c| c.hi.clone().unwrap_or_default()).collect();
    vec![p(sql::array_literal(&lows)), p(sql::array_literal(&highs))]
}

/// Chunk numbers as an int4[] parameter.
fn idx_array(idxs: impl Iterator<Item = i32>) -> spi::Param {
    p(format!("{{{}}}", idxs.map(|i| i.to_string()).collect::<Vec<_>>().join(",")))
}

/// Whether chunks are told apart by time alone (one dimension, bounded ranges).
fn by_time<'a>(ht: &Hypertable, mut chunks: impl Iterator<Item = &'a Chunk>) -> bool {
    ht.dimensions == 1 && chunks.all(|c| c.lo.is_some() && c.hi.is_some())
}

/// Writes `pg_temp._backfill_rows` (each staging row's ctid and chunk number) in one
/// scan of the staging table.
fn route_rows(prep: &Prepared, ht: &Hypertable, chunks: &[Chunk]) {
    drop_temp_tables();
    exec(&format!("CREATE TEMP TABLE {} (src tid NOT NULL, idx int4 NOT NULL)", sql::route::ROUTE_TABLE.trim_start_matches("pg_temp.")), &[]);
    if by_time(ht, chunks.iter()) {
        exec(&sql::route::route_by_time(&prep.staging.name, &ht.time_column, ht.kind), &bounds_params(chunks.iter()));
    } else {
        let filters: Vec<RowFilter> = chunks.iter().map(|c| prep.filter_for(c)).collect();
        let (q, params) = sql::route::route_by_filters(&prep.staging.name, &filters);
        let params = spi::params(params);
        exec(&q, &params);
    }
    exec(&format!("CREATE INDEX ON {} (idx)", sql::route::ROUTE_TABLE), &[]);
    exec(&format!("ANALYZE {}", sql::route::ROUTE_TABLE), &[]);
}

fn temp_table_exists(table: &str) -> bool {
    query_one("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[p(table)], |r| col::<bool>(r, 1).unwrap_or(false)).unwrap_or(false)
}

/// Drops the run's temporary tables (routing, merge) at the end of a run.
fn drop_temp_tables() {
    if temp_table_exists(sql::route::ROUTE_TABLE) {
        exec(&format!("DROP TABLE {}", sql::route::ROUTE_TABLE), &[]);
    }
    drop_merge_tables();
}

/// What choosing a strategy for a compressed chunk needs: its rows, and the staging
/// rows whose segment already has batches there.
fn estimate(prep: &Prepared, chunk: &Chunk, idx: i32, routed: bool, staging_rows: i64) -> Estimate {
    let conflicts_decompress = prep.has_unique && prep.spec.conflict.action != ConflictAction::Nothing;
    let mut e = Estimate {
        chunk_rows: 0,
        rows_meeting_batches: 0,
        conflicts_decompress,
        decompress_limit: prep.decompress_limit,
        merge_possible: prep.cfg.delete_from_staging && prep.merge.is_some(),
    };
    if !conflicts_decompress {
        return e;
    }
    e.chunk_rows = query_one(&format!("SELECT count(*)::int8 FROM {}", chunk.name.quoted()), &[], |r| col::<i64>(r, 1).unwrap_or(0))
        .unwrap_or(0);
    let cap = plan::meeting_rows_that_decide(e.chunk_rows, e.decompress_limit);
    e.rows_meeting_batches = if prep.segmentby.is_empty() {
        staging_rows
    } else if routed {
        let q = sql::route::count_routed_meeting_segments(&prep.staging.name, &chunk.name, &prep.segmentby);
        query_one(&q, &[p(idx.to_string()), p(cap.to_string())], |r| col::<i64>(r, 1).unwrap_or(0)).unwrap_or(staging_rows)
    } else {
        let (q, params) = sql::route::count_rows_meeting_segments(&prep.staging.name, &prep.filter_for(chunk), &chunk.name, &prep.segmentby);
        let mut params = spi::params(params);
        params.push(p(cap.to_string()));
        query_one(&q, &params, |r| col::<i64>(r, 1).unwrap_or(0)).unwrap_or(staging_rows)
    };
    e
}

/// What one step did.
#[derive(Debug, Default, Clone)]
pub struct StepResult {
    /// How the rows went in (None for rows outside existing chunks).
    pub strategy: Option<Strategy>,
    /// A direct insert hit the decompression limit and the chunk was decompressed instead.
    pub fell_back: bool,
    pub moved: i64,
    pub inserted: i64,
    pub updated: i64,
    pub decompressed: bool,
    pub recompressed: bool,
    /// A merge touched every segment and rewrote the whole chunk.
    pub rewrote: bool,
    /// It held the merged rows in a temporary table (they would not fit in memory).
    pub rewrote_on_disk: bool,
    pub decompress_ms: f64,
    pub insert_ms: f64,
    pub recompress_ms: f64,
}

impl StepResult {
    pub fn conflicts(&self) -> i64 {
        self.moved - self.inserted
    }

    /// What was done to the chunk, for the NOTICE.
    pub fn describe(&self) -> String {
        let how = match (self.strategy, self.recompressed) {
            (Some(Strategy::Direct), true) => "inserted into the compressed chunk, recompressed",
            (Some(Strategy::Direct), false) => "inserted into the compressed chunk",
            (Some(Strategy::Decompress), _) => "decompressed, recompressed",
            (Some(Strategy::Merge), _) if self.rewrote_on_disk => {
                "merged, every segment touched: chunk rewritten (through a temporary table), recompressed"
            }
            (Some(Strategy::Merge), _) if self.rewrote => "merged, every segment touched: chunk rewritten, recompressed",
            (Some(Strategy::Merge), _) => "merged into its segments, recompressed",
            _ => "uncompressed chunk",
        };
        if self.fell_back {
            format!("{how} (the direct insert would have passed the decompression limit)")
        } else {
            how.to_string()
        }
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn chunk_status(c: &QualifiedName) -> i32 {
    query_one(&format!("SELECT {}($1::regclass)", crate::timescale::CHUNK_STATUS_FN), &[p(c.quoted())], |r| col::<i32>(r, 1).unwrap_or(0))
        .unwrap_or(0)
}

/// What a move statement did: rows taken per chunk number, and rows inserted and
/// updated per chunk OID (0 for both on the filter path).
struct Moved {
    moved: Vec<(i32, i64)>,
    inserted: Vec<(u32, i64, i64)>,
}

impl Moved {
    fn total(&self) -> (i64, i64, i64) {
        (
            self.moved.iter().map(|m| m.1).sum(),
            self.inserted.iter().map(|i| i.1).sum(),
            self.inserted.iter().map(|i| i.2).sum(),
        )
    }
}

/// Moves rows from staging into the destination in one statement. `filter` also
/// scopes the RESTRICT probe.
fn move_rows(prep: &Prepared, take: Take, filter: &RowFilter, chunk_label: &str) -> Moved {
    if prep.spec.conflict.action == ConflictAction::Restrict && !prep.spec.conflict.target.is_empty() {
        let (q, params) = sql::moves::restrict_probe(&prep.spec, filter);
        let params = spi::params(params);
        if let Some(key) = query_one(&q, &params, |r| col::<String>(r, 1)).flatten() {
            raise(
                BackfillError::new(Code::UniqueViolation, format!("key {key} already exists in {chunk_label} of destination {}", prep.dest.name))
                    .detail("on_conflict_action is RESTRICT; this chunk was rolled back and its rows stay in the staging table")
                    .hint("remove the conflicting staging rows, or use on_conflict_action NOTHING or UPDATE"),
            );
        }
    }
    match take {
        Take::Filter(f) => {
            let (q, params) = sql::moves::move_rows(&prep.spec, f);
            let params = spi::params(params);
            let (m, i, u) = query_one(&q, &params, |r| (col::<i64>(r, 1).unwrap_or(0), col::<i64>(r, 2).unwrap_or(0), col::<i64>(r, 3).unwrap_or(0)))
                .unwrap();
            Moved { moved: vec![(0, m)], inserted: vec![(0, i, u)] }
        }
        Take::Routed(_) | Take::Chunks(_) | Take::Buckets(_) => {
            let (q, params) = match take {
                Take::Routed(idxs) => (sql::moves::move_routed_rows(&prep.spec), vec![idx_array(idxs.iter().copied())]),
                Take::Chunks(chunks) => {
                    let (q, params) = sql::moves::move_chunk_rows(&prep.spec, chunks);
                    (q, spi::params(params))
                }
                Take::Buckets(chunks) => {
                    let ht = prep.ht.as_ref().expect("chunks belong to a hypertable");
                    let mut params = bounds_params(chunks.iter().map(|(_, c)| *c));
                    params.push(idx_array(chunks.iter().map(|(i, _)| *i)));
                    (sql::moves::move_bucketed_rows(&prep.spec, &ht.time_column, ht.kind), params)
                }
                Take::Filter(_) => unreachable!(),
            };
            let rows = query(&q, &params, |r| {
                (col::<String>(r, 1).unwrap_or_default(), col::<i64>(r, 2).unwrap_or(0), col::<i64>(r, 3).unwrap_or(0), col::<i64>(r, 4).unwrap_or(0))
            });
            let mut out = Moved { moved: vec![], inserted: vec![] };
            for (kind, key, a, b) in rows {
                if kind == "moved" {
                    out.moved.push((key as i32, a));
                } else {
                    out.inserted.push((key as u32, a, b));
                }
            }
            out
        }
    }
}

/// Where a step's rows come from: a filter on staging, or the routing table.
#[derive(Clone, Copy)]
enum Take<'a> {
    Filter(&'a RowFilter),
    Routed(&'a [i32]),
    /// Several chunks' rows by their filters (numbered by chunk number).
    Chunks(&'a [(i32, RowFilter)]),
    /// Several chunks' rows by their time ranges alone: (chunk number, chunk), in time order.
    Buckets(&'a [(i32, &'a Chunk)]),
}

/// Moves one chunk's rows with the planned strategy (re-checked against the chunk's
/// status now): decompress / move / compress, or a direct insert into the compressed
/// chunk and a recompression of what became partial. A direct insert that would pass
/// TimescaleDB's decompression limit (53400) is rolled back and redone by decompressing.
pub fn run_step(prep: &Prepared, step: &Step, routed: bool) -> StepResult {
    apply_settings(&prep.cfg);
    let chunk = &step.chunk;
    let compressed = status::is_compressed(chunk_status(&chunk.name));
    let strategy = match (compressed, step.strategy) {
        (false, _) => Strategy::Insert,
        (true, Strategy::Insert) => Strategy::Decompress,
        (true, s) => s,
    };
    let filter = prep.filter_for(chunk);
    let idx = [step.idx];
    let take = if routed { Take::Routed(&idx) } else { Take::Filter(&filter) };
    match (strategy, &prep.merge) {
        (Strategy::Merge, Some(m)) => or_decompress(prep, chunk, take, "a merge", || merge_step(prep, m, step, take)),
        (Strategy::Merge, None) => step_with(prep, chunk, Strategy::Decompress, take),
        (Strategy::Direct, _) => or_decompress(prep, chunk, take, "a direct insert", || step_with(prep, chunk, Strategy::Direct, take)),
        _ => step_with(prep, chunk, strategy, take),
    }
}

/// Runs `attempt` in a subtransaction; if it would pass TimescaleDB's decompression
/// limit (53400), rolls it back and decompresses the chunk instead.
fn or_decompress(prep: &Prepared, chunk: &Chunk, take: Take, what: &str, attempt: impl FnOnce() -> StepResult) -> StepResult {
    match spi::in_subtransaction(std::panic::AssertUnwindSafe(attempt)) {
        Ok(r) => r,
        Err(e) if spi::caught_sqlstate(&e) == "53400" => {
            notice!(
                "backfill_ext: chunk {}: {what} would pass timescaledb.max_tuples_decompressed_per_dml_transaction; decompressing the chunk instead",
                chunk.name
            );
            let mut r = step_with(prep, chunk, Strategy::Decompress, take);
            r.fell_back = true;
            r
        }
        Err(e) => e.rethrow(),
    }
}


fn step_with(prep: &Prepared, chunk: &Chunk, strategy: Strategy, take: Take) -> StepResult {
    let ts = prep.ts.as_ref().expect("chunks mean TimescaleDB");
    let mut r = StepResult { strategy: Some(strategy), ..Default::default() };
    if strategy != Strategy::Insert {
        catalog::require_owner(&prep.dest, "to decompress and compress its chunks");
    }
    let t = Instant::now();
    if strategy == Strategy::Decompress {
        exec(&format!("SELECT {}($1::regclass, true)", ts.func("decompress_chunk")), &[p(chunk.name.quoted())]);
        r.decompressed = true;
        spi::pause_point("after_decompress");
    }
    r.decompress_ms = ms(t);
    let t = Instant::now();
    let moved = move_rows(prep, take, &prep.filter_for(chunk), &format!("chunk {}", chunk.name));
    (r.moved, r.inserted, r.updated) = moved.total();
    r.insert_ms = ms(t);
    spi::pause_point("after_insert");
    let t = Instant::now();
    let recompress = match strategy {
        Strategy::Insert => false,
        Strategy::Decompress | Strategy::Merge => true,
        Strategy::Direct => !status::is_fully_compressed(chunk_status(&chunk.name)),
    };
    if recompress {
        exec(&format!("SELECT {}($1::regclass, true)", ts.func("compress_chunk")), &[p(chunk.name.quoted())]);
        r.recompressed = true;
    }
    r.recompress_ms = ms(t);
    r
}

/// A dense upsert by segments. Under a lock that keeps other writers out of the chunk
/// (readers go on), the step's rows go to a temporary table, the touched segments' rows
/// are read (decompressed in memory) with the new values applied, and written back:
/// when the step touched every segment of the chunk, the chunk is emptied and
/// rewritten uncompressed, so compressing it again is a full compression that gives
/// the uncompressed pages back when the transaction commits; otherwise the touched
/// segments' compressed batches are deleted whole and their rows written again. Staging
/// rows with new keys are inserted, and the chunk is compressed. One transaction.
fn merge_step(prep: &Prepared, m: &sql::merge::MergeSpec, step: &Step, take: Take) -> StepResult {
    let ts = prep.ts.as_ref().expect("chunks mean TimescaleDB");
    let chunk = &step.chunk;
    catalog::require_owner(&prep.dest, "to decompress and compress its chunks");
    let (take_where, take_params) = match take {
        Take::Routed(_) => (sql::route::routed_to_chunk(), vec![p(step.idx.to_string())]),
        Take::Filter(f) => {
            let (c, params) = f.render("s", 1);
            (c, spi::params(params))
        }
        Take::Chunks(_) | Take::Buckets(_) => unreachable!("a merge takes one chunk's rows"),
    };
    let q = sql::merge::merge_sql(&prep.spec, m, &chunk.name, &take_where);
    exec(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", chunk.name.quoted()), &[]);
    drop_merge_tables();
    for create in &q.create {
        exec(create, &[]);
    }
    let mut r = StepResult { strategy: Some(Strategy::Merge), ..Default::default() };
    let t = Instant::now();
    let (moved, kept) = query_one(&q.take, &take_params, |x| (col::<i64>(x, 1).unwrap_or(0), col::<i64>(x, 2).unwrap_or(0))).unwrap();
    r.moved = moved;
    let Some(segments) = query_one(&q.segments, &[], |x| col::<String>(x, 1)).flatten() else {
        exec(&q.drop, &[]);
        return r;
    };
    let rewrite = prep.truncate_ok
        && !query_one(&q.untouched, &[p(&segments)], |x| col::<bool>(x, 1).unwrap_or(true)).unwrap_or(true)
        && lock_for_rewrite(prep, chunk);
    let in_memory = rewrite
        && prep.row_array_type != 0
        && !spi::debug_setting("rewrite_on_disk")
        && query_one(&q.fits_in_memory, &[], |x| col::<bool>(x, 1).unwrap_or(false)).unwrap_or(false);
    if in_memory {
        // every row of the chunk, merged, held in memory while the chunk is emptied
        let (rows, counts) = spi::query_value_and_counts(&q.read_merged, &[], 2);
        let (updated, new_in_rows) = (counts[0], counts[1]);
        r.updated = updated;
        r.inserted = new_in_rows;
        let new_keys = kept - updated - new_in_rows;
        if new_keys == 0 {
            exec(&q.empty_new, &[]);
        }
        r.decompress_ms = ms(t);
        let t = Instant::now();
        r.rewrote = true;
        empty_chunk(ts, &q, chunk);
        if let Some(rows) = rows {
            spi::run_with_value(&q.write_merged, rows, pg_sys::Oid::from(prep.row_array_type));
            spi::free_value(rows);
        }
        if new_keys > 0 {
            r.inserted += query(&q.insert_new_after_rewrite, &[], |_| ()).len() as i64;
            exec(&q.empty_new, &[]);
        }
        r.insert_ms = ms(t);
    } else {
        let (_, updated) = query_one(&q.read_old, &[p(&segments)], |x| (col::<i64>(x, 1).unwrap_or(0), col::<i64>(x, 2).unwrap_or(0))).unwrap();
        r.updated = updated;
        let new_keys = kept - updated;
        if new_keys == 0 {
            // every staging row updated a row now in MERGE_OLD: give its space back before writing
            exec(&q.empty_new, &[]);
        }
        r.decompress_ms = ms(t);
        let t = Instant::now();
        if rewrite {
            r.rewrote = true;
            r.rewrote_on_disk = true;
            empty_chunk(ts, &q, chunk);
        } else {
            exec(&q.delete_segments, &[p(&segments)]);
        }
        exec(&q.write_old, &[]);
        if new_keys > 0 {
            r.inserted = query(&q.insert_new, &[], |_| ()).len() as i64;
        }
        exec(&q.empty_old, &[]);
        if new_keys > 0 {
            exec(&q.empty_new, &[]);
        }
        r.insert_ms = ms(t);
    }
    spi::pause_point("after_insert");
    let t = Instant::now();
    exec(&format!("SELECT {}($1::regclass, true)", ts.func("compress_chunk")), &[p(chunk.name.quoted())]);
    r.recompressed = true;
    r.recompress_ms = ms(t);
    exec(&q.drop, &[]);
    r
}

/// Empties a chunk for its rewrite, compressed part included, and marks it
/// uncompressed (decompressing what is now empty), so that its rows go back in as
/// plain rows and compressing it again is a full compression.
fn empty_chunk(ts: &crate::timescale::Timescale, q: &sql::merge::MergeSql, chunk: &Chunk) {
    exec(&q.truncate_chunk, &[]);
    exec(&format!("SELECT {}($1::regclass, true)", ts.func("decompress_chunk")), &[p(chunk.name.quoted())]);
}

/// Takes the lock a rewrite needs (it empties the chunk, so readers of the chunk wait
/// until the step commits). Waits at most a second, or `lock_timeout` if shorter: when
/// a query is already reading the chunk, the step merges by segments instead, which
/// readers never wait for.
fn lock_for_rewrite(prep: &Prepared, chunk: &Chunk) -> bool {
    let got = spi::in_subtransaction(std::panic::AssertUnwindSafe(|| {
        exec(
            "SELECT pg_catalog.set_config('lock_timeout', (CASE WHEN $1::interval > interval '0' AND $1::interval < interval '1 second' \
                                                              THEN extract(epoch FROM $1::interval) * 1000 ELSE 1000 END)::int8::text, true)",
            &[p(prep.cfg.lock_timeout_or_default())],
        );
        exec(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", chunk.name.quoted()), &[]);
    }));
    apply_settings(&prep.cfg);
    match got {
        Ok(()) => true,
        Err(e) if spi::caught_sqlstate(&e) == "55P03" => {
            notice!("backfill_ext: chunk {}: being read; merging by segments instead of rewriting it", chunk.name);
            false
        }
        Err(e) => e.rethrow(),
    }
}

fn drop_merge_tables() {
    for table in [sql::merge::MERGE_NEW, sql::merge::MERGE_OLD] {
        if temp_table_exists(table) {
            exec(&format!("DROP TABLE {table}"), &[]);
        }
    }
}

/// Moves the rows of several chunks that take direct inserts in one statement, then
/// compresses again each chunk that became partial; one result per step. If the
/// statement would pass the decompression limit, each chunk is done on its own.
pub fn run_batch(prep: &Prepared, steps: &[&Step], routed: bool) -> Vec<StepResult> {
    apply_settings(&prep.cfg);
    let ts = prep.ts.as_ref().expect("chunks mean TimescaleDB");
    let attempt = spi::in_subtransaction(std::panic::AssertUnwindSafe(|| {
        catalog::require_owner(&prep.dest, "to decompress and compress its chunks");
        let idxs: Vec<i32> = steps.iter().map(|s| s.idx).collect();
        let ht = prep.ht.as_ref().expect("chunks belong to a hypertable");
        let by_time = by_time(ht, steps.iter().map(|s| &s.chunk));
        let filters: Vec<(i32, RowFilter)> =
            if routed || by_time { vec![] } else { steps.iter().map(|s| (s.idx, prep.filter_for(&s.chunk))).collect() };
        let buckets: Vec<(i32, &Chunk)> = if by_time { steps.iter().map(|s| (s.idx, &s.chunk)).collect() } else { vec![] };
        let take = if routed {
            Take::Routed(&idxs)
        } else if by_time {
            Take::Buckets(&buckets)
        } else {
            Take::Chunks(&filters)
        };
        let t = Instant::now();
        let moved = move_rows(prep, take, &prep.filter_for(&steps[0].chunk), "these chunks");
        let insert_ms = ms(t);
        spi::pause_point("after_insert");
        let total_moved: i64 = moved.moved.iter().map(|(_, n)| n).sum::<i64>().max(1);
        let mut results: Vec<StepResult> = steps
            .iter()
            .map(|s| {
                let m = moved.moved.iter().filter(|(i, _)| *i == s.idx).map(|(_, n)| *n).sum::<i64>();
                let (ins, upd) = moved.inserted.iter().filter(|(o, _, _)| *o == s.chunk.oid).fold((0, 0), |a, (_, i, u)| (a.0 + i, a.1 + u));
                StepResult {
                    strategy: Some(Strategy::Direct),
                    moved: m,
                    inserted: ins,
                    updated: upd,
                    insert_ms: insert_ms * m as f64 / total_moved as f64,
                    ..Default::default()
                }
            })
            .collect();
        // rows that landed outside the batch's chunks still count, on its first chunk
        let stray: (i64, i64) = moved
            .inserted
            .iter()
            .filter(|(o, _, _)| !steps.iter().any(|s| s.chunk.oid == *o))
            .fold((0, 0), |a, (_, i, u)| (a.0 + i, a.1 + u));
        results[0].inserted += stray.0;
        results[0].updated += stray.1;
        // the chunks left partial, compressed again in one statement (its time shared out)
        let t = Instant::now();
        let partial: Vec<u32> = query(
            &format!(
                "SELECT x.c::oid::int8, {}(x.c, true) FROM (SELECT c FROM pg_catalog.unnest($1::regclass[]) AS c WHERE {}(c) & $2::int <> 0 OFFSET 0) AS x",
                ts.func("compress_chunk"),
                crate::timescale::CHUNK_STATUS_FN
            ),
            &[
                p(sql::array_literal(&steps.iter().map(|s| s.chunk.oid.to_string()).collect::<Vec<_>>())),
                p((status::UNORDERED | status::PARTIAL).to_string()),
            ],
            |r| col::<i64>(r, 1).unwrap_or(0) as u32,
        );
        let each_ms = ms(t) / partial.len().max(1) as f64;
        for (s, r) in steps.iter().zip(results.iter_mut()) {
            if partial.contains(&s.chunk.oid) {
                r.recompressed = true;
                r.recompress_ms = each_ms;
            }
        }
        results
    }));
    match attempt {
        Ok(results) => results,
        Err(e) if spi::caught_sqlstate(&e) == "53400" => steps.iter().map(|s| run_step(prep, s, routed)).collect(),
        Err(e) => e.rethrow(),
    }
}

/// Moves the rows no chunk step took (they create new chunks, or the destination is
/// not a hypertable), then compresses again any chunk that this left partial (the
/// chunk steps left theirs fully compressed; a chunk partial before stays as it was).
pub fn run_rest(prep: &Prepared, plan: &Plan) -> (StepResult, i64) {
    apply_settings(&prep.cfg);
    let mut r = StepResult::default();
    if prep.cfg.delete_from_staging
        && !query_one(&format!("SELECT EXISTS (SELECT 1 FROM {})", prep.staging.name.quoted()), &[], |x| col::<bool>(x, 1).unwrap_or(true))
            .unwrap_or(true)
    {
        return (r, 0);
    }
    let before = match (&prep.ts, &prep.ht) {
        (Some(ts), Some(_)) => catalog::chunk_statuses(ts, &prep.dest),
        _ => vec![],
    };
    let partial_before: HashSet<&QualifiedName> = before.iter().filter(|(_, s)| !status::is_fully_compressed(*s)).map(|(n, _)| n).collect();
    let t = Instant::now();
    let filter = match &prep.ht {
        Some(h) => RowFilter::everything(&h.time_column, h.kind),
        None => RowFilter::everything("", crate::timescale::TimeKind::Integer),
    };
    if prep.cfg.delete_from_staging {
        (r.moved, r.inserted, r.updated) = move_rows(prep, Take::Filter(&filter), &filter, "the new chunks").total();
        spi::pause_point("after_insert");
    } else {
        // rows stay in staging: take only those no chunk step took
        let steps: Vec<RowFilter> = plan.steps.iter().map(|s| prep.filter_for(&s.chunk)).collect();
        (r.moved, r.inserted, r.updated) = move_rows_excluding(prep, &filter, &steps);
    }
    r.insert_ms = ms(t);
    let mut new_chunks = 0;
    // no row moved: no chunk was made, none became partial
    if let (Some(ts), Some(_), true) = (&prep.ts, &prep.ht, r.moved > 0) {
        let t = Instant::now();
        let now = catalog::chunk_statuses(ts, &prep.dest);
        new_chunks = (now.len() as i64 - before.len() as i64).max(0);
        for (name, st) in now {
            if status::is_compressed(st) && !status::is_fully_compressed(st) && !partial_before.contains(&name) {
                exec(&format!("SELECT {}($1::regclass, true)", ts.func("compress_chunk")), &[p(name.quoted())]);
                r.recompressed = true;
            }
        }
        r.recompress_ms = ms(t);
    }
    (r, new_chunks)
}

fn move_rows_excluding(prep: &Prepared, base: &RowFilter, exclude: &[RowFilter]) -> (i64, i64, i64) {
    if exclude.is_empty() {
        return move_rows(prep, Take::Filter(base), base, "the new chunks").total();
    }
    let (q, params) = sql::moves::move_rows_excluding(&prep.spec, base, exclude);
    let params = spi::params(params);
    query_one(&q, &params, |r| (col::<i64>(r, 1).unwrap_or(0), col::<i64>(r, 2).unwrap_or(0), col::<i64>(r, 3).unwrap_or(0))).unwrap()
}

/// Advisory lock key for a destination: one run at a time per destination.
fn lock_key(dest: &Table) -> String {
    ((0x6266_696cu64 << 32) | dest.oid as u64).to_string()
}

fn try_lock(dest: &Table, session: &Session) -> bool {
    let f = if session.nonatomic() { "pg_try_advisory_lock" } else { "pg_try_advisory_xact_lock" };
    query_one(&format!("SELECT pg_catalog.{f}($1::int8)"), &[p(lock_key(dest))], |r| col::<bool>(r, 1).unwrap_or(false)).unwrap_or(false)
}

/// Takes the destination's lock, waiting up to `lock_wait` for a run that holds it.
fn acquire_lock(prep: &Prepared, session: &Session) -> bool {
    let wait_s = query_one("SELECT extract(epoch FROM $1::interval)::float8", &[p(&prep.cfg.lock_wait)], |r| col::<f64>(r, 1).unwrap_or(0.0))
        .unwrap_or(0.0);
    let start = Instant::now();
    loop {
        if try_lock(&prep.dest, session) {
            return true;
        }
        if start.elapsed().as_secs_f64() >= wait_s {
            return false;
        }
        exec("SELECT pg_catalog.pg_sleep(0.2)", &[]);
    }
}

fn unlock(dest: &Table, session: &Session) {
    if session.nonatomic() {
        exec("SELECT pg_catalog.pg_advisory_unlock($1::int8)", &[p(lock_key(dest))]);
    }
}

fn lock_holder(dest: &Table) -> String {
    if let Some(run) = crate::history::holder(dest.oid) {
        return run;
    }
    let key: u64 = lock_key(dest).parse().unwrap();
    query_one(
        "SELECT 'backend ' || string_agg(l.pid::text, ', ') FROM pg_catalog.pg_locks l \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int8::oid AND l.objid = $2::int8::oid AND l.objsubid = 1",
        &[p((key >> 32).to_string()), p((key & 0xffff_ffff).to_string())],
        |r| col::<String>(r, 1),
    )
    .flatten()
    .unwrap_or_else(|| "another session".into())
}

/// Pushes the compression policies out for the run, remembering (durably, in the
/// same transaction) their schedule from before: a run that was interrupted left its
/// record, and the original schedule stays the one recorded first.
pub fn hold_policies(prep: &Prepared) -> Vec<Policy> {
    let (Some(ts), Some(_)) = (&prep.ts, &prep.ht) else { return vec![] };
    let policies = catalog::compression_policies(&prep.dest);
    for pol in &policies {
        catalog::require_job_owner(pol);
        exec(
            "INSERT INTO _backfill_ext.policy_hold (job_id, hypertable, original_next_start, original_scheduled) \
             VALUES ($1::int, $2::oid::regclass, $3::timestamptz, $4::bool) ON CONFLICT (job_id) DO NOTHING",
            &[p(pol.job_id.to_string()), p(prep.dest.oid.to_string()), pol.next_start.clone(), p(pol.scheduled.to_string())],
        );
        exec(
            &format!("SELECT {}($1::int, next_start => pg_catalog.now() + $2::interval)", ts.func("alter_job")),
            &[p(pol.job_id.to_string()), p(&prep.push_interval)],
        );
    }
    policies
}

/// Puts back every policy schedule held for the destination and forgets the hold.
pub fn release_policies(prep: &Prepared) {
    let Some(ts) = &prep.ts else { return };
    let held: Vec<(i32, Option<String>)> = query(
        "DELETE FROM _backfill_ext.policy_hold WHERE hypertable = $1::oid::regclass RETURNING job_id, original_next_start::text",
        &[p(prep.dest.oid.to_string())],
        |r| (col::<i32>(r, 1).unwrap(), col::<String>(r, 2)),
    );
    for (job_id, next_start) in held {
        let exists = query_one("SELECT count(*)::int8 FROM timescaledb_information.jobs WHERE job_id = $1::int", &[p(job_id.to_string())], |r| {
            col::<i64>(r, 1).unwrap_or(0)
        })
        .unwrap_or(0)
            > 0;
        if exists {
            // no schedule recorded (the policy had not run yet): it is due now, as it was
            let next_start = next_start.unwrap_or_else(|| "now".to_string());
            exec(&format!("SELECT {}($1::int, next_start => $2::timestamptz)", ts.func("alter_job")), &[p(job_id.to_string()), p(next_start)]);
        }
    }
}

/// Totals of a run.
#[derive(Debug, Default)]
pub struct Totals {
    pub moved: i64,
    pub inserted: i64,
    pub updated: i64,
    pub conflicts: i64,
    pub chunks: i64,
    pub decompressed: i64,
    pub recompressed: i64,
    pub new_chunks: i64,
}

impl Totals {
    fn add(&mut self, r: &StepResult) {
        self.moved += r.moved;
        self.inserted += r.inserted;
        self.updated += r.updated;
        self.conflicts += r.conflicts();
        self.decompressed += r.decompressed as i64;
        self.recompressed += r.recompressed as i64;
    }
}

/// Runs `f` so that an error leaves nothing held: in a non-atomic call the failed
/// step is rolled back, the policy schedule put back, the run recorded as failed and
/// the lock released; that is committed, and then the error is raised. In an atomic
/// call the error aborts it all, history included.
fn guarded<T>(session: &Session, prep: &Prepared, run_id: Option<i64>, f: impl FnOnce() -> T) -> T {
    if !session.nonatomic() {
        return f();
    }
    match spi::in_subtransaction(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            if let Err(cleanup) = spi::in_subtransaction(std::panic::AssertUnwindSafe(|| release_policies(prep))) {
                pgrx::warning!(
                    "backfill_ext: could not put back the compression policy schedule of {} ({}); the next run will",
                    prep.dest.name,
                    spi::caught_message(&cleanup)
                );
            }
            if let Some(id) = run_id {
                let (state, msg) = (spi::caught_sqlstate(&e), spi::caught_message(&e));
                let _ = spi::in_subtransaction(std::panic::AssertUnwindSafe(|| crate::history::fail(id, &state, &msg)));
            }
            unlock(&prep.dest, session);
            session.commit();
            spi::reraise_with_hint(
                e,
                "the failed step was rolled back: its rows are still in the staging table, chunks are compressed as before \
                 and the compression policy's schedule is restored; fix the cause and run again",
            )
        }
    }
}

/// Validates; in a non-atomic call a failure is recorded in the run history.
fn prepare_recorded(session: &Session, job_id: Option<i32>, cfg: Config) -> Prepared {
    if !session.nonatomic() {
        return prepare(cfg);
    }
    let (staging, destination) = (cfg.staging_table.clone(), cfg.destination.clone());
    match spi::in_subtransaction(std::panic::AssertUnwindSafe(|| prepare(cfg))) {
        Ok(p) => p,
        Err(e) => {
            let (state, msg) = (spi::caught_sqlstate(&e), spi::caught_message(&e));
            let _ = spi::in_subtransaction(std::panic::AssertUnwindSafe(|| {
                crate::history::failed_start(job_id, &staging, &destination, &state, &msg)
            }));
            session.commit();
            spi::reraise_with_hint(e, "nothing was changed; correct the job's config or tables and run again")
        }
    }
}

/// Reports at DEBUG1 the time since the run started (`SET client_min_messages = debug1`).
fn phase(started: &Instant, name: &str) {
    pgrx::debug1!("backfill_ext: {name} done at {:.1} ms", ms(*started));
}

/// The whole run.
pub fn run(session: &Session, job_id: Option<i32>, cfg: Config) -> Totals {
    let started = Instant::now();
    let prep = prepare_recorded(session, job_id, cfg);
    // validation left the caller's settings alone; the run's own statements use the config's
    apply_settings(&prep.cfg);
    phase(&started, "prepare");
    if !acquire_lock(&prep, session) {
        let reason = format!(
            "{} is working on {}; this run{} waited {} and exits without changes",
            lock_holder(&prep.dest),
            prep.dest.name,
            job_id.map(|j| format!(" of job {j}")).unwrap_or_default(),
            prep.cfg.lock_wait
        );
        notice!("backfill_ext: {reason}");
        crate::history::skipped(job_id, &prep.staging.name.to_string(), &prep.dest.name.to_string(), prep.dest.oid, &reason);
        session.commit();
        return Totals::default();
    }
    let run_id = guarded(session, &prep, None, || {
        crate::history::start(job_id, &prep.staging.name.to_string(), &prep.dest.name.to_string(), prep.dest.oid, &prep.history_retention)
    });
    session.commit();
    phase(&started, "start");
    let rid = Some(run_id);
    let mut totals = Totals::default();
    let plan = guarded(session, &prep, rid, || {
        apply_settings(&prep.cfg);
        let plan = make_plan(&prep);
        if plan.steps.iter().any(|s| s.strategy != Strategy::Insert) {
            catalog::require_owner(&prep.dest, "to decompress and compress its chunks");
        }
        hold_policies(&prep);
        plan
    });
    session.commit();
    phase(&started, "plan and hold");
    spi::pause_point("after_hold");
    let max_runtime_s = prep.max_runtime_s;
    let mut stopped_early = false;
    let batches = if prep.cfg.delete_from_staging {
        plan::batches(&plan.steps, prep.decompress_limit)
    } else {
        (0..plan.steps.len()).map(|i| vec![i]).collect()
    };
    let mut done = 0;
    for (b, batch) in batches.iter().enumerate() {
        if b > 0 {
            spi::pause_point("between_chunks");
        }
        // at least one transaction per run, so runs cut short still make progress
        if b > 0 && max_runtime_s.is_some_and(|m| started.elapsed().as_secs_f64() >= m) {
            notice!(
                "backfill_ext: max_runtime ({}) reached after {done} chunks; the remaining {} chunks are left for the next run",
                prep.cfg.max_runtime.as_deref().unwrap_or_default(),
                plan.steps.len() - done
            );
            stopped_early = true;
            break;
        }
        let steps: Vec<&Step> = batch.iter().map(|i| &plan.steps[*i]).collect();
        let results = guarded(session, &prep, rid, || {
            let results = if steps.len() == 1 { vec![run_step(&prep, steps[0], plan.routed)] } else { run_batch(&prep, &steps, plan.routed) };
            let done: Vec<(&Chunk, &StepResult)> = steps.iter().map(|s| &s.chunk).zip(&results).collect();
            crate::history::chunks(run_id, &done);
            results
        });
        session.commit();
        phase(&started, "batch");
        for (s, r) in steps.iter().zip(&results) {
            totals.add(r);
            totals.chunks += 1;
            notice!(
                "backfill_ext: chunk {}: {} rows moved, {} conflicts, {}, {:.0} ms",
                s.chunk.name,
                r.moved,
                r.conflicts(),
                r.describe(),
                r.decompress_ms + r.insert_ms + r.recompress_ms
            );
        }
        done += steps.len();
    }
    let (rest, new_chunks) = if stopped_early {
        (StepResult::default(), 0)
    } else {
        let r = guarded(session, &prep, rid, || {
            let (rest, new_chunks) = run_rest(&prep, &plan);
            crate::history::add(run_id, &rest, new_chunks);
            (rest, new_chunks)
        });
        session.commit();
        phase(&started, "rest");
        r
    };
    spi::pause_point("before_restore");
    if rest.moved > 0 || rest.recompressed {
        notice!(
            "backfill_ext: rows outside existing chunks: {} rows moved, {} conflicts, {} new chunks, {:.0} ms",
            rest.moved,
            rest.conflicts(),
            new_chunks,
            rest.insert_ms + rest.recompress_ms
        );
    }
    totals.moved += rest.moved;
    totals.inserted += rest.inserted;
    totals.updated += rest.updated;
    totals.conflicts += rest.conflicts();
    totals.new_chunks = new_chunks;
    guarded(session, &prep, rid, || {
        release_policies(&prep);
        drop_temp_tables();
        crate::history::succeed(run_id, stopped_early);
        unlock(&prep.dest, session);
    });
    session.commit();
    phase(&started, "release");
    notice!(
        "backfill_ext: run {run_id}: moved {} rows from {} into {} ({} inserted, {} updated, {} conflicts), {} chunks ({} decompressed, {} recompressed), {} new chunks, {:.0} ms",
        totals.moved,
        prep.staging.name,
        prep.dest.name,
        totals.inserted,
        totals.updated,
        totals.conflicts,
        totals.chunks,
        totals.decompressed,
        totals.recompressed,
        totals.new_chunks,
        started.elapsed().as_secs_f64() * 1000.0
    );
    totals
}
