use crate::args::{parse_release, Global, ShowArgs};
use crate::output;
use ferry_protocol::Entry;
use serde_json::json;
use std::collections::HashSet;

pub fn run(g: &Global, a: ShowArgs) -> anyhow::Result<()> {
    let (name, version) = parse_release(&a.release)?;
    let store = super::open_store(g)?;
    let m = store.release(&name, &version)?;
    if let Some(package) = &a.why {
        return why(g, &store, &m, package);
    }
    let mine = store.chunks_of(&m.blobs())?;
    let mut others = HashSet::new();
    for r in store.releases()? {
        if r.manifest.name == m.name && r.manifest.version == m.version {
            continue;
        }
        others.extend(store.chunks_of(&r.manifest.blobs())?);
    }
    let shared = mine.iter().filter(|c| others.contains(c)).count();
    let mut stored = 0;
    for c in &mine {
        stored += store.stored_size(c)?;
    }
    let entries: Vec<_> = m
        .entries
        .iter()
        .map(|e| match e {
            Entry::Image(i) => json!({
                "type": "image",
                "registry": i.registry,
                "repository": i.repository,
                "tag": i.tag,
                "digest": i.digest.to_string(),
                "media_type": i.media_type,
                "blobs": i.blobs.len(),
                "bytes": i.blobs.iter().map(|b| b.blob.size).sum::<u64>(),
            }),
            Entry::File(f) => json!({
                "type": "file",
                "path": f.path,
                "mode": f.mode,
                "bytes": f.blob.size,
                "sha256": f.blob.sha256.to_string(),
            }),
            Entry::Dir { path, mode } => json!({ "type": "dir", "path": path, "mode": mode }),
            Entry::Symlink { path, target } => {
                json!({ "type": "symlink", "path": path, "target": target })
            }
            _ => json!({ "type": "unknown" }),
        })
        .collect();
    // What the release's charts and manifests name (`helm:…?images=yes`, `k8s:`).
    let mut named = Vec::new();
    for e in &m.entries {
        let Entry::File(f) = e else { continue };
        let report_file = ferry_node::ingest::named::REPORT_FILE;
        if f.path == report_file || f.path.ends_with(&format!("/{report_file}")) {
            let report: ferry_node::ingest::named::Report =
                serde_json::from_slice(&store.read_blob(&f.blob)?)
                    .map_err(|e| anyhow::anyhow!("{} in {}: {e}", f.path, m.id()))?;
            named.push((f.path.clone(), report));
        }
    }
    let summary = json!({
        "name": m.name,
        "version": m.version,
        "kind": m.kind.as_str(),
        "created": m.created,
        "sequence": m.sequence,
        "publisher": m.publisher.to_string(),
        "entries": entries,
        "logical_bytes": m.logical_size(),
        "stored_bytes": stored,
        "chunks": mine.len(),
        "chunks_shared": shared,
        "chunks_unique": mine.len() - shared,
        "named_images": named
            .iter()
            .map(|(path, r)| json!({"report": path, "format": r.format, "named": r.named}))
            .collect::<Vec<_>>(),
    });
    if g.json {
        output::json(&summary);
        return Ok(());
    }
    output::line(format!(
        "{}  ({}, sequence {}, publisher {}, created {})",
        m.id(),
        m.kind.as_str(),
        m.sequence,
        m.publisher,
        m.created
    ));
    for e in &m.entries {
        output::line(match e {
            Entry::Image(i) => format!(
                "  image   {}  {}  {} blobs, {}",
                i.reference(),
                i.digest,
                i.blobs.len(),
                output::bytes(i.blobs.iter().map(|b| b.blob.size).sum())
            ),
            Entry::File(f) => format!(
                "  file    {}  {:o}  {}",
                f.path,
                f.mode,
                output::bytes(f.blob.size)
            ),
            Entry::Dir { path, mode } => format!("  dir     {path}  {mode:o}"),
            Entry::Symlink { path, target } => format!("  symlink {path} -> {target}"),
            _ => "  (entry of a kind this ferry does not know)".to_string(),
        });
    }
    for (path, r) in &named {
        output::line(format!("images named ({path}):"));
        for n in &r.named {
            let what = if n.chart.is_empty() {
                n.source.clone()
            } else {
                format!("{} ({})", n.source, n.chart)
            };
            output::line(format!("  {what}"));
            for i in &n.images {
                output::line(format!("    {i}"));
            }
            for u in &n.unresolved {
                output::line(format!(
                    "    unresolved at {}: {:?} — {}",
                    u.at, u.value, u.reason
                ));
            }
            for d in &n.disabled {
                output::line(format!("    not taken: {d}"));
            }
        }
    }
    output::line(format!(
        "logical {}, stored {} in {} chunks: {} shared with other releases, {} only here",
        output::bytes(m.logical_size()),
        output::bytes(stored),
        mine.len(),
        shared,
        mine.len() - shared
    ));
    Ok(())
}

/// `ferry show NAME@VERSION --why PACKAGE`: the chain that pulled PACKAGE into the release's partial mirror(s),
/// from the package up to what was requested.
fn why(
    g: &Global,
    store: &ferry_node::store::Store,
    m: &ferry_protocol::ReleaseManifest,
    package: &str,
) -> anyhow::Result<()> {
    let reports = ferry_node::ingest::partial::reports(store, m)?;
    if reports.is_empty() {
        anyhow::bail!(
            "{} is not a partial mirror (it has no {}): it holds what its sources hold, whole",
            m.id(),
            ferry_node::ingest::partial::CLOSURE_FILE
        );
    }
    let mut found = Vec::new();
    for (path, report) in &reports {
        let chain = report.why(package);
        if !chain.is_empty() {
            found.push((path, chain));
        }
    }
    if found.is_empty() {
        anyhow::bail!("{} holds no package {package:?}", m.id());
    }
    if g.json {
        output::json(&json!(found
            .iter()
            .map(|(path, chain)| json!({ "report": path, "chain": chain }))
            .collect::<Vec<_>>()));
        return Ok(());
    }
    for (path, chain) in found {
        if reports.len() > 1 {
            output::line(format!("{path}:"));
        }
        for (depth, p) in chain.iter().enumerate() {
            let because = match (p.reason.as_str(), &p.of, &p.relation) {
                ("requested", _, Some(r)) => format!("requested as {r}"),
                ("essential", ..) => "Essential: yes (essential=yes)".to_string(),
                (field, Some(of), Some(rel)) => format!("{field} of {of}: {rel}"),
                (other, ..) => other.to_string(),
            };
            output::line(format!(
                "{}{} — {because}",
                "  ".repeat(depth),
                p.describe()
            ));
        }
    }
    Ok(())
}
