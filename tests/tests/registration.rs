//! Checks before anything changes: bad configs refused when a job is registered
//! (`schedule_backfill`, `add_job` with `backfill_check_config`), and runs refused on a
//! TimescaleDB lacking what they need, on NULL times or on an unreadable space constraint.

use backfill_ext_client_tests::config::{call_backfill, config, event_config, literal};
use backfill_ext_client_tests::fixtures::{
    assert_compressed_and_policy_as_before, stage_late_rows, state, timescale_dataset, Dataset,
    START,
};
use backfill_ext_client_tests::timescale_cluster as cluster;
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{expect_error, scalar, wait_for, Client};
use serde_json::json;
use std::time::Duration;

const CONFIG: &str =
    r#"{"staging_table":"backfill_event_data", "destination_hypertable":"event_data"}"#;

/// Configs `backfill_check_config` refuses at `add_job`: (config, SQLSTATE, part of the
/// message).
fn bad_configs() -> Vec<(String, &'static str, &'static str)> {
    vec![
        (
            r#"{"destination_hypertable":"event_data"}"#.to_string(),
            "22023",
            "config key \"staging_table\" is required",
        ),
        (
            event_config(json!({"on_conflict": "UPDATE"})),
            "22023",
            "unknown config key \"on_conflict\"",
        ),
        (
            config("no_such_table", "event_data", json!({})),
            "42P01",
            "staging table \"no_such_table\" (config key \"staging_table\") does not exist",
        ),
        (
            config("backfill_event_data", "plain_copy", json!({})),
            "42809",
            "destination public.plain_copy is not a hypertable",
        ),
        (
            config("odd", "event_data", json!({})),
            "42804",
            "column \"device_id\" is text in staging table public.odd but integer in \
             destination public.event_data",
        ),
    ]
}

timescale_test! {
    fn check_config_rejects_bad_configs_at_registration() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        c.batch_execute(
            "CREATE TABLE plain_copy (LIKE event_data); CREATE TABLE odd (time \
        timestamptz, device_id text);",
        )
        .unwrap();
        let add = |cfg: &str| {
            format!(
                "SELECT add_job('backfill_on_schedule', '10 days', config => '{cfg}', check_config \
            => 'backfill_check_config')"
            )
        };
        for (cfg, code, msg) in bad_configs() {
            let (got, m, hint) = expect_error(&mut c, &add(&cfg));
            assert_eq!(got, code, "{cfg}: {m}");
            assert!(m.contains(msg), "{cfg}: {m}");
            assert!(hint.is_some(), "{cfg}");
        }
        assert_eq!(
            scalar::<i64>(
                &mut c,
                "SELECT count(*) FROM timescaledb_information.jobs WHERE \
        proc_name = 'backfill_on_schedule'"
            ),
            0
        );
        // a good config registers; alter_job re-checks a new config
        let job: i32 = scalar(&mut c, &add(CONFIG));
        let (code, msg, _) = expect_error(
            &mut c,
            &format!(
                "SELECT alter_job({job}, config => {})",
                literal(&config("backfill_event_data", "nope", json!({})))
            ),
        );
        assert_eq!(code, "42P01", "{msg}");
        // and the scheduler runs it
        c.batch_execute(&format!(
            "INSERT INTO backfill_event_data (time, device_id, value) VALUES \
        ('{START}'::timestamptz + interval '1 hour 1 minute', 9, 1)"
        ))
        .unwrap();
        c.batch_execute(&format!("SELECT alter_job({job}, next_start => now())")).unwrap();
        wait_for("the scheduler to run the checked job", Duration::from_secs(120), || {
            (scalar::<i64>(&mut c, "SELECT count(*) FROM backfill_event_data") == 0).then_some(())
        });
        assert_eq!(scalar::<String>(&mut c, "SELECT status FROM backfill_status"), "succeeded");
    }
}

