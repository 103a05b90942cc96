//! Pins: which version of a release name the mirrors serve as current.
//!
//! Without a pin, current is the newest version held (highest sequence). A pin names a version instead: moving
//! tags (a tag several versions of the name hold, such as `latest`) and `/repos/NAME/current/` follow it, and
//! every other version stays reachable by its own tags and digests. Rolling back is pinning the older version.
//!
//! A pin is a last-writer-wins register per name, so the nodes of a site converge on the same answer whatever
//! order pins reach them in: each write carries a Lamport clock (one more than any clock this store has seen)
//! and the peer id of the node it was made on; the higher `(clock, origin)` wins. Removing a pin writes a
//! tombstone (`version: None`) with a clock of its own, so a removal travels and wins like a pin does.

use super::{Store, StoreError};

pub use ferry_protocol::sync::Pin;

/// Largest clock taken from a peer: far beyond any count of pin writes, far below `u64::MAX`, so a peer cannot
/// send a pin no later write can beat.
const MAX_CLOCK: u64 = 1 << 48;

impl Store {
    fn read_pin(&self, key: &[u8], value: &[u8]) -> Result<Pin, StoreError> {
        serde_json::from_slice(value).map_err(|e| {
            StoreError::Corrupt(format!("pin of {}: {e}", String::from_utf8_lossy(key)))
        })
    }

    /// Every pin record, tombstones included, by name.
    pub fn pin_records(&self) -> Result<Vec<Pin>, StoreError> {
        let mut out = Vec::new();
        for item in self.0.pins.iter() {
            let (k, v) = item?;
            out.push(self.read_pin(&k, &v)?);
        }
        Ok(out)
    }

    /// The pins in force (tombstones left out), by name.
    pub fn pins(&self) -> Result<Vec<Pin>, StoreError> {
        Ok(self
            .pin_records()?
            .into_iter()
            .filter(|p| p.version.is_some())
            .collect())
    }

    /// The pin in force for `name`, if any.
    pub fn pin(&self, name: &str) -> Result<Option<Pin>, StoreError> {
        match self.0.pins.get(name.as_bytes())? {
            Some(v) => {
                Ok(Some(self.read_pin(name.as_bytes(), &v)?).filter(|p| p.version.is_some()))
            }
            None => Ok(None),
        }
    }

    /// Pin `name` to `version` (which this store must hold), or remove its pin (`None`), as a write made on the
    /// node `origin`. Returns the record written.
    pub fn set_pin(
        &self,
        name: &str,
        version: Option<&str>,
        origin: &str,
        site: bool,
    ) -> Result<Pin, StoreError> {
        ferry_protocol::validate_name(name)?;
        if let Some(v) = version {
            let id = format!("{name}@{v}");
            if self.signed_release(&id)?.is_none() {
                let held: Vec<String> = self
                    .releases()?
                    .into_iter()
                    .filter(|r| r.manifest.name == name)
                    .map(|r| r.manifest.version)
                    .collect();
                return Err(StoreError::NotHeld {
                    release: id,
                    held: if held.is_empty() {
                        format!("no version of {name}")
                    } else {
                        format!("{name} versions {}", held.join(", "))
                    },
                });
            }
        }
        let _one = self.0.publish.lock().expect("publish lock poisoned");
        let clock = self
            .pin_records()?
            .iter()
            .map(|p| p.clock)
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let pin = Pin {
            name: name.to_string(),
            version: version.map(str::to_string),
            clock,
            origin: origin.to_string(),
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            site,
        };
        self.write_pin(&pin)?;
        Ok(pin)
    }

    /// Take a pin written elsewhere (a peer, for the site) if it beats the one held for its name. Returns
    /// whether it was taken. The pinned version need not be held yet: until it is, current stays the newest.
    pub fn merge_pin(&self, pin: &Pin) -> Result<bool, StoreError> {
        ferry_protocol::validate_name(&pin.name)?;
        if let Some(v) = &pin.version {
            ferry_protocol::validate_version(v)?;
        }
        if pin.clock > MAX_CLOCK {
            return Err(StoreError::Corrupt(format!(
                "pin for {}: clock {} is past any a site reaches (a peer trying to make its pin unbeatable?)",
                pin.name, pin.clock
            )));
        }
        if pin.origin.is_empty() || pin.origin.len() > 128 {
            return Err(StoreError::Corrupt(format!(
                "pin for {}: origin {:?} is not a peer id",
                pin.name, pin.origin
            )));
        }
        let _one = self.0.publish.lock().expect("publish lock poisoned");
        if let Some(v) = self.0.pins.get(pin.name.as_bytes())? {
            if !pin.beats(&self.read_pin(pin.name.as_bytes(), &v)?) {
                return Ok(false);
            }
        }
        self.write_pin(pin)?;
        Ok(true)
    }

    fn write_pin(&self, pin: &Pin) -> Result<(), StoreError> {
        let v = serde_json::to_vec(pin).expect("a pin always serialises");
        self.0.pins.insert(pin.name.as_bytes(), v)?;
        self.0.db.flush()?;
        self.bump_generation();
        let releases = pin
            .version
            .iter()
            .map(|v| format!("{}@{v}", pin.name))
            .collect();
        self.audit_or_warn(
            "pin",
            releases,
            serde_json::json!({
                "name": pin.name,
                "version": pin.version,
                "origin": pin.origin,
                "site": pin.site,
            }),
        );
        Ok(())
    }

    /// Name → pinned version, for the views that decide what is current.
    pub fn pinned_versions(&self) -> Result<std::collections::HashMap<String, String>, StoreError> {
        Ok(self
            .pins()?
            .into_iter()
            .filter_map(|p| Some((p.name, p.version?)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(clock: u64, origin: &str) -> Pin {
        Pin {
            name: "x".into(),
            version: Some("1".into()),
            clock,
            origin: origin.into(),
            at: 0,
            site: true,
        }
    }

    #[test]
    fn merging_keeps_the_winner_and_refuses_an_unbeatable_clock() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::create(&dir.path().join("s"), crate::config::StoreConfig::default()).unwrap();
        assert!(store.merge_pin(&pin(5, "b")).unwrap());
        assert!(
            !store.merge_pin(&pin(5, "a")).unwrap(),
            "a lower origin at the same clock"
        );
        assert!(!store.merge_pin(&pin(4, "z")).unwrap(), "an older clock");
        assert_eq!(store.pin("x").unwrap().unwrap().origin, "b");
        let err = store
            .merge_pin(&pin(u64::MAX, "z"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("clock"), "{err}");
        // A local write goes one past every clock seen, so it beats what it follows.
        let mine = store.set_pin("x", None, "a", true).unwrap();
        assert_eq!(mine.clock, 6);
        assert_eq!(store.pin("x").unwrap(), None);
        assert_eq!(store.pin_records().unwrap().len(), 1);
    }

    #[test]
    fn the_higher_clock_wins_then_the_higher_origin() {
        assert!(pin(2, "a").beats(&pin(1, "z")));
        assert!(!pin(1, "z").beats(&pin(2, "a")));
        assert!(pin(3, "b").beats(&pin(3, "a")));
        assert!(!pin(3, "a").beats(&pin(3, "a")));
    }
}
