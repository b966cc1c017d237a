//! The client's side of a CALLS stream: many calls at once on one QUIC stream.
//!
//! Each call takes an id, registers where its reply should go, and queues its request frame in
//! the stream's [`Outbox`]. A call alone on the stream writes it at once itself; with other calls
//! in flight it wakes the writer task instead, which writes all the frames queued by then in one
//! write. Replies are read the same way round: a call alone on the stream reads its reply
//! itself, while with others in flight it wakes the reader task, which reads replies for as
//! long as calls wait and routes each to its call by the id it carries. Either way, whoever
//! holds the receiving side's lock reads and routes, so no reply waits for a reader. Dropping a
//! call's future before its reply sends a cancellation for it. See "Call streams (CALLS)" in
//! `docs/protocol.md`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use bytes::Bytes;
use fluxon_proto::io::{CallError, FrameReader, Outbox, ReadError};
use fluxon_proto::wire::{CallHeader, ReplyHeader};
use fluxon_proto::{close, frame, Limits, Status, StreamKind};
use quinn::{RecvStream, VarInt};
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::{oneshot, Notify};

/// Why a call on a CALLS stream got no reply.
#[derive(Debug)]
pub(crate) enum CallsError {
    /// The stream ended (the server retired it, or it broke) before the server took the
    /// request: it had no effect, and may be sent again on another stream.
    NotTaken,
    /// The transport failed; whether the request had effects is unknown.
    Failed(CallError),
    /// The call failed with this status (the server refused the stream, or its reply was
    /// garbled).
    Status(Status),
}

/// A call's outcome, as whoever reads its reply delivers it.
type Outcome = Result<(ReplyHeader, Bytes), CallsError>;

/// The sending side: the outbox, and the writer task's wake-up.
struct Sending {
    outbox: Outbox,
    wake: Notify,
}

impl Sending {
    /// Writes the queued frames; a failure leaves the stream to the reader to settle.
    async fn flush(&self, state: &Mutex<State>) {
        if let Err(e) = self.outbox.flush().await {
            // The server stopped reading (it is shutting down, or refused a request) or the
            // connection is gone: the reader learns which when the stream ends, and settles the
            // calls in flight then.
            tracing::debug!(error = %e, "call stream no longer writable");
            lock(state).open = false;
        }
    }
}

/// What the stream's calls and its two tasks share.
struct State {
    /// The id the next call takes (never 0, which the server uses for the stream itself).
    next_id: u64,
    /// Where each unanswered call's outcome goes.
    pending: HashMap<u64, oneshot::Sender<Outcome>>,
    /// Cleared when the stream can take no more calls.
    open: bool,
    /// Set when the [`CallsStream`] is dropped: the writer task writes what is left and
    /// finishes the stream, and the reader task ends.
    dropped: bool,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One CALLS stream of one connection. Dropping it (once no call holds it) finishes the
/// stream: the server takes that as the end of its calls.
pub(crate) struct CallsStream {
    conn_id: usize,
    sending: Arc<Sending>,
    receiver: Arc<Receiver>,
    state: Arc<Mutex<State>>,
}

impl Drop for CallsStream {
    fn drop(&mut self) {
        lock(&self.state).dropped = true;
        self.sending.wake.notify_one();
        self.receiver.wake.notify_one();
    }
}

/// The receiving side, and the reader task's wake-up.
struct Receiver {
    receiving: tokio::sync::Mutex<Receiving>,
    wake: Notify,
}

impl CallsStream {
    /// Opens a CALLS stream on `conn`; replies are read under `limits`.
    pub(crate) async fn open(
        conn: &quinn::Connection,
        limits: Limits,
    ) -> Result<Self, quinn::ConnectionError> {
        let (send, recv) = conn.open_bi().await?;
        let state = Arc::new(Mutex::new(State {
            next_id: 1,
            pending: HashMap::new(),
            open: true,
            dropped: false,
        }));
        let sending = Arc::new(Sending {
            outbox: Outbox::new(send, Some(Bytes::from_static(&[StreamKind::Calls as u8]))),
            wake: Notify::new(),
        });
        let receiver = Arc::new(Receiver {
            receiving: tokio::sync::Mutex::new(Receiving {
                recv,
                reader: FrameReader::new(limits),
                ended: false,
            }),
            wake: Notify::new(),
        });
        tokio::spawn(write_requests(Arc::clone(&sending), Arc::clone(&state)));
        tokio::spawn(read_replies(Arc::clone(&receiver), Arc::clone(&state)));
        Ok(Self {
            conn_id: conn.stable_id(),
            sending,
            receiver,
            state,
        })
    }

