//! Accepting HTTP connections with bounds a stranger cannot lift: a client that sends part of a request's head
//! (or nothing, between requests) is dropped after [`Connections::header_timeout`]; at most
//! [`Connections::max`] connections are held at once, and at most [`Connections::max_per_client`] from one
//! address.
//!
//! At a cap, a connection with no request in flight is closed to make room — one that never sent a whole
//! request within [`RECENT_MS`] (half-open) first, at once; then the keep-alive connection idle longest,
//! then one accepted just now, then one that answered a request just now — a keep-alive one the way hyper
//! closes gracefully: at once if no request has begun on it, else once the request that began since it was
//! chosen is answered — from the same address when that address is at its cap. So connections that hold
//! nothing but a socket cannot keep working clients out, a request is never cut, and a client between two
//! requests (a pull between blobs) keeps its connection while half-open ones are there to go instead. Only when every
//! connection in the way is busy is the new one answered `503 Service Unavailable` (with `Retry-After`) and
//! closed — or, during a flood (more than [`REFUSING`] being answered), closed unanswered.
//!
//! A client address that keeps asking for what is not there is slowed, not served faster: past a burst of
//! [`ERROR_BURST`], its error answers (400, 404, 405, 414, 431) are held back to [`ERRORS_PER_SEC`] a second,
//! costing the node a timer, not CPU, so a loop of bad requests cannot take the cores from working clients.
//! Answers that succeed, and 401s (the first step of every authenticated pull), are never held.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The bounds on HTTP connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connections {
    /// How long a request's head may take to arrive, and how long a connection may sit idle between requests.
    pub header_timeout: Duration,
    /// Connections held at once, at most.
    pub max: usize,
    /// Connections held at once from one client address, at most.
    pub max_per_client: usize,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            header_timeout: Duration::from_secs(30),
            max: 1024,
            max_per_client: 256,
        }
    }
}

impl Connections {
    /// Raise the process's soft limit on open files to its hard limit (systemd starts services at 1024), and
    /// lower [`Connections::max`] (and the per-client cap) to fit under it with [`RESERVED_FDS`] to spare, so the
    /// cap, not the descriptor limit, is what a flood meets.
    pub fn fit_descriptors(&mut self) {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        let hard = limit.maximum.unwrap_or(u64::MAX).min(1 << 20);
        if limit.current.is_some_and(|soft| soft < hard) {
            limit.current = Some(hard);
            if let Err(e) = setrlimit(Resource::Nofile, limit) {
                tracing::debug!(error = %e, "raising the open-file limit");
            }
        }
        let Some(soft) = getrlimit(Resource::Nofile).current else {
            return;
        };
        let room = usize::try_from(soft.saturating_sub(RESERVED_FDS))
            .unwrap_or(usize::MAX)
            .max(16);
        if self.max > room {
            tracing::warn!(
                max_connections = self.max,
                open_file_limit = soft,
                "at most {room} HTTP connections: the open-file limit leaves room for no more"
            );
            self.max = room;
            self.max_per_client = self.max_per_client.min(room);
        }
    }
}

/// Descriptors kept for everything but HTTP connections: packs, sled, peers, the admin socket, spool files.
pub const RESERVED_FDS: u64 = 256;

/// How long requests in flight may go on once the node is told to stop.
const DRAIN: Duration = Duration::from_secs(10);
/// How long a refused client gets to take its 503.
const REFUSAL_WRITE: Duration = Duration::from_secs(2);
/// Refused connections being answered at once, at most; past that a refused connection is closed unanswered.
const REFUSING: usize = 64;

/// A connection that has not sent a whole request this many milliseconds after it was accepted counts as
/// half-open (a client's first request arrives within a round trip or two); one that answered a request less
/// than this long ago is likely to be asked the next soon.
const RECENT_MS: u64 = 500;

