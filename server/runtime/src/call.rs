//! Serving one stream opened by a client: read the request, run its handler, write the reply.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use fluxon_proto::io::{write_frame_and_finish, FrameReader, ReadError};
use fluxon_proto::wire::{CallHeader, ReplyHeader, SessionUpdate};
use fluxon_proto::{close, frame, Code, FrameError, Status, StreamKind};
use quinn::{RecvStream, SendStream, VarInt};
use tokio::time::Instant;
use tracing::Instrument;

use crate::request::CallContext;
use crate::router::no_route;
use crate::server::{now_secs, Shared};
use crate::session::{Registry, SessionHandle, SessionId, SessionState};

/// A boxed future, as returned by [`StreamService::serve`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A service that serves the streams of a kind other than calls (today: cloud storage,
/// [`StreamKind::Storage`]), registered with [`Server::bind_with`](crate::Server::bind_with).
///
/// The server reads a stream's kind byte, then hands the stream over whole: the service owns
/// both directions and everything after the kind byte (some of which may already be buffered,
/// see [`ServiceStream::buffered`]). The task runs under the server's call tracker, so a graceful
/// shutdown waits for it within its grace period.
pub trait StreamService: Send + Sync + 'static {
    /// Serves one stream to its end.
    fn serve(&self, stream: ServiceStream) -> BoxFuture<()>;
}

/// A stream handed to a [`StreamService`], with who opened it.
#[derive(Debug)]
#[non_exhaustive]
pub struct ServiceStream {
    /// The session of the connection the stream belongs to.
    pub session_id: SessionId,
    /// The session's logged-in user when the stream was opened.
    pub user_id: Option<i64>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The server's sending side.
    pub send: SendStream,
    /// The client's sending side, positioned after the bytes in `buffered`.
    pub recv: RecvStream,
    /// Bytes already read from `recv` after the kind byte; they come first.
    pub buffered: Bytes,
}

impl ServiceStream {
    /// A stream for `session_id` (for servers other than [`Server`](crate::Server) that accept
    /// connections themselves, such as a storage-only endpoint).
    pub fn new(
        session_id: SessionId,
        user_id: Option<i64>,
        peer: SocketAddr,
        send: SendStream,
        recv: RecvStream,
        buffered: Bytes,
    ) -> Self {
        Self {
            session_id,
            user_id,
            peer,
            send,
            recv,
            buffered,
        }
    }
}

/// The [`StreamService`]s a server runs beside its router.
#[derive(Clone, Default)]
pub struct StreamServices {
    storage: Option<Arc<dyn StreamService>>,
}

impl std::fmt::Debug for StreamServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamServices")
            .field("storage", &self.storage.is_some())
            .finish()
    }
}

impl StreamServices {
    /// No services: storage streams are answered `unimplemented`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves [`StreamKind::Storage`] streams with `service`.
    pub fn storage(mut self, service: Arc<dyn StreamService>) -> Self {
        self.storage = Some(service);
        self
    }

    fn get(&self, kind: StreamKind) -> Option<&Arc<dyn StreamService>> {
        match kind {
            StreamKind::Storage => self.storage.as_ref(),
            StreamKind::Hello | StreamKind::Call | StreamKind::Calls | StreamKind::Streaming => {
                None
            }
        }
    }
}

/// What went wrong reading a request, and how to answer it.
pub(crate) enum Refused {
    /// Answer with this status (the stream is still writable).
    Reply(Status, Option<u32>),
    /// Nothing sensible to answer: reset both directions with this code.
    Reset(u32),
    /// The stream or connection is gone.
    Gone,
}

pub(crate) fn refusal(err: ReadError) -> Refused {
    match err {
        ReadError::Frame(FrameError::PayloadTooLarge { len, max }) => Refused::Reply(
            Status::resource_exhausted(format!(
                "message of {len} bytes exceeds the limit of {max} bytes"
            )),
            Some(close::stream::TOO_LARGE),
        ),
        ReadError::Frame(FrameError::HeaderTooLarge { len, max }) => Refused::Reply(
            Status::resource_exhausted(format!(
                "call header of {len} bytes exceeds the limit of {max} bytes"
            )),
            Some(close::stream::TOO_LARGE),
        ),
        ReadError::Frame(e) => Refused::Reply(
            Status::invalid_argument(format!("malformed frame: {e}")),
            Some(close::stream::MALFORMED),
        ),
        ReadError::TrailingData => Refused::Reply(
            Status::invalid_argument("a call stream carries exactly one frame"),
            Some(close::stream::MALFORMED),
        ),
        ReadError::Empty => Refused::Reset(close::stream::MALFORMED),
        _ => Refused::Gone,
    }
}

