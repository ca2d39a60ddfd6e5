//! The README and the documents in docs/, checked against the real extension and the
//! code, so they cannot drift from them:
//! - every ```sql block followed by an output block is run by psql, at its place in the
//!   story the README tells (quick start, then monitoring and scheduling), and its output
//!   compared with the document's; only what changes from run to run is masked:
//!   milliseconds, and the width of aligned columns;
//! - the tables that list what the code knows: the config keys, the versions tested
//!   (against scripts/versions.sh), the capabilities a run checks for, the test files;
//! - every relative link (and its anchor) leads somewhere, and every document in docs/
//!   is linked from the README.

use backfill_ext_client_tests::fixtures::event_data_sql;
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::{Cluster, Options};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// SQL examples with output that the story cannot run, by document and the start of
/// their SQL, each with the reason. A new example belongs in the story; one lands here
/// only when the state it needs cannot be built in a test cluster.
const NOT_RUN: &[(&str, &str, &str)] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of the repository, by its path from the root.
fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// README.md, then every docs/*.md in name order, as (path from the root, text).
fn documents() -> Vec<(String, String)> {
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("a docs folder")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    docs.insert(0, "README.md".to_string());
    docs.into_iter().map(|path| (path.clone(), read(&path))).collect()
}

/// A fenced block: its language, its text, and the lines of its opening and closing fences.
struct Block {
    lang: String,
    text: String,
    start: usize,
    end: usize,
}

fn blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = vec![];
    let mut i = 0;
    while i < lines.len() {
        if let Some(lang) = lines[i].strip_prefix("```") {
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].starts_with("```"))
                .expect("a closed block");
            let text = lines[i + 1..end].join("\n");
            out.push(Block { lang: lang.to_string(), text, start: i, end });
            i = end;
        }
        i += 1;
    }
    out
}

/// An SQL example with its output: the document it is in, the SQL, what the document
/// says psql prints.
struct Example {
    doc: String,
    sql: String,
    expected: String,
}

/// Every SQL example with an output block, and the SQL blocks without one, of every
/// document, in document order.
fn examples() -> (Vec<Example>, Vec<String>) {
    let (mut with_output, mut without) = (vec![], vec![]);
    for (doc, text) in documents() {
        let blocks = blocks(&text);
        for (k, b) in blocks.iter().enumerate().filter(|(_, b)| b.lang == "sql") {
            // its output is a plain block that opens on the line after it closes
            match blocks.get(k + 1) {
                Some(out) if out.lang.is_empty() && out.start == b.end + 1 => {
                    let (sql, expected) = (b.text.clone(), out.text.clone());
                    with_output.push(Example { doc: doc.clone(), sql, expected })
                }
                _ => without.push(b.text.clone()),
            }
        }
    }
    (with_output, without)
}

/// A number with "ms" after it becomes "N", one with one decimal "N.N"; others stay.
fn mask(num: String, rest: &str) -> String {
    if rest.starts_with(" ms") {
        "N".to_string()
    } else if num.split('.').nth(1).is_some_and(|f| f.len() == 1) && !rest.starts_with('.') {
        "N.N".to_string()
    } else {
        num
    }
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
                    while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit() || **d == '.') {
                        num.push(d);
                        chars.next();
                    }
                    let rest: String = chars.clone().collect();
                    out.push_str(&mask(num, &rest));
                } else if c != ' ' || !last_space {
                    out.push(c);
                }
                last_space = c == ' ';
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
        .collect::<Vec<String>>()
        .chunk_by(|a, b| is_chunk_notice(a) == is_chunk_notice(b))
        .flat_map(sorted_if_chunk_notices)
        .collect()
}

/// A run's NOTICE of one chunk: with workers they come as the chunks' transactions end,
/// in either order.
fn is_chunk_notice(line: &str) -> bool {
    line.starts_with("NOTICE: backfill_ext: chunk ")
}

/// A run of consecutive chunk NOTICEs, sorted; other lines as they are.
fn sorted_if_chunk_notices(lines: &[String]) -> Vec<String> {
    let mut v = lines.to_vec();
    if v.first().is_some_and(|l| is_chunk_notice(l)) {
        v.sort();
    }
    v
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
    examples: Vec<Example>,
    checked: BTreeSet<usize>,
}

