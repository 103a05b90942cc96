//! `ferry-bench gzip --work DIR`: compressed artifacts (issue 6), on a corpus of real version pairs of gzip
//! artifacts built by `tools/fixtures/gzip-corpus.sh` (a Debian base image rebuilt as one layer, gzipped by Go's
//! standard library and by umoci's pgzip; two npm tarballs; two crates; a Django sdist; a Helm chart).
//!
//! For each pair OLD → NEW: NEW's compressed size; the layer-level delta (the whole NEW blob when its digest
//! differs); `ferry export NAME@2 --base NAME@1` after `ferry add NAME@1 file:OLD`, `ferry add NAME@2 file:NEW`;
//! `zstd -19 --long=27 --patch-from` on the decompressed streams; the same Ferry delta on the decompressed
//! streams (what chunking the raw data could reach, before any re-creation data); the share of blob bytes
//! re-created exactly; and the ingest cost of `ferry add` of NEW (wall, CPU, MB per CPU-second) next to
//! `ferry add` of NEW's raw stream and `gzip -dc`. The base-image pair from umoci is also ingested as an OCI
//! image (`oci:LAYOUT:TAG`).
//!
//! It prints a markdown section on stdout; `--write docs/benchmarks.md` also replaces its own marked section
//! there (the other sections are left alone).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::bundle::{file_len, num, patch, sh_line, Patch};
use crate::fixtures::OciImage;
use crate::measure::{self, median, sync, tree_size, warm, Cmd, Measured};
use crate::{environment, human, verdict, Bench};

pub const BEGIN: &str = "<!-- BEGIN ferry-bench gzip (generated; edit outside these markers) -->";
pub const END: &str = "<!-- END ferry-bench gzip -->";

/// The corpus, in report order: the directories `gzip-corpus.sh` makes.
const PAIRS: [&str; 8] = [
    "debian-go",
    "debian-pgzip",
    "npm-typescript",
    "npm-prettier",
    "crate-tokio",
    "crate-syn",
    "sdist-django",
    "helm-chart",
];
/// The rebuilt base image, one pair per producer.
const BASE_IMAGE: [&str; 2] = ["debian-go", "debian-pgzip"];
/// Issue 6's targets, as Ferry's bundle delta / the layer-level delta.
const TARGET_BASE_IMAGE: f64 = 0.2;
const TARGET_GEOMEAN: f64 = 0.25;
const TARGET_WORST: f64 = 1.0;
/// The field of `ferry add --json` that will say how many blob bytes were re-created exactly from raw data plus
/// re-creation data (issue 6); absent today, when every blob is stored as is.
const RECREATED_FIELD: &str = "recreated_bytes";

#[derive(clap::Args)]
pub struct GzipArgs {
    /// Working directory: the corpus is built in WORK/corpus (unless --corpus), stores are made in WORK/runs.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary (default: target/release/ferry of this workspace).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// A corpus built by tools/fixtures/gzip-corpus.sh (default: WORK/corpus, built or checked first).
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// Only these pairs (comma-separated names of the corpus's directories; default: all of them).
    #[arg(long, value_delimiter = ',', value_name = "PAIR")]
    only: Vec<String>,
    /// Repetitions of each timed ingest (fresh stores each time; medians reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also write the results into FILE between the ferry-bench gzip markers (appended if absent).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Before each timed run, wait up to SECS for other work on the machine to calm down.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    quiet_wait: u64,
    /// Keep the stores, bundles and raw streams made in WORK/runs/TIMESTAMP (deleted at the end otherwise).
    #[arg(long)]
    keep_stores: bool,
}

