//! The server binary's command line and configuration file, resolved into [`Settings`].
//!
//! Precedence, highest first: a flag, its environment variable (`FLUXON_PORT`, ...), the
//! `--config` TOML file, the application's defaults. Relative paths are relative to the
//! working directory.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fluxon_server::{ClusterConfig, StateLocation, TlsSource};
use serde::Deserialize;

use crate::error::AppError;

/// The command line of an application's server binary.
#[derive(Debug, Parser)]
#[command(args_conflicts_with_subcommands = true, disable_version_flag = true)]
pub struct Cli {
    /// What to do (default: `serve`).
    #[command(subcommand)]
    pub command: Option<Sub>,
    /// Options of `serve` when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands of an application's server binary.
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Run the server (the default), with the interactive console on a terminal.
    Serve(ServeArgs),
    /// Manage the schema versions of the application's compiled-in models, offline.
    Schema {
        /// Where the schema directory and database are.
        #[command(flatten)]
        common: CommonArgs,
        /// The schema command.
        #[command(subcommand)]
        command: SchemaCommand,
    },
}

/// Schema commands of the server binary (and of `fluxon schema`).
#[derive(Debug, Clone, Subcommand)]
pub enum SchemaCommand {
    /// Save the models as the next version.
    Save {
        /// Name of the version.
        name: Option<String>,
        /// Allow dropping tables and columns.
        #[arg(long)]
        allow_destructive: bool,
    },
    /// List the saved versions; * marks the database's.
    List,
    /// Show what `save` would write now.
    Diff,
    /// The database's version and history.
    Status,
    /// Bring the database to version N (forward or back).
    Apply {
        /// Target version.
        version: u32,
    },
}

impl SchemaCommand {
    /// The console command doing the same.
    pub fn to_command(&self) -> crate::Command {
        use crate::Command;
        match self.clone() {
            Self::Save {
                name,
                allow_destructive,
            } => Command::SaveSchema {
                name,
                allow_destructive,
            },
            Self::List => Command::Schemas,
            Self::Diff => Command::SchemaDiff,
            Self::Status => Command::SchemaStatus,
            Self::Apply { version } => Command::UpdateSchema { version },
        }
    }

    /// Whether the command reads or writes the database (`save` and `diff` only compare the
    /// models with the schema directory).
    pub fn needs_database(&self) -> bool {
        matches!(self, Self::List | Self::Status | Self::Apply { .. })
    }
}

/// Options shared by `serve` and `schema`.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// TOML configuration file (keys as the long flags, with `_`: `port = 7443`).
    #[arg(long, env = "FLUXON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the databases, secret key, development certificate and cloud root.
    #[arg(long, env = "FLUXON_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of saved schema versions.
    #[arg(long, env = "FLUXON_SCHEMA_DIR", value_name = "DIR")]
    pub schema_dir: Option<PathBuf>,
    /// The application's database: a SQLite file (default: `<data-dir>/<app name>.db`) or a
    /// `postgres://` URL.
    #[arg(long, env = "FLUXON_DATABASE", value_name = "FILE|URL")]
    pub database: Option<PathBuf>,
}

/// Options of `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Configuration and data locations.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Host name or address to listen on.
    #[arg(long, env = "FLUXON_HOST")]
    pub host: Option<String>,
    /// UDP port to listen on (0: any free port).
    #[arg(long, env = "FLUXON_PORT")]
    pub port: Option<u16>,
    /// Certificate chain (PEM); with --key, replaces the development certificate.
    #[arg(long, env = "FLUXON_CERT", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, env = "FLUXON_KEY", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Also serve cloud storage on its own UDP port.
    #[arg(long, env = "FLUXON_CLOUD_PORT")]
    pub cloud_port: Option<u16>,
    /// Root directory of cloud storage (default: `<data-dir>/cloud`), or `s3://bucket/prefix`
    /// for an S3-compatible object store configured by the AWS_* variables.
    #[arg(long, env = "FLUXON_CLOUD_ROOT", value_name = "DIR")]
    pub cloud_root: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or tracing directives (a RUST_LOG that is
    /// set and not empty wins).
    #[arg(long, env = "FLUXON_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Do not start the interactive console (it only starts on a terminal anyway).
    #[arg(long, env = "FLUXON_NO_CONSOLE")]
    pub no_console: bool,
    /// Apply the latest schema version to the database when it is at another one.
    #[arg(long, env = "FLUXON_APPLY_SCHEMA")]
    pub apply_schema: bool,
    /// Where sessions, used grants and presence are kept: a SQLite file or a `postgres://`
    /// URL that every node of a deployment shares (default: `<data-dir>/fluxon.db`).
    #[arg(long, env = "FLUXON_STATE_DATABASE", value_name = "FILE|URL")]
    pub state_database: Option<String>,
    /// This node's name in presence records (default: a random name at each start).
    #[arg(long, env = "FLUXON_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,
    /// Join a cluster linked by this NATS server (`nats://host:4222`): reverse calls reach a
    /// user's devices on every node. The nodes share `--state-database` (PostgreSQL) and the
    /// secret key, and each has its own `--node-id`.
    #[arg(long, env = "FLUXON_NATS", value_name = "URL")]
    pub nats: Option<String>,
    /// The first token of the cluster's NATS subjects, so that deployments can share a NATS
    /// server (default `fluxon`).
    #[arg(
        long,
        env = "FLUXON_CLUSTER_PREFIX",
        value_name = "NAME",
        requires = "nats"
    )]
    pub cluster_prefix: Option<String>,
}

