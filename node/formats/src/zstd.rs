//! zstd frames written by libzstd — the zstd CLI, dpkg, rpm and the libraries that call it — re-created exactly
//! by the same library: 1.5.4 (Debian bookworm's), built from source by `zstd-sys` and pinned, its version
//! recorded with the parameters. Other releases write other bytes at most levels; their frames are refused at
//! the trial and kept as they are.
//!
//! A frame header records the checksum flag, the content size when the encoder knew it (a file given to the
//! CLI, a one-shot call) and the window. It does not record the level, long-distance matching, or whether the
//! encoder ran multi-threaded (the CLI always does, one worker by default; the output is the same for any number
//! of workers, and the same as single-threaded for the first 512 KiB at least). So:
//! - the frame is read with bounds, block by block, to its end (it must be the whole member: one frame);
//! - the level is found by trial, the way [`crate::xz::find`] finds a preset: each candidate encodes the first
//!   512 KiB of content single-threaded, and its output is compared with the frame's first bytes as it comes;
//! - multi-threaded is assumed; the caller re-encodes everything and compares before recording anything, and
//!   tries [`Params::alternative`] (single-threaded) when that fails.
//!
//! Dictionaries, skippable frames and several frames one after another (`pzstd`, zstd:chunked) are refused.

use crate::{malformed, pump as pump_io, Range, ReadAt, Refused};
use std::io::{self, Read, Write};
use zstd_safe::zstd_sys::ZSTD_EndDirective;
use zstd_safe::{CCtx, CParameter, DCtx, DParameter, InBuffer, OutBuffer};

/// The start of every zstd frame.
pub const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The version of libzstd whose output re-creates a frame (the one `zstd-sys` builds, pinned).
pub const LIBZSTD: &str = "1.5.4";
/// The largest window taken apart (128 MiB, `--long`'s): decoding holds one window, encoding more.
pub const MAX_WINDOW_LOG: u8 = 27;
/// A frame's blocks, at most (a TiB of content).
pub const MAX_BLOCKS: u64 = 1 << 23;
/// Memory one encoder may hold, by libzstd's own count of its context, times the workers it runs.
pub const MAX_ENCODER_MEMORY: u64 = 1280 << 20;
/// Workers a multi-threaded encoder runs (its output does not depend on how many).
pub const MAX_WORKERS: u32 = 2;
/// Content single- and multi-threaded encoders write the same way, at least (libzstd's smallest job is 512 KiB;
/// at the fast levels the two part about 1 MiB in).
pub const SAME_UNTIL: u64 = 512 << 10;
/// Output a trial of long-distance matching compares, at most (see [`trial`]).
const TRIAL_MATCH_LONG: usize = 16 << 10;
/// A block's content, at most.
const MAX_BLOCK: u64 = 128 << 10;
/// Content a trial encodes, at most: the first blocks of the frame, as far as single- and multi-threaded
/// encoders are sure to agree.
const TRIAL_RAW: usize = SAME_UNTIL as usize;
/// The levels tried, most common first: the CLI's default, rpm's 19, then the rest.
const LEVELS: [i8; 29] = [
    3, 19, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22, -1, -2, -3, -4,
    -5, -6, -7,
];

/// What a frame's header and blocks say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// The frame's length.
    pub len: u64,
    /// The window log the header records (`None` for a single-segment frame, whose window is its content).
    pub window_log: Option<u8>,
    /// The content size the header records.
    pub content_size: Option<u64>,
    /// Whether the frame ends in a checksum of its content.
    pub checksum: bool,
    /// Its blocks.
    pub blocks: u64,
    /// Whether its last block is an empty raw block after others (what an encoder writes when the content ends
    /// at a block's end, or after it was flushed).
    pub ends_empty: bool,
}

/// The parameters that re-create a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub level: i8,
    /// Encoded with workers (`nbWorkers` ≥ 1): the CLI's way.
    pub threaded: bool,
    /// The content size the encoder was told beforehand (a file, a one-shot call), which also shapes its
    /// parameters.
    pub content_size: Option<u64>,
    /// Whether the header records that size.
    pub size_in_header: bool,
    pub checksum: bool,
    /// Long-distance matching with this window log (`--long`).
    pub long: Option<u8>,
}

