//! Huffman compression of zstd literals: a port of the encoder of klauspost/compress 1.15.12's `huff0` package
//! (`compress.go`, `huff0.go`, `bitwriter.go`), with the part of its `fse` package that compresses a Huffman
//! table's weights.
//!
//! It exists so zstd frames written by klauspost's Go encoder (skopeo, buildkit) can be re-created bit for bit
//! from their content, so its output must be byte-identical to Go's for every input and every sequence of calls
//! on one [`Scratch`]: the table kept from the last call decides whether the next one reuses it. The port keeps
//! Go's arithmetic (its fixed-width integers wrap, its shifts by the width or more give 0) and its quirks rather
//! than fixing them: the reuse test of [`ReusePolicy::Allow`] compares the old table's estimate with the new
//! one's without counting the new table's own size, and a [`ReusePolicy::Prefer`] call whose trial with the old
//! table comes out too big ends [`Error::Incompressible`], because the trial's bytes stay in front of the new
//! table.
//!
//! Left out, because the compress path of 1.15.12 never reaches them: a histogram supplied by the caller (huff0
//! has no way to set one, so `canUseTable` is never called), `validateTable` (debugging only), the parallel
//! `compress4Xp` (disabled by `if false`), `EstimateSizes`, `TransferCTable` (zstd dictionaries) and decoding.

use std::fmt;

/// The largest input Go accepts (`BlockSizeMax`); zstd blocks hold at most 128 KiB.
pub const BLOCK_SIZE_MAX: usize = (1 << 18) - 1;
/// Largest Huffman code length; zstd's format limits it to 11.
const TABLE_LOG_MAX: u8 = 11;
/// Table log used when [`Scratch::table_log`] is 0.
const TABLE_LOG_DEFAULT: u8 = 11;
/// Smallest table log accepted and chosen.
const MIN_TABLE_LOG: u8 = 5;
/// Table log the FSE compression of a table's weights aims for.
const MAX_FSE_TABLE_LOG: u8 = 6;
/// Size of the Huffman tree's node array, without its leading sentinel.
const HUFF_NODES_LEN: usize = 512;
/// Mask keeping a node position inside the array, as Go's `huffNodesMask`.
const HUFF_NODES_MASK: u32 = HUFF_NODES_LEN as u32 - 1;

/// When a call may encode with the table kept from the previous successful call instead of a new one (the output
/// then holds no table and `reused` is true).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReusePolicy {
    /// Reuse when the estimated size says it is no worse (`ReusePolicyAllow`, Go's zero value).
    #[default]
    Allow,
    /// Reuse whenever the table can encode the input and the result is small enough (`ReusePolicyPrefer`).
    Prefer,
    /// Forget the previous table and build a new one (`ReusePolicyNone`); zstd sets it for a new frame.
    None,
    /// Reuse or fail with [`Error::Incompressible`] (`ReusePolicyMust`).
    Must,
}

