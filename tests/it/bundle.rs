//! Sneakernet bundles: export only what the site lacks (base, have-file, site ledger), volumes, verify and inspect
//! without a store, import, and every kind of bad medium: a flipped byte, a missing or truncated volume, an
//! untrusted or tampered index, a hostile path, a kill -9 mid-import.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use ferry_protocol::bundle::{BundleIndex, SignedIndex, INDEX_FILE};
use ferry_protocol::{Entry, Object, ReleaseManifest};
use ferry_tests::cmd::ChildGuard;
use ferry_tests::ferry::{self, num, Store};
use ferry_tests::fixtures::{images, random_file};
use ferry_tests::fsutil::{dir_bytes, flip_byte, verify_blobs};

use crate::oci::{oci, single_entry};

/// A seed holding img@1 (v1) and img@2 (v2 = v1 plus a layer), and its public key in a file.
struct Seed {
    store: Store,
    key: PathBuf,
}

fn seed() -> Seed {
    let imgs = images();
    let store = Store::new();
    store.add("img@1", &[&oci(&imgs.layout, "v1")]);
    store.add("img@2", &[&oci(&imgs.layout, "v2")]);
    let key = store.tmp_path("seed.pub");
    let out = store.run(["keys", "export"]).ok();
    fs::write(&key, &out.stdout).unwrap();
    Seed { store, key }
}

/// A site store that trusts `seed`.
fn site(seed: &Seed) -> Store {
    let s = Store::new();
    s.run(["trust", "add", seed.key.to_str().unwrap()]).ok();
    s
}

impl Seed {
    /// `ferry export ARGS… --out TMP/NAME --json`.
    #[track_caller]
    fn export(&self, name: &str, args: &[&str]) -> (PathBuf, serde_json::Value) {
        let out = self.store.tmp_path(name);
        let mut v = vec!["export"];
        v.extend_from_slice(args);
        v.extend_from_slice(&["--out", out.to_str().unwrap()]);
        let json = self.store.json(v);
        (out, json)
    }
}

fn import(s: &Store, dir: &Path) -> serde_json::Value {
    s.json(["import", dir.to_str().unwrap()])
}

