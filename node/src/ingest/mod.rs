//! Ingest: turning sources into one signed release.
//!
//! - [`reference`]: image references (`host/repo:tag`, `@sha256:…`) and their normalisation.
//! - [`image`]: walking an image (index → manifests → config and layers) from any [`image::BlobSource`],
//!   checking every digest on the way in.
//! - [`oci`]: OCI image layouts on disk. [`docker_archive`]: `docker save` tarballs.
//! - [`registry`]: the OCI Distribution API client for `docker://` sources.
//! - [`files`]: `file:` and `dir:` sources.
//! - [`apt`]: `apt:` sources — Debian repositories, whole or by suite, component and architecture.
//! - Package repositories as static trees: [`pypi`] (`pypi:`, a PEP 503/691 simple index generated over wheels
//!   and sdists), [`helm`] (`helm:`, charts and a generated `index.yaml`), [`yum`] (`yum:`, a repository kept
//!   as is after checking it); [`pkgtree`] holds what they share (`DIR?into=PREFIX`, writing under a prefix).
//! - [`pushed`]: `pushed:` sources — images pushed to this node's registry, named into a release.

pub mod apt;
pub mod attached;
pub mod docker_archive;
pub mod files;
pub mod helm;
pub mod image;
pub mod named;
pub mod oci;
pub mod partial;
pub mod pkgtree;
pub mod pushed;
pub mod pypi;
pub mod reference;
pub mod registry;
pub mod yum;

use crate::progress::Progress;
use crate::store::{Store, StoreError, WriteStats};
use ferry_protocol::{Entry, ReleaseManifest};
use std::path::PathBuf;

pub use image::Platform;

/// Why an ingest failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A source string that does not parse.
    #[error("invalid source {source_text:?}: {reason}")]
    BadSource {
        /// What was given.
        source_text: String,
        /// Why it is refused.
        reason: String,
    },
    /// A file that cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Malformed content (a manifest that is not JSON, an archive without manifest.json, …).
    #[error("{what}: {reason}")]
    Malformed {
        /// Where.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A tag or image that is not there.
    #[error("{0}")]
    NotFound(String),
    /// Talking to a registry failed.
    #[error("{0}")]
    Registry(String),
    /// Authentication was refused.
    #[error("{0}")]
    Auth(String),
    /// Fetching a file over HTTP failed.
    #[error("{0}")]
    Fetch(String),
    /// Nothing to put in the release.
    #[error("no entries: the sources selected nothing")]
    Empty,
    /// An input the verification policy refuses.
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
}

impl IngestError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IngestError {
        let path = path.into().display().to_string();
        move |source| IngestError::Io { path, source }
    }
}

/// The blocking HTTP client every remote source uses: ferry's user agent, a 15 s connect timeout, no overall
/// timeout (bodies of many GB stream for as long as they take).
pub(crate) fn http_client() -> Result<reqwest::blocking::Client, IngestError> {
    reqwest::blocking::Client::builder()
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(15))
        .timeout(None)
        .build()
        .map_err(|e| IngestError::Fetch(format!("cannot start an HTTP client: {e}")))
}

/// An error and its causes on one line (reqwest hides the useful part, such as "connection refused", in causes).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

