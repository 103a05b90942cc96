//! OCI image layouts on disk (`oci:DIR[:TAG]`).

use super::attached;
use super::image::{self, BlobSource, Context, Descriptor};
use super::IngestError;
use crate::store::WriteStats;
use crate::verify::{Policy, Rule, Verified};
use ferry_protocol::{Entry, ImageEntry, Sha256Digest};
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The annotation that names an image in a layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Deserialize)]
struct IndexJson {
    manifests: Vec<Descriptor>,
}

/// Blobs of a layout directory.
pub struct LayoutSource {
    dir: PathBuf,
}

impl LayoutSource {
    /// A layout rooted at `dir`.
    pub fn new(dir: &Path) -> Self {
        LayoutSource {
            dir: dir.to_path_buf(),
        }
    }
}

impl BlobSource for LayoutSource {
    fn describe(&self) -> String {
        format!("OCI layout {}", self.dir.display())
    }

    fn open(
        &self,
        digest: &Sha256Digest,
        _size: u64,
    ) -> Result<Box<dyn Read + Send + '_>, IngestError> {
        // The digest was parsed as sha256:<64 hex>, so this path cannot leave the layout.
        let path = self.dir.join("blobs/sha256").join(digest.hex());
        let f = std::fs::File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                IngestError::NotFound(format!(
                    "{}: blob {digest} is missing ({})",
                    self.describe(),
                    path.display()
                ))
            } else {
                IngestError::io(&path)(e)
            }
        })?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
    }
}

/// Read `index.json` of a layout.
fn read_index(dir: &Path) -> Result<Vec<Descriptor>, IngestError> {
    let path = dir.join("index.json");
    // Read no more than the limit and a byte: a huge file, or a link to /dev/zero, costs nothing.
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(image::MAX_MANIFEST + 1).read_to_end(&mut bytes))
        .map_err(IngestError::io(&path))?;
    if bytes.len() as u64 > image::MAX_MANIFEST {
        return Err(IngestError::Malformed {
            what: path.display().to_string(),
            reason: "larger than 4 MiB".into(),
        });
    }
    parse_index(&bytes, &path.display().to_string())
}

/// Parse a layout's `index.json` (`what` names it for errors): its manifests.
pub(crate) fn parse_index(bytes: &[u8], what: &str) -> Result<Vec<Descriptor>, IngestError> {
    let index: IndexJson = serde_json::from_slice(bytes).map_err(|e| IngestError::Malformed {
        what: what.to_string(),
        reason: format!("not an OCI index: {e}"),
    })?;
    Ok(index.manifests)
}

/// A layout being ingested: its blobs, and what `index.json` lists, each entry with the subject its manifest
/// names (a referrer: an SBOM, a signature, an attestation attached to an image) or none (an image).
struct Layout {
    src: LayoutSource,
    entries: Vec<Listed>,
}

struct Listed {
    descriptor: Descriptor,
    digest: Sha256Digest,
    subject: Option<Sha256Digest>,
    artifact_type: Option<String>,
}

impl Layout {
    fn read(dir: &Path) -> Result<Layout, IngestError> {
        let src = LayoutSource::new(dir);
        let within = format!("{}/index.json", dir.display());
        let mut entries = Vec::new();
        for descriptor in read_index(dir)? {
            let digest = descriptor.sha256(&within)?;
            // A manifest that cannot be read here is no referrer; if it is chosen, the walk names what is wrong.
            let v: serde_json::Value = read_manifest(&src, &digest, descriptor.size)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let subject = attached::subject_of(&v);
            let artifact_type = descriptor.artifact_type.clone().or_else(|| {
                v["artifactType"]
                    .as_str()
                    .or(v["config"]["mediaType"].as_str())
                    .map(str::to_string)
            });
            entries.push(Listed {
                descriptor,
                digest,
                subject,
                artifact_type,
            });
        }
        Ok(Layout { src, entries })
    }

    fn named(&self, name: &str) -> Option<&Listed> {
        self.entries
            .iter()
            .find(|l| l.descriptor.annotations.get(REF_NAME).map(String::as_str) == Some(name))
    }
}

