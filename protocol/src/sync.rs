//! The data plane of network sync: what one node asks another for over a QUIC stream, and the answers.
//!
//! One request per bidirectional stream. The asker writes one frame — a little-endian `u32` length, then a
//! [`SyncRequest`] object — and finishes its side. The answer to every request but [`SyncRequest::Chunks`] is one
//! frame holding a [`SyncResponse`]. Chunks come back as a run of [`ChunkRecordHeader`]s, one per id asked for, in
//! the order asked, each followed by the chunk as its holder stores it (zstd, `stored_len` bytes) — or by nothing
//! when the holder lacks it. Receivers decompress and check every chunk against its BLAKE3 id before storing it;
//! nothing a peer sends is trusted.
//!
//! Peers on the control plane (libp2p) learn each other's data port from the [`Hello`] they exchange there.

use crate::{ChunkId, Hash32, RecipeId};
use serde::{Deserialize, Serialize};

/// Largest frame read from a peer (a recipes answer for a release of hundreds of GB stays below this).
pub const MAX_FRAME: u32 = 64 << 20;

/// Largest total of chunk bytes one [`SyncRequest::Chunks`] may ask for (raw lengths as the asker computed them).
pub const MAX_BATCH_BYTES: u64 = 64 << 20;

/// Most chunk ids in one [`SyncRequest::Chunks`].
pub const MAX_BATCH_CHUNKS: usize = 16 * 1024;

/// Most recipes one [`SyncRequest::Sketches`] names.
pub const MAX_SKETCH_RECIPES: usize = 256;

/// Most parts one [`SyncResponse::Sketches`] carries sketches for (24 bytes each); recipes past it are
/// answered with none.
pub const MAX_SKETCH_PARTS: usize = 2 << 20;

/// What one node asks another for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The signed release `name@version`.
    Release {
        /// `name@version`.
        id: String,
    },
    /// Encoded recipes, by id.
    Recipes {
        /// The ids.
        ids: Vec<RecipeId>,
    },
    /// Which chunks of release `id` the peer holds: a bitmap over the release's chunk list (every distinct chunk
    /// of its blobs, in order of first use), so nodes that are still syncing can serve what they have.
    Have {
        /// `name@version`.
        id: String,
    },
    /// Chunks by id.
    Chunks {
        /// The ids, at most [`MAX_BATCH_CHUNKS`].
        ids: Vec<ChunkId>,
    },
    /// Recipes by id, each written as a difference against a base recipe the asker holds (or whole, with no
    /// base): answered with [`SyncResponse::RecipeDiffs`].
    RecipeDiffs {
        /// Each recipe wanted, with the base to write it against.
        wanted: Vec<(RecipeId, Option<RecipeId>)>,
    },
    /// Chunks as one delta against content the asker holds: a zstd frame which, decoded with the reference's
    /// bytes as its prefix, gives the chunks' bytes in order (see `ferry_protocol::delta`). Answered with
    /// [`SyncResponse::Delta`], or refused (the peer lacks a chunk or the base, or the delta is no smaller than
    /// the chunks as stored), and then the asker fetches the chunks whole.
    Delta {
        /// The chunks, in order; at most [`MAX_BATCH_CHUNKS`] and [`crate::delta::MAX_DELTA_OUTPUT`] bytes.
        ids: Vec<ChunkId>,
        /// Where the reference lies in a base recipe both hold.
        reference: crate::delta::Reference,
        /// The zstd level to encode at (the asker's plan chooses it as a bundle export would; the holder keeps
        /// it within 1 to 19).
        level: i32,
    },
    /// The resemblance sketches of recipes the peer holds whole (24 bytes a part: six super-features), so the
    /// asker can find, among what it holds, the content a blob with no predecessor of its name resembles.
    /// Answered with [`SyncResponse::Sketches`].
    Sketches {
        /// At most [`MAX_SKETCH_RECIPES`].
        recipes: Vec<RecipeId>,
    },
    /// What the peer holds of release `id`, as changes since an earlier answer: a peer still syncing the release
    /// answers [`SyncResponse::HaveChanges`] from what it keeps in memory, a holder of the whole release
    /// [`SyncResponse::Whole`].
    HaveChanges {
        /// `name@version`.
        id: String,
        /// The mark of the last answer taken in, or none for the first.
        since: Option<HaveMark>,
    },
}

