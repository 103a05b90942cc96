//! Resemblance sketches: six *super-features* per chunk, some equal for two chunks that share a good part of
//! their bytes.
//!
//! A chunk is cut into [`FEATURES`] equal stretches; each stretch's *feature* is the largest gear hash of a
//! 64-byte window that ends in it (the Finesse scheme: a small edit changes the feature of the stretch it lands
//! in, and usually no other). Features are grouped in pairs, stretches six apart (0 and 6, 1 and 7, …), into
//! [`SUPER_FEATURES`] super-features, each a hash of its pair: an edit confined to one stretch leaves five of
//! the six equal, and a chunk half of whose stretches are unchanged keeps one with odds of about 4 in 5. Pairs
//! rather than Finesse's usual fours: measured on a renamed pure-Python wheel (a zip whose every chunk changed
//! between releases), groups of four found no base and pairs found the old wheel; a wrong base costs only bytes,
//! as a delta is kept only when smaller. Features of stretches are position-relative, so an insertion that
//! shifts every byte changes only the stretches around it and the ones whose boundaries move over changed
//! content.
//!
//! Cost: one gear step and one comparison a byte, about 1 GB/s a core. The store keeps a blob's sketches beside
//! its recipe ([`crate::store::Store::sketches`]), computed the first time a delta planner asks (at most
//! [`crate::delta::SKETCH_BUDGET`] of content read per plan, so the first export against a large store does
//! not read all of it), so later lookups across everything a receiver holds read 24 bytes a chunk, not the
//! chunk.

/// Super-features per chunk.
pub const SUPER_FEATURES: usize = 6;
/// Stretches (features) per chunk.
pub const FEATURES: usize = 2 * SUPER_FEATURES;
/// Chunks shorter than this have no sketch: too few windows for features to mean anything.
pub const MIN_SKETCHED: usize = 512;

/// A chunk's super-features; all zero for "none" (a zero run, or a chunk too small).
pub type Sketch = [u32; SUPER_FEATURES];

/// Gear table: 256 pseudo-random 64-bit values (SplitMix64 from a fixed seed), fixed forever: sketches are
/// kept in stores.
const GEAR: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut s: u64 = 0x6665_7272_792d_736b;
    let mut i = 0;
    while i < 256 {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
};

/// The sketch of `data`.
pub fn sketch(data: &[u8]) -> Sketch {
    if data.len() < MIN_SKETCHED {
        return [0; SUPER_FEATURES];
    }
    let mut features = [0u64; FEATURES];
    let n = data.len();
    let mut h = 0u64;
    // A 64-bit gear hash shifted left each byte forgets a byte after 64 steps: a rolling hash of the last 64
    // bytes, carried across stretches.
    for (k, feature) in features.iter_mut().enumerate() {
        let (from, to) = (k * n / FEATURES, (k + 1) * n / FEATURES);
        let mut best = 0u64;
        for &b in &data[from..to] {
            h = (h << 1).wrapping_add(GEAR[b as usize]);
            best = best.max(h >> 32);
        }
        *feature = best;
    }
    let mut out = [0u32; SUPER_FEATURES];
    for (j, sf) in out.iter_mut().enumerate() {
        let mut x = blake3::Hasher::new();
        x.update(&[j as u8]);
        for f in features.iter().skip(j).step_by(SUPER_FEATURES) {
            x.update(&f.to_le_bytes());
        }
        let d = x.finalize();
        // Never zero: zero means "no sketch".
        *sf = u32::from_le_bytes(d.as_bytes()[..4].try_into().expect("4 bytes")) | 1;
    }
    out
}

/// The (slot, super-feature) keys of a sketch that has them: what resemblance indexes and looks up.
pub fn keys(s: &Sketch) -> impl Iterator<Item = (u8, u32)> + '_ {
    s.iter()
        .enumerate()
        .filter(|(_, &f)| f != 0)
        .map(|(slot, &f)| (slot as u8, f))
}

/// Sketches as the store keeps them: 24 bytes a part, little-endian.
pub fn encode(sketches: &[Sketch]) -> Vec<u8> {
    sketches
        .iter()
        .flat_map(|s| s.iter().flat_map(|f| f.to_le_bytes()))
        .collect()
}

/// The sketches `encode` wrote, or `None` when `bytes` is not `parts` of them.
pub fn decode(bytes: &[u8], parts: usize) -> Option<Vec<Sketch>> {
    if bytes.len() != parts * 4 * SUPER_FEATURES {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4 * SUPER_FEATURES)
            .map(|s| {
                let mut out = [0u32; SUPER_FEATURES];
                for (j, f) in out.iter_mut().enumerate() {
                    *f = u32::from_le_bytes(s[4 * j..4 * j + 4].try_into().expect("4 bytes"));
                }
                out
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(seed: u64, len: usize) -> Vec<u8> {
        let mut s = seed;
        let words = [
            "ferry", "chunk", "delta", "site", "seed", "layer", "blob", "gap",
        ];
        let mut out = Vec::new();
        while out.len() < len {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.extend_from_slice(words[(s >> 60) as usize % words.len()].as_bytes());
            out.push(if (s >> 40).is_multiple_of(9) {
                b'\n'
            } else {
                b' '
            });
        }
        out.truncate(len);
        out
    }

    fn shared(a: &Sketch, b: &Sketch) -> usize {
        a.iter().zip(b).filter(|(x, y)| x == y && **x != 0).count()
    }

    #[test]
    fn a_small_edit_keeps_most_super_features_and_other_content_shares_none() {
        let a = text(1, 64 << 10);
        let mut edited = a.clone();
        edited[20_000..20_010].copy_from_slice(b"0123456789");
        let mut inserted = a.clone();
        inserted.splice(40_000..40_000, b"a few new words ".iter().copied());
        let other = text(2, 64 << 10);
        let sa = sketch(&a);
        assert_eq!(sketch(&a), sa, "deterministic");
        assert!(
            shared(&sa, &sketch(&edited)) >= SUPER_FEATURES - 2,
            "an edit in one stretch"
        );
        assert!(shared(&sa, &sketch(&inserted)) >= 1, "an insertion");
        assert_eq!(shared(&sa, &sketch(&other)), 0, "unrelated content");
        assert_eq!(sketch(&a[..100]), [0; SUPER_FEATURES], "too small");
    }

    #[test]
    fn sketches_round_trip_and_a_wrong_length_is_refused() {
        let s = vec![sketch(&text(3, 4096)), [0; SUPER_FEATURES]];
        let bytes = encode(&s);
        assert_eq!(decode(&bytes, 2), Some(s));
        assert_eq!(decode(&bytes, 3), None);
        assert_eq!(decode(&bytes[1..], 2), None);
    }
}
