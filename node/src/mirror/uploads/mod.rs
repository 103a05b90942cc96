//! Blob upload sessions of the push side. Each session spools to its own file, `STORE/uploads/<id>`, never to
//! memory: the request body is handed frame by frame through a small channel to a blocking thread that appends
//! it and feeds the running SHA-256, so completing an upload knows the digest without reading the file again.
//!
//! A chunk is all or nothing: if its body breaks off, stalls, overflows the limit or does not match its
//! `Content-Range`, the file is cut back and the hash restored to where the chunk began. Sessions live in memory
//! and do not survive a restart (leftover files are removed when the node starts; clients start the upload
//! again). A session idle longer than the configured timeout is dropped with its file by [`Uploads::sweep`].

use super::oci::ApiError;
use axum::body::Body;
use axum::http::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

/// Frames queued between the connection and the thread writing the spool file.
const QUEUE: usize = 4;
/// A body that sends nothing for this long is given up on.
const STALL: Duration = Duration::from_secs(60);

/// Limits on uploads. Deserializable so a configuration file can carry it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct UploadLimits {
    /// The largest blob one upload may carry, in bytes.
    pub max_bytes: u64,
    /// Seconds a session may sit idle before it is dropped.
    pub timeout_secs: u64,
    /// Sessions open at once; more are refused with `TOOMANYREQUESTS` until some finish.
    pub max_sessions: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_bytes: 16 << 30,
            timeout_secs: 3600,
            max_sessions: 256,
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
    /// Bytes received.
    pub size: u64,
    /// SHA-256 of those bytes so far.
    sha: Sha256,
    touched: Instant,
    /// Removed (completed, cancelled or expired) while someone waited for it.
    closed: bool,
}

impl Session {
    /// The digest of everything received so far.
    pub fn digest(&self) -> ferry_protocol::Sha256Digest {
        ferry_protocol::Sha256Digest(ferry_protocol::Hash32(self.sha.clone().finalize().into()))
    }

    /// `Location` of the session.
    pub fn location(&self) -> String {
        format!("/v2/{}/blobs/uploads/{}", self.repository, self.id)
    }

    /// The `Range` header value: `0-<last byte received>` (`0-0` before any).
    pub fn range(&self) -> String {
        format!("0-{}", self.size.saturating_sub(1))
    }
}

type Shared = Arc<tokio::sync::Mutex<Session>>;

/// Every open session.
pub(crate) struct Uploads {
    dir: PathBuf,
    limits: UploadLimits,
    sessions: Mutex<HashMap<String, Shared>>,
}

fn upload_unknown(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        format!("upload {id} is not known to this node (finished, cancelled, expired, or from before a restart)"),
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

fn new_id() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Append what `rx` yields to `path` from `start` on, feeding `sha`; returns the hash and the bytes written.
fn spool(
    path: &Path,
    start: u64,
    mut sha: Sha256,
    mut rx: tokio::sync::mpsc::Receiver<axum::body::Bytes>,
) -> std::io::Result<(Sha256, u64)> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len(start)?;
    f.seek(SeekFrom::Start(start))?;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut n = 0u64;
    while let Some(b) = rx.blocking_recv() {
        f.write_all(&b)?;
        sha.update(&b);
        n += b.len() as u64;
    }
    f.flush()?;
    Ok((sha, n))
}

