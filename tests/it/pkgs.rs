//! `pypi:`, `helm:` and `yum:` sources: real distributions from PyPI, charts, and a createrepo_c repository
//! become static trees in a release — packages byte for byte, indexes generated — that real pip reads from a
//! file:// index and, served by `ferry serve` under `/repos/`, pip and dnf read over HTTP (and helm's index
//! resolves to its charts).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::cmd::{self, run_ok, Output};
use ferry_tests::ferry::{entries, text, Store};
use ferry_tests::fixtures::pkgs;
use ferry_tests::fsutil::{
    assert_same_tree, bare_sha256, copy_tree, flip_byte, sha256_file, sha256_hex,
};
use ferry_tests::node::Node;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;

/// What a refusal test does to its copy of a fixture.
type Damage<'a> = &'a dyn Fn(&Path);
/// The same, owning what it captures.
type BoxedDamage<'a> = Box<dyn Fn(&Path) + 'a>;

/// `python3 -m pip download --no-deps` from `index` into `dest`, isolated from any pip configuration.
pub(crate) fn pip_download(index: &str, dest: &Path, extra: &[&str], reqs: &[&str]) -> Output {
    let mut c = Command::new("python3");
    c.args(["-m", "pip", "download", "--no-deps", "--no-cache-dir"])
        .args(["--disable-pip-version-check", "--no-input", "-v"])
        .arg("--index-url")
        .arg(index)
        .arg("--dest")
        .arg(dest)
        .args(extra)
        .args(reqs)
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env_remove("PIP_INDEX_URL")
        .env_remove("PIP_EXTRA_INDEX_URL")
        .env_remove("PIP_FIND_LINKS");
    cmd::run(&mut c)
}

/// Requires-Python of a distribution, read by Python's own zipfile/tarfile and email parser.
fn requires_python(dist: &Path) -> Option<String> {
    let script = r#"
import email, sys, tarfile, zipfile
p = sys.argv[1]
if p.endswith('.whl'):
    z = zipfile.ZipFile(p)
    raw = z.read([n for n in z.namelist() if n.count('/') == 1 and n.endswith('.dist-info/METADATA')][0])
else:
    t = tarfile.open(p)
    raw = t.extractfile([m for m in t.getmembers() if m.name.count('/') == 1 and m.name.endswith('/PKG-INFO')][0]).read()
print(email.message_from_bytes(raw).get('Requires-Python', ''))
"#;
    let out = run_ok(
        "python3",
        [
            std::ffi::OsStr::new("-c"),
            script.as_ref(),
            dist.as_os_str(),
        ],
    );
    let v = out.stdout.trim().to_string();
    (!v.is_empty()).then_some(v)
}

/// The `file` entries of a `show --json`, by path → bare sha256.
fn files_of(show: &Value) -> BTreeMap<String, String> {
    entries(show)
        .iter()
        .filter(|e| e["type"] == "file")
        .map(|e| {
            (
                text(e, "path").to_string(),
                bare_sha256(text(e, "sha256")).to_string(),
            )
        })
        .collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The `<a …>` tags of an HTML page, as (href, attributes) — a small reader for the pages ferry writes.
fn anchors(html: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let unescape = |s: &str| {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    };
    html.split("<a ")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').expect("an <a> tag ends")];
            let mut attrs = BTreeMap::new();
            for part in tag.split("\" ") {
                let (k, v) = part.split_once("=\"").expect("attr=\"value\"");
                attrs.insert(k.trim().to_string(), unescape(v.trim_end_matches('"')));
            }
            (attrs["href"].clone(), attrs)
        })
        .collect()
}

