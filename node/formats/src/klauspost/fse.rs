//! FSE encoders for a block's sequence codes: a port of klauspost/compress 1.15.12's `zstd/fse_encoder.go`,
//! the encoder tables of `zstd/fse_predefined.go`, and `zstd/seqenc.go` (the literal-length, match-length and
//! offset codes, and the current/previous encoder pairs a stream carries from block to block).
//!
//! The bytes a block encoder writes with these must match Go's exactly, so everything that decides them is
//! kept as Go computes it: the normalization (both methods, with their rounding tables), the table-log choice,
//! the cost estimates that pick between a new, the previous and the predefined table, and Go's fixed-width
//! arithmetic (wrapping, and shifts by the width or more giving 0). Where Go would panic on an impossible
//! input (an index out of range), this returns an error instead. Go fields that are written but never read
//! (`zeroBits`, `clearCount`, `maxBits`) are left out.

use super::bits::BitWriter;

/// The largest table log the encoder uses.
const MAX_ENC_TABLE_LOG: u8 = 8;
/// The smallest table log the encoder uses.
const MIN_ENC_TABLE_LOG: u8 = 5;
/// The largest literal-length code.
pub const MAX_LL_CODE: u8 = 35;
/// The largest match-length code.
pub const MAX_ML_CODE: u8 = 52;
/// The largest offset code a 32-bit offset can have.
pub const MAX_OF_CODE: u8 = 31;

/// An internal error: Go returns (or panics with) these only when its input broke an invariant.
pub type InternalError = &'static str;

/// How one symbol moves the encoder's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SymbolTransform {
    /// Added to the state to find how many bits it outputs (in the high 16 bits).
    pub delta_nb_bits: u32,
    /// Added to the shifted state to find the next state's index.
    pub delta_find_state: i16,
    /// Extra bits the code's value carries.
    pub out_bits: u8,
}

/// An FSE encoder for one kind of code (Go's `fseEncoder` with its `cTable`).
#[derive(Clone, Debug)]
pub struct FseEncoder {
    /// Length of the active part of the symbol tables.
    symbol_len: u16,
    /// The table log in use (0 for RLE).
    actual_table_log: u8,
    /// Next states, sorted by symbol; `state_table_len` of them are in use (1 for RLE).
    state_table: [u16; 256],
    /// The live length of `state_table`.
    state_table_len: usize,
    /// Each symbol's transform.
    symbol_tt: [SymbolTransform; 256],
    /// Count of the most frequent symbol.
    max_count: usize,
    /// This encoder is for a single repeated symbol.
    use_rle: bool,
    /// This is a predefined table (never written, never rebuilt).
    pre_defined: bool,
    /// This encoder holds the previous block's table (never rebuilt, written as "repeat").
    re_used: bool,
    /// The RLE symbol.
    rle_val: u8,
    /// Histogram of the block's codes.
    count: [u32; 256],
    /// Normalized counts (-1 for a low-probability symbol).
    norm: [i16; 256],
}

impl Default for FseEncoder {
    fn default() -> FseEncoder {
        FseEncoder {
            symbol_len: 0,
            actual_table_log: 0,
            state_table: [0; 256],
            state_table_len: 0,
            symbol_tt: [SymbolTransform::default(); 256],
            max_count: 0,
            use_rle: false,
            pre_defined: false,
            re_used: false,
            rle_val: 0,
            count: [0; 256],
            norm: [0; 256],
        }
    }
}

/// Go's `bits.Len32(v) - 1` as a `uint32`: the index of the highest set bit, `u32::MAX` for 0.
pub fn high_bit(v: u32) -> u32 {
    (32 - v.leading_zeros()).wrapping_sub(1)
}

/// Go's `v << n` on `uint32`: 0 once `n` reaches the width.
fn shl32(v: u32, n: u32) -> u32 {
    v.checked_shl(n).unwrap_or(0)
}

/// Go's `v >> n` on `int32`: the sign once `n` reaches the width.
fn sar32(v: i32, n: u32) -> i32 {
    v.checked_shr(n).unwrap_or(if v < 0 { -1 } else { 0 })
}

/// The step with which symbols are spread over a table.
fn table_step(table_size: u32) -> u32 {
    (table_size >> 1) + (table_size >> 3) + 3
}

