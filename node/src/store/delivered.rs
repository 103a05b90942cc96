//! What crossed the gap and what it saved: every bundle imported and every release synced, as the audit log
//! records them, set against the layer-level size of the same releases — the blobs a registry mirror would have
//! had to ship, those the site already held (from earlier deliveries) not counted again.
//!
//! The log only grows, so what was read of it is kept ([`Cache`]): each call reads only the entries appended
//! since, one line at a time and none longer than the log's bound, and looks up only the releases they name.

use super::audit::{Entry, FILE, MAX_LINE};
use super::{Store, StoreError};
use std::collections::HashSet;
use std::io::{BufRead, Read, Seek, SeekFrom};

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

/// What [`Store::deliveries`] has read of the log so far.
#[derive(Default)]
pub(crate) struct Cache {
    /// Where the next unread entry starts.
    offset: u64,
    /// Blobs counted by a delivery already.
    seen: HashSet<ferry_protocol::BlobId>,
    /// The deliveries up to `offset`.
    out: Deliveries,
}

impl Store {
    /// The deliveries the audit log records (entries from before bundle sizes were logged are left out).
    pub fn deliveries(&self) -> Result<Deliveries, StoreError> {
        let path = self.root().join(FILE);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Deliveries::default()),
            Err(e) => return Err(StoreError::io(&path)(e)),
        };
        let len = file.metadata().map_err(StoreError::io(&path))?.len();
        let mut cache = self.0.deliveries.lock().expect("poisoned");
        if len < cache.offset {
            // Not the log that was read (replaced by hand): start over.
            *cache = Cache::default();
        }
        file.seek(SeekFrom::Start(cache.offset))
            .map_err(StoreError::io(&path))?;
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = reader
                .by_ref()
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(StoreError::io(&path))?;
            if line.last() != Some(&b'\n') {
                if read as u64 > MAX_LINE as u64 {
                    // Longer than any entry the log reads back: skip to its end, unread.
                    let rest = skip_line(&mut reader).map_err(StoreError::io(&path))?;
                    if rest.1 {
                        cache.offset += read as u64 + rest.0;
                        continue;
                    }
                }
                // The end of the log, or an entry still being written: read it next time.
                break;
            }
            cache.offset += read as u64;
            self.take_entry(&mut cache, &line)?;
        }
        Ok(cache.out.clone())
    }

    /// Count `line`'s delivery, if it is an import or a sync.
    fn take_entry(&self, cache: &mut Cache, line: &[u8]) -> Result<(), StoreError> {
        // Only two kinds of entry matter; the others (an import's carried entries are large) are not parsed.
        let text = String::from_utf8_lossy(line);
        if !(text.contains("\"event\":\"import\"") || text.contains("\"event\":\"sync\"")) {
            return Ok(());
        }
        let Ok(e) = serde_json::from_slice::<Entry>(line) else {
            return Ok(());
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
            _ => return Ok(()),
        };
        let mut layer = 0;
        for r in &e.releases {
            // A release collected since is no longer there to measure.
            let Some(signed) = self.signed_release(r)? else {
                continue;
            };
            for b in signed.manifest_unverified()?.blobs() {
                if cache.seen.insert(b.id) {
                    layer += b.size;
                }
            }
        }
        let Some(shipped) = shipped else {
            return Ok(());
        };
        cache.out.shipped_bytes += shipped;
        cache.out.layer_bytes += layer;
        cache.out.deliveries.push(Delivery {
            time: e.time,
            via,
            releases: e.releases,
            shipped_bytes: shipped,
            layer_bytes: layer,
        });
        Ok(())
    }
}

/// Read past the rest of a line; the bytes skipped, and whether its newline came (else the file ended first).
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<(u64, bool)> {
    let mut skipped = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok((skipped, false));
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            reader.consume(i + 1);
            return Ok((skipped + i as u64 + 1, true));
        }
        let n = buf.len();
        reader.consume(n);
        skipped += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn deliveries_are_read_once_and_a_line_past_the_bound_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("s"), Default::default()).unwrap();
        assert_eq!(store.deliveries().unwrap(), Deliveries::default());
        let sync = |bytes: u64| serde_json::json!({ "wire_bytes": { "peer": bytes } });
        store.audit("sync", vec!["a@1".into()], sync(100)).unwrap();
        store
            .audit("pin", vec!["a@1".into()], serde_json::json!({}))
            .unwrap();
        let first = store.deliveries().unwrap();
        assert_eq!(first.deliveries.len(), 1);
        assert_eq!(first.shipped_bytes, 100);
        store
            .audit("import", vec![], serde_json::json!({ "bundle_bytes": 7 }))
            .unwrap();
        // A line longer than any entry, then an entry still being written: neither is counted.
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(store.audit_path())
            .unwrap();
        log.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
        log.write_all(b"\n").unwrap();
        let line_start = std::fs::metadata(store.audit_path()).unwrap().len();
        log.write_all(br#"{"seq":9,"event":"sync""#).unwrap();
        let second = store.deliveries().unwrap();
        assert_eq!(second.deliveries.len(), 2);
        assert_eq!(second.shipped_bytes, 107);
        assert_eq!(store.0.deliveries.lock().unwrap().offset, line_start);
    }
}
