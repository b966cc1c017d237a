//! Streaming calls: server-streaming, client-streaming and bidirectional routes, each call on a
//! STREAMING stream of its own (see `docs/protocol.md`).
//!
//! The handler's reply stream is pulled only once the replies before are handed to QUIC (what
//! it has ready at once goes in one write, up to 64 KiB): a slow reader's flow control holds the
//! handler back, so memory stays bounded whatever the stream's length. Request messages are
//! read only when the handler asks for the next one, which holds a fast writer back the same
//! way.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use fluxon_proto::io::{FrameReader, ReadError};
use fluxon_proto::streaming::{caller_frame, end_frame, message_head};
use fluxon_proto::wire::{CallHeader, SessionUpdate};
use fluxon_proto::{close, Code, Status};
use futures_core::Stream;
use futures_util::{FutureExt as _, StreamExt as _};
use prost::Message;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::time::Instant;
use tracing::Instrument;

use crate::call::{refusal, Refused, ReplyOwed};
use crate::request::{CallContext, Request};
use crate::router::no_route;
use crate::router::BoxFuture;
use crate::server::{now_secs, Shared};
use crate::session::SessionHandle;

/// Encoded messages one way of a streaming call.
pub(crate) type MessageStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// The request messages of a client-streaming or bidirectional call, decoded as `T`, in the
/// order the client sent them. The stream ends when the client finishes sending; an error
/// (a message that does not decode, the client cancelling) ends it too.
///
/// ```
/// # use fluxon_server::{Request, Status, Streaming};
/// async fn sum(req: Request<Streaming<u64>>) -> Result<u64, Status> {
///     let mut numbers = req.into_inner();
///     let mut total = 0u64;
///     while let Some(n) = numbers.message().await? {
///         total = total.saturating_add(n);
///     }
///     Ok(total)
/// }
/// ```
pub struct Streaming<T> {
    messages: MessageStream,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming").finish_non_exhaustive()
    }
}

impl<T: Message + Default> Streaming<T> {
    fn new(messages: MessageStream) -> Self {
        Self {
            messages,
            _type: PhantomData,
        }
    }

    /// The next message; `Ok(None)` once the client has finished sending.
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        self.next().await.transpose()
    }
}

impl<T: Message + Default> Stream for Streaming<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.messages.as_mut().poll_next(cx).map(|item| {
            item.map(|bytes| {
                T::decode(bytes?).map_err(|e| {
                    Status::invalid_argument(format!("malformed request message: {e}"))
                })
            })
        })
    }
}

/// What a streaming route's handler returns: its reply messages, each `Ok` or an error that
/// ends the call with that status.
pub trait ReplyStream<Rep>: Stream<Item = Result<Rep, Status>> + Send + 'static {}

impl<Rep, S: Stream<Item = Result<Rep, Status>> + Send + 'static> ReplyStream<Rep> for S {}

/// A boxed stream of replies: what generated service traits return from streaming methods
/// (`Ok(Box::pin(stream))`), so an implementation may return any stream.
pub type Replies<Rep> = Pin<Box<dyn Stream<Item = Result<Rep, Status>> + Send + 'static>>;

/// The three shapes of streaming handler, with their message types erased.
pub(crate) trait ErasedStreamHandler: Send + Sync + 'static {
    fn call(
        &self,
        requests: MessageStream,
        ctx: CallContext,
    ) -> BoxFuture<Result<MessageStream, Status>>;
}

fn encode_all<Rep: Message + 'static>(
    replies: impl Stream<Item = Result<Rep, Status>> + Send + 'static,
) -> MessageStream {
    Box::pin(replies.map(|r| r.map(|m| Bytes::from(m.encode_to_vec()))))
}

/// One request, many replies.
pub(crate) struct ServerStreaming<F, Req, Rep> {
    pub(crate) f: Arc<F>,
    pub(crate) _types: PhantomData<fn(Req) -> Rep>,
}

