//! The want/have planner: given the releases a receiver must hold and what it is known to hold, which recipes
//! and chunks must travel. Bundle export uses it offline; network sync computes the same thing online.

use crate::store::{Store, StoreError};
use ferry_protocol::bundle::HaveFile;
use ferry_protocol::{BlobRef, ChunkId, Hash32, Object, Part, Recipe, RecipeId, SignedRelease};
use std::collections::HashSet;

/// What the receiver is known to hold.
#[derive(Default)]
pub struct Have {
    /// Releases assumed held, whose content this store could expand.
    releases: Vec<String>,
    recipes: HashSet<RecipeId>,
    chunks: HashSet<ChunkId>,
    file: Option<HaveFile>,
}

/// BLAKE3 of a signed release's encoding: what a have-file and a ledger record to tell one release from another
/// with the same name and version.
pub fn envelope_hash(signed: &SignedRelease) -> Hash32 {
    Hash32(*blake3::hash(&signed.encode()).as_bytes())
}

impl Have {
    /// Nothing held.
    pub fn new() -> Self {
        Have::default()
    }

    /// The receiver holds release `id` (`name@version`), which this store must hold too.
    pub fn add_release(&mut self, store: &Store, id: &str) -> Result<(), StoreError> {
        let signed = store
            .signed_release(id)?
            .ok_or_else(|| StoreError::NotFound(format!("base release {id}")))?;
        self.add_signed(store, id, &signed)
    }

    fn add_signed(
        &mut self,
        store: &Store,
        id: &str,
        signed: &SignedRelease,
    ) -> Result<(), StoreError> {
        if self.releases.iter().any(|r| r == id) {
            return Ok(());
        }
        let manifest = store.verify_release(id, signed)?;
        let blobs = manifest.blobs();
        self.recipes.extend(blobs.iter().map(|b| b.recipe));
        self.chunks.extend(store.chunks_of(&blobs)?);
        self.releases.push(id.to_string());
        Ok(())
    }

