//! Decomposing: inflating gzip members while recording every choice their producer made.
//!
//! The inflater reports what it reads to a [`Sink`] as it goes: member headers, each block's header and the
//! producer's decisions in it ([`Tok`]s), block and member ends, and the raw bytes, so nothing grows with the
//! stream. [`V1`] collects the events into a whole [`Recreation`] (headers and tokens as byte strings).

use super::bits::BitReader;
use super::format::{put_final_run, put_match, put_varint, FORMAT_VERSION, TAG_END, TAG_MEMBER};
use super::huffman::{
    cl_entry, dist_entry, entry_bits, entry_extra, entry_kind, entry_value, fixed_litlen_lengths,
    litlen_entry, Table, CL_ORDER, KIND_BASE, KIND_END, KIND_LITERAL, KIND_SUB,
};
use super::{DeflateError, Recreation, MAX_FIELD, MAX_TRAILING};
use std::io::{self, Read, Write};

/// History a match may reach back into.
const WINDOW: usize = 32 << 10;
/// Output buffer: the window plus up to 1 MiB of new output between writes. It starts smaller and doubles each
/// time it fills until it reaches this.
const OUT_CAP: usize = WINDOW + (1 << 20);
const OUT_FIRST: usize = 64 << 10;
/// Room kept past the point where a token may start: the longest match and an eight-byte copy's overshoot.
const OUT_SLACK: usize = 258 + 8;
const LITLEN_PRIMARY: u32 = 11;
const DIST_PRIMARY: u32 = 8;

/// Why decoding stopped, before its place in the input is attached.
enum Stop {
    Bad(&'static str),
    Truncated,
    Read(io::Error),
    Write(io::Error),
}

/// One of the producer's decisions in a Huffman block: `lits` literals, then (when `len` > 0) a match of `len`
/// bytes `dist` back; a length 258 written as symbol 284 with extra bits 31 (a quirk) has [`Tok::QUIRK`] set
/// in `len`. A block's tokens tile its raw bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tok {
    pub lits: u32,
    pub len: u16,
    pub dist: u16,
}

impl Tok {
    /// Marks a quirk in `len`.
    pub const QUIRK: u16 = 0x8000;

    /// The match's length (0 for none).
    #[inline(always)]
    pub fn match_len(self) -> u16 {
        self.len & !Self::QUIRK
    }

    /// Raw bytes covered.
    #[inline(always)]
    pub fn covers(self) -> u64 {
        self.lits as u64 + self.match_len() as u64
    }
}

/// What decomposing finds, in stream order. Raw bytes reach [`Sink::raw`] no later than the events that cover
/// them: by each block's end, and with every batch of tokens.
pub(crate) trait Sink {
    /// The next raw bytes.
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// A member starts; its header bytes (ID1 through FHCRC), verbatim.
    fn member(&mut self, header: &[u8]) -> io::Result<()>;
    /// A stored block (`kind` is its three header bits) with its padding bits and length; its bytes follow.
    fn stored(&mut self, kind: u8, pad: u8, len: u16) -> io::Result<()>;
    /// A fixed or dynamic block starts: `head` is its kind byte, then for a dynamic block its code definitions
    /// as the re-creation format writes them.
    fn huffman(&mut self, head: &[u8]) -> io::Result<()>;
    /// The next decisions of the current Huffman block.
    fn tokens(&mut self, toks: &[Tok]) -> io::Result<()>;
    /// The current Huffman block ends, having produced `raw_len` bytes; its quirks (see the module doc).
    fn block_end(&mut self, raw_len: u64, quirks: &[u64]) -> io::Result<()>;
    /// The member ends: the padding bits after its last block, and its CRC-32 (verified).
    fn member_end(&mut self, end_pad: u8, crc: u32) -> io::Result<()>;
    /// The stream ends; the bytes after the last member.
    fn end(&mut self, trailing: &[u8]) -> io::Result<()>;
}

