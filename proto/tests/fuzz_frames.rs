//! The `frames` and `headers` fuzz targets' oracle (`fuzz/oracles/frames.rs`), run as bounded
//! property tests so CI exercises it: arbitrary and well-formed byte streams, cut into arbitrary
//! chunks, decode the same as in one piece, within the limits, and every decoded header is safe
//! to decode as every header type.

use bytes::BytesMut;
use fluxon_proto::frame::encode_frame;
use fluxon_proto::wire::{CallHeader, ReplyHeader};
use proptest::prelude::*;

#[path = "../../fuzz/oracles/frames.rs"]
mod oracle;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Valid frames (call headers with metadata and payloads), concatenated, optionally corrupted at
/// one position and cut at another.
fn frame_stream() -> impl Strategy<Value = Vec<u8>> {
    let frame = (
        "[a-z.]{0,20}/[A-Za-z]{0,10}",
        proptest::collection::btree_map("[a-z-]{1,8}", "[ -~]{0,16}", 0..3),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<(u64, bool)>(),
    )
        .prop_map(
            |(route, metadata, timeout_ms, payload, (call_id, cancel))| {
                let header = CallHeader {
                    route,
                    metadata: metadata.into_iter().collect(),
                    timeout_ms,
                    call_id,
                    cancel,
                };
                let reply = ReplyHeader {
                    code: payload.len() as u32,
                    message: String::from_utf8_lossy(&payload).into_owned(),
                    call_id,
                    ..Default::default()
                };
                encode_frame(None, &header, &reply).to_vec()
            },
        );
    (
        proptest::collection::vec(frame, 0..5),
        any::<Option<(usize, u8)>>(),
        any::<Option<usize>>(),
    )
        .prop_map(|(frames, corrupt, cut)| {
            let mut bytes: Vec<u8> = frames.concat();
            if let Some((i, mask)) = corrupt {
                if !bytes.is_empty() {
                    let i = i % bytes.len();
                    bytes[i] ^= mask;
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        chunks in proptest::collection::vec(any::<u8>(), 0..16),
        max_header in any::<u16>(),
        max_payload in any::<u16>(),
    ) {
        oracle::check(&data, &chunks, max_header, max_payload);
    }

    #[test]
    fn frame_streams_in_arbitrary_chunks(
        data in frame_stream(),
        chunks in proptest::collection::vec(any::<u8>(), 0..16),
        max_header in prop_oneof![Just(u16::MAX), any::<u16>()],
        max_payload in prop_oneof![Just(u16::MAX), any::<u16>()],
    ) {
        oracle::check(&data, &chunks, max_header, max_payload);
    }

    #[test]
    fn arbitrary_header_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        oracle::check_headers(&data);
    }
}

/// Well-formed streams decode completely and end idle, however they are chunked.
#[test]
fn well_formed_streams_decode_completely() {
    let header = CallHeader {
        route: "a.B/C".into(),
        ..Default::default()
    };
    let mut data = BytesMut::new();
    for i in 0..20u32 {
        let reply = ReplyHeader {
            code: i,
            ..Default::default()
        };
        data.extend_from_slice(&encode_frame(None, &header, &reply));
    }
    for chunk in [&[][..], &[0], &[5, 60, 1], &[63]] {
        let limits = fluxon_proto::Limits::default();
        let decoded = oracle::decode_chunked(&data, chunk, limits);
        assert_eq!(decoded.frames.len(), 20);
        assert!(decoded.idle_at_end && decoded.error.is_none());
        assert_eq!(decoded, oracle::decode_whole(&data, limits));
    }
}

/// Replays the committed seed corpus of the `frames` and `headers` fuzz targets (inputs kept from
/// `cargo fuzz run`; see fuzz/README.md).
#[test]
fn seed_corpus_replays() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    for target in ["frames", "headers"] {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in dir {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            oracle::check_headers(&data);
            oracle::check(&data, &data, u16::MAX, u16::MAX);
            oracle::check(&data, &[], 64, 64);
        }
    }
}
