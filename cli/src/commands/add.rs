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
    if a.plan {
        return plan(g, &sources);
    }
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
        policy: a
            .verify
            .as_deref()
            .map(ferry_node::verify::Policy::load)
            .transpose()?,
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
        for v in &report.verified {
            match v.scheme.as_str() {
                "unsigned" => output::line(format!(
                    "  {}: taken unsigned, as the policy allows",
                    v.artifact
                )),
                scheme => output::line(format!(
                    "  {}: {scheme} signature good by {}",
                    v.artifact, v.key
                )),
            }
        }
    }
    Ok(())
}

/// `ferry add --plan`: the closure of each partial mirror among `sources`.
fn plan(g: &Global, sources: &[Source]) -> anyhow::Result<()> {
    let mut plans = Vec::new();
    for s in sources {
        match s {
            Source::Apt(apt) if apt.partial.is_some() => {
                plans.push(ferry_node::ingest::apt::partial::plan(apt)?)
            }
            Source::Yum(yum) if yum.partial.is_some() => {
                plans.push(ferry_node::ingest::yum::partial::plan(yum)?)
            }
            Source::Pypi(pypi) if pypi.partial.is_some() => {
                plans.push(ferry_node::ingest::pypi::partial::plan(pypi)?)
            }
            _ => anyhow::bail!(
                "--plan shows the closure of a partial mirror (apt:…?packages=…, yum:…?packages=… or pypi:…?requirements=…); {s:?} is not one"
            ),
        }
    }
    if g.json {
        output::json(&plans);
        return Ok(());
    }
    for p in &plans {
        output::line(format!(
            "{}: {} packages, {} for {}",
            p.source,
            p.packages.len(),
            output::bytes(p.bytes),
            p.requests.join(", ")
        ));
        for pkg in &p.packages {
            let because = match (&pkg.of, &pkg.relation) {
                (Some(of), Some(rel)) => format!("{} of {of}: {rel}", pkg.reason),
                _ => pkg.reason.clone(),
            };
            output::line(format!(
                "  {} {} ({}) {} — {because}",
                pkg.package,
                pkg.version,
                pkg.architecture,
                output::bytes(pkg.size)
            ));
        }
        for m in &p.missing {
            output::line(format!(
                "  missing: {} (needed by {})",
                m.relation, m.needed_by
            ));
        }
        for m in &p.unmet_recommends {
            output::line(format!(
                "  recommended, not found: {} (by {})",
                m.relation, m.needed_by
            ));
        }
    }
    Ok(())
}
