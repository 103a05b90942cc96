//! The audit trail: `STORE/audit.log`, what happened to the store's content, append-only.
//!
//! One JSON object per line. Each entry names its place (`seq`, from 1), its time, the key that signed it (the
//! store's publisher key, the one sites trust), what happened (`event`: `ingest`, `export`, `import`, `sync`,
//! `pin`, `gc`), the releases it concerns and the particulars (`detail`: sources and verification results, the
//! bundle and the site, the peer, …). `prev` is the BLAKE3 of the previous line's bytes (64 zeros for the first),
//! so removing, reordering or changing a line breaks the chain at the next one; `sig` is the ed25519 signature of
//! the entry written with `sig` empty.
//!
//! Bundles carry the seed's entries for their releases (`audit.jsonl` beside the index); an import checks each
//! carried entry's signature against the keys the site trusts before anything is written, and its own `import`
//! entry holds them verbatim with the hash of the last (the seed's `export` entry): the site's chain continues the
//! seed's across the gap.
//!
//! Appends take an exclusive `flock` on the file, so commands of several processes (a node and a `ferry` run
//! while it is down) never interleave; each line is written whole with one `write` and synced.

use super::{Store, StoreError};
use ed25519_dalek::{Signer, Verifier};
use ferry_protocol::PublisherKey;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The log's file name in the store.
pub const FILE: &str = "audit.log";
/// The file of carried entries in a bundle directory.
pub const BUNDLE_FILE: &str = "audit.jsonl";
/// The longest line read back (an import entry holds the carried ones).
pub(crate) const MAX_LINE: usize = 64 << 20;

/// One entry of the log.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Its place in the log, from 1.
    pub seq: u64,
    /// When, in seconds since the Unix epoch.
    pub time: u64,
    /// The id of the key that signed it.
    pub key: String,
    /// What happened.
    pub event: String,
    /// The releases it concerns, `name@version`.
    pub releases: Vec<String>,
    /// The particulars.
    pub detail: serde_json::Value,
    /// BLAKE3 (hex) of the previous line.
    pub prev: String,
    /// ed25519 signature (hex) of the entry with `sig` empty.
    #[serde(default)]
    pub sig: String,
}

impl Entry {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.sig.clear();
        serde_json::to_vec(&unsigned).expect("an entry serializes")
    }

    /// Whether `sig` is good by `key`.
    pub fn signed_by(&self, key: &PublisherKey) -> bool {
        let Ok(bytes) = hex::decode(&self.sig) else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else {
            return false;
        };
        key.id().to_string() == self.key && key.0.verify(&self.signed_bytes(), &sig).is_ok()
    }
}

/// The hash that the next entry's `prev` must hold for `line` (without its newline).
pub fn line_hash(line: &[u8]) -> String {
    blake3::hash(line).to_hex().to_string()
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The last complete line of the open log (without its newline), if any; and whether the file ends in a torn
/// line (a write cut short by a crash), which the next entry starts after.
fn last_line(f: &mut std::fs::File) -> std::io::Result<(Option<Vec<u8>>, bool)> {
    let len = f.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok((None, false));
    }
    let mut tail: Vec<u8> = Vec::new();
    let mut start = len;
    let mut step = 64 << 10;
    loop {
        let from = start.saturating_sub(step);
        let mut buf = vec![0u8; (start - from) as usize];
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail = buf;
        start = from;
        let torn = tail.last() != Some(&b'\n');
        let body = if torn {
            // The torn part is everything after the last newline.
            match tail.iter().rposition(|&b| b == b'\n') {
                Some(i) => &tail[..i],
                None if start == 0 => return Ok((None, true)),
                None => {
                    step *= 2;
                    continue;
                }
            }
        } else {
            &tail[..tail.len() - 1]
        };
        match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => return Ok((Some(body[i + 1..].to_vec()), torn)),
            None if start == 0 => return Ok((Some(body.to_vec()), torn)),
            None if tail.len() > MAX_LINE => {
                return Err(std::io::Error::other(
                    "the last entry is longer than 64 MiB",
                ))
            }
            None => step *= 2,
        }
    }
}

impl Store {
    /// The audit log's path.
    pub fn audit_path(&self) -> PathBuf {
        self.root().join(FILE)
    }

