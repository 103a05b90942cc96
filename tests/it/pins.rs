//! Pins: `ferry pin set/rm/ls` on a running node decide what its mirrors serve as current — the moving tag
//! `latest` pulled by skopeo, and `/repos/NAME/current/` — at once; every version stays reachable by its own tag.

use std::fs;

use ferry_tests::cmd::run_ok;
use ferry_tests::ferry::Store;
use ferry_tests::fixtures::{images, layout_with};
use ferry_tests::fsutil::{index_entries, verify_blobs};
use ferry_tests::node::Node;
use serde_json::Value;

use crate::oci::oci;

/// The manifest digest `skopeo inspect` reports for `docker://HOST/REF`.
fn served_digest(node: &Node, reference: &str) -> String {
    let out = run_ok(
        "skopeo",
        [
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/{reference}", node.addr),
        ],
    );
    let v: Value = serde_json::from_str(&out.stdout).expect("skopeo inspect prints JSON");
    v["Digest"].as_str().expect("a Digest").to_string()
}

/// `/repos/files/current/notes.txt` as served.
fn current_notes(node: &Node) -> String {
    reqwest::blocking::get(node.url("/repos/files/current/notes.txt"))
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .expect("GET current notes")
}

#[test]
fn a_pin_moves_latest_and_current_at_once_and_back() {
    let imgs = images();
    let s = Store::new();
    // Two versions of `img`, each tagged `latest` and with a tag of its own.
    for (version, manifest) in [("1", &imgs.v1), ("2", &imgs.v2)] {
        let layout = s.tmp_path(&format!("layout-{version}"));
        layout_with(
            &layout,
            &[("latest", manifest), (&format!("{version}.0"), manifest)],
        );
        s.add(
            &format!("img@{version}"),
            &[
                &oci(&layout, "latest"),
                &oci(&layout, &format!("{version}.0")),
            ],
        );
        let notes = s.tmp_path(&format!("notes-{version}/notes.txt"));
        fs::create_dir_all(notes.parent().unwrap()).unwrap();
        fs::write(&notes, format!("release {version}\n")).unwrap();
        s.add(
            &format!("files@{version}"),
            &[&format!("file:{}", notes.display())],
        );
    }
    let node = Node::start(&s.path);

    // No pin: the newest version is current.
    assert_eq!(served_digest(&node, "img:latest"), imgs.v2.digest);
    assert_eq!(current_notes(&node), "release 2\n");
    assert_eq!(s.json(["pin", "ls"]), Value::Array(vec![]));

    // Roll back: pin the older version, through the running node. A pull of `latest` gets it, whole and exact.
    let out = s.run(["pin", "set", "img", "1"]).ok();
    assert!(out.stdout.contains("img pinned to 1"), "{out}");
    s.run(["pin", "set", "files", "1"]).ok();
    let dest = s.tmp_path("pulled");
    run_ok(
        "skopeo",
        [
            "copy",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{}/img:latest", node.addr),
            &format!("oci:{}:latest", dest.display()),
        ],
    );
    assert_eq!(index_entries(&dest)[0].digest, imgs.v1.digest);
    verify_blobs(&dest);
    assert_eq!(current_notes(&node), "release 1\n");
    // The newer version is still there by its own tag.
    assert_eq!(served_digest(&node, "img:2.0"), imgs.v2.digest);
    assert_eq!(served_digest(&node, "img:1.0"), imgs.v1.digest);

    // `pin ls` says what is pinned, that it was set here, and that the version is held.
    let pins = s.json(["pin", "ls"]);
    let pins = pins.as_array().unwrap();
    assert_eq!(pins.len(), 2, "{pins:?}");
    let img = pins.iter().find(|p| p["name"] == "img").unwrap();
    assert_eq!(img["version"], "1", "{img}");
    assert_eq!(img["local"], true, "{img}");
    assert_eq!(img["held"], true, "{img}");

    // A version the store lacks is refused, naming what it holds; the pin stays.
    let out = s.run(["pin", "set", "img", "9"]).expect_code(1);
    assert!(
        out.stderr.contains("img@9") && out.stderr.contains("img versions 1, 2"),
        "{out}"
    );
    assert_eq!(served_digest(&node, "img:latest"), imgs.v1.digest);

    // Unpinning makes the newest current again.
    s.run(["pin", "rm", "img"]).ok();
    assert_eq!(served_digest(&node, "img:latest"), imgs.v2.digest);
    let out = s.run(["pin", "rm", "img"]).expect_code(1);
    assert!(out.stderr.contains("img is not pinned"), "{out}");
    assert_eq!(node.stop(), Some(0));

    // Pins are kept in the store: still there when the node is down.
    let pins = s.json(["pin", "ls"]);
    assert_eq!(pins.as_array().unwrap().len(), 1, "{pins}");
    assert_eq!(pins[0]["name"], "files", "{pins}");
}
