//! The benchmark: backfill_ext against TimescaleDB's own DML on three shapes of
//! backfill, each from the same starting state (a template database), each checked
//! for the same end state. Prints a table. Run it with `bash bench/run.sh`.
//!
//! Methods:
//!   backfill_ext  CALL backfill_on_schedule(...)
//! (a) insert    INSERT ... ON CONFLICT into the hypertable, then recompress the chunks it left
//! partial
//!   (b) no limit  the same with timescaledb.max_tuples_decompressed_per_dml_transaction = 0
//!   (c) decompress  decompress the affected chunks, INSERT ... ON CONFLICT, compress them
//!
//! Measured per run: time; peak extra disk (the database's files and the temporary
//! files, summed every 5 ms); temporary-file bytes (`pg_stat_database.temp_bytes`);
//! WAL bytes; the peak RSS of the session's backend or of any of backfill_ext's
//! background workers; and, from the run history, how long backfill_ext's chunk steps
//! spent in each phase.

use backfill_ext_client_tests::{scalar, timescale_installed, Client, Cluster, Options};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    days: i64,
    devices: i64,
    runs: usize,
    /// Extra config keys for backfill_ext's runs (JSON members, e.g. `"workers": 2`).
    config: String,
}

fn args() -> Args {
    let mut a = Args { days: 30, devices: 50, runs: 3, config: String::new() };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).and_then(|s| s.parse::<i64>().ok());
        match (argv[i].as_str(), v) {
            ("--days", Some(v)) => a.days = v,
            ("--devices", Some(v)) => a.devices = v,
            ("--runs", Some(v)) => a.runs = v as usize,
            // 10x the default: ten times the devices (30 days x 500 devices)
            ("--scale", Some(v)) if v > 0 => a.devices *= v,
            ("--config", _) if argv.get(i + 1).is_some() => a.config = argv[i + 1].clone(),
            _ => {
                eprintln!(
                    "usage: bench [--days N] [--devices N] [--scale N] [--runs N] [--config \
                     '\"key\": value, ...']\n\
                     (defaults: 30 days, 50 devices, 3 runs; --scale multiplies the devices)"
                );
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Sparse,
    Dense,
    Mixed,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Sparse => "sparse",
            Workload::Dense => "dense upsert",
            Workload::Mixed => "mixed",
        }
    }
    fn staging(self) -> &'static str {
        match self {
            Workload::Sparse => "stage_sparse",
            Workload::Dense => "stage_dense",
            Workload::Mixed => "stage_mixed",
        }
    }
    fn action(self) -> &'static str {
        match self {
            Workload::Sparse => "NOTHING",
            _ => "UPDATE",
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Backfill,
    Insert,
    NoLimit,
    Decompress,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Backfill => "backfill_ext",
            Method::Insert => "(a) insert + recompress",
            Method::NoLimit => "(b) (a) without limit",
            Method::Decompress => "(c) decompress/insert/compress",
        }
    }
}

