//! What pushers can make a node hold with uploads is bounded (issue 20): the spool all unfinished uploads share
//! is capped (413 naming the limit, which skopeo shows; the upload kept and finished later), a free-space
//! reserve is kept (507 naming the spool and its free bytes), idle uploads give way to new pushers instead of
//! locking them out until the upload timeout (skopeo pushes past them), and a chunk whose body stalls holds up
//! neither the upload's status, nor its cancel, nor the client's retry, and is given up on within the upload
//! timeout.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_tests::ferry::Store;
use ferry_tests::fixtures::{images, random_file};
use reqwest::{Method, StatusCode};

use crate::hardening::closed_within;
use crate::oci::oci;
use crate::push::{
    ci_creds, code, digest_of, header, pull_back, push_node, skopeo_push, Api, TOKEN,
};
use crate::repos::raw;

const MIB: usize = 1 << 20;

/// `STORE/node.toml` with these `[uploads]` settings.
fn uploads_config(s: &Store, settings: &str) {
    std::fs::write(s.path.join("node.toml"), format!("[uploads]\n{settings}")).unwrap();
}

/// `errors[0].message` of a registry error body.
fn message(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    v["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The spool file of the upload at `loc`.
fn spool_file(s: &Store, loc: &str) -> PathBuf {
    s.path.join("uploads").join(loc.rsplit('/').next().unwrap())
}

/// A `PATCH` of the upload at `loc` declaring `len` bytes from `start`, of which only `sent` are sent; the
/// connection is left open, the body stalled.
fn stalled_patch(addr: &str, loc: &str, start: usize, len: usize, sent: &[u8]) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "PATCH {loc} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Range: {start}-{}\r\nContent-Length: {len}\r\n\r\n",
        start + len - 1
    )
    .unwrap();
    c.write_all(sent).unwrap();
    c
}

/// `GET` of the upload at `loc`, answered within a second or two (it never waits for a chunk in flight).
fn status_at_once(api: &Api, loc: &str) -> reqwest::blocking::Response {
    let t = Instant::now();
    let r = api.req(Method::GET, loc).send().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "status took {:?}",
        t.elapsed()
    );
    r
}