/// Why Go's `Compress1X`/`Compress4X` returned no output.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// `ErrIncompressible`: the output would not be small enough; zstd stores the literals raw.
    Incompressible,
    /// `ErrUseRLE`: the input is one byte value repeated (or empty); zstd stores it as an RLE literal.
    UseRle,
    /// `ErrTooBig`: the input is longer than [`BLOCK_SIZE_MAX`].
    TooBig,
    /// [`Scratch::table_log`] is outside 5..=11 (and not 0, the default).
    InvalidTableLog(u8),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Incompressible => f.write_str("input is not compressible"),
            Error::UseRle => f.write_str("input is single value repeated"),
            Error::TooBig => f.write_str("input too big"),
            Error::InvalidTableLog(log) => {
                write!(
                    f,
                    "invalid tableLog {log} ({MIN_TABLE_LOG} -> {TABLE_LOG_MAX})"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// One symbol's code: its `n_bits` low bits of `val`, written least significant first (Go's `cTableEntry`).
#[derive(Debug, Clone, Copy, Default)]
struct CTableEntry {
    val: u16,
    n_bits: u8,
}

/// A Huffman code table (Go's `cTable`): a slice of length `len` over a 256-entry array. Entries past `len` are
/// left from earlier tables, as in Go, and never read for a symbol the input holds.
#[derive(Debug, Clone)]
struct CTable {
    entries: [CTableEntry; 256],
    len: usize,
}

impl CTable {
    /// The estimated encoded size in bytes of an input with histogram `hist` (Go's `estimateSize`).
    fn estimate_size(&self, hist: &[u32]) -> usize {
        let bits = hist
            .iter()
            .zip(&self.entries)
            .fold(7u32, |bits, (&count, entry)| {
                bits.wrapping_add(u32::from(entry.n_bits).wrapping_mul(count))
            });
        (bits >> 3) as usize
    }
}

/// A node of the Huffman tree: a symbol (leaf) or a merge of two nodes (Go's `nodeElt`).
#[derive(Debug, Clone, Copy, Default)]
struct NodeElt {
    count: u32,
    parent: u16,
    symbol: u8,
    nb_bits: u8,
}

/// Which table a call encodes with.
#[derive(Clone, Copy)]
enum Table {
    /// The table kept from the last successful call (Go's `prevTable`).
    Previous,
    /// The table just built (Go's `cTable`).
    New,
}

/// How many streams the data is split into: `Compress1X` or `Compress4X`.
#[derive(Clone, Copy)]
enum Streams {
    One,
    Four,
}

/// The encoder's state across calls (Go's `huff0.Scratch`, the fields compression uses). Calls sharing one keep
/// the last table written, which later calls may reuse, so a sequence of blocks must go through one `Scratch` in
/// order to come out as Go's did.
#[derive(Debug, Clone)]
pub struct Scratch {
    /// Whether the next call may reuse the previous table (Go's `Reuse`); zstd sets [`ReusePolicy::None`] for a
    /// new frame and [`ReusePolicy::Allow`] after every compressed block.
    pub reuse: ReusePolicy,
    /// The output must be smaller than `len - len >> want_log_less`, else [`Error::Incompressible`]; 0 accepts
    /// any gain (Go's `WantLogLess`; zstd uses 4).
    pub want_log_less: u8,
    /// The largest code length wanted, 5..=11, or 0 for 11 (Go's `TableLog`, which zstd leaves at 0).
    pub table_log: u8,
    /// Occurrences of each byte value in the input.
    count: [u32; 256],
    /// One past the largest byte value in the input.
    symbol_len: u16,
    /// Longest code of the table being built.
    actual_table_log: u8,
    /// Longest code of `prev_table`.
    prev_table_log: u8,
    /// The table the last successful call wrote; empty when there is none to reuse.
    prev_table: CTable,
    /// The table being built (after a successful call, the buffer of the one before it).
    c_table: CTable,
    /// The Huffman tree; `nodes[0]` is a sentinel, Go's `huffNode` starts at `nodes[1]`. Kept across calls as Go
    /// keeps it.
    nodes: [NodeElt; HUFF_NODES_LEN + 1],
    /// The output of the last call (Go's `Out`).
    out: Vec<u8>,
    /// How much of `out` is the table (Go's `len(OutTable)`).
    out_table_len: usize,
}

impl Scratch {
    /// Go's `&huff0.Scratch{WantLogLess: want_log_less}`: no previous table, reuse policy `Allow`, default table
    /// log.
    pub fn new(want_log_less: u8) -> Scratch {
        Scratch {
            reuse: ReusePolicy::Allow,
            want_log_less,
            table_log: 0,
            count: [0; 256],
            symbol_len: 0,
            actual_table_log: 0,
            prev_table_log: 0,
            prev_table: CTable {
                entries: [CTableEntry::default(); 256],
                len: 0,
            },
            c_table: CTable {
                entries: [CTableEntry::default(); 256],
                len: 0,
            },
            nodes: [NodeElt::default(); HUFF_NODES_LEN + 1],
            out: Vec::new(),
            out_table_len: 0,
        }
    }

    /// The length of the table at the start of the last output (Go's `len(s.OutTable)`): 0 when the table was
    /// reused or the call failed. A call refused for its size ([`Error::TooBig`]) or its table log leaves it as
    /// the call before set it, as in Go.
    pub fn out_table_len(&self) -> usize {
        self.out_table_len
    }

    /// Go's `compress`: count, pick or build a table, write it and the data into `out`. Returns whether the
    /// previous table was reused.
    fn compress(&mut self, input: &[u8], streams: Streams) -> Result<bool, Error> {
        self.prepare(input)?;
        if self.reuse == ReusePolicy::None {
            self.prev_table.len = 0;
        }
        let (max_count, can_reuse) = self.count_simple(input);

        // The output must be smaller than this.
        let mut want_size = input.len();
        if self.want_log_less > 0 {
            want_size -= want_size
                .checked_shr(u32::from(self.want_log_less))
                .unwrap_or(0);
        }

        if max_count >= input.len() {
            // One symbol (or none): RLE, unless a single byte.
            return Err(if input.len() == 1 {
                Error::Incompressible
            } else {
                Error::UseRle
            });
        }
        if max_count == 1 || max_count < input.len() >> 7 {
            // Every symbol at most once, or too evenly spread.
            return Err(Error::Incompressible);
        }
        if self.reuse == ReusePolicy::Must && !can_reuse {
            return Err(Error::Incompressible);
        }
        if matches!(self.reuse, ReusePolicy::Prefer | ReusePolicy::Must) && can_reuse {
            let encoded = self.encode(input, Table::Previous, streams);
            if encoded.is_ok() && self.out.len() < want_size {
                return Ok(true);
            }
            if self.reuse == ReusePolicy::Must {
                return Err(Error::Incompressible);
            }
            // Not again. What the trial wrote stays in `out`, in front of the new table, as in Go, so the call
            // ends Incompressible; what it changes is that the old table is forgotten.
            self.prev_table.len = 0;
        }

        self.build_ctable(input.len());

        if self.reuse == ReusePolicy::Allow && can_reuse {
            // `out` is empty here, so the new table's own size is not counted, as in Go.
            let h_size = self.out.len();
            let hist = &self.count[..usize::from(self.symbol_len)];
            let old_size = self.prev_table.estimate_size(hist);
            let new_size = self.c_table.estimate_size(hist);
            if old_size <= h_size + new_size || h_size + 12 >= want_size {
                self.encode(input, Table::Previous, streams)?;
                if self.out.len() >= want_size {
                    return Err(Error::Incompressible);
                }
                return Ok(true);
            }
        }

        self.write_table()?;
        self.out_table_len = self.out.len();
        if let Err(e) = self.encode(input, Table::New, streams) {
            self.out_table_len = 0;
            return Err(e);
        }
        if self.out.len() >= want_size {
            self.out_table_len = 0;
            return Err(Error::Incompressible);
        }
        // The new table becomes the previous one; its buffer is the next table's.
        std::mem::swap(&mut self.prev_table, &mut self.c_table);
        self.prev_table_log = self.actual_table_log;
        self.c_table.len = 0;
        Ok(false)
    }

    /// Go's `prepare`: refuse what Go refuses (leaving the last output and table length as they were), then start
    /// an empty output.
    fn prepare(&mut self, input: &[u8]) -> Result<(), Error> {
        if input.len() > BLOCK_SIZE_MAX {
            return Err(Error::TooBig);
        }
        if self.table_log == 0 {
            self.table_log = TABLE_LOG_DEFAULT;
        }
        if !(MIN_TABLE_LOG..=TABLE_LOG_MAX).contains(&self.table_log) {
            return Err(Error::InvalidTableLog(self.table_log));
        }
        self.out.clear();
        self.out_table_len = 0;
        Ok(())
    }

    /// Go's `countSimple`: the histogram into `count`, `symbol_len`, and the largest count; plus whether the
    /// previous table has a code for every byte value present.
    fn count_simple(&mut self, input: &[u8]) -> (usize, bool) {
        self.count = [0; 256];
        for &b in input {
            self.count[usize::from(b)] += 1;
        }
        let mut max = 0;
        let mut reuse = self.prev_table.len > 0;
        for (i, &v) in self.count.iter().enumerate() {
            max = max.max(v);
            if v > 0 {
                self.symbol_len = i as u16 + 1;
                if i >= self.prev_table.len || self.prev_table.entries[i].n_bits == 0 {
                    reuse = false;
                }
            }
        }
        (max as usize, reuse)
    }

    /// Encode `input` with one of the tables, appending to `out`. Go's compressor returns nil on failure and
    /// `compress` stores that in `s.Out`, so a failure empties `out`.
    fn encode(&mut self, input: &[u8], table: Table, streams: Streams) -> Result<(), Error> {
        let (table, table_log) = match table {
            Table::Previous => (&self.prev_table, self.prev_table_log),
            Table::New => (&self.c_table, self.actual_table_log),
        };
        let result = match streams {
            Streams::One => {
                encode_1x(&mut self.out, &table.entries, table_log, input);
                Ok(())
            }
            Streams::Four => encode_4x(&mut self.out, &table.entries, table_log, input),
        };
        if result.is_err() {
            self.out.clear();
        }
        result
    }

    /// Go's `optimalTableLog`: the table log aimed for, from the wanted one, the input length and the symbols.
    fn optimal_table_log(&mut self, remain: usize) {
        let mut table_log = self.table_log;
        let min_bits_src = high_bit32(remain as u32).wrapping_add(1);
        let min_bits_symbols =
            high_bit32(u32::from(self.symbol_len.wrapping_sub(1))).wrapping_add(2);
        let min_bits = min_bits_src.min(min_bits_symbols) as u8;
        let max_bits_src = (high_bit32(remain.wrapping_sub(1) as u32) as u8).wrapping_sub(1);
        if max_bits_src < table_log {
            // Accuracy can be reduced.
            table_log = max_bits_src;
        }
        if min_bits > table_log {
            table_log = min_bits;
        }
        self.actual_table_log = table_log.clamp(MIN_TABLE_LOG, TABLE_LOG_MAX);
    }

    /// Go's `buildCTable`: a Huffman tree over `count`, its depths limited to the table log, as canonical codes in
    /// `c_table`.
    fn build_ctable(&mut self, remain: usize) {
        self.optimal_table_log(remain);
        self.huff_sort();
        let symbol_len = usize::from(self.symbol_len);
        self.c_table.entries[..symbol_len].fill(CTableEntry::default());
        self.c_table.len = symbol_len;

        // Go's `huffNode[i]` is `nodes[i + 1]`; `nodes[0]` is what `huffNode0` adds, for index -1.
        let nodes = &mut self.nodes;
        let start_node = symbol_len as isize;
        let mut non_null_rank = symbol_len - 1;
        while nodes[non_null_rank + 1].count == 0 {
            non_null_rank -= 1;
        }

        let mut low_s = non_null_rank as isize;
        let node_root = start_node + low_s - 1;
        let mut low_n = start_node;
        let mut node_nb = start_node;
        let at = |i: isize| (i + 1) as usize;
        nodes[at(node_nb)].count = nodes[at(low_s)]
            .count
            .wrapping_add(nodes[at(low_s - 1)].count);
        nodes[at(low_s)].parent = node_nb as u16;
        nodes[at(low_s - 1)].parent = node_nb as u16;
        node_nb += 1;
        low_s -= 2;
        for n in node_nb..=node_root {
            nodes[at(n)].count = 1 << 30;
        }
        // The sentinel, larger than any count.
        nodes[0].count = 1 << 31;

        // Merge the two smallest of the leaves left and the nodes made, until the root.
        while node_nb <= node_root {
            let mut smallest = || {
                if nodes[at(low_s)].count < nodes[at(low_n)].count {
                    low_s -= 1;
                    low_s + 1
                } else {
                    low_n += 1;
                    low_n - 1
                }
            };
            let n1 = smallest();
            let n2 = smallest();
            nodes[at(node_nb)].count = nodes[at(n1)].count.wrapping_add(nodes[at(n2)].count);
            nodes[at(n1)].parent = node_nb as u16;
            nodes[at(n2)].parent = node_nb as u16;
            node_nb += 1;
        }

        // Depths, unlimited.
        nodes[at(node_root)].nb_bits = 0;
        for n in (start_node..node_root).rev() {
            let parent = nodes[at(n)].parent;
            nodes[at(n)].nb_bits = nodes[usize::from(parent) + 1].nb_bits.wrapping_add(1);
        }
        for n in 0..=non_null_rank {
            let parent = nodes[n + 1].parent;
            nodes[n + 1].nb_bits = nodes[usize::from(parent) + 1].nb_bits.wrapping_add(1);
        }
        let huff_node = &mut nodes[1..];
        self.actual_table_log = set_max_height(huff_node, non_null_rank, self.actual_table_log);
        let max_nb_bits = self.actual_table_log;

        // Canonical codes: the first value of each length, then values in symbol order.
        let mut nb_per_rank = [0u16; TABLE_LOG_MAX as usize + 1];
        let mut val_per_rank = [0u16; 16];
        for node in &huff_node[..=non_null_rank] {
            nb_per_rank[usize::from(node.nb_bits)] += 1;
        }
        let mut min = 0u16;
        for n in (1..=usize::from(max_nb_bits)).rev() {
            val_per_rank[n] = min;
            min = min.wrapping_add(nb_per_rank[n]);
            min >>= 1;
        }
        for node in &huff_node[..=non_null_rank] {
            self.c_table.entries[usize::from(node.symbol)].n_bits = node.nb_bits;
        }
        for entry in &mut self.c_table.entries[..symbol_len] {
            let nb_bits = usize::from(entry.n_bits & 15);
            entry.val = val_per_rank[nb_bits];
            val_per_rank[nb_bits] = val_per_rank[nb_bits].wrapping_add(1);
        }
    }

    /// Go's `huffSort`: the symbols into `nodes[1..]` by decreasing count (ties in symbol order), bucketed by the
    /// bit length of their count, then insertion-sorted within a bucket.
    fn huff_sort(&mut self) {
        #[derive(Clone, Copy, Default)]
        struct RankPos {
            base: u32,
            current: u32,
        }
        let nodes = &mut self.nodes[1..];
        let counts = &self.count[..usize::from(self.symbol_len)];
        let mut rank = [RankPos::default(); 32];
        for &v in counts {
            let r = high_bit32(v.wrapping_add(1)) & 31;
            rank[r as usize].base = rank[r as usize].base.wrapping_add(1);
        }
        // log2(BlockSizeMax) + 1
        const MAX_BIT_LENGTH: usize = 18 + 1;
        for n in (1..=MAX_BIT_LENGTH).rev() {
            rank[n - 1].base = rank[n - 1].base.wrapping_add(rank[n].base);
        }
        for r in &mut rank[..MAX_BIT_LENGTH] {
            r.current = r.base;
        }
        let slot = |pos: u32| (pos & HUFF_NODES_MASK) as usize;
        for (n, &c) in counts.iter().enumerate() {
            let r = (high_bit32(c.wrapping_add(1)).wrapping_add(1) & 31) as usize;
            let mut pos = rank[r].current;
            rank[r].current = rank[r].current.wrapping_add(1);
            let mut prev = nodes[slot(pos.wrapping_sub(1))];
            while pos > rank[r].base && c > prev.count {
                nodes[slot(pos)] = prev;
                pos = pos.wrapping_sub(1);
                prev = nodes[slot(pos.wrapping_sub(1))];
            }
            nodes[slot(pos)] = NodeElt {
                count: c,
                symbol: n as u8,
                parent: 0,
                nb_bits: 0,
            };
        }
    }

    /// Go's `cTable.write`: the table as the zstd Huffman tree description, appended to `out`. The weights (one
    /// per symbol but the last) are FSE-compressed when that is shorter, else packed four bits each, which only
    /// fits 128 of them.
    fn write_table(&mut self) -> Result<(), Error> {
        let huff_log = self.actual_table_log;
        let max_symbol_value = self.symbol_len.wrapping_sub(1) as u8;
        let mut bits_to_weight = [0u8; TABLE_LOG_MAX as usize + 1];
        for n in 1..=huff_log {
            bits_to_weight[usize::from(n)] = huff_log + 1 - n;
        }
        let mut hist = [0u32; 16];
        let mut weights = [0u8; 256];
        for (weight, entry) in weights
            .iter_mut()
            .zip(&self.c_table.entries[..usize::from(max_symbol_value)])
        {
            *weight = bits_to_weight[usize::from(entry.n_bits)] & 15;
            hist[usize::from(*weight)] += 1;
        }

        if max_symbol_value >= 2 {
            let mut huff_max = 0;
            let mut huff_max_cnt = 0;
            for (i, &v) in hist.iter().enumerate() {
                if v == 0 {
                    continue;
                }
                huff_max = i;
                huff_max_cnt = huff_max_cnt.max(v);
            }
            let compressed = fse::compress(
                &weights[..usize::from(max_symbol_value)],
                &hist[..=huff_max],
                huff_max_cnt as usize,
                MAX_FSE_TABLE_LOG,
            );
            if let Some(b) = compressed.filter(|b| b.len() < usize::from(self.symbol_len >> 1)) {
                self.out.push(b.len() as u8);
                self.out.extend_from_slice(&b);
                return Ok(());
            }
        }
        if max_symbol_value > 128 {
            return Err(Error::Incompressible);
        }
        self.out.push(128 | max_symbol_value.wrapping_sub(1));
        weights[usize::from(max_symbol_value)] = 0;
        for pair in weights[..=usize::from(max_symbol_value)].chunks_exact(2) {
            self.out.push((pair[0] << 4) | pair[1]);
        }
        Ok(())
    }
}

/// Go's `setMaxHeight`: limit the depths of `huff_node[..=last_non_null]` (sorted by decreasing count) to
/// `max_nb_bits`, moving the excess onto shallower symbols, as zstd's `HUF_setMaxHeight`. Returns the longest
/// code length.
fn set_max_height(huff_node: &mut [NodeElt], last_non_null: usize, max_nb_bits: u8) -> u8 {
    let largest_bits = huff_node[last_non_null].nb_bits;
    if largest_bits <= max_nb_bits {
        return largest_bits;
    }
    let shl = |bits: u8| 1i64.checked_shl(u32::from(bits)).unwrap_or(0);
    let mut total_cost = 0i64;
    let base_cost = shl(largest_bits - max_nb_bits);
    let mut n = last_non_null as u32;
    while huff_node[n as usize].nb_bits > max_nb_bits {
        total_cost += base_cost - shl(largest_bits.wrapping_sub(huff_node[n as usize].nb_bits));
        huff_node[n as usize].nb_bits = max_nb_bits;
        n = n.wrapping_sub(1);
    }
    // n is at the last symbol using maxNbBits or fewer; move it to the last using fewer.
    while huff_node[n as usize].nb_bits == max_nb_bits {
        n = n.wrapping_sub(1);
    }
    // Renormalise: totalCost is a multiple of baseCost.
    total_cost = total_cost
        .checked_shr(u32::from(largest_bits - max_nb_bits))
        .unwrap_or(0);

    const NO_SYMBOL: u32 = 0xF0F0_F0F0;
    let mut rank_last = [NO_SYMBOL; TABLE_LOG_MAX as usize + 2];
    // Position of the last (smallest) symbol of each rank, a rank being how many bits short of maxNbBits.
    let mut current_nb_bits = max_nb_bits;
    for pos in (0..=n as usize).rev() {
        if huff_node[pos].nb_bits >= current_nb_bits {
            continue;
        }
        current_nb_bits = huff_node[pos].nb_bits;
        rank_last[usize::from(max_nb_bits - current_nb_bits)] = pos as u32;
    }

    // Repay the cost by lengthening shorter codes.
    while total_cost > 0 {
        let mut nb_bits_to_decrease = (high_bit32(total_cost as u32) as u8).wrapping_add(1);
        while nb_bits_to_decrease > 1 {
            let high_pos = rank_last[usize::from(nb_bits_to_decrease)];
            let low_pos = rank_last[usize::from(nb_bits_to_decrease - 1)];
            if high_pos != NO_SYMBOL {
                if low_pos == NO_SYMBOL {
                    break;
                }
                let high_total = huff_node[high_pos as usize].count;
                let low_total = huff_node[low_pos as usize].count.wrapping_mul(2);
                if high_total <= low_total {
                    break;
                }
            }
            nb_bits_to_decrease -= 1;
        }
        // Only when no rank-1 symbol is left: take the closest rank that has one.
        while nb_bits_to_decrease <= TABLE_LOG_MAX
            && rank_last[usize::from(nb_bits_to_decrease)] == NO_SYMBOL
        {
            nb_bits_to_decrease += 1;
        }
        let rank = usize::from(nb_bits_to_decrease);
        total_cost -= shl(nb_bits_to_decrease - 1);
        if rank_last[rank - 1] == NO_SYMBOL {
            // That rank is no longer empty.
            rank_last[rank - 1] = rank_last[rank];
        }
        let pos = rank_last[rank] as usize;
        huff_node[pos].nb_bits = huff_node[pos].nb_bits.wrapping_add(1);
        if rank_last[rank] == 0 {
            // The largest symbol was reached.
            rank_last[rank] = NO_SYMBOL;
        } else {
            rank_last[rank] -= 1;
            if huff_node[rank_last[rank] as usize].nb_bits
                != max_nb_bits.wrapping_sub(nb_bits_to_decrease)
            {
                // That rank is now empty.
                rank_last[rank] = NO_SYMBOL;
            }
        }
    }

    // The correction sometimes overshoots: shorten codes back.
    while total_cost < 0 {
        if rank_last[1] == NO_SYMBOL {
            // No symbol at maxNbBits-1: make one from the largest at maxNbBits.
            while huff_node[n as usize].nb_bits == max_nb_bits {
                n = n.wrapping_sub(1);
            }
            let pos = n.wrapping_add(1) as usize;
            huff_node[pos].nb_bits = huff_node[pos].nb_bits.wrapping_sub(1);
            rank_last[1] = n.wrapping_add(1);
            total_cost += 1;
            continue;
        }
        let pos = rank_last[1].wrapping_add(1) as usize;
        huff_node[pos].nb_bits = huff_node[pos].nb_bits.wrapping_sub(1);
        rank_last[1] = rank_last[1].wrapping_add(1);
        total_cost += 1;
    }
    max_nb_bits
}

/// Go's `compress1xDo`: one stream, appended to `out`, encoded from the last byte to the first so it decodes
/// forwards.
fn encode_1x(out: &mut Vec<u8>, table: &[CTableEntry; 256], table_log: u8, src: &[u8]) {
    let mut bw = BitWriter::new(out);
    let n = src.len() - (src.len() & 3);
    for &b in src[n..].iter().rev() {
        bw.enc_symbol(table, b);
    }
    for chunk in src[..n].chunks_exact(4).rev() {
        bw.flush32();
        bw.enc_two_symbols(table, chunk[3], chunk[2]);
        if table_log > 8 {
            bw.flush32();
        }
        bw.enc_two_symbols(table, chunk[1], chunk[0]);
    }
    bw.close();
}

/// Go's `compress4X`: four streams of a quarter of the input each (rounded up), behind a jump table of the
/// first three's lengths (little-endian u16).
fn encode_4x(
    out: &mut Vec<u8>,
    table: &[CTableEntry; 256],
    table_log: u8,
    src: &[u8],
) -> Result<(), Error> {
    if src.len() < 12 {
        return Err(Error::Incompressible);
    }
    let segment_size = src.len().div_ceil(4);
    let offset_idx = out.len();
    out.extend_from_slice(&[0; 6]);
    let mut rest = src;
    for i in 0..4 {
        let (to_do, tail) = rest.split_at(segment_size.min(rest.len()));
        rest = tail;
        let start = out.len();
        encode_1x(out, table, table_log, to_do);
        let length = out.len() - start;
        let Ok(length) = u16::try_from(length) else {
            // The jump table cannot hold it.
            return Err(Error::Incompressible);
        };
        if i < 3 {
            out[offset_idx + i * 2..offset_idx + i * 2 + 2].copy_from_slice(&length.to_le_bytes());
        }
    }
    Ok(())
}

/// Go's `highBit32`: the index of the highest set bit; `u32::MAX` for 0 (`bits.Len32(0) - 1`).
fn high_bit32(val: u32) -> u32 {
    31u32.wrapping_sub(val.leading_zeros())
}

/// Go's bit writer (huff0's and fse's are the same): bits gathered least significant first into a 64-bit
/// container and appended to `out` a few bytes at a time.
struct BitWriter<'a> {
    bit_container: u64,
    n_bits: u8,
    out: &'a mut Vec<u8>,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            bit_container: 0,
            n_bits: 0,
            out,
        }
    }

    /// Add the low `bits` of `value`, whose higher bits must be clear (`addBits16Clean`).
    fn add_bits16_clean(&mut self, value: u16, bits: u8) {
        self.bit_container |= u64::from(value) << (self.n_bits & 63);
        self.n_bits = self.n_bits.wrapping_add(bits);
    }

    /// Add the low `bits` of `value`, masking the rest (fse's `addBits16NC`).
    fn add_bits16_nc(&mut self, value: u16, bits: u8) {
        const BIT_MASK16: [u16; 32] = [
            0, 1, 3, 7, 0xF, 0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF,
            0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF,
            0, 0, 0, 0, 0, 0,
        ];
        self.add_bits16_clean(value & BIT_MASK16[usize::from(bits & 31)], bits);
    }

    /// Add one symbol's code (`encSymbol`).
    fn enc_symbol(&mut self, table: &[CTableEntry; 256], symbol: u8) {
        let enc = table[usize::from(symbol)];
        self.add_bits16_clean(enc.val, enc.n_bits);
    }

    /// Add the codes of `a` then `b` (`encTwoSymbols`).
    fn enc_two_symbols(&mut self, table: &[CTableEntry; 256], a: u8, b: u8) {
        let enc_a = table[usize::from(a)];
        let enc_b = table[usize::from(b)];
        let combined = u64::from(enc_a.val) | (u64::from(enc_b.val) << (enc_a.n_bits & 63));
        self.bit_container |= combined << (self.n_bits & 63);
        self.n_bits = self
            .n_bits
            .wrapping_add(enc_a.n_bits)
            .wrapping_add(enc_b.n_bits);
    }

    /// Write out 32 bits if at least that many are held, so 32 more fit (`flush32`).
    fn flush32(&mut self) {
        if self.n_bits < 32 {
            return;
        }
        self.out
            .extend_from_slice(&(self.bit_container as u32).to_le_bytes());
        self.n_bits -= 32;
        self.bit_container >>= 32;
    }

    /// Write out the whole bytes held (fse's `flush`).
    fn flush(&mut self) {
        let bytes = self.n_bits >> 3;
        self.push_bytes(bytes);
        self.bit_container = self
            .bit_container
            .checked_shr(u32::from(bytes) << 3)
            .unwrap_or(0);
        self.n_bits &= 7;
    }

    /// Append the low `n` bytes of the container, as Go's loops do (shifts past 63 giving 0).
    fn push_bytes(&mut self, n: u8) {
        for i in 0..n {
            let shift = u32::from(i.wrapping_mul(8));
            self.out
                .push(self.bit_container.checked_shr(shift).unwrap_or(0) as u8);
        }
    }

    /// Write the end mark, a 1 bit, and everything held, padded to a byte (`close`).
    fn close(&mut self) {
        self.add_bits16_clean(1, 1);
        self.push_bytes(self.n_bits.wrapping_add(7) >> 3);
        self.n_bits = 0;
        self.bit_container = 0;
    }
}

