//! Query builders: select, update and delete with typed filters.
//!
//! A builder holds its executor `D`: a [`Handle`] (synchronous terminals) or an
//! `&AsyncDatabase` (the same terminals, async). SQL text is built only from quoted
//! identifiers and `?` placeholders; every value is a bound parameter.

use crate::error::{Error, Result};
use crate::expr::{Expr, Order};
use crate::handle::Handle;
use crate::model::{Column, Model, RowReader};
use crate::schema::{quote_ident, Dialect};
use crate::stmt::{column_list, projection, statements};
use crate::value::{Bind, Value};
use fluxon_schema::Timestamp;

/// A select of `M` rows; see [`Handle::select`].
#[must_use = "a query does nothing until fetched"]
pub struct Select<D, M> {
    pub(crate) db: D,
    pub(crate) parts: SelectParts<M>,
}

/// The executor-independent part of a [`Select`].
pub(crate) struct SelectParts<M> {
    filter: Option<Expr<M>>,
    order: Vec<Order<M>>,
    limit: Option<i64>,
    offset: Option<i64>,
    columns: Option<Vec<usize>>,
}

impl<D, M: Model> Select<D, M> {
    pub(crate) fn new(db: D) -> Self {
        Self {
            db,
            parts: SelectParts {
                filter: None,
                order: Vec::new(),
                limit: None,
                offset: None,
                columns: None,
            },
        }
    }

    /// Keeps rows matching `e` (ANDed with earlier filters).
    pub fn filter(mut self, e: Expr<M>) -> Self {
        self.parts.filter = Some(match self.parts.filter.take() {
            Some(f) => f & e,
            None => e,
        });
        self
    }

    /// Adds an ORDER BY term.
    pub fn order_by(mut self, o: Order<M>) -> Self {
        self.parts.order.push(o);
        self
    }

    /// At most `n` rows.
    pub fn limit(mut self, n: i64) -> Self {
        self.parts.limit = Some(n);
        self
    }

    /// Skips the first `n` rows.
    pub fn offset(mut self, n: i64) -> Self {
        self.parts.offset = Some(n);
        self
    }

    /// Selects only these columns (by [`Column::index`]); others read as their default.
    /// Naming a password column here is the only way to read a hash.
    pub fn columns(mut self, columns: impl IntoIterator<Item = usize>) -> Self {
        self.parts.columns = Some(columns.into_iter().collect());
        self
    }

    pub(crate) fn with_db<E>(self, db: E) -> Select<E, M> {
        Select {
            db,
            parts: self.parts,
        }
    }
}

impl<M: Model> SelectParts<M> {
    fn where_clause(&self, sql: &mut String, params: &mut Vec<Value>, dialect: Dialect) {
        if let Some(f) = &self.filter {
            sql.push_str(" WHERE ");
            f.render(sql, params, dialect);
        }
    }

    fn tail(&self, sql: &mut String, params: &mut Vec<Value>, dialect: Dialect) {
        for (i, o) in self.order.iter().enumerate() {
            sql.push_str(if i == 0 { " ORDER BY " } else { ", " });
            sql.push_str(&quote_ident(o.column));
            sql.push_str(if o.descending { " DESC" } else { " ASC" });
        }
        if self.limit.is_some() || self.offset.is_some() {
            sql.push_str(" LIMIT ? OFFSET ?");
            // No limit: SQLite spells it -1, PostgreSQL NULL.
            let unlimited = match dialect {
                Dialect::Postgres => Value::Null,
                _ => Value::Integer(-1),
            };
            params.push(self.limit.map_or(unlimited, Value::Integer));
            params.push(Value::Integer(self.offset.unwrap_or(0)));
        }
    }

