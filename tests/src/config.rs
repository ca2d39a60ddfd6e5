//! Backfill configs as the tests write them: a config's JSON text, built from its keys,
//! and the statement that runs it.

use serde_json::Value;

/// The JSON text of a config: `staging_table` and `destination_hypertable`, then the
/// keys of `extra`, a JSON object (e.g. `json!({"on_conflict_action": "UPDATE"})`).
pub fn config(staging: &str, destination: &str, extra: Value) -> String {
    let Value::Object(extra) = extra else { panic!("a config's extra keys are an object") };
    let keys = [("staging_table", staging.into()), ("destination_hypertable", destination.into())];
    let extra = extra.iter().map(|(key, value)| (key.as_str(), value));
    let fields: Vec<String> = (keys.iter().map(|(key, value)| (*key, value)))
        .chain(extra)
        .map(|(key, value)| format!("{}:{value}", Value::from(key)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// A config of the fixtures' dataset: staging table `backfill_event_data` into the
/// hypertable `event_data`, with the keys of `extra`.
pub fn event_config(extra: Value) -> String {
    config("backfill_event_data", "event_data", extra)
}

/// `CALL backfill_on_schedule(NULL, '<config>')`: a run by hand.
pub fn call_backfill(config: &str) -> String {
    format!("CALL backfill_on_schedule(NULL, {})", literal(config))
}

/// `CALL backfill_on_schedule(<job>, '<config>')`: the run job `job` makes.
pub fn call_backfill_job(job: i32, config: &str) -> String {
    format!("CALL backfill_on_schedule({job}, {})", literal(config))
}

/// `text` as an SQL string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