    /// Append an entry for `event` on `releases`, signed by this store's key. Returns it.
    pub fn audit(
        &self,
        event: &str,
        releases: Vec<String>,
        detail: serde_json::Value,
    ) -> Result<Entry, StoreError> {
        let path = self.audit_path();
        let io = StoreError::io(&path);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| StoreError::io(&path)(e.into()))?;
        let (last, torn) = last_line(&mut f).map_err(StoreError::io(&path))?;
        let (seq, prev) = match &last {
            Some(line) => {
                let e: Entry = serde_json::from_slice(line).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "{}: the last entry does not parse ({e}); `ferry audit verify` says where the log breaks",
                        path.display()
                    ))
                })?;
                (e.seq + 1, line_hash(line))
            }
            None => (1, GENESIS.to_string()),
        };
        let mut entry = Entry {
            seq,
            time: now(),
            key: self.publisher().id().to_string(),
            event: event.to_string(),
            releases,
            detail,
            prev,
            sig: String::new(),
        };
        entry.sig = hex::encode(self.signing_key().sign(&entry.signed_bytes()).to_bytes());
        let mut line = if torn { b"\n".to_vec() } else { Vec::new() };
        line.extend(serde_json::to_vec(&entry).expect("an entry serializes"));
        line.push(b'\n');
        f.write_all(&line).map_err(io)?;
        f.sync_data().map_err(StoreError::io(&path))?;
        Ok(entry)
    }

    /// [`Store::audit`], for work that is done whatever the log says: a failure to write the entry is logged,
    /// not returned (the release is stored; the log names the gap on `ferry audit verify`, never silently).
    pub fn audit_or_warn(&self, event: &str, releases: Vec<String>, detail: serde_json::Value) {
        if let Err(e) = self.audit(event, releases, detail) {
            tracing::error!(event, error = %e, "could not write the audit entry");
        }
    }

    /// The entries of this store's log that concern any of `releases`, as their lines: what a bundle of them
    /// carries.
    pub fn audit_lines_for(&self, releases: &[String]) -> Result<Vec<String>, StoreError> {
        let path = self.audit_path();
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&path)(e)),
        };
        let own = self.publisher().id().to_string();
        let mut out = Vec::new();
        for line in std::io::BufReader::new(f).lines() {
            let line = line.map_err(StoreError::io(&path))?;
            let Ok(e) = serde_json::from_str::<Entry>(&line) else {
                continue;
            };
            if e.key == own && e.releases.iter().any(|r| releases.contains(r)) {
                out.push(line);
            }
        }
        Ok(out)
    }
}

/// The carried entries of a bundle, as JSON values in order, and the hash of the last one's line (the seed's
/// chain head when the bundle was written).
pub type Carried = (Vec<serde_json::Value>, Option<String>);

/// Check the carried entries of a bundle (`audit.jsonl` in `dir`, if present): each must parse and be signed by
/// one of `keys`. An error names the file and the line.
pub fn check_carried(dir: &Path, keys: &[PublisherKey]) -> Result<Carried, String> {
    let path = dir.join(BUNDLE_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut head = None;
    let mut out = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let at = format!("{} line {}", path.display(), i + 1);
        let e: Entry =
            serde_json::from_slice(line).map_err(|e| format!("{at}: not an audit entry: {e}"))?;
        if !keys.iter().any(|k| e.signed_by(k)) {
            return Err(format!(
                "{at}: entry {} ({}) is not signed by a trusted key (it names key {})",
                e.seq, e.event, e.key
            ));
        }
        out.push(serde_json::from_slice(line).expect("parsed above"));
        head = Some(line_hash(line));
    }
    Ok((out, head))
}

/// One problem `verify` found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Problem {
    /// The line (from 1).
    pub line: usize,
    /// The entry's `seq`, when it parsed.
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// What `verify` found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verification {
    /// The file.
    pub path: String,
    /// Entries read.
    pub entries: u64,
    /// Entries carried from other nodes (inside `import` entries), each signature checked.
    pub carried: u64,
    /// The hash of the last line: what the next entry's `prev` will hold.
    pub head: String,
    /// Everything wrong, in order.
    pub problems: Vec<Problem>,
}

