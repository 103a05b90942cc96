//! A blob as a streamed response body: a blocking thread rebuilds it chunk by chunk (each verified against its
//! id) and hands pieces to the response through a small channel, so memory per download stays at a few chunks
//! and a slow client only ever holds back its own thread — for at most a minute without progress.

use crate::store::Store;
use axum::body::{Body, Bytes};
use ferry_protocol::BlobRef;
use std::io::Read;

/// Pieces in flight per download.
const QUEUE: usize = 4;
/// A client that takes nothing for this long loses its download (and frees the thread rebuilding it).
const STALL: std::time::Duration = std::time::Duration::from_secs(60);
/// Bytes per piece.
const PIECE: usize = 256 << 10;

/// The bytes `[start, start + len)` of `blob` as a body.
pub fn blob_body(store: Store, blob: BlobRef, start: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(QUEUE);
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut reader = match store.open_blob_at(&blob, start) {
            Ok(r) => r.take(len),
            Err(e) => {
                tracing::error!(blob = %blob.sha256, error = %e, "cannot open blob");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        let mut left = len;
        while left > 0 {
            let mut buf = vec![0u8; PIECE.min(left as usize)];
            match reader.read(&mut buf) {
                Ok(0) => {
                    tracing::error!(blob = %blob.sha256, "blob ended {left} bytes early");
                    let _ = tx.blocking_send(Err(std::io::Error::other("blob ended early")));
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    let sent =
                        rt.block_on(tokio::time::timeout(STALL, tx.send(Ok(Bytes::from(buf)))));
                    match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return, // the client went away
                        Err(_) => {
                            tracing::warn!(blob = %blob.sha256, "client took nothing for {STALL:?}; dropping it");
                            return;
                        }
                    }
                }
                Err(e) => {
                    // A chunk that fails verification ends the response early: the client sees a short body,
                    // never wrong bytes.
                    tracing::error!(blob = %blob.sha256, error = %e, "reading blob");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}