/// Volume files of a bundle, in order.
fn volumes(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ferry-bundle.") && n != INDEX_FILE)
        })
        .collect();
    v.sort();
    v
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn delta_bundle_carries_only_what_the_site_lacks() {
    let seed = seed();
    let site = site(&seed);
    let (full1, e1) = seed.export("b1", &["img@1"]);
    assert_eq!(e1["basis"]["releases"].as_array().map(Vec::len), Some(0));
    let i1 = import(&site, &full1);
    assert_eq!(strings(&i1["imported"]), ["img@1"], "{i1}");
    assert_eq!(num(&i1, "chunks_new"), num(&e1, "chunks"), "{i1}");

    let (delta, e2) = seed.export("b2", &["img@2", "--base", "img@1"]);
    let (_, full2) = seed.export("b2-full", &["img@2"]);
    assert_eq!(strings(&e2["basis"]["releases"]), ["img@1"], "{e2}");
    assert!(num(&e2, "chunks") > 0, "{e2}");
    assert!(
        num(&e2, "total_bytes") * 4 < num(&full2, "total_bytes"),
        "a delta over img@1 should be far smaller than the whole img@2: {e2} vs {full2}"
    );

    // Verify needs no store: a key file is enough.
    let nowhere = seed.store.tmp_path("no-store");
    let v = ferry::ferry(
        &nowhere,
        [
            "bundle",
            "verify",
            delta.to_str().unwrap(),
            "--key",
            seed.key.to_str().unwrap(),
            "--json",
        ],
    )
    .ok()
    .json();
    // Chunks carried as deltas need the receiver's content to decode: verify counts them apart.
    assert_eq!(
        num(&v, "chunks") + num(&v, "delta_chunks"),
        num(&e2, "chunks"),
        "{v}"
    );
    assert_eq!(
        num(&v, "delta_chunks"),
        num(&e2, "delta_chunks"),
        "{v} {e2}"
    );
    assert!(!nowhere.exists(), "verify created a store");

    let inspect = site.json(["bundle", "inspect", delta.to_str().unwrap()]);
    assert_eq!(inspect["signature"], "good", "{inspect}");
    assert_eq!(inspect["releases"][0]["release"], "img@2", "{inspect}");
    assert_eq!(num(&inspect, "chunks"), num(&e2, "chunks"));

    // A site that does not hold the base gets a clear refusal naming what is missing, and nothing visible:
    // the base its recipes and deltas refer to when there is one, else the chunks the release lacks.
    let bare = self::site(&seed);
    let out = bare.run(["import", delta.to_str().unwrap()]).expect_code(1);
    match inspect["bases"].as_array().and_then(|b| b.first()) {
        Some(base) => assert!(
            out.error_line().contains(base["blob"].as_str().unwrap())
                && out.error_line().contains("does not hold"),
            "{out}"
        ),
        None => assert!(
            out.error_line().contains("img@2") && out.error_line().contains("lacks"),
            "{out}"
        ),
    }
    assert!(bare.ls().is_empty(), "{out}");

    // Every chunk in the delta is new to the site: nothing the site holds crossed the gap.
    let i2 = import(&site, &delta);
    assert_eq!(strings(&i2["imported"]), ["img@2"], "{i2}");
    assert_eq!(num(&i2, "chunks_new"), num(&i2, "chunks"), "{i2}");

    // The site serves exactly the seed's image.
    let out = site.tmp_path("img2");
    site.get("img@2", &format!("oci:{}", out.display()));
    let imgs = images();
    let names = verify_blobs(&out);
    for d in imgs.v2.blobs() {
        assert!(
            names.iter().any(|n| d.ends_with(n.as_str())),
            "{d} missing from {names:?}"
        );
    }
    assert_eq!(single_entry(&out).digest, imgs.v2.digest);
    let (code, f, o) = site.fsck_json();
    assert_eq!((code, &f["ok"]), (Some(0), &serde_json::json!(true)), "{o}");
}

#[test]
fn reexporting_a_held_release_costs_almost_nothing() {
    let seed = seed();
    let site = site(&seed);
    let (b1, _) = seed.export("b1", &["img@1"]);
    import(&site, &b1);
    let (again, e) = seed.export("again", &["img@1", "--base", "img@1"]);
    assert_eq!(num(&e, "chunks"), 0, "{e}");
    assert!(
        num(&e, "total_bytes") < 64 << 10,
        "re-exporting a held release: {e}"
    );
    assert_eq!(dir_bytes(&again), num(&e, "total_bytes"));
    let i = import(&site, &again);
    assert_eq!(strings(&i["already_held"]), ["img@1"], "{i}");
    assert_eq!(num(&i, "chunks_new"), 0, "{i}");
}