/// The part of klauspost/compress 1.15.12's `fse` package huff0 uses: `fse.Compress` of a Huffman table's
/// weights, with the histogram given (`HistogramFinished`). Every failure of Go's (RLE, incompressible,
/// internal errors) is `None`, since huff0 then packs the weights raw, as is anything Go would index out of
/// range on (it cannot happen for the histograms huff0 gives, but is no reason to panic).
mod fse {
    use super::{high_bit32, BitWriter};

    /// Smallest FSE table log.
    const MIN_TABLE_LOG: u8 = 5;
    /// Largest FSE table log (`maxMemoryUsage - 2`).
    const MAX_TABLE_LOG: u8 = 12;
    /// Most symbols huff0 hands over: weights are 4 bits.
    const MAX_SYMBOLS: usize = 16;
    /// Thresholds of `normalizeCount`'s rounding of small probabilities.
    const RTB_TABLE: [u64; 8] = [0, 473195, 504333, 520860, 550000, 700000, 750000, 830000];

    /// How a symbol moves the state (Go's `symbolTransform`).
    #[derive(Clone, Copy, Default)]
    struct SymbolTransform {
        delta_find_state: i32,
        delta_nb_bits: u32,
    }

    /// The compression tables (Go's `cTable`, less the spread symbols).
    struct CTable {
        state_table: Vec<u16>,
        symbol_tt: [SymbolTransform; MAX_SYMBOLS],
    }

