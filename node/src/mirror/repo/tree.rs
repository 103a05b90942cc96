//! The file trees of every visible release, by name and version, and path resolution inside one tree.
//!
//! [`Trees::current`] is the one place that decides which version `/repos/NAME/current/` serves: the pinned one
//! (see [`crate::store::pins`]) when it is held, else the newest.

use super::detect::Repository;
use crate::store::StoredRelease;
use ferry_protocol::{BlobRef, Entry};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

/// Symlinks followed while resolving one path, at most (as Linux's `MAXSYMLINKS`).
const MAX_HOPS: usize = 40;

/// One node of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A regular file.
    File(BlobRef),
    /// A directory, listed in the release or implied by a path below it.
    Dir,
    /// A symbolic link, with its target as stored.
    Symlink(String),
}

/// The file entries of one release.
#[derive(Debug)]
pub struct Tree {
    /// Release name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Creation time (seconds since the epoch): every file's `Last-Modified`.
    pub created: u64,
    /// Per-name sequence: higher is newer.
    pub sequence: u64,
    /// Path (`""` for the root) → item, sorted so a directory's children are one range.
    items: BTreeMap<String, Item>,
    /// The package repositories found in the tree, detected on first use.
    pub(super) repositories: OnceLock<Vec<Repository>>,
}

/// What a path inside a tree resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A file, at its path after following links.
    File(String, BlobRef),
    /// A directory, at its path after following links (`""` for the root).
    Dir(String),
}

impl Tree {
    /// The tree of `r`'s file entries; `None` if it has none (an images-only release).
    fn of(r: &StoredRelease) -> Option<Tree> {
        let m = &r.manifest;
        let mut items = BTreeMap::new();
        for e in &m.entries {
            let (path, item) = match e {
                Entry::File(f) => (&f.path, Item::File(f.blob)),
                Entry::Dir { path, .. } => (path, Item::Dir),
                Entry::Symlink { path, target } => (path, Item::Symlink(target.clone())),
                _ => continue,
            };
            let mut parent = path.as_str();
            while let Some((p, _)) = parent.rsplit_once('/') {
                items.entry(p.to_string()).or_insert(Item::Dir);
                parent = p;
            }
            items.insert(path.clone(), item);
        }
        if items.is_empty() {
            return None;
        }
        items.insert(String::new(), Item::Dir);
        Some(Tree {
            name: m.name.clone(),
            version: m.version.clone(),
            created: m.created,
            sequence: m.sequence,
            items,
            repositories: OnceLock::new(),
        })
    }

    /// The item at exactly `path` (no links followed).
    pub fn get(&self, path: &str) -> Option<&Item> {
        self.items.get(path)
    }

    /// Every item, in path order.
    pub fn items(&self) -> impl Iterator<Item = (&str, &Item)> {
        self.items.iter().map(|(p, i)| (p.as_str(), i))
    }

    /// Resolve `segments` (already decoded and checked: no `.`, `..` or empty parts), following symlinks with
    /// relative targets inside the tree. A link that is absolute, climbs above the root, dangles or loops, and a
    /// path that continues below a file, resolve to nothing.
    pub fn resolve<S: AsRef<str>>(&self, segments: &[S]) -> Option<Resolved> {
        let mut pending: VecDeque<String> =
            segments.iter().map(|s| s.as_ref().to_string()).collect();
        let mut at: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(seg) = pending.pop_front() {
            match seg.as_str() {
                "" | "." => continue,
                ".." => {
                    // Only a link's target can say `..` (request paths are checked before).
                    at.pop()?;
                    continue;
                }
                _ => {}
            }
            at.push(seg);
            let path = at.join("/");
            match self.items.get(&path)? {
                Item::Dir => {}
                Item::File(blob) => {
                    return pending
                        .iter()
                        .all(|s| s.is_empty())
                        .then_some(Resolved::File(path, *blob));
                }
                Item::Symlink(target) => {
                    hops += 1;
                    if hops > MAX_HOPS || target.starts_with('/') || target.is_empty() {
                        return None;
                    }
                    at.pop();
                    for part in target.split('/').rev() {
                        pending.push_front(part.to_string());
                    }
                }
            }
        }
        Some(Resolved::Dir(at.join("/")))
    }

    /// Resolve `name` inside the directory `dir` (a resolved directory path, `""` for the root).
    pub fn resolve_in(&self, dir: &str, name: &str) -> Option<Resolved> {
        let mut segs: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
        segs.push(name);
        self.resolve(&segs)
    }

    /// The names of the items directly inside directory `dir` (`""` for the root), sorted, with their items.
    pub fn children(&self, dir: &str) -> Vec<(&str, &Item)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out = Vec::new();
        let mut from = prefix.clone();
        loop {
            let next = self
                .items
                .range::<String, _>((std::ops::Bound::Excluded(&from), std::ops::Bound::Unbounded))
                .next();
            let Some((path, item)) = next else { break };
            let Some(rest) = path.strip_prefix(&prefix) else {
                break;
            };
            match rest.split_once('/') {
                // A deeper path: skip the whole subtree of `child` ('0' is the byte after '/').
                Some((child, _)) => from = format!("{prefix}{child}0"),
                None => {
                    if !rest.is_empty() {
                        out.push((rest, item));
                    }
                    from = path.clone();
                }
            }
        }
        out
    }
}

