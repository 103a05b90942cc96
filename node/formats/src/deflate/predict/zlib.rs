//! zlib's deflate (levels 1–9, windowBits 15) as a [`Model`]: what Python's `zlib` and `gzip` and GNU gzip
//! produce (`zlib-L`), Node's `zlib` with the Chromium fork it bundles (`chromium-L`, npm packs at level 9), and
//! zlib-rs at level 9, which cargo's flate2 uses to package crates (`zlibrs-9`).
//!
//! zlib finds matches through hash chains: every position whose three bytes lie inside the input is put at the
//! head of the chain of its hash (`head`), and links to the position that was there before (`prev`, a ring of
//! one window). A search walks the chain from the newest position, at most `chain` steps and never further
//! back than `MAX_DIST` = 32768 − 262, and keeps the first candidate of each new best length: on equal lengths
//! the nearer one wins. It stops early at `nice` bytes, and walks a quarter of the chain when the length to
//! beat is already `good`.
//!
//! Levels 1–3 (`deflate_fast`) take the match found at each position greedily, and insert the positions a
//! match covers only when it is at most `lazy` long (and at least three bytes of input follow it). Levels 4–9
//! (`deflate_slow`) search one position further before taking a match: the match at `q` (length `m(q)`) is
//! kept unless the search at `q + 1`, started from `m(q)` as the length to beat, finds a longer one — then `q`
//! becomes a literal and `q + 1` is weighed against `q + 2` in turn. No search is made when `m(q)` is already
//! `lazy` long, and a three-byte match more than 4096 back (`TOO_FAR`) is not taken. Every position covered by
//! a match is inserted.
//!
//! Only the input of the current gzip member is visible (the state is reset at each member start), and at the
//! end of a member matches are cut to the bytes left and no search starts with fewer than three left. Bytes
//! past the end, which zlib's comparisons read before cutting, are taken as zeros (zlib's window starts
//! zeroed; in a member longer than the window they are in fact stale window bytes, which can differ in the
//! last 258 bytes of a member).
//!
//! The hash: zlib's own (a rolling hash of three bytes, `memLevel + 7` bits) or Chromium's, which Node bundles:
//! a multiplicative hash of four bytes, so a candidate whose fourth byte differs usually sits in another
//! chain, which changes the three-byte matches found and the chain lengths walked. Both use 15 bits here
//! (memLevel 8, the default of zlib, Python, Node and flate2).
//!
//! zlib-rs follows zlib-ng: level 9 is `deflate_slow` with zlib's hash but without `TOO_FAR`, a search needs
//! four bytes left, and its `longest_match_slow` walks, for each candidate, the chain of whichever of the
//! current match's three-byte substrings reaches back least far — the same candidates in order, minus those
//! that cannot match, so fewer steps of the chain budget are spent.
//!
//! Stored blocks: zlib chooses them after the matching, so the model runs its own decisions through them to
//! keep its hash chains where the producer's were.

use super::raw::Raw;
use super::{Decision, Model};

const WSIZE: usize = 1 << 15;
const WMASK: usize = WSIZE - 1;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const MIN_LOOKAHEAD: usize = MAX_MATCH + MIN_MATCH + 1;
const MAX_DIST: usize = WSIZE - MIN_LOOKAHEAD;
const TOO_FAR: usize = 4096;
/// No match: zlib's `MIN_MATCH − 1`.
const NONE: Found = Found {
    len: MIN_MATCH - 1,
    dist: 0,
};
/// Stored chain positions are relative to a base; they are rebased before they would overflow a `u32`.
const REBASE_AT: usize = 1 << 31;
const REBASE_BY: usize = 1 << 30;

/// Which hash zlib puts positions in its chains by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// zlib's: `((b0 << 2s) ^ (b1 << s) ^ b2)` masked to `bits`, with `s = (bits + 2) / 3`.
    Rolling,
    /// Chromium's: the four bytes little-endian, times 66521 plus 66521, bits 16 and up.
    Chromium,
}

