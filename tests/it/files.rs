//! `file:` and `dir:` sources: byte-identical round trips, modes, symlinks, a sparse disk image.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use ferry_tests::cmd::run_ok;
use ferry_tests::ferry::{entries, num, text, Store};
use ferry_tests::fixtures::{images, sparse_disk};
use ferry_tests::fsutil::{
    allocated_bytes, assert_same_tree, bare_sha256, sha256_file, sha256_hex,
};
use serde_json::Value;

use crate::oci::{oci, single_entry};

/// The permission bits of a `show --json` entry's `mode` (a number, or an octal string).
fn mode_bits(entry: &Value) -> u32 {
    let m = match &entry["mode"] {
        Value::Number(n) => n.as_u64().expect("mode") as u32,
        Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).expect("octal mode"),
        other => panic!("entry has no mode: {other} in {entry}"),
    };
    m & 0o7777
}

fn perm(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The entry whose path ends with `suffix` (paths may or may not carry the source's base name).
#[track_caller]
fn entry_ending<'a>(show: &'a Value, suffix: &str) -> &'a Value {
    entries(show)
        .iter()
        .find(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p == suffix || p.ends_with(&format!("/{suffix}")))
        })
        .unwrap_or_else(|| panic!("no entry with path …{suffix} in {show}"))
}

#[test]
fn file_tarball_round_trip() {
    let imgs = images();
    let s = Store::new();
    let tarball = &imgs.rootfs_tar;
    let size = fs::metadata(tarball).unwrap().len();

    let add = s.add("tar@1", &[&format!("file:{}", tarball.display())]);
    assert_eq!(num(&add, "entries"), 1, "{add}");
    assert_eq!(num(&add, "logical_bytes"), size, "{add}");

    let show = s.show("tar@1");
    let e = &entries(&show)[0];
    assert_eq!(e["type"], "file", "{show}");
    assert_eq!(
        text(e, "path"),
        "rootfs-v1.tar.gz",
        "a file is named by its base name: {show}"
    );
    assert_eq!(num(e, "bytes"), size, "{show}");
    assert_eq!(
        bare_sha256(text(e, "sha256")),
        sha256_file(tarball),
        "{show}"
    );
    assert_eq!(mode_bits(e), perm(tarball), "{show}");

    let out = s.tmp_path("out");
    s.get("tar@1", &format!("dir:{}", out.display()));
    let got = out.join("rootfs-v1.tar.gz");
    assert_eq!(
        fs::read(&got).unwrap(),
        fs::read(tarball).unwrap(),
        "tarball bytes differ"
    );
    assert_eq!(perm(&got), perm(tarball), "mode differs");
    // And it is still a good tarball.
    run_ok("tar", ["-tzf", &got.to_string_lossy()]);
}

