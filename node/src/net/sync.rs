//! Fetching a release from peers.
//!
//! 1. The signed release, from a peer that announced it; its signature is checked against the store's trusted
//!    publisher keys whoever sent it (a peer is only a courier).
//! 2. The recipes the store lacks, each checked against its id.
//! 3. The release's chunk list — every distinct chunk of its blobs, in order of first use — less what the store
//!    holds: the same want/have computation as a bundle's plan (`crate::plan`), done by the receiver.
//! 4. Batches from every peer that holds them, as [`schedule`](super::schedule) picks them (sized by each peer's
//!    measured throughput, a slow peer's overdue batch hedged to a faster holder) and [`driver`] asks for them.
//!    Peers still syncing the same release answer what they hold as changes to a bitmap, kept in memory as
//!    their chunks land ([`Held`]), so nodes of a site feed each other; they split the release's segments among
//!    themselves, each taking its own share from the seed and the rest from the others.
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
use ferry_protocol::sync::{
    set_bit, Announced, ChunkRecordHeader, HaveMark, SyncRequest, SyncResponse,
};
use ferry_protocol::{BlobRef, ChunkId, Object, Part, Recipe, RecipeId, SignedRelease};
use libp2p::PeerId;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

mod driver;
mod spool;
use driver::Fetch;
use spool::RecipeSpool;
pub use spool::SpoolError;

/// Stored chunks are committed this often: only committed chunks can be served, or shown in a bitmap to peers
/// syncing beside this node.
const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// Longest one batch may take before its peer is given up on for it.
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// The recipes fetched could not be kept on disk (a full disk, an unwritable `tmp/`).
    #[error(transparent)]
    Spool(#[from] SpoolError),
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
    /// What it holds of the release's chunk list, once the list is known.
    pub(crate) held: Mutex<Option<Held>>,
    /// Recipes fetched and not yet stored, so peers can have them too, and the blobs' records at the end.
    pub(crate) recipes: Arc<Mutex<RecipeSpool>>,
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

    /// The store holds these recipes now: peers are answered from it.
    fn forget_recipes(&self, ids: &[RecipeId]) {
        self.recipes.lock().expect("poisoned").forget(ids);
    }

    /// Chunks `positions` of the list are committed: peers may be told.
    fn show_held(&self, positions: &[usize]) {
        if let Some(h) = self.held.lock().expect("poisoned").as_mut() {
            h.add(positions);
        }
    }
}

/// What a sync holds of its release's chunk list, kept in memory for peers syncing beside it: the bitmap, and
/// the positions in the order they were committed, so a peer is told only what changed since it last asked.
/// At most `n / 8 + 4 n` bytes for a list of `n` chunks (each position is logged once).
pub(crate) struct Held {
    epoch: u64,
    bits: Vec<u8>,
    log: Vec<u32>,
}

impl Held {
    /// `bits`: what the store held when the sync began.
    fn new(bits: Vec<u8>) -> Held {
        use rand_core::RngCore;
        Held {
            epoch: rand_core::OsRng.next_u64(),
            bits,
            log: Vec::new(),
        }
    }

    fn add(&mut self, positions: &[usize]) {
        for &i in positions {
            if i / 8 < self.bits.len() && !ferry_protocol::sync::bit(&self.bits, i) {
                set_bit(&mut self.bits, i);
                self.log.push(i as u32);
            }
        }
    }

    /// The whole bitmap.
    pub(crate) fn bits(&self) -> Vec<u8> {
        self.bits.clone()
    }

