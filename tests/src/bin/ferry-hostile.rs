//! `ferry-hostile`: a peer on a node's allow-list (a real node key) that breaks the protocol on purpose, speaking
//! the real protocol with the node's own TLS and frame code: QUIC with `ferry_node::net::tls`'s configuration on
//! the data plane, libp2p with noise, yamux and gossipsub on the control plane.
//!
//! Modes (each prints one JSON object a line on stdout, then exits 0 unless it could not run at all):
//! - `malformed`: on one data-plane connection, in turn: 2 stalled streams (half a length prefix, then nothing;
//!   side by side), 2 of garbage, 2 truncated frames (a prefix promising 1000 bytes, 10 sent, the stream
//!   finished), 2 frames that decode to no request, 2 oversized prefixes (4294967295); then a new connection.
//!   A line per stream: `{"kind", "answer"}` — the node's answer, or how the stream or connection ended.
//! - `flood N`: N `Have` requests for releases nobody holds, as fast as the node takes them (all at once, quinn
//!   holding back what the node's stream credit does not allow), then 6 more connections at once. One line:
//!   `{"answered", "refused", "errors", "seconds", "extra_connections", "extra_refused"}`.
//! - `gossip N`: a libp2p connection to the node's control plane, subscribed to its gossip topic, that publishes
//!   N gossip messages as fast as gossipsub sends them, then dials again. One line:
//!   `{"published", "disconnected", "redial"}`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_formats::testdata::random as noise;
use ferry_node::net::{data, tls};
use ferry_protocol::sync::{SyncRequest, SyncResponse};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{gossipsub, noise, tcp, yamux, Multiaddr, PeerId};
use serde_json::json;

const USAGE: &str = "\
usage: ferry-hostile --key-store DIR --node /ip4/A/tcp/P/p2p/PEERID --data IP:PORT (malformed | flood N | gossip N)

Misbehaves towards the node (its control plane at --node, its data plane at --data) with the node key of the
store at DIR (put it on the node's allow-list first).";

struct Target {
    key: Keypair,
    peer: PeerId,
    control: Multiaddr,
    data: SocketAddr,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut store, mut node, mut data_addr, mut rest) = (None, None, None, Vec::new());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--key-store" => store = it.next(),
            "--node" => node = it.next(),
            "--data" => data_addr = it.next(),
            _ => rest.push(a),
        }
    }
    let (Some(store), Some(node), Some(data_addr)) = (store, node, data_addr) else {
        bail!("{USAGE}");
    };
    let key = ferry_node::membership::node_key(store.as_ref())?;
    let control: Multiaddr = node.parse().context("--node")?;
    let Some(peer) = control.iter().find_map(|p| match p {
        Protocol::P2p(p) => Some(p),
        _ => None,
    }) else {
        bail!("--node: expected /ip4/A/tcp/P/p2p/PEERID\n{USAGE}");
    };
    let target = Target {
        key,
        peer,
        control,
        data: data_addr.parse().context("--data")?,
    };
    let count = |s: Option<&String>| -> Result<usize> { s.context(USAGE)?.parse().context("N") };
    match rest.first().map(String::as_str) {
        Some("malformed") => malformed(&target).await,
        Some("flood") => flood(&target, count(rest.get(1))?).await,
        Some("gossip") => gossip(&target, count(rest.get(1))?).await,
        _ => bail!("{USAGE}"),
    }
}

/// A new data-plane connection to the node, on an endpoint of its own (as another process would make).
async fn connect(t: &Target) -> Result<quinn::Connection> {
    let mut endpoint = quinn::Endpoint::client("0.0.0.0:0".parse()?)?;
    endpoint.set_default_client_config(tls::client_config(&t.key, t.peer)?);
    Ok(endpoint.connect(t.data, "ferry")?.await?)
}

/// How a connection ended, as the node said it.
fn ended(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => format!(
            "closed with code {}: {}",
            c.error_code,
            String::from_utf8_lossy(&c.reason)
        ),
        e => e.to_string(),
    }
}

/// Send `bytes` on a new stream (finishing it if `finish`), then read the node's answer: a frame, or how the
/// stream ended.
async fn probe(conn: &quinn::Connection, bytes: &[u8], finish: bool) -> String {
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => return ended(&e),
    };
    if let Err(e) = send.write_all(bytes).await {
        return format!("write failed: {e}");
    }
    if finish {
        let _ = send.finish();
    }
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        ferry_node::net::wire::read_frame::<SyncResponse>(&mut recv),
    )
    .await;
    match answer {
        Ok(Ok(SyncResponse::Refused(why))) => format!("refused: {why}"),
        Ok(Ok(other)) => format!("answered: {other:?}"),
        Ok(Err(e)) => match conn.close_reason() {
            Some(c) => ended(&c),
            None => format!("stream failed: {e}"),
        },
        Err(_) => "no answer within 30 s".into(),
    }
}

