//! Oracle for the messages nodes of a cluster relay to each other
//! (`fluxon_server::cluster::relay`). Shared by the `relay` fuzz target and
//! `server/runtime/tests/fuzz_relay.rs`.

use fluxon_server::cluster::relay::{self, Relayed};

/// Arbitrary bytes received as a relayed request or reply: decoding never panics, and what
/// decodes re-encodes to bytes that decode to the same thing.
pub(crate) fn check(bytes: &[u8]) {
    if let Ok(relayed) = Relayed::decode(bytes) {
        let again = Relayed::decode(&relayed.encode()).expect("a re-encoded request decodes");
        assert_eq!(again, relayed);
    }
    if let Ok((header, payload)) = relay::decode_reply(bytes) {
        let again = relay::decode_reply(&relay::encode_reply(&header, &payload))
            .expect("a re-encoded reply decodes");
        assert_eq!(again, (header.clone(), payload));
        // An outcome is read from any header without panicking.
        let _ = relay::outcome(&header);
    }
}
