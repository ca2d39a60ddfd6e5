//! Test hooks: settings that make a run stop at a named step or take a path the
//! tests' data would not.

use super::{col, p, query_one, run};

/// A test hook: when the setting `backfill_ext.debug_pause_at` names `point`, the run
/// stops there (in `pg_sleep`, so it can be cancelled or terminated) as if it were slow.
/// Crash tests use it to kill a run at a precise step.
pub fn pause_point(point: &str) {
    let at = query_one("SELECT pg_catalog.current_setting('backfill_ext.debug_pause_at', true)", &[], |r| col::<String>(r, 1)).flatten();
    if at.as_deref() == Some(point) {
        pgrx::log!("backfill_ext: pausing at {point} (backfill_ext.debug_pause_at)");
        run("SELECT pg_catalog.pg_sleep(3600)", &[]);
    }
}

/// Whether the test setting `backfill_ext.debug_<name>` is `on` (tests use it to take
/// paths the data they can afford would not).
pub fn debug_setting(name: &str) -> bool {
    query_one("SELECT pg_catalog.current_setting($1, true) = 'on'", &[p(format!("backfill_ext.debug_{name}"))], |r| col::<bool>(r, 1))
        .flatten()
        .unwrap_or(false)
}

