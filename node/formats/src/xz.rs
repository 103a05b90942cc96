//! xz streams written by liblzma, re-created exactly by liblzma.
//!
//! An xz stream records some of the parameters that made it: the integrity check (stream flags), the LZMA2
//! dictionary size (each block header's filter properties), and whether the multi-threaded encoder wrote it
//! (its block headers carry both sizes; the single-threaded one's carry neither) with what block size (every
//! block but the last holds that many bytes). What it does not record is the preset (0-9) and whether
//! `--extreme` was on: those are tried, in the order producers use them, against the first block's first bytes
//! (`find`), as pristine-xz does. The parameters found are then only a guess until the whole stream has been
//! re-encoded and compared ([`encode`] into a comparing writer), which the caller does before recording
//! anything.
//!
//! The encoder is the liblzma this crate is built with ([`LIBLZMA`], pinned): its output for given parameters
//! has not changed across the versions that wrote the archives measured (5.2 to 5.8), and [`Params`] records
//! the version so a store can tell what wrote its re-creation data. A stream with other filters (BCJ, delta),
//! several streams, stream padding, or blocks the encoders do not write is refused and kept as it is.

use crate::{malformed, Range, ReadAt, Refused};
use liblzma::stream::{Action, Check, Filters, LzmaOptions, MtStreamBuilder, Status, Stream};
use std::io::{self, Read, Write};

/// The start of every xz stream.
pub const MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];
/// The liblzma whose output re-creates a stream (the crate's bundled one).
pub const LIBLZMA: &str = "5.8.4";
/// Stream header and footer size.
const HEADER: u64 = 12;
/// Blocks in one stream's index, at most (its records are held while the stream is checked).
pub const MAX_BLOCKS: u64 = 1 << 20;
/// The largest multi-threaded block size re-created: each encoder thread holds a block in and a block out.
pub const MAX_BLOCK_SIZE: u64 = 256 << 20;
/// The largest dictionary re-created (preset 9's): the encoder holds about ten times it.
pub const MAX_DICT: u32 = 64 << 20;
/// Memory one encoder may hold, at most: preset 9 multi-threaded with its default block size on one thread
/// (1249 MiB by liblzma's own count), preset 6 on four (660 MiB). Threads are cut to fit; a stream whose encoder
/// would not fit on one thread is not re-created.
pub const MAX_ENCODER_MEMORY: u64 = 1280 << 20;
/// Memory a decoder may use, at most (preset 9 streams need 65 MiB).
const DECODER_MEMLIMIT: u64 = 256 << 20;
/// A candidate's output that must match the stream before it is taken (the whole first block when shorter).
const TRIAL_MATCH: usize = 16 << 10;
/// Candidates tried against a stream, at most.
const MAX_TRIALS: usize = 6;
/// Dictionary size of each preset.
const PRESET_DICT: [u32; 10] = [
    256 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
    4 << 20,
    8 << 20,
    8 << 20,
    16 << 20,
    32 << 20,
    64 << 20,
];
/// Version of the encoding of [`Params`].
const PARAMS_VERSION: u8 = 1;

/// What an xz stream's headers, index and footer say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The stream's length in bytes.
    pub len: u64,
    /// Its uncompressed length.
    pub raw_len: u64,
    /// Its check type (0 none, 1 CRC32, 4 CRC64, 10 SHA-256).
    pub check: u8,
    /// The LZMA2 dictionary size its first block header records.
    pub dict: u32,
    /// Whether its block headers carry their sizes (the multi-threaded encoder's).
    pub threaded: bool,
    /// How many blocks it has.
    pub blocks: u64,
    /// The first block's uncompressed size.
    pub first_block: u64,
    /// Where the first block's compressed data starts, from the stream's start, and its length.
    first_data: (u64, u64),
}

/// The parameters that re-create an xz stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Preset level, 0-9.
    pub preset: u8,
    /// `--extreme`.
    pub extreme: bool,
    /// The dictionary size (the preset's, unless the producer set another).
    pub dict: u32,
    /// Check type.
    pub check: u8,
    /// The multi-threaded encoder's block size; `None` for the single-threaded encoder.
    pub block_size: Option<u64>,
}