/// A length-prefixed frame of `body`.
fn frame(len: u32, body: &[u8]) -> Vec<u8> {
    let mut v = len.to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

async fn malformed(t: &Target) -> Result<()> {
    let conn = connect(t).await?;
    let report = |kind: &str, answer: String| {
        println!("{}", json!({ "kind": kind, "answer": answer }));
    };
    // Half a length prefix, then nothing: the node must not wait for the rest forever.
    let stalled = futures::future::join_all((0..2).map(|_| probe(&conn, &[16, 0], false))).await;
    for a in stalled {
        report("stalled", a);
    }
    let mut http = b"GET /v2/ HTTP/1.1\r\nHost: ferry\r\n\r\n".to_vec();
    http.extend(noise(200, 1));
    for _ in 0..2 {
        report("garbage", probe(&conn, &http, true).await);
    }
    for _ in 0..2 {
        report(
            "truncated",
            probe(&conn, &frame(1000, &noise(10, 2)), true).await,
        );
    }
    // One body of noise, one with the codec's header (magic, a request's type and version) and noise after.
    let mut headed = b"FRRY\x07\x01\x00".to_vec();
    headed.extend(noise(57, 3));
    for body in [noise(64, 4), headed] {
        report(
            "undecodable",
            probe(&conn, &frame(body.len() as u32, &body), true).await,
        );
    }
    for _ in 0..2 {
        report(
            "oversized",
            probe(&conn, &frame(u32::MAX, &noise(64, 5)), true).await,
        );
    }
    // The node may need a moment to close the connection after the last violation.
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    report(
        "connection",
        match closed {
            Ok(e) => ended(&e),
            Err(_) => "still open".into(),
        },
    );
    let again = match connect(t).await {
        Ok(c) => {
            let asked = data::request(&c, &SyncRequest::Have { id: "a@1".into() }).await;
            match (asked, c.close_reason()) {
                (_, Some(e)) => ended(&e),
                (Ok(answer), None) => format!("answered: {answer:?}"),
                (Err(e), None) => format!("failed: {e}"),
            }
        }
        Err(e) => format!("connecting failed: {e}"),
    };
    report("reconnect", again);
    Ok(())
}

async fn flood(t: &Target, n: usize) -> Result<()> {
    let conn = connect(t).await?;
    let start = Instant::now();
    let asks = (0..n).map(|i| {
        let conn = conn.clone();
        async move {
            let req = SyncRequest::Have {
                id: format!("nothing@{i}"),
            };
            data::request(&conn, &req).await
        }
    });
    let answers = futures::future::join_all(asks).await;
    let seconds = start.elapsed().as_secs_f64();
    let (mut answered, mut refused, mut errors) = (0, 0, Vec::new());
    for a in answers {
        match a {
            Ok(SyncResponse::Refused(why)) if why.contains("neither holds nor syncs") => {
                refused += 1
            }
            Ok(_) => answered += 1,
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors.truncate(5);
    // More connections at once than the node takes from one peer.
    let extra: Vec<_> = futures::future::join_all((0..6).map(|_| connect(t))).await;
    let mut extra_refused = Vec::new();
    let mut open = Vec::new();
    for c in extra.into_iter().flatten() {
        match tokio::time::timeout(Duration::from_secs(2), c.closed()).await {
            Ok(e) => extra_refused.push(ended(&e)),
            Err(_) => open.push(c),
        }
    }
    println!(
        "{}",
        json!({
            "answered": answered,
            "refused": refused,
            "errors": errors,
            "seconds": seconds,
            "extra_connections": open.len(),
            "extra_refused": extra_refused,
        })
    );
    Ok(())
}

#[derive(NetworkBehaviour)]
struct Gossiper {
    gossip: gossipsub::Behaviour,
}

async fn gossip(t: &Target, n: usize) -> Result<()> {
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(t.key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            let config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_secs(1))
                .build()
                .map_err(|e| e.to_string())?;
            Ok(Gossiper {
                gossip: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    config,
                )?,
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    // The node's topic (`ferry_node::net::control`).
    let topic = gossipsub::IdentTopic::new("ferry/announce/1");
    swarm.behaviour_mut().gossip.subscribe(&topic)?;
    swarm.dial(t.control.clone())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .context("the node never subscribed to its topic on this connection")?;
        if let SwarmEvent::Behaviour(GossiperEvent::Gossip(gossipsub::Event::Subscribed {
            peer_id,
            ..
        })) = event
        {
            if peer_id == t.peer {
                break;
            }
        }
    }
    let mut published = 0;
    let mut disconnected = false;
    for i in 0..n {
        // Gossip the node understands (the names this peer follows), each message new.
        let msg = serde_json::to_vec(&json!({ "Follows": [format!("flood-{i}")] }))?;
        if swarm
            .behaviour_mut()
            .gossip
            .publish(topic.clone(), msg)
            .is_ok()
        {
            published += 1;
        }
        // Let the swarm send what is queued, now and then.
        if i % 50 == 49 {
            let until = tokio::time::Instant::now() + Duration::from_millis(20);
            while let Ok(ev) = tokio::time::timeout_at(until, swarm.select_next_some()).await {
                if matches!(ev, SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if peer_id == t.peer)
                {
                    disconnected = true;
                }
            }
            if disconnected {
                break;
            }
        }
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while !disconnected {
        match tokio::time::timeout_at(until, swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            }) if peer_id == t.peer => disconnected = true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // Dial again: a dropped peer's connection is refused once its identity is known.
    swarm.dial(t.control.clone())?;
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut redial = "no answer within 10 s".to_string();
    while let Ok(ev) = tokio::time::timeout_at(until, swarm.select_next_some()).await {
        match ev {
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } if peer_id == t.peer => {
                redial = format!("closed: {cause:?}");
                break;
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                redial = format!("failed: {error}");
                break;
            }
            SwarmEvent::Behaviour(GossiperEvent::Gossip(gossipsub::Event::Subscribed {
                peer_id,
                ..
            })) if peer_id == t.peer => {
                redial = "accepted".into();
                break;
            }
            _ => {}
        }
    }
    println!(
        "{}",
        json!({ "published": published, "disconnected": disconnected, "redial": redial })
    );
    Ok(())
}
