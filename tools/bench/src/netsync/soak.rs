//! Part 5, *soak*: hundreds of small distinct releases synced one after the other through one long-running site
//! node; its RSS after the first rounds and after all of them.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Result};

use super::node::{loopback_site, synced, Node};
use super::seed::{add, Seed};
use crate::fat::mib;
use crate::measure::median;
use crate::{mb, verdict, Bench};

/// The site node's RSS after all rounds at most this many times its RSS after the first ones.
const TARGET_GROWTH: f64 = 1.1;
/// The soak's releases take files of these sizes.
const FILE_BYTES: std::ops::RangeInclusive<u64> = (16 << 10)..=(1 << 20);

/// The seed holding `soak@1` … `soak@N`, each one real file.
pub(super) struct SoakSeed {
    seed: Seed,
    source: String,
    /// Bytes of all the files.
    bytes: u64,
}

impl SoakSeed {
    /// The seed store `WORK/fixtures/netsync/soak`: `ferry add soak@I file:F` for the first `rounds` regular
    /// files of `source` (in path order) of 16 KiB to 1 MiB.
    pub(super) fn cached(b: &Bench, source: &Path, rounds: usize) -> Result<SoakSeed> {
        let stamp = format!("soak {} {rounds}", source.display());
        let seed = Seed::cached(b, "soak", &stamp, &[], |store, _| {
            let mut notes = String::new();
            let mut n = 0;
            for e in walkdir::WalkDir::new(source).sort_by_file_name() {
                let e = e?;
                let len = e.metadata()?.len();
                if !e.file_type().is_file() || !FILE_BYTES.contains(&len) {
                    continue;
                }
                n += 1;
                add(
                    b,
                    store,
                    &format!("soak@{n}"),
                    &format!("file:{}", e.path().display()),
                )?;
                writeln!(notes, "{len}")?;
                if n == rounds {
                    break;
                }
            }
            ensure!(
                n == rounds,
                "{} has only {n} regular files of 16 KiB to 1 MiB",
                source.display()
            );
            Ok(notes)
        })?;
        let bytes = seed
            .notes
            .lines()
            .filter_map(|l| l.parse::<u64>().ok())
            .sum();
        Ok(SoakSeed {
            seed,
            source: source.display().to_string(),
            bytes,
        })
    }
}

pub(super) fn run(
    md: &mut String,
    b: &Bench,
    s: &SoakSeed,
    rounds: usize,
    first: usize,
) -> Result<()> {
    let seed = &s.seed;
    let dir = b.fresh("sync-soak")?;
    let (seed_node, seed_peer) =
        Node::loopback(b, &seed.store, &seed.id, &[], &dir.join("seed.log"))?;
    let (site, store) = match loopback_site(b, seed, &dir.join("site"), &seed_peer) {
        Ok(s) => s,
        Err(e) => {
            seed_node.stop()?;
            return Err(e);
        }
    };
    // (VmRSS, VmHWM) of the site after `first` rounds and after all; the seed's at the end.
    let mut after_first = (0, 0);
    let mut walls = Vec::new();
    let start = Instant::now();
    let res = (|| -> Result<()> {
        for round in 1..=rounds {
            let release = format!("soak@{round}");
            let r = synced(site.sync_cmd(b, &release).measure()?)?;
            ensure!(r.chunks > 0, "round {round}: {release} fetched no chunks");
            walls.push(r.m.wall);
            if round == first {
                after_first = (site.vm_kib("VmRSS")?, site.vm_kib("VmHWM")?);
            }
            if round % 50 == 0 {
                eprintln!(
                    "ferry-bench: sync: soak round {round}: site RSS {:.1} MiB",
                    mib(site.vm_kib("VmRSS")?)
                );
            }
        }
        Ok(())
    })();
    let elapsed = start.elapsed().as_secs_f64();
    let end = (site.vm_kib("VmRSS"), site.vm_kib("VmHWM"));
    let seed_end = (seed_node.vm_kib("VmRSS"), seed_node.vm_kib("VmHWM"));
    site.stop()?;
    seed_node.stop()?;
    res?;
    let end = (end.0?, end.1?);
    let seed_end = (seed_end.0?, seed_end.1?);
    let ratio = end.0 as f64 / after_first.0.max(1) as f64;
    let fsck = b.ferry_fsck(&store)?;

    writeln!(md, "### 5. Soak: {rounds} syncs through one site node\n")?;
    writeln!(
        md,
        "Seed store `WORK/fixtures/netsync/soak` (`ferry init` defaults): `soak@1` … `soak@{rounds}`, each \
         `ferry add soak@I file:F` of one real file — the first {rounds} regular files of 16 KiB to 1 MiB under \
         `{}` in path order ({} in all). A seed and one site node on loopback, started once; the site runs \
         `ferry sync soak@1`, then `soak@2`, … one after the other ({rounds} syncs in {elapsed:.0} s). RSS: \
         `VmRSS` (and the peak, `VmHWM`) of the site's `ferry serve` from `/proc/PID/status` after sync {first} \
         and after sync {rounds}. At the end, with the nodes stopped, `ferry fsck` of the site: ok, {} \
         releases.\n",
        s.source,
        mb(s.bytes),
        fsck["releases"]
    )?;
    writeln!(
        md,
        "| node | RSS after {first} syncs | after {rounds} | ratio | peak RSS after {first} | after {rounds} |\n\
         |---|---:|---:|---:|---:|---:|\n\
         | site (syncing) | {:.1} MiB | {:.1} MiB | **{ratio:.3}x** | {:.1} MiB | {:.1} MiB |\n\
         | seed (serving) | | {:.1} MiB | | | {:.1} MiB |\n",
        mib(after_first.0),
        mib(end.0),
        mib(after_first.1),
        mib(end.1),
        mib(seed_end.0),
        mib(seed_end.1)
    )?;
    let (head, tail) = walls.split_at(first.min(walls.len()));
    writeln!(
        md,
        "`ferry sync` wall time, median: {:.3} s over the first {first} syncs, {:.3} s over the rest.\n",
        median(head),
        median(tail)
    )?;
    writeln!(
        md,
        "Target: the site node's RSS after {rounds} syncs ≤ {TARGET_GROWTH}x after {first} → **{}** \
         ({ratio:.3}x).\n",
        verdict(ratio <= TARGET_GROWTH)
    )?;
    Ok(())
}
