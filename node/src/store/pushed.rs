//! What clients pushed to the node's registry: the sled tree `pushed`.
//!
//! - `B` ‖ repository ‖ 0 ‖ sha256 → the blob's record (as the `blobs` tree holds it) ‖ media type: a blob or
//!   manifest that is part of the repository (uploaded, mounted, or named by a manifest pushed there).
//! - `T` ‖ repository ‖ 0 ‖ tag → manifest sha256 ‖ push time (seconds, little-endian u64) ‖ media type.
//!
//! An entry is written only once the blob it names is committed (chunks fsync'd, recipe and blob record in the
//! index), and a manifest's entries (itself, the blobs it names, its tag) in one batch, so a pushed tag always
//! resolves to a whole image. Repository names never contain a zero byte, so the keys cannot collide.

use super::{blob_from_value, blob_value, Store, StoreError};
use ferry_protocol::{BlobId, BlobRef, Sha256Digest};

/// A blob pushed into (or linked to) a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedBlob {
    /// The repository.
    pub repository: String,
    /// The stored blob.
    pub blob: BlobRef,
    /// Its media type: the manifest's own type for manifests, the descriptor's for blobs a manifest names,
    /// `application/octet-stream` for a blob no manifest has named yet.
    pub media_type: String,
}

/// A tag pushed to a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedTag {
    /// The repository.
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// The manifest or index it names.
    pub digest: Sha256Digest,
    /// Its media type.
    pub media_type: String,
    /// When it was pushed (seconds since the epoch).
    pub pushed_at: u64,
}

/// What a manifest push records, in one batch.
#[derive(Clone, Debug)]
pub struct ManifestPush<'a> {
    /// The repository.
    pub repository: &'a str,
    /// The manifest blob (already committed).
    pub manifest: BlobRef,
    /// Its media type.
    pub media_type: &'a str,
    /// The tag to point at it, if pushed by tag.
    pub tag: Option<&'a str>,
    /// The blobs and child manifests it names, with their descriptors' media types (each already committed).
    pub refs: &'a [(BlobRef, String)],
}

