//! What the partial mirrors of every format share: the closure report (`ferry-closure.json`) that says why each
//! package is there, read back by `ferry show --why` and `ferry diff`; the name of the public key file clients
//! are pointed at; and the loop check of prerequisite dependencies.

use crate::ingest::IngestError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// The name of the public key file at the repository root.
pub const KEY_FILE: &str = "ferry-repository-key.asc";
/// The name of the closure report at the repository root.
pub const CLOSURE_FILE: &str = "ferry-closure.json";

/// The report written as `ferry-closure.json`: what a partial mirror holds and why.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// The repository's format: `apt` (the default, for reports written before there were others), `yum` or
    /// `pypi`.
    #[serde(default = "apt")]
    pub format: String,
    /// The requests as written.
    pub requests: Vec<String>,
    /// The closure's options.
    pub options: ReportOptions,
    /// The repository key's fingerprint.
    pub signed_by: String,
    /// Per suite (apt) or for `repodata/repomd.xml` (yum), the fingerprint of the upstream key whose signature
    /// was checked (with `keyring=`).
    #[serde(default)]
    pub upstream_signers: BTreeMap<String, String>,
    /// Every package, in the order the closure took them.
    pub packages: Vec<ReportPackage>,
    /// Dependencies nothing satisfied (with `allow-missing=yes`).
    #[serde(default)]
    pub missing: Vec<ReportMissing>,
    /// Recommendations nothing satisfied.
    #[serde(default)]
    pub unmet_recommends: Vec<ReportMissing>,
}

/// The options a closure was taken with.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReportOptions {
    /// The native architecture (`amd64`, `x86_64`).
    pub architecture: String,
    /// `recommends=yes`.
    pub recommends: bool,
    /// `first` or `all`.
    pub alternatives: String,
    /// `essential=yes` (apt).
    #[serde(default)]
    pub essential: bool,
    /// `allow-missing=yes`.
    pub allow_missing: bool,
}

/// One package of a partial mirror.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportPackage {
    /// `Package:`.
    pub package: String,
    /// `Version:`.
    pub version: String,
    /// `Architecture:`.
    pub architecture: String,
    /// The suite it came from (apt).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub suite: String,
    /// Its index directory in the suite (`main/binary-amd64`; apt).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub index: String,
    /// Its pool path.
    pub filename: String,
    /// Its pool file's size.
    #[serde(default)]
    pub size: u64,
    /// `requested`, `essential`, or the field (`Depends`, `Pre-Depends`, `Recommends`; `Requires`,
    /// `Requires(pre)`, `Recommends`) of the package `of`.
    pub reason: String,
    /// The depending package, `name version (arch)`, for a dependency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    /// The request or the dependency as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
}

impl ReportPackage {
    /// `name version (arch)`, as `of` names a package.
    pub fn describe(&self) -> String {
        format!("{} {} ({})", self.package, self.version, self.architecture)
    }
}

/// A dependency nothing satisfied (the resolvers' `Missing`, as the report lists it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportMissing {
    /// The dependency as written.
    pub relation: String,
    /// Who needs it.
    pub needed_by: String,
}

/// What `ferry add --plan` shows of a partial mirror: the closure, nothing fetched or stored.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// The source.
    pub source: String,
    /// The requests as written.
    pub requests: Vec<String>,
    /// Every package, in the order the closure took them.
    pub packages: Vec<ReportPackage>,
    /// Their package files' bytes in all.
    pub bytes: u64,
    /// Dependencies nothing satisfies (with `allow-missing=yes`; otherwise the plan is refused with them).
    pub missing: Vec<ReportMissing>,
    /// Recommendations nothing satisfies.
    pub unmet_recommends: Vec<ReportMissing>,
}

impl Report {
    /// Why `package` is in the mirror: it, then the package that pulled it in, and so on to a request (or to
    /// `essential`). Empty when the mirror does not hold it.
    pub fn why(&self, package: &str) -> Vec<&ReportPackage> {
        let by_describe: BTreeMap<String, &ReportPackage> =
            self.packages.iter().map(|p| (p.describe(), p)).collect();
        let mut chain: Vec<&ReportPackage> = Vec::new();
        let mut next = self.packages.iter().find(|p| p.package == package);
        while let Some(p) = next {
            if chain.iter().any(|c| c.describe() == p.describe()) {
                break;
            }
            chain.push(p);
            next = p.of.as_ref().and_then(|of| by_describe.get(of).copied());
        }
        chain
    }
}

