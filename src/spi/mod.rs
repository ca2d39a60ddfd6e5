//! The thin layer over SPI: running text-parameter queries and raising
//! `BackfillError`s with their SQLSTATE (here); the procedure's transaction, its
//! subtransactions, caught errors and the hardened `search_path` (`tx`); the test hooks
//! (`hooks`); a rewrite's rows written into its chunk in bulk (`bulk`); the
//! extension's own state written as its owner (`state`).

use crate::error::{BackfillError, Code};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::{SpiHeapTupleData, SpiTupleTable};

pub(crate) mod bulk;
mod hooks;
mod state;
mod tx;

#[cfg(feature = "test_hooks")]
pub use hooks::register as register_test_hooks;
pub use hooks::{always_route, pause_point, rewrite_on_disk, unresponsive_point, TEST_HOOKS};
pub use state::{state_execute, state_query, state_query_one, state_run_typed};
pub use tx::{
    call_nonatomic, caught_message, caught_parts, caught_sqlstate, harden_search_path,
    in_subtransaction, raise_as, reraise_with_hint, restore_search_path, Session,
};

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
    let mut r =
        ErrorReport::new(pg_code(e.code), format!("backfill_ext: {}", e.message), "backfill_ext");
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
    raise(
        BackfillError::new(
            Code::ObjectNotInPrerequisiteState,
            format!("internal query failed: {e}"),
        )
        .detail(sql.to_string()),
    )
}

/// Runs a statement and maps every result row with `f`.
pub fn query<T>(sql: &str, params: &[Param], mut f: impl FnMut(&SpiHeapTupleData) -> T) -> Vec<T> {
    let args = datums(params);
    Spi::connect_mut(|client| {
        let table: SpiTupleTable =
            client.update(sql, None, &args).unwrap_or_else(|e| spi_fail(sql, e));
        table.map(|row| f(&row)).collect()
    })
}

/// Runs a statement that returns one row of a variable-length value (an array, say) and
/// bigints; returns a copy of the value made in the top transaction's memory (the
/// caller frees it with `free_value`) and the bigints.
pub fn query_value_and_counts(
    sql: &str,
    params: &[Param],
    counts: usize,
) -> (Option<pg_sys::Datum>, Vec<i64>) {
    let args = datums(params);
    Spi::connect_mut(|client| {
        let table = client.update(sql, Some(1), &args).unwrap_or_else(|e| spi_fail(sql, e)).first();
        let value = table.get_datum_by_ordinal(1).ok().flatten();
        let counts =
            (0..counts).map(|i| table.get::<i64>(i + 2).ok().flatten().unwrap_or(0)).collect();
        let copy = value.map(|d| unsafe {
            let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopTransactionContext);
            let c = pg_sys::Datum::from(pg_sys::pg_detoast_datum_copy(
                d.cast_mut_ptr::<pg_sys::varlena>(),
            ));
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

/// Runs a query of rows (int4, tid) through a cursor and hands `f` its rows `batch` at
/// a time, read straight from the fetched tuples (no per-row allocation: the routing
/// scan reads millions) and the batch's tuple table freed before `f` sees it. `f` may
/// run statements of its own. Rows with a NULL in either column are skipped.
pub fn for_each_int4_tid_batch(
    sql: &str,
    params: &[Param],
    batch: i64,
    mut f: impl FnMut(Vec<(i32, pg_sys::ItemPointerData)>),
) {
    let args = datums(params);
    Spi::connect(|client| {
        let mut cursor = client.try_open_cursor(sql, &args).unwrap_or_else(|e| spi_fail(sql, e));
        loop {
            drop(cursor.fetch(batch).unwrap_or_else(|e| spi_fail(sql, e)));
            // SAFETY: the fetch's own table, read and then freed here
            let rows = unsafe { int4_tid_rows(sql) };
            if rows.is_empty() {
                break;
            }
            f(rows);
        }
    })
}

/// The rows of the last fetch's tuple table as (int4, tid), freeing the table.
unsafe fn int4_tid_rows(sql: &str) -> Vec<(i32, pg_sys::ItemPointerData)> {
    let table = pg_sys::SPI_tuptable;
    if table.is_null() {
        return vec![];
    }
    let desc = (*table).tupdesc;
    let types = (pg_sys::SPI_gettypeid(desc, 1), pg_sys::SPI_gettypeid(desc, 2));
    if (*desc).natts != 2 || types != (pg_sys::INT4OID, pg_sys::TIDOID) {
        pg_sys::SPI_freetuptable(table);
        raise(BackfillError::new(
            Code::ObjectNotInPrerequisiteState,
            format!("internal query does not return (int4, tid): {sql}"),
        ));
    }
    let n = (*table).numvals as usize;
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let tuple = *(*table).vals.add(i);
        let (mut null_idx, mut null_tid) = (false, false);
        let idx = pg_sys::SPI_getbinval(tuple, desc, 1, &mut null_idx);
        let tid = pg_sys::SPI_getbinval(tuple, desc, 2, &mut null_tid);
        if !null_idx && !null_tid {
            rows.push((idx.value() as i32, *tid.cast_mut_ptr::<pg_sys::ItemPointerData>()));
        }
    }
    pg_sys::SPI_freetuptable(table);
    rows
}

/// Runs a statement whose typed parameters `args` makes inside the statement's SPI
/// connection, so that their memory goes with it.
pub fn run_typed(sql: &str, args: impl FnOnce() -> Vec<DatumWithOid<'static>>) {
    Spi::connect_mut(|client| {
        let args = args();
        client.update(sql, None, &args).unwrap_or_else(|e| spi_fail(sql, e));
    })
}

/// Frees a value `query_value_and_counts` returned.
pub fn free_value(value: pg_sys::Datum) {
    unsafe { pg_sys::pfree(value.cast_mut_ptr()) }
}

/// The first row, if any.
pub fn query_one<T>(
    sql: &str,
    params: &[Param],
    f: impl FnMut(&SpiHeapTupleData) -> T,
) -> Option<T> {
    query(sql, params, f).into_iter().next()
}

/// Runs a statement for its effect.
pub fn execute(sql: &str, params: &[Param]) {
    query(sql, params, |_| ());
}

/// Runs a statement that returns no rows for its effect; returns how many rows it
/// processed (an `INSERT`'s rows inserted).
pub fn execute_counted(sql: &str, params: &[Param]) -> i64 {
    let args = datums(params);
    Spi::connect_mut(|client| {
        client.update(sql, None, &args).unwrap_or_else(|e| spi_fail(sql, e)).len() as i64
    })
}

/// Reads column `i` (1-based) of a row; SQL NULL is `None`.
pub fn col<T: FromDatum + IntoDatum>(row: &SpiHeapTupleData, i: usize) -> Option<T> {
    row.get::<T>(i).unwrap_or_else(|e| {
        raise(BackfillError::new(
            Code::ObjectNotInPrerequisiteState,
            format!("internal result column {i}: {e}"),
        ))
    })
}

/// The text values a `sql` builder returns, as parameters.
pub fn params(values: Vec<String>) -> Vec<Param> {
    values.into_iter().map(Some).collect()
}

/// Shorthand for a text parameter.
pub fn p(s: impl Into<String>) -> Param {
    Some(s.into())
}
