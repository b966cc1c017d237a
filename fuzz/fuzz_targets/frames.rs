//! The frame decoder fed arbitrary bytes in arbitrary chunks, with arbitrary limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../oracles/frames.rs"]
mod oracle;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    max_header: u16,
    max_payload: u16,
    chunk_sizes: Vec<u8>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    oracle::check(
        &input.data,
        &input.chunk_sizes,
        input.max_header,
        input.max_payload,
    );
});
