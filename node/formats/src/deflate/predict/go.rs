//! Go's `compress/flate`, as `compress/gzip` drives it: the models `go-1` … `go-9`, one per level (Go's
//! `DefaultCompression`, −1, is level 6).
//!
//! Learned from the Go 1.19 sources Debian ships (`golang-1.19-src`); the match finders of Go 1.22 and 1.24
//! (bookworm-backports, trixie) differ from them only in comments and `clear()` calls, so one model fits all.
//!
//! # Levels 2–9: hash chains
//!
//! Every position with four bytes left before the producer's next stop (a `Flush` or the end of the member) is
//! hashed — the four bytes big-endian, times `0x1e35a7bd`, top 17 bits — into a chain of earlier positions with
//! the same hash. A search walks at most `chain` links back, within 32 KiB and within the producer's sliding
//! window; it keeps a longer match only if it is longer than 4 bytes or no more than 4096 back (so length 3 is
//! never emitted and length 4 only close by), and stops at `nice`. Unlike zlib it always searches from length 3:
//! the lazy match of the previous position does not raise the bar, nor does `good` ever shorten the chain.
//!
//! - Levels 4–9 match lazily: the match found at a position is emitted only if the one found at the next
//!   position is not longer; no search is made at the next position when the held match reaches `lazy`. After a
//!   match every covered position is hashed.
//! - Levels 2 and 3 take each match at once; only matches up to `fastSkipHashing` (5, 6) bytes long get their
//!   covered positions hashed.
//!
//! The window is a 64 KiB buffer that slides by 32 KiB when the producer has run out of look-ahead (262 bytes)
//! and more input is waiting, or when input comes after a `Flush` with the position already that far in. A
//! candidate must lie inside the buffer, so for up to 262 positions after each slide matches reaching further
//! back than the buffer's start are not found even though they are within 32 KiB. Where the producer stops in
//! the middle of its input depends on how big its `Write` calls were only when that stop lands exactly 262 bytes
//! before the buffer's end; the model assumes large writes.
//!
//! # Level 1: Go's snappy-like `deflateFast`
//!
//! The input is cut into 65535-byte pieces (a `Flush` or the end cuts a shorter one) and each is parsed greedily
//! with a 16 Ki-entry hash table of the last position per hash, skipping ahead faster the longer no match is
//! found; the table and the previous piece carry over to the next piece, so matches reach back into it. A piece
//! whose parse removes less than 1/16 of its tokens is written as literals only, and a last piece under 128
//! bytes is literals and forgets the history. The model parses each piece ahead of the walk.

use super::raw::Raw;
use super::{Decision, Model};

/// The model `go-<level>` (level 1 ..= 9) for the member whose bytes `raw` holds.
pub(crate) fn model(level: u8, raw: Raw) -> super::AnyModel {
    match level {
        1 => super::AnyModel::GoFast(Box::new(BestSpeed::new(raw))),
        _ => super::AnyModel::Go(Box::new(Chained::new(
            LEVELS[level.clamp(2, 9) as usize - 2],
            raw,
        ))),
    }
}

const WINDOW: usize = 1 << 15;
const MAX_MATCH: usize = 258;
/// Go processes input only while this much is ahead of the current position, unless it is flushing.
const MIN_LOOKAHEAD: usize = 4 + MAX_MATCH;

