//! Partial apt mirrors: the packages asked for and their dependency closure ([`super::closure`]), with indexes
//! of their own, re-signed with the store's repository key.
//!
//! For each suite: the Release (checked against the source's keyring when it has one) and the best readable
//! variant of every chosen `Packages` index (checked against the Release's SHA-256) are read, not carried. The
//! closure is taken over every chosen index of every suite at once, as apt sees all its sources. Then each
//! suite gets its own `Packages` per index directory — the chosen stanzas, verbatim, in the source's order —
//! in plain text and every compression the source listed that ferry writes (`.gz`, `.xz`, `.zst`, `.bz2`), a
//! `Release` (the source's fields but its hash lists, `Date` now, no `Valid-Until`, `Acquire-By-Hash` or
//! translations), an `InRelease` and a `Release.gpg` signed with the repository key, and the pool files of the
//! chosen packages. The repository root gets the public key, `ferry-repository-key.asc` (what `signed-by` names),
//! and `ferry-closure.json`: every package with why it was taken, what nothing satisfied, and who signed what.

use super::closure::{self, ClosureError, Options, Pkg, Reason, Request, Universe};
use super::fetch::Fetch;
use super::{
    add_pool, choose, index_kind, AptSource, Collected, IndexKind, Partial, PoolFile, SuiteRelease,
    MAX_INDEX, READABLE,
};
use crate::ingest::partial::{
    compress, Plan, Report, ReportOptions, ReportPackage, CLOSURE_FILE, KEY_FILE,
};
use crate::ingest::IngestError;
use sha2::Digest;
use std::collections::BTreeMap;

/// The compressions ferry writes `Packages` in (besides plain text), by suffix.
const WRITTEN: [&str; 4] = [".gz", ".xz", ".zst", ".bz2"];

/// One `Packages` index read from the source.
struct Index {
    suite: usize,
    /// Its directory relative to the suite (`main/binary-amd64`).
    dir: String,
    /// The compressions the source's Release lists for it (`""`, `.gz`, …).
    listed: Vec<String>,
    text: String,
}

