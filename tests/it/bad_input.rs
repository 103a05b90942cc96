//! Bad input is refused with one clear error, and leaves no release and a consistent store behind.

use std::fs;

use ferry_tests::ferry::{num, Store};
use ferry_tests::fixtures::images;
use ferry_tests::fsutil::{blob_path, copy_tree, digest_hex, flip_byte};

use crate::oci::oci;

#[test]
fn corrupt_layer_blob_is_refused() {
    let imgs = images();
    let s = Store::new();
    let layout = s.tmp_path("layout");
    copy_tree(&imgs.layout, &layout);
    let layer = &imgs.v1.layers[0];
    let path = blob_path(&layout, layer);
    let len = fs::metadata(&path).unwrap().len();
    flip_byte(&path, len / 2);

    let out = s.run(["add", "bad@1", &oci(&layout, "v1")]).expect_code(1);
    let err = out.error_line();
    assert!(
        err.contains(digest_hex(layer)),
        "error should name the corrupt blob {layer}: {err}\n{out}"
    );
    assert!(!s.lists("bad", "1"), "a refused add left a release");
    let (code, fsck, fsck_out) = s.fsck_json();
    assert_eq!(
        code,
        Some(0),
        "store inconsistent after a refused add:\n{fsck_out}"
    );
    assert_eq!(fsck["ok"], true, "{fsck_out}");
    assert_eq!(num(&fsck, "releases"), 0, "{fsck_out}");
    // Plain fsck agrees.
    s.run(["fsck"]).ok();

    // The good image still goes in under the same name afterwards.
    s.add("bad@1", &[&oci(&imgs.layout, "v1")]);
    assert!(s.lists("bad", "1"));
}

#[test]
fn missing_tag_in_layout() {
    let imgs = images();
    let s = Store::new();
    let out = s
        .run(["add", "x@1", &oci(&imgs.layout, "no-such-tag")])
        .expect_code(1);
    let err = out.error_line();
    assert!(
        err.contains("no-such-tag"),
        "error should name the missing tag: {err}\n{out}"
    );
    assert!(s.ls().is_empty(), "a refused add left a release");
}

#[test]
fn missing_sources() {
    let imgs = images();
    let s = Store::new();
    let missing = s.tmp_path("not-there.bin");
    let missing = missing.to_string_lossy();
    for src in [
        format!("file:{missing}"),
        format!("dir:{missing}"),
        format!("docker-archive:{missing}"),
    ] {
        let out = s.run(["add", "x@1", &src]).expect_code(1);
        assert!(
            out.error_line().contains(&*missing),
            "error should name {missing}:\n{out}"
        );
    }
    let not_layout = s.tmp_path("empty-dir");
    fs::create_dir(&not_layout).unwrap();
    let out = s
        .run(["add", "x@1", &oci(&not_layout, "v1")])
        .expect_code(1);
    assert!(
        out.error_line().contains(&*not_layout.to_string_lossy()),
        "error should name the directory:\n{out}"
    );
    // A good source plus a bad one: nothing is added.
    let out = s
        .run([
            "add",
            "x@1",
            &oci(&imgs.layout, "v1"),
            &format!("file:{missing}"),
        ])
        .expect_code(1);
    assert!(out.error_line().contains(&*missing), "{out}");
    assert!(s.ls().is_empty(), "a refused add left a release");
}

/// An `index.json` that never ends (a link to /dev/zero) is refused after reading past its 4 MiB limit, not
/// read whole (the probe of issue 20 saw 20 GB read before it stopped).
#[test]
fn endless_index_json_is_refused_at_its_limit() {
    let imgs = images();
    let s = Store::new();
    let layout = s.tmp_path("layout");
    copy_tree(&imgs.layout, &layout);
    let index = layout.join("index.json");
    fs::remove_file(&index).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &index).unwrap();
    let out = s.run(["add", "zero@1", &oci(&layout, "v1")]).expect_code(1);
    let err = out.error_line();
    assert!(
        err.contains("index.json") && err.contains("larger than 4 MiB"),
        "{err}\n{out}"
    );
    assert!(!s.lists("zero", "1"), "a refused add left a release");
}
