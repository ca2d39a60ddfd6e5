//! One backfill run, as the README's "What a run does" tells it: validate → lock the
//! destination → plan → hold the compression policy → one transaction per chunk (or
//! batch of chunks) → the rows outside every chunk → put the policy back. Each phase
//! commits when the call may commit (a procedure called by `CALL` or by a scheduler),
//! and each runs guarded (`guard`), so that a failure leaves nothing held and a history
//! row that says what happened.
//!
//! - `prepare`: validation, into `Prepared`;
//! - `settings`: the run's `lock_timeout` and `work_mem`;
//! - `lock`: one run at a time per destination;
//! - `planning`: what the plan is made from (the choice itself is `crate::plan`);
//! - `policy`: the compression policy hold;
//! - `guard`: error guarding;
//! - `caggs`: continuous aggregates brought up to date after the run;
//! - `outcome`: what steps and runs did.
//!
//! How a chunk takes its rows is `crate::strategy`.

pub mod caggs;
pub mod guard;
pub mod lock;
pub mod outcome;
pub mod planning;
pub mod policy;
pub mod prepare;
pub mod settings;

pub use outcome::{StepResult, Totals};
pub use planning::make_plan;
pub use prepare::{prepare, Prepared};

use crate::config::Config;
use crate::plan::{self, Plan, Step, Strategy};
use crate::spi::{self, Session};
use crate::timescale::Chunk;
use outcome::ms;
use pgrx::notice;
use std::time::Instant;

/// A run under way: its session, what it validated, its history row.
struct Run<'a> {
    session: &'a Session,
    prep: &'a Prepared,
    id: i64,
    started: Instant,
}

/// The whole run.
pub fn backfill(session: &Session, job_id: Option<i32>, cfg: Config) -> Totals {
    let started = Instant::now();
    let prep = guard::prepare_recorded(session, job_id, cfg);
    // validation left the caller's settings alone; the run's own statements use the config's
    settings::apply(&prep.cfg);
    phase(&started, "prepare");
    if !guard::acquire_recorded(session, job_id, &prep) {
        skip(session, job_id, &prep);
        return Totals::default();
    }
    let run = Run { session, prep: &prep, id: start(session, job_id, &prep), started };
    let plan = run.plan_and_hold();
    let mut totals = Totals::default();
    let stopped_early = run.chunks(&plan, &mut totals);
    if !stopped_early {
        run.rest(&plan, &mut totals);
    }
    run.finish(stopped_early);
    run.refresh_continuous_aggregates(&plan, &totals);
    report(&run, &totals);
    totals
}

/// Another run holds the destination past `lock_wait`: a history row says so.
fn skip(session: &Session, job_id: Option<i32>, prep: &Prepared) {
    let reason = format!(
        "{} is working on {}; this run{} waited {} and exits without changes",
        lock::holder(&prep.dest),
        prep.dest.name,
        job_id.map(|j| format!(" of job {j}")).unwrap_or_default(),
        prep.cfg.lock_wait
    );
    notice!("backfill_ext: {reason}");
    crate::history::skipped(job_id, &prep.staging.name.to_string(), &prep.dest.name.to_string(), prep.dest.oid, &reason);
    session.commit();
}

/// The run's history row, committed.
fn start(session: &Session, job_id: Option<i32>, prep: &Prepared) -> i64 {
    let id = guard::guarded(session, prep, None, || {
        crate::history::start(job_id, &prep.staging.name.to_string(), &prep.dest.name.to_string(), prep.dest.oid, &prep.history_retention)
    });
    session.commit();
    id
}

