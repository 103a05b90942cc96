//! Fetching a release from peers.
//!
//! 1. The signed release, from a peer that announced it; its signature is checked against the store's trusted
//!    publisher keys whoever sent it (a peer is only a courier).
//! 2. The recipes the store lacks, each checked against its id.
//! 3. The release's chunk list — every distinct chunk of its blobs, in order of first use — less what the store
//!    holds: the same want/have computation as a bundle's plan (`crate::plan`), done by the receiver.
//! 4. Batches of up to [`BATCH_BYTES`] from every peer that holds them, several in flight per peer. Peers still
//!    syncing the same release answer a bitmap of what they hold, so nodes of a site feed each other; each node
//!    walks the list in its own order (segments shuffled by its peer id) so that, started together, they fetch
//!    different parts from the seed. A chunk goes to the fastest holders: a peer more than twice as slow as
//!    another holder of the same chunk (a seed behind a slow link, say) is not asked for it.
//! 5. Each chunk is decompressed and checked against its BLAKE3 id before it is stored; a peer that sends one bad
//!    chunk is dropped for the rest of the sync and the unverified part of its batch goes elsewhere.
//! 6. Once every chunk is held: blobs, then the release, become visible; the node announces it.
//!
//! Everything stored is durable at the next commit, so a sync that is interrupted starts again from what the
//! store holds and never fetches a verified chunk twice.

use super::data::{request, GOING_AWAY};
use super::wire::{read_record, write_frame, WireError};
use super::Network;
use crate::store::{Store, StoreError};
use ferry_protocol::sync::{bit, Announced, ChunkRecordHeader, SyncRequest, SyncResponse};
use ferry_protocol::{BlobRef, ChunkId, Object, Part, Recipe, RecipeId, SignedRelease};
use libp2p::PeerId;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Most raw bytes asked for in one batch.
pub const BATCH_BYTES: u64 = 4 << 20;
/// Fewest raw bytes asked for in one batch (unless fewer are left).
const MIN_BATCH_BYTES: u64 = 256 << 10;
/// Most batches in flight to one peer.
const IN_FLIGHT: usize = 8;
/// Bytes in flight to a peer are about this much of its measured throughput: enough to fill a long path, not so
/// much that nodes started together all ask the seed for the same bytes before they can share.
const WINDOW: Duration = Duration::from_millis(1000);
/// Stored chunks are committed this often: only committed chunks can be served, or shown in a bitmap to peers
/// syncing beside this node.
const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// Throughput is measured over this much recent time.
const RATE_SPAN: Duration = Duration::from_secs(2);
/// Longest one batch may take before its peer is given up on for it.
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Chunks in one segment of the list (about 2 MiB); segments are walked in a per-node order.
const SEGMENT: usize = 32;

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A release id that does not parse.
    #[error("{0}")]
    BadId(String),
    /// Every peer that offered the release offered one this node cannot accept.
    #[error("release {id} from {peer}: {reason}")]
    Rejected {
        /// The release.
        id: String,
        /// Who sent it (peer id).
        peer: String,
        /// Why (untrusted signer, bad signature, another release under that name).
        reason: String,
    },
    /// Chunks are all present but blobs do not assemble (a recipe that does not match its blob).
    #[error("release {id}: {count} blobs did not assemble from their chunks")]
    Incomplete {
        /// The release.
        id: String,
        /// How many.
        count: usize,
    },
}

/// How far a sync is, for `ferry status` and the progress bar.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncProgress {
    /// `name@version`.
    pub release: String,
    /// What it is doing: `finding peers`, `fetching`, `waiting for peers`, `done`, `failed: …`.
    pub state: String,
    /// Chunks it lacked when it started fetching.
    pub chunks_total: u64,
    /// Of those, chunks stored.
    pub chunks_done: u64,
    /// Payload bytes it lacked.
    pub bytes_total: u64,
    /// Of those, bytes stored.
    pub bytes_done: u64,
    /// Bytes received from each peer (zstd, as sent).
    pub wire_bytes: BTreeMap<String, u64>,
    /// Bytes of recipes received (as differences against recipes this node holds, where it holds a version).
    pub recipe_bytes: u64,
    /// Of `chunks_done`, chunks that came as deltas against content this node holds.
    pub delta_chunks: u64,
    /// What those deltas saved: the chunks as this node stores them, less the deltas' bytes.
    pub delta_saved_bytes: u64,
    /// Peers dropped, with why.
    pub dropped: Vec<String>,
    /// Seconds since it started.
    pub seconds: f64,
}

/// What a finished sync did.
#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    /// `name@version`.
    pub release: String,
    /// The store held it already.
    pub already_held: bool,
    /// Older than the newest version of its name seen here (by the publisher's sequence): stored, never current
    /// unless pinned.
    pub older: bool,
    /// Chunks fetched.
    pub chunks: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// Bytes received for them, by peer (zstd, as sent).
    pub wire_bytes: BTreeMap<String, u64>,
    /// Bytes of recipes received (as differences against recipes this node holds, where it holds a version).
    pub recipe_bytes: u64,
    /// Of `chunks`, chunks that came as deltas against content this node holds.
    pub delta_chunks: u64,
    /// What those deltas saved: the chunks as this node stores them, less the deltas' bytes.
    pub delta_saved_bytes: u64,
    /// Peers dropped for bad bytes.
    pub dropped: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

/// A release's chunk list: every distinct chunk of its blobs with its length, in order of first use.
pub type ChunkList = Arc<Vec<(ChunkId, u32)>>;

/// Finished syncs kept for `ferry status` (their reports only), at most; older ones are forgotten.
const KEEP_FINISHED: usize = 32;

/// A sync in progress (or finished), shared with the data plane so peers can fetch from a node mid-sync.
pub struct Running {
    /// The release's chunk list, once known.
    pub(crate) list: Mutex<Option<ChunkList>>,
    /// Recipes fetched and not yet stored, so peers can have them too.
    pub(crate) recipes: Mutex<HashMap<RecipeId, Vec<u8>>>,
    progress: Mutex<SyncProgress>,
    started: Instant,
    done: watch::Sender<Option<Result<SyncReport, String>>>,
}

impl Running {
    /// A snapshot of its progress.
    pub fn progress(&self) -> SyncProgress {
        let mut p = self.progress.lock().expect("poisoned").clone();
        p.seconds = self.started.elapsed().as_secs_f64();
        p
    }

    /// Whether it has finished.
    pub fn finished(&self) -> bool {
        self.done.borrow().is_some()
    }

    /// The outcome, once finished; `Err` carries the error's message.
    pub fn result(&self) -> Option<Result<SyncReport, String>> {
        self.done.borrow().clone()
    }

    /// Wait for the end; `Err` carries the error's message.
    pub async fn wait(&self) -> Result<SyncReport, String> {
        let mut rx = self.done.subscribe();
        let done = rx.wait_for(|d| d.is_some()).await;
        match done {
            Ok(d) => d.clone().expect("waited for Some"),
            Err(_) => Err("the sync was abandoned".into()),
        }
    }

    fn set(&self, f: impl FnOnce(&mut SyncProgress)) {
        f(&mut self.progress.lock().expect("poisoned"));
    }
}

