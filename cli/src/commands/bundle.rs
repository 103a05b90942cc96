use crate::args::{BundleCommand, Global};
use crate::{output, progress::Bar};
use ferry_node::bundle::{self, Bundle};
use ferry_node::trust::{read_key_file, TrustSet};
use ferry_protocol::bundle::volume_name;
use std::path::PathBuf;

/// The keys to check a bundle with: `--key` files, else the store's trust list (if there is a store).
fn trust(g: &Global, keys: &[PathBuf], required: bool) -> anyhow::Result<Option<TrustSet>> {
    if !keys.is_empty() {
        let keys = keys
            .iter()
            .map(|k| read_key_file(k))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Some(TrustSet::of(keys)));
    }
    match super::open_store(g) {
        Ok(store) => Ok(Some(store.trusted()?)),
        Err(_) if !required => Ok(None),
        Err(e) => {
            Err(e.context("no trusted keys to check the bundle's signature: pass --key FILE"))
        }
    }
}

pub fn run(g: &Global, b: BundleCommand) -> anyhow::Result<()> {
    match b {
        BundleCommand::Verify { dir, keys } => {
            let trust = trust(g, &keys, true)?.expect("required");
            let bar = Bar::new(!g.no_progress);
            let report = bundle::verify(&dir, &trust, &bar)?;
            drop(bar);
            if g.json {
                output::json(&report);
            } else {
                output::line(format!(
                    "ok: {} signed by {}; {} volume(s), {} read, {} chunks ({}) verified; releases: {}",
                    report.bundle,
                    report.signer,
                    report.volumes,
                    output::bytes(report.stream_bytes),
                    report.chunks,
                    output::bytes(report.payload_bytes),
                    report.releases.join(", ")
                ));
                if report.delta_chunks > 0 {
                    output::line(format!(
                        "  {} chunks are deltas against the receiver's content: their bytes match the signed \
                         index, and the import decodes and checks each against its id",
                        report.delta_chunks
                    ));
                }
            }
            Ok(())
        }
        BundleCommand::Inspect { dir, keys } => inspect(g, &dir, &keys),
    }
}

fn inspect(g: &Global, dir: &std::path::Path, keys: &[PathBuf]) -> anyhow::Result<()> {
    let b = Bundle::open(dir)?;
    let trust = trust(g, keys, false)?;
    let (index, signature) = match &trust {
        Some(t) => match b.verify_index(t) {
            Ok(i) => (i, "good".to_string()),
            Err(e) => (b.index_unverified()?, format!("NOT VALID: {e}")),
        },
        None => (
            b.index_unverified()?,
            "not checked (no store and no --key)".to_string(),
        ),
    };
    let releases: Vec<serde_json::Value> = index
        .releases
        .iter()
        .map(|s| match s.manifest_unverified() {
            Ok(m) => serde_json::json!({
                "release": m.id(),
                "kind": m.kind.as_str(),
                "sequence": m.sequence,
                "entries": m.entries.len(),
                "logical_bytes": m.logical_size(),
                "publisher": s.key.to_string(),
            }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        })
        .collect();
    let volumes: Vec<serde_json::Value> = index
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::json!({
                "name": volume_name(i + 1),
                "bytes": v.size,
                "blake3": v.blake3.to_hex(),
            })
        })
        .collect();
    let view = serde_json::json!({
        "bundle": dir.display().to_string(),
        "signer": b.signer().to_string(),
        "signature": signature,
        "created": index.created,
        "basis": index.basis,
        "complete": index.basis.is_complete(),
        "releases": releases,
        "recipes": index.recipes.len(),
        "chunks": index.chunks,
        "payload_bytes": index.payload_bytes,
        "delta_chunks": index.delta_chunks,
        "delta_saved_bytes": index.delta_saved_bytes,
        "bases": index.bases.iter().map(|(r, b)| serde_json::json!({"recipe": r.to_string(), "blob": b.to_string()})).collect::<Vec<_>>(),
        "stream_bytes": index.stream_bytes(),
        "segments": index.segments.len(),
        "zstd_level": index.zstd_level,
        "index_bytes": b.index_bytes(),
        "volumes": volumes,
    });
    if g.json {
        output::json(&view);
        return Ok(());
    }
    output::line(format!("bundle     {}", dir.display()));
    output::line(format!("signed by  {} — signature {signature}", b.signer()));
    let basis = &index.basis;
    if basis.is_complete() {
        output::line("basis      complete (assumes nothing held)");
    } else {
        if !basis.releases.is_empty() {
            output::line(format!("basis      held: {}", basis.releases.join(", ")));
        }
        if let Some(h) = &basis.have {
            output::line(format!(
                "have-file  from store {} ({} releases, {} chunks)",
                h.store, h.releases, h.chunks
            ));
        }
    }
    if let Some(site) = &basis.site {
        output::line(format!("site       {site}"));
    }
    output::line("releases");
    for r in &releases {
        match r.get("release") {
            Some(id) => output::line(format!(
                "  {:<40} {:<7} seq {:<4} {:>4} entries {:>10}",
                id.as_str().unwrap_or_default(),
                r["kind"].as_str().unwrap_or_default(),
                r["sequence"],
                r["entries"],
                output::bytes(r["logical_bytes"].as_u64().unwrap_or(0))
            )),
            None => output::line(format!("  (unreadable: {})", r["error"])),
        }
    }
    output::line(format!(
        "content    {} chunks, {} → {} stream (zstd -{}, {} segments), {} recipes",
        index.chunks,
        output::bytes(index.payload_bytes),
        output::bytes(index.stream_bytes()),
        index.zstd_level,
        index.segments.len(),
        index.recipes.len()
    ));
    if index.delta_chunks > 0 || !index.bases.is_empty() {
        output::line(format!(
            "deltas     {} chunks as deltas ({} smaller than whole), against {} base blob(s) the receiver must hold",
            index.delta_chunks,
            output::bytes(index.delta_saved_bytes),
            index.bases.len()
        ));
    }
    output::line(format!("index      {}", output::bytes(b.index_bytes())));
    output::line("volumes");
    for v in &volumes {
        output::line(format!(
            "  {}  {:>10}  blake3 {}",
            v["name"].as_str().unwrap_or_default(),
            output::bytes(v["bytes"].as_u64().unwrap_or(0)),
            v["blake3"].as_str().unwrap_or_default()
        ));
    }
    Ok(())
}
