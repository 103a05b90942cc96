//! Storing a zip (a wheel, a jar, any zip with deflated members) as its skeleton, its members' contents and
//! their re-creation stream ([`ferry_formats::deflate::zip`]), under a [`Recipe::Gzip`] whose re-creation data starts
//! with [`RECREATION_ZIP`]:
//!
//! ```text
//! raw parts:        skeleton stream, then the members' contents (cut along members)
//! re-creation data: u8 3  member table  deflate re-creation stream  u64 skeleton length (little-endian)
//! ```
//! The skeleton length at the end splits the raw parts, as the tar headers' length does for a gzip tar.

use super::{BlobOptions, Spooled, RECREATION_ZIP};
use crate::chunker::ContentCutter;
use crate::progress::{NoProgress, Progress};
use crate::store::stream::ChannelReader;
use crate::store::writer::{feed_with, Ingested};
use crate::store::{Store, StoreError};
use crate::tarsplit;
use ferry_formats::deflate::stream::{self, Options};
use ferry_formats::deflate::zip::Layout;
use ferry_protocol::{BlobId, Recipe, Sha256Digest};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::rc::Rc;
use std::sync::mpsc;

impl Store {
    /// A zip blob (`src` starts with a local file header): kept aside in an unnamed file (its central directory
    /// is at its end), then decomposed and stored as skeleton, contents and re-creation data, or stored as it
    /// is when that cannot be done exactly.
    pub(in crate::store) fn ingest_zip<R: Read + Send>(
        &self,
        mut src: R,
        opts: &BlobOptions<'_, '_>,
        what: &str,
        expect: Option<(Sha256Digest, Option<u64>)>,
        progress: &dyn Progress,
    ) -> Result<Ingested, StoreError> {
        let mut sp = self.spool_blob(&mut src, what, expect, progress)?;
        let as_it_is = |sp: &mut Spooled, kept: bool| -> Result<Ingested, StoreError> {
            let mut ingested = self.ingest_spooled(sp, what, expect)?;
            if kept {
                ingested.stats.zip_kept_bytes += ingested.blob.size;
            }
            Ok(ingested)
        };
        let layout = match Layout::read(&sp.file, sp.size) {
            Ok(l) if !l.members.is_empty() => l,
            Ok(_) => return as_it_is(&mut sp, false),
            Err(e) => {
                tracing::info!(%what, reason = %e, "zip blob stored as it is");
                return as_it_is(&mut sp, true);
            }
        };
        match self.decompose_zip(&sp.file, &layout, (sp.sha256, sp.id), opts, what) {
            Ok(Some(ingested)) => Ok(ingested),
            Ok(None) => as_it_is(&mut sp, true),
            Err(e) => Err(e),
        }
    }

    /// Store the zip `file` by its `layout`; `None` when its members cannot be re-created exactly.
    fn decompose_zip(
        &self,
        file: &std::fs::File,
        layout: &Layout,
        (sha256, id): (Sha256Digest, BlobId),
        opts: &BlobOptions<'_, '_>,
        what: &str,
    ) -> Result<Option<Ingested>, StoreError> {
        let params = self.0.config.chunking;
        let hint = opts
            .hint
            .and_then(|h| h.lock().expect("hint poisoned").clone());
        let dopts = Options { hint, model: None };
        // Members' contents, one after another: cut along them like a tar's files (an empty one has no bytes
        // to cut).
        let mut files = Vec::with_capacity(layout.members.len());
        let mut at = 0;
        for m in layout.members.iter().filter(|m| m.size > 0) {
            files.push(tarsplit::File {
                at,
                len: m.size,
                name: m.name,
            });
            at = at.saturating_add(m.size);
        }
        let table = layout.table();
        let (raw_tx, raw_rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let (rec_tx, rec_rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let mut head = vec![RECREATION_ZIP];
        head.extend_from_slice(&table);
        rec_tx.send(head).expect("the receiver is here");
        let stopped = || io::Error::other("storing stopped");
        let mut gzip = layout.gzip(file);
        let (decomposed, skeleton, contents, rec) = std::thread::scope(|s| {
            let skeleton = s.spawn(|| self.ingest_substream(layout.skeleton(file), what));
            let contents = s.spawn(move || {
                self.ingest_parts(
                    |tx, pool| {
                        let files = Rc::new(RefCell::new(VecDeque::from(files)));
                        let mut cutter = ContentCutter::new(params, files);
                        feed_with(ChannelReader::new(raw_rx), &mut cutter, &params, tx, pool)
                    },
                    false,
                    what,
                    &NoProgress,
                )
            });
            let rec = s.spawn(|| self.ingest_substream(ChannelReader::new(rec_rx), what));
            let d = stream::decompose(
                &mut gzip,
                move |b: &[u8]| raw_tx.send(b.to_vec()).map_err(|_| stopped()),
                |b: &[u8]| rec_tx.send(b.to_vec()).map_err(|_| stopped()),
                &dopts,
            );
            let _ = rec_tx.send(layout.skeleton_len().to_le_bytes().to_vec());
            drop(rec_tx);
            let skeleton = skeleton.join().expect("the skeleton ingest panicked");
            let contents = contents.join().expect("the contents ingest panicked");
            let rec = rec.join().expect("the re-creation ingest panicked");
            (d, skeleton, contents, rec)
        });
        // Storing failed: that is the error (the decomposer then only saw its output stop).
        let (mut parts, s_sum, mut stats) = skeleton?;
        let (c_parts, c_sum, c_stats) = contents?;
        let (rec_parts, rec_sum, rec_stats) = rec?;
        let (digest, len) = gzip.digest();
        let why = match &decomposed {
            Err(e) => Some(e.to_string()),
            Ok(d) if d.reencoded != digest || d.reencoded_len != len => Some(format!(
                "re-encoding its members gave other bytes ({} of {len}, model {})",
                d.reencoded_len, d.model
            )),
            Ok(d) if d.raw_len != layout.raw_len() => Some(format!(
                "its members hold {} bytes, the central directory says {}",
                d.raw_len,
                layout.raw_len()
            )),
            Ok(_) => None,
        };
        if let Some(reason) = why {
            tracing::info!(%what, %reason, "zip blob stored as it is");
            return Ok(None);
        }
        let d = decomposed.expect("checked above");
        if s_sum.len != layout.skeleton_len()
            || c_sum.len != d.raw_len
            || rec_sum.len != 1 + table.len() as u64 + d.recreation_len + 8
        {
            return Err(StoreError::Corrupt(format!(
                "{what}: stored {} + {} raw and {} re-creation bytes of {} + {} and {}",
                s_sum.len,
                c_sum.len,
                rec_sum.len,
                layout.skeleton_len(),
                d.raw_len,
                1 + table.len() as u64 + d.recreation_len + 8
            )));
        }
        if let Some(h) = opts.hint {
            *h.lock().expect("hint poisoned") = Some(d.model.clone());
        }
        parts.extend(c_parts);
        stats += c_stats;
        let raw_parts = parts.len() as u32;
        parts.extend(rec_parts);
        stats += rec_stats;
        stats.recreated_bytes += layout.len;
        stats.zip_recreated_bytes += layout.len;
        tracing::debug!(%what, model = %d.model, members = layout.members.len(), raw = d.raw_len,
            recreation = d.recreation_len, misses = d.misses, "zip blob decomposed");
        let recipe = Recipe::Gzip {
            size: layout.len,
            raw_size: s_sum.len + d.raw_len,
            raw_parts,
            parts,
        };
        Ok(Some(Ingested {
            blob: self.queue_blob(id, sha256, recipe)?,
            stats,
        }))
    }
}
