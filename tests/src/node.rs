//! A running `ferry serve` on a free loopback port, stopped with SIGTERM (or killed) on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::cmd::ChildGuard;
use crate::ferry;

/// A node serving a store over HTTP.
pub struct Node {
    guard: ChildGuard,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Node {
    /// `ferry --store STORE serve --listen 127.0.0.1:0`, waiting until it prints its address.
    pub fn start(store: &Path) -> Node {
        Node::start_with(store, &[])
    }

    /// [`Node::start`] with more arguments for `serve` (`--push-token-file FILE`, …).
    pub fn start_with(store: &Path, extra: &[&str]) -> Node {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = ferry::command(store, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferry serve");
        let stdout = child.stdout.take().expect("stdout");
        let guard = ChildGuard::new(child, "ferry serve");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("ferry serve did not print its address within 20 s");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line from ferry serve: {line:?}"))
            .to_string();
        Node { guard, addr }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Send SIGTERM and wait up to 10 s; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let pid = self.guard.id();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let child = self.guard.child.as_mut().expect("child");
        for _ in 0..200 {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.guard.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ferry serve did not stop within 10 s of SIGTERM");
    }
}
