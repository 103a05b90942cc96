use crate::args::{Global, ImportArgs};
use crate::{output, progress::Bar};
use ferry_node::bundle;

pub fn run(g: &Global, a: ImportArgs) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let bar = Bar::new(!g.no_progress);
    let report = bundle::import(&store, &a.dir, &bar)?;
    drop(bar);
    if g.json {
        output::json(&report);
        return Ok(());
    }
    for r in &report.imported {
        if report.older.contains(r) {
            output::line(format!(
                "imported {r} (older than the newest version of its name seen here: not current unless pinned)"
            ));
        } else {
            output::line(format!("imported {r}"));
        }
    }
    for r in &report.already_held {
        output::line(format!("already held {r}"));
    }
    output::line(format!(
        "{} chunks ({} of content) in the bundle, {} stored now ({} added to packs)",
        report.chunks,
        output::bytes(report.payload_bytes),
        report.chunks_new,
        output::bytes(report.stored_bytes_new)
    ));
    Ok(())
}
