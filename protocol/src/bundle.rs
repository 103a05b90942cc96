//! Bundles for removable media, and the have-files that tell a seed what a site holds.
//!
//! A bundle is a directory: the signed index [`INDEX_FILE`] and volumes named by [`volume_name`]. The volumes,
//! concatenated, are one *stream*: a sequence of independent zstd frames (*segments*), each of which decompresses
//! to chunk records. The index names every release, every recipe the receiver lacks, every segment (offset,
//! lengths, chunk count, first part) and every volume (size, BLAKE3, and a hash per [`BLOCK_SIZE`] block, so a
//! damaged byte is found to the block).
//!
//! A record does not repeat the chunk's id and length: those are in the recipes the index carries, and every
//! chunk a bundle carries is a part of one of them. The index's recipes are differences against recipes the
//! receiver holds ([`RecipeDiff`]): parts copied from a base, chunks carried here (named by nothing — the
//! receiver hashes their bytes, and the rebuilt recipe must hash to the id its signed release names), chunks named
//! in full. Their parts, in order, are numbered from 0 ([`part_table`]). A record starts with a LEB128 header:
//! the *gap* — how many parts to skip since the previous record's last (or since the segment's `first_part`) —
//! shifted left by one, its low bit the record's kind:
//! - 0, a chunk: its bytes follow, as many as that part's length;
//! - 1, a delta: how many further chunks it carries (LEB128 `n - 1`), a LEB128 gap before each of them, the base
//!   it refers to (LEB128 index into the index's `bases`), how many ranges of that base's content make its
//!   reference and each range's offset and length (LEB128 each), [`CHECK_LEN`] bytes of BLAKE3 over its output,
//!   the frame's length (LEB128), then a zstd frame which, decoded with the reference (the ranges' bytes,
//!   concatenated) as its prefix, gives the chunks' bytes in order.
//!
//! The receiver checks each chunk's BLAKE3 against the part's id where the index names it.
//!
//! Volume names are derived from their number, never read from the index, so nothing inside a bundle can name a
//! path.

use crate::codec::{CodecError, Object};
use crate::delta::{RecipeDiff, Slot, CHECK_LEN, MAX_DELTA_OUTPUT, MAX_RANGES, MAX_REFERENCE};
use crate::ids::{ChunkId, Hash32, KeyId, RecipeId};
use crate::release::{sign_bytes, verify_bytes, PublisherKey, SignatureError, SignedRelease};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

/// The index file's name inside a bundle directory.
pub const INDEX_FILE: &str = "ferry-bundle.index";

/// Volumes are hashed in blocks of this many bytes (the last block of a volume may be shorter).
pub const BLOCK_SIZE: u64 = 1 << 20;

/// The largest chunk a record may carry; anything longer is malformed.
pub const MAX_RECORD: u32 = 16 << 20;

/// The most bytes a record's gap takes (a LEB128 `u64`).
pub const MAX_GAP_BYTES: usize = 10;

/// The largest segment (decompressed) a reader accepts.
pub const MAX_SEGMENT: u64 = 256 << 20;

/// The file name of volume `n` (numbered from 1).
pub fn volume_name(n: usize) -> String {
    format!("ferry-bundle.{n:03}")
}

/// The first bytes of a block's BLAKE3, enough to name a damaged block.
pub type BlockHash = [u8; 16];

/// The hash of one volume block.
pub fn block_hash(block: &[u8]) -> BlockHash {
    blake3::hash(block).as_bytes()[..16]
        .try_into()
        .expect("16 bytes")
}

/// What the exporter assumed the receiver already holds. Empty in every field: a complete bundle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    /// Releases (`name@version`) the receiver was assumed to hold: `--base`, a have-file's releases, a site's
    /// ledger.
    pub releases: Vec<String>,
    /// The have-file used, if any.
    pub have: Option<HaveSummary>,
    /// The site whose ledger was used, if any.
    pub site: Option<String>,
}

impl Basis {
    /// Whether the bundle assumed nothing: everything its releases need is inside.
    pub fn is_complete(&self) -> bool {
        self.releases.is_empty() && self.have.is_none()
    }
}

/// A have-file, as a bundle records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaveSummary {
    /// The publisher key of the store that wrote it.
    pub store: KeyId,
    /// When it was written.
    pub created: u64,
    /// Releases it listed.
    pub releases: u64,
    /// Chunks it listed.
    pub chunks: u64,
}

