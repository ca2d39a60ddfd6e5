//! The project's Dockerfile, built for real: on a local base image (Debian's
//! PostgreSQL 15 in the layout of timescale/timescaledb-ha, with this machine's
//! TimescaleDB copied in; tests/image/base-image.sh), with the release package
//! scripts/package.sh made passed in as a prebuilt package (the from-source builder
//! stage needs a Rust toolchain download, which this machine cannot make). A container
//! of the image runs CREATE EXTENSION backfill_ext and a backfill through add_job, on
//! TimescaleDB's own scheduler, and the result is checked inside it.

use backfill_ext_client_tests::config::{event_config, literal};
use backfill_ext_client_tests::fixtures::event_data_sql;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PACKAGE: Option<&str> = option_env!("BACKFILL_PACKAGE");
const DOCKER: &str = "/usr/bin/docker";
const BASE: &str = "backfill_ext-test-base:pg15";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker(args: &[&str]) -> String {
    ok(
        Command::new(DOCKER).args(args).env("DOCKER_BUILDKIT", "1").output().unwrap(),
        &format!("docker {args:?}"),
    )
}

/// psql inside the container; one value per line, unaligned.
fn psql(container: &str, sql: &str) -> String {
    docker(&[
        "exec",
        container,
        "psql",
        "-h",
        "/tmp",
        "-U",
        "postgres",
        "-X",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ])
}

/// Removes what the test made (a container or an image) however the test ends.
struct Remove(&'static str, String);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = Command::new(DOCKER).args([self.0, "-f", &self.1]).output();
    }
}

/// The ids of the engine's build cache records; None where the engine cannot say.
fn build_cache() -> Option<Vec<String>> {
    let out = Command::new(DOCKER)
        .args(["system", "df", "-v", "--format", "{{range .BuildCache}}{{.ID}}\n{{end}}"])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    })
}

/// Removes, however the test ends (after the image is gone), the build cache records
/// its build made: those the engine did not have when the test started (a build of
/// another client's on the same engine meanwhile would lose its records too). With
/// the vfs storage driver every record is a full copy of its layers (the base's 470
/// MB, not the size `docker system df` reports), and the engine's cache collection,
/// going by the reported sizes, never removes them.
struct RemoveBuildCache(Vec<String>);

impl Drop for RemoveBuildCache {
    fn drop(&mut self) {
        // a record goes only once nothing built on it is left, so a pass per layer
        for _ in 0..10 {
            let made: Vec<String> = build_cache()
                .unwrap_or_default()
                .into_iter()
                .filter(|id| !self.0.contains(id))
                .collect();
            if made.is_empty() {
                break;
            }
            for id in made {
                let _ = Command::new(DOCKER)
                    .args(["builder", "prune", "-af", "--filter", &format!("id={id}")])
                    .output();
            }
        }
    }
}

/// The local base image, and the release package's path inside the build context.
fn base_image_and_package(repo: &Path) -> String {
    ok(
        Command::new("bash")
            .arg(repo.join("tests/image/base-image.sh"))
            .arg(BASE)
            .output()
            .unwrap(),
        "base-image.sh",
    );
    Path::new(PACKAGE.unwrap())
        .strip_prefix(&repo)
        .expect("the package is inside the build context")
        .to_str()
        .unwrap()
        .to_string()
}

/// The Dockerfile built with the prebuilt package: the image is the base plus the
/// extension's files, and nothing of the builder.
fn build_image(repo: &Path, package: &str, tag: &str) {
    docker(&[
        "build",
        "--network",
        "none",
        "--build-arg",
        &format!("BASE_IMAGE={BASE}"),
        "--build-arg",
        "PG_MAJOR=15",
        "--build-arg",
        "PACKAGE_FROM=prebuilt",
        "--build-arg",
        &format!("PACKAGE={package}"),
        "-t",
        tag,
        repo.to_str().unwrap(),
    ]);
    let added = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        tag,
        "sh",
        "-c",
        "ls \
        /usr/lib/postgresql/15/lib/backfill_ext.so \
        /usr/share/postgresql/15/extension/backfill_ext.control; command -v cargo || true",
    ]);
    assert_eq!(added.lines().count(), 2, "{added}");
}

