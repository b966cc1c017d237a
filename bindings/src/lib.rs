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

mod client;
mod error;
mod reverse;

pub use client::{CallOptions, ConnectOptions, FluxonClient, SessionInfo, Trust};
pub use error::FluxonError;
pub use reverse::{RawReverseHandler, ReverseService};

uniffi::setup_scaffolding!("fluxon");

/// Helpers the glue fluxon-codegen generates calls; not part of the foreign API.
#[doc(hidden)]
pub mod glue {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// A protobuf timestamp as the foreign language's instant (out-of-range values clamp to
    /// the Unix epoch or a far-off instant rather than failing the call).
    pub fn system_time(ts: prost_types::Timestamp) -> SystemTime {
        SystemTime::try_from(ts).unwrap_or_else(|_| UNIX_EPOCH)
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
