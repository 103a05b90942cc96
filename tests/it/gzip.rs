//! Gzip blobs (umoci's pgzip layers, a GNU gzip tarball) stored as raw bytes plus re-creation data: every one
//! comes back with its original digest through `ferry get`, the registry (cold and warm), a bundle and fsck;
//! a gzip stream that cannot be re-created is kept as it is, counted, and comes back too.

use std::fs;
use std::path::Path;

use ferry_tests::cmd::run_ok;
use ferry_tests::ferry::{num, Store};
use ferry_tests::fixtures::images;
use ferry_tests::fsutil::{index_entries, sha256_file, verify_blobs};
use ferry_tests::node::Node;

use crate::oci::oci;
use crate::sync::fsck_clean;

/// Bytes of the gzip layers of the fixture images v1 and v2 (each layer once).
fn layer_bytes() -> u64 {
    let imgs = images();
    let mut layers: Vec<&String> = imgs.v1.layers.iter().chain(&imgs.v2.layers).collect();
    layers.sort();
    layers.dedup();
    layers
        .iter()
        .map(|d| {
            let path = imgs
                .layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"));
            fs::metadata(path).unwrap().len()
        })
        .sum()
}

fn cache_files(store: &Path) -> Vec<std::path::PathBuf> {
    match fs::read_dir(store.join("cache/gzip")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[track_caller]
#[test]
fn gzip_layers_are_recreated_exactly_everywhere() {
    let imgs = images();
    let s = Store::new();
    let a1 = s.add("img@1", &[&oci(&imgs.layout, "v1")]);
    let a2 = s.add("img@2", &[&oci(&imgs.layout, "v2")]);
    // Every gzip layer was decomposed: none kept as it is.
    assert_eq!(
        num(&a1, "gzip_kept_bytes") + num(&a2, "gzip_kept_bytes"),
        0,
        "{a1} {a2}"
    );
    assert_eq!(
        num(&a1, "recreated_bytes") + num(&a2, "recreated_bytes"),
        layer_bytes(),
        "{a1} {a2}"
    );

    // `ferry get` to an OCI layout: every blob hashes to its name, the manifests are the originals.
    let out = s.tmp_path("got");
    s.get("img@2", &format!("oci:{}", out.display()));
    assert!(
        verify_blobs(&out).contains(&imgs.v2.layers[1].trim_start_matches("sha256:").to_string())
    );
    assert_eq!(index_entries(&out)[0].digest, imgs.v2.digest);
    let (_, report, _) = s.fsck_json();
    assert_eq!(num(&report, "recreated_blobs"), 2, "{report}");
    fsck_clean(&s);

    // The registry: a cold read re-creates into the cache, a warm one reads the cache; skopeo checks digests.
    for f in cache_files(&s.path) {
        fs::remove_file(f).unwrap();
    }
    let node = Node::start(&s.path);
    for round in ["cold", "warm"] {
        let dest = s.tmp_path(&format!("pull-{round}"));
        run_ok(
            "skopeo",
            [
                "copy",
                "-q",
                "--src-tls-verify=false",
                &format!("docker://{}/img:v2", node.addr),
                &format!("oci:{}:v2", dest.display()),
            ],
        );
        assert_eq!(
            index_entries(&dest)[0].digest,
            imgs.v2.digest,
            "{round} pull"
        );
        verify_blobs(&dest);
        assert_eq!(
            cache_files(&s.path).len(),
            imgs.v2.layers.len(),
            "{round}: {:?}",
            cache_files(&s.path)
        );
    }
    assert_eq!(node.stop(), Some(0));

    // A damaged cached copy is found by fsck, named and dropped; the next read re-creates it.
    let cached = cache_files(&s.path).pop().unwrap();
    let mut bytes = fs::read(&cached).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&cached, bytes).unwrap();
    let (code, report, _) = s.fsck_json();
    assert_ne!(code, Some(0), "{report}");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("re-created copy") && problems.contains("removed"),
        "{report}"
    );
    assert!(!cached.exists());
    fsck_clean(&s);

    // A bundle carries raw chunks and re-creation data; the site re-creates the exact layers.
    let site = Store::new();
    let key = s.tmp_path("seed.pub");
    fs::write(&key, s.run(["keys", "export"]).ok().stdout).unwrap();
    site.run(["trust", "add", key.to_str().unwrap()]).ok();
    let bundle = s.tmp_path("bundle");
    s.json(["export", "img@2", "--out", bundle.to_str().unwrap()]);
    site.json(["import", bundle.to_str().unwrap()]);
    let out = site.tmp_path("site-got");
    site.get("img@2", &format!("oci:{}", out.display()));
    assert_eq!(index_entries(&out)[0].digest, imgs.v2.digest);
    verify_blobs(&out);
    fsck_clean(&site);
}

#[test]
fn gzip_tarball_file_round_trips_and_a_broken_one_is_kept() {
    let imgs = images();
    let s = Store::new();
    let tarball = &imgs.rootfs_tar;
    let size = fs::metadata(tarball).unwrap().len();
    let add = s.add("tar@1", &[&format!("file:{}", tarball.display())]);
    assert_eq!(num(&add, "recreated_bytes"), size, "{add}");

    // A gzip file whose CRC is wrong cannot be re-created (decomposing checks it): kept as it is, counted.
    let broken = s.tmp_path("broken.tar.gz");
    let mut bytes = fs::read(tarball).unwrap();
    let n = bytes.len();
    bytes[n - 8] ^= 0xff;
    fs::write(&broken, &bytes).unwrap();
    let add = s.add("broken@1", &[&format!("file:{}", broken.display())]);
    assert_eq!(num(&add, "gzip_kept_bytes"), n as u64, "{add}");
    assert_eq!(num(&add, "recreated_bytes"), 0, "{add}");

    for (release, name, original) in [
        ("tar@1", "rootfs-v1.tar.gz", tarball.as_path()),
        ("broken@1", "broken.tar.gz", broken.as_path()),
    ] {
        let out = s.tmp_path(&format!("out-{name}"));
        s.get(release, &format!("dir:{}", out.display()));
        assert_eq!(
            sha256_file(&out.join(name)),
            sha256_file(original),
            "{release}"
        );
    }
    fsck_clean(&s);
}

