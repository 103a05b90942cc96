//! Bundles for removable media, and the have-files that tell a seed what a site holds.
//!
//! A bundle is a directory: the signed index [`INDEX_FILE`] and volumes named by [`volume_name`]. The volumes,
//! concatenated, are one *stream*: a sequence of independent zstd frames (*segments*), each of which decompresses
//! to chunk records — the chunk's BLAKE3 id (32 bytes), its length (`u32` little-endian), its bytes. The index
//! names every release, every recipe the receiver lacks, every segment (offset, lengths, chunk count) and every
//! volume (size, BLAKE3, and a hash per [`BLOCK_SIZE`] block, so a damaged byte is found to the block).
//!
//! Volume names are derived from their number, never read from the index, so nothing inside a bundle can name a
//! path.

use crate::codec::{CodecError, Object};
use crate::ids::{ChunkId, Hash32, KeyId};
use crate::release::{sign_bytes, verify_bytes, PublisherKey, SignatureError, SignedRelease};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

/// The index file's name inside a bundle directory.
pub const INDEX_FILE: &str = "ferry-bundle.index";

/// Volumes are hashed in blocks of this many bytes (the last block of a volume may be shorter).
pub const BLOCK_SIZE: u64 = 1 << 20;

/// Bytes of a chunk record's header in the decompressed stream: id, then length.
pub const RECORD_HEADER: usize = 36;

/// The largest chunk a record may carry; anything longer is malformed.
pub const MAX_RECORD: u32 = 16 << 20;

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

/// Encode a chunk record header.
pub fn record_header(id: &ChunkId, len: u32) -> [u8; RECORD_HEADER] {
    let mut h = [0u8; RECORD_HEADER];
    h[..32].copy_from_slice(id.as_bytes());
    h[32..].copy_from_slice(&len.to_le_bytes());
    h
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
    /// A record longer than any chunk.
    #[error("record at byte {at} of the segment claims {len} bytes")]
    TooLong {
        /// Offset.
        at: usize,
        /// Claimed length.
        len: u32,
    },
}

/// Split a decompressed segment into `(id, range of the content)`, checking framing only (not hashes).
pub fn parse_records(raw: &[u8]) -> Result<Vec<(ChunkId, std::ops::Range<usize>)>, RecordError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < raw.len() {
        if raw.len() - at < RECORD_HEADER {
            return Err(RecordError::Truncated { at });
        }
        let id = ChunkId::from_bytes(raw[at..at + 32].try_into().expect("32 bytes"));
        let len = u32::from_le_bytes(raw[at + 32..at + 36].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            return Err(RecordError::TooLong { at, len });
        }
        let start = at + RECORD_HEADER;
        let end = start + len as usize;
        if end > raw.len() {
            return Err(RecordError::Truncated { at });
        }
        out.push((id, start..end));
        at = end;
    }
    Ok(out)
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
        let mut raw = Vec::new();
        for data in [&b"hello"[..], b"", b"world!"] {
            raw.extend_from_slice(&record_header(&ChunkId::of(data), data.len() as u32));
            raw.extend_from_slice(data);
        }
        let recs = parse_records(&raw).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(&raw[recs[2].1.clone()], b"world!");
        assert_eq!(recs[2].0, ChunkId::of(b"world!"));
        assert!(matches!(
            parse_records(&raw[..raw.len() - 1]),
            Err(RecordError::Truncated { .. })
        ));
        let mut long = record_header(&ChunkId::of(b"x"), MAX_RECORD + 1).to_vec();
        long.push(0);
        assert!(matches!(
            parse_records(&long),
            Err(RecordError::TooLong { .. })
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
                },
                Segment {
                    offset: 10,
                    comp_len: 5,
                    raw_len: 50,
                    chunks: 1,
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
