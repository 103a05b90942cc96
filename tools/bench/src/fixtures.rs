//! Real-data fixtures, built once under `WORK/fixtures/` and reused by later runs.
//!
//! Every fixture is built under a `*.tmp` name and renamed into place when complete, so an interrupted
//! run leaves nothing that looks finished.
//!
//! - `rootfs/`      `debootstrap --variant=minbase bookworm` (mirror read from the host's apt sources at run time)
//! - `debs/`        real `.deb` files fetched with `apt-get download` ([`BULK_PKGS`] and [`LAYER_PKGS`])
//! - `ingest.tar`   an uncompressed GNU tar of `rootfs/` and `debs/` (target 1, >= 500 MB)
//! - `extracted/`   every `.deb` of `debs/` unpacked with `dpkg-deb -x` (raw material for `big.bin`)
//! - `big.bin`      exactly 2 GiB: the first 2 GiB of a tar of `extracted/`, `debs/` and `rootfs/` (target 3)
//! - `oci/`         an OCI layout (umoci): `v1` = the rootfs in one layer, `v2` = v1 + one layer holding
//!   [`LAYER_PKGS`] unpacked with `dpkg-deb -x` (target 2)
//! - `oci-usr/`     an OCI layout, tag `usr`: about [`USR_IMAGE_BYTES`] of gzip layers, each a tar of one
//!   directory of this host's `/usr` ([`USR_DIRS`]; `ferry-bench hardening`)
//! - `zeros-4g.gz`  a gzip stream of 4 GiB of zeros, about 4 MB (`ferry-bench hardening`)

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::measure::Cmd;
use crate::serve::{sha256_copy, sha256_file};

/// Large real packages for the bulk data: compilers, runtimes, a browser, fonts.
pub const BULK_PKGS: &[&str] = &[
    "golang-1.19-go",
    "firefox-esr",
    "openjdk-17-jre-headless",
    "libstd-rust-dev",
    "libreoffice-core",
    "libllvm15",
    "libllvm14",
    "gcc-12",
    "fonts-noto-cjk",
    "llvm-15",
    "libclang-cpp15",
    "g++-12",
    "cpp-12",
    "libicu72",
    "libz3-4",
    "libgl1-mesa-dri",
    "libclang1-15",
];

/// The packages of image v2's extra layer (also part of the bulk data).
pub const LAYER_PKGS: &[&str] = &["git", "vim-runtime", "gdb", "perl-modules-5.36"];

/// Directories of this host's `/usr` that make the layers of `oci-usr/`, in order, until the image holds
/// [`USR_IMAGE_BYTES`] (absent ones are skipped): source code, scripts, vim's runtime, locale data, icons, jars.
pub const USR_DIRS: &[&str] = &[
    "usr/lib/python3.11",
    "usr/share/perl",
    "usr/share/vim",
    "usr/share/i18n",
    "usr/share/icons",
    "usr/share/java",
    "usr/share/fonts",
    "usr/share/man",
    "usr/share/doc",
    "usr/lib/python3",
];
/// The compressed size `oci-usr/` reaches (its last layer may go past it).
pub const USR_IMAGE_BYTES: u64 = 50_000_000;
/// The uncompressed size of `zeros-4g.gz`.
pub const BOMB_BYTES: u64 = 4 << 30;

pub const SUITE: &str = "bookworm";
pub const BIG_FILE_BYTES: u64 = 2 << 30;
const MIN_INGEST_BYTES: u64 = 500_000_000;

pub struct Fixtures {
    dir: PathBuf,
    mirror: Option<String>,
}

impl Fixtures {
    pub fn new(work: &Path, mirror: Option<String>) -> Result<Self> {
        let dir = work.join("fixtures");
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Fixtures { dir, mirror })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Builds `name` with `build(tmp_path)` unless it already exists, then renames tmp into place.
    fn cached(&self, name: &str, build: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
        let done = self.path(name);
        if done.exists() {
            return Ok(done);
        }
        let tmp = self.path(&format!("{name}.tmp"));
        remove_any(&tmp)?;
        eprintln!("ferry-bench: building fixture {}", done.display());
        build(&tmp).with_context(|| format!("building fixture {name}"))?;
        fs::rename(&tmp, &done)?;
        Ok(done)
    }

    pub fn rootfs(&self) -> Result<PathBuf> {
        self.cached("rootfs", |tmp| {
            let mirror = match &self.mirror {
                Some(m) => m.clone(),
                None => host_mirror(SUITE)?,
            };
            Cmd::new("debootstrap")
                .args(["--variant=minbase", SUITE])
                .arg(tmp)
                .arg(&mirror)
                .run()
        })
    }

