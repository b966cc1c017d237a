//! The trait generated model types implement, and typed column handles.

use std::marker::PhantomData;

use rusqlite::types::{FromSqlError, ValueRef};

use crate::error::{Error, Result};
use crate::expr::{CmpOp, Expr, Order};
use crate::schema::ModelMeta;
use crate::value::{Arg, Bind, SqlValue, Value};

/// A Rust type stored as one table row. Codegen implements it for every model; see
/// [`crate::testing`] for the exact shape of a generated implementation.
pub trait Model: Sized + Send + 'static {
    /// The model's metadata, normalized (see [`ModelMeta::normalized`]). Column indexes used
    /// by [`Model::from_row`], [`Model::values`] and [`Column`] refer to `meta().columns`.
    fn meta() -> &'static ModelMeta;

    /// Builds a value from a result row. Columns the query did not select read as their
    /// type's `Default` (a password column as [`crate::Password::NotLoaded`]).
    fn from_row(row: &RowReader<'_, '_>) -> Result<Self>;

    /// The values of every column, in `meta().columns` order. An integer primary key of `0`
    /// means "let the database assign one" on insert.
    fn values(&self) -> Vec<Arg<'_>>;
}

/// One result row of either backend.
#[derive(Clone, Copy)]
pub(crate) enum RowRef<'r, 's> {
    Sqlite(&'r rusqlite::Row<'s>),
    Postgres(&'r tokio_postgres::Row),
}

impl<'r> RowRef<'r, '_> {
    /// Result column `i`, as SQLite's storage classes.
    pub(crate) fn value(self, i: usize) -> Result<ValueRef<'r>> {
        match self {
            Self::Sqlite(row) => Ok(row.get_ref(i)?),
            Self::Postgres(row) => crate::pg::value_ref(row, i),
        }
    }

    /// Result column `i` as an integer.
    pub(crate) fn integer(self, i: usize) -> Result<i64> {
        self.value(i)?.as_i64().map_err(|e| conversion(i, e))
    }

    /// Result column `i` as text, `None` for NULL.
    pub(crate) fn text(self, i: usize) -> Result<Option<String>> {
        match self.value(i)? {
            ValueRef::Null => Ok(None),
            v => Ok(Some(v.as_str().map_err(|e| conversion(i, e))?.to_owned())),
        }
    }
}

fn conversion(i: usize, e: FromSqlError) -> Error {
    Error::Sqlite(rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Null,
        Box::new(e),
    ))
}

/// Read access to one result row, by model column index.
pub struct RowReader<'r, 's> {
    row: RowRef<'r, 's>,
    projection: &'r [Option<usize>],
}

impl<'r, 's> RowReader<'r, 's> {
    pub(crate) fn new(row: RowRef<'r, 's>, projection: &'r [Option<usize>]) -> Self {
        Self { row, projection }
    }

    /// Reads model column `column`, or `T::default()` when the query did not select it.
    pub fn get<T: SqlValue>(&self, column: usize) -> Result<T> {
        match self.projection.get(column).copied().flatten() {
            Some(i) => {
                let v = self.row.value(i)?;
                T::from_sql(v).map_err(|e| {
                    Error::Sqlite(rusqlite::Error::FromSqlConversionFailure(
                        i,
                        v.data_type(),
                        Box::new(e),
                    ))
                })
            }
            None => Ok(T::default()),
        }
    }
}

/// A typed handle on column `index` of model `M`, holding values of type `T`.
/// Generated code declares one constant per column: `pub const USERNAME: Column<User, String>`.
pub struct Column<M, T> {
    index: usize,
    name: &'static str,
    _marker: PhantomData<fn() -> (M, T)>,
}

impl<M, T> Clone for Column<M, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M, T> Copy for Column<M, T> {}

impl<M, T> std::fmt::Debug for Column<M, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Column({})", self.name)
    }
}

impl<M: Model, T> Column<M, T> {
    /// A handle on column `index` (in `M::meta().columns`) named `name`.
    pub const fn new(index: usize, name: &'static str) -> Self {
        Self {
            index,
            name,
            _marker: PhantomData,
        }
    }

    /// The column's index in the model metadata.
    pub const fn index(self) -> usize {
        self.index
    }

    /// The column's name.
    pub const fn name(self) -> &'static str {
        self.name
    }

    fn cmp(self, op: CmpOp, v: impl Bind<T>) -> Expr<M> {
        Expr::cmp(self.name, op, v.into_value())
    }

    /// `column = value`
    pub fn eq(self, v: impl Bind<T>) -> Expr<M> {
        self.cmp(CmpOp::Eq, v)
    }
    /// `column <> value`
    pub fn ne(self, v: impl Bind<T>) -> Expr<M> {
        self.cmp(CmpOp::Ne, v)
    }
    /// `column < value`
    pub fn lt(self, v: impl Bind<T>) -> Expr<M> {
        self.cmp(CmpOp::Lt, v)
    }
    /// `column <= value`
    pub fn le(self, v: impl Bind<T>) -> Expr<M> {
        self.cmp(CmpOp::Le, v)
    }
    /// `column > value`
    pub fn gt(self, v: impl Bind<T>) -> Expr<M> {
        self.cmp(CmpOp::Gt, v)
    }
    /// `column >= value`
    pub fn ge(self, v: impl Bind<T>) -> Expr<M> {
        self.cmp(CmpOp::Ge, v)
    }
    /// `column LIKE pattern ESCAPE '\'` (`%` and `_` are wildcards; see [`crate::escape_like`]).
    pub fn like(self, pattern: &str) -> Expr<M> {
        Expr::cmp(self.name, CmpOp::Like, Value::Text(pattern.to_owned()))
    }
    /// `column IN (values...)`; an empty list matches nothing.
    pub fn is_in<V: Bind<T>>(self, values: impl IntoIterator<Item = V>) -> Expr<M> {
        Expr::is_in(
            self.name,
            values.into_iter().map(Bind::into_value).collect(),
        )
    }
    /// `column IS NULL`
    pub fn is_null(self) -> Expr<M> {
        Expr::null(self.name, true)
    }
    /// `column IS NOT NULL`
    pub fn is_not_null(self) -> Expr<M> {
        Expr::null(self.name, false)
    }
    /// Ascending order on this column.
    pub fn asc(self) -> Order<M> {
        Order::new(self.name, false)
    }
    /// Descending order on this column.
    pub fn desc(self) -> Order<M> {
        Order::new(self.name, true)
    }
}

/// A typed handle on the many-to-many relation `name` from `S` to `T`.
pub struct Relation<S, T> {
    name: &'static str,
    through: Option<fn() -> &'static ModelMeta>,
    _marker: PhantomData<fn() -> (S, T)>,
}

impl<S, T> Clone for Relation<S, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S, T> Copy for Relation<S, T> {}

impl<S: Model, T: Model> Relation<S, T> {
    /// A relation named `name` in `S::meta().many_to_many` stored in a generated join table.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            through: None,
            _marker: PhantomData,
        }
    }

    /// A relation named `name` whose links are rows of the model described by `through`
    /// (pass the through model's `Model::meta`).
    pub const fn through(name: &'static str, through: fn() -> &'static ModelMeta) -> Self {
        Self {
            name,
            through: Some(through),
            _marker: PhantomData,
        }
    }

    /// The relation's name.
    pub const fn name(self) -> &'static str {
        self.name
    }

    /// The through model's metadata, if any.
    pub fn through_meta(self) -> Option<&'static ModelMeta> {
        self.through.map(|f| f())
    }
}
