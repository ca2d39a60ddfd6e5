//! The thin layer over SPI: running text-parameter queries, raising `BackfillError`s
//! with their SQLSTATE, non-atomic transaction control and subtransactions.

use crate::error::{BackfillError, Code};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::spi::{SpiHeapTupleData, SpiTupleTable};

fn pg_code(c: Code) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    match c {
        Code::InvalidParameterValue => ERRCODE_INVALID_PARAMETER_VALUE,
        Code::NullValueNotAllowed => ERRCODE_NULL_VALUE_NOT_ALLOWED,
        Code::UndefinedTable => ERRCODE_UNDEFINED_TABLE,
        Code::WrongObjectType => ERRCODE_WRONG_OBJECT_TYPE,
        Code::UndefinedColumn => ERRCODE_UNDEFINED_COLUMN,
        Code::DatatypeMismatch => ERRCODE_DATATYPE_MISMATCH,
        Code::InvalidColumnReference => ERRCODE_INVALID_COLUMN_REFERENCE,
        Code::UniqueViolation => ERRCODE_UNIQUE_VIOLATION,
        Code::NotNullViolation => ERRCODE_NOT_NULL_VIOLATION,
        Code::InsufficientPrivilege => ERRCODE_INSUFFICIENT_PRIVILEGE,
        Code::ObjectNotInPrerequisiteState => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        Code::InvalidName => ERRCODE_INVALID_NAME,
        Code::GeneratedAlways => ERRCODE_GENERATED_ALWAYS,
        Code::UndefinedObject => ERRCODE_UNDEFINED_OBJECT,
        Code::FeatureNotSupported => ERRCODE_FEATURE_NOT_SUPPORTED,
    }
}

/// Raises `e` as an ERROR with its SQLSTATE, detail and hint.
pub fn raise(e: BackfillError) -> ! {
    let mut r = ErrorReport::new(pg_code(e.code), format!("backfill_ext: {}", e.message), "backfill_ext");
    if let Some(h) = e.hint {
        r = r.set_hint(h);
    }
    if let Some(d) = e.detail {
        r = r.set_detail(d);
    }
    r.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Unwraps a pure result, raising its error.
pub fn check<T>(r: crate::error::Result<T>) -> T {
    r.unwrap_or_else(|e| raise(e))
}

/// A query parameter: text or NULL; every query casts its parameters itself.
pub type Param = Option<String>;

fn datums(params: &[Param]) -> Vec<DatumWithOid<'static>> {
    params
        .iter()
        .map(|p| match p {
            Some(s) => DatumWithOid::from(s.clone()),
            None => DatumWithOid::null::<String>(),
        })
        .collect()
}

fn spi_fail(sql: &str, e: pgrx::spi::SpiError) -> ! {
    raise(BackfillError::new(Code::ObjectNotInPrerequisiteState, format!("internal query failed: {e}")).detail(sql.to_string()))
}

/// Runs a statement and maps every result row with `f`.
pub fn query<T>(sql: &str, params: &[Param], mut f: impl FnMut(&SpiHeapTupleData) -> T) -> Vec<T> {
    let args = datums(params);
    Spi::connect_mut(|client| {
        let table: SpiTupleTable = client.update(sql, None, &args).unwrap_or_else(|e| spi_fail(sql, e));
        table.map(|row| f(&row)).collect()
    })
}

/// Runs a statement that returns one row of a variable-length value (an array, say) and
/// bigints; returns a copy of the value made in the top transaction's memory (the
/// caller frees it with `free_value`) and the bigints.
pub fn query_value_and_counts(sql: &str, params: &[Param], counts: usize) -> (Option<pg_sys::Datum>, Vec<i64>) {
    let args = datums(params);
    Spi::connect_mut(|client| {
        let table = client.update(sql, Some(1), &args).unwrap_or_else(|e| spi_fail(sql, e)).first();
        let value = table.get_datum_by_ordinal(1).ok().flatten();
        let counts = (0..counts).map(|i| table.get::<i64>(i + 2).ok().flatten().unwrap_or(0)).collect();
        let copy = value.map(|d| unsafe {
            let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopTransactionContext);
            let c = pg_sys::Datum::from(pg_sys::pg_detoast_datum_copy(d.cast_mut_ptr::<pg_sys::varlena>()));
            pg_sys::MemoryContextSwitchTo(old);
            c
        });
        (copy, counts)
    })
}

