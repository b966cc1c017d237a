//! The university example's Kotlin, Swift and Python client library.
//!
//! One cdylib, `libuniversity_bindings.so`, carries Fluxon's generic client (uniffi namespace `fluxon`) and
//! the university schema's typed glue (namespace `university`). Build it with
//! `cargo build --release -p university-bindings`, then generate a language's sources from it (see
//! `docs/clients.md`).

uniffi::setup_scaffolding!("university");

/// Everything generated for package `university`: messages and client stubs, and in `ffi` the
/// uniffi records, service clients and reverse-call traits built on them.
pub mod university {
    include!(concat!(env!("OUT_DIR"), "/university.rs"));
}
