//! Oracle for storage grants (`fluxon_server::grant`) and storage stream request headers.
//! Shared by the `grant` and `storage_request` fuzz targets and
//! `server/runtime/tests/fuzz_grants.rs`.

use bytes::BytesMut;
use fluxon_proto::storage::{Grant, Op, StorageRequest};
use fluxon_proto::{FrameDecoder, Limits};
use fluxon_server::grant::{self, normalize_path, GrantBuilder};
use fluxon_server::{SecretKey, SessionId};
use prost::Message;

fn key() -> SecretKey {
    SecretKey::from_bytes(&[0x3c; 32]).expect("32-byte key")
}

/// Largest storage request header the storage service accepts (`fluxon-storage`).
const MAX_REQUEST_HEADER: usize = 64 * 1024;

/// A grant decoded from arbitrary bytes is accepted only if it is exactly what the server signs
/// for its claims, with normalized paths; authorization follows the claims to the letter.
pub(crate) fn check_decoded(
    bytes: &[u8],
    now: u64,
    session: [u8; 16],
    op: i32,
    path: &str,
    dest: &str,
) {
    let Ok(decoded) = Grant::decode(bytes) else {
        return;
    };
    check_grant(&decoded, now, session, op, path, dest);
}

pub(crate) fn check_grant(g: &Grant, now: u64, session: [u8; 16], op: i32, path: &str, dest: &str) {
    let Ok(claims) = grant::verify(&key(), g, now) else {
        return;
    };
    assert!(now < claims.expires_at);
    assert_eq!(
        normalize_path(claims.path.as_str()).as_ref(),
        Ok(&claims.path)
    );
    assert_eq!(
        normalize_path(claims.dest_path.as_str()).as_ref(),
        Ok(&claims.dest_path)
    );
    let resigned = grant::sign(&key(), &claims);
    assert_eq!(resigned.signature, g.signature);
    let session = SessionId::from_bytes(session);
    let op = Op::try_from(op).unwrap_or(Op::Unspecified);
    if claims.authorize(session, op, path, dest).is_ok() {
        assert_eq!(session, claims.session_id);
        assert_eq!(op, claims.op);
        assert_eq!(normalize_path(path).as_ref(), Ok(&claims.path));
    }
}

/// A grant built by the server verifies; any change to its encoding either fails to decode, is
/// refused, or decodes to the very same claims.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_built(
    op: i32,
    path: &str,
    dest: &str,
    now: u64,
    ttl: u32,
    nonce: [u8; 16],
    flags: u8,
    mutation: Option<(u16, u8)>,
) {
    let op = Op::try_from(op).unwrap_or(Op::Unspecified);
    let session = SessionId::from_bytes([7; 16]);
    let now = now % (1 << 40);
    let builder = GrantBuilder::new(key(), session, op, path)
        .destination(dest)
        .ttl(std::time::Duration::from_secs(u64::from(ttl)))
        .overwrite(flags & 1 != 0)
        .reusable(flags & 2 != 0)
        .resumable(flags & 4 != 0);
    let builder = if flags & 8 != 0 {
        builder.max_bytes(u64::from(ttl))
    } else {
        builder
    };
    let Ok(g) = builder.sign_at(now, nonce, "0123456789abcdef0123456789abcdef".to_owned()) else {
        return;
    };
    let claims = grant::verify(&key(), &g, now).expect("a grant the server built verifies");
    assert_eq!(
        claims.path,
        normalize_path(path).expect("signed path is valid")
    );
    assert!(claims.authorize(session, op, path, dest).is_ok());
    assert!(claims
        .authorize(SessionId::from_bytes([8; 16]), op, path, dest)
        .is_err());
    if let Some((index, mask)) = mutation {
        let mut bytes = g.encode_to_vec();
        if mask != 0 && !bytes.is_empty() {
            let i = usize::from(index) % bytes.len();
            bytes[i] ^= mask;
            if let Ok(altered) = Grant::decode(bytes.as_slice()) {
                if let Ok(c) = grant::verify(&key(), &altered, now) {
                    assert_eq!(c, claims, "an altered grant verified with other claims");
                }
            }
        }
    }
}

/// A storage stream's first bytes (after the kind byte), as the storage service reads them: one
/// frame whose header is a `StorageRequest`, then the grant check. Never panics; a request whose
/// grant passes is consistent with it.
pub(crate) fn check_storage_request(bytes: &[u8], now: u64, session: [u8; 16]) {
    let mut decoder = FrameDecoder::new(Limits {
        max_header: MAX_REQUEST_HEADER,
        max_payload: 0,
    });
    let mut buf = BytesMut::from(bytes);
    let Ok(Some(frame)) = decoder.decode(&mut buf) else {
        return;
    };
    assert!(frame.payload.is_empty());
    let Ok(request) = frame.decode_header::<StorageRequest>() else {
        return;
    };
    if let Some(g) = &request.grant {
        check_grant(
            g,
            now,
            session,
            request.op,
            &request.path,
            &request.dest_path,
        );
    }
}