/// Runs a statement whose `$1` is `value`, of type `type_oid`.
pub fn run_with_value(sql: &str, value: pg_sys::Datum, type_oid: pg_sys::Oid) {
    let args = [unsafe { DatumWithOid::new(value, type_oid) }];
    Spi::connect_mut(|client| {
        client.update(sql, None, &args).unwrap_or_else(|e| spi_fail(sql, e));
    })
}

/// Frees a value `query_value_and_counts` returned.
pub fn free_value(value: pg_sys::Datum) {
    unsafe { pg_sys::pfree(value.cast_mut_ptr()) }
}

/// The first row, if any.
pub fn query_one<T>(sql: &str, params: &[Param], f: impl FnMut(&SpiHeapTupleData) -> T) -> Option<T> {
    query(sql, params, f).into_iter().next()
}

/// Runs a statement for its effect.
pub fn run(sql: &str, params: &[Param]) {
    query(sql, params, |_| ());
}

/// Reads column `i` (1-based) of a row; SQL NULL is `None`.
pub fn col<T: FromDatum + IntoDatum>(row: &SpiHeapTupleData, i: usize) -> Option<T> {
    row.get::<T>(i).unwrap_or_else(|e| raise(BackfillError::new(Code::ObjectNotInPrerequisiteState, format!("internal result column {i}: {e}"))))
}

/// The text values a `sql` builder returns, as parameters.
pub fn params(values: Vec<String>) -> Vec<Param> {
    values.into_iter().map(Some).collect()
}

/// Shorthand for a text parameter.
pub fn p(s: impl Into<String>) -> Param {
    Some(s.into())
}

/// Puts `pg_catalog` first in `search_path` for the current transaction, keeping the
/// caller's schemas after it (their triggers and defaults still resolve), so that
/// functions or operators a user creates in `public` cannot stand in for built-ins.
/// Every name of a table this extension uses is schema-qualified. Returns the path
/// that was in force.
pub fn harden_search_path() -> String {
    query_one(
        "SELECT pg_catalog.current_setting('search_path'),
                pg_catalog.set_config('search_path', 'pg_catalog, ' || pg_catalog.current_setting('search_path'), true)",
        &[],
        |r| col::<String>(r, 1).unwrap_or_default(),
    )
    .unwrap_or_default()
}

/// Restores a `search_path` saved by `harden_search_path` (for calls that do not commit).
pub fn restore_search_path(path: &str) {
    run("SELECT pg_catalog.set_config('search_path', $1, true)", &[p(path)]);
}

/// A test hook: when the setting `backfill_ext.debug_pause_at` names `point`, the run
/// stops there (in `pg_sleep`, so it can be cancelled or terminated) as if it were slow.
/// Crash tests use it to kill a run at a precise step.
pub fn pause_point(point: &str) {
    let at = query_one("SELECT pg_catalog.current_setting('backfill_ext.debug_pause_at', true)", &[], |r| col::<String>(r, 1)).flatten();
    if at.as_deref() == Some(point) {
        pgrx::log!("backfill_ext: pausing at {point} (backfill_ext.debug_pause_at)");
        run("SELECT pg_catalog.pg_sleep(3600)", &[]);
    }
}

/// Whether the test setting `backfill_ext.debug_<name>` is `on` (tests use it to take
/// paths the data they can afford would not).
pub fn debug_setting(name: &str) -> bool {
    query_one("SELECT pg_catalog.current_setting($1, true) = 'on'", &[p(format!("backfill_ext.debug_{name}"))], |r| col::<bool>(r, 1))
        .flatten()
        .unwrap_or(false)
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
            raise(BackfillError::new(Code::ObjectNotInPrerequisiteState, format!("SPI_connect_ext failed: {rc}")));
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
pub fn in_subtransaction<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, CaughtError> {
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
    let mut report = ErrorReport::new(r.sql_error_code(), r.message().to_string(), "backfill_ext").set_hint(hint);
    if let Some(d) = r.detail() {
        report = report.set_detail(d.to_string());
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
