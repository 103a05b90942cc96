//! What the mirrors serve: every image of every visible release, and everything pushed to the node, by
//! repository, tag and digest; and every release's file tree (built by [`super::repo::tree::Trees`]).
//!
//! A tag held by several releases resolves to the pinned version of its name if one is pinned (see
//! [`crate::store::pins`]), else to the newest (latest creation, then highest sequence). A pushed tag
//! competes by its push time: a push newer than every release holding the tag wins, and a release made after the
//! push (say, from that very push, with `ferry add … pushed:REPO:TAG`) wins back; in the same second the release
//! wins (a pinned version wins over pushes too). Pushed content has no upstream registry, like images ingested from a layout. Images keep
//! the registry they were ingested from, so a containerd mirror request with `?ns=docker.io` finds
//! `library/debian` pulled from Docker Hub and nothing else; without `ns`, a repository is looked up among all
//! images, those named by a release first.

use crate::store::{Store, StoreError};
use ferry_protocol::{BlobRef, Entry, ImageEntry, Sha256Digest};
use std::collections::{BTreeMap, HashMap};

/// Where a tag points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged {
    /// Manifest or index digest.
    pub digest: Sha256Digest,
    /// Its media type.
    pub media_type: String,
    /// Which release provides it (`name@version`), or `pushed` for a tag pushed to this node.
    pub release: String,
    /// (created, sequence) of that release: higher is newer.
    rank: (u64, u64),
}

/// One repository as served.
#[derive(Clone, Debug, Default)]
pub struct Repo {
    /// Tag → target.
    pub tags: BTreeMap<String, Tagged>,
    /// Every blob the repository's images need, by digest, with the media type its descriptor gave.
    pub blobs: HashMap<Sha256Digest, (BlobRef, String)>,
}

/// The registry view of a store.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// `(registry, repository)` → repository; registry `None` for images without one.
    repos: BTreeMap<(Option<String>, String), Repo>,
    /// The file trees of every release that has some, for the repository mirrors.
    pub trees: super::repo::tree::Trees,
    /// The store generation it was built at.
    pub generation: u64,
}

/// Docker Hub's names for itself, all meaning `docker.io`.
fn canonical_registry(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    }
}

impl Catalog {
    /// Build from every visible release in `store`.
    pub fn build(store: &Store) -> Result<Catalog, StoreError> {
        let generation = store.generation();
        let mut repos: BTreeMap<(Option<String>, String), Repo> = BTreeMap::new();
        let releases = store.releases()?;
        let pins = store.pinned_versions()?;
        for r in &releases {
            let m = &r.manifest;
            // A pinned version outranks every other release for the tags it holds.
            let rank = if pins.get(&m.name) == Some(&m.version) {
                (u64::MAX, m.sequence)
            } else {
                (m.created, m.sequence)
            };
            for e in &m.entries {
                let Entry::Image(img) = e else { continue };
                let key = (
                    img.registry
                        .as_deref()
                        .map(|h| canonical_registry(h).to_string()),
                    img.repository.clone(),
                );
                let repo = repos.entry(key).or_default();
                add_image(repo, img, &m.id(), rank);
            }
        }
        let (tags, blobs) = store.pushed()?;
        for b in blobs {
            repos
                .entry((None, b.repository))
                .or_default()
                .blobs
                .entry(b.blob.sha256)
                .or_insert((b.blob, b.media_type));
        }
        for t in tags {
            let repo = repos.entry((None, t.repository)).or_default();
            if !repo.blobs.contains_key(&t.digest) {
                continue; // written in one batch with its manifest, so never; but never serve a dangling tag
            }
            let candidate = Tagged {
                digest: t.digest,
                media_type: t.media_type,
                release: "pushed".into(),
                // A release has sequence ≥ 1, so it wins a tie within the same second.
                rank: (t.pushed_at, 0),
            };
            add_tag(repo, &t.tag, candidate);
        }
        Ok(Catalog {
            repos,
            trees: super::repo::tree::Trees::build(&releases, &pins),
            generation,
        })
    }

    /// The repository `name`, as asked with an optional `ns` (the upstream registry containerd mirrors).
    pub fn repo(&self, name: &str, ns: Option<&str>) -> Option<&Repo> {
        match ns {
            Some(ns) => {
                let ns = canonical_registry(ns);
                self.repos
                    .get(&(Some(ns.to_string()), name.to_string()))
                    .or_else(|| {
                        // Docker Hub's official images are `library/x`; clients may ask for `x`.
                        (ns == "docker.io" && !name.contains('/'))
                            .then(|| {
                                self.repos
                                    .get(&(Some(ns.to_string()), format!("library/{name}")))
                            })
                            .flatten()
                    })
            }
            None => self.repos.get(&(None, name.to_string())).or_else(|| {
                self.repos
                    .iter()
                    .find(|((_, repo), _)| repo == name)
                    .map(|(_, r)| r)
            }),
        }
    }

    /// Every repository as `(registry it came from, name, tags)`, sorted.
    pub fn images(&self) -> impl Iterator<Item = (Option<&str>, &str, Vec<&str>)> {
        self.repos.iter().map(|((registry, name), repo)| {
            (
                registry.as_deref(),
                name.as_str(),
                repo.tags.keys().map(String::as_str).collect(),
            )
        })
    }

    /// Every repository name served, sorted, each once.
    pub fn names(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&String> =
            self.repos.keys().map(|(_, name)| name).collect();
        set.into_iter().cloned().collect()
    }
}

fn add_image(repo: &mut Repo, img: &ImageEntry, release: &str, rank: (u64, u64)) {
    for b in &img.blobs {
        repo.blobs
            .entry(b.blob.sha256)
            .or_insert_with(|| (b.blob, b.media_type.clone()));
    }
    let candidate = Tagged {
        digest: img.digest,
        media_type: img.media_type.clone(),
        release: release.to_string(),
        rank,
    };
    add_tag(repo, &img.tag, candidate);
}

/// Point `tag` at `candidate` unless it already points somewhere newer.
fn add_tag(repo: &mut Repo, tag: &str, candidate: Tagged) {
    match repo.tags.get(tag) {
        Some(t) if t.rank >= candidate.rank => {}
        _ => {
            repo.tags.insert(tag.to_string(), candidate);
        }
    }
}

/// Media types of manifests and indexes (what `/manifests/` serves).
pub fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.manifest.v1+json"
            | "application/vnd.oci.image.index.v1+json"
            | "application/vnd.docker.distribution.manifest.v2+json"
            | "application/vnd.docker.distribution.manifest.list.v2+json"
    )
}
