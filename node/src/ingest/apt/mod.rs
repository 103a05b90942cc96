//! `apt:` sources: a Debian repository (a directory or an http(s) URL holding `dists/` and `pool/`), whole or
//! narrowed to suites, components and architectures, carried byte for byte at its own paths so `InRelease`,
//! `Release` and `Release.gpg` stay valid for apt on the site.
//!
//! - [`release`]: `Release`/`InRelease` parsing and a streaming deb822 paragraph parser.
//! - [`fetch`]: reading repository files from a directory or over HTTP.
//!
//! Syntax: `apt:ROOT[?suites=S,…&components=C,…&architectures=A,…&languages=L,…&into=PREFIX]`.
//! Each suite's `InRelease` (else `Release`), `Release`, `Release.gpg` are taken as they are; then every index
//! its `SHA256:` list names for the chosen components and architectures (`Packages*`, the per-architecture
//! `Release`, `i18n/Translation-<language>*` and `i18n/Index`, and with `source` among the architectures
//! `Sources*`), each checked against the listed SHA-256 and size; `by-hash/<list>/<hex>` copies (for each hash
//! list the Release has) when the suite says `Acquire-By-Hash: yes`; then every pool file the indexes name
//! (`Filename:` with `SHA256:` and `Size:`; for sources, `Directory:` with `Checksums-Sha256:`), each checked
//! the same way. The gpg signature is
//! not checked here: ferry carries the bytes unchanged and apt on the site checks it.

pub mod closure;
pub mod fetch;
pub mod partial;
pub mod release;
pub mod version;

use super::image::{already_stored, store_stream, Context};
use super::IngestError;
use crate::store::WriteStats;
use ferry_protocol::{BlobRef, Entry, FileEntry, Sha256Digest};
use fetch::Fetch;
use release::{field, Listed, Paragraph, Paragraphs};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// The largest `InRelease`/`Release`/`Release.gpg` read.
const MAX_RELEASE: u64 = 16 << 20;
/// The largest single index file (a `Packages.xz`, a `Translation-en.bz2`) held in memory while it is checked
/// and parsed; Debian's largest are a few tens of MiB.
const MAX_INDEX: u64 = 512 << 20;

/// Where the repository is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AptRoot {
    /// A local directory.
    Dir(PathBuf),
    /// An `http://` or `https://` URL (without a trailing `/`).
    Url(String),
}

/// An `apt:` source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptSource {
    /// The repository root (holding `dists/`).
    pub root: AptRoot,
    /// Suites (directories under `dists/`); all when empty (a directory only).
    pub suites: Vec<String>,
    /// Components; all the Release lists when empty.
    pub components: Vec<String>,
    /// Architectures; all the Release lists when empty. `all` is added whenever the Release lists it;
    /// `source` asks for source packages.
    pub architectures: Vec<String>,
    /// Translation languages (`en`, `de`, …); `["en"]` by default, none with `languages=none`.
    pub languages: Vec<String>,
    /// A directory inside the release to put the repository under; the release root when `None`.
    pub into: Option<String>,
    /// A keyring of upstream keys: each suite's `InRelease` (or `Release` with `Release.gpg`) must carry a
    /// good signature by one of them, or the ingest is refused.
    pub keyring: Option<PathBuf>,
    /// A partial mirror: these packages and their dependency closure, re-signed with the store's repository
    /// key ([`partial`]); `None` carries the repository whole.
    pub partial: Option<Partial>,
}

/// What a partial mirror takes (`packages=`, `packages-file=` and the closure's options).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Partial {
    /// The packages asked for in the source string.
    pub packages: Vec<closure::Request>,
    /// A file listing more (one per line, `#` comments, or `dpkg --get-selections` output).
    pub packages_file: Option<PathBuf>,
    /// `recommends=yes`.
    pub recommends: bool,
    /// `alternatives=all`.
    pub all_alternatives: bool,
    /// `essential=yes`.
    pub essential: bool,
    /// `allow-missing=yes`.
    pub allow_missing: bool,
}