/// Thresholds (in 1/1,000,000 of a step) above which a small probability is rounded up.
const RTB_TABLE: [u32; 8] = [0, 473195, 504333, 520860, 550000, 700000, 750000, 830000];

impl FseEncoder {
    /// The histogram to fill before [`histogram_finished`](Self::histogram_finished).
    pub fn histogram(&mut self) -> &mut [u32; 256] {
        &mut self.count
    }

    /// The histogram is filled: `max_symbol` is the highest symbol present, `max_count` the largest count.
    pub fn histogram_finished(&mut self, max_symbol: u8, max_count: usize) {
        self.max_count = max_count;
        self.symbol_len = u16::from(max_symbol) + 1;
    }

    /// The histogram's active part.
    pub fn active_histogram(&self) -> &[u32] {
        &self.count[..usize::from(self.symbol_len)]
    }

    /// Whether this encoder is for a single repeated symbol.
    pub fn use_rle(&self) -> bool {
        self.use_rle
    }

    /// A symbol's transform.
    pub fn transform(&self, symbol: u8) -> SymbolTransform {
        self.symbol_tt[usize::from(symbol)]
    }

    /// Build the state table and symbol transforms from the normalized counts.
    fn build_ctable(&mut self) -> Result<(), InternalError> {
        let table_size: u32 = 1 << self.actual_table_log;
        let mut high_threshold = table_size - 1;
        let mut cumul = [0i16; 257];
        let mut table_symbol = [0u8; 256];
        let symbol_len = usize::from(self.symbol_len);
        if symbol_len == 0 || table_size > 256 {
            return Err("invalid table dimensions");
        }

        // Go's `allocCtable`: the state table's live part is the table.
        self.state_table_len = table_size as usize;
        // Symbol start positions; low-probability symbols take the table's top cells.
        for u in 0..symbol_len {
            let v = self.norm[u];
            if v == -1 {
                cumul[u + 1] = cumul[u].wrapping_add(1);
                *table_symbol
                    .get_mut(high_threshold as usize)
                    .ok_or("high threshold out of range")? = u as u8;
                high_threshold = high_threshold.wrapping_sub(1);
            } else {
                cumul[u + 1] = cumul[u].wrapping_add(v);
            }
        }
        if i64::from(cumul[symbol_len]) != i64::from(table_size) {
            return Err("internal error: expected cumul[s.symbolLen] == tableSize");
        }
        cumul[symbol_len] = (table_size as i16).wrapping_add(1);

        // Spread symbols.
        let step = table_step(table_size);
        let table_mask = table_size - 1;
        let mut position: u32 = 0;
        for (symbol, &v) in self.norm[..symbol_len].iter().enumerate() {
            for _ in 0..v.max(0) {
                table_symbol[position as usize] = symbol as u8;
                position = (position + step) & table_mask;
                while position > high_threshold {
                    position = (position + step) & table_mask;
                }
            }
        }
        if position != 0 {
            return Err("position!=0");
        }

        // Build the state table.
        for (u, &v) in table_symbol[..table_size as usize].iter().enumerate() {
            let slot = &mut cumul[usize::from(v)];
            let index = usize::try_from(*slot)
                .ok()
                .filter(|&i| i < self.state_table_len)
                .ok_or("state table index out of range")?;
            self.state_table[index] = (table_size as usize + u) as u16;
            *slot = slot.wrapping_add(1);
        }

        // Build the symbol transformation table.
        let mut total: i16 = 0;
        let table_log = u32::from(self.actual_table_log);
        let tl = (table_log << 16).wrapping_sub(1 << table_log);
        for (tt, &v) in self.symbol_tt[..symbol_len]
            .iter_mut()
            .zip(&self.norm[..symbol_len])
        {
            match v {
                0 => {}
                -1 | 1 => {
                    tt.delta_nb_bits = tl;
                    tt.delta_find_state = total.wrapping_sub(1);
                    total = total.wrapping_add(1);
                }
                _ => {
                    let max_bits_out = table_log.wrapping_sub(high_bit(v.wrapping_sub(1) as u32));
                    let min_state_plus = shl32(v as u32, max_bits_out);
                    tt.delta_nb_bits = shl32(max_bits_out, 16).wrapping_sub(min_state_plus);
                    tt.delta_find_state = total.wrapping_sub(v);
                    total = total.wrapping_add(v);
                }
            }
        }
        if total != table_size as i16 {
            return Err("total mismatch");
        }
        Ok(())
    }

