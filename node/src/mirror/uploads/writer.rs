//! The blocking thread that appends one chunk to a session's spool file, feeding its SHA-256, and at the end
//! commits it to the session or cuts the file back to where the chunk began. It does the bookkeeping itself, so
//! a request dropped midway leaves the session as it stood.

use super::spool::{free_bytes, Reservation, Spool};
use super::Claim;
use axum::body::Bytes;
use sha2::{Digest, Sha256};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Bytes a chunk's writer appends between two looks at the filesystem's free space.
const FREE_CHECK_EVERY: u64 = 64 << 20;

/// What the connection hands the writing thread.
pub(super) enum Piece {
    Data(Bytes, Reservation),
    /// The body is whole: commit it.
    End,
}

/// Why the writing thread did not commit a chunk.
pub(super) enum Stop {
    /// Its bytes stopped coming before the end (the request gave up; it knows why).
    Aborted,
    /// The session ended meanwhile.
    Closed,
    /// The filesystem fell below the free-space reserve; its free bytes.
    NoRoom(u64),
    Io(std::io::Error),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Io(e)
    }
}

/// Appends one chunk on a blocking thread, and commits it or cuts the file back.
pub(super) struct Writer {
    pub claim: Claim,
    pub spool: Arc<Spool>,
    /// Where free space is measured.
    pub dir: PathBuf,
    /// The free space to keep (0: not measured).
    pub min_free: u64,
}

impl Writer {
    pub(super) fn run(self, mut rx: mpsc::Receiver<Piece>) -> Result<u64, Stop> {
        let mut held = self.spool.adopt(0);
        let s = &self.claim.session;
        let result = match self.write(&mut rx, &mut held) {
            Ok((sha, n)) => {
                let mut st = s.state();
                if st.closed {
                    Err(Stop::Closed)
                } else {
                    st.size = self.claim.start + n;
                    st.sha = sha;
                    held.keep();
                    Ok(n)
                }
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Cut the file back to where the chunk began (gone already if the session ended).
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(&s.path)
                .and_then(|f| f.set_len(self.claim.start));
        }
        result
    }

    /// Append what `rx` yields, counting its bytes in `held`; the new hash and the bytes appended.
    fn write(
        &self,
        rx: &mut mpsc::Receiver<Piece>,
        held: &mut Reservation,
    ) -> Result<(Sha256, u64), Stop> {
        let start = self.claim.start;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.claim.session.path)?;
        f.set_len(start)?;
        f.seek(SeekFrom::Start(start))?;
        let mut f = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut sha = self.claim.sha.clone();
        let (mut n, mut unchecked) = (0u64, 0u64);
        loop {
            match rx.blocking_recv() {
                None => return Err(Stop::Aborted),
                Some(Piece::End) => break,
                Some(Piece::Data(b, r)) => {
                    held.merge(r);
                    f.write_all(&b)?;
                    sha.update(&b);
                    n += b.len() as u64;
                    unchecked += b.len() as u64;
                    if self.min_free > 0 && unchecked >= FREE_CHECK_EVERY {
                        unchecked = 0;
                        let free = free_bytes(&self.dir)?;
                        if free < self.min_free {
                            return Err(Stop::NoRoom(free));
                        }
                    }
                }
            }
        }
        f.flush()?;
        Ok((sha, n))
    }
}
