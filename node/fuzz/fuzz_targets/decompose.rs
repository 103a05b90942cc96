//! `tools/fuzz decompose`: any input either fails to decompose with an error or decomposes and recomposes to
//! exactly itself.
//!
//! Almost any change to deflate data changes the output, so its CRC-32 no longer matches; to reach the
//! re-encoder with such streams anyway, a wrong trailer field is set to what the data gives and the input tried
//! again (a few times, one field each).
#![no_main]

use ferry_formats::deflate::{decompose, recompose, DeflateError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut data = data.to_vec();
    for _ in 0..8 {
        let mut raw = Vec::new();
        match decompose(&data[..], &mut raw) {
            Ok(re) => {
                let mut back = Vec::new();
                recompose(&raw[..], &re, &mut back).expect("recompose what decompose accepted");
                assert!(back == data, "recomposed bytes differ");
                return;
            }
            Err(DeflateError::Trailer { offset, actual, .. }) => {
                let at = offset as usize;
                data[at..at + 4].copy_from_slice(&actual.to_le_bytes());
            }
            Err(_) => return,
        }
    }
});
