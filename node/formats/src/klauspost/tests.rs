//! The model against the real encoder: tools/fixtures/kzstd, built with Debian's Go and its
//! golang-github-klauspost-compress-dev (1.15.12), writes what containers/image writes; every output here must
//! be its bytes exactly.

use super::*;
use crate::packed::{Codec, Member, Params as PackedParams};
use crate::tests::{corpus, run_tool};
use std::path::Path;

/// tools/fixtures/kzstd built once per test run.
fn kzstd_tool() -> &'static Path {
    crate::tests::go_tool("kzstd", "golang-github-klauspost-compress-dev")
}

/// What Go's encoder writes for `input` with `args` (see tools/fixtures/kzstd).
fn go_zstd(args: &[&str], input: &[u8]) -> Vec<u8> {
    run_tool(kzstd_tool().to_str().unwrap(), args, input)
}

fn model(checksum: bool, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let n = encode(
        &Params {
            level: Level::Default,
            checksum,
        },
        input,
        &mut out,
    )
    .unwrap();
    assert_eq!(n, out.len() as u64);
    out
}

/// The model's bytes are Go's; where they differ first, if not.
fn assert_same(what: &str, ours: &[u8], go: &[u8]) {
    if ours != go {
        let at = ours
            .iter()
            .zip(go)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(go.len()));
        panic!(
            "{what}: {} bytes against Go's {}, first different at {at}",
            ours.len(),
            go.len()
        );
    }
}

/// Real content of every kind the encoder treats differently: text and binaries (compressed blocks, reused
/// and new tables), already compressed bytes (raw blocks), runs (RLE literals, long repeats), the sizes at the
/// edges of a block, and the single-block frames of content under 128 KiB.
#[test]
fn model_writes_what_go_writes() {
    let real = corpus(6 << 20);
    let gz = std::fs::read_dir("/usr/share/doc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("changelog.Debian.gz")).ok())
        .flatten()
        .take(1 << 20)
        .collect::<Vec<u8>>();
    let mut mixed = real[..1 << 20].to_vec();
    mixed.extend_from_slice(&gz);
    mixed.extend(std::iter::repeat_n(0u8, 300_000));
    mixed.extend_from_slice(&real[2 << 20..(2 << 20) + 700_000]);
    let cases: Vec<(&str, &[u8])> = vec![
        ("real content, 6 MiB", &real),
        ("text, binaries, gzip, zeros", &mixed),
        ("compressed already", &gz),
        ("one block exactly", &real[..BLOCK_SIZE]),
        ("two blocks exactly", &real[..2 * BLOCK_SIZE]),
        ("a block and a byte", &real[..BLOCK_SIZE + 1]),
        ("under a block", &real[..100_000]),
        ("a kilobyte", &real[..1024]),
        ("a kilobyte and a byte", &real[..1025]),
        ("300 bytes", &real[..300]),
        ("15 bytes", &real[..15]),
        ("a byte", &real[..1]),
        ("nothing", &[]),
    ];
    for (what, input) in cases {
        assert_same(what, &model(true, input), &go_zstd(&[], input));
    }
    assert_same(
        "without checksum",
        &model(false, &mixed),
        &go_zstd(&["-crc=false"], &mixed),
    );
    // Go's Write path cuts the same blocks as ReadFrom.
    assert_same(
        "through Write",
        &model(true, &mixed),
        &go_zstd(&["-mode", "write"], &mixed),
    );
}

/// Go's frames are found by a trial and re-created; the CLI's are left to libzstd's trials.
#[test]
fn go_frames_found_and_cli_frames_not_taken() {
    let real = corpus(3 << 20);
    for input in [&real[..], &real[..70_000]] {
        let frame = go_zstd(&[], input);
        let info = zstd::Info::read(&frame[..], 0, frame.len() as u64).unwrap();
        let member = Member {
            name: String::new(),
            at: 0,
            len: frame.len() as u64,
            codec: Codec::Zstd(info),
        };
        let found = member.find(&frame[..]).unwrap();
        assert_eq!(
            found,
            PackedParams::GoZstd(Params {
                level: Level::Default,
                checksum: true
            })
        );
        let mut back = Vec::new();
        found.encode(1, input, &mut back).unwrap();
        assert!(back == frame);
    }
    let cli = run_tool("zstd", &["-3"], &real);
    let info = zstd::Info::read(&cli[..], 0, cli.len() as u64).unwrap();
    assert!(!likely(&info));
    assert_eq!(find(&cli[..], 0, &info).unwrap(), None);
}

#[test]
fn params_recorded_and_read_back() {
    for checksum in [true, false] {
        let p = Params {
            level: Level::Default,
            checksum,
        };
        let mut out = Vec::new();
        p.write_to(&mut out);
        let mut rest = &out[..];
        assert_eq!(Params::read_from(&mut rest).unwrap(), p);
        assert!(rest.is_empty());
    }
    let mut other = vec![4];
    other.extend_from_slice(b"1.16\x01");
    assert!(Params::read_from(&mut &other[..])
        .unwrap_err()
        .contains("1.16"));
}

/// Frames of Go's one after another and a skippable frame after them (the shape of a zstd:chunked layer): one
/// member of frames, re-created with their sizes; the skippable frame is skeleton.
#[test]
fn frames_one_after_another() {
    use crate::packed::{Kind, Layout};
    let real = corpus(1 << 20);
    let parts: [&[u8]; 5] = [
        &real[..1536],
        &real[1536..300_000],
        &real[300_000..300_010],
        &real[300_010..],
        &real[..512],
    ];
    let mut file = Vec::new();
    for part in parts {
        file.extend_from_slice(&go_zstd(&[], part));
    }
    let frames_end = file.len() as u64;
    file.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 5, 0, 0, 0, 1, 2, 3, 4, 5]);
    let layout = Layout::read(&file[..], file.len() as u64, Kind::Zstd).unwrap();
    assert_eq!(layout.members.len(), 1);
    assert_eq!(
        (layout.members[0].at, layout.members[0].len),
        (0, frames_end)
    );
    assert_eq!(layout.skeleton_len(), 13);
    let found = layout.members[0].find(&file[..]).unwrap();
    let sizes: Vec<FrameSize> = parts
        .iter()
        .map(|p| FrameSize {
            content: p.len() as u64,
            flushed: false,
        })
        .collect();
    assert_eq!(
        found,
        PackedParams::GoZstdFrames(
            Params {
                level: Level::Default,
                checksum: true
            },
            sizes
        )
    );
    let mut rec = Vec::new();
    found.write_to(&mut rec);
    assert_eq!(PackedParams::read_from(&mut &rec[..]).unwrap(), found);
    assert_eq!(crate::packed::round_trip(&file), Some(1));
    // A byte of the skippable frame's length wrong: refused where it is.
    let mut bad = file.clone();
    bad[frames_end as usize + 4] = 200;
    assert!(Layout::read(&bad[..], bad.len() as u64, Kind::Zstd)
        .unwrap()
        .members
        .is_empty());
}
