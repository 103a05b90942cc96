//! `ferry doctor`: a node's setup checked from its files, each problem named with what to do about it.
//!
//! Every check but the clocks' reads files only (the store's, `node.toml`, client and service configurations
//! under an `/etc` the caller names), so it runs whether or not the node does, and opens nothing a running node
//! holds.
//!
//! - **store**: the store belongs to the user running ferry, and that user can write it;
//! - **disk**: the store's filesystem has more free space than the upload reserve (`uploads.min_free_bytes`);
//! - **peers**: every peer `node.toml` dials by id is on the allow-list too (else its connections back are
//!   refused), the allow-list reads, and (the running node's view) no peer dialling this node was refused for
//!   not being on it;
//! - **trust**: a node set up to receive (it syncs, or follows names) trusts a publisher key besides its own, and
//!   every key file in `trust/` reads;
//! - **clients**: apt, yum and pip configurations that point at a Ferry mirror (`/repos/…`) point at this node's
//!   port (and address, where it listens on one);
//! - **service**: a `ferry.service` that runs this store may write it (`ReadWritePaths=`);
//! - **clock**: no connected peer's clock is more than [`MAX_SKEW_MS`] from this node's. This one needs the
//!   running node, which measures each peer's clock from its hello: `ferry doctor` runs inside the node when one
//!   holds the store, and otherwise says the clocks went unchecked.

use crate::membership::{self, AllowList};
use crate::node_config::NodeConfig;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// `store`, `disk`, `peers`, `trust`, `clients`, `service`, `clock`.
    pub check: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found: the good state, or the problem.
    pub what: String,
    /// What to do about a problem (empty when it passed).
    pub fix: String,
}

impl Finding {
    fn ok(check: &'static str, what: impl Into<String>) -> Finding {
        Finding {
            check,
            ok: true,
            what: what.into(),
            fix: String::new(),
        }
    }

    fn problem(check: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            ok: false,
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// What the checks look at.
pub struct Setup<'a> {
    /// The store directory.
    pub store: &'a Path,
    /// The node's configuration (`node.toml`, or the defaults).
    pub config: &'a NodeConfig,
    /// Where client and service configurations live (`/etc`).
    pub etc: &'a Path,
    /// Where packaged units live (`/lib/systemd/system`).
    pub units: &'a Path,
    /// What the running node knows of its peers; `None` when no node runs.
    pub live: Option<&'a Live>,
}

/// What a running node has seen of its peers, for the checks files cannot answer.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// The connected peers' clocks, as measured from their hellos.
    pub clocks: Vec<PeerClock>,
    /// Peers whose connections the node refused for not being on the allow-list: (peer id, address).
    pub unlisted: Vec<(String, String)>,
}

/// A connected peer's clock, as the node measured it from the peer's hello.
#[derive(Clone, Debug)]
pub struct PeerClock {
    /// Its peer id.
    pub peer: String,
    /// Its clock less this node's, in milliseconds; `None` when it never said (a node too old to).
    pub offset_ms: Option<i64>,
    /// How far the offset may be off (half the hello's round trip); `None` when not known.
    pub error_ms: Option<u64>,
}

/// How far a peer's clock may be from this node's before it is a problem. Apt refuses a `Release` file dated in
/// its future (a partial mirror's is signed with this node's time), signatures are checked against the time of
/// day, and audit logs of the site no longer read in order; NTP keeps clocks within milliseconds.
pub const MAX_SKEW_MS: u64 = 5_000;

/// Run every check.
pub fn check(s: &Setup<'_>) -> Vec<Finding> {
    let mut out = vec![store(s.store), disk(s.store, s.config)];
    out.push(peers(s.store, s.config, s.live));
    out.push(trust(s.store, s.config));
    out.extend(clients(s.etc, s.config));
    out.extend(service(s));
    out.push(clock(s.live.map(|l| &l.clocks[..])));
    out
}

