//! The node's configuration file (`ferry serve --config FILE`, else `STORE/node.toml` when it exists).
//!
//! Everything site-specific about a running node lives here rather than in code: where it listens, who may push.
//! Flags given to `ferry serve` override the file. Unknown keys are refused, so a typo is an error that names
//! the file, the line and the key, not a setting silently ignored. Relative paths inside the file are relative
//! to the file's directory.
//!
//! ```toml
//! [http]
//! listen = "0.0.0.0:5050"
//!
//! [auth]
//! push_token_file = "push.tokens"   # pushing needs one of these tokens; no file, no push
//! pull_token_file = "pull.tokens"   # when set, pulls (/v2/, /repos/, /_ferry/) need one too
//! status_token_file = "status.tokens" # when set, / and /metrics need one of these
//!
//! [cache]
//! prewarm = true                     # re-create gzip blobs of new releases before anyone asks
//!
//! [uploads]
//! max_bytes = 17179869184            # the largest blob one push may upload
//! max_spool_bytes = 34359738368      # all unfinished uploads together
//! min_free_bytes = 1073741824        # upload bytes never take the store's filesystem below this free
//! max_sessions = 256                 # unfinished uploads at once
//! evict_after_secs = 60              # idle this long, an upload gives way to a new one or to another's bytes
//! timeout_secs = 3600                # an idle unfinished upload is dropped after this
//!
//! [p2p]
//! listen = ["/ip4/0.0.0.0/tcp/7701"] # control plane (TCP); the data plane takes UDP on the same port
//! peers = ["/ip4/10.1.0.1/tcp/7701"] # dialled, and re-dialled while unreachable
//! mdns = true                        # find site peers on the local network
//! follow = ["debian-base"]           # take every new version of these names as soon as a peer has it
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file name `ferry serve` looks for in the store directory.
pub const DEFAULT_FILE: &str = "node.toml";

/// `node.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The HTTP service.
    #[serde(default)]
    pub http: HttpConfig,
    /// Who may push and pull.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Limits on pushes.
    #[serde(default)]
    pub uploads: UploadsConfig,
    /// Network sync.
    #[serde(default)]
    pub p2p: P2pConfig,
    /// The cache of re-created gzip blobs.
    #[serde(default)]
    pub cache: CacheConfig,
}

/// `[cache]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Re-create the gzip blobs of new releases in the background, before anyone asks (default on).
    pub prewarm: Option<bool>,
}

/// `[p2p]`. Without a listen address (here or `--p2p-listen`) the node does no network sync.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pConfig {
    /// Control-plane multiaddrs to listen on (`/ip4/A/tcp/P`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// Peers to dial (`/ip4/A/tcp/P[/p2p/PEERID]`).
    #[serde(default)]
    pub peers: Vec<String>,
    /// mDNS discovery of site peers (default on).
    pub mdns: Option<bool>,
    /// Release names to follow.
    #[serde(default)]
    pub follow: Vec<String>,
}

/// `[uploads]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    /// The largest blob one push may upload, bytes (default 16 GiB).
    pub max_bytes: Option<u64>,
    /// Seconds an unfinished upload may sit idle before it is dropped (default 3600).
    pub timeout_secs: Option<u64>,
    /// Bytes all unfinished uploads may spool together (default twice `max_bytes`).
    pub max_spool_bytes: Option<u64>,
    /// Bytes the store's filesystem keeps free; upload bytes that would eat into them are refused (default
    /// 1 GiB; 0 turns the check off).
    pub min_free_bytes: Option<u64>,
    /// Unfinished uploads at once (default 256).
    pub max_sessions: Option<usize>,
    /// Seconds after which an idle upload gives way to a new one when `max_sessions` are open, or to another's
    /// bytes when the spool is full (default 60).
    pub evict_after_secs: Option<u64>,
}

/// `[http]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Seconds a request's head may take to arrive, and a connection may sit idle between requests (default 30).
    pub header_timeout_secs: Option<u64>,
    /// Connections held at once (default 1024); past it the idlest is closed, or, all busy, a newcomer gets 503.
    pub max_connections: Option<usize>,
    /// Connections held at once from one client address (default 256); the same rule among that address's.
    pub max_connections_per_client: Option<usize>,
}

