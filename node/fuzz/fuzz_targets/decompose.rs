//! `cargo +nightly fuzz run decompose` (from `node/`): any input either fails to decompose with an error or
//! decomposes and recomposes to exactly itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut raw = Vec::new();
    if let Ok(re) = ferry_node::deflate::decompose(data, &mut raw) {
        let mut back = Vec::new();
        ferry_node::deflate::recompose(&raw[..], &re, &mut back).expect("recompose what decompose accepted");
        assert!(back == data, "recomposed bytes differ");
    }
});