/// What the first read of a stream found.
enum Opened {
    /// A one-shot call ([`StreamKind::Call`]), ending with its reply.
    Call(CallHeader, Bytes),
    /// A stream of many calls ([`StreamKind::Calls`]), served by [`crate::calls`].
    Calls,
    /// A streaming call ([`StreamKind::Streaming`]), served by [`crate::streaming`].
    Streaming(CallHeader),
    /// A stream for a registered [`StreamService`].
    Service,
}

/// Serves one bidirectional stream the client opened after its handshake.
pub(crate) async fn serve_stream(
    shared: Arc<Shared>,
    session: SessionHandle,
    peer: SocketAddr,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let started = Instant::now();
    let mut reader = FrameReader::new(shared.config.limits.frame_limits());
    let read = async {
        let kind = reader.read_kind(&mut recv).await.map_err(refusal)?;
        match StreamKind::from_byte(kind) {
            Some(StreamKind::Call) => {}
            Some(StreamKind::Calls) => return Ok(Opened::Calls),
            Some(StreamKind::Streaming) => {
                let (header, payload) = read_call(&mut reader, &mut recv, Ending::KeepOpen).await?;
                if !payload.is_empty() {
                    return Err(Refused::Reply(
                        Status::invalid_argument(
                            "a streaming call's header frame carries no message",
                        ),
                        Some(close::stream::MALFORMED),
                    ));
                }
                return Ok(Opened::Streaming(header));
            }
            Some(kind @ StreamKind::Storage) if shared.services.get(kind).is_some() => {
                return Ok(Opened::Service);
            }
            Some(StreamKind::Storage) => {
                return Err(Refused::Reply(
                    Status::unimplemented("this server does not serve cloud storage"),
                    Some(close::stream::MALFORMED),
                ))
            }
            Some(StreamKind::Hello) | None => {
                return Err(Refused::Reply(
                    Status::invalid_argument(format!("unexpected stream kind {kind}")),
                    Some(close::stream::MALFORMED),
                ))
            }
        }
        let (header, payload) = read_call(&mut reader, &mut recv, Ending::Finish).await?;
        Ok(Opened::Call(header, payload))
    };
    let limits = &shared.config.limits;
    let read_deadline = started + limits.request_read_timeout;
    let outcome = timeout_if_pending(read_deadline, std::pin::pin!(read)).await;
    match outcome {
        Ok(Ok(Opened::Call(header, payload))) => {
            let call = Call {
                header,
                payload,
                started,
            };
            serve_call(&shared, &session, peer, call, &mut send).await;
        }
        Ok(Ok(Opened::Streaming(header))) => {
            crate::streaming::serve(
                &shared,
                &session,
                peer,
                header,
                started,
                (send, recv, reader),
            )
            .await;
        }
        Ok(Ok(Opened::Calls)) => {
            crate::calls::serve(shared, session, peer, send, recv, reader, started).await;
        }
        Ok(Ok(Opened::Service)) => {
            // A stream for a registered service: hand it over with what was read past the kind.
            if let Some(service) = shared.services.get(StreamKind::Storage) {
                let stream = ServiceStream {
                    session_id: session.id(),
                    user_id: session.user_id(),
                    peer,
                    send,
                    recv,
                    buffered: reader.into_remaining().freeze(),
                };
                session.state.touch(now_secs());
                service.serve(stream).await;
            }
        }
        Ok(Err(refused)) => refuse(peer, refused, &mut send, &mut recv).await,
        Err(TimedOut) => time_out(peer, &mut send, &mut recv),
    }
}

/// Reads one request frame and decodes its header: the last frame of a one-shot CALL stream,
/// or the next of a CALLS stream (which stays open).
pub(crate) async fn read_call(
    reader: &mut FrameReader,
    recv: &mut RecvStream,
    ending: Ending,
) -> Result<(CallHeader, Bytes), Refused> {
    let frame = match ending {
        Ending::Finish => reader.read_last_frame(recv).await,
        Ending::KeepOpen => reader.read_frame(recv).await,
    }
    .map_err(refusal)?;
    let header = frame.decode_header().map_err(|e| {
        Refused::Reply(
            Status::invalid_argument(format!("malformed call header: {e}")),
            Some(close::stream::MALFORMED),
        )
    })?;
    Ok((header, frame.payload))
}

/// Answers a request that could not be read, and ends the stream.
async fn refuse(peer: SocketAddr, refused: Refused, send: &mut SendStream, recv: &mut RecvStream) {
    match refused {
        Refused::Reply(status, stop) => {
            tracing::debug!(%peer, status = %status, "request refused");
            if let Some(code) = stop {
                let _ = recv.stop(VarInt::from_u32(code));
            }
            write_reply(send, reply_header(&status, None), Bytes::new()).await;
        }
        Refused::Reset(code) => {
            let _ = recv.stop(VarInt::from_u32(code));
            let _ = send.reset(VarInt::from_u32(code));
        }
        Refused::Gone => {}
    }
}

