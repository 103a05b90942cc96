//! The data plane: a quinn endpoint that answers peers' requests from the store (and from syncs in progress),
//! and opens connections to peers for [`super::sync`].
//!
//! What a caller can make the node hold is bounded where it enters: [`MAX_HANDSHAKES`] handshakes at once (each
//! within [`HANDSHAKE_TIMEOUT`]), [`MAX_CONNECTIONS`] connections in all and [`CONNECTIONS_PER_PEER`] from one
//! peer; on each connection [`STREAMS_PER_CONNECTION`] requests answered at once (more wait, unread) and requests
//! paced per peer ([`super::conduct::REQUESTS_PER_SEC`]); each request's bytes never idle for [`REQUEST_IDLE`],
//! whole within [`REQUEST_TIMEOUT`], at most [`MAX_REQUEST`] bytes, held only as they arrive; each answer done within [`ANSWER_TIMEOUT`]. A request
//! that breaks the protocol is refused on its stream and counted against the peer ([`super::conduct`]).

use super::tls;
use super::wire::{read_frame, read_request, write_frame, WireError};
use super::Network;
use bytes::Bytes;
use ferry_protocol::sync::{
    ChunkRecordHeader, SyncRequest, SyncResponse, MAX_BATCH_CHUNKS, RECORD_HEADER_LEN,
};
use ferry_protocol::{ChunkId, RecipeId};
use libp2p::PeerId;
use libp2p_identity::Keypair;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Close code: the caller is not on this node's allow-list.
pub const NOT_ALLOWED: u32 = 1;
/// Close code: the node is shutting down, or a sync dropped the peer.
pub const GOING_AWAY: u32 = 2;
/// Close code: the node dropped the peer for protocol violations, or refuses it for a while after that (the close
/// reason says why).
pub const DROPPED: u32 = 3;
/// Close code: the node holds as many connections as it takes (from this peer, or in all).
pub const BUSY: u32 = 4;
/// Stream stop code: the request broke the protocol; the node reads no more of it.
pub const VIOLATION: u32 = 5;

/// Handshakes in progress at once; callers past it are refused before any cryptography.
pub const MAX_HANDSHAKES: usize = 64;
/// A handshake not done by then is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted and held at once, from all peers.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections held at once from one peer (a sync uses one; a restarted peer may briefly hold two).
pub const CONNECTIONS_PER_PEER: usize = 4;
/// Requests answered at once on one connection; streams past it wait, unread, until one is done (a sync keeps
/// about a dozen in flight).
pub const STREAMS_PER_CONNECTION: usize = 32;
/// Largest request frame (the largest a sync sends, a delta request of 16 Ki chunks against 64 Ki ranges, is
/// under 2 MiB).
pub const MAX_REQUEST: u32 = 4 << 20;
/// A request whose stream brings nothing for this long, the request unfinished, is a violation…
pub const REQUEST_IDLE: Duration = Duration::from_secs(10);
/// …and so is one not whole this long after the node took it up (the largest honest request, under 2 MiB, takes
/// 16 s at 1 Mbit/s; most are a few KiB).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// An answer still being written after this is abandoned (askers give up on a batch after a minute and on a delta
/// after three).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Deltas encoded for peers at once (each holds a reference of up to 64 MiB and zstd's tables for it).
pub const DELTA_JOBS: usize = 2;

/// The quinn endpoint and the connections it opened.
pub struct DataPlane {
    endpoint: quinn::Endpoint,
    key: Keypair,
    conns: Mutex<HashMap<PeerId, quinn::Connection>>,
    /// Connections peers opened to this node, by peer.
    inbound: Arc<Mutex<HashMap<PeerId, Vec<quinn::Connection>>>>,
}

/// An accepted connection counted in [`DataPlane`]'s inbound connections until dropped.
struct Inbound {
    inbound: Arc<Mutex<HashMap<PeerId, Vec<quinn::Connection>>>>,
    peer: PeerId,
    id: usize,
}

impl Drop for Inbound {
    fn drop(&mut self) {
        let mut inbound = self.inbound.lock().expect("poisoned");
        if let Some(conns) = inbound.get_mut(&self.peer) {
            conns.retain(|c| c.stable_id() != self.id);
            if conns.is_empty() {
                inbound.remove(&self.peer);
            }
        }
    }
}

