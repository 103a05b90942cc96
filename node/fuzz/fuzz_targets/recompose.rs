//! `tools/fuzz recompose`: re-creation data and raw bytes from anywhere never make recompose panic; whatever
//! it accepts, decompose reads back to the same raw bytes unless the verbatim parts (member headers, trailing
//! bytes) are not gzip.
//!
//! Input: u32 LE raw length, u32 LE headers length, then raw bytes, headers, tokens (lengths are cut to what
//! is there). Seeds made from real gzip files put the fuzzer where the format is valid.
#![no_main]

use ferry_formats::deflate::{decompose, recompose, DeflateError, Recreation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let raw_len = (u32::from_le_bytes(data[..4].try_into().unwrap()) as usize).min(data.len() - 8);
    let rest = &data[8 + raw_len..];
    let headers_len = (u32::from_le_bytes(data[4..8].try_into().unwrap()) as usize).min(rest.len());
    let raw = &data[8..8 + raw_len];
    let re = Recreation {
        headers: rest[..headers_len].to_vec(),
        tokens: rest[headers_len..].to_vec(),
    };
    let mut gz = Vec::new();
    if recompose(raw, &re, &mut gz).is_ok() {
        let mut raw2 = Vec::new();
        match decompose(&gz[..], &mut raw2) {
            Ok(_) => assert!(raw2 == raw, "recomposed gzip inflates to other bytes"),
            // Member headers and trailing bytes are copied verbatim and may not be gzip; read as gzip they
            // can throw the parse anywhere.
            Err(
                DeflateError::Malformed { .. }
                | DeflateError::Truncated { .. }
                | DeflateError::Trailer { .. },
            ) => {}
            Err(e) => panic!("recomposed gzip does not decompose: {e}"),
        }
    }
});