/// What one open connection is doing: requests in flight (from the head's arrival to the response body's last
/// byte) and since when it has had none.
struct Activity {
    epoch: Instant,
    busy: AtomicUsize,
    /// Milliseconds after `epoch`.
    idle_since: AtomicU64,
    /// Whether a request ever arrived whole: connections that never sent one (half-open ones) go first.
    served: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        let a = Activity {
            epoch,
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            served: std::sync::atomic::AtomicBool::new(false),
        };
        a.idle_since.store(a.now(), Ordering::Relaxed);
        a
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A request in flight on a connection; the connection is idle again once every one is dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Busy {
        activity.busy.fetch_add(1, Ordering::AcqRel);
        activity.served.store(true, Ordering::Release);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_since.store(self.0.now(), Ordering::Release);
        }
    }
}

/// A response body that keeps its connection counted busy until it is sent (or dropped).
struct Guarded {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// One open connection, as the table of open ones sees it.
struct Held {
    client: IpAddr,
    activity: Arc<Activity>,
    /// Told when the connection is closed to make room.
    evict: oneshot::Sender<()>,
}

/// Connections open now.
struct Open {
    epoch: Instant,
    next: u64,
    held: HashMap<u64, Held>,
    by_client: HashMap<IpAddr, usize>,
    /// Connections closed to make room, in all.
    evicted: u64,
}

/// A newly admitted connection: its place in the table, what it is doing, and the word to close it.
struct Admitted {
    slot: Slot,
    activity: Arc<Activity>,
    evicted: oneshot::Receiver<()>,
}

impl Open {
    fn new() -> Open {
        Open {
            epoch: Instant::now(),
            next: 0,
            held: HashMap::new(),
            by_client: HashMap::new(),
            evicted: 0,
        }
    }

    /// Room for a connection from `client`, made by closing the idlest one in the way if need be; or why there
    /// is none.
    fn admit(
        open: &Arc<Mutex<Open>>,
        client: IpAddr,
        limits: &Connections,
    ) -> Result<Admitted, String> {
        let mut o = open.lock().expect("connection table poisoned");
        let mine = o.by_client.get(&client).copied().unwrap_or(0);
        if mine >= limits.max_per_client && !o.evict_idlest(Some(client)) {
            return Err(format!(
                "{mine} connections open from {client}, all busy, the most this node serves one client"
            ));
        }
        if o.held.len() >= limits.max && !o.evict_idlest(None) {
            return Err(format!(
                "{} connections open, all busy, the most this node serves",
                o.held.len()
            ));
        }
        let id = o.next;
        o.next += 1;
        let activity = Arc::new(Activity::new(o.epoch));
        let (evict, evicted) = oneshot::channel();
        o.held.insert(
            id,
            Held {
                client,
                activity: activity.clone(),
                evict,
            },
        );
        *o.by_client.entry(client).or_default() += 1;
        Ok(Admitted {
            slot: Slot {
                open: open.clone(),
                id,
            },
            activity,
            evicted,
        })
    }

    /// Close the connection idle longest (from `client` only, if given); `false` if every one is busy.
    fn evict_idlest(&mut self, client: Option<IpAddr>) -> bool {
        // Every connection's times count from this table's epoch: one clock reading for all.
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let idlest = self
            .held
            .iter()
            .filter(|(_, h)| client.is_none_or(|c| h.client == c))
            .filter(|(_, h)| h.activity.busy.load(Ordering::Acquire) == 0)
            // First those that never sent a whole request in RECENT (half-open), then keep-alive ones idle for
            // longer than that, then those accepted just now (a first request may be on its way), and last
            // those that answered a request just now (a client between requests — a pull between blobs — is
            // reading what it got); within each, the idlest, then the earlier accepted.
            .min_by_key(|(id, h)| {
                let since = h.activity.idle_since.load(Ordering::Acquire);
                let recent = now.saturating_sub(since) < RECENT_MS;
                let class = match (h.activity.served.load(Ordering::Acquire), recent) {
                    (false, false) => 0,
                    (true, false) => 1,
                    (false, true) => 2,
                    (true, true) => 3,
                };
                (class, since, **id)
            })
            .map(|(id, _)| *id);
        let Some(held) = idlest.and_then(|id| self.remove(id)) else {
            return false;
        };
        // The connection's task may have ended on its own meanwhile: then there is nothing to tell.
        let _ = held.evict.send(());
        self.evicted += 1;
        if self.evicted.is_power_of_two() {
            tracing::info!(client = %held.client, evicted = self.evicted,
                "idle HTTP connection closed to make room for another");
        }
        true
    }

