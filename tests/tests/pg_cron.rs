//! The pg_cron tier: where TimescaleDB's job API is absent, schedule_backfill uses
//! pg_cron, a real scheduler from Debian's packages (scripts/setup.sh installs it).

use backfill_ext_client_tests::{expect_error, scalar, wait_for, Client, Cluster, Options};
use std::time::Duration;

/// A partitioned `metrics` with 1000 rows, and `late` with 400 new rows and 10 duplicates.
fn create_tables(c: &mut Client) {
    c.batch_execute(
        "CREATE EXTENSION pg_cron; CREATE EXTENSION backfill_ext;
         CREATE TABLE metrics (ts timestamptz NOT NULL, k int NOT NULL, v int, PRIMARY KEY (k, \
         ts)) PARTITION BY RANGE (ts);
         CREATE TABLE metrics_2024 PARTITION OF metrics FOR VALUES FROM ('2024-01-01') TO \
         ('2025-01-01');
         CREATE TABLE metrics_2025 PARTITION OF metrics FOR VALUES FROM ('2025-01-01') TO \
         ('2026-01-01');
         INSERT INTO metrics SELECT timestamptz '2024-01-01' + i * interval '1 hour', 1, i FROM \
         generate_series(0, 999) i;
         CREATE TABLE late (LIKE metrics);
         INSERT INTO late SELECT timestamptz '2024-06-01' + i * interval '1 day', 2, i FROM \
         generate_series(0, 399) i;
         INSERT INTO late SELECT ts, k, -1 FROM metrics LIMIT 10;",
    )
    .unwrap();
}

/// A schedule pg_cron cannot express is refused; a minute's schedule becomes a pg_cron job,
/// named in a notice and in `cron.job`. Returns the job's id.
fn schedule_with_pg_cron(cl: &Cluster, c: &mut Client) -> i32 {
    let (code, msg, _) =
        expect_error(c, "SELECT schedule_backfill('late', 'metrics', '7 minutes')");
    assert_eq!(code, "22023", "{msg}");
    let (mut c2, notices) = cl.connect_with_notices("postgres");
    let job: i32 = c2
        .query_one("SELECT schedule_backfill('late', 'metrics', '1 minute')", &[])
        .unwrap()
        .get(0);
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains(&format!("scheduled with pg_cron as job {job}"))),
        "{:?}",
        notices.lock().unwrap()
    );
    assert_eq!(
        scalar::<String>(c, &format!("SELECT schedule FROM cron.job WHERE jobid = {job}")),
        "*/1 * * * *"
    );
    job
}

/// The run pg_cron started moved the late rows, kept the existing ones on conflicts and
/// recorded its counts.
fn assert_the_run_moved_the_rows(c: &mut Client) {
    wait_for("pg_cron to run the backfill (once a minute)", Duration::from_secs(150), || {
        (scalar::<i64>(
            c,
            "SELECT count(*) FROM backfill_runs WHERE status = 'succeeded' AND rows_moved > 0",
        ) > 0)
            .then_some(())
    });
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM late"), 0);
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM metrics"), 1400);
    assert_eq!(
        scalar::<i64>(c, "SELECT count(*) FROM metrics WHERE v = -1"),
        0,
        "duplicates kept the existing rows"
    );
    let r = c
        .query_one(
            "SELECT rows_moved, conflicts, destination FROM backfill_runs WHERE rows_moved > 0",
            &[],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, String>(2)),
        (410, 10, "public.metrics".to_string())
    );
}

#[test]
#[cfg_attr(not(pg_cron), ignore = "pg_cron is not installed for this PostgreSQL")]
fn schedule_backfill_uses_pg_cron_on_a_partitioned_table() {
    let cl = Cluster::start(Options { pg_cron: true, ..Default::default() });
    // pg_cron lives in the database cron.database_name names: 'postgres' here
    let mut c = cl.connect("postgres");
    create_tables(&mut c);
    let job = schedule_with_pg_cron(&cl, &mut c);
    assert_the_run_moved_the_rows(&mut c);
    // pg_cron marks its run succeeded once the procedure has returned, a moment after the run's
    // history commits
    wait_for("pg_cron to record the run as succeeded", Duration::from_secs(30), || {
        let ok: i64 = scalar(
            &mut c,
            &format!(
                "SELECT count(*) FROM cron.job_run_details WHERE \
            jobid = {job} AND status = 'succeeded'"
            ),
        );
        (ok >= 1).then_some(())
    });
    c.batch_execute(&format!("SELECT unschedule_backfill({job})")).unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM cron.job"), 0);
}

#[test]
fn without_any_scheduler_the_error_names_both() {
    let cl = Cluster::start(Options::default());
    let mut c = cl.connect("postgres");
    c.batch_execute(
        "CREATE EXTENSION backfill_ext; CREATE TABLE d (ts timestamptz NOT NULL); \
        CREATE TABLE s (LIKE d);",
    )
    .unwrap();
    let (code, msg, hint) = expect_error(&mut c, "SELECT schedule_backfill('s', 'd')");
    assert_eq!(code, "55000");
    assert_eq!(msg, "backfill_ext: no job scheduler is available in this database");
    let hint = hint.unwrap();
    assert!(hint.contains("add_job") && hint.contains("pg_cron"), "{hint}");
}
