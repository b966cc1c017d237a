//! Serving a CALLS stream: many calls at once on one stream, each reply written as soon as it
//! is ready (in any order, tagged with its request's `call_id`).
//!
//! One task reads the requests. It polls each call once itself, so a handler that finishes at
//! once is answered without a task hop; a call still pending then goes on in a task of its own.
//! Replies go through an [`Outbox`]: those of the calls answered while the reader works through
//! the requests that arrived together leave in one write once it has read them all. See "Call
//! streams (CALLS)" in `docs/protocol.md` for the rules this follows.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use fluxon_proto::io::{FrameReader, Outbox};
use fluxon_proto::{close, frame, Status};
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use crate::call::{
    answer, read_call, reply_header, timeout_if_pending, Call, Ending, Refused, TimedOut,
};
use crate::server::Shared;
use crate::session::SessionHandle;

/// The stream's sending side, shared by the calls writing their replies.
struct Replies {
    outbox: Outbox,
    /// Set while the reader works through requests that arrived together: replies then wait in
    /// the outbox for the reader's flush after the last of them.
    batching: AtomicBool,
}

impl Replies {
    /// Queues a reply frame and, unless the reader will flush soon, writes what is queued.
    async fn send(&self, head: Bytes, body: Bytes) {
        self.outbox.push(head, body);
        // SeqCst pairs with the reader's store: either the reader's flush (after its store)
        // finds this frame queued, or this load sees the store and flushes here.
        if !self.batching.load(Ordering::SeqCst) {
            self.flush().await;
        }
    }

    async fn flush(&self) {
        if let Err(e) = self.outbox.flush().await {
            tracing::debug!(error = %e, "replies not delivered");
        }
    }
}

/// Why the reading side of a CALLS stream stopped.
enum End {
    /// The client finished its side: answer what was taken, then finish.
    Finished,
    /// The server is shutting down: take no more requests, answer what was taken, then finish.
    Shutdown,
    /// Bad input or a request that did not arrive in time: stop reading with `code`, answer
    /// what was taken, then end with a stream-level reply carrying `status`.
    Refused(Status, u32),
    /// The client reset the stream, or the connection is gone: cancel every call.
    Broken,
}

/// Serves a CALLS stream whose kind byte has been read, until the client ends it, bad input
/// ends it, or the server shuts down. `opened` is when the stream was accepted: its first
/// request must arrive within the read timeout from then.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    session: SessionHandle,
    peer: SocketAddr,
    send: SendStream,
    mut recv: RecvStream,
    mut reader: FrameReader,
    opened: Instant,
) {
    let replies = Arc::new(Replies {
        outbox: Outbox::new(send, None),
        batching: AtomicBool::new(false),
    });
    let limit = shared.config.limits.max_concurrent_streams.max(1);
    let permits = Arc::new(Semaphore::new(limit as usize));
    // How to cancel each call in flight; entries of finished calls are pruned as it grows.
    let mut cancels: HashMap<u64, oneshot::Sender<()>> = HashMap::new();
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(shutdown);
    let read_timeout = shared.config.limits.request_read_timeout;
    let mut first = true;
    let end = loop {
        // Checked before waiting too: a client sending call after call must not keep the
        // stream (and the shutdown) going.
        if shared.shutdown.is_cancelled() {
            break End::Shutdown;
        }
        if !reader.has_buffered() {
            // Every request that arrived together has been taken: send the replies they
            // produced before waiting for more.
            replies.batching.store(false, Ordering::SeqCst);
            replies.flush().await;
        }
        // Between requests the stream waits without a deadline (an idle stream costs this task,
        // bounded by the connection's stream limit), except for the first request.
        let waited = {
            let wait = std::pin::pin!(reader.wait_for_data(&mut recv));
            if first {
                let deadline = opened + read_timeout;
                tokio::select! {
                    biased;
                    r = timeout_if_pending(deadline, wait) => r,
                    _ = &mut shutdown => break End::Shutdown,
                }
            } else {
                tokio::select! {
                    biased;
                    r = wait => Ok(r),
                    _ = &mut shutdown => break End::Shutdown,
                }
            }
        };
        match waited {
            Ok(Ok(true)) => replies.batching.store(true, Ordering::SeqCst),
            Ok(Ok(false)) => break End::Finished,
            Ok(Err(_)) => break End::Broken,
            Err(TimedOut) => break timed_out(peer),
        }
        first = false;
        // Once its first byte is in, the whole request must arrive within the read timeout.
        let started = Instant::now();
        let read = read_call(&mut reader, &mut recv, Ending::KeepOpen);
        let (header, payload) =
            match timeout_if_pending(started + read_timeout, std::pin::pin!(read)).await {
                Ok(Ok(request)) => request,
                Ok(Err(Refused::Reply(status, code))) => {
                    tracing::debug!(%peer, status = %status, "request refused");
                    break End::Refused(status, code.unwrap_or(close::stream::MALFORMED));
                }
                Ok(Err(Refused::Reset(_) | Refused::Gone)) => break End::Broken,
                Err(TimedOut) => break timed_out(peer),
            };
        if header.cancel {
            if let Some(cancel) = cancels.remove(&header.call_id) {
                let _ = cancel.send(());
            }
            continue;
        }
        // At most `limit` calls run at once per stream; beyond that the stream is not read,
        // and QUIC's flow control holds the client back.
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Waiting for calls to finish: let their replies out meanwhile.
                replies.batching.store(false, Ordering::SeqCst);
                replies.flush().await;
                let permit = tokio::select! {
                    biased;
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break End::Broken,
                    },
                    _ = &mut shutdown => break End::Shutdown,
                };
                replies.batching.store(true, Ordering::SeqCst);
                permit
            }
        };
        if cancels.len() >= limit as usize * 2 {
            cancels.retain(|_, cancel| !cancel.is_closed());
        }
        let (cancel, cancelled) = oneshot::channel();
        cancels.insert(header.call_id, cancel);
        let call = Call {
            header,
            payload,
            started,
        };
        let mut task = Box::pin(run_call(
            Arc::clone(&shared),
            session.clone(),
            peer,
            call,
            cancelled,
            Arc::clone(&replies),
            permit,
        ));
        if !poll_once(&mut task).await {
            shared.calls.spawn(task.in_current_span());
        }
    };

    match &end {
        End::Finished => {}
        End::Shutdown => {
            let _ = recv.stop(VarInt::from_u32(close::stream::SHUTDOWN));
        }
        End::Refused(_, code) => {
            let _ = recv.stop(VarInt::from_u32(*code));
        }
        End::Broken => {
            for (_, cancel) in cancels.drain() {
                let _ = cancel.send(());
            }
        }
    }
    // Every call has written its reply (or given up) once all the permits are back.
    drop(cancels);
    replies.batching.store(false, Ordering::SeqCst);
    replies.flush().await;
    let _ = permits.acquire_many(limit).await;
    if let End::Refused(status, _) = &end {
        let reply = reply_header(status, None);
        replies
            .outbox
            .push(frame::encode_head(None, &reply, 0), Bytes::new());
    }
    replies.flush().await;
    let mut send = replies.outbox.stream().await;
    match end {
        End::Finished | End::Shutdown | End::Refused(..) => {
            let _ = send.finish();
        }
        End::Broken => {
            let _ = send.reset(VarInt::from_u32(close::stream::CANCELLED));
        }
    }
}

