//! Content ids: BLAKE3-256 for chunks, blobs and recipes; SHA-256 for ecosystem digests (OCI, apt, yum).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A 32-byte hash value, shown and parsed as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hash32(pub [u8; 32]);

/// Why a textual id could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdParseError {
    /// Not 64 hex digits.
    #[error("expected 64 lowercase hex digits, got {0:?}")]
    BadHex(String),
    /// An OCI digest without the `sha256:` algorithm prefix.
    #[error("unsupported digest {0:?}: only sha256:<64 hex digits> is accepted")]
    BadDigest(String),
}

impl Hash32 {
    /// The bytes as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Result<Self, IdParseError> {
        if s.len() != 64 || s.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(IdParseError::BadHex(s.to_string()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdParseError::BadHex(s.to_string()))?;
        Ok(Self(out))
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

macro_rules! blake3_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub Hash32);

        impl $name {
            /// The BLAKE3-256 hash of `bytes`.
            pub fn of(bytes: &[u8]) -> Self {
                Self(Hash32(*blake3::hash(bytes).as_bytes()))
            }
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0 .0
            }
            /// Build from raw bytes.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(Hash32(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Hash32::from_hex(s).map(Self)
            }
        }
    };
}

blake3_id!(
    /// A chunk's id: BLAKE3-256 of its uncompressed bytes.
    ChunkId
);
blake3_id!(
    /// A blob's id: BLAKE3-256 of its whole content.
    BlobId
);
blake3_id!(
    /// A recipe's id: BLAKE3-256 of its encoded bytes (magic and version included).
    RecipeId
);

/// A SHA-256 digest, as OCI, apt and yum name content. Displayed as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sha256Digest(pub Hash32);

impl Sha256Digest {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Self(Hash32(sha2::Sha256::digest(bytes).into()))
    }

    /// Only the hex part, without `sha256:`.
    pub fn hex(&self) -> String {
        self.0.to_hex()
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{:?}", self.0)
    }
}

impl FromStr for Sha256Digest {
    type Err = IdParseError;
    /// Parse an OCI digest string, `sha256:<64 hex>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| IdParseError::BadDigest(s.to_string()))?;
        Hash32::from_hex(hex)
            .map(Self)
            .map_err(|_| IdParseError::BadDigest(s.to_string()))
    }
}

/// A publisher key's id: the first 8 bytes of BLAKE3 of the ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of an ed25519 public key.
    pub fn of_public_key(public: &[u8; 32]) -> Self {
        let h = blake3::hash(public);
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.as_bytes()[..8]);
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_parse_round_trip() {
        let d = Sha256Digest::of(b"hello");
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(s.parse::<Sha256Digest>().unwrap(), d);
    }

    #[test]
    fn digest_parse_rejects_bad_input() {
        for bad in [
            "sha512:00",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
            "sha256:../../etc/passwd",
            "sha256:",
        ] {
            assert!(bad.parse::<Sha256Digest>().is_err(), "{bad}");
        }
    }
}