impl DataPlane {
    /// Bind the UDP socket at `addr`.
    pub fn bind(key: &Keypair, addr: SocketAddr) -> Result<DataPlane, super::NetError> {
        let config = tls::server_config(key)?;
        let endpoint = tls::endpoint(config, addr).map_err(|e| super::NetError::Listen {
            addr: format!("udp {addr}"),
            reason: e.to_string(),
        })?;
        Ok(DataPlane {
            endpoint,
            key: key.clone(),
            conns: Mutex::new(HashMap::new()),
            inbound: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    /// An open connection to `peer` at `addr`, reusing one that is still alive.
    pub async fn connect(
        &self,
        peer: PeerId,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, WireError> {
        if let Some(c) = self.conns.lock().expect("poisoned").get(&peer) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let config =
            tls::client_config(&self.key, peer).map_err(|e| WireError::Stream(e.to_string()))?;
        let conn = self
            .endpoint
            .connect_with(config, addr, "ferry")
            .map_err(|e| WireError::Stream(format!("connecting to {addr}: {e}")))?
            .await
            .map_err(|e| match e {
                quinn::ConnectionError::ApplicationClosed(c)
                    if c.error_code == NOT_ALLOWED.into() =>
                {
                    WireError::Stream(format!(
                        "{peer} at {addr} refused this node: not on its allow-list"
                    ))
                }
                quinn::ConnectionError::ApplicationClosed(c)
                    if c.error_code == DROPPED.into() || c.error_code == BUSY.into() =>
                {
                    WireError::Stream(format!(
                        "{peer} at {addr} refused this node: {}",
                        String::from_utf8_lossy(&c.reason)
                    ))
                }
                e => WireError::Stream(format!("connecting to {peer} at {addr}: {e}")),
            })?;
        self.conns
            .lock()
            .expect("poisoned")
            .insert(peer, conn.clone());
        Ok(conn)
    }

    /// Close the connection to `peer`, if any (a peer dropped for bad bytes).
    pub fn disconnect(&self, peer: &PeerId, why: &str) {
        if let Some(c) = self.conns.lock().expect("poisoned").remove(peer) {
            c.close(GOING_AWAY.into(), why.as_bytes());
        }
    }

    /// Close every connection with `peer`, both ways, saying `why` (a peer dropped for protocol violations).
    pub(crate) fn drop_peer(&self, peer: &PeerId, why: &str) {
        let outbound = self.conns.lock().expect("poisoned").remove(peer);
        let inbound = self.inbound.lock().expect("poisoned").remove(peer);
        for c in outbound.into_iter().chain(inbound.into_iter().flatten()) {
            c.close(DROPPED.into(), why.as_bytes());
        }
    }

    /// Count `conn` from `peer` among the inbound connections, unless that would pass [`CONNECTIONS_PER_PEER`]
    /// or [`MAX_CONNECTIONS`] (then why not).
    fn admit(&self, peer: PeerId, conn: &quinn::Connection) -> Result<Inbound, String> {
        let mut inbound = self.inbound.lock().expect("poisoned");
        let all: usize = inbound.values().map(Vec::len).sum();
        let mine = inbound.entry(peer).or_default();
        if mine.len() >= CONNECTIONS_PER_PEER {
            return Err(format!(
                "{CONNECTIONS_PER_PEER} connections from this peer already"
            ));
        }
        if all >= MAX_CONNECTIONS {
            return Err(format!("{MAX_CONNECTIONS} connections already"));
        }
        mine.push(conn.clone());
        Ok(Inbound {
            inbound: self.inbound.clone(),
            peer,
            id: conn.stable_id(),
        })
    }

    /// Inbound connections held.
    fn inbound_count(&self) -> usize {
        self.inbound
            .lock()
            .expect("poisoned")
            .values()
            .map(Vec::len)
            .sum()
    }
}

/// One request, one answer, on a new stream of `conn`.
pub async fn request(
    conn: &quinn::Connection,
    req: &SyncRequest,
) -> Result<SyncResponse, WireError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    write_frame(&mut send, req).await?;
    let _ = send.finish();
    read_frame(&mut recv).await
}

/// Accept connections until `stop`; each connection's streams are answered side by side, within the bounds above.
pub async fn serve(net: Network, mut stop: watch::Receiver<bool>) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let incoming = tokio::select! {
            i = net.0.data.endpoint.accept() => i,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(incoming) = incoming else { break };
        let permit = match handshakes.clone().try_acquire_owned() {
            Ok(p) if net.0.data.inbound_count() < MAX_CONNECTIONS => p,
            _ => {
                tracing::debug!(from = %incoming.remote_address(), "data plane full: refused a connection");
                incoming.refuse();
                continue;
            }
        };
        tokio::spawn(connection(net.clone(), incoming, permit));
    }
    net.0
        .data
        .endpoint
        .close(GOING_AWAY.into(), b"node stopping");
}

/// One caller's connection: the handshake, who it is, then its streams until it closes.
async fn connection(net: Network, incoming: quinn::Incoming, handshake: OwnedSemaphorePermit) {
    let from = incoming.remote_address();
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%from, error = %e, "data plane handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%from, "data plane handshake timed out");
            return;
        }
    };
    drop(handshake);
    let peer = match tls::remote_peer(&conn) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%from, error = %e, "data plane: bad peer certificate");
            conn.close(NOT_ALLOWED.into(), b"bad certificate");
            return;
        }
    };
    if !net.allowed(&peer) {
        net.refuse(peer, from.to_string(), "data", "not on the allow-list");
        conn.close(NOT_ALLOWED.into(), b"not on this site's allow-list");
        return;
    }
    let _counted = match net.0.data.admit(peer, &conn) {
        Ok(c) => c,
        Err(why) => {
            net.refuse(peer, from.to_string(), "data", &why);
            conn.close(BUSY.into(), why.as_bytes());
            return;
        }
    };
    // Looked at once counted, so a drop that comes between closes this connection either way.
    if let Some(left) = net.dropped(&peer) {
        let why = format!(
            "dropped for protocol violations; refused for {} s more",
            left.as_secs().max(1)
        );
        net.refuse(peer, from.to_string(), "data", &why);
        conn.close(DROPPED.into(), why.as_bytes());
        return;
    }
    tracing::debug!(%peer, %from, "data plane connection");
    let streams = Arc::new(Semaphore::new(STREAMS_PER_CONNECTION));
    loop {
        let Ok(slot) = streams.clone().acquire_owned().await else {
            break;
        };
        let Ok((send, recv)) = conn.accept_bi().await else {
            break;
        };
        let wait = net.0.conduct.pace_request(peer, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let net = net.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(ANSWER_TIMEOUT, answer(&net, peer, send, recv)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "data plane request failed"),
                Err(_) => {
                    tracing::debug!(%peer, "data plane answer abandoned after {ANSWER_TIMEOUT:?}")
                }
            }
        });
    }
}

