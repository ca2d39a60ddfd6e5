//! Client tests on plain PostgreSQL: the procedures over libpq against a real cluster,
//! with COMMIT between steps. They run on any machine with PostgreSQL 15.

use backfill_ext_client_tests::config::{call_backfill, call_backfill_job, config, literal};
use backfill_ext_client_tests::{expect_error, scalar, Client, Cluster, Options};
use serde_json::json;

fn cluster() -> Cluster {
    Cluster::start(Options::default())
}

const PLAIN: &str = "
    CREATE TABLE readings (id int NOT NULL, ts timestamptz NOT NULL, value double precision, note \
    text DEFAULT 'n/a',
                           PRIMARY KEY (id, ts));
    INSERT INTO readings SELECT i, timestamptz '2024-01-01' + i * interval '1 hour', i FROM \
    generate_series(1, 100) i;
    CREATE TABLE staging (value double precision, ts timestamptz NOT NULL, id int NOT NULL);
";

#[test]
fn plain_table_moves_by_column_name_and_keeps_duplicates_once() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute(PLAIN).unwrap();
    // 20 rows that exist already (ids 91..110 overlap 91..100) and 10 new ones
    c.batch_execute(
        "INSERT INTO staging (id, ts, value)
           SELECT i, timestamptz '2024-01-01' + i * interval '1 hour', -i FROM generate_series(91, \
           110) i;
         INSERT INTO staging (id, ts, value)
           SELECT i, timestamptz '2024-01-01' + i * interval '1 hour', -i FROM \
           generate_series(101, 110) i;",
    )
    .unwrap();
    c.batch_execute("CALL decompress_backfill('staging', 'readings')").unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM staging"), 0);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 110);
    // existing rows kept their values (DO NOTHING), new rows took staging's and the default note
    assert_eq!(scalar::<f64>(&mut c, "SELECT value FROM readings WHERE id = 95"), 95.0);
    assert_eq!(scalar::<f64>(&mut c, "SELECT value FROM readings WHERE id = 105"), -105.0);
    assert_eq!(scalar::<String>(&mut c, "SELECT note FROM readings WHERE id = 105"), "n/a");
}

#[test]
fn update_overwrites_and_restrict_stops_without_losing_rows() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute(PLAIN).unwrap();
    c.batch_execute(
        "INSERT INTO staging SELECT -i, timestamptz '2024-01-01' + i * interval '1 \
        hour', i FROM generate_series(1, 5) i",
    )
    .unwrap();
    let upsert = config("staging", "readings", json!({"on_conflict_action": "UPDATE"}));
    c.batch_execute(&call_backfill(&upsert)).unwrap();
    assert_eq!(scalar::<f64>(&mut c, "SELECT value FROM readings WHERE id = 3"), -3.0);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 100);

    c.batch_execute(
        "INSERT INTO staging SELECT 0, timestamptz '2024-01-01' + i * interval '1 \
        hour', i FROM generate_series(7, 8) i",
    )
    .unwrap();
    let (code, msg, hint) = expect_error(
        &mut c,
        &call_backfill(&config("staging", "readings", json!({"on_conflict_action": "RESTRICT"}))),
    );
    assert_eq!(code, "23505");
    assert!(msg.contains("key (id, ts)=(7,\"2024-01-01 07:00:00+00\") already exists"), "{msg}");
    assert!(hint.is_some());
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM staging"), 2, "rows stay in staging");
    assert_eq!(scalar::<f64>(&mut c, "SELECT value FROM readings WHERE id = 7"), 7.0);
}

#[test]
fn atomic_call_inside_a_transaction_block_does_the_same_work() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute(PLAIN).unwrap();
    c.batch_execute(
        "INSERT INTO staging SELECT 0, timestamptz '2025-01-01' + i * interval '1 \
        hour', i FROM generate_series(1, 10) i",
    )
    .unwrap();
    c.batch_execute("BEGIN; CALL decompress_backfill('staging', 'readings'); ROLLBACK;").unwrap();
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM staging"),
        10,
        "rolled back with the transaction"
    );
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 100);
    c.batch_execute("BEGIN; CALL decompress_backfill('staging', 'readings'); COMMIT;").unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM staging"), 0);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 110);
}

