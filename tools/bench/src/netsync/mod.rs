//! `ferry-bench sync --work DIR`: network sync (`ferry serve --p2p-listen …` and `ferry sync`), side by side in
//! the same run with the real alternative for each target (issue 21), reported as ratios.
//!
//! 1. *fat* (`image.rs`): two nodes on loopback, a site syncing an OCI image with one fat gzip layer (≥ 2 GB of
//!    tar, `tools/fixtures/fat-images.sh`): content bytes (a gzip layer counted as its tar) / wall time of
//!    `ferry sync`, next to `skopeo copy docker://A/… docker://B/…` between two Debian `docker-registry`s.
//! 2. *wan* (`wan.rs`): the seed behind a 100 Mbit/s link (tc tbf) and a relay adding N ms each way
//!    (`ferry-delay-relay`): ferry's throughput over the whole sync next to `iperf3 -R` through the same link and
//!    relay.
//! 3. *fanout* (`fanout.rs`): N site nodes behind one 100 Mbit/s seed link, started together, next to one site
//!    node alone: time ratio, the seed's transmitted bytes (`ip -s link`), and every node checked exact.
//! 4. *million* (`million.rs`): a release of about a million distinct chunks (a store with small chunks over
//!    real files) synced on loopback: the site node's peak RSS.
//! 5. *soak* (`soak.rs`): hundreds of small releases synced one after the other through one site node: its RSS
//!    after the first rounds and after all.
//!
//! Opt-in parts of the earlier runs: *loopback* (`loopback.rs`: a tree of 52k files next to `curl` from
//! `docker-registry`) and *delta* (`delta.rs`: a version update next to its bundle).
//!
//! `seed.rs` builds and caches the seed stores (WORK/fixtures/netsync/NAME); `node.rs` starts nodes, makes site
//! stores and reads sync reports. Namespaces are made and torn down with `ferry_tests::netns` (network sync's own
//! test harness). It prints a markdown section on stdout; `--write docs/benchmarks.md` also replaces its own
//! marked section there.

mod delta;
mod fanout;
mod image;
mod loopback;
mod million;
mod node;
mod seed;
mod soak;
mod wan;

pub(crate) use node::{allow, free_port, peer_id, synced, Node, Synced};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use crate::fixtures::Fixtures;
use crate::measure::Cmd;
use crate::{environment, write_section, Bench};

pub const BEGIN: &str = "<!-- BEGIN ferry-bench sync (generated; edit outside these markers) -->";
pub const END: &str = "<!-- END ferry-bench sync -->";

const LINK_MBIT: u32 = 100;
/// The port every node's planes use inside the namespaces (each host has its own address).
const P2P_PORT: u16 = 7701;
const IPERF_PORT: u16 = 5201;
const SYNC_TIMEOUT_S: u64 = 1800;
const START_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Part {
    Fat,
    Wan,
    Fanout,
    Million,
    Soak,
    Loopback,
    Delta,
}

/// What the wan part syncs.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum WanRelease {
    /// The fat image of the fat part (the default: what Ferry mostly carries).
    Fat,
    /// The Rust toolchain tree of the loopback part (52k files).
    Tree,
}

