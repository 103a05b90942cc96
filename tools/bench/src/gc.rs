//! `ferry-bench gc --work DIR --corpus DIR`: garbage collection (issue 7), side by side in the same run with
//! Debian's `docker-registry garbage-collect`, on the same two versions of a real image: the corpus's
//! `debian-pgzip` layout (`tools/fixtures/gzip-corpus.sh`), a Debian base image built twice by umoci, one gzip
//! layer each, tags `v1` and `v2`.
//!
//! Both hold `x:v1` and `x:v2`, set up once and copied afresh for every repetition; then `v1` goes. Ferry:
//! `ferry gc --keep 1`. The registry: `DELETE` of v1's manifest on a running registry with deletes enabled, then
//! `docker-registry garbage-collect` with the registry stopped, as it requires. For each: the collection's
//! whole-process wall time (median), bytes on disk before and after, the bytes of a fresh store or registry
//! holding only `v2`, and after / fresh (issue 7's target: within 5 %). Ferry's bytes are its packs and index
//! (`ferry status`), the registry's its data directory.
//!
//! It prints a markdown section on stdout; `--write docs/benchmarks.md` also replaces its own marked section
//! there (the other sections are left alone).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::fixtures::OciImage;
use crate::measure::{self, median, tree_size, Cmd, Measured};
use crate::{environment, mb, verdict, Bench};

pub const BEGIN: &str = "<!-- BEGIN ferry-bench gc (generated; edit outside these markers) -->";
pub const END: &str = "<!-- END ferry-bench gc -->";

/// After a collection, at most this many times the bytes of a fresh store of what was kept.
const TARGET_AFTER_FRESH: f64 = 1.05;
const PAIR: &str = "debian-pgzip";

#[derive(clap::Args)]
pub struct GcArgs {
    /// Working directory: stores are made in WORK/runs.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary (default: target/release/ferry of this workspace).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// A corpus built by tools/fixtures/gzip-corpus.sh (its debian-pgzip/layout is used).
    #[arg(long, value_name = "DIR")]
    corpus: PathBuf,
    /// Repetitions of each collection (medians reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also write the results into FILE between the ferry-bench gc markers (appended if absent).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Before each timed run, wait up to SECS for other work on the machine to calm down.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    quiet_wait: u64,
    /// Keep the stores made in WORK/runs/TIMESTAMP (deleted at the end otherwise).
    #[arg(long)]
    keep_stores: bool,
}

/// A registry serving `data` on a free port, deletes enabled.
struct Registry {
    child: Child,
    host: String,
    config: PathBuf,
}

impl Registry {
    fn config(dir: &Path, data: &Path, port: u16) -> Result<PathBuf> {
        let p = dir.join("registry.yml");
        fs::write(
            &p,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                data.display()
            ),
        )?;
        Ok(p)
    }

    fn start(dir: &Path, data: &Path) -> Result<Registry> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = Registry::config(dir, data, port)?;
        let log = fs::File::create(dir.join("registry.log"))?;
        let child = Cmd::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .spawn(Stdio::null(), log.into())?;
        let r = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            config,
        };
        let client = reqwest::blocking::Client::new();
        let start = Instant::now();
        while !client
            .get(format!("http://{}/v2/", r.host))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            if start.elapsed() > Duration::from_secs(60) {
                bail!("docker-registry did not answer on {} within 60 s", r.host);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(r)
    }

    fn push(&self, layout: &Path, tag: &str) -> Result<()> {
        Cmd::new("skopeo")
            .args([
                "copy".to_owned(),
                "--dest-tls-verify=false".to_owned(),
                format!("oci:{}:{tag}", layout.display()),
                format!("docker://{}/x:{tag}", self.host),
            ])
            .run()
    }

    fn stop(mut self) -> Result<PathBuf> {
        Cmd::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output()?;
        self.child.wait()?;
        Ok(self.config)
    }
}

struct Run {
    ferry: bool,
    m: Measured,
    before: u64,
    after: u64,
}

/// Ferry's packs and index bytes (`ferry status`).
fn ferry_parts(b: &Bench, store: &Path) -> Result<(u64, u64)> {
    let v: Value = serde_json::from_str(&b.ferry(store).args(["status", "--json"]).output()?)?;
    let part = |k: &str| v["disk"][k].as_u64().unwrap_or(0);
    ensure!(
        part("cache") == 0,
        "ferry's cache is not empty in {}",
        store.display()
    );
    Ok((part("packs"), part("index")))
}

fn ferry_bytes(b: &Bench, store: &Path) -> Result<u64> {
    let (packs, index) = ferry_parts(b, store)?;
    Ok(packs + index)
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    Ok(tree_size(dir)?.0)
}

