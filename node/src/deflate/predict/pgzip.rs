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

use super::{BlockKind, Decision, Layout, Model};

/// Bytes of the previous pgzip block used as the dictionary.
const TAIL: usize = 16384;
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

/// An empty table entry: out of reach of every position.
const FAR: i64 = i64::MIN / 4;

/// pgzip at one compression level (5 for now), over `raw` with this layout.
pub struct Pgzip<'a> {
    raw: &'a [u8],
    /// pgzip blocks: raw ranges, and the dictionary length of each.
    segments: Vec<Segment>,
    /// The next segment to start.
    next_segment: usize,
    /// The segment being encoded (its end), and where its next chunk starts.
    segment_end: usize,
    chunk_next: usize,
    /// The chunk planned: raw range and, per position, 0 for a literal or `len << 16 | dist` for a match.
    chunk_start: usize,
    chunk_end: usize,
    plan: Vec<u32>,
    enc: Level5,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    start: usize,
    end: usize,
    dict: usize,
}

/// The pgzip blocks of a layout: raw ranges between sync-flush markers (empty stored blocks) and member starts,
/// each with the length of its dictionary (the previous block's tail, in the same member).
fn segments(layout: &Layout, raw_len: usize) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let push = |out: &mut Vec<Segment>, start: usize, end: usize, fresh: bool| {
        let dict = match out.last() {
            Some(p) if !fresh && p.end == start && p.end - p.start > TAIL => TAIL,
            _ => 0,
        };
        out.push(Segment { start, end, dict });
    };
    let clamp = |x: u64| x.min(raw_len as u64) as usize;
    let (mut start, mut member, mut fresh) = (0, None, true);
    for b in &layout.blocks {
        let at = clamp(b.start);
        if member != Some(b.member) {
            if at > start {
                push(&mut out, start, at, fresh);
            }
            (start, member, fresh) = (at, Some(b.member), true);
        }
        if b.kind == BlockKind::Stored && b.len == 0 {
            push(&mut out, start, at, fresh);
            (start, fresh) = (at, false);
        }
    }
    let end = clamp(layout.raw_len());
    if end > start {
        push(&mut out, start, end, fresh);
    }
    out
}

impl<'a> Pgzip<'a> {
    /// The model of pgzip at flate level 5 (the default).
    pub fn new(raw: &'a [u8], layout: &Layout) -> Self {
        Pgzip {
            raw,
            segments: segments(layout, raw.len()),
            next_segment: 0,
            segment_end: 0,
            chunk_next: 0,
            chunk_start: 0,
            chunk_end: 0,
            plan: vec![0; CHUNK],
            enc: Level5::new(),
        }
    }

    /// Plan chunks until the one holding `pos`; false if `pos` is in none.
    fn reach(&mut self, pos: usize) -> bool {
        while pos >= self.chunk_end {
            if self.chunk_next >= self.segment_end {
                // Start the next segment that is not wholly before `pos`.
                loop {
                    let Some(s) = self.segments.get(self.next_segment).copied() else {
                        return false;
                    };
                    self.next_segment += 1;
                    if s.end > pos && s.end > s.start {
                        self.enc.reset();
                        if s.dict > 0 {
                            self.enc.encode(self.raw, s.start - s.dict, s.start, None);
                        }
                        self.segment_end = s.end;
                        self.chunk_next = s.start;
                        break;
                    }
                }
            }
            let start = self.chunk_next;
            let end = (start + CHUNK).min(self.segment_end);
            self.chunk_next = end;
            self.chunk_start = start;
            self.chunk_end = end;
            let plan = &mut self.plan[..end - start];
            plan.fill(0);
            if end == self.segment_end && end - start < CHUNK && end - start < SMALL_FINAL {
                // Flushed while small: stored or literals, and the encoder is not run.
                continue;
            }
            let n = self.enc.encode(self.raw, start, end, Some(plan));
            let len = end - start;
            if n > len - (len >> 4) {
                // Huffman only: every byte a literal.
                plan.fill(0);
            }
        }
        pos >= self.chunk_start
    }
}

impl Model for Pgzip<'_> {
    fn predict(&mut self, pos: usize) -> Decision {
        if !self.reach(pos) {
            return Decision::Literal;
        }
        match self.plan[pos - self.chunk_start] {
            0 => Decision::Literal,
            m => Decision::Match {
                len: (m >> 16) as u16,
                dist: m as u16,
            },
        }
    }

    fn take(&mut self, _pos: usize, _actual: Decision) {}
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
    plan: Option<&'p mut [u32]>,
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
                if let Some(p) = plan.get_mut(at) {
                    *p = (l as u32) << 16 | dist as u32;
                }
            }
            self.tokens += 1;
            at += l;
            left -= l;
        }
    }
}

fn load32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

