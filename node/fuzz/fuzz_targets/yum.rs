//! yum/dnf repositories (rpm-md) as `ferry add yum:` checks them: `repodata/repomd.xml` and the primary
//! metadata. Any bytes are refused or read without panicking; every file read names its location.
//!
//! Input: a byte choosing repomd (even) or primary (odd), then the XML.
#![no_main]

use ferry_node::ingest::yum::{parse_primary, parse_repomd};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, xml)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        if let Ok(list) = parse_repomd(xml) {
            assert!(
                list.iter().all(|d| !d.href.is_empty()),
                "a <data> without its location"
            );
        }
    } else if let Ok(list) = parse_primary(xml) {
        assert!(
            list.iter().all(|p| !p.href.is_empty()),
            "a package without its location"
        );
    }
});
