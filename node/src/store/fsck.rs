//! Re-verify everything a store holds: every pack record, every index entry, recipe, blob digest and release,
//! and the pushed index.

use super::{blob_from_value, packs, Store, StoreError};
use crate::progress::Progress;
use ferry_protocol::{BlobId, ChunkId, Object, Recipe, RecipeId, Sha256Digest, SignedRelease};
use serde::Serialize;
use sha2::Digest;
use std::collections::HashSet;
use std::io::Read;

/// What fsck found.
#[derive(Debug, Default, Serialize)]
pub struct FsckReport {
    /// Nothing is broken.
    pub ok: bool,
    /// Chunks in the index.
    pub chunks: u64,
    /// Pack files.
    pub packs: u64,
    /// Bytes in pack files.
    pub pack_bytes: u64,
    /// Recipes.
    pub recipes: u64,
    /// Blobs.
    pub blobs: u64,
    /// Of those, blobs stored as raw data and re-creation data (gzip), each re-created in full to check it.
    pub recreated_blobs: u64,
    /// Releases.
    pub releases: u64,
    /// Each problem, one line each, naming the file, offset or object.
    pub problems: Vec<String>,
}

impl Store {
    /// Verify the whole store. Problems are collected, not raised; only failure to read at all is an error.
    /// Waits for a garbage collection in progress (which deletes packs and index entries) to end first.
    pub fn fsck(&self, progress: &dyn Progress) -> Result<FsckReport, StoreError> {
        let _no_gc = self.0.gc.lock().expect("gc lock poisoned");
        let mut r = FsckReport::default();
        let dir = &self.0.packs_dir;

        // 1. Every pack record decompresses and hashes to its id; the file ends where the index says.
        let list = packs::list(dir).map_err(StoreError::io(dir))?;
        let total: u64 = list
            .iter()
            .filter_map(|&n| std::fs::metadata(packs::pack_path(dir, n)).ok())
            .map(|m| m.len())
            .sum();
        progress.start("verifying packs", Some(total));
        let mut good: HashSet<(u32, u64)> = HashSet::new();
        for &n in &list {
            let path = packs::pack_path(dir, n);
            let file = std::fs::File::open(&path).map_err(StoreError::io(&path))?;
            let len = file.metadata().map_err(StoreError::io(&path))?.len();
            r.packs += 1;
            r.pack_bytes += len;
            let committed = self.pack_committed(n)?;
            let end = packs::scan(&file, n, 0, true, |s| {
                progress.advance(packs::HEADER_LEN + u64::from(s.loc.comp_len));
                match s.verdict {
                    Ok(()) => {
                        good.insert((n, s.loc.offset));
                    }
                    Err(e) => r.problems.push(format!("{}: {e}", path.display())),
                }
            })
            .map_err(StoreError::io(&path))?;
            if end < len {
                r.problems.push(format!(
                    "{}: unreadable record header at offset {end} ({} bytes not scanned)",
                    path.display(),
                    len - end
                ));
            }
            if len < committed {
                r.problems.push(format!(
                    "{}: file is {len} bytes but {committed} were committed (truncated)",
                    path.display()
                ));
            }
        }
        progress.finish();

        // 2. Every index entry points at a good record of its chunk.
        let mut chunks: HashSet<ChunkId> = HashSet::new();
        for item in self.0.chunks.iter() {
            let (k, v) = item?;
            if k.len() != 32 {
                continue;
            }
            let id = ChunkId::from_bytes(k.as_ref().try_into().expect("32 bytes"));
            r.chunks += 1;
            match packs::Location::from_bytes(&v) {
                Some(loc) if good.contains(&(loc.pack, loc.offset)) => {
                    chunks.insert(id);
                }
                Some(loc) => r.problems.push(format!(
                    "chunk {id}: its record in {} at offset {} is damaged or missing",
                    packs::pack_path(dir, loc.pack).display(),
                    loc.offset
                )),
                None => r
                    .problems
                    .push(format!("chunk {id}: malformed index entry")),
            }
        }

        // 3. Recipes hash to their ids, decode, add up, and name only good chunks.
        let mut recipes: HashSet<RecipeId> = HashSet::new();
        for item in self.0.recipes.iter() {
            let (k, v) = item?;
            r.recipes += 1;
            let id = RecipeId::from_bytes(k.as_ref().try_into().unwrap_or([0; 32]));
            if RecipeId::of(&v) != id {
                r.problems
                    .push(format!("recipe {id}: bytes do not match its id"));
                continue;
            }
            match Recipe::decode(&v) {
                Ok(recipe) if recipe.is_consistent() => {
                    let missing = recipe.chunks().filter(|(c, _)| !chunks.contains(c)).count();
                    if missing > 0 {
                        r.problems.push(format!(
                            "recipe {id}: {missing} of its chunks are missing or damaged"
                        ));
                    } else {
                        recipes.insert(id);
                    }
                }
                Ok(_) => r
                    .problems
                    .push(format!("recipe {id}: parts do not add up to its size")),
                Err(e) => r.problems.push(format!("recipe {id}: {e}")),
            }
        }

        // 4. Blobs rebuild to their BLAKE3 and SHA-256.
        let blobs: Vec<_> = self
            .0
            .blobs
            .iter()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|(k, v)| {
                let id = BlobId::from_bytes(k.as_ref().try_into().ok()?);
                Some((id, blob_from_value(id, &v)))
            })
            .collect();
        progress.start(
            "verifying blobs",
            Some(blobs.iter().flat_map(|b| b.1).map(|b| b.size).sum()),
        );
        for (id, blob) in blobs {
            r.blobs += 1;
            let Some(blob) = blob else {
                r.problems.push(format!("blob {id}: malformed record"));
                continue;
            };
            if !recipes.contains(&blob.recipe) {
                r.problems.push(format!(
                    "blob {}: its recipe {} is missing or broken",
                    blob.sha256, blob.recipe
                ));
                continue;
            }
            match self.hash_blob(&blob, progress) {
                Ok((b3, sha, size, recreated)) => {
                    r.recreated_blobs += u64::from(recreated);
                    if b3 != blob.id || sha != blob.sha256 || size != blob.size {
                        r.problems.push(format!(
                            "blob {}: rebuilt content has digest {sha} and {size} bytes",
                            blob.sha256
                        ));
                    }
                }
                Err(e) => r.problems.push(format!("blob {}: {e}", blob.sha256)),
            }
        }
        progress.finish();