/// One level's parameters (zlib's `configuration_table`) and the hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Walk a quarter of the chain when the length to beat is at least this.
    pub good: usize,
    /// Lazy levels: no search after a match this long. Greedy levels: insert the positions of matches up to
    /// this long.
    pub lazy: usize,
    /// Stop searching at a match this long.
    pub nice: usize,
    /// Candidates looked at, at most.
    pub chain: usize,
    /// Levels 4–9 (`deflate_slow`); levels 1–3 are greedy (`deflate_fast`).
    pub lazy_eval: bool,
    /// The hash.
    pub hash: Hash,
    /// Hash bits (`memLevel + 7`, and at least 15 with Chromium's hash).
    pub hash_bits: u32,
    /// zlib-ng's lazy search as zlib-rs has it at level 9 (`longest_match_slow`): no `TOO_FAR`, and the chain
    /// walked is whichever of the match's three-byte substrings has the oldest candidate.
    pub ng: bool,
}

impl Params {
    /// zlib's parameters for `level` (1..=9) with memLevel 8; None for other levels.
    pub fn level(level: u32, hash: Hash) -> Option<Params> {
        let (good, lazy, nice, chain) = match level {
            1 => (4, 4, 8, 4),
            2 => (4, 5, 16, 8),
            3 => (4, 6, 32, 32),
            4 => (4, 4, 16, 16),
            5 => (8, 16, 32, 32),
            6 => (8, 16, 128, 128),
            7 => (8, 32, 128, 256),
            8 => (32, 128, 258, 1024),
            9 => (32, 258, 258, 4096),
            _ => return None,
        };
        Some(Params {
            good,
            lazy,
            nice,
            chain,
            lazy_eval: level >= 4,
            hash,
            hash_bits: 15,
            ng: false,
        })
    }
}

/// The model name's parameters: `zlib-L` (zlib's hash) or `chromium-L` (Chromium's, as Node bundles it).
pub fn params(name: &str) -> Option<Params> {
    let (hash, level) = if let Some(l) = name.strip_prefix("zlib-") {
        (Hash::Rolling, l)
    } else if let Some(l) = name.strip_prefix("chromium-") {
        (Hash::Chromium, l)
    } else if name == "zlibrs-9" {
        let p = Params::level(9, Hash::Rolling)?;
        return Some(Params { ng: true, ..p });
    } else {
        return None;
    };
    match level.as_bytes() {
        [d @ b'1'..=b'9'] => Params::level((d - b'0') as u32, hash),
        _ => None,
    }
}

/// A search's result: `len` ≥ 3 is a match `dist` back; less is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Found {
    len: usize,
    dist: usize,
}

/// zlib's deflate over one piece, a gzip member (see the [module doc](self)).
pub struct Zlib {
    raw: Raw,
    p: Params,
    /// The member's raw range (`end` is `FAR` until the driver knows it).
    start: usize,
    end: usize,
    /// Newest position of each hash, as `position − base` (0: none).
    head: Vec<u32>,
    /// For each position of the last window (indexed by `(position − base) & WMASK`), the one inserted before
    /// it with the same hash.
    prev: Vec<u32>,
    base: usize,
    hash_mask: u32,
    hash_shift: u32,
    /// Positions before this have been inserted, or skipped as the producer skips them.
    inserted: usize,
    /// Where the next decision is expected.
    next: usize,
    /// Lazy levels: the search at a position not yet decided, and the one after it (with the first's length to
    /// beat).
    here: Option<(usize, Found)>,
    ahead: Option<(usize, Found)>,
}

impl Zlib {
    /// A model of zlib with `p` for the member whose bytes `raw` holds.
    pub fn new(p: Params, raw: Raw) -> Self {
        let bits = p.hash_bits.clamp(8, 16);
        let start = raw.start();
        Zlib {
            end: raw.end(),
            raw,
            p,
            start,
            head: vec![0; 1 << bits],
            prev: vec![0; WSIZE],
            base: start,
            hash_mask: (1u32 << bits) - 1,
            hash_shift: bits.div_ceil(3),
            inserted: start,
            next: start,
            here: None,
            ahead: None,
        }
    }

