//! `ferry-bench formats --work DIR FILE_OR_DIR…`: which compressed formats Ferry re-creates (issue 19) and what
//! that costs, side by side in the same run with each format's own decompressor on the same files.
//!
//! Every argument is a file, or a directory whose regular files are taken (not recursing); symlinks are
//! resolved and duplicates dropped. Files are grouped by format, told by their first bytes: gzip, zip, xz,
//! zstd, bzip2, ar (`.deb`), rpm, other. Per format, in a fresh store: `ferry add --json F@1 file:…` of all its
//! files (wall, CPU, peak RSS; re-created and kept bytes from the report), `ferry get F@1 --out dir:OUT` (every
//! file re-created; each compared with its original), and the decompressor reading every file to /dev/null
//! (`gzip -dc`, `unzip -p`, `xz -dc`, `zstd -dc`, `bzip2 -dc`, `dpkg-deb --fsys-tarfile`, `rpm2cpio`; none
//! for other). Files are read once before (page cache warm).
//!
//! It prints a markdown section on stdout; `--write docs/benchmarks.md` also replaces its own marked section.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};

use crate::measure::{warm, Cmd, Measured};
use crate::{environment, mb, Bench};

pub const BEGIN: &str =
    "<!-- BEGIN ferry-bench formats (generated; edit outside these markers) -->";
pub const END: &str = "<!-- END ferry-bench formats -->";

/// Issue 19's target: at least this share of each format's bytes re-created.
const TARGET_SHARE: f64 = 0.95;

#[derive(clap::Args)]
pub struct FormatsArgs {
    /// Working directory: stores are made in WORK/runs.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary (default: target/release/ferry of this workspace).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// Also write the results into FILE between the ferry-bench formats markers (appended if absent).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Before each timed run, wait up to SECS for other work on the machine to calm down.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    quiet_wait: u64,
    /// Keep the stores made in WORK/runs/TIMESTAMP (deleted at the end otherwise).
    #[arg(long)]
    keep_stores: bool,
    /// Files, and directories whose files are taken.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    inputs: Vec<PathBuf>,
}

/// A format by its first bytes.
fn format_of(head: &[u8]) -> &'static str {
    match head {
        [0x1f, 0x8b, ..] => "gzip",
        [b'P', b'K', 3, 4, ..] => "zip",
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [b'B', b'Z', b'h', ..] => "bzip2",
        [b'!', b'<', b'a', b'r', b'c', b'h', b'>', b'\n', ..] => "ar (.deb)",
        [0xed, 0xab, 0xee, 0xdb, ..] => "rpm",
        _ => "other",
    }
}

/// The decompressor of a format, reading one file to stdout.
fn decompressor(format: &str) -> Option<&'static str> {
    match format {
        "gzip" => Some("gzip -dc"),
        "zip" => Some("unzip -p"),
        "xz" => Some("xz -dc"),
        "zstd" => Some("zstd -dcq"),
        "bzip2" => Some("bzip2 -dc"),
        // Its data.tar, the bulk of a package (control.tar is a few KB).
        "ar (.deb)" => Some("dpkg-deb --fsys-tarfile"),
        // Its payload decompressed (the lead and headers are tens of KB).
        "rpm" => Some("rpm2cpio"),
        _ => None,
    }
}

/// The input files, canonical and unique, by format.
fn inputs(args: &[PathBuf]) -> Result<BTreeMap<&'static str, Vec<PathBuf>>> {
    let mut files = Vec::new();
    for a in args {
        let a = fs::canonicalize(a).with_context(|| format!("{}", a.display()))?;
        if a.is_dir() {
            for e in fs::read_dir(&a)? {
                let p = fs::canonicalize(e?.path())?;
                if p.is_file() {
                    files.push(p);
                }
            }
        } else {
            files.push(a);
        }
    }
    files.sort();
    files.dedup();
    let mut by = BTreeMap::<&str, Vec<PathBuf>>::new();
    for f in files {
        let mut head = Vec::with_capacity(8);
        fs::File::open(&f)?.take(8).read_to_end(&mut head)?;
        by.entry(format_of(&head)).or_default().push(f);
    }
    // Two files of one name would land on one path in a release.
    for (format, files) in &by {
        let mut names: Vec<_> = files.iter().map(|f| f.file_name()).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        ensure!(names.len() == n, "two {format} files share a file name");
    }
    Ok(by)
}