impl Info {
    /// Read the frame at `[at, at + len)` of `src`: its header, then each block's header to the frame's end,
    /// which must be `len`. Refused when it is not one zstd frame libzstd could have written.
    pub fn read<R: ReadAt + ?Sized>(src: &R, at: u64, len: u64) -> Result<Info, Refused> {
        let end = at
            .checked_add(len)
            .ok_or_else(|| malformed(at, "length overflows"))?;
        let info = Info::read_frame(src, at, end)?;
        if info.len != len {
            return Err(Refused::Unsupported(format!(
                "several zstd frames, or bytes after one: the first ends at byte {}",
                at + info.len
            )));
        }
        Ok(info)
    }

    /// Read the frame that starts at `at` of `src` and ends at or before `end`: its header, then each block's
    /// header to the frame's end ([`Info::len`] says where).
    pub fn read_frame<R: ReadAt + ?Sized>(src: &R, at: u64, end: u64) -> Result<Info, Refused> {
        let len = end
            .checked_sub(at)
            .ok_or_else(|| malformed(at, "a frame past the end"))?;
        let mut head = [0u8; 18];
        let have = len.min(head.len() as u64) as usize;
        src.read_exact_at(&mut head[..have], at)?;
        let head = &head[..have];
        if have < 6 || head[..4] != MAGIC {
            return Err(malformed(at, "not a zstd frame"));
        }
        let d = head[4];
        let (fcs_flag, single, reserved, checksum, dict_flag) =
            (d >> 6, d & 0x20 != 0, d & 0x08 != 0, d & 0x04 != 0, d & 3);
        if reserved {
            return Err(malformed(at + 4, "the frame header's reserved bit is set"));
        }
        if dict_flag != 0 {
            return Err(Refused::Unsupported(
                "a zstd frame made with a dictionary".into(),
            ));
        }
        let mut pos = 5usize;
        let window_log = if single {
            None
        } else {
            let w = head[pos];
            pos += 1;
            if w & 7 != 0 {
                return Err(Refused::Unsupported(format!(
                    "a window of {w:#x} (not a power of two: libzstd writes none)"
                )));
            }
            let log = 10 + (w >> 3);
            if log > MAX_WINDOW_LOG {
                return Err(Refused::Unsupported(format!(
                    "a window of 2^{log} bytes (more than 2^{MAX_WINDOW_LOG})"
                )));
            }
            Some(log)
        };
        let fcs_len = match (fcs_flag, single) {
            (0, false) => 0,
            (0, true) => 1,
            (1, _) => 2,
            (2, _) => 4,
            _ => 8,
        };
        let field = head
            .get(pos..pos + fcs_len)
            .ok_or_else(|| malformed(at, "the frame header is cut short"))?;
        let mut le = [0u8; 8];
        le[..fcs_len].copy_from_slice(field);
        let content_size = match fcs_len {
            0 => None,
            2 => Some(u64::from_le_bytes(le) + 256),
            _ => Some(u64::from_le_bytes(le)),
        };
        pos += fcs_len;
        let mut p = at + pos as u64;
        let mut blocks = 0u64;
        let ends_empty;
        let mut raw = 0u64;
        loop {
            let mut b = [0u8; 3];
            if p + 3 > end {
                return Err(malformed(p, "the zstd frame ends inside a block header"));
            }
            src.read_exact_at(&mut b, p)?;
            let h = u32::from_le_bytes([b[0], b[1], b[2], 0]);
            let (last, kind, size) = (h & 1 != 0, (h >> 1) & 3, u64::from(h >> 3));
            blocks += 1;
            if blocks > MAX_BLOCKS {
                return Err(Refused::Unsupported(format!(
                    "more than {MAX_BLOCKS} blocks in one frame"
                )));
            }
            let stored = match kind {
                0 => size,
                1 => 1,
                2 => size,
                _ => return Err(malformed(p, "a block of the reserved type")),
            };
            if size > MAX_BLOCK {
                return Err(malformed(p, format!("a block of {size} bytes")));
            }
            raw += if kind == 2 { 0 } else { size };
            p += 3 + stored;
            if p > end {
                return Err(malformed(p, "the zstd frame ends inside a block"));
            }
            if last {
                ends_empty = blocks > 1 && kind == 0 && size == 0;
                break;
            }
        }
        if checksum {
            p += 4;
        }
        if p > end {
            return Err(malformed(end, "the zstd frame ends inside its checksum"));
        }
        if let Some(n) = content_size {
            if raw > n {
                return Err(malformed(at, "blocks hold more than the content size"));
            }
        }
        Ok(Info {
            len: p - at,
            window_log,
            content_size,
            checksum,
            blocks,
            ends_empty,
        })
    }

