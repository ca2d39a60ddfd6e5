//! A randomized differential harness: seeded cases of schema, data, staging rows and
//! config, each run by backfill_ext and by the reference, `INSERT INTO … SELECT … FROM
//! staging ON CONFLICT …` into a plain table with the same unique indexes. The two must
//! end with the same rows (as multisets), staging must be left as the config says, and
//! no chunk that was compressed may be left partial or decompressed, and a continuous
//! aggregate must equal a fresh `GROUP BY` of the destination. Where staging holds
//! several rows for one key under UPDATE (the reference alone would fail: a row cannot
//! be affected twice), the last row in staging's order wins; the reference drops the
//! earlier ones first, by the unique index's own equality. Where the reference fails
//! (a violated constraint), the run must fail too, and every row it took from staging
//! must be in the destination.
//!
//! A failing case prints its seed and an SQL script that reproduces it. A fixed set of
//! seeds runs by default; `BACKFILL_DIFF_CASES` (cases per test) and `BACKFILL_DIFF_SEED`
//! (the first seed) run more, for a soak. Run where a full TimescaleDB is installed
//! (ignored, with the reason, elsewhere).

use backfill_ext_client_tests::timescale_cluster;
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::Client;

#[path = "differential/case.rs"]
mod case;

use case::{Case, Rng, COLUMNS};

/// Every row of `table` as text, sorted.
fn rows(c: &mut Client, table: &str) -> Vec<String> {
    rows_of(c, &format!("SELECT ROW(time, dev, tag, v, w)::text AS r FROM {table} ORDER BY 1"))
}