fn load64(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

fn hash4(u: u64) -> usize {
    ((u as u32).wrapping_mul(PRIME4) >> (32 - TABLE_BITS)) as usize
}

fn hash7(u: u64) -> usize {
    ((u << 8).wrapping_mul(PRIME7) >> (64 - TABLE_BITS)) as usize
}

/// Bytes equal from `a` and `b` onwards, up to (not past) `limit` from `a`.
fn match_len(src: &[u8], a: usize, b: usize, limit: usize) -> usize {
    let end = a.saturating_add(limit).min(src.len());
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

/// Table entries: absolute raw positions as `i64`, `FAR` when empty.
type Entry = i64;

/// flate's level 5: a 4-byte hash table and a 7-byte hash table of two entries (newest, previous).
struct Level5 {
    table: Vec<Entry>,
    long: Vec<[Entry; 2]>,
    hist: Hist,
}

impl Level5 {
    fn new() -> Self {
        Level5 {
            table: vec![FAR; TABLE_SIZE],
            long: vec![[FAR; 2]; TABLE_SIZE],
            hist: Hist::default(),
        }
    }

    fn reset(&mut self) {
        self.table.fill(FAR);
        self.long.fill([FAR; 2]);
        self.hist = Hist::default();
    }

    fn put_long(&mut self, h: usize, pos: i64) {
        let e = &mut self.long[h];
        e[1] = e[0];
        e[0] = pos;
    }

    /// Encode the chunk `start..end` of `raw`; returns flate's token count.
    fn encode(&mut self, raw: &[u8], start: usize, end: usize, plan: Option<&mut [u32]>) -> usize {
        self.hist.add(start, end);
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
        let src = &raw[..end];
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
                let short = self.table[h_short];
                let long = self.long[h_long];
                let next = load64(src, next_s as usize);
                self.table[h_short] = s;
                self.put_long(h_long, s);
                h_short = hash4(next);
                h_long = hash7(next);
                let cv32 = cv as u32;
                t = long[0];
                if s - t < MAX_OFFSET {
                    if cv32 == load32(src, t as usize) {
                        self.table[h_short] = next_s;
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
                        self.table[h_short] = next_s;
                        self.put_long(h_long, next_s);
                        break;
                    }
                }
                t = short;
                if s - t < MAX_OFFSET && cv32 == load32(src, t as usize) {
                    l = self.len(src, s + 4, t + 4) + 4;
                    let long = self.long[h_long];
                    self.table[h_short] = next_s;
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
                let e = self.long[hash7(load64(src, at as usize))][0];
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
                self.table[hash4(cv)] = i;
                self.put_long(hash7(cv), i);
                cv >>= 8;
                self.put_long(hash7(cv), i + 1);
                cv >>= 8;
                self.table[hash4(cv)] = i + 2;
                i += 4;
                while i < s - 1 {
                    let cv = load64(src, i as usize);
                    self.put_long(hash7(cv), i);
                    self.table[hash4(cv >> 8)] = i + 1;
                    i += 3;
                }
            }
            let x = load64(src, (s - 1) as usize);
            self.table[hash4(x)] = s - 1;
            self.put_long(hash7(x), s - 1);
            cv = x >> 8;
        }
        if (next_emit as usize) < end && out.tokens > 0 {
            out.literals(end - next_emit as usize);
        }
        out.tokens
    }

    /// flate's `matchlen`: at most 254 bytes.
    fn len(&self, src: &[u8], a: i64, b: i64) -> i64 {
        match_len(src, a as usize, b as usize, 254) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode, model};
    use super::*;
    use crate::deflate::tests::{random, round_trip, text};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::OnceLock;

    /// tools/fixtures/pgzip built with Debian's Go and pgzip packages (once per test run).
    fn pgzip_tool() -> &'static Path {
        static TOOL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
        let (_, path) = TOOL.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let bin = dir.path().join("pgzip");
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/fixtures/pgzip/main.go");
            let status = Command::new("go")
                .args(["build", "-o"])
                .arg(&bin)
                .arg(&src)
                .env("GOPATH", "/usr/share/gocode")
                .env("GO111MODULE", "off")
                .env("GOFLAGS", "")
                .env("GOCACHE", dir.path().join("cache"))
                .status()
                .unwrap_or_else(|e| {
                    panic!("cannot run go ({e}): install the Debian package golang-go (see tools/ci-deps)")
                });
            assert!(
                status.success(),
                "building {} failed: install the Debian packages golang-github-klauspost-pgzip-dev and \
                 golang-github-klauspost-compress-dev (see tools/ci-deps)",
                src.display()
            );
            (dir, bin)
        });
        path
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

    /// Misses of model `name` on `gz`, after checking that the corrections decode back to the tokens.
    fn misses(name: &str, gz: &[u8]) -> (usize, usize) {
        let (raw, re) = round_trip(gz);
        let layout = Layout::parse(&re.headers).unwrap();
        struct Count<'a>(Box<dyn Model + 'a>, usize, usize, Decision);
        impl Model for Count<'_> {
            fn predict(&mut self, pos: usize) -> Decision {
                self.3 = self.0.predict(pos);
                self.3
            }
            fn take(&mut self, pos: usize, actual: Decision) {
                self.2 += 1;
                if actual != self.3 {
                    if self.1 < 5 {
                        eprintln!("{pos}: predicted {:?}, was {actual:?}", self.3);
                    }
                    self.1 += 1;
                }
                self.0.take(pos, actual)
            }
        }
        let mut m = Count(model(name, &raw, &layout).unwrap(), 0, 0, Decision::Literal);
        let corrections = encode(&mut m, &layout, &re.tokens).unwrap();
        let back = decode(
            &mut *model(name, &raw, &layout).unwrap(),
            &layout,
            &corrections,
        )
        .unwrap();
        assert!(back == re.tokens, "{name}: tokens differ after decode");
        (m.1, m.2)
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
                "{len} bytes in blocks of {block}: {missed} misses of {of}"
            );
        }
    }
}
