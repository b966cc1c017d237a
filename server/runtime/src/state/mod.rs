//! Durable state that outlives a connection and a process: sessions, the ledger of used
//! single-use grants, and presence (which node holds a session's live connection).
//!
//! One [`StateStore`] over two backends, chosen by [`StateLocation`]:
//!
//! * **SQLite** (the embedded default): a file, `fluxon.db` in the server's data directory.
//!   Processes on one machine may share it.
//! * **PostgreSQL**: a `postgres://` URL. Every node of a deployment that shares the server key
//!   and this database accepts the others' sessions and refuses a grant another node has seen.
//!
//! Both keep the same three tables (`_fluxon_sessions`, `_fluxon_used_grants` and the `node`
//! column of the sessions for presence) and answer the same questions; the tests in
//! `tests.rs` run against each backend.

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::session::SessionId;

/// Where the durable state lives.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateLocation {
    /// A SQLite file (created when absent).
    Sqlite(PathBuf),
    /// A PostgreSQL database, as a `postgres://` (or `postgresql://`) URL. A Unix socket is
    /// named by a `host` parameter: `postgresql:///app?host=/run/postgresql`.
    Postgres(String),
}

impl StateLocation {
    /// Reads a database location as users write it: a `postgres://` or `postgresql://` URL
    /// names a PostgreSQL database; anything else is the path of a SQLite file.
    pub fn parse(location: &str) -> Self {
        let lower = location.trim_start().to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Self::Postgres(location.trim().to_string())
        } else {
            Self::Sqlite(PathBuf::from(location))
        }
    }

    /// The backend's name: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Shows the location without its password.
impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => f.write_str(&postgres::redact(url)),
        }
    }
}

impl fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateLocation({}: {self})", self.backend())
    }
}

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The SQLite file could not be opened or set up.
    #[error("cannot open SQLite database {}: {source}", path.display())]
    SqliteOpen {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A SQLite statement failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL URL cannot be used.
    #[error("invalid PostgreSQL URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, without its password.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// PostgreSQL could not be reached, or refused the login.
    #[error("cannot connect to PostgreSQL at {url}: {reason}")]
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// A PostgreSQL statement failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool in time.
    #[error("PostgreSQL pool: {0}")]
    Pool(String),
    /// The blocking task running a SQLite statement failed.
    #[error("state store task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A thread panicked while holding the SQLite connection.
    #[error("state store lock poisoned")]
    Poisoned,
}

/// A session as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StoredSession {
    pub(crate) id: SessionId,
    pub(crate) user_id: Option<i64>,
    pub(crate) created_at: u64,
    pub(crate) last_seen: u64,
}

/// A live connection of a user's session, as recorded by the node holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Presence {
    /// The session.
    pub session: SessionId,
    /// The node holding its connection ([`ServerConfig::node_id`](crate::ServerConfig)).
    pub node: String,
    /// The user logged in on the session.
    pub user_id: i64,
    /// When the session was created (seconds since the Unix epoch).
    pub created_at: u64,
    /// When the session was last used, as last recorded (seconds since the Unix epoch).
    pub last_seen: u64,
}

/// The durable state of one server or of a cluster of nodes: sessions, used grants and
/// presence. Cheap to clone; clones share the connection(s).
///
/// Open it with [`StateStore::open`]. A [`Server`](crate::Server) opens its own from
/// [`ServerConfig::state`](crate::ServerConfig) unless given one
/// ([`Server::bind_with_state`](crate::Server::bind_with_state)); services that check grants
/// beside the server (cloud storage) share it, so a single-use grant is used once whichever
/// service, process or node sees it, across restarts and crashes.
#[derive(Clone)]
pub struct StateStore {
    backend: Backend,
    location: Arc<StateLocation>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<sqlite::SqliteState>),
    Postgres(postgres::PgState),
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// Calls the same method on whichever backend the store has.
macro_rules! on_backend {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match &$self.backend {
            Backend::Sqlite(s) => s.$method($($arg),*).await,
            Backend::Postgres(p) => p.$method($($arg),*).await,
        }
    };
}

