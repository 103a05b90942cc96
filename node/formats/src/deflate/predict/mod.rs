//! Predicting a producer's match decisions, so only its departures from the prediction are stored.
//!
//! A [`Model`] re-runs one producer's match finder over the raw bytes of one *piece* of a stream: a gzip member,
//! or for producers that compress parts of their input independently (pgzip) one such part. It reads the piece
//! through a window ([`Raw`]) that the driver fills ahead of it, so no model holds a stream. The driver walks
//! the piece's decision positions (every raw byte outside stored blocks, skipping the bytes a match covers): at
//! each it asks the model for its prediction, compares it with what the producer actually did, and tells the
//! model what was actually done, so the model's state follows the producer's even after a miss. Only the misses
//! are kept, as *corrections*; replaying the same walk with the corrections rebuilds the decisions exactly.
//!
//! # The corrections format
//!
//! ```text
//! corrections := (varint agreed  decision)*  [varint agreed]
//! decision    := varint 0                      (a literal)
//!              | varint length − 2  u8 u8      (a match; distance − 1, big-endian)
//! ```
//! `agreed` counts the decisions predicted right before the next miss. A match predicted right advances the
//! walk by its length, a literal by one. The streaming form keeps one such list per Huffman block and leaves
//! out the final count (the block's raw length ends it); the whole-stream form ([`encode`], [`decode`]: one list
//! for the stream, with the final count) is that of stores written before the streaming form.
//!
//! # Pieces
//!
//! Every model starts afresh at a member's start. pgzip also starts afresh after each sync flush (an empty
//! stored block), with the last 16 KiB of the part before as its dictionary ([`restarts_at_flush`],
//! [`history`]); other producers keep their state across a flush but stop there (they compress everything
//! they were given first), which their model sees through [`Raw::next_stop`].
//!
//! # Models
//!
//! - `zlib-L`, `chromium-L`, `zlibrs-9`: zlib's deflate and its forks ([`zlib`]).
//! - `go-1` … `go-9`: Go's `compress/flate` as `compress/gzip` drives it.
//! - `pgzip-5`: klauspost/pgzip over klauspost/compress's flate (umoci's layers).
//! - `literals`: every decision a literal; the fallback when no model fits.

mod go;
pub(crate) mod raw;

pub use raw::Raw;

use super::format::{
    put_final_run, put_match, put_varint, Cursor, Short, FORMAT_VERSION, TAG_END, TAG_MEMBER,
};

/// A producer's decision at one raw position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The byte at this position is written as a literal.
    Literal,
    /// `len` bytes (3..=258) from here are a copy of the bytes `dist` (1..=32768) back.
    Match { len: u16, dist: u16 },
}

impl Decision {
    /// How many raw bytes the decision covers.
    #[inline(always)]
    pub fn advance(self) -> usize {
        match self {
            Decision::Literal => 1,
            Decision::Match { len, .. } => len as usize,
        }
    }
}

/// A model of one producer over one piece: predicts each decision, and follows what was actually decided.
pub trait Model {
    /// The window of the piece's raw bytes the model reads.
    fn raw(&self) -> &Raw;
    /// The same, for the driver to fill.
    fn raw_mut(&mut self) -> &mut Raw;
    /// The decision the producer would make at raw position `pos`, everything before `pos` having gone as
    /// [`Model::take`] reported. `pos` only increases; positions inside stored blocks are never asked for. The
    /// window holds `raw::LOOKAHEAD` bytes past `pos` (or up to the piece's end, then known).
    fn predict(&mut self, pos: usize) -> Decision;
    /// The producer decided `actual` at `pos` (whether or not it was predicted). The next `predict` is at
    /// `pos + actual.advance()` or, when that falls in or at the end of a stored block, past it.
    fn take(&mut self, pos: usize, actual: Decision);
    /// The next decision will be at `pos` or later (the bytes before it were stored): do now what the producer
    /// did up to there, so the window can move on. Same look-ahead as [`Model::predict`].
    fn reach(&mut self, pos: usize) {
        let _ = pos;
    }
}

