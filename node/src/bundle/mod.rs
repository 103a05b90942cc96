//! Bundles for removable media: only the chunks a site lacks, compressed as a stream, split into volumes,
//! signed end to end.
//!
//! - [`export`]: plan (what the site holds → what must travel), write the stream and volumes, sign the index.
//! - [`stream`]: read volumes back block by block (each block checked against the signed index), decode segments,
//!   check every chunk against its id. Shared by verify and import.
//! - [`import`]: store verified chunks, then recipes and blobs, then each release whose content is whole.
//! - [`have`]: the have-file a site writes so a seed can send it only what it lacks.
//!
//! The format itself (index, segments, records) lives in `ferry_protocol::bundle`.

pub mod export;
pub mod have;
pub mod import;
pub mod stream;

use crate::store::StoreError;
use crate::trust::TrustSet;
use ferry_protocol::bundle::{BundleIndex, IndexError, SignedIndex, INDEX_FILE};
use ferry_protocol::{ChunkId, CodecError, KeyId, Object, SignatureError};
use std::path::{Path, PathBuf};

pub use export::{export, ExportOptions, ExportReport};
pub use import::{import, ImportReport};
pub use stream::{verify, VerifyReport};

/// Largest index file read (a bundle of terabytes has an index of some tens of MiB).
const MAX_INDEX: u64 = 256 << 20;

/// What can go wrong with a bundle. Every variant names the file, and where it matters the offset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// File-system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No index file: not a bundle, or an export that never finished.
    #[error("{0}: no {INDEX_FILE} here — not a ferry bundle, or its export did not finish")]
    NotABundle(String),
    /// The output directory holds a bundle already.
    #[error("{0} already exists; export into an empty directory or remove the old bundle first")]
    Exists(String),
    /// An index file that does not decode.
    #[error("{path}: {source}")]
    Codec {
        /// The file.
        path: String,
        /// Why.
        source: CodecError,
    },
    /// An index signed by a key nobody trusts.
    #[error(
        "{path}: the bundle is signed by key {key}, which is not trusted (see `ferry trust add`)"
    )]
    Untrusted {
        /// The index file.
        path: String,
        /// The signer.
        key: KeyId,
    },
    /// A signature that does not verify: the index was altered.
    #[error("{path}: {source}")]
    Signature {
        /// The index file.
        path: String,
        /// Why.
        source: SignatureError,
    },
    /// A signed index whose structure is inconsistent.
    #[error("{path}: {source}")]
    Index {
        /// The index file.
        path: String,
        /// Why.
        source: IndexError,
    },
    /// No trusted keys to check a signature against.
    #[error("no trusted keys to check the bundle's signature: pass --key FILE or use a store")]
    NoKeys,
    /// A volume not found.
    #[error("volume {path} is missing (expected {size} bytes)")]
    MissingVolume {
        /// Where it was looked for.
        path: String,
        /// Its size in the index.
        size: u64,
    },
    /// A volume of the wrong length: truncated, or not the one the index names.
    #[error("volume {path} is {actual} bytes, expected {expected}{}", if actual < expected { " (truncated)" } else { "" })]
    VolumeSize {
        /// The volume.
        path: String,
        /// Size in the index.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// Bytes that do not match the signed index.
    #[error("volume {path} is damaged at offset {offset} (the {len}-byte block there does not match the signed index)")]
    Damaged {
        /// The volume.
        path: String,
        /// Offset of the block in the volume.
        offset: u64,
        /// Block length.
        len: u64,
    },
    /// A segment that does not decode although its bytes match the index (a faulty exporter).
    #[error("segment {segment} (volume {path}, offset {offset}): {message}")]
    Segment {
        /// Segment number, from 0.
        segment: usize,
        /// The volume it starts in.
        path: String,
        /// Its offset there.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// A chunk whose bytes do not hash to its id.
    #[error(
        "segment {segment} (volume {path}, offset {offset}): chunk {id} does not match its content"
    )]
    Chunk {
        /// Segment number.
        segment: usize,
        /// The volume it starts in.
        path: String,
        /// Its offset there.
        offset: u64,
        /// The chunk.
        id: ChunkId,
    },
    /// A base the bundle's deltas or recipes refer to that this store lacks (never held, or garbage-collected).
    #[error(
        "{path}: the bundle was made against blob {base_blob} (recipe {base_recipe}), which this store does not \
         hold whole{}; nothing was imported — export again with --have from this store",
        needed_by.as_ref().map(|b| format!(" (blob {b} is sent as a difference against it)")).unwrap_or_default()
    )]
    MissingBase {
        /// The bundle.
        path: String,
        /// The base blob.
        base_blob: ferry_protocol::BlobId,
        /// Its recipe.
        base_recipe: ferry_protocol::RecipeId,
        /// The bundle's blob that needs it (its digest), if known.
        needed_by: Option<String>,
    },
    /// A recipe of the index that does not rebuild into the recipe it names.
    #[error("{path}: recipe {id} does not rebuild from the bundle: {message}")]
    Recipe {
        /// The index file.
        path: String,
        /// The recipe.
        id: ferry_protocol::RecipeId,
        /// Why.
        message: String,
    },
    /// Releases that could not be completed from this bundle and the store.
    #[error("{}", incomplete_message(.0))]
    Incomplete(Vec<(String, u64)>),
    /// A volume size too small to be useful.
    #[error("volume size {0} is too small: use at least 1M")]
    VolumeTooSmall(u64),
    /// A have-file that does not decode.
    /// The audit entries the bundle carries do not check out.
    #[error("{0}; nothing was imported")]
    Audit(String),
    #[error("have-file {path}: {source}")]
    HaveFile {
        /// The file.
        path: String,
        /// Why.
        source: CodecError,
    },
}

