//! `ferry serve`, push side: skopeo pushes into the node with a token and pulls back the same digests; uploads,
//! mounts and manifests driven by hand over HTTP, with every kind of bad input answered by its spec error while
//! the node keeps serving; pushed images named into a signed release with `pushed:`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ferry_tests::cmd::{run, run_ok, Output};
use ferry_tests::ferry::{images as image_entries, num, Store};
use ferry_tests::fixtures::{images, multi_arch_layout, random_file};
use ferry_tests::fsutil::{dir_bytes, index_entries, sha256_hex, verify_blobs};
use ferry_tests::node::Node;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;

use crate::oci::oci;

pub(crate) const TOKEN: &str = "ci-push-token-7f3a";

/// A token file holding [`TOKEN`] (and a comment and another token, to show the format).
fn token_file(s: &Store) -> PathBuf {
    let f = s.tmp_path("push.tokens");
    std::fs::write(&f, format!("# CI pipelines\n\nsomeone-else\n  {TOKEN}  \n")).unwrap();
    f
}

/// A node on `s` that takes pushes with [`TOKEN`], plus `extra` arguments.
pub(crate) fn push_node(s: &Store, extra: &[&str]) -> Node {
    let f = token_file(s);
    let mut args = vec!["--push-token-file", f.to_str().unwrap()];
    args.extend_from_slice(extra);
    Node::start_with(&s.path, &args)
}

