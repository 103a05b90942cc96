//! The match finder of klauspost/compress 1.15.12's `SpeedDefault` zstd encoder (`enc_dfast.go`'s
//! `doubleFastEncoder`, `enc_base.go`'s history), ported so that its sequences are Go's, one for one: two hash
//! tables (8-byte hashes in the long one, 5-byte in the short one), repeat offsets tried first, and the history
//! kept across the blocks of a stream in a buffer of twice the window that moves down when full.
//!
//! Go's `int32` positions are kept as `i32` and computed as Go computes them; where Go would index out of its
//! slice (it cannot on what it produced itself), a read past the data is taken as "no match" instead of a panic.

use super::block::{BlockEnc, Seq};

/// Bits of the long (8-byte hash) table.
const LONG_TABLE_BITS: u32 = 17;
/// Bits of the short (5-byte hash) table.
const SHORT_TABLE_BITS: u32 = 15;
/// The longest match a sequence may describe.
const MAX_MATCH_LENGTH: i32 = 131_074;
/// zstd's shortest match.
const MIN_MATCH: u32 = 3;
/// Go's `maxCompressedBlockSize`: the most a block holds.
pub const BLOCK_SIZE: usize = 128 << 10;
/// Go's `bufferReset`: positions are rebased before they reach `i32::MAX`.
const BUFFER_RESET: i32 = i32::MAX - (1 << 29);

const PRIME_5_BYTES: u64 = 889_523_592_379;
const PRIME_8_BYTES: u64 = 0xcf1b_bcdc_b7a5_6463;

/// Go's `hashLen(u, LONG_TABLE_BITS, 8)`.
fn hash_long(u: u64) -> usize {
    (u.wrapping_mul(PRIME_8_BYTES) >> (64 - LONG_TABLE_BITS)) as usize
}

/// Go's `hashLen(u, SHORT_TABLE_BITS, 5)`.
fn hash_short(u: u64) -> usize {
    ((u << (64 - 40)).wrapping_mul(PRIME_5_BYTES) >> (64 - SHORT_TABLE_BITS)) as usize
}

