//! The ingest pipeline: one reader thread chunks and hashes the stream while a rayon pool hashes chunks and
//! compresses the new ones; the caller's thread appends them to the open pack.
//!
//! Nothing written here is visible until [`Store::commit`]: it fsyncs the pack, then commits the chunk index
//! entries, then the recipes and blob records that need them.

use super::packs::{self, Location};
use super::{blob_value, gzip, pack_len_key, sync_dir, Store, StoreError};
use crate::progress::Progress;
use ferry_protocol::{BlobId, BlobRef, ChunkId, Hash32, Part, Recipe, RecipeId, Sha256Digest};
use rayon::prelude::*;
use sha2::Digest;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

/// Commit by itself once this much new chunk data is pending.
const AUTO_COMMIT_BYTES: u64 = 128 << 20;
/// Start background writeback of the open pack every this many bytes.
const WRITEBACK_BYTES: u64 = 32 << 20;
/// Records are buffered and written to the pack this many bytes at a time.
const FLUSH_BYTES: usize = 4 << 20;
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
    /// Open a new pack at the next append rather than reopening the last (so a collection can compact every
    /// pack that existed before).
    fresh: bool,
}

struct OpenPack {
    n: u32,
    file: File,
    /// Length including buffered bytes.
    len: u64,
    buf: Vec<u8>,
    /// Bytes written since the last background writeback was started.
    unsynced: u64,
    /// Whether a background `sync_data` is running.
    syncing: Arc<AtomicBool>,
    /// A failed write left bytes past `len - buf.len()` that could not be cut off: nothing more is written.
    torn: bool,
}

impl OpenPack {
    fn new(n: u32, file: File, len: u64) -> Self {
        OpenPack {
            n,
            file,
            len,
            buf: Vec::new(),
            unsynced: 0,
            syncing: Arc::new(AtomicBool::new(false)),
            torn: false,
        }
    }

    /// Write the buffered records. All or nothing: a failed write (a full disk) is cut back off the file and the
    /// records stay buffered at the offsets they were given, so the next flush, once there is room, writes them
    /// where the index will say they are — a long-running node goes on after a full disk without a torn record
    /// in the middle of a pack.
    fn flush_buf(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = packs::pack_path(&store.0.packs_dir, self.n);
        if self.torn {
            return Err(StoreError::Corrupt(format!(
                "{}: a failed write could not be cut back off; reopen the store (its recovery does)",
                path.display()
            )));
        }
        store.check_room(self.buf.len() as u64, &path)?;
        if let Err(e) = self.file.write_all(&self.buf) {
            let before = self.len - self.buf.len() as u64;
            if let Err(cut) = self.file.set_len(before) {
                tracing::error!(path = %path.display(), error = %cut, "cutting back a failed pack write");
                self.torn = true;
            }
            return Err(StoreError::io(&path)(e));
        }
        self.unsynced += self.buf.len() as u64;
        self.buf.clear();
        self.start_writeback();
        Ok(())
    }