/// The `--config` file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// As `--host`.
    pub host: Option<String>,
    /// As `--port`.
    pub port: Option<u16>,
    /// As `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// As `--schema-dir`.
    pub schema_dir: Option<PathBuf>,
    /// As `--database`.
    pub database: Option<PathBuf>,
    /// As `--cert`.
    pub cert: Option<PathBuf>,
    /// As `--key`.
    pub key: Option<PathBuf>,
    /// As `--cloud-port`.
    pub cloud_port: Option<u16>,
    /// As `--cloud-root`.
    pub cloud_root: Option<PathBuf>,
    /// As `--log-level`.
    pub log_level: Option<String>,
    /// `false` as `--no-console`.
    pub console: Option<bool>,
    /// As `--apply-schema`.
    pub apply_schema: Option<bool>,
    /// As `--state-database`.
    pub state_database: Option<String>,
    /// As `--node-id`.
    pub node_id: Option<String>,
    /// As `--nats`.
    pub nats: Option<String>,
    /// As `--cluster-prefix`.
    pub cluster_prefix: Option<String>,
    /// Seconds calls in flight get to finish on shutdown.
    pub shutdown_grace_secs: Option<u64>,
    /// Connections held at once.
    pub max_connections: Option<usize>,
    /// Largest call payload, in bytes.
    pub max_message_size: Option<usize>,
    /// Largest QUIC datagram sent and accepted, in bytes (default 1452, at most 6500; raise it
    /// only where the network carries larger datagrams, and on the clients too).
    pub max_udp_payload: Option<u16>,
}

impl FileConfig {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, AppError> {
        let text = std::fs::read_to_string(path).map_err(|e| AppError::io(path, e))?;
        toml::from_str(&text)
            .map_err(|e| AppError::Config(format!("{}: {}", path.display(), e.message())))
    }
}

/// Defaults an application gives its server (before the file, environment and flags).
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Host to listen on.
    pub host: String,
    /// Port to listen on.
    pub port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Schema directory.
    pub schema_dir: PathBuf,
    /// File name of the application database inside the data directory (`<app name>.db` for
    /// an [`App`](crate::App), so several applications can share one data directory).
    pub database_file: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: fluxon_server::DEFAULT_PORT,
            data_dir: PathBuf::from("data"),
            schema_dir: PathBuf::from("schema"),
            database_file: "app.db".into(),
        }
    }
}

/// Cloud storage settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudSettings {
    /// The storage root.
    pub root: PathBuf,
    /// A port of its own for a storage-only endpoint, besides the main endpoint.
    pub port: Option<u16>,
}

/// Everything the server runs with, resolved from flags, environment, file and defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Schema directory.
    pub schema_dir: PathBuf,
    /// The application's database file.
    pub database: PathBuf,
    /// Certificate source.
    pub tls: TlsSource,
    /// Cloud storage, when the application serves it.
    pub cloud: Option<CloudSettings>,
    /// Log filter.
    pub log_level: String,
    /// Start the console (when stdin is a terminal).
    pub console: bool,
    /// Apply the latest schema version when the database is at another.
    pub apply_schema: bool,
    /// Where sessions, used grants and presence are kept (`None`: `<data-dir>/fluxon.db`).
    pub state_database: Option<StateLocation>,
    /// This node's name in presence records (`None`: random at each start).
    pub node_id: Option<String>,
    /// The cluster this node joins (`None`: a single node).
    pub cluster: Option<ClusterConfig>,
    /// Grace period of a shutdown.
    pub shutdown_grace: Duration,
    /// Connections held at once.
    pub max_connections: Option<usize>,
    /// Largest call payload.
    pub max_message_size: Option<usize>,
    /// Largest QUIC datagram.
    pub max_udp_payload: Option<u16>,
}