    /// The parameters worth a trial, most likely first.
    fn candidates(&self) -> Vec<Params> {
        let base = Params {
            level: 3,
            threaded: true,
            content_size: self.content_size,
            size_in_header: self.content_size.is_some(),
            checksum: self.checksum,
            long: None,
        };
        // A 128 MiB window is --long's (or level 22's on big content): those first. A single-segment frame
        // (its window cut to its content) may be --long's too: those last.
        let order = match self.window_log {
            Some(MAX_WINDOW_LOG) => vec![Some(MAX_WINDOW_LOG), None],
            None => vec![None, Some(MAX_WINDOW_LOG)],
            Some(_) => vec![None],
        };
        let mut out = Vec::with_capacity(2 * LEVELS.len());
        for long in order {
            out.extend(LEVELS.iter().map(|&level| Params {
                level,
                long,
                ..base
            }));
        }
        out
    }
}

impl Params {
    /// An encoder with these parameters (on up to `workers` workers when threaded).
    fn encoder(&self, workers: u32) -> io::Result<CCtx<'static>> {
        let mut c = CCtx::try_create()
            .ok_or_else(|| io::Error::other("libzstd could not make an encoder"))?;
        let mut set = |p| c.set_parameter(p).map(drop).map_err(zstd_error);
        set(CParameter::CompressionLevel(i32::from(self.level)))?;
        set(CParameter::ChecksumFlag(self.checksum))?;
        set(CParameter::ContentSizeFlag(self.size_in_header))?;
        if let Some(w) = self.long {
            set(CParameter::EnableLongDistanceMatching(true))?;
            set(CParameter::WindowLog(u32::from(w)))?;
        }
        if self.threaded && workers > 0 {
            set(CParameter::NbWorkers(workers.min(MAX_WORKERS)))?;
        }
        c.set_pledged_src_size(self.content_size)
            .map_err(zstd_error)?;
        Ok(c)
    }

    /// The other way the same frame of `raw_len` bytes of content may have been written, if there is one:
    /// single-threaded for multi-threaded and back. They differ only past the first job (at least
    /// [`SAME_UNTIL`]), so a trial cannot tell them apart.
    pub fn alternative(&self, raw_len: u64) -> Option<Params> {
        (raw_len > SAME_UNTIL).then_some(Params {
            threaded: !self.threaded,
            ..*self
        })
    }

    /// How the parameters are recorded: the libzstd version, the level, flags (threaded, content size told,
    /// in the header, checksum, long), then long's window log and the content size when they apply.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(LIBZSTD.len() as u8);
        out.extend_from_slice(LIBZSTD.as_bytes());
        out.push(self.level as u8);
        let flags = u8::from(self.threaded)
            | u8::from(self.content_size.is_some()) << 1
            | u8::from(self.size_in_header) << 2
            | u8::from(self.checksum) << 3
            | u8::from(self.long.is_some()) << 4;
        out.push(flags);
        if let Some(w) = self.long {
            out.push(w);
        }
        if let Some(n) = self.content_size {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }

    /// Parameters recorded by [`Params::write_to`] at the start of `bytes`, which is advanced past them.
    pub fn read_from(bytes: &mut &[u8]) -> Result<Params, String> {
        let short = || "zstd parameters cut short".to_string();
        let mut rest = *bytes;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let (a, b) = rest.split_at_checked(n).ok_or_else(short)?;
            rest = b;
            Ok(a)
        };
        let n = take(1)?[0] as usize;
        let version = take(n)?;
        if version != LIBZSTD.as_bytes() {
            return Err(format!(
                "a zstd frame of libzstd {}: this ferry re-creates those of {LIBZSTD}",
                String::from_utf8_lossy(version)
            ));
        }
        let level = take(1)?[0] as i8;
        if !(-7..=22).contains(&level) || level == 0 {
            return Err(format!("zstd level {level} out of range"));
        }
        let flags = take(1)?[0];
        if flags >> 5 != 0 {
            return Err(format!("zstd parameter flags {flags:#x} not known"));
        }
        let long = if flags & 0x10 != 0 {
            let w = take(1)?[0];
            if !(10..=MAX_WINDOW_LOG).contains(&w) {
                return Err(format!("zstd window log {w} out of range"));
            }
            Some(w)
        } else {
            None
        };
        let content_size = if flags & 2 != 0 {
            Some(u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")))
        } else {
            None
        };
        let p = Params {
            level,
            threaded: flags & 1 != 0,
            content_size,
            size_in_header: flags & 4 != 0,
            checksum: flags & 8 != 0,
            long,
        };
        *bytes = rest;
        Ok(p)
    }
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.level < 0 {
            write!(f, "zstd --fast={}", -self.level)?;
        } else {
            write!(f, "zstd -{}", self.level)?;
        }
        if let Some(w) = self.long {
            write!(f, " --long={w}")?;
        }
        if !self.threaded {
            f.write_str(" --single-thread")?;
        }
        if !self.checksum {
            f.write_str(" --no-check")?;
        }
        match (self.content_size, self.size_in_header) {
            (None, _) => f.write_str(" (size not known)"),
            (Some(_), false) => f.write_str(" --no-content-size"),
            (Some(_), true) => Ok(()),
        }
    }
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(format!("libzstd: {}", zstd_safe::get_error_name(code)))
}

