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

/// Cuts a stream buffer by buffer: each call gets the bytes from the end of the last cut on, and returns cuts
/// tiling a prefix of them; the rest is given again, with more, next time. At the end every byte is cut.
pub trait Cutter {
    fn cut(&mut self, data: &[u8], at_end: bool) -> Vec<Range<usize>>;
}

/// Plain FastCDC.
pub struct Cdc(pub Chunking);

impl Cutter for Cdc {
    fn cut(&mut self, data: &[u8], at_end: bool) -> Vec<Range<usize>> {
        cut(data, &self.0, at_end)
    }
}

/// Where a [`TarCutter`] stands at the start of the bytes it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TarAt {
    /// Before anything: whether the stream is a tar is not known yet.
    Start,
    /// At an entry's first header block (or the end-of-archive blocks).
    Entry,
    /// Inside a large file's contents, with this many bytes (padding included) to go: contents up to `max` are
    /// one chunk, longer ones are cut by FastCDC (`true`).
    Contents(u64, bool),
    /// Not a tar, or past its end: FastCDC.
    Plain,
}

/// Cuts a tar stream along its entries, in chunks the size the parameters ask for.
///
/// A file's contents of at least `min` bytes start a chunk of their own (one chunk up to `max`, cut by FastCDC
/// beyond), so a file whose contents did not change keeps its chunks whatever moved around it. Everything else — headers, pax and
/// long-name records, the contents of small files — is grouped: a group ends at an entry boundary chosen by
/// content, after an entry whose name hashes below a threshold that grows with the entry's size, so groups
/// average the configured size (`min` + about `avg − min`), and never passes `max`. A changed or inserted small
/// file changes its own group and leaves the other boundaries where they were. Bytes that are not a tar, and
/// what follows the end of the archive, are cut by FastCDC.
pub struct TarCutter {
    params: Chunking,
    at: TarAt,
}

impl TarCutter {
    pub fn new(params: Chunking) -> Self {
        TarCutter {
            params,
            at: TarAt::Start,
        }
    }
}

/// A hash of an entry's name (its long name or pax path when it has one), the same wherever the entry sits.
fn name_hash(header: &[u8], long: Option<&[u8]>) -> u64 {
    let mut h = blake3::Hasher::new();
    match long {
        Some(name) => h.update(name),
        None => h.update(&header[..100]).update(&header[345..500]),
    };
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap())
}

