//! Who a node is and whom it talks to: its node key (`STORE/keys/node.key`, the libp2p identity behind its peer
//! id) and its site's allow-list of peer ids (`STORE/peers.toml`). Connections from peers not on the list are
//! refused by the network layer; releases are still accepted only with a trusted publisher's signature, whoever
//! delivered them.
//!
//! The node key is not the publisher key: a site node that publishes nothing still has an identity, and a seed's
//! publisher key can move between machines without changing who the machines are.

use libp2p_identity::{Keypair, PeerId};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The node key's place in a store.
pub const NODE_KEY: &str = "keys/node.key";
/// The allow-list's place in a store.
pub const PEERS_FILE: &str = "peers.toml";

/// Why identity or membership failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// I/O on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A node key file that does not hold a key.
    #[error("{path}: not a ferry node key (expected 64 hex digits)")]
    BadKey {
        /// The file.
        path: String,
    },
    /// A peer id that does not parse.
    #[error("invalid peer id {text:?}: {reason} (a peer id looks like 12D3KooW…; `ferry id` on that node prints it)")]
    BadPeerId {
        /// What was given.
        text: String,
        /// Why.
        reason: String,
    },
    /// The allow-list file is damaged.
    #[error("{path}: {reason}")]
    BadList {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Denying a peer that is not on the list.
    #[error("peer {0} is not on this node's allow-list")]
    NotAllowed(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MembershipError + '_ {
    move |source| MembershipError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The node's identity keypair, created on first use.
pub fn node_key(store_root: &Path) -> Result<Keypair, MembershipError> {
    let path = store_root.join(NODE_KEY);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| MembershipError::BadKey {
                path: path.display().to_string(),
            })?;
            Keypair::ed25519_from_bytes(seed).map_err(|_| MembershipError::BadKey {
                path: path.display().to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(&path),
        Err(e) => Err(io(&path)(e)),
    }
}

fn create_key(path: &Path) -> Result<Keypair, MembershipError> {
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    writeln!(f, "{}", hex::encode(seed)).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    // A second process racing to create the key loses cleanly: the first key stays.
    std::fs::hard_link(&tmp, path)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .map_err(io(path))?;
    let _ = std::fs::remove_file(&tmp);
    node_key(
        path.parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new(".")),
    )
}

/// The node's peer id.
pub fn peer_id(store_root: &Path) -> Result<PeerId, MembershipError> {
    Ok(node_key(store_root)?.public().to_peer_id())
}

/// Parse a peer id as an operator typed it.
pub fn parse_peer_id(text: &str) -> Result<PeerId, MembershipError> {
    PeerId::from_str(text.trim()).map_err(|e| MembershipError::BadPeerId {
        text: text.to_string(),
        reason: e.to_string(),
    })
}

/// One allowed peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its peer id.
    pub id: String,
    /// What the operator said about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When it was allowed, seconds since the Unix epoch.
    pub added: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    #[serde(default, rename = "peer")]
    peers: Vec<Member>,
}

/// The site's allow-list of a store.
pub struct AllowList {
    path: PathBuf,
    /// The ids last read, answered from memory: every connection and gossip message asks.
    cache: std::sync::Mutex<Option<Cached>>,
}

/// The allow-list as last read.
struct Cached {
    ids: std::collections::HashSet<String>,
    /// The file then (`None`: there was none).
    stamp: Option<FileStamp>,
    /// [`EDITS`] then.
    edits: u64,
    /// When the file was last looked at.
    checked: std::time::Instant,
}

/// What tells one version of a file from another: rewriting it (a rename) changes the inode.
pub(crate) type FileStamp = (std::time::SystemTime, u64, u64);