/// One step of `c` over `input` into `buf`: (input used, output made, frame ended).
fn compress_step(
    c: &mut CCtx<'_>,
    input: &[u8],
    buf: &mut [u8],
    end: bool,
) -> io::Result<(usize, usize, bool)> {
    let mut i = InBuffer::around(input);
    let mut o = OutBuffer::around(buf);
    let op = if end {
        ZSTD_EndDirective::ZSTD_e_end
    } else {
        ZSTD_EndDirective::ZSTD_e_continue
    };
    let left = c.compress_stream2(&mut o, &mut i, op).map_err(zstd_error)?;
    Ok((i.pos(), o.pos(), end && left == 0 && i.pos() == input.len()))
}

/// Encode everything `src` yields as one frame with `params` to `out` (on up to `workers` workers when
/// threaded); the bytes written.
pub fn encode(
    params: &Params,
    workers: u32,
    src: impl Read,
    mut out: impl Write,
) -> io::Result<u64> {
    let mut c = params.encoder(workers)?;
    // The frame ends with the last content when its size is known (the CLI reading a file), after it when
    // it is not (a pipe): the two differ by an empty last block.
    let mut fed = 0u64;
    pump_io(
        src,
        |b| out.write_all(b),
        |input, buf, eof| {
            let last = params.content_size == Some(fed + input.len() as u64);
            let (used, made, done) = compress_step(&mut c, input, buf, eof || last)?;
            fed += used as u64;
            Ok((used, made, done))
        },
    )
}

/// A decoder holding at most a [`MAX_WINDOW_LOG`] window.
fn decoder() -> io::Result<DCtx<'static>> {
    let mut d =
        DCtx::try_create().ok_or_else(|| io::Error::other("libzstd could not make a decoder"))?;
    d.set_parameter(DParameter::WindowLogMax(u32::from(MAX_WINDOW_LOG)))
        .map_err(zstd_error)?;
    Ok(d)
}

/// The raw content of the frames read from `src` (one, or several one after another), handed to `out` as it is
/// decoded; its length.
pub fn decode(src: impl Read, out: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
    let mut d = decoder()?;
    // Whether the last frame ended: `src` may hold several, one after another (zstd:chunked).
    let mut ended = false;
    pump_io(src, out, |input, buf, eof| {
        if input.is_empty() && eof && ended {
            return Ok((0, 0, true));
        }
        let mut i = InBuffer::around(input);
        let mut o = OutBuffer::around(buf);
        let hint = d
            .decompress_stream(&mut o, &mut i)
            .map_err(|c| io::Error::new(io::ErrorKind::InvalidData, zstd_error(c)))?;
        ended = hint == 0;
        Ok((i.pos(), o.pos(), false))
    })
}

