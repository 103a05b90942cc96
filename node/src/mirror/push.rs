//! The OCI Distribution API, push side (distribution-spec v1.1): blob uploads — monolithic (`POST ?digest=`, or
//! `POST` then one `PUT`), chunked (`PATCH` with `Content-Range`, in order), status (`GET`), cancel (`DELETE`) —
//! cross-repository mounts (`POST ?mount=&from=`), and manifest `PUT` by tag or digest.
//!
//! Uploads spool to files ([`super::uploads`]); the digest is checked against the running SHA-256 before
//! anything is stored, then the blob goes through the store's ingest pipeline (chunked, deduplicated, fsync'd)
//! on a blocking thread, one ingest at a time, and is recorded in the store's `pushed` index
//! ([`crate::store::pushed`]) for its repository. A manifest is accepted only if every blob and child manifest it
//! names is held in the repository (`MANIFEST_BLOB_UNKNOWN` otherwise); its `subject` need not exist yet.

use super::oci::{
    api_version, digest_headers, internal, parse_digest, store_write, valid_name, valid_tag,
    ApiError,
};
use super::uploads::{range_invalid, Finished, Session, Uploads};
use super::Mirror;
use crate::ingest::image::{media, MAX_MANIFEST};
use crate::store::pushed::ManifestPush;
use crate::store::{Store, StoreError};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_protocol::{BlobRef, Sha256Digest};
use serde::Deserialize;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_stream::StreamExt;

/// The media type recorded for a blob until a manifest names it.
const OCTET: &str = "application/octet-stream";

