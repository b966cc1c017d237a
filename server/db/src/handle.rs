//! [`Handle`]: the synchronous executor every database operation runs on.

use rusqlite::{params_from_iter, Connection};

use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::model::{Model, RowReader, RowRef};
use crate::password::{HashParams, Verified};
use crate::pg::{Param, PgConn};
use crate::query::{Delete, Select, Update};
use crate::schema::{quote_ident, Dialect, FieldType};
use crate::stmt::{statements, Statements};
use crate::value::{Arg, Value};
use fluxon_schema::Timestamp;

/// A borrowed connection on which to run typed operations: what [`crate::Database`] uses
/// internally and what transaction closures (sync and async) receive.
#[derive(Clone, Copy)]
pub struct Handle<'c> {
    pub(crate) exec: Exec<'c>,
    pub(crate) hash: HashParams,
}

/// The connection a [`Handle`] runs statements on.
#[derive(Clone, Copy)]
pub(crate) enum Exec<'c> {
    Sqlite(&'c Connection),
    Postgres(&'c PgConn),
}

impl std::fmt::Debug for Handle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handle")
    }
}

/// An insert as it is sent: SQL text (SQLite's placeholders) and the values to bind.
pub(crate) struct InsertStatement<'m> {
    pub(crate) sql: &'static str,
    /// The same statement in PostgreSQL's spelling (see `Statements::pg_insert_all`).
    pub(crate) pg_sql: &'static str,
    pub(crate) values: Vec<Arg<'m>>,
    /// The integer key was given, not left to the database.
    pub(crate) explicit_key: bool,
}

/// The insert of `m`: hashed passwords (`hashed`) in place of plaintexts, defaults for NULLs,
/// auto_now(_add) columns set to now, an integer key of 0 left out.
pub(crate) fn insert_statement<'m, M: Model>(
    st: &'static Statements,
    m: &'m M,
    hashed: &'m [(usize, String)],
) -> Result<InsertStatement<'m>> {
    let mut values = m.values();
    let expected = M::meta().columns.len();
    if values.len() != expected {
        return Err(Error::InvalidQuery(format!(
            "{}::values() returned {} values for {expected} columns",
            M::meta().name,
            values.len()
        )));
    }
    for (i, h) in hashed {
        values[*i] = Arg::Text(h);
    }
    for (i, d) in &st.defaults {
        if values[*i] == Arg::Null {
            values[*i] = d.as_arg();
        }
    }
    if !st.insert_time_columns.is_empty() {
        let now = Timestamp::now().as_micros();
        for &i in &st.insert_time_columns {
            values[i] = Arg::Integer(now);
        }
    }
    let omit = match st.pk {
        Some(pk) if st.pk_auto => matches!(values[pk], Arg::Integer(0) | Arg::Null),
        _ => false,
    };
    if omit {
        if let Some(pk) = st.pk {
            values.remove(pk);
        }
    }
    let (sql, pg_sql) = if omit {
        (&st.insert_without_pk, &st.pg_insert_without_pk)
    } else {
        (&st.insert_all, &st.pg_insert_all)
    };
    Ok(InsertStatement {
        sql,
        pg_sql,
        values,
        explicit_key: st.pk_auto && !omit,
    })
}

/// Hashes every plaintext password field of `m`: (column index, PHC string) pairs.
pub(crate) fn hash_passwords<M: Model>(m: &M, params: HashParams) -> Result<Vec<(usize, String)>> {
    let st = statements::<M>();
    if st.password_columns.is_empty() {
        return Ok(Vec::new());
    }
    hash_password_columns(m, st, params)
}

fn hash_password_columns<M: Model>(
    m: &M,
    st: &Statements,
    params: HashParams,
) -> Result<Vec<(usize, String)>> {
    let values = m.values();
    let mut out = Vec::new();
    for &i in &st.password_columns {
        if let Some(Arg::PlainPassword(p)) = values.get(i) {
            out.push((i, params.hash(p)?));
        }
    }
    Ok(out)
}

impl<'c> Handle<'c> {
    /// A handle on the SQLite connection `conn`, hashing new passwords with `hash`.
    pub fn new(conn: &'c Connection, hash: HashParams) -> Self {
        Self {
            exec: Exec::Sqlite(conn),
            hash,
        }
    }

    pub(crate) fn postgres(conn: &'c PgConn, hash: HashParams) -> Self {
        Self {
            exec: Exec::Postgres(conn),
            hash,
        }
    }

