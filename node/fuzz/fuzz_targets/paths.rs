//! Request paths from clients: `/v2/…` (the registry's routes; repository names, tags and digests checked as
//! the handlers check them) and `/repos/…` (decoded once, segment by segment, refusing anything that could
//! climb or split). Any path is routed or refused without panicking; a decoded `/repos/` path has no segment
//! that could leave its tree, and encoding its segments again decodes to the same.
#![no_main]

use ferry_node::mirror::repo::path;
use ferry_protocol::Sha256Digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((_, name, reference)) = ferry_node::fuzz::v2_route(raw) {
        assert!(!reference.contains('/'), "a reference with a '/'");
        if ferry_node::fuzz::valid_name(name) {
            assert!(!name
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".."));
        }
        let _ = ferry_node::fuzz::valid_tag(reference);
        if let Ok(d) = reference.parse::<Sha256Digest>() {
            assert_eq!(d.to_string().parse::<Sha256Digest>().unwrap(), d);
        }
    }
    if let Ok(p) = path::parse(raw) {
        for s in &p.segments {
            assert!(
                !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0']),
                "segment {s:?}"
            );
        }
        let again = path::encode_path(&p.segments.join("/"));
        let back = path::parse(&again).expect("an encoded path decodes");
        assert_eq!(back.segments, p.segments, "encoding a path changes it");
    }
});
