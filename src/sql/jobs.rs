//! Scheduling with TimescaleDB's job API, and finding the jobs a backfill made.

use crate::timescale::Timescale;

/// The schema extension `$1` is installed in; no row when it is not installed here.
pub const EXTENSION_SCHEMA: &str = "SELECT n.nspname::text FROM pg_catalog.pg_extension e \
     JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
     WHERE e.extname = $1";

/// Whether the `add_job` in schema `$1` (TimescaleDB's) takes a `job_name`.
pub const ADD_JOB_HAS_JOB_NAME: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE oid \
    = ANY ( \
         SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'add_job' AND pronamespace = \
         $1::regnamespace) \
       AND 'job_name' = ANY (proargnames))";

/// TimescaleDB's `add_job`: procedure `$1` every `$2`, with config `$3`, first at `$4`,
/// the config checked by function `$5`, and, `with_job_name`, named `$6`. Returns the id.
pub fn add_job(ts: &Timescale, with_job_name: bool) -> String {
    let job_name = if with_job_name { ", job_name => $6" } else { "" };
    format!(
        "SELECT {}($1::regproc, $2::interval, config => $3::jsonb, initial_start => \
         $4::timestamptz, check_config => $5::regproc{job_name})",
        ts.func("add_job")
    )
}

/// How many of TimescaleDB's jobs with id `$1` run `backfill_on_schedule` (0 or 1).
pub const COUNT_OUR_JOB: &str =
    "SELECT count(*)::int8 FROM timescaledb_information.jobs WHERE job_id = $1::int AND proc_name \
     = 'backfill_on_schedule'";

/// TimescaleDB's `delete_job` of job `$1`.
pub fn delete_job(ts: &Timescale) -> String {
    format!("SELECT {}($1::int)", ts.func("delete_job"))
}

/// The destination (as the config names it) of backfill job `$1`.
pub const JOB_DESTINATION: &str =
    "SELECT config->>'destination_hypertable' FROM timescaledb_information.jobs \
     WHERE job_id = $1::int AND proc_name = 'backfill_on_schedule'";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::quote_ident;
    use crate::sql::checks::params;

    fn ts() -> Timescale {
        Timescale { schema: quote_ident("ts \"x\""), version: "2.18.0".into() }
    }

    #[test]
    fn extension_and_add_job_lookups() {
        assert_eq!(params(EXTENSION_SCHEMA), ["$1"]);
        assert!(EXTENSION_SCHEMA.contains(
            "FROM pg_catalog.pg_extension e JOIN \
            pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
        ));
        assert!(EXTENSION_SCHEMA.ends_with("WHERE e.extname = $1"));
        assert_eq!(params(ADD_JOB_HAS_JOB_NAME), ["$1::regnamespace"]);
        assert!(ADD_JOB_HAS_JOB_NAME.contains(
            "FROM pg_catalog.pg_proc WHERE proname = 'add_job' AND pronamespace = $1::regnamespace"
        ));
        assert!(ADD_JOB_HAS_JOB_NAME.ends_with("AND 'job_name' = ANY (proargnames))"));
    }

    #[test]
    fn add_job_with_and_without_a_name() {
        let q = add_job(&ts(), false);
        assert_eq!(
            params(&q),
            ["$1::regproc", "$2::interval", "$3::jsonb", "$4::timestamptz", "$5::regproc"]
        );
        assert_eq!(
            q,
            "SELECT \"ts \"\"x\"\"\".\"add_job\"($1::regproc, $2::interval, config => $3::jsonb, \
             initial_start => $4::timestamptz, check_config => $5::regproc)"
        );
        let named = add_job(&ts(), true);
        assert_eq!(params(&named).last().map(String::as_str), Some("$6"));
        assert_eq!(named, format!("{}, job_name => $6)", &q[..q.len() - 1]));
    }

    #[test]
    fn finding_and_deleting_a_job() {
        assert_eq!(params(COUNT_OUR_JOB), ["$1::int"]);
        assert!(COUNT_OUR_JOB.contains(
            "FROM timescaledb_information.jobs WHERE job_id = $1::int \
            AND proc_name = 'backfill_on_schedule'"
        ));
        assert_eq!(delete_job(&ts()), "SELECT \"ts \"\"x\"\"\".\"delete_job\"($1::int)");
    }
}
