//! `Prepared`: everything a run validated before it touched anything, which every
//! later phase and every strategy reads.

use crate::catalog::Table;
use crate::config::Config;
use crate::sql::moves::CompressOrder;
use crate::sql::{segment_merge::MergeSpec, MoveSpec, RowFilter};
use crate::timescale::{Chunk, Hypertable, Timescale, HASH_FN};

/// An interval of the config as the database read it: its text and its length.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedInterval {
    pub text: String,
    pub seconds: f64,
}

/// Everything validated before the run touches anything.
pub struct Prepared {
    pub cfg: Config,
    pub staging: Table,
    pub dest: Table,
    pub ts: Option<Timescale>,
    pub ht: Option<Hypertable>,
    pub spec: MoveSpec,
    /// `compression_job_push_interval`, checked (a run renews its hold once half of it
    /// has passed).
    pub push_interval: CheckedInterval,
    pub history_retention: String,
    /// `max_runtime` in seconds, if set.
    pub max_runtime_s: Option<f64>,
    /// Whether the destination has a unique index (inserts check for conflicts).
    pub has_unique: bool,
    /// Whether TimescaleDB's insert into a compressed chunk meets every conflict: it has
    /// at most one unique index to meet (an upsert's update is not checked against a
    /// second one's compressed rows), which compares no text by a nondeterministic
    /// collation and is not NULLS NOT DISTINCT (2.23 met no NULL key in a compressed
    /// batch) (`plan::allowed_choice`).
    pub direct_meets_conflicts: bool,
    /// The hypertable's segmentby columns.
    pub segmentby: Vec<String>,
    /// The segmentby columns with their collations (where their type has one).
    pub segments_collated: Vec<(String, Option<String>)>,
    /// `timescaledb.max_tuples_decompressed_per_dml_transaction` (0: none).
    pub decompress_limit: i64,
    /// Set when dense rows can merge segments (see `Strategy::Merge`): the merge, and the
    /// move it makes (the run's, its conflict target filled in).
    pub merge: Option<(MergeSpec, MoveSpec)>,
    /// Whether a merge that touches every segment of a chunk may empty the chunk with
    /// TRUNCATE and rewrite it (see `catalog::chunks_can_be_rewritten`).
    pub truncate_ok: bool,
    /// Where a direct insert writes compressed batches itself (TimescaleDB's direct
    /// compression): the order its rows go in (`sql::moves::compression_order_by`). Only
    /// for a hypertable with no unique or exclusion index (nothing to conflict with), no
    /// triggers and no continuous aggregates, where TimescaleDB writes every row so.
    pub compress_order: Option<CompressOrder>,
    /// Where a direct step whose rows all belong to segments the chunk lacks writes them
    /// in bulk (`strategy::new_segments`): one unique key, a plain one holding every
    /// segmentby column, compared as bytes compare; staging with every destination
    /// column; `NOTHING` or `UPDATE`; no triggers on the destination, no continuous
    /// aggregates on it (rows written in bulk are not seen as changed by them).
    /// The move it makes: the run's, with the unique key as its conflict target.
    pub new_segments: Option<MoveSpec>,
    /// The array type of the destination's row type (a rewrite holds rows in one).
    pub row_array_type: u32,
}

impl Prepared {
    /// The staging rows that belong in chunk `c`.
    pub fn filter_for(&self, c: &Chunk) -> RowFilter {
        let ht = self.ht.as_ref().expect("chunks belong to a hypertable");
        RowFilter {
            time_column: ht.time_column.clone(),
            kind: ht.kind,
            lo: c.lo.clone(),
            hi: c.hi.clone(),
            space: c.space.clone(),
            hash_function: HASH_FN.to_string(),
            blocks: (None, None),
        }
    }

    /// Every staging row.
    pub fn filter_all(&self) -> RowFilter {
        match &self.ht {
            Some(h) => RowFilter::everything(&h.time_column, h.kind),
            None => RowFilter::everything("", crate::timescale::TimeKind::Integer),
        }
    }

    /// TimescaleDB, for a hypertable destination.
    pub fn timescale(&self) -> &Timescale {
        self.ts.as_ref().expect("chunks mean TimescaleDB")
    }
}
