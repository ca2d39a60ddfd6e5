//! The job's configuration: parsed from the `config jsonb` that `add_job` stores, or
//! built from `decompress_backfill`'s arguments. Pure: no Postgres needed to test it.
//!
//! What can be checked without the database is checked here (keys, JSON types,
//! values of enumerations, combinations). Names are resolved and intervals parsed by
//! the SPI layer, which reports its errors against the same key names.

mod keys;
mod read;

use keys::check_keys;

use crate::error::{BackfillError, Code, Result};
use read::*;
use serde_json::Value;

/// What to do when a staging row's key already exists in the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConflictAction {
    /// Keep the existing row, drop the staging row (`ON CONFLICT DO NOTHING`).
    Nothing,
    /// Overwrite the existing row's columns with the staging row's.
    Update,
    /// Stop with a unique-violation error naming the chunk and the key.
    Restrict,
}

impl ConflictAction {
    pub fn parse(text: &str) -> Option<ConflictAction> {
        match text.trim().to_ascii_uppercase().as_str() {
            "NOTHING" | "DO NOTHING" => Some(ConflictAction::Nothing),
            "UPDATE" | "DO UPDATE" => Some(ConflictAction::Update),
            "RESTRICT" => Some(ConflictAction::Restrict),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictAction::Nothing => "NOTHING",
            ConflictAction::Update => "UPDATE",
            ConflictAction::Restrict => "RESTRICT",
        }
    }
}

/// How the conflict target was given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConflictTarget {
    /// Not given: the destination's primary key, or its only unique constraint.
    Default,
    /// An explicit column list.
    Columns(Vec<String>),
    /// One word: a constraint name on the destination, or else a single column.
    NameOrColumn(String),
}

/// The `strategy` config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StrategyChoice {
    Auto,
    Direct,
    Decompress,
}

impl StrategyChoice {
    pub fn parse(text: &str) -> Option<StrategyChoice> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(StrategyChoice::Auto),
            "direct" => Some(StrategyChoice::Direct),
            "decompress" => Some(StrategyChoice::Decompress),
            _ => None,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    pub staging_table: String,
    pub destination: String,
    pub on_conflict: ConflictAction,
    /// Empty means "every column not in the conflict target" (for UPDATE).
    pub update_columns: Vec<String>,
    pub conflict_target: ConflictTarget,
    pub delete_from_staging: bool,
    /// An interval in PostgreSQL's text form, checked by the database.
    pub push_interval: String,
    pub skip_empty_ranges: bool,
    /// `work_mem` for the run's statements, in PostgreSQL's text form.
    pub work_mem: Option<String>,
    /// How long run history is kept (interval text).
    pub history_retention: String,
    /// How long a run waits for another run on the same destination (interval text).
    pub lock_wait: String,
    /// Stop cleanly between chunks once a run has taken this long (interval text).
    pub max_runtime: Option<String>,
    /// How long a statement of the run waits for a lock before the run fails (interval
    /// text); unset, the session's `lock_timeout` where it has one, else 5 minutes.
    pub lock_timeout: Option<String>,
    /// How compressed chunks take their rows.
    pub strategy: StrategyChoice,
    /// Whether a run brings the destination's continuous aggregates up to date for the
    /// time range it changed.
    pub refresh_continuous_aggregates: bool,
    /// The most staging rows one transaction of the rest moves (rows outside every
    /// chunk, or a destination that is not a hypertable).
    pub rest_batch_rows: i64,
    /// How many chunk transactions run at once, each in a background worker (`None`:
    /// as many as the server has CPUs, at most `MAX_AUTO_WORKERS`); 1 runs them one
    /// after another in the calling session.
    pub workers: Option<i64>,
}

pub const DEFAULT_PUSH_INTERVAL: &str = "1 day";
pub const DEFAULT_HISTORY_RETENTION: &str = "30 days";
pub const DEFAULT_LOCK_WAIT: &str = "1 minute";
pub const DEFAULT_LOCK_TIMEOUT: &str = "5 minutes";
pub const DEFAULT_REST_BATCH_ROWS: i64 = 100_000;
pub const MAX_AUTO_WORKERS: i64 = 4;
pub const MAX_WORKERS: i64 = 64;

