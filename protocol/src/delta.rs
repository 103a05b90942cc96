//! Delta transport: what crosses is less than the chunk.
//!
//! Two forms, both relative to content the receiver already holds:
//! - a **recipe difference** ([`RecipeDiff`]): a recipe as runs of parts copied from a *base* recipe, chunks this
//!   transfer carries (named by nothing: the receiver hashes their bytes), and chunks named in full. Rebuilt, it
//!   must hash to the recipe id the signed release names.
//! - a **delta frame**: chunks encoded as one zstd frame whose *reference* (a zstd prefix, as `zstd
//!   --patch-from` uses) is a byte range of a base recipe's content — its parts' bytes, in order, zero runs
//!   included. The receiver reads that range from its own store, decodes, and checks every chunk against its id
//!   before storing it.
//!
//! The store keeps whole chunks: deltas are a transport form only, so reads never chain and garbage collection
//! never follows them.

use crate::ids::{ChunkId, RecipeId};
use crate::recipe::{Part, Recipe};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Largest reference a delta may name: what a receiver reads into memory to decode one.
pub const MAX_REFERENCE: u64 = 128 << 20;

/// Most ranges one reference is made of.
pub const MAX_RANGES: u64 = 1 << 16;

/// Largest output of one delta frame (the chunks it carries together).
pub const MAX_DELTA_OUTPUT: u64 = 64 << 20;

/// Bytes of BLAKE3 over a delta's output that travel with it, so a delta that decodes wrong is named as such
/// before any of its chunks is looked at.
pub const CHECK_LEN: usize = 8;

/// The check of a delta's output.
pub fn output_check(output: &[u8]) -> [u8; CHECK_LEN] {
    blake3::hash(output).as_bytes()[..CHECK_LEN]
        .try_into()
        .expect("8 bytes")
}

/// A recipe's kind and the fields its parts do not give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shape {
    /// [`Recipe::Concat`]: the size is the parts' sum.
    Concat,
    /// [`Recipe::Gzip`].
    Gzip {
        /// Size of the gzip stream.
        size: u64,
        /// Size of the decompressed bytes.
        raw_size: u64,
        /// How many parts are the decompressed bytes.
        raw_parts: u32,
    },
}

/// One step of a [`RecipeDiff`]; each stands for one or more parts of the recipe, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Parts `from..from + n` of the base recipe.
    Copy {
        /// First part of the base.
        from: u32,
        /// How many.
        n: u32,
    },
    /// A chunk of `len` bytes that this transfer carries at this part: its id is the BLAKE3 of those bytes.
    Sent {
        /// Its length.
        len: u32,
    },
    /// A chunk named in full (held by the receiver outside the base, or carried at another part).
    Chunk {
        /// Its id.
        id: ChunkId,
        /// Its length.
        len: u32,
    },
    /// A run of zeros.
    Zero {
        /// How many bytes.
        len: u64,
    },
}

/// A recipe written as a difference against a base recipe the receiver holds (or against nothing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeDiff {
    /// The id the rebuilt recipe must have.
    pub id: RecipeId,
    /// Kind and sizes.
    pub shape: Shape,
    /// Which base (an index into the transfer's table of base recipes), if any.
    pub base: Option<u32>,
    /// The parts, as steps.
    pub ops: Vec<Op>,
}

/// What a part of a transferred recipe is, as a receiver sees it before it has read any chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A chunk the receiver must already hold (copied from a base): nothing may be carried for it.
    Held,
    /// A chunk carried here, its id recovered by hashing.
    Sent {
        /// Its length.
        len: u32,
    },
    /// A chunk named in full.
    Named {
        /// Its id.
        id: ChunkId,
        /// Its length.
        len: u32,
    },
    /// Zeros: nothing may be carried for it.
    Zero,
}

