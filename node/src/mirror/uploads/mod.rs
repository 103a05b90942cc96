//! Blob upload sessions of the push side. Each session spools to its own file, `STORE/uploads/<id>`, never to
//! memory: the request body is handed frame by frame through a small channel to a blocking thread that appends
//! it and feeds the running SHA-256, so completing an upload knows the digest without reading the file again.
//!
//! A chunk is all or nothing: if its body breaks off, stalls, overflows a limit or does not match its
//! `Content-Range`, the file is cut back and the hash restored to where the chunk began. The writing thread does
//! the cutting back and the bookkeeping itself, so a request dropped midway (its client gone) leaves the session
//! as it stood. Sessions live in memory and do not survive a restart (leftover files are removed when the node
//! starts; clients start the upload again).
//!
//! What pushers can make the node hold is bounded ([`UploadLimits`]):
//! - one blob: `max_bytes`, else 413 `SIZE_INVALID` and the upload ends;
//! - all spool files together: `max_spool_bytes`. A chunk that would take them past it is refused, 413
//!   `SIZE_INVALID` naming the limit — before a byte is read when its length is declared — and the upload stays
//!   where it stood, to be resumed. First, though, uploads idle for `evict_after_secs` make room, longest idle
//!   first: they are abandoned, not slow;
//! - the store's free space: a new upload or chunk is refused with 507 Insufficient Storage (the spool directory
//!   and its free bytes named) while the filesystem has less than `min_free_bytes` (plus the chunk's declared
//!   length) free; the writer looks again every 64 MiB;
//! - sessions: `max_sessions` at once. When they are all open, a new upload evicts the one idle longest if it
//!   has been idle for `evict_after_secs` (60 s by default: a client between two requests of one upload waits
//!   milliseconds, not a minute); otherwise 429 `TOOMANYREQUESTS` with `Retry-After` set to when one will have
//!   been idle that long. An evicted, expired or cancelled upload answers 404 `BLOB_UPLOAD_UNKNOWN`;
//! - time: a body that sends nothing for a minute (or the upload timeout, if shorter) is given up on, and a
//!   session idle for `timeout_secs` is dropped by [`Uploads::sweep`].
//!
//! The spool cap is a 4xx because it is a limit on what is pushed, and clients (skopeo, podman, docker) show the
//! message of a 4xx but only the status line of a 5xx; a full disk is the node's trouble, not the request's, and
//! its status line, "507 Insufficient Storage", says enough to a pusher (the node's log says the rest).
//!
//! One request at a time changes a session; status (`GET`) never waits for it and answers the last committed
//! offset. A newer `PATCH`, `PUT` or `DELETE` of an upload aborts a chunk still in flight on it (the client
//! that sent it has given up on it): a cancel takes effect at once, and a client retrying after a dead
//! connection resumes where the upload stands without waiting for the stalled request to time out.
//!
//! - [`spool`]: the bytes all sessions spool against their cap, an ended session's file and bytes to discard,
//!   the filesystem's free space.
//! - [`writer`]: the blocking thread that appends one chunk, then commits it or cuts the file back.

use super::oci::ApiError;
use axum::body::{Body, BodyDataStream};
use axum::http::{header, HeaderValue, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;

mod spool;
mod writer;

use spool::{free_bytes, Discard, Reservation, Spool};
use writer::{Piece, Stop, Writer};

/// Frames queued between the connection and the thread writing the spool file.
const QUEUE: usize = 4;
/// A body that sends nothing for this long (or the upload timeout, if shorter) is given up on.
const STALL: Duration = Duration::from_secs(60);

/// Limits on uploads. Deserializable so a configuration file can carry it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct UploadLimits {
    /// The largest blob one upload may carry, in bytes.
    pub max_bytes: u64,
    /// Bytes all unfinished uploads may spool together.
    pub max_spool_bytes: u64,
    /// Bytes the store's filesystem keeps free: upload bytes that would eat into them are refused (0: no check).
    pub min_free_bytes: u64,
    /// Seconds a session may sit idle before it is dropped.
    pub timeout_secs: u64,
    /// Sessions open at once.
    pub max_sessions: usize,
    /// Seconds of idleness after which a session gives way to a new one (when `max_sessions` are open) or to
    /// another's bytes (when the spool is full).
    pub evict_after_secs: u64,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_bytes: 16 << 30,
            max_spool_bytes: 32 << 30,
            min_free_bytes: 1 << 30,
            timeout_secs: 3600,
            max_sessions: 256,
            evict_after_secs: 60,
        }
    }
}

