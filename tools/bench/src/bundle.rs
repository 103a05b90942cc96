//! `ferry-bench bundle --work DIR`: sneakernet bundles, side by side with the alternatives in the same run.
//!
//! A. Bytes across the gap for image pairs v1 → v2 (v2 = v1 + one layer): `ferry export x@2 --base x@1` next to
//!    the new layer's gzip size, the layer-level delta, casync store growth and `zstd --patch-from`; re-exports of
//!    what the site already holds (`--base`, `--site`); a complete export for scale; the bundle's zstd level.
//! B. Speed and peak RSS of `ferry bundle verify` and `ferry import` on a bundle of several GB, next to reading
//!    its volumes (`cat`) and decoding them (`zstd -dc`).
//!
//! It prints a markdown section on stdout; `--write docs/benchmarks.md` also replaces its own marked section
//! there (the core section is left alone).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use clap::ValueEnum;
use serde_json::Value;

use crate::fixtures::{blob_path, Fixtures, OciImage, LAYER_PKGS};
use crate::measure::{self, median, sync, tree_size, warm_tree, Cmd, Measured};
use crate::{environment, human, mb, verdict, Bench, CASYNC_CHUNKS, TARGET_RSS_MIB};

pub const BEGIN: &str = "<!-- BEGIN ferry-bench bundle (generated; edit outside these markers) -->";
pub const END: &str = "<!-- END ferry-bench bundle -->";

/// `ferry export x@2 --base x@1` at most this many times the new layer's gzip size.
const TARGET_DELTA_VS_GZIP: f64 = 1.0;
/// Re-exporting what the site holds (`--base` the same release, or `--site` twice) costs less than this.
const TARGET_RESEND_BYTES: u64 = 64 * 1024;
/// Payload bytes per second of wall time.
const TARGET_VERIFY_MBS: f64 = 500.0;
const TARGET_IMPORT_MBS: f64 = 300.0;
/// The zstd patch yardstick: `zstd -19 --long=27 --patch-from=V1 V2`.
const PATCH_ARGS: [&str; 2] = ["-19", "--long=27"];
/// Bytes a decoded chunk record adds to the chunk: its LEB128 part gap, 1 to 10 bytes.
const RECORD_GAP: std::ops::RangeInclusive<u64> = 1..=10;
/// Volume size of the speed bundle.
const VOLUME_SIZE: &str = "1G";

#[derive(clap::Args)]
pub struct BundleArgs {
    /// Working directory: fixtures are cached in WORK/fixtures, stores are made in WORK/runs.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary (default: target/release/ferry of this workspace).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// Repetitions of each timed run (fresh stores each time; medians reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also write the results into FILE between the ferry-bench bundle markers (appended if absent).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Which parts to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "bytes,speed")]
    only: Vec<Part>,
    /// The second, small image pair: an OCI layout with tags v1 and v2 (default: the integration tests'
    /// fixture, target/ferry-fixtures/images/layout of this workspace; skipped with a note if absent).
    #[arg(long, value_name = "DIR")]
    small_oci: Option<PathBuf>,
    /// zstd levels for the bundle-level table (`ferry export`'s default level is always added).
    #[arg(long, value_delimiter = ',', default_value = "3,12,19")]
    levels: Vec<u32>,
    /// Debian mirror for debootstrap (default: the host's apt source for bookworm).
    #[arg(long)]
    mirror: Option<String>,
    /// Before each timed run, wait up to SECS for other work on the machine to calm down.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    quiet_wait: u64,
    /// Keep the stores and bundles made in WORK/runs/TIMESTAMP (deleted at the end otherwise).
    #[arg(long)]
    keep_stores: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// A: bytes across the gap.
    Bytes,
    /// B: verify and import speed and memory.
    Speed,
}

pub fn run(args: BundleArgs) -> Result<()> {
    let bench = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &["/usr/bin/time", "casync", "zstd", "gzip", "cat", "sh"],
    )?;
    let fx = Fixtures::new(&bench.work, args.mirror.clone())?;
    let reps = args.reps.max(1);
    let bytes = args.only.contains(&Part::Bytes);
    let speed = args.only.contains(&Part::Speed);

    // Every fixture first, so that the measurements run back to back.
    let big_pair = bytes.then(|| fx.oci()).transpose()?;
    let small_default =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ferry-fixtures/images/layout");
    let small_pair = args.small_oci.clone().unwrap_or(small_default);
    // (the layout to use, or the path looked at when it is absent)
    let small_pair: Option<Result<PathBuf, PathBuf>> = bytes.then(|| {
        if small_pair.join("index.json").is_file() {
            Ok(small_pair.canonicalize().unwrap_or(small_pair))
        } else {
            eprintln!(
                "ferry-bench: note: no OCI layout at {}; pair 2 skipped",
                small_pair.display()
            );
            Err(small_pair)
        }
    });
    let speed_inputs = speed
        .then(|| -> Result<_> { Ok((fx.big_file()?, fx.ingest_tar()?, fx.debs()?)) })
        .transpose()?;
    let default_level = export_default_level(&bench);

    let mut md = String::new();
    environment(&mut md, &bench, "Results: bundles")?;
    // One more line in the environment's list.
    md.truncate(md.trim_end().len());
    md.push('\n');
    writeln!(
        md,
        "- gzip: {}; `ferry export` default `--zstd-level`: {}\n",
        sh_line("gzip --version | head -1"),
        default_level.map_or("? (not found in `ferry export --help`)".into(), |l| l
            .to_string())
    )?;
    if let Some(oci) = big_pair {
        let mut pairs = vec![(
            "pair 1: `fixtures/oci`".to_owned(),
            measure_pair(&bench, "pair1", &oci)?,
        )];
        if let Some(Ok(p)) = &small_pair {
            pairs.push((
                "pair 2: test fixture `images/layout`".to_owned(),
                measure_pair(&bench, "pair2", p)?,
            ));
        }
        let mut levels = args.levels.clone();
        levels.extend(default_level);
        levels.sort_unstable();
        levels.dedup();
        let table = level_table(&bench, &pairs[0].1, &levels, reps)?;
        bytes_section(
            &mut md,
            &oci,
            small_pair.as_ref(),
            &pairs,
            &table,
            default_level,
            reps,
        )?;
    }
    if let Some((big, tar, debs)) = speed_inputs {
        speed_section(&mut md, &bench, &big, &tar, &debs, reps)?;
    }
    bench.finish(args.keep_stores)?;
    crate::publish(&md, args.write.as_deref(), BEGIN, END)
}

