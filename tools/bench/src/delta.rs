//! `ferry-bench delta --work DIR`: delta transport (issue 18), on a corpus of real version pairs built by
//! `tools/fixtures/delta-pairs.sh` (npm tarballs, crates, an sdist, wheels, a Helm chart, Debian packages, a
//! rebuilt base image gzipped by two producers) and, with `--fat DIR`, the fat image pair of
//! `tools/fixtures/fat-images.sh`.
//!
//! For each pair OLD → NEW, side by side in one run: the whole new artifact; the layer-level delta (the new file,
//! or an image's new blobs); `ferry export x@2 --base x@1` by Ferry before delta transport (`--before`, a build
//! of commit de957f7) and by Ferry now, and now with `--no-delta`; `zstd -19 --long=27 --patch-from` on the
//! decompressed content. Then the delta bundles imported into a store holding x@1, before against now (timed),
//! and the peak RSS of the exports. With `--only sync`, a site node on loopback syncs x@2 from a seed holding
//! both versions, next to the bundle for the same update.
//!
//! It prints a markdown section on stdout; `--write docs/benchmarks.md` also replaces its own marked section
//! there (the other sections are left alone).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::ValueEnum;
use serde_json::Value;

use crate::bundle::{file_len, json_of, mib, names, num, patch, sh_line, Patch};
use crate::fixtures::{blob_path, OciImage};
use crate::gzip::{geomean, short};
use crate::measure::{self, median, sync, warm_tree, Cmd, Measured};
use crate::netsync::{allow, peer_id, synced, Node, Synced};
use crate::{environment, verdict, Bench};

pub const BEGIN: &str = "<!-- BEGIN ferry-bench delta (generated; edit outside these markers) -->";
pub const END: &str = "<!-- END ferry-bench delta -->";

/// Issue 18's targets. Every pair: Ferry now <= FACTOR x patch-from + SLACK bytes.
const TARGET_PATCH_FACTOR: f64 = 2.0;
const TARGET_PATCH_SLACK: u64 = 4096;
/// Geometric mean over the pairs of Ferry now / patch-from.
const TARGET_GEOMEAN: f64 = 1.5;
/// Import of the delta bundle, now against before (the larger pairs together).
const TARGET_IMPORT_SLOWDOWN: f64 = 1.10;
const TARGET_EXPORT_RSS_MIB: f64 = 512.0;
/// Network sync of the same update carries the bundle's bytes, within this share.
const TARGET_SYNC_TOLERANCE: f64 = 0.05;
/// Pairs whose new artifact is at least this big count for the import-speed target; smaller ones are mostly the
/// fixed cost of opening a store.
const LARGE_PAIR: u64 = 10_000_000;
/// The fields `ferry export --json` reports about deltas (issue 18); absent before.
const DELTA_CHUNKS: &str = "delta_chunks";
const DELTA_SAVED: &str = "delta_saved_bytes";
/// The release names in every pair's stores.
const R1: &str = "x@1";
const R2: &str = "x@2";
/// Deterministic tar of a zip's entries: sorted names, mtime 0, owner 0, mode from the zip (else 0644).
const ZIP_TO_TAR: &str = r#"import io, sys, tarfile, zipfile
z = zipfile.ZipFile(sys.argv[1])
with tarfile.open(sys.argv[2], "w", format=tarfile.GNU_FORMAT) as t:
    for i in sorted(z.infolist(), key=lambda i: i.filename):
        if i.is_dir():
            continue
        data = z.read(i)
        ti = tarfile.TarInfo(i.filename)
        ti.size, ti.mtime, ti.mode = len(data), 0, ((i.external_attr >> 16) & 0o777) or 0o644
        t.addfile(ti, io.BytesIO(data))
"#;
const DEB_TO_TAR: &str = r#"dpkg-deb --ctrl-tarfile "$1" && dpkg-deb --fsys-tarfile "$1""#;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Bundle bytes next to patch-from, import speed and export memory.
    Bundle,
    /// Network sync of the same updates (two nodes on loopback), next to the bundle.
    Sync,
}

#[derive(clap::Args)]
pub struct DeltaArgs {
    /// Working directory: the corpus is built in WORK/delta-pairs (unless --corpus), stores are made in WORK/runs.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary under test, "now" (default: target/release/ferry of this workspace).
    #[arg(long, value_name = "FERRY_BIN")]
    ferry: Option<PathBuf>,
    /// Ferry before delta transport (a build of commit de957f7); without it the "before" columns are left out.
    #[arg(long, value_name = "FERRY_BIN")]
    before: Option<PathBuf>,
    /// A corpus built by tools/fixtures/delta-pairs.sh (default: WORK/delta-pairs, built or checked first, with
    /// the gzip corpus in WORK/corpus).
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// The fat image pair built by tools/fixtures/fat-images.sh (layout with tags v1 and v2, v1.tar, v2.tar);
    /// skipped with a note when absent.
    #[arg(long, value_name = "DIR")]
    fat: Option<PathBuf>,
    /// Which parts to run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "bundle")]
    only: Vec<Part>,
    /// Only these pairs (the corpus's directory names, and `fat`; default: all of them).
    #[arg(long, value_delimiter = ',', value_name = "PAIR")]
    pairs: Vec<String>,
    /// The pairs the sync part runs on.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "PAIR",
        default_value = "crate-tokio,npm-typescript,wheel-lxml,deb-postgresql-15,debian-pgzip"
    )]
    sync_pairs: Vec<String>,
    /// Repetitions of each timed import (before and now alternating; medians reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also write the results into FILE between the ferry-bench delta markers (appended if absent).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Before each timed run, wait up to SECS for other work on the machine to calm down.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    quiet_wait: u64,
    /// Keep the stores, bundles and patches made in WORK/runs/TIMESTAMP (deleted at the end otherwise).
    #[arg(long)]
    keep_stores: bool,
}

