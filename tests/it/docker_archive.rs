//! `docker-archive:` sources (`docker save` / `skopeo copy … docker-archive:` tarballs).

use ferry_tests::cmd::run_ok;
use ferry_tests::ferry::{images as image_entries, num, Store};
use ferry_tests::fixtures::{docker_archive, images};
use ferry_tests::fsutil::{read_blob, verify_blobs};

use crate::oci::{oci, single_entry};

fn diff_ids(config: &serde_json::Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("config has no rootfs.diff_ids: {config}"))
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn docker_archive_round_trip() {
    let imgs = images();
    let s = Store::new();
    let archive = s.tmp_path("da.tar");
    docker_archive(&imgs.layout, "v2", &archive, "da:v2");
    let original_config =
        run_ok("skopeo", ["inspect", "--config", &oci(&imgs.layout, "v2")]).json();
    let original_diff_ids = diff_ids(&original_config);
    assert_eq!(original_diff_ids.len(), 2);

    let add = s.add("da@1", &[&format!("docker-archive:{}", archive.display())]);
    assert_eq!(num(&add, "entries"), 1, "{add}");
    let show = s.show("da@1");
    let images = image_entries(&show);
    assert_eq!(images.len(), 1, "{show}");
    assert_eq!(images[0]["tag"], "v2", "named by RepoTags: {show}");
    let repo = images[0]["repository"].as_str().unwrap_or_default();
    assert!(
        repo == "da" || repo == "library/da",
        "repository from RepoTags `da:v2`: {show}"
    );

    let out = s.tmp_path("out");
    s.get("da@1", &format!("oci:{}", out.display()));
    let entry = single_entry(&out);
    let name = entry
        .ref_name
        .clone()
        .unwrap_or_else(|| panic!("no ref name in index.json: {entry:?}"));
    assert!(
        name.ends_with("v2"),
        "ref name {name:?} should carry the tag v2"
    );
    verify_blobs(&out);

    let src = oci(&out, &name);
    // The config is the archive's config, byte for byte (it was stored under its digest).
    let config_raw = run_ok("skopeo", ["inspect", "--raw", "--config", &src]).stdout_bytes;
    assert_eq!(
        config_raw,
        read_blob(&imgs.layout, &imgs.v2.config),
        "config bytes changed"
    );
    let config = run_ok("skopeo", ["inspect", "--config", &src]).json();
    assert_eq!(
        diff_ids(&config),
        original_diff_ids,
        "diff_ids differ from the original image's"
    );
    // A docker archive holds uncompressed layers: their digests are the diff ids.
    let inspect = run_ok("skopeo", ["inspect", &src]).json();
    let layers: Vec<String> = inspect["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        layers, original_diff_ids,
        "layer digests should be the archive's layer digests (= diff_ids)"
    );

    let other = s.tmp_path("other");
    run_ok("skopeo", ["copy", "--quiet", &src, &oci(&other, "v2")]);
    let again = run_ok("skopeo", ["inspect", "--config", &oci(&other, "v2")]).json();
    assert_eq!(diff_ids(&again), original_diff_ids);
}
