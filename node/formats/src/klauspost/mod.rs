//! zstd as Go's klauspost/compress 1.15.12 writes it — what containers/image (skopeo, podman, buildah) and
//! buildkit write for `zstd` image layers — modelled in Rust so its frames can be re-created byte for byte, as
//! the pgzip model does for gzip. The parts are ports of Go's: the match finders of `SpeedDefault` ([`dfast`],
//! `zstd` layers) and `SpeedBestCompression` ([`best`], `zstd:chunked` layers, a frame for each file), the
//! block's entropy stage ([`block`], with [`fse`] and [`huff0`]), and here the stream around them: the frame
//! header, 128 KiB blocks in the order Go's `ReadFrom`/`Write` and `Close` produce them, and the checksum.
//!
//! Go's encoder writes the same bytes whatever its concurrency (checked against the real one at 1, 2 and 4), so
//! the model is its synchronous path.

pub mod best;
mod bits;
pub mod block;
pub mod dfast;
mod fse;
pub mod huff0;

use crate::{zstd, ReadAt, Refused};
use best::BestFast;
use block::BlockError::Incompressible;
use block::{BlockEnc, BlockError};
use dfast::{DoubleFast, BLOCK_SIZE};
use std::io::{self, Read, Write};

/// zstd's smallest window.
const MIN_WINDOW: u64 = 1 << 10;
const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The Go module version the model follows, recorded with its parameters.
pub const MODEL: &str = "klauspost/compress 1.15.12";
/// Frames of one member, at most (a zstd:chunked layer has one for each file and each chunk of a big one).
pub const MAX_FRAMES: usize = 1 << 18;

/// Go's encoder levels that are modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `SpeedDefault` (zstd levels 3-5): what containers/image and buildkit write for `zstd` layers.
    Default,
    /// `SpeedBestCompression` (zstd levels 10 and up): what containers/image writes for `zstd:chunked` layers.
    Best,
}

impl Level {
    /// All of them, the most common first.
    pub const ALL: [Level; 2] = [Level::Default, Level::Best];

    /// The window the level's encoder uses (and a streamed frame declares).
    pub fn window(self) -> u32 {
        match self {
            Level::Default => 8 << 20,
            Level::Best => 32 << 20,
        }
    }

    /// Go's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Default => "SpeedDefault",
            Level::Best => "SpeedBestCompression",
        }
    }

    fn tag(self) -> u8 {
        match self {
            Level::Default => 3,
            Level::Best => 11,
        }
    }

    fn of_tag(tag: u8) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.tag() == tag)
    }
}

/// What a klauspost frame's bytes depend on beyond its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub level: Level,
    /// Whether the frame ends with a checksum (Go's default, `WithEncoderCRC(true)`).
    pub checksum: bool,
}

impl Params {
    /// How the parameters are recorded: the model's version ([`MODEL`]), the level (as zstd numbers it), then
    /// the checksum flag.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(MODEL.len() as u8);
        out.extend_from_slice(MODEL.as_bytes());
        out.push(self.level.tag());
        out.push(u8::from(self.checksum));
    }

    /// Parameters recorded by [`Params::write_to`] at the start of `bytes`, which is advanced past them.
    pub fn read_from(bytes: &mut &[u8]) -> Result<Params, String> {
        let short = || "klauspost zstd parameters cut short".to_string();
        let (&n, rest) = bytes.split_first().ok_or_else(short)?;
        let (model, rest) = rest.split_at_checked(n as usize).ok_or_else(short)?;
        if model != MODEL.as_bytes() {
            return Err(format!(
                "a zstd frame of {}: this ferry re-creates those of {MODEL}",
                String::from_utf8_lossy(model)
            ));
        }
        let [tag, flag, ..] = *rest else {
            return Err(short());
        };
        let level =
            Level::of_tag(tag).ok_or_else(|| format!("klauspost zstd level {tag} not modelled"))?;
        if flag > 1 {
            return Err(format!("klauspost zstd checksum flag {flag} not known"));
        }
        *bytes = &rest[2..];
        Ok(Params {
            level,
            checksum: flag == 1,
        })
    }
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{MODEL} {}", self.level.name())?;
        if !self.checksum {
            f.write_str(" (no checksum)")?;
        }
        Ok(())
    }
}

