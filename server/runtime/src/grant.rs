//! Storage grants: permission to perform one storage operation on one path, signed with the
//! server's key, and the path rules every storage path obeys.
//!
//! A route handler issues a grant with [`Request::grant`](crate::Request::grant); the client hands
//! it to the storage service (on the same endpoint or a separate one that shares only the
//! [`SecretKey`]), which verifies it with [`verify`], checks it against the request with
//! [`GrantClaims::authorize`] and, for single-use grants, records its nonce in the durable
//! [`StateStore`](crate::StateStore) ([`StateStore::record_grant_use`](crate::StateStore::record_grant_use)),
//! so that a grant stays used across restarts, crashes and nodes.
//!
//! Everything here but [`GrantBuilder::sign`] is pure: no clock, no I/O; callers pass `now` (seconds
//! since the Unix epoch) in.
//!
//! The signature is HMAC-SHA256 over a canonical byte string (not over protobuf bytes, which are
//! not canonical):
//!
//! ```text
//! "fluxon-grant" version(1) op(1) session_id(16) expires_at(8 BE) max_bytes_flag(1) max_bytes(8 BE)
//! flags(1: overwrite | reusable<<1 | resumable<<2) nonce(16)
//! len(2 BE) path  len(2 BE) dest_path  len(2 BE) upload_id
//! ```

use std::fmt;
use std::time::Duration;

use fluxon_proto::{Code, Status};
use ring::rand::{SecureRandom, SystemRandom};

pub use fluxon_proto::storage::{Grant, Op};

use crate::key::SecretKey;
use crate::session::SessionId;

/// The grant format version this server signs and accepts.
pub const GRANT_VERSION: u32 = 1;
/// Time to live of a grant when the issuer does not set one.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Longest time to live accepted: bounds how long a used grant's nonce must be remembered.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest name (one path component) accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Names starting with this prefix are reserved for the storage service's own files
/// (temporary and partial uploads) and refused in paths.
pub const RESERVED_PREFIX: &str = ".fluxon-";

const DOMAIN: &[u8] = b"fluxon-grant";
const NONCE_LEN: usize = 16;
const SESSION_LEN: usize = 16;
const UPLOAD_ID_LEN: usize = 32;

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path starts with `/` (absolute).
    #[error("absolute paths are refused (paths are relative to the storage root)")]
    Absolute,
    /// A `..` component.
    #[error("`..` is refused in storage paths")]
    ParentComponent,
    /// A NUL or other control character.
    #[error("control characters (NUL, ...) are refused in storage paths")]
    ControlCharacter,
    /// A drive letter, UNC prefix, backslash or colon (Windows path syntax, alternate streams).
    #[error("drive letters, UNC prefixes, backslashes and colons are refused in storage paths")]
    WindowsSyntax,
    /// Two slashes in a row or a trailing slash.
    #[error("empty path components are refused")]
    EmptyComponent,
    /// A component longer than [`MAX_NAME_LEN`].
    #[error("a name is longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    /// The whole path is longer than [`MAX_PATH_LEN`].
    #[error("the path is longer than {MAX_PATH_LEN} bytes")]
    PathTooLong,
    /// A name reserved for the storage service's own files.
    #[error("names starting with `{RESERVED_PREFIX}` are reserved")]
    Reserved,
}

/// A storage path that passed [`normalize_path`]: relative, `/`-separated, no `.`, `..` or empty
/// components. The empty path is the storage root.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoragePath(String);

impl StoragePath {
    /// The root of the storage tree.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// The normalized text (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the storage root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.components().last()
    }

    /// The parent directory, or `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => Self(self.0[..i].to_owned()),
            None => Self::root(),
        })
    }
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str("/")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl fmt::Debug for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoragePath({:?})", self.0)
    }
}

