//! Storage on its own endpoint (port or process), sharing the secret key and the state store
//! with the server that issues grants.
//!
//! A client connects with the session token its main connection holds: the first stream is the
//! usual `Hello` (kind 1) carrying that token as `resume_token`; the storage endpoint checks the
//! token's signature and expiry with the shared key, checks that the session still exists in the
//! shared state store (an ended or expired session is refused), and answers `Welcome` with the
//! same session id. Every later stream must be a storage stream (kind 3), served as on the main
//! endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluxon_proto::io::{write_frame_and_finish, FrameReader};
use fluxon_proto::wire::{Hello, Welcome};
use fluxon_proto::{close, frame, Code, Limits, Status, StreamKind, PROTOCOL_VERSION};
use fluxon_server::token;
use fluxon_server::{ServerConfig, SessionId};
use quinn::VarInt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::{StorageError, StorageService};

/// Time a client has to send its `Hello`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A storage-only endpoint on its own address, serving a [`StorageService`].
///
/// ```no_run
/// # async fn run() -> Result<(), fluxon_storage::StorageError> {
/// use fluxon_server::ServerConfig;
/// use fluxon_storage::{StorageConfig, StorageServer, StorageService};
///
/// // Same data directory (certificate, key) as the main server, another port.
/// let config = ServerConfig::new("127.0.0.1:7444".parse().unwrap(), "data");
/// let key = config.load_secret_key()?;
/// let state = config.open_state().await?;
/// let service = StorageService::new(StorageConfig::new("data/cloud"), key, state)?;
/// let storage = StorageServer::bind(&config, service).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct StorageServer {
    endpoint: quinn::Endpoint,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl StorageServer {
    /// Binds `config.listen` with `config`'s certificate (see
    /// [`fluxon_server::endpoint_config`]) and serves `service` there. `service` must verify
    /// grants with the key of the server that issues them.
    pub async fn bind(
        config: &ServerConfig,
        service: StorageService,
    ) -> Result<Self, StorageError> {
        let quic = fluxon_server::endpoint_config(config)?;
        let endpoint = fluxon_server::bind_endpoint(config, quic)?;
        let server = Self {
            endpoint: endpoint.clone(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        tracing::info!(addr = %server.local_addr(), "fluxon storage endpoint listening");
        let key = service.key().clone();
        let state = Arc::new(State {
            service,
            key,
            shutdown: server.shutdown.clone(),
            tasks: server.tasks.clone(),
        });
        tokio::spawn(accept_loop(state, endpoint));
        Ok(server)
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Stops accepting, lets transfers in flight finish for up to `grace`, then closes every
    /// connection with the `SHUTDOWN` close code.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.endpoint.set_server_config(None);
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
        self.endpoint
            .close(close::connection::SHUTDOWN.into(), b"server shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

struct State {
    service: StorageService,
    key: fluxon_server::SecretKey,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

async fn accept_loop(state: Arc<State>, endpoint: quinn::Endpoint) {
    loop {
        let incoming = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let state2 = Arc::clone(&state);
        state.tasks.spawn(async move {
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(error = %e, "storage connection attempt failed");
                    return;
                }
            };
            let span = tracing::info_span!("storage_connection", peer = %conn.remote_address());
            serve_connection(state2, conn).instrument(span).await;
        });
    }
}

async fn serve_connection(state: Arc<State>, conn: quinn::Connection) {
    let session = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&state, &conn)).await {
        Ok(Ok(session)) => session,
        Ok(Err(status)) => {
            tracing::info!(reason = %status, "storage handshake refused");
            conn.close(
                close::connection::HANDSHAKE_REFUSED.into(),
                status.message().as_bytes(),
            );
            return;
        }
        Err(_) => {
            conn.close(
                close::connection::PROTOCOL_ERROR.into(),
                b"handshake timed out",
            );
            return;
        }
    };
    let peer = conn.remote_address();
    loop {
        let (send, mut recv) = tokio::select! {
            _ = state.shutdown.cancelled() => { conn.closed().await; return; }
            stream = conn.accept_bi() => match stream {
                Ok(stream) => stream,
                Err(_) => return,
            },
        };
        let state2 = Arc::clone(&state);
        state.tasks.spawn(async move {
            let mut reader = FrameReader::new(Limits::default());
            match reader.read_kind(&mut recv).await {
                Ok(kind) if StreamKind::from_byte(kind) == Some(StreamKind::Storage) => {
                    let buffered: Bytes = reader.into_remaining().freeze();
                    state2
                        .service
                        .serve_stream(session, peer, send, recv, buffered)
                        .await;
                }
                _ => {
                    let mut send = send;
                    let _ = recv.stop(VarInt::from_u32(close::stream::MALFORMED));
                    let _ = send.reset(VarInt::from_u32(close::stream::MALFORMED));
                }
            }
        });
    }
}

/// Accepts a `Hello` that resumes a session whose token the shared key signed and which the
/// shared state store still holds.
async fn handshake(state: &State, conn: &quinn::Connection) -> Result<SessionId, Status> {
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|_| Status::unavailable("connection lost before the handshake"))?;
    let mut reader = FrameReader::new(Limits {
        max_header: 4096,
        max_payload: 0,
    });
    let kind = reader
        .read_kind(&mut recv)
        .await
        .map_err(|_| Status::invalid_argument("no handshake"))?;
    if StreamKind::from_byte(kind) != Some(StreamKind::Hello) {
        return Err(Status::invalid_argument(
            "the first stream must be a handshake",
        ));
    }
    let hello: Hello = reader
        .read_frame(&mut recv)
        .await
        .map_err(|_| Status::invalid_argument("malformed handshake"))?
        .decode_header()
        .map_err(|_| Status::invalid_argument("malformed handshake"))?;
    let result = if hello.protocol_version != PROTOCOL_VERSION {
        Err(Status::failed_precondition(format!(
            "protocol version {} is not supported",
            hello.protocol_version
        )))
    } else if hello.resume_token.is_empty() {
        Err(Status::unauthenticated(
            "the storage endpoint needs the session token of the main connection",
        ))
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match token::verify(&state.key, &hello.resume_token, now) {
            Ok(claims) => match state
                .service
                .state()
                .session_exists(claims.session_id)
                .await
            {
                Ok(true) => Ok(claims.session_id),
                Ok(false) => Err(Status::unauthenticated(
                    "session not found: it expired or was ended",
                )),
                Err(e) => {
                    tracing::error!(error = %e, "cannot look the session up");
                    Err(Status::unavailable("session store unavailable"))
                }
            },
            Err(e) => Err(Status::unauthenticated(e.to_string())),
        }
    };
    let welcome = match &result {
        Ok(session) => Welcome {
            code: Code::Ok.as_u32(),
            session_id: session.to_string(),
            session_token: hello.resume_token.clone(),
            resumed: true,
            max_message_size: Limits::DEFAULT_MAX_PAYLOAD as u64,
            ..Default::default()
        },
        Err(status) => Welcome {
            code: status.code().as_u32(),
            message: status.message().to_owned(),
            ..Default::default()
        },
    };
    let head = frame::encode_head(None, &welcome, 0);
    let written = write_frame_and_finish(&mut send, head, Bytes::new()).await;
    if result.is_err() && written.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    }
    result
}
