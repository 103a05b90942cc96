//! The match finder of klauspost/compress 1.15.12's `SpeedBestCompression` zstd encoder (`enc_best.go`'s
//! `bestFastEncoder`, with `enc_base.go`'s history shared with [`dfast`](super::dfast)), ported so that its
//! sequences and literals are Go's, byte for byte: zstd:chunked layers (skopeo, podman: zstd level 11) are
//! written with it, and are re-created from their content only if every block is.
//!
//! Two hash tables (8-byte hashes in a long one, 4-byte in a short one) each remember two positions per
//! bucket. At each position every candidate (the four table entries, then the three repeat offsets one and
//! three bytes on) is scored by an estimate of its cost in bits — its offset and match-length codes priced from
//! the predefined FSE tables, less the literal bits it saves at the block's Shannon entropy — and the cheapest
//! kept; one shorter than 100 bytes is challenged by the candidates one and two bytes on, and by one found
//! from where it ends. Go's `int32` positions are kept as `i32` and computed as Go computes them; where Go would
//! index out of its slice (it cannot on what it produced itself), a read outside the data counts as "no match"
//! instead of a panic.

use super::block::{ml_code, of_code, BlockEnc, Seq};
use super::dfast::History;
use super::fse::{predefined, TableKind};

/// Bits of the long (8-byte hash) table.
const LONG_TABLE_BITS: u32 = 22;
/// Bits of the short (4-byte hash) table.
const SHORT_TABLE_BITS: u32 = 18;
/// The longest match a sequence may describe.
const MAX_MATCH_LENGTH: i32 = 131_074;
/// zstd's shortest match.
const MIN_MATCH: i32 = 3;
/// Blocks shorter than this are all literals.
const MIN_NON_LITERAL_BLOCK_SIZE: usize = 16;
/// The score of "no match": worse than any real one.
const HIGH_SCORE: i32 = 25_000;
/// A match at least this long is taken without looking for better ones.
const GOOD_ENOUGH: i32 = 100;

const PRIME_4_BYTES: u32 = 2_654_435_761;
const PRIME_8_BYTES: u64 = 0xcf1b_bcdc_b7a5_6463;

/// Go's `hashLen(u, LONG_TABLE_BITS, 8)`.
fn hash_long(u: u64) -> usize {
    (u.wrapping_mul(PRIME_8_BYTES) >> (64 - LONG_TABLE_BITS)) as usize
}

/// Go's `hashLen(u, SHORT_TABLE_BITS, 4)`.
fn hash_short(u: u64) -> usize {
    ((u as u32).wrapping_mul(PRIME_4_BYTES) >> (32 - SHORT_TABLE_BITS)) as usize
}

/// Eight bytes at `i`, little-endian; 0 past the end (Go reads there only past `sLimit`, where it stops).
fn load64(b: &[u8], i: i32) -> u64 {
    usize::try_from(i)
        .ok()
        .and_then(|i| b.get(i..i.checked_add(8)?))
        .map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
}

