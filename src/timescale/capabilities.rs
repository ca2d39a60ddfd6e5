//! What backfill_ext needs of TimescaleDB, checked by capability (a function's
//! existence and kind, a setting's presence), not by version number. A TimescaleDB
//! that lacks any of them is refused before a run changes anything, with an error
//! that names the supported range.
//!
//! Each capability is the reason for the minimum:
//! - `_timescaledb_functions.chunk_status(regclass)`: chunk status bits (2.12);
//! - `timescaledb.max_tuples_decompressed_per_dml_transaction`: the limit a direct
//!   insert or merge must stay under, and falls back from (2.14);
//! - `timescaledb.enable_compressed_direct_batch_delete`: whole compressed batches
//!   deleted without decompressing them, which a merge by segments relies on (2.17);
//! - a `DELETE` on a compressed chunk itself deletes its compressed batches (fixed in
//!   2.23.0, TimescaleDB #8704): before, a merge by segments loses the corrections it
//!   applies (measured on 2.18.2, 2.20.3 and 2.22.1; on 2.17.2 `ON CONFLICT DO
//!   NOTHING` into a compressed chunk also drops the rows after the first conflict).
//!   A fix has no name to look up, so the check looks for the setting that shipped in
//!   the same release, `timescaledb.enable_direct_compress_insert`;
//! - `compress_chunk` and `decompress_chunk` as functions and `alter_job`: the
//!   per-chunk steps and the policy hold (every 2.x release).

use crate::error::{BackfillError, Code};

/// The oldest TimescaleDB release with every capability below, and the newest one
/// this release of backfill_ext was tested with.
pub const MIN_TIMESCALEDB: &str = "2.23";
pub const TESTED_UP_TO: &str = "2.29.2";

/// The capabilities as read from a database (`catalog::timescale_capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub chunk_status_fn: bool,
    pub decompress_limit_setting: bool,
    pub direct_batch_delete_setting: bool,
    pub chunk_delete_fixed: bool,
    pub compress_functions: bool,
    pub alter_job: bool,
}

impl Capabilities {
    /// The capabilities that are missing, each as users would look for it.
    pub fn missing(&self) -> Vec<&'static str> {
        let all = [
            (self.chunk_status_fn, "function _timescaledb_functions.chunk_status(regclass)"),
            (
                self.decompress_limit_setting,
                "setting \
                timescaledb.max_tuples_decompressed_per_dml_transaction",
            ),
            (
                self.direct_batch_delete_setting,
                "setting \
                timescaledb.enable_compressed_direct_batch_delete",
            ),
            (
                self.chunk_delete_fixed,
                "the fix for DELETE on compressed chunks of 2.23.0 (setting \
                timescaledb.enable_direct_compress_insert)",
            ),
            (
                self.compress_functions,
                "functions compress_chunk(regclass, boolean) and \
                decompress_chunk(regclass, boolean)",
            ),
            (self.alter_job, "function alter_job"),
        ];
        all.iter().filter(|(has, _)| !has).map(|(_, what)| *what).collect()
    }

    /// Ok when everything is there; otherwise the error a run raises before it starts.
    pub fn check(&self, version: &str) -> Result<(), BackfillError> {
        let missing = self.missing();
        if missing.is_empty() {
            return Ok(());
        }
        Err(BackfillError::new(
            Code::FeatureNotSupported,
            format!(
                "TimescaleDB {version} lacks what backfill_ext needs (TimescaleDB \
                {MIN_TIMESCALEDB} or later)"
            ),
        )
        .detail(format!("This TimescaleDB lacks: {}.", missing.join("; ")))
        .hint(format!(
            "update TimescaleDB to {MIN_TIMESCALEDB} or later (tested up to {TESTED_UP_TO}), then \
             run ALTER EXTENSION timescaledb UPDATE"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Capabilities {
        Capabilities {
            chunk_status_fn: true,
            decompress_limit_setting: true,
            direct_batch_delete_setting: true,
            chunk_delete_fixed: true,
            compress_functions: true,
            alter_job: true,
        }
    }

    #[test]
    fn a_timescaledb_with_everything_is_accepted() {
        assert!(all().missing().is_empty());
        assert_eq!(all().check("2.29.2"), Ok(()));
    }

    #[test]
    fn each_missing_capability_is_named_with_the_supported_range() {
        // 2.22: DELETE on a compressed chunk leaves its batches
        let c = Capabilities { chunk_delete_fixed: false, ..all() };
        let e = c.check("2.22.1").unwrap_err();
        assert_eq!(e.code.sqlstate(), "0A000");
        assert_eq!(
            e.message,
            "TimescaleDB 2.22.1 lacks what backfill_ext needs (TimescaleDB 2.23 or later)"
        );
        assert_eq!(
            e.detail.as_deref(),
            Some(
                "This TimescaleDB lacks: the fix for DELETE on compressed chunks of 2.23.0 \
                (setting timescaledb.enable_direct_compress_insert)."
            )
        );
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "update TimescaleDB to 2.23 or later (tested up to 2.29.2), then run ALTER \
                EXTENSION timescaledb UPDATE"
            )
        );
        // 2.11: no _timescaledb_functions schema, no limit setting either
        let c = Capabilities {
            chunk_status_fn: false,
            decompress_limit_setting: false,
            direct_batch_delete_setting: false,
            chunk_delete_fixed: false,
            ..all()
        };
        assert_eq!(
            c.missing(),
            [
                "function _timescaledb_functions.chunk_status(regclass)",
                "setting timescaledb.max_tuples_decompressed_per_dml_transaction",
                "setting timescaledb.enable_compressed_direct_batch_delete",
                "the fix for DELETE on compressed chunks of 2.23.0 (setting \
                 timescaledb.enable_direct_compress_insert)"
            ]
        );
        let c = Capabilities { compress_functions: false, alter_job: false, ..all() };
        assert_eq!(c.missing().len(), 2);
        assert!(c.check("9.9").unwrap_err().detail.unwrap().contains("compress_chunk"));
    }
}