/// The manifest `digest` of a layout, at most [`image::MAX_MANIFEST`] bytes, checked against its digest.
fn read_manifest(
    src: &LayoutSource,
    digest: &Sha256Digest,
    size: u64,
) -> Result<Vec<u8>, IngestError> {
    let what = format!("{}: manifest {digest}", src.describe());
    if size > image::MAX_MANIFEST {
        return Err(IngestError::Malformed {
            what,
            reason: "larger than 4 MiB".into(),
        });
    }
    let mut bytes = Vec::new();
    src.open(digest, size)?
        .take(image::MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| IngestError::Malformed {
            what: what.clone(),
            reason: e.to_string(),
        })?;
    if Sha256Digest::of(&bytes) != *digest {
        return Err(IngestError::Malformed {
            what,
            reason: "its bytes do not match its digest".into(),
        });
    }
    Ok(bytes)
}

impl BlobSource for Layout {
    fn describe(&self) -> String {
        self.src.describe()
    }

    fn open(
        &self,
        digest: &Sha256Digest,
        size: u64,
    ) -> Result<Box<dyn Read + Send + '_>, IngestError> {
        self.src.open(digest, size)
    }
}

impl attached::Attachments for Layout {
    fn tagged(&self, tag: &str) -> Result<Option<Vec<u8>>, IngestError> {
        self.named(tag)
            .map(|l| read_manifest(&self.src, &l.digest, l.descriptor.size))
            .transpose()
    }

    fn referrers_of(&self, digest: &Sha256Digest) -> Result<Vec<Descriptor>, IngestError> {
        Ok(self
            .entries
            .iter()
            .filter(|l| l.subject == Some(*digest))
            .map(|l| Descriptor {
                artifact_type: l.artifact_type.clone(),
                ..l.descriptor.clone()
            })
            .collect())
    }

    fn manifest(&self, digest: &Sha256Digest) -> Result<Vec<u8>, IngestError> {
        let size = self
            .entries
            .iter()
            .find(|l| l.digest == *digest)
            .map_or(image::MAX_MANIFEST, |l| l.descriptor.size);
        read_manifest(&self.src, digest, size)
    }
}

