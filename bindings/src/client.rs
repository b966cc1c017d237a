//! The connection object, its options and its session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluxon_client::{ClientConfig, Connection, ReconnectPolicy, ReverseRouter};

use crate::error::FluxonError;
use crate::foreign::exit_safe;
use crate::reverse::ReverseService;

/// Which server certificates to accept. There is deliberately no "accept anything".
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Trust {
    /// Certificates issued by (or equal to) those in this PEM file, e.g. the server's
    /// development certificate `data/dev-cert.pem`.
    CertificateFile {
        /// Path of the PEM file.
        path: String,
    },
    /// As `CertificateFile`, with the PEM text given directly.
    CertificatePem {
        /// The PEM text.
        pem: Vec<u8>,
    },
    /// Exactly the certificate with this SHA-256 fingerprint (hex, colons optional), as the
    /// server logs at startup.
    Fingerprint {
        /// 64 hex digits.
        sha256: String,
    },
}

impl From<Trust> for fluxon_client::Trust {
    fn from(trust: Trust) -> Self {
        match trust {
            Trust::CertificateFile { path } => Self::CertificateFile(path.into()),
            Trust::CertificatePem { pem } => Self::CertificatePem(pem),
            Trust::Fingerprint { sha256 } => Self::Fingerprint(sha256),
        }
    }
}

/// How to connect; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConnectOptions {
    /// The name the server certificate must be valid for (default `localhost`).
    #[uniffi(default = None)]
    pub server_name: Option<String>,
    /// A token from an earlier session ([`SessionInfo::token`]) to resume it, login included.
    #[uniffi(default = None)]
    pub resume_token: Option<Vec<u8>>,
    /// Deadline of calls that set none, in milliseconds (default 30 000).
    #[uniffi(default = None)]
    pub call_timeout_ms: Option<u64>,
    /// Time allowed to connect and start the session, in milliseconds (default 10 000).
    #[uniffi(default = None)]
    pub connect_timeout_ms: Option<u64>,
    /// Reconnect and resume the session in the background after a lost connection.
    #[uniffi(default = true)]
    pub reconnect: bool,
    /// Describes the client in the server's logs.
    #[uniffi(default = None)]
    pub client_name: Option<String>,
    /// Largest QUIC datagram payload, 1,200 to 6,500 bytes (default 1,452). Raise it only where
    /// the network carries larger datagrams, and on the server too.
    #[uniffi(default = None)]
    pub max_udp_payload: Option<u16>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            server_name: None,
            resume_token: None,
            call_timeout_ms: None,
            connect_timeout_ms: None,
            reconnect: true,
            client_name: None,
            max_udp_payload: None,
        }
    }
}

/// Per-call options.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct CallOptions {
    /// How long to wait for the reply, in milliseconds (default: the connection's call timeout).
    #[uniffi(default = None)]
    pub timeout_ms: Option<u64>,
    /// Metadata sent with the call.
    #[uniffi(default)]
    pub metadata: HashMap<String, String>,
    /// The route is safe to run twice: after a lost connection the call is retried on the
    /// reconnected session instead of failing with `Unavailable`.
    #[uniffi(default = false)]
    pub idempotent: bool,
}

impl From<CallOptions> for fluxon_client::CallOptions {
    fn from(options: CallOptions) -> Self {
        let mut out = Self::new();
        if let Some(ms) = options.timeout_ms {
            out = out.timeout(Duration::from_millis(ms));
        }
        for (key, value) in options.metadata {
            out = out.metadata(key, value);
        }
        if options.idempotent {
            out = out.idempotent();
        }
        out
    }
}

/// The session the client holds on the server.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SessionInfo {
    /// Session id (32 hex digits).
    pub id: String,
    /// Resumes the session, login included (`ConnectOptions.resume_token`); store it to
    /// resume after the app restarts.
    pub token: Vec<u8>,
    /// The logged-in user, if any.
    pub user_id: Option<i64>,
    /// Whether the last handshake resumed an existing session.
    pub resumed: bool,
    /// Largest call payload the server accepts, in bytes.
    pub max_message_size: u64,
}

impl From<fluxon_client::SessionInfo> for SessionInfo {
    fn from(info: fluxon_client::SessionInfo) -> Self {
        Self {
            id: info.id,
            token: info.token,
            user_id: info.user_id,
            resumed: info.resumed,
            max_message_size: u64::try_from(info.max_message_size).unwrap_or(u64::MAX),
        }
    }
}

/// A connection to a Fluxon server, with its session. Safe to use from many threads and
/// coroutines at once: concurrent calls share one QUIC stream, each answered as soon as its
/// handler finishes.
#[derive(Debug, uniffi::Object)]
pub struct FluxonClient {
    connection: Connection,
}

