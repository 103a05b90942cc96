//! `ferry-bench` — benchmarks run by hand (never in CI): Ferry side by side with the real alternative, on
//! real data, in the same run, reported as ratios.
//!
//! `ferry-bench core --work DIR` measures the three core targets:
//! 1. ingest throughput of `ferry add file:` vs `casync make` (same chunk sizes, casync's default zstd);
//! 2. store growth when image v2 = v1 + one layer, vs that layer compressed with `zstd -3` (and its gzip size);
//! 3. peak RSS ingesting a 2 GiB file, next to `casync make` on the same file.
//!
//! `ferry-bench bundle --work DIR` measures sneakernet bundles (see `bundle.rs`): bytes across the gap for an
//! image v1 → v2 next to the layer delta, casync and `zstd --patch-from`, and verify/import speed and memory next
//! to `cat` and `zstd -dc` of the volumes.
//!
//! `ferry-bench serve --work DIR` measures `ferry serve` as an OCI registry (see `serve.rs`) next to Debian's
//! `docker-registry` serving the same image: one blob GET, `skopeo copy` of the image, and 64 concurrent pulls
//! (errors, every layer's sha256, the server's peak RSS).
//!
//! `ferry-bench sync --work DIR` measures network sync (see `netsync/`, issue 21): a fat image between two nodes
//! on loopback next to `skopeo copy` between two docker-registries, a 100 Mbit/s link with added delay next to
//! iperf3, N sites behind one seed link next to one alone, the peak RSS of a node syncing a million chunks, and
//! a soak of hundreds of syncs (opt-in: a tree next to curl, a version update next to its bundle). It makes and
//! removes its own network namespaces.
//!
//! `ferry-bench gzip --work DIR` measures compressed artifacts (see `gzip.rs`): a corpus of real gzip version
//! pairs (`tools/fixtures/gzip-corpus.sh`), Ferry's bundle delta next to the layer-level delta and
//! `zstd --patch-from` on the raw streams, and the ingest cost of `ferry add` (the plain-ingest baseline).
//!
//! `ferry-bench delta --work DIR [--before FERRY_BIN] [--fat DIR]` measures delta transport (see `delta.rs`): a
//! corpus of real version pairs (`tools/fixtures/delta-pairs.sh`), the bundle by Ferry before and now next to the
//! whole artifact, the layer-level delta and `zstd --patch-from` on the decompressed content; import speed, export
//! memory, and (`--only sync`) network sync of the same updates.
//!
//! `ferry-bench hardening --work DIR` measures `ferry serve` under attack (see `hardening.rs`): a pull next to
//! 5,000 half-open connections and deep-path requests against the same pull on an idle node, and the node's peak
//! RSS through a gzip bomb push and 64 concurrent pulls.
//!
//! Each prints a markdown section on stdout; `--write docs/benchmarks.md` also replaces its own marked section
//! there.

mod bundle;
mod closure;
mod delta;
mod fat;
mod fixtures;
mod formats;
mod gc;
mod gzip;
mod hardening;
mod measure;
mod netsync;
mod serve;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;

use fixtures::{blob_path, Fixtures, OciImage, BIG_FILE_BYTES, BULK_PKGS, LAYER_PKGS};
use measure::{median, sync, tree_size, warm, Cmd, Measured};

const BEGIN: &str = "<!-- BEGIN ferry-bench core (generated; edit outside these markers) -->";
const END: &str = "<!-- END ferry-bench core -->";

/// casync's chunk sizes, min:avg:max — the same as Ferry's defaults (FastCDC 16/64/256 KiB).
const CASYNC_CHUNKS: &str = "--chunk-size=16K:64K:256K";

const TARGET_SPEEDUP: f64 = 3.0;
/// How long ext4 avoids reusing freed inodes (`recently_deleted`: up to 300 s when the inode table is dirty).
const INODE_RECENTCY: std::time::Duration = std::time::Duration::from_secs(300);
/// A run is "noisy" when the rest of the machine used more than this many CPUs on average during it.
const NOISY_CPUS: f64 = 0.25;
const TARGET_GROWTH: f64 = 1.05;
const TARGET_RSS_MIB: f64 = 256.0;

#[derive(Parser)]
#[command(
    name = "ferry-bench",
    about = "Benchmarks run by hand: Ferry side by side with the real alternatives"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(Subcommand)]
