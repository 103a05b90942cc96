//! Ferry's decomposers: a compressed stream, or a container of them, taken apart into its raw content and the
//! small data that re-creates the original byte for byte, and put back together from them.
//!
//! - [`xz`]: xz streams written by liblzma (presets 0-9, extreme, every check, single- and multi-threaded), the
//!   parameters found the way pristine-xz finds them: read from the stream's headers where they are recorded,
//!   tried against its first bytes where they are not;
//! - [`ar`]: `ar` archives (`.deb`), whose members are located so their compressed ones can be taken apart;
//! - [`packed`]: a file as a skeleton (everything kept as it is) and compressed members re-created into it.
//!
//! Nothing here knows the store: bytes in (a [`ReadAt`] source), raw content and re-creation data out, and back.
//! Every parser bounds what a hostile input can make it hold, and refuses with an error that names what is wrong
//! and where.

pub mod ar;
pub mod packed;
pub mod xz;

use std::io::{self, Read};

/// A source read at offsets (a file, or bytes in memory).
pub trait ReadAt: Sync {
    /// Fill `buf` from `at`; an error if the source ends first.
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, at)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        let start = usize::try_from(at)
            .ok()
            .filter(|&s| s <= self.len() && self.len() - s >= buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, at)
    }
}

/// The bytes `[at, at + len)` of a [`ReadAt`] source, as a reader.
pub struct Range<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    at: u64,
    end: u64,
}

impl<'a, R: ReadAt + ?Sized> Range<'a, R> {
    pub fn new(src: &'a R, at: u64, len: u64) -> Self {
        Range {
            src,
            at,
            end: at.saturating_add(len),
        }
    }
}

impl<R: ReadAt + ?Sized> Read for Range<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.end - self.at).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.src.read_exact_at(&mut buf[..n], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Why a stream or container cannot be taken apart here: it is then kept as it is. `at` is the byte offset in
/// the input where the reason was found.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("at byte {at}: {why}")]
    Malformed { at: u64, why: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("reading the input: {0}")]
    Io(#[from] io::Error),
}

pub(crate) fn malformed(at: u64, why: impl Into<String>) -> Refused {
    Refused::Malformed {
        at,
        why: why.into(),
    }
}
