//! Oracle for session tokens (`fluxon_server::token`). Shared by the `token` fuzz target and
//! `server/runtime/tests/fuzz_tokens.rs`.

use fluxon_server::token::{self, TokenClaims, TOKEN_LEN};
use fluxon_server::{SecretKey, SessionId};

fn key() -> SecretKey {
    SecretKey::from_bytes(&[0x5a; 32]).expect("32-byte key")
}

/// Arbitrary bytes presented as a token: accepted only if they are exactly the token the server
/// would sign for what they claim, and unexpired.
pub(crate) fn check_bytes(bytes: &[u8], now: u64) {
    if let Ok(claims) = token::verify(&key(), bytes, now) {
        assert_eq!(
            token::sign(&key(), &claims),
            bytes,
            "accepted a non-canonical token"
        );
        assert!(now < claims.expires_at);
    }
}

/// A genuine token verifies exactly while unexpired; flipping any bit of it is refused.
pub(crate) fn check_genuine(
    session: [u8; 16],
    issued_at: u64,
    lifetime: u32,
    now: u64,
    flip: Option<(u8, u8)>,
) {
    let claims = TokenClaims {
        session_id: SessionId::from_bytes(session),
        issued_at,
        expires_at: issued_at.saturating_add(u64::from(lifetime)),
    };
    let mut token = token::sign(&key(), &claims);
    assert_eq!(token.len(), TOKEN_LEN);
    let verdict = token::verify(&key(), &token, now);
    if now < claims.expires_at {
        assert_eq!(verdict, Ok(claims));
    } else {
        assert!(verdict.is_err());
    }
    // Another key never accepts it.
    let other = SecretKey::from_bytes(&[0xa5; 32]).expect("32-byte key");
    assert!(token::verify(&other, &token, now).is_err());
    if let Some((index, mask)) = flip {
        if mask != 0 {
            token[usize::from(index) % TOKEN_LEN] ^= mask;
            assert!(
                token::verify(&key(), &token, now).is_err(),
                "altered token accepted"
            );
        }
    }
}