    /// Go's `fse.Compress(input, s)` after `s.HistogramFinished(len(count) - 1, max_count)` and
    /// `s.TableLog = wanted_log`: the normalized counts header, then the FSE bit stream.
    pub(super) fn compress(
        input: &[u8],
        count: &[u32],
        max_count: usize,
        wanted_log: u8,
    ) -> Option<Vec<u8>> {
        if input.len() <= 1 || count.len() > MAX_SYMBOLS {
            return None;
        }
        if max_count == input.len() {
            // ErrUseRLE
            return None;
        }
        if max_count == 1 || max_count < input.len() >> 7 {
            // ErrIncompressible
            return None;
        }
        let table_log = optimal_table_log(wanted_log, input.len(), count.len());
        let norm = normalize_count(count, input.len(), table_log)?;
        let mut out = write_count(&norm[..count.len()], table_log)?;
        let table = build_ctable(&norm[..count.len()], table_log)?;
        encode(&mut out, &table, table_log, input)?;
        (out.len() < input.len()).then_some(out)
    }

    /// Go's `optimalTableLog` (fse's, which differs from huff0's).
    fn optimal_table_log(wanted_log: u8, remain: usize, symbol_len: usize) -> u8 {
        let src_bits = high_bit32(remain.wrapping_sub(1) as u32);
        let min_bits_src = src_bits.wrapping_add(1);
        let min_bits_symbols =
            high_bit32((symbol_len as u16).wrapping_sub(1).into()).wrapping_add(2);
        let min_bits = min_bits_src.min(min_bits_symbols) as u8;
        let max_bits_src = (src_bits as u8).wrapping_sub(2);
        let mut table_log = wanted_log;
        if max_bits_src < table_log {
            table_log = max_bits_src;
        }
        if min_bits > table_log {
            table_log = min_bits;
        }
        table_log.clamp(MIN_TABLE_LOG, MAX_TABLE_LOG)
    }