/// `skopeo copy` of `src` into `docker://NODE/dest`, with `creds` if given; not required to succeed.
pub(crate) fn skopeo_push(
    node: &Node,
    src: &str,
    dest: &str,
    creds: Option<&str>,
    extra: &[&str],
) -> Output {
    let mut args: Vec<String> = vec![
        "copy".into(),
        "--dest-tls-verify=false".into(),
        "--preserve-digests".into(),
    ];
    if let Some(c) = creds {
        args.push("--dest-creds".into());
        args.push(c.into());
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(src.into());
    args.push(format!("docker://{}/{dest}", node.addr));
    run(std::process::Command::new("skopeo").args(args))
}

pub(crate) fn ci_creds() -> String {
    format!("ci:{TOKEN}")
}

/// `skopeo copy --all docker://NODE/reference oci:DEST:TAG` (anonymous) and the one digest it wrote.
pub(crate) fn pull_back(node: &Node, reference: &str, dest: &Path) -> String {
    run_ok(
        "skopeo",
        [
            "copy",
            "--all",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{}/{reference}", node.addr),
            &format!("oci:{}:back", dest.display()),
        ],
    );
    assert!(!verify_blobs(dest).is_empty());
    let entries = index_entries(dest);
    assert_eq!(entries.len(), 1, "{reference}: {entries:?}");
    entries[0].digest.clone()
}

/// `skopeo inspect --raw` bytes.
fn raw_manifest(node: &Node, reference: &str) -> Vec<u8> {
    run_ok(
        "skopeo",
        [
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/{reference}", node.addr),
        ],
    )
    .stdout_bytes
}

/// Bytes in the store's packs: what a push that writes no chunk leaves unchanged.
fn pack_bytes(s: &Store) -> u64 {
    dir_bytes(&s.path.join("packs"))
}

#[test]
fn skopeo_pushes_into_the_node_and_pulls_back_the_same_digests() {
    let imgs = images();
    let s = Store::new();
    let multi = multi_arch_layout(&s.tmp_path("multi"));
    let node = push_node(&s, &[]);

    // Without credentials, or with a wrong token: refused, nothing stored.
    for creds in [None, Some("ci:not-the-token")] {
        let out = skopeo_push(&node, &oci(&imgs.layout, "v1"), "team/app:1", creds, &[]);
        assert_ne!(out.code, Some(0), "push with {creds:?} must fail:\n{out}");
        assert!(
            out.stderr.to_lowercase().contains("unauthorized"),
            "the refusal must say unauthorized:\n{out}"
        );
    }
    assert_eq!(pack_bytes(&s), 0, "a refused push stored something");

    // With the token: each image, and a two-platform index with --all.
    let creds = ci_creds();
    for (tag, dest) in [("v1", "team/app:1"), ("v2", "team/app:2")] {
        skopeo_push(&node, &oci(&imgs.layout, tag), dest, Some(&creds), &[]).ok();
    }
    skopeo_push(
        &node,
        &oci(&multi.layout, multi.tag),
        "team/app:multi",
        Some(&creds),
        &["--all"],
    )
    .ok();

    // Pulled back anonymously at once: the same digests and the same manifest bytes.
    for (reference, digest, raw) in [
        ("team/app:1", &imgs.v1.digest, &imgs.v1.raw),
        ("team/app:2", &imgs.v2.digest, &imgs.v2.raw),
        ("team/app:multi", &multi.index_digest, &multi.index_raw),
    ] {
        let back = pull_back(
            &node,
            reference,
            &s.tmp_path(&format!("back-{}", reference.replace(['/', ':'], "-"))),
        );
        assert_eq!(&back, digest, "{reference} came back with another digest");
        assert_eq!(
            &raw_manifest(&node, reference),
            raw,
            "{reference}: manifest bytes differ"
        );
    }
    let http = Client::new();
    let tags: serde_json::Value = http
        .get(node.url("/v2/team/app/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["1", "2", "multi"]));

    // Pushing the same image again writes no chunk.
    let before = pack_bytes(&s);
    assert!(before > 0);
    skopeo_push(
        &node,
        &oci(&imgs.layout, "v2"),
        "team/app:2",
        Some(&creds),
        &[],
    )
    .ok();
    assert_eq!(pack_bytes(&s), before, "a second push of v2 wrote chunks");

    // Into another repository: skopeo mounts the blobs it knows the node holds instead of uploading them.
    let out = skopeo_push(
        &node,
        &oci(&imgs.layout, "v2"),
        "team/other:2",
        Some(&creds),
        &["--debug"],
    )
    .ok();
    assert!(
        out.stderr.contains("mount="),
        "skopeo did not try a cross-repository mount:\n{out}"
    );
    // Every layer mounted (201; skopeo uploads configs, which are small, whatever the registry holds).
    assert_eq!(
        out.stderr.matches("mount OK").count(),
        imgs.v2.layers.len(),
        "skopeo's mounts did not all succeed:\n{out}"
    );
    assert_eq!(
        pack_bytes(&s),
        before,
        "a push to another repository wrote chunks"
    );
    assert_eq!(
        pull_back(&node, "team/other:2", &s.tmp_path("back-other")),
        imgs.v2.digest
    );
    let catalog: serde_json::Value = http
        .get(node.url("/v2/_catalog"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["team/app", "team/other"])
    );

    // podman logs in with the token and pushes too.
    let pm = ferry_tests::podman::Podman::new(s.tmp.path());
    let podman = |args: &[&str]| pm.run(args);
    let wrong = podman(&[
        "login",
        "--tls-verify=false",
        "-u",
        "ci",
        "-p",
        "nope",
        &node.addr,
    ]);
    assert_ne!(
        wrong.code,
        Some(0),
        "podman login with a wrong token:\n{wrong}"
    );
    assert!(
        wrong.stderr.contains("invalid username/password"),
        "{wrong}"
    );
    podman(&[
        "login",
        "--tls-verify=false",
        "-u",
        "ci",
        "-p",
        TOKEN,
        &node.addr,
    ])
    .ok();
    let src = format!("{}/team/app:1", node.addr);
    podman(&["pull", "-q", "--tls-verify=false", &src]).ok();
    let dest = format!("{}/team/podman:1", node.addr);
    podman(&[
        "push",
        "--tls-verify=false",
        &src,
        &format!("docker://{dest}"),
    ])
    .ok();
    let r = http
        .head(node.url("/v2/team/podman/manifests/1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "podman's push is not served");

    assert_eq!(node.stop(), Some(0));
}

/// The spec error code of a response (its status, and `errors[0].code`).
pub(crate) fn code(r: Response) -> (StatusCode, String) {
    let status = r.status();
    let body: serde_json::Value = r.json().unwrap_or_default();
    (
        status,
        body["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

pub(crate) fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", r.headers()))
        .to_str()
        .unwrap()
        .to_string()
}

/// `sha256:<hex>` of bytes.
pub(crate) fn digest_of(b: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(b))
}

/// Sends `head` (a request line and headers, without the blank line) then `body`, and returns the status line
/// of the answer. The connection is half-closed only by the server.
fn raw(addr: &str, head: &str, body: &[u8]) -> String {
    raw_then(addr, head, body, false)
}

/// [`raw`], closing the sending side after `body` when `cut` (a body that breaks off).
fn raw_then(addr: &str, head: &str, body: &[u8], cut: bool) -> String {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(c, "{head}\r\nHost: {addr}\r\n\r\n").unwrap();
    let _ = c.write_all(body);
    if cut {
        let _ = c.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

pub(crate) struct Api<'a> {
    node: &'a Node,
    http: Client,
}

impl Api<'_> {
    /// Requests to `node`, with [`TOKEN`].
    pub(crate) fn new(node: &Node) -> Api<'_> {
        Api {
            node,
            http: Client::new(),
        }
    }

    pub(crate) fn req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.node.url(path))
            .basic_auth("ci", Some(TOKEN))
    }

    /// `POST /v2/<repo>/blobs/uploads/`: the session's Location.
    pub(crate) fn start(&self, repo: &str) -> String {
        let r = self
            .req(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&r, "range"), "0-0");
        let loc = header(&r, "location");
        assert!(loc.ends_with(&header(&r, "docker-upload-uuid")), "{loc}");
        loc
    }

    pub(crate) fn patch(&self, loc: &str, data: &[u8], start: usize) -> Response {
        self.req(reqwest::Method::PATCH, loc)
            .header(
                "Content-Range",
                format!("{start}-{}", start + data.len() - 1),
            )
            .header("Content-Type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .unwrap()
    }

    /// A blob pushed monolithically into `repo`; its digest.
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = digest_of(data);
        let r = self
            .req(
                reqwest::Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            )
            .body(data.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().unwrap());
        d
    }

    fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Response {
        self.req(
            reqwest::Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
        .header("Content-Type", media_type)
        .body(body.to_vec())
        .send()
        .unwrap()
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An OCI image manifest naming a config and layers (digest, size).
fn manifest(config: (&str, usize), layers: &[(&str, usize)], extra: serde_json::Value) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, n)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n,
        })).collect::<Vec<_>>(),
    });
    if let serde_json::Value::Object(o) = extra {
        m.as_object_mut().unwrap().extend(o);
    }
    serde_json::to_vec(&m).unwrap()
}

