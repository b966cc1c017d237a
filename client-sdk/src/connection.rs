//! The client connection: handshake, calls, reverse calls and reconnection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use fluxon_proto::io::{
    self as wire_io, call_error_status, connection_error_message, write_frame_and_finish,
    CallError, FrameReader, ReadError,
};
use fluxon_proto::transport::{self, MaxUdpPayload};
use fluxon_proto::wire::{CallHeader, Hello, ReplyHeader, Welcome};
use fluxon_proto::{close, frame, Code, Limits, Status, StreamKind, PROTOCOL_VERSION};
use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::calls::{CallsError, CallsStream};
use crate::config::{CallOptions, ClientConfig, MAX_CALL_LANES};
use crate::endpoint::unspecified_like;
use crate::error::ConnectError;

/// How long a closing client waits for its close frame to leave.
const CLOSE_FLUSH: Duration = Duration::from_millis(500);

/// How many times an idempotent call is retried after losing its connection.
const MAX_RETRIES: u32 = 3;

/// Requests larger than this go on a stream of their own (a one-shot CALL stream) rather than
/// the shared CALLS stream, so that they do not hold up the small calls queued behind them.
const OWN_STREAM_ABOVE: usize = 64 * 1024;

/// Call headers (route and metadata) larger than this go on a stream of their own too: a
/// server refuses a header over its limit (64 KiB unless configured lower) by ending the stream
/// it came on, which on the shared stream would fail the calls sent after it as well.
const OWN_STREAM_HEADER_ABOVE: usize = 16 * 1024;

/// The session this client holds on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Session id (32 hex digits).
    pub id: String,
    /// Token that resumes the session (store it to resume after the app restarts).
    pub token: Vec<u8>,
    /// The logged-in user, if any.
    pub user_id: Option<i64>,
    /// Whether the last handshake resumed an existing session.
    pub resumed: bool,
    /// Largest call payload the server accepts.
    pub max_message_size: usize,
}

impl SessionInfo {
    fn from_welcome(w: Welcome) -> Self {
        Self {
            id: w.session_id,
            token: w.session_token,
            user_id: w.user_id,
            resumed: w.resumed,
            max_message_size: usize::try_from(w.max_message_size).unwrap_or(usize::MAX),
        }
    }
}

/// One CALLS stream slot.
#[derive(Default)]
struct Lane {
    stream: Mutex<Option<Arc<CallsStream>>>,
    /// Held while the lane's stream is being opened, so concurrent calls open only one.
    opening: tokio::sync::Mutex<()>,
}

/// State of the underlying QUIC connection.
#[derive(Clone, Debug)]
enum Link {
    Up(quinn::Connection),
    Reconnecting,
    Closed(Status),
}

struct Shared {
    /// The address given to `connect`, first of the candidates at each reconnection.
    origin: SocketAddr,
    /// The address of the server the client talks to now.
    addr: Mutex<SocketAddr>,
    config: ClientConfig,
    quic: quinn::ClientConfig,
    endpoint: quinn::Endpoint,
    /// Whether `endpoint` is this connection's own (else shared, see [`ClientEndpoint`](crate::ClientEndpoint)).
    owns_endpoint: bool,
    link: watch::Sender<Link>,
    session: Mutex<SessionInfo>,
    /// The CALLS streams (lanes) that carry calls on the live connection.
    calls: Vec<Lane>,
    /// The lane of the next call (round robin).
    next_lane: AtomicUsize,
    closing: tokio_util_lite::Cancel,
}

/// A connection to a Fluxon server, with its session.
///
/// Cheap to clone and safe to use from many tasks at once: concurrent calls share one QUIC
/// stream, each answered as soon as its handler finishes (see `docs/protocol.md`). When the
/// connection is lost it reconnects in the background with backoff and resumes the session;
/// calls wait for it (within their deadline). Dropping the last clone closes it.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