impl Network {
    /// Start syncing release `id` (`name@version`) — or join the sync of it already running — from any peer that
    /// holds it, or only from `from`.
    pub fn sync(&self, id: &str, from: Option<PeerId>) -> Result<Arc<Running>, SyncError> {
        let (name, version) = id
            .split_once('@')
            .ok_or_else(|| SyncError::BadId(format!("{id:?}: expected NAME@VERSION")))?;
        ferry_protocol::validate_name(name).map_err(|e| SyncError::BadId(e.to_string()))?;
        ferry_protocol::validate_version(version).map_err(|e| SyncError::BadId(e.to_string()))?;
        let mut syncs = self.0.syncs.lock().expect("poisoned");
        if let Some(r) = syncs.get(id) {
            if !r.finished() {
                return Ok(r.clone());
            }
        }
        let (done, _) = watch::channel(None);
        let running = Arc::new(Running {
            list: Mutex::new(None),
            recipes: Mutex::new(HashMap::new()),
            progress: Mutex::new(SyncProgress {
                release: id.to_string(),
                state: "finding peers".into(),
                ..SyncProgress::default()
            }),
            started: Instant::now(),
            done,
        });
        syncs.insert(id.to_string(), running.clone());
        drop(syncs);
        let net = self.clone();
        let id = id.to_string();
        let r = running.clone();
        tokio::spawn(async move {
            let result = run(&net, &id, from, &r).await;
            let result = match result {
                Ok(report) => {
                    tracing::info!(release = %id, chunks = report.chunks, bytes = report.payload_bytes,
                        seconds = report.seconds, "sync done");
                    r.set(|p| p.state = "done".into());
                    Ok(report)
                }
                Err(e) => {
                    tracing::warn!(release = %id, error = %e, "sync failed");
                    r.set(|p| p.state = format!("failed: {e}"));
                    Err(e.to_string())
                }
            };
            // What the sync held for peers (its chunk list, recipes not yet stored) goes with it: from here the
            // store answers for the release. Only the report stays, for the latest few.
            r.list.lock().expect("poisoned").take();
            *r.recipes.lock().expect("poisoned") = HashMap::new();
            r.done.send_replace(Some(result));
            net.forget_finished();
        });
        Ok(running)
    }

    /// Forget the oldest finished syncs beyond [`KEEP_FINISHED`].
    fn forget_finished(&self) {
        let mut syncs = self.0.syncs.lock().expect("poisoned");
        let mut finished: Vec<(Instant, String)> = syncs
            .iter()
            .filter(|(_, r)| r.finished())
            .map(|(id, r)| (r.started, id.clone()))
            .collect();
        if finished.len() <= KEEP_FINISHED {
            return;
        }
        finished.sort();
        for (_, id) in &finished[..finished.len() - KEEP_FINISHED] {
            syncs.remove(id);
        }
    }

    /// Recipe `id`, if a sync in progress fetched it (for peers that ask).
    pub(crate) fn running_recipe(&self, id: &RecipeId) -> Option<Vec<u8>> {
        let syncs = self.0.syncs.lock().expect("poisoned");
        syncs
            .values()
            .filter(|r| !r.finished())
            .find_map(|r| r.recipes.lock().expect("poisoned").get(id).cloned())
    }

    /// Peers that may be asked, with their data address: connected, allowed, and `from` if given. Those that
    /// announced `id` first.
    fn sources(&self, id: &str, from: Option<PeerId>) -> Vec<(PeerId, SocketAddr, bool)> {
        let mut out: Vec<_> = self
            .peers()
            .into_iter()
            .filter(|(p, info)| info.connected && from.is_none_or(|f| f == *p))
            .filter_map(|(p, info)| Some((p, info.data_addr()?, info.holds(id))))
            .collect();
        out.sort_by_key(|(_, _, holds)| !holds);
        out
    }

    /// Wait until peers change, or `max` passes.
    async fn peers_changed(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.0.peers_changed.notified()).await;
    }
}

