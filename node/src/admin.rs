//! The node's admin socket: how `ferry` commands reach a store that a running node holds.
//!
//! A running node owns its store (sled allows one process), so every other `ferry` command on that store goes
//! through `STORE/admin.sock`, a Unix socket created mode 0600. A connection is served only when the peer's uid
//! (from `SO_PEERCRED`, which the kernel fills in) is the uid that owns the store directory, or root.
//!
//! The exchange is one request and a stream of frames back:
//! - request: a 4-byte big-endian length, then a JSON [`Request`] — the client's version and its already-parsed
//!   command (paths made absolute by the client), opaque to this module;
//! - response: frames of 1 kind byte and a 4-byte big-endian length, then the bytes: [`Frame::Stdout`] and
//!   [`Frame::Stderr`] as the command writes them, and one [`Frame::Exit`] with the exit code last.
//!
//! What a request means is up to the [`Handler`] (the CLI runs its own command code against the node's store).
//! A client that disconnects is noticed (its end of the socket reads end-of-file) and told to the command through
//! [`Sink::client_gone`]: long work (an `add` reading its input) ends at its next read; what is already done
//! stays, as after any failed `add`.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The socket's file name inside the store directory.
pub const SOCKET: &str = "admin.sock";

/// How long commands still running at the node's stop get to end.
const FINISH: Duration = Duration::from_secs(4);

/// Largest request accepted, bytes.
const MAX_REQUEST: u32 = 1 << 20;

/// Largest frame a client accepts, bytes.
const MAX_FRAME: u32 = 64 << 20;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client asks the node to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    /// The client's version; the node refuses a request from another version.
    pub version: String,
    /// The command, as the handler understands it.
    pub command: serde_json::Value,
}

/// One piece of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Bytes for the client's stdout.
    Stdout(Vec<u8>),
    /// Bytes for the client's stderr.
    Stderr(Vec<u8>),
    /// The command ended with this exit code; nothing follows.
    Exit(i32),
}

impl Frame {
    fn encode(&self) -> Vec<u8> {
        let code;
        let (kind, bytes): (u8, &[u8]) = match self {
            Frame::Stdout(b) => (1, b),
            Frame::Stderr(b) => (2, b),
            Frame::Exit(c) => {
                code = c.to_be_bytes();
                (3, &code)
            }
        };
        let mut out = Vec::with_capacity(5 + bytes.len());
        out.push(kind);
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
        out
    }
}