#[test]
fn partitioned_destination_and_quoted_names() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute(
        "CREATE SCHEMA \"Odd Schema\";
         CREATE TABLE \"Odd Schema\".\"Metrics\" (ts date NOT NULL, k int NOT NULL, v int, PRIMARY \
         KEY (k, ts)) PARTITION BY RANGE (ts);
         CREATE TABLE \"Odd Schema\".m2024 PARTITION OF \"Odd Schema\".\"Metrics\" FOR VALUES FROM \
         ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE \"Odd Schema\".m2025 PARTITION OF \"Odd Schema\".\"Metrics\" FOR VALUES FROM \
         ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE \"late \"\"rows\"\"\" (k int NOT NULL, ts date NOT NULL, v int);
         INSERT INTO \"late \"\"rows\"\"\" SELECT i, date '2024-06-01' + i * 2, i FROM \
         generate_series(1, 200) i;",
    )
    .unwrap();
    c.batch_execute(&call_backfill_job(
        1,
        &config(r#""late ""rows""""#, r#""Odd Schema"."Metrics""#, json!({})),
    ))
    .unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM \"Odd Schema\".\"Metrics\""), 200);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM \"Odd Schema\".m2025"), 94);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM \"late \"\"rows\"\"\""), 0);
    // a row no partition takes: PostgreSQL's error, with a hint saying nothing was lost
    c.batch_execute("INSERT INTO \"late \"\"rows\"\"\" VALUES (1, '2031-01-01', 1)").unwrap();
    let (code, msg, hint) = expect_error(
        &mut c,
        r#"CALL decompress_backfill('"late ""rows"""', '"Odd Schema"."Metrics"')"#,
    );
    assert_eq!(code, "23514", "{msg}");
    assert!(hint.unwrap().contains("its rows are still in the staging table"));
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM \"late \"\"rows\"\"\""), 1);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM \"Odd Schema\".\"Metrics\""), 200);
}

/// Configs `backfill_on_schedule` refuses: (config, SQLSTATE, part of the message).
fn bad_configs() -> Vec<(String, &'static str, &'static str)> {
    let readings = |staging: &str, extra| config(staging, "readings", extra);
    let columns = json!({"on_conflict_action": "UPDATE", "on_conflict_update_columns": ["nope"]});
    vec![
        (
            r#"{"destination_hypertable":"readings"}"#.to_string(),
            "22023",
            "config key \"staging_table\" is required",
        ),
        (
            readings("staging", json!({"stagin_table": "x"})),
            "22023",
            "unknown config key \"stagin_table\"",
        ),
        (
            readings("nope", json!({})),
            "42P01",
            "staging table \"nope\" (config key \"staging_table\") does not exist",
        ),
        (
            config("staging", "staging", json!({})),
            "22023",
            "staging table and destination are the same table",
        ),
        (readings("v", json!({})), "42809", "staging table public.v is not a table (a view)"),
        (readings("x; DROP TABLE readings", json!({})), "42602", "is not a valid table name"),
        (
            readings("staging", json!({"compression_job_push_interval": "soon"})),
            "22023",
            "config key \"compression_job_push_interval\" is not an interval",
        ),
        (
            readings("staging", columns),
            "42703",
            "column \"nope\" in \"on_conflict_update_columns\" does not exist",
        ),
    ]
}

