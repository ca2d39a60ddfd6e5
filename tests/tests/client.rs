//! Client tests on plain PostgreSQL: the procedures over libpq against a real cluster,
//! with COMMIT between steps. They run on any machine with PostgreSQL 15.

use backfill_ext_client_tests::{expect_error, scalar, Cluster, Options};

fn cluster() -> Cluster {
    Cluster::start(Options::default())
}

const PLAIN: &str = "
    CREATE TABLE readings (id int NOT NULL, ts timestamptz NOT NULL, value double precision, note text DEFAULT 'n/a',
                           PRIMARY KEY (id, ts));
    INSERT INTO readings SELECT i, timestamptz '2024-01-01' + i * interval '1 hour', i FROM generate_series(1, 100) i;
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
           SELECT i, timestamptz '2024-01-01' + i * interval '1 hour', -i FROM generate_series(91, 110) i;
         INSERT INTO staging (id, ts, value)
           SELECT i, timestamptz '2024-01-01' + i * interval '1 hour', -i FROM generate_series(101, 110) i;",
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
    c.batch_execute("INSERT INTO staging SELECT -i, timestamptz '2024-01-01' + i * interval '1 hour', i FROM generate_series(1, 5) i")
        .unwrap();
    c.batch_execute("CALL backfill_on_schedule(NULL, '{\"staging_table\":\"staging\",\"destination_hypertable\":\"readings\",\"on_conflict_action\":\"UPDATE\"}')")
        .unwrap();
    assert_eq!(scalar::<f64>(&mut c, "SELECT value FROM readings WHERE id = 3"), -3.0);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 100);

    c.batch_execute("INSERT INTO staging SELECT 0, timestamptz '2024-01-01' + i * interval '1 hour', i FROM generate_series(7, 8) i")
        .unwrap();
    let (code, msg, hint) = expect_error(
        &mut c,
        "CALL backfill_on_schedule(NULL, '{\"staging_table\":\"staging\",\"destination_hypertable\":\"readings\",\"on_conflict_action\":\"RESTRICT\"}')",
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
    c.batch_execute("INSERT INTO staging SELECT 0, timestamptz '2025-01-01' + i * interval '1 hour', i FROM generate_series(1, 10) i")
        .unwrap();
    c.batch_execute("BEGIN; CALL decompress_backfill('staging', 'readings'); ROLLBACK;").unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM staging"), 10, "rolled back with the transaction");
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
         CREATE TABLE \"Odd Schema\".\"Metrics\" (ts date NOT NULL, k int NOT NULL, v int, PRIMARY KEY (k, ts)) PARTITION BY RANGE (ts);
         CREATE TABLE \"Odd Schema\".m2024 PARTITION OF \"Odd Schema\".\"Metrics\" FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE \"Odd Schema\".m2025 PARTITION OF \"Odd Schema\".\"Metrics\" FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE \"late \"\"rows\"\"\" (k int NOT NULL, ts date NOT NULL, v int);
         INSERT INTO \"late \"\"rows\"\"\" SELECT i, date '2024-06-01' + i * 2, i FROM generate_series(1, 200) i;",
    )
    .unwrap();
    c.batch_execute(
        r#"CALL backfill_on_schedule(1, '{"staging_table":"\"late \"\"rows\"\"\"","destination_hypertable":"\"Odd Schema\".\"Metrics\""}')"#,
    )
    .unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM \"Odd Schema\".\"Metrics\""), 200);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM \"Odd Schema\".m2025"), 94);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM \"late \"\"rows\"\"\""), 0);
    // a row no partition takes: PostgreSQL's error, with a hint saying nothing was lost
    c.batch_execute("INSERT INTO \"late \"\"rows\"\"\" VALUES (1, '2031-01-01', 1)").unwrap();
    let (code, msg, hint) = expect_error(&mut c, r#"CALL decompress_backfill('"late ""rows"""', '"Odd Schema"."Metrics"')"#);
    assert_eq!(code, "23514", "{msg}");
    assert!(hint.unwrap().contains("its rows are still in the staging table"));
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM \"late \"\"rows\"\"\""), 1);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM \"Odd Schema\".\"Metrics\""), 200);
}

