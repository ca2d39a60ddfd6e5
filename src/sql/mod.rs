//! SQL text builders. Pure: every identifier goes through `ident`, every value is a
//! `$n` parameter (always passed as text and cast here), so each statement is
//! unit-tested as text. One file per concern:
//! - `moves`: the statements that move rows from staging into the destination;
//! - `route`: counting and routing staging rows to their chunks;
//! - `keys`: conflict keys compared as the target's unique index compares them;
//! - `merge`: a dense upsert's merge by segments and chunk rewrite;
//! - `caggs`: continuous aggregates and their refresh windows;
//! - `catalog`: reads of PostgreSQL's catalog and TimescaleDB's views;
//! - `history`: the run history;
//! - `hold`: the destination lock and the compression policy hold;
//! - `chunk`: compressing, decompressing, locking a chunk; the run's temporary tables;
//! - `settings`: the run's `lock_timeout` and `work_mem`;
//! - `tasks`: chunk transactions handed to background workers;
//! - `jobs`: scheduling with TimescaleDB's job API;
//! - `cron`: scheduling with pg_cron.

pub(crate) mod caggs;
#[cfg(test)]
pub(crate) mod checks;
pub(crate) mod chunk;
pub(crate) mod cron;
pub(crate) mod history_rows;
pub(crate) mod hold;
pub(crate) mod jobs;
pub(crate) mod keys;
pub(crate) mod lookups;
pub(crate) mod moves;
pub(crate) mod new_segments;
pub(crate) mod route;
pub(crate) mod segment_merge;
pub(crate) mod settings;
pub(crate) mod split;
pub(crate) mod tasks;

use crate::columns::Conflict;
use crate::ident::{quote_ident, QualifiedName};
use crate::timescale::{SpaceRange, TimeKind};

/// Which rows of the staging table a step takes: a time range and, on a
/// space-partitioned hypertable, hash ranges. Bounds are text parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilter {
    pub time_column: String,
    pub kind: TimeKind,
    pub lo: Option<String>,
    pub hi: Option<String>,
    pub space: Vec<SpaceRange>,
    /// Schema TimescaleDB's internal functions live in (for the hash function).
    pub hash_function: String,
    /// A range of staging's blocks, `[from, to)` (either end open): the rest moves
    /// its rows in slices of staging, one transaction each.
    pub blocks: (Option<i64>, Option<i64>),
}

impl RowFilter {
    /// A filter that takes every row.
    pub fn everything(time_column: &str, kind: TimeKind) -> RowFilter {
        RowFilter {
            time_column: time_column.to_string(),
            kind,
            lo: None,
            hi: None,
            space: vec![],
            hash_function: String::new(),
            blocks: (None, None),
        }
    }

    /// The same rows, in staging's blocks `[from, to)` only (a TID range scan).
    pub fn in_blocks(&self, blocks: (Option<i64>, Option<i64>)) -> RowFilter {
        RowFilter { blocks, ..self.clone() }
    }

    /// A chunk range bound (text of the view's range column) as a value comparable to
    /// the time column. TimescaleDB keeps `timestamp` and `date` ranges as if in UTC.
    /// Each is a one-row subquery, so the text parameter is cast once per statement
    /// rather than once per staging row.
    fn bound(kind: TimeKind, param: usize) -> String {
        match kind {
            TimeKind::TimestampTz => format!("(SELECT ${param}::timestamptz)"),
            TimeKind::Timestamp | TimeKind::Date => {
                format!("(SELECT ${param}::timestamptz AT TIME ZONE 'UTC')")
            }
            TimeKind::Integer => format!("(SELECT ${param}::bigint)"),
        }
    }

    /// The WHERE condition, with parameters numbered from `first`; returns the text and
    /// the values to bind in order.
    pub fn render(&self, alias: &str, first: usize) -> (String, Vec<String>) {
        let col = format!("{alias}.{}", quote_ident(&self.time_column));
        let mut parts = Vec::new();
        let mut params = Vec::new();
        let mut n = first;
        if let Some(lo) = &self.lo {
            parts.push(format!("{col} >= {}", Self::bound(self.kind, n)));
            params.push(lo.clone());
            n += 1;
        }
        if let Some(hi) = &self.hi {
            parts.push(format!("{col} < {}", Self::bound(self.kind, n)));
            params.push(hi.clone());
            n += 1;
        }
        for (op, block) in [(">=", self.blocks.0), ("<", self.blocks.1)] {
            if let Some(b) = block {
                parts.push(format!("{alias}.ctid {op} (SELECT ${n}::tid)"));
                params.push(format!("({b},0)"));
                n += 1;
            }
        }
        for s in &self.space {
            let hash = format!("{}({alias}.{})", self.hash_function, quote_ident(&s.column));
            if let Some(lo) = s.lo {
                parts.push(format!("{hash} >= (SELECT ${n}::integer)"));
                params.push(lo.to_string());
                n += 1;
            }
            if let Some(hi) = s.hi {
                parts.push(format!("{hash} < (SELECT ${n}::integer)"));
                params.push(hi.to_string());
                n += 1;
            }
        }
        if parts.is_empty() {
            ("true".to_string(), params)
        } else {
            (parts.join(" AND "), params)
        }
    }
}

