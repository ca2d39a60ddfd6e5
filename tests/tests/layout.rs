//! The crate's shape, as docs/layout.md promises it, measured on the code as
//! `rustfmt.toml` formats it (scripts/test.sh checks the formatting first):
//! - every source file under 500 lines, every test file at most 600, every function at
//!   most 60 (a test file's table-driven data aside: a function whose body is mostly one
//!   literal table of cases says so with a `// table-driven` line);
//! - no line over 100 characters (rustfmt's width; a `#[pg_test(error = "…")]` line,
//!   whose message pgrx's attribute takes whole, aside);
//! - data flows one way, module by module: each file imports only files of its own room
//!   (top-level module) or of rooms on lower floors (`FLOORS`), and no files import each
//!   other around a cycle.
//!
//! Reads the sources as text; needs no PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crate's rooms, top floor first. A room imports only rooms on floors below its own.
const FLOORS: &[&[&str]] = &[
    &["api"],
    &["jobs"],
    &["run"],
    &["strategy"],
    &["history"],
    &["step"],
    &["catalog"],
    &["spi"],
    &["sql"],
    &["plan", "columns"],
    &["timescale", "config"],
    &["ident", "route_slices", "error"],
];

/// The crate root (it declares the rooms) and the `#[pg_test]`s stand outside the floors.
const OUTSIDE: &[&str] = &["lib", "pg_tests"];

fn rust_files(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.insert(p.clone(), std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../src")
}

fn sources() -> BTreeMap<PathBuf, String> {
    let out = rust_files(&src_dir());
    assert!(out.len() > 20, "src/ has the crate's files");
    out
}

/// The client tests' files: the harness, its binaries and the tests.
fn test_sources() -> BTreeMap<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = rust_files(&root.join("src"));
    out.extend(rust_files(&root.join("tests")));
    out.insert(root.join("build.rs"), std::fs::read_to_string(root.join("build.rs")).unwrap());
    assert!(out.len() > 15, "tests/ has the client tests");
    out
}

/// Functions longer than `max` lines: a `fn` line and the closing brace at its
/// indentation; a function holding a `// table-driven` line is not measured.
fn long_functions(text: &str, max: usize) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = vec![];
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let indent = &l[..l.len() - t.len()];
        let t = t.trim_start_matches("pub(crate) ").trim_start_matches("pub(super) ");
        let t = t.trim_start_matches("pub ").trim_start_matches("const ");
        let t = t.trim_start_matches("unsafe ").trim_start_matches("extern \"C-unwind\" ");
        // a macro's `fn $name` is the functions it makes, each measured where it is written
        if !t.starts_with("fn ") || t.starts_with("fn $") || l.trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = lines[i..].iter().position(|x| *x == close) {
            let table = lines[i..i + end].iter().any(|x| x.trim() == "// table-driven");
            if end + 1 > max && !table {
                out.push((t.split('(').next().unwrap().to_string(), end + 1));
            }
        }
    }
    out
}

/// Lines wider than rustfmt's 100 characters (see the module comment for the exception).
fn wide_lines(text: &str) -> Vec<usize> {
    let wide = |l: &&str| l.chars().count() > 100 && !l.starts_with("#[pg_test(error = \"");
    text.lines().enumerate().filter(|(_, l)| wide(l)).map(|(i, _)| i + 1).collect()
}

fn size_problems(files: BTreeMap<PathBuf, String>, max_lines: usize) -> Vec<String> {
    let mut problems = vec![];
    for (path, text) in files {
        let n = text.lines().count();
        if n > max_lines {
            problems.push(format!("{}: {n} lines", path.display()));
        }
        for (f, len) in long_functions(&text, 60) {
            problems.push(format!("{}: {f} is {len} lines", path.display()));
        }
        for line in wide_lines(&text) {
            problems.push(format!("{}:{line} is over 100 characters", path.display()));
        }
    }
    problems
}

#[test]
fn source_files_and_functions_stay_small() {
    let problems = size_problems(sources(), 499);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn test_files_and_functions_stay_small() {
    let problems = size_problems(test_sources(), 600);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_size_checks_find_a_long_function_and_a_wide_line() {
    let body = "    let x = 1;\n".repeat(70);
    let text = format!("pub fn long() {{\n{body}}}\nfn short() {{\n}}\n");
    assert_eq!(long_functions(&text, 60), vec![("fn long".to_string(), 72)]);
    let table = format!("fn cases() {{\n    // table-driven\n{body}}}\n");
    assert!(long_functions(&table, 60).is_empty());
    let text = format!("fn f() {{\n    let s = \"{}\";\n}}\n", "x".repeat(100));
    assert_eq!(wide_lines(&text), vec![2]);
    assert!(wide_lines(&format!("#[pg_test(error = \"{}\")]\n", "x".repeat(100))).is_empty());
}

/// The module path of a source file: `src/run/mod.rs` is `run`, `src/sql/hold.rs` is `sql::hold`.
fn module_of(src: &Path, path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// A file's code: without its unit tests (`mod tests`, inline) and without comments.
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap();
    code.lines()
        .map(|l| if l.trim_start().starts_with("//") { "" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths `crate::…` and `super::…` name in `code`, written in file `me`.
fn named_paths(code: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = vec![];
    for (prefix, base) in
        [("crate::", vec![]), ("super::", me[..me.len().saturating_sub(1)].to_vec())]
    {
        for piece in code.split(prefix).skip(1) {
            let path = piece
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap()
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from);
            out.push(base.iter().cloned().chain(path).collect());
        }
    }
    out
}

/// Which files each file refers to (outside unit tests and comments).
fn imports(files: &BTreeMap<PathBuf, String>) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = src_dir();
    let modules: BTreeSet<Vec<String>> = files.keys().map(|p| module_of(&src, p)).collect();
    let file_of = |parts: &[String]| {
        (0..=parts.len()).rev().map(|n| parts[..n].to_vec()).find(|m| modules.contains(m))
    };
    let mut graph = BTreeMap::new();
    for (path, text) in files {
        let me = module_of(&src, path);
        let to: BTreeSet<Vec<String>> = named_paths(&code_of(text), &me)
            .iter()
            .filter_map(|p| file_of(p))
            .filter(|m| *m != me && !m.is_empty())
            .collect();
        graph.insert(me, to);
    }
    graph
}

fn cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        n: &Vec<String>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            return Some(stack[i..].to_vec());
        }
        if !done.insert(n.clone()) {
            return None;
        }
        stack.push(n.clone());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, m, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(graph, n, &mut vec![], &mut done))
}

