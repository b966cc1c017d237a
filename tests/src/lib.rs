//! Shared harness for Fluxon's end-to-end tests: a server on an ephemeral loopback port with its
//! state in a temporary directory, and clients that trust its development certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fluxon_client::{ClientConfig, ConnectError, Connection, Trust};
use fluxon_server::{Router, Server, ServerConfig};

pub mod notes;

/// Generated from the code generator's streaming fixture
/// (`codegen/tests/fixtures/streams/streams.proto`): a unary rpc and one of each streaming shape.
pub mod ticker {
    fluxon_server::include_schema!("ticker");
}

/// Loopback, port chosen by the OS.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A server configuration on an ephemeral loopback port with its state in `dir`.
pub fn server_config(dir: &Path) -> ServerConfig {
    ServerConfig::new(loopback(), dir)
}

/// Starts a server.
pub async fn start(config: ServerConfig, router: Router) -> Server {
    Server::bind(config, router).await.expect("server starts")
}

/// A client configuration trusting `server`'s development certificate file.
pub fn client_config(server: &Server) -> ClientConfig {
    let cert = server
        .dev_certificate_path()
        .expect("development certificate");
    ClientConfig::new(Trust::CertificateFile(cert)).connect_timeout(Duration::from_secs(5))
}

/// Connects to `server` with `config`.
pub async fn connect_with(
    server: &Server,
    config: ClientConfig,
) -> Result<Connection, ConnectError> {
    Connection::connect(server.local_addr(), config).await
}

/// Connects to `server` with the default test configuration.
pub async fn connect(server: &Server) -> Connection {
    connect_with(server, client_config(server))
        .await
        .expect("client connects")
}

/// Installs a log subscriber once (`RUST_LOG=debug cargo test` to see the server's spans).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Routes of the test application.
pub mod routes {
    /// Echoes its request.
    pub const ECHO: &str = "test.App/Echo";
    /// Logs in as the given user.
    pub const LOGIN: &str = "test.App/Login";
    /// Logs out.
    pub const LOGOUT: &str = "test.App/Logout";
    /// Says who the caller is; requires login.
    pub const WHOAMI: &str = "test.App/Whoami";
    /// Sleeps `n` milliseconds, then echoes.
    pub const SLOW: &str = "test.App/Slow";
    /// Idempotent: sleeps `n` milliseconds, then echoes.
    pub const SLOW_IDEMPOTENT: &str = "test.App/SlowIdempotent";
    /// Calls the caller back on [`CLIENT_PING`] and returns the client's answer.
    pub const CALL_ME_BACK: &str = "test.App/CallMeBack";
    /// The reverse route clients of the test application handle.
    pub const CLIENT_PING: &str = "test.Client/Ping";
}

/// The test application's router.
pub fn app_router() -> Router {
    use fluxon_server::{Request, RouteOptions, Status};
    use msg::{Echo, Login, Whoami};

    fn whoami<T>(req: &Request<T>) -> Whoami {
        Whoami {
            user_id: req.user_id(),
            session_id: req.session_id().to_string(),
        }
    }

    async fn slow(req: Request<Echo>) -> Result<Echo, Status> {
        tokio::time::sleep(Duration::from_millis(req.n)).await;
        Ok(req.into_inner())
    }

    Router::new()
        .route(routes::ECHO, |req: Request<Echo>| async move {
            Ok::<_, Status>(req.into_inner())
        })
        .route(routes::LOGIN, |req: Request<Login>| async move {
            req.login(req.user_id).await?;
            Ok::<_, Status>(whoami(&req))
        })
        .route(routes::LOGOUT, |req: Request<()>| async move {
            req.logout().await?;
            Ok::<_, Status>(whoami(&req))
        })
        .route_with(
            routes::WHOAMI,
            RouteOptions::new().requires_login(),
            |req: Request<()>| async move { Ok::<_, Status>(whoami(&req)) },
        )
        .route(routes::SLOW, slow)
        .route_with(
            routes::SLOW_IDEMPOTENT,
            RouteOptions::new().idempotent(),
            slow,
        )
        .route(routes::CALL_ME_BACK, |req: Request<Echo>| async move {
            let timeout = Duration::from_millis(req.n.max(1));
            let session = req.session().clone();
            session
                .call::<Echo, Echo>(routes::CLIENT_PING, req.message(), timeout)
                .await
        })
}

/// Messages of the test application.
pub mod msg {
    /// A request carrying text and a number.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Echo {
        /// Text echoed back.
        #[prost(string, tag = "1")]
        pub text: String,
        /// Number echoed back.
        #[prost(uint64, tag = "2")]
        pub n: u64,
    }

    /// Same field number as `Echo.text` with another wire type: the server cannot decode it.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NotAnEcho {
        /// Collides with `Echo.text`.
        #[prost(uint64, tag = "1")]
        pub text: u64,
    }

    /// A login request.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Login {
        /// The user to log in as.
        #[prost(int64, tag = "1")]
        pub user_id: i64,
    }

    /// Who the server thinks the caller is.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Whoami {
        /// The logged-in user, if any.
        #[prost(int64, optional, tag = "1")]
        pub user_id: Option<i64>,
        /// The session id.
        #[prost(string, tag = "2")]
        pub session_id: String,
    }
}
