//! The zstd block encoder's entropy stage: a port of klauspost/compress 1.15.12's `zstd/blockenc.go`.
//!
//! A match finder fills a [`BlockEnc`] with a block's literals and sequences; [`BlockEnc::encode`] turns them
//! into a compressed block (literals with huff0, sequences with FSE), or a raw one. The block encoder lives
//! across the blocks of a frame and carries state from one to the next: the recent offsets, the FSE tables
//! that may be repeated, and the huff0 table that may be reused. The output must match Go's byte for byte, so
//! every decision (table choice, the cost estimates behind it, when to give up as incompressible) is Go's.
//! Dictionaries are not supported (Go's `dictLitEnc` is always nil here); where Go would panic on an
//! impossible input this returns [`BlockError::Internal`].

use super::bits::{BitWriter, BIT_MASK32};
use super::fse::{self, CoderPair, FseEncoder, SeqCoders, TableKind, Used};
use super::huff0;
use std::fmt;

pub use super::fse::{ll_code, ml_code, of_code};

/// The largest block the encoder produces (128 KiB).
pub const MAX_COMPRESSED_BLOCK_SIZE: usize = 128 << 10;

/// One sequence: literals, then a match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seq {
    /// Literals before the match.
    pub lit_len: u32,
    /// Match length minus the minimum match (3), as Go stores it.
    pub match_len: u32,
    /// Offset as coded: the real offset + 3, or a repeat index 1..=3.
    pub offset: u32,
    /// Literal-length code (set by the encoder).
    pub ll_code: u8,
    /// Match-length code (set by the encoder).
    pub ml_code: u8,
    /// Offset code (set by the encoder).
    pub of_code: u8,
}

/// Why a block was not encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockError {
    /// Compressing would not save enough (Go's `errIncompressible`): store the block raw.
    Incompressible,
    /// huff0 failed other than by finding the literals incompressible or a single repeated byte.
    Huff0(huff0::Error),
    /// An invariant Go relies on did not hold (Go returns an internal error or panics).
    Internal(&'static str),
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::Incompressible => f.write_str("incompressible"),
            BlockError::Huff0(_) => f.write_str("literal compression failed"),
            BlockError::Internal(what) => {
                write!(f, "internal error in the zstd block encoder: {what}")
            }
        }
    }
}

impl std::error::Error for BlockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BlockError::Huff0(e) => Some(e),
            _ => None,
        }
    }
}

impl From<fse::InternalError> for BlockError {
    fn from(what: fse::InternalError) -> BlockError {
        BlockError::Internal(what)
    }
}

/// Block types of the block header.
#[derive(Clone, Copy)]
enum BlockType {
    Raw = 0,
    Rle = 1,
    Compressed = 2,
}

/// Types of the literals section.
#[derive(Clone, Copy)]
enum LiteralsBlockType {
    Raw = 0,
    Rle = 1,
    Compressed = 2,
    Treeless = 3,
}

/// How a kind of sequence code is coded (the sequence section's mode bits).
#[derive(Clone, Copy)]
enum SeqCompMode {
    Predefined = 0,
    Rle = 1,
    Fse = 2,
    Repeat = 3,
}

/// A block header: last flag, type and size in 3 little-endian bytes.
#[derive(Clone, Copy, Default)]
struct BlockHeader(u32);

impl BlockHeader {
    fn set_last(&mut self, last: bool) {
        if last {
            self.0 |= 1;
        } else {
            self.0 &= (1 << 24) - 2;
        }
    }

    fn set_size(&mut self, size: u32) {
        self.0 = (self.0 & 7) | size.wrapping_shl(3);
    }

    fn set_type(&mut self, t: BlockType) {
        const MASK: u32 = 1 | (((1 << 24) - 1) ^ 7);
        self.0 = (self.0 & MASK) | ((t as u32) << 1);
    }

    fn bytes(self) -> [u8; 3] {
        let [a, b, c, _] = self.0.to_le_bytes();
        [a, b, c]
    }
}

/// A literals section header; its byte length is kept in the top 4 bits.
#[derive(Clone, Copy, Default)]
struct LiteralsHeader(u64);

impl LiteralsHeader {
    fn set_type(&mut self, t: LiteralsBlockType) {
        self.0 = (self.0 & (u64::MAX - 3)) | t as u64;
    }