// ---------------------------------------------------------------------------------------------------------------
// The tools under test

impl Bench {
    /// `ferry export --json ARGS --out OUT`, measured.
    pub(crate) fn export(
        &self,
        store: &Path,
        args: &[&str],
        out: &Path,
    ) -> Result<(Measured, Value)> {
        let m = self
            .ferry(store)
            .args(["export", "--json"])
            .args(args)
            .arg("--out")
            .arg(out)
            .measure()?;
        let v = json_of(&m.stdout, "ferry export --json")?;
        Ok((m, v))
    }

    /// `ferry import --json BUNDLE`, measured.
    fn import(&self, store: &Path, bundle: &Path) -> Result<(Measured, Value)> {
        let m = self
            .ferry(store)
            .args(["import", "--json"])
            .arg(bundle)
            .measure()?;
        let v = json_of(&m.stdout, "ferry import --json")?;
        Ok((m, v))
    }

    /// A fresh store that trusts the publisher key in `key`.
    fn receiver(&self, store: &Path, key: &Path) -> Result<()> {
        self.ferry_init(store)?;
        self.ferry(store)
            .args(["trust", "add"])
            .arg(key)
            .output()
            .map(drop)
    }
}

/// `ferry export`'s default `--zstd-level`, read from its `--help`.
fn export_default_level(b: &Bench) -> Option<u32> {
    let help = Cmd::new(&b.ferry)
        .args(["export", "--help"])
        .output()
        .ok()?;
    let line = help.lines().find(|l| l.contains("--zstd-level"))?;
    let rest = &line[line.find("[default: ")? + "[default: ".len()..];
    rest[..rest.find(']')?].trim().parse().ok()
}

pub(crate) fn sh_line(c: &str) -> String {
    Cmd::new("sh")
        .arg("-c")
        .arg(c)
        .output()
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

pub(crate) fn json_of(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text.trim()).with_context(|| format!("{what} printed {text:?}"))
}

pub(crate) fn num(v: &Value, key: &str) -> Result<u64> {
    v[key]
        .as_u64()
        .with_context(|| format!("no number {key:?} in {v}"))
}

pub(crate) fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect()
}

pub(crate) fn file_len(p: &Path) -> Result<u64> {
    Ok(fs::metadata(p)
        .with_context(|| format!("stat {}", p.display()))?
        .len())
}

/// Writes the files `parts` one after another into `out`.
fn concat(parts: &[PathBuf], out: &Path) -> Result<u64> {
    let mut w = File::create(out).with_context(|| format!("create {}", out.display()))?;
    let mut n = 0;
    for p in parts {
        let mut r = File::open(p).with_context(|| format!("open {}", p.display()))?;
        n += io::copy(&mut r, &mut w)?;
    }
    w.sync_all()?;
    Ok(n)
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b as f64
}