/// A frame header as Go's `frameHeader.appendTo` writes it.
fn frame_header(
    content_size: u64,
    window: u32,
    single_segment: bool,
    checksum: bool,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&MAGIC);
    let fcs: u8 = match content_size {
        0..=255 => 0,
        256..=65_791 => 1,
        65_792..=0xffff_fffe => 2,
        _ => 3,
    };
    out.push(u8::from(checksum) << 2 | u8::from(single_segment) << 5 | fcs << 6);
    if !single_segment {
        let window_log = 32 - (window - 1).leading_zeros();
        out.push(((window_log - 10) << 3) as u8);
    }
    match fcs {
        0 if single_segment => out.push(content_size as u8),
        0 => {}
        1 => out.extend_from_slice(&((content_size - 256) as u16).to_le_bytes()),
        2 => out.extend_from_slice(&(content_size as u32).to_le_bytes()),
        _ => out.extend_from_slice(&content_size.to_le_bytes()),
    }
}

/// Go's `WindowSize(size)`: the window a frame of `size` bytes (0: unknown) declares.
fn window_for(level: Level, size: u64) -> u32 {
    if size > 0 && size < u64::from(level.window()) {
        (1u64 << (64 - size.leading_zeros())).max(MIN_WINDOW) as u32
    } else {
        level.window()
    }
}

/// A level's match finder.
enum Finder {
    Default(Box<DoubleFast>),
    Best(Box<BestFast>),
}

impl Finder {
    /// Go's `o.encoder()` and its first `Reset`.
    fn new(level: Level) -> Finder {
        let mut f = match level {
            Level::Default => Finder::Default(Box::new(DoubleFast::new(level.window() as i32))),
            Level::Best => Finder::Best(Box::new(BestFast::new(level.window() as i32))),
        };
        f.reset();
        f
    }

    fn reset(&mut self) {
        match self {
            Finder::Default(f) => f.reset(),
            Finder::Best(f) => f.reset(),
        }
    }

    fn encode(&mut self, blk: &mut BlockEnc, src: &[u8]) {
        match self {
            Finder::Default(f) => f.encode(blk, src),
            Finder::Best(f) => f.encode(blk, src),
        }
    }

    fn encode_no_hist(&mut self, blk: &mut BlockEnc, src: &[u8]) {
        match self {
            Finder::Default(f) => f.encode_no_hist(blk, src),
            Finder::Best(f) => f.encode_no_hist(blk, src),
        }
    }
}

/// Go's `Encoder`, written to by `ReadFrom` (or `Write`) and ended by `Close`, frame after frame (`Reset`):
/// the stream's finder and block, kept from frame to frame as Go keeps them, and the ones `EncodeAll` takes for
/// a frame that is one block.
pub struct Encoder {
    params: Params,
    finder: Finder,
    blk: BlockEnc,
    /// `EncodeAll`'s encoder, made when first needed.
    single: Option<(Finder, BlockEnc)>,
    crc: xxhash_rust::xxh64::Xxh64,
    header_written: bool,
    filling: Vec<u8>,
}

impl Encoder {
    pub fn new(params: Params) -> Encoder {
        let mut blk = BlockEnc::new();
        blk.init_new_encode();
        Encoder {
            params,
            finder: Finder::new(params.level),
            blk,
            single: None,
            crc: xxhash_rust::xxh64::Xxh64::new(0),
            header_written: false,
            filling: vec![0; BLOCK_SIZE],
        }
    }

    /// Go's `Reset`: the next frame starts, nothing before it in reach.
    fn restart(&mut self) {
        self.finder.reset();
        self.blk.reset(None);
        self.blk.init_new_encode();
        self.crc.reset(0);
        self.header_written = false;
    }

