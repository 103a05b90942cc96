//! The OCI Distribution API (distribution-spec v1.1), pull side: `/v2/`, manifests and blobs by tag or digest
//! (GET and HEAD, ranges on blobs), `tags/list` and `_catalog` with `n`/`last` paging, the referrers API, and the
//! spec's error bodies. Repository names with slashes are parsed from the raw path, so a percent-encoded slash or
//! a `..` can never name anything. Every request passes [`super::auth`] first; the push side (uploads, manifest
//! PUT) is routed to [`super::push`].

use super::auth::Need;
use super::body::blob_body;
use super::catalog::{is_manifest_type, Repo};
use super::range::{parse_range, Answer};
use super::{push, Mirror};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ferry_protocol::{BlobRef, Sha256Digest};
use std::collections::HashMap;

/// The routes, to be given the mirror as state.
pub fn routes() -> Router<Mirror> {
    Router::new()
        .route("/v2/", get(base))
        .route("/v2", get(base))
        .route("/v2/{*rest}", axum::routing::any(dispatch))
}

/// A Distribution API error: status, spec code, message, and any detail or headers the answer needs (a
/// challenge, an upload's `Range`).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `detail` and extra headers, boxed: most errors have neither, and results stay small.
    extra: Option<Box<(serde_json::Value, HeaderMap)>>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    fn extra(&mut self) -> &mut (serde_json::Value, HeaderMap) {
        self.extra
            .get_or_insert_with(|| Box::new((serde_json::Value::Null, HeaderMap::new())))
    }

    /// The same error, answered with header `name` too.
    pub(crate) fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra().1.insert(name, value);
        self
    }

    /// The same error with a `detail` object.
    pub(crate) fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.extra().0 = detail;
        self
    }

    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its spec error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    fn name_unknown(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {name} is not known to this node"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (detail, headers) = self.extra.map(|b| *b).unwrap_or_default();
        let body = serde_json::json!({
            "errors": [{ "code": self.code, "message": self.message, "detail": detail }]
        });
        let mut r = (self.status, axum::Json(body)).into_response();
        api_version(r.headers_mut());
        r.headers_mut().extend(headers);
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is not wanted: close rather than read it to reach a next request.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

pub(crate) fn api_version(h: &mut HeaderMap) {
    h.insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
}

/// A store failure while writing: 507 when the store's filesystem is full (the client may push again once
/// space is freed), else [`internal`].
pub(crate) fn store_write(e: crate::StoreError) -> ApiError {
    if e.is_no_space() {
        tracing::warn!(error = %e, "push refused");
        return ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN", e.to_string());
    }
    internal(e)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "serving a registry request");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "internal error; see the node's log",
    )
}

async fn base(State(m): State<Mirror>, headers: HeaderMap) -> Result<Response, ApiError> {
    m.access().check(&headers, Need::Ping)?;
    let mut r = axum::Json(serde_json::json!({})).into_response();
    api_version(r.headers_mut());
    m.access().ping_headers(r.headers_mut());
    Ok(r)
}

/// What a `/v2/<rest>` path asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Catalog,
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Tags(&'a str),
    Referrers(&'a str, &'a str),
    /// `<name>/blobs/uploads/`: start an upload (or mount).
    Uploads(&'a str),
    /// `<name>/blobs/uploads/<id>`: one upload session.
    Upload(&'a str, &'a str),
}

/// Split the raw path after `/v2/`. `None` if it matches no endpoint.
pub(crate) fn parse_route(rest: &str) -> Option<Route<'_>> {
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads/") {
        return Some(Route::Uploads(name));
    }
    if let Some(i) = rest.rfind("/blobs/uploads/") {
        let id = &rest[i + "/blobs/uploads/".len()..];
        if !id.contains('/') {
            return Some(Route::Upload(&rest[..i], id));
        }
    }
    for marker in ["/manifests/", "/blobs/", "/referrers/"] {
        let Some(i) = rest.rfind(marker) else {
            continue;
        };
        let (name, reference) = (&rest[..i], &rest[i + marker.len()..]);
        if reference.contains('/') {
            continue;
        }
        return Some(match marker {
            "/manifests/" => Route::Manifest(name, reference),
            "/blobs/" => Route::Blob(name, reference),
            _ => Route::Referrers(name, reference),
        });
    }
    None
}

/// A repository name as the spec allows: lowercase alphanumeric components joined by `.`, `_`, `__` or `-`
/// runs, separated by `/`. Anything else (including `..` and percent escapes) is refused.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|&x| x.is_ascii_lowercase() || x.is_ascii_digit() || b"._-".contains(&x))
                && !c.contains("..")
                && !c.contains("___")
        })
}

pub(crate) fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

pub(crate) fn parse_digest(s: &str) -> Result<Sha256Digest, ApiError> {
    s.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("{s:?} is not a sha256:<64 hex digits> digest"),
        )
    })
}

