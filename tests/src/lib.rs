//! A throwaway PostgreSQL cluster for client tests, the demo and the benchmark:
//! initdb in a temporary folder, a free port on 127.0.0.1, TimescaleDB (and pg_cron)
//! preloaded when installed, removed when dropped.

pub mod config;
pub mod fixtures;

/// Tests that need a full TimescaleDB: each function becomes a `#[test]` that is
/// ignored, with the reason, where none is installed for this PostgreSQL
/// (`cfg(timescaledb)`, set by build.rs), so it is reported as skipped, never as passed.
#[macro_export]
macro_rules! timescale_test {
    ($($(#[$attr:meta])* fn $name:ident() $body:block)*) => {$(
        $(#[$attr])*
        #[test]
        #[cfg_attr(
            not(timescaledb),
            ignore = "no full TimescaleDB (timescaledb-tsl) is installed for this PostgreSQL"
        )]
        fn $name() $body
    )*};
}

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use postgres::{Client, NoTls};

/// What `PG_CONFIG` (else `pg_config` on PATH) says for `flag` of the PostgreSQL under test.
pub fn pg_config(flag: &str) -> String {
    let out = Command::new(std::env::var("PG_CONFIG").unwrap_or_else(|_| "pg_config".into()))
        .arg(flag)
        .output()
        .expect("pg_config is on PATH (run scripts/setup.sh)");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Whether a full TimescaleDB (with its TSL part: compression, jobs) is installed.
pub fn timescale_installed() -> bool {
    let dir = pg_config("--pkglibdir");
    std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("timescaledb-tsl-"))
        })
        .unwrap_or(false)
}

/// A cluster with TimescaleDB preloaded. Tests that call it carry
/// `#[cfg_attr(not(timescaledb), ignore = …)]` (see build.rs), so they are reported as
/// skipped where no full TimescaleDB is installed; run anyway, they fail here.
pub fn timescale_cluster() -> Cluster {
    assert!(
        timescale_installed(),
        "no full TimescaleDB (timescaledb-tsl) is installed in {}",
        pg_config("--pkglibdir")
    );
    Cluster::start(Options { timescale: true, ..Default::default() })
}

/// Whether pg_cron is installed.
pub fn pg_cron_installed() -> bool {
    Path::new(&pg_config("--pkglibdir")).join("pg_cron.so").exists()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Options for a cluster.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Preload TimescaleDB when it is installed.
    pub timescale: bool,
    /// Preload pg_cron (for database `postgres`) when it is installed.
    pub pg_cron: bool,
    /// Extra postgresql.conf lines.
    pub extra_conf: Vec<String>,
    /// Run the programs of the PostgreSQL in this folder instead of `PG_CONFIG`'s.
    pub bindir: Option<PathBuf>,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    bindir: PathBuf,
    as_postgres: bool,
    pub timescale: bool,
    pub pg_cron: bool,
}

