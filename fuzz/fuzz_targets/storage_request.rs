//! The first frame of a storage stream (a `StorageRequest` header carrying a grant), decoded and
//! checked as the storage service does before touching the disk.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../oracles/grant.rs"]
mod oracle;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    now: u64,
    session: [u8; 16],
    bytes: Vec<u8>,
}

fuzz_target!(|input: Input| {
    oracle::check_storage_request(&input.bytes, input.now, input.session);
});
