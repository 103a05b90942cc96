//! Opt-in part *delta* (of the earlier runs): a site holding v1 syncs v2, next to the bundle `ferry export --base
//! v1 v2` writes for the same pair.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;

use super::node::{loopback_site, synced, Node, Synced};
use super::seed::{Seed, V1, V2};
use crate::measure;
use crate::{human, verdict, Bench};

pub(super) fn run(md: &mut String, b: &Bench, seed: &Seed) -> Result<()> {
    let dir = b.fresh("sync-delta")?;
    let bundle = dir.join("bundle");
    let exported = b
        .ferry(&seed.store)
        .args([
            "--json",
            "--no-progress",
            "export",
            "--base",
            V1,
            V2,
            "--out",
        ])
        .arg(&bundle)
        .output()?;
    let exported: Value = serde_json::from_str(&exported).unwrap_or(Value::Null);
    let inspect: Value = serde_json::from_str(
        &b.ferry(&seed.store)
            .args(["--json", "bundle", "inspect"])
            .arg(&bundle)
            .output()?,
    )?;
    let (bundle_disk, _, _) = measure::tree_size(&bundle)?;

    let (seed_node, seed_peer) =
        Node::loopback(b, &seed.store, &seed.id, &[], &dir.join("seed.log"))?;
    let res = (|| -> Result<(Synced, Synced)> {
        let (site, _) = loopback_site(b, seed, &dir.join("site"), &seed_peer)?;
        eprintln!("ferry-bench: sync: delta: ferry sync {V1}, then {V2}");
        let s1 = synced(site.sync_cmd(b, V1).measure()?)?;
        let s2 = synced(site.sync_cmd(b, V2).measure()?)?;
        site.stop()?;
        Ok((s1, s2))
    })();
    seed_node.stop()?;
    let (s1, s2) = res?;

    writeln!(
        md,
        "### Delta: a version update, sync vs the bundle for the same pair\n"
    )?;
    writeln!(
        md,
        "A site (loopback) syncs `{V1}`, then `{V2}`. The bundle for the same pair: `ferry export --base {V1} \
         {V2} --out DIR` on the seed (default zstd level), described by `ferry bundle inspect --json DIR`.\n"
    )?;
    writeln!(
        md,
        "`ferry bundle inspect --json` (whole):\n\n```json\n{}\n```\n",
        compact(&inspect)
    )?;
    if !exported.is_null() {
        writeln!(
            md,
            "`ferry export --json`:\n\n```json\n{}\n```\n",
            compact(&exported)
        )?;
    }
    let bundle_payload = find_u64(&inspect, &["payload_bytes", "chunk_bytes", "raw_bytes"]);
    let bundle_chunks = find_u64(&inspect, &["chunks"]);
    writeln!(
        md,
        "| | chunks | payload (raw chunk bytes) | bytes carried |"
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    writeln!(
        md,
        "| `ferry sync {V1}` (fresh site) | {} | {} | {} (wire) |",
        s1.chunks,
        human(s1.payload),
        human(s1.wire)
    )?;
    writeln!(
        md,
        "| **`ferry sync {V2}`** (site holds {V1}) | **{}** | **{}** | **{}** (wire) |",
        s2.chunks,
        human(s2.payload),
        human(s2.wire)
    )?;
    writeln!(
        md,
        "| bundle `--base {V1} {V2}` | {} | {} | {} stream (volumes); {} with the index; {} all files of the bundle dir |",
        bundle_chunks.map_or("?".into(), |c| c.to_string()),
        bundle_payload.map_or("?".into(), human),
        find_u64(&inspect, &["stream_bytes"]).map_or("?".into(), human),
        find_u64(&exported, &["total_bytes"]).map_or("?".into(), human),
        human(bundle_disk)
    )?;
    let same = bundle_payload == Some(s2.payload) && bundle_chunks.is_none_or(|c| c == s2.chunks);
    writeln!(
        md,
        "\nTarget: sync payload = the bundle's delta → **{}** (sync {} bytes in {} chunks; bundle {} bytes in \
         {} chunks). Wire bytes differ by design: the data plane sends each chunk as the store keeps it (zstd \
         level 3, one frame per chunk, plus a record header), a bundle compresses whole segments at its own \
         level, so it can be smaller than the sum of per-chunk frames.\n",
        verdict(same),
        s2.payload,
        s2.chunks,
        bundle_payload.map_or("?".into(), |v| v.to_string()),
        bundle_chunks.map_or("?".into(), |v| v.to_string()),
    )?;
    Ok(())
}

fn compact(v: &Value) -> String {
    let s = serde_json::to_string_pretty(v).unwrap_or_default();
    if s.len() > 4000 {
        format!("{}\n…", &s[..4000])
    } else {
        s
    }
}

/// The first number under any of `keys`, anywhere in `v` (depth first).
fn find_u64(v: &Value, keys: &[&str]) -> Option<u64> {
    match v {
        Value::Object(o) => {
            for k in keys {
                if let Some(n) = o.get(*k).and_then(Value::as_u64) {
                    return Some(n);
                }
            }
            o.values().find_map(|x| find_u64(x, keys))
        }
        Value::Array(a) => a.iter().find_map(|x| find_u64(x, keys)),
        _ => None,
    }
}