    /// Make this an encoder for `val` repeated.
    pub fn set_rle(&mut self, val: u8) {
        self.actual_table_log = 0;
        self.state_table_len = 1;
        // Go zeroes this cell when a stream state is initialised from the table; nothing reads it before.
        self.state_table[0] = 0;
        self.symbol_tt[usize::from(val)] = SymbolTransform::default();
        self.rle_val = val;
        self.use_rle = true;
    }

    /// Set each symbol's extra bits from `transform` (code to bit count), or to the symbol itself if `None`.
    pub fn set_bits(&mut self, transform: Option<&[u8]>) -> Result<(), InternalError> {
        if self.re_used || self.pre_defined {
            return Ok(());
        }
        const OUT_OF_RANGE: InternalError = "code out of range of its bits table";
        if self.use_rle {
            let bits = match transform {
                None => self.rle_val,
                Some(t) => *t.get(usize::from(self.rle_val)).ok_or(OUT_OF_RANGE)?,
            };
            self.symbol_tt[usize::from(self.rle_val)].out_bits = bits;
            return Ok(());
        }
        let symbol_len = usize::from(self.symbol_len);
        match transform {
            None => {
                for (i, tt) in self.symbol_tt[..symbol_len].iter_mut().enumerate() {
                    tt.out_bits = i as u8;
                }
            }
            Some(t) => {
                let t = t.get(..symbol_len).ok_or(OUT_OF_RANGE)?;
                for (tt, &bits) in self.symbol_tt.iter_mut().zip(t) {
                    tt.out_bits = bits;
                }
            }
        }
        Ok(())
    }

    /// Normalize the counts of `length` codes to the table size and build the tables (or note RLE).
    pub fn normalize_count(&mut self, length: usize) -> Result<(), InternalError> {
        if self.re_used {
            return Ok(());
        }
        if length == 0 {
            return Err("normalizing no symbols");
        }
        self.optimal_table_log(length);
        let table_log = u32::from(self.actual_table_log);
        let scale = 62 - u64::from(table_log);
        let step = (1u64 << 62) / length as u64;
        let v_step = 1u64 << (scale - 20);
        let mut still_to_distribute: i16 = 1 << table_log;
        let mut largest = 0usize;
        let mut largest_p: i16 = 0;
        let low_threshold = (length >> table_log) as u32;

        if self.max_count == length {
            self.use_rle = true;
            return Ok(());
        }
        self.use_rle = false;
        let symbol_len = usize::from(self.symbol_len);
        for i in 0..symbol_len {
            let cnt = self.count[i];
            if cnt == 0 {
                self.norm[i] = 0;
                continue;
            }
            if cnt <= low_threshold {
                self.norm[i] = -1;
                still_to_distribute = still_to_distribute.wrapping_sub(1);
            } else {
                let scaled = u64::from(cnt).wrapping_mul(step);
                let mut proba = (scaled >> scale) as i16;
                if proba < 8 {
                    let rtb = usize::try_from(proba).map_err(|_| "negative probability")?;
                    let rest_to_beat = v_step.wrapping_mul(u64::from(RTB_TABLE[rtb]));
                    let v = scaled.wrapping_sub((proba as u64) << scale);
                    if v > rest_to_beat {
                        proba += 1;
                    }
                }
                if proba > largest_p {
                    largest_p = proba;
                    largest = i;
                }
                self.norm[i] = proba;
                still_to_distribute = still_to_distribute.wrapping_sub(proba);
            }
        }

        if still_to_distribute.wrapping_neg() >= (self.norm[largest] >> 1) {
            // Corner case: another normalization method is needed.
            self.normalize_count2(length)?;
            return self.build_ctable();
        }
        self.norm[largest] = self.norm[largest].wrapping_add(still_to_distribute);
        self.build_ctable()
    }

