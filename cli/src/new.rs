//! `fluxon new <dir>`: a complete application that builds and runs as it stands.
//!
//! ```text
//! <dir>/Cargo.toml          package with `<name>-server` and `<name>-client` binaries
//! <dir>/build.rs            fluxon-codegen: messages, routes, client stubs, models, SQL
//! <dir>/proto/<name>.proto  the schema: a User model (authorized user) and a service
//! <dir>/src/lib.rs          the generated code and the service implementation
//! <dir>/src/bin/            the server (fluxon-app: CLI, console, schema checks) and client
//! <dir>/schema/             schema version 1, saved from the models
//! ```
//!
//! Nothing is published on crates.io yet, so the Fluxon dependencies are path dependencies on a
//! checkout of the workspace: `--fluxon-path DIR` or `$FLUXON_PATH`, else the checkout this
//! `fluxon` was built from (recorded at compile time), refused with a hint when it is gone. The
//! checkout's `Cargo.lock` is copied too, so the application builds with the versions Fluxon is
//! tested with.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use clap::Args;
use fluxon_app::SchemaSet;

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Directory to create.
    dir: PathBuf,
    /// Application (and protobuf package) name; default: the directory's name.
    #[arg(long)]
    name: Option<String>,
    /// A checkout of the Fluxon workspace to take the crates from, by path (default: the
    /// checkout this `fluxon` was built from).
    #[arg(long, env = "FLUXON_PATH", value_name = "DIR")]
    fluxon_path: Option<PathBuf>,
}

/// `my-app` → `my_app`, refusing what cannot be a package name.
fn package_name(raw: &str) -> anyhow::Result<String> {
    let name: String = raw
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(name)
    } else {
        Err(anyhow!(
            "`{raw}` cannot be an application name: use letters, digits, `-` and `_`, starting with a letter"
        ))
    }
}

fn upper_camel(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The Fluxon checkout this binary was built from (`cli/..`), as cargo saw it at compile time.
pub const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The Fluxon checkout the application's path dependencies point at: `given` (`--fluxon-path`
/// or `$FLUXON_PATH`), else `built_from`, the checkout this `fluxon` was built from. Either must
/// still be a Fluxon workspace.
pub fn fluxon_checkout(given: Option<&Path>, built_from: &Path) -> anyhow::Result<PathBuf> {
    let is_checkout = |dir: &Path| dir.join("server/app/Cargo.toml").is_file();
    match given {
        Some(dir) => {
            let dir = dir
                .canonicalize()
                .with_context(|| format!("--fluxon-path {}", dir.display()))?;
            if is_checkout(&dir) {
                Ok(dir)
            } else {
                Err(anyhow!(
                    "--fluxon-path {} is not a checkout of the Fluxon workspace (no server/app/Cargo.toml)",
                    dir.display()
                ))
            }
        }
        None => match built_from.canonicalize() {
            Ok(dir) if is_checkout(&dir) => Ok(dir),
            _ => Err(anyhow!(
                "this fluxon was built from {}, which is no longer a Fluxon checkout, and the \
                 Fluxon crates are not on crates.io yet: pass --fluxon-path DIR (or set \
                 FLUXON_PATH) naming a checkout of the Fluxon workspace",
                built_from.display()
            )),
        },
    }
}

fn dependency(krate: &str, rel: &str, root: &Path) -> String {
    format!(
        "{krate} = {{ path = {:?} }}",
        root.join(rel).display().to_string()
    )
}

pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(anyhow!("{} exists and is not empty", dir.display()));
    }
    let raw = match &args.name {
        Some(n) => n.clone(),
        None => dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("give --name: {} has no usable name", dir.display()))?
            .to_owned(),
    };
    let name = package_name(&raw)?;
    let crate_name = name.replace('_', "-");
    let root = fluxon_checkout(args.fluxon_path.as_deref(), Path::new(BUILT_FROM))?;
    let files = scaffold(&name, &crate_name, &root);
    for (rel, text) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The versions the checkout is built and tested with (cargo drops what the app does not use).
    let lock = root.join("Cargo.lock");
    if lock.is_file() {
        std::fs::copy(&lock, dir.join("Cargo.lock"))
            .with_context(|| format!("cannot copy {}", lock.display()))?;
    }
    // Schema version 1 from the models, so the server starts on a new database at once.
    let protos = crate::ProtoArgs {
        protos: vec![dir.join(format!("proto/{name}.proto"))],
        includes: vec![dir.join("proto")],
    };
    let models = protos.generate()?.models.into_values().flatten().collect();
    // `save` writes the schema directory only: the database is created by the server.
    SchemaSet::new(
        models,
        dir.join("schema"),
        dir.join(format!("data/{crate_name}.db")),
    )
    .save(Some("initial"), false)?;
    println!("created {crate_name} in {}", dir.display());
    println!(
        "  cd {} && cargo run --bin {crate_name}-server",
        dir.display()
    );
    println!("  cargo run --bin {crate_name}-client   # in another terminal");
    Ok(())
}

