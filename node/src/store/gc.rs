//! Retention and garbage collection: which releases a store keeps, and taking back the space of the rest while
//! the node goes on serving and syncing.
//!
//! **Roots.** The caller names the releases to remove (retention policy — pins, the newest versions of each name
//! — lives above the store, in [`crate::retention`]); every other release, and everything a client pushed to
//! the registry, is a root.
//!
//! **Marking and sweeping.** From the kept releases and the pushed blobs, the collector marks every blob record,
//! recipe and chunk they need, then removes the other index entries: dropped releases, then blob records,
//! recipes and chunks nothing marked names. Work already running must not lose what it relies on, so:
//! - every operation that adds content or reads a blob ([`Store::begin`]: ingest, import, export, a network
//!   sync, a push, an open [`super::BlobReader`]) is counted; the collector first turns on *noting* and then
//!   waits until every operation that began before that moment has ended;
//! - while noting is on, each lookup that finds a chunk, recipe or blob record records its id first, and the
//!   sweep spares everything noted (with, for a blob or recipe, everything it needs). Noting comes before the
//!   lookup and the sweep checks the notes under the same lock as it deletes, so a lookup either finds an
//!   entry the sweep will spare or finds nothing and fetches or writes it again.
//!
//! **Compaction.** Removed chunks leave dead records in packs. The writer is first moved to a new pack; then
//! every older pack with at least [`COMPACT_DEAD_FRACTION`] dead bytes has its live records (those the index
//! still points at) verified and appended, as stored, through the writer, and once that is committed the old
//! pack is deleted. A reader that looked a chunk up just before it moved finds the pack gone or the record
//! changed and looks again ([`Store::read_chunk`]). A crash part-way leaves the old pack whole, its records
//! now dead duplicates the next collection removes.

use super::{packs, Store, StoreError};
use ferry_protocol::{BlobId, ChunkId, Object, Recipe, RecipeId};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A pack is rewritten once this share of its bytes is dead.
pub const COMPACT_DEAD_FRACTION: f64 = 0.02;

/// Index entries removed per hold of the notes lock, so lookups are never stalled for long.
const SWEEP_BATCH: usize = 2048;

/// Operations running, so a collection can wait for those that began before it.
#[derive(Default)]
pub(crate) struct Ops {
    next: u64,
    /// Operation id → (the collection epoch it began in, what it is).
    running: HashMap<u64, (u64, &'static str)>,
    /// Bumped when a collection turns noting on.
    epoch: u64,
}

/// What was looked up while noting is on: each id once, however often it is looked up (64 clients pulling the
/// same blob while the collector waits for a long operation add nothing after their first lookup), so the notes
/// never outgrow the store's own ids. `blobs` and `recipes` keep the order ids were first noted, for
/// [`Store::absorb`]'s cursor.
#[derive(Default)]
pub(crate) struct Notes {
    chunks: HashSet<ChunkId>,
    blobs: Vec<BlobId>,
    recipes: Vec<RecipeId>,
    noted_blobs: HashSet<BlobId>,
    noted_recipes: HashSet<RecipeId>,
}

/// A running operation; dropping it ends it.
pub struct OpGuard {
    store: Store,
    id: u64,
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        let mut ops = self.store.0.ops.lock().expect("ops poisoned");
        ops.running.remove(&self.id);
        drop(ops);
        self.store.0.ops_done.notify_all();
    }
}

/// [`Store::gc`] options.
#[derive(Clone, Debug, Default)]
pub struct GcOptions {
    /// Work out and report what would go, change nothing.
    pub dry_run: bool,
    /// The releases to remove, `name@version`; every other release is a root, with everything pushed (so one
    /// published while the caller decided is kept). Retention policy — pins and the newest versions — is
    /// decided above the store ([`crate::retention`]).
    pub remove: Vec<String>,
}