async fn run(
    net: &Network,
    id: &str,
    from: Option<PeerId>,
    running: &Running,
) -> Result<SyncReport, SyncError> {
    let store = net.0.store.clone();
    let started = Instant::now();
    let _op = store.begin("sync");
    if store.signed_release(id)?.is_some() {
        return Ok(SyncReport {
            release: id.to_string(),
            already_held: true,
            older: false,
            chunks: 0,
            payload_bytes: 0,
            wire_bytes: BTreeMap::new(),
            recipe_bytes: 0,
            delta_chunks: 0,
            delta_saved_bytes: 0,
            dropped: Vec::new(),
            seconds: 0.0,
        });
    }
    let (signed, manifest) = fetch_release(net, id, from, running).await?;
    let blobs = manifest.blobs();
    let blobs_for_deltas = blobs.clone();
    tracing::debug!(release = id, at = ?started.elapsed(), "signed release fetched");
    let (recipes, unnamed) = fetch_recipes(net, id, from, &manifest, running).await?;
    tracing::debug!(release = id, at = ?started.elapsed(), recipes = recipes.len(), "recipes fetched");
    let sketches = fetch_sketches(net, id, from, &unnamed, &recipes).await;

    // The chunk list, in order of first use, as every node computes it.
    let mut list = Vec::new();
    let mut index = HashMap::new();
    let mut accepting = Accepting::default();
    for b in &blobs {
        if let Some(&r) = accepting.recipe_index.get(&b.recipe) {
            accepting.blobs_of[r].push(*b);
            continue;
        }
        let r = accepting.blobs_of.len();
        accepting.recipe_index.insert(b.recipe, r);
        accepting.recipes.push(b.recipe);
        accepting.blobs_of.push(vec![*b]);
        accepting.left.push(0);
        let mut seen_here = HashSet::new();
        for part in recipes[&b.recipe].parts() {
            if let Part::Chunk { id: c, len } = *part {
                let i = *index.entry(c).or_insert_with(|| {
                    list.push((c, len));
                    accepting.users.push(Vec::new());
                    list.len() - 1
                });
                if seen_here.insert(i) {
                    accepting.users[i].push(r);
                    accepting.left[r] += 1;
                }
            }
        }
    }
    let list = Arc::new(list);
    *running.list.lock().expect("poisoned") = Some(list.clone());
    // Runs of the chunks this node lacks to ask for as deltas against what it holds (the planner bundles use).
    let (runs, recipes) = {
        let store = store.clone();
        let signed = signed.clone();
        let name = manifest.name.clone();
        tokio::task::spawn_blocking(move || {
            let runs = plan_deltas(
                &store,
                &signed,
                &name,
                (&blobs_for_deltas, &recipes, &sketches),
                &index,
            );
            (runs, recipes)
        })
        .await
        .expect("planning deltas panicked")
    };
    drop(recipes);
    let runs = runs.unwrap_or_else(|e| {
        tracing::warn!(release = id, error = %e, "cannot plan deltas; fetching chunks whole");
        Vec::new()
    });
    let mut fetch = Fetch::new(net, id, from, list.clone(), accepting, runs, running)?;
    fetch.run().await?;
    tracing::debug!(release = id, at = ?started.elapsed(), chunks = list.len(), "chunks fetched");

    // Blobs not made visible while the chunks arrived, then the release.
    let left = fetch.accepting.unaccepted();
    let missing = accept_blobs(store.clone(), running, left).await?;
    if !missing.is_empty() {
        return Err(SyncError::Incomplete {
            id: id.to_string(),
            count: missing.len(),
        });
    }
    tracing::debug!(release = id, at = ?started.elapsed(), "blobs accepted");
    let older = matches!(
        store.accept_release(&signed)?,
        crate::store::accept::Accepted::Older { .. }
    );
    tracing::debug!(release = id, at = ?started.elapsed(), "release accepted");
    net.announce(Announced {
        id: id.to_string(),
        sequence: manifest.sequence,
        envelope: crate::plan::envelope_hash(&signed),
    });
    let p = running.progress();
    Ok(SyncReport {
        release: id.to_string(),
        already_held: false,
        older,
        chunks: p.chunks_done,
        payload_bytes: p.bytes_done,
        wire_bytes: p.wire_bytes,
        recipe_bytes: p.recipe_bytes,
        delta_chunks: p.delta_chunks,
        delta_saved_bytes: p.delta_saved_bytes,
        dropped: p.dropped,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The signed release from the first peer that has one this store accepts; waits for peers while none does.
async fn fetch_release(
    net: &Network,
    id: &str,
    from: Option<PeerId>,
    running: &Running,
) -> Result<(SignedRelease, ferry_protocol::ReleaseManifest), SyncError> {
    let store = &net.0.store;
    let mut asked_providers = false;
    loop {
        let sources = net.sources(id, from);
        let mut rejected = None;
        for (peer, addr, _) in &sources {
            let answer = async {
                let conn = net.0.data.connect(*peer, *addr).await?;
                request(&conn, &SyncRequest::Release { id: id.to_string() }).await
            };
            let bytes = match answer.await {
                Ok(SyncResponse::Release(b)) => b,
                Ok(SyncResponse::Refused(why)) => {
                    tracing::debug!(%peer, release = id, why, "peer has no such release");
                    continue;
                }
                Ok(other) => {
                    tracing::warn!(%peer, ?other, "unexpected answer to a release request");
                    continue;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "release request failed");
                    continue;
                }
            };
            let checked = SignedRelease::decode(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    let m = store.verify_release(id, &s).map_err(|e| e.to_string())?;
                    if m.id() != id {
                        return Err(format!("it holds release {} instead", m.id()));
                    }
                    Ok((s, m))
                });
            match checked {
                Ok(found) => return Ok(found),
                Err(reason) => {
                    tracing::warn!(%peer, release = id, reason, "refused a release from a peer");
                    rejected = Some(SyncError::Rejected {
                        id: id.to_string(),
                        peer: peer.to_string(),
                        reason,
                    });
                }
            }
        }
        if let Some(e) = rejected {
            return Err(e);
        }
        if !asked_providers {
            let _ = net
                .0
                .control
                .send(super::control::Command::FindProviders(id.to_string()));
            asked_providers = true;
        }
        running.set(|p| {
            p.state = format!(
                "waiting for a peer that holds {id} ({} peers connected)",
                sources.len()
            )
        });
        net.peers_changed(Duration::from_secs(2)).await;
    }
}

/// The recipes of `blobs`: from the store, else from peers (each checked against its id).
/// Recipes asked for in one request.
const RECIPES_PER_REQUEST: usize = 4096;

async fn fetch_recipes(
    net: &Network,
    id: &str,
    from: Option<PeerId>,
    manifest: &ferry_protocol::ReleaseManifest,
    running: &Running,
) -> Result<(HashMap<RecipeId, Recipe>, Vec<RecipeId>), SyncError> {
    let store = &net.0.store;
    let blobs = manifest.blobs();
    let mut out = HashMap::new();
    let mut lacking = Vec::new();
    // Membership of `lacking`, so a release of many blobs is not a quadratic scan.
    let mut lacking_set = HashSet::new();
    for b in &blobs {
        if out.contains_key(&b.recipe) || lacking_set.contains(&b.recipe) {
            continue;
        }
        match store.recipe(&b.recipe)? {
            Some(r) => {
                out.insert(b.recipe, r);
            }
            None => {
                lacking_set.insert(b.recipe);
                lacking.push(b.recipe);
            }
        }
    }
    // The recipes this node lacks come as differences against the recipe of the same entry in a version it
    // holds, when it holds one.
    let bases: Option<RecipeBases> = if lacking.is_empty() {
        None
    } else {
        let store = store.clone();
        let manifest = manifest.clone();
        let lacking = lacking_set.clone();
        tokio::task::spawn_blocking(move || recipe_bases(&store, &manifest, &lacking))
            .await
            .expect("choosing recipe bases panicked")
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot choose bases for recipes; fetching them whole");
                None
            })
    };
    // Recipes with no predecessor by name, while versions of the name are held: their bases are looked for by
    // resemblance, with sketches the sender sends.
    let unnamed: Vec<RecipeId> = match &bases {
        Some(b) => lacking
            .iter()
            .filter(|r| !b.contains_key(r))
            .copied()
            .collect(),
        None => Vec::new(),
    };
    let bases = bases.unwrap_or_default();
    let mut round = 0;
    while !lacking.is_empty() {
        let before = lacking.len();
        round += 1;
        // Every group at once, spread over the peers (holders first): one request after another would pay a
        // round trip per group, seconds of an idle link on a WAN before the first chunk is asked for.
        let sources = net.sources(id, from);
        let asks = lacking
            .chunks(RECIPES_PER_REQUEST)
            .zip(sources.iter().cycle().skip(round % sources.len().max(1)))
            .map(|(ids, &(peer, addr, _))| {
                let wanted: Vec<(RecipeId, Option<RecipeId>)> = ids
                    .iter()
                    .map(|r| (*r, bases.get(r).map(|(b, _)| *b)))
                    .collect();
                async move {
                    let conn = net.0.data.connect(peer, addr).await?;
                    let answer = request(
                        &conn,
                        &SyncRequest::RecipeDiffs {
                            wanted: wanted.clone(),
                        },
                    )
                    .await?;
                    Ok::<_, WireError>((peer, wanted, answer))
                }
            });
        for answer in futures::future::join_all(asks).await {
            let Ok((peer, wanted, answer)) = answer else {
                continue;
            };
            let size = answer.encode().len() as u64;
            let SyncResponse::RecipeDiffs(got) = answer else {
                continue;
            };
            running.set(|p| p.recipe_bytes += size);
            for ((rid, _), diff) in wanted.iter().zip(got) {
                let Some(diff) = diff else { continue };
                let base = match diff.base {
                    None => None,
                    Some(0) => bases.get(rid).map(|(_, r)| r),
                    Some(_) => {
                        tracing::warn!(%peer, recipe = %rid, "a peer sent a recipe against a base not asked for");
                        continue;
                    }
                };
                if diff.id != *rid {
                    tracing::warn!(%peer, recipe = %rid, "a peer sent another recipe than the one asked for");
                    continue;
                }
                let (recipe, bytes) = match diff.rebuild_checked(base, |_| None) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(%peer, recipe = %rid, error = %e, "a peer sent a recipe that does not rebuild to its id");
                        continue;
                    }
                };
                running
                    .recipes
                    .lock()
                    .expect("poisoned")
                    .insert(*rid, bytes);
                out.insert(*rid, recipe);
            }
        }
        lacking.retain(|r| !out.contains_key(r));
        // Wait for peers only when a whole round of asking brought nothing; otherwise ask for the next group
        // at once.
        if !lacking.is_empty() && lacking.len() == before {
            running.set(|p| {
                p.state = format!("waiting for peers with {} recipes of {id}", lacking.len())
            });
            net.peers_changed(Duration::from_secs(2)).await;
        }
    }
    Ok((out, unnamed))
}

/// The sketches of `wanted` (recipes of release `id`, in `recipes`) from a peer that holds them whole: the
/// first answer that fits each recipe. Best effort: what no peer sends is planned without.
async fn fetch_sketches(
    net: &Network,
    id: &str,
    from: Option<PeerId>,
    wanted: &[RecipeId],
    recipes: &HashMap<RecipeId, Recipe>,
) -> Sketches {
    let mut out = HashMap::new();
    let sources = net.sources(id, from);
    for ids in wanted.chunks(ferry_protocol::sync::MAX_SKETCH_RECIPES) {
        for &(peer, addr, _) in &sources {
            let ask = async {
                let conn = net.0.data.connect(peer, addr).await?;
                request(
                    &conn,
                    &SyncRequest::Sketches {
                        recipes: ids.to_vec(),
                    },
                )
                .await
            };
            let Ok(SyncResponse::Sketches(got)) = ask.await else {
                continue;
            };
            for (rid, bytes) in ids.iter().zip(got) {
                let parts = recipes.get(rid).map_or(0, |r| r.parts().len());
                if let Some(s) = bytes.and_then(|b| crate::sketch::decode(&b, parts)) {
                    out.insert(*rid, s);
                }
            }
            break;
        }
    }
    out
}