/// Every file of the scaffold, by path relative to the application's directory.
pub fn scaffold(name: &str, crate_name: &str, root: &Path) -> Vec<(String, String)> {
    let svc = upper_camel(name);
    let deps = [
        ("fluxon-app", "server/app"),
        ("fluxon-server", "server/runtime"),
        ("fluxon-client", "client-sdk"),
        ("fluxon-db", "server/db"),
        ("fluxon-codegen", "codegen"),
    ]
    .map(|(k, rel)| dependency(k, rel, root))
    .join("\n");
    let codegen = dependency("fluxon-codegen", "codegen", root);
    let cargo = format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2021"
publish = false

# A workspace of its own, even inside another checkout.
[workspace]

# The Fluxon crates are not on crates.io yet: they come by path from a checkout of the Fluxon
# workspace, the one `fluxon new` was given with --fluxon-path (or $FLUXON_PATH), else the one
# the `fluxon` command itself was built from. Its Cargo.lock was copied here so the versions are
# the ones Fluxon is tested with. To move to another checkout, change these paths.

[dependencies]
{deps}
prost = "0.14"
prost-types = "0.14"
tokio = {{ version = "1", features = ["rt-multi-thread", "macros"] }}
clap = {{ version = "4", features = ["derive"] }}

[build-dependencies]
{codegen}

# Debug builds keep line tables (a backtrace still names file and line) but not full debug
# info, and dependencies none: builds are quicker and a tenth of the size on disk. Delete
# these lines to step through the code in a debugger.
[profile.dev]
debug = "line-tables-only"

[profile.dev.package."*"]
debug = false

# Password hashing is 10x slower unoptimized; sign-ups and logins stay quick in debug builds.
[profile.dev.package.argon2]
opt-level = 3

[profile.dev.package.blake2]
opt-level = 3
"#
    );
    let build = r#"//! Generates the messages, routes, client stubs, models and SQL from `proto/`.

fn main() -> Result<(), fluxon_codegen::Error> {
    fluxon_codegen::configure().compile(&["proto/@NAME@.proto"], &["proto"])?;
    Ok(())
}
"#
    .replace("@NAME@", name);
    let proto =
        r#"// The @NAME@ application's schema: models (tables) and the service clients call.
syntax = "proto3";

package @NAME@;

import "fluxon/options.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/timestamp.proto";

// An account. Passwords are stored as argon2id hashes by the database layer.
message User {
  option (fluxon.model) = { authorized_user: true };

  string username = 1 [(fluxon.field) = { max_length: 100, unique: true }];
  string password = 2 [(fluxon.field) = { password: true }];
  google.protobuf.Timestamp created_at = 3 [(fluxon.field) = { auto_now_add: true }];
}

message Credentials {
  string username = 1;
  string password = 2;
}

message UserReply {
  int64 user_id = 1;
  string username = 2;
}

