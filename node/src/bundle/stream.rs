//! Reading a bundle's stream back: one thread reads the volumes in order, checks every block against the signed
//! index and assembles segments; the pool decodes segments side by side and checks every chunk against its id;
//! the caller consumes the results in stream order.
//!
//! Memory stays bounded by the segment size: at most a few segments are in flight (compressed and decoded).

use super::{locate, Bundle, BundleError};
use crate::progress::Progress;
use crate::trust::TrustSet;
use ferry_protocol::bundle::{
    block_hash, parse_records, part_table, volume_name, BundleIndex, Record, BLOCK_SIZE,
};
use ferry_protocol::delta::Slot;
use ferry_protocol::ChunkId;
use rayon::prelude::*;
use std::io::Read;
use std::ops::Range;
use std::sync::mpsc;

/// A decoded, verified segment.
pub(crate) struct Decoded {
    /// The records' bytes, then the chunks decoded from its delta records.
    pub raw: Vec<u8>,
    /// Each chunk carried.
    pub records: Vec<Got>,
    /// Chunks inside delta records that could not be decoded, for want of a store to read their bases from.
    pub undecoded: u64,
}

/// One chunk of a decoded segment.
pub(crate) struct Got {
    /// Its part number.
    pub part: u64,
    /// Its id: named by the index, or recovered by hashing its bytes.
    pub id: ChunkId,
    /// Where its content lies in `raw`.
    pub range: Range<usize>,
    /// The index named nothing: the id was recovered by hashing.
    pub recovered: bool,
    /// It was hashed (chunks the caller said it holds are skipped, not hashed) and is not held.
    pub new: bool,
}

/// Reads a delta's reference — base number, ranges of its content — from the receiver's store.
pub(crate) type References<'a> =
    &'a (dyn Fn(u32, &[(u64, u64)]) -> Result<Vec<u8>, BundleError> + Sync);

/// Large buffers (segments, compressed and decoded) handed round and reused, so a long stream allocates a
/// handful once instead of two per segment — with glibc, freeing and reallocating buffers of many MiB across
/// threads left them resident and pushed import's peak RSS past its budget.
#[derive(Default)]
pub(crate) struct Pool(std::sync::Mutex<Vec<Vec<u8>>>);

impl Pool {
    /// An empty buffer with room for `cap` bytes.
    pub fn take(&self, cap: usize) -> Vec<u8> {
        let mut v = self
            .0
            .lock()
            .expect("pool poisoned")
            .pop()
            .unwrap_or_default();
        v.clear();
        v.reserve(cap);
        v
    }

    /// Return a buffer for reuse.
    pub fn give(&self, v: Vec<u8>) {
        let mut free = self.0.lock().expect("pool poisoned");
        if free.len() < 8 {
            free.push(v);
        }
    }
}

