//! Resolving Python requirements (PEP 508) over a set of distributions for one target interpreter and
//! platform, as pip would install them into a fresh environment: pure — candidates and requirements go in, the
//! chosen distribution of each project with the reason comes out.
//!
//! Markers are evaluated for the target (`python=3.11`, `platform=manylinux_2_28_x86_64`: CPython on that
//! platform), extras are followed (`requests[socks]` enables the requirements marked `extra == "socks"`), and
//! each project gets the newest version (PEP 440 order; pre-releases only when a specifier names one) that meets
//! every requirement on it and has a distribution the target can use: a wheel whose tags it supports (the best
//! ranked, as pip ranks them), else an sdist. Both must admit the target Python (`Requires-Python`). When a
//! later requirement rules out the version taken, the requirement is learned and the resolution starts again.

use pep508_rs::pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{
    ExtraName, MarkerEnvironment, MarkerEnvironmentBuilder, Requirement, VersionOrUrl,
};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;

/// The interpreter and platform a resolution is for.
pub struct Target {
    /// `3.11`.
    pub python: String,
    /// The full version markers compare (`3.11.0` for `3.11`).
    python_full: Version,
    /// The platform tag asked for (`manylinux_2_28_x86_64`).
    pub platform: String,
    env: MarkerEnvironment,
    /// Every wheel tag the target supports, best first.
    tags: HashMap<String, usize>,
}

impl Target {
    /// The target for `python` (`3.11` or `3.11.7`) on `platform` (a wheel platform tag: `manylinux_2_28_x86_64`,
    /// `musllinux_1_2_aarch64`, `linux_x86_64`, `win_amd64`, `macosx_11_0_arm64`).
    pub fn new(python: &str, platform: &str) -> Result<Target, String> {
        let parts: Vec<&str> = python.split('.').collect();
        let nums: Vec<u64> = parts
            .iter()
            .map(|p| p.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("python={python}: say e.g. python=3.11"))?;
        let (major, minor) = match nums.as_slice() {
            [3, minor] | [3, minor, _] => (3u64, *minor),
            _ => {
                return Err(format!(
                    "python={python}: say e.g. python=3.11 (Python 3 only)"
                ))
            }
        };
        let full = match nums.as_slice() {
            [_, _, patch] => format!("{major}.{minor}.{patch}"),
            _ => format!("{major}.{minor}.0"),
        };
        let (sys_platform, os_name, system, machine) = platform_env(platform)?;
        let short = format!("{major}.{minor}");
        let env = MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
            implementation_name: "cpython",
            implementation_version: &full,
            os_name,
            platform_machine: &machine,
            platform_python_implementation: "CPython",
            platform_release: "",
            platform_system: system,
            platform_version: "",
            python_full_version: &full,
            python_version: &short,
            sys_platform,
        })
        .map_err(|e| format!("python={python}: {e}"))?;
        let mut tags = HashMap::new();
        for (i, t) in supported_tags(minor, &platforms(platform))
            .into_iter()
            .enumerate()
        {
            tags.entry(t).or_insert(i);
        }
        Ok(Target {
            python: short,
            python_full: Version::from_str(&full).map_err(|e| e.to_string())?,
            platform: platform.to_string(),
            env,
            tags,
        })
    }

    /// The rank of a wheel (lower is better) by its file name, or `None` when the target cannot install it.
    pub fn wheel_rank(&self, filename: &str) -> Option<usize> {
        let stem = filename.strip_suffix(".whl")?;
        let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
        let [plat, abi, py, _] = parts.as_slice() else {
            return None;
        };
        let mut best = None;
        for p in py.split('.') {
            for a in abi.split('.') {
                for pl in plat.split('.') {
                    if let Some(&r) = self.tags.get(&format!("{p}-{a}-{pl}")) {
                        best = Some(best.map_or(r, |b: usize| b.min(r)));
                    }
                }
            }
        }
        best
    }

    /// Whether `Requires-Python` admits the target.
    pub fn admits(&self, requires_python: Option<&VersionSpecifiers>) -> bool {
        requires_python.is_none_or(|s| s.contains(&self.python_full))
    }
}