/// The stamp of the file or directory at `path`; `None` if there is none.
pub(crate) fn stamp(path: &Path) -> std::io::Result<Option<FileStamp>> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.modified()?, m.len(), m.ino()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Allow-lists written by this process: a list another [`AllowList`] wrote is read again at once.
static EDITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long an answer from memory stands before the file is looked at again (edited by hand, or by another
/// process).
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

impl AllowList {
    /// The list kept in `store_root`.
    pub fn of(store_root: &Path) -> AllowList {
        AllowList {
            path: store_root.join(PEERS_FILE),
            cache: std::sync::Mutex::new(None),
        }
    }

    /// Every allowed peer, sorted by id.
    pub fn members(&self) -> Result<Vec<Member>, MembershipError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.path)(e)),
        };
        let file: PeersFile = toml::from_str(&text).map_err(|e| MembershipError::BadList {
            path: self.path.display().to_string(),
            reason: e.message().to_string(),
        })?;
        for m in &file.peers {
            parse_peer_id(&m.id).map_err(|e| MembershipError::BadList {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        Ok(file.peers)
    }

    /// Whether `peer` may connect: from memory, the file looked at again at most once a second (at once after
    /// an edit through this process) and read again only when it changed.
    pub fn allows(&self, peer: &PeerId) -> Result<bool, MembershipError> {
        use std::sync::atomic::Ordering;
        let id = peer.to_string();
        let edits = EDITS.load(Ordering::Acquire);
        let mut cache = self.cache.lock().expect("allow-list cache poisoned");
        if let Some(c) = cache.as_mut() {
            if c.edits == edits && c.checked.elapsed() < RECHECK {
                return Ok(c.ids.contains(&id));
            }
        }
        let stamp = stamp(&self.path).map_err(io(&self.path))?;
        if let Some(c) = cache.as_mut() {
            if c.edits == edits && c.stamp == stamp {
                c.checked = std::time::Instant::now();
                return Ok(c.ids.contains(&id));
            }
        }
        let ids: std::collections::HashSet<String> =
            self.members()?.into_iter().map(|m| m.id).collect();
        let allowed = ids.contains(&id);
        *cache = Some(Cached {
            ids,
            stamp,
            edits,
            checked: std::time::Instant::now(),
        });
        Ok(allowed)
    }

    /// Allow `peer`; `false` if it already was (its note is then replaced when one is given).
    pub fn allow(&self, peer: &PeerId, note: Option<&str>) -> Result<bool, MembershipError> {
        let mut members = self.members()?;
        let id = peer.to_string();
        let added = match members.iter_mut().find(|m| m.id == id) {
            Some(m) => {
                if note.is_some() {
                    m.note = note.map(str::to_string);
                }
                false
            }
            None => {
                members.push(Member {
                    id,
                    note: note.map(str::to_string),
                    added: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                });
                true
            }
        };
        self.write(members)?;
        Ok(added)
    }

    /// Stop allowing `peer`.
    pub fn deny(&self, peer: &PeerId) -> Result<(), MembershipError> {
        let mut members = self.members()?;
        let id = peer.to_string();
        let before = members.len();
        members.retain(|m| m.id != id);
        if members.len() == before {
            return Err(MembershipError::NotAllowed(id));
        }
        self.write(members)
    }

    fn write(&self, mut peers: Vec<Member>) -> Result<(), MembershipError> {
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        let body = toml::to_string_pretty(&PeersFile { peers }).expect("peers serialise");
        let text = format!(
            "# The site's members: peer ids this node accepts connections from. Edit with `ferry peers`.\n{body}"
        );
        let tmp = self.path.with_extension("toml.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        EDITS.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = peer_id(dir.path()).unwrap();
        let b = peer_id(dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.to_string().starts_with("12D3KooW"), "{a}");
        let mode = std::fs::metadata(dir.path().join(NODE_KEY))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let other = tempfile::tempdir().unwrap();
        assert_ne!(peer_id(other.path()).unwrap(), a);
    }

    #[test]
    fn the_allow_list_adds_notes_denies_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let list = AllowList::of(dir.path());
        let p = Keypair::ed25519_from_bytes([1u8; 32])
            .unwrap()
            .public()
            .to_peer_id();
        let q = Keypair::ed25519_from_bytes([2u8; 32])
            .unwrap()
            .public()
            .to_peer_id();
        assert!(!list.allows(&p).unwrap());
        assert!(list.allow(&p, Some("rack 2")).unwrap());
        assert!(!list.allow(&p, None).unwrap());
        assert!(list.allow(&q, None).unwrap());
        assert!(list.allows(&p).unwrap());
        let m = list.members().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            m.iter()
                .find(|m| m.id == p.to_string())
                .unwrap()
                .note
                .as_deref(),
            Some("rack 2")
        );
        list.deny(&p).unwrap();
        assert!(!list.allows(&p).unwrap());
        assert!(matches!(list.deny(&p), Err(MembershipError::NotAllowed(_))));
        assert!(parse_peer_id("12D3KooWnotapeer").is_err());
        std::fs::write(
            dir.path().join(PEERS_FILE),
            "[[peer]]\nid = \"x\"\nadded = 1\n",
        )
        .unwrap();
        let err = list.members().unwrap_err().to_string();
        assert!(
            err.contains("peers.toml") && err.contains("invalid peer id"),
            "{err}"
        );
    }

    #[test]
    fn the_allow_list_is_answered_from_memory_and_follows_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let (node, cli) = (AllowList::of(dir.path()), AllowList::of(dir.path()));
        let p = Keypair::ed25519_from_bytes([3u8; 32])
            .unwrap()
            .public()
            .to_peer_id();
        assert!(!node.allows(&p).unwrap());
        // An edit through this process (`ferry peers` on the node's admin socket) is seen at once.
        cli.allow(&p, None).unwrap();
        assert!(node.allows(&p).unwrap());
        // The file removed by hand: seen once the answer from memory is a second old. (Not asserted: that it is
        // unseen before — an edit by any other list in this process, such as a test running beside this one,
        // makes every list read its file again.)
        std::fs::remove_file(dir.path().join(PEERS_FILE)).unwrap();
        std::thread::sleep(RECHECK + std::time::Duration::from_millis(100));
        assert!(!node.allows(&p).unwrap());
    }
}
