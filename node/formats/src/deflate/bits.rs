//! Bit-level input and output, LSB first as deflate packs them, over buffered readers and writers.
//!
//! [`BitReader`] keeps up to 64 bits in a `u64` and refills it eight bytes at a time. Past the end of the input
//! it loads at most eight zero bytes ("phantom" bytes) so lookups never branch on the end; consuming any of them
//! is what truncation looks like, and [`BitReader::overrun`] says so.

use std::io::{self, Read, Write};

/// Input buffer size: it starts small (small files are common) and doubles on each refill up to the most.
const IN_BUF_FIRST: usize = 16 << 10;
const IN_BUF: usize = 256 << 10;
/// Bytes kept before the read position when the buffer slides, so whole bytes in the bit buffer can be handed
/// back (see [`BitReader::unload`]).
const KEEP: usize = 8;

/// Reading bits from a stream.
pub(crate) struct BitReader<R> {
    reader: R,
    pub buf: Vec<u8>,
    /// Next byte of `buf` to load into `bits`.
    pub pos: usize,
    /// Bytes of `buf` that hold input.
    pub end: usize,
    eof: bool,
    /// Input offset of `buf[0]`.
    base: u64,
    /// Bits not yet consumed, first bit lowest; bits above `count` may hold the next bytes again.
    pub bits: u64,
    pub count: u32,
    /// Zero bytes loaded after the end of the input.
    phantom: u32,
}

impl<R: Read> BitReader<R> {
    pub fn new(reader: R) -> Self {
        BitReader {
            reader,
            buf: vec![0; IN_BUF_FIRST],
            pos: 0,
            end: 0,
            eof: false,
            base: 0,
            bits: 0,
            count: 0,
            phantom: 0,
        }
    }

    /// Offset in the input of the next unconsumed bit, in bits.
    pub fn bit_position(&self) -> u64 {
        (self.base + self.pos as u64 + self.phantom as u64) * 8 - self.count as u64
    }

    /// Offset in the input of the byte holding the next unconsumed bit, at most the input's length so far.
    pub fn offset(&self) -> u64 {
        (self.bit_position() / 8).min(self.base + self.end as u64)
    }

    /// Whether bits past the end of the input were consumed.
    pub fn overrun(&self) -> bool {
        self.phantom * 8 > self.count
    }

    /// Slide the buffer and read more input; false at the end of the input.
    pub fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let keep_from = self.pos.saturating_sub(KEEP);
        self.buf.copy_within(keep_from..self.end, 0);
        self.base += keep_from as u64;
        self.pos -= keep_from;
        self.end -= keep_from;
        if self.buf.len() < IN_BUF {
            self.buf.resize(IN_BUF.min(self.buf.len() * 2), 0);
        }
        let before = self.end;
        self.eof = fill_buf(&mut self.reader, &mut self.buf, &mut self.end)?;
        Ok(self.end > before)
    }

    /// Make at least 56 bits available (counting up to eight phantom zero bytes past the end).
    /// `Ok(false)`: more than eight phantom bytes would be needed, so the input was certainly overrun.
    #[inline(always)]
    pub fn refill(&mut self) -> io::Result<bool> {
        if self.end - self.pos >= 8 {
            let w = u64::from_le_bytes(self.buf[self.pos..self.pos + 8].try_into().unwrap());
            self.bits |= w << self.count;
            self.pos += ((63 - self.count) >> 3) as usize;
            self.count |= 56;
            Ok(true)
        } else {
            self.refill_slow()
        }
    }

    #[cold]
    fn refill_slow(&mut self) -> io::Result<bool> {
        if !self.eof && self.end - self.pos < 8 {
            self.fill()?;
            if self.end - self.pos >= 8 {
                return self.refill();
            }
        }
        while self.count < 56 {
            if self.pos < self.end {
                self.bits |= (self.buf[self.pos] as u64) << self.count;
                self.pos += 1;
            } else {
                if self.phantom >= 8 {
                    return Ok(false);
                }
                self.bits &= (1u64 << self.count) - 1;
                self.phantom += 1;
            }
            self.count += 8;
        }
        Ok(true)
    }

    #[inline(always)]
    pub fn consume(&mut self, n: u32) {
        self.bits >>= n;
        self.count -= n;
    }

    /// Take the bits up to the next byte boundary: (their value, how many).
    pub fn align(&mut self) -> (u8, u32) {
        let n = self.count % 8;
        let v = (self.bits & ((1 << n) - 1)) as u8;
        self.consume(n);
        (v, n)
    }

    /// At a byte boundary, hand the whole bytes still in the bit buffer back to the byte buffer, so bytes can be
    /// read directly. False if phantom bytes had been consumed (the input was overrun).
    pub fn unload(&mut self) -> bool {
        debug_assert_eq!(self.count % 8, 0);
        let n = self.count / 8;
        let fake = n.min(self.phantom);
        self.pos -= (n - fake) as usize;
        self.phantom -= fake;
        self.bits = 0;
        self.count = 0;
        self.phantom == 0
    }

    /// The next input byte (with the bit buffer unloaded), or None at the end.
    pub fn byte(&mut self) -> io::Result<Option<u8>> {
        if self.pos == self.end && !self.fill()? {
            return Ok(None);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(Some(b))
    }

    /// Up to `n` bytes from the byte buffer without consuming them (fewer only at the end of the input).
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.end - self.pos < n {
            self.fill()?;
        }
        Ok(&self.buf[self.pos..self.end.min(self.pos + n)])
    }

    /// The buffered bytes (with the bit buffer unloaded), reading more if none are: empty only at the end.
    pub fn available(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end {
            self.fill()?;
        }
        Ok(&self.buf[self.pos..self.end])
    }

    /// Consume `n` bytes returned by [`Self::available`].
    pub fn advance(&mut self, n: usize) {
        self.pos += n;
    }
}

