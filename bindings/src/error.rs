//! The error every fallible function of the bindings raises.

use fluxon_client::{Code, ConnectError, Status};

/// A failed call or connection: one variant per Fluxon status code (the same names and meanings
/// as gRPC's), each with the server's or the client's message.
///
/// Kotlin sees `FluxonException.NotFound` etc., Swift `FluxonError.NotFound(message:)`, Python
/// `FluxonError.NotFound`; all variants of one language share a base type to catch them all.
/// A reverse-call handler written in Kotlin, Swift or Python raises one of these to answer the
/// server with that status; any other exception reaches the server as `internal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum FluxonError {
    /// The call was cancelled (by the caller, or because the client was closed).
    #[error("cancelled: {message}")]
    Cancelled {
        /// What happened.
        message: String,
    },
    /// An error that fits no other code.
    #[error("unknown: {message}")]
    Unknown {
        /// What happened.
        message: String,
    },
    /// The request was malformed or failed validation.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What happened.
        message: String,
    },
    /// The deadline passed before the call completed.
    #[error("deadline exceeded: {message}")]
    DeadlineExceeded {
        /// What happened.
        message: String,
    },
    /// No such route, row, file or session.
    #[error("not found: {message}")]
    NotFound {
        /// What happened.
        message: String,
    },
    /// The thing to create exists already.
    #[error("already exists: {message}")]
    AlreadyExists {
        /// What happened.
        message: String,
    },
    /// The caller is known but not allowed to do this.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// What happened.
        message: String,
    },
    /// A limit was hit: message size, quota, rate, connections.
    #[error("resource exhausted: {message}")]
    ResourceExhausted {
        /// What happened.
        message: String,
    },
    /// The system is not in a state that allows this.
    #[error("failed precondition: {message}")]
    FailedPrecondition {
        /// What happened.
        message: String,
    },
    /// A concurrency conflict aborted the operation.
    #[error("aborted: {message}")]
    Aborted {
        /// What happened.
        message: String,
    },
    /// A value was outside its valid range.
    #[error("out of range: {message}")]
    OutOfRange {
        /// What happened.
        message: String,
    },
    /// The route or operation is not implemented.
    #[error("unimplemented: {message}")]
    Unimplemented {
        /// What happened.
        message: String,
    },
    /// A bug or invariant failure (on the server, or an unexpected exception in a handler).
    #[error("internal: {message}")]
    Internal {
        /// What happened.
        message: String,
    },
    /// The server cannot be reached now; retrying later may help.
    #[error("unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
    },
    /// Data was lost or corrupted.
    #[error("data loss: {message}")]
    DataLoss {
        /// What happened.
        message: String,
    },
    /// The caller is not logged in, or its credentials are invalid.
    #[error("unauthenticated: {message}")]
    Unauthenticated {
        /// What happened.
        message: String,
    },
    /// The client configuration is unusable (unreadable certificate, bad fingerprint, bad
    /// address). Nothing was sent.
    #[error("invalid configuration: {message}")]
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
}

impl FluxonError {
    /// The Fluxon status code (`InvalidConfig` counts as `invalid_argument`).
    pub fn code(&self) -> Code {
        match self {
            Self::Cancelled { .. } => Code::Cancelled,
            Self::Unknown { .. } => Code::Unknown,
            Self::InvalidArgument { .. } | Self::InvalidConfig { .. } => Code::InvalidArgument,
            Self::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Self::NotFound { .. } => Code::NotFound,
            Self::AlreadyExists { .. } => Code::AlreadyExists,
            Self::PermissionDenied { .. } => Code::PermissionDenied,
            Self::ResourceExhausted { .. } => Code::ResourceExhausted,
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::Aborted { .. } => Code::Aborted,
            Self::OutOfRange { .. } => Code::OutOfRange,
            Self::Unimplemented { .. } => Code::Unimplemented,
            Self::Internal { .. } => Code::Internal,
            Self::Unavailable { .. } => Code::Unavailable,
            Self::DataLoss { .. } => Code::DataLoss,
            Self::Unauthenticated { .. } => Code::Unauthenticated,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            Self::Cancelled { message }
            | Self::Unknown { message }
            | Self::InvalidArgument { message }
            | Self::DeadlineExceeded { message }
            | Self::NotFound { message }
            | Self::AlreadyExists { message }
            | Self::PermissionDenied { message }
            | Self::ResourceExhausted { message }
            | Self::FailedPrecondition { message }
            | Self::Aborted { message }
            | Self::OutOfRange { message }
            | Self::Unimplemented { message }
            | Self::Internal { message }
            | Self::Unavailable { message }
            | Self::DataLoss { message }
            | Self::Unauthenticated { message }
            | Self::InvalidConfig { message } => message,
        }
    }
}

impl From<Status> for FluxonError {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::Cancelled => Self::Cancelled { message },
            Code::InvalidArgument => Self::InvalidArgument { message },
            Code::DeadlineExceeded => Self::DeadlineExceeded { message },
            Code::NotFound => Self::NotFound { message },
            Code::AlreadyExists => Self::AlreadyExists { message },
            Code::PermissionDenied => Self::PermissionDenied { message },
            Code::ResourceExhausted => Self::ResourceExhausted { message },
            Code::FailedPrecondition => Self::FailedPrecondition { message },
            Code::Aborted => Self::Aborted { message },
            Code::OutOfRange => Self::OutOfRange { message },
            Code::Unimplemented => Self::Unimplemented { message },
            Code::Internal => Self::Internal { message },
            Code::Unavailable => Self::Unavailable { message },
            Code::DataLoss => Self::DataLoss { message },
            Code::Unauthenticated => Self::Unauthenticated { message },
            // `Ok` never arrives as an error; it and codes added later are `Unknown`.
            _ => Self::Unknown { message },
        }
    }
}

impl From<FluxonError> for Status {
    fn from(error: FluxonError) -> Self {
        Self::new(error.code(), error.message())
    }
}

impl From<ConnectError> for FluxonError {
    fn from(error: ConnectError) -> Self {
        match error {
            ConnectError::Config(message) => Self::InvalidConfig { message },
            other => other.to_status().into(),
        }
    }
}

/// An exception a Kotlin, Swift or Python reverse handler raised that is not a `FluxonError`.
impl From<uniffi::UnexpectedUniFFICallbackError> for FluxonError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Internal {
            message: format!("reverse-call handler failed: {}", error.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip() {
        for n in 1..=16 {
            let code = Code::from_u32(n);
            let error = FluxonError::from(Status::new(code, "m"));
            assert_eq!(error.code(), code);
            assert_eq!(error.message(), "m");
            assert_eq!(Status::from(error).code(), code);
        }
    }

    #[test]
    fn config_errors_are_their_own_variant() {
        let error = FluxonError::from(ConnectError::Config("bad pem".into()));
        assert!(matches!(error, FluxonError::InvalidConfig { .. }));
        assert_eq!(error.to_string(), "invalid configuration: bad pem");
    }
}
