//! Gzip blobs stored as their decompressed bytes plus re-creation data, and re-created bit for bit on read.
//!
//! At ingest a gzip blob of any size is decomposed as it is read ([`ferry_formats::deflate::stream`]): its raw bytes
//! are chunked like any content and its re-creation stream (member headers, block boundaries and code
//! definitions, and the producer's match decisions as a model's corrections) is chunked beside them, both at
//! once, under one [`Recipe::Gzip`] (`ingest`). Everything written is re-encoded on the way and compared with
//! the blob (by its BLAKE3 and length) before the recipe is queued; a blob that cannot be decomposed, or whose
//! re-encoding differs, is stored as it is and counted.
//!
//! Reading such a blob means re-creating it, streamed from its chunks in bounded memory (pgzip's parts side by
//! side on the pool). Re-created blobs are kept in a bounded cache of files (`STORE/cache/gzip/`, least recently
//! used out first), so warm reads are file reads.
//!
//! Zip containers (wheels, jars) are stored the same way (`zip`): their deflated members go through the same
//! decomposer, as one synthetic gzip stream, and the rest of the file is kept as a skeleton stream.
//!
//! The stored re-creation data starts with a version byte: 2 ([`RECREATION_STREAM`]) for the re-creation stream
//! that follows, 3 ([`RECREATION_ZIP`]) for a zip's, 4 and 5 ([`RECREATION_PACKED`],
//! [`RECREATION_PACKED_STREAMS`]) for a file of xz, zstd, bzip2 or gzip members (`packed`), 1 for the
//! whole-stream form of stores written before it
//! (model name, headers, and the model's corrections or the tokens; read into memory, as it was written: those
//! blobs are at most 1 GiB).

pub(crate) mod cache;
mod ingest;
mod packed;
mod zip;

pub use cache::{Job, Recreated, RecreationStats};

use super::stream::PartsStream;
use super::{Store, StoreError};
use crate::progress::Progress;
use ferry_formats::deflate::predict::{self, Layout};
use ferry_formats::deflate::{self, Recreation};
use ferry_protocol::{BlobId, BlobRef, Hash32, Part, Recipe, Sha256Digest};
use sha2::Digest;
use std::io::{self, Read, Write};
use std::sync::Mutex;

/// Raw bytes of a whole-stream (version 1) blob re-created in memory, at most.
pub(crate) const MAX_RAW: u64 = 4 << 30;
/// Version byte of the whole-stream re-creation data.
const RECREATION_VERSION: u8 = 1;
/// Version byte of the re-creation stream.
pub(crate) const RECREATION_STREAM: u8 = 2;
/// Version byte of a zip's re-creation data (see `zip`).
pub(crate) const RECREATION_ZIP: u8 = 3;
/// Version byte of the re-creation data of a file of xz or bzip2 members: a `.deb`, a bare `.xz` or `.bz2`
/// (see `packed`).
pub(crate) const RECREATION_PACKED: u8 = 4;
/// Version byte of the re-creation data of such a file with gzip members: the members' table, then their
/// re-creation streams (see `packed`).
pub(crate) const RECREATION_PACKED_STREAMS: u8 = 5;

/// A way to read a blob again from its start.
pub type Reopen<'a> = dyn Fn() -> std::io::Result<Box<dyn Read + Send + 'a>> + 'a;

/// Options for storing a blob that may be gzip.
#[derive(Default, Clone, Copy)]
pub struct BlobOptions<'a, 'r> {
    /// Read the blob again if it must be stored as it is after all (else its bytes are kept aside as read).
    pub reopen: Option<&'a Reopen<'r>>,
    /// The model that fitted a sibling blob, tried first; set to the model this blob takes.
    pub hint: Option<&'a Mutex<Option<String>>>,
}

/// The stored re-creation data:
///
/// ```text
/// u8 1 (version)  varint n  n bytes (model name, empty for tokens stored as they are)
/// varint n  n bytes (headers)  then to the end: the model's corrections, or the tokens
/// ```
#[cfg(test)]
fn pack(model: &str, headers: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(model.len() + headers.len() + data.len() + 12);
    out.push(RECREATION_VERSION);
    put_varint(&mut out, model.len() as u64);
    out.extend_from_slice(model.as_bytes());
    put_varint(&mut out, headers.len() as u64);
    out.extend_from_slice(headers);
    out.extend_from_slice(data);
    out
}

