//! The streaming form against the whole-stream one, on every kind of stream the decomposer accepts.

use super::*;
use crate::deflate::tests::{flate2_gz, random, run_tool, samples, text};
use std::io::Read;

/// A reader that hands out at most `step` bytes a call (varying), to shake out batch and buffer seams.
struct Dribble<'a> {
    data: &'a [u8],
    step: usize,
    n: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.n += 1;
        let k = (1 + (self.n * 7919) % self.step)
            .min(out.len())
            .min(self.data.len());
        out[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

/// Decompose `gz` through the streaming form (with `model`, or the one the trial picks), check the re-encoded
/// hash, recompose and insist on the same bytes. The decomposition, raw bytes and re-creation stream.
pub(crate) fn stream_round_trip(gz: &[u8], model: Option<&str>) -> (Decomposed, Vec<u8>, Vec<u8>) {
    let mut raw = Vec::new();
    let mut rec = Vec::new();
    let opts = Options {
        hint: None,
        model: model.map(str::to_string),
    };
    let d = decompose(
        Dribble {
            data: gz,
            step: 100_000,
            n: 0,
        },
        |b: &[u8]| {
            raw.extend_from_slice(b);
            Ok(())
        },
        |b: &[u8]| {
            rec.extend_from_slice(b);
            Ok(())
        },
        &opts,
    )
    .unwrap_or_else(|e| panic!("decompose with {model:?}: {e}"));
    assert_eq!(d.raw_len, raw.len() as u64);
    assert_eq!(d.recreation_len, rec.len() as u64);
    assert_eq!(d.reencoded_len, gz.len() as u64, "re-encoded length");
    assert_eq!(
        d.reencoded,
        *blake3::hash(gz).as_bytes(),
        "re-encoded bytes differ (model {})",
        d.model
    );
    let mut back = Vec::new();
    let n = recompose(
        Dribble {
            data: &raw,
            step: 70_000,
            n: 3,
        },
        &rec[..],
        &mut back,
    )
    .unwrap_or_else(|e| panic!("recompose with {}: {e}", d.model));
    assert_eq!(n, back.len() as u64);
    assert!(back == gz, "recomposed bytes differ (model {})", d.model);
    (d, raw, rec)
}

fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = samples()
        .into_iter()
        .flat_map(|(name, data)| {
            [0, 1, 6, 9].map(|level| (format!("{name} flate2 -{level}"), flate2_gz(&data, level)))
        })
        .collect();
    let mut data = text(400_000, 30);
    data.extend(random(80_000, 31));
    for (tool, args) in [
        ("pigz", &["-c", "-p", "2", "-b", "32"][..]),
        ("gzip", &["-c", "-1"][..]),
        ("gzip", &["-c", "-9"][..]),
    ] {
        v.push((format!("{tool} {args:?}"), run_tool(tool, args, &data)));
    }
    let mut three = flate2_gz(&text(20_000, 32), 6);
    three.extend(flate2_gz(&random(3000, 33), 0));
    three.extend(flate2_gz(&text(20_000, 34), 9));
    three.extend_from_slice(b"trailing bytes");
    v.push(("three members and trailing bytes".into(), three));
    v
}

#[test]
fn every_stream_round_trips_with_the_model_chosen() {
    for (name, gz) in inputs() {
        let (d, raw, _) = stream_round_trip(&gz, None);
        let mut want = Vec::new();
        crate::deflate::decompose(&gz[..], &mut want).unwrap();
        assert!(raw == want, "{name}: raw bytes differ");
        assert!(d.misses <= d.decisions, "{name}");
    }
}

#[test]
fn every_model_round_trips_on_every_stream() {
    for (name, gz) in inputs() {
        for &m in crate::deflate::predict::MODELS {
            let (d, _, _) = stream_round_trip(&gz, Some(m));
            assert_eq!(d.model, m, "{name}");
        }
    }
}

#[test]
fn streaming_corrections_agree_with_the_whole_stream_form() {
    // The same model misses the same decisions whichever form walks it.
    for (name, gz) in inputs() {
        for m in ["zlib-6", "go-6", "literals", "pgzip-5"] {
            let (d, _, _) = stream_round_trip(&gz, Some(m));
            let (misses, _) = crate::deflate::predict::tests::misses(m, &gz);
            assert_eq!(d.misses, misses as u64, "{name}, {m}");
        }
    }
}

#[test]
fn a_long_member_is_walked_as_it_arrives() {
    // One member of several pieces' worth: walked inline through the window, not whole.
    let mut data = Vec::new();
    for i in 0..12u64 {
        data.extend(text(700_000, 100 + i));
        data.extend(random(30_000, 200 + i));
        let from = data.len() / 3;
        data.extend_from_within(from..from + 50_000);
    }
    assert!(data.len() > 2 * PIECE_MAX);
    for level in [1, 6, 9] {
        // GNU gzip is zlib's deflate: its model predicts it exactly, window or not.
        let gz = run_tool("gzip", &["-c", &format!("-{level}")], &data);
        let (d, raw, _) = stream_round_trip(&gz, Some(&format!("zlib-{level}")));
        assert_eq!(raw.len(), data.len());
        assert_eq!(
            d.misses, 0,
            "zlib-{level} predicts GNU gzip -{level} exactly"
        );
        // flate2 (miniz_oxide) is not zlib: misses, the same ones in both forms.
        let gz = flate2_gz(&data, level);
        let (d, _, _) = stream_round_trip(&gz, Some(&format!("zlib-{level}")));
        let (misses, _) = crate::deflate::predict::tests::misses(&format!("zlib-{level}"), &gz);
        assert_eq!(d.misses, misses as u64);
    }
}