impl Story {
    /// Runs the example that starts with `start` and compares its output.
    fn example(&mut self, start: &str) {
        let (i, e) = self
            .examples
            .iter()
            .enumerate()
            .find(|(_, e)| e.sql.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no document has an SQL example starting with {start:?}"));
        let (got, _) = psql(&self.cl, "readme", &e.sql);
        assert_eq!(
            normalize(&got),
            normalize(&e.expected),
            "{} example:\n{}\n--- {} says:\n{}\n--- psql printed:\n{got}",
            e.doc,
            e.sql,
            e.doc,
            e.expected
        );
        self.checked.insert(i);
    }

    fn run(&self, sql: &str) {
        let (out, ok) = psql(&self.cl, "readme", sql);
        assert!(ok && !out.contains("ERROR:"), "{sql}: {out}");
    }

    /// The examples with output that no step of the story ran and `NOT_RUN` does not name.
    fn unchecked(&self) -> Vec<String> {
        let excluded = |e: &Example| {
            NOT_RUN.iter().any(|(doc, start, _)| e.doc == *doc && e.sql.starts_with(start))
        };
        (self.examples.iter().enumerate())
            .filter(|(i, e)| !self.checked.contains(i) && !excluded(e))
            .map(|(_, e)| format!("{}: {}", e.doc, e.sql))
            .collect()
    }
}

timescale_test! {
    fn the_examples_print_what_the_documents_say() {
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
        s.example("SELECT p.chunk, p.staging_rows, p.action FROM timescaledb_information.jobs");
        s.example("CALL run_job(1000)");
        // corrections for every row of day 5
        s.run(
            "INSERT INTO backfill_event_data SELECT time, device_id, 3 FROM event_data \
             WHERE time >= '2024-01-05' AND time < '2024-01-06';",
        );
        s.example("CALL decompress_backfill(");
        s.example("SELECT run_id, job_id, status, rows_moved");
        s.example("SELECT destination, run_id, status");
        s.example("SELECT run_id, chunk, rows_moved");
        s.example("SELECT add_job('backfill_on_schedule', '10 days',\n               config =>");
        s.example("SELECT schedule_backfill(");
        s.example("SELECT job_id, application_name");

        let unchecked = s.unchecked();
        assert!(unchecked.is_empty(), "SQL examples with output that no test runs: {unchecked:#?}");
    }
}

/// The part of `text` from the heading `heading` to the next heading of its level or above.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let level = heading.split(' ').next().unwrap();
    let start = text.find(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("no {heading}"));
    let rest = &text[start + heading.len() + 2..];
    let end = (rest.match_indices('\n'))
        .map(|(i, _)| i + 1)
        .find(|&i| {
            let hashes = rest[i..].chars().take_while(|&c| c == '#').count();
            hashes > 0 && hashes <= level.len() && rest[i..].chars().nth(hashes) == Some(' ')
        })
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The rows of the Markdown tables in `text`, header and rule left out, as their cells.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let rule = |l: &str| l.starts_with("|-") || l.starts_with("|:") || l.starts_with("| -");
    (lines.iter().enumerate())
        .filter(|(i, l)| {
            l.starts_with('|') && !rule(l) && !lines.get(i + 1).is_some_and(|n| rule(n))
        })
        .map(|(_, l)| l.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

/// The `code` spans of a table cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Every .rs file under `dir`, with its text.
fn rust_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
        }
    }
    out
}

/// The text of the one source file under src/ that holds `needle`.
fn source_with(needle: &str) -> String {
    let mut found: Vec<String> = (rust_files(&root().join("src")).into_iter())
        .filter(|(_, text)| text.contains(needle))
        .map(|(_, text)| text)
        .collect();
    assert_eq!(found.len(), 1, "src/ has {needle:?} in {} files, not one", found.len());
    found.remove(0)
}

/// The value of the source's `const NAME: &str = "value";`.
fn code_constant(name: &str) -> String {
    let needle = format!("const {name}: &str = \"");
    let text = source_with(&needle);
    text.split(&needle).nth(1).unwrap().split('"').next().unwrap().to_string()
}

#[test]
fn the_configuration_table_lists_every_key() {
    let readme = read("README.md");
    let listed: BTreeSet<&str> = (section(&readme, "## Configuration").lines())
        .filter_map(|l| l.strip_prefix("| `").and_then(|r| r.split('`').next()))
        .collect();
    // the keys the config parser knows: its KEYS table of (name, meaning), as one line
    let source = flat(&source_with("pub const KEYS")).replace("( ", "(");
    let table = source.split("pub const KEYS").nth(1).unwrap().split("];").next().unwrap();
    let keys: BTreeSet<&str> =
        table.split("(\"").skip(1).map(|r| r.split('"').next().unwrap()).collect();
    assert!(keys.len() >= 14, "{keys:?}");
    assert_eq!(listed, keys, "the README's Configuration table and the keys the config knows");
}

/// The value of `NAME=…` (or `declare -A NAME=…`) in scripts/versions.sh, quotes removed.
fn shell_value(sh: &str, name: &str) -> String {
    let line = (sh.lines().map(|l| l.trim_start_matches("declare -A ")))
        .find(|l| l.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("scripts/versions.sh sets no {name}"));
    line[name.len() + 1..].trim_matches('"').to_string()
}

