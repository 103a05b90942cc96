//! `ferry serve`: the OCI registry mirror, pulled by real clients (skopeo, podman), and its API details — ranges,
//! paging, spec errors, hostile names — checked over plain HTTP.

use std::path::Path;

use ferry_tests::cmd::{run_ok, Output};
use ferry_tests::ferry::Store;
use ferry_tests::fixtures::{images, multi_arch_layout};
use ferry_tests::fsutil::{index_entries, sha256_hex, verify_blobs};
use ferry_tests::node::Node;
use reqwest::blocking::Client;
use reqwest::StatusCode;

use crate::oci::oci;

/// A store holding img@1 (tag v1), img@2 (tag v2) and multi@1 (a two-platform index, tag multi).
fn store() -> (Store, String) {
    let imgs = images();
    let s = Store::new();
    s.add("img@1", &[&oci(&imgs.layout, "v1")]);
    s.add("img@2", &[&oci(&imgs.layout, "v2")]);
    let multi = multi_arch_layout(&s.tmp_path("multi"));
    s.add("multi@1", &[&oci(&multi.layout, multi.tag)]);
    (s, multi.index_digest)
}

/// The status line of `GET PATH` sent byte for byte.
fn raw_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or_default().to_string()
}

fn skopeo_copy(node: &Node, reference: &str, dest: &Path, tag: &str) -> Output {
    run_ok(
        "skopeo",
        [
            "copy",
            "--all",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{}/{reference}", node.addr),
            &format!("oci:{}:{tag}", dest.display()),
        ],
    )
}

#[test]
fn skopeo_and_podman_pull_every_image_with_its_digest() {
    let imgs = images();
    let (s, multi_digest) = store();
    let node = Node::start(&s.path);

    for (reference, tag, digest) in [
        ("img:v1", "v1", imgs.v1.digest.clone()),
        ("img:v2", "v2", imgs.v2.digest.clone()),
        ("multi:multi", "multi", multi_digest.clone()),
    ] {
        let dest = s.tmp_path(&format!("copy-{tag}"));
        skopeo_copy(&node, reference, &dest, tag);
        let entries = index_entries(&dest);
        assert_eq!(entries.len(), 1, "{reference}: {entries:?}");
        assert_eq!(
            entries[0].digest, digest,
            "{reference} came back with another digest"
        );
        assert!(!verify_blobs(&dest).is_empty());
    }

    // podman, with its own storage under the test's directory.
    let pm = ferry_tests::podman::Podman::new(s.tmp.path());
    let podman = |args: &[&str]| pm.run(args).ok();
    for (reference, digest) in [("img:v2", &imgs.v2.digest), ("multi:multi", &multi_digest)] {
        let full = format!("{}/{reference}", node.addr);
        podman(&["pull", "-q", "--tls-verify=false", &full]);
        let out = podman(&["image", "inspect", "--format", "{{.Digest}}", &full]);
        assert_eq!(
            out.stdout.trim(),
            digest.as_str(),
            "podman pulled {reference}"
        );
    }

    assert_eq!(node.stop(), Some(0), "SIGTERM must stop the node cleanly");
}

