//! Partial PyPI mirrors: `pypi:DIR?requirements=PATH&python=3.11&platform=manylinux_2_28_x86_64` carries only the
//! distributions the requirements resolve to ([`super::resolve`]) for that interpreter and platform — one file per
//! project — as the same simple repository a whole `pypi:` source makes, with `ferry-closure.json` saying why each
//! is there.
//!
//! Every file of DIR is read first (a file that is not a distribution is refused, as for a whole mirror); its
//! requirements come from the wheel's METADATA or the sdist's PKG-INFO. An sdist whose metadata leaves its
//! requirements to the build (`Dynamic: Requires-Dist`, or metadata older than 2.2 that lists none) is carried
//! and named in the report: what it needs is not known until it is built.

use super::resolve::{self, Candidate, Reason, Target};
use super::{inspect, parse_wheel_name, write_index, PypiSource};
use crate::ingest::image::Context;
use crate::ingest::partial::{Report, ReportOptions, ReportPackage, CLOSURE_FILE};
use crate::ingest::pkgtree::{list_files, TreeWriter};
use crate::ingest::IngestError;
use crate::store::WriteStats;
use ferry_protocol::Entry;
use pep508_rs::pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::Requirement;
use std::path::PathBuf;
use std::str::FromStr;

/// What a partial PyPI mirror resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partial {
    /// The requirements file.
    pub requirements: PathBuf,
    /// `python=` (default `3.11`).
    pub python: String,
    /// `platform=` (default `manylinux_2_28_x86_64`).
    pub platform: String,
    /// `allow-missing=yes`.
    pub allow_missing: bool,
}

impl Default for Partial {
    fn default() -> Partial {
        Partial {
            requirements: PathBuf::new(),
            python: "3.11".into(),
            platform: "manylinux_2_28_x86_64".into(),
            allow_missing: false,
        }
    }
}

/// The distributions of DIR as candidates, with the files read.
fn candidates(src: &PypiSource) -> Result<(Vec<super::Found>, Vec<Candidate>), IngestError> {
    let files = list_files(&src.repo.dir, "pypi")?;
    let found: Vec<super::Found> = files
        .iter()
        .map(|(name, path)| inspect(name, path))
        .collect::<Result<_, _>>()?;
    let mut cands = Vec::with_capacity(found.len());
    for f in &found {
        let bad = |reason: String| IngestError::Malformed {
            what: f.path.display().to_string(),
            reason,
        };
        let wheel = f.filename.ends_with(".whl");
        let version_text = if wheel {
            parse_wheel_name(&f.filename).map_err(&bad)?.1
        } else {
            f.core
                .version
                .clone()
                .or_else(|| {
                    let stem = f
                        .filename
                        .trim_end_matches(".tar.gz")
                        .trim_end_matches(".zip");
                    stem.rsplit_once('-').map(|(_, v)| v.to_string())
                })
                .ok_or_else(|| bad("no version in PKG-INFO or the file name".into()))?
        };
        let version = Version::from_str(&version_text)
            .map_err(|e| bad(format!("version {version_text:?}: {e}")))?;
        let requires_python = match &f.core.requires_python {
            Some(s) => Some(
                VersionSpecifiers::from_str(s)
                    .map_err(|e| bad(format!("Requires-Python {s:?}: {e}")))?,
            ),
            None => None,
        };
        let requires_dist = requires_of(&f.core, wheel).map_err(&bad)?;
        cands.push(Candidate {
            project: f.project.clone(),
            version,
            filename: f.filename.clone(),
            wheel,
            requires_python,
            requires_dist,
            yanked: false,
        });
    }
    Ok((found, cands))
}

/// DIR's distributions, the requests, and what they resolve to.
struct Resolved {
    found: Vec<super::Found>,
    cands: Vec<Candidate>,
    requests: Vec<Requirement>,
    resolution: resolve::Resolution,
}

impl Resolved {
    /// The chosen distributions as the report lists them, with their sizes.
    fn packages(&self) -> Vec<ReportPackage> {
        let mut packages = report_packages(&self.cands, &self.resolution);
        for pkg in &mut packages {
            if let Some(f) = self
                .found
                .iter()
                .find(|f| format!("packages/{}", f.filename) == pkg.filename)
            {
                pkg.size = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
            }
        }
        packages
    }
}

