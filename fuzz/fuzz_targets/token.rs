//! Session tokens: arbitrary bytes presented as tokens, and genuine tokens with one change.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../oracles/token.rs"]
mod oracle;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    bytes: Vec<u8>,
    now: u64,
    session: [u8; 16],
    issued_at: u64,
    lifetime: u32,
    flip: Option<(u8, u8)>,
}

fuzz_target!(|input: Input| {
    oracle::check_bytes(&input.bytes, input.now);
    oracle::check_genuine(
        input.session,
        input.issued_at,
        input.lifetime,
        input.now,
        input.flip,
    );
});
