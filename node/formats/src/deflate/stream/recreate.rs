//! Re-creating a gzip stream from its raw bytes and re-creation stream: records read front to back, pieces
//! re-created on the pool (or walked here when long), written in order.

use super::{in_flight, Ev, Records, PIECE_MAX};
use crate::deflate::encode::{Bits, Fault, Quirks};
use crate::deflate::format::Cursor;
use crate::deflate::predict::raw::{Raw, HISTORY, LOOKAHEAD};
use crate::deflate::predict::{self, get_decision, with_model, AnyModel, Decision, Model};
use crate::deflate::DeflateError;
use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc;

/// Literals written at a time, at most (so the window never drops bytes not yet written).
const LITERAL_RUN: usize = 64 << 10;

/// Runs a piece's work somewhere: the rayon pool by default.
pub type Spawn<'a> = dyn Fn(Box<dyn FnOnce() + Send + 'static>) + Sync + 'a;

/// Rebuild the gzip stream from its raw bytes (`raw`) and its re-creation stream (`rec`), writing it to `out`;
/// returns the bytes written. Data that does not fit is an error, never other bytes; raw bytes other than the
/// decomposed ones are caught by each member's CRC-32. On error, what was written is meaningless.
pub fn recompose<R: Read, Q: BufRead, W: Write>(
    raw: R,
    rec: Q,
    out: W,
) -> Result<u64, DeflateError> {
    recompose_with(raw, rec, out, &|job| rayon::spawn(job))
}

/// [`recompose`], running pieces with `spawn`.
pub fn recompose_with<R: Read, Q: BufRead, W: Write>(
    raw: R,
    rec: Q,
    out: W,
    spawn: &Spawn<'_>,
) -> Result<u64, DeflateError> {
    let mut records = Records::new(rec);
    let name = records.model()?;
    if predict::model(&name, Raw::new(0, 0)).is_none() {
        return Err(DeflateError::Recreation {
            what: "the re-creation stream names a model this ferry does not know (written by a newer one?)",
            member: 0,
            block: 0,
            raw_offset: 0,
        });
    }
    let mut r = Recreator {
        spawn,
        restarts: predict::restarts_at_flush(&name),
        name,
        raw,
        read: 0,
        tail: Vec::new(),
        pos: 0,
        cur: None,
        inline: false,
        member_start: 0,
        member: 0,
        prev: None,
        jobs: VecDeque::new(),
        out,
        written: 0,
        crc: crc32fast::Hasher::new(),
    };
    let result = r.run(&mut records);
    // Let the pool finish what it has before returning (its results are dropped).
    while let Some(rx) = r.jobs.pop_front() {
        let _ = rx.recv();
    }
    result
}

/// What a piece made: its bytes and, once whole, the CRC-32 of its raw bytes and the CRC recorded for its
/// member if it ends one.
struct Made {
    bytes: Vec<u8>,
    whole: Option<(crc32fast::Hasher, bool, Option<u32>)>,
}

struct Recreator<'s, R, W> {
    spawn: &'s Spawn<'s>,
    name: String,
    restarts: bool,
    raw: R,
    /// Raw bytes read.
    read: usize,
    /// The last raw bytes read, up to [`HISTORY`]: the dictionary of the next piece.
    tail: Vec<u8>,
    /// Raw position reached by the records read.
    pos: usize,
    cur: Option<PieceDec>,
    inline: bool,
    member_start: usize,
    member: u64,
    prev: Option<u64>,
    jobs: VecDeque<mpsc::Receiver<Result<Made, (Fault, usize)>>>,
    out: W,
    written: u64,
    /// The current member's CRC-32 over the pieces written.
    crc: crc32fast::Hasher,
}

