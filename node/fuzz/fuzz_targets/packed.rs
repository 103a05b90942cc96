//! `cargo +nightly fuzz run packed` (from `node/`): any input that starts like an `ar` archive or an xz stream
//! either is refused (its layout, a member's headers, the trial, decoding or re-encoding) or comes back exactly
//! from its skeleton and its members re-encoded with the parameters found.
#![no_main]

use ferry_formats::packed::{join, Kind, Layout};
use ferry_formats::xz;
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};

fuzz_target!(|data: &[u8]| {
    let Some(kind) = Kind::of(data) else { return };
    let Ok(layout) = Layout::read(data, data.len() as u64, kind) else {
        return;
    };
    let mut raws = Vec::new();
    for m in &layout.members {
        let Ok(p) = xz::find(data, m.at, &m.info) else { return };
        let mut raw = Vec::new();
        let stream = &data[m.at as usize..(m.at + m.len) as usize];
        if xz::decode(stream, |b| {
            raw.extend_from_slice(b);
            Ok(())
        })
        .is_err()
        {
            return;
        }
        let mut cmp = xz::Comparing::new(stream);
        if xz::encode(&p, 1, &raw[..], &mut cmp).is_err() || !cmp.at_end().unwrap() {
            return;
        }
        raws.push((p, raw));
    }
    let mut skeleton = Vec::new();
    layout.skeleton(data).read_to_end(&mut skeleton).expect("reading the skeleton");
    let places: Vec<_> = layout.members.iter().map(|m| (m.at, m.len)).collect();
    let mut out = Vec::new();
    join(
        &places,
        &skeleton[..],
        |i, w: &mut dyn Write| xz::encode(&raws[i].0, 1, &raws[i].1[..], w).map(drop),
        &mut out,
    )
    .expect("join what was accepted");
    assert!(out == data, "the file came back differently");
});