impl Slot {
    /// The id when known, and the length, of a part that may be carried.
    pub fn carried(&self) -> Option<(Option<ChunkId>, u32)> {
        match *self {
            Slot::Sent { len } => Some((None, len)),
            Slot::Named { id, len } => Some((Some(id), len)),
            Slot::Held | Slot::Zero => None,
        }
    }
}

/// Why a recipe difference does not rebuild.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiffError {
    /// A copy past the end of the base.
    #[error("copies parts {from}..{end} of a base recipe of {len} parts")]
    OutOfBase {
        /// First part.
        from: u64,
        /// End.
        end: u64,
        /// The base's parts.
        len: usize,
    },
    /// A part carried but not found among what was carried.
    #[error("part {0} is carried by the transfer but no chunk arrived for it")]
    NotCarried(u64),
    /// A base named but not given.
    #[error("names base {0}, which the transfer does not list")]
    NoBase(u32),
    /// More parts than any recipe holds.
    #[error("expands to more than {0} parts")]
    TooLong(usize),
    /// Parts longer, together, than any blob.
    #[error("its parts add up to more than 2^64 bytes")]
    TooLarge,
    /// Rebuilt, it is not the recipe it names.
    #[error("rebuilds as recipe {found}, not {expected}")]
    Mismatch {
        /// The id it names.
        expected: RecipeId,
        /// The id of what it rebuilt.
        found: RecipeId,
    },
}

/// Most parts one recipe difference may expand to (a recipe of a terabyte of 64 KiB chunks has 16 M).
pub const MAX_PARTS: usize = 64 << 20;

impl RecipeDiff {
    /// Write `recipe` against `base` (index `base_index` in the transfer's table); `sent(p)` tells whether part
    /// `p` of `recipe` is carried by the transfer at that very part (its first use there).
    pub fn new(
        recipe: &Recipe,
        base: Option<(u32, &Recipe)>,
        sent: impl Fn(usize) -> bool,
    ) -> RecipeDiff {
        let shape = match *recipe {
            Recipe::Gzip {
                size,
                raw_size,
                raw_parts,
                ..
            } => Shape::Gzip {
                size,
                raw_size,
                raw_parts,
            },
            _ => Shape::Concat,
        };
        // Where each chunk first stands in the base.
        let base_parts = base.map_or(&[][..], |(_, b)| b.parts());
        let mut at: HashMap<ChunkId, u32> = HashMap::new();
        for (q, part) in base_parts.iter().enumerate() {
            if let Part::Chunk { id, .. } = part {
                at.entry(*id).or_insert(q as u32);
            }
        }
        let mut ops: Vec<Op> = Vec::new();
        for (p, part) in recipe.parts().iter().enumerate() {
            let (id, len) = match *part {
                Part::Zero { len } => {
                    ops.push(Op::Zero { len });
                    continue;
                }
                Part::Chunk { id, len } => (id, len),
            };
            if sent(p) {
                ops.push(Op::Sent { len });
                continue;
            }
            // Continue the run being copied when the base goes on the same way.
            if let Some(Op::Copy { from, n }) = ops.last_mut() {
                let next = (*from + *n) as usize;
                if base_parts.get(next) == Some(part) {
                    *n += 1;
                    continue;
                }
            }
            match at.get(&id) {
                Some(&q) if base_parts[q as usize] == *part => ops.push(Op::Copy { from: q, n: 1 }),
                _ => ops.push(Op::Chunk { id, len }),
            }
        }
        RecipeDiff {
            id: recipe.encode_with_id().0,
            shape,
            base: base.map(|(i, _)| i),
            ops,
        }
    }