pub fn run(args: DeltaArgs) -> Result<()> {
    let b = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &[
            "/usr/bin/time",
            "zstd",
            "gzip",
            "cmp",
            "python3",
            "dpkg-deb",
            "sha256sum",
        ],
    )?;
    let corpus = match &args.corpus {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("no corpus at {}", p.display()))?,
        None => {
            let dir = b.work.join("delta-pairs");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/delta-pairs.sh");
            Cmd::new(script)
                .arg(&dir)
                .arg(b.work.join("corpus"))
                .run()?;
            dir
        }
    };
    let stamp = fs::read_to_string(corpus.join(".done"))
        .with_context(|| format!("{} is not a finished corpus (no .done)", corpus.display()))?;
    // The before binary, copied into the run like the one under test.
    let before = match &args.before {
        Some(p) => {
            let p = p
                .canonicalize()
                .with_context(|| format!("no ferry binary at {}", p.display()))?;
            let copy = b.runs.join("ferry-before");
            fs::copy(&p, &copy).with_context(|| format!("copy {}", p.display()))?;
            Some((copy, format!("{}, {}", p.display(), crate::modified(&p))))
        }
        None => {
            eprintln!("ferry-bench: note: no --before binary; the before columns are left out");
            None
        }
    };

    let mut inputs = corpus_pairs(&corpus)?;
    let fat = match &args.fat {
        Some(d) if d.join("layout/index.json").is_file() => {
            let d = d.canonicalize()?;
            inputs.push(fat_pair(&d)?);
            Some(Ok(d))
        }
        Some(d) => {
            eprintln!(
                "ferry-bench: note: no fat image pair at {} (no layout/index.json); skipped",
                d.display()
            );
            Some(Err(d.clone()))
        }
        None => None,
    };
    let known: Vec<String> = inputs.iter().map(|p| p.name.clone()).collect();
    for name in args.pairs.iter().chain(&args.sync_pairs) {
        ensure!(
            known.contains(name) || name == "fat",
            "no pair {name:?}; the pairs are {known:?}"
        );
    }
    let wanted = |name: &str| args.pairs.is_empty() || args.pairs.iter().any(|o| o == name);
    inputs.retain(|p| wanted(&p.name));
    ensure!(!inputs.is_empty(), "no pair to measure");
    let reps = args.reps.max(1);

    let mut md = String::new();
    environment(
        &mut md,
        &b,
        "Results: delta transport (corpus of real version pairs)",
    )?;
    md.truncate(md.trim_end().len());
    md.push('\n');
    writeln!(
        md,
        "- ferry before: {}",
        before
            .as_ref()
            .map_or("not measured (no `--before`)".into(), |(p, label)| {
                format!(
                    "{label} ({})",
                    Cmd::new(p)
                        .arg("--version")
                        .output()
                        .map(|s| s.trim().to_owned())
                        .unwrap_or_else(|_| "no --version".into())
                )
            })
    )?;
    writeln!(
        md,
        "- gzip: {}; dpkg-deb: {}; {}",
        sh_line("gzip --version | head -1"),
        sh_line("dpkg-deb --version | head -1 | grep -o 'version [^ ]*'"),
        sh_line("python3 --version"),
    )?;
    writeln!(
        md,
        "- corpus: `{}` (`tools/fixtures/delta-pairs.sh`, stamp `{}`); fat pair: {}\n",
        corpus.display(),
        stamp.trim(),
        match &fat {
            Some(Ok(d)) => format!("`{}` (`tools/fixtures/fat-images.sh`)", d.display()),
            Some(Err(d)) => format!("not found at `{}`, skipped", d.display()),
            None => "not measured (no `--fat`)".into(),
        }
    )?;

    let mut results = Vec::new();
    if args.only.contains(&Part::Bundle) {
        for input in &inputs {
            results.push(measure_pair(
                &b,
                before.as_ref().map(|x| x.0.as_path()),
                input,
                reps,
            )?);
        }
        report(&mut md, &results, before.is_some(), reps)?;
    }
    if args.only.contains(&Part::Sync) {
        let mut rows = Vec::new();
        for input in inputs.iter().filter(|p| args.sync_pairs.contains(&p.name)) {
            let seed = results
                .iter()
                .find(|r| r.input.name == input.name)
                .and_then(|r| r.now.as_ref().ok())
                .map(|s| (s.seed.clone(), s.key.clone(), s.total));
            let row = sync_pair(&b, input, seed);
            if let Err(e) = &row {
                eprintln!("ferry-bench: delta: sync of {} failed: {e:#}", input.name);
            }
            rows.push((input.name.clone(), row));
        }
        sync_report(&mut md, &rows)?;
    }
    b.finish(args.keep_stores)?;
    crate::publish(&md, args.write.as_deref(), BEGIN, END)
}

// ---------------------------------------------------------------------------------------------------------------
// The corpus

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Content {
    /// gunzip.
    Gzip,
    /// `zstd -dc`.
    Zstd,
    /// The entries as a deterministic tar.
    Zip,
    /// The control tar then the data tar.
    Deb,
    /// An image: its layers gunzipped, in order.
    Oci,
}

impl Content {
    fn parse(s: &str) -> Option<Content> {
        Some(match s {
            "gzip" => Content::Gzip,
            "zstd" => Content::Zstd,
            "zip" => Content::Zip,
            "deb" => Content::Deb,
            "oci" => Content::Oci,
            _ => return None,
        })
    }

