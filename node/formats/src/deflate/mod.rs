//! Exact, producer-independent decomposition of gzip streams.
//!
//! [`decompose`] inflates a gzip file into its raw bytes and a [`Recreation`]: everything besides the raw bytes
//! that the file's producer chose. [`recompose`] re-encodes the raw bytes with those choices and gives back the
//! original file bit for bit, whatever produced it (GNU gzip, zlib, pigz and zopfli, Go's `compress/gzip`,
//! pgzip, Node's zlib …). Ferry can then chunk and deduplicate the raw bytes, where small changes stay small.
//!
//! - `bits`: LSB-first bit reader (64-bit buffer, streaming input) and writer.
//! - `huffman`: canonical codes from code lengths — decoding tables, encoding codes — and the length and
//!   distance alphabets.
//! - `decode`: the inflater, reporting what it reads (headers, blocks, decisions) to a sink as it goes.
//! - `encode`: writing a deflate stream's bits from recorded choices, every code checked (`recompose`).
//! - `format`: varints, the token encoding, a cursor over the re-creation data.
//! - [`predict`]: models of producers, over one piece of a stream read through a window.
//! - [`zip`]: zip containers (wheels, jars) as a skeleton plus their deflated members, which go through
//!   [`stream`] as one synthetic gzip stream.
//! - [`stream`]: decomposing and re-creating streams of any size in bounded memory, pieces side by side on the
//!   pool; its re-creation stream is what the store keeps. [`decompose`] and [`recompose`] here are the
//!   whole-stream forms (the tests' reference, and how data stored before the streaming form is read).
//!
//! # What is accepted
//!
//! One or more gzip members (RFC 1952) and then, optionally, trailing bytes that do not start with the gzip magic
//! `1f 8b` (at most [`MAX_TRAILING`] of them, kept verbatim). Each member's CRC-32 and ISIZE are verified while
//! decoding: a wrong trailer is an error, not something kept. The deflate data (RFC 1951) is accepted whenever it
//! can be decoded, which is a superset of what zlib's inflate accepts:
//! - incomplete codes (any of the three, e.g. a single distance code of length 1, or Go's and others' sparse
//!   trees) are fine as long as no code without a symbol is actually read;
//! - code lengths for literal/length symbols 286/287 and distance symbols 30/31 are fine unless those symbols
//!   are used (zlib refuses their mere definition);
//! - length 258 written as symbol 284 with extra bits 31 (RFC 1951's table gives 284 only 227–257, but zlib's
//!   inflate adds the extra bits to the base and takes it) is accepted and recorded as a *quirk*;
//! - over-subscribed codes, block type 3, a stored block whose NLEN is not the complement of LEN, a code-length
//!   repeat with nothing before it or running past HLIT + HDIST, a distance reaching before the start of the
//!   member, a reserved gzip flag, a method other than 8, and truncation are errors ([`DeflateError`]).
//!
//! Header fields are kept as they are: FEXTRA, FNAME and FCOMMENT (each at most [`MAX_FIELD`] bytes) and FHCRC,
//! which is not checked. Memory (of these whole-stream forms): the raw bytes stream through a window; `headers`
//! and `tokens` are built in memory and grow with the input — tokens by at most 12 bytes per input byte (a
//! 258-byte match can take two bits), in practice 20–30 % of the raw size. [`stream`] holds neither.
//!
//! # The re-creation format
//!
//! Two byte strings. *varint* is LEB128 (seven bits a byte, low first, high bit = more follows); *u8* one byte.
//!
//! ## `tokens`: the producer's match decisions, and nothing else
//!
//! ```text
//! tokens := item* [final]
//! item   := u8 R << 4 | L   [varint run − 15, if R = 15]   [u8 length − 18, if L = 15]   u8 u8 (d − 1, big-endian)
//! final  := u8 R << 4       [varint run − 15, if R = 15]
//! ```
//! where `R = min(run, 15)` and `L = min(length − 3, 15)`. Each item is `run` literals (their bytes are the next
//! raw bytes, so they are not stored) followed by one match of `length` (3..=258) bytes at distance `d`
//! (1..=32768). `final`, present when the stream ends with literals, is recognised by being the last thing in
//! `tokens`. A head byte for the common small values and a fixed two-byte distance came out 17–20 % smaller than
//! all-varint items, and 10–12 % smaller after zstd, on real tarballs.
//!
//! Literal runs are counted in raw bytes and run on across block and member boundaries; stored blocks add
//! nothing to the tokens (their bytes are all in raw and their lengths in `headers`). So the tokens are the LZ77
//! parse of the raw bytes as the producer made it — a function of content and producer alone, with no offsets,
//! block or member boundaries in it: the same content compressed with the same decisions gives the same token
//! bytes wherever it sits, and content-defined chunks of the token stream deduplicate.
//!
//! ## `headers`: framing, block boundaries and code definitions
//!
//! ```text
//! headers  := u8 1 (format version)  member*  u8 0  varint n  n bytes (trailing bytes, verbatim)
//! member   := u8 1  varint n  n bytes (the member header: ID1 … through FHCRC, verbatim)
//!             block+ (the last has BFINAL)  u8 end_pad  4 bytes CRC-32 (little-endian, as in the trailer)
//! block    := u8 kind (the block's three header bits: BFINAL | BTYPE << 1)
//!             stored:  u8 pad  varint LEN
//!             fixed:   varint raw_len  quirks
//!             dynamic: u8 HLIT−257  u8 HDIST−1  u8 HCLEN−4  (HCLEN) × u8 code-length-code length (in the
//!                      RFC's permuted order 16, 17, 18, 0, 8, …)  cl_symbol+  varint raw_len  quirks
//! cl_symbol := u8 0..=15 | u8 16 u8 extra(0..=3) | u8 17 u8 extra(0..=7) | u8 18 u8 extra(0..=127)
//! quirks   := varint count  count × varint gap
//! ```
//! - `pad` and `end_pad` are the values of the bits skipped to reach a byte boundary (before a stored block's
//!   LEN, and after the last block of a member), LSB first; how many there are follows from the bit position.
//! - `cl_symbol`s are exactly the code-length symbols the producer wrote, with their repeat extra bits, until
//!   HLIT + HDIST lengths are defined (a repeat may run from the literal/length lengths into the distance ones).
//! - `raw_len` is the number of raw bytes the block produces: the encoder takes tokens (splitting a literal run
//!   where needed) until it has covered `raw_len` bytes, then writes end-of-block. A match never crosses it.
//! - `quirks` lists the block's length-258 matches written as 284 + 31 instead of 285, by their ordinal among the
//!   block's length-258 matches: the first `gap` is the ordinal, each next one the distance from the previous
//!   ordinal + 1. Almost always `count` is 0.
//! - ISIZE is not stored: it is the member's raw length mod 2³². The CRC-32 is stored so that [`recompose`] can
//!   check the raw bytes it is given are the ones decomposed.
//!
//! ## Writing a predictor against it
//!
//! A predictor re-runs a producer's match finder (zlib level 6, Go's, pgzip's …) over the raw bytes and emits the
//! token stream that producer would have made; only the differences from `tokens` then need storing. Block
//! boundaries (`raw_len`), code lengths and the RLE of the code lengths (`cl_symbol`s) are likewise things a
//! producer derives from the tokens (zlib ends a block when its symbol buffer fills and builds its trees from
//! symbol frequencies), so they can be predicted from the same replay and compared field by field.

