//! Turning a schedule interval into a pg_cron schedule, and the command pg_cron
//! runs. Pure.

use crate::error::{BackfillError, Code, Result};

/// A pg_cron schedule that runs every `secs` seconds: `N seconds` below a minute
/// (pg_cron 1.5 and later, `with_seconds`), else a cron expression. Only intervals
/// cron can keep evenly are accepted.
pub fn cron_schedule(secs: i64, with_seconds: bool) -> Result<String> {
    let bad = |why: &str| {
        BackfillError::new(Code::InvalidParameterValue, format!("pg_cron cannot run a job every {secs} seconds: {why}"))
            .hint("use 1-59 seconds, a number of minutes or hours that divides an hour or a day, or whole days up to 31")
    };
    const MIN: i64 = 60;
    const HOUR: i64 = 3600;
    const DAY: i64 = 86400;
    match secs {
        s if s <= 0 => Err(bad("the interval must be positive")),
        s if s < MIN && with_seconds => Ok(format!("{s} seconds")),
        s if s < MIN => Err(bad("this pg_cron runs jobs at most once a minute (seconds need pg_cron 1.5)")),
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
    format!("CALL {quoted_schema}.backfill_on_schedule(NULL, {}::jsonb)", quote_literal(config_json))
}

/// A readable job name for a staging/destination pair.
pub fn job_name(staging: &str, destination: &str) -> String {
    format!("backfill {staging} -> {destination}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(cron_schedule(5, true).unwrap(), "5 seconds");
        assert_eq!(cron_schedule(59, true).unwrap(), "59 seconds");
        let e = cron_schedule(5, false).unwrap_err();
        assert_eq!(e.message, "pg_cron cannot run a job every 5 seconds: this pg_cron runs jobs at most once a minute (seconds need pg_cron 1.5)");
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
            assert!(e.message.starts_with(&format!("pg_cron cannot run a job every {s} seconds")), "{}", e.message);
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
}
