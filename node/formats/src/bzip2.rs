//! bzip2 streams written by libbzip2 (the `bzip2` CLI, Python's `bz2`, `tar -j`), re-created exactly by it.
//!
//! A bzip2 stream records its one parameter, the block size (`BZh1`..`BZh9`), and its output is otherwise
//! fixed by the input: the Burrows-Wheeler transform and the Huffman tables libbzip2 builds do not depend on its
//! work factor or version (1.0.x). So nothing is tried: the level is read, and the whole stream is re-encoded and
//! compared by the caller before anything is recorded. Several streams one after another (`pbzip2`, `lbzip2`
//! and concatenated files) are refused and kept as they are.

use crate::{malformed, Range, ReadAt, Refused};
use bzip2::{Action, Compress, Compression, Decompress, Status};
use std::io::{self, Read, Write};

/// The start of every bzip2 stream (then the level digit).
pub const MAGIC: [u8; 3] = *b"BZh";
/// The version of libbzip2 whose output re-creates a stream (the crate's bundled one).
pub const LIBBZ2: &str = "1.0.8";

/// The level (block size in 100 kB) the stream at `[at, at + len)` of `src` records; refused unless that is one
/// bzip2 stream, with nothing after it.
pub fn level<R: ReadAt + ?Sized>(src: &R, at: u64, len: u64) -> Result<u8, Refused> {
    let mut head = [0u8; 4];
    if len < 14 {
        return Err(malformed(at, "too short for a bzip2 stream"));
    }
    src.read_exact_at(&mut head, at)?;
    if head[..3] != MAGIC || !(b'1'..=b'9').contains(&head[3]) {
        return Err(malformed(at, "no bzip2 magic"));
    }
    // Where the first stream ends: decoding it is the only way to know.
    let mut d = Decompress::new(false);
    let mut input = io::BufReader::with_capacity(256 << 10, Range::new(src, at, len));
    let mut out = vec![0u8; 256 << 10];
    loop {
        let buf = io::BufRead::fill_buf(&mut input)?;
        if buf.is_empty() {
            return Err(malformed(at + d.total_in(), "the bzip2 stream ends early"));
        }
        let before = d.total_in();
        let status = d
            .decompress(buf, &mut out)
            .map_err(|e| malformed(at + d.total_in(), format!("bzip2: {e}")))?;
        let used = (d.total_in() - before) as usize;
        io::BufRead::consume(&mut input, used);
        if status == Status::StreamEnd {
            break;
        }
    }
    if d.total_in() != len {
        return Err(Refused::Unsupported(format!(
            "several bzip2 streams (pbzip2, lbzip2 or concatenated): the first ends at byte {}",
            at + d.total_in()
        )));
    }
    Ok(head[3] - b'0')
}

/// Encode everything `src` yields as a bzip2 stream at `level` to `out`; the bytes written.
pub fn encode(level: u8, src: impl Read, mut out: impl Write) -> io::Result<u64> {
    let mut c = Compress::new(Compression::new(u32::from(level.clamp(1, 9))), 30);
    crate::pump(
        src,
        |b| out.write_all(b),
        |input, buf, eof| {
            let (i0, o0) = (c.total_in(), c.total_out());
            let action = if eof { Action::Finish } else { Action::Run };
            let status = c.compress(input, buf, action).map_err(io::Error::other)?;
            Ok((
                (c.total_in() - i0) as usize,
                (c.total_out() - o0) as usize,
                status == Status::StreamEnd,
            ))
        },
    )
}

/// The raw content of one bzip2 stream read from `src`, handed to `out` as it is decoded; its length.
pub fn decode(src: impl Read, out: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
    let mut d = Decompress::new(false);
    crate::pump(src, out, |input, buf, _| {
        let (i0, o0) = (d.total_in(), d.total_out());
        let status = d
            .decompress(input, buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok((
            (d.total_in() - i0) as usize,
            (d.total_out() - o0) as usize,
            status == Status::StreamEnd,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xz::Comparing;

    fn bzip2_cli(args: &[&str], input: &[u8]) -> Vec<u8> {
        crate::tests::run_tool("bzip2", args, input)
    }

    #[test]
    fn the_bzip2_cli_levels_are_recreated_and_others_refused() {
        let mut raw = std::fs::read("/usr/share/common-licenses/GPL-3").unwrap();
        raw.extend(std::fs::read("/bin/ls").unwrap());
        raw.extend(std::iter::repeat_n(b'a', 300_000));
        for level in [1u8, 5, 9] {
            let stream = bzip2_cli(&[&format!("-{level}")], &raw);
            assert_eq!(level_of(&stream), Ok(level));
            let mut back = Vec::new();
            decode(&stream[..], |b| {
                back.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
            assert_eq!(back, raw);
            let mut cmp = Comparing::new(&stream[..]);
            encode(level, &raw[..], &mut cmp).unwrap();
            assert!(cmp.at_end().unwrap());
        }
        // Two streams one after another: refused, naming where the first ends.
        let mut two = bzip2_cli(&["-9"], &raw[..1000]);
        let first = two.len();
        two.extend(bzip2_cli(&["-9"], &raw[1000..]));
        let e = level_of(&two).unwrap_err();
        assert!(e.contains(&format!("ends at byte {first}")), "{e}");
        // Cut short, or damaged: refused, never a panic.
        let good = bzip2_cli(&["-6"], &raw);
        for cut in [3, 14, good.len() / 2, good.len() - 1] {
            assert!(level_of(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Damaged: refused, or what still decodes as one stream comes back exactly; never a panic.
        for at in [3, 10, 40, good.len() / 3, good.len() - 5] {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            let _ = crate::packed::round_trip(&bad);
        }
    }

    fn level_of(stream: &[u8]) -> Result<u8, String> {
        level(stream, 0, stream.len() as u64).map_err(|e| e.to_string())
    }
}
