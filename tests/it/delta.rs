//! Delta transport: a changed package crosses as the difference against the version the site holds — in a
//! bundle, and by network sync — and comes back byte for byte; a site that lacks the base is refused naming it
//! (bundles) or gets the chunks whole (sync).
//!
//! The version pair is real: `six` 1.16.0's sdist as PyPI serves it (`tools/fixtures/pkgs.sh`), and the same
//! sdist rebuilt as 1.16.1 with one line of `six.py` changed and the version bumped, packed by GNU tar and gzip —
//! what a maintainer's patch release looks like.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ferry_tests::cmd;
use ferry_tests::ferry::{num, Store};
use ferry_tests::fixtures::{cache_dir, pkgs};

/// The pair: (six-1.16.0.tar.gz as published, six-1.16.1.tar.gz rebuilt with one line changed).
pub fn six_pair() -> &'static (PathBuf, PathBuf) {
    static PAIR: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let old = pkgs().pypi.join("six-1.16.0.tar.gz");
        let dir = cache_dir().join("delta-six");
        let new = dir.join("six-1.16.1.tar.gz");
        if new.exists() {
            return (old, new);
        }
        let work = dir.join("work");
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).unwrap();
        cmd::run_ok(
            "tar",
            [
                "-xzf",
                old.to_str().unwrap(),
                "-C",
                work.to_str().unwrap(),
            ],
        );
        let src = work.join("six-1.16.0");
        let dst = work.join("six-1.16.1");
        fs::rename(&src, &dst).unwrap();
        for f in ["six.py", "PKG-INFO", "six.egg-info/PKG-INFO"] {
            let p = dst.join(f);
            let text = fs::read_to_string(&p).unwrap();
            let mut text = text.replace("1.16.0", "1.16.1");
            if f == "six.py" {
                // The one-line fix.
                text = text.replacen(
                    "MAXSIZE = sys.maxsize",
                    "MAXSIZE = sys.maxsize  # patched in 1.16.1",
                    1,
                );
            }
            fs::write(&p, text).unwrap();
        }
        let tmp = dir.join("six-1.16.1.tar.gz.tmp");
        let out = cmd::run(Command::new("sh").arg("-c").arg(format!(
            "tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -C {} -cf - six-1.16.1 \
             | gzip -9n > {}",
            work.display(),
            tmp.display()
        )));
        assert_eq!(out.code, Some(0), "{out}");
        fs::rename(&tmp, &new).unwrap();
        (old, new)
    })
}

/// A seed holding six@1.16.0 and six@1.16.1, and its public key in a file.
pub fn seed() -> (Store, PathBuf) {
    let (old, new) = six_pair();
    let s = Store::new();
    s.add("six@1.16.0", &[&format!("file:{}", old.display())]);
    s.add("six@1.16.1", &[&format!("file:{}", new.display())]);
    let key = s.tmp_path("seed.pub");
    fs::write(&key, s.run(["keys", "export"]).ok().stdout).unwrap();
    (s, key)
}

/// A store that trusts `key`, holding what `bundles` carry.
pub fn site(key: &Path, bundles: &[&Path]) -> Store {
    let s = Store::new();
    s.run(["trust", "add", key.to_str().unwrap()]).ok();
    for b in bundles {
        s.json(["import", b.to_str().unwrap()]);
    }
    s
}

fn export(s: &Store, name: &str, args: &[&str]) -> (PathBuf, serde_json::Value) {
    let out = s.tmp_path(name);
    let mut v = vec!["export"];
    v.extend_from_slice(args);
    v.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let json = s.json(v);
    (out, json)
}

#[test]
fn a_one_line_change_crosses_as_a_delta_and_rebuilds_exact_bytes() {
    let (old, new) = six_pair();
    let (seed, key) = seed();
    let (full, _) = export(&seed, "full", &["six@1.16.0"]);
    let (delta, e) = export(&seed, "delta", &["six@1.16.1", "--base", "six@1.16.0"]);
    let (_, whole) = export(
        &seed,
        "whole",
        &["six@1.16.1", "--base", "six@1.16.0", "--no-delta"],
    );
    assert!(num(&e, "delta_chunks") > 0, "{e}");
    assert!(num(&e, "delta_saved_bytes") > 0, "{e}");
    assert_eq!(num(&whole, "delta_chunks"), 0, "{whole}");
    // A one-line change is a few KB, index included, and far below the chunks sent whole.
    assert!(num(&e, "total_bytes") < 4096, "{e}");
    assert!(
        num(&e, "total_bytes") * 3 < num(&whole, "total_bytes"),
        "{e} vs {whole}"
    );

    // Inspect shows the deltas and the base the receiver must hold.
    let inspect = seed.json(["bundle", "inspect", delta.to_str().unwrap()]);
    assert_eq!(
        num(&inspect, "delta_chunks"),
        num(&e, "delta_chunks"),
        "{inspect}"
    );
    let base = inspect["bases"][0]["blob"].as_str().unwrap().to_string();

    // A site holding 1.16.0 imports it and serves 1.16.1 byte for byte.
    let site = site(&key, &[&full]);
    let i = site.json(["import", delta.to_str().unwrap()]);
    assert_eq!(i["imported"][0], "six@1.16.1", "{i}");
    let out = site.tmp_path("got");
    site.get("six@1.16.1", &format!("dir:{}", out.display()));
    assert_eq!(
        fs::read(out.join("six-1.16.1.tar.gz")).unwrap(),
        fs::read(new).unwrap()
    );
    let (code, f, o) = site.fsck_json();
    assert_eq!((code, &f["ok"]), (Some(0), &serde_json::json!(true)), "{o}");

    // A site without 1.16.0 is refused, the base named, and nothing is stored or visible; once it holds the
    // base, the same bundle imports.
    let bare = self::site(&key, &[]);
    let refused = bare.run(["import", delta.to_str().unwrap()]).expect_code(1);
    assert!(
        refused.error_line().contains(&base) && refused.error_line().contains("does not hold"),
        "{refused}"
    );
    assert!(bare.ls().is_empty(), "{refused}");
    let (c, f, o) = bare.fsck_json();
    assert_eq!((c, num(&f, "chunks")), (Some(0), 0), "{o}");
    bare.json(["import", full.to_str().unwrap()]);
    let i = bare.json(["import", delta.to_str().unwrap()]);
    assert_eq!(i["imported"][0], "six@1.16.1", "{i}");
    let out = bare.tmp_path("got");
    bare.get("six@1.16.1", &format!("dir:{}", out.display()));
    assert_eq!(
        fs::read(out.join("six-1.16.1.tar.gz")).unwrap(),
        fs::read(new).unwrap()
    );
    assert_ne!(fs::read(old).unwrap(), fs::read(new).unwrap());
}
