//! Release manifests, their entries, and their ed25519 signatures.

use crate::codec::{CodecError, Object};
use crate::ids::{BlobId, KeyId, RecipeId, Sha256Digest};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What a release mostly holds; derived from its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReleaseKind {
    /// Only OCI images.
    Images,
    /// Only files, directories and links.
    Files,
    /// Both.
    Mixed,
}

impl ReleaseKind {
    /// The kind that describes `entries`.
    pub fn of(entries: &[Entry]) -> Self {
        let images = entries.iter().any(|e| matches!(e, Entry::Image(_)));
        let files = entries.iter().any(|e| !matches!(e, Entry::Image(_)));
        match (images, files) {
            (true, false) => ReleaseKind::Images,
            (false, _) => ReleaseKind::Files,
            (true, true) => ReleaseKind::Mixed,
        }
    }

    /// Lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReleaseKind::Images => "images",
            ReleaseKind::Files => "files",
            ReleaseKind::Mixed => "mixed",
        }
    }
}

/// A stored blob, as a release names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    /// BLAKE3 of the content.
    pub id: BlobId,
    /// SHA-256 of the content.
    pub sha256: Sha256Digest,
    /// Length in bytes.
    pub size: u64,
    /// The recipe that rebuilds it.
    pub recipe: RecipeId,
}

/// One blob of an image: a manifest, an index, a config or a layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBlob {
    /// The media type the referring descriptor gave (or the manifest's own `mediaType`).
    pub media_type: String,
    /// The blob; `blob.sha256` is its OCI digest.
    pub blob: BlobRef,
}

/// An OCI image (or image index) under a repository and tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// The registry host it came from, if any (`docker.io`, `registry.example:5000`).
    pub registry: Option<String>,
    /// Repository path, e.g. `library/debian` or the release name.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// Digest of the top-level manifest or index.
    pub digest: Sha256Digest,
    /// Media type of the top-level manifest or index.
    pub media_type: String,
    /// Every blob the image needs, the top-level manifest included, each once.
    pub blobs: Vec<ImageBlob>,
}

impl ImageEntry {
    /// `registry/repository:tag`, or `repository:tag` without a registry.
    pub fn reference(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}:{}", self.repository, self.tag),
            None => format!("{}:{}", self.repository, self.tag),
        }
    }
}

/// A regular file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative path inside the release.
    pub path: String,
    /// Unix permission bits.
    pub mode: u32,
    /// Its content.
    pub blob: BlobRef,
}

/// One thing a release holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Entry {
    /// An OCI image.
    Image(ImageEntry),
    /// A file.
    File(FileEntry),
    /// A directory (so empty ones and modes survive).
    Dir {
        /// Relative path.
        path: String,
        /// Unix permission bits.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Relative path.
        path: String,
        /// Where it points, as stored in the link.
        target: String,
    },
}

impl Entry {
    /// The blobs this entry needs.
    pub fn blobs(&self) -> Vec<&BlobRef> {
        match self {
            Entry::Image(i) => i.blobs.iter().map(|b| &b.blob).collect(),
            Entry::File(f) => vec![&f.blob],
            Entry::Dir { .. } | Entry::Symlink { .. } => vec![],
        }
    }

    /// The relative path of a file-tree entry.
    pub fn path(&self) -> Option<&str> {
        match self {
            Entry::File(f) => Some(&f.path),
            Entry::Dir { path, .. } | Entry::Symlink { path, .. } => Some(path),
            Entry::Image(_) => None,
        }
    }
}

/// A release: an immutable, named, versioned set of entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    /// Release name.
    pub name: String,
    /// Version.
    pub version: String,
    /// What it holds.
    pub kind: ReleaseKind,
    /// The entries, in a deterministic order.
    pub entries: Vec<Entry>,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Per-name sequence number from the publisher: higher is newer.
    pub sequence: u64,
    /// The key that signs it.
    pub publisher: KeyId,
}

impl Object for ReleaseManifest {
    const TYPE: u8 = 2;
    const VERSION: u16 = 1;
    const NAME: &'static str = "release manifest";
}

/// Why a name, version or path is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// Bad release name.
    #[error("invalid release name {0:?}: use lowercase letters, digits, '.', '_', '-' (and '/' between parts)")]
    Name(String),
    /// Bad version.
    #[error("invalid version {0:?}: use letters, digits, '.', '_', '-', '+'")]
    Version(String),
    /// A version string the mirrors reserve.
    #[error(
        "version {0:?} is reserved: /repos/NAME/current/ serves the newest version of a release"
    )]
    ReservedVersion(String),
    /// A path that is absolute, empty, or climbs out.
    #[error("unsafe path {0:?}: paths must be relative, without '..', '.', empty parts or NUL")]
    Path(String),
}

/// Check a release name: `[a-z0-9][a-z0-9._-]*` parts joined by `/`, at most 255 bytes.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|part| {
            part.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    ok.then_some(())
        .ok_or_else(|| NameError::Name(name.to_string()))
}

/// The version string that names "the newest version" in mirror paths (`/repos/NAME/current/…`), so no release
/// may carry it.
pub const CURRENT_VERSION: &str = "current";

/// Check a version: `[A-Za-z0-9][A-Za-z0-9._+-]*`, at most 128 bytes, and not [`CURRENT_VERSION`].
pub fn validate_version(version: &str) -> Result<(), NameError> {
    if version == CURRENT_VERSION {
        return Err(NameError::ReservedVersion(version.to_string()));
    }
    let ok = !version.is_empty()
        && version.len() <= 128
        && version.as_bytes()[0].is_ascii_alphanumeric()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    ok.then_some(())
        .ok_or_else(|| NameError::Version(version.to_string()))
}