/// The `[key]="value"` pairs of an associative array's value.
fn shell_pairs(value: &str) -> BTreeMap<String, String> {
    (value.trim_matches(|c| c == '(' || c == ')').split_whitespace())
        .filter_map(|p| p.strip_prefix('[').and_then(|p| p.split_once("]=")))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Text with every run of white space one space, as Markdown reads a paragraph.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// "2.29.2" as numbers, to compare versions.
fn version(v: &str) -> Vec<u32> {
    v.split('.').map(|n| n.parse().unwrap()).collect()
}

/// (PostgreSQL, TimescaleDB) pairs scripts/versions.sh pins: each major's PostgreSQL
/// release with its TimescaleDB, and the declared minimum beside the default on its major.
fn pinned_pairs(sh: &str) -> BTreeSet<(String, String)> {
    let pypi = shell_pairs(&shell_value(sh, "PG_PYPI_VERSION"));
    let timescaledb = shell_pairs(&shell_value(sh, "TIMESCALEDB_VERSION"));
    let postgres = |major: &str| -> String {
        let full = match major {
            "15" => shell_value(sh, "PG15_DEB_VERSION").split('-').next().unwrap().to_string(),
            m => pypi[m].clone(),
        };
        full.split('.').take(2).collect::<Vec<_>>().join(".")
    };
    let majors = shell_value(sh, "PG_MAJORS");
    let mut pairs: BTreeSet<(String, String)> = (majors.trim_matches(['(', ')']).split(' '))
        .map(|m| (postgres(m), timescaledb[m].clone()))
        .collect();
    let minimum_major = shell_value(sh, "TIMESCALEDB_MINIMUM_MAJOR");
    pairs.insert((postgres(&minimum_major), shell_value(sh, "TIMESCALEDB_MINIMUM")));
    pairs
}

#[test]
fn the_versions_match_scripts_versions_sh_and_the_code() {
    let sh = read("scripts/versions.sh");
    let versions = read("docs/versions.md");
    // the "What was run" table: a row per pair, PostgreSQL and TimescaleDB first
    let run: BTreeSet<(String, String)> = (table_rows(section(&versions, "## What was run")))
        .iter()
        .map(|r| {
            let first = |c: &String| c.split(' ').next().unwrap().to_string();
            (first(&r[0]), first(&r[1]))
        })
        .collect();
    assert_eq!(run, pinned_pairs(&sh), "docs/versions.md's What was run and scripts/versions.sh");

    let (minimum, tested) = (code_constant("MIN_TIMESCALEDB"), code_constant("TESTED_UP_TO"));
    assert!(shell_value(&sh, "TIMESCALEDB_MINIMUM").starts_with(&format!("{minimum}.")));
    let newest = (shell_pairs(&shell_value(&sh, "TIMESCALEDB_VERSION")).into_values())
        .max_by_key(|v| version(v))
        .unwrap();
    assert_eq!(tested, newest, "TESTED_UP_TO and the newest TimescaleDB scripts/versions.sh pins");
    let majors: Vec<String> = (shell_value(&sh, "PG_MAJORS").trim_matches(['(', ')']).split(' '))
        .map(String::from)
        .collect();
    let (last, rest) = majors.split_last().unwrap();
    let postgres = format!("PostgreSQL {} and {last}", rest.join(", "));
    let supported =
        format!("{postgres} with TimescaleDB {minimum} or later (tested up to {tested})");
    assert!(flat(&read("README.md")).contains(&supported), "the README says: {supported}");
    let versions = flat(&versions);
    assert!(versions.contains(&format!("{minimum} or later** (tested up to {tested})")));
    assert!(versions.contains(&format!("builds for {postgres}")), "{postgres}");
}

#[test]
fn the_capability_table_names_what_the_code_checks() {
    let versions = read("docs/versions.md");
    let rows = table_rows(section(&versions, "## Capabilities"));
    assert!(rows.len() >= 5, "{rows:?}");
    let code = source_with("const MIN_TIMESCALEDB");
    // a function or setting the table names, as the code's message names it
    let names: Vec<String> = (rows.iter().flat_map(|r| code_spans(&r[0])))
        .filter(|s| s.contains(['.', '(', '_']))
        .map(String::from)
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    let missing: Vec<&String> = names.iter().filter(|n| !code.contains(n.as_str())).collect();
    assert!(
        missing.is_empty(),
        "docs/versions.md names capabilities the code does not check: {missing:?}"
    );
}

#[test]
fn the_test_tiers_table_lists_every_test_file() {
    let testing = read("docs/testing.md");
    let listed: BTreeSet<String> = (table_rows(section(&testing, "## Test tiers")).iter())
        .filter(|r| r[1].contains("tests/tests/"))
        .flat_map(|r| code_spans(&r[1]).into_iter().map(String::from).collect::<Vec<_>>())
        .filter(|s| s.ends_with(".rs"))
        .map(|s| s.rsplit('/').next().unwrap().to_string())
        .collect();
    let files: BTreeSet<String> = (std::fs::read_dir(root().join("tests/tests")).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".rs"))
        .collect();
    assert_eq!(listed, files, "docs/testing.md's Test tiers and the files in tests/tests");
}

