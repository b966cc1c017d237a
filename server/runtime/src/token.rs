//! Session tokens: a session id and a validity window, signed with the server's key.
//!
//! Pure: no clock and no I/O; callers pass the current time in seconds since the Unix epoch.
//!
//! Layout (65 bytes): `version(1) session_id(16) issued_at(8, BE) expires_at(8, BE) mac(32)`,
//! where `mac` is HMAC-SHA256 over the first 33 bytes. The token says which session it names; the
//! session's state (its user, when it was last seen) lives on the server.

use crate::key::SecretKey;
use crate::session::SessionId;

const VERSION: u8 = 1;
const BODY_LEN: usize = 1 + 16 + 8 + 8;
/// Length of an encoded token.
pub const TOKEN_LEN: usize = BODY_LEN + 32;

/// What a valid token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// The session the token names.
    pub session_id: SessionId,
    /// When it was issued (seconds since the epoch).
    pub issued_at: u64,
    /// When it stops being accepted (seconds since the epoch).
    pub expires_at: u64,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Wrong length.
    #[error("session token is malformed")]
    Malformed,
    /// A version this server does not know.
    #[error("session token has an unsupported version")]
    UnsupportedVersion,
    /// The signature does not match: forged, altered, or signed by another server's key.
    #[error("session token signature is invalid (forged, altered, or from another server)")]
    BadSignature,
    /// The token's validity window has passed.
    #[error("session token has expired")]
    Expired,
}

/// Signs a token for `claims`.
pub fn sign(key: &SecretKey, claims: &TokenClaims) -> Vec<u8> {
    let mut out = Vec::with_capacity(TOKEN_LEN);
    out.push(VERSION);
    out.extend_from_slice(claims.session_id.as_bytes());
    out.extend_from_slice(&claims.issued_at.to_be_bytes());
    out.extend_from_slice(&claims.expires_at.to_be_bytes());
    let mac = key.sign(&out);
    out.extend_from_slice(&mac);
    out
}

/// Checks a token's signature and validity window at time `now`.
pub fn verify(key: &SecretKey, token: &[u8], now: u64) -> Result<TokenClaims, TokenError> {
    if token.len() != TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (body, mac) = token.split_at(BODY_LEN);
    if body[0] != VERSION {
        return Err(TokenError::UnsupportedVersion);
    }
    if !key.verify(body, mac) {
        return Err(TokenError::BadSignature);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&body[1..17]);
    let claims = TokenClaims {
        session_id: SessionId::from_bytes(id),
        issued_at: be_u64(&body[17..25]),
        expires_at: be_u64(&body[25..33]),
    };
    if now >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes(&[byte; 32]).unwrap()
    }

    fn claims() -> TokenClaims {
        TokenClaims {
            session_id: SessionId::from_bytes([9; 16]),
            issued_at: 1_000,
            expires_at: 2_000,
        }
    }

    #[test]
    fn valid_token_round_trips() {
        let token = sign(&key(1), &claims());
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(verify(&key(1), &token, 1_500), Ok(claims()));
    }

    #[test]
    fn expired_token_refused() {
        let token = sign(&key(1), &claims());
        assert_eq!(verify(&key(1), &token, 2_000), Err(TokenError::Expired));
    }

    #[test]
    fn foreign_key_refused() {
        let token = sign(&key(1), &claims());
        assert_eq!(
            verify(&key(2), &token, 1_500),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let token = sign(&key(1), &claims());
        for i in 0..token.len() * 8 {
            let mut forged = token.clone();
            forged[i / 8] ^= 1 << (i % 8);
            assert!(verify(&key(1), &forged, 1_500).is_err(), "bit {i}");
        }
    }

    #[test]
    fn wrong_lengths_refused() {
        let token = sign(&key(1), &claims());
        assert_eq!(verify(&key(1), &token[..10], 0), Err(TokenError::Malformed));
        assert_eq!(verify(&key(1), &[], 0), Err(TokenError::Malformed));
        let mut long = token.clone();
        long.push(0);
        assert_eq!(verify(&key(1), &long, 0), Err(TokenError::Malformed));
    }
}
