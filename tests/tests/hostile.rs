//! Hostile and wrong input: each case is a clear error with the expected SQLSTATE and
//! a hint, and leaves the staging table and the destination untouched. Runs on plain
//! PostgreSQL (any machine).

use backfill_ext_client_tests::{scalar, Client, Cluster, Options};

const SETUP: &str = r#"
    CREATE TABLE readings (id int NOT NULL, ts timestamptz NOT NULL, value double precision,
                           PRIMARY KEY (id, ts));
    INSERT INTO readings SELECT i, timestamptz '2024-01-01' + i * interval '1 hour', i
      FROM generate_series(1, 50) i;
    CREATE TABLE staging (LIKE readings);
    INSERT INTO staging SELECT i, timestamptz '2024-01-01' + i * interval '1 hour', -i
      FROM generate_series(40, 60) i;
    CREATE VIEW staging_view AS SELECT * FROM staging;
    CREATE SEQUENCE a_sequence;
    CREATE MATERIALIZED VIEW a_matview AS SELECT * FROM readings;
    CREATE TABLE wrong_type (id int, ts timestamptz, value point);
    CREATE TABLE extra_col (id int, ts timestamptz, value float8, surprise int);
    CREATE TABLE missing_col (ts timestamptz, value float8);
    CREATE TABLE no_unique (id int, ts timestamptz, value float8);
    CREATE TABLE "Mixed Case" (LIKE readings);
    CREATE SCHEMA "we""ird";
    CREATE TABLE "we""ird"."x; DROP TABLE readings" (LIKE readings);
"#;

/// A config for backfill_on_schedule, or a whole statement when it starts with CALL.
struct Case {
    what: &'static str,
    call: String,
    code: &'static str,
}

fn cfg(json: &str) -> String {
    format!("CALL backfill_on_schedule(1, '{}')", json.replace('\'', "''"))
}

fn base(extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { ", " };
    cfg(&format!(
        r#"{{"staging_table":"staging","destination_hypertable":"readings"{sep}{extra}}}"#
    ))
}