/// Ends a stream whose request did not arrive in time.
fn time_out(peer: SocketAddr, send: &mut SendStream, recv: &mut RecvStream) {
    tracing::debug!(%peer, "request not delivered in time");
    let _ = recv.stop(VarInt::from_u32(close::stream::TIMED_OUT));
    let _ = send.reset(VarInt::from_u32(close::stream::TIMED_OUT));
}

/// A request read whole from its stream.
pub(crate) struct Call {
    pub(crate) header: CallHeader,
    pub(crate) payload: Bytes,
    /// When its stream was accepted (a one-shot call) or its first byte arrived (a call on a
    /// CALLS stream): the start of its deadline.
    pub(crate) started: Instant,
}

/// How a request frame ends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The last frame of a one-shot CALL stream: nothing may follow it.
    Finish,
    /// A frame of a CALLS stream: more may follow.
    KeepOpen,
}

/// Serves a one-shot call: runs it and writes its reply, which ends the stream.
async fn serve_call(
    shared: &Arc<Shared>,
    session: &SessionHandle,
    peer: SocketAddr,
    call: Call,
    send: &mut SendStream,
) {
    let mut owed = ReplyOwed { send, armed: true };
    let answer = {
        let send = &mut *owed.send;
        let stopped = async move {
            let _ = send.stopped().await;
        };
        answer(shared, session, peer, call, stopped).await
    };
    if let Some((reply, body)) = answer {
        write_reply(owed.send, reply, body).await;
    }
    owed.armed = false;
}

/// Runs one call's handler under the call's span and returns its reply header and payload, or
/// `None` when `cancelled` resolves first (the caller gave up).
pub(crate) async fn answer(
    shared: &Arc<Shared>,
    session: &SessionHandle,
    peer: SocketAddr,
    call: Call,
    cancelled: impl Future<Output = ()>,
) -> Option<(ReplyHeader, Bytes)> {
    let span = tracing::info_span!(
        "call",
        route = %call.header.route,
        session = %session.id(),
        user = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_us = tracing::field::Empty,
    );
    if !span.is_disabled() {
        if let Some(user) = session.user_id() {
            span.record("user", user);
        }
    }
    dispatch(shared, session, peer, call, cancelled)
        .instrument(span)
        .await
}

/// Resets a call's stream with [`close::stream::ABORTED`] if the call ends without its answer
/// (its handler panicked): a stream dropped unfinished would otherwise end cleanly, as if the
/// server had answered nothing on purpose. For one-shot calls and streaming calls.
pub(crate) struct ReplyOwed<'a> {
    pub(crate) send: &'a mut SendStream,
    pub(crate) armed: bool,
}

impl Drop for ReplyOwed<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.send.reset(VarInt::from_u32(close::stream::ABORTED));
        }
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    session: &SessionHandle,
    peer: SocketAddr,
    call: Call,
    cancelled: impl Future<Output = ()>,
) -> Option<(ReplyHeader, Bytes)> {
    let Call {
        header,
        payload,
        started,
    } = call;
    let state = &session.state;
    state.touch(now_secs());
    let epoch = state.login_epoch();
    let bytes_in = payload.len();
    let route = shared.router.get(&header.route);
    let stats = route.map_or(&shared.router.unrouted, |r| &r.stats);
    let admitted = match route {
        None => Err(no_route(&header.route)),
        Some(route) => route.unary_for(session).map(|handler| (route, handler)),
    };
    let result = match admitted {
        Err(status) => Err(status),
        Ok((route, handler)) => {
            let limits = &shared.config.limits;
            let timeout = match header.timeout_ms {
                0 => limits.default_call_timeout,
                ms => std::time::Duration::from_millis(ms).min(limits.default_call_timeout),
            };
            let deadline = started + timeout;
            let ctx = CallContext {
                route: Arc::clone(&route.name),
                session: session.clone(),
                peer,
                metadata: header.metadata,
                deadline,
            };
            let in_flight = InFlight::enter(state, &shared.sessions);
            let handler = handler.call(payload, ctx);
            // Biased: a handler that finishes on its first poll never touches the deadline
            // timer or the cancellation.
            let outcome = tokio::select! {
                biased;
                r = timeout_if_pending(deadline, handler) => Some(r),
                () = cancelled => None,
            };
            drop(in_flight);
            match outcome {
                Some(Ok(r)) => r,
                Some(Err(_elapsed)) => Err(Status::deadline_exceeded(format!(
                    "`{}` did not finish within {timeout:?}",
                    header.route
                ))),
                None => {
                    tracing::debug!("caller cancelled the call");
                    tracing::Span::current().record("status", Code::Cancelled.as_str());
                    stats.record(false, bytes_in, 0, started.elapsed());
                    return None;
                }
            }
        }
    };
    let session_update = (state.login_epoch() != epoch).then(|| SessionUpdate {
        user_id: state.user_id(),
    });
    let (reply, body) = match result {
        Ok(body) => (
            reply_header(&Status::new(Code::Ok, ""), session_update),
            body,
        ),
        Err(status) => (reply_header(&status, session_update), Bytes::new()),
    };
    let span = tracing::Span::current();
    span.record("status", Code::from_u32(reply.code).as_str());
    let (ok, bytes_out) = (reply.code == Code::Ok.as_u32(), body.len());
    let latency = started.elapsed();
    stats.record(ok, bytes_in, bytes_out, latency);
    span.record("latency_us", latency.as_micros() as u64);
    tracing::debug!("call answered");
    Some((reply, body))
}

