//! Canonical Huffman codes (RFC 1951 §3.2.2) and the length and distance alphabets (§3.2.5).
//!
//! [`Table`] decodes: one lookup of `primary` bits gives a symbol, or points to a subtable for longer codes.
//! [`codes`] encodes: each symbol's code, bit-reversed for LSB-first output, with its length. Both come from the
//! code lengths alone, as every deflate producer and consumer derives them.

/// The longest code deflate allows.
pub(crate) const MAX_BITS: usize = 15;

/// Base length of length symbols 257..=285.
pub(crate) const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
/// Extra bits of length symbols 257..=285.
pub(crate) const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Base distance of distance symbols 0..=29.
pub(crate) const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
/// Extra bits of distance symbols 0..=29.
pub(crate) const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which a dynamic block lists the code-length code's lengths.
pub(crate) const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Length 3..=258 → index of its length symbol (symbol − 257). Length 258 maps to 285, never to 284 + 31.
pub(crate) static LEN_SYMBOL: [u8; 256] = len_symbols();
/// Distance − 1 below 256 → distance symbol.
pub(crate) static DIST_SYMBOL_LO: [u8; 256] = dist_symbols_lo();
/// (Distance − 1) >> 7 → distance symbol, for distances above 256.
pub(crate) static DIST_SYMBOL_HI: [u8; 256] = dist_symbols_hi();

const fn len_symbols() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut s = 0;
    while s < 28 {
        let mut l = LEN_BASE[s] as usize;
        while l < LEN_BASE[s] as usize + (1 << LEN_EXTRA[s]) && l < 258 {
            t[l - 3] = s as u8;
            l += 1;
        }
        s += 1;
    }
    t[255] = 28;
    t
}

const fn dist_symbols_lo() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut s = 0;
    while s < 16 {
        let mut d = DIST_BASE[s] as usize;
        while d < DIST_BASE[s] as usize + (1 << DIST_EXTRA[s]) {
            t[d - 1] = s as u8;
            d += 1;
        }
        s += 1;
    }
    t
}

const fn dist_symbols_hi() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut s = 16;
    while s < 30 {
        let mut d = DIST_BASE[s] as usize;
        while d < DIST_BASE[s] as usize + (1 << DIST_EXTRA[s]) {
            t[(d - 1) >> 7] = s as u8;
            d += 128;
        }
        s += 1;
    }
    t
}

/// The distance symbol of distance 1..=32768.
#[inline(always)]
pub(crate) fn dist_symbol(dist: u32) -> usize {
    let d = (dist - 1) as usize;
    if d < 256 {
        DIST_SYMBOL_LO[d] as usize
    } else {
        DIST_SYMBOL_HI[(d >> 7) & 0xff] as usize
    }
}

/// Code lengths that cannot form a prefix code: more codes of some lengths than the code space holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverSubscribed;

// A decoding table entry, a u32 (a `KIND_BAD` entry's value is 1 for a reserved symbol, 0 for no symbol):
//   bits 0..4   bits this entry consumes (the code's length; for a subtable pointer, the primary bits)
//   bits 4..8   extra bits that follow (lengths, distances), or a subtable's index bits
//   bits 8..11  kind
//   bits 16..32 value: the literal or symbol, a base length or distance, or a subtable's offset
pub(crate) const KIND_LITERAL: u32 = 0;
pub(crate) const KIND_BASE: u32 = 1;
pub(crate) const KIND_END: u32 = 2;
pub(crate) const KIND_SUB: u32 = 3;
pub(crate) const KIND_BAD: u32 = 4;

#[inline(always)]
pub(crate) const fn entry(kind: u32, extra: u32, value: u32) -> u32 {
    (value << 16) | (kind << 8) | (extra << 4)
}
#[inline(always)]
pub(crate) const fn entry_bits(e: u32) -> u32 {
    e & 0xf
}
#[inline(always)]
pub(crate) const fn entry_extra(e: u32) -> u32 {
    (e >> 4) & 0xf
}
#[inline(always)]
pub(crate) const fn entry_kind(e: u32) -> u32 {
    (e >> 8) & 0x7
}
#[inline(always)]
pub(crate) const fn entry_value(e: u32) -> u32 {
    e >> 16
}

