//! Reading an apt repository's files by their path under the root: from a directory, or over HTTP(S) with a
//! streaming blocking client (bodies go to the store as they arrive, never whole into memory).

use super::super::IngestError;
use super::AptRoot;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where files come from.
pub enum Fetch {
    /// A local repository root.
    Dir(PathBuf),
    /// An HTTP(S) repository root.
    Http {
        /// The client.
        client: Client,
        /// The root URL.
        base: reqwest::Url,
    },
}

/// A symlink under `dists/`: its path from the root, and its target as stored.
pub type Link = (String, String);

/// A file being read, and its length when known.
pub type Opened = (Box<dyn Read + Send>, Option<u64>);

/// How deep under `dists/` suites are looked for (`dists/bookworm`, `dists/stretch/updates`).
const SUITE_DEPTH: usize = 3;

impl Fetch {
    /// A reader for `root`.
    pub fn new(root: &AptRoot) -> Result<Fetch, IngestError> {
        match root {
            AptRoot::Dir(d) => {
                let dists = d.join("dists");
                if !dists.is_dir() {
                    return Err(IngestError::BadSource {
                        source_text: format!("apt:{}", d.display()),
                        reason: "no dists/ directory: not the root of an apt repository".into(),
                    });
                }
                Ok(Fetch::Dir(d.clone()))
            }
            AptRoot::Url(u) => {
                let base = reqwest::Url::parse(u).map_err(|e| IngestError::BadSource {
                    source_text: format!("apt:{u}"),
                    reason: format!("not a URL: {e}"),
                })?;
                Ok(Fetch::Http {
                    client: super::super::http_client()?,
                    base,
                })
            }
        }
    }

    fn url(base: &reqwest::Url, rel: &str) -> reqwest::Url {
        let mut url = base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(rel.split('/'));
        }
        url
    }

    /// The file's full name, for messages.
    pub fn describe(&self, rel: &str) -> String {
        match self {
            Fetch::Dir(d) => d.join(rel).display().to_string(),
            Fetch::Http { base, .. } => Self::url(base, rel).to_string(),
        }
    }

    /// Open the file at `rel` (already checked to be a safe relative path); `None` when it does not exist.
    pub fn open(&self, rel: &str) -> Result<Option<Opened>, IngestError> {
        match self {
            Fetch::Dir(d) => {
                let path = d.join(rel);
                match std::fs::File::open(&path) {
                    Ok(f) => {
                        let meta = f.metadata().map_err(IngestError::io(&path))?;
                        if !meta.is_file() {
                            return Err(IngestError::Malformed {
                                what: path.display().to_string(),
                                reason: "not a regular file".into(),
                            });
                        }
                        let r = std::io::BufReader::with_capacity(1 << 20, f);
                        Ok(Some((Box::new(r), Some(meta.len()))))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(IngestError::io(&path)(e)),
                }
            }
            Fetch::Http { client, base } => {
                let url = Self::url(base, rel);
                let resp = client.get(url.clone()).send().map_err(|e| {
                    IngestError::Fetch(format!("GET {url}: {}", super::super::error_chain(&e)))
                })?;
                match resp.status() {
                    s if s.is_success() => {
                        let len = resp.content_length();
                        Ok(Some((Box::new(resp), len)))
                    }
                    StatusCode::NOT_FOUND | StatusCode::GONE => Ok(None),
                    s => Err(IngestError::Fetch(format!("GET {url}: HTTP {s}"))),
                }
            }
        }
    }

    /// Every suite under `dists/` (a directory holding `InRelease` or `Release`), and the symlinks under
    /// `dists/` that point at one (`stable -> bookworm`). Directories only: a URL has no listing.
    pub fn suites(&self) -> Result<(Vec<String>, Vec<Link>), IngestError> {
        let Fetch::Dir(root) = self else {
            return Ok((vec![], vec![]));
        };
        let dists = root.join("dists");
        let mut suites = Vec::new();
        let mut walk = walkdir::WalkDir::new(&dists)
            .min_depth(1)
            .max_depth(SUITE_DEPTH)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(e) = walk.next() {
            let e = e.map_err(|err| {
                IngestError::io(err.path().unwrap_or(&dists).to_path_buf())(err.into())
            })?;
            if !e.file_type().is_dir() {
                continue;
            }
            if e.path().join("InRelease").is_file() || e.path().join("Release").is_file() {
                suites.push(rel_name(&dists, e.path())?);
                walk.skip_current_dir();
            }
        }
        let links = self.suite_links(&suites)?;
        Ok((suites, links))
    }

    /// The symlinks under `dists/` (as deep as suites are looked for) whose relative target is one of `suites`.
    pub fn suite_links(&self, suites: &[String]) -> Result<Vec<Link>, IngestError> {
        let Fetch::Dir(root) = self else {
            return Ok(vec![]);
        };
        let dists = root.join("dists");
        let mut links = Vec::new();
        for e in walkdir::WalkDir::new(&dists)
            .min_depth(1)
            .max_depth(SUITE_DEPTH)
            .follow_links(false)
            .sort_by_file_name()
        {
            let e = e.map_err(|err| {
                IngestError::io(err.path().unwrap_or(&dists).to_path_buf())(err.into())
            })?;
            if !e.file_type().is_symlink() {
                continue;
            }
            let target = std::fs::read_link(e.path()).map_err(IngestError::io(e.path()))?;
            let Some(target_str) = target.to_str() else {
                continue;
            };
            let name = rel_name(&dists, e.path())?;
            let parent = name.rsplit_once('/').map_or("", |(p, _)| p);
            if target.is_absolute() {
                continue;
            }
            if let Some(resolved) = normalize(parent, target_str) {
                if suites.contains(&resolved) {
                    links.push((format!("dists/{name}"), target_str.to_string()));
                }
            }
        }
        Ok(links)
    }
}

/// `path` relative to `base`, as UTF-8 with `/`.
fn rel_name(base: &Path, path: &Path) -> Result<String, IngestError> {
    path.strip_prefix(base)
        .ok()
        .and_then(|p| p.to_str())
        .map(str::to_string)
        .ok_or_else(|| IngestError::Malformed {
            what: path.display().to_string(),
            reason: "name is not UTF-8".into(),
        })
}

/// `dir` joined with the relative `target`, `.`/`..` folded; `None` if it climbs out.
fn normalize(dir: &str, target: &str) -> Option<String> {
    let mut at: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                at.pop()?;
            }
            s => at.push(s),
        }
    }
    Some(at.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_each_segment() {
        let base = reqwest::Url::parse("http://127.0.0.1:1/debian/").unwrap();
        assert_eq!(
            Fetch::url(&base, "pool/main/a+b~c #1?.deb").as_str(),
            "http://127.0.0.1:1/debian/pool/main/a+b~c%20%231%3F.deb"
        );
        let base = reqwest::Url::parse("http://127.0.0.1:1/debian").unwrap();
        assert_eq!(
            Fetch::url(&base, "dists/x/Release").as_str(),
            "http://127.0.0.1:1/debian/dists/x/Release"
        );
    }

    #[test]
    fn link_targets_fold() {
        assert_eq!(normalize("", "bookworm").as_deref(), Some("bookworm"));
        assert_eq!(normalize("a", "../b/c").as_deref(), Some("b/c"));
        assert_eq!(normalize("", "../x"), None);
    }
}
