//! A private apt client: its own `sources.list`, state and cache under a temporary directory, nothing from the
//! host's configuration.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, Output};

/// `apt-get` with `Dir::` options pointing into one directory.
pub struct AptClient {
    dir: PathBuf,
}

impl AptClient {
    /// A client in `dir` whose only source is the one-line `deb [signed-by=KEY] URL SUITE COMPONENTS…`.
    pub fn new(dir: &Path, key: &Path, url: &str, suite: &str, components: &str) -> AptClient {
        for d in [
            "empty.d",
            "state/lists/partial",
            "cache/archives/partial",
            "debs",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(
            dir.join("sources.list"),
            format!(
                "deb [signed-by={}] {url} {suite} {components}\n",
                key.display()
            ),
        )
        .unwrap();
        AptClient {
            dir: dir.to_path_buf(),
        }
    }

    /// `apt-get -o Dir::…=… ARGS…` run in the client's `debs/` directory.
    pub fn run(&self, args: &[&str]) -> Output {
        let d = |p: &str| self.dir.join(p).display().to_string();
        let mut c = Command::new("apt-get");
        c.current_dir(self.dir.join("debs"));
        for o in [
            format!("Dir::Etc::sourcelist={}", d("sources.list")),
            format!("Dir::Etc::sourceparts={}", d("empty.d")),
            format!("Dir::State={}", d("state")),
            format!("Dir::Cache={}", d("cache")),
            "Acquire::Languages=none".to_string(),
            "Debug::NoLocking=1".to_string(),
        ] {
            c.arg("-o").arg(o);
        }
        c.args(args);
        cmd::run(&mut c)
    }

    /// `apt-get update`, which must succeed without warnings about the repository.
    #[track_caller]
    pub fn update(&self) -> Output {
        let out = self.run(&["update"]).ok();
        assert!(
            !out.stdout.contains("Err:")
                && !out.stderr.contains("W: GPG")
                && !out.stderr.contains("E:"),
            "apt-get update complained:\n{out}"
        );
        out
    }

    /// `apt-get download PKG`; returns the downloaded file.
    #[track_caller]
    pub fn download(&self, pkg: &str) -> PathBuf {
        self.run(&["download", pkg]).ok();
        crate::fsutil::find_by_prefix(&self.dir.join("debs"), &format!("{pkg}_"))
    }
}
