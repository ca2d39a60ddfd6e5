//! The TimescaleDB model shared by planning, the catalog reads and the SQL text:
//! time kinds, chunk status bits, chunks and their space ranges, hypertables, policy
//! jobs, and what a run needs of a TimescaleDB release (`capabilities`). Pure.

pub(crate) mod capabilities;
pub(crate) mod constraint;

use crate::ident::{quote_ident, QualifiedName};

/// The type family of the hypertable's time dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    TimestampTz,
    /// `timestamp without time zone`: TimescaleDB keeps its ranges as if in UTC.
    Timestamp,
    /// `date`: kept like a timestamp at midnight UTC.
    Date,
    /// smallint, integer, bigint: the ranges are plain integers.
    Integer,
}

impl TimeKind {
    /// From `format_type()` output; `None` for a type this extension does not handle.
    pub fn from_type_name(name: &str) -> Option<TimeKind> {
        match name {
            "timestamp with time zone" => Some(TimeKind::TimestampTz),
            "timestamp without time zone" => Some(TimeKind::Timestamp),
            "date" => Some(TimeKind::Date),
            "smallint" | "integer" | "bigint" => Some(TimeKind::Integer),
            _ => None,
        }
    }
}

/// A closed hash-partition range of a space dimension, as the chunk's CHECK
/// constraint states it: `lo <= get_partition_hash(column) < hi`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpaceRange {
    pub column: String,
    pub lo: Option<i64>,
    pub hi: Option<i64>,
}

/// The chunk status bits of `_timescaledb_functions.chunk_status()`.
pub(crate) mod status {
    pub const COMPRESSED: i32 = 1;
    pub const UNORDERED: i32 = 2;
    pub const FROZEN: i32 = 4;
    pub const PARTIAL: i32 = 8;

    pub fn is_compressed(s: i32) -> bool {
        s & COMPRESSED != 0
    }
    /// Frozen: TimescaleDB refuses every change to the chunk.
    pub fn is_frozen(s: i32) -> bool {
        s & FROZEN != 0
    }
    /// Compressed, with rows beside the compressed batches.
    pub fn is_partial(s: i32) -> bool {
        s & PARTIAL != 0
    }
    /// Compressed, with no uncompressed rows beside the compressed ones.
    pub fn is_fully_compressed(s: i32) -> bool {
        is_compressed(s) && s & (UNORDERED | PARTIAL) == 0
    }
}

/// One chunk of the destination, as read from `timescaledb_information.chunks`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub name: QualifiedName,
    /// The chunk table's OID (0 when not known).
    pub oid: u32,
    /// Range bounds in the text form of the view's range columns (`None`: unbounded).
    pub lo: Option<String>,
    pub hi: Option<String>,
    /// Hash ranges of space dimensions; empty when the chunk spans them all or they
    /// could not be read (then the chunk is matched on time alone).
    pub space: Vec<SpaceRange>,
    pub status: i32,
}

/// Where TimescaleDB is installed, when it is, with compression and jobs.
#[derive(Debug, Clone)]
pub struct Timescale {
    /// The quoted schema of its user-facing functions (`add_job`, `compress_chunk`, ...).
    pub schema: String,
    pub version: String,
}

impl Timescale {
    pub fn func(&self, name: &str) -> String {
        format!("{}.{}", self.schema, quote_ident(name))
    }
}

pub const CHUNK_STATUS_FN: &str = "_timescaledb_functions.chunk_status";
pub const HASH_FN: &str = "_timescaledb_functions.get_partition_hash";

/// A hypertable's primary dimension.
#[derive(Debug, Clone)]
pub struct Hypertable {
    pub time_column: String,
    pub kind: TimeKind,
    /// The time column's type as `format_type` prints it (one `TimeKind::from_type_name` knows).
    pub time_type: String,
    pub dimensions: i64,
}

impl Hypertable {
    /// Whether `chunks` are told apart by time alone (one dimension, bounded ranges), so
    /// that a row's chunk is found from its time by one binary search.
    pub fn by_time<'a>(&self, mut chunks: impl Iterator<Item = &'a Chunk>) -> bool {
        self.dimensions == 1 && chunks.all(|c| c.lo.is_some() && c.hi.is_some())
    }
}

/// A compression policy job and its schedule as it was before the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub job_id: i32,
    pub next_start: Option<String>,
    pub scheduled: bool,
    /// The job's owner, and whether the current role may act as it.
    pub owner: String,
    pub owned: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_kinds() {
        assert_eq!(
            TimeKind::from_type_name("timestamp with time zone"),
            Some(TimeKind::TimestampTz)
        );
        assert_eq!(
            TimeKind::from_type_name("timestamp without time zone"),
            Some(TimeKind::Timestamp)
        );
        assert_eq!(TimeKind::from_type_name("date"), Some(TimeKind::Date));
        for t in ["smallint", "integer", "bigint"] {
            assert_eq!(TimeKind::from_type_name(t), Some(TimeKind::Integer));
        }
        assert_eq!(TimeKind::from_type_name("uuid"), None);
        assert_eq!(TimeKind::from_type_name("text"), None);
    }

    #[test]
    fn status_bits() {
        assert!(status::is_fully_compressed(1));
        assert!(!status::is_fully_compressed(9));
        assert!(!status::is_fully_compressed(3));
        assert!(!status::is_fully_compressed(0));
        assert!(status::is_compressed(9));
        assert!(!status::is_compressed(8));
    }
}
