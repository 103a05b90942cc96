//! Stores, keys and the immutability of releases.

use std::path::Path;

use ferry_tests::ferry::{ferry, num, text, Store};
use ferry_tests::fixtures::images;

#[test]
fn init_creates_store_and_keys_export_matches() {
    let tmp = ferry_tests::tempdir();
    let store = tmp.path().join("store");

    let out = ferry(&store, ["init", "--json"]).ok();
    let init = out.json();
    let key_id = text(&init, "key_id").to_string();
    assert!(
        !key_id.is_empty() && key_id.chars().all(|c| c.is_ascii_hexdigit()),
        "key_id should be hex, got {key_id:?}"
    );
    let reported = Path::new(text(&init, "store"));
    assert_eq!(
        reported.canonicalize().ok(),
        Some(store.canonicalize().unwrap()),
        "init --json `store` should name the store directory"
    );
    assert!(
        store.join("config.toml").is_file(),
        "no config.toml in the new store:\n{out}"
    );

    let keys = ferry(&store, ["keys", "export"]).ok();
    let lines: Vec<&str> = keys.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "keys export should print exactly one line:\n{keys}"
    );
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        fields.len(),
        3,
        "expected `ferry-ed25519 <id> <hex>`:\n{keys}"
    );
    assert_eq!(fields[0], "ferry-ed25519", "{keys}");
    assert_eq!(
        fields[1], key_id,
        "exported key id differs from init's key_id:\n{keys}"
    );
    let public =
        hex::decode(fields[2]).unwrap_or_else(|e| panic!("public key is not hex ({e}):\n{keys}"));
    assert_eq!(
        public.len(),
        32,
        "an ed25519 public key is 32 bytes:\n{keys}"
    );

    // A second init of the same store must refuse and leave the key alone.
    let again = ferry(&store, ["init"]).expect_code(1);
    let err = again.error_line();
    assert!(
        err.contains("store") || err.contains(&*store.to_string_lossy()),
        "error should name the store: {err}"
    );
    let keys2 = ferry(&store, ["keys", "export"]).ok();
    assert_eq!(
        keys2.stdout, keys.stdout,
        "a failed second init changed the publisher key"
    );

    // Plain `init` prints the key id too, and two stores get different keys.
    let store2 = tmp.path().join("store2");
    let plain = ferry(&store2, ["init"]).ok();
    let keys3 = ferry(&store2, ["keys", "export"]).ok();
    let id2 = keys3
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("key id")
        .to_string();
    assert!(
        plain.stdout.contains(&id2),
        "plain init should print the key id {id2}:\n{plain}"
    );
    assert_ne!(id2, key_id, "two stores got the same publisher key");
}

#[test]
fn version_is_immutable() {
    let imgs = images();
    let s = Store::new();
    let src_v1 = format!("oci:{}:v1", imgs.layout.display());
    let src_v2 = format!("oci:{}:v2", imgs.layout.display());

    let first = s.add("imm@1", &[&src_v1]);
    assert_eq!(text(&first, "release"), "imm@1");
    let before = s.show("imm@1");

    // Same source again, and a different source under the same version: both refused.
    for src in [&src_v1, &src_v2] {
        let out = s.run(["add", "imm@1", src]).expect_code(1);
        let err = out.error_line();
        assert!(
            err.contains("imm@1"),
            "error should name the release imm@1: {err}"
        );
    }

    let after = s.show("imm@1");
    assert_eq!(before, after, "a refused add changed the existing release");
    let listed: Vec<_> = s.ls().into_iter().filter(|r| r["name"] == "imm").collect();
    assert_eq!(listed.len(), 1, "ls should list imm once: {listed:?}");
    assert_eq!(num(&listed[0], "sequence"), num(&first, "sequence"));

    // Another version of the same name is fine and gets a later sequence number.
    let second = s.add("imm@2", &[&src_v2]);
    assert!(
        num(&second, "sequence") > num(&first, "sequence"),
        "{first} vs {second}"
    );
}

#[test]
fn unknown_release_is_not_found() {
    let s = Store::new();
    let out_dir = s.tmp_path("out");
    let get = s
        .run([
            "get",
            "nope@1",
            "--out",
            &format!("dir:{}", out_dir.display()),
        ])
        .expect_code(1);
    assert!(
        get.error_line().contains("nope@1"),
        "error should name the release:\n{get}"
    );
    let show = s.run(["show", "nope@1"]).expect_code(1);
    assert!(
        show.error_line().contains("nope@1"),
        "error should name the release:\n{show}"
    );
    assert!(s.ls().is_empty(), "a fresh store lists releases");
    let (code, fsck, out) = s.fsck_json();
    assert_eq!(code, Some(0), "fsck of an empty store:\n{out}");
    assert_eq!(fsck["ok"], true, "{out}");
    assert_eq!(num(&fsck, "releases"), 0, "{out}");
}
