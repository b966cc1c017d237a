//! The SQLite backend: one file, written through one connection on blocking threads.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::{Presence, StateError, StoredSession};
use crate::session::SessionId;

/// The state tables in a SQLite file. Statements block; the async methods run them on
/// blocking threads through [`SqliteState::run`].
///
/// Writes go through one connection. Copying the write-ahead log back into the database file
/// (a checkpoint, with its fsyncs) happens on a second connection in the background, so a new
/// session's insert never waits for one: SQLite's automatic checkpoint would run inside
/// whichever commit crossed the threshold.
///
/// Commits use `synchronous=NORMAL`: a committed row survives the process being killed (the log
/// is in the operating system's hands), while a power cut may roll back the last commits.
#[derive(Debug)]
pub(super) struct SqliteState {
    conn: Mutex<Connection>,
    checkpointer: Option<Checkpointer>,
}

/// Runs passive checkpoints on its own connection after every [`Checkpointer::EVERY`] store
/// operations, one at a time.
#[derive(Debug)]
struct Checkpointer {
    conn: Arc<Mutex<Connection>>,
    operations: AtomicU32,
    running: Arc<AtomicBool>,
}

/// WAL pages (4 KiB) at which the writing connection checkpoints itself; SQLite's default is
/// 1,000, which at 10,000 sessions put a checkpoint in about one new session's insert in 400.
const WRITER_CHECKPOINT_PAGES: u32 = 8_000;

/// Bytes the write-ahead log is cut back to when it starts over.
const WAL_SIZE_LIMIT: i64 = 4 << 20;

/// The tables, created when absent. `node` was added after the first release: [`add_node_column`]
/// brings older files up to date.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS \"_fluxon_sessions\" (
        \"id\" BLOB PRIMARY KEY NOT NULL,
        \"user_id\" INTEGER,
        \"created_at\" INTEGER NOT NULL,
        \"last_seen\" INTEGER NOT NULL,
        \"node\" TEXT
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS \"_fluxon_sessions_user\"
        ON \"_fluxon_sessions\" (\"user_id\");
    CREATE TABLE IF NOT EXISTS \"_fluxon_used_grants\" (
        \"nonce\" BLOB PRIMARY KEY NOT NULL,
        \"expires_at\" INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS \"_fluxon_used_grants_expiry\"
        ON \"_fluxon_used_grants\" (\"expires_at\");";

impl Checkpointer {
    /// Store operations between checkpoints: SQLite's own default threshold is 1,000 pages,
    /// and one session write dirties a few.
    const EVERY: u32 = 256;

    fn open(path: &Path) -> Result<Self, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            operations: AtomicU32::new(0),
            running: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Counts one operation; every [`Self::EVERY`]th starts a checkpoint unless one is running.
    fn after_operation(&self) {
        let n = self
            .operations
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        if !n.is_multiple_of(Self::EVERY) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (conn, running) = (Arc::clone(&self.conn), Arc::clone(&self.running));
        tokio::task::spawn_blocking(move || {
            if let Err(e) = checkpoint(&conn) {
                tracing::warn!(error = %e, "state store checkpoint failed");
            }
            running.store(false, Ordering::Release);
        });
    }
}

/// A passive checkpoint: copies what it can without waiting for, or blocking, the writer.
fn checkpoint(conn: &Mutex<Connection>) -> Result<(), StateError> {
    let conn = conn.lock().map_err(|_| StateError::Poisoned)?;
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}

/// Adds the `node` column to a sessions table made before presence was recorded.
fn add_node_column(conn: &Connection) -> Result<(), rusqlite::Error> {
    let has_node = conn
        .prepare("SELECT 1 FROM pragma_table_info('_fluxon_sessions') WHERE name = 'node'")?
        .exists([])?;
    if !has_node {
        conn.execute_batch("ALTER TABLE \"_fluxon_sessions\" ADD COLUMN \"node\" TEXT")?;
    }
    Ok(())
}

impl SqliteState {
    /// Opens (or creates) the file at `path`. Blocks.
    pub(super) fn open(path: &Path) -> Result<Self, StateError> {
        let conn = Connection::open(path)?;
        // A safety net only: the log is restarted from its beginning after a checkpoint that
        // copied all of it, which a background checkpoint racing a stream of writes may never
        // do; the writer then checkpoints itself (mostly already copied) at this size.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
        // The log can grow toward that size under a stream of new sessions; once a checkpoint
        // has copied all of it and it starts over, give the disk space back.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        let mut state = Self::init(conn)?;
        // The database is in WAL mode now: the background takes over checkpoints.
        state.checkpointer = Some(Checkpointer::open(path)?);
        Ok(state)
    }

