//! A blob as a streamed response body. A blocking thread walks the blob's recipe a window of chunks at a time:
//! each window is read, decoded and verified against its chunk ids side by side on the rayon pool while the
//! thread sends the previous window to the response, chunk by chunk as decoded — no copy — through a small
//! channel. Memory per download stays at a few chunks, the pool never waits on a client, and a slow client only
//! ever holds back its own thread, for at most a minute without progress.

use crate::store::Store;
use axum::body::{Body, Bytes};
use ferry_protocol::{BlobRef, Part};
use rayon::prelude::*;

/// Pieces (chunks) in flight per download.
const QUEUE: usize = 4;
/// Chunks decoded side by side on the pool before they are sent; the next window decodes while one is sent.
const WINDOW: usize = 4;
/// A client that takes nothing for this long loses its download (and frees the thread rebuilding it).
const STALL: std::time::Duration = std::time::Duration::from_secs(60);
/// Re-created gzip blobs are read from their cached file in pieces of this size (a chunk's average, so a
/// download holds as much as one served from chunks).
const PIECE: u64 = 64 << 10;
/// Zero runs are sent in pieces of this size, all sharing one buffer.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The bytes `[start, start + len)` of `blob` as a body.
pub fn blob_body(m: &super::Mirror, blob: BlobRef, start: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(QUEUE);
    let rt = tokio::runtime::Handle::current();
    let (store, served) = (m.store().clone(), m.count_served());
    tokio::task::spawn_blocking(move || {
        let send = |piece: std::io::Result<Bytes>| -> bool {
            let n = piece.as_ref().map_or(0, |b| b.len() as u64);
            match rt.block_on(tokio::time::timeout(STALL, tx.send(piece))) {
                Ok(Ok(())) => {
                    served.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    true
                }
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
    let recipe = store
        .recipe(&blob.recipe)?
        .ok_or(crate::store::StoreError::MissingRecipe {
            recipe: blob.recipe,
            for_blob: Some(blob.sha256),
        })?;
    let end = start + len;
    if recipe.is_gzip() {
        return recreated_pieces(store, blob, &recipe, start, len, send);
    }
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
    // Window N+1 decodes on the pool while this thread sends window N.
    let windows: Vec<Vec<(Part, usize, usize)>> =
        wanted.chunks(WINDOW).map(<[_]>::to_vec).collect();
    let mut next = windows.first().map(|w| decode(store, w));
    for (i, window) in windows.iter().enumerate() {
        let decoded = next
            .take()
            .expect("a decode is under way for every window")
            .recv()
            .map_err(|_| crate::store::StoreError::Corrupt("a chunk decoder panicked".into()))?;
        next = windows.get(i + 1).map(|w| decode(store, w));
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

type Decoded = Vec<Option<Result<Vec<u8>, crate::store::StoreError>>>;

/// Start reading, decompressing and verifying the chunks of `window` side by side on the pool; the result (in
/// the window's order, `None` for zero runs) arrives on the returned channel. The pool never blocks on a client.
fn decode(store: &Store, window: &[(Part, usize, usize)]) -> std::sync::mpsc::Receiver<Decoded> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let store = store.clone();
    let parts: Vec<Part> = window.iter().map(|(p, _, _)| *p).collect();
    rayon::spawn(move || {
        let decoded: Decoded = parts
            .par_iter()
            .map(|part| match part {
                Part::Chunk { id, .. } => Some(store.read_chunk(id)),
                Part::Zero { .. } => None,
            })
            .collect();
        let _ = tx.send(decoded);
    });
    rx
}

/// [`pieces`] of a gzip blob stored as raw bytes plus re-creation data: from its re-created file in the cache
/// (re-created first on a cold read).
fn recreated_pieces(
    store: &Store,
    blob: &BlobRef,
    recipe: &ferry_protocol::Recipe,
    start: u64,
    len: u64,
    send: &dyn Fn(std::io::Result<Bytes>) -> bool,
) -> Result<(), crate::store::StoreError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = store.recreated(blob, recipe)?;
    let io = |e| {
        crate::store::StoreError::Corrupt(format!("reading re-created blob {}: {e}", blob.sha256))
    };
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut left = len;
    while left > 0 {
        let mut buf = vec![0u8; left.min(PIECE) as usize];
        file.read_exact(&mut buf).map_err(io)?;
        left -= buf.len() as u64;
        if !send(Ok(Bytes::from(buf))) {
            return Ok(());
        }
    }
    Ok(())
}