impl<R: Read, W: Write> Recreator<'_, R, W> {
    fn fault(&self, f: Fault, at: usize) -> DeflateError {
        match f {
            Fault::Write(e) => DeflateError::Write(e),
            Fault::Unfit(what) => DeflateError::Recreation {
                what,
                member: self.member,
                block: 0,
                raw_offset: at as u64,
            },
            Fault::RawChanged { recorded, actual } => DeflateError::RawChanged {
                member: self.member,
                recorded,
                actual,
            },
        }
    }

    fn run<Q: BufRead>(&mut self, records: &mut Records<Q>) -> Result<u64, DeflateError> {
        loop {
            let ev = records.next()?;
            let after = self.pos + ev.covers() as usize;
            match &ev {
                Ev::Member(_) => {
                    self.member_start = self.pos;
                    self.prev = None;
                    self.open();
                }
                Ev::End(trailing) => {
                    if self.cur.is_some() {
                        return Err(
                            self.fault(Fault::Unfit("the stream ends inside a member"), self.pos)
                        );
                    }
                    while !self.jobs.is_empty() {
                        self.wait_one()?;
                    }
                    self.out.write_all(trailing).map_err(DeflateError::Write)?;
                    self.written += trailing.len() as u64;
                    let mut extra = [0u8; 1];
                    if self.raw.read(&mut extra).map_err(DeflateError::Read)? > 0 {
                        return Err(self.fault(
                            Fault::Unfit("raw bytes go on after the last block"),
                            self.pos,
                        ));
                    }
                    self.out.flush().map_err(DeflateError::Write)?;
                    return Ok(self.written);
                }
                _ => {}
            }
            if self.cur.is_none() {
                if !self.restarts || matches!(ev, Ev::MemberEnd { .. }) {
                    return Err(self.fault(Fault::Unfit("a block outside a member"), self.pos));
                }
                self.open();
            }
            let flush = ev.is_flush();
            let member_end = matches!(ev, Ev::MemberEnd { .. });
            let p = self.cur.as_mut().expect("opened above");
            if flush && !self.restarts {
                p.model.raw_mut().add_flush(self.pos);
            }
            p.evs.push_back(ev);
            self.pos = after;
            if (flush && self.restarts) || member_end {
                self.close()?;
                continue;
            }
            let start = self.cur.as_ref().expect("opened above").start;
            if !self.inline && self.pos - start > PIECE_MAX {
                while !self.jobs.is_empty() {
                    self.wait_one()?;
                }
                self.inline = true;
            }
            if self.inline {
                self.read_to(self.pos)?;
                let p = self.cur.as_mut().expect("opened above");
                if let Err(f) = p.run() {
                    let at = p.at;
                    return Err(self.fault(f, at));
                }
                let made = p.drain();
                self.put(made)?;
            }
        }
    }

    /// Read raw bytes up to `upto` into the current piece's window.
    fn read_to(&mut self, upto: usize) -> Result<(), DeflateError> {
        let mut buf = [0u8; 64 << 10];
        while self.read < upto {
            let n = (upto - self.read).min(buf.len());
            match self.raw.read(&mut buf[..n]) {
                Ok(0) => {
                    return Err(self.fault(Fault::Unfit("raw bytes end early"), self.read));
                }
                Ok(k) => {
                    if let Some(p) = self.cur.as_mut() {
                        p.model.raw_mut().push(&buf[..k]);
                    }
                    self.tail
                        .extend_from_slice(&buf[k.saturating_sub(HISTORY)..k]);
                    if self.tail.len() > 2 * HISTORY {
                        self.tail.drain(..self.tail.len() - HISTORY);
                    }
                    self.read += k;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DeflateError::Read(e)),
            }
        }
        Ok(())
    }

    /// Start a piece at `pos` (where the raw bytes read end).
    fn open(&mut self) {
        let h = predict::history(&self.name, self.prev).min(self.tail.len());
        let mut raw = Raw::new(self.pos - h, self.pos);
        raw.push(&self.tail[self.tail.len() - h..]);
        let model = predict::model(&self.name, raw).expect("checked at the start");
        let starts_member = self.pos == self.member_start;
        self.cur = Some(PieceDec::new(model, self.member_start, starts_member));
        self.inline = false;
    }

    /// The current piece ends at `pos`: re-create it here or on the pool.
    fn close(&mut self) -> Result<(), DeflateError> {
        self.read_to(self.pos)?;
        let Some(mut p) = self.cur.take() else {
            return Ok(());
        };
        p.model.raw_mut().set_end(self.pos);
        self.prev = Some((self.pos - p.start) as u64);
        if self.inline {
            let made = p.run().and_then(|()| p.finish());
            let at = p.at;
            let made = made.map_err(|f| self.fault(f, at))?;
            return self.put(made);
        }
        while self.jobs.len() >= in_flight() {
            self.wait_one()?;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        (self.spawn)(Box::new(move || {
            let r = p.run().and_then(|()| p.finish()).map_err(|f| (f, p.at));
            let _ = tx.send(r);
        }));
        self.jobs.push_back(rx);
        Ok(())
    }

    fn wait_one(&mut self) -> Result<(), DeflateError> {
        let Some(rx) = self.jobs.pop_front() else {
            return Ok(());
        };
        match rx.recv().expect("a re-creating piece panicked") {
            Ok(made) => self.put(made),
            Err((f, at)) => Err(self.fault(f, at)),
        }
    }

    /// Write a piece's bytes; check its member's CRC-32 when the piece is whole and ends it.
    fn put(&mut self, made: Made) -> Result<(), DeflateError> {
        if let Some((crc, starts_member, member_end)) = made.whole {
            if starts_member {
                self.crc = crc32fast::Hasher::new();
            }
            self.crc.combine(&crc);
            if let Some(recorded) = member_end {
                let actual = std::mem::take(&mut self.crc).finalize();
                if actual != recorded {
                    return Err(self.fault(Fault::RawChanged { recorded, actual }, self.pos));
                }
                self.member += 1;
            }
        }
        self.out
            .write_all(&made.bytes)
            .map_err(DeflateError::Write)?;
        self.written += made.bytes.len() as u64;
        Ok(())
    }
}