fn check_of(id: u8) -> Option<Check> {
    Some(match id {
        0 => Check::None,
        1 => Check::Crc32,
        4 => Check::Crc64,
        10 => Check::Sha256,
        _ => return None,
    })
}

fn check_len(id: u8) -> u64 {
    match id {
        0 => 0,
        1 => 4,
        4 => 8,
        _ => 32,
    }
}

/// A multibyte integer of an xz header (at most nine bytes, no needless zero continuation).
fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (b != 0 || i == 0).then_some(v);
        }
    }
    None
}

fn crc_ok(bytes: &[u8], crc: &[u8]) -> bool {
    crc32fast::hash(bytes).to_le_bytes() == crc[..4]
}

/// The dictionary size LZMA2 properties byte `p` encodes.
fn dict_of(p: u8) -> Option<u32> {
    match p {
        0..=39 => Some((2 | u32::from(p & 1)) << (p / 2 + 11)),
        40 => Some(u32::MAX),
        _ => None,
    }
}

impl Info {
    /// Read the headers, index and footer of the xz stream at `[at, at + len)` of `src`. Refused when it is not
    /// one whole xz stream of LZMA2 blocks as liblzma's encoders write them.
    pub fn read<R: ReadAt + ?Sized>(src: &R, at: u64, len: u64) -> Result<Info, Refused> {
        if len < 2 * HEADER {
            return Err(malformed(at, "too short for an xz stream"));
        }
        let mut head = [0u8; 12];
        src.read_exact_at(&mut head, at)?;
        if head[..6] != MAGIC {
            return Err(malformed(at, "no xz magic"));
        }
        if head[6] != 0 || check_of(head[7]).is_none() || !crc_ok(&head[6..8], &head[8..]) {
            return Err(malformed(at + 6, "bad stream flags"));
        }
        let check = head[7];
        let mut foot = [0u8; 12];
        let foot_at = at + len - HEADER;
        src.read_exact_at(&mut foot, foot_at)?;
        if foot[10..] != *b"YZ" || foot[8..10] != head[6..8] || !crc_ok(&foot[4..10], &foot[..4]) {
            return Err(malformed(
                foot_at,
                "no xz stream footer at the end (stream padding, or several streams)",
            ));
        }
        let index_len = (u64::from(u32::from_le_bytes(foot[4..8].try_into().unwrap())) + 1) * 4;
        let index_at = foot_at
            .checked_sub(index_len)
            .filter(|&i| i >= at + HEADER)
            .ok_or_else(|| malformed(foot_at, "the footer's index size is beyond the stream"))?;
        // Records of at most 18 bytes each and MAX_BLOCKS of them: bound the index read before allocating.
        if index_len > 8 + 18 * MAX_BLOCKS {
            return Err(Refused::Unsupported(format!(
                "an xz index of {index_len} bytes (more than {MAX_BLOCKS} blocks)"
            )));
        }
        let mut index = vec![0u8; index_len as usize];
        src.read_exact_at(&mut index, index_at)?;
        let body = index.len() - 4;
        if index[0] != 0 || !crc_ok(&index[..body], &index[body..]) {
            return Err(malformed(index_at, "bad xz index"));
        }
        let mut pos = 1;
        let bad_index = || malformed(index_at, "bad xz index");
        let count = varint(&index, &mut pos).ok_or_else(bad_index)?;
        if count > MAX_BLOCKS {
            return Err(Refused::Unsupported(format!(
                "an xz stream of {count} blocks"
            )));
        }
        let (mut blocks_len, mut raw_len) = (0u64, 0u64);
        let mut first = None;
        let mut sizes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let unpadded = varint(&index, &mut pos).ok_or_else(bad_index)?;
            let raw = varint(&index, &mut pos).ok_or_else(bad_index)?;
            if pos > body || unpadded == 0 {
                return Err(bad_index());
            }
            first.get_or_insert((unpadded, raw));
            sizes.push(raw);
            blocks_len = blocks_len
                .checked_add(unpadded.div_ceil(4) * 4)
                .ok_or_else(bad_index)?;
            raw_len = raw_len.checked_add(raw).ok_or_else(bad_index)?;
        }
        if index[pos..body].iter().any(|&b| b != 0) || body - pos >= 4 {
            return Err(bad_index());
        }
        if HEADER + blocks_len != index_at - at {
            return Err(malformed(
                index_at,
                "the index's blocks do not fill the stream",
            ));
        }
        let Some((unpadded, first_block)) = first else {
            // An empty stream (`xz < /dev/null`): header, empty index, footer; every encoder writes the same.
            return Ok(Info {
                len,
                raw_len: 0,
                check,
                dict: PRESET_DICT[6],
                threaded: false,
                blocks: 0,
                first_block: 0,
                first_data: (HEADER, 0),
            });
        };
        // Only the last block may be shorter than the first: the block size of the encoders.
        if sizes.len() > 1 && sizes[..sizes.len() - 1].iter().any(|&s| s != first_block) {
            return Err(Refused::Unsupported(
                "xz blocks of several sizes (not an encoder's fixed block size)".into(),
            ));
        }
        // The first block's header: its size, flags, sizes and one LZMA2 filter.
        let block_at = at + HEADER;
        let mut size = [0u8; 1];
        src.read_exact_at(&mut size, block_at)?;
        let header_len = (u64::from(size[0]) + 1) * 4;
        if size[0] == 0 || header_len + check_len(check) >= unpadded {
            return Err(malformed(block_at, "bad xz block header size"));
        }
        let mut bh = vec![0u8; header_len as usize];
        src.read_exact_at(&mut bh, block_at)?;
        let hbody = bh.len() - 4;
        if !crc_ok(&bh[..hbody], &bh[hbody..]) {
            return Err(malformed(block_at, "bad xz block header"));
        }
        let flags = bh[1];
        let data_len = unpadded - header_len - check_len(check);
        let mut pos = 2;
        let has = (flags & 0x40 != 0, flags & 0x80 != 0);
        if flags & 0x3c != 0 {
            return Err(malformed(block_at + 1, "reserved xz block flags set"));
        }
        if has.0 && varint(&bh, &mut pos) != Some(data_len) {
            return Err(malformed(
                block_at,
                "the block header's compressed size is not the index's",
            ));
        }
        if has.1 && varint(&bh, &mut pos) != Some(first_block) {
            return Err(malformed(
                block_at,
                "the block header's size is not the index's",
            ));
        }
        if has.0 != has.1 {
            return Err(Refused::Unsupported(
                "an xz block header with one of its sizes (no liblzma encoder writes that)".into(),
            ));
        }
        if flags & 0x03 != 0 {
            return Err(Refused::Unsupported(
                "an xz stream with filters before LZMA2 (BCJ or delta)".into(),
            ));
        }
        let id = varint(&bh, &mut pos);
        let props_len = varint(&bh, &mut pos);
        if id != Some(0x21) || props_len != Some(1) || pos >= hbody {
            return Err(Refused::Unsupported(format!(
                "an xz block whose filter is not LZMA2 (filter id {id:?})"
            )));
        }
        let dict = dict_of(bh[pos]).ok_or_else(|| malformed(block_at, "bad LZMA2 properties"))?;
        if bh[pos + 1..hbody].iter().any(|&b| b != 0) {
            return Err(malformed(block_at, "xz block header padding is not zero"));
        }
        Ok(Info {
            len,
            raw_len,
            check,
            dict,
            threaded: has.0,
            blocks: count,
            first_block,
            first_data: (HEADER + header_len, data_len),
        })
    }

    /// The candidate parameters for this stream, the likeliest first: presets whose dictionary is the one
    /// recorded (6 before the others, then 9), plain before extreme; then the rest with the recorded dictionary.
    fn candidates(&self) -> Result<Vec<Params>, Refused> {
        if self.dict > MAX_DICT {
            return Err(Refused::Unsupported(format!(
                "an xz dictionary of {} bytes (more than {MAX_DICT} are not re-created)",
                self.dict
            )));
        }
        let block_size = if !self.threaded {
            if self.blocks > 1 {
                return Err(Refused::Unsupported(
                    "several xz blocks without sizes in their headers".into(),
                ));
            }
            None
        } else if self.blocks > 1 {
            Some(self.first_block)
        } else {
            // One block: any block size at least its length writes it; the encoder's default if it fits.
            Some(self.first_block.max(default_block_size(self.dict)))
        };
        if block_size.is_some_and(|b| b > MAX_BLOCK_SIZE) {
            return Err(Refused::Unsupported(format!(
                "xz blocks of {} bytes (more than {MAX_BLOCK_SIZE} are not re-created)",
                block_size.unwrap_or(0)
            )));
        }
        let order = [6u8, 9, 5, 7, 8, 4, 3, 2, 1, 0];
        let mut out = Vec::new();
        for own in [true, false] {
            for &preset in &order {
                if (PRESET_DICT[preset as usize] == self.dict) != own {
                    continue;
                }
                for extreme in [false, true] {
                    out.push(Params {
                        preset,
                        extreme,
                        dict: self.dict,
                        check: self.check,
                        block_size,
                    });
                }
            }
        }
        out.truncate(MAX_TRIALS);
        Ok(out)
    }
}

