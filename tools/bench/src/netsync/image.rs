//! Part 1, *fat*: an OCI image with one fat gzip layer synced between two nodes on loopback, next to `skopeo
//! copy` of the same image from one Debian `docker-registry` to another.

use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use flate2::read::MultiGzDecoder;

use super::mbs;
use super::node::{loopback_site, synced, Node, Synced};
use super::seed::{add, Seed};
use crate::fat::{mib, skopeo, Registry};
use crate::fixtures::{blob_path, OciImage};
use crate::measure::{self, median, sync, warm_tree, Measured};
use crate::{mb, verdict, Bench};

/// The fat image's release on the seed.
pub(super) const RELEASE: &str = "fat@1";
/// Content bytes per second of the whole `ferry sync`.
const TARGET_BPS: f64 = 1e9;
/// `ferry sync` wall time at most this many times `skopeo copy`'s.
const TARGET_RATIO: f64 = 1.0;
/// The repository and tag the image has in both registries.
const REF: &str = "x:v1";

/// The seed holding the fat image, and what the image is made of.
pub(super) struct FatSeed {
    pub(super) seed: Seed,
    layout: PathBuf,
    tag: String,
    image: OciImage,
    /// Per blob (manifest, config, layers): (stored bytes, content bytes — a gzip blob's decompressed size).
    sizes: Vec<(u64, u64)>,
}

impl FatSeed {
    /// The seed store `WORK/fixtures/netsync/fat`: `ferry add fat@1 oci:LAYOUT:TAG`.
    pub(super) fn cached(b: &Bench, layout: &Path, tag: &str) -> Result<FatSeed> {
        let image = OciImage::load(layout, tag)?;
        let source = format!("oci:{}:{tag}", layout.display());
        let stamp = format!("{RELEASE} {source} {}", image.manifest.0);
        let seed = Seed::cached(b, "fat", &stamp, &[], |store, _| {
            add(b, store, RELEASE, &source)?;
            let mut notes = String::new();
            for (digest, size) in image.blobs() {
                let content = content_bytes(&blob_path(layout, digest))?;
                writeln!(notes, "{digest} {size} {content}")?;
            }
            Ok(notes)
        })?;
        let sizes = seed
            .notes
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                ensure!(f.len() == 3, "odd line {l:?} in the fat seed's notes");
                Ok((f[1].parse()?, f[2].parse()?))
            })
            .collect::<Result<Vec<(u64, u64)>>>()?;
        ensure!(
            sizes.len() == image.blobs().len(),
            "the fat seed's notes do not match the image"
        );
        Ok(FatSeed {
            seed,
            layout: layout.to_owned(),
            tag: tag.to_owned(),
            image,
            sizes,
        })
    }

    /// The uncompressed bytes the release holds: every blob, a gzip layer counted as its tar.
    fn content(&self) -> u64 {
        self.sizes.iter().map(|s| s.1).sum()
    }

    /// What the image is, for a part's text.
    pub(super) fn describe(&self) -> String {
        let layers: Vec<String> = self.sizes[2..]
            .iter()
            .map(|(stored, content)| {
                if stored == content {
                    mb(*stored)
                } else {
                    format!("{} of gzip holding {} of tar", mb(*stored), mb(*content))
                }
            })
            .collect();
        format!(
            "`{RELEASE}` = `ferry add {RELEASE} oci:{}:{}` ({} layer(s): {}; {} of content in all, the measure of \
             MB/s here)",
            self.layout.display(),
            self.tag,
            self.image.layers.len(),
            layers.join(", "),
            mb(self.content())
        )
    }
}

/// A blob's content bytes: its decompressed size if it is gzip, else its size.
fn content_bytes(p: &Path) -> Result<u64> {
    let mut f = File::open(p).with_context(|| format!("open {}", p.display()))?;
    let mut magic = [0u8; 2];
    let gz = io::Read::read_exact(&mut f, &mut magic).is_ok() && magic == [0x1f, 0x8b];
    if !gz {
        return Ok(std::fs::metadata(p)?.len());
    }
    let f = File::open(p)?;
    Ok(io::copy(&mut MultiGzDecoder::new(f), &mut io::sink())?)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Ferry,
    Skopeo,
}

struct Row {
    ferry_first: bool,
    ferry: Synced,
    /// The site node's peak RSS (KiB) at the end of the sync.
    site_hwm: u64,
    skopeo: Measured,
}

