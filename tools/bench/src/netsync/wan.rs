//! Part 2, *wan*: the seed behind a 100 Mbit/s link with added delay, next to iperf3 through the same link.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;

use anyhow::{ensure, Context, Result};
use ferry_tests::netns::{Lan, Relay};
use serde_json::Value;

use super::node::{phase_cell, phased, site_store, tx_bytes, Node};
use super::seed::Seed;
use super::{IPERF_PORT, LINK_MBIT, P2P_PORT};
use crate::measure::{self, median, sync, warm_tree};
use crate::{mb, verdict, Bench};

/// ferry's throughput over the whole sync at least this share of iperf3's.
const TARGET_OF_IPERF: f64 = 0.95;

/// The wan part at one delay: `release` of `seed` (described by `what`) through a relay adding `delay` ms.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    md: &mut String,
    b: &Bench,
    seed: &Seed,
    release: &str,
    what: &str,
    relay_exe: &Path,
    delay: u32,
    reps: usize,
) -> Result<()> {
    let lan = Lan::new(&["seed", "relay", "site"]);
    lan.shape("seed", LINK_MBIT);
    let (sh, rh, th) = (lan.host("seed"), lan.host("relay"), lan.host("site"));
    let dir = b.fresh(&format!("sync-wan-{delay}"))?;
    let seed_node = Node::on_host(b, &seed.store, sh, &[], &dir.join("seed.log"))?;
    let relay = Relay::start(relay_exe, rh, P2P_PORT, sh.addr(P2P_PORT), delay);
    let iperf_relay = Relay::start(relay_exe, rh, IPERF_PORT, sh.addr(IPERF_PORT), delay);
    let mut iperf_srv = sh
        .command("iperf3")
        .args(["-s", "-p", &IPERF_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let rate = f64::from(LINK_MBIT) * 1e6 / 8.0;
    let mut rows = Vec::new();
    let res = (|| -> Result<()> {
        warm_tree(&seed.store)?;
        for rep in 0..reps {
            let sdir = b.fresh(&format!("sync-wan-{delay}-site{rep}"))?;
            let (store, _) = site_store(b, &sdir, seed)?;
            let site = Node::on_host(
                b,
                &store,
                th,
                &[(
                    relay.addr.ip().to_string(),
                    relay.addr.port(),
                    seed.id.clone(),
                )],
                &sdir.join("site.log"),
            )?;
            site.wait_connected(b, &[&seed.id])?;
            sync()?;
            measure::wait_quiet(b.quiet_wait)?;
            eprintln!("ferry-bench: sync: wan {delay} ms rep {rep}: ferry sync {release}");
            let tx0 = tx_bytes(sh.ns(), sh.dev())?;
            let s = phased(site.sync_phased(b, release)?)?;
            let tx = tx_bytes(sh.ns(), sh.dev())? - tx0;
            site.stop()?;
            // iperf3, the seed sending (-R), through the same relay and link.
            measure::wait_quiet(b.quiet_wait)?;
            eprintln!("ferry-bench: sync: wan {delay} ms rep {rep}: iperf3");
            let out = th
                .command("iperf3")
                .args(["-c", &rh.ip().to_string(), "-p", &IPERF_PORT.to_string()])
                .args(["-R", "-t", "15", "-O", "2", "-J"])
                .stdin(Stdio::null())
                .output()?;
            ensure!(
                out.status.success(),
                "iperf3: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let j: Value = serde_json::from_slice(&out.stdout)?;
            let iperf_bps = j["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .context("iperf3 -J: no end.sum_received.bits_per_second")?;
            rows.push((s, tx, iperf_bps));
        }
        Ok(())
    })();
    let _ = iperf_srv.kill();
    let _ = iperf_srv.wait();
    drop(iperf_relay);
    drop(relay);
    seed_node.stop()?;
    drop(lan);
    res?;

    writeln!(
        md,
        "### 2. {LINK_MBIT} Mbit/s, {delay} ms added each way (round trip + {} ms)\n",
        2 * delay
    )?;
    writeln!(
        md,
        "The release: {what}. Namespaces `seed`, `relay`, `site` on one bridge (`ferry_tests::netns::Lan`); the seed's link shaped to \
         {LINK_MBIT} Mbit/s both ways (`tc … tbf rate {LINK_MBIT}mbit burst 64kb latency 50ms`); `ferry-delay-relay \
         --listen RELAY:{P2P_PORT} --to SEED:{P2P_PORT} --delay-ms {delay}` (TCP and UDP); the site dials \
         `/ip4/RELAY/tcp/{P2P_PORT}/p2p/SEED` and so reaches the data plane (UDP, same port) through the relay \
         too. *wire* = the report's `wire_bytes` (chunk records as sent: zstd bodies and record headers); \
         *seed tx* = TX bytes of the seed's veth from `ip -n NS -s link` around the sync (everything: QUIC, UDP, \
         IP, Ethernet headers, the control plane, recipes). Utilisation = bytes / (wall × {LINK_MBIT} Mbit/s), \
         wall of the whole `ferry sync`. The alternative: `iperf3 -c RELAY -p {IPERF_PORT} -R -t 15 -O 2` from the \
         site (the seed sending, one TCP stream) through a second relay on the same host with the same delay, \
         receiver's rate. Caveat: the relay terminates TCP, so each TCP leg sees the Lan's sub-ms round trip and \
         only the bytes are delayed — iperf3's congestion control never sees the added delay; QUIC (UDP, \
         datagram by datagram) does. The comparison favours iperf3.\n"
    )?;
    writeln!(md, "| rep | wall s | node s | payload | wire | seed tx | wire utilisation | seed tx utilisation | fetch phase s | wire utilisation in it | other CPU s | iperf3 Mbit/s | iperf3 utilisation |")?;
    writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
    )?;
    for (i, (s, tx, ip)) in rows.iter().enumerate() {
        writeln!(
            md,
            "| {i} | {:.1} | {:.1} | {} | {} | {} | {:.1}% | {:.1}% | {} | {} | {:.1} | {:.1} | {:.1}% |",
            s.m.wall,
            s.seconds,
            mb(s.payload),
            mb(s.wire),
            mb(*tx),
            100.0 * s.wire as f64 / (s.m.wall * rate),
            100.0 * *tx as f64 / (s.m.wall * rate),
            phase_cell(s),
            s.phase.map_or("?".into(), |(a, z)| format!(
                "{:.1}%",
                100.0 * s.wire as f64 / ((z - a) * rate)
            )),
            s.m.others,
            ip / 1e6,
            100.0 * ip / (f64::from(LINK_MBIT) * 1e6)
        )?;
    }
    writeln!(
        md,
        "\n*fetch phase* and *other CPU s* (here the seed, site and relay, and anything else): as in part 1.\n"
    )?;
    let u = median(
        &rows
            .iter()
            .map(|(s, _, _)| s.wire as f64 / (s.m.wall * rate))
            .collect::<Vec<_>>(),
    );
    let un = median(
        &rows
            .iter()
            .map(|(s, _, _)| s.wire as f64 / (s.seconds * rate))
            .collect::<Vec<_>>(),
    );
    let ut = median(
        &rows
            .iter()
            .map(|(s, tx, _)| *tx as f64 / (s.m.wall * rate))
            .collect::<Vec<_>>(),
    );
    let ui = median(
        &rows
            .iter()
            .map(|(_, _, ip)| ip / (f64::from(LINK_MBIT) * 1e6))
            .collect::<Vec<_>>(),
    );
    // Each rep's sync against the iperf3 run right after it.
    let ratio = median(
        &rows
            .iter()
            .map(|(s, _, ip)| s.wire as f64 * 8.0 / s.m.wall / ip)
            .collect::<Vec<_>>(),
    );
    writeln!(
        md,
        "\n| median of {reps} | ferry sync | iperf3 | ferry / iperf3 |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(
        md,
        "| **utilisation (wire bytes, whole process)** | **{:.1}%** | **{:.1}%** | **{ratio:.3}x** (median of the per-rep ratios) |",
        100.0 * u,
        100.0 * ui,
    )?;
    writeln!(
        md,
        "| utilisation (wire bytes, node `seconds`) | {:.1}% | | |",
        100.0 * un
    )?;
    writeln!(
        md,
        "| utilisation (seed tx incl. headers) | {:.1}% | | |",
        100.0 * ut
    )?;
    writeln!(
        md,
        "\nTarget: ferry's throughput over the whole sync, start to end (wire bytes / wall of `ferry sync`), ≥ \
         {:.0}% of iperf3's through the same link and relay → **{}** ({:.1}% of iperf3's, median; {:.1}% of the \
         link).\n",
        100.0 * TARGET_OF_IPERF,
        verdict(ratio >= TARGET_OF_IPERF),
        100.0 * ratio,
        100.0 * u
    )?;
    Ok(())
}