async fn dispatch(
    State(m): State<Mirror>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let rest = uri.path().strip_prefix("/v2/").unwrap_or_default();
    let route = parse_route(rest).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no such endpoint: /v2/{rest}"),
        )
    })?;
    let pull = method == Method::GET || method == Method::HEAD;
    let upload = matches!(route, Route::Uploads(_) | Route::Upload(..));
    m.access().check(
        &headers,
        if pull && !upload {
            Need::Pull
        } else {
            Need::Push
        },
    )?;
    let name = match &route {
        Route::Catalog => None,
        Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::Tags(n)
        | Route::Referrers(n, _)
        | Route::Uploads(n)
        | Route::Upload(n, _) => Some(*n),
    };
    if let Some(n) = name.filter(|n| !valid_name(n)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!("invalid repository name {n:?}"),
        ));
    }
    if !pull {
        return match (method, route) {
            (Method::POST, Route::Uploads(name)) => push::start(&m, name, &q, &headers, body).await,
            (Method::PATCH, Route::Upload(name, id)) => {
                push::patch(&m, name, id, &headers, body).await
            }
            (Method::PUT, Route::Upload(name, id)) => {
                push::finish(&m, name, id, &q, &headers, body).await
            }
            (Method::DELETE, Route::Upload(name, id)) => push::cancel(&m, name, id).await,
            (Method::PUT, Route::Manifest(name, reference)) => {
                push::put_manifest(&m, name, reference, &headers, body).await
            }
            (Method::DELETE, Route::Manifest(..) | Route::Blob(..)) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "deleting is not supported: releases are immutable, and a pushed tag is replaced by pushing it again",
            )),
            (method, _) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                format!("{method} is not supported here"),
            )),
        };
    }
    let head = method == Method::HEAD;
    if let Route::Upload(name, id) = route {
        return push::status(&m, name, id).await;
    }
    let catalog = m.catalog().await.map_err(internal)?;
    let ns = q.get("ns").map(String::as_str);
    let repo = |name: &str| {
        catalog
            .repo(name, ns)
            .ok_or_else(|| ApiError::name_unknown(name))
    };
    match route {
        Route::Catalog => Ok(paged(
            "/v2/_catalog",
            "repositories",
            None,
            catalog.names(),
            &q,
        )),
        Route::Tags(name) => {
            let tags = repo(name)?.tags.keys().cloned().collect();
            Ok(paged(
                &format!("/v2/{name}/tags/list"),
                "tags",
                Some(name),
                tags,
                &q,
            ))
        }
        Route::Manifest(name, reference) => manifest(&m, repo(name)?, reference, head).await,
        Route::Blob(name, digest) => {
            let digest = parse_digest(digest)?;
            let (blob, _) = repo(name)?.blobs.get(&digest).ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "BLOB_UNKNOWN",
                    format!("blob {digest} is not in repository {name}"),
                )
            })?;
            blob_response(&m, *blob, &headers, head)
        }
        Route::Referrers(name, digest) => {
            let digest = parse_digest(digest)?;
            referrers(
                &m,
                repo(name)?,
                &digest,
                q.get("artifactType").map(String::as_str),
            )
            .await
        }
        Route::Uploads(_) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "start an upload with POST",
        )),
        Route::Upload(..) => unreachable!("answered above"),
    }
}

/// A JSON list with `n`/`last` paging and a `Link` header to the next page.
fn paged(
    path: &str,
    field: &str,
    name: Option<&str>,
    mut items: Vec<String>,
    q: &HashMap<String, String>,
) -> Response {
    items.sort();
    if let Some(last) = q.get("last") {
        items.retain(|t| t.as_str() > last.as_str());
    }
    let n = q.get("n").and_then(|n| n.parse::<usize>().ok());
    let more = n.is_some_and(|n| items.len() > n);
    if let Some(n) = n {
        items.truncate(n);
    }
    let mut body = serde_json::Map::new();
    if let Some(name) = name {
        body.insert("name".into(), name.into());
    }
    body.insert(field.into(), items.clone().into());
    let mut r = axum::Json(serde_json::Value::Object(body)).into_response();
    api_version(r.headers_mut());
    if let (true, Some(n), Some(last)) = (more, n, items.last()) {
        if let Ok(v) = HeaderValue::from_str(&format!("<{path}?n={n}&last={last}>; rel=\"next\"")) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

pub(crate) fn digest_headers(h: &mut HeaderMap, digest: &Sha256Digest) {
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        h.insert("Docker-Content-Digest", v.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        h.insert(header::ETAG, v);
    }
}

async fn manifest(
    m: &Mirror,
    repo: &Repo,
    reference: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let (blob, media_type) = if reference.starts_with("sha256:") || reference.contains(':') {
        let digest = parse_digest(reference)?;
        match repo.blobs.get(&digest) {
            Some((b, t)) if is_manifest_type(t) => (*b, t.clone()),
            _ => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    format!("manifest {digest} is not known"),
                ))
            }
        }
    } else {
        if !valid_tag(reference) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "TAG_INVALID",
                format!("invalid tag {reference:?}"),
            ));
        }
        let t = repo.tags.get(reference).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                format!("tag {reference} is not known"),
            )
        })?;
        let (b, _) = repo
            .blobs
            .get(&t.digest)
            .ok_or_else(|| internal("tag without its manifest"))?;
        (*b, t.media_type.clone())
    };
    let mut headers = HeaderMap::new();
    api_version(&mut headers);
    digest_headers(&mut headers, &blob.sha256);
    if let Ok(v) = HeaderValue::from_str(&media_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.size));
    if head {
        return Ok((StatusCode::OK, headers).into_response());
    }
    let store = m.store().clone();
    let bytes = tokio::task::spawn_blocking(move || store.read_blob(&blob))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    m.count_served()
        .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
    Ok((StatusCode::OK, headers, bytes).into_response())
}