/// Headers describing an upload session.
fn session_headers(h: &mut HeaderMap, s: &Session) {
    api_version(h);
    for (name, value) in [
        (header::LOCATION.as_str(), s.location()),
        (header::RANGE.as_str(), s.range()),
        ("Docker-Upload-UUID", s.id.clone()),
        ("Blob-Upload-Session-ID", s.id.clone()),
    ] {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
}

fn session_response(status: StatusCode, s: &Session) -> Response {
    let mut h = HeaderMap::new();
    session_headers(&mut h, s);
    (status, h).into_response()
}

/// An error answered with the session's headers too (a 416 says where the upload stands).
fn with_session(e: ApiError, s: &Session) -> ApiError {
    let mut h = HeaderMap::new();
    session_headers(&mut h, s);
    h.remove(header::CONTENT_LENGTH);
    h.into_iter().fold(e, |e, (n, v)| match n {
        Some(n) => e.with_header(n, v),
        None => e,
    })
}

/// `201 Created` for a blob or manifest now held at `location`.
fn created(location: String, digest: &Sha256Digest) -> Response {
    let mut h = HeaderMap::new();
    api_version(&mut h);
    digest_headers(&mut h, digest);
    h.remove(header::ETAG);
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    (StatusCode::CREATED, h).into_response()
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// `Content-Range: <start>-<end>` (inclusive; a `bytes ` or `bytes=` prefix tolerated).
pub(crate) fn parse_content_range(h: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = h.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || range_invalid("Content-Range must be <start>-<end>, inclusive");
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or_default();
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let number = |n: &str| match super::range::digits(n.trim()) {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(range_invalid(format!(
            "Content-Range {s}: {n} is past any upload's size"
        ))),
        Err(()) => Err(bad()),
    };
    let (a, b) = (number(a)?, number(b)?);
    // Its length, b - a + 1, must be a number too.
    if b < a || b == u64::MAX {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

/// Take a chunk into the session, checking `Content-Range` (must start where the upload stands) and its length.
async fn take_chunk(
    uploads: &Uploads,
    s: &Arc<Session>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    let declared = content_length(headers);
    let range = parse_content_range(headers)?;
    if let Some((a, b)) = range {
        let len = b - a + 1;
        if declared.is_some_and(|d| d != len) {
            return Err(range_invalid(format!(
                "Content-Range covers {len} bytes but Content-Length is {}",
                declared.unwrap_or_default()
            )));
        }
    }
    uploads.append(s, body, declared, range).await
}

/// End the upload `s`; the SHA-256 of what it holds must be `expected`: then store it and record it in its
/// repository.
async fn complete(
    m: &Mirror,
    s: &Arc<Session>,
    expected: Sha256Digest,
) -> Result<Response, ApiError> {
    let upload = m.uploads().finish(s).await?;
    let result = store_upload(m, &upload, expected).await;
    upload.discard().await;
    result
}

async fn store_upload(
    m: &Mirror,
    upload: &Finished,
    expected: Sha256Digest,
) -> Result<Response, ApiError> {
    if upload.digest != expected {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!(
                "the uploaded {} bytes have digest {}, not {expected}",
                upload.size, upload.digest
            ),
        )
        .with_detail(serde_json::json!({ "digest": expected.to_string() })));
    }
    let (store, lock) = (m.store().clone(), m.ingest_lock());
    let (path, size, repo) = (upload.path.clone(), upload.size, upload.repository.clone());
    let blob = tokio::task::spawn_blocking(move || -> Result<BlobRef, StoreError> {
        let _one = lock.lock().expect("ingest lock poisoned");
        let _op = store.begin("push");
        let blob = match held(&store, &expected)? {
            Some(b) if b.size == size => b,
            _ => {
                let f = std::fs::File::open(&path).map_err(StoreError::io(&path))?;
                let what = format!("blob {expected} pushed to {repo}");
                let reopen = || -> std::io::Result<Box<dyn std::io::Read + Send>> {
                    let f = std::fs::File::open(&path)?;
                    Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
                };
                let opts = crate::store::gzip::BlobOptions {
                    reopen: Some(&reopen),
                    hint: None,
                };
                let got = store.ingest_blob_with(
                    std::io::BufReader::with_capacity(1 << 20, f),
                    &opts,
                    &what,
                    Some((expected, Some(size))),
                    &crate::NoProgress,
                )?;
                store.commit()?;
                tracing::info!(repository = %repo, digest = %expected, bytes = size,
                    chunks_new = got.stats.chunks_new, "blob pushed");
                got.blob
            }
        };
        store.push_blob(&repo, &blob, OCTET)?;
        Ok(blob)
    })
    .await
    .map_err(internal)?
    .map_err(|e| match e {
        StoreError::DigestMismatch { .. } | StoreError::SizeMismatch { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string())
        }
        e => store_write(e),
    })?;
    Ok(created(
        format!("/v2/{}/blobs/{}", upload.repository, blob.sha256),
        &blob.sha256,
    ))
}

/// The blob with this digest, if the store holds all of it.
fn held(store: &Store, digest: &Sha256Digest) -> Result<Option<BlobRef>, StoreError> {
    match store.blob_by_sha256(digest)? {
        Some(b) if store.blob_complete(&b)? => Ok(Some(b)),
        _ => Ok(None),
    }
}

/// `POST /v2/<name>/blobs/uploads/`: mount (`?mount=&from=`), monolithic upload (`?digest=`), or a new session.
pub(crate) async fn start(
    m: &Mirror,
    name: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(mount) = q.get("mount") {
        let digest = parse_digest(mount)?;
        let store = m.store().clone();
        let repo = name.to_string();
        let mounted = tokio::task::spawn_blocking(move || -> Result<bool, StoreError> {
            let _op = store.begin("push");
            match held(&store, &digest)? {
                Some(b) => {
                    store.push_blob(&repo, &b, OCTET)?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
        .await
        .map_err(internal)?
        .map_err(store_write)?;
        if mounted {
            // `from` is only a hint (the node mounts any blob it holds whole); logged only if it is a name.
            let from = q.get("from").map(String::as_str).filter(|f| valid_name(f));
            tracing::info!(repository = %name, from = from.unwrap_or("-"), digest = %digest, "blob mounted");
            return Ok(created(format!("/v2/{name}/blobs/{digest}"), &digest));
        }
        // Not held: the spec's fallback is an ordinary upload session.
    }
    let uploads = m.uploads();
    if let Some(d) = q.get("digest") {
        let digest = parse_digest(d)?;
        let s = uploads.start(name).await?;
        if let Err(e) = take_chunk(uploads, &s, headers, body).await {
            let _ = uploads.cancel(&s).await;
            return Err(e);
        }
        return complete(m, &s, digest).await;
    }
    let s = uploads.start(name).await?;
    Ok(session_response(StatusCode::ACCEPTED, &s))
}

/// `PATCH /v2/<name>/blobs/uploads/<id>`: one more chunk.
pub(crate) async fn patch(
    m: &Mirror,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let uploads = m.uploads();
    let s = uploads.get(name, id)?;
    match take_chunk(uploads, &s, headers, body).await {
        Ok(()) => Ok(session_response(StatusCode::ACCEPTED, &s)),
        Err(e) => Err(settle(&s, e)),
    }
}

/// After a refused chunk: a session still open (out-of-order range, broken-off body, full spool) stands where
/// it stood, for the client to resume, and says so.
fn settle(s: &Session, e: ApiError) -> ApiError {
    if !s.is_open() {
        return e;
    }
    Uploads::touch(s);
    with_session(e, s)
}

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: the last chunk (if any), then completion.
pub(crate) async fn finish(
    m: &Mirror,
    name: &str,
    id: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let digest = parse_digest(q.get("digest").map(String::as_str).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "completing an upload needs ?digest=sha256:<hex>",
        )
    })?)?;
    let uploads = m.uploads();
    let s = uploads.get(name, id)?;
    if let Err(e) = take_chunk(uploads, &s, headers, body).await {
        return Err(settle(&s, e));
    }
    complete(m, &s, digest).await
}

/// `GET /v2/<name>/blobs/uploads/<id>`: where the upload stands (what is committed: a chunk still arriving is not
/// waited for).
pub(crate) async fn status(m: &Mirror, name: &str, id: &str) -> Result<Response, ApiError> {
    let s = m.uploads().get(name, id)?;
    Uploads::touch(&s);
    Ok(session_response(StatusCode::NO_CONTENT, &s))
}

/// `DELETE /v2/<name>/blobs/uploads/<id>`: cancel, at once (a chunk in flight is aborted).
pub(crate) async fn cancel(m: &Mirror, name: &str, id: &str) -> Result<Response, ApiError> {
    let uploads = m.uploads();
    uploads.cancel(&*uploads.get(name, id)?).await?;
    let mut h = HeaderMap::new();
    api_version(&mut h);
    Ok((StatusCode::NO_CONTENT, h).into_response())
}

/// The parts of a manifest or index that matter here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<DescriptorJson>,
    #[serde(default)]
    layers: Option<Vec<DescriptorJson>>,
    #[serde(default)]
    manifests: Option<Vec<DescriptorJson>>,
    #[serde(default)]
    subject: Option<DescriptorJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
}

fn manifest_invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
}