    /// Whether new calls may go on this stream: it belongs to `conn` and has not ended.
    pub(crate) fn is_usable(&self, conn: &quinn::Connection) -> bool {
        self.conn_id == conn.stable_id() && lock(&self.state).open
    }

    /// Performs one call: `header` gets the call's id, and the reply comes back whole.
    /// Dropping the future before then cancels the call.
    pub(crate) async fn call(&self, header: &mut CallHeader, payload: Bytes) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let (call_id, alone) = {
            let mut state = lock(&self.state);
            if !state.open {
                return Err(CallsError::NotTaken);
            }
            let id = state.next_id;
            state.next_id += 1;
            state.pending.insert(id, tx);
            (id, state.pending.len() == 1)
        };
        let mut pending = Pending {
            stream: self,
            call_id,
            armed: true,
        };
        header.call_id = call_id;
        let head = frame::encode_head(None, &*header, payload.len());
        self.sending.outbox.push(head, payload);
        let outcome = if alone {
            // Nothing to gather, nobody else to read for: no task hops either way.
            flush_whole(&self.sending, &self.state).await;
            self.read_reply(rx).await
        } else {
            self.sending.wake.notify_one();
            self.receiver.wake.notify_one();
            rx.await.unwrap_or_else(|_| lost())
        };
        pending.armed = false;
        outcome
    }

    /// Waits for the reply `rx` will carry, reading the stream itself once no one else is.
    async fn read_reply(&self, mut rx: oneshot::Receiver<Outcome>) -> Outcome {
        // Taking a free lock without waiting first keeps `rx` from registering this task's
        // waker: the reply this task reads for itself must not wake it again (a needless
        // reschedule that costs a thread wake-up per call).
        let mut receiving = match self.receiver.receiving.try_lock() {
            Ok(receiving) => receiving,
            Err(_) => tokio::select! {
                biased;
                outcome = &mut rx => return outcome.unwrap_or_else(|_| lost()),
                receiving = self.receiver.receiving.lock() => receiving,
            },
        };
        loop {
            // The reply may have been routed here by the call that read before this one.
            match rx.try_recv() {
                Ok(outcome) => return outcome,
                Err(TryRecvError::Closed) => return lost(),
                Err(TryRecvError::Empty) if receiving.ended => return lost(),
                Err(TryRecvError::Empty) => receiving.read_one(&self.state).await,
            }
        }
    }
}

/// A reader always sends a call its outcome before it drops the call's sender; this stands in
/// should that ever fail.
fn lost() -> Outcome {
    Err(CallsError::Failed(CallError::Read(ReadError::Closed)))
}

/// Reads replies whenever woken by a call that waits alongside others, for as long as any call
/// waits; ends when the stream is dropped.
async fn read_replies(receiver: Arc<Receiver>, state: Arc<Mutex<State>>) {
    loop {
        receiver.wake.notified().await;
        if lock(&state).dropped {
            return;
        }
        let mut receiving = receiver.receiving.lock().await;
        while !receiving.ended && !lock(&state).pending.is_empty() {
            receiving.read_one(&state).await;
        }
    }
}

/// The receiving side, read by whoever holds its lock: a call alone on the stream, or the
/// reader task.
struct Receiving {
    recv: RecvStream,
    reader: FrameReader,
    /// The stream has ended and every call waiting then was settled.
    ended: bool,
}

