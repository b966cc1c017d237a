//! The command layer shared by the interactive console and the CLI's subcommands: a
//! [`Command`] parsed from one line, run by an [`Executor`] that returns text.
//!
//! Parsing is pure; execution touches the schema directory, the database and (when there is
//! one) the running server. The offline CLI runs the same executor without a server, so the
//! commands that need one (`routes`, `sessions`, `kick`, `stats`, `shutdown`) say so.
//!
//! Schema changes are made offline, with the server stopped (`<app> schema save NAME`,
//! `<app> schema apply N`): a running server only accepts `updateschema` to the version its
//! compiled models match, and has no `saveschema` (it only starts when its models are the
//! latest saved version, so there is never anything to save).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fluxon_server::{Server, SessionHandle};
use fluxon_storage::StorageService;

use crate::error::AppError;
use crate::logging::LogControl;
use crate::schema::SchemaSet;

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `help [command]`: lists the commands, or explains one.
    Help(Option<String>),
    /// `schema save [name] [--allow-destructive]` (offline only, not a console command):
    /// saves the compiled models as the next schema version.
    SaveSchema {
        /// Name of the version (`schema` when not given).
        name: Option<String>,
        /// Allow dropping tables and columns.
        allow_destructive: bool,
    },
    /// `updateschema N` (`schema apply N` offline): brings the database to version N, forward
    /// or back. A running server refuses any version but the one its models match.
    UpdateSchema {
        /// Target version.
        version: u32,
    },
    /// `schemas`: the saved versions, the database's marked.
    Schemas,
    /// `schemadiff`: what `schema save` would write now.
    SchemaDiff,
    /// `schemastatus`: the database's version, history and whether it is current.
    SchemaStatus,
    /// `routes`: the routes served, with their options.
    Routes,
    /// `sessions`: the live sessions (id, user, peer, age, calls in flight).
    Sessions,
    /// `kick <session>`: ends a session (id or unique prefix) and closes its connection.
    Kick {
        /// The session id or a unique prefix of at least 4 digits.
        session: String,
    },
    /// `stats`: calls per route, errors, p50/p99 latency, bytes transferred and stored.
    Stats,
    /// `loglevel <filter>`: changes the log filter (`debug`, `info,fluxon_server=trace`, ...).
    LogLevel {
        /// A tracing filter directive.
        filter: String,
    },
    /// `shutdown`: stops accepting calls, lets calls in flight finish, stops.
    Shutdown,
}

/// Name, usage and one-line description of every command, in help order.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "help",
        "help [command]",
        "list the commands, or explain one",
    ),
    (
        "updateschema",
        "updateschema N",
        "bring the database to schema version N: only the one the running models match",
    ),
    (
        "schemas",
        "schemas",
        "list the saved schema versions; * marks the database's",
    ),
    (
        "schemadiff",
        "schemadiff",
        "show what `schema save` would write now",
    ),
    (
        "schemastatus",
        "schemastatus",
        "the database's schema version and history",
    ),
    ("routes", "routes", "the routes served, with their options"),
    (
        "sessions",
        "sessions",
        "live sessions: id, user, peer, age, calls in flight",
    ),
    (
        "kick",
        "kick <session>",
        "end a session (id or unique prefix) and close its connection",
    ),
    (
        "stats",
        "stats",
        "calls per route, errors, p50/p99 latency, bytes transferred and stored",
    ),
    (
        "loglevel",
        "loglevel <filter>",
        "change the log filter: error, warn, info, debug, trace, or directives",
    ),
    (
        "shutdown",
        "shutdown",
        "stop gracefully: let calls in flight finish, then exit",
    ),
];

/// Where schema changes are made, for the console's help and refusals.
const OFFLINE_SCHEMA: &str = "schema versions are saved, and the database moved to another \
     version, offline with the server stopped: `<app> schema save NAME`, `<app> schema apply N`";

/// Log levels offered by completion.
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