/// Where an answer to [`SyncRequest::HaveChanges`] left off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaveMark {
    /// Names the answering node's sync of the release (another sync of it, after a restart, starts over).
    pub epoch: u64,
    /// How many chunks it had shown as held.
    pub count: u64,
}

impl crate::Object for SyncRequest {
    const TYPE: u8 = 7;
    const VERSION: u16 = 1;
    const NAME: &'static str = "sync request";
}

/// An answer other than chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// An encoded signed release.
    Release(Vec<u8>),
    /// Encoded recipes, in the order asked; `None` for one the peer lacks.
    Recipes(Vec<Option<Vec<u8>>>),
    /// The peer holds the release whole: every chunk of it.
    Whole,
    /// Bit `i` (byte `i / 8`, bit `i % 8`) set when the peer holds chunk `i` of the release's chunk list, as
    /// a peer that is still syncing it computed the list.
    Have(Vec<u8>),
    /// The peer cannot answer: it lacks the release, or refuses the request. A message for the log.
    Refused(String),
    /// Recipe differences, in the order asked; `None` for one the peer lacks. Each names its base as 0 (the one
    /// asked for) or none (the peer lacks that base: the recipe in full), and carries no chunk.
    RecipeDiffs(Vec<Option<crate::delta::RecipeDiff>>),
    /// A delta frame, with the BLAKE3 prefix of its output (see [`crate::delta::output_check`]).
    Delta {
        /// The zstd frame.
        frame: Vec<u8>,
        /// Check of its output.
        check: [u8; crate::delta::CHECK_LEN],
    },
    /// Sketches, in the order asked; `None` for a recipe the peer does not hold whole (or past
    /// [`MAX_SKETCH_PARTS`]).
    Sketches(Vec<Option<Vec<u8>>>),
    /// Chunks of the release's list the peer came to hold: the whole bitmap (as [`SyncResponse::Have`]) when the
    /// asker's mark is absent or of another epoch or the changes would be larger, else only the positions added
    /// since the mark, in the order they were stored.
    HaveChanges {
        /// Pass it back in the next request.
        mark: HaveMark,
        /// The whole bitmap, replacing what the asker knew.
        bits: Option<Vec<u8>>,
        /// Positions held since the mark (with `bits`, none).
        added: Vec<u32>,
    },
    /// The answer to [`SyncRequest::HaveChanges`] of a peer that syncs the release but has no chunk list yet
    /// (it is fetching the signed release or the recipes): it will hold chunks soon, so the asker counts it among
    /// the nodes sharing the release's segments and asks again.
    Starting,
}

impl crate::Object for SyncResponse {
    const TYPE: u8 = 8;
    const VERSION: u16 = 1;
    const NAME: &'static str = "sync response";
}

/// Length of an encoded [`ChunkRecordHeader`].
pub const RECORD_HEADER_LEN: usize = 40;

/// Before each chunk of a chunks answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRecordHeader {
    /// The chunk (must be the id asked for at this place).
    pub id: ChunkId,
    /// Its length once decompressed.
    pub raw_len: u32,
    /// Bytes of zstd that follow; `None` when the peer lacks the chunk (nothing follows).
    pub stored_len: Option<u32>,
}

impl ChunkRecordHeader {
    /// `id`, `raw_len` and `stored_len` (`u32::MAX` for none), little-endian.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut out = [0u8; RECORD_HEADER_LEN];
        out[..32].copy_from_slice(self.id.as_bytes());
        out[32..36].copy_from_slice(&self.raw_len.to_le_bytes());
        out[36..].copy_from_slice(&self.stored_len.unwrap_or(u32::MAX).to_le_bytes());
        out
    }

    /// The inverse of [`ChunkRecordHeader::encode`].
    pub fn decode(bytes: &[u8; RECORD_HEADER_LEN]) -> Self {
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let stored = word(36);
        ChunkRecordHeader {
            id: ChunkId::from_bytes(bytes[..32].try_into().expect("32 bytes")),
            raw_len: word(32),
            stored_len: (stored != u32::MAX).then_some(stored),
        }
    }
}

