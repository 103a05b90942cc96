//! Partial apt mirrors over real Debian data: bookworm's own index (checked against Debian's keyring at ingest),
//! the closure of curl, jq and nginx, re-signed with the store's repository key, and a real `apt-get` on an
//! empty system installing them from the node alone with that key in `signed-by`. Partial yum mirrors over
//! signed rpms built for the purpose: the closure dnf itself resolves, re-signed, read by a real dnf with
//! `gpgcheck` and `repo_gpgcheck` into an empty installroot. Partial PyPI mirrors over real distributions among
//! decoys: exactly what pip picks, served as a simple index, installed by pip into a fresh venv from it alone.

use std::collections::{BTreeMap, BTreeSet};

use crate::pkgs::{dnf_download_from, dnf_download_with};
use ferry_tests::apt::AptClient;
use ferry_tests::ferry::{entries, Store};
use ferry_tests::fixtures::{apt_repo, debian_partial, pypi_partial, rpm_deps};
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
    let closure = &diff["closure"];
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

/// The rpm files in `dir`.
fn rpm_files(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rpm"))
        .collect()
}

fn yum_source(query: &str) -> String {
    format!("yum:{}?{query}", rpm_deps().yum.display())
}

#[test]
fn dnf_installs_the_closure_from_a_partial_yum_mirror_signed_by_the_store() {
    let fx = rpm_deps();
    let s = Store::new();
    s.add(
        "el@1",
        &[&yum_source(&format!(
            "packages=app&keyring={}",
            fx.key.display()
        ))],
    );

    // dnf itself, over the whole repository (package signatures and repomd.xml checked against the upstream
    // key), resolves `app` to exactly the rpms the mirror carries.
    let full_url = format!("file://{}", fx.yum.display());
    let (run, dl) = dnf_download_from(
        &full_url,
        true,
        &[&fx.key],
        &["app"],
        &s.tmp_path("dnf-full"),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let want = rpm_files(&dl);
    assert_eq!(want.len(), 8, "{want:?}");
    assert!(want.contains("libfoo-1.3-1.noarch.rpm"), "{want:?}");
    let paths = carried(&s, "el@1");
    let rpms: BTreeSet<String> = paths
        .iter()
        .filter_map(|p| p.strip_prefix("yum/Packages/"))
        .map(str::to_string)
        .collect();
    assert_eq!(rpms, want, "the closure differs from dnf's");
    let mut meta: Vec<String> = paths
        .iter()
        .filter(|p| p.starts_with("yum/repodata/"))
        .map(|p| {
            // `repodata/<sha256>-primary.xml.zst` → `primary.xml.zst`
            let name = p.rsplit('/').next().unwrap();
            name.split_once('-').map_or(name, |(_, k)| k).to_string()
        })
        .collect();
    meta.sort();
    let ext = std::fs::read_dir(fx.yum.join("repodata"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find_map(|n| n.split_once("-primary.xml").map(|(_, ext)| ext.to_string()))
        .unwrap();
    assert_eq!(
        meta,
        [
            format!("filelists.xml{ext}"),
            format!("other.xml{ext}"),
            format!("primary.xml{ext}"),
            "repomd.xml".into(),
            "repomd.xml.asc".into(),
        ],
        "{paths:?}"
    );
    assert!(
        paths.contains("yum/ferry-closure.json") && paths.contains("yum/ferry-repository-key.asc")
    );

    // A real dnf on an empty installroot, from the node alone: the metadata checked against the store's key
    // (repo_gpgcheck), every rpm against the publisher's (gpgcheck) — the rpms are the publisher's bytes.
    let export = s.run(["keys", "export", "--openpgp"]).ok();
    let node = Node::start(&s.path);
    let url = node.url("/repos/el/1/yum");
    let served_key = reqwest::blocking::get(node.url("/repos/el/1/yum/ferry-repository-key.asc"))
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(served_key.trim(), export.stdout.trim());
    // The .repo file is client-config's: the store's key as the node serves it, and the publisher's.
    let repo = s
        .run([
            "client-config",
            "dnf",
            "--node",
            &node.url(""),
            "--signed-by",
            fx.key.to_str().unwrap(),
        ])
        .ok();
    assert!(
        repo.stdout.contains(&format!(
            "gpgkey={} file://{}",
            node.url("/repos/el/current/yum/ferry-repository-key.asc"),
            fx.key.display()
        )) || repo.stdout.contains(&format!(
            "gpgkey={} file://{}",
            node.url("/repos/el/1/yum/ferry-repository-key.asc"),
            fx.key.display()
        )),
        "{repo}"
    );
    assert!(
        repo.stdout.contains("gpgcheck=1\nrepo_gpgcheck=1"),
        "{repo}"
    );
    let (run, dl) = dnf_download_with(&repo.stdout, &["app"], &s.tmp_path("dnf"));
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stderr.contains("Importing GPG key"), "{run}");
    assert_eq!(rpm_files(&dl), want);
    for rpm in &want {
        assert_eq!(
            std::fs::read(dl.join(rpm)).unwrap(),
            std::fs::read(fx.yum.join("Packages").join(rpm)).unwrap(),
            "{rpm}"
        );
    }
    // The check is real: the publisher's key alone does not vouch for the mirror's metadata.
    let (run, _) = dnf_download_from(
        &url,
        false,
        &[&fx.key],
        &["app"],
        &s.tmp_path("dnf-upstream-key"),
    );
    assert_ne!(
        run.code,
        Some(0),
        "dnf must refuse metadata the store re-signed:\n{run}"
    );
    assert!(run.stderr.contains("signature verification error"), "{run}");

    let report: Value = reqwest::blocking::get(node.url("/repos/el/1/yum/ferry-closure.json"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(report["format"], "yum");
    assert_eq!(
        report["signed_by"],
        export.stderr.split("fingerprint ").nth(1).unwrap().trim()
    );
    assert!(
        report["upstream_signers"]["repodata/repomd.xml"]
            .as_str()
            .is_some_and(|f| f.len() == 40),
        "{report}"
    );
    assert_eq!(node.stop(), Some(0));

    // Why: fdata is there for a file app requires that only filelists.xml lists; libbar for libfoo.
    let why = s.run(["show", "el@1", "--why", "fdata"]).ok();
    assert!(
        why.stdout
            .contains("Requires of app 2.0-1 (noarch): /usr/share/fdata/table.dat"),
        "{why}"
    );
    let why = s.run(["show", "el@1", "--why", "libbar"]).ok();
    let lines: Vec<&str> = why.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{why}");
    assert!(
        lines[1]
            .trim_start()
            .starts_with("libfoo 1.3-1 (noarch) — Requires of app"),
        "{why}"
    );
    assert!(lines[2].contains("requested as app"), "{why}");

    // With with-extras asked for, the conditional dependency comes in — as dnf resolves it too — and `ferry
    // diff` says so, with why.
    s.add("el@2", &[&yum_source("packages=app,with-extras")]);
    let (run, dl) = dnf_download_from(
        &full_url,
        true,
        &[&fx.key],
        &["app", "with-extras"],
        &s.tmp_path("dnf-full-2"),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let carried2: BTreeSet<String> = carried(&s, "el@2")
        .iter()
        .filter_map(|p| p.strip_prefix("yum/Packages/"))
        .map(str::to_string)
        .collect();
    assert_eq!(carried2, rpm_files(&dl));
    let diff = s.json(["diff", "el@1", "el@2"]);
    let closure = &diff["closure"];
    assert_eq!(closure["format"], "yum", "{diff}");
    let added: BTreeMap<String, String> = closure["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["package"].as_str().unwrap().into(),
                p["why"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(added.len(), 2, "{diff}");
    assert_eq!(added["with-extras"], "requested as with-extras");
    assert_eq!(
        added["extra-a"],
        "Requires of app 2.0-1 (noarch): (extra-a if with-extras)"
    );
    let text = s.run(["diff", "el@1", "el@2"]).ok();
    assert!(
        text.stdout.contains("  + yum extra-a 1.0-1 (noarch)"),
        "{text}"
    );
}

#[test]
fn partial_yum_refusals_name_the_problem_and_store_nothing() {
    let s = Store::new();
    let refused = |source: &str| {
        let out = s.run(["add", "bad@1", source]).expect_code(1);
        out.error_lines().join("\n")
    };
    // What nothing provides, with who needs it; with allow-missing=yes, carried and listed.
    let e = refused(&yum_source("packages=broken,ghost"));
    assert!(
        e.contains("nonexistent >= 3 (needed by broken-1.0-1.noarch Requires)"),
        "{e}"
    );
    assert!(e.contains("ghost (needed by requested)"), "{e}");
    s.add(
        "lenient@1",
        &[&yum_source("packages=broken&allow-missing=yes")],
    );
    let rpms: Vec<String> = carried(&s, "lenient@1")
        .into_iter()
        .filter(|p| p.ends_with(".rpm"))
        .collect();
    assert_eq!(rpms, ["yum/Packages/broken-1.0-1.noarch.rpm"]);
    // A version asked for that a dependency rules out.
    let e = refused(&yum_source("packages=libfoo = 1.0,app"));
    assert!(
        e.contains("no version of libfoo") || e.contains("libfoo"),
        "{e}"
    );
    assert!(e.contains("conflicting requirements"), "{e}");
    // The wrong upstream key.
    let e = refused(&yum_source(&format!(
        "packages=app&keyring={}",
        apt_repo().key.display()
    )));
    assert!(e.contains("repodata/repomd.xml"), "{e}");
    // Options without packages.
    let e = refused(&yum_source("allow-missing=yes"));
    assert!(e.contains("packages="), "{e}");

    // A malformed primary.xml that repomd.xml vouches for: named by file and package.
    let dir = s.tmp_path("bad-yum");
    std::fs::create_dir_all(dir.join("repodata")).unwrap();
    let primary = r#"<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
<package type="rpm"><name>a</name><arch>noarch</arch><version ver="1" rel="1"/><checksum type="sha256">00</checksum>
<location href="a.rpm"/><format><rpm:requires><rpm:entry name="b" flags="SOON" ver="2"/></rpm:requires></format></package>
</metadata>"#;
    std::fs::write(dir.join("repodata/primary.xml"), primary).unwrap();
    let sha = ferry_tests::fsutil::sha256_hex(primary.as_bytes());
    std::fs::write(
        dir.join("repodata/repomd.xml"),
        format!(
            "<repomd><data type=\"primary\"><checksum type=\"sha256\">{sha}</checksum><location href=\"repodata/primary.xml\"/></data></repomd>"
        ),
    )
    .unwrap();
    let e = refused(&format!("yum:{}?packages=a", dir.display()));
    assert!(e.contains("repodata/primary.xml"), "{e}");
    assert!(e.contains("package a: b: unknown flags \"SOON\""), "{e}");

    // --plan: the closure with sizes and reasons, nothing stored.
    let plan = s.json(["add", "plan@1", &yum_source("packages=app"), "--plan"]);
    let planned: BTreeSet<&str> = plan[0]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["package"].as_str().unwrap())
        .collect();
    assert_eq!(
        planned,
        BTreeSet::from([
            "app",
            "ctool",
            "fdata",
            "fhelper",
            "libbar",
            "libfoo",
            "pya",
            "setup-pkg"
        ])
    );
    assert!(plan[0]["bytes"].as_u64().unwrap() > 8 * 1000, "{plan}");
    assert_eq!(s.ls().len(), 1, "only lenient@1: {:?}", s.ls());
}

/// This machine's python3, `3.11`.
fn host_python() -> String {
    let out = ferry_tests::cmd::run(
        std::process::Command::new("python3")
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]),
    );
    assert_eq!(out.code, Some(0), "{out}");
    out.stdout.trim().to_string()
}

fn pypi_source(fx: &ferry_tests::fixtures::PypiPartial, requirements: &std::path::Path) -> String {
    format!(
        "pypi:{}?requirements={}&python={}&platform=manylinux_2_28_x86_64",
        fx.dists.display(),
        requirements.display(),
        host_python()
    )
}

#[test]
fn pip_installs_the_requirements_from_a_partial_pypi_mirror_into_a_fresh_venv() {
    let fx = pypi_partial();
    let s = Store::new();
    s.add("py@1", &[&pypi_source(fx, &fx.requirements)]);

    // Exactly the files pip itself picks from the same directory, decoys and all, and their index.
    let paths = carried(&s, "py@1");
    let files: Vec<String> = paths
        .iter()
        .filter_map(|p| p.strip_prefix("pypi/packages/"))
        .filter(|p| !p.ends_with(".metadata"))
        .map(str::to_string)
        .collect();
    assert_eq!(files, fx.expected, "the resolution differs from pip's");
    assert!(paths.contains("pypi/simple/rich/index.json"), "{paths:?}");
    assert!(!paths.contains("pypi/simple/six/index.json"), "{paths:?}");

    // pip, into a fresh venv, from the node alone: no other index, no find-links, no configuration.
    let node = Node::start(&s.path);
    let venv = s.tmp_path("venv");
    let made = ferry_tests::cmd::run(
        std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv),
    );
    assert_eq!(made.code, Some(0), "{made}");
    let mut pip = std::process::Command::new(venv.join("bin/python"));
    pip.env("PIP_CONFIG_FILE", "/dev/null")
        .env_remove("PIP_FIND_LINKS")
        .args([
            "-m",
            "pip",
            "--disable-pip-version-check",
            "--no-cache-dir",
            // The mirror as the only index (`--no-index` would ignore it: pip reads it as "find-links only").
            "install",
            "--index-url",
        ])
        .arg(node.url("/repos/py/1/pypi/simple/"))
        .arg("-r")
        .arg(&fx.requirements);
    let run = ferry_tests::cmd::run(&mut pip);
    assert_eq!(run.code, Some(0), "{run}");
    let check = ferry_tests::cmd::run(std::process::Command::new(venv.join("bin/python")).args([
        "-c",
        "import requests, rich, attrs, socks, markdown_it; print(requests.__version__)",
    ]));
    assert_eq!(check.code, Some(0), "{check}");
    assert!(
        fx.expected
            .iter()
            .any(|f| f.starts_with(&format!("requests-{}-", check.stdout.trim()))),
        "{check}"
    );
    assert_eq!(node.stop(), Some(0));

    // Why: mdurl is there for markdown-it-py, which is there for rich; PySocks for requests' socks extra.
    let why = s.run(["show", "py@1", "--why", "mdurl"]).ok();
    let lines: Vec<&str> = why.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{why}");
    assert!(
        lines[1].trim_start().starts_with("markdown-it-py "),
        "{why}"
    );
    assert!(lines[2].contains("requested as rich"), "{why}");
    let why = s.run(["show", "py@1", "--why", "pysocks"]).ok();
    assert!(why.stdout.contains("extra =="), "{why}");

    // A narrower set next: diff names what went.
    let fewer = s.tmp_path("fewer.txt");
    std::fs::write(&fewer, "requests>=2.31\n").unwrap();
    s.add("py@2", &[&pypi_source(fx, &fewer)]);
    let diff = s.json(["diff", "py@1", "py@2"]);
    let removed: BTreeSet<&str> = diff["closure"]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["package"].as_str().unwrap())
        .collect();
    assert!(
        removed.contains("rich") && removed.contains("pysocks"),
        "{diff}"
    );
    assert!(!removed.contains("requests"), "{diff}");
}

#[test]
fn partial_pypi_refusals_name_the_requirement() {
    let fx = pypi_partial();
    let s = Store::new();
    let refused = |text: &str| {
        let req = s.tmp_path("req.txt");
        std::fs::write(&req, text).unwrap();
        let out = s
            .run(["add", "bad@1", &pypi_source(fx, &req)])
            .expect_code(1);
        out.error_lines().join("\n")
    };
    let e = refused("rich>=15\n");
    assert!(e.contains("rich>=15 (needed by requested)"), "{e}");
    let e = refused("rich>=14\nrich<14\n");
    assert!(
        e.contains("conflicting requirements") && e.contains("rich"),
        "{e}"
    );
    let e = refused("requests\n-r other.txt\n");
    assert!(
        e.contains("line 2") && e.contains("options are not followed"),
        "{e}"
    );
    let e = refused("requests >>> 2\n");
    assert!(e.contains("line 1"), "{e}");
    // --plan lists the resolution without storing it.
    let plan = s.json([
        "add",
        "plan@1",
        &pypi_source(fx, &fx.requirements),
        "--plan",
    ]);
    assert_eq!(
        plan[0]["packages"].as_array().unwrap().len(),
        fx.expected.len(),
        "{plan}"
    );
    assert!(s.ls().is_empty(), "{:?}", s.ls());
}

#[test]
fn a_partial_pypi_mirror_resolves_over_a_remote_index_through_its_json_and_metadata() {
    let fx = pypi_partial();
    // The upstream: every distribution, decoys and all, served by a node as a PEP 691/658 index.
    let upstream = Store::new();
    upstream.add("all@1", &[&format!("pypi:{}", fx.dists.display())]);
    let up = Node::start(&upstream.path);
    let index = up.url("/repos/all/1/pypi/simple/");

    let s = Store::new();
    s.add(
        "py@1",
        &[&format!(
            "pypi:{index}?requirements={}&python={}&platform=manylinux_2_28_x86_64",
            fx.requirements.display(),
            host_python()
        )],
    );
    let files: Vec<String> = carried(&s, "py@1")
        .iter()
        .filter_map(|p| p.strip_prefix("pypi/packages/"))
        .filter(|p| !p.ends_with(".metadata"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        files, fx.expected,
        "the resolution over the index differs from pip's"
    );
    // Byte for byte what the index served.
    let dir = s.tmp_path("out");
    s.run(["get", "py@1", "--out", &format!("dir:{}", dir.display())])
        .ok();
    for f in &fx.expected {
        assert_eq!(
            std::fs::read(dir.join("pypi/packages").join(f)).unwrap(),
            std::fs::read(fx.dists.join(f)).unwrap(),
            "{f}"
        );
    }
    // An index that lacks a requirement: named.
    let req = s.tmp_path("req.txt");
    std::fs::write(&req, "requests\nno-such-project-anywhere>=1\n").unwrap();
    let out = s
        .run([
            "add",
            "bad@1",
            &format!("pypi:{index}?requirements={}", req.display()),
        ])
        .expect_code(1);
    assert!(
        out.error_lines()
            .join("\n")
            .contains("no-such-project-anywhere>=1 (needed by requested)"),
        "{out}"
    );
    assert_eq!(up.stop(), Some(0));
}
