//! `docker save` archives (`docker-archive:FILE`), in both the classic layout (`<id>/layer.tar`) and the newer
//! one with `blobs/sha256/…`. Each image becomes an OCI manifest over the archive's own config and layer bytes,
//! so the config — and with it the image id and diff ids — is unchanged. Where a file name carries a digest, the
//! content is checked against it.

use super::image::{self, media, Context};
use super::IngestError;
use crate::store::WriteStats;
use ferry_protocol::{Entry, ImageBlob, ImageEntry, Sha256Digest};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutDescriptor {
    media_type: &'static str,
    digest: String,
    size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutManifest {
    schema_version: u32,
    media_type: &'static str,
    config: OutDescriptor,
    layers: Vec<OutDescriptor>,
}

/// A byte range of a file, as a reader.
struct RangeReader {
    file: std::sync::Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.end - self.pos).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += got as u64;
        Ok(got)
    }
}

struct Archive {
    path: String,
    file: std::sync::Arc<File>,
    /// member name → (data offset, size)
    members: HashMap<String, (u64, u64)>,
}

fn clean(name: &str) -> String {
    name.trim_start_matches("./").to_string()
}

impl Archive {
    fn open(path: &Path) -> Result<Archive, IngestError> {
        let file = File::open(path).map_err(IngestError::io(path))?;
        let malformed = |reason: String| IngestError::Malformed {
            what: path.display().to_string(),
            reason,
        };
        let mut members = HashMap::new();
        let mut links = Vec::new();
        let mut ar = tar::Archive::new(&file);
        for e in ar
            .entries()
            .map_err(|e| malformed(format!("not a tar archive: {e}")))?
        {
            let e = e.map_err(|e| malformed(format!("damaged tar archive: {e}")))?;
            let name = clean(
                &e.path()
                    .map_err(|e| malformed(e.to_string()))?
                    .to_string_lossy(),
            );
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    members.insert(name, (e.raw_file_position(), e.size()));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Ok(Some(target)) = e.link_name() {
                        let target = target.to_string_lossy().into_owned();
                        // Symlinks are relative to the member's folder; hard links to the archive root.
                        let resolved = if e.header().entry_type() == tar::EntryType::Symlink {
                            let base = Path::new(&name).parent().unwrap_or(Path::new(""));
                            normalize(&base.join(&target).to_string_lossy())
                        } else {
                            clean(&target)
                        };
                        links.push((name, resolved));
                    }
                }
                _ => {}
            }
        }
        for (name, target) in links {
            if let Some(&loc) = members.get(&target) {
                members.insert(name, loc);
            }
        }
        Ok(Archive {
            path: path.display().to_string(),
            file: std::sync::Arc::new(file),
            members,
        })
    }

    fn member(&self, name: &str) -> Result<(u64, u64), IngestError> {
        self.members.get(&clean(name)).copied().ok_or_else(|| {
            IngestError::NotFound(format!("{}: member {name:?} is missing", self.path))
        })
    }

    fn reader(&self, name: &str) -> Result<RangeReader, IngestError> {
        let (off, size) = self.member(name)?;
        Ok(RangeReader {
            file: self.file.clone(),
            pos: off,
            end: off + size,
        })
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>, IngestError> {
        let (_, size) = self.member(name)?;
        if size > image::MAX_MANIFEST {
            return Err(IngestError::Malformed {
                what: format!("{}: {name}", self.path),
                reason: format!("{size} bytes is too large for a manifest or config"),
            });
        }
        let mut out = Vec::new();
        self.reader(name)?
            .read_to_end(&mut out)
            .map_err(IngestError::io(&self.path))?;
        Ok(out)
    }
}

/// Resolve `.` and `..` in a member path.
fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// The digest a member's name promises: `blobs/sha256/<hex>`, `<hex>.json` or `<hex>/layer.tar`.
fn digest_in_name(name: &str) -> Option<Sha256Digest> {
    let name = clean(name);
    let hex = name
        .strip_prefix("blobs/sha256/")
        .or_else(|| name.strip_suffix(".json"))?;
    format!("sha256:{hex}").parse().ok()
}

fn layer_media_type(head: &[u8]) -> &'static str {
    match head {
        [0x1f, 0x8b, ..] => media::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => media::OCI_LAYER_ZSTD,
        _ => media::OCI_LAYER,
    }
}

/// Ingest every image of the archive at `path`, one entry per RepoTag.
pub fn ingest(
    ctx: &Context<'_>,
    path: &Path,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    let ar = Archive::open(path)?;
    let manifest_bytes = ar.read_small("manifest.json")?;
    let images: Vec<ArchiveImage> =
        serde_json::from_slice(&manifest_bytes).map_err(|e| IngestError::Malformed {
            what: format!("{}: manifest.json", ar.path),
            reason: e.to_string(),
        })?;
    if images.is_empty() {
        return Err(IngestError::NotFound(format!(
            "{}: holds no images",
            ar.path
        )));
    }
    for (i, img) in images.iter().enumerate() {
        let tags = img.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            return Err(IngestError::Malformed {
                what: format!("{}: image {i} ({})", ar.path, img.config),
                reason: "has no RepoTags, so it has no name to serve it under".into(),
            });
        }
        let mut blobs = Vec::new();
        let mut put =
            |name: &str, media_type: &'static str| -> Result<OutDescriptor, IngestError> {
                let (_, size) = ar.member(name)?;
                let expect = digest_in_name(name);
                let stored = match &expect {
                    Some(d) => image::already_stored(ctx, d, size)?,
                    None => None,
                };
                let blob = match stored {
                    Some(b) => b,
                    None => {
                        let what = format!("{}: {name}", ar.path);
                        let reader = ar.reader(name)?;
                        image::store_stream(ctx, name, &what, reader, Some(size), expect, stats)?
                    }
                };
                blobs.push(ImageBlob {
                    media_type: media_type.into(),
                    blob,
                });
                Ok(OutDescriptor {
                    media_type,
                    digest: blob.sha256.to_string(),
                    size,
                })
            };
        let config = put(&img.config, media::OCI_CONFIG)?;
        let mut layers = Vec::new();
        for l in &img.layers {
            let (off, _) = ar.member(l)?;
            let mut head = [0u8; 4];
            let n = ar
                .file
                .read_at(&mut head, off)
                .map_err(IngestError::io(path))?;
            layers.push(put(l, layer_media_type(&head[..n]))?);
        }
        let manifest = serde_json::to_vec(&OutManifest {
            schema_version: 2,
            media_type: media::OCI_MANIFEST,
            config,
            layers,
        })
        .expect("manifest serialises");
        let what = format!("{}: manifest of image {i}", ar.path);
        let manifest_blob =
            image::store_stream(ctx, &what, &what, &manifest[..], None, None, stats)?;
        blobs.insert(
            0,
            ImageBlob {
                media_type: media::OCI_MANIFEST.into(),
                blob: manifest_blob,
            },
        );
        let mut seen = std::collections::HashSet::new();
        blobs.retain(|b| seen.insert(b.blob.sha256));
        for tag in tags {
            let (registry, repository, tag) =
                image::name_image(&tag, ctx.release_name).map_err(|reason| {
                    IngestError::Malformed {
                        what: format!("{}: RepoTag {tag:?}", ar.path),
                        reason,
                    }
                })?;
            entries.push(Entry::Image(ImageEntry {
                registry,
                repository,
                tag,
                digest: manifest_blob.sha256,
                media_type: media::OCI_MANIFEST.into(),
                blobs: blobs.clone(),
            }));
        }
    }
    Ok(())
}