/// Closes the connection when the last [`Connection`] clone is dropped.
struct Owner(tokio_util_lite::Cancel);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &*lock(&self.shared.addr))
            .field("session", &self.shared.session().id)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn session(&self) -> MutexGuard<'_, SessionInfo> {
        lock(&self.session)
    }

    /// The live connection, unless it is `dead` (the one a call just lost) or there is none:
    /// every call's fast path, without subscribing to the link.
    ///
    /// Comparing stable ids rather than asking quinn whether the connection is closed keeps the
    /// connection's lock off the hot path of every call.
    fn ready_connection(&self, dead: Option<usize>) -> Option<quinn::Connection> {
        match &*self.link.borrow() {
            Link::Up(c) if Some(c.stable_id()) != dead => Some(c.clone()),
            _ => None,
        }
    }

    /// Waits for a connection other than `dead` (one a call just lost), or the status that
    /// closed the client.
    async fn connection(&self, dead: Option<usize>) -> Result<quinn::Connection, Status> {
        let mut rx = self.link.subscribe();
        let link = rx
            .wait_for(|link| match link {
                Link::Up(c) => Some(c.stable_id()) != dead,
                Link::Reconnecting => false,
                Link::Closed(_) => true,
            })
            .await
            .map_err(|_| Status::unavailable("the connection is closed"))?;
        match &*link {
            Link::Up(c) => Ok(c.clone()),
            Link::Closed(status) => Err(status.clone()),
            Link::Reconnecting => Err(Status::unavailable("reconnecting")),
        }
    }

    /// Performs one call on `conn`: on the connection's CALLS stream, sent again once on a new
    /// one if the stream ended before the server took it; a large request on a stream of its
    /// own.
    async fn call_on(
        &self,
        conn: &quinn::Connection,
        header: &mut CallHeader,
        payload: &Bytes,
    ) -> Result<(ReplyHeader, Bytes), CallsError> {
        if payload.len() > OWN_STREAM_ABOVE || header.encoded_len() > OWN_STREAM_HEADER_ABOVE {
            return wire_io::call(conn, header, payload.clone(), self.limits())
                .await
                .map_err(CallsError::Failed);
        }
        match self.call_on_stream(conn, header, payload).await {
            Err(CallsError::NotTaken) => {
                tracing::debug!("call stream ended before the server took the call; resending");
                self.call_on_stream(conn, header, payload).await
            }
            outcome => outcome,
        }
    }

    /// One attempt of a call on the connection's CALLS stream.
    async fn call_on_stream(
        &self,
        conn: &quinn::Connection,
        header: &mut CallHeader,
        payload: &Bytes,
    ) -> Result<(ReplyHeader, Bytes), CallsError> {
        let stream = self
            .calls_stream(conn)
            .await
            .map_err(|e| CallsError::Failed(CallError::Open(e)))?;
        stream.call(header, payload.clone()).await
    }

    /// The CALLS stream of `conn`, opened now if there is none or the last one ended.
    async fn calls_stream(
        &self,
        conn: &quinn::Connection,
    ) -> Result<Arc<CallsStream>, quinn::ConnectionError> {
        let usable = |slot: &Option<Arc<CallsStream>>| {
            slot.as_ref()
                .filter(|stream| stream.is_usable(conn))
                .cloned()
        };
        let turn = self.next_lane.fetch_add(1, Ordering::Relaxed);
        let Some(lane) = self.calls.get(turn % self.calls.len().max(1)) else {
            return Err(quinn::ConnectionError::LocallyClosed);
        };
        if let Some(stream) = usable(&lock(&lane.stream)) {
            return Ok(stream);
        }
        let _opening = lane.opening.lock().await;
        if let Some(stream) = usable(&lock(&lane.stream)) {
            return Ok(stream);
        }
        let stream = Arc::new(CallsStream::open(conn, self.limits()).await?);
        *lock(&lane.stream) = Some(Arc::clone(&stream));
        Ok(stream)
    }

    fn apply(&self, reply: &ReplyHeader) {
        if let Some(update) = &reply.session {
            self.session().user_id = update.user_id;
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_header: Limits::DEFAULT_MAX_HEADER,
            max_payload: self.config.max_message_size,
        }
    }
}

