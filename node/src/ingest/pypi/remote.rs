//! A remote PyPI simple index read the way a resolver needs it: each project's PEP 691 JSON page (only the
//! projects the requirements reach), the PEP 658 metadata of the distributions the resolution takes (the file
//! itself only when the index has no metadata for it), and at the end the chosen files, each checked against the
//! page's SHA-256 while it streams to a spool directory.

use super::resolve::Candidate;
use crate::ingest::IngestError;
use pep508_rs::pep440_rs::{Version, VersionSpecifiers};
use reqwest::blocking::Client;
use serde_json::Value;
use sha2::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A project page (PEP 691 JSON) larger than this is refused.
const PAGE_CAP: u64 = 64 << 20;
/// Core metadata larger than this is refused.
const METADATA_CAP: u64 = 16 << 20;

/// One file of a project page.
#[derive(Clone, Debug)]
pub struct RemoteFile {
    /// Its URL, resolved against the page.
    pub url: reqwest::Url,
    /// The SHA-256 the page gives, lowercase hex.
    pub sha256: Option<String>,
    /// Whether the index serves its metadata at `URL.metadata` (PEP 658/714), and that file's SHA-256.
    pub metadata: Option<Option<String>>,
}

/// The index.
pub struct Remote {
    client: Client,
    base: reqwest::Url,
}

impl Remote {
    /// The index at `url` (its `/simple/` root).
    pub fn new(url: &str) -> Result<Remote, IngestError> {
        let mut text = url.to_string();
        if !text.ends_with('/') {
            text.push('/');
        }
        let base = reqwest::Url::parse(&text).map_err(|e| IngestError::BadSource {
            source_text: format!("pypi:{url}"),
            reason: format!("not a URL: {e}"),
        })?;
        Ok(Remote {
            client: crate::ingest::http_client()?,
            base,
        })
    }

