//! A file as a skeleton and compressed members: each member (an xz stream today) is taken apart into its raw
//! content, everything around the members (an `ar` archive's headers, `debian-binary`, members that cannot be
//! re-created) is the skeleton, kept as it is, and [`join`] puts the file back together from the skeleton and the
//! re-created members.

use crate::{ar, xz, Range, ReadAt, Refused};
use std::io::{self, Read, Write};

/// Compressed members of one file taken apart, at most (a `.deb` has two): each costs trials of the encoder,
/// so a file of thousands of tiny xz members keeps the rest as they are.
pub const MAX_MEMBERS: usize = 16;

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
            if layout.members.len() == MAX_MEMBERS {
                let why = format!("more than {MAX_MEMBERS} compressed members in one file");
                layout.refused.push((name, Refused::Unsupported(why)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ar::tests::archive;
    use std::process::{Command, Stdio};

    fn xz(args: &[&str], input: &[u8]) -> Vec<u8> {
        let mut child = Command::new("xz")
            .args(args)
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("xz (xz-utils) is installed");
        let mut stdin = child.stdin.take().unwrap();
        let data = input.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&data));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        out.stdout
    }

    /// `file` taken apart and joined again from its skeleton and its members re-encoded; how many members.
    fn round_trip(file: &[u8], kind: Kind) -> usize {
        let layout = Layout::read(file, file.len() as u64, kind).unwrap();
        let mut members = Vec::new();
        for m in &layout.members {
            let p = xz::find(file, m.at, &m.info).unwrap();
            let mut raw = Vec::new();
            xz::decode(&file[m.at as usize..(m.at + m.len) as usize], |b| {
                raw.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
            members.push((p, raw));
        }
        let mut skeleton = Vec::new();
        layout.skeleton(file).read_to_end(&mut skeleton).unwrap();
        assert_eq!(skeleton.len() as u64, layout.skeleton_len());
        let places: Vec<Place> = layout.members.iter().map(|m| (m.at, m.len)).collect();
        let mut out = Vec::new();
        let n = join(
            &places,
            &skeleton[..],
            |i, w| xz::encode(&members[i].0, 2, &members[i].1[..], w).map(drop),
            &mut out,
        )
        .unwrap();
        assert_eq!(n, file.len() as u64);
        assert!(out == file, "the file came back differently");
        layout.members.len()
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
        // A member that is not xz (gzip) stays in the skeleton; an odd-sized member keeps its padding byte.
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