    /// `debs/` with every package of [`BULK_PKGS`] and [`LAYER_PKGS`]; missing ones are downloaded.
    pub fn debs(&self) -> Result<PathBuf> {
        let dir = self.path("debs");
        fs::create_dir_all(&dir)?;
        let wanted: Vec<&str> = BULK_PKGS.iter().chain(LAYER_PKGS).copied().collect();
        let missing = |dir: &Path| -> Result<Vec<&str>> {
            Ok(wanted
                .iter()
                .copied()
                .filter(|p| deb_of(dir, p).ok().flatten().is_none())
                .collect())
        };
        let todo = missing(&dir)?;
        if !todo.is_empty() {
            eprintln!("ferry-bench: apt-get download {}", todo.join(" "));
            if Cmd::new("apt-get")
                .args(["-q", "download"])
                .args(&todo)
                .cwd(&dir)
                .run()
                .is_err()
            {
                // Stale package lists name versions the mirror no longer has.
                Cmd::new("apt-get").args(["-q", "update"]).run()?;
                Cmd::new("apt-get")
                    .args(["-q", "download"])
                    .args(missing(&dir)?)
                    .cwd(&dir)
                    .run()?;
            }
            let still = missing(&dir)?;
            ensure!(
                still.is_empty(),
                "apt-get download did not fetch {}",
                still.join(" ")
            );
        }
        Ok(dir)
    }

    /// The `.deb` files of `pkgs`, in that order.
    pub fn debs_of(&self, pkgs: &[&str]) -> Result<Vec<PathBuf>> {
        let dir = self.debs()?;
        pkgs.iter()
            .map(|p| {
                deb_of(&dir, p)?.with_context(|| format!("no .deb for {p} in {}", dir.display()))
            })
            .collect()
    }

    pub fn ingest_tar(&self) -> Result<PathBuf> {
        self.rootfs()?;
        self.debs()?;
        let tar = self.cached("ingest.tar", |tmp| {
            Cmd::new("tar")
                .args(["--sort=name", "--format=gnu", "-C"])
                .arg(&self.dir)
                .arg("-cf")
                .arg(tmp)
                .args(["rootfs", "debs"])
                .run()
        })?;
        let len = fs::metadata(&tar)?.len();
        ensure!(
            len >= MIN_INGEST_BYTES,
            "{} is only {len} bytes",
            tar.display()
        );
        Ok(tar)
    }

    pub fn extracted(&self) -> Result<PathBuf> {
        let debs = self.debs_of(
            &BULK_PKGS
                .iter()
                .chain(LAYER_PKGS)
                .copied()
                .collect::<Vec<_>>(),
        )?;
        self.cached("extracted", |tmp| {
            fs::create_dir_all(tmp)?;
            for deb in &debs {
                let stem = deb.file_stem().expect("a .deb file name");
                Cmd::new("dpkg-deb")
                    .arg("-x")
                    .arg(deb)
                    .arg(tmp.join(stem))
                    .run()?;
            }
            Ok(())
        })
    }

    /// Exactly [`BIG_FILE_BYTES`] of real data: the start of a tar stream of `extracted/`, `debs/`, `rootfs/`
    /// (repeated only if the three together are shorter, which they are not with the package list above).
    pub fn big_file(&self) -> Result<PathBuf> {
        self.rootfs()?;
        self.extracted()?;
        self.cached("big.bin", |tmp| {
            let mut out = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
            let mut written = 0u64;
            let mut copies = 0;
            while written < BIG_FILE_BYTES {
                copies += 1;
                let mut tar = Command::new("tar")
                    .args(["--sort=name", "--format=gnu", "-C"])
                    .arg(&self.dir)
                    .args(["-cf", "-", "extracted", "debs", "rootfs"])
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("tar")?;
                let stdout = tar.stdout.take().expect("piped");
                let n = io::copy(&mut stdout.take(BIG_FILE_BYTES - written), &mut out)?;
                written += n;
                // Stopping early closes the pipe: tar then dies of SIGPIPE, which is expected.
                let st = tar.wait()?;
                if written < BIG_FILE_BYTES && !st.success() {
                    bail!("tar failed: {st}");
                }
                ensure!(n > 0, "tar wrote nothing");
            }
            out.flush()?;
            if copies > 1 {
                eprintln!("ferry-bench: note: big.bin repeats its source data ({copies} copies)");
            }
            Ok(())
        })
    }

