//! One timed run of a method on a fresh copy of the template, with what it cost: time,
//! peak extra disk, temporary files, WAL, peak memory, and for a session run its
//! backend's memory after its first and its last chunk.

use crate::check::{check, Expect};
use crate::workload::{statements, Method, Workload};
use backfill_ext_client_tests::{scalar, Client, Cluster};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Outcome {
    pub seconds: f64,
    pub peak_disk: i64,
    pub temp_bytes: i64,
    pub wal: i64,
    pub rss_kb: i64,
    pub error: Option<String>,
    /// backfill_ext's chunk steps: (strategy, read and merge ms, write ms, compress ms).
    pub phases: Vec<(String, f64, f64, f64)>,
    /// A session run's backend memory (kB, private: `RssAnon`) after its first chunk and
    /// after its last.
    pub memory_kb: Option<(i64, i64)>,
}

/// A field of `/proc/<pid>/status`, in kB.
fn status_kb(pid: i32, field: &str) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
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
        .map(|pid| status_kb(pid, "VmHWM:"))
        .max()
        .unwrap_or(0)
}

/// The database's temporary-file bytes so far (its backends' statistics flushed).
fn temp_bytes(c: &mut Client) -> i64 {
    c.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
    scalar(c, "SELECT temp_bytes FROM pg_stat_database WHERE datname = 'run'")
}

/// What a watcher thread saw while a method ran.
#[derive(Default)]
struct Watched {
    peak_disk: AtomicI64,
    workers_kb: AtomicI64,
    /// The backend's private memory each time the run history had another chunk.
    memory_by_chunks: Mutex<Vec<(i64, i64)>>,
}

/// Watches the run: the database's files summed every 5 ms, backfill_ext's background
/// workers' peak memory every 20 ms, and where `follow` is set, the backend's memory
/// each time another chunk is in the run history (read every 20 ms).
fn watch(
    cl: &Cluster,
    dirs: Vec<std::path::PathBuf>,
    pid: i32,
    follow: bool,
) -> (Arc<AtomicBool>, Arc<Watched>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Watched::default());
    let mut history = follow.then(|| cl.connect("run"));
    let (stop2, seen2) = (stop.clone(), seen.clone());
    let handle = std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            seen2.peak_disk.fetch_max(files_bytes(&dirs), Ordering::Relaxed);
            if i % 4 == 0 {
                let kb = workers_hwm_kb("backfill_ext worker");
                seen2.workers_kb.fetch_max(kb, Ordering::Relaxed);
                if let Some(h) = history.as_mut() {
                    let chunks: i64 = scalar(h, "SELECT count(*) FROM _backfill_ext.run_chunk");
                    let mut m = seen2.memory_by_chunks.lock().unwrap();
                    if chunks > 0 && m.last().is_none_or(|(n, _)| *n < chunks) {
                        m.push((chunks, status_kb(pid, "RssAnon:")));
                    }
                }
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (stop, seen, handle)
}

/// Runs `statements`, stopping at the first error (its SQLSTATE and message).
fn run_statements(c: &mut Client, statements: Vec<String>) -> Option<String> {
    for sql in statements {
        if let Err(e) = c.batch_execute(&sql) {
            return Some(match e.as_db_error() {
                Some(db) => format!("{} {}", db.code().code(), db.message()),
                None => e.to_string(),
            });
        }
    }
    None
}

/// backfill_ext's chunk steps, from the run history.
fn phases(c: &mut Client) -> Vec<(String, f64, f64, f64)> {
    c.query(
        "SELECT strategy, decompress_ms, insert_ms, recompress_ms FROM _backfill_ext.run_chunk",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// A fresh copy of the template; its data folders (its own and the temporary files').
fn fresh_database(cl: &Cluster, admin: &mut Client) -> Vec<std::path::PathBuf> {
    admin.batch_execute("DROP DATABASE IF EXISTS run").unwrap();
    admin.batch_execute("CREATE DATABASE run TEMPLATE base").unwrap();
    admin.batch_execute("CHECKPOINT").unwrap();
    let dboid: u32 =
        admin.query_one("SELECT oid FROM pg_database WHERE datname = 'run'", &[]).unwrap().get(0);
    vec![cl.data.join("base").join(dboid.to_string()), cl.data.join("base").join("pgsql_tmp")]
}

/// One timed run on a fresh copy of the template, then the correctness check.
pub fn run_once(cl: &Cluster, m: Method, w: Workload, expect: &Expect, config: &str) -> Outcome {
    let mut admin = cl.connect("postgres");
    let dirs = fresh_database(cl, &mut admin);
    let mut c = cl.connect("run");
    let pid: i32 = scalar(&mut c, "SELECT pg_backend_pid()");
    let size0 = files_bytes(&dirs);
    let temp0 = temp_bytes(&mut admin);
    let wal0: String = scalar(&mut c, "SELECT pg_current_wal_insert_lsn()::text");
    let (stop, seen, watcher) = watch(cl, dirs, pid, m == Method::Session);
    let t = Instant::now();
    let mut error = run_statements(&mut c, statements(m, w, config));
    let seconds = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let rss_kb = status_kb(pid, "VmHWM:").max(seen.workers_kb.load(Ordering::Relaxed));
    let mut memory = seen.memory_by_chunks.lock().unwrap().clone();
    if m == Method::Session && memory.is_empty() {
        // every chunk in one transaction, committed too close to the end to be seen
        // apart: the backend's memory after it is after the first chunk and the last
        memory.push((0, status_kb(pid, "RssAnon:")));
    }
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
        error = check(&mut c, w, expect).err().map(|p| format!("WRONG RESULT: {p}"));
    }
    let phases = if m.is_backfill() && error.is_none() { phases(&mut c) } else { vec![] };
    Outcome {
        seconds,
        peak_disk: seen.peak_disk.load(Ordering::Relaxed).max(size0) - size0,
        temp_bytes: temp,
        wal,
        rss_kb,
        error,
        phases,
        memory_kb: memory.first().zip(memory.last()).map(|(f, l)| (f.1, l.1)),
    }
}
