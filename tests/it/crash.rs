//! Damage and crashes: fsck finds a flipped byte in a pack; kill -9 during add leaves a store that fsck
//! accepts, that does not list the half-added release, and that resumes without storing anything twice.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use ferry_tests::cmd::ChildGuard;
use ferry_tests::ferry::{self, num, Store};
use ferry_tests::fixtures::{images, random_file};
use ferry_tests::fsutil::{dir_bytes, flip_byte, is_hex_digest, sha256_file};

use crate::oci::oci;

/// Every `*.pack` file below `STORE/packs`.
fn pack_files(store: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(store.join("packs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "pack"))
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn fsck_detects_flipped_pack_byte() {
    let imgs = images();
    let s = Store::new();
    s.add("img@1", &[&oci(&imgs.layout, "v1")]);
    let (code, good, out) = s.fsck_json();
    assert_eq!(code, Some(0), "fsck of a good store:\n{out}");
    assert_eq!(good["ok"], true, "{out}");
    assert!(
        num(&good, "packs") >= 1 && num(&good, "pack_bytes") > 0,
        "{out}"
    );
    assert_eq!(good["problems"].as_array().map(Vec::len), Some(0), "{out}");

    let packs = pack_files(&s.path);
    let biggest = packs
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap_or_else(|| panic!("no *.pack files under {}/packs", s.path.display()));
    let len = fs::metadata(biggest).unwrap().len();
    flip_byte(biggest, len / 2);

    let plain = s.run(["fsck"]).expect_code(1);
    assert!(
        !plain.stdout.trim().is_empty(),
        "fsck should list the problem on stdout:\n{plain}"
    );
    let (code, bad, out) = s.fsck_json();
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(bad["ok"], false, "{out}");
    let problems = bad["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems array:\n{out}"));
    assert!(
        !problems.is_empty(),
        "fsck --json lists no problem for a flipped pack byte:\n{out}"
    );

    // Nothing unverified is served: get fails, every blob it wrote is intact, and it cleans up after itself.
    let dest = s.tmp_path("out");
    let get = s
        .run(["get", "img@1", "--out", &format!("oci:{}", dest.display())])
        .expect_code(1);
    assert!(!get.error_lines().is_empty(), "{get}");
    let blobs = dest.join("blobs/sha256");
    if blobs.is_dir() {
        let mut leftovers = Vec::new();
        for e in fs::read_dir(&blobs).unwrap().filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_hex_digest(&name) {
                assert_eq!(
                    sha256_file(&e.path()),
                    name,
                    "get wrote a blob that does not match its digest"
                );
            } else {
                leftovers.push(name);
            }
        }
        assert!(
            leftovers.is_empty(),
            "a failed get left temporary files in {}: {leftovers:?}\n{get}",
            blobs.display()
        );
    }
}

#[test]
fn kill_during_add_then_resume() {
    const SIZE: u64 = 640 << 20;
    let tmp = ferry_tests::tempdir();
    let input = tmp.path().join("big.bin");
    random_file(&input, SIZE);
    let source = format!("file:{}", input.display());

    // S2: start the add, kill -9 it part way.
    let s2 = Store::new();
    let child = ferry::command(&s2.path, ["add", "big@1", &source, "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn ferry add");
    let mut guard = ChildGuard::new(child, "ferry add big@1");
    let start = Instant::now();
    let mut written = 0;
    while start.elapsed() < Duration::from_millis(1000) && written < SIZE / 5 {
        assert!(
            guard.running(),
            "ferry add finished after {:?}, before it could be killed: use a larger input",
            start.elapsed()
        );
        thread::sleep(Duration::from_millis(20));
        written = dir_bytes(&s2.path.join("packs"));
    }
    assert!(
        guard.running(),
        "ferry add finished before it could be killed: use a larger input"
    );
    guard.kill(); // SIGKILL
    eprintln!(
        "killed ferry add after {:?} with {written} bytes under packs/",
        start.elapsed()
    );

    let (code, after_kill, out) = s2.fsck_json();
    assert_eq!(code, Some(0), "fsck after kill -9 during add:\n{out}");
    assert_eq!(after_kill["ok"], true, "{out}");
    assert!(!s2.lists("big", "1"), "a killed add left a release");

    // S2 again: the same add now succeeds and reuses what the killed run wrote.
    let resumed = s2.add("big@1", &[&source]);
    assert!(s2.lists("big", "1"));

    // S1: a clean store that ingested the same input once.
    let s1 = Store::new();
    let clean = s1.add("big@1", &[&source]);
    assert_eq!(
        num(&resumed, "chunks"),
        num(&clean, "chunks"),
        "{resumed} vs {clean}"
    );
    assert!(
        num(&resumed, "chunks_new") < num(&resumed, "chunks"),
        "the re-run wrote every chunk again; what the killed run stored was not reused: {resumed}"
    );

    let (c1, f1, o1) = s1.fsck_json();
    let (c2, f2, o2) = s2.fsck_json();
    assert_eq!(c1, Some(0), "{o1}");
    assert_eq!(c2, Some(0), "{o2}");
    assert_eq!(
        num(&f2, "pack_bytes"),
        num(&f1, "pack_bytes"),
        "killed-then-resumed store holds a different amount than a clean one (something stored twice?)\n\
         clean: {f1}\nresumed: {f2}"
    );
    assert_eq!(
        num(&f2, "chunks"),
        num(&f1, "chunks"),
        "clean: {f1}\nresumed: {f2}"
    );

    // And the data is right.
    let dest = s2.tmp_path("out");
    s2.get("big@1", &format!("dir:{}", dest.display()));
    assert_eq!(
        sha256_file(&dest.join("big.bin")),
        sha256_file(&input),
        "resumed release returns different bytes"
    );
}
