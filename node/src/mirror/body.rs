//! A blob as a streamed response body: a blocking thread reads it a window of chunks at a time (decoded and
//! verified against their ids side by side on the rayon pool) and hands each decoded chunk to the response as it
//! is — no copy — through a small channel, so memory per download stays at a few chunks and a slow client only ever holds back its own thread, for at most a minute
//! without progress.

use crate::store::Store;
use axum::body::{Body, Bytes};
use ferry_protocol::{BlobRef, Part};
use rayon::prelude::*;

/// Pieces (chunks) in flight per download.
const QUEUE: usize = 4;
/// Chunks decoded side by side on the pool before they are sent.
const WINDOW: usize = 4;
/// A client that takes nothing for this long loses its download (and frees the thread rebuilding it).
const STALL: std::time::Duration = std::time::Duration::from_secs(60);
/// Zero runs are sent in pieces of this size, all sharing one buffer.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The bytes `[start, start + len)` of `blob` as a body.
pub fn blob_body(store: Store, blob: BlobRef, start: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(QUEUE);
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let send = |piece: std::io::Result<Bytes>| -> bool {
            match rt.block_on(tokio::time::timeout(STALL, tx.send(piece))) {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false, // the client went away
                Err(_) => {
                    tracing::warn!(blob = %blob.sha256, "client took nothing for {STALL:?}; dropping it");
                    false
                }
            }
        };
        if let Err(e) = pieces(&store, &blob, start, len, &send) {
            // A chunk that fails verification ends the response early: the client sees a short body, never
            // wrong bytes.
            tracing::error!(blob = %blob.sha256, error = %e, "serving blob");
            send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Feed `send` the pieces covering `[start, start + len)`; stops early (Ok) when `send` says the client is gone.
fn pieces(
    store: &Store,
    blob: &BlobRef,
    start: u64,
    len: u64,
    send: &dyn Fn(std::io::Result<Bytes>) -> bool,
) -> Result<(), crate::store::StoreError> {
    let recipe = store.recipe(&blob.recipe)?.ok_or_else(|| {
        crate::store::StoreError::Corrupt(format!("recipe of blob {} is missing", blob.sha256))
    })?;
    let end = start + len;
    // The parts overlapping the range, with the slice of each to send.
    let mut wanted: Vec<(Part, usize, usize)> = Vec::new();
    let mut at = 0u64;
    for part in recipe.parts() {
        let (p_start, p_end) = (at, at + part.len());
        at = p_end;
        if p_end <= start {
            continue;
        }
        if p_start >= end {
            break;
        }
        let from = start.saturating_sub(p_start) as usize;
        let to = (end.min(p_end) - p_start) as usize;
        wanted.push((*part, from, to));
    }
    // Chunks are read, decompressed and verified a window at a time on the pool, so one download uses every
    // core; they are sent in order.
    for window in wanted.chunks(WINDOW) {
        let decoded: Vec<Option<Result<Vec<u8>, crate::store::StoreError>>> = window
            .par_iter()
            .map(|(part, _, _)| match part {
                Part::Chunk { id, .. } => Some(store.read_chunk(id)),
                Part::Zero { .. } => None,
            })
            .collect();
        for ((part, from, to), data) in window.iter().zip(decoded) {
            let (from, to) = (*from, *to);
            match (part, data) {
                (Part::Chunk { id, .. }, Some(data)) => {
                    let data = Bytes::from(data?);
                    if data.len() < to {
                        return Err(crate::store::StoreError::Corrupt(format!(
                            "chunk {id} is shorter than its recipe says"
                        )));
                    }
                    if !send(Ok(data.slice(from..to))) {
                        return Ok(());
                    }
                }
                _ => {
                    let mut left = to - from;
                    while left > 0 {
                        let n = left.min(ZEROS.len());
                        if !send(Ok(Bytes::from_static(&ZEROS[..n]))) {
                            return Ok(());
                        }
                        left -= n;
                    }
                }
            }
        }
    }
    if at < end {
        return Err(crate::store::StoreError::Corrupt(format!(
            "blob {} ends at {at} bytes, before {end}",
            blob.sha256
        )));
    }
    Ok(())
}