    /// The secondary normalization method, for when the first one fails.
    fn normalize_count2(&mut self, length: usize) -> Result<(), InternalError> {
        const NOT_YET_ASSIGNED: i16 = -2;
        let table_log = u32::from(self.actual_table_log);
        let symbol_len = usize::from(self.symbol_len);
        let mut distributed: u32 = 0;
        let mut total = length as u32;
        let low_threshold = total >> table_log;
        let mut low_one = total.wrapping_mul(3) >> (table_log + 1);

        for i in 0..symbol_len {
            let cnt = self.count[i];
            if cnt == 0 {
                self.norm[i] = 0;
                continue;
            }
            if cnt <= low_threshold {
                self.norm[i] = -1;
                distributed += 1;
                total = total.wrapping_sub(cnt);
                continue;
            }
            if cnt <= low_one {
                self.norm[i] = 1;
                distributed += 1;
                total = total.wrapping_sub(cnt);
                continue;
            }
            self.norm[i] = NOT_YET_ASSIGNED;
        }
        let mut to_distribute = (1u32 << table_log).wrapping_sub(distributed);

        if total
            .checked_div(to_distribute)
            .ok_or("nothing to distribute")?
            > low_one
        {
            // Risk of rounding to zero.
            low_one = total
                .wrapping_mul(3)
                .checked_div(to_distribute.wrapping_mul(2))
                .ok_or("nothing to distribute")?;
            for i in 0..symbol_len {
                if self.norm[i] == NOT_YET_ASSIGNED && self.count[i] <= low_one {
                    self.norm[i] = 1;
                    distributed += 1;
                    total = total.wrapping_sub(self.count[i]);
                }
            }
            to_distribute = (1u32 << table_log).wrapping_sub(distributed);
        }
        if distributed == u32::from(self.symbol_len) + 1 {
            // All values are pretty poor: give all remaining points to the most frequent symbol.
            let mut max_v = 0;
            let mut max_c = 0;
            for (i, &cnt) in self.count[..symbol_len].iter().enumerate() {
                if cnt > max_c {
                    max_v = i;
                    max_c = cnt;
                }
            }
            self.norm[max_v] = self.norm[max_v].wrapping_add(to_distribute as i16);
            return Ok(());
        }

        if total == 0 {
            // Every symbol was low enough for lowOne or lowThreshold: hand out the rest round robin.
            if to_distribute > 0 && !self.norm[..symbol_len].iter().any(|&n| n > 0) {
                return Err("no symbol to distribute to");
            }
            let mut i = 0;
            while to_distribute > 0 {
                if self.norm[i] > 0 {
                    to_distribute -= 1;
                    self.norm[i] += 1;
                }
                i = (i + 1) % symbol_len;
            }
            return Ok(());
        }

        let v_step_log = 62 - u64::from(table_log);
        let mid = (1u64 << (v_step_log - 1)) - 1;
        let r_step = ((1u64 << v_step_log).wrapping_mul(u64::from(to_distribute)))
            .wrapping_add(mid)
            / u64::from(total);
        let mut tmp_total = mid;
        for i in 0..symbol_len {
            if self.norm[i] == NOT_YET_ASSIGNED {
                let end = tmp_total.wrapping_add(u64::from(self.count[i]).wrapping_mul(r_step));
                let s_start = (tmp_total >> v_step_log) as u32;
                let s_end = (end >> v_step_log) as u32;
                let weight = s_end.wrapping_sub(s_start);
                if weight < 1 {
                    return Err("weight < 1");
                }
                self.norm[i] = weight as i16;
                tmp_total = end;
            }
        }
        Ok(())
    }

    /// Choose the table log for `length` codes.
    fn optimal_table_log(&mut self, length: usize) {
        let mut table_log = MAX_ENC_TABLE_LOG;
        let min_bits_src = high_bit(length as u32).wrapping_add(1);
        let min_bits_symbols = high_bit(u32::from(self.symbol_len.wrapping_sub(1))).wrapping_add(2);
        let mut min_bits = min_bits_symbols as u8;
        if min_bits_src < min_bits_symbols {
            min_bits = min_bits_src as u8;
        }

        let max_bits_src = (high_bit((length as u32).wrapping_sub(1)) as u8).wrapping_sub(2);
        if max_bits_src < table_log {
            // Accuracy can be reduced.
            table_log = max_bits_src;
        }
        if min_bits > table_log {
            table_log = min_bits;
        }
        // Need a minimum to safely represent all symbol values.
        self.actual_table_log = table_log.clamp(MIN_ENC_TABLE_LOG, MAX_ENC_TABLE_LOG);
    }

