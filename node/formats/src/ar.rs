//! `ar` archives, as `dpkg-deb` writes them (`debian-binary`, `control.tar.*`, `data.tar.*`): where each
//! member's data lies, so that its compressed members can be taken apart and everything else kept as it is.

use crate::{malformed, ReadAt, Refused};

/// The start of every `ar` archive.
pub const MAGIC: &[u8; 8] = b"!<arch>\n";
/// A member header's length.
const HEADER: u64 = 60;
/// Members of one archive, at most (a `.deb` has three).
pub const MAX_MEMBERS: usize = 1 << 16;

/// One member of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name as the header gives it (trailing spaces and a GNU `/` removed).
    pub name: String,
    /// Where its data starts, and its length.
    pub at: u64,
    pub len: u64,
}

/// The members of the `ar` archive that is `src` (`len` bytes). Refused unless the headers are well formed and
/// the members fill the archive exactly (a padding byte after an odd-sized member, as `ar` writes).
pub fn members<R: ReadAt + ?Sized>(src: &R, len: u64) -> Result<Vec<Member>, Refused> {
    let mut magic = [0u8; 8];
    if len < 8 {
        return Err(malformed(0, "too short for an ar archive"));
    }
    src.read_exact_at(&mut magic, 0)?;
    if &magic != MAGIC {
        return Err(malformed(0, "no ar magic"));
    }
    let mut out = Vec::new();
    let mut pos = 8u64;
    while pos < len {
        if out.len() == MAX_MEMBERS {
            return Err(Refused::Unsupported(format!(
                "an ar archive of more than {MAX_MEMBERS} members"
            )));
        }
        if len - pos < HEADER {
            return Err(malformed(pos, "an ar member header is cut short"));
        }
        let mut h = [0u8; HEADER as usize];
        src.read_exact_at(&mut h, pos)?;
        if h[58..60] != *b"`\n" {
            return Err(malformed(
                pos + 58,
                "an ar member header does not end in `\\n",
            ));
        }
        let size = std::str::from_utf8(&h[48..58])
            .ok()
            .map(str::trim_end)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| malformed(pos + 48, "an ar member size is not a decimal number"))?;
        let at = pos + HEADER;
        if size > len - at {
            return Err(malformed(
                pos + 48,
                format!("ar member of {size} bytes runs past the archive's end ({len})"),
            ));
        }
        let name = String::from_utf8_lossy(&h[..16]);
        let name = name.trim_end();
        let name = name
            .strip_suffix('/')
            .filter(|n| !n.is_empty())
            .unwrap_or(name);
        out.push(Member {
            name: name.to_string(),
            at,
            len: size,
        });
        pos = at + size;
        if size % 2 == 1 && pos < len {
            pos += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An `ar` archive of `members`, as `ar` and `dpkg-deb` write them.
    pub(crate) fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (name, data) in members {
            out.extend_from_slice(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    name,
                    0,
                    0,
                    0,
                    100644,
                    data.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    #[test]
    fn members_are_located_and_damage_is_refused() {
        let a = archive(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", b"abc"),
            ("data.tar.xz", b"xy"),
        ]);
        let m = members(&a, a.len() as u64).unwrap();
        let names: Vec<_> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["debian-binary", "control.tar.xz", "data.tar.xz"]);
        assert_eq!(&a[m[1].at as usize..][..3], b"abc");
        assert_eq!(&a[m[2].at as usize..][..2], b"xy");
        // Each cut, and a size that runs past the end, is refused with where.
        for cut in [3usize, 8 + 30, 8 + 60 + 2, a.len() - 1] {
            assert!(members(&a[..cut], cut as u64).is_err(), "cut at {cut}");
        }
        let mut bad = a.clone();
        bad[8 + 48..8 + 58].copy_from_slice(b"99999     ");
        let e = members(&bad, bad.len() as u64).unwrap_err().to_string();
        assert!(e.contains("at byte 56") && e.contains("past"), "{e}");
        let mut bad = a.clone();
        bad[8 + 48] = b'x';
        assert!(members(&bad, bad.len() as u64).is_err());
        // An odd last member without its padding byte is still whole.
        let odd = archive(&[("a", b"abc")]);
        assert_eq!(
            members(&odd[..odd.len() - 1], odd.len() as u64 - 1)
                .unwrap()
                .len(),
            1
        );
    }
}
