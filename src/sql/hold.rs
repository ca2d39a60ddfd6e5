//! The destination's advisory lock (one run at a time per destination) and the
//! compression policy hold (`_backfill_ext.policy_hold`).

/// The advisory lock key of a destination: "bfil" in the high half, its OID in the low.
pub fn lock_key(dest_oid: u32) -> i64 {
    ((0x6266_696cu64 << 32) | dest_oid as u64) as i64
}

/// Tries the destination's lock (`$1`, the key): held by the session when the run
/// commits as it goes, else by the transaction.
pub fn try_lock(session_level: bool) -> String {
    let f = if session_level { "pg_try_advisory_lock" } else { "pg_try_advisory_xact_lock" };
    format!("SELECT pg_catalog.{f}($1::int8)")
}

/// Releases a session-level lock taken by `try_lock`.
pub const UNLOCK: &str = "SELECT pg_catalog.pg_advisory_unlock($1::int8)";

/// Waits a moment before the next `try_lock`.
pub const WAIT: &str = "SELECT pg_catalog.pg_sleep(0.2)";

/// The backends holding a lock key (`$1` its high half, `$2` its low half), as text.
pub const LOCK_HOLDERS: &str = "SELECT 'backend ' || string_agg(l.pid::text, ', ') FROM \
    pg_catalog.pg_locks l \
     WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int8::oid AND l.objid = \
     $2::int8::oid AND l.objsubid = 1";

/// Records a policy's schedule before the run pushes it out: job `$1`, hypertable OID
/// `$2`, next start `$3`, scheduled `$4`, held now (the push uses the same `now()`),
/// for role `$5`, which must own the hypertable, whose policy the job must be.
/// From a record an interrupted run left, the schedule from before that run is kept
/// (it is the one to restore). Returns the job when it was recorded.
pub const RECORD_HOLD: &str = "WITH may AS (SELECT pg_catalog.pg_has_role($5::name, (SELECT \
    c.relowner FROM pg_catalog.pg_class AS c WHERE c.oid = $2::oid), 'USAGE') \
                AND EXISTS (SELECT 1 FROM timescaledb_information.jobs AS j WHERE j.job_id = \
                $1::int \
                            AND pg_catalog.format('%I.%I', j.hypertable_schema, \
                            j.hypertable_name)::regclass = $2::oid::regclass) AS ok), \
     old AS (DELETE FROM _backfill_ext.policy_hold WHERE job_id = $1::int AND hypertable = \
     $2::oid::regclass AND (SELECT ok FROM may) \
             RETURNING original_next_start, original_scheduled) \
     INSERT INTO _backfill_ext.policy_hold (job_id, hypertable, original_next_start, \
     original_scheduled, held_at) \
     SELECT $1::int, $2::oid::regclass, \
            CASE WHEN EXISTS (SELECT 1 FROM old) THEN (SELECT original_next_start FROM old) ELSE \
            $3::timestamptz END, \
            coalesce((SELECT original_scheduled FROM old), $4::bool), pg_catalog.now() \
     WHERE (SELECT ok FROM may) RETURNING job_id";

/// Renews the holds on hypertable OID `$1` (owned by role `$3`) that this call took (see
/// `TAKE_HOLDS`) and
/// whose policy is still where it was pushed (held at plus `$2`, the push interval):
/// each is recorded again as held now, its schedule from before kept; returns their
/// jobs, to push again. A policy someone moved meanwhile keeps their schedule.
pub const RENEW_HOLDS: &str = "WITH due AS (SELECT h.job_id FROM _backfill_ext.policy_hold AS h \
       JOIN timescaledb_information.jobs AS j ON j.job_id = h.job_id \
      WHERE h.hypertable = $1::oid::regclass AND h.held_at >= pg_catalog.statement_timestamp() \
        AND pg_catalog.pg_has_role($3::name, (SELECT c.relowner FROM pg_catalog.pg_class AS c \
        WHERE c.oid = h.hypertable), 'USAGE') \
        AND j.next_start IS NOT DISTINCT FROM h.held_at + $2::interval), \
     old AS (DELETE FROM _backfill_ext.policy_hold AS h USING due WHERE h.job_id = due.job_id \
             RETURNING h.job_id, h.hypertable, h.original_next_start, h.original_scheduled) \
     INSERT INTO _backfill_ext.policy_hold (job_id, hypertable, original_next_start, \
     original_scheduled, held_at) \
     SELECT job_id, hypertable, original_next_start, original_scheduled, pg_catalog.now() FROM old \
     RETURNING job_id";

/// Pushes job `$1`'s next start to now plus `$2` (an interval).
pub fn push_policy(alter_job: &str) -> String {
    format!("SELECT {alter_job}($1::int, next_start => pg_catalog.now() + $2::interval)")
}