/// Decisions buffered before they go to the sink (when the output window is flushed, and at block ends).
const TOKS: usize = 1 << 14;

/// The output side: raw bytes go out through a window that matches copy from.
struct Out<S> {
    sink: S,
    buf: Vec<u8>,
    pos: usize,
    /// A token starts only at or below this: `buf.len()` − `OUT_SLACK`.
    limit: usize,
    /// `buf[..flushed]` has been written to `raw`.
    flushed: usize,
    /// Where the current member's output starts in `buf` (0 once it started before the window).
    hist: usize,
    /// Bytes of the current member written to `raw`.
    member_len: u64,
    crc: crc32fast::Hasher,
}

impl<S: Sink> Out<S> {
    fn produced(&self) -> u64 {
        self.member_len + (self.pos - self.flushed) as u64
    }

    fn flush(&mut self) -> io::Result<()> {
        let new = &self.buf[self.flushed..self.pos];
        self.sink.raw(new)?;
        self.crc.update(new);
        self.member_len += new.len() as u64;
        self.flushed = self.pos;
        if self.pos > self.limit && self.buf.len() < OUT_CAP {
            self.buf.resize(OUT_CAP.min(self.buf.len() * 2), 0);
            self.limit = self.buf.len() - OUT_SLACK;
        } else if self.pos > self.limit {
            self.buf.copy_within(self.pos - WINDOW..self.pos, 0);
            self.hist = self.hist.saturating_sub(self.pos - WINDOW);
            self.pos = WINDOW;
            self.flushed = WINDOW;
        }
        Ok(())
    }

    fn start_member(&mut self) -> io::Result<()> {
        self.flush()?;
        self.hist = self.pos;
        self.member_len = 0;
        self.crc = crc32fast::Hasher::new();
        Ok(())
    }

    /// The member's CRC-32 and length.
    fn end_member(&mut self) -> io::Result<(u32, u64)> {
        self.flush()?;
        Ok((std::mem::take(&mut self.crc).finalize(), self.member_len))
    }

    /// Copy `len` bytes from `dist` back; the caller checked `dist` ≤ `pos - hist` and `pos` ≤ `limit`.
    #[inline(always)]
    fn copy_match(&mut self, dist: usize, len: usize) {
        let pos = self.pos;
        let src = pos - dist;
        let buf = &mut self.buf[..];
        if dist >= len && len > 32 {
            buf.copy_within(src..src + len, pos);
        } else if dist >= 8 {
            // Eight bytes at a time; each word reads only bytes already written. May write up to seven bytes
            // past the match, which later output overwrites.
            let mut s = src;
            let mut d = pos;
            while d < pos + len {
                let w: [u8; 8] = buf[s..s + 8].try_into().unwrap();
                buf[d..d + 8].copy_from_slice(&w);
                s += 8;
                d += 8;
            }
        } else if dist == 1 {
            let b = buf[src];
            buf[pos..pos + len].fill(b);
        } else {
            // A short period: copy the pattern, then ever larger copies of what is already repeated.
            let mut done = 0;
            while done < len {
                let n = (len - done).min(dist + done);
                buf.copy_within(src..src + n, pos + done);
                done += n;
            }
        }
        self.pos = pos + len;
    }
}

/// Decoding tables, reused from block to block.
struct Tables {
    fixed_lit: Table,
    fixed_dist: Table,
    lit: Table,
    dist: Table,
    cl: Table,
}

pub(crate) struct Decomposer<R, S> {
    input: BitReader<R>,
    out: Out<S>,
    tables: Tables,
    /// The record being built (a block's header).
    headers: Vec<u8>,
    /// Decisions not yet given to the sink.
    toks: Vec<Tok>,
    /// Literals since the last decision given (in the current block).
    lit_run: u32,
    /// Ordinals, among the block's length-258 matches, of those coded as symbol 284 with extra bits 31.
    quirks: Vec<u64>,
    member: u64,
    block: u64,
}

