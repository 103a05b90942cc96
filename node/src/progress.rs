//! Progress reporting for long work, and its cancellation. The library reports; only the CLI draws.
//!
//! Long work asks [`Progress::cancelled`] as it reads its input: once the node is stopping ([`stop_all`]) or the
//! client the work is for has gone, it ends with an error saying so instead of running on for nobody.

use std::sync::atomic::{AtomicBool, Ordering};

static STOPPING: AtomicBool = AtomicBool::new(false);

/// The process is stopping: every long operation still running ends at its next check.
pub fn stop_all() {
    STOPPING.store(true, Ordering::Release);
}

/// Whether [`stop_all`] was called.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::Acquire)
}

/// Receives progress of one long operation. Implementations must be cheap: `advance` is called per chunk, and
/// `cancelled` per read of the input.
pub trait Progress: Send + Sync {
    /// A new phase with a known total of units (bytes unless said otherwise); `None` when unknown.
    fn start(&self, _label: &str, _total: Option<u64>) {}
    /// `n` more units done.
    fn advance(&self, _n: u64) {}
    /// The phase is over.
    fn finish(&self) {}
    /// A one-line note for the operator (shown above the bars).
    fn note(&self, _message: &str) {}
    /// Why the operation should stop now, if it should: by default, when the process is stopping.
    fn cancelled(&self) -> Option<&'static str> {
        stopping().then_some("the node is stopping")
    }
}

/// A reader that fails, saying why, once `progress` says the work is cancelled.
pub struct Cancellable<'p, R> {
    inner: R,
    progress: &'p dyn Progress,
}

impl<'p, R> Cancellable<'p, R> {
    /// `inner`, read until `progress` is cancelled.
    pub fn new(inner: R, progress: &'p dyn Progress) -> Self {
        Cancellable { inner, progress }
    }
}

impl<R: std::io::Read> std::io::Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(why) = self.progress.cancelled() {
            // Not `Interrupted`: readers retry that.
            return Err(std::io::Error::other(format!("cancelled: {why}")));
        }
        self.inner.read(buf)
    }
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Bytes in binary units, e.g. `1.5 MiB` (whole bytes below 1 KiB).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
