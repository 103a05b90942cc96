//! A bundle's index file (`ferry-bundle.index`: a signed `BundleIndex`) decodes or is refused; an index that
//! passes its structural check can be read as import and verify read it — each segment found in its volume,
//! the recipes' parts numbered — without panicking. The index alone is tried too (the fuzzer then reaches its
//! fields without first building a valid envelope).
#![no_main]

use ferry_protocol::bundle::{part_table, BundleIndex, SignedIndex};
use ferry_protocol::delta::Op;
use ferry_protocol::{Object, PublisherKey};
use libfuzzer_sys::fuzz_target;

/// Above this many parts copied from bases, the part table is not built: the protocol allows 64 Mi parts (a
/// table of 2.5 GiB, past the fuzzer's memory limit), and a real index that large is signed by a trusted key.
const MAX_COPIED: u64 = 1 << 20;

fn read(index: &BundleIndex) {
    if index.check().is_err() {
        return;
    }
    let total = index.stream_bytes();
    for s in &index.segments {
        let (volume, offset) = ferry_node::fuzz::locate(index, s.offset);
        assert!(
            volume >= 1 && offset <= total,
            "segment located outside the stream"
        );
    }
    let copied: u64 = index
        .recipes
        .iter()
        .flat_map(|r| &r.ops)
        .map(|op| match op {
            Op::Copy { n, .. } => u64::from(*n),
            _ => 0,
        })
        .sum();
    if copied <= MAX_COPIED {
        let _ = part_table(&index.recipes);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedIndex::decode(data) {
        let key = PublisherKey(ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key());
        let _ = signed.verify(&key);
        if let Ok(index) = signed.index_unverified() {
            read(&index);
        }
    }
    if let Ok(index) = BundleIndex::decode(data) {
        read(&index);
    }
});