async fn answer(
    net: &Network,
    peer: PeerId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), WireError> {
    let read = read_request(&mut recv, MAX_REQUEST, REQUEST_IDLE);
    let req = match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(Ok(req)) => req,
        Ok(Err(WireError::Malformed(what))) => return violation(net, peer, send, recv, what).await,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            let what = format!("no whole request within {} s", REQUEST_TIMEOUT.as_secs());
            return violation(net, peer, send, recv, what).await;
        }
    };
    let response = match req {
        SyncRequest::Chunks { ids } if ids.len() <= MAX_BATCH_CHUNKS => {
            let sent = send_chunks(&net.0.store, &ids, &mut send).await?;
            net.update_peer(peer, |p| p.sent_bytes += sent);
            let _ = send.finish();
            return Ok(());
        }
        SyncRequest::Chunks { ids } => {
            let what = format!(
                "{} chunks in one batch (at most {MAX_BATCH_CHUNKS})",
                ids.len()
            );
            return violation(net, peer, send, recv, what).await;
        }
        SyncRequest::Delta {
            ids,
            reference,
            level,
        } => {
            let answer = heavy(net, move |store| {
                delta_answer(store, &ids, &reference, level)
            })
            .await?;
            if let SyncResponse::Delta { frame, .. } = &answer {
                let sent = frame.len() as u64;
                net.update_peer(peer, |p| p.sent_bytes += sent);
            }
            answer
        }
        // Sketches read whole recipes the first time: bounded like deltas.
        SyncRequest::Sketches { recipes } => {
            heavy(net, move |store| sketches_answer(store, &recipes)).await?
        }
        // Store lookups (thousands for a bitmap or a recipes request) run off the async threads.
        req => {
            let net = net.clone();
            tokio::task::spawn_blocking(move || small_answer(&net, req))
                .await
                .map_err(|e| WireError::Stream(e.to_string()))?
        }
    };
    write_frame(&mut send, &response).await?;
    let _ = send.finish();
    Ok(())
}

/// A request that broke the protocol (`what`): refused on its stream, which is read no further, then counted
/// against `peer` (which may drop it).
async fn violation(
    net: &Network,
    peer: PeerId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    what: String,
) -> Result<(), WireError> {
    let _ = recv.stop(VIOLATION.into());
    let refused = SyncResponse::Refused(format!("protocol violation: {what}"));
    // A small frame fits the stream's window: the write does not wait on the peer, unless it is gone.
    if let Ok(Ok(())) =
        tokio::time::timeout(Duration::from_secs(1), write_frame(&mut send, &refused)).await
    {
        let _ = send.finish();
    }
    net.violation(peer, "data", &what);
    Err(WireError::Malformed(what))
}

