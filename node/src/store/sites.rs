//! The seed's ledger of what it shipped to each site, so `ferry export --site NAME` sends only what is new there.
//!
//! A bundle is assumed to arrive: the ledger is updated when the export is written. An operator who lost a
//! bundle exports again with `--have` (the site's own account) or forgets the site.

use super::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// One release shipped to a site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipped {
    /// `name@version`.
    pub release: String,
    /// BLAKE3 of the signed envelope shipped (hex).
    pub envelope: String,
    /// When, seconds since the Unix epoch.
    pub at: u64,
}

/// What a site was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// The site's name.
    pub site: String,
    /// Bundles exported to it.
    pub exports: u64,
    /// Bytes of those bundles.
    pub bytes: u64,
    /// When the last one was written.
    pub last_export: u64,
    /// Every release shipped, oldest first.
    pub releases: Vec<Shipped>,
}

/// Check a site name: the same rules as a release name.
pub fn validate_site(name: &str) -> Result<(), StoreError> {
    ferry_protocol::validate_name(name).map_err(|_| StoreError::SiteName(name.to_string()))
}

impl Store {
    /// The ledger of `site` (empty if nothing was shipped there).
    pub fn site(&self, site: &str) -> Result<Ledger, StoreError> {
        validate_site(site)?;
        match self.0.sites.get(site.as_bytes())? {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("ledger of site {site}: {e}"))),
            None => Ok(Ledger {
                site: site.to_string(),
                ..Ledger::default()
            }),
        }
    }

    /// Every site with a ledger, by name.
    pub fn sites(&self) -> Result<Vec<Ledger>, StoreError> {
        let mut out = Vec::new();
        for item in self.0.sites.iter() {
            let (k, v) = item?;
            out.push(serde_json::from_slice(&v).map_err(|e| {
                StoreError::Corrupt(format!(
                    "ledger of site {}: {e}",
                    String::from_utf8_lossy(&k)
                ))
            })?);
        }
        Ok(out)
    }

    /// Replace `ledger` durably.
    pub fn save_site(&self, ledger: &Ledger) -> Result<(), StoreError> {
        validate_site(&ledger.site)?;
        let v = serde_json::to_vec(ledger).expect("a ledger always serialises");
        self.0.sites.insert(ledger.site.as_bytes(), v)?;
        self.0.db.flush()?;
        Ok(())
    }

    /// Forget a site's ledger. Returns whether it existed.
    pub fn forget_site(&self, site: &str) -> Result<bool, StoreError> {
        validate_site(site)?;
        let existed = self.0.sites.remove(site.as_bytes())?.is_some();
        self.0.db.flush()?;
        Ok(existed)
    }
}
