//! A bundle segment's chunk records (`ferry_protocol::bundle::parse_records`), decompressed, against a table of
//! recipe parts: any bytes are refused or split into records that name parts the table lets a bundle carry
//! and lie, in order, inside the segment.
//!
//! Input: a byte for the number of parts (up to 64), one for the bases listed, one for the first part, then
//! three bytes per part (its kind in the low two bits of the first — held, sent, named, zeros — a length
//! above the record limit when its top bit is set, a u16 LE length), then the segment.
#![no_main]

use ferry_protocol::bundle::{parse_records, Record, MAX_RECORD};
use ferry_protocol::delta::Slot;
use ferry_protocol::ChunkId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [n, bases, first, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*n % 65);
    let Some((table, raw)) = rest.split_at_checked(3 * n) else {
        return;
    };
    let parts: Vec<Slot> = table
        .chunks(3)
        .enumerate()
        .map(|(i, p)| {
            let len = u32::from(u16::from_le_bytes([p[1], p[2]]))
                + if p[0] & 0x80 != 0 { MAX_RECORD } else { 0 };
            match p[0] & 3 {
                0 => Slot::Held,
                1 => Slot::Sent { len },
                2 => Slot::Named {
                    id: ChunkId::of(&i.to_le_bytes()),
                    len,
                },
                _ => Slot::Zero,
            }
        })
        .collect();
    let Ok(records) = parse_records(raw, u64::from(*first), &parts, usize::from(*bases % 4)) else {
        return;
    };
    let mut end = 0;
    for r in &records {
        let (chunks, bytes) = match r {
            Record::Chunk { chunk, bytes } => (std::slice::from_ref(chunk), bytes),
            Record::Delta { chunks, frame, .. } => (&chunks[..], frame),
        };
        assert!(
            bytes.start >= end && bytes.end <= raw.len(),
            "a record outside the segment"
        );
        end = bytes.end;
        for c in chunks {
            let slot = parts[c.part as usize];
            assert_eq!(
                slot.carried(),
                Some((c.id, c.len)),
                "a record carries a part it may not"
            );
        }
    }
});