/// `work` on the blocking pool once one of the node's few heavy-answer slots (deltas, sketches) is free.
async fn heavy(
    net: &Network,
    work: impl FnOnce(&crate::Store) -> SyncResponse + Send + 'static,
) -> Result<SyncResponse, WireError> {
    let _permit = net
        .0
        .delta_jobs
        .acquire()
        .await
        .map_err(|e| WireError::Stream(e.to_string()))?;
    let store = net.0.store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|e| WireError::Stream(e.to_string()))
}

/// A delta of chunks `ids` against `reference` at zstd `level`, if this node holds both and the delta is smaller than the
/// chunks as stored.
fn delta_answer(
    store: &crate::Store,
    ids: &[ChunkId],
    reference: &ferry_protocol::delta::Reference,
    level: i32,
) -> SyncResponse {
    use ferry_protocol::delta::{output_check, MAX_DELTA_OUTPUT, MAX_RANGES};
    if ids.is_empty() || ids.len() > MAX_BATCH_CHUNKS || reference.ranges.len() as u64 > MAX_RANGES
    {
        return SyncResponse::Refused(format!(
            "a delta of {} chunks against {} ranges is out of bounds",
            ids.len(),
            reference.ranges.len()
        ));
    }
    let mut target = Vec::new();
    let mut whole = 0u64;
    for id in ids {
        match store.chunk_location(id) {
            Ok(Some(loc)) => {
                whole += u64::from(loc.comp_len) + ferry_protocol::sync::RECORD_HEADER_LEN as u64;
                if target.len() as u64 + u64::from(loc.raw_len) > MAX_DELTA_OUTPUT {
                    return SyncResponse::Refused(format!(
                        "a delta of more than {MAX_DELTA_OUTPUT} bytes"
                    ));
                }
            }
            Ok(None) => return SyncResponse::Refused(format!("this node lacks chunk {id}")),
            Err(e) => return SyncResponse::Refused(e.to_string()),
        }
        match store.read_chunk(id) {
            Ok(data) => target.extend_from_slice(&data),
            Err(e) => return SyncResponse::Refused(e.to_string()),
        }
    }
    let base = match crate::delta::read_reference(store, reference) {
        Ok(b) => b,
        Err(e) => {
            return SyncResponse::Refused(format!(
                "no reference in base recipe {}: {e}",
                reference.recipe
            ))
        }
    };
    match crate::delta::encode(&base, &target, level.clamp(1, crate::delta::DELTA_LEVEL)) {
        Ok(frame) if (frame.len() as u64) < whole => SyncResponse::Delta {
            frame,
            check: output_check(&target),
        },
        Ok(_) => SyncResponse::Refused("the delta is no smaller than the chunks".into()),
        Err(e) => SyncResponse::Refused(format!("encoding a delta: {e}")),
    }
}

/// The sketches of `recipes`, for those this node holds whole.
fn sketches_answer(store: &crate::Store, recipes: &[RecipeId]) -> SyncResponse {
    use ferry_protocol::sync::{MAX_SKETCH_PARTS, MAX_SKETCH_RECIPES};
    if recipes.len() > MAX_SKETCH_RECIPES {
        return SyncResponse::Refused(format!(
            "sketches of {} recipes (at most {MAX_SKETCH_RECIPES})",
            recipes.len()
        ));
    }
    let mut parts = 0usize;
    let mut budget = crate::delta::SKETCH_BUDGET;
    SyncResponse::Sketches(
        recipes
            .iter()
            .map(|id| {
                let recipe = store.recipe(id).ok().flatten()?;
                parts += recipe.parts().len();
                if parts > MAX_SKETCH_PARTS || !crate::delta::holds_all(store, &recipe).ok()? {
                    return None;
                }
                let s = store.sketches(id, &recipe, &mut budget).ok()??;
                Some(crate::sketch::encode(&s))
            })
            .collect(),
    )
}

