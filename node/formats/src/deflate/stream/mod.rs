//! Decomposing and re-creating gzip streams of any size in bounded memory, in parallel where the producer
//! allows.
//!
//! - `ingest`: [`decompose`] — inflates a gzip stream, finds the producer's model on its first MiB (or takes
//!   the one that fitted a sibling blob), and writes the raw bytes and the *re-creation stream* (below) as they
//!   come, re-encoding everything it writes to check that it gives the input back.
//! - `recreate`: [`recompose`] — the raw bytes and the re-creation stream back into the gzip stream.
//!
//! Both cut the stream into *pieces* where the producer started afresh: every gzip member, and for producers
//! that compress parts of their input independently (pgzip) every part between sync flushes. A piece that ends
//! within [`PIECE_MAX`] raw bytes is handed whole to the rayon pool, so the parts of a pgzip layer are modelled
//! side by side on every core; a longer piece (a Go or zlib stream is one member) is walked as it arrives,
//! through a window ([`super::predict::Raw`]). Memory is a few pieces and a few batches of input, whatever the
//! blob's size; the one thing that grows with the input is a single Huffman block's corrections, capped at
//! [`MAX_RECORD`] (real producers end a block every 16–64 K symbols).
//!
//! # The re-creation stream
//!
//! What besides the raw bytes rebuilds a gzip stream exactly, in raw order, so it is written and read front to
//! back. It is the whole-stream `headers` format (see [`super`]) with each Huffman block's corrections in the
//! block's record, and the model named first:
//!
//! ```text
//! stream      := varint n  n bytes (model name)  member*  u8 0  varint n  n bytes (trailing bytes)
//! member      := u8 1  varint n  n bytes (member header)  block+  u8 end_pad  4 bytes CRC-32
//! block       := u8 kind
//!                stored:  u8 pad  varint LEN
//!                fixed:   varint raw_len  quirks  corrections
//!                dynamic: code definitions  varint raw_len  quirks  corrections
//! corrections := varint n  n bytes: (varint agreed  decision)*
//! ```
//! Corrections are the model's misses in the block (see [`super::predict`]), without the whole-stream form's
//! final count: after the last miss, the model's predictions run to the block's end. A block the model predicts
//! entirely has an empty list. Nothing in the stream is an absolute offset, so the records of content compressed
//! alike are alike wherever it sits.

mod ingest;
mod recreate;

pub use ingest::{decompose, decompose_in_memory, Decomposed, Options};
pub use recreate::{recompose, recompose_with, Spawn};

use super::decode::Tok;
use super::format::{TAG_END, TAG_MEMBER};
use super::DeflateError;
use std::io::{self, BufRead};

/// A piece longer than this is walked as it arrives rather than handed whole to the pool.
pub const PIECE_MAX: usize = 4 << 20;
/// Raw bytes per batch between the threads of a decomposition.
const BATCH_RAW: usize = 1 << 20;
/// The most bytes one block's record may take (its corrections, nearly all of it).
pub const MAX_RECORD: usize = 64 << 20;
/// The longest model name.
const MAX_NAME: u64 = 64;
/// The longest member header: ten bytes, FEXTRA, FNAME, FCOMMENT, FHCRC.
const MAX_HEADER: u64 = 10 + 2 + 65535 + 2 * (super::MAX_FIELD as u64 + 1) + 2;

/// Pieces handed to the pool and not yet written, at most.
fn in_flight() -> usize {
    2 * rayon::current_num_threads() + 2
}

/// One event of a stream, in raw order: what the decoder found, or what a record says.
#[derive(Clone, Debug)]
pub(crate) enum Ev {
    /// A member starts; its header.
    Member(Vec<u8>),
    /// A stored block (`kind`: its three header bits) with its padding bits and length.
    Stored { kind: u8, pad: u8, len: u16 },
    /// A Huffman block starts: its kind byte, then a dynamic block's code definitions.
    Huffman(Vec<u8>),
    /// Decisions of the current Huffman block (ingest only).
    Toks(Vec<Tok>),
    /// The current Huffman block ends (ingest only).
    BlockEnd { raw_len: u64, quirks: Vec<u64> },
    /// A whole Huffman block as recorded (re-creation only): its kind byte and code definitions, raw length,
    /// quirks and corrections.
    Block {
        head: Vec<u8>,
        raw_len: u64,
        quirks: Vec<u64>,
        corrections: Vec<u8>,
    },
    /// The member ends: padding after its last block, and its CRC-32.
    MemberEnd { pad: u8, crc: u32 },
    /// The stream ends; the bytes after the last member.
    End(Vec<u8>),
}

impl Ev {
    /// Raw bytes the event covers.
    fn covers(&self) -> u64 {
        match self {
            Ev::Stored { len, .. } => *len as u64,
            Ev::Toks(t) => t.iter().map(|t| t.covers()).sum(),
            Ev::Block { raw_len, .. } => *raw_len,
            _ => 0,
        }
    }

    /// A sync flush: an empty stored block that is not the member's last.
    fn is_flush(&self) -> bool {
        matches!(self, Ev::Stored { kind, len: 0, .. } if kind & 1 == 0)
    }
}

/// Reads the records of a re-creation stream, one event at a time (after [`Records::model`]).
pub(crate) struct Records<R> {
    r: R,
    /// Bytes read so far, for errors.
    at: u64,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between members.
    Members,
    /// Inside a member, expecting a block.
    Blocks,
    /// After a member's last block.
    MemberEnd,
    /// After the end.
    Done,
}