/// Check the log at `path`: every line parses, `seq` counts up from 1, each `prev` is the hash of the line
/// before, each entry is signed by `own` (the key that keeps this log), and the entries an `import` carried are
/// signed by one of `trusted`.
pub fn verify(
    path: &Path,
    own: &[PublisherKey],
    trusted: &[PublisherKey],
) -> Result<Verification, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v = Verification {
        path: path.display().to_string(),
        entries: 0,
        carried: 0,
        head: GENESIS.to_string(),
        problems: Vec::new(),
    };
    let mut reader = std::io::BufReader::new(f);
    let mut line = Vec::new();
    let mut n = 0;
    let mut last_seq = 0;
    loop {
        line.clear();
        let read = reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if read == 0 {
            break;
        }
        n += 1;
        let mut problem = |seq: Option<u64>, reason: String| {
            v.problems.push(Problem {
                line: n,
                seq,
                reason,
            })
        };
        if line.last() != Some(&b'\n') {
            problem(
                None,
                "a torn entry (the file ends in the middle of a line)".into(),
            );
            break;
        }
        let body = &line[..line.len() - 1];
        let e: Entry = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(err) => {
                // The chain goes on from the last entry that parsed (as appends after a torn line do).
                problem(None, format!("not an audit entry: {err}"));
                continue;
            }
        };
        let expected_prev = std::mem::replace(&mut v.head, line_hash(body));
        v.entries += 1;
        if e.seq != last_seq + 1 {
            problem(
                Some(e.seq),
                format!(
                    "seq {} where {} was due: an entry is missing or out of place",
                    e.seq,
                    last_seq + 1
                ),
            );
        }
        last_seq = e.seq;
        if e.prev != expected_prev {
            problem(
                Some(e.seq),
                "prev does not hash the line before: the log was changed above this entry".into(),
            );
        }
        if !own.iter().any(|k| e.signed_by(k)) {
            problem(
                Some(e.seq),
                format!(
                    "the signature is not good by this node's key (it names key {})",
                    e.key
                ),
            );
        }
        if e.event == "import" {
            for c in e.detail["carried"].as_array().into_iter().flatten() {
                v.carried += 1;
                let good = serde_json::from_value::<Entry>(c.clone())
                    .is_ok_and(|c| trusted.iter().any(|k| c.signed_by(k)));
                if !good {
                    problem(
                        Some(e.seq),
                        format!(
                            "carried entry {} ({}) is not signed by a trusted key",
                            c["seq"], c["event"]
                        ),
                    );
                }
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_and_the_signatures_catch_any_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("s"), Default::default()).unwrap();
        for i in 0..5 {
            let e = store
                .audit(
                    "ingest",
                    vec![format!("a@{i}")],
                    serde_json::json!({"n": i}),
                )
                .unwrap();
            assert_eq!(e.seq, i + 1);
        }
        let own = [store.publisher()];
        let path = store.audit_path();
        let ok = verify(&path, &own, &own).unwrap();
        assert_eq!((ok.entries, ok.problems.len()), (5, 0), "{ok:?}");
        assert_eq!(
            store
                .audit_lines_for(&["a@1".into(), "a@3".into()])
                .unwrap()
                .len(),
            2
        );

        let original = std::fs::read(&path).unwrap();
        // One byte changed: that entry's signature fails, and so does the next entry's link.
        let mut bytes = original.clone();
        let at = bytes.windows(5).position(|w| w == b"a@2\"]").unwrap();
        bytes[at + 2] = b'7';
        std::fs::write(&path, &bytes).unwrap();
        let bad = verify(&path, &own, &own).unwrap();
        let lines: Vec<usize> = bad.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4], "{bad:?}");
        // A line removed: the seq and the chain break where it was.
        let kept: Vec<&[u8]> = original
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, l)| l)
            .collect();
        std::fs::write(&path, kept.join(&b'\n')).unwrap();
        let bad = verify(&path, &own, &own).unwrap();
        assert!(bad.problems.iter().all(|p| p.line == 2), "{bad:?}");
        assert_eq!(bad.problems.len(), 2, "{bad:?}");

        // A torn tail: the next append starts a new line after it, chained to the last whole entry.
        let mut torn = original.clone();
        torn.extend_from_slice(b"{\"seq\":6,");
        std::fs::write(&path, &torn).unwrap();
        let e = store.audit("pin", vec![], serde_json::json!({})).unwrap();
        assert_eq!(e.seq, 6);
        let v = verify(&path, &own, &own).unwrap();
        assert_eq!(v.problems.len(), 1, "{v:?}");
        assert!(v.problems[0].reason.contains("not an audit entry"), "{v:?}");
        assert_eq!(v.entries, 6);
    }
}
