//! Seeing the node: the status page at `/` as headless Chromium renders it (script and all), and `/metrics` as
//! Prometheus' parser reads it, both following what the node does — pins, pulls, garbage collection.

use std::time::Duration;

use ferry_tests::cmd::{run_ok, run_timeout};
use ferry_tests::ferry::{num, Store};
use ferry_tests::metrics::{scrape, value};
use ferry_tests::node::Node;

use crate::pins::two_versions;

/// Headless Chromium on `url` with `args` (its profile in the store's temporary directory); its output.
fn chromium(s: &Store, args: &[&str], url: &str) -> ferry_tests::cmd::Output {
    let profile = s.tmp_path("chromium-profile");
    let out = run_timeout(
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .args(args)
            .arg(url)
            .env("HOME", s.tmp_path("")),
        Duration::from_secs(120),
    );
    assert_eq!(out.code, Some(0), "chromium: {out}");
    out
}

/// The DOM of `url` after Chromium loaded it and ran its script.
fn rendered(s: &Store, url: &str) -> String {
    chromium(s, &["--dump-dom"], url).stdout
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

/// Chromium's screenshot of `url` at `width`×`height` into `out` (a PNG).
fn screenshot(s: &Store, url: &str, (width, height): (u32, u32), out: &std::path::Path) {
    chromium(
        s,
        &[
            "--hide-scrollbars",
            &format!("--window-size={width},{height}"),
            &format!("--screenshot={}", out.display()),
        ],
        url,
    );
    let png = std::fs::read(out).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{out:?} is no PNG");
    // The IHDR chunk: width and height, big-endian, at bytes 16..24.
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(w, width, "{out:?}");
}

#[test]
fn what_crossed_the_gap_and_what_it_saved_shows_on_the_page_as_in_status_json() {
    use crate::sync::{allow_all, seed_and_site, sync};
    let seed = Store::new();
    two_versions(&seed);
    let site = Store::new();
    let key = seed.tmp_path("seed.pub");
    std::fs::write(&key, seed.run(["keys", "export"]).ok().stdout).unwrap();
    site.run(["trust", "add", key.to_str().unwrap()]).ok();
    // Version 1 crosses on removable media, version 2 over the network.
    let bundle = seed.tmp_path("bundle");
    seed.json(["export", "img@1", "--out", bundle.to_str().unwrap()]);
    let bundle_bytes = ferry_tests::fsutil::dir_bytes(&bundle);
    site.json(["import", bundle.to_str().unwrap()]);
    allow_all(&[&seed, &site]);
    let (_seed_node, site_node) = seed_and_site(&seed, &site);
    sync(&site, "img@2", &[]);

    // The sync's audit entry follows its end by a moment.
    crate::sync::wait_for("the sync's audit entry", Duration::from_secs(30), || {
        site.json(["status"])["delivered"]["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == 2)
    });
    let status = site.json(["status"]);
    let d = &status["delivered"];
    let deliveries = d["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{d}");
    assert_eq!(deliveries[0]["via"], "bundle");
    assert_eq!(deliveries[0]["shipped_bytes"], bundle_bytes, "{d}");
    assert_eq!(deliveries[1]["via"], "sync");
    assert_eq!(deliveries[1]["releases"][0], "img@2");
    // Layer-level: all of v1's blobs, then only the blobs of v2 the site did not have.
    // (The images' blobs, as the fixture layout holds them: manifest, config, layers.)
    let imgs = ferry_tests::fixtures::images();
    let blobs = |m: &ferry_tests::fixtures::Manifest| -> Vec<(String, u64)> {
        m.blobs()
            .into_iter()
            .map(|d| {
                let path = imgs
                    .layout
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:"));
                let size = std::fs::metadata(&path).unwrap().len();
                (d, size)
            })
            .collect()
    };
    let (v1, v2) = (blobs(&imgs.v1), blobs(&imgs.v2));
    let v1_bytes: u64 = {
        let mut seen = std::collections::HashSet::new();
        v1.iter()
            .filter(|(d, _)| seen.insert(d.clone()))
            .map(|b| b.1)
            .sum()
    };
    let new_in_v2: u64 = {
        let mut seen: std::collections::HashSet<&String> = v1.iter().map(|b| &b.0).collect();
        v2.iter().filter(|(d, _)| seen.insert(d)).map(|b| b.1).sum()
    };
    assert_eq!(num(&deliveries[0], "layer_bytes"), v1_bytes, "{d}");
    assert_eq!(num(&deliveries[1], "layer_bytes"), new_in_v2, "{d}");
    let shipped: u64 = deliveries.iter().map(|x| num(x, "shipped_bytes")).sum();
    assert_eq!(num(d, "shipped_bytes"), shipped);
    assert_eq!(num(d, "layer_bytes"), v1_bytes + new_in_v2);

    // The page shows the same figures (read from the DOM after its script ran), and draws them.
    let dom = rendered(&site, &site_node.url("/"));
    let attr = |from: &str, name: &str| -> u64 {
        let at = from
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("no {name} in {from}"));
        let rest = &from[at + name.len() + 2..];
        rest[..rest.find('"').unwrap()].parse().unwrap()
    };
    let saved = &dom[dom.find("id=\"saved\"").expect("the saved figures")..];
    assert_eq!(attr(saved, "data-shipped"), num(d, "shipped_bytes"));
    assert_eq!(attr(saved, "data-layer"), num(d, "layer_bytes"));
    let table = &dom[dom.find("id=\"deliveries\"").expect("the deliveries table")..];
    let table = &table[..table.find("</table>").unwrap()];
    let rows: Vec<&str> = table.split("<tr data-shipped").skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    // Newest first on the page, each row with its figures.
    for (row, x) in rows.iter().zip(deliveries.iter().rev()) {
        let row = format!("data-shipped{row}");
        assert_eq!(attr(&row, "data-shipped"), num(x, "shipped_bytes"), "{row}");
        assert_eq!(attr(&row, "data-layer"), num(x, "layer_bytes"), "{row}");
    }
    assert!(
        dom.contains("id=\"gap-chart\"") && dom.contains("id=\"disk-chart\""),
        "the charts are drawn in the page"
    );
    // Nothing is loaded from elsewhere: an air-gapped browser shows it whole.
    assert!(
        !dom.contains(" src=") && !dom.contains("href=\"http"),
        "{dom}"
    );

    // Screenshots at a desktop's and a phone's width (into docs/ when FERRY_SCREENSHOTS names the directory).
    let dir = std::env::var_os("FERRY_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| site.tmp_path("shots"));
    std::fs::create_dir_all(&dir).unwrap();
    screenshot(
        &site,
        &site_node.url("/"),
        (1280, 1100),
        &dir.join("status-desktop.png"),
    );
    screenshot(
        &site,
        &site_node.url("/"),
        (390, 1400),
        &dir.join("status-phone.png"),
    );
}
