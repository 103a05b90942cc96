//! Decomposing a gzip stream as it is read: the decoder on a thread of its own, the walker (models, records,
//! the check by re-encoding) on the caller's, pieces on the pool.

use super::{in_flight, Ev, BATCH_RAW, MAX_RECORD, PIECE_MAX};
use crate::deflate::decode::{self, Sink, Tok};
use crate::deflate::encode::{Bits, Fault};
use crate::deflate::format::{put_varint, Cursor, TAG_END, TAG_MEMBER};
use crate::deflate::predict::raw::{Raw, HISTORY, LOOKAHEAD};
use crate::deflate::predict::{self, put_decision, with_model, AnyModel, Decision, Model};
use crate::deflate::DeflateError;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::mpsc;

/// Models are tried on the decisions before this raw offset.
const TRIAL_RAW: usize = 1 << 20;
/// Decisions buffered by the decoder before they go to the walker.
const BATCH_TOKS: usize = 1 << 16;

/// How to decompose.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A model to try first (the one a sibling blob of the same image took): taken without trying the others if
    /// it misses nothing on the start of the stream.
    pub hint: Option<String>,
    /// The model to use, untried.
    pub model: Option<String>,
}

/// What [`decompose`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decomposed {
    /// The model whose corrections are stored ("literals" when none fits).
    pub model: String,
    /// Raw bytes written.
    pub raw_len: u64,
    /// Re-creation stream bytes written.
    pub recreation_len: u64,
    /// Decisions in the stream, and those the model missed.
    pub decisions: u64,
    pub misses: u64,
    /// The BLAKE3 and length of the gzip stream re-encoded from what was written: equal to the input's when
    /// what was written re-creates it.
    pub reencoded: [u8; 32],
    pub reencoded_len: u64,
}

/// Decompose the gzip stream `input`: its raw bytes go to `raw` and its re-creation stream to `rec`, both as
/// they come. Everything written is re-encoded on the way; the caller compares [`Decomposed::reencoded`] with
/// the input's BLAKE3 (which it has, having hashed what it passed in) before relying on it. `raw` is called on a
/// thread of the decoder's, `rec` on the caller's. On error what was written is meaningless.
pub fn decompose<R, F, G>(
    input: R,
    raw: F,
    mut rec: G,
    opts: &Options,
) -> Result<Decomposed, DeflateError>
where
    R: Read + Send,
    F: FnMut(&[u8]) -> io::Result<()> + Send,
    G: FnMut(&[u8]) -> io::Result<()>,
{
    let (tx, rx) = mpsc::sync_channel::<Batch>(4);
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            let b = Batcher {
                tx,
                cur: Batch::default(),
                raw_out: raw,
                toks: 0,
            };
            decode::run(input, b).and_then(|mut b| b.send().map_err(DeflateError::Write))
        });
        let walked = walk(&rx, &mut rec, opts);
        drop(rx);
        let decoded = decoder.join().expect("the gzip decoder panicked");
        // The decoder's error is the cause when it has one (the walker then only saw the stream stop).
        decoded?;
        walked
    })
}

/// [`decompose`] into memory: the decomposition, the raw bytes and the re-creation stream (for tests, fuzzing
/// and tools; the store streams).
pub fn decompose_in_memory<R: Read + Send>(
    input: R,
    opts: &Options,
) -> Result<(Decomposed, Vec<u8>, Vec<u8>), DeflateError> {
    let (mut raw, mut rec) = (Vec::new(), Vec::new());
    let d = decompose(
        input,
        |b: &[u8]| {
            raw.extend_from_slice(b);
            Ok(())
        },
        |b: &[u8]| {
            rec.extend_from_slice(b);
            Ok(())
        },
        opts,
    )?;
    Ok((d, raw, rec))
}

/// Events and the raw bytes they cover.
#[derive(Default)]
struct Batch {
    raw: Vec<u8>,
    evs: Vec<Ev>,
}

