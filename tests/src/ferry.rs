//! The `ferry` binary under test, and throwaway stores to run it against.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::cmd::{self, Output};

/// Path of the `ferry` binary: `$FERRY_BIN`, else `<target>/debug/ferry` next to this test binary.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let path = match std::env::var_os("FERRY_BIN") {
            Some(p) => PathBuf::from(p),
            None => crate::profile_dir().join("ferry"),
        };
        assert!(
            path.is_file(),
            "the ferry binary is missing at {}: build it first with `cargo build -p ferry-cli` \
             (or point FERRY_BIN at it)",
            path.display()
        );
        path
    })
}

/// A `Command` for `ferry --store STORE --no-progress ARGS…`.
pub fn command<I, S>(store: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(bin());
    c.arg("--store").arg(store).arg("--no-progress").args(args);
    c.env_remove("RUST_LOG")
        .env_remove("FERRY_STORE")
        .env("NO_COLOR", "1");
    c
}

/// Runs `ferry --store STORE --no-progress ARGS…` and captures everything.
pub fn ferry<I, S>(store: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    cmd::run(&mut command(store, args))
}

/// A store in its own temporary directory, initialised with `ferry init`.
pub struct Store {
    /// The temporary directory holding the store (and anything else the test puts there).
    pub tmp: tempfile::TempDir,
    /// The store directory (`TMP/store`).
    pub path: PathBuf,
    /// The key id `ferry init --json` printed.
    pub key_id: String,
}

impl Store {
    /// `ferry init --json` in a fresh temporary directory.
    pub fn new() -> Self {
        let tmp = crate::tempdir();
        let path = tmp.path().join("store");
        Self::init(tmp, path)
    }

    /// `ferry init --json` of a store at `DIR/store`, with a temporary directory elsewhere for everything else
    /// (a store on a filesystem the test made, such as a small tmpfs).
    pub fn new_in(dir: &Path) -> Self {
        Self::init(crate::tempdir(), dir.join("store"))
    }

    fn init(tmp: tempfile::TempDir, path: PathBuf) -> Self {
        let out = ferry(&path, ["init", "--json"]).ok();
        let key_id = out.json()["key_id"]
            .as_str()
            .unwrap_or_else(|| panic!("init --json has no string key_id:\n{out}"))
            .to_string();
        Self { tmp, path, key_id }
    }

    /// A path inside the store's temporary directory (not inside the store).
    pub fn tmp_path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Runs ferry against this store.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        ferry(&self.path, args)
    }

    /// Runs ferry with `--json` appended, requires exit 0, returns the parsed document.
    #[track_caller]
    pub fn json<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut v: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        v.push("--json".into());
        self.run(v).ok().json()
    }

    /// `ferry add RELEASE SOURCES… --json`, required to succeed.
    #[track_caller]
    pub fn add(&self, release: &str, sources: &[&str]) -> Value {
        let mut args = vec!["add", release];
        args.extend_from_slice(sources);
        self.json(args)
    }

    /// `ferry show RELEASE --json`.
    #[track_caller]
    pub fn show(&self, release: &str) -> Value {
        self.json(["show", release])
    }

    /// `ferry ls --json` as an array.
    #[track_caller]
    pub fn ls(&self) -> Vec<Value> {
        let v = self.json(["ls"]);
        v.as_array()
            .unwrap_or_else(|| panic!("ls --json is not an array: {v}"))
            .clone()
    }

    /// Whether `ferry ls --json` lists NAME@VERSION.
    #[track_caller]
    pub fn lists(&self, name: &str, version: &str) -> bool {
        self.ls()
            .iter()
            .any(|r| r["name"] == name && r["version"] == version)
    }

    /// `ferry fsck --json`, whatever its exit code, with the code.
    #[track_caller]
    pub fn fsck_json(&self) -> (Option<i32>, Value, Output) {
        let out = self.run(["fsck", "--json"]);
        let v = out.json();
        (out.code, v, out)
    }

    /// `ferry get RELEASE --out OUT`, required to succeed.
    #[track_caller]
    pub fn get(&self, release: &str, out: &str) -> Output {
        self.run(["get", release, "--out", out]).ok()
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads an unsigned number field of a JSON document, with a useful panic.
#[track_caller]
pub fn num(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("field `{field}` is not an unsigned number in {v}"))
}

/// Reads a string field of a JSON document, with a useful panic.
#[track_caller]
pub fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("field `{field}` is not a string in {v}"))
}

/// The `entries` array of a `show --json` document.
#[track_caller]
pub fn entries(show: &Value) -> &Vec<Value> {
    show["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("show --json has no entries array: {show}"))
}

/// The entries of type `image`.
#[track_caller]
pub fn images(show: &Value) -> Vec<&Value> {
    entries(show)
        .iter()
        .filter(|e| e["type"] == "image")
        .collect()
}
