//! Entry points for the fuzz targets (`node/fuzz`, run by `tools/fuzz`): the parsers of outside bytes that are
//! not public, behind thin wrappers that take bytes and give plain results. Not an API: hidden from the
//! documentation, and changed with the targets. Parsers that are public already are fuzzed where they are.

use crate::mirror::range::Unsatisfiable;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use ferry_protocol::bundle::BundleIndex;
use ferry_protocol::Sha256Digest;
use std::path::Path;

fn headers(name: HeaderName, value: &[u8]) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(name, HeaderValue::from_bytes(value).ok()?);
    Some(h)
}

/// A `Range` header resolved against `size` bytes, as a pull answers it; `None` when `value` cannot be a header
/// value at all.
pub fn range(value: &[u8], size: u64) -> Option<Result<Option<(u64, u64)>, Unsatisfiable>> {
    Some(crate::mirror::range::parse_range(
        &headers(header::RANGE, value)?,
        size,
    ))
}

/// The `Content-Range` of an upload chunk, inclusive, or why it is refused; `None` when `value` cannot be a
/// header value at all.
pub fn content_range(value: &[u8]) -> Option<Result<Option<(u64, u64)>, String>> {
    let h = headers(header::CONTENT_RANGE, value)?;
    Some(crate::mirror::push::parse_content_range(&h).map_err(|e| format!("{e:?}")))
}

/// A `/v2/<rest>` path as the registry routes it: the endpoint's kind, repository name and reference (empty
/// where the endpoint has none), and whether the name and reference are valid.
pub fn v2_route(rest: &str) -> Option<(&'static str, &str, &str)> {
    use crate::mirror::oci::Route;
    Some(match crate::mirror::oci::parse_route(rest)? {
        Route::Catalog => ("catalog", "", ""),
        Route::Manifest(n, r) => ("manifest", n, r),
        Route::Blob(n, r) => ("blob", n, r),
        Route::Tags(n) => ("tags", n, ""),
        Route::Referrers(n, r) => ("referrers", n, r),
        Route::Uploads(n) => ("uploads", n, ""),
        Route::Upload(n, id) => ("upload", n, id),
    })
}

/// Whether `name` is a repository name the registry accepts.
pub fn valid_name(name: &str) -> bool {
    crate::mirror::oci::valid_name(name)
}

/// Whether `tag` is a tag the registry accepts.
pub fn valid_tag(tag: &str) -> bool {
    crate::mirror::oci::valid_tag(tag)
}

/// A manifest pushed with `Content-Type` `content_type`, checked as the registry checks it before looking
/// anything up: its media type, the digests and sizes it names, its subject.
#[allow(clippy::type_complexity)]
pub fn pushed_manifest(
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Result<(String, Vec<(Sha256Digest, u64)>, Option<Sha256Digest>), String> {
    let h = match content_type {
        Some(v) => headers(header::CONTENT_TYPE, v).unwrap_or_default(),
        None => HeaderMap::new(),
    };
    let m = crate::mirror::push::check_manifest(&h, body).map_err(|e| format!("{e:?}"))?;
    Ok((
        m.media_type,
        m.named.iter().map(|n| (n.digest, n.size)).collect(),
        m.subject,
    ))
}

/// A manifest or index read from a layout or registry, as the ingest walk reads it (`hint`: the media type
/// the descriptor naming it gave): its media type, and the digests of what it names.
pub fn pulled_manifest(body: &[u8], hint: &str) -> Result<(String, Vec<Sha256Digest>), String> {
    crate::ingest::image::manifest_names(body, hint).map_err(|e| e.to_string())
}

/// An OCI layout's `index.json`, as `ferry add oci:` reads it for release `release`: each manifest's digest,
/// and its `ref.name` read as the name to serve it under (registry, repository, tag).
#[allow(clippy::type_complexity)]
pub fn layout_index(
    body: &[u8],
    release: &str,
) -> Result<
    Vec<(
        Result<Sha256Digest, String>,
        Option<Result<NamedImage, String>>,
    )>,
    String,
> {
    let manifests =
        crate::ingest::oci::parse_index(body, "index.json").map_err(|e| e.to_string())?;
    Ok(manifests
        .iter()
        .map(|d| {
            (
                d.sha256("index.json").map_err(|e| e.to_string()),
                d.annotations
                    .get(crate::ingest::oci::REF_NAME)
                    .map(|n| crate::ingest::image::name_image(n, release)),
            )
        })
        .collect())
}

/// An image's name: registry (none for the release's own), repository, tag.
pub type NamedImage = (Option<String>, String, String);

/// The pool files a `Packages` index (or, with `sources`, a `Sources` index) at `path` names, decompressed as
/// the path's suffix says: path, SHA-256, size.
pub fn apt_index(
    path: &str,
    bytes: &[u8],
    sources: bool,
) -> Result<Vec<(String, Sha256Digest, u64)>, String> {
    crate::ingest::apt::index_entries(path, bytes, sources)
}

/// A Python distribution named `filename` with the bytes in `path`, as `ferry add pypi:` reads it: its project
/// (normalised), `Requires-Python`, and the wheel's METADATA.
#[allow(clippy::type_complexity)]
pub fn pypi_dist(
    filename: &str,
    path: &Path,
) -> Result<(String, Option<String>, Option<Vec<u8>>), String> {
    let f = crate::ingest::pypi::inspect(filename, path).map_err(|e| e.to_string())?;
    Ok((f.project, f.requires_python, f.metadata))
}

/// A Helm chart archive at `path`, as `ferry add helm:` reads it: its `Chart.yaml` and newest modification time.
pub fn helm_chart(path: &Path) -> Result<(Vec<u8>, u64), String> {
    crate::ingest::helm::read_archive(path).map_err(|e| e.to_string())
}

/// Which volume of a bundle holds stream offset `at`, and the offset inside it.
pub fn locate(index: &BundleIndex, at: u64) -> (usize, u64) {
    crate::bundle::locate(index, at)
}