    /// Set the single size of raw or RLE literals.
    fn set_size(&mut self, regen_len: usize) -> Result<(), BlockError> {
        let in_bits = bits_len(regen_len);
        let mut lh = self.0 & 3;
        let len = regen_len as u64;
        match in_bits {
            0..=4 => lh |= (len << 3) | (1 << 60),
            5..=11 => lh |= (1 << 2) | (len << 4) | (2 << 60),
            12..=19 => lh |= (3 << 2) | (len << 4) | (3 << 60),
            _ => return Err(BlockError::Internal("block too big")),
        }
        self.0 = lh;
        Ok(())
    }

    /// Set the compressed and regenerated sizes of compressed literals.
    fn set_sizes(
        &mut self,
        comp_len: usize,
        in_len: usize,
        single: bool,
    ) -> Result<(), BlockError> {
        let (comp_bits, in_bits) = (bits_len(comp_len), bits_len(in_len));
        let mut lh = self.0 & 3;
        let (comp, regen) = (comp_len as u64, in_len as u64);
        if comp_bits <= 10 && in_bits <= 10 {
            if !single {
                lh |= 1 << 2;
            }
            lh |= (regen << 4) | (comp << (10 + 4)) | (3 << 60);
        } else if single {
            return Err(BlockError::Internal(
                "single stream used with more than 10 bits length",
            ));
        } else if comp_bits <= 14 && in_bits <= 14 {
            lh |= (2 << 2) | (regen << 4) | (comp << (14 + 4)) | (4 << 60);
        } else if comp_bits <= 18 && in_bits <= 18 {
            lh |= (3 << 2) | (regen << 4) | (comp << (18 + 4)) | (5 << 60);
        } else {
            return Err(BlockError::Internal("block too big"));
        }
        self.0 = lh;
        Ok(())
    }

    /// The header's length in bytes.
    fn size(self) -> usize {
        (self.0 >> 60) as usize
    }

    fn append_to(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes()[..self.size()]);
    }
}

/// Go's `bits.Len32(uint32(n))`.
fn bits_len(n: usize) -> u32 {
    32 - (n as u32).leading_zeros()
}

/// Pick the cheapest table for the histogram of `pair.cur`: predefined, the previous one repeated, or the new
/// one (with a penalty for its description).
fn choose_comp(pair: &CoderPair, predef: &FseEncoder) -> (Used, SeqCompMode) {
    let hist = pair.cur.active_histogram();
    let mut n_size = pair
        .cur
        .approx_size(hist)
        .wrapping_add(pair.cur.max_header_size());
    let predef_size = predef.approx_size(hist);
    let prev_size = pair.prev.approx_size(hist);
    // Add a small penalty for new encoders; don't bother with extremely small (<2 byte) gains.
    n_size = n_size.wrapping_add(n_size.wrapping_add(2 * 8 * 16) >> 4);
    if predef_size <= prev_size && predef_size <= n_size {
        (Used::Neither, SeqCompMode::Predefined)
    } else if prev_size <= n_size {
        (Used::Previous, SeqCompMode::Repeat)
    } else {
        (Used::Current, SeqCompMode::Fse)
    }
}

/// The encoder a block uses for one kind of code.
fn chosen<'a>(pair: &'a CoderPair, used: Used, predef: &'a FseEncoder) -> &'a FseEncoder {
    match used {
        Used::Current => &pair.cur,
        Used::Previous => &pair.prev,
        Used::Neither => predef,
    }
}

/// Set the extra bits of the encoder a block uses (predefined ones have theirs already).
fn set_chosen_bits(
    pair: &mut CoderPair,
    used: Used,
    bits: Option<&[u8]>,
) -> Result<(), BlockError> {
    match used {
        Used::Current => pair.cur.set_bits(bits)?,
        Used::Previous => pair.prev.set_bits(bits)?,
        Used::Neither => {}
    }
    Ok(())
}