/// Every model, for calls without a virtual dispatch.
pub enum AnyModel {
    Literals(Literals),
    Zlib(Box<zlib::Zlib>),
    Go(Box<go::Chained>),
    GoFast(Box<go::BestSpeed>),
    Pgzip(Box<pgzip::Pgzip>),
}

macro_rules! each {
    ($self:expr, $m:ident => $e:expr) => {
        match $self {
            AnyModel::Literals($m) => $e,
            AnyModel::Zlib($m) => $e,
            AnyModel::Go($m) => $e,
            AnyModel::GoFast($m) => $e,
            AnyModel::Pgzip($m) => $e,
        }
    };
}

/// Run `$body` with `$name` bound to the concrete model inside `$m` (an `&mut AnyModel`), so the body's calls
/// are static and inlined: for the loops that ask a model about every position.
macro_rules! with_model {
    ($m:expr, $name:ident => $body:expr) => {
        match $m {
            $crate::deflate::predict::AnyModel::Literals($name) => $body,
            $crate::deflate::predict::AnyModel::Zlib($name) => {
                let $name = &mut **$name;
                $body
            }
            $crate::deflate::predict::AnyModel::Go($name) => {
                let $name = &mut **$name;
                $body
            }
            $crate::deflate::predict::AnyModel::GoFast($name) => {
                let $name = &mut **$name;
                $body
            }
            $crate::deflate::predict::AnyModel::Pgzip($name) => {
                let $name = &mut **$name;
                $body
            }
        }
    };
}
pub(crate) use with_model;

impl Model for AnyModel {
    #[inline]
    fn raw(&self) -> &Raw {
        each!(self, m => m.raw())
    }
    #[inline]
    fn raw_mut(&mut self) -> &mut Raw {
        each!(self, m => m.raw_mut())
    }
    #[inline]
    fn predict(&mut self, pos: usize) -> Decision {
        each!(self, m => m.predict(pos))
    }
    #[inline]
    fn take(&mut self, pos: usize, actual: Decision) {
        each!(self, m => m.take(pos, actual))
    }
    fn reach(&mut self, pos: usize) {
        each!(self, m => m.reach(pos))
    }
}

/// The model called `name` (the name stored beside its corrections) for the piece `raw` is a window of; None
/// if there is no such model.
pub fn model(name: &str, raw: Raw) -> Option<AnyModel> {
    Some(match name {
        "literals" => AnyModel::Literals(Literals(raw)),
        n if zlib::params(n).is_some() => {
            AnyModel::Zlib(Box::new(zlib::Zlib::new(zlib::params(n)?, raw)))
        }
        "go-1" | "go-2" | "go-3" | "go-4" | "go-5" | "go-6" | "go-7" | "go-8" | "go-9" => {
            go::model(name.as_bytes()[3] - b'0', raw)
        }
        "pgzip-5" => AnyModel::Pgzip(Box::new(pgzip::Pgzip::new(raw))),
        _ => return None,
    })
}

/// Whether the producer `name` models starts afresh after every sync flush, so each part between flushes is a
/// piece of its own.
pub fn restarts_at_flush(name: &str) -> bool {
    name.starts_with("pgzip-")
}

/// The bytes before a piece the model `name` reads (its dictionary), given the raw length of the piece before
/// it in the same member (None at a member's start).
pub fn history(name: &str, prev: Option<u64>) -> usize {
    if restarts_at_flush(name) {
        pgzip::dictionary(prev)
    } else {
        0
    }
}

/// Every model name [`model`] knows, the producers of most layers and tarballs first.
pub const MODELS: &[&str] = &[
    "literals",
    // The producers of most layers and tarballs first: ingest stops trying at the first model that makes no
    // miss on the start of a stream.
    "go-6",
    "pgzip-5",
    "chromium-9",
    "zlib-9",
    "zlibrs-9",
    "zlib-6",
    "chromium-6",
    "go-1",
    "go-2",
    "go-3",
    "go-4",
    "go-5",
    "go-7",
    "go-8",
    "go-9",
    "zlib-1",
    "zlib-2",
    "zlib-3",
    "zlib-4",
    "zlib-5",
    "zlib-7",
    "zlib-8",
    "chromium-1",
];