/// One independent zstd frame of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Offset of the frame in the stream (the volumes concatenated).
    pub offset: u64,
    /// Compressed length.
    pub comp_len: u64,
    /// Decompressed length: the records.
    pub raw_len: u64,
    /// Records in it.
    pub chunks: u32,
    /// The part number the first record's gap counts from (see the module docs).
    pub first_part: u64,
}

/// One volume file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Its length.
    pub size: u64,
    /// BLAKE3 of the whole file (what `b3sum` prints).
    pub blake3: Hash32,
    /// A hash per [`BLOCK_SIZE`] block.
    pub blocks: Vec<BlockHash>,
}

/// Everything a receiver needs to check and import a bundle, signed as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleIndex {
    /// When it was written, seconds since the Unix epoch.
    pub created: u64,
    /// What the exporter assumed the receiver holds.
    pub basis: Basis,
    /// The releases it carries, each signed by its publisher.
    pub releases: Vec<SignedRelease>,
    /// The recipes the receiver lacks, as differences against `bases`.
    pub recipes: Vec<RecipeDiff>,
    /// Recipes the receiver holds that `recipes` and delta records refer to, each with the blob it rebuilds
    /// (for messages): importing needs every one.
    pub bases: Vec<(RecipeId, crate::ids::BlobId)>,
    /// zstd level the stream was written with (informational).
    pub zstd_level: i32,
    /// The stream's frames, in order; they tile it.
    pub segments: Vec<Segment>,
    /// Chunk records in the stream.
    pub chunks: u64,
    /// Bytes of chunk content in the stream (record headers not counted).
    pub payload_bytes: u64,
    /// Of `chunks`, those carried inside delta records.
    pub delta_chunks: u64,
    /// What the delta records saved: the same chunks compressed alone at the stream's level, less the deltas.
    pub delta_saved_bytes: u64,
    /// The volumes, in order.
    pub volumes: Vec<Volume>,
}

impl Object for BundleIndex {
    const TYPE: u8 = 4;
    const VERSION: u16 = 2;
    const OLDEST: u16 = 2;
    const NAME: &'static str = "bundle index";
}

/// Why a bundle index is malformed though its signature holds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexError {
    /// Segments that do not tile the stream.
    #[error("segment {n} starts at {offset}, expected {expected}")]
    SegmentGap {
        /// Which segment (from 0).
        n: usize,
        /// Where it says it starts.
        offset: u64,
        /// Where the previous one ended.
        expected: u64,
    },
    /// A segment too large to decompress safely.
    #[error("segment {n} claims {raw_len} bytes, more than the {MAX_SEGMENT}-byte limit")]
    SegmentTooLarge {
        /// Which segment.
        n: usize,
        /// Its claimed size.
        raw_len: u64,
    },
    /// Volumes and segments disagree on the stream's length.
    #[error("the volumes hold {volumes} bytes but the segments need {segments}")]
    LengthMismatch {
        /// Sum of volume sizes.
        volumes: u64,
        /// End of the last segment.
        segments: u64,
    },
    /// A volume whose block list does not match its size.
    #[error("volume {n} lists {blocks} block hashes for {size} bytes")]
    BlockCount {
        /// Volume number (from 1).
        n: usize,
        /// Hashes listed.
        blocks: usize,
        /// Its size.
        size: u64,
    },
}

impl BundleIndex {
    /// Check that segments tile the stream and the volumes hold exactly it.
    pub fn check(&self) -> Result<(), IndexError> {
        let mut end = 0u64;
        for (n, s) in self.segments.iter().enumerate() {
            if s.offset != end {
                return Err(IndexError::SegmentGap {
                    n,
                    offset: s.offset,
                    expected: end,
                });
            }
            if s.raw_len > MAX_SEGMENT {
                return Err(IndexError::SegmentTooLarge {
                    n,
                    raw_len: s.raw_len,
                });
            }
            end = end.saturating_add(s.comp_len);
        }
        let mut total = 0u64;
        for (i, v) in self.volumes.iter().enumerate() {
            let want = v.size.div_ceil(BLOCK_SIZE);
            if v.blocks.len() as u64 != want {
                return Err(IndexError::BlockCount {
                    n: i + 1,
                    blocks: v.blocks.len(),
                    size: v.size,
                });
            }
            total = total.saturating_add(v.size);
        }
        if total != end {
            return Err(IndexError::LengthMismatch {
                volumes: total,
                segments: end,
            });
        }
        Ok(())
    }

