//! Error guarding: a phase of a run that fails leaves nothing held. In a call that
//! commits as it goes, the failed phase is rolled back to its subtransaction, the
//! policy schedule put back, the run recorded as failed and the lock released; that
//! is committed, and then the error is raised. In an atomic call the error aborts it
//! all, history included.

use super::prepare::prepare;
use super::{lock, policy};
use crate::config::Config;
use crate::spi::{self, Session};
use crate::step::Prepared;
use std::panic::AssertUnwindSafe;

/// Runs one phase of the run `run_id` (None before its history row exists).
pub fn guarded<T>(
    session: &Session,
    prep: &Prepared,
    run_id: Option<i64>,
    f: impl FnOnce() -> T,
) -> T {
    if !session.nonatomic() {
        return f();
    }
    match spi::in_subtransaction(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            // no worker of the run goes on once the policy is back
            super::pool::stop_all();
            if let Err(cleanup) = spi::in_subtransaction(AssertUnwindSafe(|| policy::release(prep)))
            {
                pgrx::warning!(
                    "backfill_ext: could not put back the compression policy schedule of {} ({}); \
                     the next run will",
                    prep.dest.name,
                    spi::caught_message(&cleanup)
                );
            }
            if let Some(id) = run_id {
                let (state, msg) = (spi::caught_sqlstate(&e), spi::caught_message(&e));
                let _ = spi::in_subtransaction(AssertUnwindSafe(|| {
                    crate::history::fail(id, &state, &msg);
                    crate::history::forget_tasks(id);
                }));
            }
            lock::release(&prep.dest, session);
            session.commit();
            spi::reraise_with_hint(
                e,
                "the failed step was rolled back: its rows are still in the staging table, chunks \
                 are compressed as before \
                 and the compression policy's schedule is restored; fix the cause and run again",
            )
        }
    }
}

/// Validates; in a call that commits as it goes, a failure is recorded in the history.
pub fn prepare_recorded(session: &Session, job_id: Option<i32>, cfg: Config) -> Prepared {
    let (staging, destination) = (cfg.staging_table.clone(), cfg.destination.clone());
    before_start(
        session,
        job_id,
        (&staging, &destination),
        "nothing was changed; correct the job's config or tables and run again",
        || prepare(cfg),
    )
}

/// Takes the destination's lock (see `lock::acquire`); a run cancelled while it waits
/// holds nothing, and is recorded as failed.
pub fn acquire_recorded(session: &Session, job_id: Option<i32>, prep: &Prepared) -> bool {
    let (staging, destination) = (prep.staging.name.to_string(), prep.dest.name.to_string());
    before_start(
        session,
        job_id,
        (&staging, &destination),
        "the run stopped while it waited for another run on the destination; nothing was changed",
        || lock::acquire(prep, session),
    )
}

/// Runs a phase before the run's history row exists: in a call that commits as it
/// goes, a failure is recorded as a run that failed before it started (`tables`:
/// staging and destination as named), committed, and raised with `hint`.
fn before_start<T>(
    session: &Session,
    job_id: Option<i32>,
    tables: (&str, &str),
    hint: &str,
    f: impl FnOnce() -> T,
) -> T {
    if !session.nonatomic() {
        return f();
    }
    match spi::in_subtransaction(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let (state, msg) = (spi::caught_sqlstate(&e), spi::caught_message(&e));
            let _ = spi::in_subtransaction(AssertUnwindSafe(|| {
                crate::history::failed_start(job_id, tables.0, tables.1, &state, &msg)
            }));
            session.commit();
            spi::reraise_with_hint(e, hint)
        }
    }
}
