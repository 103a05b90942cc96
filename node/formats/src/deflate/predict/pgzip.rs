//! A model of klauspost/pgzip driving klauspost/compress's flate (umoci's layers, containers/image tools).
//!
//! pgzip cuts its input into blocks of a fixed size (umoci: 256 KiB), compresses each with a fresh flate
//! writer whose dictionary is the previous block's last 16 KiB (when that block is longer than 16 KiB), and
//! ends each with a sync flush: in the [`Layout`] the blocks are the raw ranges between empty stored blocks.
//! Within a block, flate's levels 1–6 are "fast" encoders that see the data in chunks of 65 535 bytes (the
//! last chunk is what is left at the flush), keeping hash tables and a history buffer from chunk to chunk. The
//! dictionary is run through the same encoder, its output thrown away. For each chunk the encoder's tokens
//! become a dynamic, fixed or stored block, unless it emitted more than 15/16 as many tokens as bytes (then the
//! chunk is written as literals only, Huffman-coded) or it is a final chunk shorter than 128 bytes (literals).
//!
//! This model replays the encoder over each chunk before its first decision is asked for and answers from that
//! plan, by position. The encoder's decisions do not depend on how its tokens are written, so after a miss the
//! plan stays right wherever the producer's parse meets it again.
//!
//! Levels modelled: 5 (`pgzip-5`, flate's default and so pgzip's and umoci's). Levels 7–9 use another
//! (lazy, hash-chain) compressor, not modelled here.

use super::raw::Raw;
use super::{Decision, Model};

/// Bytes of the previous pgzip block used as the dictionary.
pub(crate) const TAIL: usize = 16384;
/// flate's fast encoders take their input in chunks of this size.
const CHUNK: usize = 65535;
/// The history buffer's capacity: when a chunk does not fit, it keeps only the last `MAX_OFFSET` bytes.
const ALLOC_HISTORY: usize = CHUNK * 5;
/// Matches reach less than this far back (the encoders test `distance < MAX_OFFSET`).
const MAX_OFFSET: i64 = 1 << 15;
/// A final chunk shorter than this is written without matches.
const SMALL_FINAL: usize = 128;
/// Chunks shorter than this get no matches (`minNonLiteralBlockSize`).
const MIN_NON_LITERAL: usize = 13;
/// The encoders stop looking for matches this close to the end of a chunk.
const INPUT_MARGIN: usize = 11;

const TABLE_BITS: u32 = 15;
const TABLE_SIZE: usize = 1 << TABLE_BITS;
const PRIME4: u32 = 2_654_435_761;
const PRIME7: u64 = 58_295_818_150_454_627;

/// At a reset, new entries start this far above every entry made before, which are then out of reach.
const BUMP: i64 = 1 << 17;

/// The dictionary a pgzip block is compressed with, given the length of the block before it in the same member
/// (None for the first block of a member).
pub(crate) fn dictionary(prev: Option<u64>) -> usize {
    match prev {
        Some(len) if len > TAIL as u64 => TAIL,
        _ => 0,
    }
}

/// pgzip at one compression level (5 for now), over one pgzip block: the piece `raw` holds, preceded by its
/// dictionary (see [`dictionary`]) as the window's first bytes.
pub struct Pgzip {
    raw: Raw,
    /// The encoder (always there; an option so it can go back to this thread's spares when the model is done).
    enc: Option<Level5>,
    /// Dictionary bytes before the segment.
    dict: usize,
    started: bool,
    /// Where the segment's next chunk starts.
    chunk_next: usize,
    /// The chunk planned: its raw range, and its matches in order (offset in the chunk << 32 | len << 16 |
    /// dist); every other position is a literal. `next` is the first match not before the last position
    /// asked about.
    chunk_start: usize,
    chunk_end: usize,
    plan: Vec<u64>,
    next: usize,
}

impl Drop for Pgzip {
    fn drop(&mut self) {
        if let Some(enc) = self.enc.take() {
            Level5::give_back(enc);
        }
    }
}

impl Pgzip {
    /// The model of pgzip at flate level 5 (the default). The window's bytes before the piece's start are the
    /// dictionary.
    pub fn new(raw: Raw) -> Self {
        let (start, lo) = (raw.start(), raw.lo());
        Pgzip {
            dict: start - raw.lo(),
            raw,
            started: false,
            chunk_next: start,
            chunk_start: start,
            chunk_end: start,
            plan: Vec::with_capacity(CHUNK / 4),
            next: 0,
            enc: Some(Level5::take(lo)),
        }
    }

