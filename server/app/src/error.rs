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
    /// The console was asked to move the running server's database to a schema version its
    /// compiled models do not match (the state the start-up check refuses).
    #[error("{}", live_schema(*.requested, *.models, .app))]
    LiveSchema {
        /// The version asked for.
        requested: u32,
        /// The saved version the compiled models match (`None`: none of them).
        models: Option<u32>,
        /// The application's name, for the offline command to use instead.
        app: String,
    },
    /// A schema command that can only run offline was given to a running server's console.
    #[error(
        "`{command}` cannot run on a running server: schema versions are saved offline \
         (`{app} schema save NAME`), and a server only starts when its models match the \
         latest one"
    )]
    OfflineOnly {
        /// The command.
        command: &'static str,
        /// The application's name.
        app: String,
    },
    /// A command failed.
    #[error("{0}")]
    Failed(String),
}

fn live_schema(requested: u32, models: Option<u32>, app: &str) -> String {
    let matched = match models {
        Some(m) => format!("the running server's models match schema version {m}, not {requested}"),
        None => "the running server's models match no saved schema version".to_owned(),
    };
    format!(
        "refused: {matched}, and its calls would fail on a database at another version; change \
         the live database offline: stop the server, then `{app} schema apply {requested}`"
    )
}

impl AppError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
