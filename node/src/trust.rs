//! The publisher keys a store accepts releases and bundles from.
//!
//! The store's own publisher key is always trusted. Others live as one file each in `trust/<key-id>.pub`, in the
//! text form `ferry keys export` prints, so an operator can read and audit them with ordinary tools.

use ferry_protocol::{KeyId, PublisherKey, SignatureError};
use std::path::{Path, PathBuf};

/// Why a trust operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// File-system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A key file that does not parse.
    #[error("{path}: {source}")]
    BadKey {
        /// The file.
        path: String,
        /// Why.
        source: SignatureError,
    },
    /// Removing a key that is not trusted.
    #[error("key {0} is not in the trust list")]
    NotTrusted(KeyId),
    /// Removing the store's own key.
    #[error("key {0} is this store's own publisher key; it is always trusted")]
    OwnKey(KeyId),
}

/// Where a trusted key comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The store's own publisher key.
    Own,
    /// Added with `ferry trust add`.
    Added,
}

/// The keys a store accepts.
#[derive(Clone, Debug)]
pub struct TrustSet {
    keys: Vec<(PublisherKey, Origin)>,
}

impl TrustSet {
    /// Only these keys.
    pub fn of(keys: impl IntoIterator<Item = PublisherKey>) -> Self {
        TrustSet {
            keys: keys.into_iter().map(|k| (k, Origin::Added)).collect(),
        }
    }

    /// The key with this id, if trusted.
    pub fn get(&self, id: KeyId) -> Option<&PublisherKey> {
        self.keys.iter().find(|(k, _)| k.id() == id).map(|(k, _)| k)
    }

    /// Every key with where it came from.
    pub fn keys(&self) -> &[(PublisherKey, Origin)] {
        &self.keys
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn dir(root: &Path) -> PathBuf {
    root.join("trust")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrustError {
    let path = path.display().to_string();
    move |source| TrustError::Io { path, source }
}

/// Read a key file (`ferry-ed25519 <id> <hex>`; blank lines and `#` comments allowed around it).
pub fn read_key_file(path: &Path) -> Result<PublisherKey, TrustError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    PublisherKey::from_line(line).map_err(|source| TrustError::BadKey {
        path: path.display().to_string(),
        source,
    })
}

/// The store's trust set: its own key and every key in `trust/`.
pub fn load(root: &Path, own: PublisherKey) -> Result<TrustSet, TrustError> {
    let mut keys = vec![(own, Origin::Own)];
    let d = dir(root);
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TrustSet { keys }),
        Err(e) => return Err(io(&d)(e)),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for e in entries {
        let p = e.map_err(io(&d))?.path();
        if p.extension().is_some_and(|x| x == "pub") {
            files.push(p);
        }
    }
    files.sort();
    for p in files {
        let k = read_key_file(&p)?;
        if !keys.iter().any(|(have, _)| have.id() == k.id()) {
            keys.push((k, Origin::Added));
        }
    }
    Ok(TrustSet { keys })
}

/// Trust `key`: write `trust/<id>.pub` (durably). Returns false if it was trusted already.
pub fn add(root: &Path, own: PublisherKey, key: PublisherKey) -> Result<bool, TrustError> {
    if load(root, own)?.get(key.id()).is_some() {
        return Ok(false);
    }
    let d = dir(root);
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let path = d.join(format!("{}.pub", key.id()));
    let tmp = d.join(format!(".{}.pub.tmp", key.id()));
    std::fs::write(&tmp, format!("{}\n", key.to_line())).map_err(io(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(&d)
        .and_then(|f| f.sync_all())
        .map_err(io(&d))?;
    Ok(true)
}

/// Stop trusting the key `id`.
pub fn remove(root: &Path, own: PublisherKey, id: KeyId) -> Result<(), TrustError> {
    if own.id() == id {
        return Err(TrustError::OwnKey(id));
    }
    let path = dir(root).join(format!("{id}.pub"));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(TrustError::NotTrusted(id)),
        Err(e) => Err(io(&path)(e)),
    }
}
