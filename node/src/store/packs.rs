//! Pack files: append-only sequences of zstd-compressed chunk records.
//!
//! A record is a 48-byte header — `b"FCHK"`, the chunk id, the uncompressed length, the compressed length, and
//! the first 4 bytes of BLAKE3 over those 40 bytes — then the compressed bytes. The header checksum lets a scan
//! tell a torn tail from a record; the chunk id verifies the payload. Packs are named `pack-NNNNNN.pack`.

use ferry_protocol::ChunkId;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes before each record's payload.
pub const HEADER_LEN: u64 = 48;
const RECORD_MAGIC: [u8; 4] = *b"FCHK";

/// Where a chunk lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Pack number.
    pub pack: u32,
    /// Offset of the record header in the pack.
    pub offset: u64,
    /// Compressed payload length.
    pub comp_len: u32,
    /// Uncompressed length.
    pub raw_len: u32,
}

impl Location {
    /// Fixed 20-byte encoding for the index.
    pub fn to_bytes(self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&self.pack.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..16].copy_from_slice(&self.comp_len.to_le_bytes());
        b[16..20].copy_from_slice(&self.raw_len.to_le_bytes());
        b
    }

    /// Decode the index form.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 20 {
            return None;
        }
        Some(Location {
            pack: u32::from_le_bytes(b[..4].try_into().ok()?),
            offset: u64::from_le_bytes(b[4..12].try_into().ok()?),
            comp_len: u32::from_le_bytes(b[12..16].try_into().ok()?),
            raw_len: u32::from_le_bytes(b[16..20].try_into().ok()?),
        })
    }

    /// Offset just past the record.
    pub fn end(&self) -> u64 {
        self.offset + HEADER_LEN + u64::from(self.comp_len)
    }
}

/// The header bytes for a record.
pub fn header(id: &ChunkId, raw_len: u32, comp_len: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..4].copy_from_slice(&RECORD_MAGIC);
    h[4..36].copy_from_slice(id.as_bytes());
    h[36..40].copy_from_slice(&raw_len.to_le_bytes());
    h[40..44].copy_from_slice(&comp_len.to_le_bytes());
    let sum = blake3::hash(&h[..44]);
    h[44..48].copy_from_slice(&sum.as_bytes()[..4]);
    h
}

/// A parsed record header.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    /// The chunk.
    pub id: ChunkId,
    /// Uncompressed length.
    pub raw_len: u32,
    /// Compressed length.
    pub comp_len: u32,
}

/// Parse a header; `None` if it is not one (bad magic or checksum).
pub fn parse_header(h: &[u8; HEADER_LEN as usize]) -> Option<Header> {
    if h[..4] != RECORD_MAGIC || blake3::hash(&h[..44]).as_bytes()[..4] != h[44..48] {
        return None;
    }
    Some(Header {
        id: ChunkId::from_bytes(h[4..36].try_into().ok()?),
        raw_len: u32::from_le_bytes(h[36..40].try_into().ok()?),
        comp_len: u32::from_le_bytes(h[40..44].try_into().ok()?),
    })
}

/// File name of pack `n`.
pub fn pack_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("pack-{n:06}.pack"))
}

