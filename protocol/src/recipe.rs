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
/// bincode writes the variant index, so adding variants at the end keeps old recipes readable. Every variant
/// keeps all its chunks in one list of parts, so whatever moves chunks (bundles, sync, GC) reads [`Recipe::parts`]
/// alone and needs to know nothing of the transform.
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
    /// A gzip stream, re-created bit for bit from its decompressed bytes and re-creation data (the deflate
    /// decomposition of `ferry_node::deflate`: member headers, block boundaries and code definitions, and the
    /// producer's match decisions or a model's corrections to them).
    Gzip {
        /// Size of the gzip stream.
        size: u64,
        /// Size of the decompressed bytes: the sum of the first `raw_parts` parts.
        raw_size: u64,
        /// How many of `parts` are the decompressed bytes; the rest are the re-creation data.
        raw_parts: u32,
        /// The decompressed bytes' parts, then the re-creation data's.
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
            Recipe::Concat { size, .. } | Recipe::Gzip { size, .. } => *size,
        }
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Part] {
        match self {
            Recipe::Concat { parts, .. } | Recipe::Gzip { parts, .. } => parts,
        }
    }

    /// For a gzip recipe: the parts of the decompressed bytes, and of the re-creation data.
    pub fn gzip_parts(&self) -> Option<(&[Part], &[Part])> {
        match self {
            Recipe::Gzip {
                raw_parts, parts, ..
            } => Some(parts.split_at((*raw_parts as usize).min(parts.len()))),
            Recipe::Concat { .. } => None,
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
            Recipe::Concat { size, parts } => sum(parts) == Some(*size),
            Recipe::Gzip {
                raw_size,
                raw_parts,
                parts,
                ..
            } => {
                *raw_parts as usize <= parts.len()
                    && sum(&parts[..*raw_parts as usize]) == Some(*raw_size)
            }
        }
    }

    /// Whether this recipe rebuilds its blob by re-creating a gzip stream.
    pub fn is_gzip(&self) -> bool {
        matches!(self, Recipe::Gzip { .. })
    }

    /// Encode and name this recipe.
    pub fn encode_with_id(&self) -> (RecipeId, Vec<u8>) {
        let bytes = self.encode();
        (RecipeId::of(&bytes), bytes)
    }
}

/// The total length of `parts`, None on overflow.
fn sum(parts: &[Part]) -> Option<u64> {
    parts
        .iter()
        .try_fold(0u64, |acc, p| acc.checked_add(p.len()))
}
