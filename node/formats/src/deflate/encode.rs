//! Recomposing: re-encoding raw bytes with the recorded choices, bit for bit.
//!
//! [`Bits`] writes a deflate stream's pieces — member headers, block headers read from the re-creation format,
//! literals, matches, end-of-block codes, padding and trailers — checking every length, symbol and code before it
//! is used. Both forms of re-creation data use it: [`recompose`] (the whole `headers` and `tokens` of a
//! [`Recreation`]) here, and the streaming form in [`super::stream`]. Nothing here trusts the re-creation data;
//! a member's CRC-32 is compared with the recorded one, so raw bytes other than the decomposed ones are caught.

use super::bits::BitWriter;
use super::format::{Cursor, Short, FORMAT_VERSION, TAG_END, TAG_MEMBER};
use super::huffman::{
    codes, dist_symbol, fixed_litlen_lengths, CL_ORDER, DIST_BASE, DIST_EXTRA, LEN_BASE, LEN_EXTRA,
    LEN_SYMBOL,
};
use super::{DeflateError, Recreation};
use std::io::{self, Read, Write};

/// Raw buffer size: it starts small and doubles on each refill up to the most.
const RAW_BUF_FIRST: usize = 16 << 10;
const RAW_BUF: usize = 256 << 10;

/// Why writing stopped: the re-creation data does not fit (what is wrong), or the output failed.
#[derive(Debug)]
pub(crate) enum Fault {
    Unfit(&'static str),
    Write(io::Error),
    /// A member's raw bytes have another CRC-32 than the recorded one.
    RawChanged {
        recorded: u32,
        actual: u32,
    },
}

impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Fault {
        Fault::Write(e)
    }
}

impl From<Short> for Fault {
    fn from(s: Short) -> Fault {
        Fault::Unfit(match s {
            Short::End => "headers end early",
            Short::Overlong => "a varint in the headers is longer than 64 bits",
            Short::Range => "a value in the headers is out of range",
        })
    }
}

/// One block's codes, ready to emit: bit-reversed code | length << 16 per symbol (0: no code).
struct Codes {
    lit: [u32; 288],
    dist: [u32; 32],
    /// Per length − 3: the length symbol's code and extra bits together | their bit count << 24 (0: no code).
    len: [u32; 256],
}

impl Codes {
    fn new() -> Self {
        Codes {
            lit: [0; 288],
            dist: [0; 32],
            len: [0; 256],
        }
    }

    fn fill_lengths(&mut self) {
        for (i, slot) in self.len.iter_mut().enumerate() {
            let s = LEN_SYMBOL[i] as usize;
            let c = self.lit[257 + s];
            *slot = if c == 0 {
                0
            } else {
                let clen = c >> 16;
                let extra = (i as u32 + 3) - LEN_BASE[s] as u32;
                ((c & 0xffff) | (extra << clen)) | ((clen + LEN_EXTRA[s] as u32) << 24)
            };
        }
    }
}

/// A byte of a record that must be at most `max`.
fn small(c: &mut Cursor, max: u8, what: &'static str) -> Result<u8, Fault> {
    let v = c.u8()?;
    if v > max {
        return Err(Fault::Unfit(what));
    }
    Ok(v)
}

/// Writes a deflate stream's bits. Decisions are checked against the current block's codes; the caller checks
/// them against the raw bytes (a match inside its block and member).
pub(crate) struct Bits<W> {
    pub w: BitWriter<W>,
    fixed: Codes,
    dynamic: Codes,
    use_fixed: bool,
}

/// A Huffman block's quirks: the ordinals, among its length-258 matches, of those written as 284 + 31.
#[derive(Debug, Default)]
pub(crate) struct Quirks {
    list: Vec<u64>,
    next: usize,
    n258: u64,
}

