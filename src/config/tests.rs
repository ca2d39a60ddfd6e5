//! Unit tests of the config: parsing, checks, hints.

use super::keys::{distance, suggest_key};
use super::read::parse_target_text;
use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<Config> {
    Config::from_json(Some(&v))
}
fn err(v: Value) -> BackfillError {
    parse(v).expect_err("config should be rejected")
}
fn base() -> Value {
    json!({"staging_table": "backfill_event_data", "destination_hypertable": "event_data"})
}
fn with(key: &str, v: Value) -> Value {
    let mut b = base();
    b.as_object_mut().unwrap().insert(key.into(), v);
    b
}

#[test]
fn minimal_config_takes_defaults() {
    let c = parse(base()).unwrap();
    assert_eq!(c.staging_table, "backfill_event_data");
    assert_eq!(c.destination, "event_data");
    assert_eq!(c.on_conflict, ConflictAction::Nothing);
    assert!(c.update_columns.is_empty());
    assert_eq!(c.conflict_target, ConflictTarget::Default);
    assert!(c.delete_from_staging);
    assert_eq!(c.push_interval, "1 day");
    assert!(!c.skip_empty_ranges);
    assert_eq!(c.work_mem, None);
    assert_eq!(c.history_retention, "30 days");
    assert_eq!(c.lock_wait, "1 minute");
    assert_eq!(c.max_runtime, None);
    assert_eq!(
        c.lock_timeout, None,
        "the session's, else 5 minutes (resolved where the session is known)"
    );
    assert_eq!(c.strategy, StrategyChoice::Auto);
    assert_eq!(c.rest_batch_rows, 100_000);
    assert_eq!(
        c.workers, None,
        "as many as the server's CPUs, at most 4 (resolved where the server is known)"
    );
}

#[test]
fn workers_is_an_integer_from_1_to_64() {
    assert_eq!(parse(with("workers", json!(1))).unwrap().workers, Some(1));
    assert_eq!(parse(with("workers", json!(64))).unwrap().workers, Some(64));
    for bad in [json!(0), json!(65), json!(-1), json!(2.5), json!("2")] {
        let e = err(with("workers", bad.clone()));
        assert!(
            e.message.starts_with("config key \"workers\" must be an integer from 1 to 64, not "),
            "{bad}: {}",
            e.message
        );
        assert_eq!(e.hint.as_deref(), Some("for example: \"workers\": 2"));
    }
}

#[test]
fn rest_batch_rows_is_a_positive_integer() {
    assert_eq!(parse(with("rest_batch_rows", json!(500))).unwrap().rest_batch_rows, 500);
    for bad in [json!(0), json!(-5), json!(1.5), json!("1000")] {
        let e = err(with("rest_batch_rows", bad.clone()));
        assert!(
            e.message
                .starts_with("config key \"rest_batch_rows\" must be a positive integer, not "),
            "{bad}: {}",
            e.message
        );
        assert_eq!(e.hint.as_deref(), Some("for example: \"rest_batch_rows\": 50000"));
    }
}

#[test]
fn strategy_values() {
    assert_eq!(parse(with("strategy", json!("direct"))).unwrap().strategy, StrategyChoice::Direct);
    assert_eq!(
        parse(with("strategy", json!("Decompress"))).unwrap().strategy,
        StrategyChoice::Decompress
    );
    let e = err(with("strategy", json!("fast")));
    assert_eq!(
        e.message,
        "config key \"strategy\" must be auto, direct or decompress, not \"fast\""
    );
    let e = err(with("strategy", json!(1)));
    assert_eq!(e.message, "config key \"strategy\" must be a string, not number");
}

#[test]
fn full_config() {
    let c = parse(json!({
        "staging_table": "s.\"Stage\"", "destination_hypertable": "d",
        "on_conflict_action": "update", "on_conflict_update_columns": ["value", "\"Note\""],
        "on_conflict_target": ["device_id", "time"], "delete_from_staging": false,
        "compression_job_push_interval": "2 days", "skip_empty_ranges": true, "work_mem": 65536
    }))
    .unwrap();
    assert_eq!(c.staging_table, "s.\"Stage\"");
    assert_eq!(c.on_conflict, ConflictAction::Update);
    assert_eq!(c.update_columns, vec!["value", "Note"]);
    assert_eq!(c.conflict_target, ConflictTarget::Columns(vec!["device_id".into(), "time".into()]));
    assert!(!c.delete_from_staging);
    assert_eq!(c.push_interval, "2 days");
    assert!(c.skip_empty_ranges);
    assert_eq!(c.work_mem.as_deref(), Some("65536kB"));
}