/// Write the sequences' bitstream (last sequence first, as zstd decodes it backwards) and close it.
fn encode_sequences(
    sequences: &[Seq],
    ll: &FseEncoder,
    of: &FseEncoder,
    ml: &FseEncoder,
    wr: &mut BitWriter,
) -> Result<(), BlockError> {
    let Some((last, rest)) = sequences.split_last() else {
        return Err(BlockError::Internal("no sequences"));
    };
    let (ll_b, of_b, ml_b) = (
        ll.transform(last.ll_code),
        of.transform(last.of_code),
        ml.transform(last.ml_code),
    );
    let mut ll_state = ll.init_state(ll_b)?;
    let mut of_state = of.init_state(of_b)?;
    wr.flush32();
    let mut ml_state = ml.init_state(ml_b)?;
    wr.add_bits32_nc(last.lit_len, ll_b.out_bits);
    wr.add_bits32_nc(last.match_len, ml_b.out_bits);
    wr.flush32();
    wr.add_bits32_nc(last.offset, of_b.out_bits);

    for s in rest.iter().rev() {
        // Table logs are at most 8, so the three states fill at most 24 bits.
        wr.flush32();
        let of_b = of.transform(s.of_code);
        of_state = of.encode(of_state, of_b, wr)?;
        // Accumulate the extra bits.
        let out_bits = of_b.out_bits & 31;
        let mut extra_bits = u64::from(s.offset & BIT_MASK32[usize::from(out_bits)]);
        let mut extra_bits_n = out_bits;

        let ml_b = ml.transform(s.ml_code);
        ml_state = ml.encode(ml_state, ml_b, wr)?;
        let out_bits = ml_b.out_bits & 31;
        extra_bits =
            extra_bits << out_bits | u64::from(s.match_len & BIT_MASK32[usize::from(out_bits)]);
        extra_bits_n += out_bits;

        let ll_b = ll.transform(s.ll_code);
        ll_state = ll.encode(ll_state, ll_b, wr)?;
        let out_bits = ll_b.out_bits & 31;
        extra_bits =
            extra_bits << out_bits | u64::from(s.lit_len & BIT_MASK32[usize::from(out_bits)]);
        extra_bits_n += out_bits;

        wr.flush32();
        wr.add_bits64_nc(extra_bits, extra_bits_n);
    }
    ml.flush(ml_state, wr);
    of.flush(of_state, wr);
    ll.flush(ll_state, wr);
    wr.close();
    Ok(())
}

/// The block encoder (Go's `blockEnc`, never low-memory).
#[derive(Debug)]
pub struct BlockEnc {
    /// Size of the block's input.
    pub size: usize,
    /// The block's literals.
    pub literals: Vec<u8>,
    /// The block's sequences.
    pub sequences: Vec<Seq>,
    /// Literals after the last sequence (kept by the match finder).
    pub extra_lits: usize,
    /// The encoded block.
    pub output: Vec<u8>,
    /// The three recent offsets.
    pub recent_offsets: [u32; 3],
    /// The recent offsets saved by [`push_offsets`](Self::push_offsets).
    pub prev_recent_offsets: [u32; 3],
    /// Whether this is the frame's last block.
    pub last: bool,
    /// Sequence encoders, current and previous.
    coders: SeqCoders,
    /// Literal compressor, with the table it may reuse.
    lit_enc: Box<huff0::Scratch>,
    /// Bit writer for the sequences.
    wr: BitWriter,
}

impl Default for BlockEnc {
    fn default() -> BlockEnc {
        BlockEnc::new()
    }
}

impl BlockEnc {
    /// A block encoder ready for use (Go's `&blockEnc{}` followed by `init()`).
    pub fn new() -> BlockEnc {
        BlockEnc {
            size: 0,
            literals: Vec::with_capacity(MAX_COMPRESSED_BLOCK_SIZE),
            sequences: Vec::with_capacity(2000),
            extra_lits: 0,
            output: Vec::with_capacity(MAX_COMPRESSED_BLOCK_SIZE),
            recent_offsets: [0; 3],
            prev_recent_offsets: [0; 3],
            last: false,
            coders: SeqCoders::default(),
            lit_enc: Box::new(huff0::Scratch::new(4)),
            wr: BitWriter::default(),
        }
    }

    /// Reset the recent offsets and the encoders to a new stream's.
    pub fn init_new_encode(&mut self) {
        self.recent_offsets = [1, 4, 8];
        self.lit_enc.reuse = huff0::ReusePolicy::None;
        self.coders
            .set_prev(Used::Neither, Used::Neither, Used::Neither);
    }

