//! The data plane's streams (`ferry_node::net::wire`, format in `ferry_protocol::sync`), read as a node reads
//! them from a peer: any bytes are refused or read as frames and chunk records without panicking or
//! allocating past the limits, and what a node then does with an answer (a delta frame decoded against its
//! reference, stored chunks decompressed to the length asked, sketches and bitmaps read) does not panic.
//!
//! Input: a byte saying whose side is played — even, a node answering requests (frames of requests); odd, a
//! node reading answers, then chunk records (their bodies decompressed when the length is one a node could
//! have asked for) — then the stream.
#![no_main]

use ferry_node::net::wire::{decode_frame, frame_len, record_header};
use ferry_protocol::sync::{bit, SyncRequest, SyncResponse, RECORD_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

/// Largest chunk a node asks for here (a real node asks for chunks it knows, at most the store's `max`).
const MAX_ASKED: u32 = 1 << 20;

/// The next frame's body, or `None` when the stream ends or the frame is refused.
fn frame<'a>(stream: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (prefix, rest) = stream.split_first_chunk::<4>()?;
    let len = frame_len(*prefix).ok()?;
    let (body, rest) = rest.split_at_checked(len)?;
    *stream = rest;
    Some(body)
}

fn answer(r: SyncResponse) {
    match r {
        SyncResponse::Have(bits) => {
            let _ = (0..bits.len() * 8 + 8).filter(|&i| bit(&bits, i)).count();
        }
        SyncResponse::Delta { frame, check } => {
            let reference: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
            for len in [0, 100, 4096, 65536] {
                let _ = ferry_node::delta::decode(&reference, &frame, len, &check);
            }
        }
        SyncResponse::Sketches(list) => {
            for s in list.iter().flatten() {
                for parts in [0, 1, s.len() / 24] {
                    let _ = ferry_node::sketch::decode(s, parts);
                }
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&side, mut stream)) = data.split_first() else {
        return;
    };
    if side % 2 == 0 {
        while let Some(body) = frame(&mut stream) {
            let _ = decode_frame::<SyncRequest>(body);
        }
        return;
    }
    if let Some(body) = frame(&mut stream) {
        if let Ok(r) = decode_frame::<SyncResponse>(body) {
            answer(r);
        }
    }
    // Chunk records, as many as there are, each asked for with the length it claims.
    while let Some((h, rest)) = stream.split_first_chunk::<RECORD_HEADER_LEN>() {
        let asked = u32::from_le_bytes(h[32..36].try_into().unwrap()) % MAX_ASKED;
        let max = asked + asked / 64 + 1024;
        let Ok((header, stored)) = record_header(h, max) else {
            return;
        };
        let Some((body, rest)) = rest.split_at_checked(stored) else {
            return;
        };
        stream = rest;
        if header.stored_len.is_some() && header.raw_len == asked {
            if let Ok(raw) = ferry_node::store::packs::decompress(body, header.raw_len) {
                assert_eq!(
                    raw.len(),
                    asked as usize,
                    "a chunk decompressed to another length"
                );
            }
        }
    }
});