/// Per recipe, the id and recipe of its base.
type RecipeBases = HashMap<RecipeId, (RecipeId, Recipe)>;

/// Sketches of recipes, by id.
type Sketches = HashMap<RecipeId, Vec<crate::sketch::Sketch>>;

/// For each recipe of `lacking`, the recipe of the same entry in a release of the same name this node holds;
/// `None` when it holds none of that name.
fn recipe_bases(
    store: &Store,
    manifest: &ferry_protocol::ReleaseManifest,
    lacking: &HashSet<RecipeId>,
) -> Result<Option<RecipeBases>, StoreError> {
    let held = held_versions(store, &manifest.name)?;
    let mut out = HashMap::new();
    if held.is_empty() {
        return Ok(None);
    }
    let names = HashSet::from([manifest.name.clone()]);
    let index = crate::delta::BaseIndex::new(store, &held, &names)?;
    let single = crate::delta::only_file(&manifest.entries).map(|b| b.recipe);
    for (blob, keys) in crate::delta::blob_keys(&manifest.entries) {
        if !lacking.contains(&blob.recipe) || out.contains_key(&blob.recipe) {
            continue;
        }
        let base = index.by_keys(&keys, single == Some(blob.recipe)).copied();
        if let Some(base) = base.filter(|b| b.recipe != blob.recipe) {
            if let Some(r) = store.recipe(&base.recipe)? {
                out.insert(blob.recipe, (base.recipe, r));
            }
        }
    }
    Ok(Some(out))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Needed,
    InFlight,
    Done,
}

enum Avail {
    Unknown,
    Whole,
    Bits(Vec<u8>),
}

/// One peer as this sync sees it.
struct Source {
    addr: SocketAddr,
    conn: Option<quinn::Connection>,
    connecting: bool,
    asking_have: bool,
    avail: Avail,
    /// Chunks it said it lacks although its bitmap said otherwise.
    lacks: HashSet<usize>,
    in_flight: usize,
    /// Raw bytes asked for and not yet answered.
    in_flight_bytes: u64,
    /// Bytes per second per batch, smoothed: how quickly it answers, for ranking holders.
    rate: Option<f64>,
    /// Recent completions (when, raw bytes), for its throughput.
    recent: std::collections::VecDeque<(Instant, u64)>,
    /// When the first batch was sent to it.
    first_sent: Option<Instant>,
    /// Not asked again before this.
    resting_until: Option<Instant>,
    dropped: bool,
    /// Still connected on the control plane.
    present: bool,
}

impl Source {
    fn usable(&self, now: Instant) -> bool {
        self.present
            && !self.dropped
            && self.conn.is_some()
            && self.resting_until.is_none_or(|t| now >= t)
    }

    /// Raw bytes per second delivered lately; `None` before the first batch comes back.
    fn throughput(&self, now: Instant) -> Option<f64> {
        let first = self.first_sent?;
        if self.recent.is_empty() {
            return None;
        }
        let bytes: u64 = self.recent.iter().map(|(_, b)| b).sum();
        let span = now
            .duration_since(first)
            .min(RATE_SPAN)
            .as_secs_f64()
            .max(0.05);
        Some(bytes as f64 / span)
    }

    /// How much to ask for in the next batch, if there is room for one.
    fn next_batch(&self, now: Instant) -> Option<u64> {
        if self.in_flight >= IN_FLIGHT {
            return None;
        }
        let (batch, window) = match self.throughput(now) {
            // Not measured yet: a little, so nodes started together do not all ask for the same bytes first.
            None => (1 << 20, 2 << 20),
            Some(t) => {
                let batch = ((t * 0.25) as u64).clamp(MIN_BATCH_BYTES, BATCH_BYTES);
                (batch, ((t * WINDOW.as_secs_f64()) as u64).max(2 * batch))
            }
        };
        (self.in_flight_bytes < window).then_some(batch)
    }

    fn has(&self, i: usize) -> bool {
        !self.lacks.contains(&i)
            && match &self.avail {
                Avail::Unknown => false,
                Avail::Whole => true,
                Avail::Bits(b) => bit(b, i),
            }
    }
}

enum Event {
    Connected(PeerId, Result<quinn::Connection, WireError>),
    Have(PeerId, Result<SyncResponse, WireError>),
    Batch {
        peer: PeerId,
        asked: Vec<usize>,
        outcome: Result<Outcome, WireError>,
        elapsed: Duration,
    },
    /// A batch of blobs was recorded; these were still incomplete.
    Accepted(Result<Vec<BlobRef>, SyncError>, Duration),
    /// A delta came back (or did not).
    Delta {
        peer: PeerId,
        run: usize,
        outcome: Result<DeltaOutcome, WireError>,
    },
}

/// What came of one batch.
#[derive(Default)]
struct Outcome {
    stored: Vec<usize>,
    absent: Vec<usize>,
    wire_bytes: u64,
    /// Why the peer must be dropped.
    bad: Option<String>,
}

/// Record `blobs` (with the recipes the sync fetched) on a blocking thread; returns those still incomplete.
async fn accept_blobs(
    store: Store,
    running: &Running,
    blobs: Vec<BlobRef>,
) -> Result<Vec<BlobRef>, SyncError> {
    accept_blobs_with(store, fetched_recipes(running, &blobs), blobs).await
}

/// The recipes of `blobs` this sync fetched (those the store holds are not among them).
fn fetched_recipes(running: &Running, blobs: &[BlobRef]) -> HashMap<RecipeId, Vec<u8>> {
    let all = running.recipes.lock().expect("poisoned");
    blobs
        .iter()
        .filter_map(|b| Some((b.recipe, all.get(&b.recipe)?.clone())))
        .collect()
}

async fn accept_blobs_with(
    store: Store,
    encoded: HashMap<RecipeId, Vec<u8>>,
    blobs: Vec<BlobRef>,
) -> Result<Vec<BlobRef>, SyncError> {
    if blobs.is_empty() {
        return Ok(Vec::new());
    }
    Ok(
        tokio::task::spawn_blocking(move || store.accept_blobs(&encoded, &blobs))
            .await
            .expect("accept_blobs panicked")?,
    )
}

/// At most this many blobs are recorded at a time while chunks arrive.
const ACCEPT_BATCH: usize = 2000;

/// Which blobs can be made visible: a recipe's blobs are recorded as soon as its last chunk is stored, while
/// the rest arrive, instead of tens of thousands of records at the end.
#[derive(Default)]
struct Accepting {
    /// Each recipe of the release, once.
    recipes: Vec<RecipeId>,
    recipe_index: HashMap<RecipeId, usize>,
    /// The release's blobs, by recipe.
    blobs_of: Vec<Vec<BlobRef>>,
    /// Per recipe, how many of its distinct chunks are not stored yet.
    left: Vec<u32>,
    /// Per chunk of the list, the recipes that use it.
    users: Vec<Vec<usize>>,
    /// Recipes whose chunks are all stored and whose blobs are not yet recorded.
    ready: Vec<usize>,
    /// Recipes whose blobs are recorded (or being recorded).
    taken: Vec<bool>,
    /// Whether a batch of blobs is being recorded now.
    busy: bool,
    /// Recording competes with the fetch for CPU and for the index: after a batch that took T, the next waits
    /// 4T, so it takes at most a fifth of the time. A network-bound sync records nearly everything on the way;
    /// a CPU-bound one (loopback) leaves most of it for the end, where it costs the same and slows nothing.
    not_before: Option<Instant>,
}