    /// Go's `normalizeCount`: the counts scaled to sum to `1 << table_log`, -1 marking a symbol below one
    /// slot.
    fn normalize_count(count: &[u32], total: usize, table_log: u8) -> Option<[i16; MAX_SYMBOLS]> {
        let scale = 62 - u64::from(table_log);
        let step = (1u64 << 62) / total as u64;
        let v_step = 1u64 << (scale - 20);
        let mut still_to_distribute = 1i16 << table_log;
        let mut largest = 0;
        let mut largest_p = 0i16;
        let low_threshold = (total >> table_log) as u32;
        let mut norm = [0i16; MAX_SYMBOLS];

        for (i, &cnt) in count.iter().enumerate() {
            if cnt == 0 {
                norm[i] = 0;
                continue;
            }
            if cnt <= low_threshold {
                norm[i] = -1;
                still_to_distribute = still_to_distribute.wrapping_sub(1);
            } else {
                let scaled = u64::from(cnt).wrapping_mul(step);
                let mut proba = (scaled >> scale) as i16;
                if proba < 8 {
                    let rest_to_beat =
                        v_step.wrapping_mul(*RTB_TABLE.get(usize::try_from(proba).ok()?)?);
                    let v = scaled.wrapping_sub((proba as u64) << scale);
                    if v > rest_to_beat {
                        proba += 1;
                    }
                }
                if proba > largest_p {
                    largest_p = proba;
                    largest = i;
                }
                norm[i] = proba;
                still_to_distribute = still_to_distribute.wrapping_sub(proba);
            }
        }

        if still_to_distribute.wrapping_neg() >= norm[largest] >> 1 {
            // Corner case: another method.
            return normalize_count2(count, total, table_log);
        }
        norm[largest] = norm[largest].wrapping_add(still_to_distribute);
        Some(norm)
    }

