use super::format::{put_varint, Cursor, FORMAT_VERSION, TAG_END, TAG_MEMBER};
use super::*;
pub(crate) use crate::testdata::{random, text};
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use proptest::prelude::*;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Decompose `gz`, recompose it, insist on the same bytes; the raw bytes and the re-creation data.
pub(crate) fn round_trip(gz: &[u8]) -> (Vec<u8>, Recreation) {
    let mut raw = Vec::new();
    let re = decompose(gz, &mut raw).expect("decompose");
    let mut back = Vec::new();
    let n = recompose(&raw[..], &re, &mut back).expect("recompose");
    assert_eq!(n, back.len() as u64);
    assert!(
        back == gz,
        "recomposed {} bytes differ from the {} original ones",
        back.len(),
        gz.len()
    );
    (raw, re)
}

pub(crate) fn flate2_gz(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub(crate) fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let mut mixed = text(50_000, 3);
    mixed.extend(random(30_000, 4));
    mixed.extend(vec![0u8; 70_000]);
    mixed.extend(text(50_000, 5));
    vec![
        ("empty", Vec::new()),
        ("one byte", vec![b'x']),
        ("text", text(300_000, 1)),
        ("random", random(150_000, 2)),
        ("zeros", vec![0; 400_000]),
        ("mixed", mixed),
    ]
}

#[test]
fn flate2_every_level_round_trips() {
    for (name, data) in samples() {
        for level in 0..=9 {
            let gz = flate2_gz(&data, level);
            let (raw, _) = round_trip(&gz);
            assert!(raw == data, "{name} level {level}: raw bytes differ");
        }
    }
}

#[test]
fn inflates_like_flate2() {
    let data = text(1 << 20, 9);
    let gz = flate2_gz(&data, 6);
    let mut ours = Vec::new();
    decompose(&gz[..], &mut ours).unwrap();
    let mut theirs = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut theirs)
        .unwrap();
    assert!(ours == theirs);
}

#[test]
fn stored_only_stream() {
    let data = random(200_000, 7);
    let gz = flate2_gz(&data, 0);
    let (raw, re) = round_trip(&gz);
    assert_eq!(raw, data);
    // Stored blocks leave no tokens.
    assert!(re.tokens.is_empty());
}

#[test]
fn empty_or_foreign_input_is_an_error() {
    assert!(matches!(
        decompose(&b""[..], Vec::new()),
        Err(DeflateError::Truncated { offset: 0, .. })
    ));
    assert!(matches!(
        decompose(&b"hello, world"[..], Vec::new()),
        Err(DeflateError::Malformed { .. })
    ));
    let mut not_deflate = flate2_gz(b"x", 6);
    not_deflate[2] = 7;
    assert!(matches!(
        decompose(&not_deflate[..], Vec::new()),
        Err(DeflateError::Malformed { .. })
    ));
}

#[test]
fn multiple_members() {
    let a = text(100_000, 11);
    let b = random(20_000, 12);
    let mut gz = flate2_gz(&a, 9);
    gz.extend(flate2_gz(b"", 6));
    gz.extend(flate2_gz(&b, 1));
    gz.extend(flate2_gz(&a, 0));
    let (raw, _) = round_trip(&gz);
    assert_eq!(raw, [&a[..], &b[..], &a[..]].concat());
}

