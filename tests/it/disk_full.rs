//! A full disk (issue 20): `add`, `import`, `sync`, a push and `gc` on a store whose filesystem fills up (a small
//! tmpfs the test mounts, filled with a file) fail with an error that says the space ran out and names the
//! store, lose nothing the store already held (its releases still read back exact while the disk is full), and
//! once the filler is removed fsck finds the store clean and the same command completes.

use std::path::{Path, PathBuf};

use ferry_tests::cmd::{run, run_ok, Output};
use ferry_tests::ferry::{num, Store};
use ferry_tests::fixtures::images;

use crate::oci::oci;
use crate::push::{ci_creds, pull_back, push_node, skopeo_push};
use crate::sync::{
    allow_all, content_hashes, fsck_clean, noise, seed_and_site, seed_with_release, trust,
};

const MIB: u64 = 1 << 20;

/// A tmpfs of a few MiB mounted by the test on a fresh directory, unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Tmpfs {
    fn new(mib: u64) -> Tmpfs {
        let dir = ferry_tests::tempdir();
        let mnt = dir.path().join("small");
        std::fs::create_dir(&mnt).unwrap();
        run_ok(
            "mount",
            [
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
                mnt.to_str().unwrap(),
            ],
        );
        Tmpfs { _dir: dir, mnt }
    }

    fn filler(&self) -> PathBuf {
        self.mnt.join("filler")
    }

    /// Bytes free for an unprivileged writer.
    fn free(&self) -> u64 {
        let out = run_ok("stat", ["-f", "-c", "%a %S", self.mnt.to_str().unwrap()]);
        let mut it = out
            .stdout
            .split_whitespace()
            .map(|n| n.parse::<u64>().unwrap());
        it.next().unwrap() * it.next().unwrap()
    }

    /// A file that takes all but `leave` bytes of what is free.
    fn fill(&self, leave: u64) {
        let len = self.free().saturating_sub(leave);
        run_ok(
            "fallocate",
            ["-l", &len.to_string(), self.filler().to_str().unwrap()],
        );
        assert!(self.free() <= leave + MIB, "{} free", self.free());
    }

    /// The filler removed: space to finish.
    fn unfill(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = run(std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mnt));
    }
}

/// The command failed because the store's filesystem is full, and said so naming the store.
#[track_caller]
fn refused_for_space(out: &Output, store: &Path) {
    assert_ne!(out.code, Some(0), "{out}");
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("no space left") && err.contains("free space on the store's filesystem"),
        "the error does not say the disk is full:\n{out}"
    );
    assert!(
        out.stderr.contains(&store.display().to_string()),
        "the error does not name the store {}:\n{out}",
        store.display()
    );
    assert!(
        !out.stderr.contains("panicked"),
        "a full disk is not a panic:\n{out}"
    );
}

/// `reserve_bytes` in the store's `config.toml`: what pack writes leave free (0: none, the filesystem's own
/// ENOSPC is the stop).
fn set_reserve(s: &Store, bytes: u64) {
    let file = s.path.join("config.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\nreserve_bytes = "), "{text}");
    let text: Vec<String> = text
        .lines()
        .map(|l| match l.starts_with("reserve_bytes = ") {
            true => format!("reserve_bytes = {bytes}"),
            false => l.to_string(),
        })
        .collect();
    std::fs::write(&file, text.join("\n") + "\n").unwrap();
}

fn file_arg(p: &Path) -> String {
    format!("file:{}", p.display())
}

