//! Which package repositories a release's tree holds, for `/_ferry/repos` and `ferry client-config`:
//! apt (`dists/<suite>/InRelease` or `Release`, described from that small file and what the tree carries),
//! PyPI (`simple/index.html`), Helm (`index.yaml`), yum (`repodata/repomd.xml`).

use super::tree::{Item, Tree};
use crate::ingest::apt::release::{parse_release, signed_text};
use crate::store::Store;
use std::collections::BTreeMap;

/// A `Release` larger than this is not read for its description.
const MAX_RELEASE: u64 = 16 << 20;

/// One apt suite as a client names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AptSuite {
    /// The directory under `dists/` (what a `sources.list` line names).
    pub suite: String,
    /// `Codename:` of its Release.
    pub codename: Option<String>,
    /// Components the tree carries indexes for, in the Release's order.
    pub components: Vec<String>,
    /// Architectures the tree carries indexes for, in the Release's order.
    pub architectures: Vec<String>,
}

/// A repository inside a tree; `dir` is its directory relative to the tree root (`""` or `a/b/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repository {
    /// An apt repository root (holding `dists/`).
    Apt {
        /// The root.
        dir: String,
        /// Its suites.
        suites: Vec<AptSuite>,
        /// The OpenPGP key its Release files are signed with, when ferry signed them (a partial mirror):
        /// the key file's path relative to the root.
        signing_key: Option<String>,
    },
    /// A PyPI simple index (`dir` is the `simple/` directory).
    Pypi {
        /// The index.
        dir: String,
    },
    /// A Helm chart repository (`dir` holds `index.yaml`).
    Helm {
        /// The directory.
        dir: String,
    },
    /// A yum/dnf repository (`dir` holds `repodata/`).
    Yum {
        /// The directory.
        dir: String,
        /// The OpenPGP key its `repomd.xml` is signed with, when ferry signed it (a partial mirror): the key
        /// file's path relative to `dir`.
        signing_key: Option<String>,
    },
}

impl Repository {
    /// Its kind, as the JSON names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Repository::Apt { .. } => "apt",
            Repository::Pypi { .. } => "pypi",
            Repository::Helm { .. } => "helm",
            Repository::Yum { .. } => "yum",
        }
    }

    /// Its directory relative to the tree root, `""` or ending in `/`.
    pub fn dir(&self) -> &str {
        match self {
            Repository::Apt { dir, .. }
            | Repository::Pypi { dir }
            | Repository::Helm { dir }
            | Repository::Yum { dir, .. } => dir,
        }
    }
}

/// `a/b/c` → `a/b/`; `c` → `""`.
fn dir_of(path: &str) -> String {
    path.rsplit_once('/')
        .map(|(d, _)| format!("{d}/"))
        .unwrap_or_default()
}

/// The repositories in `tree`, ordered by directory. Reads only the suites' Release files.
pub fn detect(store: &Store, tree: &Tree) -> Vec<Repository> {
    let mut found = Vec::new();
    // (root, suite) → the Release-like files present.
    let mut suites: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    for (path, item) in tree.items() {
        if !matches!(item, Item::File(_)) {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        match name {
            "InRelease" | "Release" => {
                let segs: Vec<&str> = path.split('/').collect();
                if let Some(i) = segs.iter().position(|s| *s == "dists") {
                    if i + 2 < segs.len() {
                        let root: String = segs[..i].iter().map(|s| format!("{s}/")).collect();
                        let suite = segs[i + 1..segs.len() - 1].join("/");
                        suites.entry((root, suite)).or_default().push(path);
                    }
                }
            }
            "index.html" if path == "simple/index.html" || path.ends_with("/simple/index.html") => {
                found.push(Repository::Pypi { dir: dir_of(path) })
            }
            "index.yaml" => found.push(Repository::Helm { dir: dir_of(path) }),
            "repomd.xml"
                if path == "repodata/repomd.xml" || path.ends_with("/repodata/repomd.xml") =>
            {
                let dir = dir_of(path.strip_suffix("/repomd.xml").unwrap_or(path));
                let key = format!("{dir}{}", crate::ingest::partial::KEY_FILE);
                let signing_key = matches!(tree.get(&key), Some(Item::File(_)))
                    .then(|| crate::ingest::partial::KEY_FILE.to_string());
                found.push(Repository::Yum { dir, signing_key })
            }
            _ => {}
        }
    }
    // A suite is the shallowest directory with a Release: `dists/s/main/binary-amd64/Release` belongs to `s`.
    let keys: Vec<(String, String)> = suites.keys().cloned().collect();
    suites.retain(|(root, suite), _| {
        !keys
            .iter()
            .any(|(r, s)| r == root && suite.starts_with(&format!("{s}/")))
    });
    let mut apt: BTreeMap<String, Vec<AptSuite>> = BTreeMap::new();
    for ((root, suite), files) in suites {
        let described = describe_suite(store, tree, &root, &suite, &files);
        apt.entry(root).or_default().push(described);
    }
    found.extend(apt.into_iter().map(|(dir, suites)| {
        let key = format!("{dir}{}", crate::ingest::partial::KEY_FILE);
        let signing_key = matches!(tree.get(&key), Some(Item::File(_)))
            .then(|| crate::ingest::partial::KEY_FILE.to_string());
        Repository::Apt {
            dir,
            suites,
            signing_key,
        }
    }));
    found.sort_by(|a, b| a.dir().cmp(b.dir()).then(a.kind().cmp(b.kind())));
    found
}

/// A suite as its Release describes it, narrowed to the components and architectures the tree has indexes for.
fn describe_suite(store: &Store, tree: &Tree, root: &str, suite: &str, files: &[&str]) -> AptSuite {
    let base = format!("{root}dists/{suite}/");
    let preferred = files
        .iter()
        .find(|p| p.ends_with("/InRelease"))
        .or(files.first());
    let release = preferred
        .and_then(|p| match tree.get(p) {
            Some(Item::File(b)) if b.size <= MAX_RELEASE => Some((*p, *b)),
            _ => None,
        })
        .and_then(|(p, b)| {
            let read = store
                .read_blob(&b)
                .map_err(|e| e.to_string())
                .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string()))
                .and_then(|t| signed_text(&t))
                .and_then(|t| parse_release(&t));
            read.map_err(|e| tracing::warn!(path = p, error = %e, "cannot describe apt suite"))
                .ok()
        })
        .unwrap_or_default();
    // What the tree carries under the suite: `<component>/binary-<arch>/…` and `<component>/source/…`.
    let mut comps: Vec<String> = Vec::new();
    let mut archs: Vec<String> = Vec::new();
    for (path, _) in tree.items() {
        let Some(rest) = path.strip_prefix(&base) else {
            continue;
        };
        let segs: Vec<&str> = rest.split('/').collect();
        let Some(j) = segs
            .iter()
            .position(|s| s.starts_with("binary-") || *s == "source")
        else {
            continue;
        };
        if j == 0 {
            continue;
        }
        let comp = segs[..j].join("/");
        if !comps.contains(&comp) {
            comps.push(comp);
        }
        let arch = segs[j].strip_prefix("binary-").unwrap_or(segs[j]);
        if !archs.iter().any(|a| a == arch) {
            archs.push(arch.to_string());
        }
    }
    let order = |listed: &[String], mut have: Vec<String>| {
        have.sort_by_key(|h| listed.iter().position(|l| l == h).unwrap_or(usize::MAX));
        have
    };
    AptSuite {
        suite: suite.to_string(),
        codename: release.codename.clone(),
        components: order(&release.components, comps),
        architectures: order(&release.architectures, archs),
    }
}
