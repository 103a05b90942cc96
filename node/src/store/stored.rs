//! Chunks as stored, for peers: records read from packs with one read per run of records that lie next to each
//! other (a release's chunks are mostly appended in the order peers ask for them), their zstd payloads left as
//! they are — the peer decompresses and verifies every one.

use super::packs::{self, Location, HEADER_LEN};
use super::{Store, StoreError};
use ferry_protocol::ChunkId;
use std::ops::Range;

/// The records of a group of chunks: `buf` holds their payloads, `chunks[i]` says where chunk `i`'s is.
#[derive(Default)]
pub struct StoredGroup {
    /// Payloads (and the pack headers before them, unused).
    pub buf: Vec<u8>,
    /// Per chunk asked for: its location and its payload's range in `buf`, or `None` if not held (or unreadable).
    pub chunks: Vec<Option<(Location, Range<usize>)>>,
}

impl Store {
    /// The stored records of `ids`, in order. A chunk this node cannot read (a damaged pack, a failing index)
    /// is logged and answered as not held, so the asker goes elsewhere for it while the rest still go out.
    pub fn read_chunks_stored(&self, ids: &[ChunkId]) -> StoredGroup {
        let locs: Vec<Option<Location>> = ids
            .iter()
            .map(|id| {
                self.chunk_location(id).unwrap_or_else(|e| {
                    unreadable(id, &e);
                    None
                })
            })
            .collect();
        // One allocation for the group, sized for every record it may hold: grown by `resize`, each run would
        // move it and touch fresh pages (see `packs::zeroed`).
        let most: u64 = locs
            .iter()
            .flatten()
            .map(|l| packs::HEADER_LEN + u64::from(l.comp_len))
            .sum();
        let mut out = StoredGroup {
            buf: Vec::with_capacity(most as usize),
            chunks: Vec::with_capacity(ids.len()),
        };
        let mut i = 0;
        while i < ids.len() {
            let Some(first) = locs[i] else {
                out.chunks.push(None);
                i += 1;
                continue;
            };
            // The run of records from `first` on that follow each other in its pack.
            let mut end = i + 1;
            while let Some(Some(next)) = locs.get(end) {
                let prev = locs[end - 1].expect("in the run");
                if next.pack != first.pack || next.offset != prev.end() {
                    break;
                }
                end += 1;
            }
            let last = locs[end - 1].expect("in the run");
            if !self.read_run(&ids[i..end], &locs[i..end], first, last.end(), &mut out) {
                // One at a time, with the store's retry for a chunk moved by compaction meanwhile.
                for id in &ids[i..end] {
                    out.chunks.push(self.read_one(id, &mut out.buf));
                }
            }
            i = end;
        }
        out
    }

    /// Read the records `first.offset..end` of one pack into `out` with one read, checking each header against
    /// the index; `false` (and `out` as it was) if the read fails or any header does not match.
    fn read_run(
        &self,
        ids: &[ChunkId],
        locs: &[Option<Location>],
        first: Location,
        end: u64,
        out: &mut StoredGroup,
    ) -> bool {
        use std::os::unix::fs::FileExt;
        let Ok(file) = self.pack_file(first.pack) else {
            return false;
        };
        let start = out.buf.len();
        out.buf.resize(start + (end - first.offset) as usize, 0);
        if file
            .read_exact_at(&mut out.buf[start..], first.offset)
            .is_err()
        {
            out.buf.truncate(start);
            return false;
        }
        let mut ranges = Vec::with_capacity(ids.len());
        for (id, loc) in ids.iter().zip(locs) {
            let loc = loc.expect("a run holds located chunks");
            let at = start + (loc.offset - first.offset) as usize;
            let h: &[u8; HEADER_LEN as usize] = out.buf[at..at + HEADER_LEN as usize]
                .try_into()
                .expect("header length");
            match packs::parse_header(h) {
                Some(h)
                    if h.id == *id && h.comp_len == loc.comp_len && h.raw_len == loc.raw_len =>
                {
                    let body = at + HEADER_LEN as usize;
                    ranges.push(Some((loc, body..body + loc.comp_len as usize)));
                }
                _ => {
                    out.buf.truncate(start);
                    return false;
                }
            }
        }
        out.chunks.extend(ranges);
        true
    }

    /// One chunk's record appended to `buf`, or `None` (logged) if it is not held or cannot be read.
    fn read_one(&self, id: &ChunkId, buf: &mut Vec<u8>) -> Option<(Location, Range<usize>)> {
        let (loc, record) = self.read_chunk_stored(id).unwrap_or_else(|e| {
            unreadable(id, &e);
            None
        })?;
        let body = buf.len();
        buf.extend_from_slice(&record[HEADER_LEN as usize..]);
        Some((loc, body..buf.len()))
    }
}

fn unreadable(id: &ChunkId, e: &StoreError) {
    tracing::error!(chunk = %id, error = %e, "cannot read a chunk a peer asked for");
}