impl Cutter for TarCutter {
    fn cut(&mut self, data: &[u8], at_end: bool) -> Vec<Range<usize>> {
        let p = self.params;
        let (min, avg, max) = (p.min as usize, p.avg as usize, p.max as usize);
        let mut out: Vec<Range<usize>> = Vec::new();
        // The current group starts at `group`; `at` is the next byte to look at.
        let mut group = 0;
        let mut at = 0;
        if self.at == TarAt::Start {
            match data.get(..TAR_BLOCK) {
                Some(h) if tar_header(h).is_some() => self.at = TarAt::Entry,
                Some(_) => self.at = TarAt::Plain,
                None if at_end => self.at = TarAt::Plain,
                None => return out,
            }
        }
        // Meta records (pax, GNU long names) since the last entry: the size and name they give it.
        let mut pax_size: Option<usize> = None;
        let mut long_name: Option<Range<usize>> = None;
        loop {
            match self.at {
                TarAt::Start => unreachable!("decided above"),
                TarAt::Plain => {
                    out.extend(
                        cut(&data[group..], &p, at_end)
                            .into_iter()
                            .map(|r| r.start + group..r.end + group),
                    );
                    return out;
                }
                TarAt::Contents(left, false) => {
                    // Contents up to `max` are one chunk.
                    let end = at + left as usize;
                    if end > data.len() {
                        if at_end {
                            self.at = TarAt::Plain;
                            continue;
                        }
                        return out;
                    }
                    if end > at {
                        out.push(at..end);
                    }
                    at = end;
                    group = at;
                    self.at = TarAt::Entry;
                }
                TarAt::Contents(left, true) => {
                    let avail = (data.len() - at) as u64;
                    let whole = left <= avail;
                    let take = left.min(avail) as usize;
                    let cuts = cut(&data[at..at + take], &p, whole || at_end);
                    let end = cuts.last().map_or(at, |r| r.end + at);
                    out.extend(cuts.into_iter().map(|r| r.start + at..r.end + at));
                    if !whole && !at_end {
                        self.at = TarAt::Contents(left - (end - at) as u64, true);
                        return out;
                    }
                    self.at = if whole { TarAt::Entry } else { TarAt::Plain };
                    at += take;
                    group = at;
                    if !whole {
                        return out;
                    }
                }
                TarAt::Entry => {
                    let Some(h) = data.get(at..at + TAR_BLOCK) else {
                        if at_end {
                            self.at = TarAt::Plain;
                            continue;
                        }
                        return out;
                    };
                    let Some((kind, size)) = tar_header(h) else {
                        // The end of the archive (or something else): FastCDC from the group's start.
                        self.at = TarAt::Plain;
                        continue;
                    };
                    let meta = matches!(kind, b'x' | b'g' | b'L' | b'K');
                    let size = if meta {
                        size
                    } else {
                        pax_size.take().unwrap_or(size)
                    };
                    let body = at + TAR_BLOCK;
                    let Some(padded) = size.checked_next_multiple_of(TAR_BLOCK) else {
                        self.at = TarAt::Plain;
                        continue;
                    };
                    if !meta && size >= min {
                        // A large file: its header closes the group, its contents start a chunk.
                        long_name = None;
                        if body > data.len() {
                            if at_end {
                                self.at = TarAt::Plain;
                                continue;
                            }
                            return out;
                        }
                        out.push(group..body);
                        group = body;
                        at = body;
                        self.at = TarAt::Contents(padded as u64, padded > max);
                        continue;
                    }
                    let end = body.saturating_add(padded);
                    if end > data.len() {
                        if at_end {
                            self.at = TarAt::Plain;
                            continue;
                        }
                        return out;
                    }
                    if end - group > 4 * max {
                        // A run of meta records longer than any chunk: not a tar worth following.
                        self.at = TarAt::Plain;
                        continue;
                    }
                    if meta {
                        if kind == b'x' {
                            let records = &data[body..body + size];
                            pax_size = pax_record(records, b"size");
                            if let Some(r) = pax_value(records, b"path") {
                                long_name = Some(body + r.start..body + r.end);
                            }
                        } else if kind == b'L' {
                            long_name = Some(body..body + size);
                        }
                        at = end;
                        continue;
                    }
                    // A small entry joins the group, unless it would make it longer than `max`.
                    if end - group > max && at > group {
                        out.push(group..at);
                        group = at;
                    }
                    let name = name_hash(h, long_name.take().map(|r| &data[r]));
                    at = end;
                    let len = (at - group) as u64;
                    // Cut with a chance of (entry's size) / (avg − min) once past `min`: groups average `avg`.
                    let span = (avg.saturating_sub(min)).max(1) as u128;
                    let chance = ((end - (body - TAR_BLOCK)) as u128) << 64;
                    if len >= min as u64 && (name as u128) * span < chance {
                        out.push(group..at);
                        group = at;
                    }
                }
            }
        }
    }
}

/// Cut a whole tar stream with [`TarCutter`]; None when `data` does not start with a valid tar header.
pub fn cut_tar(data: &[u8], params: &Chunking) -> Option<Vec<Range<usize>>> {
    tar_header(data.get(..TAR_BLOCK)?)?;
    Some(TarCutter::new(*params).cut(data, true))
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
    let r = pax_value(records, key)?;
    std::str::from_utf8(&records[r]).ok()?.parse().ok()
}

