//! The PostgreSQL backend: a pool of tokio-postgres connections shared by every task.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::{Presence, StateError, StoredSession};
use crate::session::SessionId;

/// Connections kept open to the database.
const POOL_SIZE: usize = 16;
/// Longest wait for a connection: to open one, or for one to be free.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Any constant shared by every node: the key of the advisory lock that keeps two nodes
/// starting at once from creating the tables at the same time.
const SCHEMA_LOCK: i64 = 0x666c_7578_6f6e_0001;

/// The tables, created when absent (the same shape as the SQLite ones).
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS _fluxon_sessions (
        id BYTEA PRIMARY KEY,
        user_id BIGINT,
        created_at BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        node TEXT
    );
    CREATE INDEX IF NOT EXISTS _fluxon_sessions_user ON _fluxon_sessions (user_id);
    CREATE TABLE IF NOT EXISTS _fluxon_used_grants (
        nonce BYTEA PRIMARY KEY,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS _fluxon_used_grants_expiry ON _fluxon_used_grants (expires_at);";

/// `url` with its password (if any) replaced by `***`, for logs and errors.
pub(super) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends at the first '/' or '?'; its credentials end at its last '@'.
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A pool of connections to one database.
#[derive(Clone)]
pub(super) struct PgState {
    pool: Pool,
}

impl PgState {
    /// Connects to `url` and creates the tables when absent.
    pub(super) async fn open(url: &str) -> Result<Self, StateError> {
        let shown = redact(url);
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| StateError::InvalidUrl {
                    url: shown.clone(),
                    reason: e.to_string(),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StateError::Pool(e.to_string()))?;
        let mut client = pool.get().await.map_err(|e| StateError::Unreachable {
            url: shown.clone(),
            reason: describe_pool_error(&e),
        })?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await?;
        tx.batch_execute(SCHEMA).await?;
        tx.commit().await?;
        drop(client);
        Ok(Self { pool })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StateError> {
        self.pool
            .get()
            .await
            .map_err(|e| StateError::Pool(describe_pool_error(&e)))
    }

    /// Runs one statement and returns how many rows it changed.
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StateError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.execute(&stmt, params).await?)
    }

    pub(super) async fn insert_session(
        &self,
        s: StoredSession,
        node: &str,
    ) -> Result<(), StateError> {
        self.execute(
            "INSERT INTO _fluxon_sessions (id, user_id, created_at, last_seen, node)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &s.id.as_bytes().as_slice(),
                &s.user_id,
                &(s.created_at as i64),
                &(s.last_seen as i64),
                &node,
            ],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn load_session(
        &self,
        id: SessionId,
    ) -> Result<Option<StoredSession>, StateError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT user_id, created_at, last_seen FROM _fluxon_sessions WHERE id = $1",
            )
            .await?;
        let row = client
            .query_opt(&stmt, &[&id.as_bytes().as_slice()])
            .await?;
        Ok(match row {
            Some(row) => Some(StoredSession {
                id,
                user_id: row.try_get(0)?,
                created_at: row.try_get::<_, i64>(1)?.max(0) as u64,
                last_seen: row.try_get::<_, i64>(2)?.max(0) as u64,
            }),
            None => None,
        })
    }

    pub(super) async fn attach(
        &self,
        id: SessionId,
        node: &str,
        now: u64,
    ) -> Result<(), StateError> {
        self.execute(
            "UPDATE _fluxon_sessions SET last_seen = $2, node = $3 WHERE id = $1",
            &[&id.as_bytes().as_slice(), &(now as i64), &node],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn detach(
        &self,
        id: SessionId,
        node: &str,
        now: u64,
    ) -> Result<(), StateError> {
        self.execute(
            "UPDATE _fluxon_sessions SET last_seen = $2,
                 node = CASE WHEN node = $3 THEN NULL ELSE node END
             WHERE id = $1",
            &[&id.as_bytes().as_slice(), &(now as i64), &node],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn set_user(
        &self,
        id: SessionId,
        user_id: Option<i64>,
        now: u64,
    ) -> Result<bool, StateError> {
        let n = self
            .execute(
                "UPDATE _fluxon_sessions SET user_id = $2, last_seen = $3 WHERE id = $1",
                &[&id.as_bytes().as_slice(), &user_id, &(now as i64)],
            )
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn delete_session(&self, id: SessionId) -> Result<(), StateError> {
        self.execute(
            "DELETE FROM _fluxon_sessions WHERE id = $1",
            &[&id.as_bytes().as_slice()],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn purge_idle(&self, cutoff: u64) -> Result<u64, StateError> {
        self.execute(
            "DELETE FROM _fluxon_sessions WHERE last_seen < $1",
            &[&(cutoff as i64)],
        )
        .await
    }

    pub(super) async fn record_grant_use(
        &self,
        nonce: [u8; 16],
        expires_at: u64,
    ) -> Result<bool, StateError> {
        let n = self
            .execute(
                "INSERT INTO _fluxon_used_grants (nonce, expires_at) VALUES ($1, $2)
                 ON CONFLICT (nonce) DO NOTHING",
                &[&nonce.as_slice(), &(expires_at as i64)],
            )
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn purge_used_grants(&self, now: u64) -> Result<u64, StateError> {
        self.execute(
            "DELETE FROM _fluxon_used_grants WHERE expires_at < $1",
            &[&(now as i64)],
        )
        .await
    }

    pub(super) async fn presence_of_user(&self, user_id: i64) -> Result<Vec<Presence>, StateError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, node, created_at, last_seen FROM _fluxon_sessions
                 WHERE user_id = $1 AND node IS NOT NULL ORDER BY id",
            )
            .await?;
        let rows = client.query(&stmt, &[&user_id]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Vec<u8> = row.try_get(0)?;
            // A malformed id cannot have been written by this store; skip it.
            if let Ok(bytes) = <[u8; 16]>::try_from(id.as_slice()) {
                out.push(Presence {
                    session: SessionId::from_bytes(bytes),
                    node: row.try_get(1)?,
                    user_id,
                    created_at: row.try_get::<_, i64>(2)?.max(0) as u64,
                    last_seen: row.try_get::<_, i64>(3)?.max(0) as u64,
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn clear_node(&self, node: &str) -> Result<u64, StateError> {
        self.execute(
            "UPDATE _fluxon_sessions SET node = NULL WHERE node = $1",
            &[&node],
        )
        .await
    }
}

/// What went wrong getting a connection, in one line: the database's own words when it
/// answered, else the cause.
fn describe_pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => {
                let mut text = e.to_string();
                if let Some(source) = std::error::Error::source(e) {
                    text = format!("{text}: {source}");
                }
                text
            }
        },
        deadpool_postgres::PoolError::Timeout(_) => {
            format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://app:s3cret@db.example:5432/app?sslmode=disable"),
            "postgres://app:***@db.example:5432/app?sslmode=disable"
        );
        assert_eq!(redact("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(redact("postgresql://db/app"), "postgresql://db/app");
        assert_eq!(redact("postgres://u:p%40ss@h/d"), "postgres://u:***@h/d");
    }
}
