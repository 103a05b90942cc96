//! Writing releases back out.
//!
//! - [`oci`]: an OCI image layout with every blob under its original digest.
//! - [`files`]: file entries as a tree, byte-identical, with modes and symlinks; zero runs become holes.

pub mod files;
pub mod oci;

use crate::store::StoreError;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The output would be wrong or unsafe.
    #[error("{0}")]
    Refused(String),
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ExportError {
    let path = path.display().to_string();
    move |source| ExportError::Io { path, source }
}