/// The multi-threaded encoder's default block size for a dictionary: three times it, at least 1 MiB.
fn default_block_size(dict: u32) -> u64 {
    (3 * u64::from(dict)).max(1 << 20)
}

impl Params {
    fn options(&self) -> io::Result<LzmaOptions> {
        let mut preset = u32::from(self.preset);
        if self.extreme {
            preset |= liblzma::stream::PRESET_EXTREME;
        }
        let mut opts = LzmaOptions::new_preset(preset).map_err(io::Error::other)?;
        opts.dict_size(self.dict);
        Ok(opts)
    }

    fn filters(&self) -> io::Result<Filters> {
        let mut f = Filters::new();
        f.lzma2(&self.options()?);
        Ok(f)
    }

    /// The memory liblzma says an encoder with these parameters holds at most on `threads` threads.
    pub fn memusage(&self, threads: u32) -> u64 {
        let (Some(check), Ok(filters)) = (check_of(self.check), self.filters()) else {
            return u64::MAX;
        };
        let mut b = MtStreamBuilder::new();
        // The single-threaded encoder holds what one thread with the smallest block does.
        b.threads(threads.max(1))
            .filters(filters)
            .check(check)
            .block_size(self.block_size.unwrap_or(1 << 20));
        b.memusage()
    }