impl Receiving {
    /// Reads one reply and routes it to its call; at the stream's end, settles every call
    /// still waiting. Cancel-safe: a read cut short leaves its bytes buffered for the next.
    async fn read_one(&mut self, state: &Mutex<State>) {
        let ended = match self.reader.read_frame(&mut self.recv).await {
            Ok(frame) => match frame.decode_header::<ReplyHeader>() {
                // The server refused the stream; it answered every call it took before this.
                Ok(reply) if reply.call_id == 0 => {
                    Ended::Status(Status::from_wire(reply.code, reply.message))
                }
                Ok(reply) => {
                    let waiter = lock(state).pending.remove(&reply.call_id);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(Ok((reply, frame.payload)));
                    }
                    return;
                }
                Err(e) => Ended::Status(Status::internal(format!("malformed reply header: {e}"))),
            },
            Err(ReadError::Empty) => Ended::Finished,
            Err(ReadError::Frame(e)) => {
                Ended::Status(Status::internal(format!("malformed reply: {e}")))
            }
            Err(e) => Ended::Read(e),
        };
        self.ended = true;
        if !matches!(ended, Ended::Finished) {
            let _ = self.recv.stop(VarInt::from_u32(close::stream::CANCELLED));
        }
        settle(state, &ended);
    }
}

/// Flushes the outbox in full even if the caller goes away meanwhile: a frame cut short would
/// garble the stream for every call after it. A flush that cannot finish at once (flow control
/// holds it back) goes on in a task of its own.
async fn flush_whole(sending: &Arc<Sending>, state: &Arc<Mutex<State>>) {
    let (sending, state) = (Arc::clone(sending), Arc::clone(state));
    let mut flush = Box::pin(async move { sending.flush(&state).await });
    let polled = std::future::poll_fn(|cx| Poll::Ready(flush.as_mut().poll(cx))).await;
    if polled.is_pending() {
        let _ = tokio::spawn(flush).await;
    }
}

/// Writes the frames queued by calls that did not write their own, woken by each such call,
/// until the stream is dropped; then writes what is left and finishes the stream.
async fn write_requests(sending: Arc<Sending>, state: Arc<Mutex<State>>) {
    loop {
        sending.wake.notified().await;
        sending.flush(&state).await;
        if lock(&state).dropped {
            sending.flush(&state).await;
            let _ = sending.outbox.stream().await.finish();
            return;
        }
    }
}

/// A call waiting for its reply; dropped armed (the caller gave up), it cancels the call.
struct Pending<'a> {
    stream: &'a CallsStream,
    call_id: u64,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let unanswered = lock(&self.stream.state)
            .pending
            .remove(&self.call_id)
            .is_some();
        if unanswered {
            let cancel = CallHeader {
                call_id: self.call_id,
                cancel: true,
                ..Default::default()
            };
            let head = frame::encode_head(None, &cancel, 0);
            self.stream.sending.outbox.push(head, Bytes::new());
            self.stream.sending.wake.notify_one();
        }
    }
}

/// How the reply side of a stream ended, for every call still waiting.
enum Ended {
    /// Finished by the server: every call it took was answered, so the rest were not taken.
    Finished,
    /// A failure every waiting call shares.
    Status(Status),
    /// Reset by the server, or the connection is gone.
    Read(ReadError),
}

/// Marks the stream ended and fails every call still waiting, as `ended` says.
fn settle(state: &Mutex<State>, ended: &Ended) {
    let waiting = {
        let mut state = lock(state);
        state.open = false;
        std::mem::take(&mut state.pending)
    };
    for (_, waiter) in waiting {
        let outcome = match ended {
            Ended::Finished => CallsError::NotTaken,
            Ended::Status(status) => CallsError::Status(status.clone()),
            Ended::Read(e) => CallsError::Failed(CallError::Read(copy_read_error(e))),
        };
        let _ = waiter.send(Err(outcome));
    }
}

/// The parts of a [`ReadError`] that matter to a waiting call, for each of them.
fn copy_read_error(err: &ReadError) -> ReadError {
    match err {
        ReadError::Reset(code) => ReadError::Reset(*code),
        ReadError::ConnectionLost(e) => ReadError::ConnectionLost(e.clone()),
        _ => ReadError::Closed,
    }
}