/// Kinds of deflate block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Stored: raw bytes, no decisions.
    Stored,
    /// Fixed Huffman codes.
    Fixed,
    /// Dynamic Huffman codes.
    Dynamic,
}

/// One deflate block, as the headers record it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Which gzip member (from 0).
    pub member: u32,
    /// Offset of its first raw byte in the whole raw stream.
    pub start: u64,
    /// Raw bytes it produces (0 for an empty stored block: a sync or full flush marker).
    pub len: u64,
    /// Its kind.
    pub kind: BlockKind,
    /// BFINAL.
    pub last: bool,
}

/// Members and blocks of a decomposed stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Raw offset where each member starts.
    pub members: Vec<u64>,
    /// Every block, in order.
    pub blocks: Vec<Block>,
}

/// Why re-creation data could not be parsed, or corrections not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} (at byte {at} of the {part})")]
pub struct PredictError {
    /// What is wrong.
    pub what: &'static str,
    /// Which byte string: "headers", "tokens" or "corrections".
    pub part: &'static str,
    /// Offset in it.
    pub at: usize,
}

fn short(part: &'static str, at: usize) -> impl Fn(Short) -> PredictError {
    move |s| PredictError {
        what: match s {
            Short::End => "ends early",
            Short::Overlong => "a varint is longer than 64 bits",
            Short::Range => "a value is out of range",
        },
        part,
        at,
    }
}

impl Layout {
    /// The layout recorded in `headers` (format in the [module doc](super)).
    pub fn parse(headers: &[u8]) -> Result<Layout, PredictError> {
        let mut c = Cursor::new(headers);
        let mut layout = Layout::default();
        let bad = |what, c: &Cursor| PredictError {
            what,
            part: "headers",
            at: c.position(),
        };
        if c.u8().map_err(short("headers", 0))? != FORMAT_VERSION {
            return Err(bad("unknown re-creation format version", &c));
        }
        let mut raw = 0u64;
        loop {
            let at = c.position();
            let e = short("headers", at);
            match c.u8().map_err(&e)? {
                TAG_MEMBER => {}
                TAG_END => break,
                _ => return Err(bad("unknown record", &c)),
            }
            let member = layout.members.len() as u32;
            layout.members.push(raw);
            let n = c.varint().map_err(&e)?;
            c.bytes(n).map_err(&e)?;
            loop {
                let kind = c.u8().map_err(&e)?;
                if kind > 5 {
                    return Err(bad("block kind is not BFINAL | BTYPE << 1", &c));
                }
                let (kind_, len) = match kind >> 1 {
                    0 => {
                        c.u8().map_err(&e)?;
                        (BlockKind::Stored, c.varint().map_err(&e)?)
                    }
                    1 => (BlockKind::Fixed, huffman_tail(&mut c).map_err(&e)?),
                    _ => {
                        dynamic_header(&mut c).map_err(&e)?;
                        (BlockKind::Dynamic, huffman_tail(&mut c).map_err(&e)?)
                    }
                };
                let last = kind & 1 == 1;
                layout.blocks.push(Block {
                    member,
                    start: raw,
                    len,
                    kind: kind_,
                    last,
                });
                raw = raw
                    .checked_add(len)
                    .ok_or_else(|| bad("raw length overflows", &c))?;
                if last {
                    break;
                }
            }
            c.u8().map_err(&e)?;
            c.bytes(4).map_err(&e)?;
        }
        Ok(layout)
    }

    /// Total raw bytes of all blocks.
    pub fn raw_len(&self) -> u64 {
        self.blocks.last().map_or(0, |b| b.start + b.len)
    }
}

/// raw_len and quirks of a fixed or dynamic block.
fn huffman_tail(c: &mut Cursor) -> Result<u64, Short> {
    let len = c.varint()?;
    for _ in 0..c.varint()? {
        c.varint()?;
    }
    Ok(len)
}

/// Skip a dynamic block's code definitions.
fn dynamic_header(c: &mut Cursor) -> Result<(), Short> {
    let hlit = c.u8()? as usize + 257;
    let hdist = c.u8()? as usize + 1;
    let hclen = c.u8()? as usize + 4;
    if hclen > 19 {
        return Err(Short::Range);
    }
    c.bytes(hclen as u64)?;
    let mut defined = 0;
    while defined < hlit + hdist {
        defined += match c.u8()? {
            0..=15 => 1,
            16 => 3 + c.u8()? as usize,
            17 => 3 + c.u8()? as usize,
            18 => 11 + c.u8()? as usize,
            _ => return Err(Short::Range),
        };
    }
    Ok(())
}