/// The bytes at `a` and at `b` that agree, up to `max` (both ranges inside `raw`).
fn match_len(raw: &Raw, a: usize, b: usize, max: usize) -> usize {
    let (x, y) = (&raw[a..a + max], &raw[b..b + max]);
    let mut n = 0;
    while n + 8 <= max {
        let d = u64::from_le_bytes(x[n..n + 8].try_into().unwrap())
            ^ u64::from_le_bytes(y[n..n + 8].try_into().unwrap());
        if d != 0 {
            return n + (d.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < max && x[n] == y[n] {
        n += 1;
    }
    n
}

/// One level's search parameters (Go's `levels` table).
#[derive(Clone, Copy, Debug)]
struct Level {
    /// Hold a match for the next position's search only while it is shorter than this (levels 4–9).
    lazy: usize,
    /// Stop searching at a match this long.
    nice: usize,
    /// Chain links to follow.
    chain: usize,
    /// Levels 2 and 3: take matches at once, hashing their positions only when no longer than this.
    greedy: Option<usize>,
}

const LEVELS: [Level; 8] = {
    const fn lazy(lazy: usize, nice: usize, chain: usize) -> Level {
        Level {
            lazy,
            nice,
            chain,
            greedy: None,
        }
    }
    const fn greedy(nice: usize, chain: usize, skip: usize) -> Level {
        Level {
            lazy: 0,
            nice,
            chain,
            greedy: Some(skip),
        }
    }
    [
        greedy(16, 8, 5),
        greedy(32, 32, 6),
        lazy(4, 16, 16),
        lazy(16, 32, 32),
        lazy(16, 128, 128),
        lazy(32, 128, 256),
        lazy(128, 258, 1024),
        lazy(258, 258, 4096),
    ]
};

const HASH_BITS: u32 = 17;

/// Go's hash chains: the latest position per hash of four bytes, and each position's predecessor.
/// A slot holds `position − base + 1`, 0 for none; `base` moves up before the values outgrow 32 bits.
struct Chains {
    head: Vec<u32>,
    prev: Vec<u32>,
    base: usize,
}

impl Chains {
    fn new() -> Chains {
        Chains {
            head: vec![0; 1 << HASH_BITS],
            prev: vec![0; WINDOW],
            base: 0,
        }
    }

    fn hash(raw: &Raw, p: usize) -> usize {
        let v = u32::from_be_bytes(raw[p..p + 4].try_into().unwrap());
        (v.wrapping_mul(0x1e35a7bd) >> (32 - HASH_BITS)) as usize
    }

    /// Hash the four bytes at `p` in; the previous latest position with that hash.
    fn insert(&mut self, raw: &Raw, p: usize) -> Option<usize> {
        if p < self.base {
            return None;
        }
        if p - self.base >= 1 << 31 {
            self.rebase(p - 2 * WINDOW);
        }
        let h = Self::hash(raw, p);
        let old = self.head[h];
        self.prev[p % WINDOW] = old;
        self.head[h] = (p - self.base + 1) as u32;
        self.at(old)
    }

    /// The position before `p` in its chain.
    fn before(&self, p: usize) -> Option<usize> {
        self.at(self.prev[p % WINDOW])
    }

    fn at(&self, v: u32) -> Option<usize> {
        (v != 0).then(|| self.base + v as usize - 1)
    }

    fn rebase(&mut self, base: usize) {
        let delta = (base - self.base) as u64;
        for v in self.head.iter_mut().chain(self.prev.iter_mut()) {
            *v = (*v as u64).saturating_sub(delta) as u32;
        }
        self.base = base;
    }
}

/// A match found at a position: `len` 3 (Go's "minimum − 1") for none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Found {
    len: usize,
    dist: usize,
}

const NONE: Found = Found { len: 3, dist: 0 };

/// Levels 2–9.
pub struct Chained {
    raw: Raw,
    level: Level,
    chains: Chains,
    /// Whether the walk has started (the member's stops are read only once positions are asked for).
    started: bool,
    /// The member: its start, and its end (`FAR` until known).
    member: (usize, usize),
    /// The producer's next stop: a flush or the member's end; the stop before it (or the member's start).
    stop: usize,
    stop_from: usize,
    /// The producer's buffer: raw offset of its first byte, and of the end of what it holds.
    window: (usize, usize),
    /// Go's `index`: the next position its loop runs at.
    cursor: usize,
    /// Positions below this have been hashed (or passed over for good).
    hashed: usize,
    /// Levels 4–9: the byte at `cursor − 1` is not yet decided; the match found there.
    held: Option<Found>,
    /// What `decide` found at the position after the one decided (lazy levels).
    next: Found,
}

impl Chained {
    fn new(level: Level, raw: Raw) -> Self {
        let start = raw.start();
        Chained {
            raw,
            level,
            chains: Chains::new(),
            started: false,
            member: (start, start),
            stop: start,
            stop_from: start,
            window: (start, start),
            cursor: start,
            hashed: start,
            held: None,
            next: NONE,
        }
    }

    /// Read what the driver has learnt of the member's end and flushes since the last call.
    fn refresh(&mut self) {
        if !self.started {
            self.started = true;
            let start = self.raw.start();
            self.member = (start, self.raw.end());
            self.stop_from = start;
            self.stop = self.raw.next_stop(start);
            self.window = (start, (start + 2 * WINDOW).min(self.stop));
            self.settle();
        } else {
            self.member.1 = self.raw.end();
            self.stop = self.raw.next_stop(self.stop_from);
        }
    }

    /// The position of the next decision.
    fn at(&self) -> usize {
        self.cursor - self.held.is_some() as usize
    }

    /// After the walk reached or passed the producer's stop: the producer flushed there, and takes more input.
    fn settle(&mut self) {
        while self.held.is_none() && self.cursor >= self.stop && self.stop < self.member.1 {
            self.stop_from = self.stop;
            self.stop = self.raw.next_stop(self.stop);
            // The write after a flush fills the buffer, sliding it first if the position is far enough in.
            if self.cursor.saturating_sub(self.window.0) >= 2 * WINDOW - MIN_LOOKAHEAD {
                self.window.0 += WINDOW;
            }
            self.window.1 = (self.window.0 + 2 * WINDOW).min(self.stop);
        }
    }

    /// Hash the positions from `hashed` up to `end` that the producer hashes (four bytes before the stop).
    fn hash_to(&mut self, end: usize) {
        let last = end.min(self.stop.saturating_sub(3));
        for p in self.hashed..last {
            self.chains.insert(&self.raw, p);
        }
        self.hashed = self.hashed.max(end);
    }

    /// Go's loop at position `c` with the held match length `held` (3 for none): slide the buffer if the
    /// producer would have, hash `c`, search if the level says so. The match found at `c`.
    fn look(&mut self, c: usize, held: usize) -> Found {
        while self.window.1 < self.stop && self.window.1.saturating_sub(c) < MIN_LOOKAHEAD {
            self.window.0 += WINDOW;
            self.window.1 = (self.window.0 + 2 * WINDOW).min(self.stop);
        }
        let ahead = self.stop.saturating_sub(c);
        if ahead <= 3 || c < self.hashed {
            self.hashed = self.hashed.max(c + 1);
            return NONE;
        }
        let head = self.chains.insert(&self.raw, c);
        self.hashed = c + 1;
        let search = self.level.greedy.is_some() || (ahead > held && held < self.level.lazy);
        match head {
            Some(h) if search => self.find(c, h, ahead),
            _ => NONE,
        }
    }

    /// Go's `findMatch` at `c` from the chain head `h`, with `ahead` bytes left before the stop.
    fn find(&self, c: usize, mut h: usize, ahead: usize) -> Found {
        let lowest = c.saturating_sub(WINDOW).max(self.window.0);
        if h < lowest || h >= c {
            return NONE;
        }
        let raw = &self.raw;
        let max = ahead.min(MAX_MATCH);
        let nice = self.level.nice.min(max);
        let mut best = NONE;
        let mut tail = raw[c + best.len];
        for _ in 0..self.level.chain {
            if raw[h + best.len] == tail {
                let n = match_len(raw, h, c, max);
                if n > best.len && (n > 4 || c - h <= 4096) {
                    best = Found {
                        len: n,
                        dist: c - h,
                    };
                    if n >= nice {
                        break;
                    }
                    tail = raw[c + n];
                }
            }
            match self.chains.before(h) {
                Some(p) if p >= lowest && p < h => h = p,
                _ => break,
            }
        }
        best
    }

    /// The producer's decision at `pos` (which is `self.at()`), leaving what `take` needs in `next`.
    fn decide(&mut self, pos: usize) -> Decision {
        if self.level.greedy.is_some() {
            let f = self.look(pos, 3);
            self.next = f;
            return to_decision(f);
        }
        let held = match self.held {
            Some(h) => h,
            None => {
                let h = self.look(pos, 3);
                self.cursor = pos + 1;
                self.held = Some(h);
                h
            }
        };
        if pos + 1 >= self.stop {
            self.next = NONE;
            return Decision::Literal;
        }
        self.next = self.look(pos + 1, held.len);
        if held.len >= 4 && self.next.len <= held.len {
            to_decision(held)
        } else {
            Decision::Literal
        }
    }

    /// The producer decided `d` at `pos` (which is `self.at()`, after `decide`).
    fn follow(&mut self, pos: usize, d: Decision) {
        match (d, self.level.greedy) {
            (Decision::Literal, None) if pos + 1 < self.stop => {
                self.cursor = pos + 2;
                self.held = Some(self.next);
            }
            (Decision::Literal, _) => {
                self.cursor = pos + 1;
                self.held = None;
            }
            (Decision::Match { len, .. }, greedy) => {
                let end = pos + len as usize;
                if greedy.is_none_or(|g| len as usize <= g) {
                    self.hash_to(end);
                } else {
                    self.hashed = self.hashed.max(end);
                }
                self.cursor = end;
                self.held = None;
            }
        }
        self.settle();
    }

    /// Bring the walk to `pos`: into its member, and through positions the driver skipped (stored blocks),
    /// deciding them as the producer would. False if `pos` is in no member.
    fn reach(&mut self, pos: usize) -> bool {
        self.refresh();
        if pos >= self.member.1 || pos < self.member.0 {
            return false;
        }
        loop {
            let at = self.at();
            if at == pos {
                return true;
            }
            if at > pos {
                // Only a decision the producer cannot have made gets here; start afresh at pos.
                self.realign(pos);
                return true;
            }
            let d = self.decide(at);
            if at + d.advance() > pos {
                self.realign(pos);
                return true;
            }
            self.follow(at, d);
        }
    }

    /// Put the walk at `pos` as if a decision had just ended there.
    fn realign(&mut self, pos: usize) {
        self.hash_to(pos);
        self.cursor = pos;
        self.held = None;
        self.settle();
    }
}

fn to_decision(f: Found) -> Decision {
    if f.len >= 4 {
        Decision::Match {
            len: f.len as u16,
            dist: f.dist as u16,
        }
    } else {
        Decision::Literal
    }
}

impl Model for Chained {
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
        self.decide(pos)
    }

    fn take(&mut self, pos: usize, actual: Decision) {
        self.refresh();
        if pos == self.at() && pos < self.member.1 {
            self.follow(pos, actual);
        }
    }

    fn reach(&mut self, pos: usize) {
        Chained::reach(self, pos);
    }
}

/// Level 1's input piece: the encoder runs when its buffer holds this much.
const PIECE: usize = 65535;
const TABLE_BITS: u32 = 14;
/// Go moves its offsets down before `cur` passes this.
const BUFFER_RESET: i64 = i32::MAX as i64 - 2 * PIECE as i64;

/// Level 1.
pub struct BestSpeed {
    raw: Raw,
    /// Per hash: the four bytes last seen and where (`cur`-relative, as Go keeps them).
    table: Vec<(u32, i64)>,
    cur: i64,
    /// The previous piece's raw range (empty after a reset).
    prev: (usize, usize),
    /// The member: its start and end (`FAR` until known); the producer's current stop in it, and the stop before
    /// that (or the member's start).
    member: (usize, usize),
    stop: usize,
    stop_from: usize,
    /// The piece parsed, and its decision at each offset (inside a match: the rest of it, or a literal).
    piece: (usize, usize),
    plan: Vec<Decision>,
}

impl BestSpeed {
    fn new(raw: Raw) -> Self {
        let start = raw.start();
        BestSpeed {
            raw,
            table: vec![(0, 0); 1 << TABLE_BITS],
            cur: PIECE as i64,
            prev: (0, 0),
            member: (start, start),
            stop: start,
            stop_from: start,
            piece: (start, start),
            plan: Vec::new(),
        }
    }

    fn hash(v: u32) -> usize {
        (v.wrapping_mul(0x1e35a7bd) >> (32 - TABLE_BITS)) as usize
    }

    fn load32(&self, p: usize) -> u32 {
        u32::from_le_bytes(self.raw[p..p + 4].try_into().unwrap())
    }

    /// Go's `reset`: forget the history.
    fn forget(&mut self) {
        self.prev = (0, 0);
        self.cur += WINDOW as i64;
        if self.cur >= BUFFER_RESET {
            self.shift();
        }
    }

    fn shift(&mut self) {
        if self.prev.1 == self.prev.0 {
            self.table.fill((0, 0));
        } else {
            for e in &mut self.table {
                e.1 = (e.1 - self.cur + WINDOW as i64 + 1).max(0);
            }
        }
        self.cur = WINDOW as i64 + 1;
    }

    /// Make the piece holding `pos` the parsed one; false if `pos` is in no member.
    fn reach(&mut self, pos: usize) -> bool {
        self.member = (self.raw.start(), self.raw.end());
        self.stop = self.raw.next_stop(self.stop_from);
        if pos >= self.member.1 || pos < self.member.0 {
            return false;
        }
        while self.piece.1 <= pos {
            let mut start = self.piece.1;
            if start >= self.stop {
                // A flush: the next piece starts at the stop.
                start = self.stop;
                self.stop_from = start;
                self.stop = self.raw.next_stop(start);
            }
            let end = (start + PIECE).min(self.stop);
            self.parse(start, end);
        }
        true
    }

    /// Parse the piece `start..end` as Go's `encSpeed` and `deflateFast.encode` do.
    fn parse(&mut self, start: usize, end: usize) {
        let n = end - start;
        self.piece = (start, end);
        self.plan.clear();
        self.plan.resize(n, Decision::Literal);
        if n < PIECE && end == self.stop && n < 128 {
            // Flushed or closed with little input: literals (or stored), and the history is dropped.
            self.forget();
            return;
        }
        let tokens = self.encode(start, end);
        if tokens > n - (n >> 4) {
            self.plan.fill(Decision::Literal);
        }
    }

    /// Go's `deflateFast.encode` over `start..end`, into `plan`; the number of tokens.
    fn encode(&mut self, start: usize, end: usize) -> usize {
        const MARGIN: usize = 15;
        let n = end - start;
        if self.cur >= BUFFER_RESET {
            self.shift();
        }
        if n < MARGIN + 2 {
            self.cur += PIECE as i64;
            self.prev = (0, 0);
            return n;
        }
        let limit = n - MARGIN;
        let mut tokens = 0;
        let mut emitted = 0;
        let mut s = 0;
        let mut cv = self.load32(start);
        let mut next_hash = Self::hash(cv);
        'pieces: loop {
            let mut skip = 32;
            let mut next_s = s;
            let mut candidate;
            loop {
                s = next_s;
                next_s = s + (skip >> 5);
                skip += skip >> 5;
                if next_s > limit {
                    break 'pieces;
                }
                candidate = self.table[next_hash];
                let now = self.load32(start + next_s);
                self.table[next_hash] = (cv, s as i64 + self.cur);
                next_hash = Self::hash(now);
                if s as i64 - (candidate.1 - self.cur) <= WINDOW as i64 && cv == candidate.0 {
                    break;
                }
                cv = now;
            }
            tokens += s - emitted;
            loop {
                // Four bytes match at s; extend.
                let t = candidate.1 - self.cur;
                let l = self.extend(start, end, s + 4, t + 4);
                let len = l + 4;
                let dist = (s as i64 - t) as usize;
                if (1..=WINDOW).contains(&dist) {
                    self.plan[s] = Decision::Match {
                        len: len as u16,
                        dist: dist as u16,
                    };
                    for k in 1..len {
                        if len - k >= 4 {
                            self.plan[s + k] = Decision::Match {
                                len: (len - k) as u16,
                                dist: dist as u16,
                            };
                        }
                    }
                }
                tokens += 1;
                s += len;
                emitted = s;
                if s >= limit {
                    break 'pieces;
                }
                let x =
                    u64::from_le_bytes(self.raw[start + s - 1..start + s + 7].try_into().unwrap());
                self.table[Self::hash(x as u32)] = (x as u32, self.cur + s as i64 - 1);
                let x = x >> 8;
                let h = Self::hash(x as u32);
                candidate = self.table[h];
                self.table[h] = (x as u32, self.cur + s as i64);
                if s as i64 - (candidate.1 - self.cur) > WINDOW as i64 || x as u32 != candidate.0 {
                    cv = (x >> 8) as u32;
                    next_hash = Self::hash(cv);
                    s += 1;
                    break;
                }
            }
        }
        tokens += n - emitted;
        self.cur += n as i64;
        self.prev = (start, end);
        tokens
    }

    /// Go's `deflateFast.matchLen`: how far the bytes at piece offset `s` agree with those at `t` (negative:
    /// in the previous piece), up to 254 more.
    fn extend(&self, start: usize, end: usize, s: usize, t: i64) -> usize {
        let s1 = (s + MAX_MATCH - 4).min(end - start);
        if t >= 0 {
            return match_len(&self.raw, start + t as usize, start + s, s1 - s);
        }
        let (ps, pe) = self.prev;
        let tp = (pe - ps) as i64 + t;
        if tp < 0 {
            return 0;
        }
        let from = ps + tp as usize;
        let in_prev = (pe - from).min(s1 - s);
        let n = match_len(&self.raw, from, start + s, in_prev);
        if n < in_prev || s + n == s1 {
            return n;
        }
        // The match runs on from the start of this piece.
        n + match_len(&self.raw, start, start + s + n, s1 - s - n)
    }
}

