//! What the PostgreSQL under test (`PG_CONFIG`, else `pg_config` on PATH) has
//! installed, as cfgs, so that a test needing something missing is reported by the
//! test runner as ignored (skipped), with the reason, and never as passed:
//! - `timescaledb`: a full TimescaleDB (its TSL library: compression, jobs);
//! - `columnstore_api`: that TimescaleDB also has the 2.18+ columnstore names
//!   (`add_columnstore_policy`, `convert_to_columnstore`);
//! - `create_table_with`: and `CREATE TABLE … WITH (tsdb.hypertable, tsdb.columnstore)`;
//! - `pg_cron`: pg_cron;
//! - `previous_release`: the previous release's install script is installed next to
//!   the current one (scripts/previous-release.sh), for the upgrade test; its version
//!   (scripts/versions.sh) is passed as `BACKFILL_PREVIOUS_VERSION`;
//! - `package`: `BACKFILL_PACKAGE` names a release package built for this PostgreSQL;
//! - `old_timescaledb`: a full TimescaleDB older than backfill_ext's minimum (2.23) is
//!   installed beside the default one; its version is `BACKFILL_OLD_TIMESCALEDB`;
//! - `icu`: the PostgreSQL under test was built with ICU (nondeterministic collations);
//! - `docker`: `BACKFILL_DOCKER=1`, a Docker engine answers; `debian_pg15`: the
//!   PostgreSQL under test is Debian's 15, the one the image test's base image has.

use std::path::{Path, PathBuf};
use std::process::Command;

fn pg_config(flag: &str) -> Option<String> {
    let exe = std::env::var("PG_CONFIG").unwrap_or_else(|_| "pg_config".into());
    let out = Command::new(exe).arg(flag).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn version_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts =
        version.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// The TimescaleDB version the tests create (`BACKFILL_TIMESCALEDB_VERSION`, else the
/// default) and its install script, read for the names it creates.
fn timescale_install_script(share: &Path) -> Option<(String, String)> {
    let control = std::fs::read_to_string(share.join("extension/timescaledb.control")).ok()?;
    let default = control.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "default_version").then(|| v.trim().trim_matches('\'').to_string())
    })?;
    let version = std::env::var("BACKFILL_TIMESCALEDB_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or(default);
    let script =
        std::fs::read_to_string(share.join(format!("extension/timescaledb--{version}.sql")))
            .ok()?;
    Some((version, script))
}

fn main() {
    for cfg in [
        "timescaledb",
        "columnstore_api",
        "create_table_with",
        "pg_cron",
        "previous_release",
        "package",
        "docker",
        "old_timescaledb",
        "debian_pg15",
        "icu",
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    // a Docker engine that answers (scripts/test.sh starts one and says so), for the image test
    println!("cargo::rerun-if-env-changed=BACKFILL_DOCKER");
    if std::env::var("BACKFILL_DOCKER").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=docker");
    }
    let previous = versions();
    println!("cargo::rerun-if-env-changed=PG_CONFIG");
    println!("cargo::rerun-if-env-changed=BACKFILL_TIMESCALEDB_VERSION");
    println!("cargo::rerun-if-env-changed=PATH");
    let (Some(lib), Some(share)) = (pg_config("--pkglibdir"), pg_config("--sharedir")) else {
        return;
    };
    let (lib, share) = (PathBuf::from(lib), PathBuf::from(share));
    if pg_config("--configure").is_some_and(|c| !c.contains("--without-icu")) {
        println!("cargo::rustc-cfg=icu");
    }
    if lib == Path::new("/usr/lib/postgresql/15/lib") {
        println!("cargo::rustc-cfg=debian_pg15");
    }
    // a TimescaleDB or pg_cron installed later rebuilds the tests
    println!("cargo::rerun-if-changed={}", lib.display());
    println!("cargo::rerun-if-changed={}", share.join("extension").display());
    timescaledb(&lib, &share);
    if lib.join("pg_cron.so").exists() {
        println!("cargo::rustc-cfg=pg_cron");
    }
    if share.join(format!("extension/backfill_ext--{previous}.sql")).exists() {
        println!("cargo::rustc-cfg=previous_release");
    }
}

/// The extension's version and the previous release's (returned), and the release
/// package for this PostgreSQL (scripts/package.sh) where one was made.
fn versions() -> String {
    let manifest = std::fs::read_to_string("../Cargo.toml").expect("the extension's Cargo.toml");
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = ").map(|v| v.trim_matches('"').to_string()))
        .unwrap();
    println!("cargo::rerun-if-changed=../Cargo.toml");
    println!("cargo::rustc-env=BACKFILL_EXT_VERSION={version}");
    // a release package for this PostgreSQL (scripts/package.sh), for the package test
    println!("cargo::rerun-if-env-changed=BACKFILL_PACKAGE");
    if let Ok(pkg) = std::env::var("BACKFILL_PACKAGE") {
        if Path::new(&pkg).is_file() {
            println!("cargo::rerun-if-changed={pkg}");
            println!("cargo::rustc-cfg=package");
            println!("cargo::rustc-env=BACKFILL_PACKAGE={pkg}");
        }
    }
    println!("cargo::rerun-if-changed=../scripts/versions.sh");
    let previous = std::fs::read_to_string("../scripts/versions.sh")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PREVIOUS_VERSION=").map(|v| v.trim_matches('"').to_string())
            })
        })
        .expect("scripts/versions.sh names PREVIOUS_VERSION");
    println!("cargo::rustc-env=BACKFILL_PREVIOUS_VERSION={previous}");
    previous
}

/// A full TimescaleDB in `lib` and `share`: the TimescaleDB tier, its API's generation,
/// and an older TimescaleDB beside it.
fn timescaledb(lib: &Path, share: &Path) {
    let tsl = std::fs::read_dir(lib)
        .map(|d| {
            d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("timescaledb-tsl-"))
        })
        .unwrap_or(false);
    if !tsl {
        return;
    }
    println!("cargo::rustc-cfg=timescaledb");
    // an older TimescaleDB installed side by side (its install script and library),
    // below backfill_ext's minimum (src/timescale/capabilities.rs): the newest such one
    let old = std::fs::read_dir(share.join("extension"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let v = name.strip_prefix("timescaledb--")?.strip_suffix(".sql")?.to_string();
            (!v.contains("--")
                && lib.join(format!("timescaledb-tsl-{v}.so")).exists()
                && !version_at_least(&v, (2, 23)))
            .then_some(v)
        })
        .max_by_key(|v| v.split('.').map(|p| p.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>());
    if let Some(v) = old {
        println!("cargo::rustc-cfg=old_timescaledb");
        println!("cargo::rustc-env=BACKFILL_OLD_TIMESCALEDB={v}");
    }
    if let Some((version, script)) = timescale_install_script(share) {
        if script.contains("add_columnstore_policy") {
            println!("cargo::rustc-cfg=columnstore_api");
            // the WITH clause is parsed in C, so nothing in SQL tells whether it
            // takes tsdb.columnstore: it does from 2.21 on
            if version_at_least(&version, (2, 21)) {
                println!("cargo::rustc-cfg=create_table_with");
            }
        }
    }
}
