//! `.rpm` packages, as rpm 4 writes them: the lead, the signature header, the main header, then the payload (a
//! cpio archive, compressed as the main header's `PAYLOADCOMPRESSOR` says) to the end of the file. Where the
//! payload lies, so that it can be taken apart and everything before it kept as it is.
//!
//! ```text
//! lead       96 bytes: ed ab ee db, version, type, arch, name, os, signature type
//! signature  8e ad e8 01, 4 reserved bytes, index entries (u32 BE), data bytes (u32 BE), 16 bytes an entry,
//!            the data, zeros to a multiple of 8 bytes
//! header     the same, without the padding
//! payload    the rest of the file
//! ```
//!
//! The headers are read with rpm's own bounds (at most 65,535 entries and 256 MiB of data each), entry by
//! entry, never held whole.

use crate::{malformed, ReadAt, Refused};

/// The start of every rpm (its lead).
pub const MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
/// The start of a header structure.
pub const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
/// The lead's length.
pub const LEAD: u64 = 96;
/// A header's index entries, at most (rpm's `HEADER_TAGS_MAX`).
pub const MAX_ENTRIES: u32 = 0xffff;
/// A header's data, at most (rpm's `HEADER_DATA_MAX`).
pub const MAX_DATA: u32 = 0x0fff_ffff;
/// The main header's tag naming the payload's compressor.
pub const TAG_PAYLOADCOMPRESSOR: u32 = 1125;
/// A compressor's name, at most (they are a few letters).
const MAX_NAME: u64 = 32;
/// The index entry type of a NUL-terminated string.
const STRING_TYPE: u32 = 6;

/// Where one header structure lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Where it starts (its magic).
    pub at: u64,
    /// Its index entries.
    pub entries: u32,
    /// Its data's length.
    pub data_len: u32,
}

impl Header {
    /// Where its index entries start.
    fn index_at(&self) -> u64 {
        self.at + 16
    }

    /// Where its data starts.
    fn data_at(&self) -> u64 {
        self.index_at() + 16 * u64::from(self.entries)
    }

    /// Where it ends (before any padding).
    pub fn end(&self) -> u64 {
        self.data_at() + u64::from(self.data_len)
    }
}

/// What an rpm's lead and headers say, and where its payload lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rpm {
    pub signature: Header,
    pub header: Header,
    /// Where the payload starts, and its length (to the end of the file).
    pub payload_at: u64,
    pub payload_len: u64,
    /// The main header's `PAYLOADCOMPRESSOR` (`zstd`, `xz`, `lzma`, `gzip`, `bzip2`), if it names one.
    pub compressor: Option<String>,
}

/// Read the rpm that is `src` (`len` bytes): its lead, both headers and its payload's place. Refused unless the
/// lead and headers are well formed and end inside the file.
pub fn read<R: ReadAt + ?Sized>(src: &R, len: u64) -> Result<Rpm, Refused> {
    if len < LEAD {
        return Err(malformed(0, "too short for an rpm lead"));
    }
    let mut lead = [0u8; LEAD as usize];
    src.read_exact_at(&mut lead, 0)?;
    if lead[..4] != MAGIC {
        return Err(malformed(0, "no rpm lead magic"));
    }
    if lead[4] < 3 {
        return Err(Refused::Unsupported(format!(
            "an rpm of format version {} (before rpm 3)",
            lead[4]
        )));
    }
    // The signature type: 5, a header structure (every rpm since rpm 3).
    if lead[78..80] != [0, 5] {
        return Err(malformed(
            78,
            "the lead's signature type is not 5 (a header structure)",
        ));
    }
    let signature = header_at(src, LEAD, len, "signature")?;
    let main_at = signature.end().next_multiple_of(8);
    if main_at > len {
        return Err(malformed(
            signature.end(),
            "the signature header's padding runs past the file's end",
        ));
    }
    let header = header_at(src, main_at, len, "main")?;
    let compressor = string_tag(src, &header, TAG_PAYLOADCOMPRESSOR)?;
    Ok(Rpm {
        signature,
        header,
        payload_at: header.end(),
        payload_len: len - header.end(),
        compressor,
    })
}

/// The header structure (`what`) at `at` of a file of `len` bytes.
fn header_at<R: ReadAt + ?Sized>(
    src: &R,
    at: u64,
    len: u64,
    what: &str,
) -> Result<Header, Refused> {
    if len - at.min(len) < 16 {
        return Err(malformed(
            at,
            format!("the {what} header's intro is cut short"),
        ));
    }
    let mut intro = [0u8; 16];
    src.read_exact_at(&mut intro, at)?;
    if intro[..4] != HEADER_MAGIC {
        return Err(malformed(at, format!("no {what} header magic")));
    }
    let be = |i: usize| u32::from_be_bytes(intro[i..i + 4].try_into().expect("4 bytes"));
    let (entries, data_len) = (be(8), be(12));
    if entries == 0 || entries > MAX_ENTRIES {
        return Err(malformed(
            at + 8,
            format!("the {what} header has {entries} index entries (1 to {MAX_ENTRIES})"),
        ));
    }
    if data_len > MAX_DATA {
        return Err(malformed(
            at + 12,
            format!("the {what} header has {data_len} bytes of data (at most {MAX_DATA})"),
        ));
    }
    let h = Header {
        at,
        entries,
        data_len,
    };
    if h.end() > len {
        return Err(malformed(
            at + 8,
            format!(
                "the {what} header of {} bytes runs past the file's end ({len})",
                h.end() - at
            ),
        ));
    }
    Ok(h)
}

/// The string value of `tag` in `h`, if it has one; refused when its entry does not lie inside the header.
fn string_tag<R: ReadAt + ?Sized>(
    src: &R,
    h: &Header,
    tag: u32,
) -> Result<Option<String>, Refused> {
    for i in 0..u64::from(h.entries) {
        let at = h.index_at() + 16 * i;
        let mut e = [0u8; 16];
        src.read_exact_at(&mut e, at)?;
        let be = |i: usize| u32::from_be_bytes(e[i..i + 4].try_into().expect("4 bytes"));
        if be(0) != tag {
            continue;
        }
        let (kind, offset) = (be(4), u64::from(be(8)));
        if kind != STRING_TYPE || offset >= u64::from(h.data_len) {
            return Err(malformed(
                at,
                format!("tag {tag} is not a string inside the header's data"),
            ));
        }
        let mut name = vec![0u8; (u64::from(h.data_len) - offset).min(MAX_NAME) as usize];
        src.read_exact_at(&mut name, h.data_at() + offset)?;
        let end = name
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| malformed(h.data_at() + offset, format!("tag {tag} has no end")))?;
        name.truncate(end);
        return Ok(Some(String::from_utf8_lossy(&name).into_owned()));
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests;