#[test]
fn the_spool_is_capped_and_the_store_keeps_free_space() {
    let s = Store::new();
    uploads_config(&s, "max_spool_bytes = 3145728\nmin_free_bytes = 0\n");
    let node = push_node(&s, &[]);
    let api = Api::new(&node);
    let data = {
        let f = s.tmp_path("blob");
        random_file(&f, 3 << 20);
        std::fs::read(&f).unwrap()
    };

    // One upload holds 2 MiB of the 3 MiB spool; another declaring 2 MiB more is refused before its body is
    // read, naming the limit, and stays where it stood.
    let a = api.start("t/a");
    assert_eq!(
        api.patch(&a, &data[..2 * MIB], 0).status(),
        StatusCode::ACCEPTED
    );
    let b = api.start("t/b");
    let auth = format!("Bearer {TOKEN}");
    let r = raw(
        &node.addr,
        "PATCH",
        &b,
        &[
            ("Authorization", &auth),
            ("Content-Range", &format!("0-{}", 2 * MIB - 1)),
            ("Content-Length", &(2 * MIB).to_string()),
        ],
    );
    let m = message(&r.body);
    assert_eq!(r.status, 413, "{m}");
    assert!(
        m.contains("uploads.max_spool_bytes") && m.contains("3145728"),
        "{m}"
    );
    assert_eq!(r.headers["range"], "0-0");
    let st = status_at_once(&api, &b);
    assert_eq!(st.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&st, "range"), "0-0");

    // What fits is taken; once the first upload is cancelled, the rest fits too and the blob is stored.
    assert_eq!(
        api.patch(&b, &data[..MIB], 0).status(),
        StatusCode::ACCEPTED
    );
    let r = api.req(Method::DELETE, &a).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(!spool_file(&s, &a).exists());
    assert_eq!(
        api.patch(&b, &data[MIB..], MIB).status(),
        StatusCode::ACCEPTED
    );
    let r = api
        .req(Method::PUT, &format!("{b}?digest={}", digest_of(&data)))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        std::fs::read_dir(s.path.join("uploads")).unwrap().count(),
        0,
        "spool files left"
    );
    // A real client is told why: skopeo declares a layer's length, and shows the refusal, which names the limit.
    let out = skopeo_push(
        &node,
        &oci(&images().layout, "v1"),
        "t/app:1",
        Some(&ci_creds()),
        &[],
    );
    assert_ne!(
        out.code,
        Some(0),
        "a layer past the spool cap was pushed:\n{out}"
    );
    // The node reads and drops the refused body before it answers, so skopeo, still writing, reads the answer
    // (was: at times a broken pipe).
    assert!(out.stderr.contains("uploads.max_spool_bytes"), "{out}");
    assert_eq!(node.stop(), Some(0));

    // A free-space reserve the filesystem cannot keep: uploads are refused with 507, naming the spool directory
    // and its free bytes.
    uploads_config(&s, "min_free_bytes = 9223372036854775807\n");
    let node = push_node(&s, &[]);
    let api = Api::new(&node);
    let spool = s.path.join("uploads").display().to_string();
    for path in [
        "/v2/t/c/blobs/uploads/".to_string(),
        format!("/v2/t/c/blobs/uploads/?digest={}", digest_of(&data[..1000])),
    ] {
        let r = api
            .req(Method::POST, &path)
            .body(data[..1000].to_vec())
            .send()
            .unwrap();
        let status = r.status();
        let m = message(&r.bytes().unwrap());
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{path}: {m}");
        assert!(
            m.contains(&spool) && m.contains("bytes free") && m.contains("uploads.min_free_bytes"),
            "{m}"
        );
    }
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn idle_uploads_give_way_to_new_pushers() {
    let imgs = images();
    let s = Store::new();
    uploads_config(&s, "max_sessions = 3\nevict_after_secs = 2\n");
    let node = push_node(&s, &[]);
    let api = Api::new(&node);
    let a = api.start("t/idle");
    assert_eq!(
        api.patch(&a, b"abandoned", 0).status(),
        StatusCode::ACCEPTED
    );
    let b = api.start("t/idle");
    assert_eq!(api.patch(&b, b"in use", 0).status(), StatusCode::ACCEPTED);
    let c = api.start("t/idle");

    // Every upload open and none idle for 2 s: refused, saying when to retry.
    let r = api
        .req(Method::POST, "/v2/t/new/blobs/uploads/")
        .send()
        .unwrap();
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert_eq!(
        code(r),
        (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS".into())
    );
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");

    // Once they have been idle that long, a new upload evicts the one idle longest, whose client then learns
    // that its upload is gone.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(status_at_once(&api, &b).status(), StatusCode::NO_CONTENT);
    api.start("t/new");
    assert_eq!(
        code(api.req(Method::GET, &a).send().unwrap()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );
    assert!(
        !spool_file(&s, &a).exists(),
        "the evicted upload's file is left"
    );
    for loc in [&b, &c] {
        assert_eq!(status_at_once(&api, loc).status(), StatusCode::NO_CONTENT);
    }

    // A real client, with every upload slot held by idle uploads, pushes past them.
    std::thread::sleep(Duration::from_millis(2500));
    skopeo_push(
        &node,
        &oci(&imgs.layout, "v1"),
        "t/app:1",
        Some(&ci_creds()),
        &[],
    )
    .ok();
    assert_eq!(
        pull_back(&node, "t/app:1", &s.tmp_path("back")),
        imgs.v1.digest
    );
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn a_stalled_chunk_holds_up_neither_status_nor_cancel_nor_a_retry() {
    let s = Store::new();
    let node = push_node(&s, &["--upload-timeout", "4"]);
    let api = Api::new(&node);
    let data: Vec<u8> = (0..6000u32).map(|i| (i * 7 % 251) as u8).collect();
    // An upload holding 1,000 bytes, and a chunk of 5,000 more whose body stalls after 2,000.
    let stalled = || {
        let loc = api.start("t/stall");
        assert_eq!(
            api.patch(&loc, &data[..1000], 0).status(),
            StatusCode::ACCEPTED
        );
        let c = stalled_patch(&node.addr, &loc, 1000, 5000, &data[1000..3000]);
        std::thread::sleep(Duration::from_millis(300));
        (loc, c)
    };

    // Status answers at once, with what is committed; cancel takes effect at once, ending the stalled request
    // and removing the spool file.
    let (loc, mut c) = stalled();
    let r = status_at_once(&api, &loc);
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-999");
    let t = Instant::now();
    let r = api.req(Method::DELETE, &loc).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "cancel took {:?}",
        t.elapsed()
    );
    let answer =
        closed_within(&mut c, Duration::from_secs(5)).expect("the stalled request went on");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 404"),
        "{answer}"
    );
    assert!(!spool_file(&s, &loc).exists());
    assert_eq!(
        code(api.req(Method::GET, &loc).send().unwrap()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );

    // A client that gave up on its stalled request resumes at once: its retry takes over.
    let (loc, mut c) = stalled();
    let t = Instant::now();
    assert_eq!(
        api.patch(&loc, &data[1000..], 1000).status(),
        StatusCode::ACCEPTED
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the retry took {:?}",
        t.elapsed()
    );
    closed_within(&mut c, Duration::from_secs(5)).expect("the stalled request went on");
    let r = api
        .req(Method::PUT, &format!("{loc}?digest={}", digest_of(&data)))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // A body left stalled is given up on after the upload timeout (4 s here), not a minute, and cut back.
    let t = Instant::now();
    let (loc, mut c) = stalled();
    let answer =
        closed_within(&mut c, Duration::from_secs(30)).expect("the stalled request went on");
    let waited = t.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("sent nothing for 4 s"),
        "{answer}"
    );
    assert!(
        (Duration::from_secs(3)..Duration::from_secs(15)).contains(&waited),
        "given up on after {waited:?}"
    );
    let r = status_at_once(&api, &loc);
    assert_eq!(header(&r, "range"), "0-999");
    assert_eq!(
        std::fs::metadata(spool_file(&s, &loc)).unwrap().len(),
        1000,
        "the stalled chunk was not cut back"
    );
    assert_eq!(node.stop(), Some(0));
}