/// The literal/length alphabet's entries (without their bit count). 286 and 287 decode as errors.
pub(crate) fn litlen_entry(sym: usize) -> u32 {
    match sym {
        0..=255 => entry(KIND_LITERAL, 0, sym as u32),
        256 => entry(KIND_END, 0, 0),
        257..=285 => entry(
            KIND_BASE,
            LEN_EXTRA[sym - 257] as u32,
            LEN_BASE[sym - 257] as u32,
        ),
        _ => entry(KIND_BAD, 0, 1),
    }
}

/// The distance alphabet's entries. 30 and 31 decode as errors.
pub(crate) fn dist_entry(sym: usize) -> u32 {
    match sym {
        0..=29 => entry(KIND_BASE, DIST_EXTRA[sym] as u32, DIST_BASE[sym] as u32),
        _ => entry(KIND_BAD, 0, 1),
    }
}

/// The code-length alphabet's entries: the symbol itself.
pub(crate) fn cl_entry(sym: usize) -> u32 {
    entry(KIND_LITERAL, 0, sym as u32)
}

/// The fixed literal/length code lengths (RFC 1951 §3.2.6).
pub(crate) fn fixed_litlen_lengths() -> [u8; 288] {
    let mut l = [8u8; 288];
    l[144..256].fill(9);
    l[256..280].fill(7);
    l
}

/// Canonical codes for `lengths`: each code's first bit first, numbered in symbol order within a length.
fn canonical(lengths: &[u8], mut each: impl FnMut(usize, u32, u32)) -> Result<(), OverSubscribed> {
    let mut count = [0u32; MAX_BITS + 1];
    for &l in lengths {
        count[l as usize] += 1;
    }
    count[0] = 0;
    let mut left: i64 = 1;
    for &c in &count[1..] {
        left = (left << 1) - c as i64;
        if left < 0 {
            return Err(OverSubscribed);
        }
    }
    let mut next = [0u32; MAX_BITS + 1];
    let mut code = 0u32;
    for len in 1..=MAX_BITS {
        code = (code + count[len - 1]) << 1;
        next[len] = code;
    }
    for (sym, &l) in lengths.iter().enumerate() {
        if l > 0 {
            let c = next[l as usize];
            next[l as usize] += 1;
            // Deflate sends a code's first bit first into the LSB-first stream: reverse it.
            let rev = (c as u16).reverse_bits() as u32 >> (16 - l as u32);
            each(sym, rev, l as u32);
        }
    }
    Ok(())
}

/// A decoding table. Entries for codes that no symbol has (an incomplete code) are `KIND_BAD`.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub entries: Vec<u32>,
    pub primary: u32,
    sub_bits: Vec<u8>,
}

