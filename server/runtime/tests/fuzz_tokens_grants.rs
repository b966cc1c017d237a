//! The `token`, `grant`, `storage_request` and `path` fuzz targets' oracles (`fuzz/oracles/`),
//! run as bounded property tests so CI exercises them.

use fluxon_proto::frame::encode_frame;
use fluxon_proto::storage::{Grant, Op, StorageRequest};
use fluxon_server::grant::GrantBuilder;
use fluxon_server::{SecretKey, SessionId};
use proptest::prelude::*;

#[path = "../../../fuzz/oracles/token.rs"]
mod token_oracle;

#[path = "../../../fuzz/oracles/grant.rs"]
mod grant_oracle;

#[path = "../../../fuzz/oracles/path.rs"]
mod path_oracle;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Paths mixing every character class that matters: separators, dots, Windows syntax, controls,
/// the reserved prefix and look-alikes (one-dot leader U+2024, fullwidth solidus U+FF0F, fullwidth
/// full stop U+FF0E, division slash U+2215).
fn path_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("\\".to_owned()),
        Just(":".to_owned()),
        Just("C:".to_owned()),
        Just("\0".to_owned()),
        Just("\u{2024}".to_owned()),
        Just("\u{ff0f}".to_owned()),
        Just("\u{ff0e}".to_owned()),
        Just("\u{2215}".to_owned()),
        Just(".fluxon-".to_owned()),
        "[a-z]{1,4}",
        "[a-z]{250,260}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn token_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..100), now in any::<u64>()) {
        token_oracle::check_bytes(&bytes, now);
    }

    #[test]
    fn token_genuine_and_altered(
        session in any::<[u8; 16]>(),
        issued_at in any::<u64>(),
        lifetime in any::<u32>(),
        now in any::<u64>(),
        flip in any::<Option<(u8, u8)>>(),
    ) {
        token_oracle::check_genuine(session, issued_at, lifetime, now, flip);
    }

    #[test]
    fn grant_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        now in any::<u64>(),
        session in any::<[u8; 16]>(),
        op in 0i32..9,
        path in path_text(),
        dest in path_text(),
    ) {
        grant_oracle::check_decoded(&bytes, now, session, op, &path, &dest);
    }

    #[test]
    fn grant_built_and_altered(
        op in 0i32..9,
        path in prop_oneof![path_text(), "[a-z]{1,6}(/[a-z]{1,6}){0,3}"],
        dest in prop_oneof![path_text(), "[a-z]{1,6}(/[a-z]{1,6}){0,3}"],
        now in any::<u64>(),
        ttl in any::<u32>(),
        nonce in any::<[u8; 16]>(),
        flags in any::<u8>(),
        mutation in any::<Option<(u16, u8)>>(),
    ) {
        grant_oracle::check_built(op, &path, &dest, now, ttl, nonce, flags, mutation);
    }

    #[test]
    fn storage_request_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        now in any::<u64>(),
        session in any::<[u8; 16]>(),
    ) {
        grant_oracle::check_storage_request(&bytes, now, session);
    }

    /// Well-formed storage requests carrying genuine grants, with one byte changed.
    #[test]
    fn storage_request_with_genuine_grant(
        path in "[a-z]{1,6}(/[a-z]{1,6}){0,3}",
        op in 1i32..8,
        corrupt in any::<Option<(usize, u8)>>(),
    ) {
        let key = SecretKey::from_bytes(&[0x3c; 32]).unwrap();
        let op = Op::try_from(op).unwrap();
        let grant: Option<Grant> = GrantBuilder::new(key, SessionId::from_bytes([7; 16]), op, path.clone())
            .destination("x/y")
            .sign_at(1_000, [1; 16], "0123456789abcdef0123456789abcdef".into())
            .ok();
        let request = StorageRequest {
            grant,
            op: op as i32,
            path,
            dest_path: "x/y".into(),
            ..Default::default()
        };
        let mut bytes = encode_frame(None, &request, &()).to_vec();
        if let Some((i, mask)) = corrupt {
            let i = i % bytes.len();
            bytes[i] ^= mask;
        }
        grant_oracle::check_storage_request(&bytes, 1_010, [7; 16]);
    }

    #[test]
    fn path_normalization(input in path_text()) {
        path_oracle::check(&input);
    }

    #[test]
    fn path_normalization_any_string(input in any::<String>()) {
        path_oracle::check(&input);
    }
}

/// Replays the committed seed corpus of the `token`, `grant`, `storage_request` and `path` fuzz
/// targets (raw inputs kept from `cargo fuzz run`; see fuzz/README.md).
#[test]
fn seed_corpus_replays() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for target in ["token", "grant", "storage_request", "path"] {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in dir {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            token_oracle::check_bytes(&data, 1_000);
            grant_oracle::check_decoded(&data, 1_000, [7; 16], 3, "a/b", "");
            grant_oracle::check_storage_request(&data, 1_000, [7; 16]);
            path_oracle::check(&String::from_utf8_lossy(&data));
        }
    }
}