    /// The byte at `x` as zlib's window has it: past the member's end, zeros.
    #[inline(always)]
    fn at(&self, x: usize) -> u8 {
        if x < self.end {
            self.raw[x]
        } else {
            0
        }
    }

    #[inline(always)]
    fn hash(&self, x: usize) -> usize {
        let h = match self.p.hash {
            Hash::Rolling => {
                let s = self.hash_shift;
                (self.raw[x] as u32) << (2 * s)
                    ^ (self.raw[x + 1] as u32) << s
                    ^ self.raw[x + 2] as u32
            }
            Hash::Chromium => {
                let v = u32::from_le_bytes([
                    self.raw[x],
                    self.raw[x + 1],
                    self.raw[x + 2],
                    self.at(x + 3),
                ]);
                v.wrapping_mul(66521).wrapping_add(66521) >> 16
            }
        };
        (h & self.hash_mask) as usize
    }

    /// Put `x` (at least three bytes before the member's end) at the head of its chain; the previous head.
    #[inline(always)]
    fn insert(&mut self, x: usize) -> u32 {
        if x - self.base >= REBASE_AT {
            self.rebase();
        }
        let h = self.hash(x);
        let rel = (x - self.base) as u32;
        let old = self.head[h];
        self.prev[rel as usize & WMASK] = old;
        self.head[h] = rel;
        old
    }

    fn rebase(&mut self) {
        let by = REBASE_BY as u32;
        for v in self.head.iter_mut().chain(self.prev.iter_mut()) {
            *v = v.saturating_sub(by);
        }
        self.base += REBASE_BY;
    }

    /// Insert every position from `inserted` up to (not including) `x` that has three bytes of input.
    #[inline]
    fn insert_to(&mut self, x: usize) {
        let last = x.min(self.end.saturating_sub(MIN_MATCH - 1));
        while self.inserted < last {
            self.insert(self.inserted);
            self.inserted += 1;
        }
        self.inserted = self.inserted.max(x);
    }

    /// Insert `q` and search there for a match longer than `beat` (zlib's `longest_match` with
    /// `prev_length = beat`), with the length cut to the input left and, on lazy levels, `TOO_FAR` applied.
    fn search(&mut self, q: usize, beat: usize) -> Found {
        if q >= self.end {
            return NONE;
        }
        // zlib-ng inserts (and searches) only with four bytes left.
        let want = if self.p.ng { MIN_MATCH + 1 } else { MIN_MATCH };
        let head = if q + want > self.end {
            self.inserted = self.inserted.max(q + 1);
            return NONE;
        } else if self.inserted <= q {
            self.insert_to(q);
            self.inserted = q + 1;
            self.insert(q)
        } else {
            // Inserted already (only after a call out of order): its link is the head it replaced.
            self.prev[(q - self.base) & WMASK]
        };
        if head == 0 || (self.p.lazy_eval && beat >= self.p.lazy) {
            return NONE;
        }
        let rel = q - self.base;
        if head as usize >= rel || rel - head as usize > MAX_DIST {
            return NONE;
        }
        if self.p.ng {
            return self.longest_ng(q, head, beat);
        }
        let f = self.longest(q, head, beat);
        if self.p.lazy_eval && f.len == MIN_MATCH && f.dist > TOO_FAR {
            return NONE;
        }
        f
    }