pub fn run(args: GzipArgs) -> Result<()> {
    let b = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &["/usr/bin/time", "zstd", "gzip", "cmp", "sha256sum"],
    )?;
    let corpus = match &args.corpus {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("no corpus at {}", p.display()))?,
        None => {
            let dir = b.work.join("corpus");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/gzip-corpus.sh");
            Cmd::new(script).arg(&dir).run()?;
            dir
        }
    };
    let stamp = fs::read_to_string(corpus.join(".done"))
        .with_context(|| format!("{} is not a finished corpus (no .done)", corpus.display()))?;
    let reps = args.reps.max(1);

    for name in &args.only {
        ensure!(
            PAIRS.contains(&name.as_str()),
            "no pair {name:?}; the pairs are {PAIRS:?}"
        );
    }
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mut pairs = Vec::new();
    for name in PAIRS.into_iter().filter(|n| wanted(n)) {
        pairs.push(measure_pair(&b, &corpus, name, reps)?);
    }
    let layout = corpus.join("debian-pgzip/layout");
    let oci = if !wanted("debian-pgzip") {
        None
    } else if layout.join("index.json").is_file() {
        Some(measure_oci(&b, &layout)?)
    } else {
        eprintln!(
            "ferry-bench: note: no OCI layout at {}; the oci: route is skipped",
            layout.display()
        );
        None
    };

    let mut md = String::new();
    environment(&mut md, &b, "Results: compressed artifacts (corpus)")?;
    // More lines in the environment's list.
    md.truncate(md.trim_end().len());
    md.push('\n');
    writeln!(
        md,
        "- gzip: {}; go: {}; umoci: {}",
        sh_line("gzip --version | head -1"),
        sh_line("go version | cut -d' ' -f3"),
        sh_line("umoci --version | head -1"),
    )?;
    writeln!(
        md,
        "- corpus: `{}` (`tools/fixtures/gzip-corpus.sh`, stamp `{}`)\n",
        corpus.display(),
        stamp.trim()
    )?;
    report(&mut md, &pairs, oci.as_ref(), reps)?;
    b.finish(args.keep_stores)?;
    crate::publish(&md, args.write.as_deref(), BEGIN, END)
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring

/// One bundle delta: `ferry export NAME@2 --base NAME@1`.
struct Delta {
    /// `total_bytes`: the index plus the volumes, what crosses the gap.
    total: u64,
    /// Every file in the bundle directory, for a check against `total`.
    dir_bytes: u64,
    chunks: u64,
    payload: u64,
    index: u64,
}

/// A store holding NAME@1 and NAME@2: the timed adds of NAME@2 and the delta.
struct Ingested {
    delta: Delta,
    /// `ferry add` of the new version, one per repetition.
    adds: Vec<Measured>,
    /// `ferry add --json` of the new version (first repetition).
    add_json: Value,
}

struct PairResult {
    name: &'static str,
    info: Vec<(String, String)>,
    old_gz: u64,
    new_gz: u64,
    old_raw: u64,
    new_raw: u64,
    /// The whole new blob if its digest differs from the old one's, else 0.
    layer_delta: u64,
    patch: Patch,
    ferry: Ingested,
    raw: Ingested,
    /// `gzip -dc NEW > /dev/null`, one per repetition.
    gunzip: Vec<Measured>,
}

impl PairResult {
    fn ratio(&self) -> f64 {
        self.ferry.delta.total as f64 / self.layer_delta as f64
    }

