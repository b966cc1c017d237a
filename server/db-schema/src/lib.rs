//! Model metadata: owned, serializable descriptions of tables, columns and relations, with the
//! values they hold and the DDL they create, and no database attached.
//!
//! Codegen builds these values from `.proto` models (typically inside a `LazyLock`); the
//! query layer of `fluxon-db` (which re-exports this crate as `fluxon_db::schema`), the DDL
//! generator ([`create_sql`]) and schema versions all read them. A build script that only
//! generates code therefore needs this crate and not the database layer.
//! Builders keep generated code short:
//!
//! ```
//! use fluxon_schema::{ColumnMeta, FieldType, ModelMeta, OnDelete};
//! let course = ModelMeta::new("Course", "course")
//!     .column(ColumnMeta::new("name", 1, FieldType::Text))
//!     .column(ColumnMeta::new("teacher", 3, FieldType::Integer).foreign_key("Teacher", OnDelete::Cascade));
//! assert_eq!(course.columns.len(), 2);
//! ```

mod ddl;
mod time;
mod validate;
mod value;

use serde::{Deserialize, Serialize};

pub use time::{Date, InvalidDate, Timestamp};
pub use value::{Arg, Value};

pub use ddl::{
    create_sql, create_sql_in, join_columns, quote_ident, ColumnDef, IndexDef, TableDef,
};
pub use validate::{through_columns, validate, SchemaError};

/// The logical type of a column, which decides its SQLite storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FieldType {
    /// 64-bit integer (`INTEGER`).
    Integer,
    /// 64-bit float (`REAL`).
    Real,
    /// UTF-8 text (`TEXT`).
    Text,
    /// Bytes (`BLOB`).
    Blob,
    /// Boolean stored as 0/1 (`INTEGER` with a CHECK).
    Bool,
    /// Microseconds since the Unix epoch (`INTEGER`); see [`crate::Timestamp`].
    Timestamp,
    /// `YYYY-MM-DD` (`TEXT`); see [`crate::Date`].
    Date,
}

/// The SQL dialect DDL is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Dialect {
    /// SQLite (the embedded default).
    #[default]
    Sqlite,
    /// PostgreSQL. Columns keep SQLite's storage classes (`BIGINT` for integers, booleans and
    /// timestamps, `DOUBLE PRECISION`, `TEXT`, `BYTEA`), so a value reads back the same from
    /// either database; an integer primary key is an identity column.
    Postgres,
}

impl Dialect {
    /// The dialect's name: `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl FieldType {
    /// The type name written in DDL for `dialect`.
    pub fn sql_type_in(self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sql_type(),
            Dialect::Postgres => match self {
                Self::Integer | Self::Bool | Self::Timestamp => "BIGINT",
                Self::Real => "DOUBLE PRECISION",
                Self::Text | Self::Date => "TEXT",
                Self::Blob => "BYTEA",
            },
        }
    }

    /// The SQLite type name written in DDL.
    pub fn sql_type(self) -> &'static str {
        match self {
            Self::Integer | Self::Bool | Self::Timestamp => "INTEGER",
            Self::Real => "REAL",
            Self::Text | Self::Date => "TEXT",
            Self::Blob => "BLOB",
        }
    }
}

/// What happens to referencing rows when the referenced row is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum OnDelete {
    /// Delete the referencing rows too.
    Cascade,
    /// Set the referencing column to NULL (the column must be nullable).
    SetNull,
    /// Refuse the delete while referencing rows exist.
    Restrict,
    /// Set the referencing column to its default.
    SetDefault,
    /// Check at the end of the statement (SQLite's default).
    #[default]
    NoAction,
}

impl OnDelete {
    /// The SQL action keyword(s).
    pub fn sql(self) -> &'static str {
        match self {
            Self::Cascade => "CASCADE",
            Self::SetNull => "SET NULL",
            Self::Restrict => "RESTRICT",
            Self::SetDefault => "SET DEFAULT",
            Self::NoAction => "NO ACTION",
        }
    }
}

/// A column's reference to another model's primary key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// The referenced model's name ([`ModelMeta::name`]).
    pub model: String,
    /// The ON DELETE action.
    pub on_delete: OnDelete,
    /// One-to-one: at most one referencing row per target (adds UNIQUE unless primary key).
    pub one_to_one: bool,
}

/// One column of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnMeta {
    /// Column name (the proto field name).
    pub name: String,
    /// The protobuf field number; a column renamed with the same number is a rename.
    /// 0 marks the implicit `id` column.
    pub field_number: u32,
    /// Logical type.
    pub ty: FieldType,
    /// NULL allowed.
    pub nullable: bool,
    /// Part of the primary key (at most one column per model).
    pub primary_key: bool,
    /// UNIQUE.
    pub unique: bool,
    /// Maximum length in characters (text only), enforced with a CHECK.
    pub max_length: Option<u32>,
    /// DEFAULT value.
    pub default: Option<Value>,
    /// Create an index on this column.
    pub index: bool,
    /// Set to the current time on insert.
    pub auto_now_add: bool,
    /// Set to the current time on insert and on every whole-row update.
    pub auto_now: bool,
    /// Holds an argon2id password hash; excluded from default selects.
    pub password: bool,
    /// Reference to another model.
    pub foreign_key: Option<ForeignKey>,
}

