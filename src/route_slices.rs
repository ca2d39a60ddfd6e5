//! The routed staging rows' ids, gathered per chunk number as they are read and handed
//! out in slices, each written as one row of the route table (a chunk number and an
//! array of ids). At most `held` ids are held at once however many rows and chunks a
//! run routes, so memory stays bounded; the table holds 6 bytes an id instead of a
//! row and an index entry per staging row.

use std::collections::BTreeMap;

/// Ids in one route table row at most.
pub const SLICE: usize = 8192;
/// Ids held, over every chunk, before all of them are written.
pub const HELD: usize = 1 << 20;

pub struct RouteSlices<T> {
    by_chunk: BTreeMap<i32, Vec<T>>,
    held: usize,
    slice: usize,
    max_held: usize,
}

impl<T> RouteSlices<T> {
    pub fn new(slice: usize, max_held: usize) -> Self {
        RouteSlices {
            by_chunk: BTreeMap::new(),
            held: 0,
            slice: slice.max(1),
            max_held: max_held.max(1),
        }
    }

    /// Adds a row's id; returns the slices to write now: the chunk's, once it holds a
    /// full slice, or every chunk's, once more than `max_held` ids are held.
    pub fn push(&mut self, chunk: i32, id: T) -> Vec<(i32, Vec<T>)> {
        let ids = self.by_chunk.entry(chunk).or_default();
        ids.push(id);
        self.held += 1;
        if ids.len() >= self.slice {
            self.held -= ids.len();
            return vec![(chunk, std::mem::take(ids))];
        }
        if self.held > self.max_held {
            return self.drain();
        }
        vec![]
    }

    /// Every id still held, a slice per chunk.
    pub fn drain(&mut self) -> Vec<(i32, Vec<T>)> {
        self.held = 0;
        std::mem::take(&mut self.by_chunk).into_iter().filter(|(_, ids)| !ids.is_empty()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes `rows` (chunk, id) and returns every slice written, in order.
    fn route(rows: &[(i32, u32)], slice: usize, held: usize) -> Vec<(i32, Vec<u32>)> {
        let mut r = RouteSlices::new(slice, held);
        let mut out = vec![];
        for (chunk, id) in rows {
            out.extend(r.push(*chunk, *id));
            assert!(r.held <= held, "held {} ids, more than {held}", r.held);
        }
        out.extend(r.drain());
        out
    }

    #[test]
    fn every_id_is_written_once_in_its_chunks_slices() {
        let rows: Vec<(i32, u32)> = (0..1000u32).map(|i| ((i * 7 % 13) as i32 + 1, i)).collect();
        let out = route(&rows, 16, 100);
        let mut seen: Vec<u32> = out.iter().flat_map(|(_, ids)| ids.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        for (chunk, ids) in &out {
            assert!(!ids.is_empty() && ids.len() <= 16, "slice of {} ids", ids.len());
            assert!(
                ids.iter().all(|i| (i * 7 % 13) as i32 + 1 == *chunk),
                "an id in another chunk's slice"
            );
        }
    }

    #[test]
    fn a_chunks_slice_goes_when_full_and_all_go_when_too_many_are_held() {
        let mut r = RouteSlices::new(3, 4);
        assert!(r.push(1, 10).is_empty() && r.push(1, 11).is_empty());
        assert_eq!(r.push(1, 12), vec![(1, vec![10, 11, 12])]);
        assert!(
            r.push(2, 20).is_empty()
                && r.push(3, 30).is_empty()
                && r.push(2, 21).is_empty()
                && r.push(4, 40).is_empty()
        );
        // the fifth id held: everything goes, chunk by chunk
        assert_eq!(r.push(3, 31), vec![(2, vec![20, 21]), (3, vec![30, 31]), (4, vec![40])]);
        assert!(r.drain().is_empty());
        assert_eq!(r.push(5, 50), vec![]);
        assert_eq!(r.drain(), vec![(5, vec![50])]);
    }
}
