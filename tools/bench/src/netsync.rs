//! `ferry-bench sync --work DIR`: network sync (`ferry serve --p2p-listen …` and `ferry sync`), side by side in
//! the same run with the real alternative for each target.
//!
//! 1. *loopback*: two nodes on 127.0.0.1, a site syncing a release of ≥ 1 GB of real content from a seed: chunk
//!    payload bytes / wall time of `ferry sync`, next to `curl` fetching a tar of the same tree from Debian's
//!    `docker-registry` on loopback.
//! 2. *wan*: the seed behind a 100 Mbit/s link (tc tbf) and a relay adding N ms each way (`ferry-delay-relay`):
//!    bytes on the wire / (time × link rate), next to `iperf3 -R` through the same shaped link and the same relay.
//! 3. *fanout*: three site nodes behind one 100 Mbit/s seed link, started together, next to one site node alone:
//!    time ratio and the seed's transmitted bytes (`ip -s link` on its interface).
//! 4. *delta*: a site holding v1 syncs v2 (v2 = v1 with some files changed): payload and wire bytes, next to
//!    the bundle `ferry export --base NAME@v1 NAME@v2` writes.
//!
//! Namespaces are made and torn down with `ferry_tests::netns` (network sync's own test harness). It prints a
//! markdown section on stdout; `--write docs/benchmarks.md` also replaces its own marked section there.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ferry_tests::netns::{Host, Lan, Relay};
use serde_json::Value;

use crate::measure::{self, median, sync, warm_tree, Cmd, Measured};
use crate::{environment, human, mb, verdict, write_section, Bench};

pub const BEGIN: &str = "<!-- BEGIN ferry-bench sync (generated; edit outside these markers) -->";
pub const END: &str = "<!-- END ferry-bench sync -->";

/// Target 1: chunk payload per second over loopback.
const TARGET_LOOPBACK_BPS: f64 = 1e9;
/// Target 2: share of the link rate carried.
const TARGET_UTILISATION: f64 = 0.90;
/// Target 3: three nodes together vs one alone, time and seed bytes.
const TARGET_FANOUT_TIME: f64 = 1.5;
const TARGET_FANOUT_BYTES: f64 = 1.2;
const LINK_MBIT: u32 = 100;
/// The port every node's planes use inside the namespaces (each host has its own address).
const P2P_PORT: u16 = 7701;
const IPERF_PORT: u16 = 5201;
const SYNC_TIMEOUT_S: u64 = 900;
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The big release (target 1, 2 and 3) and the version pair (target 4) in the seed store.
const BIG: &str = "tree@1";
const V1: &str = "delta@1";
const V2: &str = "delta@2";
/// In v2, every this-many-th file (in path order, of those >= 4 KiB) has 64 bytes in its middle overwritten.
const CHANGE_EVERY: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Loopback,
    Wan,
    Fanout,
    Delta,
}

#[derive(clap::Args)]
pub struct SyncArgs {
    /// Working directory: the seed store is cached in WORK/fixtures/netsync, sites are made in WORK/runs.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary (default: target/release/ferry of this workspace).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// The delay relay (default: target/release/ferry-delay-relay of this workspace).
    #[arg(long)]
    relay: Option<PathBuf>,
    /// The tree the big release is made of (`ferry add tree@1 dir:SOURCE`; ≥ 1 GB of real files).
    #[arg(
        long,
        default_value = "/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu"
    )]
    source: PathBuf,
    /// The tree v1 of the version pair is made of (v2: a copy with some files changed).
    #[arg(long, default_value = "/usr/lib/gcc")]
    delta_source: PathBuf,
    /// Repetitions of each timed run (medians reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Delays (ms each way) for the wan part; round trips grow by twice each.
    #[arg(long, value_delimiter = ',', default_value = "10,20")]
    delays: Vec<u32>,
    /// Which parts to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "loopback,wan,fanout,delta"
    )]
    only: Vec<Part>,
    /// Also write the results into FILE between the ferry-bench sync markers (appended if absent).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Before each timed run, wait up to SECS for other work on the machine to calm down.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    quiet_wait: u64,
    /// Keep the stores made in WORK/runs/TIMESTAMP (deleted at the end otherwise).
    #[arg(long)]
    keep_stores: bool,
}

/// The seed's store, cached between runs: `tree@1`, `delta@1`, `delta@2`.
struct Seed {
    store: PathBuf,
    /// The tree `tree@1` was made of.
    source: PathBuf,
    pubkey: PathBuf,
    id: String,
    /// Apparent bytes and files of the source tree.
    source_bytes: u64,
    source_files: u64,
    delta_bytes: u64,
    changed_files: usize,
}

