//! Chunk transactions in background workers (config key `workers`). Chunks are
//! independent, so several of their transactions can run at once, each in a worker
//! (`worker`) with every guarantee of a transaction the run makes itself: its rows
//! move exactly once, in one transaction, and its chunks are recorded with it. The run
//! itself keeps what spans transactions: the destination's lock, the policy hold and
//! its renewal, `max_runtime` (checked before each task starts), the history row, and
//! the rows outside every chunk afterwards. It writes a task, starts a worker for it,
//! and, with `workers` running, waits for one to stop and takes its outcome. A failed
//! task stops the run once the running ones have stopped: its error is raised as the
//! worker reported it. A cancel or an error in the run stops its workers (their
//! transactions roll back) before anything else is put back (`guard`).

use super::pool::Pool;
use super::totals::Totals;
use super::worker::{self, Work};
use super::{left_after, report_chunks, Run};
use crate::config::MAX_AUTO_WORKERS;
use crate::plan::{Plan, Step};
use crate::spi::{self, col, p, query, query_one, state_execute, state_query_one};
use crate::sql;
use crate::step::StepResult;
use pgrx::datum::DatumWithOid;

/// An error a worker reported: SQLSTATE, message, detail, hint.
type Failure = (String, String, Option<String>, Option<String>);

/// What became of a task.
enum Outcome {
    Done(Vec<StepResult>),
    Failed(Failure),
    /// The worker stopped before it did the task (it could not start or connect).
    NotDone,
}

/// How many workers a run uses for `transactions` chunk transactions of the plan's
/// `steps`: the config's `workers`, else the server's CPUs (at most
/// `MAX_AUTO_WORKERS`) where the steps are worth it (`plan::worth_workers`), never
/// more than there are transactions. 1 (none: the session does them) where workers cannot see
/// what the run sees: a call that does not commit as it goes, and, before PostgreSQL
/// 17, a role that cannot log in; and before `ALTER EXTENSION backfill_ext UPDATE` has
/// made the task tables.
pub(super) fn worker_count(run: &Run, steps: &[Step], transactions: usize) -> usize {
    let wanted = run.prep.cfg.workers.map(|w| w as usize).unwrap_or_else(|| {
        if !crate::plan::worth_workers(steps) {
            return 1;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_AUTO_WORKERS as usize)
    });
    let workers = wanted.min(transactions);
    if workers <= 1 || !run.session.nonatomic() {
        return 1;
    }
    if !role_can_connect() || !crate::history::has_task_table() {
        return 1;
    }
    workers
}

fn role_can_connect() -> bool {
    if cfg!(any(feature = "pg15", feature = "pg16")) {
        query_one(sql::tasks::CAN_LOG_IN, &[], |r| col::<bool>(r, 1).unwrap_or(false))
            .unwrap_or(false)
    } else {
        true
    }
}

