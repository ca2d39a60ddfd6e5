// #[pg_test]s: the SPI helpers (catalog lookups, validation, planning) inside a
// transaction that is rolled back. Procedures that COMMIT are tested from a client.

use crate::catalog;
use crate::config::Config;
use crate::plan::TimeKind;
use crate::run;
use pgrx::prelude::*;

/// Whether a full TimescaleDB (its TSL library) is installed for this PostgreSQL.
pub fn timescale_installed() -> bool {
    let libdir = std::process::Command::new("pg_config")
        .arg("--pkglibdir")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    std::fs::read_dir(libdir)
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("timescaledb-tsl-")))
        .unwrap_or(false)
}

fn setup_plain() {
    Spi::run(
        "CREATE SCHEMA \"My Schema\";
         CREATE TABLE \"My Schema\".\"Dest\" (ts timestamptz NOT NULL, id int NOT NULL, v float8, PRIMARY KEY (id, ts));
         CREATE UNIQUE INDEX dest_v_idx ON \"My Schema\".\"Dest\" (v) INCLUDE (id);
         CREATE TABLE stage (v float8, id int, ts timestamptz);
         INSERT INTO stage SELECT i, i, '2024-01-01'::timestamptz + i * interval '1 hour' FROM generate_series(1, 10) i;",
    )
    .unwrap();
}

/// TimescaleDB is preloaded exactly when it is installed; a test that needs it and
/// finds it installed but not loaded fails rather than skipping.
fn timescale_available() -> bool {
    let loaded = Spi::get_one::<bool>("SELECT current_setting('shared_preload_libraries') LIKE '%timescaledb%'").unwrap().unwrap_or(false);
    assert_eq!(loaded, timescale_installed(), "TimescaleDB is installed but was not preloaded");
    loaded
}

#[pg_test]
fn resolves_quoted_and_unqualified_names() {
    setup_plain();
    let t = catalog::resolve_table("destination_hypertable", "destination", "\"My Schema\".\"Dest\"");
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
        "staging_table": "stage", "destination_hypertable": "\"My Schema\".\"Dest\"", "on_conflict_action": "UPDATE",
        "on_conflict_target": "(id, ts)"
    })))
    .unwrap();
    let prep = run::prepare(cfg);
    assert!(prep.ht.is_none() || !timescale_available());
    assert_eq!(prep.spec.columns, ["v", "id", "ts"]);
    assert_eq!(prep.spec.conflict.target, ["id", "ts"]);
    assert_eq!(prep.spec.conflict.update_columns, ["v"]);
    assert_eq!(prep.push_interval, "1 day");
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
        "staging_table": "stage", "destination_hypertable": "\"My Schema\".\"Dest\"", "work_mem": "lots"
    })))
    .unwrap();
    run::prepare(cfg);
}

#[pg_test]
fn null_times_are_refused_on_hypertables() {
    if !timescale_available() {
        pgrx::notice!("SKIPPED: null_times_are_refused_on_hypertables: TimescaleDB is not preloaded");
        return;
    }
    Spi::run(
        "CREATE EXTENSION IF NOT EXISTS timescaledb;
         CREATE TABLE h (time timestamptz NOT NULL, v int);
         SELECT create_hypertable('h', 'time');
         CREATE TABLE s (time timestamptz, v int);
         INSERT INTO s VALUES (NULL, 1), (now(), 2);",
    )
    .unwrap();
    let cfg = Config::from_json(Some(&serde_json::json!({"staging_table": "s", "destination_hypertable": "h"}))).unwrap();
    let err = crate::spi::in_subtransaction(std::panic::AssertUnwindSafe(|| {
        run::prepare(cfg);
    }))
    .expect_err("NULL times are refused");
    assert_eq!(crate::spi::caught_sqlstate(&err), "23502");
    assert_eq!(
        crate::spi::caught_message(&err),
        "backfill_ext: 1 rows of staging table public.s have NULL in the time column \"time\""
    );
}

#[pg_test]
fn plans_only_chunks_that_receive_rows() {
    if !timescale_available() {
        pgrx::notice!("SKIPPED: plans_only_chunks_that_receive_rows: TimescaleDB is not preloaded");
        return;
    }
    Spi::run(
        "CREATE EXTENSION IF NOT EXISTS timescaledb;
         CREATE TABLE h (time timestamp NOT NULL, d int NOT NULL, v int);
         SELECT create_hypertable('h', 'time', chunk_time_interval => interval '1 day');
         ALTER TABLE h SET (timescaledb.compress, timescaledb.compress_segmentby = 'd');
         INSERT INTO h SELECT t, 1, 0 FROM generate_series('2024-01-01'::timestamp, '2024-01-05'::timestamp - interval '1 hour', '1 hour') t;
         SELECT compress_chunk(c) FROM show_chunks('h') c ORDER BY c LIMIT 2;
         CREATE TABLE s (LIKE h);
         INSERT INTO s VALUES ('2024-01-02 05:00', 2, 0), ('2024-01-02 06:00', 2, 0), ('2024-01-04 23:59', 2, 0), ('2024-02-01', 2, 0);",
    )
    .unwrap();
    let prep = run::prepare(Config::from_json(Some(&serde_json::json!({"staging_table": "s", "destination_hypertable": "h"}))).unwrap());
    let ht = prep.ht.as_ref().expect("a hypertable");
    assert_eq!(ht.kind, TimeKind::Timestamp);
    assert_eq!(ht.time_column, "time");
    let plan = run::make_plan(&prep);
    let got: Vec<(i64, crate::plan::Strategy)> = plan.steps.iter().map(|s| (s.staging_rows, s.strategy)).collect();
    // day 2 is compressed (2 rows; no unique index, so nothing to decompress: direct),
    // day 4 is not (1 row); the February row makes a new chunk
    assert_eq!(got, [(2, crate::plan::Strategy::Direct), (1, crate::plan::Strategy::Insert)]);
    assert_eq!(plan.rows_for_new_chunks, 1);
}
