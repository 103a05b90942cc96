//! `ferry sync` and `ferry status`: network sync runs inside the node (`ferry serve --p2p-listen …`); these
//! commands ask it.
//!
//! `ferry sync` on the client starts the sync through the admin socket, then asks for its progress a few times a
//! second and draws the bar here, where the terminal is. The sync belongs to the node: if the client goes away
//! (Ctrl-C, `--timeout`, `--detach`) the node carries on, and `ferry status` shows it.

use crate::args::{Cli, Command, Global, SyncArgs};
use crate::{output, progress::Bar, remote};
use anyhow::{bail, Context};
use ferry_node::admin::{Client, Request};
use ferry_node::membership;
use ferry_node::net::{SyncProgress, SyncReport};
use ferry_node::Progress;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// One sync as `sync-progress` reports it.
#[derive(Serialize, Deserialize)]
struct Polled {
    progress: SyncProgressView,
    finished: bool,
    error: Option<String>,
    report: Option<serde_json::Value>,
}

/// The fields of [`SyncProgress`] the client reads back.
#[derive(Serialize, Deserialize)]
struct SyncProgressView {
    state: String,
    bytes_total: u64,
    bytes_done: u64,
}

fn no_node(g: &Global) -> anyhow::Error {
    let dir = super::store_dir(g)
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "the store".into());
    anyhow::anyhow!(
        "no node is running on {dir}: network sync happens in the node — start it with \
         `ferry serve --p2p-listen /ip4/0.0.0.0/tcp/7701`"
    )
}

fn network(g: &Global) -> anyhow::Result<ferry_node::net::Network> {
    match remote::attached_network() {
        Some(Some(net)) => Ok(net),
        Some(None) => bail!(
            "the node on this store does not take part in network sync: restart it with `--p2p-listen \
             MULTIADDR` or set [p2p] listen in its node.toml"
        ),
        None => Err(no_node(g)),
    }
}

/// Node side of `ferry sync` (always detached: the client polls).
pub fn run(g: &Global, a: SyncArgs) -> anyhow::Result<()> {
    let net = network(g)?;
    let from = a
        .from
        .as_deref()
        .map(membership::parse_peer_id)
        .transpose()?;
    net.sync(&a.release, from)?;
    if g.json {
        output::json(&serde_json::json!({ "release": a.release, "started": true }));
    } else {
        output::line(format!(
            "syncing {} on the node (`ferry status` shows how it goes)",
            a.release
        ));
    }
    Ok(())
}

/// Node side of the hidden `sync-progress`.
pub fn progress(g: &Global, release: &str) -> anyhow::Result<()> {
    let net = network(g)?;
    let running = net
        .sync_of(release)
        .with_context(|| format!("the node has no sync of {release}"))?;
    let p: SyncProgress = running.progress();
    let result = running.result();
    let polled = Polled {
        progress: SyncProgressView {
            state: p.state,
            bytes_total: p.bytes_total,
            bytes_done: p.bytes_done,
        },
        finished: result.is_some(),
        error: result.as_ref().and_then(|r| r.as_ref().err().cloned()),
        report: result
            .and_then(|r| r.ok())
            .map(|r: SyncReport| serde_json::to_value(r).expect("a report serialises")),
    };
    output::json(&polled);
    Ok(())
}

