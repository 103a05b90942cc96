//! `ferry-bench fat --work DIR --fixtures DIR --corpus DIR`: real delivery sizes (issue 17), side by side in the
//! same run with `skopeo copy` into and out of Debian's `docker-registry`, on the images
//! `tools/fixtures/fat-images.sh` builds (a 2.5 GB tar in one umoci/pgzip layer, the same gzipped by Go's
//! standard library, and a 4.47 GiB layer) and the corpus of `tools/fixtures/gzip-corpus.sh`.
//!
//! 1. *ingest*: `ferry add` of each image (fresh store) next to `skopeo copy oci:… docker://registry/…` (fresh
//!    registry): wall time, and Ferry's peak RSS; every layer must be decomposed (`gzip_kept_bytes` 0).
//! 2. *pull*: a site node runs; `ferry import` of the fat image's bundle through it, and the moment it returns
//!    `skopeo copy docker://site/… oci:…`, next to the same pull from the registry. Then 8 clients pull 8
//!    different gzip blobs at once from a node that re-created none of them: every byte checked, the node's
//!    peak RSS.
//! 3. *store*: packs against the layer's gzip bytes, the average chunk of a rootfs layer (the corpus's
//!    debian-pgzip v1), index bytes per chunk.
//! 4. *soak*: a seed and a site node on loopback; N rounds of `ferry add` on the seed, `ferry sync` on the site,
//!    a pull of the new file and a push of a small image to the site; the site node's RSS after the first 100
//!    rounds and after all of them.
//!
//! It prints a markdown section on stdout; `--write docs/benchmarks.md` also replaces its own marked section.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use sha2::Digest;

use crate::measure::{self, Cmd, Measured};
use crate::serve::{free_port, sha256_file};
use crate::{environment, mb, verdict, Bench};

pub const BEGIN: &str = "<!-- BEGIN ferry-bench fat (generated; edit outside these markers) -->";
pub const END: &str = "<!-- END ferry-bench fat -->";

const TARGET_INGEST: f64 = 2.0;
const TARGET_RSS_MIB: f64 = 512.0;
const TARGET_PULL: f64 = 1.5;
const TARGET_AVG_CHUNK: u64 = 32 << 10;
const TARGET_INDEX_PER_CHUNK: f64 = 100.0;
const TARGET_SOAK: f64 = 1.1;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Ingest,
    Pull,
    Store,
    Soak,
}

#[derive(clap::Args)]
pub struct FatArgs {
    /// Working directory: stores, registries and bundles are made in WORK/runs.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary (default: target/release/ferry of this workspace).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// The images `tools/fixtures/fat-images.sh` built.
    #[arg(long, value_name = "DIR")]
    fixtures: PathBuf,
    /// The corpus `tools/fixtures/gzip-corpus.sh` built (for the rootfs layer and more gzip blobs to pull).
    #[arg(long, value_name = "DIR")]
    corpus: PathBuf,
    /// Only these parts (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Part>,
    /// Rounds of the soak.
    #[arg(long, default_value_t = 1000)]
    soak_rounds: usize,
    /// Also write the results into FILE between the ferry-bench fat markers (appended if absent).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Before each timed run, wait up to SECS for other work on the machine to calm down.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    quiet_wait: u64,
    /// Keep what was made in WORK/runs/TIMESTAMP (deleted at the end otherwise).
    #[arg(long)]
    keep_stores: bool,
}

/// A docker-registry on a free port over `data`.
pub(crate) struct Registry {
    child: Child,
    pub(crate) host: String,
}

impl Registry {
    pub(crate) fn start(dir: &Path) -> Result<Registry> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let port = free_port()?;
        let data = dir.join("data");
        let config = dir.join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                data.display()
            ),
        )?;
        let log = fs::File::create(dir.join("registry.log"))?;
        let child = Cmd::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .spawn(Stdio::null(), log.into())?;
        let r = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
        };
        wait_http(&format!("http://{}/v2/", r.host))?;
        Ok(r)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `ferry serve` on a free port.
struct Node {
    child: Child,
    addr: String,
}

