//! Storing a file of xz-, zstd-, bzip2- or gzip-compressed members — a `.deb` (an `ar` archive of
//! `control.tar.xz` and `data.tar.xz`, `.zst` or `.gz`), an `.rpm` (lead and headers, then a zstd, xz, bzip2 or
//! gzip payload), a bare `.xz` (`.tar.xz`, `Packages.xz`), `.zst` (a zstd image layer) or `.bz2` — as its
//! skeleton, its members' raw contents and their parameters ([`ferry_formats::packed`]), under a
//! [`Recipe::Gzip`] whose re-creation data starts with [`RECREATION_PACKED`], or with
//! [`RECREATION_PACKED_STREAMS`] when gzip members' re-creation streams ([`deflate::stream`]) follow the table:
//!
//! ```text
//! raw parts:        skeleton stream, then the members' tar headers, then their contents (as a gzip tar's are)
//! re-creation data: u8 4  table
//!               or: u8 5  varint table length  table  the gzip members' re-creation streams, in order
//! table:            varint n  n × (varint at  varint len  varint raw length  varint headers length
//!                   codec and parameters)
//! ```
//! A gzip member goes through the same decomposer as a gzip blob (its producer's model found as it is read);
//! its parameters record the length of its re-creation stream.
//! Each member's raw content is split into tar headers and contents like a gzip tar's, so a package rebuilt
//! with one file changed crosses as that file. Before anything is recorded each member is re-encoded with the
//! parameters found and compared with the original, byte for byte (a zstd member that does not match is tried
//! once more the other way a trial cannot tell apart, single- or multi-threaded); a file whose members cannot
//! all be re-created that way is stored as it is and counted.
//!
//! An xz or zstd encoder holds tens to hundreds of MiB (a block in and out per thread, and the match finder):
//! [`ENCODERS`] bound how many run at once in the process, ingest and reads together.

use super::ingest::{split_raw, Contents, ContentsReader};
use super::{Spooled, RECREATION_PACKED, RECREATION_PACKED_STREAMS};
use crate::chunker::ContentCutter;
use crate::progress::{NoProgress, Progress};
use crate::store::stream::{ChannelReader, ChannelWriter, PartsStream};
use crate::store::writer::{feed_with, Ingested};
use crate::store::{Store, StoreError};
use ferry_formats::deflate::stream as deflate;
use ferry_formats::packed::{self, Kind, Layout, Params, Place};
use ferry_formats::xz;
use ferry_formats::Range;
use ferry_protocol::{BlobId, Part, Recipe, Sha256Digest};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::{mpsc, Condvar, Mutex};

/// xz and zstd encoders running at once in this process, at most (each on up to [`threads`] threads, as many
/// as fit [`xz::MAX_ENCODER_MEMORY`]; zstd's on at most [`ferry_formats::zstd::MAX_WORKERS`]).
pub const ENCODERS: usize = 2;
/// The re-creation data of one file, at most (a table of its members).
const MAX_TABLE: u64 = 4 << 20;

/// A counting semaphore for the encoders.
static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A running encoder's place; released on drop.
struct EncoderSlot;

impl EncoderSlot {
    fn take() -> EncoderSlot {
        let (count, freed) = &RUNNING;
        let mut n = count.lock().expect("encoder slots poisoned");
        while *n >= ENCODERS {
            n = freed.wait(n).expect("encoder slots poisoned");
        }
        *n += 1;
        EncoderSlot
    }
}

impl Drop for EncoderSlot {
    fn drop(&mut self) {
        let (count, freed) = &RUNNING;
        *count.lock().expect("encoder slots poisoned") -= 1;
        freed.notify_one();
    }
}

/// Threads an encoder uses: the machine's cores, up to four (its output does not depend on how many).
fn threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u32)
}

/// Encode `raw` with `params` into `out`, in one of the process's encoder slots.
fn encode(params: &Params, raw: impl Read, out: impl Write) -> io::Result<u64> {
    let _slot = EncoderSlot::take();
    params.encode(threads(), raw, out)
}

/// A member that did not come back the same: which, its content's length when it decoded, and why.
struct Failed {
    member: usize,
    raw_len: Option<u64>,
    reason: String,
}

