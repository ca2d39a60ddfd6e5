//! The job's configuration: parsed from the `config jsonb` that `add_job` stores, or
//! built from `decompress_backfill`'s arguments. Pure: no Postgres needed to test it.
//!
//! What can be checked without the database is checked here (keys, JSON types,
//! values of enumerations, combinations). Names are resolved and intervals parsed by
//! the SPI layer, which reports its errors against the same key names.

use crate::error::{BackfillError, Code, Result};
use serde_json::{Map, Value};

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

/// Every key the config may hold, with a line for error hints and the README.
pub const KEYS: &[(&str, &str)] = &[
    ("staging_table", "text, required: the table late rows arrive in"),
    ("destination_hypertable", "text, required: the hypertable (or table) they belong in"),
    ("on_conflict_action", "text: NOTHING (default), UPDATE or RESTRICT"),
    ("on_conflict_update_columns", "array of text: columns UPDATE overwrites"),
    ("on_conflict_target", "array of text, or text: conflict columns or a constraint name"),
    ("delete_from_staging", "boolean, default true"),
    ("compression_job_push_interval", "interval text, default '1 day'"),
    ("skip_empty_ranges", "boolean, accepted for compatibility"),
    ("work_mem", "text or integer (kB): work_mem for the run's statements"),
    ("history_retention", "interval text, default '30 days': how long run history is kept"),
    (
        "lock_wait",
        "interval text, default '1 minute': how long to wait for another run on the \
      destination",
    ),
    (
        "max_runtime",
        "interval text: stop cleanly between chunks after this long; the next run \
      continues",
    ),
    (
        "lock_timeout",
        "interval text, default the session's lock_timeout, else '5 minutes': how \
      long a step waits for a lock before the run fails cleanly",
    ),
    (
        "strategy",
        "text: auto (default), direct or decompress: how compressed chunks take their \
      rows",
    ),
    (
        "refresh_continuous_aggregates",
        "boolean, default true: after moving rows, refresh the \
      destination's continuous aggregates for the time range the run changed",
    ),
    (
        "rest_batch_rows",
        "integer, default 100000: the most rows one transaction moves outside \
      existing chunks, or into a table that is not a hypertable",
    ),
    (
        "workers",
        "integer from 1 to 64, default the server's CPUs (at most 4): how many chunk \
      transactions run at once, each in a background worker; 1 runs them one after another in the \
      calling session",
    ),
];

fn key_list() -> String {
    KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
}

fn invalid(msg: impl Into<String>) -> BackfillError {
    BackfillError::new(Code::InvalidParameterValue, msg)
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = if ca == *cb { 0 } else { 1 };
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known key closest to `key`, if it is plausibly a misspelling.
pub fn suggest_key(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    KEYS.iter()
        .map(|(k, _)| (*k, distance(&lower, k)))
        .filter(|(k, d)| *d <= 3.max(k.len() / 4))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(key: &str, want: &str, got: &Value) -> BackfillError {
    invalid(format!("config key \"{key}\" must be {want}, not {}", type_name(got)))
        .hint(format!("for example: {}", example_for(key)))
}

fn example_for(key: &str) -> &'static str {
    match key {
        "staging_table" => "\"staging_table\": \"backfill_event_data\"",
        "destination_hypertable" => "\"destination_hypertable\": \"event_data\"",
        "on_conflict_action" => "\"on_conflict_action\": \"UPDATE\"",
        "on_conflict_update_columns" => "\"on_conflict_update_columns\": [\"value\"]",
        "on_conflict_target" => "\"on_conflict_target\": [\"device_id\", \"time\"]",
        "delete_from_staging" | "skip_empty_ranges" | "refresh_continuous_aggregates" => {
            "true or false"
        }
        "compression_job_push_interval" => "\"compression_job_push_interval\": \"2 days\"",
        "work_mem" => "\"work_mem\": \"256MB\"",
        "history_retention" => "\"history_retention\": \"90 days\"",
        "lock_wait" => "\"lock_wait\": \"5 minutes\"",
        "max_runtime" => "\"max_runtime\": \"2 hours\"",
        "lock_timeout" => "\"lock_timeout\": \"30 seconds\"",
        "strategy" => "\"strategy\": \"decompress\"",
        "rest_batch_rows" => "\"rest_batch_rows\": 50000",
        "workers" => "\"workers\": 2",
        _ => "see the configuration reference in the README",
    }
}

fn required_name(obj: &Map<String, Value>, key: &str) -> Result<String> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(invalid(format!("config key \"{key}\" is required"))
            .hint(format!("add it to the job's config, for example {}", example_for(key)))),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(invalid(format!("config key \"{key}\" must not be empty"))
                .hint(format!("for example {}", example_for(key))))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(wrong_type(key, "a table name (string)", other)),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str, default: bool) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(wrong_type(key, "a boolean", other)),
    }
}

fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

/// A column name as written in the config: `"Name"` quoted keeps its text, anything
/// else is taken as written (config arrays hold names, not SQL).
pub fn column_name(raw: &str) -> String {
    let t = raw.trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        t[1..t.len() - 1].replace("\"\"", "\"")
    } else {
        t.to_string()
    }
}

fn string_array(key: &str, v: &Value) -> Result<Vec<String>> {
    let Value::Array(items) = v else {
        return Err(wrong_type(key, "an array of column names", v));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) if !s.trim().is_empty() => {
                let name = column_name(s);
                if out.contains(&name) {
                    return Err(invalid(format!(
                        "config key \"{key}\" names column \"{name}\" twice"
                    ))
                    .hint("list each column once"));
                }
                out.push(name)
            }
            Value::String(_) => {
                return Err(invalid(format!("config key \"{key}\" holds an empty column name"))
                    .hint("remove the empty entry"))
            }
            other => return Err(wrong_type(key, "an array of column names (strings)", other)),
        }
    }
    Ok(out)
}

/// An interval given as text (checked by the database later), or its default.
fn interval_key(obj: &Map<String, Value>, key: &str, default: &str) -> Result<String> {
    match opt_string(obj, key)? {
        None => Ok(default.to_string()),
        Some(s) if s.trim().is_empty() => {
            Err(invalid(format!("config key \"{key}\" must not be empty"))
                .hint(format!("for example {}", example_for(key))))
        }
        Some(s) => Ok(s),
    }
}

/// Parses `on_conflict_target` given as text: `(a, b)` or `a, b` is a column list,
/// one word is a constraint name or a column.
pub fn parse_target_text(text: &str) -> Result<ConflictTarget> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(ConflictTarget::Default);
    }
    let (inner, parenthesised) = match t.strip_prefix('(') {
        Some(rest) => match rest.strip_suffix(')') {
            Some(inner) => (inner, true),
            None => {
                return Err(invalid(format!(
                    "config key \"on_conflict_target\" has an unclosed parenthesis: {t}"
                ))
                .hint("write a column list as (col1, col2) or as a JSON array"))
            }
        },
        None => (t, false),
    };
    let parts: Vec<String> = split_names(inner).into_iter().map(|p| column_name(&p)).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid(format!(
            "config key \"on_conflict_target\" holds an empty column name: {t}"
        ))
        .hint("write a column list as (col1, col2) or as a JSON array"));
    }
    if parts.len() == 1 && !parenthesised {
        Ok(ConflictTarget::NameOrColumn(parts.into_iter().next().unwrap()))
    } else {
        Ok(ConflictTarget::Columns(parts))
    }
}

/// Splits `a, "b,c", d` on commas outside double quotes.
fn split_names(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                parts.last_mut().unwrap().push(c);
            }
            ',' if !quoted => parts.push(String::new()),
            _ => parts.last_mut().unwrap().push(c),
        }
    }
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

const CONFIG_EXAMPLE: &str = "give a config such as \
    {\"staging_table\":\"backfill_event_data\",\"destination_hypertable\":\"event_data\"}";

/// The config as a JSON object.
fn object(value: Option<&Value>) -> Result<&Map<String, Value>> {
    match value {
        None | Some(Value::Null) => {
            Err(BackfillError::new(Code::NullValueNotAllowed, "the backfill job's config is NULL")
                .hint(CONFIG_EXAMPLE))
        }
        Some(Value::Object(obj)) => Ok(obj),
        Some(other) => Err(invalid(format!(
            "the backfill job's config must be a JSON object, not {}",
            type_name(other)
        ))
        .hint(CONFIG_EXAMPLE)),
    }
}