    /// Bytes of the stream (compressed).
    pub fn stream_bytes(&self) -> u64 {
        self.volumes.iter().map(|v| v.size).sum()
    }

    /// Encode and sign.
    pub fn sign(&self, key: &SigningKey) -> SignedIndex {
        let index = self.encode();
        let (key, signature) = sign_bytes(key, &index);
        SignedIndex {
            index,
            key,
            signature,
        }
    }
}

/// The index file: the encoded [`BundleIndex`] and the signature over exactly those bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIndex {
    /// The encoded index.
    pub index: Vec<u8>,
    /// Which key signed.
    pub key: KeyId,
    /// The ed25519 signature.
    pub signature: Vec<u8>,
}

impl Object for SignedIndex {
    const TYPE: u8 = 5;
    const VERSION: u16 = 1;
    const NAME: &'static str = "signed bundle index";
}

impl SignedIndex {
    /// Verify against `key`, decode the index and check its structure.
    pub fn verify(&self, key: &PublisherKey) -> Result<BundleIndex, SignatureError> {
        verify_bytes(key, self.key, &self.index, &self.signature)?;
        Ok(BundleIndex::decode(&self.index)?)
    }

    /// Decode without checking the signature (to show what an unverifiable bundle claims).
    pub fn index_unverified(&self) -> Result<BundleIndex, CodecError> {
        BundleIndex::decode(&self.index)
    }
}

/// What a site holds, written by `ferry have` and read by `ferry export --have`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaveFile {
    /// The publisher key of the store that wrote it (its identity).
    pub store: KeyId,
    /// When it was written.
    pub created: u64,
    /// Each release held: `name@version` and the BLAKE3 of its signed envelope.
    pub releases: Vec<(String, Hash32)>,
    /// The first [`HAVE_PREFIX`] bytes of every chunk id held, sorted, concatenated.
    pub chunks: Vec<u8>,
}

/// Bytes of each chunk id a have-file keeps: 96 bits make an accidental match between different chunks
/// negligible (and an importer names any chunk it still lacks).
pub const HAVE_PREFIX: usize = 12;

impl Object for HaveFile {
    const TYPE: u8 = 6;
    const VERSION: u16 = 1;
    const NAME: &'static str = "have-file";
}

impl HaveFile {
    /// Build from release ids with envelope hashes and chunk ids (any order).
    pub fn new(
        store: KeyId,
        created: u64,
        releases: Vec<(String, Hash32)>,
        chunks: impl IntoIterator<Item = ChunkId>,
    ) -> Self {
        let mut prefixes: Vec<[u8; HAVE_PREFIX]> = chunks
            .into_iter()
            .map(|c| c.as_bytes()[..HAVE_PREFIX].try_into().expect("prefix"))
            .collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        HaveFile {
            store,
            created,
            releases,
            chunks: prefixes.concat(),
        }
    }

    /// Chunks listed.
    pub fn chunk_count(&self) -> u64 {
        (self.chunks.len() / HAVE_PREFIX) as u64
    }

    /// Whether the site holds `id` (by prefix; the list is sorted, so this is a binary search).
    pub fn has_chunk(&self, id: &ChunkId) -> bool {
        let n = self.chunks.len() / HAVE_PREFIX;
        let key = &id.as_bytes()[..HAVE_PREFIX];
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let p = &self.chunks[mid * HAVE_PREFIX..(mid + 1) * HAVE_PREFIX];
            match p.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// A summary for a bundle's basis.
    pub fn summary(&self) -> HaveSummary {
        HaveSummary {
            store: self.store,
            created: self.created,
            releases: self.releases.len() as u64,
            chunks: self.chunk_count(),
        }
    }
}

/// The parts of `recipes`, numbered in order as records count them.
pub fn part_table(recipes: &[RecipeDiff]) -> Result<Vec<Slot>, crate::delta::DiffError> {
    let mut out = Vec::new();
    for r in recipes {
        out.extend(r.slots()?);
        if out.len() > crate::delta::MAX_PARTS {
            return Err(crate::delta::DiffError::TooLong(crate::delta::MAX_PARTS));
        }
    }
    Ok(out)
}

/// Append a LEB128 `u64`.
pub fn write_leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Append a chunk record's header (`gap` parts skipped); the caller appends the chunk's bytes.
pub fn write_gap(out: &mut Vec<u8>, gap: u64) {
    write_leb(out, gap << 1);
}

/// A delta record's header, up to its frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaHeader {
    /// Gaps: before the first chunk (from the previous record), then before each further one (from the one
    /// before it).
    pub gaps: Vec<u64>,
    /// Index into the index's `bases`.
    pub base: u32,
    /// The reference: ranges (offset, length) of the base's content, concatenated in this order.
    pub ranges: Vec<(u64, u64)>,
    /// BLAKE3 prefix of the output.
    pub check: [u8; CHECK_LEN],
}

