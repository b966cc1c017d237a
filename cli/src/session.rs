//! Connecting to a server, and keeping the session token between invocations so that `login`
//! then a login-required call works from the shell.
//!
//! Tokens are kept in a JSON file, one per server address: `--session-file`, else
//! `$FLUXON_SESSION_FILE`, else `<config dir>/fluxon/sessions.json` (`~/.config` on Linux).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;
use fluxon_client::{ClientConfig, ConnectError, Connection, ReconnectPolicy, Status, Trust};
use serde::{Deserialize, Serialize};

/// How to reach and trust the server, and where the session is kept.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The server's development certificate or CA (PEM).
    #[arg(long, value_name = "FILE", conflicts_with = "fingerprint")]
    pub cert: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint (as the server logs it).
    #[arg(long, value_name = "HEX")]
    pub fingerprint: Option<String>,
    /// The server's data directory, to find its development certificate (`dev-cert.pem`).
    #[arg(long, default_value = "data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// File keeping session tokens between invocations.
    #[arg(long, env = "FLUXON_SESSION_FILE", value_name = "FILE")]
    pub session_file: Option<PathBuf>,
    /// Start a new session instead of resuming the saved one.
    #[arg(long)]
    pub new_session: bool,
    /// Seconds to wait for the server.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SessionFile {
    /// Hex token per server address.
    sessions: BTreeMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Resolves `host:port`.
pub fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("cannot resolve `{addr}` (expected HOST:PORT)"))?
        .next()
        .ok_or_else(|| anyhow!("`{addr}` has no address"))
}

impl ConnectArgs {
    fn session_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.session_file {
            return Ok(p.clone());
        }
        let dir = dirs::config_dir()
            .ok_or_else(|| anyhow!("no configuration directory; give --session-file"))?;
        Ok(dir.join("fluxon").join("sessions.json"))
    }

    fn load(&self) -> anyhow::Result<SessionFile> {
        let path = self.session_path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{}: not a session file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SessionFile::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn trust(&self) -> Trust {
        match (&self.cert, &self.fingerprint) {
            (_, Some(fp)) => Trust::Fingerprint(fp.clone()),
            (Some(cert), None) => Trust::CertificateFile(cert.clone()),
            (None, None) => Trust::CertificateFile(self.data_dir.join("dev-cert.pem")),
        }
    }

    /// Connects to `addr`, resuming the saved session when there is one (and starting a new
    /// one when the server no longer knows it).
    pub async fn connect(&self, addr: &str) -> anyhow::Result<Connection> {
        let sock = resolve(addr)?;
        if let Trust::CertificateFile(p) = self.trust() {
            if !p.exists() {
                return Err(anyhow!(
                    "no certificate at {} (give --cert, --fingerprint or the server's --data-dir)",
                    p.display()
                ));
            }
        }
        let config = || {
            ClientConfig::new(self.trust())
                .reconnect(ReconnectPolicy::disabled())
                .connect_timeout(Duration::from_secs(self.timeout))
                .default_timeout(Duration::from_secs(self.timeout))
        };
        let saved = if self.new_session {
            None
        } else {
            self.load()?.sessions.get(addr).and_then(|t| unhex(t))
        };
        if let Some(token) = saved {
            match Connection::connect(sock, config().resume_token(token)).await {
                Ok(conn) => return Ok(conn),
                // The server is there but no longer knows the session (expired, ended, or
                // signed with another key): say so, since its login is lost, and start afresh.
                Err(ConnectError::Refused(status)) => {
                    eprintln!("{}", refused_line(addr, &status));
                }
                Err(e) => return Err(anyhow!("cannot connect to {addr}: {e}")),
            }
        }
        Connection::connect(sock, config())
            .await
            .map_err(|e| anyhow!("cannot connect to {addr}: {e}"))
    }

    /// Saves the connection's session token for `addr`.
    pub fn save(&self, addr: &str, conn: &Connection) -> anyhow::Result<()> {
        let path = self.session_path()?;
        let mut file = self.load().unwrap_or_default();
        file.sessions
            .insert(addr.to_owned(), hex(&conn.session().token));
        write_private(&path, &serde_json::to_string_pretty(&file)?)
    }
}

/// The one line on standard error saying that the saved session was refused, and why.
fn refused_line(addr: &str, status: &Status) -> String {
    crate::one_line(&format!(
        "fluxon: the saved session for {addr} was refused ({status}); starting a new one, \
         not logged in"
    ))
}

/// Writes `text` to `path` (creating its directory), readable by the owner only on Unix.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let b = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&b)), Some(b));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
