//! zstd frames written by libzstd stored as raw content plus the encoder's parameters: the fixture image with
//! its layers recompressed by the real `zstd` CLI comes back with its digests through `ferry get`, the registry
//! (skopeo) and a bundle, and so does the image as skopeo writes it for `--dest-compress-format zstd` and
//! `zstd:chunked` (Go's klauspost/compress, re-created by its model); `.tar.zst` files the CLI writes through a pipe and
//! single-threaded, and the `.deb`s `dpkg-deb -Zzstd` and `-Zgzip` write, come back byte for byte; frames
//! neither writes, and a package's damaged gzip member, are kept as they are, counted, and come back too.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_tests::cmd::run_ok;
use ferry_tests::ferry::{num, Store};
use ferry_tests::fixtures::images;
use ferry_tests::fsutil::{blob_path, index_entries, read_blob, sha256_file, verify_blobs};
use ferry_tests::node::Node;
use serde_json::Value;

use crate::delta::site;
use crate::oci::oci;

fn size(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

fn same(a: &Path, b: &Path) {
    assert_eq!(sha256_file(a), sha256_file(b), "{a:?} and {b:?} differ");
}

/// The fixture's v2 with every gzip layer decompressed and compressed again by `zstd ARGS FILE` (as a file:
/// its size in the frame), tagged `zstd`, in a layout at `dest`; the manifest's digest and the layers' bytes.
fn zstd_layout(s: &Store, dest: &Path, args: &[&str]) -> (String, u64) {
    let imgs = images();
    fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    fs::copy(imgs.layout.join("oci-layout"), dest.join("oci-layout")).unwrap();
    let mut manifest: Value = serde_json::from_slice(&imgs.v2.raw).unwrap();
    fs::copy(
        blob_path(&imgs.layout, &imgs.v2.config),
        blob_path(dest, &imgs.v2.config),
    )
    .unwrap();
    let mut bytes = 0;
    for layer in manifest["layers"].as_array_mut().unwrap() {
        let digest = layer["digest"].as_str().unwrap().to_string();
        let tar = s.tmp_path("layer.tar");
        let gz = blob_path(&imgs.layout, &digest);
        run_ok(
            "sh",
            [
                "-c",
                &format!("gzip -dc {} > {}", gz.display(), tar.display()),
            ],
        );
        let zst = s.tmp_path("layer.tar.zst");
        let mut a = vec!["-q", "-f"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[tar.to_str().unwrap(), "-o", zst.to_str().unwrap()]);
        run_ok("zstd", a);
        let digest = format!("sha256:{}", sha256_file(&zst));
        let n = size(&zst);
        bytes += n;
        fs::rename(&zst, blob_path(dest, &digest)).unwrap();
        layer["digest"] = digest.into();
        layer["size"] = n.into();
        layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd".into();
    }
    let raw = serde_json::to_vec(&manifest).unwrap();
    let m = dest.join("m.json");
    fs::write(&m, &raw).unwrap();
    let digest = format!("sha256:{}", sha256_file(&m));
    fs::rename(&m, blob_path(dest, &digest)).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest, "size": raw.len(),
        "annotations": {"org.opencontainers.image.ref.name": "zstd"},
    }]});
    fs::write(dest.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    (digest, bytes)
}

/// The layers' bytes of the image tagged `tag` in `layout`.
fn layers_bytes(layout: &Path, tag: &str) -> u64 {
    let entry = index_entries(layout)
        .into_iter()
        .find(|e| e.ref_name.as_deref() == Some(tag))
        .unwrap();
    let m: Value = serde_json::from_slice(&read_blob(layout, &entry.digest)).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum()
}

