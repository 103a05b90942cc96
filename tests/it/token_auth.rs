//! `docker://` pulls through the Docker token flow: a real `docker-registry` configured with `auth: token:`,
//! and a token service run by the test that checks HTTP Basic credentials and signs RS256 JWTs with `openssl`.

use std::time::Instant;

use ferry_tests::cmd::Output;
use ferry_tests::ferry::{images as image_entries, Store};
use ferry_tests::fixtures::images;
use ferry_tests::fsutil::verify_blobs;
use ferry_tests::registry::Registry;
use ferry_tests::token::{Caller, TokenService};

use crate::oci::single_entry;

const USER: &str = "tokenuser";
const PASSWORD: &str = "t0ken-s3cret";
const SERVICE: &str = "ferry-test";
const ISSUER: &str = "ferry-test-issuer";
const REPO: &str = "team/tokenapp";

/// Requests to the token service that came from ferry (its User-Agent is `ferry/VERSION`).
fn ferry_requests(tokens: &TokenService) -> Vec<ferry_tests::token::TokenRequest> {
    tokens
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("ferry/"))
        .collect()
}

/// Asserts `out` failed with exit 1 and a single stderr line `error: …` about authentication.
#[track_caller]
fn assert_auth_error(out: &Output, reg: &Registry, tokens: &TokenService) {
    let context = || {
        format!(
            "{out}\ntoken service saw: {:#?}\nregistry log:\n{}",
            tokens.requests(),
            reg.log()
        )
    };
    assert_eq!(out.code, Some(1), "expected exit 1:\n{}", context());
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr:\n{}",
        context()
    );
    assert!(lines[0].starts_with("error: "), "{}", context());
    assert!(
        lines[0].to_lowercase().contains("authentication"),
        "the error should say authentication failed: {}\n{}",
        lines[0],
        context()
    );
}

#[test]
fn registry_token_auth() {
    let started = Instant::now();
    let imgs = images();
    let tokens = TokenService::start(USER, PASSWORD, SERVICE, ISSUER);
    let reg = tokens.registry();
    let repo_tag = format!("{REPO}:v1");
    let url = reg.url(&repo_tag);

    // skopeo pushes through the same token flow: the token service must have granted it push.
    reg.push(&imgs.layout, "v1", &repo_tag, false);
    let pushes: Vec<_> = tokens
        .requests()
        .into_iter()
        .filter(|r| r.caller == Caller::Good && r.status == 200)
        .filter(|r| {
            r.scopes
                .iter()
                .any(|s| s.starts_with(&format!("repository:{REPO}:")) && s.contains("push"))
        })
        .collect();
    assert!(
        !pushes.is_empty(),
        "skopeo pushed without asking the token service for push access: {:#?}",
        tokens.requests()
    );
    let digest = reg.digest(&repo_tag);
    assert_eq!(
        digest, imgs.v1.digest,
        "skopeo kept the OCI manifest as it was"
    );

    let s = Store::new();

    // (1) The right credentials: ferry fetches a token with them and pulls the image.
    let before = ferry_requests(&tokens).len();
    let add = s.run([
        "add",
        "app@1",
        &url,
        "--insecure-registry",
        &reg.host,
        "--creds",
        &tokens.creds,
        "--json",
    ]);
    assert_eq!(
        add.code,
        Some(0),
        "add with the right credentials failed:\n{add}\ntoken service saw: {:#?}\nregistry log:\n{}",
        tokens.requests(),
        reg.log()
    );
    let ferry_reqs = ferry_requests(&tokens);
    let good: Vec<_> = ferry_reqs[before..]
        .iter()
        .filter(|r| r.caller == Caller::Good && r.status == 200)
        .collect();
    assert!(
        !good.is_empty(),
        "ferry never got a token from the token service with the right Basic credentials: {ferry_reqs:#?}"
    );
    for r in &good {
        assert_eq!(
            r.service.as_deref(),
            Some(SERVICE),
            "ferry's token request: {r:?}"
        );
        assert!(
            r.scopes
                .iter()
                .any(|sc| sc == &format!("repository:{REPO}:pull")),
            "ferry's token request should ask for the challenge's scope: {r:?}"
        );
    }
    let show = s.show("app@1");
    assert_eq!(image_entries(&show)[0]["digest"], digest.as_str(), "{show}");
    let out = s.tmp_path("out");
    s.get("app@1", &format!("oci:{}", out.display()));
    let entry = single_entry(&out);
    assert_eq!(
        entry.digest, digest,
        "manifest digest differs from the registry's"
    );
    verify_blobs(&out);

    // (2) Wrong credentials: the token service refuses them, ferry says so.
    let before = ferry_requests(&tokens).len();
    let wrong = s.run([
        "add",
        "app@2",
        &url,
        "--insecure-registry",
        &reg.host,
        "--creds",
        &format!("{USER}:not-the-password"),
    ]);
    assert_auth_error(&wrong, &reg, &tokens);
    let after = ferry_requests(&tokens);
    assert!(
        after[before..]
            .iter()
            .any(|r| matches!(r.caller, Caller::Wrong(_)) && r.status == 401),
        "ferry should have sent the wrong credentials to the token service: {after:#?}"
    );
    assert!(!s.lists("app", "2"), "a failed add left a release");

    // (3) No credentials at all.
    let none = s.run(["add", "app@3", &url, "--insecure-registry", &reg.host]);
    assert_auth_error(&none, &reg, &tokens);
    assert!(!s.lists("app", "3"), "a failed add left a release");

    // (4) A garbage --registry-token: the registry refuses it.
    let garbage = s.run([
        "add",
        "app@4",
        &url,
        "--insecure-registry",
        &reg.host,
        "--registry-token",
        "not.a.token",
    ]);
    assert_auth_error(&garbage, &reg, &tokens);
    assert!(!s.lists("app", "4"), "a failed add left a release");

    // A token the service minted, given with --registry-token, is sent as is and works: the failure above was
    // the token's, not the flag's.
    let before = tokens.requests().len();
    let token = tokens.mint(REPO, &["pull"]);
    let given = s.run([
        "add",
        "app@5",
        &url,
        "--insecure-registry",
        &reg.host,
        "--registry-token",
        &token,
    ]);
    assert_eq!(
        given.code,
        Some(0),
        "add with a valid --registry-token failed:\n{given}\nregistry log:\n{}",
        reg.log()
    );
    assert_eq!(
        tokens.requests().len(),
        before,
        "ferry asked for a token although it was given one"
    );
    assert_eq!(
        image_entries(&s.show("app@5"))[0]["digest"],
        digest.as_str()
    );

    eprintln!(
        "token auth: {} token requests, {:.1?} in all\n  wrong creds: {}\n  no creds: {}\n  bad token: {}",
        tokens.requests().len(),
        started.elapsed(),
        wrong.stderr.trim(),
        none.stderr.trim(),
        garbage.stderr.trim()
    );
}
