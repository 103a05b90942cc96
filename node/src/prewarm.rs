//! Re-creating gzip blobs before anyone asks for them.
//!
//! When a release arrives (added, imported, synced: the store's generation moves), the node re-creates the gzip
//! blobs of its releases into the cache in the background, one at a time: the blobs of each name's current
//! version first (pinned, else newest), then the other versions newest first, while the cache has room for
//! them besides what it holds. Background re-creations run their pieces on one thread (see
//! [`crate::store::gzip`]), so clients keep a core; a client that asks for a blob being re-created reads it as
//! it is written.

use crate::store::{Store, StoreError};
use ferry_protocol::BlobRef;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the thread looks for new releases.
const POLL: Duration = Duration::from_millis(500);

/// The background thread; stopped (between re-creations) when dropped.
pub struct Prewarm {
    stop: Arc<AtomicBool>,
}

impl Prewarm {
    /// Start re-creating `store`'s gzip blobs in the background.
    pub fn start(store: Store) -> Prewarm {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("ferry-prewarm".into())
            .spawn(move || run(&store, &flag));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "gzip blobs will be re-created when first asked for");
        }
        Prewarm { stop }
    }
}

impl Drop for Prewarm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run(store: &Store, stop: &AtomicBool) {
    let mut seen = None;
    while !stop.load(Ordering::Relaxed) {
        let generation = store.generation();
        if seen != Some(generation) {
            match pass(store, stop) {
                Ok(()) => seen = Some(generation),
                Err(e) => tracing::warn!(error = %e, "re-creating gzip blobs in the background"),
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Re-create what the cache lacks, in order, while it has room; stop early when asked.
fn pass(store: &Store, stop: &AtomicBool) -> Result<(), StoreError> {
    for blob in candidates(store)? {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if store.cached_recreation(&blob).is_some() || store.is_recreating(&blob) {
            continue;
        }
        let (held, running) = store.cache_usage();
        if held + running + blob.size > store.config().recreate_cache_bytes {
            continue;
        }
        let recipe = store.recipe_of(&blob)?;
        if !recipe.is_gzip() {
            continue;
        }
        let job = store.recreation(&blob, &recipe, false)?;
        tracing::debug!(blob = %blob.sha256, bytes = blob.size, "re-creating in the background");
        if let Err(e) = job.wait() {
            tracing::warn!(blob = %blob.sha256, error = %e, "background re-creation failed");
        }
    }
    Ok(())
}

/// Every blob of every release, each once: the current versions' first, then the others newest first.
fn candidates(store: &Store) -> Result<Vec<BlobRef>, StoreError> {
    let current = crate::retention::current(store)?;
    let mut releases = store.releases()?;
    releases.sort_by_key(|r| {
        let cur = current.get(&r.manifest.name) == Some(&r.manifest.version);
        (!cur, std::cmp::Reverse(r.manifest.sequence))
    });
    let mut seen = HashSet::new();
    Ok(releases
        .iter()
        .flat_map(|r| r.manifest.blobs())
        .filter(|b| seen.insert(b.id))
        .collect())
}