impl StateStore {
    /// Opens the store at `location`, creating its tables when absent. A PostgreSQL database
    /// must be reachable: an unreachable server, a refused login or a malformed URL is an error
    /// here, not at the first call.
    pub async fn open(location: &StateLocation) -> Result<Self, StateError> {
        let backend = match location {
            StateLocation::Sqlite(path) => {
                let path = path.clone();
                let state = tokio::task::spawn_blocking(move || {
                    sqlite::SqliteState::open(&path).map_err(|e| match e {
                        StateError::Sqlite(source) => StateError::SqliteOpen { path, source },
                        other => other,
                    })
                })
                .await??;
                Backend::Sqlite(Arc::new(state))
            }
            StateLocation::Postgres(url) => Backend::Postgres(postgres::PgState::open(url).await?),
        };
        tracing::debug!(location = %location, "state store open");
        Ok(Self {
            backend,
            location: Arc::new(location.clone()),
        })
    }

    /// A SQLite store in memory, for unit tests.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Self {
        Self {
            backend: Backend::Sqlite(Arc::new(
                sqlite::SqliteState::in_memory().expect("in-memory SQLite opens"),
            )),
            location: Arc::new(StateLocation::Sqlite(":memory:".into())),
        }
    }

    /// Where the store lives.
    pub fn location(&self) -> &StateLocation {
        &self.location
    }

    /// Records the use of the single-use grant named by `nonce`, valid until `expires_at`
    /// (seconds since the epoch). Returns `false` when that grant was used before: the caller
    /// must refuse it. The record is committed before this returns.
    pub async fn record_grant_use(
        &self,
        nonce: [u8; 16],
        expires_at: u64,
    ) -> Result<bool, StateError> {
        on_backend!(self, record_grant_use(nonce, expires_at))
    }

    /// Forgets the used grants that expired before `now`: they can no longer be presented.
    /// Returns how many were forgotten.
    pub async fn purge_used_grants(&self, now: u64) -> Result<u64, StateError> {
        on_backend!(self, purge_used_grants(now))
    }

    /// The live connections of `user_id`'s sessions, on every node sharing this store.
    pub async fn presence_of_user(&self, user_id: i64) -> Result<Vec<Presence>, StateError> {
        on_backend!(self, presence_of_user(user_id))
    }

    /// Whether session `id` exists: it was neither ended nor purged after being idle. A service
    /// that verifies session tokens beside the server (a storage-only endpoint) asks this, so a
    /// token outlives neither a logout-and-end nor an expiry.
    pub async fn session_exists(&self, id: SessionId) -> Result<bool, StateError> {
        Ok(self.load_session(id).await?.is_some())
    }

    /// Forgets every connection recorded for `node` (a node that starts again holds none).
    pub async fn clear_node(&self, node: &str) -> Result<u64, StateError> {
        on_backend!(self, clear_node(node))
    }

    /// Stores a new session, connected to `node`.
    pub(crate) async fn insert_session(
        &self,
        session: StoredSession,
        node: &str,
    ) -> Result<(), StateError> {
        on_backend!(self, insert_session(session, node))
    }

    /// The stored session `id`, if any.
    pub(crate) async fn load_session(
        &self,
        id: SessionId,
    ) -> Result<Option<StoredSession>, StateError> {
        on_backend!(self, load_session(id))
    }

    /// Records that `node` now holds session `id`'s connection, seen at `now`.
    pub(crate) async fn attach(
        &self,
        id: SessionId,
        node: &str,
        now: u64,
    ) -> Result<(), StateError> {
        on_backend!(self, attach(id, node, now))
    }

    /// Records that `node` no longer holds session `id`'s connection (unless another node took
    /// it since), seen at `now`.
    pub(crate) async fn detach(
        &self,
        id: SessionId,
        node: &str,
        now: u64,
    ) -> Result<(), StateError> {
        on_backend!(self, detach(id, node, now))
    }

    /// Binds session `id` to `user_id` (or none); returns whether the session exists.
    pub(crate) async fn set_user(
        &self,
        id: SessionId,
        user_id: Option<i64>,
        now: u64,
    ) -> Result<bool, StateError> {
        on_backend!(self, set_user(id, user_id, now))
    }

    /// Deletes session `id`.
    pub(crate) async fn delete_session(&self, id: SessionId) -> Result<(), StateError> {
        on_backend!(self, delete_session(id))
    }

    /// Deletes the sessions last seen before `cutoff`; returns how many.
    pub(crate) async fn purge_idle(&self, cutoff: u64) -> Result<u64, StateError> {
        on_backend!(self, purge_idle(cutoff))
    }
}
