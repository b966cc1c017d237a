//! The error every fallible function of the bindings raises.

use fluxon_client::{Code, ConnectError, Status};

/// A failed call or connection: one variant per Fluxon status code (the same names and meanings
/// as gRPC's), each with the server's or the client's message in `detail` (not `message`, which
/// Kotlin exceptions already have).
///
/// Kotlin sees `FluxonException.NotFound` etc., Swift `FluxonError.NotFound(detail:)`, Python
/// `FluxonError.NotFound`; all variants of one language share a base type to catch them all.
/// A reverse-call handler written in Kotlin, Swift or Python raises one of these to answer the
/// server with that status; any other exception reaches the server as `internal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi::export(Display)]
pub enum FluxonError {
    /// The call was cancelled (by the caller, or because the client was closed).
    #[error("cancelled: {detail}")]
    Cancelled {
        /// What happened.
        detail: String,
    },
    /// An error that fits no other code.
    #[error("unknown: {detail}")]
    Unknown {
        /// What happened.
        detail: String,
    },
    /// The request was malformed or failed validation.
    #[error("invalid argument: {detail}")]
    InvalidArgument {
        /// What happened.
        detail: String,
    },
    /// The deadline passed before the call completed.
    #[error("deadline exceeded: {detail}")]
    DeadlineExceeded {
        /// What happened.
        detail: String,
    },
    /// No such route, row, file or session.
    #[error("not found: {detail}")]
    NotFound {
        /// What happened.
        detail: String,
    },
    /// The thing to create exists already.
    #[error("already exists: {detail}")]
    AlreadyExists {
        /// What happened.
        detail: String,
    },
    /// The caller is known but not allowed to do this.
    #[error("permission denied: {detail}")]
    PermissionDenied {
        /// What happened.
        detail: String,
    },
    /// A limit was hit: message size, quota, rate, connections.
    #[error("resource exhausted: {detail}")]
    ResourceExhausted {
        /// What happened.
        detail: String,
    },
    /// The system is not in a state that allows this.
    #[error("failed precondition: {detail}")]
    FailedPrecondition {
        /// What happened.
        detail: String,
    },
    /// A concurrency conflict aborted the operation.
    #[error("aborted: {detail}")]
    Aborted {
        /// What happened.
        detail: String,
    },
    /// A value was outside its valid range.
    #[error("out of range: {detail}")]
    OutOfRange {
        /// What happened.
        detail: String,
    },
    /// The route or operation is not implemented.
    #[error("unimplemented: {detail}")]
    Unimplemented {
        /// What happened.
        detail: String,
    },
    /// A bug or invariant failure (on the server, or an unexpected exception in a handler).
    #[error("internal: {detail}")]
    Internal {
        /// What happened.
        detail: String,
    },
    /// The server cannot be reached now; retrying later may help.
    #[error("unavailable: {detail}")]
    Unavailable {
        /// What happened.
        detail: String,
    },
    /// Data was lost or corrupted.
    #[error("data loss: {detail}")]
    DataLoss {
        /// What happened.
        detail: String,
    },
    /// The caller is not logged in, or its credentials are invalid.
    #[error("unauthenticated: {detail}")]
    Unauthenticated {
        /// What happened.
        detail: String,
    },
    /// The client configuration is unusable (unreadable certificate, bad fingerprint, bad
    /// address). Nothing was sent.
    #[error("invalid configuration: {detail}")]
    InvalidConfig {
        /// What is wrong.
        detail: String,
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
            Self::Cancelled { detail: message }
            | Self::Unknown { detail: message }
            | Self::InvalidArgument { detail: message }
            | Self::DeadlineExceeded { detail: message }
            | Self::NotFound { detail: message }
            | Self::AlreadyExists { detail: message }
            | Self::PermissionDenied { detail: message }
            | Self::ResourceExhausted { detail: message }
            | Self::FailedPrecondition { detail: message }
            | Self::Aborted { detail: message }
            | Self::OutOfRange { detail: message }
            | Self::Unimplemented { detail: message }
            | Self::Internal { detail: message }
            | Self::Unavailable { detail: message }
            | Self::DataLoss { detail: message }
            | Self::Unauthenticated { detail: message }
            | Self::InvalidConfig { detail: message } => message,
        }
    }
}

impl From<Status> for FluxonError {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::Cancelled => Self::Cancelled { detail: message },
            Code::InvalidArgument => Self::InvalidArgument { detail: message },
            Code::DeadlineExceeded => Self::DeadlineExceeded { detail: message },
            Code::NotFound => Self::NotFound { detail: message },
            Code::AlreadyExists => Self::AlreadyExists { detail: message },
            Code::PermissionDenied => Self::PermissionDenied { detail: message },
            Code::ResourceExhausted => Self::ResourceExhausted { detail: message },
            Code::FailedPrecondition => Self::FailedPrecondition { detail: message },
            Code::Aborted => Self::Aborted { detail: message },
            Code::OutOfRange => Self::OutOfRange { detail: message },
            Code::Unimplemented => Self::Unimplemented { detail: message },
            Code::Internal => Self::Internal { detail: message },
            Code::Unavailable => Self::Unavailable { detail: message },
            Code::DataLoss => Self::DataLoss { detail: message },
            Code::Unauthenticated => Self::Unauthenticated { detail: message },
            // `Ok` never arrives as an error; it and codes added later are `Unknown`.
            _ => Self::Unknown { detail: message },
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
            ConnectError::Config(message) => Self::InvalidConfig { detail: message },
            other => other.to_status().into(),
        }
    }
}

/// An exception that a Kotlin, Swift or Python callback (a progress callback, a raw reverse
/// handler) raised and that is not a `FluxonError`: `Internal`, its message naming the callback
/// and the exception.
impl From<uniffi::UnexpectedUniFFICallbackError> for FluxonError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Internal {
            detail: format!("a callback raised an exception: {}", error.reason),
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