impl AptSource {
    /// Parse what follows `apt:`.
    pub fn parse(text: &str) -> Result<AptSource, String> {
        let is_url = text.starts_with("http://") || text.starts_with("https://");
        let (root, query) = if !is_url && std::path::Path::new(text).is_dir() {
            (text, None)
        } else {
            match text.split_once('?') {
                Some((r, q)) => (r, Some(q)),
                None => (text, None),
            }
        };
        if root.is_empty() {
            return Err("the repository root is empty".into());
        }
        let mut src = AptSource {
            root: if is_url {
                AptRoot::Url(root.trim_end_matches('/').to_string())
            } else {
                AptRoot::Dir(root.into())
            },
            suites: vec![],
            components: vec![],
            architectures: vec![],
            languages: vec!["en".into()],
            into: None,
            keyring: None,
            partial: None,
        };
        let mut partial = Partial::default();
        let mut languages_given = false;
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))?;
            let list: Vec<String> = v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let yes = || match v {
                "yes" | "true" | "1" => Ok(true),
                "no" | "false" | "0" => Ok(false),
                _ => Err(format!("{k}={v}: say yes or no")),
            };
            match k {
                "suites" => src.suites = list,
                "components" => src.components = list,
                "architectures" => src.architectures = list,
                "languages" if v == "none" => (src.languages, languages_given) = (vec![], true),
                "languages" => (src.languages, languages_given) = (list, true),
                "into" => src.into = Some(v.trim_matches('/').to_string()),
                "keyring" => src.keyring = Some(PathBuf::from(v)),
                "packages" => {
                    for p in &list {
                        partial.packages.push(closure::Request::parse(p)?);
                    }
                    src.partial = Some(Partial::default());
                }
                "packages-file" => {
                    partial.packages_file = Some(PathBuf::from(v));
                    src.partial = Some(Partial::default());
                }
                "recommends" => partial.recommends = yes()?,
                "alternatives" if v == "all" => partial.all_alternatives = true,
                "alternatives" if v == "first" => partial.all_alternatives = false,
                "alternatives" => return Err(format!("alternatives={v}: say first or all")),
                "essential" => partial.essential = yes()?,
                "allow-missing" => partial.allow_missing = yes()?,
                _ => {
                    return Err(format!(
                        "unknown option {k:?}: use suites, components, architectures, languages, into, keyring, \
                         packages, packages-file, recommends, alternatives, essential or allow-missing"
                    ))
                }
            }
        }
        if src.partial.is_some() {
            if languages_given && !src.languages.is_empty() {
                return Err(
                    "a partial mirror (packages=) carries no translations: drop languages=".into(),
                );
            }
            if src.architectures.iter().any(|a| a == "source") {
                return Err(
                    "a partial mirror (packages=) carries binary packages, not source".into(),
                );
            }
            src.languages = vec![];
            src.partial = Some(partial);
        } else if partial != Partial::default() {
            return Err(
                "recommends, alternatives, essential and allow-missing shape a partial mirror: name its packages= or packages-file="
                    .into(),
            );
        }
        for s in src.suites.iter().chain(src.components.iter()) {
            ferry_protocol::validate_rel_path(s).map_err(|e| e.to_string())?;
        }
        if let Some(into) = &src.into {
            ferry_protocol::validate_rel_path(into).map_err(|e| format!("into: {e}"))?;
        }
        if is_url && src.suites.is_empty() {
            return Err(
                "a URL has no directory listing to find suites in: name them, e.g. ?suites=bookworm,bookworm-updates"
                    .into(),
            );
        }
        Ok(src)
    }

    /// `apt:ROOT` for messages.
    pub fn describe(&self) -> String {
        match &self.root {
            AptRoot::Dir(d) => format!("apt:{}", d.display()),
            AptRoot::Url(u) => format!("apt:{u}"),
        }
    }
}

/// A pool file some index names, and which index named it first.
struct PoolFile {
    sha256: Sha256Digest,
    size: u64,
    listed_in: String,
}

/// What one ingest collects: every file by its path in the repository.
struct Collected<'a, 'c> {
    ctx: &'a Context<'c>,
    fetch: &'a Fetch,
    stats: &'a mut WriteStats,
    files: BTreeMap<String, BlobRef>,
    pool: BTreeMap<String, PoolFile>,
}

/// Ingest the repository `src` into `entries`.
pub fn ingest(
    ctx: &Context<'_>,
    src: &AptSource,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    let fetch = Fetch::new(&src.root)?;
    let (suites, links) = suites_of(&fetch, src)?;
    let mut c = Collected {
        ctx,
        fetch: &fetch,
        stats,
        files: BTreeMap::new(),
        pool: BTreeMap::new(),
    };
    let mut used_components = Vec::new();
    let mut used_archs = Vec::new();
    if let Some(partial) = &src.partial {
        (used_components, used_archs) = c.partial(src, partial, &suites)?;
    } else {
        for suite in &suites {
            let (comps, archs) = c.suite(src, suite)?;
            used_components.extend(comps);
            used_archs.extend(archs);
        }
    }
    for (wanted, used, what) in [
        (&src.components, &used_components, "component"),
        (&src.architectures, &used_archs, "architecture"),
    ] {
        if let Some(missing) = wanted.iter().find(|w| !used.contains(w)) {
            return Err(IngestError::NotFound(format!(
                "{}: {what} {missing:?} is in none of the suites {}",
                src.describe(),
                suites.join(", ")
            )));
        }
    }
    c.pool_files()?;
    let prefix = |p: &str| match &src.into {
        Some(into) => format!("{into}/{p}"),
        None => p.to_string(),
    };
    for (path, blob) in c.files {
        entries.push(Entry::File(FileEntry {
            path: prefix(&path),
            mode: 0o644,
            blob,
        }));
    }
    for (path, target) in links {
        entries.push(Entry::Symlink {
            path: prefix(&path),
            target,
        });
    }
    Ok(())
}