#[test]
fn site_ledger_and_have_file_tell_the_seed_what_is_there() {
    let seed = seed();
    let site = site(&seed);
    let (b1, _) = seed.export("b1", &["img@1", "--site", "lab"]);
    import(&site, &b1);
    let (_, by_base) = seed.export("by-base", &["img@2", "--base", "img@1"]);

    // The ledger remembers img@1 went to lab.
    let (b2, by_site) = seed.export("by-site", &["img@2", "--site", "lab"]);
    assert_eq!(strings(&by_site["basis"]["releases"]), ["img@1"]);
    assert_eq!(num(&by_site, "chunks"), num(&by_base, "chunks"));
    let (_, third) = seed.export("third", &["img@2", "--site", "lab"]);
    assert_eq!(
        num(&third, "chunks"),
        0,
        "img@2 was shipped to lab already: {third}"
    );
    let sites = seed.store.json(["sites"]);
    assert_eq!(sites[0]["site"], "lab", "{sites}");
    assert_eq!(num(&sites[0], "exports"), 3, "{sites}");

    // The site's own account gives the same answer.
    let have = site.tmp_path("site.have");
    site.run(["have", "--out", have.to_str().unwrap()]).ok();
    let (_, by_have) = seed.export("by-have", &["img@2", "--have", have.to_str().unwrap()]);
    assert_eq!(
        num(&by_have, "chunks"),
        num(&by_base, "chunks"),
        "{by_have}"
    );
    assert_eq!(strings(&by_have["basis"]["releases"]), ["img@1"]);
    let i = import(&site, &b2);
    assert_eq!(strings(&i["imported"]), ["img@2"], "{i}");

    // A have-file from an unrelated store: a larger bundle, still correct.
    let stranger = Store::new();
    let f = stranger.tmp_path("f.bin");
    random_file(&f, 3 << 20);
    stranger.add("other@1", &[&format!("file:{}", f.display())]);
    let stranger_have = stranger.tmp_path("stranger.have");
    stranger
        .run(["have", "--out", stranger_have.to_str().unwrap()])
        .ok();
    let (b, e) = seed.export(
        "for-stranger",
        &["img@2", "--have", stranger_have.to_str().unwrap()],
    );
    let (_, full) = seed.export("full", &["img@2"]);
    assert_eq!(num(&e, "chunks"), num(&full, "chunks"), "{e}");
    let fresh = self::site(&seed);
    let i = import(&fresh, &b);
    assert_eq!(strings(&i["imported"]), ["img@2"], "{i}");
}

#[test]
fn volumes_split_and_rejoin() {
    let seed = seed();
    let (b, e) = seed.export("vols", &["img@1", "--volume-size", "2M"]);
    let vols = volumes(&b);
    assert!(vols.len() >= 4, "expected several 2 MiB volumes: {e}");
    for v in &vols {
        assert!(fs::metadata(v).unwrap().len() <= 2 << 20, "{}", v.display());
    }
    let listed: Vec<String> = e["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[0].as_str().unwrap().to_string())
        .collect();
    let on_disk: Vec<String> = vols
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, on_disk);

    // A flipped byte in any volume is found and named, with the offset of its block.
    for (n, v) in vols.iter().enumerate() {
        let len = fs::metadata(v).unwrap().len();
        let at = len - 1 - (n as u64 * 7919) % len;
        flip_byte(v, at);
        let out = seed
            .store
            .run(["bundle", "verify", b.to_str().unwrap()])
            .expect_code(1);
        let block = at / (1 << 20) * (1 << 20);
        assert!(
            out.error_line().contains(&on_disk[n])
                && out.error_line().contains(&format!("offset {block} ")),
            "byte {at} of {}: {out}",
            on_disk[n]
        );
        flip_byte(v, at);
    }
    seed.store
        .run(["bundle", "verify", b.to_str().unwrap()])
        .ok();

    let site = site(&seed);
    let i = import(&site, &b);
    assert_eq!(strings(&i["imported"]), ["img@1"], "{i}");
    assert!(site.lists("img", "1"));
}