#[test]
fn null_and_non_object() {
    let e = Config::from_json(None).unwrap_err();
    assert_eq!(e.code, Code::NullValueNotAllowed);
    assert_eq!(e.message, "the backfill job's config is NULL");
    let e = err(json!([1, 2]));
    assert_eq!(e.message, "the backfill job's config must be a JSON object, not array");
    assert!(e.hint.unwrap().contains("staging_table"));
    assert_eq!(
        err(json!("x")).message,
        "the backfill job's config must be a JSON object, not string"
    );
}

#[test]
fn missing_required_keys() {
    let e = err(json!({"destination_hypertable": "d"}));
    assert_eq!(e.message, "config key \"staging_table\" is required");
    assert_eq!(e.code.sqlstate(), "22023");
    let e = err(json!({"staging_table": "s"}));
    assert_eq!(e.message, "config key \"destination_hypertable\" is required");
    let e = err(json!({"staging_table": "s", "destination_hypertable": null}));
    assert_eq!(e.message, "config key \"destination_hypertable\" is required");
    let e = err(json!({"staging_table": "  ", "destination_hypertable": "d"}));
    assert_eq!(e.message, "config key \"staging_table\" must not be empty");
}

#[test]
fn misspelled_key_is_named_with_suggestion() {
    let e = err(with("staging_tabel", json!("x")));
    assert_eq!(e.message, "unknown config key \"staging_tabel\"");
    assert!(
        e.hint.as_deref().unwrap().starts_with("did you mean \"staging_table\"?"),
        "{:?}",
        e.hint
    );
    let e = err(with("destination_table", json!("x")));
    assert!(e.hint.as_deref().unwrap().contains("destination_hypertable"));
    let e = err(with("zzz", json!(1)));
    assert_eq!(e.message, "unknown config key \"zzz\"");
    assert!(e.hint.as_deref().unwrap().starts_with("known keys: staging_table"));
    let e = err(with("", json!(1)));
    assert_eq!(e.message, "unknown config key \"\"");
}

#[test]
fn wrong_types_name_the_key() {
    // table-driven
    let cases = [
        (
            "staging_table",
            json!(5),
            "config key \"staging_table\" must be a table name (string), \
          not number",
        ),
        (
            "destination_hypertable",
            json!(["x"]),
            "config key \"destination_hypertable\" must be a \
          table name (string), not array",
        ),
        (
            "on_conflict_action",
            json!(true),
            "config key \"on_conflict_action\" must be a string, \
          not boolean",
        ),
        (
            "on_conflict_update_columns",
            json!("value"),
            "config key \"on_conflict_update_columns\" \
          must be an array of column names, not string",
        ),
        (
            "on_conflict_update_columns",
            json!([1]),
            "config key \"on_conflict_update_columns\" must \
          be an array of column names (strings), not number",
        ),
        (
            "on_conflict_target",
            json!(7),
            "config key \"on_conflict_target\" must be an array of \
          column names or a constraint name, not number",
        ),
        (
            "delete_from_staging",
            json!("yes"),
            "config key \"delete_from_staging\" must be a \
          boolean, not string",
        ),
        (
            "skip_empty_ranges",
            json!(1),
            "config key \"skip_empty_ranges\" must be a boolean, not \
          number",
        ),
        (
            "compression_job_push_interval",
            json!(86400),
            "config \
          key \"compression_job_push_interval\" must be a string, not number",
        ),
        (
            "work_mem",
            json!(-1),
            "config key \"work_mem\" must be a memory size such as \"256MB\" \
          or a positive number of kB, not number",
        ),
        (
            "work_mem",
            json!({}),
            "config key \"work_mem\" must be a memory size such as \"256MB\" \
          or a positive number of kB, not object",
        ),
    ];
    for (key, v, msg) in cases {
        let e = err(with(key, v));
        assert_eq!(e.message, msg, "key {key}");
        assert_eq!(e.code, Code::InvalidParameterValue);
        assert!(e.hint.is_some(), "key {key} has a hint");
    }
}

