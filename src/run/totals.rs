//! What a whole run did: its steps' results added up, for its closing NOTICE.

use crate::step::StepResult;

/// Totals of a run.
#[derive(Debug, Default)]
pub struct Totals {
    pub moved: i64,
    pub inserted: i64,
    pub updated: i64,
    pub conflicts: i64,
    pub chunks: i64,
    pub decompressed: i64,
    pub recompressed: i64,
    pub new_chunks: i64,
}

impl Totals {
    /// Adds a chunk step.
    pub fn add_chunk(&mut self, r: &StepResult) {
        self.add_rows(r);
        self.chunks += 1;
        self.decompressed += r.decompressed as i64;
        self.recompressed += r.recompressed as i64;
    }

    /// Adds the rows of a step (the rows outside every chunk count only these).
    pub fn add_rows(&mut self, r: &StepResult) {
        self.moved += r.moved;
        self.inserted += r.inserted;
        self.updated += r.updated;
        self.conflicts += r.conflicts();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_rows_and_chunks() {
        let mut t = Totals::default();
        let r = StepResult {
            moved: 10,
            inserted: 7,
            updated: 2,
            decompressed: true,
            recompressed: true,
            ..Default::default()
        };
        t.add_chunk(&r);
        t.add_rows(&StepResult { moved: 5, inserted: 5, ..Default::default() });
        assert_eq!((t.moved, t.inserted, t.updated, t.conflicts), (15, 12, 2, 3));
        assert_eq!((t.chunks, t.decompressed, t.recompressed), (1, 1, 1));
    }
}