    /// Empty the block for the next one of the same stream; the encoders' state is kept. With a previous
    /// block's saved offsets (Go's `reset(prev)` passes `prev.prevRecentOffsets`), those become the recent
    /// offsets.
    pub fn reset(&mut self, prev_recent: Option<[u32; 3]>) {
        self.extra_lits = 0;
        self.literals.clear();
        self.size = 0;
        self.sequences.clear();
        self.output.clear();
        self.last = false;
        if let Some(prev) = prev_recent {
            self.recent_offsets = prev;
        }
    }

    /// Exchange encoder state (sequence and literal encoders) with another block.
    pub fn swap_encoders(&mut self, prev: &mut BlockEnc) {
        std::mem::swap(&mut self.coders, &mut prev.coders);
        std::mem::swap(&mut self.lit_enc, &mut prev.lit_enc);
    }

    /// Save the recent offsets.
    pub fn push_offsets(&mut self) {
        self.prev_recent_offsets = self.recent_offsets;
    }

    /// Restore the saved recent offsets.
    pub fn pop_offsets(&mut self) {
        self.recent_offsets = self.prev_recent_offsets;
    }

    /// The coded offset of a match at `offset` after `lits` literals: a repeat index if it is a recent offset,
    /// otherwise `offset + 3`; the recent offsets are updated.
    pub fn match_offset(&mut self, offset: u32, lits: u32) -> u32 {
        let ro = &mut self.recent_offsets;
        if lits > 0 {
            if offset == ro[0] {
                1
            } else if offset == ro[1] {
                ro[1] = ro[0];
                ro[0] = offset;
                2
            } else if offset == ro[2] {
                ro[2] = ro[1];
                ro[1] = ro[0];
                ro[0] = offset;
                3
            } else {
                ro[2] = ro[1];
                ro[1] = ro[0];
                ro[0] = offset;
                offset.wrapping_add(3)
            }
        } else if offset == ro[1] {
            ro[1] = ro[0];
            ro[0] = offset;
            1
        } else if offset == ro[2] {
            ro[2] = ro[1];
            ro[1] = ro[0];
            ro[0] = offset;
            2
        } else if offset == ro[0].wrapping_sub(1) {
            ro[2] = ro[1];
            ro[1] = ro[0];
            ro[0] = offset;
            3
        } else {
            ro[2] = ro[1];
            ro[1] = ro[0];
            ro[0] = offset;
            offset.wrapping_add(3)
        }
    }

    /// The header of a raw block of `len` bytes.
    fn raw_header(&self, len: usize) -> [u8; 3] {
        let mut bh = BlockHeader::default();
        bh.set_last(self.last);
        bh.set_size(len as u32);
        bh.set_type(BlockType::Raw);
        bh.bytes()
    }

    /// Make the output a raw block of `a`.
    pub fn encode_raw(&mut self, a: &[u8]) {
        let header = self.raw_header(a.len());
        self.output.clear();
        self.output.extend_from_slice(&header);
        self.output.extend_from_slice(a);
    }

    /// Append a raw block of `src` to `dst`.
    pub fn encode_raw_to(&self, dst: &mut Vec<u8>, src: &[u8]) {
        dst.extend_from_slice(&self.raw_header(src.len()));
        dst.extend_from_slice(src);
    }

