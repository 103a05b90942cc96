//! `ferry diff NAME@A NAME@B`: what changed between two releases, and the bytes a bundle of B for a site holding A
//! would carry — measured by building that bundle in memory (`ExportOptions::dry_run`), so it is what
//! `ferry export B --base A` writes.

use crate::args::{DiffArgs, Global};
use crate::output;
use ferry_node::bundle::export::{receiver_have, Receiver};
use ferry_node::bundle::{self, ExportOptions};
use ferry_node::progress::NoProgress;
use ferry_protocol::{Entry, ImageEntry, ReleaseManifest};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Package files, told apart by name, in the trees of repository releases.
const PACKAGE_SUFFIXES: [&str; 7] = [".deb", ".rpm", ".whl", ".tar.gz", ".tgz", ".zip", ".crate"];

fn images(m: &ReleaseManifest) -> BTreeMap<String, &ImageEntry> {
    m.entries
        .iter()
        .filter_map(|e| match e {
            Entry::Image(i) => Some((i.reference(), i)),
            _ => None,
        })
        .collect()
}

/// path → (sha256, bytes) of every file.
fn files(m: &ReleaseManifest) -> BTreeMap<&str, (String, u64)> {
    m.entries
        .iter()
        .filter_map(|e| match e {
            Entry::File(f) => Some((f.path.as_str(), (f.blob.sha256.to_string(), f.blob.size))),
            _ => None,
        })
        .collect()
}

fn is_package(path: &str) -> bool {
    PACKAGE_SUFFIXES.iter().any(|s| path.ends_with(s))
}

fn image_diff(a: &ReleaseManifest, b: &ReleaseManifest) -> Value {
    let (ia, ib) = (images(a), images(b));
    // Blobs an added image brings that no image of the older release has (a new tag of a rebuilt image).
    let held: BTreeSet<_> = ia
        .values()
        .flat_map(|i| i.blobs.iter().map(|b| b.blob.sha256))
        .collect();
    let added: Vec<Value> = ib
        .iter()
        .filter(|(k, _)| !ia.contains_key(*k))
        .map(|(k, i)| {
            let new: Vec<_> = i
                .blobs
                .iter()
                .filter(|b| !held.contains(&b.blob.sha256))
                .collect();
            json!({
                "image": k,
                "digest": i.digest.to_string(),
                "blobs_added": new.iter().map(|b| b.blob.sha256.to_string()).collect::<Vec<_>>(),
                "blob_bytes_added": new.iter().map(|b| b.blob.size).sum::<u64>(),
            })
        })
        .collect();
    let removed: Vec<&String> = ia.keys().filter(|k| !ib.contains_key(*k)).collect();
    let mut changed = Vec::new();
    for (reference, new) in &ib {
        let Some(old) = ia.get(reference) else {
            continue;
        };
        if old.digest == new.digest {
            continue;
        }
        let old_blobs: BTreeSet<_> = old.blobs.iter().map(|b| b.blob.sha256).collect();
        let new_blobs: BTreeSet<_> = new.blobs.iter().map(|b| b.blob.sha256).collect();
        let layers_added: Vec<_> = new
            .blobs
            .iter()
            .filter(|b| !old_blobs.contains(&b.blob.sha256))
            .collect();
        let layers_removed: Vec<String> = old
            .blobs
            .iter()
            .filter(|b| !new_blobs.contains(&b.blob.sha256))
            .map(|b| b.blob.sha256.to_string())
            .collect();
        changed.push(json!({
            "image": reference,
            "from": old.digest.to_string(),
            "to": new.digest.to_string(),
            "blobs_added": layers_added.iter().map(|b| b.blob.sha256.to_string()).collect::<Vec<_>>(),
            "blobs_removed": layers_removed,
            "blob_bytes_added": layers_added.iter().map(|b| b.blob.size).sum::<u64>(),
        }));
    }
    json!({ "added": added, "removed": removed, "changed": changed })
}

fn file_diff(a: &ReleaseManifest, b: &ReleaseManifest, packages: bool) -> Value {
    let keep = |p: &&str| is_package(p) == packages;
    let (fa, fb) = (files(a), files(b));
    let added: Vec<&str> = fb
        .keys()
        .copied()
        .filter(keep)
        .filter(|p| !fa.contains_key(p))
        .collect();
    let removed: Vec<&str> = fa
        .keys()
        .copied()
        .filter(keep)
        .filter(|p| !fb.contains_key(p))
        .collect();
    let changed: Vec<&str> = fb
        .iter()
        .filter(|(p, _)| keep(p))
        .filter(|(p, new)| fa.get(*p).is_some_and(|old| old != *new))
        .map(|(p, _)| *p)
        .collect();
    json!({ "added": added, "removed": removed, "changed": changed })
}

