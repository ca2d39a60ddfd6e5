// #[pg_test]s: the SPI helpers (catalog lookups, validation, planning) on plain
// PostgreSQL, inside a transaction that is rolled back. Procedures that COMMIT, and
// everything that needs TimescaleDB, are tested from a client (tests/).

use crate::catalog;
use crate::config::Config;
use crate::run;
use pgrx::prelude::*;

fn setup_plain() {
    Spi::run(
        "CREATE SCHEMA \"My Schema\";
         CREATE TABLE \"My Schema\".\"Dest\" (ts timestamptz NOT NULL, id int NOT NULL, v float8, \
         PRIMARY KEY (id, ts));
         CREATE UNIQUE INDEX dest_v_idx ON \"My Schema\".\"Dest\" (v) INCLUDE (id);
         CREATE TABLE stage (v float8, id int, ts timestamptz);
         INSERT INTO stage SELECT i, i, '2024-01-01'::timestamptz + i * interval '1 hour' FROM \
         generate_series(1, 10) i;",
    )
    .unwrap();
}

#[pg_test]
fn resolves_quoted_and_unqualified_names() {
    setup_plain();
    let t = catalog::resolve_table("destination_hypertable", "destination", "\"My \
        Schema\".\"Dest\"");
    assert_eq!(t.name.schema, "My Schema");
    assert_eq!(t.name.name, "Dest");
    assert_eq!(t.relkind, "r");
    let s = catalog::resolve_table("staging_table", "staging table", "STAGE");
    assert_eq!(s.name.to_string(), "public.stage");
    assert_eq!(catalog::regclass_text(t.oid), "\"My Schema\".\"Dest\"");
}

#[pg_test(error = "backfill_ext: staging table \"missing\" (config key \"staging_table\") does not exist")]
fn missing_table_is_named() {
    catalog::resolve_table("staging_table", "staging table", "missing");
}

#[pg_test(error = "backfill_ext: config key \"staging_table\": \"a b\" is not a valid table name")]
fn invalid_name_is_rejected() {
    catalog::resolve_table("staging_table", "staging table", "a b");
}

#[pg_test]
fn reads_columns_keys_and_casts() {
    setup_plain();
    let t = catalog::resolve_table("d", "destination", "\"My Schema\".\"Dest\"");
    let cols = catalog::columns(t.oid);
    let names: Vec<_> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ts", "id", "v"]);
    assert_eq!(cols[0].type_name, "timestamp with time zone");
    assert!(cols[0].not_null && !cols[2].not_null);
    let keys = catalog::unique_keys(t.oid);
    assert_eq!(keys.len(), 2);
    assert!(keys[0].primary);
    assert_eq!(keys[0].columns, ["id", "ts"]);
    // INCLUDE columns are not part of the key
    assert_eq!(keys[1].name, "dest_v_idx");
    assert_eq!(keys[1].columns, ["v"]);
    assert!(catalog::castable(23, 20), "int4 -> int8 by assignment");
    assert!(catalog::castable(20, 23), "int8 -> int4 by assignment");
    assert!(!catalog::castable(600, 701), "point -> float8 no");
}

#[pg_test]
fn prepare_and_plan_a_plain_table() {
    setup_plain();
    let cfg = Config::from_json(Some(&serde_json::json!({
        "staging_table": "stage", "destination_hypertable": "\"My Schema\".\"Dest\"",
        "on_conflict_action": "UPDATE",
        "on_conflict_target": "(id, ts)"
    })))
    .unwrap();
    let prep = run::prepare(cfg);
    assert_eq!(prep.spec.columns, ["v", "id", "ts"]);
    assert_eq!(prep.spec.conflict.target, ["id", "ts"]);
    assert_eq!(prep.spec.conflict.update_columns, ["v"]);
    assert_eq!(prep.push_interval.text, "1 day");
    assert_eq!(prep.push_interval.seconds, 86400.0);
    let plan = run::make_plan(&prep);
    assert!(plan.steps.is_empty());
    assert_eq!(plan.rows_for_new_chunks, 10);
}

#[pg_test(error = "backfill_ext: config key \"compression_job_push_interval\" must not be negative, got \"-1 day\"")]
fn negative_interval_is_rejected() {
    catalog::check_interval("compression_job_push_interval", "-1 day");
}

#[pg_test(error = "backfill_ext: config key \"work_mem\" is not valid: \"lots\"")]
fn bad_work_mem_is_rejected() {
    setup_plain();
    let cfg = Config::from_json(Some(&serde_json::json!({
        "staging_table": "stage", "destination_hypertable": "\"My Schema\".\"Dest\"",
        "work_mem": "lots"
    })))
    .unwrap();
    run::prepare(cfg);
}

#[pg_test]
fn validation_leaves_jit_alone_and_the_run_turns_it_off() {
    setup_plain();
    Spi::run("SET LOCAL jit = on; SET LOCAL work_mem = '5MB'").unwrap();
    let cfg = Config::from_json(Some(&serde_json::json!({
        "staging_table": "stage", "destination_hypertable": "\"My Schema\".\"Dest\"",
        "work_mem": "7MB"
    })))
    .unwrap();
    let prep = run::prepare(cfg);
    let setting = |name: &str| {
        Spi::get_one::<String>(&format!("SELECT current_setting('{name}')")).unwrap().unwrap()
    };
    assert_eq!((setting("jit"), setting("work_mem")), ("on".into(), "5MB".into()));
    crate::step::settings::apply(&prep.cfg);
    assert_eq!((setting("jit"), setting("work_mem")), ("off".into(), "7MB".into()));
}
