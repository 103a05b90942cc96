//! `ferry doctor`: the checks of `ferry_node::doctor`, printed one per line with their fixes.
//!
//! When a node holds the store, the command runs inside it (like every command): the file checks then see the
//! store as the node's user does, and the clock check has the node's measure of each connected peer's clock.

use crate::args::{DoctorArgs, Global};
use crate::output;
use crate::remote;
use ferry_node::doctor::{self, Live, PeerClock, Setup};
use ferry_node::node_config::NodeConfig;

pub fn run(g: &Global, a: &DoctorArgs) -> anyhow::Result<()> {
    let store = super::store_dir(g)?;
    let config = match &a.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::load_default(&store)?,
    };
    // `Some(None)`: the node runs without network sync, so it has no peers to measure or refuse.
    let live: Option<Live> = remote::attached_network().map(|net| {
        let Some(status) = net.map(|n| n.status()) else {
            return Live::default();
        };
        Live {
            unlisted: status
                .refused
                .iter()
                .filter(|r| r.why.contains("allow-list"))
                .map(|r| (r.peer.clone(), r.addr.clone()))
                .collect(),
            clocks: status
                .peers
                .into_iter()
                .filter(|(_, p)| p.connected)
                .map(|(peer, p)| PeerClock {
                    peer,
                    offset_ms: p.clock_offset_ms,
                    error_ms: p.clock_error_ms,
                })
                .collect(),
        }
    });
    let findings = doctor::check(&Setup {
        store: &store,
        config: &config,
        etc: &a.etc,
        units: &a.units,
        live: live.as_ref(),
    });
    let problems = findings.iter().filter(|f| !f.ok).count();
    if g.json {
        output::json(&serde_json::json!({ "problems": problems, "checks": findings }));
    } else {
        for f in &findings {
            if f.ok {
                output::line(format!("ok    {:8} {}", f.check, f.what));
            } else {
                output::line(format!("FIX   {:8} {}", f.check, f.what));
                if !f.fix.is_empty() {
                    output::line(format!("      {:8} → {}", "", f.fix));
                }
            }
        }
    }
    if problems > 0 {
        return Err(Problems(problems).into());
    }
    Ok(())
}

/// The doctor's answer when it found something: the exit is 1, but for a node running the command it is a
/// report, not a failure of the command.
#[derive(Debug, thiserror::Error)]
#[error("{0} problem(s) in this node's setup; each is named above with its fix")]
pub struct Problems(pub usize);
