//! Partial apt mirrors over real Debian data: bookworm's own index (checked against Debian's keyring at ingest),
//! the closure of curl, jq and nginx, re-signed with the store's repository key, and a real `apt-get` on an
//! empty system installing them from the node alone with that key in `signed-by`.

use std::collections::BTreeSet;

use ferry_tests::apt::AptClient;
use ferry_tests::ferry::{entries, Store};
use ferry_tests::fixtures::{apt_repo, debian_partial};
use ferry_tests::node::Node;
use serde_json::Value;

const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

fn source(root: &std::path::Path, query: &str) -> String {
    format!(
        "apt:{}?suites=bookworm&components=main&architectures=amd64&{query}",
        root.display()
    )
}

/// The release's file paths.
fn carried(s: &Store, release: &str) -> BTreeSet<String> {
    entries(&s.show(release))
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn apt_installs_the_closure_from_a_partial_mirror_signed_by_the_store() {
    let deb = debian_partial();
    let s = Store::new();
    s.add(
        "part@1",
        &[&source(
            &deb.root,
            &format!("packages=curl,jq,nginx&keyring={DEBIAN_KEYRING}"),
        )],
    );

    // Exactly the pool files apt resolves for the same request over the whole index, and the indexes ferry
    // wrote and signed; nothing else of the 63,000 packages.
    let paths = carried(&s, "part@1");
    let pool: BTreeSet<String> = paths
        .iter()
        .filter(|p| p.starts_with("pool/"))
        .cloned()
        .collect();
    let apt_would = deb.apt_would_fetch(deb.packages, false);
    assert!(apt_would.len() > 40, "{apt_would:?}");
    assert_eq!(pool, apt_would, "the closure differs from apt's");
    let others: BTreeSet<&str> = paths
        .iter()
        .filter(|p| !p.starts_with("pool/"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        others,
        BTreeSet::from([
            "dists/bookworm/InRelease",
            "dists/bookworm/Release",
            "dists/bookworm/Release.gpg",
            "dists/bookworm/main/binary-amd64/Packages",
            "dists/bookworm/main/binary-amd64/Packages.gz",
            "dists/bookworm/main/binary-amd64/Packages.xz",
            "ferry-closure.json",
            "ferry-repository-key.asc",
        ])
    );

    // The store's key, as `ferry keys export --openpgp` prints it, is the one the mirror carries.
    let export = s.run(["keys", "export", "--openpgp"]).ok();
    assert!(export.stderr.contains("fingerprint "), "{export}");
    let key_file = s.tmp_path("ferry-key.asc");
    std::fs::write(&key_file, &export.stdout).unwrap();

    let node = Node::start(&s.path);
    let http = reqwest::blocking::Client::new();
    let served_key = http
        .get(node.url("/repos/part/1/ferry-repository-key.asc"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(served_key.trim(), export.stdout.trim());

    // Why each package is there, and who signed what.
    let report: Value = http
        .get(node.url("/repos/part/1/ferry-closure.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let fingerprint = export.stderr.split("fingerprint ").nth(1).unwrap().trim();
    assert_eq!(report["signed_by"], fingerprint);
    assert!(
        report["upstream_signers"]["bookworm"]
            .as_str()
            .is_some_and(|f| f.len() == 40),
        "{report}"
    );
    let pkg = |name: &str| {
        report["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["package"] == name)
            .unwrap_or_else(|| panic!("{name} not in {report}"))
            .clone()
    };
    assert_eq!(pkg("curl")["reason"], "requested");
    assert_eq!(pkg("libcurl4")["reason"], "Depends");
    assert!(
        pkg("libcurl4")["of"].as_str().unwrap().starts_with("curl "),
        "{report}"
    );
    assert_eq!(
        report["packages"].as_array().unwrap().len(),
        apt_would.len()
    );

    // A real apt on an empty system: update through the new InRelease with the exported key (no
    // [trusted=yes]), then install --download-only of the three from the node alone.
    let dir = s.tmp_path("apt");
    let a = AptClient::new(
        &dir,
        &key_file,
        &node.url("/repos/part/1"),
        "bookworm",
        "main",
    );
    a.update();
    let empty = dir.join("empty-status");
    std::fs::write(&empty, "").unwrap();
    let status = format!("Dir::State::status={}", empty.display());
    let mut args = vec![
        "-o",
        &status,
        "-o",
        "APT::Install-Recommends=false",
        "-o",
        "APT::Architecture=amd64",
        "install",
        "--download-only",
        "-y",
    ];
    args.extend(deb.packages);
    a.run(&args).ok();
    let fetched: BTreeSet<String> = std::fs::read_dir(dir.join("cache/archives"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb"))
        .map(|n| n.replace("%3a", ":"))
        .collect();
    let want: BTreeSet<String> = apt_would
        .iter()
        .map(|p| p.rsplit('/').next().unwrap().to_string())
        .collect();
    // apt names a downloaded file with its epoch; the pool's name has none.
    let strip_epoch = |n: &String| {
        let mut parts: Vec<&str> = n.splitn(3, '_').collect();
        if let Some(v) = parts.get_mut(1) {
            *v = v.split_once(':').map_or(*v, |(_, rest)| rest);
        }
        parts.join("_")
    };
    assert_eq!(
        fetched.iter().map(strip_epoch).collect::<BTreeSet<_>>(),
        want
    );

    // client-config names the key the mirror carries, and where to put it.
    let lines = s
        .run(["client-config", "apt", "--node", &node.url("")])
        .ok();
    assert_eq!(
        lines.stdout.trim(),
        format!(
            "deb [signed-by=/etc/apt/keyrings/ferry-part.asc] {} bookworm main",
            node.url("/repos/part/current/")
        ),
        "{lines}"
    );
    assert!(
        lines.stderr.contains(&format!(
            "curl -fsSL {} -o /etc/apt/keyrings/ferry-part.asc",
            node.url("/repos/part/1/ferry-repository-key.asc")
        )),
        "{lines}"
    );
    assert_eq!(node.stop(), Some(0));

    // `show --why`: the chain from a library up to what was asked for.
    let why = s.run(["show", "part@1", "--why", "libssl3"]).ok();
    let lines: Vec<&str> = why.stdout.lines().collect();
    assert!(lines[0].starts_with("libssl3 "), "{why}");
    assert!(lines.last().unwrap().contains("requested as "), "{why}");
    assert!(lines.len() >= 2, "{why}");
    let none = s.run(["show", "part@1", "--why", "emacs"]).expect_code(1);
    assert!(
        none.error_line().contains("holds no package \"emacs\""),
        "{none}"
    );

    // The next version drops nginx and takes Recommends: `ferry diff` says which packages came and went, and
    // why each new one is there.
    s.add(
        "part@2",
        &[&source(&deb.root, "packages=curl,jq&recommends=yes")],
    );
    let diff = s.json(["diff", "part@1", "part@2"]);
    let closure = &diff["apt_closure"];
    let names = |kind: &str| -> BTreeSet<String> {
        closure[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["package"].as_str().unwrap().to_string())
            .collect()
    };
    let gone = names("removed");
    assert!(
        gone.contains("nginx") && gone.contains("nginx-common"),
        "{diff}"
    );
    assert!(!gone.contains("curl"), "{diff}");
    let came: Vec<&Value> = closure["added"].as_array().unwrap().iter().collect();
    let ca = came
        .iter()
        .find(|p| p["package"] == "ca-certificates")
        .unwrap_or_else(|| panic!("{diff}"));
    assert!(
        ca["why"].as_str().unwrap().starts_with("Recommends of "),
        "{diff}"
    );
    assert!(closure["upgraded"].as_array().unwrap().is_empty(), "{diff}");
    let text = s.run(["diff", "part@1", "part@2"]).ok();
    assert!(text.stdout.contains("  - apt nginx "), "{text}");
    assert!(text.stdout.contains("  + apt ca-certificates "), "{text}");
}

#[test]
fn partial_mirror_refusals_name_the_problem_and_store_nothing() {
    let deb = debian_partial();
    let s = Store::new();
    let refused = |query: &str| {
        let out = s
            .run(["add", "bad@1", &source(&deb.root, query)])
            .expect_code(1);
        out.error_lines().join("\n")
    };

    // A package nothing provides, listed with who needs it.
    let e = refused("packages=curl,no-such-package-here");
    assert!(
        e.contains("no-such-package-here (needed by requested)"),
        "{e}"
    );
    // A pin no version meets together with what depends on it.
    let e = refused("packages=libcurl4=7.0-1");
    assert!(e.contains("libcurl4=7.0-1 (needed by requested)"), "{e}");
    let e = refused("packages=libssl3=3.0.0-0,curl");
    assert!(e.contains("no-such") || e.contains("libssl3"), "{e}");
    // The wrong upstream key: Debian's InRelease is not signed by the test repository's throwaway key.
    let e = refused(&format!(
        "packages=curl&keyring={}",
        apt_repo().key.display()
    ));
    assert!(e.contains("upstream signature refused"), "{e}");
    assert!(e.contains("dists/bookworm/InRelease"), "{e}");
    // Options without packages, and a list file that is not there.
    let e = refused("recommends=yes");
    assert!(e.contains("packages="), "{e}");
    let e = refused("packages-file=/nonexistent/list");
    assert!(e.contains("/nonexistent/list"), "{e}");

    // A malformed stanza in an index whose Release vouches for it: named by index and line.
    let dir = s.tmp_path("bad-repo");
    let idx = dir.join("dists/x/main/binary-amd64");
    std::fs::create_dir_all(&idx).unwrap();
    let packages = "Package: a\nVersion: 1\nArchitecture: amd64\n\nPackage: b\nVersion 2\n";
    std::fs::write(idx.join("Packages"), packages).unwrap();
    let sha = ferry_tests::fsutil::sha256_hex(packages.as_bytes());
    std::fs::write(
        dir.join("dists/x/Release"),
        format!(
            "Suite: x\nComponents: main\nArchitectures: amd64\nSHA256:\n {sha} {} main/binary-amd64/Packages\n",
            packages.len()
        ),
    )
    .unwrap();
    let out = s
        .run(["add", "bad@1", &format!("apt:{}?packages=a", dir.display())])
        .expect_code(1);
    let e = out.error_lines().join("\n");
    assert!(e.contains("dists/x/main/binary-amd64/Packages"), "{e}");
    assert!(e.contains("the stanza at line 5"), "{e}");

    // --plan: the closure with sizes and reasons, nothing fetched or stored.
    let plan = s.json([
        "add",
        "plan@1",
        &source(&deb.root, "packages=curl,jq,nginx"),
        "--plan",
    ]);
    let planned: BTreeSet<String> = plan[0]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["filename"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(planned, deb.apt_would_fetch(deb.packages, false));
    let sizes: u64 = plan[0]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["size"].as_u64().unwrap())
        .sum();
    assert_eq!(plan[0]["bytes"].as_u64().unwrap(), sizes);
    assert!(sizes > 1_000_000, "{plan}");
    let e = s
        .run(["add", "plan@1", "dir:/etc", "--plan"])
        .expect_code(1);
    assert!(e.error_line().contains("--plan"), "{e}");

    // Nothing of any of them was stored as a release.
    assert!(s.ls().is_empty(), "{:?}", s.ls());
}