fn incomplete_message(list: &[(String, u64)]) -> String {
    let names: Vec<String> = list
        .iter()
        .map(|(r, n)| format!("{r} (lacks {n} chunks)"))
        .collect();
    format!(
        "not imported, content missing: {} — the bundle assumed the store already holds it; export with \
         --have from this store, or without a base",
        names.join(", ")
    )
}

impl BundleError {
    fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> BundleError {
        let path = path.as_ref().display().to_string();
        move |source| BundleError::Io { path, source }
    }
}

/// A bundle directory with its index read (signature not yet checked).
pub struct Bundle {
    dir: PathBuf,
    signed: SignedIndex,
}

impl Bundle {
    /// Read the index of the bundle in `dir`.
    pub fn open(dir: &Path) -> Result<Bundle, BundleError> {
        let path = dir.join(INDEX_FILE);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BundleError::NotABundle(dir.display().to_string()))
            }
            Err(e) => return Err(BundleError::io(&path)(e)),
        };
        if meta.len() > MAX_INDEX {
            return Err(BundleError::Codec {
                path: path.display().to_string(),
                source: CodecError::Truncated { len: 0 },
            });
        }
        let bytes = std::fs::read(&path).map_err(BundleError::io(&path))?;
        let signed = SignedIndex::decode(&bytes).map_err(|source| BundleError::Codec {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
            signed,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index file's path.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX_FILE)
    }

    /// The key that signed the index.
    pub fn signer(&self) -> KeyId {
        self.signed.key
    }

    /// Check the signature against `trust` and the index's structure; the index, verified.
    pub fn verify_index(&self, trust: &TrustSet) -> Result<BundleIndex, BundleError> {
        let path = self.index_path().display().to_string();
        let key = trust
            .get(self.signed.key)
            .ok_or_else(|| BundleError::Untrusted {
                path: path.clone(),
                key: self.signed.key,
            })?;
        let index = self
            .signed
            .verify(key)
            .map_err(|source| BundleError::Signature {
                path: path.clone(),
                source,
            })?;
        index
            .check()
            .map_err(|source| BundleError::Index { path, source })?;
        Ok(index)
    }

    /// The index without checking its signature (for `bundle inspect` where no key is at hand).
    pub fn index_unverified(&self) -> Result<BundleIndex, BundleError> {
        self.signed
            .index_unverified()
            .map_err(|source| BundleError::Codec {
                path: self.index_path().display().to_string(),
                source,
            })
    }

    /// Bytes of the index file.
    pub fn index_bytes(&self) -> u64 {
        self.signed.encode().len() as u64
    }
}

/// Which volume holds stream offset `at`, and the offset inside it.
pub(crate) fn locate(index: &BundleIndex, at: u64) -> (usize, u64) {
    let mut start = 0u64;
    for (i, v) in index.volumes.iter().enumerate() {
        if at < start + v.size {
            return (i + 1, at - start);
        }
        start += v.size;
    }
    (index.volumes.len().max(1), at.saturating_sub(start))
}

/// Write `bytes` to a temporary name beside `path`, fsync, rename, fsync the directory: `path` is either absent
/// or whole.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(BundleError::io(&tmp))?;
        f.write_all(bytes).map_err(BundleError::io(&tmp))?;
        f.sync_all().map_err(BundleError::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(BundleError::io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    crate::store::sync_dir(&dir)?;
    Ok(())
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
