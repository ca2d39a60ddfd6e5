//! A chunk that is not compressed: an ordinary insert.

use super::source::RowSource;
use crate::plan::Strategy;
use crate::step::Prepared;
use crate::step::StepResult;
use crate::timescale::Chunk;

pub fn apply(prep: &Prepared, chunk: &Chunk, take: RowSource) -> StepResult {
    let mut r = StepResult { strategy: Some(Strategy::Insert), ..Default::default() };
    super::move_timed(prep, chunk, take, &mut r);
    r
}