/// One format's figures.
struct Row {
    format: &'static str,
    files: usize,
    bytes: u64,
    recreated: u64,
    kept: u64,
    add: Measured,
    get: Measured,
    stored: u64,
    tool: Option<(&'static str, Measured)>,
}

pub fn run(args: FormatsArgs) -> Result<()> {
    let b = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &[
            "/usr/bin/time",
            "gzip",
            "unzip",
            "xz",
            "zstd",
            "bzip2",
            "cmp",
        ],
    )?;
    let by = inputs(&args.inputs)?;
    ensure!(!by.is_empty(), "no input files");
    let mut rows = Vec::new();
    for (format, files) in &by {
        eprintln!("ferry-bench: formats: {format} ({} files)", files.len());
        let dir = b.fresh(&format.replace(|c: char| !c.is_ascii_alphanumeric(), "-"))?;
        let store = dir.join("store");
        b.ferry_init(&store)?;
        let mut bytes = 0;
        for f in files {
            bytes += warm(f)?;
        }
        crate::measure::wait_quiet(b.quiet_wait)?;
        let add = b
            .ferry(&store)
            .args(["add", "--json", "f@1"])
            .args(files.iter().map(|f| format!("file:{}", f.display())))
            .measure()?;
        let report: serde_json::Value = serde_json::from_str(add.stdout.trim())
            .with_context(|| format!("ferry add --json printed {:?}", add.stdout))?;
        let num = |k: &str| report[k].as_u64().unwrap_or(0);
        let (recreated, kept) = match *format {
            "zip" => (num("zip_recreated_bytes"), num("zip_kept_bytes")),
            "xz" => (num("xz_recreated_bytes"), num("xz_kept_bytes")),
            "bzip2" => (num("bzip2_recreated_bytes"), num("bzip2_kept_bytes")),
            "zstd" => (num("zstd_recreated_bytes"), num("zstd_kept_bytes")),
            "ar (.deb)" => (num("deb_recreated_bytes"), num("deb_kept_bytes")),
            "rpm" => (num("rpm_recreated_bytes"), num("rpm_kept_bytes")),
            "gzip" => (
                num("recreated_bytes")
                    - num("zip_recreated_bytes")
                    - num("xz_recreated_bytes")
                    - num("bzip2_recreated_bytes")
                    - num("zstd_recreated_bytes")
                    - num("deb_recreated_bytes")
                    - num("rpm_recreated_bytes"),
                num("gzip_kept_bytes"),
            ),
            _ => (num("recreated_bytes"), 0),
        };
        let stored = num("stored_bytes_new");
        let out = dir.join("out");
        crate::measure::wait_quiet(b.quiet_wait)?;
        let get = b
            .ferry(&store)
            .args(["get", "f@1", "--out"])
            .arg(format!("dir:{}", out.display()))
            .measure()?;
        for f in files {
            let back = out.join(f.file_name().expect("a file name"));
            let same = Cmd::new("cmp").arg(f).arg(&back).run();
            if same.is_err() {
                bail!("{} came back from ferry get differently", f.display());
            }
        }
        let tool = match decompressor(format) {
            Some(t) => {
                crate::measure::wait_quiet(b.quiet_wait)?;
                let m = Cmd::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "for f in \"$@\"; do {t} \"$f\" > /dev/null || exit 1; done"
                    ))
                    .arg("sh")
                    .args(files)
                    .measure()?;
                Some((t, m))
            }
            None => None,
        };
        rows.push(Row {
            format,
            files: files.len(),
            bytes,
            recreated,
            kept,
            add,
            get,
            stored,
            tool,
        });
    }

    let mut md = String::new();
    environment(&mut md, &b, "Package formats (issue 19)")?;
    writeln!(
        md,
        "\nInputs: {}.\n",
        args.inputs
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        md,
        "Per format, a fresh store: `ferry add --json f@1 file:…` of all its files, `ferry get f@1 --out dir:OUT` \
         (every file re-created, each compared with `cmp`), and the decompressor over the same files \
         (`sh -c 'for f; do TOOL \"$f\" > /dev/null; done'`). Wall time and CPU of the whole process; files \
         read once before.\n"
    )?;
    writeln!(
        md,
        "| format | files | bytes | re-created | kept | stored / bytes | add s · CPU-s · MiB | get s · CPU-s | \
         decompressor | its s · CPU-s | add CPU / its CPU | get / its wall |"
    )?;
    writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    )?;
    for r in &rows {
        let share = r.recreated as f64 / r.bytes.max(1) as f64;
        let (tool, its, cpu_ratio, wall_ratio) = match &r.tool {
            Some((t, m)) => (
                format!("`{t}`"),
                format!("{:.2} · {:.2}", m.wall, m.cpu()),
                format!("{:.1}", r.add.cpu() / m.cpu().max(0.01)),
                format!("{:.1}", r.get.wall / m.wall.max(0.01)),
            ),
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        writeln!(
            md,
            "| {} | {} | {} | **{:.1} %** | {} | {:.2} | {:.2} · {:.2} · {} | {:.2} · {:.2} | {tool} | {its} | \
             {cpu_ratio} | {wall_ratio} |",
            r.format,
            r.files,
            mb(r.bytes),
            100.0 * share,
            mb(r.kept),
            r.stored as f64 / r.bytes.max(1) as f64,
            r.add.wall,
            r.add.cpu(),
            r.add.max_rss_kib / 1024,
            r.get.wall,
            r.get.cpu(),
        )?;
    }
    writeln!(md)?;
    // "other" is not a compressed format: nothing there to re-create.
    let verdicts: Vec<String> = rows
        .iter()
        .filter(|r| r.format != "other")
        .map(|r| {
            let share = r.recreated as f64 / r.bytes.max(1) as f64;
            format!(
                "{} {:.1} % → **{}**",
                r.format,
                100.0 * share,
                crate::verdict(share >= TARGET_SHARE)
            )
        })
        .collect();
    writeln!(
        md,
        "Target: ≥ {:.0} % of each compressed format's bytes re-created: {}.\n",
        100.0 * TARGET_SHARE,
        verdicts.join("; ")
    )?;
    b.finish(args.keep_stores)?;
    crate::publish(&md, args.write.as_deref(), BEGIN, END)
}
