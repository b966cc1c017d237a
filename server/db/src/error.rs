//! Typed errors of the database layer and their status-like classification.

use std::path::PathBuf;

use crate::schema::SchemaError;

/// A `Result` whose error is the database layer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A coarse classification of an [`Error`], shaped like RPC status codes so that the server
/// crate can map it onto its own `Status` without matching every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The row conflicts with an existing one (a unique or primary key constraint).
    AlreadyExists,
    /// The operation needs a state the database is not in (a foreign key, a schema version).
    FailedPrecondition,
    /// The request itself is malformed (a NOT NULL or CHECK constraint, an invalid query).
    InvalidArgument,
    /// The requested row or file does not exist.
    NotFound,
    /// The database is temporarily unable to serve (pool closed, lock timeout).
    Unavailable,
    /// A bug or an environment failure: the caller cannot fix it by changing the request.
    Internal,
}

/// Errors returned by the database layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A UNIQUE or PRIMARY KEY constraint rejected the write.
    #[error("unique constraint violated: {0}")]
    UniqueViolation(String),
    /// A FOREIGN KEY constraint rejected the write (missing parent, or RESTRICT on delete).
    #[error("foreign key constraint violated: {0}")]
    ForeignKeyViolation(String),
    /// A NOT NULL or CHECK constraint (such as a max_length) rejected the write.
    #[error("constraint violated: {0}")]
    ConstraintViolation(String),
    /// A row that had to exist was not found.
    #[error("not found: {0}")]
    NotFound(String),
    /// The query cannot be executed as built (for example a delete without a filter).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The model metadata is inconsistent.
    #[error("invalid schema: {0}")]
    Schema(#[from] SchemaError),
    /// A schema version operation failed (see the message); the database was left unchanged.
    #[error("schema migration: {0}")]
    Migration(String),
    /// The database's schema version does not match the schema the server was built with.
    #[error("schema version mismatch: {0}")]
    VersionMismatch(String),
    /// Hashing or parsing a password hash failed (the message never contains the password).
    #[error("password hashing: {0}")]
    Password(String),
    /// The connection pool could not hand out a connection.
    #[error("connection pool: {0}")]
    Pool(String),
    /// The database stayed locked past the busy timeout.
    #[error("database busy: {0}")]
    Busy(String),
    /// A file of the schema directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A schema snapshot could not be parsed or written.
    #[error("schema snapshot {path}: {source}")]
    Snapshot {
        /// The snapshot file concerned.
        path: PathBuf,
        /// The underlying JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Any other SQLite error.
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    /// The PostgreSQL server could not be reached, or its URL is not valid (the message
    /// names the server, never the password).
    #[error("{0}")]
    Connect(String),
    /// Any other PostgreSQL error.
    #[error("postgres: {}", postgres_text(.0))]
    Postgres(tokio_postgres::Error),
}

impl Error {
    /// The status-like classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::UniqueViolation(_) => ErrorKind::AlreadyExists,
            Self::ForeignKeyViolation(_) | Self::VersionMismatch(_) | Self::Migration(_) => {
                ErrorKind::FailedPrecondition
            }
            Self::ConstraintViolation(_) | Self::InvalidQuery(_) => ErrorKind::InvalidArgument,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Pool(_) | Self::Busy(_) | Self::Connect(_) => ErrorKind::Unavailable,
            Self::Schema(_)
            | Self::Password(_)
            | Self::Io { .. }
            | Self::Snapshot { .. }
            | Self::Sqlite(_)
            | Self::Postgres(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// A PostgreSQL error with what the server said (tokio-postgres shows only "db error").
fn postgres_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        if let rusqlite::Error::SqliteFailure(code, msg) = &err {
            let text = msg.clone().unwrap_or_else(|| code.to_string());
            match code.code {
                ErrorCode::ConstraintViolation => {
                    return match code.extended_code {
                        rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                            Self::UniqueViolation(text)
                        }
                        rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                            Self::ForeignKeyViolation(text)
                        }
                        // RESTRICT and deferred checks report other extended codes.
                        _ if text.starts_with("FOREIGN KEY constraint failed") => {
                            Self::ForeignKeyViolation(text)
                        }
                        _ => Self::ConstraintViolation(text),
                    };
                }
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => return Self::Busy(text),
                _ => {}
            }
        }
        Self::Sqlite(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_codes_are_classified() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "PRAGMA foreign_keys=ON; CREATE TABLE p (id INTEGER PRIMARY KEY, u TEXT UNIQUE);
             CREATE TABLE c (p INTEGER REFERENCES p(id));
             INSERT INTO p (id, u) VALUES (1, 'a');",
        )
        .expect("setup");
        let dup: Error = conn
            .execute("INSERT INTO p (u) VALUES ('a')", [])
            .expect_err("dup")
            .into();
        assert_eq!(dup.kind(), ErrorKind::AlreadyExists);
        let fk: Error = conn
            .execute("INSERT INTO c (p) VALUES (9)", [])
            .expect_err("fk")
            .into();
        assert_eq!(fk.kind(), ErrorKind::FailedPrecondition);
    }
}

/// Lets handlers use `?` on database calls: constraint failures reach the client with their
/// meaning (`already_exists`, `failed_precondition`, ...); internal and availability failures
/// are logged here and reach the client without details of the database.
impl From<Error> for fluxon_proto::Status {
    fn from(e: Error) -> Self {
        match e.kind() {
            ErrorKind::AlreadyExists => Self::already_exists(e.to_string()),
            ErrorKind::FailedPrecondition => Self::failed_precondition(e.to_string()),
            ErrorKind::InvalidArgument => Self::invalid_argument(e.to_string()),
            ErrorKind::NotFound => Self::not_found(e.to_string()),
            ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "database unavailable");
                Self::unavailable("the database is busy; try again")
            }
            ErrorKind::Internal => {
                tracing::error!(error = %e, "database error");
                Self::internal("database error")
            }
        }
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;
    use fluxon_proto::{Code, Status};

    #[test]
    fn errors_become_statuses_without_leaking_internals() {
        let s = Status::from(Error::UniqueViolation("user.username".into()));
        assert_eq!(s.code(), Code::AlreadyExists);
        assert!(s.message().contains("user.username"));
        let s = Status::from(Error::ForeignKeyViolation("course.teacher".into()));
        assert_eq!(s.code(), Code::FailedPrecondition);
        let s = Status::from(Error::NotFound("user 3".into()));
        assert_eq!(s.code(), Code::NotFound);
        let s = Status::from(Error::Sqlite(rusqlite::Error::InvalidColumnIndex(7)));
        assert_eq!(s, Status::internal("database error"));
    }
}