/// Every key is a known one; a misspelt key gets a "did you mean".
fn check_keys(obj: &Map<String, Value>) -> Result<()> {
    for key in obj.keys() {
        if !KEYS.iter().any(|(k, _)| k == key) {
            let err = invalid(format!("unknown config key \"{key}\""));
            return Err(match suggest_key(key) {
                Some(s) => err.hint(format!("did you mean \"{s}\"? Known keys: {}", key_list())),
                None => err.hint(format!("known keys: {}", key_list())),
            });
        }
    }
    Ok(())
}

/// `on_conflict_action`, `on_conflict_update_columns` and `on_conflict_target`.
fn conflict_keys(
    obj: &Map<String, Value>,
) -> Result<(ConflictAction, Vec<String>, ConflictTarget)> {
    let on_conflict =
        match opt_string(obj, "on_conflict_action")? {
            None => ConflictAction::Nothing,
            Some(s) => {
                ConflictAction::parse(&s).ok_or_else(|| {
                    invalid(format!("config key \"on_conflict_action\" must be NOTHING, UPDATE or \
                RESTRICT, not \"{s}\""))
                .hint("NOTHING keeps existing rows, UPDATE overwrites them, RESTRICT stops at the \
                    first conflict")
                })?
            }
        };
    let update_columns = match obj.get("on_conflict_update_columns") {
        None | Some(Value::Null) => vec![],
        Some(v) => string_array("on_conflict_update_columns", v)?,
    };
    let conflict_target = match obj.get("on_conflict_target") {
        None | Some(Value::Null) => ConflictTarget::Default,
        Some(Value::String(s)) => parse_target_text(s)?,
        Some(v @ Value::Array(_)) => {
            let cols = string_array("on_conflict_target", v)?;
            if cols.is_empty() {
                ConflictTarget::Default
            } else {
                ConflictTarget::Columns(cols)
            }
        }
        Some(other) => {
            return Err(wrong_type(
                "on_conflict_target",
                "an array of column names or a constraint name",
                other,
            ))
        }
    };
    Ok((on_conflict, update_columns, conflict_target))
}

/// An optional interval key with no default.
fn opt_interval(obj: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => Ok(Some(interval_key(obj, key, "")?)),
    }
}

/// `strategy`: auto by default.
fn strategy(obj: &Map<String, Value>) -> Result<StrategyChoice> {
    match opt_string(obj, "strategy")? {
        None => Ok(StrategyChoice::Auto),
        Some(s) => StrategyChoice::parse(&s).ok_or_else(|| {
            invalid(format!(
                "config key \"strategy\" must be auto, direct or decompress, \
                not \"{s}\""
            ))
            .hint(
                "auto chooses per chunk; direct inserts into compressed chunks; decompress \
                    decompresses each chunk whole",
            )
        }),
    }
}

/// `rest_batch_rows`: a positive integer.
fn rest_batch_rows(obj: &Map<String, Value>) -> Result<i64> {
    Ok(positive_int(obj, "rest_batch_rows", i64::MAX)?.unwrap_or(DEFAULT_REST_BATCH_ROWS))
}

/// An integer key from 1 to `max`, if given.
fn positive_int(obj: &Map<String, Value>, key: &str, max: i64) -> Result<Option<i64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|k| k > 0 && k <= max) => Ok(n.as_i64()),
        Some(other) if max == i64::MAX => Err(wrong_type(key, "a positive integer", other)),
        Some(other) => Err(wrong_type(key, &format!("an integer from 1 to {max}"), other)),
    }
}

/// `work_mem`: a size as text, or a number of kB.
fn work_mem(obj: &Map<String, Value>) -> Result<Option<String>> {
    match obj.get("work_mem") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|k| k > 0) => {
            Ok(Some(format!("{}kB", n.as_u64().unwrap())))
        }
        Some(other) => Err(wrong_type(
            "work_mem",
            "a memory size such as \"256MB\" or a positive number of kB",
            other,
        )),
    }
}

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