#[test]
fn zstd_and_zstd_chunked_layers_of_the_cli_and_of_skopeo_are_recreated() {
    let s = Store::new();
    let layout = s.tmp_path("zstd-layout");
    let (digest, bytes) = zstd_layout(&s, &layout, &["-19", "-T0"]);
    let add = s.add("img@z", &[&oci(&layout, "zstd")]);
    assert_eq!(num(&add, "zstd_recreated_bytes"), bytes, "{add}");
    assert_eq!(num(&add, "zstd_kept_bytes"), 0, "{add}");
    // What skopeo writes (Go's klauspost/compress): re-created by the model of that encoder.
    let kp = s.tmp_path("kp");
    run_ok(
        "skopeo",
        [
            "copy",
            "-q",
            "--dest-compress-format",
            "zstd",
            &format!("oci:{}:v2", images().layout.display()),
            &format!("oci:{}:kp", kp.display()),
        ],
    );
    let add = s.add("img@kp", &[&oci(&kp, "kp")]);
    assert_eq!(
        num(&add, "zstd_recreated_bytes"),
        layers_bytes(&kp, "kp"),
        "{add}"
    );
    assert_eq!(num(&add, "zstd_kept_bytes"), 0, "{add}");
    let kp_digest = index_entries(&kp)[0].digest.clone();
    // zstd:chunked (a frame for each file, at Go's best level, then the table of contents in skippable frames):
    // the frames re-created, the table of contents kept.
    let ch = s.tmp_path("chunked");
    run_ok(
        "skopeo",
        [
            "copy",
            "-q",
            "--dest-compress-format",
            "zstd:chunked",
            &format!("oci:{}:v2", images().layout.display()),
            &format!("oci:{}:ch", ch.display()),
        ],
    );
    let add = s.add("img@ch", &[&oci(&ch, "ch")]);
    let (recreated, kept) = (
        num(&add, "zstd_recreated_bytes"),
        num(&add, "zstd_kept_bytes"),
    );
    assert_eq!(recreated + kept, layers_bytes(&ch, "ch"), "{add}");
    assert!(
        kept > 0 && kept * 20 < recreated,
        "the table of contents only is kept: {add}"
    );
    let ch_digest = index_entries(&ch)[0].digest.clone();

    // Through the registry: skopeo checks every digest.
    let node = Node::start(&s.path);
    for (release, tag, want) in [
        ("img:zstd", "zstd", &digest),
        ("img:kp", "kp", &kp_digest),
        ("img:ch", "ch", &ch_digest),
    ] {
        let dest = s.tmp_path(&format!("pull-{tag}"));
        run_ok(
            "skopeo",
            [
                "copy",
                "-q",
                "--src-tls-verify=false",
                &format!("docker://{}/{release}", node.addr),
                &format!("oci:{}:{tag}", dest.display()),
            ],
        );
        assert_eq!(&index_entries(&dest)[0].digest, want);
        verify_blobs(&dest);
    }
    assert_eq!(node.stop(), Some(0));

    // A bundle carries raw chunks and parameters; the site re-creates the exact layers.
    let key = s.tmp_path("seed.pub");
    fs::write(&key, s.run(["keys", "export"]).ok().stdout).unwrap();
    let bundle = s.tmp_path("bundle");
    s.json([
        "export",
        "img@z",
        "img@kp",
        "img@ch",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    let site = site(&key, &[&bundle]);
    for (release, want) in [
        ("img@z", &digest),
        ("img@kp", &kp_digest),
        ("img@ch", &ch_digest),
    ] {
        let out = site.tmp_path(&format!("site-got-{release}"));
        site.get(release, &format!("oci:{}", out.display()));
        assert_eq!(&index_entries(&out)[0].digest, want);
        verify_blobs(&out);
    }
    for store in [&s, &site] {
        let (code, report, _) = store.fsck_json();
        assert_eq!(code, Some(0), "fsck: {report}");
    }
}

/// A tarball of `dir`, `name` in the store's scratch space.
fn tarball(s: &Store, dir: &Path, name: &str) -> PathBuf {
    let tar = s.tmp_path(name);
    run_ok(
        "tar",
        [
            "-cf",
            tar.to_str().unwrap(),
            "-C",
            dir.parent().unwrap().to_str().unwrap(),
            dir.file_name().unwrap().to_str().unwrap(),
        ],
    );
    tar
}

#[test]
fn zst_files_and_zstd_and_gzip_debs_come_back_and_other_frames_are_kept() {
    let s = Store::new();
    let tar = tarball(
        &s,
        Path::new("/usr/lib/x86_64-linux-gnu/perl-base"),
        "t.tar",
    );
    assert!(size(&tar) > 3 << 20, "{} bytes", size(&tar));
    let sh = |cmd: String| run_ok("sh", ["-c", cmd.as_str()]);
    let (t, o) = (tar.display(), |n: &str| s.tmp_path(n));
    // Through a pipe (no content size, multi-threaded), single-threaded (found on the second try: level 1's
    // jobs are 2 MiB), --long; then two frames one after another, and a frame of parameters no level uses: kept.
    let files = [
        (o("pipe.tar.zst"), "zstd -q -6 -T0 -c", true),
        (
            o("st.tar.zst"),
            "zstd -q -1 --single-thread -c --no-check",
            true,
        ),
        (o("long.tar.zst"), "zstd -q -2 --long -c", true),
        (o("two.zst"), "zstd -q -3 -c", false),
        (
            o("odd.zst"),
            "zstd -q --zstd=wlog=20,hlog=12,slog=3 -c",
            false,
        ),
    ];
    for (path, cmd, _) in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        let input = if name.starts_with("pipe") {
            format!("< {t}")
        } else {
            t.to_string()
        };
        sh(format!("{cmd} {input} > {}", path.display()));
        if name.starts_with("two") {
            sh(format!("printf more | zstd -q -c >> {}", path.display()));
        }
    }
    // A package as dpkg-deb writes it with -Zzstd (Ubuntu's packages are so).
    let tree = s.tmp_path("pkg");
    let deb_in = images().deb("bash");
    run_ok(
        "dpkg-deb",
        ["-R", deb_in.to_str().unwrap(), tree.to_str().unwrap()],
    );
    let build = |z: &str| {
        let deb = o(&format!("bash-{z}.deb"));
        run_ok(
            "dpkg-deb",
            [
                &format!("-Z{z}"),
                "--root-owner-group",
                "--build",
                tree.to_str().unwrap(),
                deb.to_str().unwrap(),
            ],
        );
        deb
    };
    // And with -Zgzip (older packages, and many built outside Debian): zlib's deflate, through the deflate
    // predictors. A copy whose data.tar.gz is damaged keeps that member and still re-creates its control.tar.gz.
    let (deb, gz_deb) = (build("zstd"), build("gzip"));
    let mut bytes = fs::read(&gz_deb).unwrap();
    let field = |at: usize| -> usize {
        let f = std::str::from_utf8(&bytes[at + 48..at + 58]).unwrap();
        f.trim().parse().unwrap()
    };
    // The ar's members: debian-binary (4 bytes), control.tar.gz, data.tar.gz, each after a 60-byte header.
    let control_at = 8 + 60 + 4 + 60;
    let control_len = field(control_at - 60);
    let data_at = control_at + control_len + control_len % 2 + 60;
    let data_len = field(data_at - 60);
    assert_eq!(data_at + data_len + data_len % 2, bytes.len());
    bytes[data_at + data_len / 2] ^= 0x40;
    let broken = o("broken-gzip.deb");
    fs::write(&broken, &bytes).unwrap();
    let mut sources: Vec<String> = files
        .iter()
        .map(|(p, ..)| format!("file:{}", p.display()))
        .collect();
    for d in [&deb, &gz_deb, &broken] {
        sources.push(format!("file:{}", d.display()));
    }
    let add = s.add(
        "zst@1",
        &sources.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (recreated, kept): (Vec<_>, Vec<_>) = files.iter().partition(|(.., r)| *r);
    let total = |v: &[&(PathBuf, &str, bool)]| v.iter().map(|(p, ..)| size(p)).sum::<u64>();
    assert_eq!(
        num(&add, "zstd_recreated_bytes"),
        total(&recreated),
        "{add}"
    );
    assert_eq!(num(&add, "zstd_kept_bytes"), total(&kept), "{add}");
    // The packages' members are re-created, their ar skeletons kept; the damaged member is kept.
    let (deb_re, deb_kept) = (
        num(&add, "deb_recreated_bytes"),
        num(&add, "deb_kept_bytes"),
    );
    assert_eq!(
        deb_re + deb_kept,
        size(&deb) + size(&gz_deb) + size(&broken)
    );
    assert!(deb_kept < 600 + data_len as u64, "{add}");
    assert!(
        deb_re + 400 > size(&deb) + size(&gz_deb) + control_len as u64,
        "{add}"
    );
    let out = s.tmp_path("got");
    s.get("zst@1", &format!("dir:{}", out.display()));
    for (p, ..) in &files {
        same(p, &out.join(p.file_name().unwrap()));
    }
    for d in [&deb, &gz_deb, &broken] {
        same(d, &out.join(d.file_name().unwrap()));
    }
    let (code, report, _) = s.fsck_json();
    assert_eq!(code, Some(0), "fsck: {report}");
}