/// Every release that has file entries, by name, each name's versions oldest first.
#[derive(Clone, Debug, Default)]
pub struct Trees {
    by_name: BTreeMap<String, Vec<Arc<Tree>>>,
    /// name → index in `by_name[name]` of the version served as current.
    current: BTreeMap<String, usize>,
    /// The most `/`-separated segments any name has.
    deepest: usize,
}

impl Trees {
    /// Index the file entries of `releases`; `pins` (name → version) decide what is current.
    pub fn build(
        releases: &[StoredRelease],
        pins: &std::collections::HashMap<String, String>,
    ) -> Trees {
        let mut by_name: BTreeMap<String, Vec<Arc<Tree>>> = BTreeMap::new();
        for r in releases {
            if let Some(t) = Tree::of(r) {
                by_name.entry(t.name.clone()).or_default().push(Arc::new(t));
            }
        }
        for versions in by_name.values_mut() {
            versions.sort_by_key(|t| (t.sequence, t.created));
        }
        let current = by_name
            .iter()
            .map(|(name, versions)| {
                let pinned = pins
                    .get(name)
                    .and_then(|v| versions.iter().position(|t| &t.version == v));
                (name.clone(), pinned.unwrap_or(versions.len() - 1))
            })
            .collect();
        let deepest = by_name
            .keys()
            .map(|n| n.split('/').count())
            .max()
            .unwrap_or(0);
        Trees {
            by_name,
            current,
            deepest,
        }
    }

    /// The version `/repos/NAME/current/` serves: the pinned one when it is held, else the highest sequence.
    pub fn current(&self, name: &str) -> Option<&Arc<Tree>> {
        self.by_name.get(name)?.get(*self.current.get(name)?)
    }

    /// `name@version`, where `version` may be `current`.
    pub fn get(&self, name: &str, version: &str) -> Option<&Arc<Tree>> {
        if version == ferry_protocol::CURRENT_VERSION {
            return self.current(name);
        }
        self.by_name
            .get(name)?
            .iter()
            .find(|t| t.version == version)
    }

    /// The versions of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Option<&[Arc<Tree>]> {
        self.by_name.get(name).map(Vec::as_slice)
    }

    /// Every release name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The most `/`-separated segments any release name has (0 when there are none).
    pub fn deepest_name(&self) -> usize {
        self.deepest
    }

    /// Whether any release is called `name`.
    pub fn has_name(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_protocol::{BlobId, FileEntry, Hash32, RecipeId, ReleaseManifest, Sha256Digest};

    fn blob(n: u8) -> BlobRef {
        BlobRef {
            id: BlobId::from_bytes([n; 32]),
            sha256: Sha256Digest(Hash32([n; 32])),
            size: n as u64,
            recipe: RecipeId::from_bytes([n; 32]),
        }
    }

    fn tree(entries: Vec<Entry>) -> Tree {
        let manifest = ReleaseManifest {
            name: "r".into(),
            version: "1".into(),
            kind: ferry_protocol::ReleaseKind::Files,
            entries,
            created: 0,
            sequence: 1,
            publisher: ferry_protocol::KeyId::of_public_key(&[0; 32]),
        };
        let signed = ferry_protocol::SignedRelease {
            manifest: vec![],
            key: manifest.publisher,
            signature: vec![],
        };
        Tree::of(&StoredRelease { manifest, signed }).unwrap()
    }

    fn file(path: &str, n: u8) -> Entry {
        Entry::File(FileEntry {
            path: path.into(),
            mode: 0o644,
            blob: blob(n),
        })
    }

    fn link(path: &str, target: &str) -> Entry {
        Entry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }

    #[test]
    fn links_resolve_inside_the_tree_only() {
        let t = tree(vec![
            file("a/b/c.txt", 1),
            file("top.txt", 2),
            link("a/up", "../top.txt"),
            link("a/self", "b"),
            link("a/out", "../../etc/passwd"),
            link("abs", "/etc/passwd"),
            link("loop1", "loop2"),
            link("loop2", "loop1"),
            link("dangling", "nope"),
            link("d", "a/self"),
        ]);
        let r = |p: &str| t.resolve(&p.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>());
        assert_eq!(
            r("a/b/c.txt"),
            Some(Resolved::File("a/b/c.txt".into(), blob(1)))
        );
        assert_eq!(r("a/up"), Some(Resolved::File("top.txt".into(), blob(2))));
        assert_eq!(
            r("a/self/c.txt"),
            Some(Resolved::File("a/b/c.txt".into(), blob(1)))
        );
        assert_eq!(
            r("d/c.txt"),
            Some(Resolved::File("a/b/c.txt".into(), blob(1)))
        );
        assert_eq!(r("d"), Some(Resolved::Dir("a/b".into())));
        assert_eq!(r(""), Some(Resolved::Dir(String::new())));
        for bad in [
            "a/out",
            "abs",
            "loop1",
            "dangling",
            "top.txt/x",
            "nope",
            "a/b/c.txt/d",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
    }

    #[test]
    fn children_skip_subtrees() {
        let t = tree(vec![
            file("a/x/1", 1),
            file("a/x/2", 1),
            file("a/x.txt", 1),
            file("a/x-y", 1),
            file("a/z", 1),
            file("b", 1),
        ]);
        let names = |d: &str| {
            t.children(d)
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(""), ["a", "b"]);
        assert_eq!(names("a"), ["x", "x-y", "x.txt", "z"]);
        assert_eq!(names("a/x"), ["1", "2"]);
        assert!(names("b").is_empty());
    }
}
