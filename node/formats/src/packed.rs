//! A file as a skeleton and compressed members: each member (an xz stream today) is taken apart into its raw
//! content, everything around the members (an `ar` archive's headers, `debian-binary`, members that cannot be
//! re-created) is the skeleton, kept as it is, and [`join`] puts the file back together from the skeleton and the
//! re-created members.

use crate::{ar, xz, Range, ReadAt, Refused};
use std::io::{self, Read, Write};

/// What kind of file a layout was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bare xz stream (`.tar.xz`, `Packages.xz`).
    Xz,
    /// An `ar` archive (a `.deb`).
    Ar,
}

impl Kind {
    /// The kind of file that starts with `head` (at least eight bytes of it), if it is one taken apart here.
    pub fn of(head: &[u8]) -> Option<Kind> {
        if head.starts_with(&xz::MAGIC) {
            Some(Kind::Xz)
        } else if head.starts_with(ar::MAGIC) {
            Some(Kind::Ar)
        } else {
            None
        }
    }
}

/// A compressed member of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name (`control.tar.xz`; empty for a bare stream).
    pub name: String,
    /// Where it is in the file, and its length.
    pub at: u64,
    pub len: u64,
    /// What its headers say.
    pub info: xz::Info,
}

/// Where a file's compressed members are.
#[derive(Debug)]
pub struct Layout {
    pub kind: Kind,
    /// The file's length.
    pub len: u64,
    /// Its members that may be re-created, in file order.
    pub members: Vec<Member>,
    /// Its compressed members that cannot be, with why (they stay in the skeleton).
    pub refused: Vec<(String, Refused)>,
}

impl Layout {
    /// Read where the compressed members of `src` (`len` bytes, of `kind`) are. Refused when the file is not
    /// well formed; a member that is not a re-creatable stream is listed in `refused`.
    pub fn read<R: ReadAt + ?Sized>(src: &R, len: u64, kind: Kind) -> Result<Layout, Refused> {
        let mut layout = Layout {
            kind,
            len,
            members: Vec::new(),
            refused: Vec::new(),
        };
        let found: Vec<(String, u64, u64)> = match kind {
            Kind::Xz => vec![(String::new(), 0, len)],
            Kind::Ar => ar::members(src, len)?
                .into_iter()
                .map(|m| (m.name, m.at, m.len))
                .collect(),
        };
        for (name, at, len) in found {
            let mut head = [0u8; 6];
            if len < 6 || src.read_exact_at(&mut head, at).is_err() || head != xz::MAGIC {
                continue;
            }
            match xz::Info::read(src, at, len) {
                Ok(info) => layout.members.push(Member {
                    name,
                    at,
                    len,
                    info,
                }),
                Err(e) => layout.refused.push((name, e)),
            }
        }
        Ok(layout)
    }

    /// The skeleton's length: the file without its members.
    pub fn skeleton_len(&self) -> u64 {
        self.len - self.members.iter().map(|m| m.len).sum::<u64>()
    }

    /// The skeleton of `src`: its bytes outside the members, in order.
    pub fn skeleton<'a, R: ReadAt + ?Sized>(&self, src: &'a R) -> impl Read + Send + 'a {
        let mut gaps = Vec::with_capacity(self.members.len() + 1);
        let mut pos = 0;
        for m in &self.members {
            gaps.push((pos, m.at - pos));
            pos = m.at + m.len;
        }
        gaps.push((pos, self.len - pos));
        gaps.into_iter().filter(|&(_, n)| n > 0).fold(
            Box::new(io::empty()) as Box<dyn Read + Send + 'a>,
            |r, (at, n)| Box::new(r.chain(Range::new(src, at, n))),
        )
    }
}

/// Where a member goes in the file: its offset and length.
pub type Place = (u64, u64);

/// Write the file whose members are at `places` (in file order): the skeleton's bytes up to each member, then
/// the member, which `member(i, out)` writes (exactly its length), then the rest of the skeleton.
pub fn join(
    places: &[Place],
    mut skeleton: impl Read,
    mut member: impl FnMut(usize, &mut dyn Write) -> io::Result<()>,
    mut out: impl Write,
) -> io::Result<u64> {
    let mut pos = 0u64;
    for (i, &(at, len)) in places.iter().enumerate() {
        let gap = at.checked_sub(pos).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "members overlap or are out of order",
            )
        })?;
        copy_exact(&mut skeleton, gap, &mut out, "the skeleton")?;
        let mut counted = Counting {
            inner: &mut out,
            len: 0,
        };
        member(i, &mut counted)?;
        if counted.len != len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("member {i} came out as {} bytes, not {len}", counted.len),
            ));
        }
        pos = at + len;
    }
    let rest = io::copy(&mut skeleton, &mut out)?;
    out.flush()?;
    Ok(pos + rest)
}

fn copy_exact(src: &mut impl Read, n: u64, out: &mut impl Write, what: &str) -> io::Result<()> {
    let got = io::copy(&mut src.take(n), out)?;
    if got != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{what} ends {} bytes early", n - got),
        ));
    }
    Ok(())
}

struct Counting<W> {
    inner: W,
    len: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