impl<F, Fut, S, Req, Rep> ErasedStreamHandler for ServerStreaming<F, Req, Rep>
where
    F: Fn(Request<Req>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<S, Status>> + Send + 'static,
    S: ReplyStream<Rep>,
    Req: Message + Default + Send + 'static,
    Rep: Message + 'static,
{
    fn call(
        &self,
        requests: MessageStream,
        ctx: CallContext,
    ) -> BoxFuture<Result<MessageStream, Status>> {
        let f = Arc::clone(&self.f);
        Box::pin(async move {
            let mut requests = Streaming::<Req>::new(requests);
            let request = requests.message().await?.ok_or_else(|| {
                Status::invalid_argument("a server-streaming call takes one request message")
            })?;
            Ok(encode_all(f(Request::new(request, ctx)).await?))
        })
    }
}

/// Many requests, one reply.
pub(crate) struct ClientStreaming<F, Req, Rep> {
    pub(crate) f: F,
    pub(crate) _types: PhantomData<fn(Req) -> Rep>,
}

impl<F, Fut, Req, Rep> ErasedStreamHandler for ClientStreaming<F, Req, Rep>
where
    F: Fn(Request<Streaming<Req>>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Rep, Status>> + Send + 'static,
    Req: Message + Default + Send + 'static,
    Rep: Message + 'static,
{
    fn call(
        &self,
        requests: MessageStream,
        ctx: CallContext,
    ) -> BoxFuture<Result<MessageStream, Status>> {
        let reply = (self.f)(Request::new(Streaming::new(requests), ctx));
        Box::pin(async move {
            let reply = reply.await?;
            Ok(encode_all(futures_util::stream::once(
                async move { Ok(reply) },
            )))
        })
    }
}

/// Many requests, many replies.
pub(crate) struct Bidirectional<F, Req, Rep> {
    pub(crate) f: F,
    pub(crate) _types: PhantomData<fn(Req) -> Rep>,
}

impl<F, Fut, S, Req, Rep> ErasedStreamHandler for Bidirectional<F, Req, Rep>
where
    F: Fn(Request<Streaming<Req>>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<S, Status>> + Send + 'static,
    S: ReplyStream<Rep>,
    Req: Message + Default + Send + 'static,
    Rep: Message + 'static,
{
    fn call(
        &self,
        requests: MessageStream,
        ctx: CallContext,
    ) -> BoxFuture<Result<MessageStream, Status>> {
        let replies = (self.f)(Request::new(Streaming::new(requests), ctx));
        Box::pin(async move { Ok(encode_all(replies.await?)) })
    }
}

/// The request messages read off `recv`, one frame each, when asked for.
fn request_messages(reader: FrameReader, recv: RecvStream) -> MessageStream {
    let stream = futures_util::stream::unfold(Some((reader, recv)), |state| async move {
        let (mut reader, mut recv) = state?;
        match reader.read_frame(&mut recv).await {
            Ok(frame) => match caller_frame(frame) {
                Ok(message) => Some((Ok(message), Some((reader, recv)))),
                Err(e) => {
                    let _ = recv.stop(VarInt::from_u32(close::stream::MALFORMED));
                    Some((Err(Status::invalid_argument(e.to_string())), None))
                }
            },
            // The client finished sending.
            Err(ReadError::Empty) => None,
            Err(ReadError::Reset(_)) => Some((
                Err(Status::cancelled("the client cancelled its messages")),
                None,
            )),
            // Bad bytes are refused as on a CALL stream: stop reading with the matching code.
            Err(e) => {
                let status = match refusal(e) {
                    Refused::Reply(status, code) => {
                        if let Some(code) = code {
                            let _ = recv.stop(VarInt::from_u32(code));
                        }
                        status
                    }
                    Refused::Reset(code) => {
                        let _ = recv.stop(VarInt::from_u32(code));
                        Status::invalid_argument("malformed request stream")
                    }
                    Refused::Gone => Status::unavailable("the connection is gone"),
                };
                Some((Err(status), None))
            }
        }
    });
    Box::pin(stream)
}

/// Far enough ahead to mean "no deadline" for a stream the caller set none for.
fn no_deadline() -> Instant {
    Instant::now() + std::time::Duration::from_secs(100 * 365 * 86_400)
}

/// Serves one STREAMING stream whose `CallHeader` has been read: checks the route and the
/// login, runs the handler, writes its messages as QUIC takes them, then the end frame.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    session: &SessionHandle,
    peer: SocketAddr,
    header: CallHeader,
    started: Instant,
    (send, recv, reader): (SendStream, RecvStream, FrameReader),
) {
    let span = tracing::info_span!(
        "stream",
        route = %header.route,
        session = %session.id(),
        status = tracing::field::Empty,
        messages_out = tracing::field::Empty,
    );
    let mut send = send;
    let mut owed = ReplyOwed {
        send: &mut send,
        armed: true,
    };
    run(
        shared, session, peer, header, started, owed.send, recv, reader,
    )
    .instrument(span)
    .await;
    owed.armed = false;
}

#[allow(clippy::too_many_arguments)]
async fn run(
    shared: &Arc<Shared>,
    session: &SessionHandle,
    peer: SocketAddr,
    header: CallHeader,
    started: Instant,
    send: &mut SendStream,
    recv: RecvStream,
    reader: FrameReader,
) {
    let state = &session.state;
    state.touch(now_secs());
    let epoch = state.login_epoch();
    let route = shared.router.get(&header.route);
    let stats = route.map_or(&shared.router.unrouted, |r| &r.stats);
    let admitted = match route {
        None => Err(no_route(&header.route)),
        Some(route) => route.streaming_for(session).map(|handler| (route, handler)),
    };
    let (route, handler) = match admitted {
        Ok(found) => found,
        Err(status) => {
            drop(recv);
            end(send, &Ended::Status(status), None, stats, started, 0).await;
            return;
        }
    };
    let deadline = match header.timeout_ms {
        0 => no_deadline(),
        ms => started + std::time::Duration::from_millis(ms),
    };
    let ctx = CallContext {
        route: Arc::clone(&route.name),
        session: session.clone(),
        peer,
        metadata: header.metadata,
        deadline,
    };
    let in_flight = crate::call::InFlight::enter(state, &shared.sessions);
    let requests = request_messages(reader, recv);
    let mut sent = 0u64;
    let mut expiry = std::pin::pin!(tokio::time::sleep_until(deadline));
    let outcome: Result<(), Ended> = async {
        let cancelled = || Ended::Reset(Status::cancelled("the client cancelled the call"));
        let mut replies = tokio::select! {
            biased;
            r = handler.call(requests, ctx) => r.map_err(Ended::Status)?,
            _ = send.stopped() => return Err(cancelled()),
            () = &mut expiry => return Err(Ended::Status(past(&route.name))),
        };
        let mut batch = Batch::default();
        loop {
            let next = tokio::select! {
                biased;
                next = replies.next() => next,
                _ = send.stopped() => return Err(cancelled()),
                () = &mut expiry => return Err(Ended::Status(past(&route.name))),
            };
            // The first message, then whatever else the handler has ready, in one write.
            let mut end = batch.take(next);
            while end.is_none() && !batch.is_full() {
                match replies.next().now_or_never() {
                    Some(next) => end = batch.take(next),
                    None => break,
                }
            }
            let count = batch.count;
            let write = send.write_all_chunks(batch.chunks());
            tokio::select! {
                r = write => if r.is_err() {
                    return Err(cancelled());
                },
                // The client reads too slowly for even the end to get through: reset.
                () = &mut expiry => return Err(Ended::Reset(past(&route.name))),
            }
            sent += count;
            batch.clear();
            if let Some(end) = end {
                return end.map_err(Ended::Status);
            }
        }
    }
    .await;
    drop(in_flight);
    let update = (state.login_epoch() != epoch).then(|| SessionUpdate {
        user_id: state.user_id(),
    });
    let ended = match outcome {
        Ok(()) => Ended::Status(Status::new(Code::Ok, "")),
        Err(ended) => ended,
    };
    tracing::Span::current().record("messages_out", sent);
    end(send, &ended, update, stats, started, sent).await;
}

/// How serving a streaming call ended.
enum Ended {
    /// With this status, for the end frame.
    Status(Status),
    /// Without an end frame, the stream reset: the client cancelled (`CANCELLED`), or the
    /// deadline passed while the reader held the stream full (`TIMED_OUT`).
    Reset(Status),
}

/// Reply messages gathered for one write, up to [`Batch::BYTES`]: small ones copied into one
/// buffer (QUIC packs a contiguous buffer into full packets; many tiny chunks cost a STREAM frame
/// each), large ones passed as chunks of their own without a copy.
#[derive(Default)]
struct Batch {
    chunks: Vec<Bytes>,
    small: bytes::BytesMut,
    bytes: usize,
    count: u64,
}

impl Batch {
    /// What one write gathers at most, beyond the first message.
    const BYTES: usize = 64 * 1024;
    /// Messages up to this size are copied into the shared buffer.
    const SMALL: usize = 8 * 1024;

    /// Adds the handler's next item; returns how the call ends when the item ends it.
    fn take(&mut self, next: Option<Result<Bytes, Status>>) -> Option<Result<(), Status>> {
        match next {
            Some(Ok(message)) => {
                self.bytes += message.len();
                self.count += 1;
                let head = message_head(message.len());
                if message.len() <= Self::SMALL {
                    self.small.extend_from_slice(&head);
                    self.small.extend_from_slice(&message);
                } else {
                    self.seal();
                    self.chunks.push(head);
                    self.chunks.push(message);
                }
                None
            }
            Some(Err(status)) => Some(Err(status)),
            None => Some(Ok(())),
        }
    }

    fn is_full(&self) -> bool {
        self.bytes >= Self::BYTES
    }

    /// Moves the small messages gathered so far into the chunk list.
    fn seal(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push(self.small.split().freeze());
        }
    }

    /// The chunks to write, in order.
    fn chunks(&mut self) -> &mut [Bytes] {
        self.seal();
        &mut self.chunks
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.small.clear();
        self.bytes = 0;
        self.count = 0;
    }
}

fn past(route: &str) -> Status {
    Status::deadline_exceeded(format!("`{route}` did not finish within its deadline"))
}

/// Writes the end frame (if the stream can still carry it) and finishes the stream.
async fn end(
    send: &mut SendStream,
    ended: &Ended,
    update: Option<SessionUpdate>,
    stats: &crate::stats::RouteStats,
    started: Instant,
    sent: u64,
) {
    let (Ended::Status(status) | Ended::Reset(status)) = ended;
    tracing::Span::current().record("status", status.code().as_str());
    stats.record(status.code() == Code::Ok, 0, 0, started.elapsed());
    if let Ended::Reset(status) = ended {
        tracing::debug!(sent, %status, "stream reset");
        let code = match status.code() {
            Code::DeadlineExceeded => close::stream::TIMED_OUT,
            _ => close::stream::CANCELLED,
        };
        let _ = send.reset(VarInt::from_u32(code));
        return;
    }
    if let Err(e) = send.write_all(&end_frame(status, update)).await {
        tracing::debug!(error = %e, "end of stream not delivered");
        return;
    }
    let _ = send.finish();
    tracing::debug!(sent, "stream answered");
}
