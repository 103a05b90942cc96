use crate::args::{Global, SitesArgs};
use crate::output;

pub fn run(g: &Global, a: SitesArgs) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    if let Some(site) = a.forget {
        if !store.forget_site(&site)? {
            anyhow::bail!("no ledger for site {site}");
        }
        output::line(format!("forgot site {site}"));
        return Ok(());
    }
    let sites = store.sites()?;
    if g.json {
        output::json(&sites);
        return Ok(());
    }
    for s in &sites {
        let last = s.releases.last().map_or("-", |r| r.release.as_str());
        output::line(format!(
            "{:<24} {:>3} exports {:>10}  {} releases shipped, last {}",
            s.site,
            s.exports,
            output::bytes(s.bytes),
            s.releases.len(),
            last
        ));
    }
    Ok(())
}