#[test]
fn tokens_do_not_depend_on_position() {
    // The same content compressed the same way, as the 1st and 3rd member: apart from literal runs merging at
    // the members' edges, its token bytes appear twice, unchanged.
    let a = text(50_000, 23);
    let b = random(10_000, 24);
    let ta = round_trip(&flate2_gz(&a, 6)).1.tokens;
    let mut gz = flate2_gz(&a, 6);
    gz.extend(flate2_gz(&b, 6));
    gz.extend(flate2_gz(&a, 6));
    let t = round_trip(&gz).1.tokens;
    // Without its first item (whose run may grow) and its final run (which may merge into the next member's).
    let mut c = Cursor::new(&ta);
    let (mut first_end, mut last_match_end) = (None, 0);
    while !c.at_end() {
        if c.item().unwrap().1.is_some() {
            last_match_end = c.position();
            first_end.get_or_insert(c.position());
        }
    }
    let core = &ta[first_end.unwrap()..last_match_end];
    assert!(core.len() > 1000);
    let found: Vec<usize> = t
        .windows(core.len())
        .enumerate()
        .filter(|(_, w)| *w == core)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn trailing_bytes_are_kept() {
    let gz = flate2_gz(&text(5000, 13), 6);
    for tail in [
        &[0u8; 1000][..],
        b"garbage after the member",
        &[0x1f],
        &[0x1f, 0x00, 0x8b],
    ] {
        let mut f = gz.clone();
        f.extend_from_slice(tail);
        round_trip(&f);
    }
    // The gzip magic promises another member.
    let mut f = gz.clone();
    f.extend_from_slice(&[0x1f, 0x8b, 8]);
    assert!(matches!(
        decompose(&f[..], Vec::new()),
        Err(DeflateError::Truncated { member: 1, .. })
    ));
    let mut f = gz;
    f.extend(vec![0; MAX_TRAILING + 1]);
    assert!(matches!(
        decompose(&f[..], Vec::new()),
        Err(DeflateError::Malformed { .. })
    ));
}

#[test]
fn header_fields_are_kept() {
    let data = text(10_000, 14);
    let mut e = GzBuilder::new()
        .filename("layer.tar")
        .comment("a comment")
        .extra(vec![b'F', b'y', 3, 0, 1, 2, 3])
        .mtime(1_700_000_000)
        .operating_system(11)
        .write(Vec::new(), Compression::new(5));
    e.write_all(&data).unwrap();
    let gz = e.finish().unwrap();
    round_trip(&gz);
    // FHCRC (not checked, kept): set the flag and add two bytes after the header.
    let body = flate2_gz(&data, 5).len() - 18;
    let end = gz.len() - 8 - body;
    let mut f = gz[..end].to_vec();
    f[3] |= 2;
    f.extend_from_slice(&[0xab, 0xcd]);
    f.extend_from_slice(&gz[end..]);
    round_trip(&f);
}

#[test]
fn a_wrong_trailer_is_an_error() {
    let mut gz = flate2_gz(&text(1000, 15), 6);
    let n = gz.len();
    gz[n - 8] ^= 1;
    assert!(matches!(
        decompose(&gz[..], Vec::new()),
        Err(DeflateError::Trailer {
            field: "CRC-32",
            ..
        })
    ));
    gz[n - 8] ^= 1;
    gz[n - 1] ^= 1;
    assert!(matches!(
        decompose(&gz[..], Vec::new()),
        Err(DeflateError::Trailer { field: "ISIZE", .. })
    ));
}

/// Run a compressor over `input` if it is installed.
pub(crate) fn run_tool(tool: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {tool} ({e}): tools/ci-deps installs it"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{tool} {args:?} failed");
    out.stdout
}

#[test]
fn gnu_gzip_round_trips() {
    let mut data = text(600_000, 16);
    data.extend(random(100_000, 17));
    data.extend(text(300_000, 18));
    for args in [
        &["-c", "-1"][..],
        &["-c", "-6"],
        &["-c", "-9"],
        &["-c", "-n", "-6"],
    ] {
        let (raw, _) = round_trip(&run_tool("gzip", args, &data));
        assert!(raw == data, "gzip {args:?}");
    }
}

#[test]
fn pigz_round_trips() {
    let mut data = text(900_000, 19);
    data.extend(random(100_000, 20));
    // -11 is zopfli; -b 32 makes many independent 32 KiB blocks ending in empty stored blocks.
    for args in [
        &["-c", "-1"][..],
        &["-c", "-6"],
        &["-c", "-9"],
        &["-c", "-11"],
        &["-c", "-p", "2", "-b", "32"],
    ] {
        let (raw, _) = round_trip(&run_tool("pigz", args, &data));
        assert!(raw == data, "pigz {args:?}");
    }
}

