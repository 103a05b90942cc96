//! A file as a skeleton and compressed members: each member (an xz, zstd, bzip2 or gzip stream) is taken apart
//! into its raw content, everything around the members (an `ar` archive's headers, `debian-binary`, an rpm's lead and
//! headers, members that cannot be re-created) is the skeleton, kept as it is, and [`join`] puts the file back
//! together from the skeleton and the re-created members.

use crate::deflate::stream as deflate;
use crate::{ar, bzip2, klauspost, rpm, xz, zstd, Range, ReadAt, Refused};
use std::io::{self, Read, Write};

/// Compressed members of one file taken apart, at most (a `.deb` has two): each costs trials of the encoder,
/// so a file of thousands of tiny xz members keeps the rest as they are.
pub const MAX_MEMBERS: usize = 16;

/// What kind of file a layout was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bare xz stream (`.tar.xz`, `Packages.xz`).
    Xz,
    /// A bare bzip2 stream (`.tar.bz2`).
    Bzip2,
    /// A bare zstd frame (`.tar.zst`, an image layer).
    Zstd,
    /// An `ar` archive (a `.deb`).
    Ar,
    /// An `.rpm`: its payload is the member.
    Rpm,
}

/// The start of a gzip stream (magic and the deflate method). A bare gzip blob is the store's own case; a gzip
/// member of a file (an rpm's payload, an old package's `data.tar.gz`) is taken apart here.
pub const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

impl Kind {
    /// The kind of file that starts with `head` (at least eight bytes of it), if it is one taken apart here.
    pub fn of(head: &[u8]) -> Option<Kind> {
        if head.starts_with(&xz::MAGIC) {
            Some(Kind::Xz)
        } else if head.starts_with(&bzip2::MAGIC)
            && head.get(3).is_some_and(|d| (b'1'..=b'9').contains(d))
        {
            Some(Kind::Bzip2)
        } else if head.starts_with(&zstd::MAGIC) {
            Some(Kind::Zstd)
        } else if head.starts_with(ar::MAGIC) {
            Some(Kind::Ar)
        } else if head.starts_with(&rpm::MAGIC) {
            Some(Kind::Rpm)
        } else {
            None
        }
    }
}

/// A compressed member of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name (`control.tar.xz`, `payload` for an rpm's; empty for a bare stream).
    pub name: String,
    /// Where it is in the file, and its length.
    pub at: u64,
    pub len: u64,
    /// What its headers say.
    pub codec: Codec,
}

/// A member's compression, and what its headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    Xz(xz::Info),
    /// bzip2 at this level.
    Bzip2(u8),
    Zstd(zstd::Info),
    /// zstd frames one after another (zstd:chunked: one for each file), each as its header says.
    ZstdFrames(Vec<zstd::Info>),
    /// A gzip stream, taken apart by [`deflate`] (the producer's model found as it is decomposed).
    Gzip,
}

/// The parameters that re-create a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Params {
    Xz(xz::Params),
    Bzip2 {
        level: u8,
    },
    Zstd(zstd::Params),
    /// zstd as Go's klauspost/compress writes it ([`klauspost`]).
    GoZstd(klauspost::Params),
    /// Frames Go's encoder wrote one after another ([`klauspost::encode_frames`]), of these sizes of content.
    GoZstdFrames(klauspost::Params, Vec<klauspost::FrameSize>),
    /// gzip: what re-creates it is not a few parameters but a re-creation stream ([`deflate::decompose`]) of
    /// this many bytes, which the caller keeps beside the members' table and hands to [`deflate::recompose`].
    Deflate {
        recreation_len: u64,
    },
}

impl Member {
    /// The parameters that re-create this member of `src`: for xz and zstd found by trial ([`xz::find`],
    /// [`zstd::find`]), for bzip2 read from its header. Only a guess until the whole member has been re-encoded
    /// and compared.
    pub fn find<R: ReadAt + ?Sized>(&self, src: &R) -> Result<Params, Refused> {
        match &self.codec {
            Codec::Xz(info) => xz::find(src, self.at, info).map(Params::Xz),
            &Codec::Bzip2(level) => Ok(Params::Bzip2 { level }),
            Codec::Zstd(info) => {
                // Go's streams first when the header has their shape, libzstd's levels otherwise.
                let go = || klauspost::find(src, self.at, info);
                if klauspost::likely(info) {
                    if let Some(p) = go()? {
                        return Ok(Params::GoZstd(p));
                    }
                }
                match zstd::find(src, self.at, info) {
                    Ok(p) => Ok(Params::Zstd(p)),
                    Err(e) if !klauspost::likely(info) => go()?.map(Params::GoZstd).ok_or(e),
                    Err(e) => Err(e),
                }
            }
            Codec::ZstdFrames(frames) => klauspost::find_frames(src, self.at, frames)
                .map(|(p, sizes)| Params::GoZstdFrames(p, sizes)),
            // Found while it is decomposed, with its re-creation stream.
            Codec::Gzip => Ok(Params::Deflate { recreation_len: 0 }),
        }
    }
}

