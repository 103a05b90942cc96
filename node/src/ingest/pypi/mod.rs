//! `pypi:DIR[?into=PREFIX]`: wheels and sdists → a PyPI "simple" repository (PEP 503 HTML, PEP 691 JSON, PEP 658
//! metadata), as a static tree.
//!
//! The files directly inside DIR (not its subdirectories) are read: `*.whl`, `*.tar.gz`, `*.zip`; anything else
//! is refused. Under PREFIX (default `pypi`):
//!
//! ```text
//! packages/<file>                  each distribution, byte for byte
//! packages/<wheel>.metadata        the wheel's *.dist-info/METADATA, byte for byte (PEP 658)
//! simple/index.html, index.json    the project list
//! simple/<project>/index.html, index.json   one page per project (PEP 503 normalised name)
//! ```
//!
//! Links are relative (`../../packages/<file>#sha256=<hex>`), so the tree works under any URL. Pages are
//! generated deterministically (sorted, no timestamps): the same DIR gives the same bytes.

pub mod partial;
pub mod remote;
pub mod resolve;

use super::image::Context;
use super::pkgtree::{
    self, html_escape, list_files, read_capped, url_segment, RepoDir, TreeWriter,
};
use super::IngestError;
use crate::store::WriteStats;
use ferry_protocol::Entry;
use std::collections::BTreeMap;
use std::path::Path;

/// The prefix when `?into=` is not given.
pub const DEFAULT_PREFIX: &str = "pypi";

/// A `pypi:` source: the directory of distributions and, for a partial mirror, what to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PypiSource {
    /// The directory and the prefix.
    pub repo: RepoDir,
    /// `requirements=…`: only what the requirements resolve to.
    pub partial: Option<partial::Partial>,
}

impl PypiSource {
    /// Parse what follows `pypi:` — `DIR[?into=PREFIX]`, and for a partial mirror
    /// `&requirements=PATH[&python=3.11][&platform=manylinux_2_28_x86_64][&allow-missing=yes]`.
    pub fn parse(rest: &str) -> Result<PypiSource, String> {
        let (dir, query) = match rest.rsplit_once('?') {
            Some((dir, query)) if !Path::new(rest).exists() => (dir, query),
            _ => (rest, ""),
        };
        let mut kept = Vec::new();
        let mut p = partial::Partial::default();
        let mut wants = false;
        let mut shaped = false;
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            match pair.split_once('=') {
                Some(("requirements", v)) => {
                    p.requirements = v.into();
                    wants = true;
                }
                Some(("python", v)) => (p.python, shaped) = (v.into(), true),
                Some(("platform", v)) => (p.platform, shaped) = (v.into(), true),
                Some(("allow-missing", v)) => {
                    p.allow_missing = match v {
                        "yes" | "true" | "1" => true,
                        "no" | "false" | "0" => false,
                        _ => return Err(format!("allow-missing={v}: say yes or no")),
                    };
                    shaped = true;
                }
                _ => kept.push(pair),
            }
        }
        let repo_text = if kept.is_empty() {
            dir.to_string()
        } else {
            format!("{dir}?{}", kept.join("&"))
        };
        let repo = RepoDir::parse(&repo_text, DEFAULT_PREFIX).map_err(|e| {
            if e.contains("unknown option") {
                format!("{e}; a partial mirror also takes requirements=, python=, platform= and allow-missing=")
            } else {
                e
            }
        })?;
        if shaped && !wants {
            return Err(
                "python, platform and allow-missing shape a partial mirror: name its requirements=PATH".into(),
            );
        }
        if wants {
            resolve::Target::new(&p.python, &p.platform)?;
        }
        Ok(PypiSource {
            repo,
            partial: wants.then_some(p),
        })
    }
}
/// Core metadata (METADATA, PKG-INFO) larger than this is refused.
const METADATA_CAP: u64 = 16 << 20;

/// PEP 503 normalisation: runs of `-`, `_`, `.` become one `-`, and the name is lowercased.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// A valid project name (PEP 508): ASCII letters and digits, with `.`, `_`, `-` inside.
pub fn valid_project_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// What kind of distribution a file name says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistKind {
    /// `*.whl`.
    Wheel,
    /// `*.tar.gz`.
    SdistTarGz,
    /// `*.zip`.
    SdistZip,
}