#[test]
fn pypi_index_over_real_distributions() {
    let fx = pkgs();
    let s = Store::new();
    let add = s.add("py@1", &[&format!("pypi:{}", fx.pypi.display())]);
    let show = s.show("py@1");
    let files = files_of(&show);
    let dists = names_in(&fx.pypi);
    assert_eq!(dists.len(), 7, "{dists:?}");

    // Every distribution is in the release under pypi/packages/, with its own digest.
    for d in &dists {
        assert_eq!(
            files.get(&format!("pypi/packages/{d}")),
            Some(&sha256_file(&fx.pypi.join(d))),
            "{d} in {show}"
        );
    }
    for page in [
        "pypi/simple/index.html",
        "pypi/simple/index.json",
        "pypi/simple/six/index.html",
        "pypi/simple/six/index.json",
        "pypi/simple/typing-extensions/index.json",
        "pypi/simple/idna/index.json",
        "pypi/simple/toml/index.json",
        "pypi/packages/six-1.16.0-py2.py3-none-any.whl.metadata",
    ] {
        assert!(files.contains_key(page), "no {page} in {show}");
    }
    assert!(
        !files
            .keys()
            .any(|p| p.starts_with("pypi/simple/typing_extensions")),
        "project pages use the normalised name: {show}"
    );
    assert_eq!(
        add["entries"].as_u64(),
        Some(entries(&show).len() as u64),
        "{add}"
    );

    let out = s.tmp_path("out");
    s.get("py@1", &format!("dir:{}", out.display()));
    let root = out.join("pypi");
    for d in &dists {
        assert_eq!(
            fs::read(root.join("packages").join(d)).unwrap(),
            fs::read(fx.pypi.join(d)).unwrap(),
            "{d} is not byte-identical"
        );
    }

    // The project list, in HTML and PEP 691 JSON.
    let want = [
        "idna",
        "setuptools",
        "six",
        "toml",
        "typing-extensions",
        "wheel",
    ];
    let listed: Vec<String> = read_json(&root.join("simple/index.json"))["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, want);
    let html = fs::read_to_string(root.join("simple/index.html")).unwrap();
    let hrefs: Vec<String> = anchors(&html).into_iter().map(|(h, _)| h).collect();
    assert_eq!(hrefs, want.map(|p| format!("{p}/")), "{html}");

    // Each project page lists its files with hashes, Requires-Python and PEP 658 metadata, and the links work.
    for project in want {
        let dir = root.join("simple").join(project);
        let json = read_json(&dir.join("index.json"));
        assert_eq!(json["meta"]["api-version"], "1.0", "{json}");
        assert_eq!(json["name"], project, "{json}");
        let html = fs::read_to_string(dir.join("index.html")).unwrap();
        let links = anchors(&html);
        let jfiles = json["files"].as_array().unwrap();
        assert_eq!(links.len(), jfiles.len(), "{html}\n{json}");
        assert!(!jfiles.is_empty());
        for (f, (href, attrs)) in jfiles.iter().zip(&links) {
            let name = f["filename"].as_str().unwrap();
            let src = fx.pypi.join(name);
            let sha = sha256_file(&src);
            assert_eq!(f["hashes"]["sha256"], sha.as_str(), "{name}");
            assert_eq!(f["url"], format!("../../packages/{name}"), "{name}");
            assert_eq!(
                href,
                &format!("../../packages/{name}#sha256={sha}"),
                "{html}"
            );
            // The relative link resolves to the very file.
            let (path, _) = href.split_once('#').unwrap();
            assert_eq!(sha256_file(&dir.join(path)), sha, "{href}");
            let rp = requires_python(&src);
            assert!(
                rp.is_some(),
                "every fixture distribution declares Requires-Python: {name}"
            );
            assert_eq!(f["requires-python"].as_str(), rp.as_deref(), "{name}");
            assert_eq!(attrs.get("data-requires-python"), rp.as_ref(), "{html}");
            if name.ends_with(".whl") {
                let meta = dir.join(format!("{path}.metadata"));
                let msha = sha256_file(&meta);
                assert_eq!(f["core-metadata"]["sha256"], msha.as_str(), "{name}");
                assert_eq!(attrs["data-core-metadata"], format!("sha256={msha}"));
                assert_eq!(attrs["data-dist-info-metadata"], format!("sha256={msha}"));
                let text = fs::read_to_string(&meta).unwrap();
                assert!(text.starts_with("Metadata-Version: "), "{text}");
            } else {
                assert!(f.get("core-metadata").is_none(), "{name}: {f}");
                assert!(!attrs.contains_key("data-core-metadata"), "{html}");
            }
        }
    }
    let six = read_json(&root.join("simple/six/index.json"));
    let six_files: Vec<&str> = six["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!(
        six_files,
        ["six-1.16.0-py2.py3-none-any.whl", "six-1.16.0.tar.gz"]
    );
}

#[test]
fn pypi_tree_is_read_by_pip() {
    // pip reads a file:// index as it reads one over HTTP (index.html of each directory): the generated pages,
    // hashes, Requires-Python and PEP 658 metadata go through the real client without a server.
    let fx = pkgs();
    let s = Store::new();
    s.add(
        "py@1",
        &[&format!("pypi:{}?into=mirror/py", fx.pypi.display())],
    );
    let out = s.tmp_path("out");
    s.get("py@1", &format!("dir:{}", out.display()));
    let index = format!("file://{}/", out.join("mirror/py/simple").display());

    let dest = s.tmp_path("dl");
    let run = pip_download(
        &index,
        &dest,
        &[],
        &["six", "Typing.Extensions", "idna==3.7"],
    );
    assert_eq!(run.code, Some(0), "{run}");
    for name in [
        "six-1.16.0-py2.py3-none-any.whl",
        "typing_extensions-4.12.2-py3-none-any.whl",
        "idna-3.7-py3-none-any.whl",
    ] {
        assert_eq!(
            sha256_file(&dest.join(name)),
            sha256_file(&fx.pypi.join(name)),
            "{name} from pip differs:\n{run}"
        );
    }
    assert!(
        run.stdout.contains(".whl.metadata"),
        "pip should have used the PEP 658 metadata files:\n{run}"
    );

    // pip honours data-requires-python: for Python 3.7 there is no typing_extensions 4.12.2 (>=3.8).
    let old = s.tmp_path("dl-old");
    let run = pip_download(
        &index,
        &old,
        &["--python-version", "3.7", "--only-binary", ":all:"],
        &["typing_extensions"],
    );
    assert_ne!(run.code, Some(0), "{run}");
    assert!(
        run.stderr.contains("No matching distribution") || run.stdout.contains("Requires-Python"),
        "{run}"
    );
    // An sdist from the mirror alone: pip downloads toml's .tar.gz and builds its metadata in an isolated
    // environment whose setuptools and wheel it installs from the same index.
    let sd = s.tmp_path("dl-sdist");
    let run = pip_download(&index, &sd, &["--no-binary", "toml"], &["toml"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        sha256_file(&sd.join("toml-0.10.2.tar.gz")),
        sha256_file(&fx.pypi.join("toml-0.10.2.tar.gz")),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("mirror/py/packages/setuptools-70.0.0-py3-none-any.whl"),
        "the build environment came from the mirror:\n{run}"
    );
}

#[test]
fn pypi_generation_is_deterministic() {
    let fx = pkgs();
    let s = Store::new();
    // A second copy of the directory with other mtimes: the generated pages must not change.
    let copy = s.tmp_path("copy");
    copy_tree(&fx.pypi, &copy);
    s.add("py@1", &[&format!("pypi:{}", fx.pypi.display())]);
    s.add("py@2", &[&format!("pypi:{}", copy.display())]);
    let (a, b) = (files_of(&s.show("py@1")), files_of(&s.show("py@2")));
    assert_eq!(a, b, "the same distributions must give the same tree");
}

#[test]
fn pypi_refuses_what_is_not_a_distribution() {
    let fx = pkgs();
    let s = Store::new();
    let cases: [(&str, Damage, &str); 4] = [
        (
            "junk",
            &|d| fs::write(d.join("README.txt"), "hi").unwrap(),
            "README.txt",
        ),
        (
            "not-zip",
            &|d| fs::write(d.join("evil-1.0-py3-none-any.whl"), b"not a zip").unwrap(),
            "evil-1.0-py3-none-any.whl",
        ),
        (
            "bad-name",
            &|d| {
                fs::copy(
                    fx.pypi.join("idna-3.7-py3-none-any.whl"),
                    d.join("idna-3.7.whl"),
                )
                .unwrap();
            },
            "idna-3.7.whl",
        ),
        (
            "subdir",
            &|d| fs::create_dir(d.join("nested")).unwrap(),
            "nested",
        ),
    ];
    for (name, damage, named) in cases {
        let dir = s.tmp_path(name);
        copy_tree(&fx.pypi, &dir);
        damage(&dir);
        let out = s.run([
            "add",
            &format!("bad-{name}@1"),
            &format!("pypi:{}", dir.display()),
        ]);
        let out = out.expect_code(1);
        assert!(
            out.error_line().contains(named),
            "{name}: the error must name {named}:\n{out}"
        );
        assert!(
            !s.lists(&format!("bad-{name}"), "1"),
            "{name}: nothing may be published"
        );
    }
    let empty = s.tmp_path("empty");
    fs::create_dir(&empty).unwrap();
    let out = s
        .run(["add", "none@1", &format!("pypi:{}", empty.display())])
        .expect_code(1);
    assert!(out.error_line().contains("no wheels or sdists"), "{out}");
}

/// A chart archive built by hand: DIR/NAME/Chart.yaml with `chart_yaml`, packed as FILE.
fn chart_tgz(dir: &Path, file: &str, name: &str, chart_yaml: &str) -> PathBuf {
    let src = dir.join(format!("src-{file}"));
    fs::create_dir_all(src.join(name).join("templates")).unwrap();
    fs::write(src.join(name).join("Chart.yaml"), chart_yaml).unwrap();
    fs::write(src.join(name).join("values.yaml"), "a: 1\n").unwrap();
    let out = dir.join(file);
    run_ok(
        "tar",
        [
            "-C".as_ref(),
            src.as_os_str(),
            "-czf".as_ref(),
            out.as_os_str(),
            name.as_ref(),
        ],
    );
    fs::remove_dir_all(&src).unwrap();
    out
}

fn yaml(path: &Path) -> yaml_serde::Value {
    yaml_serde::from_slice(&fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

#[test]
fn helm_index_over_charts() {
    let fx = pkgs();
    let s = Store::new();
    s.add("charts@1", &[&format!("helm:{}", fx.helm.display())]);
    let files = files_of(&s.show("charts@1"));
    for f in names_in(&fx.helm) {
        assert_eq!(
            files.get(&format!("helm/{f}")),
            Some(&sha256_file(&fx.helm.join(&f))),
            "{f}"
        );
    }
    assert!(files.contains_key("helm/index.yaml"), "{files:?}");

    let out = s.tmp_path("out");
    s.get("charts@1", &format!("dir:{}", out.display()));
    let root = out.join("helm");
    for f in names_in(&fx.helm) {
        assert_eq!(
            fs::read(root.join(&f)).unwrap(),
            fs::read(fx.helm.join(&f)).unwrap(),
            "{f}"
        );
    }
    let index = yaml(&root.join("index.yaml"));
    assert_eq!(index["apiVersion"].as_str(), Some("v1"));
    assert_eq!(
        index["generated"].as_str(),
        Some("2024-05-17T08:30:15Z"),
        "the newest chart"
    );
    let web: Vec<&str> = index["entries"]["web"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_str().unwrap())
        .collect();
    assert_eq!(web, ["1.2.0", "1.0.0"], "newest first");
    for (name, version, file, created) in [
        ("web", "1.2.0", "web-1.2.0.tgz", "2024-05-17T08:30:15Z"),
        ("web", "1.0.0", "web-1.0.0.tgz", "2024-03-01T10:00:00Z"),
        ("db", "0.3.1", "db-0.3.1.tgz", "2023-12-24T18:00:00Z"),
    ] {
        let e = index["entries"][name]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["version"].as_str() == Some(version))
            .unwrap_or_else(|| panic!("no {name} {version}"));
        assert_eq!(
            e["digest"].as_str(),
            Some(sha256_file(&root.join(file)).as_str()),
            "{file}"
        );
        assert_eq!(e["urls"][0].as_str(), Some(file));
        assert_eq!(e["created"].as_str(), Some(created), "{file}");
        assert_eq!(e["name"].as_str(), Some(name));
        // The fields come from the archive's own Chart.yaml, as tar reads it.
        let chart: yaml_serde::Value = yaml_serde::from_str(
            &run_ok(
                "tar",
                [
                    "-xzOf",
                    &root.join(file).to_string_lossy(),
                    &format!("{name}/Chart.yaml"),
                ],
            )
            .stdout,
        )
        .unwrap();
        for key in [
            "apiVersion",
            "description",
            "keywords",
            "maintainers",
            "home",
            "dependencies",
            "kubeVersion",
        ] {
            assert_eq!(e.get(key), chart.get(key), "{file}: {key}");
        }
    }
    let web12 = &index["entries"]["web"][0];
    assert_eq!(web12["appVersion"].as_str(), Some("1.2.0-app"));
    assert_eq!(
        web12["description"].as_str(),
        Some("A small web server <for tests> & such")
    );
    assert_eq!(
        web12["annotations"]["category"].as_str(),
        Some("Infrastructure")
    );
    assert_eq!(
        index["entries"]["db"][0]["dependencies"][0]["repository"].as_str(),
        Some("file://charts/util")
    );
    assert!(
        index["entries"].get("util").is_none(),
        "a subchart is not a chart of the repository"
    );

    // The same charts, the same index.
    s.add("charts@2", &[&format!("helm:{}?into=", fx.helm.display())]);
    let again = files_of(&s.show("charts@2"));
    assert_eq!(
        again.get("index.yaml"),
        files.get("helm/index.yaml"),
        "{again:?}"
    );
}

#[test]
fn helm_refuses_bad_charts() {
    let fx = pkgs();
    let s = Store::new();
    let cases: [(&str, Damage, &str, &str); 5] = [
        (
            "no-version",
            &|d| {
                chart_tgz(d, "nov-1.0.0.tgz", "nov", "apiVersion: v2\nname: nov\n");
            },
            "nov-1.0.0.tgz",
            "no version",
        ),
        (
            "no-name",
            &|d| {
                chart_tgz(d, "non.tgz", "non", "apiVersion: v2\nversion: 1.0.0\n");
            },
            "non.tgz",
            "no name",
        ),
        (
            "bad-semver",
            &|d| {
                chart_tgz(
                    d,
                    "x.tgz",
                    "x",
                    "apiVersion: v2\nname: x\nversion: latest\n",
                );
            },
            "x.tgz",
            "SemVer",
        ),
        (
            "duplicate",
            &|d| {
                chart_tgz(
                    d,
                    "web-copy.tgz",
                    "web",
                    "apiVersion: v2\nname: web\nversion: 1.2.0\n",
                );
            },
            "web",
            "also in",
        ),
        (
            "orphan-prov",
            &|d| fs::write(d.join("gone-1.0.0.tgz.prov"), "x").unwrap(),
            "gone-1.0.0.tgz.prov",
            "without its chart",
        ),
    ];
    for (name, damage, named, why) in cases {
        let dir = s.tmp_path(name);
        copy_tree(&fx.helm, &dir);
        damage(&dir);
        let out = s.run([
            "add",
            &format!("bad-{name}@1"),
            &format!("helm:{}", dir.display()),
        ]);
        let out = out.expect_code(1);
        let line = out.error_line();
        assert!(
            line.contains(named) && line.contains(why),
            "{name}: want {named} and {why:?}:\n{out}"
        );
        assert!(
            !s.lists(&format!("bad-{name}"), "1"),
            "{name}: nothing may be published"
        );
    }
    let dir = s.tmp_path("not-gzip");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("broken-1.0.0.tgz"), b"\x1f\x8b but not really").unwrap();
    let out = s
        .run(["add", "broken@1", &format!("helm:{}", dir.display())])
        .expect_code(1);
    assert!(out.error_line().contains("broken-1.0.0.tgz"), "{out}");
}

#[test]
fn yum_repository_kept_byte_for_byte() {
    let fx = pkgs();
    let s = Store::new();
    s.add("el@1", &[&format!("yum:{}", fx.yum.display())]);
    let files = files_of(&s.show("el@1"));
    for p in [
        "yum/repodata/repomd.xml",
        "yum/repodata/repomd.xml.asc",
        "yum/Packages/hello-1.0-1.noarch.rpm",
    ] {
        assert!(files.contains_key(p), "no {p} in {files:?}");
    }
    let out = s.tmp_path("out");
    s.get("el@1", &format!("dir:{}", out.display()));
    assert_same_tree(&fx.yum, &out.join("yum"));
    // The signature over repomd.xml still verifies (gpg reads the signature's key id; the key is gone, so
    // only the digest check is possible: compare the signed bytes instead).
    assert_eq!(
        fs::read(out.join("yum/repodata/repomd.xml")).unwrap(),
        fs::read(fx.yum.join("repodata/repomd.xml")).unwrap()
    );
}

/// The href of the primary metadata in `repo`'s repomd.xml.
fn primary_href(repo: &Path) -> String {
    let repomd = fs::read_to_string(repo.join("repodata/repomd.xml")).unwrap();
    let at = repomd.find("-primary.xml.gz").expect("a gzip primary");
    let start = repomd[..at].rfind("href=\"").unwrap() + 6;
    repomd[start..at + "-primary.xml.gz".len()].to_string()
}

#[test]
fn yum_refuses_incomplete_or_altered_repositories() {
    let fx = pkgs();
    let s = Store::new();
    let rpm = "Packages/world-2.0-1.noarch.rpm";
    let primary = primary_href(&fx.yum);
    let cases: Vec<(&str, BoxedDamage, Vec<String>)> = vec![
        (
            "missing-package",
            Box::new(move |d| fs::remove_file(d.join(rpm)).unwrap()),
            vec![rpm.to_string(), "missing".to_string()],
        ),
        (
            "altered-package",
            Box::new(move |d| flip_byte(&d.join(rpm), 200)),
            vec![
                rpm.to_string(),
                sha256_file(&fx.yum.join(rpm)),
                "sha256".into(),
            ],
        ),
        (
            "altered-primary",
            {
                let primary = primary.clone();
                Box::new(move |d| flip_byte(&d.join(&primary), 40))
            },
            vec![primary.clone(), "checksum".into()],
        ),
        (
            "missing-filelists",
            Box::new(|d| {
                for e in fs::read_dir(d.join("repodata")).unwrap() {
                    let p = e.unwrap().path();
                    if p.to_string_lossy().ends_with("-filelists.xml.gz") {
                        fs::remove_file(p).unwrap();
                    }
                }
            }),
            vec!["filelists.xml.gz".into(), "missing".into()],
        ),
        (
            "no-repomd",
            Box::new(|d| fs::remove_file(d.join("repodata/repomd.xml")).unwrap()),
            vec!["repodata/repomd.xml".into()],
        ),
    ];
    for (name, damage, named) in cases {
        let dir = s.tmp_path(name);
        copy_tree(&fx.yum, &dir);
        damage(&dir);
        let out = s.run([
            "add",
            &format!("bad-{name}@1"),
            &format!("yum:{}", dir.display()),
        ]);
        let out = out.expect_code(1);
        let line = out.error_line();
        for n in &named {
            assert!(
                line.contains(n.as_str()),
                "{name}: the error must name {n:?}:\n{out}"
            );
        }
        assert!(
            !s.lists(&format!("bad-{name}"), "1"),
            "{name}: nothing may be published"
        );
    }
}

// ---- Served by `ferry serve` under /repos/, read by the real clients ----------------------------------------

/// A store holding the three fixture repositories as `py@1`, `charts@1` and `el@1`, written out with
/// `ferry get` to `TMP/out` (the node holds the store once it runs), then served on a free port.
fn served() -> (Store, Node) {
    let fx = pkgs();
    let s = Store::new();
    s.add("py@1", &[&format!("pypi:{}", fx.pypi.display())]);
    s.add("charts@1", &[&format!("helm:{}", fx.helm.display())]);
    s.add("el@1", &[&format!("yum:{}", fx.yum.display())]);
    s.get("py@1", &format!("dir:{}", s.tmp_path("out").display()));
    let node = Node::start(&s.path);
    (s, node)
}

fn http() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

#[test]
fn pip_downloads_from_the_served_mirror() {
    let fx = pkgs();
    let (s, node) = served();
    // The index URL as `ferry client-config pip` gives it.
    let conf = s
        .run([
            "client-config",
            "pip",
            "--node",
            &node.url(""),
            "--release",
            "py",
        ])
        .ok();
    let index = conf
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("index-url = "))
        .unwrap_or_else(|| panic!("no index-url in pip.conf:\n{conf}"))
        .to_string();
    assert_eq!(index, node.url("/repos/py/current/pypi/simple/"));
    assert!(conf.stdout.contains("trusted-host = 127.0.0.1"), "{conf}");
    let dest = s.tmp_path("dl");
    let run = pip_download(&index, &dest, &[], &["six", "typing-extensions", "idna"]);
    assert_eq!(run.code, Some(0), "{run}");
    for name in [
        "six-1.16.0-py2.py3-none-any.whl",
        "typing_extensions-4.12.2-py3-none-any.whl",
        "idna-3.7-py3-none-any.whl",
    ] {
        assert_eq!(
            fs::read(dest.join(name)).unwrap(),
            fs::read(fx.pypi.join(name)).unwrap(),
            "{name} from pip differs:\n{run}"
        );
    }
    assert!(
        run.stdout.contains(".whl.metadata"),
        "pip should use PEP 658 metadata:\n{run}"
    );
    // An sdist, built by pip with setuptools and wheel from the same mirror.
    let sd = s.tmp_path("dl-sdist");
    let run = pip_download(&index, &sd, &["--no-binary", "toml"], &["toml==0.10.2"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        sha256_file(&sd.join("toml-0.10.2.tar.gz")),
        sha256_file(&fx.pypi.join("toml-0.10.2.tar.gz"))
    );

    // PEP 691: the JSON page for a client that prefers it, the HTML page otherwise; the same bytes ferry get writes.
    let out = s.tmp_path("out");
    let c = http();
    let page = node.url("/repos/py/1/pypi/simple/six/");
    let json = c
        .get(&page)
        .header(
            "Accept",
            "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
        )
        .send()
        .unwrap();
    assert_eq!(json.status(), StatusCode::OK);
    assert_eq!(
        json.headers()["content-type"],
        "application/vnd.pypi.simple.v1+json"
    );
    assert_eq!(
        json.bytes().unwrap(),
        fs::read(out.join("pypi/simple/six/index.json")).unwrap()
    );
    let html = c.get(&page).send().unwrap();
    assert_eq!(html.status(), StatusCode::OK);
    assert!(html.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(
        html.bytes().unwrap(),
        fs::read(out.join("pypi/simple/six/index.html")).unwrap()
    );

    // /_ferry/repos finds the index where ferry put it.
    let repos: Vec<Value> = c
        .get(node.url("/_ferry/repos"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let py = repos
        .iter()
        .find(|r| r["release"] == "py")
        .expect("py in /_ferry/repos");
    assert_eq!(py["repositories"][0]["kind"], "pypi", "{py}");
    assert_eq!(
        py["repositories"][0]["path"], "/repos/py/1/pypi/simple/",
        "{py}"
    );
    node.stop();
}

#[test]
fn helm_index_served_over_http_matches_its_charts() {
    let (s, node) = served();
    let c = http();
    let base = node.url("/repos/charts/current/helm/");
    let add = s
        .run(["client-config", "helm", "--node", &node.url("")])
        .ok();
    assert_eq!(
        add.stdout.trim(),
        format!("helm repo add charts {base}"),
        "{add}"
    );
    let index = c.get(format!("{base}index.yaml")).send().unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let index: yaml_serde::Value = yaml_serde::from_slice(&index.bytes().unwrap()).unwrap();
    let mut fetched = 0;
    for (name, versions) in index["entries"].as_mapping().unwrap() {
        for v in versions.as_sequence().unwrap() {
            // As helm does: the url relative to the repository, then the digest over the bytes it got.
            let url = format!("{base}{}", v["urls"][0].as_str().unwrap());
            let chart = c.get(&url).send().unwrap();
            assert_eq!(chart.status(), StatusCode::OK, "{url}");
            let bytes = chart.bytes().unwrap();
            assert_eq!(
                Some(sha256_hex(&bytes).as_str()),
                v["digest"].as_str(),
                "{name:?} {url}"
            );
            fetched += 1;
        }
    }
    assert_eq!(fetched, 3);
    let prov = c.get(format!("{base}web-1.2.0.tgz.prov")).send().unwrap();
    assert_eq!(prov.status(), StatusCode::OK);
    assert_eq!(
        prov.bytes().unwrap(),
        fs::read(pkgs().helm.join("web-1.2.0.tgz.prov")).unwrap()
    );
    node.stop();
}

/// `dnf install --downloadonly PKGS` from the yum repository `node` serves at `path` (`/repos/el/current/yum`),
/// with `repo_gpgcheck` against `key`, everything dnf keeps under `dir`; the packages land in the second path.
pub(crate) fn dnf_download(
    node: &Node,
    path: &str,
    pkgs: &[&str],
    dir: &Path,
    key: &Path,
) -> (Output, PathBuf) {
    dnf_download_from(&node.url(path), false, &[key], pkgs, dir)
}

/// `dnf install --downloadonly PKGS` into an empty installroot from the repository at `baseurl`, with
/// `repo_gpgcheck` (and `gpgcheck` when asked) against `keys`, as [`dnf_download_with`].
pub(crate) fn dnf_download_from(
    baseurl: &str,
    gpgcheck: bool,
    keys: &[&Path],
    pkgs: &[&str],
    dir: &Path,
) -> (Output, PathBuf) {
    let gpgkey: Vec<String> = keys
        .iter()
        .map(|k| format!("file://{}", k.display()))
        .collect();
    let repo = format!(
        "[ferry-el]\nname=el through ferry\nbaseurl={baseurl}\ngpgcheck={}\nrepo_gpgcheck=1\ngpgkey={}\n",
        u8::from(gpgcheck),
        gpgkey.join(" ")
    );
    dnf_download_with(&repo, pkgs, dir)
}

/// `dnf install --downloadonly PKGS` into an empty installroot from the repositories of the `.repo` file `repo`
/// whose ids start with `ferry-`, everything dnf keeps under `dir`; the packages land in the second path. The
/// gpg-agents librepo starts for its keyrings are stopped afterwards.
pub(crate) fn dnf_download_with(repo: &str, pkgs: &[&str], dir: &Path) -> (Output, PathBuf) {
    let conf = dir.join("repos.d");
    fs::create_dir_all(&conf).unwrap();
    fs::create_dir_all(dir.join("log")).unwrap();
    fs::write(conf.join("ferry.repo"), repo).unwrap();
    let dl = dir.join("dl");
    let cache = dir.join("cache");
    let mut c = Command::new("dnf");
    c.arg("-y")
        .arg(format!("--installroot={}", dir.join("root").display()))
        .arg("--releasever=1")
        .arg(format!("--setopt=reposdir={}", conf.display()))
        .arg(format!("--setopt=cachedir={}", cache.display()))
        .arg(format!("--setopt=logdir={}", dir.join("log").display()))
        .args([
            "--disablerepo=*",
            "--enablerepo=ferry-*",
            "install",
            "--downloadonly",
        ])
        .arg(format!("--downloaddir={}", dl.display()))
        .args(pkgs);
    let out = cmd::run(&mut c);
    for e in fs::read_dir(&cache).into_iter().flatten().flatten() {
        let ring = e.path().join("pubring");
        if ring.is_dir() {
            let _ = Command::new("gpgconf")
                .arg("--homedir")
                .arg(&ring)
                .args(["--kill", "gpg-agent"])
                .output();
        }
    }
    (out, dl)
}

/// Where the served `el` release's repository is, and its packages.
const EL: &str = "/repos/el/current/yum";
const HELLO_WORLD: &[&str] = &["hello", "world"];

#[test]
fn dnf_installs_from_the_served_mirror_with_repo_gpgcheck() {
    let fx = pkgs();
    let (s, node) = served();
    // repo_gpgcheck: dnf checks repomd.xml.asc against the publisher's key — ferry changed no byte.
    let (run, dl) = dnf_download(&node, EL, HELLO_WORLD, &s.tmp_path("dnf"), &fx.key);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stderr.contains("Importing GPG key"),
        "dnf should have checked repomd.xml.asc:\n{run}"
    );
    for rpm in ["hello-1.0-1.noarch.rpm", "world-2.0-1.noarch.rpm"] {
        assert_eq!(
            sha256_file(&dl.join(rpm)),
            sha256_file(&fx.yum.join("Packages").join(rpm)),
            "{rpm}"
        );
    }
    // And the check is real: with someone else's key, dnf refuses the same repository.
    let home = s.tmp_path("gnupg");
    fs::create_dir_all(&home).unwrap();
    fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args);
        cmd::run(&mut c)
    };
    let made = gpg(&[
        "--quick-gen-key",
        "Other <other@ferry.invalid>",
        "ed25519",
        "sign",
        "never",
    ]);
    assert_eq!(made.code, Some(0), "{made}");
    let other = s.tmp_path("other.asc");
    fs::write(&other, gpg(&["--armor", "--export"]).ok().stdout_bytes).unwrap();
    let (run, _) = dnf_download(&node, EL, HELLO_WORLD, &s.tmp_path("dnf-other"), &other);
    assert_ne!(
        run.code,
        Some(0),
        "dnf must refuse repomd.xml signed by another key:\n{run}"
    );
    assert!(
        run.stderr.contains("signature verification error"),
        "dnf should name the bad signature:\n{run}"
    );
    node.stop();
}
