//! `ferry-bench hardening --work DIR`: issue 20's targets for `ferry serve` when strangers misbehave, measured in
//! one run on one node.
//!
//! 1. A pull of a ~50 MB image (`fixtures/oci-usr`: the manifest, then the config and every layer GET, each blob
//!    hashed and checked; a new client, so a new connection, each time) on an idle node, and the same pull while
//!    5,000 half-open connections (each sent part of a request head, then nothing; re-opened as the node closes
//!    them) and 8 threads asking for deep `/repos/` paths (~4,000 bytes) run against it. The attack comes once
//!    from the pull's own address (127.0.0.1) and once from 20 other loopback addresses (127.0.0.2–21, 250 each);
//!    idle and attacked pulls alternate. Target: median attacked pull <= 1.2x the median idle one, no pull fails.
//! 2. A fresh node taking pushes: a gzip bomb (4 GiB of zeros, ~4 MB of gzip) pushed as a layer blob (POST,
//!    PATCH, PUT `?digest=`) while 64 threads pull the image. Target: the node's peak RSS (`VmHWM`) <= 512 MiB;
//!    the push's outcome is reported.
//!
//! It prints a markdown section on stdout; `--write docs/benchmarks.md` also replaces its own marked section.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::fixtures::{Fixtures, OciImage, BOMB_BYTES};
use crate::measure::{self, median};
use crate::serve::{pull_all, pull_one, self_cpu_s, sha256_file, start_ferry, why, Server};
use crate::{environment, mb, publish, verdict, Bench};

pub const BEGIN: &str =
    "<!-- BEGIN ferry-bench hardening (generated; edit outside these markers) -->";
pub const END: &str = "<!-- END ferry-bench hardening -->";

/// Attacked pull: at most this many times the idle one (medians).
const TARGET_RATIO: f64 = 1.2;
/// The node's peak RSS through the bomb push and the concurrent pulls, at most.
const TARGET_RSS_MIB: f64 = 512.0;
/// The image as served: `ferry add h@1 oci:fixtures/oci-usr:usr` makes `h:usr`.
const IMAGE: (&str, &str) = ("h", "usr");
/// Where the bomb is pushed.
const BOMB_REPO: &str = "bomb";
const TOKEN: &str = "hardening-push-token";
/// What each half-open connection sends: a request head without its blank line.
const HALF_HEAD: &[u8] = b"GET /v2/h/manifests/usr HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n";
/// The deep path's bytes after `/repos/` (`a/` segments), under the node's 4096-byte limit.
const DEEP_BYTES: usize = 4000;
/// Half-open connections per address when the attack is spread (the node's per-client cap is 256).
const PER_ADDRESS: usize = 250;
/// How long the attack runs before a pull is timed: after its first pass over every connection.
const WARMUP: Duration = Duration::from_secs(3);
/// How long the node may take to close the attack's connections once the attacker hangs up.
const SETTLE: Duration = Duration::from_secs(15);
/// PATCH size of the bomb push.
const CHUNK: u64 = 1 << 20;

#[derive(clap::Args)]
pub struct HardeningArgs {
    /// Working directory: fixtures are cached in WORK/fixtures, stores are made in WORK/runs.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary (default: target/release/ferry of this workspace).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// Timed pulls of each kind (idle, and under each attack); medians reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Also write the results into FILE between the ferry-bench hardening markers (appended if absent).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Half-open connections the attack keeps open, or tries to.
    #[arg(long, default_value_t = 5000)]
    half_open: usize,
    /// Threads asking for deep paths during the attack.
    #[arg(long, default_value_t = 8)]
    deep: usize,
    /// Milliseconds the attacker rests between its passes over its connections (each pass re-opens every one
    /// the node closed).
    #[arg(long, default_value_t = 100)]
    reopen_ms: u64,
    /// Concurrent pulls during the bomb push.
    #[arg(long, default_value_t = 64)]
    pullers: usize,
    /// Before each repetition, wait up to SECS for other work on the machine to calm down.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    quiet_wait: u64,
    /// Keep the store made in WORK/runs/TIMESTAMP (deleted at the end otherwise).
    #[arg(long)]
    keep_stores: bool,
}

/// What a timed pull ran next to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Idle,
    /// Half-open connections from 127.0.0.1, the pull's own address.
    Same,
    /// Half-open connections from 127.0.0.2 and up.
    Spread,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Idle => "idle",
            Kind::Same => "attack from 127.0.0.1",
            Kind::Spread => "attack from 127.0.0.2+",
        }
    }
}

/// One timed pull and what went on around it.
struct Run {
    rep: usize,
    kind: Kind,
    /// Seconds, and the pull's error if it failed.
    wall: f64,
    error: Option<String>,
    /// A new connection's `GET /v2/`, just before the pull: milliseconds, or why it failed.
    probe: Result<f64, String>,
    /// The node's TCP sockets above its idle count at the pull's start and end.
    held: (usize, usize),
    /// The attack's counters over the pull, and its connections attempted at the pull's start.
    attack: Option<(Counts, usize)>,
    node_cpu: f64,
    self_cpu: f64,
    others: f64,
}