    /// Every [`WRITEBACK_BYTES`], start a `sync_data` on another thread, so the disk writes while we compress
    /// and the fsync at commit (which correctness needs) finds little left to do. Best effort: errors surface
    /// at that commit's own fsync.
    fn start_writeback(&mut self) {
        if self.unsynced < WRITEBACK_BYTES || self.syncing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.unsynced = 0;
        let Ok(file) = self.file.try_clone() else {
            self.syncing.store(false, Ordering::Release);
            return;
        };
        let syncing = self.syncing.clone();
        std::thread::spawn(move || {
            let _ = file.sync_data();
            syncing.store(false, Ordering::Release);
        });
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
    /// Bytes of gzip blobs stored as raw bytes plus re-creation data.
    pub recreated_bytes: u64,
    /// Bytes of gzip blobs stored as they are (not decomposable, or too large).
    pub gzip_kept_bytes: u64,
    /// Bytes of zip blobs stored as skeleton, contents and re-creation data (also in `recreated_bytes`).
    pub zip_recreated_bytes: u64,
    /// Bytes of zip blobs with deflated members stored as they are (not decomposable).
    pub zip_kept_bytes: u64,
    /// Bytes of bare xz streams stored as raw bytes plus parameters (also in `recreated_bytes`).
    pub xz_recreated_bytes: u64,
    /// Bytes of bare xz streams stored as they are (not re-creatable exactly).
    pub xz_kept_bytes: u64,
    /// Bytes of bare bzip2 streams stored as raw bytes plus their level (also in `recreated_bytes`).
    pub bzip2_recreated_bytes: u64,
    /// Bytes of bare bzip2 streams stored as they are (several streams, or not libbzip2's output).
    pub bzip2_kept_bytes: u64,
    /// Bytes of bare zstd frames stored as raw bytes plus parameters (also in `recreated_bytes`).
    pub zstd_recreated_bytes: u64,
    /// Bytes of bare zstd frames stored as they are (another encoder's, several frames).
    pub zstd_kept_bytes: u64,
    /// Bytes of `.deb` (ar) members stored as raw bytes plus parameters (also in `recreated_bytes`).
    pub deb_recreated_bytes: u64,
    /// Bytes of `.deb` files stored as they are: their skeletons, and members not re-creatable exactly.
    pub deb_kept_bytes: u64,
    /// Bytes of `.rpm` payloads stored as raw bytes plus parameters (also in `recreated_bytes`).
    pub rpm_recreated_bytes: u64,
    /// Bytes of `.rpm` files stored as they are: their leads and headers, and payloads not re-creatable exactly
    /// (gzip, lzma, another encoder's).
    pub rpm_kept_bytes: u64,
}

impl std::ops::AddAssign for WriteStats {
    fn add_assign(&mut self, o: Self) {
        self.chunks += o.chunks;
        self.chunks_new += o.chunks_new;
        self.stored_bytes_new += o.stored_bytes_new;
        self.recreated_bytes += o.recreated_bytes;
        self.gzip_kept_bytes += o.gzip_kept_bytes;
        self.zip_recreated_bytes += o.zip_recreated_bytes;
        self.zip_kept_bytes += o.zip_kept_bytes;
        self.xz_recreated_bytes += o.xz_recreated_bytes;
        self.xz_kept_bytes += o.xz_kept_bytes;
        self.bzip2_recreated_bytes += o.bzip2_recreated_bytes;
        self.bzip2_kept_bytes += o.bzip2_kept_bytes;
        self.zstd_recreated_bytes += o.zstd_recreated_bytes;
        self.zstd_kept_bytes += o.zstd_kept_bytes;
        self.deb_recreated_bytes += o.deb_recreated_bytes;
        self.deb_kept_bytes += o.deb_kept_bytes;
        self.rpm_recreated_bytes += o.rpm_recreated_bytes;
        self.rpm_kept_bytes += o.rpm_kept_bytes;
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

thread_local! {
    /// One zstd context per pool thread: creating one per chunk costs as much as compressing a small chunk.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, c) = slot.as_mut().expect("set above");
        f(c)
    })
}

fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    with_compressor(level, |c| c.compress(data))
}

fn is_zero(data: &[u8]) -> bool {
    let mut words = data.chunks_exact(8);
    words.all(|w| w == [0u8; 8]) && words.remainder().iter().all(|&b| b == 0)
}

/// A buffer of the stream and the chunks cut in it. Chunks are ranges of the buffer: nothing is copied.
pub(super) struct Batch {
    data: Vec<u8>,
    chunks: Vec<std::ops::Range<usize>>,
}

/// A batch hashed, deduplicated and compressed, ready to append.
struct Prepared {
    batch: Batch,
    ids: Vec<(ChunkId, bool)>,
    compressed: Vec<Option<std::io::Result<Vec<u8>>>>,
}

/// The whole-stream hashes, fed in stream order by the appending stage.
pub(super) struct StreamSummary {
    /// Whether to hash at all (not for the parts of a gzip blob, whose hashes are the gzip stream's).
    hash: bool,
    pub sha: sha2::Sha256,
    pub blake: blake3::Hasher,
    pub len: u64,
}

