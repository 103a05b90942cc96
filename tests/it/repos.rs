//! Repository mirrors: `apt:` ingest of a real signed repository (from a directory and over HTTP), served by
//! `ferry serve` under `/repos/…` to a real `apt-get`; and static serving of a `dir:` tree — percent-decoding,
//! redirects, validators, ranges, hostile paths, `/_ferry/repos`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ferry_tests::apt::AptClient;
use ferry_tests::cmd::{spawn_first_line, ChildGuard};
use ferry_tests::ferry::{entries, Store};
use ferry_tests::fixtures::{apt_repo, random_file};
use ferry_tests::fsutil::{copy_tree, flip_byte, sha256_file, sha256_hex};
use ferry_tests::node::Node;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;

/// A response read off a raw socket: the request goes out byte for byte (no client normalises `..` or
/// `%2e%2e` away).
pub(crate) struct Raw {
    pub(crate) status: u16,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Vec<u8>,
}

pub(crate) fn raw(addr: &str, method: &str, path: &str, extra: &[(&str, &str)]) -> Raw {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(c);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let mut body = Vec::new();
    r.read_to_end(&mut body).unwrap();
    Raw {
        status,
        headers,
        body,
    }
}

/// The `path → sha256` of a release's file entries (symlinks as `-> target`).
fn paths(s: &Store, release: &str) -> BTreeMap<String, String> {
    entries(&s.show(release))
        .iter()
        .map(|e| {
            let p = e["path"].as_str().unwrap().to_string();
            let v = match e["type"].as_str().unwrap() {
                "symlink" => format!("-> {}", e["target"].as_str().unwrap()),
                _ => e["sha256"].as_str().unwrap_or_default().to_string(),
            };
            (p, v)
        })
        .collect()
}