/// Normalizes a storage path, relative to the storage root.
///
/// `.` components are dropped (`""` and `"."` are the root); refused: absolute paths, `..`, NUL and
/// other control characters, drive letters, UNC prefixes, backslashes and colons, empty components
/// (`a//b`, `a/`), names over [`MAX_NAME_LEN`] bytes, paths over [`MAX_PATH_LEN`] bytes, and names
/// starting with [`RESERVED_PREFIX`]. Symlinks are the storage service's to refuse at open time.
pub fn normalize_path(path: &str) -> Result<StoragePath, PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::PathTooLong);
    }
    if path.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    if path.contains('\\') || path.contains(':') {
        return Err(PathError::WindowsSyntax);
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if path.is_empty() || path == "." {
        return Ok(StoragePath::root());
    }
    let mut out = String::with_capacity(path.len());
    for component in path.split('/') {
        match component {
            "" => return Err(PathError::EmptyComponent),
            "." => continue,
            ".." => return Err(PathError::ParentComponent),
            name if name.len() > MAX_NAME_LEN => return Err(PathError::NameTooLong),
            name if name.starts_with(RESERVED_PREFIX) => return Err(PathError::Reserved),
            name => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(name);
            }
        }
    }
    Ok(StoragePath(out))
}

/// What a valid grant says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantClaims {
    /// The operation authorized.
    pub op: Op,
    /// The path it applies to.
    pub path: StoragePath,
    /// A move's destination (the root, unused, for other operations).
    pub dest_path: StoragePath,
    /// The session allowed to use it.
    pub session_id: SessionId,
    /// When it stops being accepted (seconds since the Unix epoch).
    pub expires_at: u64,
    /// Largest file a write may produce; `None`: the storage service's limit.
    pub max_bytes: Option<u64>,
    /// Whether a write may replace an existing file.
    pub overwrite: bool,
    /// Whether the grant may be used more than once.
    pub reusable: bool,
    /// Random bytes naming this grant for replay detection.
    pub nonce: [u8; NONCE_LEN],
    /// A write's upload id (32 lowercase hex digits); empty for other operations.
    pub upload_id: String,
    /// Whether an interrupted write keeps its bytes for a resume.
    pub resumable: bool,
}

/// Why a grant was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// A field has the wrong length or an unknown value.
    #[error("malformed grant: {0}")]
    Malformed(&'static str),
    /// A format version this server does not know.
    #[error("grant has unsupported version {0}")]
    UnsupportedVersion(u32),
    /// The signature does not match: forged, altered, or signed with another key.
    #[error("grant signature is invalid (forged, altered, or from another server)")]
    BadSignature,
    /// The grant's time to live has passed.
    #[error("grant expired")]
    Expired,
    /// A single-use grant presented a second time.
    #[error("grant was already used (grants are single-use unless issued as reusable)")]
    Reused,
    /// The grant belongs to another session.
    #[error("grant was issued to another session")]
    WrongSession,
    /// The grant authorizes another operation.
    #[error("grant is for {granted}, not {requested}")]
    WrongOp {
        /// The operation granted.
        granted: &'static str,
        /// The operation asked for.
        requested: &'static str,
    },
    /// The grant authorizes another path.
    #[error("grant is for `{granted}`, not `{requested}`")]
    WrongPath {
        /// The path granted.
        granted: String,
        /// The path asked for.
        requested: String,
    },
    /// The requested path is invalid.
    #[error("invalid path: {0}")]
    BadPath(#[from] PathError),
}

impl GrantError {
    /// The status code a refusal is reported with.
    pub fn code(&self) -> Code {
        match self {
            Self::Malformed(_) | Self::UnsupportedVersion(_) | Self::BadPath(_) => {
                Code::InvalidArgument
            }
            Self::BadSignature
            | Self::Expired
            | Self::Reused
            | Self::WrongSession
            | Self::WrongOp { .. }
            | Self::WrongPath { .. } => Code::PermissionDenied,
        }
    }

    /// The refusal as a [`Status`].
    pub fn to_status(&self) -> Status {
        Status::new(self.code(), self.to_string())
    }
}

/// The snake_case name of an operation, as in errors and logs.
pub fn op_name(op: Op) -> &'static str {
    match op {
        Op::Unspecified => "no operation",
        Op::CreateDirectory => "create_directory",
        Op::WriteFile => "write_file",
        Op::ReadFile => "read_file",
        Op::DeleteItem => "delete_item",
        Op::ReadTree => "read_tree",
        Op::Stat => "stat",
        Op::Move => "move",
    }
}

