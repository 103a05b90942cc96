//! Ferry as a system service: the Debian package and what it holds, installed into a root with dpkg; its
//! systemd units as systemd-analyze sees them; its completions loaded by bash and its man pages rendered by man;
//! the OCI image built from the package, run by podman and carried by Ferry itself; and `ferry serve` speaking
//! systemd's notify protocol (ready once it listens, reloading its token files on SIGHUP).

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_tests::cmd::{run, run_ok};
use ferry_tests::ferry::{self, Store};
use ferry_tests::node::Node;
use ferry_tests::podman::Podman;

/// The package built from the test build's binary, in `dir`.
fn build_deb(dir: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/package/deb");
    let out = run_ok(
        script.to_str().unwrap(),
        [
            "--binary",
            ferry::bin().to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--fast",
        ],
    );
    PathBuf::from(out.stdout.trim())
}

#[test]
fn the_debian_package_installs_and_holds_units_completions_and_man_pages() {
    let s = Store::new();
    let work = s.tmp_path("package");
    let deb = build_deb(&work);
    let version = run_ok(ferry::bin().to_str().unwrap(), ["--version"]).stdout;
    assert!(
        deb.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!(
                "ferry_{}_",
                version.split_whitespace().nth(1).unwrap()
            )),
        "{deb:?}"
    );

    // What it holds, as dpkg lists it.
    let listing = run_ok("dpkg", ["-c", deb.to_str().unwrap()]).stdout;
    for path in [
        "./usr/bin/ferry",
        "./lib/systemd/system/ferry.service",
        "./lib/systemd/system/ferry-gc.service",
        "./lib/systemd/system/ferry-gc.timer",
        "./usr/lib/sysusers.d/ferry.conf",
        "./usr/lib/tmpfiles.d/ferry.conf",
        "./usr/share/bash-completion/completions/ferry",
        "./usr/share/zsh/vendor-completions/_ferry",
        "./usr/share/fish/vendor_completions.d/ferry.fish",
        "./usr/share/man/man1/ferry.1.gz",
        "./usr/share/man/man1/ferry-serve.1.gz",
        "./usr/share/man/man1/ferry-pin-set.1.gz",
        "./usr/share/doc/ferry/copyright",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} missing:\n{listing}"
        );
    }
    assert!(
        listing.lines().all(|l| l.contains("root/root")),
        "{listing}"
    );

    // Installed into an empty root: dpkg runs the maintainer scripts against DPKG_ROOT, which make the ferry user
    // and its state directory there.
    let root = work.join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let root_arg = format!("--root={}", root.display());
    run_ok(
        "dpkg",
        [
            root_arg.as_str(),
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
            "--install",
            deb.to_str().unwrap(),
        ],
    );
    let status = run_ok("dpkg", [root_arg.as_str(), "--status", "ferry"]).stdout;
    assert!(status.contains("Status: install ok installed"), "{status}");
    let installed = root.join("usr/bin/ferry");
    assert_eq!(
        run_ok(installed.to_str().unwrap(), ["--version"]).stdout,
        version
    );
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("ferry:"))
        .unwrap_or_else(|| panic!("no ferry user:\n{passwd}"));
    assert!(user.contains(":/var/lib/ferry:"), "{user}");
    let state = fs::metadata(root.join("var/lib/ferry")).unwrap();
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(state.permissions().mode() & 0o777, 0o750);
        let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
        assert_eq!(state.uid(), uid);
    }

    // The units, as systemd reads them in that root: given the targets a system has (this machine's) and the
    // kill(1) ExecReload runs (procps's, on a real system), with the package's binary and man pages where the
    // units name them.
    let units = root.join("lib/systemd/system");
    for target in fs::read_dir("/lib/systemd/system").unwrap() {
        let target = target.unwrap().path();
        if target.extension().is_some_and(|e| e == "target") {
            fs::copy(&target, units.join(target.file_name().unwrap())).unwrap();
        }
    }
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy("/bin/kill", root.join("bin/kill")).unwrap();
    let verify = run(std::process::Command::new("systemd-analyze")
        .args([
            "verify",
            root_arg.as_str(),
            units.join("ferry.service").to_str().unwrap(),
            units.join("ferry-gc.service").to_str().unwrap(),
            units.join("ferry-gc.timer").to_str().unwrap(),
        ])
        .env("MANPATH", root.join("usr/share/man")));
    assert_eq!(verify.code, Some(0), "{verify}");
    assert!(
        verify.stderr.trim().is_empty(),
        "systemd-analyze has remarks:\n{verify}"
    );
    let service = fs::read_to_string(units.join("ferry.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/ferry",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(service.contains(line), "{line:?} not in ferry.service");
    }

    // bash loads the completions and completes subcommands and options.
    let script = root.join("usr/share/bash-completion/completions/ferry");
    let bash = run_ok(
        "bash",
        [
            "-c",
            &format!(
                "source {}; complete -p ferry; COMP_WORDS=(ferry pi); COMP_CWORD=1; _ferry ferry pi ferry; \
                 echo \"words: ${{COMPREPLY[*]}}\"; COMP_WORDS=(ferry add x --ver); COMP_CWORD=3; \
                 _ferry ferry --ver x; echo \"options: ${{COMPREPLY[*]}}\"",
                script.display()
            ),
        ],
    )
    .stdout;
    assert!(bash.contains("-F _ferry ferry"), "{bash}");
    assert!(bash.contains("words: pin\n"), "{bash}");
    assert!(bash.contains("options: --verify\n"), "{bash}");

    // man renders every page, each naming its command and options.
    let pages: Vec<PathBuf> = fs::read_dir(root.join("usr/share/man/man1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(pages.len() > 30, "{pages:?}");
    for page in &pages {
        let mut man = std::process::Command::new("man");
        man.args(["-l", page.to_str().unwrap()])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100");
        let out = run(&mut man);
        assert_eq!(out.code, Some(0), "{page:?}: {out}");
        let name = page
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".1.gz");
        assert!(out.stdout.contains(name), "{page:?}:\n{}", out.stdout);
    }
    let mut man = std::process::Command::new("man");
    man.args([
        "-l",
        root.join("usr/share/man/man1/ferry-add.1.gz")
            .to_str()
            .unwrap(),
    ])
    .env("MANPAGER", "cat");
    let add = run(&mut man).stdout;
    assert!(add.contains("--verify") && add.contains("NAME"), "{add}");
}

#[test]
fn the_image_built_from_the_package_runs_and_ferry_carries_it() {
    let s = Store::new();
    let work = s.tmp_path("image");
    let deb = build_deb(&work);
    let layout = work.join("layout");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/package/image");
    let image = run_ok(
        script.to_str().unwrap(),
        [deb.to_str().unwrap(), layout.to_str().unwrap()],
    )
    .stdout;
    let image = image.trim().to_string();
    let version = image.rsplit(':').next().unwrap().to_string();
    // podman runs containers here with runc and limits below the machine's (crun refuses its cgroup setup, and
    // both runtimes are refused raising the open-files and process limits).
    let podman = Podman::new(&work);
    let local = format!("localhost/ferry:{version}");
    run_ok(
        "skopeo",
        [
            "copy",
            "--quiet",
            &format!("oci:{image}"),
            &podman.storage(&local),
        ],
    );
    let id = local.as_str();
    let run_image = |args: &[&str]| {
        let mut all = vec![
            "--runtime",
            "runc",
            "run",
            "--rm",
            "--network=none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            id,
        ];
        all.extend_from_slice(args);
        podman.run(&all).ok().stdout
    };
    assert_eq!(run_image(&["--version"]).trim(), format!("ferry {version}"));
    // The image runs as the ferry user and makes its store where the service keeps it.
    let init = run_image(&["init", "--json"]);
    assert!(
        init.contains("\"store\": \"/var/lib/ferry/store\""),
        "{init}"
    );
    // Ferry takes its own image like any other, to carry it across the gap.
    let report = s.json(["add", &format!("ferry@{version}"), &format!("oci:{image}")]);
    assert!(report["release"].as_str().is_some(), "{report}");
    let show = s.show(&format!("ferry@{version}"));
    assert_eq!(ferry::images(&show).len(), 1, "{show}");
}

/// The next datagram on `sock`, as text.
fn notified(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification within 60 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn serve_tells_systemd_it_is_ready_and_reloads_its_token_files_on_sighup() {
    let s = Store::new();
    let socket = s.tmp_path("notify.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let tokens = s.tmp_path("push.tokens");
    fs::write(&tokens, "first\n").unwrap();
    let mut cmd = ferry::command(
        &s.path,
        [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--push-token-file",
            tokens.to_str().unwrap(),
        ],
    );
    cmd.env("NOTIFY_SOCKET", &socket);
    let node = Node::spawn(cmd);
    let ready = notified(&sock);
    assert!(
        ready.contains("READY=1")
            && ready.contains(&format!("STATUS=listening on http://{}", node.addr)),
        "{ready}"
    );
    let http = reqwest::blocking::Client::new();
    let push_with = |token: &str| {
        http.post(node.url("/v2/team/app/blobs/uploads/"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(push_with("first"), 202);
    assert_eq!(push_with("second"), 401);

    let hup = |node: &Node| run_ok("kill", ["-HUP", &node.pid().to_string()]);
    fs::write(&tokens, "second\n").unwrap();
    hup(&node);
    let reloaded = notified(&sock);
    assert!(
        reloaded.contains("READY=1") && reloaded.contains("STATUS=reloaded the token files"),
        "{reloaded}"
    );
    assert_eq!(push_with("second"), 202);
    assert_eq!(push_with("first"), 401);

    // A token file that cannot be read: the reload is refused, saying why, and the tokens in force stay.
    fs::remove_file(&tokens).unwrap();
    hup(&node);
    let refused = notified(&sock);
    assert!(
        refused.contains("STATUS=reload refused") && refused.contains("push.tokens"),
        "{refused}"
    );
    assert_eq!(push_with("second"), 202);

    // A setting a reload cannot apply (the upload limits): the tokens reload, and the status says what waits
    // for a restart.
    fs::write(&tokens, "second\n").unwrap();
    fs::write(s.path.join("node.toml"), "[uploads]\nmax_sessions = 3\n").unwrap();
    hup(&node);
    let waiting = notified(&sock);
    assert!(
        waiting.contains("STATUS=reloaded the token files; [uploads] changed and take a restart"),
        "{waiting}"
    );
    assert_eq!(push_with("second"), 202);
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn doctor_finds_each_broken_setup_and_names_the_fix() {
    let s = Store::new();
    let etc = s.tmp_path("etc");
    let units = s.tmp_path("units");
    fs::create_dir_all(&etc).unwrap();
    fs::create_dir_all(&units).unwrap();
    // The problems `ferry doctor --json` finds, as (check, what, fix).
    let doctor = || {
        let out = s.run([
            "doctor",
            "--etc",
            etc.to_str().unwrap(),
            "--units",
            units.to_str().unwrap(),
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor --json: {e}\n{out}"));
        let problems: Vec<(String, String, String)> = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .map(|c| {
                let text = |k: &str| c[k].as_str().unwrap().to_string();
                (text("check"), text("what"), text("fix"))
            })
            .collect();
        assert_eq!(
            out.code,
            Some(if problems.is_empty() { 0 } else { 1 }),
            "{out}"
        );
        assert_eq!(v["problems"], problems.len(), "{v}");
        problems
    };
    let only = |problems: Vec<(String, String, String)>, check: &str| {
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, check, "{problems:?}");
        let (_, what, fix) = problems.into_iter().next().unwrap();
        (what, fix)
    };
    assert_eq!(doctor(), vec![], "a fresh store is healthy");

    // 1. The store belongs to someone else.
    {
        use std::os::unix::fs::chown;
        chown(&s.path, Some(65534), None).unwrap();
        let (what, fix) = only(doctor(), "store");
        chown(&s.path, Some(0), None).unwrap();
        assert!(what.contains("belongs to uid 65534"), "{what}");
        assert!(
            fix.contains(&format!("chown -R 0 {}", s.path.display())),
            "{fix}"
        );
    }

    // 2. The upload reserve is more than the filesystem has free.
    let node_toml = s.path.join("node.toml");
    fs::write(
        &node_toml,
        "[uploads]\nmin_free_bytes = 1152921504606846976\n",
    )
    .unwrap();
    let (what, fix) = only(doctor(), "disk");
    assert!(what.contains("pushes are refused"), "{what}");
    assert!(fix.contains("min_free_bytes"), "{fix}");

    // 3. A peer dialled by id that the allow-list lacks (its connections back would be refused).
    let seed = Store::new();
    let seed_id = seed.run(["id"]).ok().stdout.trim().to_string();
    let seed_pub = seed.tmp_path("seed.pub");
    fs::write(&seed_pub, seed.run(["keys", "export"]).ok().stdout).unwrap();
    s.run(["trust", "add", seed_pub.to_str().unwrap()]).ok();
    fs::write(
        &node_toml,
        format!("[p2p]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\npeers = [\"/ip4/127.0.0.1/tcp/7701/p2p/{seed_id}\"]\n"),
    )
    .unwrap();
    let (what, fix) = only(doctor(), "peers");
    assert!(what.contains(&seed_id), "{what}");
    assert_eq!(fix, format!("`ferry peers allow {seed_id}`"));

    // 4. Syncing from peers without trusting the seed's key.
    s.run(["peers", "allow", &seed_id]).ok();
    assert_eq!(doctor(), vec![]);
    let key_id = seed.key_id.clone();
    s.run(["trust", "rm", &key_id]).ok();
    let (what, fix) = only(doctor(), "trust");
    assert!(what.contains("trusts no publisher key"), "{what}");
    assert!(fix.contains("ferry trust add"), "{fix}");
    s.run(["trust", "add", seed_pub.to_str().unwrap()]).ok();

    // 5. A client configuration pointing at another node's mirror (this one listens on 127.0.0.1:5050).
    fs::create_dir_all(etc.join("apt/sources.list.d")).unwrap();
    fs::write(
        etc.join("apt/sources.list.d/ferry.list"),
        "# mirrors from the site's node\n\
         deb http://127.0.0.1:5050/repos/debian/current/ bookworm main\n\
         deb [signed-by=/etc/apt/keyrings/ferry.asc] http://127.0.0.1:5999/repos/base/current/ bookworm main\n",
    )
    .unwrap();
    let (what, fix) = only(doctor(), "clients");
    assert!(
        what.contains("ferry.list line 3") && what.contains("127.0.0.1:5999"),
        "{what}"
    );
    assert!(fix.contains("ferry client-config"), "{fix}");
    fs::remove_file(etc.join("apt/sources.list.d/ferry.list")).unwrap();

    // And a service unit running this store that may not write it.
    fs::create_dir_all(etc.join("systemd/system")).unwrap();
    fs::write(
        etc.join("systemd/system/ferry.service"),
        format!(
            "[Service]\nEnvironment=FERRY_STORE={}\nExecStart=/usr/bin/ferry serve\nProtectSystem=strict\n\
             ReadWritePaths=/var/lib/ferry\n",
            s.path.display()
        ),
    )
    .unwrap();
    let (what, fix) = only(doctor(), "service");
    assert!(what.contains("ReadWritePaths"), "{what}");
    assert!(
        fix.contains(&format!("ReadWritePaths={}", s.path.display())),
        "{fix}"
    );
    fs::create_dir_all(etc.join("systemd/system/ferry.service.d")).unwrap();
    fs::write(
        etc.join("systemd/system/ferry.service.d/store.conf"),
        format!("[Service]\nReadWritePaths={}\n", s.path.display()),
    )
    .unwrap();
    assert_eq!(doctor(), vec![]);
}

/// `ferry serve` with network sync on loopback, its wall clock moved by `skew` (as libfaketime reads `FAKETIME`:
/// `+90s`), or on the machine's clock.
fn serve_skewed(store: &Store, skew: Option<&str>, extra: &[&str]) -> Node {
    let mut c = std::process::Command::new(ferry::bin());
    if let Some(skew) = skew {
        // libfaketime preloaded, as the `faketime` wrapper does; the wrapper itself would stand between the test
        // and the node's pid, and not pass its SIGTERM on.
        let lib = fs::read_dir("/usr/lib")
            .unwrap()
            .flatten()
            .map(|e| e.path().join("faketime/libfaketime.so.1"))
            .find(|p| p.is_file())
            .expect("libfaketime (Debian's faketime package; tools/ci-deps installs it)");
        c.env("LD_PRELOAD", lib).env("FAKETIME", skew);
        // Only the wall clock moves; timers keep the machine's.
        c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    }
    c.arg("--store")
        .arg(&store.path)
        .args(["--no-progress", "serve", "--listen", "127.0.0.1:0"])
        .args(["--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .args(extra)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    Node::spawn(c)
}

#[test]
fn doctor_finds_a_peer_whose_clock_is_off_and_one_the_allow_list_refuses() {
    use crate::sync::{allow_all, connected, peer_id, status, wait_for};
    let seed = Store::new();
    let site = Store::new();
    allow_all(&[&seed, &site]);
    let (seed_id, site_id) = (peer_id(&seed), peer_id(&site));
    let etc = site.tmp_path("etc");
    fs::create_dir_all(&etc).unwrap();
    // `ferry doctor --json` on `s`: its exit code and the named check.
    let doctor = |s: &Store, check: &str| {
        let out = s.run([
            "doctor",
            "--etc",
            etc.to_str().unwrap(),
            "--units",
            etc.to_str().unwrap(),
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor --json: {e}\n{out}"));
        let found = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == check)
            .unwrap_or_else(|| panic!("no {check} check: {v}"))
            .clone();
        (out.code, found)
    };
    let measured =
        |s: &Store, other: &str| status(s)["network"]["peers"][other]["clock_offset_ms"].as_i64();
    // The seed started (its clock moved by `skew`), and the site with the seed as its peer, both measured.
    let start = |skew: Option<&str>| {
        let seed_node = serve_skewed(&seed, skew, &[]);
        let seed_addr = seed_node.p2p.clone().expect("the seed's p2p address");
        let site_node = serve_skewed(&site, None, &["--peer", &seed_addr]);
        wait_for(
            "both nodes to measure each other's clock",
            Duration::from_secs(30),
            || {
                connected(&site) == 1
                    && measured(&site, &seed_id).is_some()
                    && measured(&seed, &site_id).is_some()
            },
        );
        (seed_node, site_node)
    };

    // With no node running, nothing measures the clocks, and doctor says so.
    let (code, clock) = doctor(&site, "clock");
    assert_eq!(code, Some(0), "{clock}");
    assert!(
        clock["what"].as_str().unwrap().contains("not checked"),
        "{clock}"
    );

    // The seed's clock runs 90 s ahead of the site's.
    let (seed_node, site_node) = start(Some("+90s"));
    let ahead = measured(&site, &seed_id).unwrap();
    let behind = measured(&seed, &site_id).unwrap();
    assert!((88_000..92_000).contains(&ahead), "{ahead} ms");
    assert!((-92_000..-88_000).contains(&behind), "{behind} ms");

    // Each node's doctor (run inside the node, which measured) names the other, which way, and the fix.
    let (code, clock) = doctor(&site, "clock");
    assert_eq!(code, Some(1), "{clock}");
    assert_eq!(clock["ok"], false, "{clock}");
    let what = clock["what"].as_str().unwrap();
    assert!(
        what.contains(&format!("{seed_id}'s clock is 9")) && what.contains(" s ahead of"),
        "{what}"
    );
    assert!(clock["fix"].as_str().unwrap().contains("chrony"), "{clock}");
    let (code, clock) = doctor(&seed, "clock");
    assert_eq!(code, Some(1), "{clock}");
    let what = clock["what"].as_str().unwrap();
    assert!(
        what.contains(&format!("{site_id}'s clock is 9")) && what.contains(" s behind"),
        "{what}"
    );
    // The metrics and the page show it too.
    let m = ferry_tests::metrics::scrape(&site_node.url("/metrics"));
    let gauge =
        ferry_tests::metrics::value(&m, "ferry_peer_clock_offset_seconds", &[("peer", &seed_id)])
            .expect("the clock gauge");
    assert!((88.0..92.0).contains(&gauge), "{gauge}");
    let page = reqwest::blocking::get(site_node.url("/"))
        .and_then(|r| r.text())
        .unwrap();
    assert!(
        page.contains("<td class=\"num bad\">+9"),
        "no skewed clock cell in the page"
    );
    assert_eq!(site_node.stop(), Some(0));
    assert_eq!(seed_node.stop(), Some(0));

    // Both back on the machine's clock: the check passes.
    let (seed_node, site_node) = start(None);
    let (code, clock) = doctor(&site, "clock");
    assert_eq!(code, Some(0), "{clock}");
    assert_eq!(clock["ok"], true, "{clock}");
    assert!(
        clock["what"]
            .as_str()
            .unwrap()
            .starts_with("1 of 1 connected peer(s) measured"),
        "{clock}"
    );
    assert!(measured(&site, &seed_id).unwrap().abs() < 2_000);

    // The allow-list from the other side: a node the seed does not list dials it and is refused. The seed's
    // doctor names it, and allowing it clears the problem.
    let other = Store::new();
    other.run(["peers", "allow", &seed_id]).ok();
    let other_id = peer_id(&other);
    let seed_addr = seed_node.p2p.clone().unwrap();
    let other_node = serve_skewed(&other, None, &["--peer", &seed_addr]);
    wait_for(
        "the seed to refuse the unlisted node",
        Duration::from_secs(30),
        || {
            status(&seed)["network"]["refused"]
                .to_string()
                .contains(&other_id)
        },
    );
    let (_, refused) = doctor(&seed, "peers");
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["what"].as_str().unwrap().contains(&other_id),
        "{refused}"
    );
    assert!(
        refused["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("`ferry peers allow {other_id}`")),
        "{refused}"
    );
    seed.run(["peers", "allow", &other_id]).ok();
    let (_, allowed) = doctor(&seed, "peers");
    assert_eq!(allowed["ok"], true, "{allowed}");
    assert_eq!(other_node.stop(), Some(0));
    assert_eq!(site_node.stop(), Some(0));
    assert_eq!(seed_node.stop(), Some(0));
}