fn clock(clocks: Option<&[PeerClock]>) -> Finding {
    let Some(clocks) = clocks else {
        return Finding::ok(
            "clock",
            "not checked: no node runs on this store, and only a running node measures its peers' clocks",
        );
    };
    let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    let mut off = Vec::new();
    let mut measured = 0;
    for c in clocks {
        let Some(offset) = c.offset_ms else { continue };
        measured += 1;
        // Only what lies beyond the measurement's own uncertainty counts.
        if offset
            .unsigned_abs()
            .saturating_sub(c.error_ms.unwrap_or(0))
            > MAX_SKEW_MS
        {
            off.push(format!(
                "{}'s clock is {} {} this node's",
                c.peer,
                secs(offset.unsigned_abs()),
                if offset > 0 { "ahead of" } else { "behind" }
            ));
        }
    }
    if !off.is_empty() {
        return Finding::problem(
            "clock",
            format!(
                "{} (more than {} apart)",
                off.join("; "),
                secs(MAX_SKEW_MS)
            ),
            "keep every node on one time source: systemd-timesyncd or chrony on each, pointed at the site's NTP \
             server (an air-gapped site needs one of its own); `timedatectl timesync-status` shows what a node follows",
        );
    }
    let worst = clocks
        .iter()
        .filter_map(|c| c.offset_ms)
        .map(i64::unsigned_abs)
        .max()
        .unwrap_or(0);
    Finding::ok(
        "clock",
        format!(
            "{measured} of {} connected peer(s) measured, the farthest {} away",
            clocks.len(),
            secs(worst)
        ),
    )
}

fn store(root: &Path) -> Finding {
    let me = rustix::process::geteuid().as_raw();
    let meta = match std::fs::metadata(root.join("config.toml")) {
        Ok(_) => std::fs::metadata(root),
        Err(e) => {
            return Finding::problem(
                "store",
                format!("{} is no store: {e}", root.display()),
                "create it with `ferry init`, or name the right one with --store / FERRY_STORE",
            )
        }
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) => return Finding::problem("store", format!("{}: {e}", root.display()), ""),
    };
    if meta.uid() != me {
        return Finding::problem(
            "store",
            format!(
                "{} belongs to uid {}, but ferry runs as uid {me}: it cannot keep the store's files private and \
                 may not write them",
                root.display(),
                meta.uid()
            ),
            format!(
                "`chown -R {me} {}` (or run ferry as uid {})",
                root.display(),
                meta.uid()
            ),
        );
    }
    if let Err(e) = rustix::fs::access(root, rustix::fs::Access::WRITE_OK) {
        return Finding::problem(
            "store",
            format!("{} is not writable: {e}", root.display()),
            format!("`chmod u+rwx {}`", root.display()),
        );
    }
    let loose = meta.mode() & 0o002 != 0;
    if loose {
        return Finding::problem(
            "store",
            format!("{} is writable by everyone", root.display()),
            format!("`chmod o-w {}`", root.display()),
        );
    }
    Finding::ok(
        "store",
        format!("{} belongs to uid {me} and is writable", root.display()),
    )
}

fn disk(root: &Path, config: &NodeConfig) -> Finding {
    let reserve = config
        .uploads
        .min_free_bytes
        .unwrap_or(crate::mirror::UploadLimits::default().min_free_bytes);
    let st = match rustix::fs::statvfs(root) {
        Ok(st) => st,
        Err(e) => return Finding::problem("disk", format!("{}: {e}", root.display()), ""),
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30));
    if free <= reserve {
        return Finding::problem(
            "disk",
            format!(
                "the store's filesystem has {} free, not more than the reserve of {} (uploads.min_free_bytes): \
                 pushes are refused",
                gib(free),
                gib(reserve)
            ),
            "free space (`ferry gc` drops what retention does not keep), grow the filesystem, or lower \
             uploads.min_free_bytes in node.toml",
        );
    }
    Finding::ok(
        "disk",
        format!("{} free, above the reserve of {}", gib(free), gib(reserve)),
    )
}