    /// Plan chunks until the one holding `pos`; false if `pos` is in none.
    fn reach(&mut self, pos: usize) -> bool {
        let (start, end) = (self.raw.start(), self.raw.end());
        if pos < start || pos >= end {
            return false;
        }
        if !self.started {
            self.started = true;
            if self.dict > 0 {
                let enc = self.enc.as_mut().expect("an encoder until dropped");
                enc.encode(&self.raw, start - self.dict, start, None);
            }
        }
        while pos >= self.chunk_end {
            let start = self.chunk_next;
            let chunk_end = (start + CHUNK).min(end);
            self.chunk_next = chunk_end;
            self.chunk_start = start;
            self.chunk_end = chunk_end;
            self.plan.clear();
            self.next = 0;
            let plan = &mut self.plan;
            if chunk_end == end && chunk_end - start < CHUNK && chunk_end - start < SMALL_FINAL {
                // Flushed while small: stored or literals, and the encoder is not run.
                continue;
            }
            let enc = self.enc.as_mut().expect("an encoder until dropped");
            let n = enc.encode(&self.raw, start, chunk_end, Some(plan));
            let len = chunk_end - start;
            if n > len - (len >> 4) {
                // Huffman only: every byte a literal.
                plan.clear();
            }
        }
        pos >= self.chunk_start
    }
}

impl Model for Pgzip {
    fn raw(&self) -> &Raw {
        &self.raw
    }

    fn raw_mut(&mut self) -> &mut Raw {
        &mut self.raw
    }

    fn predict(&mut self, pos: usize) -> Decision {
        if !self.reach(pos) {
            return Decision::Literal;
        }
        let at = (pos - self.chunk_start) as u64;
        while let Some(&m) = self.plan.get(self.next) {
            if m >> 32 >= at {
                if m >> 32 == at {
                    return Decision::Match {
                        len: (m >> 16) as u16,
                        dist: m as u16,
                    };
                }
                break;
            }
            self.next += 1;
        }
        Decision::Literal
    }

    fn take(&mut self, _pos: usize, _actual: Decision) {}

    fn reach(&mut self, pos: usize) {
        Pgzip::reach(self, pos);
    }
}

/// The history buffer: which raw bytes the encoder can see (`start..end`, contiguous in raw).
#[derive(Clone, Copy, Debug, Default)]
struct Hist {
    start: usize,
    end: usize,
}

impl Hist {
    /// Append the chunk `start..end` (which follows the history, or starts it when empty).
    fn add(&mut self, start: usize, end: usize) {
        if self.end - self.start + (end - start) > ALLOC_HISTORY {
            self.start = self.end - MAX_OFFSET as usize;
        }
        if self.end == self.start {
            self.start = start;
        }
        self.end = end;
    }
}

/// Writes a chunk's decisions into its plan and counts flate's tokens (a match longer than 258 is several).
struct Emit<'p> {
    plan: Option<&'p mut Vec<u64>>,
    base: usize,
    tokens: usize,
}

impl Emit<'_> {
    fn literals(&mut self, n: usize) {
        self.tokens += n;
    }

    /// A match of `len` (≥ 4, possibly > 258) at `pos`, `dist` back.
    fn matched(&mut self, pos: usize, len: usize, dist: usize) {
        let mut at = pos - self.base;
        let mut left = len;
        while left > 0 {
            let l = if left <= 258 {
                left
            } else if left > 258 + 3 {
                258
            } else {
                255
            };
            if let Some(plan) = self.plan.as_deref_mut() {
                plan.push((at as u64) << 32 | (l as u64) << 16 | dist as u64);
            }
            self.tokens += 1;
            at += l;
            left -= l;
        }
    }
}

/// The bytes an encoder call may read: the window up to the end of the chunk, by absolute raw offset.
struct Src<'a> {
    lo: usize,
    data: &'a [u8],
}

impl Src<'_> {
    /// Just past the last byte.
    fn end(&self) -> usize {
        self.lo + self.data.len()
    }
}

impl std::ops::Index<usize> for Src<'_> {
    type Output = u8;
    #[inline(always)]
    fn index(&self, i: usize) -> &u8 {
        &self.data[i - self.lo]
    }
}