/// Why the admin socket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Creating or using the socket failed.
    #[error("admin socket {path}: {source}")]
    Io {
        /// The socket.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The socket path does not fit in a Unix socket address.
    #[error("admin socket {path}: the path is {len} bytes, more than a Unix socket allows (107); use a shorter store path")]
    PathTooLong {
        /// The socket.
        path: String,
        /// Its length.
        len: usize,
    },
    /// The node answered something this client cannot read.
    #[error("admin socket {path}: {reason}")]
    Protocol {
        /// The socket.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// Where a command's output goes: back to the client, frame by frame. Blocking; for the handler's thread.
#[derive(Clone)]
pub struct Sink {
    tx: tokio::sync::mpsc::Sender<Frame>,
    gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Sink {
    /// Whether the client has gone (disconnected), so nobody waits for the command any more.
    pub fn client_gone(&self) -> bool {
        self.gone.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Send bytes to the client's stdout. Fails with `BrokenPipe` once the client is gone.
    pub fn stdout(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.send(Frame::Stdout(bytes.to_vec()))
    }

    /// Send bytes to the client's stderr. Fails with `BrokenPipe` once the client is gone.
    pub fn stderr(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.send(Frame::Stderr(bytes.to_vec()))
    }

    fn send(&self, frame: Frame) -> std::io::Result<()> {
        self.tx
            .blocking_send(frame)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// Runs one request on a blocking thread and returns its exit code.
pub type Handler = Arc<dyn Fn(Request, Sink) -> i32 + Send + Sync>;

/// The admin socket of the store at `store_dir`.
pub fn socket_path(store_dir: &Path) -> PathBuf {
    store_dir.join(SOCKET)
}

/// Bind `STORE/admin.sock` (mode 0600), replacing a stale one: the caller holds the store, so no other node can be
/// listening on it. Call within a tokio runtime.
pub fn bind(store_dir: &Path) -> Result<tokio::net::UnixListener, AdminError> {
    let path = socket_path(store_dir);
    let io = |source| AdminError::Io {
        path: path.display().to_string(),
        source,
    };
    let len = path.as_os_str().len();
    if len > 107 {
        return Err(AdminError::PathTooLong {
            path: path.display().to_string(),
            len,
        });
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = tokio::net::UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Serve `listener` until `shutdown` resolves; then remove the socket file and give commands still running
/// [`FINISH`] to end (long ones are told to by [`crate::progress::stop_all`]) and their clients their last
/// words. Only the uid owning `store_dir` (and root) are served.
pub async fn run(
    listener: tokio::net::UnixListener,
    store_dir: PathBuf,
    handler: Handler,
    shutdown: impl Future<Output = ()>,
) {
    let owner = std::fs::metadata(&store_dir).map(|m| m.uid()).ok();
    tokio::pin!(shutdown);
    let mut running = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = running.join_next(), if !running.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        running.spawn(async move {
            if let Err(e) = serve_one(stream, owner, handler).await {
                tracing::warn!(error = %e, "admin socket: request failed");
            }
        });
    }
    let finished = tokio::time::timeout(FINISH, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            commands = running.len(),
            "admin commands still running at the stop: left behind"
        );
    }
    let _ = std::fs::remove_file(socket_path(&store_dir));
}

async fn serve_one(
    mut stream: tokio::net::UnixStream,
    owner: Option<u32>,
    handler: Handler,
) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    if uid != 0 && Some(uid) != owner {
        tracing::warn!(
            uid,
            "admin socket: refused a client that does not own the store"
        );
        let msg = format!(
            "error: the node serves admin requests only to the store's owner (uid {}); you are uid {uid}\n",
            owner.map_or_else(|| "?".to_string(), |o| o.to_string())
        );
        stream
            .write_all(&Frame::Stderr(msg.into_bytes()).encode())
            .await?;
        stream.write_all(&Frame::Exit(1).encode()).await?;
        return Ok(());
    }
    let request = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request in 10 s"))??;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Frame>(64);
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sink = Sink {
        tx,
        gone: gone.clone(),
    };
    let task = tokio::task::spawn_blocking(move || handler(request, sink));
    let mut client_gone = false;
    let mut probe = [0u8; 64];
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => match frame {
                Some(f) => f,
                None => break,
            },
            // The client sends nothing after its request: a read that ends means it has gone.
            read = stream.read(&mut probe), if !client_gone => {
                if matches!(read, Ok(0) | Err(_)) {
                    tracing::info!("admin socket: the client left; its command is told to stop");
                    client_gone = true;
                    gone.store(true, std::sync::atomic::Ordering::Release);
                }
                continue;
            }
        };
        if !client_gone && stream.write_all(&frame.encode()).await.is_err() {
            // Keep draining so the command reaches its end; its output goes nowhere.
            client_gone = true;
            gone.store(true, std::sync::atomic::Ordering::Release);
        }
    }
    let code = task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "admin command panicked");
        2
    });
    if !client_gone {
        stream.write_all(&Frame::Exit(code).encode()).await?;
        stream.shutdown().await?;
    }
    Ok(())
}

async fn read_request(stream: &mut tokio::net::UnixStream) -> std::io::Result<Request> {
    let len = stream.read_u32().await?;
    if len > MAX_REQUEST {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("request of {len} bytes is larger than {MAX_REQUEST}"),
        ));
    }
    let mut buf = vec![0; len as usize];
    stream.read_exact(&mut buf).await?;
    serde_json::from_slice(&buf)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A connection to a running node's admin socket.
pub struct Client {
    stream: std::os::unix::net::UnixStream,
    path: PathBuf,
}