#[test]
fn apt_get_updates_and_downloads_from_the_mirror() {
    let repo = apt_repo();
    let s = Store::new();
    s.add("deb@1", &[&format!("apt:{}", repo.root.display())]);
    let carried = paths(&s, "deb@1");
    // The whole repository by default: every suite, component and architecture, and the codename link.
    for want in [
        "dists/stable/InRelease",
        "dists/stable/Release",
        "dists/stable/Release.gpg",
        "dists/stable/main/binary-amd64/Packages.xz",
        "dists/stable/contrib/binary-arm64/Packages.gz",
        "dists/stable/main/binary-all/Packages",
    ] {
        assert!(carried.contains_key(want), "{want} missing: {carried:?}");
    }
    assert_eq!(carried["dists/ferry-test"], "-> stable");
    for pkg in [
        "base-files",
        "libssl3",
        "zlib1g",
        "netbase",
        "libnghttp2-14",
        "ferry-fixture-arm",
    ] {
        let p = repo.pool_file(pkg);
        assert_eq!(
            carried[&p],
            format!("sha256:{}", sha256_file(&repo.root.join(&p))),
            "{p}"
        );
    }
    // A second version, so `current` means something.
    s.add(
        "deb@2",
        &[&format!("apt:{}?components=main", repo.root.display())],
    );

    let node = Node::start(&s.path);
    // By version: every package, byte for byte, through InRelease's signature, `+` and `~` percent-encoded
    // by apt.
    let a = AptClient::new(
        &s.tmp_path("apt-1"),
        &repo.key,
        &node.url("/repos/deb/1"),
        "stable",
        "main contrib",
    );
    a.update();
    for pkg in ["base-files", "libssl3", "netbase", "libnghttp2-14"] {
        let got = a.download(pkg);
        assert_eq!(
            sha256_file(&got),
            sha256_file(&repo.root.join(repo.pool_file(pkg))),
            "{pkg} came back different"
        );
    }
    // `current` (deb@2, main only), through the codename symlink.
    let b = AptClient::new(
        &s.tmp_path("apt-current"),
        &repo.key,
        &node.url("/repos/deb/current"),
        "ferry-test",
        "main",
    );
    b.update();
    let got = b.download("zlib1g");
    assert_eq!(
        sha256_file(&got),
        sha256_file(&repo.root.join(repo.pool_file("zlib1g")))
    );
    // deb@2 does not carry contrib.
    let http = Client::new();
    let contrib = repo.pool_file("libnghttp2-14");
    let url = |v: &str, p: &str| node.url(&format!("/repos/deb/{v}/{p}"));
    assert_eq!(
        http.get(url("current", &contrib)).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        http.get(url("1", &contrib)).send().unwrap().status(),
        StatusCode::OK
    );
    // The InRelease served is the one signed.
    let inrelease = http.get(url("2", "dists/stable/InRelease")).send().unwrap();
    assert_eq!(
        inrelease.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        sha256_hex(&inrelease.bytes().unwrap()),
        sha256_file(&repo.root.join("dists/stable/InRelease"))
    );

    // `/_ferry/repos` describes both versions, with the suite and what each carries.
    let list: Vec<Value> = http
        .get(node.url("/_ferry/repos"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let by_version = |v: &str| list.iter().find(|r| r["version"] == v).unwrap().clone();
    let v1 = by_version("1");
    assert_eq!(v1["release"], "deb");
    assert_eq!(v1["current"], false);
    assert_eq!(v1["path"], "/repos/deb/1/");
    let apt = &v1["repositories"][0];
    assert_eq!(apt["kind"], "apt");
    assert_eq!(apt["path"], "/repos/deb/1/");
    let suite = &apt["suites"][0];
    assert_eq!(suite["suite"], "stable");
    assert_eq!(suite["codename"], "ferry-test");
    assert_eq!(suite["components"], serde_json::json!(["main", "contrib"]));
    assert_eq!(
        suite["architectures"],
        serde_json::json!(["amd64", "arm64", "all"])
    );
    let v2 = by_version("2");
    assert_eq!(v2["current"], true);
    assert_eq!(
        v2["repositories"][0]["suites"][0]["components"],
        serde_json::json!(["main"])
    );

    // `ferry client-config apt` turns that into sources.list lines, under `current` so clients follow the node.
    let key = repo.key.to_str().unwrap();
    let lines = s
        .run([
            "client-config",
            "apt",
            "--node",
            &node.url(""),
            "--signed-by",
            key,
        ])
        .ok();
    assert_eq!(
        lines.stdout.trim(),
        format!(
            "deb [signed-by={key}] {} stable main",
            node.url("/repos/deb/current/")
        ),
        "{lines}"
    );
    let pinned = s
        .run([
            "client-config",
            "apt",
            "--node",
            &node.url(""),
            "--release",
            "deb@1",
        ])
        .ok();
    assert_eq!(
        pinned.stdout.trim(),
        format!("deb {} stable main contrib", node.url("/repos/deb/1/")),
        "{pinned}"
    );
    let none = s
        .run(["client-config", "pip", "--node", &node.url("")])
        .expect_code(1);
    assert!(none.error_line().contains("no PyPI repository"), "{none}");
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn apt_selection_and_prefix_leave_the_rest_out() {
    let repo = apt_repo();
    let s = Store::new();
    let root = repo.root.display();
    s.add(
        "sel@1",
        &[&format!(
            "apt:{root}?suites=stable&components=main&architectures=amd64&into=debian"
        )],
    );
    let carried = paths(&s, "sel@1");
    for want in [
        "debian/dists/stable/InRelease",
        "debian/dists/stable/main/binary-amd64/Packages.xz",
        // `all` comes with any architecture when the suite has it.
        "debian/dists/stable/main/binary-all/Packages.xz",
    ] {
        assert!(carried.contains_key(want), "{want} missing: {carried:?}");
    }
    for pkg in ["base-files", "libssl3", "zlib1g", "netbase"] {
        assert!(
            carried.contains_key(&format!("debian/{}", repo.pool_file(pkg))),
            "{pkg}"
        );
    }
    for gone in ["libnghttp2-14", "ferry-fixture-arm"] {
        assert!(
            !carried.contains_key(&format!("debian/{}", repo.pool_file(gone))),
            "{gone}"
        );
    }
    assert!(carried
        .keys()
        .all(|p| !p.contains("/contrib/") && !p.contains("binary-arm64")));
    // Only a link to a chosen suite comes along.
    assert_eq!(carried["debian/dists/ferry-test"], "-> stable");

    // apt is happy with the narrowed mirror.
    let node = Node::start(&s.path);
    let a = AptClient::new(
        &s.tmp_path("apt"),
        &repo.key,
        &node.url("/repos/sel/1/debian"),
        "stable",
        "main",
    );
    a.update();
    let got = a.download("netbase");
    assert_eq!(
        sha256_file(&got),
        sha256_file(&repo.root.join(repo.pool_file("netbase")))
    );
    let list: Vec<Value> = Client::new()
        .get(node.url("/_ferry/repos"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let apt = &list[0]["repositories"][0];
    assert_eq!(apt["path"], "/repos/sel/1/debian/");
    assert_eq!(apt["suites"][0]["components"], serde_json::json!(["main"]));
    assert_eq!(
        apt["suites"][0]["architectures"],
        serde_json::json!(["amd64", "all"])
    );
    drop(node);

    // Asking for what is not there is refused, naming it.
    for (query, named) in [
        ("components=non-free", "non-free"),
        ("architectures=riscv64", "riscv64"),
        ("suites=sid", "sid"),
    ] {
        let out = s
            .run(["add", "bad@1", &format!("apt:{root}?{query}")])
            .expect_code(1);
        assert!(out.stderr.contains(named), "{query}:\n{out}");
    }
}

/// `python3 -m http.server` on a free loopback port, serving `dir`.
fn http_server(dir: &Path) -> (ChildGuard, String) {
    let (guard, line) = spawn_first_line(
        std::process::Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .current_dir(dir)
            .stderr(Stdio::null()),
        "python3 -m http.server",
        Duration::from_secs(20),
    );
    // "Serving HTTP on 127.0.0.1 port 43210 (http://127.0.0.1:43210/) ..."
    let port = line
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected http.server line {line:?}"))
        .to_string();
    (guard, format!("http://127.0.0.1:{port}"))
}

#[test]
fn apt_over_http_carries_the_same_bytes() {
    let repo = apt_repo();
    let s = Store::new();
    let (_server, base) = http_server(&repo.root);
    s.add("web@1", &[&format!("apt:{base}/?suites=stable")]);
    s.add(
        "dir@1",
        &[&format!("apt:{}?suites=stable", repo.root.display())],
    );
    let mut from_dir = paths(&s, "dir@1");
    from_dir.remove("dists/ferry-test"); // a URL has no symlinks to see
    assert_eq!(paths(&s, "web@1"), from_dir);

    let out = s
        .run(["add", "web@2", &format!("apt:{base}/")])
        .expect_code(1);
    assert!(out.stderr.contains("suites="), "{out}");
    let out = s
        .run(["add", "web@2", &format!("apt:{base}/?suites=nope")])
        .expect_code(1);
    assert!(out.stderr.contains("nope"), "{out}");
}

#[test]
fn apt_damage_in_the_source_is_refused_by_name() {
    let repo = apt_repo();
    let s = Store::new();
    let copy = s.tmp_path("repo");
    copy_tree(&repo.root, &copy);
    let add = |v: &str| {
        s.run([
            "add",
            &format!("deb@{v}"),
            &format!("apt:{}", copy.display()),
        ])
    };

    // An index that does not match the Release's SHA256.
    let index = "dists/stable/main/binary-amd64/Packages.xz";
    flip_byte(&copy.join(index), 40);
    let out = add("1").expect_code(1);
    assert!(out.stderr.contains(index), "{out}");
    assert!(out.stderr.contains("expected"), "{out}");
    flip_byte(&copy.join(index), 40);

    // A pool file that does not match its Packages entry.
    let deb = repo.pool_file("libssl3");
    flip_byte(&copy.join(&deb), 1000);
    let out = add("1").expect_code(1);
    assert!(out.stderr.contains(&deb), "{out}");
    flip_byte(&copy.join(&deb), 1000);

    // A pool file that is missing.
    let gone = repo.pool_file("netbase");
    std::fs::rename(copy.join(&gone), s.tmp_path("netbase.deb")).unwrap();
    let out = add("1").expect_code(1);
    assert!(
        out.stderr.contains(&gone) && out.stderr.contains("missing"),
        "{out}"
    );
    std::fs::rename(s.tmp_path("netbase.deb"), copy.join(&gone)).unwrap();

    // Not a repository at all.
    let out = s
        .run([
            "add",
            "deb@1",
            &format!("apt:{}", copy.join("pool").display()),
        ])
        .expect_code(1);
    assert!(out.stderr.contains("dists/"), "{out}");

    // Nothing of the failed attempts became visible; the repaired repository goes in.
    assert!(s.ls().is_empty());
    add("1").ok();
}

/// A tree with awkward names, nesting, links (one escaping), a static site and a PyPI-style simple index.
fn files_tree(dir: &Path) {
    let w = |p: &str, data: &[u8]| {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    w("a+b~c.txt", b"plus and tilde\n");
    w("<b>&'.txt", b"markup in a name\n");
    w("sub/dir/notes.md", b"deep\n");
    w("site/index.html", b"<html>site</html>\n");
    w("simple/index.html", b"<html>projects</html>\n");
    w("simple/demo/index.html", b"<html>demo</html>\n");
    w("simple/demo/index.json", b"{\"name\":\"demo\"}\n");
    w("empty.bin", b"");
    random_file(&dir.join("sub/big.bin"), 300_000);
    std::os::unix::fs::symlink("a+b~c.txt", dir.join("link.txt")).unwrap();
    std::os::unix::fs::symlink("../a+b~c.txt", dir.join("sub/up.txt")).unwrap();
    std::os::unix::fs::symlink("sub/dir", dir.join("dirlink")).unwrap();
    std::os::unix::fs::symlink("../../../etc/passwd", dir.join("sub/escape")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("absolute")).unwrap();
}

#[test]
fn static_trees_are_served_safely() {
    let s = Store::new();
    let tree = s.tmp_path("tree");
    files_tree(&tree);
    let src = format!("dir:{}", tree.display());
    s.add("files@1", &[&src]);
    s.add("team/files@2", &[&src]);
    // `current` is reserved.
    let out = s.run(["add", "files@current", &src]).expect_code(1);
    assert!(out.stderr.contains("reserved"), "{out}");

    let node = Node::start(&s.path);
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |p: &str| http.get(node.url(p)).send().unwrap();
    let body = |p: &str| {
        let r = get(p);
        assert_eq!(r.status(), StatusCode::OK, "{p}");
        r.bytes().unwrap().to_vec()
    };

    // Percent-decoded once; literal `+`/`~` work too; links inside the tree are followed.
    assert_eq!(body("/repos/files/1/a%2Bb%7Ec.txt"), b"plus and tilde\n");
    assert_eq!(body("/repos/files/1/a+b~c.txt"), b"plus and tilde\n");
    assert_eq!(body("/repos/files/1/link.txt"), b"plus and tilde\n");
    assert_eq!(body("/repos/files/1/sub/up.txt"), b"plus and tilde\n");
    assert_eq!(body("/repos/files/1/dirlink/notes.md"), b"deep\n");
    assert_eq!(body("/repos/files/current/sub/dir/notes.md"), b"deep\n");
    assert_eq!(
        body("/repos/team/files/2/%3Cb%3E%26%27.txt"),
        b"markup in a name\n"
    );
    assert_eq!(body("/repos/files/1/empty.bin"), b"");
    let big = std::fs::read(tree.join("sub/big.bin")).unwrap();
    assert_eq!(body("/repos/files/1/sub/big.bin"), big);

    // Directories: 301 to the slash form, then index.html or an escaped listing.
    for (from, to) in [
        ("/repos/files/1/sub", "/repos/files/1/sub/"),
        ("/repos/files/1", "/repos/files/1/"),
        ("/repos/files", "/repos/files/"),
        ("/repos/team", "/repos/team/"),
        ("/repos", "/repos/"),
        ("/repos/files/1/dirlink", "/repos/files/1/dirlink/"),
    ] {
        let r = get(from);
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY, "{from}");
        assert_eq!(r.headers()["location"], to, "{from}");
    }
    assert_eq!(body("/repos/files/1/site/"), b"<html>site</html>\n");
    let listing = String::from_utf8(body("/repos/files/1/")).unwrap();
    assert!(listing.contains("href=\"a+b~c.txt\""), "{listing}");
    assert!(
        listing.contains("href=\"sub/\"") && listing.contains("href=\"dirlink/\""),
        "{listing}"
    );
    assert!(
        listing.contains("&lt;b&gt;&amp;&#39;.txt") && !listing.contains("<b>&"),
        "{listing}"
    );
    let releases = String::from_utf8(body("/repos/")).unwrap();
    assert!(
        releases.contains("files/") && releases.contains("team/files/"),
        "{releases}"
    );
    let versions = String::from_utf8(body("/repos/team/files/")).unwrap();
    assert!(versions.contains("2/ (current)"), "{versions}");

    // PEP 691: JSON for clients that prefer it, HTML otherwise.
    let pip_accept = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";
    let r = http
        .get(node.url("/repos/files/1/simple/demo/"))
        .header("Accept", pip_accept)
        .send()
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.pypi.simple.v1+json"
    );
    assert_eq!(r.headers()["vary"], "Accept");
    assert_eq!(r.bytes().unwrap().as_ref(), b"{\"name\":\"demo\"}\n");
    let r = get("/repos/files/1/simple/demo/");
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");

    // Validators and conditional requests.
    let r = get("/repos/files/1/a+b~c.txt");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let modified = r.headers()["last-modified"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", sha256_hex(b"plus and tilde\n")));
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    let cond = |h: &str, v: &str| {
        http.get(node.url("/repos/files/1/a+b~c.txt"))
            .header(h, v)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(cond("If-None-Match", &etag), StatusCode::NOT_MODIFIED);
    assert_eq!(
        cond("If-None-Match", &format!("\"x\", W/{etag}")),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(cond("If-None-Match", "\"other\""), StatusCode::OK);
    assert_eq!(
        cond("If-Modified-Since", &modified),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        cond("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT"),
        StatusCode::OK
    );
    assert_eq!(cond("If-Modified-Since", "not a date"), StatusCode::OK);

    // Ranges.
    let range = |v: &str| {
        http.get(node.url("/repos/files/1/sub/big.bin"))
            .header("Range", v)
            .send()
            .unwrap()
    };
    let r = range("bytes=1000-1999");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999/300000");
    assert_eq!(r.bytes().unwrap().as_ref(), &big[1000..2000]);
    let r = range("bytes=-100");
    assert_eq!(r.headers()["content-range"], "bytes 299900-299999/300000");
    assert_eq!(r.bytes().unwrap().as_ref(), &big[299_900..]);
    let r = range("bytes=299000-99999999999");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().unwrap().as_ref(), &big[299_000..]);
    // A suffix longer than any u64 is the whole body (RFC 9110), not an error.
    let r = range("bytes=-99999999999999999999999");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 0-299999/300000");
    for bad in [
        "bytes=300000-",
        "bytes=999999999999-",
        "bytes=99999999999999999999999-1",
        "bytes=-5-10",
        "bytes=10-5",
        "bytes=0-1,5-6",
        "lines=1-2",
    ] {
        let r = range(bad);
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(r.headers()["content-range"], "bytes */300000", "{bad}");
        assert_eq!(
            r.headers()["content-type"],
            "text/plain; charset=utf-8",
            "{bad}"
        );
    }
    // A range over an older copy (If-Range with another tag) gets the whole file.
    let r = http
        .get(node.url("/repos/files/1/sub/big.bin"))
        .header("Range", "bytes=0-9")
        .header("If-Range", "\"stale\"")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // HEAD: the headers, no body.
    let h = raw(&node.addr, "HEAD", "/repos/files/1/sub/big.bin", &[]);
    assert_eq!(h.status, 200);
    assert_eq!(h.headers["content-length"], "300000");
    assert_eq!(h.headers["content-type"], "application/octet-stream");
    assert!(h.headers.contains_key("etag") && h.headers.contains_key("last-modified"));
    assert!(h.body.is_empty());
    let h = raw(
        &node.addr,
        "HEAD",
        "/repos/files/1/sub/big.bin",
        &[("Range", "bytes=0-9")],
    );
    assert_eq!(
        (h.status, h.headers["content-length"].as_str()),
        (206, "10")
    );
    assert!(h.body.is_empty());

    // Hostile and unknown paths: clear errors, never anything outside the tree.
    for (path, status) in [
        ("/repos/files/1/../1/a+b~c.txt", 400),
        ("/repos/files/1/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/repos/files/1/sub/%2E%2E/a+b~c.txt", 400),
        ("/repos/files/1/sub%2Fbig.bin", 400),
        ("/repos/files/1/sub%2fbig.bin", 400),
        ("/repos/files/1/./a+b~c.txt", 400),
        ("/repos/files/1//a+b~c.txt", 400),
        ("/repos/files/1/a%00b", 400),
        ("/repos/files/1/%ff", 400),
        ("/repos/files/1/sub/escape", 404),
        ("/repos/files/1/absolute", 404),
        ("/repos/files/1/nope.txt", 404),
        ("/repos/files/1/a+b~c.txt/", 404),
        ("/repos/files/1/a+b~c.txt/more", 404),
        ("/repos/files/9/a+b~c.txt", 404),
        ("/repos/nope/1/a+b~c.txt", 404),
        ("/repos/nope/", 404),
    ] {
        let r = raw(&node.addr, "GET", path, &[]);
        assert_eq!(
            r.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(!r.body.is_empty(), "{path}: an error says why");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("root:"),
            "{path}"
        );
    }
    let r = raw(&node.addr, "GET", "/repos/files/9/x", &[]);
    assert!(String::from_utf8_lossy(&r.body).contains("has no version \"9\""));
    let r = raw(&node.addr, "DELETE", "/repos/files/1/a+b~c.txt", &[]);
    assert_eq!(r.status, 405);

    // `/_ferry/repos` finds the PyPI index; the node still serves after all of that.
    let list: Vec<Value> = get("/_ferry/repos").json().unwrap();
    let files1 = list.iter().find(|r| r["release"] == "files").unwrap();
    assert_eq!(
        files1["repositories"],
        serde_json::json!([{"kind": "pypi", "path": "/repos/files/1/simple/"}])
    );
    assert_eq!(body("/repos/files/1/a%2Bb%7Ec.txt"), b"plus and tilde\n");
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn apt_by_hash_indexes_are_carried_and_used() {
    // apt-ftparchive makes no by-hash copies; a Release that asks for them (unsigned now, so apt trusts it
    // explicitly) must still work: the indexes are carried under by-hash/SHA256/<hex> too, and apt fetches them
    // from there.
    let repo = apt_repo();
    let s = Store::new();
    let copy = s.tmp_path("repo");
    copy_tree(&repo.root, &copy);
    let dists = copy.join("dists/stable");
    std::fs::remove_file(dists.join("InRelease")).unwrap();
    std::fs::remove_file(dists.join("Release.gpg")).unwrap();
    let mut release = std::fs::read_to_string(dists.join("Release")).unwrap();
    release.push_str("Acquire-By-Hash: yes\n");
    std::fs::write(dists.join("Release"), release).unwrap();
    s.add(
        "hash@1",
        &[&format!("apt:{}?components=main", copy.display())],
    );
    let carried = paths(&s, "hash@1");
    let xz = "dists/stable/main/binary-amd64/Packages.xz";
    let by_hash = format!(
        "dists/stable/main/binary-amd64/by-hash/SHA256/{}",
        sha256_file(&copy.join(xz))
    );
    assert_eq!(carried.get(&by_hash), carried.get(xz), "{carried:?}");
    let sha512 = carried
        .keys()
        .filter(|p| p.starts_with("dists/stable/main/binary-amd64/by-hash/SHA512/"))
        .count();
    assert_eq!(
        sha512, 3,
        "Packages, .gz and .xz under SHA512 too: {carried:?}"
    );

    let node = Node::start(&s.path);
    let dir = s.tmp_path("apt");
    let a = AptClient::new(
        &dir,
        &repo.key,
        &node.url("/repos/hash/1"),
        "stable",
        "main",
    );
    std::fs::write(
        dir.join("sources.list"),
        format!(
            "deb [trusted=yes] {} stable main\n",
            node.url("/repos/hash/1")
        ),
    )
    .unwrap();
    let out = a.run(&["-o", "Debug::Acquire::http=1", "update"]).ok();
    assert!(
        out.stderr.contains("/binary-amd64/by-hash/SHA512/"),
        "apt did not fetch by hash:\n{out}"
    );
    // No fallback to the plain name: the by-hash copy answered.
    assert!(
        !out.stderr.contains("binary-amd64/Packages.xz HTTP") && !out.stdout.contains("Err:"),
        "{out}"
    );
    let got = a.download("libssl3");
    assert_eq!(
        sha256_file(&got),
        sha256_file(&repo.root.join(repo.pool_file("libssl3")))
    );
}