impl Connection {
    /// Connects to the server at `addr` and starts (or, with a resume token, resumes) a session.
    pub async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Self, ConnectError> {
        let max_udp_payload = MaxUdpPayload::new(config.max_udp_payload)
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        let mut quic = quinn::ClientConfig::new(config.trust.quic_config()?);
        let mut settings = quinn::TransportConfig::default();
        // Fluxon's receive windows (large downloads over long paths) and the datagram bound.
        config.congestion.apply(&mut settings);
        transport::configure(&mut settings, max_udp_payload)
            .keep_alive_interval(Some(config.keep_alive))
            .max_idle_timeout(Some(
                config
                    .idle_timeout
                    .try_into()
                    .map_err(|_| ConnectError::Config("idle timeout is too large".into()))?,
            ))
            .max_concurrent_bidi_streams(64u32.into())
            .max_concurrent_uni_streams(0u32.into());
        quic.transport_config(Arc::new(settings));
        let (endpoint, owns_endpoint) = match &config.endpoint {
            Some(shared) => (shared.quinn().clone(), false),
            None => (
                transport::bind_endpoint(unspecified_like(addr), max_udp_payload, None)
                    .map_err(ConnectError::Socket)?,
                true,
            ),
        };
        let (conn, welcome, addr) = establish_any(&endpoint, &quic, addr, &config).await?;
        let closing = tokio_util_lite::Cancel::new();
        let shared = Arc::new(Shared {
            origin: addr,
            addr: Mutex::new(addr),
            quic,
            endpoint,
            owns_endpoint,
            link: watch::Sender::new(Link::Up(conn.clone())),
            session: Mutex::new(SessionInfo::from_welcome(welcome)),
            calls: (0..config.call_lanes.clamp(1, MAX_CALL_LANES))
                .map(|_| Lane::default())
                .collect(),
            next_lane: AtomicUsize::new(0),
            closing: closing.clone(),
            config,
        });
        tracing::info!(%addr, session = %shared.session().id, "connected");
        tokio::spawn(drive(Arc::clone(&shared), conn));
        Ok(Self {
            shared,
            _owner: Arc::new(Owner(closing)),
        })
    }

    /// Calls `route` with `request` and the default options.
    pub async fn call<Req, Rep>(&self, route: &str, request: &Req) -> Result<Rep, Status>
    where
        Req: Message,
        Rep: Message + Default,
    {
        self.call_with(route, request, CallOptions::default()).await
    }

    /// Calls `route` with `request`.
    ///
    /// Fails with the server's status, or with `deadline_exceeded` when no reply comes in time,
    /// or `unavailable` when the connection is lost during the call (retried on the reconnected
    /// session first when `options.idempotent`). Dropping the future cancels the call.
    pub async fn call_with<Req, Rep>(
        &self,
        route: &str,
        request: &Req,
        options: CallOptions,
    ) -> Result<Rep, Status>
    where
        Req: Message,
        Rep: Message + Default,
    {
        let body = self
            .call_raw(route, Bytes::from(request.encode_to_vec()), options)
            .await?;
        Rep::decode(body).map_err(|e| Status::internal(format!("malformed reply payload: {e}")))
    }

