//! The procedure's transaction: its SPI connection (non-atomic when it may COMMIT),
//! subtransactions, errors caught in them, and the hardened `search_path`.

use super::{col, execute, p, query_one, raise};
use crate::error::{BackfillError, Code};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;

/// Puts `pg_catalog` first in `search_path` for the current transaction, keeping the
/// caller's schemas after it (their triggers and defaults still resolve), so that
/// functions or operators a user creates in `public` cannot stand in for built-ins.
/// Every name of a table this extension uses is schema-qualified. Returns the path
/// that was in force.
pub fn harden_search_path() -> String {
    query_one(
        "SELECT pg_catalog.current_setting('search_path'),
                pg_catalog.set_config('search_path', 'pg_catalog, ' || \
                pg_catalog.current_setting('search_path'), true)",
        &[],
        |r| col::<String>(r, 1).unwrap_or_default(),
    )
    .unwrap_or_default()
}

/// Restores a `search_path` saved by `harden_search_path` (for calls that do not commit).
pub fn restore_search_path(path: &str) {
    execute("SELECT pg_catalog.set_config('search_path', $1, true)", &[p(path)]);
}

/// The procedure's transaction context: whether it may COMMIT between steps.
pub struct Session {
    nonatomic: bool,
    saved_path: String,
}

impl Session {
    /// Connects SPI for the procedure call behind `fcinfo`: non-atomic when called by
    /// `CALL` outside a transaction block (or by TimescaleDB's scheduler), so it commits.
    ///
    /// # Safety
    /// `fcinfo` must be the call's valid `FunctionCallInfo`.
    pub unsafe fn open(fcinfo: pg_sys::FunctionCallInfo) -> Session {
        let ctx = unsafe { (*fcinfo).context };
        let nonatomic = !ctx.is_null()
            && unsafe { pgrx::is_a(ctx, pg_sys::NodeTag::T_CallContext) }
            && !unsafe { (*(ctx as *mut pg_sys::CallContext)).atomic };
        let opts = if nonatomic { pg_sys::SPI_OPT_NONATOMIC as i32 } else { 0 };
        let rc = unsafe { pg_sys::SPI_connect_ext(opts) };
        if rc != pg_sys::SPI_OK_CONNECT as i32 {
            raise(BackfillError::new(
                Code::ObjectNotInPrerequisiteState,
                format!("SPI_connect_ext failed: {rc}"),
            ));
        }
        let saved_path = harden_search_path();
        Session { nonatomic, saved_path }
    }

    pub fn nonatomic(&self) -> bool {
        self.nonatomic
    }

    /// Commits the work so far and starts a new transaction; a no-op when atomic.
    pub fn commit(&self) {
        if self.nonatomic {
            unsafe { pg_sys::SPI_commit() };
            harden_search_path();
        }
    }

    /// After a statement that committed on its own (`call_nonatomic`): the new
    /// transaction gets the hardened `search_path` again.
    pub fn after_commit(&self) {
        harden_search_path();
    }

    /// Puts the caller's search_path back and disconnects SPI.
    pub fn close(self) {
        restore_search_path(&self.saved_path);
        unsafe { pg_sys::SPI_finish() };
    }
}

/// Runs `f` in a subtransaction. On error the subtransaction is rolled back (its
/// locks, writes and memory released) and the error is handed back, so the caller can
/// clean up in a transaction that still works before raising it again.
#[allow(clippy::result_large_err)] // pgrx's CaughtError, handed back as is
pub fn in_subtransaction<T>(
    f: impl FnOnce() -> T + std::panic::UnwindSafe,
) -> Result<T, CaughtError> {
    unsafe {
        let old_cx = pg_sys::CurrentMemoryContext;
        let old_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(old_cx);
        let result = PgTryBuilder::new(|| Ok(f())).catch_others(Err).execute();
        match result {
            Ok(v) => {
                pg_sys::ReleaseCurrentSubTransaction();
                pg_sys::MemoryContextSwitchTo(old_cx);
                pg_sys::CurrentResourceOwner = old_owner;
                Ok(v)
            }
            Err(e) => {
                pg_sys::MemoryContextSwitchTo(old_cx);
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
                pg_sys::MemoryContextSwitchTo(old_cx);
                pg_sys::CurrentResourceOwner = old_owner;
                Err(e)
            }
        }
    }
}