    /// The answer to a peer that last heard `since`: the positions added since, or the whole bitmap when the mark
    /// is of another epoch or the positions would take more room.
    pub(crate) fn changes(&self, since: Option<HaveMark>) -> SyncResponse {
        let count = self.log.len() as u64;
        let mark = HaveMark {
            epoch: self.epoch,
            count,
        };
        match since {
            Some(m)
                if m.epoch == self.epoch
                    && m.count <= count
                    && (count - m.count) * 4 < self.bits.len() as u64 =>
            {
                SyncResponse::HaveChanges {
                    mark,
                    bits: None,
                    added: self.log[m.count as usize..].to_vec(),
                }
            }
            _ => SyncResponse::HaveChanges {
                mark,
                bits: Some(self.bits.clone()),
                added: Vec::new(),
            },
        }
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
            held: Mutex::new(None),
            recipes: Arc::new(Mutex::new(RecipeSpool::new(
                &self.0.store.root().join("tmp"),
            ))),
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
            r.held.lock().expect("poisoned").take();
            r.recipes.lock().expect("poisoned").clear();
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

    /// Recipe `id`, if a sync in progress fetched it (for peers that ask). Reads a file: blocking threads only.
    pub(crate) fn running_recipe(&self, id: &RecipeId) -> Option<Vec<u8>> {
        let spools: Vec<_> = {
            let syncs = self.0.syncs.lock().expect("poisoned");
            syncs
                .values()
                .filter(|r| !r.finished())
                .map(|r| r.recipes.clone())
                .collect()
        };
        spools.iter().find_map(|s| {
            s.lock().expect("poisoned").get(id).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read a spooled recipe for a peer");
                None
            })
        })
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
    running: &Arc<Running>,
) -> Result<SyncReport, SyncError> {
    let store = net.0.store.clone();
    let started = Instant::now();
    let _op = store.begin("sync");
    let held_already = {
        let id = id.to_string();
        store.blocking(move |s| s.signed_release(&id)).await?
    };
    if held_already.is_some() {
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
    tracing::debug!(release = id, at = ?started.elapsed(), "signed release fetched");
    // The versions of the name held: the bases of recipes and deltas. With none there is nothing to ask deltas
    // against: recipes fetched stay encoded and each goes as soon as its chunks are listed (a release of 1.5 M
    // chunks: 90 MB of recipes encoded, 180 MB more parsed).
    let held_versions = {
        let name = manifest.name.clone();
        store.blocking(move |s| held_versions(s, &name)).await?
    };
    let deltas_possible = !held_versions.is_empty();
    let (mut recipes, unnamed) =
        fetch_recipes(net, id, from, &manifest, running, &held_versions).await?;
    tracing::debug!(release = id, at = ?started.elapsed(), "recipes fetched");
    let sketches = fetch_sketches(net, id, from, &unnamed, &recipes.parsed).await;

    let sequence = manifest.sequence;
    // From here the manifest is not needed (accepting the release reads `signed`): a release of 100,000 files
    // keeps ~70 MB of parsed entries.
    drop(manifest);
    // The chunk list, in order of first use, as every node computes it: CPU work (0.7 s for 1.5 M chunks), off
    // the async threads.
    let (list, index, accepting, blobs, recipes) = {
        let running = running.clone();
        tokio::task::spawn_blocking(move || {
            let (list, index, accepting) =
                list_chunks(&blobs, &mut recipes, deltas_possible, &running)?;
            Ok::<_, SyncError>((list, index, accepting, blobs, recipes))
        })
        .await
        .expect("listing chunks panicked")?
    };
    let list = Arc::new(list);
    let held: Vec<bool> = {
        let list = list.clone();
        store
            .blocking(move |store| {
                list.iter()
                    .map(|(c, _)| store.has_chunk(c))
                    .collect::<Result<_, _>>()
            })
            .await?
    };
    let mut bits = vec![0u8; list.len().div_ceil(8)];
    for (i, _) in held.iter().enumerate().filter(|(_, h)| **h) {
        set_bit(&mut bits, i);
    }
    *running.held.lock().expect("poisoned") = Some(Held::new(bits));
    // Runs of the chunks this node lacks to ask for as deltas against what it holds (the planner bundles use).
    let (runs, recipes) = if !deltas_possible {
        // Chunks are found by position from here: the map by id (36 MB at 1.5 M chunks) can go.
        drop((blobs, index));
        (Ok(Vec::new()), recipes)
    } else {
        let store = store.clone();
        let list_for_deltas = list.clone();
        let signed = signed.clone();
        tokio::task::spawn_blocking(move || {
            let runs = plan_deltas(
                &store,
                &signed,
                &held_versions,
                (&blobs, &recipes.parsed, &sketches),
                (&index, &list_for_deltas),
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
    // The signed release is needed again only at the end: it waits on disk through the fetch, where the
    // node's memory peaks.
    let envelope = crate::plan::envelope_hash(&signed);
    let parked = {
        let dir = store.root().join("tmp");
        tokio::task::spawn_blocking(move || spool::Parked::new(&dir, &signed.encode()))
            .await
            .expect("parking the release panicked")?
    };
    let mut fetch = Fetch::new(
        net,
        id,
        from,
        (list.clone(), &held),
        accepting,
        runs,
        running,
    );
    drop(held);
    fetch.run().await?;
    tracing::debug!(release = id, at = ?started.elapsed(), chunks = list.len(), "chunks fetched");
    // The list (54 MB at 1.5 M chunks) is not needed to record blobs and the release, where memory peaks.
    drop(list);

    // Blobs not made visible while the chunks arrived, then the release.
    let (whole, partial) = fetch.accepting.unaccepted();
    drop(fetch);
    let mut missing = accept_blobs(store.clone(), running, whole, true).await?;
    missing.extend(accept_blobs(store.clone(), running, partial, false).await?);
    if !missing.is_empty() {
        return Err(SyncError::Incomplete {
            id: id.to_string(),
            count: missing.len(),
        });
    }
    tracing::debug!(release = id, at = ?started.elapsed(), "blobs accepted");
    let older = {
        let (store, id) = (store.clone(), id.to_string());
        tokio::task::spawn_blocking(move || {
            let signed: SignedRelease = parked.take(&format!("release {id}"))?;
            let accepted = store.accept_release(&signed)?;
            Ok::<_, SyncError>(matches!(
                accepted,
                crate::store::accept::Accepted::Older { .. }
            ))
        })
        .await
        .expect("accepting the release panicked")?
    };
    tracing::debug!(release = id, at = ?started.elapsed(), "release accepted");
    {
        let p = running.progress();
        let detail = serde_json::json!({
            "announced_by": from.map(|f| f.to_string()),
            "wire_bytes": p.wire_bytes,
            "chunks": p.chunks_done,
            "dropped": p.dropped,
        });
        let releases = vec![id.to_string()];
        store
            .blocking(move |s| s.audit_or_warn("sync", releases, detail))
            .await;
    }
    net.announce(Announced {
        id: id.to_string(),
        sequence,
        envelope,
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

/// A release's chunk list, the positions by id, and which recipes use which chunks ([`list_chunks`]).
type Listed = (Vec<(ChunkId, u32)>, Positions, Accepting);

/// The chunk list of a release's `blobs` in order of first use, the positions by id, and which recipes use which
/// chunks. Its length is at most the parts of the distinct recipes: reserved once, trimmed after (a list grown by
/// doubling holds up to twice). `keep`: recipes stay in `recipes` (deltas are planned over them); otherwise each
/// goes as its chunks are listed.
fn list_chunks(
    blobs: &[BlobRef],
    recipes: &mut Recipes,
    keep: bool,
    running: &Running,
) -> Result<Listed, SpoolError> {
    let most = {
        let mut seen = HashSet::new();
        blobs
            .iter()
            .filter(|b| seen.insert(b.recipe))
            .map(|b| recipes.parts(&b.recipe))
            .sum()
    };
    let mut list = Vec::with_capacity(most);
    let mut index = Positions::default();
    let mut accepting = Accepting::default();
    for b in blobs {
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
        let taken;
        let recipe = if keep {
            &recipes.parsed[&b.recipe]
        } else {
            taken = recipes.take(&b.recipe, running)?;
            &taken
        };
        for part in recipe.parts() {
            if let Part::Chunk { id: c, len } = *part {
                let (i, new) = index.insert(&mut list, c, len);
                if seen_here.insert(i) {
                    accepting.users.add(i, new, r);
                    accepting.left[r] += 1;
                }
            }
        }
    }
    list.shrink_to_fit();
    Ok((list, index, accepting))
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
            let wanted = id.to_string();
            let checked = store
                .blocking(move |store| {
                    let s = SignedRelease::decode(&bytes).map_err(|e| e.to_string())?;
                    let m = store
                        .verify_release(&wanted, &s)
                        .map_err(|e| e.to_string())?;
                    if m.id() != wanted {
                        return Err(format!("it holds release {} instead", m.id()));
                    }
                    Ok((s, m))
                })
                .await;
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

/// Recipes asked for in one request.
const RECIPES_PER_REQUEST: usize = 4096;

/// A release's recipes during a sync: parsed, or — fetched while no delta can be planned — left encoded in
/// [`Running::recipes`] (kept there for peers anyway) and parsed again when the chunk list is made, so they
/// are not held twice.
struct Recipes {
    parsed: HashMap<RecipeId, Recipe>,
    /// The parts of each recipe left encoded.
    encoded: HashMap<RecipeId, usize>,
}

impl Recipes {
    fn contains(&self, id: &RecipeId) -> bool {
        self.parsed.contains_key(id) || self.encoded.contains_key(id)
    }

    fn parts(&self, id: &RecipeId) -> usize {
        self.parsed
            .get(id)
            .map_or_else(|| self.encoded[id], |r| r.parts().len())
    }

    /// Recipe `id`, taken out: parsed, or parsed from its spooled copy (which stays for peers).
    fn take(&mut self, id: &RecipeId, running: &Running) -> Result<Recipe, SpoolError> {
        if let Some(r) = self.parsed.remove(id) {
            return Ok(r);
        }
        self.encoded.remove(id);
        let recipe = running.recipes.lock().expect("poisoned").recipe(id)?;
        Ok(recipe.expect("every recipe was fetched"))
    }
}

/// The recipes of `manifest`'s blobs: from the store, else from peers (each checked against its id, on the
/// blocking pool, answer by answer as they come), as differences against `held` versions of the name when there
/// are any — and then kept parsed too, as deltas are planned over them.
async fn fetch_recipes(
    net: &Network,
    id: &str,
    from: Option<PeerId>,
    manifest: &ferry_protocol::ReleaseManifest,
    running: &Running,
    held: &[String],
) -> Result<(Recipes, Vec<RecipeId>), SyncError> {
    let keep_parsed = !held.is_empty();
    let store = &net.0.store;
    let blobs = manifest.blobs();
    let (parsed, lacking, lacking_set) = store
        .blocking(move |store| {
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
            Ok::<_, StoreError>((out, lacking, lacking_set))
        })
        .await?;
    let mut out = Recipes {
        parsed,
        encoded: HashMap::new(),
    };
    let mut lacking = lacking;
    // The recipes this node lacks come as differences against the recipe of the same entry in a version it
    // holds, when it holds one.
    let bases: Option<RecipeBases> = if lacking.is_empty() {
        None
    } else {
        let store = store.clone();
        let manifest = manifest.clone();
        let lacking = lacking_set.clone();
        let held = held.to_vec();
        tokio::task::spawn_blocking(move || recipe_bases(&store, &manifest, &held, &lacking))
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
    let bases = Arc::new(bases.unwrap_or_default());
    let mut round = 0;
    let mut stuck = false;
    while !lacking.is_empty() {
        let before = lacking.len();
        // Every group at once, spread over the peers: one request after another would pay a round trip per
        // group, seconds of an idle link on a WAN before the first chunk is asked for. Each answer is taken as
        // it comes, so they are not all held at once.
        let sources = recipe_sources(net.sources(id, from), stuck);
        let mut asks: futures::stream::FuturesUnordered<_> = lacking
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
            })
            .collect();
        while let Some(answer) = futures::StreamExt::next(&mut asks).await {
            let Ok((peer, wanted, answer)) = answer else {
                continue;
            };
            let bases = bases.clone();
            let spool = running.recipes.clone();
            // Rebuilt, checked and written to the spool: CPU work and a file write.
            let rebuilt = tokio::task::spawn_blocking(move || {
                let Some((size, rebuilt)) = rebuild_recipes(peer, &wanted, answer, &bases) else {
                    return Ok(None);
                };
                let mut spool = spool.lock().expect("poisoned");
                let mut out = Vec::with_capacity(rebuilt.len());
                for (rid, recipe, bytes) in rebuilt {
                    spool.insert(rid, &bytes)?;
                    out.push((rid, recipe));
                }
                Ok::<_, SpoolError>(Some((size, out)))
            })
            .await
            .expect("rebuilding recipes panicked")?;
            let Some((size, rebuilt)) = rebuilt else {
                continue;
            };
            running.set(|p| p.recipe_bytes += size);
            for (rid, recipe) in rebuilt {
                if keep_parsed {
                    out.parsed.insert(rid, recipe);
                } else {
                    out.encoded.insert(rid, recipe.parts().len());
                }
            }
        }
        lacking.retain(|r| !out.contains(r));
        round += 1;
        // Wait for peers only when a whole round of asking brought nothing; otherwise ask for the next group
        // at once.
        stuck = lacking.len() == before;
        if !lacking.is_empty() && stuck {
            running.set(|p| {
                p.state = format!("waiting for peers with {} recipes of {id}", lacking.len())
            });
            net.peers_changed(Duration::from_secs(2)).await;
        }
    }
    Ok((out, unnamed))
}

/// Whom to ask for recipes, in turn: the peers that hold the release whole, which hold every recipe of it —
/// or, when none does or a round of asking them brought nothing, every peer (one syncing the release keeps the
/// recipes it fetched for others). Asking a peer that is itself still starting the same sync, as nodes started
/// together all are, brings nothing and would cost a wait for peers before the next round.
fn recipe_sources(
    sources: Vec<(PeerId, SocketAddr, bool)>,
    widen: bool,
) -> Vec<(PeerId, SocketAddr, bool)> {
    if widen || !sources.iter().any(|(_, _, holds)| *holds) {
        return sources;
    }
    sources.into_iter().filter(|(_, _, holds)| *holds).collect()
}

/// The recipes of `peer`'s `answer` to a request for `wanted`, each rebuilt from its difference and checked
/// against its id (those that fail are left out, with a warning), with their encoded bytes; and the answer's
/// size. `None` if it is not an answer to that request.
#[allow(clippy::type_complexity)]
fn rebuild_recipes(
    peer: PeerId,
    wanted: &[(RecipeId, Option<RecipeId>)],
    answer: SyncResponse,
    bases: &RecipeBases,
) -> Option<(u64, Vec<(RecipeId, Recipe, Vec<u8>)>)> {
    let size = answer.encode().len() as u64;
    let SyncResponse::RecipeDiffs(got) = answer else {
        return None;
    };
    let mut out = Vec::with_capacity(got.len());
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
        match diff.rebuild_checked(base, |_| None) {
            Ok((recipe, bytes)) => out.push((*rid, recipe, bytes)),
            Err(e) => {
                tracing::warn!(%peer, recipe = %rid, error = %e, "a peer sent a recipe that does not rebuild to its id");
            }
        }
    }
    Some((size, out))
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

/// For each recipe of `lacking`, the recipe of the same entry in one of the `held` releases of the same name;
/// `None` when none is held.
fn recipe_bases(
    store: &Store,
    manifest: &ferry_protocol::ReleaseManifest,
    held: &[String],
    lacking: &HashSet<RecipeId>,
) -> Result<Option<RecipeBases>, StoreError> {
    let mut out = HashMap::new();
    if held.is_empty() {
        return Ok(None);
    }
    let names = HashSet::from([manifest.name.clone()]);
    let index = crate::delta::BaseIndex::new(store, held, &names)?;
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
/// [`ACCEPT_BATCH`] blobs at a time, so the copies of their recipes are made a group at a time and the sync's own
/// copies go as the store takes them. `stored`: every chunk of these blobs is known stored (see
/// [`accept_blobs_with`]).
async fn accept_blobs(
    store: Store,
    running: &Running,
    blobs: Vec<BlobRef>,
    stored: bool,
) -> Result<Vec<BlobRef>, SyncError> {
    let mut missing = Vec::new();
    for group in blobs.chunks(ACCEPT_BATCH) {
        let (still, recorded) = accept_blobs_with(
            store.clone(),
            running.recipes.clone(),
            group.to_vec(),
            stored,
        )
        .await?;
        running.forget_recipes(&recorded);
        missing.extend(still);
    }
    Ok(missing)
}

/// Of `recipes` given to the store with `blobs`, those it holds now: all but the recipes of blobs it returned
/// incomplete.
fn recorded(recipes: Vec<RecipeId>, incomplete: &[BlobRef]) -> Vec<RecipeId> {
    let incomplete: HashSet<RecipeId> = incomplete.iter().map(|b| b.recipe).collect();
    recipes
        .into_iter()
        .filter(|r| !incomplete.contains(r))
        .collect()
}

/// The recipes of `blobs` this sync fetched (those the store holds are not among them), read from its spool.
fn fetched_recipes(
    spool: &Mutex<RecipeSpool>,
    blobs: &[BlobRef],
) -> Result<HashMap<RecipeId, Vec<u8>>, SpoolError> {
    let spool = spool.lock().expect("poisoned");
    let mut out = HashMap::new();
    for b in blobs {
        if let std::collections::hash_map::Entry::Vacant(e) = out.entry(b.recipe) {
            if let Some(bytes) = spool.get(&b.recipe)? {
                e.insert(bytes);
            }
        }
    }
    Ok(out)
}

/// Record `blobs` on a blocking thread, their recipes read from the sync's `spool`: the blobs still incomplete,
/// and the spooled recipes the store holds now. `stored`: the sync counted every chunk of them stored, found in
/// the store when it began (looked up then) or stored by it since ([`Accepting::stored`]), so the store need not
/// look each up again; a collection that began noting after the sync did saw those lookups and writes, and one
/// that began before waits for the sync to end.
async fn accept_blobs_with(
    store: Store,
    spool: Arc<Mutex<RecipeSpool>>,
    blobs: Vec<BlobRef>,
    stored: bool,
) -> Result<(Vec<BlobRef>, Vec<RecipeId>), SyncError> {
    if blobs.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    tokio::task::spawn_blocking(move || {
        let encoded = fetched_recipes(&spool, &blobs)?;
        let missing = if stored {
            store.accept_stored_blobs(&encoded, &blobs)
        } else {
            store.accept_blobs(&encoded, &blobs)
        }?;
        let recorded = recorded(encoded.into_keys().collect(), &missing);
        Ok((missing, recorded))
    })
    .await
    .expect("accept_blobs panicked")
}

/// At most this many blobs are recorded at a time. While chunks arrive, a batch every 500 ms at most, and after
/// one that took T (its commit of the chunks stored since the last included) not before 4T: with 2,000 a batch a
/// loopback sync of 1.5 M chunks recorded 19,000 of its 117,000 blobs on the way and kept the rest's recipes to
/// the end. A batch's recipes are copied once more while it is recorded (~8 MB at this size).
const ACCEPT_BATCH: usize = 10_000;

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
    users: Users,
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

/// Positions in the chunk list by chunk id, in about 17 bytes a chunk where a map of whole ids takes 41 (a
/// release of a million chunks: 36 MB against 86 MB): keyed by the id's first eight bytes, each hit checked
/// against the list; an id whose first eight bytes another chunk of the list has already (by chance, or made so
/// by whoever cut the chunks) is kept whole aside.
#[derive(Default)]
struct Positions {
    by_prefix: HashMap<u64, u32>,
    whole: HashMap<ChunkId, u32>,
}

fn prefix(id: &ChunkId) -> u64 {
    let b = id.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl Positions {
    /// The position of `id` in `list`.
    fn get(&self, list: &[(ChunkId, u32)], id: &ChunkId) -> Option<usize> {
        match self.by_prefix.get(&prefix(id)) {
            Some(&i) if list[i as usize].0 == *id => Some(i as usize),
            Some(_) => self.whole.get(id).map(|&i| i as usize),
            None => None,
        }
    }

    /// The position of `id`, appended to `list` (with `len`) when it is not there yet; and whether it was new.
    fn insert(&mut self, list: &mut Vec<(ChunkId, u32)>, id: ChunkId, len: u32) -> (usize, bool) {
        if let Some(i) = self.get(list, &id) {
            return (i, false);
        }
        // Positions go to peers as u32 (`HaveChanges`); a list that long (4 Gi chunks) would not fit in memory.
        let i = u32::try_from(list.len()).expect("a chunk list under 4 Gi chunks");
        list.push((id, len));
        match self.by_prefix.entry(prefix(&id)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.whole.insert(id, i);
            }
        }
        (i as usize, true)
    }
}

/// Per chunk of the list, the recipes that use it: nearly every chunk has one only, so the first is kept in
/// line (4 bytes a chunk) and the others aside, where a vector per chunk took about 40.
#[derive(Default)]
struct Users {
    first: Vec<u32>,
    more: HashMap<u32, Vec<u32>>,
}

impl Users {
    /// Recipe `r` uses chunk `i`; `new`: `i` is the list's latest chunk and this its first user.
    fn add(&mut self, i: usize, new: bool, r: usize) {
        let r = u32::try_from(r).expect("under 4 Gi recipes");
        if new {
            debug_assert_eq!(i, self.first.len());
            self.first.push(r);
        } else {
            let i = u32::try_from(i).expect("a chunk list under 4 Gi chunks");
            self.more.entry(i).or_default().push(r);
        }
    }

    /// The recipes that use chunk `i`.
    fn of(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let more = u32::try_from(i)
            .ok()
            .and_then(|i| self.more.get(&i))
            .map_or(&[][..], |v| v.as_slice());
        std::iter::once(self.first[i])
            .chain(more.iter().copied())
            .map(|r| r as usize)
    }
}

impl Accepting {
    /// Chunk `i` of the list is stored.
    fn stored(&mut self, i: usize) {
        for r in self.users.of(i) {
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

    /// Every blob not recorded yet: those whose chunks are all stored, and the others.
    fn unaccepted(&self) -> (Vec<BlobRef>, Vec<BlobRef>) {
        let (mut whole, mut partial) = (Vec::new(), Vec::new());
        for r in (0..self.recipes.len()).filter(|&r| !self.taken.get(r).copied().unwrap_or(false)) {
            let to = if self.left[r] == 0 {
                &mut whole
            } else {
                &mut partial
            };
            to.extend_from_slice(&self.blobs_of[r]);
        }
        (whole, partial)
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
                crate::store::packs::verify(body, h.raw_len, &h.id)
                    .map_err(|e| format!("sent chunk {}, which {e}", h.id))
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
    held: &[String],
    (blobs, recipes, sketches): (&[BlobRef], &HashMap<RecipeId, Recipe>, &Sketches),
    (index, list): (&Positions, &[(ChunkId, u32)]),
) -> Result<Vec<DeltaRun>, StoreError> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let plan = crate::plan::plan_received(signed, blobs, recipes, |c| {
        store.has_chunk(c).unwrap_or(false)
    })?;
    let deltas = crate::delta::Deltas::plan(store, &plan, held, sketches)?;
    Ok(deltas
        .runs
        .into_iter()
        .map(|run| DeltaRun {
            chunks: plan.chunks[run.chunks]
                .iter()
                .map(|c| {
                    index
                        .get(list, &c.id)
                        .expect("a planned chunk is in the list")
                })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(r: SyncResponse) -> (HaveMark, Option<Vec<u8>>, Vec<u32>) {
        match r {
            SyncResponse::HaveChanges { mark, bits, added } => (mark, bits, added),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recipes_are_asked_of_holders_and_of_everyone_only_when_holders_bring_nothing() {
        let addr: SocketAddr = "10.0.0.1:7701".parse().unwrap();
        let [seed, a, b] = [(); 3].map(|_| PeerId::random());
        let peers = vec![(seed, addr, true), (a, addr, false), (b, addr, false)];
        let ids =
            |v: Vec<(PeerId, SocketAddr, bool)>| v.into_iter().map(|p| p.0).collect::<Vec<_>>();
        // Sites started together: the two others are still starting their own sync and hold no recipe.
        assert_eq!(ids(recipe_sources(peers.clone(), false)), vec![seed]);
        assert_eq!(ids(recipe_sources(peers.clone(), true)), vec![seed, a, b]);
        // No holder connected: peers syncing the release may have the recipes.
        let siblings = peers[1..].to_vec();
        assert_eq!(ids(recipe_sources(siblings, false)), vec![a, b]);
    }

    #[test]
    fn a_peer_is_told_only_what_changed_since_its_mark() {
        let n = 1000;
        let mut start = vec![0u8; n / 8];
        set_bit(&mut start, 3);
        let mut held = Held::new(start.clone());
        let (first, bits, added) = decoded(held.changes(None));
        assert_eq!((bits, added, first.count), (Some(start), vec![], 0));
        held.add(&[10, 3, 11, 10, n + 5]);
        let (second, bits, added) = decoded(held.changes(Some(first)));
        assert_eq!(
            (bits, added),
            (None, vec![10, 11]),
            "once each, held before and past the list left out"
        );
        assert_eq!(second.count, 2);
        let (_, bits, added) = decoded(held.changes(Some(second)));
        assert_eq!((bits, added), (None, vec![]));
        // A mark of another sync, or changes larger than the bitmap: the whole bitmap.
        let other = HaveMark {
            epoch: second.epoch ^ 1,
            count: 1,
        };
        assert!(decoded(held.changes(Some(other))).1.is_some());
        held.add(&(100..200).collect::<Vec<_>>());
        let (_, bits, added) = decoded(held.changes(Some(second)));
        let bits = bits.expect("400 bytes of positions against a 125-byte bitmap");
        assert!(
            added.is_empty()
                && ferry_protocol::sync::bit(&bits, 150)
                && ferry_protocol::sync::bit(&bits, 3)
        );
    }
}
