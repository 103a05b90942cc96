//! Command-line arguments. Doc comments here are the help text.

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Ferry: content-addressed software delivery into air-gapped private clouds.
#[derive(Debug, Parser, Serialize, Deserialize)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Serialize, Deserialize)]
pub struct Global {
    /// The store directory [default: $XDG_DATA_HOME/ferry/store]
    #[arg(long, env = "FERRY_STORE", global = true)]
    pub store: Option<PathBuf>,
    /// Print data as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Draw no progress bars.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum Command {
    /// Create a store and its publisher key.
    Init(InitArgs),
    /// Publisher keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Ingest sources into a new signed release NAME@VERSION.
    Add(AddArgs),
    /// Write a release back out.
    Get(GetArgs),
    /// List releases.
    Ls,
    /// Show a release: entries, sizes, chunks shared with other releases.
    Show(ShowArgs),
    /// Re-verify every chunk, recipe, blob and release; exit 1 if anything is broken.
    Fsck,
    /// What changed from one release to another (images, blobs, packages, files), and the bytes a bundle of the
    /// second for a site holding the first would carry.
    Diff(DiffArgs),
    /// Set up a store with a sample release and write it out, ready to pull.
    Quickstart(QuickstartArgs),
    /// Write a bundle for removable media: the releases' content the receiver lacks, signed, in volumes.
    Export(ExportArgs),
    /// Verify a bundle and store its releases; each becomes visible once its content is whole.
    Import(ImportArgs),
    /// Check or describe a bundle without importing it.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Write this store's have-file: its releases and a compact list of its chunks, for `export --have`.
    Have(HaveArgs),
    /// Sites this store has exported bundles to (the ledger `export --site` keeps).
    Sites(SitesArgs),
    /// Publisher keys this store accepts releases and bundles from.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// The audit trail: a signed, hash-chained log of what happened to this store's content (ingests with
    /// their verification results, exports, imports, syncs, pins, collections).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print this node's peer id (what other nodes of the site put on their allow-lists).
    Id,
    /// The site's members: peer ids this node accepts connections from.
    #[command(subcommand)]
    Peers(PeersCommand),
    /// Pins: which version of a release name the mirrors serve as current (moving tags such as `latest`, and
    /// `/repos/NAME/current/`). Without a pin, the newest version is current; rolling back is pinning an older one.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Drop the releases retention does not keep (the pinned version and the newest N of each name stay), take
    /// back the space of everything nothing kept needs, and compact packs — while the node serves and syncs.
    Gc(GcArgs),
    /// Run the node: serve the store's images as an OCI registry over HTTP (pull, and push with a token) until
    /// SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Print the configuration that points a client at a node (containerd, docker, podman, apt, pip, helm).
    ClientConfig(ClientConfigArgs),
    /// Fetch a release from the site's peers through the running node: only the chunks the store lacks, from
    /// every peer that holds them, each verified before it is stored.
    Sync(SyncArgs),
    /// What the node is doing: releases, peers, syncs.
    Status,
    /// Check this node's setup — the store's owner and free space, the allow-list against the peers it dials,
    /// trusted publisher keys, client configurations, the service's sandbox — and say what to fix; exit 1 if
    /// anything needs fixing.
    Doctor(DoctorArgs),
    /// Print the completion script for SHELL: `source <(ferry completions bash)` for this shell, or save it where
    /// the shell looks (the Debian package installs the bash, zsh and fish ones).
    Completions(CompletionsArgs),
    /// Write the man pages, `ferry.1` and one per subcommand (`ferry-add.1`, `ferry-pin-set.1`, …), into DIR.
    Manpages {
        /// Where to write them (created if missing).
        dir: PathBuf,
    },
    /// (internal) One sync's progress as JSON, for `ferry sync`'s progress bar.
    #[command(hide = true)]
    SyncProgress {
        /// NAME@VERSION.
        release: String,
    },
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct DoctorArgs {
    /// The node's configuration file [default: STORE/node.toml when it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where client (apt, yum, pip) and systemd configurations are read.
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    pub etc: PathBuf,
    /// Where packaged systemd units are read.
    #[arg(long, value_name = "DIR", default_value = "/lib/systemd/system")]
    pub units: PathBuf,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_parser = ["bash", "zsh", "fish", "elvish", "powershell"])]
    pub shell: String,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct SyncArgs {
    /// The release, NAME@VERSION.
    pub release: String,
    /// Fetch only from this peer (its peer id).
    #[arg(long, value_name = "PEER")]
    pub from: Option<String>,
    /// Give up waiting after SECS seconds (the node keeps syncing) [default: wait until done].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Start the sync and return at once; `ferry status` shows how it goes.
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct ClientConfigArgs {
    /// The client to configure.
    #[arg(value_enum)]
    pub client: ClientKind,
    /// The node's URL, as clients reach it (e.g. http://ferry.site.internal:5050).
    #[arg(long)]
    pub node: String,
    /// Only this release's repositories, NAME (its current version, following the node) or NAME@VERSION.
    #[arg(long)]
    pub release: Option<String>,
    /// containerd: write DIR/<registry>/hosts.toml files instead of printing them.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// apt: the upstream's signing key file, added to each line as [signed-by=FILE]. dnf: the upstream's key,
    /// for gpgcheck of the rpms (and repo_gpgcheck of a whole mirror).
    #[arg(long)]
    pub signed_by: Option<PathBuf>,
    /// A file holding a pull token (its first), for a node that needs one to say what it serves.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// The clients `client-config` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum ClientKind {
    /// hosts.toml per upstream registry (containerd, and Kubernetes nodes on it).
    Containerd,
    /// daemon.json registry-mirrors.
    Docker,
    /// registries.conf mirrors (podman, buildah, skopeo, CRI-O).
    Podman,
    /// sources.list lines, one per suite the node serves.
    Apt,
    /// pip.conf.
    Pip,
    /// helm repo add commands.
    Helm,
    /// A .repo file for dnf and yum, one section per yum repository the node serves.
    Dnf,
}

#[derive(Debug, Default, Args, Serialize, Deserialize)]
pub struct ServeArgs {
    /// The node's configuration file [default: STORE/node.toml when it exists].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on for HTTP (port 0 picks a free one; the address is printed on stdout)
    /// [default: the config's http.listen, else 127.0.0.1:5050].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Allow pushing with one of the tokens in FILE (one per line; '#' comments). Without it, push is refused
    /// [default: the config's auth.push_token_file].
    #[arg(long, value_name = "FILE")]
    pub push_token_file: Option<PathBuf>,
    /// Require one of the tokens in FILE (or a push token) to pull. Without it, pulls are anonymous
    /// [default: the config's auth.pull_token_file].
    #[arg(long, value_name = "FILE")]
    pub pull_token_file: Option<PathBuf>,
    /// Require one of the tokens in FILE to read the status page (/) and metrics (/metrics). Without it, they
    /// are open [default: the config's auth.status_token_file].
    #[arg(long, value_name = "FILE")]
    pub status_token_file: Option<PathBuf>,
    /// The largest blob one push may upload (e.g. 16G); larger uploads are refused
    /// [default: the config's uploads.max_bytes, else 16G].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_upload: Option<u64>,
    /// Seconds an unfinished upload may sit idle before it is dropped with its spooled bytes
    /// [default: the config's uploads.timeout_secs, else 3600].
    #[arg(long, value_name = "SECS")]
    pub upload_timeout: Option<u64>,
    /// Take part in network sync: listen on this control-plane multiaddr (`/ip4/0.0.0.0/tcp/7701`); the data
    /// plane takes UDP on the same address and port. Repeatable [default: the config's p2p.listen; none, no
    /// network sync].
    #[arg(long, value_name = "MULTIADDR")]
    pub p2p_listen: Vec<String>,
    /// A peer to dial and keep dialling (`/ip4/10.1.0.1/tcp/7701[/p2p/PEERID]`). Repeatable; adds to the
    /// config's p2p.peers.
    #[arg(long, value_name = "MULTIADDR")]
    pub peer: Vec<String>,
    /// Do not look for site peers with mDNS [default: the config's p2p.mdns, else look].
    #[arg(long)]
    pub no_mdns: bool,
    /// Take every new version of NAME as soon as a peer has it. Repeatable; adds to the config's p2p.follow.
    #[arg(long, value_name = "NAME")]
    pub follow: Vec<String>,
    /// Do not re-create gzip blobs of new releases in the background; each is re-created when first asked for
    /// [default: the config's cache.prewarm, else re-create].
    #[arg(long)]
    pub no_prewarm: bool,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct ExportArgs {
    /// Releases to carry, NAME@VERSION.
    #[arg(required = true)]
    pub releases: Vec<String>,
    /// The bundle directory (created; must not hold a bundle).
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// A release the receiver is known to hold, NAME@VERSION; repeatable.
    #[arg(long = "base")]
    pub base: Vec<String>,
    /// A have-file the receiver wrote with `ferry have`.
    #[arg(long)]
    pub have: Option<std::path::PathBuf>,
    /// The receiving site: what was shipped there before counts as held, and this export is recorded.
    #[arg(long)]
    pub site: Option<String>,
    /// Split the stream into volume files of at most SIZE (e.g. 4095M for FAT32, 4480M for a DVD).
    #[arg(long, value_parser = parse_size)]
    pub volume_size: Option<u64>,
    /// zstd level for the bundle stream (1-22).
    #[arg(long, default_value_t = ferry_node::bundle::export::DEFAULT_LEVEL)]
    pub zstd_level: i32,
    /// Decoded bytes per stream segment (window); for benchmarks. Import and verify hold a few at once.
    #[arg(long, hide = true, value_parser = parse_size)]
    pub segment_size: Option<u64>,
    /// Send every changed chunk whole, never as a delta against what the receiver holds.
    #[arg(long)]
    pub no_delta: bool,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct DiffArgs {
    /// The release held, NAME@VERSION.
    pub from: String,
    /// The release to compare with it, NAME@VERSION.
    pub to: String,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct GcArgs {
    /// Report what would be removed and reclaimed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep this many versions of each name besides the pinned one, this time (default: the store's
    /// `keep_versions`, 2 unless set in config.toml).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct ImportArgs {
    /// The bundle directory.
    pub dir: std::path::PathBuf,
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum BundleCommand {
    /// Check the signature, every volume block and every chunk; exit 1 naming the first problem.
    Verify {
        /// The bundle directory.
        dir: std::path::PathBuf,
        /// Trust this public key file (from `ferry keys export`) instead of the store's trust list; repeatable.
        #[arg(long = "key")]
        keys: Vec<std::path::PathBuf>,
    },
    /// Describe a bundle: releases, basis, chunk and byte counts, volumes.
    Inspect {
        /// The bundle directory.
        dir: std::path::PathBuf,
        /// Check the signature with this public key file instead of the store's trust list; repeatable.
        #[arg(long = "key")]
        keys: Vec<std::path::PathBuf>,
    },
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct HaveArgs {
    /// Where to write it.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct SitesArgs {
    /// Forget this site's ledger (its next `export --site` is complete unless given a base).
    #[arg(long)]
    pub forget: Option<String>,
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum AuditCommand {
    /// List the entries: sequence, time, event, releases.
    Ls {
        /// Only entries that concern this release (NAME@VERSION).
        #[arg(long)]
        release: Option<String>,
    },
    /// Check the chain and every signature (those of entries carried from a seed against the trusted keys);
    /// exit 1 naming each entry that fails.
    Verify {
        /// Check this exported log instead of the store's.
        #[arg(long, value_name = "LOG")]
        file: Option<std::path::PathBuf>,
        /// With --file: the public key (as `ferry keys export` writes it) that signed the log; default the
        /// store's own.
        #[arg(long, value_name = "KEY")]
        key: Option<std::path::PathBuf>,
    },
    /// Write the log as it is (JSON lines) to FILE, or to stdout, for an auditor (`ferry audit verify --file`).
    Export {
        /// Where to write it.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum TrustCommand {
    /// Trust the public key in FILE (as `ferry keys export` writes it).
    Add {
        /// The key file.
        file: std::path::PathBuf,
    },
    /// List trusted keys.
    Ls,
    /// Stop trusting a key.
    Rm {
        /// The key id.
        key: String,
    },
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum PinCommand {
    /// Serve VERSION of NAME as current, at once (the node rebuilds its view on the next request).
    Set {
        /// The release name.
        name: String,
        /// The version, which this store must hold.
        version: String,
        /// For the whole site: the node passes the pin to every peer of the site, and they to theirs.
        #[arg(long)]
        site: bool,
    },
    /// Remove NAME's pin: its newest version is current again.
    Rm {
        /// The release name.
        name: String,
        /// For the whole site (the default when the pin was set with `--site`).
        #[arg(long)]
        site: bool,
    },
    /// List the pins: name, version, where each was set, and whether the version is held.
    Ls,
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum PeersCommand {
    /// Accept connections from PEER_ID (as `ferry id` prints it on that node).
    Allow {
        /// The peer id.
        peer: String,
        /// A note to remember it by (e.g. its host name).
        #[arg(long)]
        note: Option<String>,
    },
    /// Stop accepting connections from PEER_ID.
    Deny {
        /// The peer id.
        peer: String,
    },
    /// List the allowed peers.
    Ls,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct InitArgs {
    /// Succeed without change when the store exists already (a service's first start creates it).
    #[arg(long)]
    pub if_missing: bool,
    /// Smallest chunk (e.g. 16K).
    #[arg(long, default_value = "16K", value_parser = parse_size)]
    pub min_chunk: u64,
    /// Average chunk (e.g. 64K).
    #[arg(long, default_value = "64K", value_parser = parse_size)]
    pub avg_chunk: u64,
    /// Largest chunk (e.g. 256K).
    #[arg(long, default_value = "256K", value_parser = parse_size)]
    pub max_chunk: u64,
    /// zstd level for stored chunks (1-22).
    #[arg(long, default_value_t = 3)]
    pub zstd_level: i32,
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum KeysCommand {
    /// Write the publisher's public key to stdout (what sites `ferry trust add`).
    Export {
        /// Write the store's OpenPGP repository key instead (ASCII-armored): the key partial mirrors are
        /// signed with, for apt's `signed-by` and dnf's `gpgkey`. Its fingerprint goes to stderr.
        #[arg(long)]
        openpgp: bool,
    },
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct AddArgs {
    /// The release to create, NAME@VERSION.
    pub release: String,
    /// Sources: oci:DIR[:TAG], docker-archive:FILE, docker://HOST/REPO:TAG, file:PATH, dir:PATH,
    /// apt:DIR|URL[?suites=S,…&components=C,…&architectures=A,…&languages=L,…&into=PREFIX].
    /// pypi:DIR, helm:DIR[?images=yes&values=FILE], k8s:DIR, yum:DIR (each repository source takes ?into=PREFIX; apt: and yum: take
    /// packages=P1,P2 for a partial mirror, and keyring=PATH; pypi: takes requirements=PATH&python=3.11&
    /// platform=TAG, and then may name a remote index, pypi:https://HOST/simple/?requirements=…), pushed:REPO[:TAG] (images pushed to this node's registry).
    #[arg(required = true)]
    pub sources: Vec<String>,
    /// Keep only this platform of image indexes (OS/ARCH[/VARIANT]); repeatable. Default: all.
    #[arg(long = "platform")]
    pub platforms: Vec<String>,
    /// Reach this registry host[:port] over plain HTTP; repeatable.
    #[arg(long = "insecure-registry")]
    pub insecure: Vec<String>,
    /// Registry credentials, USER:PASSWORD.
    #[arg(long, env = "FERRY_REGISTRY_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    /// A registry bearer token to send as is.
    #[arg(long, env = "FERRY_REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,
    /// Only show what the partial mirrors among the sources (apt:…?packages=…, yum:…?packages=…,
    /// pypi:…?requirements=…) would carry:
    /// every package of the closure with why, and the bytes; nothing is fetched from the pool or stored.
    #[arg(long)]
    pub plan: bool,
    /// Check every source against the policy file POLICY (TOML) before anything is stored: cosign signatures of
    /// registry images, the OpenPGP signature of apt and yum repositories, detached OpenPGP or minisign
    /// signatures of files. A source that fails is refused, naming the artifact, the key and the reason.
    #[arg(long, value_name = "POLICY")]
    pub verify: Option<std::path::PathBuf>,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct GetArgs {
    /// The release, NAME@VERSION.
    pub release: String,
    /// Where: oci:DIR (an OCI image layout) or dir:DIR (the release's files).
    #[arg(long)]
    pub out: String,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct ShowArgs {
    /// The release, NAME@VERSION.
    pub release: String,
    /// Why a partial mirror (apt, yum or PyPI) holds PACKAGE: the chain of dependencies from a requested package to it.
    #[arg(long, value_name = "PACKAGE")]
    pub why: Option<String>,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct QuickstartArgs {
    /// Where to write the sample release as an OCI layout and a file tree.
    #[arg(long, default_value = "ferry-sample")]
    pub out: PathBuf,
    /// Then run the node on the store (as `ferry serve`) until SIGTERM or Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// With --serve: the HTTP address.
    #[arg(long, default_value = "127.0.0.1:5050", requires = "serve")]
    pub listen: std::net::SocketAddr,
}

/// `16K`, `64KiB`, `4M`, `1G` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &t[digits.len()..];
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 64K, 4M, 1G"))?;
    let mult = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("invalid size unit in {s:?}: use K, M or G")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// `NAME@VERSION`.
pub fn parse_release(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('@') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n.to_string(), v.to_string())),
        _ => anyhow::bail!("invalid release {s:?}: expected NAME@VERSION"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("4095M"), Ok(4095 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("K").is_err());
    }

    #[test]
    fn releases() {
        assert_eq!(
            parse_release("platform@2026.11.2").unwrap(),
            ("platform".into(), "2026.11.2".into())
        );
        assert!(parse_release("platform").is_err());
        assert!(parse_release("@1").is_err());
    }
}
