//! Scheduling a backfill: TimescaleDB's job scheduler where its job API is present,
//! else pg_cron; and removing either kind of job.

use crate::catalog;
use crate::config::Config;
use crate::error::{BackfillError, Code};
use crate::ident::quote_ident;
use crate::sql::cron as schedule;
use crate::spi::{self, col, p, query_one, raise};
use pgrx::notice;

/// The quoted schema an extension is installed in, if it is installed here.
fn extension_schema(name: &str) -> Option<String> {
    query_one(
        "SELECT n.nspname::text FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = $1",
        &[p(name)],
        |r| col::<String>(r, 1),
    )
    .flatten()
    .map(|s| quote_ident(&s))
}

/// pg_cron's schema (it always creates its objects in `cron`), if pg_cron is installed here.
fn pg_cron_schema() -> Option<String> {
    extension_schema("pg_cron").map(|_| quote_ident("cron"))
}

fn add_job_has_job_name(ts: &crate::timescale::Timescale) -> bool {
    query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE oid = ANY (
             SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'add_job' AND pronamespace = $1::regnamespace)
           AND 'job_name' = ANY (proargnames))",
        &[p(ts.schema.clone())],
        |r| col::<bool>(r, 1),
    )
    .flatten()
    .unwrap_or(false)
}

/// Registers the job; returns its id.
pub fn schedule(staging: &str, dest: &str, interval: &str, cfg_json: &serde_json::Value, initial_start: Option<String>) -> i32 {
    let cfg = spi::check(Config::from_json(Some(cfg_json)));
    let ext = extension_schema("backfill_ext").expect("backfill_ext is installed");
    let name = schedule::job_name(staging, dest);
    if let Some(ts) = catalog::timescale() {
        let mut sql = format!(
            "SELECT {}($1::regproc, $2::interval, config => $3::jsonb, initial_start => $4::timestamptz, check_config => $5::regproc",
            ts.func("add_job")
        );
        let mut params = vec![
            p(format!("{ext}.backfill_on_schedule")),
            p(interval),
            p(cfg_json.to_string()),
            initial_start,
            p(format!("{ext}.backfill_check_config")),
        ];
        if add_job_has_job_name(&ts) {
            sql.push_str(", job_name => $6");
            params.push(p(&name));
        }
        sql.push(')');
        // add_job runs backfill_check_config: the config is validated before it is stored
        let id = query_one(&sql, &params, |r| col::<i32>(r, 1)).flatten().unwrap();
        notice!("backfill_ext: scheduled with TimescaleDB's job scheduler as job {id} ({name}, every {interval})");
        return id;
    }
    let Some(cron) = pg_cron_schema() else {
        raise(
            BackfillError::new(Code::ObjectNotInPrerequisiteState, "no job scheduler is available in this database")
                .hint("install a TimescaleDB with its job API (add_job), or pg_cron (CREATE EXTENSION pg_cron in the database cron.database_name names)"),
        )
    };
    crate::run::prepare(cfg);
    let secs = query_one("SELECT extract(epoch FROM $1::interval)::int8", &[p(interval)], |r| col::<i64>(r, 1)).flatten().unwrap_or(0);
    let with_seconds = query_one(
        "SELECT ARRAY[m[1]::int, m[2]::int] >= ARRAY[1, 5]
         FROM pg_catalog.pg_extension, regexp_match(extversion, '^([0-9]+)[.]([0-9]+)') AS m WHERE extname = 'pg_cron'",
        &[],
        |r| col::<bool>(r, 1),
    )
    .flatten()
    .unwrap_or(false);
    let cron_schedule = spi::check(schedule::cron_schedule(secs, with_seconds));
    let command = schedule::cron_command(&ext, &cfg_json.to_string());
    let id = query_one(
        &format!("SELECT {cron}.schedule($1, $2, $3)::int"),
        &[p(&name), p(&cron_schedule), p(&command)],
        |r| col::<i32>(r, 1),
    )
    .flatten()
    .unwrap();
    notice!("backfill_ext: TimescaleDB's job API is not available; scheduled with pg_cron as job {id} ({name}, '{cron_schedule}')");
    id
}

/// Removes a backfill job of either kind.
pub fn unschedule(job_id: i32) {
    if let Some(ts) = catalog::timescale() {
        let ours = query_one(
            "SELECT count(*)::int8 FROM timescaledb_information.jobs WHERE job_id = $1::int AND proc_name = 'backfill_on_schedule'",
            &[p(job_id.to_string())],
            |r| col::<i64>(r, 1).unwrap_or(0),
        )
        .unwrap_or(0);
        if ours > 0 {
            spi::run(&format!("SELECT {}($1::int)", ts.func("delete_job")), &[p(job_id.to_string())]);
            return;
        }
    }
    if let Some(cron) = pg_cron_schema() {
        let ours = query_one(
            &format!("SELECT count(*)::int8 FROM {cron}.job WHERE jobid = $1::int8 AND command LIKE '%backfill_on_schedule(%'"),
            &[p(job_id.to_string())],
            |r| col::<i64>(r, 1).unwrap_or(0),
        )
        .unwrap_or(0);
        if ours > 0 {
            spi::run(&format!("SELECT {cron}.unschedule($1::int8)"), &[p(job_id.to_string())]);
            return;
        }
    }
    raise(
        BackfillError::new(Code::UndefinedObject, format!("there is no backfill job {job_id}"))
            .hint("list them in timescaledb_information.jobs (proc_name backfill_on_schedule) or cron.job"),
    )
}