/// The SQLSTATE text of a caught error.
pub fn caught_sqlstate(e: &CaughtError) -> String {
    let code = match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.sql_error_code(),
        CaughtError::RustPanic { ereport, .. } => ereport.sql_error_code(),
    } as i32;
    // unpack PGSIXBIT encoding
    (0..5).map(|i| (((code >> (6 * i)) & 0x3f) as u8 + b'0') as char).collect()
}

/// The message of a caught error.
pub fn caught_message(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
        CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
    }
}

/// The SQLSTATE, message, detail and hint of a caught error.
pub fn caught_parts(e: &CaughtError) -> (String, String, Option<String>, Option<String>) {
    let r = match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    (
        caught_sqlstate(e),
        r.message().to_string(),
        r.detail().map(str::to_string),
        r.hint().map(str::to_string),
    )
}

/// Raises an error with SQLSTATE `state` (five characters), as another backend
/// reported it.
pub fn raise_as(state: &str, message: &str, detail: Option<&str>, hint: Option<&str>) -> ! {
    // PostgreSQL's MAKE_SQLSTATE: six bits a character
    let code: i32 = state
        .bytes()
        .take(5)
        .enumerate()
        .map(|(i, c)| ((c.wrapping_sub(b'0') as i32) & 0x3f) << (6 * i))
        .sum();
    let mut report =
        ErrorReport::new(PgSqlErrorCode::from(code), message.to_string(), "backfill_ext");
    if let Some(d) = detail {
        report = report.set_detail(d.to_string());
    }
    if let Some(h) = hint {
        report = report.set_hint(h.to_string());
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises a caught error again; one that has no hint of its own gets `hint`, so
/// every error a run raises tells the user what state things are in.
pub fn reraise_with_hint(e: CaughtError, hint: &str) -> ! {
    let r = match &e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    if r.hint().is_some() {
        e.rethrow()
    }
    let mut report = ErrorReport::new(r.sql_error_code(), r.message().to_string(), "backfill_ext")
        .set_hint(hint);
    if let Some(d) = r.detail() {
        report = report.set_detail(d.to_string());
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Runs a `CALL` of a procedure that commits on its own (TimescaleDB's
/// `refresh_continuous_aggregate`) the way PL/pgSQL does: a prepared plan executed
/// with `allow_nonatomic`, so the procedure runs non-atomically. Only in a non-atomic
/// session, outside any subtransaction. The parameters are text (cast in `sql`).
pub fn call_nonatomic(sql: &str, params: &[super::Param]) {
    let csql = std::ffi::CString::new(sql).expect("no NUL in SQL text");
    let mut types = vec![pg_sys::TEXTOID; params.len()];
    unsafe {
        let plan = pg_sys::SPI_prepare(csql.as_ptr(), params.len() as i32, types.as_mut_ptr());
        if plan.is_null() {
            raise(
                BackfillError::new(
                    Code::ObjectNotInPrerequisiteState,
                    format!(
                        "SPI_prepare failed: {}",
                        std::ptr::addr_of!(pg_sys::SPI_result).read()
                    ),
                )
                .detail(sql.to_string()),
            );
        }
        let list = pg_sys::makeParamList(params.len() as i32);
        let slots = (*list).params.as_mut_slice(params.len());
        for (slot, value) in slots.iter_mut().zip(params) {
            slot.ptype = pg_sys::TEXTOID;
            slot.pflags = pg_sys::PARAM_FLAG_CONST as u16;
            slot.isnull = value.is_none();
            slot.value = value
                .as_deref()
                .and_then(|v| v.into_datum())
                .unwrap_or(pg_sys::Datum::from(0usize));
        }
        let mut options: pg_sys::SPIExecuteOptions = std::mem::zeroed();
        options.params = list;
        options.read_only = false;
        options.allow_nonatomic = true;
        let rc = pg_sys::SPI_execute_plan_extended(plan, &options);
        pg_sys::SPI_freeplan(plan);
        if rc < 0 {
            raise(
                BackfillError::new(
                    Code::ObjectNotInPrerequisiteState,
                    format!("internal call failed: {rc}"),
                )
                .detail(sql.to_string()),
            );
        }
    }
}
