use crate::args::{GcArgs, Global};
use crate::output;
use ferry_node::retention;
use ferry_node::store::gc::GcOptions;

pub fn run(g: &Global, a: GcArgs) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let keep = a.keep.unwrap_or(store.config().keep_versions);
    let plan = retention::plan(&store, keep)?;
    let report = store.gc(&GcOptions {
        dry_run: a.dry_run,
        remove: plan.remove,
    })?;
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["keep_versions"] = keep.into();
        output::json(&v);
        return Ok(());
    }
    let would = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for r in &report.removed {
        output::line(format!("{would} {r}"));
    }
    output::line(format!(
        "kept {} releases (pinned versions and the newest {keep} of each name); {would} {} releases, {} blobs, {} recipes, {} chunks ({})",
        report.kept.len(),
        report.removed.len(),
        report.blobs_removed,
        report.recipes_removed,
        report.chunks_removed,
        output::bytes(report.chunk_bytes_removed),
    ));
    if report.dry_run {
        return Ok(());
    }
    if report.spared > 0 {
        output::line(format!(
            "spared {} entries that work running meanwhile looked up; the next gc takes them if nothing needs them",
            report.spared
        ));
    }
    output::line(format!(
        "compacted {} packs ({} moved), deleted {}; store {} -> {}: reclaimed {} in {:.1}s",
        report.packs_compacted,
        output::bytes(report.bytes_moved),
        report.packs_deleted,
        output::bytes(report.before.total),
        output::bytes(report.after.total),
        output::bytes(report.reclaimed_bytes),
        report.seconds,
    ));
    Ok(())
}
