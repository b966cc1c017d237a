//! [`Database`]: the synchronous database over one rusqlite connection.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::Result;
use crate::expr::Expr;
use crate::handle::Handle;
use crate::migrate::{self, SchemaDir};
use crate::model::{Model, Relation};
use crate::password::HashParams;
use crate::query::{Delete, Select, Update};
use crate::schema::{create_sql, ModelMeta};
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

/// A synchronous database: one SQLite connection (WAL, foreign keys on, busy timeout).
/// Every operation of [`Handle`] is available on it directly.
pub struct Database {
    conn: Connection,
    hash: HashParams,
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
            conn,
            hash: HashParams::default(),
        })
    }

    /// A private in-memory database (for tests).
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        configure(&conn)?;
        Ok(Self {
            conn,
            hash: HashParams::default(),
        })
    }

    /// Uses `params` for new password hashes (older hashes are upgraded on login).
    pub fn with_hash_params(mut self, params: HashParams) -> Self {
        self.hash = params;
        self
    }

    /// The handle every operation runs on.
    pub fn handle(&self) -> Handle<'_> {
        Handle::new(&self.conn, self.hash)
    }

    /// Creates the tables and indexes of `models` (see [`create_sql`]) in one transaction.
    /// For versioned schemas use [`crate::migrate`] instead.
    pub fn create_tables(&self, models: &[ModelMeta]) -> Result<()> {
        let sql = create_sql(models)?;
        self.handle().transaction(|h| {
            h.conn.execute_batch(&sql)?;
            Ok(())
        })
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
    pub fn transaction<T, E: From<crate::Error>>(
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
        migrate::status(&self.conn, dir)
    }
    /// See [`migrate::apply`].
    pub fn apply_schema(&self, dir: &SchemaDir, target: u32) -> Result<Vec<u32>> {
        migrate::apply(&self.conn, dir, target)
    }
    /// See [`migrate::check`].
    pub fn check_schema(&self, dir: &SchemaDir, models: &[ModelMeta]) -> Result<migrate::Status> {
        migrate::check(&self.conn, dir, models)
    }
    /// See [`migrate::ensure`].
    pub fn ensure_schema(
        &self,
        dir: &SchemaDir,
        models: &[ModelMeta],
        apply_if_needed: bool,
    ) -> Result<migrate::Status> {
        migrate::ensure(&self.conn, dir, models, apply_if_needed)
    }
}
