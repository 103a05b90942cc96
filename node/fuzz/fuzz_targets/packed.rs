//! `tools/fuzz packed`: any input that starts like an `ar` archive, an rpm, an xz or zstd frame or a bzip2
//! stream either is refused (its layout, a member's headers, the trial, decoding or re-encoding) or comes back
//! exactly from its skeleton and its members re-encoded with the parameters found.
//! The `packed` tests of `ferry-formats` run the same check over damaged real files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferry_formats::packed::round_trip(data);
});
