//! Scheduling with pg_cron: turning a schedule interval into a pg_cron schedule, the
//! command pg_cron runs, and the statements that schedule, find and unschedule a job.
//! Pure. The statements take pg_cron's schema quoted (it is always `cron`).

use crate::error::{BackfillError, Code, Result};

/// A pg_cron schedule that runs every `secs` seconds: `N seconds` below a minute
/// (pg_cron 1.5 and later, `with_seconds`), else a cron expression. Only intervals
/// cron can keep evenly are accepted.
pub fn cron_schedule(secs: i64, with_seconds: bool) -> Result<String> {
    let bad = |why: &str| {
        BackfillError::new(
            Code::InvalidParameterValue,
            format!(
                "pg_cron cannot run a job every \
            {secs} seconds: {why}"
            ),
        )
        .hint(
            "use 1-59 seconds, a number of minutes or hours that divides an hour or a day, \
                or whole days up to 31",
        )
    };
    const MIN: i64 = 60;
    const HOUR: i64 = 3600;
    const DAY: i64 = 86400;
    match secs {
        s if s <= 0 => Err(bad("the interval must be positive")),
        s if s < MIN && with_seconds => Ok(format!("{s} seconds")),
        s if s < MIN => {
            Err(bad("this pg_cron runs jobs at most once a minute (seconds need pg_cron 1.5)"))
        }
        s if s % DAY == 0 => match s / DAY {
            1 => Ok("0 0 * * *".to_string()),
            7 => Ok("0 0 * * 0".to_string()),
            d if d <= 31 => Ok(format!("0 0 */{d} * *")),
            _ => Err(bad("more than 31 days")),
        },
        s if s % HOUR == 0 && DAY % s == 0 => Ok(format!("0 */{} * * *", s / HOUR)),
        s if s % MIN == 0 && HOUR % s == 0 => Ok(format!("*/{} * * * *", s / MIN)),
        _ => Err(bad("cron cannot repeat it evenly")),
    }
}

/// `text` as an SQL string literal (with standard_conforming_strings, the default).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The command pg_cron runs: the procedure, qualified with its schema, with the config.
pub fn cron_command(quoted_schema: &str, config_json: &str) -> String {
    format!(
        "CALL {quoted_schema}.backfill_on_schedule(NULL, {}::jsonb)",
        quote_literal(config_json)
    )
}

/// A readable job name for a staging/destination pair.
pub fn job_name(staging: &str, destination: &str) -> String {
    format!("backfill {staging} -> {destination}")
}

/// Interval `$1` in whole seconds.
pub const INTERVAL_SECONDS: &str = "SELECT extract(epoch FROM $1::interval)::int8";

/// Whether the installed pg_cron is 1.5 or later (schedules in seconds); no row
/// without pg_cron.
pub const WITH_SECONDS: &str = "SELECT ARRAY[m[1]::int, m[2]::int] >= ARRAY[1, 5] \
     FROM pg_catalog.pg_extension, regexp_match(extversion, '^([0-9]+)[.]([0-9]+)') AS m WHERE \
     extname = 'pg_cron'";

/// pg_cron's `schedule`: job named `$1`, on schedule `$2`, running command `$3`. Returns the id.
pub fn schedule(quoted_schema: &str) -> String {
    format!("SELECT {quoted_schema}.schedule($1, $2, $3)::int")
}

/// How many of pg_cron's jobs with id `$1` run `backfill_on_schedule` (0 or 1).
pub fn count_our_job(quoted_schema: &str) -> String {
    format!(
        "SELECT count(*)::int8 FROM {quoted_schema}.job WHERE jobid = $1::int8 AND command \
        LIKE '%backfill_on_schedule(%'"
    )
}

/// pg_cron's `unschedule` of job `$1`.
pub fn unschedule(quoted_schema: &str) -> String {
    format!("SELECT {quoted_schema}.unschedule($1::int8)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::quote_ident;
    use crate::sql::checks::params;

    #[test]
    fn schedules() {
        assert_eq!(cron_schedule(5, true).unwrap(), "5 seconds");
        assert_eq!(cron_schedule(59, true).unwrap(), "59 seconds");
        let e = cron_schedule(5, false).unwrap_err();
        assert_eq!(
            e.message,
            "pg_cron cannot run a job every 5 seconds: this pg_cron runs jobs at \
            most once a minute (seconds need pg_cron 1.5)"
        );
        assert_eq!(cron_schedule(60, false).unwrap(), "*/1 * * * *");
        assert_eq!(cron_schedule(900, false).unwrap(), "*/15 * * * *");
        assert_eq!(cron_schedule(3600, false).unwrap(), "0 */1 * * *");
        assert_eq!(cron_schedule(6 * 3600, false).unwrap(), "0 */6 * * *");
        assert_eq!(cron_schedule(86400, false).unwrap(), "0 0 * * *");
        assert_eq!(cron_schedule(7 * 86400, false).unwrap(), "0 0 * * 0");
        assert_eq!(cron_schedule(10 * 86400, false).unwrap(), "0 0 */10 * *");
    }

    #[test]
    fn schedules_cron_cannot_keep() {
        for s in [0, -5, 7 * 60, 5 * 3600, 90, 40 * 86400, 86400 + 1] {
            let e = cron_schedule(s, true).unwrap_err();
            assert_eq!(e.code, Code::InvalidParameterValue, "{s}");
            assert!(
                e.message.starts_with(&format!("pg_cron cannot run a job every {s} seconds")),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn command_quotes_the_config() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(
            cron_command("\"public\"", r#"{"staging_table":"o'brien"}"#),
            r#"CALL "public".backfill_on_schedule(NULL, '{"staging_table":"o''brien"}'::jsonb)"#
        );
        assert_eq!(job_name("public.s", "public.d"), "backfill public.s -> public.d");
    }

    #[test]
    fn interval_and_version_checks() {
        assert_eq!(INTERVAL_SECONDS, "SELECT extract(epoch FROM $1::interval)::int8");
        assert!(params(WITH_SECONDS).is_empty());
        assert!(WITH_SECONDS.starts_with(
            "SELECT ARRAY[m[1]::int, m[2]::int] >= ARRAY[1, 5] FROM pg_catalog.pg_extension, "
        ));
        assert!(WITH_SECONDS.contains("regexp_match(extversion, '^([0-9]+)[.]([0-9]+)') AS m"));
        assert!(WITH_SECONDS.ends_with("WHERE extname = 'pg_cron'"));
    }

    #[test]
    fn schedule_find_and_unschedule() {
        let cron = quote_ident("cron");
        let q = schedule(&cron);
        assert_eq!(q, "SELECT \"cron\".schedule($1, $2, $3)::int");
        assert_eq!(params(&q), ["$1", "$2", "$3"]);
        let q = count_our_job(&cron);
        assert_eq!(params(&q), ["$1::int8"]);
        assert!(
            q.starts_with("SELECT count(*)::int8 FROM \"cron\".job WHERE jobid = $1::int8 AND "),
            "{q}"
        );
        // the pattern matches the command a backfill job runs
        assert!(q.ends_with("command LIKE '%backfill_on_schedule(%'"));
        assert!(cron_command("\"public\"", "{}").contains("backfill_on_schedule("));
        assert_eq!(unschedule(&cron), "SELECT \"cron\".unschedule($1::int8)");
    }
}