/// A module's room: its top-level module (`lib` for the crate root).
fn room(module: &[String]) -> &str {
    module.first().map(String::as_str).unwrap_or("lib")
}

/// The floor of a room, counted from the top (0), or None for a room `FLOORS` lacks.
fn floor(room: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&room))
}

/// Every import that does not go down: from a room to itself is fine (its files are
/// checked for cycles), to a room on a lower floor is fine, anything else is reported.
fn upward_imports(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    let mut out = vec![];
    for (from, tos) in graph {
        let r = room(from);
        if OUTSIDE.contains(&r) {
            continue;
        }
        let Some(f) = floor(r) else {
            out.push(format!("{} is in no floor of FLOORS", from.join("::")));
            continue;
        };
        for to in tos.iter().filter(|to| room(to) != r) {
            if !floor(room(to)).is_some_and(|t| t > f) {
                out.push(format!("{} imports {}, not below it", from.join("::"), to.join("::")));
            }
        }
    }
    out
}

#[test]
fn no_two_files_import_each_other() {
    let graph = imports(&sources());
    let run = vec!["run".to_string()];
    assert!(graph[&run].contains(&vec!["strategy".to_string()]), "the graph sees imports");
    assert_eq!(cycle(&graph), None);
}

#[test]
fn every_module_imports_only_modules_below_it() {
    let graph = imports(&sources());
    let rooms: BTreeSet<&str> = graph.keys().map(|m| room(m)).collect();
    let listed: BTreeSet<&str> = FLOORS.iter().flat_map(|f| f.iter().copied()).collect();
    let outside: BTreeSet<&str> = OUTSIDE.iter().copied().collect();
    assert_eq!(rooms, &listed | &outside, "FLOORS lists every room of src/");
    let up = upward_imports(&graph);
    assert!(up.is_empty(), "imports that do not go down: {up:#?}");
}

#[test]
fn the_direction_check_finds_an_import_that_runs_back_up() {
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let mut g = BTreeMap::new();
    g.insert(m("strategy::merge"), BTreeSet::from([m("step::context"), m("strategy::segments")]));
    g.insert(m("step::context"), BTreeSet::from([m("sql::moves")]));
    assert!(upward_imports(&g).is_empty());
    g.insert(m("strategy::direct"), BTreeSet::from([m("run::planning")]));
    g.insert(m("sql::moves"), BTreeSet::from([m("config")]));
    g.insert(m("config"), BTreeSet::from([m("sql::moves")]));
    assert_eq!(
        upward_imports(&g),
        [
            "config imports sql::moves, not below it",
            "strategy::direct imports run::planning, not below it",
        ]
    );
    let code = "// see crate::run for the run\nuse crate::sql::hold;\nuse super::prepare;";
    assert_eq!(code_of(code).matches("crate::").count(), 1, "comments are not imports");
    assert_eq!(named_paths(&code_of(code), &m("run::lock")), [m("sql::hold"), m("run::prepare")]);
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let m = |s: &str| vec![s.to_string()];
    let mut g = BTreeMap::new();
    g.insert(m("a"), BTreeSet::from([m("b")]));
    g.insert(m("b"), BTreeSet::from([m("c")]));
    g.insert(m("c"), BTreeSet::from([m("a")]));
    assert_eq!(cycle(&g), Some(vec![m("a"), m("b"), m("c")]));
    g.insert(m("c"), BTreeSet::new());
    assert_eq!(cycle(&g), None);
}

#[test]
fn docs_layout_md_says_what_the_code_is() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/layout.md")).unwrap();
    // its floor table is FLOORS, in order
    let floors: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| l.split('|').nth(1).is_some_and(|c| c.trim().parse::<usize>().is_ok()))
        .map(|l| {
            l.split('|')
                .nth(2)
                .unwrap()
                .split(',')
                .map(|r| r.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect();
    let want: Vec<Vec<String>> =
        FLOORS.iter().map(|f| f.iter().map(|r| r.to_string()).collect()).collect();
    assert_eq!(floors, want, "docs/layout.md's floors and FLOORS");
    // every path it names exists
    let named: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|p| p.starts_with("src/") || p.starts_with("tests/") || p.starts_with("sql/"))
        .collect();
    assert!(named.len() > 10, "{named:?}");
    for p in named {
        assert!(root.join(p).exists(), "docs/layout.md names {p}, which does not exist");
    }
}