/// The answer to a request other than chunks.
fn small_answer(net: &Network, req: SyncRequest) -> SyncResponse {
    let store = &net.0.store;
    match req {
        SyncRequest::Chunks { .. } | SyncRequest::Delta { .. } | SyncRequest::Sketches { .. } => {
            SyncResponse::Refused("answered apart".into())
        }
        SyncRequest::Release { id } => match store.signed_release(&id) {
            Ok(Some(s)) => SyncResponse::Release(ferry_protocol::Object::encode(&s)),
            Ok(None) => SyncResponse::Refused(format!("this node does not hold release {id}")),
            Err(e) => SyncResponse::Refused(e.to_string()),
        },
        SyncRequest::RecipeDiffs { wanted } => SyncResponse::RecipeDiffs(
            wanted
                .iter()
                .map(|(id, base)| {
                    let recipe = match store.recipe(id).ok().flatten() {
                        Some(r) => r,
                        None => <ferry_protocol::Recipe as ferry_protocol::Object>::decode(
                            &net.running_recipe(id)?,
                        )
                        .ok()?,
                    };
                    let base = base.and_then(|b| store.recipe(&b).ok().flatten());
                    Some(ferry_protocol::delta::RecipeDiff::new(
                        &recipe,
                        base.as_ref().map(|b| (0, b)),
                        |_| false,
                    ))
                })
                .collect(),
        ),
        SyncRequest::Recipes { ids } => SyncResponse::Recipes(
            ids.iter()
                .map(|id| {
                    store
                        .recipe_bytes(id)
                        .ok()
                        .flatten()
                        .or_else(|| net.running_recipe(id))
                })
                .collect(),
        ),
        SyncRequest::Have { id } => have_answer(net, &id, |held| SyncResponse::Have(held.bits()))
            .unwrap_or_else(|| SyncResponse::Refused(format!("still starting to sync {id}"))),
        SyncRequest::HaveChanges { id, since } => {
            have_answer(net, &id, |held| held.changes(since)).unwrap_or(SyncResponse::Starting)
        }
    }
}

/// What this node holds of release `id`: whole (one index lookup), or what its sync of it holds, from memory
/// (`answer`); `None` while that sync has no chunk list yet.
fn have_answer(
    net: &Network,
    id: &str,
    answer: impl FnOnce(&super::sync::Held) -> SyncResponse,
) -> Option<SyncResponse> {
    if matches!(net.0.store.signed_release(id), Ok(Some(_))) {
        return Some(SyncResponse::Whole);
    }
    let Some(running) = net.sync_of(id).filter(|r| !r.finished()) else {
        return Some(SyncResponse::Refused(format!(
            "this node neither holds nor syncs release {id}"
        )));
    };
    let held = running.held.lock().expect("poisoned");
    held.as_ref().map(answer)
}

/// Send the records for `ids`, reading them from packs a group at a time on a blocking thread while the
/// previous group is written (so memory per stream stays at two groups, whatever the batch). Each group is read
/// with one read per run of adjacent records and handed to quinn as it was read: record headers and payloads
/// go out as slices of the group's buffers, not copied again. Returns the bytes sent.
async fn send_chunks(
    store: &crate::Store,
    ids: &[ChunkId],
    send: &mut quinn::SendStream,
) -> Result<u64, WireError> {
    const GROUP: usize = 32;
    let read_group = |ids: Vec<ChunkId>| {
        let store = store.clone();
        tokio::task::spawn_blocking(move || -> Vec<Bytes> {
            let group = store.read_chunks_stored(&ids);
            let mut headers = Vec::with_capacity(ids.len() * RECORD_HEADER_LEN);
            for (id, chunk) in ids.iter().zip(&group.chunks) {
                let header = ChunkRecordHeader {
                    id: *id,
                    raw_len: chunk.as_ref().map_or(0, |(loc, _)| loc.raw_len),
                    stored_len: chunk.as_ref().map(|(loc, _)| loc.comp_len),
                };
                headers.extend_from_slice(&header.encode());
            }
            let headers = Bytes::from(headers);
            let buf = Bytes::from(group.buf);
            let mut out = Vec::with_capacity(2 * ids.len());
            for (k, chunk) in group.chunks.into_iter().enumerate() {
                out.push(headers.slice(k * RECORD_HEADER_LEN..(k + 1) * RECORD_HEADER_LEN));
                if let Some((_, body)) = chunk {
                    out.push(buf.slice(body));
                }
            }
            out
        })
    };
    let mut groups = ids.chunks(GROUP).map(|g| g.to_vec());
    let mut next = groups.next().map(read_group);
    let mut sent = 0u64;
    while let Some(pending) = next.take() {
        let mut bufs = pending
            .await
            .map_err(|e| WireError::Stream(e.to_string()))?;
        next = groups.next().map(read_group);
        sent += bufs.iter().map(|b| b.len() as u64).sum::<u64>();
        send.write_all_chunks(&mut bufs).await?;
    }
    Ok(sent)
}
