//! Delta transport on the node: which content a receiver holds is the best base for what it lacks, and zstd
//! frames against it.
//!
//! The planner ([`Deltas::plan`]) takes what must travel (a [`Plan`]) and what the receiver holds (its
//! releases), and for each blob that must travel finds a *base*: first the same entry in a held release of the
//! same name (same file path, same image and layer position; then the path with its version numbers taken out,
//! so `django-5.0.4.tar.gz` finds `django-5.0.3.tar.gz`), then by resemblance — the held blob of the same names
//! that shares the most chunks with it, else the one whose chunks' sketches ([`crate::sketch`]) match most of
//! its own (a renamed file whose every chunk changed). The chunks a blob brings are grouped into runs of at most [`RUN_BYTES`];
//! each run is encoded as one zstd frame whose prefix is a window of at most [`REFERENCE_BUDGET`] bytes of the
//! base's content, placed where the run's neighbours sit in the base (a chunk both share, else the base chunk
//! that resembles it by sketch, else the same proportion of the way in). A change that shifts bytes across chunk boundaries costs what it costs `zstd
//! --patch-from`, not a chunk per boundary. The frame is kept only when it is smaller than the run compressed
//! alone. Bundle export and network sync both use it; the receiver decodes against its own store and checks
//! every chunk's BLAKE3 before storing it.
//!
//! Memory: encoding one run holds its reference (≤ 64 MiB), the run (≤ 8 MiB), the frame and zstd's tables for
//! a window of their sum at [`DELTA_LEVEL`] (or [`BULK_LEVEL`] when a transfer's deltas carry more than 64 MiB);
//! runs are encoded on the rayon pool, one per thread.

