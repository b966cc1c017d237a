//! Fluxon's wire protocol.
//!
//! This crate is pure: it knows how bytes on a Fluxon stream are laid out and what they mean, but
//! it never touches a socket or a clock (except the optional [`io`] helpers, which move frames over
//! quinn streams). Everything here is unit-tested and fuzzed without a network.
//!
//! * [`frame`]: stream kinds and the length-prefixed frame codec (a sans-IO decoder).
//! * [`status`]: [`Status`] and [`Code`], the outcome of every call.
//! * [`wire`]: the protobuf messages of the handshake and of call headers.
//! * [`storage`]: the cloud-storage messages ([`storage::Grant`], storage stream headers).
//! * [`cluster`]: the messages nodes of a cluster relay to each other over NATS.
//! * [`streaming`]: the frames of a streaming call (messages and the end).
//! * [`close`]: application close codes for connections and stream error codes.
//! * [`transport`] (with `io`): the QUIC settings both sides share (receive windows, datagram
//!   size) and endpoints bound with them.

pub mod close;
pub mod frame;
#[cfg(feature = "io")]
pub mod io;
pub mod status;
pub mod streaming;
#[cfg(feature = "io")]
pub mod transport;

/// Protobuf messages of the wire protocol (generated from `proto/fluxon/wire.proto`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/fluxon.wire.rs"));
}

/// Protobuf messages of cloud storage: grants and storage stream headers (generated from
/// `proto/fluxon/storage.proto`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod storage {
    include!(concat!(env!("OUT_DIR"), "/fluxon.storage.rs"));
}

/// Protobuf messages between the nodes of a cluster: reverse calls and session operations relayed
/// to the node holding a session's connection (generated from `proto/fluxon/cluster.proto`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod cluster {
    include!(concat!(env!("OUT_DIR"), "/fluxon.cluster.rs"));
}

pub use frame::{Frame, FrameDecoder, FrameError, Limits, StreamKind};
pub use status::{Code, Metadata, Status};

/// Includes the code `fluxon-codegen` generated for protobuf package `$package` from
/// `OUT_DIR`. Put it inside a module named after the package:
///
/// ```ignore
/// pub mod university {
///     fluxon_proto::include_schema!("university");
/// }
/// ```
///
/// Re-exported as `fluxon_server::include_schema!` and `fluxon_client::include_schema!`, so an
/// application needs `fluxon-codegen` only as a build dependency.
#[macro_export]
macro_rules! include_schema {
    ($package:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $package, ".rs"));
    };
}

/// The ALPN protocol id Fluxon negotiates in TLS.
pub const ALPN: &[u8] = b"fluxon/1";

/// The protocol version carried in [`wire::Hello`].
pub const PROTOCOL_VERSION: u32 = 1;
