//! zstd's bit writer: a port of klauspost/compress 1.15.12's `zstd/bitwriter.go`.
//!
//! Bits are packed least significant first into a 64-bit container and flushed 32 bits at a time; the sequence
//! section of a block is written with it. The bytes must match Go's exactly, so the port keeps Go's flushing
//! points and masks (the `NC` adders mask their value, the `clean` ones trust it).

/// Masks of the low 0..=16 bits, indexed by bit count (as in Go, entries 17..=25 stay 16 bits wide and the
/// rest are 0).
const BIT_MASK16: [u16; 32] = [
    0, 1, 3, 7, 0xF, 0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF,
    0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0, 0, 0, 0, 0,
    0,
];

/// Masks of the low 0..=31 bits, indexed by bit count.
pub(super) const BIT_MASK32: [u32; 32] = [
    0, 1, 3, 7, 0xF, 0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF,
    0xFFFF, 0x1FFFF, 0x3FFFF, 0x7FFFF, 0xFFFFF, 0x1FFFFF, 0x3FFFFF, 0x7FFFFF, 0xFFFFFF, 0x1FFFFFF,
    0x3FFFFFF, 0x7FFFFFF, 0xFFFFFFF, 0x1FFFFFFF, 0x3FFFFFFF, 0x7FFFFFFF,
];

/// Writes bits; the first bit written is the least significant bit of the first byte of output.
#[derive(Debug, Default)]
pub struct BitWriter {
    /// Bits not yet flushed, the oldest lowest.
    bit_container: u64,
    /// How many bits of `bit_container` are in use.
    n_bits: u8,
    /// The output the bits are appended to.
    pub out: Vec<u8>,
}

impl BitWriter {
    /// Start writing by appending to `out`, with no pending bits.
    pub fn reset(&mut self, out: Vec<u8>) {
        self.bit_container = 0;
        self.n_bits = 0;
        self.out = out;
    }

    /// Add the low `bits` (at most 16) bits of `value`; the caller has flushed recently enough for them to fit.
    pub fn add_bits16_nc(&mut self, value: u16, bits: u8) {
        let masked = value & BIT_MASK16[usize::from(bits & 31)];
        self.bit_container |= u64::from(masked) << (self.n_bits & 63);
        self.n_bits = self.n_bits.wrapping_add(bits);
    }

    /// Add the low `bits` (at most 31) bits of `value`; the caller has flushed recently enough for them to fit.
    pub fn add_bits32_nc(&mut self, value: u32, bits: u8) {
        let masked = value & BIT_MASK32[usize::from(bits & 31)];
        self.bit_container |= u64::from(masked) << (self.n_bits & 63);
        self.n_bits = self.n_bits.wrapping_add(bits);
    }

    /// Add `bits` (at most 64) bits of `value`, which holds no higher bits; 32 bits must be free.
    pub fn add_bits64_nc(&mut self, value: u64, bits: u8) {
        if bits <= 31 {
            self.add_bits32_clean(value as u32, bits);
            return;
        }
        self.add_bits32_clean(value as u32, 32);
        self.flush32();
        self.add_bits32_clean((value >> 32) as u32, bits - 32);
    }

    /// Add `bits` bits of `value`, which holds no higher bits, without checking for space.
    fn add_bits32_clean(&mut self, value: u32, bits: u8) {
        self.bit_container |= u64::from(value) << (self.n_bits & 63);
        self.n_bits = self.n_bits.wrapping_add(bits);
    }

    /// Flush 32 bits if that many are pending, so at least 32 are free.
    pub fn flush32(&mut self) {
        if self.n_bits < 32 {
            return;
        }
        self.out
            .extend_from_slice(&(self.bit_container as u32).to_le_bytes());
        self.n_bits -= 32;
        self.bit_container >>= 32;
    }

    /// Flush every pending bit, padding the last byte with zeros.
    fn flush_align(&mut self) {
        let n_bytes = (self.n_bits + 7) >> 3;
        for i in 0..n_bytes {
            self.out
                .push((self.bit_container >> (u32::from(i) * 8)) as u8);
        }
        self.n_bits = 0;
        self.bit_container = 0;
    }

    /// Write the end mark (a single 1 bit) and flush everything.
    pub fn close(&mut self) {
        self.add_bits32_clean(1, 1);
        self.flush_align();
    }
}