impl Settings {
    /// Settings for tests and embedding: `data_dir` for everything, listening on
    /// 127.0.0.1 port 0, no console, schema directory `schema_dir`.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>, schema_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database: data_dir.join("app.db"),
            schema_dir: schema_dir.into(),
            tls: TlsSource::default(),
            cloud: None,
            log_level: "info".into(),
            console: false,
            apply_schema: false,
            state_database: None,
            node_id: None,
            cluster: None,
            shutdown_grace: Duration::from_secs(10),
            max_connections: None,
            max_message_size: None,
            max_udp_payload: None,
            data_dir,
        }
    }

    /// Resolves `serve`'s flags over the `--config` file over `defaults`.
    pub fn resolve(args: &ServeArgs, defaults: &Defaults, cloud: bool) -> Result<Self, AppError> {
        let file = match &args.common.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let (data_dir, schema_dir, database) = locations(&args.common, &file, defaults);
        let host = args
            .host
            .clone()
            .or(file.host.clone())
            .unwrap_or_else(|| defaults.host.clone());
        let port = args.port.or(file.port).unwrap_or(defaults.port);
        let listen = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| AppError::Config(format!("cannot resolve host `{host}`: {e}")))?
            .next()
            .ok_or_else(|| AppError::Config(format!("host `{host}` has no address")))?;
        let tls = match (
            args.cert.clone().or(file.cert.clone()),
            args.key.clone().or(file.key.clone()),
        ) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (None, None) => TlsSource::default(),
            _ => return Err(AppError::Config(
                "give both a certificate and its key, or neither for the development certificate"
                    .into(),
            )),
        };
        let cloud_port = args.cloud_port.or(file.cloud_port);
        let cloud_root = args.cloud_root.clone().or(file.cloud_root.clone());
        if !cloud && (cloud_port.is_some() || cloud_root.is_some()) {
            return Err(AppError::Config(
                "this application does not serve cloud storage (--cloud-port, --cloud-root)".into(),
            ));
        }
        Ok(Self {
            listen,
            cloud: cloud.then(|| CloudSettings {
                root: cloud_root.unwrap_or_else(|| data_dir.join("cloud")),
                port: cloud_port,
            }),
            log_level: args
                .log_level
                .clone()
                .or(file.log_level.clone())
                .unwrap_or_else(|| "info".into()),
            console: !args.no_console && file.console.unwrap_or(true),
            apply_schema: args.apply_schema || file.apply_schema.unwrap_or(false),
            state_database: args
                .state_database
                .as_deref()
                .or(file.state_database.as_deref())
                .map(StateLocation::parse),
            node_id: args.node_id.clone().or(file.node_id.clone()),
            cluster: args.nats.clone().or(file.nats.clone()).map(|url| {
                let cluster = ClusterConfig::nats(url);
                match args.cluster_prefix.clone().or(file.cluster_prefix.clone()) {
                    Some(prefix) => cluster.subject_prefix(prefix),
                    None => cluster,
                }
            }),
            shutdown_grace: Duration::from_secs(file.shutdown_grace_secs.unwrap_or(10)),
            max_connections: file.max_connections,
            max_message_size: file.max_message_size,
            max_udp_payload: file.max_udp_payload,
            tls,
            data_dir,
            schema_dir,
            database,
        })
    }
}

/// Where an application's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The directory of saved schema versions.
    pub schema_dir: PathBuf,
    /// The application's SQLite database.
    pub database: PathBuf,
}

impl CommonArgs {
    /// The data directory, schema directory and application database from these flags, the
    /// `--config` file `file` and `defaults`, as `serve` and `schema` resolve them (a
    /// PostgreSQL URL as the database is refused).
    pub fn locations(&self, file: &FileConfig, defaults: &Defaults) -> Result<Locations, AppError> {
        let (data_dir, schema_dir, database) = locations(self, file, defaults);
        Ok(Locations {
            data_dir,
            schema_dir,
            database,
        })
    }
}