fn peers(root: &Path, config: &NodeConfig, live: Option<&Live>) -> Finding {
    let members = match AllowList::of(root).members() {
        Ok(m) => m,
        Err(e) => {
            return Finding::problem(
                "peers",
                e.to_string(),
                "fix or remove the file; `ferry peers ls` reads it",
            )
        }
    };
    let allowed: std::collections::BTreeSet<&str> = members.iter().map(|m| m.id.as_str()).collect();
    let mut one_sided = Vec::new();
    for addr in &config.p2p.peers {
        let Some((_, id)) = addr.rsplit_once("/p2p/") else {
            continue;
        };
        if membership::parse_peer_id(id).is_ok() && !allowed.contains(id) {
            one_sided.push(id.to_string());
        }
    }
    if !one_sided.is_empty() {
        return Finding::problem(
            "peers",
            format!(
                "node.toml dials {} but the allow-list does not have {}: its connections to this node are refused",
                one_sided.join(", "),
                if one_sided.len() == 1 { "it" } else { "them" }
            ),
            one_sided
                .iter()
                .map(|id| format!("`ferry peers allow {id}`"))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    // The other side: peers that dial this node and are refused (seen by the running node).
    let mut refused: Vec<&(String, String)> = live
        .map(|l| {
            l.unlisted
                .iter()
                .filter(|(id, _)| !allowed.contains(id.as_str()))
                .collect()
        })
        .unwrap_or_default();
    refused.sort();
    refused.dedup_by(|a, b| a.0 == b.0);
    if !refused.is_empty() {
        return Finding::problem(
            "peers",
            format!(
                "this node refused {} for not being on its allow-list",
                refused
                    .iter()
                    .map(|(id, addr)| format!("{id} (from {addr})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "if {} the site's, {}; a stranger needs nothing (it stays out)",
                if refused.len() == 1 {
                    "it is one of"
                } else {
                    "they are"
                },
                refused
                    .iter()
                    .map(|(id, _)| format!("`ferry peers allow {id}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    Finding::ok(
        "peers",
        format!(
            "{} peer(s) allowed; every peer dialled by id is among them{}",
            members.len(),
            if live.is_some() {
                ", and none was refused for not being on it"
            } else {
                ""
            }
        ),
    )
}

fn trust(root: &Path, config: &NodeConfig) -> Finding {
    let dir = root.join("trust");
    let mut keys = 0;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "pub") {
                if let Err(err) = crate::trust::read_key_file(&p) {
                    return Finding::problem(
                        "trust",
                        err.to_string(),
                        format!(
                            "replace {} with the publisher's key (`ferry keys export` on the seed)",
                            p.display()
                        ),
                    );
                }
                keys += 1;
            }
        }
    }
    let receives = !config.p2p.peers.is_empty() || !config.p2p.follow.is_empty();
    if keys == 0 && receives {
        return Finding::problem(
            "trust",
            "this node syncs from peers, but trusts no publisher key besides its own: every release from the \
             seed is refused",
            "`ferry trust add SEED.pub` with the key `ferry keys export` prints on the seed",
        );
    }
    Finding::ok(
        "trust",
        format!("{keys} publisher key(s) trusted besides the store's own"),
    )
}

/// Apt, yum and pip configuration files under `etc` that name a Ferry mirror (`/repos/`) elsewhere.
fn clients(etc: &Path, config: &NodeConfig) -> Vec<Finding> {
    let listen = config
        .http
        .listen
        .unwrap_or_else(|| ([127, 0, 0, 1], 5050).into());
    let mut files: Vec<PathBuf> = vec![etc.join("apt/sources.list"), etc.join("pip.conf")];
    for (dir, exts) in [
        ("apt/sources.list.d", &["list", "sources"][..]),
        ("yum.repos.d", &["repo"][..]),
        ("pip", &["conf"][..]),
    ] {
        if let Ok(entries) = std::fs::read_dir(etc.join(dir)) {
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| exts.contains(&x))
                })
                .collect();
            found.sort();
            files.extend(found);
        }
    }
    let mut out = Vec::new();
    let mut pointing = 0;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            for url in line
                .split(|c: char| c.is_whitespace() || c == '=' || c == '[' || c == ']')
                .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
            {
                let Some((host, port)) = host_port(url) else {
                    continue;
                };
                if !url.contains("/repos/") {
                    continue;
                }
                pointing += 1;
                let other_port = port != listen.port();
                let other_host = !listen.ip().is_unspecified()
                    && !listen.ip().is_loopback()
                    && host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip != listen.ip());
                if other_port || other_host {
                    out.push(Finding::problem(
                        "clients",
                        format!(
                            "{} line {}: {url} points at {host}:{port}, but this node listens on {listen}",
                            file.display(),
                            n + 1
                        ),
                        format!(
                            "point it at this node (`ferry client-config` prints the lines), or remove it if \
                             {host}:{port} is another node on purpose"
                        ),
                    ));
                }
            }
        }
    }
    if out.is_empty() {
        out.push(Finding::ok(
            "clients",
            format!("{pointing} client repository line(s) point at Ferry mirrors, none elsewhere"),
        ));
    }
    out
}

