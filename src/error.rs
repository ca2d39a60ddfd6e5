//! The one error type of the pure modules. It carries the SQLSTATE, message, detail
//! and hint; the SQL boundary (`spi::raise`) turns it into an `ereport(ERROR)`.

use std::fmt;

/// The SQLSTATEs this extension raises on its own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 22023: a config key has a wrong value or type.
    InvalidParameterValue,
    /// 22004: a required argument is NULL.
    NullValueNotAllowed,
    /// 42P01: a table does not exist.
    UndefinedTable,
    /// 42809: an object is not of the kind needed (a view given as staging table, ...).
    WrongObjectType,
    /// 42703: a column does not exist where it must.
    UndefinedColumn,
    /// 42804: a column's type cannot be stored into the destination's.
    DatatypeMismatch,
    /// 42P10: the conflict target is not backed by a unique constraint.
    InvalidColumnReference,
    /// 23505: RESTRICT found a row that already exists.
    UniqueViolation,
    /// 23502: staging rows have NULL in a column the destination needs.
    NotNullViolation,
    /// 42501: the running role lacks a privilege.
    InsufficientPrivilege,
    /// 55000: the objects are not in a state the run can work with.
    ObjectNotInPrerequisiteState,
    /// 42602: a table name is not valid SQL name syntax.
    InvalidName,
    /// 428C9: a staging column would write a generated destination column.
    GeneratedAlways,
    /// 42704: a job that does not exist.
    UndefinedObject,
    /// 0A000: the installed TimescaleDB lacks something a run needs.
    FeatureNotSupported,
}

impl Code {
    pub fn sqlstate(self) -> &'static str {
        match self {
            Code::InvalidParameterValue => "22023",
            Code::NullValueNotAllowed => "22004",
            Code::UndefinedTable => "42P01",
            Code::WrongObjectType => "42809",
            Code::UndefinedColumn => "42703",
            Code::DatatypeMismatch => "42804",
            Code::InvalidColumnReference => "42P10",
            Code::UniqueViolation => "23505",
            Code::NotNullViolation => "23502",
            Code::InsufficientPrivilege => "42501",
            Code::ObjectNotInPrerequisiteState => "55000",
            Code::InvalidName => "42602",
            Code::GeneratedAlways => "428C9",
            Code::UndefinedObject => "42704",
            Code::FeatureNotSupported => "0A000",
        }
    }
}

/// An error with everything a user needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillError {
    pub code: Code,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl BackfillError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        BackfillError { code, message: message.into(), detail: None, hint: None }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl fmt::Display for BackfillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for BackfillError {}

pub type Result<T> = std::result::Result<T, BackfillError>;
