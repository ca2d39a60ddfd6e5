//! The config's keys: the list of every key, the check that a config holds no other,
//! and the examples and "did you mean" suggestions its error hints give.

use super::invalid;
use crate::error::Result;
use serde_json::{Map, Value};

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

pub(super) fn key_list() -> String {
    KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
}

/// Levenshtein distance, for "did you mean" hints.
pub(super) fn distance(a: &str, b: &str) -> usize {
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

pub(super) fn example_for(key: &str) -> &'static str {
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

/// Every key is a known one; a misspelt key gets a "did you mean".
pub(super) fn check_keys(obj: &Map<String, Value>) -> Result<()> {
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
