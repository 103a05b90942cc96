//! Real test artifacts, built once per test-binary run into `<target>/ferry-fixtures` by the scripts in
//! `tools/fixtures/` (Debian packages from `apt-get download`, unpacked with `dpkg-deb -x`, packed by `umoci`;
//! PyPI distributions from `pip download`, Helm charts packed with tar, rpms from rpmbuild under createrepo_c).
//! Tests never modify them: copy first ([`crate::fsutil::copy_tree`]) when a test needs to damage something.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cmd;
use crate::fsutil::{self, read_blob, sha256_hex};

/// `tools/fixtures/` in the source tree.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/fixtures")
}

/// `<target>/ferry-fixtures`, the cache shared by every test (and by later runs).
pub fn cache_dir() -> PathBuf {
    crate::target_dir().join("ferry-fixtures")
}

/// One image manifest of the fixture layout, as the layout stores it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `sha256:…` of the manifest.
    pub digest: String,
    /// The manifest's exact bytes.
    pub raw: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// `sha256:…` of the config blob.
    pub config: String,
    /// `sha256:…` of each layer, bottom first.
    pub layers: Vec<String>,
}

impl Manifest {
    /// Every blob the image needs, manifest first.
    pub fn blobs(&self) -> Vec<String> {
        let mut v = vec![self.digest.clone(), self.config.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }
}

/// The images of `tools/fixtures/oci-images.sh`.
#[derive(Debug)]
pub struct Images {
    /// The OCI layout with tags `v1`, `v2`, `arm64`.
    pub layout: PathBuf,
    /// The downloaded `.deb` files.
    pub debs: PathBuf,
    /// A gzip tarball of v1's rootfs.
    pub rootfs_tar: PathBuf,
    /// `v1`: linux/amd64, one layer.
    pub v1: Manifest,
    /// `v2`: v1's layer plus one.
    pub v2: Manifest,
    /// `arm64`: a different one-layer image whose config says linux/arm64.
    pub arm64: Manifest,
}

impl Images {
    /// The downloaded `.deb` of package `name`.
    pub fn deb(&self, name: &str) -> PathBuf {
        fsutil::find_by_prefix(&self.debs, &format!("{name}_"))
    }
}

/// Builds (once per run; reuses the cache across runs) and returns the fixture images.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let out = cache_dir().join("images");
        let script = scripts_dir().join("oci-images.sh");
        let run = cmd::run_timeout(Command::new(&script).arg(&out), Duration::from_secs(900));
        assert_eq!(
            run.code,
            Some(0),
            "building the fixture images failed:\n{run}"
        );
        let layout = out.join("layout");
        let by_tag = |tag: &str| load_manifest(&layout, tag);
        let images = Images {
            v1: by_tag("v1"),
            v2: by_tag("v2"),
            arm64: by_tag("arm64"),
            debs: out.join("debs"),
            rootfs_tar: out.join("rootfs-v1.tar.gz"),
            layout,
        };
        assert_eq!(images.v1.layers.len(), 1, "fixture v1 must have one layer");
        assert_eq!(images.v2.layers.len(), 2, "fixture v2 must have two layers");
        assert_eq!(
            images.v2.layers[0], images.v1.layers[0],
            "fixture v2 must reuse v1's layer"
        );
        images
    })
}

/// Reads the manifest tagged `tag` in an OCI layout.
pub fn load_manifest(layout: &Path, tag: &str) -> Manifest {
    let entry = fsutil::index_entries(layout)
        .into_iter()
        .find(|e| e.ref_name.as_deref() == Some(tag))
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()));
    let raw = read_blob(layout, &entry.digest);
    let m: Value = serde_json::from_slice(&raw).expect("manifest JSON");
    Manifest {
        config: m["config"]["digest"]
            .as_str()
            .expect("config digest")
            .to_string(),
        layers: m["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("layer digest").to_string())
            .collect(),
        media_type: entry.media_type,
        digest: entry.digest,
        raw,
    }
}

