//! Errors of connecting. (Calls fail with [`Status`](fluxon_proto::Status).)

use fluxon_proto::Status;

/// Why [`Connection::connect`](crate::Connection::connect) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is unusable (e.g. an unreadable certificate file or a bad fingerprint).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The local UDP socket could not be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The connection could not be established (unreachable server, TLS failure, refused).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The server address.
        addr: std::net::SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The server refused the session: bad, expired or foreign token, unknown protocol version.
    #[error("session refused: {0}")]
    Refused(Status),
    /// No answer within the connect timeout.
    #[error("connecting to {0} timed out")]
    TimedOut(std::net::SocketAddr),
}

impl ConnectError {
    /// The status a call reports when it needed a connection and this happened instead.
    pub fn to_status(&self) -> Status {
        match self {
            Self::Refused(status) => status.clone(),
            Self::TimedOut(_) => Status::unavailable(self.to_string()),
            _ => Status::unavailable(self.to_string()),
        }
    }
}
