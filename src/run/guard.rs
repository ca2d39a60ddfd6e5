//! Error guarding: a phase of a run that fails leaves nothing held. In a call that
//! commits as it goes, the failed phase is rolled back to its subtransaction, the
//! policy schedule put back, the run recorded as failed and the lock released; that
//! is committed, and then the error is raised. In an atomic call the error aborts it
//! all, history included.

use super::prepare::{prepare, Prepared};
use super::{lock, policy};
use crate::config::Config;
use crate::spi::{self, Session};
use std::panic::AssertUnwindSafe;

/// Runs one phase of the run `run_id` (None before its history row exists).
pub fn guarded<T>(session: &Session, prep: &Prepared, run_id: Option<i64>, f: impl FnOnce() -> T) -> T {
    if !session.nonatomic() {
        return f();
    }
    match spi::in_subtransaction(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            if let Err(cleanup) = spi::in_subtransaction(AssertUnwindSafe(|| policy::release(prep))) {
                pgrx::warning!(
                    "backfill_ext: could not put back the compression policy schedule of {} ({}); the next run will",
                    prep.dest.name,
                    spi::caught_message(&cleanup)
                );
            }
            if let Some(id) = run_id {
                let (state, msg) = (spi::caught_sqlstate(&e), spi::caught_message(&e));
                let _ = spi::in_subtransaction(AssertUnwindSafe(|| crate::history::fail(id, &state, &msg)));
            }
            lock::release(&prep.dest, session);
            session.commit();
            spi::reraise_with_hint(
                e,
                "the failed step was rolled back: its rows are still in the staging table, chunks are compressed as before \
                 and the compression policy's schedule is restored; fix the cause and run again",
            )
        }
    }
}

/// Validates; in a call that commits as it goes, a failure is recorded in the history.
pub fn prepare_recorded(session: &Session, job_id: Option<i32>, cfg: Config) -> Prepared {
    if !session.nonatomic() {
        return prepare(cfg);
    }
    let (staging, destination) = (cfg.staging_table.clone(), cfg.destination.clone());
    match spi::in_subtransaction(AssertUnwindSafe(|| prepare(cfg))) {
        Ok(p) => p,
        Err(e) => {
            let (state, msg) = (spi::caught_sqlstate(&e), spi::caught_message(&e));
            let _ = spi::in_subtransaction(AssertUnwindSafe(|| crate::history::failed_start(job_id, &staging, &destination, &state, &msg)));
            session.commit();
            spi::reraise_with_hint(e, "nothing was changed; correct the job's config or tables and run again")
        }
    }
}

/// Takes the destination's lock (see `lock::acquire`); a run cancelled while it waits
/// holds nothing, and is recorded as failed.
pub fn acquire_recorded(session: &Session, job_id: Option<i32>, prep: &Prepared) -> bool {
    if !session.nonatomic() {
        return lock::acquire(prep, session);
    }
    match spi::in_subtransaction(AssertUnwindSafe(|| lock::acquire(prep, session))) {
        Ok(got) => got,
        Err(e) => {
            let (state, msg) = (spi::caught_sqlstate(&e), spi::caught_message(&e));
            let (staging, destination) = (prep.staging.name.to_string(), prep.dest.name.to_string());
            let _ = spi::in_subtransaction(AssertUnwindSafe(|| crate::history::failed_start(job_id, &staging, &destination, &state, &msg)));
            session.commit();
            spi::reraise_with_hint(e, "the run stopped while it waited for another run on the destination; nothing was changed")
        }
    }
}
