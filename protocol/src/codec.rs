//! The versioned encoding of every top-level object.
//!
//! Layout: `b"FRRY"`, one byte naming the object type, a little-endian `u16` format version, then the object in
//! bincode 2 (standard configuration: little-endian, variable-length integers). Decoding checks all three, refuses
//! trailing bytes, and caps allocations so that hostile input cannot ask for gigabytes.

use serde::{de::DeserializeOwned, Serialize};

/// Every encoded object starts with these four bytes.
pub const MAGIC: [u8; 4] = *b"FRRY";

const HEADER_LEN: usize = 7;

/// Largest object we accept: recipes of very large blobs stay far below this.
const LIMIT: usize = 256 << 20;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Why bytes could not be decoded as an object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Fewer bytes than a header.
    #[error("truncated: {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    Truncated {
        /// Bytes given.
        len: usize,
    },
    /// Not a Ferry object.
    #[error("bad magic {found:02x?}: not a Ferry object")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// Another kind of object than the one asked for.
    #[error("expected a {expected}, found object type {found}")]
    WrongType {
        /// What the caller asked for.
        expected: &'static str,
        /// The type byte found.
        found: u8,
    },
    /// Written by a newer Ferry.
    #[error("{what} format version {found} is newer than this Ferry understands ({supported})")]
    UnsupportedVersion {
        /// The object.
        what: &'static str,
        /// Version found.
        found: u16,
        /// Newest version we read.
        supported: u16,
    },
    /// Written by an older Ferry, in a format this one no longer reads.
    #[error("{what} format version {found} is older than this Ferry reads ({oldest}): write it again with this version")]
    TooOld {
        /// The object.
        what: &'static str,
        /// Version found.
        found: u16,
        /// Oldest version we read.
        oldest: u16,
    },
    /// The body did not decode.
    #[error("malformed {what}: {source}")]
    Body {
        /// The object.
        what: &'static str,
        /// What bincode said.
        source: bincode::error::DecodeError,
    },
    /// Bytes left over after the object.
    #[error("malformed {what}: {extra} trailing bytes")]
    Trailing {
        /// The object.
        what: &'static str,
        /// How many.
        extra: usize,
    },
}

/// A top-level object with its own type byte and format version.
pub trait Object: Serialize + DeserializeOwned {
    /// The type byte written after the magic.
    const TYPE: u8;
    /// The current format version.
    const VERSION: u16;
    /// The oldest format version this Ferry still reads.
    const OLDEST: u16 = 1;
    /// A name for error messages.
    const NAME: &'static str;

    /// Encode with header.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.push(Self::TYPE);
        out.extend_from_slice(&Self::VERSION.to_le_bytes());
        // Encoding into a Vec only fails for types serde cannot express, which ours never are.
        bincode::serde::encode_into_std_write(self, &mut out, config())
            .expect("encoding a protocol object into memory cannot fail");
        out
    }

    /// Decode, checking magic, type, version and that every byte was used.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        if bytes.len() < HEADER_LEN {
            return Err(CodecError::Truncated { len: bytes.len() });
        }
        let magic: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(CodecError::BadMagic { found: magic });
        }
        if bytes[4] != Self::TYPE {
            return Err(CodecError::WrongType {
                expected: Self::NAME,
                found: bytes[4],
            });
        }
        let version = u16::from_le_bytes([bytes[5], bytes[6]]);
        if version == 0 || version > Self::VERSION {
            return Err(CodecError::UnsupportedVersion {
                what: Self::NAME,
                found: version,
                supported: Self::VERSION,
            });
        }
        if version < Self::OLDEST {
            return Err(CodecError::TooOld {
                what: Self::NAME,
                found: version,
                oldest: Self::OLDEST,
            });
        }
        let (value, used) = bincode::serde::decode_from_slice(&bytes[HEADER_LEN..], config())
            .map_err(|source| CodecError::Body {
                what: Self::NAME,
                source,
            })?;
        let extra = bytes.len() - HEADER_LEN - used;
        if extra != 0 {
            return Err(CodecError::Trailing {
                what: Self::NAME,
                extra,
            });
        }
        Ok(value)
    }
}
