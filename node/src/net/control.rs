//! The control plane on libp2p: who is there and what they hold.
//!
//! - Transport: TCP with noise and yamux, so the node key that names a peer also authenticates it.
//! - [`Gate`]: connections from (or to) a peer id outside the allow-list, or dropped a moment ago for protocol
//!   violations, are refused once its identity is known; at most [`MAX_PENDING`] inbound handshakes,
//!   [`MAX_CONNECTIONS`] connections and [`CONNECTIONS_PER_PEER`] with one peer are held.
//! - mDNS finds site peers on the local network (on unless `mdns = false`); static peers are dialled and
//!   re-dialled while unreachable, so a partition that heals reconnects by itself.
//! - identify tells each side the other's listen addresses, which go into Kademlia.
//! - Kademlia: every node provides a record per release it holds (`ferry/release/NAME@VERSION`, kept by
//!   [`super::providers::Providers`]: its own as keys, other peers' bounded, no values); a sync that finds
//!   no connected holder asks for providers and dials them.
//! - gossipsub, one topic: "I now hold this release" and "I follow these names".
//! - `/ferry/hello/1` (request-response, JSON): on every new connection both sides exchange a [`Hello`] — data port,
//!   releases held, names followed.
//!
//! A node that follows a name and hears of a newer version of it (by hello or gossip) starts syncing it.
//!
//! Gossip and hellos are paced per sender ([`super::conduct::CONTROL_PER_SEC`]); a message past the rate is
//! ignored and, like unreadable gossip, counted as a protocol violation. yamux (512 streams a connection),
//! gossipsub (64 KiB messages, signed, duplicates dropped) and request-response (hellos of [`HELLO_MAX_BYTES`], 20 s) bound the
//! rest of what a connection can make this node hold.

use super::providers::Providers;
use super::{NetConfig, NetError, Network};
use ferry_protocol::sync::{Announced, Gossip, Hello};
use futures::StreamExt;
use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, SwarmEvent, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{
    gossipsub, identify, kad, mdns, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol,
};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// What the rest of the node asks of the control plane.
pub enum Command {
    /// This node now holds a release: gossip it and provide it.
    Announce(Announced),
    /// Look for providers of a release and dial them.
    FindProviders(String),
    /// Close every connection with a peer (dropped for protocol violations; the [`Gate`] refuses it a while).
    Disconnect(PeerId),
}

/// Inbound connections in their handshake at once; more are refused before any cryptography.
pub const MAX_PENDING: usize = 64;
/// Connections held at once, in all.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections held at once with one peer (two nodes dialling each other at once hold two).
pub const CONNECTIONS_PER_PEER: usize = 4;

const GOSSIP_TOPIC: &str = "ferry/announce/1";

/// A hello's size at most, either way. It lists every release the node holds (about 170 bytes each in JSON):
/// request-response's default of 1 MiB for a request refused the hello of a node holding some 6,000 releases,
/// so its peers never learnt what it held from it.
pub const HELLO_MAX_BYTES: u64 = 16 << 20;
/// Hello streams open at once on one connection (request-response's default is 100): a connection carries one
/// hello each way, so what a peer can make this node hold in hellos is at most [`CONNECTIONS_PER_PEER`] times
/// this times [`HELLO_MAX_BYTES`] (256 MiB; with the defaults, 1 MiB and 100 streams, it was 400 MiB).
pub const HELLO_STREAMS: usize = 4;

/// The behaviours, combined.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct Behaviour {
    gate: Gate,
    identify: identify::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    kad: kad::Behaviour<Providers>,
    gossip: gossipsub::Behaviour,
    hello: request_response::json::Behaviour<Hello, Hello>,
}

/// Refuses connections with peers outside the allow-list or dropped a moment ago, and past the connection caps.
pub struct Gate {
    net: Network,
    /// Inbound connections in their handshake.
    pending: HashSet<ConnectionId>,
    /// Connections established, by peer.
    established: HashMap<PeerId, HashSet<ConnectionId>>,
}

impl Gate {
    fn check(&self, peer: &PeerId, addr: &Multiaddr) -> Result<(), ConnectionDenied> {
        let why = if !self.net.allowed(peer) {
            "not on the allow-list".to_string()
        } else if let Some(left) = self.net.dropped(peer) {
            format!(
                "dropped for protocol violations; refused for {} s more",
                left.as_secs().max(1)
            )
        } else if self.established.get(peer).map_or(0, HashSet::len) >= CONNECTIONS_PER_PEER {
            format!("{CONNECTIONS_PER_PEER} connections with this peer already")
        } else if self.established.values().map(HashSet::len).sum::<usize>() >= MAX_CONNECTIONS {
            format!("{MAX_CONNECTIONS} connections already")
        } else {
            return Ok(());
        };
        self.net.refuse(*peer, addr.to_string(), "control", &why);
        Err(ConnectionDenied::new(Refused(*peer, why)))
    }
}