/// One re-created member, as the re-creation data records it.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    at: u64,
    len: u64,
    raw_len: u64,
    headers_len: u64,
    params: Params,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The re-creation data's start: its version byte and the members' table (with its length when re-creation
/// streams follow it).
fn write_table(entries: &[Entry]) -> Vec<u8> {
    let mut table = Vec::new();
    put_varint(&mut table, entries.len() as u64);
    for e in entries {
        for v in [e.at, e.len, e.raw_len, e.headers_len] {
            put_varint(&mut table, v);
        }
        e.params.write_to(&mut table);
    }
    if entries.iter().all(|e| e.stream_len().is_none()) {
        table.insert(0, RECREATION_PACKED);
        return table;
    }
    let mut out = vec![RECREATION_PACKED_STREAMS];
    put_varint(&mut out, table.len() as u64);
    out.extend_from_slice(&table);
    out
}

impl Entry {
    /// The length of its re-creation stream after the table: a gzip member's; `None` for the others.
    fn stream_len(&self) -> Option<u64> {
        match self.params {
            Params::Deflate { recreation_len } => Some(recreation_len),
            _ => None,
        }
    }
}

/// The entries of re-creation data written by `write_table` (after its version byte), checked to lie in
/// order inside a file of `size` bytes.
fn read_table(mut bytes: &[u8], size: u64) -> Result<Vec<Entry>, String> {
    let short = || "the members' table is cut short".to_string();
    let n = super::get_varint(&mut bytes).ok_or_else(short)?;
    if n > ferry_formats::ar::MAX_MEMBERS as u64 {
        return Err(format!("the members' table names {n} members"));
    }
    let mut out = Vec::with_capacity(n as usize);
    let mut end = 0u64;
    for _ in 0..n {
        let mut v = [0u64; 4];
        for x in &mut v {
            *x = super::get_varint(&mut bytes).ok_or_else(short)?;
        }
        let params = Params::read_from(&mut bytes)?;
        let [at, len, raw_len, headers_len] = v;
        if at < end || at.checked_add(len).is_none_or(|e| e > size) || headers_len > raw_len {
            return Err(format!(
                "a member at {at} of {len} bytes does not fit the file ({size} bytes)"
            ));
        }
        end = at + len;
        out.push(Entry {
            at,
            len,
            raw_len,
            headers_len,
            params,
        });
    }
    if !bytes.is_empty() {
        return Err("bytes after the members' table".into());
    }
    Ok(out)
}

impl Store {
    /// A file of xz members (`kind`): kept aside in an unnamed file, then stored as skeleton, members' raw
    /// contents and their parameters, or stored as it is when that cannot be done exactly.
    pub(in crate::store) fn ingest_packed<R: Read + Send>(
        &self,
        mut src: R,
        kind: Kind,
        what: &str,
        expect: Option<(Sha256Digest, Option<u64>)>,
        progress: &dyn Progress,
    ) -> Result<Ingested, StoreError> {
        let mut sp = self.spool_blob(&mut src, what, expect, progress)?;
        let as_it_is = |sp: &mut Spooled, kept: bool| -> Result<Ingested, StoreError> {
            let mut ingested = self.ingest_spooled(sp, what, expect)?;
            if kept {
                let kept = ingested.blob.size;
                match kind {
                    Kind::Xz => ingested.stats.xz_kept_bytes += kept,
                    Kind::Bzip2 => ingested.stats.bzip2_kept_bytes += kept,
                    Kind::Zstd => ingested.stats.zstd_kept_bytes += kept,
                    Kind::Ar => ingested.stats.deb_kept_bytes += kept,
                    Kind::Rpm => ingested.stats.rpm_kept_bytes += kept,
                }
            }
            Ok(ingested)
        };
        let mut layout = match Layout::read(&sp.file, sp.size, kind) {
            Ok(l) => l,
            Err(e) => {
                tracing::info!(%what, reason = %e, "file stored as it is");
                return as_it_is(&mut sp, kind != Kind::Ar);
            }
        };
        for (name, why) in &layout.refused {
            tracing::info!(%what, member = %name, reason = %why, "compressed member kept as it is");
        }
        // The parameters of each member, found by trial; a member whose are not found stays in the skeleton.
        let mut params = Vec::with_capacity(layout.members.len());
        let members = std::mem::take(&mut layout.members);
        let mut refused = !layout.refused.is_empty();
        for m in members {
            match m.find(&sp.file) {
                Ok(p) => {
                    params.push(p);
                    layout.members.push(m);
                }
                Err(e) => {
                    tracing::info!(%what, member = %m.name, reason = %e, "compressed member kept as it is");
                    refused = true;
                }
            }
        }
        if layout.members.is_empty() {
            return as_it_is(&mut sp, refused || kind != Kind::Ar);
        }
        let mut tried = vec![false; params.len()];
        loop {
            match self.decompose_packed(&sp.file, &layout, &params, (sp.sha256, sp.id), what)? {
                Ok(ingested) => return Ok(ingested),
                Err(Failed {
                    member,
                    raw_len,
                    reason,
                }) => {
                    let other = raw_len.and_then(|n| params[member].alternative(n));
                    match other.filter(|_| !tried[member]) {
                        Some(other) => {
                            tracing::debug!(%what, %reason, "re-encoding once more as {other}");
                            params[member] = other;
                            tried[member] = true;
                        }
                        // The others may still be re-created, this one left in the skeleton (a package's
                        // damaged control.tar.gz beside its data.tar.xz).
                        None if layout.members.len() > 1 => {
                            tracing::info!(%what, %reason, "compressed member kept as it is");
                            layout.members.remove(member);
                            params.remove(member);
                            tried.remove(member);
                        }
                        None => {
                            tracing::info!(%what, %reason, "file stored as it is");
                            return as_it_is(&mut sp, true);
                        }
                    }
                }
            }
        }
    }

    /// Store `file` by its `layout`, the members re-created with `params`; [`Failed`] when a member does not
    /// come back the same.
    fn decompose_packed(
        &self,
        file: &std::fs::File,
        layout: &Layout,
        params: &[Params],
        (sha256, id): (Sha256Digest, BlobId),
        what: &str,
    ) -> Result<Result<Ingested, Failed>, StoreError> {
        let chunking = self.0.config.chunking;
        let (h_tx, h_rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let (c_tx, c_rx) = mpsc::sync_channel::<Contents>(64);
        // The gzip members' re-creation streams, one after another.
        let (rec_tx, rec_rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let stopped = || io::Error::other("storing stopped");
        let (members, skeleton, headers, contents, streams) = std::thread::scope(|s| {
            let skeleton = s.spawn(|| self.ingest_substream(layout.skeleton(file), what));
            let streams = s.spawn(|| self.ingest_substream(ChannelReader::new(rec_rx), what));
            let headers = s.spawn(|| self.ingest_substream(ChannelReader::new(h_rx), what));
            let contents = s.spawn(move || {
                self.ingest_parts(
                    |tx, pool| {
                        let files = Rc::new(RefCell::new(VecDeque::new()));
                        let mut cutter = ContentCutter::new(chunking, files.clone());
                        let reader = ContentsReader::new(c_rx, files);
                        feed_with(reader, &mut cutter, &chunking, tx, pool)
                    },
                    false,
                    what,
                    &NoProgress,
                )
            });
            // Each member in turn: decoded on one thread, its raw bytes split into tar headers and contents on
            // another, and re-encoded and compared with the original on a third.
            let mut entries = Vec::with_capacity(layout.members.len());
            let mut failed = None;
            for (i, (m, p)) in layout.members.iter().zip(params).enumerate() {
                if let Params::Deflate { .. } = p {
                    // Decomposed as a gzip blob is, its raw bytes split as they come, its re-encoding compared
                    // with what was read.
                    let (split_tx, split_rx) = mpsc::sync_channel::<Vec<u8>>(4);
                    let (h_tx, c_tx) = (h_tx.clone(), c_tx.clone());
                    let split = s.spawn(move || split_raw(split_rx, h_tx, c_tx));
                    let mut input = HashingReader::new(Range::new(file, m.at, m.len));
                    let d = deflate::decompose(
                        io::BufReader::new(&mut input),
                        move |b: &[u8]| split_tx.send(b.to_vec()).map_err(|_| stopped()),
                        |b: &[u8]| rec_tx.send(b.to_vec()).map_err(|_| stopped()),
                        &Default::default(),
                    );
                    let split = split.join().expect("the tar splitter panicked");
                    let read = input.finish();
                    let why = match (d, split) {
                        (Err(e), _) => format!("decomposing it: {e}"),
                        (_, Err(e)) => format!("splitting its tar: {e}"),
                        (Ok(d), _) if (d.reencoded, d.reencoded_len) != read || read.1 != m.len => {
                            format!(
                                "re-encoding it gave other bytes ({} of {}, model {})",
                                d.reencoded_len, m.len, d.model
                            )
                        }
                        (Ok(d), Ok(headers_len)) => {
                            entries.push(Entry {
                                at: m.at,
                                len: m.len,
                                raw_len: d.raw_len,
                                headers_len,
                                params: Params::Deflate {
                                    recreation_len: d.recreation_len,
                                },
                            });
                            continue;
                        }
                    };
                    failed = Some(Failed {
                        member: i,
                        raw_len: None,
                        reason: format!("member {:?}: {why}", m.name),
                    });
                    break;
                }
                let (split_tx, split_rx) = mpsc::sync_channel::<Vec<u8>>(4);
                let (enc_tx, enc_rx) = mpsc::sync_channel::<Vec<u8>>(4);
                let (h_tx, c_tx) = (h_tx.clone(), c_tx.clone());
                let split = s.spawn(move || split_raw(split_rx, h_tx, c_tx));
                let verify = s.spawn(move || {
                    let mut cmp = xz::Comparing::new(Range::new(file, m.at, m.len));
                    encode(p, ChannelReader::new(enc_rx), &mut cmp)?;
                    if !cmp.at_end()? {
                        return Err(io::Error::other(format!(
                            "re-encoding is shorter than the original ({} of {} bytes)",
                            cmp.matched, m.len
                        )));
                    }
                    Ok(())
                });
                let raw_len = p.decode(io::BufReader::new(Range::new(file, m.at, m.len)), |b| {
                    split_tx.send(b.to_vec()).map_err(|_| stopped())?;
                    // The verifier stopping early is its answer, read below; decoding goes on for the split.
                    let _ = enc_tx.send(b.to_vec());
                    Ok(())
                });
                drop((split_tx, enc_tx));
                let split = split.join().expect("the tar splitter panicked");
                let verified = verify.join().expect("the verifier panicked");
                let why = match (raw_len, split, verified) {
                    (Err(e), ..) => Some((None, format!("decoding it: {e}"))),
                    (_, Err(e), _) => Some((None, format!("splitting its tar: {e}"))),
                    (Ok(n), _, Err(e)) => Some((Some(n), format!("{p}: {e}"))),
                    (Ok(raw_len), Ok(headers_len), Ok(())) => {
                        entries.push(Entry {
                            at: m.at,
                            len: m.len,
                            raw_len,
                            headers_len,
                            params: p.clone(),
                        });
                        None
                    }
                };
                if let Some((raw_len, why)) = why {
                    failed = Some(Failed {
                        member: i,
                        raw_len,
                        reason: format!("member {:?}: {why}", m.name),
                    });
                    break;
                }
            }
            drop((h_tx, c_tx, rec_tx));
            let skeleton = skeleton.join().expect("the skeleton ingest panicked");
            let headers = headers.join().expect("the headers ingest panicked");
            let contents = contents.join().expect("the contents ingest panicked");
            let streams = streams.join().expect("the re-creation ingest panicked");
            (
                failed.map_or(Ok(entries), Err),
                skeleton,
                headers,
                contents,
                streams,
            )
        });
        // Storing failed: that is the error (a member's decoding then only saw its output stop).
        let (mut parts, s_sum, mut stats) = skeleton?;
        let (h_parts, h_sum, h_stats) = headers?;
        let (c_parts, c_sum, c_stats) = contents?;
        let (streams_parts, streams_sum, streams_stats) = streams?;
        let entries = match members {
            Ok(e) => e,
            Err(failed) => return Ok(Err(failed)),
        };
        let headers_len: u64 = entries.iter().map(|e| e.headers_len).sum();
        let raw_len: u64 = entries.iter().map(|e| e.raw_len).sum();
        if s_sum.len != layout.skeleton_len()
            || h_sum.len != headers_len
            || c_sum.len != raw_len - headers_len
        {
            return Err(StoreError::Corrupt(format!(
                "{what}: stored {} + {} + {} raw bytes of {} + {} + {}",
                s_sum.len,
                h_sum.len,
                c_sum.len,
                layout.skeleton_len(),
                headers_len,
                raw_len - headers_len
            )));
        }
        let streams_len: u64 = entries.iter().filter_map(Entry::stream_len).sum();
        if streams_sum.len != streams_len {
            return Err(StoreError::Corrupt(format!(
                "{what}: stored {} bytes of re-creation streams of {streams_len}",
                streams_sum.len
            )));
        }
        let table = write_table(&entries);
        let (rec_parts, _, rec_stats) = self.ingest_substream(&table[..], what)?;
        parts.extend(h_parts);
        parts.extend(c_parts);
        stats += h_stats;
        stats += c_stats;
        let raw_parts = parts.len() as u32;
        parts.extend(rec_parts);
        parts.extend(streams_parts);
        stats += rec_stats;
        stats += streams_stats;
        let recreated: u64 = entries.iter().map(|e| e.len).sum();
        stats.recreated_bytes += recreated;
        // The skeleton is kept: a .deb's ar headers, an rpm's lead and headers, zstd:chunked's table of contents.
        let kept = layout.len - recreated;
        let (recreated_stat, kept_stat) = match layout.kind {
            Kind::Xz => (&mut stats.xz_recreated_bytes, &mut stats.xz_kept_bytes),
            Kind::Bzip2 => (
                &mut stats.bzip2_recreated_bytes,
                &mut stats.bzip2_kept_bytes,
            ),
            Kind::Zstd => (&mut stats.zstd_recreated_bytes, &mut stats.zstd_kept_bytes),
            Kind::Ar => (&mut stats.deb_recreated_bytes, &mut stats.deb_kept_bytes),
            Kind::Rpm => (&mut stats.rpm_recreated_bytes, &mut stats.rpm_kept_bytes),
        };
        *recreated_stat += recreated;
        *kept_stat += kept;
        tracing::debug!(%what, members = entries.len(), raw = raw_len,
            params = %entries.iter().map(|e| e.params.to_string()).collect::<Vec<_>>().join(", "),
            "compressed members decomposed");
        let recipe = Recipe::Gzip {
            size: layout.len,
            raw_size: s_sum.len + raw_len,
            raw_parts,
            parts,
        };
        Ok(Ok(Ingested {
            blob: self.queue_blob(id, sha256, recipe)?,
            stats,
        }))
    }

    /// Write the file a [`RECREATION_PACKED`] or [`RECREATION_PACKED_STREAMS`] recipe (`version`) re-creates
    /// (`rec` holds the re-creation data after its version byte) to `out`, gzip members' pieces run by `spawn`.
    pub(super) fn recreate_packed(
        &self,
        size: u64,
        raw_parts: &[Part],
        version: u8,
        rec: impl Read,
        out: &mut dyn Write,
        spawn: &deflate::Spawn<'_>,
    ) -> Result<(), String> {
        let mut rec = io::BufReader::with_capacity(256 << 10, rec);
        let table_len = if version == RECREATION_PACKED_STREAMS {
            read_varint(&mut rec)?
        } else {
            MAX_TABLE + 1
        };
        let mut table = Vec::new();
        (&mut rec)
            .take(table_len.min(MAX_TABLE + 1))
            .read_to_end(&mut table)
            .map_err(|e| e.to_string())?;
        if table.len() as u64 > MAX_TABLE {
            return Err(format!("the members' table is over {MAX_TABLE} bytes"));
        }
        if version == RECREATION_PACKED_STREAMS && table.len() as u64 != table_len {
            return Err(format!(
                "the members' table is cut short ({} of {table_len} bytes)",
                table.len()
            ));
        }
        let entries = read_table(&table, size)?;
        let headers_len: u64 = entries.iter().map(|e| e.headers_len).sum();
        let raw_len: u64 = entries.iter().map(|e| e.raw_len).sum();
        let skeleton_len = size - entries.iter().map(|e| e.len).sum::<u64>();
        let [skeleton, headers, contents] = split_at_lengths(
            raw_parts,
            [skeleton_len, headers_len, raw_len - headers_len],
        )?;
        let places: Vec<Place> = entries.iter().map(|e| (e.at, e.len)).collect();
        let mut h = PartsStream::new(self, headers.to_vec());
        let mut c = PartsStream::new(self, contents.to_vec());
        packed::join(
            &places,
            PartsStream::new(self, skeleton.to_vec()),
            |i, out| {
                let e = &entries[i];
                let (h, c) = (
                    (&mut h).take(e.headers_len),
                    (&mut c).take(e.raw_len - e.headers_len),
                );
                // The member's tar is joined on a thread of its own, through a small channel, into the encoder.
                let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
                std::thread::scope(|s| {
                    let joiner = s.spawn(move || {
                        let mut w = ChannelWriter::new(tx);
                        let n = crate::tarsplit::join(h, c, &mut w)?;
                        w.flush()?;
                        Ok::<_, io::Error>(n)
                    });
                    let made = match e.params {
                        Params::Deflate { recreation_len } => {
                            let mut stream = (&mut rec).take(recreation_len);
                            let made = deflate::recompose_with(
                                ChannelReader::new(rx),
                                &mut stream,
                                out,
                                spawn,
                            )
                            .map_err(io::Error::other)?;
                            // The next member's stream starts where this one's length says.
                            match io::copy(&mut stream, &mut io::sink())? {
                                0 => Ok(made),
                                n => Err(io::Error::other(format!(
                                    "{n} bytes left over in its re-creation stream"
                                ))),
                            }
                        }
                        _ => encode(&e.params, ChannelReader::new(rx), out),
                    };
                    let joined = joiner.join().expect("the tar joiner panicked");
                    // A joiner's failure (a damaged chunk) is the cause of whatever encoding then saw.
                    let joined =
                        joined.map_err(|e| io::Error::other(format!("joining its tar: {e}")))?;
                    if joined != e.raw_len {
                        return Err(io::Error::other(format!(
                            "its tar joined as {joined} bytes, not {}",
                            e.raw_len
                        )));
                    }
                    made.map(drop)
                })
            },
            out,
        )
        .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A varint read from `r` one byte at a time.
fn read_varint(r: &mut impl Read) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8];
        r.read_exact(&mut b)
            .map_err(|e| format!("the members' table's length: {e}"))?;
        v |= u64::from(b[0] & 0x7f) << shift;
        if b[0] < 0x80 {
            return Ok(v);
        }
    }
    Err("the members' table's length is over 64 bits".into())
}

/// Reads through, hashing what it reads (BLAKE3) and counting it.
struct HashingReader<R> {
    inner: R,
    hash: blake3::Hasher,
    len: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: blake3::Hasher::new(),
            len: 0,
        }
    }

    /// The BLAKE3 and the length of what was read.
    fn finish(&self) -> ([u8; 32], u64) {
        (*self.hash.finalize().as_bytes(), self.len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// `parts` split where the byte lengths `lens` end (each a part boundary; they must add up to all of it).
fn split_at_lengths<const N: usize>(
    parts: &[Part],
    lens: [u64; N],
) -> Result<[&[Part]; N], String> {
    let mut out = [&parts[..0]; N];
    let mut rest = parts;
    for (i, want) in lens.into_iter().enumerate() {
        let mut len = 0u64;
        let mut k = 0;
        while len < want && k < rest.len() {
            len += rest[k].len();
            k += 1;
        }
        if len != want {
            return Err(format!(
                "stream {i} ({want} bytes) does not end at a part boundary of the raw bytes"
            ));
        }
        let (a, b) = rest.split_at(k);
        out[i] = a;
        rest = b;
    }
    if !rest.is_empty() {
        return Err("raw bytes beyond the members' streams".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_members_table_round_trips_and_garbage_is_refused() {
        let params = Params::Xz(xz::Params {
            preset: 6,
            extreme: false,
            dict: 8 << 20,
            check: 4,
            block_size: Some(24 << 20),
        });
        let entries = vec![
            Entry {
                at: 132,
                len: 1000,
                raw_len: 10240,
                headers_len: 2048,
                params,
            },
            Entry {
                at: 1192,
                len: 5000,
                raw_len: 40960,
                headers_len: 4096,
                params: Params::Bzip2 { level: 9 },
            },
        ];
        let t = write_table(&entries);
        assert_eq!(t[0], RECREATION_PACKED);
        assert_eq!(read_table(&t[1..], 6192).unwrap(), entries);
        // Members beyond the file, out of order, or cut short are refused.
        assert!(read_table(&t[1..], 6191).is_err());
        for cut in 1..t.len() - 1 {
            assert!(read_table(&t[1..cut], 6192).is_err(), "cut at {cut}");
        }
        let swapped = write_table(&[entries[1].clone(), entries[0].clone()]);
        assert!(read_table(&swapped[1..], 6192).is_err());
        // With a gzip member, the table's length follows the version byte (its re-creation stream follows the
        // table).
        let mut with_gzip = entries.clone();
        with_gzip.push(Entry {
            at: 6192,
            len: 800,
            raw_len: 4096,
            headers_len: 512,
            params: Params::Deflate { recreation_len: 77 },
        });
        let t = write_table(&with_gzip);
        assert_eq!(t[0], RECREATION_PACKED_STREAMS);
        let mut rest = &t[1..];
        let n = read_varint(&mut rest).unwrap();
        assert_eq!(n, rest.len() as u64);
        assert_eq!(read_table(rest, 6992).unwrap(), with_gzip);
    }
}
