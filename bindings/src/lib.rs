//! Fluxon's generic client surface for Kotlin, Swift and Python, exported with uniffi.
//!
//! This crate is an rlib in the uniffi namespace `fluxon`. An application's bindings crate (a
//! cdylib, with the typed glue fluxon-codegen generates for its schema) depends on it, so one
//! native library carries both: the generic [`FluxonClient`] (connect, trust, session, resume,
//! raw calls) and the application's typed records, service clients and reverse-call traits.
//! `uniffi-bindgen generate <lib> --language kotlin|swift|python` then writes one source file
//! per namespace (`fluxon` and the application's). See `docs/clients.md` and
//! `docs/adr/0003-bindings-one-library-per-app.md`.
//!
//! Every async function runs on the tokio runtime uniffi provides (`async_runtime = "tokio"`).
//! Cancelling the foreign coroutine, task or asyncio task drops the Rust future: a call in
//! flight resets its QUIC stream (the server sees `cancelled` and drops its work); the
//! connection and the session are unaffected.
//!
//! Cloud storage: [`FluxonClient::storage`] gives a [`CloudStorage`] that performs the operations
//! a [`Grant`] authorizes (upload and download of local files with a [`TransferProgress`]
//! callback, create_directory, delete_item, stat, read_tree, move_item). An application's reply
//! that embeds a `fluxon.storage.Grant` field carries this crate's [`Grant`] record in the
//! generated glue (likewise [`StorageEntry`], [`StorageOp`] and [`StorageEntryKind`] for
//! `fluxon.storage.Entry`, `Op` and `EntryKind`), converted to and from the protobuf message
//! without loss. A transfer stops when its future is dropped (cancelled coroutine or task) or
//! when the progress callback raises: an upload's stream is reset (nothing is committed), a
//! download leaves no partial file.
//!
//! Exiting with work in flight: the process may end while calls and transfers are still
//! awaited (a Python script ending with a pending asyncio task, a JVM calling `exit`). The
//! runtime's threads then stop calling into the foreign language (no wake, no reverse call, no
//! progress report, no release of foreign objects) from the moment it starts shutting down; the
//! transfers are abandoned like cancelled ones. See `foreign.rs`.

mod client;
mod error;
mod foreign;
mod reverse;
mod storage;
mod streams;

pub use client::{CallOptions, ConnectOptions, FluxonClient, SessionInfo, Trust};
pub use error::FluxonError;
pub use reverse::{RawReverseHandler, ReverseService};
pub use storage::{
    CloudStorage, DownloadReceipt, Grant, LocalPath, StorageEntry, StorageEntryKind, StorageOp,
    TransferProgress, UploadReceipt,
};

uniffi::setup_scaffolding!("fluxon");

/// Helpers the glue fluxon-codegen generates calls; not part of the foreign API.
#[doc(hidden)]
pub mod glue {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub use crate::foreign::{exit_safe, foreign_call, ExitSafe, Foreign, ForeignCall};
    pub use crate::streams::{RequestWriter, StreamReader};
    pub use fluxon_client::Status;

    /// A protobuf timestamp as the foreign language's instant (out-of-range values clamp to
    /// the Unix epoch or a far-off instant rather than failing the call).
    pub fn system_time(ts: prost_types::Timestamp) -> SystemTime {
        SystemTime::try_from(ts).unwrap_or(UNIX_EPOCH)
    }

    /// An instant as a protobuf timestamp.
    pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
        prost_types::Timestamp::from(time)
    }

    /// A protobuf duration as the foreign language's duration (negative values become zero).
    pub fn duration(d: prost_types::Duration) -> Duration {
        Duration::try_from(d).unwrap_or(Duration::ZERO)
    }

    /// A duration as a protobuf duration.
    pub fn proto_duration(d: Duration) -> prost_types::Duration {
        prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
            seconds: i64::MAX,
            nanos: 999_999_999,
        })
    }
}

/// Declares, in the calling crate's uniffi namespace, the error type of a reverse service's
/// foreign handler trait: the variants of [`FluxonError`] (one per status code) and the
/// conversions to and from it.
///
/// A handler trait cannot use [`FluxonError`] itself: uniffi 0.32's Python (and other)
/// bindings lower an error raised by a foreign trait method with the converter of the error's
/// own namespace, whose buffer type differs from the trait's namespace's (see
/// `docs/adr/0003-bindings-one-library-per-app.md`). fluxon-codegen's glue invokes this macro
/// once per reverse service (`SchoolEventsError` for `SchoolEvents`).
#[macro_export]
macro_rules! reverse_error {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, uniffi::Error)]
        pub enum $name {
            /// `cancelled`.
            Cancelled { detail: String },
            /// `unknown`.
            Unknown { detail: String },
            /// `invalid_argument`.
            InvalidArgument { detail: String },
            /// `deadline_exceeded`.
            DeadlineExceeded { detail: String },
            /// `not_found`.
            NotFound { detail: String },
            /// `already_exists`.
            AlreadyExists { detail: String },
            /// `permission_denied`.
            PermissionDenied { detail: String },
            /// `resource_exhausted`.
            ResourceExhausted { detail: String },
            /// `failed_precondition`.
            FailedPrecondition { detail: String },
            /// `aborted`.
            Aborted { detail: String },
            /// `out_of_range`.
            OutOfRange { detail: String },
            /// `unimplemented`.
            Unimplemented { detail: String },
            /// `internal`.
            Internal { detail: String },
            /// `unavailable`.
            Unavailable { detail: String },
            /// `data_loss`.
            DataLoss { detail: String },
            /// `unauthenticated`.
            Unauthenticated { detail: String },
        }

        impl $name {
            /// The same error as a [`FluxonError`]($crate::FluxonError).
            pub fn to_fluxon(&self) -> $crate::FluxonError {
                use $crate::FluxonError as F;
                match self.clone() {
                    Self::Cancelled { detail } => F::Cancelled { detail },
                    Self::Unknown { detail } => F::Unknown { detail },
                    Self::InvalidArgument { detail } => F::InvalidArgument { detail },
                    Self::DeadlineExceeded { detail } => F::DeadlineExceeded { detail },
                    Self::NotFound { detail } => F::NotFound { detail },
                    Self::AlreadyExists { detail } => F::AlreadyExists { detail },
                    Self::PermissionDenied { detail } => F::PermissionDenied { detail },
                    Self::ResourceExhausted { detail } => F::ResourceExhausted { detail },
                    Self::FailedPrecondition { detail } => F::FailedPrecondition { detail },
                    Self::Aborted { detail } => F::Aborted { detail },
                    Self::OutOfRange { detail } => F::OutOfRange { detail },
                    Self::Unimplemented { detail } => F::Unimplemented { detail },
                    Self::Internal { detail } => F::Internal { detail },
                    Self::Unavailable { detail } => F::Unavailable { detail },
                    Self::DataLoss { detail } => F::DataLoss { detail },
                    Self::Unauthenticated { detail } => F::Unauthenticated { detail },
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.to_fluxon(), f)
            }
        }

        impl std::error::Error for $name {}

        impl From<$name> for fluxon_client::Status {
            fn from(error: $name) -> Self {
                error.to_fluxon().into()
            }
        }

        impl From<uniffi::UnexpectedUniFFICallbackError> for $name {
            fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
                Self::Internal {
                    detail: format!("reverse-call handler failed: {}", error.reason),
                }
            }
        }
    };
}
