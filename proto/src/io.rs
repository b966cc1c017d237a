//! Moving frames over quinn streams: the thin I/O shell around [`FrameDecoder`].

use bytes::{Buf, Bytes, BytesMut};
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
    /// More bytes followed a frame that must end its stream.
    #[error("unexpected data after the frame")]
    TrailingData,
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
///
/// A frame that arrives whole in one chunk (the common case for calls) is sliced out of the chunk
/// without copying; only a frame split across chunks is gathered into a buffer.
#[derive(Debug)]
pub struct FrameReader {
    decoder: FrameDecoder,
    /// The latest chunk, while nothing else is buffered.
    chunk: Bytes,
    /// Bytes gathered from several chunks.
    buf: BytesMut,
}

impl FrameReader {
    /// A reader enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            decoder: FrameDecoder::new(limits),
            chunk: Bytes::new(),
            buf: BytesMut::new(),
        }
    }

    /// Reads the first byte of a stream (its kind). Unknown kinds are the caller's to judge.
    pub async fn read_kind(&mut self, recv: &mut RecvStream) -> Result<u8, ReadError> {
        if !self.wait_for_data(recv).await? {
            return Err(ReadError::Empty);
        }
        if !self.chunk.is_empty() {
            let kind = self.chunk[0];
            self.chunk.advance(1);
            return Ok(kind);
        }
        let kind = self.buf[0];
        self.buf.advance(1);
        Ok(kind)
    }

    /// Reads one complete frame.
    pub async fn read_frame(&mut self, recv: &mut RecvStream) -> Result<Frame, ReadError> {
        loop {
            let decoded = if self.chunk.is_empty() {
                self.decoder.decode(&mut self.buf)?
            } else {
                let decoded = self.decoder.decode(&mut self.chunk)?;
                if decoded.is_none() {
                    // Incomplete: keep the rest for the next chunk to join.
                    self.buf.extend_from_slice(&self.chunk);
                    self.chunk = Bytes::new();
                }
                decoded
            };
            if let Some(frame) = decoded {
                return Ok(frame);
            }
            if !self.fill(recv).await? {
                return Err(if self.decoder.is_idle() && self.buffered() == 0 {
                    ReadError::Empty
                } else {
                    FrameError::Truncated.into()
                });
            }
        }
    }

    /// Reads one frame that must be the last thing on the stream, and the stream's end.
    ///
    /// Consuming the end of the stream lets the stream close cleanly instead of being stopped.
    pub async fn read_last_frame(&mut self, recv: &mut RecvStream) -> Result<Frame, ReadError> {
        let frame = self.read_frame(recv).await?;
        loop {
            if self.buffered() > 0 {
                return Err(ReadError::TrailingData);
            }
            if !self.fill(recv).await? {
                return Ok(frame);
            }
        }
    }

    /// Waits until at least one byte of the next frame is buffered; `false` when the stream
    /// ended first (cleanly, with nothing buffered).
    ///
    /// For streams that idle between frames (CALLS streams): the wait for a frame to start
    /// can be unbounded while the frame itself is read under a deadline.
    pub async fn wait_for_data(&mut self, recv: &mut RecvStream) -> Result<bool, ReadError> {
        while self.buffered() == 0 {
            if !self.fill(recv).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether bytes past the last frame read are buffered.
    pub fn has_buffered(&self) -> bool {
        self.buffered() > 0
    }

    /// Bytes read past the last frame (the start of whatever follows it on the stream).
    pub fn into_remaining(mut self) -> BytesMut {
        if !self.chunk.is_empty() {
            self.buf.extend_from_slice(&self.chunk);
        }
        self.buf
    }

    fn buffered(&self) -> usize {
        self.chunk.len() + self.buf.len()
    }

    /// Takes the next chunk; `false` at the end of the stream.
    async fn fill(&mut self, recv: &mut RecvStream) -> Result<bool, ReadError> {
        match recv.read_chunk(READ_CHUNK, true).await? {
            Some(chunk) => {
                if self.buffered() == 0 {
                    self.chunk = chunk.bytes;
                } else {
                    if !self.chunk.is_empty() {
                        self.buf.extend_from_slice(&self.chunk);
                        self.chunk = Bytes::new();
                    }
                    self.buf.extend_from_slice(&chunk.bytes);
                }
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
    write_frame(send, head, payload).await?;
    // `finish` only fails when the stream was already finished or reset; then the write above
    // failed first, so there is nothing more to report.
    let _ = send.finish();
    Ok(())
}

/// Writes a frame head and its payload without copying the payload, leaving the stream open.
pub async fn write_frame(
    send: &mut SendStream,
    head: Bytes,
    payload: Bytes,
) -> Result<(), quinn::WriteError> {
    send.write_all_chunks(&mut [head, payload]).await
}

/// The sending side of a stream that many tasks write frames to (a CALLS stream), gathering
/// the frames that queue up into one write.
///
/// A writer [`push`](Self::push)es its frame and then [`flush`](Self::flush)es. Whoever holds
/// the stream's lock writes every frame queued at that moment, its own and others', in one
/// write; a flush that finds the lock taken returns at once, since the holder writes the queued
/// frames before it lets go. Fewer, larger writes mean fewer, fuller packets.
///
/// A flush must not be dropped half-way (a frame cut short would garble the stream): callers
/// whose futures may be cancelled finish it in a task of their own.
#[derive(Debug)]
pub struct Outbox {
    queue: std::sync::Mutex<Vec<Bytes>>,
    send: tokio::sync::Mutex<SendStream>,
}

impl Outbox {
    /// An outbox for `send`, whose first write starts with `preamble` (a stream's kind byte).
    pub fn new(send: SendStream, preamble: Option<Bytes>) -> Self {
        Self {
            queue: std::sync::Mutex::new(preamble.into_iter().collect()),
            send: tokio::sync::Mutex::new(send),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Bytes>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a frame (its head and payload) for the next flush.
    pub fn push(&self, head: Bytes, payload: Bytes) {
        let mut queue = self.queue();
        queue.push(head);
        queue.push(payload);
    }

    /// Whether frames are waiting for a flush.
    fn has_queued(&self) -> bool {
        !self.queue().is_empty()
    }

    /// Writes the queued frames, unless another flush holds the stream (it writes them then).
    /// After an error the stream is broken; frames queued later are dropped by later flushes.
    pub async fn flush(&self) -> Result<(), quinn::WriteError> {
        loop {
            let Ok(mut send) = self.send.try_lock() else {
                return Ok(());
            };
            let mut batch = std::mem::take(&mut *self.queue());
            if batch.is_empty() {
                return Ok(());
            }
            send.write_all_chunks(&mut batch).await?;
            drop(send);
            // Frames queued while this flush wrote found the lock taken and left them here.
            if !self.has_queued() {
                return Ok(());
            }
        }
    }

    /// The stream, once no flush holds it: to finish or reset it.
    pub async fn stream(&self) -> tokio::sync::MutexGuard<'_, SendStream> {
        self.send.lock().await
    }
}

/// Why a call over a connection failed before a reply header was decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// A stream could not be opened (the connection is gone).
    #[error("cannot open a stream: {0}")]
    Open(#[from] quinn::ConnectionError),
    /// The request could not be written.
    #[error("cannot send the request: {0}")]
    Write(#[from] quinn::WriteError),
    /// The reply could not be read.
    #[error("cannot read the reply: {0}")]
    Read(#[from] ReadError),
    /// The reply header was not valid protobuf.
    #[error("malformed reply header: {0}")]
    BadReply(#[from] prost::DecodeError),
}

/// Performs one call on its own bidirectional stream: writes the kind byte, `header` and
/// `payload`, then reads and decodes the reply.
///
/// Dropping the future cancels the call: an unfinished request is reset and the reply side is
/// stopped, both with [`close::stream::CANCELLED`](crate::close::stream::CANCELLED), so the peer
/// can drop its work.
pub async fn call(
    conn: &quinn::Connection,
    header: &crate::wire::CallHeader,
    payload: Bytes,
    limits: Limits,
) -> Result<(crate::wire::ReplyHeader, Bytes), CallError> {
    let (send, mut recv) = conn.open_bi().await?;
    let mut send = ResetOnDrop(Some(send));
    let head = crate::frame::encode_head(Some(crate::StreamKind::Call), header, payload.len());
    if let Some(stream) = send.0.as_mut() {
        write_frame_and_finish(stream, head, payload).await?;
    }
    // Finished: dropping it now is harmless.
    send.0 = None;
    let mut reader = FrameReader::new(limits);
    let frame = reader.read_last_frame(&mut recv).await?;
    let reply = frame.decode_header::<crate::wire::ReplyHeader>()?;
    Ok((reply, frame.payload))
}

/// Owns a send stream and resets it when dropped before being disarmed.
struct ResetOnDrop(Option<SendStream>);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if let Some(stream) = self.0.as_mut() {
            let _ = stream.reset(quinn::VarInt::from_u32(crate::close::stream::CANCELLED));
        }
    }
}

/// The status a caller reports for a call that failed in transport.
pub fn call_error_status(err: &CallError) -> crate::Status {
    use crate::Status;
    match err {
        CallError::Open(e) | CallError::Read(ReadError::ConnectionLost(e)) => {
            Status::unavailable(connection_error_message(e))
        }
        CallError::Write(quinn::WriteError::ConnectionLost(e)) => {
            Status::unavailable(connection_error_message(e))
        }
        CallError::Write(quinn::WriteError::Stopped(code)) => {
            stream_refused(code.into_inner(), "the peer refused the request")
        }
        CallError::Read(ReadError::Reset(code)) => stream_refused(*code, "the peer reset the call"),
        CallError::Read(ReadError::Frame(e)) => Status::internal(format!("malformed reply: {e}")),
        CallError::BadReply(e) => Status::internal(format!("malformed reply header: {e}")),
        other => Status::unavailable(other.to_string()),
    }
}

fn stream_refused(code: u64, what: &str) -> crate::Status {
    use crate::close::stream;
    use crate::Status;
    match u32::try_from(code) {
        Ok(stream::TOO_LARGE) => Status::resource_exhausted(format!("{what}: message too large")),
        Ok(stream::MALFORMED) => Status::invalid_argument(format!("{what}: malformed message")),
        Ok(stream::SHUTDOWN) => Status::unavailable(format!("{what}: shutting down")),
        Ok(stream::TIMED_OUT) => Status::deadline_exceeded(format!("{what}: request timed out")),
        Ok(stream::ABORTED) => Status::internal(format!("{what}: the handler failed")),
        _ => Status::cancelled(format!("{what} (code {code})")),
    }
}

/// A readable description of why a connection ended, naming Fluxon's close codes.
pub fn connection_error_message(err: &quinn::ConnectionError) -> String {
    match err {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let code = close.error_code.into_inner();
            let reason = String::from_utf8_lossy(&close.reason);
            let what = crate::close::connection::describe(code);
            if reason.is_empty() {
                format!("connection closed: {what}")
            } else {
                format!("connection closed: {what}: {reason}")
            }
        }
        quinn::ConnectionError::TimedOut => "connection timed out".to_owned(),
        quinn::ConnectionError::LocallyClosed => "connection closed locally".to_owned(),
        other => format!("connection lost: {other}"),
    }
}

/// Turns a reply into the call's result: the decoded message, or the status it carried.
pub fn decode_reply<Rep: prost::Message + Default>(
    reply: &crate::wire::ReplyHeader,
    payload: Bytes,
) -> Result<Rep, crate::Status> {
    if reply.code != crate::Code::Ok.as_u32() {
        return Err(crate::Status::from_wire(reply.code, reply.message.clone()));
    }
    Rep::decode(payload)
        .map_err(|e| crate::Status::internal(format!("malformed reply payload: {e}")))
}