/// Why a chunk was not taken.
enum Broken {
    TooBig,
    Stalled,
    Client(String),
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
            limits,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Open a new session for `repository`.
    pub async fn start(&self, repository: &str) -> Result<Shared, ApiError> {
        let id = new_id();
        let path = self.dir.join(&id);
        {
            let sessions = self.sessions.lock().expect("uploads lock poisoned");
            if sessions.len() >= self.limits.max_sessions {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOOMANYREQUESTS",
                    format!(
                        "{} uploads are open, the most this node allows; retry when some finish",
                        sessions.len()
                    ),
                ));
            }
        }
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&p)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        let s = Arc::new(tokio::sync::Mutex::new(Session {
            id: id.clone(),
            repository: repository.to_string(),
            path,
            size: 0,
            sha: Sha256::new(),
            touched: Instant::now(),
            closed: false,
        }));
        self.sessions
            .lock()
            .expect("uploads lock poisoned")
            .insert(id, s.clone());
        Ok(s)
    }

    /// The session `id` of `repository`, locked (waiting for a request that holds it to finish).
    pub async fn get(
        &self,
        repository: &str,
        id: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<Session>, ApiError> {
        let s = self
            .sessions
            .lock()
            .expect("uploads lock poisoned")
            .get(id)
            .cloned()
            .ok_or_else(|| upload_unknown(id))?;
        let s = s.lock_owned().await;
        if s.closed || s.repository != repository {
            return Err(upload_unknown(id));
        }
        Ok(s)
    }

    /// Drop a session and its file.
    pub async fn remove(&self, s: &mut Session) {
        s.closed = true;
        self.sessions
            .lock()
            .expect("uploads lock poisoned")
            .remove(&s.id);
        let path = s.path.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %path.display(), error = %e, "removing an upload");
                }
            }
        })
        .await;
    }

    /// Append `body` to the session, whole or not at all. `declared` is the request's Content-Length, if given:
    /// a body declared too big is refused before any of it is read.
    pub async fn append(
        &self,
        s: &mut Session,
        body: Body,
        declared: Option<u64>,
    ) -> Result<(), ApiError> {
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
        if declared.is_some_and(|n| s.size.saturating_add(n) > max) {
            return Err(too_big());
        }
        let start = s.size;
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let (path, sha) = (s.path.clone(), s.sha.clone());
        let writer = tokio::task::spawn_blocking(move || spool(&path, start, sha, rx));
        let mut stream = body.into_data_stream();
        let mut received = 0u64;
        let mut broken = None;
        loop {
            match tokio::time::timeout(STALL, stream.next()).await {
                Err(_) => {
                    broken = Some(Broken::Stalled);
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    broken = Some(Broken::Client(e.to_string()));
                    break;
                }
                Ok(Some(Ok(frame))) => {
                    received += frame.len() as u64;
                    if start.saturating_add(received) > max {
                        broken = Some(Broken::TooBig);
                        break;
                    }
                    if tx.send(frame).await.is_err() {
                        break; // the writer failed; its error is below
                    }
                }
            }
        }
        drop(tx);
        let written = writer.await.map_err(internal)?;
        let result = match (broken, written) {
            (None, Ok((sha, n))) if n == received => {
                s.sha = sha;
                s.size = start + n;
                Ok(())
            }
            (None, Ok((_, n))) => Err(internal(format!(
                "spooled {n} bytes of a {received}-byte chunk"
            ))),
            (Some(Broken::TooBig), _) => Err(too_big()),
            (Some(Broken::Stalled), _) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("the request body sent nothing for {} s", STALL.as_secs()),
            )),
            (Some(Broken::Client(e)), _) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("the request body broke off: {e}"),
            )),
            (None, Err(e)) => Err(internal(format!("{}: {e}", s.path.display()))),
        };
        s.touched = Instant::now();
        if result.is_err() {
            // Cut the file back to where the chunk began; the hash was never replaced.
            let path = s.path.clone();
            let _ = tokio::task::spawn_blocking(move || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(start))
            })
            .await;
        }
        result
    }

    /// Mark a session as just used.
    pub fn touch(s: &mut Session) {
        s.touched = Instant::now();
    }

    /// Drop every session idle for longer than the timeout (sessions busy with a request are never idle).
    pub async fn sweep(&self) {
        let stale = Duration::from_secs(self.limits.timeout_secs);
        let mut expired = Vec::new();
        {
            let mut sessions = self.sessions.lock().expect("uploads lock poisoned");
            sessions.retain(|id, s| match s.try_lock() {
                Ok(mut s) if s.touched.elapsed() > stale => {
                    s.closed = true;
                    tracing::info!(upload = %id, repository = %s.repository, bytes = s.size, "upload expired");
                    expired.push(s.path.clone());
                    false
                }
                _ => true,
            });
        }
        if !expired.is_empty() {
            let _ = tokio::task::spawn_blocking(move || {
                for p in expired {
                    let _ = std::fs::remove_file(p);
                }
            })
            .await;
        }
    }

    /// How often [`Uploads::sweep`] should run: a quarter of the timeout, between 1 s and a minute.
    pub fn sweep_every(&self) -> Duration {
        Duration::from_secs((self.limits.timeout_secs / 4).clamp(1, 60))
    }
}
