//! Seeing the node: the status page at `/` as headless Chromium renders it (script and all), and `/metrics` as
//! Prometheus' parser reads it, both following what the node does — pins, pulls, garbage collection.

use std::time::Duration;

use ferry_tests::cmd::{run_ok, run_timeout};
use ferry_tests::ferry::{num, Store};
use ferry_tests::metrics::{scrape, value};
use ferry_tests::node::Node;

use crate::pins::two_versions;

/// The DOM of `url` after Chromium loaded it and ran its script.
fn rendered(s: &Store, url: &str) -> String {
    let profile = s.tmp_path("chromium-profile");
    let out = run_timeout(
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                &format!("--user-data-dir={}", profile.display()),
                "--dump-dom",
                url,
            ])
            .env("HOME", s.tmp_path("")),
        Duration::from_secs(120),
    );
    assert_eq!(out.code, Some(0), "chromium: {out}");
    out.stdout
}

/// The `<tr>` of the releases table for `name`.
fn row<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("<tr data-name=\"{name}\">"))
        .unwrap_or_else(|| panic!("no row for {name} in\n{dom}"));
    let end = start + dom[start..].find("</tr>").unwrap();
    &dom[start..end]
}

#[test]
fn the_status_page_and_metrics_follow_pins_pulls_and_gc() {
    let s = Store::new();
    two_versions(&s);
    let node = Node::start(&s.path);
    s.run(["pin", "set", "img", "1"]).ok();

    let m = scrape(&node.url("/metrics"));
    assert_eq!(value(&m, "ferry_store_releases", &[]), Some(4.0));
    assert_eq!(
        value(&m, "ferry_release_versions", &[("name", "img")]),
        Some(2.0)
    );
    assert_eq!(value(&m, "ferry_pins", &[]), Some(1.0));
    assert_eq!(value(&m, "ferry_gc_runs_total", &[]), Some(0.0));
    let packs = value(&m, "ferry_store_bytes", &[("part", "packs")]).unwrap();
    assert_eq!(packs as u64, num(&s.json(["status"])["disk"], "packs"));
    assert!(
        value(&m, "ferry_peers_connected", &[]).is_none(),
        "no network, no peer metrics"
    );
    let served_before = value(&m, "ferry_served_bytes_total", &[]).unwrap();

    // A pull of img:latest (the pinned img@1) is counted, every byte of it.
    let dest = s.tmp_path("pulled");
    run_ok(
        "skopeo",
        [
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/img:latest", node.addr),
            &format!("oci:{}:x", dest.display()),
        ],
    );
    let pulled: u64 = walkdir::WalkDir::new(dest.join("blobs"))
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let m = scrape(&node.url("/metrics"));
    let served = value(&m, "ferry_served_bytes_total", &[]).unwrap() - served_before;
    assert!(served >= pulled as f64, "served {served}, pulled {pulled}");

    let gc = s.json(["gc", "--keep", "1"]);
    assert_eq!(gc["removed"], serde_json::json!(["files@1"]), "{gc}");
    let m = scrape(&node.url("/metrics"));
    assert_eq!(value(&m, "ferry_gc_runs_total", &[]), Some(1.0));
    assert_eq!(value(&m, "ferry_gc_releases_removed_total", &[]), Some(1.0));
    assert_eq!(
        value(&m, "ferry_gc_reclaimed_bytes_total", &[]),
        Some(num(&gc, "reclaimed_bytes") as f64)
    );
    assert!(value(&m, "ferry_gc_last_run_timestamp_seconds", &[]).unwrap() > 1.7e9);

    // The page, as a browser shows it: img's current is the pinned 1, files' the newest 2; times are relative.
    let dom = rendered(&s, &node.url("/"));
    let img = row(&dom, "img");
    assert!(img.contains("<td class=\"cur\">1</td>"), "{img}");
    assert!(
        img.contains(" ago</time>"),
        "the script made the pin's time relative: {img}"
    );
    let files = row(&dom, "files");
    assert!(
        files.contains("<td class=\"cur\">2</td>") && files.contains("<td>—</td>"),
        "{files}"
    );
    assert!(dom.contains("3 releases of 2 names, 1 pinned"), "{dom}");
    assert!(
        dom.contains("Garbage collection: 1 run since start"),
        "{dom}"
    );
    assert!(dom.contains("Network sync is off"), "{dom}");
    assert!(
        dom.contains("id=\"updated\">updated "),
        "the script ran: {dom}"
    );
}
