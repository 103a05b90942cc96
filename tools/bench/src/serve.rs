//! `ferry-bench serve --work DIR`: `ferry serve` as an OCI Distribution registry (pull side), side by side in the
//! same run with Debian's `docker-registry` (distribution 2.8, filesystem storage) serving the same image.
//!
//! 1. One blob GET of the biggest layer of `x:v2` with `curl` (whole-process time): MB/s. Then (1b) the same GET
//!    from ferry with its cache of re-created gzip layers emptied first: the cost of a cold read.
//! 2. `skopeo copy docker://HOST/x:v2 oci:DIR:v2` into a fresh DIR: wall time.
//! 3. 64 concurrent pulls (a thread each, in this process: manifest GET, then config and layers GET, every blob
//!    hashed with sha256 and checked against its digest): errors, wall time, and the server's peak RSS (`VmHWM` of
//!    a server process started for that run alone).
//!
//! It prints a markdown section on stdout; `--write docs/benchmarks.md` also replaces its own marked section
//! there (the other sections are left alone).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::fixtures::{blob_path, Fixtures, OciImage};
use crate::measure::{self, median, sync, warm_tree, Cmd, Measured};
use crate::{environment, mb, verdict, write_section, Bench, TARGET_RSS_MIB};

pub const BEGIN: &str = "<!-- BEGIN ferry-bench serve (generated; edit outside these markers) -->";
pub const END: &str = "<!-- END ferry-bench serve -->";

/// Blob GET: ferry's MB/s at least this many times the registry's.
const TARGET_GET_RATIO: f64 = 1.0;
/// `skopeo copy`: ferry's wall time at most this many times the registry's.
const TARGET_COPY_RATIO: f64 = 1.1;
const REPO: &str = "x";
const TAG: &str = "v2";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// How long a server may take to come up, and to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Working directory: fixtures are cached in WORK/fixtures, stores are made in WORK/runs.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary (default: target/release/ferry of this workspace).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// Repetitions of each timed run (medians reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also write the results into FILE between the ferry-bench serve markers (appended if absent).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Concurrent pulls in part 3.
    #[arg(long, default_value_t = 64)]
    pullers: usize,
    /// Debian mirror for debootstrap (default: the host's apt source for bookworm).
    #[arg(long)]
    mirror: Option<String>,
    /// Before each timed run, wait up to SECS for other work on the machine to calm down.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    quiet_wait: u64,
    /// Keep the stores and copies made in WORK/runs/TIMESTAMP (deleted at the end otherwise).
    #[arg(long)]
    keep_stores: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ferry,
    Registry,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ferry => "ferry serve",
            Kind::Registry => "docker-registry",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Kind::Ferry => "ferry",
            Kind::Registry => "registry",
        }
    }
    /// Alternate which server goes first, so drift in the machine's state hits both alike.
    fn order(rep: usize) -> [Kind; 2] {
        match rep % 2 {
            0 => [Kind::Ferry, Kind::Registry],
            _ => [Kind::Registry, Kind::Ferry],
        }
    }
}

/// A running server: its process (the server itself, not a shell) and `127.0.0.1:PORT`.
pub(crate) struct Server {
    kind: Kind,
    child: Child,
    pub(crate) host: String,
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `VmXXX:` line of /proc/PID/status, in KiB.
    pub(crate) fn vm_kib(&self, key: &str) -> Result<u64> {
        crate::measure::proc_status_kib(self.pid(), key)
    }

