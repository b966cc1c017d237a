//! Sessions persisted in SQLite, so they survive reconnects and server restarts.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::session::SessionId;

/// A session as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StoredSession {
    pub(crate) id: SessionId,
    pub(crate) user_id: Option<i64>,
    pub(crate) created_at: u64,
    pub(crate) last_seen: u64,
}

/// The session table. Calls block; async code goes through [`SessionStore::run`].
///
/// Writes go through one connection. Copying the write-ahead log back into the database file
/// (a checkpoint, with its fsyncs) happens on a second connection in the background, so a new
/// session's insert never waits for one: SQLite's automatic checkpoint would run inside
/// whichever commit crossed the threshold.
#[derive(Debug)]
pub(crate) struct SessionStore {
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
                tracing::warn!(error = %e, "session store checkpoint failed");
            }
            running.store(false, Ordering::Release);
        });
    }
}

/// A passive checkpoint: copies what it can without waiting for, or blocking, the writer.
fn checkpoint(conn: &Mutex<Connection>) -> Result<(), StoreError> {
    let conn = conn.lock().map_err(|_| StoreError::Poisoned)?;
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}

/// Why the session store failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("session store task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("session store lock poisoned")]
    Poisoned,
}

impl SessionStore {
    pub(crate) fn open(path: &Path) -> Result<Self, rusqlite::Error> {
        let conn = Connection::open(path)?;
        // A safety net only: the log is restarted from its beginning after a checkpoint that
        // copied all of it, which a background checkpoint racing a stream of writes may never
        // do; the writer then checkpoints itself (mostly already copied) at this size.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
        // The log can grow toward that size under a stream of new sessions; once a checkpoint
        // has copied all of it and it starts over, give the disk space back.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        let mut store = Self::init(conn)?;
        // The database is in WAL mode now: the background takes over checkpoints.
        store.checkpointer = Some(Checkpointer::open(path)?);
        Ok(store)
    }

    #[cfg(test)]
    pub(crate) fn in_memory() -> Result<Self, rusqlite::Error> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, rusqlite::Error> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS \"_fluxon_sessions\" (
                \"id\" BLOB PRIMARY KEY NOT NULL,
                \"user_id\" INTEGER,
                \"created_at\" INTEGER NOT NULL,
                \"last_seen\" INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS \"_fluxon_sessions_user\"
                ON \"_fluxon_sessions\" (\"user_id\");",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
            checkpointer: None,
        })
    }

    /// Runs `f` on a blocking thread with the connection.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let store = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || {
            let conn = store.conn.lock().map_err(|_| StoreError::Poisoned)?;
            Ok(f(&conn)?)
        })
        .await?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.after_operation();
        }
        result
    }
}

pub(crate) fn insert(conn: &Connection, s: &StoredSession) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO \"_fluxon_sessions\" (\"id\", \"user_id\", \"created_at\", \"last_seen\")
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        s.id.as_bytes().as_slice(),
        s.user_id,
        s.created_at as i64,
        s.last_seen as i64
    ])?;
    Ok(())
}

pub(crate) fn load(
    conn: &Connection,
    id: SessionId,
) -> Result<Option<StoredSession>, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT \"user_id\", \"created_at\", \"last_seen\" FROM \"_fluxon_sessions\" WHERE \"id\" = ?1",
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
}

pub(crate) fn set_user(
    conn: &Connection,
    id: SessionId,
    user_id: Option<i64>,
    now: u64,
) -> Result<bool, rusqlite::Error> {
    let n = conn
        .prepare_cached(
            "UPDATE \"_fluxon_sessions\" SET \"user_id\" = ?2, \"last_seen\" = ?3 WHERE \"id\" = ?1",
        )?
        .execute(params![id.as_bytes().as_slice(), user_id, now as i64])?;
    Ok(n == 1)
}

pub(crate) fn touch(conn: &Connection, id: SessionId, now: u64) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("UPDATE \"_fluxon_sessions\" SET \"last_seen\" = ?2 WHERE \"id\" = ?1")?
        .execute(params![id.as_bytes().as_slice(), now as i64])?;
    Ok(())
}

pub(crate) fn delete(conn: &Connection, id: SessionId) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("DELETE FROM \"_fluxon_sessions\" WHERE \"id\" = ?1")?
        .execute(params![id.as_bytes().as_slice()])?;
    Ok(())
}

/// Deletes sessions last seen before `cutoff`; returns how many.
pub(crate) fn purge_idle(conn: &Connection, cutoff: u64) -> Result<usize, rusqlite::Error> {
    conn.prepare_cached("DELETE FROM \"_fluxon_sessions\" WHERE \"last_seen\" < ?1")?
        .execute(params![cutoff as i64])
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
        let path = dir.path().join("sessions.db");
        let store = Arc::new(SessionStore::open(&path).unwrap());
        let db_size = || std::fs::metadata(&path).unwrap().len();
        let before = db_size();
        for n in 0..3 * Checkpointer::EVERY {
            store.run(move |c| insert(c, &session(n))).await.unwrap();
        }
        let checkpointer = store.checkpointer.as_ref().unwrap();
        for _ in 0..500 {
            if !checkpointer.running.load(Ordering::Acquire) && db_size() > before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Far below the writer's own threshold, so only the background can have copied the
        // log's pages into the database file.
        assert!(
            db_size() > before + 8 * 4096,
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

    #[test]
    fn sessions_round_trip() {
        let store = SessionStore::in_memory().unwrap();
        let conn = store.conn.lock().unwrap();
        let s = StoredSession {
            id: SessionId::from_bytes([3; 16]),
            user_id: None,
            created_at: 10,
            last_seen: 10,
        };
        insert(&conn, &s).unwrap();
        assert_eq!(load(&conn, s.id).unwrap(), Some(s));
        assert!(set_user(&conn, s.id, Some(42), 20).unwrap());
        let loaded = load(&conn, s.id).unwrap().unwrap();
        assert_eq!((loaded.user_id, loaded.last_seen), (Some(42), 20));
        touch(&conn, s.id, 30).unwrap();
        assert_eq!(purge_idle(&conn, 30).unwrap(), 0);
        assert_eq!(purge_idle(&conn, 31).unwrap(), 1);
        assert_eq!(load(&conn, s.id).unwrap(), None);
        assert!(!set_user(&conn, s.id, None, 40).unwrap());
        delete(&conn, s.id).unwrap();
    }
}