/// The host and port of an `http(s)://HOST[:PORT]/…` URL.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default = if scheme == "https" { 443 } else { 80 };
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(default), |p| p.parse().ok())?;
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((authority.to_string(), default)),
    }
}

/// A `ferry.service` (with its drop-ins) that runs this store must be allowed to write it.
fn service(s: &Setup<'_>) -> Option<Finding> {
    let local = s.etc.join("systemd/system/ferry.service");
    let unit = if local.is_file() {
        local
    } else {
        s.units.join("ferry.service")
    };
    let mut text = std::fs::read_to_string(&unit).ok()?;
    let dropins = s.etc.join("systemd/system/ferry.service.d");
    if let Ok(entries) = std::fs::read_dir(&dropins) {
        let mut confs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        confs.sort();
        for c in confs {
            if c.extension().is_some_and(|x| x == "conf") {
                text.push('\n');
                text.push_str(&std::fs::read_to_string(&c).unwrap_or_default());
            }
        }
    }
    let mut store_of_unit = None;
    let mut writable = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(env) = line.strip_prefix("Environment=") {
            for kv in env.split_whitespace() {
                if let Some(p) = kv.trim_matches('"').strip_prefix("FERRY_STORE=") {
                    store_of_unit = Some(PathBuf::from(p));
                }
            }
        }
        if let Some(paths) = line.strip_prefix("ReadWritePaths=") {
            if paths.is_empty() {
                writable.clear();
            }
            writable.extend(
                paths
                    .split_whitespace()
                    .map(|p| PathBuf::from(p.trim_start_matches(['-', '+']))),
            );
        }
    }
    let runs = store_of_unit.as_deref()?;
    let here = std::fs::canonicalize(s.store).unwrap_or_else(|_| s.store.to_path_buf());
    if std::fs::canonicalize(runs).unwrap_or_else(|_| runs.to_path_buf()) != here {
        return None; // the service runs another store
    }
    if text.contains("ProtectSystem=strict") && !writable.iter().any(|w| here.starts_with(w)) {
        return Some(Finding::problem(
            "service",
            format!(
                "{} runs this store under ProtectSystem=strict, but {} is not under its ReadWritePaths ({})",
                unit.display(),
                here.display(),
                writable
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            format!(
                "`systemctl edit ferry` and add `ReadWritePaths={}` under [Service]",
                here.display()
            ),
        ));
    }
    Some(Finding::ok(
        "service",
        format!("{} may write {}", unit.display(), here.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(offset_ms: Option<i64>, error_ms: Option<u64>) -> PeerClock {
        PeerClock {
            peer: "12D3KooWpeer".into(),
            offset_ms,
            error_ms,
        }
    }

    #[test]
    fn clocks_apart_beyond_the_measures_bound_are_a_problem() {
        let ahead = clock(Some(&[peer(Some(90_000), Some(10))]));
        assert!(!ahead.ok);
        assert!(ahead.what.contains("90.0 s ahead of"), "{}", ahead.what);
        let behind = clock(Some(&[
            peer(Some(2_000), Some(1)),
            peer(Some(-7_000), None),
        ]));
        assert!(!behind.ok);
        assert!(behind.what.contains("7.0 s behind"), "{}", behind.what);
        assert!(!behind.what.contains("2.0 s"), "{}", behind.what);
        // 5.3 s apart, measured over a link whose round trip was 1 s: within the bound.
        assert!(clock(Some(&[peer(Some(5_300), Some(500))])).ok);
        let fine = clock(Some(&[peer(Some(-40), Some(1)), peer(None, None)]));
        assert!(fine.ok);
        assert!(fine.what.starts_with("1 of 2 connected"), "{}", fine.what);
        assert!(clock(None).what.contains("not checked"));
    }

    #[test]
    fn urls_give_their_host_and_port() {
        assert_eq!(
            host_port("http://10.0.0.5:5050/repos/x"),
            Some(("10.0.0.5".into(), 5050))
        );
        assert_eq!(
            host_port("https://mirror.example/repos/x"),
            Some(("mirror.example".into(), 443))
        );
        assert_eq!(
            host_port("http://u:p@[::1]:81/repos"),
            Some(("::1".into(), 81))
        );
        assert_eq!(host_port("http://h:notaport/"), None);
    }
}