    /// The most threads, up to `max` (one for the single-threaded encoder), whose encoder fits
    /// [`MAX_ENCODER_MEMORY`]; at least one.
    pub fn threads(&self, max: u32) -> u32 {
        if self.block_size.is_none() {
            return 1;
        }
        (1..=max.max(1))
            .rev()
            .find(|&t| self.memusage(t) <= MAX_ENCODER_MEMORY)
            .unwrap_or(1)
    }

    /// An encoder writing the stream, on up to `threads` threads when the stream is multi-threaded (the output
    /// does not depend on how many).
    pub fn encoder(&self, threads: u32) -> io::Result<Stream> {
        let check = check_of(self.check).ok_or_else(|| io::Error::other("bad xz check type"))?;
        match self.block_size {
            None => Stream::new_stream_encoder(&self.filters()?, check).map_err(io::Error::other),
            Some(block) => MtStreamBuilder::new()
                .threads(threads.max(1))
                .block_size(block)
                .filters(self.filters()?)
                .check(check)
                .encoder()
                .map_err(io::Error::other),
        }
    }

    /// How the parameters are recorded: a version byte, the liblzma version, the parameters.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(PARAMS_VERSION);
        out.push(LIBLZMA.len() as u8);
        out.extend_from_slice(LIBLZMA.as_bytes());
        out.push(self.preset | u8::from(self.extreme) << 7);
        out.push(self.check);
        out.extend_from_slice(&self.dict.to_le_bytes());
        out.extend_from_slice(&self.block_size.unwrap_or(0).to_le_bytes());
    }

    /// Parameters recorded by [`Params::write_to`] at the start of `bytes`, which is advanced past them.
    pub fn read_from(bytes: &mut &[u8]) -> Result<Params, String> {
        let short = || "xz parameters cut short".to_string();
        let (&version, rest) = bytes.split_first().ok_or_else(short)?;
        if version != PARAMS_VERSION {
            return Err(format!(
                "xz parameters version {version} is not known to this ferry"
            ));
        }
        let (&n, rest) = rest.split_first().ok_or_else(short)?;
        let fixed = 1 + 1 + 4 + 8;
        if rest.len() < n as usize + fixed {
            return Err(short());
        }
        let (lib, rest) = rest.split_at(n as usize);
        // `lib` may name another liblzma (a ferry built with another one recorded it): its output for these
        // parameters has been the same so far, and the re-created blob is checked against its digest anyway.
        let _ = lib;
        let p = Params {
            preset: rest[0] & 0x7f,
            extreme: rest[0] & 0x80 != 0,
            check: rest[1],
            dict: u32::from_le_bytes(rest[2..6].try_into().unwrap()),
            block_size: match u64::from_le_bytes(rest[6..14].try_into().unwrap()) {
                0 => None,
                b => Some(b),
            },
        };
        if p.preset > 9
            || check_of(p.check).is_none()
            || p.dict > MAX_DICT
            || p.block_size.is_some_and(|b| b > MAX_BLOCK_SIZE)
        {
            return Err(format!("xz parameters out of range: {p:?}"));
        }
        *bytes = &rest[fixed..];
        Ok(p)
    }
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "xz -{}{}",
            self.preset,
            if self.extreme { "e" } else { "" }
        )?;
        if self.dict != PRESET_DICT[self.preset as usize] {
            write!(f, " dict={}", self.dict)?;
        }
        write!(f, " check={}", self.check)?;
        match self.block_size {
            Some(b) => write!(f, " threaded block-size={b}"),
            None => write!(f, " single-threaded"),
        }
    }
}