/// A connection refused by the [`Gate`], and why.
#[derive(Debug, thiserror::Error)]
#[error("peer {0} refused: {1}")]
pub struct Refused(PeerId, String);

/// Too many inbound handshakes at once.
#[derive(Debug, thiserror::Error)]
#[error("{MAX_PENDING} inbound handshakes already")]
pub struct Busy;

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if self.pending.len() >= MAX_PENDING {
            return Err(ConnectionDenied::new(Busy));
        }
        self.pending.insert(id);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending.remove(&id);
        self.check(&peer, remote)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(&peer, addr)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        // Counted once every behaviour took the connection (the swarm says so only then).
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.established
                    .entry(e.peer_id)
                    .or_default()
                    .insert(e.connection_id);
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(ids) = self.established.get_mut(&e.peer_id) {
                    ids.remove(&e.connection_id);
                    if ids.is_empty() {
                        self.established.remove(&e.peer_id);
                    }
                }
            }
            FromSwarm::ListenFailure(e) => {
                self.pending.remove(&e.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Build the swarm and start listening.
pub(crate) fn build(
    net: &Network,
    config: &NetConfig,
) -> Result<libp2p::Swarm<Behaviour>, NetError> {
    let fail = |e: &dyn std::fmt::Display| NetError::Control(e.to_string());
    let local = net.0.local;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(net.0.key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| fail(&e))?
        .with_behaviour(|key| {
            let mdns = if config.mdns {
                Some(mdns::tokio::Behaviour::new(mdns::Config::default(), local)?)
            } else {
                None
            };
            let mut kad = kad::Behaviour::with_config(
                local,
                Providers::new(local),
                kad::Config::new(StreamProtocol::new("/ferry/kad/1.0.0")),
            );
            kad.set_mode(Some(kad::Mode::Server));
            let gossip_config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_secs(1))
                .build()
                .map_err(|e| e.to_string())?;
            let gossip = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )?;
            Ok(Behaviour {
                gate: Gate {
                    net: net.clone(),
                    pending: HashSet::new(),
                    established: HashMap::new(),
                },
                identify: identify::Behaviour::new(
                    identify::Config::new("/ferry/id/1.0.0".into(), key.public())
                        .with_agent_version(format!("ferry/{}", env!("CARGO_PKG_VERSION"))),
                ),
                mdns: mdns.into(),
                kad,
                gossip,
                hello: request_response::json::Behaviour::with_codec(
                    request_response::json::codec::Codec::default()
                        .set_request_size_maximum(HELLO_MAX_BYTES)
                        .set_response_size_maximum(HELLO_MAX_BYTES),
                    [(StreamProtocol::new("/ferry/hello/1"), ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(20))
                        .with_max_concurrent_streams(HELLO_STREAMS),
                ),
            })
        })
        .map_err(|e| fail(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    swarm
        .behaviour_mut()
        .gossip
        .subscribe(&gossipsub::IdentTopic::new(GOSSIP_TOPIC))
        .map_err(|e| fail(&e))?;
    let listen = if config.listen.is_empty() {
        vec!["/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr")]
    } else {
        config.listen.clone()
    };
    for addr in listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
    }
    Ok(swarm)
}

/// A peer's clock less this node's, and how far that may be off, from a hello this node sent at `sent` and the
/// answer, stamped `peer_ms` by the peer, that came at `received` (each by the monotonic and the wall clock).
/// The peer stamped its answer somewhere within the round trip; its middle is the best guess, half the round trip
/// the bound.
fn clock_offset(sent: (Instant, u64), received: (Instant, u64), peer_ms: u64) -> (i64, u64) {
    let rtt = received.0.saturating_duration_since(sent.0).as_millis() as u64;
    let middle = sent.1 as i64 + (rtt / 2) as i64;
    (peer_ms as i64 - middle, rtt.div_ceil(2))
}

fn release_key(id: &str) -> kad::RecordKey {
    kad::RecordKey::new(&format!("ferry/release/{id}"))
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    })
}