    #[cfg(test)]
    pub(super) fn in_memory() -> Result<Self, StateError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StateError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        add_node_column(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            checkpointer: None,
        })
    }

    /// Runs `f` on a blocking thread with the connection.
    async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let store = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || {
            let conn = store.conn.lock().map_err(|_| StateError::Poisoned)?;
            Ok(f(&conn)?)
        })
        .await?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.after_operation();
        }
        result
    }

    /// Runs one statement with owned parameters and returns how many rows it changed.
    async fn execute<P>(self: &Arc<Self>, sql: &'static str, params: P) -> Result<u64, StateError>
    where
        P: rusqlite::Params + Send + 'static,
    {
        self.run(move |conn| Ok(conn.prepare_cached(sql)?.execute(params)? as u64))
            .await
    }

    pub(super) async fn insert_session(
        self: &Arc<Self>,
        s: StoredSession,
        node: &str,
    ) -> Result<(), StateError> {
        self.execute(
            "INSERT INTO \"_fluxon_sessions\"
                 (\"id\", \"user_id\", \"created_at\", \"last_seen\", \"node\")
             VALUES (?1, ?2, ?3, ?4, ?5)",
            (
                *s.id.as_bytes(),
                s.user_id,
                s.created_at as i64,
                s.last_seen as i64,
                node.to_owned(),
            ),
        )
        .await?;
        Ok(())
    }

    pub(super) async fn load_session(
        self: &Arc<Self>,
        id: SessionId,
    ) -> Result<Option<StoredSession>, StateError> {
        self.run(move |conn| {
            conn.prepare_cached(
                "SELECT \"user_id\", \"created_at\", \"last_seen\"
                 FROM \"_fluxon_sessions\" WHERE \"id\" = ?1",
            )?
            .query_row(params![id.as_bytes().as_slice()], |row| {
                Ok(StoredSession {
                    id,
                    user_id: row.get(0)?,
                    created_at: row.get::<_, i64>(1)?.max(0) as u64,
                    last_seen: row.get::<_, i64>(2)?.max(0) as u64,
                })
            })
            .optional()
        })
        .await
    }

    pub(super) async fn attach(
        self: &Arc<Self>,
        id: SessionId,
        node: &str,
        now: u64,
    ) -> Result<(), StateError> {
        self.execute(
            "UPDATE \"_fluxon_sessions\" SET \"last_seen\" = ?2, \"node\" = ?3 WHERE \"id\" = ?1",
            (*id.as_bytes(), now as i64, node.to_owned()),
        )
        .await?;
        Ok(())
    }

    pub(super) async fn detach(
        self: &Arc<Self>,
        id: SessionId,
        node: &str,
        now: u64,
    ) -> Result<(), StateError> {
        self.execute(
            "UPDATE \"_fluxon_sessions\" SET \"last_seen\" = ?2,
                 \"node\" = CASE WHEN \"node\" = ?3 THEN NULL ELSE \"node\" END
             WHERE \"id\" = ?1",
            (*id.as_bytes(), now as i64, node.to_owned()),
        )
        .await?;
        Ok(())
    }

    pub(super) async fn set_user(
        self: &Arc<Self>,
        id: SessionId,
        user_id: Option<i64>,
        now: u64,
    ) -> Result<bool, StateError> {
        let n = self
            .execute(
                "UPDATE \"_fluxon_sessions\" SET \"user_id\" = ?2, \"last_seen\" = ?3
                 WHERE \"id\" = ?1",
                (*id.as_bytes(), user_id, now as i64),
            )
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn delete_session(self: &Arc<Self>, id: SessionId) -> Result<(), StateError> {
        self.execute(
            "DELETE FROM \"_fluxon_sessions\" WHERE \"id\" = ?1",
            [*id.as_bytes()],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn purge_idle(self: &Arc<Self>, cutoff: u64) -> Result<u64, StateError> {
        self.execute(
            "DELETE FROM \"_fluxon_sessions\" WHERE \"last_seen\" < ?1",
            [cutoff as i64],
        )
        .await
    }

    pub(super) async fn record_grant_use(
        self: &Arc<Self>,
        nonce: [u8; 16],
        expires_at: u64,
    ) -> Result<bool, StateError> {
        let n = self
            .execute(
                "INSERT INTO \"_fluxon_used_grants\" (\"nonce\", \"expires_at\")
                 VALUES (?1, ?2) ON CONFLICT (\"nonce\") DO NOTHING",
                (nonce, expires_at as i64),
            )
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn purge_used_grants(self: &Arc<Self>, now: u64) -> Result<u64, StateError> {
        self.execute(
            "DELETE FROM \"_fluxon_used_grants\" WHERE \"expires_at\" < ?1",
            [now as i64],
        )
        .await
    }

    pub(super) async fn presence_of_user(
        self: &Arc<Self>,
        user_id: i64,
    ) -> Result<Vec<Presence>, StateError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT \"id\", \"node\", \"created_at\", \"last_seen\" FROM \"_fluxon_sessions\"
                 WHERE \"user_id\" = ?1 AND \"node\" IS NOT NULL ORDER BY \"id\"",
            )?;
            let rows = stmt.query_map(params![user_id], |row| {
                let id: Vec<u8> = row.get(0)?;
                Ok((
                    id,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, node, created_at, last_seen) = row?;
                // A malformed id cannot have been written by this store; skip it.
                if let Ok(bytes) = <[u8; 16]>::try_from(id.as_slice()) {
                    out.push(Presence {
                        session: SessionId::from_bytes(bytes),
                        node,
                        user_id,
                        created_at: created_at.max(0) as u64,
                        last_seen: last_seen.max(0) as u64,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn clear_node(self: &Arc<Self>, node: &str) -> Result<u64, StateError> {
        self.execute(
            "UPDATE \"_fluxon_sessions\" SET \"node\" = NULL WHERE \"node\" = ?1",
            [node.to_owned()],
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(n: u32) -> StoredSession {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_le_bytes());
        StoredSession {
            id: SessionId::from_bytes(id),
            user_id: None,
            created_at: 1,
            last_seen: 1,
        }
    }

    #[tokio::test]
    async fn checkpoints_run_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Arc::new(SqliteState::open(&path).unwrap());
        let db_size = || std::fs::metadata(&path).unwrap().len();
        let before = db_size();
        for n in 0..3 * Checkpointer::EVERY {
            store.insert_session(session(n), "n1").await.unwrap();
        }
        // The first checkpoint starts at operation EVERY (none runs before it) and, with no
        // reader holding the log, copies every page committed by then: once no checkpoint is
        // running, the file has grown. Bounded, generous wait for a busy machine.
        let checkpointer = store.checkpointer.as_ref().unwrap();
        for _ in 0..3000 {
            if !checkpointer.running.load(Ordering::Acquire) && db_size() > before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Far below the writer's own threshold, so only the background can have copied the
        // log's pages into the database file.
        assert!(
            db_size() > before,
            "database file {} bytes, {before} before",
            db_size()
        );
        let count: i64 = store
            .run(|c| {
                c.query_row("SELECT COUNT(*) FROM \"_fluxon_sessions\"", [], |r| {
                    r.get(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(count, i64::from(3 * Checkpointer::EVERY));
    }

    #[tokio::test]
    async fn a_file_from_before_presence_gains_the_node_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE \"_fluxon_sessions\" (\"id\" BLOB PRIMARY KEY NOT NULL,
                 \"user_id\" INTEGER, \"created_at\" INTEGER NOT NULL,
                 \"last_seen\" INTEGER NOT NULL) WITHOUT ROWID;
                 INSERT INTO \"_fluxon_sessions\" VALUES (x'07070707070707070707070707070707', 3, 1, 1);",
            )
            .unwrap();
        }
        let store = Arc::new(SqliteState::open(&path).unwrap());
        let id = SessionId::from_bytes([7; 16]);
        let loaded = store.load_session(id).await.unwrap().unwrap();
        assert_eq!(loaded.user_id, Some(3));
        store.attach(id, "n1", 5).await.unwrap();
        let presence = store.presence_of_user(3).await.unwrap();
        assert_eq!(presence.len(), 1);
        assert_eq!(presence[0].node, "n1");
    }
}