impl Quirks {
    /// Read a Huffman block's tail from `c`: its raw length, then its quirks (which replace these).
    pub fn tail(&mut self, c: &mut Cursor) -> Result<u64, Fault> {
        let raw_len = c.varint()?;
        let n = c.varint()?;
        // Each quirk takes at least one byte of the record.
        if n > (c.left() as u64) {
            return Err(Fault::Unfit("more quirks than the record holds"));
        }
        self.list.clear();
        self.next = 0;
        self.n258 = 0;
        let mut next = 0u64;
        for _ in 0..n {
            let q = next
                .checked_add(c.varint()?)
                .ok_or(Fault::Unfit("a quirk's ordinal overflows"))?;
            self.list.push(q);
            next = q.saturating_add(1);
        }
        Ok(raw_len)
    }

    /// Start a block whose quirks are `list`.
    pub fn set(&mut self, list: Vec<u64>) {
        self.list = list;
        self.next = 0;
        self.n258 = 0;
    }

    /// Whether the next match, of length `len`, is written as 284 + 31.
    #[inline(always)]
    pub fn next(&mut self, len: u32) -> bool {
        if len != 258 {
            return false;
        }
        let quirk = self.list.get(self.next) == Some(&self.n258);
        self.next += quirk as usize;
        self.n258 += 1;
        quirk
    }

    /// At the block's end: every quirk was used.
    pub fn done(&self) -> Result<(), Fault> {
        if self.next != self.list.len() {
            return Err(Fault::Unfit(
                "a quirk names a length-258 match the block does not have",
            ));
        }
        Ok(())
    }
}

impl<W: Write> Bits<W> {
    pub fn new(out: W) -> Self {
        let mut fixed = Codes::new();
        codes(&fixed_litlen_lengths(), &mut fixed.lit).expect("the fixed code is complete");
        codes(&[5; 32], &mut fixed.dist).expect("the fixed code is complete");
        fixed.fill_lengths();
        Bits {
            w: BitWriter::new(out),
            fixed,
            dynamic: Codes::new(),
            use_fixed: true,
        }
    }

