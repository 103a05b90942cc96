//! What crossed the gap and what it saved: every bundle imported and every release synced, as the audit log
//! records them, set against the layer-level size of the same releases — the blobs a registry mirror would have
//! had to ship, those the site already held (from earlier deliveries) not counted again.

use super::audit::{Entry, FILE};
use super::{Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::io::BufRead;

/// One delivery: a bundle imported or a release synced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// When, seconds since the Unix epoch.
    pub time: u64,
    /// `bundle` or `sync`.
    pub via: &'static str,
    /// The releases it brought, `name@version`.
    pub releases: Vec<String>,
    /// The bytes that crossed: the bundle's files, or what the sync received.
    pub shipped_bytes: u64,
    /// The layer-level size: the bytes of the releases' blobs this node had not received before.
    pub layer_bytes: u64,
}

/// Every delivery, oldest first, and their totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Deliveries {
    /// Oldest first.
    pub deliveries: Vec<Delivery>,
    /// Sum of `shipped_bytes`.
    pub shipped_bytes: u64,
    /// Sum of `layer_bytes`.
    pub layer_bytes: u64,
}

impl Store {
    /// The deliveries the audit log records (entries from before bundle sizes were logged are left out).
    pub fn deliveries(&self) -> Result<Deliveries, StoreError> {
        let path = self.root().join(FILE);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Deliveries::default()),
            Err(e) => return Err(StoreError::io(&path)(e)),
        };
        let blobs: HashMap<String, Vec<(ferry_protocol::BlobId, u64)>> = self
            .releases()?
            .into_iter()
            .map(|r| {
                let blobs = r.manifest.blobs().iter().map(|b| (b.id, b.size)).collect();
                (r.manifest.id(), blobs)
            })
            .collect();
        let mut seen: HashSet<ferry_protocol::BlobId> = HashSet::new();
        let mut out = Deliveries::default();
        for line in std::io::BufReader::new(file).split(b'\n') {
            let line = line.map_err(StoreError::io(&path))?;
            // Only two kinds of entry matter; the others (an import's carried entries are large) are not parsed.
            let text = String::from_utf8_lossy(&line);
            if !(text.contains("\"event\":\"import\"") || text.contains("\"event\":\"sync\"")) {
                continue;
            }
            let Ok(e) = serde_json::from_slice::<Entry>(&line) else {
                continue;
            };
            let (via, shipped) = match e.event.as_str() {
                "import" => ("bundle", e.detail["bundle_bytes"].as_u64()),
                // Bytes received, per peer.
                "sync" => (
                    "sync",
                    e.detail["wire_bytes"]
                        .as_object()
                        .map(|per_peer| per_peer.values().filter_map(|v| v.as_u64()).sum()),
                ),
                _ => continue,
            };
            let mut layer = 0;
            for r in &e.releases {
                for (id, size) in blobs.get(r).into_iter().flatten() {
                    if seen.insert(*id) {
                        layer += size;
                    }
                }
            }
            let Some(shipped) = shipped else { continue };
            out.shipped_bytes += shipped;
            out.layer_bytes += layer;
            out.deliveries.push(Delivery {
                time: e.time,
                via,
                releases: e.releases,
                shipped_bytes: shipped,
                layer_bytes: layer,
            });
        }
        Ok(out)
    }
}
