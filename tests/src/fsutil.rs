//! File helpers: hashing, byte flipping, OCI layouts on disk, tree comparison.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// SHA-256 of a byte slice, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of a file, lowercase hex (streamed).
pub fn sha256_file(path: &Path) -> String {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// XORs the byte at `offset` with 0xff (so it certainly changes).
pub fn flip_byte(path: &Path, offset: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b)
        .unwrap_or_else(|e| panic!("read byte {offset} of {}: {e}", path.display()));
    b[0] ^= 0xff;
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

/// Writes `data` at `offset` of an existing file.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
}

/// Total size of the regular files below `dir` (0 if it does not exist).
pub fn dir_bytes(dir: &Path) -> u64 {
    if !dir.exists() {
        return 0;
    }
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// `cp -a SRC DEST` (DEST must not exist).
pub fn copy_tree(src: &Path, dest: &Path) {
    crate::cmd::run_ok(
        "cp",
        [
            std::ffi::OsStr::new("-a"),
            src.as_os_str(),
            dest.as_os_str(),
        ],
    );
}

/// A SHA-256 as ferry prints it (`HEX` or `sha256:HEX`) → `HEX`.
pub fn bare_sha256(s: &str) -> &str {
    s.strip_prefix("sha256:").unwrap_or(s)
}

/// `sha256:HEX` → `HEX`.
pub fn digest_hex(digest: &str) -> &str {
    digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"))
}

/// Path of a blob in an OCI layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(digest_hex(digest))
}

/// Reads a blob of an OCI layout.
pub fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let p = blob_path(layout, digest);
    fs::read(&p).unwrap_or_else(|e| panic!("read blob {}: {e}", p.display()))
}

/// Parses a JSON file.
pub fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// One entry of an OCI layout's `index.json`.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// `org.opencontainers.image.ref.name`, if any.
    pub ref_name: Option<String>,
    /// `sha256:…`.
    pub digest: String,
    /// Media type.
    pub media_type: String,
}

/// The entries of `LAYOUT/index.json`.
pub fn index_entries(layout: &Path) -> Vec<IndexEntry> {
    let index = read_json(&layout.join("index.json"));
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| {
            panic!(
                "{}/index.json has no manifests array: {index}",
                layout.display()
            )
        })
        .iter()
        .map(|m| IndexEntry {
            ref_name: m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .map(str::to_string),
            digest: m["digest"].as_str().expect("digest").to_string(),
            media_type: m["mediaType"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Whether a file name is a SHA-256 in hex.
pub fn is_hex_digest(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks that every file in `LAYOUT/blobs/sha256` is named by a digest and hashes to its name;
/// returns the blob names (hex).
#[track_caller]
pub fn verify_blobs(layout: &Path) -> Vec<String> {
    let dir = layout.join("blobs/sha256");
    let mut names = Vec::new();
    let mut bad = Vec::new();
    for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_hex_digest(&name) {
            bad.push(format!(
                "{name}: not a blob name (a leftover temporary file?)"
            ));
            continue;
        }
        let actual = sha256_file(&e.path());
        if actual != name {
            bad.push(format!("{name} hashes to {actual}"));
        }
        names.push(name);
    }
    assert!(
        bad.is_empty(),
        "blobs in {} do not match their names:\n{}",
        dir.display(),
        bad.join("\n")
    );
    names.sort();
    names
}

/// What a tree entry is, for comparison.
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory with its permission bits.
    Dir { mode: u32 },
    /// A regular file with permission bits, size and SHA-256.
    File { mode: u32, len: u64, sha256: String },
    /// A symlink and its target.
    Symlink { target: PathBuf },
}

/// Every entry below `root` (relative paths; the root itself excluded), without following symlinks.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut map = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let e = e.unwrap_or_else(|e| panic!("walk {}: {e}", root.display()));
        let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
        let md = fs::symlink_metadata(e.path()).unwrap();
        let mode = md.permissions().mode() & 0o7777;
        let node = if md.file_type().is_symlink() {
            Node::Symlink {
                target: fs::read_link(e.path()).unwrap(),
            }
        } else if md.is_dir() {
            Node::Dir { mode }
        } else if md.is_file() {
            Node::File {
                mode,
                len: md.len(),
                sha256: sha256_file(e.path()),
            }
        } else {
            panic!("unexpected file type at {}", e.path().display());
        };
        map.insert(rel, node);
    }
    map
}

/// Panics with a per-path report unless the trees below `a` and `b` are identical
/// (types, bytes, permission bits, symlink targets).
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    let mut diffs = Vec::new();
    for (p, na) in &ta {
        match tb.get(p) {
            None => diffs.push(format!("{}: missing from {}", p.display(), b.display())),
            Some(nb) if nb != na => diffs.push(format!("{}: {na:?} != {nb:?}", p.display())),
            _ => {}
        }
    }
    for p in tb.keys().filter(|p| !ta.contains_key(*p)) {
        diffs.push(format!("{}: extra in {}", p.display(), b.display()));
    }
    assert!(
        diffs.is_empty(),
        "{} and {} differ:\n{}",
        a.display(),
        b.display(),
        diffs.join("\n")
    );
}

/// Bytes actually allocated on disk for a file (st_blocks × 512).
pub fn allocated_bytes(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

/// The entry of `dir` whose file name starts with `prefix` (the first in directory order); panics if none.
#[track_caller]
pub fn find_by_prefix(dir: &Path, prefix: &str) -> PathBuf {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}