/// Where a Huffman block's walk is.
struct BlockState {
    end: usize,
    /// Offset of the next correction.
    corr: usize,
    /// Predictions to take before the next miss (`u64::MAX`: all the rest), and that miss.
    agreed: u64,
    miss: Option<Decision>,
    quirks: Quirks,
    /// Literals from here on are not yet written.
    lit_from: usize,
}

/// Walk a block's decisions from `at` with the model `m` and its corrections, writing them to `bits`; false when
/// the window ran out first (the walk goes on from `at` on the next call).
fn walk_decisions<M: Model>(
    m: &mut M,
    b: &mut BlockState,
    bits: &mut Bits<Vec<u8>>,
    corrections: &[u8],
    at: &mut usize,
    asked: &mut usize,
    member_start: usize,
) -> Result<bool, Fault> {
    let raw = m.raw();
    if b.end > raw.end() {
        return Err(Fault::Unfit("a block runs past its piece"));
    }
    // A decision at `p` needs the window to reach `p + LOOKAHEAD`, or the piece's end.
    let safe = if raw.end() <= raw.hi() {
        usize::MAX
    } else {
        raw.hi().saturating_sub(LOOKAHEAD)
    };
    let mut c = Cursor::new(&corrections[b.corr..]);
    let r = (|| -> Result<bool, Fault> {
        while *at < b.end {
            let p = *at;
            if p > safe {
                return Ok(false);
            }
            *asked = p;
            let predicted = m.predict(p);
            let d = if b.agreed > 0 {
                b.agreed = b.agreed.saturating_sub((b.agreed != u64::MAX) as u64);
                predicted
            } else {
                let d = b.miss.take().ok_or(Fault::Unfit("corrections run out"))?;
                if c.at_end() {
                    b.agreed = u64::MAX;
                } else {
                    b.agreed = c.varint()?;
                    b.miss = Some(get_decision(&mut c)?);
                }
                d
            };
            if let Decision::Match { len, dist } = d {
                let (len, dist) = (len as usize, dist as usize);
                if !(3..=258).contains(&len)
                    || dist == 0
                    || dist > 32768
                    || p + len > b.end
                    || dist > p - member_start
                {
                    return Err(Fault::Unfit("a match out of range"));
                }
                if p > b.lit_from {
                    bits.literals(&m.raw()[b.lit_from..p])?;
                }
                bits.matched(len as u32, dist as u32, b.quirks.next(len as u32))?;
                b.lit_from = p + len;
            } else if p + 1 - b.lit_from >= LITERAL_RUN {
                bits.literals(&m.raw()[b.lit_from..p + 1])?;
                b.lit_from = p + 1;
            }
            m.take(p, d);
            *at = p + d.advance();
        }
        Ok(true)
    })();
    b.corr += c.position();
    if *at > b.lit_from {
        bits.literals(&m.raw()[b.lit_from..*at])?;
        b.lit_from = *at;
    }
    r
}

/// One piece being re-created.
struct PieceDec {
    model: AnyModel,
    start: usize,
    member_start: usize,
    starts_member: bool,
    evs: VecDeque<Ev>,
    at: usize,
    /// The model has been walked up to here (it lags `at` after stored blocks until the window lets it follow).
    asked: usize,
    block: Option<BlockState>,
    bits: Bits<Vec<u8>>,
    crc: crc32fast::Hasher,
    /// Raw bytes before this are in `crc`.
    crc_at: usize,
    member_end: Option<u32>,
}

impl PieceDec {
    fn new(model: AnyModel, member_start: usize, starts_member: bool) -> Self {
        let start = model.raw().start();
        PieceDec {
            model,
            start,
            member_start,
            starts_member,
            evs: VecDeque::new(),
            at: start,
            asked: start,
            block: None,
            bits: Bits::new(Vec::new()),
            crc: crc32fast::Hasher::new(),
            crc_at: start,
            member_end: None,
        }
    }