fn flags(claims: &GrantClaims) -> u8 {
    u8::from(claims.overwrite) | u8::from(claims.reusable) << 1 | u8::from(claims.resumable) << 2
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Lengths are bounded by MAX_PATH_LEN (checked before signing and verifying).
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The bytes the signature covers.
fn canonical(claims: &GrantClaims) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + claims.path.0.len() + claims.dest_path.0.len());
    out.extend_from_slice(DOMAIN);
    out.push(GRANT_VERSION as u8);
    out.push(claims.op as i32 as u8);
    out.extend_from_slice(claims.session_id.as_bytes());
    out.extend_from_slice(&claims.expires_at.to_be_bytes());
    out.push(u8::from(claims.max_bytes.is_some()));
    out.extend_from_slice(&claims.max_bytes.unwrap_or(0).to_be_bytes());
    out.push(flags(claims));
    out.extend_from_slice(&claims.nonce);
    push_str(&mut out, claims.path.as_str());
    push_str(&mut out, claims.dest_path.as_str());
    push_str(&mut out, &claims.upload_id);
    out
}

/// Signs `claims` into a [`Grant`] message.
pub fn sign(key: &SecretKey, claims: &GrantClaims) -> Grant {
    let signature = key.sign(&canonical(claims)).to_vec();
    Grant {
        version: GRANT_VERSION,
        op: claims.op as i32,
        path: claims.path.0.clone(),
        dest_path: claims.dest_path.0.clone(),
        session_id: claims.session_id.as_bytes().to_vec(),
        expires_at: claims.expires_at,
        max_bytes: claims.max_bytes,
        overwrite: claims.overwrite,
        reusable: claims.reusable,
        nonce: claims.nonce.to_vec(),
        upload_id: claims.upload_id.clone(),
        resumable: claims.resumable,
        signature,
    }
}

/// Checks a grant's format, signature and expiry at time `now`, returning what it says.
///
/// This does not check who uses it for what ([`GrantClaims::authorize`]) nor replays
/// ([`StateStore::record_grant_use`](crate::StateStore::record_grant_use)).
pub fn verify(key: &SecretKey, grant: &Grant, now: u64) -> Result<GrantClaims, GrantError> {
    if grant.version != GRANT_VERSION {
        return Err(GrantError::UnsupportedVersion(grant.version));
    }
    let op = Op::try_from(grant.op)
        .ok()
        .filter(|op| *op != Op::Unspecified)
        .ok_or(GrantError::Malformed("unknown operation"))?;
    let session: [u8; SESSION_LEN] = grant
        .session_id
        .as_slice()
        .try_into()
        .map_err(|_| GrantError::Malformed("session id is not 16 bytes"))?;
    let nonce: [u8; NONCE_LEN] = grant
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| GrantError::Malformed("nonce is not 16 bytes"))?;
    if grant.upload_id.len() > UPLOAD_ID_LEN {
        return Err(GrantError::Malformed("upload id is too long"));
    }
    if grant.path.len() > MAX_PATH_LEN || grant.dest_path.len() > MAX_PATH_LEN {
        return Err(GrantError::BadPath(PathError::PathTooLong));
    }
    // Paths are signed as given; a grant is only ever signed with normalized paths, so text that
    // does not survive normalization unchanged was not produced by `sign`.
    let claims = GrantClaims {
        op,
        path: StoragePath(grant.path.clone()),
        dest_path: StoragePath(grant.dest_path.clone()),
        session_id: SessionId::from_bytes(session),
        expires_at: grant.expires_at,
        max_bytes: grant.max_bytes,
        overwrite: grant.overwrite,
        reusable: grant.reusable,
        nonce,
        upload_id: grant.upload_id.clone(),
        resumable: grant.resumable,
    };
    if !key.verify(&canonical(&claims), &grant.signature) {
        return Err(GrantError::BadSignature);
    }
    if normalize_path(&grant.path)?.0 != grant.path
        || normalize_path(&grant.dest_path)?.0 != grant.dest_path
    {
        return Err(GrantError::Malformed("path is not normalized"));
    }
    if now >= claims.expires_at {
        return Err(GrantError::Expired);
    }
    Ok(claims)
}

