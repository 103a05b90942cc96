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