#[test]
fn uploads_mounts_and_manifests_by_hand_and_bad_input_gets_spec_errors() {
    let s = Store::new();
    let node = push_node(&s, &["--max-upload", "4M"]);
    let api = Api::new(&node);
    let data = {
        let f = s.tmp_path("blob");
        random_file(&f, 3 << 20);
        std::fs::read(&f).unwrap()
    };
    let d = digest_of(&data);
    const MIB: usize = 1 << 20;

    // No token: 401 with a Basic challenge and the spec body.
    let r = api
        .http
        .post(node.url("/v2/t/blob/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(header(&r, "www-authenticate"), "Basic realm=\"ferry\"");
    assert_eq!(code(r), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()));
    // A Bearer token works as well as Basic.
    let r = api
        .http
        .post(node.url("/v2/t/blob/blobs/uploads/"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // `GET /v2/` tells clients to send credentials, and pulls stay anonymous.
    let r = api.http.get(node.url("/v2/")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "www-authenticate"), "Basic realm=\"ferry\"");

    // Chunked: in order, then one out of order (416, with where the upload stands), then status.
    let loc = api.start("t/blob");
    let id = loc.rsplit('/').next().unwrap().to_string();
    assert!(
        s.path.join("uploads").join(&id).is_file(),
        "uploads spool under STORE/uploads"
    );
    let r = api.patch(&loc, &data[..MIB], 0);
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), format!("0-{}", MIB - 1));
    // A small out-of-order chunk: the node refuses it without reading the body, and a body of megabytes could
    // still be in flight when it closes the connection (a broken pipe, not an answer, for the client).
    let r = api.patch(&loc, &data[2 * MIB..2 * MIB + 16], 2 * MIB);
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "range"), format!("0-{}", MIB - 1));
    assert_eq!(code(r).1, "RANGE_INVALID");
    let r = api.req(reqwest::Method::GET, &loc).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), format!("0-{}", MIB - 1));
    // A Content-Range whose length does not fit in 64 bits is refused, not wrapped, and the upload goes on.
    let r = api
        .req(reqwest::Method::PATCH, &loc)
        .header("Content-Range", format!("{MIB}-18446744073709551615"))
        .body(vec![1u8])
        .send()
        .unwrap();
    assert_eq!(code(r).1, "RANGE_INVALID");
    let r = api.patch(&loc, &data[MIB..2 * MIB], MIB);
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The last chunk with a wrong digest: DIGEST_INVALID, and the upload is over.
    let wrong = digest_of(b"something else");
    let r = api
        .req(reqwest::Method::PUT, &format!("{loc}?digest={wrong}"))
        .header("Content-Range", format!("{}-{}", 2 * MIB, data.len() - 1))
        .body(data[2 * MIB..].to_vec())
        .send()
        .unwrap();
    assert_eq!(code(r), (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    let r = api.req(reqwest::Method::GET, &loc).send().unwrap();
    assert_eq!(
        code(r),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );
    assert!(!s.path.join("uploads").join(&id).exists());
    assert_eq!(
        api.http
            .head(node.url(&format!("/v2/t/blob/blobs/{d}")))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND,
        "a blob with the wrong digest was stored"
    );

    // Again, right: three chunks, then PUT with no body closes it.
    let loc = api.start("t/blob");
    for i in 0..3 {
        let r = api.patch(&loc, &data[i * MIB..(i + 1) * MIB], i * MIB);
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let r = api
        .req(reqwest::Method::PUT, &format!("{loc}?digest={d}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/t/blob/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), d);
    let got = api
        .http
        .get(node.url(&format!("/v2/t/blob/blobs/{d}")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(got == data, "the blob came back different");

    // A chunk whose body breaks off is not taken: the upload stays where it stood, and resumes from there.
    let loc = api.start("t/resume");
    assert_eq!(
        api.patch(&loc, &data[..1000], 0).status(),
        StatusCode::ACCEPTED
    );
    let status = raw_then(
        &node.addr,
        &format!(
            "PATCH {loc} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Range: 1000-5999\r\nContent-Length: 5000"
        ),
        &data[1000..3000],
        true,
    );
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    let r = api.req(reqwest::Method::GET, &loc).send().unwrap();
    assert_eq!(header(&r, "range"), "0-999", "a broken chunk was kept");
    assert_eq!(
        api.patch(&loc, &data[1000..6000], 1000).status(),
        StatusCode::ACCEPTED
    );
    let r = api
        .req(
            reqwest::Method::PUT,
            &format!("{loc}?digest={}", digest_of(&data[..6000])),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Monolithic POST ?digest=: a config, then a manifest naming it and the big blob, by tag.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let c = api.push_blob("t/blob", config);
    let m = manifest(
        (&c, config.len()),
        &[(&d, data.len())],
        serde_json::json!({}),
    );
    let md = digest_of(&m);
    let r = api.put_manifest("t/blob", "v1", OCI_MANIFEST, &m);
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/t/blob/manifests/{md}"));
    assert_eq!(header(&r, "docker-content-digest"), md);
    let r = api
        .http
        .get(node.url("/v2/t/blob/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
    assert!(r.bytes().unwrap() == m);

    // An artifact whose subject is that manifest: OCI-Subject, and the referrers API lists it.
    let art = manifest(
        (&c, config.len()),
        &[],
        serde_json::json!({
            "artifactType": "application/vnd.example.sbom",
            "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": m.len()},
        }),
    );
    let ad = digest_of(&art);
    let r = api.put_manifest("t/blob", &ad, OCI_MANIFEST, &art);
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), md);
    let refs: serde_json::Value = api
        .http
        .get(node.url(&format!("/v2/t/blob/referrers/{md}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(refs["manifests"][0]["digest"], ad.as_str(), "{refs}");
    assert_eq!(
        refs["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );

    // Cross-repository mount: 201 for a blob the node holds, an upload session for one it does not.
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/v2/t/copy/blobs/uploads/?mount={d}&from=t/blob"),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/t/copy/blobs/{d}"));
    assert_eq!(
        api.http
            .head(node.url(&format!("/v2/t/copy/blobs/{d}")))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/v2/t/copy/blobs/uploads/?mount={wrong}&from=t/blob"),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let fallback = header(&r, "location");
    // Cancel it.
    let r = api.req(reqwest::Method::DELETE, &fallback).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = api.patch(&fallback, b"x", 0);
    assert_eq!(
        code(r),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );

    // Manifests: naming a blob the repository lacks, a wrong digest, not JSON, schema 1, too big.
    let lacking = manifest((&c, config.len()), &[(&wrong, 14)], serde_json::json!({}));
    let r = api.put_manifest("t/blob", "v2", OCI_MANIFEST, &lacking);
    assert_eq!(
        code(r),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".into())
    );
    // The config is in t/blob, not in t/copy.
    let r = api.put_manifest("t/copy", "v1", OCI_MANIFEST, &m);
    assert_eq!(
        code(r),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".into())
    );
    let r = api.put_manifest("t/blob", &digest_of(b"other"), OCI_MANIFEST, &m);
    assert_eq!(code(r), (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));
    let r = api.put_manifest("t/blob", "v3", OCI_MANIFEST, b"not json");
    assert_eq!(
        code(r),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into())
    );
    let r = api.put_manifest(
        "t/blob",
        "v3",
        "application/vnd.docker.distribution.manifest.v1+json",
        br#"{"schemaVersion":1,"name":"t/blob","tag":"v3","fsLayers":[]}"#,
    );
    assert_eq!(
        code(r),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into())
    );
    let wrong_size = manifest((&c, config.len() + 1), &[], serde_json::json!({}));
    let r = api.put_manifest("t/blob", "v3", OCI_MANIFEST, &wrong_size);
    assert_eq!(
        code(r),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into())
    );
    let r = api.put_manifest("t/blob", "v3", OCI_MANIFEST, &vec![b' '; (4 << 20) + 1]);
    assert_eq!(
        code(r),
        (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID".into())
    );
    let r = api.put_manifest("t/blob", "bad tag!", OCI_MANIFEST, &m);
    assert_eq!(code(r).1, "TAG_INVALID");

    // Malformed digests.
    for q in [
        "digest=sha256:xyz",
        "digest=md5:0123",
        "digest=sha256:",
        "mount=sha256:zz&from=t/blob",
    ] {
        let r = api
            .req(
                reqwest::Method::POST,
                &format!("/v2/t/blob/blobs/uploads/?{q}"),
            )
            .body("x")
            .send()
            .unwrap();
        assert_eq!(
            code(r),
            (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()),
            "{q}"
        );
    }
    let loc = api.start("t/blob");
    let r = api.req(reqwest::Method::PUT, &loc).send().unwrap();
    assert_eq!(
        code(r),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()),
        "PUT without ?digest="
    );
    // A wrong digest on a monolithic upload; nothing stored.
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/v2/t/blob/blobs/uploads/?digest={wrong}"),
        )
        .body(b"not what the digest says".to_vec())
        .send()
        .unwrap();
    assert_eq!(code(r), (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()));

    // Unknown upload ids, and an id used under another repository.
    for path in [
        format!("/v2/t/blob/blobs/uploads/{}", "0".repeat(32)),
        "/v2/t/blob/blobs/uploads/not-an-id".to_string(),
        loc.replace("/t/blob/", "/t/copy/"),
    ] {
        let r = api.patch(&path, b"abc", 0);
        assert_eq!(
            code(r),
            (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into()),
            "{path}"
        );
    }

    // Names with `..` or escaped slashes never name a repository.
    let r = api
        .req(reqwest::Method::POST, "/v2/t%2fblob/blobs/uploads/")
        .send()
        .unwrap();
    assert_eq!(code(r), (StatusCode::BAD_REQUEST, "NAME_INVALID".into()));
    let auth = format!("Authorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close");
    for path in [
        "/v2/t/../blob/blobs/uploads/",
        "/v2/../../etc/blobs/uploads/",
        "/v2/t/..%2f..%2fpacks/blobs/uploads/",
    ] {
        let status = raw(&node.addr, &format!("POST {path} HTTP/1.1\r\n{auth}"), b"");
        assert!(status.starts_with("HTTP/1.1 4"), "{path}: {status}");
    }

    // Huge bodies: declared too big is refused before a byte is read; streamed past the limit is cut off.
    let loc = api.start("t/blob");
    let status = raw(
        &node.addr,
        &format!(
            "PATCH {loc} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}",
            10u64 << 30
        ),
        b"",
    );
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    // (Exactly the limit, then one byte more, unterminated: the node has read all that was sent when it answers,
    // so the answer is not lost to a reset.)
    let loc = api.start("t/blob");
    let mut chunked = Vec::new();
    for piece in [
        &data[..MIB],
        &data[..MIB],
        &data[..MIB],
        &data[..MIB],
        &data[..1],
    ] {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    let status = raw(
        &node.addr,
        &format!(
            "PATCH {loc} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked"
        ),
        &chunked,
    );
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let r = api.req(reqwest::Method::GET, &loc).send().unwrap();
    assert_eq!(
        code(r).1,
        "BLOB_UPLOAD_UNKNOWN",
        "an overflowing upload ends"
    );

    // Deleting is not supported.
    let r = api
        .req(reqwest::Method::DELETE, "/v2/t/blob/manifests/v1")
        .send()
        .unwrap();
    assert_eq!(
        code(r),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".into())
    );

    // After all that, still serving, and no spool file left behind but the open sessions'.
    assert_eq!(
        api.http
            .get(node.url("/v2/t/blob/manifests/v1"))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let got = api
        .http
        .get(node.url(&format!("/v2/t/blob/blobs/{d}")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(got == data);
    assert_eq!(node.stop(), Some(0));
    // A restart drops unfinished uploads.
    let node = push_node(&s, &[]);
    assert_eq!(
        std::fs::read_dir(s.path.join("uploads")).unwrap().count(),
        0,
        "a restart must remove unfinished uploads"
    );
    assert_eq!(
        Client::new()
            .get(node.url("/v2/t/blob/manifests/v1"))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK,
        "pushed content survives a restart"
    );
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn idle_uploads_expire_and_push_is_refused_without_tokens() {
    let s = Store::new();
    let node = push_node(&s, &["--upload-timeout", "1"]);
    let api = Api::new(&node);
    let loc = api.start("t/idle");
    let r = api.patch(&loc, b"some bytes", 0);
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = loc.rsplit('/').next().unwrap().to_string();
    let spool = s.path.join("uploads").join(&id);
    assert!(spool.is_file());
    let start = std::time::Instant::now();
    while spool.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "an idle upload was not dropped"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let r = api.req(reqwest::Method::GET, &loc).send().unwrap();
    assert_eq!(
        code(r),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );
    assert_eq!(node.stop(), Some(0));

    // Without --push-token-file: push is not enabled, whatever the credentials.
    let node = Node::start(&s.path);
    let r = Client::new()
        .post(node.url("/v2/t/idle/blobs/uploads/"))
        .basic_auth("ci", Some(TOKEN))
        .send()
        .unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not enabled"),
        "{body}"
    );
    // And no challenge on `GET /v2/`: nothing here needs a token.
    let r = Client::new().get(node.url("/v2/")).send().unwrap();
    assert!(r.headers().get("www-authenticate").is_none());

    // With pull tokens, pulls need one (a push token does too).
    assert_eq!(node.stop(), Some(0));
    let pull = s.tmp_path("pull.tokens");
    std::fs::write(&pull, "reader\n").unwrap();
    let node = push_node(&s, &["--pull-token-file", pull.to_str().unwrap()]);
    let get = |auth: Option<&str>| {
        let mut r = Client::new().get(node.url("/v2/_catalog"));
        if let Some(t) = auth {
            r = r.bearer_auth(t);
        }
        r.send().unwrap().status()
    };
    assert_eq!(get(None), StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some("wrong")), StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some("reader")), StatusCode::OK);
    assert_eq!(get(Some(TOKEN)), StatusCode::OK);
    let r = Client::new()
        .post(node.url("/v2/t/idle/blobs/uploads/"))
        .bearer_auth("reader")
        .send()
        .unwrap();
    assert_eq!(code(r), (StatusCode::FORBIDDEN, "DENIED".into()));
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn pushed_images_become_a_signed_release() {
    let imgs = images();
    let s = Store::new();
    let node = push_node(&s, &[]);
    let creds = ci_creds();
    skopeo_push(
        &node,
        &oci(&imgs.layout, "v2"),
        "team/app:1.2",
        Some(&creds),
        &[],
    )
    .ok();
    skopeo_push(
        &node,
        &oci(&imgs.layout, "v1"),
        "team/app:1.1",
        Some(&creds),
        &[],
    )
    .ok();
    // The node holds the store: stop it to run `ferry add` (until commands go through its admin socket).
    assert_eq!(node.stop(), Some(0));

    let packs = pack_bytes(&s);
    let added = s.add("app@1.2", &["pushed:team/app:1.2"]);
    assert_eq!(num(&added, "chunks_new"), 0, "{added}");
    assert_eq!(num(&added, "stored_bytes_new"), 0, "{added}");
    assert_eq!(pack_bytes(&s), packs, "naming pushed content stored bytes");
    let show = s.show("app@1.2");
    let imgs_in = image_entries(&show);
    assert_eq!(imgs_in.len(), 1, "{show}");
    assert_eq!(imgs_in[0]["repository"], "team/app");
    assert_eq!(imgs_in[0]["tag"], "1.2");
    assert_eq!(imgs_in[0]["digest"], imgs.v2.digest.as_str());
    assert!(s.lists("app", "1.2"));
    let out = s.tmp_path("out");
    s.get("app@1.2", &format!("oci:{}", out.display()));
    let entries = index_entries(&out);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].digest, imgs.v2.digest);
    verify_blobs(&out);
    // Every pushed tag of a repository at once; a tag never pushed is named in the error.
    let all = s.add("app-all@1", &["pushed:team/app"]);
    assert_eq!(num(&all, "entries"), 2, "{all}");
    let missing = s.run(["add", "x@1", "pushed:team/app:9.9"]);
    assert_eq!(missing.code, Some(1), "{missing}");
    assert!(
        missing.error_line().contains("9.9") && missing.error_line().contains("1.1"),
        "{missing}"
    );
    let missing = s.run(["add", "x@1", "pushed:team/none"]);
    assert_eq!(missing.code, Some(1), "{missing}");
    assert_eq!(s.run(["fsck"]).code, Some(0));

    // Started again, the node serves the release (and the pushed tags) to anyone.
    let node = push_node(&s, &[]);
    assert_eq!(
        pull_back(&node, "team/app:1.2", &s.tmp_path("back-1.2")),
        imgs.v2.digest
    );
    // A newer push of the same tag wins over the release; the release still holds its image by digest. (Push
    // times count in seconds and a release wins a tie, so let the second turn.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    skopeo_push(
        &node,
        &oci(&imgs.layout, "v1"),
        "team/app:1.2",
        Some(&creds),
        &[],
    )
    .ok();
    assert_eq!(
        pull_back(&node, "team/app:1.2", &s.tmp_path("back-1.2-again")),
        imgs.v1.digest
    );
    assert_eq!(
        Client::new()
            .head(node.url(&format!("/v2/team/app/manifests/{}", imgs.v2.digest)))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(node.stop(), Some(0));
}