    /// Append a block of literals only: raw, RLE, or huff0-compressed with an empty sequence section.
    fn encode_lits(&mut self, lits: &[u8], raw: bool) -> Result<(), BlockError> {
        let mut bh = BlockHeader::default();
        bh.set_last(self.last);
        bh.set_size(lits.len() as u32);

        // Don't compress extremely small blocks (Go's limit is 8 with a dictionary, 32 without).
        if lits.len() < 32 || raw {
            bh.set_type(BlockType::Raw);
            self.output.extend_from_slice(&bh.bytes());
            self.output.extend_from_slice(lits);
            return Ok(());
        }

        let (compressed, single) = if lits.len() >= 1024 {
            (huff0::compress_4x(lits, &mut self.lit_enc), false)
        } else if lits.len() > 32 {
            (huff0::compress_1x(lits, &mut self.lit_enc), true)
        } else {
            (Err(huff0::Error::Incompressible), false)
        };
        match compressed {
            Err(huff0::Error::Incompressible) => {
                bh.set_type(BlockType::Raw);
                self.output.extend_from_slice(&bh.bytes());
                self.output.extend_from_slice(lits);
            }
            Err(huff0::Error::UseRle) => {
                bh.set_type(BlockType::Rle);
                self.output.extend_from_slice(&bh.bytes());
                self.output.push(lits[0]);
            }
            Err(e) => return Err(BlockError::Huff0(e)),
            Ok((out, reused)) => {
                bh.set_type(BlockType::Compressed);
                let mut lh = LiteralsHeader::default();
                lh.set_type(if reused {
                    LiteralsBlockType::Treeless
                } else {
                    LiteralsBlockType::Compressed
                });
                lh.set_sizes(out.len(), lits.len(), single)?;
                bh.set_size((out.len() + lh.size() + 1) as u32);
                self.output.extend_from_slice(&bh.bytes());
                lh.append_to(&mut self.output);
                self.output.extend_from_slice(out);
                // No sequences.
                self.output.push(0);
                // Now allow reuse.
                self.lit_enc.reuse = huff0::ReusePolicy::Allow;
            }
        }
        Ok(())
    }

    /// Append the literals section of a block with sequences.
    fn encode_literals_section(&mut self, raw: bool) -> Result<(), BlockError> {
        let mut lh = LiteralsHeader::default();
        let n = self.literals.len();
        let (compressed, single) = if n >= 1024 && !raw {
            (huff0::compress_4x(&self.literals, &mut self.lit_enc), false)
        } else if n > 32 && !raw {
            (huff0::compress_1x(&self.literals, &mut self.lit_enc), true)
        } else {
            (Err(huff0::Error::Incompressible), false)
        };
        match compressed {
            Err(huff0::Error::Incompressible) => {
                lh.set_type(LiteralsBlockType::Raw);
                lh.set_size(n)?;
                lh.append_to(&mut self.output);
                self.output.extend_from_slice(&self.literals);
            }
            Err(huff0::Error::UseRle) => {
                lh.set_type(LiteralsBlockType::Rle);
                lh.set_size(n)?;
                lh.append_to(&mut self.output);
                self.output.push(self.literals[0]);
            }
            Err(e) => return Err(BlockError::Huff0(e)),
            Ok((out, reused)) => {
                lh.set_type(if reused {
                    LiteralsBlockType::Treeless
                } else {
                    LiteralsBlockType::Compressed
                });
                lh.set_sizes(out.len(), n, single)?;
                lh.append_to(&mut self.output);
                self.output.extend_from_slice(out);
                self.lit_enc.reuse = huff0::ReusePolicy::Allow;
            }
        }
        Ok(())
    }

    /// Append the number of sequences.
    fn encode_sequence_count(&mut self) {
        let n = self.sequences.len();
        if n < 128 {
            self.output.push(n as u8);
        } else if n < 0x7f00 {
            self.output
                .extend_from_slice(&[128u8.wrapping_add((n >> 8) as u8), n as u8]);
        } else {
            let n = n - 0x7f00;
            self.output
                .extend_from_slice(&[255, n as u8, (n >> 8) as u8]);
        }
    }