/// (model, headers, corrections or tokens) of stored re-creation data.
fn unpack(bytes: &[u8]) -> Result<(&str, &[u8], &[u8]), String> {
    let (&version, mut rest) = bytes.split_first().ok_or("re-creation data is empty")?;
    if version != RECREATION_VERSION {
        return Err(format!(
            "re-creation data version {version} is not known to this ferry"
        ));
    }
    let mut field = || -> Result<&[u8], String> {
        let n = get_varint(&mut rest).ok_or("re-creation data is cut short")?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= rest.len())
            .ok_or("re-creation data is cut short")?;
        let (f, r) = rest.split_at(n);
        rest = r;
        Ok(f)
    };
    let model = std::str::from_utf8(field()?).map_err(|_| "model name is not UTF-8")?;
    let headers = field()?;
    Ok((model, headers, rest))
}

#[cfg(test)]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Re-create a gzip stream from its raw bytes and stored re-creation data.
fn recreate_from(raw: &[u8], recreation: &[u8], out: &mut dyn Write) -> Result<u64, String> {
    let (model, headers, data) = unpack(recreation)?;
    let tokens = if model.is_empty() {
        data.to_vec()
    } else {
        let layout = Layout::parse(headers).map_err(|e| e.to_string())?;
        predict::decode(model, raw, &layout, data)
            .ok_or_else(|| {
                format!("model {model:?} is not known to this ferry (stored by a newer one?)")
            })?
            .map_err(|e| e.to_string())?
    };
    let re = Recreation {
        headers: headers.to_vec(),
        tokens,
    };
    deflate::recompose(raw, &re, out).map_err(|e| e.to_string())
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    sha: sha2::Sha256,
    blake: blake3::Hasher,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.blake.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Store {
    /// The bytes of `parts` of stored chunks and zero runs, in memory.
    fn read_parts(&self, parts: &[Part], limit: u64) -> Result<Vec<u8>, StoreError> {
        let total: u64 = parts.iter().map(Part::len).sum();
        if total > limit {
            return Err(StoreError::Corrupt(format!(
                "a gzip recipe's part is {total} bytes, more than {limit} are re-created in memory"
            )));
        }
        let mut out = Vec::with_capacity(total as usize);
        for part in parts {
            match *part {
                Part::Chunk { id, .. } => out.extend_from_slice(&self.read_chunk(&id)?),
                Part::Zero { len } => out.resize(out.len() + len as usize, 0),
            }
        }
        Ok(out)
    }

    /// Write the gzip stream `recipe` (a [`Recipe::Gzip`]) re-creates to `out`, checking the blob's size and
    /// digests; `blob` names it in errors.
    pub(crate) fn recreate(
        &self,
        blob: &BlobRef,
        recipe: &Recipe,
        out: impl Write,
    ) -> Result<(), StoreError> {
        self.recreate_with(blob, recipe, out, &|job| rayon::spawn(job))
    }

    /// [`Store::recreate`], running the pieces with `spawn`.
    pub(crate) fn recreate_with(
        &self,
        blob: &BlobRef,
        recipe: &Recipe,
        out: impl Write,
        spawn: &deflate::stream::Spawn<'_>,
    ) -> Result<(), StoreError> {
        let (raw_parts, rec_parts) = recipe.gzip_parts().ok_or_else(|| {
            StoreError::Corrupt(format!("blob {} has no gzip recipe", blob.sha256))
        })?;
        let mut out = Hashing {
            inner: out,
            sha: sha2::Sha256::new(),
            blake: blake3::Hasher::new(),
            len: 0,
        };
        let failed = |e: String| {
            StoreError::Corrupt(format!(
                "re-creating gzip blob {} (recipe {}): {e}",
                blob.sha256, blob.recipe
            ))
        };
        let mut rec = PartsStream::new(self, rec_parts.to_vec());
        let mut version = [0u8];
        rec.read_exact(&mut version)
            .map_err(|e| failed(e.to_string()))?;
        match version[0] {
            RECREATION_STREAM => {
                let (headers, contents) = self.split_parts(raw_parts, rec_parts).map_err(failed)?;
                let rec = std::io::BufReader::with_capacity(256 << 10, rec);
                // The tar is joined from its two streams on a thread of its own, through a small channel.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
                let (h, c) = (
                    PartsStream::new(self, headers.to_vec()),
                    PartsStream::new(self, contents.to_vec()),
                );
                std::thread::scope(|s| {
                    let joiner = s.spawn(move || {
                        let out = super::stream::ChannelWriter::new(tx);
                        crate::tarsplit::join(h, c, out)
                    });
                    let made = deflate::stream::recompose_with(
                        super::stream::ChannelReader::new(rx),
                        rec,
                        &mut out,
                        spawn,
                    );
                    let joined = joiner.join().expect("the tar joiner panicked");
                    // A joiner's failure (a damaged chunk) is the cause of whatever re-creating then saw.
                    joined.map_err(|e| failed(format!("joining the tar: {e}")))?;
                    made.map_err(|e| failed(e.to_string()))
                })?;
            }
            RECREATION_ZIP => {
                let (skeleton, contents) =
                    self.split_parts(raw_parts, rec_parts).map_err(failed)?;
                let mut rec = std::io::BufReader::with_capacity(256 << 10, rec);
                let table =
                    deflate::zip::read_table(&mut rec).map_err(|e| failed(e.to_string()))?;
                // The members' synthetic gzip stream is re-created on a thread of its own, through a small
                // channel, while the zip is joined from it and the skeleton.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
                let contents = PartsStream::new(self, contents.to_vec());
                std::thread::scope(|s| {
                    let maker = s.spawn(move || {
                        let out = super::stream::ChannelWriter::new(tx);
                        deflate::stream::recompose_with(contents, rec, out, spawn)
                    });
                    let joined = deflate::zip::join(
                        &table,
                        PartsStream::new(self, skeleton.to_vec()),
                        super::stream::ChannelReader::new(rx),
                        &mut out,
                    );
                    let made = maker.join().expect("the zip member re-creation panicked");
                    // The re-creation's failure is the cause of whatever joining then saw.
                    made.map_err(|e| failed(format!("re-creating its members: {e}")))?;
                    joined.map_err(|e| failed(format!("joining the zip: {e}")))
                })?;
            }
            v @ (RECREATION_PACKED | RECREATION_PACKED_STREAMS) => {
                self.recreate_packed(blob.size, raw_parts, v, rec, &mut out, spawn)
                    .map_err(failed)?;
            }
            RECREATION_VERSION => {
                let raw = self.read_parts(raw_parts, MAX_RAW)?;
                let mut recreation = vec![RECREATION_VERSION];
                rec.read_to_end(&mut recreation)
                    .map_err(|e| failed(e.to_string()))?;
                recreate_from(&raw, &recreation, &mut out).map_err(failed)?;
            }
            v => {
                return Err(failed(format!(
                    "re-creation data version {v} is not known to this ferry"
                )))
            }
        }
        let sha = Sha256Digest(ferry_protocol::Hash32(out.sha.finalize().into()));
        if out.len != blob.size
            || sha != blob.sha256
            || *out.blake.finalize().as_bytes() != blob.id.0 .0
        {
            return Err(StoreError::Corrupt(format!(
                "gzip blob {} re-created from recipe {} as {} bytes with digest {sha}: not the blob",
                blob.sha256, blob.recipe, out.len
            )));
        }
        Ok(())
    }

    /// The raw parts of a version 2 gzip recipe as its headers stream and its contents stream (the length of
    /// the headers stream is the last eight bytes of the re-creation data); of a zip's, as its skeleton and
    /// contents.
    fn split_parts<'r>(
        &self,
        raw: &'r [Part],
        rec: &[Part],
    ) -> Result<(&'r [Part], &'r [Part]), String> {
        let mut tail = Vec::new();
        for part in rec.iter().rev() {
            let bytes = match *part {
                Part::Chunk { id, .. } => self.read_chunk(&id).map_err(|e| e.to_string())?,
                Part::Zero { len } => vec![0; len.min(8) as usize],
            };
            tail.splice(0..0, bytes);
            if tail.len() >= 8 {
                break;
            }
        }
        let at = tail
            .len()
            .checked_sub(8)
            .ok_or("the re-creation data is too short to name its headers' length")?;
        let headers = u64::from_le_bytes(tail[at..].try_into().expect("eight bytes"));
        let mut len = 0u64;
        for (i, part) in raw.iter().enumerate() {
            if len == headers {
                return Ok(raw.split_at(i));
            }
            len += part.len();
        }
        if len == headers {
            return Ok((raw, &[]));
        }
        Err(format!(
            "the headers stream ({headers} bytes) does not end at a part boundary of the raw bytes"
        ))
    }
}