pub(super) fn run(md: &mut String, b: &Bench, fat: &FatSeed, reps: usize) -> Result<()> {
    let dir = b.fresh("sync-fat")?;
    let reg_a = Registry::start(&dir.join("reg-a"))?;
    eprintln!("ferry-bench: sync: fat: loading registry A (untimed)");
    skopeo(
        &format!("oci:{}:{}", fat.layout.display(), fat.tag),
        &format!("docker://{}/{REF}", reg_a.host),
    )?;
    let (seed_node, seed_peer) =
        Node::loopback(b, &fat.seed.store, &fat.seed.id, &[], &dir.join("seed.log"))?;
    let mut rows = Vec::new();
    let mut fsck = None;
    let res = (|| -> Result<()> {
        for rep in 0..reps {
            let ferry_first = rep % 2 == 0;
            let order = if ferry_first {
                [Tool::Ferry, Tool::Skopeo]
            } else {
                [Tool::Skopeo, Tool::Ferry]
            };
            let (mut ferry, mut sk) = (None, None);
            for tool in order {
                match tool {
                    Tool::Ferry => {
                        let sdir = b.fresh(&format!("sync-fat-site{rep}"))?;
                        let (site, store) = loopback_site(b, &fat.seed, &sdir, &seed_peer)?;
                        warm_tree(&fat.seed.store)?;
                        sync()?;
                        measure::wait_quiet(b.quiet_wait)?;
                        eprintln!("ferry-bench: sync: fat rep {rep}: ferry sync {RELEASE}");
                        let s = synced(site.sync_cmd(b, RELEASE).measure()?)?;
                        let hwm = site.vm_kib("VmHWM")?;
                        site.stop()?;
                        if rep + 1 == reps {
                            eprintln!("ferry-bench: sync: fat: ferry fsck of the last site");
                            fsck = Some(b.ferry_fsck(&store)?);
                        }
                        ferry = Some((s, hwm));
                    }
                    Tool::Skopeo => {
                        let reg_b = Registry::start(&b.fresh(&format!("sync-fat-reg-b{rep}"))?)?;
                        warm_tree(&dir.join("reg-a/data"))?;
                        sync()?;
                        measure::wait_quiet(b.quiet_wait)?;
                        eprintln!("ferry-bench: sync: fat rep {rep}: skopeo copy A → B");
                        let m = skopeo(
                            &format!("docker://{}/{REF}", reg_a.host),
                            &format!("docker://{}/{REF}", reg_b.host),
                        )?;
                        check_registry(&reg_b.host, &fat.image)?;
                        sk = Some(m);
                    }
                }
            }
            let ((ferry, site_hwm), skopeo) = ferry.zip(sk).context("both ran")?;
            rows.push(Row {
                ferry_first,
                ferry,
                site_hwm,
                skopeo,
            });
        }
        Ok(())
    })();
    seed_node.stop()?;
    drop(reg_a);
    res?;
    report(md, fat, &rows, fsck.as_ref())
}

/// Every blob of `image` is in the registry at `host` with its size, and the tag names its manifest.
fn check_registry(host: &str, image: &OciImage) -> Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (name, tag) = REF.split_once(':').context("REF is NAME:TAG")?;
    for (digest, size) in [&image.config].into_iter().chain(&image.layers) {
        let r = client
            .head(format!("http://{host}/v2/{name}/blobs/{digest}"))
            .send()?;
        let len = r
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        ensure!(
            r.status().is_success() && len == Some(*size),
            "registry B: blob {digest}: {} with {len:?} bytes, expected {size}",
            r.status()
        );
    }
    let r = client
        .head(format!("http://{host}/v2/{name}/manifests/{tag}"))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()?;
    let got = r
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ensure!(
        got == image.manifest.0,
        "registry B: {REF} is {got:?}, expected {}",
        image.manifest.0
    );
    Ok(())
}

