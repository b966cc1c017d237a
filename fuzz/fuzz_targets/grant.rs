//! Storage grants: arbitrary protobuf bytes presented as grants, and server-built grants with
//! one byte of their encoding changed.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../oracles/grant.rs"]
mod oracle;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    bytes: Vec<u8>,
    now: u64,
    session: [u8; 16],
    op: i32,
    path: String,
    dest: String,
    ttl: u32,
    nonce: [u8; 16],
    flags: u8,
    mutation: Option<(u16, u8)>,
}

fuzz_target!(|input: Input| {
    oracle::check_decoded(
        &input.bytes,
        input.now,
        input.session,
        input.op,
        &input.path,
        &input.dest,
    );
    oracle::check_built(
        input.op,
        &input.path,
        &input.dest,
        input.now,
        input.ttl,
        input.nonce,
        input.flags,
        input.mutation,
    );
});
