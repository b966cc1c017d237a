//! Sessions persisted in SQLite, so they survive reconnects and server restarts.

use std::path::Path;
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
#[derive(Debug)]
pub(crate) struct SessionStore {
    conn: Mutex<Connection>,
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
        Self::init(conn)
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
        })
    }

    /// Runs `f` on a blocking thread with the connection.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = store.conn.lock().map_err(|_| StoreError::Poisoned)?;
            Ok(f(&conn)?)
        })
        .await?
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
