//! A have-file (`ferry export --have`) decodes from any bytes or is refused; a decoded one answers lookups,
//! summarises itself and encodes back to itself, and one built from chunk ids holds exactly those.
#![no_main]

use ferry_protocol::bundle::{HaveFile, HAVE_PREFIX};
use ferry_protocol::{ChunkId, Object};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = HaveFile::decode(data) {
        assert_eq!(HaveFile::decode(&h.encode()).expect("re-encoded"), h);
        let _ = h.summary();
        for id in [ChunkId::of(data), ChunkId::from_bytes([0; 32])] {
            let _ = h.has_chunk(&id);
        }
        // Every prefix listed is found (when the list is sorted, as written).
        if h.chunks.len() % HAVE_PREFIX == 0 && h.chunks.chunks(HAVE_PREFIX).is_sorted() {
            for p in h.chunks.chunks(HAVE_PREFIX) {
                let mut id = [0u8; 32];
                id[..HAVE_PREFIX].copy_from_slice(p);
                assert!(
                    h.has_chunk(&ChunkId::from_bytes(id)),
                    "a listed chunk is not found"
                );
            }
        }
    }
    // Built from ids: each is held.
    let ids: Vec<ChunkId> = data.chunks(3).map(ChunkId::of).collect();
    let h = HaveFile::new(
        ferry_protocol::KeyId([7; 8]),
        1,
        vec![],
        ids.iter().copied(),
    );
    assert!(
        ids.iter().all(|id| h.has_chunk(id)),
        "a chunk it was built from is not held"
    );
    assert_eq!(
        HaveFile::decode(&h.encode()).expect("a built have-file decodes"),
        h
    );
});