    /// Calls `route` with an already encoded request and returns the encoded reply: what
    /// language bindings and generic tools build their typed calls on. Behaves as
    /// [`call_with`](Self::call_with) otherwise (deadlines, retries, cancellation on drop).
    pub async fn call_raw(
        &self,
        route: &str,
        payload: Bytes,
        options: CallOptions,
    ) -> Result<Bytes, Status> {
        let shared = &self.shared;
        let timeout = options.timeout.unwrap_or(shared.config.default_timeout);
        let deadline = Instant::now() + timeout;
        let max = shared.session().max_message_size;
        if payload.len() > max {
            return Err(Status::resource_exhausted(format!(
                "request of {} bytes exceeds the server's limit of {max} bytes",
                payload.len()
            )));
        }
        let mut header = CallHeader {
            route: route.to_owned(),
            metadata: options.metadata,
            ..Default::default()
        };
        let mut retries = 0;
        let mut lost = None;
        loop {
            let conn = match shared.ready_connection(lost) {
                Some(conn) => conn,
                None => tokio::time::timeout_at(deadline, shared.connection(lost))
                    .await
                    .map_err(|_| {
                        Status::deadline_exceeded(format!(
                            "no connection to the server within {timeout:?}"
                        ))
                    })??,
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            header.timeout_ms = u64::try_from(remaining.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let outcome =
                tokio::time::timeout_at(deadline, shared.call_on(&conn, &mut header, &payload))
                    .await;
            match outcome {
                Err(_) => {
                    return Err(Status::deadline_exceeded(format!(
                        "no reply to `{route}` within {timeout:?}"
                    )))
                }
                Ok(Ok((reply, body))) => {
                    shared.apply(&reply);
                    if reply.code != Code::Ok.as_u32() {
                        return Err(Status::from_wire(reply.code, reply.message));
                    }
                    return Ok(body);
                }
                Ok(Err(CallsError::Failed(e))) if connection_lost(&e) => {
                    if options.idempotent && retries < MAX_RETRIES {
                        retries += 1;
                        lost = Some(conn.stable_id());
                        tracing::debug!(
                            route,
                            retries,
                            "connection lost; retrying idempotent call"
                        );
                        continue;
                    }
                    let status = call_error_status(&e);
                    return Err(Status::unavailable(if options.idempotent {
                        format!("{} (gave up after {retries} retries)", status.message())
                    } else {
                        format!(
                            "{}; `{route}` is not idempotent, so it was not retried",
                            status.message()
                        )
                    }));
                }
                Ok(Err(CallsError::Failed(e))) => return Err(call_error_status(&e)),
                Ok(Err(CallsError::Status(status))) => return Err(status),
                // `call_on` already sent it again once.
                Ok(Err(CallsError::NotTaken)) => {
                    return Err(Status::unavailable(format!(
                        "the server ended two call streams without taking `{route}`"
                    )))
                }
            }
        }
    }

    /// The session this client holds.
    pub fn session(&self) -> SessionInfo {
        self.shared.session().clone()
    }

    /// The logged-in user, as of the last reply that changed it.
    pub fn user_id(&self) -> Option<i64> {
        self.shared.session().user_id
    }

    /// Whether a live QUIC connection is up right now.
    pub fn is_connected(&self) -> bool {
        matches!(&*self.shared.link.borrow(), Link::Up(c) if c.close_reason().is_none())
    }

    /// The underlying QUIC connection while one is up: an escape hatch for diagnostics and
    /// protocol tests. Streams opened on it bypass the SDK.
    #[doc(hidden)]
    pub fn raw_connection(&self) -> Option<quinn::Connection> {
        match &*self.shared.link.borrow() {
            Link::Up(c) => Some(c.clone()),
            _ => None,
        }
    }

    /// Opens a bidirectional stream of `kind` (its kind byte already written), waiting up to
    /// the default call timeout for a live connection. For protocols beside calls, such as cloud
    /// storage (see [`CloudStorageConnector`](crate::CloudStorageConnector)); dropping the send
    /// side without finishing it finishes the stream, so reset it to cancel.
    pub async fn open_stream(
        &self,
        kind: StreamKind,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), Status> {
        let timeout = self.shared.config.default_timeout;
        let conn = tokio::time::timeout(timeout, self.shared.connection(None))
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!("no connection to the server within {timeout:?}"))
            })??;
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| Status::unavailable(connection_error_message(&e)))?;
        send.write_all(&[kind as u8])
            .await
            .map_err(|e| Status::unavailable(format!("cannot open a stream: {e}")))?;
        Ok((send, recv))
    }

    /// Records the login change a reply carries.
    pub(crate) fn apply_reply(&self, reply: &ReplyHeader) {
        self.shared.apply(reply);
    }

    /// The largest message the server takes.
    pub(crate) fn max_message_size(&self) -> usize {
        self.shared.session().max_message_size
    }

    /// The limits replies are read with.
    pub(crate) fn reply_limits(&self) -> Limits {
        self.shared.limits()
    }

    /// The address of the server the client talks to now (after a failover, one of
    /// [`ClientConfig::nodes`]).
    pub fn remote_addr(&self) -> SocketAddr {
        *lock(&self.shared.addr)
    }

    /// Closes the connection (the session stays on the server and can be resumed by token).
    pub fn close(&self) {
        self.shared.closing.cancel();
    }

    /// Waits until the client is closed for good and returns why.
    pub async fn closed(&self) -> Status {
        let mut rx = self.shared.link.subscribe();
        let status = match rx.wait_for(|l| matches!(l, Link::Closed(_))).await {
            Ok(link) => match &*link {
                Link::Closed(status) => status.clone(),
                _ => Status::unavailable("closed"),
            },
            Err(_) => Status::unavailable("closed"),
        };
        status
    }
}