impl Command {
    /// Parses one console line. `Ok(None)` for a blank line.
    pub fn parse(line: &str) -> Result<Option<Self>, AppError> {
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else {
            return Ok(None);
        };
        let args: Vec<&str> = words.collect();
        let usage = |name: &str| {
            let usage = COMMANDS.iter().find(|c| c.0 == name).map_or(name, |c| c.1);
            AppError::Usage(format!("usage: {usage}"))
        };
        let no_args = |cmd: Self| {
            if args.is_empty() {
                Ok(Some(cmd))
            } else {
                Err(usage(name))
            }
        };
        match name {
            "help" | "?" => match args.as_slice() {
                [] => Ok(Some(Self::Help(None))),
                [topic] => Ok(Some(Self::Help(Some((*topic).to_owned())))),
                _ => Err(usage("help")),
            },
            "saveschema" => Err(AppError::Usage(format!(
                "`saveschema` is not a console command: {OFFLINE_SCHEMA}"
            ))),
            "updateschema" => match args.as_slice() {
                [n] => n
                    .parse()
                    .map(|version| Some(Self::UpdateSchema { version }))
                    .map_err(|_| usage("updateschema")),
                _ => Err(usage("updateschema")),
            },
            "schemas" => no_args(Self::Schemas),
            "schemadiff" => no_args(Self::SchemaDiff),
            "schemastatus" => no_args(Self::SchemaStatus),
            "routes" => no_args(Self::Routes),
            "sessions" => no_args(Self::Sessions),
            "kick" => match args.as_slice() {
                [s] => Ok(Some(Self::Kick {
                    session: (*s).to_owned(),
                })),
                _ => Err(usage("kick")),
            },
            "stats" => no_args(Self::Stats),
            "loglevel" => match args.as_slice() {
                [f] => Ok(Some(Self::LogLevel {
                    filter: (*f).to_owned(),
                })),
                _ => Err(usage("loglevel")),
            },
            "shutdown" | "exit" | "quit" => no_args(Self::Shutdown),
            other => Err(AppError::Usage(format!(
                "unknown command `{other}`; type `help` for the list"
            ))),
        }
    }

    /// The command's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Help(_) => "help",
            Self::SaveSchema { .. } => "saveschema",
            Self::UpdateSchema { .. } => "updateschema",
            Self::Schemas => "schemas",
            Self::SchemaDiff => "schemadiff",
            Self::SchemaStatus => "schemastatus",
            Self::Routes => "routes",
            Self::Sessions => "sessions",
            Self::Kick { .. } => "kick",
            Self::Stats => "stats",
            Self::LogLevel { .. } => "loglevel",
            Self::Shutdown => "shutdown",
        }
    }
}

/// What a command printed, and whether the server should now stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Text for the operator (may span lines; no trailing newline).
    pub text: String,
    /// The command started a shutdown: the console should end.
    pub shutdown: bool,
}

impl Reply {
    fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            shutdown: false,
        }
    }
}

/// Runs commands against the application's schema and, when running, its server.
#[derive(Clone)]
pub struct Executor {
    schema: SchemaSet,
    server: Option<Server>,
    storage: Option<StorageService>,
    log: Option<LogControl>,
    grace: Duration,
    app: String,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("schema", &self.schema.dir)
            .field("server", &self.server.as_ref().map(Server::local_addr))
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor for the offline CLI: schema commands only.
    pub fn offline(schema: SchemaSet) -> Self {
        Self {
            schema,
            server: None,
            storage: None,
            log: None,
            grace: Duration::from_secs(10),
            app: "<app>".into(),
        }
    }

    /// An executor for a running server's console.
    pub fn online(
        schema: SchemaSet,
        server: Server,
        storage: Option<StorageService>,
        log: Option<LogControl>,
        grace: Duration,
    ) -> Self {
        Self {
            schema,
            server: Some(server),
            storage,
            log,
            grace,
            app: "<app>".into(),
        }
    }

    /// Names the application's binary in messages (`<app>` until named).
    pub fn named(mut self, app: impl Into<String>) -> Self {
        self.app = app.into();
        self
    }

    /// The schema set the executor works on.
    pub fn schema(&self) -> &SchemaSet {
        &self.schema
    }

    /// The running server, if any.
    pub fn server(&self) -> Option<&Server> {
        self.server.as_ref()
    }

    /// Parses and runs one line; a blank line gives an empty reply.
    pub async fn execute_line(&self, line: &str) -> Result<Reply, AppError> {
        match Command::parse(line)? {
            Some(cmd) => self.execute(cmd).await,
            None => Ok(Reply::text("")),
        }
    }

