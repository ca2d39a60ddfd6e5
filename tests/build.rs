//! What the PostgreSQL under test (`PG_CONFIG`, else `pg_config` on PATH) has
//! installed, as cfgs, so that a test needing something missing is reported by the
//! test runner as ignored (skipped), with the reason, and never as passed:
//! - `timescaledb`: a full TimescaleDB (its TSL library: compression, jobs);
//! - `columnstore_api`: that TimescaleDB also has the 2.18+ columnstore names
//!   (`add_columnstore_policy`, `convert_to_columnstore`);
//! - `create_table_with`: and `CREATE TABLE … WITH (tsdb.hypertable, tsdb.columnstore)`;
//! - `pg_cron`: pg_cron.

use std::path::{Path, PathBuf};
use std::process::Command;

fn pg_config(flag: &str) -> Option<String> {
    let exe = std::env::var("PG_CONFIG").unwrap_or_else(|_| "pg_config".into());
    let out = Command::new(exe).arg(flag).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The default TimescaleDB version and its install script, read for the names it creates.
fn timescale_install_script(share: &Path) -> Option<(String, String)> {
    let control = std::fs::read_to_string(share.join("extension/timescaledb.control")).ok()?;
    let version = control.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "default_version").then(|| v.trim().trim_matches('\'').to_string())
    })?;
    let script = std::fs::read_to_string(share.join(format!("extension/timescaledb--{version}.sql"))).ok()?;
    Some((version, script))
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(timescaledb)");
    println!("cargo::rustc-check-cfg=cfg(columnstore_api)");
    println!("cargo::rustc-check-cfg=cfg(create_table_with)");
    println!("cargo::rustc-check-cfg=cfg(pg_cron)");
    println!("cargo::rerun-if-env-changed=PG_CONFIG");
    println!("cargo::rerun-if-env-changed=PATH");
    let (Some(lib), Some(share)) = (pg_config("--pkglibdir"), pg_config("--sharedir")) else { return };
    let (lib, share) = (PathBuf::from(lib), PathBuf::from(share));
    // a TimescaleDB or pg_cron installed later rebuilds the tests
    println!("cargo::rerun-if-changed={}", lib.display());
    println!("cargo::rerun-if-changed={}", share.join("extension").display());
    let tsl = std::fs::read_dir(&lib)
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("timescaledb-tsl-")))
        .unwrap_or(false);
    if tsl {
        println!("cargo::rustc-cfg=timescaledb");
        if let Some((version, script)) = timescale_install_script(&share) {
            if script.contains("add_columnstore_policy") {
                println!("cargo::rustc-cfg=columnstore_api");
                // the WITH clause is parsed in C: its option names are in the library
                let so = std::fs::read(lib.join(format!("timescaledb-{version}.so"))).unwrap_or_default();
                if contains(&so, b"partition_column") && contains(&so, b"columnstore") {
                    println!("cargo::rustc-cfg=create_table_with");
                }
            }
        }
    }
    if lib.join("pg_cron.so").exists() {
        println!("cargo::rustc-cfg=pg_cron");
    }
}
