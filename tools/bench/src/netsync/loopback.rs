//! Opt-in part *loopback* (the first part of the earlier runs): a tree of 52k files synced between two nodes
//! on loopback, next to `curl` fetching a tar of the same tree from Debian's `docker-registry`.

use std::fmt::Write as _;
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use super::node::{loopback_site, phase_cell, phased, Node, Synced};
use super::seed::{TreeSeed, BIG};
use super::{free_port, mbs, START_TIMEOUT};
use crate::measure::{self, median, sync, warm_tree, Cmd, Measured};
use crate::{mb, verdict, Bench};

/// Chunk payload per second over loopback.
const TARGET_LOOPBACK_BPS: f64 = 1e9;

pub(super) fn run(md: &mut String, b: &Bench, tree: &TreeSeed, reps: usize) -> Result<()> {
    let seed = &tree.seed;
    let dir = b.fresh("sync-loopback")?;
    // The alternative: docker-registry serving a tar of the same tree as one blob.
    let tarball = dir.join("tree.tar");
    Cmd::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(tree.source.parent().context("source has a parent")?)
        .arg(tree.source.file_name().context("source has a name")?)
        .run()?;
    let tar_bytes = fs::metadata(&tarball)?.len();
    let digest = format!(
        "sha256:{}",
        Cmd::new("sha256sum")
            .arg(&tarball)
            .output()?
            .split_whitespace()
            .next()
            .context("sha256sum")?
    );
    let reg_port = free_port()?;
    let reg_yml = dir.join("reg.yml");
    fs::write(
        &reg_yml,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{reg_port}\n",
            dir.join("reg-data").display()
        ),
    )?;
    let mut reg = Cmd::new("docker-registry")
        .arg("serve")
        .arg(&reg_yml)
        .spawn(
            Stdio::null(),
            fs::File::create(dir.join("registry.log"))?.into(),
        )?;
    let host = format!("127.0.0.1:{reg_port}");
    let result = (|| -> Result<()> {
        wait_http(&format!("http://{host}/v2/"))?;
        // Monolithic upload: POST for a location, PUT the whole tar there with its digest.
        let loc = Cmd::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{redirect_url}%{header_json}",
                "-X",
                "POST",
            ])
            .arg(format!("http://{host}/v2/tree/blobs/uploads/"))
            .output()?;
        let location = loc
            .lines()
            .next()
            .and_then(|l| l.split('{').next())
            .filter(|l| !l.is_empty())
            .map(str::to_owned);
        let location = match location {
            Some(l) => l,
            None => {
                let h: Value = serde_json::from_str(loc.trim())?;
                h["location"][0].as_str().context("no Location")?.to_owned()
            }
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let code = Cmd::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-T"])
            .arg(&tarball)
            .arg(format!("{location}{sep}digest={digest}"))
            .output()?;
        ensure!(code.trim() == "201", "registry upload answered {code}");
        fs::remove_file(&tarball)?;

        let (seed_node, seed_peer) =
            Node::loopback(b, &seed.store, &seed.id, &[], &dir.join("seed.log"))?;
        warm_tree(&seed.store)?;
        warm_tree(&dir.join("reg-data"))?;
        let mut ferry_runs = Vec::new();
        let mut curl_runs = Vec::new();
        let inner = (|| -> Result<()> {
            for rep in 0..reps {
                // ferry
                let sdir = b.fresh(&format!("sync-loopback-site{rep}"))?;
                let (site, _) = loopback_site(b, seed, &sdir, &seed_peer)?;
                sync()?;
                measure::wait_quiet(b.quiet_wait)?;
                eprintln!("ferry-bench: sync: loopback rep {rep}: ferry sync {BIG}");
                let s = phased(site.sync_phased(b, BIG)?)?;
                site.stop()?;
                ferry_runs.push(s);
                // curl
                let out = sdir.join("tree.tar");
                sync()?;
                measure::wait_quiet(b.quiet_wait)?;
                eprintln!("ferry-bench: sync: loopback rep {rep}: curl GET of the tar");
                let m = Cmd::new("curl")
                    .args(["-s", "-o"])
                    .arg(&out)
                    .args(["-w", "%{http_code} %{size_download}"])
                    .arg(format!("http://{host}/v2/tree/blobs/{digest}"))
                    .measure()?;
                ensure!(
                    m.stdout.trim() == format!("200 {tar_bytes}"),
                    "curl printed {:?}",
                    m.stdout
                );
                fs::remove_file(&out)?;
                curl_runs.push(m);
            }
            Ok(())
        })();
        seed_node.stop()?;
        inner?;
        loopback_report(md, &ferry_runs, &curl_runs, tar_bytes, reps)
    })();
    let _ = reg.kill();
    let _ = reg.wait();
    result
}