service @SVC@ {
  // Creates an account and logs the session in.
  rpc Signup(Credentials) returns (UserReply);
  // Logs the session in.
  rpc Login(Credentials) returns (UserReply);
  // Who is logged in.
  rpc Me(google.protobuf.Empty) returns (UserReply) {
    option (fluxon.method) = { requires_login: true, idempotent: true };
  }
}
"#
        .replace("@NAME@", name)
        .replace("@SVC@", &svc);
    let lib =
        r#"//! The @NAME@ application: the code generated from `proto/@NAME@.proto` and the service.

use fluxon_db::{AsyncDatabase, Password};
use fluxon_server::{Request, Router, Status};

/// Everything generated for package `@NAME@`.
#[allow(missing_docs, clippy::all)]
pub mod @NAME@ {
    fluxon_codegen::include_schema!("@NAME@");
}

use @NAME@::models::User;
use @NAME@::{Credentials, UserReply};

/// The service, over the application database.
///
/// Database errors become statuses with `?` (`impl From<fluxon_db::Error> for Status`): a
/// unique violation is `already_exists`, a foreign key violation `failed_precondition`, a NOT
/// NULL or CHECK violation `invalid_argument`, a missing row `not_found`; a busy database is
/// `unavailable` and anything else `internal`, logged here without reaching the client.
#[derive(Debug, Clone)]
pub struct Service {
    db: std::sync::Arc<AsyncDatabase>,
}

impl Service {
    /// The service over `db`.
    pub fn new(db: std::sync::Arc<AsyncDatabase>) -> Self {
        Self { db }
    }

    /// Its routes, plus the schema reflection route `fluxon call` uses.
    pub fn router(self) -> Router {
        @NAME@::@SVC@Server::new(self)
            .into_router()
            .merge(@NAME@::reflection_router())
    }
}

impl @NAME@::@SVC@ for Service {
    async fn signup(&self, request: Request<Credentials>) -> Result<UserReply, Status> {
        if request.username.trim().is_empty() || request.password.len() < 8 {
            return Err(Status::invalid_argument(
                "a username and a password of at least 8 characters are required",
            ));
        }
        let user = User {
            username: request.username.clone(),
            password: Password::new(request.password.clone()),
            ..User::default()
        };
        let user_id = self.db.insert(user).await?;
        request.login(user_id).await?;
        Ok(UserReply { user_id, username: request.username.clone() })
    }

    async fn login(&self, request: Request<Credentials>) -> Result<UserReply, Status> {
        let found = self
            .db
            .verify_password(User::USERNAME.eq(request.username.as_str()), request.password.clone())
            .await?;
        let user_id = found.ok_or_else(|| Status::unauthenticated("wrong username or password"))?;
        request.login(user_id).await?;
        Ok(UserReply { user_id, username: request.username.clone() })
    }

    async fn me(&self, request: Request<()>) -> Result<UserReply, Status> {
        let user_id = request.require_user()?;
        let user: User = self
            .db
            .get(user_id)
            .await?
            .ok_or_else(|| Status::not_found("the user no longer exists"))?;
        Ok(UserReply { user_id, username: user.username })
    }
}
"#
        .replace("@NAME@", name)
        .replace("@SVC@", &svc);
    let server = r#"//! The @NAME@ server: `cargo run --bin @CRATE@-server -- --help`.

fn main() -> std::process::ExitCode {
    fluxon_app::App::new("@CRATE@")
        .models(@NAME@::@NAME@::models::all())
        .schema_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schema"))
        .router_with(|ctx| @NAME@::Service::new(ctx.database()).router())
        .run()
}
"#
    .replace("@CRATE@", crate_name)
    .replace("@NAME@", name);
    let client = r#"//! The @NAME@ client: signs up (or logs in) and asks who it is.

use clap::Parser;
use fluxon_client::{ClientConfig, Connection, Trust};
use @NAME@::@NAME@::{Credentials, @SVC@Client};

