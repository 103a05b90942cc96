//! Retention: which releases a node keeps. For each release name, the pinned version (if held) and the newest
//! `keep` versions by the publisher's sequence number (`keep_versions` in the store's `config.toml`, 2 unless
//! set). What it does not keep, `ferry gc` removes ([`crate::store::gc`]).

use crate::store::{Store, StoreError};
use std::collections::BTreeMap;

/// Releases kept and to remove, `name@version`, each list by name then newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Kept: pinned, or among the newest `keep` of their name.
    pub keep: Vec<String>,
    /// Neither.
    pub remove: Vec<String>,
}

/// Split the releases `store` holds under retention `keep` (at least 1).
pub fn plan(store: &Store, keep: u32) -> Result<Plan, StoreError> {
    let keep = keep.max(1) as usize;
    let pinned = store.pinned_versions()?;
    let mut by_name: BTreeMap<String, Vec<(u64, u64, String)>> = BTreeMap::new();
    for r in store.releases()? {
        let m = r.manifest;
        by_name
            .entry(m.name)
            .or_default()
            .push((m.sequence, m.created, m.version));
    }
    let mut out = Plan::default();
    for (name, mut versions) in by_name {
        versions.sort_by_key(|v| std::cmp::Reverse((v.0, v.1)));
        for (i, (_, _, version)) in versions.into_iter().enumerate() {
            let pin = pinned.get(&name) == Some(&version);
            let id = format!("{name}@{version}");
            if i < keep || pin {
                out.keep.push(id);
            } else {
                out.remove.push(id);
            }
        }
    }
    Ok(out)
}

/// What each name serves as current: its pinned version if the store holds it, else its newest (highest
/// sequence). The same rule as the mirrors' views ([`crate::mirror::catalog`], `Trees::current`), for reports.
pub fn current(store: &Store) -> Result<BTreeMap<String, String>, StoreError> {
    let releases = store.releases()?;
    let mut out = BTreeMap::new();
    // Releases come by name, then sequence: the last of each name is its newest.
    for r in &releases {
        out.insert(r.manifest.name.clone(), r.manifest.version.clone());
    }
    for (name, version) in store.pinned_versions()? {
        let held = releases
            .iter()
            .any(|r| r.manifest.name == name && r.manifest.version == version);
        if held {
            out.insert(name, version);
        }
    }
    Ok(out)
}
