//! The ingest pipeline: one reader thread chunks and hashes the stream while a rayon pool hashes chunks and
//! compresses the new ones; the caller's thread appends them to the open pack.
//!
//! Nothing written here is visible until [`Store::commit`]: it fsyncs the pack, then commits the chunk index
//! entries, then the recipes and blob records that need them.

use super::packs::{self, Location};
use super::{blob_value, pack_len_key, sync_dir, Store, StoreError};
use crate::chunker;
use crate::progress::Progress;
use ferry_protocol::{BlobId, BlobRef, ChunkId, Hash32, Part, Recipe, RecipeId, Sha256Digest};
use rayon::prelude::*;
use sha2::Digest;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::sync::mpsc;

/// Commit by itself once this much new chunk data is pending.
const AUTO_COMMIT_BYTES: u64 = 128 << 20;
/// Chunks are handed to the pool in batches of about this many bytes.
const BATCH_BYTES: usize = 8 << 20;

/// The state of the one writer: the open pack and what is not yet committed.
#[derive(Default)]
pub(crate) struct PackWriter {
    open: Option<OpenPack>,
    /// Chunks appended but not yet in the index.
    pending: HashMap<ChunkId, Location>,
    /// Recipes and blob records waiting for their chunks to be committed.
    pending_recipes: Vec<(RecipeId, Vec<u8>)>,
    pending_blobs: Vec<BlobRef>,
    pending_bytes: u64,
}

struct OpenPack {
    n: u32,
    file: File,
    /// Length including buffered bytes.
    len: u64,
    buf: Vec<u8>,
}

