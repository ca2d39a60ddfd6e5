//! Test hooks: settings that make a run stop at a named step, or take a path the tests'
//! data would not. They exist only in builds with the cargo feature `test_hooks`
//! (scripts/test.sh installs such a build for the client tests), where `_PG_init`
//! registers them as settings:
//! - `backfill_ext.debug_pause_at` (text): the run stops at the step it names, in
//!   `pg_sleep`, so it can be cancelled or terminated there; crash tests use it to kill
//!   a run at a precise step;
//! - `backfill_ext.debug_pause_seconds` (integer, default 3600): how long that stop
//!   lasts; a short one stands for a long transaction at that step; at a point that
//!   does not answer (`unresponsive_point`), interrupts are held meanwhile, so the
//!   process stands for one that does not stop when told to;
//! - `backfill_ext.debug_always_route` (bool): route staged rows to their chunks
//!   whatever their number, in route table rows of at most 3 ids (at most 10 held),
//!   so that a test's few rows take every path of `route_slices`;
//! - `backfill_ext.debug_rewrite_on_disk` (bool): rewrite a chunk on disk even where it
//!   fits in memory.
//!
//! Without the feature every hook compiles to nothing: `pause_point` and
//! `unresponsive_point` are empty, `always_route` and `rewrite_on_disk` are the
//! constant false, and a production build registers no setting, reads none, and never
//! sleeps.

#[cfg(feature = "test_hooks")]
mod enabled {
    use crate::spi::execute;
    use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
    use std::ffi::CString;

    static PAUSE_AT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
    static ALWAYS_ROUTE: GucSetting<bool> = GucSetting::<bool>::new(false);
    static REWRITE_ON_DISK: GucSetting<bool> = GucSetting::<bool>::new(false);
    static PAUSE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(3600);

    /// Registers the four settings (from `_PG_init`). A value set before the library
    /// was loaded (`SET`, `ALTER DATABASE … SET`) is taken over from its placeholder.
    pub fn register() {
        GucRegistry::define_string_guc(
            c"backfill_ext.debug_pause_at",
            c"Test hook (test builds only): the step at which a run stops, in pg_sleep.",
            c"Built only with the cargo feature test_hooks. A run stops at the named step \
              (after_hold, \
              after_decompress, after_insert, between_chunks, before_restore) until it is \
              cancelled or terminated.",
            &PAUSE_AT,
            GucContext::Userset,
            GucFlags::default(),
        );
        GucRegistry::define_int_guc(
            c"backfill_ext.debug_pause_seconds",
            c"Test hook (test builds only): how long a run stops at backfill_ext.debug_pause_at.",
            c"Built only with the cargo feature test_hooks. A short stop stands for a long \
              transaction at that step.",
            &PAUSE_SECONDS,
            0,
            3600,
            GucContext::Userset,
            GucFlags::default(),
        );
        GucRegistry::define_bool_guc(
            c"backfill_ext.debug_always_route",
            c"Test hook (test builds only): route staged rows to their chunks whatever their \
              number.",
            c"Built only with the cargo feature test_hooks, for tests whose data is too small to \
              be routed otherwise.",
            &ALWAYS_ROUTE,
            GucContext::Userset,
            GucFlags::default(),
        );
        GucRegistry::define_bool_guc(
            c"backfill_ext.debug_rewrite_on_disk",
            c"Test hook (test builds only): rewrite a chunk on disk even where it fits in memory.",
            c"Built only with the cargo feature test_hooks, for tests whose chunks are too small \
              to be rewritten on disk otherwise.",
            &REWRITE_ON_DISK,
            GucContext::Userset,
            GucFlags::default(),
        );
    }

    /// Stops the run here (in `pg_sleep`, cancellable and terminable) when
    /// `backfill_ext.debug_pause_at` names `point`.
    pub fn pause_point(point: &str) {
        if PAUSE_AT.get().is_some_and(|at| at.as_bytes() == point.as_bytes()) {
            pgrx::log!("backfill_ext: pausing at {point} (backfill_ext.debug_pause_at)");
            execute(
                "SELECT pg_catalog.pg_sleep($1::float8)",
                &[crate::spi::p(PAUSE_SECONDS.get().to_string())],
            );
        }
    }

    /// Like `pause_point`, with interrupts held: neither a cancel nor a terminate ends
    /// the stop, which lasts `backfill_ext.debug_pause_seconds`.
    pub fn unresponsive_point(point: &str) {
        if PAUSE_AT.get().is_some_and(|at| at.as_bytes() == point.as_bytes()) {
            pgrx::log!("backfill_ext: holding interrupts at {point} (backfill_ext.debug_pause_at)");
            unsafe { pgrx::pg_sys::InterruptHoldoffCount += 1 };
            std::thread::sleep(std::time::Duration::from_secs(PAUSE_SECONDS.get() as u64));
            unsafe { pgrx::pg_sys::InterruptHoldoffCount -= 1 };
        }
    }

    /// `backfill_ext.debug_always_route`.
    pub fn always_route() -> bool {
        ALWAYS_ROUTE.get()
    }

    /// `backfill_ext.debug_rewrite_on_disk`.
    pub fn rewrite_on_disk() -> bool {
        REWRITE_ON_DISK.get()
    }
}

#[cfg(feature = "test_hooks")]
pub use enabled::{always_route, pause_point, register, rewrite_on_disk, unresponsive_point};

/// The test hooks' settings (none in a production build), for a background worker to
/// take over from its run.
#[cfg(feature = "test_hooks")]
pub const TEST_HOOKS: &[&str] = &[
    "backfill_ext.debug_pause_at",
    "backfill_ext.debug_pause_seconds",
    "backfill_ext.debug_always_route",
    "backfill_ext.debug_rewrite_on_disk",
];
#[cfg(not(feature = "test_hooks"))]
pub const TEST_HOOKS: &[&str] = &[];

/// A test hook, absent from this build (no feature `test_hooks`): does nothing.
#[cfg(not(feature = "test_hooks"))]
#[inline(always)]
pub fn pause_point(_point: &str) {}

/// A test hook, absent from this build (no feature `test_hooks`): does nothing.
#[cfg(not(feature = "test_hooks"))]
#[inline(always)]
pub fn unresponsive_point(_point: &str) {}

/// A test hook, absent from this build (no feature `test_hooks`): always false.
#[cfg(not(feature = "test_hooks"))]
#[inline(always)]
pub const fn always_route() -> bool {
    false
}

/// A test hook, absent from this build (no feature `test_hooks`): always false.
#[cfg(not(feature = "test_hooks"))]
#[inline(always)]
pub const fn rewrite_on_disk() -> bool {
    false
}