fn invalid(msg: impl Into<String>) -> BackfillError {
    BackfillError::new(Code::InvalidParameterValue, msg)
}

const CONFIG_EXAMPLE: &str = "give a config such as \
    {\"staging_table\":\"backfill_event_data\",\"destination_hypertable\":\"event_data\"}";

impl Config {
    /// The run's lock_timeout: the config's, or the default where neither the config
    /// nor the session (`run::prepare` fills it in) gave one.
    pub fn lock_timeout_or_default(&self) -> &str {
        self.lock_timeout.as_deref().unwrap_or(DEFAULT_LOCK_TIMEOUT)
    }

    /// Parses and checks the job config. `None` is SQL NULL.
    pub fn from_json(value: Option<&Value>) -> Result<Config> {
        let obj = object(value)?;
        check_keys(obj)?;
        let staging_table = required_name(obj, "staging_table")?;
        let destination = required_name(obj, "destination_hypertable")?;
        let (on_conflict, update_columns, conflict_target) = conflict_keys(obj)?;
        // read in this order, so that of several wrong keys the first is reported
        let delete_from_staging = opt_bool(obj, "delete_from_staging", true)?;
        let skip_empty_ranges = opt_bool(obj, "skip_empty_ranges", false)?;
        let push_interval =
            interval_key(obj, "compression_job_push_interval", DEFAULT_PUSH_INTERVAL)?;
        let history_retention = interval_key(obj, "history_retention", DEFAULT_HISTORY_RETENTION)?;
        let lock_wait = interval_key(obj, "lock_wait", DEFAULT_LOCK_WAIT)?;
        let lock_timeout = opt_interval(obj, "lock_timeout")?;
        let strategy = strategy(obj)?;
        let max_runtime = opt_interval(obj, "max_runtime")?;
        let work_mem = work_mem(obj)?;
        let refresh_continuous_aggregates = opt_bool(obj, "refresh_continuous_aggregates", true)?;
        let rest_batch_rows = rest_batch_rows(obj)?;
        let workers = positive_int(obj, "workers", MAX_WORKERS)?;
        let cfg = Config {
            staging_table,
            destination,
            on_conflict,
            update_columns,
            conflict_target,
            delete_from_staging,
            push_interval,
            skip_empty_ranges,
            work_mem,
            history_retention,
            lock_wait,
            max_runtime,
            lock_timeout,
            strategy,
            refresh_continuous_aggregates,
            rest_batch_rows,
            workers,
        };
        cfg.check_combinations()?;
        Ok(cfg)
    }

    /// Rules that involve more than one key.
    pub fn check_combinations(&self) -> Result<()> {
        if !self.update_columns.is_empty() && self.on_conflict != ConflictAction::Update {
            return Err(invalid(format!(
                "config key \"on_conflict_update_columns\" \
                 needs \"on_conflict_action\": \"UPDATE\", but it is {}",
                self.on_conflict.as_str()
            ))
            .hint(
                "set \"on_conflict_action\" to \"UPDATE\" or \
                remove \"on_conflict_update_columns\"",
            ));
        }
        if let ConflictTarget::Columns(cols) = &self.conflict_target {
            if let Some(c) = self.update_columns.iter().find(|c| cols.contains(c)) {
                return Err(invalid(format!(
                    "column \"{c}\" is in both \"on_conflict_target\" \
                     and \"on_conflict_update_columns\""
                ))
                .hint("a conflict target column identifies the row; it cannot be overwritten"));
            }
        }
        if !self.delete_from_staging && self.on_conflict == ConflictAction::Restrict {
            // a second run would conflict with the rows the first one copied
            return Err(invalid(
                "\"delete_from_staging\": false cannot be combined \
                with \"on_conflict_action\": \"RESTRICT\"",
            )
            .hint(
                "rows left in staging would conflict with themselves on the next run; use \
                    NOTHING or UPDATE",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