    fn info(&self, key: &str) -> &str {
        self.info
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Blob bytes of the new version re-created exactly (from raw data plus re-creation data), if Ferry says.
    fn recreated(&self) -> Option<u64> {
        self.ferry.add_json[RECREATED_FIELD].as_u64()
    }
}

fn measure_pair(b: &Bench, corpus: &Path, name: &'static str, reps: usize) -> Result<PairResult> {
    let src = corpus.join(name);
    let (old, new) = (src.join("old"), src.join("new"));
    let info = fs::read_to_string(src.join("info"))
        .with_context(|| format!("read {}/info", src.display()))?
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    eprintln!("ferry-bench: gzip: {name}");
    let dir = b.fresh(name)?;
    let (old_gz, new_gz) = (file_len(&old)?, file_len(&new)?);
    let layer_delta = if sha256(&old)? == sha256(&new)? {
        0
    } else {
        new_gz
    };
    ensure!(layer_delta > 0, "{name}: old and new are the same blob");

    // The decompressed streams (for the tarballs, the raw tars).
    let (old_rawp, new_rawp) = (dir.join("old.raw"), dir.join("new.raw"));
    Cmd::new("gzip").arg("-dc").arg(&old).run_to(&old_rawp)?;
    Cmd::new("gzip").arg("-dc").arg(&new).run_to(&new_rawp)?;
    let (old_raw, new_raw) = (file_len(&old_rawp)?, file_len(&new_rawp)?);
    let patch = patch(&old_rawp, &new_rawp, &dir.join("raw.patch.zst"))?;

    let ferry = ingest(b, &dir.join("blobs"), name, &old, &new, reps)?;
    let raw = ingest(b, &dir.join("raw"), name, &old_rawp, &new_rawp, reps)?;
    let mut gunzip = Vec::new();
    for _ in 0..reps {
        warm(&new)?;
        measure::wait_quiet(b.quiet_wait)?;
        gunzip.push(
            Cmd::new("sh")
                .arg("-c")
                .arg(r#"gzip -dc "$1" >/dev/null"#)
                .arg("sh")
                .arg(&new)
                .measure()?,
        );
    }
    Ok(PairResult {
        name,
        info,
        old_gz,
        new_gz,
        old_raw,
        new_raw,
        layer_delta,
        patch,
        ferry,
        raw,
        gunzip,
    })
}

/// `ferry add NAME@1 file:OLD` then, timed, `ferry add NAME@2 file:NEW`, in a fresh store per repetition; the
/// first store also exports the delta.
fn ingest(
    b: &Bench,
    dir: &Path,
    name: &str,
    old: &Path,
    new: &Path,
    reps: usize,
) -> Result<Ingested> {
    fs::create_dir_all(dir)?;
    let (r1, r2) = (format!("{name}@1"), format!("{name}@2"));
    let mut adds = Vec::new();
    let mut first = None;
    for rep in 0..reps {
        let store = dir.join(format!("store-{rep}"));
        b.ferry_init(&store)?;
        b.ferry_add(&store, &r1, &format!("file:{}", old.display()))?;
        warm(new)?;
        sync()?;
        measure::wait_quiet(b.quiet_wait)?;
        let (m, v) = b.ferry_add(&store, &r2, &format!("file:{}", new.display()))?;
        eprintln!(
            "ferry-bench:   add {r2} file:{}: {:.2} s wall, {:.2} CPU s",
            new.display(),
            m.wall,
            m.cpu()
        );
        adds.push(m);
        if rep == 0 {
            let delta = export_delta(b, &store, &r2, &r1, &dir.join("delta"))?;
            first = Some((delta, v));
        }
    }
    let (delta, add_json) = first.context("no repetitions")?;
    Ok(Ingested {
        delta,
        adds,
        add_json,
    })
}

fn export_delta(b: &Bench, store: &Path, new: &str, base: &str, out: &Path) -> Result<Delta> {
    let (_, v) = b.export(store, &[new, "--base", base], out)?;
    let d = Delta {
        total: num(&v, "total_bytes")?,
        dir_bytes: tree_size(out)?.0,
        chunks: num(&v, "chunks")?,
        payload: num(&v, "payload_bytes")?,
        index: num(&v, "index_bytes")?,
    };
    if d.total != d.dir_bytes {
        eprintln!(
            "ferry-bench: note: {}: total_bytes {} but the directory holds {} bytes",
            out.display(),
            d.total,
            d.dir_bytes
        );
    }
    Ok(d)
}

/// The umoci pair as an OCI image: `ferry add x@1 oci:LAYOUT:v1`, `ferry add x@2 oci:LAYOUT:v2`, the delta, and
/// the image-level yardstick (v2's blobs whose digests v1 lacks: manifest, config, layer).
struct OciResult {
    layout: PathBuf,
    new_blobs: usize,
    new_blob_bytes: u64,
    delta: Delta,
    add: Measured,
}

fn measure_oci(b: &Bench, layout: &Path) -> Result<OciResult> {
    eprintln!("ferry-bench: gzip: debian-pgzip as an OCI image");
    let v1 = OciImage::load(layout, "v1")?;
    let v2 = OciImage::load(layout, "v2")?;
    let new: Vec<&(String, u64)> = v2
        .blobs()
        .into_iter()
        .filter(|d| !v1.blobs().contains(d))
        .collect();
    let dir = b.fresh("debian-pgzip-oci")?;
    let store = dir.join("store");
    b.ferry_init(&store)?;
    let source = |tag: &str| format!("oci:{}:{tag}", layout.display());
    b.ferry_add(&store, "debian@1", &source("v1"))?;
    sync()?;
    measure::wait_quiet(b.quiet_wait)?;
    let (add, _) = b.ferry_add(&store, "debian@2", &source("v2"))?;
    let delta = export_delta(b, &store, "debian@2", "debian@1", &dir.join("delta"))?;
    Ok(OciResult {
        layout: layout.to_owned(),
        new_blobs: new.len(),
        new_blob_bytes: new.iter().map(|d| d.1).sum(),
        delta,
        add,
    })
}

fn sha256(p: &Path) -> Result<String> {
    let out = Cmd::new("sha256sum").arg(p).output()?;
    Ok(out.split_whitespace().next().unwrap_or_default().to_owned())
}

// ---------------------------------------------------------------------------------------------------------------
// The report

fn mbs(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// Bytes, in MB above 1 MB and in kB below, for the wide tables.
pub(crate) fn short(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.2} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}

pub(crate) fn geomean(xs: &[f64]) -> f64 {
    (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp()
}

fn med(ms: &[Measured], f: impl Fn(&Measured) -> f64) -> f64 {
    median(&ms.iter().map(f).collect::<Vec<_>>())
}

fn report(
    md: &mut String,
    pairs: &[PairResult],
    oci: Option<&OciResult>,
    reps: usize,
) -> Result<()> {
    writeln!(md, "### The corpus\n")?;
    writeln!(
        md,
        "Each pair is two versions of one artifact, compressed exactly as its producer wrote it; *raw* is the \
         decompressed stream (`gzip -dc`: for every pair here, a tar).\n"
    )?;
    writeln!(
        md,
        "| pair | versions | producer | old → new compressed | old → new raw |"
    )?;
    writeln!(md, "|---|---|---|---:|---:|")?;
    for p in pairs {
        let versions = match p.info("versions") {
            "" => format!("{}; changed: {}", p.info("new"), p.info("changed")),
            v => v.to_owned(),
        };
        writeln!(
            md,
            "| {} | {} | {} | {} → {} | {} → {} |",
            p.name,
            versions,
            p.info("producer"),
            short(p.old_gz),
            short(p.new_gz),
            short(p.old_raw),
            short(p.new_raw)
        )?;
    }

    writeln!(md, "\n### Bytes across the gap\n")?;
    writeln!(
        md,
        "Per pair, a fresh store (`ferry init` defaults): `ferry add P@1 file:OLD`, `ferry add P@2 file:NEW`, \
         then `ferry export --json P@2 --base P@1 --out D`; *Ferry* is its `total_bytes` (index + volumes: every \
         byte of D). *Layer-level* is what a layer-level tool (Zarf, Hauler, `skopeo sync`) moves: the whole new \
         blob, since its digest differs. *zstd patch* is `zstd -19 --long=27 --patch-from=OLD.raw NEW.raw` on the \
         decompressed streams (checked to rebuild NEW.raw; it rebuilds the tar, not the compressed blob). \
         *Ferry on raw* is the same Ferry delta with the decompressed streams ingested instead (`file:OLD.raw`, \
         `file:NEW.raw`): what chunking the raw data reaches before any re-creation data is added — a reference \
         for issue 6, not a way to ship the blob. *Re-created* is the share of the new blob's bytes that Ferry \
         stores as raw data plus re-creation data rather than as is (`{RECREATED_FIELD}` of `ferry add --json` \
         when present).\n"
    )?;
    writeln!(
        md,
        "| pair | new blob | layer-level delta | **Ferry** | chunks · payload | **Ferry / layer** | zstd patch (raw) | zstd / layer | Ferry on raw | raw / layer | re-created |"
    )?;
    writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for p in pairs {
        let recreated = p.recreated().unwrap_or(0);
        writeln!(
            md,
            "| {} | {} | {} | **{}** | {} · {} | **{:.3}** | {} | {:.3} | {} | {:.3} | {:.0} % |",
            p.name,
            short(p.new_gz),
            short(p.layer_delta),
            short(p.ferry.delta.total),
            p.ferry.delta.chunks,
            short(p.ferry.delta.payload),
            p.ratio(),
            short(p.patch.bytes),
            p.patch.bytes as f64 / p.layer_delta as f64,
            short(p.raw.delta.total),
            p.raw.delta.total as f64 / p.layer_delta as f64,
            100.0 * recreated as f64 / p.new_gz as f64,
        )?;
    }
    let ratios: Vec<f64> = pairs.iter().map(PairResult::ratio).collect();
    let gm = geomean(&ratios);
    let gm_patch = geomean(
        &pairs
            .iter()
            .map(|p| p.patch.bytes as f64 / p.layer_delta as f64)
            .collect::<Vec<_>>(),
    );
    let gm_raw = geomean(
        &pairs
            .iter()
            .map(|p| p.raw.delta.total as f64 / p.layer_delta as f64)
            .collect::<Vec<_>>(),
    );
    writeln!(
        md,
        "| **geometric mean** | | | | | **{gm:.3}** | | {gm_patch:.3} | | {gm_raw:.3} | |"
    )?;
    writeln!(
        md,
        "\nBundle index bytes per pair (part of *Ferry*): {}.",
        pairs
            .iter()
            .map(|p| format!("{} {}", p.name, p.ferry.delta.index))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    if let Some(o) = oci {
        writeln!(
            md,
            "\n`debian-pgzip` as an OCI image too (`ferry add debian@1 oci:{}:v1`, then `…:v2`): the \
             image-level delta — v2's blobs whose digests v1 lacks ({} blobs: manifest, config, layer) — is {}; \
             `ferry export debian@2 --base debian@1` is **{}** ({} chunks, payload {}), **{:.3}** of it. \
             `ferry add` of v2: {:.2} s wall, {:.2} CPU s.",
            o.layout.display(),
            o.new_blobs,
            human(o.new_blob_bytes),
            human(o.delta.total),
            o.delta.chunks,
            human(o.delta.payload),
            o.delta.total as f64 / o.new_blob_bytes as f64,
            o.add.wall,
            o.add.cpu(),
        )?;
    }

    writeln!(md, "\n### Issue 6's targets\n")?;
    writeln!(md, "| target | measured | verdict |")?;
    writeln!(md, "|---|---|---|")?;
    for name in BASE_IMAGE {
        let Some(p) = pairs.iter().find(|p| p.name == name) else {
            writeln!(md, "| `{name}`: Ferry <= {TARGET_BASE_IMAGE} of the layer-level delta | not measured (`--only`) | |")?;
            continue;
        };
        writeln!(
            md,
            "| `{name}`: Ferry <= {TARGET_BASE_IMAGE} of the layer-level delta | {:.3} ({} of {}) | **{}** |",
            p.ratio(),
            short(p.ferry.delta.total),
            short(p.layer_delta),
            verdict(p.ratio() <= TARGET_BASE_IMAGE)
        )?;
    }
    writeln!(
        md,
        "| geometric mean across the corpus <= {TARGET_GEOMEAN} | {gm:.3} ({} pairs) | **{}** |",
        pairs.len(),
        verdict(gm <= TARGET_GEOMEAN)
    )?;
    let worst = pairs
        .iter()
        .max_by(|a, b| a.ratio().total_cmp(&b.ratio()))
        .context("empty corpus")?;
    writeln!(
        md,
        "| no pair worse than layer-level (Ferry / layer <= {TARGET_WORST}) | worst {:.3} (`{}`) | **{}** |",
        worst.ratio(),
        worst.name,
        verdict(worst.ratio() <= TARGET_WORST)
    )?;
    writeln!(
        md,
        "| ingest cost per core written down against plain ingest | the table below: *add* against *raw add* and `gzip -dc` | recorded |"
    )?;

    writeln!(md, "\n### Ingest cost\n")?;
    writeln!(
        md,
        "`ferry add --json P@2 file:NEW` into a store holding P@1 (fresh store per repetition, NEW in the page \
         cache, `sync` and a quiet machine before each), medians of {reps}. *MB / CPU-s* is MB of input per CPU \
         second (user + sys, `/usr/bin/time`): of the compressed blob and of the raw stream it holds. *raw add* \
         is the same with the decompressed streams (`file:NEW.raw` into a store holding OLD.raw); *gzip -dc* is \
         `gzip -dc NEW >/dev/null`. Gzip-aware ingest has to do at least a decompression and the raw add. \
         *other CPU s* is what the rest of the machine used during the blob add (noise).\n"
    )?;
    writeln!(
        md,
        "| pair | new blob | raw | **add: wall s** | **add: CPU s** | add: blob MB / CPU-s | add: raw MB / CPU-s | raw add: wall s | raw add: CPU s | raw add: raw MB / CPU-s | gzip -dc: CPU s | other CPU s |"
    )?;
    writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    let (mut tot_gz, mut tot_raw, mut tot_cpu, mut tot_raw_cpu, mut tot_gunzip) =
        (0u64, 0u64, 0.0, 0.0, 0.0);
    for p in pairs {
        let wall = med(&p.ferry.adds, |m| m.wall);
        let cpu = med(&p.ferry.adds, Measured::cpu);
        let rwall = med(&p.raw.adds, |m| m.wall);
        let rcpu = med(&p.raw.adds, Measured::cpu);
        let gcpu = med(&p.gunzip, Measured::cpu);
        let others = med(&p.ferry.adds, |m| m.others);
        tot_gz += p.new_gz;
        tot_raw += p.new_raw;
        tot_cpu += cpu;
        tot_raw_cpu += rcpu;
        tot_gunzip += gcpu;
        writeln!(
            md,
            "| {} | {} | {} | **{wall:.2}** | **{cpu:.2}** | {:.1} | {:.1} | {rwall:.2} | {rcpu:.2} | {:.1} | {gcpu:.2} | {others:.1} |",
            p.name,
            short(p.new_gz),
            short(p.new_raw),
            p.new_gz as f64 / 1e6 / cpu,
            p.new_raw as f64 / 1e6 / cpu,
            p.new_raw as f64 / 1e6 / rcpu,
        )?;
    }
    writeln!(
        md,
        "| **whole corpus** | {} | {} | | **{tot_cpu:.2}** | {:.1} | {:.1} | | {tot_raw_cpu:.2} | {:.1} | {tot_gunzip:.2} | |",
        mbs(tot_gz),
        mbs(tot_raw),
        tot_gz as f64 / 1e6 / tot_cpu,
        tot_raw as f64 / 1e6 / tot_cpu,
        tot_raw as f64 / 1e6 / tot_raw_cpu,
    )?;
    writeln!(
        md,
        "\nSmall pairs are dominated by the fixed cost of a `ferry add` (opening the store, signing the \
         release): read per-core throughput from the two base-image pairs and the corpus total.\n"
    )?;
    Ok(())
}
