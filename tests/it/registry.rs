//! `docker://` sources pulled from a real registry (`docker-registry`) on loopback, and registry errors.

use std::time::Duration;

use ferry_tests::cmd::run_ok;
use ferry_tests::ferry::{images as image_entries, num, Store};
use ferry_tests::fixtures::{images, multi_arch_layout, MultiArch};
use ferry_tests::fsutil::{sha256_hex, verify_blobs};
use ferry_tests::registry::{free_port, Registry};

use crate::oci::{check_multi_arch_output, image_blobs, oci, single_entry};

#[test]
fn registry_pull_round_trip() {
    let imgs = images();
    let reg = Registry::start();
    reg.push(&imgs.layout, "v1", "team/app:v1", false);
    let digest = reg.digest("team/app:v1");
    assert_eq!(
        digest, imgs.v1.digest,
        "skopeo kept the OCI manifest as it was"
    );
    let s = Store::new();
    let url = reg.url("team/app:v1");

    // A plain-HTTP registry not named with --insecure-registry is spoken to over HTTPS, which fails.
    let https = s.run(["add", "app@0", &url]).expect_code(1);
    assert!(
        https.error_line().contains(&reg.host),
        "error should name the host {}:\n{https}",
        reg.host
    );
    assert!(!s.lists("app", "0"), "a failed add left a release");

    let add = s.json(["add", "app@1", &url, "--insecure-registry", &reg.host]);
    assert_eq!(num(&add, "entries"), 1, "{add}");
    let show = s.show("app@1");
    let images = image_entries(&show);
    assert_eq!(images.len(), 1, "{show}");
    assert_eq!(images[0]["registry"], reg.host.as_str(), "{show}");
    assert_eq!(images[0]["repository"], "team/app", "{show}");
    assert_eq!(images[0]["tag"], "v1", "{show}");
    assert_eq!(images[0]["digest"], digest.as_str(), "{show}");

    let out = s.tmp_path("out");
    s.get("app@1", &format!("oci:{}", out.display()));
    let entry = single_entry(&out);
    assert_eq!(
        entry.digest, digest,
        "manifest digest differs from the registry's"
    );
    let name = entry.ref_name.expect("ref name");
    let raw = run_ok("skopeo", ["inspect", "--raw", &oci(&out, &name)]).stdout_bytes;
    assert_eq!(
        raw,
        reg.raw_manifest("team/app:v1"),
        "manifest bytes differ from the registry's"
    );
    verify_blobs(&out);
    run_ok(
        "skopeo",
        [
            "copy",
            "--quiet",
            &oci(&out, &name),
            &oci(&s.tmp_path("other"), "v1"),
        ],
    );

    // By digest: the same blobs, so nothing new to store.
    let by_digest = reg.url(&format!("team/app@{digest}"));
    let again = s.json(["add", "app@2", &by_digest, "--insecure-registry", &reg.host]);
    assert_eq!(
        num(&again, "chunks_new"),
        0,
        "pulling the same image again stored new chunks: {again}"
    );
    assert_eq!(
        num(&again, "chunks"),
        num(&add, "chunks"),
        "{add} vs {again}"
    );
    assert_eq!(
        image_entries(&s.show("app@2"))[0]["digest"],
        digest.as_str()
    );
}

