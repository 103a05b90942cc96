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
    /// How it ranks against other candidates for the same tag.
    rank: Rank,
}

/// What decides which candidate a tag points at: a pinned release first; between versions of one release name,
/// the publisher's per-name sequence (so a replayed old manifest never wins, whatever its creation time); else
/// the creation time, then the sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rank {
    pinned: bool,
    /// The release name; `None` for a pushed tag.
    name: Option<String>,
    created: u64,
    sequence: u64,
}

impl Rank {
    fn beats(&self, other: &Rank) -> bool {
        if self.pinned != other.pinned {
            return self.pinned;
        }
        if self.name.is_some() && self.name == other.name {
            return self.sequence > other.sequence;
        }
        (self.created, self.sequence) > (other.created, other.sequence)
    }
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
            let rank = Rank {
                pinned: pins.get(&m.name) == Some(&m.version),
                name: Some(m.name.clone()),
                created: m.created,
                sequence: m.sequence,
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
                add_image(repo, img, &m.id(), rank.clone());
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
                rank: Rank {
                    pinned: false,
                    name: None,
                    created: t.pushed_at,
                    sequence: 0,
                },
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

fn add_image(repo: &mut Repo, img: &ImageEntry, release: &str, rank: Rank) {
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
        Some(t) if !candidate.rank.beats(&t.rank) => {}
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

#[cfg(test)]
mod tests {
    use super::Rank;

    fn rank(pinned: bool, name: Option<&str>, created: u64, sequence: u64) -> Rank {
        Rank {
            pinned,
            name: name.map(str::to_string),
            created,
            sequence,
        }
    }

    #[test]
    fn versions_of_one_name_rank_by_sequence_whatever_their_creation_time() {
        // A publisher whose clock went back: the later sequence is still the newer version.
        assert!(rank(false, Some("x"), 100, 3).beats(&rank(false, Some("x"), 200, 2)));
        assert!(!rank(false, Some("x"), 200, 2).beats(&rank(false, Some("x"), 100, 3)));
        // A pin beats everything, a newer sequence and a newer push included.
        assert!(rank(true, Some("x"), 1, 1).beats(&rank(false, Some("x"), 200, 2)));
        assert!(rank(true, Some("x"), 1, 1).beats(&rank(false, None, 900, 0)));
        assert!(!rank(false, Some("x"), 200, 2).beats(&rank(true, Some("x"), 1, 1)));
        // Different names, or a push: by creation time, then sequence (a release wins a tie with a push).
        assert!(rank(false, Some("y"), 300, 1).beats(&rank(false, Some("x"), 200, 9)));
        assert!(rank(false, Some("x"), 300, 1).beats(&rank(false, None, 300, 0)));
        assert!(rank(false, None, 301, 0).beats(&rank(false, Some("x"), 300, 1)));
    }
}