/// `addr` without a trailing `/p2p/PEER`.
fn without_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// Drive the swarm until `stop`.
pub(crate) async fn run(
    net: Network,
    mut swarm: libp2p::Swarm<Behaviour>,
    config: NetConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut stop: watch::Receiver<bool>,
) {
    let topic = gossipsub::IdentTopic::new(GOSSIP_TOPIC);
    // Static peers: which connected peer each address reached.
    let statics: Vec<Multiaddr> = config.peers.clone();
    let mut static_peer: HashMap<Multiaddr, PeerId> = HashMap::new();
    let mut redial = tokio::time::interval(Duration::from_secs(3));
    let mut follows_tick = tokio::time::interval(Duration::from_secs(60));
    // Releases this node has provided and announced; anything new in the store (an `add` or `import` through
    // the node, a finished sync) is announced at the next look.
    let mut announced: HashSet<String> = HashSet::new();
    // Site-wide pins gossiped (or, at start-up, left to the hello): name → (clock, origin).
    let mut pins_sent: HashMap<String, (u64, String)> = HashMap::new();
    // The generation of the store whose releases and pins were last announced; `None` before the first look.
    let mut generation: Option<u64> = None;
    // A read of the store on the blocking pool, when one runs.
    let mut reading: Option<
        tokio::task::JoinHandle<Result<super::Held, crate::store::StoreError>>,
    > = None;
    let mut look = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = look.tick(), if reading.is_none() => {
                let now = net.0.store.generation();
                if generation != Some(now) {
                    let net = net.clone();
                    reading = Some(tokio::task::spawn_blocking(move || net.read_held()));
                }
            }
            read = async { reading.as_mut().expect("guarded").await }, if reading.is_some() => {
                reading = None;
                let held = match read {
                    Ok(Ok(held)) => Arc::new(held),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot read the store's releases");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reading the store's releases failed");
                        continue;
                    }
                };
                // At start-up only provide: peers learn what is held from the hello.
                let startup = generation.is_none();
                generation = Some(held.generation);
                *net.0.held.lock().expect("poisoned") = held.clone();
                for r in &held.releases {
                    if announced.insert(r.id.clone()) {
                        let _ = swarm.behaviour_mut().kad.start_providing(release_key(&r.id));
                        if !startup {
                            publish(&mut swarm, &topic, &Gossip::Release(r.clone()));
                        }
                    }
                }
                for pin in &held.pins {
                    let key = (pin.clock, pin.origin.clone());
                    if pins_sent.get(&pin.name) != Some(&key) {
                        pins_sent.insert(pin.name.clone(), key);
                        if !startup {
                            tracing::info!(name = %pin.name, version = ?pin.version, "gossiping a site pin");
                            publish(&mut swarm, &topic, &Gossip::Pin(pin.clone()));
                        }
                    }
                }
            }
            _ = redial.tick() => {
                for addr in &statics {
                    let bare = without_peer(addr);
                    let up = static_peer.get(&bare).is_some_and(|p| swarm.is_connected(p));
                    if !up {
                        if let Err(e) = swarm.dial(addr.clone()) {
                            tracing::debug!(%addr, error = %e, "cannot dial a static peer");
                        }
                    }
                }
            }
            _ = follows_tick.tick() => {
                publish(&mut swarm, &topic, &Gossip::Follows(net.0.follow.clone()));
                // Again now and then, so a pin whose gossip was lost still reaches every node.
                let held = net.0.held.lock().expect("poisoned").clone();
                for pin in &held.pins {
                    publish(&mut swarm, &topic, &Gossip::Pin(pin.clone()));
                }
            }
            cmd = commands.recv() => match cmd {
                None => break,
                Some(Command::Announce(a)) => {
                    if announced.insert(a.id.clone()) {
                        let _ = swarm.behaviour_mut().kad.start_providing(release_key(&a.id));
                    }
                    publish(&mut swarm, &topic, &Gossip::Release(a));
                }
                Some(Command::FindProviders(id)) => {
                    swarm.behaviour_mut().kad.get_providers(release_key(&id));
                }
                Some(Command::Disconnect(peer)) => {
                    let _ = swarm.disconnect_peer_id(peer);
                }
            },
            event = swarm.select_next_some() => on_event(&net, &mut swarm, &mut static_peer, &statics, event),
        }
    }
    tracing::debug!("control plane stopped");
}

fn publish(swarm: &mut libp2p::Swarm<Behaviour>, topic: &gossipsub::IdentTopic, msg: &Gossip) {
    let data = serde_json::to_vec(msg).expect("gossip serialises");
    if let Err(e) = swarm.behaviour_mut().gossip.publish(topic.clone(), data) {
        // No subscribed peer yet: the hello on the next connection carries the same news.
        tracing::debug!(error = %e, "gossip not sent");
    }
}