impl Accepting {
    /// Chunk `i` of the list is stored.
    fn stored(&mut self, i: usize) {
        for &r in &self.users[i] {
            self.left[r] -= 1;
            if self.left[r] == 0 {
                self.ready.push(r);
            }
        }
    }

    /// The blobs of ready recipes, up to [`ACCEPT_BATCH`] of them, marked as taken.
    fn take_ready(&mut self) -> Vec<BlobRef> {
        if self.taken.is_empty() {
            self.taken = vec![false; self.recipes.len()];
        }
        let mut blobs = Vec::new();
        while blobs.len() < ACCEPT_BATCH {
            let Some(r) = self.ready.pop() else { break };
            self.taken[r] = true;
            blobs.extend_from_slice(&self.blobs_of[r]);
        }
        blobs
    }

    /// A batch came back with these blobs still incomplete: they are tried again at the end.
    fn give_back(&mut self, missing: &[BlobRef]) {
        for b in missing {
            if let Some(&r) = self.recipe_index.get(&b.recipe) {
                self.taken[r] = false;
            }
        }
    }

    /// Every blob not recorded yet.
    fn unaccepted(&self) -> Vec<BlobRef> {
        (0..self.recipes.len())
            .filter(|&r| !self.taken.get(r).copied().unwrap_or(false))
            .flat_map(|r| self.blobs_of[r].iter().copied())
            .collect()
    }
}

struct Fetch<'a> {
    net: &'a Network,
    id: &'a str,
    from: Option<PeerId>,
    list: Arc<Vec<(ChunkId, u32)>>,
    slots: Vec<Slot>,
    /// The order this node walks the list in.
    order: Vec<usize>,
    /// Positions in `order` before this are all done.
    first_open: usize,
    remaining: usize,
    sources: BTreeMap<PeerId, Source>,
    running: &'a Running,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    last_commit: Instant,
    accepting: Accepting,
    /// Runs to ask for as deltas, and the run of each chunk of the list.
    runs: Vec<DeltaRun>,
    run_of: Vec<Option<usize>>,
}

impl<'a> Fetch<'a> {
    fn new(
        net: &'a Network,
        id: &'a str,
        from: Option<PeerId>,
        list: Arc<Vec<(ChunkId, u32)>>,
        mut accepting: Accepting,
        runs: Vec<DeltaRun>,
        running: &'a Running,
    ) -> Result<Self, SyncError> {
        let store = &net.0.store;
        let mut slots = Vec::with_capacity(list.len());
        let (mut chunks_total, mut bytes_total) = (0u64, 0u64);
        for (i, (c, len)) in list.iter().enumerate() {
            if store.has_chunk(c)? {
                accepting.stored(i);
                slots.push(Slot::Done);
            } else {
                slots.push(Slot::Needed);
                chunks_total += 1;
                bytes_total += u64::from(*len);
            }
        }
        let remaining = chunks_total as usize;
        running.set(|p| {
            p.chunks_total = chunks_total;
            p.bytes_total = bytes_total;
            p.state = "fetching".into();
        });
        let order = walk_order(list.len(), &net.0.local);
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut run_of = vec![None; list.len()];
        for (r, run) in runs.iter().enumerate() {
            for &i in &run.chunks {
                run_of[i] = Some(r);
            }
        }
        Ok(Fetch {
            net,
            id,
            from,
            list,
            slots,
            order,
            first_open: 0,
            remaining,
            sources: BTreeMap::new(),
            running,
            events_tx,
            events,
            last_commit: Instant::now(),
            accepting,
            runs,
            run_of,
        })
    }

