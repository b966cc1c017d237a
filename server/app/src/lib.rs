//! Fluxon's application runtime: everything an application's server binary does besides its
//! own routes, so that `main` is a few lines.
//!
//! ```no_run
//! use fluxon_server::{Request, Router, Status};
//!
//! fn main() -> std::process::ExitCode {
//!     fluxon_app::App::new("hello")
//!         .router_with(|_ctx| {
//!             Router::new().route("hello.Greeter/Echo", |req: Request<String>| async move {
//!                 Ok::<_, Status>(req.into_inner())
//!             })
//!         })
//!         .run()
//! }
//! ```
//!
//! The binary then understands:
//!
//! * `serve` (the default): `--config FILE.toml`, `--host`, `--port`, `--data-dir`,
//!   `--cert`/`--key` (else the development certificate), `--cloud-port`, `--cloud-root`,
//!   `--log-level`, `--no-console`, `--apply-schema`, `--schema-dir`, `--database`, each also
//!   from an environment variable (`FLUXON_PORT`, ...). With no flags it listens on
//!   127.0.0.1:7443 and keeps everything in `./data`: the session database `fluxon.db`, the
//!   application database `<name>.db`, the secret key, the development certificate and the cloud
//!   root `cloud/`.
//! * `schema save [name] | list | diff | status | apply N`: schema versions of the models
//!   compiled into the binary, offline.
//!
//! On start the server checks the database against the saved schema versions
//! ([`SchemaSet::check_on_start`]): a new database is created at the latest version; one at
//! another version is refused unless `--apply-schema`. On a terminal it starts the interactive
//! console ([`Command`] lists the commands), whose commands and the `schema` subcommands run
//! through the same [`Executor`]. Schema changes are made offline, with the server stopped
//! (`schema save`, `schema apply N`): the console inspects the versions and refuses to move the
//! live database to a version the compiled models do not match.

mod cli;
mod command;
mod console;
mod error;
mod logging;
mod schema;

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use clap::{CommandFactory as _, FromArgMatches as _};
use fluxon_db::schema::ModelMeta;
use fluxon_db::AsyncDatabase;
use fluxon_server::{
    Router, Server, ServerConfig, ServerLimits, StateLocation, StopSignals, StreamServices,
};
use fluxon_storage::{
    ObjectStoreConfig, StorageConfig, StorageHooks, StorageServer, StorageService,
};

pub use cli::{
    Cli, CloudSettings, CommonArgs, Defaults, FileConfig, Locations, SchemaCommand, ServeArgs,
    Settings, Sub,
};
pub use command::{Command, Executor, Reply, COMMANDS, LOG_LEVELS};
pub use error::AppError;
pub use logging::{init as init_logging, LogControl};
pub use schema::{SchemaSet, StartupCheck};

/// Connections in the application database's pool.
const DB_POOL_SIZE: usize = 8;

type RouterFn = Box<dyn FnOnce(&AppContext) -> Router + Send>;
type HooksFn = Box<dyn FnOnce(&AppContext, StorageConfig) -> StorageConfig + Send>;

/// An application's server: its name, routes, models and options. See the crate docs.
pub struct App {
    name: String,
    about: Option<String>,
    router: Option<RouterFn>,
    models: Vec<ModelMeta>,
    cloud: bool,
    storage_hooks: Option<HooksFn>,
    defaults: Defaults,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("models", &self.models.len())
            .field("cloud", &self.cloud)
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

/// What a router builder gets: the resolved settings, the opened application database and a
/// slot holding the server once it is bound (for reverse calls to other sessions).
#[derive(Debug)]
pub struct AppContext {
    settings: Settings,
    database: Arc<AsyncDatabase>,
    server: ServerSlot,
}

impl AppContext {
    /// The settings the server runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The application database (`<data-dir>/<name>.db`), at the schema's latest version;
    /// handlers keep a clone of the `Arc`.
    pub fn database(&self) -> Arc<AsyncDatabase> {
        Arc::clone(&self.database)
    }