impl DistKind {
    /// The kind of `filename`, if it is a distribution at all.
    pub fn of(filename: &str) -> Option<(DistKind, &str)> {
        if let Some(stem) = filename.strip_suffix(".whl") {
            Some((DistKind::Wheel, stem))
        } else if let Some(stem) = filename.strip_suffix(".tar.gz") {
            Some((DistKind::SdistTarGz, stem))
        } else {
            filename
                .strip_suffix(".zip")
                .map(|stem| (DistKind::SdistZip, stem))
        }
    }
}

/// Name and version from a wheel file name: `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`.
pub fn parse_wheel_name(filename: &str) -> Result<(String, String), String> {
    let stem = filename
        .strip_suffix(".whl")
        .ok_or_else(|| "not a .whl file".to_string())?;
    let parts: Vec<&str> = stem.split('-').collect();
    let ok = match parts.len() {
        5 => true,
        // The optional build tag starts with a digit.
        6 => parts[2].starts_with(|c: char| c.is_ascii_digit()),
        _ => false,
    } && parts.iter().all(|p| !p.is_empty());
    if !ok {
        return Err(
            "not a wheel file name ({name}-{version}[-{build}]-{python}-{abi}-{platform}.whl)"
                .into(),
        );
    }
    if !valid_project_name(parts[0]) {
        return Err(format!("{:?} is not a valid project name", parts[0]));
    }
    Ok((parts[0].to_string(), parts[1].to_string()))
}

/// The fields of core metadata (METADATA, PKG-INFO) the index needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreMetadata {
    /// `Name`.
    pub name: Option<String>,
    /// `Version`.
    pub version: Option<String>,
    /// `Requires-Python`.
    pub requires_python: Option<String>,
    /// `Metadata-Version`.
    pub metadata_version: Option<String>,
    /// Every `Requires-Dist`, as written.
    pub requires_dist: Vec<String>,
    /// Every `Dynamic` field name, lowercased (an sdist's fields its build decides).
    pub dynamic: Vec<String>,
}

/// Read the header block of core metadata (RFC 822 style: `Key: value`, continuation lines indented, ended by
/// an empty line).
pub fn parse_core_metadata(bytes: &[u8]) -> CoreMetadata {
    let text = String::from_utf8_lossy(bytes);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |key: &str| {
        headers
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let all = |key: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    };
    CoreMetadata {
        name: get("name"),
        version: get("version"),
        requires_python: get("requires-python"),
        metadata_version: get("metadata-version"),
        requires_dist: all("requires-dist"),
        dynamic: all("dynamic")
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .collect(),
    }
}

/// One distribution as the index lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dist {
    /// The file name.
    pub filename: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// `Requires-Python`, if the metadata declares it.
    pub requires_python: Option<String>,
    /// Hex SHA-256 of the `.metadata` file served beside it (PEP 658), if any.
    pub metadata_sha256: Option<String>,
}

/// `simple/index.html`: every project, by normalised name.
pub fn root_html(projects: &[String]) -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta name=\"pypi:repository-version\" content=\"1.0\">\n\
         <title>Simple index</title>\n</head>\n<body>\n",
    );
    for p in projects {
        s.push_str(&format!(
            "<a href=\"{}/\">{}</a><br>\n",
            html_escape(&url_segment(p)),
            html_escape(p)
        ));
    }
    s.push_str("</body>\n</html>\n");
    s
}

/// `simple/index.json` (PEP 691).
pub fn root_json(projects: &[String]) -> Vec<u8> {
    let v = serde_json::json!({
        "meta": {"api-version": "1.0"},
        "projects": projects.iter().map(|p| serde_json::json!({"name": p})).collect::<Vec<_>>(),
    });
    let mut out = serde_json::to_vec(&v).expect("JSON of strings");
    out.push(b'\n');
    out
}

/// The relative URL of a distribution from its project page.
fn file_url(filename: &str) -> String {
    format!("../../packages/{}", url_segment(filename))
}