    /// zlib's `longest_match` from chain entry `cur`.
    fn longest(&self, q: usize, mut cur: u32, beat: usize) -> Found {
        let left = self.end - q;
        let mut chain = self.p.chain;
        if beat >= self.p.good {
            chain >>= 2;
        }
        let nice = self.p.nice.min(left);
        let rel = q - self.base;
        let limit = rel.saturating_sub(MAX_DIST) as u32;
        let mut best = beat;
        let mut dist = 0;
        let full = q + MAX_MATCH <= self.end;
        let raw = &self.raw;
        let (s0, s1) = (raw[q], raw[q + 1]);
        let mut end1 = self.at(q + best - 1);
        let mut end0 = self.at(q + best);
        loop {
            let c = self.base + cur as usize;
            let hit = if full {
                raw[c + best] == end0
                    && raw[c + best - 1] == end1
                    && raw[c] == s0
                    && raw[c + 1] == s1
            } else {
                self.at(c + best) == end0
                    && self.at(c + best - 1) == end1
                    && raw[c] == s0
                    && raw[c + 1] == s1
            };
            if hit {
                let len = if full {
                    common(&raw[q..q + MAX_MATCH], &raw[c..c + MAX_MATCH])
                } else {
                    (0..MAX_MATCH)
                        .find(|&i| self.at(q + i) != self.at(c + i))
                        .unwrap_or(MAX_MATCH)
                };
                if len > best {
                    best = len;
                    dist = q - c;
                    if len >= nice {
                        break;
                    }
                    end1 = self.at(q + best - 1);
                    end0 = self.at(q + best);
                }
            }
            cur = self.prev[cur as usize & WMASK];
            if cur <= limit || cur as usize >= rel {
                break;
            }
            chain -= 1;
            if chain == 0 {
                break;
            }
        }
        Found {
            len: best.min(left),
            dist,
        }
    }

    /// zlib's hash of the three bytes at `x` (zeros past the end), as zlib-ng recomputes it while searching.
    #[inline(always)]
    fn hash_at(&self, x: usize) -> usize {
        let s = self.hash_shift;
        let h =
            (self.at(x) as u32) << (2 * s) ^ (self.at(x + 1) as u32) << s ^ self.at(x + 2) as u32;
        (h & self.hash_mask) as usize
    }

    /// How many bytes from `c` match those from `q` (up to 258, zeros past the end).
    #[inline(always)]
    fn length(&self, q: usize, c: usize) -> usize {
        if q + MAX_MATCH <= self.end {
            common(&self.raw[q..q + MAX_MATCH], &self.raw[c..c + MAX_MATCH])
        } else {
            (0..MAX_MATCH)
                .find(|&i| self.at(q + i) != self.at(c + i))
                .unwrap_or(MAX_MATCH)
        }
    }

    /// zlib-ng's `longest_match_slow` from chain entry `head`: a candidate `c` is reached through the chain
    /// of one of its substrings, `c + off`, the one whose next entry is oldest, so fewer candidates are walked
    /// (the walk to a new chain costs no step). Returns at once with a match reaching the end of the input.
    fn longest_ng(&self, q: usize, head: u32, beat: usize) -> Found {
        let left = self.end - q;
        let rel = q - self.base;
        let mut best = beat.max(MIN_MATCH - 1);
        let mut chain = self.p.chain;
        if best >= self.p.good {
            chain >>= 2;
        }
        let base_limit = rel.saturating_sub(MAX_DIST);
        let mut cur = head as usize;
        let mut off = 0;
        let mut dist = 0;
        let done = |best: usize, dist| Found {
            len: best.min(left),
            dist,
        };
        if best >= MIN_MATCH {
            for k in 1..=best - 2 {
                let p = self.head[self.hash_at(q + k)] as usize;
                if p < cur {
                    off = k;
                    cur = p;
                }
            }
            if cur <= base_limit + off {
                return done(best, dist);
            }
        }
        let mut limit = base_limit + off;
        loop {
            if cur >= rel {
                break;
            }
            let c = self.base + cur - off;
            let len = self.length(q, c);
            if len > best {
                dist = q - c;
                if len >= left {
                    return done(left, dist);
                }
                best = len;
                if best >= self.p.nice {
                    return done(best, dist);
                }
                if len > MIN_MATCH && c + len < q {
                    let start = cur - off;
                    let mut next = start;
                    off = 0;
                    for i in 0..=len - MIN_MATCH {
                        let p = self.prev[(start + i) & WMASK] as usize;
                        if p < next {
                            if p <= base_limit + i {
                                return done(best, dist);
                            }
                            next = p;
                            off = i;
                        }
                    }
                    cur = next;
                    let k = len - (MIN_MATCH + 1);
                    let p = self.head[self.hash_at(q + k)] as usize;
                    if p < cur {
                        off = k;
                        if p <= base_limit + off {
                            return done(best, dist);
                        }
                        cur = p;
                    }
                    limit = base_limit + off;
                    continue;
                }
            }
            chain -= 1;
            if chain == 0 {
                break;
            }
            cur = self.prev[cur & WMASK] as usize;
            if cur <= limit {
                break;
            }
        }
        Found { len: best, dist }
    }