/// Eight bytes at `i`, little-endian; `None` past the end (or before the start).
fn load64(b: &[u8], i: i32) -> Option<u64> {
    let i = usize::try_from(i).ok()?;
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// Four bytes at `i`, little-endian; `None` past the end (or before the start).
fn load32(b: &[u8], i: i32) -> Option<u32> {
    let i = usize::try_from(i).ok()?;
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// How many bytes `src[s..]` and `src[t..]` have in common (`t < s`), up to the end of `src`.
fn match_len(src: &[u8], s: i32, t: i32) -> i32 {
    let (s, t) = (s as usize, t as usize);
    let a = &src[s.min(src.len())..];
    let b = &src[t..t + a.len()];
    let mut n = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let diff =
            u64::from_le_bytes(x.try_into().unwrap()) ^ u64::from_le_bytes(y.try_into().unwrap());
        if diff != 0 {
            return n + (diff.trailing_zeros() >> 3) as i32;
        }
        n += 8;
    }
    let done = n as usize;
    n + a[done..]
        .iter()
        .zip(&b[done..])
        .take_while(|(x, y)| x == y)
        .count() as i32
}

#[derive(Clone, Copy, Default)]
struct TableEntry {
    val: u32,
    offset: i32,
}

/// Go's `fastBase` without a dictionary: the history of one stream, shared by the match finders (`best`
/// uses it too), and `cur`, which turns positions in it into the stream positions the hash tables hold.
pub(super) struct History {
    /// Go's `cur`: the stream position of `hist[0]`, plus the offsets added to push old entries out of reach.
    pub(super) cur: i32,
    /// The window: no match reaches further back.
    pub(super) max_match_off: i32,
    /// The window's bytes before the current block, then the block.
    pub(super) hist: Vec<u8>,
    /// Go's `cap(hist)`: the history moves down when a block would not fit (0 until the first block).
    hist_cap: usize,
}

impl History {
    /// No history yet, with a window of `window` bytes.
    pub(super) fn new(window: i32) -> History {
        History {
            cur: 0,
            max_match_off: window,
            hist: Vec::new(),
            hist_cap: 0,
        }
    }

    /// Go's `resetBase` (without a dictionary): a new frame, everything before it out of reach.
    pub(super) fn reset(&mut self) {
        if self.cur < BUFFER_RESET {
            self.cur += self.max_match_off + self.hist.len() as i32;
        }
        self.hist.clear();
    }

    /// Go's `addBlock`: `src` appended to the history (moved down first when it would not fit); where it starts.
    pub(super) fn add_block(&mut self, src: &[u8]) -> i32 {
        if self.hist.len() + src.len() > self.hist_cap {
            if self.hist_cap == 0 {
                self.ensure_hist(src.len());
            } else {
                let offset = self.hist.len() - self.max_match_off as usize;
                self.hist.copy_within(offset.., 0);
                self.cur += offset as i32;
                self.hist.truncate(self.max_match_off as usize);
            }
        }
        let s = self.hist.len() as i32;
        self.hist.extend_from_slice(src);
        s
    }

    /// Go's `ensureHist`: room for the window and a block (at least 1 MiB, at least `n`). Go allocates a new,
    /// empty history when it grows it; the callers only grow an empty one.
    pub(super) fn ensure_hist(&mut self, n: usize) {
        if self.hist_cap >= n {
            return;
        }
        let window = self.max_match_off as usize;
        let mut l = window
            + if window <= BLOCK_SIZE {
                BLOCK_SIZE
            } else {
                window
            };
        l = l.max(1 << 20).max(n);
        self.hist_cap = l;
        self.hist.clear();
        self.hist.reserve(l);
    }

    /// Go's protection against `cur` reaching `i32::MAX`, run before a block is added: when due, `cur` goes
    /// back to the window and this returns how a table's stream position moves — to 0 (empty) when it is out
    /// of reach, which is every one when the history is empty.
    pub(super) fn rebase(&mut self) -> Option<impl Fn(i32) -> i32> {
        if self.cur < BUFFER_RESET {
            return None;
        }
        let (cur, max) = (self.cur, self.max_match_off);
        // With no history every position is out of reach.
        let min_off = if self.hist.is_empty() {
            i32::MAX
        } else {
            cur + self.hist.len() as i32 - max
        };
        self.cur = max;
        Some(move |offset: i32| {
            if offset < min_off {
                0
            } else {
                offset - cur + max
            }
        })
    }
}

/// Go's `doubleFastEncoder` (with its `fastBase`): the tables and the history of one stream.
pub struct DoubleFast {
    base: History,
    table: Vec<TableEntry>,
    long_table: Vec<TableEntry>,
}

impl DoubleFast {
    /// A fresh encoder with a window of `window` bytes (`SpeedDefault`'s is 8 MiB).
    pub fn new(window: i32) -> DoubleFast {
        DoubleFast {
            base: History::new(window),
            table: vec![TableEntry::default(); 1 << SHORT_TABLE_BITS],
            long_table: vec![TableEntry::default(); 1 << LONG_TABLE_BITS],
        }
    }

    /// Go's `Reset` (without a dictionary): a new frame, everything before it out of reach.
    pub fn reset(&mut self) {
        self.base.reset();
    }

    /// Go's `Encode`: the sequences and literals of `src`, the next block of the stream, into `blk`.
    pub fn encode(&mut self, blk: &mut BlockEnc, src: &[u8]) {
        if let Some(moved) = self.base.rebase() {
            for e in self.table.iter_mut().chain(self.long_table.iter_mut()) {
                e.offset = moved(e.offset);
            }
        }
        let s = self.base.add_block(src);
        blk.size = src.len();
        if src.len() < MIN_NON_LITERAL_BLOCK_SIZE {
            blk.extra_lits = src.len();
            blk.literals.clear();
            blk.literals.extend_from_slice(src);
            return;
        }
        let hist = std::mem::take(&mut self.base.hist);
        let (offset1, offset2) = self.find::<true>(blk, &hist, s);
        self.base.hist = hist;
        blk.recent_offsets[0] = offset1 as u32;
        blk.recent_offsets[1] = offset2 as u32;
    }

    /// Go's `EncodeNoHist`: `src`, a whole frame in one block, into `blk`, without keeping it as history.
    pub fn encode_no_hist(&mut self, blk: &mut BlockEnc, src: &[u8]) {
        if self.base.cur >= BUFFER_RESET {
            self.table.fill(TableEntry::default());
            self.long_table.fill(TableEntry::default());
            self.base.cur = self.base.max_match_off;
        }
        blk.size = src.len();
        if src.len() < MIN_NON_LITERAL_BLOCK_SIZE {
            blk.extra_lits = src.len();
            blk.literals.clear();
            blk.literals.extend_from_slice(src);
            return;
        }
        self.find::<false>(blk, src, 0);
        if self.base.cur < BUFFER_RESET {
            self.base.cur += src.len() as i32;
        }
    }

    /// The search loop both share, from `s` to the end of `src`; the recent offsets it ends with. `HIST` is
    /// `Encode` (`src` is the history, repeat offsets checked against its start, matches bounded in length,
    /// whether to repeat decided once per match) rather than `EncodeNoHist`, whose differences are kept as Go
    /// has them.
    fn find<const HIST: bool>(&mut self, blk: &mut BlockEnc, src: &[u8], mut s: i32) -> (i32, i32) {
        const INPUT_MARGIN: i32 = 8 + 2;
        const K_SEARCH_STRENGTH: i32 = 8;
        const REP_OFF: i32 = 1;
        let s_limit = src.len() as i32 - INPUT_MARGIN;
        let mut next_emit = s;
        let Some(mut cv) = load64(src, s) else {
            return (blk.recent_offsets[0] as i32, blk.recent_offsets[1] as i32);
        };
        let mut offset1 = blk.recent_offsets[0] as i32;
        let mut offset2 = blk.recent_offsets[1] as i32;
        let max_off = self.base.max_match_off;
        let cur = self.base.cur;

        'encode: loop {
            let t: i32;
            // Encode decides once per match whether to try repeats; EncodeNoHist at every step.
            let can_repeat_at_match = blk.sequences.len() > 2;
            loop {
                let next_hash_l = hash_long(cv);
                let next_hash_s = hash_short(cv);
                let candidate_l = self.long_table[next_hash_l];
                let candidate_s = self.table[next_hash_s];
                let mut rep_index = s - offset1 + REP_OFF;
                let entry = TableEntry {
                    offset: s + cur,
                    val: cv as u32,
                };
                self.long_table[next_hash_l] = entry;
                self.table[next_hash_s] = entry;

                let can_repeat = if HIST {
                    can_repeat_at_match
                } else {
                    blk.sequences.len() > 2
                };
                if can_repeat
                    && (!HIST || rep_index >= 0)
                    && load32(src, rep_index) == Some((cv >> (REP_OFF * 8)) as u32)
                {
                    let length = 4 + match_len(src, s + 4 + REP_OFF, rep_index + 4);
                    let mut seq = Seq {
                        match_len: (length - MIN_MATCH as i32) as u32,
                        ..Seq::default()
                    };
                    let mut start = s + REP_OFF;
                    let start_limit = next_emit + 1;
                    let t_min = (s - max_off).max(0);
                    while rep_index > t_min
                        && start > start_limit
                        && src[rep_index as usize - 1] == src[start as usize - 1]
                        && (!HIST
                            || seq.match_len < (MAX_MATCH_LENGTH - MIN_MATCH as i32 - 1) as u32)
                    {
                        rep_index -= 1;
                        start -= 1;
                        seq.match_len += 1;
                    }
                    if start != next_emit {
                        blk.literals
                            .extend_from_slice(&src[next_emit as usize..start as usize]);
                        seq.lit_len = (start - next_emit) as u32;
                    }
                    seq.offset = 1;
                    blk.sequences.push(seq);
                    s += length + REP_OFF;
                    next_emit = s;
                    if s >= s_limit {
                        break 'encode;
                    }
                    cv = load64(src, s).unwrap_or(0);
                    continue;
                }
                let coffset_l = s - (candidate_l.offset - cur);
                let coffset_s = s - (candidate_s.offset - cur);
                if coffset_l < max_off && cv as u32 == candidate_l.val {
                    t = candidate_l.offset - cur;
                    break;
                }
                if coffset_s < max_off && cv as u32 == candidate_s.val {
                    // A short match: is there a long one at s+1?
                    const CHECK_AT: i32 = 1;
                    let cv = load64(src, s + CHECK_AT).unwrap_or(0);
                    let next_hash_l = hash_long(cv);
                    let candidate_l = self.long_table[next_hash_l];
                    let coffset_l = s - (candidate_l.offset - cur) + CHECK_AT;
                    self.long_table[next_hash_l] = TableEntry {
                        offset: s + CHECK_AT + cur,
                        val: cv as u32,
                    };
                    if coffset_l < max_off && cv as u32 == candidate_l.val {
                        t = candidate_l.offset - cur;
                        s += CHECK_AT;
                        break;
                    }
                    t = candidate_s.offset - cur;
                    break;
                }
                s += 1 + ((s - next_emit) >> (K_SEARCH_STRENGTH - 1));
                if s >= s_limit {
                    break 'encode;
                }
                cv = load64(src, s).unwrap_or(0);
            }

            // A match of at least 4 bytes at t.
            offset2 = offset1;
            offset1 = s - t;
            let mut t = t;
            let mut l = match_len(src, s + 4, t + 4) + 4;
            let t_min = (s - max_off).max(0);
            while t > t_min
                && s > next_emit
                && src[t as usize - 1] == src[s as usize - 1]
                && (!HIST || l < MAX_MATCH_LENGTH)
            {
                s -= 1;
                t -= 1;
                l += 1;
            }
            let mut seq = Seq {
                lit_len: (s - next_emit) as u32,
                match_len: (l - MIN_MATCH as i32) as u32,
                offset: (s - t) as u32 + 3,
                ..Seq::default()
            };
            if seq.lit_len > 0 {
                blk.literals
                    .extend_from_slice(&src[next_emit as usize..s as usize]);
            }
            s += l;
            blk.sequences.push(seq);
            next_emit = s;
            if s >= s_limit {
                break 'encode;
            }

            // Index the match's start+1 (long) and start+2 (short), its end-2 (long) and end-1 (short).
            let index0 = s - l + 1;
            let index1 = s - 2;
            let mut cv0 = load64(src, index0).unwrap_or(0);
            let mut cv1 = load64(src, index1).unwrap_or(0);
            let mut te0 = TableEntry {
                offset: index0 + cur,
                val: cv0 as u32,
            };
            let mut te1 = TableEntry {
                offset: index1 + cur,
                val: cv1 as u32,
            };
            self.long_table[hash_long(cv0)] = te0;
            self.long_table[hash_long(cv1)] = te1;
            cv0 >>= 8;
            cv1 >>= 8;
            te0.offset += 1;
            te1.offset += 1;
            te0.val = cv0 as u32;
            te1.val = cv1 as u32;
            self.table[hash_short(cv0)] = te0;
            self.table[hash_short(cv1)] = te1;

            cv = load64(src, s).unwrap_or(0);
            let can_repeat = if HIST {
                can_repeat_at_match
            } else {
                blk.sequences.len() > 2
            };
            if !can_repeat {
                continue;
            }
            // Repeats of offset 2.
            loop {
                let o2 = s - offset2;
                if load32(src, o2) != Some(cv as u32) {
                    break;
                }
                // EncodeNoHist hashes cv1 >> 8 here (a slip in Go, kept: the tables must be Go's).
                let next_hash_s = if HIST {
                    hash_short(cv)
                } else {
                    hash_short(cv1 >> 8)
                };
                let next_hash_l = hash_long(cv);
                let l = 4 + match_len(src, s + 4, o2 + 4);
                let entry = TableEntry {
                    offset: s + cur,
                    val: cv as u32,
                };
                self.long_table[next_hash_l] = entry;
                self.table[next_hash_s] = entry;
                seq.match_len = (l as u32).wrapping_sub(MIN_MATCH);
                seq.lit_len = 0;
                seq.offset = 1;
                s += l;
                next_emit = s;
                blk.sequences.push(seq);
                std::mem::swap(&mut offset1, &mut offset2);
                if s >= s_limit {
                    break 'encode;
                }
                cv = load64(src, s).unwrap_or(0);
            }
        }

        if (next_emit as usize) < src.len() {
            blk.literals.extend_from_slice(&src[next_emit as usize..]);
            blk.extra_lits = src.len() - next_emit as usize;
        }
        (offset1, offset2)
    }
}

/// Blocks shorter than this are all literals.
const MIN_NON_LITERAL_BLOCK_SIZE: usize = 16;