impl Collected<'_, '_> {
    /// Collect a partial mirror of `suites`: generated files into `self.files`, the chosen packages' pool files
    /// into `self.pool`. Returns the components and architectures the suites had of those asked for.
    pub(super) fn partial(
        &mut self,
        src: &AptSource,
        partial: &Partial,
        suites: &[String],
    ) -> Result<(Vec<String>, Vec<String>), IngestError> {
        let loaded = load(self.fetch, src, partial, suites)?;
        let Loaded {
            requests,
            releases,
            indexes,
            used_comps,
            used_archs,
            native,
        } = &loaded;
        let universe = universe(self.fetch, src, suites, indexes)?;
        let closure = resolve(src, partial, &loaded, &universe)?;

        // Which stanzas each index keeps, in its own order; their pool files.
        let mut kept: Vec<Vec<&Pkg<'_>>> = vec![Vec::new(); indexes.len()];
        for (q, _) in &closure.packages {
            let p = &universe.pkgs[*q];
            kept[p.index].push(p);
            let listed_in = format!(
                "dists/{}/{}/Packages",
                suites[indexes[p.index].suite], indexes[p.index].dir
            );
            let (file, sha256, size) = pool_file(p).map_err(|reason| IngestError::Malformed {
                what: self.fetch.describe(&listed_in),
                reason,
            })?;
            let entry = PoolFile {
                sha256,
                size,
                listed_in,
            };
            add_pool(&mut self.pool, file, entry).map_err(|reason| IngestError::Malformed {
                what: src.describe(),
                reason,
            })?;
        }
        for k in &mut kept {
            k.sort_by_key(|p| p.line);
        }

        let key = self.ctx.store.repository_key()?;
        let sign_err = |reason: String| IngestError::Malformed {
            what: "the repository key".into(),
            reason,
        };
        let mut upstream_signers = BTreeMap::new();
        for (n, (sr, comps, archs)) in releases.iter().enumerate() {
            let suite = &suites[n];
            let mut listed = Vec::new();
            for (i, index) in indexes.iter().enumerate().filter(|(_, x)| x.suite == n) {
                let text: String = kept[i]
                    .iter()
                    .map(|p| format!("{}\n\n", p.stanza))
                    .collect();
                for suffix in std::iter::once("").chain(
                    WRITTEN
                        .iter()
                        .copied()
                        .filter(|s| index.listed.iter().any(|l| l == s)),
                ) {
                    let bytes = compress(suffix, text.as_bytes()).map_err(|e| IngestError::Io {
                        path: format!("{}/Packages{suffix}", index.dir),
                        source: e,
                    })?;
                    let rel = format!("{}/Packages{suffix}", index.dir);
                    listed.push((
                        rel.clone(),
                        hex::encode(sha2::Sha256::digest(&bytes)),
                        bytes.len(),
                    ));
                    self.store_bytes(&format!("dists/{suite}/{rel}"), &bytes, None)?;
                }
            }
            let release = release_text(&sr.text, comps, archs, &listed, closure.packages.len());
            let inrelease = key.clearsign(&release).map_err(sign_err)?;
            let detached = key.detached(release.as_bytes()).map_err(sign_err)?;
            self.store_bytes(&format!("dists/{suite}/Release"), release.as_bytes(), None)?;
            self.store_bytes(
                &format!("dists/{suite}/InRelease"),
                inrelease.as_bytes(),
                None,
            )?;
            self.store_bytes(
                &format!("dists/{suite}/Release.gpg"),
                detached.as_bytes(),
                None,
            )?;
            if let Some(fp) = &sr.signer {
                upstream_signers.insert(suite.clone(), fp.clone());
            }
        }
        self.store_bytes(KEY_FILE, key.public_armored().as_bytes(), None)?;

        let report = Report {
            format: "apt".into(),
            requests: requests.iter().map(|r| r.to_string()).collect(),
            options: ReportOptions {
                architecture: native.clone(),
                recommends: partial.recommends,
                alternatives: if partial.all_alternatives {
                    "all"
                } else {
                    "first"
                }
                .to_string(),
                essential: partial.essential,
                allow_missing: partial.allow_missing,
            },
            signed_by: key.fingerprint(),
            upstream_signers,
            packages: report_packages(&universe, &closure, indexes, suites),
            missing: closure.missing.clone(),
            unmet_recommends: closure.unmet_recommends.clone(),
        };
        let json = serde_json::to_vec_pretty(&report).expect("the report serializes");
        self.store_bytes(CLOSURE_FILE, &json, None)?;
        Ok((used_comps.clone(), used_archs.clone()))
    }
}

/// A partial mirror's requests and what its closure is taken over: each suite's Release and chosen indexes.
struct Loaded {
    requests: Vec<Request>,
    /// Per suite: its Release, and the components and architectures chosen of it.
    releases: Vec<(SuiteRelease, Vec<String>, Vec<String>)>,
    indexes: Vec<Index>,
    used_comps: Vec<String>,
    used_archs: Vec<String>,
    /// The architecture `all` packages and unqualified requests resolve in.
    native: String,
}

/// Read the requests, and each suite's Release (checked against the keyring) and chosen `Packages` indexes.
fn load(
    fetch: &Fetch,
    src: &AptSource,
    partial: &Partial,
    suites: &[String],
) -> Result<Loaded, IngestError> {
    let bad = |reason: String| IngestError::BadSource {
        source_text: src.describe(),
        reason,
    };
    let mut requests = partial.packages.clone();
    if let Some(path) = &partial.packages_file {
        let text = std::fs::read_to_string(path).map_err(|source| IngestError::Io {
            path: path.display().to_string(),
            source,
        })?;
        requests.extend(
            Request::parse_list(&text)
                .map_err(|e| bad(format!("packages-file {}: {e}", path.display())))?,
        );
    }
    if requests.is_empty() && !partial.essential {
        return Err(bad("packages= names no package".into()));
    }
    let mut releases = Vec::new();
    let mut indexes = Vec::new();
    let (mut used_comps, mut used_archs) = (Vec::new(), Vec::new());
    for (n, suite) in suites.iter().enumerate() {
        let sr = fetch.read_release(src, suite)?;
        let (comps, archs) = choose(src, &sr.release);
        // `No-Support-for-Architecture-all: Packages`: the architecture-specific indexes hold the `all`
        // packages too, and clients read no binary-all index.
        let all_inside = sr.text.lines().any(|l| {
            l.strip_prefix("No-Support-for-Architecture-all:")
                .is_some_and(|v| v.split_whitespace().any(|w| w == "Packages"))
        }) && archs.iter().any(|a| a != "all" && a != "source");
        for comp in &comps {
            for arch in archs
                .iter()
                .filter(|a| *a != "source" && !(all_inside && *a == "all"))
            {
                let dir = format!("{comp}/binary-{arch}");
                if let Some(index) = read_packages(fetch, suite, n, &dir, &sr)? {
                    used_comps.push(comp.clone());
                    used_archs.push(arch.clone());
                    indexes.push(index);
                }
            }
        }
        releases.push((sr, comps, archs));
    }
    let native = src
        .architectures
        .iter()
        .chain(used_archs.iter())
        .find(|a| *a != "all" && *a != "source")
        .cloned()
        .ok_or_else(|| bad("no architecture but all to resolve dependencies for".into()))?;
    Ok(Loaded {
        requests,
        releases,
        indexes,
        used_comps,
        used_archs,
        native,
    })
}