/// The one text column of `sql`'s rows.
fn rows_of(c: &mut Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// Each chunk of the case's destination: name and status bits.
fn chunk_status(c: &mut Client, schema: &str) -> Vec<(String, i32)> {
    c.query(
        "SELECT chunk_name::text, _timescaledb_functions.chunk_status(format('%I.%I', \
         chunk_schema, chunk_name)::regclass) \
         FROM timescaledb_information.chunks WHERE hypertable_schema = $1 AND hypertable_name = \
         'm' ORDER BY 1",
        &[&schema],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Runs `sql`, adding it to the case's script; an error as its SQLSTATE and message.
fn exec(c: &mut Client, sql: String, script: &mut Vec<String>) -> Result<(), String> {
    script.push(format!("{sql};"));
    c.batch_execute(&sql).map_err(|e| {
        e.as_db_error()
            .map(|d| format!("{}: {}", d.code().code(), d.message()))
            .unwrap_or(e.to_string())
    })
}

/// Chunks compressed before and left decompressed or partial, and policy holds left.
fn chunk_diffs(c: &mut Client, s: &str, before: &[(String, i32)]) -> Vec<String> {
    let mut diffs = vec![];
    for (name, status) in chunk_status(c, s) {
        let was = before.iter().find(|(n, _)| *n == name).map(|(_, st)| *st).unwrap_or(0);
        // compressed stays compressed, and a chunk that was whole is not left partial
        if was & 1 == 1 && (status & 1 == 0 || (was & 8 == 0 && status & 8 == 8)) {
            diffs.push(format!(
                "chunk {name} was compressed (status {was}) and is now status {status}"
            ));
        }
    }
    let held: i64 =
        c.query_one("SELECT count(*) FROM _backfill_ext.policy_hold", &[]).unwrap().get(0);
    if held > 0 {
        diffs.push(format!("{held} policy holds left"));
    }
    diffs
}

/// The rows of `a` not in `b`, as multisets: a row held twice where `b` holds it once is
/// in the difference.
fn less(a: &[String], b: &[String]) -> Vec<String> {
    let mut rest = b.to_vec();
    a.iter()
        .filter(|x| rest.iter().position(|y| y == *x).map(|i| rest.remove(i)).is_none())
        .cloned()
        .collect()
}

/// Where both succeeded: the destination equals the reference, the continuous aggregate
/// a fresh `GROUP BY`, and staging is left as the config says.
fn success_diffs(c: &mut Client, case: &Case, before: &[String], after: &[String]) -> Vec<String> {
    let s = &case.schema;
    let mut diffs = vec![];
    let (got, want) = (rows(c, &format!("{s}.m")), rows(c, &format!("{s}.ref_m")));
    if got != want {
        let (missing, extra) = (less(&want, &got), less(&got, &want));
        diffs.push(format!(
            "destination differs from the reference: missing {missing:?}, \
            extra {extra:?} ({} vs {} rows)",
            got.len(),
            want.len()
        ));
    }
    if case.cagg {
        let (agg, fresh) = (
            rows_of(
                c,
                &format!(
                    "SELECT ROW(b, dev, n, sv)::text FROM {s}.m_daily ORDER BY \
                        1"
                ),
            ),
            rows_of(
                c,
                &format!(
                    "SELECT ROW(time_bucket('1 day', time), dev, count(*), \
                        sum(v))::text FROM {s}.m GROUP BY time_bucket('1 day', time), dev ORDER BY \
                        1"
                ),
            ),
        );
        if agg != fresh {
            diffs.push(format!(
                "the continuous aggregate holds {agg:?}, the destination grouped {fresh:?}"
            ));
        }
    }
    let want_staging = if case.delete_from_staging { vec![] } else { before.to_vec() };
    if after != want_staging {
        diffs.push(format!("staging left {after:?}, expected {want_staging:?}"));
    }
    diffs
}

/// Where both failed, nothing lost: every row the run took from staging has its key in
/// the destination (the text of a key that compares by a collation may differ).
fn failure_diffs(c: &mut Client, case: &Case, before: &[String], after: &[String]) -> Vec<String> {
    let dest = rows(c, &format!("{}.m", case.schema));
    // the fields of the target key (of every column without one)
    let at: Vec<usize> = COLUMNS
        .iter()
        .enumerate()
        .filter(|(_, c)| case.key.is_empty() || case.key.contains(c))
        .map(|(i, _)| i)
        .collect();
    let key_of = |row: &str| -> Vec<String> {
        let f: Vec<&str> = row.trim_matches(|ch| ch == '(' || ch == ')').split(',').collect();
        at.iter().map(|i| f[*i].to_string()).collect()
    };
    let mut diffs = vec![];
    let mut left = after.to_vec();
    for row in before {
        if let Some(i) = left.iter().position(|x| x == row) {
            left.remove(i);
        } else if !dest.iter().any(|d| key_of(d) == key_of(row)) {
            diffs.push(format!(
                "staging row {row} is neither in staging nor in the \
                destination after the failed run"
            ));
        }
    }
    diffs
}

/// Runs one case; returns what differs (empty: nothing).
fn run_case(c: &mut Client, case: &Case, script: &mut Vec<String>) -> Vec<String> {
    let mut r = Rng(case.seed ^ 0xA5A5_A5A5);
    let staged = case.staged_rows(&mut r);
    for sql in case.setup(&case.existing_rows(), &staged) {
        if let Err(e) = exec(c, sql, script) {
            return vec![format!("set-up failed: {e}")];
        }
    }
    let before = chunk_status(c, &case.schema);
    let staging_before = rows(c, &format!("{}.st", case.schema));
    let mut reference_error = None;
    for sql in case.reference() {
        if let Err(e) = exec(c, sql, script) {
            reference_error = Some(e);
            break;
        }
    }
    let hooks = format!(
        "SET backfill_ext.debug_always_route = {}; SET backfill_ext.debug_rewrite_on_disk = {}",
        case.always_route, case.rewrite_on_disk
    );
    exec(c, hooks, script).unwrap();
    let run = exec(c, format!("CALL backfill_on_schedule(0, '{}')", case.config()), script);
    let s = &case.schema;
    let mut diffs = chunk_diffs(c, s, &before);
    let staging_after = rows(c, &format!("{s}.st"));
    if run.is_ok() {
        diffs.extend(case.violations(c));
    }
    match (&reference_error, &run) {
        (None, Ok(())) => diffs.extend(success_diffs(c, case, &staging_before, &staging_after)),
        (Some(e), Ok(())) => {
            diffs.push(format!("the reference failed ({e}) but the run succeeded"))
        }
        (None, Err(e)) => diffs.push(format!("the run failed ({e}) where the reference succeeded")),
        (Some(_), Err(_)) => diffs.extend(failure_diffs(c, case, &staging_before, &staging_after)),
    }
    diffs
}

fn run_seeds(first: u64) {
    let cases: u64 =
        std::env::var("BACKFILL_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(80);
    let base: u64 =
        std::env::var("BACKFILL_DIFF_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let cl = timescale_cluster();
    let mut c = cl.create_db("diff");
    let icu = c
        .batch_execute(
            "CREATE COLLATION backfill_ci (provider = icu, locale = 'und-u-ks-level2', \
            deterministic = false)",
        )
        .is_ok();
    // cases with a nondeterministic collation run wherever PostgreSQL has ICU
    assert_eq!(icu, cfg!(icu), "ICU collations, as tests/build.rs read pg_config");
    let (mut failures, mut with_cagg) = (vec![], 0);
    for k in 0..cases {
        let seed = base + first * 1_000_000 + k;
        let case = Case::new(seed, icu);
        with_cagg += case.cagg as u64;
        let mut script = vec![];
        let diffs = run_case(&mut c, &case, &mut script);
        if diffs.is_empty() {
            c.batch_execute(&format!("DROP SCHEMA {} CASCADE", case.schema)).unwrap();
        } else {
            failures.push(format!(
                "seed {seed}: {}\n  case: {case:?}\n  to reproduce (in a database with timescaledb \
                 and backfill_ext{}):\n{}",
                diffs.join("\n  "),
                if icu { ", and CREATE COLLATION backfill_ci (provider = icu, locale = \
                    'und-u-ks-level2', deterministic = false)" } else { "" },
                script.join("\n")
            ));
        }
    }
    println!(
        "differential: {cases} cases from seed {} ({with_cagg} with a continuous aggregate), \
        {} differing",
        base + first * 1_000_000,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ from the reference:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

timescale_test! {
    fn differential_cases_a() {
        run_seeds(1);
    }
}

timescale_test! {
    fn differential_cases_b() {
        run_seeds(2);
    }
}

timescale_test! {
    fn differential_cases_c() {
        run_seeds(3);
    }
}

timescale_test! {
    fn differential_cases_d() {
        run_seeds(4);
    }
}
