//! `ferry doctor`: the checks of `ferry_node::doctor`, printed one per line with their fixes.

use crate::args::{DoctorArgs, Global};
use crate::output;
use ferry_node::doctor::{self, Setup};
use ferry_node::node_config::NodeConfig;

pub fn run(g: &Global, a: &DoctorArgs) -> anyhow::Result<()> {
    let store = super::store_dir(g)?;
    let config = match &a.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::load_default(&store)?,
    };
    let findings = doctor::check(&Setup {
        store: &store,
        config: &config,
        etc: &a.etc,
        units: &a.units,
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
        anyhow::bail!(
            "{problems} problem(s) in this node's setup; each is named above with its fix"
        );
    }
    Ok(())
}