/// A GNU gzip -6 tarball of real files of this machine (its shared libraries, up to `max` bytes of them): one
/// gzip member, which re-creation walks on one thread, so re-creating it takes a moment.
fn slow_tarball(s: &Store, max: u64) -> std::path::PathBuf {
    let dir = s.tmp_path("slow");
    fs::create_dir_all(&dir).unwrap();
    let mut list = String::new();
    let mut total = 0;
    let mut files: Vec<_> = walkdir::WalkDir::new("/usr/lib/x86_64-linux-gnu")
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| Some((e.path().to_path_buf(), e.metadata().ok()?.len())))
        .filter(|(_, len)| *len > 64 << 10)
        .collect();
    files.sort();
    for (path, len) in files {
        if total + len > max {
            continue;
        }
        total += len;
        list.push_str(&format!("{}\n", path.display()));
    }
    assert!(
        total > max / 2,
        "only {total} bytes of libraries on this machine"
    );
    fs::write(dir.join("list"), list).unwrap();
    let tar = dir.join("libs.tar");
    run_ok(
        "tar",
        [
            "-cf",
            tar.to_str().unwrap(),
            "-T",
            dir.join("list").to_str().unwrap(),
        ],
    );
    run_ok("gzip", ["-6", tar.to_str().unwrap()]);
    dir.join("libs.tar.gz")
}

/// The cache's files: (finished re-creations, temporary files).
fn cache_state(store: &Path) -> (usize, usize) {
    let files = cache_files(store);
    let tmp = files
        .iter()
        .filter(|p| p.to_string_lossy().contains(".tmp"))
        .count();
    (files.len() - tmp, tmp)
}

#[test]
fn a_blob_pulled_while_it_is_re_created_streams_exact_bytes() {
    let s = Store::new();
    let tgz = slow_tarball(&s, 48 << 20);
    let want = fs::read(&tgz).unwrap();
    let add = s.add("libs@1", &[&format!("file:{}", tgz.display())]);
    assert_eq!(num(&add, "recreated_bytes"), want.len() as u64, "{add}");
    // No background re-creation: the first readers meet the re-creation they start, and share it.
    let node = Node::start_with(&s.path, &["--no-prewarm"]);
    let url = node.url("/repos/libs/1/libs.tar.gz");
    let got: Vec<Vec<u8>> = std::thread::scope(|sc| {
        let pulls: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| {
                    let resp = reqwest::blocking::get(&url).unwrap();
                    assert!(resp.status().is_success(), "{}", resp.status());
                    resp.bytes().unwrap().to_vec()
                })
            })
            .collect();
        pulls.into_iter().map(|p| p.join().unwrap()).collect()
    });
    for g in &got {
        assert!(g == &want, "a pull got {} bytes, not the blob's", g.len());
    }
    let m = ferry_tests::metrics::scrape(&node.url("/metrics"));
    let v = |name, labels: &[(&str, &str)]| ferry_tests::metrics::value(&m, name, labels).unwrap();
    assert_eq!(v("ferry_recreations_total", &[("kind", "on_demand")]), 1.0);
    assert_eq!(v("ferry_recreations_total", &[("kind", "background")]), 0.0);
    assert!(v("ferry_recreations_streamed_total", &[]) >= 1.0);
    assert_eq!(v("ferry_recreations_failed_total", &[]), 0.0);
    assert_eq!(cache_state(&s.path), (1, 0));
    // Warm: from the cache, exact; nothing re-created again.
    let again = reqwest::blocking::get(&url).unwrap().bytes().unwrap();
    assert!(again[..] == want[..]);
    assert_eq!(node.stop(), Some(0));
    fsck_clean(&s);
}

#[test]
fn a_node_killed_during_a_background_re_creation_leaves_nothing_half_written() {
    let s = Store::new();
    let tgz = slow_tarball(&s, 96 << 20);
    let want = fs::read(&tgz).unwrap();
    s.add("libs@1", &[&format!("file:{}", tgz.display())]);
    // The node re-creates the new release's blob in the background; kill it while that is under way.
    let node = Node::start(&s.path);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while cache_state(&s.path).1 == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background re-creation started"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    node.kill();
    assert_eq!(cache_state(&s.path).1, 1, "the cut-short file is there");
    // Opening the store (fsck here) removes what the crash left; a finished file there would be whole (fsck
    // checks cached copies against their digests).
    fsck_clean(&s);
    assert_eq!(cache_state(&s.path).1, 0, "{:?}", cache_files(&s.path));
    let node = Node::start_with(&s.path, &["--no-prewarm"]);
    let got = reqwest::blocking::get(node.url("/repos/libs/1/libs.tar.gz"))
        .unwrap()
        .bytes()
        .unwrap();
    assert!(got[..] == want[..]);
    assert_eq!(node.stop(), Some(0));
}
