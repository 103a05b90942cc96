use crate::args::{parse_release, GetArgs, Global};
use crate::{output, progress::Bar};
use ferry_node::{export, Progress};
use ferry_protocol::Entry;
use std::path::Path;

pub fn run(g: &Global, a: GetArgs) -> anyhow::Result<()> {
    let (name, version) = parse_release(&a.release)?;
    let store = super::open_store(g)?;
    let release = store.release(&name, &version)?;
    let images = release
        .entries
        .iter()
        .filter(|e| matches!(e, Entry::Image(_)))
        .count();
    let bar = Bar::new(!g.no_progress);
    let (kind, n) = if let Some(dir) = a.out.strip_prefix("oci:") {
        if images == 0 {
            anyhow::bail!(
                "release {} holds no images to write as an OCI layout (use --out dir:DIR)",
                release.id()
            );
        }
        let n = export::oci::write(&store, &release, Path::new(dir), &bar)?;
        ("images", n)
    } else if let Some(dir) = a.out.strip_prefix("dir:") {
        let n = export::files::write(&store, &release, Path::new(dir), &bar)?;
        if images > 0 {
            bar.note(&format!(
                "note: skipped {images} image(s) of {}; write them with --out oci:DIR",
                release.id()
            ));
        }
        ("file entries", n)
    } else {
        anyhow::bail!("invalid --out {:?}: expected oci:DIR or dir:DIR", a.out);
    };
    drop(bar);
    if g.json {
        output::json(&serde_json::json!({ "release": release.id(), "out": a.out, "written": n }));
    } else {
        output::line(format!("wrote {n} {kind} of {} to {}", release.id(), a.out));
    }
    Ok(())
}