impl Params {
    /// Encode everything `src` yields with these parameters to `out` (xz and multi-threaded zstd on up to
    /// `threads` threads). A gzip member is not encoded from parameters: [`deflate::recompose`] re-creates it.
    pub fn encode(&self, threads: u32, src: impl Read, out: impl Write) -> io::Result<u64> {
        match self {
            Params::Xz(p) => xz::encode(p, threads, src, out),
            Params::Bzip2 { level } => bzip2::encode(*level, src, out),
            Params::Zstd(p) => zstd::encode(p, threads, src, out),
            Params::GoZstd(p) => klauspost::encode(p, src, out),
            Params::GoZstdFrames(p, sizes) => klauspost::encode_frames(p, sizes, src, out),
            Params::Deflate { .. } => Err(io::Error::other(
                "a gzip member is re-created from its re-creation stream, not encoded",
            )),
        }
    }

    /// The raw content of a member these parameters re-create, read from `src`, handed to `out`; its length. A
    /// gzip member's comes from [`deflate::decompose`], with its re-creation stream.
    pub fn decode(
        &self,
        src: impl Read,
        out: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        match self {
            Params::Xz(_) => xz::decode(src, out),
            Params::Bzip2 { .. } => bzip2::decode(src, out),
            Params::Zstd(_) | Params::GoZstd(_) | Params::GoZstdFrames(..) => {
                zstd::decode(src, out)
            }
            // Its raw content comes with its re-creation stream, from `deflate::decompose`.
            Params::Deflate { .. } => Err(io::Error::other(
                "a gzip member is taken apart by the deflate decomposer, not decoded",
            )),
        }
    }

    /// Other parameters the same member (of `raw_len` bytes of content) may have been written with, that a
    /// trial cannot tell from these ([`zstd::Params::alternative`]): worth re-encoding with when these did not
    /// re-create it.
    pub fn alternative(&self, raw_len: u64) -> Option<Params> {
        match self {
            Params::Zstd(p) => p.alternative(raw_len).map(Params::Zstd),
            _ => None,
        }
    }

    /// How the parameters are recorded: `x` and [`xz::Params::write_to`], `z` and [`zstd::Params::write_to`],
    /// `k` and [`klauspost::Params::write_to`], `K`, those and the frames' sizes, `d` and the length of a gzip
    /// member's re-creation stream, or `b`, the libbzip2 version and the level.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Params::Xz(p) => {
                out.push(b'x');
                p.write_to(out);
            }
            Params::Bzip2 { level } => {
                out.push(b'b');
                out.push(bzip2::LIBBZ2.len() as u8);
                out.extend_from_slice(bzip2::LIBBZ2.as_bytes());
                out.push(*level);
            }
            Params::Zstd(p) => {
                out.push(b'z');
                p.write_to(out);
            }
            Params::GoZstd(p) => {
                out.push(b'k');
                p.write_to(out);
            }
            Params::GoZstdFrames(p, sizes) => {
                out.push(b'K');
                p.write_to(out);
                write_varint(out, sizes.len() as u64);
                for n in sizes {
                    write_varint(out, n.to_u64());
                }
            }
            Params::Deflate { recreation_len } => {
                out.push(b'd');
                write_varint(out, *recreation_len);
            }
        }
    }

    /// Parameters recorded by [`Params::write_to`] at the start of `bytes`, which is advanced past them.
    pub fn read_from(bytes: &mut &[u8]) -> Result<Params, String> {
        let short = || "member parameters cut short".to_string();
        let (&tag, mut rest) = bytes.split_first().ok_or_else(short)?;
        let p = match tag {
            b'x' => Params::Xz(xz::Params::read_from(&mut rest)?),
            b'b' => {
                let (&n, r) = rest.split_first().ok_or_else(short)?;
                // The version is recorded for the reader; libbzip2's output has been the same across 1.0.x.
                let (&level, r) = r
                    .get(n as usize..)
                    .and_then(<[u8]>::split_first)
                    .ok_or_else(short)?;
                if !(1..=9).contains(&level) {
                    return Err(format!("bzip2 level {level} out of range"));
                }
                rest = r;
                Params::Bzip2 { level }
            }
            b'z' => Params::Zstd(zstd::Params::read_from(&mut rest)?),
            b'k' => Params::GoZstd(klauspost::Params::read_from(&mut rest)?),
            b'K' => {
                let p = klauspost::Params::read_from(&mut rest)?;
                let n = read_varint(&mut rest)?;
                // Each size takes a byte at least: a count beyond what is left is a damaged record.
                if n > klauspost::MAX_FRAMES as u64 || n > rest.len() as u64 {
                    return Err(format!("{n} zstd frames recorded in {} bytes", rest.len()));
                }
                let sizes = (0..n)
                    .map(|_| read_varint(&mut rest).map(klauspost::FrameSize::from_u64))
                    .collect::<Result<_, _>>()?;
                Params::GoZstdFrames(p, sizes)
            }
            b'd' => Params::Deflate {
                recreation_len: read_varint(&mut rest)?,
            },
            t => return Err(format!("member codec {t} is not known to this ferry")),
        };
        *bytes = rest;
        Ok(p)
    }
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Params::Xz(p) => p.fmt(f),
            Params::Bzip2 { level } => write!(f, "bzip2 -{level}"),
            Params::Zstd(p) => p.fmt(f),
            Params::GoZstd(p) => p.fmt(f),
            Params::GoZstdFrames(p, sizes) => write!(f, "{p}, {} frames", sizes.len()),
            Params::Deflate { recreation_len } => {
                write!(f, "gzip, {recreation_len} bytes of re-creation stream")
            }
        }
    }
}