/// Walks the decision positions of a layout: every raw byte outside stored blocks.
struct Walk<'a> {
    blocks: &'a [Block],
    next: usize,
    /// End of the current run of non-stored blocks.
    end: u64,
}

impl<'a> Walk<'a> {
    fn new(layout: &'a Layout) -> Self {
        Walk {
            blocks: &layout.blocks,
            next: 0,
            end: 0,
        }
    }

    /// The first decision position at or after `pos`, or None at the end of the stream.
    fn settle(&mut self, pos: u64) -> Option<u64> {
        let mut pos = pos;
        if pos < self.end {
            return Some(pos);
        }
        while let Some(b) = self.blocks.get(self.next) {
            self.next += 1;
            if b.kind == BlockKind::Stored || b.len == 0 || b.start + b.len <= pos {
                continue;
            }
            pos = pos.max(b.start);
            self.end = b.start + b.len;
            // Adjacent Huffman blocks form one run: a match never crosses a block's end, but walking does.
            while let Some(n) = self.blocks.get(self.next) {
                if n.kind == BlockKind::Stored && n.len > 0 {
                    break;
                }
                self.end = n.start + n.len;
                self.next += 1;
            }
            return Some(pos);
        }
        None
    }
}

/// A piece of a whole stream in memory: its raw range, its history and flushes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The raw range.
    pub start: u64,
    pub end: u64,
    /// Where its member starts.
    pub member_start: u64,
    /// The raw length of the piece before it in the same member, if any.
    pub prev: Option<u64>,
    /// Flushes strictly inside it.
    pub flushes: Vec<u64>,
}

impl Layout {
    /// The pieces of the stream for the model `name`: its members, cut after every sync flush if the model
    /// restarts there.
    pub fn pieces(&self, name: &str) -> Vec<Piece> {
        let cut = restarts_at_flush(name);
        let mut out: Vec<Piece> = Vec::new();
        let mut member = None;
        for b in &self.blocks {
            if member != Some(b.member) {
                member = Some(b.member);
                out.push(Piece {
                    start: b.start,
                    end: b.start,
                    member_start: b.start,
                    prev: None,
                    flushes: Vec::new(),
                });
            }
            let p = out.last_mut().expect("pushed above");
            p.end = b.start + b.len;
            if b.kind == BlockKind::Stored && b.len == 0 && !b.last {
                if cut {
                    let (member_start, prev) = (p.member_start, p.end - p.start);
                    out.push(Piece {
                        start: b.start,
                        end: b.start,
                        member_start,
                        prev: Some(prev),
                        flushes: Vec::new(),
                    });
                } else {
                    p.flushes.push(b.start);
                }
            }
        }
        // Flushes at a piece's very start or end stop nothing inside it.
        for p in &mut out {
            let (s, e) = (p.start, p.end);
            p.flushes.retain(|&f| s < f && f < e);
            p.flushes.dedup();
        }
        out
    }
}

/// The models of the pieces of a whole stream in memory, made as the walk reaches each.
struct Pieces<'a> {
    name: &'a str,
    raw: &'a [u8],
    pieces: Vec<Piece>,
    next: usize,
    /// The current piece's range and model.
    range: (u64, u64),
    model: Option<AnyModel>,
}

impl<'a> Pieces<'a> {
    fn new(name: &'a str, raw: &'a [u8], layout: &Layout) -> Option<Self> {
        // Check the name once.
        model(name, Raw::new(0, 0))?;
        Some(Pieces {
            name,
            raw,
            pieces: layout.pieces(name),
            next: 0,
            range: (0, 0),
            model: None,
        })
    }