/// Writes a new OCI layout at `dest` holding the given images under the given ref names
/// (`(ref_name, manifest)`), copying their blobs from the fixture layout.
pub fn layout_with(dest: &Path, refs: &[(&str, &Manifest)]) {
    let src = &images().layout;
    fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    fs::copy(src.join("oci-layout"), dest.join("oci-layout")).unwrap();
    let mut manifests = Vec::new();
    for (name, m) in refs {
        for b in m.blobs() {
            let to = fsutil::blob_path(dest, &b);
            if !to.exists() {
                fs::copy(fsutil::blob_path(src, &b), &to).unwrap();
            }
        }
        manifests.push(json!({
            "mediaType": m.media_type,
            "digest": m.digest,
            "size": m.raw.len(),
            "annotations": {"org.opencontainers.image.ref.name": name},
        }));
    }
    let index = json!({"schemaVersion": 2, "manifests": manifests});
    fs::write(dest.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A multi-platform image: an OCI image index over the fixture's v1 (linux/amd64) and arm64 (linux/arm64).
#[derive(Debug)]
pub struct MultiArch {
    /// The OCI layout.
    pub layout: PathBuf,
    /// Its ref name in `index.json`.
    pub tag: &'static str,
    /// `sha256:…` of the image index.
    pub index_digest: String,
    /// The index's bytes.
    pub index_raw: Vec<u8>,
}

/// Writes a layout at `dest` whose one entry (`multi`) is an image index with two platform manifests.
pub fn multi_arch_layout(dest: &Path) -> MultiArch {
    let imgs = images();
    layout_with(dest, &[("amd64", &imgs.v1), ("arm64", &imgs.arm64)]);
    let platform = |m: &Manifest, arch: &str| {
        json!({
            "mediaType": m.media_type,
            "digest": m.digest,
            "size": m.raw.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [platform(&imgs.v1, "amd64"), platform(&imgs.arm64, "arm64")],
    });
    let raw = serde_json::to_vec_pretty(&index).unwrap();
    let digest = format!("sha256:{}", sha256_hex(&raw));
    fs::write(fsutil::blob_path(dest, &digest), &raw).unwrap();
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": raw.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    fs::write(dest.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    MultiArch {
        layout: dest.to_path_buf(),
        tag: "multi",
        index_digest: digest,
        index_raw: raw,
    }
}

/// `skopeo copy oci:LAYOUT:TAG docker-archive:FILE:NAME` — a `docker save`-style tarball.
pub fn docker_archive(layout: &Path, tag: &str, file: &Path, name: &str) {
    cmd::run_ok(
        "skopeo",
        [
            "copy".to_string(),
            "--quiet".to_string(),
            format!("oci:{}:{tag}", layout.display()),
            format!("docker-archive:{}:{name}", file.display()),
        ],
    );
}

/// `tools/fixtures/sparse-disk.sh OUT SIZE FILE@OFFSET…`.
pub fn sparse_disk(out: &Path, size: &str, parts: &[(&Path, &str)]) {
    let mut c = Command::new(scripts_dir().join("sparse-disk.sh"));
    c.arg(out).arg(size);
    for (file, off) in parts {
        c.arg(format!("{}@{off}", file.display()));
    }
    cmd::run(&mut c).ok();
}

/// `bytes` bytes from `/dev/urandom` into `out` (incompressible, never deduplicates).
pub fn random_file(out: &Path, bytes: u64) {
    use std::io::{Read, Write};
    let mut src = fs::File::open("/dev/urandom").unwrap().take(bytes);
    let mut dst = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(out).unwrap());
    let n = std::io::copy(&mut src, &mut dst).unwrap();
    dst.flush().unwrap();
    assert_eq!(n, bytes, "random file {} is short", out.display());
}

/// The package-repository inputs of `tools/fixtures/pkgs.sh`.
#[derive(Debug)]
pub struct Pkgs {
    /// Wheels and sdists from `pip download` (six, idna, typing_extensions, setuptools, wheel, toml).
    pub pypi: PathBuf,
    /// Chart archives (web 1.0.0 and 1.2.0, db 0.3.1) and `web-1.2.0.tgz.prov`.
    pub helm: PathBuf,
    /// A yum repository: two rpms from rpmbuild, createrepo_c's repodata, a signed `repomd.xml`.
    pub yum: PathBuf,
    /// The armoured public key that signed `repomd.xml.asc` and the provenance file.
    pub key: PathBuf,
}

/// Builds (once per run; reuses the cache across runs) and returns the package-repository inputs.
pub fn pkgs() -> &'static Pkgs {
    static PKGS: OnceLock<Pkgs> = OnceLock::new();
    PKGS.get_or_init(|| {
        let out = cache_dir().join("pkgs");
        let script = scripts_dir().join("pkgs.sh");
        let run = cmd::run_timeout(Command::new(&script).arg(&out), Duration::from_secs(900));
        assert_eq!(
            run.code,
            Some(0),
            "building the package fixtures failed:\n{run}"
        );
        Pkgs {
            pypi: out.join("pypi"),
            helm: out.join("helm"),
            yum: out.join("yum"),
            key: out.join("key.asc"),
        }
    })
}

