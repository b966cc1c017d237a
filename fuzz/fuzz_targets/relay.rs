//! Arbitrary bytes received from the cluster's bus as a relayed request or reply.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../oracles/relay.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    oracle::check(data);
});
