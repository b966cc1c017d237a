//! Errors of the application runtime.

use std::path::PathBuf;

/// Why the application could not start, or a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The configuration (file, flags, environment) is not usable.
    #[error("configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The database or its schema versions.
    #[error(transparent)]
    Database(#[from] fluxon_db::Error),
    /// The server could not start.
    #[error(transparent)]
    Server(#[from] fluxon_server::ServerError),
    /// Cloud storage could not start.
    #[error(transparent)]
    Storage(#[from] fluxon_storage::StorageError),
    /// A console or CLI command was not understood.
    #[error("{0}")]
    Usage(String),
    /// A command needs a running server (it was given to the offline CLI).
    #[error("`{0}` needs a running server: type it in the server's console")]
    NeedsServer(&'static str),
    /// A command failed.
    #[error("{0}")]
    Failed(String),
}

impl AppError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
