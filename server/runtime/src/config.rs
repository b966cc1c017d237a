//! Server configuration, with defaults that run a development server out of `./data`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::state::{StateLocation, StateStore};
use crate::tls::TlsSource;

/// Default port of a Fluxon server.
pub const DEFAULT_PORT: u16 = 7443;

/// Everything a [`Server`](crate::Server) needs to start.
///
/// `ServerConfig::default()` listens on 127.0.0.1:7443, keeps its state in `./data` and uses a
/// development certificate.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the session database, the secret key and the development certificate.
    pub data_dir: PathBuf,
    /// Where the certificate comes from.
    pub tls: TlsSource,
    /// The secret key signing session tokens. When `None`: `$FLUXON_SECRET_KEY` (hex), else
    /// `<data_dir>/server.key`, created when absent.
    pub secret_key: Option<Vec<u8>>,
    /// Limits on connections, streams and messages.
    pub limits: ServerLimits,
    /// A session nobody has used for this long expires and cannot be resumed.
    pub session_idle_timeout: Duration,
    /// How long an issued session token stays valid. Each resume issues a fresh one.
    pub token_lifetime: Duration,
    /// Where sessions, used grants and presence are kept. When `None`: the SQLite file
    /// `<data_dir>/fluxon.db`. Nodes of one deployment share a PostgreSQL database here.
    pub state: Option<StateLocation>,
    /// This node's name in presence records. When `None`: a random name, new at each start.
    /// A stable name lets a restarted node forget the connections it held before.
    pub node_id: Option<String>,
    /// The cluster this node belongs to. When `None` (the default): a single node, whose
    /// sessions are the ones connected to it. When set, reverse calls reach a user's devices
    /// on every node; the nodes must share [`Self::state`] and the secret key.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            data_dir: PathBuf::from("data"),
            tls: TlsSource::default(),
            secret_key: None,
            limits: ServerLimits::default(),
            session_idle_timeout: Duration::from_secs(7 * 24 * 3600),
            token_lifetime: Duration::from_secs(30 * 24 * 3600),
            state: None,
            node_id: None,
            cluster: None,
        }
    }
}

impl ServerConfig {
    /// The default configuration, listening on `listen` with its state in `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen,
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }

    /// Sets the certificate source.
    pub fn tls(mut self, tls: TlsSource) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the secret key (at least 32 bytes).
    pub fn secret_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.secret_key = Some(key.into());
        self
    }

    /// Sets how long an unused session lives.
    pub fn session_idle_timeout(mut self, timeout: Duration) -> Self {
        self.session_idle_timeout = timeout;
        self
    }

    /// Sets how long a session token is valid.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Loads the secret key as the server will: [`Self::secret_key`] when set, else
    /// `$FLUXON_SECRET_KEY` (hex), else `<data_dir>/server.key` (created when absent). Services
    /// that verify grants beside the server load theirs this way.
    pub fn load_secret_key(&self) -> Result<crate::SecretKey, crate::ServerError> {
        crate::SecretKey::load_or_create(self.secret_key.as_deref(), &self.data_dir)
    }

    /// Sets where sessions, used grants and presence are kept.
    pub fn state(mut self, location: StateLocation) -> Self {
        self.state = Some(location);
        self
    }

    /// Sets this node's name in presence records.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// Makes this node part of a cluster linked by `cluster` (see [`ClusterConfig`]).
    ///
    /// [`ClusterConfig`]: crate::cluster::ClusterConfig
    pub fn cluster(mut self, cluster: crate::cluster::ClusterConfig) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Path of the default SQLite state database, `<data_dir>/fluxon.db`.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("fluxon.db")
    }

    /// Where the state is kept: [`Self::state`] when set, else [`Self::database_path`].
    pub fn state_location(&self) -> StateLocation {
        self.state
            .clone()
            .unwrap_or_else(|| StateLocation::Sqlite(self.database_path()))
    }

    /// Opens the state store as the server will (creating the data directory for the default
    /// SQLite file). Services that check grants beside the server share the store it returns
    /// ([`Server::bind_with_state`](crate::Server::bind_with_state)).
    pub async fn open_state(&self) -> Result<StateStore, crate::ServerError> {
        let location = self.state_location();
        if let StateLocation::Sqlite(path) = &location {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| crate::ServerError::io(parent, e))?;
            }
        }
        Ok(StateStore::open(&location).await?)
    }
}