    /// The slots of its parts, in order, without the base (copied parts are [`Slot::Held`]).
    pub fn slots(&self) -> Result<Vec<Slot>, DiffError> {
        let mut out = Vec::new();
        for op in &self.ops {
            match *op {
                Op::Copy { n, .. } => {
                    if out.len() + n as usize > MAX_PARTS {
                        return Err(DiffError::TooLong(MAX_PARTS));
                    }
                    out.extend(std::iter::repeat_n(Slot::Held, n as usize));
                }
                Op::Sent { len } => out.push(Slot::Sent { len }),
                Op::Chunk { id, len } => out.push(Slot::Named { id, len }),
                Op::Zero { .. } => out.push(Slot::Zero),
            }
            if out.len() > MAX_PARTS {
                return Err(DiffError::TooLong(MAX_PARTS));
            }
        }
        Ok(out)
    }

    /// Rebuild the recipe from its base's parts and the ids of the chunks carried (`carried(k)` is the id of
    /// the chunk that arrived for part `k` of this recipe), and check it against its id: the recipe, encoded.
    pub fn rebuild_checked(
        &self,
        base: Option<&Recipe>,
        carried: impl Fn(u64) -> Option<ChunkId>,
    ) -> Result<(Recipe, Vec<u8>), DiffError> {
        let recipe = self.rebuild(base, carried)?;
        let (found, bytes) = recipe.encode_with_id();
        if found != self.id {
            return Err(DiffError::Mismatch {
                expected: self.id,
                found,
            });
        }
        Ok((recipe, bytes))
    }

    /// Rebuild the recipe from its base's parts and the ids of the chunks carried: `carried(k)` is the id of
    /// the chunk that arrived for part `k` of this recipe.
    pub fn rebuild(
        &self,
        base: Option<&Recipe>,
        carried: impl Fn(u64) -> Option<ChunkId>,
    ) -> Result<Recipe, DiffError> {
        let base_parts = base.map_or(&[][..], |b| b.parts());
        if let (Some(i), None) = (self.base, base) {
            return Err(DiffError::NoBase(i));
        }
        let mut parts: Vec<Part> = Vec::new();
        for op in &self.ops {
            match *op {
                Op::Copy { from, n } => {
                    let (from, end) = (u64::from(from), u64::from(from) + u64::from(n));
                    let slice = base_parts.get(from as usize..end as usize).ok_or(
                        DiffError::OutOfBase {
                            from,
                            end,
                            len: base_parts.len(),
                        },
                    )?;
                    if parts.len() + slice.len() > MAX_PARTS {
                        return Err(DiffError::TooLong(MAX_PARTS));
                    }
                    parts.extend_from_slice(slice);
                }
                Op::Sent { len } => {
                    let k = parts.len() as u64;
                    let id = carried(k).ok_or(DiffError::NotCarried(k))?;
                    parts.push(Part::Chunk { id, len });
                }
                Op::Chunk { id, len } => parts.push(Part::Chunk { id, len }),
                Op::Zero { len } => parts.push(Part::Zero { len }),
            }
            if parts.len() > MAX_PARTS {
                return Err(DiffError::TooLong(MAX_PARTS));
            }
        }
        Ok(match self.shape {
            Shape::Concat => {
                // The size is the parts' sum, which a difference from elsewhere can push past a u64.
                if parts
                    .iter()
                    .try_fold(0u64, |sum, p| sum.checked_add(p.len()))
                    .is_none()
                {
                    return Err(DiffError::TooLarge);
                }
                Recipe::concat(parts)
            }
            Shape::Gzip {
                size,
                raw_size,
                raw_parts,
            } => Recipe::Gzip {
                size,
                raw_size,
                raw_parts,
                parts,
            },
        })
    }
}

