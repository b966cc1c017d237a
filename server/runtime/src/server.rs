//! The server: binds the endpoint, accepts connections, and shuts down gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fluxon_proto::close;
use quinn::crypto::rustls::QuicServerConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::call::StreamServices;
use crate::cluster::Cluster;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::key::SecretKey;
use crate::router::Router;
use crate::session::{Registry, Sessions};
use crate::state::StateStore;
use crate::tls::{Identity, TlsSource, DEV_CERT_FILE};

/// How often idle sessions are purged from the store.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A random node name (12 hex digits), for a node that was given none.
fn random_node_id() -> Result<String, ServerError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 6];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ServerError::Config("random generator failed".into()))?;
    Ok(crate::grant::hex(&bytes))
}

/// State shared by the accept loop, every connection and every call.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) key: SecretKey,
    pub(crate) store: StateStore,
    /// This node's name in presence records.
    pub(crate) node_id: String,
    pub(crate) sessions: Registry,
    /// The link to the other nodes, in a cluster.
    pub(crate) cluster: Option<Cluster>,
    pub(crate) router: Router,
    /// Services for stream kinds other than calls (cloud storage).
    pub(crate) services: StreamServices,
    /// Cancelled when shutdown starts: accept loops stop taking new work.
    pub(crate) shutdown: CancellationToken,
    /// Calls being served.
    pub(crate) calls: TaskTracker,
    /// Connection tasks.
    pub(crate) connections: TaskTracker,
    pub(crate) open_connections: AtomicUsize,
    fingerprint: String,
    /// Cancelled once shutdown has completed.
    stopped: CancellationToken,
}

/// A running Fluxon server. Cheap to clone; every clone controls the same server.
///
/// ```no_run
/// # async fn run() -> Result<(), fluxon_server::ServerError> {
/// use fluxon_server::{Request, Router, Server, ServerConfig, Status};
///
/// let router = Router::new().route("demo.Echo/Echo", |req: Request<String>| async move {
///     Ok::<_, Status>(req.into_inner())
/// });
/// let server = Server::bind(ServerConfig::default(), router).await?;
/// println!("listening on {}", server.local_addr());
/// server.run_until_ctrl_c().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.endpoint.local_addr().ok())
            .field("routes", &self.shared.router)
            .finish()
    }
}

impl Server {
    /// Prepares the data directory, loads (or creates) the certificate, key and session store,
    /// binds the UDP socket and starts accepting connections.
    pub async fn bind(config: ServerConfig, router: Router) -> Result<Self, ServerError> {
        Self::bind_with(config, router, StreamServices::new()).await
    }

    /// As [`Server::bind`], also serving the streams of `services` (e.g. cloud storage) on the
    /// same endpoint.
    pub async fn bind_with(
        config: ServerConfig,
        router: Router,
        services: StreamServices,
    ) -> Result<Self, ServerError> {
        let state = config.open_state().await?;
        Self::bind_with_state(config, router, services, state).await
    }