fn timed_out(peer: SocketAddr) -> End {
    tracing::debug!(%peer, "request not delivered in time");
    End::Refused(
        Status::deadline_exceeded("request not delivered within the server's read timeout"),
        close::stream::TIMED_OUT,
    )
}

/// Polls a call once: `true` when it finished (a panic in it counts as finished: its
/// [`AnswerOwed`] answers for it as the future is dropped).
async fn poll_once<F: Future<Output = ()>>(task: &mut std::pin::Pin<Box<F>>) -> bool {
    std::future::poll_fn(|cx| {
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(cx)));
        Poll::Ready(!matches!(polled, Ok(Poll::Pending)))
    })
    .await
}

/// Runs one call and writes its reply, unless the caller cancelled it.
async fn run_call(
    shared: Arc<Shared>,
    session: SessionHandle,
    peer: SocketAddr,
    call: Call,
    cancelled: oneshot::Receiver<()>,
    replies: Arc<Replies>,
    permit: OwnedSemaphorePermit,
) {
    let call_id = call.header.call_id;
    // Holds the call's permit until its reply is written, so the stream ends only after it.
    let mut owed = AnswerOwed {
        replies: &replies,
        call_id,
        permit: Some(permit),
        armed: true,
    };
    // Only an explicit cancellation counts: the sender is also dropped when the stream ends
    // normally, and the call must then still run to its reply.
    let cancelled = async move {
        if cancelled.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let answered = answer(&shared, &session, peer, call, cancelled).await;
    owed.armed = false;
    if let Some((mut reply, body)) = answered {
        reply.call_id = call_id;
        let head = frame::encode_head(None, &reply, body.len());
        owed.replies.send(head, body).await;
    }
}

/// Answers a call whose task ends without a reply of its own (its handler panicked) with an
/// `internal` status, so its caller is not left waiting and the stream's other calls go on.
struct AnswerOwed<'a> {
    replies: &'a Arc<Replies>,
    call_id: u64,
    permit: Option<OwnedSemaphorePermit>,
    armed: bool,
}

impl Drop for AnswerOwed<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut reply = reply_header(&Status::internal("the handler failed"), None);
        reply.call_id = self.call_id;
        let head = frame::encode_head(None, &reply, 0);
        let replies = Arc::clone(self.replies);
        let permit = self.permit.take();
        // A drop cannot wait for the write; the task runs in the runtime that ran the call, and
        // keeps the permit until the reply is out.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                replies.send(head, Bytes::new()).await;
                drop(permit);
            });
        }
    }
}
