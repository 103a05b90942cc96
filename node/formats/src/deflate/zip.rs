//! Zip containers (wheels, jars, nupkg, plain zip) as a *skeleton*, their members' decompressed contents, and the
//! deflate re-creation stream of those members.
//!
//! A zip is split by where its deflated members' compressed bytes lie ([`Layout`], read from the central
//! directory and each member's local header):
//! - the **skeleton**: every byte of the file outside those members, in order — local headers, data descriptors,
//!   stored and other members' data, the central directory, the end records, any prefix (self-extracting
//!   archives) or comment. Kept as it is; it is what a zip is besides its deflated contents.
//! - the **members** (method 8, not encrypted), each wrapped as one member of a *synthetic gzip stream*
//!   ([`Layout::gzip`]): the fixed ten-byte header [`SYNTH_HEADER`], the member's deflate bytes, and a trailer
//!   made from the central directory's CRC-32 and size. That stream goes through [`super::stream::decompose`]
//!   like any gzip blob — the producer's model (zlib for Python's `zipfile` and Java's `jar`) found once for the
//!   whole archive, every member a piece of its own on the pool, the CRC-32 of each checked — and gives the
//!   members' contents back to back and a re-creation stream.
//! - the **table** ([`Layout::table`]): for each member, how many skeleton bytes come before it and its
//!   compressed length: `varint count  count × (varint gap  varint len)`.
//!
//! [`join`] puts a zip back together from the skeleton, the table and the re-created synthetic stream. Nothing
//! here trusts the zip: the layout only decides how the file is cut, never what is kept — the skeleton is the
//! file's own bytes, and the members are accepted only when their synthetic stream re-encodes to the bytes it was
//! made of (the caller compares [`super::stream::Decomposed::reencoded`] with [`Gzip::digest`]). A member table
//! that lies about sizes or offsets makes a stream that does not decode, or does not re-encode, and the zip is
//! then kept as it is.

use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

/// The header of every member of the synthetic gzip stream: no flags, no time, OS unknown.
pub const SYNTH_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// The synthetic trailer: CRC-32 and ISIZE.
const SYNTH_TRAILER: u64 = 8;
/// Most central directory entries read (a zip of more is kept as it is).
pub const MAX_ENTRIES: u64 = 1 << 20;
/// Largest central directory read (it is read into memory; a zip with a larger one is kept as it is).
pub const MAX_DIRECTORY: u64 = 128 << 20;
/// Bytes read at once from the file.
const READ_BUF: usize = 1 << 20;

const SIG_LOCAL: u32 = 0x0403_4b50;
const SIG_CENTRAL: u32 = 0x0201_4b50;
const SIG_END: u32 = 0x0605_4b50;
const SIG_END64: u32 = 0x0606_4b50;
const SIG_LOCATOR64: u32 = 0x0706_4b50;

/// Why a file's zip layout could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("reading: {0}")]
    Read(#[from] io::Error),
    #[error("malformed zip at byte {offset}: {what}")]
    Malformed { what: &'static str, offset: u64 },
    #[error("the zip has {0} entries, more than {MAX_ENTRIES} are read")]
    TooMany(u64),
    #[error("the zip's central directory is {0} bytes, more than {MAX_DIRECTORY} are read")]
    TooLarge(u64),
}

fn bad(what: &'static str, offset: u64) -> ZipError {
    ZipError::Malformed { what, offset }
}

/// One deflated member: where its compressed bytes are and what the central directory says of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Offset of its compressed bytes in the file, and their length.
    pub at: u64,
    pub len: u64,
    /// CRC-32 and size of its contents.
    pub crc: u32,
    pub size: u64,
    /// A hash of its name (the same wherever it sits), for cutting the contents along members.
    pub name: u64,
}

/// The deflated members of a zip file of `len` bytes, in file order, none overlapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub len: u64,
    pub members: Vec<Member>,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("four bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"))
}