enum Sub {
    /// Measure the three core targets (ingest speed vs casync, store growth, peak RSS).
    Core(CoreArgs),
    /// Measure sneakernet bundles: bytes across the gap, verify and import speed and memory.
    Bundle(bundle::BundleArgs),
    /// Measure `ferry serve` next to docker-registry: blob GET, skopeo copy, concurrent pulls and server memory.
    Serve(serve::ServeArgs),
    /// Measure network sync (issue 21): a fat image on loopback vs skopeo between two registries, a 100 Mbit/s
    /// delayed link vs iperf3, N sites behind one seed link, a million-chunk release's peak RSS, a soak.
    Sync(netsync::SyncArgs),
    /// Measure compressed artifacts on a corpus of real gzip version pairs: bundle delta vs layer-level delta and
    /// `zstd --patch-from`, and the ingest cost of `ferry add`.
    Gzip(gzip::GzipArgs),
    /// Measure garbage collection next to `docker-registry garbage-collect`: time, and bytes left against a fresh
    /// store holding only what was kept.
    Gc(gc::GcArgs),
    /// Real delivery sizes (issue 17): fat images, the first pull at a site, the store, a soak.
    Fat(fat::FatArgs),
    /// Delta transport (issue 18) on real version pairs: bundle bytes before and now next to the layer-level
    /// delta and `zstd --patch-from`, import speed, export memory, and network sync of the same updates.
    Delta(delta::DeltaArgs),
    /// Package formats (issue 19): how much of each compressed format Ferry re-creates, and the cost of
    /// ingesting and re-creating it next to the format's own decompressor on the same files.
    Formats(formats::FormatsArgs),
    /// Hardening (issue 20): a pull while 5,000 half-open connections and deep-path requests run, next to the
    /// same pull on an idle node; peak RSS through a gzip bomb push and 64 concurrent pulls.
    Hardening(hardening::HardeningArgs),
    /// Partial mirrors (issue 22): resolving the dependency closure of 50 packages over Debian's whole
    /// bookworm main/amd64 index with `ferry add --plan`, next to apt-get resolving the same over the same index.
    Closure(closure::ClosureArgs),
    /// Only build (or check) the fixtures under WORK/fixtures.
    Fixtures {
        #[arg(long)]
        work: PathBuf,
        /// Debian mirror for debootstrap (default: the host's apt source for bookworm).
        #[arg(long)]
        mirror: Option<String>,
    },
}

#[derive(clap::Args)]
struct CoreArgs {
    /// Working directory: fixtures are cached in WORK/fixtures, stores are made in WORK/runs.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary (default: target/release/ferry of this workspace).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// Repetitions of the ingest comparison (fresh stores each time).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also write the results into FILE between the ferry-bench markers (appended if absent).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Which targets to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ingest,growth,rss"
    )]
    only: Vec<Target>,
    /// Debian mirror for debootstrap (default: the host's apt source for bookworm).
    #[arg(long)]
    mirror: Option<String>,
    /// Before each measured run, wait up to SECS for other work on the machine to calm down.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    quiet_wait: u64,
    /// Keep the stores made in WORK/runs/TIMESTAMP (deleted at the end otherwise).
    #[arg(long)]
    keep_stores: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Ingest,
    Growth,
    Rss,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().cmd {
        Sub::Fixtures { work, mirror } => {
            let fx = Fixtures::new(&work, mirror)?;
            for p in [fx.ingest_tar()?, fx.oci()?, fx.big_file()?] {
                eprintln!("ferry-bench: ready: {}", p.display());
            }
            Ok(())
        }
        Sub::Core(args) => core(args),
        Sub::Bundle(args) => bundle::run(args),
        Sub::Serve(args) => serve::run(args),
        Sub::Sync(args) => netsync::run(args),
        Sub::Gzip(args) => gzip::run(args),
        Sub::Gc(args) => gc::run(args),
        Sub::Fat(args) => fat::run(args),
        Sub::Delta(args) => delta::run(args),
        Sub::Formats(args) => formats::run(args),
        Sub::Hardening(args) => hardening::run(args),
        Sub::Closure(args) => closure::run(args),
    }
}

struct Bench {
    ferry: PathBuf,
    /// The binary's original path and build time, for the report.
    ferry_label: String,
    quiet_wait: u64,
    /// WORK (canonical): fixtures live in WORK/fixtures.
    work: PathBuf,
    runs: PathBuf,
}

