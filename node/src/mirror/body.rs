//! A blob as a streamed response body: a blocking thread rebuilds it chunk by chunk (each verified against its
//! id) and hands pieces to the response through a small channel, so memory per download stays at a few chunks
//! and a slow client only ever holds back its own thread.

use crate::store::Store;
use axum::body::{Body, Bytes};
use ferry_protocol::BlobRef;
use std::io::Read;

/// Pieces in flight per download.
const QUEUE: usize = 4;
/// Bytes per piece.
const PIECE: usize = 256 << 10;

/// The bytes `[start, start + len)` of `blob` as a body.
pub fn blob_body(store: Store, blob: BlobRef, start: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(QUEUE);
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
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // the client went away
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