    fn crc_to_at(&mut self) {
        if self.at > self.crc_at {
            self.crc.update(&self.model.raw()[self.crc_at..self.at]);
            self.crc_at = self.at;
        }
    }

    /// Walk the model through stored bytes up to `at`, once the window reaches far enough past it.
    fn catch_up(&mut self) {
        let raw = self.model.raw();
        if self.asked < self.at && (raw.end() <= raw.hi() || self.at + LOOKAHEAD <= raw.hi()) {
            self.model.reach(self.at);
            self.asked = self.at;
        }
    }

    /// Re-create as far as the raw bytes received allow.
    fn run(&mut self) -> Result<(), Fault> {
        loop {
            self.catch_up();
            let Some(ev) = self.evs.front() else {
                break;
            };
            match ev {
                Ev::Member(h) => self.bits.bytes(h)?,
                Ev::Stored { kind, pad, len } => {
                    let (kind, pad, len) = (*kind, *pad, *len as usize);
                    if self.model.raw().hi() < self.at + len {
                        break;
                    }
                    self.bits.stored(kind, pad, len as u64)?;
                    self.bits.bytes(&self.model.raw()[self.at..self.at + len])?;
                    self.at += len;
                }
                Ev::Block { .. } => {
                    if !self.walk_block()? {
                        break;
                    }
                }
                Ev::MemberEnd { pad, crc } => {
                    let (pad, crc) = (*pad, *crc);
                    self.bits
                        .member_end(pad, crc, (self.at - self.member_start) as u64)?;
                    self.member_end = Some(crc);
                }
                Ev::Huffman(_) | Ev::Toks(_) | Ev::BlockEnd { .. } | Ev::End(_) => {
                    return Err(Fault::Unfit("a record out of place"));
                }
            }
            self.evs.pop_front();
        }
        self.crc_to_at();
        self.model.raw_mut().forget_before(self.asked);
        Ok(())
    }

    /// Walk the front block from where the last call stopped; false when the window ran out first.
    fn walk_block(&mut self) -> Result<bool, Fault> {
        let Some(Ev::Block {
            head,
            raw_len,
            quirks,
            corrections,
        }) = self.evs.front()
        else {
            unreachable!("called on a block");
        };
        let b = match &mut self.block {
            Some(b) => b,
            None => {
                self.bits.huffman(head[0], &mut Cursor::new(&head[1..]))?;
                let mut q = Quirks::default();
                q.set(quirks.clone());
                let mut c = Cursor::new(corrections);
                let (agreed, miss) = if c.at_end() {
                    (u64::MAX, None)
                } else {
                    (c.varint()?, Some(get_decision(&mut c)?))
                };
                let end = self
                    .at
                    .checked_add(usize::try_from(*raw_len).unwrap_or(usize::MAX))
                    .filter(|&e| e < super::super::predict::raw::FAR)
                    .ok_or(Fault::Unfit("a block's raw length is out of range"))?;
                self.block.insert(BlockState {
                    end,
                    corr: c.position(),
                    agreed,
                    miss,
                    quirks: q,
                    lit_from: self.at,
                })
            }
        };
        let member_start = self.member_start;
        let (mut at, mut asked) = (self.at, self.asked);
        let r = with_model!(&mut self.model, m => walk_decisions(
            m,
            b,
            &mut self.bits,
            corrections,
            &mut at,
            &mut asked,
            member_start
        ));
        self.at = at;
        self.asked = asked;
        if !r? {
            return Ok(false);
        }
        if b.miss.is_some() || b.corr != corrections.len() {
            return Err(Fault::Unfit("corrections run past the block's end"));
        }
        b.quirks.done()?;
        self.bits.end_block()?;
        self.block = None;
        Ok(true)
    }

    /// The bytes made so far.
    fn drain(&mut self) -> Made {
        Made {
            bytes: std::mem::take(self.bits.w.writer_mut()),
            whole: None,
        }
    }

    /// The piece is re-created whole: the rest of its bytes, its raw bytes' CRC-32.
    fn finish(&mut self) -> Result<Made, Fault> {
        if !self.evs.is_empty() {
            return Err(Fault::Unfit("raw bytes end inside a piece"));
        }
        self.crc_to_at();
        self.bits.finish()?;
        Ok(Made {
            bytes: std::mem::take(self.bits.w.writer_mut()),
            whole: Some((
                std::mem::take(&mut self.crc),
                self.starts_member,
                self.member_end,
            )),
        })
    }
}