fn read_at(f: &std::fs::File, at: u64, n: usize) -> Result<Vec<u8>, ZipError> {
    let mut buf = vec![0u8; n];
    f.read_exact_at(&mut buf, at)?;
    Ok(buf)
}

/// Where the central directory is, how long, and how many entries it holds.
struct Directory {
    at: u64,
    len: u64,
    entries: u64,
    /// What to add to the offsets the records give (the length of a prefix before the archive).
    shift: u64,
}

/// Find the end of central directory record (and the zip64 one when it points to it).
fn directory(f: &std::fs::File, len: u64) -> Result<Directory, ZipError> {
    if len < 22 {
        return Err(bad("too short for an end of central directory record", 0));
    }
    let tail_len = len.min(22 + 0xffff) as usize;
    let tail_at = len - tail_len as u64;
    let tail = read_at(f, tail_at, tail_len)?;
    // The last record whose comment runs exactly to the end of the file.
    let eocd = (0..=tail_len - 22)
        .rev()
        .find(|&i| {
            u32_at(&tail, i) == SIG_END && i + 22 + u16_at(&tail, i + 20) as usize == tail_len
        })
        .ok_or_else(|| bad("no end of central directory record", len))?;
    let e = &tail[eocd..];
    let eocd_at = tail_at + eocd as u64;
    if u16_at(e, 4) != 0 || u16_at(e, 6) != 0 {
        return Err(bad("a zip split over several disks", eocd_at));
    }
    let (mut entries, mut dir_len, mut dir_at) = (
        u16_at(e, 10) as u64,
        u32_at(e, 12) as u64,
        u32_at(e, 16) as u64,
    );
    let mut end = eocd_at;
    let zip64 = entries == 0xffff || dir_len == 0xffff_ffff || dir_at == 0xffff_ffff;
    if eocd_at >= 20 {
        let loc = read_at(f, eocd_at - 20, 20)?;
        if u32_at(&loc, 0) == SIG_LOCATOR64 {
            let at = u64_at(&loc, 8);
            if at.checked_add(56).is_some_and(|e| e <= eocd_at - 20) {
                let r = read_at(f, at, 56)?;
                if u32_at(&r, 0) == SIG_END64 {
                    entries = u64_at(&r, 32);
                    dir_len = u64_at(&r, 40);
                    dir_at = u64_at(&r, 48);
                    end = at;
                }
            }
        }
        if zip64 && end == eocd_at {
            return Err(bad(
                "zip64 end of central directory record missing",
                eocd_at,
            ));
        }
    }
    // A prefix before the archive (a self-extracting zip) shifts every offset the records give.
    let shift = end
        .checked_sub(dir_len)
        .and_then(|d| d.checked_sub(dir_at))
        .ok_or_else(|| bad("central directory runs past its end record", end))?;
    Ok(Directory {
        at: dir_at + shift,
        len: dir_len,
        entries,
        shift,
    })
}

