//! Progress bars on stderr, drawn by indicatif; hidden with `--no-progress` or when stderr is not a terminal.

use ferry_node::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A bar that the node's long operations drive.
pub struct Bar {
    bar: ProgressBar,
    /// For a command a node runs for a client: notes go to the client's stderr, and no bar is drawn.
    remote: Option<ferry_node::admin::Sink>,
}

impl Bar {
    /// A bar, hidden when `enabled` is false or stderr is not a terminal.
    pub fn new(enabled: bool) -> Self {
        let remote = crate::remote::sink();
        let target = if enabled && remote.is_none() && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        Bar { bar, remote }
    }
}

impl Progress for Bar {
    fn start(&self, label: &str, total: Option<u64>) {
        let style = match total {
            Some(_) => ProgressStyle::with_template(
                "{msg:>24.cyan} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ),
            None => {
                ProgressStyle::with_template("{msg:>24.cyan} {spinner} {bytes} {bytes_per_sec}")
            }
        }
        .expect("valid template")
        .progress_chars("=> ");
        self.bar.set_style(style);
        self.bar
            .set_message(label.chars().take(24).collect::<String>());
        self.bar.set_length(total.unwrap_or(0));
        self.bar.set_position(0);
    }

    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }

    fn finish(&self) {
        self.bar.set_position(self.bar.length().unwrap_or(0));
    }

    fn cancelled(&self) -> Option<&'static str> {
        if ferry_node::progress::stopping() {
            Some("the node is stopping")
        } else if self.remote.as_ref().is_some_and(|s| s.client_gone()) {
            Some("the client that asked for it has gone")
        } else {
            None
        }
    }

    fn note(&self, message: &str) {
        match &self.remote {
            Some(sink) => {
                let _ = sink.stderr(format!("{message}\n").as_bytes());
            }
            None => self.bar.suspend(|| eprintln!("{message}")),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