/// The suites of `src` (those named, else every one under `dists/`) and the links among them.
fn suites_of(
    fetch: &Fetch,
    src: &AptSource,
) -> Result<(Vec<String>, Vec<fetch::Link>), IngestError> {
    let (suites, links) = if src.suites.is_empty() {
        fetch.suites()?
    } else {
        (src.suites.clone(), fetch.suite_links(&src.suites)?)
    };
    if suites.is_empty() {
        return Err(IngestError::NotFound(format!(
            "{}: no suite (a dists/ directory with InRelease or Release) found",
            src.describe()
        )));
    }
    Ok((suites, links))
}

/// Readable `Packages`/`Sources` variants, best first (cheapest to decompress).
const READABLE: [&str; 5] = ["", ".gz", ".zst", ".xz", ".lzma"];

/// What an index file is, from its path inside a suite.
#[derive(Debug, PartialEq, Eq)]
enum IndexKind {
    /// `Packages*` in directory `dir`; `rank` is the compression's place in [`READABLE`], `None` for one
    /// ferry does not decompress (`.bz2`).
    Packages { dir: String, rank: Option<usize> },
    /// `Sources*`, the same way.
    Sources { dir: String, rank: Option<usize> },
    /// Anything else, carried as it is.
    Other,
}

fn index_kind(path: &str) -> IndexKind {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    for base in ["Packages", "Sources"] {
        let Some(suffix) = name.strip_prefix(base) else {
            continue;
        };
        if !(suffix.is_empty() || suffix.starts_with('.')) {
            continue;
        }
        let (dir, rank) = (dir.to_string(), READABLE.iter().position(|r| *r == suffix));
        return if base == "Sources" {
            IndexKind::Sources { dir, rank }
        } else {
            IndexKind::Packages { dir, rank }
        };
    }
    IndexKind::Other
}

/// A suite's Release files as read.
struct SuiteRelease {
    /// `(path, bytes)` of `InRelease`, `Release` and `Release.gpg`, those present.
    files: Vec<(String, Vec<u8>)>,
    /// The Release text (inside `InRelease`'s signature when that is what was read).
    text: String,
    /// It, parsed.
    release: release::Release,
    /// The fingerprint of the upstream key whose signature was checked, with a keyring.
    signer: Option<String>,
}

/// The components and architectures of `rel` the source chose (all it lists when it names none), with `all`
/// whenever the Release lists it, and `source` when asked for.
fn choose(src: &AptSource, rel: &release::Release) -> (Vec<String>, Vec<String>) {
    let listed_archs: Vec<String> = if rel.architectures.is_empty() {
        let mut v: Vec<String> = rel
            .sha256
            .iter()
            .filter_map(|l| {
                l.path
                    .split('/')
                    .find_map(|s| s.strip_prefix("binary-"))
                    .map(str::to_string)
            })
            .collect();
        v.sort();
        v.dedup();
        v
    } else {
        rel.architectures.clone()
    };
    let pick = |wanted: &[String], listed: &[String]| -> Vec<String> {
        if wanted.is_empty() {
            listed.to_vec()
        } else {
            wanted
                .iter()
                .filter(|w| listed.contains(w))
                .cloned()
                .collect()
        }
    };
    let comps = pick(&src.components, &rel.components);
    let mut archs = pick(&src.architectures, &listed_archs);
    if src.architectures.iter().any(|a| a == "source") && !archs.iter().any(|a| a == "source") {
        archs.push("source".into());
    }
    if listed_archs.iter().any(|a| a == "all") && !archs.iter().any(|a| a == "all") {
        archs.push("all".into());
    }
    (comps, archs)
}

