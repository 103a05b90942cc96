//! podman with its own storage (vfs) under a test's directory, so tests never touch the machine's images.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A private podman: image store under the test's directory, run state under a short `/tmp` path (podman refuses a
/// `--runroot` longer than 50 characters).
pub struct Podman {
    root: PathBuf,
    runroot: tempfile::TempDir,
    auth: PathBuf,
}

impl Podman {
    /// Storage under `dir/podman-root`, credentials (from `podman login`) in `dir/podman-auth.json`.
    pub fn new(dir: &Path) -> Podman {
        Podman {
            root: dir.join("podman-root"),
            runroot: crate::short_tempdir(),
            auth: dir.join("podman-auth.json"),
        }
    }

    /// `podman --root … --runroot … --storage-driver vfs ARGS…`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(self.runroot.path())
            .args(["--storage-driver", "vfs"])
            .args(args);
        // podman stats the file before a pull, so it is named only once `podman login` can create or has created it.
        if args.first() == Some(&"login") || self.auth.exists() {
            c.env("REGISTRY_AUTH_FILE", &self.auth);
        }
        c
    }

    /// The skopeo/containers-image reference of image `name` in this storage.
    pub fn storage(&self, name: &str) -> String {
        format!(
            "containers-storage:[vfs@{}+{}]{name}",
            self.root.display(),
            self.runroot.path().display()
        )
    }

    /// Run `podman ARGS…` and capture everything.
    pub fn run(&self, args: &[&str]) -> crate::cmd::Output {
        crate::cmd::run(&mut self.command(args))
    }
}