impl Node {
    fn start(b: &Bench, store: &Path, extra: &[&str]) -> Result<Node> {
        let mut cmd = b
            .ferry(store)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra);
        cmd = cmd.env("RUST_LOG", "warn");
        let mut child = cmd.spawn(Stdio::piped(), Stdio::null())?;
        let out = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(out).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                bail!("ferry serve ended without listening");
            };
            if let Some(a) = line?.strip_prefix("listening on http://") {
                break a.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Node { child, addr })
    }

    /// Peak and current resident set (KiB) of the node's process.
    fn rss(&self) -> Result<(u64, u64)> {
        let pid = self.child.id();
        Ok((
            measure::proc_status_kib(pid, "VmHWM")?,
            measure::proc_status_kib(pid, "VmRSS")?,
        ))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Cmd::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output();
        let _ = self.child.wait();
    }
}

fn wait_http(url: &str) -> Result<()> {
    let start = Instant::now();
    while !reqwest::blocking::get(url).is_ok_and(|r| r.status().is_success()) {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{url} did not answer within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// `skopeo copy` from `src` to `dst`, measured.
pub(crate) fn skopeo(src: &str, dst: &str) -> Result<Measured> {
    Cmd::new("skopeo")
        .args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            src,
            dst,
        ])
        .measure()
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The images of the fixtures: (label, oci source, producer).
fn images(fx: &Path) -> [(&'static str, String, &'static str); 3] {
    [
        (
            "fat (2.5 GB tar)",
            format!("oci:{}:v1", fx.join("layout").display()),
            "umoci (pgzip)",
        ),
        (
            "fat, Go gzip",
            format!("oci:{}:v1", fx.join("layout-go").display()),
            "Go compress/gzip",
        ),
        (
            "huge (4.47 GiB tar)",
            format!("oci:{}:huge", fx.join("layout-huge").display()),
            "umoci (pgzip)",
        ),
    ]
}

pub fn run(args: FatArgs) -> Result<()> {
    let b = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &[
            "/usr/bin/time",
            "docker-registry",
            "skopeo",
            "kill",
            "umoci",
        ],
    )?;
    let all = args.only.is_empty();
    let on = |p: Part| all || args.only.contains(&p);
    let mut md = String::new();
    environment(&mut md, &b, "Real delivery sizes (issue 17)")?;
    writeln!(
        md,
        "- fixtures: `tools/fixtures/fat-images.sh {}`; corpus: `tools/fixtures/gzip-corpus.sh {}`\n",
        args.fixtures.display(),
        args.corpus.display()
    )?;
    if on(Part::Ingest) {
        ingest(&mut md, &b, &args.fixtures)?;
    }
    if on(Part::Pull) {
        pull(&mut md, &b, &args.fixtures, &args.corpus)?;
    }
    if on(Part::Store) {
        store(&mut md, &b, &args.fixtures, &args.corpus)?;
    }
    if on(Part::Soak) {
        soak(&mut md, &b, &args.corpus, args.soak_rounds)?;
    }
    crate::publish(&md, args.write.as_deref(), BEGIN, END)?;
    b.finish(args.keep_stores)
}