    /// One frame of everything `src` yields, written to `out`; the bytes written. Empty content is no frame at
    /// all (Go writes nothing unless told `WithZeroFrames`). `flushed`: `Flush` was called before `Close` (as
    /// zstd:chunked does at its last frame), so the last content is a block of its own, not the last one.
    pub fn frame(
        &mut self,
        mut src: impl Read,
        flushed: bool,
        mut out: impl Write,
    ) -> io::Result<u64> {
        self.restart();
        let mut filling = std::mem::take(&mut self.filling);
        let mut encoded = Vec::with_capacity(BLOCK_SIZE + 64);
        let mut written = 0u64;
        let result = loop {
            let n = match fill(&mut src, &mut filling) {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            let last = n < BLOCK_SIZE;
            encoded.clear();
            let made = if last && flushed && n > 0 {
                self.block(&filling[..n], false, &mut encoded)
                    .and_then(|()| self.block(&[], true, &mut encoded))
            } else {
                self.block(&filling[..n], last, &mut encoded)
            };
            if let Err(e) = made.and_then(|()| out.write_all(&encoded)) {
                break Err(e);
            }
            written += encoded.len() as u64;
            if last {
                break Ok(written);
            }
        };
        self.filling = filling;
        result
    }

    /// Go's `nextBlock`: `src` (a whole block, or the last and shorter one when `last`) encoded to `out`. An
    /// error where Go's encoder fails the stream (the match finder cannot make such blocks).
    fn block(&mut self, src: &[u8], last: bool, out: &mut Vec<u8>) -> io::Result<()> {
        if !self.header_written {
            if last {
                if !src.is_empty() {
                    self.single(src, out)?;
                }
                return Ok(());
            }
            frame_header(
                0,
                self.params.level.window(),
                false,
                self.params.checksum,
                out,
            );
            self.header_written = true;
        }
        self.crc.update(src);
        self.blk.reset(None);
        if src.is_empty() {
            self.blk.last = true;
            self.blk.encode_raw(&[]);
        } else {
            self.finder.encode(&mut self.blk, src);
            self.blk.last = last;
            let compressible = src.len() != self.blk.literals.len() || src.len() != BLOCK_SIZE;
            let encoded = if compressible {
                self.blk.encode(Some(src), false, false)
            } else {
                Err(Incompressible)
            };
            match encoded {
                Ok(()) => {}
                Err(Incompressible) => self.blk.encode_raw(src),
                Err(e) => return Err(model_error(e)),
            }
        }
        out.extend_from_slice(&self.blk.output);
        if last {
            self.checksum(out);
        }
        Ok(())
    }

    /// Go's `EncodeAll` of a frame that is one block (all of a stream shorter than a block): its size told, a
    /// single segment when over 1 KiB, the match finder's no-history variant, on the encoder `EncodeAll` takes.
    fn single(&mut self, src: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let level = self.params.level;
        let size = src.len() as u64;
        let single_segment = size <= u64::from(level.window()) && size > MIN_WINDOW;
        let mut header = Vec::new();
        frame_header(
            size,
            window_for(level, size),
            single_segment,
            self.params.checksum,
            &mut header,
        );
        let (finder, blk) = self
            .single
            .get_or_insert_with(|| (Finder::new(level), BlockEnc::new()));
        finder.reset();
        blk.reset(None);
        blk.init_new_encode();
        blk.last = true;
        finder.encode_no_hist(blk, src);
        let compressible = blk.literals.len() != src.len() || src.len() != BLOCK_SIZE;
        blk.output.clear();
        blk.output.extend_from_slice(&header);
        let encoded = if compressible {
            blk.encode(Some(src), false, false)
        } else {
            Err(Incompressible)
        };
        match encoded {
            Ok(()) => out.extend_from_slice(&blk.output),
            Err(Incompressible) => {
                out.extend_from_slice(&header);
                blk.encode_raw_to(out, src);
            }
            Err(e) => return Err(model_error(e)),
        }
        self.crc.update(src);
        self.checksum(out);
        Ok(())
    }

    /// The frame's checksum, if it has one: the low 32 bits of the content's XXH64.
    fn checksum(&self, out: &mut Vec<u8>) {
        if self.params.checksum {
            out.extend_from_slice(&(self.crc.digest() as u32).to_le_bytes());
        }
    }
}

/// Everything `src` yields, as the frame Go's encoder writes for it, to `out`; the bytes written.
pub fn encode(params: &Params, src: impl Read, out: impl Write) -> io::Result<u64> {
    Encoder::new(*params).frame(src, false, out)
}

/// One of several frames: how much content it holds, and whether it was flushed before it was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    pub content: u64,
    pub flushed: bool,
}