    async fn run(&mut self) -> Result<(), SyncError> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        while self.remaining > 0 {
            self.refresh_sources();
            self.schedule();
            tokio::select! {
                ev = self.events.recv() => {
                    let ev = ev.expect("the sender lives in self");
                    self.handle(ev).await?;
                }
                _ = tick.tick() => self.on_tick().await?,
                _ = self.net.0.peers_changed.notified() => {}
            }
        }
        // Every slot is done, so no batch is in flight; blobs being recorded may be.
        while self.accepting.busy {
            let ev = self.events.recv().await.expect("the sender lives in self");
            self.handle(ev).await?;
        }
        let store = self.net.0.store.clone();
        tokio::task::spawn_blocking(move || store.commit())
            .await
            .expect("commit panicked")?;
        Ok(())
    }

    /// Take in peers that appeared, and note those gone.
    fn refresh_sources(&mut self) {
        let peers = self.net.peers();
        for s in self.sources.values_mut() {
            s.present = false;
        }
        for (peer, info) in peers {
            if !info.connected || self.from.is_some_and(|f| f != peer) {
                continue;
            }
            let Some(addr) = info.data_addr() else {
                continue;
            };
            let s = self.sources.entry(peer).or_insert_with(|| Source {
                addr,
                conn: None,
                connecting: false,
                asking_have: false,
                avail: Avail::Unknown,
                lacks: HashSet::new(),
                in_flight: 0,
                in_flight_bytes: 0,
                rate: None,
                recent: std::collections::VecDeque::new(),
                first_sent: None,
                resting_until: None,
                dropped: false,
                present: true,
            });
            s.present = true;
            if s.addr != addr {
                s.addr = addr;
                s.conn = None;
            }
            if info.holds(self.id) && !matches!(s.avail, Avail::Whole) {
                s.avail = Avail::Whole;
            }
            if s.conn.as_ref().is_some_and(|c| c.close_reason().is_some()) {
                s.conn = None;
            }
            if s.conn.is_none() && !s.connecting && !s.dropped {
                s.connecting = true;
                let tx = self.events_tx.clone();
                let net = self.net.clone();
                tokio::spawn(async move {
                    let r = net.0.data.connect(peer, addr).await;
                    let _ = tx.send(Event::Connected(peer, r));
                });
            }
        }
    }

    async fn on_tick(&mut self) -> Result<(), SyncError> {
        let now = Instant::now();
        for (peer, s) in &mut self.sources {
            if matches!(s.avail, Avail::Whole) || s.asking_have || !s.usable(now) {
                continue;
            }
            s.asking_have = true;
            let conn = s.conn.clone().expect("usable has a connection");
            let tx = self.events_tx.clone();
            let id = self.id.to_string();
            let peer = *peer;
            tokio::spawn(async move {
                let r = request(&conn, &SyncRequest::Have { id }).await;
                let _ = tx.send(Event::Have(peer, r));
            });
        }
        if self.last_commit.elapsed() >= COMMIT_EVERY && !self.accepting.busy {
            self.last_commit = Instant::now();
            let blobs = if self.accepting.not_before.is_some_and(|t| now < t) {
                Vec::new()
            } else {
                self.accepting.take_ready()
            };
            let store = self.net.0.store.clone();
            if blobs.is_empty() {
                tokio::task::spawn_blocking(move || store.commit())
                    .await
                    .expect("commit panicked")?;
            } else {
                // Commits the chunks too; runs beside the fetch.
                self.accepting.busy = true;
                let tx = self.events_tx.clone();
                let encoded = fetched_recipes(self.running, &blobs);
                tokio::spawn(async move {
                    let started = Instant::now();
                    let n = blobs.len();
                    let r = accept_blobs_with(store, encoded, blobs).await;
                    let took = started.elapsed();
                    tracing::debug!(blobs = n, ?took, "blobs recorded while fetching");
                    let _ = tx.send(Event::Accepted(r, took));
                });
            }
        }
        let in_flight: usize = self.sources.values().map(|s| s.in_flight).sum();
        if in_flight == 0 {
            let remaining = self.remaining;
            let usable = self.sources.values().filter(|s| s.usable(now)).count();
            self.running.set(|p| {
                p.state = format!(
                    "waiting for peers that hold the {remaining} chunks left ({usable} peers usable)"
                )
            });
        } else {
            self.running.set(|p| p.state = "fetching".into());
        }
        Ok(())
    }

    async fn handle(&mut self, ev: Event) -> Result<(), SyncError> {
        match ev {
            Event::Connected(peer, r) => {
                let Some(s) = self.sources.get_mut(&peer) else {
                    return Ok(());
                };
                s.connecting = false;
                match r {
                    Ok(c) => s.conn = Some(c),
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "cannot reach a peer's data plane");
                        s.resting_until = Some(Instant::now() + Duration::from_secs(2));
                    }
                }
            }
            Event::Have(peer, r) => {
                let Some(s) = self.sources.get_mut(&peer) else {
                    return Ok(());
                };
                s.asking_have = false;
                match r {
                    Ok(SyncResponse::Whole) => s.avail = Avail::Whole,
                    Ok(SyncResponse::Have(bits)) => s.avail = Avail::Bits(bits),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(%peer, error = %e, "have request failed"),
                }
            }
            Event::Accepted(r, took) => {
                self.accepting.busy = false;
                self.accepting.not_before = Some(Instant::now() + 4 * took);
                self.accepting.give_back(&r?);
            }
            // This node's own store failing (a full disk) ends the sync: asking other peers cannot help.
            Event::Batch {
                outcome: Err(WireError::Local(e)),
                ..
            }
            | Event::Delta {
                outcome: Ok(DeltaOutcome::Local(e)),
                ..
            } => return Err(SyncError::Store(e)),
            Event::Batch {
                peer,
                asked,
                outcome,
                elapsed,
            } => self.on_batch(peer, asked, outcome, elapsed),
            Event::Delta { peer, run, outcome } => self.on_delta(peer, run, outcome),
        }
        Ok(())
    }

    fn on_delta(&mut self, peer: PeerId, r: usize, outcome: Result<DeltaOutcome, WireError>) {
        let s = self
            .sources
            .get_mut(&peer)
            .expect("a delta's peer is a source");
        s.in_flight -= 1;
        let run = &mut self.runs[r];
        run.state = RunState::Done;
        let chunks = std::mem::take(&mut run.chunks);
        let back_to_needed = |slots: &mut Vec<Slot>| {
            for &i in &chunks {
                if slots[i] == Slot::InFlight {
                    slots[i] = Slot::Needed;
                }
            }
        };
        match outcome {
            Ok(DeltaOutcome::Stored { wire, saved }) => {
                let mut bytes = 0u64;
                for &i in &chunks {
                    self.slots[i] = Slot::Done;
                    self.accepting.stored(i);
                    bytes += u64::from(self.list[i].1);
                }
                self.remaining -= chunks.len();
                let n = chunks.len() as u64;
                self.net.update_peer(peer, |p| {
                    p.received_bytes += bytes;
                    p.received_chunks += n;
                });
                self.running.set(|p| {
                    p.chunks_done += n;
                    p.bytes_done += bytes;
                    p.delta_chunks += n;
                    p.delta_saved_bytes += saved;
                    *p.wire_bytes.entry(peer.to_string()).or_default() += wire;
                });
            }
            Ok(DeltaOutcome::Refused(why)) => {
                tracing::debug!(%peer, why, chunks = chunks.len(), "delta refused; fetching the chunks whole");
                back_to_needed(&mut self.slots);
            }
            Ok(DeltaOutcome::Bad(why)) => {
                back_to_needed(&mut self.slots);
                self.drop_peer(peer, why);
            }
            Ok(DeltaOutcome::Local(_)) => unreachable!("a local failure ends the sync in handle"),
            Err(e) => {
                tracing::info!(%peer, error = %e, "delta request failed; fetching the chunks whole");
                back_to_needed(&mut self.slots);
                let s = self.sources.get_mut(&peer).expect("source");
                s.conn = None;
                s.resting_until = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    /// Drop `peer` for the rest of the sync: it sent bytes that failed verification.
    fn drop_peer(&mut self, peer: PeerId, why: String) {
        tracing::warn!(%peer, release = self.id, why, "dropping a peer that sent bad bytes");
        if let Some(s) = self.sources.get_mut(&peer) {
            s.dropped = true;
            s.conn = None;
        }
        self.net
            .0
            .data
            .disconnect(&peer, "sent bytes that failed verification");
        let note = format!("{peer}: {why}");
        self.net
            .update_peer(peer, |p| p.dropped = Some(why.clone()));
        self.running.set(|p| p.dropped.push(note));
    }

    fn on_batch(
        &mut self,
        peer: PeerId,
        asked: Vec<usize>,
        outcome: Result<Outcome, WireError>,
        elapsed: Duration,
    ) {
        let s = self
            .sources
            .get_mut(&peer)
            .expect("a batch's peer is a source");
        s.in_flight -= 1;
        s.in_flight_bytes -= asked
            .iter()
            .map(|&i| u64::from(self.list[i].1))
            .sum::<u64>();
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::info!(%peer, error = %e, chunks = asked.len(), "batch failed; asking others");
                s.conn = None;
                s.resting_until = Some(Instant::now() + Duration::from_secs(1));
                for i in asked {
                    if self.slots[i] == Slot::InFlight {
                        self.slots[i] = Slot::Needed;
                    }
                }
                return;
            }
        };
        let mut bytes = 0u64;
        for &i in &outcome.stored {
            self.slots[i] = Slot::Done;
            self.accepting.stored(i);
            bytes += u64::from(self.list[i].1);
        }
        for &i in &outcome.absent {
            s.lacks.insert(i);
        }
        for &i in &asked {
            if self.slots[i] == Slot::InFlight {
                self.slots[i] = Slot::Needed;
            }
        }
        self.remaining -= outcome.stored.len();
        if bytes > 0 {
            let sample = bytes as f64 / elapsed.as_secs_f64().max(1e-6);
            s.rate = Some(s.rate.map_or(sample, |r| 0.7 * r + 0.3 * sample));
            let now = Instant::now();
            s.recent.push_back((now, bytes));
            while s
                .recent
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_SPAN)
            {
                s.recent.pop_front();
            }
        }
        let stored = outcome.stored.len() as u64;
        if let Some(why) = outcome.bad.clone() {
            self.drop_peer(peer, why);
        }
        self.net.update_peer(peer, |p| {
            p.received_bytes += bytes;
            p.received_chunks += stored;
        });
        self.running.set(|p| {
            p.chunks_done += stored;
            p.bytes_done += bytes;
            *p.wire_bytes.entry(peer.to_string()).or_default() += outcome.wire_bytes;
        });
    }

    /// Give every usable peer with room batches of chunks it holds.
    fn schedule(&mut self) {
        let now = Instant::now();
        while self.first_open < self.order.len()
            && self.slots[self.order[self.first_open]] == Slot::Done
        {
            self.first_open += 1;
        }
        // Fastest first; a peer not yet measured counts as fastest, so it gets tried.
        let mut ranked: Vec<(PeerId, f64)> = self
            .sources
            .iter()
            .filter(|(_, s)| s.usable(now))
            .map(|(p, s)| (*p, s.rate.unwrap_or(f64::INFINITY)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        self.schedule_deltas(&ranked);
        for &(peer, rate) in &ranked {
            while let Some(limit) = self.sources[&peer].next_batch(now) {
                let batch = self.pick(peer, rate, &ranked, limit);
                if batch.is_empty() {
                    break;
                }
                self.send_batch(peer, batch);
            }
        }
    }

    /// Ask for pending runs as deltas, fastest holders first. A run no usable peer holds whole while some holds
    /// part of it is given up on: its chunks are fetched whole.
    fn schedule_deltas(&mut self, ranked: &[(PeerId, f64)]) {
        for r in 0..self.runs.len() {
            if self.runs[r].state != RunState::Pending {
                continue;
            }
            let run = &self.runs[r];
            if run.chunks.iter().all(|&i| self.slots[i] == Slot::Done) {
                self.runs[r].state = RunState::Done;
                continue;
            }
            let holder = ranked.iter().map(|(p, _)| *p).find(|p| {
                let s = &self.sources[p];
                run.chunks.iter().all(|&i| s.has(i))
            });
            let Some(peer) = holder else {
                let partly = ranked
                    .iter()
                    .any(|(p, _)| run.chunks.iter().any(|&i| self.sources[p].has(i)));
                if partly {
                    self.runs[r].state = RunState::Done;
                }
                continue;
            };
            if self.sources[&peer].in_flight >= DELTAS_IN_FLIGHT {
                continue;
            }
            self.send_delta(peer, r);
        }
    }

    fn send_delta(&mut self, peer: PeerId, r: usize) {
        let run = &mut self.runs[r];
        run.state = RunState::InFlight;
        let wanted: Vec<(ChunkId, u32)> = run
            .chunks
            .iter()
            .filter(|&&i| self.slots[i] != Slot::Done)
            .map(|&i| self.list[i])
            .collect();
        for &i in &run.chunks {
            if self.slots[i] == Slot::Needed {
                self.slots[i] = Slot::InFlight;
            }
        }
        run.chunks.retain(|&i| self.slots[i] != Slot::Done);
        let reference = run.reference.clone();
        let level = run.level;
        let s = self.sources.get_mut(&peer).expect("scheduled peer");
        s.in_flight += 1;
        s.first_sent.get_or_insert_with(Instant::now);
        let conn = s.conn.clone().expect("usable peer has a connection");
        let tx = self.events_tx.clone();
        let store = self.net.0.store.clone();
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(
                DELTA_TIMEOUT,
                fetch_delta(&conn, &store, wanted, reference, level),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(WireError::Stream(format!(
                    "no delta within {} s",
                    DELTA_TIMEOUT.as_secs()
                ))),
            };
            let _ = tx.send(Event::Delta {
                peer,
                run: r,
                outcome,
            });
        });
    }

    /// Up to `limit` bytes of needed chunks `peer` holds, skipping those a much faster peer holds too, and those
    /// waiting to come as a delta.
    fn pick(&self, peer: PeerId, rate: f64, ranked: &[(PeerId, f64)], limit: u64) -> Vec<usize> {
        let s = &self.sources[&peer];
        let faster: Vec<&Source> = ranked
            .iter()
            .filter(|(p, r)| *p != peer && rate.is_finite() && *r > 2.0 * rate)
            .map(|(p, _)| &self.sources[p])
            .collect();
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        for &i in &self.order[self.first_open..] {
            if self.slots[i] != Slot::Needed
                || !s.has(i)
                || faster.iter().any(|f| f.has(i))
                || self.run_of[i].is_some_and(|r| self.runs[r].state != RunState::Done)
            {
                continue;
            }
            batch.push(i);
            bytes += u64::from(self.list[i].1);
            if bytes >= limit || batch.len() >= 1024 {
                break;
            }
        }
        batch
    }

    fn send_batch(&mut self, peer: PeerId, batch: Vec<usize>) {
        for &i in &batch {
            self.slots[i] = Slot::InFlight;
        }
        let s = self.sources.get_mut(&peer).expect("scheduled peer");
        s.in_flight += 1;
        s.in_flight_bytes += batch
            .iter()
            .map(|&i| u64::from(self.list[i].1))
            .sum::<u64>();
        s.first_sent.get_or_insert_with(Instant::now);
        let conn = s.conn.clone().expect("usable peer has a connection");
        let tx = self.events_tx.clone();
        let store = self.net.0.store.clone();
        let wanted: Vec<(ChunkId, u32)> = batch.iter().map(|&i| self.list[i]).collect();
        tokio::spawn(async move {
            let start = Instant::now();
            let outcome = match tokio::time::timeout(
                BATCH_TIMEOUT,
                fetch_batch(&conn, &store, &wanted),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(WireError::Stream(format!(
                    "no answer within {} s",
                    BATCH_TIMEOUT.as_secs()
                ))),
            };
            // Map positions in the batch back to positions in the list.
            let outcome = outcome.map(|o| Outcome {
                stored: o.stored.iter().map(|&k| batch[k]).collect(),
                absent: o.absent.iter().map(|&k| batch[k]).collect(),
                ..o
            });
            let _ = tx.send(Event::Batch {
                peer,
                asked: batch,
                outcome,
                elapsed: start.elapsed(),
            });
        });
    }
}