impl Bench {
    /// What every measuring subcommand does first: checks that `tools` are installed, copies the ferry binary
    /// into a new run directory `WORK/runs/TIMESTAMP` (so a rebuild of target/release/ferry during the run, or
    /// another ferry-bench invocation, cannot change what is measured), and keeps invocations five minutes
    /// apart (ext4 inode recency, see below).
    fn setup(
        work: &Path,
        ferry: Option<PathBuf>,
        quiet_wait: u64,
        tools: &[&str],
    ) -> Result<Bench> {
        for tool in tools {
            if Cmd::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .output()
                .is_err()
            {
                bail!("{tool} is not installed");
            }
        }
        let ferry = match ferry {
            Some(p) => p,
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/ferry"),
        };
        let ferry = ferry
            .canonicalize()
            .with_context(|| format!("no ferry binary at {}", ferry.display()))?;
        fs::create_dir_all(work)?;
        let work = work.canonicalize()?;
        // Nothing is deleted while measuring: ext4 skips recently freed inodes when allocating (for up to 5
        // minutes), and deleting one casync store (a file per chunk) right before the next casync run made that
        // run spend many seconds of system time scanning inode tables. Every store of this run lives under a new
        // directory, deleted at the end.
        let runs_root = work.join("runs");
        let stamp = Cmd::new("date").arg("+%Y%m%dT%H%M%S").output()?;
        let runs = runs_root.join(stamp.trim());
        if runs.exists() {
            bail!(
                "{} exists (another invocation this second?)",
                runs.display()
            );
        }
        fs::create_dir_all(&runs)?;
        // Measure a private copy, inside this run's directory.
        let copy = runs.join("ferry-under-test");
        fs::copy(&ferry, &copy)
            .with_context(|| format!("copy {} to {}", ferry.display(), copy.display()))?;
        let ferry_label = format!("{}, {}", ferry.display(), modified(&ferry));
        eprintln!("ferry-bench: measuring a copy of {ferry_label}");
        let cleaned = runs_root.join(".cleaned");
        if let Some(age) = fs::metadata(&cleaned)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
        {
            if age < INODE_RECENTCY {
                let wait = INODE_RECENTCY - age;
                eprintln!(
                    "ferry-bench: the last run deleted its stores {} s ago; waiting {} s more (ext4 inode recency)",
                    age.as_secs(),
                    wait.as_secs()
                );
                std::thread::sleep(wait);
            }
        }
        let leftovers = fs::read_dir(&runs_root)?
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
            - 1;
        if leftovers > 0 {
            eprintln!(
                "ferry-bench: note: {leftovers} other run dir(s) in {} (--keep-stores, interrupted or concurrent runs)",
                runs_root.display()
            );
        }
        Ok(Bench {
            ferry: copy,
            ferry_label,
            quiet_wait,
            work,
            runs,
        })
    }

    /// Deletes this run's directory (unless `keep`) and notes the time for the next invocation.
    fn finish(&self, keep: bool) -> Result<()> {
        if keep {
            eprintln!("ferry-bench: stores kept in {}", self.runs.display());
            return Ok(());
        }
        fs::remove_dir_all(&self.runs)
            .with_context(|| format!("remove {}", self.runs.display()))?;
        let cleaned = self.work.join("runs/.cleaned");
        let _ = fs::remove_file(&cleaned);
        fs::write(&cleaned, b"")?;
        Ok(())
    }
}

fn core(args: CoreArgs) -> Result<()> {
    let bench = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &[
            "/usr/bin/time",
            "casync",
            "zstd",
            "gzip",
            "tar",
            "umoci",
            "dpkg-deb",
            "debootstrap",
        ],
    )?;
    let fx = Fixtures::new(&bench.work, args.mirror.clone())?;

    // Build every fixture first, so that the measurements run back to back.
    let ingest_tar = args
        .only
        .contains(&Target::Ingest)
        .then(|| fx.ingest_tar())
        .transpose()?;
    let oci = args
        .only
        .contains(&Target::Growth)
        .then(|| fx.oci())
        .transpose()?;
    let big = args
        .only
        .contains(&Target::Rss)
        .then(|| fx.big_file())
        .transpose()?;

    let mut md = String::new();
    environment(&mut md, &bench, "Results")?;
    if let Some(tar) = ingest_tar {
        ingest(&mut md, &bench, &tar, args.reps.max(1))?;
    }
    if let Some(oci) = oci {
        growth(&mut md, &bench, &oci)?;
    }
    if let Some(big) = big {
        rss(&mut md, &bench, &big)?;
    }
    bench.finish(args.keep_stores)?;
    publish(&md, args.write.as_deref(), BEGIN, END)
}

