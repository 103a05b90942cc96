//! Part 3, *fanout*: N site nodes started together behind one shaped seed link, next to one site node alone;
//! every node checked exact at the end.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::Result;
use ferry_tests::netns::Lan;
use serde_json::Value;

use super::node::{allow, site_store, synced, tx_bytes, Node, Synced};
use super::seed::{Seed, TREE};
use super::P2P_PORT;
use crate::measure::{self, median, sync, warm_tree, Measured};
use crate::{mb, verdict, Bench};

/// N nodes together vs one alone: time, and bytes the seed sent.
const TARGET_TIME: f64 = 1.5;
const TARGET_BYTES: f64 = 1.2;
/// How long the machine's CPU use is sampled with the N nodes connected and idle.
const IDLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

struct FanRun {
    alone: Synced,
    alone_tx: u64,
    together: Vec<Synced>,
    together_wall: f64,
    together_tx: u64,
    /// CPU seconds the whole machine used during the N syncs (all nodes, and anything else running).
    together_cpu: f64,
    /// CPUs the machine kept busy while the N nodes sat connected and idle, just before the syncs.
    idle_cpus: f64,
    /// Nodes found exact (fsck ok, the release's chunks all there), and what was wrong with the others.
    exact: usize,
    wrong: Vec<String>,
}

fn site_name(i: usize) -> String {
    format!("s{:02}", i + 1)
}

/// `ferry fsck` passes on `store` and it holds `release` with `chunks` chunks; else what is wrong.
fn check_exact(b: &Bench, store: &Path, release: &str, chunks: &Value) -> Option<String> {
    if let Err(e) = b.ferry_fsck(store) {
        return Some(format!("{}: {e:#}", store.display()));
    }
    match b
        .ferry(store)
        .args(["--json", "show", release])
        .output()
        .map(|o| serde_json::from_str::<Value>(&o).unwrap_or(Value::Null))
    {
        Ok(v) if &v["chunks"] == chunks => None,
        Ok(v) => Some(format!(
            "{}: {release} has {} chunks, the seed's {chunks}",
            store.display(),
            v["chunks"]
        )),
        Err(e) => Some(format!("{}: {e:#}", store.display())),
    }
}