    /// The model of the piece holding `pos` (None past every piece, or where the raw bytes end).
    fn at(&mut self, pos: u64) -> Option<&mut AnyModel> {
        if pos < self.range.0 || pos >= self.range.1 || self.model.is_none() {
            self.model = None;
            let i = self.next + self.pieces[self.next..].partition_point(|p| p.end <= pos);
            let p = self.pieces.get(i)?;
            if p.start > pos {
                return None;
            }
            self.next = i + 1;
            let len = self.raw.len() as u64;
            let (start, end) = (p.start.min(len) as usize, p.end.min(len) as usize);
            let lo = start.saturating_sub(history(self.name, p.prev));
            let flushes: Vec<usize> = p.flushes.iter().map(|&f| f as usize).collect();
            let raw = Raw::whole(lo, self.raw[lo..end].to_vec(), start, end, &flushes);
            self.range = (p.start, p.end);
            self.model = model(self.name, raw);
        }
        self.model.as_mut()
    }
}

/// Predicts the decisions of a whole stream by raw position (what [`encode`] and [`decode`] walk).
pub(crate) trait Predictor {
    fn predict(&mut self, pos: u64) -> Decision;
    fn take(&mut self, pos: u64, d: Decision);
}

impl Predictor for Pieces<'_> {
    fn predict(&mut self, pos: u64) -> Decision {
        match self.at(pos) {
            Some(m) => m.predict(pos as usize),
            None => Decision::Literal,
        }
    }

    fn take(&mut self, pos: u64, d: Decision) {
        if let Some(m) = self.at(pos) {
            m.take(pos as usize, d);
        }
    }
}

/// The corrections that, with the model `name`, rebuild `tokens` (the tokens of a stream with this `layout`
/// and these `raw` bytes): the whole-stream form. None for an unknown model.
pub fn encode(
    name: &str,
    raw: &[u8],
    layout: &Layout,
    tokens: &[u8],
) -> Option<Result<Vec<u8>, PredictError>> {
    let mut pieces = Pieces::new(name, raw, layout)?;
    Some(walk_tokens(&mut pieces, layout, tokens, u64::MAX).map(|(out, _, _)| out))
}

/// How well the model `name` predicts the decisions before raw offset `limit`: (decisions, misses). For
/// choosing a model on the start of a stream.
pub fn trial(
    name: &str,
    raw: &[u8],
    layout: &Layout,
    tokens: &[u8],
    limit: u64,
) -> Option<Result<(u64, u64), PredictError>> {
    let mut pieces = Pieces::new(name, raw, layout)?;
    Some(
        walk_tokens(&mut pieces, layout, tokens, limit)
            .map(|(_, decisions, misses)| (decisions, misses)),
    )
}

/// [`encode`], stopping at the first decision at or past `limit` (the corrections are then incomplete).
pub(crate) fn walk_tokens(
    model: &mut impl Predictor,
    layout: &Layout,
    tokens: &[u8],
    limit: u64,
) -> Result<(Vec<u8>, u64, u64), PredictError> {
    let (mut decisions, mut misses) = (0u64, 0u64);
    let mut out = Vec::new();
    let mut t = Cursor::new(tokens);
    let mut walk = Walk::new(layout);
    let mut pos = 0u64;
    let mut agreed = 0u64;
    loop {
        let at = t.position();
        let (lits, m) = if t.at_end() {
            (0, None)
        } else {
            t.item().map_err(short("tokens", at))?
        };
        let actual = (0..lits)
            .map(|_| Decision::Literal)
            .chain(m.map(|(len, dist)| Decision::Match {
                len: len as u16,
                dist: dist as u16,
            }));
        for actual in actual {
            let p = walk.settle(pos).ok_or(PredictError {
                what: "more decisions than raw bytes outside stored blocks",
                part: "tokens",
                at,
            })?;
            if p >= limit {
                return Ok((out, decisions, misses));
            }
            decisions += 1;
            if model.predict(p) == actual {
                agreed += 1;
            } else {
                misses += 1;
                put_varint(&mut out, agreed);
                put_decision(&mut out, actual);
                agreed = 0;
            }
            model.take(p, actual);
            pos = p + actual.advance() as u64;
        }
        if t.at_end() {
            break;
        }
    }
    if walk.settle(pos).is_some() {
        return Err(PredictError {
            what: "fewer decisions than raw bytes outside stored blocks",
            part: "tokens",
            at: tokens.len(),
        });
    }
    put_varint(&mut out, agreed);
    Ok((out, decisions, misses))
}

