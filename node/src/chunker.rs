//! Content-defined chunking: FastCDC v2020 with the store's parameters.
//!
//! [`cut`] works on a buffer of a longer stream (the ingest pipeline's form); [`chunks`] cuts a whole reader and
//! is the reference that buffered cutting must agree with, boundary for boundary.

use crate::config::Chunking;
use std::io::Read;
use std::ops::Range;

/// Cut `data`, a piece of a stream that starts at a chunk boundary, into chunks. Unless `at_end`, the last chunk
/// is left out: it may have been cut only by the end of the buffer, so the caller carries those bytes into the
/// next buffer and cuts them again there.
pub fn cut(data: &[u8], params: &Chunking, at_end: bool) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> =
        fastcdc::v2020::FastCDC::new(data, params.min, params.avg, params.max)
            .map(|c| c.offset..c.offset + c.length)
            .collect();
    if !at_end {
        out.pop();
    }
    out
}

/// Cut `reader` into chunks; each item is the chunk's bytes.
pub fn chunks<R: Read>(
    reader: R,
    params: &Chunking,
) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    fastcdc::v2020::StreamCDC::new(reader, params.min, params.avg, params.max).map(|r| {
        r.map(|c| c.data).map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> Chunking {
        Chunking {
            min: 256,
            avg: 1024,
            max: 4096,
            ..Chunking::default()
        }
    }

    proptest! {
        #[test]
        fn chunks_reassemble_and_respect_bounds(data in prop::collection::vec(any::<u8>(), 0..40_000)) {
            let params = small();
            let pieces: Vec<Vec<u8>> = chunks(&data[..], &params).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(pieces.concat(), data.clone());
            for (i, p) in pieces.iter().enumerate() {
                prop_assert!(p.len() <= params.max as usize);
                if i + 1 < pieces.len() {
                    prop_assert!(p.len() >= params.min as usize);
                }
            }
        }

        #[test]
        fn an_insertion_leaves_later_chunks_alone(
            data in prop::collection::vec(any::<u8>(), 20_000..40_000), at in 0usize..1000, ins in prop::collection::vec(any::<u8>(), 1..64)
        ) {
            let params = small();
            let a: Vec<Vec<u8>> = chunks(&data[..], &params).collect::<Result<_, _>>().unwrap();
            let mut edited = data.clone();
            edited.splice(at..at, ins);
            let b: Vec<Vec<u8>> = chunks(&edited[..], &params).collect::<Result<_, _>>().unwrap();
            // Content-defined boundaries resynchronise shortly after the edit: almost every chunk survives.
            // (The cut points realign within a few chunks of the edit, so all but a few KiB are shared.)
            let shared: usize = b.iter().filter(|c| a.contains(c)).map(|c| c.len()).sum();
            prop_assert!(shared + 16 * 1024 >= data.len(), "only {} of {} bytes survived", shared, data.len());
        }
    }
}