impl ColumnMeta {
    /// A NOT NULL column with no constraints.
    pub fn new(name: impl Into<String>, field_number: u32, ty: FieldType) -> Self {
        Self {
            name: name.into(),
            field_number,
            ty,
            nullable: false,
            primary_key: false,
            unique: false,
            max_length: None,
            default: None,
            index: false,
            auto_now_add: false,
            auto_now: false,
            password: false,
            foreign_key: None,
        }
    }

    /// Allows NULL.
    pub fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }
    /// Marks as the primary key.
    pub fn primary_key(mut self) -> Self {
        self.primary_key = true;
        self
    }
    /// Adds UNIQUE.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    /// Limits the length of text.
    pub fn max_length(mut self, n: u32) -> Self {
        self.max_length = Some(n);
        self
    }
    /// Sets the DEFAULT value.
    pub fn default_value(mut self, v: impl Into<Value>) -> Self {
        self.default = Some(v.into());
        self
    }
    /// Requests an index.
    pub fn index(mut self) -> Self {
        self.index = true;
        self
    }
    /// Set to now on insert.
    pub fn auto_now_add(mut self) -> Self {
        self.auto_now_add = true;
        self
    }
    /// Set to now on insert and update.
    pub fn auto_now(mut self) -> Self {
        self.auto_now = true;
        self
    }
    /// Marks as a password column (argon2id PHC string).
    pub fn password(mut self) -> Self {
        self.password = true;
        self
    }
    /// Adds a foreign key to `model`.
    pub fn foreign_key(mut self, model: impl Into<String>, on_delete: OnDelete) -> Self {
        self.foreign_key = Some(ForeignKey {
            model: model.into(),
            on_delete,
            one_to_one: false,
        });
        self
    }
    /// Adds a one-to-one foreign key to `model`.
    pub fn one_to_one(mut self, model: impl Into<String>, on_delete: OnDelete) -> Self {
        self.foreign_key = Some(ForeignKey {
            model: model.into(),
            on_delete,
            one_to_one: true,
        });
        self
    }
}

/// A many-to-many relation from one model to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManyToMany {
    /// Relation name (the proto field name), e.g. `courses`.
    pub name: String,
    /// The protobuf field number.
    pub field_number: u32,
    /// The related model's name.
    pub target: String,
    /// A model holding the links (with one foreign key to each side); `None` means a join
    /// table named `<table>_<name>` is generated.
    pub through: Option<String>,
}

/// A multi-column index or unique constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMeta {
    /// Indexed columns, in order.
    pub columns: Vec<String>,
    /// UNIQUE index (a multi-column unique constraint).
    pub unique: bool,
}

/// One model: a table and its relations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Model name (the proto message name), used by relations.
    pub name: String,
    /// Table name.
    pub table: String,
    /// Columns in declaration order; [`ModelMeta::normalized`] puts an implicit `id` first.
    pub columns: Vec<ColumnMeta>,
    /// Many-to-many relations.
    pub many_to_many: Vec<ManyToMany>,
    /// Multi-column indexes and unique constraints.
    pub indexes: Vec<IndexMeta>,
    /// An authorized-user model (logs in with a password column).
    pub authorized_user: bool,
}

/// The name of the implicit primary key column.
pub const IMPLICIT_ID: &str = "id";

impl ModelMeta {
    /// An empty model.
    pub fn new(name: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            table: table.into(),
            columns: Vec::new(),
            many_to_many: Vec::new(),
            indexes: Vec::new(),
            authorized_user: false,
        }
    }
    /// Adds a column.
    pub fn column(mut self, c: ColumnMeta) -> Self {
        self.columns.push(c);
        self
    }
    /// Adds a many-to-many relation.
    pub fn many_to_many(
        mut self,
        name: impl Into<String>,
        field_number: u32,
        target: impl Into<String>,
        through: Option<&str>,
    ) -> Self {
        self.many_to_many.push(ManyToMany {
            name: name.into(),
            field_number,
            target: target.into(),
            through: through.map(str::to_owned),
        });
        self
    }
    /// Adds a multi-column index (`unique` for a unique constraint).
    pub fn index(mut self, columns: &[&str], unique: bool) -> Self {
        self.indexes.push(IndexMeta {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            unique,
        });
        self
    }
    /// Marks as an authorized-user model.
    pub fn authorized_user(mut self) -> Self {
        self.authorized_user = true;
        self
    }

    /// The model with an implicit `INTEGER` primary key `id` (field number 0) prepended when
    /// no column is a primary key. Generated `Model` impls index columns in this order.
    pub fn normalized(mut self) -> Self {
        if !self.columns.iter().any(|c| c.primary_key) {
            self.columns.insert(
                0,
                ColumnMeta::new(IMPLICIT_ID, 0, FieldType::Integer).primary_key(),
            );
        }
        self
    }

    /// The primary key column and its index, when there is one.
    pub fn primary_key(&self) -> Option<(usize, &ColumnMeta)> {
        self.columns.iter().enumerate().find(|(_, c)| c.primary_key)
    }

    /// A column by name.
    pub fn column_named(&self, name: &str) -> Option<&ColumnMeta> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Finds a model by name.
pub fn find_model<'m>(models: &'m [ModelMeta], name: &str) -> Option<&'m ModelMeta> {
    models.iter().find(|m| m.name == name)
}
