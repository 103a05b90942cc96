//! The publisher key: an ed25519 signing key kept in the store at `keys/publisher.key` (mode 0600).

use ed25519_dalek::SigningKey;
use ferry_protocol::PublisherKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a key could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// I/O on the key file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a key file.
    #[error("{path}: not a ferry publisher key (expected 64 hex digits)")]
    Malformed {
        /// The file.
        path: String,
    },
}

/// Create a new random key at `path`; fails if the file exists.
pub fn create(path: &Path) -> Result<SigningKey, KeyError> {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    write_new_private(
        path,
        format!("{}\n", hex::encode(key.to_bytes())).as_bytes(),
    )?;
    Ok(key)
}

/// Write `bytes` to a new file at `path` readable by its owner only (mode 0600), synced; fails if it exists.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Load the key at `path`.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| KeyError::Malformed {
        path: path.display().to_string(),
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The public half, for export and verification.
pub fn public(key: &SigningKey) -> PublisherKey {
    PublisherKey(key.verifying_key())
}