/// Append a delta record: header, then `frame`.
pub fn write_delta(out: &mut Vec<u8>, h: &DeltaHeader, frame: &[u8]) {
    write_leb(out, (h.gaps[0] << 1) | 1);
    write_leb(out, h.gaps.len() as u64 - 1);
    for &g in &h.gaps[1..] {
        write_leb(out, g);
    }
    write_leb(out, u64::from(h.base));
    write_leb(out, h.ranges.len() as u64);
    for &(offset, len) in &h.ranges {
        write_leb(out, offset);
        write_leb(out, len);
    }
    out.extend_from_slice(&h.check);
    write_leb(out, frame.len() as u64);
    out.extend_from_slice(frame);
}

/// Why a decompressed segment does not parse as records.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The segment ends inside a record.
    #[error("record at byte {at} of the segment is cut short")]
    Truncated {
        /// Offset of the record in the decompressed segment.
        at: usize,
    },
    /// A gap or length that does not decode.
    #[error("record at byte {at} of the segment has a malformed number")]
    BadGap {
        /// Offset.
        at: usize,
    },
    /// A record pointing past the recipes' parts, or at a part no record may carry.
    #[error(
        "record at byte {at} of the segment names part {part}, which the bundle does not carry"
    )]
    BadPart {
        /// Offset.
        at: usize,
        /// The part it names.
        part: u64,
    },
    /// A part longer than any chunk.
    #[error("record at byte {at} of the segment names a {len}-byte chunk")]
    TooLong {
        /// Offset.
        at: usize,
        /// Its length.
        len: u32,
    },
    /// A delta naming a base the index does not list, or a reference or output past the limits.
    #[error("delta record at byte {at} of the segment: {why}")]
    BadDelta {
        /// Offset.
        at: usize,
        /// What is wrong.
        why: String,
    },
}

/// One chunk a record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Carried {
    /// Its part number.
    pub part: u64,
    /// Its id, when the index names it (else the receiver hashes the bytes).
    pub id: Option<ChunkId>,
    /// Its length.
    pub len: u32,
}

/// A record of a decompressed segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// One chunk, its bytes at `bytes` in the segment.
    Chunk {
        /// The chunk.
        chunk: Carried,
        /// Where its bytes are.
        bytes: std::ops::Range<usize>,
    },
    /// Chunks as a delta against a reference.
    Delta {
        /// The chunks, in order; the frame decodes to their bytes, concatenated.
        chunks: Vec<Carried>,
        /// The header.
        header: DeltaHeader,
        /// Where the zstd frame is in the segment.
        frame: std::ops::Range<usize>,
        /// Where the record starts (for messages).
        at: usize,
    },
}

impl Record {
    /// The chunks carried.
    pub fn chunk_count(&self) -> usize {
        match self {
            Record::Chunk { .. } => 1,
            Record::Delta { chunks, .. } => chunks.len(),
        }
    }
}