/// `sys_platform`, `os_name`, `platform_system` and `platform_machine` for a platform tag.
fn platform_env(
    platform: &str,
) -> Result<(&'static str, &'static str, &'static str, String), String> {
    let arch_of = |rest: &str| -> String {
        // manylinux_2_28_x86_64 → x86_64; win_amd64 → AMD64; macosx_11_0_arm64 → arm64
        let known = [
            "x86_64",
            "aarch64",
            "i686",
            "ppc64le",
            "s390x",
            "armv7l",
            "arm64",
            "universal2",
            "amd64",
            "arm64",
            "win32",
        ];
        known
            .iter()
            .find(|k| rest.ends_with(*k))
            .map(|k| k.to_string())
            .unwrap_or_default()
    };
    if platform.starts_with("manylinux")
        || platform.starts_with("musllinux")
        || platform.starts_with("linux_")
    {
        Ok(("linux", "posix", "Linux", arch_of(platform)))
    } else if platform.starts_with("macosx_") {
        Ok(("darwin", "posix", "Darwin", arch_of(platform)))
    } else if platform == "win_amd64" {
        Ok(("win32", "nt", "Windows", "AMD64".into()))
    } else if platform == "win_arm64" {
        Ok(("win32", "nt", "Windows", "ARM64".into()))
    } else if platform == "win32" {
        Ok(("win32", "nt", "Windows", "x86".into()))
    } else {
        Err(format!(
            "platform={platform}: not a wheel platform tag (manylinux_2_28_x86_64, musllinux_1_2_x86_64, linux_x86_64, \
             macosx_11_0_arm64, win_amd64)"
        ))
    }
}

/// The platform tags a platform accepts, best first: a glibc manylinux tag accepts every older glibc (and the
/// legacy aliases manylinux2014/2010/1), a musl one every older musl, and both plain `linux_ARCH` last.
fn platforms(platform: &str) -> Vec<String> {
    let mut out = vec![platform.to_string()];
    let many = platform
        .strip_prefix("manylinux_")
        .map(|r| ("manylinux", r));
    let musl = platform
        .strip_prefix("musllinux_")
        .map(|r| ("musllinux", r));
    if let Some((kind, rest)) = many.or(musl) {
        let mut it = rest.splitn(3, '_');
        if let (Some(maj), Some(min), Some(arch)) = (it.next(), it.next(), it.next()) {
            if let (Ok(maj), Ok(min)) = (maj.parse::<u32>(), min.parse::<u32>()) {
                out.clear();
                for m in (0..=min).rev() {
                    out.push(format!("{kind}_{maj}_{m}_{arch}"));
                    if kind == "manylinux" && maj == 2 {
                        let legacy = match m {
                            17 => Some("manylinux2014"),
                            12 => Some("manylinux2010"),
                            5 => Some("manylinux1"),
                            _ => None,
                        };
                        if let Some(l) = legacy {
                            out.push(format!("{l}_{arch}"));
                        }
                    }
                }
                out.push(format!("linux_{arch}"));
            }
        }
    }
    out
}

/// The tags CPython 3.`minor` supports on `platforms`, in pip's order of preference.
fn supported_tags(minor: u64, platforms: &[String]) -> Vec<String> {
    let cp = format!("cp3{minor}");
    let mut out = Vec::new();
    for p in platforms {
        out.push(format!("{cp}-{cp}-{p}"));
        out.push(format!("{cp}-abi3-{p}"));
        out.push(format!("{cp}-none-{p}"));
    }
    for m in (2..minor).rev() {
        for p in platforms {
            out.push(format!("cp3{m}-abi3-{p}"));
        }
    }
    let mut pys = vec![format!("py3{minor}"), "py3".to_string()];
    pys.extend((0..minor).rev().map(|m| format!("py3{m}")));
    for py in &pys {
        for p in platforms {
            out.push(format!("{py}-none-{p}"));
        }
    }
    out.push(format!("{cp}-none-any"));
    for py in &pys {
        out.push(format!("{py}-none-any"));
    }
    out
}

/// One distribution file of a project.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The normalised project name.
    pub project: String,
    /// The version.
    pub version: Version,
    /// The file name.
    pub filename: String,
    /// A wheel (else an sdist).
    pub wheel: bool,
    /// `Requires-Python`.
    pub requires_python: Option<VersionSpecifiers>,
    /// `Requires-Dist`, parsed; `None` when the metadata does not say (an sdist whose requirements are dynamic).
    pub requires_dist: Option<Vec<Requirement>>,
    /// Yanked (PEP 592): taken only when a requirement pins its version with `==`.
    pub yanked: bool,
}

/// A requirement that nothing meets.
pub use crate::ingest::partial::ReportMissing as Missing;

