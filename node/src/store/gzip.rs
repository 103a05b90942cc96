//! Gzip blobs stored as their decompressed bytes plus re-creation data, and re-created bit for bit on read.
//!
//! At ingest a gzip blob is decomposed ([`crate::deflate`]): its raw bytes are chunked like any content — at tar
//! entries when they are a tar ([`crate::chunker::cut_tar`]) — and its re-creation data (member headers, block
//! boundaries and code definitions, and the producer's match decisions, as a model's corrections where a model
//! of the producer predicts them) is chunked beside them, under one [`Recipe::Gzip`]. Before the recipe is
//! written the blob is re-created from exactly what will be stored and compared with the original, byte for
//! byte; a blob that cannot be decomposed, or whose re-creation differs, is stored as it is and counted.
//!
//! Reading such a blob means re-creating it. Re-created blobs are kept in a bounded cache of files
//! (`STORE/cache/gzip/`, least recently used out first), so warm reads are file reads; a cold read re-creates
//! the whole blob first, checks its BLAKE3 and SHA-256 against the blob's, and only then serves it.

use super::{Store, StoreError};
use crate::deflate::predict::{self, Layout};
use crate::deflate::{self, Recreation};
use ferry_protocol::{BlobRef, Part, Recipe, Sha256Digest};
use sha2::Digest;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Gzip blobs larger than this are stored as they are: decomposing holds the blob, its raw bytes and its
/// tokens in memory.
pub(crate) const MAX_GZIP: u64 = 1 << 30;
/// Nor are blobs whose raw bytes pass this.
pub(crate) const MAX_RAW: u64 = 4 << 30;
/// Models are tried on the decisions of this many leading raw bytes; the best is then run on the whole stream.
const TRIAL_RAW: u64 = 1 << 20;
/// Version byte of the re-creation data.
const RECREATION_VERSION: u8 = 1;

/// A gzip blob taken apart: its raw bytes and the re-creation data to store beside them.
pub(crate) struct Decomposed {
    pub raw: Vec<u8>,
    /// The re-creation data as stored (see [`pack`]).
    pub recreation: Vec<u8>,
    /// The model whose corrections are stored, or "" when the tokens are stored as they are.
    pub model: String,
}

/// Take `gz` apart, choose the model that predicts its producer best, and check that what will be stored
/// re-creates `gz` exactly. Err says why it is to be stored as it is.
pub(crate) fn decompose(gz: &[u8]) -> Result<Decomposed, String> {
    let mut raw = Capped(Vec::with_capacity(gz.len().saturating_mul(3)));
    let re = match deflate::decompose(gz, &mut raw) {
        Ok(re) => re,
        Err(deflate::DeflateError::Write(_)) => {
            return Err(format!("its raw bytes pass {} GiB", MAX_RAW >> 30))
        }
        Err(e) => return Err(e.to_string()),
    };
    let raw = raw.0;
    let layout = Layout::parse(&re.headers).map_err(|e| format!("re-creation data: {e}"))?;
    let mut best: Option<(&str, u64)> = None;
    for &name in predict::MODELS.iter().filter(|&&m| m != "literals") {
        let mut model = predict::model(name, &raw, &layout).expect("MODELS are known");
        let (decisions, misses) = predict::trial(&mut *model, &layout, &re.tokens, TRIAL_RAW)
            .map_err(|e| format!("tokens: {e}"))?;
        // A model missing most decisions is not this producer's.
        if misses * 2 < decisions && best.is_none_or(|(_, m)| misses < m) {
            best = Some((name, misses));
        }
        if misses == 0 {
            // MODELS lists the common producers first; a model with no miss is the one.
            break;
        }
    }
    let (model, data) = match best {
        Some((name, _)) => {
            let mut model = predict::model(name, &raw, &layout).expect("MODELS are known");
            let corrections = predict::encode(&mut *model, &layout, &re.tokens)
                .map_err(|e| format!("tokens: {e}"))?;
            if corrections.len() < re.tokens.len() {
                (name.to_string(), corrections)
            } else {
                (String::new(), re.tokens)
            }
        }
        None => (String::new(), re.tokens),
    };
    let recreation = pack(&model, &re.headers, &data);
    // What will be stored must give back `gz` exactly, through the same path a read takes.
    let mut check = Compare { expect: gz, at: 0 };
    recreate_from(&raw, &recreation, &mut check).map_err(|e| format!("re-creating it: {e}"))?;
    if check.at != gz.len() {
        return Err(format!(
            "re-creating it gave {} bytes instead of {}",
            check.at,
            gz.len()
        ));
    }
    Ok(Decomposed {
        raw,
        recreation,
        model,
    })
}

