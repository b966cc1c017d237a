//! Values crossing the boundary between Rust field types and SQLite.

use rusqlite::types::{FromSqlError, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

use crate::password::Password;
use crate::time::{Date, Timestamp};

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

/// A borrowed value of one model field, as written by [`crate::Model::values`].
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

/// A Rust type that can be stored in a model column.
///
/// `Default` supplies the value of a column that a query did not select.
pub trait SqlValue: Sized + Default {
    /// The value to bind when writing this field.
    fn to_arg(&self) -> Arg<'_>;
    /// Reads the field from a result column.
    fn from_sql(value: ValueRef<'_>) -> Result<Self, FromSqlError>;
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl SqlValue for $t {
            fn to_arg(&self) -> Arg<'_> {
                Arg::Integer(i64::from(*self))
            }
            fn from_sql(value: ValueRef<'_>) -> Result<Self, FromSqlError> {
                let i = value.as_i64()?;
                <$t>::try_from(i).map_err(|_| FromSqlError::OutOfRange(i))
            }
        }
    )*};
}
int_value!(i64, i32, u32, i16, u16, i8, u8);

impl SqlValue for bool {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Integer(i64::from(*self))
    }
    fn from_sql(value: ValueRef<'_>) -> Result<Self, FromSqlError> {
        Ok(value.as_i64()? != 0)
    }
}

impl SqlValue for f64 {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Real(*self)
    }
    fn from_sql(value: ValueRef<'_>) -> Result<Self, FromSqlError> {
        match value {
            ValueRef::Integer(i) => Ok(i as Self),
            other => other.as_f64(),
        }
    }
}

impl SqlValue for f32 {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Real(f64::from(*self))
    }
    fn from_sql(value: ValueRef<'_>) -> Result<Self, FromSqlError> {
        f64::from_sql(value).map(|v| v as Self)
    }
}

impl SqlValue for String {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(self)
    }
    fn from_sql(value: ValueRef<'_>) -> Result<Self, FromSqlError> {
        value.as_str().map(str::to_owned)
    }
}

impl SqlValue for Vec<u8> {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Blob(self)
    }
    fn from_sql(value: ValueRef<'_>) -> Result<Self, FromSqlError> {
        value.as_blob().map(<[u8]>::to_vec)
    }
}

impl<T: SqlValue> SqlValue for Option<T> {
    fn to_arg(&self) -> Arg<'_> {
        self.as_ref().map_or(Arg::Null, SqlValue::to_arg)
    }
    fn from_sql(value: ValueRef<'_>) -> Result<Self, FromSqlError> {
        match value {
            ValueRef::Null => Ok(None),
            other => T::from_sql(other).map(Some),
        }
    }
}

impl SqlValue for Timestamp {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Integer(self.as_micros())
    }
    fn from_sql(value: ValueRef<'_>) -> Result<Self, FromSqlError> {
        value.as_i64().map(Self::from_micros)
    }
}

impl SqlValue for Date {
    fn to_arg(&self) -> Arg<'_> {
        Arg::Text(self.as_str())
    }
    fn from_sql(value: ValueRef<'_>) -> Result<Self, FromSqlError> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

impl SqlValue for Password {
    fn to_arg(&self) -> Arg<'_> {
        match self {
            Self::NotLoaded => Arg::Null,
            Self::Plain(p) => Arg::PlainPassword(p),
            Self::Hashed(h) => Arg::Text(h),
        }
    }
    fn from_sql(value: ValueRef<'_>) -> Result<Self, FromSqlError> {
        match value {
            ValueRef::Null => Ok(Self::NotLoaded),
            other => Ok(Self::Hashed(other.as_str()?.to_owned())),
        }
    }
}

/// A Rust value usable as a bound parameter where a column of type `T` is expected.
pub trait Bind<T> {
    /// Converts into the owned value that is bound.
    fn into_value(self) -> Value;
}

impl<T: SqlValue> Bind<T> for T {
    fn into_value(self) -> Value {
        self.to_arg().to_value()
    }
}

impl<T: SqlValue> Bind<Option<T>> for T {
    fn into_value(self) -> Value {
        self.to_arg().to_value()
    }
}

impl Bind<String> for &str {
    fn into_value(self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl Bind<Option<String>> for &str {
    fn into_value(self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl Bind<i64> for i32 {
    fn into_value(self) -> Value {
        Value::Integer(i64::from(self))
    }
}

impl Bind<Option<i64>> for i32 {
    fn into_value(self) -> Value {
        Value::Integer(i64::from(self))
    }
}

impl Bind<Vec<u8>> for &[u8] {
    fn into_value(self) -> Value {
        Value::Blob(self.to_vec())
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
