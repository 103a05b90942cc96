//! Network sync: nodes that can reach each other sync the same deltas bundles carry, and spread them among
//! themselves so a seed's link carries each chunk once per site, not once per node.
//!
//! Two planes (DESIGN.md, "Two planes on the network"):
//! - [`control`]: libp2p — mDNS inside a site, static peers, identify, Kademlia provider records for the releases
//!   each node holds, gossip of new releases and of the names nodes follow, and a [`Hello`] on every connection
//!   that tells the other side the data port and what this node holds. Connections from peer ids outside the
//!   allow-list (`STORE/peers.toml`) are refused.
//! - [`data`]: quinn — one request per stream (`ferry_protocol::sync`), batches of several MiB of chunks, many
//!   streams per connection, TLS with certificates made from the node keys ([`tls`]), the same allow-list.
//!
//! [`schedule`] decides which chunks to ask which peer for, and how many at once, with no I/O; [`sync`]'s driver
//! does the I/O around it.
//!
//! [`conduct`] keeps each peer's record: protocol violations on either plane past a small budget drop the peer
//! (both planes close its connections and refuse it for a minute, `ferry status` says why), and its data-plane
//! requests are paced.
//!
//! [`sync`] fetches a release: the signed manifest (checked against the trusted publisher keys, whoever sent it),
//! the recipes it lacks, then every chunk it lacks in batches from every peer that holds them, each chunk checked
//! against its BLAKE3 id before it is stored. A peer that sends bad bytes is dropped for the rest of the sync and its
//! batch fetched elsewhere. Interrupted, a sync starts from what the store holds, so verified chunks are never
//! fetched twice.

pub mod conduct;
pub mod control;
pub mod data;
pub mod providers;
pub mod schedule;
pub mod sync;
pub mod tls;
pub mod wire;

use crate::membership::{AllowList, MembershipError};
use crate::plan::envelope_hash;
use crate::store::{Store, StoreError};
use ferry_protocol::sync::{Announced, Hello};
use libp2p::{Multiaddr, PeerId};
use libp2p_identity::Keypair;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

pub use sync::{SyncError, SyncProgress, SyncReport};

/// How the network side of a node is set up (`[p2p]` in node.toml, and `ferry serve`'s flags).
#[derive(Clone, Debug, Default)]
pub struct NetConfig {
    /// Control-plane listen addresses (`/ip4/A/tcp/P`); the data plane listens on UDP at the first one's address
    /// and port.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial and keep dialling (`/ip4/A/tcp/P[/p2p/PEERID]`).
    pub peers: Vec<Multiaddr>,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Release names whose every new version this node takes as soon as a peer has it.
    pub follow: Vec<String>,
}

/// Why the network could not start or a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A listen address the node cannot use.
    #[error("p2p listen address {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Node key or allow-list.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// TLS setup.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// libp2p setup.
    #[error("control plane: {0}")]
    Control(String),
}

/// This machine's wall clock, milliseconds since the Unix epoch.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What this node knows of another.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerInfo {
    /// Whether a control-plane connection is open.
    pub connected: bool,
    /// The address the control connection reached (or came from).
    pub ip: Option<IpAddr>,
    /// Its data port, from its hello.
    pub data_port: Option<u16>,
    /// Releases it holds whole, from its hello and gossip.
    pub releases: Vec<Announced>,
    /// Names it follows.
    pub follows: Vec<String>,
    /// Chunk payload bytes received from it by syncs.
    pub received_bytes: u64,
    /// Chunks received from it by syncs (verified and stored).
    pub received_chunks: u64,
    /// Chunk bytes (as stored) sent to it.
    pub sent_bytes: u64,
    /// Why it was dropped, the last time: by a sync, for bytes that failed verification (for the rest of that
    /// sync), or by this node, for protocol violations ([`conduct`]).
    pub dropped: Option<String>,
    /// Seconds this node still refuses it on both planes, after dropping it for protocol violations.
    pub refused_for_secs: Option<u64>,
    /// Its wall clock less this node's, in milliseconds, from its last hello (`None` before one came, or from a
    /// node too old to say).
    pub clock_offset_ms: Option<i64>,
    /// How far [`PeerInfo::clock_offset_ms`] may be off, in milliseconds: half the round trip of the hello that
    /// measured it, or `None` when it came unasked (a request's one-way delay is unknown; an answer to this
    /// node's own hello replaces it).
    pub clock_error_ms: Option<u64>,
    /// When this node sent its hello to the peer, by both clocks; taken by the answer.
    #[serde(skip)]
    pub(crate) hello_sent: Option<(std::time::Instant, u64)>,
}