/// Where the value of `key` lies in a pax extended header's records.
fn pax_value(records: &[u8], key: &[u8]) -> Option<Range<usize>> {
    let mut at = 0;
    while at < records.len() {
        let rest = &records[at..];
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        let record = rest.get(space + 1..len)?;
        if let Some(value) = record.strip_prefix(key).and_then(|r| r.strip_prefix(b"=")) {
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            let start = at + space + 1 + key.len() + 1;
            return Some(start..start + value.len());
        }
        at += len.max(1);
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

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        crate::deflate::tests::random(
            n,
            0x9e3779b97f4a7c15 ^ seed.wrapping_mul(0x2545f4914f6cdd1d),
        )
    }

    /// Cut `data` the way the ingest pipeline does: buffer by buffer (sizes from `steps`, at least `max` past
    /// the carried bytes), carrying what was not cut.
    fn cut_streaming(data: &[u8], params: &Chunking, steps: &[usize]) -> Vec<Range<usize>> {
        let mut cutter = TarCutter::new(*params);
        let mut out = Vec::new();
        let mut from = 0;
        let mut i = 0;
        loop {
            let step = steps[i % steps.len()].max(params.max as usize + 1);
            i += 1;
            let end = (from + step).min(data.len());
            let at_end = end == data.len();
            let cuts = cutter.cut(&data[from..end], at_end);
            let taken = cuts.last().map_or(0, |c| c.end);
            out.extend(cuts.into_iter().map(|r| r.start + from..r.end + from));
            from += taken;
            if at_end {
                assert_eq!(from, data.len(), "everything is cut at the end");
                return out;
            }
        }
    }

    /// A tar of `n` small files (sizes and names from `seed`) with a big file every `big_every`.
    fn many_files(n: usize, seed: u64, big_every: usize, mtime: u64) -> Vec<u8> {
        let r = pseudo_random(n * 4, seed);
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..n {
            let mut h = tar::Header::new_gnu();
            let size = if big_every > 0 && i % big_every == big_every - 1 {
                6000 + r[i] as usize * 40
            } else {
                (r[4 * i] as usize * 7 + r[4 * i + 1] as usize) % 1500
            };
            let data = pseudo_random(size, seed ^ i as u64);
            h.set_size(size as u64);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            b.append_data(
                &mut h,
                format!("usr/share/pkg-{}/file-{i}.txt", i % 17),
                &data[..],
            )
            .unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn large_contents_start_chunks_small_entries_are_grouped() {
        let params = small();
        let big = pseudo_random(20_000, 1);
        let data = sample_tar(1_700_000_000, "pkg-1.0", &big);
        let cuts = cut_tar(&data, &params).expect("a tar");
        assert_eq!(cuts.first().unwrap().start, 0);
        assert_eq!(cuts.last().unwrap().end, data.len());
        assert!(cuts.windows(2).all(|w| w[0].end == w[1].start));
        assert!(cuts.iter().all(|r| r.len() <= params.max as usize));
        // The big file's contents start a chunk; the 3000-byte file (above `min`) too.
        let starts: Vec<&[u8]> = cuts
            .iter()
            .map(|r| &data[r.start..r.end.min(r.start + 10)])
            .collect();
        assert!(starts.contains(&&big[..10]));
        assert!(starts.contains(&&[7u8; 10][..]));
        // The small file's contents do not: they are in a group with headers.
        assert!(!starts.contains(&&b"hello, tar"[..]));
    }

    /// Sizes in proportion to small files of a few hundred bytes, as 16/64/256 KiB are to a rootfs.
    fn medium() -> Chunking {
        Chunking {
            min: 4096,
            avg: 16384,
            max: 65536,
            ..Chunking::default()
        }
    }

    #[test]
    fn groups_average_the_configured_size_and_cut_at_entry_boundaries() {
        let params = medium();
        let data = many_files(6000, 2, 0, 1);
        let cuts = cut_tar(&data, &params).unwrap();
        let avg = data.len() / cuts.len();
        assert!(
            avg >= params.avg as usize * 3 / 4 && avg <= params.avg as usize * 3 / 2,
            "average {avg} for avg {}",
            params.avg
        );
        // Every cut but the end-of-archive ones is at an entry's header.
        for r in &cuts[1..cuts.len() - 2] {
            assert!(
                tar_header(&data[r.start..r.start + 512]).is_some(),
                "a cut at {}",
                r.start
            );
        }
        assert!(cuts.iter().all(|r| r.len() <= params.max as usize));
    }

    #[test]
    fn an_inserted_file_moves_no_other_boundary() {
        let params = medium();
        let a = many_files(2000, 3, 50, 1);
        // The same archive with one more small file in the middle.
        let mut b = tar::Builder::new(Vec::new());
        let mut ar = tar::Archive::new(&a[..]);
        for (i, e) in ar.entries().unwrap().enumerate() {
            let mut e = e.unwrap();
            let mut h = e.header().clone();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut body).unwrap();
            b.append_data(&mut h, e.path().unwrap(), &body[..]).unwrap();
            if i == 1000 {
                let mut h = tar::Header::new_gnu();
                h.set_size(700);
                h.set_mode(0o644);
                b.append_data(&mut h, "usr/share/new-file", &[5u8; 700][..])
                    .unwrap();
            }
        }
        let b = b.into_inner().unwrap();
        let set = |d: &[u8]| -> std::collections::HashSet<Vec<u8>> {
            cut_tar(d, &params)
                .unwrap()
                .into_iter()
                .map(|r| d[r].to_vec())
                .collect()
        };
        let (sa, sb) = (set(&a), set(&b));
        let new: usize = sb.iter().filter(|c| !sa.contains(*c)).map(Vec::len).sum();
        // The group holding the new file changes (and at most its neighbour, through `max`).
        assert!(new <= 3 * params.max as usize, "{new} new bytes");
    }

    #[test]
    fn new_headers_leave_large_contents_shared() {
        let params = small();
        let big = pseudo_random(20_000, 4);
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
        assert!(shared >= 20_480 + 3072, "only {shared} bytes shared");
    }

    #[test]
    fn not_a_tar_or_a_broken_one() {
        let params = small();
        assert!(cut_tar(b"", &params).is_none());
        assert!(cut_tar(&pseudo_random(5000, 5), &params).is_none());
        // A tar cut short in a file's contents: the rest is cut by FastCDC, still tiling the stream.
        let data = sample_tar(1, "t", &pseudo_random(20_000, 6));
        for n in [data.len() / 2, 700, 513, 1536, data.len() - 1] {
            let short = &data[..n];
            let cuts = cut_tar(short, &params).unwrap();
            assert_eq!(cuts.last().unwrap().end, short.len());
            assert!(cuts.windows(2).all(|w| w[0].end == w[1].start));
            assert_eq!(cuts, cut_streaming(short, &params, &[5000, 4097, 9000]));
        }
    }

    /// Chunk sizes of real tar files: `FERRY_TAR_FILES=a.tar:b.tar cargo test --release -p ferry-node --lib
    /// chunker::tests::real_tars -- --ignored --nocapture` (the store's default 16/64/256 KiB).
    #[test]
    #[ignore]
    fn real_tars() {
        let Ok(list) = std::env::var("FERRY_TAR_FILES") else {
            eprintln!("FERRY_TAR_FILES is not set");
            return;
        };
        let params = Chunking::default();
        for path in list.split(':').filter(|p| !p.is_empty()) {
            let data = std::fs::read(path).unwrap();
            let cuts = cut_streaming(&data, &params, &[8 << 20]);
            let small = cuts.iter().filter(|r| r.len() < 4096).count();
            let mid = cuts
                .iter()
                .filter(|r| r.len() >= 4096 && r.len() < 16384)
                .count();
            eprintln!(
                "{path}: {} bytes, {} chunks, average {} bytes; {small} under 4 KiB, {mid} of 4-16 KiB",
                data.len(),
                cuts.len(),
                data.len() / cuts.len().max(1)
            );
        }
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
        fn buffer_by_buffer_cuts_like_whole(seed in 0u64..1000, steps in prop::collection::vec(1usize..40_000, 1..6)) {
            let params = small();
            let data = many_files(300, seed, 7, seed);
            let whole = cut_tar(&data, &params).unwrap();
            prop_assert_eq!(cut_streaming(&data, &params, &steps), whole);
        }

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
