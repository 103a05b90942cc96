//! Progress reporting for long work. The library reports; only the CLI draws.

/// Receives progress of one long operation. Implementations must be cheap: `advance` is called per chunk.
pub trait Progress: Send + Sync {
    /// A new phase with a known total of units (bytes unless said otherwise); `None` when unknown.
    fn start(&self, _label: &str, _total: Option<u64>) {}
    /// `n` more units done.
    fn advance(&self, _n: u64) {}
    /// The phase is over.
    fn finish(&self) {}
    /// A one-line note for the operator (shown above the bars).
    fn note(&self, _message: &str) {}
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