    /// CPU seconds (user + system, all threads) the server has used so far.
    pub(crate) fn cpu_s(&self) -> Result<f64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let rest = &stat[stat.rfind(')').context("odd /proc/PID/stat")? + 2..];
        // Fields after the command: state is field 3; utime and stime are fields 14 and 15.
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
        Ok(ticks as f64 / 100.0)
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`STOP_TIMEOUT`]). Returns how the process ended.
    pub(crate) fn stop(mut self) -> Result<String> {
        Cmd::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .output()?;
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st.to_string());
            }
            if start.elapsed() > STOP_TIMEOUT {
                let _ = self.child.kill();
                let st = self.child.wait()?;
                return Ok(format!(
                    "did not exit within {} s of SIGTERM; killed ({st})",
                    STOP_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The two servers' data, set up once.
struct Setup {
    dir: PathBuf,
    store: PathBuf,
    reg_yml: PathBuf,
    logs: Mutex<usize>,
}

impl Setup {
    fn log(&self, kind: Kind) -> Result<File> {
        let mut n = self.logs.lock().expect("log counter");
        *n += 1;
        let p = self.dir.join(format!("{}-{}.log", kind.short(), *n));
        File::create(&p).with_context(|| format!("create {}", p.display()))
    }

    fn start(&self, b: &Bench, kind: Kind) -> Result<Server> {
        match kind {
            Kind::Ferry => start_ferry(b, &self.store, &[], self.log(kind)?, &self.dir),
            Kind::Registry => {
                let port = free_port()?;
                let yml = fs::read_to_string(&self.reg_yml)?;
                let yml = yml
                    .lines()
                    .map(|l| {
                        if l.trim_start().starts_with("addr:") {
                            format!("  addr: 127.0.0.1:{port}")
                        } else {
                            l.to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                fs::write(&self.reg_yml, yml + "\n")?;
                let child = Cmd::new("docker-registry")
                    .arg("serve")
                    .arg(&self.reg_yml)
                    .spawn(Stdio::null(), self.log(kind)?.into())?;
                let s = Server {
                    kind,
                    child,
                    host: format!("127.0.0.1:{port}"),
                };
                wait_ready(&s)?;
                Ok(s)
            }
        }
    }
}

/// `ferry serve --listen 127.0.0.1:0 EXTRA…` on `store`, stderr to `log` (a file in `log_dir`), once it answers
/// `GET /v2/`.
pub(crate) fn start_ferry(
    b: &Bench,
    store: &Path,
    extra: &[&str],
    log: File,
    log_dir: &Path,
) -> Result<Server> {
    let mut child = b
        .ferry(store)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .spawn(Stdio::piped(), log.into())?;
    let out = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(out);
    let mut first = String::new();
    lines.read_line(&mut first)?;
    let host = match first.trim().strip_prefix("listening on http://") {
        Some(h) => h.to_owned(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "ferry serve printed {first:?} first (see the log in {})",
                log_dir.display()
            );
        }
    };
    // Keep reading whatever else it prints, so that it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let s = Server {
        kind: Kind::Ferry,
        child,
        host,
    };
    wait_ready(&s)?;
    Ok(s)
}

/// A free TCP port on loopback.
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `GET /v2/` until it answers 200.
fn wait_ready(s: &Server) -> Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("http://{}/v2/", s.host)).send() {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if start.elapsed() > START_TIMEOUT {
            bail!(
                "{} at {} did not answer /v2/ within {} s",
                s.kind.name(),
                s.host,
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn reg_config(data: &Path) -> String {
    format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\n",
        data.display()
    )
}

fn skopeo_copy(src_host: &str, dest: &Path) -> Cmd {
    Cmd::new("skopeo").args([
        "copy".to_owned(),
        "--src-tls-verify=false".to_owned(),
        format!("docker://{src_host}/{REPO}:{TAG}"),
        format!("oci:{}:{TAG}", dest.display()),
    ])
}

/// The SHA-256 of a file, as an OCI digest.
pub(crate) fn sha256_file(p: &Path) -> Result<String> {
    let mut f = File::open(p).with_context(|| format!("open {}", p.display()))?;
    sha256_copy(&mut f, &mut std::io::sink())
}

/// Copies `from` to `to` to the end; the SHA-256 of what went through, as an OCI digest.
pub(crate) fn sha256_copy(from: &mut impl Read, to: &mut impl Write) -> Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        to.write_all(&buf[..n])?;
    }
    Ok(format!("sha256:{:x}", h.finalize()))
}

// ---------------------------------------------------------------------------------------------------------------

struct Get {
    kind: Kind,
    rep: usize,
    m: Measured,
    bytes: u64,
    /// curl's own `%{time_total}`.
    curl_s: f64,
    server_cpu: f64,
}

struct Copy {
    kind: Kind,
    rep: usize,
    m: Measured,
    sync_s: f64,
    server_cpu: f64,
}

struct Pulls {
    kind: Kind,
    rep: usize,
    wall: f64,
    bytes: u64,
    errors: Vec<String>,
    layers_ok: usize,
    hwm_kib: u64,
    rss_after_kib: u64,
    server_cpu: f64,
    others: f64,
    exit: String,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let bench = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &["/usr/bin/time", "docker-registry", "skopeo", "curl", "kill"],
    )?;
    let fx = Fixtures::new(&bench.work, args.mirror.clone())?;
    let oci = fx.oci()?;
    let reps = args.reps.max(1);
    let img = OciImage::load(&oci, TAG)?;
    let biggest = img
        .layers
        .iter()
        .max_by_key(|l| l.1)
        .context("x:v2 has no layers")?
        .clone();
    let image_bytes: u64 = img.blobs().iter().map(|b| b.1).sum();

    // The two servers' data.
    let dir = bench.fresh("serve")?;
    let store = dir.join("store");
    bench.ferry_init(&store)?;
    let source = |tag: &str| format!("oci:{}:{tag}", oci.display());
    bench.ferry_add(&store, "x@1", &source("v1"))?;
    bench.ferry_add(&store, "x@2", &source("v2"))?;
    let reg_data = dir.join("reg-data");
    let reg_yml = dir.join("reg.yml");
    fs::write(&reg_yml, reg_config(&reg_data))?;
    let setup = Setup {
        dir: dir.clone(),
        store: store.clone(),
        reg_yml,
        logs: Mutex::new(0),
    };
    {
        let reg = setup.start(&bench, Kind::Registry)?;
        Cmd::new("skopeo")
            .args([
                "copy".to_owned(),
                "--dest-tls-verify=false".to_owned(),
                source(TAG),
                format!("docker://{}/{REPO}:{TAG}", reg.host),
            ])
            .output()?;
        reg.stop()?;
    }

    let mut md = String::new();
    environment(&mut md, &bench, "Results: serve")?;
    md.truncate(md.trim_end().len());
    md.push('\n');
    writeln!(
        md,
        "- docker-registry: {}; skopeo: {}; curl: {}\n",
        sh_line("docker-registry --version"),
        sh_line("skopeo --version"),
        sh_line("curl --version | head -1 | cut -d' ' -f1-2")
    )?;

    // Parts 1 and 2: both servers up, one process each for all reps.
    let servers = [
        setup.start(&bench, Kind::Ferry)?,
        setup.start(&bench, Kind::Registry)?,
    ];
    let server = |k: Kind| servers.iter().find(|s| s.kind == k).expect("both started");
    // What each serves as x:v2 (the digests should be the fixture's), and every page warm.
    let mut served = Vec::new();
    for s in &servers {
        let client = reqwest::blocking::Client::new();
        let r = client
            .get(format!("http://{}/v2/{REPO}/manifests/{TAG}", s.host))
            .header("Accept", MANIFEST_ACCEPT)
            .send()?;
        ensure!(
            r.status().is_success(),
            "{} x:v2 manifest: {}",
            s.kind.name(),
            r.status()
        );
        let ct = header(&r, "content-type");
        let dcd = header(&r, "docker-content-digest");
        let body = r.bytes()?;
        let digest = format!("sha256:{:x}", Sha256::digest(&body));
        served.push((s.kind, digest, dcd, ct));
    }
    warm_tree(&store)?;
    warm_tree(&reg_data)?;
    for s in &servers {
        for layer in &img.layers {
            blob_get(&s.host, &layer.0)?;
        }
    }

    let mut gets = Vec::new();
    for rep in 0..reps {
        for kind in Kind::order(rep) {
            sync()?;
            measure::wait_quiet(bench.quiet_wait)?;
            eprintln!("ferry-bench: serve: blob GET rep {rep}: {}", kind.name());
            gets.push(get_biggest(server(kind), rep, &biggest)?);
        }
    }
    // 1b. The same GET from ferry with its cache of re-created gzip layers emptied first: a cold read.
    let cache = store.join("cache/gzip");
    let mut cold = Vec::new();
    for rep in 0..reps {
        let cached = empty_dir(&cache)?;
        sync()?;
        measure::wait_quiet(bench.quiet_wait)?;
        eprintln!("ferry-bench: serve: cold blob GET rep {rep} ({cached} cached files removed)");
        cold.push(get_biggest(server(Kind::Ferry), rep, &biggest)?);
    }
    let recreated = empty_dir(&cache)? > 0;
    ensure!(
        recreated,
        "the cold GETs left nothing in {}: the layer was not re-created, so part 1b measured nothing",
        cache.display()
    );
    // Warm again, every layer (part 2 pulls them all): parts 2 and 3 measure warm reads.
    for layer in &img.layers {
        blob_get(&server(Kind::Ferry).host, &layer.0)?;
    }

    let mut copies = Vec::new();
    for rep in 0..reps {
        for kind in Kind::order(rep) {
            let s = server(kind);
            let dest = bench
                .fresh(&format!("copy-{}-{rep}", kind.short()))?
                .join("oci");
            sync()?;
            measure::wait_quiet(bench.quiet_wait)?;
            eprintln!("ferry-bench: serve: skopeo copy rep {rep}: {}", kind.name());
            let cpu0 = s.cpu_s()?;
            let m = skopeo_copy(&s.host, &dest).measure()?;
            let server_cpu = s.cpu_s()? - cpu0;
            let sync_s = sync()?;
            eprintln!("ferry-bench:   {:.2} s wall", m.wall);
            // The copy must be the image: the same layers, each hashing to its digest.
            let got = OciImage::load(&dest, TAG)?;
            ensure!(
                got.layers == img.layers,
                "{}: skopeo copied layers {:?}, expected {:?}",
                kind.name(),
                got.layers,
                img.layers
            );
            for l in &got.layers {
                let h = sha256_file(&blob_path(&dest, &l.0))?;
                ensure!(
                    h == l.0,
                    "{}: copied layer {} hashes to {h}",
                    kind.name(),
                    l.0
                );
            }
            copies.push(Copy {
                kind,
                rep,
                m,
                sync_s,
                server_cpu,
            });
        }
    }
    let hwm12: Vec<(Kind, u64)> = servers
        .iter()
        .map(|s| Ok((s.kind, s.vm_kib("VmHWM")?)))
        .collect::<Result<_>>()?;
    let mut exits = Vec::new();
    for s in servers {
        let k = s.kind;
        exits.push((k, s.stop()?));
    }

    // Part 3: a fresh server process per run, so that its VmHWM is that run's.
    let mut pulls = Vec::new();
    for rep in 0..reps {
        for kind in Kind::order(rep) {
            let s = setup.start(&bench, kind)?;
            measure::wait_quiet(bench.quiet_wait)?;
            eprintln!(
                "ferry-bench: serve: {} concurrent pulls rep {rep}: {}",
                args.pullers,
                kind.name()
            );
            let cpu0 = s.cpu_s()?;
            let busy0 = measure::busy_seconds()?;
            let self0 = self_cpu_s()?;
            let (wall, bytes, errors, layers_ok) =
                pull_all(&s.host, args.pullers, (REPO, TAG), &img)?;
            let server_cpu = s.cpu_s()? - cpu0;
            let others =
                (measure::busy_seconds()? - busy0 - server_cpu - (self_cpu_s()? - self0)).max(0.0);
            let hwm_kib = s.vm_kib("VmHWM")?;
            let rss_after_kib = s.vm_kib("VmRSS")?;
            let exit = s.stop()?;
            eprintln!(
                "ferry-bench:   {wall:.2} s wall, {} errors, {layers_ok} layers verified, VmHWM {} MiB",
                errors.len(),
                hwm_kib / 1024
            );
            pulls.push(Pulls {
                kind,
                rep,
                wall,
                bytes,
                errors,
                layers_ok,
                hwm_kib,
                rss_after_kib,
                server_cpu,
                others,
                exit,
            });
        }
    }
    bench.finish(args.keep_stores)?;

    report(
        &mut md,
        &Report {
            img: &img,
            biggest: &biggest,
            image_bytes,
            served: &served,
            gets: &gets,
            cold: &cold,
            copies: &copies,
            pulls: &pulls,
            hwm12: &hwm12,
            exits: &exits,
            reps,
            pullers: args.pullers,
        },
    )?;
    print!("{md}");
    if let Some(doc) = args.write {
        write_section(&doc, BEGIN, END, &md)?;
        eprintln!("ferry-bench: wrote {}", doc.display());
    }
    Ok(())
}

fn header(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_owned()
}

fn sh_line(c: &str) -> String {
    Cmd::new("sh")
        .arg("-c")
        .arg(c)
        .output()
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// CPU seconds this process (the pullers of part 3) has used so far.
pub(crate) fn self_cpu_s() -> Result<f64> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    let rest = &stat[stat.rfind(')').context("odd /proc/self/stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok((f[11].parse::<u64>()? + f[12].parse::<u64>()?) as f64 / 100.0)
}

/// One measured `curl` GET of the biggest layer from `s`, checked for status and length.
fn get_biggest(s: &Server, rep: usize, biggest: &(String, u64)) -> Result<Get> {
    let kind = s.kind;
    let cpu0 = s.cpu_s()?;
    let m = blob_get(&s.host, &biggest.0)?;
    let server_cpu = s.cpu_s()? - cpu0;
    let f: Vec<&str> = m.stdout.split_whitespace().collect();
    ensure!(
        f.len() == 3 && f[0] == "200",
        "{}: curl -w printed {:?}",
        kind.name(),
        m.stdout
    );
    let bytes: u64 = f[1].parse()?;
    ensure!(
        bytes == biggest.1,
        "{}: GET of {} gave {bytes} bytes, not {}",
        kind.name(),
        biggest.0,
        biggest.1
    );
    eprintln!(
        "ferry-bench:   {:.3} s wall, {:.0} MB/s",
        m.wall,
        bytes as f64 / m.wall / 1e6
    );
    Ok(Get {
        kind,
        rep,
        curl_s: f[2].parse()?,
        m,
        bytes,
        server_cpu,
    })
}

/// Remove the files in `dir` (absent is empty); how many there were.
fn empty_dir(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    let mut n = 0;
    for e in entries {
        let path = e?.path();
        fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
        n += 1;
    }
    Ok(n)
}

/// `curl -s -o /dev/null` of one blob, measured; stdout is `HTTP-CODE BYTES TIME-TOTAL`.
fn blob_get(host: &str, digest: &str) -> Result<Measured> {
    Cmd::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{time_total}",
        ])
        .arg(format!("http://{host}/v2/{REPO}/blobs/{digest}"))
        .measure()
}

/// `pullers` threads, released together, each pulling `image` (repository, tag) on its own connection: the
/// manifest, then the config and every layer, each blob hashed as it arrives and checked against its digest and
/// size. Returns the wall time until the last one finished, the bytes received, the errors, and how many layers
/// were verified.
pub(crate) fn pull_all(
    host: &str,
    pullers: usize,
    image: (&str, &str),
    img: &OciImage,
) -> Result<(f64, u64, Vec<String>, usize)> {
    let barrier = Barrier::new(pullers + 1);
    let results: Mutex<Vec<Result<(u64, usize), String>>> = Mutex::new(Vec::new());
    let mut wall = 0.0;
    std::thread::scope(|sc| -> Result<()> {
        for _ in 0..pullers {
            sc.spawn(|| {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(600))
                    .pool_max_idle_per_host(1)
                    .build();
                barrier.wait();
                let r = client
                    .map_err(|e| format!("client: {e}"))
                    .and_then(|c| pull_one(&c, host, image, img));
                results.lock().expect("results").push(r);
            });
        }
        barrier.wait();
        let start = Instant::now();
        while results.lock().expect("results").len() < pullers {
            std::thread::sleep(Duration::from_millis(5));
        }
        wall = start.elapsed().as_secs_f64();
        Ok(())
    })?;
    let (mut bytes, mut layers_ok, mut errors) = (0, 0, Vec::new());
    for r in results.into_inner().expect("results") {
        match r {
            Ok((b, l)) => {
                bytes += b;
                layers_ok += l;
            }
            Err(e) => errors.push(e),
        }
    }
    Ok((wall, bytes, errors, layers_ok))
}

/// A request's error and its causes (what the connection said), without the URL.
pub(crate) fn why(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        s = format!("{s}: {c}");
        cause = c.source();
    }
    s
}

