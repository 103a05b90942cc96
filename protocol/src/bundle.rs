//! Bundles for removable media, and the have-files that tell a seed what a site holds.
//!
//! A bundle is a directory: the signed index [`INDEX_FILE`] and volumes named by [`volume_name`]. The volumes,
//! concatenated, are one *stream*: a sequence of independent zstd frames (*segments*), each of which decompresses
//! to chunk records. The index names every release, every recipe the receiver lacks, every segment (offset,
//! lengths, chunk count, first part) and every volume (size, BLAKE3, and a hash per [`BLOCK_SIZE`] block, so a
//! damaged byte is found to the block).
//!
//! A record does not repeat the chunk's id and length: those are in the recipes the index carries, and every
//! chunk a bundle carries is a part of one of them. The parts of the index's recipes, in order, are numbered from
//! 0 ([`part_table`]); a record is a LEB128 *gap* — how many parts to skip since the previous record (or since the
//! segment's `first_part`) — then the chunk's bytes, as many as that part's length. The receiver checks each
//! chunk's BLAKE3 against the part's id. Records used to carry the id and length (36 bytes a chunk, incompressible);
//! the gap is mostly a single zero byte.
//!
//! Volume names are derived from their number, never read from the index, so nothing inside a bundle can name a
//! path.

use crate::codec::{CodecError, Object};
use crate::ids::{ChunkId, Hash32, KeyId};
use crate::recipe::{Part, Recipe};
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
    /// Encoded recipes the receiver lacks (each named by the BLAKE3 of its bytes).
    pub recipes: Vec<Vec<u8>>,
    /// zstd level the stream was written with (informational).
    pub zstd_level: i32,
    /// The stream's frames, in order; they tile it.
    pub segments: Vec<Segment>,
    /// Chunk records in the stream.
    pub chunks: u64,
    /// Bytes of chunk content in the stream (record headers not counted).
    pub payload_bytes: u64,
    /// The volumes, in order.
    pub volumes: Vec<Volume>,
}

impl Object for BundleIndex {
    const TYPE: u8 = 4;
    const VERSION: u16 = 1;
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

/// The chunk parts of `recipes`, numbered in order as records count them: `Some((id, len))` for a chunk, `None`
/// for a run of zeros (which no record may point at).
pub fn part_table(recipes: &[Recipe]) -> Vec<Option<(ChunkId, u32)>> {
    recipes
        .iter()
        .flat_map(|r| r.parts())
        .map(|p| match *p {
            Part::Chunk { id, len } => Some((id, len)),
            Part::Zero { .. } => None,
        })
        .collect()
}

/// Append a record's gap (LEB128); the caller appends the chunk's bytes.
pub fn write_gap(out: &mut Vec<u8>, mut gap: u64) {
    loop {
        let byte = (gap & 0x7f) as u8;
        gap >>= 7;
        if gap == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
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
    /// A gap that does not decode.
    #[error("record at byte {at} of the segment has a malformed gap")]
    BadGap {
        /// Offset.
        at: usize,
    },
    /// A record pointing past the recipes' parts, or at a run of zeros.
    #[error("record at byte {at} of the segment names part {part}, which is not a chunk of the bundle's recipes")]
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
}

/// Split a decompressed segment into `(id, range of the content)`, the ids and lengths taken from `parts` (see
/// [`part_table`]) starting at `first_part`. Checks framing only; the caller hashes the content.
pub fn parse_records(
    raw: &[u8],
    first_part: u64,
    parts: &[Option<(ChunkId, u32)>],
) -> Result<Vec<(ChunkId, std::ops::Range<usize>)>, RecordError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut next = first_part;
    while at < raw.len() {
        let (gap, used) = read_gap(&raw[at..]).ok_or(RecordError::BadGap { at })?;
        let part = next
            .checked_add(gap)
            .ok_or(RecordError::BadPart { at, part: u64::MAX })?;
        let (id, len) = usize::try_from(part)
            .ok()
            .and_then(|p| parts.get(p).copied().flatten())
            .ok_or(RecordError::BadPart { at, part })?;
        if len > MAX_RECORD {
            return Err(RecordError::TooLong { at, len });
        }
        let start = at + used;
        let end = start + len as usize;
        if end > raw.len() {
            return Err(RecordError::Truncated { at });
        }
        out.push((id, start..end));
        at = end;
        next = part + 1;
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
        let data: [&[u8]; 4] = [b"hello", b"", b"world!", b"again"];
        let mut parts: Vec<Part> = data
            .iter()
            .map(|d| Part::Chunk {
                id: ChunkId::of(d),
                len: d.len() as u32,
            })
            .collect();
        parts.insert(1, Part::Zero { len: 9 });
        let table = part_table(&[Recipe::concat(parts)]);
        assert_eq!(table.len(), 5);
        // Records for parts 2 ("" after the zero run), 4 ("again"), starting from part 1.
        let mut raw = Vec::new();
        write_gap(&mut raw, 1);
        write_gap(&mut raw, 1);
        raw.extend_from_slice(b"again");
        let recs = parse_records(&raw, 1, &table).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].0, ChunkId::of(b""));
        assert_eq!(recs[1].0, ChunkId::of(b"again"));
        assert_eq!(&raw[recs[1].1.clone()], b"again");
        assert!(matches!(
            parse_records(&raw[..raw.len() - 1], 1, &table),
            Err(RecordError::Truncated { .. })
        ));
        // Pointing at the zero run, or past the end.
        assert!(matches!(
            parse_records(&[0], 1, &table),
            Err(RecordError::BadPart { part: 1, .. })
        ));
        assert!(matches!(
            parse_records(&[9], 0, &table),
            Err(RecordError::BadPart { .. })
        ));
        assert!(matches!(
            parse_records(&[0xff; 11], 0, &table),
            Err(RecordError::BadGap { .. })
        ));
        let mut big = Vec::new();
        write_gap(&mut big, u64::MAX);
        assert_eq!(read_gap(&big), Some((u64::MAX, 10)));
        assert!(matches!(
            parse_records(&big, 5, &table),
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
