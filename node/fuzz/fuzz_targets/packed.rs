//! `cargo +nightly fuzz run packed` (from `node/`): any input that starts like an `ar` archive, an rpm, an xz
//! or zstd frame or a bzip2 stream either is refused (its layout, a member's headers, the trial, decoding or
//! re-encoding) or comes back exactly from its skeleton and its members re-encoded with the parameters found.
//! On stable, CI runs the same check over damaged real files (`ferry-formats`' `packed` tests).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferry_formats::packed::round_trip(data);
});