#[derive(clap::Args)]
pub struct SyncArgs {
    /// Working directory: seed stores are cached in WORK/fixtures/netsync, sites are made in WORK/runs.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary (default: target/release/ferry of this workspace).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// The delay relay (default: target/release/ferry-delay-relay of this workspace; `cargo build --release -p
    /// ferry-tests --bin ferry-delay-relay`).
    #[arg(long)]
    relay: Option<PathBuf>,
    /// What `tools/fixtures/fat-images.sh OUT` built (the fat part takes OUT/layout, tag v1).
    #[arg(
        long,
        value_name = "OUT",
        default_value = "/var/tmp/ferry-fixtures/fat"
    )]
    fat: PathBuf,
    /// The release the wan part syncs.
    #[arg(long, value_enum, default_value = "fat")]
    wan_release: WanRelease,
    /// The tree of the loopback part (`ferry add tree@1 dir:SOURCE`; ≥ 1 GB of real files); also the wan part's
    /// with `--wan-release tree`.
    #[arg(
        long,
        default_value = "/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu"
    )]
    source: PathBuf,
    /// The tree v1 of the delta part's version pair is made of (v2: a copy with some files changed).
    #[arg(long, default_value = "/usr/lib/gcc")]
    delta_source: PathBuf,
    /// The tree the fanout part's release is made of (a few hundred MB: N site stores hold it at once).
    #[arg(long, default_value = "/usr/lib/go-1.19")]
    fanout_source: PathBuf,
    /// Site nodes of the fanout part.
    #[arg(long, default_value_t = 20)]
    sites: usize,
    /// The fanout part's seed link, Mbit/s both ways. At the default, 20 nodes on two CPUs are bound by the CPUs
    /// rather than the link; a slower link shows the sharing where the link binds.
    #[arg(long, default_value_t = LINK_MBIT)]
    fanout_mbit: u32,
    /// The tree the million part's release is made of, cut into small chunks (the default, two Rust toolchains,
    /// stable and nightly, made 1,500,269 distinct chunks of 256/1K/4K here).
    #[arg(long, default_value = "/root/.rustup/toolchains")]
    million_source: PathBuf,
    /// The million part's chunk sizes, MIN,AVG,MAX (as `ferry init --min-chunk/--avg-chunk/--max-chunk` take them).
    #[arg(long, value_delimiter = ',', default_value = "256,1K,4K")]
    million_chunks: Vec<String>,
    /// Where the soak part's small releases come from: one regular file (16 KiB–1 MiB) of this tree each, in path
    /// order.
    #[arg(long, default_value = "/usr/lib/x86_64-linux-gnu")]
    soak_source: PathBuf,
    /// Syncs of the soak part (default 500; 60 with --small).
    #[arg(long)]
    soak_rounds: Option<usize>,
    /// The soak part compares the RSS after all rounds with the RSS after this many (default 50; 10 with --small).
    #[arg(long)]
    soak_first: Option<usize>,
    /// A smoke test in minutes: a 50 MB image of this host's /usr (WORK/fixtures/oci-usr) in place of the fat
    /// one, /usr/lib/python3.11 in place of the fanout and million trees, 60 soak rounds.
    #[arg(long)]
    small: bool,
    /// Repetitions of each timed run (medians reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Delays (ms each way) for the wan part; round trips grow by twice each.
    #[arg(long, value_delimiter = ',', default_value = "20")]
    delays: Vec<u32>,
    /// Which parts to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "fat,wan,fanout,million,soak"
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

/// The trees used in --small runs.
const SMALL_TREE: &str = "/usr/lib/python3.11";

impl SyncArgs {
    fn fanout_source(&self) -> PathBuf {
        if self.small {
            SMALL_TREE.into()
        } else {
            self.fanout_source.clone()
        }
    }

    fn million_source(&self) -> PathBuf {
        if self.small {
            SMALL_TREE.into()
        } else {
            self.million_source.clone()
        }
    }

    fn soak_rounds(&self) -> (usize, usize) {
        let rounds = self
            .soak_rounds
            .unwrap_or(if self.small { 60 } else { 500 });
        let first = self.soak_first.unwrap_or(if self.small { 10 } else { 50 });
        (rounds, first.clamp(1, rounds.max(1)))
    }

    /// The fat image: (layout, tag), the fixture's or (--small) the bench's own image of /usr.
    fn fat_image(&self, b: &Bench) -> Result<(PathBuf, String)> {
        if self.small {
            let fx = Fixtures::new(&b.work, None)?;
            return Ok((fx.usr_oci()?, "usr".into()));
        }
        let layout = self.fat.join("layout");
        ensure!(
            self.fat.join(".done").exists(),
            "{} is not built (run tools/fixtures/fat-images.sh {}; ~13 min the first time)",
            self.fat.display(),
            self.fat.display()
        );
        Ok((layout, "v1".into()))
    }
}