/// Forgets every hold on hypertable OID `$1` (owned by role `$3`), returning the job, its next
/// start from
/// before as text, and the next start this call pushed it to (held at `now()` plus
/// `$2`, the push interval; NULL for a hold an earlier, interrupted call left).
pub const TAKE_HOLDS: &str = "DELETE FROM _backfill_ext.policy_hold WHERE hypertable = \
    $1::oid::regclass \
       AND pg_catalog.pg_has_role($3::name, (SELECT c.relowner FROM pg_catalog.pg_class AS c WHERE \
       c.oid = hypertable), 'USAGE') \
     RETURNING job_id, original_next_start::text, \
               CASE WHEN held_at >= pg_catalog.statement_timestamp() THEN (held_at + \
               $2::interval)::text END";

/// Job `$1`'s next start now, as text (NULL: not scheduled), and whether it is still
/// `$2` (where the run pushed it; NULL: not known); no row: the job is gone.
pub const JOB_NEXT_START: &str =
    "SELECT next_start::text, next_start IS NOT DISTINCT FROM $2::timestamptz \
     FROM timescaledb_information.jobs WHERE job_id = $1::int";

/// Sets job `$1`'s next start back to `$2`.
pub fn restore_policy(alter_job: &str) -> String {
    format!("SELECT {alter_job}($1::int, next_start => $2::timestamptz)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_destination() {
        assert_eq!(lock_key(16384), 0x6266_696c_0000_4000);
        assert_ne!(lock_key(16384), lock_key(16385));
        assert_eq!(lock_key(u32::MAX) as u64 >> 32, 0x6266_696c);
    }

    #[test]
    fn session_or_transaction_lock() {
        assert_eq!(try_lock(true), "SELECT pg_catalog.pg_try_advisory_lock($1::int8)");
        assert_eq!(try_lock(false), "SELECT pg_catalog.pg_try_advisory_xact_lock($1::int8)");
        assert!(LOCK_HOLDERS.contains("l.objsubid = 1") && LOCK_HOLDERS.contains("l.granted"));
    }

    #[test]
    fn the_first_recorded_schedule_is_kept() {
        // only for a role owning the hypertable, and only a job that is its policy:
        // otherwise neither the old hold is taken nor a new one written
        assert!(RECORD_HOLD.starts_with(
            "WITH may AS (SELECT pg_catalog.pg_has_role($5::name, \
            (SELECT c.relowner FROM pg_catalog.pg_class AS c WHERE c.oid = $2::oid), 'USAGE')"
        ));
        assert!(RECORD_HOLD.contains(
            "old AS (DELETE FROM _backfill_ext.policy_hold WHERE job_id = \
            $1::int AND hypertable = $2::oid::regclass AND (SELECT ok FROM may) "
        ));
        assert!(RECORD_HOLD.ends_with("WHERE (SELECT ok FROM may) RETURNING job_id"));
        assert!(TAKE_HOLDS.contains("AND pg_catalog.pg_has_role($3::name, (SELECT c.relowner"));
        assert!(RENEW_HOLDS.contains("AND pg_catalog.pg_has_role($3::name, (SELECT c.relowner"));
        assert!(RECORD_HOLD.contains(
            "CASE WHEN EXISTS (SELECT 1 FROM old) THEN (SELECT \
            original_next_start FROM old) ELSE $3::timestamptz END"
        ));
        assert!(RECORD_HOLD.contains(
            "coalesce((SELECT original_scheduled FROM old), $4::bool), pg_catalog.now()"
        ));
        assert!(TAKE_HOLDS.contains("WHERE hypertable = $1::oid::regclass"));
        // only this call's holds know what it pushed the policy to
        assert!(TAKE_HOLDS.contains(
            "CASE WHEN held_at >= pg_catalog.statement_timestamp() THEN \
            (held_at + $2::interval)::text END"
        ));
    }

    #[test]
    fn a_renewal_keeps_the_first_schedule_and_skips_moved_policies() {
        // only this call's holds, and only policies still where this call pushed them
        assert!(RENEW_HOLDS.contains("h.held_at >= pg_catalog.statement_timestamp()"));
        assert!(RENEW_HOLDS.contains("j.next_start IS NOT DISTINCT FROM h.held_at + $2::interval"));
        // the row is written again (the run's role may delete and insert, not update)
        assert!(RENEW_HOLDS.contains(
            "SELECT job_id, hypertable, original_next_start, \
            original_scheduled, pg_catalog.now() FROM old RETURNING job_id"
        ));
        assert!(!RENEW_HOLDS.contains("UPDATE"));
    }

    #[test]
    fn policies_are_moved_with_alter_job() {
        assert_eq!(
            push_policy("public.alter_job"),
            "SELECT public.alter_job($1::int, next_start => pg_catalog.now() + $2::interval)"
        );
        assert_eq!(
            restore_policy("public.alter_job"),
            "SELECT public.alter_job($1::int, next_start => $2::timestamptz)"
        );
        // the next start, and whether it is still where the run pushed it, in one read
        assert!(JOB_NEXT_START.starts_with(
            "SELECT next_start::text, next_start IS NOT DISTINCT FROM $2::timestamptz "
        ));
        assert!(JOB_NEXT_START.ends_with("WHERE job_id = $1::int"));
    }
}