pub fn run(args: HardeningArgs) -> Result<()> {
    let bench = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &["tar", "gzip", "kill"],
    )?;
    let reps = args.reps.max(1);
    let nofile = raise_open_files(args.half_open + args.pullers + args.deep + 256)?;
    let fx = Fixtures::new(&bench.work, None)?;
    let oci = fx.usr_oci()?;
    let bomb = fx.gzip_bomb()?;
    let img = OciImage::load(&oci, IMAGE.1)?;
    let dirs = fs::read_to_string(oci.join("dirs.txt"))?;
    let bomb_digest = sha256_file(&bomb)?;
    let bomb_len = fs::metadata(&bomb)?.len();

    let dir = bench.fresh("hardening")?;
    let store = dir.join("store");
    bench.ferry_init(&store)?;
    bench.ferry_add(
        &store,
        &format!("{}@1", IMAGE.0),
        &format!("oci:{}:{}", oci.display(), IMAGE.1),
    )?;
    let mut md = String::new();
    environment(&mut md, &bench, "Hardening (issue 20)")?;

    // Part 1: one node for every run, pulls alternating with attacks.
    let node = start_ferry(&bench, &store, &[], log(&dir, "attack")?, &dir)?;
    let addr: SocketAddr = node.host.parse()?;
    // Once untimed: the layers re-created into the node's cache, the store's pages read.
    let (_, warm) = timed_pull(&node.host, &img);
    if let Err(e) = warm {
        anyhow::bail!("the first pull failed: {e}");
    }
    // The idle count, once the first pull's connection is closed.
    std::thread::sleep(Duration::from_millis(500));
    let idle_sockets = node_sockets(&node)?;
    let spread: Vec<Ipv4Addr> = (0..args.half_open.div_ceil(PER_ADDRESS))
        .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i as u8))
        .collect();
    let last = *spread.last().context("--half-open 0: no attack")?;
    let spread_ok = match bindable(last) {
        Ok(()) => None,
        Err(e) => Some(format!(
            "binding {last} failed ({e}): the spread attack was not run"
        )),
    };
    let mut kinds = vec![Kind::Idle, Kind::Same];
    if spread_ok.is_none() {
        kinds.push(Kind::Spread);
    }
    let plan = Plan {
        node: &node,
        addr,
        img: &img,
        idle_sockets,
        args: &args,
    };
    let mut runs = Vec::new();
    for rep in 0..reps {
        measure::wait_quiet(bench.quiet_wait)?;
        // Which goes first turns with each repetition, so drift in the machine's state hits all alike.
        for k in 0..kinds.len() {
            let kind = kinds[(rep + k) % kinds.len()];
            eprintln!("ferry-bench: hardening: rep {rep}: pull, {}", kind.name());
            let sources = match kind {
                Kind::Idle => vec![],
                Kind::Same => vec![Ipv4Addr::LOCALHOST],
                Kind::Spread => spread.clone(),
            };
            let r = plan.run(rep, kind, &sources)?;
            eprintln!(
                "ferry-bench:   {:.3} s{}, node holds {}..{} sockets more than idle",
                r.wall,
                r.error
                    .as_deref()
                    .map(|e| format!(" FAILED: {e}"))
                    .unwrap_or_default(),
                r.held.0,
                r.held.1
            );
            runs.push(r);
        }
    }
    let attack_hwm = node.vm_kib("VmHWM")?;
    let attack_exit = node.stop()?;

    // Part 2: a fresh node that takes pushes.
    eprintln!(
        "ferry-bench: hardening: gzip bomb push and {} pulls",
        args.pullers
    );
    let tokens = dir.join("push.tokens");
    fs::write(&tokens, format!("{TOKEN}\n"))?;
    let node = start_ferry(
        &bench,
        &store,
        &["--push-token-file", &tokens.display().to_string()],
        log(&dir, "bomb")?,
        &dir,
    )?;
    let bombing = bomb_and_pull(&node, &img, &bomb, (&bomb_digest, bomb_len), args.pullers)?;
    let bomb_exit = node.stop()?;
    bench.finish(args.keep_stores)?;

    report(
        &mut md,
        &Report {
            img: &img,
            dirs: &dirs,
            runs: &runs,
            kinds: &kinds,
            spread: &spread,
            spread_note: spread_ok,
            idle_sockets,
            attack_hwm,
            attack_exit,
            bombing: &bombing,
            bomb_exit,
            bomb_len,
            nofile,
            args: &args,
        },
    )?;
    publish(&md, args.write.as_deref(), BEGIN, END)
}

fn log(dir: &Path, name: &str) -> Result<File> {
    let p = dir.join(format!("ferry-{name}.log"));
    File::create(&p).with_context(|| format!("create {}", p.display()))
}

/// Raises this process's soft limit on open files to its hard limit; both soft limits, before and after.
fn raise_open_files(need: usize) -> Result<(u64, u64)> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let before = limit.current.unwrap_or(u64::MAX);
    if let Some(hard) = limit.maximum.filter(|&h| h > before) {
        limit.current = Some(hard);
        setrlimit(Resource::Nofile, limit).context("raising the open-file limit")?;
    }
    let after = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    ensure!(
        after >= need as u64,
        "{need} open files are needed; the limit is {after} (raise the hard limit: ulimit -Hn)"
    );
    Ok((before, after))
}