impl Run<'_> {
    /// Runs one phase guarded, then commits it.
    fn phase<T>(&self, name: &str, f: impl FnOnce() -> T) -> T {
        let v = guard::guarded(self.session, self.prep, Some(self.id), f);
        self.session.commit();
        phase(&self.started, name);
        v
    }

    /// Plans, and holds the compression policy, in one transaction.
    fn plan_and_hold(&self) -> Plan {
        let prep = self.prep;
        let plan = self.phase("plan and hold", || {
            settings::apply(&prep.cfg);
            let plan = make_plan(prep);
            if plan.steps.iter().any(|s| s.strategy != Strategy::Insert) {
                crate::strategy::require_owner(prep);
            }
            policy::hold(prep);
            plan
        });
        // every moment between the run's transactions is guarded too: a cancel there
        // leaves nothing held and the run recorded as failed
        self.phase("after hold", || spi::pause_point("after_hold"));
        plan
    }

    /// The chunk steps, a transaction each (or a batch of direct inserts). Returns
    /// whether `max_runtime` stopped the run before the last of them.
    fn chunks(&self, plan: &Plan, totals: &mut Totals) -> bool {
        let prep = self.prep;
        let batches = if prep.cfg.delete_from_staging {
            plan::batches(&plan.steps, prep.decompress_limit)
        } else {
            (0..plan.steps.len()).map(|i| vec![i]).collect()
        };
        let mut done = 0;
        for (b, batch) in batches.iter().enumerate() {
            let steps: Vec<&Step> = batch.iter().map(|i| &plan.steps[*i]).collect();
            let results = self.phase("batch", || {
                if b > 0 {
                    spi::pause_point("between_chunks");
                }
                // at least one transaction per run, so runs cut short still make progress
                if b > 0 && prep.max_runtime_s.is_some_and(|m| self.started.elapsed().as_secs_f64() >= m) {
                    notice!(
                        "backfill_ext: max_runtime ({}) reached after {done} chunks; the remaining {} chunks are left for the next run",
                        prep.cfg.max_runtime.as_deref().unwrap_or_default(),
                        plan.steps.len() - done
                    );
                    return None;
                }
                let results = crate::strategy::run_transaction(prep, &steps, plan.routed);
                let finished: Vec<(&Chunk, &StepResult)> = steps.iter().map(|s| &s.chunk).zip(&results).collect();
                crate::history::chunks(self.id, &finished);
                Some(results)
            });
            let Some(results) = results else { return true };
            for (s, r) in steps.iter().zip(&results) {
                totals.add_chunk(r);
                notice!(
                    "backfill_ext: chunk {}: {} rows moved, {} conflicts, {}, {:.0} ms",
                    s.chunk.name,
                    r.moved,
                    r.conflicts(),
                    r.describe(),
                    r.total_ms()
                );
            }
            done += steps.len();
        }
        false
    }

    /// The rows outside every existing chunk.
    fn rest(&self, plan: &Plan, totals: &mut Totals) {
        let (rest, new_chunks) = self.phase("rest", || {
            let (rest, new_chunks) = crate::strategy::rest::apply(self.prep, plan);
            crate::history::add(self.id, &rest, new_chunks);
            (rest, new_chunks)
        });
        if rest.moved > 0 || rest.recompressed {
            notice!(
                "backfill_ext: rows outside existing chunks: {} rows moved, {} conflicts, {} new chunks, {:.0} ms",
                rest.moved,
                rest.conflicts(),
                new_chunks,
                rest.insert_ms + rest.recompress_ms
            );
        }
        totals.add_rows(&rest);
        totals.new_chunks = new_chunks;
    }

    /// Puts the policy back, drops the run's temporary tables, records success and
    /// releases the destination, in one transaction.
    fn finish(&self, stopped_early: bool) {
        self.phase("release", || {
            spi::pause_point("before_restore");
            policy::release(self.prep);
            planning::drop_temp_tables();
            crate::history::succeed(self.id, stopped_early);
            lock::release(&self.prep.dest, self.session);
        });
    }
}

impl Run<'_> {
    /// After the run, with nothing held: the continuous aggregates on the destination,
    /// for the range the run changed (see `caggs`).
    fn refresh_continuous_aggregates(&self, plan: &Plan, totals: &Totals) {
        let (Some(span), true, true) = (&plan.span, totals.moved > 0, self.prep.cfg.refresh_continuous_aggregates) else { return };
        if !crate::history::has_refresh_table() {
            notice!("backfill_ext: continuous aggregates are not refreshed until ALTER EXTENSION backfill_ext UPDATE has run");
            return;
        }
        // the rows are in and committed: a failure to read the aggregates is a warning
        let refreshes = match spi::in_subtransaction(std::panic::AssertUnwindSafe(|| caggs::plan(self.prep, span))) {
            Ok(refreshes) => refreshes,
            Err(e) => {
                pgrx::warning!(
                    "backfill_ext: the continuous aggregates on {} could not be read, so none was refreshed: {}",
                    self.prep.dest.name,
                    spi::caught_message(&e)
                );
                return;
            }
        };
        caggs::refresh_all(self.session, self.prep, self.id, &refreshes);
    }
}

/// The run's closing NOTICE.
fn report(run: &Run, t: &Totals) {
    notice!(
        "backfill_ext: run {}: moved {} rows from {} into {} ({} inserted, {} updated, {} conflicts), {} chunks ({} decompressed, {} recompressed), {} new chunks, {:.0} ms",
        run.id,
        t.moved,
        run.prep.staging.name,
        run.prep.dest.name,
        t.inserted,
        t.updated,
        t.conflicts,
        t.chunks,
        t.decompressed,
        t.recompressed,
        t.new_chunks,
        ms(run.started)
    );
}

/// Reports at DEBUG1 the time since the run started (`SET client_min_messages = debug1`).
fn phase(started: &Instant, name: &str) {
    pgrx::debug1!("backfill_ext: {name} done at {:.1} ms", ms(*started));
}
