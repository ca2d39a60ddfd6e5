use super::*;
use serde_json::json;

fn col(name: &str, ty: u32) -> Column {
    Column {
        name: name.into(),
        type_name: format!("type{ty}"),
        type_oid: ty,
        not_null: false,
        has_default: false,
        generated: false,
        identity: false,
        collation: None,
    }
}
fn dest() -> Vec<Column> {
    let mut t = col("time", 1184);
    t.not_null = true;
    let mut d = col("device_id", 23);
    d.not_null = true;
    vec![t, d, col("value", 701), col("note", 25)]
}
fn names() -> Names<'static> {
    Names { staging: "public.stage", destination: "public.event_data" }
}
fn no_cast(_: u32, _: u32) -> bool {
    false
}
fn pk() -> Vec<UniqueKey> {
    vec![UniqueKey {
        name: "event_data_pkey".into(),
        primary: true,
        columns: vec!["device_id".into(), "time".into()],
        rules: KeyRules::default(),
    }]
}
/// `resolve_conflict` for a config of `extra` keys, against `dest()` and `names()`.
fn resolve(extra: serde_json::Value, copied: &[String], keys: &[UniqueKey]) -> Result<Conflict> {
    resolve_conflict(&cfg(extra), copied, &dest(), keys, &names())
}

fn cfg(extra: serde_json::Value) -> Config {
    let mut v = json!({"staging_table": "stage", "destination_hypertable": "event_data"});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    Config::from_json(Some(&v)).unwrap()
}

#[test]
fn columns_match_by_name_in_any_order() {
    let st = vec![col("value", 701), col("time", 1184), col("device_id", 23)];
    assert_eq!(
        match_columns(&st, &dest(), &names(), &no_cast).unwrap(),
        ["value", "time", "device_id"]
    );
}

#[test]
fn extra_staging_column_is_named() {
    let st = vec![col("time", 1184), col("device_id", 23), col("extra", 25)];
    let e = match_columns(&st, &dest(), &names(), &no_cast).unwrap_err();
    assert_eq!(e.code.sqlstate(), "42703");
    assert_eq!(
        e.message,
        "column \"extra\" of staging table public.stage does not exist in \
        destination public.event_data"
    );
}

#[test]
fn incompatible_type_is_named_and_casts_are_allowed() {
    let st = vec![col("time", 1184), col("device_id", 20)];
    let e = match_columns(&st, &dest(), &names(), &no_cast).unwrap_err();
    assert_eq!(e.code.sqlstate(), "42804");
    assert_eq!(
        e.message,
        "column \"device_id\" is type20 in staging table public.stage but \
        type23 in destination public.event_data"
    );
    assert!(match_columns(&st, &dest(), &names(), &|a, b| a == 20 && b == 23).is_ok());
}

#[test]
fn required_destination_column_missing() {
    let st = vec![col("time", 1184), col("value", 701)];
    let e = match_columns(&st, &dest(), &names(), &no_cast).unwrap_err();
    assert_eq!(e.code.sqlstate(), "23502");
    assert_eq!(
        e.message,
        "column \"device_id\" of destination public.event_data is NOT NULL \
        without a default, but staging table public.stage has no such column"
    );
}

#[test]
fn generated_column_and_empty_staging() {
    let mut d = dest();
    d[3].generated = true;
    let st = vec![col("time", 1184), col("device_id", 23), col("note", 25)];
    let e = match_columns(&st, &d, &names(), &no_cast).unwrap_err();
    assert_eq!(e.code.sqlstate(), "428C9");
    let e = match_columns(&[], &[], &names(), &no_cast).unwrap_err();
    assert_eq!(e.message, "staging table public.stage has no columns");
}