/// Four bytes at `i`, little-endian; `None` outside `b`.
fn load32(b: &[u8], i: i32) -> Option<u32> {
    let i = usize::try_from(i).ok()?;
    Some(u32::from_le_bytes(
        b.get(i..i.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// How many bytes `src[s..]` and `src[t..]` have in common (`t < s`), up to the end of `src`; 0 when either is
/// outside it.
fn match_len(src: &[u8], s: i32, t: i32) -> i32 {
    let (Ok(s), Ok(t)) = (usize::try_from(s), usize::try_from(t)) else {
        return 0;
    };
    let a = src.get(s..).unwrap_or_default();
    let Some(b) = src.get(t..t + a.len()) else {
        return 0;
    };
    let mut n = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let diff = u64::from_le_bytes(x.try_into().unwrap_or_default())
            ^ u64::from_le_bytes(y.try_into().unwrap_or_default());
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

/// Go's `compress.ShannonEntropyBits`: the bits an ideal entropy coder needs for `b`, each symbol's share
/// rounded up, computed in `f64` exactly as Go does (its `math.Log2`, not the platform's).
fn shannon_entropy_bits(b: &[u8]) -> i64 {
    if b.is_empty() {
        return 0;
    }
    let mut hist = [0usize; 256];
    for &c in b {
        hist[usize::from(c)] += 1;
    }
    let mut shannon = 0.0f64;
    let inv_total = 1.0 / b.len() as f64;
    for &v in &hist {
        if v > 0 {
            let n = v as f64;
            shannon += (-go_log2(n * inv_total) * n).ceil();
        }
    }
    shannon.ceil() as i64
}

/// Go's `math.Log2` for a positive normal `x` (here a probability: at least 2^-17).
fn go_log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    // Exact powers of two give exact answers.
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    // Go's constant `1/Ln2`, rounded once: log2(e).
    go_log(frac) * std::f64::consts::LOG2_E + f64::from(exp)
}

/// Go's `math.Frexp` for a positive normal `x`: `x = frac * 2^exp` with `frac` in [0.5, 1).
fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1022;
    (f64::from_bits(bits & !(0x7ff << 52) | (1022 << 52)), exp)
}

/// Go's `math.Log` (FreeBSD's `e_log.c`, which Go's pure and amd64 assembly versions both compute, operation
/// for operation, with these constants given by their bits) for a positive normal `x`.
fn go_log(x: f64) -> f64 {
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    const L1: f64 = f64::from_bits(0x3fe5_5555_5555_5593);
    const L2: f64 = f64::from_bits(0x3fd9_9999_9997_fa04);
    const L3: f64 = f64::from_bits(0x3fd2_4924_9422_9359);
    const L4: f64 = f64::from_bits(0x3fcc_71c5_1d8e_78af);
    const L5: f64 = f64::from_bits(0x3fc7_4664_96cb_03de);
    const L6: f64 = f64::from_bits(0x3fc3_9a09_d078_c69f);
    const L7: f64 = f64::from_bits(0x3fc2_f112_df3e_5244);
    let (mut f1, mut ki) = frexp(x);
    if f1 < std::f64::consts::SQRT_2 / 2.0 {
        f1 *= 2.0;
        ki -= 1;
    }
    let f = f1 - 1.0;
    let k = f64::from(ki);
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let t1 = s2 * (L1 + s4 * (L3 + s4 * (L5 + s4 * L7)));
    let t2 = s4 * (L2 + s4 * (L4 + s4 * L6));
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// One bucket of a hash table: the latest stream position with that hash and the one before it.
#[derive(Clone, Copy, Default)]
struct PrevEntry {
    offset: i32,
    prev: i32,
}

/// A candidate match (Go's `match`): at `s`, `length` bytes copied from `offset`, as repeat offset `rep`
/// (1..=3) or not (-1), and `est`, its estimated cost in bits (`HIGH_SCORE` when there is none).
#[derive(Clone, Copy)]
struct Match {
    offset: i32,
    s: i32,
    length: i32,
    rep: i32,
    est: i32,
}

impl Match {
    /// No match at `s`.
    fn none(s: i32) -> Match {
        Match {
            offset: 0,
            s,
            length: 0,
            rep: 0,
            est: HIGH_SCORE,
        }
    }

    /// Go's `estBits`: the match's codes priced from the predefined tables, less the literal bits it saves
    /// (`bits_per_byte` is scaled by 1024); a match that saves nothing is dropped (length 0, `HIGH_SCORE`).
    fn est_bits(&mut self, bits_per_byte: i32) {
        let mlc = ml_code((self.length - MIN_MATCH) as u32);
        let ofc = if self.rep < 0 {
            of_code((self.s.wrapping_sub(self.offset) as u32).wrapping_add(3))
        } else {
            of_code(self.rep as u32)
        };
        let of_tt = predefined(TableKind::Offsets).transform(ofc);
        let ml_tt = predefined(TableKind::MatchLengths).transform(mlc);
        self.est = i32::from(of_tt.out_bits) + i32::from(ml_tt.out_bits);
        self.est += ((of_tt.delta_nb_bits >> 16) + (ml_tt.delta_nb_bits >> 16)) as i32;
        self.est -= self.length.wrapping_mul(bits_per_byte) >> 10;
        if self.est > 0 {
            self.length = 0;
            self.est = HIGH_SCORE;
        }
    }
}

/// Go's `bestOf`: the cheaper of two candidates, each charged the literals between them; `b` on a tie.
fn best_of(a: Match, b: Match, bits_per_byte: i32) -> Match {
    let a_cost = a.est + ((a.s - b.s).wrapping_mul(bits_per_byte) >> 10);
    let b_cost = b.est + ((b.s - a.s).wrapping_mul(bits_per_byte) >> 10);
    if a_cost < b_cost {
        a
    } else {
        b
    }
}

/// Go's `bestFastEncoder` (with its `fastBase`): the tables and the history of one stream.
pub struct BestFast {
    base: History,
    table: Vec<PrevEntry>,
    long_table: Vec<PrevEntry>,
}

impl BestFast {
    /// A fresh encoder with a window of `window` bytes (`SpeedBestCompression`'s is 32 MiB).
    pub fn new(window: i32) -> BestFast {
        BestFast {
            base: History::new(window),
            table: vec![PrevEntry::default(); 1 << SHORT_TABLE_BITS],
            long_table: vec![PrevEntry::default(); 1 << LONG_TABLE_BITS],
        }
    }

    /// Go's `Reset` (without a dictionary): a new frame, everything before it out of reach.
    pub fn reset(&mut self) {
        self.base.reset();
    }

    /// Go's `EncodeNoHist`: `src`, a whole frame in one block, into `blk`. Unlike the other levels this is
    /// `Encode` after making room for `src` (which matters only to when the history moves).
    pub fn encode_no_hist(&mut self, blk: &mut BlockEnc, src: &[u8]) {
        self.base.ensure_hist(src.len());
        self.encode(blk, src);
    }

    /// Go's `Encode`: the sequences and literals of `src`, the next block of the stream, into `blk`.
    pub fn encode(&mut self, blk: &mut BlockEnc, src: &[u8]) {
        if let Some(moved) = self.base.rebase() {
            for e in self.table.iter_mut().chain(self.long_table.iter_mut()) {
                let offset = moved(e.offset);
                // An entry out of reach loses its older position too (a moved one is never 0).
                e.prev = if offset == 0 { 0 } else { moved(e.prev) };
                e.offset = offset;
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
        // The literal cost in bits per byte, scaled by 1024; Huffman never goes below 1 bit a byte.
        let bits_per_byte = ((shannon_entropy_bits(src) * 1024) / src.len() as i64) as i32;
        let bits_per_byte = bits_per_byte.max(1024);

        let hist = std::mem::take(&mut self.base.hist);
        self.find(blk, &hist, s, bits_per_byte);
        self.base.hist = hist;
    }

    /// The search loop, from `s` to the end of `src` (the history, the block at its end).
    fn find(&mut self, blk: &mut BlockEnc, src: &[u8], mut s: i32, bits_per_byte: i32) {
        const INPUT_MARGIN: i32 = 8 + 4;
        const K_SEARCH_STRENGTH: i32 = 10;
        let s_limit = src.len() as i32 - INPUT_MARGIN;
        let max_off = self.base.max_match_off;
        let cur = self.base.cur;
        let mut next_emit = s;
        let mut cv = load64(src, s);
        let mut offset1 = blk.recent_offsets[0] as i32;
        let mut offset2 = blk.recent_offsets[1] as i32;
        let mut offset3 = blk.recent_offsets[2] as i32;

        let best_of = |a, b| best_of(a, b, bits_per_byte);
        // Go's `matchAt`: the match at `s` from `offset`, if its first four bytes (`first`) are there and it is
        // in the window.
        let match_at = |offset: i32, s: i32, first: Option<u32>, rep: i32| {
            if s.wrapping_sub(offset) >= max_off || first.is_none() || load32(src, offset) != first
            {
                return Match::none(s);
            }
            let length = 4 + match_len(src, s + 4, offset.wrapping_add(4));
            let mut m = Match {
                offset,
                s,
                length,
                rep,
                est: 0,
            };
            m.est_bits(bits_per_byte);
            m
        };

        'encode: loop {
            // Repeat offsets are tried once the block has three sequences.
            let can_repeat = blk.sequences.len() > 2;
            let next_hash_l = hash_long(cv);
            let next_hash_s = hash_short(cv);
            let candidate_l = self.long_table[next_hash_l];
            let candidate_s = self.table[next_hash_s];
            let first = Some(cv as u32);

            let mut best = best_of(
                match_at(candidate_l.offset.wrapping_sub(cur), s, first, -1),
                match_at(candidate_l.prev.wrapping_sub(cur), s, first, -1),
            );
            best = best_of(
                best,
                match_at(candidate_s.offset.wrapping_sub(cur), s, first, -1),
            );
            best = best_of(
                best,
                match_at(candidate_s.prev.wrapping_sub(cur), s, first, -1),
            );

            if can_repeat && best.length < GOOD_ENOUGH {
                // The repeat offsets one byte on, and (when something matched) three bytes on.
                let mut cv32 = Some((cv >> 8) as u32);
                let mut spp = s + 1;
                best = best_of(best, match_at(spp.wrapping_sub(offset1), spp, cv32, 1));
                best = best_of(best, match_at(spp.wrapping_sub(offset2), spp, cv32, 2));
                best = best_of(best, match_at(spp.wrapping_sub(offset3), spp, cv32, 3));
                if best.length > 0 {
                    cv32 = Some((cv >> 24) as u32);
                    spp += 2;
                    best = best_of(best, match_at(spp.wrapping_sub(offset1), spp, cv32, 1));
                    best = best_of(best, match_at(spp.wrapping_sub(offset2), spp, cv32, 2));
                    best = best_of(best, match_at(spp.wrapping_sub(offset3), spp, cv32, 3));
                }
            }
            self.long_table[next_hash_l] = PrevEntry {
                offset: s + cur,
                prev: candidate_l.offset,
            };
            self.table[next_hash_s] = PrevEntry {
                offset: s + cur,
                prev: candidate_s.offset,
            };

            if best.length < GOOD_ENOUGH {
                if best.length < 4 {
                    // Nothing: skip ahead, faster the longer nothing has matched.
                    s += 1 + ((s - next_emit) >> (K_SEARCH_STRENGTH - 1));
                    if s >= s_limit {
                        break 'encode;
                    }
                    cv = load64(src, s);
                    continue;
                }

                // Lazy matching: the short table at s+1, the long one at s+1 and s+2.
                s += 1;
                let candidate_s = self.table[hash_short(cv >> 8)];
                cv = load64(src, s);
                let cv2 = load64(src, s + 1);
                let candidate_l = self.long_table[hash_long(cv)];
                let candidate_l2 = self.long_table[hash_long(cv2)];
                let first = Some(cv as u32);
                let first2 = Some(cv2 as u32);
                best = best_of(
                    best,
                    match_at(candidate_s.offset.wrapping_sub(cur), s, first, -1),
                );
                best = best_of(
                    best,
                    match_at(candidate_l.offset.wrapping_sub(cur), s, first, -1),
                );
                best = best_of(
                    best,
                    match_at(candidate_l.prev.wrapping_sub(cur), s, first, -1),
                );
                best = best_of(
                    best,
                    match_at(candidate_l2.offset.wrapping_sub(cur), s + 1, first2, -1),
                );
                best = best_of(
                    best,
                    match_at(candidate_l2.prev.wrapping_sub(cur), s + 1, first2, -1),
                );

                // A longer match may be found through a position that shares where the best one ends.
                let s_at = best.s + best.length;
                if s_at < s_limit {
                    let candidate_end = self.long_table[hash_long(load64(src, s_at))];
                    let pos = candidate_end
                        .offset
                        .wrapping_sub(cur)
                        .wrapping_sub(best.length);
                    if pos >= 0 {
                        let first = load32(src, best.s);
                        let mut best_end = best_of(best, match_at(pos, best.s, first, -1));
                        let pos = candidate_end
                            .prev
                            .wrapping_sub(cur)
                            .wrapping_sub(best.length);
                        if pos >= 0 {
                            best_end = best_of(best_end, match_at(pos, best.s, first, -1));
                        }
                        best = best_end;
                    }
                }
            }

            if best.rep > 0 {
                // A repeat offset: extended backwards (keeping at least one literal), then its positions indexed.
                s = best.s;
                let mut seq = Seq {
                    match_len: (best.length - MIN_MATCH) as u32,
                    ..Seq::default()
                };
                let mut start = best.s;
                let start_limit = next_emit + 1;
                let t_min = (s - max_off).max(0);
                let mut rep_index = best.offset;
                while rep_index > t_min
                    && start > start_limit
                    && src.get(rep_index as usize - 1) == src.get(start as usize - 1)
                    && seq.match_len < (MAX_MATCH_LENGTH - MIN_MATCH - 1) as u32
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
                seq.offset = best.rep as u32;
                blk.sequences.push(seq);

                let index0 = s;
                s = best.s + best.length;
                next_emit = s;
                if s >= s_limit {
                    break 'encode;
                }
                self.index(src, index0, s - 1, cur);
                match best.rep {
                    2 => std::mem::swap(&mut offset1, &mut offset2),
                    3 => (offset1, offset2, offset3) = (offset3, offset1, offset2),
                    _ => {}
                }
                cv = load64(src, s);
                continue;
            }

            // A new offset: extended backwards as far as it goes.
            s = best.s;
            let mut t = best.offset;
            (offset1, offset2, offset3) = (s - t, offset1, offset2);
            let mut l = best.length;
            let t_min = (s - max_off).max(0);
            while t > t_min
                && s > next_emit
                && src.get(t as usize - 1) == src.get(s as usize - 1)
                && l < MAX_MATCH_LENGTH
            {
                s -= 1;
                t -= 1;
                l += 1;
            }
            let mut seq = Seq {
                lit_len: (s - next_emit) as u32,
                match_len: (l - MIN_MATCH) as u32,
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
            self.index(src, s - l + 1, s - 1, cur);

            cv = load64(src, s);
            if !can_repeat {
                continue;
            }
            // Repeats of offset 2 straight after the match.
            loop {
                let o2 = s - offset2;
                if load32(src, o2) != Some(cv as u32) {
                    break;
                }
                let next_hash_s = hash_short(cv);
                let next_hash_l = hash_long(cv);
                let l = 4 + match_len(src, s + 4, o2 + 4);
                self.long_table[next_hash_l] = PrevEntry {
                    offset: s + cur,
                    prev: self.long_table[next_hash_l].offset,
                };
                self.table[next_hash_s] = PrevEntry {
                    offset: s + cur,
                    prev: self.table[next_hash_s].offset,
                };
                seq.match_len = (l - MIN_MATCH) as u32;
                seq.lit_len = 0;
                // With no literals, repeat 1 means offset 2.
                seq.offset = 1;
                s += l;
                next_emit = s;
                blk.sequences.push(seq);
                std::mem::swap(&mut offset1, &mut offset2);
                if s >= s_limit {
                    break 'encode;
                }
                cv = load64(src, s);
            }
        }

        if (next_emit as usize) < src.len() {
            blk.literals.extend_from_slice(&src[next_emit as usize..]);
            blk.extra_lits = src.len() - next_emit as usize;
        }
        blk.recent_offsets = [offset1 as u32, offset2 as u32, offset3 as u32];
    }

    /// Every position from `from` up to (not including) `to` into both tables, pushing back what was there.
    fn index(&mut self, src: &[u8], from: i32, to: i32, cur: i32) {
        for i in from..to {
            let cv = load64(src, i);
            let h0 = hash_long(cv);
            let h1 = hash_short(cv);
            let offset = i + cur;
            self.long_table[h0] = PrevEntry {
                offset,
                prev: self.long_table[h0].offset,
            };
            self.table[h1] = PrevEntry {
                offset,
                prev: self.table[h1].offset,
            };
        }
    }
}
