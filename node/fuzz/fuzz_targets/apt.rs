//! apt repositories as `ferry add apt:` reads them: a suite's `Release` or clearsigned `InRelease`, and its
//! `Packages` and `Sources` indexes (plain, gzip, zstd, xz, lzma) with the pool files they name. Any bytes are
//! refused or read without panicking; every pool file read stays inside the repository.
//!
//! Input: a byte choosing what the rest is — a Release, or an index of some kind and compression.
#![no_main]

use ferry_node::ingest::apt::release::{parse_release, signed_text};
use libfuzzer_sys::fuzz_target;

const INDEXES: [(&str, bool); 7] = [
    ("main/binary-amd64/Packages", false),
    ("main/binary-amd64/Packages.gz", false),
    ("main/binary-amd64/Packages.xz", false),
    ("main/binary-amd64/Packages.zst", false),
    ("main/binary-amd64/Packages.lzma", false),
    ("main/source/Sources", true),
    ("main/source/Sources.gz", true),
];

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let kind = usize::from(kind) % (INDEXES.len() + 1);
    if kind == INDEXES.len() {
        if let Ok(text) = std::str::from_utf8(bytes) {
            if let Ok(text) = signed_text(text) {
                if let Ok(r) = parse_release(&text) {
                    for l in &r.sha256 {
                        assert!(!l.path.is_empty());
                    }
                }
            }
        }
        return;
    }
    let (path, sources) = INDEXES[kind];
    if let Ok(files) = ferry_node::fuzz::apt_index(path, bytes, sources) {
        for (f, ..) in files {
            assert!(
                ferry_protocol::validate_rel_path(&f).is_ok(),
                "pool file {f:?}"
            );
        }
    }
});