    /// Whole bytes (at a byte boundary): a member header, stored bytes, a trailer.
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), Fault> {
        Ok(self.w.bytes(b)?)
    }

    /// The recorded padding bits up to the next byte boundary.
    pub fn pad(&mut self, pad: u8) -> Result<(), Fault> {
        let n = self.w.to_boundary();
        if (pad as u32) >> n != 0 {
            return Err(Fault::Unfit(
                "padding value wider than the bits to the byte boundary",
            ));
        }
        Ok(self.w.put(pad as u64, n)?)
    }

    /// A stored block's header: its kind bits, padding and LEN/NLEN (its bytes follow through [`Bits::bytes`]).
    pub fn stored(&mut self, kind: u8, pad: u8, len: u64) -> Result<(), Fault> {
        self.w.put(kind as u64, 3)?;
        self.pad(pad)?;
        if len > 0xffff {
            return Err(Fault::Unfit("stored block longer than 65535 bytes"));
        }
        let len = len as u16;
        let [a, b] = len.to_le_bytes();
        let [c, d] = (!len).to_le_bytes();
        self.bytes(&[a, b, c, d])
    }

    /// A fixed or dynamic block's header: its kind bits, and a dynamic block's code definitions read from `c`
    /// (the format's `dynamic` record after the kind byte). Its decisions follow.
    pub fn huffman(&mut self, kind: u8, c: &mut Cursor) -> Result<(), Fault> {
        self.w.put(kind as u64, 3)?;
        if kind >> 1 == 1 {
            self.use_fixed = true;
            return Ok(());
        }
        self.use_fixed = false;
        let hlit = small(c, 31, "HLIT above 31")?;
        let hdist = small(c, 31, "HDIST above 31")?;
        let hclen = small(c, 15, "HCLEN above 15")?;
        self.w
            .put(hlit as u64 | (hdist as u64) << 5 | (hclen as u64) << 10, 14)?;
        let (hlit, hdist, hclen) = (hlit as usize + 257, hdist as usize + 1, hclen as usize + 4);
        let mut cl = [0u8; 19];
        for &sym in &CL_ORDER[..hclen] {
            let v = small(c, 7, "code-length code length above 7")?;
            self.w.put(v as u64, 3)?;
            cl[sym] = v;
        }
        let mut cl_codes = [0u32; 19];
        if codes(&cl, &mut cl_codes).is_err() {
            return Err(Fault::Unfit("code-length code is over-subscribed"));
        }
        let total = hlit + hdist;
        let mut lengths = [0u8; 288 + 32];
        let mut i = 0;
        while i < total {
            let sym = small(c, 18, "code-length symbol above 18")?;
            let code = cl_codes[sym as usize];
            if code == 0 {
                return Err(Fault::Unfit("code-length symbol without a code"));
            }
            self.w.put((code & 0xffff) as u64, code >> 16)?;
            let (value, repeat) = match sym {
                0..=15 => (sym, 1),
                16 => {
                    if i == 0 {
                        return Err(Fault::Unfit(
                            "code length repeat (16) with no previous length",
                        ));
                    }
                    let x = small(c, 3, "repeat count of symbol 16 above 3")?;
                    self.w.put(x as u64, 2)?;
                    (lengths[i - 1], 3 + x as usize)
                }
                17 => {
                    let x = small(c, 7, "repeat count of symbol 17 above 7")?;
                    self.w.put(x as u64, 3)?;
                    (0, 3 + x as usize)
                }
                _ => {
                    let x = small(c, 127, "repeat count of symbol 18 above 127")?;
                    self.w.put(x as u64, 7)?;
                    (0, 11 + x as usize)
                }
            };
            if i + repeat > total {
                return Err(Fault::Unfit("code lengths run past HLIT + HDIST"));
            }
            lengths[i..i + repeat].fill(value);
            i += repeat;
        }
        let d = &mut self.dynamic;
        if codes(&lengths[..hlit], &mut d.lit[..hlit]).is_err() {
            return Err(Fault::Unfit("literal/length code is over-subscribed"));
        }
        d.lit[hlit..].fill(0);
        if codes(&lengths[hlit..total], &mut d.dist[..hdist]).is_err() {
            return Err(Fault::Unfit("distance code is over-subscribed"));
        }
        d.dist[hdist..].fill(0);
        d.fill_lengths();
        Ok(())
    }

    fn codes(&self) -> &Codes {
        if self.use_fixed {
            &self.fixed
        } else {
            &self.dynamic
        }
    }

    /// Literals.
    #[inline]
    pub fn literals(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        let codes = if self.use_fixed {
            &self.fixed
        } else {
            &self.dynamic
        };
        let mut missing = false;
        let mut pairs = bytes.chunks_exact(2);
        for p in &mut pairs {
            let (a, b) = (codes.lit[p[0] as usize], codes.lit[p[1] as usize]);
            missing |= a == 0 || b == 0;
            self.w.put_codes(a, b)?;
        }
        if let [b] = pairs.remainder() {
            let c = codes.lit[*b as usize];
            missing |= c == 0;
            self.w.put_codes(c, 0)?;
        }
        if missing {
            return Err(Fault::Unfit("a literal has no code"));
        }
        Ok(())
    }

    /// A match of `len` (3..=258) bytes `dist` (1..=32768) back; a length of 258 `as284` is written as symbol
    /// 284 with extra bits 31, as some producers write it.
    #[inline]
    pub fn matched(&mut self, len: u32, dist: u32, as284: bool) -> Result<(), Fault> {
        let codes = self.codes();
        let mut lc = codes.len[len as usize - 3];
        if as284 {
            let c = codes.lit[284];
            lc = if c == 0 {
                0
            } else {
                (c & 0xffff) | 31 << (c >> 16) | ((c >> 16) + 5) << 24
            };
        }
        if lc == 0 {
            return Err(Fault::Unfit("a match length has no code"));
        }
        let s = dist_symbol(dist);
        let dc = self.codes().dist[s];
        if dc == 0 {
            return Err(Fault::Unfit("a match distance has no code"));
        }
        let dlen = dc >> 16;
        let dbits = (dc & 0xffff) as u64 | ((dist - DIST_BASE[s] as u32) as u64) << dlen;
        self.w.put((lc & 0xff_ffff) as u64, lc >> 24)?;
        self.w.put(dbits, dlen + DIST_EXTRA[s] as u32)?;
        Ok(())
    }

    /// The current block's end-of-block code.
    pub fn end_block(&mut self) -> Result<(), Fault> {
        let eob = self.codes().lit[256];
        if eob == 0 {
            return Err(Fault::Unfit("end-of-block has no code"));
        }
        Ok(self.w.put((eob & 0xffff) as u64, eob >> 16)?)
    }

    /// A member's end: the recorded padding, then its trailer (CRC-32 and ISIZE).
    pub fn member_end(&mut self, pad: u8, crc: u32, len: u64) -> Result<(), Fault> {
        self.pad(pad)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.to_le_bytes());
        trailer[4..].copy_from_slice(&(len as u32).to_le_bytes());
        self.bytes(&trailer)
    }

    /// Write out everything (at a byte boundary); the bytes written in all.
    pub fn finish(&mut self) -> Result<u64, Fault> {
        Ok(self.w.finish()?)
    }
}