impl OpenPack {
    fn flush_buf(&mut self, store: &Store) -> Result<(), StoreError> {
        if !self.buf.is_empty() {
            self.file
                .write_all(&self.buf)
                .map_err(StoreError::io(packs::pack_path(&store.0.packs_dir, self.n)))?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// What writing one blob did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Chunks in the blob (with repeats).
    pub chunks: u64,
    /// Chunks this write appended to a pack.
    pub chunks_new: u64,
    /// Compressed bytes (with record headers) appended.
    pub stored_bytes_new: u64,
}

impl std::ops::AddAssign for WriteStats {
    fn add_assign(&mut self, o: Self) {
        self.chunks += o.chunks;
        self.chunks_new += o.chunks_new;
        self.stored_bytes_new += o.stored_bytes_new;
    }
}

/// A blob written (or found already stored).
#[derive(Clone, Copy, Debug)]
pub struct Ingested {
    /// The blob.
    pub blob: BlobRef,
    /// What it cost.
    pub stats: WriteStats,
}

struct HashingReader<R> {
    inner: R,
    sha: sha2::Sha256,
    blake: blake3::Hasher,
    len: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.blake.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

thread_local! {
    /// One zstd context per pool thread: creating one per chunk costs as much as compressing a small chunk.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, c) = slot.as_mut().expect("set above");
        c.compress(data)
    })
}

fn is_zero(data: &[u8]) -> bool {
    let mut words = data.chunks_exact(8);
    words.all(|w| w == [0u8; 8]) && words.remainder().iter().all(|&b| b == 0)
}

/// Chunk the stream and send batches of about [`BATCH_BYTES`]; an error ends the stream.
fn feed<R: Read>(
    src: &mut R,
    params: &crate::config::Chunking,
    tx: &mpsc::SyncSender<std::io::Result<Vec<Vec<u8>>>>,
) {
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for chunk in chunker::chunks(src, params) {
        match chunk {
            Ok(c) => {
                batch_bytes += c.len();
                batch.push(c);
                if batch_bytes >= BATCH_BYTES {
                    if tx.send(Ok(std::mem::take(&mut batch))).is_err() {
                        return;
                    }
                    batch_bytes = 0;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch));
    }
}

impl Store {
    /// Chunk, dedup and store everything `src` yields as one blob. With `expect`, the content must have that
    /// SHA-256 (and `expect_size`, that length) or nothing about the blob is recorded; chunks already appended
    /// stay and are reused by a retry. `what` names the source in errors.
    pub fn ingest_blob<R: Read + Send>(
        &self,
        src: R,
        what: &str,
        expect: Option<(Sha256Digest, Option<u64>)>,
        progress: &dyn Progress,
    ) -> Result<Ingested, StoreError> {
        let params = self.0.config.chunking;
        let level = self.0.config.zstd_level;
        let mut parts: Vec<Part> = Vec::new();
        let mut stats = WriteStats::default();

        let (tx, rx) = mpsc::sync_channel::<std::io::Result<Vec<Vec<u8>>>>(2);
        let hashed = std::thread::scope(|scope| -> Result<HashingReader<R>, StoreError> {
            let reader = scope.spawn(move || {
                let mut hr = HashingReader {
                    inner: src,
                    sha: sha2::Sha256::new(),
                    blake: blake3::Hasher::new(),
                    len: 0,
                };
                feed(&mut hr, &params, &tx);
                hr
            });
            for batch in rx {
                let batch = batch.map_err(|source| StoreError::Source {
                    what: what.to_string(),
                    source,
                })?;
                stats += self.store_batch(batch, level, &mut parts, progress)?;
            }
            Ok(reader.join().expect("chunker thread panicked"))
        })?;

        let size = hashed.len;
        let sha256 = Sha256Digest(Hash32(hashed.sha.finalize().into()));
        let id = BlobId::from_bytes(*hashed.blake.finalize().as_bytes());
        if let Some((expected, expected_size)) = expect {
            if expected != sha256 {
                return Err(StoreError::DigestMismatch {
                    what: what.to_string(),
                    expected,
                    actual: sha256,
                });
            }
            if let Some(expected) = expected_size.filter(|&e| e != size) {
                return Err(StoreError::SizeMismatch {
                    what: what.to_string(),
                    expected,
                    actual: size,
                });
            }
        }
        let recipe = Recipe::concat(parts);
        let (recipe_id, recipe_bytes) = recipe.encode_with_id();
        let blob = BlobRef {
            id,
            sha256,
            size,
            recipe: recipe_id,
        };
        let mut w = self.0.writer.lock().expect("writer poisoned");
        w.pending_recipes.push((recipe_id, recipe_bytes));
        w.pending_blobs.push(blob);
        drop(w);
        Ok(Ingested { blob, stats })
    }

    /// Hash a batch in parallel, compress the chunks nobody has yet, append them.
    fn store_batch(
        &self,
        batch: Vec<Vec<u8>>,
        level: i32,
        parts: &mut Vec<Part>,
        progress: &dyn Progress,
    ) -> Result<WriteStats, StoreError> {
        let mut stats = WriteStats::default();
        let ids: Vec<(ChunkId, bool)> = batch
            .par_iter()
            .map(|c| (ChunkId::of(c), is_zero(c)))
            .collect();
        // Decide, in order, which chunks are new: not in the index, not pending, not earlier in this batch.
        let mut fresh = vec![false; batch.len()];
        {
            let w = self.0.writer.lock().expect("writer poisoned");
            let mut seen = HashSet::new();
            for (i, (id, zero)) in ids.iter().enumerate() {
                if *zero || w.pending.contains_key(id) || !seen.insert(*id) {
                    continue;
                }
                fresh[i] = !self.0.chunks.contains_key(id.as_bytes())?;
            }
        }
        let compressed: Vec<Option<std::io::Result<Vec<u8>>>> = batch
            .par_iter()
            .zip(fresh.par_iter())
            .map(|(c, &new)| new.then(|| compress(c, level)))
            .collect();
        let mut w = self.0.writer.lock().expect("writer poisoned");
        for ((data, (id, zero)), comp) in batch.iter().zip(&ids).zip(compressed) {
            let len = data.len() as u64;
            stats.chunks += 1;
            progress.advance(len);
            if *zero {
                match parts.last_mut() {
                    Some(Part::Zero { len: l }) => *l += len,
                    _ => parts.push(Part::Zero { len }),
                }
                continue;
            }
            parts.push(Part::Chunk {
                id: *id,
                len: data.len() as u32,
            });
            if let Some(comp) = comp {
                let comp = comp.map_err(|e| StoreError::Corrupt(format!("zstd: {e}")))?;
                stats.chunks_new += 1;
                stats.stored_bytes_new += self.append(&mut w, id, data.len() as u32, &comp)?;
            }
        }
        let auto = w.pending_bytes >= AUTO_COMMIT_BYTES;
        drop(w);
        if auto {
            self.commit_chunks()?;
        }
        Ok(stats)
    }

    /// Append one record to the open pack (opening or rolling over as needed).
    fn append(
        &self,
        w: &mut PackWriter,
        id: &ChunkId,
        raw_len: u32,
        comp: &[u8],
    ) -> Result<u64, StoreError> {
        if w.open.is_none() {
            w.open = Some(self.open_pack_for_append()?);
        }
        let open = w.open.as_mut().expect("opened above");
        let loc = Location {
            pack: open.n,
            offset: open.len,
            comp_len: comp.len() as u32,
            raw_len,
        };
        open.buf
            .extend_from_slice(&packs::header(id, raw_len, comp.len() as u32));
        open.buf.extend_from_slice(comp);
        open.len = loc.end();
        if open.buf.len() >= 4 << 20 {
            open.flush_buf(self)?;
        }
        let cost = packs::HEADER_LEN + comp.len() as u64;
        w.pending.insert(*id, loc);
        w.pending_bytes += cost;
        Ok(cost)
    }

    /// The newest pack if it has room, else a new one.
    fn open_pack_for_append(&self) -> Result<OpenPack, StoreError> {
        let dir = &self.0.packs_dir;
        let list = packs::list(dir).map_err(StoreError::io(dir))?;
        let target = self.0.config.pack_target_bytes;
        if let Some(&n) = list.last() {
            let committed = self.pack_committed(n)?;
            if committed < target {
                let path = packs::pack_path(dir, n);
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(StoreError::io(&path))?;
                // Recovery on open cut the file back to its committed length.
                return Ok(OpenPack {
                    n,
                    file,
                    len: committed,
                    buf: Vec::new(),
                });
            }
        }
        let n = list.last().map_or(1, |n| n + 1);
        let path = packs::pack_path(dir, n);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        sync_dir(dir)?;
        Ok(OpenPack {
            n,
            file,
            len: 0,
            buf: Vec::new(),
        })
    }

    /// Make appended chunks durable and indexed (recipes and blob records stay pending).
    fn commit_chunks(&self) -> Result<(), StoreError> {
        let mut w = self.0.writer.lock().expect("writer poisoned");
        self.commit_locked(&mut w, false)
    }

    /// Make everything written so far durable and visible: pack bytes, then chunk index, then recipes and blobs.
    pub fn commit(&self) -> Result<(), StoreError> {
        let mut w = self.0.writer.lock().expect("writer poisoned");
        self.commit_locked(&mut w, true)
    }

    fn commit_locked(&self, w: &mut PackWriter, with_meta: bool) -> Result<(), StoreError> {
        if let Some(open) = w.open.as_mut() {
            open.flush_buf(self)?;
            let path = packs::pack_path(&self.0.packs_dir, open.n);
            open.file.sync_data().map_err(StoreError::io(&path))?;
            let mut batch = sled::Batch::default();
            for (id, loc) in &w.pending {
                batch.insert(id.as_bytes().as_slice(), loc.to_bytes().as_slice());
            }
            batch.insert(
                pack_len_key(open.n).as_slice(),
                open.len.to_le_bytes().as_slice(),
            );
            self.0.chunks.apply_batch(batch)?;
            w.pending.clear();
            w.pending_bytes = 0;
            if open.len >= self.0.config.pack_target_bytes {
                w.open = None;
            }
        }
        if with_meta {
            for (id, bytes) in w.pending_recipes.drain(..) {
                self.0.recipes.insert(id.as_bytes(), bytes)?;
            }
            for b in w.pending_blobs.drain(..) {
                self.0
                    .blobs
                    .insert(b.id.as_bytes(), blob_value(&b).as_slice())?;
                self.0.sha256.insert(b.sha256.0 .0, b.id.as_bytes())?;
            }
        }
        self.0.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::is_zero;

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 13]));
        let mut v = vec![0u8; 100];
        v[99] = 1;
        assert!(!is_zero(&v));
        v[99] = 0;
        v[3] = 1;
        assert!(!is_zero(&v));
    }
}
