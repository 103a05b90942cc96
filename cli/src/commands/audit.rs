use crate::args::{AuditCommand, Global};
use crate::output;
use ferry_node::store::audit::{self, Entry};
use std::io::BufRead;

pub fn run(g: &Global, a: AuditCommand) -> anyhow::Result<()> {
    match a {
        AuditCommand::Ls { release } => ls(g, release),
        AuditCommand::Verify { file, key } => verify(g, file, key),
        AuditCommand::Export { out } => export(g, out),
    }
}

fn ls(g: &Global, release: Option<String>) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let path = store.audit_path();
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if g.json {
                output::json(&Vec::<Entry>::new());
            }
            return Ok(());
        }
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    };
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let Ok(e) = serde_json::from_str::<Entry>(&line) else {
            output::note(format!(
                "{} line {}: not an audit entry (see `ferry audit verify`)",
                path.display(),
                i + 1
            ));
            continue;
        };
        if release.as_ref().is_some_and(|r| !e.releases.contains(r)) {
            continue;
        }
        if g.json {
            rows.push(e);
        } else {
            output::line(format!(
                "{:>6}  {}  {:<7} {}{}",
                e.seq,
                e.time,
                e.event,
                e.releases.join(" "),
                summary(&e)
            ));
        }
    }
    if g.json {
        output::json(&rows);
    }
    Ok(())
}

/// A few words on an entry's particulars.
fn summary(e: &Entry) -> String {
    let d = &e.detail;
    let s = match e.event.as_str() {
        "ingest" => {
            let checked: Vec<String> = d["verified"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    format!(
                        "{} {}",
                        v["scheme"].as_str().unwrap_or(""),
                        v["artifact"].as_str().unwrap_or("")
                    )
                })
                .collect();
            let from = d["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            if checked.is_empty() {
                format!("from {from}")
            } else {
                format!("from {from}; verified: {}", checked.join(", "))
            }
        }
        "export" => format!(
            "bundle {} to {}",
            d["bundle"].as_str().unwrap_or("").get(..16).unwrap_or(""),
            d["site"].as_str().unwrap_or("an unnamed site")
        ),
        "import" => format!(
            "bundle {} from {}, {} entries carried",
            d["bundle"].as_str().unwrap_or("").get(..16).unwrap_or(""),
            d["from"].as_str().unwrap_or(""),
            d["carried"].as_array().map_or(0, Vec::len)
        ),
        "sync" => format!(
            "from {}",
            d["wire_bytes"]
                .as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ),
        "pin" => format!(
            "{} → {}",
            d["name"].as_str().unwrap_or(""),
            d["version"].as_str().unwrap_or("(unpinned)")
        ),
        "gc" => format!(
            "{} bytes of chunks removed",
            d["chunk_bytes_removed"].as_u64().unwrap_or(0)
        ),
        _ => String::new(),
    };
    if s.is_empty() {
        s
    } else {
        format!(" — {s}")
    }
}

fn verify(
    g: &Global,
    file: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let (path, own, trusted) = match (&file, &key) {
        (Some(f), Some(k)) => {
            let k = ferry_node::trust::read_key_file(k)?;
            (f.clone(), vec![k], vec![k])
        }
        (None, Some(_)) => {
            anyhow::bail!("--key goes with --file: a store's own log is checked with its own key")
        }
        _ => {
            let store = super::open_store(g)?;
            let trusted: Vec<_> = store.trusted()?.keys().iter().map(|(k, _)| *k).collect();
            let path = file.clone().unwrap_or_else(|| store.audit_path());
            (path, vec![store.publisher()], trusted)
        }
    };
    if !path.exists() && file.is_none() {
        output::line("no audit log yet: nothing has happened to this store's content");
        return Ok(());
    }
    let v = audit::verify(&path, &own, &trusted).map_err(anyhow::Error::msg)?;
    if g.json {
        output::json(&v);
    } else {
        for p in &v.problems {
            output::line(format!(
                "BROKEN {} line {}{}: {}",
                v.path,
                p.line,
                p.seq.map(|s| format!(" (entry {s})")).unwrap_or_default(),
                p.reason
            ));
        }
        output::line(format!(
            "{}: {} entries ({} carried from other nodes), head {}; {} problems",
            if v.problems.is_empty() {
                "ok"
            } else {
                "FAILED"
            },
            v.entries,
            v.carried,
            v.head,
            v.problems.len()
        ));
    }
    if let Some(p) = v.problems.first() {
        anyhow::bail!(
            "{} line {}{}: {}",
            v.path,
            p.line,
            p.seq.map(|s| format!(" (entry {s})")).unwrap_or_default(),
            p.reason
        );
    }
    Ok(())
}

fn export(g: &Global, out: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let path = store.audit_path();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    };
    match out {
        Some(out) => {
            std::fs::write(&out, &bytes).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
            output::note(format!(
                "wrote {} bytes of audit log to {} (check it with `ferry audit verify --file {} --key PUBLISHER.pub`)",
                bytes.len(),
                out.display(),
                out.display()
            ));
        }
        None => {
            for line in String::from_utf8_lossy(&bytes).lines() {
                output::line(line);
            }
        }
    }
    Ok(())
}