/// The request body, refused above `max` bytes.
async fn read_small(body: Body, max: u64) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                format!("the request body broke off: {e}"),
            )
        })?;
        if (out.len() + frame.len()) as u64 > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("a manifest may be at most {max} bytes"),
            ));
        }
        out.extend_from_slice(&frame);
    }
    Ok(out)
}

/// The manifest's media type: the `Content-Type` it was sent with, else its own `mediaType`, else what its
/// shape says. Both given must agree; only OCI and Docker v2 manifests and indexes are accepted.
fn manifest_type(headers: &HeaderMap, m: &ManifestJson) -> Result<String, ApiError> {
    let sent = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_string())
        .filter(|v| media::MANIFESTS.contains(&v.as_str()));
    let t = match (&sent, &m.media_type) {
        (Some(s), Some(own)) if s != own => {
            return Err(manifest_invalid(format!(
                "Content-Type {s} does not match the manifest's mediaType {own}"
            )))
        }
        (Some(s), _) => s.clone(),
        (None, Some(own)) => own.clone(),
        (None, None) if m.manifests.is_some() => media::OCI_INDEX.to_string(),
        (None, None) => media::OCI_MANIFEST.to_string(),
    };
    if !media::MANIFESTS.contains(&t.as_str()) {
        return Err(manifest_invalid(format!(
            "media type {t} is not accepted: push an OCI or Docker v2 image manifest or index"
        )));
    }
    Ok(t)
}

