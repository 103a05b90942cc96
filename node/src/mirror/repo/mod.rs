//! Repository mirrors: every release's file tree served byte for byte as a static site, so apt, pip, helm and
//! dnf read it like the upstream it came from (and upstream signatures such as `InRelease` stay valid).
//!
//! - [`tree`]: the trees of every visible release by name and version; path resolution with symlinks kept
//!   inside the release; which version is `current`.
//! - [`path`]: request paths, percent-decoded once and refused when they could climb or hide (`..`, `%2F`, …).
//! - [`media`]: `Content-Type` by file name, PEP 691 `Accept` negotiation.
//! - [`detect`]: the apt, PyPI, Helm and yum repositories inside a tree, for `/_ferry/repos`.
//!
//! Routes: `GET|HEAD /repos/` (releases), `/repos/NAME/` (its versions), `/repos/NAME/VERSION/PATH` and
//! `/repos/NAME/current/PATH` (files, directories), `GET /_ferry/repos` (the same as JSON, with repositories).
//! Files carry `ETag` (their SHA-256), `Last-Modified` (the release's creation), answer conditional requests
//! with 304 and one `Range` with 206 or 416.

pub mod detect;
pub mod media;
pub mod path;
pub mod tree;

use super::body::blob_body;
use super::range::{parse_range, Answer};
use super::Mirror;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use detect::Repository;
use ferry_protocol::BlobRef;
use path::{encode_path, encode_segment};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tree::{Item, Resolved, Tree, Trees};

/// The longest path under `/repos/` answered, in bytes (longer ones get 414): far beyond any repository
/// layout's, short enough that a stranger's request costs little.
pub const MAX_PATH: usize = 4096;

/// The routes, to be given the mirror as state.
pub fn routes() -> Router<Mirror> {
    Router::new()
        .route("/repos", any(to_slash))
        .route("/repos/", any(dispatch))
        .route("/repos/{*rest}", any(dispatch))
        .route("/_ferry/repos", get(repos_json))
}

/// A plain-text error response.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "serving a repository request");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the node's log",
    )
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, v)]).into_response(),
        Err(e) => internal(e),
    }
}

async fn to_slash() -> Response {
    redirect("/repos/")
}

/// What a path under `/repos/` names.
enum Target<'a> {
    /// The release names starting with this prefix (ends in `/`).
    Names(String),
    /// The versions of a release.
    Versions(String),
    /// A path inside one release's tree.
    InTree(&'a Arc<Tree>, &'a [String]),
}

/// Match the longest known release name, then a known version or `current`; else a prefix of release names.
/// Only as many leading segments as the deepest release name has are tried, so the work is linear in the path
/// whatever its depth.
fn locate<'a>(trees: &'a Trees, segments: &'a [String]) -> Option<Target<'a>> {
    for k in (1..=segments.len().min(trees.deepest_name())).rev() {
        let name = segments[..k].join("/");
        if !trees.has_name(&name) {
            continue;
        }
        if k == segments.len() {
            return Some(Target::Versions(name));
        }
        if let Some(t) = trees.get(&name, &segments[k]) {
            return Some(Target::InTree(t, &segments[k + 1..]));
        }
    }
    let prefix = format!("{}/", segments.join("/"));
    trees
        .names()
        .any(|n| n.starts_with(&prefix))
        .then_some(Target::Names(prefix))
}

async fn dispatch(
    State(m): State<Mirror>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not supported: repository mirrors are read-only (GET, HEAD)"),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let head = method == Method::HEAD;
    let raw = uri.path().strip_prefix("/repos/").unwrap_or_default();
    if raw.len() > MAX_PATH {
        return error(
            StatusCode::URI_TOO_LONG,
            format!(
                "a path of {} bytes: paths under /repos/ are at most {MAX_PATH}",
                raw.len()
            ),
        );
    }
    let req = match path::parse(raw) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let catalog = match m.catalog().await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let trees = &catalog.trees;
    let slash_form = || format!("/repos/{raw}/");
    if req.segments.is_empty() {
        return html(listing_releases(trees, ""), head);
    }
    let not_found = |tree: &Tree, rest: &[String]| {
        error(
            StatusCode::NOT_FOUND,
            format!(
                "{}@{} has no {} (or it is a link leaving the release)",
                tree.name,
                tree.version,
                rest.join("/")
            ),
        )
    };
    match locate(trees, &req.segments) {
        None => error(StatusCode::NOT_FOUND, why_unknown(trees, &req.segments)),
        Some(Target::Names(prefix)) if req.slash => html(listing_releases(trees, &prefix), head),
        Some(Target::Versions(name)) if req.slash => html(listing_versions(trees, &name), head),
        Some(Target::Names(_) | Target::Versions(_)) => redirect(&slash_form()),
        Some(Target::InTree(tree, rest)) => match tree.resolve(rest) {
            None => not_found(tree, rest),
            Some(Resolved::File(..)) if req.slash => not_found(tree, rest),
            Some(Resolved::File(path, blob)) => {
                let ct = media::content_type(path.rsplit('/').next().unwrap_or(&path));
                file_response(&m, tree, blob, ct, &headers, head, false)
            }
            Some(Resolved::Dir(_)) if !req.slash => redirect(&slash_form()),
            Some(Resolved::Dir(dir)) => directory(&m, tree, &dir, &req.segments, &headers, head),
        },
    }
}