    /// Append the table description (the normalized counts) to `out`: the RLE symbol for RLE, nothing for a
    /// predefined or repeated table.
    pub fn write_count(&self, out: &mut Vec<u8>) -> Result<(), InternalError> {
        if self.use_rle {
            out.push(self.rle_val);
            return Ok(());
        }
        if self.pre_defined || self.re_used {
            return Ok(());
        }

        let table_log = self.actual_table_log;
        let table_size: i32 = 1 << table_log;
        let mut previous0 = false;
        let mut charnum: u16 = 0;
        // Maximum header size plus 2 extra bytes for the final output if bitCount == 0.
        let max_header_size =
            ((usize::from(self.symbol_len) * usize::from(table_log)) >> 3) + 3 + 2;

        // Write the table size.
        let mut bit_stream = u32::from(table_log.wrapping_sub(MIN_ENC_TABLE_LOG));
        let mut bit_count: u32 = 4;
        let mut remaining = (table_size + 1) as i16; // +1 for extra accuracy
        let mut threshold = table_size as i16;
        let mut nb_bits = u32::from(table_log) + 1;
        let mut out_p = out.len();
        out.resize(out_p + max_header_size, 0);

        /// Store two bytes of the bit stream, as Go's slice writes (which would panic past the end) do.
        fn put16(out: &mut [u8], at: usize, bits: u32) -> Result<(), InternalError> {
            let dst = out.get_mut(at..at + 2).ok_or("table header overflow")?;
            dst.copy_from_slice(&(bits as u16).to_le_bytes());
            Ok(())
        }
        let norm = |charnum: u16| {
            self.norm
                .get(usize::from(charnum))
                .copied()
                .ok_or("symbol out of range")
        };

        while remaining > 1 {
            if previous0 {
                let mut start = charnum;
                while norm(charnum)? == 0 {
                    charnum = charnum.wrapping_add(1);
                }
                while charnum >= start.wrapping_add(24) {
                    start = start.wrapping_add(24);
                    bit_stream = bit_stream.wrapping_add(shl32(0xFFFF, bit_count));
                    put16(out, out_p, bit_stream)?;
                    out_p += 2;
                    bit_stream >>= 16;
                }
                while charnum >= start.wrapping_add(3) {
                    start = start.wrapping_add(3);
                    bit_stream = bit_stream.wrapping_add(shl32(3, bit_count));
                    bit_count += 2;
                }
                bit_stream = bit_stream
                    .wrapping_add(shl32(u32::from(charnum.wrapping_sub(start)), bit_count));
                bit_count += 2;
                if bit_count > 16 {
                    put16(out, out_p, bit_stream)?;
                    out_p += 2;
                    bit_stream >>= 16;
                    bit_count -= 16;
                }
            }

            let mut count = norm(charnum)?;
            charnum = charnum.wrapping_add(1);
            let max = threshold
                .wrapping_mul(2)
                .wrapping_sub(1)
                .wrapping_sub(remaining);
            if count < 0 {
                remaining = remaining.wrapping_add(count);
            } else {
                remaining = remaining.wrapping_sub(count);
            }
            count = count.wrapping_add(1); // +1 for extra accuracy
            if count >= threshold {
                count = count.wrapping_add(max); // [0..max[ [max..threshold[ (...) [threshold+max 2*threshold[
            }
            bit_stream = bit_stream.wrapping_add(shl32(count as u32, bit_count));
            bit_count = bit_count.wrapping_add(nb_bits);
            if count < max {
                bit_count = bit_count.wrapping_sub(1);
            }

            previous0 = count == 1;
            if remaining < 1 {
                return Err("internal error: remaining < 1");
            }
            while remaining < threshold {
                nb_bits = nb_bits.wrapping_sub(1);
                threshold >>= 1;
            }

            if bit_count > 16 {
                put16(out, out_p, bit_stream)?;
                out_p += 2;
                bit_stream >>= 16;
                bit_count -= 16;
            }
        }

        put16(out, out_p, bit_stream)?;
        out_p += bit_count.div_ceil(8) as usize;

        if charnum > self.symbol_len {
            return Err("internal error: charnum > s.symbolLen");
        }
        out.truncate(out_p);
        Ok(())
    }

