//! zstd frames written by the real `zstd` CLI (libzstd 1.5.4) the ways producers write them, found and
//! re-created; hostile frames refused.

use super::*;
use crate::tests::{corpus, run_tool};
use crate::xz::Comparing;

fn zstd_cli(args: &[&str], input: &[u8]) -> Vec<u8> {
    run_tool("zstd", args, input)
}

/// What the CLI writes for a file (content size known), not through a pipe.
fn zstd_file(args: &[&str], input: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in");
    std::fs::write(&path, input).unwrap();
    let out = std::process::Command::new("zstd")
        .args(args)
        .args(["-q", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "zstd {args:?}");
    out.stdout
}

fn info(frame: &[u8]) -> Result<Info, Refused> {
    Info::read(frame, 0, frame.len() as u64)
}

fn decoded(frame: &[u8]) -> Vec<u8> {
    let mut back = Vec::new();
    decode(frame, |b| {
        back.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    back
}

/// The parameters found for `frame` (and, when the guess is wrong past the first job, its alternative)
/// re-create it exactly from its content; the parameters that did.
fn recreated(frame: &[u8], raw: &[u8]) -> Params {
    let i = info(frame).unwrap();
    let p = find(frame, 0, &i).unwrap_or_else(|e| panic!("{i:?}: {e}"));
    for p in [Some(p), p.alternative(raw.len() as u64)]
        .into_iter()
        .flatten()
    {
        let mut cmp = Comparing::new(frame);
        if encode(&p, 2, raw, &mut cmp).is_ok() && cmp.at_end().unwrap() {
            return p;
        }
    }
    panic!("{p} does not re-create the frame");
}

#[test]
fn the_cli_levels_and_modes_are_recreated() {
    let raw = corpus(6 << 20);
    // Files (content size known) and pipes (not), multi- and single-threaded, with and without a checksum.
    for level in ["-1", "-3", "-9", "--fast=3"] {
        let frame = zstd_file(&[level], &raw);
        let p = recreated(&frame, &raw);
        assert_eq!(p.content_size, Some(raw.len() as u64), "{level}");
        assert!(p.threaded && p.checksum, "{level}: {p}");
        assert_eq!(decoded(&frame), raw);
    }
    let p = recreated(&zstd_cli(&["-6"], &raw), &raw);
    assert_eq!((p.level, p.content_size, p.threaded), (6, None, true));
    let p = recreated(&zstd_file(&["-4", "--single-thread"], &raw), &raw);
    assert_eq!((p.level, p.threaded), (4, false), "{p}");
    let p = recreated(&zstd_file(&["-2", "--no-check"], &raw), &raw);
    assert!(!p.checksum);
    let p = recreated(&zstd_file(&["-3", "--long"], &raw), &raw);
    assert_eq!(p.long, Some(27), "{p}");
    // The slow levels on a smaller input: 19 (rpm's) and an ultra level.
    let small = &raw[..1 << 20];
    assert_eq!(recreated(&zstd_file(&["-19"], small), small).level, 19);
    let p = recreated(&zstd_cli(&["--ultra", "-21", "-T1"], small), small);
    assert_eq!(p.level, 21);
    // Tiny and empty content: one single-segment frame.
    for raw in [&b""[..], b"a", b"hello hello hello hello"] {
        recreated(&zstd_file(&["-3"], raw), raw);
        recreated(&zstd_cli(&["-3"], raw), raw);
    }
}

#[test]
fn recorded_parameters_round_trip_and_other_libraries_are_refused() {
    let p = Params {
        level: -3,
        threaded: false,
        content_size: Some(123_456_789),
        size_in_header: false,
        checksum: true,
        long: Some(27),
    };
    let mut rec = Vec::new();
    p.write_to(&mut rec);
    rec.push(0xee);
    let mut r = &rec[..];
    assert_eq!(Params::read_from(&mut r).unwrap(), p);
    assert_eq!(r, [0xee]);
    for cut in 0..rec.len() - 1 {
        assert!(Params::read_from(&mut &rec[..cut]).is_err(), "cut at {cut}");
    }
    let mut other = rec.clone();
    other[1..6].copy_from_slice(b"1.5.7");
    let e = Params::read_from(&mut &other[..]).unwrap_err();
    assert!(e.contains("libzstd 1.5.7"), "{e}");
}

#[test]
fn hostile_and_unsupported_frames_are_refused_without_panics() {
    let raw = corpus(1 << 20);
    let good = zstd_file(&["-3"], &raw);
    assert!(info(&good).is_ok());
    // Two frames one after another: refused, naming where the first ends.
    let mut two = good.clone();
    two.extend(zstd_cli(&["-3"], b"more"));
    let e = info(&two).unwrap_err().to_string();
    assert!(e.contains(&format!("ends at byte {}", good.len())), "{e}");
    // Cut anywhere: refused.
    for cut in [0, 3, 5, 9, 100, good.len() / 2, good.len() - 1] {
        assert!(info(&good[..cut]).is_err(), "cut at {cut}");
    }
    // A dictionary's frame, and a window beyond the bound.
    let mut dict = good.clone();
    dict[4] |= 1;
    assert!(info(&dict).is_err());
    let big = zstd_cli(&["--long=30", "-1"], b"x");
    assert!(
        matches!(info(&big), Err(Refused::Unsupported(_))),
        "{:?}",
        info(&big)
    );
    // Bytes flipped anywhere: refused, or they come back exactly; never a panic.
    for at in [4, 5, 6, 7, 12, 40, 300, good.len() / 3, good.len() - 3] {
        let mut bad = good.clone();
        bad[at] ^= 0x41;
        let _ = crate::packed::round_trip(&bad);
    }
}

#[test]
fn frames_of_another_encoder_are_refused_at_the_trial() {
    // The level is found among the candidates ...
    let raw = corpus(1 << 20);
    let frame = zstd_file(&["-7"], &raw);
    let i = info(&frame).unwrap();
    let p = find(&frame[..], 0, &i).unwrap();
    assert_eq!(p.level, 7);
    // ... but the same content with parameters set by hand (--zstd=wlog=19,hlog=12), which no level uses, is
    // refused: kept as it is rather than guessed at.
    let odd = zstd_file(&["--zstd=wlog=19,hlog=12"], &raw);
    let i = info(&odd).unwrap();
    assert!(find(&odd[..], 0, &i).is_err());
}

#[test]
fn neighbouring_levels_are_told_apart_past_their_first_blocks() {
    // Levels 11 and 12 write the same first tens of KiB of this content: the trial compares a whole MiB.
    let raw = corpus(3 << 20);
    for level in ["-11", "-12", "-13"] {
        let frame = zstd_cli(&[level, "--no-check"], &raw);
        let p = recreated(&frame, &raw);
        assert_eq!(format!("-{}", p.level), level);
    }
}
