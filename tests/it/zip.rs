//! Zips (wheels, jars) stored as skeleton, members' contents and re-creation data: real wheels from PyPI come
//! back byte for byte through `ferry get`, pip over the mirror and fsck; a wheel rebuilt with one file changed
//! crosses a bundle as about that file, and the site re-creates it exactly; a zip that cannot be re-created is
//! kept as it is, counted, and comes back too.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_tests::cmd::run_ok;
use ferry_tests::ferry::{num, Store};
use ferry_tests::fixtures::pkgs;
use ferry_tests::fsutil::sha256_file;

use crate::delta::site;

/// A wheel written by Python's zipfile (as `wheel` writes them) of a copy of the standard library's `email`
/// package, with `extra` appended to one of its files.
fn email_wheel(s: &Store, name: &str, extra: &str) -> PathBuf {
    let out = s.tmp_path(name);
    let script = "import os, sys, zipfile, email\n\
        d = os.path.dirname(email.__file__)\n\
        with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
        \x20   for f in sorted(os.listdir(d)):\n\
        \x20       if not f.endswith('.py'): continue\n\
        \x20       data = open(os.path.join(d, f), 'rb').read()\n\
        \x20       if f == 'message.py': data += sys.argv[2].encode()\n\
        \x20       z.writestr('email/' + f, data)\n\
        \x20   z.writestr('email-1.0.dist-info/RECORD', 'email/__init__.py,,\\n')\n";
    run_ok("python3", ["-c", script, out.to_str().unwrap(), extra]);
    out
}

fn same(a: &Path, b: &Path) {
    assert_eq!(sha256_file(a), sha256_file(b), "{a:?} and {b:?} differ");
}

#[test]
fn wheels_are_recreated_exactly_and_cross_as_their_changed_files() {
    let fx = pkgs();
    let s = Store::new();
    let mut wheels: Vec<PathBuf> = fs::read_dir(&fx.pypi)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    wheels.sort();
    assert!(wheels.len() >= 4, "{wheels:?}");
    let sources: Vec<String> = wheels
        .iter()
        .map(|w| format!("file:{}", w.display()))
        .collect();
    let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    let add = s.add("wheels@1", &refs);
    let total: u64 = wheels.iter().map(|w| fs::metadata(w).unwrap().len()).sum();
    // Every wheel was decomposed: its zip re-created from what the store holds.
    assert_eq!(num(&add, "zip_recreated_bytes"), total, "{add}");
    assert_eq!(num(&add, "zip_kept_bytes"), 0, "{add}");
    let out = s.tmp_path("got");
    s.get("wheels@1", &format!("dir:{}", out.display()));
    for w in &wheels {
        same(w, &out.join(w.file_name().unwrap()));
    }

    // A zip whose central directory gives a member a wrong CRC-32 cannot be re-created: kept, counted, exact.
    let good = email_wheel(&s, "good.zip", "");
    let mut bytes = fs::read(&good).unwrap();
    let eocd = bytes.len() - 22;
    let cd = u32::from_le_bytes(bytes[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    bytes[cd + 16] ^= 0x01;
    let broken = s.tmp_path("broken.zip");
    fs::write(&broken, &bytes).unwrap();
    let add = s.add("broken@1", &[&format!("file:{}", broken.display())]);
    assert_eq!(num(&add, "zip_kept_bytes"), bytes.len() as u64, "{add}");
    assert_eq!(num(&add, "zip_recreated_bytes"), 0, "{add}");
    let out = s.tmp_path("got-broken");
    s.get("broken@1", &format!("dir:{}", out.display()));
    same(&broken, &out.join("broken.zip"));

    // One file of a rebuilt wheel changed: the bundle for a site holding the old one is a few KB.
    let v1 = email_wheel(&s, "email-1.0-py3-none-any.whl", "");
    let v2 = email_wheel(&s, "email-1.1-py3-none-any.whl", "\n# patched\n");
    let a1 = s.add("email@1.0", &[&format!("file:{}", v1.display())]);
    s.add("email@1.1", &[&format!("file:{}", v2.display())]);
    assert_eq!(
        num(&a1, "zip_recreated_bytes"),
        fs::metadata(&v1).unwrap().len()
    );
    let key = s.tmp_path("seed.pub");
    fs::write(&key, s.run(["keys", "export"]).ok().stdout).unwrap();
    let full = s.tmp_path("full");
    s.json(["export", "email@1.0", "--out", full.to_str().unwrap()]);
    let update = s.tmp_path("update");
    let e = s.json([
        "export",
        "email@1.1",
        "--base",
        "email@1.0",
        "--out",
        update.to_str().unwrap(),
    ]);
    let wheel = fs::metadata(&v2).unwrap().len();
    // Measured 2026-12-02: 653 bytes for a 101 KB wheel (16 KB with --no-delta; the whole wheel before zips
    // were decomposed).
    assert!(
        num(&e, "total_bytes") * 20 < wheel,
        "{} bytes for a {wheel}-byte wheel: {e}",
        num(&e, "total_bytes")
    );
    let site = site(&key, &[&full, &update]);
    let out = site.tmp_path("site-got");
    site.get("email@1.1", &format!("dir:{}", out.display()));
    same(&v2, &out.join("email-1.1-py3-none-any.whl"));
    for store in [&s, &site] {
        let (code, report, _) = store.fsck_json();
        assert_eq!(code, Some(0), "fsck: {report}");
    }
}