/// A tree with real binaries (the bash package unpacked), plus the awkward cases.
pub(crate) fn make_tree(root: &Path) {
    let imgs = images();
    fs::create_dir_all(root).unwrap();
    run_ok(
        "dpkg-deb",
        [
            std::ffi::OsStr::new("-x"),
            imgs.deb("bash").as_os_str(),
            root.as_os_str(),
        ],
    );
    let deep = root.join("nested/deep/er");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("file.txt"), "hello from a nested directory\n").unwrap();
    fs::set_permissions(deep.join("file.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("run.sh"), "#!/bin/sh\necho ferry\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(root.join("emptydir")).unwrap();
    fs::set_permissions(root.join("emptydir"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("nested/deep/er/file.txt", root.join("link-rel")).unwrap();
    symlink("../does/not/exist", root.join("link-dangling")).unwrap();
    symlink("nested", root.join("link-dir")).unwrap();
    // The same real binary twice, and a file with a run of zeros in the middle.
    fs::copy(root.join("bin/bash"), root.join("nested/bash-copy")).unwrap();
    let mut z = fs::read(imgs.deb("zlib1g")).unwrap();
    z.extend(vec![0u8; 3 << 20]);
    z.extend(fs::read(imgs.deb("base-files")).unwrap());
    fs::write(root.join("nested/zeros-inside.bin"), z).unwrap();
}

#[test]
fn dir_tree_round_trip() {
    let s = Store::new();
    let src = s.tmp_path("payload-tree");
    make_tree(&src);
    assert!(src.join("bin/bash").is_file(), "bash package has bin/bash");

    s.add("tree@1", &[&format!("dir:{}", src.display())]);
    let show = s.show("tree@1");
    let link = entry_ending(&show, "link-rel");
    assert_eq!(link["type"], "symlink", "{link}");
    assert_eq!(text(link, "target"), "nested/deep/er/file.txt", "{link}");
    assert_eq!(
        text(entry_ending(&show, "link-dangling"), "target"),
        "../does/not/exist"
    );
    let empty = entry_ending(&show, "empty");
    assert_eq!(empty["type"], "file", "{empty}");
    assert_eq!(num(empty, "bytes"), 0, "{empty}");
    assert_eq!(
        bare_sha256(text(empty, "sha256")),
        sha256_hex(b""),
        "{empty}"
    );
    assert_eq!(mode_bits(empty), 0o600, "{empty}");
    let bash = entry_ending(&show, "bin/bash");
    assert_eq!(mode_bits(bash), 0o755, "{bash}");
    assert_eq!(
        bare_sha256(text(bash, "sha256")),
        sha256_file(&src.join("bin/bash")),
        "{bash}"
    );
    let dir = entry_ending(&show, "emptydir");
    assert_eq!(dir["type"], "dir", "{dir}");
    assert_eq!(mode_bits(dir), 0o700, "{dir}");

    let out = s.tmp_path("out");
    s.get("tree@1", &format!("dir:{}", out.display()));
    // Entries may be written below OUT/<base name> or straight below OUT.
    let root: PathBuf = if out.join("payload-tree").is_dir() {
        out.join("payload-tree")
    } else {
        out.clone()
    };
    assert_same_tree(&src, &root);
    let run = run_ok(&root.join("run.sh").to_string_lossy(), Vec::<String>::new());
    assert_eq!(run.stdout, "ferry\n");
}

#[test]
fn sparse_disk_image() {
    let imgs = images();
    let s = Store::new();
    let disk = s.tmp_path("disk.img");
    sparse_disk(
        &disk,
        "1G",
        &[
            (&imgs.deb("libc6"), "1M"),
            (&imgs.deb("bash"), "512M"),
            (&imgs.deb("zlib1g"), "1023M"),
        ],
    );
    let size = fs::metadata(&disk).unwrap().len();
    assert_eq!(size, 1 << 30);
    let digest = sha256_file(&disk);

    let add = s.add("vm@1", &[&format!("file:{}", disk.display())]);
    assert_eq!(num(&add, "logical_bytes"), size, "{add}");
    let stored = num(&add, "stored_bytes_new");
    assert!(
        stored < 8 << 20,
        "a 1 GiB image holding ~4.4 MB of data stored {stored} bytes: {add}"
    );
    let show = s.show("vm@1");
    assert_eq!(
        bare_sha256(text(&entries(&show)[0], "sha256")),
        digest,
        "{show}"
    );

    let out = s.tmp_path("out");
    s.get("vm@1", &format!("dir:{}", out.display()));
    let got = out.join("disk.img");
    assert_eq!(fs::metadata(&got).unwrap().len(), size, "size differs");
    assert_eq!(sha256_file(&got), digest, "disk image bytes differ");
    let allocated = allocated_bytes(&got);
    assert!(
        allocated < 64 << 20,
        "zero ranges should be written as holes; {allocated} bytes allocated"
    );
}

#[test]
fn mixed_sources_one_release() {
    let imgs = images();
    let s = Store::new();
    let add = s.add(
        "mix@1",
        &[
            &oci(&imgs.layout, "v1"),
            &format!("file:{}", imgs.rootfs_tar.display()),
        ],
    );
    assert_eq!(num(&add, "entries"), 2, "one image + one file: {add}");
    let show = s.show("mix@1");
    let kinds: Vec<&str> = entries(&show)
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"image") && kinds.contains(&"file"),
        "{show}"
    );

    let dir_out = s.tmp_path("dir-out");
    s.get("mix@1", &format!("dir:{}", dir_out.display()));
    assert_eq!(
        sha256_file(&dir_out.join("rootfs-v1.tar.gz")),
        sha256_file(&imgs.rootfs_tar)
    );
    let oci_out = s.tmp_path("oci-out");
    s.get("mix@1", &format!("oci:{}", oci_out.display()));
    assert_eq!(single_entry(&oci_out).digest, imgs.v1.digest);
    assert_eq!(
        run_ok("skopeo", ["inspect", "--raw", &oci(&oci_out, "v1")]).stdout_bytes,
        imgs.v1.raw
    );
}