fn on_event(
    net: &Network,
    swarm: &mut libp2p::Swarm<Behaviour>,
    static_peer: &mut HashMap<Multiaddr, PeerId>,
    statics: &[Multiaddr],
    event: SwarmEvent<BehaviourEvent>,
) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            tracing::info!(%address, "control plane listening");
            net.0.listening.lock().expect("poisoned").push(address);
        }
        SwarmEvent::ConnectionEstablished {
            peer_id,
            endpoint,
            num_established,
            ..
        } => {
            let addr = match &endpoint {
                ConnectedPoint::Dialer { address, .. } => address.clone(),
                ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
            };
            if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                let bare = without_peer(address);
                if statics.iter().any(|s| without_peer(s) == bare) {
                    static_peer.insert(bare.clone(), peer_id);
                }
                swarm.behaviour_mut().kad.add_address(&peer_id, bare);
            }
            tracing::info!(peer = %peer_id, %addr, "peer connected");
            net.update_peer(peer_id, |p| {
                p.connected = true;
                p.ip = ip_of(&addr).or(p.ip);
            });
            if num_established.get() == 1 {
                let hello = net.hello();
                net.count_peer(peer_id, |p| {
                    p.hello_sent = Some((std::time::Instant::now(), hello.time_ms));
                });
                swarm
                    .behaviour_mut()
                    .hello
                    .send_request(&peer_id, hello.clone());
                // Provider records made while this node knew nobody went nowhere; now they have a home. Only
                // for the first peer: once one was known they reached the DHT, and a query per release for
                // every new connection would grow with the store.
                if swarm.connected_peers().count() == 1 {
                    for held in &hello.releases {
                        let _ = swarm
                            .behaviour_mut()
                            .kad
                            .start_providing(release_key(&held.id));
                    }
                }
            }
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established: 0,
            cause,
            ..
        } => {
            tracing::info!(peer = %peer_id, cause = ?cause, "peer disconnected");
            net.update_peer(peer_id, |p| p.connected = false);
        }
        SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
            tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
        }
        SwarmEvent::IncomingConnectionError {
            send_back_addr,
            error,
            ..
        } => {
            tracing::debug!(from = %send_back_addr, error = %error, "incoming connection failed");
        }
        SwarmEvent::Behaviour(ev) => on_behaviour(net, swarm, ev),
        _ => {}
    }
}

fn on_behaviour(net: &Network, swarm: &mut libp2p::Swarm<Behaviour>, ev: BehaviourEvent) {
    match ev {
        BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
            let mut dialled = HashSet::new();
            for (peer, addr) in found {
                if peer == net.0.local || !net.allowed(&peer) {
                    continue;
                }
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                if !swarm.is_connected(&peer) && dialled.insert(peer) {
                    tracing::info!(%peer, %addr, "found a site peer by mDNS");
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                        .addresses(vec![addr])
                        .build();
                    let _ = swarm.dial(opts);
                }
            }
        }
        BehaviourEvent::Mdns(mdns::Event::Expired(_)) => {}
        BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
            for addr in info.listen_addrs {
                if ip_of(&addr).is_some_and(|ip| !ip.is_unspecified()) {
                    swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
        }
        BehaviourEvent::Identify(_) => {}
        BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            result:
                kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                    providers,
                    ..
                })),
            ..
        }) => {
            for peer in providers {
                if peer != net.0.local && !swarm.is_connected(&peer) && net.allowed(&peer) {
                    tracing::info!(%peer, "dialling a provider");
                    let _ = swarm.dial(peer);
                }
            }
        }
        BehaviourEvent::Kad(_) => {}
        BehaviourEvent::Gossip(gossipsub::Event::Message { message, .. }) => {
            let Some(source) = message.source else { return };
            if !net.allowed(&source) || !net.control_message(source, "gossip") {
                return;
            }
            match serde_json::from_slice::<Gossip>(&message.data) {
                Ok(Gossip::Release(a)) => {
                    tracing::info!(peer = %source, release = %a.id, "peer announced a release");
                    net.update_peer(source, |p| {
                        if !p.releases.iter().any(|r| r.id == a.id) {
                            p.releases.push(a.clone());
                        }
                    });
                    net.follow_new(vec![a]);
                }
                Ok(Gossip::Follows(names)) => net.update_peer(source, |p| p.follows = names),
                Ok(Gossip::Pin(pin)) => net.take_pins(source, vec![pin]),
                Err(e) => {
                    tracing::debug!(peer = %source, error = %e, "unreadable gossip");
                    net.violation(source, "control", &format!("unreadable gossip: {e}"));
                }
            }
        }
        BehaviourEvent::Gossip(_) => {}
        BehaviourEvent::Hello(request_response::Event::Message { peer, message, .. }) => {
            if !net.control_message(peer, "hellos") {
                return;
            }
            let (hello, answer) = match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let _ = swarm
                        .behaviour_mut()
                        .hello
                        .send_response(channel, net.hello());
                    (request, false)
                }
                request_response::Message::Response { response, .. } => (response, true),
            };
            let received = (std::time::Instant::now(), super::wall_ms());
            tracing::debug!(%peer, data_port = hello.data_port, releases = hello.releases.len(), "hello");
            let releases = hello.releases.clone();
            net.take_pins(peer, hello.pins);
            net.update_peer(peer, |p| {
                if hello.time_ms != 0 {
                    let sent = if answer { p.hello_sent.take() } else { None };
                    match (sent, p.clock_error_ms) {
                        (Some(sent), _) => {
                            let (offset, error) = clock_offset(sent, received, hello.time_ms);
                            p.clock_offset_ms = Some(offset);
                            p.clock_error_ms = Some(error);
                        }
                        // An unasked hello's measure (off by its one-way delay) only until an answer's comes.
                        (None, None) => {
                            p.clock_offset_ms = Some(hello.time_ms as i64 - received.1 as i64);
                        }
                        (None, Some(_)) => {}
                    }
                }
                p.data_port = Some(hello.data_port);
                p.releases = hello.releases;
                p.follows = hello.follows;
            });
            net.follow_new(releases);
        }
        BehaviourEvent::Hello(request_response::Event::OutboundFailure { peer, error, .. }) => {
            tracing::debug!(%peer, %error, "hello failed");
        }
        BehaviourEvent::Hello(_) => {}
        BehaviourEvent::Gate(never) => match never {},
    }
}

