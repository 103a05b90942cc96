//! Importing a bundle: check the signatures and every name before touching the store, then stream the volumes —
//! each block checked against the signed index, each new chunk against its id — into the store, then record the
//! blobs whose content is whole, then make visible each release whose blobs are all present.
//!
//! Interrupted (kill -9, a medium pulled out) and run again, it reads the stream again but stores nothing twice:
//! chunks already held are neither hashed nor written. On damage, what was verified before it is kept, releases
//! completed by it are published, and the rest stay invisible.

use super::stream::{read_stream, verify_releases, Decoded, Pool};
use super::{Bundle, BundleError};
use crate::progress::Progress;
use crate::store::accept::Accepted;
use crate::store::{Store, StoreError, WriteStats};
use ferry_protocol::{BlobRef, ChunkId, RecipeId};
use ferry_protocol::{Object, Recipe};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

/// What an import did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ImportReport {
    /// The bundle directory.
    pub bundle: String,
    /// Releases made visible by this import.
    pub imported: Vec<String>,
    /// Releases the store held already.
    pub already_held: Vec<String>,
    /// Of `imported`, those older than the newest version of their name seen here (by the publisher's sequence):
    /// stored, never current unless pinned.
    pub older: Vec<String>,
    /// Chunks in the bundle.
    pub chunks: u64,
    /// Of those, chunks stored now (the rest were held).
    pub chunks_new: u64,
    /// Bytes of chunk content in the bundle.
    pub payload_bytes: u64,
    /// Bytes added to packs.
    pub stored_bytes_new: u64,
}

/// Verify and import the bundle in `dir` into `store`.
pub fn import(
    store: &Store,
    dir: &std::path::Path,
    progress: &dyn Progress,
) -> Result<ImportReport, BundleError> {
    let _op = store.begin("import");
    let bundle = Bundle::open(dir)?;
    let trust = store.trusted()?;
    let index = bundle.verify_index(&trust)?;
    let ids = verify_releases(&bundle, &index, &trust)?;
    let keys: Vec<_> = trust.keys().iter().map(|(k, _)| *k).collect();
    let (carried, seed_head) =
        crate::store::audit::check_carried(dir, &keys).map_err(BundleError::Audit)?;
    // A different release under a name the store holds is refused before anything is written.
    for (id, signed) in ids.iter().zip(&index.releases) {
        if let Some(held) = store.signed_release(id)? {
            if held.manifest != signed.manifest {
                return Err(StoreError::ReleaseConflict(id.clone()).into());
            }
        }
    }
    // Every base the bundle's deltas and recipes refer to must be here, whole, before anything is written.
    let bases = held_bases(store, &index, &bundle)?;

    let mut report = ImportReport {
        bundle: dir.display().to_string(),
        chunks: index.chunks,
        payload_bytes: index.payload_bytes,
        ..ImportReport::default()
    };
    progress.start("importing", Some(index.stream_bytes()));
    let mut stats = WriteStats::default();
    let held = |id: &ChunkId| store.has_chunk(id).unwrap_or(false);
    let refs = |b: u32, ranges: &[(u64, u64)]| -> Result<Vec<u8>, BundleError> {
        Ok(crate::delta::read_ranges(
            store,
            &bases[b as usize],
            ranges,
        )?)
    };
    // The ids of the chunks the index names by nothing, by part, in stream order (ascending).
    let mut recovered: Vec<(u64, ChunkId)> = Vec::new();
    let streamed = read_stream(
        &bundle,
        &index,
        progress,
        &held,
        Some(&refs),
        &|d: Decoded, pool: &Pool| compress_new(store, d, pool),
        &mut |c: Compressed, pool: &Pool| {
            stats += store.put_chunks(
                c.items
                    .iter()
                    .map(|(id, raw_len, range)| (*id, *raw_len, &c.buf[range.clone()])),
            )?;
            recovered.extend_from_slice(&c.recovered);
            pool.give(c.buf);
            Ok(())
        },
    );
    progress.finish();
    report.chunks_new = stats.chunks_new;
    report.stored_bytes_new = stats.stored_bytes_new;

    // Whatever happened to the stream, keep what was verified and publish what is whole. The recipes first:
    // each rebuilt from its base and the ids of the chunks that arrived, and checked against its id.
    let mut recipes: HashMap<RecipeId, Vec<u8>> = HashMap::new();
    let mut part_base = 0u64;
    for diff in &index.recipes {
        let slots = diff
            .slots()
            .map_err(|e| recipe_error(&bundle, diff, e))?
            .len() as u64;
        let base = diff.base.map(|b| &bases[b as usize]);
        let carried = |k: u64| {
            recovered
                .binary_search_by_key(&(part_base + k), |r| r.0)
                .ok()
                .map(|i| recovered[i].1)
        };
        match diff.rebuild_checked(base, carried) {
            Ok((_, bytes)) => {
                recipes.insert(diff.id, bytes);
            }
            // A chunk lost with a damaged segment: its blobs stay incomplete, named below.
            Err(ferry_protocol::delta::DiffError::NotCarried(_)) if streamed.is_err() => {}
            Err(e) => return Err(recipe_error(&bundle, diff, e)),
        }
        part_base += slots;
    }
    let manifests: Vec<_> = index
        .releases
        .iter()
        .map(|s| s.manifest_unverified())
        .collect::<Result<_, _>>()
        .map_err(StoreError::from)?;
    let mut blobs: Vec<BlobRef> = Vec::new();
    let mut seen = HashSet::new();
    for m in &manifests {
        blobs.extend(m.blobs().into_iter().filter(|b| seen.insert(b.id)));
    }
    let missing: HashSet<_> = store
        .accept_blobs(&recipes, &blobs)?
        .into_iter()
        .map(|b| b.id)
        .collect();
    let mut incomplete = Vec::new();
    for (m, signed) in manifests.iter().zip(&index.releases) {
        let lacking: Vec<BlobRef> = m
            .blobs()
            .into_iter()
            .filter(|b| missing.contains(&b.id))
            .collect();
        if !lacking.is_empty() {
            incomplete.push((m.id(), missing_chunks(store, &recipes, &lacking)?));
            continue;
        }
        match store.accept_release(signed)? {
            Accepted::New(m) => report.imported.push(m.id()),
            Accepted::Older { manifest, .. } => {
                report.imported.push(manifest.id());
                report.older.push(manifest.id());
            }
            Accepted::AlreadyHeld(m) => report.already_held.push(m.id()),
        }
    }
    streamed?;
    if !incomplete.is_empty() {
        return Err(BundleError::Incomplete(incomplete));
    }
    let index_hash = std::fs::read(bundle.index_path())
        .map(|b| blake3::hash(&b).to_hex().to_string())
        .unwrap_or_default();
    store.audit_or_warn(
        "import",
        report
            .imported
            .iter()
            .chain(&report.already_held)
            .cloned()
            .collect(),
        serde_json::json!({
            "bundle": index_hash,
            "from": dir.display().to_string(),
            "signer": bundle.signer().to_string(),
            "by": {
                "uid": rustix::process::getuid().as_raw(),
                "user": std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).ok(),
            },
            "chunks_new": report.chunks_new,
            "bundle_bytes": bundle_bytes(dir),
            "seed_head": seed_head,
            "carried": carried,
        }),
    );
    Ok(report)
}