/// One upload in progress.
pub(crate) struct Session {
    /// Its id (32 hex digits), the last part of its URL.
    pub id: String,
    /// The repository it was started for.
    pub repository: String,
    /// The spool file.
    pub path: PathBuf,
    state: Mutex<State>,
}

/// What changes in a session.
struct State {
    /// Bytes received and committed.
    size: u64,
    /// SHA-256 of those bytes.
    sha: Sha256,
    touched: Instant,
    /// Ended (completed, cancelled, evicted or expired): its bytes are no longer counted, its file goes.
    closed: bool,
    /// The request changing it, if one is.
    busy: Option<Busy>,
}

/// How to reach the request that holds a session.
struct Busy {
    /// Set to ask it to stop.
    abort: watch::Sender<bool>,
    /// Closed when it has let go.
    done: watch::Receiver<()>,
}

impl Session {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("upload session lock poisoned")
    }

    /// `Location` of the session.
    pub fn location(&self) -> String {
        format!("/v2/{}/blobs/uploads/{}", self.repository, self.id)
    }

    /// The `Range` header value: `0-<last byte committed>` (`0-0` before any).
    pub fn range(&self) -> String {
        format!("0-{}", self.state().size.saturating_sub(1))
    }

    /// Not ended.
    pub fn is_open(&self) -> bool {
        !self.state().closed
    }

    /// How long it has been idle; `None` while a request holds it or once it has ended.
    fn idle(&self, now: Instant) -> Option<Duration> {
        let st = self.state();
        (!st.closed && st.busy.is_none()).then(|| now.saturating_duration_since(st.touched))
    }
}

/// The right to change a session, held by one request at a time; the session is free again when it is dropped.
struct Claim {
    session: Arc<Session>,
    /// Its size and hash when claimed.
    start: u64,
    sha: Sha256,
    /// Dropped last: waiters wake once `busy` is cleared.
    _done: watch::Sender<()>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut st = self.session.state();
        st.busy = None;
        st.touched = Instant::now();
    }
}

/// An upload being completed: no longer a session (requests for it find none), its bytes still spooled.
pub(crate) struct Finished {
    /// The repository it was started for.
    pub repository: String,
    /// The spool file.
    pub path: PathBuf,
    /// Bytes received.
    pub size: u64,
    /// Their SHA-256.
    pub digest: ferry_protocol::Sha256Digest,
    discard: Discard,
}

impl Finished {
    /// Remove the spool file.
    pub async fn discard(self) {
        self.discard.run().await;
    }
}

/// Every open session.
pub(crate) struct Uploads {
    dir: PathBuf,
    limits: UploadLimits,
    spool: Arc<Spool>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

type Sessions = HashMap<String, Arc<Session>>;

fn upload_unknown(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        format!(
            "upload {id} is not known to this node (finished, cancelled, expired, evicted while idle, or from \
             before a restart)"
        ),
    )
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "upload spool");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "internal error; see the node's log",
    )
}

/// What is read and dropped of a body refused for its size or for room (413, 507), at most.
const DRAIN_BYTES: u64 = 64 << 20;
/// How long that may take, at most.
const DRAIN_TIME: Duration = Duration::from_secs(10);
/// A body silent this long is not drained further (a client that sends is never silent that long).
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// Read and drop what is left of a refused body (up to [`DRAIN_BYTES`] within [`DRAIN_TIME`], while it keeps
/// coming) before answering. A client still sending when the node answers and closes meets a reset that throws
/// away the answer unread — skopeo then reports a broken pipe instead of the refusal and its reason.
async fn drain(stream: &mut BodyDataStream) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut left = DRAIN_BYTES;
    while left > 0 {
        let quiet = (tokio::time::Instant::now() + DRAIN_QUIET).min(deadline);
        match tokio::time::timeout_at(quiet, stream.next()).await {
            Ok(Some(Ok(frame))) => left = left.saturating_sub(frame.len() as u64),
            _ => return,
        }
    }
}