#[test]
fn registry_multi_platform_index() {
    let reg = Registry::start();
    let s = Store::new();
    let multi = multi_arch_layout(&s.tmp_path("multi"));
    reg.push(&multi.layout, multi.tag, "multi:1", true);
    let served = reg.raw_manifest("multi:1");
    assert_eq!(
        served, multi.index_raw,
        "skopeo --all should push the index unchanged"
    );
    let registry_multi = MultiArch {
        layout: multi.layout.clone(),
        tag: multi.tag,
        index_digest: format!("sha256:{}", sha256_hex(&served)),
        index_raw: served,
    };

    let url = reg.url("multi:1");
    s.json(["add", "multi@all", &url, "--insecure-registry", &reg.host]);
    s.json([
        "add",
        "multi@arm",
        &url,
        "--insecure-registry",
        &reg.host,
        "--platform",
        "linux/arm64",
    ]);

    let all_show = s.show("multi@all");
    let arm_show = s.show("multi@arm");
    assert_eq!(
        image_entries(&all_show)[0]["digest"],
        registry_multi.index_digest.as_str(),
        "{all_show}"
    );
    assert!(
        image_blobs(&all_show) >= image_blobs(&arm_show) + 2,
        "keeping both platforms must keep at least amd64's config and layer more than arm64 alone:\n{all_show}\n{arm_show}"
    );

    let out_all = s.tmp_path("out-all");
    s.get("multi@all", &format!("oci:{}", out_all.display()));
    check_multi_arch_output(&out_all, &registry_multi, false);
    let out_arm = s.tmp_path("out-arm");
    s.get("multi@arm", &format!("oci:{}", out_arm.display()));
    check_multi_arch_output(&out_arm, &registry_multi, true);
}

#[test]
fn registry_unknown_tag() {
    let imgs = images();
    let reg = Registry::start();
    reg.push(&imgs.layout, "v1", "app:v1", false);
    let s = Store::new();
    let out = s
        .run([
            "add",
            "app@1",
            &reg.url("app:nosuchtag"),
            "--insecure-registry",
            &reg.host,
        ])
        .expect_code(1);
    let err = out.error_line();
    assert!(
        err.contains("nosuchtag"),
        "error should name the missing tag: {err}\n{out}"
    );
    assert!(!s.lists("app", "1"), "a failed add left a release");
}

#[test]
fn registry_unreachable() {
    let port = free_port(); // nothing listens there
    let host = format!("127.0.0.1:{port}");
    let s = Store::new();
    let out = s
        .run([
            "add",
            "app@1",
            &format!("docker://{host}/app:v1"),
            "--insecure-registry",
            &host,
        ])
        .expect_code(1);
    let err = out.error_line();
    assert!(
        err.contains(&host),
        "error should name the host {host}: {err}\n{out}"
    );
    assert!(
        out.elapsed < Duration::from_secs(60),
        "giving up on a refused connection took {:?}",
        out.elapsed
    );
    assert!(!s.lists("app", "1"), "a failed add left a release");
}

/// docker-registry (distribution 2.8) serves htpasswd basic auth over plain HTTP, so no TLS is needed here.
/// Needs `htpasswd` (apt package apache2-utils).
#[test]
fn registry_wrong_credentials() {
    let imgs = images();
    let reg = Registry::start_with_auth("alice", "s3cret");
    reg.push(&imgs.layout, "v1", "app:v1", false);
    let s = Store::new();
    let url = reg.url("app:v1");
    let auth_error = |args: &[&str]| {
        let out = s.run(args).expect_code(1);
        let err = out.error_line().to_lowercase();
        assert!(
            err.contains("authenticat")
                || err.contains("unauthorized")
                || err.contains("credential"),
            "error should say authentication failed: {err}\n{out}\nregistry log:\n{}",
            reg.log()
        );
    };
    auth_error(&[
        "add",
        "app@1",
        &url,
        "--insecure-registry",
        &reg.host,
        "--creds",
        "alice:wrong",
    ]);
    auth_error(&["add", "app@1", &url, "--insecure-registry", &reg.host]);
    assert!(!s.lists("app", "1"), "a failed add left a release");

    // The right credentials work (the registry challenges with HTTP Basic).
    let creds = reg.creds.clone().expect("creds");
    s.json([
        "add",
        "app@1",
        &url,
        "--insecure-registry",
        &reg.host,
        "--creds",
        &creds,
    ]);
    let show = s.show("app@1");
    assert_eq!(
        image_entries(&show)[0]["digest"],
        imgs.v1.digest.as_str(),
        "{show}"
    );
}
