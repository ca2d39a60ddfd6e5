//! Upgrades and dumps keep what users have: `ALTER EXTENSION backfill_ext UPDATE` from
//! the previous release (its install script generated from its git revision by
//! scripts/previous-release.sh) keeps run history, policy holds and jobs, and yields
//! the same extension objects as a fresh install; `pg_dump` and `pg_restore` keep the
//! run history and the holds.

use backfill_ext_client_tests::config::call_backfill;
use backfill_ext_client_tests::fixtures::{stage_late_rows, timescale_dataset, Dataset};
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{create_timescaledb, scalar, Client, Cluster, Options};

const PREVIOUS: &str = env!("BACKFILL_PREVIOUS_VERSION");
const CONFIG: &str =
    r#"{"staging_table":"backfill_event_data", "destination_hypertable":"event_data"}"#;

/// Every object of the extension as `pg_dump --binary-upgrade` writes it (that mode
/// dumps an extension's member objects one by one), without the OIDs it pins.
fn extension_objects(cl: &Cluster, db: &str) -> String {
    let dump = cl.client_program("pg_dump", &["--schema-only", "--binary-upgrade", db]);
    let mut lines: Vec<String> = dump
        .lines()
        .filter(|l| {
            !l.contains("binary_upgrade_set_next") && !l.starts_with("--") && !l.trim().is_empty()
        })
        .filter(|l| {
            !l.starts_with("\\restrict")
                && !l.starts_with("\\unrestrict")
                && !l.contains("relfrozenxid")
                && !l.starts_with("WHERE oid = ")
        })
        .map(mask_oids)
        .collect();
    lines.dedup();
    lines.join("\n")
}