/// A release as the control plane announces it: enough to tell whether it is new to a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announced {
    /// `name@version`.
    pub id: String,
    /// The publisher's per-name sequence number.
    pub sequence: u64,
    /// BLAKE3 of the signed envelope (two releases with one id and different content differ here).
    pub envelope: Hash32,
}

/// What two nodes tell each other when they connect on the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The UDP port of the node's data plane (QUIC), at the address the control connection reached.
    pub data_port: u16,
    /// Releases the node holds whole.
    pub releases: Vec<Announced>,
    /// Release names the node follows (takes every new version of).
    pub follows: Vec<String>,
    /// The node's site-wide pins, tombstones included, so a node that was away converges when it connects.
    #[serde(default)]
    pub pins: Vec<Pin>,
    /// The sender's wall clock when it sent this hello, milliseconds since the Unix epoch (0 from a node too
    /// old to say). Peers compare it with their own to find clocks that disagree (`ferry doctor`).
    #[serde(default)]
    pub time_ms: u64,
}

/// One name's pin, or the tombstone of a removed one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The release name.
    pub name: String,
    /// The pinned version; `None` once the pin was removed.
    pub version: Option<String>,
    /// Lamport clock of the write: higher wins.
    pub clock: u64,
    /// Peer id of the node the pin was set on; breaks ties between equal clocks.
    pub origin: String,
    /// When it was set, seconds since the Unix epoch (for people; never compared).
    pub at: u64,
    /// Set for the whole site (`ferry pin set --site`): nodes pass it on to their peers.
    pub site: bool,
}

impl Pin {
    /// Whether this write wins over `other` (for the same name).
    pub fn beats(&self, other: &Pin) -> bool {
        (self.clock, &self.origin) > (other.clock, &other.origin)
    }
}

/// A message on the control plane's gossip topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gossip {
    /// The sender now holds this release whole.
    Release(Announced),
    /// The names the sender follows.
    Follows(Vec<String>),
    /// A site-wide pin (or its removal), set on the node `origin` names.
    Pin(Pin),
}

/// Set bit `i` of `bits`.
pub fn set_bit(bits: &mut [u8], i: usize) {
    bits[i / 8] |= 1 << (i % 8);
}

/// Whether bit `i` of `bits` is set (false past the end).
pub fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Object;
    use proptest::prelude::*;

    #[test]
    fn record_headers_round_trip() {
        for stored_len in [None, Some(0), Some(65_536), Some(u32::MAX - 1)] {
            let h = ChunkRecordHeader {
                id: ChunkId::of(b"chunk"),
                raw_len: 70_000,
                stored_len,
            };
            assert_eq!(ChunkRecordHeader::decode(&h.encode()), h);
        }
    }

    #[test]
    fn bitmaps() {
        let mut bits = vec![0u8; 2];
        set_bit(&mut bits, 0);
        set_bit(&mut bits, 9);
        assert!(bit(&bits, 0) && bit(&bits, 9));
        assert!(!bit(&bits, 1) && !bit(&bits, 8) && !bit(&bits, 100));
    }

    proptest! {
        #[test]
        fn requests_round_trip(id in "[a-z]{1,20}@[0-9.]{1,8}", n in 0usize..50) {
            for r in [
                SyncRequest::Release { id: id.clone() },
                SyncRequest::Have { id: id.clone() },
                SyncRequest::HaveChanges { id: id.clone(), since: None },
                SyncRequest::HaveChanges { id: id.clone(), since: Some(HaveMark { epoch: 7, count: n as u64 }) },
                SyncRequest::Chunks { ids: (0..n).map(|i| ChunkId::of(&i.to_le_bytes())).collect() },
                SyncRequest::Delta {
                    ids: (0..n).map(|i| ChunkId::of(&i.to_le_bytes())).collect(),
                    reference: crate::delta::Reference {
                        recipe: RecipeId::of(id.as_bytes()),
                        ranges: vec![(0, n as u64), (7, 9)],
                    },
                    level: 19,
                },
            ] {
                prop_assert_eq!(SyncRequest::decode(&r.encode()).unwrap(), r);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SyncRequest::decode(&bytes);
            let _ = SyncResponse::decode(&bytes);
        }
    }
}