impl Model for BestSpeed {
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
        match self.plan[pos - self.piece.0] {
            Decision::Match { len, .. } if pos + len as usize > self.piece.1 => Decision::Literal,
            d => d,
        }
    }

    fn take(&mut self, _pos: usize, _actual: Decision) {}

    fn reach(&mut self, pos: usize) {
        BestSpeed::reach(self, pos);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Layout, MODELS};
    use crate::deflate::tests::{random, round_trip, text};
    use std::io::Write as _;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;

    /// The test producer (`go_producer.go`, Go's compress/gzip) built once per test run.
    fn producer() -> &'static PathBuf {
        static BIN: OnceLock<PathBuf> = OnceLock::new();
        BIN.get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("ferry-go-producer-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let src = dir.join("main.go");
            std::fs::write(&src, include_str!("go_producer.go")).unwrap();
            let bin = dir.join("go_producer");
            let mut cmd = Command::new("go");
            cmd.arg("build")
                .arg("-o")
                .arg(&bin)
                .arg(&src)
                .current_dir(&dir);
            for (var, sub) in [("GOCACHE", "gocache"), ("GOPATH", "gopath")] {
                if std::env::var_os(var).is_none() {
                    cmd.env(var, std::env::temp_dir().join(format!("ferry-go-{sub}")));
                }
            }
            let out = cmd.output().unwrap_or_else(|e| {
                panic!("cannot run `go` ({e}): install the Debian package golang-go")
            });
            assert!(
                out.status.success(),
                "go build failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            bin
        })
    }

    /// `data` gzipped by Go's compress/gzip at `level`, in `write`-byte Write calls (0: one), flushing every
    /// `flush` bytes (0: never).
    fn go_gzip(data: &[u8], level: i32, write: usize, flush: usize) -> Vec<u8> {
        let mut child = Command::new(producer())
            .args([
                format!("-level={level}"),
                format!("-write={write}"),
                format!("-flush={flush}"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success(), "go_producer failed");
        out.stdout
    }

    /// Misses of model `name` on `gz`, after checking that its corrections decode back to the tokens.
    fn misses(name: &str, gz: &[u8]) -> usize {
        super::super::tests::misses(name, gz).0
    }

    /// Text, incompressible bytes (stored blocks), long runs, and text again: several windows' worth.
    fn mixed() -> Vec<u8> {
        let mut data = text(150_000, 51);
        data.extend(random(70_000, 52));
        data.extend(vec![b'z'; 40_000]);
        data.extend(text(60_000, 53));
        data.extend_from_within(1000..30_000);
        data.extend(text(100_000, 54));
        data
    }

    #[test]
    fn every_level_predicts_go_exactly() {
        let inputs = [
            ("empty", Vec::new()),
            ("short", b"abcabcabcabcabcd".to_vec()),
            ("text", text(200_000, 50)),
            ("mixed", mixed()),
        ];
        for level in 1..=9 {
            for (what, data) in &inputs {
                let gz = go_gzip(data, level, 0, 0);
                assert_eq!(
                    misses(&format!("go-{level}"), &gz),
                    0,
                    "{what} at level {level}"
                );
            }
        }
        let gz = go_gzip(&inputs[3].1, -1, 0, 0);
        assert_eq!(misses("go-6", &gz), 0, "default level");
    }

    #[test]
    fn write_sizes_and_flushes() {
        let data = mixed();
        for level in [1, 2, 4, 6, 9] {
            for (write, flush) in [
                (1000, 0),
                (4096, 0),
                (777, 100_000),
                (0, 65_535),
                (0, 30_000),
            ] {
                let gz = go_gzip(&data, level, write, flush);
                assert_eq!(
                    misses(&format!("go-{level}"), &gz),
                    0,
                    "level {level}, writes of {write}, flush every {flush}"
                );
            }
        }
    }

    #[test]
    fn members_start_afresh() {
        let mut gz = go_gzip(&text(80_000, 60), 6, 0, 0);
        gz.extend(go_gzip(&random(1000, 61), 6, 0, 0));
        gz.extend(go_gzip(&text(70_000, 60), 6, 0, 0));
        assert_eq!(misses("go-6", &gz), 0);
    }

    /// Any raw bytes, any layout, any sequence of decisions: no panic (a wrong model only misses).
    #[test]
    fn arbitrary_walks_do_not_panic() {
        let gz = go_gzip(&mixed(), 6, 0, 30_000);
        let (raw, re) = round_trip(&gz);
        let layout = Layout::parse(&re.headers).unwrap();
        let noise = random(200_000, 70);
        for (i, bytes) in [&raw[..], &raw[..5000], &noise[..], &[][..]]
            .into_iter()
            .enumerate()
        {
            for m in MODELS.iter().filter(|m| m.starts_with("go-")) {
                super::super::tests::arbitrary_walk(m, bytes, &layout, 71 + i as u64);
            }
        }
    }

    #[test]
    fn other_producers_round_trip() {
        // flate2 (zlib) made these: many misses, but the corrections still give the tokens back.
        for level in [1, 6, 9] {
            let gz = crate::deflate::tests::flate2_gz(&mixed(), level);
            for m in MODELS.iter().filter(|m| m.starts_with("go-")) {
                misses(m, &gz);
            }
        }
    }
}