    /// Make `q` the next decision position, running the model's own decisions over what the driver skipped
    /// (stored blocks).
    fn sync(&mut self, q: usize) {
        if q < self.next {
            // Never asked by the driver; start over from here rather than go back.
            self.here = None;
            self.ahead = None;
            self.next = q;
            return;
        }
        while self.next < q {
            let p = self.next;
            let d = self.decide(p);
            if p + d.advance() <= q {
                self.follow(p, d);
            } else {
                self.insert_to(q);
                self.here = None;
                self.ahead = None;
                self.next = q;
            }
        }
    }

    /// The decision at `q`, the next decision position.
    fn decide(&mut self, q: usize) -> Decision {
        let m = match self.here {
            Some((at, f)) if at == q => f,
            _ => self.search(q, MIN_MATCH - 1),
        };
        self.here = Some((q, m));
        self.ahead = None;
        if m.len < MIN_MATCH {
            return Decision::Literal;
        }
        let take = if self.p.lazy_eval {
            let a = self.search(q + 1, m.len);
            self.ahead = Some((q + 1, a));
            a.len <= m.len
        } else {
            true
        };
        if take {
            Decision::Match {
                len: m.len as u16,
                dist: m.dist as u16,
            }
        } else {
            Decision::Literal
        }
    }

    /// The producer decided `d` at `q`.
    fn follow(&mut self, q: usize, d: Decision) {
        match d {
            Decision::Literal => {
                self.next = q + 1;
                if self.p.lazy_eval {
                    let beat = match self.here {
                        Some((at, f)) if at == q => f.len,
                        _ => MIN_MATCH - 1,
                    };
                    let a = match self.ahead {
                        Some((at, f)) if at == q + 1 => f,
                        _ => self.search(q + 1, beat),
                    };
                    self.here = Some((q + 1, a));
                } else {
                    self.insert_to(q + 1);
                    self.here = None;
                }
                self.ahead = None;
            }
            Decision::Match { len, .. } => {
                let end = q + len as usize;
                let greedy_skip =
                    !self.p.lazy_eval && (len as usize > self.p.lazy || end + MIN_MATCH > self.end);
                if greedy_skip {
                    self.insert_to(q + 1);
                    self.inserted = self.inserted.max(end);
                } else {
                    self.insert_to(end);
                }
                self.next = end;
                self.here = None;
                self.ahead = None;
            }
        }
    }
}

