//! The benchmark: backfill_ext against TimescaleDB's own DML on five shapes of
//! backfill (`workload`), each from the same starting state (a template database), each
//! checked for the same end state (`check`). Prints a table. Run it with
//! `bash bench/run.sh`.
//!
//! Methods:
//!   backfill_ext  CALL backfill_on_schedule(...)
//!   (a) insert    INSERT ... [ON CONFLICT] into the hypertable, then recompress the
//!                 chunks it left partial
//!   (b) no limit  the same with timescaledb.max_tuples_decompressed_per_dml_transaction
//!                 = 0 (sparse, dense and mixed only)
//!   (c) decompress  decompress the affected chunks, INSERT ... [ON CONFLICT], compress
//!   (d) direct compress  TimescaleDB's direct compression of an INSERT sorted by device
//!                 and time (a hypertable without a unique key only)
//!   backfill_ext, workers 1  with --session-memory: the run in the calling session,
//!                 its backend's memory read after its first and its last chunk
//!
//! Measured per run: time; peak extra disk (the database's files and the temporary
//! files, summed every 5 ms); temporary-file bytes (`pg_stat_database.temp_bytes`);
//! WAL bytes; the peak RSS of the session's backend or of any of backfill_ext's
//! background workers; and, from the run history, how long backfill_ext's chunk steps
//! spent in each phase.

mod check;
mod measure;
mod workload;

use backfill_ext_client_tests::{scalar, timescale_installed, Cluster, Options};
use check::expectations;
use measure::{run_once, Outcome};
use std::time::Instant;
use workload::{Method, Workload};

struct Args {
    days: i64,
    devices: i64,
    runs: usize,
    /// Extra config keys for backfill_ext's runs (JSON members, e.g. `"workers": 2`).
    config: String,
    /// The workloads measured (`Workload::family`); all by default.
    workloads: Vec<String>,
    /// Whether backfill_ext also runs with `"workers": 1`, its memory followed.
    session_memory: bool,
}

const USAGE: &str = "usage: bench [--days N] [--devices N] [--scale N] [--runs N] \
    [--workloads sparse,dense,mixed,bulk,outage] [--session-memory] \
    [--config '\"key\": value, ...']\n\
    (defaults: 30 days, 50 devices, 3 runs, every workload; --scale multiplies the devices)";

