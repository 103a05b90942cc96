//! Part 4, *million*: a release of about a million distinct chunks synced on loopback; the site node's peak RSS.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::mbs;
use super::node::{loopback_site, synced, Node, Synced};
use super::seed::{Seed, TREE};
use crate::fat::mib;
use crate::measure::{self, median, sync, tree_size, warm_tree};
use crate::{mb, verdict, Bench};

/// Peak RSS of the syncing node.
const TARGET_RSS_MIB: f64 = 512.0;

struct Run {
    s: Synced,
    /// VmHWM of the site's `ferry serve`, KiB, read right after the sync returned.
    site_hwm: u64,
}

pub(super) fn run(
    md: &mut String,
    b: &Bench,
    seed: &Seed,
    source: &Path,
    chunking: &str,
    reps: usize,
) -> Result<()> {
    let dir = b.fresh("sync-million")?;
    let shown = seed.show(b, TREE)?;
    let distinct = shown["chunks"].as_u64().unwrap_or(0);
    let (source_bytes, _, source_files) = tree_size(source)?;
    let (seed_node, seed_peer) =
        Node::loopback(b, &seed.store, &seed.id, &[], &dir.join("seed.log"))?;
    let mut runs = Vec::new();
    let res = (|| -> Result<()> {
        for rep in 0..reps {
            let sdir = b.fresh(&format!("sync-million-site{rep}"))?;
            let (site, _) = loopback_site(b, seed, &sdir, &seed_peer)?;
            warm_tree(&seed.store)?;
            sync()?;
            measure::wait_quiet(b.quiet_wait)?;
            eprintln!(
                "ferry-bench: sync: million rep {rep}: ferry sync {TREE} ({distinct} chunks)"
            );
            let s = synced(site.sync_cmd(b, TREE).measure()?)?;
            let site_hwm = site.vm_kib("VmHWM")?;
            site.stop()?;
            runs.push(Run { s, site_hwm });
        }
        Ok(())
    })();
    let seed_hwm = seed_node.vm_kib("VmHWM");
    seed_node.stop()?;
    res?;

    writeln!(md, "### 4. A release of {distinct} distinct chunks\n")?;
    writeln!(
        md,
        "Seed store `WORK/fixtures/netsync/million`, `ferry init --min-chunk/--avg-chunk/--max-chunk {chunking}` \
         (the site stores alike: chunking is fixed per site): `{TREE}` = `dir:{}` ({} in {} files of real \
         content), which `ferry --json show` counts as {distinct} distinct chunks ({} stored). Seed and site on \
         loopback, the site store fresh each rep. *site peak RSS*: `VmHWM` of the site's `ferry serve` from \
         `/proc/PID/status`, read when `ferry sync` returned (one node process per rep, so it is that sync's \
         peak); *CLI peak RSS*: the `ferry sync` client's ru_maxrss.\n",
        source.display(),
        mb(source_bytes),
        source_files,
        mb(shown["stored_bytes"].as_u64().unwrap_or(0)),
    )?;
    writeln!(
        md,
        "| rep | wall s | node s | chunks fetched | payload | on the wire | payload MB/s | chunks/s | site peak RSS | \
         CLI peak RSS | other CPU s |"
    )?;
    writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for (i, r) in runs.iter().enumerate() {
        let s = &r.s;
        writeln!(
            md,
            "| {i} | {:.1} | {:.1} | {} | {} | {} | {:.0} | {:.0} | {:.1} MiB | {:.1} MiB | {:.1} |",
            s.m.wall,
            s.seconds,
            s.chunks,
            mb(s.payload),
            mb(s.wire),
            mbs(s.payload, s.m.wall),
            s.chunks as f64 / s.m.wall,
            mib(r.site_hwm),
            mib(s.m.max_rss_kib),
            s.m.others
        )?;
    }
    let worst = runs.iter().map(|r| mib(r.site_hwm)).fold(0.0, f64::max);
    let wall = median(&runs.iter().map(|r| r.s.m.wall).collect::<Vec<_>>());
    writeln!(
        md,
        "\nThe seed's `ferry serve` peak RSS over all reps: {}. Median wall {wall:.1} s.\n",
        seed_hwm.map_or_else(|e| format!("? ({e})"), |k| format!("{:.1} MiB", mib(k)))
    )?;
    writeln!(
        md,
        "Target: the syncing node's peak RSS ≤ {TARGET_RSS_MIB:.0} MiB → **{}** ({worst:.1} MiB, the largest of \
         {} reps; {distinct} distinct chunks{}).\n",
        verdict(worst <= TARGET_RSS_MIB),
        runs.len(),
        if distinct < 900_000 {
            ", fewer than the million the target names"
        } else {
            ""
        }
    )?;
    Ok(())
}
