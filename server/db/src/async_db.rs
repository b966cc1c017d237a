//! [`AsyncDatabase`]: the same operations as [`crate::Database`], async, over a
//! deadpool-sqlite pool or a deadpool-postgres pool. On SQLite, reads run in parallel on
//! pooled connections and writes are serialized by an async mutex so concurrent writers
//! queue instead of failing with SQLITE_BUSY; PostgreSQL serves concurrent writers itself.
//! Closures (and password hashing) run on blocking threads, never on the executor; on
//! PostgreSQL each statement of a closure is driven from that thread.
//!
//! Connections come from deadpool-sqlite but are kept checked out in a small free list:
//! deadpool-sqlite recycles a connection with a query on every `get`, a second trip to a
//! blocking thread that halved point-read throughput. A connection whose closure panicked
//! is dropped (deadpool discards it) and replaced from the pool.

use std::path::Path;

use std::sync::{Mutex as StdMutex, PoisonError};

use deadpool_sqlite::{Config, Hook, HookError, Object, Pool, Runtime};
use tokio::sync::{Mutex, Semaphore};

use crate::database::configure;
use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::handle::{hash_passwords, insert_statement, Handle};
use crate::migrate::{self, SchemaDir};
use crate::model::{Model, Relation, RowReader, RowRef};
use crate::password::{HashParams, Verified};
use crate::pg::{self, PgConn};
use crate::query::{Delete, Select, Update};
use crate::relation::{related_sql, Direction};
use crate::schema::{create_sql_in, Dialect, ModelMeta};
use crate::stmt::statements;
use crate::value::Value;

/// An asynchronous, pooled database. Cheap to share behind an `Arc`.
///
/// It may be dropped anywhere, also outside the runtime it was opened in (after a `block_on`
/// returned, say): its connections are closed on that runtime.
pub struct AsyncDatabase {
    /// `None` only while it is dropped.
    backend: Option<Backend>,
    hash: HashParams,
    /// The runtime it was opened in, whose blocking pool closes the SQLite connections.
    runtime: Option<tokio::runtime::Handle>,
}

impl Drop for AsyncDatabase {
    fn drop(&mut self) {
        if let Some(backend) = self.backend.take() {
            // deadpool closes a SQLite connection on a blocking task of the current runtime,
            // and panics when there is none.
            let _entered = self.runtime.as_ref().map(tokio::runtime::Handle::enter);
            drop(backend);
        }
    }
}

enum Backend {
    Sqlite {
        pool: Pool,
        idle: StdMutex<Vec<Object>>,
        permits: Semaphore,
        write_lock: Mutex<()>,
    },
    Postgres(deadpool_postgres::Pool),
}

impl std::fmt::Debug for AsyncDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncDatabase").finish_non_exhaustive()
    }
}