impl Run<'_> {
    /// The chunk transactions (`batches` of the plan's steps), at most `workers` at
    /// once. Returns whether `max_runtime` stopped the run before the last of them.
    pub(super) fn chunks_in_workers(
        &self,
        plan: &Plan,
        batches: &[Vec<usize>],
        workers: usize,
        totals: &mut Totals,
    ) -> bool {
        let settings = self.phase("settings", settings_for_workers);
        let steps_of =
            |b: usize| -> Vec<&Step> { batches[b].iter().map(|i| &plan.steps[*i]).collect() };
        let routed = plan.routed;
        let mut pool = Pool::new(workers);
        let (mut failure, mut done, mut stopped) = (None, 0, false);
        for b in 0..batches.len() {
            if pool.is_full() {
                self.collect(&mut pool, &steps_of, routed, totals, &mut failure);
            }
            if failure.is_some() {
                break;
            }
            if !self.between(true, || left_after(done, plan)) {
                stopped = true;
                break;
            }
            let steps = steps_of(b);
            let work = Work {
                config: self.prep.cfg.clone(),
                steps: steps.iter().map(|s| (*s).clone()).collect(),
                settings: settings.clone(),
                routed: plan.routed,
            };
            self.phase("task", || add_task(self.id, b as i32, &work));
            if !pool.start(self.id, b as i32) {
                // no worker slot free on the server: this session does it
                let results = self.phase("batch", || {
                    take_task(self.id, b as i32);
                    self.batch_here(&steps, plan.routed)
                });
                report_chunks(&steps, &results, totals);
            }
            self.done.set(self.done.get() + 1);
            done += steps.len();
        }
        while !pool.is_empty() {
            self.collect(&mut pool, &steps_of, routed, totals, &mut failure);
        }
        if let Some((state, msg, detail, hint)) = failure {
            self.phase("failed task", || {
                spi::raise_as(&state, &msg, detail.as_deref(), hint.as_deref())
            });
        }
        stopped
    }

    /// Waits for a worker to stop, and takes the outcome of each that has (a task no
    /// worker did, this session does: by its route where the plan is `routed`).
    fn collect<'p>(
        &self,
        pool: &mut Pool,
        steps_of: &dyn Fn(usize) -> Vec<&'p Step>,
        routed: bool,
        totals: &mut Totals,
        failure: &mut Option<Failure>,
    ) {
        let stopped = self.phase("wait for workers", || pool.wait_any());
        for task in stopped {
            let steps = steps_of(task as usize);
            match self.phase("task outcome", || take_task(self.id, task)) {
                Outcome::Done(results) => report_chunks(&steps, &results, totals),
                Outcome::Failed(f) => {
                    failure.get_or_insert(f);
                }
                Outcome::NotDone if failure.is_none() => {
                    let results = self.phase("batch", || self.batch_here(&steps, routed));
                    report_chunks(&steps, &results, totals);
                }
                Outcome::NotDone => {}
            }
        }
    }
}

/// Writes task `task` of run `run_id`; where the plan routed the staging rows, with its
/// chunks' rows from the route table (the worker cannot read this session's temporary
/// table: it takes them into its own).
fn add_task(run_id: i64, task: i32, work: &Work) {
    let json = serde_json::to_string(work).expect("work serializes");
    state_execute(sql::tasks::ADD, &[p(run_id.to_string()), p(task.to_string()), p(json)]);
    if !work.routed {
        return;
    }
    let idxs: Vec<String> = work.steps.iter().map(|s| s.idx.to_string()).collect();
    let idxs = p(sql::array_literal(&idxs));
    for (idx, tids) in query(sql::route::ROUTE_OF_CHUNKS, &[idxs], super::planning::route_row) {
        spi::state_run_typed(sql::tasks::ADD_ROWS, || {
            vec![run_id.into(), task.into(), idx.into(), DatumWithOid::from(tids)]
        });
    }
}

/// Takes a task's row away, with its outcome.
fn take_task(run_id: i64, task: i32) -> Outcome {
    let row =
        state_query_one(sql::tasks::TAKE, &[p(run_id.to_string()), p(task.to_string())], |r| {
            (
                col::<String>(r, 1).unwrap_or_default(),
                col::<String>(r, 2),
                col::<String>(r, 3),
                col::<String>(r, 4),
                col::<String>(r, 5),
                col::<String>(r, 6),
            )
        });
    match row {
        Some((status, Some(results), ..)) if status == "done" => {
            Outcome::Done(serde_json::from_str(&results).expect("the worker wrote these"))
        }
        Some((status, _, state, msg, detail, hint)) if status == "failed" => Outcome::Failed((
            state.unwrap_or_else(|| "XX000".into()),
            msg.unwrap_or_default(),
            detail,
            hint,
        )),
        _ => Outcome::NotDone,
    }
}

/// The run's settings its workers take over, read in the run's session.
fn settings_for_workers() -> Vec<(String, String)> {
    let names: Vec<String> = worker::inherited_settings().map(String::from).collect();
    let names = crate::sql::array_literal(&names);
    query(sql::tasks::SETTINGS, &[p(names)], |r| {
        (col::<String>(r, 1).unwrap_or_default(), col::<String>(r, 2).unwrap_or_default())
    })
}