    /// OCI layout with tags `v1` (rootfs, one layer) and `v2` (v1 + a layer of [`LAYER_PKGS`]).
    pub fn oci(&self) -> Result<PathBuf> {
        let rootfs = self.rootfs()?;
        let layer_debs = self.debs_of(LAYER_PKGS)?;
        self.cached("oci", |tmp| {
            let b1 = self.path("oci-bundle-v1.tmp");
            let b2 = self.path("oci-bundle-v2.tmp");
            remove_any(&b1)?;
            remove_any(&b2)?;
            let img = |tag: &str| format!("{}:{tag}", tmp.display());
            Cmd::new("umoci")
                .args(["init", "--layout"])
                .arg(tmp)
                .run()?;
            Cmd::new("umoci")
                .args(["new", "--image", &img("v1")])
                .run()?;
            Cmd::new("umoci")
                .args(["unpack", "--image", &img("v1")])
                .arg(&b1)
                .run()?;
            Cmd::new("cp")
                .arg("-a")
                .arg(rootfs.join("."))
                .arg(b1.join("rootfs"))
                .run()?;
            Cmd::new("umoci")
                .args(["repack", "--image", &img("v1")])
                .arg(&b1)
                .run()?;
            Cmd::new("umoci")
                .args(["unpack", "--image", &img("v1")])
                .arg(&b2)
                .run()?;
            for deb in &layer_debs {
                Cmd::new("dpkg-deb")
                    .arg("-x")
                    .arg(deb)
                    .arg(b2.join("rootfs"))
                    .run()?;
            }
            Cmd::new("umoci")
                .args(["repack", "--image", &img("v2")])
                .arg(&b2)
                .run()?;
            Cmd::new("umoci").args(["gc", "--layout"]).arg(tmp).run()?;
            remove_any(&b1)?;
            remove_any(&b2)?;
            Ok(())
        })
    }
}

impl Fixtures {
    /// OCI layout `oci-usr/`, tag `usr`: one layer per directory of [`USR_DIRS`] (`tar --sort=name` of it,
    /// `gzip -6 -n`), until the layers add up to [`USR_IMAGE_BYTES`]. `oci-usr/dirs.txt` names the directories
    /// taken, a line each.
    pub fn usr_oci(&self) -> Result<PathBuf> {
        self.cached("oci-usr", |tmp| {
            fs::create_dir_all(tmp.join("blobs/sha256"))?;
            let (mut layers, mut diff_ids, mut total) = (Vec::new(), Vec::new(), 0);
            let mut taken = String::new();
            for dir in USR_DIRS {
                if total >= USR_IMAGE_BYTES {
                    break;
                }
                if !Path::new("/").join(dir).is_dir() {
                    eprintln!("ferry-bench: oci-usr: no /{dir} here; skipped");
                    continue;
                }
                let (layer, diff_id) = gzip_layer(tmp, dir)?;
                eprintln!("ferry-bench: oci-usr: /{dir}: {} bytes of gzip", layer.1);
                total += layer.1;
                taken += &format!("/{dir}\n");
                layers.push(layer);
                diff_ids.push(diff_id);
            }
            ensure!(
                total >= USR_IMAGE_BYTES * 4 / 5,
                "the directories of USR_DIRS found here make only {total} bytes of gzip"
            );
            let config = put_blob(
                tmp,
                &serde_json::to_vec(&serde_json::json!({
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {},
                    "rootfs": { "type": "layers", "diff_ids": diff_ids },
                }))?,
            )?;
            let descriptor = |media: &str, (digest, size): &(String, u64)| {
                serde_json::json!({ "mediaType": media, "digest": digest, "size": size })
            };
            let manifest = put_blob(
                tmp,
                &serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
                    "layers": layers
                        .iter()
                        .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l))
                        .collect::<Vec<_>>(),
                }))?,
            )?;
            let mut index = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
            index["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": "usr" });
            fs::write(
                tmp.join("index.json"),
                serde_json::to_vec(
                    &serde_json::json!({ "schemaVersion": 2, "manifests": [index] }),
                )?,
            )?;
            fs::write(tmp.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            fs::write(tmp.join("dirs.txt"), taken)?;
            Ok(())
        })
    }

    /// `zeros-4g.gz`: [`BOMB_BYTES`] of zeros through flate2 at its best compression, streamed to the file.
    pub fn gzip_bomb(&self) -> Result<PathBuf> {
        self.cached("zeros-4g.gz", |tmp| {
            let out = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
            let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::best());
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..BOMB_BYTES / zeros.len() as u64 {
                gz.write_all(&zeros)?;
            }
            gz.finish()?.flush()?;
            Ok(())
        })
    }
}

