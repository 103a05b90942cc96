//! OCI image layouts: ingest, round trip through skopeo, reference names, dedup between versions, platforms.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use ferry_tests::cmd::run_ok;
use ferry_tests::ferry::{images as image_entries, num, text, Store};
use ferry_tests::fixtures::{images, layout_with, multi_arch_layout, Manifest, MultiArch};
use ferry_tests::fsutil::{self, digest_hex, index_entries, verify_blobs};

/// `oci:DIR:TAG`.
pub(crate) fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// The blob names (hex) an image needs.
fn blob_set(m: &Manifest) -> BTreeSet<String> {
    m.blobs()
        .iter()
        .map(|d| digest_hex(d).to_string())
        .collect()
}

/// The single entry of `OUT/index.json`, with a message naming everything if there is not exactly one.
#[track_caller]
pub(crate) fn single_entry(out: &Path) -> fsutil::IndexEntry {
    let entries = index_entries(out);
    assert_eq!(
        entries.len(),
        1,
        "expected one image in {}/index.json, got {entries:?}",
        out.display()
    );
    entries.into_iter().next().unwrap()
}

#[test]
fn oci_round_trip() {
    let imgs = images();
    let s = Store::new();

    let add = s.add("img@1", &[&oci(&imgs.layout, "v1")]);
    assert_eq!(text(&add, "release"), "img@1");
    assert_eq!(num(&add, "entries"), 1, "{add}");
    let layer_bytes = fs::metadata(fsutil::blob_path(&imgs.layout, &imgs.v1.layers[0]))
        .unwrap()
        .len();
    assert!(
        num(&add, "logical_bytes") >= layer_bytes,
        "logical_bytes below the layer's size: {add}"
    );
    assert!(num(&add, "chunks") > 0, "{add}");
    assert_eq!(
        num(&add, "chunks_new"),
        num(&add, "chunks"),
        "a fresh store has every chunk new: {add}"
    );
    assert!(num(&add, "stored_bytes_new") > 0, "{add}");

    // Back out as an OCI layout: same manifest bytes, every blob under its digest, readable by skopeo.
    let out = s.tmp_path("out");
    s.get("img@1", &format!("oci:{}", out.display()));
    let entry = single_entry(&out);
    assert_eq!(
        entry.ref_name.as_deref(),
        Some("v1"),
        "release name = repository, so the ref name is the bare tag"
    );
    assert_eq!(entry.digest, imgs.v1.digest);
    let raw = run_ok("skopeo", ["inspect", "--raw", &oci(&out, "v1")]).stdout_bytes;
    assert_eq!(raw, imgs.v1.raw, "manifest bytes changed on the round trip");
    let blobs: BTreeSet<String> = verify_blobs(&out).into_iter().collect();
    assert_eq!(blobs, blob_set(&imgs.v1), "blobs written by get");
    for b in imgs.v1.blobs() {
        assert_eq!(
            fs::read(fsutil::blob_path(&out, &b)).unwrap(),
            fs::read(fsutil::blob_path(&imgs.layout, &b)).unwrap(),
            "blob {b} differs"
        );
    }
    let other = s.tmp_path("other");
    run_ok(
        "skopeo",
        ["copy", "--quiet", &oci(&out, "v1"), &oci(&other, "v1")],
    );
    assert_eq!(
        run_ok("skopeo", ["inspect", "--raw", &oci(&other, "v1")]).stdout_bytes,
        imgs.v1.raw
    );

    // show --json describes the one image.
    let show = s.show("img@1");
    assert_eq!(show["name"], "img", "{show}");
    assert_eq!(show["version"], "1", "{show}");
    assert!(
        text(&show, "publisher").contains(&s.key_id),
        "publisher should be the store's key {}: {show}",
        s.key_id
    );
    let images = image_entries(&show);
    assert_eq!(images.len(), 1, "{show}");
    let e = images[0];
    assert_eq!(e["repository"], "img", "{show}");
    assert_eq!(e["tag"], "v1", "{show}");
    assert_eq!(e["digest"], imgs.v1.digest.as_str(), "{show}");
    assert_eq!(e["media_type"], imgs.v1.media_type.as_str(), "{show}");
    let n = num(e, "blobs");
    assert!(n == 3 || n == 2, "(manifest +) config + one layer: {show}");
    assert!(num(e, "bytes") >= layer_bytes, "{show}");
    assert_eq!(
        num(&show, "logical_bytes"),
        num(&add, "logical_bytes"),
        "{show}"
    );
    assert_eq!(num(&show, "chunks"), num(&add, "chunks"), "{show}");
    assert_eq!(
        num(&show, "chunks_shared"),
        0,
        "the only release shares nothing: {show}"
    );
    assert_eq!(num(&show, "chunks_unique"), num(&show, "chunks"), "{show}");
    assert!(num(&show, "stored_bytes") > 0, "{show}");

    // `--out dir:` skips image entries (with a note) and writes nothing.
    let dir_out = s.tmp_path("dir-out");
    let got = s.get("img@1", &format!("dir:{}", dir_out.display()));
    let files = walkdir::WalkDir::new(&dir_out)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir());
    assert_eq!(
        files.count(),
        0,
        "get --out dir: wrote files for an image-only release:\n{got}"
    );
    assert!(
        !got.stderr.trim().is_empty(),
        "get --out dir: should note the skipped image on stderr:\n{got}"
    );

    let (code, fsck, fsck_out) = s.fsck_json();
    assert_eq!(code, Some(0), "{fsck_out}");
    assert_eq!(fsck["ok"], true, "{fsck_out}");
    assert_eq!(num(&fsck, "releases"), 1, "{fsck_out}");
    assert!(num(&fsck, "blobs") >= 3, "{fsck_out}");
}