fn key(kind: u8, repo: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + repo.len() + rest.len());
    k.push(kind);
    k.extend_from_slice(repo.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

/// Split a key into (kind, repository, rest).
fn split_key(k: &[u8]) -> Option<(u8, &str, &[u8])> {
    let (&kind, tail) = k.split_first()?;
    let zero = tail.iter().position(|&b| b == 0)?;
    let repo = std::str::from_utf8(&tail[..zero]).ok()?;
    Some((kind, repo, &tail[zero + 1..]))
}

fn blob_entry(b: &BlobRef, media_type: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(104 + media_type.len());
    v.extend_from_slice(b.id.as_bytes());
    v.extend_from_slice(&blob_value(b));
    v.extend_from_slice(media_type.as_bytes());
    v
}

fn parse_blob_entry(repo: &str, v: &[u8]) -> Option<PushedBlob> {
    if v.len() < 104 {
        return None;
    }
    let id = BlobId::from_bytes(v[..32].try_into().ok()?);
    Some(PushedBlob {
        repository: repo.to_string(),
        blob: blob_from_value(id, &v[32..104])?,
        media_type: String::from_utf8(v[104..].to_vec()).ok()?,
    })
}

fn parse_tag_entry(repo: &str, tag: &[u8], v: &[u8]) -> Option<PushedTag> {
    if v.len() < 40 {
        return None;
    }
    Some(PushedTag {
        repository: repo.to_string(),
        tag: String::from_utf8(tag.to_vec()).ok()?,
        digest: Sha256Digest(ferry_protocol::Hash32(v[..32].try_into().ok()?)),
        pushed_at: u64::from_le_bytes(v[32..40].try_into().ok()?),
        media_type: String::from_utf8(v[40..].to_vec()).ok()?,
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// Check that `blob` is committed whole before anything pushed may name it.
    fn require_complete(&self, blob: &BlobRef) -> Result<(), StoreError> {
        if self.blob_complete(blob)? {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "pushed blob {} is not completely stored",
                blob.sha256
            )))
        }
    }

    /// Record that `blob` (committed) is part of `repository`, typed `media_type` unless the repository already
    /// knows it under a type (a manifest named it).
    pub fn push_blob(
        &self,
        repository: &str,
        blob: &BlobRef,
        media_type: &str,
    ) -> Result<(), StoreError> {
        self.require_complete(blob)?;
        let k = key(b'B', repository, &blob.sha256.0 .0);
        if let Some(old) = self.0.pushed.get(&k)? {
            if parse_blob_entry(repository, &old).is_some_and(|p| p.blob == *blob) {
                return Ok(());
            }
        }
        self.0.pushed.insert(k, blob_entry(blob, media_type))?;
        self.0.db.flush()?;
        self.bump_generation();
        Ok(())
    }

    /// Record a pushed manifest, the blobs it names, and its tag, atomically.
    pub fn push_manifest(&self, m: &ManifestPush<'_>) -> Result<PushedTag, StoreError> {
        self.require_complete(&m.manifest)?;
        for (b, _) in m.refs {
            self.require_complete(b)?;
        }
        let mut batch = sled::Batch::default();
        for (b, media_type) in m.refs {
            batch.insert(
                key(b'B', m.repository, &b.sha256.0 .0),
                blob_entry(b, media_type),
            );
        }
        batch.insert(
            key(b'B', m.repository, &m.manifest.sha256.0 .0),
            blob_entry(&m.manifest, m.media_type),
        );
        let pushed_at = now();
        if let Some(tag) = m.tag {
            let mut v = Vec::with_capacity(40 + m.media_type.len());
            v.extend_from_slice(&m.manifest.sha256.0 .0);
            v.extend_from_slice(&pushed_at.to_le_bytes());
            v.extend_from_slice(m.media_type.as_bytes());
            batch.insert(key(b'T', m.repository, tag.as_bytes()), v);
        }
        self.0.pushed.apply_batch(batch)?;
        self.0.db.flush()?;
        self.bump_generation();
        Ok(PushedTag {
            repository: m.repository.to_string(),
            tag: m.tag.unwrap_or_default().to_string(),
            digest: m.manifest.sha256,
            media_type: m.media_type.to_string(),
            pushed_at,
        })
    }

    /// The blob `digest` of `repository`, if pushed there.
    pub fn pushed_blob(
        &self,
        repository: &str,
        digest: &Sha256Digest,
    ) -> Result<Option<PushedBlob>, StoreError> {
        let k = key(b'B', repository, &digest.0 .0);
        match self.0.pushed.get(&k)? {
            Some(v) => parse_blob_entry(repository, &v)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("pushed entry {repository}@{digest}"))),
            None => Ok(None),
        }
    }

    /// The tag `tag` of `repository`, if pushed.
    pub fn pushed_tag(&self, repository: &str, tag: &str) -> Result<Option<PushedTag>, StoreError> {
        match self.0.pushed.get(key(b'T', repository, tag.as_bytes()))? {
            Some(v) => parse_tag_entry(repository, tag.as_bytes(), &v)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("pushed tag {repository}:{tag}"))),
            None => Ok(None),
        }
    }

    /// Every tag pushed to `repository`, by tag.
    pub fn pushed_tags(&self, repository: &str) -> Result<Vec<PushedTag>, StoreError> {
        let mut out = Vec::new();
        for item in self.0.pushed.scan_prefix(key(b'T', repository, b"")) {
            let (k, v) = item?;
            let Some((_, repo, tag)) = split_key(&k) else {
                continue;
            };
            out.extend(parse_tag_entry(repo, tag, &v));
        }
        Ok(out)
    }

    /// Everything pushed: every tag and every blob of every repository. An entry that does not decode is left
    /// out with a warning (and named by fsck), so one bad entry never stops the rest from being served.
    pub fn pushed(&self) -> Result<(Vec<PushedTag>, Vec<PushedBlob>), StoreError> {
        let (mut tags, mut blobs) = (Vec::new(), Vec::new());
        for item in self.0.pushed.iter() {
            let (k, v) = item?;
            let ok = match split_key(&k) {
                Some((b'T', repo, tag)) => parse_tag_entry(repo, tag, &v).map(|t| tags.push(t)),
                Some((b'B', repo, _)) => parse_blob_entry(repo, &v).map(|b| blobs.push(b)),
                _ => None,
            };
            if ok.is_none() {
                tracing::warn!(
                    key = %hex::encode(&k[..k.len().min(64)]),
                    "skipping a malformed entry of the pushed index"
                );
            }
        }
        Ok((tags, blobs))
    }

    /// Entries of the pushed index that do not decode (for fsck).
    pub(crate) fn pushed_malformed(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.0.pushed.iter() {
            let (k, v) = item?;
            let ok = match split_key(&k) {
                Some((b'T', repo, tag)) => parse_tag_entry(repo, tag, &v).is_some(),
                Some((b'B', repo, _)) => parse_blob_entry(repo, &v).is_some(),
                _ => false,
            };
            n += u64::from(!ok);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_back() {
        let k = key(b'T', "team/app", b"1.2");
        assert_eq!(split_key(&k), Some((b'T', "team/app", &b"1.2"[..])));
        // A repository that is a prefix of another does not see its tags.
        assert!(!key(b'T', "team/app2", b"x").starts_with(&key(b'T', "team/app", b"")));
    }
}