/// One pull of `image` (repository, tag) the way a client does it, every blob hashed and checked against `img`:
/// the bytes received and how many layers were verified, or the first thing that went wrong.
pub(crate) fn pull_one(
    c: &reqwest::blocking::Client,
    host: &str,
    (repo, tag): (&str, &str),
    img: &OciImage,
) -> Result<(u64, usize), String> {
    let url = format!("http://{host}/v2/{repo}/manifests/{tag}");
    let r = c
        .get(&url)
        .header("Accept", MANIFEST_ACCEPT)
        .send()
        .map_err(|e| format!("GET manifest: {}", why(e)))?;
    if !r.status().is_success() {
        return Err(format!("GET manifest: {}", r.status()));
    }
    let body = r
        .bytes()
        .map_err(|e| format!("GET manifest body: {}", why(e)))?;
    let mut bytes = body.len() as u64;
    let m: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("manifest: {e}"))?;
    let desc = |d: &serde_json::Value| {
        (
            d["digest"].as_str().unwrap_or("").to_owned(),
            d["size"].as_u64().unwrap_or(0),
        )
    };
    let layers: Vec<(String, u64)> = m["layers"]
        .as_array()
        .map(|a| a.iter().map(desc).collect())
        .unwrap_or_default();
    if layers != img.layers {
        return Err(format!("manifest lists layers {layers:?}"));
    }
    let mut ok = 0;
    let config = desc(&m["config"]);
    for (i, (digest, size)) in std::iter::once(&config).chain(&layers).enumerate() {
        let mut r = c
            .get(format!("http://{host}/v2/{repo}/blobs/{digest}"))
            .send()
            .map_err(|e| format!("GET {digest}: {}", why(e)))?;
        if !r.status().is_success() {
            return Err(format!("GET {digest}: {}", r.status()));
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0u64;
        loop {
            let k = r
                .read(&mut buf)
                .map_err(|e| format!("GET {digest}: after {n} bytes: {e}"))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        let got = format!("sha256:{:x}", h.finalize());
        if n != *size || got != *digest {
            return Err(format!(
                "GET {digest}: {n} bytes (expected {size}) hashing to {got}"
            ));
        }
        bytes += n;
        if i > 0 {
            ok += 1;
        }
    }
    Ok((bytes, ok))
}

// ---------------------------------------------------------------------------------------------------------------
// The report

struct Report<'a> {
    img: &'a OciImage,
    biggest: &'a (String, u64),
    image_bytes: u64,
    served: &'a [(Kind, String, String, String)],
    gets: &'a [Get],
    cold: &'a [Get],
    copies: &'a [Copy],
    pulls: &'a [Pulls],
    hwm12: &'a [(Kind, u64)],
    exits: &'a [(Kind, String)],
    reps: usize,
    pullers: usize,
}

