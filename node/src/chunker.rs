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

/// Cuts the contents stream of a split tar ([`crate::tarsplit`]) along its files, which the splitter reports
/// into `files` before their bytes arrive.
///
/// A file of at least `min / 4` bytes starts a chunk of its own: one chunk up to `max`, cut by FastCDC beyond.
/// A run of smaller files that reaches `min` bytes (documentation, package databases, locale files) is
/// grouped, cut after a file whose name hashes below a threshold that grows with the file's size, so groups
/// average about `avg / 2` (at least `min / 2` unless the run ends, at most `max`); a shorter run (the few
/// small files of a chart or a package) is cut file by file. A changed or inserted small file changes its own
/// group; every other boundary stays where it was. The parameters are the store's, so every node of a site
/// cuts the same contents the same way.
pub struct ContentCutter {
    params: Chunking,
    files: std::rc::Rc<std::cell::RefCell<std::collections::VecDeque<crate::tarsplit::File>>>,
    /// Contents offset of the first byte of the next call's data.
    base: u64,
    /// Inside a file that has chunks of its own: where it ends, and whether FastCDC cuts it.
    in_file: Option<(u64, bool)>,
    /// In a run of small files: whether it is long enough to group (None until known).
    long_run: Option<bool>,
}

impl ContentCutter {
    pub fn new(
        params: Chunking,
        files: std::rc::Rc<std::cell::RefCell<std::collections::VecDeque<crate::tarsplit::File>>>,
    ) -> Self {
        ContentCutter {
            params,
            files,
            base: 0,
            in_file: None,
            long_run: None,
        }
    }
}