#[test]
fn default_target_for_each_action() {
    let copied: Vec<String> = ["time", "device_id", "value"].map(String::from).to_vec();
    let c = resolve(json!({}), &copied, &pk()).unwrap();
    assert!(c.target.is_empty(), "DO NOTHING takes every unique constraint");
    let c = resolve(json!({"on_conflict_action": "UPDATE"}), &copied, &pk()).unwrap();
    assert_eq!(c.target, ["device_id", "time"]);
    assert_eq!(c.update_columns, ["value"]);
    let c = resolve(json!({"on_conflict_action": "RESTRICT"}), &copied, &pk()).unwrap();
    assert_eq!(c.target, ["device_id", "time"]);
    assert!(c.update_columns.is_empty());
}

#[test]
fn update_without_unique_constraint() {
    let copied: Vec<String> = ["time", "device_id"].map(String::from).to_vec();
    let e = resolve(json!({"on_conflict_action": "UPDATE"}), &copied, &[]).unwrap_err();
    assert_eq!(e.code.sqlstate(), "42P10");
    assert_eq!(
        e.message,
        "\"on_conflict_action\": \"UPDATE\" needs a unique constraint, but \
        destination public.event_data has none"
    );
}

#[test]
fn restrict_or_keeping_staging_rows_without_unique_constraint_is_refused() {
    // RESTRICT could not see a duplicate; keeping staging rows would insert them again every
    // run
    let copied: Vec<String> = ["time", "device_id"].map(String::from).to_vec();
    let e = resolve(json!({"on_conflict_action": "RESTRICT"}), &copied, &[]).unwrap_err();
    assert_eq!(e.code.sqlstate(), "42P10");
    assert_eq!(
        e.message,
        "\"on_conflict_action\": \"RESTRICT\" needs a unique constraint, but \
        destination public.event_data has none"
    );
    assert!(e
        .hint
        .unwrap()
        .starts_with("add a primary key or unique constraint to the destination"));
    let e = resolve(json!({"delete_from_staging": false}), &copied, &[]).unwrap_err();
    assert_eq!(e.code.sqlstate(), "42P10");
    assert_eq!(
        e.message,
        "\"delete_from_staging\": false needs a unique constraint, but \
        destination public.event_data has none"
    );
    assert!(e.hint.unwrap().contains("delete_from_staging: true"));
    // with a key both are fine; without one, DO NOTHING moving rows out of staging is too
    assert!(resolve(json!({"on_conflict_action": "RESTRICT"}), &copied, &pk()).is_ok());
    assert!(resolve(json!({"delete_from_staging": false}), &copied, &pk()).is_ok());
    assert!(resolve(json!({}), &copied, &[]).is_ok());
}

#[test]
fn several_unique_keys_need_a_choice() {
    let keys = vec![
        UniqueKey {
            name: "a_key".into(),
            primary: false,
            columns: vec!["time".into(), "device_id".into()],
            rules: KeyRules::default(),
        },
        UniqueKey {
            name: "b_key".into(),
            primary: false,
            columns: vec!["time".into(), "note".into()],
            rules: KeyRules::default(),
        },
    ];
    let copied: Vec<String> = ["time", "device_id", "note"].map(String::from).to_vec();
    let e = resolve(json!({"on_conflict_action": "UPDATE"}), &copied, &keys).unwrap_err();
    assert_eq!(
        e.message,
        "destination public.event_data has 2 unique constraints and no \
        primary key; UPDATE needs to know which one to use"
    );
    assert!(e.hint.unwrap().contains("a_key (time, device_id); b_key (time, note)"));
    assert!(resolve(json!({}), &copied, &keys).is_ok());
    let c = resolve(
        json!({"on_conflict_action": "UPDATE", "on_conflict_target": "b_key"}),
        &copied,
        &keys,
    )
    .unwrap();
    assert_eq!(c.target, ["time", "note"]);
    assert_eq!(c.update_columns, ["device_id"]);
}