/// Collects the decoder's events into batches for the walker; raw bytes also go to `raw_out` as they come.
struct Batcher<F> {
    tx: mpsc::SyncSender<Batch>,
    cur: Batch,
    raw_out: F,
    toks: usize,
}

impl<F> Batcher<F> {
    fn send(&mut self) -> io::Result<()> {
        self.toks = 0;
        let b = std::mem::take(&mut self.cur);
        self.tx
            .send(b)
            .map_err(|_| io::Error::other("the walker stopped"))
    }

    fn maybe_send(&mut self) -> io::Result<()> {
        if self.cur.raw.len() >= BATCH_RAW || self.toks >= BATCH_TOKS {
            self.send()?;
        }
        Ok(())
    }
}

impl<F: FnMut(&[u8]) -> io::Result<()>> Sink for Batcher<F> {
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        (self.raw_out)(bytes)?;
        self.cur.raw.extend_from_slice(bytes);
        self.maybe_send()
    }
    fn member(&mut self, header: &[u8]) -> io::Result<()> {
        self.cur.evs.push(Ev::Member(header.to_vec()));
        Ok(())
    }
    fn stored(&mut self, kind: u8, pad: u8, len: u16) -> io::Result<()> {
        self.cur.evs.push(Ev::Stored { kind, pad, len });
        Ok(())
    }
    fn huffman(&mut self, head: &[u8]) -> io::Result<()> {
        self.cur.evs.push(Ev::Huffman(head.to_vec()));
        Ok(())
    }
    fn tokens(&mut self, toks: &[Tok]) -> io::Result<()> {
        self.toks += toks.len();
        self.cur.evs.push(Ev::Toks(toks.to_vec()));
        self.maybe_send()
    }
    fn block_end(&mut self, raw_len: u64, quirks: &[u64]) -> io::Result<()> {
        self.cur.evs.push(Ev::BlockEnd {
            raw_len,
            quirks: quirks.to_vec(),
        });
        Ok(())
    }
    fn member_end(&mut self, pad: u8, crc: u32) -> io::Result<()> {
        self.cur.evs.push(Ev::MemberEnd { pad, crc });
        Ok(())
    }
    fn end(&mut self, trailing: &[u8]) -> io::Result<()> {
        self.cur.evs.push(Ev::End(trailing.to_vec()));
        Ok(())
    }
}

/// Buffer the start of the stream, choose the model on it, then walk everything with that model.
fn walk(
    rx: &mpsc::Receiver<Batch>,
    rec: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    opts: &Options,
) -> Result<Decomposed, DeflateError> {
    let mut start: Vec<Batch> = Vec::new();
    let mut raw = 0usize;
    let mut ended = false;
    while raw < TRIAL_RAW + LOOKAHEAD && !ended {
        let Ok(b) = rx.recv() else {
            return Err(stopped());
        };
        raw += b.raw.len();
        ended = b.evs.iter().any(|e| matches!(e, Ev::End(_)));
        start.push(b);
    }
    let model = match &opts.model {
        Some(m) if predict::model(m, Raw::new(0, 0)).is_some() => m.clone(),
        Some(_) => {
            return Err(DeflateError::Recreation {
                what: "no such model",
                member: 0,
                block: 0,
                raw_offset: 0,
            })
        }
        None => choose(&start, opts)?,
    };
    let mut w = Walker::new(&model, None, rec)?;
    for b in start.into_iter().chain(rx.iter()) {
        if w.batch(b)? {
            return w.finish();
        }
    }
    Err(stopped())
}

/// The decoder stopped without an end (its own error says why).
fn stopped() -> DeflateError {
    DeflateError::Read(io::Error::other("the gzip decoder stopped"))
}