    /// Encode the block, appending to `output`: `org` is the block's input (`None` for Go's nil), `raw`
    /// stores the literals raw, `raw_all_lits` does so for a block of literals only.
    /// [`BlockError::Incompressible`] means the caller should store the block raw (then `output` holds
    /// garbage, and the huff0 table will not be reused).
    pub fn encode(
        &mut self,
        org: Option<&[u8]>,
        raw: bool,
        raw_all_lits: bool,
    ) -> Result<(), BlockError> {
        if self.sequences.is_empty() {
            let literals = std::mem::take(&mut self.literals);
            let encoded = self.encode_lits(&literals, raw_all_lits);
            self.literals = literals;
            return encoded;
        }
        // We want some difference to at least account for the headers.
        let saved = self.size as i64 - self.literals.len() as i64 - (self.size >> 5) as i64;
        if saved < 16 {
            let Some(org) = org else {
                return Err(BlockError::Incompressible);
            };
            self.pop_offsets();
            return self.encode_lits(org, raw_all_lits);
        }

        let mut bh = BlockHeader::default();
        bh.set_last(self.last);
        bh.set_type(BlockType::Compressed);
        // The header is rewritten once the size is known.
        let bh_offset = self.output.len();
        self.output.extend_from_slice(&bh.bytes());

        self.encode_literals_section(raw)?;

        // Sequence compression.
        self.encode_sequence_count();
        self.gen_codes()?;
        let n_seqs = self.sequences.len();
        self.coders.ll.cur.normalize_count(n_seqs)?;
        self.coders.of.cur.normalize_count(n_seqs)?;
        self.coders.ml.cur.normalize_count(n_seqs)?;

        // Choose the compression mode of each kind: new, predefined or previous.
        let first = self.sequences[0];
        let mut mode = 0u8;
        let mut choose = |pair: &mut CoderPair, kind: TableKind, rle_code: u8, shift: u8| {
            let (used, m) = if pair.cur.use_rle() {
                pair.cur.set_rle(rle_code);
                (Used::Current, SeqCompMode::Rle)
            } else {
                choose_comp(pair, fse::predefined(kind))
            };
            mode |= (m as u8) << shift;
            used
        };
        let ll_used = choose(
            &mut self.coders.ll,
            TableKind::LiteralLengths,
            first.ll_code,
            6,
        );
        let of_used = choose(&mut self.coders.of, TableKind::Offsets, first.of_code, 4);
        let ml_used = choose(
            &mut self.coders.ml,
            TableKind::MatchLengths,
            first.ml_code,
            2,
        );
        self.output.push(mode);

        let ll_predef = fse::predefined(TableKind::LiteralLengths);
        let of_predef = fse::predefined(TableKind::Offsets);
        let ml_predef = fse::predefined(TableKind::MatchLengths);
        chosen(&self.coders.ll, ll_used, ll_predef).write_count(&mut self.output)?;
        chosen(&self.coders.of, of_used, of_predef).write_count(&mut self.output)?;
        chosen(&self.coders.ml, ml_used, ml_predef).write_count(&mut self.output)?;

        set_chosen_bits(&mut self.coders.ll, ll_used, Some(&fse::LL_BITS_TABLE))?;
        set_chosen_bits(&mut self.coders.ml, ml_used, Some(&fse::ML_BITS_TABLE))?;
        set_chosen_bits(&mut self.coders.of, of_used, None)?;

        self.wr.reset(std::mem::take(&mut self.output));
        let encoded = encode_sequences(
            &self.sequences,
            chosen(&self.coders.ll, ll_used, ll_predef),
            chosen(&self.coders.of, of_used, of_predef),
            chosen(&self.coders.ml, ml_used, ml_predef),
            &mut self.wr,
        );
        self.output = std::mem::take(&mut self.wr.out);
        encoded?;

        if self.output.len() as i64 - 3 - bh_offset as i64 >= self.size as i64 {
            // Maybe even add a bigger margin.
            self.lit_enc.reuse = huff0::ReusePolicy::None;
            return Err(BlockError::Incompressible);
        }

        // Size is output minus the block header.
        bh.set_size(((self.output.len() - bh_offset) as u32).wrapping_sub(3));
        self.output[bh_offset..bh_offset + 3].copy_from_slice(&bh.bytes());
        self.coders.set_prev(ll_used, ml_used, of_used);
        Ok(())
    }

