//! The cloud example's Kotlin, Swift and Python client library.
//!
//! One cdylib, `libcloud_bindings.so`, carries Fluxon's generic client (uniffi namespace `fluxon`) and
//! the cloud schema's typed glue (namespace `cloud`). Build it with
//! `cargo build --release -p cloud-bindings`, then generate a language's sources from it (see
//! `docs/clients.md`).

uniffi::setup_scaffolding!("cloud");

/// Everything generated for package `cloud`: messages and client stubs, and in `ffi` the
/// uniffi records, service clients and reverse-call traits built on them.
pub mod cloud {
    include!(concat!(env!("OUT_DIR"), "/cloud.rs"));
}