/// Whether a socket can be bound to `ip` (loopback addresses other than 127.0.0.1 need `lo` to hold 127/8).
fn bindable(ip: Ipv4Addr) -> io::Result<()> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.bind(&SocketAddr::from((ip, 0)).into())
}

/// The node's open TCP sockets (its listeners, and every connection it has accepted and not closed).
fn node_sockets(node: &Server) -> Result<usize> {
    let dir = format!("/proc/{}/fd", node.pid());
    let mut n = 0;
    for e in fs::read_dir(&dir).with_context(|| format!("read {dir}"))? {
        // A descriptor closed meanwhile is simply not counted.
        if let Ok(target) = fs::read_link(e?.path()) {
            n += usize::from(target.to_string_lossy().starts_with("socket:"));
        }
    }
    Ok(n)
}

/// A pull of the image by a new client (a new connection): seconds, and bytes and layers verified.
fn timed_pull(host: &str, img: &OciImage) -> (f64, Result<(u64, usize), String>) {
    let start = Instant::now();
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(1)
        .build()
        .map_err(|e| format!("client: {e}"))
        .and_then(|c| pull_one(&c, host, IMAGE, img))
        .and_then(|(bytes, layers)| {
            if layers == img.layers.len() {
                Ok((bytes, layers))
            } else {
                Err(format!("{layers} of {} layers verified", img.layers.len()))
            }
        });
    (start.elapsed().as_secs_f64(), r)
}

