//! Reading and writing the data plane's frames on QUIC streams (the format is `ferry_protocol::sync`).

use ferry_protocol::sync::{ChunkRecordHeader, MAX_FRAME, RECORD_HEADER_LEN};
use ferry_protocol::Object;

/// Why a stream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The stream or connection broke.
    #[error("{0}")]
    Stream(String),
    /// The peer sent something that is not a valid frame (an answer, or a request: then a protocol violation).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// This node could not store what arrived (its disk is full): no other peer would do better, so the sync
    /// stops with this error.
    #[error("storing chunks: {0}")]
    Local(crate::StoreError),
}

impl From<quinn::ReadExactError> for WireError {
    fn from(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => c.into(),
            e => WireError::Stream(e.to_string()),
        }
    }
}

impl From<quinn::WriteError> for WireError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => c.into(),
            e => WireError::Stream(e.to_string()),
        }
    }
}

impl From<quinn::ConnectionError> for WireError {
    fn from(e: quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::ApplicationClosed(c)
                if c.error_code == super::data::NOT_ALLOWED.into() =>
            {
                WireError::Stream("the peer refused this node: not on its allow-list".into())
            }
            e => WireError::Stream(e.to_string()),
        }
    }
}

/// Write one object as a length-prefixed frame.
pub async fn write_frame<T: Object>(
    send: &mut quinn::SendStream,
    obj: &T,
) -> Result<(), WireError> {
    let body = obj.encode();
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    send.write_all(&buf).await?;
    Ok(())
}

/// Read one length-prefixed frame holding a `T`.
pub async fn read_frame<T: Object>(recv: &mut quinn::RecvStream) -> Result<T, WireError> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await?;
    let body = read_bytes(recv, frame_len(len)?).await?;
    decode_frame(&body)
}

/// The next `len` bytes of `recv`, copied from quinn's buffers as they come into a buffer of that capacity:
/// not `vec![0; len]` and `read_exact`, for the cost `store::packs::zeroed` explains.
async fn read_bytes(recv: &mut quinn::RecvStream, len: usize) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        match recv.read_chunk(len - body.len(), true).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(WireError::Stream(format!(
                    "the stream ended {} bytes into {len}",
                    body.len()
                )))
            }
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(body)
}

/// Read one length-prefixed request holding a `T` from a peer that may be hostile: a prefix past `max` is refused
/// before another byte is read, and the body is held only as it arrives, so a prefix that promises more than is
/// sent costs what was sent. A stream that ends inside the frame, goes `idle` with the frame unfinished, or
/// whose body does not decode, is [`WireError::Malformed`] (a protocol violation); a stream reset or a
/// connection lost are stream errors.
pub async fn read_request<T: Object>(
    recv: &mut quinn::RecvStream,
    max: u32,
    idle: std::time::Duration,
) -> Result<T, WireError> {
    let stalled = |at: usize| {
        WireError::Malformed(format!(
            "nothing more for {} s, {at} bytes into a request",
            idle.as_secs()
        ))
    };
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        match tokio::time::timeout(idle, recv.read(&mut prefix[got..])).await {
            Err(_) => return Err(stalled(got)),
            Ok(Ok(Some(n))) => got += n,
            Ok(Ok(None)) => {
                return Err(WireError::Malformed(format!(
                    "the stream ended {got} bytes into a request's 4-byte length prefix"
                )))
            }
            Ok(Err(e)) => return Err(read_error(e)),
        }
    }
    let len = u32::from_le_bytes(prefix);
    if len > max {
        return Err(WireError::Malformed(format!(
            "a request frame of {len} bytes, past the {} limit",
            if max.is_multiple_of(1 << 20) {
                format!("{} MiB", max >> 20)
            } else {
                format!("{max}-byte")
            }
        )));
    }
    let len = len as usize;
    let mut body = Vec::new();
    while body.len() < len {
        match tokio::time::timeout(idle, recv.read_chunk(len - body.len(), true)).await {
            Err(_) => return Err(stalled(4 + body.len())),
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk.bytes),
            Ok(Ok(None)) => {
                return Err(WireError::Malformed(format!(
                    "the stream ended {} bytes into a request frame of {len} bytes",
                    body.len()
                )))
            }
            Ok(Err(e)) => return Err(read_error(e)),
        }
    }
    T::decode(&body).map_err(|e| {
        WireError::Malformed(format!(
            "a request frame of {len} bytes that is no {}: {e}",
            T::NAME
        ))
    })
}

fn read_error(e: quinn::ReadError) -> WireError {
    match e {
        quinn::ReadError::ConnectionLost(c) => c.into(),
        e => WireError::Stream(e.to_string()),
    }
}

/// The body length a frame's prefix announces, refused past [`MAX_FRAME`].
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix);
    if len > MAX_FRAME {
        return Err(WireError::Malformed(format!(
            "a frame of {len} bytes (the limit is {MAX_FRAME})"
        )));
    }
    Ok(len as usize)
}

/// A frame's body as a `T`.
pub fn decode_frame<T: Object>(body: &[u8]) -> Result<T, WireError> {
    T::decode(body).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Read one chunk record: its header, and its stored bytes unless the peer lacks it. `max_stored` bounds what a
/// peer may make us allocate.
pub async fn read_record(
    recv: &mut quinn::RecvStream,
    max_stored: u32,
) -> Result<(ChunkRecordHeader, Vec<u8>), WireError> {
    let mut h = [0u8; RECORD_HEADER_LEN];
    recv.read_exact(&mut h).await?;
    let (header, stored) = record_header(&h, max_stored)?;
    Ok((header, read_bytes(recv, stored).await?))
}

/// A chunk record's header and how many stored bytes follow it (none when the peer lacks the chunk), refused
/// past `max_stored`.
pub fn record_header(
    h: &[u8; RECORD_HEADER_LEN],
    max_stored: u32,
) -> Result<(ChunkRecordHeader, usize), WireError> {
    let header = ChunkRecordHeader::decode(h);
    let stored = header.stored_len.unwrap_or(0);
    if stored > max_stored {
        return Err(WireError::Malformed(format!(
            "chunk {} claims {stored} stored bytes (at most {max_stored} expected)",
            header.id
        )));
    }
    Ok((header, stored as usize))
}