        // 5. Releases verify and name only good blobs.
        for item in self.0.releases.iter() {
            let (k, v) = item?;
            r.releases += 1;
            let name = String::from_utf8_lossy(&k).into_owned();
            let manifest = SignedRelease::decode(&v)
                .map_err(StoreError::from)
                .and_then(|s| self.verify_release(&name, &s))
                .map_err(|e| e.to_string());
            match manifest {
                Ok(m) => {
                    for b in m.blobs() {
                        if !matches!(self.blob_complete(&b), Ok(true)) {
                            r.problems
                                .push(format!("release {name}: blob {} is not stored", b.sha256));
                        }
                    }
                }
                Err(e) => r.problems.push(format!("release {name}: {e}")),
            }
        }
        // 6. What was pushed names only stored blobs, and every pushed tag its manifest.
        match self.pushed() {
            Ok((tags, blobs)) => {
                let mut held = HashSet::new();
                for p in blobs {
                    if !matches!(self.blob_complete(&p.blob), Ok(true)) {
                        r.problems.push(format!(
                            "pushed blob {} of repository {} is not stored",
                            p.blob.sha256, p.repository
                        ));
                    }
                    held.insert((p.repository, p.blob.sha256));
                }
                for t in tags {
                    if !held.contains(&(t.repository.clone(), t.digest)) {
                        r.problems.push(format!(
                            "pushed tag {}:{} names manifest {}, which the repository does not hold",
                            t.repository, t.tag, t.digest
                        ));
                    }
                }
            }
            Err(e) => r.problems.push(format!("pushed index: {e}")),
        }
        match self.pushed_malformed() {
            Ok(0) => {}
            Ok(n) => r
                .problems
                .push(format!("pushed index: {n} malformed entries")),
            Err(e) => r.problems.push(format!("pushed index: {e}")),
        }
        r.ok = r.problems.is_empty();
        Ok(r)
    }

    fn hash_blob(
        &self,
        blob: &ferry_protocol::BlobRef,
        progress: &dyn Progress,
    ) -> Result<(BlobId, Sha256Digest, u64, bool), StoreError> {
        let recipe = self.recipe_of(blob)?;
        if recipe.is_gzip() {
            // Re-created from the stored raw bytes and re-creation data, which checks the digests; then the
            // cached copy, if any, is checked too (and dropped when wrong: it is only a cache).
            self.recreate(blob, &recipe, std::io::sink())?;
            progress.advance(blob.size);
            if let Some(path) = self.cached_recreation(blob) {
                let got = hash_reader(
                    std::fs::File::open(&path).map_err(StoreError::io(&path))?,
                    &|_| {},
                )?;
                if got != (blob.id, blob.sha256, blob.size) {
                    let _ = std::fs::remove_file(&path);
                    return Err(StoreError::Corrupt(format!(
                        "its re-created copy {} has digest {} and {} bytes (removed)",
                        path.display(),
                        got.1,
                        got.2
                    )));
                }
            }
            return Ok((blob.id, blob.sha256, blob.size, true));
        }
        let (b3, sha, size) = hash_reader(self.open_blob(blob)?, &|n| progress.advance(n))?;
        Ok((b3, sha, size, false))
    }
}

/// BLAKE3, SHA-256 and length of everything `reader` gives.
fn hash_reader(
    mut reader: impl Read,
    advance: &dyn Fn(u64),
) -> Result<(BlobId, Sha256Digest, u64), StoreError> {
    let mut sha = sha2::Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        b3.update(&buf[..n]);
        size += n as u64;
        advance(n as u64);
    }
    Ok((
        BlobId::from_bytes(*b3.finalize().as_bytes()),
        Sha256Digest(ferry_protocol::Hash32(sha.finalize().into())),
        size,
    ))
}
