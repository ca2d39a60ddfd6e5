//! Run history in `_backfill_ext.run` / `_backfill_ext.run_chunk`: written by every
//! run, in the same transactions as its work, so what it shows was committed; as the
//! state's owner (`spi::state_execute`), the run's role recorded as `run_by`.

use crate::catalog::current_user;
use crate::spi::{col, p, query_one, state_execute, state_query_one, Param};
use crate::sql;
use crate::step::StepResult;
use crate::timescale::Chunk;

/// Starts a run's record; first marks runs of this destination that are still
/// "running" as failed (the caller holds the destination's lock, so they were
/// interrupted) and prunes this destination's history older than the retention
/// (another destination's history follows its own jobs' retention).
pub fn start(
    job_id: Option<i32>,
    staging: &str,
    destination: &str,
    dest_oid: u32,
    retention: &str,
) -> i64 {
    state_execute(sql::history_rows::MARK_INTERRUPTED, &[p(dest_oid.to_string())]);
    if has_task_table() {
        state_execute(crate::sql::tasks::FORGET_ENDED, &[p(dest_oid.to_string())]);
    }
    if has_refresh_table() {
        state_execute(sql::history_rows::MARK_REFRESHES_FAILED, &[p(dest_oid.to_string())]);
    }
    let me = current_user();
    state_execute(sql::history_rows::PRUNE, &[p(retention), p(dest_oid.to_string()), p(&me)]);
    state_query_one(
        sql::history_rows::START,
        &[
            job_id.map(|j| j.to_string()),
            p(staging),
            p(destination),
            p(dest_oid.to_string()),
            p(me),
        ],
        |r| col::<i64>(r, 1).unwrap(),
    )
    .unwrap()
}

