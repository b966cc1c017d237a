//! Moving frames over quinn streams: the thin I/O shell around [`FrameDecoder`].

use bytes::{Bytes, BytesMut};
use quinn::{RecvStream, SendStream};

use crate::frame::{Frame, FrameDecoder, FrameError, Limits};

/// Largest chunk asked of quinn in one read.
const READ_CHUNK: usize = 64 * 1024;

/// Why a frame could not be read from a stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The bytes were not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer finished the stream before sending anything.
    #[error("stream finished without a frame")]
    Empty,
    /// The peer reset the stream.
    #[error("stream reset by the peer (code {0})")]
    Reset(u64),
    /// The connection is gone.
    #[error("connection lost: {0}")]
    ConnectionLost(#[from] quinn::ConnectionError),
    /// The stream was already stopped or finished locally.
    #[error("stream closed")]
    Closed,
}

impl From<quinn::ReadError> for ReadError {
    fn from(err: quinn::ReadError) -> Self {
        match err {
            quinn::ReadError::Reset(code) => Self::Reset(code.into_inner()),
            quinn::ReadError::ConnectionLost(e) => Self::ConnectionLost(e),
            _ => Self::Closed,
        }
    }
}

/// Reads a stream's kind byte and frames, buffering only what the current frame needs.
#[derive(Debug)]
pub struct FrameReader {
    decoder: FrameDecoder,
    buf: BytesMut,
}

impl FrameReader {
    /// A reader enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            decoder: FrameDecoder::new(limits),
            buf: BytesMut::new(),
        }
    }

    /// Reads the first byte of a stream (its kind). Unknown kinds are the caller's to judge.
    pub async fn read_kind(&mut self, recv: &mut RecvStream) -> Result<u8, ReadError> {
        while self.buf.is_empty() {
            if !self.fill(recv).await? {
                return Err(ReadError::Empty);
            }
        }
        let kind = self.buf[0];
        let _ = self.buf.split_to(1);
        Ok(kind)
    }

    /// Reads one complete frame.
    pub async fn read_frame(&mut self, recv: &mut RecvStream) -> Result<Frame, ReadError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(frame);
            }
            if !self.fill(recv).await? {
                return Err(if self.decoder.is_idle() && self.buf.is_empty() {
                    ReadError::Empty
                } else {
                    FrameError::Truncated.into()
                });
            }
        }
    }

    /// Bytes read past the last frame (the start of whatever follows it on the stream).
    pub fn into_remaining(self) -> BytesMut {
        self.buf
    }

    /// Appends the next chunk; `false` at the end of the stream.
    async fn fill(&mut self, recv: &mut RecvStream) -> Result<bool, ReadError> {
        match recv.read_chunk(READ_CHUNK, true).await? {
            Some(chunk) => {
                self.buf.extend_from_slice(&chunk.bytes);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Writes a frame head and its payload without copying the payload, then finishes the stream.
pub async fn write_frame_and_finish(
    send: &mut SendStream,
    head: Bytes,
    payload: Bytes,
) -> Result<(), quinn::WriteError> {
    send.write_all_chunks(&mut [head, payload]).await?;
    // `finish` only fails when the stream was already finished or reset; then the write above
    // failed first, so there is nothing more to report.
    let _ = send.finish();
    Ok(())
}