fn wait_http(url: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(code) = Cmd::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
            .output()
        {
            if code.trim() == "200" {
                return Ok(());
            }
        }
        if start.elapsed() > START_TIMEOUT {
            bail!("{url} did not answer 200");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn loopback_report(
    md: &mut String,
    ferry: &[Synced],
    curl: &[Measured],
    tar_bytes: u64,
    reps: usize,
) -> Result<()> {
    writeln!(md, "### Loopback: a tree of many files, next to curl\n")?;
    writeln!(
        md,
        "Seed and site on 127.0.0.1 (QUIC data plane, TLS with the node keys), site store fresh each run. \
         *payload MB/s* = the report's `payload_bytes` (raw bytes of the chunks fetched) / wall time of the \
         whole `ferry sync` process. The alternative: the same tree as one uncompressed tar ({}) pushed to \
         Debian's `docker-registry` (Go, filesystem storage), fetched with `curl -s -o FILE \
         http://127.0.0.1:PORT/v2/tree/blobs/sha256:…` into the run dir — a real artifact server streaming a \
         file, and a client writing what it gets to the same filesystem, as the site node writes its packs. \
         `python3 -m http.server` was not used: it copies in Python and would flatter ferry. Not equal work: \
         ferry also decompresses and BLAKE3-checks every chunk, encrypts (QUIC/TLS), and writes zstd packs (about \
         a quarter of the bytes) and the index; curl writes the raw tar, unencrypted. Both data dirs page-cache \
         warm.\n",
        mb(tar_bytes)
    )?;
    writeln!(md, "| rep | ferry wall s | node s | chunks | payload | on the wire | payload MB/s | fetch phase s | payload MB/s in it | other CPU s | curl wall s | curl MB/s | other CPU s |")?;
    writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    )?;
    for (i, (f, c)) in ferry.iter().zip(curl).enumerate() {
        writeln!(
            md,
            "| {i} | {:.2} | {:.2} | {} | {} | {} | {:.0} | {} | {} | {:.1} | {:.2} | {:.0} | {:.1} |",
            f.m.wall,
            f.seconds,
            f.chunks,
            mb(f.payload),
            mb(f.wire),
            mbs(f.payload, f.m.wall),
            phase_cell(f),
            f.phase
                .map_or("?".into(), |(a, z)| format!("{:.0}", mbs(f.payload, z - a))),
            f.m.others,
            c.wall,
            mbs(tar_bytes, c.wall),
            c.others
        )?;
    }
    writeln!(
        md,
        "\n*fetch phase*: from the first to the last `ferry status` poll (every 250 ms, so ± 0.3 s) that saw chunk \
         bytes arriving — before it the site fetches the signed release and the recipes, after it makes blobs and \
         the release visible. *other CPU s*: CPU time of the whole machine during the run except the measured client process (`ferry \
         sync` or curl) — both nodes' (or the registry's) work, and whatever else ran.\n"
    )?;
    let fr = median(
        &ferry
            .iter()
            .map(|f| mbs(f.payload, f.m.wall))
            .collect::<Vec<_>>(),
    );
    let fnode = median(
        &ferry
            .iter()
            .map(|f| mbs(f.payload, f.seconds))
            .collect::<Vec<_>>(),
    );
    let cr = median(
        &curl
            .iter()
            .map(|c| mbs(tar_bytes, c.wall))
            .collect::<Vec<_>>(),
    );
    writeln!(
        md,
        "\n| median of {reps} | ferry sync | curl ← docker-registry | ferry / curl |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(
        md,
        "| **MB/s (whole process)** | **{fr:.0}** | **{cr:.0}** | **{:.2}x** |",
        fr / cr
    )?;
    writeln!(
        md,
        "| payload MB/s by the node's own `seconds` | {fnode:.0} | | |"
    )?;
    writeln!(
        md,
        "\nTarget: ≥ {:.0} MB/s of chunk payload (iroh's published 884 MiB/s = 927 MB/s is the anchor) → **{}** \
         ({fr:.0} MB/s, median).\n",
        TARGET_LOOPBACK_BPS / 1e6,
        verdict(fr * 1e6 >= TARGET_LOOPBACK_BPS)
    )?;
    Ok(())
}
