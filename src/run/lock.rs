//! One run at a time per destination: an advisory lock on the destination's OID,
//! held by the session for a run that commits as it goes (released at its end, or
//! when the backend ends), by the transaction otherwise.

use super::settings;
use crate::catalog::Table;
use crate::spi::{col, execute, p, query_one, Session};
use crate::sql;
use crate::step::Prepared;
use std::time::Instant;

fn key_param(dest: &Table) -> Option<String> {
    p(sql::hold::lock_key(dest.oid).to_string())
}

fn try_lock(dest: &Table, session: &Session) -> bool {
    try_lock_oid(dest.oid, session.nonatomic())
}

/// Tries destination `dest_oid`'s lock, for the session or for the transaction.
pub fn try_lock_oid(dest_oid: u32, session_level: bool) -> bool {
    query_one(
        &sql::hold::try_lock(session_level),
        &[p(sql::hold::lock_key(dest_oid).to_string())],
        |r| col::<bool>(r, 1).unwrap_or(false),
    )
    .unwrap_or(false)
}

/// Takes the destination's lock, waiting up to `lock_wait` for a run that holds it.
pub fn acquire(prep: &Prepared, session: &Session) -> bool {
    let wait_s = settings::seconds(&prep.cfg.lock_wait);
    let start = Instant::now();
    loop {
        if try_lock(&prep.dest, session) {
            return true;
        }
        if start.elapsed().as_secs_f64() >= wait_s {
            return false;
        }
        execute(sql::hold::WAIT, &[]);
    }
}

/// Releases the lock (a transaction's lock goes with its transaction).
pub fn release(dest: &Table, session: &Session) {
    if session.nonatomic() {
        execute(sql::hold::UNLOCK, &[key_param(dest)]);
    }
}

/// Who holds the destination: the run the history names, else the backends.
pub fn holder(dest: &Table) -> String {
    if let Some(run) = crate::history::holder(dest.oid) {
        return run;
    }
    let key = sql::hold::lock_key(dest.oid) as u64;
    query_one(
        sql::hold::LOCK_HOLDERS,
        &[p((key >> 32).to_string()), p((key & 0xffff_ffff).to_string())],
        |r| col::<String>(r, 1),
    )
    .flatten()
    .unwrap_or_else(|| "another session".into())
}