/// Output buffer size: it starts small and doubles each time it is written out, up to the most.
const OUT_BUF_FIRST: usize = 16 << 10;
const OUT_BUF: usize = 256 << 10;

/// Writing bits to a stream.
pub(crate) struct BitWriter<W> {
    writer: W,
    /// `cap` bytes and eight of slack for [`Self::spill`].
    buf: Vec<u8>,
    cap: usize,
    pos: usize,
    bits: u64,
    count: u32,
    /// Bytes handed to `writer`.
    written: u64,
}

impl<W: Write> BitWriter<W> {
    pub fn new(writer: W) -> Self {
        BitWriter {
            writer,
            buf: vec![0; OUT_BUF_FIRST + 8],
            cap: OUT_BUF_FIRST,
            pos: 0,
            bits: 0,
            count: 0,
            written: 0,
        }
    }

    /// Bits before the next byte boundary.
    pub fn to_boundary(&self) -> u32 {
        (8 - self.count % 8) % 8
    }

    /// Append the low `n` bits of `v` (`n` ≤ 32, and `v` has no bits above them).
    #[inline(always)]
    pub fn put(&mut self, v: u64, n: u32) -> io::Result<()> {
        self.bits |= v << self.count;
        self.count += n;
        if self.count >= 32 {
            self.spill()?;
        }
        Ok(())
    }

    /// Append two codes of at most 15 bits each, packed as code | length << 16.
    #[inline(always)]
    pub fn put_codes(&mut self, a: u32, b: u32) -> io::Result<()> {
        self.bits |= ((a & 0xffff) as u64) << self.count;
        self.count += a >> 16;
        self.bits |= ((b & 0xffff) as u64) << self.count;
        self.count += b >> 16;
        if self.count >= 32 {
            self.spill()?;
        }
        Ok(())
    }

    /// Move the whole bytes of the bit buffer into the byte buffer.
    #[inline(always)]
    fn spill(&mut self) -> io::Result<()> {
        self.buf[self.pos..self.pos + 8].copy_from_slice(&self.bits.to_le_bytes());
        let bytes = self.count / 8;
        self.pos += bytes as usize;
        self.bits = if bytes == 8 {
            0
        } else {
            self.bits >> (bytes * 8)
        };
        self.count -= bytes * 8;
        if self.pos >= self.cap {
            self.drain()?;
        }
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        self.writer.write_all(&self.buf[..self.pos])?;
        self.written += self.pos as u64;
        self.pos = 0;
        if self.cap < OUT_BUF {
            self.cap = OUT_BUF.min(self.cap * 2);
            self.buf.resize(self.cap + 8, 0);
        }
        Ok(())
    }

    /// Append whole bytes; the output must be at a byte boundary.
    pub fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        debug_assert_eq!(self.count % 8, 0);
        self.spill()?;
        if self.pos + b.len() <= self.cap {
            self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
            self.pos += b.len();
        } else {
            self.drain()?;
            self.writer.write_all(b)?;
            self.written += b.len() as u64;
        }
        Ok(())
    }

    /// The writer, holding what was handed to it so far.
    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.writer
    }

    /// Write out everything; the output must be at a byte boundary.
    pub fn finish(&mut self) -> io::Result<u64> {
        debug_assert_eq!(self.count % 8, 0);
        self.spill()?;
        self.drain()?;
        self.writer.flush()?;
        Ok(self.written)
    }
}

/// Read from `reader` into `buf[*end..]` until it is full or the input ends; true at the end of the input.
pub(super) fn fill_buf(
    reader: &mut impl Read,
    buf: &mut [u8],
    end: &mut usize,
) -> io::Result<bool> {
    while *end < buf.len() {
        match reader.read(&mut buf[*end..]) {
            Ok(0) => return Ok(true),
            Ok(n) => *end += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}