impl Table {
    /// Rebuild for `lengths` (all at most [`MAX_BITS`]), looking up `primary` bits at once; `payload` gives
    /// each symbol's entry without its bit count.
    pub fn build(
        &mut self,
        lengths: &[u8],
        primary: u32,
        payload: impl Fn(usize) -> u32,
    ) -> Result<(), OverSubscribed> {
        debug_assert!(lengths.iter().all(|&l| l as usize <= MAX_BITS));
        self.primary = primary;
        let size = 1usize << primary;
        let bad = entry(KIND_BAD, 0, 0);
        self.entries.clear();
        self.entries.resize(size, bad);
        self.sub_bits.clear();
        self.sub_bits.resize(size, 0);
        // First the longest code under each primary prefix, which sizes that prefix's subtable.
        let sub_bits = &mut self.sub_bits;
        canonical(lengths, |_, rev, len| {
            if len > primary {
                let p = (rev as usize) & (size - 1);
                sub_bits[p] = sub_bits[p].max((len - primary) as u8);
            }
        })?;
        for p in 0..size {
            let bits = self.sub_bits[p] as u32;
            if bits > 0 {
                let offset = self.entries.len() as u32;
                self.entries[p] = entry(KIND_SUB, bits, offset) | primary;
                self.entries.resize(self.entries.len() + (1 << bits), bad);
            }
        }
        let entries = &mut self.entries;
        canonical(lengths, |sym, rev, len| {
            let e = payload(sym);
            if len <= primary {
                let mut i = rev as usize;
                while i < size {
                    entries[i] = e | len;
                    i += 1 << len;
                }
            } else {
                let p = (rev as usize) & (size - 1);
                let sub = entries[p];
                let offset = entry_value(sub) as usize;
                let bits = entry_extra(sub);
                let rest = len - primary;
                let mut i = (rev >> primary) as usize;
                while i < 1 << bits {
                    entries[offset + i] = e | rest;
                    i += 1 << rest;
                }
            }
        })
    }
}

/// Encoding codes for `lengths`: `out[sym]` = bit-reversed code | length << 16, or 0 for a symbol without a code.
pub(crate) fn codes(lengths: &[u8], out: &mut [u32]) -> Result<(), OverSubscribed> {
    out.fill(0);
    canonical(lengths, |sym, rev, len| out[sym] = rev | (len << 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabets_cover_every_length_and_distance() {
        for len in 3..=258u32 {
            let s = LEN_SYMBOL[len as usize - 3] as usize;
            let base = LEN_BASE[s] as u32;
            assert!(
                len >= base && len - base < 1 << LEN_EXTRA[s],
                "length {len}"
            );
        }
        assert_eq!(LEN_SYMBOL[255], 28);
        for dist in 1..=32768u32 {
            let s = dist_symbol(dist);
            let base = DIST_BASE[s] as u32;
            assert!(
                dist >= base && dist - base < 1 << DIST_EXTRA[s],
                "distance {dist}"
            );
        }
    }

    #[test]
    fn tables_decode_what_codes_encode() {
        let lengths: Vec<u8> = (0..288).map(|i| [3, 15, 9, 12, 0, 14, 8][i % 7]).collect();
        // Not a valid code as a whole; shrink it to one that is.
        let mut lengths = lengths;
        while canonical(&lengths, |_, _, _| {}).is_err() {
            let i = lengths.iter().rposition(|&l| l > 0 && l < 15).unwrap();
            lengths[i] = 15;
        }
        let mut t = Table::default();
        t.build(&lengths, 9, litlen_entry).unwrap();
        let mut c = vec![0; 288];
        codes(&lengths, &mut c).unwrap();
        for (sym, &code) in c.iter().enumerate() {
            if code == 0 {
                continue;
            }
            let (rev, len) = (code & 0xffff, code >> 16);
            let mut e = t.entries[(rev & 0x1ff) as usize];
            let mut used = entry_bits(e);
            if entry_kind(e) == KIND_SUB {
                let rest = rev >> 9;
                e = t.entries
                    [entry_value(e) as usize + (rest & ((1 << entry_extra(e)) - 1)) as usize];
                used += entry_bits(e);
            }
            assert_eq!(used, len, "symbol {sym}");
            assert_eq!(e & !0xf, litlen_entry(sym), "symbol {sym}");
        }
    }

    #[test]
    fn over_subscribed_is_refused_and_incomplete_is_not() {
        let mut t = Table::default();
        assert_eq!(t.build(&[1, 1, 1], 7, cl_entry), Err(OverSubscribed));
        t.build(&[0, 1, 0], 7, cl_entry).unwrap();
        assert_eq!(entry_kind(t.entries[0]), KIND_LITERAL);
        assert_eq!(entry_kind(t.entries[1]), KIND_BAD);
    }
}
