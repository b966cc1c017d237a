//! Values as the database stores them: owned ([`Value`]) and borrowed from a model ([`Arg`]).

#[cfg(feature = "rusqlite")]
use rusqlite::types::{ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// An owned SQLite value: used for bound parameters of filters and for column defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (also booleans, timestamps, integer keys).
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text (also dates).
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
}

impl Value {
    /// Borrows as an [`Arg`].
    pub fn as_arg(&self) -> Arg<'_> {
        match self {
            Self::Null => Arg::Null,
            Self::Integer(i) => Arg::Integer(*i),
            Self::Real(r) => Arg::Real(*r),
            Self::Text(s) => Arg::Text(s),
            Self::Blob(b) => Arg::Blob(b),
        }
    }
}

#[cfg(feature = "rusqlite")]
impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Self::Null => ValueRef::Null,
            Self::Integer(i) => ValueRef::Integer(*i),
            Self::Real(r) => ValueRef::Real(*r),
            Self::Text(s) => ValueRef::Text(s.as_bytes()),
            Self::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A borrowed value of one model field, as written by `fluxon_db::Model::values`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(&'a str),
    /// Raw bytes.
    Blob(&'a [u8]),
    /// A plaintext password that the database layer hashes before it is stored.
    /// Never bound as is: binding it is an error.
    PlainPassword(&'a str),
}

impl Arg<'_> {
    /// Converts to an owned [`Value`] (a plaintext password becomes NULL: it is never copied).
    pub fn to_value(&self) -> Value {
        match *self {
            Self::Null | Self::PlainPassword(_) => Value::Null,
            Self::Integer(i) => Value::Integer(i),
            Self::Real(r) => Value::Real(r),
            Self::Text(s) => Value::Text(s.to_owned()),
            Self::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

#[cfg(feature = "rusqlite")]
impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Self::Null => ValueRef::Null,
            Self::Integer(i) => ValueRef::Integer(i),
            Self::Real(r) => ValueRef::Real(r),
            Self::Text(s) => ValueRef::Text(s.as_bytes()),
            Self::Blob(b) => ValueRef::Blob(b),
            Self::PlainPassword(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "refusing to bind an unhashed password".into(),
                ))
            }
        }))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Integer(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Self::Integer(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Integer(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Real(v)
    }
}
