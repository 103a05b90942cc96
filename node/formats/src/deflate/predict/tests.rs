use super::*;
use crate::deflate::tests::{flate2_gz, random, round_trip, run_tool, samples, text};

/// Every decision of `tokens` for `layout`, with its position, walked as the driver walks them.
fn decisions(layout: &Layout, tokens: &[u8]) -> Vec<(usize, Decision)> {
    struct Record(Vec<(usize, Decision)>);
    impl Predictor for Record {
        fn predict(&mut self, _pos: u64) -> Decision {
            Decision::Literal
        }
        fn take(&mut self, pos: u64, actual: Decision) {
            self.0.push((pos as usize, actual));
        }
    }
    let mut r = Record(Vec::new());
    walk_tokens(&mut r, layout, tokens, u64::MAX).unwrap();
    r.0
}

/// Knows every decision: what a perfect model of the producer would do.
struct Oracle {
    known: Vec<(usize, Decision)>,
    next: usize,
    wrong_every: usize,
}

impl Predictor for Oracle {
    fn predict(&mut self, pos: u64) -> Decision {
        let pos = pos as usize;
        let (at, d) = self.known[self.next];
        assert_eq!(
            at, pos,
            "asked at another position than the producer decided"
        );
        if self.wrong_every > 0 && self.next.is_multiple_of(self.wrong_every) {
            return match d {
                Decision::Literal => Decision::Match { len: 3, dist: 1 },
                Decision::Match { .. } => Decision::Literal,
            };
        }
        d
    }
    fn take(&mut self, pos: u64, actual: Decision) {
        assert_eq!(self.known[self.next], (pos as usize, actual));
        self.next += 1;
    }
}

fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = samples()
        .into_iter()
        .flat_map(|(name, data)| {
            [1, 6, 9].map(|level| (format!("{name} flate2 -{level}"), flate2_gz(&data, level)))
        })
        .collect();
    let mut data = text(400_000, 30);
    data.extend(random(80_000, 31));
    // pigz -b 32: many sync-flushed parts; gzip -1 with stored blocks for the random part.
    for (tool, args) in [
        ("pigz", &["-c", "-p", "2", "-b", "32"][..]),
        ("gzip", &["-c", "-1"][..]),
    ] {
        v.push((format!("{tool} {args:?}"), run_tool(tool, args, &data)));
    }
    let mut two = flate2_gz(&text(20_000, 32), 6);
    two.extend(flate2_gz(&random(3000, 33), 0));
    two.extend(flate2_gz(&text(20_000, 34), 9));
    v.push(("three members".into(), two));
    v
}

#[test]
fn layout_matches_the_raw_bytes() {
    for (name, gz) in inputs() {
        let (raw, re) = round_trip(&gz);
        let layout = Layout::parse(&re.headers).unwrap();
        assert_eq!(layout.raw_len(), raw.len() as u64, "{name}");
        assert_eq!(layout.members[0], 0);
        let mut at = 0;
        for b in &layout.blocks {
            assert_eq!(b.start, at, "{name}");
            at += b.len;
        }
        assert!(
            layout.blocks.last().map_or(raw.is_empty(), |b| b.last),
            "{name}"
        );
    }
    let three = inputs().pop().unwrap().1;
    let (_, re) = round_trip(&three);
    assert_eq!(Layout::parse(&re.headers).unwrap().members.len(), 3);
}

#[test]
fn literal_model_round_trips() {
    for (name, gz) in inputs() {
        let (raw, re) = round_trip(&gz);
        let layout = Layout::parse(&re.headers).unwrap();
        let corrections = encode("literals", &raw, &layout, &re.tokens)
            .unwrap()
            .unwrap();
        let back = decode("literals", &raw, &layout, &corrections)
            .unwrap()
            .unwrap();
        assert!(back == re.tokens, "{name}: tokens differ after decode");
    }
}