/// Waits until PostgreSQL accepts connections in the container `name`.
fn wait_for_postgres(name: &str) {
    let start = Instant::now();
    while Command::new(DOCKER)
        .args(["exec", name, "pg_isready", "-h", "/tmp", "-U", "postgres"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        let logs = || {
            let o = Command::new(DOCKER).args(["logs", name]).output().unwrap();
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
        };
        assert_eq!(
            docker(&["inspect", "-f", "{{.State.Running}}", name]),
            "true",
            "the container stopped: {}",
            logs()
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "PostgreSQL did not start in the container: {}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A backfill through add_job, on TimescaleDB's own scheduler: waits until the job has
/// run once, and succeeded.
fn backfill_through_add_job(name: &str) {
    psql(name, "CREATE EXTENSION timescaledb; CREATE EXTENSION backfill_ext;");
    psql(name, &event_data_sql(3, 5, 10, 0));
    psql(
        name,
        "INSERT INTO backfill_event_data SELECT t, 9, 1 FROM \
         generate_series('2024-01-02'::timestamptz, '2024-01-03'::timestamptz - interval '1 \
         minute', interval '10 minutes') t;
         INSERT INTO backfill_event_data SELECT time, device_id, 7 FROM event_data WHERE device_id \
         = 1 LIMIT 10;",
    );
    let job = psql(
        name,
        &format!(
            "SELECT add_job('backfill_on_schedule', '10 days', {}, now())",
            literal(&event_config(json!({})))
        ),
    );
    let start = Instant::now();
    loop {
        let stats = psql(
            name,
            &format!(
                "SELECT coalesce(total_successes, 0) || ' ' || \
            coalesce(total_failures, 0) FROM timescaledb_information.job_stats WHERE job_id = \
            {job}"
            ),
        );
        if stats == "1 0" {
            break;
        }
        assert!(
            !stats.ends_with(" 1"),
            "the job failed: {}",
            psql(
                name,
                "SELECT string_agg(err_message, '; ') FROM timescaledb_information.job_errors"
            )
        );
        assert!(start.elapsed() < Duration::from_secs(120), "the job did not run: {stats:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The job moved the staged rows, kept the existing ones and compressed every chunk again.
fn assert_the_backfill_moved_the_rows(name: &str) {
    assert_eq!(psql(name, "SELECT count(*) FROM backfill_event_data"), "0");
    assert_eq!(psql(name, "SELECT count(*) FROM event_data"), (3 * 144 * 5 + 144).to_string());
    assert_eq!(
        psql(name, "SELECT count(*) FROM event_data WHERE value = 7"),
        "0",
        "DO NOTHING kept the existing rows"
    );
    assert_eq!(
        psql(
            name,
            "SELECT count(*) FROM show_chunks('event_data') c WHERE \
            _timescaledb_functions.chunk_status(c) <> 1"
        ),
        "0",
        "every chunk compressed again"
    );
    assert_eq!(
        psql(name, "SELECT status || ' ' || rows_moved FROM backfill_runs"),
        "succeeded 154"
    );
}

#[test]
// one reason each, the first that applies
#[cfg_attr(
    not(debian_pg15),
    ignore = "the image test runs with PostgreSQL 15, the major of its Debian base image"
)]
#[cfg_attr(
    all(debian_pg15, not(docker)),
    ignore = "no Docker engine is running (scripts/test.sh starts dockerd where docker.io is \
        installed)"
)]
#[cfg_attr(
    all(debian_pg15, docker, not(package)),
    ignore = "no release package was built for this PostgreSQL (scripts/package.sh)"
)]
#[cfg_attr(
    all(debian_pg15, docker, package, not(timescaledb)),
    ignore = "no full TimescaleDB (timescaledb-tsl) is installed for this PostgreSQL"
)]
fn the_dockerfile_builds_an_image_that_backfills_through_add_job() {
    let repo = repo();
    let package = base_image_and_package(&repo);
    let tag = format!("backfill_ext-test:{}", std::process::id());
    let cache = RemoveBuildCache(build_cache().expect("docker system df lists the build cache"));
    let image = Remove("rmi", tag.clone());
    build_image(&repo, &package, &tag);

    let name = format!("backfill_ext_test_{}", std::process::id());
    let container = Remove("rm", name.clone());
    docker(&["run", "-d", "--network", "none", "--name", &name, &tag]);
    wait_for_postgres(&name);
    backfill_through_add_job(&name);
    assert_the_backfill_moved_the_rows(&name);

    // the test leaves nothing behind on the engine
    let before = cache.0.clone();
    drop((container, image, cache));
    assert!(
        Command::new(DOCKER).args(["image", "inspect", &tag]).output().unwrap().status.code()
            != Some(0),
        "the image is left"
    );
    let left: Vec<String> = build_cache()
        .expect("docker system df lists the build cache")
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert!(left.is_empty(), "build cache records of the test's build are left: {left:?}");
}
