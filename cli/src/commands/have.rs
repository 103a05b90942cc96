use crate::args::{Global, HaveArgs};
use crate::output;
use ferry_node::bundle::have;

pub fn run(g: &Global, a: HaveArgs) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let h = have::write(&store, &a.out)?;
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    if g.json {
        output::json(&serde_json::json!({
            "out": a.out.display().to_string(),
            "store": h.store.to_string(),
            "releases": h.releases.iter().map(|(r, _)| r).collect::<Vec<_>>(),
            "chunks": h.chunk_count(),
            "bytes": size,
        }));
    } else {
        output::line(format!(
            "wrote {}: {} releases, {} chunks ({})",
            a.out.display(),
            h.releases.len(),
            h.chunk_count(),
            output::bytes(size)
        ));
    }
    Ok(())
}
