//! `fluxon call`'s JSON-to-protobuf path on arbitrary text.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../oracles/json.rs"]
mod oracle;

static DESC: OnceLock<prost_reflect::MessageDescriptor> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        oracle::check(DESC.get_or_init(oracle::request_descriptor), text);
    }
});