pub(super) fn run(
    md: &mut String,
    b: &Bench,
    seed: &Seed,
    what: &str,
    n: usize,
    mbit: u32,
    reps: usize,
) -> Result<()> {
    let names: Vec<String> = (0..n).map(site_name).collect();
    let mut hosts = vec!["seed"];
    hosts.extend(names.iter().map(String::as_str));
    let lan = Lan::new(&hosts);
    lan.shape("seed", mbit);
    let sh = lan.host("seed");
    let dir = b.fresh("sync-fanout")?;
    let seed_chunks = seed.show(b, TREE)?["chunks"].clone();
    let seed_node = Node::on_host(b, &seed.store, sh, &[], &dir.join("seed.log"))?;
    let seed_peer = (sh.ip().to_string(), P2P_PORT, seed.id.clone());
    let mut runs = Vec::new();
    let res = (|| -> Result<()> {
        warm_tree(&seed.store)?;
        for rep in 0..reps {
            // One site alone.
            let adir = b.fresh(&format!("sync-fanout-alone{rep}"))?;
            let (store, _) = site_store(b, &adir, seed)?;
            let a = Node::on_host(
                b,
                &store,
                lan.host(&names[0]),
                std::slice::from_ref(&seed_peer),
                &adir.join("site.log"),
            )?;
            a.wait_connected(b, &[&seed.id])?;
            sync()?;
            measure::wait_quiet(b.quiet_wait)?;
            eprintln!("ferry-bench: sync: fanout rep {rep}: one site alone");
            let tx0 = tx_bytes(sh.ns(), sh.dev())?;
            let alone = synced(a.sync_cmd(b, TREE).measure()?)?;
            let alone_tx = tx_bytes(sh.ns(), sh.dev())? - tx0;
            a.stop()?;
            let mut wrong: Vec<String> = check_exact(b, &store, TREE, &seed_chunks)
                .into_iter()
                .collect();

            // N together.
            let tdir = b.fresh(&format!("sync-fanout-{n}-{rep}"))?;
            eprintln!("ferry-bench: sync: fanout rep {rep}: making {n} site stores");
            let mut stores = Vec::new();
            for name in &names {
                let d = tdir.join(name);
                fs::create_dir_all(&d)?;
                stores.push(site_store(b, &d, seed)?);
            }
            let (stores, ids): (Vec<PathBuf>, Vec<String>) = stores.into_iter().unzip();
            for (i, s) in stores.iter().enumerate() {
                for (j, id) in ids.iter().enumerate() {
                    if i != j {
                        allow(b, s, id)?;
                    }
                }
            }
            let mut nodes = Vec::new();
            for (i, name) in names.iter().enumerate() {
                // Each dials the seed and the sites before it (a connection serves both ways).
                let mut peers = vec![seed_peer.clone()];
                for (j, m) in names[..i].iter().enumerate() {
                    peers.push((lan.host(m).ip().to_string(), P2P_PORT, ids[j].clone()));
                }
                nodes.push(Node::on_host(
                    b,
                    &stores[i],
                    lan.host(name),
                    &peers,
                    &tdir.join(format!("{name}.log")),
                )?);
            }
            for (i, node) in nodes.iter().enumerate() {
                let mut want: Vec<&str> = vec![&seed.id];
                want.extend(
                    ids.iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, id)| id.as_str()),
                );
                node.wait_connected(b, &want)?;
            }
            sync()?;
            measure::wait_quiet(b.quiet_wait)?;
            let idle0 = measure::busy_seconds()?;
            std::thread::sleep(IDLE_WINDOW);
            let idle_cpus = (measure::busy_seconds()? - idle0) / IDLE_WINDOW.as_secs_f64();
            eprintln!("ferry-bench: sync: fanout rep {rep}: {n} sites together");
            let tx0 = tx_bytes(sh.ns(), sh.dev())?;
            let barrier = Arc::new(Barrier::new(nodes.len()));
            let busy0 = measure::busy_seconds()?;
            let start = Instant::now();
            let results: Vec<Result<Measured>> = std::thread::scope(|scope| {
                let handles: Vec<_> = nodes
                    .iter()
                    .map(|node| {
                        let cmd = node.sync_cmd(b, TREE);
                        let barrier = barrier.clone();
                        scope.spawn(move || {
                            barrier.wait();
                            cmd.measure()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("sync thread"))
                    .collect()
            });
            let together_wall = start.elapsed().as_secs_f64();
            let together_cpu = measure::busy_seconds()? - busy0;
            let together_tx = tx_bytes(sh.ns(), sh.dev())? - tx0;
            for node in nodes {
                node.stop()?;
            }
            let together = results
                .into_iter()
                .map(|r| r.and_then(synced))
                .collect::<Result<Vec<_>>>()?;
            eprintln!("ferry-bench: sync: fanout rep {rep}: checking every store");
            for s in &stores {
                wrong.extend(check_exact(b, s, TREE, &seed_chunks));
            }
            runs.push(FanRun {
                alone,
                alone_tx,
                together,
                together_wall,
                together_tx,
                together_cpu,
                idle_cpus,
                exact: n + 1 - wrong.len(),
                wrong,
            });
        }
        Ok(())
    })();
    seed_node.stop()?;
    drop(lan);
    res?;
    report(md, seed, what, n, mbit, &runs)
}

/// `min / median / max` of `xs`, each formatted by `f`.
fn spread(xs: &[f64], f: impl Fn(f64) -> String) -> String {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} / {} / {}", f(lo), f(median(xs)), f(hi))
}