    /// Approximate cost of `symbol` in bits, with `accuracy_log` fractional bits.
    fn bit_cost(&self, symbol: u8, accuracy_log: u32) -> u32 {
        let delta_nb_bits = self.symbol_tt[usize::from(symbol)].delta_nb_bits;
        let min_nb_bits = delta_nb_bits >> 16;
        let threshold = min_nb_bits.wrapping_add(1) << 16;
        let table_log = u32::from(self.actual_table_log);
        let table_size = 1u32 << table_log;
        let delta_from_threshold = threshold.wrapping_sub(delta_nb_bits.wrapping_add(table_size));
        // Linear interpolation (very approximate).
        let normalized_delta_from_threshold = (delta_from_threshold << accuracy_log) >> table_log;
        let bit_multiplier = 1u32 << accuracy_log;
        min_nb_bits
            .wrapping_add(1)
            .wrapping_mul(bit_multiplier)
            .wrapping_sub(normalized_delta_from_threshold)
    }

    /// The cost in bits of coding the distribution `hist` (up to its last non-zero symbol) with this table;
    /// `u32::MAX` if the table cannot code it.
    pub fn approx_size(&self, hist: &[u32]) -> u32 {
        if usize::from(self.symbol_len) < hist.len() {
            return u32::MAX;
        }
        if self.use_rle {
            // RLE encoders are never reused.
            return u32::MAX;
        }
        const ACCURACY_LOG: u32 = 8;
        let bad_cost = (u32::from(self.actual_table_log) + 1) << ACCURACY_LOG;
        let mut cost: u32 = 0;
        for (i, &v) in hist.iter().enumerate() {
            if v == 0 {
                continue;
            }
            if self.norm[i] == 0 {
                return u32::MAX;
            }
            let bit_cost = self.bit_cost(i as u8, ACCURACY_LOG);
            if bit_cost > bad_cost {
                return u32::MAX;
            }
            cost = cost.wrapping_add(v.wrapping_mul(bit_cost));
        }
        cost >> ACCURACY_LOG
    }

    /// The largest size of this table's description in bits (an estimate, to penalize new tables).
    pub fn max_header_size(&self) -> u32 {
        if self.pre_defined {
            return 0;
        }
        if self.use_rle {
            return 8;
        }
        (((u32::from(self.symbol_len) * u32::from(self.actual_table_log)) >> 3) + 3) * 8
    }

    /// The next state stored at `index`, which Go would index unchecked.
    fn state_at(&self, index: i32) -> Result<u16, InternalError> {
        usize::try_from(index)
            .ok()
            .filter(|&i| i < self.state_table_len)
            .map(|i| self.state_table[i])
            .ok_or("state index out of range")
    }

    /// The initial state for a stream whose first (last coded) symbol has transform `first`.
    pub fn init_state(&self, first: SymbolTransform) -> Result<u16, InternalError> {
        if self.state_table_len == 1 {
            // RLE.
            return Ok(0);
        }
        let nb_bits_out = first.delta_nb_bits.wrapping_add(1 << 15) >> 16;
        let im = (nb_bits_out << 16).wrapping_sub(first.delta_nb_bits) as i32;
        let lu = sar32(im, nb_bits_out).wrapping_add(i32::from(first.delta_find_state));
        self.state_at(lu)
    }

    /// Code a symbol with transform `tt`: write the state's low bits and return the next state.
    pub fn encode(
        &self,
        state: u16,
        tt: SymbolTransform,
        wr: &mut BitWriter,
    ) -> Result<u16, InternalError> {
        let nb_bits_out = u32::from(state).wrapping_add(tt.delta_nb_bits) >> 16;
        let dst_state =
            i32::from(state >> (nb_bits_out & 15)).wrapping_add(i32::from(tt.delta_find_state));
        wr.add_bits16_nc(state, nb_bits_out as u8);
        self.state_at(dst_state)
    }

    /// Write the final state (Go's `cState.flush`).
    pub fn flush(&self, state: u16, wr: &mut BitWriter) {
        wr.flush32();
        wr.add_bits16_nc(state, self.actual_table_log);
    }
}

/// The three kinds of sequence codes, indexing the predefined tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    /// Literal-length codes.
    LiteralLengths = 0,
    /// Offset codes.
    Offsets = 1,
    /// Match-length codes.
    MatchLengths = 2,
}

/// The predefined (default) distributions of the zstd format, as encoders.
pub fn predefined(kind: TableKind) -> &'static FseEncoder {
    static TABLES: std::sync::OnceLock<[FseEncoder; 3]> = std::sync::OnceLock::new();
    &TABLES.get_or_init(|| {
        [
            predefined_encoder(6, &PREDEF_LL_NORM, Some(&LL_BITS_TABLE)),
            predefined_encoder(5, &PREDEF_OF_NORM, None),
            predefined_encoder(6, &PREDEF_ML_NORM, Some(&ML_BITS_TABLE)),
        ]
    })[kind as usize]
}