/// Fail unless the content has the digest (and size) it was promised with.
pub(super) fn check_expected(
    what: &str,
    expect: Option<(Sha256Digest, Option<u64>)>,
    actual: Sha256Digest,
    size: u64,
) -> Result<(), StoreError> {
    let Some((expected, expected_size)) = expect else {
        return Ok(());
    };
    if expected != actual {
        return Err(StoreError::DigestMismatch {
            what: what.to_string(),
            expected,
            actual,
        });
    }
    if let Some(expected) = expected_size.filter(|&e| e != size) {
        return Err(StoreError::SizeMismatch {
            what: what.to_string(),
            expected,
            actual: size,
        });
    }
    Ok(())
}

/// Read `src` into large buffers, cut chunks with FastCDC and send each buffer with its chunks. The last chunk of a buffer may only be cut by the buffer's end, so it is carried to the next buffer
/// and cut again there: boundaries are exactly those of chunking the stream in one piece. Buffers come back
/// through `pool` once appended. An error ends the stream.
pub(super) fn feed<R: Read>(
    src: R,
    params: &crate::config::Chunking,
    tx: &mpsc::SyncSender<std::io::Result<Batch>>,
    pool: &mpsc::Receiver<Vec<u8>>,
) {
    feed_with(src, &mut crate::chunker::Cdc(*params), params, tx, pool)
}

