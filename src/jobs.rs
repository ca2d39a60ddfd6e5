//! Scheduling a backfill: TimescaleDB's job scheduler where its job API is present,
//! else pg_cron; and removing either kind of job.

use crate::catalog;
use crate::config::Config;
use crate::error::{BackfillError, Code};
use crate::ident::quote_ident;
use crate::spi::{self, col, p, query_one, raise};
use crate::sql::{self, cron};
use pgrx::notice;

/// The quoted schema an extension is installed in, if it is installed here.
fn extension_schema(name: &str) -> Option<String> {
    query_one(sql::jobs::EXTENSION_SCHEMA, &[p(name)], |r| col::<String>(r, 1))
        .flatten()
        .map(|s| quote_ident(&s))
}

/// pg_cron's schema (it always creates its objects in `cron`), if pg_cron is installed here.
fn pg_cron_schema() -> Option<String> {
    extension_schema("pg_cron").map(|_| quote_ident("cron"))
}

fn add_job_has_job_name(ts: &crate::timescale::Timescale) -> bool {
    query_one(sql::jobs::ADD_JOB_HAS_JOB_NAME, &[p(ts.schema.clone())], |r| col::<bool>(r, 1))
        .flatten()
        .unwrap_or(false)
}

/// Registers the job; returns its id.
pub fn schedule(
    staging: &str,
    dest: &str,
    interval: &str,
    cfg_json: &serde_json::Value,
    initial_start: Option<String>,
) -> i32 {
    let cfg = spi::check(Config::from_json(Some(cfg_json)));
    let ext = extension_schema("backfill_ext").expect("backfill_ext is installed");
    let name = cron::job_name(staging, dest);
    if let Some(ts) = catalog::timescale() {
        return with_timescaledb(&ts, &ext, &name, interval, cfg_json, initial_start);
    }
    let Some(cron_schema) = pg_cron_schema() else {
        raise(
            BackfillError::new(
                Code::ObjectNotInPrerequisiteState,
                "no job scheduler is available \
                in this database",
            )
            .hint(
                "install a TimescaleDB with its job API (add_job), or pg_cron (CREATE \
                    EXTENSION pg_cron in the database cron.database_name names)",
            ),
        )
    };
    crate::run::prepare(cfg);
    with_pg_cron(&cron_schema, &ext, &name, interval, cfg_json)
}

/// Removes a backfill job of either kind.
pub fn unschedule(job_id: i32) {
    if let Some(ts) = catalog::timescale() {
        let ours = query_one(sql::jobs::COUNT_OUR_JOB, &[p(job_id.to_string())], |r| {
            col::<i64>(r, 1).unwrap_or(0)
        })
        .unwrap_or(0);
        if ours > 0 {
            let dest = query_one(sql::jobs::JOB_DESTINATION, &[p(job_id.to_string())], |r| {
                col::<String>(r, 1)
            })
            .flatten();
            spi::execute(&sql::jobs::delete_job(&ts), &[p(job_id.to_string())]);
            if let Some(oid) = dest.as_deref().and_then(catalog::oid_of_name) {
                release_left_holds(&ts, oid);
            }
            return;
        }
    }
    if let Some(cron_schema) = pg_cron_schema() {
        let ours = query_one(&cron::count_our_job(&cron_schema), &[p(job_id.to_string())], |r| {
            col::<i64>(r, 1).unwrap_or(0)
        })
        .unwrap_or(0);
        if ours > 0 {
            spi::execute(&cron::unschedule(&cron_schema), &[p(job_id.to_string())]);
            return;
        }
    }
    raise(
        BackfillError::new(Code::UndefinedObject, format!("there is no backfill job {job_id}"))
            .hint(
                "list them in timescaledb_information.jobs (proc_name backfill_on_schedule) or \
                cron.job",
            ),
    )
}

/// Puts back the policy schedule an interrupted run of the removed job left held on
/// its destination, unless a run is working on the destination now (it puts it back
/// itself when it ends).
fn release_left_holds(ts: &crate::timescale::Timescale, dest_oid: u32) {
    if crate::run::lock::try_lock_oid(dest_oid, false) {
        crate::run::policy::release_holds(ts, dest_oid, "0 seconds");
    }
}

/// Schedules the job with TimescaleDB's `add_job`.
fn with_timescaledb(
    ts: &crate::timescale::Timescale,
    ext: &str,
    name: &str,
    interval: &str,
    cfg_json: &serde_json::Value,
    initial_start: Option<String>,
) -> i32 {
    let with_job_name = add_job_has_job_name(ts);
    let mut params = vec![
        p(format!("{ext}.backfill_on_schedule")),
        p(interval),
        p(cfg_json.to_string()),
        initial_start,
        p(format!("{ext}.backfill_check_config")),
    ];
    if with_job_name {
        params.push(p(name));
    }
    // add_job runs backfill_check_config: the config is validated before it is stored
    let id = query_one(&sql::jobs::add_job(ts, with_job_name), &params, |r| col::<i32>(r, 1))
        .flatten()
        .unwrap();
    notice!(
        "backfill_ext: scheduled with TimescaleDB's job scheduler as job {id} ({name}, \
        every {interval})"
    );
    id
}

/// Schedules the job with pg_cron (in schema `cron_schema`).
fn with_pg_cron(
    cron_schema: &str,
    ext: &str,
    name: &str,
    interval: &str,
    cfg_json: &serde_json::Value,
) -> i32 {
    let secs = query_one(cron::INTERVAL_SECONDS, &[p(interval)], |r| col::<i64>(r, 1))
        .flatten()
        .unwrap_or(0);
    let with_seconds =
        query_one(cron::WITH_SECONDS, &[], |r| col::<bool>(r, 1)).flatten().unwrap_or(false);
    let cron_schedule = spi::check(cron::cron_schedule(secs, with_seconds));
    let command = cron::cron_command(ext, &cfg_json.to_string());
    let id =
        query_one(&cron::schedule(cron_schema), &[p(name), p(&cron_schedule), p(&command)], |r| {
            col::<i32>(r, 1)
        })
        .flatten()
        .unwrap();
    notice!(
        "backfill_ext: TimescaleDB's job API is not available; scheduled with pg_cron as job \
        {id} ({name}, '{cron_schedule}')"
    );
    id
}