impl PeerInfo {
    /// Where its data plane listens, once known.
    pub fn data_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.ip?, self.data_port?))
    }

    /// Whether it announced holding release `id`.
    pub fn holds(&self, id: &str) -> bool {
        self.releases.iter().any(|r| r.id == id)
    }
}

/// A refusal, for `ferry status` and the log.
#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    /// The peer refused.
    pub peer: String,
    /// Where from.
    pub addr: String,
    /// Which plane refused it.
    pub plane: &'static str,
    /// Why: not on the allow-list, dropped a moment ago, too many connections.
    pub why: String,
}

/// The state the planes and syncs share.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) key: Keypair,
    pub(crate) local: PeerId,
    pub(crate) allow: AllowList,
    pub(crate) follow: Vec<String>,
    pub(crate) data: data::DataPlane,
    pub(crate) peers: Mutex<BTreeMap<PeerId, PeerInfo>>,
    pub(crate) refused: Mutex<Vec<Refusal>>,
    pub(crate) syncs: Mutex<HashMap<String, Arc<sync::Running>>>,
    /// Raised when a peer appears, goes, or says it holds something new.
    pub(crate) peers_changed: Notify,
    pub(crate) control: mpsc::UnboundedSender<control::Command>,
    pub(crate) started: Instant,
    pub(crate) listening: Mutex<Vec<Multiaddr>>,
    /// Deltas being encoded for peers (level-19 zstd over references of up to 64 MiB): at most
    /// [`data::DELTA_JOBS`] at once; more wait.
    pub(crate) delta_jobs: tokio::sync::Semaphore,
    /// Each peer's violations, drops and request pacing.
    pub(crate) conduct: conduct::Conduct,
    /// What the hello says of the store, read on the blocking pool whenever the store's generation moves, so the
    /// control plane (an async task) answers hellos from memory.
    pub(crate) held: Mutex<Arc<Held>>,
}

/// The store as the control plane tells peers of it: read by [`Network::read_held`] on the blocking pool.
#[derive(Default)]
pub(crate) struct Held {
    /// The store's generation when read.
    pub(crate) generation: u64,
    /// Releases held whole.
    pub(crate) releases: Vec<Announced>,
    /// Site-wide pins, tombstones included.
    pub(crate) pins: Vec<ferry_protocol::sync::Pin>,
}

/// The network side of a running node. Cheap to clone.
#[derive(Clone)]
pub struct Network(pub(crate) Arc<Shared>);

/// `ferry status`'s view of the network.
#[derive(Clone, Debug, Serialize)]
pub struct NetStatus {
    /// This node.
    pub peer_id: String,
    /// Control-plane addresses it listens on.
    pub listening: Vec<String>,
    /// Its data plane's UDP address.
    pub data_addr: String,
    /// Names it follows.
    pub follows: Vec<String>,
    /// Peers it knows, by peer id.
    pub peers: BTreeMap<String, PeerInfo>,
    /// Syncs running or finished since the node started.
    pub syncs: Vec<SyncProgress>,
    /// Connections refused (the newest 32).
    pub refused: Vec<Refusal>,
    /// Seconds since the network started.
    pub uptime_seconds: u64,
}