fn ingest(md: &mut String, b: &Bench, fx: &Path) -> Result<()> {
    writeln!(
        md,
        "### 1. Ingest: `ferry add` next to `skopeo copy` into docker-registry\n"
    )?;
    writeln!(
        md,
        "Fresh store and fresh registry per run, the image's files read once before (page cache warm). \
         Ferry: `ferry add --json NAME@1 oci:LAYOUT:TAG`; the registry: `skopeo copy oci:LAYOUT:TAG \
         docker://127.0.0.1:PORT/NAME:TAG` (skopeo reads the layout and uploads the blobs as they are). Wall time \
         of the whole process; peak RSS of ferry (`/usr/bin/time`).\n"
    )?;
    writeln!(
        md,
        "| image | layer producer | skopeo copy | ferry add | ferry / skopeo | ferry CPU s | ferry peak RSS | \
         decomposed | chunks |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    let mut verdicts = Vec::new();
    for (i, (label, src, producer)) in images(fx).iter().enumerate() {
        let layout = src
            .trim_start_matches("oci:")
            .rsplit_once(':')
            .map(|(l, _)| l)
            .unwrap_or_default();
        measure::warm_tree(Path::new(layout))?;
        let dir = b.fresh(&format!("ingest-{i}"))?;
        measure::wait_quiet(b.quiet_wait)?;
        let reg = Registry::start(&dir.join("registry"))?;
        let sk = skopeo(src, &format!("docker://{}/img:1", reg.host))?;
        drop(reg);
        let store = dir.join("store");
        b.ferry_init(&store)?;
        measure::sync()?;
        measure::wait_quiet(b.quiet_wait)?;
        let m = b
            .ferry(&store)
            .args(["add", "--json", "img@1", src])
            .measure()?;
        let r: Value = serde_json::from_str(m.stdout.trim())?;
        let kept = r["gzip_kept_bytes"].as_u64().unwrap_or(u64::MAX);
        let ratio = m.wall / sk.wall;
        writeln!(
            md,
            "| {label} | {producer} | {:.2} s | {:.2} s | **{ratio:.2}** | {:.1} | {:.0} MiB | {} | {} |",
            sk.wall,
            m.wall,
            m.cpu(),
            mib(m.max_rss_kib),
            if kept == 0 { "all" } else { "NO" },
            r["chunks"]
        )?;
        verdicts.push((label.to_string(), ratio, mib(m.max_rss_kib), kept));
    }
    let fat = &verdicts[0];
    writeln!(
        md,
        "\nTargets: `ferry add` of the fat image <= {TARGET_INGEST}x `skopeo copy` → **{}** ({:.2}x); peak RSS \
         <= {TARGET_RSS_MIB} MiB for every image → **{}** (largest {:.0} MiB); every layer decomposed \
         (`gzip_kept_bytes` 0) → **{}**.\n",
        verdict(fat.1 <= TARGET_INGEST),
        fat.1,
        verdict(verdicts.iter().all(|v| v.2 <= TARGET_RSS_MIB)),
        verdicts.iter().map(|v| v.2).fold(0.0, f64::max),
        verdict(verdicts.iter().all(|v| v.3 == 0))
    )?;
    Ok(())
}

fn pull(md: &mut String, b: &Bench, fx: &Path, corpus: &Path) -> Result<()> {
    writeln!(
        md,
        "### 2. First pull at a site: right after `ferry import`, next to docker-registry\n"
    )?;
    let dir = b.fresh("pull")?;
    let src = format!("oci:{}:v1", fx.join("layout").display());
    // The seed, and the bundle it exports.
    let seed = dir.join("seed");
    b.ferry_init(&seed)?;
    b.ferry(&seed).args(["add", "fat@1", &src]).output()?;
    let bundle = dir.join("bundle");
    b.ferry(&seed)
        .args(["export", "fat@1", "--out"])
        .arg(&bundle)
        .output()?;
    let key = dir.join("seed.pub");
    fs::write(&key, b.ferry(&seed).args(["keys", "export"]).output()?)?;
    // The registry with the same image.
    let reg = Registry::start(&dir.join("registry"))?;
    skopeo(&src, &format!("docker://{}/fat:v1", reg.host))?;
    // The site: a running node imports the bundle; the pull starts the moment the import returns.
    let site = dir.join("site");
    b.ferry_init(&site)?;
    b.ferry(&site).args(["trust", "add"]).arg(&key).output()?;
    let node = Node::start(b, &site, &[])?;
    measure::sync()?;
    measure::wait_quiet(b.quiet_wait)?;
    let imp = b.ferry(&site).arg("import").arg(&bundle).measure()?;
    let ours = skopeo(
        &format!("docker://{}/fat:v1", node.addr),
        &format!("oci:{}:v1", dir.join("pulled-ferry").display()),
    )?;
    let (node_peak, _) = node.rss()?;
    measure::wait_quiet(b.quiet_wait)?;
    let theirs = skopeo(
        &format!("docker://{}/fat:v1", reg.host),
        &format!("oci:{}:v1", dir.join("pulled-registry").display()),
    )?;
    let warm = skopeo(
        &format!("docker://{}/fat:v1", node.addr),
        &format!("oci:{}:v1", dir.join("pulled-ferry-warm").display()),
    )?;
    drop(node);
    let ratio = ours.wall / theirs.wall;
    writeln!(
        md,
        "The seed exports `fat@1` (the fat image); a site node runs (`ferry serve`, background re-creation on); \
         `ferry import BUNDLE` goes through it ({:.2} s), and the moment it returns `skopeo copy \
         docker://SITE/fat:v1 oci:DIR:v1` starts. The same `skopeo copy` from docker-registry holding the image, \
         then once more from the node (warm: from its cache).\n",
        imp.wall
    )?;
    writeln!(
        md,
        "| pull | wall | / registry |\n|---|---:|---:|\n| docker-registry | {:.2} s | 1.00 |\n| ferry, \
         right after import | {:.2} s | **{ratio:.2}** |\n| ferry, warm | {:.2} s | {:.2} |\n",
        theirs.wall,
        ours.wall,
        warm.wall,
        warm.wall / theirs.wall
    )?;
    writeln!(
        md,
        "Target: the pull right after import <= {TARGET_PULL}x the registry's → **{}** ({ratio:.2}x). The site \
         node's peak RSS through import and pull: {:.0} MiB.\n",
        verdict(ratio <= TARGET_PULL),
        mib(node_peak)
    )?;

    // 8 clients, 8 different gzip blobs, none re-created yet.
    let many = dir.join("many");
    b.ferry_init(&many)?;
    let mut sources: Vec<(String, String)> = vec![
        (
            "fat@1".into(),
            format!("oci:{}:v1", fx.join("layout").display()),
        ),
        (
            "fat@2".into(),
            format!("oci:{}:v2", fx.join("layout").display()),
        ),
        (
            "fatgo@1".into(),
            format!("oci:{}:v1", fx.join("layout-go").display()),
        ),
        (
            "fatgo@2".into(),
            format!("oci:{}:v2", fx.join("layout-go").display()),
        ),
        (
            "huge@1".into(),
            format!("oci:{}:huge", fx.join("layout-huge").display()),
        ),
    ];
    let deb = corpus.join("debian-pgzip/layout");
    sources.push(("deb@1".into(), format!("oci:{}:v1", deb.display())));
    sources.push(("deb@2".into(), format!("oci:{}:v2", deb.display())));
    sources.push((
        "tarball@1".into(),
        format!("file:{}", corpus.join("debian-go/new").display()),
    ));
    for (release, src) in &sources {
        b.ferry(&many).args(["add", release, src]).output()?;
    }
    // Every gzip blob of those releases, by the registry and repository paths that serve it.
    let mut blobs: Vec<(String, String, PathBuf)> = Vec::new();
    for (release, src) in &sources {
        let name = release.split('@').next().unwrap_or_default();
        if let Some(layout) = src.strip_prefix("oci:") {
            let (layout, tag) = layout.rsplit_once(':').context("oci source")?;
            let img = crate::fixtures::OciImage::load(Path::new(layout), tag)?;
            for (layer, _) in &img.layers {
                let path = Path::new(layout)
                    .join("blobs/sha256")
                    .join(layer.trim_start_matches("sha256:"));
                blobs.push((format!("/v2/{name}/blobs/{layer}"), layer.clone(), path));
            }
        } else {
            let path = PathBuf::from(src.trim_start_matches("file:"));
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            blobs.push((format!("/repos/{name}/1/{file}"), sha256_file(&path)?, path));
        }
    }
    blobs.sort_by(|a, b| a.1.cmp(&b.1));
    blobs.dedup_by(|a, b| a.1 == b.1);
    ensure!(blobs.len() >= 8, "only {} gzip blobs to pull", blobs.len());
    blobs.truncate(8);
    let node = Node::start(b, &many, &["--no-prewarm"])?;
    measure::wait_quiet(b.quiet_wait)?;
    let start = Instant::now();
    let results: Vec<Result<(u64, bool)>> = std::thread::scope(|s| {
        let handles: Vec<_> = blobs
            .iter()
            .map(|(path, digest, _)| {
                let url = format!("http://{}{path}", node.addr);
                s.spawn(move || -> Result<(u64, bool)> {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(3600))
                        .build()?;
                    let mut resp = client.get(&url).send()?;
                    ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
                    let mut h = sha2::Sha256::new();
                    let mut buf = vec![0u8; 1 << 20];
                    let mut n = 0u64;
                    loop {
                        let k = resp.read(&mut buf)?;
                        if k == 0 {
                            break;
                        }
                        h.update(&buf[..k]);
                        n += k as u64;
                    }
                    Ok((
                        n,
                        format!("sha256:{}", hex::encode(h.finalize())) == *digest,
                    ))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a pull thread panicked"))
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let (peak, _) = node.rss()?;
    drop(node);
    let mut total = 0;
    let mut exact = 0;
    for r in results {
        let (n, ok) = r?;
        total += n;
        exact += ok as usize;
    }
    writeln!(
        md,
        "8 clients at once, each pulling a different gzip blob (5 fat-image layers, the corpus's two debian-pgzip \
         layers and its debian-go tarball; {}) from a node that had re-created none (`--no-prewarm`): {:.1} s, \
         {exact} of 8 exact (SHA-256 of what arrived), node peak RSS {:.0} MiB.\n",
        mb(total),
        wall,
        mib(peak)
    )?;
    writeln!(
        md,
        "Target: node RSS <= {TARGET_RSS_MIB} MiB, all bytes exact → **{}**.\n",
        verdict(mib(peak) <= TARGET_RSS_MIB && exact == 8)
    )?;
    Ok(())
}

fn store(md: &mut String, b: &Bench, fx: &Path, corpus: &Path) -> Result<()> {
    writeln!(md, "### 3. The store\n")?;
    let dir = b.fresh("store")?;
    let s = dir.join("fat");
    b.ferry_init(&s)?;
    let add: Value = serde_json::from_str(
        b.ferry(&s)
            .args([
                "add".to_owned(),
                "--json".to_owned(),
                "fat@1".to_owned(),
                format!("oci:{}:v1", fx.join("layout").display()),
            ])
            .output()?
            .trim(),
    )?;
    let status: Value = serde_json::from_str(&b.ferry(&s).args(["status", "--json"]).output()?)?;
    let packs = status["disk"]["packs"].as_u64().unwrap_or(0);
    let index = status["disk"]["index"].as_u64().unwrap_or(0);
    let img = crate::fixtures::OciImage::load(&fx.join("layout"), "v1")?;
    let gz: u64 = img.layers.iter().map(|l| l.1).sum();
    let chunks = add["chunks"].as_u64().unwrap_or(1).max(1);
    // The rootfs layer.
    let r = dir.join("rootfs");
    b.ferry_init(&r)?;
    let deb = corpus.join("debian-pgzip/layout");
    let radd: Value = serde_json::from_str(
        b.ferry(&r)
            .args([
                "add".to_owned(),
                "--json".to_owned(),
                "deb@1".to_owned(),
                format!("oci:{}:v1", deb.display()),
            ])
            .output()?
            .trim(),
    )?;
    let dimg = crate::fixtures::OciImage::load(&deb, "v1")?;
    let raw: u64 = {
        let layer = deb
            .join("blobs/sha256")
            .join(dimg.layers[0].0.trim_start_matches("sha256:"));
        let out = Cmd::new("sh")
            .arg("-c")
            .arg(format!("gzip -dc {} | wc -c", layer.display()))
            .output()?;
        out.trim().parse()?
    };
    let rchunks = radd["chunks"].as_u64().unwrap_or(1).max(1);
    // What an index record costs in sled, measured on this store.
    let per_chunk = index as f64 / chunks as f64;
    writeln!(
        md,
        "| figure | measured | target |\n|---|---:|---|\n| fat image: packs / layer gzip bytes | {:.3} ({} / {}) \
         | <= 1 → **{}** |\n| rootfs layer (corpus debian-pgzip v1, {} raw): average chunk | {} B ({} chunks) | >= \
         {} → **{}** |\n| fat image: index bytes per chunk | {per_chunk:.0} ({} / {chunks}) | <= {} → **{}** |\n",
        packs as f64 / gz as f64,
        mb(packs),
        mb(gz),
        verdict(packs <= gz),
        mb(raw),
        raw / rchunks,
        rchunks,
        TARGET_AVG_CHUNK,
        verdict(raw / rchunks >= TARGET_AVG_CHUNK),
        mb(index),
        TARGET_INDEX_PER_CHUNK,
        verdict(per_chunk <= TARGET_INDEX_PER_CHUNK)
    )?;
    Ok(())
}

fn soak(md: &mut String, b: &Bench, corpus: &Path, rounds: usize) -> Result<()> {
    writeln!(md, "### 4. Soak: {rounds} rounds of sync, pull and push\n")?;
    let dir = b.fresh("soak")?;
    let (seed, site) = (dir.join("seed"), dir.join("site"));
    for s in [&seed, &site] {
        b.ferry_init(s)?;
    }
    let key = dir.join("seed.pub");
    fs::write(&key, b.ferry(&seed).args(["keys", "export"]).output()?)?;
    b.ferry(&site).args(["trust", "add"]).arg(&key).output()?;
    let tokens = dir.join("push.tokens");
    fs::write(&tokens, "soak-token\n")?;
    // Each allows the other.
    let id = |s: &Path| -> Result<String> { Ok(b.ferry(s).arg("id").output()?.trim().to_owned()) };
    let (seed_id, site_id) = (id(&seed)?, id(&site)?);
    b.ferry(&seed).args(["peers", "allow", &site_id]).output()?;
    b.ferry(&site).args(["peers", "allow", &seed_id]).output()?;
    let seed_p2p = free_port()?;
    let seed_node = Node::start(
        b,
        &seed,
        &[
            "--no-mdns",
            "--p2p-listen",
            &format!("/ip4/127.0.0.1/tcp/{seed_p2p}"),
        ],
    )?;
    let site_p2p = free_port()?;
    let tokens_arg = tokens.display().to_string();
    let site_node = Node::start(
        b,
        &site,
        &[
            "--no-mdns",
            "--p2p-listen",
            &format!("/ip4/127.0.0.1/tcp/{site_p2p}"),
            "--peer",
            &format!("/ip4/127.0.0.1/tcp/{seed_p2p}"),
            "--push-token-file",
            &tokens_arg,
        ],
    )?;
    // A small image to push: the corpus's helm chart and a tarball in a fresh umoci image.
    let img = dir.join("img");
    Cmd::new("umoci")
        .args(["init", "--layout"])
        .arg(&img)
        .run()?;
    Cmd::new("umoci")
        .args(["new", "--image", &format!("{}:t", img.display())])
        .run()?;
    Cmd::new("umoci")
        .args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:t", img.display()),
        ])
        .arg(dir.join("bundle"))
        .run()?;
    fs::copy(
        corpus.join("helm-chart/new"),
        dir.join("bundle/rootfs/chart.tgz"),
    )?;
    Cmd::new("umoci")
        .args(["repack", "--image", &format!("{}:t", img.display())])
        .arg(dir.join("bundle"))
        .run()?;
    let files = [
        corpus.join("npm-prettier/old"),
        corpus.join("npm-prettier/new"),
        corpus.join("crate-tokio/old"),
        corpus.join("crate-tokio/new"),
        corpus.join("helm-chart/old"),
        corpus.join("helm-chart/new"),
    ];
    let mut after_100 = (0, 0);
    let mut seed_100 = (0, 0);
    let first = 100.min(rounds);
    let start = Instant::now();
    for round in 1..=rounds {
        let file = &files[round % files.len()];
        let release = format!("soak@{round}");
        b.ferry(&seed)
            .args(["add", &release])
            .arg(format!("file:{}", file.display()))
            .output()?;
        let synced = b
            .ferry(&site)
            .args(["sync", &release, "--timeout", "120"])
            .output();
        if let Err(e) = synced {
            bail!("round {round}: sync: {e}");
        }
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let got = reqwest::blocking::get(format!(
            "http://{}/repos/soak/{round}/{name}",
            site_node.addr
        ))?
        .bytes()?;
        ensure!(
            got.len() as u64 == fs::metadata(file)?.len(),
            "round {round}: pulled {} bytes",
            got.len()
        );
        Cmd::new("skopeo")
            .args([
                "copy".to_owned(),
                "-q".to_owned(),
                "--dest-tls-verify=false".to_owned(),
                "--dest-creds".to_owned(),
                "soak:soak-token".to_owned(),
                format!("oci:{}:t", img.display()),
                format!("docker://{}/pushed:r{round}", site_node.addr),
            ])
            .run()?;
        if round == first {
            after_100 = site_node.rss()?;
            seed_100 = seed_node.rss()?;
        }
        if round % 100 == 0 {
            eprintln!(
                "ferry-bench: soak round {round}: site RSS {:.0} MiB",
                mib(site_node.rss()?.1)
            );
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let end = site_node.rss()?;
    let seed_end = seed_node.rss()?;
    let ratio = end.1 as f64 / after_100.1.max(1) as f64;
    writeln!(
        md,
        "A seed and a site node on loopback (p2p sync, a push token on the site). Each round: `ferry add \
         soak@N file:F` on the seed (F cycling through six real tarballs of the corpus), `ferry sync soak@N` on \
         the site, `GET /repos/soak/N/F` from the site, and `skopeo copy` of a small image to the site's \
         registry (a new tag each round). {rounds} rounds in {:.0} s.\n",
        wall
    )?;
    writeln!(
        md,
        "| node | RSS after {first} rounds | after {rounds} | peak RSS after {first} | after {rounds} |\n\
         |---|---:|---:|---:|---:|\n| site (syncs, pulls, pushes) | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |\n\
         | seed (adds, serving syncs) | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |\n",
        mib(after_100.1),
        mib(end.1),
        mib(after_100.0),
        mib(end.0),
        mib(seed_100.1),
        mib(seed_end.1),
        mib(seed_100.0),
        mib(seed_end.0)
    )?;
    writeln!(
        md,
        "Target: the site node's RSS after {rounds} rounds <= {TARGET_SOAK}x after {first} → **{}** \
         ({ratio:.3}x).\n",
        verdict(ratio <= TARGET_SOAK)
    )?;
    Ok(())
}