/// The yum repository of `tools/fixtures/rpms.sh`: rpms of real files, their payloads compressed the ways
/// distributions build them.
#[derive(Debug)]
pub struct Rpms {
    /// The repository (`Packages/{zstd19,zstd19t,xz2,xz7t,gzip}-1.0-1.x86_64.rpm`, `repodata/` with a signed
    /// `repomd.xml.asc`).
    pub yum: PathBuf,
    /// The armoured public key that signed `repomd.xml.asc`.
    pub key: PathBuf,
}

/// Builds (once per run; cached across runs) and returns the rpm fixture repository.
pub fn rpms() -> &'static Rpms {
    static RPMS: OnceLock<Rpms> = OnceLock::new();
    RPMS.get_or_init(|| {
        let out = cache_dir().join("rpms");
        let script = scripts_dir().join("rpms.sh");
        let run = cmd::run_timeout(Command::new(&script).arg(&out), Duration::from_secs(600));
        assert_eq!(
            run.code,
            Some(0),
            "building the rpm fixtures failed:\n{run}"
        );
        Rpms {
            yum: out.join("yum"),
            key: out.join("key.asc"),
        }
    })
}

/// The yum repository of `tools/fixtures/rpm-deps.sh`: 15 signed noarch rpms whose dependencies form a graph
/// (versions, a virtual provide, file requirements in primary and in filelists, rich and conditional
/// dependencies, a Requires(pre)), for the partial-mirror tests.
#[derive(Debug)]
pub struct RpmDeps {
    /// The repository (`Packages/`, `repodata/` with a signed `repomd.xml.asc`).
    pub yum: PathBuf,
    /// The armoured public key that signed every rpm and `repomd.xml.asc`.
    pub key: PathBuf,
}

/// Builds (once per run; cached across runs) and returns the rpm dependency-graph repository.
pub fn rpm_deps() -> &'static RpmDeps {
    static RPM_DEPS: OnceLock<RpmDeps> = OnceLock::new();
    RPM_DEPS.get_or_init(|| {
        let out = cache_dir().join("rpm-deps");
        let script = scripts_dir().join("rpm-deps.sh");
        let run = cmd::run_timeout(Command::new(&script).arg(&out), Duration::from_secs(600));
        assert_eq!(
            run.code,
            Some(0),
            "building the rpm dependency fixtures failed:\n{run}"
        );
        RpmDeps {
            yum: out.join("yum"),
            key: out.join("key.asc"),
        }
    })
}

/// The PyPI distributions of `tools/fixtures/pypi-partial.sh`: what pip resolves for a requirements file on this
/// machine's python3, among decoys (older versions, wheels for other platforms and Pythons, an sdist beside its
/// wheel, an unrelated project).
#[derive(Debug)]
pub struct PypiPartial {
    /// The flat directory of distributions.
    pub dists: PathBuf,
    /// The requirements file.
    pub requirements: PathBuf,
    /// The file names pip picks from `dists` for the requirements, sorted.
    pub expected: Vec<String>,
}

