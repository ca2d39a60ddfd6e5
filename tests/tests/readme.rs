//! The README's SQL examples, run against the real extension: every ```sql block that
//! is followed by an output block is run by psql, at its place in the story the README
//! tells (quick start, then monitoring and scheduling), and its output compared with
//! the README's, so the README cannot drift from the code. Only what changes from run
//! to run is masked: milliseconds, and the width of aligned columns.

use backfill_ext_client_tests::fixtures::event_data_sql;
use backfill_ext_client_tests::{Cluster, Options};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

/// (sql, expected output) for every SQL example with an output block, and the SQL
/// blocks without one, in README order.
fn examples() -> (Vec<(String, String)>, Vec<String>) {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    // (language, text, line of the opening fence, line of the closing fence)
    let mut blocks: Vec<(String, String, usize, usize)> = vec![];
    let lines: Vec<&str> = readme.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if let Some(lang) = lines[i].strip_prefix("```") {
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].starts_with("```"))
                .expect("a closed block");
            blocks.push((lang.to_string(), lines[i + 1..end].join("\n"), i, end));
            i = end;
        }
        i += 1;
    }
    let (mut with_output, mut without) = (vec![], vec![]);
    for (k, (lang, text, _, end)) in blocks.iter().enumerate() {
        if lang == "sql" {
            // its output is a plain block that opens on the line after it closes
            match blocks.get(k + 1) {
                Some((l, out, start, _)) if l.is_empty() && *start == end + 1 => {
                    with_output.push((text.clone(), out.clone()))
                }
                _ => without.push(text.clone()),
            }
        }
    }
    (with_output, without)
}

/// Output with what varies masked: "13 ms" and "9.5" become "N ms" and "N.N", runs of
/// spaces one space, and a table's dashed rule one dash.
fn normalize(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let mut out = String::new();
            let mut chars = l.trim_end().chars().peekable();
            let mut last_space = false;
            while let Some(c) = chars.next() {
                if c.is_ascii_digit() {
                    let mut num = c.to_string();
                    while let Some(&d) = chars.peek() {
                        if d.is_ascii_digit() || d == '.' {
                            num.push(d);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    let rest: String = chars.clone().collect();
                    let masked = if rest.starts_with(" ms") {
                        "N".to_string()
                    } else if num.contains('.')
                        && num.split('.').nth(1).is_some_and(|f| f.len() == 1)
                        && !rest.starts_with('.')
                    {
                        "N.N".to_string()
                    } else {
                        num
                    };
                    out.push_str(&masked);
                    last_space = false;
                } else if c == ' ' {
                    if !last_space {
                        out.push(' ');
                    }
                    last_space = true;
                } else {
                    out.push(c);
                    last_space = false;
                }
            }
            let t = out.trim().to_string();
            if !t.is_empty() && t.chars().all(|c| c == '-' || c == '+') {
                "-".to_string()
            } else {
                t
            }
        })
        .filter(|l| {
            !l.is_empty()
                && !(l.starts_with('(') && (l.ends_with(" rows)") || l.ends_with(" row)")))
        })
        .collect()
}

/// psql running `sql` as `psql -c` does: notices, errors and results in order, and
/// whether it succeeded.
fn psql(cl: &Cluster, db: &str, sql: &str) -> (String, bool) {
    let psql = Path::new(&backfill_ext_client_tests::pg_config("--bindir")).join("psql");
    let port = cl.port.to_string();
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "exec \"$0\" -X -q -h 127.0.0.1 -p \"$1\" -U postgres -d \"$2\" -v VERBOSITY=default \
            -P pager=off -c \"$3\" 2>&1",
        )
        .args([psql.to_str().unwrap(), &port, db, sql])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (String::from_utf8(out.stdout).unwrap(), out.status.success())
}

struct Story {
    cl: Cluster,
    examples: Vec<(String, String)>,
    checked: BTreeSet<usize>,
}