/// 416 `RANGE_INVALID`.
pub(crate) fn range_invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID", message)
}

fn new_id() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Why the connection stopped reading a chunk.
enum Broken {
    TooBig,
    Stalled(Duration),
    Client(String),
    /// A newer request on the session, or its end, took over.
    Aborted,
    /// Not the bytes its `Content-Range` covers.
    Mismatch(u64),
    /// Refused (the spool is full).
    Refused(ApiError),
}

/// Wait until `abort` is set (or its sender gone).
async fn aborted(abort: &mut watch::Receiver<bool>) {
    let _ = abort.wait_for(|a| *a).await;
}

impl Uploads {
    /// Sessions spooling under `dir`, which is created, and emptied of files left by an earlier run.
    pub fn new(dir: PathBuf, limits: UploadLimits) -> std::io::Result<Uploads> {
        std::fs::create_dir_all(&dir)?;
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                std::fs::remove_file(e.path())?;
                tracing::info!(file = %e.path().display(), "removed an upload left from an earlier run");
            }
        }
        Ok(Uploads {
            dir,
            spool: Spool::new(limits.max_spool_bytes),
            limits,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().expect("uploads lock poisoned")
    }

    /// Open sessions idle for at least `evict_after_secs`, longest idle first.
    fn evictable(&self, sessions: &Sessions) -> Vec<(Duration, Arc<Session>)> {
        let now = Instant::now();
        let floor = Duration::from_secs(self.limits.evict_after_secs);
        let mut idle: Vec<_> = sessions
            .values()
            .filter_map(|s| Some((s.idle(now).filter(|i| *i >= floor)?, s.clone())))
            .collect();
        idle.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        idle
    }

    /// End `s`, held in `sessions` (locked): it is closed, taken out, and a request holding it is aborted.
    fn end_in(&self, sessions: &mut Sessions, s: &Session) -> Option<Discard> {
        let size = {
            let mut st = s.state();
            if st.closed {
                return None;
            }
            st.closed = true;
            if let Some(b) = &st.busy {
                b.abort.send_replace(true);
            }
            st.size
        };
        sessions.remove(&s.id);
        Some(Discard::new(s.path.clone(), self.spool.adopt(size)))
    }

    fn end(&self, s: &Session) -> Option<Discard> {
        self.end_in(&mut self.sessions(), s)
    }

    /// Refused unless the filesystem keeps `min_free_bytes` free after `need` more bytes.
    async fn check_free(&self, need: u64) -> Result<(), ApiError> {
        if self.limits.min_free_bytes == 0 {
            return Ok(());
        }
        let dir = self.dir.clone();
        let free = tokio::task::spawn_blocking(move || free_bytes(&dir))
            .await
            .map_err(internal)?
            .map_err(|e| internal(format!("{}: {e}", self.dir.display())))?;
        if free < self.limits.min_free_bytes.saturating_add(need) {
            return Err(self.no_room(free, need));
        }
        Ok(())
    }

    fn no_room(&self, free: u64, need: u64) -> ApiError {
        let chunk = if need > 0 {
            format!("this {need}-byte chunk plus ")
        } else {
            String::new()
        };
        let message = format!(
            "the filesystem of {} has {free} bytes free, less than {chunk}the {} bytes this node keeps free \
             (uploads.min_free_bytes)",
            self.dir.display(),
            self.limits.min_free_bytes
        );
        tracing::warn!("upload refused: {message}");
        ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN", message)
    }

    /// Count `n` more spooled bytes, evicting idle sessions (longest idle first) to make room if need be.
    fn reserve(&self, n: u64) -> Result<Reservation, ApiError> {
        let cap = self.spool.cap();
        let refuse = |message: String| {
            tracing::warn!("upload refused: {message}");
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID", message)
        };
        if n > cap {
            return Err(refuse(format!(
                "a {n}-byte chunk is more than the node's whole upload spool holds, {cap} bytes \
                 (uploads.max_spool_bytes)"
            )));
        }
        loop {
            let held = match self.spool.reserve(n) {
                Ok(r) => return Ok(r),
                Err(held) => held,
            };
            let evicted = {
                let mut sessions = self.sessions();
                let victim = self
                    .evictable(&sessions)
                    .into_iter()
                    .find(|(_, s)| s.state().size > 0);
                victim.and_then(|(idle, s)| {
                    tracing::info!(upload = %s.id, repository = %s.repository, idle_secs = idle.as_secs(),
                        "idle upload evicted: the upload spool is full");
                    self.end_in(&mut sessions, &s)
                })
            };
            if evicted.is_none() {
                return Err(refuse(format!(
                    "the node's upload spool is full: unfinished uploads hold {held} bytes, and {n} more would \
                     pass its cap of {cap} bytes (uploads.max_spool_bytes); retry when other uploads finish"
                )));
            }
            // Dropping the evicted session gives its bytes back now; its file goes in the background.
        }
    }

    /// Open a new session for `repository`.
    pub async fn start(&self, repository: &str) -> Result<Arc<Session>, ApiError> {
        self.check_free(0).await?;
        let id = new_id();
        let s = Arc::new(Session {
            id: id.clone(),
            repository: repository.to_string(),
            path: self.dir.join(&id),
            state: Mutex::new(State {
                size: 0,
                sha: Sha256::new(),
                touched: Instant::now(),
                closed: false,
                busy: None,
            }),
        });
        let evicted = {
            let mut sessions = self.sessions();
            let evicted = if sessions.len() >= self.limits.max_sessions {
                let Some((idle, victim)) = self.evictable(&sessions).into_iter().next() else {
                    return Err(self.too_many(&sessions));
                };
                tracing::info!(upload = %victim.id, repository = %victim.repository, idle_secs = idle.as_secs(),
                    "idle upload evicted: {} uploads are open", sessions.len());
                self.end_in(&mut sessions, &victim)
            } else {
                None
            };
            sessions.insert(id, s.clone());
            evicted
        };
        if let Some(d) = evicted {
            d.run().await;
        }
        let p = s.path.clone();
        let created = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&p)
        })
        .await;
        if let Err(e) = created.map_err(internal).and_then(|r| r.map_err(internal)) {
            if let Some(d) = self.end(&s) {
                d.run().await;
            }
            return Err(e);
        }
        Ok(s)
    }

    /// 429, with `Retry-After` set to when the next session will have been idle long enough to give way.
    fn too_many(&self, sessions: &Sessions) -> ApiError {
        let now = Instant::now();
        let floor = self.limits.evict_after_secs;
        let wait = sessions
            .values()
            .filter_map(|s| s.idle(now))
            .map(|i| floor.saturating_sub(i.as_secs()))
            .min()
            .unwrap_or(floor)
            .max(1);
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            format!(
                "{} uploads are open, the most this node allows (uploads.max_sessions), and none has been idle \
                 for {floor} s (uploads.evict_after_secs); retry in {wait} s",
                sessions.len()
            ),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(wait))
    }

    /// The session `id` of `repository`. Never waits for a request that is changing it.
    pub fn get(&self, repository: &str, id: &str) -> Result<Arc<Session>, ApiError> {
        let s = self
            .sessions()
            .get(id)
            .cloned()
            .ok_or_else(|| upload_unknown(id))?;
        if !s.is_open() || s.repository != repository {
            return Err(upload_unknown(id));
        }
        Ok(s)
    }

    /// Hold `s` to change it, aborting a request that holds it and waiting for it to let go; also the watch its
    /// own abort comes through.
    async fn claim(&self, s: &Arc<Session>) -> Result<(Claim, watch::Receiver<bool>), ApiError> {
        loop {
            let mut done = {
                let mut st = s.state();
                if st.closed {
                    return Err(upload_unknown(&s.id));
                }
                match &st.busy {
                    Some(b) => {
                        b.abort.send_replace(true);
                        b.done.clone()
                    }
                    None => {
                        let (abort, abort_rx) = watch::channel(false);
                        let (done, done_rx) = watch::channel(());
                        st.busy = Some(Busy {
                            abort,
                            done: done_rx,
                        });
                        let claim = Claim {
                            session: s.clone(),
                            start: st.size,
                            sha: st.sha.clone(),
                            _done: done,
                        };
                        return Ok((claim, abort_rx));
                    }
                }
            };
            // Returns when the holder's claim (the sender) is dropped.
            let _ = done.changed().await;
        }
    }

    /// End a session: its file is removed, a request in flight on it aborted. Unknown if it had ended already.
    pub async fn cancel(&self, s: &Session) -> Result<(), ApiError> {
        let d = self.end(s).ok_or_else(|| upload_unknown(&s.id))?;
        d.run().await;
        Ok(())
    }

    /// End a session for completion: what it holds, its file kept until [`Finished::discard`].
    pub async fn finish(&self, s: &Arc<Session>) -> Result<Finished, ApiError> {
        let (claim, _) = self.claim(s).await?;
        let discard = self.end(s).ok_or_else(|| upload_unknown(&s.id))?;
        Ok(Finished {
            repository: s.repository.clone(),
            path: s.path.clone(),
            size: claim.start,
            digest: ferry_protocol::Sha256Digest(ferry_protocol::Hash32(
                claim.sha.clone().finalize().into(),
            )),
            discard,
        })
    }

    /// Append `body` to the session, whole or not at all. `declared` is the request's Content-Length, if given;
    /// `range` its Content-Range, which must start where the upload stands. A body declared too big, or that
    /// would not fit in the spool or the filesystem, is refused before any of it is read. The upload ends if it
    /// outgrows `max_bytes` or its file cannot be written; any other refusal leaves it where it stood.
    pub async fn append(
        &self,
        s: &Arc<Session>,
        body: Body,
        declared: Option<u64>,
        range: Option<(u64, u64)>,
    ) -> Result<(), ApiError> {
        let mut stream = body.into_data_stream();
        let r = self.append_from(s, &mut stream, declared, range).await;
        if let Err(e) = &r {
            if matches!(
                e.status(),
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::INSUFFICIENT_STORAGE
            ) {
                drain(&mut stream).await;
            }
        }
        r
    }

    async fn append_from(
        &self,
        s: &Arc<Session>,
        stream: &mut BodyDataStream,
        declared: Option<u64>,
        range: Option<(u64, u64)>,
    ) -> Result<(), ApiError> {
        let (claim, mut abort) = self.claim(s).await?;
        let start = claim.start;
        if let Some((a, _)) = range.filter(|(a, _)| *a != start) {
            return Err(range_invalid(format!(
                "chunk starts at byte {a}, but the upload holds {start} bytes: send from byte {start}"
            )));
        }
        let exact = range.map(|(a, b)| b - a + 1);
        let declared = declared.or(exact);
        let max = self.limits.max_bytes;
        let too_big = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!(
                    "the upload would exceed this node's limit of {max} bytes per blob (ferry serve --max-upload)"
                ),
            )
        };
        if declared.is_some_and(|n| start.saturating_add(n) > max) {
            drop(claim);
            let _ = self.cancel(s).await;
            return Err(too_big());
        }
        let mut ahead = match declared {
            Some(n) => self.reserve(n)?,
            None => self.spool.adopt(0),
        };
        self.check_free(declared.unwrap_or(0)).await?;

        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            claim,
            spool: self.spool.clone(),
            dir: self.dir.clone(),
            min_free: self.limits.min_free_bytes,
        };
        let writer = tokio::task::spawn_blocking(move || writer.run(rx));
        let stall = STALL.min(Duration::from_secs(self.limits.timeout_secs.max(1)));
        let mut received = 0u64;
        let broken = loop {
            let next = tokio::select! {
                _ = aborted(&mut abort) => break Some(Broken::Aborted),
                next = tokio::time::timeout(stall, stream.next()) => next,
            };
            let frame = match next {
                Err(_) => break Some(Broken::Stalled(stall)),
                Ok(None) => break exact.filter(|n| *n != received).map(Broken::Mismatch),
                Ok(Some(Err(e))) => break Some(Broken::Client(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            received += frame.len() as u64;
            if start.saturating_add(received) > max {
                break Some(Broken::TooBig);
            }
            if let Some(n) = exact.filter(|n| received > *n) {
                break Some(Broken::Mismatch(n));
            }
            let n = frame.len() as u64;
            let held = match ahead.split(n).map_or_else(|| self.reserve(n), Ok) {
                Ok(r) => r,
                Err(e) => break Some(Broken::Refused(e)),
            };
            tokio::select! {
                _ = aborted(&mut abort) => break Some(Broken::Aborted),
                sent = tx.send(Piece::Data(frame, held)) => if sent.is_err() {
                    break None; // the writer stopped; it says why below
                },
            }
        };
        if broken.is_none() {
            tokio::select! {
                _ = aborted(&mut abort) => {}
                _ = tx.send(Piece::End) => {}
            }
        }
        drop((tx, ahead));
        let written = writer.await.map_err(internal)?;
        if !s.is_open() {
            return Err(upload_unknown(&s.id));
        }
        let e = match (broken, written) {
            (None, Ok(_)) => return Ok(()),
            (_, Err(Stop::NoRoom(free))) => self.no_room(free, 0),
            (_, Err(Stop::Io(e))) => {
                let _ = self.cancel(s).await;
                if crate::store::is_no_space(&e) {
                    let message = format!("{}: {e}; the upload is cancelled", s.path.display());
                    tracing::warn!("upload refused: {message}");
                    ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN", message)
                } else {
                    internal(format!("{}: {e}", s.path.display()))
                }
            }
            (Some(Broken::TooBig), _) => {
                let _ = self.cancel(s).await;
                too_big()
            }
            (Some(Broken::Stalled(t)), _) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("the request body sent nothing for {} s", t.as_secs()),
            ),
            (Some(Broken::Client(e)), _) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("the request body broke off: {e}"),
            ),
            (Some(Broken::Mismatch(n)), _) => range_invalid(format!(
                "Content-Range covers {n} bytes but the body carried {received}"
            )),
            (Some(Broken::Aborted), _) | (None, Err(Stop::Aborted | Stop::Closed)) => {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "BLOB_UPLOAD_INVALID",
                    "a newer request on this upload took over; this chunk was not taken",
                )
            }
            (Some(Broken::Refused(e)), _) => e,
        };
        Err(e)
    }

    /// Mark a session as just used.
    pub fn touch(s: &Session) {
        s.state().touched = Instant::now();
    }

    /// Drop every session idle for longer than the timeout (sessions busy with a request are never idle).
    pub async fn sweep(&self) {
        let stale = Duration::from_secs(self.limits.timeout_secs);
        let now = Instant::now();
        let expired: Vec<Discard> = {
            let mut sessions = self.sessions();
            let old: Vec<_> = sessions
                .values()
                .filter(|s| s.idle(now).is_some_and(|i| i > stale))
                .cloned()
                .collect();
            old.iter()
                .filter_map(|s| {
                    tracing::info!(upload = %s.id, repository = %s.repository, bytes = s.state().size,
                        "upload expired");
                    self.end_in(&mut sessions, s)
                })
                .collect()
        };
        for d in expired {
            d.run().await;
        }
    }

    /// How often [`Uploads::sweep`] should run: a quarter of the timeout, between 1 s and a minute.
    pub fn sweep_every(&self) -> Duration {
        Duration::from_secs((self.limits.timeout_secs / 4).clamp(1, 60))
    }
}

#[cfg(test)]
mod tests;