/// A staging column the destination lacks, or of another type, is refused by name.
fn assert_mismatched_columns_are_rejected(c: &mut Client) {
    c.batch_execute("ALTER TABLE staging ADD COLUMN extra int").unwrap();
    let (code, msg, _) = expect_error(c, "CALL decompress_backfill('staging', 'readings')");
    assert_eq!(code, "42703");
    assert!(
        msg.contains(
            "column \"extra\" of staging table public.staging does not exist in \
        destination public.readings"
        ),
        "{msg}"
    );
    c.batch_execute(
        "DROP VIEW v; ALTER TABLE staging DROP COLUMN extra; ALTER TABLE staging ALTER \
        COLUMN value TYPE point USING point(value, 0)",
    )
    .unwrap();
    let (code, msg, _) = expect_error(c, "CALL decompress_backfill('staging', 'readings')");
    assert_eq!(code, "42804");
    assert!(
        msg.contains(
            "column \"value\" is point in staging table public.staging but double \
        precision in destination public.readings"
        ),
        "{msg}"
    );
}

#[test]
fn bad_configs_are_rejected_before_anything_changes() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute(PLAIN).unwrap();
    c.batch_execute(
        "INSERT INTO staging VALUES (1, '2030-01-01', 1); CREATE VIEW v AS SELECT * FROM staging;",
    )
    .unwrap();
    for (cfg, code, msg) in bad_configs() {
        let (got_code, got_msg, hint) = expect_error(&mut c, &call_backfill_job(1, &cfg));
        assert_eq!(got_code, code, "{cfg}: {got_msg}");
        assert!(got_msg.contains(msg), "{cfg}: {got_msg}");
        assert!(hint.is_some(), "{cfg} has a hint");
    }
    let (code, msg, _) = expect_error(&mut c, "CALL backfill_on_schedule(1, NULL)");
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("22004", "backfill_ext: the backfill job's config is NULL")
    );
    assert_mismatched_columns_are_rejected(&mut c);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM staging"), 1);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 100);
}

#[test]
fn procedures_land_in_the_extension_schema_and_state_in_its_own() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    let rows = c
        .query(
            "SELECT p.proname::text, n.nspname::text, p.prokind::text FROM pg_proc p JOIN \
            pg_namespace n ON n.oid = p.pronamespace
                WHERE p.proname IN ('backfill_on_schedule', 'decompress_backfill') ORDER BY 1",
            &[],
        )
        .unwrap();
    let got: Vec<(String, String, String)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        got,
        vec![
            ("backfill_on_schedule".into(), "public".into(), "p".into()),
            ("decompress_backfill".into(), "public".into(), "p".into())
        ]
    );
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM pg_tables WHERE schemaname = '_backfill_ext'"),
        6
    );
    // the procedures must be callable non-atomically: no SET clause, not SECURITY DEFINER
    assert_eq!(
        scalar::<i64>(
            &mut c,
            "SELECT count(*) FROM pg_proc WHERE proname IN \
            ('backfill_on_schedule', 'decompress_backfill') AND (prosecdef OR proconfig IS NOT \
            NULL)"
        ),
        0
    );
}

/// A run that fails, on a conflict or on its config, is recorded with its SQLSTATE,
/// and a failed run is the latest status.
fn assert_failures_are_recorded(c: &mut Client) {
    c.batch_execute(
        "INSERT INTO staging VALUES (0, timestamptz '2024-01-01' + interval '5 hours', 5)",
    )
    .unwrap();
    let (code, _, _) = expect_error(
        c,
        &call_backfill_job(
            8,
            &config("staging", "readings", json!({"on_conflict_action": "RESTRICT"})),
        ),
    );
    assert_eq!(code, "23505");
    let r =
        c.query_one("SELECT job_id, status, sqlstate, error FROM backfill_status", &[]).unwrap();
    assert_eq!(r.get::<_, Option<i32>>(0), Some(8));
    assert_eq!(r.get::<_, String>(1), "failed");
    assert_eq!(r.get::<_, Option<String>>(2).as_deref(), Some("23505"));
    assert!(r.get::<_, Option<String>>(3).unwrap().contains("already exists"));
    // a config that fails validation is recorded too
    let (code, _, _) = expect_error(
        c,
        "CALL backfill_on_schedule(9, \
        '{\"staging_table\":\"nope\",\"destination_hypertable\":\"readings\"}')",
    );
    assert_eq!(code, "42P01");
    let r =
        c.query_one("SELECT status, sqlstate FROM backfill_runs WHERE job_id = 9", &[]).unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, Option<String>>(1)),
        ("failed".to_string(), Some("42P01".to_string()))
    );
}