/// Why a distribution is in the resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A requirement of the requirements file (as written).
    Requested(String),
    /// A requirement of another chosen distribution (an index into `Resolution::chosen`) as written.
    Dependency {
        /// The depending distribution.
        of: usize,
        /// The requirement as written.
        relation: String,
    },
}

/// What was chosen: a candidate index per project, in the order taken, with why and the extras enabled.
#[derive(Debug, Default)]
pub struct Resolution {
    /// `(candidate index, why, extras)`.
    pub chosen: Vec<(usize, Reason, BTreeSet<String>)>,
    /// Requirements nothing meets (with `allow_missing`; otherwise an error).
    pub missing: Vec<Missing>,
    /// Chosen sdists whose requirements their metadata does not give (they may need more).
    pub unknown_requirements: Vec<String>,
}

/// Why there is no resolution.
#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// Requirements nothing meets.
    Missing(Vec<Missing>),
    /// Requirements on one project no single version meets.
    Conflict(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Missing(m) => crate::ingest::partial::write_missing(f, m),
            ResolveError::Conflict(s) => write!(f, "conflicting requirements: {s}"),
        }
    }
}

/// A requirement as written, for reasons and messages.
pub fn requirement_text(r: &Requirement) -> String {
    r.to_string()
}

enum Stop {
    Fatal(ResolveError),
    Learn(String, VersionSpecifiers, String),
}

struct Resolver<'a> {
    cands: &'a [Candidate],
    by_project: &'a HashMap<String, Vec<usize>>,
    target: &'a Target,
    learned: &'a HashMap<String, Vec<(VersionSpecifiers, String)>>,
    /// project → position in `out.chosen`.
    position: HashMap<String, usize>,
    out: Resolution,
    queue: VecDeque<usize>,
}

impl Resolver<'_> {
    /// The best candidate of `project` for `spec`: the newest admissible version meeting it and every learned
    /// requirement, and of that version the best wheel, else an sdist.
    fn best(&self, project: &str, spec: Option<&VersionSpecifiers>) -> Option<usize> {
        let list = self.by_project.get(project)?;
        let pinned = spec.is_some_and(|s| {
            s.iter().any(|v| {
                matches!(
                    v.operator(),
                    pep508_rs::pep440_rs::Operator::Equal
                        | pep508_rs::pep440_rs::Operator::ExactEqual
                )
            })
        });
        let pre_ok = spec.is_some_and(|s| s.iter().any(|v| v.any_prerelease()));
        let fits = |c: &Candidate| {
            spec.is_none_or(|s| s.contains(&c.version))
                && self
                    .learned
                    .get(project)
                    .is_none_or(|l| l.iter().all(|(s, _)| s.contains(&c.version)))
                && self.target.admits(c.requires_python.as_ref())
                && (!c.yanked || pinned)
                && (!c.wheel || self.target.wheel_rank(&c.filename).is_some())
        };
        let usable: Vec<usize> = list
            .iter()
            .copied()
            .filter(|&i| fits(&self.cands[i]))
            .collect();
        let any_final = usable
            .iter()
            .any(|&i| !self.cands[i].version.any_prerelease());
        let version = usable
            .iter()
            .map(|&i| &self.cands[i].version)
            .filter(|v| pre_ok || !any_final || !v.any_prerelease())
            .max()?
            .clone();
        let of_version = usable
            .into_iter()
            .filter(|&i| self.cands[i].version == version);
        of_version.min_by_key(|&i| {
            let c = &self.cands[i];
            match (c.wheel, self.target.wheel_rank(&c.filename)) {
                (true, Some(r)) => (0, r, c.filename.clone()),
                _ => (
                    1,
                    usize::from(!c.filename.ends_with(".tar.gz")),
                    c.filename.clone(),
                ),
            }
        })
    }

    fn require(
        &mut self,
        r: &Requirement,
        extras_of_parent: &[ExtraName],
        reason: Reason,
    ) -> Result<(), Stop> {
        if !r.marker.evaluate(&self.target.env, extras_of_parent) {
            return Ok(());
        }
        let project = r.name.to_string();
        let spec = match &r.version_or_url {
            Some(VersionOrUrl::VersionSpecifier(s)) => Some(s),
            Some(VersionOrUrl::Url(u)) => {
                return Err(Stop::Fatal(ResolveError::Conflict(format!(
                    "{r}: a direct URL ({u}) cannot be mirrored from an index"
                ))))
            }
            None => None,
        };
        let want_extras: BTreeSet<String> = r.extras.iter().map(|e| e.to_string()).collect();
        let who = match &reason {
            Reason::Requested(t) => format!("the request {t}"),
            Reason::Dependency { of, .. } => describe(&self.cands[self.out.chosen[*of].0]),
        };
        if let Some(&pos) = self.position.get(&project) {
            let held = &self.cands[self.out.chosen[pos].0];
            if let Some(s) = spec {
                if !s.contains(&held.version) {
                    return Err(Stop::Learn(project, s.clone(), who));
                }
            }
            let before = self.out.chosen[pos].2.len();
            self.out.chosen[pos].2.extend(want_extras);
            if self.out.chosen[pos].2.len() > before {
                self.queue.push_back(pos);
            }
            return Ok(());
        }
        match self.best(&project, spec) {
            Some(i) => {
                self.position.insert(project, self.out.chosen.len());
                self.queue.push_back(self.out.chosen.len());
                self.out.chosen.push((i, reason, want_extras));
            }
            None => {
                if let Some(l) = self.learned.get(&project) {
                    if self.best(&project, None).is_some() || !l.is_empty() {
                        let all: Vec<String> = l
                            .iter()
                            .map(|(s, w)| format!("{w}: {project}{s}"))
                            .collect();
                        return Err(Stop::Fatal(ResolveError::Conflict(format!(
                            "no version of {project} meets {r} ({who}) and {}",
                            all.join("; ")
                        ))));
                    }
                }
                self.out.missing.push(Missing {
                    relation: r.to_string(),
                    needed_by: match &reason {
                        Reason::Requested(_) => "requested".into(),
                        Reason::Dependency { .. } => who,
                    },
                });
            }
        }
        Ok(())
    }

    fn dependencies(&mut self, pos: usize) -> Result<(), Stop> {
        let (i, _, extras) = &self.out.chosen[pos];
        let c = &self.cands[*i];
        let extras: Vec<ExtraName> = extras
            .iter()
            .filter_map(|e| ExtraName::from_str(e).ok())
            .collect();
        let Some(reqs) = &c.requires_dist else {
            let name = c.filename.clone();
            if !self.out.unknown_requirements.contains(&name) {
                self.out.unknown_requirements.push(name);
            }
            return Ok(());
        };
        for r in reqs.clone() {
            let reason = Reason::Dependency {
                of: pos,
                relation: r.to_string(),
            };
            self.require(&r, &extras, reason)?;
        }
        Ok(())
    }
}

