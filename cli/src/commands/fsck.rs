use crate::args::Global;
use crate::{output, progress::Bar};

pub fn run(g: &Global) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let bar = Bar::new(!g.no_progress);
    let report = store.fsck(&bar)?;
    drop(bar);
    if g.json {
        output::json(&report);
    } else {
        for p in &report.problems {
            output::line(format!("BROKEN {p}"));
        }
        output::line(format!(
            "{}: {} chunks in {} packs ({}), {} recipes, {} blobs ({} re-created), {} releases checked; {} problems",
            if report.ok { "ok" } else { "FAILED" },
            report.chunks,
            report.packs,
            output::bytes(report.pack_bytes),
            report.recipes,
            report.blobs,
            report.recreated_blobs,
            report.releases,
            report.problems.len()
        ));
    }
    if !report.ok {
        anyhow::bail!(
            "fsck found {} problems in {}",
            report.problems.len(),
            store.root().display()
        );
    }
    Ok(())
}