/// What a collection did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Releases kept, `name@version`.
    pub kept: Vec<String>,
    /// Releases removed.
    pub removed: Vec<String>,
    /// Blob records removed.
    pub blobs_removed: u64,
    /// Recipes removed.
    pub recipes_removed: u64,
    /// Chunks removed.
    pub chunks_removed: u64,
    /// Pack bytes those chunks occupied.
    pub chunk_bytes_removed: u64,
    /// Entries spared only because work running during the collection looked them up.
    pub spared: u64,
    /// Packs rewritten without their dead records.
    pub packs_compacted: u64,
    /// Packs deleted (rewritten or wholly dead).
    pub packs_deleted: u64,
    /// Live bytes moved by compaction.
    pub bytes_moved: u64,
    /// Cached re-created blobs removed.
    pub cache_files_removed: u64,
    /// Operations waited for before sweeping.
    pub waited_for: u64,
    /// Disk use before.
    pub before: super::DiskUsage,
    /// Disk use after.
    pub after: super::DiskUsage,
    /// `before.total - after.total` (0 if the store grew meanwhile).
    pub reclaimed_bytes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Collections run since the store was opened (for `/metrics` and the status page).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct GcTotals {
    /// Collections that changed something or could have (dry runs not counted).
    pub runs: u64,
    /// Releases removed.
    pub releases_removed: u64,
    /// Chunk bytes removed from the index (pack bytes freed once compacted).
    pub chunk_bytes_removed: u64,
    /// Disk bytes reclaimed, by the stores' before/after totals.
    pub reclaimed_bytes: u64,
    /// When the last one ended, seconds since the Unix epoch (0: none yet).
    pub last_at: u64,
}

/// What is kept: blob ids, recipes and chunks.
#[derive(Default)]
struct Live {
    blobs: HashSet<BlobId>,
    recipes: HashSet<RecipeId>,
    chunks: HashSet<ChunkId>,
}

impl Live {
    fn add_recipe(&mut self, recipe: &Recipe) {
        self.chunks.extend(recipe.chunks().map(|(id, _)| id));
    }
}

impl Store {
    /// Collections run since the store was opened.
    pub fn gc_totals(&self) -> GcTotals {
        *self.0.gc_totals.lock().expect("gc totals poisoned")
    }

    /// Count an operation that adds content or reads blobs until the guard drops (see the module docs).
    pub fn begin(&self, what: &'static str) -> OpGuard {
        let mut ops = self.0.ops.lock().expect("ops poisoned");
        ops.next += 1;
        let id = ops.next;
        let epoch = ops.epoch;
        ops.running.insert(id, (epoch, what));
        OpGuard {
            store: self.clone(),
            id,
        }
    }

    /// Record that `id` was looked up, if a collection is sweeping. Call before the lookup.
    pub(crate) fn note_chunk(&self, id: &ChunkId) {
        if self.0.noting.load(Ordering::Acquire) {
            if let Some(n) = self.0.notes.lock().expect("notes poisoned").as_mut() {
                n.chunks.insert(*id);
            }
        }
    }

    pub(crate) fn note_blob(&self, id: &BlobId) {
        if self.0.noting.load(Ordering::Acquire) {
            if let Some(n) = self.0.notes.lock().expect("notes poisoned").as_mut() {
                if n.noted_blobs.insert(*id) {
                    n.blobs.push(*id);
                }
            }
        }
    }

    pub(crate) fn note_recipe(&self, id: &RecipeId) {
        if self.0.noting.load(Ordering::Acquire) {
            if let Some(n) = self.0.notes.lock().expect("notes poisoned").as_mut() {
                if n.noted_recipes.insert(*id) {
                    n.recipes.push(*id);
                }
            }
        }
    }