#[test]
fn add_and_gc_on_a_full_disk_fail_naming_the_store_and_complete_once_space_is_freed() {
    let fs = Tmpfs::new(48);
    let s = Store::new_in(&fs.mnt);
    set_reserve(&s, 0);
    let (a, b) = (s.tmp_path("a.bin"), s.tmp_path("b.bin"));
    noise(&a, 6 << 20, 11);
    noise(&b, 16 << 20, 12);
    s.add("f@1", &[&file_arg(&a)]);
    let held = content_hashes(&s, "f@1");

    // add: refused, f@1 still whole and readable while the disk is full.
    fs.fill(2 * MIB);
    let out = s.run(["add", "f@2", &file_arg(&a), &file_arg(&b)]);
    refused_for_space(&out, &s.path);
    assert!(!s.lists("f", "2"), "a release added without its content");
    assert_eq!(content_hashes(&s, "f@1"), held);

    // Space back: the store is clean and the same command completes.
    fs.unfill();
    fsck_clean(&s);
    s.add("f@2", &[&file_arg(&a), &file_arg(&b)]);
    let second = content_hashes(&s, "f@2");
    assert_eq!(second.len(), 2);

    // gc: two small releases make f@1 and f@2 garbage (the newest two are kept); the packs they share with the
    // kept ones must be rewritten, which the full disk refuses.
    let (c, d) = (s.tmp_path("c.bin"), s.tmp_path("d.bin"));
    noise(&c, 2 << 20, 13);
    noise(&d, 2 << 20, 14);
    s.add("f@3", &[&file_arg(&c)]);
    s.add("f@4", &[&file_arg(&d)]);
    let kept = (content_hashes(&s, "f@3"), content_hashes(&s, "f@4"));
    fs.fill(256 << 10);
    let out = s.run(["gc"]);
    refused_for_space(&out, &s.path);

    fs.unfill();
    fsck_clean(&s);
    let report = s.json(["gc"]);
    assert!(!s.lists("f", "1") && !s.lists("f", "2"), "{report}");
    assert!(
        num(&report["after"], "total") < num(&report["before"], "total"),
        "gc reclaimed nothing once there was space: {report}"
    );
    fsck_clean(&s);
    assert_eq!(content_hashes(&s, "f@3"), kept.0);
    assert_eq!(content_hashes(&s, "f@4"), kept.1);
}

#[test]
fn import_on_a_full_disk_fails_naming_the_store_and_completes_once_space_is_freed() {
    let seed = seed_with_release(6);
    let bundle = seed.tmp_path("bundle");
    seed.run([
        "export".as_ref(),
        "rel@1".as_ref(),
        "--out".as_ref(),
        bundle.as_os_str(),
    ])
    .ok();

    let fs = Tmpfs::new(32);
    let site = Store::new_in(&fs.mnt);
    set_reserve(&site, 4 * MIB);
    trust(&site, &seed);
    fs.fill(6 * MIB);
    let out = site.run(["import".as_ref(), bundle.as_os_str()]);
    refused_for_space(&out, &site.path);
    assert!(
        !site.lists("rel", "1"),
        "a release imported without its content"
    );

    fs.unfill();
    fsck_clean(&site);
    site.run(["import".as_ref(), bundle.as_os_str()]).ok();
    assert_eq!(
        content_hashes(&site, "rel@1"),
        content_hashes(&seed, "rel@1")
    );
    fsck_clean(&site);
}

#[test]
fn sync_on_a_full_disk_fails_naming_the_store_and_completes_once_space_is_freed() {
    let seed = seed_with_release(6);
    let fs = Tmpfs::new(32);
    let site = Store::new_in(&fs.mnt);
    set_reserve(&site, 0);
    trust(&site, &seed);
    allow_all(&[&seed, &site]);
    let (_seed_node, _site_node) = seed_and_site(&seed, &site);

    fs.fill(6 * MIB);
    let out = site.run(["sync", "rel@1", "--timeout", "120"]);
    refused_for_space(&out, &site.path);
    assert!(
        !site.lists("rel", "1"),
        "a release synced without its content"
    );

    fs.unfill();
    let report = site.json(["sync", "rel@1", "--timeout", "120"]);
    assert_eq!(report["already_held"], false, "{report}");
    assert_eq!(
        content_hashes(&site, "rel@1"),
        content_hashes(&seed, "rel@1")
    );
    fsck_clean(&site);
}

#[test]
fn a_push_into_a_full_disk_is_refused_and_completes_once_space_is_freed() {
    let imgs = images();
    let fs = Tmpfs::new(96);
    let s = Store::new_in(&fs.mnt);
    set_reserve(&s, 4 * MIB);
    // No free-space reserve for uploads: the spool meets the full disk itself (it::uploads_bounds tries that
    // reserve).
    std::fs::write(s.path.join("node.toml"), "[uploads]\nmin_free_bytes = 0\n").unwrap();
    let node = push_node(&s, &[]);
    let src = oci(&imgs.layout, "v1");
    let creds = ci_creds();

    fs.fill(4 * MIB);
    let out = skopeo_push(
        &node,
        &src,
        "full/img:v1",
        Some(&creds),
        &["--retry-times", "0"],
    );
    assert_ne!(
        out.code,
        Some(0),
        "a push into a full disk succeeded:\n{out}"
    );
    assert!(
        out.stderr.contains("507") || out.stderr.to_lowercase().contains("space"),
        "skopeo does not show that the node ran out of space:\n{out}"
    );

    fs.unfill();
    skopeo_push(&node, &src, "full/img:v1", Some(&creds), &[]).ok();
    let back = s.tmp_path("back");
    assert_eq!(pull_back(&node, "full/img:v1", &back), imgs.v1.digest);
    drop(node);
    fsck_clean(&s);
}