fn args() -> Args {
    let mut a = Args {
        days: 30,
        devices: 50,
        runs: 3,
        config: String::new(),
        workloads: vec![],
        session_memory: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned();
        let v = next.as_deref().and_then(|s| s.parse::<i64>().ok());
        match (argv[i].as_str(), v, next) {
            ("--session-memory", _, _) => {
                a.session_memory = true;
                i += 1;
                continue;
            }
            ("--days", Some(v), _) => a.days = v,
            ("--devices", Some(v), _) => a.devices = v,
            ("--runs", Some(v), _) => a.runs = v as usize,
            // 10x the default: ten times the devices (30 days x 500 devices)
            ("--scale", Some(v), _) if v > 0 => a.devices *= v,
            ("--config", _, Some(c)) => a.config = c,
            ("--workloads", _, Some(w)) => a.workloads = w.split(',').map(String::from).collect(),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

/// Builds the template database (`workload::template_sql`): the hypertables, all chunks
/// compressed, a compression policy on each, and the staging tables.
fn build_template(cl: &Cluster, a: &Args, workloads: &[Workload]) {
    cl.connect("postgres").batch_execute("CREATE DATABASE base").unwrap();
    let mut c = cl.connect("base");
    let t = Instant::now();
    c.batch_execute(&workload::template_sql(a.days, a.devices)).unwrap();
    c.batch_execute("VACUUM ANALYZE").unwrap();
    let rows: i64 = scalar(&mut c, "SELECT count(*) FROM ev");
    let chunk_bytes: i64 = scalar(
        &mut c,
        "SELECT max(before_compression_total_bytes)::int8 FROM chunk_compression_stats('ev')",
    );
    println!(
        "dataset: {} days x {} devices at 1-minute resolution = {rows} rows in {} daily chunks, \
         all compressed; uncompressed chunk: {}; the same without 06:00-12:00 each day, with \
         and without a unique key, for bulk history and outage replays ({:.0} s to build)",
        a.days,
        a.devices,
        a.days,
        human(chunk_bytes),
        t.elapsed().as_secs_f64()
    );
    for w in workloads {
        let n: i64 = scalar(&mut c, &format!("SELECT count(*) FROM {}", w.staging()));
        println!("  {:<26} {n} staging rows into {}, {}", w.name(), w.dest(), w.action());
    }
    println!();
}

fn human(bytes: i64) -> String {
    let b = bytes as f64;
    if b.abs() >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    } else if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.0} kB", b / 1024.0)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn start_cluster() -> Cluster {
    let cl = Cluster::start(Options {
        timescale: true,
        // no job scheduler: nothing else runs during a measurement, and the template has no
        // sessions
        extra_conf: vec![
            "timescaledb.max_background_workers = 0".into(),
            "shared_buffers = '1GB'".into(),
            "max_wal_size = '8GB'".into(),
        ],
        ..Default::default()
    });
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let pg: String =
        scalar(&mut cl.connect("postgres"), "SELECT current_setting('server_version')");
    let ts: String = scalar(
        &mut cl.connect("postgres"),
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'",
    );
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("machine: {cores} cores ({cpu}), PostgreSQL {pg}, TimescaleDB {ts}");
    cl
}

fn main() {
    let a = args();
    if !timescale_installed() {
        eprintln!(
            "benchmark: no full TimescaleDB (timescaledb-tsl) is installed for this \
            PostgreSQL; nothing measured"
        );
        std::process::exit(2);
    }
    let workloads: Vec<Workload> = workload::ALL
        .into_iter()
        .filter(|w| a.workloads.is_empty() || a.workloads.iter().any(|f| f == w.family()))
        .collect();
    let cl = start_cluster();
    println!("median of {} runs\n", a.runs);
    build_template(&cl, &a, &workloads);
    if !a.config.is_empty() {
        println!("backfill_ext config: {}\n", a.config);
    }
    println!(
        "| workload | method | seconds | vs best alternative | peak extra disk | temporary files | \
         WAL | peak RSS of a backend | error |\n|---|---|---:|---:|---:|---:|---:|---:|---|"
    );
    let (mut phases, mut memory) = (vec![], vec![]);
    for w in workloads {
        let expect = expectations(&cl, w, a.days);
        let mut rows = vec![];
        for m in Method::for_workload(w, a.session_memory) {
            let outcomes: Vec<Outcome> =
                (0..a.runs).map(|_| run_once(&cl, m, w, &expect, &a.config)).collect();
            let median_run = median_outcome(&outcomes);
            match m {
                Method::Backfill => phases.push((w, median_run.phases.clone())),
                Method::Session => memory.extend(outcomes.iter().map(|o| (w, o.memory_kb))),
                _ => {}
            }
            rows.push(summary(m, &outcomes));
        }
        print_rows(w, rows);
    }
    print_phases(&phases);
    print_memory(&memory);
}

/// The run of median time.
fn median_outcome(outcomes: &[Outcome]) -> &Outcome {
    let mut by_time: Vec<&Outcome> = outcomes.iter().collect();
    by_time.sort_by(|x, y| x.seconds.partial_cmp(&y.seconds).unwrap());
    by_time[by_time.len() / 2]
}

/// A workload's lines of the table, each method's time also as a ratio to the fastest
/// alternative's.
fn print_rows(w: Workload, rows: Vec<Summary>) {
    let best_alt = rows
        .iter()
        .filter(|r| !r.method.is_backfill() && r.error.is_none())
        .map(|r| r.seconds)
        .fold(f64::INFINITY, f64::min);
    for r in rows {
        let ratio = if r.error.is_some() || !best_alt.is_finite() {
            "-".to_string()
        } else {
            format!("{:.2}x", r.seconds / best_alt)
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            w.name(),
            r.method.name(),
            if r.error.is_some() { "-".to_string() } else { format!("{:.2}", r.seconds) },
            ratio,
            human(r.peak),
            human(r.temp),
            human(r.wal),
            human(r.rss * 1024),
            r.error.unwrap_or_default()
        );
    }
}

/// The session runs' backend memory after their first and their last chunk.
fn print_memory(memory: &[(Workload, Option<(i64, i64)>)]) {
    if memory.is_empty() {
        return;
    }
    println!("\nbackfill_ext with \"workers\": 1, its backend's private memory (RssAnon):\n");
    println!("| workload | after the first chunk | after the last chunk | growth |");
    println!("|---|---:|---:|---:|");
    for (w, m) in memory {
        match m {
            Some((first, last)) => println!(
                "| {} | {} | {} | {} |",
                w.name(),
                human(first * 1024),
                human(last * 1024),
                human((last - first) * 1024)
            ),
            None => println!("| {} | - | - | - |", w.name()),
        }
    }
}

/// A method's runs of one workload: medians of time and WAL, maxima of disk and memory.
struct Summary {
    method: Method,
    seconds: f64,
    peak: i64,
    temp: i64,
    wal: i64,
    rss: i64,
    error: Option<String>,
}

fn summary(method: Method, outcomes: &[Outcome]) -> Summary {
    Summary {
        method,
        seconds: median(outcomes.iter().map(|o| o.seconds).collect()),
        peak: outcomes.iter().map(|o| o.peak_disk).max().unwrap_or(0),
        temp: outcomes.iter().map(|o| o.temp_bytes).max().unwrap_or(0),
        wal: median(outcomes.iter().map(|o| o.wal as f64).collect()) as i64,
        rss: outcomes.iter().map(|o| o.rss_kb).max().unwrap_or(0),
        error: outcomes.iter().find_map(|o| o.error.clone()),
    }
}

/// backfill_ext's chunk steps by strategy, from the run history of the median run:
/// the mean time a chunk spent reading (decompressing, merging), writing, compressing.
fn print_phases(phases: &[(Workload, Vec<(String, f64, f64, f64)>)]) {
    println!("\nbackfill_ext per chunk (median run; ms, mean over the chunks of a strategy):\n");
    println!(
        "| workload | strategy | chunks | read and merge | write | compress \
        |\n|---|---|---:|---:|---:|---:|"
    );
    for (w, steps) in phases {
        let mut strategies: Vec<&String> = steps.iter().map(|s| &s.0).collect();
        strategies.sort();
        strategies.dedup();
        for st in strategies {
            let of: Vec<_> = steps.iter().filter(|s| &s.0 == st).collect();
            let n = of.len() as f64;
            let mean = |f: &dyn Fn(&(String, f64, f64, f64)) -> f64| {
                of.iter().map(|s| f(s)).sum::<f64>() / n
            };
            println!(
                "| {} | {st} | {} | {:.0} | {:.0} | {:.0} |",
                w.name(),
                of.len(),
                mean(&|s| s.1),
                mean(&|s| s.2),
                mean(&|s| s.3)
            );
        }
    }
}