/// Every stanza of `indexes`, looked up by name and by what it provides.
fn universe<'t>(
    fetch: &Fetch,
    src: &AptSource,
    suites: &[String],
    indexes: &'t [Index],
) -> Result<Universe<'t>, IngestError> {
    let mut pkgs: Vec<Pkg<'t>> = Vec::new();
    for (i, index) in indexes.iter().enumerate() {
        let what = fetch.describe(&format!(
            "dists/{}/{}/Packages",
            suites[index.suite], index.dir
        ));
        closure::parse_index(&index.text, i, &what, &mut pkgs).map_err(|reason| {
            IngestError::Malformed {
                what: src.describe(),
                reason,
            }
        })?;
    }
    Universe::new(pkgs).map_err(|reason| IngestError::Malformed {
        what: src.describe(),
        reason,
    })
}

/// The closure of the requests, or why there is none.
fn resolve(
    src: &AptSource,
    partial: &Partial,
    loaded: &Loaded,
    universe: &Universe<'_>,
) -> Result<closure::Closure, IngestError> {
    let opts = Options {
        native: loaded.native.clone(),
        recommends: partial.recommends,
        all_alternatives: partial.all_alternatives,
        essential: partial.essential,
        allow_missing: partial.allow_missing,
    };
    closure::resolve(universe, &loaded.requests, &opts).map_err(|e| {
        let reason = match &e {
            ClosureError::Missing(_) | ClosureError::Conflict(_) | ClosureError::Loop(_) => {
                format!(
                    "the closure of {} cannot be made: {e}",
                    list(&loaded.requests)
                )
            }
            ClosureError::Malformed(_) => e.to_string(),
        };
        IngestError::Malformed {
            what: src.describe(),
            reason,
        }
    })
}

/// The closure's packages as the report lists them.
fn report_packages(
    universe: &Universe<'_>,
    closure: &closure::Closure,
    indexes: &[Index],
    suites: &[String],
) -> Vec<ReportPackage> {
    let describe_at = |i: usize| closure::describe(&universe.pkgs[closure.packages[i].0]);
    closure
        .packages
        .iter()
        .map(|(q, why)| {
            let p = &universe.pkgs[*q];
            let index = &indexes[p.index];
            let (reason, of, relation) = match why {
                Reason::Requested(r) => ("requested".to_string(), None, Some(r.clone())),
                Reason::Essential => ("essential".to_string(), None, None),
                Reason::Dependency {
                    of,
                    field,
                    relation,
                } => (
                    field.to_string(),
                    Some(describe_at(*of)),
                    Some(relation.clone()),
                ),
            };
            let (filename, size) = pool_file(p).map(|(f, _, n)| (f, n)).unwrap_or_default();
            ReportPackage {
                package: p.name.to_string(),
                version: p.version.to_string(),
                architecture: p.arch.to_string(),
                suite: suites[index.suite].clone(),
                index: index.dir.clone(),
                filename,
                size,
                reason,
                of,
                relation,
            }
        })
        .collect()
}