impl Story {
    /// Runs the README's example that starts with `start` and compares its output.
    fn example(&mut self, start: &str) {
        let (i, (sql, expected)) = self
            .examples
            .iter()
            .enumerate()
            .find(|(_, (sql, _))| sql.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("the README has no SQL example starting with {start:?}"));
        let (got, _) = psql(&self.cl, "readme", sql);
        assert_eq!(
            normalize(&got),
            normalize(expected),
            "README example:\n{sql}\n--- README says:\n{expected}\n--- psql printed:\n{got}"
        );
        self.checked.insert(i);
    }

    fn run(&self, sql: &str) {
        let (out, ok) = psql(&self.cl, "readme", sql);
        assert!(ok && !out.contains("ERROR:"), "{sql}: {out}");
    }
}

#[test]
#[cfg_attr(
    not(timescaledb),
    ignore = "no full TimescaleDB (timescaledb-tsl) is installed for this PostgreSQL"
)]
fn the_readme_examples_print_what_the_readme_says() {
    // no background jobs: run_job runs the backfill job where the README does
    let cl = Cluster::start(Options {
        timescale: true,
        extra_conf: vec!["timescaledb.max_background_workers = 0".into()],
        ..Default::default()
    });
    cl.connect("postgres").batch_execute("CREATE DATABASE readme").unwrap();
    let (examples, without_output) = examples();
    let mut s = Story { cl, examples, checked: BTreeSet::new() };

    // the quick start's tables: 10 devices at 1-minute resolution over 5 days in daily
    // chunks, all compressed; late rows of a new device on days 2 and 3, and one row
    // after the last chunk
    s.run("CREATE EXTENSION timescaledb;");
    s.run(&event_data_sql(5, 10, 1, 1));
    s.run(
        "INSERT INTO backfill_event_data SELECT t, 11, 2 FROM \
         generate_series('2024-01-02'::timestamptz, '2024-01-04'::timestamptz - interval '1 \
         minute', interval '1 minute') t;
         INSERT INTO backfill_event_data VALUES ('2024-03-01', 1, 2);",
    );
    // the quick start's first block sets up the extension and the job
    let setup = without_output
        .iter()
        .find(|b| b.contains("CREATE EXTENSION backfill_ext"))
        .expect("the quick start's set-up block");
    s.run(&setup.replace("CREATE EXTENSION timescaledb;", ""));
    // the hypertable's compression policy, which a run holds back while it works
    s.run("SELECT add_compression_policy('event_data', interval '30 days');");
    s.example("SELECT * FROM backfill_plan(");
    s.example("CALL run_job(1000)");
    // corrections for every row of day 5
    s.run(
        "INSERT INTO backfill_event_data SELECT time, device_id, 3 FROM event_data WHERE time >= \
        '2024-01-05' AND time < '2024-01-06';",
    );
    s.example("CALL decompress_backfill(");
    s.example("SELECT run_id, job_id, status, rows_moved");
    s.example("SELECT destination, run_id, status");
    s.example("SELECT run_id, chunk, rows_moved");
    s.example("SELECT add_job('backfill_on_schedule', '10 days',\n               config =>");
    s.example("SELECT schedule_backfill(");
    s.example("SELECT job_id, application_name");

    let unchecked: Vec<&String> = s
        .examples
        .iter()
        .enumerate()
        .filter(|(i, _)| !s.checked.contains(i))
        .map(|(_, (sql, _))| sql)
        .collect();
    assert!(unchecked.is_empty(), "README examples with output that no test runs: {unchecked:#?}");
}

#[test]
fn the_configuration_table_lists_every_key() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = readme.split("## Configuration").nth(1).unwrap().split("\n## ").next().unwrap();
    let listed: BTreeSet<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `").and_then(|r| r.split('`').next()))
        .collect();
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/config/mod.rs"))
            .unwrap();
    // the keys the config parser knows: its KEYS table of (name, meaning)
    let keys: BTreeSet<&str> = source
        .split("pub const KEYS")
        .nth(1)
        .expect("config/mod.rs has pub const KEYS")
        .split("];")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("(\"").and_then(|r| r.split('"').next()))
        .collect();
    assert!(keys.len() >= 14, "{keys:?}");
    assert_eq!(listed, keys, "the README's Configuration table and the keys config.rs knows");
}
