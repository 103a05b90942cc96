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

/// Tar blocks are this long.
const TAR_BLOCK: usize = 512;

/// Cut a whole tar stream with boundaries at its entries: each run of headers (with the pax and GNU long-name
/// records that belong to them, and the headers of entries without contents) is a chunk, and each file's
/// contents with their padding start a chunk of their own — cut with FastCDC when longer than `params.max`.
/// Headers change on every rebuild (mtimes, a renamed top folder) while contents mostly do not; kept apart,
/// the contents deduplicate. None when `data` does not start with a valid tar header. Where the tar ends (its
/// end-of-archive blocks) or stops making sense, the rest is cut with FastCDC.
pub fn cut_tar(data: &[u8], params: &Chunking) -> Option<Vec<Range<usize>>> {
    tar_header(data.get(..TAR_BLOCK)?)?;
    let mut out = Vec::new();
    let mut group = 0;
    let mut at = 0;
    let mut pax_size: Option<usize> = None;
    let rest = loop {
        let Some(h) = data.get(at..at + TAR_BLOCK) else {
            break group;
        };
        let Some((kind, size)) = tar_header(h) else {
            break group;
        };
        let body = at + TAR_BLOCK;
        let meta = matches!(kind, b'x' | b'g' | b'L' | b'K');
        let size = if meta {
            size
        } else {
            pax_size.take().unwrap_or(size)
        };
        let Some(end) = size
            .checked_next_multiple_of(TAR_BLOCK)
            .and_then(|n| body.checked_add(n))
            .filter(|&e| e <= data.len())
        else {
            break group;
        };
        if kind == b'x' {
            pax_size = pax_record(&data[body..body + size], b"size");
        }
        if meta || size == 0 {
            at = end;
            continue;
        }
        out.push(group..body);
        if end - body <= params.max as usize {
            out.push(body..end);
        } else {
            out.extend(
                cut(&data[body..end], params, true)
                    .into_iter()
                    .map(|r| r.start + body..r.end + body),
            );
        }
        group = end;
        at = end;
    };
    out.extend(
        cut(&data[rest..], params, true)
            .into_iter()
            .map(|r| r.start + rest..r.end + rest),
    );
    Some(out)
}

/// The type flag and size of a tar header block, or None if it is not one (bad checksum, all zeros).
fn tar_header(h: &[u8]) -> Option<(u8, usize)> {
    let stored = octal(&h[148..156])?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u64
            }
        })
        .sum();
    if sum != stored || h.iter().all(|&b| b == 0) {
        return None;
    }
    let size = if h[124] & 0x80 != 0 {
        // GNU base-256: big-endian in the remaining bits.
        h[125..136]
            .iter()
            .try_fold(0u64, |v, &b| v.checked_mul(256).map(|v| v + b as u64))?
    } else {
        octal(&h[124..136])?
    };
    Some((h[156], usize::try_from(size).ok()?))
}

/// An octal tar field: optional leading spaces, digits, then NUL or space padding.
fn octal(field: &[u8]) -> Option<u64> {
    let s = field.iter().skip_while(|&&b| b == b' ');
    let mut v: u64 = 0;
    let mut digits = 0;
    for &b in s {
        match b {
            b'0'..=b'7' => {
                v = v.checked_mul(8)?.checked_add((b - b'0') as u64)?;
                digits += 1;
            }
            0 | b' ' => break,
            _ => return None,
        }
    }
    (digits > 0).then_some(v)
}