#[test]
fn corrupt_inputs_error_or_round_trip() {
    let members = [
        flate2_gz(&text(3000, 21), 6),
        flate2_gz(b"abcabcabcabcabc, a fixed block", 9),
        flate2_gz(b"stored", 0),
    ];
    let small = members.concat();
    let ends = [members[0].len(), members[0].len() + members[1].len()];
    for i in 0..small.len() * 8 {
        let mut f = small.clone();
        f[i / 8] ^= 1 << (i % 8);
        let mut raw = Vec::new();
        if let Ok(re) = decompose(&f[..], &mut raw) {
            let mut back = Vec::new();
            recompose(&raw[..], &re, &mut back).unwrap();
            assert!(back == f, "bit {i} flipped");
        }
    }
    // Cut at a member's end, or one byte after (a lone 1f is a trailing byte), it is a shorter valid file.
    for n in (0..small.len()).filter(|&n| !ends.iter().any(|&e| n == e || n == e + 1)) {
        match decompose(&small[..n], Vec::new()) {
            Err(DeflateError::Truncated { offset, .. }) => assert!(offset <= n as u64),
            other => panic!("truncated to {n} bytes: {other:?}"),
        }
    }
}

#[test]
fn recompose_refuses_what_does_not_fit() {
    let data = text(20_000, 22);
    let gz = flate2_gz(&data, 6);
    let (raw, re) = round_trip(&gz);
    let rec = |raw: &[u8], re: &Recreation| recompose(raw, re, Vec::new());

    // Two different neighbours swapped: both bytes have codes, only the CRC-32 can tell.
    let mut changed = raw.clone();
    let i = (1000..).find(|&i| raw[i] != raw[i + 1]).unwrap();
    changed.swap(i, i + 1);
    assert!(matches!(
        rec(&changed, &re),
        Err(DeflateError::RawChanged { .. })
    ));
    assert!(matches!(
        rec(&raw[..raw.len() - 1], &re),
        Err(DeflateError::Recreation { .. })
    ));
    let longer = [&raw[..], b"x"].concat();
    assert!(matches!(
        rec(&longer, &re),
        Err(DeflateError::Recreation { .. })
    ));

    for n in 0..re.tokens.len() {
        let cut = Recreation {
            headers: re.headers.clone(),
            tokens: re.tokens[..n].to_vec(),
        };
        assert!(rec(&raw, &cut).is_err(), "tokens cut to {n}");
    }
    for n in 0..re.headers.len() {
        let cut = Recreation {
            headers: re.headers[..n].to_vec(),
            tokens: re.tokens.clone(),
        };
        assert!(rec(&raw, &cut).is_err(), "headers cut to {n}");
    }
    // Flipped bits anywhere: an error or some output, never a panic.
    for i in 0..re.headers.len() * 8 {
        let mut h = re.headers.clone();
        h[i / 8] ^= 1 << (i % 8);
        let _ = rec(
            &raw,
            &Recreation {
                headers: h,
                tokens: re.tokens.clone(),
            },
        );
    }
    for i in (0..re.tokens.len() * 8).step_by(7) {
        let mut t = re.tokens.clone();
        t[i / 8] ^= 1 << (i % 8);
        let _ = rec(
            &raw,
            &Recreation {
                headers: re.headers.clone(),
                tokens: t,
            },
        );
    }
}

/// Build re-creation data by hand: one member with an empty header and the given blocks.
fn hand_made(blocks: &[u8], end_pad: u8, raw: &[u8]) -> Recreation {
    let mut h = vec![FORMAT_VERSION, TAG_MEMBER];
    let header = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    put_varint(&mut h, header.len() as u64);
    h.extend_from_slice(&header);
    h.extend_from_slice(blocks);
    h.push(end_pad);
    h.extend_from_slice(&crc32fast::hash(raw).to_le_bytes());
    h.push(TAG_END);
    put_varint(&mut h, 0);
    Recreation {
        headers: h,
        tokens: Vec::new(),
    }
}

/// Recompose `re` over `raw`, then check decompose gives back the same re-creation data and raw bytes.
fn through_both(raw: &[u8], re: &Recreation) -> Vec<u8> {
    let mut gz = Vec::new();
    recompose(raw, re, &mut gz).unwrap();
    let mut raw2 = Vec::new();
    let re2 = decompose(&gz[..], &mut raw2).unwrap();
    assert_eq!(&re2, re);
    assert_eq!(raw2, raw);
    gz
}