impl Network {
    /// [`Network::consider_following`] on the blocking pool (it lists the store's releases).
    fn follow_new(&self, announced: Vec<Announced>) {
        if announced.is_empty() || self.0.follow.is_empty() {
            return;
        }
        let net = self.clone();
        tokio::task::spawn_blocking(move || net.consider_following(&announced));
    }

    /// Start syncing any release in `announced` whose name this node follows and that is newer than every
    /// version of that name it holds.
    pub(crate) fn consider_following(&self, announced: &[Announced]) {
        for a in announced {
            let Some((name, _)) = a.id.split_once('@') else {
                continue;
            };
            if !self.0.follow.iter().any(|f| f == name) {
                continue;
            }
            let held = match self.0.store.releases() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot list releases");
                    return;
                }
            };
            let newest = held
                .iter()
                .filter(|r| r.manifest.name == name)
                .map(|r| r.manifest.sequence)
                .max();
            if held.iter().any(|r| r.manifest.id() == a.id)
                || newest.is_some_and(|n| n >= a.sequence)
            {
                continue;
            }
            tracing::info!(release = %a.id, "following: syncing a new version");
            if let Err(e) = self.sync(&a.id, None) {
                tracing::warn!(release = %a.id, error = %e, "cannot follow");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_protocol::Hash32;

    #[test]
    fn a_clock_offset_is_taken_at_the_middle_of_the_round_trip() {
        let t0 = Instant::now();
        let sent = (t0, 1_000_000);
        let received = (t0 + Duration::from_millis(400), 1_000_400);
        // The peer stamped its answer 200 ms into the round trip, by a clock 5 s ahead.
        assert_eq!(clock_offset(sent, received, 1_005_200), (5_000, 200));
        // A clock 3 s behind, answering at once.
        assert_eq!(clock_offset(sent, received, 997_000), (-3_200, 200));
        // An odd round trip rounds the bound up, never down.
        let received = (t0 + Duration::from_millis(3), 1_000_003);
        assert_eq!(clock_offset(sent, received, 1_000_001).1, 2);
    }

    #[test]
    fn the_hello_of_a_node_holding_fifty_thousand_releases_fits() {
        let releases = (0..50_000u32)
            .map(|i| Announced {
                id: format!("python3-package-number-{i}@1:2.{i}.4-1+deb12u1"),
                sequence: u64::from(i) + 1_000_000,
                envelope: Hash32([0xff; 32]),
            })
            .collect();
        let hello = Hello {
            data_port: 65535,
            releases,
            follows: (0..100).map(|i| format!("name-{i}")).collect(),
            pins: Vec::new(),
            time_ms: 1_796_000_000_000,
        };
        let bytes = serde_json::to_vec(&hello).expect("a hello serialises");
        assert!(
            bytes.len() as u64 <= HELLO_MAX_BYTES,
            "{} bytes",
            bytes.len()
        );
        // The old bound, request-response's default, did not hold it.
        assert!(bytes.len() > 1 << 20);
    }
}
