//! The PostgreSQL side of the executor: connecting, binding [`Arg`]s, reading rows as the
//! same [`ValueRef`]s SQLite gives, placeholder spelling and SQLSTATE classification.
//!
//! A [`PgConn`] is one pooled connection used from a blocking thread: each statement is
//! driven to completion with the runtime's `block_on`, so the typed API and transaction
//! closures stay synchronous, as on SQLite.

use std::cell::Cell;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, QueueMode, RecyclingMethod,
};
use rusqlite::types::ValueRef;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{NoTls, Row};

use crate::error::{Error, Result};
use crate::handle::InsertStatement;
use crate::model::RowRef;
use crate::stmt::Statements;
use crate::value::{Arg, Value};

/// Longest wait to open a connection, or for a pooled one to be free.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `location` names a PostgreSQL server (`postgres://` or `postgresql://`) rather
/// than a SQLite file.
pub fn is_postgres_url(location: &str) -> bool {
    let lower = location.get(..13).unwrap_or(location).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// Where a connection goes, without the password: for error messages and logs.
fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "database {:?} as {:?} on {}:{port}",
        config.get_dbname().unwrap_or("(default)"),
        config.get_user().unwrap_or("(default)"),
        if hosts.is_empty() {
            "(default host)".to_owned()
        } else {
            hosts.join(",")
        }
    )
}

/// A pool of at most `size` connections to the server `url` names. Nothing is connected
/// yet: [`first_connection`] checks that the server answers.
pub(crate) fn pool(url: &str, size: usize) -> Result<(Pool, String)> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| Error::Connect(format!("not a PostgreSQL URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let shown = describe(&config);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(size.max(1))
        // The connection used last goes out first: under light load one hot connection (its
        // server process and statement cache warm) serves, instead of each in turn.
        .queue_mode(QueueMode::Lifo)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| Error::Pool(e.to_string()))?;
    Ok((pool, shown))
}

/// A connection from `pool`; a failure names the server (never the password) and why.
pub(crate) async fn first_connection(pool: &Pool, shown: &str) -> Result<Object> {
    pool.get()
        .await
        .map_err(|e| Error::Connect(format!("cannot connect to PostgreSQL {shown}: {}", why(&e))))
}

/// A connection from `pool` for one operation.
pub(crate) async fn connection(pool: &Pool) -> Result<Object> {
    pool.get().await.map_err(|e| Error::Pool(why(&e)))
}

fn why(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => match std::error::Error::source(e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            },
        },
        PoolError::Timeout(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        other => other.to_string(),
    }
}

/// `sql` with SQLite's `?` and `?N` placeholders spelled `$N`. Quoted identifiers and string
/// literals are copied as they are.
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1u32;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    while let Some(d) = chars.next_if(char::is_ascii_digit) {
                        out.push(d);
                    }
                } else {
                    out.push_str(&next.to_string());
                }
                next += 1;
            }
            (None, c) => out.push(c),
        }
    }
    out
}

/// An argument bound as whichever type PostgreSQL inferred for its placeholder: every column
/// is one of SQLite's storage classes, so an integer may meet `int8`, `int4` or `bool`.
#[derive(Debug)]
pub(crate) struct PgArg<'a>(pub(crate) Arg<'a>);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for PgArg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match self.0 {
            Arg::Null => Ok(IsNull::Yes),
            Arg::PlainPassword(_) => Err("a plaintext password is never bound".into()),
            Arg::Integer(i) => match *ty {
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().as_str().to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Arg::Real(r) => match *ty {
                Type::FLOAT4 => (r as f32).to_sql(ty, out),
                _ => r.to_sql(ty, out),
            },
            Arg::Text(s) => s.to_sql(ty, out),
            Arg::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Something bound as a statement parameter on either backend.
pub(crate) trait Param: rusqlite::ToSql {
    fn arg(&self) -> Arg<'_>;
}

impl Param for Value {
    fn arg(&self) -> Arg<'_> {
        self.as_arg()
    }
}

impl Param for Arg<'_> {
    fn arg(&self) -> Arg<'_> {
        *self
    }
}