    /// Go's `normalizeCount2`, the secondary method.
    fn normalize_count2(count: &[u32], total: usize, table_log: u8) -> Option<[i16; MAX_SYMBOLS]> {
        const NOT_YET_ASSIGNED: i16 = -2;
        let mut norm = [0i16; MAX_SYMBOLS];
        let mut distributed = 0u32;
        let mut total = total as u32;
        let low_threshold = total >> table_log;
        let mut low_one = total.wrapping_mul(3) >> (table_log + 1);
        for (i, &cnt) in count.iter().enumerate() {
            norm[i] = if cnt == 0 {
                0
            } else if cnt <= low_threshold {
                distributed += 1;
                total = total.wrapping_sub(cnt);
                -1
            } else if cnt <= low_one {
                distributed += 1;
                total = total.wrapping_sub(cnt);
                1
            } else {
                NOT_YET_ASSIGNED
            };
        }
        // At most 16 symbols are distributed, out of at least 32 slots: never 0.
        let mut to_distribute = (1u32 << table_log).wrapping_sub(distributed);

        if total / to_distribute > low_one {
            // Risk of rounding to zero.
            low_one = total.wrapping_mul(3) / to_distribute.wrapping_mul(2);
            for (i, &cnt) in count.iter().enumerate() {
                if norm[i] == NOT_YET_ASSIGNED && cnt <= low_one {
                    norm[i] = 1;
                    distributed += 1;
                    total = total.wrapping_sub(cnt);
                }
            }
            to_distribute = (1u32 << table_log).wrapping_sub(distributed);
        }
        // Go's branch for `distributed == symbolLen + 1` is left out: at most symbolLen symbols are distributed.

        if total == 0 {
            // Every symbol was low enough for lowOne or lowThreshold: spread the rest round-robin over those
            // with a positive count (one exists: they cannot all be below 1/32 of the total).
            if !norm[..count.len()].iter().any(|&v| v > 0) {
                return None;
            }
            let mut i = 0;
            while to_distribute > 0 {
                if norm[i] > 0 {
                    to_distribute -= 1;
                    norm[i] += 1;
                }
                i = (i + 1) % count.len();
            }
            return Some(norm);
        }

        let v_step_log = 62 - u64::from(table_log);
        let mid = (1u64 << (v_step_log - 1)) - 1;
        let r_step = (1u64 << v_step_log)
            .wrapping_mul(u64::from(to_distribute))
            .wrapping_add(mid)
            / u64::from(total);
        let mut tmp_total = mid;
        for (i, &cnt) in count.iter().enumerate() {
            if norm[i] == NOT_YET_ASSIGNED {
                let end = tmp_total.wrapping_add(u64::from(cnt).wrapping_mul(r_step));
                let s_start = (tmp_total >> v_step_log) as u32;
                let s_end = (end >> v_step_log) as u32;
                let weight = s_end.wrapping_sub(s_start);
                if weight < 1 {
                    return None;
                }
                norm[i] = weight as i16;
                tmp_total = end;
            }
        }
        Some(norm)
    }

    /// Go's `writeCount`: the normalized counts as zstd's FSE table description, into a buffer of Go's
    /// `maxHeaderSize`.
    fn write_count(norm: &[i16], table_log: u8) -> Option<Vec<u8>> {
        let table_size = 1i32 << table_log;
        let max_header_size = ((norm.len() * usize::from(table_log)) >> 3) + 3;
        let mut out = vec![0u8; max_header_size];
        let mut out_p = 0usize;
        let mut bit_stream = u32::from(table_log.wrapping_sub(MIN_TABLE_LOG));
        let mut bit_count = 4u64;
        let mut remaining = (table_size + 1) as i16;
        let mut threshold = table_size as i16;
        let mut nb_bits = u64::from(table_log.wrapping_add(1));
        let mut previous0 = false;
        let mut charnum = 0u16;
        let shl = |v: u32, n: u64| if n >= 32 { 0 } else { v << n };
        let mut put16 = |out_p: usize, v: u32| -> Option<()> {
            out.get_mut(out_p..out_p + 2)?
                .copy_from_slice(&(v as u16).to_le_bytes());
            Some(())
        };

        while remaining > 1 {
            if previous0 {
                let mut start = charnum;
                while *norm.get(usize::from(charnum))? == 0 {
                    charnum = charnum.wrapping_add(1);
                }
                while charnum >= start.wrapping_add(24) {
                    start = start.wrapping_add(24);
                    bit_stream = bit_stream.wrapping_add(shl(0xFFFF, bit_count));
                    put16(out_p, bit_stream)?;
                    out_p += 2;
                    bit_stream >>= 16;
                }
                while charnum >= start.wrapping_add(3) {
                    start = start.wrapping_add(3);
                    bit_stream = bit_stream.wrapping_add(shl(3, bit_count));
                    bit_count += 2;
                }
                bit_stream =
                    bit_stream.wrapping_add(shl(u32::from(charnum.wrapping_sub(start)), bit_count));
                bit_count += 2;
                if bit_count > 16 {
                    put16(out_p, bit_stream)?;
                    out_p += 2;
                    bit_stream >>= 16;
                    bit_count -= 16;
                }
            }

            let mut count = *norm.get(usize::from(charnum))?;
            charnum = charnum.wrapping_add(1);
            let max = threshold
                .wrapping_mul(2)
                .wrapping_sub(1)
                .wrapping_sub(remaining);
            remaining = remaining.wrapping_sub(count.wrapping_abs());
            count = count.wrapping_add(1); // +1 for extra accuracy
            if count >= threshold {
                count = count.wrapping_add(max);
            }
            bit_stream = bit_stream.wrapping_add(shl(count as u32, bit_count));
            bit_count += nb_bits;
            if count < max {
                bit_count -= 1;
            }
            previous0 = count == 1;
            if remaining < 1 {
                return None;
            }
            while remaining < threshold {
                nb_bits = nb_bits.wrapping_sub(1);
                threshold >>= 1;
            }
            if bit_count > 16 {
                put16(out_p, bit_stream)?;
                out_p += 2;
                bit_stream >>= 16;
                bit_count -= 16;
            }
        }
        put16(out_p, bit_stream)?;
        out_p += usize::try_from(bit_count.div_ceil(8)).ok()?;
        if usize::from(charnum) > norm.len() || out_p > out.len() {
            return None;
        }
        out.truncate(out_p);
        Some(out)
    }

