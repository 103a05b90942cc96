use crate::args::{parse_release, GetArgs, Global};
use crate::{output, progress::Bar};
use ferry_node::export;
use std::path::Path;

pub fn run(g: &Global, a: GetArgs) -> anyhow::Result<()> {
    let (name, version) = parse_release(&a.release)?;
    let store = super::open_store(g)?;
    let release = store.release(&name, &version)?;
    let bar = Bar::new(!g.no_progress);
    let (kind, n) = if let Some(dir) = a.out.strip_prefix("oci:") {
        (
            "images",
            export::oci::write(&store, &release, Path::new(dir), &bar)?,
        )
    } else if let Some(dir) = a.out.strip_prefix("dir:") {
        (
            "file entries",
            export::files::write(&store, &release, Path::new(dir), &bar)?,
        )
    } else {
        anyhow::bail!("invalid --out {:?}: expected oci:DIR or dir:DIR", a.out);
    };
    drop(bar);
    if n == 0 {
        anyhow::bail!(
            "release {} has no {kind} to write to {}",
            release.id(),
            a.out
        );
    }
    if g.json {
        output::json(&serde_json::json!({ "release": release.id(), "out": a.out, "written": n }));
    } else {
        output::line(format!("wrote {n} {kind} of {} to {}", release.id(), a.out));
    }
    Ok(())
}
