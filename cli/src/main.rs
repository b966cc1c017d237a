//! `fluxon`: scaffold applications, generate code, manage schema versions, call servers and
//! use their cloud storage. Every error is one line on standard error with a non-zero status.

// A binary: `pub` marks what modules share, not an API.
#![allow(unreachable_pub)]

mod call;
mod cloud;
mod new;
mod raw;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use fluxon_app::{Executor, SchemaCommand, SchemaSet};

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
    /// Schema versions of the models in .proto files, offline against a database file.
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
    /// Directory of saved schema versions.
    #[arg(long, default_value = "schema", value_name = "DIR")]
    schema_dir: PathBuf,
    /// The application's SQLite database.
    #[arg(long, default_value = "data/app.db", value_name = "FILE")]
    database: PathBuf,
    #[command(subcommand)]
    command: SchemaCommand,
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
            let executor =
                Executor::offline(SchemaSet::new(models, args.schema_dir, args.database));
            let reply = executor.execute(args.command.to_command()).await?;
            println!("{}", reply.text);
            Ok(())
        }
        Cmd::Call(args) => call::run(args).await,
        Cmd::Cloud(args) => cloud::run(args).await,
    }
}