/// Packages of partial mirrors (their closure reports) added, removed and upgraded, by name and
/// architecture, with why each added one is there.
fn closure_diff(
    store: &ferry_node::store::Store,
    a: &ReleaseManifest,
    b: &ReleaseManifest,
) -> anyhow::Result<Option<Value>> {
    use ferry_node::ingest::partial::{reports, ReportPackage};
    let (ra, rb) = (reports(store, a)?, reports(store, b)?);
    if ra.is_empty() && rb.is_empty() {
        return Ok(None);
    }
    let index = |r: &[(String, ferry_node::ingest::partial::Report)]| {
        r.iter()
            .flat_map(|(_, r)| r.packages.iter())
            .map(|p| ((p.package.clone(), p.architecture.clone()), p.clone()))
            .collect::<BTreeMap<(String, String), ReportPackage>>()
    };
    let (pa, pb) = (index(&ra), index(&rb));
    let because = |p: &ReportPackage| match (&p.of, &p.relation) {
        (Some(of), Some(rel)) => format!("{} of {of}: {rel}", p.reason),
        (None, Some(rel)) => format!("{} as {rel}", p.reason),
        _ => p.reason.clone(),
    };
    let added: Vec<Value> = pb
        .iter()
        .filter(|(k, _)| !pa.contains_key(*k))
        .map(|(_, p)| json!({ "package": p.package, "architecture": p.architecture, "version": p.version, "why": because(p) }))
        .collect();
    let removed: Vec<Value> = pa
        .iter()
        .filter(|(k, _)| !pb.contains_key(*k))
        .map(|(_, p)| json!({ "package": p.package, "architecture": p.architecture, "version": p.version }))
        .collect();
    let mut upgraded = Vec::new();
    let mut downgraded = Vec::new();
    for (k, new) in &pb {
        let Some(old) = pa.get(k) else { continue };
        let order = rb[0].1.compare_versions(&new.version, &old.version);
        let change = json!({ "package": new.package, "architecture": new.architecture, "from": old.version, "to": new.version });
        match order {
            std::cmp::Ordering::Greater => upgraded.push(change),
            std::cmp::Ordering::Less => downgraded.push(change),
            std::cmp::Ordering::Equal => {}
        }
    }
    let format = rb.first().or(ra.first()).map(|(_, r)| r.format.clone());
    Ok(Some(json!({
        "format": format,
        "added": added,
        "removed": removed,
        "upgraded": upgraded,
        "downgraded": downgraded,
    })))
}

pub fn run(g: &Global, a: DiffArgs) -> anyhow::Result<()> {
    let (from, to) = (&a.from, &a.to);
    let (fname, fver) = crate::args::parse_release(from)?;
    let (tname, tver) = crate::args::parse_release(to)?;
    let store = super::open_store(g)?;
    let old = store.release(&fname, &fver)?;
    let new = store.release(&tname, &tver)?;

    let have = receiver_have(&store, std::slice::from_ref(from), None, None)?;
    let opts = ExportOptions {
        dry_run: true,
        ..ExportOptions::default()
    };
    let receiver = Receiver {
        have: &have,
        site: None,
    };
    let scratch = std::env::temp_dir();
    let delta = bundle::export(
        &store,
        std::slice::from_ref(to),
        receiver,
        &scratch,
        opts,
        &NoProgress,
    )?;
    let closure = closure_diff(&store, &old, &new)?;
    let report = json!({
        "from": from,
        "to": to,
        "closure": closure,
        "images": image_diff(&old, &new),
        "files": file_diff(&old, &new, false),
        "packages": file_diff(&old, &new, true),
        "logical_bytes": { "from": old.logical_size(), "to": new.logical_size() },
        "delta": {
            "chunks": delta.chunks,
            "payload_bytes": delta.payload_bytes,
            "recipes": delta.recipes,
            "delta_chunks": delta.delta_chunks,
            "delta_payload_bytes": delta.delta_payload_bytes,
            "delta_saved_bytes": delta.delta_saved_bytes,
            "index_bytes": delta.index_bytes,
            "stream_bytes": delta.stream_bytes,
            "total_bytes": delta.total_bytes,
        },
    });
    if g.json {
        output::json(&report);
        return Ok(());
    }
    output::line(format!("{from} → {to}"));
    let list = |what: &str, v: &Value| {
        for (kind, sign) in [("added", "+"), ("removed", "-"), ("changed", "~")] {
            for item in v[kind].as_array().into_iter().flatten() {
                let name = item.as_str().or(item["image"].as_str()).unwrap_or("?");
                output::line(format!("  {sign} {what} {name}"));
                if let Some(added) = item["blobs_added"].as_array() {
                    let gone = match item["blobs_removed"].as_array() {
                        Some(r) => format!(", {} gone", r.len()),
                        None => String::new(),
                    };
                    output::line(format!(
                        "      {} new blobs ({}){gone}",
                        added.len(),
                        output::bytes(item["blob_bytes_added"].as_u64().unwrap_or(0)),
                    ));
                }
            }
        }
    };
    if let Some(c) = &closure {
        let rows = |kind: &str| c[kind].as_array().cloned().unwrap_or_default();
        let fmt = c["format"].as_str().unwrap_or("apt");
        for p in rows("added") {
            output::line(format!(
                "  + {fmt} {} {} ({}) — {}",
                p["package"].as_str().unwrap_or("?"),
                p["version"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?"),
                p["why"].as_str().unwrap_or("?")
            ));
        }
        for p in rows("removed") {
            output::line(format!(
                "  - {fmt} {} {} ({})",
                p["package"].as_str().unwrap_or("?"),
                p["version"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            ));
        }
        for (kind, sign) in [("upgraded", "↑"), ("downgraded", "↓")] {
            for p in rows(kind) {
                output::line(format!(
                    "  {sign} {fmt} {} ({}) {} → {}",
                    p["package"].as_str().unwrap_or("?"),
                    p["architecture"].as_str().unwrap_or("?"),
                    p["from"].as_str().unwrap_or("?"),
                    p["to"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    list("image", &report["images"]);
    list("package", &report["packages"]);
    list("file", &report["files"]);
    output::line(format!(
        "a bundle of {to} for a site holding {from}: {} ({} chunks, {} of content, index {})",
        output::bytes(delta.total_bytes),
        delta.chunks,
        output::bytes(delta.payload_bytes),
        output::bytes(delta.index_bytes),
    ));
    if delta.delta_chunks > 0 {
        output::line(format!(
            "  {} of those chunks cross as deltas against {from}, saving {}",
            delta.delta_chunks,
            output::bytes(delta.delta_saved_bytes),
        ));
    }
    Ok(())
}
