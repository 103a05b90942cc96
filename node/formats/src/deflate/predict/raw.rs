//! The raw bytes a model sees: a window of one piece of the stream, and where the piece's producer stopped.
//!
//! A model is made for one *piece* — a gzip member, or a part of one that its producer compressed afresh (a pgzip
//! block) — and reads the piece's raw bytes by their offset in the whole raw stream. It never holds the whole
//! stream: the driver keeps a window of it here, at least [`HISTORY`] bytes behind the position the model is
//! asked about and at least [`LOOKAHEAD`] ahead of it (or to the piece's end), and tells it the piece's end and
//! the producer's flushes inside the piece as soon as they are known. A model therefore never reads more than
//! `HISTORY` back or `LOOKAHEAD` ahead, and takes an end that is not known yet as lying beyond its look-ahead —
//! so it decides exactly as it would with the whole stream in memory, whatever the window.

use std::collections::VecDeque;
use std::ops::{Index, Range};

/// An end or stop not known yet: further than any model looks.
pub const FAR: usize = usize::MAX / 4;
/// How far past a position a model may read (and see the piece's end and flushes).
pub const LOOKAHEAD: usize = 256 << 10;
/// How far before a position a model may read.
pub const HISTORY: usize = 128 << 10;

/// A window of a piece's raw bytes, by absolute raw offset.
#[derive(Debug, Clone)]
pub struct Raw {
    /// Offset of `data[0]`.
    lo: usize,
    data: Vec<u8>,
    /// Where the piece starts (bytes before it, from `lo`, are history: a dictionary).
    start: usize,
    /// Where the piece ends, `FAR` until known.
    end: usize,
    /// Flushes inside the piece (empty stored blocks), ascending, from somewhat before the window on.
    flushes: VecDeque<usize>,
}

impl Raw {
    /// An empty window for a piece starting at `start`, whose history starts at `lo` (≤ `start`).
    pub fn new(lo: usize, start: usize) -> Raw {
        debug_assert!(lo <= start);
        Raw {
            lo,
            data: Vec::new(),
            start,
            end: FAR,
            flushes: VecDeque::new(),
        }
    }

    /// A whole piece in memory: `data` holds `[lo, lo + data.len())`, the piece is `[start, end)`.
    pub fn whole(lo: usize, data: Vec<u8>, start: usize, end: usize, flushes: &[usize]) -> Raw {
        let mut r = Raw::new(lo, start);
        r.data = data;
        r.flushes
            .extend(flushes.iter().copied().filter(|&f| start < f && f < end));
        r.end = end;
        debug_assert!(r.hi() >= end);
        r
    }

    /// Where the piece starts.
    #[inline(always)]
    pub fn start(&self) -> usize {
        self.start
    }

    /// Where the piece ends, or `FAR` while not known.
    #[inline(always)]
    pub fn end(&self) -> usize {
        self.end
    }

    /// The first byte held.
    #[inline(always)]
    pub fn lo(&self) -> usize {
        self.lo
    }

    /// Just past the last byte held.
    #[inline(always)]
    pub fn hi(&self) -> usize {
        self.lo + self.data.len()
    }

    /// The first flush after `pos`, or the piece's end.
    #[inline]
    pub fn next_stop(&self, pos: usize) -> usize {
        let i = self.flushes.partition_point(|&f| f <= pos);
        self.flushes.get(i).copied().unwrap_or(self.end)
    }

    /// The piece ends at `end`.
    pub fn set_end(&mut self, end: usize) {
        self.end = end;
        while self.flushes.back().is_some_and(|&f| f >= end) {
            self.flushes.pop_back();
        }
    }

    /// The producer flushed at `at` (inside the piece, after every flush noted before).
    pub fn add_flush(&mut self, at: usize) {
        if at > self.start && at < self.end && self.flushes.back().is_none_or(|&f| f < at) {
            self.flushes.push_back(at);
        }
    }

    /// Append the next raw bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    /// Drop what lies before `pos` − `HISTORY` once that is a sizeable part of the window (a model asked about
    /// `pos` or later never reads it).
    pub fn forget_before(&mut self, pos: usize) {
        let keep = pos.saturating_sub(HISTORY).max(self.lo);
        let drop = keep - self.lo;
        if drop >= (1 << 20) && drop * 2 >= self.data.len() {
            self.data.drain(..drop);
            self.lo = keep;
            while self.flushes.front().is_some_and(|&f| f + HISTORY < keep) {
                self.flushes.pop_front();
            }
        }
    }

    /// The bytes `[a, b)`.
    #[inline(always)]
    pub fn slice(&self, a: usize, b: usize) -> &[u8] {
        &self.data[a - self.lo..b - self.lo]
    }

    /// Bytes held, for bounds on memory.
    pub fn held(&self) -> usize {
        self.data.len()
    }
}

impl Index<usize> for Raw {
    type Output = u8;
    #[inline(always)]
    fn index(&self, x: usize) -> &u8 {
        &self.data[x - self.lo]
    }
}

impl Index<Range<usize>> for Raw {
    type Output = [u8];
    #[inline(always)]
    fn index(&self, r: Range<usize>) -> &[u8] {
        &self.data[r.start - self.lo..r.end - self.lo]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_slides_and_keeps_its_offsets() {
        let mut r = Raw::new(100, 100);
        let bytes: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
        r.push(&bytes);
        assert_eq!((r.lo(), r.hi()), (100, 100 + bytes.len()));
        assert_eq!(r[100 + 300], bytes[300]);
        r.forget_before(100 + (2 << 20));
        assert!(r.lo() > 100 && r.lo() <= 100 + (2 << 20) - HISTORY);
        let x = 100 + (2 << 20) - HISTORY;
        assert_eq!(r[x], bytes[x - 100]);
        assert_eq!(&r[x..x + 5], &bytes[x - 100..x - 95]);
        assert_eq!(r.hi(), 100 + bytes.len());
    }

    #[test]
    fn stops_are_flushes_then_the_end() {
        let mut r = Raw::new(0, 10);
        assert_eq!(r.next_stop(10), FAR);
        r.add_flush(50);
        r.add_flush(40); // out of order: ignored
        r.add_flush(5); // before the start: ignored
        r.add_flush(80);
        assert_eq!(r.next_stop(10), 50);
        assert_eq!(r.next_stop(50), 80);
        assert_eq!(r.next_stop(80), FAR);
        r.set_end(70);
        assert_eq!(r.next_stop(50), 70);
        assert_eq!(r.end(), 70);
    }
}