#[test]
fn registry_api_ranges_paging_and_errors() {
    let imgs = images();
    let (s, _) = store();
    let node = Node::start(&s.path);
    let http = Client::new();
    let get = |path: &str| http.get(node.url(path)).send().expect("GET");
    let code = |r: reqwest::blocking::Response| -> (StatusCode, String) {
        let status = r.status();
        let body: serde_json::Value = r.json().unwrap_or_default();
        (
            status,
            body["errors"][0]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };

    let r = get("/v2/");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    // HEAD of a manifest by tag: type, digest, length, no body.
    let r = http.head(node.url("/v2/img/manifests/v2")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["docker-content-digest"],
        imgs.v2.digest.as_str()
    );
    assert_eq!(r.headers()["content-type"], imgs.v2.media_type.as_str());
    assert_eq!(
        r.headers()["content-length"],
        imgs.v2.raw.len().to_string().as_str()
    );
    // GET by digest returns the exact bytes.
    let body = get(&format!("/v2/img/manifests/{}", imgs.v2.digest))
        .bytes()
        .unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&body)), imgs.v2.digest);

    // Ranges on the biggest layer.
    let layer = imgs.v2.layers.last().unwrap();
    let whole = get(&format!("/v2/img/blobs/{layer}")).bytes().unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&whole)), *layer);
    let size = whole.len();
    let part = |range: &str| {
        http.get(node.url(&format!("/v2/img/blobs/{layer}")))
            .header("Range", range)
            .send()
            .unwrap()
    };
    let mid = size / 2;
    let r = part(&format!("bytes={mid}-{}", mid + 99_999));
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes {mid}-{}/{size}", mid + 99_999).as_str()
    );
    assert_eq!(r.bytes().unwrap(), whole.slice(mid..mid + 100_000));
    let r = part("bytes=-10");
    assert_eq!(r.bytes().unwrap(), whole.slice(size - 10..));
    // A suffix longer than any u64 is the whole body (RFC 9110), not an error.
    let r = part("bytes=-99999999999999999999999");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().unwrap(), whole);
    for bad in [
        format!("bytes={size}-"),
        "bytes=-0".into(),
        "bytes=5-1".into(),
    ] {
        let r = part(&bad);
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes */{size}").as_str()
        );
    }

    // Paging.
    let r = get("/v2/img/tags/list?n=1");
    let link = r.headers()["link"].to_str().unwrap().to_string();
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1"]));
    assert!(link.contains("last=v1"), "{link}");
    let v: serde_json::Value = get("/v2/img/tags/list?n=1&last=v1").json().unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v2"]));
    let v: serde_json::Value = get("/v2/_catalog").json().unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["img", "multi"]));

    // Spec error codes.
    assert_eq!(
        code(get("/v2/nope/tags/list")),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
    assert_eq!(
        code(get("/v2/img/manifests/v9")),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    let zero = format!("sha256:{}", "0".repeat(64));
    assert_eq!(
        code(get(&format!("/v2/img/blobs/{zero}"))),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into())
    );
    assert_eq!(
        code(get("/v2/img/blobs/sha256:xyz")),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );
    assert_eq!(
        code(get("/v2/img%2fv1/tags/list")),
        (StatusCode::BAD_REQUEST, "NAME_INVALID".into())
    );
    // HTTP clients normalise `..` away; send it raw.
    for path in [
        "/v2/a/../img/tags/list",
        "/v2/../../etc/passwd/tags/list",
        "/v2/img/blobs/..%2f..%2fpacks",
    ] {
        let status = raw_get(&node.addr, path);
        assert!(status.starts_with("HTTP/1.1 4"), "{path}: {status}");
    }
    // Push is not enabled without --push-token-file.
    let put = http
        .put(node.url("/v2/img/manifests/v3"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(code(put), (StatusCode::FORBIDDEN, "DENIED".into()));

    // Slow clients: many connections that ask for a big blob and read nothing, and one that sends half a
    // request. The node keeps serving everyone else.
    let mut idle = Vec::new();
    for _ in 0..40 {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(&node.addr).unwrap();
        write!(c, "GET /v2/img/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        idle.push(c);
    }
    {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(&node.addr).unwrap();
        write!(c, "GET /v2/img/manif").unwrap();
        idle.push(c);
    }
    let again = get(&format!("/v2/img/blobs/{layer}")).bytes().unwrap();
    assert_eq!(again, whole);
    skopeo_copy(&node, "img:v2", &s.tmp_path("while-slow"), "v2");
    drop(idle);

    // After all that, still serving.
    assert_eq!(get("/v2/img/manifests/v1").status(), StatusCode::OK);
    assert_eq!(node.stop(), Some(0));
}

/// A containerd daemon with everything under `dir`, killed on drop.
struct Containerd {
    _guard: ferry_tests::cmd::ChildGuard,
    sock: std::path::PathBuf,
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        std::fs::create_dir_all(dir).unwrap();
        let sock = dir.join("c.sock");
        let cfg = dir.join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n",
                d = dir.display(),
                s = sock.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("containerd")
            .arg("--config")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .expect("spawn containerd");
        let guard = ferry_tests::cmd::ChildGuard::new(child, "containerd");
        let start = std::time::Instant::now();
        while !sock.exists() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "containerd did not create its socket; log: {}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Containerd {
            _guard: guard,
            sock,
        }
    }

    fn ctr<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Output {
        let mut c = std::process::Command::new("ctr");
        c.arg("-a").arg(&self.sock).args(args);
        ferry_tests::cmd::run(&mut c).ok()
    }
}

#[test]
fn containerd_pulls_through_the_node_as_a_mirror() {
    use ferry_tests::registry::Registry;
    let imgs = images();
    let s = Store::new();
    // The image comes from an upstream registry, so the release remembers that host.
    let upstream = Registry::start();
    upstream.push(&imgs.layout, "v1", "team/app:v1", false);
    let host = upstream.host.clone();
    s.add(
        "app@1",
        &[&upstream.url("team/app:v1"), "--insecure-registry", &host],
    );
    // The upstream goes away: only the mirror can answer now.
    drop(upstream);
    let node = Node::start(&s.path);

    let http = Client::new();
    let with_ns = http
        .head(node.url(&format!("/v2/team/app/manifests/v1?ns={host}")))
        .send()
        .unwrap();
    assert_eq!(with_ns.status(), StatusCode::OK);
    assert_eq!(
        with_ns.headers()["docker-content-digest"],
        imgs.v1.digest.as_str()
    );
    let other_ns = http
        .head(node.url("/v2/team/app/manifests/v1?ns=registry.example"))
        .send()
        .unwrap();
    assert_eq!(
        other_ns.status(),
        StatusCode::NOT_FOUND,
        "?ns= must select the upstream"
    );

    // The hosts.toml comes from `ferry client-config`, as an operator would get it.
    let hosts = s.tmp_path("hosts");
    let written = s
        .run([
            "client-config",
            "containerd",
            "--node",
            &node.url(""),
            "--out",
            hosts.to_str().unwrap(),
        ])
        .ok();
    let file = hosts.join(&host).join("hosts.toml");
    assert_eq!(written.stdout.trim(), file.to_str().unwrap(), "{written}");
    let toml = std::fs::read_to_string(&file).unwrap();
    assert!(
        toml.contains(&format!("[host.\"{}\"]", node.url(""))),
        "{toml}"
    );
    let ctd = Containerd::start(&s.tmp_path("ctd"));
    let reference = format!("{host}/team/app:v1");
    ctd.ctr([
        "images",
        "pull",
        "--hosts-dir",
        s.tmp_path("hosts").to_str().unwrap(),
        &reference,
    ]);
    let ls = ctd.ctr(["images", "ls"]);
    let line = ls
        .stdout
        .lines()
        .find(|l| l.starts_with(&reference))
        .unwrap_or_else(|| panic!("ctr images ls lacks {reference}:\n{ls}"));
    assert!(line.contains(&imgs.v1.digest), "{line}");

    // podman, configured by `ferry client-config podman`, pulls the upstream's name through the mirror.
    let conf = s
        .run(["client-config", "podman", "--node", &node.url("")])
        .ok();
    assert!(
        conf.stdout.contains(&format!("prefix = \"{host}\"")),
        "{conf}"
    );
    let conf_file = s.tmp_path("registries.conf");
    std::fs::write(&conf_file, &conf.stdout).unwrap();
    let pm = ferry_tests::podman::Podman::new(s.tmp.path());
    let mut pull = pm.command(&["pull", "-q", &reference]);
    pull.env("CONTAINERS_REGISTRIES_CONF", &conf_file);
    let pulled = ferry_tests::cmd::run(&mut pull).ok();
    assert_eq!(
        pulled.stdout.trim(),
        imgs.v1.config.trim_start_matches("sha256:"),
        "podman pull prints the image id (its config digest): {pulled}"
    );
    assert_eq!(node.stop(), Some(0));
}
