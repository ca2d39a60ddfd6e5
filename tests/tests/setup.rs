//! The set-up's TimescaleDB source (scripts/setup.sh `timescaledb_source`): an archive
//! is taken from the folder `BACKFILL_TIMESCALEDB_SOURCES` names and built only when its
//! commit id is the one scripts/versions.sh pins; otherwise a clear error names the
//! variable and the release's URL. Runs the function itself, offline.

use std::path::Path;
use std::process::Command;

/// Runs `timescaledb_source VERSION OUT` from scripts/setup.sh with `sources` as
/// `BACKFILL_TIMESCALEDB_SOURCES`; returns (success, standard error).
fn source(version: &str, sources: &Path, out: &Path) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let setup = std::fs::read_to_string(root.join("scripts/setup.sh")).unwrap();
    let start = setup.find("timescaledb_source() {").expect("setup.sh defines timescaledb_source");
    let body = &setup[start..start + setup[start..].find("\n}\n").unwrap() + 2];
    let script = format!(". scripts/versions.sh\n{body}\ntimescaledb_source \"$1\" \"$2\"");
    let o = Command::new("bash")
        .current_dir(&root)
        .env("BACKFILL_TIMESCALEDB_SOURCES", sources)
        .args(["-c", &script, "bash", version])
        .arg(out)
        .output()
        .unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).to_string())
}

#[test]
fn a_missing_or_foreign_source_archive_is_refused_with_the_variable_and_the_url() {
    let dir = std::env::temp_dir().join(format!("backfill_ext_setup_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("repo")).unwrap();
    let out = dir.join("out.tar.gz");
    let url = "https://github.com/timescale/timescaledb/archive/refs/tags/2.29.2.tar.gz";
    // no archive in the folder
    let (ok, err) = source("2.29.2", &dir, &out);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "no timescaledb-2.29.2.tar.gz in BACKFILL_TIMESCALEDB_SOURCES={}",
            dir.display()
        )),
        "{err}"
    );
    assert!(err.contains(url), "{err}");
    // an archive of another commit, named as the release
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .current_dir(dir.join("repo"))
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(st.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&st.stderr));
        String::from_utf8_lossy(&st.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    std::fs::write(dir.join("repo/README"), "not TimescaleDB").unwrap();
    git(&["add", "README"]);
    git(&["commit", "-q", "-m", "x"]);
    let commit = git(&["rev-parse", "HEAD"]);
    let archive = dir.join("timescaledb-2.29.2.tar.gz");
    git(&[
        "archive",
        "--format=tar.gz",
        "--prefix=timescaledb-2.29.2/",
        "-o",
        archive.to_str().unwrap(),
        "HEAD",
    ]);
    let (ok, err) = source("2.29.2", &dir, &out);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "the source archive of TimescaleDB 2.29.2 is of commit '{commit}', \
            not the pinned 165b77b9670b8f13103f9d3da733559d27ca4293"
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