/// Check a path inside a release: relative, `/`-separated, no `.`/`..`/empty parts, no NUL.
pub fn validate_rel_path(path: &str) -> Result<(), NameError> {
    let ok = !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    ok.then_some(())
        .ok_or_else(|| NameError::Path(path.to_string()))
}

impl ReleaseManifest {
    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Check the name, version and every entry path.
    pub fn validate(&self) -> Result<(), NameError> {
        validate_name(&self.name)?;
        validate_version(&self.version)?;
        for e in &self.entries {
            if let Some(p) = e.path() {
                validate_rel_path(p)?;
            }
        }
        Ok(())
    }

    /// Every blob the release needs, each once, in first-seen order.
    pub fn blobs(&self) -> Vec<BlobRef> {
        let mut seen = std::collections::HashSet::new();
        self.entries
            .iter()
            .flat_map(Entry::blobs)
            .filter(|b| seen.insert(b.id))
            .copied()
            .collect()
    }

    /// Sum of the entries' blob sizes (an image's blobs counted once per image).
    pub fn logical_size(&self) -> u64 {
        self.entries
            .iter()
            .flat_map(Entry::blobs)
            .map(|b| b.size)
            .sum()
    }

    /// Encode and sign with the publisher key.
    pub fn sign(&self, key: &SigningKey) -> SignedRelease {
        let manifest = self.encode();
        let (key, signature) = sign_bytes(key, &manifest);
        SignedRelease {
            manifest,
            key,
            signature,
        }
    }
}

/// A publisher's public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublisherKey(pub VerifyingKey);

impl PublisherKey {
    /// Its id.
    pub fn id(&self) -> KeyId {
        KeyId::of_public_key(self.0.as_bytes())
    }

    /// The one-line text form: `ferry-ed25519 <key-id> <public-key-hex>`.
    pub fn to_line(&self) -> String {
        format!(
            "ferry-ed25519 {} {}",
            self.id(),
            hex::encode(self.0.as_bytes())
        )
    }

    /// Parse the text form, checking that the id matches the key.
    pub fn from_line(line: &str) -> Result<Self, SignatureError> {
        let bad = || SignatureError::BadKeyText(line.trim().chars().take(80).collect());
        let mut words = line.split_whitespace();
        let (Some("ferry-ed25519"), Some(id), Some(key), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(bad());
        };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(key, &mut bytes).map_err(|_| bad())?;
        let key = PublisherKey(VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?);
        if key.id().to_string() != id {
            return Err(bad());
        }
        Ok(key)
    }
}

/// Why a signed release was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Signed by a key other than the one checked against.
    #[error("signed by key {found}, not by {expected}")]
    WrongKey {
        /// The key that was given.
        expected: KeyId,
        /// The key named in the envelope.
        found: KeyId,
    },
    /// The signature does not verify.
    #[error(
        "signature by key {0} does not verify: the manifest was altered or the signature forged"
    )]
    Invalid(KeyId),
    /// The manifest inside does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The manifest names another publisher than the envelope.
    #[error("manifest names publisher {inner} but is signed by {outer}")]
    PublisherMismatch {
        /// In the manifest.
        inner: KeyId,
        /// In the envelope.
        outer: KeyId,
    },
    /// A public key in text form that does not parse.
    #[error("not a ferry public key: {0:?}")]
    BadKeyText(String),
}

/// A release manifest's encoded bytes with the publisher's signature over exactly those bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRelease {
    /// The encoded [`ReleaseManifest`].
    pub manifest: Vec<u8>,
    /// Which key signed.
    pub key: KeyId,
    /// The 64-byte ed25519 signature.
    pub signature: Vec<u8>,
}

impl Object for SignedRelease {
    const TYPE: u8 = 3;
    const VERSION: u16 = 1;
    const NAME: &'static str = "signed release";
}

impl SignedRelease {
    /// Verify against `key` and decode the manifest.
    pub fn verify(&self, key: &PublisherKey) -> Result<ReleaseManifest, SignatureError> {
        verify_bytes(key, self.key, &self.manifest, &self.signature)?;
        let manifest = ReleaseManifest::decode(&self.manifest)?;
        if manifest.publisher != self.key {
            return Err(SignatureError::PublisherMismatch {
                inner: manifest.publisher,
                outer: self.key,
            });
        }
        Ok(manifest)
    }

    /// Decode the manifest without checking the signature (for listing what a store already verified).
    pub fn manifest_unverified(&self) -> Result<ReleaseManifest, CodecError> {
        ReleaseManifest::decode(&self.manifest)
    }
}

/// Sign `bytes`: the signer's key id and the 64-byte ed25519 signature.
pub(crate) fn sign_bytes(key: &SigningKey, bytes: &[u8]) -> (KeyId, Vec<u8>) {
    (
        KeyId::of_public_key(key.verifying_key().as_bytes()),
        key.sign(bytes).to_bytes().to_vec(),
    )
}

/// Check that `signature` over `bytes` was made by `key`, which the envelope names as `signer`.
pub(crate) fn verify_bytes(
    key: &PublisherKey,
    signer: KeyId,
    bytes: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    if signer != key.id() {
        return Err(SignatureError::WrongKey {
            expected: key.id(),
            found: signer,
        });
    }
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError::Invalid(signer))?;
    key.0
        .verify(bytes, &Signature::from_bytes(&sig))
        .map_err(|_| SignatureError::Invalid(signer))
}
