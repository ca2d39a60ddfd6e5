//! Decompress the whole chunk, insert, compress it again: the way that always works,
//! and what a direct insert or a merge falls back to.

use super::source::RowSource;
use crate::plan::Strategy;
use crate::spi;
use crate::step::Prepared;
use crate::step::{ms, StepResult};
use crate::timescale::Chunk;
use std::time::Instant;

pub fn apply(prep: &Prepared, chunk: &Chunk, take: RowSource) -> StepResult {
    super::require_owner(prep);
    let mut r = StepResult { strategy: Some(Strategy::Decompress), ..Default::default() };
    let t = Instant::now();
    super::decompress_chunk(prep, &chunk.name);
    r.decompressed = true;
    spi::pause_point("after_decompress");
    r.decompress_ms = ms(t);
    super::move_timed(prep, chunk, take, &mut r);
    let t = Instant::now();
    super::compress(prep, &chunk.name);
    r.recompressed = true;
    r.recompress_ms = ms(t);
    r
}
