//! The pure parts of the `fluxon` command, shared by the binary, its tests and the fuzzers.

pub mod json;
