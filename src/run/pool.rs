//! The run's background workers (config key `workers`): each does one chunk
//! transaction, the one task the run wrote for it (`run::worker` is the worker's
//! side). The run starts at most `size` at once and waits for any of them; a worker
//! that stopped is forgotten. When the run ends early (an error, a cancel) or its
//! backend exits, every worker still running is stopped and waited for, so its
//! transaction rolls back and no worker outlives the run's lock or policy hold.

use pgrx::pg_sys;
use std::ffi::c_char;
use std::time::{Duration, Instant};

/// Handles of the workers this backend started and has not seen stop (for the exit
/// callback).
static mut LIVE: Vec<usize> = Vec::new();
static mut EXIT_HOOKED: bool = false;

/// A worker the run started for a task.
pub struct Running {
    pub task: i32,
    handle: *mut pg_sys::BackgroundWorkerHandle,
}

/// The workers running for the run.
pub struct Pool {
    pub size: usize,
    running: Vec<Running>,
}

fn copy_into(dst: &mut [c_char], s: &str) {
    let n = s.len().min(dst.len() - 1);
    for (d, b) in dst.iter_mut().zip(s.as_bytes()[..n].iter()) {
        *d = *b as c_char;
    }
    dst[n] = 0;
}

/// Stops every worker still running and waits for them (at backend exit: a terminated
/// run), before the exit lets go of the run's locks.
unsafe extern "C-unwind" fn stop_live_workers(_code: i32, _arg: pg_sys::Datum) {
    stop_all();
}

impl Pool {
    pub fn new(size: usize) -> Pool {
        unsafe {
            if !EXIT_HOOKED {
                pg_sys::before_shmem_exit(Some(stop_live_workers), pg_sys::Datum::from(0));
                EXIT_HOOKED = true;
            }
        }
        Pool { size, running: vec![] }
    }

    pub fn is_full(&self) -> bool {
        self.running.len() >= self.size
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Starts a worker for task `task` of run `run_id`, connected to this database as
    /// the current user; false when the server has no worker slot free (the run then
    /// does the task itself).
    pub fn start(&mut self, run_id: i64, task: i32) -> bool {
        let mut w = pg_sys::BackgroundWorker::default();
        let extra = unsafe {
            format!(
                "{} {} {run_id} {task}",
                pg_sys::MyDatabaseId.to_u32(),
                pg_sys::GetUserId().to_u32()
            )
        };
        copy_into(&mut w.bgw_name, &format!("backfill_ext worker for run {run_id}"));
        copy_into(&mut w.bgw_type, "backfill_ext worker");
        copy_into(&mut w.bgw_library_name, "backfill_ext");
        copy_into(&mut w.bgw_function_name, "backfill_ext_worker_main");
        copy_into(&mut w.bgw_extra, &extra);
        w.bgw_flags =
            (pg_sys::BGWORKER_SHMEM_ACCESS | pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION) as i32;
        w.bgw_start_time = pg_sys::BgWorkerStartTime::BgWorkerStart_RecoveryFinished;
        w.bgw_restart_time = pg_sys::BGW_NEVER_RESTART;
        w.bgw_notify_pid = unsafe { pg_sys::MyProcPid };
        let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
        // the handle outlives the run's transactions
        let ok = unsafe {
            let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
            let ok = pg_sys::RegisterDynamicBackgroundWorker(&mut w, &mut handle);
            pg_sys::MemoryContextSwitchTo(old);
            ok
        };
        if !ok {
            return false;
        }
        unsafe { (*std::ptr::addr_of_mut!(LIVE)).push(handle as usize) };
        self.running.push(Running { task, handle });
        true
    }

    /// Waits until at least one worker has stopped; returns the tasks of those that
    /// have. Cancellable: a cancel raises here (and `Drop` stops the rest).
    pub fn wait_any(&mut self) -> Vec<i32> {
        loop {
            let stopped: Vec<i32> =
                self.running.iter().filter(|r| has_stopped(r.handle)).map(|r| r.task).collect();
            if !stopped.is_empty() {
                for t in &stopped {
                    let i = self.running.iter().position(|r| r.task == *t).unwrap();
                    let r = self.running.remove(i);
                    forget(r.handle);
                }
                return stopped;
            }
            unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                        as i32,
                    100,
                    pg_sys::PG_WAIT_EXTENSION,
                );
                pg_sys::ResetLatch(pg_sys::MyLatch);
            }
            pgrx::check_for_interrupts!();
        }
    }
}

fn has_stopped(handle: *mut pg_sys::BackgroundWorkerHandle) -> bool {
    let mut pid: pg_sys::pid_t = 0;
    let status = unsafe { pg_sys::GetBackgroundWorkerPid(handle, &mut pid) };
    status == pg_sys::BgwHandleStatus::BGWH_STOPPED
        || status == pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED
}

/// Takes a stopped worker's handle off the exit callback's list and frees it.
fn forget(handle: *mut pg_sys::BackgroundWorkerHandle) {
    unsafe {
        (*std::ptr::addr_of_mut!(LIVE)).retain(|h| *h != handle as usize);
        pg_sys::pfree(handle.cast());
    }
}

/// Stops every worker this backend started that is still running, and waits (without
/// taking interrupts: this runs while an error is handled) until they have, however
/// long that takes: the run puts nothing back (the lock, the policy hold) while a worker
/// of it could still commit. Their transactions roll back. A warning every minute
/// names the workers it still waits for.
pub fn stop_all() {
    let live: Vec<*mut pg_sys::BackgroundWorkerHandle> = unsafe {
        (*std::ptr::addr_of!(LIVE))
            .iter()
            .map(|h| *h as *mut pg_sys::BackgroundWorkerHandle)
            .collect()
    };
    for h in &live {
        unsafe { pg_sys::TerminateBackgroundWorker(*h) };
    }
    let mut warn_at = Instant::now() + Duration::from_secs(60);
    while live.iter().any(|h| !has_stopped(*h)) {
        if Instant::now() >= warn_at {
            let pids: Vec<String> =
                live.iter().filter_map(|h| running_pid(*h)).map(|p| p.to_string()).collect();
            pgrx::warning!(
                "backfill_ext: still waiting for workers {} to stop before the run lets \
                go of the destination",
                pids.join(", ")
            );
            warn_at = Instant::now() + Duration::from_secs(60);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The process id of a worker that is running.
fn running_pid(handle: *mut pg_sys::BackgroundWorkerHandle) -> Option<pg_sys::pid_t> {
    let mut pid: pg_sys::pid_t = 0;
    let status = unsafe { pg_sys::GetBackgroundWorkerPid(handle, &mut pid) };
    (status == pg_sys::BgwHandleStatus::BGWH_STARTED).then_some(pid)
}

impl Drop for Pool {
    /// Stops the workers still running (see `stop_all`) and frees their handles.
    fn drop(&mut self) {
        if self.running.is_empty() {
            return;
        }
        stop_all();
        for r in self.running.drain(..) {
            forget(r.handle);
        }
    }
}
