//! Fluxon's database layer: typed models, queries, relations, authorized users and
//! versioned schemas, on SQLite (the embedded default) or PostgreSQL.
//!
//! - [`schema`]: owned model metadata (what codegen emits) and the deterministic DDL
//!   generator [`schema::create_sql`].
//! - [`Model`], [`Column`], [`Relation`]: the trait and typed handles generated code uses;
//!   [`testing`] shows a complete generated-style implementation.
//! - [`Database`] (sync, one connection) and [`AsyncDatabase`] (pooled): the same operations,
//!   e.g. `db.select::<User>().filter(User::USERNAME.eq("bob") & User::ID.gt(3))
//!   .order_by(User::ID.desc()).limit(10).fetch()`.
//! - [`migrate`]: numbered schema versions, diffed from model snapshots, applied up or down.
//!
//! Values are always bound parameters and identifiers always quoted.

mod async_db;
mod database;
mod error;
mod expr;
mod handle;
pub mod migrate;
mod model;
mod password;
mod pg;
mod query;
mod relation;
mod stmt;
pub mod testing;
mod value;

pub use async_db::AsyncDatabase;
pub use database::{Database, BUSY_TIMEOUT};
pub use error::{Error, ErrorKind, Result};
pub use expr::{escape_like, Expr, Order};
pub use fluxon_schema::{Date, InvalidDate, Timestamp};
pub use handle::Handle;
pub use model::{Column, Model, Relation, RowReader};
pub use password::{HashParams, Password, Verified};
pub use pg::is_postgres_url;
pub use query::{Delete, Select, Update};
pub use value::{Arg, Bind, SqlValue, Value};

/// Model metadata, DDL and schema validation: the `fluxon-schema` crate, which code
/// generation uses without the database layer.
pub use fluxon_schema as schema;