#[test]
fn oci_full_reference_name() {
    let imgs = images();
    let s = Store::new();
    let src = s.tmp_path("src");
    let full = "example.org/team/app:2.0";
    layout_with(&src, &[(full, &imgs.v1)]);

    // No tag in the source: every manifest of index.json.
    s.add("app@2", &[&format!("oci:{}", src.display())]);
    let show = s.show("app@2");
    let images = image_entries(&show);
    assert_eq!(images.len(), 1, "{show}");
    assert_eq!(images[0]["registry"], "example.org", "{show}");
    assert_eq!(images[0]["repository"], "team/app", "{show}");
    assert_eq!(images[0]["tag"], "2.0", "{show}");
    assert_eq!(images[0]["digest"], imgs.v1.digest.as_str(), "{show}");

    // The repository is not the release's name, so get names the image by its full reference.
    let out = s.tmp_path("out");
    s.get("app@2", &format!("oci:{}", out.display()));
    let entry = single_entry(&out);
    assert_eq!(entry.ref_name.as_deref(), Some(full), "{entry:?}");
    assert_eq!(
        run_ok("skopeo", ["inspect", "--raw", &oci(&out, full)]).stdout_bytes,
        imgs.v1.raw
    );
    verify_blobs(&out);
}

#[test]
fn oci_dedup_between_versions() {
    let imgs = images();
    let s = Store::new();

    let a1 = s.add("rel@1", &[&oci(&imgs.layout, "v1")]);
    let a2 = s.add("rel@2", &[&oci(&imgs.layout, "v2")]);
    let (chunks, new) = (num(&a2, "chunks"), num(&a2, "chunks_new"));
    assert!(
        new > 0,
        "v2 has a new layer, so some chunks must be new: {a2}"
    );
    assert!(
        new * 2 < chunks,
        "v2 shares v1's whole layer; chunks_new should be well below chunks: {a2}"
    );
    assert!(
        num(&a2, "stored_bytes_new") * 2 < num(&a1, "stored_bytes_new"),
        "v2 stored nearly as much as v1: {a1} / {a2}"
    );

    let show2 = s.show("rel@2");
    assert!(
        num(&show2, "chunks_shared") > 0,
        "rel@2 shares v1's layer with rel@1: {show2}"
    );
    assert_eq!(
        num(&show2, "chunks_shared") + num(&show2, "chunks_unique"),
        num(&show2, "chunks"),
        "{show2}"
    );
    assert!(num(&show2, "chunks_unique") <= new, "{show2} vs {a2}");
    let show1 = s.show("rel@1");
    assert!(
        num(&show1, "chunks_shared") > 0,
        "rel@1 shares its layer with rel@2: {show1}"
    );

    let ls = s.ls();
    let rel: Vec<_> = ls.iter().filter(|r| r["name"] == "rel").collect();
    assert_eq!(rel.len(), 2, "{ls:?}");
    let seq = |v: &str| {
        num(
            rel.iter()
                .find(|r| r["version"] == v)
                .expect("version listed"),
            "sequence",
        )
    };
    assert!(seq("2") > seq("1"), "{ls:?}");

    let out = s.tmp_path("out");
    s.get("rel@2", &format!("oci:{}", out.display()));
    assert_eq!(
        run_ok("skopeo", ["inspect", "--raw", &oci(&out, "v2")]).stdout_bytes,
        imgs.v2.raw
    );
    let blobs: BTreeSet<String> = verify_blobs(&out).into_iter().collect();
    assert_eq!(blobs, blob_set(&imgs.v2));

    let (code, fsck, fsck_out) = s.fsck_json();
    assert_eq!(code, Some(0), "{fsck_out}");
    assert_eq!(num(&fsck, "releases"), 2, "{fsck_out}");
}