#[test]
fn a_perfect_model_leaves_one_varint() {
    for (name, gz) in inputs() {
        let (_, re) = round_trip(&gz);
        let layout = Layout::parse(&re.headers).unwrap();
        let known = decisions(&layout, &re.tokens);
        let n = known.len();
        let oracle = |wrong_every| Oracle {
            known: known.clone(),
            next: 0,
            wrong_every,
        };
        let enc = |o: &mut Oracle| walk_tokens(o, &layout, &re.tokens, u64::MAX).map(|r| r.0);
        let corrections = enc(&mut oracle(0)).unwrap();
        let mut expect = Vec::new();
        put_varint(&mut expect, n as u64);
        assert_eq!(corrections, expect, "{name}");
        assert!(
            decode_walk(&mut oracle(0), &layout, &corrections).unwrap() == re.tokens,
            "{name}"
        );
        // Misses every 7th decision: stored, and decoded back.
        let corrections = enc(&mut oracle(7)).unwrap();
        assert!(
            decode_walk(&mut oracle(7), &layout, &corrections).unwrap() == re.tokens,
            "{name}"
        );
    }
}

#[test]
fn bad_corrections_are_errors() {
    let gz = flate2_gz(&text(30_000, 40), 6);
    let (raw, re) = round_trip(&gz);
    let layout = Layout::parse(&re.headers).unwrap();
    let enc = |tokens: &[u8]| encode("literals", &raw, &layout, tokens).unwrap();
    let dec = |c: &[u8]| decode("literals", &raw, &layout, c).unwrap();
    let good = enc(&re.tokens).unwrap();
    // Cut short, a match past the end, too many decisions.
    assert!(dec(&good[..good.len() / 2]).is_err());
    let mut past = Vec::new();
    put_varint(&mut past, 29_999);
    put_varint(&mut past, 10 - 2);
    past.extend([0, 0]);
    put_varint(&mut past, 0);
    assert!(dec(&past).is_err());
    let mut many = Vec::new();
    put_varint(&mut many, 30_001);
    assert!(dec(&many).is_err());
    let mut few = Vec::new();
    put_varint(&mut few, 29_999);
    assert!(dec(&few).is_err());
    // Tokens that do not fit the layout.
    assert!(enc(&[0xf0, 0x80, 0x80, 0x80, 0x01]).is_err());
}

#[test]
fn every_model_round_trips() {
    for (name, gz) in inputs() {
        let (raw, re) = round_trip(&gz);
        let layout = Layout::parse(&re.headers).unwrap();
        for &m in MODELS {
            let corrections = encode(m, &raw, &layout, &re.tokens)
                .unwrap()
                .unwrap_or_else(|e| panic!("{name}, model {m}: {e}"));
            let back = decode(m, &raw, &layout, &corrections)
                .unwrap()
                .unwrap_or_else(|e| panic!("{name}, model {m}: {e}"));
            assert!(
                back == re.tokens,
                "{name}, model {m}: tokens differ after decode"
            );
        }
    }
}

/// How well each model predicts real files: `FERRY_DEFLATE_FILES=a.gz:b.tgz [FERRY_PREDICT_MODELS=m1,m2]
/// cargo test --release -p ferry-node --lib deflate::predict::tests::real_files -- --ignored --nocapture`.
/// For each file and model: misses, corrections and tokens after zstd -19, and the speed of encode and decode
/// (MB of raw per second).
#[test]
#[ignore]
fn real_files() {
    let Ok(list) = std::env::var("FERRY_DEFLATE_FILES") else {
        eprintln!("FERRY_DEFLATE_FILES is not set");
        return;
    };
    let models: Vec<String> = std::env::var("FERRY_PREDICT_MODELS")
        .map(|m| m.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|_| MODELS.iter().map(|m| m.to_string()).collect());
    for path in list.split(':').filter(|p| !p.is_empty()) {
        let gz = std::fs::read(path).unwrap();
        let (raw, re) = round_trip(&gz);
        let layout = Layout::parse(&re.headers).unwrap();
        let decisions = decisions(&layout, &re.tokens).len();
        let ztok = zstd::bulk::compress(&re.tokens, 19).unwrap().len();
        let mb = raw.len() as f64 / 1e6;
        eprintln!(
            "{path}: {:.2} MB gzip, {mb:.2} MB raw, {decisions} decisions, tokens {} B ({ztok} B zstd -19), \
             headers {} B",
            gz.len() as f64 / 1e6,
            re.tokens.len(),
            re.headers.len()
        );
        for m in &models {
            let t = std::time::Instant::now();
            let Some(corrections) = encode(m, &raw, &layout, &re.tokens) else {
                eprintln!("  {m}: no such model");
                continue;
            };
            let corrections = corrections.unwrap();
            let et = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let back = decode(m, &raw, &layout, &corrections).unwrap().unwrap();
            let dt = t.elapsed().as_secs_f64();
            assert!(
                back == re.tokens,
                "{path}, model {m}: tokens differ after decode"
            );
            let misses = count_misses(&corrections);
            let zc = zstd::bulk::compress(&corrections, 19).unwrap().len();
            eprintln!(
                "  {m}: {misses} misses ({:.3} %), corrections {} B ({zc} B zstd -19 = {:.2} % of the gzip), \
                 encode {:.0} MB/s, decode {:.0} MB/s",
                100.0 * misses as f64 / decisions.max(1) as f64,
                corrections.len(),
                100.0 * zc as f64 / gz.len() as f64,
                mb / et,
                mb / dt
            );
        }
    }
}