/// One source of a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `oci:DIR[:TAG]`.
    Oci {
        /// The layout directory.
        dir: PathBuf,
        /// Which ref name; all when `None`.
        tag: Option<String>,
    },
    /// `docker-archive:FILE`.
    DockerArchive(PathBuf),
    /// `docker://HOST/REPO:TAG`.
    Registry(reference::Reference),
    /// `file:PATH`.
    File(PathBuf),
    /// `dir:PATH`.
    Dir(PathBuf),
    /// `apt:DIR` or `apt:URL`, with an optional `?suites=…&components=…&architectures=…` selection.
    Apt(apt::AptSource),
    /// `pypi:DIR[?into=PREFIX&requirements=PATH…]`.
    Pypi(pypi::PypiSource),
    /// `helm:DIR[?into=PREFIX&images=yes&values=FILE,…]`.
    Helm(helm::HelmSource),
    /// `k8s:DIR[?into=PREFIX]`: Kubernetes manifests (or kustomize output), and the images they name.
    K8s(pkgtree::RepoDir),
    /// `yum:DIR[?into=PREFIX&keyring=PATH&packages=…]`.
    Yum(yum::YumSource),
    /// `pushed:REPO[:TAG]`: images pushed to this node's registry.
    Pushed {
        /// The repository.
        repository: String,
        /// Which tag; every pushed tag when `None`.
        tag: Option<String>,
    },
}

impl Source {
    /// Where the source reads from, as a policy's `match` sees it: `docker://HOST/REPO:TAG`, `oci:DIR[:TAG]`,
    /// `docker-archive:FILE`, `file:PATH`, `dir:PATH`, `apt:DIR|URL`, `yum:DIR`, `pypi:DIR|URL`, `helm:DIR`,
    /// `pushed:REPO[:TAG]` — without options.
    pub fn location(&self) -> String {
        match self {
            Source::Oci { dir, tag } => match tag {
                Some(t) => format!("oci:{}:{t}", dir.display()),
                None => format!("oci:{}", dir.display()),
            },
            Source::DockerArchive(p) => format!("docker-archive:{}", p.display()),
            Source::Registry(r) => format!("docker://{r}"),
            Source::File(p) => format!("file:{}", p.display()),
            Source::Dir(p) => format!("dir:{}", p.display()),
            Source::Apt(a) => match &a.root {
                apt::AptRoot::Dir(d) => format!("apt:{}", d.display()),
                apt::AptRoot::Url(u) => format!("apt:{u}"),
            },
            Source::Pypi(p) => format!("pypi:{}", p.repo.dir.display()),
            Source::Helm(h) => format!("helm:{}", h.repo.dir.display()),
            Source::K8s(k) => format!("k8s:{}", k.dir.display()),
            Source::Yum(y) => format!("yum:{}", y.dir.display()),
            Source::Pushed { repository, tag } => match tag {
                Some(t) => format!("pushed:{repository}:{t}"),
                None => format!("pushed:{repository}"),
            },
        }
    }

    /// The kind, as its prefix names it (`docker://`, `oci:`, …), for messages.
    fn kind(&self) -> &'static str {
        match self {
            Source::Oci { .. } => "oci:",
            Source::DockerArchive(_) => "docker-archive:",
            Source::Registry(_) => "docker://",
            Source::File(_) => "file:",
            Source::Dir(_) => "dir:",
            Source::Apt(_) => "apt:",
            Source::Pypi(_) => "pypi:",
            Source::Helm(_) => "helm:",
            Source::K8s(_) => "k8s:",
            Source::Yum(_) => "yum:",
            Source::Pushed { .. } => "pushed:",
        }
    }
}