/// `simple/<project>/index.html` (PEP 503, with PEP 658/714 metadata attributes).
pub fn project_html(project: &str, files: &[Dist]) -> String {
    let title = html_escape(project);
    let mut s = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta name=\"pypi:repository-version\" content=\"1.0\">\n\
         <title>Links for {title}</title>\n</head>\n<body>\n<h1>Links for {title}</h1>\n"
    );
    for d in files {
        let href = format!("{}#sha256={}", file_url(&d.filename), d.sha256);
        s.push_str(&format!("<a href=\"{}\"", html_escape(&href)));
        if let Some(rp) = &d.requires_python {
            s.push_str(&format!(" data-requires-python=\"{}\"", html_escape(rp)));
        }
        if let Some(m) = &d.metadata_sha256 {
            s.push_str(&format!(
                " data-dist-info-metadata=\"sha256={m}\" data-core-metadata=\"sha256={m}\""
            ));
        }
        s.push_str(&format!(">{}</a><br>\n", html_escape(&d.filename)));
    }
    s.push_str("</body>\n</html>\n");
    s
}

/// `simple/<project>/index.json` (PEP 691, with PEP 658/714 metadata keys).
pub fn project_json(project: &str, files: &[Dist]) -> Vec<u8> {
    let files: Vec<serde_json::Value> = files
        .iter()
        .map(|d| {
            let mut f = serde_json::Map::new();
            f.insert("filename".into(), d.filename.clone().into());
            f.insert("url".into(), file_url(&d.filename).into());
            f.insert("hashes".into(), serde_json::json!({"sha256": d.sha256}));
            if let Some(rp) = &d.requires_python {
                f.insert("requires-python".into(), rp.clone().into());
            }
            if let Some(m) = &d.metadata_sha256 {
                f.insert("core-metadata".into(), serde_json::json!({"sha256": m}));
                f.insert(
                    "dist-info-metadata".into(),
                    serde_json::json!({"sha256": m}),
                );
            }
            serde_json::Value::Object(f)
        })
        .collect();
    let v = serde_json::json!({
        "meta": {"api-version": "1.0"},
        "name": project,
        "files": files,
    });
    let mut out = serde_json::to_vec(&v).expect("JSON of strings");
    out.push(b'\n');
    out
}