fn report(
    md: &mut String,
    fat: &FatSeed,
    rows: &[Row],
    fsck: Option<&serde_json::Value>,
) -> Result<()> {
    let content = fat.content();
    let reps = rows.len();
    writeln!(
        md,
        "### 1. A fat image on loopback, next to `skopeo copy` between two registries\n"
    )?;
    writeln!(
        md,
        "Seed store `WORK/fixtures/netsync/fat` (`ferry init` defaults): {}. Seed and site nodes on 127.0.0.1 \
         (QUIC data plane, TLS with the node keys); the site syncs `{RELEASE}` into a fresh store. *content MB/s* \
         = {} / wall time of the whole `ferry sync` process. The alternative in the same run: two Debian \
         `docker-registry` processes on loopback (filesystem storage in the run dir, the config of `HARNESS.md`); \
         the image pushed to A once (`skopeo copy oci:LAYOUT:TAG docker://A/{REF}`, untimed), then per rep a fresh \
         B (new storage, new process) and, timed, `skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
         docker://A/{REF} docker://B/{REF}`; B is then checked to hold every blob with its size and the tag its \
         manifest. skopeo moves the gzip bytes as they are (no recompression); ferry moves zstd chunks of the \
         decompressed content, verifies each chunk's BLAKE3, writes packs and its index, and makes the blobs \
         and the release visible. Which runs first alternates by rep; the seed store and A's storage are read \
         into the page cache before each run.\n",
        fat.describe(),
        mb(content)
    )?;
    writeln!(
        md,
        "| rep | first | ferry wall s | node s | chunks | payload | on the wire | content MB/s | site peak RSS | \
         other CPU s | skopeo wall s | content MB/s | other CPU s | ferry / skopeo time |"
    )?;
    writeln!(
        md,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for (i, r) in rows.iter().enumerate() {
        let (f, s) = (&r.ferry, &r.skopeo);
        writeln!(
            md,
            "| {i} | {} | {:.2} | {:.2} | {} | {} | {} | {:.0} | {:.0} MiB | {:.1} | {:.2} | {:.0} | {:.1} | {:.2}x |",
            if r.ferry_first { "ferry" } else { "skopeo" },
            f.m.wall,
            f.seconds,
            f.chunks,
            mb(f.payload),
            mb(f.wire),
            mbs(content, f.m.wall),
            mib(r.site_hwm),
            f.m.others,
            s.wall,
            mbs(content, s.wall),
            s.others,
            f.m.wall / s.wall
        )?;
    }
    writeln!(
        md,
        "\n*payload*: the report's `payload_bytes` (raw bytes of the chunks fetched: the layer's tar split into \
         headers and contents, plus its re-creation data); *on the wire*: `wire_bytes` (the chunk records as \
         sent). *other CPU s*: CPU time of the whole machine during the run except the measured client process — \
         both nodes (or both registries), and whatever else ran.\n"
    )?;
    let fr = median(
        &rows
            .iter()
            .map(|r| mbs(content, r.ferry.m.wall))
            .collect::<Vec<_>>(),
    );
    let sr = median(
        &rows
            .iter()
            .map(|r| mbs(content, r.skopeo.wall))
            .collect::<Vec<_>>(),
    );
    let ratio = median(
        &rows
            .iter()
            .map(|r| r.ferry.m.wall / r.skopeo.wall)
            .collect::<Vec<_>>(),
    );
    let fw = median(&rows.iter().map(|r| r.ferry.m.wall).collect::<Vec<_>>());
    let sw = median(&rows.iter().map(|r| r.skopeo.wall).collect::<Vec<_>>());
    writeln!(
        md,
        "| median of {reps} | ferry sync | skopeo copy A → B | ferry / skopeo |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(
        md,
        "| wall s | {fw:.2} | {sw:.2} | **{ratio:.2}x** (median of the per-rep ratios) |"
    )?;
    writeln!(
        md,
        "| **content MB/s (whole process)** | **{fr:.0}** | {sr:.0} | |"
    )?;
    if let Some(f) = fsck {
        writeln!(
            md,
            "\n`ferry fsck` of the last rep's site store: ok ({} chunks, {} blobs, {} re-created, {} releases).",
            f["chunks"], f["blobs"], f["recreated_blobs"], f["releases"]
        )?;
    }
    writeln!(
        md,
        "\nTargets: content ≥ {:.0} MB/s over the whole `ferry sync` → **{}** ({fr:.0} MB/s, median); `ferry \
         sync` time ≤ {TARGET_RATIO:.1}x `skopeo copy` A → B → **{}** ({ratio:.2}x, median).\n",
        TARGET_BPS / 1e6,
        verdict(fr * 1e6 >= TARGET_BPS),
        verdict(ratio <= TARGET_RATIO)
    )?;
    Ok(())
}