impl Layout {
    /// Read the layout of the zip file `f` (`len` bytes): its central directory, then each deflated member's
    /// local header. Members that are encrypted, not deflated, empty, or that overlap one before them are left
    /// in the skeleton.
    pub fn read(f: &std::fs::File, len: u64) -> Result<Layout, ZipError> {
        let dir = directory(f, len)?;
        let shift = dir.shift;
        if dir.entries > MAX_ENTRIES {
            return Err(ZipError::TooMany(dir.entries));
        }
        if dir.len > MAX_DIRECTORY {
            return Err(ZipError::TooLarge(dir.len));
        }
        if dir.len > len || dir.entries.saturating_mul(46) > dir.len {
            return Err(bad(
                "central directory size does not fit its entries",
                dir.at,
            ));
        }
        let cd = read_at(f, dir.at, dir.len as usize)?;
        let mut members = Vec::new();
        let mut p = 0usize;
        for _ in 0..dir.entries {
            let at = dir.at + p as u64;
            if p + 46 > cd.len() || u32_at(&cd, p) != SIG_CENTRAL {
                return Err(bad("central directory entry expected", at));
            }
            let h = &cd[p..];
            let (flags, method, crc) = (u16_at(h, 8), u16_at(h, 10), u32_at(h, 16));
            let (mut csize, mut size) = (u32_at(h, 20) as u64, u32_at(h, 24) as u64);
            let (n, m, k) = (
                u16_at(h, 28) as usize,
                u16_at(h, 30) as usize,
                u16_at(h, 32) as usize,
            );
            let mut local = u32_at(h, 42) as u64;
            let end = p + 46 + n + m + k;
            if end > cd.len() {
                return Err(bad("central directory entry runs past the directory", at));
            }
            let name = &cd[p + 46..p + 46 + n];
            let extra = &cd[p + 46 + n..p + 46 + n + m];
            // zip64: the fields that overflowed, in this order, in the extra field of ID 1.
            let mut e = extra;
            while e.len() >= 4 {
                let (id, l) = (u16_at(e, 0), u16_at(e, 2) as usize);
                let Some(body) = e.get(4..4 + l) else { break };
                if id == 1 {
                    let mut q = body;
                    let mut take = |v: &mut u64| {
                        if *v == 0xffff_ffff && q.len() >= 8 {
                            *v = u64_at(q, 0);
                            q = &q[8..];
                        }
                    };
                    take(&mut size);
                    take(&mut csize);
                    take(&mut local);
                }
                e = &e[4 + l..];
            }
            p = end;
            if method != 8 || flags & 1 != 0 || csize == 0 {
                continue;
            }
            let local = local
                .checked_add(shift)
                .filter(|l| l.saturating_add(30) <= dir.at)
                .ok_or_else(|| bad("local header offset out of range", at))?;
            let lh = read_at(f, local, 30)?;
            if u32_at(&lh, 0) != SIG_LOCAL {
                return Err(bad("local header expected", local));
            }
            let data = local + 30 + u16_at(&lh, 26) as u64 + u16_at(&lh, 28) as u64;
            if data.checked_add(csize).is_none_or(|e| e > dir.at) {
                return Err(bad("member data runs into the central directory", local));
            }
            members.push(Member {
                at: data,
                len: csize,
                crc,
                size,
                name: name_hash(name),
            });
        }
        members.sort_by_key(|m| m.at);
        let mut end = 0;
        members.retain(|m| {
            let keep = m.at >= end;
            if keep {
                end = m.at + m.len;
            }
            keep
        });
        Ok(Layout { len, members })
    }

    /// Bytes of the skeleton: the file less its members' compressed bytes.
    pub fn skeleton_len(&self) -> u64 {
        self.len - self.members.iter().map(|m| m.len).sum::<u64>()
    }

    /// Bytes of the members' contents.
    pub fn raw_len(&self) -> u64 {
        // Saturating: the sizes are the directory's word until the members are decoded.
        self.members
            .iter()
            .fold(0u64, |n, m| n.saturating_add(m.size))
    }

    /// The member table (format in the [module doc](self)).
    pub fn table(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.members.len() * 6 + 4);
        super::format::put_varint(&mut out, self.members.len() as u64);
        let mut end = 0;
        for m in &self.members {
            super::format::put_varint(&mut out, m.at - end);
            super::format::put_varint(&mut out, m.len);
            end = m.at + m.len;
        }
        out
    }

    /// The skeleton of `f`, read as a stream.
    pub fn skeleton<'a>(&'a self, f: &'a std::fs::File) -> Skeleton<'a> {
        Skeleton {
            f,
            layout: self,
            next: 0,
            pos: 0,
        }
    }

    /// The members of `f` as a synthetic gzip stream, read as a stream.
    pub fn gzip<'a>(&'a self, f: &'a std::fs::File) -> Gzip<'a> {
        Gzip {
            f,
            layout: self,
            next: 0,
            within: 0,
            hash: blake3::Hasher::new(),
            read: 0,
        }
    }
}