#[test]
fn stored_padding_bits_are_kept() {
    let raw = b"stored bytes";
    // BFINAL, stored; five padding bits 10101; LEN.
    let mut blocks = vec![1, 0b10101];
    put_varint(&mut blocks, raw.len() as u64);
    let re = hand_made(&blocks, 0, raw);
    let gz = through_both(raw, &re);
    assert_eq!(gz[10], 1 | 0b10101 << 3);
    // A block that is not the last, then an empty final fixed block whose end leaves padding bits 0b11.
    let mut blocks = vec![0, 0];
    put_varint(&mut blocks, raw.len() as u64);
    blocks.extend_from_slice(&[3, 0, 0]);
    through_both(raw, &hand_made(&blocks, 0b11, raw));
}

#[test]
fn length_258_as_284_plus_31_is_kept() {
    let raw = vec![b'a'; 1 + 258 * 3];
    // One fixed final block: a literal, then three matches of 258 at distance 1; the second as 284 + 31.
    let mut blocks = vec![3];
    put_varint(&mut blocks, raw.len() as u64);
    blocks.extend_from_slice(&[1, 1]); // one quirk, ordinal 1
    let mut re = hand_made(&blocks, 0, &raw);
    // Run 1 then length 3 + 15 + 240 at distance 1; twice run 0 and the same match.
    re.tokens = vec![0x1f, 240, 0, 0, 0x0f, 240, 0, 0, 0x0f, 240, 0, 0];
    let gz = through_both(&raw, &re);
    // zlib's inflate (as miniz) reads it as 258 too.
    let mut theirs = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut theirs).unwrap();
    assert_eq!(theirs, raw);
}

/// A dynamic block whose literal/length code is incomplete (three codes of length 2) and whose distance code
/// is a single code of length 1, with literal 'a', end-of-block and length symbol 257 (3).
fn incomplete_block() -> Vec<u8> {
    let mut b = vec![5, 1, 0, 15];
    // Code-length code lengths in the permuted order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1 15.
    b.extend_from_slice(&[0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2, 0]);
    // 97 zeros, 'a' = 2, 158 zeros, EOB = 2, 257 = 2, distance 0 = 1.
    b.extend_from_slice(&[18, 86, 2, 18, 127, 18, 9, 2, 2, 1]);
    b
}

#[test]
fn incomplete_and_single_codes_are_kept() {
    let raw = b"aaaaaaa";
    let mut blocks = incomplete_block();
    put_varint(&mut blocks, raw.len() as u64);
    blocks.push(0);
    let mut re = hand_made(&blocks, 0, raw);
    // Run 1, length 3 at distance 1; run 0, the same match.
    re.tokens = vec![0x10, 0, 0, 0x00, 0, 0];
    through_both(raw, &re);
    // 'b' has no code: recompose refuses, and a stream that uses a code with no symbol does not decode.
    let raw_b = b"ab";
    let mut blocks = incomplete_block();
    put_varint(&mut blocks, 2);
    blocks.push(0);
    let mut re = hand_made(&blocks, 0, raw_b);
    re.tokens = vec![0x20];
    assert!(matches!(
        recompose(&raw_b[..], &re, Vec::new()),
        Err(DeflateError::Recreation { .. })
    ));
}

