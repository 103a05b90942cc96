use crate::args::{ExportArgs, Global};
use crate::{output, progress::Bar};
use ferry_node::bundle::export::{receiver_have, Receiver};
use ferry_node::bundle::{self, ExportOptions};

pub fn run(g: &Global, a: ExportArgs) -> anyhow::Result<()> {
    for r in a.releases.iter().chain(&a.base) {
        crate::args::parse_release(r)?;
    }
    let store = super::open_store(g)?;
    let have = receiver_have(&store, &a.base, a.have.as_deref(), a.site.as_deref())?;
    let opts = ExportOptions {
        volume_size: a.volume_size,
        zstd_level: a.zstd_level,
        segment_bytes: a
            .segment_size
            .map_or(ExportOptions::default().segment_bytes, |s| {
                s.clamp(1 << 20, 64 << 20)
            }),
        dry_run: false,
        deltas: !a.no_delta,
    };
    let bar = Bar::new(!g.no_progress);
    let receiver = Receiver {
        have: &have,
        site: a.site.as_deref(),
    };
    let report = bundle::export(&store, &a.releases, receiver, &a.out, opts, &bar)?;
    drop(bar);
    if g.json {
        output::json(&report);
        return Ok(());
    }
    let basis = if report.basis.is_complete() {
        "complete".to_string()
    } else {
        format!(
            "assuming {} release(s) held{}",
            report.basis.releases.len(),
            if report.basis.have.is_some() {
                " and the have-file's chunks"
            } else {
                ""
            }
        )
    };
    output::line(format!(
        "exported {} to {} ({basis}): {} chunks, {} of content, {} recipes → {} in {} volume(s) + {} index = {}",
        report.releases.join(", "),
        report.out,
        report.chunks,
        output::bytes(report.payload_bytes),
        report.recipes,
        output::bytes(report.stream_bytes),
        report.volumes.len(),
        output::bytes(report.index_bytes),
        output::bytes(report.total_bytes),
    ));
    if report.delta_chunks > 0 {
        output::line(format!(
            "  {} chunks ({}) crossed as deltas against what the receiver holds, {} smaller than whole",
            report.delta_chunks,
            output::bytes(report.delta_payload_bytes),
            output::bytes(report.delta_saved_bytes),
        ));
    }
    for (name, size) in &report.volumes {
        output::line(format!("  {name}  {}", output::bytes(*size)));
    }
    Ok(())
}
