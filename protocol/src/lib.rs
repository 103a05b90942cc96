//! Ferry's pure data: what is stored, signed and sent, and how it is encoded.
//!
//! - [`ids`]: BLAKE3 chunk, blob and recipe ids, SHA-256 digests, publisher key ids.
//! - [`recipe`]: how a blob is rebuilt from chunks (and, later, from transforms of stored content).
//! - [`release`]: release manifests — name, version, entries — and their ed25519 signatures.
//! - [`bundle`]: bundles for removable media — the signed index, volumes, the chunk-record stream — and
//!   have-files.
//! - [`delta`]: delta transport — recipes as differences against held ones, chunks as zstd deltas against held
//!   content.
//! - [`sync`]: the data plane of network sync — requests, answers, chunk records — and control-plane messages.
//! - [`codec`]: the versioned bincode 2 encoding; every top-level object starts with a magic and a format version.
//!
//! This crate does no I/O: no files, no network, no async runtime. It is the crate to fuzz.

pub mod bundle;
pub mod codec;
pub mod delta;
pub mod ids;
pub mod recipe;
pub mod release;
pub mod sync;

pub use codec::{CodecError, Object};
pub use ids::{BlobId, ChunkId, Hash32, IdParseError, KeyId, RecipeId, Sha256Digest};
pub use recipe::{Part, Recipe};
pub use release::{
    validate_name, validate_rel_path, validate_version, BlobRef, Entry, FileEntry, ImageBlob,
    ImageEntry, NameError, PublisherKey, ReleaseKind, ReleaseManifest, SignatureError,
    SignedRelease, CURRENT_VERSION,
};