#[test]
fn conflict_action_values() {
    for (t, a) in [
        ("NOTHING", ConflictAction::Nothing),
        ("nothing", ConflictAction::Nothing),
        ("Update", ConflictAction::Update),
        ("RESTRICT", ConflictAction::Restrict),
        ("do update", ConflictAction::Update),
    ] {
        assert_eq!(parse(with("on_conflict_action", json!(t))).unwrap().on_conflict, a);
    }
    let e = err(with("on_conflict_action", json!("IGNORE")));
    assert_eq!(
        e.message,
        "config key \"on_conflict_action\" must be NOTHING, UPDATE or RESTRICT, not \"IGNORE\""
    );
}

#[test]
fn update_columns_rules() {
    let e = err(with("on_conflict_update_columns", json!(["v"])));
    assert_eq!(
        e.message,
        "config key \"on_conflict_update_columns\" \
        needs \"on_conflict_action\": \"UPDATE\", but it is NOTHING"
    );
    let mut v = with("on_conflict_action", json!("UPDATE"));
    v["on_conflict_update_columns"] = json!(["v", "v"]);
    assert_eq!(
        err(v).message,
        "config key \"on_conflict_update_columns\" names column \"v\" twice"
    );
    let mut v = with("on_conflict_action", json!("UPDATE"));
    v["on_conflict_update_columns"] = json!(["v", ""]);
    assert_eq!(
        err(v).message,
        "config key \"on_conflict_update_columns\" holds an empty column name"
    );
    let mut v = with("on_conflict_action", json!("UPDATE"));
    v["on_conflict_update_columns"] = json!(["time"]);
    v["on_conflict_target"] = json!(["device_id", "time"]);
    assert_eq!(
        err(v).message,
        "column \"time\" is in both \"on_conflict_target\" and \"on_conflict_update_columns\""
    );
}

#[test]
fn restrict_needs_delete() {
    let mut v = with("on_conflict_action", json!("RESTRICT"));
    v["delete_from_staging"] = json!(false);
    assert_eq!(
        err(v).message,
        "\"delete_from_staging\": false cannot be combined \
        with \"on_conflict_action\": \"RESTRICT\""
    );
}

#[test]
fn intervals_must_not_be_empty() {
    for key in [
        "compression_job_push_interval",
        "history_retention",
        "lock_wait",
        "max_runtime",
        "lock_timeout",
    ] {
        let e = err(with(key, json!(" ")));
        assert_eq!(e.message, format!("config key \"{key}\" must not be empty"));
        let e = err(with(key, json!(5)));
        assert_eq!(e.message, format!("config key \"{key}\" must be a string, not number"));
    }
    let c = parse(with("lock_wait", json!("10 seconds"))).unwrap();
    assert_eq!(c.lock_wait, "10 seconds");
}

#[test]
fn conflict_target_text_forms() {
    assert_eq!(parse_target_text("").unwrap(), ConflictTarget::Default);
    assert_eq!(
        parse_target_text("event_data_pkey").unwrap(),
        ConflictTarget::NameOrColumn("event_data_pkey".into())
    );
    assert_eq!(
        parse_target_text("(device_id, time)").unwrap(),
        ConflictTarget::Columns(vec!["device_id".into(), "time".into()])
    );
    assert_eq!(
        parse_target_text("a,b").unwrap(),
        ConflictTarget::Columns(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        parse_target_text("(\"A,b\", c)").unwrap(),
        ConflictTarget::Columns(vec!["A,b".into(), "c".into()])
    );
    assert_eq!(parse_target_text("(x)").unwrap(), ConflictTarget::Columns(vec!["x".into()]));
    assert_eq!(
        parse_target_text("(a,").unwrap_err().message,
        "config key \"on_conflict_target\" has an unclosed parenthesis: (a,"
    );
    assert_eq!(
        parse_target_text("a,,b").unwrap_err().message,
        "config key \"on_conflict_target\" holds an empty column name: a,,b"
    );
    assert_eq!(
        parse(with("on_conflict_target", json!([]))).unwrap().conflict_target,
        ConflictTarget::Default
    );
}

#[test]
fn suggestions() {
    assert_eq!(suggest_key("on_conflict_actoin"), Some("on_conflict_action"));
    assert_eq!(suggest_key("STAGING_TABLE"), Some("staging_table"));
    assert_eq!(suggest_key("workmem"), Some("work_mem"));
    assert_eq!(suggest_key("completely_different"), None);
    assert_eq!(distance("kitten", "sitting"), 3);
}