impl AsyncDatabase {
    /// Opens (creating if needed) the database file at `path` with a pool of at most
    /// `pool_size` connections. Must be called inside a tokio runtime.
    pub async fn open(path: impl AsRef<Path>, pool_size: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let first = path.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let conn = rusqlite::Connection::open(&first)?;
            configure(&conn)?;
            Ok(())
        })
        .await
        .map_err(|e| Error::Pool(e.to_string()))??;
        let size = pool_size.max(1);
        let pool = Config::new(path)
            .builder(Runtime::Tokio1)
            .map_err(|e| Error::Pool(e.to_string()))?
            .max_size(size)
            .post_create(Hook::sync_fn(|wrapper, _| {
                let guard = wrapper
                    .lock()
                    .map_err(|_| HookError::Message("connection mutex poisoned".into()))?;
                configure(&guard).map_err(HookError::Backend)
            }))
            .build()
            .map_err(|e| Error::Pool(e.to_string()))?;
        Ok(Self {
            backend: Some(Backend::Sqlite {
                pool,
                idle: StdMutex::new(Vec::with_capacity(size)),
                permits: Semaphore::new(size),
                write_lock: Mutex::new(()),
            }),
            hash: HashParams::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// Connects to the PostgreSQL server that `url` names, with a pool of at most
    /// `pool_size` connections. Fails with [`Error::Connect`] (naming the server, never the
    /// password) when the URL is malformed or the server does not answer.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self> {
        let (pool, shown) = pg::pool(url, pool_size)?;
        drop(pg::first_connection(&pool, &shown).await?);
        Ok(Self {
            backend: Some(Backend::Postgres(pool)),
            hash: HashParams::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// Opens `location`: a PostgreSQL URL (see [`crate::is_postgres_url`]) or a SQLite file.
    pub async fn open_location(location: &str, pool_size: usize) -> Result<Self> {
        if pg::is_postgres_url(location) {
            Self::connect(location, pool_size).await
        } else {
            Self::open(location, pool_size).await
        }
    }

    fn backend(&self) -> &Backend {
        match &self.backend {
            Some(backend) => backend,
            None => unreachable!("the backend is taken only by Drop"),
        }
    }

    /// The SQL dialect of the database.
    pub fn dialect(&self) -> Dialect {
        match self.backend() {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Uses `params` for new password hashes.
    pub fn with_hash_params(mut self, params: HashParams) -> Self {
        self.hash = params;
        self
    }

    /// Runs `f` on a pooled connection on a blocking thread, concurrently with other reads.
    /// `f` must not write (use [`AsyncDatabase::write`]); a panic in `f` is resumed here.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Handle<'_>) -> Result<T> + Send + 'static,
    {
        let hash = self.hash;
        let (pool, idle, permits) = match self.backend() {
            Backend::Sqlite {
                pool,
                idle,
                permits,
                ..
            } => (pool, idle, permits),
            Backend::Postgres(pool) => {
                let client = pg::connection(pool).await?;
                let rt = tokio::runtime::Handle::current();
                let run = tokio::task::spawn_blocking(move || {
                    let conn = PgConn::new(client, rt);
                    f(&Handle::postgres(&conn, hash))
                });
                return match run.await {
                    Ok(r) => r,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => Err(Error::Pool(e.to_string())),
                };
            }
        };
        let _permit = permits
            .acquire()
            .await
            .map_err(|e| Error::Pool(e.to_string()))?;
        let spare = idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match spare {
            Some(c) => c,
            None => pool.get().await.map_err(|e| Error::Pool(e.to_string()))?,
        };
        let result = conn.interact(move |c| f(&Handle::new(c, hash))).await;
        if !conn.is_mutex_poisoned() {
            idle.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
        match result {
            Ok(r) => r,
            Err(deadpool_sqlite::InteractError::Panic(p)) => std::panic::resume_unwind(p),
            Err(e) => Err(Error::Pool(e.to_string())),
        }
    }

    /// Runs `f` like [`AsyncDatabase::read`]; on SQLite while holding the write lock, so
    /// that writes never contend inside SQLite.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Handle<'_>) -> Result<T> + Send + 'static,
    {
        let _guard = match self.backend() {
            Backend::Sqlite { write_lock, .. } => Some(write_lock.lock().await),
            Backend::Postgres(_) => None,
        };
        self.read(f).await
    }

    /// Runs `f` in one transaction on a blocking thread: committed on `Ok`, rolled back on
    /// `Err` or panic (the panic is then resumed here).
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce(&Handle<'_>) -> Result<T, E> + Send + 'static,
    {
        let out = self
            .write(move |h| Ok(h.transaction(|h| f(h))))
            .await
            .map_err(E::from)?;
        out
    }

    /// Creates the tables and indexes of `models` in one transaction.
    pub async fn create_tables(&self, models: &[ModelMeta]) -> Result<()> {
        let sql = create_sql_in(models, self.dialect())?;
        self.transaction(move |h| h.execute_batch(&sql)).await
    }

    /// See [`Handle::insert`]. Passwords are hashed on a blocking thread before the write
    /// lock is taken.
    pub async fn insert<M: Model>(&self, m: M) -> Result<i64> {
        let (m, hashed) = self.prehash(m).await?;
        if let Backend::Postgres(pool) = self.backend() {
            let client = pg::connection(pool).await?;
            let st = statements::<M>();
            return pg::insert(&client, st, &insert_statement(st, &m, &hashed)?).await;
        }
        self.write(move |h| h.insert_hashed(&m, &hashed)).await
    }

    /// See [`Handle::save`].
    pub async fn save<M: Model>(&self, m: M) -> Result<usize> {
        let (m, hashed) = self.prehash(m).await?;
        self.write(move |h| h.save_hashed(&m, &hashed)).await
    }

    async fn prehash<M: Model>(&self, m: M) -> Result<(M, Vec<(usize, String)>)> {
        if M::meta().columns.iter().all(|c| !c.password) {
            return Ok((m, Vec::new()));
        }
        let hash = self.hash;
        tokio::task::spawn_blocking(move || {
            let hashed = hash_passwords(&m, hash)?;
            Ok((m, hashed))
        })
        .await
        .map_err(|e| Error::Password(e.to_string()))?
    }

    /// See [`Handle::get`].
    pub async fn get<M: Model>(&self, pk: impl Into<Value>) -> Result<Option<M>> {
        let pk = pk.into();
        if let Backend::Postgres(pool) = self.backend() {
            let st = statements::<M>();
            let params = [pk];
            let rows = self.pg_rows::<M>(pool, &st.get_by_pk, &params, &st.default_projection);
            return Ok(rows.await?.pop());
        }
        self.read(move |h| h.get(pk)).await
    }

    /// PostgreSQL: the `M` rows of one statement, read on the calling task (no blocking
    /// thread: the driver is async).
    async fn pg_rows<M: Model>(
        &self,
        pool: &deadpool_postgres::Pool,
        sql: &str,
        params: &[Value],
        projection: &[Option<usize>],
    ) -> Result<Vec<M>> {
        let client = pg::connection(pool).await?;
        let rows = pg::query(&client, sql, params).await?;
        rows.iter()
            .map(|row| M::from_row(&RowReader::new(RowRef::Postgres(row), projection)))
            .collect()
    }

    /// See [`Handle::select`]; the terminals (`fetch`, `first`, `count`, `exists`) are async.
    pub fn select<M: Model>(&self) -> Select<&Self, M> {
        Select::new(self)
    }

    /// See [`Handle::update`]; `execute` is async.
    pub fn update<M: Model>(&self) -> Update<&Self, M> {
        Update::new(self)
    }

    /// See [`Handle::delete`]; `execute` is async.
    pub fn delete<M: Model>(&self) -> Delete<&Self, M> {
        Delete::new(self)
    }

    /// See [`Handle::delete_by_id`].
    pub async fn delete_by_id<M: Model>(&self, pk: impl Into<Value>) -> Result<usize> {
        let pk = pk.into();
        self.write(move |h| h.delete_by_id::<M>(pk)).await
    }

    /// See [`Handle::link`].
    pub async fn link<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        source: impl Into<Value>,
        target: impl Into<Value>,
    ) -> Result<()> {
        let (s, t) = (source.into(), target.into());
        self.write(move |h| h.link(rel, s, t)).await
    }

    /// See [`Handle::unlink`].
    pub async fn unlink<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        source: impl Into<Value>,
        target: impl Into<Value>,
    ) -> Result<usize> {
        let (s, t) = (source.into(), target.into());
        self.write(move |h| h.unlink(rel, s, t)).await
    }

    /// See [`Handle::linked`].
    pub async fn linked<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        source: impl Into<Value>,
    ) -> Result<Vec<T>> {
        let s = source.into();
        if let Backend::Postgres(pool) = self.backend() {
            let sql = related_sql::<S, T, T>(rel, Direction::Forward)?;
            let projection = &statements::<T>().default_projection;
            return self.pg_rows::<T>(pool, sql, &[s], projection).await;
        }
        self.read(move |h| h.linked(rel, s)).await
    }

    /// See [`Handle::linked_from`].
    pub async fn linked_from<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        target: impl Into<Value>,
    ) -> Result<Vec<S>> {
        let t = target.into();
        if let Backend::Postgres(pool) = self.backend() {
            let sql = related_sql::<S, T, S>(rel, Direction::Backward)?;
            let projection = &statements::<S>().default_projection;
            return self.pg_rows::<S>(pool, sql, &[t], projection).await;
        }
        self.read(move |h| h.linked_from(rel, t)).await
    }

    /// See [`Handle::set_password`]; hashing runs on a blocking thread.
    pub async fn set_password<M: Model>(&self, pk: impl Into<Value>, plain: String) -> Result<()> {
        let hash = self.hash;
        let phc = tokio::task::spawn_blocking(move || hash.hash(&plain))
            .await
            .map_err(|e| Error::Password(e.to_string()))??;
        let pk = pk.into();
        self.write(move |h| h.store_hash::<M>(pk, &phc)).await
    }

    /// See [`Handle::verify_password`]; verification runs on a blocking thread.
    pub async fn verify_password<M: Model>(
        &self,
        filter: Expr<M>,
        plain: String,
    ) -> Result<Option<i64>> {
        let hash = self.hash;
        let checked = self
            .read(move |h| {
                Ok(match h.check_password(filter, &plain)? {
                    Some((id, Verified::NeedsRehash)) => Some((id, Some(hash.hash(&plain)?))),
                    Some((id, Verified::Yes)) => Some((id, None)),
                    _ => None,
                })
            })
            .await?;
        match checked {
            Some((id, Some(phc))) => {
                self.write(move |h| h.store_hash_by_rowid::<M>(id, &phc))
                    .await?;
                Ok(Some(id))
            }
            Some((id, None)) => Ok(Some(id)),
            None => Ok(None),
        }
    }

    /// See [`migrate::status`].
    pub async fn schema_status(&self, dir: &SchemaDir) -> Result<migrate::Status> {
        let dir = dir.clone();
        self.read(move |h| migrate::status(h, &dir)).await
    }

    /// See [`migrate::apply`]; runs under the write lock.
    pub async fn apply_schema(&self, dir: &SchemaDir, target: u32) -> Result<Vec<u32>> {
        let dir = dir.clone();
        self.write(move |h| migrate::apply(h, &dir, target)).await
    }

    /// See [`migrate::ensure`] (and [`migrate::check`] with `apply_if_needed` false).
    pub async fn ensure_schema(
        &self,
        dir: &SchemaDir,
        models: &[ModelMeta],
        apply_if_needed: bool,
    ) -> Result<migrate::Status> {
        let (dir, models) = (dir.clone(), models.to_vec());
        self.write(move |h| migrate::ensure(h, &dir, &models, apply_if_needed))
            .await
    }
}

impl<M: Model> Select<&AsyncDatabase, M> {
    /// Runs the query and returns the rows.
    pub async fn fetch(self) -> Result<Vec<M>> {
        let db = self.db;
        if let Backend::Postgres(pool) = db.backend() {
            let (sql, params, projection) = self.parts.fetch_statement(Dialect::Postgres)?;
            return db
                .pg_rows::<M>(pool, &sql, &params, projection.of::<M>())
                .await;
        }
        let q = self.with_db(());
        db.read(move |h| q.with_db(*h).fetch()).await
    }

    /// The first row, if any.
    pub async fn first(self) -> Result<Option<M>> {
        Ok(self.limit(1).fetch().await?.pop())
    }

    /// The number of matching rows (honoring limit and offset).
    pub async fn count(self) -> Result<i64> {
        let db = self.db;
        if let Backend::Postgres(pool) = db.backend() {
            let (sql, params) = self.parts.count_statement(Dialect::Postgres);
            let client = pg::connection(pool).await?;
            let rows = pg::query(&client, &sql, &params).await?;
            return match rows.first() {
                Some(row) => RowRef::Postgres(row).integer(0),
                None => Ok(0),
            };
        }
        let q = self.with_db(());
        db.read(move |h| q.with_db(*h).count()).await
    }

    /// Whether any row matches.
    pub async fn exists(self) -> Result<bool> {
        Ok(self.limit(1).count().await? > 0)
    }
}

impl<M: Model> Update<&AsyncDatabase, M> {
    /// Runs the update; returns the number of rows changed.
    pub async fn execute(self) -> Result<usize> {
        let db = self.db;
        let q = self.with_db(());
        db.write(move |h| q.with_db(*h).execute()).await
    }
}

impl<M: Model> Delete<&AsyncDatabase, M> {
    /// Runs the delete (ON DELETE rules apply); returns the number of rows deleted.
    pub async fn execute(self) -> Result<usize> {
        let db = self.db;
        let q = self.with_db(());
        db.write(move |h| q.with_db(*h).execute()).await
    }
}