    fn get(
        &self,
        url: &reqwest::Url,
        accept: &str,
    ) -> Result<Option<reqwest::blocking::Response>, IngestError> {
        let resp = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .map_err(|e| {
                IngestError::Fetch(format!("GET {url}: {}", crate::ingest::error_chain(&e)))
            })?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::GONE => Ok(None),
            s => Err(IngestError::Fetch(format!("GET {url}: HTTP {s}"))),
        }
    }

    /// A project's files as candidates (without requirements yet) and where each is; `None` when the index
    /// has no such project.
    pub fn project(
        &self,
        project: &str,
    ) -> Result<Option<Vec<(Candidate, RemoteFile)>>, IngestError> {
        let url = self
            .base
            .join(&format!("{project}/"))
            .map_err(|e| IngestError::Fetch(format!("{project}: {e}")))?;
        let Some(resp) = self.get(&url, super::super::super::mirror::repo::media::PYPI_JSON)?
        else {
            return Ok(None);
        };
        let bad = |reason: String| IngestError::Malformed {
            what: url.to_string(),
            reason,
        };
        let json_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        if !json_type {
            return Err(bad(
                "the index answered without PEP 691 JSON (application/vnd.pypi.simple.v1+json)"
                    .into(),
            ));
        }
        let body = crate::ingest::pkgtree::read_capped(resp, PAGE_CAP, url.as_str())?;
        let page: Value =
            serde_json::from_slice(&body).map_err(|e| bad(format!("not JSON: {e}")))?;
        let files = page["files"]
            .as_array()
            .ok_or_else(|| bad("no \"files\" list".into()))?;
        let mut out = Vec::new();
        for f in files {
            let Some(filename) = f["filename"].as_str() else {
                return Err(bad(format!("a file without a filename: {f}")));
            };
            let Some((kind, stem)) = super::DistKind::of(filename) else {
                continue; // eggs, exes, .tar.bz2: nothing pip installs from a mirror
            };
            let version_text = match kind {
                super::DistKind::Wheel => {
                    super::parse_wheel_name(filename)
                        .map_err(|e| bad(format!("{filename}: {e}")))?
                        .1
                }
                _ => match stem.rsplit_once('-') {
                    Some((_, v)) => v.to_string(),
                    None => continue,
                },
            };
            let Ok(version) = Version::from_str(&version_text) else {
                continue; // not PEP 440: pip skips it too
            };
            let href = f["url"]
                .as_str()
                .ok_or_else(|| bad(format!("{filename} has no url")))?;
            let file_url = url
                .join(href)
                .map_err(|e| bad(format!("{filename}: url {href:?}: {e}")))?;
            let requires_python = match f["requires-python"].as_str().filter(|s| !s.is_empty()) {
                Some(s) => match VersionSpecifiers::from_str(s) {
                    Ok(v) => Some(v),
                    Err(_) => continue, // an unreadable Requires-Python: pip skips the file
                },
                None => None,
            };
            let metadata = match f
                .get("core-metadata")
                .or_else(|| f.get("dist-info-metadata"))
            {
                Some(Value::Bool(true)) => Some(None),
                Some(Value::Object(h)) => Some(
                    h.get("sha256")
                        .and_then(Value::as_str)
                        .map(str::to_ascii_lowercase),
                ),
                _ => None,
            };
            let yanked = match &f["yanked"] {
                Value::Bool(b) => *b,
                Value::String(_) => true,
                _ => false,
            };
            out.push((
                Candidate {
                    project: project.to_string(),
                    version,
                    filename: filename.to_string(),
                    wheel: kind == super::DistKind::Wheel,
                    requires_python,
                    requires_dist: None,
                    yanked,
                },
                RemoteFile {
                    url: file_url,
                    sha256: f["hashes"]["sha256"].as_str().map(str::to_ascii_lowercase),
                    metadata,
                },
            ));
        }
        Ok(Some(out))
    }

    /// The core metadata of a file the index serves metadata for (checked against its hash).
    pub fn metadata(&self, file: &RemoteFile) -> Result<Vec<u8>, IngestError> {
        let mut url = file.url.clone();
        url.set_fragment(None);
        let url = reqwest::Url::parse(&format!("{url}.metadata"))
            .map_err(|e| IngestError::Fetch(e.to_string()))?;
        let resp = self.get(&url, "*/*")?.ok_or_else(|| {
            IngestError::NotFound(format!("{url}: the page promised metadata (PEP 658)"))
        })?;
        let bytes = crate::ingest::pkgtree::read_capped(resp, METADATA_CAP, url.as_str())?;
        if let Some(Some(want)) = &file.metadata {
            let got = hex::encode(sha2::Sha256::digest(&bytes));
            if &got != want {
                return Err(IngestError::Malformed {
                    what: url.to_string(),
                    reason: format!("SHA-256 {got}, but the page says {want}"),
                });
            }
        }
        Ok(bytes)
    }

    /// Download `file` into `dir` as `filename`, checking the page's SHA-256 as it streams.
    pub fn download(
        &self,
        file: &RemoteFile,
        filename: &str,
        dir: &Path,
    ) -> Result<PathBuf, IngestError> {
        let mut url = file.url.clone();
        url.set_fragment(None);
        let mut resp = self.get(&url, "*/*")?.ok_or_else(|| {
            IngestError::NotFound(format!("{url}: listed on its project page but not there"))
        })?;
        let path = dir.join(filename);
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&path).map_err(IngestError::io(&path))?);
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = resp
                .read(&mut buf)
                .map_err(|e| IngestError::Fetch(format!("GET {url}: {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(IngestError::io(&path))?;
        }
        out.flush().map_err(IngestError::io(&path))?;
        let got = hex::encode(h.finalize());
        if let Some(want) = &file.sha256 {
            if &got != want {
                return Err(IngestError::Malformed {
                    what: url.to_string(),
                    reason: format!("SHA-256 {got}, but its project page says {want}"),
                });
            }
        }
        Ok(path)
    }
}