pub(crate) fn mib(m: &Measured) -> f64 {
    m.max_rss_kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------------------------
// A. Bytes across the gap for one image pair

/// Everything measured on one image pair.
struct Pair {
    /// The seed store holding x@1 and x@2.
    seed: PathBuf,
    v1_bytes: u64,
    v2_bytes: u64,
    /// (a) `ferry export x@2 --base x@1`.
    delta: Value,
    /// What importing it did on a store holding only x@1.
    delta_import: Value,
    /// (b) v2's layers that v1 lacks, as gzip in the image.
    new_layers: usize,
    new_gz: u64,
    /// (c) v2's blobs (manifest, config, layers) whose digests v1 lacks.
    new_blobs: usize,
    new_blob_bytes: u64,
    /// (d) casync on the uncompressed layer tars.
    tar1: u64,
    tar2: u64,
    casync: Casync,
    /// (e) `zstd --patch-from` on the blobs and on the uncompressed tars.
    patch_blobs: Patch,
    patch_tars: Patch,
    /// (f) re-exports of what the site holds.
    resend: Value,
    resend_import: Value,
    site1: Value,
    site2: Value,
    /// (g) complete exports.
    full1: Value,
    full2: Value,
}

struct Casync {
    /// Apparent bytes and count of the chunk files after v1, after v2.
    store1: u64,
    store2: u64,
    chunks1: u64,
    chunks2: u64,
    /// Allocated bytes (du) after v1 and v2.
    disk1: u64,
    disk2: u64,
    caibx2: u64,
}

impl Casync {
    fn growth(&self) -> u64 {
        self.store2 - self.store1
    }
    /// What must cross the gap: the new chunk files and v2's index.
    fn across(&self) -> u64 {
        self.growth() + self.caibx2
    }
}

pub(crate) struct Patch {
    pub bytes: u64,
    pub m: Measured,
}

fn measure_pair(b: &Bench, name: &str, layout: &Path) -> Result<Pair> {
    eprintln!("ferry-bench: {name}: {}", layout.display());
    let v1 = OciImage::load(layout, "v1")?;
    let v2 = OciImage::load(layout, "v2")?;
    if !v2.layers.starts_with(&v1.layers) {
        eprintln!("ferry-bench: note: {name}: v2's layers do not start with v1's");
    }
    let dir = b.fresh(name)?;
    let seed = dir.join("seed");
    b.ferry_init(&seed)?;
    let source = |tag: &str| format!("oci:{}:{tag}", layout.display());
    b.ferry_add(&seed, "x@1", &source("v1"))?;
    b.ferry_add(&seed, "x@2", &source("v2"))?;
    let key = dir.join("seed.pub");
    b.ferry(&seed).args(["keys", "export"]).run_to(&key)?;

    // (a), (f), (g): the bundles.
    let out = |n: &str| dir.join(n);
    let (_, full1) = b.export(&seed, &["x@1"], &out("full-x1"))?;
    let (_, delta) = b.export(&seed, &["x@2", "--base", "x@1"], &out("delta"))?;
    let (_, resend) = b.export(&seed, &["x@1", "--base", "x@1"], &out("resend"))?;
    let (_, site1) = b.export(&seed, &["x@2", "--site", "s"], &out("site-1"))?;
    let (_, site2) = b.export(&seed, &["x@2", "--site", "s"], &out("site-2"))?;
    let (_, full2) = b.export(&seed, &["x@2"], &out("full-x2"))?;

    // The delta must be enough: verify it with the key alone, then import it where only x@1 is held.
    b.ferry(&dir.join("no-store"))
        .args(["bundle", "verify", "--json"])
        .arg(out("delta"))
        .arg("--key")
        .arg(&key)
        .output()
        .context("verifying the delta bundle")?;
    let recv = dir.join("recv");
    b.receiver(&recv, &key)?;
    let (_, i1) = b.import(&recv, &out("full-x1"))?;
    ensure!(
        names(&i1, "imported") == ["x@1"],
        "{name}: importing the complete x@1 bundle gave {i1}"
    );
    let (_, delta_import) = b.import(&recv, &out("delta"))?;
    ensure!(
        names(&delta_import, "imported") == ["x@2"],
        "{name}: importing the delta into a store holding x@1 gave {delta_import}"
    );
    let (_, resend_import) = b.import(&recv, &out("resend"))?;
    ensure!(
        names(&resend_import, "already_held") == ["x@1"],
        "{name}: importing x@1 --base x@1 gave {resend_import}"
    );
    b.ferry_fsck(&recv)?;

    // (b), (c): the image-level yardsticks.
    let v1_digests: HashSet<&str> = v1.blobs().iter().map(|d| d.0.as_str()).collect();
    let new_layers: Vec<&(String, u64)> = v2
        .layers
        .iter()
        .filter(|l| !v1.layers.contains(l))
        .collect();
    let new_blobs: Vec<&(String, u64)> = v2
        .blobs()
        .into_iter()
        .filter(|d| !v1_digests.contains(d.0.as_str()))
        .collect();
    let sum = |v: &[&(String, u64)]| v.iter().map(|d| d.1).sum::<u64>();

    // (d) casync on the uncompressed layer tars, one store.
    let layers = |img: &OciImage| -> Vec<PathBuf> {
        img.layers.iter().map(|l| blob_path(layout, &l.0)).collect()
    };
    let tar1p = dir.join("v1.tar");
    let tar2p = dir.join("v2.tar");
    Cmd::new("gzip")
        .arg("-dc")
        .args(layers(&v1))
        .run_to(&tar1p)?;
    Cmd::new("gzip")
        .arg("-dc")
        .args(layers(&v2))
        .run_to(&tar2p)?;
    let (tar1, tar2) = (file_len(&tar1p)?, file_len(&tar2p)?);
    let castr = dir.join("casync.castr");
    let casync_make = |idx: &str, input: &Path| {
        Cmd::new("casync")
            .arg("make")
            .arg(format!("--store={}", castr.display()))
            .arg(CASYNC_CHUNKS)
            .arg(dir.join(idx))
            .arg(input)
            .output()
    };
    casync_make("v1.caibx", &tar1p)?;
    let (store1, disk1, chunks1) = tree_size(&castr)?;
    casync_make("v2.caibx", &tar2p)?;
    let (store2, disk2, chunks2) = tree_size(&castr)?;
    let casync = Casync {
        store1,
        store2,
        chunks1,
        chunks2,
        disk1,
        disk2,
        caibx2: file_len(&dir.join("v2.caibx"))?,
    };

    // (e) zstd --patch-from: the image's blobs in manifest order, and the uncompressed tars for reference.
    let blobs = |img: &OciImage| -> Vec<PathBuf> {
        img.blobs()
            .iter()
            .map(|d| blob_path(layout, &d.0))
            .collect()
    };
    let blobs1 = dir.join("v1.blobs");
    let blobs2 = dir.join("v2.blobs");
    let v1_bytes = concat(&blobs(&v1), &blobs1)?;
    let v2_bytes = concat(&blobs(&v2), &blobs2)?;
    let patch_blobs = patch(&blobs1, &blobs2, &dir.join("blobs.patch.zst"))?;
    let patch_tars = patch(&tar1p, &tar2p, &dir.join("tars.patch.zst"))?;
    // The tars and patches are big; only the seed store is needed later.
    for f in [&tar1p, &tar2p, &blobs1, &blobs2] {
        fs::remove_file(f)?;
    }

    Ok(Pair {
        seed,
        v1_bytes,
        v2_bytes,
        delta,
        delta_import,
        new_layers: new_layers.len(),
        new_gz: sum(&new_layers),
        new_blobs: new_blobs.len(),
        new_blob_bytes: sum(&new_blobs),
        tar1,
        tar2,
        casync,
        patch_blobs,
        patch_tars,
        resend,
        resend_import,
        site1,
        site2,
        full1,
        full2,
    })
}

/// `zstd -19 --long=27 --patch-from=REFERENCE TARGET -o OUT`, checked to rebuild TARGET.
pub(crate) fn patch(reference: &Path, target: &Path, out: &Path) -> Result<Patch> {
    let from = format!("--patch-from={}", reference.display());
    eprintln!(
        "ferry-bench: zstd {} {from} {}",
        PATCH_ARGS.join(" "),
        target.display()
    );
    let m = Cmd::new("zstd")
        .args(PATCH_ARGS)
        .arg(&from)
        .arg(target)
        .arg("-o")
        .arg(out)
        .args(["-f", "-q"])
        .measure()?;
    let bytes = file_len(out)?;
    Cmd::new("sh")
        .arg("-c")
        .arg(r#"zstd -dc --long=31 --patch-from="$1" "$2" | cmp -s - "$3""#)
        .arg("sh")
        .arg(reference)
        .arg(out)
        .arg(target)
        .output()
        .with_context(|| format!("{} does not rebuild {}", out.display(), target.display()))?;
    fs::remove_file(out)?;
    Ok(Patch { bytes, m })
}

/// One timed export of pair 1's delta at one zstd level.
struct LevelRun {
    level: u32,
    m: Measured,
    total: u64,
}

fn level_table(b: &Bench, pair: &Pair, levels: &[u32], reps: usize) -> Result<Vec<LevelRun>> {
    let dir = b.fresh("levels")?;
    let mut runs = Vec::new();
    for rep in 0..reps {
        // Rotate the order, so that drift in the machine's state hits every level alike.
        let mut order = levels.to_vec();
        order.rotate_left(rep % levels.len().max(1));
        for level in order {
            warm_tree(&pair.seed)?;
            sync()?;
            measure::wait_quiet(b.quiet_wait)?;
            eprintln!(
                "ferry-bench: levels rep {rep}: ferry export x@2 --base x@1 --zstd-level {level}"
            );
            let (m, v) = b.export(
                &pair.seed,
                &["x@2", "--base", "x@1", "--zstd-level", &level.to_string()],
                &dir.join(format!("l{level}-{rep}")),
            )?;
            eprintln!(
                "ferry-bench:   {:.2} s wall, {} bytes",
                m.wall,
                num(&v, "total_bytes")?
            );
            runs.push(LevelRun {
                level,
                m,
                total: num(&v, "total_bytes")?,
            });
        }
    }
    Ok(runs)
}

#[allow(clippy::too_many_arguments)]
fn bytes_section(
    md: &mut String,
    oci: &Path,
    small: Option<&Result<PathBuf, PathBuf>>,
    pairs: &[(String, Pair)],
    levels: &[LevelRun],
    default_level: Option<u32>,
    reps: usize,
) -> Result<()> {
    writeln!(md, "### A. Bytes across the gap: image v1 → v2\n")?;
    writeln!(
        md,
        "Pair 1: `{}` (umoci): `v1` = the minbase rootfs in one gzip layer, `v2` = v1 + one layer holding {} \
         (`dpkg-deb -x`). ",
        oci.display(),
        LAYER_PKGS
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    match small {
        Some(Ok(p)) => writeln!(
            md,
            "Pair 2: `{}`, the integration tests' fixture (`tools/fixtures/oci-images.sh`): `v1` = six small \
             packages in one layer, `v2` = v1 + a layer of `curl`, `libcurl4`, `libnghttp2-14`.",
            p.display()
        )?,
        Some(Err(p)) => writeln!(
            md,
            "Pair 2 (the integration tests' fixture) was **skipped**: no OCI layout at `{}` (it is built by the \
             integration tests, `tools/fixtures/oci-images.sh`).",
            p.display()
        )?,
        None => {}
    }
    writeln!(
        md,
        "\nSeed store (`ferry init` defaults): `ferry add x@1 oci:DIR:v1`, `ferry add x@2 oci:DIR:v2`; every \
         bundle is written by `ferry export --json … --out D` and its size is `total_bytes` (the index plus the \
         volumes: what crosses the gap). The delta bundle (a) is checked: `ferry bundle verify D --key seed.pub`, \
         then imported into a store holding only x@1 (from a complete x@1 bundle), which must publish x@2; that \
         store then passes `ferry fsck`. The yardsticks:\n\n\
         - (b) the new layer as the image ships it (gzip), the size an ideal layer-level sync would move;\n\
         - (c) the layer-level delta: the sum of v2's blobs (manifest, config, layers) whose digests v1 lacks. \
         Zarf's `--differential` is coarser: its documentation says it omits images *already present in the \
         reference package and pinned* — so a new tag ships the whole image, row (c′);\n\
         - (d) casync: `casync make --store=S {CASYNC_CHUNKS} v1.caibx v1.tar`, then `… v2.caibx v2.tar` into the \
         same store, where vN.tar is `gzip -dc` of the image's layers, bottom first, concatenated (casync's input \
         is the uncompressed tars: it cannot rebuild the gzip blobs, so the receiver would not have the image \
         with its digests). Across the gap: the chunk files the store gained (apparent bytes) plus `v2.caibx`;\n\
         - (e) `zstd {} --patch-from=V1 V2` where VN is the image's blobs concatenated in manifest order \
         (manifest, config, layers bottom first): the bytes a receiver holding v1 needs to rebuild v2's blobs \
         verbatim; each patch is checked to rebuild V2 (`zstd -d --patch-from`). The same on the uncompressed \
         layer tars (the casync input) is given for reference only: it rebuilds tars, not the image.\n",
        PATCH_ARGS.join(" ")
    )?;

    write!(md, "| |")?;
    for (label, _) in pairs {
        write!(md, " {label} |")?;
    }
    write!(md, "\n|---|")?;
    for _ in pairs {
        write!(md, "---:|")?;
    }
    writeln!(md)?;
    let row = |md: &mut String, label: &str, f: &dyn Fn(&Pair) -> Result<String>| -> Result<()> {
        let cells = pairs
            .iter()
            .map(|(_, p)| f(p))
            .collect::<Result<Vec<_>>>()?;
        writeln!(md, "| {label} | {} |", cells.join(" | "))?;
        Ok(())
    };
    let total = |v: &Value| num(v, "total_bytes");
    let x = |a: u64, b: u64| format!("{:.3}", ratio(a, b));
    row(md, "v1 image: manifest + config + layers", &|p| {
        Ok(human(p.v1_bytes))
    })?;
    row(md, "v2 image: manifest + config + layers", &|p| {
        Ok(human(p.v2_bytes))
    })?;
    row(md, "v1 → v2 layer tars, uncompressed", &|p| {
        Ok(format!("{} → {}", mb(p.tar1), mb(p.tar2)))
    })?;
    row(
        md,
        "**(a) `ferry export x@2 --base x@1`**: total_bytes",
        &|p| Ok(format!("**{}**", human(total(&p.delta)?))),
    )?;
    row(md, "(a) index bytes · chunks · payload bytes", &|p| {
        Ok(format!(
            "{} · {} · {}",
            num(&p.delta, "index_bytes")?,
            num(&p.delta, "chunks")?,
            num(&p.delta, "payload_bytes")?
        ))
    })?;
    row(md, "(b) new layer(s), gzip as in the image", &|p| {
        Ok(format!("{} ({} layer)", human(p.new_gz), p.new_layers))
    })?;
    row(
        md,
        &format!("**(a) / (b)**, target <= {TARGET_DELTA_VS_GZIP}"),
        &|p| {
            let r = ratio(total(&p.delta)?, p.new_gz);
            Ok(format!(
                "**{r:.4}** → **{}**",
                verdict(r <= TARGET_DELTA_VS_GZIP)
            ))
        },
    )?;
    row(
        md,
        "(c) layer-level delta: v2 blobs whose digest v1 lacks",
        &|p| {
            Ok(format!(
                "{} ({} blobs)",
                human(p.new_blob_bytes),
                p.new_blobs
            ))
        },
    )?;
    row(md, "(a) / (c)", &|p| {
        Ok(x(total(&p.delta)?, p.new_blob_bytes))
    })?;
    row(
        md,
        "(c′) whole v2 image (image-level differential, new tag)",
        &|p| Ok(human(p.v2_bytes)),
    )?;
    row(md, "(a) / (c′)", &|p| Ok(x(total(&p.delta)?, p.v2_bytes)))?;
    row(
        md,
        "(d) casync: store growth v1 → v2 + `v2.caibx`",
        &|p| {
            Ok(format!(
                "{} ({} + {})",
                human(p.casync.across()),
                p.casync.growth(),
                p.casync.caibx2
            ))
        },
    )?;
    row(md, "(a) / (d)", &|p| {
        Ok(x(total(&p.delta)?, p.casync.across()))
    })?;
    row(
        md,
        &format!(
            "(e) `zstd {} --patch-from`, image blobs",
            PATCH_ARGS.join(" ")
        ),
        &|p| Ok(human(p.patch_blobs.bytes)),
    )?;
    row(md, "(a) / (e)", &|p| {
        Ok(x(total(&p.delta)?, p.patch_blobs.bytes))
    })?;
    row(
        md,
        "(e, reference only) same on the uncompressed layer tars",
        &|p| Ok(human(p.patch_tars.bytes)),
    )?;
    row(md, "(a) / (e, reference only)", &|p| {
        Ok(x(total(&p.delta)?, p.patch_tars.bytes))
    })?;
    row(
        md,
        &format!(
            "**(f) `ferry export x@1 --base x@1`**: total_bytes, target < {} KiB",
            TARGET_RESEND_BYTES / 1024
        ),
        &|p| {
            let t = total(&p.resend)?;
            Ok(format!(
                "**{t}** → **{}**",
                verdict(t < TARGET_RESEND_BYTES)
            ))
        },
    )?;
    row(md, "(f) `ferry export x@2 --site s`, first", &|p| {
        Ok(human(total(&p.site1)?))
    })?;
    row(
        md,
        &format!(
            "**(f) `ferry export x@2 --site s`, second**: total_bytes, target < {} KiB",
            TARGET_RESEND_BYTES / 1024
        ),
        &|p| {
            let t = total(&p.site2)?;
            Ok(format!(
                "**{t}** ({} chunks) → **{}**",
                num(&p.site2, "chunks")?,
                verdict(t < TARGET_RESEND_BYTES)
            ))
        },
    )?;
    row(md, "(g) complete `ferry export x@2`: total_bytes", &|p| {
        Ok(human(total(&p.full2)?))
    })?;
    row(md, "(g) / v2 image", &|p| {
        Ok(x(total(&p.full2)?, p.v2_bytes))
    })?;
    row(md, "complete `ferry export x@1`: total_bytes", &|p| {
        Ok(human(total(&p.full1)?))
    })?;
    row(md, "check: (a) imported where only x@1 is held", &|p| {
        Ok(format!(
            "{}; {} chunks new, {} stored bytes new",
            names(&p.delta_import, "imported").join(", "),
            num(&p.delta_import, "chunks_new")?,
            num(&p.delta_import, "stored_bytes_new")?
        ))
    })?;
    row(md, "check: (f) `--base x@1` imported there", &|p| {
        Ok(format!(
            "already held: {}",
            names(&p.resend_import, "already_held").join(", ")
        ))
    })?;
    row(
        md,
        "casync: chunk files after v1 → v2; store on disk (du) growth",
        &|p| {
            Ok(format!(
                "{} → {}; {}",
                p.casync.chunks1,
                p.casync.chunks2,
                human(p.casync.disk2 - p.casync.disk1)
            ))
        },
    )?;
    row(
        md,
        "wall s (one run, for scale): zstd patch blobs · tars",
        &|p| {
            Ok(format!(
                "{:.1} · {:.1}",
                p.patch_blobs.m.wall, p.patch_tars.m.wall
            ))
        },
    )?;
    writeln!(md)?;

    // The level table, on pair 1's delta.
    let (label, p1) = &pairs[0];
    writeln!(
        md,
        "**Bundle zstd level**, {label}: `ferry export x@2 --base x@1 --zstd-level N --json --out D`, each level \
         {reps} times (fresh D, the seed store read once beforehand, `sync` and a quiet machine before each run, \
         levels in rotated order). Bytes are `total_bytes`; times are medians.\n"
    )?;
    writeln!(
        md,
        "| `--zstd-level` | total_bytes | / default level | / new layer gzip | wall s | CPU s | peak RSS MiB | other CPU s |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    let mut lv: Vec<u32> = levels.iter().map(|r| r.level).collect();
    lv.sort_unstable();
    lv.dedup();
    let default_total = default_level
        .and_then(|d| levels.iter().find(|r| r.level == d))
        .map(|r| r.total);
    for level in lv {
        let runs: Vec<&LevelRun> = levels.iter().filter(|r| r.level == level).collect();
        let sizes: HashSet<u64> = runs.iter().map(|r| r.total).collect();
        let bytes = runs[0].total;
        let med = |f: &dyn Fn(&Measured) -> f64| {
            median(&runs.iter().map(|r| f(&r.m)).collect::<Vec<_>>())
        };
        writeln!(
            md,
            "| {level}{} | {}{} | {} | {:.3} | {:.2} | {:.2} | {:.0} | {:.1} |",
            if Some(level) == default_level {
                " (default)"
            } else {
                ""
            },
            human(bytes),
            if sizes.len() > 1 {
                " (varies between runs)"
            } else {
                ""
            },
            default_total.map_or("?".into(), |d| format!("{:.4}", ratio(bytes, d))),
            ratio(bytes, p1.new_gz),
            med(&|m| m.wall),
            med(&|m| m.cpu()),
            runs.iter().map(|r| mib(&r.m)).fold(0.0, f64::max),
            med(&|m| m.others),
        )?;
    }
    writeln!(md, "\nPeak RSS is the largest of the runs.\n")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// B. Verify and import speed and memory on a bundle of several GB

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    Cat,
    Zstd,
    Verify,
    Import,
}

impl Reader {
    const ALL: [Reader; 4] = [Reader::Cat, Reader::Zstd, Reader::Verify, Reader::Import];

    fn name(self) -> &'static str {
        match self {
            Reader::Cat => "cat (read floor)",
            Reader::Zstd => "zstd -dc (decode floor)",
            Reader::Verify => "ferry bundle verify",
            Reader::Import => "ferry import",
        }
    }
}

struct ReadRun {
    reader: Reader,
    rep: usize,
    m: Measured,
    /// `sync` right after the run (imports: the writeback left behind).
    sync_s: f64,
}

fn speed_section(
    md: &mut String,
    b: &Bench,
    big: &Path,
    tar: &Path,
    debs: &Path,
    reps: usize,
) -> Result<()> {
    let dir = b.fresh("speed")?;
    let seed = dir.join("seed");
    b.ferry_init(&seed)?;
    let sources = [
        format!("file:{}", big.display()),
        format!("file:{}", tar.display()),
        format!("dir:{}", debs.display()),
    ];
    for s in [big, tar, debs] {
        warm_tree(s)?;
    }
    sync()?;
    eprintln!("ferry-bench: speed: ferry add big@1 {}", sources.join(" "));
    let add = b
        .ferry(&seed)
        .args(["add", "--json", "big@1"])
        .args(&sources)
        .measure()?;
    let add_v = json_of(&add.stdout, "ferry add --json")?;
    let key = dir.join("seed.pub");
    b.ferry(&seed).args(["keys", "export"]).run_to(&key)?;

    let bundle = dir.join("bundle");
    warm_tree(&seed)?;
    sync()?;
    measure::wait_quiet(b.quiet_wait)?;
    eprintln!("ferry-bench: speed: ferry export big@1 --volume-size {VOLUME_SIZE}");
    let (exp_m, exp) = b.export(&seed, &["big@1", "--volume-size", VOLUME_SIZE], &bundle)?;
    let exp_sync = sync()?;
    let payload = num(&exp, "payload_bytes")?;
    let chunks = num(&exp, "chunks")?;
    let stream = num(&exp, "stream_bytes")?;
    let volumes: Vec<PathBuf> = exp["volumes"]
        .as_array()
        .context("export --json without volumes")?
        .iter()
        .map(|v| bundle.join(v[0].as_str().unwrap_or("?")))
        .collect();
    let volume_sizes: Vec<String> = exp["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| mb(v[1].as_u64().unwrap_or(0)))
        .collect();
    eprintln!(
        "ferry-bench:   {:.2} s wall; {} volumes, {} stream bytes, {payload} payload bytes",
        exp_m.wall,
        volumes.len(),
        stream
    );
    // The volumes concatenated are one multi-frame zstd stream of chunk records.
    let decoded =
        measure::pipeline_bytes(&[Cmd::new("cat").args(&volumes), Cmd::new("zstd").arg("-dc")])?;
    let decoded_ok = (payload + RECORD_GAP.start() * chunks..=payload + RECORD_GAP.end() * chunks)
        .contains(&decoded);

    let no_store = dir.join("no-store");
    let cat_sh = r#"cat "$@" > /dev/null"#;
    let zstd_sh = r#"cat "$@" | zstd -dc > /dev/null"#;
    let mut runs: Vec<ReadRun> = Vec::new();
    let mut last_store = None;
    for rep in 0..reps {
        let mut order = Reader::ALL.to_vec();
        order.rotate_left(rep % Reader::ALL.len());
        for reader in order {
            let cmd = match reader {
                Reader::Cat => Cmd::new("sh")
                    .arg("-c")
                    .arg(cat_sh)
                    .arg("sh")
                    .args(&volumes),
                Reader::Zstd => Cmd::new("sh")
                    .arg("-c")
                    .arg(zstd_sh)
                    .arg("sh")
                    .args(&volumes),
                Reader::Verify => b
                    .ferry(&no_store)
                    .args(["bundle", "verify", "--json"])
                    .arg(&bundle)
                    .arg("--key")
                    .arg(&key),
                Reader::Import => {
                    let store = dir.join(format!("import-{rep}"));
                    b.receiver(&store, &key)?;
                    last_store = Some(store.clone());
                    b.ferry(&store).args(["import", "--json"]).arg(&bundle)
                }
            };
            warm_tree(&bundle)?;
            sync()?;
            measure::wait_quiet(b.quiet_wait)?;
            eprintln!("ferry-bench: speed rep {rep}: {}", reader.name());
            let m = cmd.measure()?;
            let sync_s = sync()?;
            match reader {
                Reader::Verify => {
                    let v = json_of(&m.stdout, "bundle verify --json")?;
                    ensure!(
                        num(&v, "payload_bytes")? == payload && num(&v, "chunks")? == chunks,
                        "bundle verify --json counts differ from the export's: {v}"
                    );
                }
                Reader::Import => {
                    let v = json_of(&m.stdout, "import --json")?;
                    ensure!(
                        names(&v, "imported") == ["big@1"] && num(&v, "chunks_new")? == chunks,
                        "import into a fresh store gave {v}"
                    );
                }
                _ => {}
            }
            eprintln!(
                "ferry-bench:   {:.2} s wall ({:.0} MB/s payload), {:.0} MiB peak RSS",
                m.wall,
                payload as f64 / m.wall / 1e6,
                mib(&m)
            );
            runs.push(ReadRun {
                reader,
                rep,
                m,
                sync_s,
            });
        }
    }
    // The last imported store must hold the release whole.
    let fsck = match &last_store {
        Some(s) => Some(b.ferry_fsck(s)?),
        None => None,
    };

    let mbs = |s: f64| payload as f64 / s / 1e6;
    writeln!(
        md,
        "### B. Verify and import speed on a bundle of several GB\n"
    )?;
    writeln!(
        md,
        "Seed store (`ferry init` defaults): `ferry add big@1 file:fixtures/big.bin file:fixtures/ingest.tar \
         dir:fixtures/debs` ({} logical bytes, {} chunks; {:.1} s, peak RSS {:.0} MiB), then `ferry export big@1 \
         --volume-size {VOLUME_SIZE} --out D` (complete): {} chunks, payload {}, stream {} in {} volumes ({}), \
         index {} bytes; {:.1} s wall (+{:.1} s `sync`), {:.1} CPU s, peak RSS {:.0} MiB.\n",
        json_num(&add_v, "logical_bytes"),
        json_num(&add_v, "chunks"),
        add.wall,
        mib(&add),
        chunks,
        human(payload),
        human(stream),
        volumes.len(),
        volume_sizes.join(", "),
        json_num(&exp, "index_bytes"),
        exp_m.wall,
        exp_sync,
        exp_m.cpu(),
        mib(&exp_m),
    )?;
    writeln!(
        md,
        "Each rep runs, in rotated order, with the bundle read once beforehand (page cache warm), `sync`, and a \
         quiet machine before each run: *cat*, `sh -c '{cat_sh}' sh VOLUMES` (the read floor); *zstd -dc*, \
         `sh -c '{zstd_sh}' sh VOLUMES` (the decode floor, on one core: the volumes concatenated are one \
         multi-frame zstd stream of chunk records, which decodes to payload + a 1-10 byte gap per chunk: {}); `ferry bundle verify D --key seed.pub \
         --json` with no store; `ferry import D --json` into a fresh store that trusts the seed key (`ferry init`, \
         `ferry trust add seed.pub`, not timed). MB/s is the bundle's payload bytes ({}) per second of wall \
         time, for every row; *sync s* is the `sync` right after (the writeback an import leaves behind); \
         *other CPU s* is what the rest of the machine used meanwhile. {}\n",
        if decoded_ok {
            format!("checked, {decoded} bytes")
        } else {
            format!(
                "**it decoded to {decoded} bytes, expected {} to {}**",
                payload + RECORD_GAP.start() * chunks,
                payload + RECORD_GAP.end() * chunks
            )
        },
        payload,
        match &fsck {
            Some(f) => format!(
                "The last import's store then passed `ferry fsck` (chunks: {}, releases: {}).",
                f["chunks"], f["releases"]
            ),
            None => String::new(),
        }
    )?;
    writeln!(
        md,
        "| rep | run | wall s | payload MB/s | CPU s (user+sys) | CPU/wall | peak RSS MiB | sync s | other CPU s |"
    )?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for r in &runs {
        writeln!(
            md,
            "| {} | {} | {:.2} | {:.1} | {:.2} ({:.2}+{:.2}) | {:.2} | {:.1} | {:.2} | {:.1} |",
            r.rep,
            r.reader.name(),
            r.m.wall,
            mbs(r.m.wall),
            r.m.cpu(),
            r.m.user,
            r.m.sys,
            r.m.cpu() / r.m.wall,
            mib(&r.m),
            r.sync_s,
            r.m.others
        )?;
    }
    let wall = |reader: Reader| {
        median(
            &runs
                .iter()
                .filter(|r| r.reader == reader)
                .map(|r| r.m.wall)
                .collect::<Vec<_>>(),
        )
    };
    let cpu = |reader: Reader| {
        median(
            &runs
                .iter()
                .filter(|r| r.reader == reader)
                .map(|r| r.m.cpu())
                .collect::<Vec<_>>(),
        )
    };
    let rss = |reader: Reader| {
        runs.iter()
            .filter(|r| r.reader == reader)
            .map(|r| mib(&r.m))
            .fold(0.0, f64::max)
    };
    let (cat_w, zstd_w) = (wall(Reader::Cat), wall(Reader::Zstd));
    writeln!(
        md,
        "\n| median of {reps} | wall s | payload MB/s | wall / cat | wall / zstd -dc | CPU s | max peak RSS MiB |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|")?;
    for reader in Reader::ALL {
        let w = wall(reader);
        writeln!(
            md,
            "| {} | {w:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} |",
            reader.name(),
            mbs(w),
            w / cat_w,
            w / zstd_w,
            cpu(reader),
            rss(reader)
        )?;
    }
    let (vw, iw) = (wall(Reader::Verify), wall(Reader::Import));
    let (vr, ir) = (rss(Reader::Verify), rss(Reader::Import));
    writeln!(md, "\n| target | measured | verdict |")?;
    writeln!(md, "|---|---:|---|")?;
    writeln!(
        md,
        "| `ferry bundle verify` >= {TARGET_VERIFY_MBS} MB/s payload | {:.1} MB/s | **{}** |",
        mbs(vw),
        verdict(mbs(vw) >= TARGET_VERIFY_MBS)
    )?;
    writeln!(
        md,
        "| `ferry bundle verify` peak RSS <= {TARGET_RSS_MIB} MiB | {vr:.1} MiB | **{}** |",
        verdict(vr <= TARGET_RSS_MIB)
    )?;
    writeln!(
        md,
        "| `ferry import` >= {TARGET_IMPORT_MBS} MB/s payload | {:.1} MB/s | **{}** |",
        mbs(iw),
        verdict(mbs(iw) >= TARGET_IMPORT_MBS)
    )?;
    writeln!(
        md,
        "| `ferry import` peak RSS <= {TARGET_RSS_MIB} MiB | {ir:.1} MiB | **{}** |",
        verdict(ir <= TARGET_RSS_MIB)
    )?;
    writeln!(
        md,
        "\nSpeeds are medians of {reps}; peak RSS is the largest of the runs.\n"
    )?;
    Ok(())
}

fn json_num(v: &Value, key: &str) -> String {
    v[key]
        .as_u64()
        .map_or_else(|| v[key].to_string(), |n| n.to_string())
}