/// Pack numbers present in `dir`, ascending.
pub fn list(dir: &Path) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("pack-")
            .and_then(|s| s.strip_suffix(".pack"))
            .and_then(|s| s.parse().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Why a record could not be read back.
#[derive(Debug)]
pub enum RecordError {
    /// I/O.
    Io(io::Error),
    /// The record is not what the index says, or its bytes do not hash to its id.
    Corrupt(String),
}

/// Read, decompress and verify the record at `loc`, expecting chunk `id`.
pub fn read_record(file: &File, loc: &Location, id: &ChunkId) -> Result<Vec<u8>, RecordError> {
    let buf = read_stored(file, loc, id)?;
    let raw = decompress(&buf[HEADER_LEN as usize..], loc.raw_len).map_err(|e| {
        RecordError::Corrupt(format!(
            "chunk {id} at offset {} does not decompress: {e}",
            loc.offset
        ))
    })?;
    if ChunkId::of(&raw) != *id {
        return Err(RecordError::Corrupt(format!(
            "chunk {id} at offset {} does not match its hash",
            loc.offset
        )));
    }
    Ok(raw)
}

/// Read the record at `loc` — header and zstd payload, as stored — checking only that the header is the one
/// the index expects. Peers that receive the payload decompress and verify it themselves.
pub fn read_stored(file: &File, loc: &Location, id: &ChunkId) -> Result<Vec<u8>, RecordError> {
    let mut buf = zeroed((HEADER_LEN + u64::from(loc.comp_len)) as usize);
    file.read_exact_at(&mut buf, loc.offset)
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => RecordError::Corrupt(format!(
                "record at offset {} runs past the end of the pack",
                loc.offset
            )),
            _ => RecordError::Io(e),
        })?;
    let h: &[u8; HEADER_LEN as usize] = buf[..HEADER_LEN as usize].try_into().expect("len");
    let header = parse_header(h).ok_or_else(|| {
        RecordError::Corrupt(format!("damaged record header at offset {}", loc.offset))
    })?;
    if header.id != *id || header.comp_len != loc.comp_len || header.raw_len != loc.raw_len {
        return Err(RecordError::Corrupt(format!(
            "record at offset {} holds chunk {} but the index expects {}",
            loc.offset, header.id, id
        )));
    }
    Ok(buf)
}

thread_local! {
    /// One decompression context per thread, reused: making one per chunk cost more than decoding a small chunk.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Run `f` with this thread's decompression context, made on first use.
fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> io::Result<T>,
) -> io::Result<T> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        f(d.as_mut().expect("made above"))
    })
}

/// `len` zero bytes, written as zeros rather than asked of the allocator as zeroed memory. jemalloc zeroes a
/// large allocation (16 KiB and up) it reuses by handing its pages back to the kernel (`madvise`), so each
/// `vec![0; len]` of a record cost a system call, then a page fault and the kernel's clearing of every 4 KiB
/// page when the read filled it: 10% of the machine's CPU in the 20-site fanout of docs/benchmarks.md.
#[allow(clippy::slow_vector_initialization)] // the point: see above
pub fn zeroed(len: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(len);
    buf.resize(len, 0);
    buf
}

thread_local! {
    /// The buffer [`verify`] decodes into on this thread, kept at the largest chunk it has seen.
    static DECODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Check that `payload` decompresses to exactly `raw_len` bytes that hash to `id`, decoding into a buffer this
/// thread keeps rather than a new one per chunk: for a chunk that arrives from a peer, where only the verdict
/// is wanted. The error says what is wrong (as "the chunk …"), without naming the chunk.
pub fn verify(payload: &[u8], raw_len: u32, id: &ChunkId) -> Result<(), String> {
    DECODED.with(|buf| {
        let mut buf = buf.borrow_mut();
        let len = raw_len as usize;
        if buf.len() < len + 1 {
            // One byte over `raw_len`: a payload that expands further fills it, and is caught below.
            buf.resize(len + 1, 0);
        }
        let n = with_decompressor(|d| d.decompress_to_buffer(payload, &mut buf[..len + 1]))
            .map_err(|e| format!("does not decompress: {e}"))?;
        if n != len {
            return Err(format!("expands to {n} bytes, not {raw_len}"));
        }
        if ChunkId::of(&buf[..n]) != *id {
            return Err("does not hash to its id".into());
        }
        Ok(())
    })
}

/// Decompress a payload that must expand to exactly `raw_len` bytes (one that would expand further fails
/// without writing past `raw_len`).
pub fn decompress(payload: &[u8], raw_len: u32) -> io::Result<Vec<u8>> {
    // Room for one byte at least: libzstd aborts the process when handed an empty Vec's dangling pointer and a
    // payload with sequences; the length is checked below.
    let out = with_decompressor(|d| d.decompress(payload, (raw_len as usize).max(1)))?;
    if out.len() != raw_len as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expanded to {} bytes, expected {raw_len}", out.len()),
        ));
    }
    Ok(out)
}