    /// Collect garbage: drop the releases in `opts.remove`, sweep what nothing kept or pushed needs, compact
    /// packs. Serving, syncing and ingest go on meanwhile; one collection runs at a time.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport, StoreError> {
        let _one = self.0.gc.lock().expect("gc lock poisoned");
        let started = Instant::now();
        let mut report = GcReport {
            dry_run: opts.dry_run,
            before: self.disk_usage(),
            ..GcReport::default()
        };
        if !opts.dry_run {
            report.waited_for = self.start_noting();
        }
        let result = self.collect(opts, &mut report);
        self.stop_noting();
        result?;
        if !opts.dry_run {
            self.compact(&mut report)?;
        }
        report.after = self.disk_usage();
        report.reclaimed_bytes = report.before.total.saturating_sub(report.after.total);
        report.seconds = started.elapsed().as_secs_f64();
        if !opts.dry_run {
            let mut t = self.0.gc_totals.lock().expect("gc totals poisoned");
            t.runs += 1;
            t.releases_removed += report.removed.len() as u64;
            t.chunk_bytes_removed += report.chunk_bytes_removed;
            t.reclaimed_bytes += report.reclaimed_bytes;
            t.last_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            drop(t);
            if !report.removed.is_empty() || report.chunks_removed > 0 {
                self.audit_or_warn(
                    "gc",
                    report.removed.clone(),
                    serde_json::json!({
                        "kept": report.kept.len(),
                        "blobs_removed": report.blobs_removed,
                        "chunks_removed": report.chunks_removed,
                        "chunk_bytes_removed": report.chunk_bytes_removed,
                        "reclaimed_bytes": report.reclaimed_bytes,
                    }),
                );
            }
        }
        tracing::info!(
            removed = report.removed.len(),
            chunks = report.chunks_removed,
            reclaimed = report.reclaimed_bytes,
            dry_run = opts.dry_run,
            "garbage collection done"
        );
        Ok(report)
    }

    /// Turn noting on and wait for every operation that began before; returns how many there were.
    fn start_noting(&self) -> u64 {
        *self.0.notes.lock().expect("notes poisoned") = Some(Notes::default());
        let mut ops = self.0.ops.lock().expect("ops poisoned");
        self.0.noting.store(true, Ordering::Release);
        ops.epoch += 1;
        let epoch = ops.epoch;
        let before = |ops: &Ops| ops.running.values().filter(|(e, _)| *e < epoch).count() as u64;
        let waited = before(&ops);
        let mut last_log = Instant::now();
        while before(&ops) > 0 {
            if last_log.elapsed() > Duration::from_secs(10) {
                let what: Vec<_> = ops
                    .running
                    .values()
                    .filter(|(e, _)| *e < epoch)
                    .map(|(_, w)| *w)
                    .collect();
                tracing::info!(?what, "garbage collection waiting for work in flight");
                last_log = Instant::now();
            }
            ops = self
                .0
                .ops_done
                .wait_timeout(ops, Duration::from_secs(1))
                .expect("ops poisoned")
                .0;
        }
        waited
    }

    fn stop_noting(&self) {
        self.0.noting.store(false, Ordering::Release);
        *self.0.notes.lock().expect("notes poisoned") = None;
    }

    /// Mark from the roots and sweep (or, dry, count) the rest of the index.
    fn collect(&self, opts: &GcOptions, report: &mut GcReport) -> Result<(), StoreError> {
        let remove: HashSet<&str> = opts.remove.iter().map(String::as_str).collect();
        let (mut kept, mut dropped) = (Vec::new(), Vec::new());
        for item in self.0.releases.iter().keys() {
            let id = String::from_utf8_lossy(&item?).into_owned();
            if remove.contains(id.as_str()) {
                dropped.push(id);
            } else {
                kept.push(id);
            }
        }
        let mut live = Live::default();
        for id in &kept {
            let Some(signed) = self.signed_release(id)? else {
                continue;
            };
            for blob in signed.manifest_unverified()?.blobs() {
                self.mark_blob(&mut live, &blob.id)?;
                // The recipe the release names, which need not be the one the blob's record names (another
                // node's recipe for the same bytes, accepted with its release).
                self.mark_recipe(&mut live, &blob.recipe)?;
            }
        }
        let (_, pushed) = self.pushed()?;
        for p in pushed {
            self.mark_blob(&mut live, &p.blob.id)?;
            self.mark_recipe(&mut live, &p.blob.recipe)?;
        }
        report.kept = kept;
        report.removed = dropped;
        if !opts.dry_run {
            for id in &report.removed {
                self.0.releases.remove(id.as_bytes())?;
            }
            self.0.db.flush()?;
            self.bump_generation();
        }
        let mut absorbed = (0, 0);

        // Blob records (and their sha256 entries).
        let dead: Vec<(BlobId, [u8; 32])> = self
            .0
            .blobs
            .iter()
            .filter_map(|item| {
                let (k, v) = item.ok()?;
                let id = BlobId::from_bytes(k.as_ref().try_into().ok()?);
                let sha: [u8; 32] = v.get(..32)?.try_into().ok()?;
                (!live.blobs.contains(&id)).then_some((id, sha))
            })
            .collect();
        for batch in dead.chunks(SWEEP_BATCH) {
            let notes = self.0.notes.lock().expect("notes poisoned");
            self.absorb(&mut live, notes.as_ref(), &mut absorbed)?;
            for (id, sha) in batch {
                if live.blobs.contains(id) {
                    report.spared += 1;
                    continue;
                }
                report.blobs_removed += 1;
                if !opts.dry_run {
                    self.0.blobs.remove(id.as_bytes())?;
                    if self.0.sha256.get(sha)?.as_deref() == Some(id.as_bytes().as_slice()) {
                        self.0.sha256.remove(sha)?;
                    }
                }
            }
        }

        // Recipes.
        let dead: Vec<RecipeId> = self
            .0
            .recipes
            .iter()
            .keys()
            .filter_map(|k| Some(RecipeId::from_bytes(k.ok()?.as_ref().try_into().ok()?)))
            .filter(|id| !live.recipes.contains(id))
            .collect();
        for batch in dead.chunks(SWEEP_BATCH) {
            let notes = self.0.notes.lock().expect("notes poisoned");
            self.absorb(&mut live, notes.as_ref(), &mut absorbed)?;
            for id in batch {
                if live.recipes.contains(id) {
                    report.spared += 1;
                    continue;
                }
                report.recipes_removed += 1;
                if !opts.dry_run {
                    self.0.recipes.remove(id.as_bytes())?;
                    self.0.sketches.remove(id.as_bytes())?;
                }
            }
        }

        // Chunks (the index also holds 5-byte pack-length keys, which are not chunks).
        let dead: Vec<(ChunkId, u64)> = self
            .0
            .chunks
            .iter()
            .filter_map(|item| {
                let (k, v) = item.ok()?;
                let id = ChunkId::from_bytes(k.as_ref().try_into().ok()?);
                let loc = packs::Location::from_bytes(&v)?;
                (!live.chunks.contains(&id))
                    .then_some((id, packs::HEADER_LEN + u64::from(loc.comp_len)))
            })
            .collect();
        for batch in dead.chunks(SWEEP_BATCH) {
            let notes = self.0.notes.lock().expect("notes poisoned");
            self.absorb(&mut live, notes.as_ref(), &mut absorbed)?;
            for (id, bytes) in batch {
                if live.chunks.contains(id) || notes.as_ref().is_some_and(|n| n.chunks.contains(id))
                {
                    report.spared += 1;
                    continue;
                }
                report.chunks_removed += 1;
                report.chunk_bytes_removed += bytes;
                if !opts.dry_run {
                    self.0.chunks.remove(id.as_bytes())?;
                }
            }
        }
        if opts.dry_run {
            return Ok(());
        }
        self.0.db.flush()?;

        // What no longer names a stored blob: the completeness memo, cached re-creations.
        let notes = self.0.notes.lock().expect("notes poisoned");
        self.absorb(&mut live, notes.as_ref(), &mut absorbed)?;
        drop(notes);
        self.0
            .complete
            .lock()
            .expect("poisoned")
            .retain(|b| live.blobs.contains(&b.id));
        let cache = self.root().join("cache").join("gzip");
        if let Ok(entries) = std::fs::read_dir(&cache) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name();
                let Some(id) = name.to_str().and_then(|n| n.parse::<BlobId>().ok()) else {
                    continue;
                };
                if !live.blobs.contains(&id) && std::fs::remove_file(e.path()).is_ok() {
                    report.cache_files_removed += 1;
                }
            }
        }
        Ok(())
    }

    /// Mark a blob, its recipe and its chunks (as far as they are held).
    fn mark_blob(&self, live: &mut Live, id: &BlobId) -> Result<(), StoreError> {
        if !live.blobs.insert(*id) {
            return Ok(());
        }
        let Some(v) = self.0.blobs.get(id.as_bytes())? else {
            return Ok(());
        };
        let Some(blob) = super::blob_from_value(*id, &v) else {
            return Ok(());
        };
        self.mark_recipe(live, &blob.recipe)
    }

    fn mark_recipe(&self, live: &mut Live, id: &RecipeId) -> Result<(), StoreError> {
        if !live.recipes.insert(*id) {
            return Ok(());
        }
        if let Some(bytes) = self.0.recipes.get(id.as_bytes())? {
            live.add_recipe(&Recipe::decode(&bytes)?);
        }
        Ok(())
    }

    /// Mark what lookups noted since the last call (`cursor`: blobs and recipes already taken).
    fn absorb(
        &self,
        live: &mut Live,
        notes: Option<&Notes>,
        cursor: &mut (usize, usize),
    ) -> Result<(), StoreError> {
        let Some(notes) = notes else {
            return Ok(());
        };
        for id in &notes.blobs[cursor.0..] {
            self.mark_blob(live, id)?;
        }
        for id in &notes.recipes[cursor.1..] {
            self.mark_recipe(live, id)?;
        }
        *cursor = (notes.blobs.len(), notes.recipes.len());
        Ok(())
    }

    /// Rewrite packs with enough dead records; delete wholly dead ones.
    fn compact(&self, report: &mut GcReport) -> Result<(), StoreError> {
        let dir = &self.0.packs_dir;
        // Every pack that exists now is closed to the writer from here on.
        let closed = self.roll_writer()?;
        let mut live_bytes: HashMap<u32, u64> = HashMap::new();
        for item in self.0.chunks.iter() {
            let (k, v) = item?;
            if k.len() != 32 {
                continue;
            }
            if let Some(loc) = packs::Location::from_bytes(&v) {
                *live_bytes.entry(loc.pack).or_default() += loc.end() - loc.offset;
            }
        }
        for n in packs::list(dir).map_err(StoreError::io(dir))? {
            if n > closed {
                continue;
            }
            let len = self.pack_committed(n)?;
            let live = live_bytes.get(&n).copied().unwrap_or(0);
            let dead = len.saturating_sub(live);
            if live > 0 && (dead as f64) < COMPACT_DEAD_FRACTION * len as f64 {
                continue;
            }
            if live > 0 {
                report.bytes_moved += self.relocate_live(n)?;
                report.packs_compacted += 1;
            }
            self.delete_pack(n)?;
            report.packs_deleted += 1;
        }
        Ok(())
    }

    /// Append pack `n`'s live records through the writer and commit them; returns the bytes moved.
    fn relocate_live(&self, n: u32) -> Result<u64, StoreError> {
        let path = packs::pack_path(&self.0.packs_dir, n);
        let file = std::fs::File::open(&path).map_err(StoreError::io(&path))?;
        let mut moved = 0u64;
        let mut failure = None;
        let mut payload = Vec::new();
        let end = self.pack_committed(n)?;
        packs::scan(&file, n, 0, false, |s| {
            if failure.is_some() || s.loc.offset >= end {
                return;
            }
            let r = (|| -> Result<(), StoreError> {
                if self.chunk_location(&s.id)? != Some(s.loc) {
                    return Ok(());
                }
                let record = packs::read_stored(&file, &s.loc, &s.id)
                    .map_err(|e| self.record_error(&s.loc, e))?;
                let body = &record[packs::HEADER_LEN as usize..];
                let raw = packs::decompress(body, s.loc.raw_len).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "{}: chunk {} at offset {} does not decompress: {e}",
                        path.display(),
                        s.id,
                        s.loc.offset
                    ))
                })?;
                if ChunkId::of(&raw) != s.id {
                    return Err(StoreError::Corrupt(format!(
                        "{}: chunk {} at offset {} does not match its hash; not moving it",
                        path.display(),
                        s.id,
                        s.loc.offset
                    )));
                }
                payload.clear();
                payload.extend_from_slice(body);
                moved += self.relocate(&s.id, s.loc.raw_len, &payload)?;
                Ok(())
            })();
            if let Err(e) = r {
                failure = Some(e);
            }
        })
        .map_err(StoreError::io(&path))?;
        if let Some(e) = failure {
            return Err(e);
        }
        self.commit_chunks()?;
        Ok(moved)
    }

    /// Remove pack `n`: its file, its cached handle and its committed length.
    fn delete_pack(&self, n: u32) -> Result<(), StoreError> {
        let dir = &self.0.packs_dir;
        let path = packs::pack_path(dir, n);
        self.0.files.lock().expect("pack files poisoned").remove(&n);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&path)(e)),
        }
        self.0.chunks.remove(super::pack_len_key(n))?;
        self.0.db.flush()?;
        super::sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{add, AddOptions, Source};
    use crate::progress::NoProgress;
    use std::io::Read;

    use ferry_formats::testdata::random;

    fn add_file(store: &Store, dir: &std::path::Path, release: (&str, &str), bytes: &[u8]) {
        let path = dir.join(format!("{}-{}.bin", release.0, release.1));
        std::fs::write(&path, bytes).unwrap();
        add(
            store,
            release.0,
            release.1,
            &[Source::File(path)],
            &AddOptions::default(),
            &NoProgress,
        )
        .unwrap();
    }

    fn only_blob(store: &Store, name: &str, version: &str) -> ferry_protocol::BlobRef {
        store.release(name, version).unwrap().blobs()[0]
    }

    #[test]
    fn lookups_while_noting_are_noted_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("s"), Default::default()).unwrap();
        *store.0.notes.lock().unwrap() = Some(Notes::default());
        store.0.noting.store(true, Ordering::Release);
        let (a, b) = (BlobId::from_bytes([1; 32]), BlobId::from_bytes([2; 32]));
        let r = RecipeId::from_bytes([3; 32]);
        for _ in 0..10_000 {
            store.note_blob(&b);
            store.note_blob(&a);
            store.note_recipe(&r);
        }
        {
            let notes = store.0.notes.lock().unwrap();
            let n = notes.as_ref().unwrap();
            assert_eq!(n.blobs, [b, a], "first-noted order, each once");
            assert_eq!(n.recipes, [r]);
        }
        store.stop_noting();
        store.note_blob(&a);
        assert!(store.0.notes.lock().unwrap().is_none());
    }

    #[test]
    fn a_reader_open_before_the_collection_is_waited_for_and_reads_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("s"), Default::default()).unwrap();
        let old = random(3 << 20, 1);
        add_file(&store, dir.path(), ("a", "1"), &old);
        add_file(&store, dir.path(), ("a", "2"), &random(1 << 20, 2));
        let blob = only_blob(&store, "a", "1");
        let mut reader = store.open_blob(&blob).unwrap();
        let mut head = vec![0u8; 1000];
        reader.read_exact(&mut head).unwrap();

        let (tx, rx) = std::sync::mpsc::channel();
        let collector = {
            let store = store.clone();
            std::thread::spawn(move || {
                let r = store.gc(&GcOptions {
                    remove: vec!["a@1".into()],
                    ..Default::default()
                });
                tx.send(()).unwrap();
                r
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the collection went ahead while a reader of what it drops was open"
        );
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        head.extend(rest);
        assert!(head == old, "the open reader's bytes changed");
        drop(reader);
        let report = collector.join().unwrap().unwrap();
        assert_eq!(report.removed, ["a@1"]);
        assert_eq!(report.waited_for, 1);
        assert!(store.blob(&blob.id).unwrap().is_none());
        assert!(store.fsck(&NoProgress).unwrap().ok);
    }

    #[test]
    fn ingest_that_reuses_dropped_chunks_during_collections_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("s"), Default::default()).unwrap();
        let shared = random(4 << 20, 7);
        add_file(&store, dir.path(), ("old", "1"), &shared);
        add_file(&store, dir.path(), ("old", "2"), &random(64 << 10, 8));
        // Collections drop old@1 and run back to back while new releases, each mostly old@1's bytes, arrive.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let collector = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut runs = 0;
                while !stop.load(Ordering::Acquire) {
                    let opts = GcOptions {
                        remove: crate::retention::plan(&store, 1).unwrap().remove,
                        ..Default::default()
                    };
                    store.gc(&opts).unwrap();
                    runs += 1;
                }
                runs
            })
        };
        let mut wanted = Vec::new();
        for i in 0..6u64 {
            let mut bytes = shared.clone();
            bytes.extend(random(32 << 10, 100 + i));
            add_file(&store, dir.path(), (&format!("new{i}"), "1"), &bytes);
            wanted.push((format!("new{i}"), bytes));
        }
        stop.store(true, Ordering::Release);
        assert!(collector.join().unwrap() >= 1);
        for (name, bytes) in wanted {
            let blob = only_blob(&store, &name, "1");
            assert!(
                store.read_blob(&blob).unwrap() == bytes,
                "{name} is not whole"
            );
        }
        let fsck = store.fsck(&NoProgress).unwrap();
        assert!(fsck.ok, "{:?}", fsck.problems);
    }

    #[test]
    fn a_damaged_live_record_stops_compaction_naming_it_and_loses_nothing_else() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("s"), Default::default()).unwrap();
        add_file(&store, dir.path(), ("a", "1"), &random(2 << 20, 3));
        let kept = random(2 << 20, 4);
        add_file(&store, dir.path(), ("a", "2"), &kept);
        // Damage one payload byte of a chunk a@2 needs.
        let blob = only_blob(&store, "a", "2");
        let recipe = store.recipe_of(&blob).unwrap();
        let (victim, _) = recipe.chunks().nth(3).unwrap();
        let loc = store.chunk_location(&victim).unwrap().unwrap();
        let path = packs::pack_path(&store.0.packs_dir, loc.pack);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let at = loc.offset + packs::HEADER_LEN + u64::from(loc.comp_len) / 2;
        let mut b = [0u8; 1];
        std::fs::File::open(&path)
            .unwrap()
            .read_exact_at(&mut b, at)
            .unwrap();
        f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
        drop(f);

        let err = store
            .gc(&GcOptions {
                remove: vec!["a@1".into()],
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&path.display().to_string())
                && err.contains(&victim.to_string())
                && err.contains(&format!("offset {}", loc.offset)),
            "{err}"
        );
        // The sweep is done and the damaged pack is still there, every other chunk of a@2 readable from it.
        assert!(store.signed_release("a@1").unwrap().is_none());
        assert!(path.exists());
        assert_eq!(store.chunk_location(&victim).unwrap(), Some(loc));
        for (id, _) in recipe.chunks().filter(|(id, _)| *id != victim) {
            store.read_chunk(&id).unwrap();
        }
        let fsck = store.fsck(&NoProgress).unwrap();
        assert!(
            fsck.problems
                .iter()
                .any(|p| p.contains(&victim.to_string())),
            "{:?}",
            fsck.problems
        );
    }
}