// ---------------------------------------------------------------------------------------------------------------
// The tools under test

impl Bench {
    /// A fresh directory for one run, emptied first.
    fn fresh(&self, name: &str) -> Result<PathBuf> {
        let d = self.runs.join(name);
        if d.exists() {
            bail!("{} exists", d.display());
        }
        fs::create_dir_all(&d)?;
        Ok(d)
    }

    fn ferry(&self, store: &Path) -> Cmd {
        Cmd::new(&self.ferry)
            .env("FERRY_STORE", store)
            .env_remove_log()
    }

    fn ferry_init(&self, store: &Path) -> Result<()> {
        self.ferry(store).arg("init").output().map(drop)
    }

    /// `ferry add --json RELEASE SOURCE`, measured; returns the run and its JSON report.
    fn ferry_add(&self, store: &Path, release: &str, source: &str) -> Result<(Measured, Value)> {
        let m = self
            .ferry(store)
            .args(["add", "--json", release, source])
            .measure()?;
        let v: Value = serde_json::from_str(m.stdout.trim())
            .with_context(|| format!("ferry add --json printed {:?}", m.stdout))?;
        Ok((m, v))
    }

    fn ferry_fsck(&self, store: &Path) -> Result<Value> {
        let out = self.ferry(store).args(["fsck", "--json"]).output()?;
        let v: Value = serde_json::from_str(out.trim())
            .with_context(|| format!("fsck --json printed {out:?}"))?;
        if v["ok"] != Value::Bool(true) {
            bail!("ferry fsck found problems: {}", v["problems"]);
        }
        Ok(v)
    }

    fn casync_make(&self, dir: &Path, input: &Path) -> Result<Measured> {
        Cmd::new("casync")
            .arg("make")
            .arg(format!("--store={}", dir.join("store.castr").display()))
            .arg(CASYNC_CHUNKS)
            .arg(dir.join("index.caibx"))
            .arg(input)
            .measure()
    }
}

trait CmdExt {
    fn env_remove_log(self) -> Self;
}

impl CmdExt for Cmd {
    /// Tracing off whatever the caller's environment says: logging is not what is measured.
    fn env_remove_log(self) -> Self {
        self.env("RUST_LOG", "warn")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Ferry,
    Casync,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Ferry => "ferry add",
            Tool::Casync => "casync make",
        }
    }
}

/// One measured ingest.
struct Ingest {
    tool: Tool,
    rep: usize,
    m: Measured,
    /// Seconds `sync` took right after the run: the writeback it left behind.
    sync_s: f64,
    chunks: u64,
    store_disk: u64,
}