    /// Runs one command.
    pub async fn execute(&self, cmd: Command) -> Result<Reply, AppError> {
        let name = cmd.name();
        let server = || self.server.as_ref().ok_or(AppError::NeedsServer(name));
        match cmd {
            Command::Help(topic) => help(topic.as_deref(), &self.app).map(Reply::text),
            Command::SaveSchema { .. } if self.server.is_some() => Err(AppError::OfflineOnly {
                command: "saveschema",
                app: self.app.clone(),
            }),
            Command::SaveSchema {
                name,
                allow_destructive,
            } => {
                self.blocking(move |s| s.save(name.as_deref(), allow_destructive))
                    .await
            }
            Command::UpdateSchema { version } if self.server.is_some() => {
                let app = self.app.clone();
                self.blocking(move |s| s.apply_live(version, &app)).await
            }
            Command::UpdateSchema { version } => self.blocking(move |s| s.apply(version)).await,
            Command::Schemas => self.blocking(SchemaSet::list).await,
            Command::SchemaDiff => self.blocking(SchemaSet::diff).await,
            Command::SchemaStatus => self.blocking(SchemaSet::status).await,
            Command::Routes => Ok(Reply::text(routes(server()?))),
            Command::Sessions => Ok(Reply::text(sessions(&server()?.sessions().all(), now()))),
            Command::Kick { session } => kick(server()?, &session).await.map(Reply::text),
            Command::Stats => {
                let server = server()?;
                let storage = self.storage.clone();
                Ok(Reply::text(stats(server, storage.as_ref())))
            }
            Command::LogLevel { filter } => match &self.log {
                Some(log) => log
                    .set(&filter)
                    .map(|()| Reply::text(format!("log filter is now `{filter}`")))
                    .map_err(AppError::Usage),
                None => Err(AppError::NeedsServer("loglevel")),
            },
            Command::Shutdown => {
                let server = server()?.clone();
                let grace = self.grace;
                tokio::spawn(async move { server.shutdown(grace).await });
                Ok(Reply {
                    text: format!("shutting down (calls in flight get up to {grace:?})"),
                    shutdown: true,
                })
            }
        }
    }

    async fn blocking(
        &self,
        f: impl FnOnce(&SchemaSet) -> Result<String, AppError> + Send + 'static,
    ) -> Result<Reply, AppError> {
        let schema = self.schema.clone();
        tokio::task::spawn_blocking(move || f(&schema))
            .await
            .map_err(|e| AppError::Failed(format!("command failed: {e}")))?
            .map(Reply::text)
    }
}