/// One record found by a scan.
pub struct Scanned {
    /// Where it is.
    pub loc: Location,
    /// Its id.
    pub id: ChunkId,
    /// `Ok` if the payload decompressed and hashed to the id, else why not.
    pub verdict: Result<(), String>,
}

/// Walk the records of a pack from `start`, calling `f` for each. Returns the offset where a well-formed
/// sequence of records ends (the file length, unless the tail is torn or garbage).
pub fn scan(
    file: &File,
    pack: u32,
    start: u64,
    verify: bool,
    mut f: impl FnMut(Scanned),
) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut off = start;
    let mut h = [0u8; HEADER_LEN as usize];
    let mut payload = Vec::new();
    while off + HEADER_LEN <= len {
        file.read_exact_at(&mut h, off)?;
        let Some(header) = parse_header(&h) else {
            break;
        };
        let end = off + HEADER_LEN + u64::from(header.comp_len);
        if end > len {
            break;
        }
        let loc = Location {
            pack,
            offset: off,
            comp_len: header.comp_len,
            raw_len: header.raw_len,
        };
        let verdict = if verify {
            payload.resize(header.comp_len as usize, 0);
            file.read_exact_at(&mut payload, off + HEADER_LEN)?;
            match decompress(&payload, header.raw_len) {
                Ok(raw) if ChunkId::of(&raw) == header.id => Ok(()),
                Ok(_) => Err(format!(
                    "chunk {} at offset {off} does not match its hash",
                    header.id
                )),
                Err(e) => Err(format!(
                    "chunk {} at offset {off} does not decompress: {e}",
                    header.id
                )),
            }
        } else {
            Ok(())
        };
        f(Scanned {
            loc,
            id: header.id,
            verdict,
        });
        off = end;
    }
    Ok(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_for_no_bytes_is_refused() {
        // A frame with sequences (the one the `frames` fuzz target found), said to expand to 0 bytes: libzstd
        // aborted the process when handed an empty Vec to decode it into.
        let payload = [
            0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x64, 0x55, 0x00, 0x00, 0x01, 0x10, 0x02, 0x00, 0x06,
            0xa6, 0x80, 0xdb, 0x04, 0x10,
        ];
        assert!(decompress(&payload, 0).is_err());
        let data = b"abcdefgh".repeat(100);
        let stored = zstd::bulk::compress(&data, 3).unwrap();
        assert!(decompress(&stored, 0).is_err());
        assert_eq!(decompress(&stored, 800).unwrap(), data);
    }

    #[test]
    fn a_chunk_from_a_peer_is_verified_whatever_the_chunks_its_thread_decoded_before() {
        let big = b"0123456789abcdef".repeat(8192);
        let small = b"abcdefgh".repeat(100);
        let (big_z, small_z) = (
            zstd::bulk::compress(&big, 3).unwrap(),
            zstd::bulk::compress(&small, 3).unwrap(),
        );
        let (big_id, small_id) = (ChunkId::of(&big), ChunkId::of(&small));
        // The larger chunk first: the buffer kept from it is larger than the next chunk.
        assert_eq!(verify(&big_z, big.len() as u32, &big_id), Ok(()));
        assert_eq!(verify(&small_z, 800, &small_id), Ok(()));
        // A payload that expands past what it is said to hold, or short of it, fails though the kept buffer
        // has room.
        assert_eq!(
            verify(&small_z, 799, &small_id).unwrap_err(),
            "expands to 800 bytes, not 799"
        );
        assert!(verify(&small_z, 700, &small_id)
            .unwrap_err()
            .starts_with("does not decompress"));
        assert_eq!(
            verify(&small_z, 801, &small_id).unwrap_err(),
            "expands to 800 bytes, not 801"
        );
        assert_eq!(
            verify(&small_z, 800, &big_id).unwrap_err(),
            "does not hash to its id"
        );
        assert!(verify(b"not zstd at all", 800, &small_id)
            .unwrap_err()
            .starts_with("does not decompress"));
        assert!(verify(&big_z[..big_z.len() / 2], big.len() as u32, &big_id).is_err());
        assert_eq!(zeroed(70_000), vec![0u8; 70_000]);
    }
}