    /// The server, available from inside handlers once it is bound.
    pub fn server(&self) -> ServerSlot {
        self.server.clone()
    }
}

/// The server, set once it is bound. Cheap to clone into handlers.
#[derive(Clone, Debug, Default)]
pub struct ServerSlot(Arc<OnceLock<Server>>);

impl ServerSlot {
    /// The server (`None` only while it is starting).
    pub fn get(&self) -> Option<&Server> {
        self.0.get()
    }
}

/// A started application: its server, cloud storage and command executor.
#[derive(Debug)]
pub struct Running {
    server: Server,
    storage: Option<StorageService>,
    storage_server: Option<StorageServer>,
    executor: Executor,
    settings: Settings,
    startup: StartupCheck,
}

impl Running {
    /// The server.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The cloud storage service, when the application serves it.
    pub fn storage(&self) -> Option<&StorageService> {
        self.storage.as_ref()
    }

    /// The storage-only endpoint (`--cloud-port`), when started.
    pub fn storage_server(&self) -> Option<&StorageServer> {
        self.storage_server.as_ref()
    }

    /// The console's command executor, bound to this server.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The settings the server runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What the schema check did on start.
    pub fn startup(&self) -> StartupCheck {
        self.startup
    }

    /// Waits for Ctrl-C / SIGTERM (then shuts down gracefully) or for a shutdown started
    /// elsewhere (the console), then stops the storage endpoint.
    pub async fn wait(&self) {
        self.wait_until(StopSignals::once()).await;
    }

    /// [`Running::wait`] with the stop signal given.
    async fn wait_until(&self, signal: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = signal => self.server.shutdown(self.settings.shutdown_grace).await,
            () = self.server.stopped() => {}
        }
        if let Some(s) = &self.storage_server {
            s.shutdown(self.settings.shutdown_grace).await;
        }
    }
}