    fn remove(&mut self, id: u64) -> Option<Held> {
        let held = self.held.remove(&id)?;
        if let Some(n) = self.by_client.get_mut(&held.client) {
            *n -= 1;
            if *n == 0 {
                self.by_client.remove(&held.client);
            }
        }
        Some(held)
    }
}

/// A connection's place in the table; given back on drop (unless it was taken to make room).
struct Slot {
    open: Arc<Mutex<Open>>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().expect("connection table poisoned");
        o.remove(self.id);
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
    let open = Arc::new(Mutex::new(Open::new()));
    // Every connection task holds a receiver; at the stop each closes gracefully, and the sender sees them gone.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut refusals = 0u64;
    let refusing = Arc::new(AtomicUsize::new(0));
    let service = TowerToHyperService::new(router);
    let errors = Arc::new(ErrorBudget::default());
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
        let admitted = match Open::admit(&open, peer.ip(), &limits) {
            Ok(a) => a,
            Err(why) => {
                // Logged at the 1st, 2nd, 4th, … refusal: a flood must not flood the log too.
                refusals += 1;
                if refusals.is_power_of_two() {
                    tracing::warn!(client = %peer, reason = %why, refused = refusals,
                        "HTTP connection refused");
                }
                // Answered while few are; a flood is closed unanswered rather than held for its 503.
                if refusing.fetch_add(1, Ordering::Relaxed) < REFUSING {
                    let refusing = refusing.clone();
                    tokio::spawn(async move {
                        refuse(stream, peer, why).await;
                        refusing.fetch_sub(1, Ordering::Relaxed);
                    });
                } else {
                    refusing.fetch_sub(1, Ordering::Relaxed);
                }
                continue;
            }
        };
        let Admitted {
            slot,
            activity,
            mut evicted,
        } = admitted;
        let seen = activity.clone();
        let service = service.clone();
        let errors = errors.clone();
        // Each request counts its connection busy from its head's arrival to its response's last byte.
        let counted = hyper::service::service_fn(move |req| {
            let busy = Busy::new(&activity);
            let response = hyper::service::Service::call(&service, req);
            let errors = errors.clone();
            async move {
                let response = response.await?;
                if ErrorBudget::counts(response.status()) {
                    if let Some(wait) = errors.take(peer.ip(), Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Guarded { body, _busy: busy }),
                )
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), counted);
        let mut stop = stop.clone();
        let served = move || seen.served.load(Ordering::Acquire);
        tokio::spawn(async move {
            tokio::pin!(conn);
            let (mut evicting, mut stopping) = (false, false);
            let ended = loop {
                tokio::select! {
                    ended = conn.as_mut() => break ended,
                    chosen = &mut evicted, if !evicting => {
                        evicting = true;
                        if chosen.is_err() {
                            continue;
                        }
                        // One that never sent a whole request goes at once. A keep-alive one closes the hyper
                        // way: at once if no request has begun, else after the answer to the one that began
                        // since it was chosen (it was idle then), so that request is not cut.
                        if !served() {
                            tracing::debug!(client = %peer, "half-open HTTP connection closed to make room");
                            break Ok(());
                        }
                        tracing::debug!(client = %peer, "idle HTTP connection closed to make room");
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = stop.wait_for(|s| *s), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(client = %peer, error = %e, "HTTP connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    drop(stop);
    let _ = stopping.send(true);
    if tokio::time::timeout(DRAIN, stopping.closed())
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

/// Error answers one client address gets at once before they are held back.
pub const ERROR_BURST: f64 = 64.0;
/// Error answers a second one client address gets past its burst.
pub const ERRORS_PER_SEC: f64 = 32.0;
/// The longest an error answer is held back (a client that waits longer is a client that keeps asking).
const MAX_ERROR_DELAY: Duration = Duration::from_secs(2);
/// Client addresses whose error budgets are remembered; past this, budgets that are full again are forgotten.
const ERROR_CLIENTS: usize = 4096;

/// Per client address, a token bucket of error answers.
#[derive(Default)]
struct ErrorBudget(Mutex<HashMap<IpAddr, (f64, Instant)>>);

impl ErrorBudget {
    /// Whether `status` counts against the budget.
    fn counts(status: hyper::StatusCode) -> bool {
        matches!(status.as_u16(), 400 | 404 | 405 | 414 | 431)
    }

    /// Take one error answer from `client`'s budget: how long to hold it back (none while within the burst).
    fn take(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let mut map = self.0.lock().expect("error budgets poisoned");
        if map.len() >= ERROR_CLIENTS && !map.contains_key(&client) {
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * ERRORS_PER_SEC < ERROR_BURST
            });
            if map.len() >= ERROR_CLIENTS {
                map.clear();
            }
        }
        let (tokens, at) = map.entry(client).or_insert((ERROR_BURST, now));
        let refilled = *tokens + now.duration_since(*at).as_secs_f64() * ERRORS_PER_SEC;
        // A debt below zero makes answers queue behind each other; at most MAX_ERROR_DELAY of it.
        let floor = -MAX_ERROR_DELAY.as_secs_f64() * ERRORS_PER_SEC;
        *tokens = (refilled.min(ERROR_BURST) - 1.0).max(floor);
        *at = now;
        (*tokens < 0.0).then(|| Duration::from_secs_f64(-*tokens / ERRORS_PER_SEC))
    }
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

    /// A table whose clock started a minute ago, so tests can date connections in the past.
    fn table() -> Arc<Mutex<Open>> {
        let mut open = Open::new();
        open.epoch -= Duration::from_secs(60);
        Arc::new(Mutex::new(open))
    }

    /// Make `a` idle (or, never served, accepted) `ms` milliseconds ago; `served`: it has answered a request.
    fn idle_for(a: &Admitted, ms: u64, served: bool) {
        a.activity.served.store(served, Ordering::Release);
        let since = a.activity.now() - ms;
        a.activity.idle_since.store(since, Ordering::Release);
    }

    fn counts(open: &Arc<Mutex<Open>>) -> (usize, usize) {
        let o = open.lock().unwrap();
        (o.held.len(), o.by_client.len())
    }

    #[test]
    fn error_answers_past_a_burst_are_held_back_per_client_and_the_budget_refills() {
        let budget = ErrorBudget::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..ERROR_BURST as usize {
            assert_eq!(budget.take(a, t0), None);
        }
        let first = budget.take(a, t0).expect("past the burst, held back");
        let second = budget.take(a, t0).expect("and the next longer");
        assert!(
            first > Duration::ZERO && second > first,
            "{first:?} {second:?}"
        );
        for _ in 0..1000 {
            assert!(budget.take(a, t0).unwrap() <= MAX_ERROR_DELAY);
        }
        // Another address has its own budget.
        assert_eq!(budget.take(b, t0), None);
        // A quiet spell refills it.
        let later = t0 + MAX_ERROR_DELAY + Duration::from_secs_f64(ERROR_BURST / ERRORS_PER_SEC);
        assert_eq!(budget.take(a, later), None);
        assert!(ErrorBudget::counts(hyper::StatusCode::NOT_FOUND));
        assert!(!ErrorBudget::counts(hyper::StatusCode::UNAUTHORIZED));
        assert!(!ErrorBudget::counts(hyper::StatusCode::OK));
    }

    #[test]
    fn busy_connections_are_bounded_in_all_and_per_client_and_given_back() {
        let limits = Connections {
            max: 3,
            max_per_client: 2,
            ..Connections::default()
        };
        let open = table();
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            [10, 0, 0, 3].into(),
        );
        let take = |client| Open::admit(&open, client, &limits);
        let a1 = take(a).unwrap();
        let a2 = take(a).unwrap();
        let _busy = [Busy::new(&a1.activity), Busy::new(&a2.activity)];
        let refused = take(a).err().unwrap();
        assert!(refused.contains("from 10.0.0.1, all busy"), "{refused}");
        let b1 = take(b).unwrap();
        let _b_busy = Busy::new(&b1.activity);
        let refused = take(c).err().unwrap();
        assert!(
            refused.contains("3 connections open, all busy"),
            "{refused}"
        );
        drop(a1);
        let c1 = take(c).unwrap();
        drop((a2, b1, c1));
        assert_eq!(counts(&open), (0, 0));
    }

    #[test]
    fn the_idlest_connection_makes_room_and_busy_ones_never_do() {
        let limits = Connections {
            max: 3,
            max_per_client: 2,
            ..Connections::default()
        };
        let open = table();
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let take = |client| Open::admit(&open, client, &limits);
        let mut a1 = take(a).unwrap();
        let mut a2 = take(a).unwrap();
        // a1 was idle first, but a request made it busy: a2 is closed for a3, a1 is not.
        idle_for(&a1, 10_000, true);
        idle_for(&a2, 5_000, true);
        let busy = Busy::new(&a1.activity);
        let mut a3 = take(a).unwrap();
        assert_eq!(a2.evicted.try_recv(), Ok(()));
        assert!(a1.evicted.try_recv().is_err());
        // A busy connection that goes idle becomes the idlest only by its time: the total cap closes the idlest
        // of all (a3), from whichever address.
        drop(busy);
        let b1 = take(b).unwrap();
        idle_for(&a1, 1_000, true);
        idle_for(&a3, 3_000, true);
        idle_for(&b1, 2_000, true);
        assert_eq!(counts(&open), (3, 2));
        let mut b2 = take(b).unwrap();
        assert_eq!(a3.evicted.try_recv(), Ok(()));
        assert!(a1.evicted.try_recv().is_err());
        // Half-open (no request for RECENT_MS: b2) goes before keep-alive ones idle longer (a1, b1).
        idle_for(&b2, RECENT_MS + 1, false);
        let mut c1 = take([10, 0, 0, 3].into()).unwrap();
        assert_eq!(b2.evicted.try_recv(), Ok(()));
        // A connection accepted just now (c1, its first request on its way) goes after the keep-alive ones
        // idle longer than RECENT_MS (b1 the idler) ...
        let (mut a1, mut b1) = (a1, b1);
        idle_for(&c1, 0, false);
        let mut d1 = take([10, 0, 0, 4].into()).unwrap();
        assert_eq!(b1.evicted.try_recv(), Ok(()));
        assert!(c1.evicted.try_recv().is_err());
        // ... and before one that answered a request just now (a1: a client between two requests).
        idle_for(&a1, 1, true);
        idle_for(&d1, 0, false);
        let e1 = take([10, 0, 0, 5].into()).unwrap();
        assert_eq!(c1.evicted.try_recv(), Ok(()));
        assert!(a1.evicted.try_recv().is_err() && d1.evicted.try_recv().is_err());
        // Dropping an evicted connection's slot gives back nothing twice.
        drop((a2, a3, b2, b1, c1));
        assert_eq!(counts(&open), (3, 3));
        drop((a1, d1));
        assert_eq!(counts(&open), (1, 1));
        drop(e1);
    }
}
