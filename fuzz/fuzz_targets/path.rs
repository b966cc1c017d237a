//! Storage path normalization on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../oracles/path.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        oracle::check(text);
    }
});