/// Everything one move statement needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveSpec {
    pub staging: QualifiedName,
    pub destination: QualifiedName,
    /// Columns copied, by name, in the order they are listed.
    pub columns: Vec<String>,
    pub conflict: Conflict,
    pub delete_from_staging: bool,
    /// A natively partitioned destination cannot return system columns, so updates
    /// are told from inserts by looking the keys up before the insert.
    pub dest_partitioned: bool,
}

/// An array literal of text values, for a `$n::type[]` parameter.
pub fn array_literal(values: &[String]) -> String {
    let items: Vec<String> = values
        .iter()
        .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", items.join(","))
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::config::ConflictAction;

    pub fn spec(
        action: ConflictAction,
        target: &[&str],
        update: &[&str],
        delete: bool,
    ) -> MoveSpec {
        MoveSpec {
            staging: QualifiedName::new("public", "backfill_event_data"),
            destination: QualifiedName::new("public", "event_data"),
            columns: vec!["time".into(), "device_id".into(), "value".into()],
            conflict: Conflict {
                action,
                target: target.iter().map(|s| s.to_string()).collect(),
                update_columns: update.iter().map(|s| s.to_string()).collect(),
                rules: Default::default(),
                not_null_in_staging: vec![],
            },
            delete_from_staging: delete,
            dest_partitioned: false,
        }
    }

    pub fn day_filter(kind: TimeKind) -> RowFilter {
        RowFilter {
            time_column: "time".into(),
            kind,
            lo: Some("2024-01-01 00:00:00+00".into()),
            hi: Some("2024-01-02 00:00:00+00".into()),
            space: vec![],
            hash_function: "_timescaledb_functions.get_partition_hash".into(),
            blocks: (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn filter_by_time_kind() {
        let (c, p) = day_filter(TimeKind::TimestampTz).render("s", 1);
        assert_eq!(
            c,
            "s.\"time\" >= (SELECT $1::timestamptz) AND s.\"time\" < (SELECT $2::timestamptz)"
        );
        assert_eq!(p, ["2024-01-01 00:00:00+00", "2024-01-02 00:00:00+00"]);
        let (c, _) = day_filter(TimeKind::Timestamp).render("s", 3);
        assert_eq!(
            c,
            "s.\"time\" >= (SELECT $3::timestamptz AT TIME ZONE 'UTC') AND s.\"time\" < \
            (SELECT $4::timestamptz AT TIME ZONE 'UTC')"
        );
        let (c, _) = day_filter(TimeKind::Integer).render("x", 1);
        assert_eq!(c, "x.\"time\" >= (SELECT $1::bigint) AND x.\"time\" < (SELECT $2::bigint)");
        let (c, p) = RowFilter::everything("time", TimeKind::Date).render("s", 1);
        assert_eq!((c.as_str(), p.len()), ("true", 0));
        // a slice of staging's blocks, either end open
        let (c, p) = RowFilter::everything("time", TimeKind::Date)
            .in_blocks((Some(10), Some(20)))
            .render("s", 1);
        assert_eq!(c, "s.ctid >= (SELECT $1::tid) AND s.ctid < (SELECT $2::tid)");
        assert_eq!(p, ["(10,0)", "(20,0)"]);
        let (c, p) = day_filter(TimeKind::TimestampTz).in_blocks((None, Some(7))).render("s", 1);
        assert_eq!(
            c,
            "s.\"time\" >= (SELECT $1::timestamptz) AND s.\"time\" < (SELECT \
            $2::timestamptz) AND s.ctid < (SELECT $3::tid)"
        );
        assert_eq!(p[2], "(7,0)");
    }

    #[test]
    fn filter_with_space_ranges() {
        let mut f = day_filter(TimeKind::TimestampTz);
        f.hi = None;
        f.space = vec![SpaceRange { column: "device id".into(), lo: Some(10), hi: Some(20) }];
        let (c, p) = f.render("s", 1);
        assert_eq!(
            c,
            "s.\"time\" >= (SELECT $1::timestamptz) AND \
             _timescaledb_functions.get_partition_hash(s.\"device id\") >= (SELECT $2::integer) \
             AND _timescaledb_functions.get_partition_hash(s.\"device id\") < (SELECT $3::integer)"
        );
        assert_eq!(p, ["2024-01-01 00:00:00+00", "10", "20"]);
    }
}
