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

/// Rebuild `blob` into `tmp` and rename it to `path`; on failure remove `tmp`, so an interrupted or failed
/// export never leaves a file that looks complete, nor litter.
pub(crate) fn write_then_rename(
    store: &crate::Store,
    blob: &ferry_protocol::BlobRef,
    tmp: &std::path::Path,
    path: &std::path::Path,
    progress: &dyn crate::Progress,
) -> Result<(), ExportError> {
    let result = store
        .write_blob_to_file(blob, tmp, progress)
        .map_err(ExportError::from)
        .and_then(|()| std::fs::rename(tmp, path).map_err(io(path)));
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}
