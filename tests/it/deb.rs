//! Debian packages (`.deb`: an `ar` of `control.tar.xz` and `data.tar.xz`) and bare xz and bzip2 streams
//! stored as skeleton, raw contents and the encoder's parameters: the fixture repository's real packages and its `Packages.xz`
//! are re-created, come back byte for byte through `ferry get` and fsck, and cross a bundle to a site whose
//! mirror `apt-get download` reads; a package rebuilt by `dpkg-deb` with one file changed crosses as about that
//! file; a damaged member is kept as it is, counted, and comes back too.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_tests::apt::AptClient;
use ferry_tests::cmd::run_ok;
use ferry_tests::ferry::{num, Store};
use ferry_tests::fixtures::apt_repo;
use ferry_tests::fsutil::sha256_file;
use ferry_tests::node::Node;

use crate::delta::site;

pub(crate) fn same(a: &Path, b: &Path) {
    assert_eq!(sha256_file(a), sha256_file(b), "{a:?} and {b:?} differ");
}

pub(crate) fn files_named(root: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.file_name().to_string_lossy().ends_with(suffix))
        .map(|e| e.into_path())
        .collect();
    out.sort();
    out
}

pub(crate) fn size(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

/// `deb` unpacked, `extra` appended to its `/usr/share/doc/*/changelog*` or copyright file, and packed again
/// by `dpkg-deb --build` (xz, as Debian builds packages).
fn rebuilt(s: &Store, deb: &Path, name: &str, extra: &str) -> PathBuf {
    let dir = s.tmp_path(&format!("{name}.d"));
    run_ok(
        "dpkg-deb",
        ["-R", deb.to_str().unwrap(), dir.to_str().unwrap()],
    );
    let doc = files_named(&dir.join("usr/share/doc"), "copyright")
        .into_iter()
        .next()
        .expect("the package has a copyright file");
    let mut text = fs::read(&doc).unwrap();
    text.extend_from_slice(extra.as_bytes());
    fs::write(&doc, text).unwrap();
    let out = s.tmp_path(name);
    run_ok(
        "dpkg-deb",
        [
            "--root-owner-group",
            "--build",
            dir.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    out
}

#[test]
fn debs_and_xz_indexes_are_recreated_exactly_and_cross_as_their_changed_files() {
    let repo = apt_repo();
    let s = Store::new();
    let add = s.add("deb@1", &[&format!("apt:{}", repo.root.display())]);
    let debs = files_named(&repo.root.join("pool"), ".deb");
    let xzs = files_named(&repo.root.join("dists"), ".xz");
    assert!(debs.len() >= 5 && !xzs.is_empty(), "{debs:?} {xzs:?}");
    // Every package's xz members re-created; only the ar skeletons (headers, debian-binary) kept as they are.
    let deb_bytes: u64 = debs.iter().map(|d| size(d)).sum();
    let (re, kept) = (
        num(&add, "deb_recreated_bytes"),
        num(&add, "deb_kept_bytes"),
    );
    assert_eq!(re + kept, deb_bytes, "{add}");
    assert!(kept < 400 * debs.len() as u64, "{add}");
    // The indexes `xz -k` wrote.
    let xz_bytes: u64 = xzs.iter().map(|d| size(d)).sum();
    assert_eq!(num(&add, "xz_recreated_bytes"), xz_bytes, "{add}");
    assert_eq!(num(&add, "xz_kept_bytes"), 0, "{add}");
    let out = s.tmp_path("got");
    s.get("deb@1", &format!("dir:{}", out.display()));
    for f in debs.iter().chain(&xzs) {
        same(f, &out.join(f.strip_prefix(&repo.root).unwrap()));
    }

    // A package rebuilt with one file changed: the bundle for a site holding the old one is a few KB, and the
    // site re-creates the new package exactly and serves it to apt.
    let base = debs
        .iter()
        .find(|d| {
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libssl3_")
        })
        .expect("libssl3 in the fixture pool");
    let v1 = rebuilt(&s, base, "v1.deb", "");
    let v2 = rebuilt(&s, base, "v2.deb", "\nPatched.\n");
    let a1 = s.add("ssl@1", &[&format!("file:{}", v1.display())]);
    let a2 = s.add("ssl@2", &[&format!("file:{}", v2.display())]);
    for (a, v) in [(&a1, &v1), (&a2, &v2)] {
        assert!(num(a, "deb_recreated_bytes") + 400 > size(v), "{a}");
    }
    let key = s.tmp_path("seed.pub");
    fs::write(&key, s.run(["keys", "export"]).ok().stdout).unwrap();
    let full = s.tmp_path("full");
    s.json(["export", "ssl@1", "deb@1", "--out", full.to_str().unwrap()]);
    let update = s.tmp_path("update");
    let e = s.json([
        "export",
        "ssl@2",
        "--base",
        "ssl@1",
        "--out",
        update.to_str().unwrap(),
    ]);
    // Measured 2026-12-03: a few KB for a 2 MB package (the whole package before .debs were decomposed).
    assert!(
        num(&e, "total_bytes") * 50 < size(&v2),
        "{} bytes for a {}-byte package: {e}",
        num(&e, "total_bytes"),
        size(&v2)
    );
    let site = site(&key, &[&full, &update]);
    let got = site.tmp_path("site-got");
    site.get("ssl@2", &format!("dir:{}", got.display()));
    same(&v2, &got.join("v2.deb"));
    let node = Node::start(&site.path);
    let apt = AptClient::new(
        &site.tmp_path("apt"),
        &repo.key,
        &node.url("/repos/deb/1"),
        "stable",
        "main contrib",
    );
    apt.update();
    for pkg in ["libssl3", "base-files"] {
        same(&apt.download(pkg), &repo.root.join(repo.pool_file(pkg)));
    }
    assert_eq!(node.stop(), Some(0));

    // A package whose data.tar.xz is damaged (its check fails): that member cannot be re-created and is kept,
    // counted; its control.tar.xz still is re-created; the package comes back exact.
    let mut bytes = fs::read(&v1).unwrap();
    let at = bytes.len() - 2000;
    bytes[at] ^= 0x10;
    let broken = s.tmp_path("broken.deb");
    fs::write(&broken, &bytes).unwrap();
    let add = s.add("broken@1", &[&format!("file:{}", broken.display())]);
    let (re, kept) = (
        num(&add, "deb_recreated_bytes"),
        num(&add, "deb_kept_bytes"),
    );
    assert_eq!(re + kept, bytes.len() as u64, "{add}");
    assert!(re > 0 && re < 64 << 10, "control.tar.xz only: {add}");
    // A tarball xz'd single-threaded at preset 9, and with a BCJ filter (kept).
    let tar = s.tmp_path("t.tar");
    run_ok(
        "tar",
        [
            "-cf",
            tar.to_str().unwrap(),
            "-C",
            repo.root.to_str().unwrap(),
            "dists",
        ],
    );
    run_ok("xz", ["-9", "-T1", "-k", tar.to_str().unwrap()]);
    let bcj = s.tmp_path("bcj.xz");
    run_ok(
        "sh",
        [
            "-c",
            &format!(
                "xz --x86 --lzma2=preset=6 -c {} > {}",
                tar.display(),
                bcj.display()
            ),
        ],
    );
    // The same tarball as bzip2 -9, and as two bzip2 streams one after another (what pbzip2 writes): kept.
    run_ok("bzip2", ["-9", "-k", tar.to_str().unwrap()]);
    let tbz = s.tmp_path("t.tar.bz2");
    let two = s.tmp_path("two.bz2");
    run_ok(
        "sh",
        [
            "-c",
            &format!(
                "head -c 30000 {t} | bzip2 > {o} && tail -c +30001 {t} | bzip2 >> {o}",
                t = tar.display(),
                o = two.display()
            ),
        ],
    );
    let txz = s.tmp_path("t.tar.xz");
    let add = s.add(
        "tars@1",
        &[
            &format!("file:{}", txz.display()),
            &format!("file:{}", bcj.display()),
            &format!("file:{}", tbz.display()),
            &format!("file:{}", two.display()),
        ],
    );
    assert_eq!(num(&add, "xz_recreated_bytes"), size(&txz), "{add}");
    assert_eq!(num(&add, "xz_kept_bytes"), size(&bcj), "{add}");
    assert_eq!(num(&add, "bzip2_recreated_bytes"), size(&tbz), "{add}");
    assert_eq!(num(&add, "bzip2_kept_bytes"), size(&two), "{add}");
    let out = s.tmp_path("got-kept");
    s.get("broken@1", &format!("dir:{}", out.display()));
    s.get("tars@1", &format!("dir:{}", out.display()));
    same(&broken, &out.join("broken.deb"));
    same(&txz, &out.join("t.tar.xz"));
    same(&bcj, &out.join("bcj.xz"));
    same(&tbz, &out.join("t.tar.bz2"));
    same(&two, &out.join("two.bz2"));
    for store in [&s, &site] {
        let (code, report, _) = store.fsck_json();
        assert_eq!(code, Some(0), "fsck: {report}");
    }
}
