//! OCI image layouts on disk (`oci:DIR[:TAG]`).

use super::image::{self, BlobSource, Context, Descriptor};
use super::IngestError;
use crate::store::WriteStats;
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

/// Ingest the images of the layout at `dir`: the one named `tag`, or every one in `index.json`.
pub fn ingest(
    ctx: &Context<'_>,
    dir: &Path,
    tag: Option<&str>,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    let layout = dir.join("oci-layout");
    if !layout.is_file() {
        return Err(IngestError::NotFound(format!(
            "{}: not an OCI image layout (no oci-layout file)",
            dir.display()
        )));
    }
    let all = read_index(dir)?;
    let chosen: Vec<&Descriptor> = match tag {
        Some(t) => all
            .iter()
            .filter(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(t))
            .collect(),
        None => all.iter().collect(),
    };
    if chosen.is_empty() {
        let names: Vec<&str> = all
            .iter()
            .filter_map(|d| d.annotations.get(REF_NAME).map(String::as_str))
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
    let unnamed = chosen
        .iter()
        .filter(|d| !d.annotations.contains_key(REF_NAME))
        .count();
    let src = LayoutSource::new(dir);
    for d in chosen {
        let within = format!("{}/index.json", dir.display());
        let digest = d.sha256(&within)?;
        let ref_name = match d.annotations.get(REF_NAME) {
            Some(n) => n.clone(),
            // A layout written without names (e.g. `skopeo copy … oci:DIR`) holding one image: call it latest.
            None if unnamed == 1 => "latest".to_string(),
            None => {
                return Err(IngestError::Malformed {
                    what: within,
                    reason: format!(
                        "manifest {digest} has no {REF_NAME} annotation and the layout holds several; name them"
                    ),
                })
            }
        };
        let (registry, repository, tag) =
            image::name_image(&ref_name, ctx.release_name).map_err(|reason| {
                IngestError::Malformed {
                    what: format!("{within}: {REF_NAME} {ref_name:?}"),
                    reason,
                }
            })?;
        let walked = image::walk(ctx, &src, &digest, d.size, &d.media_type, stats)?;
        entries.push(Entry::Image(ImageEntry {
            registry,
            repository,
            tag,
            digest,
            media_type: walked.media_type,
            blobs: walked.blobs,
        }));
    }
    Ok(())
}