#[test]
fn the_model_that_fits_is_chosen() {
    let data = text(300_000, 7);
    let gz = run_tool("gzip", &["-c", "-9"], &data);
    let (d, _, _) = stream_round_trip(&gz, None);
    assert_eq!(d.misses, 0);
    assert_eq!(d.model, "zlib-9");
    // A hint that fits is taken.
    let mut rec = Vec::new();
    let d = decompose(
        &gz[..],
        |_: &[u8]| Ok(()),
        |b: &[u8]| {
            rec.extend_from_slice(b);
            Ok(())
        },
        &Options {
            hint: Some("zlib-9".into()),
            model: None,
        },
    )
    .unwrap();
    assert_eq!(d.model, "zlib-9");
}

#[test]
fn damaged_recreation_streams_are_errors_never_panics() {
    let mut data = text(60_000, 11);
    data.extend(random(5_000, 12));
    let gz = run_tool("pigz", &["-c", "-p", "2", "-b", "32"], &data);
    let (_, raw, rec) = stream_round_trip(&gz, None);
    let try_it = |raw: &[u8], rec: &[u8]| recompose(raw, rec, Vec::new());
    for n in 0..rec.len() {
        assert!(try_it(&raw, &rec[..n]).is_err(), "cut to {n}");
    }
    assert!(try_it(&raw[..raw.len() - 1], &rec).is_err());
    assert!(try_it(&[&raw[..], b"x"].concat(), &rec).is_err());
    let mut changed = raw.clone();
    let i = (1000..).find(|&i| raw[i] != raw[i + 1]).unwrap();
    changed.swap(i, i + 1);
    assert!(try_it(&changed, &rec).is_err());
    for i in (0..rec.len() * 8).step_by(3) {
        let mut r = rec.clone();
        r[i / 8] ^= 1 << (i % 8);
        if let Ok(out) = try_it(&raw, &r) {
            // A flipped bit may still make a valid stream (a padding bit, a trailing byte): never the original
            // bytes claimed for other data, and never a panic.
            let _ = out;
        }
    }
}

#[test]
fn bad_gzip_is_an_error_from_the_decoder() {
    let gz = flate2_gz(&text(50_000, 13), 6);
    let mut cut = gz.clone();
    cut.truncate(gz.len() / 2);
    let r = decompose(
        &cut[..],
        |_: &[u8]| Ok(()),
        |_: &[u8]| Ok(()),
        &Options::default(),
    );
    assert!(matches!(r, Err(DeflateError::Truncated { .. })), "{r:?}");
    let r = decompose(
        &b"not gzip at all"[..],
        |_: &[u8]| Ok(()),
        |_: &[u8]| Ok(()),
        &Options::default(),
    );
    assert!(matches!(r, Err(DeflateError::Malformed { .. })), "{r:?}");
    // A writer that fails stops everything.
    let r = decompose(
        &gz[..],
        |_: &[u8]| Err(io::Error::other("disk full")),
        |_: &[u8]| Ok(()),
        &Options::default(),
    );
    assert!(r.is_err());
    let r = decompose(
        &gz[..],
        |_: &[u8]| Ok(()),
        |_: &[u8]| Err(io::Error::other("disk full")),
        &Options::default(),
    );
    assert!(r.is_err());
}

/// Speed of both directions on real files: `FERRY_DEFLATE_FILES=a.gz:b.tgz cargo test --release -p ferry-node
/// --lib deflate::stream::tests::real_files -- --ignored --nocapture`. Raw and re-creation data go to memory
/// here; the figures are MB of gzip per second, wall time, on the pool's threads.
#[test]
#[ignore]
fn real_files() {
    let Ok(list) = std::env::var("FERRY_DEFLATE_FILES") else {
        eprintln!("FERRY_DEFLATE_FILES is not set");
        return;
    };
    for path in list.split(':').filter(|p| !p.is_empty()) {
        let gz = std::fs::read(path).unwrap();
        let mb = gz.len() as f64 / 1e6;
        let t = std::time::Instant::now();
        let (d, raw, rec) = decompose_in_memory(&gz[..], &Options::default()).unwrap();
        let dt = t.elapsed().as_secs_f64();
        assert_eq!(d.reencoded, *blake3::hash(&gz).as_bytes());
        let t = std::time::Instant::now();
        let mut sink = io::sink();
        recompose(&raw[..], &rec[..], &mut sink).unwrap();
        let rt = t.elapsed().as_secs_f64();
        eprintln!(
            "{path}: {mb:.1} MB gzip, {:.1} MB raw, model {}, {} misses of {} decisions, re-creation data {} B \
             ({:.3} % of the gzip); decompose {:.2} s ({:.0} MB/s), recompose {:.2} s ({:.0} MB/s)",
            raw.len() as f64 / 1e6,
            d.model,
            d.misses,
            d.decisions,
            rec.len(),
            100.0 * rec.len() as f64 / gz.len() as f64,
            dt,
            mb / dt,
            rt,
            mb / rt
        );
    }
}