/// An error in the re-creation stream, `at` bytes in.
fn bad(what: &'static str, at: u64) -> DeflateError {
    DeflateError::Malformed {
        what,
        offset: at,
        member: 0,
        block: 0,
    }
}

impl<R: BufRead> Records<R> {
    pub fn new(r: R) -> Self {
        Records {
            r,
            at: 0,
            state: State::Members,
        }
    }

    fn u8(&mut self) -> Result<u8, DeflateError> {
        let mut b = [0u8];
        self.r.read_exact(&mut b).map_err(|e| self.short(e))?;
        self.at += 1;
        Ok(b[0])
    }

    fn short(&self, e: io::Error) -> DeflateError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            bad("the re-creation stream ends early", self.at)
        } else {
            DeflateError::Read(e)
        }
    }

    fn varint(&mut self) -> Result<u64, DeflateError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f)
                .checked_shl(shift)
                .filter(|x| x >> shift == u64::from(b & 0x7f))
                .ok_or_else(|| bad("a varint is longer than 64 bits", self.at))?;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(bad("a varint is longer than 64 bits", self.at))
    }

    fn bytes(&mut self, n: u64, max: u64, what: &'static str) -> Result<Vec<u8>, DeflateError> {
        if n > max {
            return Err(bad(what, self.at));
        }
        let mut v = vec![0u8; n as usize];
        self.r.read_exact(&mut v).map_err(|e| self.short(e))?;
        self.at += n;
        Ok(v)
    }

    /// The model name that starts the stream.
    pub fn model(&mut self) -> Result<String, DeflateError> {
        let n = self.varint()?;
        let name = self.bytes(n, MAX_NAME, "the model name is too long")?;
        String::from_utf8(name).map_err(|_| bad("the model name is not UTF-8", self.at))
    }

    /// The next event (never `Toks` or `BlockEnd`); after `End`, an error.
    pub fn next(&mut self) -> Result<Ev, DeflateError> {
        match self.state {
            State::Done => Err(bad("records after the end", self.at)),
            State::Members => match self.u8()? {
                TAG_MEMBER => {
                    let n = self.varint()?;
                    let h = self.bytes(n, MAX_HEADER, "a member header is too long")?;
                    self.state = State::Blocks;
                    Ok(Ev::Member(h))
                }
                TAG_END => {
                    let n = self.varint()?;
                    let t = self.bytes(n, super::MAX_TRAILING as u64, "too many trailing bytes")?;
                    self.state = State::Done;
                    Ok(Ev::End(t))
                }
                _ => Err(bad("unknown record", self.at)),
            },
            State::MemberEnd => {
                let pad = self.u8()?;
                let mut crc = [0u8; 4];
                self.r.read_exact(&mut crc).map_err(|e| self.short(e))?;
                self.at += 4;
                self.state = State::Members;
                Ok(Ev::MemberEnd {
                    pad,
                    crc: u32::from_le_bytes(crc),
                })
            }
            State::Blocks => {
                let kind = self.u8()?;
                if kind > 5 {
                    return Err(bad("block kind is not BFINAL | BTYPE << 1", self.at));
                }
                if kind & 1 == 1 {
                    self.state = State::MemberEnd;
                }
                if kind >> 1 == 0 {
                    let pad = self.u8()?;
                    let len = self.varint()?;
                    let len = u16::try_from(len)
                        .map_err(|_| bad("stored block longer than 65535 bytes", self.at))?;
                    return Ok(Ev::Stored { kind, pad, len });
                }
                let mut head = vec![kind];
                if kind >> 1 == 2 {
                    self.code_definitions(&mut head)?;
                }
                let raw_len = self.varint()?;
                let nq = self.varint()?;
                if nq > MAX_RECORD as u64 {
                    return Err(bad("too many quirks", self.at));
                }
                let mut quirks = Vec::with_capacity(nq.min(1024) as usize);
                let mut next = 0u64;
                for _ in 0..nq {
                    let q = next
                        .checked_add(self.varint()?)
                        .ok_or_else(|| bad("a quirk's ordinal overflows", self.at))?;
                    quirks.push(q);
                    next = q.saturating_add(1);
                }
                let n = self.varint()?;
                let corrections =
                    self.bytes(n, MAX_RECORD as u64, "a block's corrections are too long")?;
                Ok(Ev::Block {
                    head,
                    raw_len,
                    quirks,
                    corrections,
                })
            }
        }
    }

    /// A dynamic block's code definitions, appended to `head` as they are.
    fn code_definitions(&mut self, head: &mut Vec<u8>) -> Result<(), DeflateError> {
        let mut take = |s: &mut Self| -> Result<u8, DeflateError> {
            let b = s.u8()?;
            head.push(b);
            Ok(b)
        };
        let hlit = take(self)? as usize + 257;
        let hdist = take(self)? as usize + 1;
        let hclen = take(self)? as usize + 4;
        if hclen > 19 {
            return Err(bad("HCLEN above 15", self.at));
        }
        for _ in 0..hclen {
            take(self)?;
        }
        let mut defined = 0;
        while defined < hlit + hdist {
            defined += match take(self)? {
                0..=15 => 1,
                16 => 3 + take(self)? as usize,
                17 => 3 + take(self)? as usize,
                18 => 11 + take(self)? as usize,
                _ => return Err(bad("code-length symbol above 18", self.at)),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
