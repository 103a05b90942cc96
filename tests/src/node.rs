//! A running `ferry serve` on a free loopback port, stopped with SIGTERM (or killed) on drop.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::cmd::{spawn_first_line, ChildGuard};
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
        let (guard, line) = spawn_first_line(
            ferry::command(store, ["serve", "--listen", "127.0.0.1:0"]).stderr(Stdio::inherit()),
            "ferry serve",
            Duration::from_secs(20),
        );
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