/// [`feed`], cutting with `cutter`.
pub(super) fn feed_with<R: Read>(
    mut src: R,
    cutter: &mut dyn crate::chunker::Cutter,
    params: &crate::config::Chunking,
    tx: &mpsc::SyncSender<std::io::Result<Batch>>,
    pool: &mpsc::Receiver<Vec<u8>>,
) {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut data = pool.try_recv().unwrap_or_default();
        data.clear();
        data.reserve(BATCH_BYTES);
        data.extend_from_slice(&carry);
        let start = data.len();
        data.resize(BATCH_BYTES.max(start + params.max as usize), 0);
        let mut filled = start;
        let mut eof = false;
        while filled < data.len() {
            match src.read(&mut data[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        data.truncate(filled);
        let chunks = cutter.cut(&data, eof);
        let taken = chunks.last().map_or(0, |c| c.end);
        carry.clear();
        carry.extend_from_slice(&data[taken..]);
        if (!chunks.is_empty() && tx.send(Ok(Batch { data, chunks })).is_err()) || eof {
            return;
        }
    }
}

impl Store {
    /// Chunk, dedup and store everything `src` yields as one blob. With `expect`, the content must have that
    /// SHA-256 (and `expect_size`, that length) or nothing about the blob is recorded; chunks already appended
    /// stay and are reused by a retry. `what` names the source in errors.
    ///
    /// Three stages overlap: a reader thread fills buffers and cuts chunks; the pool hashes and compresses
    /// batch N while this thread feeds batch N-1 to the whole-stream SHA-256 and BLAKE3 and appends it.
    ///
    /// A gzip stream of any size is stored as its raw bytes plus re-creation data when it can be re-created
    /// exactly (see [`gzip`]), and as it is otherwise; to store it as it is after trying, its bytes are kept
    /// in an unnamed temporary file as they are read (see [`Store::ingest_blob_with`] to read them again
    /// instead).
    pub fn ingest_blob<R: Read + Send>(
        &self,
        src: R,
        what: &str,
        expect: Option<(Sha256Digest, Option<u64>)>,
        progress: &dyn Progress,
    ) -> Result<Ingested, StoreError> {
        self.ingest_blob_with(src, &gzip::BlobOptions::default(), what, expect, progress)
    }

    /// [`Store::ingest_blob`] with options for gzip blobs: how to read the blob again, and the model that fitted
    /// a sibling blob (updated with the one this blob takes).
    pub fn ingest_blob_with<R: Read + Send>(
        &self,
        src: R,
        opts: &gzip::BlobOptions<'_, '_>,
        what: &str,
        expect: Option<(Sha256Digest, Option<u64>)>,
        progress: &dyn Progress,
    ) -> Result<Ingested, StoreError> {
        let source = |source| StoreError::Source {
            what: what.to_string(),
            source,
        };
        // Every way in reads through this: once the work is cancelled, the next read ends it.
        let mut src = crate::progress::Cancellable::new(src, progress);
        let mut head = Vec::with_capacity(8);
        (&mut src).take(8).read_to_end(&mut head).map_err(source)?;
        let src = std::io::Cursor::new(head.clone()).chain(src);
        if let Some(kind) = ferry_formats::packed::Kind::of(&head) {
            return self.ingest_packed(src, kind, what, expect, progress);
        }
        match head[..] {
            [0x1f, 0x8b, 0x08, ..] => self.ingest_gzip(src, opts, what, expect, progress),
            [b'P', b'K', 3, 4, ..] => self.ingest_zip(src, opts, what, expect, progress),
            _ => self.ingest_stream(src, what, expect, progress),
        }
    }

    /// Queue a blob's recipe and record for the next commit. A blob the store already holds whole (or has
    /// queued) keeps its record: the same bytes stored again may come with another recipe (a gzip stream
    /// re-creation data depends on the model tried first), and releases name a blob by its one record.
    pub(super) fn queue_blob(
        &self,
        id: BlobId,
        sha256: Sha256Digest,
        recipe: Recipe,
    ) -> Result<BlobRef, StoreError> {
        let size = recipe.size();
        let same = |b: &BlobRef| b.sha256 == sha256 && b.size == size;
        if let Some(held) = self.blob(&id)? {
            if same(&held) && self.blob_complete(&held)? {
                return Ok(held);
            }
        }
        let (recipe_id, recipe_bytes) = recipe.encode_with_id();
        let blob = BlobRef {
            id,
            sha256,
            size,
            recipe: recipe_id,
        };
        let mut w = self.0.writer.lock().expect("writer poisoned");
        if let Some(queued) = w.pending_blobs.iter().find(|b| b.id == id && same(b)) {
            return Ok(*queued);
        }
        w.pending_recipes.push((recipe_id, recipe_bytes));
        w.pending_blobs.push(blob);
        Ok(blob)
    }

    /// Store a stream as one blob of concatenated chunks.
    pub(super) fn ingest_stream<R: Read + Send>(
        &self,
        src: R,
        what: &str,
        expect: Option<(Sha256Digest, Option<u64>)>,
        progress: &dyn Progress,
    ) -> Result<Ingested, StoreError> {
        let params = self.0.config.chunking;
        let (parts, summary, stats) = self.ingest_parts(
            |tx, pool| feed(src, &params, tx, pool),
            true,
            what,
            progress,
        )?;
        let size = summary.len;
        let sha256 = Sha256Digest(Hash32(summary.sha.finalize().into()));
        let id = BlobId::from_bytes(*summary.blake.finalize().as_bytes());
        check_expected(what, expect, sha256, size)?;
        Ok(Ingested {
            blob: self.queue_blob(id, sha256, Recipe::concat(parts))?,
            stats,
        })
    }

    /// Chunk and store `src`, one stream of a decomposed blob (cut by FastCDC, not hashed whole): its parts,
    /// length and what writing them did.
    pub(super) fn ingest_substream<R: Read + Send>(
        &self,
        src: R,
        what: &str,
    ) -> Result<(Vec<Part>, StreamSummary, WriteStats), StoreError> {
        let params = self.0.config.chunking;
        self.ingest_parts(
            |tx, pool| feed(src, &params, tx, pool),
            false,
            what,
            &crate::progress::NoProgress,
        )
    }

    /// Chunk, dedup and store the batches `feeder` sends: the parts they make, the whole stream's hashes and
    /// length, and what storing cost.
    pub(super) fn ingest_parts<F>(
        &self,
        feeder: F,
        hash: bool,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<(Vec<Part>, StreamSummary, WriteStats), StoreError>
    where
        F: FnOnce(&mpsc::SyncSender<std::io::Result<Batch>>, &mpsc::Receiver<Vec<u8>>) + Send,
    {
        let mut parts: Vec<Part> = Vec::new();
        let mut stats = WriteStats::default();
        // Chunks this call has decided to write but may not have appended yet.
        let mut claimed: HashSet<ChunkId> = HashSet::new();

        let (tx, rx) = mpsc::sync_channel::<std::io::Result<Batch>>(2);
        let (pool_tx, pool_rx) = mpsc::channel::<Vec<u8>>();
        let mut summary = StreamSummary {
            hash,
            sha: sha2::Sha256::new(),
            blake: blake3::Hasher::new(),
            len: 0,
        };
        std::thread::scope(|scope| -> Result<(), StoreError> {
            let reader = scope.spawn(move || feeder(&tx, &pool_rx));
            let mut prev: Option<Prepared> = None;
            for batch in rx {
                let batch = batch.map_err(|source| StoreError::Source {
                    what: what.to_string(),
                    source,
                })?;
                let (prepared, appended) = rayon::join(
                    || self.prepare(batch, &mut claimed),
                    || match prev.take() {
                        Some(p) => {
                            self.append_prepared(p, &mut parts, &mut summary, progress, &pool_tx)
                        }
                        None => Ok(WriteStats::default()),
                    },
                );
                stats += appended?;
                prev = Some(prepared?);
            }
            if let Some(p) = prev.take() {
                stats += self.append_prepared(p, &mut parts, &mut summary, progress, &pool_tx)?;
            }
            reader.join().expect("chunker thread panicked");
            Ok(())
        })?;

        Ok((parts, summary, stats))
    }

    /// Hash a batch in parallel, decide which chunks are new, compress those in parallel.
    fn prepare(
        &self,
        batch: Batch,
        claimed: &mut HashSet<ChunkId>,
    ) -> Result<Prepared, StoreError> {
        let level = self.0.config.zstd_level;
        let ids: Vec<(ChunkId, bool)> = batch
            .chunks
            .par_iter()
            .map(|r| {
                let c = &batch.data[r.clone()];
                (ChunkId::of(c), is_zero(c))
            })
            .collect();
        // New means: not zero, not claimed by this or an earlier batch, not in the index, not pending. The index
        // lookups run before the writer lock is taken: the appending stage needs that lock at the same time.
        let mut fresh: Vec<bool> = Vec::with_capacity(ids.len());
        for (id, zero) in &ids {
            self.note_chunk(id);
            fresh.push(
                !*zero && !claimed.contains(id) && !self.0.chunks.contains_key(id.as_bytes())?,
            );
        }
        {
            let w = self.0.writer.lock().expect("writer poisoned");
            for (new, (id, _)) in fresh.iter_mut().zip(&ids) {
                // A repeat inside this batch is claimed by its first occurrence.
                *new = *new && !w.pending.contains_key(id) && claimed.insert(*id);
            }
        }
        let compressed = batch
            .chunks
            .par_iter()
            .zip(fresh.par_iter())
            .map(|(r, &new)| new.then(|| compress(&batch.data[r.clone()], level)))
            .collect();
        Ok(Prepared {
            batch,
            ids,
            compressed,
        })
    }

    /// Append a prepared batch's new chunks, extend the recipe, and hand the buffer back to the reader.
    fn append_prepared(
        &self,
        p: Prepared,
        parts: &mut Vec<Part>,
        summary: &mut StreamSummary,
        progress: &dyn Progress,
        pool: &mpsc::Sender<Vec<u8>>,
    ) -> Result<WriteStats, StoreError> {
        // The batches' chunks tile the stream in order, so this is the whole stream, once.
        let span = &p.batch.data[..p.batch.chunks.last().map_or(0, |c| c.end)];
        if summary.hash {
            summary.sha.update(span);
            summary.blake.update(span);
        }
        summary.len += span.len() as u64;
        let mut stats = WriteStats::default();
        let mut w = self.0.writer.lock().expect("writer poisoned");
        for ((range, (id, zero)), comp) in p.batch.chunks.iter().zip(&p.ids).zip(p.compressed) {
            let len = range.len() as u64;
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
                len: len as u32,
            });
            if let Some(comp) = comp {
                let comp = comp.map_err(|e| StoreError::Corrupt(format!("zstd: {e}")))?;
                stats.chunks_new += 1;
                stats.stored_bytes_new += self.append(&mut w, id, len as u32, &comp)?;
            }
        }
        let auto = w.pending_bytes >= AUTO_COMMIT_BYTES;
        drop(w);
        let _ = pool.send(p.batch.data);
        if auto {
            self.commit_chunks()?;
        }
        Ok(stats)
    }

    /// Store chunks that arrived already verified (from a bundle or a peer): `(id, raw length, zstd bytes)`.
    /// Chunks held or pending are skipped, so a chunk is never stored twice. Durable at the next commit (or at
    /// the automatic one every 128 MiB).
    pub fn put_chunks<'a>(
        &self,
        chunks: impl IntoIterator<Item = (ChunkId, u32, &'a [u8])>,
    ) -> Result<WriteStats, StoreError> {
        let mut stats = WriteStats::default();
        let mut w = self.0.writer.lock().expect("writer poisoned");
        for (id, raw_len, comp) in chunks {
            stats.chunks += 1;
            self.note_chunk(&id);
            if w.pending.contains_key(&id) || self.0.chunks.contains_key(id.as_bytes())? {
                continue;
            }
            stats.chunks_new += 1;
            stats.stored_bytes_new += self.append(&mut w, &id, raw_len, comp)?;
        }
        let auto = w.pending_bytes >= AUTO_COMMIT_BYTES;
        drop(w);
        if auto {
            self.commit_chunks()?;
        }
        Ok(stats)
    }

    /// Compress a chunk the way this store stores them, appending to `out` (for callers of
    /// [`Store::put_chunks`]); returns the compressed length.
    pub fn compress_chunk_into(&self, data: &[u8], out: &mut Vec<u8>) -> Result<usize, StoreError> {
        let start = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        with_compressor(self.0.config.zstd_level, |c| {
            let mut cursor = std::io::Cursor::new(&mut *out);
            cursor.set_position(start as u64);
            c.compress_to_buffer(data, &mut cursor)
        })
        .map_err(|e| StoreError::Corrupt(format!("zstd: {e}")))
    }

    /// Queue a recipe (given as its encoded bytes, named by their BLAKE3) and a blob record, written at the next
    /// commit after the chunks committed before them.
    pub(crate) fn queue_meta(&self, recipes: Vec<(RecipeId, Vec<u8>)>, blobs: Vec<BlobRef>) {
        let mut w = self.0.writer.lock().expect("writer poisoned");
        w.pending_recipes.extend(recipes);
        w.pending_blobs.extend(blobs);
    }

    /// Append one record to the open pack (opening or rolling over as needed).
    fn append(
        &self,
        w: &mut PackWriter,
        id: &ChunkId,
        raw_len: u32,
        comp: &[u8],
    ) -> Result<u64, StoreError> {
        self.note_chunk(id);
        if w.open.is_none() {
            w.open = Some(self.open_pack_for_append(std::mem::take(&mut w.fresh))?);
        }
        let open = w.open.as_mut().expect("opened above");
        // Flushed before this record joins, so a flush that fails (a full disk) leaves the buffer no larger.
        if open.buf.len() >= FLUSH_BYTES {
            open.flush_buf(self)?;
        }
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
        let cost = packs::HEADER_LEN + comp.len() as u64;
        w.pending.insert(*id, loc);
        w.pending_bytes += cost;
        Ok(cost)
    }

    /// The newest pack if it has room (and `fresh` is not asked for), else a new one.
    fn open_pack_for_append(&self, fresh: bool) -> Result<OpenPack, StoreError> {
        let dir = &self.0.packs_dir;
        let list = packs::list(dir).map_err(StoreError::io(dir))?;
        let target = self.0.config.pack_target_bytes;
        if let Some(&n) = list.last().filter(|_| !fresh) {
            let committed = self.pack_committed(n)?;
            if committed < target {
                let path = packs::pack_path(dir, n);
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(StoreError::io(&path))?;
                // Recovery on open cut the file back to its committed length.
                return Ok(OpenPack::new(n, file, committed));
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
        Ok(OpenPack::new(n, file, 0))
    }

    /// Append a chunk that is held already, as stored, so the index moves to the new record at the next commit
    /// (compaction). Returns the bytes appended.
    pub(crate) fn relocate(
        &self,
        id: &ChunkId,
        raw_len: u32,
        comp: &[u8],
    ) -> Result<u64, StoreError> {
        let mut w = self.0.writer.lock().expect("writer poisoned");
        if w.pending.contains_key(id) {
            return Ok(0);
        }
        let cost = self.append(&mut w, id, raw_len, comp)?;
        let auto = w.pending_bytes >= AUTO_COMMIT_BYTES;
        drop(w);
        if auto {
            self.commit_chunks()?;
        }
        Ok(cost)
    }

    /// Commit and close the open pack so the next append starts a new one; returns the highest pack number
    /// that exists now (0 if none), every one of which is closed to appends from here on.
    pub(crate) fn roll_writer(&self) -> Result<u32, StoreError> {
        let mut w = self.0.writer.lock().expect("writer poisoned");
        self.commit_locked(&mut w)?;
        w.open = None;
        w.fresh = true;
        let dir = &self.0.packs_dir;
        Ok(packs::list(dir)
            .map_err(StoreError::io(dir))?
            .last()
            .copied()
            .unwrap_or(0))
    }

    /// Make appended chunks durable and indexed (recipes and blob records stay pending).
    pub(crate) fn commit_chunks(&self) -> Result<(), StoreError> {
        let mut w = self.0.writer.lock().expect("writer poisoned");
        self.commit_locked(&mut w)
    }

    /// Make everything written so far durable and visible: pack bytes, then chunk index, then recipes and blobs.
    pub fn commit(&self) -> Result<(), StoreError> {
        let mut w = self.0.writer.lock().expect("writer poisoned");
        self.commit_locked(&mut w)?;
        let recipes = std::mem::take(&mut w.pending_recipes);
        let blobs = std::mem::take(&mut w.pending_blobs);
        let _meta = self.0.meta.lock().expect("meta lock poisoned");
        drop(w);
        if recipes.is_empty() && blobs.is_empty() {
            return Ok(());
        }
        // Single inserts, not one sled batch: a batch holds sled's global write lock for its whole length,
        // stopping every reader (the chunk checks of a sync in progress, peers being served) meanwhile.
        for (id, bytes) in recipes {
            self.0.recipes.insert(id.as_bytes(), bytes)?;
        }
        for b in blobs {
            self.0
                .blobs
                .insert(b.id.as_bytes(), blob_value(&b).as_slice())?;
            self.0.sha256.insert(b.sha256.0 .0, b.id.as_bytes())?;
        }
        self.0.db.flush()?;
        Ok(())
    }

    /// Pack bytes, then the chunk index, made durable.
    fn commit_locked(&self, w: &mut PackWriter) -> Result<(), StoreError> {
        if let Some(open) = w.open.as_mut() {
            open.flush_buf(self)?;
            let path = packs::pack_path(&self.0.packs_dir, open.n);
            open.file.sync_data().map_err(StoreError::io(&path))?;
            // Single inserts, the pack's committed length last, not one sled batch: sled 0.34 keeps memory in
            // proportion to the batch's length times the keys it holds, and does not give it back (measured:
            // 1.5 M chunk keys committed 20,000 to a batch grew a process to 6.6 GiB, one by one to 165 MiB).
            // No batch is needed for safety: the pack bytes are durable before any key names them, so no key can
            // point at bytes a crash lost; keys whose length update was lost are found again by `recover`, which
            // scans the pack's tail from the committed length; and a key lost while its length was kept (sled
            // writes its log in order, so this should not happen) leaves only a chunk to be stored again.
            for (id, loc) in &w.pending {
                self.0
                    .chunks
                    .insert(id.as_bytes().as_slice(), loc.to_bytes().as_slice())?;
            }
            self.0.chunks.insert(
                pack_len_key(open.n).as_slice(),
                open.len.to_le_bytes().as_slice(),
            )?;
            w.pending.clear();
            w.pending_bytes = 0;
            if open.len >= self.0.config.pack_target_bytes {
                w.open = None;
            }
        }
        self.0.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::is_zero;
    use crate::progress::NoProgress;
    use crate::store::Store;

    /// The same gzip bytes stored as they are after being stored decomposed (two recipes for one blob): the
    /// blob keeps its first record, so what named it stays whole, committed or not.
    #[test]
    fn a_blob_stored_again_keeps_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("s"), Default::default()).unwrap();
        let gz = gzip_of(200_000, 7);
        let first = store
            .ingest_blob(&gz[..], "g", None, &NoProgress)
            .unwrap()
            .blob;
        let queued = store
            .ingest_stream(&gz[..], "g", None, &NoProgress)
            .unwrap()
            .blob;
        assert_eq!(queued, first);
        store.commit().unwrap();
        let again = store
            .ingest_stream(&gz[..], "g", None, &NoProgress)
            .unwrap()
            .blob;
        assert_eq!(again, first);
        store.commit().unwrap();
        assert!(store.recipe_of(&first).unwrap().is_gzip());
        assert!(store.blob_complete(&first).unwrap());
        assert_eq!(store.read_blob(&first).unwrap(), gz);
    }

    /// `len` pseudo-random compressible bytes (`seed`), gzipped at level 6.
    fn gzip_of(len: usize, seed: u64) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        std::io::Write::write_all(&mut gz, &ferry_formats::testdata::random(len, seed)).unwrap();
        gz.finish().unwrap()
    }

    /// A release whose blob record came to name another recipe of the same bytes (as accepting another node's
    /// release does) stays whole: complete, kept by the collector, read back exact, clean in fsck.
    #[test]
    fn a_release_keeps_the_recipe_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("s"), Default::default()).unwrap();
        let gz = gzip_of(300_000, 9);
        let path = dir.path().join("f.gz");
        std::fs::write(&path, &gz).unwrap();
        let add = |v: &str| {
            crate::ingest::add(
                &store,
                "a",
                v,
                &[crate::ingest::Source::File(path.clone())],
                &Default::default(),
                &NoProgress,
            )
            .unwrap()
        };
        add("1");
        let named = store.release("a", "1").unwrap().blobs()[0];
        assert!(store.recipe_of(&named).unwrap().is_gzip());
        // The same bytes chunked as they are: another recipe, and the record now names it.
        let params = store.0.config.chunking;
        let (parts, _, _) = store
            .ingest_parts(
                |tx, pool| super::feed(&gz[..], &params, tx, pool),
                false,
                "g",
                &NoProgress,
            )
            .unwrap();
        let (id, bytes) = ferry_protocol::Recipe::concat(parts).encode_with_id();
        let other = ferry_protocol::BlobRef {
            recipe: id,
            ..named
        };
        store.queue_meta(vec![(id, bytes)], vec![other]);
        store.commit().unwrap();
        assert_eq!(store.blob(&named.id).unwrap(), Some(other));

        assert!(store.blob_complete(&named).unwrap());
        assert!(store.blob_complete(&other).unwrap());
        store.gc(&Default::default()).unwrap();
        assert_eq!(store.read_blob(&named).unwrap(), gz);
        assert_eq!(store.read_blob(&other).unwrap(), gz);
        let report = store.fsck(&NoProgress).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

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
