//! Fluxon's Rust client SDK.
//!
//! [`Connection::connect`] opens a QUIC connection to a Fluxon server, trusting its certificate
//! as [`Trust`] says, and starts or resumes a session. The connection is cheap to clone and is
//! used from many tasks at once: concurrent calls share one QUIC stream, each answered as soon
//! as its handler finishes.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use fluxon_client::{ClientConfig, Connection, ReverseRouter, Status, Trust};
//!
//! let reverse = ReverseRouter::new().route("demo.Events/Notify", |text: String| async move {
//!     println!("server says: {text}");
//!     Ok::<_, Status>(())
//! });
//! let config = ClientConfig::new(Trust::CertificateFile("data/dev-cert.pem".into())).reverse(reverse);
//! let conn = Connection::connect("127.0.0.1:7443".parse()?, config).await?;
//! let echoed: String = conn.call("demo.Echo/Echo", &"hello".to_string()).await?;
//! # Ok(()) }
//! ```

mod calls;
mod config;
mod connection;
mod endpoint;
mod error;
mod nodes;
mod reverse;
pub mod storage;
mod streaming;
mod tls;

pub use config::{CallOptions, ClientConfig, ReconnectPolicy, MAX_CALL_LANES};
pub use connection::{Connection, SessionInfo};
pub use endpoint::ClientEndpoint;
pub use error::ConnectError;
/// Fluxon's wire types (`fluxon-proto`), through which generated client code names Fluxon's own
/// messages (storage grants), so a client crate depends on `fluxon-client` alone.
pub use fluxon_proto as proto;
pub use fluxon_proto::transport::Congestion;
pub use fluxon_proto::{include_schema, Code, Metadata, Status};
/// The `Stream` trait (`futures-core`) that streaming calls speak, for generated code and
/// applications that name it without depending on `futures-core` themselves.
pub use futures_core::Stream;
pub use reverse::ReverseRouter;
pub use storage::{CloudStorageConnector, StopSignal, TransferOptions};
pub use streaming::{RequestSink, Streaming};
pub use tls::Trust;
