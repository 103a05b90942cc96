//! `ferry-bench closure --work DIR`: resolving a partial apt mirror's dependency closure (issue 22) over Debian
//! bookworm's whole main/amd64 index, next to apt-get resolving the same request over the same index.
//!
//! The index is the machine's own (`tools/fixtures/apt-partial.sh`: Debian's InRelease and the Packages it
//! lists, from `/var/lib/apt/lists`). Per rep, timed whole: `ferry add --plan` of
//! `apt:ROOT?suites=bookworm&components=main&architectures=amd64&packages-file=LIST&keyring=DEBIAN` (reads and
//! checks the InRelease against Debian's keyring, reads the 50 MB index, resolves; nothing fetched or stored),
//! and `apt-get install --print-uris` of the same packages on an empty system with a private configuration whose
//! lists are that index, its binary caches removed first (so apt parses the index as ferry does). The two
//! closures are compared: the run fails if they differ.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use crate::measure::{Cmd, Measured};
use crate::{environment, Bench};

pub const BEGIN: &str =
    "<!-- BEGIN ferry-bench closure (generated; edit outside these markers) -->";
pub const END: &str = "<!-- END ferry-bench closure -->";

/// The target: a closure of 50 packages over ~64k stanzas in at most this long, and this much memory.
const TARGET_S: f64 = 2.0;
const TARGET_MIB: u64 = 256;

/// Fifty packages a private cloud's servers commonly need: web, database, language runtimes, storage and
/// network tools — a varied closure (425 packages on bookworm).
const DEFAULT_LIST: &[&str] = &[
    "curl",
    "jq",
    "nginx",
    "postgresql-15",
    "redis-server",
    "python3",
    "python3-pip",
    "git",
    "openssh-server",
    "rsync",
    "vim",
    "tmux",
    "htop",
    "sudo",
    "cron",
    "logrotate",
    "rsyslog",
    "ca-certificates",
    "gnupg",
    "apache2",
    "libapache2-mod-php",
    "php-fpm",
    "php-mysql",
    "mariadb-server",
    "memcached",
    "haproxy",
    "keepalived",
    "bind9",
    "isc-dhcp-server",
    "chrony",
    "nfs-common",
    "nfs-kernel-server",
    "samba",
    "cifs-utils",
    "lvm2",
    "mdadm",
    "parted",
    "xfsprogs",
    "btrfs-progs",
    "nftables",
    "tcpdump",
    "strace",
    "lsof",
    "iotop",
    "sysstat",
    "nodejs",
    "default-jre-headless",
    "maven",
    "golang-go",
    "build-essential",
];

const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

#[derive(clap::Args)]
pub struct ClosureArgs {
    /// Working directory: the index fixture is cached in WORK/fixtures/apt-closure.
    #[arg(long)]
    work: PathBuf,
    /// The ferry binary (default: target/release/ferry of this workspace).
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// A package list (one per line) instead of the built-in fifty.
    #[arg(long)]
    list: Option<PathBuf>,
    /// Repetitions (medians reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Also take Recommends (apt's default), on both sides.
    #[arg(long)]
    recommends: bool,
    /// Also write the results into FILE between the ferry-bench closure markers (appended if absent).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Before each timed run, wait up to SECS for other work on the machine to calm down.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    quiet_wait: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The pool paths of a closure printed by `apt-get --print-uris`, relative to `root`.
fn apt_paths(out: &str, root: &Path) -> BTreeSet<String> {
    let prefix = format!("file:{}/", root.display());
    out.lines()
        .filter_map(|l| l.split('\'').nth(1))
        .map(|u| {
            let p = u.strip_prefix(&prefix).unwrap_or(u);
            // apt percent-encodes `+`, `:` and `~` in file names.
            let mut s = String::new();
            let b = p.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' && i + 2 < b.len() {
                    if let Ok(v) = u8::from_str_radix(&p[i + 1..i + 3], 16) {
                        s.push(v as char);
                        i += 3;
                        continue;
                    }
                }
                s.push(b[i] as char);
                i += 1;
            }
            s
        })
        .collect()
}

