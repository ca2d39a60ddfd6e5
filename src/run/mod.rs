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
//! - `parallel`, `pool`, `worker`: chunk transactions in background workers
//!   (config key `workers`);
//! - `caggs`: continuous aggregates brought up to date after the run;
//! - `outcome`: what steps and runs did.
//!
//! How a chunk takes its rows is `crate::strategy`.

pub(crate) mod caggs;
pub(crate) mod guard;
pub(crate) mod lock;
mod parallel;
pub(crate) mod planning;
pub(crate) mod policy;
pub(crate) mod pool;
pub(crate) mod prepare;
pub(crate) mod totals;
pub(crate) mod worker;

pub use planning::make_plan;
pub use prepare::prepare;
pub use totals::Totals;

use crate::config::Config;
use crate::plan::{self, Plan, Step, Strategy};
use crate::spi::{self, Session};
use crate::step::{ms, settings, temp_tables, Prepared, StepResult};
use crate::timescale::Chunk;
use pgrx::notice;
use std::cell::Cell;
use std::time::Instant;

/// A run under way: its session, what it validated, its history row.
struct Run<'a> {
    session: &'a Session,
    prep: &'a Prepared,
    id: i64,
    started: Instant,
    /// When the compression policy was last pushed out (see `between`).
    held: Cell<Instant>,
    /// Transactions of chunk steps and of the rest done so far.
    done: Cell<usize>,
}

/// The whole run.
pub fn backfill(session: &Session, job_id: Option<i32>, cfg: Config) -> Totals {
    let started = Instant::now();
    let prep = guard::prepare_recorded(session, job_id, cfg);
    // validation left the caller's settings alone; the run's own statements use the config's
    settings::apply(&prep.cfg);
    debug_elapsed(&started, "prepare");
    if !guard::acquire_recorded(session, job_id, &prep) {
        skip(session, job_id, &prep);
        return Totals::default();
    }
    let id = start(session, job_id, &prep);
    let run = Run {
        session,
        prep: &prep,
        id,
        started,
        held: Cell::new(Instant::now()),
        done: Cell::new(0),
    };
    let mut totals = Totals::default();
    if run.whole_staging(&mut totals) {
        run.finish(false);
        report(&run, &totals);
        return totals;
    }
    let plan = run.plan_and_hold();
    let stopped_early = run.chunks(&plan, &mut totals) || run.rest(&plan, &mut totals);
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
    crate::history::skipped(
        job_id,
        &prep.staging.name.to_string(),
        &prep.dest.name.to_string(),
        prep.dest.oid,
        &reason,
    );
    session.commit();
}

/// The run's history row, committed.
fn start(session: &Session, job_id: Option<i32>, prep: &Prepared) -> i64 {
    let id = guard::guarded(session, prep, None, || {
        crate::history::start(
            job_id,
            &prep.staging.name.to_string(),
            &prep.dest.name.to_string(),
            prep.dest.oid,
            &prep.history_retention,
        )
    });
    session.commit();
    id
}

