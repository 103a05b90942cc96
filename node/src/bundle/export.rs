//! Writing a bundle: plan what the receiver lacks, read those chunks (verified on the way out of the store), pack
//! them into segments compressed with a long window, spread the stream over volumes, then sign and write the
//! index last — an index on the medium means the bundle is whole.

use super::{now, BundleError};
use crate::delta::{self, Deltas};
use crate::plan::{self, Have, Plan};
use crate::progress::Progress;
use crate::store::sites::Shipped;
use crate::store::Store;
use ferry_protocol::bundle::{
    volume_name, write_delta, write_gap, Basis, BundleIndex, DeltaHeader, Segment, Volume,
    BLOCK_SIZE, INDEX_FILE, MAX_GAP_BYTES,
};
use ferry_protocol::delta::{output_check, RecipeDiff};
use ferry_protocol::{Hash32, Object, Recipe};
use rayon::prelude::*;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How to write a bundle.
#[derive(Clone, Copy, Debug)]
pub struct ExportOptions {
    /// Largest volume file; `None` writes one volume.
    pub volume_size: Option<u64>,
    /// zstd level for the stream.
    pub zstd_level: i32,
    /// Decompressed bytes per segment (an independent zstd frame; also the compression window).
    pub segment_bytes: u64,
    /// Build the bundle in memory only, to measure it: no file is written and no site ledger changes
    /// (`ferry diff`). The report's sizes are those the real export would write.
    pub dry_run: bool,
    /// Send changed chunks as deltas against what the receiver holds, where that is smaller.
    pub deltas: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            volume_size: None,
            zstd_level: DEFAULT_LEVEL,
            segment_bytes: DEFAULT_SEGMENT,
            dry_run: false,
            deltas: true,
        }
    }
}

/// The default stream level: see docs/benchmarks.md for the size and speed it buys.
pub const DEFAULT_LEVEL: i32 = 9;
/// The default segment: a 16 MiB window, so two segments decoding at once stay far inside the memory budget.
pub const DEFAULT_SEGMENT: u64 = 16 << 20;

/// What an export wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportReport {
    /// The directory.
    pub out: String,
    /// Releases carried.
    pub releases: Vec<String>,
    /// What was assumed held.
    pub basis: Basis,
    /// Chunks carried.
    pub chunks: u64,
    /// Bytes of chunk content carried (before stream compression).
    pub payload_bytes: u64,
    /// Of `chunks`, those carried as deltas against content the receiver holds.
    pub delta_chunks: u64,
    /// Their bytes (before any compression).
    pub delta_payload_bytes: u64,
    /// What the deltas saved: those chunks compressed alone at the stream's level, less the deltas' bytes.
    pub delta_saved_bytes: u64,
    /// Recipes carried.
    pub recipes: usize,
    /// Bytes of the compressed stream (all volumes).
    pub stream_bytes: u64,
    /// Bytes of the index file.
    pub index_bytes: u64,
    /// Volume files and their sizes.
    pub volumes: Vec<(String, u64)>,
    /// Bytes of the audit entries carried (`audit.jsonl`; none in a dry run).
    pub audit_bytes: u64,
    /// Everything that crosses the gap: index, volumes and audit entries.
    pub total_bytes: u64,
}

/// Who the bundle is for: what they hold, and the site ledger to update.
pub struct Receiver<'a> {
    /// What the receiver holds.
    pub have: &'a Have,
    /// The site whose ledger records this export.
    pub site: Option<&'a str>,
}

