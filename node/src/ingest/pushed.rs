//! Images pushed to this node's registry (`pushed:REPO[:TAG]`), named into a release.
//!
//! The image walker reads them from the store itself: every blob a pushed manifest names was stored whole when it
//! was pushed, so the walk finds each one already stored and nothing is fetched or written again — the release
//! only names what is there, and is signed like any other.

use super::image::{self, BlobSource, Context};
use super::IngestError;
use crate::store::{Store, WriteStats};
use ferry_protocol::{Entry, ImageEntry, Sha256Digest};
use std::io::Read;

/// Blobs read back from the store.
pub struct StoreSource<'a> {
    store: &'a Store,
    repository: &'a str,
}

impl BlobSource for StoreSource<'_> {
    fn describe(&self) -> String {
        format!("repository {} pushed to this node", self.repository)
    }

    fn open(
        &self,
        digest: &Sha256Digest,
        _size: u64,
    ) -> Result<Box<dyn Read + Send + '_>, IngestError> {
        match self.store.blob_by_sha256(digest)? {
            Some(b) if self.store.blob_complete(&b)? => Ok(Box::new(self.store.open_blob(&b)?)),
            _ => Err(IngestError::NotFound(format!(
                "{}: blob {digest} is not in the store",
                self.describe()
            ))),
        }
    }
}

/// Add the image tagged `tag` in `repository` (every pushed tag of it when `None`), each as an image entry
/// `repository:tag` without a registry.
pub fn ingest(
    ctx: &Context<'_>,
    repository: &str,
    tag: Option<&str>,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    let store = ctx.store;
    let all = store.pushed_tags(repository)?;
    let chosen: Vec<_> = match tag {
        Some(t) => all.iter().filter(|p| p.tag == t).collect(),
        None => all.iter().collect(),
    };
    if chosen.is_empty() {
        let tags: Vec<&str> = all.iter().map(|p| p.tag.as_str()).collect();
        return Err(IngestError::NotFound(match (tag, tags.is_empty()) {
            (_, true) => format!("nothing has been pushed to repository {repository} on this node"),
            (Some(t), false) => format!(
                "tag {t} was not pushed to repository {repository} (pushed tags: {})",
                tags.join(", ")
            ),
            (None, false) => unreachable!("no tag asked for, so every tag is chosen"),
        }));
    }
    let src = StoreSource { store, repository };
    for p in chosen {
        let manifest = store.pushed_blob(repository, &p.digest)?.ok_or_else(|| {
            IngestError::NotFound(format!(
                "pushed tag {repository}:{} names manifest {}, which the repository does not hold",
                p.tag, p.digest
            ))
        })?;
        let walked = image::walk(
            ctx,
            &src,
            &p.digest,
            manifest.blob.size,
            &p.media_type,
            stats,
        )?;
        entries.push(Entry::Image(ImageEntry {
            registry: None,
            repository: repository.to_string(),
            tag: p.tag.clone(),
            digest: p.digest,
            media_type: walked.media_type,
            blobs: walked.blobs,
        }));
    }
    Ok(())
}
