//! The SQL entry points. Each is short: read the arguments into a `Config`, hand it
//! to `run`. The procedures are C-language procedures so that they can COMMIT.

use crate::config::Config;
use crate::error::{BackfillError, Code};
use crate::spi::{self, Session};
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::JsonB;

/// The value of a required argument, or 22004 naming it.
fn required<T>(value: Option<T>, name: &str, function: &str) -> T {
    value.unwrap_or_else(|| {
        spi::raise(
            BackfillError::new(
                Code::NullValueNotAllowed,
                format!("argument {name} of {function} is NULL"),
            )
            .hint("give a value"),
        )
    })
}

/// `CALL backfill_on_schedule(job_id, config)`: the procedure `add_job` schedules.
#[pg_extern(sql = "
CREATE PROCEDURE backfill_on_schedule(job_id integer, config jsonb)
LANGUAGE c AS '@MODULE_PATHNAME@', '@FUNCTION_NAME@';
COMMENT ON PROCEDURE backfill_on_schedule(integer, jsonb) IS
'Moves rows from config->>''staging_table'' into config->>''destination_hypertable'', one chunk \
per transaction: decompress, move, recompress. Schedule it with add_job.';
")]
fn backfill_on_schedule(
    job_id: Option<i32>,
    config: Option<JsonB>,
    fcinfo: pg_sys::FunctionCallInfo,
) {
    let json = config.as_ref().map(|j| &j.0);
    let session = unsafe { Session::open(fcinfo) };
    let cfg = match Config::from_json(json) {
        Ok(cfg) => cfg,
        Err(e) => {
            // a job whose config cannot be read still leaves a history row saying why
            if session.nonatomic() {
                let key = |k: &str| {
                    json.and_then(|j| j.get(k)).and_then(|v| v.as_str()).unwrap_or("").to_string()
                };
                let (staging, destination) = (key("staging_table"), key("destination_hypertable"));
                let message = format!("backfill_ext: {}", e.message);
                let _ = spi::in_subtransaction(std::panic::AssertUnwindSafe(|| {
                    crate::history::failed_start(
                        job_id,
                        &staging,
                        &destination,
                        e.code.sqlstate(),
                        &message,
                    )
                }));
                session.commit();
            }
            spi::raise(e)
        }
    };
    crate::run::backfill(&session, job_id, cfg);
    session.close();
}

/// `CALL decompress_backfill(...)`: the old script's signature and meaning. Its
/// arguments go through the same `Config::from_json` as a job's config.
#[allow(clippy::too_many_arguments)]
#[pg_extern(sql = "
CREATE PROCEDURE decompress_backfill(
    staging_table regclass,
    destination_hypertable regclass,
    on_conflict_action text DEFAULT 'NOTHING',
    delete_from_staging boolean DEFAULT true,
    compression_job_push_interval interval DEFAULT '1 day',
    on_conflict_update_columns text[] DEFAULT '{}',
    skip_empty_ranges boolean DEFAULT false,
    on_conflict_target text DEFAULT '')
LANGUAGE c AS '@MODULE_PATHNAME@', '@FUNCTION_NAME@';
COMMENT ON PROCEDURE decompress_backfill(regclass, regclass, text, boolean, interval, text[], \
boolean, text) IS
'Moves the rows of staging_table into destination_hypertable, one chunk per transaction: \
decompress, move, recompress.';
")]
fn decompress_backfill(
    staging_table: Option<pg_sys::Oid>,
    destination_hypertable: Option<pg_sys::Oid>,
    on_conflict_action: Option<String>,
    delete_from_staging: Option<bool>,
    compression_job_push_interval: Option<Interval>,
    on_conflict_update_columns: Option<Vec<Option<String>>>,
    skip_empty_ranges: Option<bool>,
    on_conflict_target: Option<String>,
    fcinfo: pg_sys::FunctionCallInfo,
) {
    let staging = required(staging_table, "staging_table", "decompress_backfill");
    let dest = required(destination_hypertable, "destination_hypertable", "decompress_backfill");
    let mut json = serde_json::json!({
        "staging_table": crate::catalog::regclass_text(staging.to_u32()),
        "destination_hypertable": crate::catalog::regclass_text(dest.to_u32()),
    });
    // the arguments are the config keys of the same names; a NULL one takes the default
    let obj = json.as_object_mut().expect("an object");
    let mut set = |key: &str, value: Option<serde_json::Value>| {
        if let Some(v) = value {
            obj.insert(key.to_string(), v);
        }
    };
    set("on_conflict_action", on_conflict_action.map(Into::into));
    set("delete_from_staging", delete_from_staging.map(Into::into));
    set(
        "compression_job_push_interval",
        compression_job_push_interval.map(|i| i.to_iso_string().into()),
    );
    // the old script took empty entries (its default is '{}'), and UPDATE with no
    // columns to mean "every column"
    let update_columns: Vec<String> = on_conflict_update_columns
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .filter(|c| !c.trim().is_empty())
        .collect();
    set("on_conflict_update_columns", Some(update_columns.into()));
    set("skip_empty_ranges", skip_empty_ranges.map(Into::into));
    set("on_conflict_target", on_conflict_target.filter(|t| !t.trim().is_empty()).map(Into::into));
    let cfg = spi::check(Config::from_json(Some(&json)));
    let session = unsafe { Session::open(fcinfo) };
    crate::run::backfill(&session, None, cfg);
    session.close();
}