/// A 64-bit hash of a member's name.
fn name_hash(name: &[u8]) -> u64 {
    u64::from_le_bytes(
        blake3::hash(name).as_bytes()[..8]
            .try_into()
            .expect("eight bytes"),
    )
}

/// Reads the skeleton of a zip file.
pub struct Skeleton<'a> {
    f: &'a std::fs::File,
    layout: &'a Layout,
    /// The next member, and the file offset read up to.
    next: usize,
    pos: u64,
}

impl Read for Skeleton<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let stop = match self.layout.members.get(self.next) {
                Some(m) if self.pos == m.at => {
                    self.pos += m.len;
                    self.next += 1;
                    continue;
                }
                Some(m) => m.at,
                None => self.layout.len,
            };
            let n = ((stop - self.pos) as usize).min(out.len()).min(READ_BUF);
            if n == 0 {
                return Ok(0);
            }
            self.f.read_exact_at(&mut out[..n], self.pos)?;
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

/// Reads the synthetic gzip stream of a zip file's members, hashing what it gives.
pub struct Gzip<'a> {
    f: &'a std::fs::File,
    layout: &'a Layout,
    /// The member being read, and how far into its synthetic form (header, data, trailer).
    next: usize,
    within: u64,
    hash: blake3::Hasher,
    read: u64,
}

impl Gzip<'_> {
    /// BLAKE3 and length of what was read so far (the whole stream once read to its end).
    pub fn digest(&self) -> ([u8; 32], u64) {
        (*self.hash.finalize().as_bytes(), self.read)
    }
}

