//! The extension's own state (`_backfill_ext`: run history, policy holds, worker
//! tasks) is written only here, by the extension's code, as the role that owns it:
//! no other role has a privilege to write it, so none can forge, change or block a
//! run's history, a hold or a worker's task. Each statement runs with the current
//! user switched to the state's owner (as PostgreSQL does for its own internal
//! queries, a security-restricted `SetUserIdAndSecContext`) and `search_path` pinned
//! to `pg_catalog, pg_temp`; the caller's user, context and `search_path` come back
//! afterwards, and on an error with the (sub)transaction's abort. The statements are
//! the fixed texts of `sql::history_rows`, `sql::hold` and `sql::tasks`, each of which
//! says whose rows it may touch (the caller is passed as a parameter where it
//! matters, since inside the switch `current_user` is the owner).

use super::{col, query, query_one, Param};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::SpiHeapTupleData;

/// The owner of the state tables.
const OWNER: &str = "SELECT c.relowner::int8 FROM pg_catalog.pg_class AS c WHERE c.oid = \
    pg_catalog.to_regclass('_backfill_ext.run')";

/// Puts back the caller's user and security context.
struct Restore {
    user: pg_sys::Oid,
    context: i32,
}

impl Drop for Restore {
    fn drop(&mut self) {
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}

/// Runs `sql` as the state's owner; the rows as `f` reads them.
pub fn state_query<T>(
    sql: &'static str,
    params: &[Param],
    f: impl FnMut(&SpiHeapTupleData) -> T,
) -> Vec<T> {
    as_owner(|| query(sql, params, f)).unwrap_or_default()
}

/// Runs `sql` as the state's owner for its effect, with typed arguments (an array of
/// row ids, which text would cost a conversion per id).
pub fn state_run_typed(sql: &'static str, args: impl FnOnce() -> Vec<DatumWithOid<'static>>) {
    as_owner(|| super::run_typed(sql, args));
}

/// Calls `f` with the current user switched to the state's owner and `search_path`
/// pinned; None (nothing called) where there is no state table (an extension older
/// than its library: nothing to write).
fn as_owner<T>(f: impl FnOnce() -> T) -> Option<T> {
    let owner = query_one(OWNER, &[], |r| col::<i64>(r, 1)).flatten()?;
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0i32);
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    let _restore = Restore { user, context };
    unsafe {
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(owner as u32),
            context
                | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION)
                    as i32,
        )
    };
    let path = query_one(
        "SELECT pg_catalog.current_setting('search_path'), pg_catalog.set_config('search_path', \
         'pg_catalog, pg_temp', true)",
        &[],
        |r| col::<String>(r, 1).unwrap_or_default(),
    )
    .unwrap_or_default();
    let v = f();
    super::restore_search_path(&path);
    Some(v)
}

/// The first row of `state_query`, if any.
pub fn state_query_one<T>(
    sql: &'static str,
    params: &[Param],
    f: impl FnMut(&SpiHeapTupleData) -> T,
) -> Option<T> {
    state_query(sql, params, f).into_iter().next()
}

/// `state_query` for its effect.
pub fn state_execute(sql: &'static str, params: &[Param]) {
    state_query(sql, params, |_| ());
}