pub fn run(args: SyncArgs) -> Result<()> {
    let b = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &[
            "/usr/bin/time",
            "docker-registry",
            "curl",
            "ip",
            "tc",
            "sha256sum",
            "tar",
        ],
    )?;
    if args.only.contains(&Part::Wan) {
        ensure_iperf3()?;
    }
    let relay = match &args.relay {
        Some(p) => p.clone(),
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/ferry-delay-relay")
        }
    };
    let relay = relay
        .canonicalize()
        .with_context(|| format!("no ferry-delay-relay at {}", relay.display()))?;
    let reps = args.reps.max(1);
    let seed = seed_store(&b, &args)?;

    let mut md = String::new();
    environment(&mut md, &b, "Results: network sync")?;
    md.truncate(md.trim_end().len());
    md.push('\n');
    writeln!(
        md,
        "- docker-registry: {}; curl: {}; iperf3: {}; ferry-delay-relay: {}\n",
        sh_line("docker-registry --version"),
        sh_line("curl --version | head -1 | cut -d' ' -f1-2"),
        sh_line("iperf3 --version | head -1 | cut -d' ' -f1-2"),
        relay.display()
    )?;
    writeln!(
        md,
        "Seed store (cached in `WORK/fixtures/netsync/seed`, `ferry init` defaults): `{BIG}` = `ferry add {BIG} \
         dir:{}` ({} in {} files: a Rust toolchain — real binaries, libraries, sources, docs); `{V1}` = `dir:` of a \
         copy of `{}` ({}), `{V2}` = the same copy with 64 bytes overwritten in the middle of every \
         {CHANGE_EVERY}th file of at least 4 KiB, in path order ({} files changed). Every node runs `ferry serve \
         --listen IP:0 --p2p-listen /ip4/IP/tcp/PORT --no-mdns [--peer /ip4/…/tcp/PORT/p2p/PEERID]…` with \
         `RUST_LOG=warn`; every site trusts the seed's key (`ferry keys export` / `ferry trust add`) and every \
         pair that talks allows each other (`ferry id` / `ferry peers allow`). A sync is `ferry --json \
         --no-progress sync NAME@VERSION --timeout {SYNC_TIMEOUT_S}`, timed whole (fork to reap): it includes \
         fetching the signed release and the recipes, and making blobs and the release visible. `seconds` is \
         the node's own time for the sync, in the report. Fresh site stores for every run; `sync` and a quiet \
         machine before each.\n",
        args.source.display(),
        mb(seed.source_bytes),
        seed.source_files,
        args.delta_source.display(),
        mb(seed.delta_bytes),
        seed.changed_files,
    )?;

    for part in [Part::Loopback, Part::Wan, Part::Fanout, Part::Delta] {
        if !args.only.contains(&part) {
            continue;
        }
        // A part that fails is reported, and the others still run.
        let outcome = match part {
            Part::Loopback => loopback(&mut md, &b, &seed, reps),
            Part::Wan => args
                .delays
                .iter()
                .try_for_each(|&d| wan(&mut md, &b, &seed, &relay, d, reps)),
            Part::Fanout => fanout(&mut md, &b, &seed, reps),
            Part::Delta => delta(&mut md, &b, &seed),
        };
        if let Err(e) = outcome {
            eprintln!("ferry-bench: sync: a part failed: {e:#}");
            writeln!(md, "**A part failed:** `{e:#}`\n")?;
        }
    }
    print!("{md}");
    if let Some(doc) = &args.write {
        write_section(doc, BEGIN, END, &md)?;
        eprintln!("ferry-bench: wrote {}", doc.display());
    }
    b.finish(args.keep_stores)?;
    Ok(())
}

fn ensure_iperf3() -> Result<()> {
    if Command::new("sh")
        .args(["-c", "command -v iperf3"])
        .output()?
        .status
        .success()
    {
        return Ok(());
    }
    eprintln!("ferry-bench: installing iperf3 (Debian package) for the wan part");
    Cmd::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "iperf3"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
}

fn sh_line(c: &str) -> String {
    Cmd::new("sh")
        .arg("-c")
        .arg(c)
        .output()
        .map(|s| s.lines().next().unwrap_or("").trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------------------------------
// The seed store

fn seed_store(b: &Bench, args: &SyncArgs) -> Result<Seed> {
    let dir = b.work.join("fixtures/netsync");
    let store = dir.join("seed");
    let pubkey = dir.join("seed.pub");
    let ready = dir.join("ready");
    let want = format!(
        "{} {} {CHANGE_EVERY}\n",
        args.source.display(),
        args.delta_source.display()
    );
    let (source_bytes, _, source_files) = measure::tree_size(&args.source)?;
    let d1 = dir.join("delta-v1");
    let d2 = dir.join("delta-v2");
    if fs::read_to_string(&ready).ok().as_deref() != Some(want.as_str()) {
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        b.ferry_init(&store)?;
        eprintln!(
            "ferry-bench: sync: building the seed store in {}",
            store.display()
        );
        b.ferry(&store)
            .args(["--json", "--no-progress", "add", BIG])
            .arg(format!("dir:{}", args.source.display()))
            .output()?;
        Cmd::new("cp")
            .arg("-a")
            .arg(&args.delta_source)
            .arg(&d1)
            .run()?;
        Cmd::new("cp").arg("-a").arg(&d1).arg(&d2).run()?;
        change_files(&d2)?;
        for (rel, tree) in [(V1, &d1), (V2, &d2)] {
            b.ferry(&store)
                .args(["--json", "--no-progress", "add", rel])
                .arg(format!("dir:{}", tree.display()))
                .output()?;
        }
        let key = b.ferry(&store).args(["keys", "export"]).output()?;
        fs::write(&pubkey, key)?;
        fs::write(&ready, &want)?;
    }
    let id = b.ferry(&store).arg("id").output()?.trim().to_owned();
    let (delta_bytes, _, _) = measure::tree_size(&d1)?;
    Ok(Seed {
        store,
        source: args.source.clone(),
        pubkey,
        id,
        source_bytes,
        source_files,
        delta_bytes,
        changed_files: changed_files(&d1)?.len(),
    })
}

/// The files of `root` that v2 changes: every [`CHANGE_EVERY`]th regular file of at least 4 KiB, in path order.
fn changed_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e?;
        if e.file_type().is_file() && e.metadata()?.len() >= 4096 {
            files.push(e.path().strip_prefix(root)?.to_owned());
        }
    }
    Ok(files.into_iter().step_by(CHANGE_EVERY).collect())
}