/// The closure a partial apt mirror of `src` would carry, read from the repository (its Release checked
/// against the keyring when there is one) without fetching a pool file or storing anything.
pub fn plan(src: &AptSource) -> Result<Plan, IngestError> {
    let partial = src.partial.as_ref().ok_or_else(|| IngestError::BadSource {
        source_text: src.describe(),
        reason: "not a partial mirror: name its packages= or packages-file=".into(),
    })?;
    let fetch = Fetch::new(&src.root)?;
    let suites = super::suites_of(&fetch, src)?.0;
    let loaded = load(&fetch, src, partial, &suites)?;
    let universe = universe(&fetch, src, &suites, &loaded.indexes)?;
    let closure = resolve(src, partial, &loaded, &universe)?;
    let packages = report_packages(&universe, &closure, &loaded.indexes, &suites);
    Ok(Plan {
        source: src.describe(),
        requests: loaded.requests.iter().map(|r| r.to_string()).collect(),
        bytes: packages.iter().map(|p| p.size).sum(),
        packages,
        missing: closure.missing.clone(),
        unmet_recommends: closure.unmet_recommends.clone(),
    })
}

/// The best readable variant of the `Packages` index in `dir` that the Release lists, checked against its
/// SHA-256 and size, decompressed. `None` when the Release lists none there.
fn read_packages(
    fetch: &Fetch,
    suite: &str,
    n: usize,
    dir: &str,
    sr: &SuiteRelease,
) -> Result<Option<Index>, IngestError> {
    let mut variants: Vec<(usize, &super::release::Listed, String)> = Vec::new();
    for l in &sr.release.sha256 {
        if let IndexKind::Packages { dir: d, rank } = index_kind(&l.path) {
            if d == dir {
                let suffix = l
                    .path
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("Packages")
                    .to_string();
                variants.push((rank.unwrap_or(usize::MAX), l, suffix));
            }
        }
    }
    if variants.is_empty() {
        return Ok(None);
    }
    let listed: Vec<String> = variants.iter().map(|(_, _, s)| s.clone()).collect();
    variants.sort_by_key(|(rank, ..)| *rank);
    for (_, l, _) in variants.iter().filter(|(rank, ..)| *rank < READABLE.len()) {
        let path = format!("dists/{suite}/{}", l.path);
        if l.size > MAX_INDEX {
            return Err(IngestError::Malformed {
                what: fetch.describe(&path),
                reason: format!("the Release lists it as {} bytes, more than the {MAX_INDEX}-byte limit for an index", l.size),
            });
        }
        let Some(bytes) = fetch.read_small(&path, l.size)? else {
            continue;
        };
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        if bytes.len() as u64 != l.size || format!("sha256:{digest}") != l.sha256.to_string() {
            return Err(IngestError::Malformed {
                what: fetch.describe(&path),
                reason: format!(
                    "{} bytes with SHA256 {digest}, but the Release lists {} bytes with {}",
                    bytes.len(),
                    l.size,
                    l.sha256.0
                ),
            });
        }
        let mut text = Vec::new();
        super::decompress(&path, &bytes, &mut text).map_err(|reason| IngestError::Malformed {
            what: fetch.describe(&path),
            reason,
        })?;
        let text = String::from_utf8(text).map_err(|_| IngestError::Malformed {
            what: fetch.describe(&path),
            reason: "not UTF-8 text".into(),
        })?;
        return Ok(Some(Index {
            suite: n,
            dir: dir.to_string(),
            listed,
            text,
        }));
    }
    Err(IngestError::NotFound(format!(
        "{}: none of the Packages indexes the Release lists is in the repository in a form ferry reads (plain, .gz, .zst, .xz, .lzma)",
        fetch.describe(&format!("dists/{suite}/{dir}"))
    )))
}

fn list(requests: &[Request]) -> String {
    let mut s: String = requests
        .iter()
        .take(8)
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if requests.len() > 8 {
        s.push_str(&format!(" and {} more", requests.len() - 8));
    }
    if s.is_empty() {
        s = "the essential packages".into();
    }
    s
}

/// The pool file a stanza names: `Filename`, `SHA256`, `Size`.
fn pool_file(p: &Pkg<'_>) -> Result<(String, ferry_protocol::Sha256Digest, u64), String> {
    let field = |name: &str| {
        p.stanza.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(str::trim)
        })
    };
    let paragraph = vec![
        ("Package".to_string(), p.name.to_string()),
        (
            "Filename".to_string(),
            field("Filename").unwrap_or_default().to_string(),
        ),
        (
            "SHA256".to_string(),
            field("SHA256").unwrap_or_default().to_string(),
        ),
        (
            "Size".to_string(),
            field("Size").unwrap_or_default().to_string(),
        ),
    ];
    let paragraph: Vec<(String, String)> = paragraph
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let mut entries = super::pool_entries(&paragraph, false)?;
    Ok(entries.remove(0))
}