/// The model for a stream whose first batches are `start`: the hint if it misses nothing there, else the model
/// with the fewest misses among those that get most decisions right ("literals" if none does).
fn choose(start: &[Batch], opts: &Options) -> Result<String, DeflateError> {
    let hint = opts
        .hint
        .as_deref()
        .filter(|h| predict::model(h, Raw::new(0, 0)).is_some());
    let candidates = hint.into_iter().chain(
        predict::MODELS
            .iter()
            .copied()
            .filter(|&m| m != "literals" && Some(m) != hint),
    );
    let mut best: Option<(&str, u64)> = None;
    for name in candidates {
        let (decisions, misses) = trial(name, start)?;
        if decisions == 0 {
            // Nothing to predict (stored blocks only): any model will do.
            return Ok(hint.unwrap_or("literals").to_string());
        }
        // A model missing most decisions is not this producer's.
        if misses * 2 < decisions && best.is_none_or(|(_, m)| misses < m) {
            best = Some((name, misses));
        }
        if misses == 0 {
            // MODELS lists the common producers first; a model with no miss is the one.
            break;
        }
    }
    Ok(best.map_or("literals", |(n, _)| n).to_string())
}

/// (decisions, misses) of the model `name` before [`TRIAL_RAW`].
fn trial(name: &str, start: &[Batch]) -> Result<(u64, u64), DeflateError> {
    let mut sink = |_: &[u8]| Ok(());
    let mut w = Walker::new(name, Some(TRIAL_RAW), &mut sink)?;
    for b in start {
        let b = Batch {
            raw: b.raw.clone(),
            evs: b.evs.clone(),
        };
        if w.batch(b)? || w.pos > TRIAL_RAW + LOOKAHEAD {
            break;
        }
    }
    if let Some(mut p) = w.cur.take() {
        // The piece the trial stops in: walk what its window allows.
        p.run().map_err(|f| w.fault(f))?;
        w.decisions += p.decisions;
        w.misses += p.misses;
    }
    Ok((w.decisions, w.misses))
}

/// A piece's output: its records and its re-encoded bytes, and how well the model did.
struct Done {
    rec: Vec<u8>,
    bytes: Vec<u8>,
    decisions: u64,
    misses: u64,
}

/// Cuts the stream into pieces, hands each to the pool (or walks a long one itself) and writes their outputs
/// in order.
struct Walker<'a> {
    name: String,
    restarts: bool,
    /// Trials: count decisions before this, walk everything inline, write nothing.
    limit: Option<usize>,
    /// Raw bytes received: `stage[taken..]` are not yet given to a piece and start at raw offset `given`.
    stage: Vec<u8>,
    taken: usize,
    given: usize,
    /// The last raw bytes given, up to [`HISTORY`]: the dictionary of the next piece.
    tail: Vec<u8>,
    /// Raw position reached by the events received.
    pos: usize,
    /// The piece being fed, and whether it is walked here as it arrives.
    cur: Option<PieceEnc>,
    inline: bool,
    member_start: usize,
    /// The raw length of the last piece closed in the current member.
    prev: Option<u64>,
    jobs: VecDeque<mpsc::Receiver<Result<Done, (Fault, usize)>>>,
    rec: &'a mut dyn FnMut(&[u8]) -> io::Result<()>,
    rec_len: u64,
    hash: blake3::Hasher,
    hashed: u64,
    decisions: u64,
    misses: u64,
}

impl<'a> Walker<'a> {
    fn new(
        name: &str,
        limit: Option<usize>,
        rec: &'a mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<Self, DeflateError> {
        let mut w = Walker {
            name: name.to_string(),
            restarts: predict::restarts_at_flush(name),
            limit,
            stage: Vec::new(),
            taken: 0,
            given: 0,
            tail: Vec::new(),
            pos: 0,
            cur: None,
            inline: limit.is_some(),
            member_start: 0,
            prev: None,
            jobs: VecDeque::new(),
            rec,
            rec_len: 0,
            hash: blake3::Hasher::new(),
            hashed: 0,
            decisions: 0,
            misses: 0,
        };
        let mut head = Vec::new();
        put_varint(&mut head, name.len() as u64);
        head.extend_from_slice(name.as_bytes());
        w.write(&head, &[]).map_err(DeflateError::Write)?;
        Ok(w)
    }

