//! Running external programs: captured output, a timeout, and guards that kill what a test started.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Default time limit for one external command.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// What a finished command left behind.
pub struct Output {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Raw stdout.
    pub stdout_bytes: Vec<u8>,
    /// stdout as (lossy) text.
    pub stdout: String,
    /// stderr as (lossy) text.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl Output {
    /// Panics with the whole output unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "command failed:\n{self}");
        self
    }

    /// Panics with the whole output unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code, Some(code), "expected exit code {code}:\n{self}");
        self
    }

    /// stdout parsed as one JSON document (panics with the output if it is not JSON).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }

    /// The lines of stderr that start with `error: `.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect()
    }

    /// The single `error: …` line of stderr; panics unless there is exactly one.
    #[track_caller]
    pub fn error_line(&self) -> &str {
        let lines = self.error_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one `error: ` line on stderr:\n{self}"
        );
        lines[0]
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 6000;
        let cut = |s: &str| -> String {
            if s.len() <= MAX {
                s.to_string()
            } else {
                let mut end = MAX;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}… [{} more bytes]", &s[..end], s.len() - end)
            }
        };
        writeln!(f, "  $ {}", self.cmdline)?;
        writeln!(f, "  exit: {:?} after {:.2?}", self.code, self.elapsed)?;
        writeln!(f, "  --- stdout ---\n{}", cut(&self.stdout))?;
        write!(f, "  --- stderr ---\n{}", cut(&self.stderr))
    }
}

/// A human-readable command line.
pub fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion (stdin closed) with a time limit; kills it and panics on timeout.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let line = cmdline(cmd);
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
    let mut guard = ChildGuard::new(child, &line);
    let child = guard.child.as_mut().expect("child");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break Some(status),
            None if start.elapsed() > timeout => break None,
            None => thread::sleep(Duration::from_millis(10)),
        }
    };
    if status.is_none() {
        drop(guard); // kills the child, which closes its pipes
    } else {
        guard.child = None;
    }
    let stdout_bytes = t_out.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&t_err.join().expect("stderr reader")).into_owned();
    let output = Output {
        cmdline: line,
        code: status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr,
        elapsed: start.elapsed(),
    };
    assert!(
        status.is_some(),
        "timed out after {timeout:?} (killed):\n{output}"
    );
    if output.elapsed > Duration::from_secs(3) {
        eprintln!("[{:.1?}] {}", output.elapsed, output.cmdline);
    }
    output
}

/// Runs `cmd` with the default time limit.
pub fn run(cmd: &mut Command) -> Output {
    run_timeout(cmd, TIMEOUT)
}

/// Runs `program args…` and panics (with its output) unless it exits 0.
#[track_caller]
pub fn run_ok<I, S>(program: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new(program).args(args)).ok()
}

/// A child process that is killed (SIGKILL) and reaped when the guard is dropped.
pub struct ChildGuard {
    /// The child; `None` once it has been waited for.
    pub child: Option<Child>,
    name: String,
}

impl ChildGuard {
    /// Guards `child`; `name` is used in messages.
    pub fn new(child: Child, name: &str) -> Self {
        Self {
            child: Some(child),
            name: name.to_string(),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// SIGKILL and reap now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(None) = c.try_wait() {
                eprintln!("stopping `{}` (pid {})", self.name, c.id());
            }
        }
        self.kill();
    }
}

/// Starts `cmd` with stdout piped (its other streams as the caller set them) and waits up to `timeout` for its
/// first line of stdout — how servers here announce their address. Panics if none comes.
pub fn spawn_first_line(cmd: &mut Command, name: &str, timeout: Duration) -> (ChildGuard, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let guard = ChildGuard::new(child, name);
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("{name} printed no line within {timeout:?}"));
    (guard, line)
}