/// Build a predefined encoder from its table log and normalized counts.
fn predefined_encoder(table_log: u8, norm: &[i16], bits: Option<&[u8]>) -> FseEncoder {
    let mut enc = FseEncoder {
        actual_table_log: table_log,
        symbol_len: norm.len() as u16,
        ..FseEncoder::default()
    };
    enc.norm[..norm.len()].copy_from_slice(norm);
    let built = enc.build_ctable().and_then(|()| enc.set_bits(bits));
    assert!(built.is_ok(), "predefined FSE tables are valid: {built:?}");
    enc.pre_defined = true;
    enc
}

/// Default distribution of literal-length codes.
const PREDEF_LL_NORM: [i16; 36] = [
    4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1,
    -1, -1, -1, -1,
];
/// Default distribution of offset codes.
const PREDEF_OF_NORM: [i16; 29] = [
    1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1,
];
/// Default distribution of match-length codes.
const PREDEF_ML_NORM: [i16; 53] = [
    1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1,
];

/// Which encoder of a pair a block used for one kind of code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Used {
    /// The current one (a new table, or RLE).
    Current,
    /// The previous block's table, repeated.
    Previous,
    /// Neither (the predefined table, or a new stream).
    Neither,
}

/// The current encoder of one kind of code, and the previous block's, which may be repeated.
#[derive(Clone, Debug, Default)]
pub struct CoderPair {
    /// Where this block's table is built.
    pub cur: Box<FseEncoder>,
    /// The table the previous block used, if it may be repeated.
    pub prev: Box<FseEncoder>,
}

impl CoderPair {
    /// After a block: make the table it used the previous one, with a fresh current one (Go's
    /// `compareSwap`).
    fn set_prev(&mut self, used: Used) {
        match used {
            Used::Current => {
                std::mem::swap(&mut self.cur, &mut self.prev);
                self.cur.re_used = false;
                self.prev.re_used = true;
            }
            Used::Previous => {}
            // Ensure the previous table cannot be reused by accident.
            Used::Neither => self.prev.symbol_len = 0,
        }
    }
}

/// A block's sequence encoders (Go's `seqCoders`).
#[derive(Clone, Debug, Default)]
pub struct SeqCoders {
    /// Literal lengths.
    pub ll: CoderPair,
    /// Offsets.
    pub of: CoderPair,
    /// Match lengths.
    pub ml: CoderPair,
}

impl SeqCoders {
    /// Record which encoders a block used (Go's `setPrev`, in its order).
    pub fn set_prev(&mut self, ll: Used, ml: Used, of: Used) {
        self.ll.set_prev(ll);
        self.ml.set_prev(ml);
        self.of.set_prev(of);
    }
}

/// Literal-length code of small lengths.
const LL_CODE_TABLE: [u8; 64] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 16, 17, 17, 18, 18, 19, 19, 20, 20,
    20, 20, 21, 21, 21, 21, 22, 22, 22, 22, 22, 22, 22, 22, 23, 23, 23, 23, 23, 23, 23, 23, 24, 24,
    24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24,
];

/// Extra bits of each literal-length code.
pub const LL_BITS_TABLE: [u8; MAX_LL_CODE as usize + 1] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11,
    12, 13, 14, 15, 16,
];

/// The code of a literal length.
pub fn ll_code(lit_len: u32) -> u8 {
    const LL_DELTA_CODE: u8 = 19;
    if lit_len <= 63 {
        return LL_CODE_TABLE[lit_len as usize];
    }
    (high_bit(lit_len) as u8).wrapping_add(LL_DELTA_CODE)
}

/// Match-length code of small lengths.
const ML_CODE_TABLE: [u8; 128] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31, 32, 32, 33, 33, 34, 34, 35, 35, 36, 36, 36, 36, 37, 37, 37, 37, 38, 38,
    38, 38, 38, 38, 38, 38, 39, 39, 39, 39, 39, 39, 39, 39, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40,
    40, 40, 40, 40, 40, 40, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 42, 42,
    42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42, 42,
    42, 42, 42, 42, 42, 42,
];

