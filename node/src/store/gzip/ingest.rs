//! Storing a gzip blob as it is read: decomposed on the way into raw bytes and a re-creation stream, both
//! chunked and stored by the ingest pipeline at the same time, in memory that does not grow with the blob.

use super::{BlobOptions, RECREATION_STREAM};
use crate::chunker::ContentCutter;
use crate::progress::{NoProgress, Progress};
use crate::store::stream::ChannelReader;
use crate::store::writer::{check_expected, feed_with, Ingested};
use crate::store::{Store, StoreError};
use crate::tarsplit;
use ferry_formats::deflate::stream::{self, Options};
use ferry_protocol::{BlobId, Hash32, Recipe, Sha256Digest};
use sha2::Digest;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Seek, Write};
use std::rc::Rc;
use std::sync::mpsc;

/// The input is read and handed on in buffers of this size.
const READ_BUF: usize = 1 << 20;

/// What reading the input found.
struct Input {
    sha256: Sha256Digest,
    id: BlobId,
    size: u64,
    /// Whether all of it was read (not when the decomposer stopped early and the blob can be read again).
    whole: bool,
}

impl Store {
    /// A gzip blob (`src` starts with the gzip magic): decomposed and stored as raw bytes plus re-creation
    /// stream, or, when that cannot be done exactly, stored as it is.
    pub(in crate::store) fn ingest_gzip<R: Read + Send>(
        &self,
        src: R,
        opts: &BlobOptions<'_, '_>,
        what: &str,
        expect: Option<(Sha256Digest, Option<u64>)>,
        progress: &dyn Progress,
    ) -> Result<Ingested, StoreError> {
        let params = self.0.config.chunking;
        // Without a way to read the blob again, its bytes are kept aside as they are read, in case they must be
        // stored as they are (an unnamed file: nothing is left behind by a crash).
        let mut spool = match opts.reopen {
            Some(_) => None,
            None => {
                let dir = self.root().join("tmp");
                std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
                Some(tempfile::tempfile_in(&dir).map_err(StoreError::io(&dir))?)
            }
        };
        let hint = opts
            .hint
            .and_then(|h| h.lock().expect("hint poisoned").clone());
        let dopts = Options { hint, model: None };
        let (in_tx, in_rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let (raw_tx, raw_rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let (h_tx, h_rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let (c_tx, c_rx) = mpsc::sync_channel::<Contents>(64);
        let (rec_tx, rec_rx) = mpsc::sync_channel::<Vec<u8>>(4);
        rec_tx
            .send(vec![RECREATION_STREAM])
            .expect("the receiver is here");
        let keep_reading = spool.is_some();
        let spooled = spool.as_mut();
        let stopped = || io::Error::other("storing stopped");
        let (decomposed, input, split, headers, contents, rec) = std::thread::scope(|s| {
            let reader = s.spawn(move || read_input(src, in_tx, spooled, keep_reading, progress));
            // The raw bytes are split into their tar headers and contents (the whole stream is headers when it
            // is not a tar), each stored on its own.
            let split = s.spawn(move || split_raw(raw_rx, h_tx, c_tx));
            let headers = s.spawn(|| self.ingest_substream(ChannelReader::new(h_rx), what));
            let contents = s.spawn(|| {
                self.ingest_parts(
                    |tx, pool| {
                        let files = Rc::new(RefCell::new(VecDeque::new()));
                        let mut cutter = ContentCutter::new(params, files.clone());
                        let reader = ContentsReader::new(c_rx, files);
                        feed_with(reader, &mut cutter, &params, tx, pool)
                    },
                    false,
                    what,
                    &NoProgress,
                )
            });
            let rec = s.spawn(|| self.ingest_substream(ChannelReader::new(rec_rx), what));
            let d = stream::decompose(
                ChannelReader::new(in_rx),
                move |b: &[u8]| raw_tx.send(b.to_vec()).map_err(|_| stopped()),
                |b: &[u8]| rec_tx.send(b.to_vec()).map_err(|_| stopped()),
                &dopts,
            );
            let input = reader.join().expect("the gzip reader panicked");
            let split = split.join().expect("the tar splitter panicked");
            // The re-creation data ends with the length of the headers stream, which starts the raw parts.
            if let Ok(h) = &split {
                let _ = rec_tx.send(h.to_le_bytes().to_vec());
            }
            drop(rec_tx);
            let headers = headers.join().expect("the headers ingest panicked");
            let contents = contents.join().expect("the contents ingest panicked");
            let rec = rec.join().expect("the re-creation ingest panicked");
            (d, input, split, headers, contents, rec)
        });
        let input = input.map_err(|source| StoreError::Source {
            what: what.to_string(),
            source,
        })?;
        if input.whole {
            check_expected(what, expect, input.sha256, input.size)?;
        }
        // Storing failed: that is the error (the decomposer then only saw its output stop).
        let (mut parts, h_sum, mut stats) = headers?;
        let (c_parts, c_sum, c_stats) = contents?;
        let (rec_parts, rec_sum, rec_stats) = rec?;
        let headers_len =
            split.map_err(|e| StoreError::Corrupt(format!("{what}: splitting its tar: {e}")))?;
        parts.extend(c_parts);
        stats += c_stats;
        let why = match &decomposed {
            Err(e) => Some(e.to_string()),
            Ok(d) if !input.whole => Some(format!(
                "the decomposer stopped before the input's end ({} model)",
                d.model
            )),
            Ok(d) if d.reencoded != input.id.0 .0 || d.reencoded_len != input.size => {
                Some(format!(
                    "re-encoding what would be stored gave other bytes ({} of {}, model {})",
                    d.reencoded_len, input.size, d.model
                ))
            }
            Ok(_) => None,
        };
        if let Some(reason) = why {
            tracing::info!(%what, %reason, "gzip blob stored as it is");
            let mut ingested = match (opts.reopen, spool) {
                (Some(reopen), _) => {
                    let again = reopen().map_err(|source| StoreError::Source {
                        what: what.to_string(),
                        source,
                    })?;
                    self.ingest_stream(again, what, expect, progress)?
                }
                (None, Some(mut f)) => {
                    f.rewind().map_err(|source| StoreError::Source {
                        what: format!("{what} (kept aside)"),
                        source,
                    })?;
                    self.ingest_stream(
                        io::BufReader::with_capacity(READ_BUF, f),
                        what,
                        expect,
                        &NoProgress,
                    )?
                }
                (None, None) => unreachable!("a blob that cannot be read again is kept aside"),
            };
            ingested.stats.gzip_kept_bytes += ingested.blob.size;
            return Ok(ingested);
        }
        let d = decomposed.expect("checked above");
        if h_sum.len != headers_len
            || h_sum.len + c_sum.len != d.raw_len
            || rec_sum.len != d.recreation_len + 1 + 8
        {
            return Err(StoreError::Corrupt(format!(
                "{what}: stored {} + {} raw and {} re-creation bytes of {} and {}",
                h_sum.len,
                c_sum.len,
                rec_sum.len,
                d.raw_len,
                d.recreation_len + 1 + 8
            )));
        }
        if let Some(h) = opts.hint {
            *h.lock().expect("hint poisoned") = Some(d.model.clone());
        }
        let raw_parts = parts.len() as u32;
        parts.extend(rec_parts);
        stats += rec_stats;
        stats.recreated_bytes += input.size;
        tracing::debug!(%what, model = %d.model, raw = d.raw_len, recreation = d.recreation_len,
            misses = d.misses, decisions = d.decisions, "gzip blob decomposed");
        let recipe = Recipe::Gzip {
            size: input.size,
            raw_size: d.raw_len,
            raw_parts,
            parts,
        };
        Ok(Ingested {
            blob: self.queue_blob(input.id, input.sha256, recipe)?,
            stats,
        })
    }
}

/// One message of the contents stream: bytes, or a file whose bytes start next.
pub(super) enum Contents {
    Bytes(Vec<u8>),
    File(tarsplit::File),
}

/// Sends the two streams of a split on, in buffers.
struct SplitTx {
    h_tx: mpsc::SyncSender<Vec<u8>>,
    c_tx: mpsc::SyncSender<Contents>,
    h_buf: Vec<u8>,
    h_len: u64,
}

impl tarsplit::Streams for SplitTx {
    fn headers(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.h_len += bytes.len() as u64;
        self.h_buf.extend_from_slice(bytes);
        if self.h_buf.len() >= READ_BUF {
            let b = std::mem::take(&mut self.h_buf);
            self.h_tx
                .send(b)
                .map_err(|_| io::Error::other("storing headers stopped"))?;
        }
        Ok(())
    }
    fn contents(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.c_tx
            .send(Contents::Bytes(bytes.to_vec()))
            .map_err(|_| io::Error::other("storing contents stopped"))
    }
    fn file(&mut self, file: tarsplit::File) -> io::Result<()> {
        self.c_tx
            .send(Contents::File(file))
            .map_err(|_| io::Error::other("storing contents stopped"))
    }
}

/// Split the raw bytes from `raw` into their tar headers (to `h_tx`) and contents (to `c_tx`); the headers
/// stream's length.
pub(super) fn split_raw(
    raw: mpsc::Receiver<Vec<u8>>,
    h_tx: mpsc::SyncSender<Vec<u8>>,
    c_tx: mpsc::SyncSender<Contents>,
) -> io::Result<u64> {
    let mut sp = tarsplit::Splitter::new();
    let mut tx = SplitTx {
        h_tx,
        c_tx,
        h_buf: Vec::new(),
        h_len: 0,
    };
    for b in raw {
        sp.push(&b, &mut tx)?;
    }
    sp.finish(&mut tx)?;
    if !tx.h_buf.is_empty() {
        let b = std::mem::take(&mut tx.h_buf);
        tx.h_tx
            .send(b)
            .map_err(|_| io::Error::other("storing headers stopped"))?;
    }
    Ok(tx.h_len)
}

/// The contents stream as a reader; the files it announces go to the cutter's queue as they are read.
pub(super) struct ContentsReader {
    rx: mpsc::Receiver<Contents>,
    cur: Vec<u8>,
    pos: usize,
    files: Rc<RefCell<VecDeque<tarsplit::File>>>,
}

impl ContentsReader {
    pub(super) fn new(
        rx: mpsc::Receiver<Contents>,
        files: Rc<RefCell<VecDeque<tarsplit::File>>>,
    ) -> Self {
        ContentsReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            files,
        }
    }
}

impl Read for ContentsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Contents::Bytes(b)) => {
                    self.cur = b;
                    self.pos = 0;
                }
                Ok(Contents::File(f)) => self.files.borrow_mut().push_back(f),
                Err(_) => return Ok(0),
            }
        }
        let n = (self.cur.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Read `src` to its end in buffers, hashing it, keeping it in `spool` if given, and handing it to `tx` while
/// the decomposer takes it. When the decomposer stops early, reading goes on only if `to_end` (to keep the
/// whole blob aside).
fn read_input<R: Read>(
    mut src: R,
    tx: mpsc::SyncSender<Vec<u8>>,
    mut spool: Option<&mut std::fs::File>,
    to_end: bool,
    progress: &dyn Progress,
) -> io::Result<Input> {
    let mut sha = sha2::Sha256::new();
    let mut blake = blake3::Hasher::new();
    let mut size = 0u64;
    let mut sending = true;
    loop {
        let mut buf = vec![0u8; READ_BUF];
        let mut n = 0;
        while n < buf.len() {
            match src.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if n == 0 {
            break;
        }
        buf.truncate(n);
        let (_, ()) = rayon::join(
            || {
                sha.update(&buf);
            },
            || {
                blake.update(&buf);
            },
        );
        size += n as u64;
        progress.advance(n as u64);
        if let Some(f) = spool.as_deref_mut() {
            f.write_all(&buf)?;
        }
        if sending && tx.send(buf).is_err() {
            sending = false;
            if !to_end {
                return Ok(Input {
                    sha256: Sha256Digest(Hash32(sha.finalize().into())),
                    id: BlobId::from_bytes(*blake.finalize().as_bytes()),
                    size,
                    whole: false,
                });
            }
        }
    }
    Ok(Input {
        sha256: Sha256Digest(Hash32(sha.finalize().into())),
        id: BlobId::from_bytes(*blake.finalize().as_bytes()),
        size,
        whole: true,
    })
}
