//! Pins: `ferry pin set/rm/ls` on a running node decide what its mirrors serve as current — the moving tag
//! `latest` pulled by skopeo, and `/repos/NAME/current/` — at once; every version stays reachable by its own tag.

use std::fs;

use ferry_tests::cmd::run_ok;
use ferry_tests::ferry::{num, Store};
use ferry_tests::fixtures::{images, layout_with, Manifest};
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

/// Into `s`: `img@VERSION` for each of `versions`, the image tagged `latest` and `VERSION.0`.
pub(crate) fn add_images(s: &Store, versions: &[(&str, &Manifest)]) {
    for (version, manifest) in versions {
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
    }
}

/// Into `s`: `img@1` and `img@2` (the fixture's v1 and v2, each tagged `latest` and `VERSION.0`), and
/// `files@1`, `files@2` (a `notes.txt` saying `release VERSION`).
pub(crate) fn two_versions(s: &Store) {
    let imgs = images();
    add_images(s, &[("1", &imgs.v1), ("2", &imgs.v2)]);
    for version in ["1", "2"] {
        let notes = s.tmp_path(&format!("notes-{version}/notes.txt"));
        fs::create_dir_all(notes.parent().unwrap()).unwrap();
        fs::write(&notes, format!("release {version}\n")).unwrap();
        s.add(
            &format!("files@{version}"),
            &[&format!("file:{}", notes.display())],
        );
    }
}

#[test]
fn a_pin_moves_latest_and_current_at_once_and_back() {
    let imgs = images();
    let s = Store::new();
    two_versions(&s);
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

    // `ferry status` says what each name serves and what the store takes on disk.
    let st = s.json(["status"]);
    assert_eq!(st["current"]["img"], "1", "{st}");
    assert_eq!(st["current"]["files"], "1", "{st}");
    assert_eq!(st["pins"].as_array().unwrap().len(), 2, "{st}");
    let disk = &st["disk"];
    assert!(num(disk, "packs") > 0, "{st}");
    assert_eq!(
        num(disk, "total"),
        num(disk, "packs") + num(disk, "index") + num(disk, "cache") + num(disk, "uploads"),
        "{st}"
    );

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

#[test]
fn an_older_release_arriving_late_is_stored_but_never_current() {
    let imgs = images();
    let seed = Store::new();
    two_versions(&seed);
    let bundle = |release: &str| {
        let out = seed.tmp_path(&format!("bundle-{release}"));
        seed.json(["export", release, "--out", out.to_str().unwrap()]);
        out
    };
    let (old, new) = (bundle("img@1"), bundle("img@2"));

    let site = Store::new();
    let key = seed.tmp_path("seed.pub");
    fs::write(&key, seed.run(["keys", "export"]).ok().stdout).unwrap();
    site.run(["trust", "add", key.to_str().unwrap()]).ok();
    let r = site.json(["import", new.to_str().unwrap()]);
    assert_eq!(r["older"], Value::Array(vec![]), "{r}");
    // The old manifest replayed after the new one: stored, reported, not current.
    let r = site.json(["import", old.to_str().unwrap()]);
    assert_eq!(r["imported"][0], "img@1", "{r}");
    assert_eq!(r["older"][0], "img@1", "{r}");
    let out = site.run(["import", old.to_str().unwrap()]).ok();
    assert!(out.stdout.contains("already held img@1"), "{out}");

    let node = Node::start(&site.path);
    assert_eq!(served_digest(&node, "img:latest"), imgs.v2.digest);
    assert_eq!(served_digest(&node, "img:1.0"), imgs.v1.digest);
    // An operator may still roll back on purpose, and the pin records it.
    site.run(["pin", "set", "img", "1"]).ok();
    assert_eq!(served_digest(&node, "img:latest"), imgs.v1.digest);
    assert_eq!(site.json(["pin", "ls"])[0]["version"], "1");
    assert_eq!(node.stop(), Some(0));
}