/// Check that every volume is present with the size the index gives.
pub(crate) fn check_volumes(bundle: &Bundle, index: &BundleIndex) -> Result<(), BundleError> {
    for (i, v) in index.volumes.iter().enumerate() {
        let path = bundle.dir().join(volume_name(i + 1));
        match std::fs::metadata(&path) {
            Ok(m) if m.len() == v.size => {}
            Ok(m) => {
                return Err(BundleError::VolumeSize {
                    path: path.display().to_string(),
                    expected: v.size,
                    actual: m.len(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BundleError::MissingVolume {
                    path: path.display().to_string(),
                    size: v.size,
                })
            }
            Err(e) => return Err(BundleError::io(&path)(e)),
        }
    }
    Ok(())
}

/// Read every volume block by block, verify each block, and send each segment's compressed bytes in order.
fn feed(
    bundle: &Bundle,
    index: &BundleIndex,
    tx: &mpsc::SyncSender<Result<Vec<u8>, BundleError>>,
    pool: &Pool,
    progress: &dyn Progress,
) {
    let mut segments = index.segments.iter();
    let mut want = segments.next().map(|s| s.comp_len as usize);
    let mut seg: Vec<u8> = pool.take(want.unwrap_or(0));
    let mut block = vec![0u8; BLOCK_SIZE as usize];
    for (i, v) in index.volumes.iter().enumerate() {
        let path = bundle.dir().join(volume_name(i + 1));
        let result = (|| -> Result<(), BundleError> {
            let mut file = std::fs::File::open(&path).map_err(BundleError::io(&path))?;
            for (b, expected) in v.blocks.iter().enumerate() {
                let offset = b as u64 * BLOCK_SIZE;
                let len = (v.size - offset).min(BLOCK_SIZE) as usize;
                file.read_exact(&mut block[..len]).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        BundleError::VolumeSize {
                            path: path.display().to_string(),
                            expected: v.size,
                            actual: offset,
                        }
                    } else {
                        BundleError::io(&path)(e)
                    }
                })?;
                if block_hash(&block[..len]) != *expected {
                    return Err(BundleError::Damaged {
                        path: path.display().to_string(),
                        offset,
                        len: len as u64,
                    });
                }
                progress.advance(len as u64);
                // Hand the block's bytes to the segments they belong to.
                let mut bytes = &block[..len];
                while let Some(w) = want {
                    let take = (w - seg.len()).min(bytes.len());
                    seg.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if seg.len() < w {
                        break;
                    }
                    want = segments.next().map(|s| s.comp_len as usize);
                    let next = pool.take(want.unwrap_or(0));
                    if tx.send(Ok(std::mem::replace(&mut seg, next))).is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = tx.send(Err(e));
            return;
        }
    }
}

/// Decode segment `n` and check its records; chunks for which `held` is true are not hashed. Delta records are
/// decoded against `refs` (without it they are counted and skipped).
#[allow(clippy::too_many_arguments)]
fn decode(
    bundle: &Bundle,
    index: &BundleIndex,
    n: usize,
    comp: Vec<u8>,
    parts: &[Slot],
    held: &(dyn Fn(&ChunkId) -> bool + Sync),
    refs: Option<References<'_>>,
    pool: &Pool,
) -> Result<Decoded, BundleError> {
    let seg = index.segments[n];
    let (vol, offset) = locate(index, seg.offset);
    let path = bundle.dir().join(volume_name(vol)).display().to_string();
    let fail = |message: String| BundleError::Segment {
        segment: n,
        path: path.clone(),
        offset,
        message,
    };
    let mut d = zstd::bulk::Decompressor::new().map_err(|e| fail(e.to_string()))?;
    d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(28))
        .map_err(|e| fail(e.to_string()))?;
    // Room for one byte at least (an empty buffer's dangling pointer makes libzstd abort); the length is
    // checked below.
    let mut raw = pool.take((seg.raw_len as usize).max(1));
    let decoded = d.decompress_to_buffer(&comp, &mut raw);
    pool.give(comp);
    decoded.map_err(|e| fail(format!("does not decompress: {e}")))?;
    if raw.len() as u64 != seg.raw_len {
        return Err(fail(format!(
            "decompresses to {} bytes, the index says {}",
            raw.len(),
            seg.raw_len
        )));
    }
    let parsed = parse_records(&raw, seg.first_part, parts, index.bases.len())
        .map_err(|e| fail(e.to_string()))?;
    let count: usize = parsed.iter().map(Record::chunk_count).sum();
    if count != seg.chunks as usize {
        return Err(fail(format!(
            "holds {count} chunks, the index says {}",
            seg.chunks
        )));
    }
    let bad_chunk = |id: ChunkId| BundleError::Chunk {
        segment: n,
        path: path.clone(),
        offset,
        id,
    };
    // Hash a chunk unless it is named and held; check it against its name.
    let check = |named: Option<ChunkId>, bytes: &[u8]| -> Result<(ChunkId, bool), BundleError> {
        match named {
            Some(id) if held(&id) => Ok((id, false)),
            Some(id) if ChunkId::of(bytes) != id => Err(bad_chunk(id)),
            Some(id) => Ok((id, true)),
            None => {
                let id = ChunkId::of(bytes);
                Ok((id, !held(&id)))
            }
        }
    };
    let mut records = Vec::with_capacity(count);
    let mut undecoded = 0u64;
    // The last reference read, by base and ranges: runs of one blob often share it.
    type Key = (u32, Vec<(u64, u64)>);
    let mut last_ref: Option<(Key, Vec<u8>)> = None;
    for rec in parsed {
        match rec {
            Record::Chunk { chunk, bytes } => {
                let (id, new) = check(chunk.id, &raw[bytes.clone()])?;
                records.push(Got {
                    part: chunk.part,
                    id,
                    range: bytes,
                    recovered: chunk.id.is_none(),
                    new,
                });
            }
            Record::Delta {
                chunks,
                header,
                frame,
                at,
            } => {
                let Some(refs) = refs else {
                    undecoded += chunks.len() as u64;
                    continue;
                };
                // Every chunk named and held: nothing to decode.
                if chunks.iter().all(|c| c.id.is_some_and(|id| held(&id))) {
                    continue;
                }
                let key = (header.base, header.ranges);
                if last_ref.as_ref().is_none_or(|(k, _)| *k != key) {
                    let bytes = refs(key.0, &key.1)?;
                    last_ref = Some((key, bytes));
                }
                let reference = &last_ref.as_ref().expect("set above").1;
                let len: usize = chunks.iter().map(|c| c.len as usize).sum();
                let out = crate::delta::decode(reference, &raw[frame], len, &header.check)
                    .map_err(|e| {
                        fail(format!(
                            "delta record at byte {at} (against base recipe {}): {e}",
                            index.bases[header.base as usize].0
                        ))
                    })?;
                let start = raw.len();
                raw.extend_from_slice(&out);
                let mut pos = start;
                for c in chunks {
                    let range = pos..pos + c.len as usize;
                    pos = range.end;
                    let (id, new) = check(c.id, &raw[range.clone()])?;
                    records.push(Got {
                        part: c.part,
                        id,
                        range,
                        recovered: c.id.is_none(),
                        new,
                    });
                }
            }
        }
    }
    Ok(Decoded {
        raw,
        records,
        undecoded,
    })
}

/// Stream every segment through `work` (on the pool, in parallel, after verification) and hand the results to
/// `consume` in stream order. On damage, what came before it is consumed, then the error returned.
pub(crate) fn read_stream<T: Send>(
    bundle: &Bundle,
    index: &BundleIndex,
    progress: &dyn Progress,
    held: &(dyn Fn(&ChunkId) -> bool + Sync),
    refs: Option<References<'_>>,
    work: &(dyn Fn(Decoded, &Pool) -> Result<T, BundleError> + Sync),
    consume: &mut (dyn FnMut(T, &Pool) -> Result<(), BundleError> + Send),
) -> Result<(), BundleError> {
    check_volumes(bundle, index)?;
    let parts = part_table(&index.recipes).map_err(|e| BundleError::Segment {
        segment: 0,
        path: bundle.index_path().display().to_string(),
        offset: 0,
        message: format!("the index's recipes: {e}"),
    })?;
    let parts = &parts[..];
    let pool = Pool::default();
    let pool = &pool;
    let width = rayon::current_num_threads().max(2);
    let (tx, rx) = mpsc::sync_channel::<Result<Vec<u8>, BundleError>>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || feed(bundle, index, &tx, pool, progress));
        let mut next = 0usize;
        let mut pending: Option<Vec<T>> = None;
        let mut failure: Option<BundleError> = None;
        let mut rx = rx.into_iter();
        loop {
            // A window of segments, or what arrived before the stream ended or failed.
            let mut window = Vec::with_capacity(width);
            while window.len() < width {
                match rx.next() {
                    Some(Ok(comp)) => {
                        window.push((next, comp));
                        next += 1;
                    }
                    Some(Err(e)) => {
                        failure = Some(e);
                        break;
                    }
                    None => break,
                }
            }
            if window.is_empty() {
                break;
            }
            let (done, consumed) = rayon::join(
                || {
                    window
                        .into_par_iter()
                        .map(|(n, comp)| {
                            work(
                                decode(bundle, index, n, comp, parts, held, refs, pool)?,
                                pool,
                            )
                        })
                        .collect::<Result<Vec<T>, _>>()
                },
                || -> Result<(), BundleError> {
                    for t in pending.take().into_iter().flatten() {
                        consume(t, pool)?;
                    }
                    Ok(())
                },
            );
            consumed?;
            pending = Some(done?);
            if failure.is_some() {
                break;
            }
        }
        for t in pending.take().into_iter().flatten() {
            consume(t, pool)?;
        }
        // Drain so the reader can finish.
        for _ in rx {}
        match failure {
            Some(e) => Err(e),
            None if next != index.segments.len() => Err(BundleError::Segment {
                segment: next,
                path: bundle.dir().display().to_string(),
                offset: 0,
                message: "the stream ended early".into(),
            }),
            None => Ok(()),
        }
    })
}

