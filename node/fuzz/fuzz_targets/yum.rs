//! yum/dnf repositories (rpm-md) as `ferry add yum:` checks them: `repodata/repomd.xml` and the primary
//! metadata, both as the whole-repository check reads it and as a partial mirror does (every package with its
//! dependencies and byte span, then the closure of the first package's name). Any bytes are refused or read
//! without panicking; every package found has its location and a span inside the input.
//!
//! Input: a byte choosing repomd (even) or primary (odd), then the XML.
#![no_main]

use ferry_node::ingest::yum::closure::{self, Options, Request, Universe};
use ferry_node::ingest::yum::{parse_primary, parse_repomd, partial};
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
        return;
    }
    if let Ok(list) = parse_primary(xml) {
        assert!(
            list.iter().all(|p| !p.href.is_empty()),
            "a package without its location"
        );
    }
    let Ok(pkgs) = partial::parse_primary(xml) else {
        return;
    };
    for p in &pkgs {
        assert!(
            !p.href.is_empty() && !p.name.is_empty(),
            "a package without its name or location"
        );
        let (a, b) = p.span;
        assert!(
            a < b && b <= xml.len(),
            "span {a}..{b} outside {} bytes",
            xml.len()
        );
        assert_eq!(xml[a], b'<', "a span that does not start an element");
    }
    let Some(first) = pkgs.first().map(|p| p.name.clone()) else {
        return;
    };
    let u = Universe::new(pkgs, Default::default());
    if let Ok(r) = Request::parse(&first) {
        let opts = Options {
            arch: "x86_64".into(),
            allow_missing: true,
            ..Options::default()
        };
        if let Ok(c) = closure::resolve(&u, &[r], &opts) {
            assert!(c.packages.iter().all(|(q, _)| *q < u.pkgs.len()));
        }
    }
});