impl Run<'_> {
    /// Runs one phase guarded, then commits it.
    fn phase<T>(&self, name: &str, f: impl FnOnce() -> T) -> T {
        let v = guard::guarded(self.session, self.prep, Some(self.id), f);
        self.session.commit();
        debug_elapsed(&self.started, name);
        v
    }

    /// The whole staging table in one transaction, before any plan, where it may
    /// (`strategy::whole`); returns whether it went so. Nothing is held: the policy,
    /// if it runs meanwhile, waits for the transaction's chunk locks.
    fn whole_staging(&self, totals: &mut Totals) -> bool {
        let prep = self.prep;
        let done = self.phase("whole staging", || {
            settings::apply(&prep.cfg);
            let done = crate::strategy::whole::try_move(prep)?;
            let finished: Vec<(&Chunk, &StepResult)> = done.iter().map(|(c, r)| (c, r)).collect();
            crate::history::chunks(self.id, &finished);
            Some(done)
        });
        let Some(done) = done else {
            return false;
        };
        self.done.set(1);
        notice!(
            "backfill_ext: every staging row belonged in a compressed chunk: {} chunks took \
             them as compressed batches in one transaction, and {} was emptied with TRUNCATE",
            done.len(),
            prep.staging.name
        );
        done.iter().for_each(|(c, r)| report_chunk(c, r, totals));
        true
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
        self.held.set(Instant::now());
        // a test build stops here, between two of the run's transactions, to show that a
        // cancel there leaves nothing held and the run recorded as failed
        #[cfg(feature = "test_hooks")]
        self.phase("after hold", || spi::pause_point("after_hold"));
        plan
    }

    /// Between two of the run's transactions (before the first, nothing to do). Where
    /// it `may_stop`, stops when `max_runtime` has passed: returns false, after a
    /// NOTICE saying what is `left` (each run makes at least one transaction, so runs
    /// cut short still progress). Pushes the compression policy out again once half of
    /// `compression_job_push_interval` has passed since it was last pushed, so that a
    /// run longer than the interval never meets the policy.
    fn between(&self, may_stop: bool, left: impl FnOnce() -> String) -> bool {
        let prep = self.prep;
        if self.done.get() == 0 {
            return true;
        }
        let go_on = self.phase("between", || {
            spi::pause_point("between_chunks");
            let stop = may_stop
                && prep.max_runtime_s.is_some_and(|m| self.started.elapsed().as_secs_f64() >= m);
            if stop {
                notice!(
                    "backfill_ext: max_runtime ({}) reached {}",
                    prep.cfg.max_runtime.as_deref().unwrap_or_default(),
                    left()
                );
            }
            !stop
        });
        // in a transaction of its own, so the policy is pushed from now
        if go_on && self.held.get().elapsed().as_secs_f64() * 2.0 >= prep.push_interval.seconds {
            self.phase("renew hold", || policy::renew(prep));
            self.held.set(Instant::now());
        }
        go_on
    }

    /// The chunk steps, a transaction each (or a batch of direct inserts), in this
    /// session or in background workers (`parallel`). Returns whether `max_runtime`
    /// stopped the run before the last of them.
    fn chunks(&self, plan: &Plan, totals: &mut Totals) -> bool {
        let prep = self.prep;
        // a direct compression writes one chunk's batches at a time
        let batches = if prep.cfg.delete_from_staging && prep.compress_order.is_none() {
            // a step that may write new segments in bulk is a transaction of its own
            let alone_from = match prep.new_segments {
                Some(_) => plan::NEW_SEGMENTS_FROM_ROWS,
                None => i64::MAX,
            };
            plan::batches(&plan.steps, prep.decompress_limit, alone_from)
        } else {
            (0..plan.steps.len()).map(|i| vec![i]).collect()
        };
        let workers = parallel::worker_count(self, &plan.steps, batches.len());
        if workers > 1 {
            return self.chunks_in_workers(plan, &batches, workers, totals);
        }
        let mut done = 0;
        for batch in &batches {
            if !self.between(true, || left_after(done, plan)) {
                return true;
            }
            let steps: Vec<&Step> = batch.iter().map(|i| &plan.steps[*i]).collect();
            let results = self.phase("batch", || self.batch_here(&steps, plan.routed));
            self.done.set(self.done.get() + 1);
            report_chunks(&steps, &results, totals);
            done += steps.len();
        }
        false
    }

    /// One transaction's steps, in this session, and their chunks in the history.
    fn batch_here(&self, steps: &[&Step], routed: bool) -> Vec<StepResult> {
        let results = crate::strategy::run_transaction(self.prep, steps, routed);
        let finished: Vec<(&Chunk, &StepResult)> =
            steps.iter().map(|s| &s.chunk).zip(&results).collect();
        crate::history::chunks(self.id, &finished);
        results
    }

    /// The rows outside every existing chunk, in slices of staging, a transaction
    /// each. Returns whether rows were left for the next run (`max_runtime`, or rows
    /// that met a chunk compressed since the plan).
    fn rest(&self, plan: &Plan, totals: &mut Totals) -> bool {
        let slices = self.phase("rest slices", || crate::strategy::rest::slices(self.prep, plan));
        let mut left = false;
        for (i, slice) in slices.iter().enumerate() {
            // max_runtime never holds back the first slice: it goes with the last chunk
            if !self.between(i > 0, || {
                format!(
                    "after {i} of {} slices of rows outside existing \
                chunks; the rest are left for the next run",
                    slices.len()
                )
            }) {
                return true;
            }
            let done = self.phase("rest", || {
                let done = crate::strategy::rest::apply(self.prep, plan, *slice);
                if let Some((rest, new_chunks)) = &done {
                    crate::history::add(self.id, rest, *new_chunks);
                }
                done
            });
            self.done.set(self.done.get() + 1);
            let Some((rest, new_chunks)) = done else {
                left = true;
                continue;
            };
            if rest.moved > 0 || rest.recompressed {
                notice!(
                    "backfill_ext: rows outside existing chunks{}: {} rows moved, {} conflicts, {} \
                     new chunks, {:.0} ms",
                    if slices.len() > 1 { format!(" (slice {} of \
                        {})", i + 1, slices.len()) } else { String::new() },
                    rest.moved,
                    rest.conflicts(),
                    new_chunks,
                    rest.insert_ms + rest.recompress_ms
                );
            }
            totals.add_rows(&rest);
            totals.new_chunks += new_chunks;
        }
        left
    }

    /// Puts the policy back, drops the run's temporary tables, records success and
    /// releases the destination, in one transaction.
    fn finish(&self, stopped_early: bool) {
        self.phase("release", || {
            spi::pause_point("before_restore");
            policy::release(self.prep);
            temp_tables::drop_all();
            crate::history::succeed(self.id, stopped_early);
            lock::release(&self.prep.dest, self.session);
        });
    }
}

