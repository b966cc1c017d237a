//! Fluxon's server runtime.
//!
//! A [`Server`] listens on a QUIC endpoint (quinn + rustls, TLS 1.3, ALPN `fluxon/1`). Each client
//! connection starts with a handshake that gives it a [`SessionHandle`]: a session id and a token
//! signed with the server's secret key, persisted in SQLite so the client can resume the session
//! after a reconnect or a server restart. Every call in flight has its own bidirectional stream,
//! routed by a [`Router`] to a typed async handler that receives a [`Request`]. Handlers can log
//! the session in, and any task holding a [`SessionHandle`] can call the client back (reverse
//! calls).
//!
//! ```no_run
//! # async fn run() -> Result<(), fluxon_server::ServerError> {
//! use fluxon_server::{Request, RouteOptions, Router, Server, ServerConfig, Status};
//!
//! let router = Router::new()
//!     .route("demo.Auth/Login", |req: Request<i64>| async move {
//!         req.login(*req.message()).await?;
//!         Ok::<_, Status>(())
//!     })
//!     .route_with("demo.Auth/Me", RouteOptions::new().requires_login(), |req: Request<()>| async move {
//!         req.require_user()
//!     });
//! let server = Server::bind(ServerConfig::default(), router).await?;
//! server.run_until_ctrl_c().await;
//! # Ok(()) }
//! ```
//!
//! Cloud storage runs beside the router as a [`StreamService`] (see `fluxon-storage`), registered
//! with [`Server::bind_with`]; handlers authorize storage operations with [`Request::grant`].
//!
//! See `docs/architecture.md` for how a call flows through the crates and `docs/protocol.md`
//! for the wire format.

mod call;
mod calls;
pub mod cluster;
mod config;
mod connection;
mod error;
pub mod grant;
mod key;
mod request;
mod router;
mod server;
mod session;
mod signals;
mod state;
mod stats;
mod streaming;
pub mod testing;
mod tls;
pub mod token;

pub use call::{BoxFuture, ServiceStream, StreamService, StreamServices};
pub use cluster::ClusterConfig;
pub use config::{ServerConfig, ServerLimits, DEFAULT_PORT};
pub use error::ServerError;
/// Fluxon's wire types (`fluxon-proto`), through which generated server code names Fluxon's own
/// messages (storage grants) without a direct dependency on `fluxon-proto`.
pub use fluxon_proto as proto;
pub use fluxon_proto::transport::{Congestion, CONNECTION_RECEIVE_WINDOW, STREAM_RECEIVE_WINDOW};
pub use fluxon_proto::{include_schema, Code, Metadata, Status};
/// The `Stream` trait (`futures-core`) that streaming calls speak, for generated code and
/// applications that name it without depending on `futures-core` themselves.
pub use futures_core::Stream;
pub use key::{SecretKey, MIN_KEY_LEN, SECRET_KEY_ENV, SECRET_KEY_FILE};
pub use request::Request;
pub use router::{RouteOptions, Router};
pub use server::{bind_endpoint, endpoint_config, Server};
pub use session::{ParseSessionIdError, SessionHandle, SessionId, Sessions};
pub use signals::StopSignals;
pub use state::{Presence, StateError, StateLocation, StateStore};
pub use stats::{RouteSnapshot, Stats};
pub use streaming::{Replies, ReplyStream, Streaming};
pub use tls::{fingerprint, TlsSource, DEV_CERT_FILE, DEV_KEY_FILE};
