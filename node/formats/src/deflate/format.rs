//! The re-creation format's primitives: varints, the token encoding, a cursor over `headers` or `tokens`.
//! The layout itself is described in the module doc of [`super`].

/// The first byte of `headers`.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// `headers`: a gzip member follows.
pub(crate) const TAG_MEMBER: u8 = 1;
/// `headers`: no more members; the trailing bytes follow.
pub(crate) const TAG_END: u8 = 0;

/// Append `v` as LEB128: seven bits a byte, low bits first, high bit set on all but the last byte.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append one item of the token stream: the literal run before a match, the match's length and distance.
/// A head byte holds both small values (run ≤ 14 and length − 3 ≤ 14 cover most items), extensions follow,
/// then the distance in two bytes: fixed widths compress better than variable ones here.
#[inline(always)]
pub(crate) fn put_match(out: &mut Vec<u8>, lits: u64, len: u32, dist: u32) {
    let run = lits.min(15) as u8;
    let l = len - 3;
    let ln = l.min(15) as u8;
    out.push(run << 4 | ln);
    if run == 15 {
        put_varint(out, lits - 15);
    }
    if ln == 15 {
        out.push((l - 15) as u8);
    }
    out.extend_from_slice(&((dist - 1) as u16).to_be_bytes());
}

/// Append the literal run that ends the token stream (when it ends with literals).
pub(crate) fn put_final_run(out: &mut Vec<u8>, lits: u64) {
    let run = lits.min(15) as u8;
    out.push(run << 4);
    if run == 15 {
        put_varint(out, lits - 15);
    }
}

/// Why a cursor could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Short {
    /// The bytes end inside a value.
    End,
    /// A varint longer than 64 bits.
    Overlong,
    /// A token out of range (a length above 258, a distance above 32768, a final run with a length).
    Range,
}

/// Reading `headers` or `tokens` front to back.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    #[inline(always)]
    pub fn u8(&mut self) -> Result<u8, Short> {
        let b = *self.bytes.get(self.pos).ok_or(Short::End)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn bytes(&mut self, n: u64) -> Result<&'a [u8], Short> {
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(Short::End);
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    #[inline(always)]
    pub fn varint(&mut self) -> Result<u64, Short> {
        let first = self.u8()?;
        if first < 0x80 {
            return Ok(first as u64);
        }
        let mut v = (first & 0x7f) as u64;
        let mut shift = 7;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(Short::Overlong);
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(Short::Overlong);
            }
        }
    }

    /// One item of the token stream: a literal run and the match after it, or None after the final run.
    #[inline(always)]
    pub fn item(&mut self) -> Result<(u64, Option<(u32, u32)>), Short> {
        let head = self.u8()?;
        let mut lits = (head >> 4) as u64;
        if lits == 15 {
            lits = self.varint()?.checked_add(15).ok_or(Short::Overlong)?;
        }
        let mut len = (head & 15) as u32 + 3;
        if self.at_end() {
            return if len == 3 {
                Ok((lits, None))
            } else {
                Err(Short::Range)
            };
        }
        if len == 18 {
            len += self.u8()? as u32;
            if len > 258 {
                return Err(Short::Range);
            }
        }
        let d = u16::from_be_bytes([self.u8()?, self.u8()?]) as u32;
        if d >= 32768 {
            return Err(Short::Range);
        }
        Ok((lits, Some((len, d + 1))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut c = Cursor::new(&b);
            assert_eq!(c.varint(), Ok(v));
            assert!(c.at_end());
        }
        assert_eq!(Cursor::new(&[0x80; 11]).varint(), Err(Short::Overlong));
        assert_eq!(Cursor::new(&[0x80, 0x80]).varint(), Err(Short::End));
    }

    #[test]
    fn items_round_trip() {
        let items = [
            (0, 3, 1),
            (5, 258, 32768),
            (14, 17, 128),
            (15, 18, 129),
            (200, 100, 2),
            (1 << 40, 4, 300),
        ];
        let mut b = Vec::new();
        for &(lits, len, dist) in &items {
            put_match(&mut b, lits, len, dist);
        }
        put_final_run(&mut b, 1234);
        let mut c = Cursor::new(&b);
        for &(lits, len, dist) in &items {
            assert_eq!(c.item(), Ok((lits, Some((len, dist)))));
        }
        assert_eq!(c.item(), Ok((1234, None)));
        assert!(c.at_end());
        // A final run with a length nibble, a length past 258, a distance past 32768.
        assert_eq!(Cursor::new(&[0x01]).item(), Err(Short::Range));
        assert_eq!(Cursor::new(&[0x0f, 241, 0, 0]).item(), Err(Short::Range));
        assert_eq!(Cursor::new(&[0x00, 0x80, 0]).item(), Err(Short::Range));
    }
}