/// The value of `key` in a pax extended header's records (`LEN key=value\n`), as a number.
fn pax_record(records: &[u8], key: &[u8]) -> Option<usize> {
    let mut rest = records;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        let record = rest.get(space + 1..len)?;
        if let Some(value) = record.strip_prefix(key).and_then(|r| r.strip_prefix(b"=")) {
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            return std::str::from_utf8(value).ok()?.parse().ok();
        }
        rest = &rest[len..];
    }
    None
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

    /// A tar of a directory, a long name, small files, an empty file and one file longer than `max`; every
    /// entry dated `mtime`, the top folder called `top`.
    fn sample_tar(mtime: u64, top: &str, big: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: String, data: &[u8], kind: tar::EntryType| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            b.append_data(&mut h, path, data).unwrap();
        };
        add(format!("{top}/"), b"", tar::EntryType::Directory);
        add(
            format!("{top}/a.txt"),
            b"hello, tar",
            tar::EntryType::Regular,
        );
        add(
            format!("{top}/{}", "long-".repeat(40)),
            &[7u8; 3000],
            tar::EntryType::Regular,
        );
        add(format!("{top}/empty"), b"", tar::EntryType::Regular);
        add(format!("{top}/big.bin"), big, tar::EntryType::Regular);
        add(format!("{top}/z.txt"), b"last", tar::EntryType::Regular);
        b.into_inner().unwrap()
    }

    fn pseudo_random(n: usize) -> Vec<u8> {
        crate::deflate::tests::random(n, 0x9e3779b97f4a7c15)
    }

    #[test]
    fn tar_contents_are_chunks_of_their_own() {
        let params = small();
        let big = pseudo_random(20_000);
        let data = sample_tar(1_700_000_000, "pkg-1.0", &big);
        let cuts = cut_tar(&data, &params).expect("a tar");
        // The chunks tile the stream.
        assert_eq!(cuts.first().unwrap().start, 0);
        assert_eq!(cuts.last().unwrap().end, data.len());
        assert!(cuts.windows(2).all(|w| w[0].end == w[1].start));
        // Each file's contents (with padding) begin a chunk; the big one is cut within `max`.
        let starts: Vec<&[u8]> = cuts
            .iter()
            .map(|r| &data[r.start..r.end.min(r.start + 10)])
            .collect();
        assert!(starts.contains(&&b"hello, tar"[..]));
        assert!(starts.contains(&&[7u8; 10][..]));
        assert!(starts.contains(&&big[..10]));
        assert!(cuts.iter().all(|r| r.len() <= params.max as usize));
        // The GNU long-name record stays with the headers: the chunk before the 3000-byte file has no 7s.
        let i = cuts
            .iter()
            .position(|r| data[r.start..].starts_with(&[7u8; 10]))
            .unwrap();
        let headers = &data[cuts[i - 1].clone()];
        assert!(!headers.contains(&7u8));
        assert!(headers.windows(40).any(|w| w == &b"long-".repeat(8)[..]));
        assert_eq!(data[cuts[i].clone()].len(), 3072);
    }

    #[test]
    fn new_headers_leave_contents_shared() {
        let params = small();
        let big = pseudo_random(20_000);
        let a = sample_tar(1_700_000_000, "pkg-1.0", &big);
        let b = sample_tar(1_800_000_000, "pkg-1.1", &big);
        let set = |d: &[u8]| -> std::collections::HashSet<Vec<u8>> {
            cut_tar(d, &params)
                .unwrap()
                .into_iter()
                .map(|r| d[r].to_vec())
                .collect()
        };
        let (sa, sb) = (set(&a), set(&b));
        let shared: usize = sb.iter().filter(|c| sa.contains(*c)).map(Vec::len).sum();
        let contents = 512 + 3072 + 20_480 + 512;
        assert!(shared >= contents, "only {shared} bytes shared");
        // Plain CDC with these sizes shares almost nothing: every header changed.
        let cdc = |d: &[u8]| -> std::collections::HashSet<Vec<u8>> {
            cut(d, &params, true)
                .into_iter()
                .map(|r| d[r].to_vec())
                .collect()
        };
        let (ca, cb) = (cdc(&a), cdc(&b));
        let cdc_shared: usize = cb.iter().filter(|c| ca.contains(*c)).map(Vec::len).sum();
        assert!(cdc_shared < shared, "{cdc_shared} vs {shared}");
    }

    #[test]
    fn not_a_tar_or_a_broken_one() {
        let params = small();
        assert!(cut_tar(b"", &params).is_none());
        assert!(cut_tar(&pseudo_random(5000), &params).is_none());
        // A tar cut short in a file's contents: the rest is cut by FastCDC, still tiling the stream.
        let data = sample_tar(1, "t", &pseudo_random(20_000));
        let short = &data[..data.len() / 2];
        let cuts = cut_tar(short, &params).unwrap();
        assert_eq!(cuts.last().unwrap().end, short.len());
        assert!(cuts.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn pax_size_applies_to_the_next_entry() {
        assert_eq!(
            pax_record(b"13 size=4096\n20 path=some/thing\n", b"size"),
            Some(4096)
        );
        assert_eq!(pax_record(b"20 path=some/thing\n", b"size"), None);
        assert_eq!(pax_record(b"99 size=1\n", b"size"), None);
        assert_eq!(octal(b"0000644 \0"), Some(0o644));
        assert_eq!(octal(b"   17\0\0"), Some(0o17));
        assert_eq!(octal(b"\0\0\0"), None);
        assert_eq!(octal(b"12x"), None);
    }

    proptest! {
        #[test]
        fn cut_tar_tiles_any_input(data in prop::collection::vec(any::<u8>(), 0..3000), head in any::<bool>()) {
            let mut data = data;
            if head {
                let mut t = sample_tar(5, "p", b"xyz");
                t.truncate(1024);
                t.extend(data);
                data = t;
            }
            if let Some(cuts) = cut_tar(&data, &small()) {
                prop_assert_eq!(cuts.first().map_or(0, |r| r.start), 0);
                prop_assert_eq!(cuts.last().map_or(0, |r| r.end), data.len());
                prop_assert!(cuts.windows(2).all(|w| w[0].end == w[1].start && w[0].start < w[0].end));
            }
        }

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