/// What `bundle verify` checked.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VerifyReport {
    /// The bundle directory.
    pub bundle: String,
    /// The key that signed it.
    pub signer: String,
    /// Releases it carries.
    pub releases: Vec<String>,
    /// Volumes checked.
    pub volumes: usize,
    /// Bytes of stream read.
    pub stream_bytes: u64,
    /// Chunks checked: against their ids where the index names them, else by the signed block hashes.
    pub chunks: u64,
    /// Chunks carried as deltas, which only an import can decode (against the bases it holds).
    pub delta_chunks: u64,
    /// Bytes of chunk content checked.
    pub payload_bytes: u64,
}

/// Check a bundle without importing it: the index signature against `trust`, every release signature, every
/// volume block, every chunk's hash.
pub fn verify(
    dir: &std::path::Path,
    trust: &TrustSet,
    progress: &dyn Progress,
) -> Result<VerifyReport, BundleError> {
    if trust.is_empty() {
        return Err(BundleError::NoKeys);
    }
    let bundle = Bundle::open(dir)?;
    let index = bundle.verify_index(trust)?;
    let releases = verify_releases(&bundle, &index, trust)?;
    progress.start("verifying", Some(index.stream_bytes()));
    let mut chunks = 0u64;
    let mut payload = 0u64;
    let mut deltas = 0u64;
    read_stream(
        &bundle,
        &index,
        progress,
        &|_| false,
        None,
        &|d: Decoded, pool: &Pool| {
            let counts = (
                d.records.len() as u64,
                d.records.iter().map(|r| r.range.len() as u64).sum::<u64>(),
                d.undecoded,
            );
            pool.give(d.raw);
            Ok(counts)
        },
        &mut |(c, p, u): (u64, u64, u64), _: &Pool| {
            chunks += c;
            payload += p;
            deltas += u;
            Ok(())
        },
    )?;
    progress.finish();
    Ok(VerifyReport {
        bundle: dir.display().to_string(),
        signer: bundle.signer().to_string(),
        releases,
        volumes: index.volumes.len(),
        stream_bytes: index.stream_bytes(),
        chunks,
        delta_chunks: deltas,
        payload_bytes: payload,
    })
}

/// Verify each release's signature against `trust` and its names and paths; their ids.
pub(crate) fn verify_releases(
    bundle: &Bundle,
    index: &BundleIndex,
    trust: &TrustSet,
) -> Result<Vec<String>, BundleError> {
    let path = bundle.index_path().display().to_string();
    let mut out = Vec::new();
    for signed in &index.releases {
        let key = trust
            .get(signed.key)
            .ok_or_else(|| BundleError::Untrusted {
                path: path.clone(),
                key: signed.key,
            })?;
        let manifest = signed
            .verify(key)
            .map_err(|source| BundleError::Signature {
                path: path.clone(),
                source,
            })?;
        manifest
            .validate()
            .map_err(crate::store::StoreError::from)?;
        out.push(manifest.id());
    }
    Ok(out)
}