/// The data directory, schema directory and database from flags, file and defaults.
pub(crate) fn locations(
    args: &CommonArgs,
    file: &FileConfig,
    defaults: &Defaults,
) -> (PathBuf, PathBuf, PathBuf) {
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .unwrap_or_else(|| defaults.data_dir.clone());
    let schema_dir = args
        .schema_dir
        .clone()
        .or(file.schema_dir.clone())
        .unwrap_or_else(|| defaults.schema_dir.clone());
    let database = args
        .database
        .clone()
        .or(file.database.clone())
        .unwrap_or_else(|| data_dir.join(&defaults.database_file));
    (data_dir, schema_dir, database)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("app").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn no_flags_gives_the_embedded_defaults() {
        let cli = parse(&[]);
        assert!(cli.command.is_none());
        let s = Settings::resolve(&cli.serve, &Defaults::default(), true).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7443".parse().unwrap());
        assert_eq!(s.data_dir, PathBuf::from("data"));
        assert_eq!(s.database, PathBuf::from("data/app.db"));
        assert_eq!(s.tls, TlsSource::default());
        assert_eq!(
            s.cloud,
            Some(CloudSettings {
                root: "data/cloud".into(),
                port: None
            })
        );
        assert!(s.console);
        assert!(!s.apply_schema);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("server.toml");
        std::fs::write(
            &config,
            "port = 9000\nhost = \"127.0.0.1\"\ndata_dir = \"/srv/app\"\nconsole = false\nlog_level = \"debug\"\nmax_udp_payload = 4096\n",
        )
        .unwrap();
        let c = config.to_str().unwrap();
        let cli = parse(&["serve", "--config", c, "--port", "9001"]);
        let Some(Sub::Serve(args)) = cli.command else {
            panic!("serve expected")
        };
        let s = Settings::resolve(&args, &Defaults::default(), false).unwrap();
        assert_eq!(s.listen.port(), 9001);
        assert_eq!(s.data_dir, PathBuf::from("/srv/app"));
        assert_eq!(s.database, PathBuf::from("/srv/app/app.db"));
        assert_eq!(s.log_level, "debug");
        assert!(!s.console);
        assert_eq!(s.cloud, None);
        assert_eq!(s.max_udp_payload, Some(4096));
    }

    #[test]
    fn a_node_joins_a_cluster_from_flags_or_the_file() {
        let cli = parse(&[
            "--nats",
            "nats://127.0.0.1:4222",
            "--cluster-prefix",
            "shop",
            "--node-id",
            "n2",
        ]);
        let s = Settings::resolve(&cli.serve, &Defaults::default(), false).unwrap();
        assert_eq!(
            s.cluster,
            Some(ClusterConfig::nats("nats://127.0.0.1:4222").subject_prefix("shop"))
        );
        assert_eq!(s.node_id.as_deref(), Some("n2"));

        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("node.toml");
        std::fs::write(&config, "nats = \"nats://10.0.0.5:4222\"\n").unwrap();
        let cli = parse(&["--config", config.to_str().unwrap()]);
        let s = Settings::resolve(&cli.serve, &Defaults::default(), false).unwrap();
        let cluster = s.cluster.expect("the file names a NATS server");
        assert_eq!(cluster.nats_url, "nats://10.0.0.5:4222");
        assert_eq!(cluster.subject_prefix, "fluxon");
        // A single node by default; a prefix without a NATS server is refused.
        let s = Settings::resolve(&parse(&[]).serve, &Defaults::default(), false).unwrap();
        assert_eq!(s.cluster, None);
        assert!(Cli::try_parse_from(["app", "--cluster-prefix", "x"]).is_err());
    }

    #[test]
    fn bad_configurations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, "prot = 1\n").unwrap();
        let cli = parse(&["--config", config.to_str().unwrap()]);
        let e = Settings::resolve(&cli.serve, &Defaults::default(), false).unwrap_err();
        assert!(e.to_string().contains("unknown field `prot`"), "{e}");
        let cli = parse(&["--cloud-port", "9"]);
        assert!(Settings::resolve(&cli.serve, &Defaults::default(), false).is_err());
        assert!(Cli::try_parse_from(["app", "--cert", "c.pem"]).is_err());
    }

    #[test]
    fn schema_subcommands_parse() {
        let cli = parse(&["schema", "--schema-dir", "s", "apply", "2"]);
        let Some(Sub::Schema { common, command }) = cli.command else {
            panic!("schema expected")
        };
        assert_eq!(common.schema_dir, Some(PathBuf::from("s")));
        assert_eq!(
            command.to_command(),
            crate::Command::UpdateSchema { version: 2 }
        );
    }
}
