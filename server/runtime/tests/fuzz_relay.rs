//! The `relay` fuzz target's oracle (`fuzz/oracles/relay.rs`), run as a bounded property test
//! so CI exercises it: random bytes, and genuine requests with bytes changed.

use bytes::Bytes;
use fluxon_proto::wire::CallHeader;
use fluxon_server::cluster::relay::{Op, Relayed};
use fluxon_server::SessionId;
use proptest::prelude::*;

#[path = "../../../fuzz/oracles/relay.rs"]
mod oracle;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn genuine(route: String, payload: Vec<u8>, user: Option<i64>, which: u8) -> Vec<u8> {
    let op = match which % 3 {
        0 => Op::Call {
            header: CallHeader {
                route,
                timeout_ms: 1000,
                ..Default::default()
            },
            payload: Bytes::from(payload),
        },
        1 => Op::SetUser(user),
        _ => Op::End,
    };
    Relayed {
        session: SessionId::from_bytes([3; 16]),
        op,
    }
    .encode()
    .to_vec()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        oracle::check(&bytes);
    }

    #[test]
    fn genuine_requests_with_changes(
        route in "[a-zA-Z./]{0,40}",
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        user in any::<Option<i64>>(),
        which in any::<u8>(),
        changes in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = genuine(route, payload, user, which);
        oracle::check(&bytes);
        for (at, value) in changes {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = value;
            }
        }
        oracle::check(&bytes);
    }
}