/// The tokens that `corrections` and the model `name` give for a stream with this `layout` and these `raw`
/// bytes (the whole-stream form). None for an unknown model.
pub fn decode(
    name: &str,
    raw: &[u8],
    layout: &Layout,
    corrections: &[u8],
) -> Option<Result<Vec<u8>, PredictError>> {
    let mut pieces = Pieces::new(name, raw, layout)?;
    Some(decode_walk(&mut pieces, layout, corrections))
}

pub(crate) fn decode_walk(
    model: &mut impl Predictor,
    layout: &Layout,
    corrections: &[u8],
) -> Result<Vec<u8>, PredictError> {
    let mut tokens = Vec::new();
    let mut c = Cursor::new(corrections);
    let mut walk = Walk::new(layout);
    let mut pos = 0u64;
    let mut lits = 0u64;
    let raw_len = layout.raw_len();
    loop {
        let at = c.position();
        let e = short("corrections", at);
        let agreed = c.varint().map_err(&e)?;
        let miss = if c.at_end() {
            None
        } else {
            Some(get_decision(&mut c).map_err(&e)?)
        };
        for i in 0..=agreed {
            let Some(p) = walk.settle(pos) else {
                if i == agreed && miss.is_none() {
                    break;
                }
                return Err(PredictError {
                    what: "decisions past the end of the raw bytes",
                    part: "corrections",
                    at,
                });
            };
            let d = if i < agreed {
                model.predict(p)
            } else if let Some(d) = miss {
                // The model must still be asked: its state may depend on having predicted here.
                model.predict(p);
                d
            } else {
                return Err(PredictError {
                    what: "corrections end before the raw bytes",
                    part: "corrections",
                    at,
                });
            };
            if let Decision::Match { len, dist } = d {
                if !(3..=258).contains(&len)
                    || dist == 0
                    || dist > 32768
                    || p + len as u64 > raw_len
                {
                    return Err(PredictError {
                        what: "a match out of range",
                        part: "corrections",
                        at,
                    });
                }
                put_match(&mut tokens, lits, len as u32, dist as u32);
                lits = 0;
            } else {
                lits += 1;
            }
            model.take(p, d);
            pos = p + d.advance() as u64;
        }
        if miss.is_none() {
            break;
        }
        if c.at_end() {
            return Err(PredictError {
                what: "corrections end without their final count",
                part: "corrections",
                at: corrections.len(),
            });
        }
    }
    if lits > 0 {
        put_final_run(&mut tokens, lits);
    }
    Ok(tokens)
}

/// Append one correction.
pub(crate) fn put_decision(out: &mut Vec<u8>, d: Decision) {
    match d {
        Decision::Literal => put_varint(out, 0),
        Decision::Match { len, dist } => {
            put_varint(out, len as u64 - 2);
            out.extend_from_slice(&(dist - 1).to_be_bytes());
        }
    }
}

/// Read one correction.
pub(crate) fn get_decision(c: &mut Cursor) -> Result<Decision, Short> {
    match c.varint()? {
        0 => Ok(Decision::Literal),
        l if l <= 256 => {
            let d = u16::from_be_bytes([c.u8()?, c.u8()?]);
            if d >= 32768 {
                return Err(Short::Range);
            }
            Ok(Decision::Match {
                len: l as u16 + 2,
                dist: d + 1,
            })
        }
        _ => Err(Short::Range),
    }
}

/// Predicts a literal everywhere: the corrections are then the decisions in another form. The baseline, and
/// the model to fall back on when no producer's model fits.
#[derive(Debug)]
pub struct Literals(Raw);

impl Model for Literals {
    fn raw(&self) -> &Raw {
        &self.0
    }
    fn raw_mut(&mut self) -> &mut Raw {
        &mut self.0
    }
    #[inline(always)]
    fn predict(&mut self, _pos: usize) -> Decision {
        Decision::Literal
    }
    #[inline(always)]
    fn take(&mut self, _pos: usize, _actual: Decision) {}
}

pub(crate) mod pgzip;
#[cfg(test)]
pub(crate) mod tests;
pub mod zlib;