    fn fault(&self, f: Fault) -> DeflateError {
        match f {
            Fault::Write(e) => DeflateError::Write(e),
            Fault::Unfit(what) => DeflateError::Recreation {
                what,
                member: 0,
                block: 0,
                raw_offset: self.pos as u64,
            },
            Fault::RawChanged { recorded, actual } => DeflateError::RawChanged {
                member: 0,
                recorded,
                actual,
            },
        }
    }

    /// Write records and account for re-encoded bytes (nothing in a trial).
    fn write(&mut self, rec: &[u8], bytes: &[u8]) -> io::Result<()> {
        if self.limit.is_some() {
            return Ok(());
        }
        if !rec.is_empty() {
            (self.rec)(rec)?;
            self.rec_len += rec.len() as u64;
        }
        self.hash.update(bytes);
        self.hashed += bytes.len() as u64;
        Ok(())
    }

    fn done(&mut self, d: Done) -> io::Result<()> {
        self.decisions += d.decisions;
        self.misses += d.misses;
        self.write(&d.rec, &d.bytes)
    }

    /// Wait for the oldest piece on the pool and write its output.
    fn wait_one(&mut self) -> Result<(), DeflateError> {
        let Some(rx) = self.jobs.pop_front() else {
            return Ok(());
        };
        match rx.recv().expect("a decomposing piece panicked") {
            Ok(d) => self.done(d).map_err(DeflateError::Write),
            Err((f, at)) => {
                self.pos = at;
                Err(self.fault(f))
            }
        }
    }

    /// Take a batch; true once the stream's end was in it.
    fn batch(&mut self, b: Batch) -> Result<bool, DeflateError> {
        if self.taken > 0 && self.taken * 2 >= self.stage.len() {
            self.stage.drain(..self.taken);
            self.taken = 0;
        }
        if self.stage.is_empty() {
            self.stage = b.raw;
        } else {
            self.stage.extend_from_slice(&b.raw);
        }
        for ev in b.evs {
            if self.event(ev)? {
                return Ok(true);
            }
        }
        if let Some(p) = self.cur.as_mut().filter(|_| self.inline) {
            p.run()
                .map_err(|f| {
                    let at = p.at;
                    (f, at)
                })
                .map_err(|(f, at)| {
                    self.pos = at;
                    self.fault(f)
                })?;
            self.drain_inline()?;
        }
        Ok(false)
    }

    /// Give the current piece the raw bytes up to `upto` (as far as received).
    fn give(&mut self, upto: usize) {
        let Some(p) = self.cur.as_mut() else {
            return;
        };
        let n = upto
            .saturating_sub(self.given)
            .min(self.stage.len() - self.taken);
        if n == 0 {
            return;
        }
        let bytes = &self.stage[self.taken..self.taken + n];
        p.model.raw_mut().push(bytes);
        // Only the last HISTORY bytes are ever a dictionary.
        let keep = &bytes[n.saturating_sub(HISTORY)..];
        self.tail.extend_from_slice(keep);
        if self.tail.len() > 2 * HISTORY {
            self.tail.drain(..self.tail.len() - HISTORY);
        }
        self.taken += n;
        self.given += n;
    }

    /// Start a piece at `pos` (where `given` is).
    fn open(&mut self) {
        debug_assert_eq!(self.given, self.pos);
        let h = predict::history(&self.name, self.prev).min(self.tail.len());
        let mut raw = Raw::new(self.pos - h, self.pos);
        raw.push(&self.tail[self.tail.len() - h..]);
        let model = predict::model(&self.name, raw).expect("a known model");
        let limit = self.limit.unwrap_or(usize::MAX);
        self.cur = Some(PieceEnc::new(model, self.member_start, limit));
        self.inline = self.limit.is_some();
    }