    /// The underlying rusqlite connection (for SQL this layer does not express); `None` on
    /// PostgreSQL, where [`Handle::execute_batch`] runs SQL of your own.
    pub fn connection(&self) -> Option<&'c Connection> {
        match self.exec {
            Exec::Sqlite(c) => Some(c),
            Exec::Postgres(_) => None,
        }
    }

    /// The SQL dialect of the database behind this handle.
    pub fn dialect(&self) -> Dialect {
        match self.exec {
            Exec::Sqlite(_) => Dialect::Sqlite,
            Exec::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs SQL statements without parameters (DDL, for instance), in this handle's
    /// transaction if one is open.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self.exec {
            Exec::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Exec::Postgres(p) => p.batch(sql),
        }
    }

    /// Whether a transaction is open on this connection.
    pub(crate) fn in_transaction(&self) -> bool {
        match self.exec {
            Exec::Sqlite(c) => !c.is_autocommit(),
            Exec::Postgres(p) => p.depth() > 0,
        }
    }

    /// Runs one statement of this layer's (SQLite placeholders) and returns rows changed.
    pub(crate) fn run<P: Param>(&self, sql: &str, params: &[P]) -> Result<usize> {
        match self.exec {
            Exec::Sqlite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(params_from_iter(params.iter()))?),
            Exec::Postgres(p) => p.execute(sql, params),
        }
    }

    /// Runs a query and maps each row with `each`.
    pub(crate) fn rows<P: Param, T>(
        &self,
        sql: &str,
        params: &[P],
        mut each: impl FnMut(RowRef<'_, '_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        match self.exec {
            Exec::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(params_from_iter(params.iter()))?;
                while let Some(row) = rows.next()? {
                    out.push(each(RowRef::Sqlite(row))?);
                }
            }
            Exec::Postgres(p) => {
                for row in p.query(sql, params)? {
                    out.push(each(RowRef::Postgres(&row))?);
                }
            }
        }
        Ok(out)
    }

    /// What identifies a row for the password helpers: SQLite's rowid, or on PostgreSQL the
    /// integer primary key.
    fn row_key<M: Model>(&self) -> Result<String> {
        match self.exec {
            Exec::Sqlite(_) => Ok("rowid".to_owned()),
            Exec::Postgres(_) => match M::meta().primary_key() {
                Some((_, c)) if c.ty == FieldType::Integer => Ok(quote_ident(&c.name)),
                _ => Err(Error::InvalidQuery(format!(
                    "{} needs an integer primary key for passwords on PostgreSQL",
                    M::meta().name
                ))),
            },
        }
    }

    /// Inserts `m` and returns the new row's id (its integer primary key / rowid). An integer
    /// primary key of 0 lets the database assign one; a NULL value of a column with a default
    /// takes the default; auto_now(_add) fields are set to now; plaintext passwords are hashed.
    pub fn insert<M: Model>(&self, m: &M) -> Result<i64> {
        let st = statements::<M>();
        if st.password_columns.is_empty() {
            return self.insert_with(st, m, &[]);
        }
        let hashed = hash_password_columns(m, st, self.hash)?;
        self.insert_with(st, m, &hashed)
    }

    pub(crate) fn insert_hashed<M: Model>(&self, m: &M, hashed: &[(usize, String)]) -> Result<i64> {
        self.insert_with(statements::<M>(), m, hashed)
    }

    fn insert_with<M: Model>(
        &self,
        st: &'static Statements,
        m: &M,
        hashed: &[(usize, String)],
    ) -> Result<i64> {
        let ins = insert_statement(st, m, hashed)?;
        match self.exec {
            Exec::Sqlite(c) => {
                c.prepare_cached(ins.sql)?
                    .execute(params_from_iter(ins.values.iter()))?;
                Ok(c.last_insert_rowid())
            }
            Exec::Postgres(p) => p.insert(st, &ins),
        }
    }

    /// The row whose primary key is `pk`, with the default columns (no password hashes).
    pub fn get<M: Model>(&self, pk: impl Into<Value>) -> Result<Option<M>> {
        let st = statements::<M>();
        let pk = pk.into();
        let mut rows = self.rows(&st.get_by_pk, &[pk], |row| {
            M::from_row(&RowReader::new(row, &st.default_projection))
        })?;
        Ok(rows.pop())
    }

    /// Starts a select of `M` rows.
    pub fn select<M: Model>(&self) -> Select<Self, M> {
        Select::new(*self)
    }

    /// Starts an update of `M` rows.
    pub fn update<M: Model>(&self) -> Update<Self, M> {
        Update::new(*self)
    }

    /// Starts a delete of `M` rows.
    pub fn delete<M: Model>(&self) -> Delete<Self, M> {
        Delete::new(*self)
    }

    /// Deletes the row whose primary key is `pk` (ON DELETE rules apply); returns rows deleted.
    pub fn delete_by_id<M: Model>(&self, pk: impl Into<Value>) -> Result<usize> {
        let st = statements::<M>();
        let pk_name = pk_column::<M>()?;
        let sql = format!(
            "DELETE FROM {} WHERE {} = ?1",
            st.table,
            quote_ident(pk_name)
        );
        self.run(&sql, &[pk.into()])
    }

    /// Writes every column of `m` to the row with its primary key (auto_now fields set to now;
    /// a password column is written only when it holds a new plaintext or a hash). Returns
    /// rows changed (0 when no such row).
    pub fn save<M: Model>(&self, m: &M) -> Result<usize> {
        let hashed = hash_passwords(m, self.hash)?;
        self.save_hashed(m, &hashed)
    }

    pub(crate) fn save_hashed<M: Model>(&self, m: &M, hashed: &[(usize, String)]) -> Result<usize> {
        let st = statements::<M>();
        let meta = M::meta();
        let Some(pk) = st.pk else {
            return Err(Error::InvalidQuery(format!(
                "{} has no primary key",
                meta.name
            )));
        };
        let mut values = m.values();
        for (i, h) in hashed {
            values[*i] = Arg::Text(h);
        }
        let now = Timestamp::now().as_micros();
        for &i in &st.update_time_columns {
            values[i] = Arg::Integer(now);
        }
        let mut sets = Vec::new();
        let mut params = Vec::new();
        for (i, c) in meta.columns.iter().enumerate() {
            let skip_password = c.password && matches!(values.get(i), Some(Arg::Null));
            if i == pk || skip_password || (c.auto_now_add && !c.auto_now) {
                continue;
            }
            params.push(values[i]);
            sets.push(format!("{} = ?{}", quote_ident(&c.name), params.len()));
        }
        params.push(values[pk]);
        let sql = format!(
            "UPDATE {} SET {} WHERE {} = ?{}",
            st.table,
            sets.join(", "),
            quote_ident(&meta.columns[pk].name),
            params.len()
        );
        self.run(&sql, &params)
    }

    /// Runs `f` in a transaction (a savepoint when already inside one): committed when `f`
    /// returns `Ok`, rolled back when it returns `Err` or panics.
    pub fn transaction<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<T, E> {
        let guard = TxGuard::begin(self.exec)?;
        match f(self) {
            Ok(v) => {
                guard.commit()?;
                Ok(v)
            }
            Err(e) => {
                guard.rollback();
                Err(e)
            }
        }
    }

    /// Hashes `plain` and stores it in the password column of the `M` row with primary key
    /// `pk`. `NotFound` when there is no such row.
    pub fn set_password<M: Model>(&self, pk: impl Into<Value>, plain: &str) -> Result<()> {
        let phc = self.hash.hash(plain)?;
        self.store_hash::<M>(pk.into(), &phc)
    }

    pub(crate) fn store_hash<M: Model>(&self, pk: Value, phc: &str) -> Result<()> {
        let (table, pk_name, pw) = password_column::<M>()?;
        let sql = format!(
            "UPDATE {table} SET {} = ?1 WHERE {} = ?2",
            quote_ident(pw),
            quote_ident(pk_name)
        );
        let n = self.run(&sql, &[Arg::Text(phc), pk.as_arg()])?;
        if n == 0 {
            return Err(Error::NotFound(format!("{} row", M::meta().name)));
        }
        Ok(())
    }

    /// Verifies `plain` against the password of the first `M` row matching `filter` (typically
    /// a unique username). Returns that row's id when it matches, `None` when no row matches or
    /// the password is wrong. A hash made with other parameters is replaced on success.
    pub fn verify_password<M: Model>(&self, filter: Expr<M>, plain: &str) -> Result<Option<i64>> {
        match self.check_password(filter, plain)? {
            Some((id, Verified::NeedsRehash)) => {
                let phc = self.hash.hash(plain)?;
                self.store_hash_by_rowid::<M>(id, &phc)?;
                Ok(Some(id))
            }
            Some((id, Verified::Yes)) => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    pub(crate) fn check_password<M: Model>(
        &self,
        filter: Expr<M>,
        plain: &str,
    ) -> Result<Option<(i64, Verified)>> {
        let (table, _, pw) = password_column::<M>()?;
        let key = self.row_key::<M>()?;
        let mut sql = format!("SELECT {key}, {} FROM {table} WHERE ", quote_ident(pw));
        let mut params = Vec::new();
        filter.render(&mut sql, &mut params, self.dialect());
        sql.push_str(" LIMIT 1");
        let found = self
            .rows(&sql, &params, |row| Ok((row.integer(0)?, row.text(1)?)))?
            .pop();
        match found {
            Some((id, Some(phc))) => Ok(Some((id, self.hash.verify(plain, &phc)?))),
            _ => {
                // Spend the same time as a real check so that response times do not reveal
                // which usernames exist.
                let _ = self.hash.verify(plain, &self.hash.dummy_hash()?);
                Ok(None)
            }
        }
    }

    pub(crate) fn store_hash_by_rowid<M: Model>(&self, rowid: i64, phc: &str) -> Result<()> {
        let (table, _, pw) = password_column::<M>()?;
        let key = self.row_key::<M>()?;
        let sql = format!(
            "UPDATE {table} SET {} = ?1 WHERE {key} = ?2",
            quote_ident(pw)
        );
        self.run(&sql, &[Arg::Text(phc), Arg::Integer(rowid)])?;
        tracing::debug!(model = %M::meta().name, "password re-hashed with current parameters");
        Ok(())
    }
}

fn pk_column<M: Model>() -> Result<&'static str> {
    M::meta()
        .primary_key()
        .map(|(_, c)| c.name.as_str())
        .ok_or_else(|| Error::InvalidQuery(format!("{} has no primary key", M::meta().name)))
}