fn connection_lost(err: &CallError) -> bool {
    matches!(
        err,
        CallError::Open(_)
            | CallError::Read(ReadError::ConnectionLost(_))
            | CallError::Write(quinn::WriteError::ConnectionLost(_))
    )
}

/// Connects to `first`, or when it cannot be reached, to the configured nodes in turn: the
/// connection, the session and the address that answered. A refusal (the session, the
/// protocol) is final: another node would say the same.
async fn establish_any(
    endpoint: &quinn::Endpoint,
    quic: &quinn::ClientConfig,
    first: SocketAddr,
    config: &ClientConfig,
) -> Result<(quinn::Connection, Welcome, SocketAddr), ConnectError> {
    let token = config.resume_token.as_deref();
    let candidates = if config.nodes.is_empty() {
        vec![first]
    } else {
        crate::nodes::candidates(first, &config.nodes).await
    };
    let mut last = None;
    for addr in candidates {
        match establish(endpoint, quic, addr, config, token).await {
            Ok((conn, welcome)) => return Ok((conn, welcome, addr)),
            Err(e @ (ConnectError::Refused(_) | ConnectError::Config(_))) => return Err(e),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "cannot connect; trying the next node");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(ConnectError::TimedOut(first)))
}

/// Opens a QUIC connection and performs the handshake.
async fn establish(
    endpoint: &quinn::Endpoint,
    quic: &quinn::ClientConfig,
    addr: SocketAddr,
    config: &ClientConfig,
    resume_token: Option<&[u8]>,
) -> Result<(quinn::Connection, Welcome), ConnectError> {
    let fail = |reason: String| ConnectError::Connect { addr, reason };
    let attempt = async {
        let conn = endpoint
            .connect_with(quic.clone(), addr, &config.server_name)
            .map_err(|e| fail(e.to_string()))?
            .await
            .map_err(|e| fail(connection_error_message(&e)))?;
        let welcome = handshake(&conn, config, resume_token)
            .await
            .map_err(|e| match e {
                HandshakeFailure::Refused(status) => ConnectError::Refused(status),
                HandshakeFailure::Lost(e) => {
                    refusal_from_close(&e).unwrap_or_else(|| fail(connection_error_message(&e)))
                }
                HandshakeFailure::Garbled(why) => fail(why),
            })?;
        Ok((conn, welcome))
    };
    tokio::time::timeout(config.connect_timeout, attempt)
        .await
        .map_err(|_| ConnectError::TimedOut(addr))?
}

enum HandshakeFailure {
    Refused(Status),
    Lost(quinn::ConnectionError),
    Garbled(String),
}

/// A connection closed during the handshake with a refusal code means the session was refused.
fn refusal_from_close(err: &quinn::ConnectionError) -> Option<ConnectError> {
    let quinn::ConnectionError::ApplicationClosed(c) = err else {
        return None;
    };
    let code = u32::try_from(c.error_code.into_inner()).ok()?;
    let message = String::from_utf8_lossy(&c.reason).into_owned();
    match code {
        close::connection::HANDSHAKE_REFUSED | close::connection::SESSION_EXPIRED => {
            Some(ConnectError::Refused(Status::unauthenticated(message)))
        }
        close::connection::SERVER_BUSY => {
            Some(ConnectError::Refused(Status::resource_exhausted(message)))
        }
        _ => None,
    }
}