impl std::str::FromStr for Source {
    type Err = IngestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| IngestError::BadSource {
            source_text: s.to_string(),
            reason: reason.to_string(),
        };
        let nonempty = |p: &str| {
            if p.is_empty() {
                Err(bad("the path is empty"))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        if let Some(rest) = s.strip_prefix("oci:") {
            // `oci:DIR:TAG` — DIR may itself contain ':' as long as it exists as given.
            if std::path::Path::new(rest).is_dir() {
                return Ok(Source::Oci {
                    dir: rest.into(),
                    tag: None,
                });
            }
            return Ok(match rest.rsplit_once(':') {
                Some((dir, tag)) if !tag.contains('/') && !tag.is_empty() => Source::Oci {
                    dir: nonempty(dir)?,
                    tag: Some(tag.to_string()),
                },
                _ => Source::Oci {
                    dir: nonempty(rest)?,
                    tag: None,
                },
            });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            return Ok(Source::DockerArchive(nonempty(rest)?));
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return reference::Reference::parse(rest)
                .map(Source::Registry)
                .map_err(|reason| bad(&reason));
        }
        if let Some(rest) = s.strip_prefix("file:") {
            return Ok(Source::File(nonempty(rest)?));
        }
        if let Some(rest) = s.strip_prefix("dir:") {
            return Ok(Source::Dir(nonempty(rest)?));
        }
        if let Some(rest) = s.strip_prefix("apt:") {
            return apt::AptSource::parse(rest)
                .map(Source::Apt)
                .map_err(|reason| bad(&reason));
        }
        let repo = |rest: &str, default: &str| {
            pkgtree::RepoDir::parse(rest, default).map_err(|reason| bad(&reason))
        };
        if let Some(rest) = s.strip_prefix("pypi:") {
            return pypi::PypiSource::parse(rest)
                .map(Source::Pypi)
                .map_err(|reason| bad(&reason));
        }
        if let Some(rest) = s.strip_prefix("helm:") {
            return helm::HelmSource::parse(rest)
                .map(Source::Helm)
                .map_err(|reason| bad(&reason));
        }
        if let Some(rest) = s.strip_prefix("k8s:") {
            return repo(rest, "k8s").map(Source::K8s);
        }
        if let Some(rest) = s.strip_prefix("yum:") {
            return yum::YumSource::parse(rest)
                .map(Source::Yum)
                .map_err(|reason| bad(&reason));
        }
        if let Some(rest) = s.strip_prefix("pushed:") {
            // Repository names never hold ':', so the first one starts the tag.
            let (repository, tag) = match rest.split_once(':') {
                Some((r, t)) => (r, Some(t)),
                None => (rest, None),
            };
            if !reference::valid_repository(repository) {
                return Err(bad(&format!(
                    "invalid repository {repository:?}: lowercase letters, digits, '.', '_', '-', '/' only"
                )));
            }
            if tag.is_some_and(|t| !reference::is_bare_tag(t)) {
                return Err(bad("invalid tag"));
            }
            return Ok(Source::Pushed {
                repository: repository.to_string(),
                tag: tag.map(str::to_string),
            });
        }
        Err(bad(
            "expected oci:DIR[:TAG], docker-archive:FILE, docker://HOST/REPO:TAG, file:PATH, dir:PATH, \
             apt:DIR|URL[?…], pypi:DIR, helm:DIR, k8s:DIR, yum:DIR or pushed:REPO[:TAG]",
        ))
    }
}

/// Options for `add`.
#[derive(Clone, Debug, Default)]
pub struct AddOptions {
    /// Keep only these platforms of image indexes (all when empty).
    pub platforms: Vec<Platform>,
    /// Registry client settings.
    pub registry: registry::RegistryOptions,
    /// The verification policy every source must pass (`--verify POLICY`).
    pub policy: Option<crate::verify::Policy>,
}

/// What `add` did.
#[derive(Debug, serde::Serialize)]
pub struct AddReport {
    /// `name@version`.
    pub release: String,
    /// Per-name sequence number given.
    pub sequence: u64,
    /// Entries.
    pub entries: usize,
    /// Sum of blob sizes.
    pub logical_bytes: u64,
    /// Distinct chunks the release needs.
    pub chunks: u64,
    /// Chunks this add wrote.
    pub chunks_new: u64,
    /// Compressed bytes this add wrote to packs.
    pub stored_bytes_new: u64,
    /// Bytes of compressed blobs (gzip layers and tarballs, zips) this add stored as raw bytes plus
    /// re-creation data.
    pub recreated_bytes: u64,
    /// Bytes of gzip blobs this add stored as they are (not re-creatable exactly).
    pub gzip_kept_bytes: u64,
    /// Bytes of zips (wheels, jars) among `recreated_bytes`.
    pub zip_recreated_bytes: u64,
    /// Bytes of zips with deflated members this add stored as they are (not re-creatable exactly).
    pub zip_kept_bytes: u64,
    /// Bytes of bare xz streams (`.tar.xz`, `Packages.xz`) among `recreated_bytes`.
    pub xz_recreated_bytes: u64,
    /// Bytes of bare xz streams this add stored as they are (not re-creatable exactly).
    pub xz_kept_bytes: u64,
    /// Bytes of bare bzip2 streams (`.tar.bz2`) among `recreated_bytes`.
    pub bzip2_recreated_bytes: u64,
    /// Bytes of bare bzip2 streams this add stored as they are (not re-creatable exactly).
    pub bzip2_kept_bytes: u64,
    /// Bytes of bare zstd frames (`.tar.zst`, zstd image layers) among `recreated_bytes`.
    pub zstd_recreated_bytes: u64,
    /// Bytes of bare zstd frames this add stored as they are (another encoder's, several frames).
    pub zstd_kept_bytes: u64,
    /// Bytes of `.deb` members (`control.tar.xz`, `data.tar.zst`) among `recreated_bytes`.
    pub deb_recreated_bytes: u64,
    /// Bytes of `.deb` files this add stored as they are: their `ar` skeletons (headers, `debian-binary`) and
    /// members not re-creatable exactly.
    pub deb_kept_bytes: u64,
    /// Bytes of `.rpm` payloads (zstd, xz, bzip2) among `recreated_bytes`.
    pub rpm_recreated_bytes: u64,
    /// Bytes of `.rpm` files this add stored as they are: their leads and headers, and payloads not
    /// re-creatable exactly (gzip, lzma, another encoder's).
    pub rpm_kept_bytes: u64,
    /// What the verification policy checked, input by input (empty without `--verify`).
    pub verified: Vec<crate::verify::Verified>,
}

/// Ingest `sources` as release `name@version`, sign it and make it visible — only once all of it is stored.
pub fn add(
    store: &Store,
    name: &str,
    version: &str,
    sources: &[Source],
    opts: &AddOptions,
    progress: &dyn Progress,
) -> Result<(ReleaseManifest, AddReport), IngestError> {
    let _op = store.begin("ingest");
    ferry_protocol::validate_name(name).map_err(StoreError::from)?;
    ferry_protocol::validate_version(version).map_err(StoreError::from)?;
    if store.release(name, version).is_ok() {
        return Err(StoreError::ReleaseExists(format!("{name}@{version}")).into());
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut stats = WriteStats::default();
    let ctx = image::Context {
        store,
        release_name: name,
        platforms: &opts.platforms,
        progress,
        gzip_hint: Default::default(),
    };
    let mut verified = Vec::new();
    // Every source is checked against the policy before any is ingested, so a refusal costs no download.
    let mut checks = Vec::with_capacity(sources.len());
    for source in sources {
        checks.push(match &opts.policy {
            Some(policy) => policy_check(policy, source, &mut verified)?,
            None => None,
        });
    }
    for (source, check) in sources.iter().zip(checks) {
        let check = check.map(|rule| {
            (
                opts.policy.as_ref().expect("a rule comes from a policy"),
                rule,
            )
        });
        match source {
            Source::Oci { dir, tag } => oci::ingest(
                &ctx,
                dir,
                tag.as_deref(),
                check,
                &mut entries,
                &mut stats,
                &mut verified,
            )?,
            Source::DockerArchive(path) => {
                docker_archive::ingest(&ctx, path, &mut entries, &mut stats)?
            }
            Source::Registry(r) => registry::ingest(
                &ctx,
                r,
                &opts.registry,
                check,
                &mut entries,
                &mut stats,
                &mut verified,
            )?,
            Source::File(path) => {
                if let Some((policy, rule)) = check {
                    verified.push(crate::verify::detached::verify_file(policy, rule, path)?);
                }
                files::ingest_file(&ctx, path, &mut entries, &mut stats)?
            }
            Source::Dir(path) => files::ingest_dir(&ctx, path, &mut entries, &mut stats)?,
            Source::Apt(src) => match check {
                Some((_, rule)) => {
                    let src = apt::AptSource {
                        keyring: Some(rule.openpgp[0].clone()),
                        ..src.clone()
                    };
                    apt::ingest(&ctx, &src, &mut entries, &mut stats)?
                }
                None => apt::ingest(&ctx, src, &mut entries, &mut stats)?,
            },
            Source::Pypi(src) => pypi::ingest(&ctx, src, &mut entries, &mut stats)?,
            Source::Helm(src) => {
                if let Some((policy, rule)) = check {
                    verified.extend(crate::verify::detached::verify_charts(
                        policy,
                        rule,
                        &src.repo.dir,
                    )?);
                }
                if let Some(report) = helm::ingest(&ctx, src, &mut entries, &mut stats)? {
                    pull_named(&ctx, &report, opts, &mut entries, &mut stats, &mut verified)?;
                }
            }
            Source::K8s(src) => {
                let report = named::ingest_manifests(&ctx, src, &mut entries, &mut stats)?;
                pull_named(&ctx, &report, opts, &mut entries, &mut stats, &mut verified)?;
            }
            Source::Yum(src) => match check {
                Some((_, rule)) => {
                    let src = yum::YumSource {
                        keyring: Some(rule.openpgp[0].clone()),
                        ..src.clone()
                    };
                    yum::ingest(&ctx, &src, &mut entries, &mut stats)?
                }
                None => yum::ingest(&ctx, src, &mut entries, &mut stats)?,
            },
            Source::Pushed { repository, tag } => {
                pushed::ingest(&ctx, repository, tag.as_deref(), &mut entries, &mut stats)?
            }
        }
    }
    if entries.is_empty() {
        return Err(IngestError::Empty);
    }
    check_unique(&entries)?;
    let manifest = store.publish(name, version, entries)?;
    let chunks = store.chunks_of(&manifest.blobs())?.len() as u64;
    let report = AddReport {
        release: manifest.id(),
        sequence: manifest.sequence,
        entries: manifest.entries.len(),
        logical_bytes: manifest.logical_size(),
        chunks,
        chunks_new: stats.chunks_new,
        stored_bytes_new: stats.stored_bytes_new,
        recreated_bytes: stats.recreated_bytes,
        gzip_kept_bytes: stats.gzip_kept_bytes,
        zip_recreated_bytes: stats.zip_recreated_bytes,
        zip_kept_bytes: stats.zip_kept_bytes,
        xz_recreated_bytes: stats.xz_recreated_bytes,
        xz_kept_bytes: stats.xz_kept_bytes,
        bzip2_recreated_bytes: stats.bzip2_recreated_bytes,
        bzip2_kept_bytes: stats.bzip2_kept_bytes,
        zstd_recreated_bytes: stats.zstd_recreated_bytes,
        zstd_kept_bytes: stats.zstd_kept_bytes,
        deb_recreated_bytes: stats.deb_recreated_bytes,
        deb_kept_bytes: stats.deb_kept_bytes,
        rpm_recreated_bytes: stats.rpm_recreated_bytes,
        rpm_kept_bytes: stats.rpm_kept_bytes,
        verified,
    };
    store.audit_or_warn(
        "ingest",
        vec![report.release.clone()],
        serde_json::json!({
            "sources": sources.iter().map(Source::location).collect::<Vec<_>>(),
            "verified": report.verified,
            "policy": opts.policy.as_ref().map(|p| p.path.clone()),
        }),
    );
    Ok((manifest, report))
}

/// Pull every image `report` names from its registry into the release (each once, an image the release
/// already holds under the same reference passed over), each checked against the policy as a `docker://` source
/// would be.
fn pull_named(
    ctx: &image::Context<'_>,
    report: &named::Report,
    opts: &AddOptions,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
    verified: &mut Vec<crate::verify::Verified>,
) -> Result<(), IngestError> {
    for text in report.images() {
        let r = reference::Reference::parse(&text).map_err(|reason| IngestError::BadSource {
            source_text: text.clone(),
            reason,
        })?;
        let needed_by: Vec<&str> = report
            .named
            .iter()
            .filter(|n| n.images.contains(&text))
            .map(|n| n.source.as_str())
            .collect();
        let source = Source::Registry(r.clone());
        let rule = match &opts.policy {
            Some(policy) => policy_check(policy, &source, verified)?,
            None => None,
        };
        let check = rule.map(|rule| {
            (
                opts.policy.as_ref().expect("a rule comes from a policy"),
                rule,
            )
        });
        let mut got = Vec::new();
        registry::ingest(ctx, &r, &opts.registry, check, &mut got, stats, verified).map_err(
            |e| match e {
                IngestError::Verify(v) => IngestError::Verify(v),
                other => IngestError::NotFound(format!(
                    "image {text}, named by {}: {other}",
                    needed_by.join(", ")
                )),
            },
        )?;
        for e in got {
            let dup = matches!(&e, Entry::Image(i) if entries.iter().any(|o| matches!(o, Entry::Image(h) if h.reference() == i.reference())));
            if !dup {
                entries.push(e);
            }
        }
    }
    Ok(())
}

/// The rule of `policy` that `source` must pass, checked for what the source can carry: `None` when no
/// signature is to be checked (no rule and unmatched inputs accepted, or a rule that takes it unsigned, which
/// is recorded in `verified`). apt and yum repositories are checked by their signed index (`InRelease` or
/// `Release.gpg`, `repomd.xml.asc`) against the rule's one OpenPGP keyring; files by a detached signature;
/// registry images by cosign signatures.
fn policy_check<'p>(
    policy: &'p crate::verify::Policy,
    source: &Source,
    verified: &mut Vec<crate::verify::Verified>,
) -> Result<Option<&'p crate::verify::Rule>, IngestError> {
    let location = source.location();
    let Some(rule) = policy.rule_for(&location)? else {
        return Ok(None);
    };
    if rule.unsigned {
        verified.push(crate::verify::Verified {
            artifact: location,
            scheme: "unsigned".into(),
            key: String::new(),
        });
        return Ok(None);
    }
    let fits = match source {
        Source::Registry(_) | Source::Oci { .. } => {
            rule.openpgp.is_empty() && rule.minisign.is_empty()
        }
        Source::File(_) => rule.cosign.is_empty(),
        Source::Helm(_) => {
            rule.cosign.is_empty()
                && rule.minisign.is_empty()
                && rule.keyless.is_empty()
                && !rule.openpgp.is_empty()
        }
        Source::Apt(_) | Source::Yum(_) => {
            if rule.openpgp.len() > 1 {
                return Err(policy
                    .refused(
                        &location,
                        format!(
                            "rule {:?} names {} OpenPGP keyrings; a repository is checked against one (a \
                             keyring file may hold several keys)",
                            rule.pattern,
                            rule.openpgp.len()
                        ),
                    )
                    .into());
            }
            rule.cosign.is_empty()
                && rule.minisign.is_empty()
                && rule.keyless.is_empty()
                && rule.openpgp.len() == 1
        }
        _ => false,
    };
    if !fits {
        return Err(policy.unsupported(&location, rule, source.kind()).into());
    }
    if matches!(source, Source::Apt(_) | Source::Yum(_)) {
        verified.push(crate::verify::Verified {
            artifact: location,
            scheme: "openpgp".into(),
            key: rule.openpgp[0].display().to_string(),
        });
    }
    Ok(Some(rule))
}