/// The OIDs in `binary_upgrade_create_empty_extension`'s list of configuration tables
/// differ between databases; their number and order do not.
fn mask_oids(line: &str) -> String {
    if !line.contains("binary_upgrade_create_empty_extension") {
        return line.to_string();
    }
    let mut out = String::new();
    let mut in_number = false;
    for ch in line.chars() {
        if ch.is_ascii_digit() && (in_number || out.ends_with('{') || out.ends_with(',')) {
            if !in_number {
                out.push_str("oid");
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(ch);
        }
    }
    out
}

/// The state a user has in an installed backfill_ext: history rows and a policy hold
/// (as a run interrupted after pushing the policy leaves it).
fn state(c: &mut Client) -> (Vec<String>, Vec<String>, i64) {
    let runs = c
        .query(
            "SELECT format('%s %s %s %s %s', id, status, destination, rows_moved, run_by) FROM \
            _backfill_ext.run ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let holds = c
        .query(
            "SELECT format('%s %s %s %s', job_id, hypertable, original_next_start, \
            original_scheduled) FROM _backfill_ext.policy_hold ORDER BY job_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let chunks = scalar(c, "SELECT count(*) FROM _backfill_ext.run_chunk");
    (runs, holds, chunks)
}

/// History from a real run, a backfill job scheduled for later, and the hold an
/// interrupted run leaves (the policy pushed out, its schedule recorded).
fn make_state(c: &mut Client) -> i32 {
    timescale_dataset(c, &Dataset::default());
    stage_late_rows(c);
    c.batch_execute(&call_backfill(CONFIG)).unwrap();
    c.batch_execute(
        "INSERT INTO backfill_event_data (time, device_id, value) VALUES ('2024-01-02 \
        00:05:00+00', 77, 1)",
    )
    .unwrap();
    let job: i32 = scalar(
        c,
        &format!(
            "SELECT add_job('backfill_on_schedule', '1 day', '{CONFIG}', \
        initial_start => '2099-01-01')"
        ),
    );
    c.batch_execute(
        "INSERT INTO _backfill_ext.policy_hold (job_id, hypertable, original_next_start, \
         original_scheduled)
           SELECT job_id, 'event_data'::regclass, next_start, scheduled FROM \
           timescaledb_information.jobs
           WHERE hypertable_name = 'event_data' AND proc_name = 'policy_compression';
         SELECT alter_job(job_id, next_start => now() + interval '1 day') FROM \
         timescaledb_information.jobs
           WHERE hypertable_name = 'event_data' AND proc_name = 'policy_compression';",
    )
    .unwrap();
    job
}

timescale_test! {
    #[cfg_attr(
        all(timescaledb, not(previous_release)),
        ignore = "the previous release's install script is not installed \
                  (scripts/previous-release.sh)"
    )]
    fn update_from_the_previous_release_keeps_history_holds_and_jobs_and_equals_a_fresh_install() {
        let cl = Cluster::start(Options { timescale: true, ..Default::default() });
        let mut admin = cl.connect("postgres");
        for db in ["updated", "fresh", "updated_only"] {
            admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
        }
        let mut c = cl.connect("updated");
        c.batch_execute(&format!(
            "{}; CREATE EXTENSION backfill_ext VERSION '{PREVIOUS}'",
            create_timescaledb()
        ))
        .unwrap();
        let job = make_state(&mut c);
        let before = state(&mut c);
        assert_eq!(
            (before.0.len(), before.1.len()),
            (1, 1),
            "a run and a hold to keep: {before:?}"
        );
        assert!(before.2 > 0);

        c.batch_execute("ALTER EXTENSION backfill_ext UPDATE").unwrap();
        let version: String =
            scalar(&mut c, "SELECT extversion FROM pg_extension WHERE extname = 'backfill_ext'");
        let default: String = scalar(
            &mut c,
            "SELECT default_version FROM pg_available_extensions WHERE name = 'backfill_ext'",
        );
        assert_eq!(version, default);
        assert_ne!(version, PREVIOUS);
        assert_eq!(state(&mut c), before, "history and holds kept");
        // no role but the owner may write the state any more; the job's config plans
        public_writes_nothing(&mut c);
        plans_the_jobs_config(&mut c, job);
        // the same objects as a fresh install of the current version
        an_update_equals_a_fresh_install(&cl);

        // the job registered before the update runs on the scheduler, and restores the hold
        c.batch_execute(&format!("SELECT alter_job({job}, next_start => now())")).unwrap();
        assert_eq!(cl.wait_for_job(&mut c, job), 1, "the job ran after the update");
        assert_eq!(
            scalar::<i64>(&mut c, "SELECT count(*) FROM backfill_event_data"),
            0,
            "the job moved the staged row"
        );
        assert_eq!(
            scalar::<i64>(&mut c, "SELECT count(*) FROM _backfill_ext.policy_hold"),
            0,
            "and restored the held policy"
        );
        let policy_next: String = scalar(
            &mut c,
            "SELECT next_start::text FROM timescaledb_information.jobs WHERE hypertable_name = \
         'event_data' AND proc_name = 'policy_compression'",
        );
        assert_eq!(
            policy_next, "2099-01-01 00:00:00+00",
            "the policy's schedule from before the interrupted run"
        );
    }
}

timescale_test! {
    fn dump_and_restore_keep_the_run_history_and_the_policy_holds() {
        let cl = Cluster::start(Options { timescale: true, ..Default::default() });
        let mut c = cl.create_db("source");
        let job = make_state(&mut c);
        // a restored job's schedule is TimescaleDB's to recompute: keep it from running here
        c.batch_execute(&format!("SELECT alter_job({job}, scheduled => false)")).unwrap();
        let before = state(&mut c);
        let file = cl.dir.join("source.dump");
        cl.client_program("pg_dump", &["-Fc", "-f", file.to_str().unwrap(), "source"]);

        cl.connect("postgres").batch_execute("CREATE DATABASE restored").unwrap();
        let mut r = cl.connect("restored");
        r.batch_execute(&format!("{}; SELECT timescaledb_pre_restore()", create_timescaledb()))
            .unwrap();
        cl.client_program("pg_restore", &["-d", "restored", file.to_str().unwrap()]);
        let mut r = cl.connect("restored");
        r.batch_execute("SELECT timescaledb_post_restore()").unwrap();
        assert_eq!(state(&mut r), before, "run history and holds restored");
        // new runs continue the numbering, and the restored hold is put back by the next run
        r.batch_execute(&call_backfill(CONFIG)).unwrap();
        let runs: Vec<(i64, Option<i32>, String)> = r
            .query("SELECT id, job_id, status FROM _backfill_ext.run ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|x| (x.get(0), x.get(1), x.get(2)))
            .collect();
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert!(runs[1].0 > runs[0].0, "{runs:?}");
        assert_eq!(scalar::<i64>(&mut r, "SELECT count(*) FROM _backfill_ext.policy_hold"), 0);
    }
}

/// After the update, the job's config has its dry run (`backfill_plan(config)`, new in
/// 0.2.0): the staged row's chunk.
fn plans_the_jobs_config(c: &mut Client, job: i32) {
    let planned: i64 = scalar(
        c,
        &format!(
            "SELECT sum(p.staging_rows)::int8 FROM timescaledb_information.jobs j, \
             backfill_plan(j.config) p WHERE j.job_id = {job}"
        ),
    );
    assert_eq!(planned, 1, "backfill_plan of the job's config after the update");
}

/// Installs the current version in database `fresh`, and the previous one updated to it
/// in `updated_only`; their objects must be the same (`pg_dump`'s view of them).
fn an_update_equals_a_fresh_install(cl: &Cluster) {
    let mut f = cl.connect("fresh");
    f.batch_execute(&format!("{}; CREATE EXTENSION backfill_ext", create_timescaledb())).unwrap();
    let mut uo = cl.connect("updated_only");
    uo.batch_execute(&format!(
        "{}; CREATE EXTENSION backfill_ext VERSION '{PREVIOUS}'; ALTER \
    EXTENSION backfill_ext UPDATE",
        create_timescaledb()
    ))
    .unwrap();
    let (fresh, updated) = (extension_objects(cl, "fresh"), extension_objects(cl, "updated_only"));
    assert!(fresh.contains("backfill_on_schedule"), "the dump lists the extension's objects");
    if fresh != updated {
        panic!("an updated install differs from a fresh one:\n{}", difference(&fresh, &updated));
    }
}

/// What differs between two dumps: lines only one has, or where they part when both hold
/// the same lines in another order.
fn difference(fresh: &str, updated: &str) -> String {
    let (f, u): (Vec<&str>, Vec<&str>) = (fresh.lines().collect(), updated.lines().collect());
    let mut diff: Vec<String> = f
        .iter()
        .filter(|l| !u.contains(l))
        .map(|l| format!("- {l}"))
        .chain(u.iter().filter(|l| !f.contains(l)).map(|l| format!("+ {l}")))
        .collect();
    if diff.is_empty() {
        // the same lines in another order: show where they part
        let at = f.iter().zip(&u).position(|(a, b)| a != b).unwrap_or(f.len().min(u.len()));
        diff = (at.saturating_sub(2)..(at + 4))
            .flat_map(|i| [f.get(i).map(|l| format!("- {l}")), u.get(i).map(|l| format!("+ {l}"))])
            .flatten()
            .collect();
    }
    diff.join("\n")
}

/// PUBLIC keeps no write privilege on the extension's state, nor on its id sequence.
fn public_writes_nothing(c: &mut Client) {
    let writable: i64 = scalar(
        c,
        "SELECT count(*) FROM pg_catalog.pg_class AS t, unnest(ARRAY['INSERT', 'UPDATE', \
     'DELETE']) AS w(p) \
     WHERE t.relnamespace = '_backfill_ext'::regnamespace AND t.relkind = 'r' AND \
     pg_catalog.has_table_privilege('public', t.oid, w.p)",
    );
    assert_eq!(writable, 0, "PUBLIC keeps no write privilege on the state");
    assert!(!scalar::<bool>(
        c,
        "SELECT pg_catalog.has_sequence_privilege('public', '_backfill_ext.run_id_seq', 'USAGE')"
    ));
}