/// Why `segments` matched no release: a known name without that version, or no name at all. As in [`locate`],
/// only names as deep as the deepest release name are tried (every shorter prefix joined was quadratic: 4 MB of
/// copying for a path of 2,000 segments).
fn why_unknown(trees: &Trees, segments: &[String]) -> String {
    for k in (1..segments.len().min(trees.deepest_name() + 1)).rev() {
        let name = segments[..k].join("/");
        if let Some(versions) = trees.versions(&name) {
            let list: Vec<&str> = versions.iter().map(|t| t.version.as_str()).collect();
            return format!(
                "release {name} has no version {:?}; it has {} and current",
                segments[k],
                list.join(", ")
            );
        }
    }
    format!(
        "no release matches /repos/{}: see /repos/ for what this node serves",
        segments.join("/")
    )
}

/// A directory asked for with its slash: `index.json` for clients preferring PEP 691 JSON, else `index.html`,
/// else a listing.
fn directory(
    m: &Mirror,
    tree: &Tree,
    dir: &str,
    shown: &[String],
    req: &HeaderMap,
    head: bool,
) -> Response {
    let file_in = |name: &str| match tree.resolve_in(dir, name) {
        Some(Resolved::File(_, b)) => Some(b),
        _ => None,
    };
    let accept = req.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let json = file_in("index.json");
    if let Some(b) = json.filter(|_| media::prefers_pypi_json(accept)) {
        return file_response(m, tree, b, media::PYPI_JSON, req, head, true);
    }
    if let Some(b) = file_in("index.html") {
        return file_response(
            m,
            tree,
            b,
            "text/html; charset=utf-8",
            req,
            head,
            json.is_some(),
        );
    }
    let mut rows = vec![("../".to_string(), "../".to_string())];
    for (name, item) in tree.children(dir) {
        let is_dir = match item {
            Item::Dir => true,
            Item::File(_) => false,
            Item::Symlink(_) => matches!(tree.resolve_in(dir, name), Some(Resolved::Dir(_))),
        };
        let slash = if is_dir { "/" } else { "" };
        rows.push((
            format!("{}{slash}", encode_segment(name)),
            format!("{name}{slash}"),
        ));
    }
    html(page(&format!("/repos/{}/", shown.join("/")), &rows), head)
}

/// The bytes of `blob` with validators, conditional answers and one range.
fn file_response(
    m: &Mirror,
    tree: &Tree,
    blob: BlobRef,
    content_type: &'static str,
    req: &HeaderMap,
    head: bool,
    vary_accept: bool,
) -> Response {
    let etag = format!("\"{}\"", blob.sha256.0);
    let modified = UNIX_EPOCH + Duration::from_secs(tree.created);
    let last_modified = httpdate::fmt_http_date(modified);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&last_modified) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if vary_accept {
        headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    }
    if not_modified(req, &etag, tree.created) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let range = if if_range_holds(req, &etag, &last_modified) {
        parse_range(req, blob.size)
    } else {
        Ok(None)
    };
    let Answer {
        status,
        start,
        len,
        content_range,
    } = Answer::new(range, blob.size);
    if let Some(v) = content_range {
        headers.insert(header::CONTENT_RANGE, v);
    }
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        let mut r = error(
            status,
            format!(
                "range {:?} is not one satisfiable bytes=FIRST-LAST, FIRST- or -SUFFIX range of this {}-byte file",
                req.get(header::RANGE).and_then(|v| v.to_str().ok()).unwrap_or_default(),
                blob.size
            ),
        );
        for name in [header::CONTENT_RANGE, header::ACCEPT_RANGES] {
            if let Some(v) = headers.remove(&name) {
                r.headers_mut().insert(name, v);
            }
        }
        return r;
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = if head || len == 0 {
        Body::empty()
    } else {
        blob_body(m, blob, start, len)
    };
    (status, headers, body).into_response()
}

/// `If-None-Match` (any of the listed tags, weak or strong, or `*`), else `If-Modified-Since` at or after the
/// release's creation.
fn not_modified(req: &HeaderMap, etag: &str, created: u64) -> bool {
    if let Some(v) = req.get(header::IF_NONE_MATCH) {
        let v = v.to_str().unwrap_or_default();
        return v
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag);
    }
    req.get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .is_some_and(|since| created <= since.as_secs())
}