/// Checks a layout written by `get` for a release made from [`multi_arch_layout`]:
/// with `arm64_only`, only the arm64 image may be there; otherwise the whole index, byte for byte.
pub(crate) fn check_multi_arch_output(out: &Path, multi: &MultiArch, arm64_only: bool) {
    let imgs = images();
    let entry = single_entry(out);
    let name = entry
        .ref_name
        .clone()
        .unwrap_or_else(|| panic!("no ref name in {}/index.json", out.display()));
    let blobs: BTreeSet<String> = verify_blobs(out).into_iter().collect();
    let other = out.with_extension("copy");
    if !arm64_only {
        assert_eq!(
            entry.digest, multi.index_digest,
            "the image index digest changed"
        );
        let raw = run_ok("skopeo", ["inspect", "--raw", &oci(out, &name)]).stdout_bytes;
        assert_eq!(raw, multi.index_raw, "index bytes changed");
        let want: BTreeSet<String> = blob_set(&imgs.v1)
            .into_iter()
            .chain(blob_set(&imgs.arm64))
            .chain([digest_hex(&multi.index_digest).to_string()])
            .collect();
        assert_eq!(blobs, want, "blobs of the full index");
        run_ok(
            "skopeo",
            [
                "copy",
                "--quiet",
                "--all",
                &oci(out, &name),
                &oci(&other, "x"),
            ],
        );
        return;
    }
    for b in blob_set(&imgs.arm64) {
        assert!(
            blobs.contains(&b),
            "arm64 blob {b} missing from {}",
            out.display()
        );
    }
    for b in blob_set(&imgs.v1) {
        assert!(
            !blobs.contains(&b),
            "amd64 blob {b} written although --platform linux/arm64 was chosen"
        );
    }
    // The image is the arm64 manifest itself, or the original index unchanged (a sparse index: the layout
    // spec lets referenced blobs be missing), or a new index listing only the arm64 manifest.
    if entry.digest != imgs.arm64.digest && entry.digest != multi.index_digest {
        let index = fsutil::read_json(&fsutil::blob_path(out, &entry.digest));
        let listed: Vec<&str> = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .filter_map(|m| m["digest"].as_str())
            .collect();
        assert_eq!(
            listed,
            vec![imgs.arm64.digest.as_str()],
            "a rewritten index may only list the chosen platform"
        );
    }
    run_ok(
        "skopeo",
        [
            "copy",
            "--quiet",
            "--override-arch",
            "arm64",
            "--override-os",
            "linux",
            &oci(out, &name),
            &oci(&other, "x"),
        ],
    );
    let config = run_ok("skopeo", ["inspect", "--config", &oci(&other, "x")]).json();
    assert_eq!(config["architecture"], "arm64");
}

/// Sum of `blobs` over the image entries of a release.
pub(crate) fn image_blobs(show: &serde_json::Value) -> u64 {
    image_entries(show).iter().map(|e| num(e, "blobs")).sum()
}

#[test]
fn oci_index_platform_selection() {
    let s = Store::new();
    let src = s.tmp_path("multi");
    let multi = multi_arch_layout(&src);

    s.add("m@all", &[&oci(&src, multi.tag)]);
    let arm = s.json([
        "add",
        "m@arm",
        &oci(&src, multi.tag),
        "--platform",
        "linux/arm64",
    ]);
    assert_eq!(num(&arm, "entries"), 1, "{arm}");

    let all_show = s.show("m@all");
    let arm_show = s.show("m@arm");
    assert!(
        image_blobs(&all_show) >= image_blobs(&arm_show) + 2,
        "keeping both platforms must keep at least amd64's config and layer more than arm64 alone:\n{all_show}\n{arm_show}"
    );
    assert!(
        image_blobs(&arm_show) <= 4,
        "one platform: (index,) manifest, config, layer: {arm_show}"
    );

    let out_all = s.tmp_path("out-all");
    s.get("m@all", &format!("oci:{}", out_all.display()));
    check_multi_arch_output(&out_all, &multi, false);
    let out_arm = s.tmp_path("out-arm");
    s.get("m@arm", &format!("oci:{}", out_arm.display()));
    check_multi_arch_output(&out_arm, &multi, true);
}