/// `[auth]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// A file of tokens (one per line, `#` comments) that allow pushing; without it, push is refused.
    pub push_token_file: Option<PathBuf>,
    /// A file of tokens that allow pulling; without it, pulls are anonymous.
    pub pull_token_file: Option<PathBuf>,
    /// A file of tokens that allow reading `/` and `/metrics`; without it, they are open.
    pub status_token_file: Option<PathBuf>,
}

/// Why a node configuration is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeConfigError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not valid TOML, or not a node configuration.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl NodeConfig {
    /// Read `path`; relative paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<NodeConfig, NodeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| NodeConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut cfg =
            NodeConfig::parse(&text).map_err(|(line, message)| NodeConfigError::Parse {
                path: path.display().to_string(),
                line,
                message,
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let auth = &mut cfg.auth;
        for p in [
            &mut auth.push_token_file,
            &mut auth.pull_token_file,
            &mut auth.status_token_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// `STORE/node.toml` if it exists, else the defaults.
    pub fn load_default(store_dir: &Path) -> Result<NodeConfig, NodeConfigError> {
        let path = store_dir.join(DEFAULT_FILE);
        if path.exists() {
            NodeConfig::load(&path)
        } else {
            Ok(NodeConfig::default())
        }
    }

    /// Parse the text of a file; on error, the 1-based line and the message.
    fn parse(text: &str) -> Result<NodeConfig, (usize, String)> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            (line, e.message().to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_and_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "[http]\nlisten = \"127.0.0.1:6000\"\n[auth]\npush_token_file = \"push.tokens\"\n\
             pull_token_file = \"/etc/ferry/pull.tokens\"\n",
        )
        .unwrap();
        let cfg = NodeConfig::load(&path).unwrap();
        assert_eq!(cfg.http.listen, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(
            cfg.auth.push_token_file,
            Some(dir.path().join("push.tokens"))
        );
        assert_eq!(
            cfg.auth.pull_token_file,
            Some(PathBuf::from("/etc/ferry/pull.tokens"))
        );
        assert_eq!(NodeConfig::parse("").unwrap(), NodeConfig::default());
    }

    #[test]
    fn typos_and_bad_values_name_their_line() {
        let (line, msg) =
            NodeConfig::parse("[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(msg.contains("unknown field `lisen`"), "{msg}");
        let (line, msg) = NodeConfig::parse("\n[http]\nlisten = \"not an address\"\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(msg.contains("address"), "{msg}");
        let (_, msg) = NodeConfig::parse("[p2p]\nfolow = []\n").unwrap_err();
        assert!(msg.contains("unknown field `folow`"), "{msg}");
        let cfg = NodeConfig::parse(
            "[p2p]\nlisten = [\"/ip4/0.0.0.0/tcp/7701\"]\nmdns = false\nfollow = [\"base\"]\n",
        )
        .unwrap();
        assert_eq!(cfg.p2p.listen, ["/ip4/0.0.0.0/tcp/7701"]);
        assert_eq!(cfg.p2p.mdns, Some(false));
        assert_eq!(cfg.p2p.follow, ["base"]);
    }

    #[test]
    fn upload_bounds_parse() {
        let cfg = NodeConfig::parse(
            "[uploads]\nmax_spool_bytes = 1000\nmin_free_bytes = 0\nmax_sessions = 4\nevict_after_secs = 2\n",
        )
        .unwrap();
        assert_eq!(cfg.uploads.max_spool_bytes, Some(1000));
        assert_eq!(cfg.uploads.min_free_bytes, Some(0));
        assert_eq!(cfg.uploads.max_sessions, Some(4));
        assert_eq!(cfg.uploads.evict_after_secs, Some(2));
        let (line, msg) = NodeConfig::parse("[uploads]\nmax_spool = 1\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(msg.contains("unknown field `max_spool`"), "{msg}");
    }
}