    /// The current piece ends at `pos`: walk it here or hand it to the pool.
    fn close(&mut self) -> Result<(), DeflateError> {
        self.give(self.pos);
        let Some(mut p) = self.cur.take() else {
            return Ok(());
        };
        p.model.raw_mut().set_end(self.pos);
        self.prev = Some((self.pos - p.start) as u64);
        if self.inline {
            if self.limit.is_some_and(|l| p.start >= l) {
                return Ok(());
            }
            p.run().map_err(|f| {
                self.pos = p.at;
                self.fault(f)
            })?;
            let d = p.finish().map_err(|f| self.fault(f))?;
            return self.done(d).map_err(DeflateError::Write);
        }
        while self.jobs.len() >= in_flight() {
            self.wait_one()?;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        rayon::spawn(move || {
            let r = p.run().map_err(|f| (f, p.at)).and_then(|()| {
                let at = p.at;
                p.finish().map_err(|f| (f, at))
            });
            let _ = tx.send(r);
        });
        self.jobs.push_back(rx);
        Ok(())
    }

    /// Write what the piece walked here has made so far.
    fn drain_inline(&mut self) -> Result<(), DeflateError> {
        let Some(p) = self.cur.as_mut() else {
            return Ok(());
        };
        let d = p.drain();
        self.done(d).map_err(DeflateError::Write)
    }

    /// Take one event; true at the end.
    fn event(&mut self, ev: Ev) -> Result<bool, DeflateError> {
        let after = self.pos + ev.covers() as usize;
        match &ev {
            Ev::Member(_) => {
                self.member_start = self.pos;
                self.prev = None;
                self.open();
            }
            Ev::End(trailing) => {
                while !self.jobs.is_empty() {
                    self.wait_one()?;
                }
                let mut r = vec![TAG_END];
                put_varint(&mut r, trailing.len() as u64);
                r.extend_from_slice(trailing);
                self.write(&r, trailing).map_err(DeflateError::Write)?;
                return Ok(true);
            }
            _ => {}
        }
        if self.cur.is_none() {
            // After a flush that ended a piece: the next one starts here.
            self.open();
        }
        let flush = ev.is_flush();
        let member_end = matches!(ev, Ev::MemberEnd { .. });
        let p = self.cur.as_mut().expect("opened above");
        if flush && !self.restarts {
            p.model.raw_mut().add_flush(self.pos);
        }
        p.feed(ev);
        self.pos = after;
        self.give(after);
        if (flush && self.restarts) || member_end {
            return self.close().map(|()| false);
        }
        let p = self.cur.as_mut().expect("opened above");
        if !self.inline && self.pos - p.start > PIECE_MAX {
            // A long piece: write everything before it, then walk it here as it arrives.
            while !self.jobs.is_empty() {
                self.wait_one()?;
            }
            self.inline = true;
        }
        Ok(false)
    }

    fn finish(mut self) -> Result<Decomposed, DeflateError> {
        while !self.jobs.is_empty() {
            self.wait_one()?;
        }
        Ok(Decomposed {
            model: self.name.clone(),
            raw_len: self.pos as u64,
            recreation_len: self.rec_len,
            decisions: self.decisions,
            misses: self.misses,
            reencoded: *self.hash.finalize().as_bytes(),
            reencoded_len: self.hashed,
        })
    }
}

/// One piece being decomposed: its events are walked with the model as far as the window allows, giving the
/// piece's records and, re-encoded, its gzip bytes.
struct PieceEnc {
    model: AnyModel,
    start: usize,
    member_start: usize,
    evs: VecDeque<Ev>,
    /// Raw position of the next byte to walk.
    at: usize,
    /// The model has been walked up to here (it lags `at` after stored blocks until the window lets it follow).
    asked: usize,
    /// In the front `Toks` event: the next token, and its literals walked.
    tok: usize,
    lits_done: u32,
    /// The current Huffman block: where it started, its corrections, decisions agreed since the last miss.
    block_start: usize,
    corrections: Vec<u8>,
    agreed: u64,
    rec: Vec<u8>,
    bits: Bits<Vec<u8>>,
    /// Decisions before this are counted.
    limit: usize,
    decisions: u64,
    misses: u64,
}

impl PieceEnc {
    fn new(model: AnyModel, member_start: usize, limit: usize) -> Self {
        let start = model.raw().start();
        PieceEnc {
            model,
            start,
            member_start,
            evs: VecDeque::new(),
            at: start,
            asked: start,
            tok: 0,
            lits_done: 0,
            block_start: start,
            corrections: Vec::new(),
            agreed: 0,
            rec: Vec::new(),
            bits: Bits::new(Vec::new()),
            limit,
            decisions: 0,
            misses: 0,
        }
    }

