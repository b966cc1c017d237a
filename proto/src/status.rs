//! The outcome of a call: a [`Code`] and a message.

use std::collections::HashMap;
use std::fmt;

/// Call metadata: string keys and values sent beside a call or a reply.
pub type Metadata = HashMap<String, String>;

/// Status codes, numbered as gRPC's so that tooling and habits carry over.
///
/// Codes received from the network that this version does not know decode as [`Code::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// Success.
    Ok = 0,
    /// The caller cancelled the call.
    Cancelled = 1,
    /// An error that fits no other code.
    Unknown = 2,
    /// The request was malformed or failed validation.
    InvalidArgument = 3,
    /// The deadline passed before the call completed.
    DeadlineExceeded = 4,
    /// No such route, row, file or session.
    NotFound = 5,
    /// The thing to create exists already (e.g. a unique constraint).
    AlreadyExists = 6,
    /// The caller is known but not allowed to do this.
    PermissionDenied = 7,
    /// A limit was hit: message size, quota, rate, connections.
    ResourceExhausted = 8,
    /// The system is not in a state that allows this (e.g. a foreign key that does not exist).
    FailedPrecondition = 9,
    /// A concurrency conflict aborted the operation.
    Aborted = 10,
    /// A value was outside its valid range.
    OutOfRange = 11,
    /// The route or operation is not implemented.
    Unimplemented = 12,
    /// A bug or invariant failure on the server.
    Internal = 13,
    /// The peer cannot be reached now; retrying later may help.
    Unavailable = 14,
    /// Data was lost or corrupted.
    DataLoss = 15,
    /// The caller is not logged in, or its credentials are invalid.
    Unauthenticated = 16,
}

impl Code {
    /// Decodes a code from the wire; unknown values become [`Code::Unknown`].
    pub fn from_u32(value: u32) -> Self {
        match value {
            0 => Self::Ok,
            1 => Self::Cancelled,
            3 => Self::InvalidArgument,
            4 => Self::DeadlineExceeded,
            5 => Self::NotFound,
            6 => Self::AlreadyExists,
            7 => Self::PermissionDenied,
            8 => Self::ResourceExhausted,
            9 => Self::FailedPrecondition,
            10 => Self::Aborted,
            11 => Self::OutOfRange,
            12 => Self::Unimplemented,
            13 => Self::Internal,
            14 => Self::Unavailable,
            15 => Self::DataLoss,
            16 => Self::Unauthenticated,
            _ => Self::Unknown,
        }
    }

    /// The numeric value sent on the wire.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The snake_case name of the code, as printed in errors and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
            Self::InvalidArgument => "invalid_argument",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::PermissionDenied => "permission_denied",
            Self::ResourceExhausted => "resource_exhausted",
            Self::FailedPrecondition => "failed_precondition",
            Self::Aborted => "aborted",
            Self::OutOfRange => "out_of_range",
            Self::Unimplemented => "unimplemented",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::DataLoss => "data_loss",
            Self::Unauthenticated => "unauthenticated",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error side of every Fluxon call: a [`Code`] and a human-readable message.
///
/// Handlers return `Err(Status)` to fail a call; clients receive the same `Status`. Errors that
/// happen on the client (connection lost, deadline passed) are reported as a `Status` too, so a
/// caller handles one type.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Status {
    code: Code,
    message: String,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $code:ident,)*) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl Into<String>) -> Self {
                Self::new(Code::$code, message)
            }
        )*
    };
}

impl Status {
    /// A status with the given code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Decodes the code and message of a reply header.
    pub fn from_wire(code: u32, message: String) -> Self {
        Self {
            code: Code::from_u32(code),
            message,
        }
    }

    /// The status code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    constructors! {
        /// [`Code::Cancelled`].
        cancelled => Cancelled,
        /// [`Code::Unknown`].
        unknown => Unknown,
        /// [`Code::InvalidArgument`].
        invalid_argument => InvalidArgument,
        /// [`Code::DeadlineExceeded`].
        deadline_exceeded => DeadlineExceeded,
        /// [`Code::NotFound`].
        not_found => NotFound,
        /// [`Code::AlreadyExists`].
        already_exists => AlreadyExists,
        /// [`Code::PermissionDenied`].
        permission_denied => PermissionDenied,
        /// [`Code::ResourceExhausted`].
        resource_exhausted => ResourceExhausted,
        /// [`Code::FailedPrecondition`].
        failed_precondition => FailedPrecondition,
        /// [`Code::Aborted`].
        aborted => Aborted,
        /// [`Code::OutOfRange`].
        out_of_range => OutOfRange,
        /// [`Code::Unimplemented`].
        unimplemented => Unimplemented,
        /// [`Code::Internal`].
        internal => Internal,
        /// [`Code::Unavailable`].
        unavailable => Unavailable,
        /// [`Code::DataLoss`].
        data_loss => DataLoss,
        /// [`Code::Unauthenticated`].
        unauthenticated => Unauthenticated,
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Status({}: {:?})", self.code, self.message)
    }
}

impl From<prost::DecodeError> for Status {
    fn from(err: prost::DecodeError) -> Self {
        Self::invalid_argument(format!("malformed payload: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_u32() {
        for v in 0..=16 {
            let code = Code::from_u32(v);
            assert_eq!(code.as_u32(), v, "{code}");
        }
        assert_eq!(Code::from_u32(17), Code::Unknown);
        assert_eq!(Code::from_u32(u32::MAX), Code::Unknown);
    }

    #[test]
    fn display_names_code_and_message() {
        let s = Status::not_found("no route `a.B/C`");
        assert_eq!(s.to_string(), "not_found: no route `a.B/C`");
        assert_eq!(s.code(), Code::NotFound);
    }
}