#[test]
fn run_history_records_successes_failures_and_the_plan() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute(PLAIN).unwrap();
    c.batch_execute(
        "INSERT INTO staging SELECT 0, timestamptz '2025-01-01' + i * interval '1 \
        hour', i FROM generate_series(1, 10) i",
    )
    .unwrap();
    let plan = c
        .query("SELECT chunk, staging_rows, action FROM backfill_plan('staging', 'readings')", &[])
        .unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].get::<_, Option<String>>(0), None);
    assert_eq!(plan[0].get::<_, i64>(1), 10);
    assert_eq!(plan[0].get::<_, String>(2), "insert");
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM staging"),
        10,
        "the plan changes nothing"
    );
    c.batch_execute(
        "CALL backfill_on_schedule(7, \
        '{\"staging_table\":\"staging\",\"destination_hypertable\":\"readings\"}')",
    )
    .unwrap();
    let r = c
        .query_one(
            "SELECT job_id, status, rows_moved, conflicts, staging, destination, finished \
            IS NOT NULL FROM backfill_status",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, Option<i32>>(0), Some(7));
    assert_eq!(r.get::<_, String>(1), "succeeded");
    assert_eq!(r.get::<_, i64>(2), 10);
    assert_eq!(r.get::<_, i64>(3), 0);
    assert_eq!(r.get::<_, String>(4), "public.staging");
    assert_eq!(r.get::<_, String>(5), "public.readings");
    assert!(r.get::<_, bool>(6));
    assert_failures_are_recorded(&mut c);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM backfill_runs"), 3);
}

#[test]
fn history_is_pruned_after_the_retention() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute(PLAIN).unwrap();
    // runs of readings 40 and 10 days old, and a 40-day-old run of another destination
    c.batch_execute(
        "CREATE TABLE other (LIKE readings);
         INSERT INTO _backfill_ext.run (job_id, started, finished, status, staging, destination, \
         destination_oid)
           VALUES (1, now() - interval '40 days', now() - interval '40 days', 'succeeded', \
           'public.staging', 'public.readings', 'readings'::regclass),
                  (2, now() - interval '10 days', now() - interval '10 days', 'succeeded', \
                  'public.staging', 'public.readings', 'readings'::regclass),
                  (9, now() - interval '40 days', now() - interval '40 days', 'succeeded', \
                  'public.s2', 'public.other', 'other'::regclass);",
    )
    .unwrap();
    c.batch_execute(
        "CALL backfill_on_schedule(3, \
        '{\"staging_table\":\"staging\",\"destination_hypertable\":\"readings\"}')",
    )
    .unwrap();
    let jobs: Vec<i32> = c
        .query("SELECT job_id FROM backfill_runs ORDER BY job_id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        jobs,
        [2, 3, 9],
        "the 40-day-old run of readings is pruned with the default 30 \
        days; another destination's is its own jobs' to prune"
    );
    let retention = config("staging", "readings", json!({"history_retention": "5 days"}));
    c.batch_execute(&call_backfill_job(4, &retention)).unwrap();
    let jobs: Vec<i32> = c
        .query("SELECT job_id FROM backfill_runs ORDER BY job_id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(jobs, [3, 4, 9]);
}

