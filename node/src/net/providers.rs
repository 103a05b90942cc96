//! Kademlia's record store, as Ferry uses it: provider records only.
//!
//! libp2p's `MemoryStore` keeps every provider record in a `SmallVec` of twenty inline records (about 6 KiB per
//! release this node provides, measured: 2.8 MiB over 450 small syncs of the soak) and counts this node's own
//! keys and other peers' against one limit of 1,024 keys, past which `start_providing` fails: a node holding more
//! than a thousand releases stopped providing the newer ones. Here
//! - this node's own records are kept as their keys alone: its records carry no addresses (Kademlia adds the
//!   current ones when it answers) and never expire, so the key is all there is; as many as the store holds
//!   releases (the node's own data, not a stranger's);
//! - other peers' records are bounded: at most [`MAX_KEYS`] keys and [`MAX_PER_KEY`] providers a key, the first
//!   ones kept (the Sybil rule of libp2p's own store);
//! - no value records: Ferry puts none in the DHT, and a peer's `PUT_VALUE` is refused rather than held.

use libp2p::kad::store::{Error, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::PeerId;
use std::borrow::Cow;
use std::collections::{hash_map, hash_set, HashMap, HashSet};

/// Keys other peers provide, kept at most.
pub const MAX_KEYS: usize = 4096;
/// Providers of one key kept at most (Kademlia's replication factor).
pub const MAX_PER_KEY: usize = 20;

/// Provider records: this node's as keys, other peers' bounded.
pub struct Providers {
    local: PeerId,
    provided: HashSet<RecordKey>,
    others: HashMap<RecordKey, Vec<ProviderRecord>>,
}

impl Providers {
    /// An empty store for the node `local`.
    pub fn new(local: PeerId) -> Providers {
        Providers {
            local,
            provided: HashSet::new(),
            others: HashMap::new(),
        }
    }
}

/// This node's records, made from its keys.
pub struct Provided<'a> {
    local: PeerId,
    keys: hash_set::Iter<'a, RecordKey>,
}

impl<'a> Iterator for Provided<'a> {
    type Item = Cow<'a, ProviderRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        let key = self.keys.next()?;
        Some(Cow::Owned(ProviderRecord::new(
            key.clone(),
            self.local,
            Vec::new(),
        )))
    }
}

impl RecordStore for Providers {
    type RecordsIter<'a> = std::iter::Empty<Cow<'a, Record>>;
    type ProvidedIter<'a> = Provided<'a>;

    fn get(&self, _: &RecordKey) -> Option<Cow<'_, Record>> {
        None
    }

    fn put(&mut self, _: Record) -> Result<()> {
        Err(Error::MaxRecords)
    }

    fn remove(&mut self, _: &RecordKey) {}

    fn records(&self) -> Self::RecordsIter<'_> {
        std::iter::empty()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        if record.provider == self.local {
            self.provided.insert(record.key);
            return Ok(());
        }
        let count = self.others.len();
        let providers = match self.others.entry(record.key.clone()) {
            hash_map::Entry::Occupied(e) => e.into_mut(),
            hash_map::Entry::Vacant(_) if count >= MAX_KEYS => return Err(Error::MaxProvidedKeys),
            hash_map::Entry::Vacant(e) => e.insert(Vec::new()),
        };
        if let Some(p) = providers.iter_mut().find(|p| p.provider == record.provider) {
            *p = record;
        } else if providers.len() < MAX_PER_KEY {
            providers.push(record);
        }
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let mut all = self.others.get(key).cloned().unwrap_or_default();
        if self.provided.contains(key) {
            all.push(ProviderRecord::new(key.clone(), self.local, Vec::new()));
        }
        all
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        Provided {
            local: self.local,
            keys: self.provided.iter(),
        }
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        if *provider == self.local {
            self.provided.remove(key);
            return;
        }
        if let hash_map::Entry::Occupied(mut e) = self.others.entry(key.clone()) {
            e.get_mut().retain(|p| p.provider != *provider);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> RecordKey {
        RecordKey::new(&format!("ferry/release/r@{i}"))
    }

    #[test]
    fn a_node_provides_more_than_a_thousand_releases() {
        let local = PeerId::random();
        let mut store = Providers::new(local);
        for i in 0..5000 {
            store
                .add_provider(ProviderRecord::new(key(i), local, Vec::new()))
                .unwrap();
        }
        assert_eq!(store.provided().count(), 5000);
        let mine = store.providers(&key(4999));
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].provider, local);
        assert!(mine[0].expires.is_none());
        store.remove_provider(&key(4999), &local);
        assert!(store.providers(&key(4999)).is_empty());
        assert_eq!(store.provided().count(), 4999);
    }

    #[test]
    fn other_peers_records_are_bounded_and_updated_in_place() {
        let local = PeerId::random();
        let mut store = Providers::new(local);
        let peers: Vec<PeerId> = (0..MAX_PER_KEY + 5).map(|_| PeerId::random()).collect();
        for p in &peers {
            store
                .add_provider(ProviderRecord::new(key(0), *p, Vec::new()))
                .unwrap();
        }
        let held = store.providers(&key(0));
        assert_eq!(held.len(), MAX_PER_KEY);
        assert!(held
            .iter()
            .all(|r| peers[..MAX_PER_KEY].contains(&r.provider)));

        let addr: libp2p::Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        store
            .add_provider(ProviderRecord::new(key(0), peers[0], vec![addr.clone()]))
            .unwrap();
        let again = store.providers(&key(0));
        assert_eq!(again.len(), MAX_PER_KEY);
        assert_eq!(
            again
                .iter()
                .find(|r| r.provider == peers[0])
                .unwrap()
                .addresses,
            vec![addr]
        );

        for i in 1..MAX_KEYS {
            store
                .add_provider(ProviderRecord::new(key(i), peers[1], Vec::new()))
                .unwrap();
        }
        assert!(matches!(
            store.add_provider(ProviderRecord::new(key(MAX_KEYS), peers[1], Vec::new())),
            Err(Error::MaxProvidedKeys)
        ));
        // This node's own keys never count against the others' bound.
        store
            .add_provider(ProviderRecord::new(key(MAX_KEYS), local, Vec::new()))
            .unwrap();
        assert_eq!(store.providers(&key(MAX_KEYS)).len(), 1);

        store.remove_provider(&key(0), &peers[0]);
        assert_eq!(store.providers(&key(0)).len(), MAX_PER_KEY - 1);
        for p in &peers[1..MAX_PER_KEY] {
            store.remove_provider(&key(0), p);
        }
        assert!(store.providers(&key(0)).is_empty());
        // The key's room is free again.
        store
            .add_provider(ProviderRecord::new(key(MAX_KEYS + 1), peers[2], Vec::new()))
            .unwrap();
    }

    #[test]
    fn no_value_records_are_held() {
        let mut store = Providers::new(PeerId::random());
        let record = Record::new(key(0), vec![1, 2, 3]);
        assert!(store.put(record).is_err());
        assert!(store.get(&key(0)).is_none());
        assert_eq!(store.records().count(), 0);
    }
}