/// Run `stream` over everything `src` yields, handing its output to `out`; the bytes it wrote.
fn pump(
    stream: &mut Stream,
    src: &mut dyn Read,
    out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    crate::pump(src, out, |input, buf, eof| {
        let action = if eof { Action::Finish } else { Action::Run };
        let (in0, out0) = (stream.total_in(), stream.total_out());
        let status = stream
            .process(input, buf, action)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok((
            (stream.total_in() - in0) as usize,
            (stream.total_out() - out0) as usize,
            status == Status::StreamEnd,
        ))
    })
}

/// Encode everything `src` yields as an xz stream with `params` to `out`, on up to `threads` threads (as many
/// as fit [`MAX_ENCODER_MEMORY`]); the bytes written.
pub fn encode(
    params: &Params,
    threads: u32,
    mut src: impl Read,
    mut out: impl Write,
) -> io::Result<u64> {
    if params.memusage(1) > MAX_ENCODER_MEMORY {
        return Err(io::Error::other(format!(
            "{params}: its encoder would hold more than {MAX_ENCODER_MEMORY} bytes"
        )));
    }
    let mut stream = params.encoder(params.threads(threads))?;
    pump(&mut stream, &mut src, &mut |b| out.write_all(b))
}

/// The raw content of one xz stream read from `src`, handed to `out` as it is decoded; its length. Refused when
/// it is damaged (the check included) or needs more memory than a preset 9 stream.
pub fn decode(mut src: impl Read, mut out: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
    let mut stream = Stream::new_stream_decoder(DECODER_MEMLIMIT, 0).map_err(io::Error::other)?;
    pump(&mut stream, &mut src, &mut out)
}