/// `backfill_check_config(config)`: the validator the procedure runs, for
/// `add_job(..., check_config => 'backfill_check_config')` and `alter_job`. With
/// TimescaleDB installed, a job for its scheduler must target a hypertable.
#[pg_extern(sql = "
CREATE FUNCTION backfill_check_config(config jsonb) RETURNS void
LANGUAGE c AS '@MODULE_PATHNAME@', '@FUNCTION_NAME@';
COMMENT ON FUNCTION backfill_check_config(jsonb) IS
'Raises an error for any config backfill_on_schedule would reject; use as add_job(..., \
check_config => ''backfill_check_config'')';
")]
fn backfill_check_config(config: Option<JsonB>) {
    let cfg = spi::check(Config::from_json(config.as_ref().map(|j| &j.0)));
    let path = spi::harden_search_path();
    let prep = crate::run::prepare(cfg);
    spi::restore_search_path(&path);
    if prep.ts.is_some() && prep.ht.is_none() {
        spi::raise(
            BackfillError::new(
                Code::WrongObjectType,
                format!(
                    "destination {} is not a \
                hypertable",
                    prep.dest.name
                ),
            )
            .hint(
                "a TimescaleDB job backfills a hypertable; to backfill a plain table, CALL \
                    backfill_on_schedule directly",
            ),
        );
    }
}

/// `schedule_backfill(...)`: registers the backfill with TimescaleDB's scheduler, or
/// with pg_cron where TimescaleDB's job API is absent. Returns the job id.
#[pg_extern(sql = "
CREATE FUNCTION schedule_backfill(
    staging_table regclass,
    destination regclass,
    schedule_interval interval DEFAULT '10 days',
    config jsonb DEFAULT '{}',
    initial_start timestamptz DEFAULT now()) RETURNS integer
LANGUAGE c AS '@MODULE_PATHNAME@', '@FUNCTION_NAME@';
COMMENT ON FUNCTION schedule_backfill(regclass, regclass, interval, jsonb, timestamptz) IS
'Schedules backfill_on_schedule with TimescaleDB''s job scheduler (or pg_cron) and returns the job \
id';
")]
fn schedule_backfill(
    staging_table: Option<pg_sys::Oid>,
    destination: Option<pg_sys::Oid>,
    schedule_interval: Option<Interval>,
    config: Option<JsonB>,
    initial_start: Option<pgrx::datum::TimestampWithTimeZone>,
) -> i32 {
    let staging = crate::catalog::regclass_text(
        required(staging_table, "staging_table", "schedule_backfill").to_u32(),
    );
    let dest = crate::catalog::regclass_text(
        required(destination, "destination", "schedule_backfill").to_u32(),
    );
    let interval =
        required(schedule_interval, "schedule_interval", "schedule_backfill").to_iso_string();
    let mut cfg_json = match config.map(|j| j.0) {
        None | Some(serde_json::Value::Null) => serde_json::json!({}),
        Some(v @ serde_json::Value::Object(_)) => v,
        Some(_) => spi::raise(
            BackfillError::new(
                Code::InvalidParameterValue,
                "config of schedule_backfill must be a JSON object",
            )
            .hint("give the extra keys, such as '{\"on_conflict_action\":\"UPDATE\"}'"),
        ),
    };
    cfg_json["staging_table"] = serde_json::Value::String(staging.clone());
    cfg_json["destination_hypertable"] = serde_json::Value::String(dest.clone());
    let path = spi::harden_search_path();
    let id = crate::jobs::schedule(
        &staging,
        &dest,
        &interval,
        &cfg_json,
        initial_start.map(|t| t.to_iso_string()),
    );
    spi::restore_search_path(&path);
    id
}

/// `unschedule_backfill(job_id)`: removes a job `schedule_backfill` made, of either kind.
#[pg_extern(sql = "
CREATE FUNCTION unschedule_backfill(job_id integer) RETURNS void
LANGUAGE c AS '@MODULE_PATHNAME@', '@FUNCTION_NAME@';
COMMENT ON FUNCTION unschedule_backfill(integer) IS 'Removes a backfill job from TimescaleDB''s \
scheduler or pg_cron';
")]
fn unschedule_backfill(job_id: Option<i32>) {
    let id = required(job_id, "job_id", "unschedule_backfill");
    let path = spi::harden_search_path();
    crate::jobs::unschedule(id);
    spi::restore_search_path(&path);
}