fn report(
    md: &mut String,
    seed: &Seed,
    what: &str,
    n: usize,
    mbit: u32,
    runs: &[FanRun],
) -> Result<()> {
    writeln!(
        md,
        "### 3. {n} site nodes behind one {mbit} Mbit/s seed link\n"
    )?;
    writeln!(
        md,
        "Seed store `WORK/fixtures/netsync/fanout` (`ferry init` defaults): {what}, chosen so that {n} site \
         stores fit on one machine at once. Namespaces `seed`, `s01` … `s{n:02}` on one bridge; only the seed's \
         link is shaped ({mbit} Mbit/s both ways, tbf); the site Lan is unshaped (veth, no delay). Each site \
         dials the seed and the sites started before it (static peers, no mDNS: a full mesh, as mDNS would make \
         it). *alone*: a fresh `s01` syncs `{TREE}` with no other site running. *together*: {n} fresh sites, each \
         connected to the seed and to every other site, then {n} `ferry sync {TREE}` processes released by one \
         barrier; time = until the last one exits. *seed tx* = TX bytes of the seed's veth from `ip -n NS -s \
         link` around the syncs (all headers and the control plane included); the \"delta once\" is what the \
         seed sent for the site alone in the same rep. *exact*: after the syncs, with the nodes stopped, `ferry \
         fsck` passes on every store (every chunk, blob and release re-verified) and `ferry --json show {TREE}` \
         counts the seed's chunks. *machine CPU s*: CPU time of the whole machine during the {n} syncs (from \
         `/proc/stat`: every node, and whatever else ran); *machine CPUs busy before*: the same over {} s right before the \
         barrier, the {n} nodes connected and idle.\n",
        IDLE_WINDOW.as_secs()
    )?;
    writeln!(
        md,
        "| rep | alone wall s | alone seed tx | together wall s | each site's wall s (min / median / max) | \
         together seed tx | time ratio | seed bytes ratio | wire from the seed per site (min / median / max) | \
         machine CPU s (together) | machine CPUs busy before, nodes idle | exact |"
    )?;
    writeln!(
        md,
        "|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|"
    )?;
    for (i, r) in runs.iter().enumerate() {
        let walls: Vec<f64> = r.together.iter().map(|s| s.m.wall).collect();
        let from_seed: Vec<f64> = r
            .together
            .iter()
            .map(|s| {
                let v: Value = serde_json::from_str(&s.m.stdout).unwrap_or(Value::Null);
                v["wire_bytes"][&seed.id].as_u64().unwrap_or(0) as f64
            })
            .collect();
        writeln!(
            md,
            "| {i} | {:.1} | {} | {:.1} | {} | {} | {:.2} | {:.2} | {} | {:.1} | {:.2} | {}/{} |",
            r.alone.m.wall,
            mb(r.alone_tx),
            r.together_wall,
            spread(&walls, |x| format!("{x:.1}")),
            mb(r.together_tx),
            r.together_wall / r.alone.m.wall,
            r.together_tx as f64 / r.alone_tx as f64,
            spread(&from_seed, |x| mb(x as u64)),
            r.together_cpu,
            r.idle_cpus,
            r.exact,
            n + 1
        )?;
    }
    let tr = median(
        &runs
            .iter()
            .map(|r| r.together_wall / r.alone.m.wall)
            .collect::<Vec<_>>(),
    );
    let br = median(
        &runs
            .iter()
            .map(|r| r.together_tx as f64 / r.alone_tx as f64)
            .collect::<Vec<_>>(),
    );
    let peers: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.together.iter().map(|s| s.peers as f64))
        .collect();
    writeln!(
        md,
        "\nPayload per site {} ({} chunks; {} on the wire for the site alone); peers each site fetched from \
         (together, min / median / max): {}.\n",
        mb(runs[0].alone.payload),
        runs[0].alone.chunks,
        mb(runs[0].alone.wire),
        spread(&peers, |x| format!("{x:.0}"))
    )?;
    let wrong: Vec<&String> = runs.iter().flat_map(|r| &r.wrong).collect();
    for w in &wrong {
        writeln!(md, "- not exact: `{w}`")?;
    }
    if !wrong.is_empty() {
        md.push('\n');
    }
    writeln!(
        md,
        "Targets: {n} together ≤ {TARGET_TIME}x one alone → **{}** ({tr:.2}x, median); seed sends ≤ \
         {TARGET_BYTES}x the delta once → **{}** ({br:.2}x, median); every node exact → **{}** ({} of {} \
         stores).\n",
        verdict(tr <= TARGET_TIME),
        verdict(br <= TARGET_BYTES),
        verdict(wrong.is_empty()),
        runs.iter().map(|r| r.exact).sum::<usize>(),
        runs.len() * (n + 1)
    )?;
    Ok(())
}
