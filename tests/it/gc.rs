//! Retention and `ferry gc`: pinned versions and the newest N of each name stay, the rest goes; a running node
//! keeps serving exact bytes while it collects; what is left is what a fresh store of the kept releases holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_tests::ferry::{num, Store};
use ferry_tests::fixtures::{images, random_file, Manifest};
use ferry_tests::node::Node;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::pins::add_images;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Into `s`, in this order: `img@1` (the fixture's arm64 image), `img@2` (v1), `img@3` (v2), each tagged
/// `latest` and `VERSION.0`; `data@1..3` from `data`.
fn three_versions(s: &Store, data: &[std::path::PathBuf]) {
    let imgs = images();
    add_images(s, &[("1", &imgs.arm64), ("2", &imgs.v1), ("3", &imgs.v2)]);
    for (i, file) in data.iter().enumerate() {
        s.add(
            &format!("data@{}", i + 1),
            &[&format!("file:{}", file.display())],
        );
    }
}

/// One pull: when it started and ended, and the bytes it got or why it failed.
type Pulled = (Instant, Instant, Result<u64, String>);

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Pull `img:TAG` through the registry API — manifest, config, layers — checking every digest. Returns the
/// bytes pulled.
fn pull(
    client: &reqwest::blocking::Client,
    base: &str,
    tag: &str,
    want: &Manifest,
) -> Result<u64, String> {
    let get = |path: String, accept: Option<&str>| -> Result<Vec<u8>, String> {
        let mut req = client.get(format!("{base}{path}"));
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let resp = req.send().map_err(|e| format!("GET {path}: {e}"))?;
        let status = resp.status();
        let body = resp.bytes().map_err(|e| format!("GET {path}: body: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {path}: {status}"));
        }
        Ok(body.to_vec())
    };
    let manifest = get(format!("/v2/img/manifests/{tag}"), Some(MANIFEST_TYPES))?;
    if sha256(&manifest) != want.digest {
        return Err(format!(
            "img:{tag}: manifest {} is not {}",
            sha256(&manifest),
            want.digest
        ));
    }
    let mut total = manifest.len() as u64;
    for digest in want.blobs().into_iter().skip(1) {
        let blob = get(format!("/v2/img/blobs/{digest}"), None)?;
        if sha256(&blob) != digest {
            return Err(format!(
                "img:{tag}: blob {digest} came back as {}",
                sha256(&blob)
            ));
        }
        total += blob.len() as u64;
    }
    Ok(total)
}

/// Pack and index bytes (`ferry status`'s disk use without the cache of re-created blobs, which serving fills).
fn store_bytes(status: &Value) -> u64 {
    num(&status["disk"], "packs") + num(&status["disk"], "index")
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn gc_keeps_pins_and_the_newest_and_serving_goes_on_while_it_collects() {
    let imgs = images();
    let s = Store::new();
    let data: Vec<_> = (1..=3)
        .map(|i| {
            let p = s.tmp_path(&format!("data-{i}.bin"));
            random_file(&p, 6 << 20);
            p
        })
        .collect();
    three_versions(&s, &data);
    s.run(["pin", "set", "data", "1"]).ok();

    // A dry run names what would go and changes nothing.
    let dry = s.json(["gc", "--dry-run"]);
    assert_eq!(names(&dry["removed"]), ["img@1"], "{dry}");
    assert!(num(&dry, "chunks_removed") > 0, "{dry}");
    assert_eq!(s.ls().len(), 6);

    // Pinned data@1 stays with the newest two; img@1 (neither) goes.
    let first = s.json(["gc"]);
    assert_eq!(names(&first["removed"]), ["img@1"], "{first}");
    let kept = names(&first["kept"]);
    for r in ["data@1", "data@2", "data@3", "img@2", "img@3"] {
        assert!(kept.contains(&r.to_string()), "{r} kept: {first}");
    }
    assert!(!s.lists("img", "1"));

    // Unpin and collect on a running node while 64 clients pull the kept images over and over.
    let node = Node::start(&s.path);
    let base = node.url("");
    let base = base.trim_end_matches('/').to_string();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    assert!(
        pull(&client, &base, "1.0", &imgs.arm64).is_err(),
        "img@1 is gone"
    );
    s.run(["pin", "rm", "data"]).ok();

    let stop = Arc::new(AtomicBool::new(false));
    let pulls: Arc<Mutex<Vec<Pulled>>> = Arc::default();
    let workers: Vec<_> = (0..64)
        .map(|i| {
            let (stop, pulls, client, base) =
                (stop.clone(), pulls.clone(), client.clone(), base.clone());
            let (tag, want) = if i % 2 == 0 {
                ("2.0", &imgs.v1)
            } else {
                ("3.0", &imgs.v2)
            };
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let start = Instant::now();
                    let r = pull(&client, &base, tag, want);
                    pulls.lock().unwrap().push((start, Instant::now(), r));
                }
            })
        })
        .collect();
    // Every client has finished a pull (the re-created gzip layer is cached) before the collection starts.
    let deadline = Instant::now() + Duration::from_secs(300);
    while pulls.lock().unwrap().len() < 64 {
        assert!(Instant::now() < deadline, "pulls did not get going");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = s.json(["status"]);
    let gc_start = Instant::now();
    let second = s.json(["gc"]);
    let gc_end = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    for w in workers {
        w.join().unwrap();
    }
    let pulls = pulls.lock().unwrap();
    let failed: Vec<_> = pulls
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} pulls failed: {:?}",
        failed.len(),
        pulls.len(),
        &failed[..failed.len().min(5)]
    );
    let during = pulls
        .iter()
        .filter(|(start, end, _)| *start < gc_end && *end > gc_start)
        .count();
    assert!(
        during >= 1,
        "no pull overlapped the collection ({} pulls)",
        pulls.len()
    );
    assert_eq!(names(&second["removed"]), ["data@1"], "{second}");
    assert!(num(&second, "packs_compacted") >= 1, "{second}");
    assert!(num(&second, "chunk_bytes_removed") >= 6 << 20, "{second}");
    let after = s.json(["status"]);
    let packs = |v: &Value| num(&v["disk"], "packs");
    assert!(
        packs(&after) + (6 << 20) <= packs(&before),
        "data@1's 6 MiB left the packs:\n{before}\n{after}"
    );

    let (code, fsck, out) = s.fsck_json();
    assert_eq!(code, Some(0), "fsck after gc: {out}");
    assert_eq!(num(&fsck, "releases"), 4, "{fsck}");
    drop(node);

    // A fresh store holding only what was kept is no more than 5 % smaller.
    let fresh = Store::new();
    add_images(&fresh, &[("2", &imgs.v1), ("3", &imgs.v2)]);
    for i in 2..=3 {
        fresh.add(
            &format!("data@{i}"),
            &[&format!("file:{}", data[i - 1].display())],
        );
    }
    let (collected, clean) = (
        store_bytes(&s.json(["status"])),
        store_bytes(&fresh.json(["status"])),
    );
    assert!(
        (collected as f64) <= clean as f64 * 1.05,
        "collected store {collected} bytes, fresh store of the kept releases {clean}"
    );
}