impl Client {
    /// Connect to the node holding `store_dir`, if one is running: `None` when there is no socket or nobody
    /// listens on it (a node that died leaves a stale socket behind).
    pub fn connect(store_dir: &Path) -> Option<Client> {
        let path = socket_path(store_dir);
        let stream = std::os::unix::net::UnixStream::connect(&path).ok()?;
        Some(Client { stream, path })
    }

    /// Send `request`; pass each output frame to `on_output` (`true` for stdout); return the exit code.
    pub fn call(
        mut self,
        request: &Request,
        mut on_output: impl FnMut(bool, &[u8]),
    ) -> Result<i32, AdminError> {
        let path = self.path.display().to_string();
        let io = |source| AdminError::Io {
            path: path.clone(),
            source,
        };
        let body = serde_json::to_vec(request).expect("a request serialises");
        // A node that refuses this client answers without reading the request, and may close before it is
        // written: read its answer even when the write fails.
        let written = self
            .stream
            .write_all(&(body.len() as u32).to_be_bytes())
            .and_then(|_| self.stream.write_all(&body));
        let mut reader = std::io::BufReader::new(&self.stream);
        loop {
            let mut head = [0u8; 5];
            match reader.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if written.is_err() => {
                    tracing::debug!(error = %e, "admin socket: no answer after a failed write");
                    return Err(io(written.expect_err("checked")));
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(AdminError::Protocol {
                        path,
                        reason:
                            "the node closed the connection before the command ended (did it stop?)"
                                .into(),
                    })
                }
                Err(e) => return Err(io(e)),
            }
            let len = u32::from_be_bytes(head[1..].try_into().expect("4 bytes"));
            if len > MAX_FRAME {
                return Err(AdminError::Protocol {
                    path,
                    reason: format!("a frame of {len} bytes is larger than {MAX_FRAME}"),
                });
            }
            let mut bytes = vec![0; len as usize];
            reader.read_exact(&mut bytes).map_err(io)?;
            match head[0] {
                1 => on_output(true, &bytes),
                2 => on_output(false, &bytes),
                3 if len == 4 => {
                    return Ok(i32::from_be_bytes(bytes[..].try_into().expect("4 bytes")))
                }
                kind => {
                    return Err(AdminError::Protocol {
                        path,
                        reason: format!("unknown frame kind {kind} of {len} bytes"),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_runs_and_its_output_comes_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handler: Handler = Arc::new(|req: Request, sink: Sink| {
            let n = req.command["n"].as_u64().unwrap();
            for i in 0..n {
                sink.stdout(format!("line {i}\n").as_bytes()).unwrap();
            }
            sink.stderr(b"done\n").unwrap();
            7
        });
        let server = {
            let _guard = rt.enter();
            let listener = bind(dir.path()).unwrap();
            let mode = std::fs::metadata(socket_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            rt.spawn(run(listener, dir.path().to_path_buf(), handler, async {
                let _ = stop_rx.await;
            }))
        };
        let client = Client::connect(dir.path()).expect("node listening");
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = client
            .call(
                &Request {
                    version: "t".into(),
                    command: serde_json::json!({"n": 1000}),
                },
                |is_out, b| {
                    if is_out {
                        out.extend_from_slice(b)
                    } else {
                        err.extend_from_slice(b)
                    }
                },
            )
            .unwrap();
        assert_eq!(code, 7);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.lines().count(), 1000);
        assert_eq!(out.lines().nth(999), Some("line 999"));
        assert_eq!(err, b"done\n");
        stop_tx.send(()).unwrap();
        rt.block_on(server).unwrap();
        assert!(
            !socket_path(dir.path()).exists(),
            "socket removed at shutdown"
        );
        assert!(Client::connect(dir.path()).is_none());
    }

    #[test]
    fn a_stale_socket_is_not_a_node() {
        let dir = tempfile::tempdir().unwrap();
        drop(std::os::unix::net::UnixListener::bind(socket_path(dir.path())).unwrap());
        assert!(socket_path(dir.path()).exists());
        assert!(Client::connect(dir.path()).is_none());
    }
}