fn blob_response(
    m: &Mirror,
    blob: BlobRef,
    req: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let mut headers = HeaderMap::new();
    api_version(&mut headers);
    digest_headers(&mut headers, &blob.sha256);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let Answer {
        status,
        start,
        len,
        content_range,
    } = Answer::new(parse_range(req, blob.size), blob.size);
    if let Some(v) = content_range {
        headers.insert(header::CONTENT_RANGE, v);
    }
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        let mut r = ApiError::new(
            status,
            "RANGE_INVALID",
            format!(
                "the requested range is not within the blob's {} bytes",
                blob.size
            ),
        )
        .into_response();
        r.headers_mut().extend(headers);
        return Ok(r);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if head {
        return Ok((status, headers).into_response());
    }
    let body = if len == 0 {
        Body::empty()
    } else {
        blob_body(m, blob, start, len)
    };
    Ok((status, headers, body).into_response())
}

/// The referrers API: an image index of the manifests in the repository whose `subject` is `digest`.
async fn referrers(
    m: &Mirror,
    repo: &Repo,
    digest: &Sha256Digest,
    artifact_type: Option<&str>,
) -> Result<Response, ApiError> {
    let manifests: Vec<(BlobRef, String)> = repo
        .blobs
        .values()
        .filter(|(b, t)| is_manifest_type(t) && b.size <= 4 << 20)
        .cloned()
        .collect();
    let store = m.store().clone();
    let target = *digest;
    let filter = artifact_type.map(str::to_string);
    let found = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (b, media_type) in manifests {
            let bytes = store.read_blob(&b)?;
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            if v["subject"]["digest"].as_str() != Some(target.to_string().as_str()) {
                continue;
            }
            let artifact = v["artifactType"]
                .as_str()
                .or_else(|| v["config"]["mediaType"].as_str())
                .unwrap_or_default()
                .to_string();
            if filter.as_deref().is_some_and(|f| f != artifact) {
                continue;
            }
            let mut d = serde_json::json!({
                "mediaType": media_type,
                "digest": b.sha256.to_string(),
                "size": b.size,
                "artifactType": artifact,
            });
            if let Some(a) = v.get("annotations") {
                d["annotations"] = a.clone();
            }
            out.push(d);
        }
        Ok::<_, crate::store::StoreError>(out)
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": found,
    });
    let mut r = (
        [(
            header::CONTENT_TYPE,
            "application/vnd.oci.image.index.v1+json",
        )],
        serde_json::to_vec(&body).map_err(internal)?,
    )
        .into_response();
    api_version(r.headers_mut());
    if artifact_type.is_some() {
        r.headers_mut().insert(
            "OCI-Filters-Applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_names_with_slashes() {
        assert_eq!(
            parse_route("library/debian/manifests/12"),
            Some(Route::Manifest("library/debian", "12"))
        );
        assert_eq!(
            parse_route("a/b/c/blobs/sha256:00"),
            Some(Route::Blob("a/b/c", "sha256:00"))
        );
        assert_eq!(parse_route("x/tags/list"), Some(Route::Tags("x")));
        assert_eq!(parse_route("_catalog"), Some(Route::Catalog));
        assert_eq!(parse_route("x/unknown/y"), None);
        assert_eq!(
            parse_route("team/app/blobs/uploads/"),
            Some(Route::Uploads("team/app"))
        );
        assert_eq!(
            parse_route("team/app/blobs/uploads/0123abcd"),
            Some(Route::Upload("team/app", "0123abcd"))
        );
        // A repository may itself be called `…/blobs/uploads`.
        assert_eq!(
            parse_route("a/blobs/uploads/blobs/sha256:00"),
            Some(Route::Blob("a/blobs/uploads", "sha256:00"))
        );
    }

    #[test]
    fn names_refuse_traversal_and_escapes() {
        assert!(valid_name("library/debian"));
        assert!(valid_name("a.b_c-d/e__f"));
        for bad in [
            "", "../etc", "a/../b", "a//b", "A", "a%2fb", "a/", "-a", "a..b",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