/// `n` as a LEB128 varint.
fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A LEB128 varint at the start of `bytes`, which is advanced past it.
fn read_varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().ok_or("a number cut short")?;
        *bytes = rest;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err("a number of more than 64 bits".into())
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
            Kind::Xz | Kind::Bzip2 | Kind::Zstd => vec![(String::new(), 0, len)],
            Kind::Ar => ar::members(src, len)?
                .into_iter()
                .map(|m| (m.name, m.at, m.len))
                .collect(),
            Kind::Rpm => {
                let r = rpm::read(src, len)?;
                let mut head = [0u8; 6];
                let sniffed = r.payload_len >= 6
                    && src.read_exact_at(&mut head, r.payload_at).is_ok()
                    && (head.starts_with(&GZIP_MAGIC)
                        || matches!(Kind::of(&head), Some(Kind::Xz | Kind::Zstd | Kind::Bzip2)));
                if !sniffed {
                    // An lzma payload, or one no compressor wrote: kept, and said so.
                    let what = r.compressor.as_deref().unwrap_or("no compressor named");
                    let why = format!("an rpm payload of {} bytes ({what})", r.payload_len);
                    layout
                        .refused
                        .push(("payload".into(), Refused::Unsupported(why)));
                }
                vec![("payload".into(), r.payload_at, r.payload_len)]
            }
        };
        for (name, at, len) in found {
            let mut head = [0u8; 6];
            if len < 6 || src.read_exact_at(&mut head, at).is_err() {
                continue;
            }
            let gzip = head.starts_with(&GZIP_MAGIC);
            let member_kind = Kind::of(&head).filter(|&k| !matches!(k, Kind::Ar | Kind::Rpm));
            if member_kind.is_none() && !gzip {
                continue;
            }
            if layout.members.len() == MAX_MEMBERS {
                let why = format!("more than {MAX_MEMBERS} compressed members in one file");
                layout.refused.push((name, Refused::Unsupported(why)));
                continue;
            }
            let codec = match member_kind {
                // Its members and blocks are read as it is decomposed.
                None => Ok((Codec::Gzip, len)),
                Some(Kind::Xz) => xz::Info::read(src, at, len).map(|i| (Codec::Xz(i), len)),
                Some(Kind::Zstd) => zstd::Info::read(src, at, len)
                    .map(|i| (Codec::Zstd(i), len))
                    .or_else(|e| match klauspost::read_frames(src, at, len) {
                        // Frames one after another, then skippable frames only (zstd:chunked's table of
                        // contents), which are skeleton.
                        Ok((frames, end)) if kind == Kind::Zstd => {
                            Ok((Codec::ZstdFrames(frames), end - at))
                        }
                        _ => Err(e),
                    }),
                _ => bzip2::level(src, at, len).map(|l| (Codec::Bzip2(l), len)),
            };
            match codec {
                Ok((codec, len)) => layout.members.push(Member {
                    name,
                    at,
                    len,
                    codec,
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

/// Take `file` apart and put it back together from its skeleton and its members re-encoded (with the
/// alternative parameters too, as the store tries them), a member that cannot be (its trial, decoding or
/// re-encoding refused) left in the skeleton as the store leaves it: how many members were re-created, or `None`
/// when the file's layout is refused. Panics when what was accepted comes back differently: what the fuzz
/// target `packed` and the tests on damaged files run.
pub fn round_trip(file: &[u8]) -> Option<usize> {
    let kind = Kind::of(file)?;
    let mut layout = Layout::read(file, file.len() as u64, kind).ok()?;
    let mut members = Vec::new();
    layout.members.retain(|m| match take_apart(file, m) {
        Some(member) => {
            members.push(member);
            true
        }
        None => false,
    });
    let mut skeleton = Vec::new();
    layout
        .skeleton(file)
        .read_to_end(&mut skeleton)
        .expect("reading the skeleton from memory");
    assert_eq!(skeleton.len() as u64, layout.skeleton_len());
    let places: Vec<Place> = layout.members.iter().map(|m| (m.at, m.len)).collect();
    let mut out = Vec::new();
    let n = join(
        &places,
        &skeleton[..],
        |i, w| match &members[i] {
            (Params::Deflate { .. }, raw, rec) => deflate::recompose(&raw[..], &rec[..], w)
                .map(drop)
                .map_err(io::Error::other),
            (p, raw, _) => p.encode(2, &raw[..], w).map(drop),
        },
        &mut out,
    )
    .expect("joining what was accepted");
    assert_eq!(n, file.len() as u64);
    assert!(out == file, "the file came back differently");
    Some(layout.members.len())
}

/// A member of `file` taken apart as the store does: its parameters, raw content and (gzip) re-creation stream;
/// `None` when it cannot be re-created exactly.
fn take_apart(file: &[u8], m: &Member) -> Option<(Params, Vec<u8>, Vec<u8>)> {
    let stream = &file[m.at as usize..(m.at + m.len) as usize];
    if m.codec == Codec::Gzip {
        let (d, raw, rec) = deflate::decompose_in_memory(stream, &Default::default()).ok()?;
        let same = d.reencoded == *blake3::hash(stream).as_bytes() && d.reencoded_len == m.len;
        let recreation_len = d.recreation_len;
        return same.then_some((Params::Deflate { recreation_len }, raw, rec));
    }
    let mut raw = Vec::new();
    let found = m.find(file).ok()?;
    found
        .decode(stream, |b| {
            raw.extend_from_slice(b);
            Ok(())
        })
        .ok()?;
    let same = |p: &Params| {
        let mut cmp = crate::xz::Comparing::new(stream);
        p.encode(2, &raw[..], &mut cmp).is_ok() && cmp.at_end().unwrap_or(false)
    };
    let other = found.alternative(raw.len() as u64);
    let p = [Some(found), other].into_iter().flatten().find(same)?;
    Some((p, raw, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ar::tests::archive;
    use crate::klauspost::Level;

    fn xz(args: &[&str], input: &[u8]) -> Vec<u8> {
        tool("xz", args, input)
    }

    use crate::tests::run_tool as tool;

    fn round_trip(file: &[u8], kind: Kind) -> usize {
        assert_eq!(Kind::of(file), Some(kind));
        super::round_trip(file).expect("taken apart and put back")
    }

    #[test]
    fn debs_and_bare_streams_come_back_from_skeleton_and_members() {
        let text: Vec<u8> = std::fs::read("/usr/share/common-licenses/GPL-3").unwrap();
        let bin: Vec<u8> = std::fs::read("/bin/ls").unwrap();
        let control = xz(&["-6", "-T2"], &text[..5000]);
        let data = xz(&["-6", "-T2"], &bin);
        let deb = archive(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", &control),
            ("data.tar.xz", &data),
        ]);
        assert_eq!(Kind::of(&deb), Some(Kind::Ar));
        assert_eq!(round_trip(&deb, Kind::Ar), 2);
        let bare = xz(&["-9", "-T1"], &text);
        assert_eq!(Kind::of(&bare), Some(Kind::Xz));
        assert_eq!(round_trip(&bare, Kind::Xz), 1);
        // bzip2, bare and as an old package's data.tar.bz2.
        let bz = tool("bzip2", &["-9"], &bin);
        assert_eq!(Kind::of(&bz), Some(Kind::Bzip2));
        assert_eq!(round_trip(&bz, Kind::Bzip2), 1);
        let deb = archive(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", &control),
            ("data.tar.bz2", &bz),
        ]);
        assert_eq!(round_trip(&deb, Kind::Ar), 2);
        // zstd, bare and as an Ubuntu package's data.tar.zst (what dpkg-deb -Zzstd writes is tested in the
        // store's tests, with dpkg-deb itself).
        let zst = tool("zstd", &["-19"], &bin);
        assert_eq!(Kind::of(&zst), Some(Kind::Zstd));
        assert_eq!(round_trip(&zst, Kind::Zstd), 1);
        let deb = archive(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.zst", &tool("zstd", &["-3"], &text[..5000])),
            ("data.tar.zst", &zst),
        ]);
        assert_eq!(round_trip(&deb, Kind::Ar), 2);
        // gzip, as an old package's control.tar.gz and data.tar.gz (GNU gzip -9, as dpkg-deb -Zgzip's zlib
        // level 9 writes the same bytes).
        let deb = archive(&[
            ("debian-binary", b"2.0\n"),
            (
                "control.tar.gz",
                &tool("gzip", &["-9", "-n"], &text[..5000]),
            ),
            ("data.tar.gz", &tool("gzip", &["-9", "-n"], &bin)),
        ]);
        assert_eq!(round_trip(&deb, Kind::Ar), 2);
        // A member that cannot be re-created (a damaged gzip) stays in the skeleton; an odd-sized member keeps its
        // padding byte.
        let odd = xz(&["-0"], b"a");
        let mixed = archive(&[("a.gz", b"\x1f\x8b\x08 not really"), ("b.xz", &odd)]);
        assert_eq!(round_trip(&mixed, Kind::Ar), 1);
        // Thousands of tiny members: only the first MAX_MEMBERS are taken apart.
        let tiny = xz(&["-6"], b"tiny");
        let many: Vec<(String, &[u8])> = (0..MAX_MEMBERS + 4)
            .map(|i| (format!("m{i}.xz"), &tiny[..]))
            .collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let file = archive(&many);
        let layout = Layout::read(&file[..], file.len() as u64, Kind::Ar).unwrap();
        assert_eq!(
            (layout.members.len(), layout.refused.len()),
            (MAX_MEMBERS, 4)
        );
        assert_eq!(round_trip(&file, Kind::Ar), MAX_MEMBERS);
    }

    /// Frames of `parts` as Go's encoder writes them at `level`, then (for several) a skippable frame.
    fn go_zstd(level: Level, parts: &[&[u8]]) -> Vec<u8> {
        let params = klauspost::Params {
            level,
            checksum: true,
        };
        let mut out = Vec::new();
        let sizes: Vec<_> = parts
            .iter()
            .map(|p| klauspost::FrameSize {
                content: p.len() as u64,
                flushed: false,
            })
            .collect();
        klauspost::encode_frames(&params, &sizes, &parts.concat()[..], &mut out).unwrap();
        if parts.len() > 1 {
            out.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, b'F', b'E', b'R', b'Y']);
        }
        out
    }

    #[test]
    fn rpms_come_back_from_lead_headers_and_payload() {
        use crate::rpm::tests::rpmbuild;
        // What rpmbuild writes from real files (7 MB of binaries and text): its payload compressed as Fedora
        // and EL9 build (zstd 19, single- and multi-threaded), as EL7 and EL8 do (xz 2, threaded xz 7), bzip2.
        let files = ["/usr/bin/perl", "/usr/bin/gpg", "/usr/share/doc/rpm"];
        for payload in [
            "w19.zstdio",
            "w19T.zstdio",
            "w3.zstdio",
            "w2.xzdio",
            "w7T.xzdio",
            "w9.bzdio",
        ] {
            let file = rpmbuild("real", payload, &files);
            let layout = Layout::read(&file[..], file.len() as u64, Kind::Rpm).unwrap();
            assert_eq!(layout.members.len(), 1, "{payload}");
            // The payload is all but the lead and headers: tens of KB.
            assert!(layout.skeleton_len() < 64 << 10, "{payload}");
            assert_eq!(round_trip(&file, Kind::Rpm), 1, "{payload}");
        }
        // rpm's default on Debian, gzip (zlib's, level 9): the payload through the deflate predictors.
        for payload in ["", "w9.gzdio", "w6.gzdio"] {
            let file = rpmbuild("real", payload, &files);
            let layout = Layout::read(&file[..], file.len() as u64, Kind::Rpm).unwrap();
            assert_eq!(layout.members.len(), 1, "{payload}");
            assert_eq!(layout.members[0].codec, Codec::Gzip, "{payload}");
            assert_eq!(round_trip(&file, Kind::Rpm), 1, "{payload}");
        }
        // An lzma payload (the old format) stays in the skeleton, said to be refused.
        let file = rpmbuild("real", "w6.lzdio", &files[2..]);
        let layout = Layout::read(&file[..], file.len() as u64, Kind::Rpm).unwrap();
        assert!(layout.members.is_empty());
        assert_eq!(layout.refused.len(), 1);
        assert!(layout.refused[0].1.to_string().contains("lzma"));
        assert_eq!(round_trip(&file, Kind::Rpm), 0);
    }

    /// Real files of every kind taken apart here, small: what the damaged-file property starts from.
    fn seeds() -> &'static [Vec<u8>] {
        static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        SEEDS.get_or_init(|| {
            let text = &std::fs::read("/usr/share/common-licenses/GPL-3").unwrap()[..12_000];
            let bin = &std::fs::read("/bin/ls").unwrap()[..12_000];
            let (xz6, zst) = (xz(&["-6"], text), tool("zstd", &["-3"], bin));
            vec![
                xz6.clone(),
                xz(&["-9e", "-T2"], bin),
                tool("bzip2", &["-9"], text),
                zst.clone(),
                tool("zstd", &["-19", "--no-check"], text),
                archive(&[
                    ("debian-binary", b"2.0\n"),
                    ("control.tar.xz", &xz6),
                    ("data.tar.zst", &zst),
                ]),
                // Go's klauspost zstd (its model writes Go's bytes: klauspost::tests): a stream of two blocks,
                // and zstd:chunked's shape, frames at the best level then a skippable frame.
                go_zstd(
                    Level::Default,
                    &[&std::fs::read("/bin/ls").unwrap()[..140_000]],
                ),
                go_zstd(Level::Best, &[&text[..2000], bin, &text[2000..]]),
                crate::rpm::tests::rpmbuild(
                    "seed",
                    "w19.zstdio",
                    &[
                        "/usr/share/doc/rpm/README",
                        "/usr/share/doc/rpm/hregions.md",
                    ],
                ),
                crate::rpm::tests::rpmbuild(
                    "seed",
                    "w9.gzdio",
                    &[
                        "/usr/share/doc/rpm/README",
                        "/usr/share/doc/rpm/hregions.md",
                    ],
                ),
                crate::rpm::tests::rpmbuild(
                    "seed",
                    "w2.xzdio",
                    &[
                        "/usr/share/doc/rpm/README",
                        "/usr/share/doc/rpm/hregions.md",
                    ],
                ),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
        /// A damaged file — a byte changed, cut short, bytes inserted — is refused or comes back exactly: what
        /// the fuzz target `packed` checks, run on stable over real files.
        #[test]
        fn damaged_files_are_refused_or_come_back_exactly(
            seed in 0usize..12,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            byte in proptest::prelude::any::<u8>(),
            how in 0u8..3,
        ) {
            let mut file = seeds()[seed % seeds().len()].clone();
            let i = at.index(file.len());
            match how {
                0 => file[i] ^= byte | 1,
                1 => file.truncate(i),
                _ => file.splice(i..i, [byte; 3]).for_each(drop),
            }
            let _ = super::round_trip(&file);
        }
    }

    #[test]
    fn every_seed_comes_back() {
        for (i, f) in seeds().iter().enumerate() {
            assert!(super::round_trip(f).is_some(), "seed {i}");
        }
    }

    #[test]
    fn joining_refuses_members_of_the_wrong_length_and_short_skeletons() {
        let places = [(2u64, 3u64)];
        let ok = join(
            &places,
            &b"abfg"[..],
            |_, w| w.write_all(b"cde"),
            Vec::new(),
        );
        assert_eq!(ok.unwrap(), 7);
        assert!(join(&places, &b"abfg"[..], |_, w| w.write_all(b"cd"), Vec::new()).is_err());
        assert!(join(&places, &b"a"[..], |_, w| w.write_all(b"cde"), Vec::new()).is_err());
        assert!(join(
            &[(2, 3), (1, 1)],
            &b"abfg"[..],
            |_, w| w.write_all(b"cde"),
            Vec::new()
        )
        .is_err());
    }
}
