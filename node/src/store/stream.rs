//! Byte streams between the store's threads: a recipe's parts read ahead on the pool ([`PartsStream`]), and
//! buffers passed through a bounded channel read as a stream ([`ChannelReader`]).

use super::{Store, StoreError};
use ferry_protocol::Part;
use rayon::prelude::*;
use std::io::{self, Read};
use std::sync::mpsc;

/// Chunks decoded side by side per window (about 1 MiB of 64 KiB chunks).
const WINDOW: usize = 16;
/// Windows decoded ahead of the reader.
const AHEAD: usize = 2;

/// A piece of a parts stream: a decoded chunk, or a run of zeros.
enum Piece {
    Bytes(Vec<u8>),
    Zeros(u64),
}

/// The bytes of a list of parts, in order. A thread of its own walks the list a window of chunks at a time,
/// reading, decompressing and verifying each window's chunks side by side on the pool, and keeps at most
/// [`AHEAD`] windows ready; dropping the reader stops it.
pub struct PartsStream {
    rx: mpsc::Receiver<Result<Vec<Piece>, StoreError>>,
    window: std::vec::IntoIter<Piece>,
    cur: Vec<u8>,
    pos: usize,
    zeros: u64,
}

impl PartsStream {
    /// Read `parts` of `store`.
    pub fn new(store: &Store, parts: Vec<Part>) -> PartsStream {
        let (tx, rx) = mpsc::sync_channel(AHEAD);
        let store = store.clone();
        std::thread::Builder::new()
            .name("ferry-parts".into())
            .spawn(move || {
                for window in parts.chunks(WINDOW) {
                    let decoded: Result<Vec<Piece>, StoreError> = window
                        .par_iter()
                        .map(|p| match *p {
                            Part::Chunk { id, len } => {
                                let data = store.read_chunk(&id)?;
                                if data.len() != len as usize {
                                    return Err(StoreError::Corrupt(format!(
                                        "chunk {id} is {} bytes, its recipe says {len}",
                                        data.len()
                                    )));
                                }
                                Ok(Piece::Bytes(data))
                            }
                            Part::Zero { len } => Ok(Piece::Zeros(len)),
                        })
                        .collect();
                    let failed = decoded.is_err();
                    if tx.send(decoded).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawning a thread");
        PartsStream {
            rx,
            window: Vec::new().into_iter(),
            cur: Vec::new(),
            pos: 0,
            zeros: 0,
        }
    }

    /// Make bytes available; false at the end.
    fn fill(&mut self) -> io::Result<bool> {
        while self.pos == self.cur.len() && self.zeros == 0 {
            match self.window.next() {
                Some(Piece::Bytes(b)) => {
                    self.cur = b;
                    self.pos = 0;
                }
                Some(Piece::Zeros(n)) => self.zeros = n,
                None => match self.rx.recv() {
                    Ok(Ok(w)) => self.window = w.into_iter(),
                    Ok(Err(e)) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                    Err(_) => return Ok(false),
                },
            }
        }
        Ok(true)
    }
}

impl Read for PartsStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || !self.fill()? {
            return Ok(0);
        }
        if self.zeros > 0 {
            let n = self.zeros.min(out.len() as u64) as usize;
            out[..n].fill(0);
            self.zeros -= n as u64;
            return Ok(n);
        }
        let n = (self.cur.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads the buffers sent through a channel as one stream; it ends when the sender is dropped.
pub struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.cur = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = (self.cur.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes buffers into a channel (for a [`ChannelReader`] on another thread); the reader's end going away is
/// an error.
pub struct ChannelWriter {
    tx: mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::SyncSender<Vec<u8>>) -> Self {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHANNEL_BUF),
        }
    }
}

/// Bytes a [`ChannelWriter`] gathers before it sends them.
const CHANNEL_BUF: usize = 256 << 10;

impl io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHANNEL_BUF {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let b = std::mem::replace(&mut self.buf, Vec::with_capacity(CHANNEL_BUF));
            self.tx
                .send(b)
                .map_err(|_| io::Error::other("the reader went away"))?;
        }
        Ok(())
    }
}
