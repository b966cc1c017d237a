//! Fluxon's cloud storage: file transfers on dedicated QUIC streams, authorized by grants.
//!
//! An application's route decides whether the caller may perform one operation on one path and
//! answers with a signed [`Grant`](fluxon_server::grant::Grant)
//! ([`Request::grant`](fluxon_server::Request::grant)). The client opens a storage stream (kind 3)
//! with the grant; a [`StorageService`] verifies the grant (signature, expiry, session, operation,
//! path, single use) before touching the disk, then performs the operation under its root:
//!
//! * writes stream to a temporary file in the target directory with the size cap enforced while
//!   streaming, are fsynced and atomically renamed into place, and are answered with the size and
//!   BLAKE3 checksum; an interrupted write leaves the previous version untouched (and, when the
//!   grant is resumable, its bytes for a resume with a later grant);
//! * reads stream the file followed by its checksum;
//! * paths are normalized ([`fluxon_server::grant::normalize_path`]) and opened through cap-std,
//!   so neither `..` nor a symlink can lead outside the root;
//! * memory per transfer is bounded (a few 256 KiB buffers; QUIC flow control is the
//!   backpressure).
//!
//! That is the local backend, the default. With [`StorageConfig::object_store`] the tree lives
//! in an S3-compatible object store instead, with the same grants, caps, checksums, atomic
//! visibility and resumable uploads (multipart uploads to the final key; see
//! [`ObjectStoreConfig`] and docs/adr/0006).
//!
//! The service runs on the main endpoint ([`bind_server`], or [`StorageService::stream_services`]
//! with [`Server::bind_with`](fluxon_server::Server::bind_with)) and/or on its own endpoint
//! ([`StorageServer`]), sharing the secret key and the state store.
//!
//! ```no_run
//! # async fn run() -> Result<(), fluxon_storage::StorageError> {
//! use fluxon_server::grant::{Grant, Op};
//! use fluxon_server::{Request, Router, ServerConfig, Status};
//! use fluxon_storage::StorageConfig;
//!
//! let router = Router::new().route("cloud.Files/Upload", |req: Request<String>| async move {
//!     // ... check that the caller may write this path ...
//!     req.grant(Op::WriteFile, req.message().as_str()).max_bytes(100 << 20).sign()
//! });
//! let config = ServerConfig::default();
//! let (server, _storage) =
//!     fluxon_storage::bind_server(config, router, StorageConfig::new("data/cloud")).await?;
//! server.run_until_ctrl_c().await;
//! # Ok(()) }
//! ```

mod endpoint;
mod fs;
pub mod hooks;
mod object;
mod service;
pub mod testing;

use std::path::{Path, PathBuf};

use fluxon_server::{Router, Server, ServerConfig, ServerError};

pub use endpoint::StorageServer;
pub use hooks::{StorageEvent, StorageHooks};
pub use object::ObjectStoreConfig;
pub use service::{Hooks, StorageConfig, StorageService, StorageStats};

/// Why the storage service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The storage root (or a socket) could not be set up.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The object store configuration is not usable.
    #[error("object store {0}")]
    ObjectStore(String),
    /// The server (certificate, key, endpoint) could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl StorageError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Starts a [`Server`] with `router` that also serves cloud storage under `storage.root` on the
/// same endpoint, with the server's own key. Returns the server and the storage service (to run
/// it on another endpoint too, with [`StorageServer::bind`], or read its stats).
pub async fn bind_server(
    config: ServerConfig,
    router: Router,
    storage: StorageConfig,
) -> Result<(Server, StorageService), StorageError> {
    let key = config.load_secret_key()?;
    let state = config.open_state().await?;
    let service = StorageService::new(storage, key, state.clone())?;
    let server = Server::bind_with_state(config, router, service.stream_services(), state).await?;
    Ok((server, service))
}