/// Inflate `input`, reporting to `sink`.
pub(crate) fn run<R: Read, S: Sink>(input: R, sink: S) -> Result<S, DeflateError> {
    let mut fixed_lit = Table::default();
    let mut fixed_dist = Table::default();
    fixed_lit
        .build(&fixed_litlen_lengths(), LITLEN_PRIMARY, litlen_entry)
        .expect("the fixed code is complete");
    fixed_dist
        .build(&[5; 32], DIST_PRIMARY, dist_entry)
        .expect("the fixed code is complete");
    let mut d = Decomposer {
        input: BitReader::new(input),
        out: Out {
            sink,
            buf: vec![0; OUT_FIRST],
            pos: 0,
            limit: OUT_FIRST - OUT_SLACK,
            flushed: 0,
            hist: 0,
            member_len: 0,
            crc: crc32fast::Hasher::new(),
        },
        tables: Tables {
            fixed_lit,
            fixed_dist,
            lit: Table::default(),
            dist: Table::default(),
            cl: Table::default(),
        },
        headers: Vec::new(),
        toks: Vec::with_capacity(TOKS),
        lit_run: 0,
        quirks: Vec::new(),
        member: 0,
        block: 0,
    };
    d.run()?;
    Ok(d.out.sink)
}

/// Decompose into a whole [`Recreation`], the raw bytes going to `raw`.
pub(crate) fn decompose<R: Read, W: Write>(input: R, raw: W) -> Result<Recreation, DeflateError> {
    let v1 = run(
        input,
        V1 {
            raw,
            headers: vec![FORMAT_VERSION],
            tokens: Vec::new(),
            lits: 0,
        },
    )?;
    Ok(Recreation {
        headers: v1.headers,
        tokens: v1.tokens,
    })
}

/// Collects the events into `headers` and `tokens` (the formats in the module doc of [`super`]).
pub(crate) struct V1<W> {
    raw: W,
    headers: Vec<u8>,
    tokens: Vec<u8>,
    /// Literals since the last match (they run on across blocks and members).
    lits: u64,
}

impl<W: Write> Sink for V1<W> {
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.raw.write_all(bytes)
    }
    fn member(&mut self, header: &[u8]) -> io::Result<()> {
        self.headers.push(TAG_MEMBER);
        put_varint(&mut self.headers, header.len() as u64);
        self.headers.extend_from_slice(header);
        Ok(())
    }
    fn stored(&mut self, kind: u8, pad: u8, len: u16) -> io::Result<()> {
        self.headers.extend_from_slice(&[kind, pad]);
        put_varint(&mut self.headers, len as u64);
        Ok(())
    }
    fn huffman(&mut self, head: &[u8]) -> io::Result<()> {
        self.headers.extend_from_slice(head);
        Ok(())
    }
    fn tokens(&mut self, toks: &[Tok]) -> io::Result<()> {
        for t in toks {
            self.lits += t.lits as u64;
            if t.len > 0 {
                put_match(
                    &mut self.tokens,
                    self.lits,
                    t.match_len() as u32,
                    t.dist as u32,
                );
                self.lits = 0;
            }
        }
        Ok(())
    }
    fn block_end(&mut self, raw_len: u64, quirks: &[u64]) -> io::Result<()> {
        put_quirks(&mut self.headers, raw_len, quirks);
        Ok(())
    }
    fn member_end(&mut self, end_pad: u8, crc: u32) -> io::Result<()> {
        self.headers.push(end_pad);
        self.headers.extend_from_slice(&crc.to_le_bytes());
        Ok(())
    }
    fn end(&mut self, trailing: &[u8]) -> io::Result<()> {
        if self.lits > 0 {
            put_final_run(&mut self.tokens, self.lits);
        }
        self.headers.push(TAG_END);
        put_varint(&mut self.headers, trailing.len() as u64);
        self.headers.extend_from_slice(trailing);
        Ok(())
    }
}