pub fn run(args: GcArgs) -> Result<()> {
    let b = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &["/usr/bin/time", "docker-registry", "skopeo", "kill", "cp"],
    )?;
    let layout = args.corpus.join(PAIR).join("layout");
    let v1 = OciImage::load(&layout, "v1")?;
    let v2 = OciImage::load(&layout, "v2")?;

    // Set up once: both versions, and only v2, for each tool.
    let setup = b.fresh("setup")?;
    let ferry_both = setup.join("ferry-both");
    let ferry_fresh = setup.join("ferry-fresh");
    for (store, tags) in [
        (&ferry_both, &["v1", "v2"][..]),
        (&ferry_fresh, &["v2"][..]),
    ] {
        b.ferry_init(store)?;
        for tag in tags {
            let version = &tag[1..];
            b.ferry(store)
                .args([
                    "add".to_owned(),
                    format!("x@{version}"),
                    format!("oci:{}:{tag}", layout.display()),
                ])
                .run()?;
        }
    }
    let reg_both = setup.join("registry-both");
    let reg_fresh = setup.join("registry-fresh");
    for (data, tags) in [(&reg_both, &["v1", "v2"][..]), (&reg_fresh, &["v2"][..])] {
        let dir = data.with_extension("run");
        fs::create_dir_all(&dir)?;
        let r = Registry::start(&dir, data)?;
        for tag in tags {
            r.push(&layout, tag)?;
        }
        r.stop()?;
    }
    let fresh = (ferry_bytes(&b, &ferry_fresh)?, dir_bytes(&reg_fresh)?);
    let fresh_parts = ferry_parts(&b, &ferry_fresh)?;
    let mut after_parts = (0, 0);

    let mut runs = Vec::new();
    for rep in 0..args.reps.max(1) {
        let dir = b.fresh(&format!("rep-{rep}"))?;
        for ferry_first in [rep % 2 == 0, rep % 2 != 0] {
            if ferry_first {
                let store = dir.join("ferry");
                Cmd::new("cp")
                    .arg("-a")
                    .arg(&ferry_both)
                    .arg(&store)
                    .run()?;
                let before = ferry_bytes(&b, &store)?;
                measure::wait_quiet(b.quiet_wait)?;
                let m = b
                    .ferry(&store)
                    .args(["gc", "--keep", "1", "--json"])
                    .measure()?;
                let report: Value = serde_json::from_str(m.stdout.trim())
                    .with_context(|| format!("ferry gc --json printed {:?}", m.stdout))?;
                ensure!(
                    report["removed"] == serde_json::json!(["x@1"]),
                    "ferry gc removed {}",
                    report["removed"]
                );
                after_parts = ferry_parts(&b, &store)?;
                let after = after_parts.0 + after_parts.1;
                runs.push(Run {
                    ferry: true,
                    m,
                    before,
                    after,
                });
            } else {
                let data = dir.join("registry");
                Cmd::new("cp").arg("-a").arg(&reg_both).arg(&data).run()?;
                let before = dir_bytes(&data)?;
                let r = Registry::start(&dir, &data)?;
                let resp = reqwest::blocking::Client::new()
                    .delete(format!(
                        "http://{}/v2/x/manifests/{}",
                        r.host, v1.manifest.0
                    ))
                    .send()?;
                ensure!(
                    resp.status().as_u16() == 202,
                    "DELETE of x's v1 manifest: {}",
                    resp.status()
                );
                let config = r.stop()?;
                measure::wait_quiet(b.quiet_wait)?;
                let m = Cmd::new("docker-registry")
                    .arg("garbage-collect")
                    .arg(&config)
                    .measure()?;
                let after = dir_bytes(&data)?;
                runs.push(Run {
                    ferry: false,
                    m,
                    before,
                    after,
                });
            }
        }
    }

    let mut md = String::new();
    environment(
        &mut md,
        &b,
        "Garbage collection: `ferry gc` and `docker-registry garbage-collect`",
    )?;
    let layer = |i: &OciImage| i.layers.iter().map(|l| l.1).sum::<u64>();
    writeln!(
        md,
        "Two versions of a real image (corpus `{PAIR}`: v1 layer {}, v2 layer {}, distinct digests; Ferry stores \
         their raw contents once, deduplicated), v1 removed. Collection wall time is the whole process; the \
         registry's is offline (it must be stopped), Ferry's is what `ferry gc` takes (a running node keeps \
         serving meanwhile). Sizes: Ferry's packs + index, the registry's data directory; fresh: a store or \
         registry that only ever held v2.\n",
        mb(layer(&v1)),
        mb(layer(&v2))
    )?;
    writeln!(md, "| | collection wall s (median) | CPU s | before | after | fresh (v2 only) | after / fresh | target ≤ {TARGET_AFTER_FRESH} |")?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    let mut walls = [0.0; 2];
    for (i, (name, is_ferry, fresh)) in [
        ("`ferry gc --keep 1`", true, fresh.0),
        ("`docker-registry garbage-collect`", false, fresh.1),
    ]
    .into_iter()
    .enumerate()
    {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.ferry == is_ferry).collect();
        let wall = median(&mine.iter().map(|r| r.m.wall).collect::<Vec<_>>());
        let cpu = median(&mine.iter().map(|r| r.m.cpu()).collect::<Vec<_>>());
        let after = mine.last().map_or(0, |r| r.after);
        let before = mine.last().map_or(0, |r| r.before);
        let ratio = after as f64 / fresh as f64;
        walls[i] = wall;
        writeln!(
            md,
            "| {name} | {wall:.2} | {cpu:.2} | {} | {} | {} | {ratio:.3} | {} |",
            mb(before),
            mb(after),
            mb(fresh),
            verdict(ratio <= TARGET_AFTER_FRESH)
        )?;
    }
    writeln!(
        md,
        "\nFerry after collection: packs {} against {} fresh ({:.3}), index {} against {} fresh ({:.3}): \
         sled reclaims the log segments of deleted and rewritten entries lazily.",
        mb(after_parts.0),
        mb(fresh_parts.0),
        after_parts.0 as f64 / fresh_parts.0 as f64,
        mb(after_parts.1),
        mb(fresh_parts.1),
        after_parts.1 as f64 / fresh_parts.1 as f64,
    )?;
    writeln!(
        md,
        "\nCollection time, Ferry / registry: **{:.2}x**. Kept after collection, Ferry / registry: **{:.2}x** \
         of the bytes.\n",
        walls[0] / walls[1],
        runs.iter().rfind(|r| r.ferry).map_or(0, |r| r.after) as f64
            / runs.iter().rfind(|r| !r.ferry).map_or(1, |r| r.after) as f64
    )?;
    b.finish(args.keep_stores)?;
    crate::publish(&md, args.write.as_deref(), BEGIN, END)
}