/// Like [`tokio::time::timeout_at`], but the timer is only set up once `future` has been
/// pending: most requests arrive whole and most handlers finish on their first poll, and a
/// timer costs a registration with the runtime's shared timer wheel.
pub(crate) fn timeout_if_pending<F: Future + Unpin>(
    deadline: Instant,
    future: F,
) -> TimeoutIfPending<F> {
    TimeoutIfPending {
        future,
        deadline,
        sleep: None,
    }
}

/// The deadline passed first.
pub(crate) struct TimedOut;

pub(crate) struct TimeoutIfPending<F> {
    future: F,
    deadline: Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<F: Future + Unpin> Future for TimeoutIfPending<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(output) = Pin::new(&mut this.future).poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        sleep.as_mut().poll(cx).map(|()| Err(TimedOut))
    }
}

/// Counts a call in its session's `calls_in_flight` for as long as it lives, so the count
/// stays right when a handler panics or the call's task is dropped. The last call of a session
/// whose connection is gone evicts the session from memory.
pub(crate) struct InFlight<'a> {
    state: &'a SessionState,
    registry: &'a Registry,
}

impl<'a> InFlight<'a> {
    pub(crate) fn enter(state: &'a SessionState, registry: &'a Registry) -> Self {
        state.calls_in_flight.fetch_add(1, Ordering::AcqRel);
        Self { state, registry }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let before = self.state.calls_in_flight.fetch_sub(1, Ordering::AcqRel);
        if before == 1 && !self.state.is_attached() {
            self.registry.evict_if_idle(self.state.id);
        }
    }
}

pub(crate) fn reply_header(status: &Status, session: Option<SessionUpdate>) -> ReplyHeader {
    ReplyHeader {
        code: status.code().as_u32(),
        message: status.message().to_owned(),
        metadata: Default::default(),
        session,
        call_id: 0,
        end: false,
    }
}

/// Writes a reply and finishes the stream.
async fn write_reply(send: &mut SendStream, reply: ReplyHeader, body: Bytes) {
    let head = frame::encode_head(None, &reply, body.len());
    if let Err(e) = write_frame_and_finish(send, head, body).await {
        tracing::debug!(error = %e, "reply not delivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_state;

    #[tokio::test(start_paused = true)]
    async fn timeout_if_pending_answers_ready_futures_and_times_out_pending_ones() {
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let ready = timeout_if_pending(deadline, std::future::ready(7)).await;
        assert!(matches!(ready, Ok(7)));
        let mut never = timeout_if_pending(deadline, std::future::pending::<()>());
        assert!(matches!((&mut never).await, Err(TimedOut)));
        assert!(Instant::now() >= deadline, "it waited for the deadline");
        let later = Instant::now() + std::time::Duration::from_secs(5);
        let slow = Box::pin(async {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            "done"
        });
        assert!(matches!(timeout_if_pending(later, slow).await, Ok("done")));
    }

    #[test]
    fn the_last_call_of_a_detached_session_evicts_it() {
        let registry = Registry::default();
        let state = registry.insert_or_get(test_state(9, None));
        let first = InFlight::enter(&state, &registry);
        let second = InFlight::enter(&state, &registry);
        drop(first);
        assert!(
            registry.get(state.id).is_some(),
            "one call is still running"
        );
        drop(second);
        assert!(registry.get(state.id).is_none());
        assert_eq!(state.calls_in_flight.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_panicking_call_still_leaves_the_count() {
        let registry = Registry::default();
        let state = registry.insert_or_get(test_state(10, None));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _in_flight = InFlight::enter(&state, &registry);
            panic!("handler bug");
        }));
        assert!(result.is_err());
        assert_eq!(state.calls_in_flight.load(Ordering::Acquire), 0);
        assert!(registry.get(state.id).is_none());
    }
}
