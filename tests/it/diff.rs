//! `ferry diff`: what changed between two versions, and the bytes a delta bundle would carry — the same as the
//! bundle `ferry export --base` then writes.

use ferry_tests::ferry::{num, Store};
use ferry_tests::fixtures::images;

use crate::pins::two_versions;

#[test]
fn diff_names_the_changes_and_the_bytes_export_then_writes() {
    let imgs = images();
    let s = Store::new();
    two_versions(&s);
    let d = s.json(["diff", "img@1", "img@2"]);

    // `latest` moved from v1 to v2, which adds one layer; each version's own tag is added or removed.
    let changed = d["images"]["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{d}");
    assert_eq!(changed[0]["image"], "img:latest", "{d}");
    assert_eq!(changed[0]["from"], imgs.v1.digest.as_str(), "{d}");
    assert_eq!(changed[0]["to"], imgs.v2.digest.as_str(), "{d}");
    let added: Vec<&str> = changed[0]["blobs_added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(added.contains(&imgs.v2.layers[1].as_str()), "{d}");
    assert!(!added.contains(&imgs.v2.layers[0].as_str()), "{d}");
    assert_eq!(d["images"]["added"][0]["image"], "img:2.0", "{d}");
    let brought = d["images"]["added"][0]["blobs_added"].to_string();
    assert!(
        brought.contains(&imgs.v2.layers[1]) && !brought.contains(&imgs.v2.layers[0]),
        "v2's own tag brings its new layer and not the shared one: {d}"
    );
    assert_eq!(d["images"]["removed"][0], "img:1.0", "{d}");

    // Files: the notes changed.
    let f = s.json(["diff", "files@1", "files@2"]);
    assert_eq!(f["files"]["changed"][0], "notes.txt", "{f}");
    assert_eq!(f["images"]["changed"].as_array().unwrap().len(), 0, "{f}");

    // The delta's size is what the bundle turns out to be (within 1 %), and diff wrote nothing anywhere.
    let out = s.tmp_path("bundle");
    let e = s.json([
        "export",
        "img@2",
        "--base",
        "img@1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (predicted, written) = (num(&d["delta"], "total_bytes"), num(&e, "total_bytes"));
    assert!(
        predicted.abs_diff(written) * 100 <= written,
        "diff said {predicted}, export wrote {written}"
    );
    assert_eq!(num(&d["delta"], "chunks"), num(&e, "chunks"));
    assert!(written < num(&d["logical_bytes"], "to") / 2, "{d} {e}");

    // Both must be held.
    let out = s.run(["diff", "img@1", "img@3"]).expect_code(1);
    assert!(out.stderr.contains("img@3"), "{out}");
}