impl Cluster {
    pub fn start(opts: Options) -> Cluster {
        let bindir = opts.bindir.clone().unwrap_or_else(|| PathBuf::from(pg_config("--bindir")));
        let base = std::env::temp_dir().join("backfill_ext_clusters");
        std::fs::create_dir_all(&base).unwrap();
        let dir =
            base.join(format!("c{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = is_root();
        let mut c = Cluster {
            data: dir.join("data"),
            dir,
            port: free_port(),
            bindir,
            as_postgres,
            timescale: opts.timescale && timescale_installed(),
            pg_cron: opts.pg_cron && pg_cron_installed(),
        };
        if as_postgres {
            let _ = Command::new("chmod").args(["o+rx"]).arg(&base).status();
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&c.dir)
                .status()
                .unwrap();
            assert!(st.success());
        }
        c.pg(
            "initdb",
            &[
                "-D",
                c.data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        c.configure(opts.extra_conf);
        c.first_start();
        c
    }

    /// Writes the cluster's settings (and `extra_conf`) into its postgresql.conf.
    fn configure(&self, extra_conf: Vec<String>) {
        let mut preload = vec![];
        if self.timescale {
            preload.push("timescaledb");
        }
        if self.pg_cron {
            preload.push("pg_cron");
        }
        let mut conf = vec![
            format!("port = {}", self.port),
            "listen_addresses = '127.0.0.1'".into(),
            format!("unix_socket_directories = '{}'", self.dir.display()),
            format!("shared_preload_libraries = '{}'", preload.join(",")),
            "fsync = off".into(),
            // commits survive `pg_ctl stop -m immediate` (crash tests); fsync off only
            // skips flushes to disk, which a process crash does not need
            "synchronous_commit = on".into(),
            "full_page_writes = off".into(),
            "max_worker_processes = 24".into(),
            "max_connections = 50".into(),
            "timescaledb.telemetry_level = off".into(),
            "timescaledb.max_background_workers = 12".into(),
            "cron.database_name = 'postgres'".into(),
            "cron.use_background_workers = on".into(),
            "timezone = 'UTC'".into(),
            "log_min_messages = warning".into(),
        ];
        conf.extend(extra_conf);
        let path = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("\n# backfill_ext test cluster\n");
        text.push_str(&conf.join("\n"));
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }

    /// Starts the new cluster. Its port was free when chosen, but another test's cluster
    /// may take it before this one binds it: then it starts again on another port.
    fn first_start(&mut self) {
        for _ in 0..3 {
            if self.try_pg_ctl_start().0 {
                return;
            }
            let log = self.server_log();
            if !log.contains("could not bind")
                && !log.contains("could not create any TCP/IP sockets")
            {
                break;
            }
            self.port = free_port();
            let path = self.data.join("postgresql.conf");
            let text = std::fs::read_to_string(&path).unwrap() + &format!("port = {}\n", self.port);
            std::fs::write(&path, text).unwrap();
        }
        self.pg_ctl_start();
    }

    /// Whether `pg_ctl start` started the server, and what it said.
    fn try_pg_ctl_start(&self) -> (bool, String) {
        let log = self.dir.join("server.log");
        let args = [
            "-D",
            self.data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
        ];
        let out = self.cmd("pg_ctl").args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    }

    fn cmd(&self, prog: &str) -> Command {
        let exe = self.bindir.join(prog);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        // the server reports errors as users see them, without Rust backtraces
        c.env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
        c
    }

    fn pg(&self, prog: &str, args: &[&str]) {
        let out = self.cmd(prog).args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "{prog} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl_start(&mut self) {
        let (started, said) = self.try_pg_ctl_start();
        assert!(started, "pg_ctl start failed: {said}\nserver log:\n{}", self.server_log());
    }

    /// Stops the server: `fast`, `smart` or `immediate` (a crash).
    pub fn stop(&self, mode: &str) {
        self.pg(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-m", mode, "-w", "-t", "60", "stop"],
        );
    }

    pub fn restart(&mut self, mode: &str) {
        self.stop(mode);
        self.pg_ctl_start();
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn conn_string(&self, db: &str) -> String {
        self.conn_string_as(db, "postgres")
    }

    pub fn conn_string_as(&self, db: &str, user: &str) -> String {
        format!("host=127.0.0.1 port={} user={user} dbname={db} connect_timeout=10", self.port)
    }

    /// A connection as another role (the cluster trusts local connections).
    pub fn connect_as(&self, db: &str, user: &str) -> Client {
        Client::connect(&self.conn_string_as(db, user), NoTls)
            .unwrap_or_else(|e| panic!("connect to {db} as {user}: {e}"))
    }

    pub fn connect(&self, db: &str) -> Client {
        Client::connect(&self.conn_string(db), NoTls)
            .unwrap_or_else(|e| panic!("connect to {db}: {e}"))
    }

    /// A connection that records every NOTICE it receives.
    pub fn connect_with_notices(&self, db: &str) -> (Client, Notices) {
        let notices: Notices = Arc::new(Mutex::new(Vec::new()));
        let sink = notices.clone();
        let mut cfg: postgres::Config = self.conn_string(db).parse().unwrap();
        cfg.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
        (cfg.connect(NoTls).unwrap(), notices)
    }

    /// Runs a client program of this PostgreSQL (pg_dump, pg_restore, ...) against the
    /// cluster as postgres; returns its standard output, panicking when it fails.
    pub fn client_program(&self, prog: &str, args: &[&str]) -> String {
        let port = self.port.to_string();
        let out = self
            .cmd(prog)
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{prog} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Waits until TimescaleDB's scheduler has run `job` (up to 2 minutes) and returns its
    /// successes; panics with the job's errors and the server log if a run failed.
    pub fn wait_for_job(&self, c: &mut Client, job: i32) -> i64 {
        let (ok, failed) = wait_for_job_run(c, job, Duration::from_secs(120));
        if failed > 0 {
            let errs: Vec<String> = c
                .query(
                    "SELECT coalesce(err_message, '') FROM timescaledb_information.job_errors \
                    WHERE job_id = $1",
                    &[&job],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            panic!("job {job} failed: {errs:?}\n{}", self.server_log());
        }
        ok
    }

    /// Creates a database with backfill_ext (and TimescaleDB when preloaded).
    pub fn create_db(&self, name: &str) -> Client {
        let mut admin = self.connect("postgres");
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).unwrap();
        let mut c = self.connect(name);
        if self.timescale {
            c.batch_execute(&create_timescaledb()).unwrap();
        }
        c.batch_execute("CREATE EXTENSION backfill_ext").unwrap();
        c
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if std::env::var_os("BACKFILL_KEEP_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `CREATE EXTENSION timescaledb`, of the version `BACKFILL_TIMESCALEDB_VERSION` names
/// where it is set (one installed beside the default: `scripts/test.sh
/// --timescaledb-minimum`).
pub fn create_timescaledb() -> String {
    match std::env::var("BACKFILL_TIMESCALEDB_VERSION") {
        Ok(v) if !v.is_empty() => {
            format!("CREATE EXTENSION timescaledb VERSION '{}'", v.replace('\'', "''"))
        }
        _ => "CREATE EXTENSION timescaledb".to_string(),
    }
}

pub type Notices = Arc<Mutex<Vec<String>>>;

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`.
/// Waits up to `timeout` until TimescaleDB's scheduler has run `job` at least once;
/// returns its successes and failures.
pub fn wait_for_job_run(c: &mut Client, job: i32, timeout: Duration) -> (i64, i64) {
    wait_for(&format!("the scheduler to run job {job}"), timeout, || {
        let r = c
            .query_opt(
                "SELECT total_successes, total_failures FROM timescaledb_information.job_stats \
                 WHERE job_id = $1",
                &[&job],
            )
            .unwrap()?;
        let (s, f): (i64, i64) = (r.get(0), r.get(1));
        (s + f > 0).then_some((s, f))
    })
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One value of a one-row, one-column query.
pub fn scalar<T: for<'a> postgres::types::FromSql<'a>>(c: &mut Client, sql: &str) -> T {
    c.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// The SQLSTATE and message of a failed statement.
pub fn expect_error(c: &mut Client, sql: &str) -> (String, String, Option<String>) {
    match c.batch_execute(sql) {
        Ok(()) => panic!("expected an error from: {sql}"),
        Err(e) => {
            let db = e.as_db_error().unwrap_or_else(|| panic!("not a database error: {e}"));
            (db.code().code().to_string(), db.message().to_string(), db.hint().map(str::to_string))
        }
    }
}

/// The pid of a `CALL backfill_on_schedule` waiting on `waiting_on` (`PgSleep`: stopped
/// by the pause hook), waited for up to a minute.
pub fn pid_of_run(c: &mut Client, waiting_on: &str) -> i32 {
    wait_for(&format!("the run to stop at {waiting_on}"), Duration::from_secs(60), || {
        c.query_opt(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CALL backfill_on_schedule%' AND \
             wait_event = $1",
            &[&waiting_on],
        )
        .unwrap()
        .map(|r| r.get(0))
    })
}

/// The status of every run in the history, in run order.
pub fn run_statuses(c: &mut Client) -> Vec<String> {
    c.query("SELECT status FROM backfill_runs ORDER BY run_id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