/// Client side of `ferry sync`: start it on the node, then draw its progress until it ends.
pub fn client(first: Client, store_dir: &Path, cli: &Cli, a: &SyncArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let start = Cli {
        global: Global {
            store: cli.global.store.clone(),
            json: true,
            no_progress: true,
        },
        command: Command::Sync(SyncArgs {
            release: a.release.clone(),
            from: a.from.clone(),
            timeout: None,
            detach: true,
        }),
    };
    let (code, _) = call(Some(first), store_dir, &start, true)?;
    if code != 0 || a.detach {
        if code == 0 && !cli.global.json {
            output::line(format!(
                "syncing {} on the node (`ferry status` shows how it goes)",
                a.release
            ));
        }
        return Ok(code);
    }
    let poll = Cli {
        global: Global {
            store: cli.global.store.clone(),
            json: true,
            no_progress: true,
        },
        command: Command::SyncProgress {
            release: a.release.clone(),
        },
    };
    let bar = Bar::new(!cli.global.no_progress);
    let mut shown = 0u64;
    let mut started_bar = false;
    loop {
        let (code, out) = call(None, store_dir, &poll, false)?;
        if code != 0 {
            return Ok(code);
        }
        let polled: Polled = serde_json::from_slice(&out)
            .context("the node answered sync-progress with something that is not its JSON")?;
        let p = &polled.progress;
        if !started_bar && p.bytes_total > 0 {
            bar.start(&format!("syncing {}", a.release), Some(p.bytes_total));
            started_bar = true;
        }
        if p.bytes_done > shown {
            bar.advance(p.bytes_done - shown);
            shown = p.bytes_done;
        }
        if polled.finished {
            drop(bar);
            if let Some(e) = polled.error {
                bail!("sync of {}: {e}", a.release);
            }
            let report = polled.report.unwrap_or_default();
            if cli.global.json {
                output::json(&report);
            } else {
                print_report(&report);
            }
            return Ok(0);
        }
        if let Some(t) = a.timeout {
            if started.elapsed() >= Duration::from_secs(t) {
                bail!(
                    "gave up waiting for {} after {t} s ({}); the node keeps syncing — `ferry status` shows it",
                    a.release,
                    p.state
                );
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn print_report(r: &serde_json::Value) {
    let release = r["release"].as_str().unwrap_or("?");
    if r["already_held"].as_bool() == Some(true) {
        output::line(format!("{release} is held already"));
        return;
    }
    let wire: u64 = r["wire_bytes"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    let wire = wire + r["recipe_bytes"].as_u64().unwrap_or(0);
    let peers = r["wire_bytes"].as_object().map_or(0, |m| m.len());
    output::line(format!(
        "synced {release}: {} chunks, {} of content ({} on the wire) from {peers} peers in {:.1} s",
        r["chunks"].as_u64().unwrap_or(0),
        output::bytes(r["payload_bytes"].as_u64().unwrap_or(0)),
        output::bytes(wire),
        r["seconds"].as_f64().unwrap_or(0.0),
    ));
    let deltas = r["delta_chunks"].as_u64().unwrap_or(0);
    if deltas > 0 {
        output::line(format!(
            "  {deltas} chunks came as deltas against what this node holds, {} smaller than whole",
            output::bytes(r["delta_saved_bytes"].as_u64().unwrap_or(0)),
        ));
    }
    if r["older"].as_bool() == Some(true) {
        output::line(format!(
            "{release} is older than the newest version of its name seen here: stored, not current unless pinned"
        ));
    }
    if let Some(dropped) = r["dropped"].as_array() {
        for d in dropped {
            output::line(format!("  dropped {}", d.as_str().unwrap_or("?")));
        }
    }
}

/// Run `cli` on the node (through `client`, else a new connection); its exit code and stdout (stderr passes
/// through, unless `quiet` and the command succeeded).
fn call(
    client: Option<Client>,
    store_dir: &Path,
    cli: &Cli,
    quiet: bool,
) -> anyhow::Result<(i32, Vec<u8>)> {
    let client = client
        .or_else(|| Client::connect(store_dir))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the node on {} stopped answering on its admin socket",
                store_dir.display()
            )
        })?;
    let request = Request {
        version: env!("CARGO_PKG_VERSION").to_string(),
        command: serde_json::to_value(cli)?,
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = client.call(&request, |is_stdout, bytes| {
        if is_stdout {
            stdout.extend_from_slice(bytes);
        } else {
            stderr.extend_from_slice(bytes);
        }
    })?;
    if !quiet || code != 0 {
        use std::io::Write;
        let _ = std::io::stderr().write_all(&stderr);
    }
    Ok((code, stdout))
}

/// `ferry status`.
pub fn status(g: &Global) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let all = store.releases()?;
    let releases: Vec<String> = all.iter().map(|r| r.manifest.id()).collect();
    let pins = store.pins()?;
    let current = ferry_node::retention::current(&store)?;
    let disk = store.disk_usage();
    let node = remote::attached_network();
    let net = node.clone().flatten().map(|n| n.status());
    if g.json {
        output::json(&serde_json::json!({
            "store": store.root().display().to_string(),
            "peer_id": membership::peer_id(store.root())?.to_string(),
            "node_running": node.is_some(),
            "releases": releases,
            "current": current,
            "pins": pins,
            "disk": disk,
            "network": net,
            "delivered": store.deliveries()?,
        }));
        return Ok(());
    }
    output::line(format!("store     {}", store.root().display()));
    output::line(format!("peer id   {}", membership::peer_id(store.root())?));
    output::line(format!(
        "disk      {} (packs {}, index {}, cache {}, uploads {})",
        output::bytes(disk.total),
        output::bytes(disk.packs),
        output::bytes(disk.index),
        output::bytes(disk.cache),
        output::bytes(disk.uploads)
    ));
    output::line(format!("releases  {}", releases.join(", ")));
    for (name, version) in &current {
        let pin = pins.iter().find(|p| &p.name == name);
        let note = match pin {
            Some(p) if p.version.as_ref() == Some(version) => " (pinned)".to_string(),
            Some(p) => format!(
                " (pinned to {}, not held yet)",
                p.version.as_deref().unwrap_or("")
            ),
            None => String::new(),
        };
        output::line(format!("current   {name}@{version}{note}"));
    }
    let delivered = store.deliveries()?;
    if !delivered.deliveries.is_empty() {
        output::line(format!(
            "delivered {} in {} deliveries for {} of layers ({} saved)",
            output::bytes(delivered.shipped_bytes),
            delivered.deliveries.len(),
            output::bytes(delivered.layer_bytes),
            output::bytes(
                delivered
                    .layer_bytes
                    .saturating_sub(delivered.shipped_bytes)
            )
        ));
    }
    let Some(node) = node else {
        output::line("node      not running");
        return Ok(());
    };
    let Some(net) = net else {
        output::line("node      running, network sync off (no p2p listen address)");
        return Ok(());
    };
    drop(node);
    output::line(format!(
        "p2p       {} (data udp {})",
        net.listening.join(", "),
        net.data_addr
    ));
    if !net.follows.is_empty() {
        output::line(format!("follows   {}", net.follows.join(", ")));
    }
    output::line(format!("peers     {}", net.peers.len()));
    for (id, p) in &net.peers {
        output::line(format!(
            "  {id}  {}  {}{}  releases {}  received {}  sent {}{}{}",
            if p.connected { "connected" } else { "gone" },
            p.ip.map(|i| i.to_string()).unwrap_or_default(),
            p.data_port.map(|d| format!(":{d}")).unwrap_or_default(),
            p.releases.len(),
            output::bytes(p.received_bytes),
            output::bytes(p.sent_bytes),
            p.clock_offset_ms
                .map(|ms| format!("  clock {:+.1} s", ms as f64 / 1000.0))
                .unwrap_or_default(),
            match (&p.dropped, p.refused_for_secs) {
                (Some(d), Some(s)) => format!("  DROPPED: {d} ({s} s left)"),
                (Some(d), None) => format!("  DROPPED: {d}"),
                (None, _) => String::new(),
            },
        ));
    }
    for s in &net.syncs {
        output::line(format!(
            "sync      {}  {}  {}/{} chunks  {}/{}  {:.0} s",
            s.release,
            s.state,
            s.chunks_done,
            s.chunks_total,
            output::bytes(s.bytes_done),
            output::bytes(s.bytes_total),
            s.seconds
        ));
    }
    for r in &net.refused {
        output::line(format!(
            "refused   {} from {} ({} plane): {}",
            r.peer, r.addr, r.plane, r.why
        ));
    }
    Ok(())
}