/// Column `i` of a PostgreSQL row as the value SQLite would have given.
pub(crate) fn value_ref(row: &Row, i: usize) -> Result<ValueRef<'_>> {
    let Some(column) = row.columns().get(i) else {
        return Err(Error::InvalidQuery(format!("no result column {i}")));
    };
    fn or_null<T>(v: Option<T>, f: impl FnOnce(T) -> ValueRef<'static>) -> ValueRef<'static> {
        v.map_or(ValueRef::Null, f)
    }
    Ok(match *column.type_() {
        Type::INT8 => or_null(row.try_get::<_, Option<i64>>(i)?, ValueRef::Integer),
        Type::INT4 => or_null(row.try_get::<_, Option<i32>>(i)?, |v| {
            ValueRef::Integer(v.into())
        }),
        Type::INT2 => or_null(row.try_get::<_, Option<i16>>(i)?, |v| {
            ValueRef::Integer(v.into())
        }),
        Type::BOOL => or_null(row.try_get::<_, Option<bool>>(i)?, |v| {
            ValueRef::Integer(v.into())
        }),
        Type::FLOAT8 => or_null(row.try_get::<_, Option<f64>>(i)?, ValueRef::Real),
        Type::FLOAT4 => or_null(row.try_get::<_, Option<f32>>(i)?, |v| {
            ValueRef::Real(v.into())
        }),
        Type::BYTEA => match row.try_get::<_, Option<&[u8]>>(i)? {
            Some(b) => ValueRef::Blob(b),
            None => ValueRef::Null,
        },
        _ => match row.try_get::<_, Option<&str>>(i)? {
            Some(s) => ValueRef::Text(s.as_bytes()),
            None => ValueRef::Null,
        },
    })
}

/// The error classification of a PostgreSQL error, by SQLSTATE, matching SQLite's.
pub(crate) fn classify(err: tokio_postgres::Error) -> Error {
    let Some(db) = err.as_db_error() else {
        return Error::Postgres(err);
    };
    let text = match db.detail() {
        Some(detail) => format!("{} ({detail})", db.message()),
        None => db.message().to_owned(),
    };
    match *db.code() {
        SqlState::UNIQUE_VIOLATION => Error::UniqueViolation(text),
        SqlState::FOREIGN_KEY_VIOLATION => Error::ForeignKeyViolation(text),
        SqlState::NOT_NULL_VIOLATION | SqlState::CHECK_VIOLATION => {
            Error::ConstraintViolation(text)
        }
        SqlState::LOCK_NOT_AVAILABLE
        | SqlState::T_R_SERIALIZATION_FAILURE
        | SqlState::T_R_DEADLOCK_DETECTED => Error::Busy(text),
        _ => Error::Postgres(err),
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        classify(err)
    }
}

/// Rows of `sql` (SQLite placeholders) with `params` bound, on `client`.
pub(crate) async fn query<P: Param>(client: &Object, sql: &str, params: &[P]) -> Result<Vec<Row>> {
    query_numbered(client, &numbered(sql), params).await
}

/// Runs `sql` on `client` and returns the number of rows it changed.
pub(crate) async fn execute<P: Param>(client: &Object, sql: &str, params: &[P]) -> Result<usize> {
    let args = bind(params);
    let stmt = client.prepare_cached(&numbered(sql)).await?;
    let n = client.execute(&stmt, &refs(&args)).await?;
    usize::try_from(n).map_err(|_| Error::InvalidQuery(format!("{n} rows changed")))
}

/// Rows of `sql`, already in PostgreSQL's spelling.
async fn query_numbered<P: Param>(client: &Object, sql: &str, params: &[P]) -> Result<Vec<Row>> {
    let args = bind(params);
    let stmt = client.prepare_cached(sql).await?;
    Ok(client.query(&stmt, &refs(&args)).await?)
}

