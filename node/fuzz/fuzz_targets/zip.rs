//! `tools/fuzz zip`: any input either is refused (its layout, or its members' decoding or re-encoding) or
//! comes back exactly from its skeleton, member table and members' re-creation.
#![no_main]

use ferry_formats::deflate::stream::{decompose_in_memory, recompose, Options};
use ferry_formats::deflate::zip::{join, Layout};
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};

fuzz_target!(|data: &[u8]| {
    let mut f = tempfile::tempfile().expect("a temporary file");
    f.write_all(data).expect("writing the input");
    let Ok(layout) = Layout::read(&f, data.len() as u64) else {
        return;
    };
    let mut gzip = layout.gzip(&f);
    let d = decompose_in_memory(&mut gzip, &Options::default());
    let Ok((d, raw, rec)) = d else { return };
    if (d.reencoded, d.reencoded_len) != gzip.digest() {
        return;
    }
    let mut synthetic = Vec::new();
    recompose(&raw[..], &rec[..], &mut synthetic).expect("recompose what decompose accepted");
    let mut skeleton = Vec::new();
    layout
        .skeleton(&f)
        .read_to_end(&mut skeleton)
        .expect("reading the skeleton");
    let mut out = Vec::new();
    join(&layout.table(), &skeleton[..], &synthetic[..], &mut out).expect("join what was accepted");
    assert!(out == data, "the zip came back differently");
});