/// The parameters that re-create the frame at `at` of `src` (read as `info`), found by trial on its first
/// blocks. Only a guess until the whole frame has been re-encoded and compared.
pub fn find<R: ReadAt + ?Sized>(src: &R, at: u64, info: &Info) -> Result<Params, Refused> {
    let (raw, whole, want) = trial_data(src, at, info)?;
    for p in info.candidates() {
        if let Some(memory) = trial(&p, &raw, whole, &want, info.len)? {
            let workers = if p.threaded { MAX_WORKERS } else { 1 };
            if memory * u64::from(workers) > MAX_ENCODER_MEMORY {
                return Err(Refused::Unsupported(format!(
                    "{p}: its encoder would hold about {} bytes (more than {MAX_ENCODER_MEMORY})",
                    memory * u64::from(workers)
                )));
            }
            return Ok(p);
        }
    }
    Err(Refused::Unsupported(format!(
        "no level of libzstd {LIBZSTD} re-creates this zstd frame's first blocks"
    )))
}

/// What a trial compares for the frame at `at` of `src`: its first 512 KiB of content, whether that is all of
/// it (then the trial ends the frame: its last block is marked so; a byte more is decoded to know), and the
/// frame's first bytes.
pub(crate) fn trial_data<R: ReadAt + ?Sized>(
    src: &R,
    at: u64,
    info: &Info,
) -> Result<(Vec<u8>, bool, Vec<u8>), Refused> {
    let mut raw = Vec::new();
    let mut whole = false;
    {
        let mut sink = |b: &[u8]| {
            let room = TRIAL_RAW + 1 - raw.len();
            raw.extend_from_slice(&b[..b.len().min(room)]);
            if raw.len() > TRIAL_RAW {
                Err(io::Error::other("enough"))
            } else {
                Ok(())
            }
        };
        match decode(Range::new(src, at, info.len), &mut sink) {
            Ok(_) => whole = true,
            Err(_) if raw.len() > TRIAL_RAW => raw.truncate(TRIAL_RAW),
            Err(e) => {
                return Err(malformed(
                    at,
                    format!("decoding the zstd frame's start: {e}"),
                ))
            }
        }
    }
    let want_len = info.len.min((TRIAL_RAW + (64 << 10)) as u64) as usize;
    let mut want = vec![0u8; want_len];
    src.read_exact_at(&mut want, at)?;
    Ok((raw, whole, want))
}

/// Whether `p` (single-threaded: the same output up to the first job's end, long-distance matching aside)
/// re-creates the frame whose first bytes are `want` from its first content `raw` (all of it when `whole`); if
/// so, the encoder's memory.
fn trial(
    p: &Params,
    raw: &[u8],
    whole: bool,
    want: &[u8],
    len: u64,
) -> Result<Option<u64>, Refused> {
    let mut c = Params {
        threaded: false,
        ..*p
    }
    .encoder(0)?;
    let mut out: Vec<u8> = Vec::with_capacity(want.len() + (64 << 10));
    let mut buf = vec![0u8; 128 << 10];
    let mut fed = 0usize;
    loop {
        let step = raw.len().min(fed + (128 << 10));
        // Ended as `encode` ends it: with the last content when its size is known, after it when not.
        let end = whole && (fed == raw.len() || p.content_size == Some(step as u64));
        let (used, made, done) = compress_step(&mut c, &raw[fed..step], &mut buf, end)?;
        fed += used;
        out.extend_from_slice(&buf[..made]);
        let n = out.len().min(want.len());
        if out[..n] != want[..n] {
            return Ok(None);
        }
        if done {
            return Ok((out.len() as u64 == len).then_some(c.sizeof() as u64));
        }
        // With long-distance matching the multi-threaded encoder departs from the single-threaded one inside
        // the first job (it finds long matches job by job): only the first blocks are compared.
        if p.long.is_some() && !whole && out.len() >= TRIAL_MATCH_LONG.min(want.len()) {
            return Ok(Some(c.sizeof() as u64));
        }
        if fed == raw.len() && !whole && used == 0 && made == 0 {
            // All the content a trial holds encoded (levels next to each other can agree on the first tens of
            // KiB, so all of it is compared) and what came matched.
            return Ok((!out.is_empty()).then_some(c.sizeof() as u64));
        }
    }
}

#[cfg(test)]
mod tests;