/// A Huffman block's tail in the re-creation format: `raw_len`, then the quirks.
pub(crate) fn put_quirks(out: &mut Vec<u8>, raw_len: u64, quirks: &[u64]) {
    put_varint(out, raw_len);
    put_varint(out, quirks.len() as u64);
    let mut next = 0;
    for &q in quirks {
        put_varint(out, q - next);
        next = q + 1;
    }
}

impl<R: Read, S: Sink> Decomposer<R, S> {
    /// An error at the current input position; any error after the input ran out is truncation.
    fn error(&self, stop: Stop) -> DeflateError {
        let offset = self.input.offset();
        let (member, block) = (self.member, self.block);
        match stop {
            Stop::Read(e) => DeflateError::Read(e),
            Stop::Write(e) => DeflateError::Write(e),
            Stop::Truncated => DeflateError::Truncated {
                offset,
                member,
                block,
            },
            Stop::Bad(_) if self.input.overrun() => DeflateError::Truncated {
                offset,
                member,
                block,
            },
            Stop::Bad(what) => DeflateError::Malformed {
                what,
                offset,
                member,
                block,
            },
        }
    }

    fn bad(&self, what: &'static str) -> DeflateError {
        self.error(Stop::Bad(what))
    }

    fn byte(&mut self) -> Result<u8, DeflateError> {
        match self.input.byte() {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(self.error(Stop::Truncated)),
            Err(e) => Err(DeflateError::Read(e)),
        }
    }