    /// The receiver holds release `id` if it is the very envelope this store holds under that id (hash
    /// `envelope`); a release this store lacks, or holds with other content, adds nothing. Returns whether it
    /// counted.
    pub fn add_release_if_same(
        &mut self,
        store: &Store,
        id: &str,
        envelope: &Hash32,
    ) -> Result<bool, StoreError> {
        match store.signed_release(id)? {
            Some(signed) if envelope_hash(&signed) == *envelope => {
                self.add_signed(store, id, &signed)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The receiver's own account of what it holds.
    pub fn add_have_file(&mut self, store: &Store, file: HaveFile) -> Result<(), StoreError> {
        for (id, envelope) in &file.releases {
            self.add_release_if_same(store, id, envelope)?;
        }
        self.file = Some(file);
        Ok(())
    }

    /// Releases whose content counts as held.
    pub fn releases(&self) -> &[String] {
        &self.releases
    }

    /// The have-file used, if any.
    pub fn file(&self) -> Option<&HaveFile> {
        self.file.as_ref()
    }

    /// Whether the receiver holds chunk `id`.
    pub fn has_chunk(&self, id: &ChunkId) -> bool {
        self.chunks.contains(id) || self.file.as_ref().is_some_and(|f| f.has_chunk(id))
    }

    /// Whether the receiver holds recipe `id`.
    pub fn has_recipe(&self, id: &RecipeId) -> bool {
        self.recipes.contains(id)
    }
}

/// What must travel.
pub struct Plan {
    /// The releases, signed, in the order asked for.
    pub releases: Vec<SignedRelease>,
    /// Recipes the receiver lacks: id and encoded bytes.
    pub recipes: Vec<(RecipeId, Vec<u8>)>,
    /// Chunks the receiver lacks, each once, in order of first use.
    pub chunks: Vec<Planned>,
    /// Sum of those chunks' lengths.
    pub payload_bytes: u64,
    /// Where each release's first new chunk is in `chunks` (ascending; a release that brings none adds none),
    /// so a transfer can keep releases apart and damage to one leaves the others whole.
    pub boundaries: Vec<usize>,
}

/// One chunk to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The chunk.
    pub id: ChunkId,
    /// Its length.
    pub len: u32,
    /// Where it stands among the parts of the plan's recipes, numbered in order across all of them (so a
    /// receiver holding those recipes can tell id and length from this number alone).
    pub part: u64,
}

/// Plan sending releases `wanted` (`name@version`, each held by `store`) to a receiver that holds `have`.
pub fn plan(store: &Store, wanted: &[String], have: &Have) -> Result<Plan, StoreError> {
    let mut releases = Vec::new();
    // Blobs in release order, with the index of the first blob of each release.
    let mut blobs: Vec<BlobRef> = Vec::new();
    let mut firsts: Vec<usize> = Vec::new();
    let mut seen_blobs = HashSet::new();
    for id in wanted {
        let signed = store
            .signed_release(id)?
            .ok_or_else(|| StoreError::NotFound(format!("release {id}")))?;
        if releases.contains(&signed) {
            continue;
        }
        let manifest = store.verify_release(id, &signed)?;
        firsts.push(blobs.len());
        blobs.extend(
            manifest
                .blobs()
                .into_iter()
                .filter(|b| seen_blobs.insert(b.id)),
        );
        releases.push(signed);
    }
    let (recipes, chunks, payload_bytes, boundaries) = plan_blobs(
        &blobs,
        &firsts,
        |id| {
            store.recipe_bytes(id)?.ok_or(StoreError::MissingRecipe {
                recipe: *id,
                for_blob: None,
            })
        },
        |c| have.has_chunk(c),
        |r| have.has_recipe(r),
    )?;
    Ok(Plan {
        releases,
        recipes,
        chunks,
        payload_bytes,
        boundaries,
    })
}

type Planned4 = (Vec<(RecipeId, Vec<u8>)>, Vec<Planned>, u64, Vec<usize>);

/// The recipes and chunks `blobs` need that the receiver lacks (`firsts`: where each release's blobs start).
fn plan_blobs(
    blobs: &[BlobRef],
    firsts: &[usize],
    recipe_bytes: impl Fn(&RecipeId) -> Result<Vec<u8>, StoreError>,
    has_chunk: impl Fn(&ChunkId) -> bool,
    has_recipe: impl Fn(&RecipeId) -> bool,
) -> Result<Planned4, StoreError> {
    let mut recipes = Vec::new();
    let mut seen_recipes = HashSet::new();
    let mut chunks = Vec::new();
    let mut seen_chunks = HashSet::new();
    let mut payload_bytes = 0u64;
    let mut part_base = 0u64;
    let mut boundaries = Vec::new();
    for (i, blob) in blobs.iter().enumerate() {
        if firsts.contains(&i) && boundaries.last() != Some(&chunks.len()) {
            boundaries.push(chunks.len());
        }
        if !seen_recipes.insert(blob.recipe) {
            continue;
        }
        let bytes = recipe_bytes(&blob.recipe)?;
        let recipe = Recipe::decode(&bytes)?;
        let new: Vec<(usize, ChunkId, u32)> = recipe
            .parts()
            .iter()
            .enumerate()
            .filter_map(|(p, part)| match *part {
                Part::Chunk { id, len } if !has_chunk(&id) && seen_chunks.insert(id) => {
                    Some((p, id, len))
                }
                _ => None,
            })
            .collect();
        // Every chunk sent is a part of a recipe sent, so it can be named by its part number.
        if !has_recipe(&blob.recipe) || !new.is_empty() {
            for (p, id, len) in new {
                chunks.push(Planned {
                    id,
                    len,
                    part: part_base + p as u64,
                });
                payload_bytes += u64::from(len);
            }
            part_base += recipe.parts().len() as u64;
            recipes.push((blob.recipe, bytes));
        }
    }
    Ok((recipes, chunks, payload_bytes, boundaries))
}

/// What a receiver lacks of one release whose recipes it already has in hand (network sync plans on the
/// receiving side): the same plan a sender computes, with `has_chunk` the receiver's own store.
pub fn plan_received(
    signed: &SignedRelease,
    blobs: &[BlobRef],
    recipes: &std::collections::HashMap<RecipeId, Recipe>,
    has_chunk: impl Fn(&ChunkId) -> bool,
) -> Result<Plan, StoreError> {
    let (recipes, chunks, payload_bytes, boundaries) = plan_blobs(
        blobs,
        &[0],
        |id| {
            recipes
                .get(id)
                .map(Object::encode)
                .ok_or(StoreError::MissingRecipe {
                    recipe: *id,
                    for_blob: None,
                })
        },
        has_chunk,
        |_| false,
    )?;
    Ok(Plan {
        releases: vec![signed.clone()],
        recipes,
        chunks,
        payload_bytes,
        boundaries,
    })
}
