//! The compression policy hold: while a run works, the hypertable's compression
//! policies are pushed out (so they do not compress a chunk mid-step), and their
//! schedule from before is recorded durably in `_backfill_ext.policy_hold`, in the
//! same transaction. The end of the run (or the next run, after a crash) puts it back.

use crate::catalog;
use crate::catalog::current_user;
use crate::error::{BackfillError, Code};
use crate::spi::{col, execute, p, query_one, raise, state_query};
use crate::sql;
use crate::step::Prepared;
use crate::timescale::{Policy, Timescale};

/// Pushes the compression policies out for the run, remembering their schedule from
/// before: a run that was interrupted left its record, and the original schedule stays
/// the one recorded first.
pub fn hold(prep: &Prepared) -> Vec<Policy> {
    let (Some(ts), Some(_)) = (&prep.ts, &prep.ht) else { return vec![] };
    let policies = catalog::compression_policies(&prep.dest);
    for pol in &policies {
        catalog::require_job_owner(pol);
        let me = current_user();
        let held = state_query(
            sql::hold::RECORD_HOLD,
            &[
                p(pol.job_id.to_string()),
                p(prep.dest.oid.to_string()),
                pol.next_start.clone(),
                p(pol.scheduled.to_string()),
                p(&me),
            ],
            |_| (),
        );
        if held.is_empty() {
            raise(
                BackfillError::new(
                    Code::InsufficientPrivilege,
                    format!(
                        "role \"{me}\" may not hold compression policy job {} of {}",
                        pol.job_id, prep.dest.name
                    ),
                )
                .hint("run the job as the hypertable's owner (or a member of its role)"),
            );
        }
        execute(
            &sql::hold::push_policy(&ts.func("alter_job")),
            &[p(pol.job_id.to_string()), p(&prep.push_interval.text)],
        );
    }
    policies
}

/// Pushes out again, for another `push_interval` from now, the policies this run holds
/// that are still where it pushed them (a policy someone moved meanwhile keeps their
/// schedule); returns how many. Called between the run's transactions once half the
/// interval has passed, so a run longer than the interval never meets the policy.
pub fn renew(prep: &Prepared) -> usize {
    let (Some(ts), Some(_)) = (&prep.ts, &prep.ht) else { return 0 };
    let jobs: Vec<i32> = state_query(
        sql::hold::RENEW_HOLDS,
        &[p(prep.dest.oid.to_string()), p(&prep.push_interval.text), p(current_user())],
        |r| col::<i32>(r, 1).unwrap(),
    );
    for job_id in &jobs {
        execute(
            &sql::hold::push_policy(&ts.func("alter_job")),
            &[p(job_id.to_string()), p(&prep.push_interval.text)],
        );
    }
    if !jobs.is_empty() {
        pgrx::debug1!(
            "backfill_ext: compression policy hold renewed for another {} (jobs {jobs:?})",
            prep.push_interval.text
        );
    }
    jobs.len()
}

/// Puts back every policy schedule held for the destination and forgets the hold. A
/// policy whose schedule someone changed during the run (it is no longer where the run
/// pushed it) is left as they set it.
pub fn release(prep: &Prepared) {
    if let Some(ts) = &prep.ts {
        release_holds(ts, prep.dest.oid, &prep.push_interval.text);
    }
}

/// Puts back the policy schedules held for hypertable `dest_oid` (see `release`);
/// `push_interval` is how far this call pushed them.
pub fn release_holds(ts: &Timescale, dest_oid: u32, push_interval: &str) {
    let held: Vec<(i32, Option<String>, Option<String>)> = state_query(
        sql::hold::TAKE_HOLDS,
        &[p(dest_oid.to_string()), p(push_interval), p(current_user())],
        |r| (col::<i32>(r, 1).unwrap(), col::<String>(r, 2), col::<String>(r, 3)),
    );
    for (job_id, original, pushed) in held {
        // no row: the job is gone
        let Some((now, unmoved)) =
            query_one(sql::hold::JOB_NEXT_START, &[p(job_id.to_string()), pushed.clone()], |r| {
                (col::<String>(r, 1), col::<bool>(r, 2).unwrap_or(false))
            })
        else {
            continue;
        };
        if pushed.is_some() && !unmoved {
            pgrx::notice!(
                "backfill_ext: the schedule of compression policy job {job_id} was changed during \
                 the run (next start {}); it is left as it was set",
                now.as_deref().unwrap_or("none")
            );
            continue;
        }
        // no schedule recorded (the policy had not run yet): it is due now, as it was
        let next_start = original.unwrap_or_else(|| "now".to_string());
        execute(
            &sql::hold::restore_policy(&ts.func("alter_job")),
            &[p(job_id.to_string()), p(next_start)],
        );
    }
}