impl FluxonClient {
    /// The Rust connection: what generated service clients call through.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// [`FluxonClient::connect`]'s work.
    async fn open(
        address: String,
        trust: Trust,
        options: Option<ConnectOptions>,
        reverse: Vec<Arc<ReverseService>>,
    ) -> Result<Arc<Self>, FluxonError> {
        let options = options.unwrap_or_default();
        let addr = resolve(&address).await?;
        let router = reverse
            .iter()
            .fold(ReverseRouter::new(), |router, service| {
                router.merge(service.router().clone())
            });
        let mut config = ClientConfig::new(trust.into()).reverse(router);
        if let Some(name) = options.server_name {
            config = config.server_name(name);
        }
        if let Some(token) = options.resume_token {
            config = config.resume_token(token);
        }
        if let Some(ms) = options.call_timeout_ms {
            config = config.default_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = options.connect_timeout_ms {
            config = config.connect_timeout(Duration::from_millis(ms));
        }
        if !options.reconnect {
            config = config.reconnect(ReconnectPolicy::disabled());
        }
        if let Some(name) = options.client_name {
            config.client_name = name;
        }
        if let Some(bytes) = options.max_udp_payload {
            config = config.max_udp_payload(bytes);
        }
        let connection = Connection::connect(addr, config).await?;
        Ok(Arc::new(Self { connection }))
    }
}

/// Resolves `host:port` (an IP address or a name).
async fn resolve(address: &str) -> Result<SocketAddr, FluxonError> {
    if let Ok(addr) = address.parse() {
        return Ok(addr);
    }
    let bad = |why: String| FluxonError::InvalidConfig {
        detail: format!("cannot resolve `{address}`: {why}"),
    };
    tokio::net::lookup_host(address)
        .await
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("no address".into()))
}

#[uniffi::export(async_runtime = "tokio")]
impl FluxonClient {
    /// Connects to `address` (`host:port`) and starts a session, or resumes the one
    /// `options.resume_token` names. `reverse` answers the server's reverse calls (generated
    /// `...Service` functions, or `ReverseService.raw`).
    #[uniffi::constructor(default(options = None, reverse = []))]
    pub async fn connect(
        address: String,
        trust: Trust,
        options: Option<ConnectOptions>,
        reverse: Vec<Arc<ReverseService>>,
    ) -> Result<Arc<Self>, FluxonError> {
        exit_safe(Self::open(address, trust, options, reverse)).await
    }

    /// Calls `route` (`package.Service/Method`) with an encoded protobuf request and returns
    /// the encoded reply. Generated service clients are typed wrappers of this.
    #[uniffi::method(default(options = None))]
    pub async fn call(
        &self,
        route: String,
        request: Vec<u8>,
        options: Option<CallOptions>,
    ) -> Result<Vec<u8>, FluxonError> {
        let options = options.map(Into::into).unwrap_or_default();
        exit_safe(async {
            let reply = self
                .connection
                .call_raw(&route, Bytes::from(request), options)
                .await?;
            Ok(reply.to_vec())
        })
        .await
    }

    /// The session this client holds (its token resumes it later).
    pub fn session(&self) -> SessionInfo {
        self.connection.session().into()
    }

    /// The logged-in user, as of the last reply that changed it.
    pub fn user_id(&self) -> Option<i64> {
        self.connection.user_id()
    }

    /// Whether a user is logged in on this session.
    pub fn is_logged_in(&self) -> bool {
        self.connection.user_id().is_some()
    }

    /// Whether a live QUIC connection is up right now (false while reconnecting).
    pub fn is_connected(&self) -> bool {
        self.connection.is_connected()
    }

    /// The server's address.
    pub fn remote_address(&self) -> String {
        self.connection.remote_addr().to_string()
    }

    /// Closes the connection (named so as not to clash with Kotlin's `AutoCloseable.close`,
    /// which frees the object); calls in flight and later fail with `Cancelled`. The session
    /// stays on the server and can be resumed with its token.
    pub fn disconnect(&self) {
        self.connection.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_datagram_bound_out_of_range_is_an_invalid_config() {
        let trust = Trust::Fingerprint {
            sha256: "ab".repeat(32),
        };
        for bytes in [1_000, 9_000] {
            let options = ConnectOptions {
                max_udp_payload: Some(bytes),
                ..ConnectOptions::default()
            };
            let refused =
                FluxonClient::connect("127.0.0.1:9".into(), trust.clone(), Some(options), vec![])
                    .await
                    .map(|_| ())
                    .unwrap_err();
            assert!(
                matches!(&refused, FluxonError::InvalidConfig { detail }
                    if detail.contains(&format!("{bytes} bytes is outside 1200..=6500"))),
                "{bytes}: {refused}"
            );
        }
    }
}
