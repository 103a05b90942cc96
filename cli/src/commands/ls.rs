use crate::args::Global;
use crate::output;

pub fn run(g: &Global) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let releases = store.releases()?;
    let rows: Vec<_> = releases
        .iter()
        .map(|r| {
            let m = &r.manifest;
            serde_json::json!({
                "name": m.name,
                "version": m.version,
                "sequence": m.sequence,
                "created": m.created,
                "kind": m.kind.as_str(),
                "entries": m.entries.len(),
                "logical_bytes": m.logical_size(),
            })
        })
        .collect();
    if g.json {
        output::json(&rows);
        return Ok(());
    }
    for r in &releases {
        let m = &r.manifest;
        output::line(format!(
            "{:<40} seq {:<4} {:<7} {:>4} entries {:>10}",
            m.id(),
            m.sequence,
            m.kind.as_str(),
            m.entries.len(),
            output::bytes(m.logical_size())
        ));
    }
    Ok(())
}
