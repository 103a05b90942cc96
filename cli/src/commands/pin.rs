use crate::args::{Global, PinCommand};
use crate::output;
use ferry_node::membership;
use ferry_node::store::pins::Pin;

fn row(p: &Pin, held: bool, this_node: &str) -> serde_json::Value {
    serde_json::json!({
        "name": p.name,
        "version": p.version,
        "held": held,
        "origin": p.origin,
        "local": p.origin == this_node,
        "at": p.at,
        "clock": p.clock,
        "site": p.site,
    })
}

pub fn run(g: &Global, c: PinCommand) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let this_node = membership::peer_id(store.root())?.to_string();
    match c {
        PinCommand::Set {
            name,
            version,
            site,
        } => {
            let before = store.pin(&name)?;
            let pin = store.set_pin(&name, Some(&version), &this_node, site)?;
            if g.json {
                output::json(&row(&pin, true, &this_node));
            } else {
                let was = match before.and_then(|p| p.version) {
                    Some(v) if v == version => " (it was pinned there already)".to_string(),
                    Some(v) => format!(" (was {v})"),
                    None => " (was: the newest version)".to_string(),
                };
                let whole = if site { " for the whole site" } else { "" };
                output::line(format!("{name} pinned to {version}{whole}{was}"));
            }
        }
        PinCommand::Rm { name, site } => {
            let Some(before) = store.pin(&name)? else {
                anyhow::bail!("{name} is not pinned");
            };
            let pin = store.set_pin(&name, None, &this_node, site || before.site)?;
            if g.json {
                output::json(&row(&pin, false, &this_node));
            } else {
                output::line(format!(
                    "{name} unpinned (was {}): current is its newest version again",
                    before.version.unwrap_or_default()
                ));
            }
        }
        PinCommand::Ls => {
            let releases = store.releases()?;
            let held = |p: &Pin| {
                releases.iter().any(|r| {
                    r.manifest.name == p.name && Some(&r.manifest.version) == p.version.as_ref()
                })
            };
            let pins = store.pins()?;
            if g.json {
                let rows: Vec<_> = pins.iter().map(|p| row(p, held(p), &this_node)).collect();
                output::json(&rows);
            } else {
                for p in &pins {
                    let from = if p.origin == this_node {
                        "set here".to_string()
                    } else {
                        format!("from peer {}", p.origin)
                    };
                    let scope = if p.site { "site" } else { "this node" };
                    output::line(format!(
                        "{:<32} {:<16} {scope}, {from}, at {}{}",
                        p.name,
                        p.version.as_deref().unwrap_or(""),
                        p.at,
                        if held(p) { "" } else { " (not held yet)" }
                    ));
                }
            }
        }
    }
    Ok(())
}