    /// As [`Server::bind_with`], keeping sessions, used grants and presence in `state` (opened
    /// with [`ServerConfig::open_state`] and shared with the services that check grants),
    /// instead of opening the store [`ServerConfig::state`] names.
    pub async fn bind_with_state(
        config: ServerConfig,
        router: Router,
        services: StreamServices,
        state: StateStore,
    ) -> Result<Self, ServerError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|e| ServerError::io(&data_dir, e))?;
        let identity = Identity::load(&config.tls, &data_dir)?;
        let key = SecretKey::load_or_create(config.secret_key.as_deref(), &data_dir)?;
        let node_id = match &config.node_id {
            Some(id) => {
                // Connections this node held before it stopped are gone.
                state.clear_node(id).await?;
                id.clone()
            }
            None => random_node_id()?,
        };
        let (cluster, relayed) = match &config.cluster {
            Some(cluster) => {
                let (link, subscriber) = Cluster::join(cluster, &node_id).await?;
                (Some(link), Some(subscriber))
            }
            None => (None, None),
        };
        let quic = quic_config(&identity, &config)?;
        let endpoint = bind_endpoint(&config, quic)?;
        let shared = Arc::new(Shared {
            key,
            store: state,
            node_id,
            sessions: Registry::default(),
            cluster,
            router,
            services,
            shutdown: CancellationToken::new(),
            calls: TaskTracker::new(),
            connections: TaskTracker::new(),
            open_connections: AtomicUsize::new(0),
            fingerprint: identity.fingerprint.clone(),
            stopped: CancellationToken::new(),
            config,
        });
        let server = Self { shared, endpoint };
        tracing::info!(
            addr = %server.local_addr(),
            fingerprint = %server.shared.fingerprint,
            state = %server.shared.store.location(),
            node = %server.shared.node_id,
            routes = server.shared.router.routes().count(),
            "fluxon server listening"
        );
        tokio::spawn(accept_loop(
            Arc::clone(&server.shared),
            server.endpoint.clone(),
        ));
        tokio::spawn(purge_loop(Arc::clone(&server.shared)));
        if let Some(subscriber) = relayed {
            tokio::spawn(crate::cluster::serve(
                Arc::clone(&server.shared),
                subscriber,
            ));
        }
        Ok(server)
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or(self.shared.config.listen)
    }

    /// SHA-256 fingerprint of the server's certificate (`AB:CD:...`), for clients to pin.
    pub fn certificate_fingerprint(&self) -> &str {
        &self.shared.fingerprint
    }

    /// Path of the development certificate's PEM file, when the server uses one.
    pub fn dev_certificate_path(&self) -> Option<PathBuf> {
        matches!(self.shared.config.tls, TlsSource::Development { .. })
            .then(|| self.shared.config.data_dir.join(DEV_CERT_FILE))
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// The secret key signing session tokens and grants (for services that verify them).
    pub fn secret_key(&self) -> &SecretKey {
        &self.shared.key
    }

    /// The durable state (sessions, used grants, presence) this server keeps, to share with
    /// services that check grants.
    pub fn state(&self) -> &StateStore {
        &self.shared.store
    }

    /// This node's name in presence records ([`ServerConfig::node_id`], or a random one).
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// The routes the server serves.
    pub fn router(&self) -> &Router {
        &self.shared.router
    }

    /// The live sessions, to find clients for reverse calls.
    pub fn sessions(&self) -> Sessions {
        Sessions {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Connections open right now.
    pub fn connection_count(&self) -> usize {
        self.shared.open_connections.load(Ordering::Relaxed)
    }

    /// Call statistics: per route, calls, errors, payload bytes and p50/p99 latency since the
    /// server started, plus the connections and sessions open now.
    pub fn stats(&self) -> crate::Stats {
        crate::Stats {
            routes: self.shared.router.stats(),
            connections: self.connection_count(),
            sessions: self.shared.sessions.len(),
        }
    }

    /// Shuts down gracefully: stops accepting connections and calls, lets calls in flight
    /// finish for up to `grace`, then closes every connection with the `SHUTDOWN` close code.
    /// Calling it again (or from another clone) waits for the first shutdown to finish.
    pub async fn shutdown(&self, grace: Duration) {
        if self.shared.shutdown.is_cancelled() {
            self.shared.stopped.cancelled().await;
            return;
        }
        self.shared.shutdown.cancel();
        self.endpoint.set_server_config(None);
        self.shared.calls.close();
        let in_flight = self.shared.calls.len();
        tracing::info!(in_flight, ?grace, "shutting down");
        if tokio::time::timeout(grace, self.shared.calls.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                still_running = self.shared.calls.len(),
                "calls did not finish within the grace period"
            );
        }
        self.endpoint
            .close(close::connection::SHUTDOWN.into(), b"server shutting down");
        self.shared.connections.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.shared.connections.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        if let Some(cluster) = &self.shared.cluster {
            let _ = tokio::time::timeout(Duration::from_secs(2), cluster.leave()).await;
        }
        self.shared.stopped.cancel();
        tracing::info!("server stopped");
    }

    /// Waits until the server has shut down.
    pub async fn stopped(&self) {
        self.shared.stopped.cancelled().await;
    }

    /// Runs until Ctrl-C (or SIGTERM on Unix), then shuts down with a 10-second grace period.
    pub async fn run_until_ctrl_c(&self) {
        crate::StopSignals::once().await;
        self.shutdown(Duration::from_secs(10)).await;
    }
}

/// The QUIC server configuration a [`Server`] with `config` would use: its certificate (the
/// development certificate is created in the data directory when absent), TLS 1.3, ALPN
/// `fluxon/1` and its transport limits. For endpoints that serve Fluxon streams beside a
/// [`Server`], such as a storage-only endpoint on its own port.
pub fn endpoint_config(config: &ServerConfig) -> Result<quinn::ServerConfig, ServerError> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| ServerError::io(data_dir, e))?;
    let identity = Identity::load(&config.tls, data_dir)?;
    quic_config(&identity, config)
}

/// Binds a server endpoint for `config` (its address and datagram size) serving `quic`: what
/// a [`Server`] listens on, and what endpoints beside it (a storage-only one) should use.
pub fn bind_endpoint(
    config: &ServerConfig,
    quic: quinn::ServerConfig,
) -> Result<quinn::Endpoint, ServerError> {
    let max_udp_payload = config.limits.checked_max_udp_payload()?;
    fluxon_proto::transport::bind_endpoint(config.listen, max_udp_payload, Some(quic)).map_err(
        |source| ServerError::Bind {
            addr: config.listen,
            source,
        },
    )
}

fn quic_config(
    identity: &Identity,
    config: &ServerConfig,
) -> Result<quinn::ServerConfig, ServerError> {
    let crypto = QuicServerConfig::try_from(identity.rustls_config()?)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let limits = &config.limits;
    let mut transport = quinn::TransportConfig::default();
    limits.congestion.apply(&mut transport);
    fluxon_proto::transport::configure(&mut transport, limits.checked_max_udp_payload()?)
        .max_concurrent_bidi_streams(limits.max_concurrent_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .max_idle_timeout(Some(
            limits
                .idle_timeout
                .try_into()
                .map_err(|_| ServerError::Config("idle timeout is too large".into()))?,
        ));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// Decrements the open-connection count when a connection task ends.
struct ConnectionSlot(Arc<Shared>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    loop {
        let incoming = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let open = shared.open_connections.load(Ordering::Relaxed);
        if open >= shared.config.limits.max_connections {
            tracing::warn!(open, peer = %incoming.remote_address(), "connection refused: server full");
            incoming.refuse();
            continue;
        }
        shared.open_connections.fetch_add(1, Ordering::Relaxed);
        let slot = ConnectionSlot(Arc::clone(&shared));
        let task = crate::connection::serve_connection(Arc::clone(&shared), incoming);
        shared.connections.spawn(
            async move {
                task.await;
                drop(slot);
            }
            .in_current_span(),
        );
    }
}

async fn purge_loop(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = now_secs();
        let cutoff = now.saturating_sub(shared.config.session_idle_timeout.as_secs());
        match shared.store.purge_idle(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idle sessions"),
            Err(e) => tracing::warn!(error = %e, "cannot purge idle sessions"),
        }
        match shared.store.purge_used_grants(now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "forgot used grants past their expiry"),
            Err(e) => tracing::warn!(error = %e, "cannot purge used grants"),
        }
    }
}