impl Fetch {
    /// Read a small file whole (None if absent), refusing one larger than `max`.
    pub(crate) fn read_small(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, IngestError> {
        let Some((r, _)) = self.open(path)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(r, max + 1), &mut bytes)
            .map_err(|e| IngestError::Fetch(format!("reading {}: {e}", self.describe(path))))?;
        if bytes.len() as u64 > max {
            return Err(IngestError::Malformed {
                what: self.describe(path),
                reason: format!("larger than the {max} bytes expected"),
            });
        }
        Ok(Some(bytes))
    }

    /// A suite's `InRelease`, `Release` and `Release.gpg` (those present), checked against the source's
    /// keyring when it has one, and the Release they hold, parsed.
    fn read_release(&self, src: &AptSource, suite: &str) -> Result<SuiteRelease, IngestError> {
        let base = format!("dists/{suite}");
        let mut files = Vec::new();
        for name in ["InRelease", "Release", "Release.gpg"] {
            let path = format!("{base}/{name}");
            if let Some(bytes) = self.read_small(&path, MAX_RELEASE)? {
                files.push((path, bytes));
            }
        }
        let get = |name: &str| {
            files
                .iter()
                .find(|(p, _)| p.ends_with(&format!("/{name}")))
                .map(|(p, b)| (p.clone(), b.as_slice()))
        };
        let utf8 = |path: &str, bytes: &[u8]| {
            String::from_utf8(bytes.to_vec()).map_err(|_| IngestError::Malformed {
                what: self.describe(path),
                reason: "not UTF-8 text".into(),
            })
        };
        let (release_path, raw) = get("InRelease").or_else(|| get("Release")).ok_or_else(|| {
            IngestError::NotFound(format!(
                "{}: suite {suite:?} has neither {base}/InRelease nor {base}/Release",
                src.describe()
            ))
        })?;
        let raw = utf8(&release_path, raw)?;
        let (text, signer) = match &src.keyring {
            None => (
                release::signed_text(&raw).map_err(|reason| IngestError::Malformed {
                    what: self.describe(&release_path),
                    reason,
                })?,
                None,
            ),
            Some(path) => {
                let ring = crate::openpgp::Keyring::load(path).map_err(|reason| {
                    IngestError::BadSource {
                        source_text: src.describe(),
                        reason,
                    }
                })?;
                let checked = if release_path.ends_with("/InRelease") {
                    ring.verify_cleartext(&raw)
                } else {
                    match get("Release.gpg") {
                        Some((_, sig)) => ring
                            .verify_detached(raw.as_bytes(), sig)
                            .map(|fp| (raw.clone(), fp)),
                        None => {
                            Err("no InRelease and no Release.gpg: nothing signed to check".into())
                        }
                    }
                };
                let (text, fp) = checked.map_err(|reason| IngestError::Malformed {
                    what: self.describe(&release_path),
                    reason: format!("upstream signature refused: {reason}"),
                })?;
                (text, Some(fp))
            }
        };
        let release = release::parse_release(&text).map_err(|reason| IngestError::Malformed {
            what: self.describe(&release_path),
            reason,
        })?;
        Ok(SuiteRelease {
            files,
            text,
            release,
            signer,
        })
    }
}

impl Collected<'_, '_> {
    /// Store `bytes` (checked against `expect` when given) as the file at `path`.
    fn store_bytes(
        &mut self,
        path: &str,
        bytes: &[u8],
        expect: Option<&Listed>,
    ) -> Result<BlobRef, IngestError> {
        let what = self.fetch.describe(path);
        let blob = store_stream(
            self.ctx,
            path,
            &what,
            bytes,
            Some(expect.map_or(bytes.len() as u64, |l| l.size)),
            expect.map(|l| l.sha256),
            self.stats,
        )?;
        self.files.insert(path.to_string(), blob);
        Ok(blob)
    }