/// Job 2's run, which exited, is recorded as skipped, saying why; job 1's, as succeeded.
fn assert_the_second_run_was_skipped(c: &mut Client) {
    let runs: Vec<(i32, String, Option<String>)> = c
        .query("SELECT job_id, status, error FROM backfill_runs ORDER BY run_id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!((runs[0].0, runs[0].1.as_str()), (1, "succeeded"));
    assert_eq!((runs[1].0, runs[1].1.as_str()), (2, "skipped"));
    assert!(
        runs[1]
            .2
            .as_deref()
            .unwrap_or("")
            .contains("is working on public.readings; this run of job 2 waited 1 second"),
        "{runs:?}"
    );
    assert_eq!(scalar::<String>(c, "SELECT status FROM backfill_status"), "succeeded");
}

#[test]
fn a_second_run_waits_then_exits_naming_the_run_that_holds_the_destination() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute(PLAIN).unwrap();
    c.batch_execute(
        "INSERT INTO staging SELECT 0, timestamptz '2025-01-01' + i * interval '1 \
        hour', i FROM generate_series(1, 10) i",
    )
    .unwrap();
    // a blocker holds a row lock the first run needs, so it stays in flight
    let mut blocker = cl.connect("t");
    blocker.batch_execute("BEGIN; LOCK TABLE readings IN SHARE MODE;").unwrap();
    let conn = cl.conn_string("t");
    let first = std::thread::spawn(move || {
        let mut c1 =
            backfill_ext_client_tests::Client::connect(&conn, backfill_ext_client_tests::NoTls)
                .unwrap();
        c1.batch_execute(
            "CALL backfill_on_schedule(1, \
            '{\"staging_table\":\"staging\",\"destination_hypertable\":\"readings\"}')",
        )
    });
    backfill_ext_client_tests::wait_for(
        "the first run to start",
        std::time::Duration::from_secs(30),
        || {
            (scalar::<i64>(&mut c, "SELECT count(*) FROM backfill_runs WHERE status = 'running'")
                == 1)
                .then_some(())
        },
    );
    let (mut c2, notices) = cl.connect_with_notices("t");
    let t = std::time::Instant::now();
    c2.batch_execute(
        "CALL backfill_on_schedule(2, \
         '{\"staging_table\":\"staging\",\"destination_hypertable\":\"readings\",\"lock_wait\":\"1 \
         second\"}')",
    )
    .unwrap();
    assert!(t.elapsed() >= std::time::Duration::from_millis(900), "it waited lock_wait");
    let n = notices.lock().unwrap().clone();
    assert!(
        n.iter().any(|m| m.contains("(job 1, backend")
            && m.contains(
                "is working on \
        public.readings; this run of job 2 waited 1 second and exits without changes"
            )),
        "{n:#?}"
    );
    blocker.batch_execute("COMMIT").unwrap();
    first.join().unwrap().unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 110);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM staging"), 0);
    assert_the_second_run_was_skipped(&mut c);
}

