//! Deterministic test content, for this crate's tests and the node's: bytes that stand in for nothing real,
//! where a test needs many sizes and seeds rather than a corpus.

/// Deterministic pseudo-random bytes.
pub fn random(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Text-like bytes: words from a small vocabulary, so matches of every length and distance occur.
pub fn text(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "ferry",
        "chunk",
        "the",
        "a",
        "gzip",
        "deflate",
        "content",
        "addressed",
        "air",
        "gap",
        "cloud",
        "layer",
        "of",
        "and",
        "registry",
        "mirror",
        "\n",
        "0123456789",
        "release",
        "bundle",
        "site",
        "seed",
    ];
    let r = random(n, seed);
    let mut out = Vec::with_capacity(n + 16);
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(WORDS[r[i % n] as usize % WORDS.len()].as_bytes());
        out.push(b' ');
        i += 1;
    }
    out.truncate(n);
    out
}
