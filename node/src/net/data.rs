//! The data plane: a quinn endpoint that answers peers' requests from the store (and from syncs in progress),
//! and opens connections to peers for [`super::sync`].

use super::tls;
use super::wire::{read_frame, write_frame, WireError};
use super::Network;
use bytes::Bytes;
use ferry_protocol::sync::{
    set_bit, ChunkRecordHeader, SyncRequest, SyncResponse, MAX_BATCH_CHUNKS, RECORD_HEADER_LEN,
};
use ferry_protocol::{ChunkId, RecipeId};
use libp2p::PeerId;
use libp2p_identity::Keypair;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::sync::watch;

/// Close code: the caller is not on this node's allow-list.
pub const NOT_ALLOWED: u32 = 1;
/// Close code: the node is shutting down, or dropped the peer.
pub const GOING_AWAY: u32 = 2;

/// Deltas encoded for peers at once (each holds a reference of up to 64 MiB and zstd's tables for it).
pub const DELTA_JOBS: usize = 2;

/// The quinn endpoint and the connections it opened.
pub struct DataPlane {
    endpoint: quinn::Endpoint,
    key: Keypair,
    conns: Mutex<HashMap<PeerId, quinn::Connection>>,
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

/// Accept connections until `stop`; each connection's streams are answered side by side.
pub async fn serve(net: Network, mut stop: watch::Receiver<bool>) {
    loop {
        let incoming = tokio::select! {
            i = net.0.data.endpoint.accept() => i,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(incoming) = incoming else { break };
        let net = net.clone();
        tokio::spawn(async move {
            let from = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(%from, error = %e, "data plane handshake failed");
                    return;
                }
            };
            let peer = match tls::remote_peer(&conn) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(%from, error = %e, "data plane: bad peer certificate");
                    conn.close(NOT_ALLOWED.into(), b"bad certificate");
                    return;
                }
            };
            if !net.allowed(&peer) {
                net.refuse(peer, from.to_string(), "data");
                conn.close(NOT_ALLOWED.into(), b"not on this site's allow-list");
                return;
            }
            tracing::debug!(%peer, %from, "data plane connection");
            while let Ok((send, recv)) = conn.accept_bi().await {
                let net = net.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(&net, peer, send, recv).await {
                        tracing::debug!(%peer, error = %e, "data plane request failed");
                    }
                });
            }
        });
    }
    net.0
        .data
        .endpoint
        .close(GOING_AWAY.into(), b"node stopping");
}

async fn answer(
    net: &Network,
    peer: PeerId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), WireError> {
    let req: SyncRequest = read_frame(&mut recv).await?;
    let response = match req {
        SyncRequest::Chunks { ids } if ids.len() <= MAX_BATCH_CHUNKS => {
            let sent = send_chunks(&net.0.store, &ids, &mut send).await?;
            net.update_peer(peer, |p| p.sent_bytes += sent);
            let _ = send.finish();
            return Ok(());
        }
        SyncRequest::Chunks { ids } => SyncResponse::Refused(format!(
            "{} chunks in one batch (at most {MAX_BATCH_CHUNKS})",
            ids.len()
        )),
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
        SyncRequest::Have { id } => {
            if matches!(store.signed_release(&id), Ok(Some(_))) {
                return SyncResponse::Whole;
            }
            let Some(running) = net.sync_of(&id).filter(|r| !r.finished()) else {
                return SyncResponse::Refused(format!(
                    "this node neither holds nor syncs release {id}"
                ));
            };
            let Some(list) = running.list.lock().expect("poisoned").clone() else {
                return SyncResponse::Refused(format!("still starting to sync {id}"));
            };
            let mut bits = vec![0u8; list.len().div_ceil(8)];
            for (i, (c, _)) in list.iter().enumerate() {
                if store.has_chunk(c).unwrap_or(false) {
                    set_bit(&mut bits, i);
                }
            }
            SyncResponse::Have(bits)
        }
    }
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
