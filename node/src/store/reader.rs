//! Rebuilding blobs from their recipes. Every chunk is verified against its id as it is read.

use super::{Store, StoreError};
use crate::progress::Progress;
use ferry_protocol::{BlobRef, Part, Recipe, Sha256Digest};
use sha2::Digest;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// A blob as a byte stream. While it is open, a garbage collection that starts waits for it (see [`super::gc`]).
pub struct BlobReader {
    inner: Inner,
    _op: super::gc::OpGuard,
}

enum Inner {
    /// Concatenated parts, read chunk by chunk.
    Parts(PartsReader),
    /// A re-created gzip blob, from the cache or a re-creation under way.
    Recreated(super::gzip::Recreated),
}

struct PartsReader {
    store: Store,
    recipe: Recipe,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    zeros: u64,
}

impl PartsReader {
    fn fill(&mut self) -> std::io::Result<bool> {
        while self.pos == self.buf.len() && self.zeros == 0 {
            let Some(part) = self.recipe.parts().get(self.next).copied() else {
                return Ok(false);
            };
            self.next += 1;
            match part {
                Part::Chunk { id, .. } => {
                    self.buf = self
                        .store
                        .read_chunk(&id)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                    self.pos = 0;
                }
                Part::Zero { len } => self.zeros = len,
            }
        }
        Ok(true)
    }
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.inner {
            Inner::Parts(p) => p.read(out),
            Inner::Recreated(f) => f.read(out),
        }
    }
}

impl Read for PartsReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() || !self.fill()? {
            return Ok(0);
        }
        if self.zeros > 0 {
            let n = (self.zeros.min(out.len() as u64)) as usize;
            out[..n].fill(0);
            self.zeros -= n as u64;
            return Ok(n);
        }
        let n = (self.buf.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Store {
    pub fn recipe_of(&self, blob: &BlobRef) -> Result<Recipe, StoreError> {
        let recipe = self
            .recipe(&blob.recipe)?
            .ok_or(StoreError::MissingRecipe {
                recipe: blob.recipe,
                for_blob: Some(blob.sha256),
            })?;
        if recipe.size() != blob.size || !recipe.is_consistent() {
            return Err(StoreError::Corrupt(format!(
                "recipe {} does not add up to blob {} ({} bytes)",
                blob.recipe, blob.sha256, blob.size
            )));
        }
        Ok(recipe)
    }

    /// A reader over the blob's bytes. A gzip blob stored as raw bytes plus re-creation data is re-created
    /// into the cache first, if it is not there.
    pub fn open_blob(&self, blob: &BlobRef) -> Result<BlobReader, StoreError> {
        let op = self.begin("read");
        self.note_blob(&blob.id);
        let recipe = self.recipe_of(blob)?;
        if recipe.is_gzip() {
            return Ok(BlobReader {
                inner: Inner::Recreated(self.recreated(blob, &recipe)?),
                _op: op,
            });
        }
        let inner = Inner::Parts(PartsReader {
            store: self.clone(),
            recipe,
            next: 0,
            buf: Vec::new(),
            pos: 0,
            zeros: 0,
        });
        Ok(BlobReader { inner, _op: op })
    }

    /// The whole blob in memory (for manifests and configs; never for layers).
    pub fn read_blob(&self, blob: &BlobRef) -> Result<Vec<u8>, StoreError> {
        let named = |reason: String| StoreError::Blob {
            blob: blob.sha256,
            reason,
        };
        // The recorded size is trusted for a hint only, never for an allocation.
        let mut out = Vec::with_capacity(blob.size.min(4 << 20) as usize);
        self.open_blob(blob)
            .map_err(|e| named(e.to_string()))?
            .read_to_end(&mut out)
            .map_err(|e| named(e.to_string()))?;
        Ok(out)
    }

    /// Write the blob to a new file at `path`, leaving holes for zero runs, and check its SHA-256 on the way.
    pub fn write_blob_to_file(
        &self,
        blob: &BlobRef,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<(), StoreError> {
        let _op = self.begin("read");
        self.note_blob(&blob.id);
        let recipe = self.recipe_of(blob)?;
        let io = StoreError::io(path);
        let mut file = File::create(path).map_err(StoreError::io(path))?;
        if recipe.is_gzip() {
            // Checked against the blob's digests as it is re-created.
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut file);
            self.recreate(blob, &recipe, &mut w)?;
            w.flush().map_err(StoreError::io(path))?;
            drop(w);
            progress.advance(blob.size);
            return file.sync_all().map_err(io);
        }
        let mut sha = sha2::Sha256::new();
        let zero_block = [0u8; 64 << 10];
        for part in recipe.parts() {
            match *part {
                Part::Chunk { id, .. } => {
                    let data = self.read_chunk(&id)?;
                    sha.update(&data);
                    file.write_all(&data).map_err(StoreError::io(path))?;
                    progress.advance(data.len() as u64);
                }
                Part::Zero { len } => {
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(zero_block.len() as u64) as usize;
                        sha.update(&zero_block[..n]);
                        left -= n as u64;
                    }
                    file.seek(SeekFrom::Current(len as i64))
                        .map_err(StoreError::io(path))?;
                    progress.advance(len);
                }
            }
        }
        file.set_len(blob.size).map_err(StoreError::io(path))?;
        file.sync_all().map_err(io)?;
        let actual = Sha256Digest(ferry_protocol::Hash32(sha.finalize().into()));
        if actual != blob.sha256 {
            return Err(StoreError::DigestMismatch {
                what: format!("rebuilt {}", path.display()),
                expected: blob.sha256,
                actual,
            });
        }
        Ok(())
    }
}