/// Whether a layout name is one cosign gives an attachment: `sha256-<hex>.sig`, `.att` or `.sbom`.
fn is_attachment_name(name: &str) -> bool {
    attached::ATTACHMENT_SUFFIXES.iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|n| n.strip_prefix("sha256-"))
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Ingest the images of the layout at `dir`: the one named `tag`, or every one in `index.json`, each with what
/// the layout attaches to it — the manifests named `sha256-<hex>.sig`/`.att`/`.sbom` for it, and its referrers
/// (manifests whose `subject` is one of its manifests), which are never taken as images of their own. With
/// `verify`, every image (not the attachments) must first carry a signature the rule accepts.
pub fn ingest(
    ctx: &Context<'_>,
    dir: &Path,
    tag: Option<&str>,
    verify: Option<(&Policy, &Rule)>,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
    verified: &mut Vec<Verified>,
) -> Result<(), IngestError> {
    let layout = dir.join("oci-layout");
    if !layout.is_file() {
        return Err(IngestError::NotFound(format!(
            "{}: not an OCI image layout (no oci-layout file)",
            dir.display()
        )));
    }
    let layout = Layout::read(dir)?;
    let images: Vec<&Listed> = layout
        .entries
        .iter()
        .filter(|l| l.subject.is_none())
        .collect();
    let mut chosen: Vec<&Listed> = match tag {
        Some(t) => images
            .iter()
            .copied()
            .filter(|l| l.descriptor.annotations.get(REF_NAME).map(String::as_str) == Some(t))
            .collect(),
        None => images.clone(),
    };
    if chosen.is_empty() {
        let names: Vec<&str> = images
            .iter()
            .filter_map(|l| l.descriptor.annotations.get(REF_NAME).map(String::as_str))
            .collect();
        return Err(IngestError::NotFound(match tag {
            Some(t) => format!(
                "tag {t:?} not found in OCI layout {} (it has: {})",
                dir.display(),
                if names.is_empty() {
                    "no named images".to_string()
                } else {
                    names.join(", ")
                }
            ),
            None => format!("OCI layout {} holds no images", dir.display()),
        }));
    }
    // With a tag, the chosen image's cosign attachments come too, as they would from its registry.
    if tag.is_some() {
        let extra: Vec<&Listed> = chosen
            .iter()
            .flat_map(|l| {
                attached::ATTACHMENT_SUFFIXES
                    .iter()
                    .filter_map(|s| layout.named(&format!("sha256-{}{s}", l.digest.hex())))
            })
            .collect();
        chosen.extend(extra);
    }
    let unnamed = chosen
        .iter()
        .filter(|l| !l.descriptor.annotations.contains_key(REF_NAME))
        .count();
    let within = format!("{}/index.json", dir.display());
    let mut named = Vec::with_capacity(chosen.len());
    for l in &chosen {
        let ref_name = match l.descriptor.annotations.get(REF_NAME) {
            Some(n) => n.clone(),
            // A layout written without names (e.g. `skopeo copy … oci:DIR`) holding one image: call it latest.
            None if unnamed == 1 => "latest".to_string(),
            None => {
                return Err(IngestError::Malformed {
                    what: within,
                    reason: format!(
                        "manifest {} has no {REF_NAME} annotation and the layout holds several; name them",
                        l.digest
                    ),
                })
            }
        };
        named.push((*l, ref_name));
    }
    // Every image is checked before anything is stored.
    if let Some((policy, rule)) = verify {
        for (l, ref_name) in &named {
            if is_attachment_name(ref_name) {
                continue;
            }
            let artifact = format!(
                "image {ref_name} ({}) in OCI layout {}",
                l.digest,
                dir.display()
            );
            let found = attached::find_signatures(&layout, &l.digest)?;
            let (scheme, key) = attached::verify_image(rule, &l.digest, &found)
                .map_err(|reason| policy.refused(&artifact, reason))?;
            verified.push(Verified {
                artifact,
                scheme: scheme.into(),
                key,
            });
        }
    }
    for (l, ref_name) in named {
        let d = &l.descriptor;
        let (registry, repository, tag) =
            image::name_image(&ref_name, ctx.release_name).map_err(|reason| {
                IngestError::Malformed {
                    what: format!("{within}: {REF_NAME} {ref_name:?}"),
                    reason,
                }
            })?;
        let walked = image::walk(ctx, &layout, &l.digest, d.size, &d.media_type, stats)?;
        let mut entry = ImageEntry {
            registry,
            repository,
            tag,
            digest: l.digest,
            media_type: walked.media_type,
            blobs: walked.blobs,
        };
        attach_referrers(ctx, &layout, &mut entry, stats)?;
        entries.push(Entry::Image(entry));
    }
    Ok(())
}

/// Append to `entry` the blobs of every referrer the layout holds for one of its manifests, and theirs in turn.
fn attach_referrers(
    ctx: &Context<'_>,
    layout: &Layout,
    entry: &mut ImageEntry,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    let mut subjects: Vec<Sha256Digest> = entry
        .blobs
        .iter()
        .filter(|b| image::media::MANIFESTS.contains(&b.media_type.as_str()))
        .map(|b| b.blob.sha256)
        .collect();
    let mut taken = std::collections::HashSet::new();
    while let Some(subject) = subjects.pop() {
        for l in &layout.entries {
            if l.subject != Some(subject) || !taken.insert(l.digest) {
                continue;
            }
            let d = &l.descriptor;
            let walked = image::walk(ctx, layout, &l.digest, d.size, &d.media_type, stats)?;
            for b in walked.blobs {
                if !entry.blobs.iter().any(|x| x.blob.sha256 == b.blob.sha256) {
                    entry.blobs.push(b);
                }
            }
            subjects.push(l.digest);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_cosigns_and_nothing_else() {
        let hex = "ab".repeat(32);
        for s in [".sig", ".att", ".sbom"] {
            assert!(is_attachment_name(&format!("sha256-{hex}{s}")));
        }
        assert!(!is_attachment_name(&format!("sha256-{hex}")));
        assert!(!is_attachment_name(&format!("sha256-{}.sig", &hex[2..])));
        assert!(!is_attachment_name(&format!("sha256-{}zz.sig", &hex[2..])));
        assert!(!is_attachment_name("v1.sig"));
    }
}