fn tables(staging: &str, dest: &str) -> String {
    cfg(&format!(r#"{{"staging_table":{staging},"destination_hypertable":{dest}}}"#))
}

fn cases() -> Vec<Case> {
    // table-driven
    let c = |what, call: String, code| Case { what, call, code };
    vec![
        c("NULL config", "CALL backfill_on_schedule(1, NULL)".into(), "22004"),
        c("config is an array", cfg("[]"), "22023"),
        c("config is a string", cfg(r#""staging""#), "22023"),
        c("config is a number", cfg("42"), "22023"),
        c("empty config", cfg("{}"), "22023"),
        c("staging_table NULL", tables("null", r#""readings""#), "22023"),
        c("staging_table empty", tables(r#""""#, r#""readings""#), "22023"),
        c("staging_table blank", tables(r#""   ""#, r#""readings""#), "22023"),
        c("staging_table a number", tables("5", r#""readings""#), "22023"),
        c("staging_table an object", tables(r#"{"a":1}"#, r#""readings""#), "22023"),
        c("destination missing", cfg(r#"{"staging_table":"staging"}"#), "22023"),
        c("destination an array", tables(r#""staging""#, r#"["readings"]"#), "22023"),
        c("unknown key", base(r#""colour":"blue""#), "22023"),
        c("empty key", base(r#""":1"#), "22023"),
        c("misspelled key", base(r#""on_conflict_acton":"UPDATE""#), "22023"),
        c("on_conflict_action unknown", base(r#""on_conflict_action":"IGNORE""#), "22023"),
        c("on_conflict_action a boolean", base(r#""on_conflict_action":true"#), "22023"),
        c(
            "update columns not an \
           array",
            base(r#""on_conflict_action":"UPDATE","on_conflict_update_columns":"value""#),
            "22023",
        ),
        c(
            "update columns hold a \
           number",
            base(r#""on_conflict_action":"UPDATE","on_conflict_update_columns":[1]"#),
            "22023",
        ),
        c(
            "update columns without \
           UPDATE",
            base(r#""on_conflict_update_columns":["value"]"#),
            "22023",
        ),
        c("delete_from_staging a string", base(r#""delete_from_staging":"yes""#), "22023"),
        c("skip_empty_ranges a number", base(r#""skip_empty_ranges":1"#), "22023"),
        c("push interval a number", base(r#""compression_job_push_interval":86400"#), "22023"),
        c(
            "push interval not an \
           interval",
            base(r#""compression_job_push_interval":"soon""#),
            "22023",
        ),
        c("negative push interval", base(r#""compression_job_push_interval":"-1 day""#), "22023"),
        c("huge push interval", base(r#""compression_job_push_interval":"1000 years""#), "22023"),
        c("negative lock_wait", base(r#""lock_wait":"-5 seconds""#), "22023"),
        c("history_retention not an interval", base(r#""history_retention":"forever""#), "22023"),
        c("negative max_runtime", base(r#""max_runtime":"-1 hour""#), "22023"),
        c("work_mem nonsense", base(r#""work_mem":"lots""#), "22023"),
        c("work_mem negative", base(r#""work_mem":-1"#), "22023"),
        c("lock_timeout not an interval", base(r#""lock_timeout":"a while""#), "22023"),
        c(
            "lock_timeout beyond what PostgreSQL \
           takes",
            base(r#""lock_timeout":"90 days""#),
            "22023",
        ),
        c(
            "injection in staging \
           name",
            tables(r#""x; DROP TABLE readings""#, r#""readings""#),
            "42602",
        ),
        c(
            "injection after a \
           schema",
            tables(r#""public.staging; DROP TABLE readings""#, r#""readings""#),
            "42602",
        ),
        c("unquoted name with a space", tables(r#""my table""#, r#""readings""#), "42602"),
        c("three-part name", tables(r#""a.b.c""#, r#""readings""#), "42602"),
        c("unclosed quote", tables(r#""\"staging""#, r#""readings""#), "42602"),
        c(
            "quoted name with a doubled quote, \
           absent",
            tables(r#""\"a\"\"b\"""#, r#""readings""#),
            "42P01",
        ),
        c("mixed case quoted, absent", tables(r#""\"Staging\"""#, r#""readings""#), "42P01"),
        c("unknown schema", tables(r#""no_such_schema.staging""#, r#""readings""#), "42P01"),
        c(
            "quoted injection-looking table that exists as staging, destination \
           absent",
            tables(r#""\"we\"\"ird\".\"x; DROP TABLE readings\"""#, r#""nope""#),
            "42P01",
        ),
        c("staging is a view", tables(r#""staging_view""#, r#""readings""#), "42809"),
        c("staging is a sequence", tables(r#""a_sequence""#, r#""readings""#), "42809"),
        c("destination is a view", tables(r#""staging""#, r#""staging_view""#), "42809"),
        c("destination is a materialized view", tables(r#""staging""#, r#""a_matview""#), "42809"),
        c("staging is the destination", tables(r#""readings""#, r#""readings""#), "22023"),
        c("staging column of another type", tables(r#""wrong_type""#, r#""readings""#), "42804"),
        c(
            "staging column the destination \
           lacks",
            tables(r#""extra_col""#, r#""readings""#),
            "42703",
        ),
        c(
            "required destination column \
           missing",
            tables(r#""missing_col""#, r#""readings""#),
            "23502",
        ),
        c("conflict target column absent", base(r#""on_conflict_target":["nope"]"#), "42703"),
        c("conflict target not unique", base(r#""on_conflict_target":["value"]"#), "42P10"),
        c(
            "conflict target neither constraint nor \
           column",
            base(r#""on_conflict_target":"nope""#),
            "42P10",
        ),
        c("conflict target text unclosed", base(r#""on_conflict_target":"(id,""#), "22023"),
        c(
            "update column \
           absent",
            base(r#""on_conflict_action":"UPDATE","on_conflict_update_columns":["nope"]"#),
            "42703",
        ),
        c(
            "update column in the \
           target",
            base(r#""on_conflict_action":"UPDATE","on_conflict_update_columns":["id"]"#),
            "22023",
        ),
        c(
            "RESTRICT keeping staging \
           rows",
            base(r#""on_conflict_action":"RESTRICT","delete_from_staging":false"#),
            "22023",
        ),
        c(
            "UPDATE without a unique \
           constraint",
            tables(r#""staging""#, r#""no_unique""#)
                .replace("}'", r#","on_conflict_action":"UPDATE"}'"#),
            "42P10",
        ),
        c(
            "decompress_backfill with NULL staging",
            "CALL decompress_backfill(NULL, \
           'readings')"
                .into(),
            "22004",
        ),
        c(
            "decompress_backfill with a bad action",
            "CALL decompress_backfill('staging', \
           'readings', 'MERGE')"
                .into(),
            "22023",
        ),
        c(
            "decompress_backfill with a negative interval",
            "CALL decompress_backfill('staging', \
           'readings', compression_job_push_interval => '-1 day')"
                .into(),
            "22023",
        ),
    ]
}

fn fingerprint(c: &mut Client) -> (String, String) {
    (
        scalar(c, "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM staging t"),
        scalar(c, "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM readings t"),
    )
}

#[test]
fn hostile_and_wrong_input_is_refused_and_changes_nothing() {
    let cl = Cluster::start(Options::default());
    let mut c = cl.create_db("t");
    c.batch_execute(SETUP).unwrap();
    let before = fingerprint(&mut c);
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = vec![];
    for case in &cases {
        match c.batch_execute(&case.call) {
            Ok(()) => failures.push(format!("{}: no error from {}", case.what, case.call)),
            Err(e) => {
                let db = e.as_db_error().expect("a database error");
                let code = db.code().code();
                if code != case.code {
                    failures.push(format!(
                        "{}: SQLSTATE {code}, want {} ({})",
                        case.what,
                        case.code,
                        db.message()
                    ));
                }
                if db.hint().is_none() {
                    failures.push(format!("{}: no hint ({})", case.what, db.message()));
                }
                if !db.message().starts_with("backfill_ext: ") {
                    failures.push(format!(
                        "{}: not this extension's message: {}",
                        case.what,
                        db.message()
                    ));
                }
            }
        }
        assert_eq!(fingerprint(&mut c), before, "{} changed staging or destination", case.what);
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 50, "DROP TABLE never ran");
}

#[test]
fn odd_names_that_exist_work() {
    let cl = Cluster::start(Options::default());
    let mut c = cl.create_db("t");
    c.batch_execute(SETUP).unwrap();
    c.batch_execute(
        r#"INSERT INTO "Mixed Case" SELECT 500 + i, now(), i FROM generate_series(1, 5) i;
           INSERT INTO "we""ird"."x; DROP TABLE readings" SELECT 600 + i, now(), i
             FROM generate_series(1, 7) i;"#,
    )
    .unwrap();
    c.batch_execute(&tables(r#""\"Mixed Case\"""#, r#""public.readings""#)).unwrap();
    c.batch_execute(&tables(r#""\"we\"\"ird\".\"x; DROP TABLE readings\"""#, r#""READINGS""#))
        .unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT count(*) FROM readings"), 62);
}

#[test]
fn functions_planted_in_public_do_not_hijack_the_run() {
    let cl = Cluster::start(Options::default());
    let mut c = cl.create_db("t");
    c.batch_execute(SETUP).unwrap();
    // a user puts public before pg_catalog and shadows built-ins used internally
    c.batch_execute(
        "CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN RAISE \
         EXCEPTION 'hijacked now'; END $$;
         CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN \
         RAISE EXCEPTION 'hijacked clock_timestamp'; END $$;
         CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN \
         RAISE EXCEPTION 'hijacked current_setting'; END $$;
         CREATE FUNCTION public.format(text, text, text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN \
         RAISE EXCEPTION 'hijacked format'; END $$;
         CREATE FUNCTION public.textcat(text, text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN \
         RAISE EXCEPTION 'hijacked textcat'; END $$;
         ALTER DATABASE t SET search_path = public, pg_catalog;",
    )
    .unwrap();
    let mut c = cl.connect("t");
    assert_eq!(scalar::<String>(&mut c, "SHOW search_path"), "public, pg_catalog");
    let planted = c.batch_execute("SELECT now()").unwrap_err();
    assert!(
        planted.as_db_error().unwrap().message().contains("hijacked now"),
        "the planted function shadows the built-in here"
    );
    c.batch_execute(&base("")).unwrap();
    assert_eq!(scalar::<i64>(&mut c, "SELECT pg_catalog.count(*) FROM staging"), 0);
    assert_eq!(scalar::<i64>(&mut c, "SELECT pg_catalog.count(*) FROM readings"), 60);
    assert_eq!(
        scalar::<String>(&mut c, "SHOW search_path"),
        "public, pg_catalog",
        "the caller's search_path is untouched"
    );
}
