//! OCI and Docker manifests and indexes, as the registry takes them pushed (checked before anything is looked
//! up) and as `ferry add` walks them from a layout or a registry, and an OCI layout's `index.json` with the
//! image names its annotations give: any bytes are refused or read, without panicking; a pushed manifest
//! accepted has an accepted media type, and an image manifest names at least its config.
//!
//! Input: a byte choosing the `Content-Type` it is pushed with (and the media type its descriptor gave when
//! pulled), then the JSON.
#![no_main]

use ferry_node::ingest::image::media;
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 6] = [
    "",
    media::OCI_MANIFEST,
    media::OCI_INDEX,
    media::DOCKER_MANIFEST,
    media::DOCKER_LIST,
    "application/json; charset=utf-8",
];

fuzz_target!(|data: &[u8]| {
    let Some((&t, body)) = data.split_first() else {
        return;
    };
    let t = TYPES[usize::from(t) % TYPES.len()];
    let sent = (!t.is_empty()).then_some(t.as_bytes());
    if let Ok((media_type, named, _)) = ferry_node::fuzz::pushed_manifest(sent, body) {
        assert!(
            media::MANIFESTS.contains(&media_type.as_str()),
            "accepted as {media_type}"
        );
        let index = media_type == media::OCI_INDEX || media_type == media::DOCKER_LIST;
        assert!(
            index || !named.is_empty(),
            "an image manifest accepted without its config"
        );
    }
    let _ = ferry_node::fuzz::pulled_manifest(body, t);
    let _ = ferry_node::fuzz::layout_index(body, "release");
});