#[inline(always)]
fn load32(b: &Src, i: usize) -> u32 {
    let i = i - b.lo;
    u32::from_le_bytes(b.data[i..i + 4].try_into().unwrap())
}

#[inline(always)]
fn load64(b: &Src, i: usize) -> u64 {
    let i = i - b.lo;
    u64::from_le_bytes(b.data[i..i + 8].try_into().unwrap())
}

fn hash4(u: u64) -> usize {
    ((u as u32).wrapping_mul(PRIME4) >> (32 - TABLE_BITS)) as usize
}

fn hash7(u: u64) -> usize {
    ((u << 8).wrapping_mul(PRIME7) >> (64 - TABLE_BITS)) as usize
}

/// Bytes equal from `a` and `b` onwards, up to (not past) `limit` from `a`.
fn match_len(src: &Src, a: usize, b: usize, limit: usize) -> usize {
    let end = a.saturating_add(limit).min(src.end());
    let mut n = 0;
    while a + n + 8 <= end {
        let x = load64(src, a + n) ^ load64(src, b + n);
        if x != 0 {
            return n + (x.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while a + n < end && src[a + n] == src[b + n] {
        n += 1;
    }
    n
}

/// A table entry: a raw offset plus the encoder's `d`; entries of 0 and those made before the last reset are
/// out of reach of every position. Four bytes, as flate's own tables have them: the tables are probed at every
/// position, and half the bytes are half the cache misses.
type Entry = u32;

/// flate's level 5: a 4-byte hash table and a 7-byte hash table of two entries (newest, previous).
struct Level5 {
    table: Box<[Entry; TABLE_SIZE]>,
    long: Box<[[Entry; 2]; TABLE_SIZE]>,
    hist: Hist,
    /// Entry = raw offset + `d`. Chosen at each reset so the new entries lie [`BUMP`] above every old one
    /// (so no clearing is needed: the old ones are out of reach).
    d: i64,
    /// No entry is above this.
    top: i64,
}

thread_local! {
    /// Encoders to reuse: a fresh one is 384 KiB of tables to allocate and clear, per pgzip block.
    static SPARE: std::cell::RefCell<Vec<Level5>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Level5 {
    /// An encoder with no history whose first position is `lo`: a spare one of this thread's, or a new one.
    fn take(lo: usize) -> Level5 {
        let mut e = SPARE
            .with(|s| s.borrow_mut().pop())
            .unwrap_or_else(Level5::new);
        e.reset(lo);
        e
    }

    /// Keep `e` for reuse on this thread (a few at most).
    fn give_back(e: Level5) {
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < 4 {
                s.push(e);
            }
        });
    }

    fn new() -> Level5 {
        Level5 {
            table: vec![0; TABLE_SIZE]
                .into_boxed_slice()
                .try_into()
                .expect("TABLE_SIZE entries"),
            long: vec![[0; 2]; TABLE_SIZE]
                .into_boxed_slice()
                .try_into()
                .expect("TABLE_SIZE entries"),
            hist: Hist::default(),
            d: 0,
            top: 0,
        }
    }

    /// Forget the history (a fresh flate writer); the next position encoded is `lo` or later.
    fn reset(&mut self, lo: usize) {
        self.hist = Hist::default();
        if self.top >= 1 << 31 {
            self.table.fill(0);
            self.long.fill([0; 2]);
            self.top = 0;
        }
        // `lo` maps BUMP above every entry; an old entry t then decodes to at most lo − BUMP.
        self.d = self.top + BUMP - lo as i64;
    }

    #[inline(always)]
    fn entry(&self, pos: i64) -> Entry {
        (pos + self.d) as Entry
    }

    #[inline(always)]
    fn position(&self, e: Entry) -> i64 {
        e as i64 - self.d
    }

    /// Before positions up to `end` are entered: move every entry down if they would not fit (those pushed to
    /// 0 are out of reach), and note the new top.
    fn room(&mut self, end: usize) {
        let hi = end as i64 + self.d;
        if hi >= (u32::MAX as i64) - 1 {
            let by = (hi - (1 << 31)) as Entry;
            for e in self.table.iter_mut() {
                *e = e.saturating_sub(by);
            }
            for e in self.long.iter_mut().flatten() {
                *e = e.saturating_sub(by);
            }
            self.d -= by as i64;
        }
        self.top = self.top.max(end as i64 + self.d);
    }

    #[inline(always)]
    fn put_long(&mut self, h: usize, pos: i64) {
        let v = self.entry(pos);
        let e = &mut self.long[h];
        e[1] = e[0];
        e[0] = v;
    }

    #[inline(always)]
    fn put(&mut self, h: usize, pos: i64) {
        self.table[h] = self.entry(pos);
    }

    /// Encode the chunk `start..end` of `raw`; returns flate's token count.
    fn encode(
        &mut self,
        raw: &Raw,
        start: usize,
        end: usize,
        plan: Option<&mut Vec<u64>>,
    ) -> usize {
        self.hist.add(start, end);
        self.room(end);
        let len = end - start;
        let mut out = Emit {
            plan,
            base: start,
            tokens: 0,
        };
        if len < MIN_NON_LITERAL {
            out.literals(len);
            return out.tokens;
        }
        let lo = raw.lo();
        let src = Src {
            lo,
            data: raw.slice(lo, end),
        };
        let src = &src;
        let hist_start = self.hist.start as i64;
        let s_limit = (end - INPUT_MARGIN) as i64;
        let mut next_emit = start as i64;
        let mut s = start as i64;
        let mut cv = load64(src, s as usize);
        'outer: loop {
            let mut next_s = s;
            let mut l: i64 = 0;
            let mut t: i64;
            loop {
                let mut h_short = hash4(cv);
                let mut h_long = hash7(cv);
                s = next_s;
                next_s = s + 1 + ((s - next_emit) >> 6);
                if next_s > s_limit {
                    break 'outer;
                }
                let short = self.position(self.table[h_short]);
                let long = self.long[h_long];
                let long = [self.position(long[0]), self.position(long[1])];
                let next = load64(src, next_s as usize);
                self.put(h_short, s);
                self.put_long(h_long, s);
                h_short = hash4(next);
                h_long = hash7(next);
                let cv32 = cv as u32;
                t = long[0];
                if s - t < MAX_OFFSET {
                    if cv32 == load32(src, t as usize) {
                        self.put(h_short, next_s);
                        self.put_long(h_long, next_s);
                        let t2 = long[1];
                        if s - t2 < MAX_OFFSET && cv32 == load32(src, t2 as usize) {
                            l = self.len(src, s + 4, t + 4) + 4;
                            let l1 = self.len(src, s + 4, t2 + 4) + 4;
                            if l1 > l {
                                t = t2;
                                l = l1;
                            }
                        }
                        break;
                    }
                    t = long[1];
                    if s - t < MAX_OFFSET && cv32 == load32(src, t as usize) {
                        self.put(h_short, next_s);
                        self.put_long(h_long, next_s);
                        break;
                    }
                }
                t = short;
                if s - t < MAX_OFFSET && cv32 == load32(src, t as usize) {
                    l = self.len(src, s + 4, t + 4) + 4;
                    let long = self.long[h_long];
                    let long = [self.position(long[0]), self.position(long[1])];
                    self.put(h_short, next_s);
                    self.put_long(h_long, next_s);
                    let next32 = next as u32;
                    // The newest long entry at next_s, then (only if the newest is in reach) the previous.
                    if next_s - long[0] < MAX_OFFSET {
                        let mut better = None;
                        for t2 in long {
                            if next_s - t2 < MAX_OFFSET && load32(src, t2 as usize) == next32 {
                                let ml = self.len(src, next_s + 4, t2 + 4) + 4;
                                if ml > l {
                                    better = Some((t2, ml));
                                    break;
                                }
                            }
                        }
                        if let Some((t2, ml)) = better {
                            t = t2;
                            s = next_s;
                            l = ml;
                        }
                    }
                    break;
                }
                cv = next;
            }
            if l == 0 {
                l = match_len(src, (s + 4) as usize, (t + 4) as usize, usize::MAX) as i64 + 4;
            } else if l == 258 {
                l += match_len(src, (s + l) as usize, (t + l) as usize, usize::MAX) as i64;
            }
            // A better match ending where this one ends?
            let at = s + l;
            if l < 30 && at < s_limit {
                let e = self.position(self.long[hash7(load64(src, at as usize))][0]);
                let t2 = e - l + 2;
                let s2 = s + 2;
                let off = s2 - t2;
                if t2 >= hist_start && off < MAX_OFFSET && off > 0 {
                    let l2 = match_len(src, s2 as usize, t2 as usize, usize::MAX) as i64;
                    if l2 > l {
                        t = t2;
                        l = l2;
                        s = s2;
                    }
                }
            }
            // Extend backwards.
            while t > hist_start && s > next_emit && src[(t - 1) as usize] == src[(s - 1) as usize]
            {
                s -= 1;
                t -= 1;
                l += 1;
            }
            out.literals((s - next_emit) as usize);
            out.matched(s as usize, l as usize, (s - t) as usize);
            s += l;
            next_emit = s;
            if next_s >= s {
                s = next_s + 1;
            }
            if s >= s_limit {
                break 'outer;
            }
            // Index every third position inside the match.
            let mut i = s - l + 1;
            if i < s - 1 {
                let mut cv = load64(src, i as usize);
                self.put(hash4(cv), i);
                self.put_long(hash7(cv), i);
                cv >>= 8;
                self.put_long(hash7(cv), i + 1);
                cv >>= 8;
                self.put(hash4(cv), i + 2);
                i += 4;
                while i < s - 1 {
                    let cv = load64(src, i as usize);
                    self.put_long(hash7(cv), i);
                    self.put(hash4(cv >> 8), i + 1);
                    i += 3;
                }
            }
            let x = load64(src, (s - 1) as usize);
            self.put(hash4(x), s - 1);
            self.put_long(hash7(x), s - 1);
            cv = x >> 8;
        }
        if (next_emit as usize) < end && out.tokens > 0 {
            out.literals(end - next_emit as usize);
        }
        out.tokens
    }

    /// flate's `matchlen`: at most 254 bytes.
    fn len(&self, src: &Src, a: i64, b: i64) -> i64 {
        match_len(src, a as usize, b as usize, 254) as i64
    }
}

#[cfg(test)]
mod tests {
    use crate::deflate::tests::{random, text};
    use std::path::Path;
    use std::process::Command;

    /// tools/fixtures/pgzip built with Debian's Go and pgzip packages (once per test run).
    fn pgzip_tool() -> &'static Path {
        crate::tests::go_tool(
            "pgzip",
            "golang-github-klauspost-pgzip-dev and golang-github-klauspost-compress-dev",
        )
    }

    /// `data` compressed by the real pgzip at `level` in blocks of `block` bytes.
    fn pgzip(data: &[u8], level: i32, block: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        std::fs::write(&input, data).unwrap();
        let out = Command::new(pgzip_tool())
            .args(["-level", &level.to_string(), "-block", &block.to_string()])
            .stdin(std::fs::File::open(&input).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "pgzip -level {level} failed");
        out.stdout
    }

    /// Misses of model `name` on `gz` and the decisions of the stream, after checking that the corrections
    /// decode back to the tokens.
    fn misses(name: &str, gz: &[u8]) -> (usize, usize) {
        let (n, first) = super::super::tests::misses(name, gz);
        if let Some(first) = first {
            eprintln!("first miss: {first:?}");
        }
        (n, gz.len())
    }

    /// Text, a random stretch (stored chunks), long runs (matches past 258) and text again.
    fn mixed(n: usize, seed: u64) -> Vec<u8> {
        let mut d = text(n / 2, seed);
        d.extend(random(n / 8, seed + 1));
        d.extend(std::iter::repeat_n(b'a', 5000));
        d.extend(text(n / 2, seed + 2).iter().step_by(3));
        d.extend(std::iter::repeat_n(b"abcd".as_slice(), 900).flatten());
        d.extend(text(n / 4, seed + 3));
        d
    }

    #[test]
    fn level_5_is_exact() {
        // The umoci block size and pgzip's own (1 MiB, with history buffer shifts), and a final chunk that is
        // small (under 128 bytes), just under one chunk, and empty.
        for (len, block) in [
            (700_000, 256 << 10),
            (3_000_000, 1 << 20),
            ((256 << 10) * 2 + 100, 256 << 10),
            (65535 * 3 + 5000, 1 << 20),
            (256 << 10, 256 << 10),
        ] {
            let mut data = mixed(len, len as u64);
            data.truncate(len);
            let gz = pgzip(&data, -1, block);
            let (missed, of) = misses("pgzip-5", &gz);
            assert_eq!(
                missed, 0,
                "{len} bytes in blocks of {block}: {missed} misses ({of} bytes of gzip)"
            );
        }
    }
}
