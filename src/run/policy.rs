//! The compression policy hold: while a run works, the hypertable's compression
//! policies are pushed out (so they do not compress a chunk mid-step), and their
//! schedule from before is recorded durably in `_backfill_ext.policy_hold`, in the
//! same transaction. The end of the run (or the next run, after a crash) puts it back.

use super::prepare::Prepared;
use crate::catalog;
use crate::spi::{col, p, query, query_one, run as exec};
use crate::sql::hold as sql;
use crate::timescale::Policy;

/// Pushes the compression policies out for the run, remembering their schedule from
/// before: a run that was interrupted left its record, and the original schedule stays
/// the one recorded first.
pub fn hold(prep: &Prepared) -> Vec<Policy> {
    let (Some(ts), Some(_)) = (&prep.ts, &prep.ht) else { return vec![] };
    let policies = catalog::compression_policies(&prep.dest);
    for pol in &policies {
        catalog::require_job_owner(pol);
        exec(
            sql::RECORD_HOLD,
            &[p(pol.job_id.to_string()), p(prep.dest.oid.to_string()), pol.next_start.clone(), p(pol.scheduled.to_string())],
        );
        exec(&sql::push_policy(&ts.func("alter_job")), &[p(pol.job_id.to_string()), p(&prep.push_interval)]);
    }
    policies
}

/// Puts back every policy schedule held for the destination and forgets the hold.
pub fn release(prep: &Prepared) {
    let Some(ts) = &prep.ts else { return };
    let held: Vec<(i32, Option<String>)> =
        query(sql::TAKE_HOLDS, &[p(prep.dest.oid.to_string())], |r| (col::<i32>(r, 1).unwrap(), col::<String>(r, 2)));
    for (job_id, next_start) in held {
        let exists = query_one(sql::JOB_EXISTS, &[p(job_id.to_string())], |r| col::<i64>(r, 1).unwrap_or(0)).unwrap_or(0) > 0;
        if exists {
            // no schedule recorded (the policy had not run yet): it is due now, as it was
            let next_start = next_start.unwrap_or_else(|| "now".to_string());
            exec(&sql::restore_policy(&ts.func("alter_job")), &[p(job_id.to_string()), p(next_start)]);
        }
    }
}