impl Cutter for ContentCutter {
    fn cut(&mut self, data: &[u8], at_end: bool) -> Vec<Range<usize>> {
        let p = self.params;
        let (min, max) = (p.min as u64, p.max as u64);
        let tiny = min / 4;
        let (gmin, gavg) = (min / 2, (p.avg as u64 / 2).max(min / 2 + 1));
        let len = data.len() as u64;
        let files = self.files.clone();
        let files = files.borrow();
        let mut out: Vec<Range<usize>> = Vec::new();
        // `group` and `at` are offsets in `data`.
        let (mut group, mut at) = (0u64, 0u64);
        let finish = |out: &mut Vec<Range<usize>>, group: u64| {
            if len > group {
                out.push(group as usize..len as usize);
            }
        };
        loop {
            if let Some((end, cdc)) = self.in_file {
                let end = end - self.base;
                if !cdc {
                    if end > len && !at_end {
                        break;
                    }
                    let end = end.min(len);
                    if end > at {
                        out.push(at as usize..end as usize);
                    }
                    at = end;
                    group = at;
                    self.in_file = None;
                    continue;
                }
                let whole = end <= len;
                let stop = end.min(len);
                let cuts = cut(&data[at as usize..stop as usize], &p, whole || at_end);
                out.extend(
                    cuts.into_iter()
                        .map(|r| r.start + at as usize..r.end + at as usize),
                );
                if !whole && !at_end {
                    break;
                }
                at = stop;
                group = at;
                self.in_file = None;
                continue;
            }
            if at == len {
                if at_end {
                    finish(&mut out, group);
                }
                break;
            }
            let i = files.partition_point(|f| f.at < self.base + at);
            let Some(&f) = files.get(i).filter(|f| f.at == self.base + at) else {
                // Bytes no file claims (never, for a split's contents): FastCDC from the group's start.
                let cuts = cut(&data[group as usize..], &p, at_end);
                out.extend(
                    cuts.into_iter()
                        .map(|r| r.start + group as usize..r.end + group as usize),
                );
                break;
            };
            if f.len >= tiny {
                if at > group {
                    out.push(group as usize..at as usize);
                }
                group = at;
                // Saturating: a file may claim nearly 2^64 bytes (its stream ends long before).
                self.in_file = Some((f.at.saturating_add(f.len), f.len > max));
                self.long_run = None;
                continue;
            }
            if self.long_run.is_none() {
                // A run of small files starts here: is it long enough to group?
                let mut total = 0;
                let mut j = i;
                let decided = loop {
                    match files.get(j) {
                        Some(g) if g.at == f.at + total && g.len < tiny => {
                            total += g.len;
                            if total >= min {
                                break Some(true);
                            }
                            j += 1;
                        }
                        Some(_) => break Some(false),
                        // The run's end is not known yet.
                        None if at_end => break Some(false),
                        None => break None,
                    }
                };
                match decided {
                    Some(d) => self.long_run = Some(d),
                    None => {
                        if at > group {
                            out.push(group as usize..at as usize);
                        }
                        break;
                    }
                }
            }
            if self.long_run == Some(false) {
                if at > group {
                    out.push(group as usize..at as usize);
                }
                group = at;
                if at + f.len > len {
                    if at_end {
                        finish(&mut out, group);
                    }
                    break;
                }
                at += f.len;
                out.push(group as usize..at as usize);
                group = at;
                continue;
            }
            if at + f.len - group > max && at > group {
                out.push(group as usize..at as usize);
                group = at;
            }
            if at + f.len > len {
                if at_end {
                    finish(&mut out, group);
                }
                break;
            }
            at += f.len;
            // Cut with a chance of (file's size) / (gavg − gmin) once past gmin: groups average gavg.
            let chance = (f.len as u128) << 64;
            if at - group >= gmin && (f.name as u128) * ((gavg - gmin) as u128) < chance {
                out.push(group as usize..at as usize);
                group = at;
            }
        }
        let taken = out.last().map_or(0, |r| r.end as u64);
        self.base += taken;
        drop(files);
        let base = self.base;
        let mut files = self.files.borrow_mut();
        while files
            .front()
            .is_some_and(|f| f.at.saturating_add(f.len) <= base)
        {
            files.pop_front();
        }
        out
    }
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
        ferry_formats::testdata::random(
            n,
            0x9e3779b97f4a7c15 ^ seed.wrapping_mul(0x2545f4914f6cdd1d),
        )
    }

    /// Split `data` and cut its contents the way ingest does: buffer by buffer (sizes from `steps`, at least
    /// `max` past the carried bytes), the file marks arriving no sooner than the splitter has seen their header.
    /// The contents stream and its cuts.
    fn split_and_cut(
        data: &[u8],
        params: &Chunking,
        steps: &[usize],
    ) -> (Vec<u8>, Vec<Range<usize>>) {
        use crate::tarsplit::{File, Splitter, Streams};
        #[derive(Default)]
        struct Out {
            c: Vec<u8>,
            files: Vec<File>,
        }
        impl Streams for Out {
            fn headers(&mut self, _: &[u8]) -> std::io::Result<()> {
                Ok(())
            }
            fn contents(&mut self, b: &[u8]) -> std::io::Result<()> {
                self.c.extend_from_slice(b);
                Ok(())
            }
            fn file(&mut self, f: File) -> std::io::Result<()> {
                self.files.push(f);
                Ok(())
            }
        }
        let mut s = Splitter::new();
        let mut o = Out::default();
        s.push(data, &mut o).unwrap();
        s.finish(&mut o).unwrap();
        let queue = std::rc::Rc::new(std::cell::RefCell::new(std::collections::VecDeque::new()));
        let mut cutter = ContentCutter::new(*params, queue.clone());
        let mut marks = o.files.iter().copied().peekable();
        let mut out = Vec::new();
        let (mut from, mut i) = (0, 0);
        loop {
            let step = steps[i % steps.len()].max(params.max as usize + 1);
            i += 1;
            let end = (from + step).min(o.c.len());
            while let Some(f) = marks.next_if(|f| (f.at as usize) < end) {
                queue.borrow_mut().push_back(f);
            }
            let at_end = end == o.c.len();
            let cuts = cutter.cut(&o.c[from..end], at_end);
            let taken = cuts.last().map_or(0, |c| c.end);
            out.extend(cuts.into_iter().map(|r| r.start + from..r.end + from));
            from += taken;
            if at_end {
                assert_eq!(from, o.c.len(), "everything is cut at the end");
                return (o.c, out);
            }
        }
    }

    /// A tar of `n` small files (sizes and names from `seed`) with a larger file every `big_every`.
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

    /// Sizes in proportion to small files of a few hundred bytes, as 16/64/256 KiB are to a rootfs.
    fn medium() -> Chunking {
        Chunking {
            min: 4096,
            avg: 16384,
            max: 65536,
            ..Chunking::default()
        }
    }

    fn chunk_set(data: &[u8], params: &Chunking) -> std::collections::HashSet<Vec<u8>> {
        let (c, cuts) = split_and_cut(data, params, &[1 << 20]);
        cuts.into_iter().map(|r| c[r].to_vec()).collect()
    }

    #[test]
    fn files_start_chunks_small_ones_are_grouped() {
        let params = small();
        let big = pseudo_random(20_000, 1);
        let data = sample_tar(1_700_000_000, "pkg-1.0", &big);
        let (c, cuts) = split_and_cut(&data, &params, &[1 << 20]);
        assert_eq!(cuts.first().unwrap().start, 0);
        assert_eq!(cuts.last().unwrap().end, c.len());
        assert!(cuts.windows(2).all(|w| w[0].end == w[1].start));
        assert!(cuts.iter().all(|r| r.len() <= params.max as usize));
        let starts: Vec<&[u8]> = cuts
            .iter()
            .map(|r| &c[r.start..r.end.min(r.start + 10)])
            .collect();
        // The big file is cut by FastCDC from its start; the 3000-byte file is one chunk.
        assert!(starts.contains(&&big[..10]));
        assert!(cuts
            .iter()
            .any(|r| c[r.clone()].starts_with(&[7u8; 10]) && r.len() == 3072));
        // The tiny files share a chunk.
        assert!(!starts.contains(&&b"last"[..4]) || !starts.contains(&&b"hello, tar"[..]));
    }

    #[test]
    fn groups_average_the_configured_size() {
        // Every file (under 1500 bytes) below min / 4.
        let params = Chunking {
            min: 8192,
            avg: 32768,
            max: 131072,
            ..Chunking::default()
        };
        let data = many_files(6000, 2, 0, 1);
        let (c, cuts) = split_and_cut(&data, &params, &[1 << 20]);
        let avg = c.len() / cuts.len();
        let want = params.avg as usize / 2;
        assert!(
            avg >= want * 3 / 4 && avg <= want * 3 / 2,
            "average {avg} for {want}"
        );
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
        let (sa, sb) = (chunk_set(&a, &params), chunk_set(&b, &params));
        let new: usize = sb.iter().filter(|c| !sa.contains(*c)).map(Vec::len).sum();
        // The group holding the new file changes (and at most its neighbour, through `max`).
        assert!(new <= 2 * params.max as usize, "{new} new bytes");
    }

    #[test]
    fn new_headers_leave_every_content_chunk_shared() {
        for params in [small(), medium()] {
            let a = many_files(800, 4, 9, 1_700_000_000);
            let b = many_files(800, 4, 9, 1_800_000_000);
            assert!(a != b);
            assert_eq!(chunk_set(&a, &params), chunk_set(&b, &params));
        }
    }

    #[test]
    fn a_file_claiming_nearly_2_64_bytes_is_cut() {
        // Found with the `tarsplit` fuzz target (from an input written for it): the end of such a file, its start
        // plus its length, overflowed.
        let mut data = crate::tarsplit::raw_header("a", 600).to_vec();
        data.extend_from_slice(&[b'a'; 1024]);
        data.extend_from_slice(&crate::tarsplit::raw_header("b", u64::MAX - 600));
        data.extend_from_slice(&pseudo_random(20_000, 3));
        let (c, cuts) = split_and_cut(&data, &small(), &[5000]);
        assert_eq!(c.len(), 1024 + 20_000);
        let mut at = 0;
        for r in &cuts {
            assert!(r.start == at && r.len() <= small().max as usize, "{r:?}");
            at = r.end;
        }
        assert_eq!(at, c.len());
    }

    #[test]
    fn buffer_sizes_do_not_change_the_cuts() {
        for params in [small(), medium()] {
            let data = many_files(700, 5, 11, 1);
            let whole = split_and_cut(&data, &params, &[1 << 30]).1;
            for steps in [&[1usize][..], &[5000, 70_000, 3], &[65_537]] {
                assert_eq!(split_and_cut(&data, &params, steps).1, whole);
            }
        }
    }

    /// Chunk sizes of real tar files split as ingest splits them: `FERRY_TAR_FILES=a.tar:b.tar cargo test
    /// --release -p ferry-node --lib chunker::tests::real_tars -- --ignored --nocapture` (the store's default
    /// 16/64/256 KiB; headers cut by FastCDC).
    /// With `FERRY_TAR_PAIR=old.tar:new.tar`, the bytes of the new one's chunks the old one lacks, by stream.
    #[test]
    #[ignore]
    fn real_tar_pair() {
        let Ok(pair) = std::env::var("FERRY_TAR_PAIR") else {
            eprintln!("FERRY_TAR_PAIR is not set");
            return;
        };
        let (old, new) = pair.split_once(':').unwrap();
        let params = Chunking::default();
        let streams = |path: &str| {
            let data = std::fs::read(path).unwrap();
            let (c, cuts) = split_and_cut(&data, &params, &[8 << 20]);
            let mut s = crate::tarsplit::Splitter::new();
            struct H(Vec<u8>);
            impl crate::tarsplit::Streams for H {
                fn headers(&mut self, b: &[u8]) -> std::io::Result<()> {
                    self.0.extend_from_slice(b);
                    Ok(())
                }
                fn contents(&mut self, _: &[u8]) -> std::io::Result<()> {
                    Ok(())
                }
                fn file(&mut self, _: crate::tarsplit::File) -> std::io::Result<()> {
                    Ok(())
                }
            }
            let mut h = H(Vec::new());
            s.push(&data, &mut h).unwrap();
            s.finish(&mut h).unwrap();
            let hc: Vec<Vec<u8>> = cut(&h.0, &params, true)
                .into_iter()
                .map(|r| h.0[r].to_vec())
                .collect();
            let cc: Vec<Vec<u8>> = cuts.into_iter().map(|r| c[r].to_vec()).collect();
            (hc, cc)
        };
        let (oh, oc) = streams(old);
        let (nh, nc) = streams(new);
        let report = |what: &str, o: &[Vec<u8>], n: &[Vec<u8>]| {
            let have: std::collections::HashSet<&Vec<u8>> = o.iter().collect();
            let fresh: Vec<&Vec<u8>> = n.iter().filter(|c| !have.contains(c)).collect();
            let bytes: usize = fresh.iter().map(|c| c.len()).sum();
            let z: usize = fresh
                .iter()
                .map(|c| zstd::bulk::compress(c, 3).unwrap().len())
                .sum();
            eprintln!(
                "  {what}: {} chunks, {} new ({bytes} bytes, {z} after zstd -3)",
                n.len(),
                fresh.len()
            );
        };
        eprintln!("{old} -> {new}");
        report("headers", &oh, &nh);
        report("contents", &oc, &nc);
    }

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
            let (c, cuts) = split_and_cut(&data, &params, &[8 << 20]);
            let h = data.len() - c.len();
            let hcuts = (h as u64).div_ceil(params.avg as u64) as usize;
            let n = cuts.len() + hcuts;
            eprintln!(
                "{path}: {} bytes ({h} of headers), about {n} chunks, average {} bytes; {} content chunks \
                 under 4 KiB",
                data.len(),
                data.len() / n.max(1),
                cuts.iter().filter(|r| r.len() < 4096).count()
            );
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