/// Records the chunks a transaction of the run finished (one statement), and adds them
/// to the run's totals.
pub fn chunks(run_id: i64, done: &[(&Chunk, &StepResult)]) {
    let arr = |f: &dyn Fn(&Chunk, &StepResult) -> String| {
        crate::sql::array_literal(&done.iter().map(|(c, r)| f(c, r)).collect::<Vec<_>>())
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
    // NULL bounds are written as the text NULL and mapped back
    state_execute(
        sql::history_rows::RECORD_CHUNKS,
        &[
            p(run_id.to_string()),
            p(arr(&|c, _| c.name.to_string())),
            p(arr(&|c, _| opt(&c.lo))),
            p(arr(&|c, _| opt(&c.hi))),
            p(arr(&|_, r| r.moved.to_string())),
            p(arr(&|_, r| r.conflicts().to_string())),
            p(arr(&|_, r| r.decompressed.to_string())),
            p(arr(&|_, r| r.recompressed.to_string())),
            p(arr(&|_, r| r.decompress_ms.to_string())),
            p(arr(&|_, r| r.insert_ms.to_string())),
            p(arr(&|_, r| r.recompress_ms.to_string())),
            p(arr(&|_, r| r.strategy_label())),
        ],
    );
    let sum = |f: &dyn Fn(&StepResult) -> i64| done.iter().map(|(_, r)| f(r)).sum::<i64>();
    add_totals(
        run_id,
        sum(&|r| r.moved),
        sum(&|r| r.conflicts()),
        sum(&|r| r.decompressed as i64),
        sum(&|r| r.recompressed as i64),
        0,
    );
}

/// Adds what a step did to the run's totals.
pub fn add(run_id: i64, r: &StepResult, new_chunks: i64) {
    add_totals(
        run_id,
        r.moved,
        r.conflicts(),
        r.decompressed as i64,
        r.recompressed as i64,
        new_chunks,
    );
}

fn add_totals(
    run_id: i64,
    moved: i64,
    conflicts: i64,
    decompressed: i64,
    recompressed: i64,
    new_chunks: i64,
) {
    state_execute(
        sql::history_rows::ADD_TOTALS,
        &[
            p(run_id.to_string()),
            p(moved.to_string()),
            p(conflicts.to_string()),
            p(decompressed.to_string()),
            p(recompressed.to_string()),
            p(new_chunks.to_string()),
        ],
    );
}

/// Marks a run succeeded; `stopped_early` when max_runtime left chunks for the next run.
pub fn succeed(run_id: i64, stopped_early: bool) {
    state_execute(
        sql::history_rows::SUCCEED,
        &[p(run_id.to_string()), p(stopped_early.to_string())],
    );
}

pub fn fail(run_id: i64, sqlstate: &str, message: &str) {
    state_execute(sql::history_rows::FAIL, &[p(run_id.to_string()), p(sqlstate), p(message)]);
}

/// Records a run that failed before it could start (its config or tables are wrong).
pub fn failed_start(
    job_id: Option<i32>,
    staging: &str,
    destination: &str,
    sqlstate: &str,
    message: &str,
) {
    let dest_oid: Param = crate::catalog::oid_of_name(destination).map(|o| o.to_string());
    // such a run never reaches `start`, which prunes by destination: rows of this job
    // whose destination could not be resolved are pruned here, after the default retention
    state_execute(
        sql::history_rows::PRUNE_UNRESOLVED,
        &[
            job_id.map(|j| j.to_string()),
            p(crate::config::DEFAULT_HISTORY_RETENTION),
            p(current_user()),
        ],
    );
    ended(job_id, staging, destination, dest_oid, "failed", p(sqlstate), message);
}

/// Records a run that did not start because another run held the destination
/// (`lock_wait` passed): status `skipped`, with the reason.
pub fn skipped(job_id: Option<i32>, staging: &str, destination: &str, dest_oid: u32, reason: &str) {
    ended(job_id, staging, destination, p(dest_oid.to_string()), "skipped", None, reason);
}

/// One history row for a run that ended before it started working.
fn ended(
    job_id: Option<i32>,
    staging: &str,
    destination: &str,
    dest_oid: Param,
    status: &str,
    sqlstate: Param,
    error: &str,
) {
    state_execute(
        sql::history_rows::ENDED,
        &[
            job_id.map(|j| j.to_string()),
            p(staging),
            p(destination),
            dest_oid,
            p(status),
            sqlstate,
            p(error),
            p(current_user()),
        ],
    );
}

/// The run holding a destination, as "run N (job J, backend P, started T)".
pub fn holder(dest_oid: u32) -> Option<String> {
    query_one(sql::history_rows::HOLDER, &[p(dest_oid.to_string())], |r| col::<String>(r, 1))
        .flatten()
}

/// Records a refresh of a continuous aggregate over `[lo, hi)`: about to run
/// (`note` None), or not run and why.
pub fn refresh(run_id: i64, cagg: &str, lo: &str, hi: &str, not_run: Option<&str>) {
    let status = if not_run.is_some() { "not refreshed" } else { "refreshing" };
    state_execute(
        sql::history_rows::REFRESH,
        &[p(run_id.to_string()), p(cagg), p(lo), p(hi), p(status), not_run.map(|s| s.to_string())],
    );
}

/// Marks a refresh done.
pub fn refreshed(run_id: i64, cagg: &str, ms: f64) {
    state_execute(
        sql::history_rows::REFRESHED,
        &[p(run_id.to_string()), p(cagg), p(ms.to_string())],
    );
}

/// Whether the task table exists (see `has_refresh_table`).
pub fn has_task_table() -> bool {
    query_one(crate::sql::tasks::HAS_TABLE, &[], |r| col::<bool>(r, 1).unwrap_or(false))
        .unwrap_or(false)
}

/// Forgets the tasks of run `run_id`, which failed (its workers were stopped).
pub fn forget_tasks(run_id: i64) {
    if has_task_table() {
        state_execute(crate::sql::tasks::FORGET_RUN, &[p(run_id.to_string())]);
    }
}

/// Whether the refresh history exists: the library can be newer than the extension's
/// objects until `ALTER EXTENSION backfill_ext UPDATE` runs.
pub fn has_refresh_table() -> bool {
    query_one(sql::history_rows::HAS_REFRESH_TABLE, &[], |r| col::<bool>(r, 1).unwrap_or(false))
        .unwrap_or(false)
}
