//! Recomposing: re-encoding raw bytes with the recorded choices, bit for bit.
//!
//! Nothing here trusts the re-creation data: every length, symbol and code is checked before it is used, and a
//! member's CRC-32 is compared with the recorded one, so raw bytes other than the decomposed ones are caught.

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

/// The raw bytes, read front to back, with each member's CRC-32.
struct Raw<R> {
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

impl<R: Read> Raw<R> {
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

struct Recomposer<'a, R, W> {
    raw: Raw<R>,
    w: BitWriter<W>,
    h: Cursor<'a>,
    t: Cursor<'a>,
    /// Literals of the current token not yet emitted.
    lits: u64,
    /// The match that follows them.
    pending: Option<(u32, u32)>,
    fixed: Codes,
    dynamic: Codes,
    member: u64,
    block: u64,
    member_start: u64,
}

pub(crate) fn recompose<R: Read, W: Write>(
    raw: R,
    re: &Recreation,
    out: W,
) -> Result<u64, DeflateError> {
    let mut fixed = Codes::new();
    codes(&fixed_litlen_lengths(), &mut fixed.lit).expect("the fixed code is complete");
    codes(&[5; 32], &mut fixed.dist).expect("the fixed code is complete");
    fixed.fill_lengths();
    let mut r = Recomposer {
        raw: Raw {
            reader: raw,
            buf: vec![0; RAW_BUF_FIRST],
            pos: 0,
            end: 0,
            eof: false,
            base: 0,
            crc: crc32fast::Hasher::new(),
            crc_from: 0,
        },
        w: BitWriter::new(out),
        h: Cursor::new(&re.headers),
        t: Cursor::new(&re.tokens),
        lits: 0,
        pending: None,
        fixed,
        dynamic: Codes::new(),
        member: 0,
        block: 0,
        member_start: 0,
    };
    r.run()
}

impl<R: Read, W: Write> Recomposer<'_, R, W> {
    fn unfit(&self, what: &'static str) -> DeflateError {
        DeflateError::Recreation {
            what,
            member: self.member,
            block: self.block,
            raw_offset: self.raw.offset(),
        }
    }

    fn short(&self, s: Short) -> DeflateError {
        self.unfit(match s {
            Short::End => "headers end early",
            Short::Overlong => "a varint in the headers is longer than 64 bits",
            Short::Range => "a value in the headers is out of range",
        })
    }

    fn hu8(&mut self) -> Result<u8, DeflateError> {
        self.h.u8().map_err(|s| self.short(s))
    }

    fn hvarint(&mut self) -> Result<u64, DeflateError> {
        self.h.varint().map_err(|s| self.short(s))
    }

    /// A byte of the headers that must be at most `max`.
    fn hsmall(&mut self, max: u8, what: &'static str) -> Result<u8, DeflateError> {
        let v = self.hu8()?;
        if v > max {
            return Err(self.unfit(what));
        }
        Ok(v)
    }

    fn put(&mut self, v: u64, n: u32) -> Result<(), DeflateError> {
        self.w.put(v, n).map_err(DeflateError::Write)
    }

    fn run(&mut self) -> Result<u64, DeflateError> {
        if self.hu8()? != FORMAT_VERSION {
            return Err(self.unfit("unknown re-creation format version"));
        }
        loop {
            match self.hu8()? {
                TAG_MEMBER => self.member_()?,
                TAG_END => break,
                _ => return Err(self.unfit("unknown record in the headers")),
            }
            self.member += 1;
            self.block = 0;
        }
        let n = self.hvarint()?;
        let trailing = self.h.bytes(n).map_err(|s| self.short(s))?;
        self.w.bytes(trailing).map_err(DeflateError::Write)?;
        if !self.h.at_end() {
            return Err(self.unfit("bytes after the end of the headers"));
        }
        if self.lits > 0 || self.pending.is_some() || !self.t.at_end() {
            return Err(self.unfit("tokens left over after the last block"));
        }
        if !self.raw.available().map_err(DeflateError::Read)?.is_empty() {
            return Err(self.unfit("raw bytes go on after the last block"));
        }
        self.w.finish().map_err(DeflateError::Write)
    }