fn help(topic: Option<&str>, app: &str) -> Result<String, AppError> {
    if let Some(topic) = topic {
        let (_, usage, about) = COMMANDS
            .iter()
            .find(|c| c.0 == topic)
            .ok_or_else(|| AppError::Usage(format!("no command `{topic}`")))?;
        return Ok(format!("{usage}\n  {about}"));
    }
    let width = COMMANDS.iter().map(|c| c.1.len()).max().unwrap_or(0);
    let mut out = String::from("commands:");
    for (_, usage, about) in COMMANDS {
        let _ = write!(out, "\n  {usage:width$}  {about}");
    }
    let _ = write!(out, "\n{}", OFFLINE_SCHEMA.replace("<app>", app));
    Ok(out)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `3d4h`, `2h5m`, `4m10s`, `12s`.
pub(crate) fn age(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

fn routes(server: &Server) -> String {
    let mut out = String::new();
    let mut n = 0;
    for (name, options) in server.router().routes() {
        n += 1;
        let mut flags = Vec::new();
        if options.requires_login {
            flags.push("login required");
        }
        if options.idempotent {
            flags.push("idempotent");
        }
        let _ = writeln!(out, "  {name}  {}", flags.join(", "));
    }
    let _ = write!(out, "{n} routes");
    out.trim_start_matches('\n').to_owned()
}

fn sessions(all: &[SessionHandle], now: u64) -> String {
    let mut rows: Vec<&SessionHandle> = all.iter().collect();
    rows.sort_by_key(|s| (s.created_at(), s.id()));
    let mut out = format!(
        "{:<32}  {:>8}  {:<22}  {:>7}  {:>8}",
        "session", "user", "peer", "age", "in flight"
    );
    for s in &rows {
        let user = s.user_id().map_or_else(|| "-".into(), |u| u.to_string());
        let peer = s.peer().map_or_else(|| "-".into(), |p| p.to_string());
        let _ = write!(
            out,
            "\n{:<32}  {user:>8}  {peer:<22}  {:>7}  {:>8}",
            s.id().to_string(),
            age(now.saturating_sub(s.created_at())),
            s.calls_in_flight()
        );
    }
    let _ = write!(out, "\n{} live sessions", rows.len());
    out
}

async fn kick(server: &Server, who: &str) -> Result<String, AppError> {
    let who = who.to_ascii_lowercase();
    if who.len() < 4 {
        return Err(AppError::Usage(
            "give the session id or a prefix of at least 4 digits".into(),
        ));
    }
    let matches: Vec<SessionHandle> = server
        .sessions()
        .all()
        .into_iter()
        .filter(|s| s.id().to_string().starts_with(&who))
        .collect();
    match matches.as_slice() {
        [] => Err(AppError::Failed(format!("no live session `{who}`"))),
        [s] => {
            s.end()
                .await
                .map_err(|e| AppError::Failed(format!("cannot end the session: {e}")))?;
            Ok(format!("session {} ended", s.id()))
        }
        many => Err(AppError::Failed(format!(
            "`{who}` matches {} sessions; give more digits",
            many.len()
        ))),
    }
}

fn duration(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d < Duration::from_millis(1) => format!("{}us", d.as_micros()),
        Some(d) if d < Duration::from_secs(1) => format!("{:.1}ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.2}s", d.as_secs_f64()),
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn stats(server: &Server, storage: Option<&StorageService>) -> String {
    let st = server.stats();
    let width = st
        .routes
        .iter()
        .map(|r| r.route.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:<width$}  {:>8}  {:>6}  {:>8}  {:>8}  {:>10}  {:>10}",
        "route", "calls", "errors", "p50", "p99", "in", "out"
    );
    for r in &st.routes {
        let _ = write!(
            out,
            "\n{:<width$}  {:>8}  {:>6}  {:>8}  {:>8}  {:>10}  {:>10}",
            r.route,
            r.calls,
            r.errors,
            duration(r.p50),
            duration(r.p99),
            bytes(r.bytes_in),
            bytes(r.bytes_out)
        );
    }
    let (bin, bout) = st.total_bytes();
    let _ = write!(
        out,
        "\ntotal: {} calls, {} errors, {} in, {} out; {} connections, {} live sessions",
        st.total_calls(),
        st.total_errors(),
        bytes(bin),
        bytes(bout),
        st.connections,
        st.sessions
    );
    if let Some(storage) = storage {
        let s = storage.stats();
        let (stored, files) = disk_usage(storage.root());
        let _ = write!(
            out,
            "\ncloud: {} uploaded, {} downloaded, {} files written, {} refused; {} stored in {} files under {}",
            bytes(s.bytes_uploaded),
            bytes(s.bytes_downloaded),
            s.files_written,
            s.refused,
            bytes(stored),
            files,
            storage.root().display()
        );
    }
    out
}

/// Most entries visited when adding up the bytes stored.
const MAX_WALK: usize = 100_000;

/// Bytes and files under `root` (stops after [`MAX_WALK`] entries; symlinks not followed).
fn disk_usage(root: &Path) -> (u64, u64) {
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    let (mut total, mut files, mut seen) = (0u64, 0u64, 0usize);
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_WALK {
                return (total, files);
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
                files += 1;
            }
        }
    }
    (total, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let p = |s: &str| Command::parse(s).unwrap();
        assert_eq!(p("  "), None);
        assert_eq!(p("help"), Some(Command::Help(None)));
        assert_eq!(p("help kick"), Some(Command::Help(Some("kick".into()))));
        assert_eq!(
            p("updateschema 3"),
            Some(Command::UpdateSchema { version: 3 })
        );
        assert_eq!(p("schemas"), Some(Command::Schemas));
        assert_eq!(p("routes"), Some(Command::Routes));
        assert_eq!(p("sessions"), Some(Command::Sessions));
        assert_eq!(
            p("kick abcd"),
            Some(Command::Kick {
                session: "abcd".into()
            })
        );
        assert_eq!(p("stats"), Some(Command::Stats));
        assert_eq!(
            p("loglevel debug"),
            Some(Command::LogLevel {
                filter: "debug".into()
            })
        );
        assert_eq!(p("shutdown"), Some(Command::Shutdown));
        assert_eq!(p("quit"), Some(Command::Shutdown));
    }

    #[test]
    fn refuses_bad_lines_with_usage() {
        let e = |s: &str| Command::parse(s).unwrap_err().to_string();
        assert_eq!(e("updateschema"), "usage: updateschema N");
        assert_eq!(e("updateschema x"), "usage: updateschema N");
        assert_eq!(e("kick"), "usage: kick <session>");
        assert_eq!(e("routes now"), "usage: routes");
        // Saving a version is offline only; the refusal says where it is done.
        let save = e("saveschema add_courses");
        assert!(save.contains("not a console command"), "{save}");
        assert!(save.contains("`<app> schema save NAME`"), "{save}");
        assert!(e("frobnicate").contains("unknown command `frobnicate`"));
    }

    #[test]
    fn every_command_has_help() {
        let all = help(None, "demo").unwrap();
        for (name, usage, _) in COMMANDS {
            assert!(all.contains(usage), "{name}");
            assert!(help(Some(name), "demo").unwrap().starts_with(usage));
        }
        assert!(help(Some("nope"), "demo").is_err());
        assert!(!all.contains("saveschema"), "{all}");
        // The help says where schema changes are made.
        assert!(
            all.ends_with(
                "offline with the server stopped: `demo schema save NAME`, `demo schema apply N`"
            ),
            "{all}"
        );
    }

    #[test]
    fn formats_ages_and_sizes() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(125), "2m5s");
        assert_eq!(age(3 * 3600 + 120), "3h2m");
        assert_eq!(age(2 * 86_400 + 3600), "2d1h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
