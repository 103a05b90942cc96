//! Walking an OCI image from any source: index → manifests → config and layers. Every blob is checked against
//! the digest (and size) its descriptor promises before it is recorded; blobs the store already holds whole are
//! not fetched again.

use super::IngestError;
use crate::progress::Progress;
use crate::store::{Store, WriteStats};
use ferry_protocol::{ImageBlob, Sha256Digest};
use serde::Deserialize;
use std::collections::HashSet;
use std::io::Read;

/// The largest manifest or index we read into memory (the distribution spec suggests 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// OCI and Docker media types.
pub mod media {
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Uncompressed OCI layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// gzip OCI layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// zstd OCI layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Every manifest type we accept, for `Accept` headers.
    pub const MANIFESTS: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];
}

/// A descriptor: what a manifest says about a blob it refers to.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// Digest, as text (checked when parsed).
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform, for index entries.
    #[serde(default)]
    pub platform: Option<PlatformJson>,
    /// Annotations.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The artifact type, for entries of a referrers index.
    #[serde(default)]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// The digest, refusing anything but `sha256:<64 hex>`.
    pub fn sha256(&self, within: &str) -> Result<Sha256Digest, IngestError> {
        self.digest.parse().map_err(|e| IngestError::Malformed {
            what: within.to_string(),
            reason: format!("{e}"),
        })
    }
}

/// A platform as JSON gives it.
#[derive(Clone, Debug, Deserialize)]
pub struct PlatformJson {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub architecture: String,
    /// Variant (`v8`, …).
    #[serde(default)]
    pub variant: Option<String>,
}

/// A platform chosen with `--platform os/arch[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Operating system.
    pub os: String,
    /// Architecture.
    pub architecture: String,
    /// Variant; any when `None`.
    pub variant: Option<String>,
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(format!(
                "invalid platform {s:?}: expected OS/ARCH[/VARIANT]"
            )),
        }
    }
}