    /// The select's SQL (SQLite placeholders), values and projection.
    pub(crate) fn fetch_statement(
        &self,
        dialect: Dialect,
    ) -> Result<(String, Vec<Value>, Projection)> {
        let st = statements::<M>();
        let meta = M::meta();
        let mut params = Vec::new();
        let (mut sql, projection) = match &self.columns {
            None => (st.default_select.clone(), Projection::Default),
            Some(cols) => {
                if let Some(bad) = cols.iter().find(|&&i| i >= meta.columns.len()) {
                    return Err(Error::InvalidQuery(format!(
                        "no column {bad} in {}",
                        meta.name
                    )));
                }
                (
                    format!("SELECT {} FROM {}", column_list(meta, cols), st.table),
                    Projection::Custom(projection(meta, cols)),
                )
            }
        };
        self.where_clause(&mut sql, &mut params, dialect);
        self.tail(&mut sql, &mut params, dialect);
        Ok((sql, params, projection))
    }

    fn fetch(&self, h: &Handle<'_>) -> Result<Vec<M>> {
        let (sql, params, projection) = self.fetch_statement(h.dialect())?;
        let proj = projection.of::<M>();
        h.rows(&sql, &params, |row| M::from_row(&RowReader::new(row, proj)))
    }

    /// The count's SQL (SQLite placeholders) and values.
    pub(crate) fn count_statement(&self, dialect: Dialect) -> (String, Vec<Value>) {
        let st = statements::<M>();
        let mut params = Vec::new();
        let mut inner = format!("SELECT 1 FROM {}", st.table);
        self.where_clause(&mut inner, &mut params, dialect);
        self.tail(&mut inner, &mut params, dialect);
        (
            format!("SELECT COUNT(*) FROM ({inner}) AS \"matching\""),
            params,
        )
    }

    fn count(&self, h: &Handle<'_>) -> Result<i64> {
        let (sql, params) = self.count_statement(h.dialect());
        let counts = h.rows(&sql, &params, |row| row.integer(0))?;
        Ok(counts.first().copied().unwrap_or(0))
    }
}

/// Which result column holds each model column.
pub(crate) enum Projection {
    /// The default select's (every column but passwords).
    Default,
    /// A select of chosen columns.
    Custom(Vec<Option<usize>>),
}

impl Projection {
    pub(crate) fn of<M: Model>(&self) -> &[Option<usize>] {
        match self {
            Self::Default => &statements::<M>().default_projection,
            Self::Custom(p) => p,
        }
    }
}

impl<M: Model> Select<Handle<'_>, M> {
    /// Runs the query and returns the rows.
    pub fn fetch(self) -> Result<Vec<M>> {
        self.parts.fetch(&self.db)
    }

    /// The first row, if any.
    pub fn first(self) -> Result<Option<M>> {
        let mut rows = self.limit(1).fetch()?;
        Ok(rows.pop())
    }

    /// The number of matching rows (honoring limit and offset).
    pub fn count(self) -> Result<i64> {
        self.parts.count(&self.db)
    }

    /// Whether any row matches.
    pub fn exists(self) -> Result<bool> {
        Ok(self.limit(1).count()? > 0)
    }
}

/// An update of `M` rows; see [`Handle::update`]. Needs a filter, or `all()`.
#[must_use = "an update does nothing until executed"]
pub struct Update<D, M> {
    pub(crate) db: D,
    pub(crate) parts: UpdateParts<M>,
}

/// The executor-independent part of an [`Update`].
pub(crate) struct UpdateParts<M> {
    sets: Vec<(usize, Value)>,
    filter: Option<Expr<M>>,
    all: bool,
}

impl<D, M: Model> Update<D, M> {
    pub(crate) fn new(db: D) -> Self {
        Self {
            db,
            parts: UpdateParts {
                sets: Vec::new(),
                filter: None,
                all: false,
            },
        }
    }

    /// Sets `column` to `value` (password columns are refused: use `set_password`).
    pub fn set<T>(mut self, column: Column<M, T>, value: impl Bind<T>) -> Self {
        self.parts.sets.push((column.index(), value.into_value()));
        self
    }

    /// Updates rows matching `e` (ANDed with earlier filters).
    pub fn filter(mut self, e: Expr<M>) -> Self {
        self.parts.filter = Some(match self.parts.filter.take() {
            Some(f) => f & e,
            None => e,
        });
        self
    }