    /// Go's `buildCTable`: spread the symbols over the table and derive the state and symbol transforms.
    fn build_ctable(norm: &[i16], table_log: u8) -> Option<CTable> {
        let table_size = 1u32 << table_log;
        let mut high_threshold = table_size - 1;
        let mut cumul = [0i16; MAX_SYMBOLS + 1];
        let mut table_symbol = vec![0u8; table_size as usize];

        // Symbol start positions; low-probability symbols go to the top of the table.
        for (u, &v) in norm.iter().enumerate() {
            if v == -1 {
                cumul[u + 1] = cumul[u].wrapping_add(1);
                *table_symbol.get_mut(high_threshold as usize)? = u as u8;
                high_threshold = high_threshold.wrapping_sub(1);
            } else {
                cumul[u + 1] = cumul[u].wrapping_add(v);
            }
        }
        if cumul[norm.len()] as u32 != table_size {
            return None;
        }
        cumul[norm.len()] = (table_size as i16).wrapping_add(1);

        // Spread the symbols.
        let step = (table_size >> 1) + (table_size >> 3) + 3;
        let table_mask = table_size - 1;
        let mut position = 0u32;
        for (symbol, &v) in norm.iter().enumerate() {
            for _ in 0..v.max(0) {
                *table_symbol.get_mut(position as usize)? = symbol as u8;
                position = (position + step) & table_mask;
                while position > high_threshold {
                    position = (position + step) & table_mask;
                }
            }
        }
        if position != 0 {
            return None;
        }

        // The state table, sorted by symbol.
        let mut state_table = vec![0u16; table_size as usize];
        for (u, &v) in table_symbol.iter().enumerate() {
            let next = cumul.get_mut(usize::from(v))?;
            *state_table.get_mut(usize::try_from(*next).ok()?)? = (table_size as usize + u) as u16;
            *next = next.wrapping_add(1);
        }

        // The symbol transforms.
        let mut symbol_tt = [SymbolTransform::default(); MAX_SYMBOLS];
        let mut total = 0i16;
        let log = u32::from(table_log);
        let low_delta_nb_bits = (log << 16).wrapping_sub(1 << log);
        for (i, &v) in norm.iter().enumerate() {
            match v {
                0 => {}
                -1 | 1 => {
                    symbol_tt[i] = SymbolTransform {
                        delta_nb_bits: low_delta_nb_bits,
                        delta_find_state: i32::from(total.wrapping_sub(1)),
                    };
                    total = total.wrapping_add(1);
                }
                _ => {
                    let max_bits_out = log.wrapping_sub(high_bit32(v.wrapping_sub(1) as u32));
                    let min_state_plus = (v as u32).checked_shl(max_bits_out).unwrap_or(0);
                    symbol_tt[i] = SymbolTransform {
                        delta_nb_bits: max_bits_out
                            .checked_shl(16)
                            .unwrap_or(0)
                            .wrapping_sub(min_state_plus),
                        delta_find_state: i32::from(total.wrapping_sub(v)),
                    };
                    total = total.wrapping_add(v);
                }
            }
        }
        if total != table_size as i16 {
            return None;
        }
        Some(CTable {
            state_table,
            symbol_tt,
        })
    }

    /// One FSE state (Go's `cState`).
    struct State(u16);

    impl State {
        /// The state after the first symbol, which writes no bits (`cState.init`).
        fn init(table: &CTable, first: u8) -> Option<State> {
            let tt = table.symbol_tt.get(usize::from(first))?;
            let nb_bits_out = tt.delta_nb_bits.wrapping_add(1 << 15) >> 16;
            let im = nb_bits_out.wrapping_shl(16).wrapping_sub(tt.delta_nb_bits) as i32;
            let shifted = im
                .checked_shr(nb_bits_out)
                .unwrap_or(if im < 0 { -1 } else { 0 });
            let lu = shifted.wrapping_add(tt.delta_find_state);
            Some(State(*table.state_table.get(usize::try_from(lu).ok()?)?))
        }

        /// Write the state's low bits and move to the next (`cState.encode`; `encodeZero` writes the same bits
        /// for codes of at most 16 bits, and weights' codes have at most 7).
        fn encode(&mut self, bw: &mut BitWriter<'_>, table: &CTable, symbol: u8) -> Option<()> {
            let tt = table.symbol_tt.get(usize::from(symbol))?;
            let nb_bits_out = u32::from(self.0).wrapping_add(tt.delta_nb_bits) >> 16;
            let dst_state =
                i32::from(self.0 >> (nb_bits_out & 15)).wrapping_add(tt.delta_find_state);
            bw.add_bits16_nc(self.0, nb_bits_out as u8);
            self.0 = *table.state_table.get(usize::try_from(dst_state).ok()?)?;
            Some(())
        }

        /// Write the final state, which the decoder starts from (`cState.flush`).
        fn flush(&self, bw: &mut BitWriter<'_>, table_log: u8) {
            bw.flush32();
            bw.add_bits16_nc(self.0, table_log);
            bw.flush();
        }
    }

