//! Arbitrary bytes decoded as every header message (Hello, Welcome, CallHeader, ReplyHeader,
//! SessionUpdate, StorageRequest).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../oracles/frames.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    oracle::check_headers(data);
});