    /// Allows an update without a filter (every row).
    pub fn all(mut self) -> Self {
        self.parts.all = true;
        self
    }

    pub(crate) fn with_db<E>(self, db: E) -> Update<E, M> {
        Update {
            db,
            parts: self.parts,
        }
    }
}

impl<M: Model> UpdateParts<M> {
    fn execute(&self, h: &Handle<'_>) -> Result<usize> {
        let meta = M::meta();
        let st = statements::<M>();
        if self.filter.is_none() && !self.all {
            return Err(Error::InvalidQuery(
                "update without filter: call all()".into(),
            ));
        }
        if self.sets.is_empty() {
            return Err(Error::InvalidQuery("update sets no column".into()));
        }
        let mut sql = format!("UPDATE {} SET ", st.table);
        let mut params = Vec::new();
        let now = Timestamp::now().as_micros();
        let auto = st
            .update_time_columns
            .iter()
            .filter(|i| !self.sets.iter().any(|(s, _)| s == *i))
            .map(|&i| (i, Value::Integer(now)));
        for (n, (i, v)) in self.sets.iter().cloned().chain(auto).enumerate() {
            let c = meta
                .columns
                .get(i)
                .ok_or_else(|| Error::InvalidQuery(format!("no column {i} in {}", meta.name)))?;
            if c.password {
                return Err(Error::InvalidQuery(
                    "password columns are written with set_password".into(),
                ));
            }
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&quote_ident(&c.name));
            sql.push_str(" = ?");
            params.push(v);
        }
        if let Some(f) = &self.filter {
            sql.push_str(" WHERE ");
            f.render(&mut sql, &mut params, h.dialect());
        }
        h.run(&sql, &params)
    }
}

impl<M: Model> Update<Handle<'_>, M> {
    /// Runs the update; returns the number of rows changed.
    pub fn execute(self) -> Result<usize> {
        self.parts.execute(&self.db)
    }
}

/// A delete of `M` rows; see [`Handle::delete`]. Needs a filter, or `all()`.
#[must_use = "a delete does nothing until executed"]
pub struct Delete<D, M> {
    pub(crate) db: D,
    pub(crate) parts: DeleteParts<M>,
}

/// The executor-independent part of a [`Delete`].
pub(crate) struct DeleteParts<M> {
    filter: Option<Expr<M>>,
    all: bool,
}

impl<D, M: Model> Delete<D, M> {
    pub(crate) fn new(db: D) -> Self {
        Self {
            db,
            parts: DeleteParts {
                filter: None,
                all: false,
            },
        }
    }

    /// Deletes rows matching `e` (ANDed with earlier filters).
    pub fn filter(mut self, e: Expr<M>) -> Self {
        self.parts.filter = Some(match self.parts.filter.take() {
            Some(f) => f & e,
            None => e,
        });
        self
    }

    /// Allows a delete without a filter (every row).
    pub fn all(mut self) -> Self {
        self.parts.all = true;
        self
    }

    pub(crate) fn with_db<E>(self, db: E) -> Delete<E, M> {
        Delete {
            db,
            parts: self.parts,
        }
    }
}

impl<M: Model> DeleteParts<M> {
    fn execute(&self, h: &Handle<'_>) -> Result<usize> {
        if self.filter.is_none() && !self.all {
            return Err(Error::InvalidQuery(
                "delete without filter: call all()".into(),
            ));
        }
        let mut sql = format!("DELETE FROM {}", statements::<M>().table);
        let mut params = Vec::new();
        if let Some(f) = &self.filter {
            sql.push_str(" WHERE ");
            f.render(&mut sql, &mut params, h.dialect());
        }
        h.run(&sql, &params)
    }
}

impl<M: Model> Delete<Handle<'_>, M> {
    /// Runs the delete (ON DELETE rules apply); returns the number of rows deleted.
    pub fn execute(self) -> Result<usize> {
        self.parts.execute(&self.db)
    }
}