pub fn run(args: ClosureArgs) -> Result<()> {
    let b = Bench::setup(
        &args.work,
        args.ferry.clone(),
        args.quiet_wait,
        &["/usr/bin/time", "apt-get"],
    )?;
    let fixture = b.work.join("fixtures/apt-closure");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apt-partial.sh");
    // The fixture's pool is the closure of one small package; only its index matters here.
    Cmd::new(&script).arg(&fixture).arg("hello").run()?;
    let root = fixture.join("repo");
    let apt = fixture.join("apt");
    let packages: Vec<String> = match &args.list {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        None => DEFAULT_LIST.iter().map(|s| s.to_string()).collect(),
    };
    let list = b.runs.join("packages.txt");
    std::fs::write(&list, packages.join("\n") + "\n")?;
    let index = root.join("dists/bookworm/main/binary-amd64/Packages");
    let stanzas = std::fs::read_to_string(&index)?
        .lines()
        .filter(|l| l.starts_with("Package: "))
        .count();
    let index_bytes = std::fs::metadata(&index)?.len();
    let store = b.runs.join("store");
    b.ferry_init(&store)?;
    let source = format!(
        "apt:{}?suites=bookworm&components=main&architectures=amd64&packages-file={}&keyring={DEBIAN_KEYRING}{}",
        root.display(),
        list.display(),
        if args.recommends { "&recommends=yes" } else { "" }
    );
    let fixture_apt = ferry_tests::fixtures::DebianPartial {
        root: root.clone(),
        apt: apt.clone(),
        packages: &[],
    };
    let apt_get = |pkgs: &[String]| {
        Cmd::new("apt-get")
            .args(fixture_apt.apt_options(args.recommends))
            .args(["install", "--print-uris", "-qq"])
            .args(pkgs)
    };

    let mut ferry_runs: Vec<Measured> = Vec::new();
    let mut apt_runs: Vec<Measured> = Vec::new();
    let mut closure_size = 0;
    for rep in 0..args.reps {
        eprintln!("ferry-bench: closure: rep {rep}");
        crate::measure::warm(&index)?;
        crate::measure::wait_quiet(b.quiet_wait)?;
        let f = b
            .ferry(&store)
            .args(["--json", "add", "x@1", &source, "--plan"])
            .measure()?;
        for cache in ["pkgcache.bin", "srcpkgcache.bin"] {
            let _ = std::fs::remove_file(apt.join("cache").join(cache));
        }
        crate::measure::wait_quiet(b.quiet_wait)?;
        let a = apt_get(&packages).measure()?;
        let plan: serde_json::Value = serde_json::from_str(f.stdout.trim())
            .with_context(|| format!("ferry add --plan printed {:?}", f.stdout))?;
        let ferry_paths: BTreeSet<String> = plan[0]["packages"]
            .as_array()
            .context("no packages in the plan")?
            .iter()
            .filter_map(|p| p["filename"].as_str().map(str::to_string))
            .collect();
        let apt_set = apt_paths(&a.stdout, &root);
        ensure!(
            ferry_paths == apt_set,
            "the closures differ: only ferry {:?}, only apt {:?}",
            ferry_paths.difference(&apt_set).collect::<Vec<_>>(),
            apt_set.difference(&ferry_paths).collect::<Vec<_>>()
        );
        closure_size = ferry_paths.len();
        ferry_runs.push(f);
        apt_runs.push(a);
    }

    let mut md = String::new();
    environment(&mut md, &b, "Partial mirror closure (issue 22)")?;
    writeln!(
        md,
        "\nIndex: Debian bookworm main/binary-amd64/Packages from this machine's apt lists ({stanzas} stanzas, \
         {:.1} MB), its InRelease checked against `{DEBIAN_KEYRING}` by ferry. Request: {} packages{} \
         (`--list` or the built-in list); closure: **{closure_size} packages**, the same on both sides (checked \
         every rep).\n",
        index_bytes as f64 / 1e6,
        packages.len(),
        if args.recommends { " with Recommends" } else { ", no Recommends" }
    )?;
    writeln!(
        md,
        "- ferry: `ferry --json add x@1 'apt:ROOT?suites=bookworm&components=main&architectures=amd64&\
         packages-file=LIST&keyring=…' --plan` (reads and checks the Release, reads the index, resolves; nothing \
         fetched or stored).\n- apt: `apt-get install --print-uris -qq PKGS…` with a private configuration whose \
         lists are the same index and an empty status, its `pkgcache.bin` removed before each rep (so it parses \
         the index too).\n"
    )?;
    writeln!(
        md,
        "| rep | ferry s | ferry peak RSS | apt-get s | apt-get peak RSS | ferry / apt-get |"
    )?;
    writeln!(md, "|---:|---:|---:|---:|---:|---:|")?;
    for (i, (f, a)) in ferry_runs.iter().zip(&apt_runs).enumerate() {
        writeln!(
            md,
            "| {i} | {:.2} | {} MiB | {:.2} | {} MiB | {:.2}x |",
            f.wall,
            f.max_rss_kib / 1024,
            a.wall,
            a.max_rss_kib / 1024,
            f.wall / a.wall.max(0.001)
        )?;
    }
    let fs = median(ferry_runs.iter().map(|m| m.wall).collect());
    let asec = median(apt_runs.iter().map(|m| m.wall).collect());
    let ratio = median(
        ferry_runs
            .iter()
            .zip(&apt_runs)
            .map(|(f, a)| f.wall / a.wall.max(0.001))
            .collect(),
    );
    let rss = ferry_runs
        .iter()
        .map(|m| m.max_rss_kib / 1024)
        .max()
        .unwrap_or(0);
    writeln!(
        md,
        "\nMedian of {}: ferry {fs:.2} s, apt-get {asec:.2} s, **{ratio:.2}x** (median of the per-rep ratios); \
         ferry's largest peak RSS {rss} MiB.\n",
        args.reps
    )?;
    writeln!(
        md,
        "Targets: closure of 50 packages over ~64k stanzas ≤ {TARGET_S} s → {} ({fs:.2} s); memory ≤ {TARGET_MIB} \
         MiB → {} ({rss} MiB).\n",
        crate::verdict(fs <= TARGET_S),
        crate::verdict(rss <= TARGET_MIB)
    )?;
    b.finish(false)?;
    crate::publish(&md, args.write.as_deref(), BEGIN, END)
}
