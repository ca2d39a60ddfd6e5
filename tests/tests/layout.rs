//! The crate's shape, as the README's Layout promises it: every source file under 500
//! lines, every function under 60, and no two files that import each other (directly
//! or around a cycle). Reads `src/` as text; needs no PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources() -> BTreeMap<PathBuf, String> {
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
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../src"), &mut out);
    assert!(out.len() > 20, "src/ has the crate's files");
    out
}

/// Functions longer than `max` lines: a `fn` line and the closing brace at its indentation.
fn long_functions(text: &str, max: usize) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = vec![];
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let indent = &l[..l.len() - t.len()];
        let t = t
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ");
        let t = t.trim_start_matches("unsafe ").trim_start_matches("extern \"C-unwind\" ");
        if !t.starts_with("fn ") || l.trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = lines[i..].iter().position(|x| *x == close) {
            if end + 1 > max {
                out.push((t.split('(').next().unwrap().to_string(), end + 1));
            }
        }
    }
    out
}

#[test]
fn files_and_functions_stay_small() {
    let mut problems = vec![];
    for (path, text) in sources() {
        let n = text.lines().count();
        if n >= 500 {
            problems.push(format!("{}: {n} lines", path.display()));
        }
        for (f, len) in long_functions(&text, 60) {
            problems.push(format!("{}: {f} is {len} lines", path.display()));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_length_check_finds_a_long_function() {
    let body = "    let x = 1;\n".repeat(70);
    let text = format!("pub fn long() {{\n{body}}}\nfn short() {{\n}}\n");
    assert_eq!(long_functions(&text, 60), vec![("fn long".to_string(), 72)]);
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

/// Which files each file refers to (`crate::…` and `super::…` paths, outside unit tests).
fn imports() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
    let files = sources();
    let modules: BTreeSet<Vec<String>> = files.keys().map(|p| module_of(&src, p)).collect();
    let file_of = |parts: &[String]| {
        (0..=parts.len()).rev().map(|n| parts[..n].to_vec()).find(|m| modules.contains(m))
    };
    let mut graph = BTreeMap::new();
    for (path, text) in &files {
        let me = module_of(&src, path);
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let mut to = BTreeSet::new();
        for (prefix, base) in
            [("crate::", vec![]), ("super::", me[..me.len().saturating_sub(1)].to_vec())]
        {
            for piece in code.split(prefix).skip(1) {
                let path: Vec<String> = piece
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap()
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                let full: Vec<String> = base.iter().cloned().chain(path).collect();
                if let Some(m) = file_of(&full) {
                    if m != me && !m.is_empty() {
                        to.insert(m);
                    }
                }
            }
        }
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

#[test]
fn no_two_files_import_each_other() {
    let graph = imports();
    assert!(
        graph[&vec!["run".to_string()]].contains(&vec!["strategy".to_string()]),
        "the graph sees imports: {graph:#?}"
    );
    assert_eq!(cycle(&graph), None);
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