    /// Go's `Scratch.compress`: two interleaved states, encoding from the last symbol to the first.
    fn encode(out: &mut Vec<u8>, table: &CTable, table_log: u8, src: &[u8]) -> Option<()> {
        if src.len() <= 2 {
            return None;
        }
        let mut bw = BitWriter::new(out);
        let mut ip = src.len();
        let (mut c1, mut c2);
        if ip & 1 == 1 {
            c1 = State::init(table, src[ip - 1])?;
            c2 = State::init(table, src[ip - 2])?;
            c1.encode(&mut bw, table, src[ip - 3])?;
            ip -= 3;
        } else {
            c2 = State::init(table, src[ip - 1])?;
            c1 = State::init(table, src[ip - 2])?;
            ip -= 2;
        }
        if ip & 2 != 0 {
            c2.encode(&mut bw, table, src[ip - 1])?;
            c1.encode(&mut bw, table, src[ip - 2])?;
            ip -= 2;
        }
        while ip >= 4 {
            bw.flush32();
            c2.encode(&mut bw, table, src[ip - 1])?;
            c1.encode(&mut bw, table, src[ip - 2])?;
            if table_log > 8 {
                bw.flush32();
            }
            c2.encode(&mut bw, table, src[ip - 3])?;
            c1.encode(&mut bw, table, src[ip - 4])?;
            ip -= 4;
        }
        c2.flush(&mut bw, table_log);
        c1.flush(&mut bw, table_log);
        bw.close();
        Some(())
    }
}

/// Go's `huff0.Compress1X(input, s)`: one Huffman stream. `Ok((out, reused))`: `out` is the table followed by
/// the data, or the data alone when `reused` (the previous call's table was used; see
/// [`Scratch::out_table_len`]).
pub fn compress_1x<'a>(input: &[u8], s: &'a mut Scratch) -> Result<(&'a [u8], bool), Error> {
    let reused = s.compress(input, Streams::One)?;
    Ok((&s.out, reused))
}

/// Go's `huff0.Compress4X(input, s)`: four Huffman streams behind a 6-byte jump table, the table (when not
/// reused) in front. Inputs under 12 bytes are [`Error::Incompressible`].
pub fn compress_4x<'a>(input: &[u8], s: &'a mut Scratch) -> Result<(&'a [u8], bool), Error> {
    let reused = s.compress(input, Streams::Four)?;
    Ok((&s.out, reused))
}

#[cfg(test)]
mod tests {
    //! Expected values come from Go (klauspost/compress 1.15.12) run on the same inputs; the parity test that
    //! compares whole corpora with Go lives outside this crate.
    use super::*;

    /// The inputs' generator, the same in the Go program that produced the expected values: the smaller of two
    /// LCG draws below `alphabet`, so low values are frequent.
    fn skewed(seed: u64, n: usize, alphabet: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) % alphabet).min((x >> 45) % alphabet) as u8
            })
            .collect()
    }

    fn fnv1a64(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf29ce484222325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        })
    }

    /// One call: (reused, table length, output length, FNV-1a 64 of the output).
    fn run(four: bool, input: &[u8], s: &mut Scratch) -> Result<(bool, usize, usize, u64), Error> {
        let (out, reused) = if four {
            compress_4x(input, s)
        } else {
            compress_1x(input, s)
        }?;
        let (len, hash) = (out.len(), fnv1a64(out));
        Ok((reused, s.out_table_len(), len, hash))
    }

    const TEXT: &[u8] = b"The quick brown fox jumps over the lazy dog; the lazy dog sleeps while the quick brown fox runs on and on.";

    #[test]
    fn a_sequence_reuses_tables_as_go_does() {
        let mut s = Scratch::new(4);
        s.reuse = ReusePolicy::None;
        assert_eq!(
            run(false, TEXT, &mut s),
            Ok((false, 25, 84, 0x6eac56d2e3007df7))
        );
        s.reuse = ReusePolicy::Allow;
        let (out, reused) = compress_1x(TEXT, &mut s).unwrap();
        assert!(reused);
        assert_eq!(
            out,
            [
                0x00, 0xdd, 0x91, 0x9a, 0x75, 0x67, 0xea, 0xd6, 0xc9, 0x12, 0xeb, 0xdb, 0x75, 0x36,
                0x86, 0xe4, 0x90, 0x31, 0xdb, 0xa8, 0x52, 0xbe, 0xd9, 0x81, 0xa8, 0xd8, 0xc5, 0xa2,
                0x95, 0xc5, 0xa8, 0x31, 0xdb, 0x81, 0x62, 0xd1, 0xca, 0x62, 0xd4, 0x98, 0xed, 0x85,
                0x85, 0x9d, 0x1d, 0x04, 0x37, 0x38, 0x59, 0x62, 0x7d, 0xbb, 0xce, 0xc6, 0x90, 0x1c,
                0x32, 0xa6, 0x20,
            ]
        );
        assert_eq!(s.out_table_len(), 0);
        let first = skewed(1, 5000, 40);
        assert_eq!(
            run(true, &first, &mut s),
            Ok((false, 17, 3198, 0xbf7154fa75eb2572))
        );
        let second = skewed(2, 5000, 40);
        assert_eq!(
            run(true, &second, &mut s),
            Ok((true, 0, 3186, 0xb1b2b05d49ed9fc1))
        );
        s.reuse = ReusePolicy::Prefer;
        let third = skewed(3, 3000, 30);
        assert_eq!(
            run(true, &third, &mut s),
            Ok((true, 0, 1819, 0x62a94d157423ce29))
        );
    }

    #[test]
    fn limits_deep_trees_to_eleven_bits() {
        // Fibonacci counts make a tree 19 levels deep.
        let (mut a, mut b) = (1, 1);
        let mut input = Vec::new();
        for symbol in 0..20u8 {
            input.extend(std::iter::repeat_n(symbol * 7, a));
            (a, b) = (b, a + b);
        }
        let mut s = Scratch::new(4);
        assert_eq!(
            run(false, &input, &mut s),
            Ok((false, 25, 5838, 0x46698cd57397c441))
        );
    }

    #[test]
    fn packs_weights_raw_when_fse_cannot() {
        // Two stored weights, equal: FSE sees a run and declines.
        let mut input = vec![0u8; 2];
        input.extend([1; 8]);
        input.extend([2; 49]);
        let mut s = Scratch::new(4);
        let (out, reused) = compress_1x(&input, &mut s).unwrap();
        assert!(!reused);
        assert_eq!(
            out,
            [0x81, 0x11, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xab, 0xaa, 0x20]
        );
    }

    #[test]
    fn refuses_what_go_refuses() {
        let uniform: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let cases: [(&[u8], bool, Error); 6] = [
            (&[], false, Error::UseRle),
            (&[9], false, Error::Incompressible),
            (&[0; 100], false, Error::UseRle),
            (&uniform, false, Error::Incompressible),
            (&skewed(5, 11, 4), true, Error::Incompressible),
            (&[0; 1 << 18], true, Error::TooBig),
        ];
        for (input, four, err) in cases {
            assert_eq!(
                run(four, input, &mut Scratch::new(4)),
                Err(err),
                "{} bytes",
                input.len()
            );
        }
        let mut s = Scratch::new(4);
        s.table_log = 12;
        assert_eq!(run(false, TEXT, &mut s), Err(Error::InvalidTableLog(12)));
    }
}
