use crate::args::{parse_release, AddArgs, Global};
use crate::{output, progress::Bar};
use anyhow::Context;
use ferry_node::ingest::{self, registry::RegistryOptions, AddOptions, Source};

pub fn run(g: &Global, a: AddArgs) -> anyhow::Result<()> {
    let (name, version) = parse_release(&a.release)?;
    let sources = a
        .sources
        .iter()
        .map(|s| s.parse::<Source>())
        .collect::<Result<Vec<_>, _>>()?;
    let platforms = a
        .platforms
        .iter()
        .map(|p| p.parse().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let creds = a
        .creds
        .map(|c| {
            c.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .context("--creds must be USER:PASSWORD")
        })
        .transpose()?;
    let opts = AddOptions {
        platforms,
        registry: RegistryOptions {
            insecure: a.insecure,
            creds,
            token: a.registry_token,
        },
    };
    let store = super::open_store(g)?;
    let bar = Bar::new(!g.no_progress);
    let (_, report) = ingest::add(&store, &name, &version, &sources, &opts, &bar)?;
    drop(bar);
    if g.json {
        output::json(&report);
    } else {
        output::line(format!(
            "added {} (sequence {}): {} entries, {} logical, {} chunks of which {} new ({} stored)",
            report.release,
            report.sequence,
            report.entries,
            output::bytes(report.logical_bytes),
            report.chunks,
            report.chunks_new,
            output::bytes(report.stored_bytes_new)
        ));
    }
    Ok(())
}