/// Write a bundle of releases `wanted` (`name@version`) for `receiver` into `out`.
pub fn export(
    store: &Store,
    wanted: &[String],
    receiver: Receiver<'_>,
    out: &Path,
    opts: ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportReport, BundleError> {
    let _op = store.begin("export");
    if let Some(v) = opts.volume_size.filter(|&v| v < BLOCK_SIZE) {
        return Err(BundleError::VolumeTooSmall(v));
    }
    let plan = plan::plan(store, wanted, receiver.have)?;
    if !opts.dry_run {
        std::fs::create_dir_all(out).map_err(BundleError::io(out))?;
        for p in [out.join(INDEX_FILE), out.join(volume_name(1))] {
            if p.symlink_metadata().is_ok() {
                return Err(BundleError::Exists(p.display().to_string()));
            }
        }
    }

    let deltas = if opts.deltas {
        Deltas::plan(store, &plan, receiver.have.releases(), &Default::default())?
    } else {
        Deltas {
            recipe_base: vec![None; plan.recipes.len()],
            ..Deltas::default()
        }
    };
    let base_recipes: Vec<Recipe> = deltas
        .bases
        .iter()
        .map(|(r, _)| {
            store
                .recipe(r)?
                .ok_or_else(|| crate::store::StoreError::MissingRecipe {
                    recipe: *r,
                    for_blob: None,
                })
        })
        .collect::<Result<_, _>>()?;
    let diffs = recipe_diffs(&plan, &deltas, &base_recipes)?;

    // What goes into the stream, in order: chunks, and runs of them to send as deltas.
    let mut items: Vec<Item> = Vec::with_capacity(plan.chunks.len());
    let mut runs = deltas.runs.iter().peekable();
    let mut i = 0;
    while i < plan.chunks.len() {
        match runs.peek() {
            Some(run) if run.chunks.start == i => {
                i = run.chunks.end;
                items.push(Item::Delta(runs.next().expect("peeked")));
            }
            _ => {
                items.push(Item::Chunk(i));
                i += 1;
            }
        }
    }
    // Segments: runs of records up to the segment size (at least one record each), never spanning two
    // releases, so damage to one release's bytes leaves the others importable.
    let mut groups: Vec<&[Item]> = Vec::new();
    let mut start = 0;
    let mut raw = 0u64;
    for (k, item) in items.iter().enumerate() {
        let (first, bytes) = match item {
            Item::Chunk(i) => (*i, u64::from(plan.chunks[*i].len)),
            Item::Delta(run) => (
                run.chunks.start,
                plan.chunks[run.chunks.clone()]
                    .iter()
                    .map(|c| u64::from(c.len))
                    .sum(),
            ),
        };
        let rec = MAX_GAP_BYTES as u64 + bytes;
        if raw > 0 && (raw + rec > opts.segment_bytes || plan.boundaries.contains(&first)) {
            groups.push(&items[start..k]);
            start = k;
            raw = 0;
        }
        raw += rec;
    }
    if start < items.len() {
        groups.push(&items[start..]);
    }

    progress.start("exporting", Some(plan.payload_bytes));
    let mut volumes = VolumeWriter::new(out, opts.volume_size, opts.dry_run);
    let mut segments = Vec::with_capacity(groups.len());
    let mut offset = 0u64;
    let (mut delta_chunks, mut delta_payload, mut delta_saved) = (0u64, 0u64, 0u64);
    let mut write = |built: Vec<BuiltSegment>| -> Result<(), BundleError> {
        for b in built {
            volumes.write(&b.comp)?;
            segments.push(Segment {
                offset,
                comp_len: b.comp.len() as u64,
                raw_len: b.raw_len,
                chunks: b.chunks,
                first_part: b.first_part,
            });
            offset += b.comp.len() as u64;
            delta_chunks += b.delta_chunks;
            delta_payload += b.delta_payload;
            delta_saved += b.delta_saved;
            progress.advance(b.payload);
        }
        Ok(())
    };
    let ctx = SegmentContext {
        store,
        level: deltas.level,
        plan: &plan,
        bases: &base_recipes,
        opts: &opts,
    };
    // Build a window of segments on the pool while the previous window is written out.
    let width = rayon::current_num_threads().max(2);
    let mut pending: Option<Vec<BuiltSegment>> = None;
    for window in groups.chunks(width) {
        let (built, written) = rayon::join(
            || {
                window
                    .par_iter()
                    .map(|g| build_segment(&ctx, g))
                    .collect::<Result<Vec<_>, _>>()
            },
            || pending.take().map_or(Ok(()), &mut write),
        );
        written?;
        pending = Some(built?);
    }
    if let Some(last) = pending.take() {
        write(last)?;
    }
    let volumes = volumes.finish()?;
    progress.finish();

    let basis = Basis {
        releases: receiver.have.releases().to_vec(),
        have: receiver.have.file().map(|f| f.summary()),
        site: receiver.site.map(str::to_string),
    };
    let release_ids: Vec<String> = plan
        .releases
        .iter()
        .map(|s| s.manifest_unverified().map(|m| m.id()))
        .collect::<Result<_, _>>()
        .map_err(crate::store::StoreError::from)?;
    let index = BundleIndex {
        created: now(),
        basis: basis.clone(),
        releases: plan.releases.clone(),
        recipes: diffs,
        bases: deltas.bases.clone(),
        zstd_level: opts.zstd_level,
        chunks: plan.chunks.len() as u64,
        payload_bytes: plan.payload_bytes,
        delta_chunks,
        delta_saved_bytes: delta_saved,
        segments,
        volumes: volumes.clone(),
    };
    let bytes = index.sign(store.signing_key()).encode();
    let mut audit_bytes = 0;
    if !opts.dry_run {
        // The export's own audit entry, then every entry of this store's log for these releases, beside the
        // index (written last, so a bundle with an index is whole): the site's log continues from them.
        let stream: u64 = volumes.iter().map(|v| v.size).sum();
        store.audit(
            "export",
            release_ids.clone(),
            serde_json::json!({
                "bundle": blake3::hash(&bytes).to_hex().to_string(),
                "out": out.display().to_string(),
                "site": receiver.site,
                "basis": &basis,
                "chunks": plan.chunks.len(),
                "total_bytes": stream + bytes.len() as u64,
            }),
        )?;
        let mut carried = store.audit_lines_for(&release_ids)?.join("\n");
        carried.push('\n');
        audit_bytes = carried.len() as u64;
        super::write_atomically(
            &out.join(crate::store::audit::BUNDLE_FILE),
            carried.as_bytes(),
        )?;
        super::write_atomically(&out.join(INDEX_FILE), &bytes)?;
    }

    let stream_bytes: u64 = volumes.iter().map(|v| v.size).sum();
    let report = ExportReport {
        out: out.display().to_string(),
        releases: release_ids.clone(),
        basis,
        chunks: plan.chunks.len() as u64,
        payload_bytes: plan.payload_bytes,
        delta_chunks,
        delta_payload_bytes: delta_payload,
        delta_saved_bytes: delta_saved,
        recipes: plan.recipes.len(),
        stream_bytes,
        index_bytes: bytes.len() as u64,
        volumes: volumes
            .iter()
            .enumerate()
            .map(|(i, v)| (volume_name(i + 1), v.size))
            .collect(),
        audit_bytes,
        total_bytes: stream_bytes + bytes.len() as u64 + audit_bytes,
    };
    if let Some(site) = receiver.site.filter(|_| !opts.dry_run) {
        let mut ledger = store.site(site)?;
        let at = now();
        for (id, signed) in release_ids.iter().zip(&plan.releases) {
            let envelope = plan::envelope_hash(signed).to_hex();
            if !ledger.releases.iter().any(|s| s.envelope == envelope) {
                ledger.releases.push(Shipped {
                    release: id.clone(),
                    envelope,
                    at,
                });
            }
        }
        ledger.exports += 1;
        ledger.bytes += report.total_bytes;
        ledger.last_export = at;
        store.save_site(&ledger)?;
    }
    Ok(report)
}

/// Build `Have` from what the operator says the receiver holds: base releases, a have-file, a site's ledger.
pub fn receiver_have(
    store: &Store,
    base: &[String],
    have_file: Option<&Path>,
    site: Option<&str>,
) -> Result<Have, BundleError> {
    let mut have = Have::new();
    for id in base {
        have.add_release(store, id)?;
    }
    if let Some(site) = site {
        for shipped in store.site(site)?.releases {
            let envelope = Hash32::from_hex(&shipped.envelope).map_err(|_| {
                crate::store::StoreError::Corrupt(format!(
                    "ledger of site {site}: bad envelope hash"
                ))
            })?;
            have.add_release_if_same(store, &shipped.release, &envelope)?;
        }
    }
    if let Some(path) = have_file {
        have.add_have_file(store, super::have::read(path)?)?;
    }
    Ok(have)
}

/// The recipes the plan carries, each as a difference against its base (chunks carried at their first use
/// named by nothing: the receiver hashes them).
fn recipe_diffs(
    plan: &Plan,
    deltas: &Deltas,
    bases: &[Recipe],
) -> Result<Vec<RecipeDiff>, BundleError> {
    let mut out = Vec::with_capacity(plan.recipes.len());
    let mut next = 0usize;
    let mut part_base = 0u64;
    for ((_, bytes), base) in plan.recipes.iter().zip(&deltas.recipe_base) {
        let recipe = Recipe::decode(bytes).map_err(crate::store::StoreError::from)?;
        let parts = recipe.parts().len() as u64;
        let mut sent = std::collections::HashSet::new();
        while next < plan.chunks.len() && plan.chunks[next].part < part_base + parts {
            sent.insert(plan.chunks[next].part - part_base);
            next += 1;
        }
        let base = base.map(|b| (b, &bases[b as usize]));
        out.push(RecipeDiff::new(&recipe, base, |p| {
            sent.contains(&(p as u64))
        }));
        part_base += parts;
    }
    Ok(out)
}

/// One thing in the stream: a chunk (by its place in the plan), or a run of chunks to try as a delta.
enum Item<'a> {
    Chunk(usize),
    Delta(&'a delta::Run),
}

struct SegmentContext<'a> {
    store: &'a Store,
    /// zstd level of the deltas.
    level: i32,
    plan: &'a Plan,
    bases: &'a [Recipe],
    opts: &'a ExportOptions,
}

