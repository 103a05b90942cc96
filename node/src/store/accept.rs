//! Taking in content that was made elsewhere — from a bundle or a peer — in the order that keeps a store whole:
//! chunks (already verified by the caller against their ids), then recipes and blob records once every chunk they
//! need is committed, then signed releases once every blob they name is complete.

use super::{Store, StoreError};
use ferry_protocol::{BlobRef, ChunkId, Object, Recipe, RecipeId, ReleaseManifest, SignedRelease};
use std::collections::HashMap;

/// At most this many blobs are remembered as complete between [`Store::accept_blobs`] and
/// [`Store::accept_release`]; past it, the memory is dropped and releases are checked in full.
const REMEMBER_COMPLETE: usize = 1 << 20;

/// What accepting a release did.
#[derive(Clone, Debug)]
pub enum Accepted {
    /// Newly visible.
    New(ReleaseManifest),
    /// Newly visible, but older (by the publisher's per-name sequence) than the newest version of its name this
    /// store has seen: reachable by its own version, tags and digests, never current unless pinned — a replayed
    /// old manifest cannot roll a site back.
    Older {
        /// The release.
        manifest: ReleaseManifest,
        /// The highest sequence of its name seen here.
        newest: u64,
    },
    /// The store held these exact bytes already.
    AlreadyHeld(ReleaseManifest),
}

impl Store {
    /// Every chunk id stored.
    pub fn chunk_ids(&self) -> impl Iterator<Item = Result<ChunkId, StoreError>> + '_ {
        self.0.chunks.iter().filter_map(|item| match item {
            Ok((k, _)) => {
                let id: [u8; 32] = k.as_ref().try_into().ok()?;
                Some(Ok(ChunkId::from_bytes(id)))
            }
            Err(e) => Some(Err(e.into())),
        })
    }

    /// Record `blobs` whose content is now entirely present, taking their recipes from the store or from
    /// `recipes` (encoded bytes by id, checked against the id and the blob's size). Commits first, so the chunks
    /// they name are durable before they are. Returns the blobs still incomplete; the others are remembered as
    /// complete, so [`Store::accept_release`] need not look them up again.
    pub fn accept_blobs(
        &self,
        recipes: &HashMap<RecipeId, Vec<u8>>,
        blobs: &[BlobRef],
    ) -> Result<Vec<BlobRef>, StoreError> {
        self.accept_blobs_checked(recipes, blobs, true)
    }

    /// [`Store::accept_blobs`] for blobs whose every chunk the caller stored in this store (or found in it) and
    /// counted: a sync, which tracks each chunk of its list. Their chunks are not looked up one by one again —
    /// on a release of 1.5 M chunks that was two thirds of the time spent recording its blobs, in index pages
    /// read back from disk.
    pub fn accept_stored_blobs(
        &self,
        recipes: &HashMap<RecipeId, Vec<u8>>,
        blobs: &[BlobRef],
    ) -> Result<Vec<BlobRef>, StoreError> {
        self.accept_blobs_checked(recipes, blobs, false)
    }

    fn accept_blobs_checked(
        &self,
        recipes: &HashMap<RecipeId, Vec<u8>>,
        blobs: &[BlobRef],
        look_up_chunks: bool,
    ) -> Result<Vec<BlobRef>, StoreError> {
        self.commit()?;
        let mut missing = Vec::new();
        let mut new_recipes = Vec::new();
        let mut new_blobs = Vec::new();
        let mut complete = Vec::new();
        for blob in blobs {
            if self.blob_complete(blob)? {
                complete.push(*blob);
                continue;
            }
            let (recipe, bytes) = match self.recipe(&blob.recipe)? {
                Some(r) => (r, None),
                None => match recipes.get(&blob.recipe) {
                    Some(bytes) => {
                        if RecipeId::of(bytes) != blob.recipe {
                            return Err(StoreError::Corrupt(format!(
                                "recipe {} does not match its id",
                                blob.recipe
                            )));
                        }
                        (Recipe::decode(bytes)?, Some(bytes.clone()))
                    }
                    None => {
                        missing.push(*blob);
                        continue;
                    }
                },
            };
            if !recipe.is_consistent() || recipe.size() != blob.size {
                return Err(StoreError::Corrupt(format!(
                    "recipe {} does not rebuild {} bytes for blob {}",
                    blob.recipe, blob.size, blob.sha256
                )));
            }
            let mut whole = true;
            if look_up_chunks {
                for (id, _) in recipe.chunks() {
                    if !self.has_chunk(&id)? {
                        whole = false;
                        break;
                    }
                }
            }
            if !whole {
                missing.push(*blob);
                continue;
            }
            if let Some(bytes) = bytes {
                new_recipes.push((blob.recipe, bytes));
            }
            complete.push(*blob);
            new_blobs.push(*blob);
        }
        self.queue_meta(new_recipes, new_blobs);
        self.commit()?;
        let mut memo = self.0.complete.lock().expect("poisoned");
        if memo.len() + complete.len() > REMEMBER_COMPLETE {
            memo.clear();
        }
        memo.extend(complete);
        Ok(missing)
    }

    /// Make a signed release visible: its signature must verify against a trusted key, its names and paths
    /// must be safe, and every blob it names must be complete. Holding the same bytes already is not an error;
    /// holding different content under the same `name@version` is.
    pub fn accept_release(&self, signed: &SignedRelease) -> Result<Accepted, StoreError> {
        // The unverified parse goes at once: a release of 100,000 files parses to ~125 MB, and a shadowed copy
        // would live beside the verified one to the end (the peak of a large sync).
        let id = signed.manifest_unverified()?.id();
        let manifest = self.verify_release(&id, signed)?;
        manifest.validate()?;
        let _guard = self.0.publish.lock().expect("publish lock poisoned");
        if let Some(held) = self.signed_release(&id)? {
            return if held.manifest == signed.manifest {
                Ok(Accepted::AlreadyHeld(manifest))
            } else {
                Err(StoreError::ReleaseConflict(id))
            };
        }
        let blobs = manifest.blobs();
        let known: Vec<bool> = {
            let memo = self.0.complete.lock().expect("poisoned");
            blobs.iter().map(|b| memo.contains(b)).collect()
        };
        for (blob, known) in blobs.iter().zip(known) {
            if !known && !self.blob_complete(blob)? {
                return Err(StoreError::Corrupt(format!(
                    "release {id}: blob {} is not completely stored",
                    blob.sha256
                )));
            }
        }
        let newest = self.next_sequence(&manifest.name)? - 1;
        let older = manifest.sequence <= newest;
        if !older {
            self.0
                .names
                .insert(manifest.name.as_bytes(), &manifest.sequence.to_be_bytes())?;
        }
        self.0.releases.insert(id.as_bytes(), signed.encode())?;
        self.0.db.flush()?;
        let mut memo = self.0.complete.lock().expect("poisoned");
        for b in &blobs {
            memo.remove(b);
        }
        drop(memo);
        self.bump_generation();
        if older {
            tracing::info!(release = %id, sequence = manifest.sequence, newest, "older than the newest seen: not current");
            return Ok(Accepted::Older { manifest, newest });
        }
        Ok(Accepted::New(manifest))
    }
}