/// Runs the @NAME@ demo flow against a server.
#[derive(Debug, Parser)]
struct Args {
    /// The server.
    #[arg(long, default_value = "127.0.0.1:7443")]
    addr: std::net::SocketAddr,
    /// The server's data directory (for its development certificate).
    #[arg(long, default_value = "data")]
    data_dir: std::path::PathBuf,
    /// Username.
    #[arg(long, default_value = "alice")]
    username: String,
    /// Password.
    #[arg(long, default_value = "correct horse battery")]
    password: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let trust = Trust::CertificateFile(args.data_dir.join("dev-cert.pem"));
    let conn = Connection::connect(args.addr, ClientConfig::new(trust)).await?;
    let client = @SVC@Client::new(conn);
    let creds = Credentials { username: args.username, password: args.password };
    let user = match client.signup(creds.clone()).await {
        Ok(user) => user,
        Err(_) => client.login(creds).await?,
    };
    println!("logged in as {} (user {})", user.username, user.user_id);
    let me = client.me(()).await?;
    println!("me: {} (user {})", me.username, me.user_id);
    Ok(())
}
"#
    .replace("@NAME@", name)
    .replace("@SVC@", &svc);
    let gitignore = "/target\n/data\n".to_owned();
    vec![
        ("Cargo.toml".into(), cargo),
        ("build.rs".into(), build),
        (format!("proto/{name}.proto"), proto),
        ("src/lib.rs".into(), lib),
        (format!("src/bin/{crate_name}-server.rs"), server),
        (format!("src/bin/{crate_name}-client.rs"), client),
        (".gitignore".into(), gitignore),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(package_name("My-App").unwrap(), "my_app");
        assert!(package_name("1app").is_err());
        assert!(package_name("a b").is_err());
        assert_eq!(upper_camel("my_app"), "MyApp");
    }

    #[test]
    fn the_checkout_defaults_to_the_one_fluxon_was_built_from() {
        let built_from = Path::new(BUILT_FROM);
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .canonicalize()
            .unwrap();
        assert_eq!(fluxon_checkout(None, built_from).unwrap(), workspace);
        // --fluxon-path wins, and must be a checkout.
        assert_eq!(
            fluxon_checkout(Some(&workspace.join("cli/..")), Path::new("/nowhere")).unwrap(),
            workspace
        );
        let empty = tempfile::tempdir().unwrap();
        let err = fluxon_checkout(Some(empty.path()), built_from).unwrap_err();
        assert!(
            err.to_string()
                .contains("is not a checkout of the Fluxon workspace"),
            "{err}"
        );
        // The checkout it was built from is gone: one clear line naming the way out.
        let gone = empty.path().join("fluxon/cli/..");
        let err = fluxon_checkout(None, &gone).unwrap_err().to_string();
        assert!(err.contains("no longer a Fluxon checkout"), "{err}");
        assert!(err.contains("pass --fluxon-path DIR"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[test]
    fn the_scaffold_depends_on_the_checkout_by_path() {
        let root = Path::new("/src/fluxon");
        let files = scaffold("my_app", "my-app", root);
        let cargo = &files.iter().find(|(p, _)| p == "Cargo.toml").unwrap().1;
        assert!(
            cargo.contains(r#"fluxon-app = { path = "/src/fluxon/server/app" }"#),
            "{cargo}"
        );
        assert!(!cargo.contains("\"0.1\""), "no crates.io version: {cargo}");
        assert!(cargo.contains("not on crates.io yet"), "{cargo}");
    }

    /// The scaffold's handlers turn database errors into statuses with fluxon-db's
    /// `From<Error> for Status` (a foreign key violation is `failed_precondition`, as
    /// server/db/README.md says), not with a mapping of their own that falls back to `internal`.
    #[test]
    fn the_scaffold_maps_database_errors_as_fluxon_db_does() {
        let files = scaffold("my_app", "my-app", Path::new("/src/fluxon"));
        let lib = &files.iter().find(|(p, _)| p == "src/lib.rs").unwrap().1;
        assert!(!lib.contains("Status::internal"), "{lib}");
        assert!(!lib.contains("ErrorKind"), "{lib}");
        assert!(
            lib.contains("foreign key violation `failed_precondition`"),
            "{lib}"
        );
        assert!(lib.contains(".insert(user).await?;"), "{lib}");
    }
}
