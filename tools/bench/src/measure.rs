//! Running commands: plain (fixture building) and measured (wall time, CPU time, peak RSS).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// GNU time: it waits for the child with wait4(2), so `%M` is that one child's ru_maxrss (KiB),
/// untouched by whatever else this program ran before.
const GNU_TIME: &str = "/usr/bin/time";

/// A command line kept as data, so it can be printed and wrapped in `/usr/bin/time`.
#[derive(Clone, Debug)]
pub struct Cmd {
    prog: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
}

impl Cmd {
    pub fn new(prog: impl AsRef<OsStr>) -> Self {
        Cmd {
            prog: prog.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, it: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(it.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The command as a shell-ish line, for logs and error messages.
    pub fn display(&self) -> String {
        let mut s = self.prog.to_string_lossy().into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    fn command(&self, prog: &OsStr, pre: &[OsString]) -> Command {
        let mut c = Command::new(prog);
        c.args(pre);
        if prog != self.prog.as_os_str() {
            c.arg(&self.prog);
        }
        c.args(&self.args);
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c
    }

    /// Runs to completion with stderr passed through (fixture building); fails on a non-zero exit.
    pub fn run(&self) -> Result<()> {
        eprintln!("  $ {}", self.display());
        let status = self
            .command(&self.prog, &[])
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("cannot start {}", self.display()))?;
        if !status.success() {
            bail!("{} failed: {status}", self.display());
        }
        Ok(())
    }

    /// Runs to completion and returns stdout; fails on a non-zero exit, quoting stderr.
    pub fn output(&self) -> Result<String> {
        let out = self
            .command(&self.prog, &[])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot start {}", self.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed: {}: {}",
                self.display(),
                out.status,
                tail(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs to completion with stdout written to the file `out` (created or truncated), stderr passed through.
    pub fn run_to(&self, out: &Path) -> Result<()> {
        eprintln!("  $ {} > {}", self.display(), out.display());
        let file = File::create(out).with_context(|| format!("create {}", out.display()))?;
        let status = self
            .command(&self.prog, &[])
            .stdin(Stdio::null())
            .stdout(file)
            .status()
            .with_context(|| format!("cannot start {}", self.display()))?;
        if !status.success() {
            bail!("{} failed: {status}", self.display());
        }
        Ok(())
    }

    /// Starts it in the background (servers), stdin from /dev/null.
    pub fn spawn(&self, stdout: Stdio, stderr: Stdio) -> Result<std::process::Child> {
        eprintln!("  $ {} &", self.display());
        self.command(&self.prog, &[])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", self.display()))
    }

    /// Runs under `/usr/bin/time` and measures it. stdout and stderr are captured.
    pub fn measure(&self) -> Result<Measured> {
        let timefile = tempfile::NamedTempFile::new()?;
        let pre: Vec<OsString> = vec![
            "-f".into(),
            "%M %U %S".into(),
            "-o".into(),
            timefile.path().as_os_str().to_owned(),
        ];
        let mut c = self.command(OsStr::new(GNU_TIME), &pre);
        c.stdin(Stdio::null());
        let busy0 = busy_seconds()?;
        let start = Instant::now();
        let out = c
            .output()
            .with_context(|| format!("cannot start {GNU_TIME} {}", self.display()))?;
        let wall = start.elapsed().as_secs_f64();
        let busy = busy_seconds()? - busy0;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!(
                "{} failed: {}: {}",
                self.display(),
                out.status,
                tail(&out.stderr)
            );
        }
        let report = std::fs::read_to_string(timefile.path())?;
        let line = report
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            bail!("unexpected {GNU_TIME} output {report:?}");
        }
        let user: f64 = f[1].parse().context("time %U")?;
        let sys: f64 = f[2].parse().context("time %S")?;
        Ok(Measured {
            wall,
            others: (busy - user - sys).max(0.0),
            max_rss_kib: f[0].parse().context("time %M")?,
            user,
            sys,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        })
    }
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// What one measured run cost.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Seconds, measured here around the child (fork to reap).
    pub wall: f64,
    pub user: f64,
    pub sys: f64,
    pub max_rss_kib: u64,
    /// CPU seconds the rest of the machine used meanwhile (from /proc/stat): noise from other work.
    pub others: f64,
    pub stdout: String,
    #[allow(dead_code)]
    pub stderr: String,
}

impl Measured {
    pub fn cpu(&self) -> f64 {
        self.user + self.sys
    }
}

/// CPU seconds spent busy (not idle, not waiting for I/O) by all CPUs since boot, from `/proc/stat`.
pub fn busy_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        bail!("unexpected /proc/stat line {cpu:?}");
    }
    // user nice system idle iowait irq softirq steal: count all but idle and iowait. USER_HZ is 100 on Linux.
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Ok(busy as f64 / 100.0)
}

/// Waits (up to `max_s` seconds) until the rest of the machine is nearly idle: less than a quarter of a CPU
/// busy over a 2-second window. Returns the busy fraction last seen (in CPUs).
pub fn wait_quiet(max_s: u64) -> Result<f64> {
    let start = Instant::now();
    let mut said = false;
    loop {
        let b0 = busy_seconds()?;
        std::thread::sleep(std::time::Duration::from_secs(2));
        let cpus = (busy_seconds()? - b0) / 2.0;
        if cpus < 0.25 {
            if said {
                eprintln!("ferry-bench: quiet now ({cpus:.2} CPUs)");
            }
            return Ok(cpus);
        }
        if start.elapsed().as_secs() >= max_s {
            eprintln!(
                "ferry-bench: still {cpus:.2} CPUs busy; going ahead (see the other-CPU column)"
            );
            return Ok(cpus);
        }
        if !said {
            eprintln!("ferry-bench: other work is using {cpus:.2} CPUs; waiting up to {max_s} s for quiet");
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
}

/// A `KEY:` figure of `/proc/PID/status` in KiB (`VmHWM`: peak resident set, `VmRSS`: resident set now).
pub fn proc_status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// Flushes dirty pages (so one run's writeback is not charged to the next) and times the flush.
pub fn sync() -> Result<f64> {
    let start = Instant::now();
    let st = Command::new("sync").status().context("sync")?;
    if !st.success() {
        bail!("sync failed: {st}");
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Reads a file to the end so that every tool starts with it in the page cache.
pub fn warm(path: &Path) -> Result<u64> {
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        n += k as u64;
    }
}

/// [`warm`] for every regular file below `root` (or `root` itself if it is a file).
pub fn warm_tree(root: &Path) -> Result<u64> {
    let mut n = 0;
    for e in walkdir::WalkDir::new(root) {
        let e = e?;
        if e.file_type().is_file() {
            n += warm(e.path())?;
        }
    }
    Ok(n)
}

/// Size of a tree: (apparent bytes of regular files, bytes allocated on disk as `du` counts them, files).
pub fn tree_size(root: &Path) -> Result<(u64, u64, u64)> {
    let (mut apparent, mut disk, mut files) = (0, 0, 0);
    for e in walkdir::WalkDir::new(root) {
        let e = e?;
        let md = e.metadata()?;
        disk += md.blocks() * 512;
        if md.is_file() {
            apparent += md.len();
            files += 1;
        }
    }
    Ok((apparent, disk, files))
}

/// Bytes written by `a | b | ...`: each stage a command, stdout of the last one counted here.
pub fn pipeline_bytes(stages: &[Cmd]) -> Result<u64> {
    let mut children = Vec::new();
    let mut prev: Option<Stdio> = None;
    for (i, s) in stages.iter().enumerate() {
        let mut c = s.command(&s.prog, &[]);
        c.stdin(prev.take().unwrap_or_else(Stdio::null))
            .stdout(Stdio::piped());
        let mut child = c
            .spawn()
            .with_context(|| format!("cannot start {}", s.display()))?;
        let out = child.stdout.take().expect("piped");
        if i + 1 == stages.len() {
            let mut out = out;
            let n = io::copy(&mut out, &mut io::sink())?;
            children.push((s, child));
            for (s, mut ch) in children {
                let st = ch.wait()?;
                if !st.success() {
                    bail!("{} failed: {st}", s.display());
                }
            }
            return Ok(n);
        }
        prev = Some(Stdio::from(out));
        children.push((s, child));
    }
    bail!("empty pipeline")
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