/// Limits that protect the server from large, slow or numerous peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// Largest call payload accepted, in bytes. Larger ones get `resource_exhausted`.
    pub max_message_size: usize,
    /// Largest call header (route and metadata), in bytes.
    pub max_header_size: usize,
    /// Streams a client may have open at once on one connection (QUIC flow control); more
    /// calls wait on the client for a stream to finish. quinn keeps an entry per allowed stream
    /// in two hash tables of every connection, whether used or not: 256 costs about 22 KiB per
    /// connection, the default of 100 about 6 KiB.
    pub max_concurrent_streams: u32,
    /// Connections the server holds at once; more are refused.
    pub max_connections: usize,
    /// A connection with no traffic for this long is closed (clients send keep-alives).
    pub idle_timeout: Duration,
    /// Time a client has to complete the handshake after connecting.
    pub handshake_timeout: Duration,
    /// Time a client has to deliver a whole request once it opened its stream.
    pub request_read_timeout: Duration,
    /// Deadline applied to calls that do not carry one.
    pub default_call_timeout: Duration,
    /// Largest QUIC datagram (UDP payload) the server sends and accepts, in bytes; path MTU
    /// discovery probes up to it. The default, 1,452, fits almost every internet path; raise it
    /// (at most 6,500) only where the network carries larger datagrams, such as loopback or
    /// jumbo frames, and raise the client's too (see [`fluxon_proto::transport`]).
    pub max_udp_payload: u16,
    /// The congestion controller of the server's connections (what it sends: replies,
    /// downloads, reverse calls). CUBIC unless set.
    pub congestion: fluxon_proto::transport::Congestion,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_message_size: fluxon_proto::Limits::DEFAULT_MAX_PAYLOAD,
            max_header_size: fluxon_proto::Limits::DEFAULT_MAX_HEADER,
            max_concurrent_streams: 100,
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            request_read_timeout: Duration::from_secs(10),
            default_call_timeout: Duration::from_secs(60),
            max_udp_payload: fluxon_proto::transport::DEFAULT_MAX_UDP_PAYLOAD,
            congestion: fluxon_proto::transport::Congestion::default(),
        }
    }
}

impl ServerLimits {
    /// Sets the largest payload accepted.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets the number of concurrent streams per connection.
    pub fn max_concurrent_streams(mut self, streams: u32) -> Self {
        self.max_concurrent_streams = streams;
        self
    }

    /// Sets the number of connections held at once.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// Sets the connection idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the time allowed to deliver a request.
    pub fn request_read_timeout(mut self, timeout: Duration) -> Self {
        self.request_read_timeout = timeout;
        self
    }

    /// Sets the largest QUIC datagram sent and accepted (1,200 to 6,500 bytes).
    pub fn max_udp_payload(mut self, bytes: u16) -> Self {
        self.max_udp_payload = bytes;
        self
    }

    /// Sets the congestion controller of the server's connections.
    pub fn congestion(mut self, congestion: fluxon_proto::transport::Congestion) -> Self {
        self.congestion = congestion;
        self
    }

    /// `max_udp_payload`, checked.
    pub(crate) fn checked_max_udp_payload(
        &self,
    ) -> Result<fluxon_proto::transport::MaxUdpPayload, crate::ServerError> {
        fluxon_proto::transport::MaxUdpPayload::new(self.max_udp_payload)
            .map_err(|e| crate::ServerError::Config(e.to_string()))
    }

    pub(crate) fn frame_limits(&self) -> fluxon_proto::Limits {
        fluxon_proto::Limits {
            max_header: self.max_header_size,
            max_payload: self.max_message_size,
        }
    }
}