/// Builds (once per run; cached across runs) and returns the partial-PyPI fixture.
pub fn pypi_partial() -> &'static PypiPartial {
    static PYPI: OnceLock<PypiPartial> = OnceLock::new();
    PYPI.get_or_init(|| {
        let out = cache_dir().join("pypi-partial");
        let script = scripts_dir().join("pypi-partial.sh");
        let run = cmd::run_timeout(Command::new(&script).arg(&out), Duration::from_secs(900));
        assert_eq!(
            run.code,
            Some(0),
            "building the partial-PyPI fixture failed:\n{run}"
        );
        let expected = fs::read_to_string(out.join("expected.txt"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        PypiPartial {
            dists: out.join("dists"),
            requirements: out.join("requirements.txt"),
            expected,
        }
    })
}

/// The signed apt repository of `tools/fixtures/apt-repo.sh`.
#[derive(Debug)]
pub struct AptRepo {
    /// The repository root (`dists/`, `pool/`).
    pub root: PathBuf,
    /// The throwaway signing key, a binary keyring for `signed-by=`.
    pub key: PathBuf,
}

impl AptRepo {
    /// The pool file whose name starts with `PKG_`, as a path relative to the root.
    pub fn pool_file(&self, pkg: &str) -> String {
        let prefix = format!("{pkg}_");
        walkdir::WalkDir::new(self.root.join("pool"))
            .into_iter()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| {
                e.path()
                    .strip_prefix(&self.root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .unwrap_or_else(|| panic!("no {prefix}* in the fixture pool"))
    }
}

/// Builds (once per run; cached across runs) and returns the fixture apt repository.
pub fn apt_repo() -> &'static AptRepo {
    static REPO: OnceLock<AptRepo> = OnceLock::new();
    REPO.get_or_init(|| {
        let out = cache_dir().join("apt-repo");
        let script = scripts_dir().join("apt-repo.sh");
        let run = cmd::run_timeout(Command::new(&script).arg(&out), Duration::from_secs(600));
        assert_eq!(
            run.code,
            Some(0),
            "building the fixture apt repository failed:\n{run}"
        );
        AptRepo {
            root: out.join("repo"),
            key: out.join("key.gpg"),
        }
    })
}

/// Debian bookworm's own signed index (main, amd64, ~63,000 stanzas) with the pool files of one package set:
/// `tools/fixtures/apt-partial.sh`.
pub struct DebianPartial {
    /// The repository root (`dists/bookworm/…`, `pool/…`).
    pub root: PathBuf,
    /// A private apt configuration whose lists are the repository's whole index (`sources.list`, `status`
    /// empty, `state/`, `cache/`).
    pub apt: PathBuf,
    /// The packages the pool was made for (with their Recommends).
    pub packages: &'static [&'static str],
}

impl DebianPartial {
    /// The `-o` options of an apt-get whose configuration is the private one in `apt`: the repository's whole
    /// index as its lists, an empty dpkg status, amd64, Recommends as `recommends` says.
    pub fn apt_options(&self, recommends: bool) -> Vec<String> {
        let d = |p: &str| self.apt.join(p).display().to_string();
        [
            format!("Dir::Etc::sourcelist={}", d("sources.list")),
            format!("Dir::Etc::sourceparts={}", d("empty.d")),
            format!("Dir::State={}", d("state")),
            format!("Dir::State::status={}", d("status")),
            format!("Dir::Cache={}", d("cache")),
            "Debug::NoLocking=1".into(),
            "APT::Architecture=amd64".into(),
            "APT::Architectures=amd64".into(),
            format!("APT::Install-Recommends={recommends}"),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    /// The pool paths (relative to the root) `apt-get install` of `packages` fetches on an empty system, over
    /// the whole index: what apt itself resolves.
    pub fn apt_would_fetch(
        &self,
        packages: &[&str],
        recommends: bool,
    ) -> std::collections::BTreeSet<String> {
        let mut c = Command::new("apt-get");
        c.args(self.apt_options(recommends))
            .args(["install", "--print-uris", "-qq"])
            .args(packages);
        let out = cmd::run(&mut c).ok();
        let prefix = format!("'file:{}/", self.root.display());
        out.stdout
            .lines()
            .map(|l| {
                let uri = l.split('\'').nth(1).unwrap_or_default();
                let path = uri
                    .strip_prefix(&prefix[1..])
                    .unwrap_or_else(|| panic!("{l}"));
                percent_encoding::percent_decode_str(path)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            })
            .collect()
    }
}

/// Builds (once per run; cached across runs) the Debian partial-mirror fixture for curl, jq and nginx.
pub fn debian_partial() -> &'static DebianPartial {
    static REPO: OnceLock<DebianPartial> = OnceLock::new();
    const PACKAGES: &[&str] = &["curl", "jq", "nginx"];
    REPO.get_or_init(|| {
        let out = cache_dir().join("apt-partial");
        let script = scripts_dir().join("apt-partial.sh");
        let run = cmd::run_timeout(
            Command::new(&script).arg(&out).args(PACKAGES),
            Duration::from_secs(900),
        );
        assert_eq!(
            run.code,
            Some(0),
            "building the Debian partial-mirror fixture failed:\n{run}"
        );
        DebianPartial {
            root: out.join("repo"),
            apt: out.join("apt"),
            packages: PACKAGES,
        }
    })
}