impl Run<'_> {
    /// After the run, with nothing held: the continuous aggregates on the destination,
    /// for the range the run changed (see `caggs`).
    fn refresh_continuous_aggregates(&self, plan: &Plan, totals: &Totals) {
        let (Some(span), true, true) =
            (&plan.span, totals.moved > 0, self.prep.cfg.refresh_continuous_aggregates)
        else {
            return;
        };
        if !crate::history::has_refresh_table() {
            notice!(
                "backfill_ext: continuous aggregates are not refreshed until ALTER EXTENSION \
                backfill_ext UPDATE has run"
            );
            return;
        }
        // the rows are in and committed: a failure to read the aggregates is a warning
        let refreshes = match spi::in_subtransaction(std::panic::AssertUnwindSafe(|| {
            caggs::plan(self.prep, span)
        })) {
            Ok(refreshes) => refreshes,
            Err(e) => {
                pgrx::warning!(
                    "backfill_ext: the continuous aggregates on {} could not be read, so none was \
                     refreshed: {}",
                    self.prep.dest.name,
                    spi::caught_message(&e)
                );
                return;
            }
        };
        caggs::refresh_all(self.session, self.prep, self.id, &refreshes);
    }
}

/// What `max_runtime` leaves after `done` chunks, for its NOTICE.
fn left_after(done: usize, plan: &Plan) -> String {
    format!(
        "after {done} chunks; the remaining {} chunks are left for the next run",
        plan.steps.len() - done
    )
}

/// Adds up the steps' results, with a NOTICE per chunk.
fn report_chunks(steps: &[&Step], results: &[StepResult], totals: &mut Totals) {
    steps.iter().zip(results).for_each(|(s, r)| report_chunk(&s.chunk, r, totals));
}

/// Adds up a chunk's result, with a NOTICE.
fn report_chunk(c: &Chunk, r: &StepResult, totals: &mut Totals) {
    totals.add_chunk(r);
    notice!(
        "backfill_ext: chunk {}: {} rows moved, {} conflicts, {}, {:.0} ms",
        c.name,
        r.moved,
        r.conflicts(),
        r.describe(),
        r.total_ms()
    );
}

/// The run's closing NOTICE.
fn report(run: &Run, t: &Totals) {
    notice!(
        "backfill_ext: run {}: moved {} rows from {} into {} ({} inserted, {} updated, {} \
         conflicts), {} chunks ({} decompressed, {} recompressed), {} new chunks, {:.0} ms",
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
fn debug_elapsed(started: &Instant, name: &str) {
    pgrx::debug1!("backfill_ext: {name} done at {:.1} ms", ms(*started));
}