/// Builds the template database: the hypertable, all chunks compressed, a compression
/// policy, and one staging table per workload.
fn build_template(cl: &Cluster, a: &Args) {
    let mut admin = cl.connect("postgres");
    admin.batch_execute("CREATE DATABASE base").unwrap();
    let mut c = cl.connect("base");
    let t = Instant::now();
    c.batch_execute(&format!(
        "CREATE EXTENSION timescaledb; CREATE EXTENSION backfill_ext;
         CREATE TABLE ev (time timestamptz NOT NULL, device_id int NOT NULL, value double \
         precision NOT NULL,
                          PRIMARY KEY (device_id, time));
         SELECT create_hypertable('ev', 'time', chunk_time_interval => interval '1 day');
         ALTER TABLE ev SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id', \
         timescaledb.compress_orderby = 'time');
         INSERT INTO ev SELECT t, d, (d * 7 + extract(epoch FROM t)::bigint / 60) % 100
           FROM generate_series(timestamptz '2024-01-01', timestamptz '2024-01-01' + interval \
           '{days} days' - interval '1 minute', interval '1 minute') t,
                generate_series(1, {devices}) d;
         SELECT count(compress_chunk(c)) FROM show_chunks('ev') c;
         SELECT add_compression_policy('ev', interval '7 days');
         -- sparse: a new device every 10 minutes across all days, and 1,000 exact duplicates
         CREATE TABLE stage_sparse (LIKE ev);
         INSERT INTO stage_sparse SELECT t, {new_dev}, 1
           FROM generate_series(timestamptz '2024-01-01', timestamptz '2024-01-01' + interval \
           '{days} days' - interval '1 minute', interval '10 minutes') t;
         INSERT INTO stage_sparse SELECT time, device_id, value FROM ev WHERE device_id = \
         (extract(epoch FROM time)::bigint / 60) % {devices} + 1
           ORDER BY time DESC LIMIT 1000;
         -- dense: corrected values for every existing row of the first 5 days
         CREATE TABLE stage_dense (LIKE ev);
         INSERT INTO stage_dense SELECT time, device_id, value + 1000 FROM ev WHERE time < \
         timestamptz '2024-01-06';
         -- mixed: both, and rows that create new chunks
         CREATE TABLE stage_mixed (LIKE ev);
         INSERT INTO stage_mixed SELECT * FROM stage_sparse UNION ALL SELECT * FROM stage_dense;
         INSERT INTO stage_mixed SELECT t, d, 2
           FROM generate_series(timestamptz '2024-01-01' + interval '{days} days', timestamptz \
           '2024-01-01' + interval '{days_after} days' - interval '1 minute', interval '1 minute') \
           t,
                generate_series(1, 3) d;",
        days = a.days,
        devices = a.devices,
        new_dev = a.devices + 1,
        days_after = a.days + 2
    ))
    .unwrap();
    c.batch_execute("VACUUM ANALYZE").unwrap();
    let rows: i64 = scalar(&mut c, "SELECT count(*) FROM ev");
    let chunk_bytes: i64 = scalar(
        &mut c,
        "SELECT max(before_compression_total_bytes)::int8 FROM chunk_compression_stats('ev')",
    );
    println!(
        "dataset: {} days x {} devices at 1-minute resolution = {rows} rows in {} daily chunks, \
         all compressed; uncompressed chunk: {} ({:.0} s to build)",
        a.days,
        a.devices,
        a.days,
        human(chunk_bytes),
        t.elapsed().as_secs_f64()
    );
    for w in [Workload::Sparse, Workload::Dense, Workload::Mixed] {
        let n: i64 = scalar(&mut c, &format!("SELECT count(*) FROM {}", w.staging()));
        println!("  {:<13} {n} staging rows, ON CONFLICT {}", w.name(), w.action());
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

/// The SQL a method runs for a workload.
fn statements(m: Method, w: Workload, config: &str) -> Vec<String> {
    let st = w.staging();
    let on_conflict = match w.action() {
        "NOTHING" => "ON CONFLICT (device_id, time) DO NOTHING".to_string(),
        _ => "ON CONFLICT (device_id, time) DO UPDATE SET value = excluded.value".to_string(),
    };
    let recompress_partial = "SELECT count(compress_chunk(c)) FROM show_chunks('ev') c
                              WHERE _timescaledb_functions.chunk_status(c) & 1 = 1 AND \
                              _timescaledb_functions.chunk_status(c) & 10 <> 0"
        .to_string();
    let dedup = format!("SELECT DISTINCT ON (device_id, time) * FROM {st}");
    match m {
        Method::Backfill => vec![format!(
            "CALL backfill_on_schedule(NULL, \
             '{{\"staging_table\":\"{st}\",\"destination_hypertable\":\"ev\",\"on_conflict_action\":\"{}\"{}}}')",
            w.action(),
            if config.is_empty() { String::new() } else { format!(", {config}") }
        )],
        Method::Insert => vec![format!("INSERT INTO ev {dedup} \
            {on_conflict}"), recompress_partial, format!("TRUNCATE {st}")],
        Method::NoLimit => vec![
            "SET timescaledb.max_tuples_decompressed_per_dml_transaction = 0".into(),
            format!("INSERT INTO ev {dedup} {on_conflict}"),
            recompress_partial,
            format!("TRUNCATE {st}"),
        ],
        Method::Decompress => vec![
            format!(
                "CREATE TEMP TABLE affected AS SELECT format('%I.%I', ch.chunk_schema, \
                 ch.chunk_name)::regclass AS c
                 FROM timescaledb_information.chunks ch
                 WHERE ch.hypertable_name = 'ev' AND ch.is_compressed
                   AND EXISTS (SELECT 1 FROM {st} s WHERE s.time >= ch.range_start AND s.time < \
                   ch.range_end)"
            ),
            "SELECT count(decompress_chunk(c)) FROM affected".into(),
            format!("INSERT INTO ev {dedup} {on_conflict}"),
            "SELECT count(compress_chunk(c)) FROM affected".into(),
            format!("TRUNCATE {st}"),
        ],
    }
}

struct Outcome {
    seconds: f64,
    peak_disk: i64,
    temp_bytes: i64,
    wal: i64,
    rss_kb: i64,
    error: Option<String>,
    /// backfill_ext's chunk steps: (strategy, read and merge ms, write ms, compress ms).
    phases: Vec<(String, f64, f64, f64)>,
}

fn backend_hwm_kb(pid: i32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// Bytes of the files under `dirs` (a database's folder and the temporary files').
fn files_bytes(dirs: &[std::path::PathBuf]) -> i64 {
    let mut total = 0;
    for d in dirs {
        if let Ok(entries) = std::fs::read_dir(d) {
            for e in entries.flatten() {
                total +=
                    e.metadata().map(|m| if m.is_dir() { 0 } else { m.len() as i64 }).unwrap_or(0);
            }
        }
    }
    total
}

/// The peak RSS (kB) of the running processes whose command line contains `title`
/// (PostgreSQL titles a background worker with its type).
fn workers_hwm_kb(title: &str) -> i64 {
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0 };
    procs
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(title))
        })
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .map(backend_hwm_kb)
        .max()
        .unwrap_or(0)
}