pub fn run(args: SyncArgs) -> Result<()> {
    let b = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &[
            "/usr/bin/time",
            "docker-registry",
            "skopeo",
            "curl",
            "ip",
            "tc",
            "sha256sum",
            "tar",
        ],
    )?;
    let wants = |p: Part| args.only.contains(&p);
    if wants(Part::Wan) {
        ensure_iperf3()?;
    }
    let relay = match &args.relay {
        Some(p) => p.clone(),
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/ferry-delay-relay")
        }
    };
    let relay = if wants(Part::Wan) {
        relay
            .canonicalize()
            .with_context(|| format!("no ferry-delay-relay at {}", relay.display()))?
    } else {
        relay
    };
    let reps = args.reps.max(1);

    let mut md = String::new();
    environment(&mut md, &b, "Results: network sync (issue 21)")?;
    md.truncate(md.trim_end().len());
    md.push('\n');
    writeln!(
        md,
        "- docker-registry: {}; skopeo: {}; curl: {}; iperf3: {}; ferry-delay-relay: {}\n",
        sh_line("docker-registry --version"),
        sh_line("skopeo --version"),
        sh_line("curl --version | head -1 | cut -d' ' -f1-2"),
        sh_line("iperf3 --version | head -1 | cut -d' ' -f1-2"),
        relay.display()
    )?;
    writeln!(
        md,
        "Every node runs `ferry serve --listen IP:0 --p2p-listen /ip4/IP/tcp/PORT --no-mdns [--peer \
         /ip4/…/tcp/PORT/p2p/PEERID]…` with `RUST_LOG=warn`; every site trusts the seed's key (`ferry keys export` \
         / `ferry trust add`) and every pair that talks allows each other (`ferry id` / `ferry peers allow`). A \
         sync is `ferry --json --no-progress sync NAME@VERSION --timeout {SYNC_TIMEOUT_S}`, timed whole (fork to \
         reap): it includes fetching the signed release and the recipes, and making blobs and the release \
         visible. *node s* is the node's own time for the sync (`seconds` in its report). Seed stores are built \
         once and cached under `WORK/fixtures/netsync/`; site stores are fresh for every run; `sync` and a quiet \
         machine (up to `--quiet-wait` s) before each timed run.{}\n",
        if args.small {
            " **`--small`: a smoke test at small sizes; its figures say nothing about the targets.**"
        } else {
            ""
        }
    )?;

    let order = [
        Part::Fat,
        Part::Wan,
        Part::Fanout,
        Part::Million,
        Part::Soak,
        Part::Loopback,
        Part::Delta,
    ];
    for part in order {
        if !wants(part) {
            continue;
        }
        // A part that fails is reported, and the others still run.
        if let Err(e) = run_part(&mut md, &b, &args, part, &relay, reps) {
            eprintln!("ferry-bench: sync: part {part:?} failed: {e:#}");
            writeln!(md, "**Part {part:?} failed:** `{e:#}`\n")?;
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

fn run_part(
    md: &mut String,
    b: &Bench,
    args: &SyncArgs,
    part: Part,
    relay: &Path,
    reps: usize,
) -> Result<()> {
    match part {
        Part::Fat => {
            let (layout, tag) = args.fat_image(b)?;
            let fat = image::FatSeed::cached(b, &layout, &tag)?;
            image::run(md, b, &fat, reps)
        }
        Part::Wan => {
            let (seed, release, what) = match args.wan_release {
                WanRelease::Fat => {
                    let (layout, tag) = args.fat_image(b)?;
                    let fat = image::FatSeed::cached(b, &layout, &tag)?;
                    let what = fat.describe();
                    (fat.seed, image::RELEASE, what)
                }
                WanRelease::Tree => {
                    let t = seed::TreeSeed::cached(b, &args.source, &args.delta_source)?;
                    let what = t.describe();
                    (t.seed, seed::BIG, what)
                }
            };
            for &d in &args.delays {
                wan::run(md, b, &seed, release, &what, relay, d, reps)?;
            }
            Ok(())
        }
        Part::Fanout => {
            let source = args.fanout_source();
            let seed = seed::tree(b, "fanout", &source, &[])?;
            fanout::run(
                md,
                b,
                &seed,
                &format!("`{}` = `dir:{}`", seed::TREE, source.display()),
                args.sites.max(2),
                args.fanout_mbit.max(1),
                reps,
            )
        }
        Part::Million => {
            ensure!(
                args.million_chunks.len() == 3,
                "--million-chunks takes MIN,AVG,MAX"
            );
            let c = &args.million_chunks;
            let init = [
                "--min-chunk",
                &c[0],
                "--avg-chunk",
                &c[1],
                "--max-chunk",
                &c[2],
            ];
            let source = args.million_source();
            let seed = seed::tree(b, "million", &source, &init)?;
            million::run(md, b, &seed, &source, &c.join("/"), reps)
        }
        Part::Soak => {
            let (rounds, first) = args.soak_rounds();
            let s = soak::SoakSeed::cached(b, &args.soak_source, rounds)?;
            soak::run(md, b, &s, rounds, first)
        }
        Part::Loopback => {
            let t = seed::TreeSeed::cached(b, &args.source, &args.delta_source)?;
            md.push_str(&t.describe_all(&args.delta_source));
            loopback::run(md, b, &t, reps)
        }
        Part::Delta => {
            let t = seed::TreeSeed::cached(b, &args.source, &args.delta_source)?;
            md.push_str(&t.describe_all(&args.delta_source));
            delta::run(md, b, &t.seed)
        }
    }
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
        .output()
        .map(drop)
}

fn sh_line(c: &str) -> String {
    Cmd::new("sh")
        .arg("-c")
        .arg(c)
        .output()
        .map(|s| s.lines().next().unwrap_or("").trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

fn mbs(bytes: u64, s: f64) -> f64 {
    bytes as f64 / s / 1e6
}
