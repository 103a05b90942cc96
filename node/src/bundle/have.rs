//! Have-files: a site's account of what it holds — its releases and a compact list of its chunks — written by
//! `ferry have` and carried to the seed, so the next bundle carries only what the site lacks.

use super::{now, BundleError};
use crate::plan::envelope_hash;
use crate::store::Store;
use ferry_protocol::bundle::HaveFile;
use ferry_protocol::Object;
use std::path::Path;

/// Describe everything `store` holds.
pub fn build(store: &Store) -> Result<HaveFile, BundleError> {
    let releases = store
        .releases()?
        .iter()
        .map(|r| (r.manifest.id(), envelope_hash(&r.signed)))
        .collect();
    let chunks = store.chunk_ids().collect::<Result<Vec<_>, _>>()?;
    Ok(HaveFile::new(
        store.publisher().id(),
        now(),
        releases,
        chunks,
    ))
}

/// Write `store`'s have-file to `path` (atomically).
pub fn write(store: &Store, path: &Path) -> Result<HaveFile, BundleError> {
    let have = build(store)?;
    super::write_atomically(path, &have.encode())?;
    Ok(have)
}

/// Read a have-file.
pub fn read(path: &Path) -> Result<HaveFile, BundleError> {
    let bytes = std::fs::read(path).map_err(BundleError::io(path))?;
    HaveFile::decode(&bytes).map_err(|source| BundleError::HaveFile {
        path: path.display().to_string(),
        source,
    })
}