fn malformed(path: &Path, reason: impl std::fmt::Display) -> IngestError {
    IngestError::Malformed {
        what: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The names in a zip archive.
fn zip_names<R: std::io::Read + std::io::Seek>(
    zip: &zip::ZipArchive<R>,
    path: &Path,
) -> Result<Vec<String>, IngestError> {
    zip.file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| malformed(path, format!("zip archive: {e}")))
}

/// The bytes of the wheel's `*.dist-info/METADATA` (the one at the top of the archive).
fn wheel_metadata(path: &Path, name: &str, version: &str) -> Result<Vec<u8>, IngestError> {
    let f = std::fs::File::open(path).map_err(IngestError::io(path))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
        .map_err(|e| malformed(path, format!("not a zip archive: {e}")))?;
    let candidates: Vec<String> = zip_names(&zip, path)?
        .into_iter()
        .filter(|n| {
            n.strip_suffix(".dist-info/METADATA")
                .is_some_and(|dir| !dir.is_empty() && !dir.contains('/'))
        })
        .collect();
    // The spec names it {name}-{version}.dist-info; if a wheel carries several, take that one.
    let chosen = match candidates.as_slice() {
        [] => return Err(malformed(path, "the wheel has no *.dist-info/METADATA")),
        [one] => one.clone(),
        many => {
            let want = normalize(&format!("{name}-{version}"));
            many.iter()
                .find(|n| normalize(n.trim_end_matches(".dist-info/METADATA")) == want)
                .cloned()
                .ok_or_else(|| {
                    malformed(
                        path,
                        format!(
                            "several *.dist-info/METADATA and none for {name}-{version}: {many:?}"
                        ),
                    )
                })?
        }
    };
    let entry = zip
        .by_name(&chosen)
        .map_err(|e| malformed(path, format!("{chosen}: {e}")))?;
    read_capped(
        entry,
        METADATA_CAP,
        &format!("{}: {chosen}", path.display()),
    )
}

/// Is `path` (inside an sdist) the top-level `PKG-INFO`, i.e. `{dir}/PKG-INFO`?
fn is_top_pkg_info(path: &str) -> bool {
    let mut parts = path.trim_start_matches("./").split('/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(d), Some("PKG-INFO"), None) if !d.is_empty()
    )
}

/// The bytes of the sdist's top-level `PKG-INFO`, if it has one.
fn sdist_metadata(path: &Path, kind: DistKind) -> Result<Option<Vec<u8>>, IngestError> {
    let f = std::fs::File::open(path).map_err(IngestError::io(path))?;
    let what = format!("{}: PKG-INFO", path.display());
    match kind {
        DistKind::SdistTarGz => {
            let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
            let mut tar = tar::Archive::new(gz);
            let entries = tar
                .entries()
                .map_err(|e| malformed(path, format!("not a gzip tar archive: {e}")))?;
            for e in entries {
                let e = e.map_err(|e| malformed(path, format!("not a gzip tar archive: {e}")))?;
                let name = e
                    .path()
                    .map_err(|e| malformed(path, e))?
                    .to_string_lossy()
                    .into_owned();
                if is_top_pkg_info(&name) {
                    return read_capped(e, METADATA_CAP, &what).map(Some);
                }
            }
            Ok(None)
        }
        DistKind::SdistZip => {
            let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
                .map_err(|e| malformed(path, format!("not a zip archive: {e}")))?;
            let Some(name) = zip_names(&zip, path)?
                .into_iter()
                .find(|n| is_top_pkg_info(n))
            else {
                return Ok(None);
            };
            let entry = zip.by_name(&name).map_err(|e| malformed(path, e))?;
            read_capped(entry, METADATA_CAP, &what).map(Some)
        }
        DistKind::Wheel => unreachable!("wheels are read by wheel_metadata"),
    }
}

/// One distribution found in DIR, before it is stored.
pub(crate) struct Found {
    pub(crate) filename: String,
    pub(crate) path: std::path::PathBuf,
    pub(crate) project: String,
    /// The core metadata read (the wheel's METADATA, the sdist's PKG-INFO; default when it has none).
    pub(crate) core: CoreMetadata,
    pub(crate) requires_python: Option<String>,
    /// The wheel's METADATA, served as `<file>.metadata`.
    pub(crate) metadata: Option<Vec<u8>>,
}

pub(crate) fn inspect(filename: &str, path: &Path) -> Result<Found, IngestError> {
    let (kind, stem) = DistKind::of(filename).ok_or_else(|| IngestError::BadSource {
        source_text: path.display().to_string(),
        reason: "not a Python distribution: pypi: takes *.whl, *.tar.gz and *.zip".into(),
    })?;
    match kind {
        DistKind::Wheel => {
            let (name, version) = parse_wheel_name(filename).map_err(|r| malformed(path, r))?;
            let bytes = wheel_metadata(path, &name, &version)?;
            let meta = parse_core_metadata(&bytes);
            Ok(Found {
                filename: filename.to_string(),
                path: path.to_path_buf(),
                project: normalize(&name),
                requires_python: meta.requires_python.clone(),
                core: meta,
                metadata: Some(bytes),
            })
        }
        DistKind::SdistTarGz | DistKind::SdistZip => {
            let meta = sdist_metadata(path, kind)?
                .map(|b| parse_core_metadata(&b))
                .unwrap_or_default();
            // The project is the metadata's Name; without PKG-INFO, what precedes the last '-'.
            let name = match &meta.name {
                Some(n) => n.clone(),
                None => match stem.rsplit_once('-') {
                    Some((n, v)) if !n.is_empty() && !v.is_empty() => n.to_string(),
                    _ => return Err(malformed(
                        path,
                        "not an sdist file name ({name}-{version}.tar.gz) and no PKG-INFO names it",
                    )),
                },
            };
            if !valid_project_name(&name) {
                return Err(malformed(
                    path,
                    format!("{name:?} is not a valid project name"),
                ));
            }
            let project = normalize(&name);
            // pip finds the version by stripping the project name from the file name: it must be there.
            if !normalize(stem).starts_with(&format!("{project}-")) {
                return Err(malformed(
                    path,
                    format!("the file name does not begin with its project name {name:?}, so pip would not find it"),
                ));
            }
            Ok(Found {
                filename: filename.to_string(),
                path: path.to_path_buf(),
                project,
                requires_python: meta.requires_python.clone(),
                core: meta,
                metadata: None,
            })
        }
    }
}

/// Store `found` and the simple index over them.
pub(crate) fn write_index(
    w: &mut TreeWriter<'_, '_>,
    found: Vec<Found>,
) -> Result<(), IngestError> {
    let mut projects: BTreeMap<String, Vec<Dist>> = BTreeMap::new();
    for f in found {
        let blob = w.copy_file(&format!("packages/{}", f.filename), &f.path)?;
        let metadata_sha256 = match &f.metadata {
            Some(bytes) => {
                w.put_bytes(&format!("packages/{}.metadata", f.filename), bytes)?;
                Some(pkgtree::sha256_hex(bytes))
            }
            None => None,
        };
        projects.entry(f.project).or_default().push(Dist {
            filename: f.filename,
            sha256: blob.sha256.hex(),
            requires_python: f.requires_python,
            metadata_sha256,
        });
    }
    let names: Vec<String> = projects.keys().cloned().collect();
    w.put_bytes("simple/index.html", root_html(&names).as_bytes())?;
    w.put_bytes("simple/index.json", &root_json(&names))?;
    for (project, dists) in &projects {
        w.put_bytes(
            &format!("simple/{project}/index.html"),
            project_html(project, dists).as_bytes(),
        )?;
        w.put_bytes(
            &format!("simple/{project}/index.json"),
            &project_json(project, dists),
        )?;
    }
    Ok(())
}

/// Store DIR's distributions and the generated index under the prefix (or, for a partial mirror, those the
/// requirements resolve to: [`partial`]).
pub fn ingest(
    ctx: &Context<'_>,
    src: &PypiSource,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    if let Some(p) = &src.partial {
        return partial::ingest(ctx, src, p, entries, stats);
    }
    let src = &src.repo;
    if src.dir.to_string_lossy().contains("://") {
        return Err(IngestError::BadSource {
            source_text: src.describe("pypi"),
            reason: "a remote index is read for a partial mirror (requirements=PATH); a whole mirror is a directory of distributions".into(),
        });
    }
    let files = list_files(&src.dir, "pypi")?;
    // Read every file's metadata first: a bad file is refused before anything is stored.
    let found: Vec<Found> = files
        .iter()
        .map(|(name, path)| inspect(name, path))
        .collect::<Result<_, _>>()?;
    if found.is_empty() {
        return Err(IngestError::BadSource {
            source_text: src.describe("pypi"),
            reason: "no wheels or sdists in the directory".into(),
        });
    }
    let mut w = TreeWriter::new(ctx, &src.into, stats);
    write_index(&mut w, found)?;
    entries.extend(w.finish());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_as_pep_503_says() {
        for (name, want) in [
            ("six", "six"),
            ("typing_extensions", "typing-extensions"),
            ("Friendly-Bard", "friendly-bard"),
            ("FRIENDLY-BARD", "friendly-bard"),
            ("friendly.bard", "friendly-bard"),
            ("friendly_bard", "friendly-bard"),
            ("friendly--bard", "friendly-bard"),
            ("FrIeNdLy-._.-bArD", "friendly-bard"),
            ("zope.interface", "zope-interface"),
        ] {
            assert_eq!(normalize(name), want, "{name}");
        }
        assert!(valid_project_name("zope.interface"));
        for bad in ["", "-x", "x-", "a b", "a/b", "<x>", "..", "é"] {
            assert!(!valid_project_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn wheel_names_parse() {
        assert_eq!(
            parse_wheel_name("six-1.16.0-py2.py3-none-any.whl").unwrap(),
            ("six".into(), "1.16.0".into())
        );
        assert_eq!(
            parse_wheel_name("typing_extensions-4.12.2-py3-none-any.whl").unwrap(),
            ("typing_extensions".into(), "4.12.2".into())
        );
        assert_eq!(
            parse_wheel_name("torch-2.0.0+cpu-1build-cp311-cp311-linux_x86_64.whl").unwrap(),
            ("torch".into(), "2.0.0+cpu".into())
        );
        for bad in [
            "six-1.16.0.whl",
            "six-1.16.0-py3-none.whl",
            "six-1.16.0-build-py3-none-any.whl",
            "six-1.16.0-1-2-py3-none-any.whl",
            "six--py3-none-any.whl",
            "<b>-1.0-py3-none-any.whl",
            "six-1.16.0-py3-none-any.tar.gz",
        ] {
            assert!(parse_wheel_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn core_metadata_headers() {
        let m = parse_core_metadata(
            b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\nSummary: Python 2 and 3\n  compatibility\n\
              requires-python: >=2.7, !=3.0.*\n\nRequires-Python: <1 (in the body, ignored)\n",
        );
        assert_eq!(m.name.as_deref(), Some("six"));
        assert_eq!(m.version.as_deref(), Some("1.16.0"));
        assert_eq!(m.requires_python.as_deref(), Some(">=2.7, !=3.0.*"));
        assert_eq!(
            parse_core_metadata(b"Name: x\r\n\r\n").name.as_deref(),
            Some("x")
        );
        assert_eq!(parse_core_metadata(b"").requires_python, None);
    }

    #[test]
    fn top_pkg_info_only() {
        assert!(is_top_pkg_info("six-1.16.0/PKG-INFO"));
        assert!(is_top_pkg_info("./six-1.16.0/PKG-INFO"));
        assert!(!is_top_pkg_info("six-1.16.0/six.egg-info/PKG-INFO"));
        assert!(!is_top_pkg_info("PKG-INFO"));
    }

    fn dist(filename: &str, rp: Option<&str>, meta: Option<&str>) -> Dist {
        Dist {
            filename: filename.into(),
            sha256: "ab".repeat(32),
            requires_python: rp.map(str::to_string),
            metadata_sha256: meta.map(str::to_string),
        }
    }

    #[test]
    fn project_page_links_hashes_and_escapes() {
        let files = [
            dist(
                "six-1.16.0-py2.py3-none-any.whl",
                Some(">=2.7, !=3.0.*, <4"),
                Some(&"cd".repeat(32)),
            ),
            dist("x-1.0+local\"><script>.tar.gz", None, None),
        ];
        let html = project_html("six", &files);
        assert!(html.contains(&format!(
            "<a href=\"../../packages/six-1.16.0-py2.py3-none-any.whl#sha256={}\" \
             data-requires-python=\"&gt;=2.7, !=3.0.*, &lt;4\" data-dist-info-metadata=\"sha256={m}\" \
             data-core-metadata=\"sha256={m}\">six-1.16.0-py2.py3-none-any.whl</a><br>",
            "ab".repeat(32),
            m = "cd".repeat(32)
        )), "{html}");
        // A hostile file name is percent-encoded in the link and escaped in the text: no markup gets through.
        assert!(
            html.contains("href=\"../../packages/x-1.0%2Blocal%22%3E%3Cscript%3E.tar.gz#sha256="),
            "{html}"
        );
        assert!(
            html.contains(">x-1.0+local&quot;&gt;&lt;script&gt;.tar.gz</a>"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("<meta name=\"pypi:repository-version\" content=\"1.0\">"));

        let json: serde_json::Value = serde_json::from_slice(&project_json("six", &files)).unwrap();
        assert_eq!(json["meta"]["api-version"], "1.0");
        assert_eq!(json["name"], "six");
        let f0 = &json["files"][0];
        assert_eq!(f0["filename"], "six-1.16.0-py2.py3-none-any.whl");
        assert_eq!(f0["url"], "../../packages/six-1.16.0-py2.py3-none-any.whl");
        assert_eq!(f0["hashes"]["sha256"], "ab".repeat(32));
        assert_eq!(f0["requires-python"], ">=2.7, !=3.0.*, <4");
        assert_eq!(f0["core-metadata"]["sha256"], "cd".repeat(32));
        assert_eq!(f0["dist-info-metadata"]["sha256"], "cd".repeat(32));
        let f1 = &json["files"][1];
        assert_eq!(f1["filename"], "x-1.0+local\"><script>.tar.gz");
        assert!(
            f1.get("requires-python").is_none() && f1.get("core-metadata").is_none(),
            "{f1}"
        );
        // Deterministic: the same input, the same bytes.
        assert_eq!(project_html("six", &files), html);
    }

    #[test]
    fn root_lists_projects() {
        let names = vec!["six".to_string(), "typing-extensions".to_string()];
        let html = root_html(&names);
        assert!(html.contains("<a href=\"six/\">six</a><br>\n<a href=\"typing-extensions/\">typing-extensions</a>"), "{html}");
        let json: serde_json::Value = serde_json::from_slice(&root_json(&names)).unwrap();
        assert_eq!(json["meta"]["api-version"], "1.0");
        assert_eq!(json["projects"][1]["name"], "typing-extensions");
    }
}
