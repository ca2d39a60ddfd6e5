//! A background worker's side of a task (`pool` starts it): connected to the run's
//! database as the run's role, it reads its task only while the run that wrote it is
//! running as that role in the backend that started the worker; with the run's session
//! settings (only those a run takes over: `sql::tasks::inherited`), it validates the
//! config again, does the task's chunk transaction exactly as the run would (the same
//! `strategy::run_transaction`), records the chunks in the run's history and marks the
//! task done, all in one transaction. On an error that transaction is rolled back (the
//! rows stay in staging) and the task is marked failed with the error, for the run to
//! raise. A SIGTERM (the run stopping its workers) ends it like `pg_terminate_backend`.

use super::prepare::prepare;
use crate::catalog::current_user;
use crate::config::Config;
use crate::error::{BackfillError, Code};
use crate::plan::Step;
use crate::spi::{self, col, p, state_execute, state_query, state_query_one};
use crate::sql;
use crate::step::StepResult;
use crate::timescale::Chunk;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;
use std::panic::AssertUnwindSafe;

/// What a worker is asked to do.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Work {
    pub config: Config,
    pub steps: Vec<Step>,
    /// The run's session settings (`inherited_settings`), as `(name, value)`.
    pub settings: Vec<(String, String)>,
    /// Whether the run routed the staging rows: the task then holds its chunks' rows
    /// (`sql::tasks::ROWS`), which the worker takes into a route table of its own.
    pub routed: bool,
}

unsafe extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler for backends (`die`): the next interrupt check
    /// ends the backend, rolling its transaction back.
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

/// The worker's entry point (named in `pool::Pool::start`).
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn backfill_ext_worker_main(_arg: pg_sys::Datum) {
    unsafe {
        #[cfg(not(feature = "pg18"))]
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die));
        #[cfg(feature = "pg18")]
        pg_sys::pqsignal_be(pg_sys::SIGTERM as i32, Some(postgres_die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let extra: Vec<i64> =
        BackgroundWorker::get_extra().split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let [db, role, run_id, task] = extra[..] else {
        panic!("backfill_ext worker: bad arguments {extra:?}")
    };
    unsafe {
        // a job's owner may be a role that cannot log in (before 17, the run does not
        // start workers for such a role: see `parallel::worker_count`)
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        let flags = 0;
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        let flags = pg_sys::BGWORKER_BYPASS_ROLELOGINCHECK;
        pg_sys::BackgroundWorkerInitializeConnectionByOid(
            pg_sys::Oid::from(db as u32),
            pg_sys::Oid::from(role as u32),
            flags,
        );
    }
    BackgroundWorker::transaction(|| do_task(run_id, task as i32));
}

/// Reads the task, does it, and records what happened; a task already done (or gone)
/// is left alone, and one that is gone or changed by the time it is done is not done.
fn do_task(run_id: i64, task: i32) {
    let key = [p(run_id.to_string()), p(task.to_string())];
    // the run's backend, which started this worker
    let run_pid = unsafe { (*pg_sys::MyBgworkerEntry).bgw_notify_pid };
    let read = [key[0].clone(), key[1].clone(), p(current_user()), p(run_pid.to_string())];
    let Some(work) = state_query_one(sql::tasks::WORK, &read, |r| col::<String>(r, 1)).flatten()
    else {
        return;
    };
    let work: Work = serde_json::from_str(&work).expect("the run wrote this task");
    report_activity(run_id, &work.steps);
    take_over_settings(run_id, task, &work.settings);
    spi::harden_search_path();
    match spi::in_subtransaction(AssertUnwindSafe(|| work_through(run_id, task, &work))) {
        Ok(results) => {
            spi::unresponsive_point("worker_before_done");
            mark_done(run_id, task, &results);
        }
        Err(e) => {
            let (state, msg, detail, hint) = spi::caught_parts(&e);
            state_execute(
                sql::tasks::FAILED,
                &[key[0].clone(), key[1].clone(), p(state), p(msg), detail, hint],
            );
        }
    }
}

/// Sets the run's settings in this worker's transaction; raises 42501 for a setting a
/// worker never takes over (a task is the run's, never another role's, to write).
fn take_over_settings(run_id: i64, task: i32, settings: &[(String, String)]) {
    for (name, value) in settings {
        if !inherited_settings().any(|s| s == name) {
            spi::raise(
                BackfillError::new(
                    Code::InsufficientPrivilege,
                    format!(
                        "task {task} of run {run_id} sets \"{name}\", which a worker never \
                         takes over"
                    ),
                )
                .hint(
                    "a worker takes over only the run's own settings \
                    (run::worker::inherited_settings)",
                ),
            );
        }
        spi::execute(crate::sql::settings::SET_LOCAL, &[p(name), p(value)]);
    }
}

/// Marks the task done with its results. A task that is no longer this run's queued one
/// (gone, or changed) is not done here: this raises, the moves roll back, and the run
/// does the task itself.
fn mark_done(run_id: i64, task: i32, results: &[StepResult]) {
    let json = serde_json::to_string(results).expect("results serialize");
    let params = [p(run_id.to_string()), p(task.to_string()), p(json)];
    if state_query(sql::tasks::DONE, &params, |_| ()).len() != 1 {
        spi::raise(
            BackfillError::new(
                Code::ObjectNotInPrerequisiteState,
                format!(
                    "task {task} of run {run_id} was changed or removed while its worker did it"
                ),
            )
            .hint("the worker's transaction was rolled back; the run moves those rows itself"),
        );
    }
}

/// The task's chunk transaction, and its chunks in the run's history.
fn work_through(run_id: i64, task: i32, work: &Work) -> Vec<StepResult> {
    let prep = prepare(work.config.clone());
    let steps: Vec<&Step> = work.steps.iter().collect();
    if work.routed {
        take_over_route(run_id, task);
    }
    let results = crate::strategy::run_transaction(&prep, &steps, work.routed);
    let finished: Vec<(&Chunk, &StepResult)> =
        steps.iter().map(|s| &s.chunk).zip(&results).collect();
    crate::history::chunks(run_id, &finished);
    results
}

/// Writes the task's routed rows into this worker's own route table, as the run's
/// session routed them.
fn take_over_route(run_id: i64, task: i32) {
    let key = [p(run_id.to_string()), p(task.to_string())];
    let rows = state_query(sql::tasks::ROWS, &key, super::planning::route_row);
    crate::step::temp_tables::drop_named(&[sql::route::ROUTE_TABLE]);
    spi::execute(&sql::chunk::create_route_table(), &[]);
    rows.into_iter().for_each(super::planning::write_route);
}

/// What `pg_stat_activity` shows for the worker.
fn report_activity(run_id: i64, steps: &[Step]) {
    let chunks: Vec<String> = steps.iter().map(|s| s.chunk.name.to_string()).collect();
    let text = std::ffi::CString::new(format!(
        "backfill_ext worker of run {run_id}: {}",
        chunks.join(", ")
    ))
    .unwrap_or_default();
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr()) };
}

/// The session settings a worker takes over from its run (`sql::tasks::INHERITED`, and
/// in test builds the test hooks'); any other is refused.
pub fn inherited_settings() -> impl Iterator<Item = &'static str> {
    sql::tasks::INHERITED.iter().chain(spi::TEST_HOOKS).copied()
}