/// Runs one tool on `input` in a fresh store and measures it.
fn ingest_once(b: &Bench, tool: Tool, rep: usize, input: &Path, name: &str) -> Result<Ingest> {
    let dir = b.fresh(&format!(
        "{name}-{}-{rep}",
        if tool == Tool::Ferry {
            "ferry"
        } else {
            "casync"
        }
    ))?;
    let store = dir.join("store");
    if tool == Tool::Ferry {
        b.ferry_init(&store)?;
    }
    warm(input)?;
    sync()?;
    measure::wait_quiet(b.quiet_wait)?;
    eprintln!("ferry-bench: {name} rep {rep}: {}", tool.name());
    let (m, chunks, store_path) = match tool {
        Tool::Ferry => {
            let (m, v) = b.ferry_add(
                &store,
                &format!("{name}@{rep}"),
                &format!("file:{}", input.display()),
            )?;
            (m, v["chunks"].as_u64().unwrap_or(0), store.clone())
        }
        Tool::Casync => {
            let m = b.casync_make(&dir, input)?;
            let castr = dir.join("store.castr");
            let chunks = walkdir::WalkDir::new(&castr)
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "cacnk"))
                .count() as u64;
            (m, chunks, castr)
        }
    };
    let sync_s = sync()?;
    let (_, store_disk, _) = tree_size(&store_path)?;
    eprintln!(
        "ferry-bench:   {:.2} s wall, {:.2} s sync, {} MiB peak RSS",
        m.wall,
        sync_s,
        m.max_rss_kib / 1024
    );
    Ok(Ingest {
        tool,
        rep,
        m,
        sync_s,
        chunks,
        store_disk,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Target 1: ingest throughput

fn ingest(md: &mut String, b: &Bench, tar: &Path, reps: usize) -> Result<()> {
    let bytes = fs::metadata(tar)?.len();
    let mut all = Vec::new();
    for rep in 0..reps {
        // Alternate which tool goes first, so drift in the machine's state hits both alike.
        let order = if rep % 2 == 0 {
            [Tool::Ferry, Tool::Casync]
        } else {
            [Tool::Casync, Tool::Ferry]
        };
        for tool in order {
            all.push(ingest_once(b, tool, rep, tar, "ingest")?);
        }
    }
    let mbs = |s: f64| bytes as f64 / s / 1e6;

    writeln!(
        md,
        "### 1. Ingest throughput: `ferry add file:` vs `casync make`\n"
    )?;
    writeln!(
        md,
        "Input: `fixtures/ingest.tar`, {} ({bytes} bytes) — an uncompressed tar of a `debootstrap --variant=minbase \
         bookworm` rootfs and {} real `.deb` files. Fresh store per run, input in the page cache, `sync` before \
         each run. casync: `casync make --store=S {CASYNC_CHUNKS} I.caibx ingest.tar` (default zstd compression, \
         sha512-256); ferry: `ferry init` defaults (FastCDC 16/64/256 KiB, zstd level 3), `ferry add --json \
         ingest@N file:ingest.tar`. *sync s* is the `sync` right after the run (writeback left behind); *other CPU s* is what the rest of the \
         machine used meanwhile (from /proc/stat) — noise.\n",
        mb(bytes),
        BULK_PKGS.len() + LAYER_PKGS.len()
    )?;
    writeln!(md, "| rep | tool | wall s | sync s | MB/s | MB/s incl. sync | CPU s (user+sys) | CPU/wall | peak RSS MiB | distinct chunks | avg chunk KiB | store on disk | other CPU s |")?;
    writeln!(
        md,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for r in &all {
        writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} ({:.2}+{:.2}) | {:.2} | {:.0} | {} | {:.1} | {} | {:.1} |",
            r.rep,
            r.tool.name(),
            r.m.wall,
            r.sync_s,
            mbs(r.m.wall),
            mbs(r.m.wall + r.sync_s),
            r.m.cpu(),
            r.m.user,
            r.m.sys,
            r.m.cpu() / r.m.wall,
            r.m.max_rss_kib as f64 / 1024.0,
            r.chunks,
            if r.chunks > 0 { bytes as f64 / r.chunks as f64 / 1024.0 } else { f64::NAN },
            mb(r.store_disk),
            r.m.others,
        )?;
    }
    let med = |tool: Tool, f: &dyn Fn(&Ingest) -> f64| {
        median(
            &all.iter()
                .filter(|r| r.tool == tool)
                .map(f)
                .collect::<Vec<_>>(),
        )
    };
    let (fw, cw) = (
        med(Tool::Ferry, &|r| r.m.wall),
        med(Tool::Casync, &|r| r.m.wall),
    );
    let (fws, cws) = (
        med(Tool::Ferry, &|r| r.m.wall + r.sync_s),
        med(Tool::Casync, &|r| r.m.wall + r.sync_s),
    );
    let (fc, cc) = (
        med(Tool::Ferry, &|r| r.m.cpu()),
        med(Tool::Casync, &|r| r.m.cpu()),
    );
    let speedup = cw / fw;
    writeln!(
        md,
        "\n| median of {reps} | ferry | casync | ferry / casync speed |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(md, "| wall s | {fw:.2} | {cw:.2} | |")?;
    writeln!(
        md,
        "| **MB/s** | **{:.1}** | **{:.1}** | **{speedup:.2}x** |",
        mbs(fw),
        mbs(cw)
    )?;
    writeln!(
        md,
        "| MB/s incl. sync | {:.1} | {:.1} | {:.2}x |",
        mbs(fws),
        mbs(cws),
        cws / fws
    )?;
    writeln!(
        md,
        "| MB per CPU-second | {:.1} | {:.1} | {:.2}x |",
        mbs(fc),
        mbs(cc),
        cc / fc
    )?;
    let best = |tool: Tool| {
        all.iter()
            .filter(|r| r.tool == tool)
            .map(|r| r.m.wall)
            .fold(f64::INFINITY, f64::min)
    };
    let (fb, cb) = (best(Tool::Ferry), best(Tool::Casync));
    writeln!(
        md,
        "| best MB/s (shortest wall) | {:.1} | {:.1} | {:.2}x |",
        mbs(fb),
        mbs(cb),
        cb / fb
    )?;
    let quiet = |tool: Tool| -> Vec<f64> {
        all.iter()
            .filter(|r| r.tool == tool && r.m.others <= NOISY_CPUS * r.m.wall)
            .map(|r| r.m.wall)
            .collect()
    };
    let (fq, cq) = (quiet(Tool::Ferry), quiet(Tool::Casync));
    if !fq.is_empty() && !cq.is_empty() {
        writeln!(
            md,
            "| median MB/s, quiet runs only ({} ferry, {} casync) | {:.1} | {:.1} | {:.2}x |",
            fq.len(),
            cq.len(),
            mbs(median(&fq)),
            mbs(median(&cq)),
            median(&cq) / median(&fq)
        )?;
    }
    writeln!(
        md,
        "\nTarget: ferry >= {TARGET_SPEEDUP}x casync → **{}** ({speedup:.2}x, medians). A run is *quiet* when \
         the rest of the machine used less than {NOISY_CPUS} CPU on average during it.\n",
        verdict(speedup >= TARGET_SPEEDUP)
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Target 2: store growth for v2 = v1 + one layer

fn growth(md: &mut String, b: &Bench, oci: &Path) -> Result<()> {
    let v1 = OciImage::load(oci, "v1")?;
    let v2 = OciImage::load(oci, "v2")?;
    let new: Vec<&(String, u64)> = v2
        .layers
        .iter()
        .filter(|l| !v1.layers.contains(l))
        .collect();
    let shared = v2.layers.len() - new.len();
    if new.len() != 1 || shared != v1.layers.len() {
        bail!(
            "v2 should be v1 plus one layer: v1 {} layers, v2 {}, new {}",
            v1.layers.len(),
            v2.layers.len(),
            new.len()
        );
    }
    let (digest, gz_bytes) = new[0].clone();
    let layer = blob_path(oci, &digest);
    eprintln!("ferry-bench: growth: measuring the new layer {digest}");
    let tar_bytes = measure::pipeline_bytes(&[Cmd::new("gzip").arg("-dc").arg(&layer)])?;
    let zstd_bytes = measure::pipeline_bytes(&[
        Cmd::new("gzip").arg("-dc").arg(&layer),
        Cmd::new("zstd").args(["-3", "-c", "-q"]),
    ])?;
    let v1_gz: u64 = v1.layers.iter().map(|l| l.1).sum();

    let dir = b.fresh("growth")?;
    let store = dir.join("store");
    b.ferry_init(&store)?;
    sync()?;
    let source = |tag: &str| format!("oci:{}:{tag}", oci.display());
    eprintln!("ferry-bench: growth: ferry add x@1 {}", source("v1"));
    measure::wait_quiet(b.quiet_wait)?;
    let (m1, a1) = b.ferry_add(&store, "x@1", &source("v1"))?;
    let f1 = b.ferry_fsck(&store)?;
    let (_, disk1, _) = tree_size(&store)?;
    eprintln!("ferry-bench: growth: ferry add x@2 {}", source("v2"));
    sync()?;
    measure::wait_quiet(b.quiet_wait)?;
    let (m2, a2) = b.ferry_add(&store, "x@2", &source("v2"))?;
    let f2 = b.ferry_fsck(&store)?;
    let (_, disk2, _) = tree_size(&store)?;

    let p1 = f1["pack_bytes"]
        .as_u64()
        .context("fsck --json without pack_bytes")?;
    let p2 = f2["pack_bytes"]
        .as_u64()
        .context("fsck --json without pack_bytes")?;
    let grow = p2.saturating_sub(p1);
    let ratio_zstd = grow as f64 / zstd_bytes as f64;
    let ratio_gz = grow as f64 / gz_bytes as f64;

    writeln!(md, "### 2. Store growth: v2 = v1 + one layer\n")?;
    writeln!(
        md,
        "Image (umoci, OCI layout `fixtures/oci`): `v1` = the minbase rootfs in one layer; `v2` = v1 + one layer \
         holding {} unpacked with `dpkg-deb -x` (umoci repack; v1's layer is shared by digest). One store: \
         `ferry add x@1 oci:…:v1`, then `ferry add x@2 oci:…:v2`; *pack bytes* from `ferry fsck --json`. The \
         yardstick is the new layer's tar compressed on its own with `zstd -3` (Ferry's default level).\n",
        LAYER_PKGS.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
    )?;
    writeln!(md, "| | bytes |")?;
    writeln!(md, "|---|---:|")?;
    writeln!(md, "| v1 layer, gzip (umoci) | {} |", human(v1_gz))?;
    writeln!(md, "| store after x@1: pack bytes | {} |", human(p1))?;
    writeln!(
        md,
        "| store after x@1: whole store dir on disk | {} |",
        human(disk1)
    )?;
    writeln!(md, "| new layer, uncompressed tar | {} |", human(tar_bytes))?;
    writeln!(
        md,
        "| new layer, gzip (as in the image) | {} |",
        human(gz_bytes)
    )?;
    writeln!(md, "| new layer, `zstd -3` | {} |", human(zstd_bytes))?;
    writeln!(
        md,
        "| **growth of pack bytes for x@2** | **{}** |",
        human(grow)
    )?;
    writeln!(
        md,
        "| x@2 `stored_bytes_new` (ferry add --json) | {} |",
        json_bytes(&a2["stored_bytes_new"])
    )?;
    writeln!(
        md,
        "| growth of the whole store dir on disk | {} |",
        human(disk2.saturating_sub(disk1))
    )?;
    writeln!(
        md,
        "\nx@1: {} chunks, {} new, {:.2} s wall, peak RSS {:.0} MiB. x@2: {} chunks, {} new, {:.2} s wall, peak RSS {:.0} MiB.\n",
        a1["chunks"], a1["chunks_new"], m1.wall, m1.max_rss_kib as f64 / 1024.0,
        a2["chunks"], a2["chunks_new"], m2.wall, m2.max_rss_kib as f64 / 1024.0,
    )?;
    writeln!(md, "| ratio | value | target |")?;
    writeln!(md, "|---|---:|---|")?;
    writeln!(
        md,
        "| growth / zstd -3 of the new layer | **{ratio_zstd:.3}** | <= {TARGET_GROWTH} → **{}** |",
        verdict(ratio_zstd <= TARGET_GROWTH)
    )?;
    writeln!(md, "| growth / gzip of the new layer | {ratio_gz:.3} | |")?;
    writeln!(
        md,
        "| x@1 pack bytes / v1 gzip layer | {:.3} | |\n",
        p1 as f64 / v1_gz as f64
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Target 3: peak RSS on a 2 GiB file

fn rss(md: &mut String, b: &Bench, big: &Path) -> Result<()> {
    let bytes = fs::metadata(big)?.len();
    if bytes != BIG_FILE_BYTES {
        bail!("{} is {bytes} bytes, not {BIG_FILE_BYTES}", big.display());
    }
    let f = ingest_once(b, Tool::Ferry, 0, big, "big")?;
    let c = ingest_once(b, Tool::Casync, 0, big, "big")?;
    let mib = |r: &Ingest| r.m.max_rss_kib as f64 / 1024.0;
    writeln!(md, "### 3. Peak RSS ingesting a 2 GiB file\n")?;
    writeln!(
        md,
        "Input: `fixtures/big.bin`, exactly 2 GiB: the first 2 GiB of a tar of every `.deb` above unpacked \
         (`dpkg-deb -x`), the `.deb` files and the rootfs. Peak RSS is the child's `ru_maxrss` from `wait4` \
         (GNU `/usr/bin/time -f %M`). Fresh store each.\n"
    )?;
    writeln!(
        md,
        "| tool | peak RSS MiB | wall s | MB/s | CPU s | distinct chunks | store on disk | other CPU s |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for r in [&f, &c] {
        writeln!(
            md,
            "| {} | **{:.1}** | {:.2} | {:.1} | {:.2} | {} | {} | {:.1} |",
            r.tool.name(),
            mib(r),
            r.m.wall,
            bytes as f64 / r.m.wall / 1e6,
            r.m.cpu(),
            r.chunks,
            mb(r.store_disk),
            r.m.others
        )?;
    }
    writeln!(
        md,
        "\nTarget: ferry peak RSS <= {TARGET_RSS_MIB} MiB → **{}** ({:.1} MiB; casync {:.1} MiB).\n",
        verdict(mib(&f) <= TARGET_RSS_MIB),
        mib(&f),
        mib(&c)
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Report helpers

/// The run's header: `## TITLE`, when and by which command line, the machine, the binaries, the store config.
fn environment(md: &mut String, b: &Bench, title: &str) -> Result<()> {
    let sh = |c: &str| {
        Cmd::new("sh")
            .arg("-c")
            .arg(c)
            .output()
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into())
    };
    let ferry_version = Cmd::new(&b.ferry)
        .arg("--version")
        .output()
        .map(|s| s.trim().to_owned());
    // The store parameters actually in effect, from a throwaway store.
    let probe = b.fresh("probe")?;
    b.ferry_init(&probe.join("store"))?;
    let config = fs::read_to_string(probe.join("store/config.toml")).unwrap_or_else(|_| "?".into());
    writeln!(md, "## {title}\n")?;
    writeln!(
        md,
        "Run {} by `{}`.\n",
        sh("date -u +%Y-%m-%dT%H:%MZ"),
        command_line()
    )?;
    writeln!(
        md,
        "- machine: `nproc` = {}, {}, {} RAM, kernel {}",
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        sh("free -g | awk '/Mem:/{print $2 \" GiB\"}'"),
        sh("uname -r")
    )?;
    writeln!(
        md,
        "- ferry: {} ({})",
        b.ferry_label,
        ferry_version.unwrap_or_else(|_| "no --version".into())
    )?;
    writeln!(
        md,
        "- casync: {}; zstd: {}",
        sh("casync --version | head -1"),
        sh("zstd --version | grep -o 'v[0-9.]*'")
    )?;
    writeln!(
        md,
        "- ferry store config (`ferry init` defaults): `{}`\n",
        config
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("; ")
    )?;
    Ok(())
}

/// How this program was invoked, for the report (arguments with spaces quoted).
fn command_line() -> String {
    let mut args = std::env::args();
    let prog = args
        .next()
        .map(|p| {
            let p = Path::new(&p);
            match p.strip_prefix(std::env::current_dir().unwrap_or_default()) {
                Ok(rel) => rel.display().to_string(),
                Err(_) => p.display().to_string(),
            }
        })
        .unwrap_or_else(|| "ferry-bench".into());
    std::iter::once(prog)
        .chain(args.map(|a| {
            if a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

fn modified(p: &Path) -> String {
    Cmd::new("date")
        .arg("-u")
        .arg("+built %Y-%m-%dT%H:%MZ")
        .arg("-r")
        .arg(p)
        .output()
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn human(bytes: u64) -> String {
    format!("{bytes} ({:.2} MB)", bytes as f64 / 1e6)
}

fn json_bytes(v: &Value) -> String {
    v.as_u64().map(human).unwrap_or_else(|| v.to_string())
}

/// Prints the section, and with `write` also puts it between the markers in that file.
fn publish(md: &str, write: Option<&Path>, begin: &str, end: &str) -> Result<()> {
    print!("{md}");
    if let Some(doc) = write {
        write_section(doc, begin, end, md)?;
        eprintln!("ferry-bench: wrote {}", doc.display());
    }
    Ok(())
}

/// Replaces the text between the markers in `doc` (or appends the marked section).
fn write_section(doc: &Path, begin: &str, end: &str, body: &str) -> Result<()> {
    let old = fs::read_to_string(doc).unwrap_or_default();
    let section = format!("{begin}\n{body}{end}\n");
    let new = match (old.find(begin), old.find(end)) {
        (Some(a), Some(z)) if a < z => {
            let after = &old[z + end.len()..];
            format!(
                "{}{section}{}",
                &old[..a],
                after.strip_prefix('\n').unwrap_or(after)
            )
        }
        _ if old.is_empty() => section,
        _ => format!("{}\n{section}", old.trim_end()),
    };
    fs::write(doc, new).with_context(|| format!("write {}", doc.display()))
}