impl FrameSize {
    /// The frame read as `info` holding `content` bytes: flushed when it ends with an empty block that a
    /// stream of that length would not have (its content does not end at a block's end).
    pub fn of(info: &zstd::Info, content: u64) -> FrameSize {
        FrameSize {
            content,
            flushed: info.ends_empty
                && info.content_size.is_none()
                && !content.is_multiple_of(BLOCK_SIZE as u64),
        }
    }

    /// How it is recorded: twice the content, plus one when flushed.
    pub fn to_u64(self) -> u64 {
        self.content << 1 | u64::from(self.flushed)
    }

    pub fn from_u64(n: u64) -> FrameSize {
        FrameSize {
            content: n >> 1,
            flushed: n & 1 == 1,
        }
    }
}

/// Frames one after another, of `sizes` each, from what `src` yields (exactly their sum), as one encoder writes
/// them with a `Reset` between them (zstd:chunked: a frame for each file); the bytes written.
pub fn encode_frames(
    params: &Params,
    sizes: &[FrameSize],
    mut src: impl Read,
    mut out: impl Write,
) -> io::Result<u64> {
    let mut enc = Encoder::new(*params);
    let mut written = 0;
    for size in sizes {
        let mut part = (&mut src).take(size.content);
        written += enc.frame(&mut part, size.flushed, &mut out)?;
        if part.limit() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the content ends before its last frame",
            ));
        }
    }
    if src.read(&mut [0])? != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more content than the frames hold",
        ));
    }
    Ok(written)
}

/// A block Go's encoder would have failed the stream on.
fn model_error(e: BlockError) -> io::Error {
    io::Error::other(format!("encoding a block: {e:?}"))
}

/// Whether a frame whose headers say `info` looks like a stream of Go's (a level's window, no content size):
/// then its trial comes before libzstd's.
pub fn likely(info: &zstd::Info) -> bool {
    info.content_size.is_none()
        && Level::ALL
            .iter()
            .any(|l| info.window_log == Some(l.window().trailing_zeros() as u8))
}

/// The parameters that re-create the frame at `at` of `src` (read as `info`), if Go's encoder wrote it: found by
/// a trial on its first 512 KiB of content at each level. Only a guess until the whole frame has been re-encoded
/// and compared.
pub fn find<R: ReadAt + ?Sized>(
    src: &R,
    at: u64,
    info: &zstd::Info,
) -> Result<Option<Params>, Refused> {
    let data = zstd::trial_data(src, at, info)?;
    for level in Level::ALL {
        let params = Params {
            level,
            checksum: info.checksum,
        };
        if trial(&mut Encoder::new(params), info, &data) {
            return Ok(Some(params));
        }
    }
    Ok(None)
}

/// Whether `enc` re-creates the first blocks of a frame (read as `info`) from its first content `raw` (all of
/// it when `whole`), whose first bytes are `want`.
fn trial(
    enc: &mut Encoder,
    info: &zstd::Info,
    (raw, whole, want): &(Vec<u8>, bool, Vec<u8>),
) -> bool {
    let window = enc.params.level.window().trailing_zeros();
    if info.window_log.is_some_and(|w| u32::from(w) != window)
        && !(*whole && raw.len() < BLOCK_SIZE)
    {
        return false;
    }
    let mut out = Vec::with_capacity(want.len());
    if *whole {
        let flushed = FrameSize::of(info, raw.len() as u64).flushed;
        return enc.frame(&raw[..], flushed, &mut out).is_ok()
            && out == *want
            && out.len() as u64 == info.len;
    }
    if raw.len() % BLOCK_SIZE != 0 {
        return false;
    }
    enc.restart();
    raw.chunks(BLOCK_SIZE)
        .all(|block| enc.block(block, false, &mut out).is_ok() && want.starts_with(&out))
}

