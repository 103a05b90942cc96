//! Accepting HTTP connections with bounds a stranger cannot lift: a client that sends part of a request's head
//! (or nothing, between requests) is dropped after [`Connections::header_timeout`]; at most
//! [`Connections::max`] connections are served at once, and at most [`Connections::max_per_client`] from one
//! address, the rest answered `503 Service Unavailable` (with `Retry-After`) and closed at once — or, during a
//! flood (more than [`REFUSING`] being answered), closed unanswered.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The bounds on HTTP connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connections {
    /// How long a request's head may take to arrive, and how long a connection may sit idle between requests.
    pub header_timeout: Duration,
    /// Connections served at once, at most.
    pub max: usize,
    /// Connections served at once from one client address, at most.
    pub max_per_client: usize,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            header_timeout: Duration::from_secs(30),
            max: 512,
            max_per_client: 64,
        }
    }
}

/// How long requests in flight may go on once the node is told to stop.
const DRAIN: Duration = Duration::from_secs(10);
/// How long a refused client gets to take its 503.
const REFUSAL_WRITE: Duration = Duration::from_secs(2);
/// Refused connections being answered at once, at most; past that a refused connection is closed unanswered.
const REFUSING: usize = 64;

/// Connections open now: in all, and by client address.
#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// A connection's place among those open; given back on drop.
struct Slot {
    open: Arc<Mutex<Open>>,
    client: IpAddr,
}

impl Slot {
    /// A place for a connection from `client`, or why there is none.
    fn take(open: &Arc<Mutex<Open>>, client: IpAddr, limits: &Connections) -> Result<Slot, String> {
        let mut o = open.lock().expect("connection count poisoned");
        if o.total >= limits.max {
            return Err(format!(
                "{} connections open, the most this node serves",
                o.total
            ));
        }
        let mine = o.by_client.entry(client).or_default();
        if *mine >= limits.max_per_client {
            return Err(format!(
                "{mine} connections open from {client}, the most this node serves one client"
            ));
        }
        *mine += 1;
        o.total += 1;
        Ok(Slot {
            open: open.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().expect("connection count poisoned");
        o.total -= 1;
        if let Some(n) = o.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                o.by_client.remove(&self.client);
            }
        }
    }
}

/// Serve `router` on `listener` within `limits` until `shutdown` resolves; then stop accepting and let requests
/// in flight finish for a few seconds at most.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let open = Arc::new(Mutex::new(Open::default()));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut refusals = 0u64;
    let refusing = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close rather than spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match Slot::take(&open, peer.ip(), &limits) {
            Ok(s) => s,
            Err(why) => {
                // Logged at the 1st, 2nd, 4th, … refusal: a flood must not flood the log too.
                refusals += 1;
                if refusals.is_power_of_two() {
                    tracing::warn!(client = %peer, reason = %why, refused = refusals,
                        "HTTP connection refused");
                }
                // Answered while few are; a flood is closed unanswered rather than held for its 503.
                use std::sync::atomic::Ordering::Relaxed;
                if refusing.fetch_add(1, Relaxed) < REFUSING {
                    let refusing = refusing.clone();
                    tokio::spawn(async move {
                        refuse(stream, peer, why).await;
                        refusing.fetch_sub(1, Relaxed);
                    });
                } else {
                    refusing.fetch_sub(1, Relaxed);
                }
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(client = %peer, error = %e, "HTTP connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight {} s after the stop: dropped",
            DRAIN.as_secs()
        );
    }
    Ok(())
}

/// Answer a connection there is no room for with a 503 and close it.
async fn refuse(mut stream: TcpStream, peer: SocketAddr, why: String) {
    let body = format!("{why}; try again shortly\n");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let written = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if let Ok(Err(e)) = written {
        tracing::debug!(client = %peer, error = %e, "writing a 503");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_in_all_and_per_client_and_given_back() {
        let limits = Connections {
            max: 3,
            max_per_client: 2,
            ..Connections::default()
        };
        let open = Arc::new(Mutex::new(Open::default()));
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            [10, 0, 0, 3].into(),
        );
        let a1 = Slot::take(&open, a, &limits).unwrap();
        let a2 = Slot::take(&open, a, &limits).unwrap();
        let refused = Slot::take(&open, a, &limits).err().unwrap();
        assert!(refused.contains("from 10.0.0.1"), "{refused}");
        let b1 = Slot::take(&open, b, &limits).unwrap();
        let refused = Slot::take(&open, c, &limits).err().unwrap();
        assert!(refused.contains("3 connections open"), "{refused}");
        drop(a1);
        let c1 = Slot::take(&open, c, &limits).unwrap();
        drop((a2, b1, c1));
        let o = open.lock().unwrap();
        assert_eq!((o.total, o.by_client.len()), (0, 0));
    }
}