/// A blob kept aside in an unnamed file under `STORE/tmp` while it is taken apart (a container's directory
/// may be at its end), with its digests.
pub(super) struct Spooled {
    pub file: std::fs::File,
    pub sha256: Sha256Digest,
    pub id: BlobId,
    pub size: u64,
}

impl Store {
    /// Keep `src` aside, hashing it, and check it is what `expect` says.
    pub(super) fn spool_blob(
        &self,
        mut src: impl Read,
        what: &str,
        expect: Option<(Sha256Digest, Option<u64>)>,
        progress: &dyn Progress,
    ) -> Result<Spooled, StoreError> {
        let dir = self.root().join("tmp");
        std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        let mut file = tempfile::tempfile_in(&dir).map_err(StoreError::io(&dir))?;
        let (sha256, id, size) =
            spool(&mut src, &mut file, progress).map_err(|source| StoreError::Source {
                what: what.to_string(),
                source,
            })?;
        super::writer::check_expected(what, expect, sha256, size)?;
        Ok(Spooled {
            file,
            sha256,
            id,
            size,
        })
    }

    /// Store a blob kept aside as it is.
    pub(super) fn ingest_spooled(
        &self,
        spooled: &mut Spooled,
        what: &str,
        expect: Option<(Sha256Digest, Option<u64>)>,
    ) -> Result<super::writer::Ingested, StoreError> {
        use std::io::Seek;
        spooled.file.rewind().map_err(|source| StoreError::Source {
            what: format!("{what} (kept aside)"),
            source,
        })?;
        self.ingest_stream(
            io::BufReader::with_capacity(1 << 20, &spooled.file),
            what,
            expect,
            &crate::progress::NoProgress,
        )
    }
}

