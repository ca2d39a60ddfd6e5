//! A release package (scripts/package.sh, built by scripts/test.sh before the client
//! tests) installs into a PostgreSQL tree that never saw the source, and works there:
//! CREATE EXTENSION and a backfill, with every file loaded from that tree. It is a
//! production build: it has none of the test hooks (the cargo feature test_hooks).

use backfill_ext_client_tests::{expect_error, pg_config, scalar, Client, Cluster, Options};
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: Option<&str> = option_env!("BACKFILL_PACKAGE");

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `dir` copied to the same absolute path under `root` (programs find their libraries
/// and shared files by their relative position), without any file of backfill_ext.
fn copy_under(root: &Path, dir: &str) -> PathBuf {
    let to = root.join(dir.trim_start_matches('/'));
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    run(Command::new("cp").arg("-a").arg(dir).arg(&to));
    run(Command::new("find").arg(&to).args(["-name", "backfill_ext*", "-delete"]));
    to
}

/// The package's library has no test hook: loaded, it registers no
/// `backfill_ext.debug_*` setting, and a run with `backfill_ext.debug_pause_at` set (a
/// placeholder nothing reads) does not stop; the library holds neither the settings'
/// names nor the pause's `pg_sleep`.
fn assert_no_test_hooks(cl: &Cluster, c: &mut Client, library: &Path) {
    let bytes = std::fs::read(library).unwrap();
    for needle in [&b"backfill_ext.debug_"[..], b"pg_sleep($1::float8)"] {
        let found = bytes.windows(needle.len()).any(|w| w == needle);
        assert!(
            !found,
            "the release library contains {:?}: it was built with the test hooks",
            String::from_utf8_lossy(needle)
        );
    }
    // a run with the pause set runs through (it would sleep an hour in a test build)
    c.batch_execute(
        "INSERT INTO late SELECT i, now(), 2 FROM generate_series(251, 260) i;
         SET backfill_ext.debug_pause_at = 'after_hold'; SET statement_timeout = '60s';
         CALL backfill_on_schedule(NULL, \
         '{\"staging_table\":\"late\", \"destination_hypertable\":\"readings\"}');
         RESET statement_timeout; RESET backfill_ext.debug_pause_at;",
    )
    .unwrap();
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM readings"), 260);
    // a new session with the library loaded: no such setting exists
    let mut s = cl.connect("t");
    s.batch_execute("LOAD 'backfill_ext'").unwrap();
    assert_eq!(
        scalar::<i64>(&mut s, "SELECT count(*) FROM pg_settings WHERE name LIKE 'backfill_ext.%'"),
        0
    );
    let unset: Option<String> =
        scalar(&mut s, "SELECT current_setting('backfill_ext.debug_pause_at', true)");
    assert_eq!(unset, None, "backfill_ext.debug_pause_at is not registered");
    let (code, msg, _) = expect_error(&mut s, "SHOW backfill_ext.debug_pause_at");
    assert_eq!(code, "42704", "{msg}");
}

/// The running PostgreSQL's major version, as the package's folders name it.
fn major_version() -> String {
    pg_config("--version").split_whitespace().nth(1).unwrap().split('.').next().unwrap().to_string()
}

/// A copy of this PostgreSQL's programs, libraries and shared files under `root`, without
/// backfill_ext. Returns its bindir, pkglibdir and sharedir.
fn copy_tree(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let bindir = copy_under(root, &pg_config("--bindir"));
    let libdir = copy_under(root, &pg_config("--pkglibdir"));
    let sharedir = copy_under(root, &pg_config("--sharedir"));
    // the copy reports its own folders, and has no backfill_ext before the package
    let copy_config = |flag: &str| {
        let out = Command::new(bindir.join("pg_config")).arg(flag).output().unwrap();
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    };
    assert_eq!(copy_config("--pkglibdir"), libdir);
    assert_eq!(copy_config("--sharedir"), sharedir);
    assert!(
        !libdir.join("backfill_ext.so").exists()
            && !sharedir.join("extension/backfill_ext.control").exists()
    );
    (bindir, libdir, sharedir)
}

/// Install: the package's two folders into the tree's.
fn install_package(package: &Path, root: &Path, libdir: &Path, sharedir: &Path) {
    let major = major_version();
    let unpacked = root.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar").arg("-xzf").arg(package).arg("-C").arg(&unpacked));
    let pkg_lib = unpacked.join(format!("usr/lib/postgresql/{major}/lib"));
    let pkg_ext = unpacked.join(format!("usr/share/postgresql/{major}/extension"));
    for (from, to) in [(&pkg_lib, libdir.to_path_buf()), (&pkg_ext, sharedir.join("extension"))] {
        for f in
            std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())).flatten()
        {
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    run(Command::new("chmod").args(["-R", "o+rX"]).arg(root));
}

/// The installed version is this build's, and a backfill runs through.
fn assert_a_backfill_runs(c: &mut Client) {
    let version: String =
        scalar(c, "SELECT extversion FROM pg_extension WHERE extname = 'backfill_ext'");
    assert_eq!(version, env!("BACKFILL_EXT_VERSION"));
    c.batch_execute(
        "CREATE TABLE readings (id int PRIMARY KEY, at timestamptz NOT NULL, v float8);
         CREATE TABLE late (LIKE readings);
         INSERT INTO readings SELECT i, now(), 0 FROM generate_series(1, 100) i;
         INSERT INTO late SELECT i, now(), 1 FROM generate_series(51, 250) i;
         CALL backfill_on_schedule(NULL, \
         '{\"staging_table\":\"late\", \"destination_hypertable\":\"readings\"}');",
    )
    .unwrap();
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM readings"), 250);
    assert_eq!(
        scalar::<i64>(c, "SELECT count(*) FROM readings WHERE v = 0"),
        100,
        "DO NOTHING kept the existing rows"
    );
    assert_eq!(scalar::<i64>(c, "SELECT count(*) FROM late"), 0);
    assert_eq!(scalar::<String>(c, "SELECT status FROM backfill_runs"), "succeeded");
}

#[test]
#[cfg_attr(
    not(package),
    ignore = "no release package was built for this PostgreSQL (scripts/package.sh)"
)]
fn a_release_package_installs_into_another_postgresql_tree_and_runs_a_backfill() {
    let package = PathBuf::from(PACKAGE.unwrap());
    let root =
        std::env::temp_dir().join(format!("backfill_ext_package_tree_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (bindir, libdir, sharedir) = copy_tree(&root);
    install_package(&package, &root, &libdir, &sharedir);

    let cl = Cluster::start(Options { bindir: Some(bindir.clone()), ..Default::default() });
    let mut c = cl.create_db("t");
    assert_a_backfill_runs(&mut c);
    assert_no_test_hooks(&cl, &mut c, &libdir.join("backfill_ext.so"));
    drop(cl);
    let _ = std::fs::remove_dir_all(&root);
}
