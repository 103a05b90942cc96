//! Nodes: `ferry serve` with network sync started and stopped, site stores made for a seed, sync reports read.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ferry_tests::netns::Host;
use serde_json::Value;

use super::seed::Seed;
use super::{P2P_PORT, START_TIMEOUT, SYNC_TIMEOUT_S};
use crate::measure::{self, Cmd, Measured};
use crate::Bench;

/// A peer to dial: (ip, port, peer id).
pub(crate) type Peer = (String, u16, String);

/// A running `ferry serve` with network sync.
pub(crate) struct Node {
    store: PathBuf,
    child: Child,
}

impl Node {
    /// Start a node on `store`, in `host`'s namespace (or the machine's own, on loopback), its planes at
    /// `ip:port`, dialling `peers` (`(ip, port, peer id)`).
    pub(crate) fn start(
        b: &Bench,
        store: &Path,
        host: Option<&Host>,
        ip: &str,
        port: u16,
        peers: &[Peer],
        log: &Path,
    ) -> Result<Node> {
        let mut c = match host {
            Some(h) => h.command(&b.ferry),
            None => Command::new(&b.ferry),
        };
        c.arg("--store")
            .arg(store)
            .args(["serve", "--listen", &format!("{ip}:0")])
            .args([
                "--p2p-listen",
                &format!("/ip4/{ip}/tcp/{port}"),
                "--no-mdns",
            ])
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1");
        for (pip, pport, pid) in peers {
            c.args(["--peer", &format!("/ip4/{pip}/tcp/{pport}/p2p/{pid}")]);
        }
        let logf = fs::File::create(log)?;
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .context("start ferry serve")?;
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            for l in lines.by_ref() {
                let Ok(l) = l else { break };
                let http = l.starts_with("listening on http://");
                let _ = tx.send(l);
                if http {
                    break;
                }
            }
            lines.for_each(drop);
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.starts_with("listening on http://") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "ferry serve on {} did not come up (log: {})",
                        store.display(),
                        log.display()
                    );
                }
            }
        }
        Ok(Node {
            store: store.to_owned(),
            child,
        })
    }

    /// The node of `store` (peer id `id`) on 127.0.0.1 at a free port, dialling `peers`; with the entry other
    /// nodes dial it by.
    pub(crate) fn loopback(
        b: &Bench,
        store: &Path,
        id: &str,
        peers: &[Peer],
        log: &Path,
    ) -> Result<(Node, Peer)> {
        let port = free_port()?;
        let node = Node::start(b, store, None, "127.0.0.1", port, peers, log)?;
        Ok((node, ("127.0.0.1".to_owned(), port, id.to_owned())))
    }

    /// The node of `store` on `host` (inside its namespace) at [`P2P_PORT`], dialling `peers`.
    pub(super) fn on_host(
        b: &Bench,
        store: &Path,
        host: &Host,
        peers: &[Peer],
        log: &Path,
    ) -> Result<Node> {
        let ip = host.ip().to_string();
        Node::start(b, store, Some(host), &ip, P2P_PORT, peers, log)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `VmXXX:` figure of the node's process (`VmHWM`: peak RSS, `VmRSS`), in KiB.
    pub(crate) fn vm_kib(&self, key: &str) -> Result<u64> {
        measure::proc_status_kib(self.pid(), key)
    }

    fn status(&self, b: &Bench) -> Result<Value> {
        let out = b.ferry(&self.store).args(["--json", "status"]).output()?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Wait until the control plane is connected to each of `peers` and knows its data port.
    pub(crate) fn wait_connected(&self, b: &Bench, peers: &[&str]) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let st = self.status(b)?;
            let ok = peers.iter().all(|p| {
                let info = &st["network"]["peers"][*p];
                info["connected"].as_bool() == Some(true) && info["data_port"].is_u64()
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not connect to {peers:?} within {} s",
                    self.store.display(),
                    START_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `ferry sync release`, measured, while a thread polls `ferry status` every 250 ms to find when chunk
    /// bytes started and stopped arriving: the fetch phase, (first seen moving, first seen complete), in seconds
    /// from the start.
    pub(super) fn sync_phased(
        &self,
        b: &Bench,
        release: &str,
    ) -> Result<(Measured, Option<(f64, f64)>)> {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let start = Instant::now();
        std::thread::scope(|scope| {
            let poller = scope.spawn(|| {
                let (mut first, mut last) = (None, None);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(st) = self.status(b) {
                        let t = start.elapsed().as_secs_f64();
                        let syncs = st["network"]["syncs"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        if let Some(p) = syncs.iter().find(|p| p["release"] == release) {
                            let (done, total) =
                                (p["bytes_done"].as_u64(), p["bytes_total"].as_u64());
                            if first.is_none() && done.is_some_and(|d| d > 0) {
                                first = Some(t);
                            }
                            if last.is_none() && total.is_some_and(|t| t > 0) && done == total {
                                last = Some(t);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                first.zip(last)
            });
            let m = self.sync_cmd(b, release).measure();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let phase = poller.join().expect("poller");
            m.map(|m| (m, phase))
        })
    }

    pub(crate) fn sync_cmd(&self, b: &Bench, release: &str) -> Cmd {
        b.ferry(&self.store).args([
            "--json",
            "--no-progress",
            "sync",
            release,
            "--timeout",
            &SYNC_TIMEOUT_S.to_string(),
        ])
    }

    pub(crate) fn stop(mut self) -> Result<()> {
        Cmd::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output()?;
        let start = Instant::now();
        while self.child.try_wait()?.is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// A fresh site store that trusts the seed's key, on the seed's allow-list and allowing the seed; with its
/// peer id.
pub(super) fn site_store(b: &Bench, dir: &Path, seed: &Seed) -> Result<(PathBuf, String)> {
    let store = dir.join("store");
    b.ferry(&store).arg("init").args(&seed.init).output()?;
    b.ferry(&store)
        .args(["trust", "add"])
        .arg(&seed.pubkey)
        .output()?;
    let id = peer_id(b, &store)?;
    allow(b, &seed.store, &id)?;
    allow(b, &store, &seed.id)?;
    Ok((store, id))
}

/// A fresh site store of `seed` in `dir`, its node on loopback dialling the seed at `seed_peer` (its log
/// `dir/site.log`), once connected.
pub(super) fn loopback_site(
    b: &Bench,
    seed: &Seed,
    dir: &Path,
    seed_peer: &Peer,
) -> Result<(Node, PathBuf)> {
    let (store, id) = site_store(b, dir, seed)?;
    let (site, _) = Node::loopback(
        b,
        &store,
        &id,
        std::slice::from_ref(seed_peer),
        &dir.join("site.log"),
    )?;
    site.wait_connected(b, &[&seed.id])?;
    Ok((site, store))
}

pub(crate) fn allow(b: &Bench, store: &Path, peer: &str) -> Result<()> {
    b.ferry(store).args(["peers", "allow", peer]).output()?;
    Ok(())
}

pub(crate) fn peer_id(b: &Bench, store: &Path) -> Result<String> {
    Ok(b.ferry(store).arg("id").output()?.trim().to_owned())
}

/// A sync's report and its whole-process measurement.
pub(crate) struct Synced {
    pub(crate) m: Measured,
    pub(crate) payload: u64,
    pub(crate) wire: u64,
    /// Bytes of recipes received (`recipe_bytes`; 0 from a Ferry that does not report them).
    pub(crate) recipes: u64,
    pub(super) seconds: f64,
    pub(crate) chunks: u64,
    pub(super) peers: usize,
    /// When chunk bytes were first and last seen arriving (seconds from the start), if polled.
    pub(super) phase: Option<(f64, f64)>,
}

pub(super) fn phased((m, phase): (Measured, Option<(f64, f64)>)) -> Result<Synced> {
    let mut s = synced(m)?;
    s.phase = phase;
    Ok(s)
}

pub(crate) fn synced(m: Measured) -> Result<Synced> {
    let r: Value = serde_json::from_str(&m.stdout)
        .with_context(|| format!("ferry sync --json printed {:?}", m.stdout))?;
    ensure!(
        r["already_held"].as_bool() == Some(false),
        "the site held {} already",
        r["release"]
    );
    let wire = r["wire_bytes"]
        .as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let peers = r["wire_bytes"].as_object().map_or(0, |o| o.len());
    Ok(Synced {
        payload: r["payload_bytes"].as_u64().context("payload_bytes")?,
        wire,
        recipes: r["recipe_bytes"].as_u64().unwrap_or(0),
        seconds: r["seconds"].as_f64().unwrap_or(f64::NAN),
        chunks: r["chunks"].as_u64().unwrap_or(0),
        peers,
        phase: None,
        m,
    })
}

/// Transmitted bytes of `dev` in namespace `ns`, from `ip -s link`.
pub(super) fn tx_bytes(ns: &str, dev: &str) -> Result<u64> {
    let out = Cmd::new("ip")
        .args(["-n", ns, "-s", "-j", "link", "show", "dev", dev])
        .output()?;
    let v: Value = serde_json::from_str(&out)?;
    v[0]["stats64"]["tx"]["bytes"]
        .as_u64()
        .context("no stats64.tx.bytes in `ip -s -j link`")
}

pub(crate) fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free on both TCP and UDP")
}

pub(super) fn phase_cell(s: &Synced) -> String {
    s.phase
        .map_or("?".into(), |(a, z)| format!("{:.1} ({a:.1}–{z:.1})", z - a))
}