/// Ask `conn` for `wanted`, check every chunk, store the good ones. Positions in the outcome are into `wanted`.
async fn fetch_batch(
    conn: &quinn::Connection,
    store: &crate::Store,
    wanted: &[(ChunkId, u32)],
) -> Result<Outcome, WireError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    write_frame(
        &mut send,
        &SyncRequest::Chunks {
            ids: wanted.iter().map(|(c, _)| *c).collect(),
        },
    )
    .await?;
    let _ = send.finish();
    let mut records: Vec<(usize, ChunkRecordHeader, Vec<u8>)> = Vec::with_capacity(wanted.len());
    let mut outcome = Outcome::default();
    for (k, (id, len)) in wanted.iter().enumerate() {
        let max = len + len / 64 + 1024;
        let (h, body) = read_record(&mut recv, max).await?;
        outcome.wire_bytes += (ferry_protocol::sync::RECORD_HEADER_LEN + body.len()) as u64;
        if h.id != *id {
            outcome.bad = Some(format!("sent chunk {} where {id} was asked", h.id));
            break;
        }
        match h.stored_len {
            None => outcome.absent.push(k),
            Some(_) if h.raw_len != *len => {
                outcome.bad = Some(format!(
                    "sent chunk {id} as {} bytes (it is {len})",
                    h.raw_len
                ));
                break;
            }
            Some(_) => records.push((k, h, body)),
        }
    }
    if outcome.bad.is_some() {
        recv.stop(GOING_AWAY.into()).ok();
    }
    let store = store.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let verdicts: Vec<Result<(), String>> = records
            .par_iter()
            .map(|(_, h, body)| {
                let raw = crate::store::packs::decompress(body, h.raw_len)
                    .map_err(|e| format!("sent chunk {} that does not decompress: {e}", h.id))?;
                if ChunkId::of(&raw) != h.id {
                    return Err(format!(
                        "sent chunk {} whose bytes do not match its id",
                        h.id
                    ));
                }
                Ok(())
            })
            .collect();
        let mut good = Vec::new();
        let mut bad = None;
        for ((k, h, body), v) in records.iter().zip(verdicts) {
            match v {
                Ok(()) => good.push((*k, h.id, h.raw_len, body.as_slice())),
                Err(e) => {
                    bad.get_or_insert(e);
                }
            }
        }
        store
            .put_chunks(good.iter().map(|(_, id, len, body)| (*id, *len, *body)))
            .map(|_| (good.iter().map(|g| g.0).collect::<Vec<_>>(), bad))
    })
    .await
    .map_err(|e| WireError::Stream(e.to_string()))?
    .map_err(WireError::Local)?;
    outcome.stored = checked.0;
    if outcome.bad.is_none() {
        outcome.bad = checked.1;
    }
    Ok(outcome)
}