#[test]
fn explicit_targets() {
    let copied: Vec<String> = ["time", "device_id", "value"].map(String::from).to_vec();
    let explicit =
        json!({"on_conflict_action": "UPDATE", "on_conflict_target": ["time", "device_id"]});
    assert_eq!(resolve(explicit, &copied, &pk()).unwrap().target, ["device_id", "time"]);
    let by_name =
        resolve(json!({"on_conflict_target": "event_data_pkey"}), &copied, &pk()).unwrap();
    assert_eq!(by_name.target, ["device_id", "time"]);
    let refused = [
        (
            json!({"on_conflict_target": ["time"]}),
            "there is no unique or primary key constraint on (time) in destination \
             public.event_data",
        ),
        (
            json!({"on_conflict_target": ["nope"]}),
            "column \"nope\" in \"on_conflict_target\" does not exist in destination \
             public.event_data",
        ),
        (
            json!({"on_conflict_target": "nope"}),
            "\"on_conflict_target\" \"nope\" is neither a constraint nor a column of \
             destination public.event_data",
        ),
        (
            json!({"on_conflict_target": "value"}),
            "there is no unique or primary key constraint on (value) in destination \
             public.event_data",
        ),
    ];
    for (config, message) in refused {
        assert_eq!(resolve(config, &copied, &pk()).unwrap_err().message, message);
    }
}

#[test]
fn target_column_missing_from_staging() {
    let copied: Vec<String> = ["time", "value"].map(String::from).to_vec();
    let e = resolve(json!({"on_conflict_action": "RESTRICT"}), &copied, &pk()).unwrap_err();
    assert_eq!(
        e.message,
        "conflict target column \"device_id\" is missing from staging table public.stage"
    );
}

#[test]
fn update_column_checks() {
    let copied: Vec<String> = ["time", "device_id", "value"].map(String::from).to_vec();
    let e = resolve(
        json!({"on_conflict_action": "UPDATE", "on_conflict_update_columns": ["zzz"]}),
        &copied,
        &pk(),
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "column \"zzz\" in \"on_conflict_update_columns\" does not exist in \
        destination public.event_data"
    );
    let e = resolve(
        json!({"on_conflict_action": "UPDATE", "on_conflict_update_columns": ["note"]}),
        &copied,
        &pk(),
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "column \"note\" in \"on_conflict_update_columns\" is missing from \
        staging table public.stage"
    );
    let e = resolve(
        json!({"on_conflict_action": "UPDATE", "on_conflict_update_columns": ["time"]}),
        &copied,
        &pk(),
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "column \"time\" is in the conflict target and cannot be \
        in \"on_conflict_update_columns\""
    );
    let c = resolve(
        json!({"on_conflict_action": "UPDATE", "on_conflict_update_columns": ["value"]}),
        &copied,
        &pk(),
    )
    .unwrap();
    assert_eq!(c.update_columns, ["value"]);
}

fn attr(name: &str, type_oid: u32, dropped: bool) -> Attribute {
    Attribute { name: name.into(), type_oid, dropped }
}

#[test]
fn attributes_map_by_name_and_type() {
    // a hypertable with a dropped column, and a chunk created after the drop, its columns in
    // another order
    let table = [
        attr("time", 1184, false),
        attr("........pg.dropped.2........", 0, true),
        attr("dev", 23, false),
        attr("v", 701, false),
    ];
    let chunk = [attr("dev", 23, false), attr("time", 1184, false), attr("v", 701, false)];
    assert_eq!(attribute_map(&table, &chunk), Some(vec![Some(2), Some(0), Some(3)]));
    // a chunk from before the drop keeps it, as NULL
    assert_eq!(attribute_map(&table, &table), Some(vec![Some(0), None, Some(2), Some(3)]));
    // a dropped attribute is never a match, even by name
    let renamed = [attr("time", 1184, false), attr("........pg.dropped.2........", 0, false)];
    assert_eq!(attribute_map(&table, &renamed), None);
    // the same name of another type, or a column the rows lack: no map
    assert_eq!(attribute_map(&table, &[attr("v", 20, false)]), None);
    assert_eq!(attribute_map(&table, &[attr("note", 25, false)]), None);
}
