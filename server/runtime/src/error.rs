//! Errors of starting and running a server.

use std::path::{Path, PathBuf};

/// Why a server could not start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The certificate or private key is unusable.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The secret key is missing or invalid.
    #[error("secret key: {0}")]
    Key(String),
    /// The state database (sessions, used grants, presence) could not be opened.
    #[error("state database: {0}")]
    State(#[from] crate::StateError),
    /// The cluster's message bus (NATS) could not be joined.
    #[error("cannot join the cluster through NATS at {url}: {reason}")]
    Cluster {
        /// The NATS URL, without its password.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ServerError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
