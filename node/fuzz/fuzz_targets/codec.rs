//! Every protocol object (`ferry_protocol::codec`) decodes from any bytes or is refused, never panicking; what
//! decodes encodes to bytes that decode to the same object; and what the node does with a decoded object
//! before trusting it (validating names, checking a recipe's sizes, rebuilding a recipe difference) does not
//! panic either. The type byte after the magic picks the type, as in files and frames.
#![no_main]

use ferry_protocol::bundle::{BundleIndex, SignedIndex};
use ferry_protocol::sync::{SyncRequest, SyncResponse};
use ferry_protocol::{ChunkId, Object, Recipe, ReleaseManifest, SignedRelease};
use libfuzzer_sys::fuzz_target;
use std::fmt::Debug;

/// Decode as `T`; when that works, check the round trip.
fn decode<T: Object + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let v = T::decode(data).ok()?;
    let back = T::decode(&v.encode()).expect("an encoded object decodes");
    assert_eq!(back, v, "an object decodes differently once encoded again");
    Some(v)
}

fn release(m: &ReleaseManifest) {
    let _ = m.validate();
    let _ = m.blobs();
    let _ = m.id();
}

fn recipe(r: &Recipe) {
    let _ = r.is_consistent();
    let _ = r.gzip_parts();
    let _ = r.chunks().count();
    let _ = r.encode_with_id();
}

fuzz_target!(|data: &[u8]| {
    if let Some(m) = decode::<ReleaseManifest>(data) {
        release(&m);
    }
    if let Some(s) = decode::<SignedRelease>(data) {
        if let Ok(m) = s.manifest_unverified() {
            release(&m);
        }
    }
    if let Some(r) = decode::<Recipe>(data) {
        recipe(&r);
    }
    if let Some(i) = decode::<BundleIndex>(data) {
        let _ = i.check();
    }
    if let Some(s) = decode::<SignedIndex>(data) {
        if let Ok(i) = s.index_unverified() {
            let _ = i.check();
        }
    }
    let _ = decode::<SyncRequest>(data);
    if let Some(r) = decode::<SyncResponse>(data) {
        match r {
            SyncResponse::Release(b) => {
                if let Ok(m) = SignedRelease::decode(&b).and_then(|s| s.manifest_unverified()) {
                    release(&m);
                }
            }
            SyncResponse::Recipes(list) => {
                for r in list.iter().flatten().filter_map(|b| Recipe::decode(b).ok()) {
                    recipe(&r);
                }
            }
            // What a syncing node does with a peer's differences: rebuild against no base, chunks unnamed.
            SyncResponse::RecipeDiffs(list) => {
                for d in list.iter().flatten() {
                    if let Ok(r) = d.rebuild(None, |k| Some(ChunkId::of(&k.to_le_bytes()))) {
                        recipe(&r);
                    }
                    let _ = d.rebuild_checked(None, |_| None);
                }
            }
            _ => {}
        }
    }
});