    fn feed(&mut self, ev: Ev) {
        self.evs.push_back(ev);
    }

    /// Walk the model through stored bytes up to `at`, once the window reaches far enough past it.
    fn catch_up(&mut self) {
        let raw = self.model.raw();
        if self.asked < self.at && (raw.end() <= raw.hi() || self.at + LOOKAHEAD <= raw.hi()) {
            self.model.reach(self.at);
            self.asked = self.at;
        }
    }

    /// Walk as far as the raw bytes received allow.
    fn run(&mut self) -> Result<(), Fault> {
        loop {
            self.catch_up();
            let Some(ev) = self.evs.front_mut() else {
                break;
            };
            match ev {
                Ev::Toks(toks) => {
                    let toks = std::mem::take(toks);
                    let done = self.walk(&toks);
                    if let Some(Ev::Toks(t)) = self.evs.front_mut() {
                        *t = toks;
                    }
                    if !done? {
                        break;
                    }
                    self.tok = 0;
                    self.lits_done = 0;
                }
                Ev::Stored { kind, pad, len } => {
                    let (kind, pad, len) = (*kind, *pad, *len as usize);
                    if self.model.raw().hi() < self.at + len {
                        break;
                    }
                    push_stored(&mut self.rec, kind, pad, len as u16);
                    self.bits.stored(kind, pad, len as u64)?;
                    let raw = self.model.raw();
                    self.bits.bytes(&raw[self.at..self.at + len])?;
                    self.at += len;
                }
                Ev::Member(h) => {
                    self.rec.push(TAG_MEMBER);
                    put_varint(&mut self.rec, h.len() as u64);
                    self.rec.extend_from_slice(h);
                    self.bits.bytes(h)?;
                }
                Ev::Huffman(head) => {
                    self.rec.extend_from_slice(head);
                    self.bits.huffman(head[0], &mut Cursor::new(&head[1..]))?;
                    self.block_start = self.at;
                    self.corrections.clear();
                    self.agreed = 0;
                }
                Ev::BlockEnd { raw_len, quirks } => {
                    if (self.at - self.block_start) as u64 != *raw_len {
                        return Err(Fault::Unfit(
                            "a block's decisions do not cover its raw bytes",
                        ));
                    }
                    crate::deflate::decode::put_quirks(&mut self.rec, *raw_len, quirks);
                    put_varint(&mut self.rec, self.corrections.len() as u64);
                    self.rec.extend_from_slice(&self.corrections);
                    self.bits.end_block()?;
                }
                Ev::MemberEnd { pad, crc } => {
                    self.rec.push(*pad);
                    self.rec.extend_from_slice(&crc.to_le_bytes());
                    self.bits
                        .member_end(*pad, *crc, (self.at - self.member_start) as u64)?;
                }
                Ev::Block { .. } | Ev::End(_) => {
                    return Err(Fault::Unfit("an event decomposing does not make"));
                }
            }
            self.evs.pop_front();
        }
        self.model.raw_mut().forget_before(self.asked);
        Ok(())
    }