use crate::plan::Plan;
use crate::sketch::{self, Sketch};
use crate::store::{Store, StoreError};
use ferry_protocol::delta::{output_check, Reference, MAX_REFERENCE};
use ferry_protocol::{BlobId, BlobRef, ChunkId, Entry, Object, Part, Recipe, RecipeId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Most bytes of a base's content one delta refers to.
pub const REFERENCE_BUDGET: u64 = 64 << 20;

/// Bases up to this size are referred to whole: reading them costs little, and content that moved is found.
pub const WHOLE_BASE: u64 = 8 << 20;

/// The most one chunk's region of the base may add to a reference.
pub const REGION_MAX: u64 = 16 << 20;

/// Most content one plan (or one sketches answer) reads to compute resemblance sketches not yet kept: the first
/// exports against a large store compute them a budget at a time, later ones find them kept.
pub const SKETCH_BUDGET: u64 = 1 << 30;

/// Most chunk bytes one delta carries.
pub const RUN_BYTES: u64 = 8 << 20;

/// zstd level of delta frames (`zstd --patch-from` is usually run at 19), while a transfer's deltas carry at
/// most [`FULL_EFFORT_BYTES`] of chunks.
pub const DELTA_LEVEL: i32 = 19;

/// zstd level of delta frames when a transfer's deltas carry more than [`FULL_EFFORT_BYTES`]: level 19 encodes
/// some 2 MB/s a core, ten minutes for the GB a fat image's security update changes; level 12 (zstd's last
/// lazy strategy before the optimal parsers) is 15-20 times faster for about 20% more bytes (measured on the
/// rebuilt Debian rootfs, docs/benchmarks.md).
pub const BULK_LEVEL: i32 = 12;

/// Up to this many bytes of chunks sent as deltas, a transfer encodes them at [`DELTA_LEVEL`].
pub const FULL_EFFORT_BYTES: u64 = 64 << 20;

/// The level for the deltas of a transfer whose runs carry `bytes` of chunks in all.
pub fn level_for(bytes: u64) -> i32 {
    if bytes <= FULL_EFFORT_BYTES {
        DELTA_LEVEL
    } else {
        BULK_LEVEL
    }
}

/// A run of planned chunks to send as one delta.
#[derive(Clone, Debug)]
pub struct Run {
    /// Positions in the plan's chunk list, consecutive.
    pub chunks: std::ops::Range<usize>,
    /// Index into [`Deltas::bases`].
    pub base: u32,
    /// The reference: ranges (offset, length) of the base's content, concatenated.
    pub ranges: Vec<(u64, u64)>,
}

/// What the planner chose.
#[derive(Default)]
pub struct Deltas {
    /// Base recipes referred to, with the blob each belongs to (for messages).
    pub bases: Vec<(RecipeId, BlobId)>,
    /// Per recipe of the plan, its base (index into `bases`).
    pub recipe_base: Vec<Option<u32>>,
    /// Runs, in plan order; every chunk of the plan not in a run travels whole.
    pub runs: Vec<Run>,
    /// The zstd level to encode them at ([`level_for`] their bytes).
    pub level: i32,
}

/// Keys a blob is known by inside its release, most specific first.
pub fn blob_keys(entries: &[Entry]) -> Vec<(BlobRef, Vec<String>)> {
    let mut out = Vec::new();
    for e in entries {
        match e {
            Entry::File(f) => out.push((
                f.blob,
                vec![
                    format!("f:{}", f.path),
                    format!("n:{}", unversioned(&f.path)),
                ],
            )),
            Entry::Image(img) => {
                let mut seen: HashMap<&str, usize> = HashMap::new();
                for b in &img.blobs {
                    let k = seen.entry(b.media_type.as_str()).or_default();
                    out.push((
                        b.blob,
                        vec![format!("i:{}:{}:{}", img.repository, b.media_type, *k)],
                    ));
                    *k += 1;
                }
            }
            _ => {}
        }
    }
    out
}

/// A path with every run of digits (and the dots between them) replaced by `#`: the same package at another
/// version has the same one.
fn unversioned(path: &str) -> String {
    let chars: Vec<char> = path.chars().collect();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            // Digits, and dots that stand between digits.
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            out.push('#');
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The blobs a receiver holds that may serve as bases.
pub struct BaseIndex {
    blobs: Vec<BlobRef>,
    by_key: HashMap<String, usize>,
    by_chunk: HashMap<ChunkId, usize>,
    /// The one file of the newest held release, when it holds exactly one: the base of a one-file release whose
    /// file was renamed (`app.tgz` → `app-1.2.tgz`).
    only_file: Option<usize>,
    /// (slot, super-feature) → blob: every held blob's chunk sketches, read from the store when a blob first
    /// finds no base by its keys or by shared chunks.
    by_feature: Option<HashMap<(u8, u32), usize>>,
    /// What is left of [`SKETCH_BUDGET`] for this plan.
    budget: u64,
}

/// The blob of a release's one file entry, if it has exactly one.
pub fn only_file(entries: &[Entry]) -> Option<BlobRef> {
    let mut files = entries.iter().filter_map(|e| match e {
        Entry::File(f) => Some(f.blob),
        _ => None,
    });
    let first = files.next()?;
    files.next().is_none().then_some(first)
}

impl BaseIndex {
    /// The blobs of `held` (release ids the receiver holds, which this store holds too) whose name is among
    /// `names`, or of every held release when no held release shares a name.
    pub fn new(
        store: &Store,
        held: &[String],
        names: &HashSet<String>,
    ) -> Result<Self, StoreError> {
        let mut manifests = Vec::new();
        for id in held {
            let Some(signed) = store.signed_release(id)? else {
                continue;
            };
            let m = signed.manifest_unverified()?;
            manifests.push(m);
        }
        let same: Vec<_> = manifests
            .iter()
            .filter(|m| names.contains(&m.name))
            .collect();
        let chosen: Vec<_> = if same.is_empty() {
            manifests.iter().collect()
        } else {
            same
        };
        // Older versions first, so a later one wins a key.
        let mut chosen = chosen;
        chosen.sort_by_key(|m| m.sequence);
        let mut index = BaseIndex {
            blobs: Vec::new(),
            by_key: HashMap::new(),
            by_chunk: HashMap::new(),
            only_file: None,
            by_feature: None,
            budget: SKETCH_BUDGET,
        };
        let newest_file = chosen.last().and_then(|m| only_file(&m.entries));
        let mut at: HashMap<BlobId, usize> = HashMap::new();
        for m in chosen {
            for (blob, keys) in blob_keys(&m.entries) {
                let i = *at.entry(blob.id).or_insert_with(|| {
                    index.blobs.push(blob);
                    index.blobs.len() - 1
                });
                for k in keys {
                    index.by_key.insert(k, i);
                }
            }
        }
        index.only_file = newest_file.and_then(|b| at.get(&b.id).copied());
        for (i, blob) in index.blobs.iter().enumerate() {
            if let Some(r) = store.recipe(&blob.recipe)? {
                for (c, _) in r.chunks() {
                    index.by_chunk.entry(c).or_insert(i);
                }
            }
        }
        Ok(index)
    }

    /// The base for a blob known by `keys` (its path or image position), by those keys alone; for the one file
    /// of a one-file release (`single`), else the newest held version's one file.
    pub fn by_keys(&self, keys: &[String], single: bool) -> Option<&BlobRef> {
        keys.iter()
            .find_map(|k| self.by_key.get(k))
            .or(self.only_file.as_ref().filter(|_| single))
            .map(|&i| &self.blobs[i])
    }

    /// The base for the blob known by `keys` whose recipe is `recipe` (id `rid`; `single`: the one file of its
    /// release): by its keys; else the held blob it shares the most chunk bytes with; else the one that has the
    /// most chunk bytes resembling its own (a shared super-feature; its sketches are `own`, or read from `store`
    /// when it holds the blob whole); else by `single`.
    fn find(
        &mut self,
        store: &Store,
        keys: &[String],
        (rid, recipe): (&RecipeId, &Recipe),
        own: Option<&[Sketch]>,
        single: bool,
    ) -> Result<Option<BlobRef>, StoreError> {
        if let Some(b) = keys.iter().find_map(|k| self.by_key.get(k)) {
            return Ok(Some(self.blobs[*b]));
        }
        let mut votes: HashMap<usize, u64> = HashMap::new();
        for (c, len) in recipe.chunks() {
            if let Some(&i) = self.by_chunk.get(&c) {
                *votes.entry(i).or_default() += u64::from(len);
            }
        }
        // Resemblance needs the blob's own chunks: a sender holds them, a receiver planning a sync does not.
        let sketches = match own {
            _ if !votes.is_empty() => None,
            Some(s) => Some(std::borrow::Cow::Borrowed(s)),
            None if holds_all(store, recipe)? => store
                .sketches(rid, recipe, &mut self.budget)?
                .map(std::borrow::Cow::Owned),
            None => None,
        };
        if let Some(sketches) = sketches {
            let features = self.features(store)?;
            for (part, s) in recipe.parts().iter().zip(sketches.iter()) {
                let mut met = HashSet::new();
                for i in sketch::keys(s).filter_map(|k| features.get(&k)) {
                    if met.insert(*i) {
                        *votes.entry(*i).or_default() += part.len();
                    }
                }
            }
        }
        Ok(votes
            .into_iter()
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .map(|(i, _)| self.blobs[i])
            .or_else(|| self.by_keys(&[], single).copied()))
    }

    /// The super-feature index of every held blob, built on first use.
    fn features(&mut self, store: &Store) -> Result<&HashMap<(u8, u32), usize>, StoreError> {
        if self.by_feature.is_none() {
            let mut map = HashMap::new();
            for (i, blob) in self.blobs.iter().enumerate() {
                let Some(r) = store.recipe(&blob.recipe)? else {
                    continue;
                };
                let kept = store.sketches(&blob.recipe, &r, &mut self.budget)?;
                for k in kept.iter().flatten().flat_map(sketch::keys) {
                    map.entry(k).or_insert(i);
                }
            }
            self.by_feature = Some(map);
        }
        Ok(self.by_feature.as_ref().expect("built above"))
    }
}

impl Deltas {
    /// Choose bases and runs for `plan`, whose receiver holds releases `held`. `sketches` are the sketches of
    /// recipes of the plan whose chunks `store` lacks (a receiver planning a sync asks the sender for them);
    /// the others' are read from `store`.
    pub fn plan(
        store: &Store,
        plan: &Plan,
        held: &[String],
        sketches: &HashMap<RecipeId, Vec<Sketch>>,
    ) -> Result<Deltas, StoreError> {
        let mut out = Deltas {
            recipe_base: vec![None; plan.recipes.len()],
            level: DELTA_LEVEL,
            ..Deltas::default()
        };
        if held.is_empty() || plan.chunks.is_empty() {
            return Ok(out);
        }
        let mut names = HashSet::new();
        let mut keys_of: HashMap<RecipeId, Vec<String>> = HashMap::new();
        let mut singles: HashSet<RecipeId> = HashSet::new();
        for signed in &plan.releases {
            let m = signed.manifest_unverified()?;
            names.insert(m.name.clone());
            for (blob, keys) in blob_keys(&m.entries) {
                keys_of.entry(blob.recipe).or_insert(keys);
            }
            singles.extend(only_file(&m.entries).map(|b| b.recipe));
        }
        let mut index = BaseIndex::new(store, held, &names)?;
        let mut base_no: HashMap<RecipeId, u32> = HashMap::new();
        let mut base_recipes: Vec<Arc<Recipe>> = Vec::new();
        // Walk the plan's recipes and the chunks each brings (they come in recipe order).
        let mut next_chunk = 0usize;
        let mut part_base = 0u64;
        for (r, (rid, bytes)) in plan.recipes.iter().enumerate() {
            let recipe = Recipe::decode(bytes)?;
            let parts = recipe.parts().len() as u64;
            let first = next_chunk;
            while next_chunk < plan.chunks.len() && plan.chunks[next_chunk].part < part_base + parts
            {
                next_chunk += 1;
            }
            let mine = first..next_chunk;
            let keys = keys_of.get(rid).map_or(&[][..], |k| &k[..]);
            let own = sketches
                .get(rid)
                .filter(|s| s.len() == recipe.parts().len())
                .map(|s| &s[..]);
            let single = singles.contains(rid);
            let Some(base) = index
                .find(store, keys, (rid, &recipe), own, single)?
                .filter(|b| b.recipe != *rid)
            else {
                part_base += parts;
                continue;
            };
            let Some(base_recipe) = store.recipe(&base.recipe)? else {
                part_base += parts;
                continue;
            };
            let b = *base_no.entry(base.recipe).or_insert_with(|| {
                out.bases.push((base.recipe, base.id));
                base_recipes.push(Arc::new(base_recipe));
                (out.bases.len() - 1) as u32
            });
            out.recipe_base[r] = Some(b);
            if !mine.is_empty() {
                let base_recipe = &base_recipes[b as usize];
                let base_id = out.bases[b as usize].0;
                out.runs.extend(runs_of(
                    store,
                    plan,
                    mine,
                    part_base,
                    (&recipe, own),
                    (&base_id, base_recipe, b),
                    &mut index.budget,
                )?);
            }
            part_base += parts;
        }
        let bytes: u64 = out
            .runs
            .iter()
            .flat_map(|r| &plan.chunks[r.chunks.clone()])
            .map(|c| u64::from(c.len))
            .sum();
        out.level = level_for(bytes);
        Ok(out)
    }
}

/// Group the chunks `mine` of the plan (parts of `recipe`, numbered from `part_base`) into runs against `base`.
///
/// A run's reference is the old version of what its chunks replace: for each chunk, the base's bytes between
/// the chunks both hold on either side of it (*anchors*), so a reference is about as large as the change, not
/// as the base. A base of at most [`WHOLE_BASE`] bytes is referred to whole. A chunk with no anchor within
/// [`REGION_MAX`] (content that moved, or a base that shares no chunk) is looked for by its sketch among the
/// base's chunks: the one resembling it, with its neighbours; failing that, a window where it sits by
/// proportion.
fn runs_of(
    store: &Store,
    plan: &Plan,
    mine: std::ops::Range<usize>,
    part_base: u64,
    (recipe, own): (&Recipe, Option<&[Sketch]>),
    (base_id, base, b): (&RecipeId, &Recipe, u32),
    budget: &mut u64,
) -> Result<Vec<Run>, StoreError> {
    let parts = recipe.parts();
    let (offsets, total) = part_starts(parts);
    let mut in_base: HashMap<ChunkId, (u64, u64)> = HashMap::new();
    let mut at = 0u64;
    for p in base.parts() {
        if let Part::Chunk { id, len } = p {
            in_base.entry(*id).or_insert((at, u64::from(*len)));
        }
        at += p.len();
    }
    let base_len = at;
    // Per part, the base's extent of the nearest anchor before it and after it.
    let anchor = |p: usize| chunk_at(recipe, p).and_then(|c| in_base.get(&c).copied());
    let mut before = vec![None; parts.len()];
    let mut last = None;
    for (p, slot) in before.iter_mut().enumerate() {
        *slot = last;
        if let Some(a) = anchor(p) {
            last = Some(a);
        }
    }
    let mut after = vec![None; parts.len()];
    let mut next = None;
    for p in (0..parts.len()).rev() {
        after[p] = next;
        if let Some(a) = anchor(p) {
            next = Some(a);
        }
    }
    let base_starts = part_starts(base.parts()).0;
    // The base's super-features (slot, feature) → part, read when a chunk first needs them.
    let mut features: Option<HashMap<(u8, u32), usize>> = None;
    let mut region = |p: usize| -> Result<(u64, u64), StoreError> {
        if base_len <= WHOLE_BASE {
            return Ok((0, base_len));
        }
        let start = before[p].map_or(0, |(o, l)| o + l);
        let end = after[p].map_or(base_len, |(o, _)| o);
        let (start, end) = (start.min(end), start.max(end));
        if end - start <= REGION_MAX {
            return Ok((start, end));
        }
        // The part's sketch: given, or read when this store holds it.
        let mine = match (own, chunk_at(recipe, p)) {
            (Some(s), _) => s.get(p).copied(),
            (None, Some(c)) if store.has_chunk(&c)? => Some(sketch::sketch(&store.read_chunk(&c)?)),
            _ => None,
        };
        if let Some(s) = mine {
            if features.is_none() {
                let mut map = HashMap::new();
                let kept = store.sketches(base_id, base, budget)?.unwrap_or_default();
                for (q, s) in kept.iter().enumerate() {
                    for k in sketch::keys(s) {
                        map.entry(k).or_insert(q);
                    }
                }
                features = Some(map);
            }
            let map = features.as_ref().expect("built above");
            let found = sketch::keys(&s).find_map(|k| map.get(&k).copied());
            if let Some(q) = found {
                // The resembling part and one on either side, in case the change moved bytes across.
                let from = base_starts[q.saturating_sub(1)];
                let to = base_starts.get(q + 2).copied().unwrap_or(base_len);
                return Ok((from, to.min(from + REGION_MAX)));
            }
        }
        // Nothing close both hold: a window where the part sits, by proportion of the way in.
        let pos = (offsets[p] as u128 * base_len as u128 / total.max(1) as u128) as u64;
        let from = pos
            .saturating_sub(REGION_MAX / 2)
            .clamp(start, end - REGION_MAX);
        Ok((from, from + REGION_MAX))
    };
    let mut runs = Vec::new();
    let mut start = mine.start;
    let mut bytes = 0u64;
    for i in mine.clone() {
        let len = u64::from(plan.chunks[i].len);
        if i > start && bytes + len > RUN_BYTES {
            runs.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < mine.end {
        runs.push(start..mine.end);
    }
    runs.into_iter()
        .map(|chunks| {
            let mut ranges: Vec<(u64, u64)> = chunks
                .clone()
                .map(|i| region((plan.chunks[i].part - part_base) as usize))
                .collect::<Result<_, _>>()?;
            ranges.sort_unstable();
            // Merge what overlaps or touches; keep within the budget.
            let mut merged: Vec<(u64, u64)> = Vec::new();
            for (s, e) in ranges {
                match merged.last_mut() {
                    Some((_, le)) if s <= *le => *le = (*le).max(e),
                    _ => merged.push((s, e)),
                }
            }
            let mut budget = REFERENCE_BUDGET;
            let ranges = merged
                .into_iter()
                .filter_map(|(s, e)| {
                    let len = (e - s).min(budget);
                    budget -= len;
                    (len > 0).then_some((s, len))
                })
                .collect();
            Ok(Run {
                chunks,
                base: b,
                ranges,
            })
        })
        .collect()
}

/// Whether `store` holds every chunk of `recipe`.
pub fn holds_all(store: &Store, recipe: &Recipe) -> Result<bool, StoreError> {
    for (c, _) in recipe.chunks() {
        if !store.has_chunk(&c)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Where each part starts in the content, and the content's size.
fn part_starts(parts: &[Part]) -> (Vec<u64>, u64) {
    let mut starts = Vec::with_capacity(parts.len());
    let mut at = 0u64;
    for p in parts {
        starts.push(at);
        at += p.len();
    }
    (starts, at)
}

fn chunk_at(recipe: &Recipe, p: usize) -> Option<ChunkId> {
    match recipe.parts().get(p)? {
        Part::Chunk { id, .. } => Some(*id),
        Part::Zero { .. } => None,
    }
}

/// The ranges (offset, length) of `recipe`'s content (its parts' bytes in order, zero runs included),
/// concatenated, read from `store` and checked chunk by chunk.
pub fn read_ranges(
    store: &Store,
    recipe: &Recipe,
    ranges: &[(u64, u64)],
) -> Result<Vec<u8>, StoreError> {
    let total = ranges.iter().fold(0u64, |a, r| a.saturating_add(r.1));
    if total > MAX_REFERENCE {
        return Err(StoreError::Corrupt(format!(
            "a delta reference of {total} bytes is over the {MAX_REFERENCE}-byte limit"
        )));
    }
    let parts = recipe.parts();
    let (starts, size) = part_starts(parts);
    let mut out = Vec::with_capacity(total as usize);
    for &(offset, len) in ranges {
        let end = offset.saturating_add(len);
        if end > size {
            return Err(StoreError::Corrupt(format!(
                "a delta reference runs past the end of its base ({len} bytes at {offset} of {size})"
            )));
        }
        // The part holding `offset`, then on until `end`.
        let mut k = starts.partition_point(|&s| s <= offset).saturating_sub(1);
        while k < parts.len() && starts[k] < end {
            let s = starts[k];
            let e = s + parts[k].len();
            let (from, to) = (offset.max(s) - s, end.min(e) - s);
            if to > from {
                match &parts[k] {
                    Part::Zero { .. } => out.resize(out.len() + (to - from) as usize, 0),
                    Part::Chunk { id, .. } => {
                        let data = store.read_chunk(id)?;
                        out.extend_from_slice(&data[from as usize..to as usize]);
                    }
                }
            }
            k += 1;
        }
    }
    Ok(out)
}

/// The reference `r` from `store`: its base recipe must be held whole.
pub fn read_reference(store: &Store, r: &Reference) -> Result<Vec<u8>, StoreError> {
    let recipe = store
        .recipe(&r.recipe)?
        .ok_or_else(|| StoreError::NotFound(format!("base recipe {}", r.recipe)))?;
    read_ranges(store, &recipe, &r.ranges)
}

/// `target` as one zstd frame with `reference` as its prefix.
pub fn encode(reference: &[u8], target: &[u8], level: i32) -> Result<Vec<u8>, String> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let window_log = ((reference.len() + target.len()).max(1 << 10) as u64)
        .next_power_of_two()
        .trailing_zeros()
        .clamp(10, 28);
    let mut c = CCtx::create();
    let set = |c: &mut CCtx, p: CParameter| c.set_parameter(p).map(|_| ()).map_err(zstd_error);
    set(&mut c, CParameter::CompressionLevel(level))?;
    set(&mut c, CParameter::WindowLog(window_log))?;
    set(&mut c, CParameter::ContentSizeFlag(true))?;
    set(&mut c, CParameter::ChecksumFlag(false))?;
    if reference.len() >= 16 << 20 {
        set(&mut c, CParameter::EnableLongDistanceMatching(true))?;
    }
    c.ref_prefix(reference).map_err(zstd_error)?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(target.len()));
    c.compress2(&mut out, target).map_err(zstd_error)?;
    Ok(out)
}

/// Decode `frame` with `reference` as its prefix into exactly `len` bytes, and check them against `check`.
pub fn decode(
    reference: &[u8],
    frame: &[u8],
    len: usize,
    check: &[u8; ferry_protocol::delta::CHECK_LEN],
) -> Result<Vec<u8>, String> {
    use zstd::zstd_safe::{DCtx, DParameter};
    let mut d = DCtx::create();
    d.set_parameter(DParameter::WindowLogMax(29))
        .map_err(zstd_error)?;
    d.ref_prefix(reference).map_err(zstd_error)?;
    // At most `len` bytes: a frame that decodes to more fails. Room for one byte at least: an empty Vec's
    // pointer dangles, and libzstd's fast path, handed it, aborts the process (a frame for 0 bytes that holds
    // sequences); one byte more than `len` is refused below all the same.
    let mut out = Vec::with_capacity(len.max(1));
    let n = d.decompress(&mut out, frame).map_err(zstd_error)?;
    if n != len {
        return Err(format!("decodes to {n} bytes, {len} expected"));
    }
    if output_check(&out) != *check {
        return Err("its output does not match its check".into());
    }
    Ok(out)
}

/// `target` compressed alone at `level`, as the plain stream would carry it: what a delta must beat.
pub fn plain_size(target: &[u8], level: i32) -> Result<usize, String> {
    zstd::bulk::compress(target, level)
        .map(|c| c.len())
        .map_err(|e| e.to_string())
}

fn zstd_error(code: usize) -> String {
    zstd::zstd_safe::get_error_name(code).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::export::{receiver_have, Receiver};
    use crate::bundle::{BundleError, ExportOptions};
    use crate::ingest::{add, AddOptions, Source};
    use crate::progress::NoProgress;
    use ferry_protocol::bundle::{
        block_hash, parse_records, part_table, volume_name, BundleIndex, Record, SignedIndex,
        BLOCK_SIZE, INDEX_FILE,
    };

    /// Text-like bytes: numbered lines of words, `lines` of them.
    fn text(lines: usize, salt: &str) -> Vec<u8> {
        let words = [
            "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
        ];
        let mut out = String::new();
        for i in 0..lines {
            let w = words[(i * 7 + i / 3) % words.len()];
            out.push_str(&format!("line {i}: {w} {} {w}{}\n", i * 31 % 977, i % 13));
            if i == lines / 2 {
                out.push_str(salt);
            }
        }
        out.into_bytes()
    }

    fn add_file(store: &Store, dir: &std::path::Path, name: &str, version: &str, bytes: &[u8]) {
        let path = dir.join(format!("{name}-{version}.txt"));
        std::fs::write(&path, bytes).unwrap();
        add(
            store,
            name,
            version,
            &[Source::File(path)],
            &AddOptions::default(),
            &NoProgress,
        )
        .unwrap();
    }

    /// A seed holding t@1 and t@2 (one line changed in the middle of 3 MB of text), and a site holding t@1.
    fn seed_and_site(dir: &std::path::Path) -> (Store, Store) {
        let seed = Store::create(&dir.join("seed"), Default::default()).unwrap();
        add_file(&seed, dir, "t", "1", &text(60_000, ""));
        add_file(&seed, dir, "t", "2", &text(60_000, "one new line\n"));
        let site = Store::create(&dir.join("site"), Default::default()).unwrap();
        site.trust_add(seed.publisher()).unwrap();
        let full = dir.join("full");
        let have = receiver_have(&seed, &[], None, None).unwrap();
        let to = Receiver {
            have: &have,
            site: None,
        };
        crate::bundle::export(
            &seed,
            &["t@1".into()],
            to,
            &full,
            ExportOptions::default(),
            &NoProgress,
        )
        .unwrap();
        crate::bundle::import(&site, &full, &NoProgress).unwrap();
        (seed, site)
    }

    #[test]
    fn a_delta_that_does_not_decode_to_its_chunks_is_named_and_nothing_of_it_is_visible() {
        let dir = tempfile::tempdir().unwrap();
        let (seed, site) = seed_and_site(dir.path());
        let out = dir.path().join("delta");
        let have = receiver_have(&seed, &["t@1".into()], None, None).unwrap();
        let to = Receiver {
            have: &have,
            site: None,
        };
        let report = crate::bundle::export(
            &seed,
            &["t@2".into()],
            to,
            &out,
            ExportOptions::default(),
            &NoProgress,
        )
        .unwrap();
        assert!(report.delta_chunks > 0, "{report:?}");

        // A faulty exporter (with a trusted key): one byte of the delta's frame changed, the stream and the
        // index made consistent again and signed.
        let index_path = out.join(INDEX_FILE);
        let signed = SignedIndex::decode(&std::fs::read(&index_path).unwrap()).unwrap();
        let mut index = BundleIndex::decode(&signed.index).unwrap();
        assert_eq!(index.segments.len(), 1);
        let vol = out.join(volume_name(1));
        let mut raw = zstd::decode_all(&std::fs::read(&vol).unwrap()[..]).unwrap();
        let parts = part_table(&index.recipes).unwrap();
        let records = parse_records(
            &raw,
            index.segments[0].first_part,
            &parts,
            index.bases.len(),
        )
        .unwrap();
        let frame = records
            .iter()
            .find_map(|r| match r {
                Record::Delta { frame, .. } => Some(frame.clone()),
                Record::Chunk { .. } => None,
            })
            .expect("a delta record");
        raw[frame.start + frame.len() / 2] ^= 0x5a;
        let comp = zstd::encode_all(&raw[..], 3).unwrap();
        std::fs::write(&vol, &comp).unwrap();
        index.segments[0].comp_len = comp.len() as u64;
        index.segments[0].raw_len = raw.len() as u64;
        index.volumes[0].size = comp.len() as u64;
        index.volumes[0].blake3 = ferry_protocol::Hash32(*blake3::hash(&comp).as_bytes());
        index.volumes[0].blocks = comp.chunks(BLOCK_SIZE as usize).map(block_hash).collect();
        std::fs::write(&index_path, index.sign(seed.signing_key()).encode()).unwrap();

        let err = crate::bundle::import(&site, &out, &NoProgress).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, BundleError::Segment { .. })
                && msg.contains("delta record")
                && msg.contains(&index.bases[0].0.to_string()),
            "{msg}"
        );
        assert!(site.signed_release("t@2").unwrap().is_none());
        assert!(site.signed_release("t@1").unwrap().is_some());
        assert!(site.fsck(&NoProgress).unwrap().ok);
    }

    #[test]
    fn a_synced_delta_is_checked_chunk_by_chunk_and_a_bad_one_named() {
        use crate::net::sync::{store_delta, DeltaOutcome};
        let dir = tempfile::tempdir().unwrap();
        let (seed, site) = seed_and_site(dir.path());
        let blob = |s: &Store, v: &str| s.release("t", v).unwrap().blobs()[0];
        let (old, new) = (blob(&seed, "1"), blob(&seed, "2"));
        let new_recipe = seed.recipe(&new.recipe).unwrap().unwrap();
        let wanted: Vec<(ChunkId, u32)> = new_recipe
            .chunks()
            .filter(|(c, _)| !site.has_chunk(c).unwrap())
            .collect();
        assert!(!wanted.is_empty());
        let size = seed.recipe(&old.recipe).unwrap().unwrap().size();
        let reference = Reference {
            recipe: old.recipe,
            ranges: vec![(0, size)],
        };
        let base = read_reference(&seed, &reference).unwrap();
        let target: Vec<u8> = wanted
            .iter()
            .flat_map(|(c, _)| seed.read_chunk(c).unwrap())
            .collect();
        let frame = encode(&base, &target, DELTA_LEVEL).unwrap();
        let check = output_check(&target);

        // A frame with a byte changed, or the right frame under another chunk's name: named, nothing stored.
        let mut bad = frame.clone();
        let at = bad.len() - 3;
        bad[at] ^= 1;
        match store_delta(&site, &wanted, &reference, &bad, &check) {
            DeltaOutcome::Bad(why) => {
                assert!(
                    why.contains(&old.recipe.to_string()) && why.contains(&wanted[0].0.to_string()),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        let mut renamed = wanted.clone();
        renamed[0].0 = ChunkId::of(b"another chunk");
        assert!(matches!(
            store_delta(&site, &renamed, &reference, &frame, &check),
            DeltaOutcome::Bad(why) if why.contains(&renamed[0].0.to_string())
        ));
        assert!(!site.has_chunk(&wanted[0].0).unwrap());
        // The good one is stored.
        assert!(matches!(
            store_delta(&site, &wanted, &reference, &frame, &check),
            DeltaOutcome::Stored { .. }
        ));
        site.commit().unwrap();
        assert!(wanted.iter().all(|(c, _)| site.has_chunk(c).unwrap()));
        // A reference this node does not hold: refused (fetched whole), not blamed on the peer.
        let missing = Reference {
            recipe: ferry_protocol::RecipeId::of(b"nowhere"),
            ranges: vec![(0, 10)],
        };
        assert!(matches!(
            store_delta(&site, &wanted, &missing, &frame, &check),
            DeltaOutcome::Refused(_)
        ));
    }

    #[test]
    fn versions_fold_away() {
        assert_eq!(
            unversioned("pypi/django/Django-5.0.4.tar.gz"),
            "pypi/django/Django-#.tar.gz"
        );
        assert_eq!(
            unversioned("Django-5.0.3.tar.gz"),
            unversioned("Django-5.0.4.tar.gz")
        );
        assert_eq!(
            unversioned("libssl3_3.0.11-1~deb12u2_amd64.deb"),
            unversioned("libssl3_3.0.15-1~deb12u1_amd64.deb")
        );
        assert_ne!(unversioned("a-1.tgz"), unversioned("b-1.tgz"));
    }

    #[test]
    fn a_frame_for_no_bytes_is_refused() {
        // Found by the `frames` fuzz target: a delta frame holding sequences, decoded into 0 bytes, made libzstd
        // abort the process.
        let reference: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        let frame = [
            0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x64, 0x55, 0x00, 0x00, 0x01, 0x10, 0x02, 0x00, 0x06,
            0xa6, 0x80, 0xdb, 0x04, 0x10,
        ];
        assert!(decode(&reference, &frame, 0, &[0; 8]).is_err());
        let target = reference[100..300].to_vec();
        let frame = encode(&reference, &target, DELTA_LEVEL).unwrap();
        assert!(decode(&reference, &frame, 0, &output_check(&[])).is_err());
    }

    #[test]
    fn a_delta_decodes_against_its_reference_only() {
        let reference: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i * 7919).to_le_bytes())
            .collect();
        let mut target = reference[1000..150_000].to_vec();
        target[5000] ^= 1;
        target.extend_from_slice(b"something new");
        let frame = encode(&reference, &target, DELTA_LEVEL).unwrap();
        assert!(frame.len() < 200, "{} bytes", frame.len());
        let check = output_check(&target);
        let out = decode(&reference, &frame, target.len(), &check).unwrap();
        assert_eq!(out, target);
        // Another reference gives other bytes (or none): the check names it.
        let mut other = reference.clone();
        other[1500] ^= 0xff;
        assert!(decode(&other, &frame, target.len(), &check).is_err());
    }

    /// Words in an order a seeded generator picks: prose that compresses like text, unlike any other seed's.
    fn prose(seed: u64, len: usize) -> Vec<u8> {
        let words = [
            "seed", "site", "chunk", "bundle", "layer", "gap", "release", "pin", "mirror", "sketch",
        ];
        let mut s = seed;
        let mut out = Vec::new();
        while out.len() < len {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.extend_from_slice(words[(s >> 59) as usize % words.len()].as_bytes());
            out.extend_from_slice(format!(" {} ", (s >> 33) % 1000).as_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn renamed_files_that_share_no_chunk_find_their_old_versions_by_resemblance() {
        let dir = tempfile::tempdir().unwrap();
        let seed = Store::create(&dir.path().join("seed"), Default::default()).unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            Source::File(path)
        };
        let add_release = |version: &str, files: Vec<Source>| {
            add(
                &seed,
                "docs",
                version,
                &files,
                &AddOptions::default(),
                &NoProgress,
            )
            .unwrap();
        };
        // Two files of one chunk each; the next version renames both and edits a few bytes of each, so no
        // chunk, name or version-less name is shared, and each must find the file it came from.
        let (left, right) = (prose(1, 12_000), prose(2, 12_000));
        add_release(
            "1",
            vec![write("left.txt", &left), write("right.txt", &right)],
        );
        let (mut north, mut south) = (left.clone(), right.clone());
        north[6000..6006].copy_from_slice(b"edited");
        south.splice(3000..3000, b"inserted words ".iter().copied());
        add_release(
            "2",
            vec![write("north.txt", &north), write("south.txt", &south)],
        );
        let have = receiver_have(&seed, &["docs@1".into()], None, None).unwrap();
        let export = |out: &str, deltas: bool| {
            crate::bundle::export(
                &seed,
                &["docs@2".into()],
                Receiver {
                    have: &have,
                    site: None,
                },
                &dir.path().join(out),
                ExportOptions {
                    deltas,
                    ..ExportOptions::default()
                },
                &NoProgress,
            )
            .unwrap()
        };
        let whole = export("whole", false);
        let delta = export("delta", true);
        assert_eq!(delta.delta_chunks, 2, "{delta:?}");
        // Against the wrong file (or none) each would cost about what it costs whole.
        assert!(
            delta.stream_bytes * 10 < whole.stream_bytes,
            "{} against {} whole",
            delta.stream_bytes,
            whole.stream_bytes
        );

        // The site rebuilds both from its own copies.
        let site = Store::create(&dir.path().join("site"), Default::default()).unwrap();
        site.trust_add(seed.publisher()).unwrap();
        let all = receiver_have(&seed, &[], None, None).unwrap();
        crate::bundle::export(
            &seed,
            &["docs@1".into()],
            Receiver {
                have: &all,
                site: None,
            },
            &dir.path().join("v1"),
            ExportOptions::default(),
            &NoProgress,
        )
        .unwrap();
        crate::bundle::import(&site, &dir.path().join("v1"), &NoProgress).unwrap();
        crate::bundle::import(&site, &dir.path().join("delta"), &NoProgress).unwrap();
        let blobs = site.release("docs", "2").unwrap().blobs();
        let mut got: Vec<Vec<u8>> = blobs
            .iter()
            .map(|b| {
                let mut out = Vec::new();
                std::io::copy(&mut site.open_blob(b).unwrap(), &mut out).unwrap();
                out
            })
            .collect();
        got.sort();
        let mut want = vec![north, south];
        want.sort();
        assert_eq!(got, want);
        assert!(site.fsck(&NoProgress).unwrap().ok);
    }

    #[test]
    fn sketches_are_computed_within_the_budget_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("s"), Default::default()).unwrap();
        add_file(&store, dir.path(), "t", "1", &text(20_000, ""));
        let blob = store.release("t", "1").unwrap().blobs()[0];
        let recipe = store.recipe(&blob.recipe).unwrap().unwrap();
        let mut small = recipe.size() - 1;
        assert_eq!(
            store.sketches(&blob.recipe, &recipe, &mut small).unwrap(),
            None
        );
        assert_eq!(small, recipe.size() - 1, "nothing read");
        let mut enough = recipe.size();
        let first = store
            .sketches(&blob.recipe, &recipe, &mut enough)
            .unwrap()
            .expect("within the budget");
        assert_eq!(enough, 0);
        assert_eq!(first.len(), recipe.parts().len());
        assert!(first.iter().all(|s| s[0] != 0));
        let mut none = 0;
        assert_eq!(
            store.sketches(&blob.recipe, &recipe, &mut none).unwrap(),
            Some(first),
            "kept"
        );
    }
}