#[test]
fn a_code_with_no_symbol_is_malformed() {
    let raw = b"a";
    let mut blocks = incomplete_block();
    put_varint(&mut blocks, 1);
    blocks.push(0);
    let mut re = hand_made(&blocks, 0, raw);
    re.tokens = vec![0x10];
    let mut gz = Vec::new();
    recompose(&raw[..], &re, &mut gz).unwrap();
    // Literal/length codes: 'a' = 00, EOB = 01, 257 = 10; 11 is unassigned. The literal follows the block
    // header, the code-length code and seven code-length symbols (three with seven extra bits); make it 11.
    let header_bits = 3 + 14 + 19 * 3 + 7 * 2 + 3 * 7;
    let at = 10 * 8 + header_bits;
    gz[at / 8] |= 1 << (at % 8);
    gz[(at + 1) / 8] |= 1 << ((at + 1) % 8);
    match decompose(&gz[..], Vec::new()) {
        Err(DeflateError::Malformed { what, .. }) => assert!(what.contains("no symbol"), "{what}"),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut raw = Vec::new();
        if let Ok(re) = decompose(&data[..], &mut raw) {
            let mut back = Vec::new();
            recompose(&raw[..], &re, &mut back).unwrap();
            prop_assert_eq!(back, data);
        }
    }

    #[test]
    fn random_deflate_data_never_panics(body in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut data = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        data.extend(body);
        let mut raw = Vec::new();
        if let Ok(re) = decompose(&data[..], &mut raw) {
            let mut back = Vec::new();
            recompose(&raw[..], &re, &mut back).unwrap();
            prop_assert_eq!(back, data);
        }
    }

    #[test]
    fn damaged_streams_never_panic(
        seed in any::<u64>(),
        level in 0u32..10,
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
    ) {
        let mut data = flate2_gz(&text(2000, seed | 1), level);
        for (i, bit) in flips {
            let i = i.index(data.len());
            data[i] ^= 1 << bit;
        }
        let mut raw = Vec::new();
        if let Ok(re) = decompose(&data[..], &mut raw) {
            let mut back = Vec::new();
            recompose(&raw[..], &re, &mut back).unwrap();
            prop_assert_eq!(back, data);
        }
    }
}

/// Decompose and recompose real files, reporting the best speed of a few runs:
/// `FERRY_DEFLATE_FILES=a.gz:b.tgz cargo test --release -p ferry-node --lib deflate::tests::real_files --
/// --ignored --nocapture` (`FERRY_DEFLATE_RUNS` runs, default 3; `FERRY_DEFLATE_DUMP=DIR` also writes each
/// file's tokens and headers there, for studying them).
#[test]
#[ignore]
fn real_files() {
    let Ok(list) = std::env::var("FERRY_DEFLATE_FILES") else {
        eprintln!("FERRY_DEFLATE_FILES is not set");
        return;
    };
    let runs: usize = std::env::var("FERRY_DEFLATE_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let best = |f: &mut dyn FnMut()| {
        (0..runs.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    for path in list.split(':').filter(|p| !p.is_empty()) {
        let gz = std::fs::read(path).unwrap();
        let mut raw = Vec::with_capacity(gz.len() * 4);
        let mut re = Recreation::default();
        let dt = best(&mut || {
            raw.clear();
            re = decompose(&gz[..], &mut raw).unwrap_or_else(|e| panic!("{path}: {e}"));
        });
        let mut back = Vec::with_capacity(gz.len());
        let rt = best(&mut || {
            back.clear();
            recompose(&raw[..], &re, &mut back).unwrap_or_else(|e| panic!("{path}: {e}"));
        });
        assert!(back == gz, "{path}: recomposed bytes differ");
        let mut theirs = Vec::with_capacity(raw.len());
        let ft = best(&mut || {
            theirs.clear();
            std::io::Read::read_to_end(
                &mut flate2::read::MultiGzDecoder::new(&gz[..]),
                &mut theirs,
            )
            .unwrap();
        });
        assert!(theirs == raw, "{path}: flate2 inflates differently");
        if let Ok(dir) = std::env::var("FERRY_DEFLATE_DUMP") {
            let name = std::path::Path::new(path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            std::fs::write(format!("{dir}/{name}.tokens"), &re.tokens).unwrap();
            std::fs::write(format!("{dir}/{name}.headers"), &re.headers).unwrap();
        }
        let mb = raw.len() as f64 / 1e6;
        let ztok = zstd::bulk::compress(&re.tokens, 3).unwrap().len();
        eprintln!(
            "{path}: {:.1} MB gzip, {mb:.1} MB raw, identical; decompose {:.0} MB/s, recompose {:.0} MB/s, \
             flate2 inflate {:.0} MB/s (of raw); tokens {} B ({ztok} B zstd -3), headers {} B",
            gz.len() as f64 / 1e6,
            mb / dt,
            mb / rt,
            mb / ft,
            re.tokens.len(),
            re.headers.len(),
        );
    }
}