/// How many leading bytes `a` and `b` (of equal length) have in common.
#[inline(always)]
fn common(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap());
        let y = u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let d = x ^ y;
        if d != 0 {
            return i + (d.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

impl Model for Zlib {
    fn raw(&self) -> &Raw {
        &self.raw
    }

    fn raw_mut(&mut self) -> &mut Raw {
        &mut self.raw
    }

    fn predict(&mut self, pos: usize) -> Decision {
        self.end = self.raw.end();
        if pos >= self.end || pos < self.start {
            return Decision::Literal;
        }
        self.sync(pos);
        self.decide(pos)
    }

    fn take(&mut self, pos: usize, actual: Decision) {
        self.end = self.raw.end();
        if pos >= self.end || pos < self.start {
            return;
        }
        if pos != self.next {
            self.sync(pos);
        }
        let actual = match actual {
            Decision::Match { len, .. } if pos + len as usize > self.end => Decision::Literal,
            d => d,
        };
        self.follow(pos, actual);
    }

    fn reach(&mut self, pos: usize) {
        self.end = self.raw.end();
        if pos < self.end && pos >= self.start {
            self.sync(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Layout;
    use super::*;
    use crate::deflate::tests::{random, text};
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    /// Runs `tool` on `input`; a missing tool fails the test, naming the Debian package that has it.
    pub(crate) fn producer(tool: &str, args: &[&str], input: &[u8], package: &str) -> Vec<u8> {
        let mut child = Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{tool} is needed (Debian package {package}, see tools/ci-deps): {e}")
            });
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success(), "{tool} {args:?} failed");
        out.stdout
    }

    /// gzip by Python's zlib module (the system zlib) at `level`, fed in pieces of `piece` bytes.
    fn python_gzip(data: &[u8], level: u32, piece: usize) -> Vec<u8> {
        const SCRIPT: &str = "import sys, zlib\n\
            level, piece = int(sys.argv[1]), int(sys.argv[2])\n\
            c = zlib.compressobj(level, zlib.DEFLATED, 31)\n\
            d = sys.stdin.buffer.read()\n\
            out = [c.compress(d[i:i + piece]) for i in range(0, len(d), piece)]\n\
            sys.stdout.buffer.write(b''.join(out) + c.flush())\n";
        let args = ["-c", SCRIPT, &level.to_string(), &piece.to_string()];
        producer("python3", &args, data, "python3")
    }

    /// Misses of model `name` on `gz` (and the first one); asserts encode and decode round-trip.
    pub(crate) fn misses(name: &str, gz: &[u8]) -> (usize, Option<(usize, Decision, Decision)>) {
        super::super::tests::misses(name, gz)
    }

    pub(crate) fn data() -> Vec<(&'static str, Vec<u8>)> {
        let mut mixed = text(100_000, 60);
        mixed.extend(random(40_000, 61));
        mixed.extend(vec![0u8; 50_000]);
        mixed.extend(text(200_000, 62));
        // Three-byte matches at every distance: TOO_FAR, MAX_DIST and long chains.
        let r = random(200_000, 63);
        let sparse: Vec<u8> = r.iter().map(|b| b"abcdefgh"[*b as usize % 8]).collect();
        let mut repeats = text(5_000, 64);
        for i in 0..40 {
            repeats.extend_from_within(..(i * 997) % 5_000);
            repeats.extend(random(300 + i * 50, 65 + i as u64));
        }
        vec![
            ("short", b"abcabcabcabcd abc".to_vec()),
            ("text", text(300_000, 66)),
            ("mixed", mixed),
            ("sparse", sparse),
            ("repeats", repeats),
            ("zeros", vec![0; 100_000]),
        ]
    }

    #[test]
    fn python_zlib_every_level_is_predicted_exactly() {
        for (what, data) in data() {
            for level in 1..=9 {
                let gz = python_gzip(&data, level, 10_240);
                let (n, first) = misses(&format!("zlib-{level}"), &gz);
                assert_eq!(n, 0, "{what}, level {level}: first miss {first:?}");
            }
        }
    }

    /// gzip by Node's zlib (Chromium's fork, bundled) at `level`, fed in pieces of `piece` bytes.
    fn node_gzip(data: &[u8], level: u32, piece: usize) -> Vec<u8> {
        const SCRIPT: &str = "const z = require('zlib'); const [level, piece] = process.argv.slice(1).map(Number);\n\
            const d = require('fs').readFileSync(0); const g = z.createGzip({ level }); const out = [];\n\
            g.on('data', (c) => out.push(c)); g.on('end', () => process.stdout.write(Buffer.concat(out)));\n\
            for (let i = 0; i < d.length; i += piece) g.write(d.subarray(i, i + piece)); g.end();\n";
        let args = ["-e", SCRIPT, &level.to_string(), &piece.to_string()];
        producer("node", &args, data, "nodejs")
    }

    /// Node's zlib: Chromium's fork when Node bundles it (its version then has a suffix, `1.3.1-e00f703`),
    /// the system's zlib when it is built against it (Debian's own nodejs).
    fn node_model() -> &'static str {
        let v = producer("node", &["-p", "process.versions.zlib"], b"", "nodejs");
        if String::from_utf8_lossy(&v).trim().contains('-') {
            "chromium"
        } else {
            "zlib"
        }
    }

    #[test]
    fn node_zlib_every_level_is_predicted_exactly() {
        let model = node_model();
        let mut bad = Vec::new();
        for (what, data) in data() {
            for level in 1..=9 {
                let gz = node_gzip(&data, level, 16_384);
                let (n, first) = misses(&format!("{model}-{level}"), &gz);
                if n > 0 {
                    bad.push(format!(
                        "{what}, level {level}: {n} misses, first {first:?}"
                    ));
                }
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn gnu_gzip_every_level() {
        let mut bad = Vec::new();
        for (what, data) in data() {
            for level in 1..=9 {
                let gz = producer("gzip", &["-c", &format!("-{level}")], &data, "gzip");
                let (n, first) = misses(&format!("zlib-{level}"), &gz);
                if n > 0 {
                    bad.push(format!(
                        "{what}, level {level}: {n} misses, first {first:?}"
                    ));
                }
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }

    /// A `.crate` made by `cargo package` (cargo's flate2 with zlib-rs, level 9) of a crate holding `data`.
    fn cargo_package(data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("src")).unwrap();
        std::fs::write(
            root.join("Cargo.toml"),
            "[package]\nname = \"probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\nlicense = \"MIT\"\n\
             description = \"probe\"\n\n[workspace]\n",
        )
        .unwrap();
        std::fs::write(root.join("src/lib.rs"), "").unwrap();
        std::fs::write(root.join("src/data.bin"), data).unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target = root.join("target");
        let args = [
            "package",
            "--no-verify",
            "--allow-dirty",
            "--offline",
            "--quiet",
            "--target-dir",
        ];
        let out = Command::new(&cargo)
            .args(args)
            .arg(&target)
            .current_dir(root)
            .output()
            .unwrap_or_else(|e| panic!("{cargo} is needed (Debian package cargo): {e}"));
        assert!(
            out.status.success(),
            "cargo package failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(target.join("package/probe-0.1.0.crate")).unwrap()
    }

    #[test]
    fn cargo_package_is_predicted_exactly() {
        let mut bad = Vec::new();
        for (what, data) in data() {
            let (n, first) = misses("zlibrs-9", &cargo_package(&data));
            if n > 0 {
                bad.push(format!("{what}: {n} misses, first {first:?}"));
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn names() {
        assert!(params("zlib-9").is_some() && params("chromium-1").is_some());
        for bad in ["zlib-0", "zlib-10", "zlib-", "zlib", "gzip-6", "chromium-x"] {
            assert!(params(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn arbitrary_layouts_do_not_panic() {
        let raw = text(70_000, 70);
        let layouts = [
            Layout::default(),
            Layout {
                members: vec![0, 5, 5, 69_999, 1 << 40],
                blocks: Vec::new(),
            },
        ];
        for layout in &layouts {
            for name in ["zlib-1", "zlib-9", "chromium-6", "zlibrs-9"] {
                super::super::tests::arbitrary_walk(name, &raw, layout, 70);
            }
        }
        // Any positions inside one member, the raw bytes all held.
        for name in ["zlib-1", "zlib-9", "chromium-6"] {
            let mut m = Zlib::new(
                params(name).unwrap(),
                Raw::whole(0, raw.clone(), 0, raw.len(), &[]),
            );
            for pos in [0, 3, 2, 100, 40_000, 69_998, 69_999, 70_000, 1 << 33] {
                let d = m.predict(pos);
                m.take(pos, d);
                m.take(
                    pos,
                    Decision::Match {
                        len: 258,
                        dist: 32768,
                    },
                );
            }
        }
    }
}
