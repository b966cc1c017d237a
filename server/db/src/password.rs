//! Password fields of authorized-user models: argon2id PHC strings, never plaintext.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{Error, Result};

/// The value of a password column.
///
/// Build one with [`Password::new`] from the user's plaintext; the database layer hashes it
/// (argon2id) when the row is written, so only the PHC string is ever stored. Default selects
/// do not read the hash, so loaded rows hold [`Password::NotLoaded`]. `Debug` never prints the
/// plaintext or the hash.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Password {
    /// Not selected from the database (the default select skips password columns).
    #[default]
    NotLoaded,
    /// A plaintext password waiting to be hashed on write.
    Plain(String),
    /// An argon2id PHC string as stored.
    Hashed(String),
}

impl Password {
    /// A plaintext password, to be hashed when the row is written.
    pub fn new(plain: impl Into<String>) -> Self {
        Self::Plain(plain.into())
    }

    /// The stored PHC string, when loaded.
    pub fn phc(&self) -> Option<&str> {
        match self {
            Self::Hashed(h) => Some(h),
            _ => None,
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLoaded => f.write_str("Password(not loaded)"),
            Self::Plain(_) => f.write_str("Password(<plaintext redacted>)"),
            Self::Hashed(_) => f.write_str("Password(<hash redacted>)"),
        }
    }
}

/// The argon2id cost parameters used for new hashes. A stored hash made with other
/// parameters is re-hashed on the next successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory cost in KiB.
    pub m_cost: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism.
    pub p_cost: u32,
}

impl Default for HashParams {
    /// OWASP's recommended argon2id settings (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        Self {
            m_cost: Params::DEFAULT_M_COST,
            t_cost: Params::DEFAULT_T_COST,
            p_cost: Params::DEFAULT_P_COST,
        }
    }
}

impl HashParams {
    fn argon2(self) -> Result<Argon2<'static>> {
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, None)
            .map_err(|e| Error::Password(format!("invalid argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Hashes `plain` into an argon2id PHC string with a fresh random salt. CPU-heavy: call it
    /// off the async executor.
    pub fn hash(self, plain: &str) -> Result<String> {
        let hash = self
            .argon2()?
            .hash_password(plain.as_bytes())
            .map_err(|e| Error::Password(e.to_string()))?;
        Ok(hash.to_string())
    }

    /// A hash of a fixed string with these parameters, computed once per parameter set, used
    /// to spend equal time when no user matches.
    pub(crate) fn dummy_hash(self) -> Result<String> {
        static DUMMIES: Mutex<Vec<(HashParams, String)>> = Mutex::new(Vec::new());
        let mut d = DUMMIES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, h)) = d.iter().find(|(p, _)| *p == self) {
            return Ok(h.clone());
        }
        let h = self.hash("fluxon-dummy-password")?;
        d.push((self, h.clone()));
        Ok(h)
    }

    /// Checks `plain` against a stored PHC string. A malformed stored hash is an error;
    /// a wrong password is `Ok(Verified::No)`.
    pub fn verify(self, plain: &str, phc: &str) -> Result<Verified> {
        let parsed = argon2::password_hash::phc::PasswordHash::new(phc)
            .map_err(|e| Error::Password(format!("stored hash is malformed: {e}")))?;
        let argon = self.argon2()?;
        match argon.verify_password(plain.as_bytes(), &parsed) {
            Ok(()) => {}
            Err(argon2::password_hash::Error::PasswordInvalid) => return Ok(Verified::No),
            Err(e) => return Err(Error::Password(e.to_string())),
        }
        let current = Params::try_from(&parsed).ok();
        let same = parsed.algorithm.as_str() == "argon2id"
            && current.is_some_and(|p| {
                p.m_cost() == self.m_cost && p.t_cost() == self.t_cost && p.p_cost() == self.p_cost
            });
        Ok(if same {
            Verified::Yes
        } else {
            Verified::NeedsRehash
        })
    }
}

/// The outcome of [`HashParams::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The password matches and the hash uses the current parameters.
    Yes,
    /// The password matches but the hash should be replaced with one using current parameters.
    NeedsRehash,
    /// The password does not match.
    No,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashParams {
        HashParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    #[test]
    fn hash_verify_and_rehash() {
        let phc = cheap().hash("s3cret").expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("s3cret"));
        assert_eq!(cheap().verify("s3cret", &phc).expect("v"), Verified::Yes);
        assert_eq!(cheap().verify("wrong", &phc).expect("v"), Verified::No);
        let stronger = HashParams {
            t_cost: 2,
            ..cheap()
        };
        assert_eq!(
            stronger.verify("s3cret", &phc).expect("v"),
            Verified::NeedsRehash
        );
        assert!(cheap().verify("x", "not a hash").is_err());
    }

    #[test]
    fn debug_redacts() {
        let p = Password::new("hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