/// The database's temporary-file bytes so far (its backends' statistics flushed).
fn temp_bytes(c: &mut Client) -> i64 {
    c.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
    scalar(c, "SELECT temp_bytes FROM pg_stat_database WHERE datname = 'run'")
}

/// One timed run on a fresh copy of the template, then the correctness check.
fn run_once(cl: &Cluster, m: Method, w: Workload, expect: &Expect, config: &str) -> Outcome {
    let mut admin = cl.connect("postgres");
    admin.batch_execute("DROP DATABASE IF EXISTS run").unwrap();
    admin.batch_execute("CREATE DATABASE run TEMPLATE base").unwrap();
    admin.batch_execute("CHECKPOINT").unwrap();
    let dboid: u32 =
        admin.query_one("SELECT oid FROM pg_database WHERE datname = 'run'", &[]).unwrap().get(0);
    let dirs =
        vec![cl.data.join("base").join(dboid.to_string()), cl.data.join("base").join("pgsql_tmp")];
    let mut c = cl.connect("run");
    let pid: i32 = scalar(&mut c, "SELECT pg_backend_pid()");
    let size0 = files_bytes(&dirs);
    let temp0 = temp_bytes(&mut admin);
    let wal0: String = scalar(&mut c, "SELECT pg_current_wal_insert_lsn()::text");
    // while the method runs: the database's files summed every 5 ms, and backfill_ext's
    // background workers' peak memory every 20 ms (each lives for a chunk transaction)
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicI64::new(size0));
    let workers_kb = Arc::new(AtomicI64::new(0));
    let watcher = {
        let (stop, peak, workers_kb, dirs) =
            (stop.clone(), peak.clone(), workers_kb.clone(), dirs.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(files_bytes(&dirs), Ordering::Relaxed);
                if i % 4 == 0 {
                    workers_kb.fetch_max(workers_hwm_kb("backfill_ext worker"), Ordering::Relaxed);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let t = Instant::now();
    let mut error = None;
    for sql in statements(m, w, config) {
        if let Err(e) = c.batch_execute(&sql) {
            error = Some(match e.as_db_error() {
                Some(db) => format!("{} {}", db.code().code(), db.message()),
                None => e.to_string(),
            });
            break;
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let rss_kb = backend_hwm_kb(pid).max(workers_kb.load(Ordering::Relaxed));
    // the session's statistics reach the shared ones when it ends
    drop(c);
    std::thread::sleep(Duration::from_millis(100));
    let temp = temp_bytes(&mut admin) - temp0;
    let mut c = cl.connect("run");
    let wal: i64 = scalar(
        &mut c,
        &format!("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '{wal0}')::int8"),
    );
    if error.is_none() {
        if let Err(problem) = check(&mut c, w, expect) {
            error = Some(format!("WRONG RESULT: {problem}"));
        }
    }
    let phases = if m == Method::Backfill && error.is_none() {
        c.query(
            "SELECT strategy, decompress_ms, insert_ms, recompress_ms FROM _backfill_ext.run_chunk",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
    } else {
        vec![]
    };
    Outcome {
        seconds,
        peak_disk: peak.load(Ordering::Relaxed) - size0,
        temp_bytes: temp,
        wal,
        rss_kb,
        error,
        phases,
    }
}

/// What every method must end with.
struct Expect {
    rows: i64,
    corrected: i64,
    /// End of the dataset's chunks: every chunk before it was compressed at the start.
    end: String,
}

fn expectations(cl: &Cluster, w: Workload, days: i64) -> Expect {
    let mut c = cl.connect("base");
    let st = w.staging();
    let rows: i64 = scalar(
        &mut c,
        &format!(
            "SELECT (SELECT count(*) FROM ev) + (SELECT count(*) FROM (SELECT DISTINCT device_id, \
             time FROM {st} s
                    WHERE NOT EXISTS (SELECT 1 FROM ev e WHERE e.device_id = s.device_id AND \
                    e.time = s.time)) x)"
        ),
    );
    let corrected: i64 = if w.action() == "UPDATE" {
        scalar(&mut c, &format!("SELECT count(*) FROM {st} WHERE value >= 1000"))
    } else {
        0
    };
    Expect {
        rows,
        corrected,
        end: format!("2024-01-01 00:00:00+00'::timestamptz + interval '{days} days"),
    }
}

fn check(c: &mut Client, w: Workload, e: &Expect) -> Result<(), String> {
    let rows: i64 = scalar(c, "SELECT count(*) FROM ev");
    if rows != e.rows {
        return Err(format!("{rows} rows, want {}", e.rows));
    }
    let left: i64 = scalar(c, &format!("SELECT count(*) FROM {}", w.staging()));
    if left != 0 {
        return Err(format!("{left} rows left in staging"));
    }
    let partial: i64 = scalar(
        c,
        "SELECT count(*) FROM show_chunks('ev') ch WHERE _timescaledb_functions.chunk_status(ch) & \
         1 = 1
                                                      AND _timescaledb_functions.chunk_status(ch) \
                                                      & 10 <> 0",
    );
    if partial != 0 {
        return Err(format!("{partial} partially compressed chunks"));
    }
    let decompressed: i64 = scalar(
        c,
        &format!(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'ev' AND \
             NOT is_compressed
                                                               AND range_end <= '{}'",
            e.end
        ),
    );
    if decompressed != 0 {
        return Err(format!("{decompressed} old chunks left decompressed"));
    }
    if e.corrected > 0 {
        let got: i64 = scalar(c, "SELECT count(*) FROM ev WHERE value >= 1000");
        if got != e.corrected {
            return Err(format!("{got} corrected values, want {}", e.corrected));
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
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
    let mut probe = cl.connect("postgres");
    let pg: String = scalar(&mut probe, "SELECT current_setting('server_version')");
    println!(
        "machine: {} cores ({cpu}), PostgreSQL {pg}; median of {} runs\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        a.runs
    );
    build_template(&cl, &a);
    if !a.config.is_empty() {
        println!("backfill_ext config: {}\n", a.config);
    }
    println!(
        "| workload | method | seconds | vs best alternative | peak extra disk | temporary files | \
         WAL | peak RSS of a backend | error |\n|---|---|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut phases = vec![];
    for w in [Workload::Sparse, Workload::Dense, Workload::Mixed] {
        let expect = expectations(&cl, w, a.days);
        let mut rows = vec![];
        for m in [Method::Insert, Method::NoLimit, Method::Decompress, Method::Backfill] {
            let outcomes: Vec<Outcome> =
                (0..a.runs).map(|_| run_once(&cl, m, w, &expect, &a.config)).collect();
            rows.push(summary(m, &outcomes));
            if m == Method::Backfill {
                // the phases of the median run
                let mut by_time: Vec<&Outcome> = outcomes.iter().collect();
                by_time.sort_by(|x, y| x.seconds.partial_cmp(&y.seconds).unwrap());
                phases.push((w, by_time[by_time.len() / 2].phases.clone()));
            }
        }
        let best_alt = rows
            .iter()
            .filter(|r| r.method != Method::Backfill && r.error.is_none())
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
    print_phases(&phases);
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