async fn handshake(
    conn: &quinn::Connection,
    config: &ClientConfig,
    resume_token: Option<&[u8]>,
) -> Result<Welcome, HandshakeFailure> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(HandshakeFailure::Lost)?;
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        resume_token: resume_token.map(<[u8]>::to_vec).unwrap_or_default(),
        client_name: config.client_name.clone(),
    };
    let head = frame::encode_head(Some(StreamKind::Hello), &hello, 0);
    write_frame_and_finish(&mut send, head, Bytes::new())
        .await
        .map_err(|e| match e {
            quinn::WriteError::ConnectionLost(e) => HandshakeFailure::Lost(e),
            other => HandshakeFailure::Garbled(other.to_string()),
        })?;
    let mut reader = FrameReader::new(Limits {
        max_header: Limits::DEFAULT_MAX_HEADER,
        max_payload: 0,
    });
    let frame = reader
        .read_last_frame(&mut recv)
        .await
        .map_err(|e| match e {
            ReadError::ConnectionLost(e) => HandshakeFailure::Lost(e),
            other => HandshakeFailure::Garbled(format!("bad handshake reply: {other}")),
        })?;
    let welcome: Welcome = frame
        .decode_header()
        .map_err(|e| HandshakeFailure::Garbled(format!("bad handshake reply: {e}")))?;
    if welcome.code != Code::Ok.as_u32() {
        return Err(HandshakeFailure::Refused(Status::from_wire(
            welcome.code,
            welcome.message,
        )));
    }
    Ok(welcome)
}

/// Background task: serves reverse calls, notices a lost connection and reconnects.
async fn drive(shared: Arc<Shared>, mut conn: quinn::Connection) {
    loop {
        let reason = tokio::select! {
            _ = shared.closing.cancelled() => {
                conn.close(close::connection::NORMAL.into(), b"client closed");
                shared.link.send_replace(Link::Closed(Status::cancelled("the client closed the connection")));
                // The close frame is sent by the endpoint's driver: keep an endpoint of our own
                // alive until it has gone out, or the server only notices at its idle timeout.
                // A shared endpoint outlives this connection (and waiting for it to be idle
                // would wait for its other connections).
                if shared.owns_endpoint {
                    let _ = tokio::time::timeout(CLOSE_FLUSH, shared.endpoint.wait_idle()).await;
                }
                return;
            }
            reason = serve_reverse_calls(&shared, &conn) => reason,
        };
        let message = connection_error_message(&reason);
        tracing::info!(reason = %message, "connection lost");
        if !shared.config.reconnect.enabled || is_final(&reason) {
            shared
                .link
                .send_replace(Link::Closed(Status::unavailable(message)));
            return;
        }
        shared.link.send_replace(Link::Reconnecting);
        match reconnect(&shared).await {
            Some(new) => {
                conn = new;
                shared.link.send_replace(Link::Up(conn.clone()));
            }
            None => return,
        }
    }
}

/// Closes that end the client instead of triggering a reconnect.
fn is_final(reason: &quinn::ConnectionError) -> bool {
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            c.error_code.into_inner() == u64::from(close::connection::KICKED)
        }
        quinn::ConnectionError::LocallyClosed => true,
        _ => false,
    }
}