#[test]
fn flipped_byte_is_named_and_verified_chunks_are_kept() {
    let seed = seed();
    let big = seed.store.tmp_path("big.bin");
    random_file(&big, 12 << 20);
    seed.store
        .add("data@1", &[&format!("file:{}", big.display())]);
    // img@1's chunks come first in the stream, data@1's after.
    let (b, _) = seed.export("b", &["img@1", "data@1", "--volume-size", "4M"]);
    let vols = volumes(&b);
    let last = vols.last().unwrap().clone();
    let name = last.file_name().unwrap().to_string_lossy().into_owned();
    let len = fs::metadata(&last).unwrap().len();
    assert!(len > (1 << 20) + 10, "last volume too small to test: {len}");
    let at = (1 << 20) + 7;
    flip_byte(&last, at);

    let v = seed
        .store
        .run(["bundle", "verify", b.to_str().unwrap()])
        .expect_code(1);
    let msg = v.error_line();
    assert!(
        msg.contains(&name) && msg.contains("offset 1048576"),
        "verify must name the volume and offset: {v}"
    );

    let site = site(&seed);
    let out = site.run(["import", b.to_str().unwrap()]).expect_code(1);
    assert!(
        out.error_line().contains(&name) && out.error_line().contains("offset 1048576"),
        "{out}"
    );
    assert!(site.lists("img", "1"), "img@1 was whole before the damage");
    assert!(
        !site.lists("data", "1"),
        "data@1 is damaged and must stay invisible"
    );
    let (code, _, o) = site.fsck_json();
    assert_eq!(code, Some(0), "{o}");

    // The operator brings a good copy: the retry stores only what was missing.
    flip_byte(&last, at);
    let i = import(&site, &b);
    assert_eq!(strings(&i["imported"]), ["data@1"], "{i}");
    assert_eq!(strings(&i["already_held"]), ["img@1"], "{i}");
    assert!(
        num(&i, "chunks_new") < num(&i, "chunks"),
        "chunks verified before the damage were stored again: {i}"
    );
    let dest = site.tmp_path("data");
    site.get("data@1", &format!("dir:{}", dest.display()));
    assert_eq!(
        fs::read(dest.join("big.bin")).unwrap(),
        fs::read(&big).unwrap()
    );
}

#[test]
fn missing_or_truncated_volume_is_named() {
    let seed = seed();
    let (b, _) = seed.export("b", &["img@1", "--volume-size", "2M"]);
    let vols = volumes(&b);
    let site = site(&seed);

    let second = vols[1].clone();
    let saved = fs::read(&second).unwrap();
    fs::remove_file(&second).unwrap();
    for args in [vec!["bundle", "verify"], vec!["import"]] {
        let mut a = args.clone();
        a.push(b.to_str().unwrap());
        let out = site.run(a).expect_code(1);
        assert!(
            out.error_line().contains("ferry-bundle.002") && out.error_line().contains("missing"),
            "{out}"
        );
    }
    fs::write(&second, &saved).unwrap();

    let third = vols[2].clone();
    let f = fs::OpenOptions::new().write(true).open(&third).unwrap();
    f.set_len(1000).unwrap();
    for args in [vec!["bundle", "verify"], vec!["import"]] {
        let mut a = args.clone();
        a.push(b.to_str().unwrap());
        let out = site.run(a).expect_code(1);
        assert!(
            out.error_line().contains("ferry-bundle.003") && out.error_line().contains("truncated"),
            "{out}"
        );
    }
    assert!(site.ls().is_empty(), "nothing may become visible");
}

#[test]
fn untrusted_or_tampered_bundles_are_refused() {
    let seed = seed();
    let (b, _) = seed.export("b", &["img@1"]);

    // A store that never trusted the seed.
    let stranger = Store::new();
    let out = stranger.run(["import", b.to_str().unwrap()]).expect_code(1);
    assert!(out.error_line().contains("not trusted"), "{out}");
    assert!(stranger.ls().is_empty());

    // A key file of someone else.
    let other_key = stranger.tmp_path("other.pub");
    fs::write(&other_key, stranger.run(["keys", "export"]).ok().stdout).unwrap();
    let out = stranger
        .run([
            "bundle",
            "verify",
            b.to_str().unwrap(),
            "--key",
            other_key.to_str().unwrap(),
        ])
        .expect_code(1);
    assert!(out.error_line().contains("not trusted"), "{out}");

    // One byte of the index changed.
    let index = b.join(INDEX_FILE);
    let len = fs::metadata(&index).unwrap().len();
    flip_byte(&index, len / 2);
    let site = site(&seed);
    for args in [vec!["bundle", "verify"], vec!["import"]] {
        let mut a = args.clone();
        a.push(b.to_str().unwrap());
        let out = site.run(a).expect_code(1);
        assert!(
            out.error_line().contains(INDEX_FILE),
            "the tampered index must be named: {out}"
        );
    }
    assert!(site.ls().is_empty());
}

