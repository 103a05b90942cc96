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

/// Append one match of the token stream: the literal run before it, its length and its distance.
#[inline(always)]
pub(crate) fn put_match(out: &mut Vec<u8>, lits: u64, len: u32, dist: u32) {
    if lits < 0x80 {
        out.push(lits as u8);
    } else {
        put_varint(out, lits);
    }
    out.push((len - 3) as u8);
    let d = dist - 1;
    if d < 0x80 {
        out.push(d as u8);
    } else {
        out.extend_from_slice(&[0x80 | (d >> 8) as u8, d as u8]);
    }
}

/// Why a cursor could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Short {
    /// The bytes end inside a value.
    End,
    /// A varint longer than 64 bits.
    Overlong,
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

    /// One match's length (3..=258) and distance (1..=32768).
    #[inline(always)]
    pub fn length_distance(&mut self) -> Result<(u32, u32), Short> {
        let len = self.u8()? as u32 + 3;
        let d0 = self.u8()? as u32;
        let dist = if d0 < 0x80 {
            d0 + 1
        } else {
            (((d0 & 0x7f) << 8) | self.u8()? as u32) + 1
        };
        Ok((len, dist))
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
    fn matches_round_trip() {
        for (lits, len, dist) in [
            (0, 3, 1),
            (5, 258, 32768),
            (200, 100, 128),
            (1 << 20, 4, 129),
        ] {
            let mut b = Vec::new();
            put_match(&mut b, lits, len, dist);
            let mut c = Cursor::new(&b);
            assert_eq!(c.varint(), Ok(lits));
            assert_eq!(c.length_distance(), Ok((len, dist)));
            assert!(c.at_end());
        }
    }
}