/// Reconnects with backoff, resuming the session (or starting a new one if the server no longer
/// knows it). `None` when the client was closed or gave up; the link is then `Closed`.
async fn reconnect(shared: &Arc<Shared>) -> Option<quinn::Connection> {
    let policy = shared.config.reconnect;
    let mut attempt = 0u32;
    loop {
        tokio::select! {
            _ = shared.closing.cancelled() => {
                shared.link.send_replace(Link::Closed(Status::cancelled("the client closed the connection")));
                return None;
            }
            _ = tokio::time::sleep(policy.backoff(attempt)) => {}
        }
        let token = shared.session().token.clone();
        let current = *lock(&shared.addr);
        let target = if shared.config.nodes.is_empty() {
            current
        } else {
            let candidates = crate::nodes::candidates(shared.origin, &shared.config.nodes).await;
            crate::nodes::pick(&candidates, current, attempt)
        };
        let result = match establish(
            &shared.endpoint,
            &shared.quic,
            target,
            &shared.config,
            Some(&token),
        )
        .await
        {
            Err(ConnectError::Refused(status)) if status.code() == Code::Unauthenticated => {
                tracing::warn!(reason = %status, "session could not be resumed; starting a new one");
                establish(&shared.endpoint, &shared.quic, target, &shared.config, None).await
            }
            other => other,
        };
        match result {
            Ok((conn, welcome)) => {
                let info = SessionInfo::from_welcome(welcome);
                tracing::info!(session = %info.id, resumed = info.resumed, attempt, addr = %target, "reconnected");
                *shared.session() = info;
                *lock(&shared.addr) = target;
                return Some(conn);
            }
            Err(e) => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, addr = %target, "reconnect failed");
                if policy.max_attempts.is_some_and(|max| attempt >= max) {
                    shared
                        .link
                        .send_replace(Link::Closed(Status::unavailable(format!(
                            "gave up reconnecting after {attempt} attempts: {e}"
                        ))));
                    return None;
                }
            }
        }
    }
}

/// Accepts the server's streams (reverse calls) until the connection ends; returns why it ended.
async fn serve_reverse_calls(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
) -> quinn::ConnectionError {
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_reverse_call(Arc::clone(shared), send, recv));
            }
            Err(e) => return e,
        }
    }
}

async fn serve_reverse_call(
    shared: Arc<Shared>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let mut reader = FrameReader::new(shared.limits());
    let request = async {
        let kind = reader
            .read_kind(&mut recv)
            .await
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if StreamKind::from_byte(kind) != Some(StreamKind::Call) {
            return Err(Status::invalid_argument(format!(
                "unexpected stream kind {kind}"
            )));
        }
        let frame = reader
            .read_last_frame(&mut recv)
            .await
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let header: CallHeader = frame.decode_header()?;
        Ok((header, frame.payload))
    };
    let result = match tokio::time::timeout(Duration::from_secs(10), request).await {
        Err(_) => Err(Status::deadline_exceeded(
            "reverse call not delivered in time",
        )),
        Ok(Err(status)) => Err(status),
        Ok(Ok((header, payload))) => match shared.config.reverse.get(&header.route) {
            None => Err(Status::not_found(format!(
                "this client handles no reverse call `{}`",
                header.route
            ))),
            Some(handler) => {
                let handler = Arc::clone(handler);
                tokio::select! {
                    r = handler.call(payload) => r,
                    _ = send.stopped() => return,
                }
            }
        },
    };
    let (reply, body) = match result {
        Ok(body) => (ReplyHeader::default(), body),
        Err(status) => (
            ReplyHeader {
                code: status.code().as_u32(),
                message: status.message().to_owned(),
                ..Default::default()
            },
            Bytes::new(),
        ),
    };
    let head = frame::encode_head(None, &reply, body.len());
    if let Err(e) = write_frame_and_finish(&mut send, head, body).await {
        tracing::debug!(error = %e, "reverse-call reply not delivered");
    }
}

/// A tiny cancellation flag on top of `watch`, so the SDK needs no extra dependency.
mod tokio_util_lite {
    use tokio::sync::watch;

    #[derive(Clone, Debug)]
    pub(super) struct Cancel(std::sync::Arc<watch::Sender<bool>>);

    impl Cancel {
        pub(super) fn new() -> Self {
            Self(std::sync::Arc::new(watch::Sender::new(false)))
        }

        pub(super) fn cancel(&self) {
            self.0.send_replace(true);
        }

        pub(super) async fn cancelled(&self) {
            let mut rx = self.0.subscribe();
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}
