//! What the spool holds: the bytes of all sessions counted against their cap ([`Spool`], [`Reservation`]), an
//! ended session's file and bytes to let go of ([`Discard`]), and the free space of the filesystem under it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The bytes all sessions spool, against their cap.
pub(super) struct Spool {
    held: AtomicU64,
    cap: u64,
}

/// Bytes counted in the [`Spool`], given back when dropped unless kept.
pub(super) struct Reservation {
    spool: Arc<Spool>,
    bytes: u64,
}

impl Spool {
    pub(super) fn new(cap: u64) -> Arc<Spool> {
        Arc::new(Spool {
            held: AtomicU64::new(0),
            cap,
        })
    }

    /// The cap.
    pub(super) fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes counted now.
    #[cfg(test)]
    pub(super) fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// `n` more bytes, if they fit under the cap; else the bytes held now.
    pub(super) fn reserve(self: &Arc<Self>, n: u64) -> Result<Reservation, u64> {
        let mut held = self.held.load(Ordering::Acquire);
        loop {
            let next = held.checked_add(n).filter(|&t| t <= self.cap).ok_or(held)?;
            match self
                .held
                .compare_exchange_weak(held, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(Reservation {
                        spool: self.clone(),
                        bytes: n,
                    })
                }
                Err(now) => held = now,
            }
        }
    }

    /// `n` bytes already counted (a session's), to give back.
    pub(super) fn adopt(self: &Arc<Self>, n: u64) -> Reservation {
        Reservation {
            spool: self.clone(),
            bytes: n,
        }
    }
}

impl Reservation {
    /// `n` of its bytes as a reservation of their own, if it has that many.
    pub(super) fn split(&mut self, n: u64) -> Option<Reservation> {
        self.bytes = self.bytes.checked_sub(n)?;
        Some(self.spool.adopt(n))
    }

    pub(super) fn merge(&mut self, mut other: Reservation) {
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Keep the bytes counted (they are a session's now, given back when it ends).
    pub(super) fn keep(mut self) {
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.spool.held.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// An ended session's spool file and bytes: the file is removed and the bytes given back by [`Discard::run`],
/// or in the background when dropped.
pub(super) struct Discard {
    path: Option<PathBuf>,
    _bytes: Reservation,
}

fn remove_spool_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = %path.display(), error = %e, "removing an upload");
        }
    }
}

impl Discard {
    pub(super) fn new(path: PathBuf, bytes: Reservation) -> Discard {
        Discard {
            path: Some(path),
            _bytes: bytes,
        }
    }

    pub(super) async fn run(mut self) {
        if let Some(path) = self.path.take() {
            let _ = tokio::task::spawn_blocking(move || remove_spool_file(&path)).await;
        }
    }
}

impl Drop for Discard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(move || remove_spool_file(&path))),
                Err(_) => remove_spool_file(&path),
            }
        }
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
pub(super) fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}