/// `backfill_plan(staging_table, destination)`: a dry run with the default config. One
/// row per chunk a run would touch, and one for the rows that would create new chunks.
/// Changes nothing.
#[pg_extern(sql = "
CREATE FUNCTION backfill_plan(staging_table regclass, destination regclass)
RETURNS TABLE (chunk text, range_start text, range_end text, compressed boolean, staging_rows \
bigint, action text)
LANGUAGE c AS '@MODULE_PATHNAME@', '@FUNCTION_NAME@';
COMMENT ON FUNCTION backfill_plan(regclass, regclass) IS 'What a backfill run would do, chunk by \
chunk; changes nothing';
")]
#[allow(clippy::type_complexity)]
fn backfill_plan(
    staging_table: Option<pg_sys::Oid>,
    destination: Option<pg_sys::Oid>,
) -> TableIterator<
    'static,
    (
        name!(chunk, Option<String>),
        name!(range_start, Option<String>),
        name!(range_end, Option<String>),
        name!(compressed, Option<bool>),
        name!(staging_rows, i64),
        name!(action, String),
    ),
> {
    let staging = crate::catalog::regclass_text(
        required(staging_table, "staging_table", "backfill_plan").to_u32(),
    );
    let dest = crate::catalog::regclass_text(
        required(destination, "destination", "backfill_plan").to_u32(),
    );
    let cfg = spi::check(Config::from_json(Some(
        &serde_json::json!({"staging_table": staging, "destination_hypertable": dest}),
    )));
    TableIterator::new(plan_rows(cfg))
}

/// `backfill_plan(config)`: the dry run of a job's config (the one given to `add_job`):
/// its conflict action, strategy and the other keys decide the plan as they decide the
/// run's. Changes nothing.
#[pg_extern(sql = "
CREATE FUNCTION backfill_plan(config jsonb)
RETURNS TABLE (chunk text, range_start text, range_end text, compressed boolean, staging_rows \
bigint, action text)
LANGUAGE c AS '@MODULE_PATHNAME@', '@FUNCTION_NAME@';
COMMENT ON FUNCTION backfill_plan(jsonb) IS 'What a backfill run with this config would do, chunk \
by chunk; changes nothing';
")]
#[allow(clippy::type_complexity)]
fn backfill_plan_of_config(
    config: Option<JsonB>,
) -> TableIterator<
    'static,
    (
        name!(chunk, Option<String>),
        name!(range_start, Option<String>),
        name!(range_end, Option<String>),
        name!(compressed, Option<bool>),
        name!(staging_rows, i64),
        name!(action, String),
    ),
> {
    let json = required(config, "config", "backfill_plan");
    TableIterator::new(plan_rows(spi::check(Config::from_json(Some(&json.0)))))
}

/// The rows of `backfill_plan` for a run with `cfg`: a step's, then the rows for new
/// chunks, then the continuous aggregates' refreshes.
fn plan_rows(cfg: Config) -> Vec<PlanRow> {
    let path = spi::harden_search_path();
    let prep = crate::run::prepare(cfg);
    let plan = crate::run::make_plan(&prep);
    // the continuous aggregates a run would refresh (it refreshes after moving rows)
    let refreshes = match (&plan.span, plan.steps.is_empty() && plan.rows_for_new_chunks == 0) {
        (Some(span), false) => crate::run::caggs::plan(&prep, span),
        _ => vec![],
    };
    spi::restore_search_path(&path);
    let ways = crate::plan::DirectWays {
        compressed_batches: prep.compress_order.is_some(),
        in_bulk: prep.new_segments.is_some(),
        nothing: prep.spec.conflict.action == crate::config::ConflictAction::Nothing,
    };
    let mut rows: Vec<PlanRow> = plan.steps.into_iter().map(|s| step_row(s, ways)).collect();
    if plan.rows_for_new_chunks > 0 {
        let action = if prep.ht.is_some() { "insert, creating new chunks" } else { "insert" };
        rows.push((None, None, None, None, plan.rows_for_new_chunks, action.to_string()));
    }
    for r in refreshes {
        let (lo, hi) = r.window.map(|(lo, hi)| (Some(lo), Some(hi))).unwrap_or((None, None));
        rows.push((None, lo, hi, None, 0, format!("refresh continuous aggregate {}", r.name)));
    }
    rows
}

/// A row of `backfill_plan`: chunk, range start and end, compressed, staging rows, action.
type PlanRow = (Option<String>, Option<String>, Option<String>, Option<bool>, i64, String);

/// `backfill_plan`'s row for one chunk step, given what the destination lets a direct
/// step do.
fn step_row(s: crate::plan::Step, ways: crate::plan::DirectWays) -> PlanRow {
    use crate::plan::{Strategy, Way};
    let action = match crate::plan::way(&s, ways) {
        Way::CompressedBatches => "write as compressed batches (direct compression)",
        Way::NewSegmentsInBulk => "write the new segments into the chunk in bulk, recompress",
        Way::NewKeysInBulk => {
            "write the rows whose keys the chunk lacks into it in bulk, recompress"
        }
        Way::Decompress => "decompress, insert, recompress",
        Way::Direct => "insert into the compressed chunk, recompress what became partial",
        Way::Merge => "merge into the touched segments, recompress them",
        Way::Insert => "insert",
    };
    let compressed = s.strategy != Strategy::Insert;
    (
        Some(s.chunk.name.to_string()),
        s.chunk.lo,
        s.chunk.hi,
        Some(compressed),
        s.staging_rows,
        action.to_string(),
    )
}