    /// One suite: its Release files, the chosen indexes, and the pool files they name (collected, not yet
    /// fetched). Returns the components and architectures it had of those asked for.
    fn suite(
        &mut self,
        src: &AptSource,
        suite: &str,
    ) -> Result<(Vec<String>, Vec<String>), IngestError> {
        let base = format!("dists/{suite}");
        let sr = self.fetch.read_release(src, suite)?;
        for (path, bytes) in &sr.files {
            self.store_bytes(path, bytes, None)?;
        }
        let rel = sr.release;
        let (comps, archs) = choose(src, &rel);

        // The chosen index files, grouped so each Packages/Sources directory's variants come together.
        let mut chosen: Vec<&Listed> = rel
            .sha256
            .iter()
            .filter(|l| wanted_index(&l.path, &comps, &archs, &src.languages))
            .collect();
        chosen.sort_by(|a, b| a.path.cmp(&b.path));
        let mut groups: BTreeMap<String, Vec<&Listed>> = BTreeMap::new();
        for l in chosen {
            let key = match index_kind(&l.path) {
                IndexKind::Packages { dir, .. } => format!("P {dir}"),
                IndexKind::Sources { dir, .. } => format!("S {dir}"),
                IndexKind::Other => format!("O {}", l.path),
            };
            groups.entry(key).or_default().push(l);
        }
        let no_copies = BTreeMap::new();
        let by_hash = if rel.acquire_by_hash {
            &rel.by_hash
        } else {
            &no_copies
        };
        for files in groups.values() {
            self.index_group(&base, files, by_hash)?;
        }
        let has = |what: &str| rel.sha256.iter().any(|l| l.path.starts_with(what));
        let comps_had: Vec<String> = comps
            .into_iter()
            .filter(|c| has(&format!("{c}/")))
            .collect();
        let archs_had: Vec<String> = archs
            .into_iter()
            .filter(|a| {
                comps_had.iter().any(|c| {
                    has(&format!("{c}/binary-{a}/"))
                        || (a == "source" && has(&format!("{c}/source/")))
                })
            })
            .collect();
        Ok((comps_had, archs_had))
    }