/// The stored re-creation data:
///
/// ```text
/// u8 1 (version)  varint n  n bytes (model name, empty for tokens stored as they are)
/// varint n  n bytes (headers)  then to the end: the model's corrections, or the tokens
/// ```
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
        let mut m = predict::model(model, raw, &layout).ok_or_else(|| {
            format!("model {model:?} is not known to this ferry (stored by a newer one?)")
        })?;
        predict::decode(&mut *m, &layout, data).map_err(|e| e.to_string())?
    };
    let re = Recreation {
        headers: headers.to_vec(),
        tokens,
    };
    deflate::recompose(raw, &re, out).map_err(|e| e.to_string())
}

/// A writer that fails once its raw bytes pass [`MAX_RAW`].
struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() as u64 + buf.len() as u64 > MAX_RAW {
            return Err(std::io::Error::other("raw bytes too long"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer that checks what is written against `expect`.
struct Compare<'a> {
    expect: &'a [u8],
    at: usize,
}

impl Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let end = self.at + buf.len();
        if self.expect.get(self.at..end) != Some(buf) {
            let first = (0..buf.len())
                .find(|&i| self.expect.get(self.at + i) != Some(&buf[i]))
                .unwrap_or(0);
            return Err(std::io::Error::other(format!(
                "re-created bytes differ from the original at offset {}",
                self.at + first
            )));
        }
        self.at = end;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
        let (raw_parts, rec_parts) = recipe.gzip_parts().ok_or_else(|| {
            StoreError::Corrupt(format!("blob {} has no gzip recipe", blob.sha256))
        })?;
        let raw = self.read_parts(raw_parts, MAX_RAW)?;
        let recreation = self.read_parts(rec_parts, MAX_RAW)?;
        let mut out = Hashing {
            inner: out,
            sha: sha2::Sha256::new(),
            blake: blake3::Hasher::new(),
            len: 0,
        };
        recreate_from(&raw, &recreation, &mut out).map_err(|e| {
            StoreError::Corrupt(format!(
                "re-creating gzip blob {} (recipe {}): {e}",
                blob.sha256, blob.recipe
            ))
        })?;
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

    fn cache_dir(&self) -> PathBuf {
        self.root().join("cache").join("gzip")
    }

    /// The cached re-creation of a blob, if there is one.
    pub(crate) fn cached_recreation(&self, blob: &BlobRef) -> Option<PathBuf> {
        let path = self.cache_dir().join(blob.id.to_string());
        path.is_file().then_some(path)
    }

    /// The re-created bytes of a gzip blob, open for reading: from the cache, or re-created into it first
    /// (checked against the blob's digests). Several readers of the same cold blob wait for one re-creation.
    pub fn recreated(&self, blob: &BlobRef, recipe: &Recipe) -> Result<File, StoreError> {
        let dir = self.cache_dir();
        let path = dir.join(blob.id.to_string());
        if let Some(f) = open_touched(&path) {
            return Ok(f);
        }
        let lock = {
            let mut map = self.0.recreating.lock().expect("recreating poisoned");
            map.entry(blob.id).or_default().clone()
        };
        let result = (|| {
            let _held = lock.lock().expect("re-creation lock poisoned");
            if let Some(f) = open_touched(&path) {
                return Ok(f);
            }
            std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
            let tmp = dir.join(format!("{}.tmp{}", blob.id, std::process::id()));
            let file = File::create(&tmp).map_err(StoreError::io(&tmp))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let made = self
                .recreate(blob, recipe, &mut w)
                .and_then(|()| w.flush().map_err(StoreError::io(&tmp)));
            drop(w);
            if let Err(e) = made {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::rename(&tmp, &path).map_err(StoreError::io(&path))?;
            let f = File::open(&path).map_err(StoreError::io(&path))?;
            self.trim_cache(&path);
            Ok(f)
        })();
        let mut map = self.0.recreating.lock().expect("recreating poisoned");
        if std::sync::Arc::strong_count(&lock) <= 2 {
            map.remove(&blob.id);
        }
        result
    }

    /// Remove the least recently used re-created blobs (never `keep`) until the cache fits its bound.
    fn trim_cache(&self, keep: &Path) {
        let cap = self.config().recreate_cache_bytes;
        let Ok(entries) = std::fs::read_dir(self.cache_dir()) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let m = e.metadata().ok()?;
                let name = e.file_name();
                (m.is_file() && !name.to_string_lossy().contains(".tmp")).then_some(())?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= cap {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// Open a cached file and mark it used now (its mtime orders the cache).
fn open_touched(path: &Path) -> Option<File> {
    let f = File::options().read(true).write(true).open(path).ok()?;
    let _ = f.set_modified(std::time::SystemTime::now());
    Some(f)
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