#[test]
fn bad_configs_are_rejected_before_anything_changes() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    c.batch_execute(PLAIN).unwrap();
    c.batch_execute("INSERT INTO staging VALUES (1, '2030-01-01', 1); CREATE VIEW v AS SELECT * FROM staging;").unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (r#"{"destination_hypertable":"readings"}"#, "22023", "config key \"staging_table\" is required"),
        (r#"{"staging_table":"staging","destination_hypertable":"readings","stagin_table":"x"}"#, "22023", "unknown config key \"stagin_table\""),
        (r#"{"staging_table":"nope","destination_hypertable":"readings"}"#, "42P01", "staging table \"nope\" (config key \"staging_table\") does not exist"),
        (r#"{"staging_table":"staging","destination_hypertable":"staging"}"#, "22023", "staging table and destination are the same table"),
        (r#"{"staging_table":"v","destination_hypertable":"readings"}"#, "42809", "staging table public.v is not a table (a view)"),
        (r#"{"staging_table":"x; DROP TABLE readings","destination_hypertable":"readings"}"#, "42602", "is not a valid table name"),
        (r#"{"staging_table":"staging","destination_hypertable":"readings","compression_job_push_interval":"soon"}"#, "22023", "config key \"compression_job_push_interval\" is not an interval"),
        (r#"{"staging_table":"staging","destination_hypertable":"readings","on_conflict_action":"UPDATE","on_conflict_update_columns":["nope"]}"#, "42703", "column \"nope\" in \"on_conflict_update_columns\" does not exist"),
    ];
    for (cfg, code, msg) in cases {
        let (got_code, got_msg, hint) = expect_error(&mut c, &format!("CALL backfill_on_schedule(1, '{cfg}')"));
        assert_eq!(&got_code, code, "{cfg}: {got_msg}");
        assert!(got_msg.contains(msg), "{cfg}: {got_msg}");
        assert!(hint.is_some(), "{cfg} has a hint");
    }
    let (code, msg, _) = expect_error(&mut c, "CALL backfill_on_schedule(1, NULL)");
    assert_eq!((code.as_str(), msg.as_str()), ("22004", "backfill_ext: the backfill job's config is NULL"));
    c.batch_execute("ALTER TABLE staging ADD COLUMN extra int").unwrap();
    let (code, msg, _) = expect_error(&mut c, "CALL decompress_backfill('staging', 'readings')");
    assert_eq!(code, "42703");
    assert!(msg.contains("column \"extra\" of staging table public.staging does not exist in destination public.readings"), "{msg}");
    c.batch_execute("DROP VIEW v; ALTER TABLE staging DROP COLUMN extra; ALTER TABLE staging ALTER COLUMN value TYPE point USING point(value, 0)").unwrap();
    let (code, msg, _) = expect_error(&mut c, "CALL decompress_backfill('staging', 'readings')");
    assert_eq!(code, "42804");
    assert!(msg.contains("column \"value\" is point in staging table public.staging but double precision in destination public.readings"), "{msg}");
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM staging"), 1);
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 100);
}

#[test]
fn procedures_land_in_the_extension_schema_and_state_in_its_own() {
    let cl = cluster();
    let mut c = cl.create_db("t");
    let rows = c
        .query("SELECT p.proname::text, n.nspname::text, p.prokind::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE p.proname IN ('backfill_on_schedule', 'decompress_backfill') ORDER BY 1", &[])
        .unwrap();
    let got: Vec<(String, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        got,
        vec![
            ("backfill_on_schedule".into(), "public".into(), "p".into()),
            ("decompress_backfill".into(), "public".into(), "p".into())
        ]
    );
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM pg_tables WHERE schemaname = '_backfill_ext'"), 1);
    // the procedures must be callable non-atomically: no SET clause, not SECURITY DEFINER
    assert_eq!(
        scalar::<i64>(&mut c, "SELECT count(*) FROM pg_proc WHERE proname IN ('backfill_on_schedule', 'decompress_backfill') AND (prosecdef OR proconfig IS NOT NULL)"),
        0
    );
}