fn change_files(root: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    for rel in changed_files(root)? {
        let p = root.join(&rel);
        let len = fs::metadata(&p)?.len();
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .with_context(|| format!("open {}", p.display()))?;
        f.seek(SeekFrom::Start(len / 2))?;
        f.write_all(&[b'v'; 64])?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Nodes

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
        peers: &[(String, u16, String)],
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
    fn sync_phased(&self, b: &Bench, release: &str) -> Result<(Measured, Option<(f64, f64)>)> {
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
fn site_store(b: &Bench, dir: &Path, seed: &Seed) -> Result<(PathBuf, String)> {
    let store = dir.join("store");
    b.ferry_init(&store)?;
    b.ferry(&store)
        .args(["trust", "add"])
        .arg(&seed.pubkey)
        .output()?;
    let id = peer_id(b, &store)?;
    allow(b, &seed.store, &id)?;
    allow(b, &store, &seed.id)?;
    Ok((store, id))
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
    seconds: f64,
    pub(crate) chunks: u64,
    peers: usize,
    /// When chunk bytes were first and last seen arriving (seconds from the start), if polled.
    phase: Option<(f64, f64)>,
}

fn phased((m, phase): (Measured, Option<(f64, f64)>)) -> Result<Synced> {
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
fn tx_bytes(ns: &str, dev: &str) -> Result<u64> {
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

fn phase_cell(s: &Synced) -> String {
    s.phase
        .map_or("?".into(), |(a, z)| format!("{:.1} ({a:.1}–{z:.1})", z - a))
}

fn mbs(bytes: u64, s: f64) -> f64 {
    bytes as f64 / s / 1e6
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Loopback

fn loopback(md: &mut String, b: &Bench, seed: &Seed, reps: usize) -> Result<()> {
    let dir = b.fresh("sync-loopback")?;
    // The alternative: docker-registry serving a tar of the same tree as one blob.
    let tarball = dir.join("tree.tar");
    Cmd::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(seed.source.parent().context("source has a parent")?)
        .arg(seed.source.file_name().context("source has a name")?)
        .run()?;
    let tar_bytes = fs::metadata(&tarball)?.len();
    let digest = format!(
        "sha256:{}",
        Cmd::new("sha256sum")
            .arg(&tarball)
            .output()?
            .split_whitespace()
            .next()
            .context("sha256sum")?
    );
    let reg_port = free_port()?;
    let reg_yml = dir.join("reg.yml");
    fs::write(
        &reg_yml,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{reg_port}\n",
            dir.join("reg-data").display()
        ),
    )?;
    let mut reg = Cmd::new("docker-registry")
        .arg("serve")
        .arg(&reg_yml)
        .spawn(
            Stdio::null(),
            fs::File::create(dir.join("registry.log"))?.into(),
        )?;
    let host = format!("127.0.0.1:{reg_port}");
    let result = (|| -> Result<()> {
        wait_http(&format!("http://{host}/v2/"))?;
        // Monolithic upload: POST for a location, PUT the whole tar there with its digest.
        let loc = Cmd::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{redirect_url}%{header_json}",
                "-X",
                "POST",
            ])
            .arg(format!("http://{host}/v2/tree/blobs/uploads/"))
            .output()?;
        let location = loc
            .lines()
            .next()
            .and_then(|l| l.split('{').next())
            .filter(|l| !l.is_empty())
            .map(str::to_owned);
        let location = match location {
            Some(l) => l,
            None => {
                let h: Value = serde_json::from_str(loc.trim())?;
                h["location"][0].as_str().context("no Location")?.to_owned()
            }
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let code = Cmd::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-T"])
            .arg(&tarball)
            .arg(format!("{location}{sep}digest={digest}"))
            .output()?;
        ensure!(code.trim() == "201", "registry upload answered {code}");
        fs::remove_file(&tarball)?;

        let seed_port = free_port()?;
        let seed_node = Node::start(
            b,
            &seed.store,
            None,
            "127.0.0.1",
            seed_port,
            &[],
            &dir.join("seed.log"),
        )?;
        warm_tree(&seed.store)?;
        warm_tree(&dir.join("reg-data"))?;
        let mut ferry_runs = Vec::new();
        let mut curl_runs = Vec::new();
        let inner = (|| -> Result<()> {
            for rep in 0..reps {
                // ferry
                let sdir = b.fresh(&format!("sync-loopback-site{rep}"))?;
                let (store, _) = site_store(b, &sdir, seed)?;
                let site = Node::start(
                    b,
                    &store,
                    None,
                    "127.0.0.1",
                    free_port()?,
                    &[("127.0.0.1".into(), seed_port, seed.id.clone())],
                    &sdir.join("site.log"),
                )?;
                site.wait_connected(b, &[&seed.id])?;
                sync()?;
                measure::wait_quiet(b.quiet_wait)?;
                eprintln!("ferry-bench: sync: loopback rep {rep}: ferry sync {BIG}");
                let s = phased(site.sync_phased(b, BIG)?)?;
                site.stop()?;
                ferry_runs.push(s);
                // curl
                let out = sdir.join("tree.tar");
                sync()?;
                measure::wait_quiet(b.quiet_wait)?;
                eprintln!("ferry-bench: sync: loopback rep {rep}: curl GET of the tar");
                let m = Cmd::new("curl")
                    .args(["-s", "-o"])
                    .arg(&out)
                    .args(["-w", "%{http_code} %{size_download}"])
                    .arg(format!("http://{host}/v2/tree/blobs/{digest}"))
                    .measure()?;
                ensure!(
                    m.stdout.trim() == format!("200 {tar_bytes}"),
                    "curl printed {:?}",
                    m.stdout
                );
                fs::remove_file(&out)?;
                curl_runs.push(m);
            }
            Ok(())
        })();
        seed_node.stop()?;
        inner?;
        loopback_report(md, &ferry_runs, &curl_runs, tar_bytes, reps)
    })();
    let _ = reg.kill();
    let _ = reg.wait();
    result
}

fn wait_http(url: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(code) = Cmd::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
            .output()
        {
            if code.trim() == "200" {
                return Ok(());
            }
        }
        if start.elapsed() > START_TIMEOUT {
            bail!("{url} did not answer 200");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn loopback_report(
    md: &mut String,
    ferry: &[Synced],
    curl: &[Measured],
    tar_bytes: u64,
    reps: usize,
) -> Result<()> {
    writeln!(md, "### 1. Two nodes on loopback\n")?;
    writeln!(
        md,
        "Seed and site on 127.0.0.1 (QUIC data plane, TLS with the node keys), site store fresh each run. \
         *payload MB/s* = the report's `payload_bytes` (raw bytes of the chunks fetched) / wall time of the \
         whole `ferry sync` process. The alternative: the same tree as one uncompressed tar ({}) pushed to \
         Debian's `docker-registry` (Go, filesystem storage), fetched with `curl -s -o FILE \
         http://127.0.0.1:PORT/v2/tree/blobs/sha256:…` into the run dir — a real artifact server streaming a \
         file, and a client writing what it gets to the same filesystem, as the site node writes its packs. \
         `python3 -m http.server` was not used: it copies in Python and would flatter ferry. Not equal work: \
         ferry also decompresses and BLAKE3-checks every chunk, encrypts (QUIC/TLS), and writes zstd packs (about \
         a quarter of the bytes) and the index; curl writes the raw tar, unencrypted. Both data dirs page-cache \
         warm.\n",
        mb(tar_bytes)
    )?;
    writeln!(md, "| rep | ferry wall s | node s | chunks | payload | on the wire | payload MB/s | fetch phase s | payload MB/s in it | other CPU s | curl wall s | curl MB/s | other CPU s |")?;
    writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    )?;
    for (i, (f, c)) in ferry.iter().zip(curl).enumerate() {
        writeln!(
            md,
            "| {i} | {:.2} | {:.2} | {} | {} | {} | {:.0} | {} | {} | {:.1} | {:.2} | {:.0} | {:.1} |",
            f.m.wall,
            f.seconds,
            f.chunks,
            mb(f.payload),
            mb(f.wire),
            mbs(f.payload, f.m.wall),
            phase_cell(f),
            f.phase
                .map_or("?".into(), |(a, z)| format!("{:.0}", mbs(f.payload, z - a))),
            f.m.others,
            c.wall,
            mbs(tar_bytes, c.wall),
            c.others
        )?;
    }
    writeln!(
        md,
        "\n*fetch phase*: from the first to the last `ferry status` poll (every 250 ms, so ± 0.3 s) that saw chunk \
         bytes arriving — before it the site fetches the signed release and the recipes, after it makes blobs and \
         the release visible. *other CPU s*: CPU time of the whole machine during the run except the measured client process (`ferry \
         sync` or curl) — both nodes' (or the registry's) work, and whatever else ran.\n"
    )?;
    let fr = median(
        &ferry
            .iter()
            .map(|f| mbs(f.payload, f.m.wall))
            .collect::<Vec<_>>(),
    );
    let fnode = median(
        &ferry
            .iter()
            .map(|f| mbs(f.payload, f.seconds))
            .collect::<Vec<_>>(),
    );
    let cr = median(
        &curl
            .iter()
            .map(|c| mbs(tar_bytes, c.wall))
            .collect::<Vec<_>>(),
    );
    writeln!(
        md,
        "\n| median of {reps} | ferry sync | curl ← docker-registry | ferry / curl |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(
        md,
        "| **MB/s (whole process)** | **{fr:.0}** | **{cr:.0}** | **{:.2}x** |",
        fr / cr
    )?;
    writeln!(
        md,
        "| payload MB/s by the node's own `seconds` | {fnode:.0} | | |"
    )?;
    writeln!(
        md,
        "\nTarget: ≥ {:.0} MB/s of chunk payload (iroh's published 884 MiB/s = 927 MB/s is the anchor) → **{}** \
         ({fr:.0} MB/s, median).\n",
        TARGET_LOOPBACK_BPS / 1e6,
        verdict(fr * 1e6 >= TARGET_LOOPBACK_BPS)
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// 2. A 100 Mbit/s link with added delay

fn wan(
    md: &mut String,
    b: &Bench,
    seed: &Seed,
    relay_exe: &Path,
    delay: u32,
    reps: usize,
) -> Result<()> {
    let lan = Lan::new(&["seed", "relay", "site"]);
    lan.shape("seed", LINK_MBIT);
    let (sh, rh, th) = (lan.host("seed"), lan.host("relay"), lan.host("site"));
    let dir = b.fresh(&format!("sync-wan-{delay}"))?;
    let seed_node = Node::start(
        b,
        &seed.store,
        Some(sh),
        &sh.ip().to_string(),
        P2P_PORT,
        &[],
        &dir.join("seed.log"),
    )?;
    let relay = Relay::start(relay_exe, rh, P2P_PORT, sh.addr(P2P_PORT), delay);
    let iperf_relay = Relay::start(relay_exe, rh, IPERF_PORT, sh.addr(IPERF_PORT), delay);
    let mut iperf_srv = sh
        .command("iperf3")
        .args(["-s", "-p", &IPERF_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let rate = f64::from(LINK_MBIT) * 1e6 / 8.0;
    let mut rows = Vec::new();
    let res = (|| -> Result<()> {
        warm_tree(&seed.store)?;
        for rep in 0..reps {
            let sdir = b.fresh(&format!("sync-wan-{delay}-site{rep}"))?;
            let (store, _) = site_store(b, &sdir, seed)?;
            let site = Node::start(
                b,
                &store,
                Some(th),
                &th.ip().to_string(),
                P2P_PORT,
                &[(
                    relay.addr.ip().to_string(),
                    relay.addr.port(),
                    seed.id.clone(),
                )],
                &sdir.join("site.log"),
            )?;
            site.wait_connected(b, &[&seed.id])?;
            sync()?;
            measure::wait_quiet(b.quiet_wait)?;
            eprintln!("ferry-bench: sync: wan {delay} ms rep {rep}: ferry sync {BIG}");
            let tx0 = tx_bytes(sh.ns(), sh.dev())?;
            let s = phased(site.sync_phased(b, BIG)?)?;
            let tx = tx_bytes(sh.ns(), sh.dev())? - tx0;
            site.stop()?;
            // iperf3, the seed sending (-R), through the same relay and link.
            measure::wait_quiet(b.quiet_wait)?;
            eprintln!("ferry-bench: sync: wan {delay} ms rep {rep}: iperf3");
            let out = th
                .command("iperf3")
                .args(["-c", &rh.ip().to_string(), "-p", &IPERF_PORT.to_string()])
                .args(["-R", "-t", "15", "-O", "2", "-J"])
                .stdin(Stdio::null())
                .output()?;
            ensure!(
                out.status.success(),
                "iperf3: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let j: Value = serde_json::from_slice(&out.stdout)?;
            let iperf_bps = j["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .context("iperf3 -J: no end.sum_received.bits_per_second")?;
            rows.push((s, tx, iperf_bps));
        }
        Ok(())
    })();
    let _ = iperf_srv.kill();
    let _ = iperf_srv.wait();
    drop(iperf_relay);
    drop(relay);
    seed_node.stop()?;
    drop(lan);
    res?;

    writeln!(
        md,
        "### 2. {LINK_MBIT} Mbit/s, {delay} ms added each way (round trip + {} ms)\n",
        2 * delay
    )?;
    writeln!(
        md,
        "Namespaces `seed`, `relay`, `site` on one bridge (`ferry_tests::netns::Lan`); the seed's link shaped to \
         {LINK_MBIT} Mbit/s both ways (`tc … tbf rate {LINK_MBIT}mbit burst 64kb latency 50ms`); `ferry-delay-relay \
         --listen RELAY:{P2P_PORT} --to SEED:{P2P_PORT} --delay-ms {delay}` (TCP and UDP); the site dials \
         `/ip4/RELAY/tcp/{P2P_PORT}/p2p/SEED` and so reaches the data plane (UDP, same port) through the relay \
         too. *wire* = the report's `wire_bytes` (chunk records as sent: zstd bodies and record headers); \
         *seed tx* = TX bytes of the seed's veth from `ip -n NS -s link` around the sync (everything: QUIC, UDP, \
         IP, Ethernet headers, the control plane, recipes). Utilisation = bytes / (wall × {LINK_MBIT} Mbit/s), \
         wall of the whole `ferry sync`. The alternative: `iperf3 -c RELAY -p {IPERF_PORT} -R -t 15 -O 2` from the \
         site (the seed sending, one TCP stream) through a second relay on the same host with the same delay, \
         receiver's rate. Caveat: the relay terminates TCP, so each TCP leg sees the Lan's sub-ms round trip and \
         only the bytes are delayed — iperf3's congestion control never sees the added delay; QUIC (UDP, \
         datagram by datagram) does. The comparison favours iperf3.\n"
    )?;
    writeln!(md, "| rep | wall s | node s | payload | wire | seed tx | wire utilisation | seed tx utilisation | fetch phase s | wire utilisation in it | other CPU s | iperf3 Mbit/s | iperf3 utilisation |")?;
    writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
    )?;
    for (i, (s, tx, ip)) in rows.iter().enumerate() {
        writeln!(
            md,
            "| {i} | {:.1} | {:.1} | {} | {} | {} | {:.1}% | {:.1}% | {} | {} | {:.1} | {:.1} | {:.1}% |",
            s.m.wall,
            s.seconds,
            mb(s.payload),
            mb(s.wire),
            mb(*tx),
            100.0 * s.wire as f64 / (s.m.wall * rate),
            100.0 * *tx as f64 / (s.m.wall * rate),
            phase_cell(s),
            s.phase.map_or("?".into(), |(a, z)| format!(
                "{:.1}%",
                100.0 * s.wire as f64 / ((z - a) * rate)
            )),
            s.m.others,
            ip / 1e6,
            100.0 * ip / (f64::from(LINK_MBIT) * 1e6)
        )?;
    }
    writeln!(
        md,
        "\n*fetch phase* and *other CPU s* (here the seed, site and relay, and anything else): as in part 1.\n"
    )?;
    let u = median(
        &rows
            .iter()
            .map(|(s, _, _)| s.wire as f64 / (s.m.wall * rate))
            .collect::<Vec<_>>(),
    );
    let un = median(
        &rows
            .iter()
            .map(|(s, _, _)| s.wire as f64 / (s.seconds * rate))
            .collect::<Vec<_>>(),
    );
    let ut = median(
        &rows
            .iter()
            .map(|(s, tx, _)| *tx as f64 / (s.m.wall * rate))
            .collect::<Vec<_>>(),
    );
    let ui = median(
        &rows
            .iter()
            .map(|(_, _, ip)| ip / (f64::from(LINK_MBIT) * 1e6))
            .collect::<Vec<_>>(),
    );
    writeln!(
        md,
        "\n| median of {reps} | ferry sync | iperf3 | ferry / iperf3 |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(
        md,
        "| **utilisation (wire bytes, whole process)** | **{:.1}%** | **{:.1}%** | **{:.2}x** |",
        100.0 * u,
        100.0 * ui,
        u / ui
    )?;
    writeln!(
        md,
        "| utilisation (wire bytes, node `seconds`) | {:.1}% | | |",
        100.0 * un
    )?;
    writeln!(
        md,
        "| utilisation (seed tx incl. headers) | {:.1}% | | |",
        100.0 * ut
    )?;
    writeln!(
        md,
        "\nTarget: ≥ {:.0}% of the link → **{}** ({:.1}%, median, wire bytes over the whole `ferry sync`).\n",
        100.0 * TARGET_UTILISATION,
        verdict(u >= TARGET_UTILISATION),
        100.0 * u
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Three sites behind one seed link

struct FanRun {
    alone: Synced,
    alone_tx: u64,
    together: Vec<Synced>,
    together_wall: f64,
    together_tx: u64,
}

fn fanout(md: &mut String, b: &Bench, seed: &Seed, reps: usize) -> Result<()> {
    let lan = Lan::new(&["seed", "a", "b", "c"]);
    lan.shape("seed", LINK_MBIT);
    let sh = lan.host("seed");
    let dir = b.fresh("sync-fanout")?;
    let seed_node = Node::start(
        b,
        &seed.store,
        Some(sh),
        &sh.ip().to_string(),
        P2P_PORT,
        &[],
        &dir.join("seed.log"),
    )?;
    let seed_peer = (sh.ip().to_string(), P2P_PORT, seed.id.clone());
    let mut runs = Vec::new();
    let res = (|| -> Result<()> {
        warm_tree(&seed.store)?;
        for rep in 0..reps {
            // One site alone.
            let adir = b.fresh(&format!("sync-fanout-alone{rep}"))?;
            let (store, _) = site_store(b, &adir, seed)?;
            let ah = lan.host("a");
            let a = Node::start(
                b,
                &store,
                Some(ah),
                &ah.ip().to_string(),
                P2P_PORT,
                std::slice::from_ref(&seed_peer),
                &adir.join("a.log"),
            )?;
            a.wait_connected(b, &[&seed.id])?;
            sync()?;
            measure::wait_quiet(b.quiet_wait)?;
            eprintln!("ferry-bench: sync: fanout rep {rep}: one site alone");
            let tx0 = tx_bytes(sh.ns(), sh.dev())?;
            let alone = synced(a.sync_cmd(b, BIG).measure()?)?;
            let alone_tx = tx_bytes(sh.ns(), sh.dev())? - tx0;
            a.stop()?;

            // Three together.
            let tdir = b.fresh(&format!("sync-fanout-three{rep}"))?;
            let names = ["a", "b", "c"];
            let mut stores = Vec::new();
            for n in names {
                let d = tdir.join(n);
                fs::create_dir_all(&d)?;
                stores.push(site_store(b, &d, seed)?);
            }
            let (stores, ids): (Vec<PathBuf>, Vec<String>) = stores.into_iter().unzip();
            for (i, s) in stores.iter().enumerate() {
                for (j, id) in ids.iter().enumerate() {
                    if i != j {
                        allow(b, s, id)?;
                    }
                }
            }
            let mut nodes = Vec::new();
            for (i, n) in names.iter().enumerate() {
                let h = lan.host(n);
                // Each dials the seed and the sites before it (a connection serves both ways).
                let mut peers = vec![seed_peer.clone()];
                for m in &names[..i] {
                    let mh = lan.host(m);
                    peers.push((
                        mh.ip().to_string(),
                        P2P_PORT,
                        ids[names.iter().position(|x| x == m).expect("name")].clone(),
                    ));
                }
                nodes.push(Node::start(
                    b,
                    &stores[i],
                    Some(h),
                    &h.ip().to_string(),
                    P2P_PORT,
                    &peers,
                    &tdir.join(format!("{n}.log")),
                )?);
            }
            for (i, n) in nodes.iter().enumerate() {
                let mut want: Vec<&str> = vec![&seed.id];
                want.extend(
                    ids.iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, id)| id.as_str()),
                );
                n.wait_connected(b, &want)?;
            }
            sync()?;
            measure::wait_quiet(b.quiet_wait)?;
            eprintln!("ferry-bench: sync: fanout rep {rep}: three sites together");
            let tx0 = tx_bytes(sh.ns(), sh.dev())?;
            let barrier = Arc::new(Barrier::new(nodes.len()));
            let start = Instant::now();
            let results: Vec<Result<Measured>> = std::thread::scope(|scope| {
                let handles: Vec<_> = nodes
                    .iter()
                    .map(|n| {
                        let cmd = n.sync_cmd(b, BIG);
                        let barrier = barrier.clone();
                        scope.spawn(move || {
                            barrier.wait();
                            cmd.measure()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("sync thread"))
                    .collect()
            });
            let together_wall = start.elapsed().as_secs_f64();
            let together_tx = tx_bytes(sh.ns(), sh.dev())? - tx0;
            for n in nodes {
                n.stop()?;
            }
            let together = results
                .into_iter()
                .map(|r| r.and_then(synced))
                .collect::<Result<Vec<_>>>()?;
            runs.push(FanRun {
                alone,
                alone_tx,
                together,
                together_wall,
                together_tx,
            });
        }
        Ok(())
    })();
    seed_node.stop()?;
    drop(lan);
    res?;

    writeln!(
        md,
        "### 3. Three site nodes behind one {LINK_MBIT} Mbit/s seed link\n"
    )?;
    writeln!(
        md,
        "Namespaces `seed`, `a`, `b`, `c` on one bridge; only the seed's link is shaped ({LINK_MBIT} Mbit/s both \
         ways, tbf as above); the site Lan between a, b, c is unshaped (veth, no delay). Each site dials the seed \
         and the sites started before it (static peers, no mDNS). *alone*: a fresh `a` syncs `{BIG}` with b and \
         c not running. *together*: fresh a, b, c, all connected to the seed and to each other, then three \
         `ferry sync {BIG}` processes released by one barrier; time = until the last one exits. *seed tx* = TX \
         bytes of the seed's veth from `ip -n NS -s link` around the syncs (all headers and the control plane \
         included). The \"delta once\" is what the seed sent for one site alone in the same rep.\n"
    )?;
    writeln!(md, "| rep | alone wall s | alone seed tx | together wall s (a / b / c) | together seed tx | time ratio | seed bytes ratio | wire from seed (a / b / c) |")?;
    writeln!(md, "|---|---:|---:|---|---:|---:|---:|---|")?;
    for (i, r) in runs.iter().enumerate() {
        let walls: Vec<String> = r
            .together
            .iter()
            .map(|s| format!("{:.1}", s.m.wall))
            .collect();
        let from_seed: Vec<String> = r
            .together
            .iter()
            .map(|s| {
                let v: Value = serde_json::from_str(&s.m.stdout).unwrap_or(Value::Null);
                mb(v["wire_bytes"][&seed.id].as_u64().unwrap_or(0))
            })
            .collect();
        writeln!(
            md,
            "| {i} | {:.1} | {} | {:.1} ({}) | {} | {:.2} | {:.2} | {} |",
            r.alone.m.wall,
            mb(r.alone_tx),
            r.together_wall,
            walls.join(" / "),
            mb(r.together_tx),
            r.together_wall / r.alone.m.wall,
            r.together_tx as f64 / r.alone_tx as f64,
            from_seed.join(" / ")
        )?;
    }
    let tr = median(
        &runs
            .iter()
            .map(|r| r.together_wall / r.alone.m.wall)
            .collect::<Vec<_>>(),
    );
    let br = median(
        &runs
            .iter()
            .map(|r| r.together_tx as f64 / r.alone_tx as f64)
            .collect::<Vec<_>>(),
    );
    let peers: Vec<usize> = runs
        .iter()
        .flat_map(|r| r.together.iter().map(|s| s.peers))
        .collect();
    writeln!(
        md,
        "\nPayload per site {} ({} chunks); peers each site fetched from (together): {peers:?}.\n",
        mb(runs[0].alone.payload),
        runs[0].alone.chunks
    )?;
    writeln!(
        md,
        "Targets: three together ≤ {TARGET_FANOUT_TIME}x one alone → **{}** ({tr:.2}x, median); seed sends ≤ \
         {TARGET_FANOUT_BYTES}x the delta once → **{}** ({br:.2}x, median).\n",
        verdict(tr <= TARGET_FANOUT_TIME),
        verdict(br <= TARGET_FANOUT_BYTES)
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// 4. A version update: network sync vs the bundle for the same pair

fn delta(md: &mut String, b: &Bench, seed: &Seed) -> Result<()> {
    let dir = b.fresh("sync-delta")?;
    let bundle = dir.join("bundle");
    let exported = b
        .ferry(&seed.store)
        .args([
            "--json",
            "--no-progress",
            "export",
            "--base",
            V1,
            V2,
            "--out",
        ])
        .arg(&bundle)
        .output()?;
    let exported: Value = serde_json::from_str(&exported).unwrap_or(Value::Null);
    let inspect: Value = serde_json::from_str(
        &b.ferry(&seed.store)
            .args(["--json", "bundle", "inspect"])
            .arg(&bundle)
            .output()?,
    )?;
    let (bundle_disk, _, _) = measure::tree_size(&bundle)?;

    let seed_port = free_port()?;
    let seed_node = Node::start(
        b,
        &seed.store,
        None,
        "127.0.0.1",
        seed_port,
        &[],
        &dir.join("seed.log"),
    )?;
    let res = (|| -> Result<(Synced, Synced)> {
        let (store, _) = site_store(b, &dir.join("site"), seed)?;
        let site = Node::start(
            b,
            &store,
            None,
            "127.0.0.1",
            free_port()?,
            &[("127.0.0.1".into(), seed_port, seed.id.clone())],
            &dir.join("site.log"),
        )?;
        site.wait_connected(b, &[&seed.id])?;
        eprintln!("ferry-bench: sync: delta: ferry sync {V1}, then {V2}");
        let s1 = synced(site.sync_cmd(b, V1).measure()?)?;
        let s2 = synced(site.sync_cmd(b, V2).measure()?)?;
        site.stop()?;
        Ok((s1, s2))
    })();
    seed_node.stop()?;
    let (s1, s2) = res?;

    writeln!(
        md,
        "### 4. A version update: sync vs the bundle for the same pair\n"
    )?;
    writeln!(
        md,
        "A site (loopback) syncs `{V1}`, then `{V2}`. The bundle for the same pair: `ferry export --base {V1} \
         {V2} --out DIR` on the seed (default zstd level), described by `ferry bundle inspect --json DIR`.\n"
    )?;
    writeln!(
        md,
        "`ferry bundle inspect --json` (whole):\n\n```json\n{}\n```\n",
        compact(&inspect)
    )?;
    if !exported.is_null() {
        writeln!(
            md,
            "`ferry export --json`:\n\n```json\n{}\n```\n",
            compact(&exported)
        )?;
    }
    let bundle_payload = find_u64(&inspect, &["payload_bytes", "chunk_bytes", "raw_bytes"]);
    let bundle_chunks = find_u64(&inspect, &["chunks"]);
    writeln!(
        md,
        "| | chunks | payload (raw chunk bytes) | bytes carried |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(
        md,
        "| `ferry sync {V1}` (fresh site) | {} | {} | {} (wire) |",
        s1.chunks,
        human(s1.payload),
        human(s1.wire)
    )?;
    writeln!(
        md,
        "| **`ferry sync {V2}`** (site holds {V1}) | **{}** | **{}** | **{}** (wire) |",
        s2.chunks,
        human(s2.payload),
        human(s2.wire)
    )?;
    writeln!(
        md,
        "| bundle `--base {V1} {V2}` | {} | {} | {} stream (volumes); {} with the index; {} all files of the bundle dir |",
        bundle_chunks.map_or("?".into(), |c| c.to_string()),
        bundle_payload.map_or("?".into(), human),
        find_u64(&inspect, &["stream_bytes"]).map_or("?".into(), human),
        find_u64(&exported, &["total_bytes"]).map_or("?".into(), human),
        human(bundle_disk)
    )?;
    let same = bundle_payload == Some(s2.payload) && bundle_chunks.is_none_or(|c| c == s2.chunks);
    writeln!(
        md,
        "\nTarget: sync payload = the bundle's delta → **{}** (sync {} bytes in {} chunks; bundle {} bytes in \
         {} chunks). Wire bytes differ by design: the data plane sends each chunk as the store keeps it (zstd \
         level 3, one frame per chunk, plus a record header), a bundle compresses whole segments at its own \
         level, so it can be smaller than the sum of per-chunk frames.\n",
        verdict(same),
        s2.payload,
        s2.chunks,
        bundle_payload.map_or("?".into(), |v| v.to_string()),
        bundle_chunks.map_or("?".into(), |v| v.to_string()),
    )?;
    Ok(())
}

fn compact(v: &Value) -> String {
    let s = serde_json::to_string_pretty(v).unwrap_or_default();
    if s.len() > 4000 {
        format!("{}\n…", &s[..4000])
    } else {
        s
    }
}

/// The first number under any of `keys`, anywhere in `v` (depth first).
fn find_u64(v: &Value, keys: &[&str]) -> Option<u64> {
    match v {
        Value::Object(o) => {
            for k in keys {
                if let Some(n) = o.get(*k).and_then(Value::as_u64) {
                    return Some(n);
                }
            }
            o.values().find_map(|x| find_u64(x, keys))
        }
        Value::Array(a) => a.iter().find_map(|x| find_u64(x, keys)),
        _ => None,
    }
}
