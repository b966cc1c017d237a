//! Rust field types crossing into the database: [`SqlValue`] and [`Bind`]. The values
//! themselves ([`Value`], [`Arg`]) are `fluxon-schema`'s.

use rusqlite::types::{FromSqlError, ValueRef};

pub use fluxon_schema::{Arg, Value};

use crate::password::Password;
use fluxon_schema::{Date, Timestamp};

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