/// Split a decompressed segment into records, ids and lengths taken from `parts` (see [`part_table`]) starting
/// at `first_part`; `bases` is how many bases the index lists. Checks framing only; the caller decodes deltas and
/// hashes the content.
pub fn parse_records(
    raw: &[u8],
    first_part: u64,
    parts: &[Slot],
    bases: usize,
) -> Result<Vec<Record>, RecordError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut next = first_part;
    let slot = |at: usize, part: u64| -> Result<Carried, RecordError> {
        let (id, len) = usize::try_from(part)
            .ok()
            .and_then(|p| parts.get(p).and_then(Slot::carried))
            .ok_or(RecordError::BadPart { at, part })?;
        if len > MAX_RECORD {
            return Err(RecordError::TooLong { at, len });
        }
        Ok(Carried { part, id, len })
    };
    while at < raw.len() {
        let mut pos = at;
        let mut leb = || -> Result<u64, RecordError> {
            let (v, used) = read_gap(&raw[pos..]).ok_or(RecordError::BadGap { at })?;
            pos += used;
            Ok(v)
        };
        let head = leb()?;
        let part = next
            .checked_add(head >> 1)
            .ok_or(RecordError::BadPart { at, part: u64::MAX })?;
        if head & 1 == 0 {
            let chunk = slot(at, part)?;
            let start = pos;
            let end = start + chunk.len as usize;
            if end > raw.len() {
                return Err(RecordError::Truncated { at });
            }
            out.push(Record::Chunk {
                chunk,
                bytes: start..end,
            });
            at = end;
            next = part + 1;
            continue;
        }
        let more = leb()?;
        let bad = |why: String| RecordError::BadDelta { at, why };
        if more >= MAX_DELTA_OUTPUT {
            return Err(bad(format!("carries {more} chunks")));
        }
        let mut gaps = vec![head >> 1];
        let mut chunks = vec![slot(at, part)?];
        let mut last = part;
        for _ in 0..more {
            let g = leb()?;
            let p = last
                .checked_add(1)
                .and_then(|l| l.checked_add(g))
                .ok_or(RecordError::BadPart { at, part: u64::MAX })?;
            gaps.push(g);
            chunks.push(slot(at, p)?);
            last = p;
        }
        let base = leb()?;
        let count = leb()?;
        if count > MAX_RANGES {
            return Err(bad(format!("refers to {count} ranges")));
        }
        let mut ranges = Vec::with_capacity(count as usize);
        let mut len = 0u64;
        for _ in 0..count {
            let (o, l) = (leb()?, leb()?);
            len = len.saturating_add(l);
            ranges.push((o, l));
        }
        if base >= bases as u64 {
            return Err(bad(format!("names base {base}, the index lists {bases}")));
        }
        if len > MAX_REFERENCE {
            return Err(bad(format!(
                "refers to {len} bytes, more than the {MAX_REFERENCE}-byte limit"
            )));
        }
        let output: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
        if output > MAX_DELTA_OUTPUT {
            return Err(bad(format!(
                "decodes to {output} bytes, more than the {MAX_DELTA_OUTPUT}-byte limit"
            )));
        }
        let check: [u8; CHECK_LEN] = raw
            .get(pos..pos + CHECK_LEN)
            .ok_or(RecordError::Truncated { at })?
            .try_into()
            .expect("CHECK_LEN bytes");
        pos += CHECK_LEN;
        let mut leb = || -> Result<u64, RecordError> {
            let (v, used) = read_gap(&raw[pos..]).ok_or(RecordError::BadGap { at })?;
            pos += used;
            Ok(v)
        };
        let frame_len = leb()?;
        let end = usize::try_from(frame_len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&e| e <= raw.len())
            .ok_or(RecordError::Truncated { at })?;
        out.push(Record::Delta {
            chunks,
            header: DeltaHeader {
                gaps,
                base: base as u32,
                ranges,
                check,
            },
            frame: pos..end,
            at,
        });
        at = end;
        next = last + 1;
    }
    Ok(out)
}