    fn refill(&mut self) -> Result<(), DeflateError> {
        match self.input.refill() {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.error(Stop::Truncated)),
            Err(e) => Err(DeflateError::Read(e)),
        }
    }

    /// `n` ≤ 32 bits, after a refill.
    fn bits(&mut self, n: u32) -> u32 {
        let v = (self.input.bits & ((1u64 << n) - 1)) as u32;
        self.input.consume(n);
        v
    }

    fn run(&mut self) -> Result<(), DeflateError> {
        loop {
            self.member_()?;
            self.member += 1;
            self.block = 0;
            let next = self.input.peek(2).map_err(DeflateError::Read)?;
            if next != [0x1f, 0x8b] {
                break;
            }
        }
        let mut trailing = Vec::new();
        loop {
            let avail = self.input.available().map_err(DeflateError::Read)?;
            if avail.is_empty() {
                break;
            }
            if trailing.len() + avail.len() > MAX_TRAILING {
                return Err(self.bad("more than 1 MiB of trailing bytes after the last member"));
            }
            trailing.extend_from_slice(avail);
            let n = avail.len();
            self.input.advance(n);
        }
        self.out.sink.end(&trailing).map_err(DeflateError::Write)
    }

    fn member_(&mut self) -> Result<(), DeflateError> {
        self.gzip_header()?;
        self.out.start_member().map_err(DeflateError::Write)?;
        loop {
            self.refill()?;
            let head = self.bits(3);
            self.headers.clear();
            self.headers.push(head as u8);
            match head >> 1 {
                0 => self.stored(head as u8)?,
                1 => self.huffman(true)?,
                2 => {
                    self.dynamic_header()?;
                    self.huffman(false)?;
                }
                _ => return Err(self.bad("block type 3 (reserved)")),
            }
            if head & 1 == 1 {
                break;
            }
            self.block += 1;
        }
        let (end_pad, _) = self.input.align();
        if !self.input.unload() {
            return Err(self.error(Stop::Truncated));
        }
        let (crc, len) = self.out.end_member().map_err(DeflateError::Write)?;
        let offset = self.input.offset();
        let mut trailer = [0u8; 8];
        for b in &mut trailer {
            *b = self.byte()?;
        }
        let stored_crc = u32::from_le_bytes(trailer[..4].try_into().unwrap());
        let stored_len = u32::from_le_bytes(trailer[4..].try_into().unwrap());
        if stored_crc != crc {
            let member = self.member;
            return Err(DeflateError::Trailer {
                member,
                offset,
                field: "CRC-32",
                stored: stored_crc,
                actual: crc,
            });
        }
        if stored_len != len as u32 {
            let member = self.member;
            return Err(DeflateError::Trailer {
                member,
                offset: offset + 4,
                field: "ISIZE",
                stored: stored_len,
                actual: len as u32,
            });
        }
        self.out
            .sink
            .member_end(end_pad, stored_crc)
            .map_err(DeflateError::Write)
    }

    /// The member header (RFC 1952 §2.3), kept byte for byte.
    fn gzip_header(&mut self) -> Result<(), DeflateError> {
        let mut h = Vec::with_capacity(16);
        for _ in 0..10 {
            h.push(self.byte()?);
        }
        if h[..2] != [0x1f, 0x8b] {
            return Err(self.bad("not gzip: no 1f 8b magic"));
        }
        if h[2] != 8 {
            return Err(self.bad("compression method is not deflate (8)"));
        }
        let flags = h[3];
        if flags & 0xe0 != 0 {
            return Err(self.bad("reserved gzip header flag set"));
        }
        if flags & 4 != 0 {
            let lo = self.byte()?;
            let hi = self.byte()?;
            h.extend_from_slice(&[lo, hi]);
            for _ in 0..u16::from_le_bytes([lo, hi]) {
                let b = self.byte()?;
                h.push(b);
            }
        }
        for (flag, what) in [
            (8, "FNAME longer than 64 KiB"),
            (16, "FCOMMENT longer than 64 KiB"),
        ] {
            if flags & flag != 0 {
                let start = h.len();
                loop {
                    let b = self.byte()?;
                    h.push(b);
                    if b == 0 {
                        break;
                    }
                    if h.len() - start > MAX_FIELD {
                        return Err(self.bad(what));
                    }
                }
            }
        }
        if flags & 2 != 0 {
            for _ in 0..2 {
                let b = self.byte()?;
                h.push(b);
            }
        }
        self.out.sink.member(&h).map_err(DeflateError::Write)
    }

    fn stored(&mut self, kind: u8) -> Result<(), DeflateError> {
        let (pad, _) = self.input.align();
        if !self.input.unload() {
            return Err(self.error(Stop::Truncated));
        }
        let mut l = [0u8; 4];
        for b in &mut l {
            *b = self.byte()?;
        }
        let len = u16::from_le_bytes([l[0], l[1]]);
        let nlen = u16::from_le_bytes([l[2], l[3]]);
        if nlen != !len {
            return Err(self.bad("stored block's NLEN is not the complement of LEN"));
        }
        self.out
            .sink
            .stored(kind, pad, len)
            .map_err(DeflateError::Write)?;
        let mut left = len as usize;
        while left > 0 {
            if self.out.pos > self.out.limit {
                self.out.flush().map_err(DeflateError::Write)?;
            }
            let room = self.out.buf.len() - self.out.pos;
            let avail = match self.input.available() {
                Ok([]) => return Err(self.error(Stop::Truncated)),
                Ok(a) => a,
                Err(e) => return Err(DeflateError::Read(e)),
            };
            let n = left.min(room).min(avail.len());
            self.out.buf[self.out.pos..self.out.pos + n].copy_from_slice(&avail[..n]);
            self.out.pos += n;
            self.input.advance(n);
            left -= n;
        }
        self.out.flush().map_err(DeflateError::Write)
    }

    /// A dynamic block's code definitions, recorded as read (see the module doc of [`super`]).
    fn dynamic_header(&mut self) -> Result<(), DeflateError> {
        self.refill()?;
        let hlit = self.bits(5) as usize;
        let hdist = self.bits(5) as usize;
        let hclen = self.bits(4) as usize;
        self.headers
            .extend_from_slice(&[hlit as u8, hdist as u8, hclen as u8]);
        let (hlit, hdist, hclen) = (hlit + 257, hdist + 1, hclen + 4);
        let mut cl = [0u8; 19];
        for &sym in &CL_ORDER[..hclen] {
            if self.input.count < 3 {
                self.refill()?;
            }
            let v = self.bits(3) as u8;
            cl[sym] = v;
            self.headers.push(v);
        }
        if self.tables.cl.build(&cl, 7, cl_entry).is_err() {
            return Err(self.bad("code-length code is over-subscribed"));
        }
        let total = hlit + hdist;
        let mut lengths = [0u8; 288 + 32];
        let mut i = 0;
        while i < total {
            if self.input.count < 16 {
                self.refill()?;
            }
            let e = self.tables.cl.entries[(self.input.bits & 0x7f) as usize];
            if entry_kind(e) != KIND_LITERAL {
                return Err(self.bad("code-length code that no symbol has"));
            }
            self.input.consume(entry_bits(e));
            let sym = entry_value(e) as u8;
            self.headers.push(sym);
            let (value, repeat) = match sym {
                0..=15 => (sym, 1),
                16 => {
                    if i == 0 {
                        return Err(self.bad("code length repeat (16) with no previous length"));
                    }
                    let x = self.bits(2);
                    self.headers.push(x as u8);
                    (lengths[i - 1], 3 + x as usize)
                }
                17 => {
                    let x = self.bits(3);
                    self.headers.push(x as u8);
                    (0, 3 + x as usize)
                }
                _ => {
                    let x = self.bits(7);
                    self.headers.push(x as u8);
                    (0, 11 + x as usize)
                }
            };
            if i + repeat > total {
                return Err(self.bad("code lengths run past HLIT + HDIST"));
            }
            lengths[i..i + repeat].fill(value);
            i += repeat;
        }
        if self
            .tables
            .lit
            .build(&lengths[..hlit], LITLEN_PRIMARY, litlen_entry)
            .is_err()
        {
            return Err(self.bad("literal/length code is over-subscribed"));
        }
        if self
            .tables
            .dist
            .build(&lengths[hlit..total], DIST_PRIMARY, dist_entry)
            .is_err()
        {
            return Err(self.bad("distance code is over-subscribed"));
        }
        Ok(())
    }

    /// A fixed or dynamic block: its header (in `headers`) to the sink, its decisions as they are decoded, then
    /// its raw length and quirks.
    fn huffman(&mut self, fixed: bool) -> Result<(), DeflateError> {
        self.out
            .sink
            .huffman(&self.headers)
            .map_err(DeflateError::Write)?;
        let start = self.out.produced();
        self.quirks.clear();
        let (lit, dist) = if fixed {
            (&self.tables.fixed_lit, &self.tables.fixed_dist)
        } else {
            (&self.tables.lit, &self.tables.dist)
        };
        let r = inflate(
            &mut self.input,
            &mut self.out,
            lit,
            dist,
            &mut self.toks,
            &mut self.lit_run,
            &mut self.quirks,
        );
        if let Err(stop) = r {
            return Err(self.error(stop));
        }
        self.out.flush().map_err(DeflateError::Write)?;
        give_toks(&mut self.out.sink, &mut self.toks, &mut self.lit_run)
            .map_err(DeflateError::Write)?;
        let raw_len = self.out.produced() - start;
        self.out
            .sink
            .block_end(raw_len, &self.quirks)
            .map_err(DeflateError::Write)
    }
}

