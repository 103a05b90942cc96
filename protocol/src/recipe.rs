//! Recipes: how a blob is rebuilt from stored content.

use crate::codec::Object;
use crate::ids::{ChunkId, RecipeId};
use serde::{Deserialize, Serialize};

/// One piece of a concatenated blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    /// A stored chunk of `len` bytes.
    Chunk {
        /// BLAKE3 of the chunk's bytes.
        id: ChunkId,
        /// Its uncompressed length.
        len: u32,
    },
    /// `len` zero bytes, stored as nothing (sparse VM images, padding).
    Zero {
        /// How many zero bytes.
        len: u64,
    },
}

impl Part {
    /// Bytes this part contributes to the blob.
    pub fn len(&self) -> u64 {
        match *self {
            Part::Chunk { len, .. } => u64::from(len),
            Part::Zero { len } => len,
        }
    }

    /// Whether the part contributes no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How to rebuild a blob.
///
/// Only `Concat` exists today. The enum is where transforms of stored content go: a gzip layer will be stored as
/// its decompressed stream (itself a `Concat` recipe) plus reconstruction data, as a new variant naming both by
/// [`RecipeId`]. bincode writes the variant index, so adding variants at the end keeps old recipes readable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Recipe {
    /// The blob is its parts, in order.
    Concat {
        /// Total size; equals the sum of the parts' lengths.
        size: u64,
        /// The parts.
        parts: Vec<Part>,
    },
}

impl Object for Recipe {
    const TYPE: u8 = 1;
    const VERSION: u16 = 1;
    const NAME: &'static str = "recipe";
}

impl Recipe {
    /// A concatenation recipe; its size is the sum of the parts.
    pub fn concat(parts: Vec<Part>) -> Self {
        let size = parts.iter().map(Part::len).sum();
        Recipe::Concat { size, parts }
    }

    /// The size of the blob this recipe rebuilds.
    pub fn size(&self) -> u64 {
        match self {
            Recipe::Concat { size, .. } => *size,
        }
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Part] {
        match self {
            Recipe::Concat { parts, .. } => parts,
        }
    }

    /// The chunks this recipe needs, in order, with repeats.
    pub fn chunks(&self) -> impl Iterator<Item = (ChunkId, u32)> + '_ {
        self.parts().iter().filter_map(|p| match *p {
            Part::Chunk { id, len } => Some((id, len)),
            Part::Zero { .. } => None,
        })
    }

    /// Whether the stated size matches the parts (a check for recipes read from untrusted places).
    pub fn is_consistent(&self) -> bool {
        match self {
            Recipe::Concat { size, parts } => {
                parts
                    .iter()
                    .try_fold(0u64, |acc, p| acc.checked_add(p.len()))
                    == Some(*size)
            }
        }
    }

    /// Encode and name this recipe.
    pub fn encode_with_id(&self) -> (RecipeId, Vec<u8>) {
        let bytes = self.encode();
        (RecipeId::of(&bytes), bytes)
    }
}
