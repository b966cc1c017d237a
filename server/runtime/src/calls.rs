//! Serving a CALLS stream: many calls at once on one stream, each handler its own task, each
//! reply written as soon as it is ready (in any order, tagged with its request's `call_id`).
//!
//! One task reads the requests and starts a task per call; one writer task owns the sending
//! side and writes the replies the calls hand it, several per write when they queue up. See
//! "Call streams (CALLS)" in `docs/protocol.md` for the rules this follows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use fluxon_proto::io::{write_frame_and_finish, FrameReader};
use fluxon_proto::{close, frame, Status};
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use crate::call::{
    answer, read_call, reply_header, timeout_if_pending, Call, Ending, Refused, TimedOut,
};
use crate::server::Shared;
use crate::session::SessionHandle;

/// An encoded reply frame: its head and its payload.
type ReplyFrame = (Bytes, Bytes);

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
    let (replies, queued) = mpsc::unbounded_channel::<ReplyFrame>();
    let writer = tokio::spawn(write_replies(send, queued).in_current_span());
    let limit = shared.config.limits.max_concurrent_streams.max(1) as usize;
    let permits = Arc::new(Semaphore::new(limit));
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
            Ok(Ok(true)) => {}
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
        let permit = tokio::select! {
            biased;
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break End::Broken,
            },
            _ = &mut shutdown => break End::Shutdown,
        };
        if cancels.len() >= limit * 2 {
            cancels.retain(|_, cancel| !cancel.is_closed());
        }
        let (cancel, cancelled) = oneshot::channel();
        cancels.insert(header.call_id, cancel);
        let call = Call {
            header,
            payload,
            started,
        };
        let task = run_call(
            Arc::clone(&shared),
            session.clone(),
            peer,
            call,
            cancelled,
            replies.clone(),
            permit,
        );
        shared.calls.spawn(task.in_current_span());
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
    // The writer ends once every call has handed over its reply (or given up).
    drop(cancels);
    drop(replies);
    let Ok(Some(mut send)) = writer.await else {
        return;
    };
    match end {
        End::Finished | End::Shutdown => {
            let _ = send.finish();
        }
        End::Refused(status, _) => {
            let reply = reply_header(&status, None);
            let head = frame::encode_head(None, &reply, 0);
            let _ = write_frame_and_finish(&mut send, head, Bytes::new()).await;
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

/// Runs one call and queues its reply, unless the caller cancelled it.
async fn run_call(
    shared: Arc<Shared>,
    session: SessionHandle,
    peer: SocketAddr,
    call: Call,
    cancelled: oneshot::Receiver<()>,
    replies: mpsc::UnboundedSender<ReplyFrame>,
    _permit: OwnedSemaphorePermit,
) {
    let call_id = call.header.call_id;
    let mut owed = AnswerOwed {
        replies: &replies,
        call_id,
        armed: true,
    };
    // Only an explicit cancellation counts: the sender is also dropped when the stream ends
    // normally, and the call must then still run to its reply.
    let cancelled = async move {
        if cancelled.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    if let Some((mut reply, body)) = answer(&shared, &session, peer, call, cancelled).await {
        reply.call_id = call_id;
        let head = frame::encode_head(None, &reply, body.len());
        // Fails only when the stream is gone; then nobody is waiting for the reply.
        let _ = owed.replies.send((head, body));
    }
    owed.armed = false;
}

/// Answers a call whose task ends without a reply of its own (its handler panicked) with an
/// `internal` status, so its caller is not left waiting and the stream's other calls go on.
struct AnswerOwed<'a> {
    replies: &'a mpsc::UnboundedSender<ReplyFrame>,
    call_id: u64,
    armed: bool,
}

impl Drop for AnswerOwed<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut reply = reply_header(&Status::internal("the handler failed"), None);
            reply.call_id = self.call_id;
            let _ = self
                .replies
                .send((frame::encode_head(None, &reply, 0), Bytes::new()));
        }
    }
}

/// Writes reply frames as they come, all those queued at once in one write, until every sender
/// is gone; returns the stream then, or `None` when it can no longer be written.
async fn write_replies(
    mut send: SendStream,
    mut queued: mpsc::UnboundedReceiver<ReplyFrame>,
) -> Option<SendStream> {
    let mut chunks = Vec::new();
    while let Some((head, body)) = queued.recv().await {
        chunks.push(head);
        chunks.push(body);
        while let Ok((head, body)) = queued.try_recv() {
            chunks.push(head);
            chunks.push(body);
        }
        if let Err(e) = send.write_all_chunks(&mut chunks).await {
            tracing::debug!(error = %e, "replies not delivered");
            return None;
        }
        chunks.clear();
    }
    Some(send)
}