/// A pushed manifest as its bytes and headers give it, before anything is looked up.
#[derive(Debug)]
pub(crate) struct PushedManifest {
    /// Its media type (one of [`media::MANIFESTS`]).
    pub media_type: String,
    /// What it names: an index's manifests, or an image manifest's config then layers.
    pub named: Vec<Named>,
    /// Its `subject`.
    pub subject: Option<Sha256Digest>,
}

/// A descriptor of a pushed manifest.
#[derive(Debug)]
pub(crate) struct Named {
    /// The digest.
    pub digest: Sha256Digest,
    /// The size it says.
    pub size: u64,
    /// Its media type, empty when it gives none.
    pub media_type: String,
}

/// Parse a pushed manifest and check what it says of itself: JSON, schema version 2, an accepted media type
/// agreeing with `Content-Type`, the descriptors its kind needs, every digest a sha256 one.
pub(crate) fn check_manifest(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<PushedManifest, ApiError> {
    let parsed: ManifestJson = serde_json::from_slice(bytes)
        .map_err(|e| manifest_invalid(format!("not a JSON manifest: {e}")))?;
    if parsed.schema_version != Some(2) {
        return Err(manifest_invalid(
            "only schemaVersion 2 manifests are accepted (Docker schema 1 is not supported)",
        ));
    }
    let media_type = manifest_type(headers, &parsed)?;
    let is_index = media_type == media::OCI_INDEX || media_type == media::DOCKER_LIST;
    let named: Vec<&DescriptorJson> = if is_index {
        parsed
            .manifests
            .as_ref()
            .ok_or_else(|| manifest_invalid("an index needs a manifests array"))?
            .iter()
            .collect()
    } else {
        let config = parsed
            .config
            .as_ref()
            .ok_or_else(|| manifest_invalid("an image manifest needs a config"))?;
        std::iter::once(config)
            .chain(parsed.layers.iter().flatten())
            .collect()
    };
    let named = named
        .into_iter()
        .map(|d| {
            Ok(Named {
                digest: d
                    .digest
                    .parse()
                    .map_err(|e| manifest_invalid(format!("descriptor {:?}: {e}", d.digest)))?,
                size: d.size,
                media_type: d.media_type.clone(),
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let subject = parsed
        .subject
        .as_ref()
        .map(|d| {
            d.digest
                .parse::<Sha256Digest>()
                .map_err(|e| manifest_invalid(format!("subject: {e}")))
        })
        .transpose()?;
    Ok(PushedManifest {
        media_type,
        named,
        subject,
    })
}

/// `PUT /v2/<name>/manifests/<reference>`.
pub(crate) async fn put_manifest(
    m: &Mirror,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let by_digest = reference.contains(':');
    if !by_digest && !valid_tag(reference) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("invalid tag {reference:?}"),
        ));
    }
    let want = by_digest.then(|| parse_digest(reference)).transpose()?;
    let bytes = read_small(body, MAX_MANIFEST).await?;
    let digest = Sha256Digest(ferry_protocol::Hash32(sha2::Sha256::digest(&bytes).into()));
    if let Some(want) = want.filter(|w| *w != digest) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("the manifest has digest {digest}, not {want}"),
        )
        .with_detail(serde_json::json!({ "digest": want.to_string() })));
    }
    let PushedManifest {
        media_type,
        named,
        subject,
    } = check_manifest(headers, &bytes)?;

    // Every blob and child manifest it names must be held in the repository, with the size it says.
    let catalog = m.catalog().await.map_err(internal)?;
    let repo = catalog.repo(name, None);
    let mut refs: Vec<(BlobRef, String)> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for d in named {
        let digest = d.digest;
        let Some((blob, known_type)) = repo.and_then(|r| r.blobs.get(&digest)) else {
            missing.push(digest.to_string());
            continue;
        };
        if blob.size != d.size {
            return Err(manifest_invalid(format!(
                "the descriptor of {digest} says {} bytes; the blob has {}",
                d.size, blob.size
            )));
        }
        if refs.iter().all(|(b, _)| b.sha256 != digest) {
            let t = if d.media_type.is_empty() {
                known_type.clone()
            } else {
                d.media_type.clone()
            };
            refs.push((*blob, t));
        }
    }
    if let Some(first) = missing.first() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
            format!(
                "the manifest names {} blob(s) repository {name} does not hold: {}",
                missing.len(),
                missing.join(", ")
            ),
        )
        .with_detail(serde_json::json!({ "digest": first })));
    }

    // Manifests are small: they skip the one-at-a-time lock of blob ingests rather than wait behind a big layer.
    let store = m.store().clone();
    let (repo, tag, mt) = (
        name.to_string(),
        (!by_digest).then(|| reference.to_string()),
        media_type.clone(),
    );
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        let _op = store.begin("push");
        let manifest = match held(&store, &digest)? {
            Some(b) => b,
            None => {
                let got = store.ingest_blob(
                    &bytes[..],
                    &format!("manifest {digest} pushed to {repo}"),
                    Some((digest, Some(bytes.len() as u64))),
                    &crate::NoProgress,
                )?;
                store.commit()?;
                got.blob
            }
        };
        store.push_manifest(&ManifestPush {
            repository: &repo,
            manifest,
            media_type: &mt,
            tag: tag.as_deref(),
            refs: &refs,
        })?;
        tracing::info!(repository = %repo, tag = tag.as_deref().unwrap_or(""), digest = %digest,
            media_type = %mt, "manifest pushed");
        Ok(())
    })
    .await
    .map_err(internal)?
    .map_err(store_write)?;

    let mut r = created(format!("/v2/{name}/manifests/{digest}"), &digest);
    if let Some(s) = subject {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert("OCI-Subject", v);
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cr(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range(&HeaderMap::new()).unwrap(), None);
        assert_eq!(parse_content_range(&cr("0-99")).unwrap(), Some((0, 99)));
        assert_eq!(
            parse_content_range(&cr("bytes 100-199/*")).unwrap(),
            Some((100, 199))
        );
        assert_eq!(parse_content_range(&cr("bytes=5-5")).unwrap(), Some((5, 5)));
        for bad in [
            "",
            "5",
            "9-3",
            "a-b",
            "-4",
            "1-",
            "99999999999999999999999-1",
            "0-18446744073709551615",
            "0-99999999999999999999",
            "+1-2",
        ] {
            let e = parse_content_range(&cr(bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        }
    }

    #[test]
    fn manifest_types() {
        let j = |s: &str| serde_json::from_str::<ManifestJson>(s).unwrap();
        let ct = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            h
        };
        let plain = j(r#"{"schemaVersion":2,"config":{"digest":"x","size":1}}"#);
        assert_eq!(
            manifest_type(&HeaderMap::new(), &plain).unwrap(),
            media::OCI_MANIFEST
        );
        assert_eq!(
            manifest_type(&ct(media::DOCKER_MANIFEST), &plain).unwrap(),
            media::DOCKER_MANIFEST
        );
        let index = j(r#"{"schemaVersion":2,"manifests":[]}"#);
        assert_eq!(
            manifest_type(&ct("application/json"), &index).unwrap(),
            media::OCI_INDEX
        );
        let typed = j(&format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media::DOCKER_LIST
        ));
        assert!(manifest_type(&ct(media::OCI_INDEX), &typed).is_err());
        let odd = j(r#"{"schemaVersion":2,"mediaType":"application/x-odd"}"#);
        assert!(manifest_type(&HeaderMap::new(), &odd).is_err());
    }
}