/// Extra bits of each match-length code.
pub const ML_BITS_TABLE: [u8; MAX_ML_CODE as usize + 1] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];

/// The code of a match length, given minus the minimum match (3), as sequences store it.
pub fn ml_code(ml_base: u32) -> u8 {
    const ML_DELTA_CODE: u8 = 36;
    if ml_base <= 127 {
        return ML_CODE_TABLE[ml_base as usize];
    }
    (high_bit(ml_base) as u8).wrapping_add(ML_DELTA_CODE)
}

/// The code of an offset (as sequences store it: real offset + 3, or a repeat index 1..=3); 255 for 0.
pub fn of_code(offset: u32) -> u8 {
    high_bit(offset) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_format() {
        // Literal lengths: codes 0..=15 are the length; then baselines 16, 18, 20, 22, 24, 28, 32, 40, 48, 64...
        assert_eq!(ll_code(15), 15);
        assert_eq!(ll_code(16), 16);
        assert_eq!(ll_code(17), 16);
        assert_eq!(ll_code(24), 20);
        assert_eq!(ll_code(63), 24);
        assert_eq!(ll_code(64), 25);
        assert_eq!(ll_code(127), 25);
        assert_eq!(ll_code(128), 26);
        assert_eq!(ll_code(65535), 34);
        assert_eq!(ll_code(65536), 35);
        // Match lengths (minus 3): codes 0..=31 are the length; code 52 starts at 65536.
        assert_eq!(ml_code(31), 31);
        assert_eq!(ml_code(32), 32);
        assert_eq!(ml_code(127), 42);
        assert_eq!(ml_code(128), 43);
        assert_eq!(ml_code(65536), 52);
        assert_eq!(of_code(1), 0);
        assert_eq!(of_code(3), 1);
        assert_eq!(of_code(4), 2);
        assert_eq!(of_code(u32::MAX), 31);
        assert_eq!(of_code(0), 255);
        // Every code's baseline, plus its extra bits, reaches the next code's baseline.
        for code in 16..MAX_LL_CODE {
            let base = (16..).find(|&l| ll_code(l) == code).unwrap();
            assert_eq!(
                ll_code(base + (1 << LL_BITS_TABLE[usize::from(code)])),
                code + 1,
                "ll code {code}"
            );
        }
        for code in 32..MAX_ML_CODE {
            let base = (32..).find(|&l| ml_code(l) == code).unwrap();
            assert_eq!(
                ml_code(base + (1 << ML_BITS_TABLE[usize::from(code)])),
                code + 1,
                "ml code {code}"
            );
        }
    }

    #[test]
    fn predefined_tables_build() {
        for kind in [
            TableKind::LiteralLengths,
            TableKind::Offsets,
            TableKind::MatchLengths,
        ] {
            let enc = predefined(kind);
            assert!(enc.pre_defined);
            assert_eq!(enc.state_table_len, 1 << enc.actual_table_log);
        }
        assert_eq!(predefined(TableKind::Offsets).transform(28).out_bits, 28);
        assert_eq!(
            predefined(TableKind::MatchLengths).transform(52).out_bits,
            16
        );
    }

    /// Fill an encoder's histogram from `codes` and normalize it.
    fn normalized(codes: &[u8]) -> FseEncoder {
        let mut enc = FseEncoder::default();
        for &c in codes {
            enc.histogram()[usize::from(c)] += 1;
        }
        let max_symbol = *codes.iter().max().unwrap();
        let max_count = *enc.count.iter().max().unwrap() as usize;
        enc.histogram_finished(max_symbol, max_count);
        enc.normalize_count(codes.len()).unwrap();
        enc
    }

    #[test]
    fn normalized_counts_fill_the_table() {
        let mut codes = Vec::new();
        for (symbol, n) in [(0u8, 1000), (1, 1), (2, 2), (5, 37), (9, 500), (20, 3)] {
            codes.extend(std::iter::repeat_n(symbol, n));
        }
        let enc = normalized(&codes);
        assert!(!enc.use_rle);
        let total: i32 = enc.norm[..usize::from(enc.symbol_len)]
            .iter()
            .map(|&n| i32::from(n.abs()))
            .sum();
        assert_eq!(total, 1 << enc.actual_table_log);
        assert_eq!(enc.norm[1], -1);
        assert!(normalized(&[7; 10]).use_rle);
    }
}