fn med<T>(xs: &[T], kind: Kind, k: impl Fn(&T) -> Kind, f: impl Fn(&T) -> f64) -> f64 {
    median(
        &xs.iter()
            .filter(|x| k(x) == kind)
            .map(f)
            .collect::<Vec<_>>(),
    )
}

fn report(md: &mut String, r: &Report) -> Result<()> {
    let reps = r.reps;
    let mibk = |kib: u64| kib as f64 / 1024.0;
    writeln!(
        md,
        "Both servers serve the same image, `fixtures/oci:v2` (umoci; {} layers, {} in all with manifest and config), \
         as `x:v2`, on loopback, in the same run. ferry: `ferry init`, `ferry add x@1 oci:fixtures/oci:v1`, \
         `ferry add x@2 oci:fixtures/oci:v2`, then `ferry serve --listen 127.0.0.1:0` (`RUST_LOG=warn`). \
         docker-registry: the config of `HARNESS.md` (filesystem storage under the run dir, `http.addr` a free \
         loopback port, default logging to a file), loaded with `skopeo copy --dest-tls-verify=false \
         oci:fixtures/oci:v2 docker://127.0.0.1:PORT/x:v2`. Before parts 1 and 2 both data dirs are read once (page \
         cache warm) and every layer is fetched once from each (for ferry, that re-creates its gzip layers into its cache); `sync` and a quiet machine before each run; runs \
         alternate which server goes first. *server CPU s* is the server process's user+system time during the \
         run (/proc/PID/stat); *other CPU s* what the rest of the machine used meanwhile (neither the client nor \
         the server): noise.\n",
        r.img.layers.len(),
        mb(r.image_bytes)
    )?;
    writeln!(md, "| served `x:v2` manifest | sha256 of the body | `Docker-Content-Digest` | `Content-Type` |")?;
    writeln!(md, "|---|---|---|---|")?;
    for (k, d, dcd, ct) in r.served {
        writeln!(md, "| {} | `{d}` | `{dcd}` | `{ct}` |", k.name())?;
    }
    writeln!(md, "\nThe fixture's manifest is `{}`.\n", r.img.manifest.0)?;

    // 1.
    writeln!(md, "### 1. One blob GET of the biggest layer\n")?;
    writeln!(
        md,
        "`curl -s -o /dev/null -w '%{{http_code}} %{{size_download}} %{{time_total}}' \
         http://127.0.0.1:PORT/v2/x/blobs/{}` ({}), whole-process wall time (fork to reap, under `/usr/bin/time`); \
         MB/s = layer bytes / that wall time. *curl s* is curl's own `time_total`. HTTP 200 and the full length are \
         checked.\n",
        r.biggest.0,
        mb(r.biggest.1)
    )?;
    writeln!(md, "| rep | server | wall s | MB/s | curl s | curl MB/s | curl CPU s | server CPU s | other CPU s |")?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for g in r.gets {
        writeln!(
            md,
            "| {} | {} | {:.3} | {:.0} | {:.3} | {:.0} | {:.2} | {:.2} | {:.2} |",
            g.rep,
            g.kind.name(),
            g.m.wall,
            g.bytes as f64 / g.m.wall / 1e6,
            g.curl_s,
            g.bytes as f64 / g.curl_s / 1e6,
            g.m.cpu(),
            g.server_cpu,
            (g.m.others - g.server_cpu).max(0.0)
        )?;
    }
    let gk = |g: &Get| g.kind;
    let gmbs = |g: &Get| g.bytes as f64 / g.m.wall / 1e6;
    let (fm, rm) = (
        med(r.gets, Kind::Ferry, gk, gmbs),
        med(r.gets, Kind::Registry, gk, gmbs),
    );
    let cmbs = |g: &Get| g.bytes as f64 / g.curl_s / 1e6;
    let (fc, rc) = (
        med(r.gets, Kind::Ferry, gk, cmbs),
        med(r.gets, Kind::Registry, gk, cmbs),
    );
    let scpu = |g: &Get| g.server_cpu;
    writeln!(
        md,
        "\n| median of {reps} | ferry serve | docker-registry | ferry / registry |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(
        md,
        "| **MB/s (whole curl process)** | **{fm:.0}** | **{rm:.0}** | **{:.2}x** |",
        fm / rm
    )?;
    writeln!(
        md,
        "| MB/s (curl time_total) | {fc:.0} | {rc:.0} | {:.2}x |",
        fc / rc
    )?;
    writeln!(
        md,
        "| server CPU s | {:.2} | {:.2} | {:.2}x |",
        med(r.gets, Kind::Ferry, gk, scpu),
        med(r.gets, Kind::Registry, gk, scpu),
        med(r.gets, Kind::Ferry, gk, scpu) / med(r.gets, Kind::Registry, gk, scpu)
    )?;
    writeln!(
        md,
        "\nTarget: ferry >= {TARGET_GET_RATIO}x docker-registry → **{}** ({:.2}x, medians).\n",
        verdict(fm / rm >= TARGET_GET_RATIO),
        fm / rm
    )?;

    // 1b.
    writeln!(md, "### 1b. The same GET, cold: the layer re-created\n")?;
    writeln!(
        md,
        "Ferry stores a gzip layer as its raw tar (chunked and deduplicated) and re-creation data, and keeps \
         re-created layers in a bounded cache (`STORE/cache/gzip`); the GETs above are warm, served from that cache. \
         Here the cache is emptied before each GET, so ferry re-creates the {} layer (re-compressing the raw tar \
         with the producer's decisions and checking its SHA-256) before the first byte goes out. The same curl \
         command, the same server process.\n",
        mb(r.biggest.1)
    )?;
    writeln!(md, "| rep | wall s | MB/s | server CPU s | other CPU s |")?;
    writeln!(md, "|---|---:|---:|---:|---:|")?;
    for g in r.cold {
        writeln!(
            md,
            "| {} | {:.3} | {:.0} | {:.2} | {:.2} |",
            g.rep,
            g.m.wall,
            g.bytes as f64 / g.m.wall / 1e6,
            g.server_cpu,
            (g.m.others - g.server_cpu).max(0.0)
        )?;
    }
    let cm = median(&r.cold.iter().map(gmbs).collect::<Vec<_>>());
    let cw = median(&r.cold.iter().map(|g| g.m.wall).collect::<Vec<_>>());
    writeln!(
        md,
        "\nMedian cold read {cm:.0} MB/s ({cw:.2} s for the layer): {:.2}x ferry's warm read, {:.2}x \
         docker-registry's. No target; it is the price of the first pull of a layer after a sync or import, or \
         after the cache (`recreate_cache_bytes`, 4 GiB by default) dropped it.\n",
        cm / fm,
        cm / rm
    )?;

    // 2.
    writeln!(md, "### 2. `skopeo copy` of the whole image\n")?;
    writeln!(
        md,
        "`skopeo copy --src-tls-verify=false docker://127.0.0.1:PORT/x:v2 oci:DIR:v2` into a fresh DIR, wall time \
         (fork to reap). Afterwards the copy's layers are checked against the fixture's and each is hashed (sha256). \
         *sync s* is the `sync` right after (writeback of the {} skopeo wrote; not in the wall time).\n",
        mb(r.image_bytes)
    )?;
    writeln!(md, "| rep | server | wall s | MB/s | sync s | skopeo CPU s | skopeo peak RSS MiB | server CPU s | other CPU s |")?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for c in r.copies {
        writeln!(
            md,
            "| {} | {} | {:.3} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} |",
            c.rep,
            c.kind.name(),
            c.m.wall,
            r.image_bytes as f64 / c.m.wall / 1e6,
            c.sync_s,
            c.m.cpu(),
            c.m.max_rss_kib as f64 / 1024.0,
            c.server_cpu,
            (c.m.others - c.server_cpu).max(0.0)
        )?;
    }
    let ck = |c: &Copy| c.kind;
    let (fw, rw) = (
        med(r.copies, Kind::Ferry, ck, |c| c.m.wall),
        med(r.copies, Kind::Registry, ck, |c| c.m.wall),
    );
    let (fs_, rs_) = (
        med(r.copies, Kind::Ferry, ck, |c| c.server_cpu),
        med(r.copies, Kind::Registry, ck, |c| c.server_cpu),
    );
    writeln!(
        md,
        "\n| median of {reps} | ferry serve | docker-registry | ferry / registry |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(
        md,
        "| **wall s** | **{fw:.3}** | **{rw:.3}** | **{:.2}x** |",
        fw / rw
    )?;
    writeln!(
        md,
        "| server CPU s | {fs_:.2} | {rs_:.2} | {:.2}x |",
        fs_ / rs_
    )?;
    writeln!(
        md,
        "\nTarget: ferry wall <= {TARGET_COPY_RATIO}x docker-registry → **{}** ({:.2}x, medians).\n",
        verdict(fw / rw <= TARGET_COPY_RATIO),
        fw / rw
    )?;

    // 3.
    writeln!(md, "### 3. {} concurrent pulls\n", r.pullers)?;
    writeln!(
        md,
        "Not {n} `skopeo copy` processes (on {} CPUs, {n} Go processes each writing {} to disk would measure skopeo \
         and the disk more than the server): {n} threads of this program (Rust, `reqwest` blocking, one client and \
         connection each), released together by a barrier, each pulling `x:v2` the way a client does — `GET \
         /v2/x/manifests/v2` (`Accept`: OCI and Docker v2 manifests), its layer list checked against the fixture's, \
         then `GET` of the config and of every layer in turn, each blob hashed with sha256 as it streams in and \
         checked against its digest and size; nothing is written to disk. An error is any failed request, non-2xx \
         status, short body or digest mismatch. Each run starts a fresh server process (the same store or data \
         dir) and reads its `VmHWM` (peak RSS) and `VmRSS` from `/proc/PID/status` after the last pull, before \
         SIGTERM. *wall s* is from the barrier to the last pull's end; MB/s = all bytes received / wall. The \
         pullers' sha256 runs in this process on the same CPUs as the server; *other CPU s* is the rest of the \
         machine (neither the server nor the pullers).\n",
        sh_line("nproc"),
        mb(r.image_bytes),
        n = r.pullers,
    )?;
    writeln!(md, "| rep | server | wall s | MB/s | errors | layers verified | server peak RSS (VmHWM) MiB | server RSS after MiB | server CPU s | other CPU s | exit on SIGTERM |")?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for p in r.pulls {
        writeln!(
            md,
            "| {} | {} | {:.2} | {:.0} | {} | {} / {} | {:.1} | {:.1} | {:.2} | {:.2} | {} |",
            p.rep,
            p.kind.name(),
            p.wall,
            p.bytes as f64 / p.wall / 1e6,
            p.errors.len(),
            p.layers_ok,
            r.pullers * r.img.layers.len(),
            mibk(p.hwm_kib),
            mibk(p.rss_after_kib),
            p.server_cpu,
            p.others,
            p.exit
        )?;
    }
    let errs: Vec<&String> = r
        .pulls
        .iter()
        .filter(|p| p.kind == Kind::Ferry)
        .flat_map(|p| &p.errors)
        .collect();
    let reg_errs = r
        .pulls
        .iter()
        .filter(|p| p.kind == Kind::Registry)
        .map(|p| p.errors.len())
        .sum::<usize>();
    for p in r.pulls.iter().filter(|p| !p.errors.is_empty()) {
        let mut distinct: Vec<&String> = p.errors.iter().collect();
        distinct.sort();
        distinct.dedup();
        writeln!(
            md,
            "\n{} rep {} errors ({} distinct, first 3):",
            p.kind.name(),
            p.rep,
            distinct.len()
        )?;
        for e in distinct.iter().take(3) {
            writeln!(md, "- `{e}`")?;
        }
    }
    let pk = |p: &Pulls| p.kind;
    let max_hwm = |k: Kind| {
        r.pulls
            .iter()
            .filter(|p| p.kind == k)
            .map(|p| mibk(p.hwm_kib))
            .fold(0.0, f64::max)
    };
    let (fpw, rpw) = (
        med(r.pulls, Kind::Ferry, pk, |p| p.wall),
        med(r.pulls, Kind::Registry, pk, |p| p.wall),
    );
    let (fh, rh) = (
        med(r.pulls, Kind::Ferry, pk, |p| mibk(p.hwm_kib)),
        med(r.pulls, Kind::Registry, pk, |p| mibk(p.hwm_kib)),
    );
    let (fcpu, rcpu) = (
        med(r.pulls, Kind::Ferry, pk, |p| p.server_cpu),
        med(r.pulls, Kind::Registry, pk, |p| p.server_cpu),
    );
    let total = |k: Kind| {
        r.pulls
            .iter()
            .filter(|p| p.kind == k)
            .map(|p| p.bytes)
            .sum::<u64>()
            / r.pulls.iter().filter(|p| p.kind == k).count().max(1) as u64
    };
    writeln!(
        md,
        "\n| median of {reps} | ferry serve | docker-registry | ferry / registry |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(md, "| wall s | {fpw:.2} | {rpw:.2} | {:.2}x |", fpw / rpw)?;
    writeln!(
        md,
        "| MB/s | {:.0} | {:.0} | {:.2}x |",
        total(Kind::Ferry) as f64 / fpw / 1e6,
        total(Kind::Registry) as f64 / rpw / 1e6,
        rpw / fpw
    )?;
    writeln!(
        md,
        "| server CPU s | {fcpu:.2} | {rcpu:.2} | {:.2}x |",
        fcpu / rcpu
    )?;
    writeln!(
        md,
        "| **server peak RSS MiB** (max of {reps}) | **{:.1}** | {:.1} | {:.2}x |",
        max_hwm(Kind::Ferry),
        max_hwm(Kind::Registry),
        max_hwm(Kind::Ferry) / max_hwm(Kind::Registry)
    )?;
    writeln!(md, "| server peak RSS MiB (median) | {fh:.1} | {rh:.1} | |")?;
    writeln!(
        md,
        "| **errors** (all reps) | **{}** | {reg_errs} | |",
        errs.len()
    )?;
    let ferry_pulls_ok = r
        .pulls
        .iter()
        .filter(|p| p.kind == Kind::Ferry)
        .all(|p| p.errors.is_empty() && p.layers_ok == r.pullers * r.img.layers.len());
    writeln!(
        md,
        "\nTargets: no errors and every layer verified → **{}**; ferry serve peak RSS <= {TARGET_RSS_MIB} MiB → **{}** ({:.1} MiB, the largest of {reps} runs; docker-registry {:.1} MiB).\n",
        verdict(ferry_pulls_ok),
        verdict(max_hwm(Kind::Ferry) <= TARGET_RSS_MIB),
        max_hwm(Kind::Ferry),
        max_hwm(Kind::Registry)
    )?;
    let hw: Vec<String> = r
        .hwm12
        .iter()
        .map(|(k, h)| format!("{} {:.1} MiB", k.name(), mibk(*h)))
        .collect();
    let ex: Vec<String> = r
        .exits
        .iter()
        .map(|(k, e)| format!("{} {e}", k.name()))
        .collect();
    writeln!(
        md,
        "The servers of parts 1 and 2 (one process each for all their runs): VmHWM at the end {}; on SIGTERM: {}.\n",
        hw.join(", "),
        ex.join(", ")
    )?;
    Ok(())
}