mod bits;
mod decode;
mod encode;
mod format;
mod huffman;
pub mod predict;
pub mod stream;
#[cfg(test)]
pub(crate) mod tests;
pub mod zip;

/// Longest FNAME or FCOMMENT accepted.
pub const MAX_FIELD: usize = 64 << 10;
/// Most trailing bytes after the last member accepted (they are kept in `headers`, in memory).
pub const MAX_TRAILING: usize = 1 << 20;

use std::io::{Read, Write};

/// What, besides the raw bytes, rebuilds a gzip file exactly (layout in the [module doc](self)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recreation {
    /// Member headers and trailers, block boundaries, code definitions, trailing bytes.
    pub headers: Vec<u8>,
    /// The producer's literal runs and matches.
    pub tokens: Vec<u8>,
}

/// Why a gzip stream could not be decomposed, or re-creation data could not be recomposed.
/// Members and blocks are numbered from 0 within the file and the member.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateError {
    /// Reading the gzip input or the raw bytes failed.
    #[error("reading: {0}")]
    Read(#[source] std::io::Error),
    /// Writing the raw bytes or the gzip output failed.
    #[error("writing: {0}")]
    Write(#[source] std::io::Error),
    /// The input is not gzip, or its deflate data cannot be decoded.
    #[error("malformed gzip at byte {offset} (member {member}, block {block}): {what}")]
    Malformed {
        what: &'static str,
        offset: u64,
        member: u64,
        block: u64,
    },
    /// The input ends inside a member.
    #[error("gzip input ends early at byte {offset} (member {member}, block {block})")]
    Truncated {
        offset: u64,
        member: u64,
        block: u64,
    },
    /// A member's trailer disagrees with its data; `offset` is where the field is in the input.
    #[error(
        "member {member}: trailer {field} at byte {offset} is {stored:#010x} but the data gives {actual:#010x}"
    )]
    Trailer {
        member: u64,
        offset: u64,
        field: &'static str,
        stored: u32,
        actual: u32,
    },
    /// The re-creation data is malformed or does not fit the raw bytes.
    #[error("re-creation data does not fit (member {member}, block {block}, raw byte {raw_offset}): {what}")]
    Recreation {
        what: &'static str,
        member: u64,
        block: u64,
        raw_offset: u64,
    },
    /// The raw bytes are not the ones decomposed: a member's CRC-32 differs from the recorded one.
    #[error("member {member}: raw bytes differ from the decomposed ones (CRC-32 {actual:#010x}, recorded {recorded:#010x})")]
    RawChanged {
        member: u64,
        recorded: u32,
        actual: u32,
    },
}

/// Decompress `input`, a gzip file (one or more members, possibly trailing bytes), writing the raw bytes to
/// `raw` as they come (through a 32 KiB window; memory does not grow with the file except for the returned
/// re-creation data). On error, what was written to `raw` is meaningless.
pub fn decompose(input: impl Read, raw: impl Write) -> Result<Recreation, DeflateError> {
    decode::decompose(input, raw)
}

/// Rebuild the exact gzip bytes from the raw bytes and the re-creation data, writing them to `out`; returns the
/// number of bytes written. Re-creation data that does not fit the raw bytes is an error; raw bytes that differ
/// from the decomposed ones are caught by their CRC-32 at the end of each member. On error, what was written to
/// `out` is meaningless.
pub fn recompose(raw: impl Read, re: &Recreation, out: impl Write) -> Result<u64, DeflateError> {
    encode::recompose(raw, re, out)
}
