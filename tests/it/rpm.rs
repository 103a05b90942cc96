//! rpm packages stored as their lead and headers kept as they are plus their payload's raw cpio and the
//! encoder's parameters: a createrepo_c repository of rpms rpmbuild wrote from real files, with payloads as
//! Fedora and EL9 (zstd 19, single- and multi-threaded) and EL7 and EL8 (xz 2, threaded xz 7) build them, is
//! re-created all but its headers, and so is its gzip package (rpmbuild's default on Debian: zlib's deflate,
//! through the deflate predictors); a damaged payload is kept and counted; every package comes back byte for byte through `ferry get`, a bundle imported at a site, fsck, and dnf reading the
//! site's mirror.

use std::fs;

use ferry_tests::ferry::{num, Store};
use ferry_tests::fixtures::rpms;
use ferry_tests::node::Node;

use crate::deb::{files_named, same, size};
use crate::delta::site;
use crate::pkgs::dnf_download;

/// An rpm's lead and headers, at most, for the packages of the fixture (a few KB of signature, tens of KB of
/// file lists and digests).
const HEADERS: u64 = 64 << 10;

#[test]
fn rpm_payloads_are_recreated_and_cross_to_a_site_whose_mirror_dnf_reads() {
    let fx = rpms();
    let s = Store::new();
    let add = s.add("el@1", &[&format!("yum:{}", fx.yum.display())]);
    let rpms = files_named(&fx.yum.join("Packages"), ".rpm");
    assert_eq!(rpms.len(), 5, "{rpms:?}");
    let all: u64 = rpms.iter().map(|p| size(p)).sum();
    let (re, kept) = (
        num(&add, "rpm_recreated_bytes"),
        num(&add, "rpm_kept_bytes"),
    );
    // Every payload re-created (zstd, xz and gzip); only the lead and headers kept.
    assert_eq!(re + kept, all, "{add}");
    assert!(kept < HEADERS * rpms.len() as u64, "{add}");
    assert!(num(&add, "recreated_bytes") >= re, "{add}");
    let out = s.tmp_path("got");
    s.get("el@1", &format!("dir:{}", out.display()));
    for f in &rpms {
        same(f, &out.join("yum/Packages").join(f.file_name().unwrap()));
    }

    // Across a bundle to a site, which re-creates them and serves them to dnf.
    let key = s.tmp_path("seed.pub");
    fs::write(&key, s.run(["keys", "export"]).ok().stdout).unwrap();
    let bundle = s.tmp_path("bundle");
    s.json(["export", "el@1", "--out", bundle.to_str().unwrap()]);
    let site = site(&key, &[&bundle]);
    let got = site.tmp_path("site-got");
    site.get("el@1", &format!("dir:{}", got.display()));
    for f in &rpms {
        same(f, &got.join("yum/Packages").join(f.file_name().unwrap()));
    }
    let node = Node::start(&site.path);
    let names = ["zstd19", "zstd19t", "xz2", "xz7t", "gzip"];
    let (run, dl) = dnf_download(
        &node,
        "/repos/el/current/yum",
        &names,
        &site.tmp_path("dnf"),
        &fx.key,
    );
    assert_eq!(run.code, Some(0), "{run}");
    for f in &rpms {
        same(f, &dl.join(f.file_name().unwrap()));
    }
    assert_eq!(node.stop(), Some(0));
    for store in [&s, &site] {
        let (code, report, _) = store.fsck_json();
        assert_eq!(code, Some(0), "fsck: {report}");
    }

    // A package whose payload is damaged (its xz stream's SHA-256 check fails, its gzip member's CRC-32) cannot
    // be re-created: kept, counted, exact.
    for name in ["xz2", "gzip"] {
        let path = fx.yum.join(format!("Packages/{name}-1.0-1.x86_64.rpm"));
        let mut bytes = fs::read(path).unwrap();
        let at = bytes.len() - 2000;
        bytes[at] ^= 0x10;
        let broken = s.tmp_path(&format!("broken-{name}.rpm"));
        fs::write(&broken, &bytes).unwrap();
        let release = format!("broken-{name}@1");
        let add = s.add(&release, &[&format!("file:{}", broken.display())]);
        assert_eq!(num(&add, "rpm_kept_bytes"), bytes.len() as u64, "{add}");
        assert_eq!(num(&add, "rpm_recreated_bytes"), 0, "{add}");
        let out = s.tmp_path(&format!("got-broken-{name}"));
        s.get(&release, &format!("dir:{}", out.display()));
        same(&broken, &out.join(broken.file_name().unwrap()));
    }
}