impl Network {
    /// Start both planes on `store` with `config`; they run until `stop` resolves.
    pub async fn start(
        store: Store,
        config: NetConfig,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<Network, NetError> {
        let key = crate::membership::node_key(store.root())?;
        let local = key.public().to_peer_id();
        let allow = AllowList::of(store.root());
        allow.members()?; // a damaged list is an error now, not at the first connection
        let data_addr = data_bind_addr(&config.listen)?;
        let data = data::DataPlane::bind(&key, data_addr)?;
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let net = Network(Arc::new(Shared {
            store,
            key,
            local,
            allow,
            follow: config.follow.clone(),
            data,
            peers: Mutex::new(BTreeMap::new()),
            refused: Mutex::new(Vec::new()),
            syncs: Mutex::new(HashMap::new()),
            peers_changed: Notify::new(),
            control: control_tx,
            started: Instant::now(),
            listening: Mutex::new(Vec::new()),
            delta_jobs: tokio::sync::Semaphore::new(data::DELTA_JOBS),
            conduct: conduct::Conduct::default(),
            held: Mutex::new(Arc::default()),
        }));
        // What the first hellos say, before the control plane runs.
        let first = {
            let net = net.clone();
            tokio::task::spawn_blocking(move || net.read_held())
                .await
                .map_err(|e| NetError::Control(format!("reading the store: {e}")))??
        };
        *net.0.held.lock().expect("poisoned") = Arc::new(first);
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            stop.await;
            let _ = stop_tx.send(true);
        });
        let swarm = control::build(&net, &config)?;
        tokio::spawn(data::serve(net.clone(), stop_rx.clone()));
        tokio::spawn(control::run(
            net.clone(),
            swarm,
            config,
            control_rx,
            stop_rx,
        ));
        Ok(net)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.0.local
    }

    /// The data plane's UDP address.
    pub fn data_addr(&self) -> SocketAddr {
        self.0.data.local_addr()
    }

    /// The control plane's listen addresses, once bound.
    pub fn listening(&self) -> Vec<Multiaddr> {
        self.0.listening.lock().expect("poisoned").clone()
    }

    /// What this node tells a peer when they connect.
    /// This node's hello, from memory ([`Shared::held`]).
    pub(crate) fn hello(&self) -> Hello {
        let held = self.0.held.lock().expect("poisoned").clone();
        Hello {
            data_port: self.data_addr().port(),
            releases: held.releases.clone(),
            follows: self.0.follow.clone(),
            pins: held.pins.clone(),
            time_ms: wall_ms(),
        }
    }

    /// Read what the hello says of the store (blocking: run it on the blocking pool).
    pub(crate) fn read_held(&self) -> Result<Held, StoreError> {
        let generation = self.0.store.generation();
        Ok(Held {
            generation,
            releases: self.held()?,
            pins: self.site_pins(),
        })
    }

    /// The store's site-wide pins, tombstones included.
    pub(crate) fn site_pins(&self) -> Vec<ferry_protocol::sync::Pin> {
        match self.0.store.pin_records() {
            Ok(pins) => pins.into_iter().filter(|p| p.site).collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read pins");
                Vec::new()
            }
        }
    }

    /// Take site-wide pins from `peer` (on the blocking pool): each wins or loses by its clock and origin.
    pub(crate) fn take_pins(&self, peer: PeerId, pins: Vec<ferry_protocol::sync::Pin>) {
        let pins: Vec<_> = pins.into_iter().filter(|p| p.site).collect();
        if pins.is_empty() {
            return;
        }
        let store = self.0.store.clone();
        tokio::task::spawn_blocking(move || {
            for pin in pins {
                match store.merge_pin(&pin) {
                    Ok(true) => tracing::info!(
                        %peer, name = %pin.name, version = ?pin.version, origin = %pin.origin,
                        "took a site pin"
                    ),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(%peer, name = %pin.name, error = %e, "refused a site pin")
                    }
                }
            }
        });
    }

    /// The releases this store holds, as announced.
    pub(crate) fn held(&self) -> Result<Vec<Announced>, StoreError> {
        Ok(self
            .0
            .store
            .releases()?
            .into_iter()
            .map(|r| Announced {
                id: r.manifest.id(),
                sequence: r.manifest.sequence,
                envelope: envelope_hash(&r.signed),
            })
            .collect())
    }

    /// A snapshot for `ferry status`.
    pub fn status(&self) -> NetStatus {
        let peers = self.0.peers.lock().expect("poisoned");
        let mut syncs: Vec<SyncProgress> = self
            .0
            .syncs
            .lock()
            .expect("poisoned")
            .values()
            .map(|s| s.progress())
            .collect();
        syncs.sort_by(|a, b| a.release.cmp(&b.release));
        let now = Instant::now();
        NetStatus {
            peer_id: self.0.local.to_string(),
            listening: self.listening().iter().map(|a| a.to_string()).collect(),
            data_addr: self.data_addr().to_string(),
            follows: self.0.follow.clone(),
            peers: peers
                .iter()
                .map(|(p, i)| {
                    let mut i = i.clone();
                    i.refused_for_secs = self.0.conduct.dropped(p, now).map(|d| d.as_secs().max(1));
                    (p.to_string(), i)
                })
                .collect(),
            syncs,
            refused: self.0.refused.lock().expect("poisoned").clone(),
            uptime_seconds: self.0.started.elapsed().as_secs(),
        }
    }

    /// Note a refused connection.
    pub(crate) fn refuse(&self, peer: PeerId, addr: String, plane: &'static str, why: &str) {
        tracing::warn!(%peer, %addr, plane, why, "refused a peer");
        let mut r = self.0.refused.lock().expect("poisoned");
        if r.len() >= 32 {
            r.remove(0);
        }
        r.push(Refusal {
            peer: peer.to_string(),
            addr,
            plane,
            why: why.to_string(),
        });
    }

    /// Count a protocol violation by `peer` (`what` names it), and drop the peer if that spends its budget.
    pub(crate) fn violation(&self, peer: PeerId, plane: &'static str, what: &str) {
        tracing::debug!(%peer, plane, what, "protocol violation");
        if let Some(reason) = self.0.conduct.violation(peer, what, Instant::now()) {
            self.drop_peer(peer, reason);
        }
    }

    /// Note the drop of `peer` for `ferry status`, then close every connection with it on both planes, saying
    /// `reason` (noted first, so that status names the drop by the time the peer sees its connection closed); the
    /// planes refuse it until [`conduct::DROP_FOR`] has passed.
    fn drop_peer(&self, peer: PeerId, reason: String) {
        tracing::warn!(%peer, %reason, "dropped a peer");
        self.update_peer(peer, |p| p.dropped = Some(reason.clone()));
        self.0.data.drop_peer(&peer, &reason);
        let _ = self.0.control.send(control::Command::Disconnect(peer));
    }

    /// Whether to take a control-plane message (gossip, a hello) from `peer`: not while it is dropped, nor past
    /// its rate — then the message is counted as a violation (`what` names the kind).
    pub(crate) fn control_message(&self, peer: PeerId, what: &str) -> bool {
        if self.dropped(&peer).is_some() {
            return false;
        }
        if self.0.conduct.control_message(peer, Instant::now()) {
            return true;
        }
        let why = format!("{what} past {} messages a second", conduct::CONTROL_PER_SEC);
        self.violation(peer, "control", &why);
        false
    }

    /// How much longer `peer` is refused, if it was dropped for protocol violations.
    pub(crate) fn dropped(&self, peer: &PeerId) -> Option<Duration> {
        self.0.conduct.dropped(peer, Instant::now())
    }

    /// Whether `peer` may talk to this node.
    pub(crate) fn allowed(&self, peer: &PeerId) -> bool {
        match self.0.allow.allows(peer) {
            Ok(yes) => yes,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the allow-list; refusing {peer}");
                false
            }
        }
    }

    /// Update what is known of `peer`, and wake syncs waiting for peers.
    pub(crate) fn update_peer(&self, peer: PeerId, f: impl FnOnce(&mut PeerInfo)) {
        self.count_peer(peer, f);
        self.0.peers_changed.notify_waiters();
    }

    /// [`Network::update_peer`] for counters: nobody waiting on peers to change is woken.
    pub(crate) fn count_peer(&self, peer: PeerId, f: impl FnOnce(&mut PeerInfo)) {
        f(self
            .0
            .peers
            .lock()
            .expect("poisoned")
            .entry(peer)
            .or_default());
    }

    /// A copy of what is known of every peer.
    pub(crate) fn peers(&self) -> BTreeMap<PeerId, PeerInfo> {
        self.0.peers.lock().expect("poisoned").clone()
    }

    /// The sync of release `id`, running or finished, if one was started since the node started.
    pub fn sync_of(&self, id: &str) -> Option<Arc<sync::Running>> {
        self.0.syncs.lock().expect("poisoned").get(id).cloned()
    }

    /// Tell the site this node now holds `release` (gossip, and a provider record).
    pub(crate) fn announce(&self, release: Announced) {
        let _ = self.0.control.send(control::Command::Announce(release));
    }
}