/// Decode a LEB128 `u64`: the value and the bytes it took.
fn read_gap(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(MAX_GAP_BYTES) {
        let bits = u64::from(byte & 0x7f);
        if i == MAX_GAP_BYTES - 1 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn have_lookup() {
        let ids: Vec<ChunkId> = (0u32..1000)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .collect();
        let h = HaveFile::new(KeyId([1; 8]), 0, vec![], ids.iter().copied().step_by(2));
        assert_eq!(h.chunk_count(), 500);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(h.has_chunk(id), i % 2 == 0, "chunk {i}");
        }
        let back = HaveFile::decode(&h.encode()).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn records_round_trip_and_refuse_bad_framing() {
        use crate::delta::Op;
        let data: [&[u8]; 4] = [b"hello", b"", b"world!", b"again"];
        // Part 0 named, 1 zeros, 2 named (""), 3 sent, 4 named, 5 held (copied from base 0).
        let diff = RecipeDiff {
            id: RecipeId::of(b"any"),
            shape: crate::delta::Shape::Concat,
            base: Some(0),
            ops: vec![
                Op::Chunk {
                    id: ChunkId::of(data[0]),
                    len: 5,
                },
                Op::Zero { len: 9 },
                Op::Chunk {
                    id: ChunkId::of(data[1]),
                    len: 0,
                },
                Op::Sent { len: 6 },
                Op::Chunk {
                    id: ChunkId::of(data[3]),
                    len: 5,
                },
                Op::Copy { from: 0, n: 1 },
            ],
        };
        let table = part_table(std::slice::from_ref(&diff)).unwrap();
        assert_eq!(table.len(), 6);
        // Records for part 2 ("" after the zero run), then a delta carrying parts 3 and 4, from part 1.
        let mut raw = Vec::new();
        write_gap(&mut raw, 1);
        let header = DeltaHeader {
            gaps: vec![0, 0],
            base: 0,
            ranges: vec![(3, 1000), (5000, 20)],
            check: [7; CHECK_LEN],
        };
        write_delta(&mut raw, &header, b"frame");
        let recs = parse_records(&raw, 1, &table, 1).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0],
            Record::Chunk {
                chunk: Carried {
                    part: 2,
                    id: Some(ChunkId::of(b"")),
                    len: 0
                },
                bytes: 1..1
            }
        );
        let Record::Delta {
            chunks,
            header: h,
            frame,
            ..
        } = &recs[1]
        else {
            panic!("a delta record");
        };
        assert_eq!(h, &header);
        assert_eq!(&raw[frame.clone()], b"frame");
        assert_eq!(chunks[0].id, None, "a sent chunk is named by its bytes");
        assert_eq!(chunks[1].id, Some(ChunkId::of(b"again")));
        assert!(matches!(
            parse_records(&raw[..raw.len() - 1], 1, &table, 1),
            Err(RecordError::Truncated { .. })
        ));
        // A base the index does not list.
        assert!(matches!(
            parse_records(&raw, 1, &table, 0),
            Err(RecordError::BadDelta { .. })
        ));
        // Pointing at the zero run, at a held part, or past the end.
        assert!(matches!(
            parse_records(&[0], 1, &table, 1),
            Err(RecordError::BadPart { part: 1, .. })
        ));
        assert!(matches!(
            parse_records(&[0], 5, &table, 1),
            Err(RecordError::BadPart { part: 5, .. })
        ));
        assert!(matches!(
            parse_records(&[18], 0, &table, 1),
            Err(RecordError::BadPart { .. })
        ));
        assert!(matches!(
            parse_records(&[0xff; 11], 0, &table, 1),
            Err(RecordError::BadGap { .. })
        ));
        let mut big = Vec::new();
        write_leb(&mut big, u64::MAX);
        assert_eq!(read_gap(&big), Some((u64::MAX, 10)));
        big.clear();
        write_gap(&mut big, u64::MAX >> 1);
        assert!(matches!(
            parse_records(&big, 5, &table, 1),
            Err(RecordError::BadPart { .. })
        ));
    }

    #[test]
    fn index_structure_checks() {
        let mut idx = BundleIndex {
            created: 0,
            basis: Basis::default(),
            releases: vec![],
            recipes: vec![],
            bases: vec![],
            zstd_level: 3,
            segments: vec![
                Segment {
                    offset: 0,
                    comp_len: 10,
                    raw_len: 100,
                    chunks: 1,
                    first_part: 0,
                },
                Segment {
                    offset: 10,
                    comp_len: 5,
                    raw_len: 50,
                    chunks: 1,
                    first_part: 1,
                },
            ],
            chunks: 2,
            payload_bytes: 78,
            delta_chunks: 0,
            delta_saved_bytes: 0,
            volumes: vec![Volume {
                size: 15,
                blake3: Hash32([0; 32]),
                blocks: vec![[0; 16]],
            }],
        };
        assert_eq!(idx.check(), Ok(()));
        idx.segments[1].offset = 11;
        assert!(matches!(idx.check(), Err(IndexError::SegmentGap { .. })));
        idx.segments[1].offset = 10;
        idx.volumes[0].size = 16;
        assert!(matches!(
            idx.check(),
            Err(IndexError::LengthMismatch { .. })
        ));
        idx.volumes[0].blocks.clear();
        assert!(matches!(idx.check(), Err(IndexError::BlockCount { .. })));
    }
}