/// Follows a predictor and counts its misses.
struct Count<P> {
    inner: P,
    said: Option<Decision>,
    misses: usize,
    first: Option<(usize, Decision, Decision)>,
}

impl<P: Predictor> Predictor for Count<P> {
    fn predict(&mut self, pos: u64) -> Decision {
        let d = self.inner.predict(pos);
        self.said = Some(d);
        d
    }
    fn take(&mut self, pos: u64, actual: Decision) {
        if let Some(said) = self.said.take().filter(|&d| d != actual) {
            self.misses += 1;
            self.first.get_or_insert((pos as usize, said, actual));
        }
        self.inner.take(pos, actual);
    }
}

/// Misses of model `name` on `gz` (and the first one: position, predicted, actual); asserts that the
/// corrections decode back to the tokens.
pub(crate) fn misses(name: &str, gz: &[u8]) -> (usize, Option<(usize, Decision, Decision)>) {
    let (raw, re) = round_trip(gz);
    let layout = Layout::parse(&re.headers).unwrap();
    let mut c = Count {
        inner: Pieces::new(name, &raw, &layout).expect("a known model"),
        said: None,
        misses: 0,
        first: None,
    };
    let (corrections, _, _) = walk_tokens(&mut c, &layout, &re.tokens, u64::MAX).unwrap();
    let back = decode(name, &raw, &layout, &corrections).unwrap().unwrap();
    assert!(back == re.tokens, "{name}: tokens differ after decode");
    assert_eq!(count_misses(&corrections), c.misses);
    // The streaming form, through windows and pieces, misses exactly the same decisions and gives the stream
    // back.
    let (d, _, _) = crate::deflate::stream::tests::stream_round_trip(gz, Some(name));
    assert_eq!(
        d.misses, c.misses as u64,
        "{name}: the streaming form misses differently"
    );
    (c.misses, c.first)
}

/// Drive the model `name` over `raw` with the pieces of `layout` through arbitrary positions and decisions:
/// it must never panic (a wrong model only misses).
pub(crate) fn arbitrary_walk(name: &str, raw: &[u8], layout: &Layout, seed: u64) {
    let mut p = Pieces::new(name, raw, layout).unwrap();
    let mut pos = 0u64;
    let choice = random(4000, seed);
    for (k, c) in choice.chunks(2).enumerate() {
        p.predict(pos);
        let d = match c[0] % 4 {
            0 => Decision::Literal,
            _ => Decision::Match {
                len: 3 + (c[1] as u16 % 256),
                dist: 1 + (c[0] as u16 * 131) % 32768,
            },
        };
        p.take(pos, d);
        pos += d.advance() as u64 + if k % 97 == 0 { 40_000 } else { 0 };
    }
}

pub(super) fn count_misses(corrections: &[u8]) -> usize {
    let mut c = Cursor::new(corrections);
    let mut n = 0;
    loop {
        c.varint().unwrap();
        if c.at_end() {
            return n;
        }
        get_decision(&mut c).unwrap();
        n += 1;
    }
}
