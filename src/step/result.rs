//! What one step did: a `StepResult` per chunk (or per slice of the rows outside every
//! chunk). The run adds them up (`run::totals`); the history records them; the NOTICEs
//! describe them.

use crate::plan::Strategy;
use std::time::Instant;

/// What one step did.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct StepResult {
    /// How the rows went in (None for rows outside existing chunks).
    pub strategy: Option<Strategy>,
    /// A direct insert hit the decompression limit and the chunk was decompressed instead.
    pub fell_back: bool,
    pub moved: i64,
    pub inserted: i64,
    pub updated: i64,
    pub decompressed: bool,
    pub recompressed: bool,
    /// TimescaleDB wrote the rows as compressed batches (its direct compression).
    pub compressed_directly: bool,
    /// A merge touched every segment and rewrote the whole chunk.
    pub rewrote: bool,
    /// It held the merged rows in a temporary table (they would not fit in memory).
    pub rewrote_on_disk: bool,
    /// Why a rewrite wrote its rows back row by row, not in bulk.
    pub rewrote_by_insert: Option<String>,
    /// A direct step's rows, all of segments the chunk lacked, were written in bulk.
    pub wrote_in_bulk: bool,
    /// Some of them were of segments the chunk had (`NOTHING`: their keys it lacked).
    pub met_segments: bool,
    pub decompress_ms: f64,
    pub insert_ms: f64,
    pub recompress_ms: f64,
}

impl StepResult {
    pub fn conflicts(&self) -> i64 {
        self.moved - self.inserted
    }

    /// What was done to the chunk, for the NOTICE.
    pub fn describe(&self) -> String {
        let how = match (self.strategy, self.recompressed) {
            (Some(Strategy::Direct), false) if self.compressed_directly => {
                "written into the compressed chunk as compressed batches"
            }
            (Some(Strategy::Direct), true) if self.wrote_in_bulk && self.met_segments => {
                "new keys written into the chunk in bulk, recompressed"
            }
            (Some(Strategy::Direct), true) if self.wrote_in_bulk => {
                "new segments written into the chunk in bulk, recompressed"
            }
            (Some(Strategy::Direct), true) => "inserted into the compressed chunk, recompressed",
            (Some(Strategy::Direct), false) => "inserted into the compressed chunk",
            (Some(Strategy::Decompress), _) => "decompressed, recompressed",
            (Some(Strategy::Merge), _) if self.rewrote => {
                let through = match (self.rewrote_on_disk, &self.rewrote_by_insert) {
                    (false, None) => String::new(),
                    (true, None) => " (through a temporary table)".to_string(),
                    (false, Some(why)) => format!(" (row by row: {why})"),
                    (true, Some(why)) => format!(" (through a temporary table, row by row: {why})"),
                };
                return format!(
                    "merged, every segment touched: chunk rewritten{through}, recompressed"
                );
            }
            (Some(Strategy::Merge), _) => "merged into its segments, recompressed",
            _ => "uncompressed chunk",
        };
        if self.fell_back {
            format!("{how} (the direct insert would have passed the decompression limit)")
        } else {
            how.to_string()
        }
    }

    /// The strategy as the history records it.
    pub fn strategy_label(&self) -> String {
        let name = self.strategy.map(|s| s.as_str()).unwrap_or("insert");
        format!("{name}{}", if self.fell_back { " (fell back)" } else { "" })
    }

    /// The step's time in milliseconds.
    pub fn total_ms(&self) -> f64 {
        self.decompress_ms + self.insert_ms + self.recompress_ms
    }
}

/// Milliseconds since `t`.
pub fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_say_what_was_done() {
        let r = StepResult {
            strategy: Some(Strategy::Direct),
            recompressed: true,
            ..Default::default()
        };
        assert_eq!(r.describe(), "inserted into the compressed chunk, recompressed");
        let r = StepResult {
            strategy: Some(Strategy::Decompress),
            fell_back: true,
            ..Default::default()
        };
        assert_eq!(
            r.describe(),
            "decompressed, recompressed (the direct insert would have passed \
            the decompression limit)"
        );
        assert_eq!(r.strategy_label(), "decompress (fell back)");
        let r = StepResult {
            strategy: Some(Strategy::Merge),
            rewrote: true,
            rewrote_on_disk: true,
            ..Default::default()
        };
        assert_eq!(
            r.describe(),
            "merged, every segment touched: chunk rewritten (through a \
            temporary table), recompressed"
        );
        let r2 =
            StepResult { rewrote_by_insert: Some("the chunk has triggers".into()), ..r.clone() };
        assert_eq!(
            r2.describe(),
            "merged, every segment touched: chunk rewritten (through a \
            temporary table, row by row: the chunk has triggers), recompressed"
        );
        let r = StepResult { strategy: Some(Strategy::Merge), rewrote: true, ..Default::default() };
        assert_eq!(r.describe(), "merged, every segment touched: chunk rewritten, recompressed");
        let r = StepResult { rewrote_by_insert: Some("the chunk has triggers".into()), ..r };
        assert_eq!(
            r.describe(),
            "merged, every segment touched: chunk rewritten (row by row: the \
            chunk has triggers), recompressed"
        );
        assert_eq!(StepResult::default().strategy_label(), "insert");
        let r = StepResult {
            strategy: Some(Strategy::Direct),
            compressed_directly: true,
            ..Default::default()
        };
        assert_eq!(r.describe(), "written into the compressed chunk as compressed batches");
        assert_eq!(r.strategy_label(), "direct");
    }
}
