//! The server's secret key: signs session tokens (and, later, storage grants).

use std::fmt;
use std::io::Write;
use std::path::Path;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::ServerError;

/// Environment variable that can hold the key (hex, at least 32 bytes once decoded).
pub const SECRET_KEY_ENV: &str = "FLUXON_SECRET_KEY";

/// File name of the key inside the data directory.
pub const SECRET_KEY_FILE: &str = "server.key";

/// Shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// The server's HMAC-SHA256 secret. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct SecretKey {
    hmac: hmac::Key,
}

impl SecretKey {
    /// A key from raw bytes (at least [`MIN_KEY_LEN`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ServerError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(ServerError::Key(format!(
                "secret key is {} bytes; at least {MIN_KEY_LEN} are required",
                bytes.len()
            )));
        }
        Ok(Self {
            hmac: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    /// A fresh random key.
    pub fn generate() -> Result<(Self, [u8; 32]), ServerError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| ServerError::Key("the system random generator failed".into()))?;
        Ok((Self::from_bytes(&bytes)?, bytes))
    }

    /// Loads the key: `explicit` when given, else `$FLUXON_SECRET_KEY` (hex), else
    /// `<data_dir>/server.key`, created with 32 random bytes (mode 0600) when absent.
    pub fn load_or_create(explicit: Option<&[u8]>, data_dir: &Path) -> Result<Self, ServerError> {
        if let Some(bytes) = explicit {
            return Self::from_bytes(bytes);
        }
        if let Ok(hex_key) = std::env::var(SECRET_KEY_ENV) {
            let bytes = decode_hex(hex_key.trim())
                .ok_or_else(|| ServerError::Key(format!("{SECRET_KEY_ENV} must be hex-encoded")))?;
            return Self::from_bytes(&bytes);
        }
        let path = data_dir.join(SECRET_KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_bytes(&bytes)
                .map_err(|e| ServerError::Key(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, bytes) = Self::generate()?;
                write_private(&path, &bytes)?;
                tracing::info!(path = %path.display(), "created a new server secret key");
                Ok(key)
            }
            Err(e) => Err(ServerError::io(&path, e)),
        }
    }

    /// HMAC-SHA256 of `data`.
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.hmac, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Checks a tag in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.hmac, data, tag).is_ok()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Writes a file only the owner can read, atomically (temporary file, then rename).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ServerError::io(dir, e))?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| ServerError::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ServerError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ServerError::io(path, e))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_refused() {
        assert!(SecretKey::from_bytes(&[1; 31]).is_err());
        assert!(SecretKey::from_bytes(&[1; 32]).is_ok());
    }

    #[test]
    fn created_key_is_reloaded_identically() {
        let dir = tempfile::tempdir().unwrap();
        let a = SecretKey::load_or_create(None, dir.path()).unwrap();
        let b = SecretKey::load_or_create(None, dir.path()).unwrap();
        let tag = a.sign(b"data");
        assert!(b.verify(b"data", &tag));
        assert!(!b.verify(b"datA", &tag));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn debug_hides_the_key() {
        let key = SecretKey::from_bytes(&[7; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    }
}