/// Where a delta's reference lies: ranges of a base recipe's content, concatenated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// The base recipe.
    pub recipe: RecipeId,
    /// Offsets and lengths in its content (at most [`MAX_RANGES`], [`MAX_REFERENCE`] bytes in all).
    pub ranges: Vec<(u64, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u32) -> Part {
        Part::Chunk {
            id: ChunkId::of(&n.to_le_bytes()),
            len: 100 + n,
        }
    }

    #[test]
    fn a_diff_rebuilds_its_recipe() {
        let base = Recipe::concat((0..10).map(chunk).collect());
        // Parts 0-3 as in the base, a new one, 5-8, a zero run, one repeated from the base, one named.
        let mut parts: Vec<Part> = (0..4).map(chunk).collect();
        parts.push(chunk(100));
        parts.extend((5..9).map(chunk));
        parts.push(Part::Zero { len: 7 });
        parts.push(chunk(2));
        parts.push(chunk(200));
        let recipe = Recipe::Gzip {
            size: 5,
            raw_size: parts[..4].iter().map(Part::len).sum(),
            raw_parts: 4,
            parts: parts.clone(),
        };
        let diff = RecipeDiff::new(&recipe, Some((0, &base)), |p| p == 4);
        assert_eq!(
            diff.ops,
            vec![
                Op::Copy { from: 0, n: 4 },
                Op::Sent { len: 200 },
                Op::Copy { from: 5, n: 4 },
                Op::Zero { len: 7 },
                Op::Copy { from: 2, n: 1 },
                Op::Chunk {
                    id: ChunkId::of(&200u32.to_le_bytes()),
                    len: 300
                },
            ]
        );
        let slots = diff.slots().unwrap();
        assert_eq!(slots.len(), parts.len());
        assert_eq!(slots[4], Slot::Sent { len: 200 });
        assert_eq!(slots[0], Slot::Held);
        let sent = ChunkId::of(&100u32.to_le_bytes());
        let back = diff
            .rebuild(Some(&base), |k| (k == 4).then_some(sent))
            .unwrap();
        assert_eq!(back, recipe);
        assert!(diff
            .rebuild_checked(Some(&base), |k| (k == 4).then_some(sent))
            .is_ok());
        // Another chunk where the sent one was: not the recipe named.
        assert!(matches!(
            diff.rebuild_checked(Some(&base), |_| Some(ChunkId::of(b"other"))),
            Err(DiffError::Mismatch { .. })
        ));
        // Without the base, or without the carried chunk, it does not rebuild.
        assert_eq!(
            diff.rebuild(None, |_| Some(sent)),
            Err(DiffError::NoBase(0))
        );
        assert_eq!(
            diff.rebuild(Some(&base), |_| None),
            Err(DiffError::NotCarried(4))
        );
        let short = Recipe::concat((0..3).map(chunk).collect());
        assert!(matches!(
            diff.rebuild(Some(&short), |_| Some(sent)),
            Err(DiffError::OutOfBase { .. })
        ));
    }

    #[test]
    fn a_diff_past_2_64_bytes_is_refused() {
        // Found with the `codec` fuzz target (from a seed with its lengths changed): the parts' sum overflowed,
        // a panic in debug builds, when a peer's or a bundle's difference was rebuilt.
        let diff = RecipeDiff {
            id: RecipeId::of(b"any"),
            shape: Shape::Concat,
            base: None,
            ops: vec![Op::Sent { len: 5 }, Op::Zero { len: u64::MAX }],
        };
        let id = ChunkId::of(b"chunk");
        assert_eq!(diff.rebuild(None, |_| Some(id)), Err(DiffError::TooLarge));
        assert_eq!(
            diff.rebuild_checked(None, |_| Some(id)),
            Err(DiffError::TooLarge)
        );
    }

    #[test]
    fn without_a_base_everything_is_sent_or_named() {
        let recipe = Recipe::concat((0..5).map(chunk).collect());
        let diff = RecipeDiff::new(&recipe, None, |p| p % 2 == 0);
        assert_eq!(diff.base, None);
        assert!(diff.ops.iter().all(|op| !matches!(op, Op::Copy { .. })));
        let back = diff
            .rebuild(None, |k| match recipe.parts()[k as usize] {
                Part::Chunk { id, .. } => Some(id),
                Part::Zero { .. } => None,
            })
            .unwrap();
        assert_eq!(back, recipe);
    }
}