fn bind<P: Param>(params: &[P]) -> Vec<PgArg<'_>> {
    params.iter().map(|p| PgArg(p.arg())).collect()
}

fn refs<'a>(args: &'a [PgArg<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|a| a as _).collect()
}

/// Runs an insert and returns the new row's integer key (0 for a model without one: a
/// PostgreSQL row has no rowid). A key given explicitly moves the identity sequence past the
/// largest key, as SQLite's rowid moves.
pub(crate) async fn insert(
    client: &Object,
    st: &Statements,
    ins: &InsertStatement<'_>,
) -> Result<i64> {
    let rows = query_numbered(client, ins.pg_sql, &ins.values).await?;
    if !st.pg_returns_key {
        return Ok(0);
    }
    let id = match rows.first() {
        Some(row) => RowRef::Postgres(row).integer(0)?,
        None => return Err(Error::InvalidQuery("insert returned no row".into())),
    };
    if ins.explicit_key {
        execute(client, &st.bump_identity, &[] as &[Value]).await?;
    }
    Ok(id)
}

/// One PostgreSQL connection driven from a blocking thread.
pub(crate) struct PgConn {
    client: Object,
    rt: tokio::runtime::Handle,
    /// Open transactions and savepoints on this connection.
    depth: Cell<u32>,
}

impl PgConn {
    /// Wraps `client`, whose statements run on `rt` (the runtime its connection task is on).
    pub(crate) fn new(client: Object, rt: tokio::runtime::Handle) -> Self {
        Self {
            client,
            rt,
            depth: Cell::new(0),
        }
    }

    /// Rows of `sql` (SQLite placeholders) with `params` bound.
    pub(crate) fn query<P: Param>(&self, sql: &str, params: &[P]) -> Result<Vec<Row>> {
        self.rt.block_on(query(&self.client, sql, params))
    }

    /// Runs `sql` and returns the number of rows it changed.
    pub(crate) fn execute<P: Param>(&self, sql: &str, params: &[P]) -> Result<usize> {
        self.rt.block_on(execute(&self.client, sql, params))
    }

    /// Runs an insert; see [`insert`].
    pub(crate) fn insert(&self, st: &Statements, ins: &InsertStatement<'_>) -> Result<i64> {
        self.rt.block_on(insert(&self.client, st, ins))
    }

    /// Runs statements without parameters (DDL, transaction control).
    pub(crate) fn batch(&self, sql: &str) -> Result<()> {
        Ok(self.rt.block_on(self.client.batch_execute(sql))?)
    }

    /// Open transactions and savepoints.
    pub(crate) fn depth(&self) -> u32 {
        self.depth.get()
    }

    pub(crate) fn set_depth(&self, depth: u32) {
        self.depth.set(depth);
    }
}

#[cfg(test)]
mod tests {
    use super::{is_postgres_url, numbered};

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            numbered("SELECT \"a?\" FROM t WHERE x = ?1 AND y LIKE ? ESCAPE '\\' AND z = '?'"),
            "SELECT \"a?\" FROM t WHERE x = $1 AND y LIKE $2 ESCAPE '\\' AND z = '?'"
        );
        assert_eq!(
            numbered("INSERT INTO t (a, b) VALUES (?1, ?2)"),
            "INSERT INTO t (a, b) VALUES ($1, $2)"
        );
        assert_eq!(
            numbered("x IN (?, ?, ?) LIMIT ? OFFSET ?"),
            "x IN ($1, $2, $3) LIMIT $4 OFFSET $5"
        );
        assert_eq!(numbered("a = ?12"), "a = $12");
    }

    #[test]
    fn postgres_urls_are_told_from_paths() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("PostgreSQL://u@h/db"));
        assert!(!is_postgres_url("data/app.db"));
        assert!(!is_postgres_url("postgres.db"));
        assert!(!is_postgres_url(""));
    }
}