/// Two entries may not claim the same path or the same image name.
fn check_unique(entries: &[Entry]) -> Result<(), IngestError> {
    let mut seen = std::collections::HashSet::new();
    for e in entries {
        let key = match e {
            Entry::Image(i) => format!("image {}", i.reference()),
            other => format!("path {}", other.path().unwrap_or_default()),
        };
        if !seen.insert(key.clone()) {
            return Err(IngestError::BadSource {
                source_text: key,
                reason: "two sources put the same name into the release".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            "oci:/no/such/dir:v1".parse::<Source>().unwrap(),
            Source::Oci {
                dir: "/no/such/dir".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            "oci:/no/such/dir".parse::<Source>().unwrap(),
            Source::Oci {
                dir: "/no/such/dir".into(),
                tag: None
            }
        );
        assert_eq!(
            "file:a.bin".parse::<Source>().unwrap(),
            Source::File("a.bin".into())
        );
        assert!(matches!(
            "docker://127.0.0.1:5000/x:1".parse::<Source>().unwrap(),
            Source::Registry(r) if r.registry == "127.0.0.1:5000" && r.repository == "x"
        ));
        assert!(matches!(
            "apt:/srv/debian?suites=stable&components=main".parse::<Source>().unwrap(),
            Source::Apt(a) if a.suites == ["stable"] && a.components == ["main"]
        ));
        assert_eq!(
            "pypi:/no/such/dir".parse::<Source>().unwrap(),
            Source::Pypi(pypi::PypiSource {
                repo: pkgtree::RepoDir {
                    dir: "/no/such/dir".into(),
                    into: "pypi".into()
                },
                partial: None
            })
        );
        assert!(matches!(
            "pypi:w?requirements=r.txt&python=3.12&into=x".parse::<Source>().unwrap(),
            Source::Pypi(pypi::PypiSource { repo, partial: Some(p) })
                if repo.into == "x" && p.python == "3.12" && p.platform == "manylinux_2_28_x86_64"
        ));
        assert!(matches!(
            "helm:charts?into=repos/helm".parse::<Source>().unwrap(),
            Source::Helm(h) if h.repo.into == "repos/helm" && h.repo.dir == std::path::Path::new("charts") && !h.images
        ));
        assert!(matches!(
            "helm:c?images=yes&values=a.yaml,b.yaml&into=x".parse::<Source>().unwrap(),
            Source::Helm(h) if h.images && h.values.len() == 2 && h.repo.into == "x"
        ));
        assert!(matches!(
            "k8s:m".parse::<Source>().unwrap(),
            Source::K8s(k) if k.into == "k8s"
        ));
        assert!(matches!(
            "yum:el9?into=".parse::<Source>().unwrap(),
            Source::Yum(r) if r.into.is_empty()
        ));
        assert_eq!(
            "pushed:team/app:1.2".parse::<Source>().unwrap(),
            Source::Pushed {
                repository: "team/app".into(),
                tag: Some("1.2".into())
            }
        );
        assert_eq!(
            "pushed:team/app".parse::<Source>().unwrap(),
            Source::Pushed {
                repository: "team/app".into(),
                tag: None
            }
        );
        for bad in [
            "http://x",
            "oci:",
            "file:",
            "docker://example.org/x",
            "x",
            "apt:",
            "apt:http://example.org/debian",
            "pypi:",
            "pypi:w?python=3.11",
            "pypi:w?requirements=r&python=2.7",
            "pypi:w?requirements=r&platform=solaris",
            "pypi:w?extras=x",
            "helm:d?into=../up",
            "helm:d?images=maybe",
            "helm:d?values=v.yaml",
            "k8s:",
            "yum:d?to=x",
            "yum:d?recommends=yes",
            "yum:d?packages=a(b",
            "pushed:",
            "pushed:Team/app",
            "pushed:a/../b:1",
            "pushed:a//b",
            "pushed:a:b:c",
            "pushed:a:",
        ] {
            assert!(bad.parse::<Source>().is_err(), "{bad}");
        }
    }
}