/// `name version (file)`, for messages.
pub fn describe(c: &Candidate) -> String {
    format!("{} {} ({})", c.project, c.version, c.filename)
}

/// How many times the resolution may start again to learn a requirement.
const MAX_LEARNED: usize = 256;

/// Resolve `requests` over `cands` for `target`.
pub fn resolve(
    cands: &[Candidate],
    requests: &[Requirement],
    target: &Target,
    allow_missing: bool,
) -> Result<Resolution, ResolveError> {
    let mut by_project: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, c) in cands.iter().enumerate() {
        by_project.entry(c.project.clone()).or_default().push(i);
    }
    let mut learned: HashMap<String, Vec<(VersionSpecifiers, String)>> = HashMap::new();
    loop {
        let mut r = Resolver {
            cands,
            by_project: &by_project,
            target,
            learned: &learned,
            position: HashMap::new(),
            out: Resolution::default(),
            queue: VecDeque::new(),
        };
        let attempt = (|| {
            for req in requests {
                r.require(req, &[], Reason::Requested(req.to_string()))?;
            }
            while let Some(pos) = r.queue.pop_front() {
                r.dependencies(pos)?;
            }
            Ok(())
        })();
        match attempt {
            Ok(()) => {
                if !r.out.missing.is_empty() && !allow_missing {
                    return Err(ResolveError::Missing(r.out.missing));
                }
                return Ok(r.out);
            }
            Err(Stop::Fatal(e)) => return Err(e),
            Err(Stop::Learn(project, spec, who)) => {
                let known = learned.entry(project.clone()).or_default();
                if known.iter().any(|(s, _)| *s == spec) {
                    let all: Vec<String> = known
                        .iter()
                        .map(|(s, w)| format!("{w}: {project}{s}"))
                        .collect();
                    return Err(ResolveError::Conflict(format!(
                        "no version of {project} meets every requirement on it: {}",
                        all.join("; ")
                    )));
                }
                known.push((spec, who));
                if learned.values().map(Vec::len).sum::<usize>() > MAX_LEARNED {
                    return Err(ResolveError::Conflict(format!(
                        "more than {MAX_LEARNED} version requirements had to be learned"
                    )));
                }
            }
        }
    }
}