/// The raw bytes, read front to back, with each member's CRC-32.
struct RawIn<R> {
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    /// Raw offset of `buf[0]`.
    base: u64,
    crc: crc32fast::Hasher,
    /// `buf[crc_from..pos]` is consumed but not yet in `crc`.
    crc_from: usize,
}

impl<R: Read> RawIn<R> {
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The unconsumed buffered bytes, reading more if there are none; empty at the end.
    fn available(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end && !self.eof {
            self.crc.update(&self.buf[self.crc_from..self.pos]);
            self.base += self.pos as u64;
            self.pos = 0;
            self.end = 0;
            self.crc_from = 0;
            if self.buf.len() < RAW_BUF {
                self.buf.resize(RAW_BUF.min(self.buf.len() * 2), 0);
            }
            self.eof = super::bits::fill_buf(&mut self.reader, &mut self.buf, &mut self.end)?;
        }
        Ok(&self.buf[self.pos..self.end])
    }

    /// Finish a member's CRC-32 and start the next one's.
    fn take_crc(&mut self) -> u32 {
        self.crc.update(&self.buf[self.crc_from..self.pos]);
        self.crc_from = self.pos;
        std::mem::take(&mut self.crc).finalize()
    }
}

/// Where [`recompose`] is, for errors.
struct Place {
    member: u64,
    block: u64,
    raw_offset: u64,
}

impl Place {
    fn unfit(&self, what: &'static str) -> DeflateError {
        DeflateError::Recreation {
            what,
            member: self.member,
            block: self.block,
            raw_offset: self.raw_offset,
        }
    }

    fn fault(&self, f: Fault) -> DeflateError {
        match f {
            Fault::Unfit(what) => self.unfit(what),
            Fault::Write(e) => DeflateError::Write(e),
            Fault::RawChanged { recorded, actual } => DeflateError::RawChanged {
                member: self.member,
                recorded,
                actual,
            },
        }
    }
}

