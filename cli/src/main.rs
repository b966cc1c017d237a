//! `fluxon`: scaffold applications, generate code, manage schema versions, call servers and
//! use their cloud storage. Every error is one line on standard error with a non-zero status.

// A binary: `pub` marks what modules share, not an API.
#![allow(unreachable_pub)]

mod call;
mod cloud;
mod new;
mod raw;
mod session;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use fluxon_app::{CommonArgs, Defaults, Executor, FileConfig, SchemaCommand, SchemaSet};

/// Fluxon's command-line tool.
#[derive(Debug, Parser)]
#[command(
    name = "fluxon",
    version,
    about = "Fluxon's command-line tool: scaffold, generate, migrate, call"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Scaffold an application (schema, build.rs, server and client) in a new directory.
    New(new::NewArgs),
    /// Generate Rust and SQL from .proto files into a directory.
    Gen(GenArgs),
    /// Schema versions of the models in .proto files, offline against the application's
    /// database (`<data-dir>/<package name>.db` in a `fluxon new` application's folder).
    Schema(SchemaArgs),
    /// Call a route with a JSON request, printing the JSON reply.
    Call(call::CallArgs),
    /// Cloud storage: ask the application for a grant, then transfer.
    Cloud(cloud::CloudArgs),
}

/// Where the .proto files are.
#[derive(Debug, Clone, Args)]
pub struct ProtoArgs {
    /// The .proto files.
    #[arg(long = "proto", value_name = "FILE", required = true)]
    pub protos: Vec<PathBuf>,
    /// Include directories for imports (default: each file's directory).
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    pub includes: Vec<PathBuf>,
}

impl ProtoArgs {
    /// The include directories, defaulting to the files' own directories.
    pub fn include_dirs(&self) -> Vec<PathBuf> {
        if !self.includes.is_empty() {
            return self.includes.clone();
        }
        let mut dirs: Vec<PathBuf> = self
            .protos
            .iter()
            .map(|p| match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.dedup();
        dirs
    }

    /// Parses the files with fluxon-codegen (Fluxon's options understood).
    pub fn generate(&self) -> anyhow::Result<fluxon_codegen::Generated> {
        fluxon_codegen::configure()
            .generate(&self.protos, &self.include_dirs())
            .map_err(|e| anyhow::anyhow!("{}", one_line(&e.to_string())))
    }
}

#[derive(Debug, Args)]
struct GenArgs {
    #[command(flatten)]
    protos: ProtoArgs,
    /// Directory for the generated Rust files.
    #[arg(long, short, value_name = "DIR")]
    out: PathBuf,
    /// Directory for the SQL files (default: --out).
    #[arg(long, value_name = "DIR")]
    sql_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SchemaArgs {
    #[command(flatten)]
    protos: ProtoArgs,
    /// Where the schema directory and database are, as for the application's own `schema`
    /// subcommand.
    #[command(flatten)]
    common: CommonArgs,
    /// The application's name as its server is named (`fluxon_app::App::new`), which names its
    /// database `<data-dir>/<app>.db` (default: the package name in ./Cargo.toml, as `fluxon
    /// new` names the server).
    #[arg(long, value_name = "NAME")]
    app: Option<String>,
    #[command(subcommand)]
    command: SchemaCommand,
}

impl SchemaArgs {
    /// The schema set the command works on: the database from `--database`, the `--config`
    /// file or the application's name (`--app`, else ./Cargo.toml's package), as the
    /// application's server resolves it. Refused when none of them names it and the command
    /// uses the database.
    fn schema_set(&self, models: Vec<fluxon_db::schema::ModelMeta>) -> anyhow::Result<SchemaSet> {
        let file = match &self.common.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let named = self.common.database.is_some() || file.database.is_some();
        let app = match &self.app {
            Some(app) => Some(app.clone()),
            None if named || !self.command.needs_database() => None,
            None => Some(cargo_package(Path::new("Cargo.toml"))?.ok_or_else(|| {
                anyhow::anyhow!(
                    "which database? no Cargo.toml with a package name here: run in the \
                     application's folder, or give --app NAME (database <data-dir>/NAME.db) or \
                     --database FILE"
                )
            })?),
        };
        let mut defaults = Defaults::default();
        if let Some(app) = app {
            defaults.database_file = format!("{app}.db");
        }
        let at = self.common.locations(&file, &defaults)?;
        Ok(SchemaSet::new(models, at.schema_dir, at.database))
    }
}

/// The package name in the Cargo manifest at `path` (`None` when there is no such file or it
/// has no `[package]`, as a workspace's).
fn cargo_package(path: &Path) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let manifest: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    Ok(manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned))
}

/// Joins a multi-line message into one line.
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fluxon: error: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::New(args) => new::run(&args),
        Cmd::Gen(args) => {
            let generated = args.protos.generate()?;
            let sql = args.sql_out.as_ref().unwrap_or(&args.out);
            generated
                .write(&args.out, sql)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for f in &generated.rust {
                println!("{}", args.out.join(&f.name).display());
            }
            for f in &generated.sql {
                println!("{}", sql.join(&f.name).display());
            }
            Ok(())
        }
        Cmd::Schema(args) => {
            let generated = args.protos.generate()?;
            let models = generated.models.into_values().flatten().collect();
            let executor = Executor::offline(args.schema_set(models)?);
            let reply = executor.execute(args.command.to_command()).await?;
            println!("{}", reply.text);
            Ok(())
        }
        Cmd::Call(args) => call::run(args).await,
        Cmd::Cloud(args) => cloud::run(args).await,
    }
}