    /// From the file's first bytes, for a pair whose info says nothing.
    fn sniff(p: &Path) -> Result<Content> {
        use std::io::Read;
        let mut head = [0u8; 8];
        let n = fs::File::open(p)
            .with_context(|| format!("open {}", p.display()))?
            .read(&mut head)?;
        let head = &head[..n];
        Ok(if head.starts_with(&[0x1f, 0x8b]) {
            Content::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Content::Zstd
        } else if head.starts_with(b"PK\x03\x04") {
            Content::Zip
        } else if head.starts_with(b"!<arch>\n") {
            Content::Deb
        } else {
            bail!("{}: neither gzip, zstd, zip nor a .deb", p.display())
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Content::Gzip => "`gzip -dc`",
            Content::Zstd => "`zstd -dc`",
            Content::Zip => "entries as a sorted tar (python3 zipfile → tarfile, mtime 0)",
            Content::Deb => "`dpkg-deb --ctrl-tarfile` + `--fsys-tarfile`",
            Content::Oci => "layers, `gzip -dc`",
        }
    }
}

/// Where a pair is added from.
#[derive(Clone)]
enum Source {
    /// `file:OLD`, `file:NEW`.
    Files { old: PathBuf, new: PathBuf },
    /// `oci:LAYOUT:v1`, `oci:LAYOUT:v2`; `raw` the layers' tars when they are already there (the fat pair).
    Image {
        layout: PathBuf,
        raw: Option<(PathBuf, PathBuf)>,
    },
}

#[derive(Clone)]
struct PairInput {
    name: String,
    info: Vec<(String, String)>,
    content: Content,
    source: Source,
}

impl PairInput {
    fn info(&self, key: &str) -> &str {
        self.info
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    fn spec(&self, version: u8) -> String {
        match &self.source {
            Source::Files { old, new } => {
                format!("file:{}", (if version == 1 { old } else { new }).display())
            }
            Source::Image { layout, .. } => format!("oci:{}:v{version}", layout.display()),
        }
    }

    fn is_image(&self) -> bool {
        matches!(self.source, Source::Image { .. })
    }
}

fn read_info(p: &Path) -> Result<Vec<(String, String)>> {
    Ok(fs::read_to_string(p)
        .with_context(|| format!("read {}", p.display()))?
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Every `PAIR/` of the corpus with `old`, `new` and `info`, in name order (images last, bigger at the end).
fn corpus_pairs(corpus: &Path) -> Result<Vec<PairInput>> {
    let mut pairs = Vec::new();
    let mut names: Vec<PathBuf> = fs::read_dir(corpus)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("old").is_file() && p.join("new").is_file() && p.join("info").is_file())
        .collect();
    names.sort();
    for dir in names {
        let name = dir
            .file_name()
            .context("pair without a name")?
            .to_string_lossy()
            .into_owned();
        let info = read_info(&dir.join("info"))?;
        let said = info
            .iter()
            .find(|(k, _)| k == "content")
            .map(|(_, v)| v.clone());
        let content = match said.as_deref().map(|s| (s, Content::parse(s))) {
            Some((_, Some(c))) => c,
            Some((s, None)) => bail!("{name}: unknown content {s:?}"),
            None if dir.join("layout/index.json").is_file() => Content::Oci,
            None => Content::sniff(&dir.join("new"))?,
        };
        let source = if content == Content::Oci {
            Source::Image {
                layout: dir.join("layout"),
                raw: None,
            }
        } else {
            Source::Files {
                old: dir.join("old"),
                new: dir.join("new"),
            }
        };
        pairs.push(PairInput {
            name,
            info,
            content,
            source,
        });
    }
    ensure!(!pairs.is_empty(), "no pairs in {}", corpus.display());
    pairs.sort_by_key(|p| p.is_image());
    Ok(pairs)
}

fn fat_pair(dir: &Path) -> Result<PairInput> {
    let raw =
        Some((dir.join("v1.tar"), dir.join("v2.tar"))).filter(|(a, b)| a.is_file() && b.is_file());
    Ok(PairInput {
        name: "fat".into(),
        info: vec![
            (
                "versions".into(),
                "a fat image (debootstrap minbase + compilers, browsers, JDK, LibreOffice...) rebuilt from scratch after the security updates".into(),
            ),
            (
                "producer".into(),
                "umoci repack (umoci's tar, klauspost pgzip), one layer".into(),
            ),
            ("kind".into(), "image".into()),
        ],
        content: Content::Oci,
        source: Source::Image {
            layout: dir.join("layout"),
            raw,
        },
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Measuring

/// One binary's delta on one pair: the seed store holding x@1 and x@2, its bundles, the timed imports.
struct Side {
    seed: PathBuf,
    key: PathBuf,
    /// A store holding x@1 (imported from the complete bundle), copied for each timed import.
    base_recv: PathBuf,
    delta_dir: PathBuf,
    /// `ferry export x@2 --base x@1`, measured.
    export: Measured,
    json: Value,
    total: u64,
    /// `--no-delta` (now only): its total_bytes, or why it failed.
    no_delta: Option<Result<u64, String>>,
    /// Timed imports of the delta into a copy of `base_recv`.
    imports: Vec<Measured>,
    import_error: Option<String>,
}

impl Side {
    fn json_u64(&self, key: &str) -> Option<u64> {
        self.json[key].as_u64()
    }
}

struct PairResult {
    input: PairInput,
    whole_old: u64,
    whole_new: u64,
    layer: u64,
    raw_old: u64,
    raw_new: u64,
    patch: Result<Patch, String>,
    before: Option<Result<Side, String>>,
    now: Result<Side, String>,
}

impl PairResult {
    fn now_total(&self) -> Option<u64> {
        self.now.as_ref().ok().map(|s| s.total)
    }

    fn ratio(&self) -> Option<f64> {
        let p = self.patch.as_ref().ok()?;
        Some(self.now_total()? as f64 / p.bytes as f64)
    }

    fn within_patch(&self) -> Option<bool> {
        let p = self.patch.as_ref().ok()?;
        Some(
            self.now_total()? as f64
                <= TARGET_PATCH_FACTOR * p.bytes as f64 + TARGET_PATCH_SLACK as f64,
        )
    }
}

fn ferry_cmd(bin: &Path, store: &Path) -> Cmd {
    Cmd::new(bin)
        .env("FERRY_STORE", store)
        .env("RUST_LOG", "warn")
}

fn measure_pair(
    b: &Bench,
    before_bin: Option<&Path>,
    input: &PairInput,
    reps: usize,
) -> Result<PairResult> {
    let name = &input.name;
    eprintln!("ferry-bench: delta: {name}");
    let dir = b.fresh(name)?;

    // The artifacts and the layer-level delta.
    let (whole_old, whole_new, layer) = match &input.source {
        Source::Files { old, new } => {
            let (o, n) = (file_len(old)?, file_len(new)?);
            ensure!(
                crate::serve::sha256_file(old)? != crate::serve::sha256_file(new)?,
                "{name}: old and new are the same file"
            );
            (o, n, n)
        }
        Source::Image { layout, .. } => {
            let v1 = OciImage::load(layout, "v1")?;
            let v2 = OciImage::load(layout, "v2")?;
            let held: HashSet<&str> = v1.blobs().iter().map(|d| d.0.as_str()).collect();
            let sum = |img: &OciImage| img.blobs().iter().map(|d| d.1).sum::<u64>();
            let new: u64 = v2
                .blobs()
                .iter()
                .filter(|d| !held.contains(d.0.as_str()))
                .map(|d| d.1)
                .sum();
            (sum(&v1), sum(&v2), new)
        }
    };

    // The decompressed content, and zstd --patch-from on it.
    let (raw_old_p, raw_new_p, made) = raw_content(input, &dir)?;
    let (raw_old, raw_new) = (file_len(&raw_old_p)?, file_len(&raw_new_p)?);
    let patch = patch(&raw_old_p, &raw_new_p, &dir.join("patch.zst")).map_err(|e| {
        eprintln!("ferry-bench: delta: {name}: zstd --patch-from failed: {e:#}");
        format!("{e:#}")
    });
    if made {
        fs::remove_file(&raw_old_p)?;
        fs::remove_file(&raw_new_p)?;
    }

    // Each binary: a seed, the delta export, a receiver holding x@1.
    let side = |bin: &Path, label: &str, no_delta: bool| -> Result<Side, String> {
        prepare(b, bin, &dir.join(label), input, no_delta).map_err(|e| {
            eprintln!("ferry-bench: delta: {name}: {label}: {e:#}");
            format!("{e:#}")
        })
    };
    let mut before = before_bin.map(|bin| side(bin, "before", false));
    let mut now = side(&b.ferry, "now", true);

    // Timed imports, alternating which binary goes first.
    for rep in 0..reps {
        let mut order = ["now", "before"];
        if rep % 2 == 1 {
            order.reverse();
        }
        for label in order {
            let (bin, s) = match (label, before_bin, &mut before) {
                ("now", _, _) => match &mut now {
                    Ok(s) => (b.ferry.as_path(), s),
                    Err(_) => continue,
                },
                (_, Some(bin), Some(Ok(s))) => (bin, s),
                _ => continue,
            };
            if s.import_error.is_some() {
                continue;
            }
            match import_once(b, bin, &dir.join(label), s, rep) {
                Ok(m) => {
                    eprintln!(
                        "ferry-bench:   {label} import rep {rep}: {:.2} s wall, {:.0} MiB peak RSS",
                        m.wall,
                        m.max_rss_kib as f64 / 1024.0
                    );
                    s.imports.push(m);
                }
                Err(e) => {
                    eprintln!("ferry-bench: delta: {name}: {label} import: {e:#}");
                    s.import_error = Some(format!("{e:#}"));
                }
            }
        }
    }
    Ok(PairResult {
        input: input.clone(),
        whole_old,
        whole_new,
        layer,
        raw_old,
        raw_new,
        patch,
        before,
        now,
    })
}

/// The decompressed content of both versions: (old, new, whether they were made here and can be removed).
fn raw_content(input: &PairInput, dir: &Path) -> Result<(PathBuf, PathBuf, bool)> {
    let (o, n) = (dir.join("old.raw"), dir.join("new.raw"));
    match (&input.source, input.content) {
        (
            Source::Image {
                raw: Some((a, z)), ..
            },
            _,
        ) => return Ok((a.clone(), z.clone(), false)),
        (Source::Image { layout, .. }, _) => {
            for (tag, out) in [("v1", &o), ("v2", &n)] {
                let img = OciImage::load(layout, tag)?;
                Cmd::new("gzip")
                    .arg("-dc")
                    .args(img.layers.iter().map(|l| blob_path(layout, &l.0)))
                    .run_to(out)?;
            }
        }
        (Source::Files { old, new }, content) => {
            let script = dir.join("zip-to-tar.py");
            if content == Content::Zip {
                fs::write(&script, ZIP_TO_TAR)?;
            }
            for (from, out) in [(old, &o), (new, &n)] {
                match content {
                    Content::Gzip => Cmd::new("gzip").arg("-dc").arg(from).run_to(out)?,
                    Content::Zstd => Cmd::new("zstd").args(["-qdc"]).arg(from).run_to(out)?,
                    Content::Zip => Cmd::new("python3").arg(&script).arg(from).arg(out).run()?,
                    Content::Deb => Cmd::new("sh")
                        .args(["-c", DEB_TO_TAR, "sh"])
                        .arg(from)
                        .run_to(out)?,
                    Content::Oci => bail!("{}: content oci without a layout", input.name),
                }
            }
        }
    }
    Ok((o, n, true))
}

/// `ferry export --json ARGS --out OUT` with `bin`, measured.
fn export(bin: &Path, store: &Path, args: &[&str], out: &Path) -> Result<(Measured, Value)> {
    let m = ferry_cmd(bin, store)
        .args(["export", "--json"])
        .args(args)
        .arg("--out")
        .arg(out)
        .measure()?;
    let v = json_of(&m.stdout, "ferry export --json")?;
    Ok((m, v))
}

/// One binary on one pair: `ferry init`, `ferry add x@1 OLD`, `ferry add x@2 NEW`, the complete export of x@1,
/// the delta export (measured) and, with `no_delta`, the same with `--no-delta`; a receiver store that trusts
/// the seed's key and holds x@1, imported from the complete bundle.
fn prepare(b: &Bench, bin: &Path, dir: &Path, input: &PairInput, no_delta: bool) -> Result<Side> {
    fs::create_dir_all(dir)?;
    let seed = dir.join("seed");
    ferry_cmd(bin, &seed).arg("init").output()?;
    for (release, version) in [(R1, 1), (R2, 2)] {
        ferry_cmd(bin, &seed)
            .args(["add", "--json", release])
            .arg(input.spec(version))
            .output()?;
    }
    let key = dir.join("seed.pub");
    ferry_cmd(bin, &seed)
        .args(["keys", "export"])
        .run_to(&key)?;
    let full1 = dir.join("full-1");
    export(bin, &seed, &[R1], &full1)?;

    warm_tree(&seed)?;
    sync()?;
    measure::wait_quiet(b.quiet_wait)?;
    let delta_dir = dir.join("delta");
    let (m, json) = export(bin, &seed, &[R2, "--base", R1], &delta_dir)?;
    let total = num(&json, "total_bytes")?;
    eprintln!(
        "ferry-bench:   export {R2} --base {R1}: {total} bytes, {:.2} s wall, {:.0} MiB peak RSS",
        m.wall,
        m.max_rss_kib as f64 / 1024.0
    );
    let no_delta = no_delta.then(|| {
        export(
            bin,
            &seed,
            &[R2, "--base", R1, "--no-delta"],
            &dir.join("delta-off"),
        )
        .and_then(|(_, v)| num(&v, "total_bytes"))
        .map_err(|e| format!("{e:#}"))
    });

    let base_recv = dir.join("recv-base");
    ferry_cmd(bin, &base_recv).arg("init").output()?;
    ferry_cmd(bin, &base_recv)
        .args(["trust", "add"])
        .arg(&key)
        .output()?;
    let out = ferry_cmd(bin, &base_recv)
        .args(["import", "--json"])
        .arg(&full1)
        .output()?;
    let v = json_of(&out, "ferry import --json")?;
    ensure!(
        names(&v, "imported") == [R1],
        "importing the complete {R1} bundle gave {v}"
    );
    fs::remove_dir_all(&full1)?;
    Ok(Side {
        seed,
        key,
        base_recv,
        delta_dir,
        export: m,
        json,
        total,
        no_delta,
        imports: Vec::new(),
        import_error: None,
    })
}

/// `ferry import --json DELTA` into a copy of the receiver holding x@1, measured; the first one is followed by
/// `ferry fsck`.
fn import_once(b: &Bench, bin: &Path, dir: &Path, s: &Side, rep: usize) -> Result<Measured> {
    let recv = dir.join(format!("recv-{rep}"));
    Cmd::new("cp")
        .arg("-a")
        .arg(&s.base_recv)
        .arg(&recv)
        .output()?;
    warm_tree(&s.delta_dir)?;
    warm_tree(&recv)?;
    sync()?;
    measure::wait_quiet(b.quiet_wait)?;
    let m = ferry_cmd(bin, &recv)
        .args(["import", "--json"])
        .arg(&s.delta_dir)
        .measure()?;
    let v = json_of(&m.stdout, "ferry import --json")?;
    ensure!(
        names(&v, "imported") == [R2],
        "importing the delta where {R1} is held gave {v}"
    );
    if rep == 0 {
        let out = ferry_cmd(bin, &recv).args(["fsck", "--json"]).output()?;
        let f = json_of(&out, "ferry fsck --json")?;
        ensure!(
            f["ok"] == Value::Bool(true),
            "ferry fsck after the import found problems: {}",
            f["problems"]
        );
    }
    fs::remove_dir_all(&recv)?;
    Ok(m)
}

/// A site holding x@1 syncs x@2 from a seed holding both, two nodes on loopback.
struct SyncRow {
    bundle_total: u64,
    s1: Synced,
    s2: Synced,
}

fn sync_pair(
    b: &Bench,
    input: &PairInput,
    seed: Option<(PathBuf, PathBuf, u64)>,
) -> Result<SyncRow> {
    eprintln!("ferry-bench: delta: sync {}", input.name);
    let dir = b.fresh(&format!("sync-{}", input.name))?;
    let (seed_store, key, bundle_total) = match seed {
        Some(s) => s,
        None => {
            let s = prepare(b, &b.ferry, &dir.join("now"), input, false)?;
            (s.seed, s.key, s.total)
        }
    };
    let seed_id = peer_id(b, &seed_store)?;
    let site = dir.join("site");
    b.ferry_init(&site)?;
    b.ferry(&site).args(["trust", "add"]).arg(&key).output()?;
    let site_id = peer_id(b, &site)?;
    allow(b, &seed_store, &site_id)?;
    allow(b, &site, &seed_id)?;
    let (seed_node, seed_peer) =
        Node::loopback(b, &seed_store, &seed_id, &[], &dir.join("seed.log"))?;
    let res = (|| -> Result<(Synced, Synced)> {
        let (node, _) = Node::loopback(
            b,
            &site,
            &site_id,
            std::slice::from_ref(&seed_peer),
            &dir.join("site.log"),
        )?;
        let r = (|| -> Result<(Synced, Synced)> {
            node.wait_connected(b, &[&seed_id])?;
            let s1 = synced(node.sync_cmd(b, R1).measure()?)?;
            let s2 = synced(node.sync_cmd(b, R2).measure()?)?;
            Ok((s1, s2))
        })();
        node.stop()?;
        r
    })();
    seed_node.stop()?;
    let (s1, s2) = res?;
    eprintln!(
        "ferry-bench:   sync {R2}: {} wire bytes, bundle {bundle_total}",
        s2.wire
    );
    Ok(SyncRow {
        bundle_total,
        s1,
        s2,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// The report

fn med_wall(ms: &[Measured]) -> Option<f64> {
    (!ms.is_empty()).then(|| median(&ms.iter().map(|m| m.wall).collect::<Vec<_>>()))
}

fn side_cell(s: &Option<Result<Side, String>>, f: impl Fn(&Side) -> String) -> String {
    match s {
        None => "–".into(),
        Some(Ok(s)) => f(s),
        Some(Err(_)) => "error".into(),
    }
}

fn report(md: &mut String, pairs: &[PairResult], with_before: bool, reps: usize) -> Result<()> {
    writeln!(md, "### The corpus\n")?;
    writeln!(
        md,
        "Each pair is two versions of one artifact exactly as published (images: as their builder wrote them). \
         *Content* is how the decompressed content given to `zstd --patch-from` is made; *raw* is its size.\n"
    )?;
    writeln!(
        md,
        "| pair | kind | versions | producer | old → new | content | raw old → new |"
    )?;
    writeln!(md, "|---|---|---|---|---:|---|---:|")?;
    for p in pairs {
        let i = &p.input;
        let versions = match i.info("versions") {
            "" => format!("{}; changed: {}", i.info("new"), i.info("changed")),
            v => v.to_owned(),
        };
        writeln!(
            md,
            "| {} | {} | {} | {} | {} → {} | {} | {} → {} |",
            i.name,
            i.info("kind"),
            versions,
            i.info("producer"),
            short(p.whole_old),
            short(p.whole_new),
            i.content.describe(),
            short(p.raw_old),
            short(p.raw_new),
        )?;
    }

    writeln!(md, "\n### Bytes across the gap\n")?;
    writeln!(
        md,
        "Per pair and binary, a fresh store (`ferry init` defaults) and exactly these commands: `ferry add --json \
         {R1} SOURCE_OLD`, `ferry add --json {R2} SOURCE_NEW` (SOURCE `file:PATH`, or `oci:LAYOUT:v1`/`v2` for \
         images), `ferry export --json {R2} --base {R1} --out D`; each cell is its `total_bytes` (index + volumes, \
         every byte of D). *before* is the `--before` binary (Ferry before delta transport), *now* the binary \
         under test, *now, deltas off* the same export with `--no-delta`. *whole new* is the new artifact (an \
         image: all its blobs); *layer-level* is what a layer-level tool moves: the new file, or the image's blobs \
         whose digests the old one lacks. *patch-from* is `zstd -19 --long=27 --patch-from=OLD.raw NEW.raw -o P` \
         on the decompressed content, checked to rebuild NEW.raw with `zstd -dc --long=31 --patch-from=OLD.raw P \
         | cmp - NEW.raw`. *delta chunks · saved* are `{DELTA_CHUNKS}` and `{DELTA_SAVED}` of the now export's \
         JSON (– when absent). The target column is now ≤ {TARGET_PATCH_FACTOR} × patch-from + \
         {TARGET_PATCH_SLACK} bytes.\n"
    )?;
    writeln!(
        md,
        "| pair | whole new | layer-level | Ferry before | **Ferry now** | now, deltas off | delta chunks · saved | zstd patch-from | **now / patch-from** | ≤ {TARGET_PATCH_FACTOR}x + 4 KiB | now / before | now / layer-level |"
    )?;
    writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    )?;
    for p in pairs {
        let now = match &p.now {
            Ok(s) => format!("**{}**", short(s.total)),
            Err(_) => "**error**".into(),
        };
        let off = match p.now.as_ref().ok().and_then(|s| s.no_delta.as_ref()) {
            Some(Ok(t)) => short(*t),
            Some(Err(_)) => "n/a".into(),
            None => "–".into(),
        };
        let deltas = p.now.as_ref().ok().map_or("–".into(), |s| {
            match (s.json_u64(DELTA_CHUNKS), s.json_u64(DELTA_SAVED)) {
                (None, None) => "–".into(),
                (c, v) => format!(
                    "{} · {}",
                    c.map_or("?".into(), |c| c.to_string()),
                    v.map_or("?".into(), short)
                ),
            }
        });
        let before_total = match &p.before {
            Some(Ok(s)) => Some(s.total),
            _ => None,
        };
        writeln!(
            md,
            "| {} | {} | {} | {} | {now} | {off} | {deltas} | {} | **{}** | {} | {} | {} |",
            p.input.name,
            short(p.whole_new),
            short(p.layer),
            side_cell(&p.before, |s| short(s.total)),
            p.patch.as_ref().map_or("failed".into(), |x| short(x.bytes)),
            p.ratio().map_or("?".into(), |r| format!("{r:.2}")),
            p.within_patch()
                .map_or("?".into(), |ok| verdict(ok).to_owned()),
            before_total
                .zip(p.now_total())
                .map_or("–".into(), |(bt, nt)| format!(
                    "{:.3}",
                    nt as f64 / bt as f64
                )),
            p.now_total().map_or("?".into(), |nt| format!(
                "{:.3}",
                nt as f64 / p.layer as f64
            )),
        )?;
    }
    let ratios: Vec<f64> = pairs.iter().filter_map(PairResult::ratio).collect();
    let gm = (!ratios.is_empty()).then(|| geomean(&ratios));
    let vs_before: Vec<f64> = pairs
        .iter()
        .filter_map(|p| match &p.before {
            Some(Ok(s)) => Some(p.now_total()? as f64 / s.total as f64),
            _ => None,
        })
        .collect();
    let vs_layer: Vec<f64> = pairs
        .iter()
        .filter_map(|p| Some(p.now_total()? as f64 / p.layer as f64))
        .collect();
    let before_patch: Vec<f64> = pairs
        .iter()
        .filter_map(|p| match (&p.before, &p.patch) {
            (Some(Ok(s)), Ok(x)) => Some(s.total as f64 / x.bytes as f64),
            _ => None,
        })
        .collect();
    let fmt_gm = |xs: &[f64]| {
        if xs.is_empty() {
            "–".to_owned()
        } else {
            format!("{:.3}", geomean(xs))
        }
    };
    writeln!(
        md,
        "| **geometric mean** ({} pairs) | | | {} | | | | | **{}** | | {} | {} |",
        ratios.len(),
        if before_patch.is_empty() {
            String::new()
        } else {
            format!("{} of patch-from", fmt_gm(&before_patch))
        },
        gm.map_or("?".into(), |g| format!("{g:.3}")),
        fmt_gm(&vs_before),
        fmt_gm(&vs_layer),
    )?;

    writeln!(md, "\n### Import speed and export memory\n")?;
    writeln!(
        md,
        "Import: the delta bundle D above, `ferry import --json D`, into a copy (`cp -a`, not timed) of a store \
         that trusts the seed's key (`ferry keys export` / `ferry trust add`) and holds {R1} (imported from the \
         seed's complete `ferry export --json {R1}`); each binary imports its own bundle. {reps} repetitions, \
         before and now alternating which goes first, bundle and store read beforehand, `sync` and a quiet \
         machine before each; medians. The first import of each is followed by `ferry fsck --json`. Export: the \
         measured `ferry export {R2} --base {R1}` above (one run, after `sync` and a quiet machine), peak RSS the \
         child's `ru_maxrss` (`/usr/bin/time`).\n"
    )?;
    writeln!(
        md,
        "| pair | import before s | **import now s** | now / before | import now peak RSS MiB | export before s · MiB | **export now s · MiB** |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|")?;
    let (mut large_before, mut large_now, mut large_names) = (0.0, 0.0, Vec::new());
    for p in pairs {
        let bw = match &p.before {
            Some(Ok(s)) => med_wall(&s.imports),
            _ => None,
        };
        let nw = p.now.as_ref().ok().and_then(|s| med_wall(&s.imports));
        if let (Some(bw), Some(nw)) = (bw, nw) {
            if p.whole_new >= LARGE_PAIR {
                large_before += bw;
                large_now += nw;
                large_names.push(p.input.name.as_str());
            }
        }
        let import_err = |s: &Side| s.import_error.as_ref().map(|_| "error".to_owned());
        writeln!(
            md,
            "| {} | {} | **{}** | {} | {} | {} | **{}** |",
            p.input.name,
            side_cell(&p.before, |s| import_err(s)
                .or(med_wall(&s.imports).map(|w| format!("{w:.2}")))
                .unwrap_or_else(|| "–".into())),
            match &p.now {
                Ok(s) => import_err(s)
                    .or(nw.map(|w| format!("{w:.2}")))
                    .unwrap_or_else(|| "–".into()),
                Err(_) => "error".into(),
            },
            bw.zip(nw)
                .map_or("–".into(), |(bw, nw)| format!("{:.2}", nw / bw)),
            p.now.as_ref().ok().map_or("–".into(), |s| s
                .imports
                .iter()
                .map(mib)
                .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
                .map_or("–".into(), |x| format!("{x:.0}"))),
            side_cell(&p.before, |s| format!(
                "{:.2} · {:.0}",
                s.export.wall,
                mib(&s.export)
            )),
            p.now.as_ref().map_or("error".into(), |s| format!(
                "{:.2} · {:.0}",
                s.export.wall,
                mib(&s.export)
            )),
        )?;
    }

    // Targets.
    writeln!(md, "\n### Issue 18's targets\n")?;
    writeln!(md, "| target | measured | verdict |")?;
    writeln!(md, "|---|---|---|")?;
    let checked: Vec<(&str, bool)> = pairs
        .iter()
        .filter_map(|p| Some((p.input.name.as_str(), p.within_patch()?)))
        .collect();
    let misses: Vec<&str> = checked.iter().filter(|c| !c.1).map(|c| c.0).collect();
    writeln!(
        md,
        "| every pair: bundle ≤ {TARGET_PATCH_FACTOR} × patch-from + 4 KiB | {} of {} pairs{} | **{}** |",
        checked.len() - misses.len(),
        pairs.len(),
        if misses.is_empty() {
            String::new()
        } else {
            format!("; misses: {}", misses.join(", "))
        },
        verdict(misses.is_empty() && checked.len() == pairs.len())
    )?;
    writeln!(
        md,
        "| geometric mean of bundle / patch-from ≤ {TARGET_GEOMEAN} | {} ({} pairs) | **{}** |",
        gm.map_or("?".into(), |g| format!("{g:.3}")),
        ratios.len(),
        verdict(gm.is_some_and(|g| g <= TARGET_GEOMEAN) && ratios.len() == pairs.len())
    )?;
    // Never worse than without deltas: against --no-delta where the binary has it, else against before.
    let mut worse = Vec::new();
    let mut compared = 0;
    let mut against_before = false;
    for p in pairs {
        let Some(nt) = p.now_total() else { continue };
        let off = match p.now.as_ref().ok().and_then(|s| s.no_delta.as_ref()) {
            Some(Ok(t)) => Some(*t),
            _ => match &p.before {
                Some(Ok(s)) => {
                    against_before = true;
                    Some(s.total)
                }
                _ => None,
            },
        };
        if let Some(off) = off {
            compared += 1;
            if nt > off {
                worse.push(format!("{} (+{} B)", p.input.name, nt - off));
            }
        }
    }
    writeln!(
        md,
        "| never worse than without deltas (now ≤ now `--no-delta`{}) | {compared} pairs compared{} | **{}** |",
        if against_before {
            "; before where `--no-delta` failed"
        } else {
            ""
        },
        if worse.is_empty() {
            String::new()
        } else {
            format!("; worse: {}", worse.join(", "))
        },
        verdict(worse.is_empty() && compared == pairs.len())
    )?;
    if large_names.is_empty() {
        writeln!(
            md,
            "| import no more than {:.0}% slower | not measured (no pair of ≥ {} with both binaries) | |",
            100.0 * (TARGET_IMPORT_SLOWDOWN - 1.0),
            short(LARGE_PAIR)
        )?;
    } else {
        let r = large_now / large_before;
        writeln!(
            md,
            "| import no more than {:.0}% slower (sum of medians, pairs of ≥ {}: {}) | now {large_now:.2} s / before {large_before:.2} s = {r:.3} | **{}** |",
            100.0 * (TARGET_IMPORT_SLOWDOWN - 1.0),
            short(LARGE_PAIR),
            large_names.join(", "),
            verdict(r <= TARGET_IMPORT_SLOWDOWN)
        )?;
    }
    let peak = pairs
        .iter()
        .filter_map(|p| Some((p.input.name.as_str(), mib(&p.now.as_ref().ok()?.export))))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    writeln!(
        md,
        "| export memory ≤ {TARGET_EXPORT_RSS_MIB} MiB | {} | **{}** |",
        peak.map_or("?".into(), |(n, m)| format!(
            "peak {m:.0} MiB (`{n}`){}",
            if pairs.iter().any(|p| p.input.name == "fat") {
                ""
            } else {
                "; the fat pair was not measured"
            }
        )),
        verdict(peak.is_some_and(|(_, m)| m <= TARGET_EXPORT_RSS_MIB))
    )?;

    // What failed, in full (`--no-delta` once: a binary without the flag fails alike on every pair).
    let mut errors = Vec::new();
    let mut no_delta_errors = Vec::new();
    for p in pairs {
        if let Err(e) = &p.patch {
            errors.push(format!("`{}` zstd --patch-from: {e}", p.input.name));
        }
        for (label, s) in [("before", p.before.as_ref()), ("now", Some(&p.now))] {
            match s {
                Some(Err(e)) => errors.push(format!("`{}` {label}: {e}", p.input.name)),
                Some(Ok(s)) => {
                    if let Some(e) = &s.import_error {
                        errors.push(format!("`{}` {label} import: {e}", p.input.name));
                    }
                    if let Some(Err(e)) = &s.no_delta {
                        no_delta_errors.push((p.input.name.as_str(), e));
                    }
                }
                None => {}
            }
        }
    }
    if let Some((first, e)) = no_delta_errors.first() {
        errors.push(format!(
            "`ferry export --no-delta` (now) failed on {} of {} pairs; on `{first}`: {e}",
            no_delta_errors.len(),
            pairs.len()
        ));
    }
    if !errors.is_empty() {
        writeln!(md, "\nWhat failed:\n")?;
        for e in errors {
            let e: String = e.chars().take(600).collect();
            writeln!(md, "- {}", e.replace('\n', " "))?;
        }
    }
    if !with_before {
        writeln!(
            md,
            "\nNo `--before` binary was given: the before columns are empty."
        )?;
    }
    writeln!(md)?;
    Ok(())
}

fn sync_report(md: &mut String, rows: &[(String, Result<SyncRow>)]) -> Result<()> {
    writeln!(md, "### Network sync of the same updates\n")?;
    writeln!(
        md,
        "The seed is the now store above (holding {R1} and {R2}); a fresh site store trusts its key, each allows \
         the other (`ferry id` / `ferry peers allow`), both run `ferry serve --listen 127.0.0.1:0 --p2p-listen \
         /ip4/127.0.0.1/tcp/PORT --no-mdns` (the site with `--peer` the seed), then on the site `ferry --json \
         --no-progress sync {R1}` and `ferry --json --no-progress sync {R2}`. *wire* is the sum of the {R2} sync's \
         `wire_bytes` (chunks and deltas) and its `recipe_bytes` (the recipes), *payload* its `payload_bytes`; *bundle* the now `total_bytes` above. Target: wire within \
         ±{:.0}% of the bundle.\n",
        100.0 * TARGET_SYNC_TOLERANCE
    )?;
    writeln!(
        md,
        "| pair | sync {R1}: wire | sync {R2}: chunks | payload | **wire** | bundle | **wire / bundle** | ±{:.0}% |",
        100.0 * TARGET_SYNC_TOLERANCE
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---|")?;
    for (name, r) in rows {
        match r {
            Ok(r) => {
                let x = (r.s2.wire + r.s2.recipes) as f64 / r.bundle_total as f64;
                writeln!(
                    md,
                    "| {name} | {} | {} | {} | **{}** | {} | **{x:.3}** | {} |",
                    short(r.s1.wire),
                    r.s2.chunks,
                    short(r.s2.payload),
                    short(r.s2.wire + r.s2.recipes),
                    short(r.bundle_total),
                    verdict((x - 1.0).abs() <= TARGET_SYNC_TOLERANCE)
                )?;
            }
            Err(e) => {
                let e: String = format!("{e:#}").chars().take(300).collect();
                writeln!(
                    md,
                    "| {name} | failed: {} | | | | | | |",
                    e.replace('|', "/")
                )?;
            }
        }
    }
    writeln!(md)?;
    Ok(())
}
