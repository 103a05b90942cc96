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
    /// The control-plane address it printed (`/ip4/…/tcp/…/p2p/PEERID`), when it takes part in network sync.
    pub p2p: Option<String>,
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
        Node::spawn(ferry::command(store, args))
    }

    /// Run `cmd` (a `ferry` command that ends up serving) and wait until it prints `listening on http://ADDR`.
    pub fn spawn(mut cmd: std::process::Command) -> Node {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferry serve");
        let stdout = child.stdout.take().expect("stdout");
        let guard = ChildGuard::new(child, "ferry serve");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut seen = Vec::new();
            let mut p2p = None;
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("p2p listening on ") {
                    p2p.get_or_insert(addr.trim().to_string());
                }
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(Ok((addr.trim().to_string(), p2p)));
                    // Keep reading so the node never blocks on a full pipe.
                    lines.for_each(drop);
                    return;
                }
                seen.push(line);
            }
            let _ = tx.send(Err(seen.join("\n")));
        });
        let (addr, p2p) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("ferry serve did not print its address within 60 s")
            .unwrap_or_else(|out| {
                panic!("ferry serve ended without listening; its stdout:\n{out}")
            });
        Node { guard, addr, p2p }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Send SIGTERM and wait up to 10 s; returns the exit code.
    pub fn stop(self) -> Option<i32> {
        let pid = self.guard.id();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.wait_exit()
    }

    /// SIGKILL, as a crash or the OOM killer would end it; waits until it is gone.
    pub fn kill(mut self) {
        self.guard.kill();
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// Wait up to 10 s for the process to end on its own (after a signal the test sent); returns its exit code.
    pub fn wait_exit(mut self) -> Option<i32> {
        let child = self.guard.child.as_mut().expect("child");
        for _ in 0..200 {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.guard.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ferry serve did not exit within 10 s");
    }
}