fn password_column<M: Model>() -> Result<(&'static str, &'static str, &'static str)> {
    let meta = M::meta();
    let pw = meta
        .columns
        .iter()
        .find(|c| c.password)
        .ok_or_else(|| Error::InvalidQuery(format!("{} has no password column", meta.name)))?;
    Ok((
        statements::<M>().table.as_str(),
        pk_column::<M>()?,
        pw.name.as_str(),
    ))
}

/// Rolls back on drop unless committed: covers `Err` and panics alike.
struct TxGuard<'c> {
    exec: Exec<'c>,
    nested: bool,
    done: bool,
}

impl<'c> TxGuard<'c> {
    fn begin(exec: Exec<'c>) -> Result<Self> {
        let nested = match exec {
            Exec::Sqlite(c) => !c.is_autocommit(),
            Exec::Postgres(p) => p.depth() > 0,
        };
        let sql = match (nested, exec) {
            (true, _) => "SAVEPOINT fluxon_tx",
            (false, Exec::Sqlite(_)) => "BEGIN IMMEDIATE",
            (false, Exec::Postgres(_)) => "BEGIN",
        };
        batch(exec, sql)?;
        if let Exec::Postgres(p) = exec {
            p.set_depth(p.depth() + 1);
        }
        Ok(Self {
            exec,
            nested,
            done: false,
        })
    }

    fn commit(mut self) -> Result<()> {
        self.done = true;
        let sql = if self.nested {
            "RELEASE fluxon_tx"
        } else {
            "COMMIT"
        };
        if let Err(e) = batch(self.exec, sql) {
            self.done = false;
            return Err(e);
        }
        self.leave();
        Ok(())
    }

    fn rollback(mut self) {
        self.done = true;
        self.undo();
    }

    fn undo(&self) {
        let sql = if self.nested {
            "ROLLBACK TO fluxon_tx; RELEASE fluxon_tx"
        } else {
            "ROLLBACK"
        };
        if let Err(e) = batch(self.exec, sql) {
            tracing::warn!(error = %e, "transaction rollback failed");
        }
        self.leave();
    }

    fn leave(&self) {
        if let Exec::Postgres(p) = self.exec {
            p.set_depth(p.depth().saturating_sub(1));
        }
    }
}

fn batch(exec: Exec<'_>, sql: &str) -> Result<()> {
    match exec {
        Exec::Sqlite(c) => Ok(c.execute_batch(sql)?),
        Exec::Postgres(p) => p.batch(sql),
    }
}

impl Drop for TxGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.undo();
        }
    }
}