/// Find the parameters that re-create the xz stream at `[at, at + info.len)` of `src`: each candidate encodes
/// the start of the first block until its output has matched [`TRIAL_MATCH`] bytes (or the whole block), and
/// the first that does is returned. Only a guess until the whole stream has been re-encoded and compared.
pub fn find<R: ReadAt + ?Sized>(src: &R, at: u64, info: &Info) -> Result<Params, Refused> {
    let candidates = info.candidates()?;
    if info.blocks == 0 {
        return Ok(candidates[0]);
    }
    let (data_at, data_len) = info.first_data;
    let want_len = (TRIAL_MATCH as u64).min(data_len) as usize;
    let mut want = vec![0u8; want_len];
    src.read_exact_at(&mut want, at + data_at)?;
    // The first block's first raw bytes, decoded once: as many as the trials may need (LZMA2 emits a chunk
    // every 2 MiB of input at the latest), at most the block.
    let mut raw = Vec::new();
    let need = info.first_block.min(2 << 20);
    let mut decoder = Stream::new_stream_decoder(DECODER_MEMLIMIT, 0).map_err(io::Error::other)?;
    {
        let mut limited = Range::new(src, at, info.len);
        let mut sink = |b: &[u8]| {
            let room = (need as usize).saturating_sub(raw.len());
            raw.extend_from_slice(&b[..b.len().min(room)]);
            if raw.len() as u64 >= need {
                Err(io::Error::other("enough"))
            } else {
                Ok(())
            }
        };
        match pump(&mut decoder, &mut limited, &mut sink) {
            Ok(_) => {}
            Err(_) if raw.len() as u64 >= need => {}
            Err(e) => {
                return Err(malformed(
                    at,
                    format!("decoding the xz stream's start: {e}"),
                ));
            }
        }
    }
    let whole_block = need == info.first_block;
    for p in candidates {
        if trial(&p, &raw, whole_block, &want, data_len)? {
            if p.memusage(1) > MAX_ENCODER_MEMORY {
                return Err(Refused::Unsupported(format!(
                    "{p}: its encoder would hold {} bytes (more than {MAX_ENCODER_MEMORY})",
                    p.memusage(1)
                )));
            }
            return Ok(p);
        }
    }
    Err(Refused::Unsupported(
        "no liblzma preset re-creates this xz stream's first block".into(),
    ))
}

/// Whether `p`'s LZMA2 encoder, fed `raw` (the whole first block when `whole`), writes `want` first.
fn trial(p: &Params, raw: &[u8], whole: bool, want: &[u8], data_len: u64) -> io::Result<bool> {
    let mut enc = Stream::new_raw_encoder(&p.filters()?).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(want.len() + (64 << 10));
    let mut fed = 0usize;
    loop {
        let end = (fed + (64 << 10)).min(raw.len());
        let action = if whole && end == raw.len() {
            Action::Finish
        } else {
            Action::Run
        };
        let before = enc.total_in();
        out.reserve(128 << 10);
        let status = enc
            .process_vec(&raw[fed..end], &mut out, action)
            .map_err(io::Error::other)?;
        fed += (enc.total_in() - before) as usize;
        let n = out.len().min(want.len());
        if out[..n] != want[..n] {
            return Ok(false);
        }
        if n == want.len() && (n >= TRIAL_MATCH || status == Status::StreamEnd) {
            return Ok(status != Status::StreamEnd || out.len() as u64 == data_len);
        }
        if status == Status::StreamEnd {
            return Ok(false);
        }
        if fed == raw.len() && !matches!(action, Action::Finish) {
            // All the raw bytes held went in and the encoder still holds its first chunk: nothing disagrees.
            return Ok(true);
        }
    }
}

/// A writer that compares what is written with `expected`, and fails at the first byte that differs.
pub struct Comparing<R: Read> {
    expected: R,
    buf: Vec<u8>,
    /// Bytes compared equal so far.
    pub matched: u64,
}

impl<R: Read> Comparing<R> {
    pub fn new(expected: R) -> Self {
        Comparing {
            expected,
            buf: vec![0u8; 64 << 10],
            matched: 0,
        }
    }

    /// Whether `expected` has nothing left (every byte of it was matched).
    pub fn at_end(&mut self) -> io::Result<bool> {
        let mut one = [0u8];
        Ok(self.expected.read(&mut one)? == 0)
    }
}

impl<R: Read> Write for Comparing<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.buf.len());
        let want = &mut self.buf[..n];
        self.expected.read_exact(want).map_err(|_| {
            io::Error::other(format!(
                "re-encoding is longer than the original ({} bytes)",
                self.matched
            ))
        })?;
        if let Some(i) = want.iter().zip(&buf[..n]).position(|(a, b)| a != b) {
            return Err(io::Error::other(format!(
                "re-encoding differs from the original at byte {}",
                self.matched + i as u64
            )));
        }
        self.matched += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