impl Platform {
    fn matches(&self, p: &PlatformJson) -> bool {
        self.os == p.os
            && self.architecture == p.architecture
            && (self.variant.is_none() || self.variant == p.variant)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

impl ManifestJson {
    /// An image manifest's config, then its layers.
    fn blobs(&self, within: &str) -> Result<impl Iterator<Item = &Descriptor>, IngestError> {
        let config = self.config.as_ref().ok_or_else(|| IngestError::Malformed {
            what: within.to_string(),
            reason: "neither an index (manifests) nor an image manifest (config)".into(),
        })?;
        Ok(std::iter::once(config).chain(self.layers.iter().flatten()))
    }
}

/// Parse a manifest or index read from a source (`within` names it for errors): the manifest, and its media
/// type — its own `mediaType`, else `hint` (what the descriptor naming it said), else what its shape says.
fn read_manifest(
    bytes: &[u8],
    hint: &str,
    within: &str,
) -> Result<(ManifestJson, String), IngestError> {
    let m: ManifestJson = serde_json::from_slice(bytes).map_err(|e| IngestError::Malformed {
        what: within.to_string(),
        reason: format!("not a JSON manifest: {e}"),
    })?;
    if m.schema_version == Some(1) {
        return Err(IngestError::Malformed {
            what: within.to_string(),
            reason: "Docker schema 1 manifests are not supported".into(),
        });
    }
    let media_type = match (&m.media_type, &m.manifests) {
        (Some(t), _) => t.clone(),
        (None, _) if !hint.is_empty() => hint.to_string(),
        (None, Some(_)) => media::OCI_INDEX.to_string(),
        (None, None) => media::OCI_MANIFEST.to_string(),
    };
    Ok((m, media_type))
}

/// What a manifest or index read from a source names, as the walk reads it (for the fuzz targets): its media
/// type, and each child manifest's digest for an index, else the config's and each layer's.
pub(crate) fn manifest_names(
    bytes: &[u8],
    hint: &str,
) -> Result<(String, Vec<Sha256Digest>), IngestError> {
    let within = "manifest";
    let (m, media_type) = read_manifest(bytes, hint, within)?;
    let named = match &m.manifests {
        Some(children) => children
            .iter()
            .map(|c| c.sha256(within))
            .collect::<Result<_, _>>()?,
        None => m
            .blobs(within)?
            .map(|d| d.sha256(within))
            .collect::<Result<_, _>>()?,
    };
    Ok((media_type, named))
}

/// Where an image's blobs come from.
pub trait BlobSource {
    /// A name for errors, e.g. the layout directory or the registry host.
    fn describe(&self) -> String;
    /// Open the blob `digest` (of `size` bytes).
    fn open(
        &self,
        digest: &Sha256Digest,
        size: u64,
    ) -> Result<Box<dyn Read + Send + '_>, IngestError>;
}

/// What an ingest needs to hand around.
pub struct Context<'a> {
    /// The store.
    pub store: &'a Store,
    /// The release name (the repository of bare-tagged images).
    pub release_name: &'a str,
    /// Platforms to keep from indexes (all when empty).
    pub platforms: &'a [Platform],
    /// Progress.
    pub progress: &'a dyn Progress,
    /// The model of the gzip producer the last gzip blob took: tried first for the next (an image's layers,
    /// a repository's packages, mostly come from one producer).
    pub gzip_hint: std::sync::Mutex<Option<String>>,
}

/// The result of walking one image.
pub struct WalkedImage {
    /// Top-level media type.
    pub media_type: String,
    /// Every blob, the top-level manifest first, each once.
    pub blobs: Vec<ImageBlob>,
}

/// The stored blob with this digest and size, if the store holds all of it (then it need not be fetched).
pub fn already_stored(
    ctx: &Context<'_>,
    digest: &Sha256Digest,
    size: u64,
) -> Result<Option<ferry_protocol::BlobRef>, IngestError> {
    match ctx.store.blob_by_sha256(digest)? {
        Some(b) if b.size == size && ctx.store.blob_complete(&b)? => Ok(Some(b)),
        _ => Ok(None),
    }
}

/// Store what `reader` yields as one blob, under a progress phase named `label`. With `expect`, the content must
/// have that digest and `size` bytes: at most one byte more than promised is read, so an oversized blob is caught
/// without reading it all. `what` names the source in errors.
pub fn store_stream<R: Read + Send>(
    ctx: &Context<'_>,
    label: &str,
    what: &str,
    reader: R,
    size: Option<u64>,
    expect: Option<Sha256Digest>,
    stats: &mut WriteStats,
) -> Result<ferry_protocol::BlobRef, IngestError> {
    store_stream_with(ctx, label, what, reader, None, size, expect, stats)
}

/// [`store_stream`] of a blob that `reopen` can read again from its start (so a gzip blob that must be stored
/// as it is after all is read again rather than kept aside while it is decomposed).
#[allow(clippy::too_many_arguments)]
pub fn store_stream_with<R: Read + Send>(
    ctx: &Context<'_>,
    label: &str,
    what: &str,
    reader: R,
    reopen: Option<&crate::store::gzip::Reopen<'_>>,
    size: Option<u64>,
    expect: Option<Sha256Digest>,
    stats: &mut WriteStats,
) -> Result<ferry_protocol::BlobRef, IngestError> {
    ctx.progress.start(label, size);
    let opts = crate::store::gzip::BlobOptions {
        reopen,
        hint: Some(&ctx.gzip_hint),
    };
    let store = ctx.store;
    let got = match (expect, size) {
        (Some(d), Some(n)) => store.ingest_blob_with(
            reader.take(n + 1),
            &opts,
            what,
            Some((d, Some(n))),
            ctx.progress,
        ),
        (Some(d), None) => {
            store.ingest_blob_with(reader, &opts, what, Some((d, None)), ctx.progress)
        }
        (None, _) => store.ingest_blob_with(reader, &opts, what, None, ctx.progress),
    };
    ctx.progress.finish();
    let got = got?;
    *stats += got.stats;
    Ok(got.blob)
}

/// Store one blob from `src`, unless the store already has it whole; checks digest and size.
pub fn ingest_blob(
    ctx: &Context<'_>,
    src: &dyn BlobSource,
    digest: &Sha256Digest,
    size: u64,
    stats: &mut WriteStats,
) -> Result<ferry_protocol::BlobRef, IngestError> {
    if let Some(b) = already_stored(ctx, digest, size)? {
        return Ok(b);
    }
    let what = format!("blob {digest} from {}", src.describe());
    let label = digest.to_string();
    let reopen = || -> std::io::Result<Box<dyn Read + Send + '_>> {
        src.open(digest, size)
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    store_stream_with(
        ctx,
        &label,
        &what,
        src.open(digest, size)?,
        Some(&reopen),
        Some(size),
        Some(*digest),
        stats,
    )
}

/// Store a manifest-sized blob and return its bytes too (read from the source once, not back from the store).
fn ingest_small_blob(
    ctx: &Context<'_>,
    src: &dyn BlobSource,
    digest: &Sha256Digest,
    size: u64,
    stats: &mut WriteStats,
) -> Result<(ferry_protocol::BlobRef, Vec<u8>), IngestError> {
    if let Some(b) = already_stored(ctx, digest, size)? {
        return Ok((b, ctx.store.read_blob(&b)?));
    }
    let what = format!("blob {digest} from {}", src.describe());
    let mut bytes = Vec::with_capacity(size as usize);
    src.open(digest, size)?
        .take(size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| IngestError::Registry(format!("reading {what}: {e}")))?;
    let blob = store_stream(
        ctx,
        &what,
        &what,
        &bytes[..],
        Some(size),
        Some(*digest),
        stats,
    )?;
    Ok((blob, bytes))
}

/// Walk the image whose top-level manifest or index is `digest`, storing everything it needs.
pub fn walk(
    ctx: &Context<'_>,
    src: &dyn BlobSource,
    digest: &Sha256Digest,
    size: u64,
    media_type_hint: &str,
    stats: &mut WriteStats,
) -> Result<WalkedImage, IngestError> {
    let mut w = Walker {
        ctx,
        src,
        stats,
        blobs: Vec::new(),
        seen: HashSet::new(),
    };
    let media_type = w.manifest(digest, size, media_type_hint, 0)?;
    Ok(WalkedImage {
        media_type,
        blobs: w.blobs,
    })
}

/// The state of one walk: where blobs come from, and what has been collected.
struct Walker<'a, 'c> {
    ctx: &'a Context<'c>,
    src: &'a dyn BlobSource,
    stats: &'a mut WriteStats,
    blobs: Vec<ImageBlob>,
    seen: HashSet<Sha256Digest>,
}

impl Walker<'_, '_> {
    /// Store the manifest or index `digest` and, recursively, everything it refers to; returns its media type.
    fn manifest(
        &mut self,
        digest: &Sha256Digest,
        size: u64,
        media_type_hint: &str,
        depth: usize,
    ) -> Result<String, IngestError> {
        let (ctx, src) = (self.ctx, self.src);
        let within = format!("manifest {digest} from {}", src.describe());
        if depth > 4 {
            return Err(IngestError::Malformed {
                what: within,
                reason: "indexes nested more than 4 deep".into(),
            });
        }
        if size > MAX_MANIFEST {
            return Err(IngestError::Malformed {
                what: within,
                reason: format!(
                    "{size} bytes is larger than the {MAX_MANIFEST}-byte manifest limit"
                ),
            });
        }
        let (blob, bytes) = ingest_small_blob(ctx, src, digest, size, self.stats)?;
        let (m, media_type) = read_manifest(&bytes, media_type_hint, &within)?;
        if self.seen.insert(*digest) {
            self.blobs.push(ImageBlob {
                media_type: media_type.clone(),
                blob,
            });
        }
        if let Some(children) = &m.manifests {
            let mut kept = 0;
            for child in children {
                if !ctx.platforms.is_empty() {
                    let Some(p) = &child.platform else { continue };
                    if !ctx.platforms.iter().any(|want| want.matches(p)) {
                        continue;
                    }
                }
                let d = child.sha256(&within)?;
                self.manifest(&d, child.size, &child.media_type, depth + 1)?;
                kept += 1;
            }
            if kept == 0 && !children.is_empty() {
                return Err(IngestError::NotFound(format!(
                    "{within}: no manifest for the requested platform(s) {}",
                    ctx.platforms
                        .iter()
                        .map(|p| format!("{}/{}", p.os, p.architecture))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            return Ok(media_type);
        }
        for d in m.blobs(&within)? {
            let digest = d.sha256(&within)?;
            if !self.seen.insert(digest) {
                continue;
            }
            let blob = ingest_blob(ctx, src, &digest, d.size, self.stats)?;
            self.blobs.push(ImageBlob {
                media_type: d.media_type.clone(),
                blob,
            });
        }
        Ok(media_type)
    }
}

/// Split an `org.opencontainers.image.ref.name` (or a RepoTag) into registry, repository and tag: a bare tag
/// belongs to the release's own repository; anything else is a full reference.
pub fn name_image(
    ref_name: &str,
    release_name: &str,
) -> Result<(Option<String>, String, String), String> {
    if super::reference::is_bare_tag(ref_name) {
        return Ok((None, release_name.to_string(), ref_name.to_string()));
    }
    let r = super::reference::Reference::parse(ref_name)?;
    let tag = r
        .tag
        .ok_or_else(|| format!("reference {ref_name:?} has no tag"))?;
    Ok((Some(r.registry), r.repository, tag))
}