#[test]
fn validation_refuses_what_would_double_rows_and_leaves_the_callers_settings() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute(PLAIN).unwrap();
    c.batch_execute(
        "CREATE TABLE nokey (id int, ts timestamptz NOT NULL, value double precision);
         CREATE TABLE nokey_staging (LIKE nokey);
         INSERT INTO nokey_staging VALUES (1, now(), 1);",
    )
    .unwrap();
    // without a unique key, RESTRICT cannot see a duplicate and kept staging rows would
    // be inserted again by every run: refused at registration and at run time
    for extra in [r#""on_conflict_action":"RESTRICT""#, r#""delete_from_staging":false"#] {
        let cfg = format!(
            r#"{{"staging_table":"nokey_staging","destination_hypertable":"nokey",{extra}}}"#
        );
        let (code, msg, hint) =
            expect_error(&mut c, &format!("SELECT backfill_check_config('{cfg}')"));
        assert_eq!(code, "42P10", "{msg}");
        assert!(
            msg.contains("needs a unique constraint, but destination public.nokey has none"),
            "{msg}"
        );
        assert!(hint
            .unwrap()
            .starts_with("add a primary key or unique constraint to the destination"));
        let (code, _, _) = expect_error(&mut c, &call_backfill(&cfg));
        assert_eq!(code, "42P10");
    }
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM nokey"), 0);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM nokey_staging"), 1);

    // validating in the caller's transaction leaves its lock_timeout and work_mem alone
    c.batch_execute("BEGIN; SET LOCAL lock_timeout = '7s'; SET LOCAL work_mem = '3MB'").unwrap();
    let settings = json!({"work_mem": "64MB", "lock_timeout": "1 minute"});
    let check = literal(&config("staging", "readings", settings));
    c.batch_execute(&format!("SELECT backfill_check_config({check})")).unwrap();
    c.query("SELECT * FROM backfill_plan('staging', 'readings')", &[]).unwrap();
    assert_eq!(scalar::<String>(&mut c, "SHOW lock_timeout"), "7s");
    assert_eq!(scalar::<String>(&mut c, "SHOW work_mem"), "3MB");
    c.batch_execute("COMMIT").unwrap();
}

#[test]
fn a_config_that_cannot_be_read_is_recorded_in_the_history() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute(PLAIN).unwrap();
    let (code, msg, _) = expect_error(
        &mut c,
        &call_backfill_job(
            7,
            &config("staging", "readings", json!({"on_conflict_acton": "UPDATE"})),
        ),
    );
    assert_eq!(code, "22023");
    let r = c
        .query_one(
            "SELECT status, sqlstate, error, staging, destination FROM backfill_runs \
        WHERE job_id = 7",
            &[],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, String>(1)),
        ("failed".to_string(), "22023".to_string())
    );
    assert_eq!(r.get::<_, String>(2), msg);
    assert_eq!(
        (r.get::<_, String>(3), r.get::<_, String>(4)),
        ("staging".to_string(), "readings".to_string())
    );
}

/// The build the client tests run against has the cargo feature test_hooks (scripts/
/// test.sh installs it so): loading the library registers the four settings the crash,
/// reliability and TimescaleDB tests set, and takes over values set before it was
/// loaded. A release build has none (tests/tests/package.rs).
#[test]
fn the_test_build_registers_its_test_hooks_as_settings() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute("ALTER DATABASE t SET backfill_ext.debug_pause_at = 'nowhere'").unwrap();
    let mut s = cl.connect("t");
    s.batch_execute("LOAD 'backfill_ext'").unwrap();
    let hooks: Vec<(String, String, String)> = s
        .query(
            "SELECT name, vartype, setting FROM pg_settings WHERE name LIKE \
            'backfill_ext.debug%' ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected = [
        ("backfill_ext.debug_always_route", "bool", "off"),
        ("backfill_ext.debug_pause_at", "string", "nowhere"),
        ("backfill_ext.debug_pause_seconds", "integer", "3600"),
        ("backfill_ext.debug_rewrite_on_disk", "bool", "off"),
    ]
    .map(|(n, t, v)| (n.to_string(), t.to_string(), v.to_string()));
    assert_eq!(
        hooks, expected,
        "the installed backfill_ext was built without --features \
        test_hooks (scripts/test.sh installs it with)"
    );

    // set in the session before a call loads the library: the registered setting takes it
    let mut s = cl.connect("t");
    s.batch_execute("SET backfill_ext.debug_always_route = on").unwrap();
    let (code, _, _) = expect_error(&mut s, "SELECT backfill_check_config('{}')");
    assert_eq!(code, "22023");
    let r = s
        .query_one(
            "SELECT vartype, setting FROM pg_settings WHERE name = \
        'backfill_ext.debug_always_route'",
            &[],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, String>(1)),
        ("bool".to_string(), "on".to_string())
    );
    expect_error(&mut s, "SET backfill_ext.debug_rewrite_on_disk = 'maybe'");
}