/// A run of chunks of the list to ask for as one delta.
struct DeltaRun {
    /// Positions in the list, in order.
    chunks: Vec<usize>,
    reference: ferry_protocol::delta::Reference,
    /// The zstd level the plan chose (as a bundle export of the same update would).
    level: i32,
    state: RunState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RunState {
    /// Not asked yet: its chunks wait for it.
    Pending,
    InFlight,
    /// Stored, or refused or failed (its chunks are then fetched whole).
    Done,
}

/// Most delta requests in flight to one peer (each is a level-19 encoding on its side).
const DELTAS_IN_FLIGHT: usize = 2;
/// Longest a delta may take, waiting for the holder's turn included.
const DELTA_TIMEOUT: Duration = Duration::from_secs(180);

/// The runs of the chunks this node lacks that may come as deltas against releases of the same name it holds
/// (the planner bundles use, on the receiving side). `index` maps a chunk to its place in the list.
fn plan_deltas(
    store: &Store,
    signed: &SignedRelease,
    name: &str,
    (blobs, recipes, sketches): (&[BlobRef], &HashMap<RecipeId, Recipe>, &Sketches),
    index: &HashMap<ChunkId, usize>,
) -> Result<Vec<DeltaRun>, StoreError> {
    let held = held_versions(store, name)?;
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let plan = crate::plan::plan_received(signed, blobs, recipes, |c| {
        store.has_chunk(c).unwrap_or(false)
    })?;
    let deltas = crate::delta::Deltas::plan(store, &plan, &held, sketches)?;
    Ok(deltas
        .runs
        .into_iter()
        .map(|run| DeltaRun {
            chunks: plan.chunks[run.chunks]
                .iter()
                .map(|c| index[&c.id])
                .collect(),
            reference: ferry_protocol::delta::Reference {
                recipe: deltas.bases[run.base as usize].0,
                ranges: run.ranges,
            },
            level: deltas.level,
            state: RunState::Pending,
        })
        .collect())
}

/// The versions of `name` this store holds (`name@version`), oldest first: the bases a sync plans against.
fn held_versions(store: &Store, name: &str) -> Result<Vec<String>, StoreError> {
    Ok(store
        .releases()?
        .into_iter()
        .filter(|r| r.manifest.name == name)
        .map(|r| r.manifest.id())
        .collect())
}

/// What came of one delta.
#[derive(Debug)]
pub(crate) enum DeltaOutcome {
    /// Stored: bytes received, and saved against the chunks as this store keeps them.
    Stored { wire: u64, saved: u64 },
    /// The peer would not (it lacks the base, or the delta was no smaller): fetch the chunks whole.
    Refused(String),
    /// Bytes that fail verification: drop the peer.
    Bad(String),
    /// This node could not store them (its disk is full): the sync stops.
    Local(crate::StoreError),
}

/// Ask `conn` for the chunks `wanted` as a delta against `reference`, decode it against this store, check
/// every chunk against its id and store them.
async fn fetch_delta(
    conn: &quinn::Connection,
    store: &crate::Store,
    wanted: Vec<(ChunkId, u32)>,
    reference: ferry_protocol::delta::Reference,
    level: i32,
) -> Result<DeltaOutcome, WireError> {
    let answer = request(
        conn,
        &SyncRequest::Delta {
            ids: wanted.iter().map(|(c, _)| *c).collect(),
            reference: reference.clone(),
            level,
        },
    )
    .await?;
    let (frame, check) = match answer {
        SyncResponse::Delta { frame, check } => (frame, check),
        SyncResponse::Refused(why) => return Ok(DeltaOutcome::Refused(why)),
        other => {
            return Ok(DeltaOutcome::Refused(format!(
                "unexpected answer to a delta request: {other:?}"
            )))
        }
    };
    let store = store.clone();
    tokio::task::spawn_blocking(move || store_delta(&store, &wanted, &reference, &frame, &check))
        .await
        .map_err(|e| WireError::Stream(e.to_string()))
}

/// Decode a delta a peer sent against this store's own reference, check each chunk against its id, store.
pub(crate) fn store_delta(
    store: &crate::Store,
    wanted: &[(ChunkId, u32)],
    reference: &ferry_protocol::delta::Reference,
    frame: &[u8],
    check: &[u8; ferry_protocol::delta::CHECK_LEN],
) -> DeltaOutcome {
    let base = match crate::delta::read_reference(store, reference) {
        Ok(b) => b,
        // This node's own base went (collected meanwhile): the chunks come whole.
        Err(e) => return DeltaOutcome::Refused(format!("this node's base: {e}")),
    };
    let len: usize = wanted.iter().map(|(_, l)| *l as usize).sum();
    let out = match crate::delta::decode(&base, frame, len, check) {
        Ok(out) => out,
        Err(e) => {
            return DeltaOutcome::Bad(format!(
            "sent a delta for {} chunks from {} against base recipe {} that does not decode: {e}",
            wanted.len(),
            wanted[0].0,
            reference.recipe
        ))
        }
    };
    let mut buf = Vec::with_capacity(len / 2);
    let mut items = Vec::with_capacity(wanted.len());
    let mut at = 0usize;
    for (id, l) in wanted {
        let bytes = &out[at..at + *l as usize];
        at += *l as usize;
        if ChunkId::of(bytes) != *id {
            return DeltaOutcome::Bad(format!(
                "sent a delta whose chunk {id} does not match its id"
            ));
        }
        let start = buf.len();
        if let Err(e) = store.compress_chunk_into(bytes, &mut buf) {
            return DeltaOutcome::Refused(e.to_string());
        }
        items.push((*id, *l, start..buf.len()));
    }
    let whole: u64 = items
        .iter()
        .map(|(_, _, r)| (r.len() + ferry_protocol::sync::RECORD_HEADER_LEN) as u64)
        .sum();
    match store.put_chunks(items.iter().map(|(id, l, r)| (*id, *l, &buf[r.clone()]))) {
        Ok(_) => DeltaOutcome::Stored {
            wire: frame.len() as u64,
            saved: whole.saturating_sub(frame.len() as u64),
        },
        Err(e) if e.is_no_space() => DeltaOutcome::Local(e),
        Err(e) => DeltaOutcome::Refused(format!("storing chunks: {e}")),
    }
}

/// Positions `0..n` in segments of [`SEGMENT`], the segments shuffled by a generator seeded with this node's
/// peer id, so nodes started together walk the list in different orders.
fn walk_order(n: usize, local: &PeerId) -> Vec<usize> {
    let segments = n.div_ceil(SEGMENT);
    let mut seg: Vec<usize> = (0..segments).collect();
    let seed = blake3::hash(&local.to_bytes());
    let mut state = u64::from_le_bytes(seed.as_bytes()[..8].try_into().expect("8 bytes")) | 1;
    for i in (1..segments).rev() {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        seg.swap(i, (r % (i as u64 + 1)) as usize);
    }
    seg.into_iter()
        .flat_map(|s| s * SEGMENT..((s + 1) * SEGMENT).min(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_orders_cover_the_list_once_and_differ_between_nodes() {
        let a = PeerId::random();
        let b = PeerId::random();
        let n = 10 * SEGMENT + 7;
        let oa = walk_order(n, &a);
        let mut sorted = oa.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        assert_eq!(oa, walk_order(n, &a), "the same node walks the same way");
        assert_ne!(oa, walk_order(n, &b));
        assert!(walk_order(0, &a).is_empty());
    }
}
