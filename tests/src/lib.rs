//! Support for Ferry's integration tests (`tests/it`): everything here drives real programs on real data.
//!
//! - [`apt`]: a private `apt-get` with its own sources, state and cache.
//! - [`cmd`]: run external programs with a timeout, capture their output, kill them on drop.
//! - [`ferry`]: locate the `ferry` binary next to the test binary and run it against a throwaway store.
//! - [`fixtures`]: real artifacts built once per run (Debian packages → OCI images) in `target/ferry-fixtures`.
//! - [`registry`]: a real `docker-registry` on a free loopback port, stopped on drop.
//! - [`podman`]: podman with private vfs storage.
//! - [`node`]: a running `ferry serve` on a free port, stopped with SIGTERM.
//! - [`fsutil`]: hashing, byte flipping, tree comparison, OCI layout helpers.
//! - [`netns`]: several hosts on one machine — network namespaces on a bridge, rate shaping, partitions, and a
//!   relay that adds delay (`ferry-delay-relay`).

pub mod apt;
pub mod cmd;
pub mod ferry;
pub mod fixtures;
pub mod fsutil;
pub mod metrics;
pub mod netns;
pub mod node;
pub mod podman;
pub mod registry;
pub mod sigstore;
pub mod token;

use std::path::PathBuf;

/// The cargo target directory this test binary was built into (`<target>/debug/deps/it-…` → `<target>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent directory");
    let profile = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent")
    } else {
        deps
    };
    profile
        .parent()
        .expect("profile dir has a parent")
        .to_path_buf()
}

/// The profile directory (`<target>/debug`) where cargo puts the workspace binaries.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent directory");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// A fresh temporary directory under `<target>/ferry-tmp`; kept after the test when `FERRY_TEST_KEEP=1`.
pub fn tempdir() -> tempfile::TempDir {
    let base = target_dir().join("ferry-tmp");
    std::fs::create_dir_all(&base).expect("create target/ferry-tmp");
    let mut dir = tempfile::Builder::new()
        .prefix("it-")
        .tempdir_in(&base)
        .expect("tempdir");
    if std::env::var_os("FERRY_TEST_KEEP").is_some_and(|v| v == "1") {
        eprintln!("FERRY_TEST_KEEP: keeping {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    dir
}

/// A fresh temporary directory with a short path (under `/tmp`), for tools that limit path lengths (podman
/// refuses a `--runroot` longer than 50 characters, which `<target>/ferry-tmp/…` can exceed).
pub fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ferry-")
        .tempdir_in("/tmp")
        .expect("tempdir in /tmp")
}