impl Read for Gzip<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Some(m) = self.layout.members.get(self.next) else {
            return Ok(0);
        };
        let head = SYNTH_HEADER.len() as u64;
        let n = if self.within < head {
            let from = &SYNTH_HEADER[self.within as usize..];
            let n = from.len().min(out.len());
            out[..n].copy_from_slice(&from[..n]);
            n
        } else if self.within < head + m.len {
            let left = head + m.len - self.within;
            let n = (left as usize).min(out.len()).min(READ_BUF);
            self.f
                .read_exact_at(&mut out[..n], m.at + self.within - head)?;
            n
        } else {
            let mut trailer = [0u8; SYNTH_TRAILER as usize];
            trailer[..4].copy_from_slice(&m.crc.to_le_bytes());
            trailer[4..].copy_from_slice(&(m.size as u32).to_le_bytes());
            let from = &trailer[(self.within - head - m.len) as usize..];
            let n = from.len().min(out.len());
            out[..n].copy_from_slice(&from[..n]);
            n
        };
        self.within += n as u64;
        if self.within == head + m.len + SYNTH_TRAILER {
            self.next += 1;
            self.within = 0;
        }
        self.hash.update(&out[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Write the zip back: the skeleton's bytes, with each member's compressed bytes taken from the re-created
/// synthetic gzip stream where the member table ([`Layout::table`], as [`read_table`] gives it back) puts them.
/// Returns the bytes written; a table, skeleton or stream that does not fit the others is an error.
pub fn join(
    table: &[u8],
    mut skeleton: impl Read,
    mut gzip: impl Read,
    mut out: impl Write,
) -> io::Result<u64> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut cur = super::format::Cursor::new(table);
    let count = cur
        .varint()
        .map_err(|_| invalid("member table cut short"))?;
    let mut written = 0u64;
    let mut copy =
        |from: &mut dyn Read, n: u64, out: &mut dyn Write, what: &str| -> io::Result<()> {
            let got = io::copy(&mut from.take(n), out)?;
            if got != n {
                return Err(invalid(what));
            }
            written += n;
            Ok(())
        };
    for _ in 0..count {
        let (gap, len) = match (cur.varint(), cur.varint()) {
            (Ok(g), Ok(l)) => (g, l),
            _ => return Err(invalid("member table cut short")),
        };
        copy(
            &mut skeleton,
            gap,
            &mut out,
            "the skeleton ends before a member",
        )?;
        let mut head = [0u8; 10];
        gzip.read_exact(&mut head)?;
        if head != SYNTH_HEADER {
            return Err(invalid(
                "the re-created members are not the synthetic stream",
            ));
        }
        copy(&mut gzip, len, &mut out, "the re-created members end early")?;
        let mut trailer = [0u8; SYNTH_TRAILER as usize];
        gzip.read_exact(&mut trailer)?;
    }
    if !cur.at_end() {
        return Err(invalid("bytes after the member table"));
    }
    let rest = io::copy(&mut skeleton, &mut out)?;
    if gzip.read(&mut [0u8; 1])? != 0 {
        return Err(invalid("the re-created members run past the table's"));
    }
    Ok(written + rest)
}

/// Read a member table (`varint count`, then its pairs) from the front of `r`, giving back its bytes.
pub fn read_table(r: &mut impl io::BufRead) -> io::Result<Vec<u8>> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "member table cut short");
    let mut out = Vec::new();
    let varint = |r: &mut dyn io::BufRead, out: &mut Vec<u8>| -> io::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let mut b = [0u8];
            r.read_exact(&mut b).map_err(|_| invalid())?;
            out.push(b[0]);
            v |= ((b[0] & 0x7f) as u64) << shift;
            if b[0] & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(invalid())
    };
    let count = varint(r, &mut out)?;
    if count > MAX_ENTRIES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("member table of {count} members, more than {MAX_ENTRIES}"),
        ));
    }
    for _ in 0..2 * count {
        varint(r, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::stream::tests::stream_round_trip;
    use crate::deflate::stream::{self, Options};
    use std::io::Write;
    use std::path::Path;
    use std::process::Command;

    /// Write a zip with Python's `zipfile` (the producer of wheels): `script` gets `out` (the path) and the
    /// module `zipfile` and a text `src` of real Python sources.
    fn python_zip(dir: &Path, name: &str, script: &str) -> std::path::PathBuf {
        let out = dir.join(name);
        let prog = format!(
            "import os, sys, zipfile, email\nout = sys.argv[1]\nsrcdir = os.path.dirname(email.__file__)\n\
             src = [os.path.join(srcdir, f) for f in sorted(os.listdir(srcdir)) if f.endswith('.py')]\n{script}\n"
        );
        let status = Command::new("python3")
            .arg("-c")
            .arg(&prog)
            .arg(&out)
            .status()
            .expect("python3 (Debian's python3 package, see tools/ci-deps)");
        assert!(status.success(), "{prog}");
        out
    }

    /// Decompose `path` through its layout and the gzip decomposer, re-create it, and compare; the model and
    /// the number of members.
    fn round_trip(path: &Path) -> (String, usize) {
        let bytes = std::fs::read(path).unwrap();
        let f = std::fs::File::open(path).unwrap();
        let layout = Layout::read(&f, bytes.len() as u64).unwrap();
        let mut synthetic = Vec::new();
        let mut gzip = layout.gzip(&f);
        gzip.read_to_end(&mut synthetic).unwrap();
        assert_eq!(
            gzip.digest(),
            (*blake3::hash(&synthetic).as_bytes(), synthetic.len() as u64)
        );
        // The members' stream decomposes, re-encodes and recomposes to itself.
        let (d, _, _) = stream_round_trip(&synthetic, None);
        assert_eq!(d.raw_len, layout.raw_len());
        let mut skeleton = Vec::new();
        layout.skeleton(&f).read_to_end(&mut skeleton).unwrap();
        assert_eq!(skeleton.len() as u64, layout.skeleton_len());
        let table = layout.table();
        let mut cut = &table[..];
        assert_eq!(read_table(&mut cut).unwrap(), table);
        let mut out = Vec::new();
        let n = join(&table, &skeleton[..], &synthetic[..], &mut out).unwrap();
        assert_eq!(n, bytes.len() as u64);
        assert!(out == bytes, "{path:?} re-created differently");
        (d.model, layout.members.len())
    }

    #[test]
    fn zips_written_by_python_come_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        // Deflated, stored, empty and directory entries, as `wheel` writes them (seekable output).
        let plain = python_zip(
            dir.path(),
            "plain.whl",
            "with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:\n\
             \x20   z.writestr('pkg/', '')\n\
             \x20   z.writestr('pkg/py.typed', '')\n\
             \x20   for p in src: z.write(p, 'pkg/' + os.path.basename(p))\n\
             \x20   z.write(src[0], 'stored.py', compress_type=zipfile.ZIP_STORED)\n\
             \x20   z.comment = b'a comment'",
        );
        let (model, members) = round_trip(&plain);
        assert_eq!(model, "zlib-6");
        assert!(members > 10, "{members}");
        // Written to a pipe: sizes and CRCs in data descriptors after each member; mixed levels; zip64 extras.
        let piped = python_zip(
            dir.path(),
            "piped.zip",
            "class W:\n\
             \x20   def __init__(s, f): s.f = f\n\
             \x20   def write(s, b): return s.f.write(b)\n\
             \x20   def flush(s): s.f.flush()\n\
             with open(out, 'wb') as f, zipfile.ZipFile(W(f), 'w', zipfile.ZIP_DEFLATED) as z:\n\
             \x20   for i, p in enumerate(src):\n\
             \x20       with open(p, 'rb') as r: data = r.read()\n\
             \x20       info = zipfile.ZipInfo(os.path.basename(p))\n\
             \x20       info.compress_type = zipfile.ZIP_DEFLATED\n\
             \x20       info._compresslevel = [1, 6, 9][i % 3]\n\
             \x20       with z.open(info, 'w', force_zip64=(i % 2 == 0)) as w: w.write(data)",
        );
        let bytes = std::fs::read(&piped).unwrap();
        assert!(bytes[6] & 8 != 0, "the first member has a data descriptor");
        round_trip(&piped);
        // A prefix before the archive (a self-extracting zip): every offset shifted.
        let sfx = dir.path().join("sfx.zip");
        let mut f = std::fs::File::create(&sfx).unwrap();
        f.write_all(b"#!/bin/sh\necho a self-extracting archive\nexit 0\n")
            .unwrap();
        f.write_all(&std::fs::read(&plain).unwrap()).unwrap();
        drop(f);
        round_trip(&sfx);
    }

    #[test]
    fn hostile_zips_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let plain = python_zip(
            dir.path(),
            "p.zip",
            "with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:\n\
             \x20   for p in src[:4]: z.write(p, os.path.basename(p))",
        );
        let good = std::fs::read(&plain).unwrap();
        let layout_of = |bytes: &[u8]| {
            let path = dir.path().join("x.zip");
            std::fs::write(&path, bytes).unwrap();
            let f = std::fs::File::open(&path).unwrap();
            Layout::read(&f, bytes.len() as u64)
        };
        // Cut anywhere: no end record, or one that points past the file.
        for cut in [3, 30, good.len() / 2, good.len() - 10] {
            assert!(layout_of(&good[..cut]).is_err(), "cut at {cut}");
        }
        let eocd = good.len() - 22;
        // A directory claiming more entries than it can hold.
        let mut many = good.clone();
        many[eocd + 10..eocd + 12].copy_from_slice(&0xfff0u16.to_le_bytes());
        assert!(layout_of(&many).is_err());
        // A directory claiming to be larger than any read (and than the file).
        let mut huge = good.clone();
        huge[eocd + 12..eocd + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(layout_of(&huge).is_err());
        // A member's local header offset pointing into the directory.
        let mut far = good.clone();
        let cd = u32_at(&good, eocd + 16) as usize;
        far[cd + 42..cd + 46].copy_from_slice(&((cd as u32) - 10).to_le_bytes());
        assert!(layout_of(&far).is_err());
        // Two entries naming the same member: the second is left in the skeleton, the rest still comes back.
        let mut twice = good.clone();
        let second = cd + 46 + u16_at(&good, cd + 28) as usize + u16_at(&good, cd + 30) as usize;
        let first_local = good[cd + 42..cd + 46].to_vec();
        twice[second + 42..second + 46].copy_from_slice(&first_local);
        let l = layout_of(&twice).unwrap();
        assert_eq!(l.members.len(), 3);
        // A central directory CRC that lies: the member's stream does not decode.
        let mut crc = good.clone();
        crc[cd + 16] ^= 1;
        let path = dir.path().join("crc.zip");
        std::fs::write(&path, &crc).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let l = Layout::read(&f, crc.len() as u64).unwrap();
        assert!(stream::decompose_in_memory(l.gzip(&f), &Options::default()).is_err());
        // Joining refuses a table and streams that do not fit.
        let table = l.table();
        assert!(join(&table, &b""[..], &b""[..], io::sink()).is_err());
        assert!(join(&[5], &b""[..], &b""[..], io::sink()).is_err());
        assert!(read_table(&mut &[0xff, 0xff, 0xff, 0x7f][..]).is_err());
    }

    /// What a hostile zip can do: 600 damaged copies of a real one (1-4 bytes changed, in the headers and
    /// directory most of the time), none of which may panic; each is either refused (layout or decoding) or,
    /// when its members still re-encode exactly, comes back exactly. The fuzz target `zip` does the same
    /// unguided.
    #[test]
    fn damaged_zips_are_refused_or_come_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let plain = python_zip(
            dir.path(),
            "p.zip",
            "with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:\n\
             \x20   for p in src[:3]: z.write(p, os.path.basename(p))\n\
             \x20   z.writestr('s', b'stored', compress_type=zipfile.ZIP_STORED)",
        );
        let good = std::fs::read(&plain).unwrap();
        let eocd = good.len() - 22;
        let cd = u32_at(&good, eocd + 16) as usize;
        let path = dir.path().join("x.zip");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut refused, mut back) = (0, 0);
        for _ in 0..600 {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                // Three in four in the central directory and end record, else anywhere.
                let at = match next() % 4 {
                    0 => next() as usize % bytes.len(),
                    _ => cd + next() as usize % (bytes.len() - cd),
                };
                bytes[at] ^= 1 << (next() % 8);
            }
            std::fs::write(&path, &bytes).unwrap();
            let f = std::fs::File::open(&path).unwrap();
            let Ok(layout) = Layout::read(&f, bytes.len() as u64) else {
                refused += 1;
                continue;
            };
            let mut gzip = layout.gzip(&f);
            let d = stream::decompose_in_memory(&mut gzip, &Options::default());
            match d {
                Ok((d, raw, rec)) if (d.reencoded, d.reencoded_len) == gzip.digest() => {
                    let mut synthetic = Vec::new();
                    stream::recompose(&raw[..], &rec[..], &mut synthetic).unwrap();
                    let mut skeleton = Vec::new();
                    layout.skeleton(&f).read_to_end(&mut skeleton).unwrap();
                    let mut out = Vec::new();
                    join(&layout.table(), &skeleton[..], &synthetic[..], &mut out).unwrap();
                    assert!(out == bytes, "a damaged zip accepted came back differently");
                    back += 1;
                }
                _ => refused += 1,
            }
        }
        assert!(refused > 20 && back > 20, "refused {refused}, back {back}");
    }
}