/// Give the decisions buffered, and the literals since the last one, to the sink.
fn give_toks<S: Sink>(sink: &mut S, toks: &mut Vec<Tok>, lit_run: &mut u32) -> io::Result<()> {
    if *lit_run > 0 {
        toks.push(Tok {
            lits: std::mem::take(lit_run),
            len: 0,
            dist: 0,
        });
    }
    if !toks.is_empty() {
        sink.tokens(toks)?;
        toks.clear();
    }
    Ok(())
}

/// Decode one block's symbols up to its end-of-block code.
#[inline(never)]
fn inflate<R: Read, S: Sink>(
    input: &mut BitReader<R>,
    out: &mut Out<S>,
    lit: &Table,
    dist: &Table,
    toks: &mut Vec<Tok>,
    lit_run: &mut u32,
    quirks: &mut Vec<u64>,
) -> Result<(), Stop> {
    let lmask = (1u64 << lit.primary) - 1;
    let dmask = (1u64 << dist.primary) - 1;
    let lt = &lit.entries[..];
    let dt = &dist.entries[..];
    let mut n258 = 0u64;
    loop {
        if out.pos > out.limit || toks.len() >= TOKS {
            // The raw bytes first: the sink sees them no later than the decisions covering them.
            out.flush().map_err(Stop::Write)?;
            give_toks(&mut out.sink, toks, lit_run).map_err(Stop::Write)?;
        }
        // A token needs at most 15 + 5 bits for its length and 15 + 13 for its distance.
        if input.count < 48 && !input.refill().map_err(Stop::Read)? {
            return Err(Stop::Truncated);
        }
        let mut e = lt[(input.bits & lmask) as usize];
        if entry_kind(e) == KIND_SUB {
            input.consume(entry_bits(e));
            e = lt[entry_value(e) as usize + (input.bits & ((1 << entry_extra(e)) - 1)) as usize];
        }
        input.consume(entry_bits(e));
        let kind = entry_kind(e);
        if kind == KIND_LITERAL {
            out.buf[out.pos] = entry_value(e) as u8;
            out.pos += 1;
            *lit_run += 1;
            // At least 48 − 15 bits are left, enough for another literal in the primary table without a refill
            // (and the output limit leaves room for it).
            let e = lt[(input.bits & lmask) as usize];
            if entry_kind(e) == KIND_LITERAL {
                input.consume(entry_bits(e));
                out.buf[out.pos] = entry_value(e) as u8;
                out.pos += 1;
                *lit_run += 1;
            }
            continue;
        }
        if kind != KIND_BASE {
            if kind == KIND_END {
                return Ok(());
            }
            return Err(Stop::Bad(if entry_value(e) == 0 {
                "literal/length code that no symbol has"
            } else {
                "literal/length symbol 286 or 287"
            }));
        }
        let extra = entry_extra(e);
        let len = entry_value(e) + (input.bits & ((1 << extra) - 1)) as u32;
        input.consume(extra);
        let mut flag = 0;
        if len == 258 {
            if extra != 0 {
                quirks.push(n258);
                flag = Tok::QUIRK;
            }
            n258 += 1;
        }
        let mut d = dt[(input.bits & dmask) as usize];
        if entry_kind(d) == KIND_SUB {
            input.consume(entry_bits(d));
            d = dt[entry_value(d) as usize + (input.bits & ((1 << entry_extra(d)) - 1)) as usize];
        }
        input.consume(entry_bits(d));
        if entry_kind(d) != KIND_BASE {
            return Err(Stop::Bad(if entry_value(d) == 0 {
                "distance code that no symbol has"
            } else {
                "distance symbol 30 or 31"
            }));
        }
        let dx = entry_extra(d);
        let distance = entry_value(d) + (input.bits & ((1 << dx) - 1)) as u32;
        input.consume(dx);
        if distance as usize > out.pos - out.hist {
            return Err(Stop::Bad("distance reaches before the start of the member"));
        }
        toks.push(Tok {
            lits: std::mem::take(lit_run),
            len: len as u16 | flag,
            dist: distance as u16,
        });
        out.copy_match(distance as usize, len as usize);
    }
}