/// One layer in `layout`: `tar --sort=name --format=gnu -C / -c DIR | gzip -6 -n`, its uncompressed tar hashed
/// on the way (the config's diff_id). Returns the layer's (digest, size) and the diff_id.
fn gzip_layer(layout: &Path, dir: &str) -> Result<((String, u64), String)> {
    let tmp = layout.join("layer.tmp");
    let mut tar = Command::new("tar")
        .args(["--sort=name", "--format=gnu", "-C", "/", "-cf", "-", dir])
        .stdout(Stdio::piped())
        .spawn()
        .context("tar")?;
    let mut gzip = Command::new("gzip")
        .args(["-6", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(File::create(&tmp)?)
        .spawn()
        .context("gzip")?;
    let mut from = tar.stdout.take().expect("piped");
    let mut to = gzip.stdin.take().expect("piped");
    let diff_id = sha256_copy(&mut from, &mut to)?;
    drop(to);
    for (what, st) in [("tar", tar.wait()?), ("gzip", gzip.wait()?)] {
        ensure!(st.success(), "{what} of /{dir} failed: {st}");
    }
    let digest = sha256_file(&tmp)?;
    let size = fs::metadata(&tmp)?.len();
    fs::rename(&tmp, blob_path(layout, &digest))?;
    Ok(((digest, size), diff_id))
}

/// Write `bytes` as a blob of `layout`; its (digest, size).
fn put_blob(layout: &Path, bytes: &[u8]) -> Result<(String, u64)> {
    let digest = format!("sha256:{:x}", Sha256::digest(bytes));
    fs::write(blob_path(layout, &digest), bytes)?;
    Ok((digest, bytes.len() as u64))
}

/// The `.deb` of package `pkg` in `dir` (`PKG_VERSION_ARCH.deb`), if present.
fn deb_of(dir: &Path, pkg: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{pkg}_");
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => {
            fs::remove_dir_all(p).with_context(|| format!("remove {}", p.display()))
        }
        Ok(_) => fs::remove_file(p).with_context(|| format!("remove {}", p.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The Debian mirror the host's apt uses for `suite`, read from `/etc/apt/sources.list.d/*.sources`
/// (deb822) or `/etc/apt/sources.list` at run time — never stored anywhere.
pub fn host_mirror(suite: &str) -> Result<String> {
    let mut texts = Vec::new();
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|x| x == "sources") {
                texts.push(fs::read_to_string(&p)?);
            }
        }
    }
    for text in &texts {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_owned())
                })
            };
            if let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) {
                if suites.split_whitespace().any(|s| s == suite) {
                    if let Some(u) = uris.split_whitespace().next() {
                        return Ok(u.to_owned());
                    }
                }
            }
        }
    }
    if let Ok(list) = fs::read_to_string("/etc/apt/sources.list") {
        for l in list.lines() {
            let w: Vec<&str> = l
                .split_whitespace()
                .filter(|w| !w.starts_with('['))
                .collect();
            if w.len() >= 3 && w[0] == "deb" && w[2] == suite {
                return Ok(w[1].to_owned());
            }
        }
    }
    bail!("no apt source for {suite} in /etc/apt (pass --mirror)")
}

/// One image of an OCI layout: its manifest, config and layers, each as (digest, size).
pub struct OciImage {
    pub manifest: (String, u64),
    pub config: (String, u64),
    pub layers: Vec<(String, u64)>,
}

impl OciImage {
    pub fn load(layout: &Path, tag: &str) -> Result<Self> {
        let index: serde_json::Value = read_json(&layout.join("index.json"))?;
        let m = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .with_context(|| format!("no tag {tag} in {}", layout.display()))?;
        let descriptor = |d: &serde_json::Value| {
            (
                d["digest"].as_str().unwrap_or("").to_owned(),
                d["size"].as_u64().unwrap_or(0),
            )
        };
        let manifest_desc = descriptor(m);
        let manifest: serde_json::Value = read_json(&blob_path(layout, &manifest_desc.0))?;
        let layers = manifest["layers"]
            .as_array()
            .context("manifest without layers")?
            .iter()
            .map(descriptor)
            .collect();
        Ok(OciImage {
            manifest: manifest_desc,
            config: descriptor(&manifest["config"]),
            layers,
        })
    }

    /// Every blob of the image in manifest order: the manifest, its config, its layers bottom first.
    pub fn blobs(&self) -> Vec<&(String, u64)> {
        [&self.manifest, &self.config]
            .into_iter()
            .chain(&self.layers)
            .collect()
    }
}

pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    layout.join("blobs").join(alg).join(hex)
}

fn read_json(p: &Path) -> Result<serde_json::Value> {
    let text = fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))
}