impl App {
    /// An application named `name` (used in the prompt, logs and `--help`), with no routes,
    /// no models and no cloud storage.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let defaults = Defaults {
            database_file: format!("{name}.db"),
            ..Defaults::default()
        };
        Self {
            name,
            about: None,
            router: None,
            models: Vec::new(),
            cloud: false,
            storage_hooks: None,
            defaults,
        }
    }

    /// One line describing the application, for `--help`.
    pub fn about(mut self, about: impl Into<String>) -> Self {
        self.about = Some(about.into());
        self
    }

    /// Serves `router` (which needs nothing from the runtime).
    pub fn router(self, router: Router) -> Self {
        self.router_with(move |_| router)
    }

    /// Builds the router once the settings are resolved and the database is open: handlers
    /// usually hold `ctx.database().clone()`.
    pub fn router_with(
        mut self,
        build: impl FnOnce(&AppContext) -> Router + Send + 'static,
    ) -> Self {
        self.router = Some(Box::new(build));
        self
    }

    /// The models compiled into the application (codegen's `models::all()`), whose schema
    /// versions the server checks on start and the console manages.
    pub fn models(mut self, models: Vec<ModelMeta>) -> Self {
        self.models = models;
        self
    }

    /// Serves cloud storage (root `<data-dir>/cloud` unless `--cloud-root`) on the main
    /// endpoint, and on `--cloud-port` too when given.
    pub fn cloud_storage(mut self, enabled: bool) -> Self {
        self.cloud = enabled;
        self
    }

    /// The cloud storage's completion hooks, built once the database is open: the application
    /// records each write, directory creation, move and delete in its database once the bytes
    /// are durable (see `fluxon_storage::hooks`). Used only with `cloud_storage(true)`.
    pub fn storage_hooks_with<H: StorageHooks>(
        mut self,
        build: impl FnOnce(&AppContext) -> H + Send + 'static,
    ) -> Self {
        self.storage_hooks = Some(Box::new(move |ctx, config: StorageConfig| {
            config.hooks(build(ctx))
        }));
        self
    }

    /// Default directory of saved schema versions (`schema`, relative to the working directory,
    /// unless set). `concat!(env!("CARGO_MANIFEST_DIR"), "/schema")` finds the crate's own.
    pub fn schema_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.defaults.schema_dir = dir.into();
        self
    }

    /// Default port (7443 unless set).
    pub fn default_port(mut self, port: u16) -> Self {
        self.defaults.port = port;
        self
    }

    /// Default data directory (`data` unless set).
    pub fn data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.defaults.data_dir = dir.into();
        self
    }

    /// Parses the process's arguments and runs; errors are printed as one line. Returns the
    /// exit status for `main`.
    pub fn run(self) -> ExitCode {
        let name = self.name.clone();
        match self.run_from(std::env::args_os()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(AppError::Usage(text)) => {
                // clap's own help, version and usage errors, already formatted.
                eprint!("{text}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("{name}: error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// Parses `args` (the first being the program name) and runs.
    pub fn run_from<I, T>(self, args: I) -> Result<(), AppError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Cli::command().name(self.name.clone());
        command = match &self.about {
            Some(about) => command.about(about.clone()),
            None => command.about(format!("The {} server", self.name)),
        };
        let matches = match command.try_get_matches_from(args) {
            Ok(m) => m,
            Err(e) if !e.use_stderr() => {
                // --help: print it and succeed.
                say(&e.to_string());
                return Ok(());
            }
            Err(e) => return Err(AppError::Usage(e.render().to_string())),
        };
        let cli = Cli::from_arg_matches(&matches).map_err(|e| AppError::Usage(e.to_string()))?;
        match cli.command {
            Some(Sub::Schema { common, command }) => {
                let file = match &common.config {
                    Some(path) => FileConfig::load(path)?,
                    None => FileConfig::default(),
                };
                let at = common.locations(&file, &self.defaults)?;
                let schema = SchemaSet::new(self.models, at.schema_dir, at.database);
                let executor = Executor::offline(schema).named(self.name);
                let runtime = runtime()?;
                let reply = runtime.block_on(executor.execute(command.to_command()))?;
                say(&format!("{}\n", reply.text));
                Ok(())
            }
            Some(Sub::Serve(args)) => self.serve_args(&args),
            None => self.serve_args(&cli.serve),
        }
    }

    fn serve_args(self, args: &ServeArgs) -> Result<(), AppError> {
        let settings = Settings::resolve(args, &self.defaults, self.cloud)?;
        let log = logging::init(&settings.log_level);
        let runtime = runtime()?;
        runtime.block_on(async move {
            let console = settings.console && std::io::stdin().is_terminal();
            let name = self.name.clone();
            let history = settings.data_dir.join("console_history");
            let mut signals = StopSignals::listen()
                .map_err(|e| AppError::Failed(format!("cannot listen for stop signals: {e}")))?;
            let running = self.start_with_log(settings, log).await?;
            let server = running.server();
            // The banner must not take the server down when nobody reads it: `println!`
            // panics once standard output is closed (a supervisor that read the first line
            // and went away), so a failed write is ignored.
            let mut banner = format!("{name} listening on {}\n", server.local_addr());
            banner += &format!(
                "certificate fingerprint {}\n",
                server.certificate_fingerprint()
            );
            if let Some(cert) = server.dev_certificate_path() {
                banner += &format!("development certificate {}\n", cert.display());
            }
            if let Some(s) = running.storage_server() {
                banner += &format!("cloud storage endpoint on {}\n", s.local_addr());
            }
            if !console {
                banner += "press Ctrl-C to stop\n";
            }
            say(&banner);
            if console {
                let executor = running.executor().clone();
                let handle = tokio::runtime::Handle::current();
                let prompt = format!("{name}> ");
                std::thread::Builder::new()
                    .name(logging::CONSOLE_THREAD.into())
                    .spawn(move || console::run(executor, prompt, Some(history), handle))
                    .map_err(|e| AppError::Failed(format!("cannot start the console: {e}")))?;
            }
            running.wait_until(signals.recv()).await;
            Ok(())
        })
    }

    /// Checks the schema, opens the database, builds the router and binds the server (and
    /// cloud storage) with `settings`, without a console: for tests and embedding.
    pub async fn start(self, settings: Settings) -> Result<Running, AppError> {
        self.start_with_log(settings, None).await
    }

    async fn start_with_log(
        self,
        settings: Settings,
        log: Option<LogControl>,
    ) -> Result<Running, AppError> {
        let config = server_config(&settings);
        // First, so that an unreachable or misnamed database stops the start before anything
        // else is created or bound.
        let state = config.open_state().await?;
        let schema = SchemaSet::new(
            self.models.clone(),
            settings.schema_dir.clone(),
            settings.database.clone(),
        );
        let check = {
            let schema = schema.clone();
            let apply = settings.apply_schema;
            tokio::task::spawn_blocking(move || schema.check_on_start(apply))
                .await
                .map_err(|e| AppError::Failed(format!("schema check failed: {e}")))??
        };
        match check {
            StartupCheck::Current(v) => tracing::info!(version = v, "database schema is current"),
            StartupCheck::Initialized(v) => {
                tracing::info!(
                    version = v,
                    "new database created at the latest schema version"
                )
            }
            StartupCheck::Applied { from, to } => {
                tracing::info!(from, to, "database schema brought to the latest version")
            }
            StartupCheck::NoModels => {}
        }
        // The same reading of `--database` as the schema check's (`SchemaSet::location`).
        let database = Arc::new(match schema.location() {
            StateLocation::Postgres(url) => AsyncDatabase::connect(&url, DB_POOL_SIZE).await?,
            _ => AsyncDatabase::open(&settings.database, DB_POOL_SIZE).await?,
        });
        let slot = ServerSlot::default();
        let ctx = AppContext {
            settings: settings.clone(),
            database,
            server: slot.clone(),
        };
        let router = match self.router {
            Some(build) => build(&ctx),
            None => Router::new(),
        };
        let (server, storage, storage_server) = match &settings.cloud {
            None => (
                Server::bind_with_state(config, router, StreamServices::new(), state).await?,
                None,
                None,
            ),
            Some(cloud) => {
                // An `s3://bucket/prefix` root keeps the files in an S3-compatible object
                // store, reached and signed for as the AWS_* variables say.
                let mut storage_config = match cloud.root.to_str() {
                    Some(url) if url.starts_with("s3://") => {
                        StorageConfig::object_store(ObjectStoreConfig::from_env(url))
                    }
                    _ => StorageConfig::new(&cloud.root),
                };
                if let Some(hooks) = self.storage_hooks {
                    storage_config = hooks(&ctx, storage_config);
                }
                let service =
                    StorageService::new(storage_config, config.load_secret_key()?, state.clone())?;
                let server = Server::bind_with_state(
                    config.clone(),
                    router,
                    service.stream_services(),
                    state,
                )
                .await?;
                let storage_server = match cloud.port {
                    Some(port) => {
                        let mut own = config;
                        own.listen = std::net::SocketAddr::new(settings.listen.ip(), port);
                        Some(StorageServer::bind(&own, service.clone()).await?)
                    }
                    None => None,
                };
                (server, Some(service), storage_server)
            }
        };
        let _ = slot.0.set(server.clone());
        let executor = Executor::online(
            schema,
            server.clone(),
            storage.clone(),
            log,
            settings.shutdown_grace,
        )
        .named(self.name);
        Ok(Running {
            server,
            storage,
            storage_server,
            executor,
            settings,
            startup: check,
        })
    }
}

/// The server's configuration from the resolved settings.
fn server_config(settings: &Settings) -> ServerConfig {
    let mut limits = ServerLimits::default();
    if let Some(n) = settings.max_connections {
        limits = limits.max_connections(n);
    }
    if let Some(n) = settings.max_message_size {
        limits = limits.max_message_size(n);
    }
    if let Some(n) = settings.max_udp_payload {
        limits = limits.max_udp_payload(n);
    }
    let mut config = ServerConfig::new(settings.listen, &settings.data_dir)
        .tls(settings.tls.clone())
        .limits(limits);
    config.state = settings.state_database.clone();
    config.node_id = settings.node_id.clone();
    config.cluster = settings.cluster.clone();
    config
}

/// Writes `text` to standard output, ignoring a closed or full one: what the server prints
/// is for whoever watches, and its absence must never stop the server.
fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Failed(format!("cannot start the async runtime: {e}")))
}