pub(crate) fn recompose<R: Read, W: Write>(
    raw: R,
    re: &Recreation,
    out: W,
) -> Result<u64, DeflateError> {
    let mut raw = RawIn {
        reader: raw,
        buf: vec![0; RAW_BUF_FIRST],
        pos: 0,
        end: 0,
        eof: false,
        base: 0,
        crc: crc32fast::Hasher::new(),
        crc_from: 0,
    };
    let mut bits = Bits::new(out);
    let mut quirks = Quirks::default();
    let mut h = Cursor::new(&re.headers);
    let mut t = Cursor::new(&re.tokens);
    let mut place = Place {
        member: 0,
        block: 0,
        raw_offset: 0,
    };
    // The current token: literals not yet written and the match after them.
    let mut lits = 0u64;
    let mut pending: Option<(u32, u32)> = None;
    let r = (|| -> Result<(), Fault> {
        if h.u8()? != FORMAT_VERSION {
            return Err(Fault::Unfit("unknown re-creation format version"));
        }
        loop {
            match h.u8()? {
                TAG_MEMBER => {}
                TAG_END => break,
                _ => return Err(Fault::Unfit("unknown record in the headers")),
            }
            let n = h.varint()?;
            bits.bytes(h.bytes(n)?)?;
            let member_start = raw.offset();
            raw.take_crc();
            loop {
                place.raw_offset = raw.offset();
                let kind = small(&mut h, 5, "block kind is not BFINAL | BTYPE << 1")?;
                if kind >> 1 == 0 {
                    let pad = h.u8()?;
                    let len = h.varint()?;
                    bits.stored(kind, pad, len)?;
                    let mut left = len as usize;
                    while left > 0 {
                        let avail = raw.available()?;
                        if avail.is_empty() {
                            return Err(Fault::Unfit("raw bytes end inside a stored block"));
                        }
                        let n = left.min(avail.len());
                        bits.bytes(&avail[..n])?;
                        raw.pos += n;
                        left -= n;
                    }
                } else {
                    bits.huffman(kind, &mut h)?;
                    let mut left = quirks.tail(&mut h)?;
                    while left > 0 {
                        if lits > 0 {
                            let mut n = lits.min(left);
                            lits -= n;
                            left -= n;
                            while n > 0 {
                                let avail = raw.available()?;
                                if avail.is_empty() {
                                    return Err(Fault::Unfit("raw bytes end early"));
                                }
                                let k = (n as usize).min(avail.len());
                                bits.literals(&avail[..k])?;
                                raw.pos += k;
                                n -= k as u64;
                            }
                            continue;
                        }
                        let Some((len, dist)) = pending.take() else {
                            if t.at_end() {
                                return Err(Fault::Unfit("tokens end before the raw bytes do"));
                            }
                            match t.item() {
                                Ok((l, m)) => {
                                    lits = l;
                                    pending = m;
                                }
                                Err(Short::Range) => {
                                    return Err(Fault::Unfit("a token is out of range"))
                                }
                                Err(_) => return Err(Fault::Unfit("tokens end inside a token")),
                            }
                            continue;
                        };
                        if len as u64 > left {
                            return Err(Fault::Unfit("a match runs past the end of its block"));
                        }
                        if dist as u64 > raw.offset() - member_start {
                            return Err(Fault::Unfit(
                                "a match reaches before the start of its member",
                            ));
                        }
                        bits.matched(len, dist, quirks.next(len))?;
                        left -= len as u64;
                        let mut skip = len as usize;
                        while skip > 0 {
                            let avail = raw.available()?.len();
                            if avail == 0 {
                                return Err(Fault::Unfit("raw bytes end early"));
                            }
                            let k = skip.min(avail);
                            raw.pos += k;
                            skip -= k;
                        }
                    }
                    quirks.done()?;
                    bits.end_block()?;
                }
                if kind & 1 == 1 {
                    break;
                }
                place.block += 1;
            }
            let pad = h.u8()?;
            let crc = raw.take_crc();
            let recorded = u32::from_le_bytes(h.bytes(4)?.try_into().unwrap());
            if crc != recorded {
                return Err(Fault::RawChanged {
                    recorded,
                    actual: crc,
                });
            }
            bits.member_end(pad, crc, raw.offset() - member_start)?;
            place.member += 1;
            place.block = 0;
        }
        let n = h.varint()?;
        bits.bytes(h.bytes(n)?)?;
        if !h.at_end() {
            return Err(Fault::Unfit("bytes after the end of the headers"));
        }
        if lits > 0 || pending.is_some() || !t.at_end() {
            return Err(Fault::Unfit("tokens left over after the last block"));
        }
        if !raw.available()?.is_empty() {
            return Err(Fault::Unfit("raw bytes go on after the last block"));
        }
        Ok(())
    })();
    match r {
        Ok(()) => bits.finish().map_err(|f| place.fault(f)),
        Err(f) => {
            place.raw_offset = raw.offset();
            Err(place.fault(f))
        }
    }
}