/// Copy `src` to `file`, hashing it: its SHA-256, BLAKE3 and length.
fn spool(
    src: &mut impl Read,
    file: &mut std::fs::File,
    progress: &dyn Progress,
) -> io::Result<(Sha256Digest, BlobId, u64)> {
    let mut sha = sha2::Sha256::new();
    let mut blake = blake3::Hasher::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut out = io::BufWriter::with_capacity(1 << 20, &mut *file);
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buf[..n]);
        blake.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
        progress.advance(n as u64);
    }
    out.flush()?;
    Ok((
        Sha256Digest(Hash32(sha.finalize().into())),
        BlobId::from_bytes(*blake.finalize().as_bytes()),
        size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recreation_data_round_trips_and_refuses_garbage() {
        let packed = pack("go-6", b"headers", b"corrections");
        assert_eq!(
            unpack(&packed).unwrap(),
            ("go-6", &b"headers"[..], &b"corrections"[..])
        );
        let packed = pack("", b"", b"");
        assert_eq!(unpack(&packed).unwrap(), ("", &b""[..], &b""[..]));
        assert!(unpack(b"").is_err());
        assert!(unpack(&[2, 0, 0]).is_err());
        assert!(unpack(&[1, 5, b'a']).is_err());
        assert!(unpack(&[1, 0x80]).is_err());
        assert!(
            unpack(&[1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err()
        );
    }
}