    /// Set each sequence's codes and fill the current encoders' histograms with them.
    fn gen_codes(&mut self) -> Result<(), BlockError> {
        if self.sequences.len() > usize::from(u16::MAX) {
            return Err(BlockError::Internal("can only encode up to 64K sequences"));
        }
        let coders = &mut self.coders;
        coders.ll.cur.histogram().fill(0);
        coders.of.cur.histogram().fill(0);
        coders.ml.cur.histogram().fill(0);

        let (mut ll_max, mut of_max, mut ml_max) = (0u8, 0u8, 0u8);
        for seq in &mut self.sequences {
            seq.ll_code = ll_code(seq.lit_len);
            let count = &mut coders.ll.cur.histogram()[usize::from(seq.ll_code)];
            *count = count.wrapping_add(1);
            ll_max = ll_max.max(seq.ll_code);

            seq.of_code = of_code(seq.offset);
            let count = &mut coders.of.cur.histogram()[usize::from(seq.of_code)];
            *count = count.wrapping_add(1);
            of_max = of_max.max(seq.of_code);

            seq.ml_code = ml_code(seq.match_len);
            let count = &mut coders.ml.cur.histogram()[usize::from(seq.ml_code)];
            *count = count.wrapping_add(1);
            ml_max = ml_max.max(seq.ml_code);
        }
        // Go would panic on codes past its bit tables (a literal length of 128 KiB, a match length of
        // 128 KiB + 3, an offset of 0).
        if ll_max > fse::MAX_LL_CODE || ml_max > fse::MAX_ML_CODE || of_max > fse::MAX_OF_CODE {
            return Err(BlockError::Internal("sequence code out of range"));
        }

        let max_count = |enc: &mut FseEncoder, max: u8| {
            enc.histogram()[..=usize::from(max)]
                .iter()
                .copied()
                .max()
                .unwrap_or(0) as usize
        };
        let ml_count = max_count(&mut coders.ml.cur, ml_max);
        coders.ml.cur.histogram_finished(ml_max, ml_count);
        let of_count = max_count(&mut coders.of.cur, of_max);
        coders.of.cur.histogram_finished(of_max, of_count);
        let ll_count = max_count(&mut coders.ll.cur, ll_max);
        coders.ll.cur.histogram_finished(ll_max, ll_count);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_offsets_follow_the_format() {
        let mut blk = BlockEnc::new();
        blk.init_new_encode();
        // After literals, the three recent offsets are repeat codes 1..=3.
        assert_eq!(blk.match_offset(1, 5), 1);
        assert_eq!(blk.match_offset(4, 5), 2);
        assert_eq!(blk.recent_offsets, [4, 1, 8]);
        assert_eq!(blk.match_offset(8, 5), 3);
        assert_eq!(blk.recent_offsets, [8, 4, 1]);
        assert_eq!(blk.match_offset(100, 5), 103);
        assert_eq!(blk.recent_offsets, [100, 8, 4]);
        // Without literals, code 1 is the second, 2 the third, 3 the first minus one.
        assert_eq!(blk.match_offset(8, 0), 1);
        assert_eq!(blk.recent_offsets, [8, 100, 4]);
        assert_eq!(blk.match_offset(7, 0), 3);
        assert_eq!(blk.recent_offsets, [7, 8, 100]);
        blk.push_offsets();
        blk.match_offset(50, 1);
        blk.pop_offsets();
        assert_eq!(blk.recent_offsets, [7, 8, 100]);
    }

    #[test]
    fn literal_headers_grow_with_the_size() {
        let size_of = |n| {
            let mut lh = LiteralsHeader::default();
            lh.set_type(LiteralsBlockType::Raw);
            lh.set_size(n).unwrap();
            let mut out = Vec::new();
            lh.append_to(&mut out);
            out
        };
        assert_eq!(size_of(15), [15 << 3]);
        // Go takes two bytes from 16 on, where the format would allow one up to 31.
        assert_eq!(size_of(16), [0b0000_0100, 1]);
        assert_eq!(size_of(31), [0b1111_0100, 1]);
        assert_eq!(size_of(4096), [0b0000_1100, 0, 1]);
        assert!(LiteralsHeader::default().set_size(1 << 20).is_err());
    }

    #[test]
    fn small_blocks_are_stored_raw() {
        let mut blk = BlockEnc::new();
        blk.init_new_encode();
        blk.reset(None);
        blk.literals.extend_from_slice(b"tiny");
        blk.size = 4;
        blk.last = true;
        blk.encode(Some(b"tiny"), false, false).unwrap();
        // Raw block of 4 bytes, last: (4 << 3) | 1.
        assert_eq!(blk.output, [33, 0, 0, b't', b'i', b'n', b'y']);
        // A block whose matches save too little, with no input to fall back on, is incompressible.
        blk.reset(None);
        blk.literals.extend_from_slice(&[7; 40]);
        blk.sequences.push(Seq {
            lit_len: 40,
            match_len: 1,
            offset: 10,
            ..Seq::default()
        });
        blk.size = 44;
        assert_eq!(
            blk.encode(None, false, false),
            Err(BlockError::Incompressible)
        );
    }
}