/// The bytes of every file in the bundle directory: what crossed the gap on the medium.
fn bundle_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// A recipe of the index that does not rebuild: a faulty exporter.
fn recipe_error(
    bundle: &Bundle,
    diff: &ferry_protocol::delta::RecipeDiff,
    e: ferry_protocol::delta::DiffError,
) -> BundleError {
    BundleError::Recipe {
        path: bundle.index_path().display().to_string(),
        id: diff.id,
        message: e.to_string(),
    }
}

/// The base recipes the index names, each checked to be held here with every chunk it needs.
fn held_bases(
    store: &Store,
    index: &ferry_protocol::bundle::BundleIndex,
    bundle: &Bundle,
) -> Result<Vec<Recipe>, BundleError> {
    let mut out = Vec::with_capacity(index.bases.len());
    for (i, (recipe, blob)) in index.bases.iter().enumerate() {
        let whole = match store.recipe(recipe)? {
            Some(r) => {
                let mut all = true;
                for (c, _) in r.chunks() {
                    if !store.has_chunk(&c)? {
                        all = false;
                        break;
                    }
                }
                all.then_some(r)
            }
            None => None,
        };
        match whole {
            Some(r) => out.push(r),
            None => {
                // Name a blob of the bundle that needs it.
                let needs = index
                    .recipes
                    .iter()
                    .find(|d| d.base == Some(i as u32))
                    .and_then(|d| {
                        index.releases.iter().find_map(|s| {
                            let m = s.manifest_unverified().ok()?;
                            m.blobs().into_iter().find(|b| b.recipe == d.id)
                        })
                    });
                return Err(BundleError::MissingBase {
                    path: bundle.dir().display().to_string(),
                    base_blob: *blob,
                    base_recipe: *recipe,
                    needed_by: needs.map(|b| b.sha256.to_string()),
                });
            }
        }
    }
    Ok(out)
}

/// The new chunks of a segment, compressed the way the store keeps them, in one buffer, and the ids recovered
/// by hashing.
struct Compressed {
    buf: Vec<u8>,
    items: Vec<(ChunkId, u32, Range<usize>)>,
    recovered: Vec<(u64, ChunkId)>,
}

/// Compress the chunks of a verified segment that the store lacks. Segments are compressed side by side, so
/// one segment's chunks go in order into one pooled buffer.
fn compress_new(store: &Store, d: Decoded, pool: &Pool) -> Result<Compressed, BundleError> {
    let mut buf = pool.take(d.raw.len() + d.raw.len() / 64);
    let mut items = Vec::new();
    let mut recovered = Vec::new();
    for got in &d.records {
        if got.recovered {
            recovered.push((got.part, got.id));
        }
        if !got.new {
            continue;
        }
        let start = buf.len();
        store.compress_chunk_into(&d.raw[got.range.clone()], &mut buf)?;
        items.push((got.id, got.range.len() as u32, start..buf.len()));
    }
    pool.give(d.raw);
    Ok(Compressed {
        buf,
        items,
        recovered,
    })
}

/// How many distinct chunks `blobs` need that the store lacks (for the error message).
fn missing_chunks(
    store: &Store,
    recipes: &HashMap<RecipeId, Vec<u8>>,
    blobs: &[BlobRef],
) -> Result<u64, BundleError> {
    let mut lacking = HashSet::new();
    for b in blobs {
        let recipe = match store.recipe(&b.recipe)? {
            Some(r) => r,
            None => match recipes.get(&b.recipe) {
                Some(bytes) => Recipe::decode(bytes).map_err(StoreError::from)?,
                // Not even the recipe: count the blob as one missing piece.
                None => {
                    lacking.insert(ChunkId::from_bytes(*b.id.as_bytes()));
                    continue;
                }
            },
        };
        for (id, _) in recipe.chunks() {
            if !store.has_chunk(&id)? {
                lacking.insert(id);
            }
        }
    }
    Ok(lacking.len() as u64)
}
