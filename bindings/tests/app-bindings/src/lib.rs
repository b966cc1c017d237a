//! The school application's Kotlin, Swift and Python client library.
//!
//! One cdylib carries Fluxon's generic client (`fluxon-bindings`, uniffi namespace `fluxon`)
//! and this schema's typed glue (namespace `school`). `uniffi-bindgen generate
//! target/debug/libfluxon_school.so --language python --out-dir out` writes `fluxon.py` and
//! `school.py`; likewise for Kotlin and Swift (see `docs/clients.md`).

uniffi::setup_scaffolding!("school");

/// Everything generated for package `school`: messages and client stubs, and in `ffi` the
/// uniffi records, service clients and reverse-call traits built on them.
pub mod school {
    include!(concat!(env!("OUT_DIR"), "/school.rs"));
}