/// A new connection's `GET /v2/`: milliseconds until its answer.
fn probe(host: &str) -> Result<f64, String> {
    let start = Instant::now();
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let r = c
        .get(format!("http://{host}/v2/"))
        .send()
        .map_err(|e| format!("GET /v2/: {e}"))?;
    let status = r.status();
    let _ = r.bytes();
    if !status.is_success() {
        return Err(format!("GET /v2/: {status}"));
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------------------------------------------------------
// Part 1: the attack

/// What the attack has done so far.
#[derive(Default)]
struct Counters {
    /// Connections started (connect called).
    opened: AtomicU64,
    /// Connections the node closed (end of stream or reset) after they sent their partial head.
    closed: AtomicU64,
    /// Connections the node answered (a 503 when every connection in the way was busy) and closed.
    answered: AtomicU64,
    /// Connections that could not be started, or failed while connecting.
    failed: AtomicU64,
    /// Now: connections still connecting, and connected with their partial head sent (gauges).
    connecting: AtomicU64,
    sent: AtomicU64,
    /// Passes over every connection.
    passes: AtomicU64,
    /// Deep-path requests answered, and failed.
    deep: AtomicU64,
    deep_failed: AtomicU64,
    deep_status: Mutex<BTreeMap<u16, u64>>,
    deep_error: Mutex<Option<String>>,
}

/// A copy of [`Counters`] at one moment (and differences of two).
#[derive(Clone, Default)]
struct Counts {
    secs: f64,
    opened: u64,
    closed: u64,
    answered: u64,
    failed: u64,
    deep: u64,
    deep_failed: u64,
    deep_status: BTreeMap<u16, u64>,
    deep_error: Option<String>,
}

impl Counts {
    fn since(&self, before: &Counts) -> Counts {
        Counts {
            secs: self.secs - before.secs,
            opened: self.opened - before.opened,
            closed: self.closed - before.closed,
            answered: self.answered - before.answered,
            failed: self.failed - before.failed,
            deep: self.deep - before.deep,
            deep_failed: self.deep_failed - before.deep_failed,
            deep_status: self
                .deep_status
                .iter()
                .map(|(s, n)| (*s, n - before.deep_status.get(s).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            deep_error: self.deep_error.clone(),
        }
    }

    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.secs
    }
}

/// The half-open connections and the deep-path requests, running until dropped.
struct Attack {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    start: Instant,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Attack {
    fn start(addr: SocketAddr, sources: &[Ipv4Addr], args: &HardeningArgs) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let mut threads = Vec::new();
        {
            let (stop, c, sources) = (stop.clone(), counters.clone(), sources.to_vec());
            let (n, rest) = (args.half_open, Duration::from_millis(args.reopen_ms));
            threads.push(std::thread::spawn(move || {
                half_open(addr, &sources, n, rest, &stop, &c)
            }));
        }
        let url = format!("http://{addr}/repos/{}", "a/".repeat(DEEP_BYTES / 2));
        for _ in 0..args.deep {
            let (stop, c, url) = (stop.clone(), counters.clone(), url.clone());
            threads.push(std::thread::spawn(move || deep(&url, &stop, &c)));
        }
        Attack {
            stop,
            counters,
            start: Instant::now(),
            threads,
        }
    }

    fn counts(&self) -> Counts {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            secs: self.start.elapsed().as_secs_f64(),
            opened: get(&c.opened),
            closed: get(&c.closed),
            answered: get(&c.answered),
            failed: get(&c.failed),
            deep: get(&c.deep),
            deep_failed: get(&c.deep_failed),
            deep_status: c.deep_status.lock().expect("deep status").clone(),
            deep_error: c.deep_error.lock().expect("deep error").clone(),
        }
    }

    /// Connections attempted now: connecting, or connected with their partial head sent.
    fn attempted(&self) -> usize {
        let c = &self.counters;
        (c.connecting.load(Ordering::Relaxed) + c.sent.load(Ordering::Relaxed)) as usize
    }

    /// Waits for the first pass over every connection, then [`WARMUP`].
    fn warm_up(&self) {
        while self.counters.passes.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(WARMUP);
    }

    /// Stops every thread; the half-open connections are closed as their thread ends.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One of the attack's connections.
enum Half {
    None,
    Connecting(Socket),
    Sent(Socket),
}

/// Keeps `n` connections to `addr` (from `sources` in turn) each holding a partial request head: a pass over
/// all of them, then a rest of `rest`; each pass opens again every one the node closed or answered.
fn half_open(
    addr: SocketAddr,
    sources: &[Ipv4Addr],
    n: usize,
    rest: Duration,
    stop: &AtomicBool,
    c: &Counters,
) {
    let mut conns: Vec<Half> = (0..n).map(|_| Half::None).collect();
    let mut buf = [0u8; 256];
    let add = |a: &AtomicU64| a.fetch_add(1, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        let (mut connecting, mut sent) = (0, 0);
        for (i, conn) in conns.iter_mut().enumerate() {
            let mut next = std::mem::replace(conn, Half::None);
            if let Half::None = next {
                match connect(addr, sources[i % sources.len()]) {
                    Ok(s) => {
                        add(&c.opened);
                        next = Half::Connecting(s);
                    }
                    Err(_) => {
                        add(&c.failed);
                    }
                }
            }
            next = match next {
                Half::Connecting(s) => match (&s).write(HALF_HEAD) {
                    Ok(_) => Half::Sent(s),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Half::Connecting(s),
                    Err(_) => {
                        add(&c.failed);
                        Half::None
                    }
                },
                Half::Sent(s) => match (&s).read(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Half::Sent(s),
                    Ok(0) | Err(_) => {
                        add(&c.closed);
                        Half::None
                    }
                    Ok(_) => {
                        add(&c.answered);
                        Half::None
                    }
                },
                Half::None => Half::None,
            };
            match next {
                Half::Connecting(_) => connecting += 1,
                Half::Sent(_) => sent += 1,
                Half::None => {}
            }
            *conn = next;
        }
        c.connecting.store(connecting, Ordering::Relaxed);
        c.sent.store(sent, Ordering::Relaxed);
        add(&c.passes);
        std::thread::sleep(rest);
    }
}

/// A non-blocking connect to `addr` from `source` (any port).
fn connect(addr: SocketAddr, source: Ipv4Addr) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    if source != Ipv4Addr::LOCALHOST {
        s.bind(&SocketAddr::from((source, 0)).into())?;
    }
    match s.connect(&addr.into()) {
        Ok(()) => Ok(s),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => Ok(s),
        Err(e) => Err(e),
    }
}

/// `GET url` (a deep `/repos/` path) in a loop on one keep-alive client until `stop`.
fn deep(url: &str, stop: &AtomicBool, c: &Counters) {
    let Ok(client) = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    else {
        c.deep_failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        match client.get(url).send().and_then(|r| {
            let status = r.status().as_u16();
            r.bytes().map(|_| status)
        }) {
            Ok(status) => {
                c.deep.fetch_add(1, Ordering::Relaxed);
                *c.deep_status
                    .lock()
                    .expect("deep status")
                    .entry(status)
                    .or_default() += 1;
            }
            Err(e) => {
                c.deep_failed.fetch_add(1, Ordering::Relaxed);
                c.deep_error
                    .lock()
                    .expect("deep error")
                    .get_or_insert_with(|| why(e));
                // A refused or closed connection: do not spin.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// What every run of part 1 shares.
struct Plan<'a> {
    node: &'a Server,
    addr: SocketAddr,
    img: &'a OciImage,
    idle_sockets: usize,
    args: &'a HardeningArgs,
}

impl Plan<'_> {
    /// One timed pull, next to an attack from `sources` (none: idle).
    fn run(&self, rep: usize, kind: Kind, sources: &[Ipv4Addr]) -> Result<Run> {
        let attack = (!sources.is_empty()).then(|| Attack::start(self.addr, sources, self.args));
        if let Some(a) = &attack {
            a.warm_up();
        }
        let held =
            || -> Result<usize> { Ok(node_sockets(self.node)?.saturating_sub(self.idle_sockets)) };
        let before = attack.as_ref().map(|a| (a.counts(), a.attempted()));
        let (cpu0, self0, busy0) = (self.node.cpu_s()?, self_cpu_s()?, measure::busy_seconds()?);
        let held0 = held()?;
        let probe = probe(&self.node.host);
        let (wall, pulled) = timed_pull(&self.node.host, self.img);
        let held1 = held()?;
        let (node_cpu, self_cpu) = (self.node.cpu_s()? - cpu0, self_cpu_s()? - self0);
        let others = (measure::busy_seconds()? - busy0 - node_cpu - self_cpu).max(0.0);
        let counts = match (&attack, before) {
            (Some(a), Some((c0, attempted))) => Some((a.counts().since(&c0), attempted)),
            _ => None,
        };
        if let Some(a) = attack {
            a.stop();
            // The node closes what the attacker hung up on; the next run starts from an idle node.
            let start = Instant::now();
            while held()? > 2 && start.elapsed() < SETTLE {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(Run {
            rep,
            kind,
            wall,
            error: pulled.err(),
            probe,
            held: (held0, held1),
            attack: counts,
            node_cpu,
            self_cpu,
            others,
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Part 2: the bomb

/// How the bomb push went.
struct Pushed {
    /// Each request and its answer, in order (PATCHes counted).
    steps: String,
    /// The final answer's status (None: no answer) and the start of its body, or the error.
    status: Option<u16>,
    message: String,
    /// From POST to the final answer, and from the PUT to its answer (the node's digest check and ingest).
    total_s: f64,
    put_s: Option<f64>,
}

struct Bombing {
    pushed: Pushed,
    pull_wall: f64,
    pull_errors: Vec<String>,
    layers_ok: usize,
    hwm_kib: u64,
    rss_after_kib: u64,
    /// Largest `VmRSS` sampled every 100 ms, and when (seconds from the start).
    rss_peak: (u64, f64),
    node_cpu: f64,
    wall: f64,
}

fn bomb_and_pull(
    node: &Server,
    img: &OciImage,
    bomb: &Path,
    digest: (&str, u64),
    pullers: usize,
) -> Result<Bombing> {
    let cpu0 = node.cpu_s()?;
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let (pushed, pulled, rss_peak) = std::thread::scope(|sc| -> Result<_> {
        let sampler = sc.spawn(|| {
            let mut peak = (0, 0.0);
            while !done.load(Ordering::Relaxed) {
                if let Ok(kib) = node.vm_kib("VmRSS") {
                    if kib > peak.0 {
                        peak = (kib, start.elapsed().as_secs_f64());
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        let push = sc.spawn(|| push_blob(&node.host, bomb, digest));
        let pulled = pull_all(&node.host, pullers, IMAGE, img);
        let pushed = push.join().expect("push thread");
        done.store(true, Ordering::Relaxed);
        let peak = sampler.join().expect("sampler thread");
        Ok((pushed, pulled?, peak))
    })?;
    let (pull_wall, _, pull_errors, layers_ok) = pulled;
    eprintln!(
        "ferry-bench:   push: {} ({}), pulls {pull_wall:.2} s, {} errors",
        pushed.steps,
        pushed.message,
        pull_errors.len()
    );
    Ok(Bombing {
        pushed,
        pull_wall,
        pull_errors,
        layers_ok,
        hwm_kib: node.vm_kib("VmHWM")?,
        rss_after_kib: node.vm_kib("VmRSS")?,
        rss_peak,
        node_cpu: node.cpu_s()? - cpu0,
        wall: start.elapsed().as_secs_f64(),
    })
}

/// Pushes the file `blob` to [`BOMB_REPO`] in [`CHUNK`]-sized PATCHes with the push token: POST, PATCH…, PUT
/// `?digest=`.
fn push_blob(host: &str, blob: &Path, (digest, len): (&str, u64)) -> Pushed {
    let start = Instant::now();
    let mut p = Pushed {
        steps: String::new(),
        status: None,
        message: String::new(),
        total_s: 0.0,
        put_s: None,
    };
    let mut steps = Vec::new();
    if let Err(e) = push_steps(host, blob, (digest, len), &mut p, &mut steps) {
        (p.status, p.message) = (None, e);
    }
    p.steps = steps.join(", ");
    p.total_s = start.elapsed().as_secs_f64();
    p
}

/// The requests of [`push_blob`], each noted in `steps`; the last answer's status and body go into `p`. An error
/// is a request that got no answer.
fn push_steps(
    host: &str,
    blob: &Path,
    (digest, len): (&str, u64),
    p: &mut Pushed,
    steps: &mut Vec<String>,
) -> Result<(), String> {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1800))
        .build()
        .map_err(|e| format!("client: {e}"))?;
    // An answer's status, its Location (made absolute) and the start of its body.
    let answer = |r: reqwest::blocking::Response| {
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| {
                if l.starts_with('/') {
                    format!("http://{host}{l}")
                } else {
                    l.to_owned()
                }
            });
        let body: String = r.text().unwrap_or_default().chars().take(300).collect();
        (status, location, body)
    };
    let r = c
        .post(format!("http://{host}/v2/{BOMB_REPO}/blobs/uploads/"))
        .bearer_auth(TOKEN)
        .send()
        .map_err(|e| format!("POST: {e}"))?;
    let (status, location, body) = answer(r);
    steps.push(format!("POST {status}"));
    (p.status, p.message) = (Some(status), body);
    let Some(mut loc) = location.filter(|_| status == 202) else {
        return Ok(());
    };
    let mut f = File::open(blob).map_err(|e| format!("open {}: {e}", blob.display()))?;
    let (mut at, mut patches) = (0, 0);
    while at < len {
        let mut chunk = Vec::with_capacity(CHUNK as usize);
        (&mut f)
            .take(CHUNK)
            .read_to_end(&mut chunk)
            .map_err(|e| format!("read {}: {e}", blob.display()))?;
        let n = chunk.len() as u64;
        if n == 0 {
            return Err(format!("{} ended at byte {at}", blob.display()));
        }
        let r = c
            .patch(&loc)
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{at}-{}", at + n - 1))
            .body(chunk)
            .send()
            .map_err(|e| format!("PATCH at byte {at}: {e}"))?;
        let (status, location, body) = answer(r);
        (p.status, p.message) = (Some(status), body);
        match location.filter(|_| status == 202) {
            Some(l) => loc = l,
            None => {
                steps.push(format!("{patches} PATCH 202, PATCH {status}"));
                return Ok(());
            }
        }
        patches += 1;
        at += n;
    }
    steps.push(format!("{patches} PATCH 202"));
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put = Instant::now();
    let r = c
        .put(format!("{loc}{sep}digest={digest}"))
        .bearer_auth(TOKEN)
        .header("Content-Length", "0")
        .send();
    p.put_s = Some(put.elapsed().as_secs_f64());
    let (status, _, body) = answer(r.map_err(|e| format!("PUT: {e}"))?);
    steps.push(format!("PUT {status}"));
    (p.status, p.message) = (Some(status), body);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// The report

struct Report<'a> {
    img: &'a OciImage,
    /// The directories of the image's layers, a line each.
    dirs: &'a str,
    runs: &'a [Run],
    kinds: &'a [Kind],
    spread: &'a [Ipv4Addr],
    spread_note: Option<String>,
    idle_sockets: usize,
    attack_hwm: u64,
    attack_exit: String,
    bombing: &'a Bombing,
    bomb_exit: String,
    bomb_len: u64,
    nofile: (u64, u64),
    args: &'a HardeningArgs,
}

fn report(md: &mut String, r: &Report) -> Result<()> {
    let a = r.args;
    let image_bytes: u64 = r.img.blobs().iter().map(|b| b.1).sum();
    let mib = |kib: u64| kib as f64 / 1024.0;
    writeln!(
        md,
        "Image: `fixtures/oci-usr:usr`, {} gzip layers (`tar --sort=name` of {} of this host, `gzip -6 -n`), {} in \
         all with manifest and config; `ferry add h@1 oci:fixtures/oci-usr:usr`, served as `h:usr` by `ferry serve \
         --listen 127.0.0.1:0` (`RUST_LOG=warn`; `[http]` defaults: header timeout 30 s, 1024 connections, 256 \
         per client address). This process's open-file limit: {} raised to {}.\n",
        r.img.layers.len(),
        r.dirs
            .lines()
            .map(|d| format!("`{d}`"))
            .collect::<Vec<_>>()
            .join(", "),
        mb(image_bytes),
        r.nofile.0,
        r.nofile.1,
    )?;

    // 1.
    writeln!(md, "### 1. A pull while the node is attacked\n")?;
    writeln!(
        md,
        "Each run: a new client (a new connection) pulls `h:usr` — `GET` of the manifest, then of the config and \
         every layer, each blob hashed with sha256 as it streams in and checked against its digest and size (the \
         pull code of `ferry-bench serve`); *pull s* is its wall time. Just before, another new connection's `GET \
         /v2/` is timed (*new conn ms*). One node process for all runs; the image was pulled once before the first \
         (layers re-created into its cache). Runs alternate idle and attacked, the order turning each \
         repetition.\n\n\
         The attack, started {warm} s before the timed pull (after its first pass) and stopped after it: one \
         thread keeps {n} non-blocking connections, each of which sent `GET /v2/h/manifests/usr HTTP/1.1` and two \
         header lines but never the blank line that ends the head; it passes over all of them, then rests {rest} \
         ms, and each pass opens again every connection the node closed or answered. *from 127.0.0.1*: all \
         from the pull's own address; *from 127.0.0.2+*: {per} per address from {first}–{last} (bound with \
         socket2), each address under the per-client cap. Meanwhile {deep} threads (one keep-alive client each, \
         from 127.0.0.1) loop `GET /repos/a/a/…` ({deep_bytes} bytes of `a/` after `/repos/`). *held* is the \
         node's open TCP sockets (`/proc/PID/fd`) above its idle count ({idle}) at the pull's start → end: the \
         connections it has accepted, the attack's, the deep-path clients' and the pull's. *opened*, *closed*, \
         *503*, *failed* count the attack's connections during the pull: started, closed by the node (end of \
         stream or reset), answered (a 503) and closed, and failed to connect. *node CPU s* and *bench CPU s* \
         (this process: attacker, deep-path clients, the pull's hashing) are over the probe and the pull; *other \
         CPU s* is the rest of the machine.\n",
        warm = WARMUP.as_secs(),
        n = a.half_open,
        rest = a.reopen_ms,
        per = PER_ADDRESS,
        first = r.spread[0],
        last = r.spread[r.spread.len() - 1],
        deep = a.deep,
        deep_bytes = DEEP_BYTES,
        idle = r.idle_sockets,
    )?;
    if let Some(note) = &r.spread_note {
        writeln!(md, "Note: {note}.\n")?;
    }
    writeln!(md, "| rep | run | pull s | new conn ms | held | attempted | opened | closed | 503 | failed | deep-path req (status) | node CPU s | bench CPU s | other CPU s |")?;
    writeln!(
        md,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    )?;
    for run in r.runs {
        let pull = match &run.error {
            None => format!("{:.3}", run.wall),
            Some(_) => format!("**failed** ({:.3})", run.wall),
        };
        let probe = match &run.probe {
            Ok(ms) => format!("{ms:.1}"),
            Err(_) => "**failed**".into(),
        };
        let attack = match &run.attack {
            Some((c, attempted)) => format!(
                "{attempted} | {} | {} | {} | {} | {} ({}{}) ",
                c.opened,
                c.closed,
                c.answered,
                c.failed,
                c.deep,
                statuses(&c.deep_status),
                if c.deep_failed > 0 {
                    format!(", {} failed", c.deep_failed)
                } else {
                    String::new()
                }
            ),
            None => "– | – | – | – | – | – ".into(),
        };
        writeln!(
            md,
            "| {} | {} | {pull} | {probe} | {} → {} | {attack}| {:.2} | {:.2} | {:.2} |",
            run.rep,
            run.kind.name(),
            run.held.0,
            run.held.1,
            run.node_cpu,
            run.self_cpu,
            run.others
        )?;
    }
    let failures: Vec<String> = r
        .runs
        .iter()
        .filter_map(|run| {
            let pull = run.error.as_ref().map(|e| format!("pull: {e}"));
            let probe = run.probe.as_ref().err().map(|e| format!("new conn: {e}"));
            let deep = run
                .attack
                .as_ref()
                .and_then(|(c, _)| c.deep_error.as_ref())
                .map(|e| format!("deep-path (first error of the attack): {e}"));
            let all: Vec<String> = [pull, probe, deep].into_iter().flatten().collect();
            (!all.is_empty())
                .then(|| format!("rep {} {}: {}", run.rep, run.kind.name(), all.join("; ")))
        })
        .collect();
    if !failures.is_empty() {
        writeln!(md, "\nFailures:")?;
        for f in &failures {
            writeln!(md, "- `{}`", f.chars().take(400).collect::<String>())?;
        }
    }
    let of = |k: Kind| r.runs.iter().filter(move |run| run.kind == k);
    let med =
        |k: Kind, f: &dyn Fn(&Run) -> Option<f64>| median(&of(k).filter_map(f).collect::<Vec<_>>());
    let wall = |run: &Run| run.error.is_none().then_some(run.wall);
    let idle = med(Kind::Idle, &wall);
    write!(md, "\n| median of {} |", a.reps.max(1))?;
    for k in r.kinds {
        write!(md, " {} |", k.name())?;
    }
    writeln!(md, "\n|---|{}", "---:|".repeat(r.kinds.len()))?;
    let row = |md: &mut String, name: &str, f: &dyn Fn(Kind) -> String| -> Result<()> {
        write!(md, "| {name} |")?;
        for k in r.kinds {
            write!(md, " {} |", f(*k))?;
        }
        writeln!(md)?;
        Ok(())
    };
    row(md, "**pull s** (of those that succeeded)", &|k| {
        shown(med(k, &wall), |x| format!("**{x:.3}**"))
    })?;
    row(md, "**attacked / idle**", &|k| {
        shown(med(k, &wall) / idle, |x| format!("**{x:.2}x**"))
    })?;
    row(md, "pulls failed", &|k| {
        format!(
            "{} of {}",
            of(k).filter(|run| run.error.is_some()).count(),
            of(k).count()
        )
    })?;
    row(md, "new conn ms", &|k| {
        format!("{:.1}", med(k, &|run| run.probe.as_ref().ok().copied()))
    })?;
    row(md, "held at the pull's start", &|k| {
        format!("{:.0}", med(k, &|run| Some(run.held.0 as f64)))
    })?;
    let attack_med = |k: Kind, f: &dyn Fn(&Counts) -> f64| match k {
        Kind::Idle => "–".to_string(),
        _ => format!(
            "{:.0}",
            med(k, &|run| run.attack.as_ref().map(|(c, _)| f(c)))
        ),
    };
    row(md, "attack connections attempted", &|k| match k {
        Kind::Idle => "–".into(),
        _ => format!(
            "{:.0}",
            med(k, &|run| run.attack.as_ref().map(|(_, n)| *n as f64))
        ),
    })?;
    let rates: [Rate; 5] = [
        ("opened / s", |c| c.opened),
        ("closed by the node / s", |c| c.closed),
        ("answered 503 / s", |c| c.answered),
        ("failed to connect / s", |c| c.failed),
        ("deep-path requests / s", |c| c.deep),
    ];
    for (name, count) in rates {
        row(md, name, &|k| attack_med(k, &|c| c.rate(count(c))))?;
    }
    row(md, "node CPU s", &|k| {
        format!("{:.2}", med(k, &|run| Some(run.node_cpu)))
    })?;
    row(md, "bench CPU s", &|k| {
        format!("{:.2}", med(k, &|run| Some(run.self_cpu)))
    })?;
    let mut targets = Vec::new();
    for k in r.kinds.iter().filter(|k| **k != Kind::Idle) {
        let ratio = med(*k, &wall) / idle;
        let failed = r
            .runs
            .iter()
            .filter(|run| run.error.is_some() && (run.kind == *k || run.kind == Kind::Idle))
            .count();
        targets.push(format!(
            "{} → **{}** ({}{})",
            k.name(),
            verdict(ratio <= TARGET_RATIO && failed == 0),
            shown(ratio, |x| format!("{x:.2}x")),
            if failed > 0 {
                format!(", {failed} pulls failed")
            } else {
                String::new()
            }
        ));
    }
    writeln!(
        md,
        "\nTarget: the attacked pull <= {TARGET_RATIO}x the idle one (medians), and no pull fails: {}.\n",
        targets.join("; ")
    )?;
    writeln!(
        md,
        "The node of part 1: VmHWM {:.1} MiB after all runs; on SIGTERM: {}.\n",
        mib(r.attack_hwm),
        r.attack_exit
    )?;

    // 2.
    let b = r.bombing;
    writeln!(
        md,
        "### 2. Peak RSS through a gzip bomb push and {} concurrent pulls\n",
        a.pullers
    )?;
    writeln!(
        md,
        "A fresh node process on the same store, with `--push-token-file` (one token). The bomb: \
         `fixtures/zeros-4g.gz`, {} of zeros through flate2 (best compression), {} bytes of gzip, built once \
         streaming to the file. One thread pushes it as a blob of `{BOMB_REPO}` (`POST /v2/{BOMB_REPO}/blobs/uploads/`, \
         `PATCH` in {} KiB chunks with `Content-Range`, `PUT ?digest=`; `Authorization: Bearer`) while {} threads \
         pull `h:usr` (as in `ferry-bench serve` part 3: released together, every blob hashed and checked). The \
         node's `VmHWM` (peak RSS) and `VmRSS` are read from `/proc/PID/status` when the push and every pull are \
         done; `VmRSS` is also sampled every 100 ms.\n",
        human_bytes(BOMB_BYTES),
        r.bomb_len,
        CHUNK >> 10,
        a.pullers
    )?;
    let p = &b.pushed;
    writeln!(md, "| | |")?;
    writeln!(md, "|---|---|")?;
    writeln!(
        md,
        "| **node peak RSS (VmHWM)** | **{:.1} MiB** |",
        mib(b.hwm_kib)
    )?;
    writeln!(
        md,
        "| largest VmRSS sampled | {:.1} MiB, {:.1} s after the start ({}) |",
        mib(b.rss_peak.0),
        b.rss_peak.1,
        if b.rss_peak.1 <= b.pull_wall {
            "while the pulls ran"
        } else {
            "after the pulls ended"
        }
    )?;
    writeln!(md, "| VmRSS at the end | {:.1} MiB |", mib(b.rss_after_kib))?;
    writeln!(
        md,
        "| push | {} |",
        match p.status {
            Some(201) => "**accepted** (201 Created)".to_string(),
            Some(s) => format!("**refused** ({s})"),
            None => "**no answer**".to_string(),
        }
    )?;
    writeln!(md, "| push requests | {} |", p.steps)?;
    if !p.message.is_empty() {
        writeln!(md, "| push answer | `{}` |", p.message.replace('|', "\\|"))?;
    }
    writeln!(
        md,
        "| push time, POST to final answer | {:.2} s{} |",
        p.total_s,
        p.put_s
            .map(|s| format!(" (the PUT's answer: {s:.2} s)"))
            .unwrap_or_default()
    )?;
    writeln!(
        md,
        "| {} pulls | {:.2} s, {} errors, {} / {} layers verified |",
        a.pullers,
        b.pull_wall,
        b.pull_errors.len(),
        b.layers_ok,
        a.pullers * r.img.layers.len()
    )?;
    writeln!(
        md,
        "| node CPU s, wall s | {:.2}, {:.2} |",
        b.node_cpu, b.wall
    )?;
    writeln!(md, "| node on SIGTERM | {} |", r.bomb_exit)?;
    if !b.pull_errors.is_empty() {
        let mut distinct = b.pull_errors.clone();
        distinct.sort();
        distinct.dedup();
        writeln!(md, "\nPull errors ({} distinct, first 3):", distinct.len())?;
        for e in distinct.iter().take(3) {
            writeln!(md, "- `{e}`")?;
        }
    }
    writeln!(
        md,
        "\nTarget: node peak RSS <= {TARGET_RSS_MIB} MiB → **{}** ({:.1} MiB).\n",
        verdict(mib(b.hwm_kib) <= TARGET_RSS_MIB),
        mib(b.hwm_kib)
    )?;
    Ok(())
}

/// A row of the summary: its name, and the count of which it is the rate.
type Rate = (&'static str, fn(&Counts) -> u64);

/// `x` as `show` makes it, or `–` when there is none (a median of nothing).
fn shown(x: f64, show: impl Fn(f64) -> String) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        show(x)
    }
}

fn statuses(s: &BTreeMap<u16, u64>) -> String {
    if s.is_empty() {
        return "none".into();
    }
    s.iter()
        .map(|(status, n)| format!("{n}× {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n => mb(n),
    }
}