/// Job `job` runs `backfill_on_schedule` with the config asked for, checked by
/// `backfill_check_config`, named for its tables where TimescaleDB names jobs.
fn assert_registered_as_asked(c: &mut Client, job: i32) {
    let r = c
        .query_one(
            "SELECT proc_name::text, check_name::text, schedule_interval::text, \
         config->>'on_conflict_action',
                config->>'staging_table', config->>'destination_hypertable', \
                application_name::text
         FROM timescaledb_information.jobs WHERE job_id = $1",
            &[&job],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "backfill_on_schedule");
    assert_eq!(r.get::<_, String>(1), "backfill_check_config");
    assert_eq!(r.get::<_, String>(2), "1 day");
    assert_eq!(r.get::<_, String>(3), "UPDATE");
    assert_eq!(r.get::<_, String>(4), "backfill_event_data");
    assert_eq!(r.get::<_, String>(5), "event_data");
    // add_job names jobs from TimescaleDB 2.20 (job_name); before, the job keeps
    // TimescaleDB's own name
    let named: bool = scalar(
        c,
        "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = \
    'add_job' AND 'job_name' = ANY (proargnames))",
    );
    let expected = if named {
        "backfill backfill_event_data -> event_data".to_string()
    } else {
        format!("User-Defined Action [{job}]")
    };
    assert!(r.get::<_, String>(6).contains(&expected), "{}", r.get::<_, String>(6));
}

timescale_test! {
    fn schedule_backfill_registers_a_named_checked_job() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        let (mut c2, notices) = cl.connect_with_notices("t");
        let job: i32 = c2
            .query_one(
                "SELECT schedule_backfill('backfill_event_data', 'event_data', '1 day', \
             '{\"on_conflict_action\":\"UPDATE\"}', now() + interval '1 hour')",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(notices.lock().unwrap().iter().any(|n| n.contains(&format!(
            "scheduled with TimescaleDB's job scheduler as job \
                {job}"
        ))));
        assert_registered_as_asked(&mut c, job);
        // a bad extra key is refused before anything is registered
        let (code, msg, _) = expect_error(
            &mut c,
            "SELECT schedule_backfill('backfill_event_data', 'event_data', '1 day', \
             '{\"bogus\":1}')",
        );
        assert_eq!(code, "22023", "{msg}");
        c.batch_execute(&format!("SELECT unschedule_backfill({job})")).unwrap();
        assert_eq!(
            scalar::<i64>(
                &mut c,
                "SELECT count(*) FROM timescaledb_information.jobs WHERE \
        proc_name = 'backfill_on_schedule'"
            ),
            0
        );
        let (code, _, _) = expect_error(&mut c, &format!("SELECT unschedule_backfill({job})"));
        assert_eq!(code, "42704");
    }
}

timescale_test! {
    fn null_times_are_refused_on_hypertables() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        c.batch_execute(
            "CREATE TABLE h (time timestamptz NOT NULL, v int);
         SELECT create_hypertable('h', 'time');
         CREATE TABLE s (time timestamptz, v int);
         INSERT INTO s VALUES (NULL, 1), (now(), 2);",
        )
        .unwrap();
        let (code, msg, hint) = expect_error(&mut c, &call_backfill(&config("s", "h", json!({}))));
        assert_eq!(
            (code.as_str(), msg.as_str()),
            (
                "23502",
                "backfill_ext: 1 rows of staging table public.s have NULL in the time \
                 column \"time\""
            )
        );
        assert_eq!(
            hint.as_deref(),
            Some(r#"correct or delete them: DELETE FROM "public"."s" WHERE "time" IS NULL"#)
        );
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM s"), 2, "nothing moved");
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM h"), 0);
    }
}

