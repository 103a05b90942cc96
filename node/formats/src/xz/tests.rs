//! xz streams written by the real `xz` (liblzma) with the parameters producers use, found and re-created.

use super::*;

use crate::tests::corpus;

fn xz_cli(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut all = args.to_vec();
    all.push("-q");
    crate::tests::run_tool("xz", &all, input)
}

/// Find the parameters of `stream`, then re-encode `raw` with them and compare.
fn recreate(stream: &[u8], raw: &[u8]) -> Result<Params, String> {
    let info = Info::read(stream, 0, stream.len() as u64).map_err(|e| e.to_string())?;
    assert_eq!(info.raw_len, raw.len() as u64);
    let p = find(stream, 0, &info).map_err(|e| e.to_string())?;
    let mut cmp = Comparing::new(stream);
    encode(&p, 2, raw, &mut cmp).map_err(|e| format!("{p}: {e}"))?;
    assert!(cmp.at_end().unwrap(), "{p}: re-encoding is shorter");
    let mut back = Vec::new();
    decode(stream, |b| {
        back.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert_eq!(back, raw);
    Ok(p)
}

#[test]
fn the_xz_cli_presets_checks_and_threading_are_recreated() {
    let raw = corpus(3 << 20);
    let cases: &[(&[&str], u8, bool, bool)] = &[
        (&["-6", "-T1"], 6, false, false),
        (&["-6", "-T2"], 6, false, true),
        (&["-0", "-T1"], 0, false, false),
        (&["-1", "-T2", "--check=crc32"], 1, false, true),
        (&["-3", "-T1", "--check=none"], 3, false, false),
        (&["-9", "-T1"], 9, false, false),
        (&["-6e", "-T1"], 6, true, false),
        (
            &["-2", "-T2", "--check=sha256", "--block-size=1MiB"],
            2,
            false,
            true,
        ),
    ];
    for &(args, preset, extreme, threaded) in cases {
        let stream = xz_cli(args, &raw);
        let p = recreate(&stream, &raw).unwrap_or_else(|e| panic!("xz {args:?}: {e}"));
        assert_eq!(
            (p.preset, p.extreme, p.block_size.is_some()),
            (preset, extreme, threaded),
            "xz {args:?}: {p}"
        );
    }
    // Several blocks of the multi-threaded encoder: the block size is the first block's.
    let stream = xz_cli(&["-6", "-T2", "--block-size=1MiB"], &raw);
    let p = recreate(&stream, &raw).unwrap();
    assert_eq!(p.block_size, Some(1 << 20));
    // Small inputs: the whole first block is the trial.
    for n in [0usize, 1, 100, 5000] {
        let stream = xz_cli(&["-6", "-T2"], &raw[..n]);
        recreate(&stream, &raw[..n]).unwrap();
    }
}

#[test]
fn streams_the_encoders_do_not_write_are_refused() {
    let raw = corpus(300 << 10);
    // Two streams one after the other (what `cat a.xz b.xz` and some parallel tools write).
    let mut two = xz_cli(&["-6"], &raw[..1000]);
    two.extend(xz_cli(&["-6"], &raw[1000..]));
    assert!(Info::read(&two[..], 0, two.len() as u64).is_err());
    // A BCJ filter before LZMA2.
    let bcj = xz_cli(&["--x86", "--lzma2=preset=6"], &raw);
    let e = Info::read(&bcj[..], 0, bcj.len() as u64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("BCJ"), "{e}");
    // Options no preset has: found by no candidate.
    let odd = xz_cli(&["--lzma2=preset=6,nice=100,lc=2"], &raw);
    let info = Info::read(&odd[..], 0, odd.len() as u64).unwrap();
    assert!(find(&odd[..], 0, &info).is_err());
}

#[test]
fn damaged_streams_never_panic_and_never_recreate_other_bytes() {
    let raw = corpus(200 << 10);
    let good = xz_cli(&["-6", "-T2"], &raw);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut refused, mut exact) = (0, 0);
    for i in 0..300 {
        let mut bad = good.clone();
        match i % 3 {
            0 => {
                let at = next() as usize % bad.len();
                bad[at] ^= 1 << (next() % 8);
            }
            1 => bad.truncate(next() as usize % bad.len()),
            _ => {
                // Damage near the headers and index, where the parser reads.
                let at = if next() % 2 == 0 {
                    next() as usize % 40
                } else {
                    bad.len() - 1 - next() as usize % 60
                };
                bad[at] = next() as u8;
            }
        }
        let Ok(info) = Info::read(&bad[..], 0, bad.len() as u64) else {
            refused += 1;
            continue;
        };
        let Ok(p) = find(&bad[..], 0, &info) else {
            refused += 1;
            continue;
        };
        // Whatever was found, re-encoding the raw content either gives these very bytes or fails the compare.
        let mut raw_back = Vec::new();
        if decode(&bad[..], |b| {
            raw_back.extend_from_slice(b);
            Ok(())
        })
        .is_err()
        {
            refused += 1;
            continue;
        }
        let mut cmp = Comparing::new(&bad[..]);
        if encode(&p, 1, &raw_back[..], &mut cmp).is_ok() && cmp.at_end().unwrap() {
            assert_eq!(bad, good);
            exact += 1;
        } else {
            refused += 1;
        }
    }
    assert_eq!(refused + exact, 300);
    assert!(refused > 250, "{refused} refused, {exact} exact");
}

#[test]
fn params_round_trip_and_garbage_is_refused() {
    let p = Params {
        preset: 6,
        extreme: true,
        dict: 8 << 20,
        check: 4,
        block_size: Some(24 << 20),
    };
    let mut b = Vec::new();
    p.write_to(&mut b);
    b.push(0xaa);
    let mut rest = &b[..];
    assert_eq!(Params::read_from(&mut rest).unwrap(), p);
    assert_eq!(rest, [0xaa]);
    for cut in 0..b.len() - 1 {
        assert!(Params::read_from(&mut &b[..cut]).is_err(), "cut {cut}");
    }
    let mut bad = b.clone();
    bad[2 + LIBLZMA.len()] = 12;
    assert!(Params::read_from(&mut &bad[..]).is_err());
}