impl GrantClaims {
    /// Checks that the grant lets `session` perform `op` on `path` (and `dest_path` for a move),
    /// comparing normalized paths.
    pub fn authorize(
        &self,
        session: SessionId,
        op: Op,
        path: &str,
        dest_path: &str,
    ) -> Result<(), GrantError> {
        if session != self.session_id {
            return Err(GrantError::WrongSession);
        }
        if op != self.op {
            return Err(GrantError::WrongOp {
                granted: op_name(self.op),
                requested: op_name(op),
            });
        }
        let requested = normalize_path(path)?;
        if requested != self.path {
            return Err(GrantError::WrongPath {
                granted: self.path.to_string(),
                requested: requested.to_string(),
            });
        }
        if op == Op::Move {
            let requested = normalize_path(dest_path)?;
            if requested != self.dest_path {
                return Err(GrantError::WrongPath {
                    granted: self.dest_path.to_string(),
                    requested: requested.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Whether `id` is a valid upload id (32 lowercase hex digits).
pub fn is_valid_upload_id(id: &str) -> bool {
    id.len() == UPLOAD_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lowercase hex digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds and signs a grant; made by [`Request::grant`](crate::Request::grant).
///
/// ```no_run
/// # use fluxon_server::{Request, Status, grant::{Grant, Op}};
/// # fn handler(req: &Request<()>) -> Result<Grant, Status> {
/// req.grant(Op::WriteFile, "photos/cat.jpg")
///     .max_bytes(10 << 20)
///     .overwrite(true)
///     .sign()
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a grant builder does nothing until `sign` is called"]
pub struct GrantBuilder {
    key: SecretKey,
    session_id: SessionId,
    op: Op,
    path: String,
    dest_path: String,
    ttl: Duration,
    max_bytes: Option<u64>,
    overwrite: bool,
    reusable: bool,
    upload_id: Option<String>,
    resumable: bool,
}

impl fmt::Debug for GrantBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantBuilder")
            .field("session_id", &self.session_id)
            .field("op", &self.op)
            .field("path", &self.path)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl GrantBuilder {
    /// A builder for `op` on `path` for `session_id`, signed with `key`.
    pub fn new(key: SecretKey, session_id: SessionId, op: Op, path: impl Into<String>) -> Self {
        Self {
            key,
            session_id,
            op,
            path: path.into(),
            dest_path: String::new(),
            ttl: DEFAULT_TTL,
            max_bytes: None,
            overwrite: false,
            reusable: false,
            upload_id: None,
            resumable: false,
        }
    }

    /// How long the grant is valid (default [`DEFAULT_TTL`], at most [`MAX_TTL`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Largest file a write may produce, in bytes.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Whether a write may replace an existing file (default no).
    pub fn overwrite(mut self, allowed: bool) -> Self {
        self.overwrite = allowed;
        self
    }

    /// Whether the grant may be used more than once before it expires (default: single use).
    pub fn reusable(mut self, reusable: bool) -> Self {
        self.reusable = reusable;
        self
    }

    /// A move's destination path.
    pub fn destination(mut self, dest_path: impl Into<String>) -> Self {
        self.dest_path = dest_path.into();
        self
    }

    /// Makes a write resumable: an interrupted upload keeps its bytes, and a later grant with the
    /// same upload id (see [`Self::upload_id`]) continues it.
    pub fn resumable(mut self, resumable: bool) -> Self {
        self.resumable = resumable;
        self
    }

    /// The upload id of a write (32 lowercase hex digits): give the id of an earlier grant
    /// (`grant.upload_id`) to resume its upload. Default: a fresh random id.
    pub fn upload_id(mut self, id: impl Into<String>) -> Self {
        self.upload_id = Some(id.into());
        self
    }

    /// Signs the grant now, with a random nonce.
    pub fn sign(self) -> Result<Grant, Status> {
        let now = crate::server::now_secs();
        let rng = SystemRandom::new();
        let mut random = [0u8; NONCE_LEN * 2];
        rng.fill(&mut random)
            .map_err(|_| Status::internal("random generator failed"))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&random[..NONCE_LEN]);
        let fresh_upload_id = hex(&random[NONCE_LEN..]);
        self.sign_at(now, nonce, fresh_upload_id)
            .map_err(|e| e.to_status())
    }

    /// Signs the grant as of `now` with the given nonce; `fresh_upload_id` is used for a write when
    /// no upload id was set. Pure (for tests and deterministic issuers).
    pub fn sign_at(
        self,
        now: u64,
        nonce: [u8; NONCE_LEN],
        fresh_upload_id: String,
    ) -> Result<Grant, GrantError> {
        if self.op == Op::Unspecified {
            return Err(GrantError::Malformed("no operation"));
        }
        let path = normalize_path(&self.path)?;
        let dest_path = if self.op == Op::Move {
            let dest = normalize_path(&self.dest_path)?;
            if dest.is_root() || path.is_root() {
                return Err(GrantError::Malformed(
                    "a move needs a source and a destination",
                ));
            }
            dest
        } else {
            StoragePath::root()
        };
        let upload_id = if self.op == Op::WriteFile {
            let id = self.upload_id.unwrap_or(fresh_upload_id);
            if !is_valid_upload_id(&id) {
                return Err(GrantError::Malformed(
                    "an upload id is 32 lowercase hex digits",
                ));
            }
            id
        } else {
            String::new()
        };
        let ttl = self.ttl.min(MAX_TTL).as_secs().max(1);
        let claims = GrantClaims {
            op: self.op,
            path,
            dest_path,
            session_id: self.session_id,
            expires_at: now.saturating_add(ttl),
            max_bytes: self.max_bytes,
            overwrite: self.overwrite,
            reusable: self.reusable,
            nonce,
            upload_id,
            resumable: self.resumable && self.op == Op::WriteFile,
        };
        Ok(sign(&self.key, &claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes(&[byte; 32]).unwrap()
    }

    fn session(byte: u8) -> SessionId {
        SessionId::from_bytes([byte; 16])
    }

    fn grant(op: Op, path: &str) -> Grant {
        GrantBuilder::new(key(1), session(9), op, path)
            .max_bytes(1000)
            .sign_at(1_000, [5; 16], "ab".repeat(16))
            .unwrap()
    }

    #[test]
    fn round_trip_and_authorize() {
        let g = grant(Op::WriteFile, "docs/./a.txt");
        assert_eq!(g.path, "docs/a.txt");
        let claims = verify(&key(1), &g, 1_030).unwrap();
        assert_eq!(claims.max_bytes, Some(1000));
        assert_eq!(claims.expires_at, 1_060);
        assert_eq!(claims.upload_id, "ab".repeat(16));
        claims
            .authorize(session(9), Op::WriteFile, "docs/a.txt", "")
            .unwrap();
        claims
            .authorize(session(9), Op::WriteFile, "./docs/a.txt", "")
            .unwrap();
        // Survives a protobuf round trip (what applications do when embedding it).
        let decoded = Grant::decode(g.encode_to_vec().as_slice()).unwrap();
        assert_eq!(verify(&key(1), &decoded, 1_030).unwrap(), claims);
    }

    #[test]
    fn refusals() {
        let g = grant(Op::ReadFile, "a/b");
        assert_eq!(verify(&key(2), &g, 1_000), Err(GrantError::BadSignature));
        assert_eq!(verify(&key(1), &g, 1_060), Err(GrantError::Expired));
        let claims = verify(&key(1), &g, 1_000).unwrap();
        assert_eq!(
            claims.authorize(session(8), Op::ReadFile, "a/b", ""),
            Err(GrantError::WrongSession)
        );
        assert!(matches!(
            claims.authorize(session(9), Op::DeleteItem, "a/b", ""),
            Err(GrantError::WrongOp { .. })
        ));
        assert!(matches!(
            claims.authorize(session(9), Op::ReadFile, "a/c", ""),
            Err(GrantError::WrongPath { .. })
        ));
        assert_eq!(
            claims.authorize(session(9), Op::ReadFile, "../a/b", ""),
            Err(GrantError::BadPath(PathError::ParentComponent))
        );
    }

    #[test]
    fn every_altered_field_is_refused() {
        let g = grant(Op::WriteFile, "a/b");
        type Alteration = Box<dyn Fn(&mut Grant)>;
        let alter: Vec<Alteration> = vec![
            Box::new(|g| g.op = Op::DeleteItem as i32),
            Box::new(|g| g.path = "a/c".into()),
            Box::new(|g| g.dest_path = "x".into()),
            Box::new(|g| g.session_id[0] ^= 1),
            Box::new(|g| g.expires_at += 1),
            Box::new(|g| g.max_bytes = Some(1001)),
            Box::new(|g| g.max_bytes = None),
            Box::new(|g| g.overwrite = true),
            Box::new(|g| g.reusable = true),
            Box::new(|g| g.resumable = true),
            Box::new(|g| g.nonce[3] ^= 1),
            Box::new(|g| g.upload_id = "cd".repeat(16)),
            Box::new(|g| g.signature[31] ^= 1),
        ];
        for (i, f) in alter.iter().enumerate() {
            let mut forged = g.clone();
            f(&mut forged);
            assert_eq!(
                verify(&key(1), &forged, 1_000),
                Err(GrantError::BadSignature),
                "alteration {i}"
            );
        }
        let mut g2 = g.clone();
        g2.signature.truncate(10);
        assert_eq!(verify(&key(1), &g2, 1_000), Err(GrantError::BadSignature));
        let mut g3 = g;
        g3.nonce.pop();
        assert!(matches!(
            verify(&key(1), &g3, 1_000),
            Err(GrantError::Malformed(_))
        ));
    }

    #[test]
    fn builder_checks() {
        let b = || GrantBuilder::new(key(1), session(1), Op::Move, "a");
        assert!(b().sign_at(0, [0; 16], String::new()).is_err());
        let g = b()
            .destination("b/c")
            .sign_at(0, [0; 16], String::new())
            .unwrap();
        assert_eq!(g.dest_path, "b/c");
        assert!(GrantBuilder::new(key(1), session(1), Op::WriteFile, "a")
            .upload_id("nothex")
            .sign_at(0, [0; 16], String::new())
            .is_err());
        let g = GrantBuilder::new(key(1), session(1), Op::Stat, "a")
            .ttl(Duration::from_secs(10 * 24 * 3600))
            .sign_at(0, [0; 16], String::new())
            .unwrap();
        assert_eq!(g.expires_at, MAX_TTL.as_secs());
        assert!(g.upload_id.is_empty());
    }

    #[test]
    fn path_rules() {
        let ok = |p: &str| normalize_path(p).map(|p| p.as_str().to_owned());
        assert_eq!(ok(""), Ok(String::new()));
        assert_eq!(ok("."), Ok(String::new()));
        assert_eq!(ok("a/./b"), Ok("a/b".into()));
        assert_eq!(ok("a b/ç.txt"), Ok("a b/ç.txt".into()));
        assert_eq!(ok("/etc/passwd"), Err(PathError::Absolute));
        assert_eq!(ok("a/../../b"), Err(PathError::ParentComponent));
        assert_eq!(ok(".."), Err(PathError::ParentComponent));
        assert_eq!(ok("a\0b"), Err(PathError::ControlCharacter));
        assert_eq!(ok("C:/Windows"), Err(PathError::WindowsSyntax));
        assert_eq!(ok("c:secret"), Err(PathError::WindowsSyntax));
        assert_eq!(ok("\\\\server\\share"), Err(PathError::WindowsSyntax));
        assert_eq!(ok("//server/share"), Err(PathError::Absolute));
        assert_eq!(ok("a\\..\\b"), Err(PathError::WindowsSyntax));
        assert_eq!(ok("a//b"), Err(PathError::EmptyComponent));
        assert_eq!(ok("a/"), Err(PathError::EmptyComponent));
        assert_eq!(ok(&"x".repeat(256)), Err(PathError::NameTooLong));
        assert!(ok(&"x".repeat(255)).is_ok());
        assert_eq!(
            ok(&"abc/".repeat(1100)[..4399]),
            Err(PathError::PathTooLong)
        );
        assert_eq!(ok("a/.fluxon-part-1"), Err(PathError::Reserved));
        let p = normalize_path("a/b/c").unwrap();
        assert_eq!(p.file_name(), Some("c"));
        assert_eq!(p.parent().unwrap().as_str(), "a/b");
        assert_eq!(
            normalize_path("a").unwrap().parent(),
            Some(StoragePath::root())
        );
        assert_eq!(StoragePath::root().parent(), None);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the input, an accepted path is idempotent under normalization and never
            /// contains a component that could leave the root.
            #[test]
            fn accepted_paths_are_safe(input in "[a-zA-Z0-9./\\\\:\0 é-]{0,40}") {
                if let Ok(p) = normalize_path(&input) {
                    prop_assert_eq!(normalize_path(p.as_str()), Ok(p.clone()));
                    prop_assert!(!p.as_str().starts_with('/'));
                    prop_assert!(!p.as_str().contains('\0'));
                    prop_assert!(!p.as_str().contains('\\'));
                    prop_assert!(!p.as_str().contains(':'));
                    for c in p.components() {
                        prop_assert!(c != ".." && c != "." && !c.is_empty());
                    }
                }
            }

            /// Any path with a `..` component is refused, wherever it sits.
            #[test]
            fn parent_components_always_refused(
                before in proptest::collection::vec("[a-z]{1,5}", 0..4),
                after in proptest::collection::vec("[a-z]{1,5}", 0..4),
            ) {
                let mut parts = before;
                parts.push("..".into());
                parts.extend(after);
                prop_assert!(normalize_path(&parts.join("/")).is_err());
            }

            /// Grants survive a protobuf round trip and any single-byte change of the signature is
            /// refused.
            #[test]
            fn signature_bytes_matter(byte in 0usize..32, bit in 0u8..8, path in "[a-z]{1,8}(/[a-z]{1,8}){0,3}") {
                let key = SecretKey::from_bytes(&[3; 32]).unwrap();
                let g = GrantBuilder::new(key.clone(), SessionId::from_bytes([1; 16]), Op::ReadFile, path)
                    .sign_at(100, [2; 16], String::new())
                    .unwrap();
                prop_assert!(verify(&key, &g, 100).is_ok());
                let mut forged = g;
                forged.signature[byte] ^= 1 << bit;
                prop_assert_eq!(verify(&key, &forged, 100), Err(GrantError::BadSignature));
            }
        }
    }
}