/// The zstd frames one after another from `at` of `src` (`len` bytes), and where they end: after them only
/// skippable frames (zstd:chunked's table of contents and footer), each well formed, to `len`.
pub fn read_frames<R: ReadAt + ?Sized>(
    src: &R,
    at: u64,
    len: u64,
) -> Result<(Vec<zstd::Info>, u64), Refused> {
    let end = at
        .checked_add(len)
        .ok_or_else(|| crate::malformed(at, "length overflows"))?;
    let mut frames = Vec::new();
    let mut p = at;
    while p < end {
        let mut magic = [0u8; 4];
        if end - p < 4 {
            return Err(crate::malformed(p, "bytes after the last zstd frame"));
        }
        src.read_exact_at(&mut magic, p)?;
        if magic != MAGIC {
            break;
        }
        if frames.len() == MAX_FRAMES {
            return Err(Refused::Unsupported(format!(
                "more than {MAX_FRAMES} zstd frames in one member"
            )));
        }
        let info = zstd::Info::read_frame(src, p, end)?;
        p += info.len;
        frames.push(info);
    }
    let frames_end = p;
    while p < end {
        let mut head = [0u8; 8];
        if end - p < 8 {
            return Err(crate::malformed(p, "bytes after the last zstd frame"));
        }
        src.read_exact_at(&mut head, p)?;
        let magic = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        if magic & !0xf != 0x184d_2a50 {
            return Err(crate::malformed(
                p,
                "neither a zstd frame nor a skippable one",
            ));
        }
        let size = u64::from(u32::from_le_bytes(head[4..].try_into().expect("4 bytes")));
        p = p
            .checked_add(8 + size)
            .filter(|&q| q <= end)
            .ok_or_else(|| crate::malformed(p, "a skippable frame past the end"))?;
    }
    if frames.is_empty() {
        return Err(crate::malformed(at, "no zstd frame"));
    }
    Ok((frames, frames_end))
}

/// The parameters and content sizes that re-create the frames one after another from `at` of `src` (read as
/// `frames`), if Go's encoder wrote them: the first frames (512 KiB of content at least) tried at each level as
/// [`find`] tries one, the content sizes from the headers or, where they do not say, by decoding.
pub fn find_frames<R: ReadAt + ?Sized>(
    src: &R,
    at: u64,
    frames: &[zstd::Info],
) -> Result<(Params, Vec<FrameSize>), Refused> {
    let checksum = frames
        .first()
        .ok_or_else(|| crate::malformed(at, "no zstd frame"))?
        .checksum;
    let mut sizes = Vec::with_capacity(frames.len());
    let mut trials = Vec::new();
    let mut tried = 0u64;
    let mut p = at;
    for (i, info) in frames.iter().enumerate() {
        if info.checksum != checksum {
            return Err(Refused::Unsupported(format!(
                "zstd frame {i} (at byte {p}) has a checksum where the first has none, or none where it has"
            )));
        }
        let size = match info.content_size {
            Some(n) => n,
            None => zstd::decode(crate::Range::new(src, p, info.len), |_| Ok(()))
                .map_err(|e| crate::malformed(p, format!("decoding zstd frame {i}: {e}")))?,
        };
        if tried < zstd::SAME_UNTIL {
            trials.push((info, zstd::trial_data(src, p, info)?));
            tried += size;
        }
        sizes.push(FrameSize::of(info, size));
        p += info.len;
    }
    for level in Level::ALL {
        // The frames one after another through one encoder, as Go writes them.
        let params = Params { level, checksum };
        let mut enc = Encoder::new(params);
        if trials
            .iter()
            .all(|(info, data)| trial(&mut enc, info, data))
        {
            return Ok((params, sizes));
        }
    }
    Err(Refused::Unsupported(format!(
        "the first zstd frames are not {MODEL}'s"
    )))
}

/// `buf` filled from `src` as far as it goes; how much.
fn fill(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