struct BuiltSegment {
    comp: Vec<u8>,
    raw_len: u64,
    payload: u64,
    chunks: u32,
    first_part: u64,
    delta_chunks: u64,
    delta_payload: u64,
    delta_saved: u64,
}

fn build_segment(
    ctx: &SegmentContext<'_>,
    items: &[Item<'_>],
) -> Result<BuiltSegment, BundleError> {
    let chunks = ctx.plan.chunks.as_slice();
    let first = match items.first() {
        Some(Item::Chunk(i)) => *i,
        Some(Item::Delta(run)) => run.chunks.start,
        None => 0,
    };
    let first_part = chunks.get(first).map_or(0, |c| c.part);
    let mut raw = Vec::new();
    let mut next = first_part;
    let mut built = BuiltSegment {
        comp: Vec::new(),
        raw_len: 0,
        payload: 0,
        chunks: 0,
        first_part,
        delta_chunks: 0,
        delta_payload: 0,
        delta_saved: 0,
    };
    let plain = |raw: &mut Vec<u8>, next: &mut u64, i: usize, data: &[u8]| {
        write_gap(raw, chunks[i].part - *next);
        raw.extend_from_slice(data);
        *next = chunks[i].part + 1;
    };
    for item in items {
        match item {
            Item::Chunk(i) => {
                let data = ctx.store.read_chunk(&chunks[*i].id)?;
                plain(&mut raw, &mut next, *i, &data);
                built.payload += u64::from(chunks[*i].len);
                built.chunks += 1;
            }
            Item::Delta(run) => {
                let mut target = Vec::new();
                let mut ends = Vec::with_capacity(run.chunks.len());
                for c in &chunks[run.chunks.clone()] {
                    target.extend_from_slice(&ctx.store.read_chunk(&c.id)?);
                    ends.push(target.len());
                }
                let corrupt =
                    |e: String| crate::store::StoreError::Corrupt(format!("encoding a delta: {e}"));
                let reference =
                    delta::read_ranges(ctx.store, &ctx.bases[run.base as usize], &run.ranges)?;
                let frame = delta::encode(&reference, &target, ctx.level).map_err(corrupt)?;
                drop(reference);
                let alone = delta::plain_size(&target, ctx.opts.zstd_level).map_err(corrupt)?;
                let n = run.chunks.len();
                tracing::debug!(
                    chunks = n,
                    target = target.len(),
                    reference = run.ranges.iter().map(|r| r.1).sum::<u64>(),
                    ranges = run.ranges.len(),
                    frame = frame.len(),
                    alone,
                    "delta run"
                );
                if frame.len() < alone {
                    let mut gaps = Vec::with_capacity(n);
                    for c in &chunks[run.chunks.clone()] {
                        gaps.push(c.part - next);
                        next = c.part + 1;
                    }
                    let header = DeltaHeader {
                        gaps,
                        base: run.base,
                        ranges: run.ranges.clone(),
                        check: output_check(&target),
                    };
                    write_delta(&mut raw, &header, &frame);
                    built.delta_chunks += n as u64;
                    built.delta_payload += target.len() as u64;
                    built.delta_saved += (alone - frame.len()) as u64;
                } else {
                    let mut at = 0;
                    for (k, i) in run.chunks.clone().enumerate() {
                        plain(&mut raw, &mut next, i, &target[at..ends[k]]);
                        at = ends[k];
                    }
                }
                built.payload += target.len() as u64;
                built.chunks += n as u32;
            }
        }
    }
    built.comp = compress_segment(&raw, ctx.opts.zstd_level).map_err(|e| {
        crate::store::StoreError::Corrupt(format!("zstd compressing a bundle segment: {e}"))
    })?;
    built.raw_len = raw.len() as u64;
    Ok(built)
}

/// One zstd frame over the whole segment, its window as large as the segment, with long-distance matching.
fn compress_segment(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    use zstd::zstd_safe::CParameter;
    let window_log = (raw.len().max(1 << 10) as u64)
        .next_power_of_two()
        .trailing_zeros()
        .clamp(10, 27);
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(CParameter::WindowLog(window_log))?;
    c.set_parameter(CParameter::EnableLongDistanceMatching(true))?;
    c.set_parameter(CParameter::ContentSizeFlag(true))?;
    c.set_parameter(CParameter::ChecksumFlag(false))?;
    c.compress(raw)
}

/// Writes the stream across volume files of at most `limit` bytes, hashing each whole and per block.
struct VolumeWriter {
    dir: PathBuf,
    /// Count and hash only; write nothing.
    dry: bool,
    limit: u64,
    open: Option<OpenVolume>,
    done: Vec<Volume>,
}

struct OpenVolume {
    path: PathBuf,
    /// `None` in a dry run.
    file: Option<std::io::BufWriter<File>>,
    size: u64,
    whole: blake3::Hasher,
    block: blake3::Hasher,
    block_len: u64,
    blocks: Vec<ferry_protocol::bundle::BlockHash>,
}

impl VolumeWriter {
    fn new(dir: &Path, limit: Option<u64>, dry: bool) -> Self {
        VolumeWriter {
            dir: dir.to_path_buf(),
            dry,
            limit: limit.unwrap_or(u64::MAX),
            open: None,
            done: Vec::new(),
        }
    }

    fn write(&mut self, mut bytes: &[u8]) -> Result<(), BundleError> {
        while !bytes.is_empty() {
            if self.open.is_none() {
                let path = self.dir.join(volume_name(self.done.len() + 1));
                let file = if self.dry {
                    None
                } else {
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|e| match e.kind() {
                            std::io::ErrorKind::AlreadyExists => {
                                BundleError::Exists(path.display().to_string())
                            }
                            _ => BundleError::io(&path)(e),
                        })?;
                    Some(std::io::BufWriter::with_capacity(1 << 20, file))
                };
                self.open = Some(OpenVolume {
                    path,
                    file,
                    size: 0,
                    whole: blake3::Hasher::new(),
                    block: blake3::Hasher::new(),
                    block_len: 0,
                    blocks: Vec::new(),
                });
            }
            let v = self.open.as_mut().expect("opened above");
            let room = (self.limit - v.size).min(BLOCK_SIZE - v.block_len);
            let n = (bytes.len() as u64).min(room) as usize;
            let (now, rest) = bytes.split_at(n);
            if let Some(f) = &mut v.file {
                f.write_all(now).map_err(BundleError::io(&v.path))?;
            }
            v.whole.update(now);
            v.block.update(now);
            v.block_len += n as u64;
            v.size += n as u64;
            if v.block_len == BLOCK_SIZE {
                v.close_block();
            }
            if v.size == self.limit {
                self.close()?;
            }
            bytes = rest;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), BundleError> {
        let Some(mut v) = self.open.take() else {
            return Ok(());
        };
        if v.block_len > 0 {
            v.close_block();
        }
        if let Some(file) = v.file.take() {
            let file = file
                .into_inner()
                .map_err(|e| BundleError::io(&v.path)(e.into_error()))?;
            file.sync_all().map_err(BundleError::io(&v.path))?;
        }
        self.done.push(Volume {
            size: v.size,
            blake3: Hash32(*v.whole.finalize().as_bytes()),
            blocks: v.blocks,
        });
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Volume>, BundleError> {
        self.close()?;
        Ok(self.done)
    }
}

impl OpenVolume {
    fn close_block(&mut self) {
        let h = self.block.finalize();
        self.blocks
            .push(h.as_bytes()[..16].try_into().expect("16 bytes"));
        self.block.reset();
        self.block_len = 0;
    }
}