/// The data plane's UDP address: the first control-plane listen address's IP and port (so one number names a
/// node on both planes); port 0 takes a free one.
fn data_bind_addr(listen: &[Multiaddr]) -> Result<SocketAddr, NetError> {
    use libp2p::multiaddr::Protocol;
    let Some(first) = listen.first() else {
        return Ok(SocketAddr::from(([0, 0, 0, 0], 0)));
    };
    let mut ip = None;
    let mut port = None;
    for p in first.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
        _ => Err(NetError::Listen {
            addr: first.to_string(),
            reason: "expected /ip4/ADDRESS/tcp/PORT (or /ip6/…)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use ferry_protocol::sync::{SyncRequest, SyncResponse};

    /// A node on loopback with a fresh store in `dir` whose allow-list holds `allowed`.
    async fn node(dir: &std::path::Path, allowed: &[PeerId]) -> Network {
        let store = Store::create(&dir.join("s"), StoreConfig::default()).unwrap();
        for peer in allowed {
            AllowList::of(store.root()).allow(peer, None).unwrap();
        }
        let config = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            mdns: false,
            ..NetConfig::default()
        };
        Network::start(store, config, std::future::pending())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_data_plane_answers_only_allowed_peers_and_proves_who_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let net = node(dir.path(), &[]).await;
        let root = net.0.store.root().to_path_buf();
        let stranger = Keypair::generate_ed25519();
        let plane = data::DataPlane::bind(&stranger, "127.0.0.1:0".parse().unwrap()).unwrap();
        let ask = || async {
            let c = plane.connect(net.peer_id(), net.data_addr()).await?;
            data::request(&c, &SyncRequest::Release { id: "a@1".into() }).await
        };

        let err = ask().await.unwrap_err();
        assert!(err.to_string().contains("not on its allow-list"), "{err}");
        let refused = net.status().refused;
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].peer, stranger.public().to_peer_id().to_string());
        assert_eq!(refused[0].plane, "data");

        AllowList::of(&root)
            .allow(&stranger.public().to_peer_id(), None)
            .unwrap();
        plane.disconnect(&net.peer_id(), "retry");
        match ask().await.unwrap() {
            SyncResponse::Refused(why) => assert!(why.contains("a@1"), "{why}"),
            other => panic!("unexpected answer {other:?}"),
        }

        // Expecting another peer id at that address: the handshake fails, nothing is asked.
        let impostor = PeerId::random();
        let err = plane.connect(impostor, net.data_addr()).await.unwrap_err();
        assert!(err.to_string().contains(&impostor.to_string()), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_allowed_peer_that_breaks_the_protocol_is_refused_then_dropped_then_refused_a_while()
    {
        let dir = tempfile::tempdir().unwrap();
        let peer = Keypair::generate_ed25519();
        let net = node(dir.path(), &[peer.public().to_peer_id()]).await;
        let plane = data::DataPlane::bind(&peer, "127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = plane.connect(net.peer_id(), net.data_addr()).await.unwrap();
        let oversized = async |conn: &quinn::Connection| {
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(&u32::MAX.to_le_bytes()).await?;
            wire::read_frame::<SyncResponse>(&mut recv).await
        };
        for _ in 1..conduct::VIOLATION_BUDGET {
            match oversized(&conn).await.unwrap() {
                SyncResponse::Refused(why) => assert_eq!(
                    why,
                    "protocol violation: a request frame of 4294967295 bytes, past the 4 MiB limit"
                ),
                other => panic!("unexpected answer {other:?}"),
            }
        }
        let _ = oversized(&conn).await;
        let closed = conn.closed().await.to_string();
        assert!(closed.contains("10 protocol violations"), "{closed}");
        let info = net.status().peers[&peer.public().to_peer_id().to_string()].clone();
        let dropped = info.dropped.clone().unwrap();
        assert!(
            dropped.starts_with("10 protocol violations in "),
            "{dropped}"
        );
        assert!(
            dropped.ends_with("past the 4 MiB limit); refused for 60 s"),
            "{dropped}"
        );
        assert!(info.refused_for_secs.is_some_and(|s| s > 50), "{info:?}");

        // Refused on the next connection, saying why.
        plane.disconnect(&net.peer_id(), "retry");
        let err = match plane.connect(net.peer_id(), net.data_addr()).await {
            Ok(c) => data::request(&c, &SyncRequest::Release { id: "a@1".into() })
                .await
                .unwrap_err(),
            Err(e) => e,
        };
        assert!(
            err.to_string().contains("dropped for protocol violations"),
            "{err}"
        );
        assert_eq!(net.status().refused[0].plane, "data");
    }
}