/// The requirements a distribution's core metadata gives; `None` when they are not known before it is built (an
/// sdist with `Dynamic: Requires-Dist`, or metadata older than 2.2 that lists none).
fn requires_of(
    core: &super::CoreMetadata,
    wheel: bool,
) -> Result<Option<Vec<Requirement>>, String> {
    let listed = core
        .requires_dist
        .iter()
        .map(|r| Requirement::from_str(r).map_err(|e| format!("Requires-Dist {r:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let modern = core
        .metadata_version
        .as_deref()
        .and_then(|v| Version::from_str(v).ok())
        .is_some_and(|v| v >= Version::new([2, 2]));
    let known = wheel
        || (!core.dynamic.iter().any(|d| d == "requires-dist") && (modern || !listed.is_empty()));
    Ok(known.then_some(listed))
}

/// The URL of a source that names a remote index.
fn remote_url(src: &PypiSource) -> Option<&str> {
    src.repo
        .dir
        .to_str()
        .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
}

/// How many rounds of fetching pages and metadata a remote resolution may take.
const MAX_ROUNDS: usize = 1000;

/// Resolve over a remote index: fetch the pages of the projects the requirements reach and the metadata of what
/// the resolution takes, round after round, until a round needs nothing new. Distributions read whole for their
/// metadata (an index without PEP 658 for them) are left in `spool`.
fn resolve_remote(
    url: &str,
    p: &Partial,
    requests: Vec<Requirement>,
    target: &Target,
    spool: &std::path::Path,
) -> Result<Resolved, IngestError> {
    let remote = super::remote::Remote::new(url)?;
    let mut cands: Vec<Candidate> = Vec::new();
    let mut files: Vec<super::remote::RemoteFile> = Vec::new();
    let mut fetched = std::collections::HashSet::new();
    let mut loaded = std::collections::HashSet::new();
    let mut found: Vec<super::Found> = Vec::new();
    let mut want: Vec<String> = requests.iter().map(|r| r.name.to_string()).collect();
    let fail = |e: resolve::ResolveError| IngestError::Malformed {
        what: format!("pypi:{url}"),
        reason: format!(
            "the requirements of {} cannot be met for Python {} on {}: {e}",
            p.requirements.display(),
            target.python,
            target.platform
        ),
    };
    for _ in 0..MAX_ROUNDS {
        for name in std::mem::take(&mut want) {
            if fetched.insert(name.clone()) {
                for (c, f) in remote.project(&name)?.unwrap_or_default() {
                    cands.push(c);
                    files.push(f);
                }
            }
        }
        let r = resolve::resolve(&cands, &requests, target, true).map_err(fail)?;
        let mut progress = false;
        for (i, ..) in &r.chosen {
            let i = *i;
            if loaded.insert(i) {
                progress = true;
                let name = cands[i].filename.clone();
                let core = match files[i].metadata {
                    Some(_) => super::parse_core_metadata(&remote.metadata(&files[i])?),
                    None => {
                        let path = remote.download(&files[i], &name, spool)?;
                        let f = inspect(&name, &path)?;
                        let core = f.core.clone();
                        found.push(f);
                        core
                    }
                };
                cands[i].requires_dist = requires_of(&core, cands[i].wheel).map_err(|reason| {
                    IngestError::Malformed {
                        what: files[i].url.to_string(),
                        reason,
                    }
                })?;
            }
            for q in cands[i].requires_dist.iter().flatten() {
                let n = q.name.to_string();
                if !fetched.contains(&n) {
                    want.push(n);
                    progress = true;
                }
            }
        }
        if !progress {
            let resolution =
                resolve::resolve(&cands, &requests, target, p.allow_missing).map_err(fail)?;
            let chosen: std::collections::HashSet<usize> =
                resolution.chosen.iter().map(|(i, ..)| *i).collect();
            // The chosen files, checked against their pages as they stream to the spool.
            for &i in &chosen {
                let name = &cands[i].filename;
                if !found.iter().any(|f| &f.filename == name) {
                    let path = remote.download(&files[i], name, spool)?;
                    found.push(inspect(name, &path)?);
                }
            }
            return Ok(Resolved {
                found,
                cands,
                requests,
                resolution,
            });
        }
    }
    Err(IngestError::Malformed {
        what: format!("pypi:{url}"),
        reason: format!("the resolution did not settle in {MAX_ROUNDS} rounds of fetching"),
    })
}

/// Resolve the requirements over DIR, refusing with what cannot be met.
fn resolve_source(
    src: &PypiSource,
    p: &Partial,
    spool: &std::path::Path,
) -> Result<Resolved, IngestError> {
    let describe = || format!("pypi:{}", src.repo.dir.display());
    let text = std::fs::read_to_string(&p.requirements).map_err(|source| IngestError::Io {
        path: p.requirements.display().to_string(),
        source,
    })?;
    let requests = resolve::parse_requirements(&text).map_err(|e| IngestError::BadSource {
        source_text: describe(),
        reason: format!("requirements {}: {e}", p.requirements.display()),
    })?;
    if requests.is_empty() {
        return Err(IngestError::BadSource {
            source_text: describe(),
            reason: format!("requirements {} names nothing", p.requirements.display()),
        });
    }
    let target = Target::new(&p.python, &p.platform).map_err(|reason| IngestError::BadSource {
        source_text: describe(),
        reason,
    })?;
    if let Some(url) = remote_url(src) {
        return resolve_remote(url, p, requests, &target, spool);
    }
    let (found, cands) = candidates(src)?;
    let resolution =
        resolve::resolve(&cands, &requests, &target, p.allow_missing).map_err(|e| {
            IngestError::Malformed {
                what: describe(),
                reason: format!(
                    "the requirements of {} cannot be met for Python {} on {}: {e}",
                    p.requirements.display(),
                    target.python,
                    target.platform
                ),
            }
        })?;
    Ok(Resolved {
        found,
        cands,
        requests,
        resolution,
    })
}

fn report_packages(cands: &[Candidate], r: &resolve::Resolution) -> Vec<ReportPackage> {
    r.chosen
        .iter()
        .map(|(i, why, extras)| {
            let c = &cands[*i];
            let (reason, of, relation) = match why {
                Reason::Requested(t) => ("requested".to_string(), None, Some(t.clone())),
                Reason::Dependency { of, relation } => (
                    "Requires-Dist".to_string(),
                    Some(report_describe(&cands[r.chosen[*of].0])),
                    Some(relation.clone()),
                ),
            };
            let mut package = c.project.clone();
            if !extras.is_empty() {
                let e: Vec<&str> = extras.iter().map(String::as_str).collect();
                package = format!("{package}[{}]", e.join(","));
            }
            ReportPackage {
                package: c.project.clone(),
                version: c.version.to_string(),
                architecture: tag_of(c),
                suite: String::new(),
                index: if extras.is_empty() {
                    String::new()
                } else {
                    package
                },
                filename: format!("packages/{}", c.filename),
                size: 0,
                reason,
                of,
                relation,
            }
        })
        .collect()
}

/// What a distribution is built for: the wheel's tags, or `sdist`.
fn tag_of(c: &Candidate) -> String {
    if !c.wheel {
        return "sdist".into();
    }
    let stem = c.filename.trim_end_matches(".whl");
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    match parts.as_slice() {
        [plat, abi, py, _] => format!("{py}-{abi}-{plat}"),
        _ => "wheel".into(),
    }
}

fn report_describe(c: &Candidate) -> String {
    format!("{} {} ({})", c.project, c.version, tag_of(c))
}

/// `ferry add --plan` of a partial PyPI mirror: the resolution, nothing stored.
pub fn plan(src: &PypiSource) -> Result<crate::ingest::partial::Plan, IngestError> {
    let p = src.partial.as_ref().ok_or_else(|| IngestError::BadSource {
        source_text: format!("pypi:{}", src.repo.dir.display()),
        reason: "not a partial mirror: name its requirements=".into(),
    })?;
    let spool = tempfile::tempdir().map_err(|e| IngestError::Io {
        path: std::env::temp_dir().display().to_string(),
        source: e,
    })?;
    let resolved = resolve_source(src, p, spool.path())?;
    let packages = resolved.packages();
    Ok(crate::ingest::partial::Plan {
        source: format!("pypi:{}", src.repo.dir.display()),
        requests: resolved.requests.iter().map(|r| r.to_string()).collect(),
        bytes: packages.iter().map(|p| p.size).sum(),
        packages,
        missing: resolved.resolution.missing.clone(),
        unmet_recommends: Vec::new(),
    })
}

/// Resolve, then store the chosen distributions, their index and the report.
pub(super) fn ingest(
    ctx: &Context<'_>,
    src: &PypiSource,
    p: &Partial,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    // Distributions fetched from a remote index wait here until they are stored.
    let tmp = ctx.store.root().join("tmp");
    let spool = std::fs::create_dir_all(&tmp)
        .and_then(|()| {
            tempfile::Builder::new()
                .prefix("pypi-partial-")
                .tempdir_in(&tmp)
        })
        .map_err(IngestError::io(&tmp))?;
    let resolved = resolve_source(src, p, spool.path())?;
    let packages = resolved.packages();
    let Resolved {
        found,
        cands,
        requests,
        resolution: r,
    } = resolved;
    let chosen: std::collections::HashSet<&str> = r
        .chosen
        .iter()
        .map(|(i, ..)| cands[*i].filename.as_str())
        .collect();
    let kept: Vec<super::Found> = found
        .into_iter()
        .filter(|f| chosen.contains(f.filename.as_str()))
        .collect();
    let mut w = TreeWriter::new(ctx, &src.repo.into, stats);
    write_index(&mut w, kept)?;
    let report = Report {
        format: "pypi".into(),
        requests: requests.iter().map(|r| r.to_string()).collect(),
        options: ReportOptions {
            architecture: format!("python {} on {}", p.python, p.platform),
            recommends: false,
            alternatives: String::new(),
            essential: false,
            allow_missing: p.allow_missing,
        },
        signed_by: String::new(),
        upstream_signers: Default::default(),
        packages,
        missing: r.missing.clone(),
        unmet_recommends: r
            .unknown_requirements
            .iter()
            .map(|f| crate::ingest::partial::ReportMissing {
                relation: "its requirements (dynamic: known only once built)".into(),
                needed_by: f.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&report).expect("the report serializes");
    w.put_bytes(CLOSURE_FILE, &json)?;
    entries.extend(w.finish());
    Ok(())
}