    /// Walk the decisions of `toks` from where the last call stopped; false when the window ran out first.
    fn walk(&mut self, toks: &[Tok]) -> Result<bool, Fault> {
        let mut st = Walking {
            at: self.at,
            asked: self.asked,
            tok: self.tok,
            lits_done: self.lits_done,
            agreed: self.agreed,
            decisions: self.decisions,
            misses: self.misses,
            limit: self.limit,
        };
        let r = with_model!(&mut self.model, m => walk_toks(
            m,
            &mut st,
            &mut self.bits,
            &mut self.corrections,
            toks
        ));
        self.at = st.at;
        self.asked = st.asked;
        self.tok = st.tok;
        self.lits_done = st.lits_done;
        self.agreed = st.agreed;
        self.decisions = st.decisions;
        self.misses = st.misses;
        r
    }

    /// Take what was made so far.
    fn drain(&mut self) -> Done {
        Done {
            rec: std::mem::take(&mut self.rec),
            bytes: std::mem::take(self.bits.w.writer_mut()),
            decisions: std::mem::take(&mut self.decisions),
            misses: std::mem::take(&mut self.misses),
        }
    }

    /// The piece is walked whole: its output.
    fn finish(&mut self) -> Result<Done, Fault> {
        if !self.evs.is_empty() {
            return Err(Fault::Unfit("the raw bytes end inside a piece"));
        }
        self.bits.finish()?;
        Ok(self.drain())
    }
}

/// Where a walk of decisions is (see [`PieceEnc`]'s fields of the same names).
struct Walking {
    at: usize,
    asked: usize,
    tok: usize,
    lits_done: u32,
    agreed: u64,
    decisions: u64,
    misses: u64,
    limit: usize,
}

/// The model's decision at `p` against the producer's.
#[inline(always)]
fn decide<M: Model>(
    m: &mut M,
    st: &mut Walking,
    corrections: &mut Vec<u8>,
    p: usize,
    actual: Decision,
) {
    st.asked = p;
    let predicted = m.predict(p);
    let counted = p < st.limit;
    st.decisions += counted as u64;
    if predicted == actual {
        st.agreed += 1;
    } else {
        st.misses += counted as u64;
        put_varint(corrections, st.agreed);
        put_decision(corrections, actual);
        st.agreed = 0;
    }
    m.take(p, actual);
}

/// Walk the decisions of `toks` with the model `m` from `st`; false when the window ran out first.
fn walk_toks<M: Model>(
    m: &mut M,
    st: &mut Walking,
    bits: &mut Bits<Vec<u8>>,
    corrections: &mut Vec<u8>,
    toks: &[Tok],
) -> Result<bool, Fault> {
    let raw = m.raw();
    // A decision at `p` needs the window to reach `p + LOOKAHEAD`, or the piece's end.
    let safe = if raw.end() <= raw.hi() {
        usize::MAX
    } else {
        raw.hi().saturating_sub(LOOKAHEAD)
    };
    while let Some(&t) = toks.get(st.tok) {
        let lit_from = st.at;
        while st.lits_done < t.lits {
            let p = st.at;
            if p > safe {
                break;
            }
            decide(m, st, corrections, p, Decision::Literal);
            st.at += 1;
            st.lits_done += 1;
        }
        if st.at > lit_from {
            bits.literals(&m.raw()[lit_from..st.at])?;
        }
        if st.lits_done < t.lits {
            return Ok(false);
        }
        let len = t.match_len();
        if len > 0 {
            let p = st.at;
            if p > safe {
                return Ok(false);
            }
            decide(m, st, corrections, p, Decision::Match { len, dist: t.dist });
            bits.matched(len as u32, t.dist as u32, t.len & Tok::QUIRK != 0)?;
            st.at += len as usize;
        }
        st.tok += 1;
        st.lits_done = 0;
        if corrections.len() > MAX_RECORD {
            return Err(Fault::Unfit(
                "one block's corrections pass the most a record may hold",
            ));
        }
    }
    Ok(true)
}

/// A stored block's record.
fn push_stored(rec: &mut Vec<u8>, kind: u8, pad: u8, len: u16) {
    rec.extend_from_slice(&[kind, pad]);
    put_varint(rec, len as u64);
}