/// The seed's signing key, read from its store.
fn signing_key(store: &Store) -> SigningKey {
    let hex_seed = fs::read_to_string(store.path.join("keys/publisher.key")).unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_seed.trim(), &mut seed).unwrap();
    SigningKey::from_bytes(&seed)
}

#[test]
fn paths_in_a_bundle_cannot_escape_the_store() {
    let seed = seed();
    let tree = seed.store.tmp_path("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/app.conf"), b"listen = 8080\n").unwrap();
    seed.store
        .add("conf@1", &[&format!("dir:{}", tree.display())]);
    let (b, _) = seed.export("b", &["conf@1"]);

    // Even a trusted key that signs a manifest with a climbing path gets it refused: rewrite the release and
    // re-sign release and index with the seed's own key.
    let key = signing_key(&seed.store);
    let path = b.join(INDEX_FILE);
    let signed = SignedIndex::decode(&fs::read(&path).unwrap()).unwrap();
    let mut index = BundleIndex::decode(&signed.index).unwrap();
    let mut manifest: ReleaseManifest = index.releases[0].manifest_unverified().unwrap();
    let mut changed = false;
    for e in &mut manifest.entries {
        if let Entry::File(f) = e {
            f.path = "../../escaped.conf".into();
            changed = true;
        }
    }
    assert!(changed, "conf@1 has no file entry");
    index.releases[0] = manifest.sign(&key);
    fs::write(&path, index.sign(&key).encode()).unwrap();

    let site = site(&seed);
    let out = site.run(["import", b.to_str().unwrap()]).expect_code(1);
    assert!(out.error_line().contains("unsafe path"), "{out}");
    assert!(site.ls().is_empty());
    let root = site.tmp.path();
    assert!(
        !root.join("escaped.conf").exists()
            && !root.parent().unwrap().join("escaped.conf").exists()
    );
}

#[test]
fn kill_during_import_then_resume() {
    const SIZE: u64 = 400 << 20;
    let seed = seed();
    let input = seed.store.tmp_path("big.bin");
    random_file(&input, SIZE);
    seed.store
        .add("big@1", &[&format!("file:{}", input.display())]);
    let (b, e) = seed.export("b", &["big@1", "--zstd-level", "1", "--volume-size", "64M"]);

    let site2 = site(&seed);
    let child = ferry::command(&site2.path, ["import", b.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn ferry import");
    let mut guard = ChildGuard::new(child, "ferry import");
    let start = Instant::now();
    let mut written = 0;
    while start.elapsed() < Duration::from_secs(20) && written < SIZE / 4 {
        assert!(
            guard.running(),
            "import finished before it could be killed: use a larger bundle"
        );
        thread::sleep(Duration::from_millis(10));
        written = dir_bytes(&site2.path.join("packs"));
    }
    assert!(guard.running(), "import finished before it could be killed");
    guard.kill();
    eprintln!("killed ferry import with {written} bytes under packs/");
    assert!(!site2.lists("big", "1"), "a killed import left a release");
    let (code, _, o) = site2.fsck_json();
    assert_eq!(code, Some(0), "{o}");

    let resumed = import(&site2, &b);
    assert_eq!(strings(&resumed["imported"]), ["big@1"]);
    assert!(
        num(&resumed, "chunks_new") < num(&e, "chunks"),
        "the re-run stored every chunk again: {resumed}"
    );

    let site1 = site(&seed);
    import(&site1, &b);
    let (c1, f1, o1) = site1.fsck_json();
    let (c2, f2, o2) = site2.fsck_json();
    assert_eq!((c1, c2), (Some(0), Some(0)), "{o1}\n{o2}");
    assert_eq!(
        num(&f2, "pack_bytes"),
        num(&f1, "pack_bytes"),
        "killed-then-resumed import holds a different amount than a clean one (something stored twice?)"
    );
    let dest = site2.tmp_path("out");
    site2.get("big@1", &format!("dir:{}", dest.display()));
    assert_eq!(
        ferry_tests::fsutil::sha256_file(&dest.join("big.bin")),
        ferry_tests::fsutil::sha256_file(&input)
    );
}