    fn member_(&mut self) -> Result<(), DeflateError> {
        let n = self.hvarint()?;
        let header = self.h.bytes(n).map_err(|s| self.short(s))?;
        self.w.bytes(header).map_err(DeflateError::Write)?;
        self.member_start = self.raw.offset();
        self.raw.take_crc();
        loop {
            let kind = self.hsmall(5, "block kind is not BFINAL | BTYPE << 1")?;
            self.put(kind as u64, 3)?;
            match kind >> 1 {
                0 => self.stored()?,
                1 => self.huffman(true)?,
                _ => {
                    self.dynamic_header()?;
                    self.huffman(false)?;
                }
            }
            if kind & 1 == 1 {
                break;
            }
            self.block += 1;
        }
        self.pad()?;
        let crc = self.raw.take_crc();
        let recorded = self.h.bytes(4).map_err(|s| self.short(s))?;
        let recorded = u32::from_le_bytes(recorded.try_into().unwrap());
        if crc != recorded {
            return Err(DeflateError::RawChanged {
                member: self.member,
                recorded,
                actual: crc,
            });
        }
        let len = (self.raw.offset() - self.member_start) as u32;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.to_le_bytes());
        trailer[4..].copy_from_slice(&len.to_le_bytes());
        self.w.bytes(&trailer).map_err(DeflateError::Write)
    }

    /// The recorded bits up to the next byte boundary.
    fn pad(&mut self) -> Result<(), DeflateError> {
        let pad = self.hu8()?;
        let n = self.w.to_boundary();
        if (pad as u32) >> n != 0 {
            return Err(self.unfit("padding value wider than the bits to the byte boundary"));
        }
        self.put(pad as u64, n)
    }

    fn stored(&mut self) -> Result<(), DeflateError> {
        self.pad()?;
        let len = self.hvarint()?;
        if len > 0xffff {
            return Err(self.unfit("stored block longer than 65535 bytes"));
        }
        let len = len as u16;
        let [a, b] = len.to_le_bytes();
        let [c, d] = (!len).to_le_bytes();
        self.w.bytes(&[a, b, c, d]).map_err(DeflateError::Write)?;
        let mut left = len as usize;
        while left > 0 {
            let avail = self.raw.available().map_err(DeflateError::Read)?;
            if avail.is_empty() {
                return Err(self.unfit("raw bytes end inside a stored block"));
            }
            let n = left.min(avail.len());
            self.w.bytes(&avail[..n]).map_err(DeflateError::Write)?;
            self.raw.pos += n;
            left -= n;
        }
        Ok(())
    }

    fn dynamic_header(&mut self) -> Result<(), DeflateError> {
        let hlit = self.hsmall(31, "HLIT above 31")?;
        let hdist = self.hsmall(31, "HDIST above 31")?;
        let hclen = self.hsmall(15, "HCLEN above 15")?;
        self.put(hlit as u64 | (hdist as u64) << 5 | (hclen as u64) << 10, 14)?;
        let (hlit, hdist, hclen) = (hlit as usize + 257, hdist as usize + 1, hclen as usize + 4);
        let mut cl = [0u8; 19];
        for &sym in &CL_ORDER[..hclen] {
            let v = self.hsmall(7, "code-length code length above 7")?;
            self.put(v as u64, 3)?;
            cl[sym] = v;
        }
        let mut cl_codes = [0u32; 19];
        if codes(&cl, &mut cl_codes).is_err() {
            return Err(self.unfit("code-length code is over-subscribed"));
        }
        let total = hlit + hdist;
        let mut lengths = [0u8; 288 + 32];
        let mut i = 0;
        while i < total {
            let sym = self.hsmall(18, "code-length symbol above 18")?;
            let c = cl_codes[sym as usize];
            if c == 0 {
                return Err(self.unfit("code-length symbol without a code"));
            }
            self.put((c & 0xffff) as u64, c >> 16)?;
            let (value, repeat) = match sym {
                0..=15 => (sym, 1),
                16 => {
                    if i == 0 {
                        return Err(self.unfit("code length repeat (16) with no previous length"));
                    }
                    let x = self.hsmall(3, "repeat count of symbol 16 above 3")?;
                    self.put(x as u64, 2)?;
                    (lengths[i - 1], 3 + x as usize)
                }
                17 => {
                    let x = self.hsmall(7, "repeat count of symbol 17 above 7")?;
                    self.put(x as u64, 3)?;
                    (0, 3 + x as usize)
                }
                _ => {
                    let x = self.hsmall(127, "repeat count of symbol 18 above 127")?;
                    self.put(x as u64, 7)?;
                    (0, 11 + x as usize)
                }
            };
            if i + repeat > total {
                return Err(self.unfit("code lengths run past HLIT + HDIST"));
            }
            lengths[i..i + repeat].fill(value);
            i += repeat;
        }
        if codes(&lengths[..hlit], &mut self.dynamic.lit[..hlit]).is_err() {
            return Err(self.unfit("literal/length code is over-subscribed"));
        }
        self.dynamic.lit[hlit..].fill(0);
        if codes(&lengths[hlit..total], &mut self.dynamic.dist[..hdist]).is_err() {
            return Err(self.unfit("distance code is over-subscribed"));
        }
        self.dynamic.dist[hdist..].fill(0);
        self.dynamic.fill_lengths();
        Ok(())
    }

    /// A fixed or dynamic block: its raw length and quirks from the headers, its symbols from the tokens.
    fn huffman(&mut self, fixed: bool) -> Result<(), DeflateError> {
        let mut left = self.hvarint()?;
        let mut quirks = self.hvarint()?;
        let mut next_quirk = None;
        if quirks > 0 {
            next_quirk = Some(self.hvarint()?);
            quirks -= 1;
        }
        let mut n258 = 0u64;
        let codes = if fixed { &self.fixed } else { &self.dynamic };
        while left > 0 {
            if self.lits > 0 {
                let mut n = self.lits.min(left);
                self.lits -= n;
                left -= n;
                while n > 0 {
                    let avail = self.raw.available().map_err(DeflateError::Read)?;
                    if avail.is_empty() {
                        return Err(self.unfit("raw bytes end early"));
                    }
                    let k = (n as usize).min(avail.len());
                    let mut missing = false;
                    let mut pairs = avail[..k].chunks_exact(2);
                    for p in &mut pairs {
                        let (a, b) = (codes.lit[p[0] as usize], codes.lit[p[1] as usize]);
                        missing |= a == 0 || b == 0;
                        self.w.put_codes(a, b).map_err(DeflateError::Write)?;
                    }
                    if let [b] = pairs.remainder() {
                        let c = codes.lit[*b as usize];
                        missing |= c == 0;
                        self.w.put_codes(c, 0).map_err(DeflateError::Write)?;
                    }
                    self.raw.pos += k;
                    if missing {
                        return Err(self.unfit("a literal has no code"));
                    }
                    n -= k as u64;
                }
                continue;
            }
            let Some((len, dist)) = self.pending.take() else {
                if self.t.at_end() {
                    return Err(self.unfit("tokens end before the raw bytes do"));
                }
                match self.t.item() {
                    Ok((lits, m)) => {
                        self.lits = lits;
                        self.pending = m;
                    }
                    Err(Short::Range) => return Err(self.unfit("a token is out of range")),
                    Err(_) => return Err(self.unfit("tokens end inside a token")),
                }
                continue;
            };
            if len as u64 > left {
                return Err(self.unfit("a match runs past the end of its block"));
            }
            if dist as u64 > self.raw.offset() - self.member_start {
                return Err(self.unfit("a match reaches before the start of its member"));
            }
            let mut lc = codes.len[len as usize - 3];
            if len == 258 {
                if next_quirk == Some(n258) {
                    // 258 as symbol 284 with extra bits 31, as the producer wrote it.
                    let c = codes.lit[284];
                    lc = if c == 0 {
                        0
                    } else {
                        (c & 0xffff) | 31 << (c >> 16) | ((c >> 16) + 5) << 24
                    };
                    next_quirk = None;
                    if quirks > 0 {
                        let gap = match self.h.varint() {
                            Ok(v) => v,
                            Err(s) => return Err(self.short(s)),
                        };
                        next_quirk = Some(n258.saturating_add(1).saturating_add(gap));
                        quirks -= 1;
                    }
                }
                n258 += 1;
            }
            if lc == 0 {
                return Err(self.unfit("a match length has no code"));
            }
            let s = dist_symbol(dist);
            let dc = codes.dist[s];
            if dc == 0 {
                return Err(self.unfit("a match distance has no code"));
            }
            let dlen = dc >> 16;
            let dbits = (dc & 0xffff) as u64 | ((dist - DIST_BASE[s] as u32) as u64) << dlen;
            self.w
                .put((lc & 0xff_ffff) as u64, lc >> 24)
                .map_err(DeflateError::Write)?;
            self.w
                .put(dbits, dlen + DIST_EXTRA[s] as u32)
                .map_err(DeflateError::Write)?;
            left -= len as u64;
            let mut skip = len as usize;
            while skip > 0 {
                let avail = self.raw.available().map_err(DeflateError::Read)?.len();
                if avail == 0 {
                    return Err(self.unfit("raw bytes end early"));
                }
                let k = skip.min(avail);
                self.raw.pos += k;
                skip -= k;
            }
        }
        if next_quirk.is_some() {
            return Err(self.unfit("a quirk names a length-258 match the block does not have"));
        }
        let eob = codes.lit[256];
        if eob == 0 {
            return Err(self.unfit("end-of-block has no code"));
        }
        self.put((eob & 0xffff) as u64, eob >> 16)
    }
}