    /// The variants of one index (or one other file): store each that exists, checked against the Release,
    /// and parse the best readable variant of a `Packages` or `Sources` index.
    fn index_group(
        &mut self,
        base: &str,
        files: &[&Listed],
        by_hash: &BTreeMap<String, Vec<(&'static str, String)>>,
    ) -> Result<(), IngestError> {
        // The best readable variant so far: (rank in READABLE, path, bytes, whether it is a Sources index).
        let mut best: Option<(usize, String, Vec<u8>, bool)> = None;
        let mut present = 0;
        for l in files {
            let path = format!("{base}/{}", l.path);
            if l.size > MAX_INDEX {
                return Err(IngestError::Malformed {
                    what: self.fetch.describe(&path),
                    reason: format!(
                        "the Release lists it as {} bytes, more than the {MAX_INDEX}-byte limit for an index",
                        l.size
                    ),
                });
            }
            let Some(bytes) = self.fetch.read_small(&path, l.size)? else {
                continue;
            };
            present += 1;
            let blob = self.store_bytes(&path, &bytes, Some(l))?;
            // The same bytes under each name apt may ask for them by (`by-hash/SHA512/<hex>`, …).
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            for (list, hex) in by_hash.get(&l.path).into_iter().flatten() {
                self.files
                    .insert(format!("{dir}/by-hash/{list}/{hex}"), blob);
            }
            let (rank, sources) = match index_kind(&l.path) {
                IndexKind::Packages { rank: Some(r), .. } => (r, false),
                IndexKind::Sources { rank: Some(r), .. } => (r, true),
                _ => continue,
            };
            if !matches!(&best, Some((r, ..)) if *r <= rank) {
                best = Some((rank, path, bytes, sources));
            }
        }
        let Some(first) = files.first() else {
            return Ok(());
        };
        if index_kind(&first.path) == IndexKind::Other {
            return Ok(());
        }
        let Some((_, path, bytes, sources)) = best else {
            let dir = first.path.rsplit_once('/').map_or("", |(d, _)| d);
            return Err(IngestError::NotFound(format!(
                "{}: none of the indexes the Release lists ({}) is in the repository{}",
                self.fetch.describe(&format!("{base}/{dir}")),
                files
                    .iter()
                    .map(|l| l.path.rsplit('/').next().unwrap_or(&l.path))
                    .collect::<Vec<_>>()
                    .join(", "),
                if present > 0 {
                    " in a form ferry reads (plain, .gz, .zst, .xz, .lzma)"
                } else {
                    ""
                }
            )));
        };
        self.parse_index(&path, &bytes, sources)
    }

    /// Collect the pool files `Packages` or `Sources` at `path` names.
    fn parse_index(&mut self, path: &str, bytes: &[u8], sources: bool) -> Result<(), IngestError> {
        let what = self.fetch.describe(path);
        let pool = &mut self.pool;
        let mut add = |file: String, sha256: Sha256Digest, size: u64| {
            add_pool(
                pool,
                file,
                PoolFile {
                    sha256,
                    size,
                    listed_in: path.to_string(),
                },
            )
        };
        let on_paragraph = |p: Paragraph| -> Result<(), String> {
            for (file, sha256, size) in pool_entries(&p, sources)? {
                add(file, sha256, size)?;
            }
            Ok(())
        };
        decompress_into(path, bytes, Paragraphs::new(on_paragraph))
            .map_err(|reason| IngestError::Malformed { what, reason })
    }

    /// Fetch and check every pool file the indexes named (those the store holds whole are not fetched).
    fn pool_files(&mut self) -> Result<(), IngestError> {
        let pool = std::mem::take(&mut self.pool);
        for (path, p) in pool {
            if self.files.contains_key(&path) {
                continue;
            }
            if let Some(b) = already_stored(self.ctx, &p.sha256, p.size)? {
                self.files.insert(path, b);
                continue;
            }
            let what = format!("{} (listed in {})", self.fetch.describe(&path), p.listed_in);
            let (reader, _) = self.fetch.open(&path)?.ok_or_else(|| {
                IngestError::NotFound(format!("{what} is missing from the repository"))
            })?;
            let blob = store_stream(
                self.ctx,
                &path,
                &what,
                reader,
                Some(p.size),
                Some(p.sha256),
                self.stats,
            )?;
            self.files.insert(path, blob);
        }
        Ok(())
    }
}

/// Note pool file `file` as `p` says; the same file named again must be listed alike (one file, one digest).
fn add_pool(
    pool: &mut BTreeMap<String, PoolFile>,
    file: String,
    p: PoolFile,
) -> Result<(), String> {
    match pool.get(&file) {
        Some(held) if held.sha256 != p.sha256 || held.size != p.size => Err(format!(
            "{file} is listed with SHA256 {} ({} bytes) in {} but {} ({} bytes) in {}",
            p.sha256.0, p.size, p.listed_in, held.sha256.0, held.size, held.listed_in
        )),
        Some(_) => Ok(()),
        None => {
            pool.insert(file, p);
            Ok(())
        }
    }
}

/// The pool files one paragraph of a `Packages` index (or, with `sources`, of a `Sources` index) names: each
/// path (checked to stay inside the repository), SHA-256 and size.
fn pool_entries(p: &Paragraph, sources: bool) -> Result<Vec<(String, Sha256Digest, u64)>, String> {
    let name = field(p, "Package").unwrap_or("?");
    let mut out = Vec::new();
    if sources {
        let dir = field(p, "Directory").ok_or_else(|| format!("source {name} has no Directory"))?;
        let list = field(p, "Checksums-Sha256")
            .ok_or_else(|| format!("source {name} has no Checksums-Sha256"))?;
        for line in list.lines().filter(|l| !l.trim().is_empty()) {
            let mut w = line.split_whitespace();
            let (Some(hex), Some(size), Some(file)) = (w.next(), w.next(), w.next()) else {
                return Err(format!("source {name}: bad checksum line {line:?}"));
            };
            let (sha, size) = sha_and_size(hex, size)
                .ok_or_else(|| format!("source {name}: bad checksum line {line:?}"))?;
            out.push((format!("{dir}/{file}"), sha, size));
        }
    } else {
        let file = field(p, "Filename").ok_or_else(|| format!("package {name} has no Filename"))?;
        let (Some(hex), Some(size)) = (field(p, "SHA256"), field(p, "Size")) else {
            return Err(format!(
                "package {name} has no SHA256 and Size: ferry needs both to check {file}"
            ));
        };
        let (sha, size) = sha_and_size(hex, size)
            .ok_or_else(|| format!("package {name}: bad SHA256 {hex:?} or Size {size:?}"))?;
        out.push((file.to_string(), sha, size));
    }
    for (file, ..) in &out {
        ferry_protocol::validate_rel_path(file).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The pool files a `Packages` or `Sources` index at `path` (compressed as its name says) names, in order (for
/// the fuzz targets; the walk checks each against the others as it goes).
pub(crate) fn index_entries(
    path: &str,
    bytes: &[u8],
    sources: bool,
) -> Result<Vec<(String, Sha256Digest, u64)>, String> {
    let mut out = Vec::new();
    decompress_into(
        path,
        bytes,
        Paragraphs::new(|p: Paragraph| {
            out.extend(pool_entries(&p, sources)?);
            Ok(())
        }),
    )?;
    Ok(out)
}

fn sha_and_size(hex: &str, size: &str) -> Option<(Sha256Digest, u64)> {
    Some((
        format!("sha256:{hex}").parse().ok()?,
        size.trim().parse().ok()?,
    ))
}

/// Whether the index at `path` (relative to the suite) is one ferry carries for these choices.
fn wanted_index(path: &str, comps: &[String], archs: &[String], languages: &[String]) -> bool {
    let Some(rest) = comps
        .iter()
        .filter_map(|c| path.strip_prefix(c.as_str())?.strip_prefix('/'))
        .min_by_key(|r| r.len())
    else {
        return false;
    };
    let (dir, name) = rest.split_once('/').unwrap_or(("", rest));
    if name.contains('/') {
        return false;
    }
    if let Some(arch) = dir.strip_prefix("binary-") {
        return archs.iter().any(|a| a == arch)
            && (name == "Release" || matches!(index_kind(name), IndexKind::Packages { .. }));
    }
    match dir {
        "source" => {
            archs.iter().any(|a| a == "source")
                && (name == "Release" || matches!(index_kind(name), IndexKind::Sources { .. }))
        }
        "i18n" if !languages.is_empty() && name == "Index" => true,
        "i18n" => name.strip_prefix("Translation-").is_some_and(|t| {
            let lang = t.split('.').next().unwrap_or(t);
            languages.iter().any(|l| {
                lang == l
                    || lang
                        .strip_prefix(l.as_str())
                        .is_some_and(|r| r.starts_with('_'))
            })
        }),
        _ => false,
    }
}

/// Most memory an xz or lzma index may make its decoder take: `xz -9` needs 65 MiB; a header asking for more is
/// refused by name rather than obeyed.
const XZ_MEMLIMIT: u64 = 256 << 20;

/// Decode `bytes` with liblzma's `decoder` (xz or lzma) into `sink`.
fn liblzma_into(
    decoder: Result<liblzma::stream::Stream, liblzma::stream::Error>,
    bytes: &[u8],
    sink: &mut impl Write,
) -> std::io::Result<()> {
    let mut decoded = liblzma::read::XzDecoder::new_stream(bytes, decoder?);
    std::io::copy(&mut decoded, sink).map(drop)
}

/// Decompress `bytes` (by `path`'s suffix) into `sink`, then finish it.
fn decompress_into<F>(path: &str, bytes: &[u8], mut sink: Paragraphs<F>) -> Result<(), String>
where
    F: FnMut(Paragraph) -> Result<(), String>,
{
    let result = decompress(path, bytes, &mut sink);
    // A parse error inside the sink is the better message; a decoder error otherwise.
    match (result, sink.finish()) {
        (_, Err(parse)) => Err(parse),
        (Err(e), Ok(())) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// Decompress `bytes` (by `path`'s suffix: none, `.gz`, `.zst`, `.xz`, `.lzma`) into `sink`.
fn decompress(path: &str, bytes: &[u8], sink: &mut impl Write) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot decompress: {e}");
    let suffix = path.rsplit_once('.').map(|(_, s)| s).unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or(path);
    match suffix {
        _ if !name.contains('.') => sink.write_all(bytes).map_err(io),
        "gz" => std::io::copy(&mut flate2::read::MultiGzDecoder::new(bytes), sink)
            .map(drop)
            .map_err(io),
        "zst" => zstd::stream::read::Decoder::new(bytes)
            .and_then(|mut d| std::io::copy(&mut d, sink))
            .map(drop)
            .map_err(io),
        // liblzma, the reference decoder, with a bound on its memory: lzma-rs overflowed an integer on a
        // damaged xz stream (found by the fuzzer; `testdata/overflowing.xz`).
        "xz" => liblzma_into(
            liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, liblzma::stream::CONCATENATED),
            bytes,
            sink,
        )
        .map_err(io),
        "lzma" => liblzma_into(
            liblzma::stream::Stream::new_lzma_decoder(XZ_MEMLIMIT),
            bytes,
            sink,
        )
        .map_err(io),
        other => Err(format!("cannot read .{other} indexes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        let s = AptSource::parse("https://deb.example/debian/?suites=bookworm,bookworm-updates&components=main&architectures=amd64,all&into=debian").unwrap();
        assert_eq!(s.root, AptRoot::Url("https://deb.example/debian".into()));
        assert_eq!(s.suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(s.components, ["main"]);
        assert_eq!(s.architectures, ["amd64", "all"]);
        assert_eq!(s.languages, ["en"]);
        assert_eq!(s.into.as_deref(), Some("debian"));
        let d = AptSource::parse("/srv/repo?languages=none").unwrap();
        assert_eq!(d.root, AptRoot::Dir("/srv/repo".into()));
        assert!(d.languages.is_empty());
        for bad in [
            "https://deb.example/debian",
            "/srv/repo?color=blue",
            "/srv/repo?suites",
            "/srv/repo?into=../x",
            "/srv/repo?suites=../x",
            "",
        ] {
            assert!(AptSource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn partial_options_parse() {
        let s = AptSource::parse(
            "/srv/repo?packages=curl,nginx (>= 1.22),jq=1.6-2&recommends=yes&alternatives=all&essential=yes&allow-missing=yes&keyring=/k.gpg",
        )
        .unwrap();
        let p = s.partial.unwrap();
        assert_eq!(
            p.packages.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            ["curl", "nginx (>= 1.22)", "jq=1.6-2"]
        );
        assert!(p.recommends && p.all_alternatives && p.essential && p.allow_missing);
        assert_eq!(s.keyring.as_deref(), Some(std::path::Path::new("/k.gpg")));
        assert!(
            s.languages.is_empty(),
            "a partial mirror carries no translations"
        );
        let f = AptSource::parse("/srv/repo?packages-file=/l.txt").unwrap();
        assert_eq!(
            f.partial.unwrap().packages_file.as_deref(),
            Some(std::path::Path::new("/l.txt"))
        );
        assert!(AptSource::parse("/srv/repo?suites=a")
            .unwrap()
            .partial
            .is_none());
        for (bad, says) in [
            ("/srv/repo?recommends=yes", "packages="),
            ("/srv/repo?packages=a&recommends=maybe", "yes or no"),
            ("/srv/repo?packages=a&alternatives=some", "first or all"),
            ("/srv/repo?packages=a&languages=en", "translations"),
            (
                "/srv/repo?packages=a&architectures=amd64,source",
                "not source",
            ),
            ("/srv/repo?packages=a (~ 1)", "no relation"),
        ] {
            let e = AptSource::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn index_choice() {
        let comps = ["main".to_string(), "updates/main".to_string()];
        let archs = ["amd64".to_string(), "all".to_string()];
        let en = ["en".to_string()];
        let w = |p: &str| wanted_index(p, &comps, &archs, &en);
        assert!(w("main/binary-amd64/Packages.xz"));
        assert!(w("main/binary-amd64/Release"));
        assert!(w("main/binary-all/Packages"));
        assert!(w("updates/main/binary-amd64/Packages.gz"));
        assert!(w("main/i18n/Translation-en.bz2"));
        assert!(w("main/i18n/Translation-en_GB"));
        assert!(w("main/i18n/Index"));
        assert!(!w("main/i18n/Translation-de.bz2"));
        assert!(!w("main/i18n/Translation-eo"));
        assert!(!w("main/binary-arm64/Packages.xz"));
        assert!(!w("contrib/binary-amd64/Packages.xz"));
        assert!(!w("main/source/Sources.xz"));
        assert!(!w("main/Contents-amd64.gz"));
        assert!(!w("main/binary-amd64/by-hash/SHA256/00"));
        assert_eq!(
            index_kind("main/binary-amd64/Packages.xz"),
            IndexKind::Packages {
                dir: "main/binary-amd64".into(),
                rank: Some(3)
            }
        );
        assert_eq!(
            index_kind("main/binary-amd64/Packages.bz2"),
            IndexKind::Packages {
                dir: "main/binary-amd64".into(),
                rank: None
            }
        );
        assert_eq!(index_kind("main/binary-amd64/PackagesX"), IndexKind::Other);
        assert!(w("main/binary-amd64/Packages.bz2"));
    }

    #[test]
    fn every_compression_parses() {
        let text = b"Package: a\nFilename: pool/a.deb\nSHA256: 00\nSize: 1\n\n";
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(text).unwrap();
            e.finish().unwrap()
        };
        let xz = liblzma::encode_all(&text[..], 6).unwrap();
        let lzma = {
            let options = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
            let stream = liblzma::stream::Stream::new_lzma_encoder(&options).unwrap();
            let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
            e.write_all(text).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&text[..], 3).unwrap();
        for (name, bytes) in [
            ("Packages", text.to_vec()),
            ("Packages.gz", gz),
            ("Packages.xz", xz),
            ("Packages.lzma", lzma),
            ("Packages.zst", zst),
        ] {
            let mut n = 0;
            decompress_into(
                name,
                &bytes,
                Paragraphs::new(|p| {
                    assert_eq!(field(&p, "Filename"), Some("pool/a.deb"));
                    n += 1;
                    Ok(())
                }),
            )
            .unwrap();
            assert_eq!(n, 1, "{name}");
        }
        let err =
            decompress_into("Packages.xz", b"garbage", Paragraphs::new(|_| Ok(()))).unwrap_err();
        assert!(err.contains("decompress"), "{err}");
    }

    /// A damaged xz index the fuzzer found (lzma-rs overflowed an integer on it) is refused, not a panic.
    #[test]
    fn a_damaged_xz_index_is_refused() {
        let bytes = include_bytes!("testdata/overflowing.xz");
        let err = decompress_into("Packages.xz", bytes, Paragraphs::new(|_| Ok(()))).unwrap_err();
        assert!(err.contains("decompress"), "{err}");
    }
}
