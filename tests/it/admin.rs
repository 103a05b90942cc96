//! The admin socket: every `ferry` command works on a store while a node serves it, through the node; only the
//! store's owner gets in; the socket goes away with the node.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use ferry_tests::cmd;
use ferry_tests::ferry::{self, Store};
use ferry_tests::fixtures::images;
use ferry_tests::fsutil::sha256_hex;
use ferry_tests::node::Node;

use crate::oci::oci;

#[test]
fn commands_run_through_the_node_while_it_serves() {
    let s = Store::new();
    let node = Node::start(&s.path);
    let socket = s.path.join("admin.sock");
    let mode = std::fs::metadata(&socket)
        .expect("the node made STORE/admin.sock")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin socket mode {mode:o}");

    // Relative paths are the client's: they resolve against its working directory, not the node's.
    let work = s.tmp_path("work");
    std::fs::create_dir_all(work.join("tree/sub")).unwrap();
    std::fs::write(work.join("tree/a.txt"), b"alpha\n").unwrap();
    std::fs::write(work.join("tree/sub/b.bin"), vec![7u8; 300_000]).unwrap();
    let added = cmd::run(
        ferry::command(&s.path, ["add", "files@1", "dir:tree", "--json"]).current_dir(&work),
    )
    .ok();
    assert_eq!(added.json()["release"], "files@1", "{added}");

    let imgs = images();
    s.add("img@1", &[&oci(&imgs.layout, "v1")]);
    let names: Vec<String> = s
        .ls()
        .iter()
        .map(|r| {
            format!(
                "{}@{}",
                r["name"].as_str().unwrap(),
                r["version"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        names.contains(&"files@1".to_string()) && names.contains(&"img@1".to_string()),
        "{names:?}"
    );

    // What the node just took in is served at once, without a restart.
    let manifest = reqwest::blocking::get(node.url("/v2/img/manifests/v1")).unwrap();
    assert_eq!(manifest.status(), 200);

    cmd::run(ferry::command(&s.path, ["get", "files@1", "--out", "dir:out"]).current_dir(&work))
        .ok();
    assert_eq!(std::fs::read(work.join("out/a.txt")).unwrap(), b"alpha\n");
    assert_eq!(
        sha256_hex(&std::fs::read(work.join("out/sub/b.bin")).unwrap()),
        sha256_hex(&vec![7u8; 300_000])
    );

    let fsck = s.run(["fsck"]).ok();
    assert!(fsck.stdout.starts_with("ok: "), "{fsck}");
    assert!(
        fsck.stdout.contains("2 releases checked; 0 problems"),
        "{fsck}"
    );

    // Errors and exit codes come back as they would locally.
    let missing = s.run(["show", "nope@1"]).expect_code(1);
    assert!(missing.error_line().contains("nope@1"), "{missing}");
    let again = s.run([
        "add",
        "files@1",
        &format!("dir:{}", work.join("tree").display()),
    ]);
    assert_eq!(again.code, Some(1), "{again}");
    let second = s.run(["serve", "--listen", "127.0.0.1:0"]).expect_code(1);
    assert!(second.error_line().contains("already serving"), "{second}");

    // A reader that stops early (`| head -1`) ends the client quietly and the node keeps going.
    let mut ls = ferry::command(&s.path, ["ls"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(ls.stdout.take());
    let status = ls.wait().unwrap();
    assert_eq!(status.code(), Some(0), "ls into a closed pipe: {status}");
    assert_eq!(s.ls().len(), 2);

    assert_eq!(node.stop(), Some(0));
    assert!(
        !socket.exists(),
        "the node removes its socket when it stops"
    );
    // The store is the CLI's again.
    assert_eq!(s.ls().len(), 2);
}

#[test]
fn only_the_store_owner_reaches_the_node() {
    let s = Store::new();
    let node = Node::start(&s.path);
    let socket = s.path.join("admin.sock");
    // Loosen the store's and the socket's modes (0700 and 0600) so the connection reaches the node's own check,
    // by the peer's uid.
    std::fs::set_permissions(&s.path, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut as_nobody = std::process::Command::new("setpriv");
    as_nobody
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(ferry::bin())
        .arg("--store")
        .arg(&s.path)
        .arg("ls")
        .env("NO_COLOR", "1");
    let out = cmd::run(&mut as_nobody);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("only to the store's owner"), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn a_stale_socket_does_not_stop_the_cli() {
    let s = Store::new();
    let node = Node::start(&s.path);
    let socket = s.path.join("admin.sock");
    // kill -9: no clean shutdown, the socket file stays behind.
    let pid = node.pid();
    cmd::run_ok("kill", ["-KILL", &pid.to_string()]);
    node.wait_exit();
    assert!(socket.exists());
    assert!(s.ls().is_empty());
    // And the next node replaces it.
    let node = Node::start(&s.path);
    assert!(s.ls().is_empty());
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn serve_reads_its_config_file_and_names_a_typo() {
    let s = Store::new();
    let cfg = s.tmp_path("node.toml");
    std::fs::write(&cfg, "[http]\nlisten = \"127.0.0.1:0\"\nlisen = \"x\"\n").unwrap();
    let out = s
        .run(["serve", "--config", cfg.to_str().unwrap()])
        .expect_code(1);
    let line = out.error_line();
    assert!(
        line.contains("node.toml:3") && line.contains("unknown field `lisen`"),
        "{out}"
    );
    // Without --config, STORE/node.toml is the one read.
    std::fs::write(s.path.join("node.toml"), "[auth]\npush_tokens = 1\n").unwrap();
    let out = s.run(["serve", "--listen", "127.0.0.1:0"]).expect_code(1);
    assert!(out.error_line().contains("store/node.toml:2"), "{out}");
}

/// README's first command: a store with the sample release, served at once, pulled by a real client.
#[test]
fn quickstart_serves_its_sample_release() {
    let tmp = ferry_tests::tempdir();
    let store = tmp.path().join("store");
    let sample = tmp.path().join("sample");
    let node = Node::spawn(ferry::command(
        &store,
        [
            "quickstart",
            "--out",
            sample.to_str().unwrap(),
            "--serve",
            "--listen",
            "127.0.0.1:0",
        ],
    ));
    let raw = cmd::run_ok(
        "skopeo",
        [
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/sample:1.0", node.addr),
        ],
    );
    // The manifest a client gets is byte for byte the one the quickstart wrote out.
    let written = ferry_tests::fixtures::load_manifest(&sample.join("oci"), "1.0");
    assert_eq!(raw.stdout_bytes, written.raw);
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw.stdout_bytes)),
        written.digest
    );
    let pulled = tmp.path().join("pulled");
    cmd::run_ok(
        "skopeo",
        [
            "copy",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{}/sample:1.0", node.addr),
            &format!("dir:{}", pulled.display()),
        ],
    );
    for layer in &written.layers {
        let hex = layer.trim_start_matches("sha256:");
        assert_eq!(sha256_hex(&std::fs::read(pulled.join(hex)).unwrap()), hex);
    }
    assert_eq!(node.stop(), Some(0));
}