/// The closure reports of a release's partial mirrors: `(the report's path, it)`.
pub fn reports(
    store: &crate::store::Store,
    manifest: &ferry_protocol::ReleaseManifest,
) -> Result<Vec<(String, Report)>, IngestError> {
    let mut out = Vec::new();
    for e in &manifest.entries {
        let ferry_protocol::Entry::File(f) = e else {
            continue;
        };
        if f.path == CLOSURE_FILE || f.path.ends_with(&format!("/{CLOSURE_FILE}")) {
            let bytes = store.read_blob(&f.blob)?;
            let report = serde_json::from_slice(&bytes).map_err(|e| IngestError::Malformed {
                what: format!("{} in {}", f.path, manifest.id()),
                reason: e.to_string(),
            })?;
            out.push((f.path.clone(), report));
        }
    }
    Ok(out)
}

/// `bytes` compressed as `suffix` says (`""`: as they are).
pub(crate) fn compress(suffix: &str, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    match suffix {
        ".gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(bytes)?;
            e.finish()
        }
        ".xz" => liblzma::encode_all(bytes, 6),
        ".zst" => zstd::encode_all(bytes, 19),
        ".bz2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
            e.write_all(bytes)?;
            e.finish()
        }
        _ => Ok(bytes.to_vec()),
    }
}

/// The list of dependencies nothing satisfies, as a resolver's error says it.
pub fn write_missing(f: &mut std::fmt::Formatter<'_>, m: &[ReportMissing]) -> std::fmt::Result {
    write!(
        f,
        "{} dependenc{} nothing in the repository satisfies:",
        m.len(),
        if m.len() == 1 { "y" } else { "ies" }
    )?;
    for m in m {
        write!(f, "\n  {} (needed by {})", m.relation, m.needed_by)?;
    }
    write!(f, "\n(allow-missing=yes carries the rest without them)")
}

fn apt() -> String {
    "apt".into()
}

impl Report {
    /// Whether `a` is a newer version than `b` in this report's format (`Greater`), as dpkg or rpm orders them.
    pub fn compare_versions(&self, a: &str, b: &str) -> std::cmp::Ordering {
        match self.format.as_str() {
            "yum" => crate::ingest::yum::rpmver::compare_text(a, b),
            "pypi" => {
                use std::str::FromStr;
                match (
                    pep508_rs::pep440_rs::Version::from_str(a),
                    pep508_rs::pep440_rs::Version::from_str(b),
                ) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => a.cmp(b),
                }
            }
            _ => crate::ingest::apt::version::compare(a, b),
        }
    }
}

/// A cycle among `edges` (from, to), as the nodes on it with the first repeated at the end; self-edges do not
/// count. Deterministic: the search starts from the smallest node.
pub fn find_cycle(edges: &[(usize, usize)]) -> Option<Vec<usize>> {
    let mut next: HashMap<usize, Vec<usize>> = HashMap::new();
    for &(a, b) in edges {
        if a != b {
            next.entry(a).or_default().push(b);
        }
    }
    // Iterative DFS with colours: 1 on the path, 2 done.
    let mut colour: HashMap<usize, u8> = HashMap::new();
    let mut starts: Vec<usize> = next.keys().copied().collect();
    starts.sort_unstable();
    for s in starts {
        if colour.contains_key(&s) {
            continue;
        }
        let mut path = vec![(s, 0usize)];
        colour.insert(s, 1);
        while let Some(&mut (n, ref mut i)) = path.last_mut() {
            let succ = next.get(&n).map(Vec::as_slice).unwrap_or_default();
            if let Some(&m) = succ.get(*i) {
                *i += 1;
                match colour.get(&m) {
                    Some(1) => {
                        let from = path.iter().position(|&(x, _)| x == m).unwrap_or(0);
                        let mut members: Vec<usize> =
                            path[from..].iter().map(|&(x, _)| x).collect();
                        members.push(m);
                        return Some(members);
                    }
                    Some(_) => {}
                    None => {
                        colour.insert(m, 1);
                        path.push((m, 0));
                    }
                }
            } else {
                colour.insert(n, 2);
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found() {
        assert_eq!(find_cycle(&[(1, 2), (2, 3)]), None);
        assert_eq!(find_cycle(&[(4, 4)]), None, "a self-edge is no loop");
        assert_eq!(find_cycle(&[(1, 2), (2, 3), (3, 2)]), Some(vec![2, 3, 2]));
        assert_eq!(find_cycle(&[(5, 1), (1, 5), (0, 9)]), Some(vec![1, 5, 1]));
    }
}