/// The text outside fenced blocks.
fn prose(text: &str) -> String {
    let mut fenced = false;
    let keep = |l: &&str| {
        fenced ^= l.starts_with("```");
        !fenced && !l.starts_with("```")
    };
    text.lines().filter(keep).collect::<Vec<_>>().join("\n")
}

/// The targets of the relative links `[…](target)` of a document.
fn relative_links(text: &str) -> Vec<String> {
    (prose(text).split("](").skip(1))
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_string()))
        .filter(|t| !t.contains("://") && !t.starts_with("mailto:"))
        .collect()
}

/// The anchors of a document's headings, as GitHub makes them: lower case, spaces to
/// hyphens, punctuation other than hyphens and underscores dropped.
fn anchors(text: &str) -> BTreeSet<String> {
    (prose(text).lines())
        .filter_map(|l| l.strip_prefix('#').map(|h| h.trim_start_matches('#')))
        .filter_map(|h| h.strip_prefix(' '))
        .map(|h| {
            (h.trim().to_lowercase().chars())
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_relative_link_leads_to_a_file_and_heading_that_exist() {
    let mut broken = vec![];
    for (doc, text) in documents() {
        let dir = root().join(&doc).parent().unwrap().to_path_buf();
        for link in relative_links(&text) {
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() { root().join(&doc) } else { dir.join(file) };
            if !target.exists() {
                broken.push(format!("{doc}: {link}: no such file"));
            } else if !anchor.is_empty() {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap());
                if !headings.contains(anchor) {
                    broken.push(format!("{doc}: {link}: no such heading in {headings:?}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn every_document_in_docs_is_linked_from_the_readme() {
    let linked: BTreeSet<String> = (relative_links(&read("README.md")).into_iter())
        .map(|l| l.split('#').next().unwrap().to_string())
        .collect();
    let unlinked: Vec<String> = (documents().into_iter().skip(1))
        .map(|(doc, _)| doc)
        .filter(|doc| !linked.contains(doc))
        .collect();
    assert!(unlinked.is_empty(), "documents the README does not link to: {unlinked:?}");
}

#[test]
fn the_checks_find_tables_sections_links_and_anchors() {
    let text = "# T\n\n## The old `x_y` script\n\n| a | b |\n|---|---|\n| `p.q(r)` | 2 |\n\n\
                [t](docs/a.md#s) [u](https://example.com) [v](#the-old-x_y-script)\n\
                ```sql\n[w](nowhere.md)\n```\n### Sub\n\ntext\n## Next\n";
    assert_eq!(table_rows(text), vec![vec!["`p.q(r)`".to_string(), "2".to_string()]]);
    assert_eq!(code_spans("`p.q(r)`, `s`"), vec!["p.q(r)", "s"]);
    assert_eq!(relative_links(text), vec!["docs/a.md#s", "#the-old-x_y-script"]);
    let expected: BTreeSet<String> =
        ["t", "the-old-x_y-script", "sub", "next"].map(String::from).into();
    assert_eq!(anchors(text), expected);
    assert!(section(text, "## The old `x_y` script").contains("### Sub\n\ntext"));
    assert!(!section(text, "## The old `x_y` script").contains("Next"));
    let sh = "PG_MAJORS=(15 16)\nPG15_DEB_VERSION=\"15.18-0+deb12u1\"\n\
              declare -A PG_PYPI_VERSION=([16]=\"16.15.0\")\n\
              declare -A TIMESCALEDB_VERSION=([15]=\"2.28.3\" [16]=\"2.29.2\")\n\
              TIMESCALEDB_MINIMUM=\"2.23.0\"\nTIMESCALEDB_MINIMUM_MAJOR=16\n";
    let pairs: Vec<(&str, &str)> =
        vec![("15.18", "2.28.3"), ("16.15", "2.23.0"), ("16.15", "2.29.2")];
    let pairs: BTreeSet<(String, String)> =
        pairs.into_iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
    assert_eq!(pinned_pairs(sh), pairs);
}