/// `If-Range`: the range applies only while the file is the one the client has (same strong tag or date).
fn if_range_holds(req: &HeaderMap, etag: &str, last_modified: &str) -> bool {
    match req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) => v.trim() == etag || v.trim() == last_modified,
    }
}

fn html(body: String, head: bool) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body = if head {
        Body::empty()
    } else {
        Body::from(body)
    };
    (StatusCode::OK, headers, body).into_response()
}

/// `&`, `<`, `>`, `"` and `'` as entities (the same escaping the generated package indexes use).
fn escape(s: &str) -> String {
    crate::ingest::pkgtree::html_escape(s)
}

/// An index page: a title and links `(href, text)`, both escaped.
fn page(title: &str, rows: &[(String, String)]) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {t}</title></head>\n<body>\n<h1>Index of {t}</h1>\n<ul>\n",
        t = escape(title)
    );
    for (href, text) in rows {
        s.push_str(&format!(
            "<li><a href=\"{}\">{}</a></li>\n",
            escape(href),
            escape(text)
        ));
    }
    s.push_str("</ul>\n</body></html>\n");
    s
}

/// Release names under `prefix` (`""` for all), each with its versions and `current`.
fn listing_releases(trees: &Trees, prefix: &str) -> String {
    let mut rows = Vec::new();
    if !prefix.is_empty() {
        rows.push(("../".to_string(), "../".to_string()));
    }
    for name in trees.names().filter(|n| n.starts_with(prefix)) {
        let rel = &name[prefix.len()..];
        rows.push((format!("{rel}/"), format!("{name}/")));
    }
    page(&format!("/repos/{prefix}"), &rows)
}

/// The versions of `name`, newest first, then `current`.
fn listing_versions(trees: &Trees, name: &str) -> String {
    let mut rows = vec![("../".to_string(), "../".to_string())];
    let versions = trees.versions(name).unwrap_or_default();
    let current = trees.current(name).map(|t| t.version.clone());
    for t in versions.iter().rev() {
        let note = if Some(&t.version) == current.as_ref() {
            " (current)"
        } else {
            ""
        };
        rows.push((
            format!("{}/", encode_segment(&t.version)),
            format!("{}/{note}", t.version),
        ));
    }
    rows.push(("current/".to_string(), "current/".to_string()));
    page(&format!("/repos/{name}/"), &rows)
}

/// `GET /_ferry/repos`: every release version with a file tree, its path, whether it is current, and the
/// package repositories inside it.
async fn repos_json(State(m): State<Mirror>) -> Response {
    let catalog = match m.catalog().await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let store = m.store().clone();
    let built = tokio::task::spawn_blocking(move || {
        let trees = &catalog.trees;
        let mut out = Vec::new();
        for name in trees.names() {
            let current = trees.current(name).map(|t| t.version.clone());
            for t in trees.versions(name).unwrap_or_default() {
                let base = format!("/repos/{}/{}/", t.name, encode_segment(&t.version));
                let repos = t.repositories.get_or_init(|| detect::detect(&store, t));
                let repos: Vec<serde_json::Value> = repos
                    .iter()
                    .map(|r| {
                        let mut v = serde_json::json!({
                            "kind": r.kind(),
                            "path": format!("{base}{}", encode_path(r.dir())),
                        });
                        let signing_key = match r {
                            Repository::Apt {
                                suites,
                                signing_key,
                                ..
                            } => {
                                v["suites"] = serde_json::json!(suites);
                                signing_key.as_ref()
                            }
                            Repository::Yum { signing_key, .. } => signing_key.as_ref(),
                            _ => None,
                        };
                        if let Some(key) = signing_key {
                            v["signing_key"] = serde_json::json!(format!(
                                "{base}{}{}",
                                encode_path(r.dir()),
                                encode_path(key)
                            ));
                        }
                        v
                    })
                    .collect();
                out.push(serde_json::json!({
                    "release": t.name,
                    "version": t.version,
                    "current": Some(&t.version) == current.as_ref(),
                    "path": base,
                    "repositories": repos,
                }));
            }
        }
        out
    })
    .await;
    match built {
        Ok(list) => axum::Json(list).into_response(),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_escape_names() {
        let p = page(
            "/repos/x/",
            &[(
                encode_segment("<script>\"&'.txt"),
                "<script>\"&'.txt".to_string(),
            )],
        );
        assert!(!p.contains("<script>"));
        assert!(p.contains("&lt;script&gt;&quot;&amp;&#39;.txt"));
        assert!(p.contains("href=\"%3Cscript%3E%22%26%27.txt\""));
    }
}
