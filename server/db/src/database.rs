//! [`Database`]: the synchronous database over one rusqlite connection.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::handle::Handle;
use crate::migrate::{self, SchemaDir};
use crate::model::{Model, Relation};
use crate::password::HashParams;
use crate::pg::{self, PgConn};
use crate::query::{Delete, Select, Update};
use crate::schema::{create_sql_in, ModelMeta};
use crate::value::Value;

/// How long a connection waits on a lock held by another connection before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Applies Fluxon's connection settings: WAL, synchronous=NORMAL, foreign keys, busy timeout.
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// A synchronous database: one SQLite connection (WAL, foreign keys on, busy timeout), or
/// one PostgreSQL connection. Every operation of [`Handle`] is available on it directly.
pub struct Database {
    backend: Backend,
    hash: HashParams,
}

enum Backend {
    Sqlite(Connection),
    /// The connection, then the runtime its I/O runs on (dropped in that order).
    Postgres {
        conn: Box<PgConn>,
        _runtime: tokio::runtime::Runtime,
    },
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = Connection::open(path)?;
        configure(&conn)?;
        Ok(Self {
            backend: Backend::Sqlite(conn),
            hash: HashParams::default(),
        })
    }

    /// A private in-memory database (for tests).
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        configure(&conn)?;
        Ok(Self {
            backend: Backend::Sqlite(conn),
            hash: HashParams::default(),
        })
    }

    /// Connects to the PostgreSQL server that `url` names (`postgres://user:pw@host/db`, or
    /// `host=/run/postgresql dbname=app`). The connection's I/O runs on a runtime of its own,
    /// so this must not be called from inside an async runtime: there, use
    /// [`crate::AsyncDatabase::connect`].
    pub fn connect(url: &str) -> Result<Self> {
        // One worker thread drives the connection's I/O; statements wait on it with
        // `Handle::block_on`, which cannot drive I/O of a current-thread runtime itself.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::Pool(format!("cannot start the connection's runtime: {e}")))?;
        let (pool, shown) = pg::pool(url, 1)?;
        let client = rt.block_on(pg::first_connection(&pool, &shown))?;
        let conn = Box::new(PgConn::new(client, rt.handle().clone()));
        Ok(Self {
            backend: Backend::Postgres { conn, _runtime: rt },
            hash: HashParams::default(),
        })
    }

    /// Opens `location`: a PostgreSQL URL (see [`crate::is_postgres_url`]) or a SQLite file.
    pub fn open_location(location: &str) -> Result<Self> {
        if pg::is_postgres_url(location) {
            Self::connect(location)
        } else {
            Self::open(location)
        }
    }

    /// Uses `params` for new password hashes (older hashes are upgraded on login).
    pub fn with_hash_params(mut self, params: HashParams) -> Self {
        self.hash = params;
        self
    }

    /// The handle every operation runs on.
    pub fn handle(&self) -> Handle<'_> {
        match &self.backend {
            Backend::Sqlite(c) => Handle::new(c, self.hash),
            Backend::Postgres { conn, .. } => Handle::postgres(conn, self.hash),
        }
    }

    /// Creates the tables and indexes of `models` (see [`create_sql_in`]) in one
    /// transaction. For versioned schemas use [`crate::migrate`] instead.
    pub fn create_tables(&self, models: &[ModelMeta]) -> Result<()> {
        let h = self.handle();
        let sql = create_sql_in(models, h.dialect())?;
        h.transaction(|h| h.execute_batch(&sql))
    }

    /// See [`Handle::insert`].
    pub fn insert<M: Model>(&self, m: &M) -> Result<i64> {
        self.handle().insert(m)
    }
    /// See [`Handle::get`].
    pub fn get<M: Model>(&self, pk: impl Into<Value>) -> Result<Option<M>> {
        self.handle().get(pk)
    }
    /// See [`Handle::select`].
    pub fn select<M: Model>(&self) -> Select<Handle<'_>, M> {
        self.handle().select()
    }
    /// See [`Handle::update`].
    pub fn update<M: Model>(&self) -> Update<Handle<'_>, M> {
        self.handle().update()
    }
    /// See [`Handle::delete`].
    pub fn delete<M: Model>(&self) -> Delete<Handle<'_>, M> {
        self.handle().delete()
    }
    /// See [`Handle::delete_by_id`].
    pub fn delete_by_id<M: Model>(&self, pk: impl Into<Value>) -> Result<usize> {
        self.handle().delete_by_id::<M>(pk)
    }
    /// See [`Handle::save`].
    pub fn save<M: Model>(&self, m: &M) -> Result<usize> {
        self.handle().save(m)
    }
    /// See [`Handle::link`].
    pub fn link<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        source: impl Into<Value>,
        target: impl Into<Value>,
    ) -> Result<()> {
        self.handle().link(rel, source, target)
    }
    /// See [`Handle::unlink`].
    pub fn unlink<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        source: impl Into<Value>,
        target: impl Into<Value>,
    ) -> Result<usize> {
        self.handle().unlink(rel, source, target)
    }
    /// See [`Handle::linked`].
    pub fn linked<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        source: impl Into<Value>,
    ) -> Result<Vec<T>> {
        self.handle().linked(rel, source)
    }
    /// See [`Handle::linked_from`].
    pub fn linked_from<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        target: impl Into<Value>,
    ) -> Result<Vec<S>> {
        self.handle().linked_from(rel, target)
    }
    /// See [`Handle::transaction`].
    pub fn transaction<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Handle<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.handle().transaction(f)
    }
    /// See [`Handle::set_password`].
    pub fn set_password<M: Model>(&self, pk: impl Into<Value>, plain: &str) -> Result<()> {
        self.handle().set_password::<M>(pk, plain)
    }
    /// See [`Handle::verify_password`].
    pub fn verify_password<M: Model>(&self, filter: Expr<M>, plain: &str) -> Result<Option<i64>> {
        self.handle().verify_password(filter, plain)
    }

    /// See [`migrate::status`].
    pub fn schema_status(&self, dir: &SchemaDir) -> Result<migrate::Status> {
        migrate::status(&self.handle(), dir)
    }
    /// See [`migrate::apply`].
    pub fn apply_schema(&self, dir: &SchemaDir, target: u32) -> Result<Vec<u32>> {
        migrate::apply(&self.handle(), dir, target)
    }
    /// See [`migrate::check`].
    pub fn check_schema(&self, dir: &SchemaDir, models: &[ModelMeta]) -> Result<migrate::Status> {
        migrate::check(&self.handle(), dir, models)
    }
    /// See [`migrate::ensure`].
    pub fn ensure_schema(
        &self,
        dir: &SchemaDir,
        models: &[ModelMeta],
        apply_if_needed: bool,
    ) -> Result<migrate::Status> {
        migrate::ensure(&self.handle(), dir, models, apply_if_needed)
    }
}