timescale_test! {
    fn a_timescaledb_without_a_needed_capability_is_refused_before_anything_changes() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset::default());
        stage_late_rows(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        let version: String =
            scalar(&mut c, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'");
        // a TimescaleDB older than 2.12 has no _timescaledb_functions.chunk_status(regclass)
        c.batch_execute(
            "ALTER FUNCTION _timescaledb_functions.chunk_status(regclass) RENAME TO \
        chunk_status_hidden",
        )
        .unwrap();
        let err = c
            .batch_execute(&format!(
                "CALL backfill_on_schedule(NULL, \
            '{CONFIG}')"
            ))
            .unwrap_err();
        let db = err.as_db_error().unwrap();
        assert_eq!(db.code().code(), "0A000");
        assert_eq!(
            db.message(),
            format!(
                "backfill_ext: TimescaleDB {version} lacks what backfill_ext \
        needs (TimescaleDB 2.23 or later)"
            )
        );
        assert_eq!(
            db.detail(),
            Some("This TimescaleDB lacks: function _timescaledb_functions.chunk_status(regclass).")
        );
        assert!(
            db.hint().unwrap().starts_with("update TimescaleDB to 2.23 or later"),
            "{:?}",
            db.hint()
        );
        c.batch_execute(
            "ALTER FUNCTION _timescaledb_functions.chunk_status_hidden(regclass) RENAME TO \
        chunk_status",
        )
        .unwrap();
        assert_eq!(state(&mut c, "event_data", "backfill_event_data"), before, "nothing changed");
        assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
        // a check at registration says the same
        c.batch_execute(
            "ALTER FUNCTION _timescaledb_functions.chunk_status(regclass) RENAME TO \
        chunk_status_hidden",
        )
        .unwrap();
        let (code, _, _) = expect_error(
            &mut c,
            &format!(
                "SELECT add_job('backfill_on_schedule', '1 \
        day', '{CONFIG}', check_config => 'backfill_check_config')"
            ),
        );
        assert_eq!(code, "0A000");
    }
}

#[test]
#[cfg_attr(
    not(old_timescaledb),
    ignore = "no TimescaleDB older than 2.23 is installed beside the default one"
)]
fn a_timescaledb_older_than_the_minimum_is_refused_before_anything_changes() {
    let old = option_env!("BACKFILL_OLD_TIMESCALEDB")
        .unwrap_or_else(|| panic!("tests/build.rs names no older TimescaleDB"));
    let cl = cluster();
    cl.connect("postgres").batch_execute("CREATE DATABASE t").unwrap();
    let mut c = cl.connect("t");
    c.batch_execute(&format!(
        "CREATE EXTENSION timescaledb VERSION '{old}'; CREATE EXTENSION backfill_ext"
    ))
    .unwrap();
    assert_eq!(
        scalar::<String>(
            &mut c,
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ),
        old
    );
    timescale_dataset(&mut c, &Dataset::default());
    stage_late_rows(&mut c);
    let before = state(&mut c, "event_data", "backfill_event_data");
    let err = c.batch_execute(&call_backfill(CONFIG)).unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "0A000");
    assert_eq!(
        db.message(),
        format!(
            "backfill_ext: TimescaleDB {old} lacks what backfill_ext \
        needs (TimescaleDB 2.23 or later)"
        )
    );
    assert!(db.detail().unwrap().starts_with("This TimescaleDB lacks: "), "{:?}", db.detail());
    assert_eq!(state(&mut c, "event_data", "backfill_event_data"), before, "nothing changed");
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
}

timescale_test! {
    fn a_space_constraint_that_cannot_be_read_stops_the_run_before_anything_changes() {
        let cl = cluster();
        let mut c = cl.create_db("t");
        timescale_dataset(&mut c, &Dataset { space_partitions: 2, ..Dataset::default() });
        stage_late_rows(&mut c);
        let before = state(&mut c, "event_data", "backfill_event_data");
        // a constraint on a chunk that names the hash function in a form TimescaleDB does not write
        let chunk: String = scalar(
            &mut c,
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks
         WHERE hypertable_name = 'event_data' ORDER BY range_start, chunk_name OFFSET 2 LIMIT 1",
        );
        c.batch_execute(&format!(
            "ALTER TABLE {chunk} ADD CONSTRAINT odd CHECK \
         (_timescaledb_functions.get_partition_hash(device_id) <> -1) NOT VALID"
        ))
        .unwrap();
        let (code, msg, hint) = expect_error(&mut c, &call_backfill(CONFIG));
        assert_eq!(code, "0A000", "{msg}");
        assert!(msg.contains("cannot read the space partition of chunk"), "{msg}");
        assert!(hint.is_some());
        let after = state(&mut c, "event_data", "backfill_event_data");
        assert_eq!(
            (after.dest_rows, after.staging_rows),
            (before.dest_rows, before.staging_rows),
            "nothing moved"
        );
        assert_compressed_and_policy_as_before(&before, &after, "after the refusal");
    }
}