/// Parse a requirements file: one PEP 508 requirement per line, `#` comments, `\` continuations. Options
/// (`-r`, `-c`, `--index-url`, `-e`, hashes) are refused by line: the mirror resolves names and versions only.
pub fn parse_requirements(text: &str) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    let mut joined = String::new();
    let mut first_line = 0;
    for (n, line) in text.lines().enumerate() {
        if joined.is_empty() {
            first_line = n + 1;
        }
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            continue;
        }
        joined.push_str(line);
        let full = std::mem::take(&mut joined);
        // A comment starts at a '#' at the line's start or after whitespace.
        let body = match full
            .find(" #")
            .or_else(|| full.trim_start().starts_with('#').then_some(0))
        {
            Some(i) => &full[..i],
            None => &full[..],
        };
        let body = body.trim();
        if body.is_empty() {
            continue;
        }
        if body.starts_with('-') {
            return Err(format!(
                "line {first_line}: {body:?}: options are not followed (name requirements only)"
            ));
        }
        let r = Requirement::from_str(body).map_err(|e| format!("line {first_line}: {e}"))?;
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::new("3.11", "manylinux_2_28_x86_64").unwrap()
    }

    fn cand(file: &str, requires: &[&str], requires_python: Option<&str>) -> Candidate {
        let wheel = file.ends_with(".whl");
        let stem = file.trim_end_matches(".whl").trim_end_matches(".tar.gz");
        let mut parts = stem.splitn(3, '-');
        let project = crate::ingest::pypi::normalize(parts.next().unwrap());
        let version = Version::from_str(parts.next().unwrap()).unwrap();
        Candidate {
            project,
            version,
            filename: file.into(),
            wheel,
            requires_python: requires_python.map(|s| VersionSpecifiers::from_str(s).unwrap()),
            requires_dist: Some(
                requires
                    .iter()
                    .map(|r| Requirement::from_str(r).unwrap())
                    .collect(),
            ),
            yanked: false,
        }
    }

    fn names(c: &[Candidate], r: &Resolution) -> Vec<String> {
        let mut v: Vec<String> = r
            .chosen
            .iter()
            .map(|(i, ..)| c[*i].filename.clone())
            .collect();
        v.sort();
        v
    }

    fn universe() -> Vec<Candidate> {
        vec![
            cand(
                "requests-2.32.3-py3-none-any.whl",
                &[
                    "urllib3<3,>=1.21.1",
                    "idna<4,>=2.5",
                    "PySocks!=1.5.7,>=1.5.6; extra == \"socks\"",
                    "chardet<6,>=3.0.2; extra == \"use-chardet-on-py3\"",
                ],
                Some(">=3.8"),
            ),
            cand("requests-2.31.0-py3-none-any.whl", &["urllib3<3,>=1.21.1"], Some(">=3.7")),
            cand("urllib3-2.2.3-py3-none-any.whl", &[], Some(">=3.8")),
            cand("urllib3-1.26.20-py2.py3-none-any.whl", &[], None),
            cand("urllib3-3.0.0-py3-none-any.whl", &[], Some(">=3.12")),
            cand("idna-3.10-py3-none-any.whl", &[], Some(">=3.6")),
            cand("idna-3.10.tar.gz", &[], Some(">=3.6")),
            cand("PySocks-1.7.1-py3-none-any.whl", &[], None),
            cand("rich-13.9.4-py3-none-any.whl", &["typing-extensions>=4.0.0; python_version < \"3.11\"", "pygments<3,>=2.13"], None),
            cand("pygments-2.18.0-py3-none-any.whl", &[], None),
            cand("typing_extensions-4.12.2-py3-none-any.whl", &[], None),
            cand("charset_normalizer-3.4.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", &[], None),
            cand("charset_normalizer-3.4.0-cp311-cp311-win_amd64.whl", &[], None),
            cand("charset_normalizer-3.4.0-py3-none-any.whl", &[], None),
            cand("charset_normalizer-3.4.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", &[], None),
            cand("legacy-1.0.tar.gz", &["idna"], None),
            cand("pinned-1.0-py3-none-any.whl", &["urllib3<2"], None),
        ]
    }

    #[test]
    fn newest_admissible_wheels_with_extras_and_markers() {
        let c = universe();
        let reqs = parse_requirements(
            "requests[socks]>=2.31  # the usual\nrich>=13\ncharset-normalizer\n",
        )
        .unwrap();
        let r = resolve(&c, &reqs, &target(), false).unwrap();
        assert_eq!(
            names(&c, &r),
            [
                "PySocks-1.7.1-py3-none-any.whl",
                "charset_normalizer-3.4.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "idna-3.10-py3-none-any.whl",
                "pygments-2.18.0-py3-none-any.whl",
                "requests-2.32.3-py3-none-any.whl",
                "rich-13.9.4-py3-none-any.whl",
                "urllib3-2.2.3-py3-none-any.whl",
            ],
            "urllib3 3.0.0 wants Python 3.12; typing-extensions only below 3.11; the cp311 wheel before the pure one"
        );
        assert_eq!(
            r.chosen[0].1,
            Reason::Requested("requests[socks]>=2.31".into())
        );
        // On 3.10 rich needs typing-extensions.
        let t310 = Target::new("3.10", "manylinux_2_28_x86_64").unwrap();
        let r = resolve(&c, &parse_requirements("rich").unwrap(), &t310, false).unwrap();
        assert!(names(&c, &r)
            .iter()
            .any(|n| n.starts_with("typing_extensions")));
        // On Windows, the win_amd64 wheel.
        let win = Target::new("3.11", "win_amd64").unwrap();
        let r = resolve(
            &c,
            &parse_requirements("charset-normalizer").unwrap(),
            &win,
            false,
        )
        .unwrap();
        assert_eq!(
            names(&c, &r),
            ["charset_normalizer-3.4.0-cp311-cp311-win_amd64.whl"]
        );
    }

    #[test]
    fn learned_requirements_pick_an_older_version() {
        let c = universe();
        let r = resolve(
            &c,
            &parse_requirements("requests\npinned").unwrap(),
            &target(),
            false,
        )
        .unwrap();
        assert!(
            names(&c, &r).contains(&"urllib3-1.26.20-py2.py3-none-any.whl".to_string()),
            "{:?}",
            names(&c, &r)
        );
        let err = resolve(
            &c,
            &parse_requirements("urllib3>=2\npinned").unwrap(),
            &target(),
            false,
        )
        .unwrap_err();
        assert!(
            matches!(&err, ResolveError::Conflict(s) if s.contains("urllib3")),
            "{err}"
        );
    }

    #[test]
    fn sdists_when_no_wheel_and_missing_named() {
        let c = universe();
        let r = resolve(&c, &parse_requirements("legacy").unwrap(), &target(), false).unwrap();
        assert_eq!(
            names(&c, &r),
            ["idna-3.10-py3-none-any.whl", "legacy-1.0.tar.gz"]
        );
        let err = resolve(
            &c,
            &parse_requirements("requests[use-chardet-on-py3]\nnothere>=1").unwrap(),
            &target(),
            false,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("chardet>=3.0.2,<6") && text.contains("requests 2.32.3"),
            "{text}"
        );
        assert!(text.contains("nothere>=1 (needed by requested)"), "{text}");
        assert!(
            resolve(&c, &parse_requirements("nothere").unwrap(), &target(), true)
                .unwrap()
                .missing
                .len()
                == 1
        );
    }

    #[test]
    fn requirement_files_and_targets_parse() {
        let r = parse_requirements("# top\nattrs ; python_version >= \"3.8\"\nfoo \\\n  >= 1\n\n")
            .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].to_string(), "foo>=1");
        assert!(parse_requirements("-r other.txt")
            .unwrap_err()
            .contains("line 1"));
        assert!(parse_requirements("ok\nfoo >>> 1")
            .unwrap_err()
            .contains("line 2"));
        assert!(Target::new("2.7", "linux_x86_64").is_err());
        assert!(Target::new("3.11", "solaris").is_err());
        let t = target();
        assert!(
            t.wheel_rank("x-1-cp311-cp311-manylinux_2_28_x86_64.whl")
                .unwrap()
                < t.wheel_rank("x-1-py3-none-any.whl").unwrap()
        );
        assert!(
            t.wheel_rank("x-1-cp311-cp311-manylinux_2_34_x86_64.whl")
                .is_none(),
            "a newer glibc"
        );
        assert!(t
            .wheel_rank("x-1-cp39-abi3-manylinux1_x86_64.whl")
            .is_some());
        assert!(t
            .wheel_rank("x-1-cp311-cp311-musllinux_1_2_x86_64.whl")
            .is_none());
        assert!(
            t.wheel_rank("x-1-1build-py2.py3-none-any.whl").is_some(),
            "a build tag"
        );
    }
}