/// The fields of the source Release a partial mirror's Release does not copy.
const NOT_COPIED: [&str; 11] = [
    "Date",
    "Valid-Until",
    "Acquire-By-Hash",
    "Signed-By",
    "Architectures",
    "Components",
    "Description",
    "MD5Sum",
    "SHA1",
    "SHA256",
    "SHA512",
];

/// A partial mirror's Release: the source's fields but those in [`NOT_COPIED`], then its own.
fn release_text(
    source: &str,
    comps: &[String],
    archs: &[String],
    files: &[(String, String, usize)],
    packages: usize,
) -> String {
    let mut out = String::new();
    let mut copying = false;
    let mut description = None;
    for line in source.lines() {
        if line.starts_with([' ', '\t']) {
            if copying {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        let key = line.split(':').next().unwrap_or("");
        if key == "Description" {
            description = line.split_once(':').map(|(_, v)| v.trim().to_string());
        }
        copying =
            !line.trim().is_empty() && !NOT_COPIED.iter().any(|k| k.eq_ignore_ascii_case(key));
        if copying {
            out.push_str(line);
            out.push('\n');
        }
    }
    let date = httpdate::fmt_http_date(std::time::SystemTime::now()).replace("GMT", "UTC");
    out.push_str(&format!("Date: {date}\n"));
    let archs: Vec<&str> = archs
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "source")
        .collect();
    out.push_str(&format!("Architectures: {}\n", archs.join(" ")));
    out.push_str(&format!("Components: {}\n", comps.join(" ")));
    out.push_str(&format!(
        "Description: {}partial mirror by ferry: {packages} packages and their dependencies\n",
        description.map(|d| format!("{d}; ")).unwrap_or_default()
    ));
    out.push_str("SHA256:\n");
    for (path, hex, size) in files {
        out.push_str(&format!(" {hex} {size:>16} {path}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_keeps_the_sources_fields_but_hashes_dates_and_by_hash() {
        let source = "Origin: Debian\nLabel: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n\
                      Valid-Until: Sat, 18 Jul 2026 10:16:37 UTC\nAcquire-By-Hash: yes\nArchitectures: amd64 arm64\n\
                      Components: main contrib\nDescription: Debian 12\nMD5Sum:\n 00 1 main/x\nSHA256:\n 11 1 main/x\n";
        let files = vec![(
            "main/binary-amd64/Packages".to_string(),
            "ab".repeat(32),
            10,
        )];
        let r = release_text(
            source,
            &["main".into()],
            &["amd64".into(), "all".into()],
            &files,
            3,
        );
        assert!(
            r.starts_with(
                "Origin: Debian\nLabel: Debian\nSuite: stable\nCodename: bookworm\nDate: "
            ),
            "{r}"
        );
        for gone in [
            "Valid-Until",
            "Acquire-By-Hash",
            "MD5Sum",
            " 00 1",
            " 11 1",
            "Jul 2026",
        ] {
            assert!(!r.contains(gone), "{gone} in {r}");
        }
        assert!(
            r.contains("Architectures: amd64 all\nComponents: main\n"),
            "{r}"
        );
        assert!(
            r.contains("Description: Debian 12; partial mirror by ferry: 3 packages"),
            "{r}"
        );
        assert!(
            r.ends_with(&format!(
                "SHA256:\n {}               10 main/binary-amd64/Packages\n",
                "ab".repeat(32)
            )),
            "{r}"
        );
        let parsed = super::super::release::parse_release(&r).unwrap();
        assert_eq!(parsed.sha256.len(), 1);
        assert_eq!(parsed.components, ["main"]);
    }

    #[test]
    fn compressions_round_trip() {
        let text = b"Package: a\nVersion: 1\n\n".repeat(50);
        for suffix in std::iter::once("").chain(WRITTEN) {
            let bytes = compress(suffix, &text).unwrap();
            let mut back = Vec::new();
            if suffix == ".bz2" {
                std::io::Read::read_to_end(&mut bzip2::read::BzDecoder::new(&bytes[..]), &mut back)
                    .unwrap();
            } else {
                super::super::decompress(&format!("x/Packages{suffix}"), &bytes, &mut back)
                    .unwrap();
            }
            assert_eq!(back, text, "{suffix}");
        }
    }
}
