//! The runtime end to end: schema checks on start, the console's commands through the shared
//! command layer against a real server on loopback, and the offline `schema` subcommands.

use std::time::Duration;

use fluxon_app::{App, AppError, Command, SchemaSet, Settings, StartupCheck};
use fluxon_client::{ClientConfig, Connection, Trust};
use fluxon_server::{Request, Router, Status};

fn router() -> Router {
    Router::new()
        .route("demo.Demo/Echo", |req: Request<String>| async move {
            Ok::<_, Status>(req.into_inner())
        })
        .route("demo.Demo/Fail", |_: Request<()>| async move {
            Err::<(), _>(Status::not_found("nothing here"))
        })
        .route("demo.Demo/Login", |req: Request<i64>| async move {
            req.login(*req.message()).await
        })
}

fn app() -> App {
    App::new("demo")
        .models(fluxon_db::testing::models())
        .cloud_storage(true)
        .router(router())
}

fn settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::for_data_dir(dir.join("data"), dir.join("schema"));
    s.cloud = Some(fluxon_app::CloudSettings {
        root: dir.join("data/cloud"),
        port: None,
    });
    s
}

fn save_initial(dir: &std::path::Path) {
    let schema = SchemaSet::new(
        fluxon_db::testing::models(),
        dir.join("schema"),
        dir.join("data/app.db"),
    );
    let text = schema.save(Some("initial"), false).unwrap();
    assert!(
        text.starts_with("saved schema version 1 (initial)"),
        "{text}"
    );
}

#[tokio::test]
async fn refuses_to_start_without_a_saved_schema() {
    let dir = tempfile::tempdir().unwrap();
    let err = app()
        .start(settings(dir.path()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no schema version is saved yet"), "{err}");
    // The hint is to save a version: --apply-schema cannot help with unsaved models.
    assert!(
        err.contains("save a version first (`schema save NAME`)"),
        "{err}"
    );
    assert!(!err.contains("--apply-schema"), "{err}");
    // Nothing was created, so saving then starting again just works.
    assert!(!dir.path().join("data/app.db").exists());
    save_initial(dir.path());
    let running = app().start(settings(dir.path())).await.unwrap();
    assert_eq!(running.startup(), StartupCheck::Initialized(1));
    running.server().shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn refuses_a_database_behind_unless_told_to_apply() {
    let dir = tempfile::tempdir().unwrap();
    save_initial(dir.path());
    // A new database is created at the latest version.
    let running = app().start(settings(dir.path())).await.unwrap();
    assert_eq!(running.startup(), StartupCheck::Initialized(1));
    running.server().shutdown(Duration::from_secs(1)).await;
    drop(running);

    // Move the database back to version 0: the next start refuses it...
    let exec = fluxon_app::Executor::offline(SchemaSet::new(
        fluxon_db::testing::models(),
        dir.path().join("schema"),
        dir.path().join("data/app.db"),
    ));
    let reply = exec
        .execute(Command::UpdateSchema { version: 0 })
        .await
        .unwrap();
    assert!(reply.text.contains("from version 1 to 0"), "{}", reply.text);
    let err = app().start(settings(dir.path())).await.unwrap_err();
    assert!(err.to_string().contains("--apply-schema"), "{err}");
    // ...unless told to apply.
    let mut s = settings(dir.path());
    s.apply_schema = true;
    let running = app().start(s).await.unwrap();
    assert_eq!(running.startup(), StartupCheck::Applied { from: 0, to: 1 });
    running.server().shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn console_commands_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    save_initial(dir.path());
    let running = app().start(settings(dir.path())).await.unwrap();
    let server = running.server().clone();
    let exec = running.executor().clone();
    let trust = Trust::CertificateFile(server.dev_certificate_path().unwrap());
    let conn = Connection::connect(server.local_addr(), ClientConfig::new(trust))
        .await
        .unwrap();
    for i in 0..5 {
        let echoed: String = conn
            .call("demo.Demo/Echo", &format!("hello {i}"))
            .await
            .unwrap();
        assert_eq!(echoed, format!("hello {i}"));
    }
    assert!(conn.call::<_, ()>("demo.Demo/Fail", &()).await.is_err());
    conn.call::<_, ()>("demo.Demo/Login", &42i64).await.unwrap();

    let run = |line: &'static str| {
        let exec = exec.clone();
        async move { exec.execute_line(line).await }
    };
    let routes = run("routes").await.unwrap().text;
    assert!(routes.contains("demo.Demo/Echo"), "{routes}");
    assert!(routes.ends_with("3 routes"), "{routes}");

    let stats = run("stats").await.unwrap().text;
    let echo = stats
        .lines()
        .find(|l| l.starts_with("demo.Demo/Echo"))
        .unwrap();
    let cols: Vec<&str> = echo.split_whitespace().collect();
    assert_eq!(cols[1], "5", "{stats}"); // calls
    assert_eq!(cols[2], "0", "{stats}"); // errors
    let fail = stats
        .lines()
        .find(|l| l.starts_with("demo.Demo/Fail"))
        .unwrap();
    assert_eq!(fail.split_whitespace().nth(2), Some("1"), "{stats}");
    assert!(stats.contains("total: 7 calls, 1 errors"), "{stats}");
    assert!(stats.contains("cloud: "), "{stats}");

    let sessions = run("sessions").await.unwrap().text;
    let id = conn.session().id;
    let row = sessions.lines().find(|l| l.starts_with(&id)).unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("42"), "{sessions}");
    assert!(sessions.ends_with("1 live sessions"), "{sessions}");

    let schemas = run("schemas").await.unwrap().text;
    assert!(schemas.contains("*    1  initial"), "{schemas}");
    // Saving a version is offline only: not a console command, refused by a live executor.
    let saved = run("saveschema again").await.unwrap_err().to_string();
    assert!(saved.contains("not a console command"), "{saved}");
    let saved = exec
        .execute(Command::SaveSchema {
            name: None,
            allow_destructive: false,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            saved,
            AppError::OfflineOnly {
                command: "saveschema",
                ..
            }
        ),
        "{saved}"
    );
    // The live database stays at the version the compiled models match.
    let err = run("updateschema 0").await.unwrap_err();
    assert!(
        matches!(
            err,
            AppError::LiveSchema {
                requested: 0,
                models: Some(1),
                ..
            }
        ),
        "{err}"
    );
    let err = err.to_string();
    assert!(
        err.contains("the running server's models match schema version 1, not 0"),
        "{err}"
    );
    assert!(
        err.contains("stop the server, then `demo schema apply 0`"),
        "{err}"
    );
    let schemas = run("schemas").await.unwrap().text;
    assert!(schemas.contains("*    1  initial"), "{schemas}");
    let same = run("updateschema 1").await.unwrap().text;
    assert_eq!(same, "database already at version 1");
    let help = run("help").await.unwrap().text;
    assert!(!help.contains("saveschema"), "{help}");
    assert!(help.contains("`demo schema save NAME`"), "{help}");

    assert!(matches!(run("kick zz").await, Err(AppError::Usage(_))));
    let kicked = exec
        .execute(Command::Kick {
            session: id[..8].to_owned(),
        })
        .await
        .unwrap();
    assert_eq!(kicked.text, format!("session {id} ended"));
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap();
    assert!(closed.message().contains("ended"), "{closed:?}");

    // No log control in tests (the harness owns the subscriber).
    assert!(run("loglevel debug").await.is_err());

    let reply = run("shutdown").await.unwrap();
    assert!(reply.shutdown);
    tokio::time::timeout(Duration::from_secs(10), server.stopped())
        .await
        .unwrap();
}

#[test]
fn schema_subcommands_run_offline() {
    let dir = tempfile::tempdir().unwrap();
    let schema_dir = dir.path().join("schema");
    let data_dir = dir.path().join("data");
    let args = |rest: &[&str]| {
        let mut v = vec![
            "demo".to_owned(),
            "schema".into(),
            "--schema-dir".into(),
            schema_dir.display().to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        v.extend(rest.iter().map(|s| (*s).to_owned()));
        v
    };
    app().run_from(args(&["save", "initial"])).unwrap();
    app().run_from(args(&["apply", "1"])).unwrap();
    app().run_from(args(&["status"])).unwrap();
    let st = SchemaSet::new(
        fluxon_db::testing::models(),
        &schema_dir,
        // `App::new("demo")` keeps its database in `<data-dir>/demo.db`.
        data_dir.join("demo.db"),
    );
    assert_eq!(st.current_version().unwrap(), 1);
    assert!(st.status().unwrap().ends_with("up to date"));
    let err = app().run_from(args(&["apply", "7"])).unwrap_err();
    assert!(err.to_string().contains("no schema version 7"), "{err}");
    // `routes` needs a server: the offline executor says so.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(fluxon_app::Executor::offline(st).execute(Command::Routes))
        .unwrap_err();
    assert!(err.to_string().contains("needs a running server"), "{err}");
}

#[tokio::test]
async fn an_unreachable_state_database_stops_the_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    save_initial(dir.path());
    let mut s = settings(dir.path());
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    s.state_database = Some(fluxon_server::StateLocation::parse(
        "postgres://app:secret@127.0.0.1:1/app",
    ));
    let err = app().start(s.clone()).await.unwrap_err().to_string();
    assert!(
        err.starts_with(
            "state database: cannot connect to PostgreSQL at postgres://app:***@127.0.0.1:1/app:"
        ),
        "{err}"
    );
    assert!(!err.contains('\n') && !err.contains("secret"), "{err}");
    // Nothing was started or created before the check.
    assert!(!dir.path().join("data/app.db").exists());

    s.state_database = Some(fluxon_server::StateLocation::parse(
        "postgres://app@[bad/app",
    ));
    let err = app().start(s).await.unwrap_err().to_string();
    assert!(
        err.starts_with("state database: invalid PostgreSQL URL"),
        "{err}"
    );
}

#[test]
fn an_unreachable_postgres_application_database_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    save_initial(dir.path());
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let err = app()
        .run_from([
            "demo",
            "schema",
            "--database",
            "postgres://app:secret@127.0.0.1:1/app",
            "--schema-dir",
            dir.path().join("schema").to_str().unwrap(),
            "status",
        ])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot connect to PostgreSQL database \"app\" as \"app\" on 127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn sessions_and_grants_can_live_in_postgres() {
    let Some(url) = fluxon_server::testing::fresh_postgres("app_state").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    save_initial(dir.path());
    let mut s = settings(dir.path());
    s.state_database = Some(fluxon_server::StateLocation::parse(&url));
    s.node_id = Some("app-node".into());
    let running = app().start(s).await.unwrap();
    let server = running.server().clone();
    let trust = Trust::CertificateFile(server.dev_certificate_path().unwrap());
    let conn = Connection::connect(server.local_addr(), ClientConfig::new(trust))
        .await
        .unwrap();
    conn.call::<_, ()>("demo.Demo/Login", &42i64).await.unwrap();
    // The login is in PostgreSQL, as another node would read it; no SQLite state file exists.
    let state = fluxon_server::StateStore::open(&fluxon_server::StateLocation::parse(&url))
        .await
        .unwrap();
    let presence = state.presence_of_user(42).await.unwrap();
    assert_eq!(presence.len(), 1, "{presence:?}");
    assert_eq!(presence[0].node, "app-node");
    assert!(!dir.path().join("data/fluxon.db").exists());
    conn.close();
    server.shutdown(Duration::from_secs(1)).await;
}

/// Saves the demo server's schema in `dir` and starts it serving on an ephemeral port with
/// `stdout`; returns the process and its standard error's lines, read on a thread until the
/// process closes it.
fn spawn_demo_server(
    dir: &std::path::Path,
    stdout: std::process::Stdio,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead as _;
    let bin = env!("CARGO_BIN_EXE_fluxon-demo-server");
    let schema = dir.join("schema");
    let status = std::process::Command::new(bin)
        .args(["schema", "--schema-dir"])
        .arg(&schema)
        .args(["save", "initial"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = std::process::Command::new(bin)
        .args([
            "serve",
            "--no-console",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .arg("--schema-dir")
        .arg(&schema)
        .env("RUST_LOG", "")
        .env_remove("FLUXON_LOG_LEVEL")
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The first line of `lines` that `pick` accepts (waiting up to 30 s for each line), with
/// every line seen before it.
fn first_line<T>(
    lines: &std::sync::mpsc::Receiver<String>,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> (Option<T>, Vec<String>) {
    let mut seen = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) {
        if let Some(found) = pick(&line) {
            return (Some(found), seen);
        }
        seen.push(line);
    }
    (None, seen)
}

/// `RUST_LOG=` (set but empty) counts as unset: the server's INFO lines still show.
#[test]
fn an_empty_rust_log_keeps_the_info_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = spawn_demo_server(dir.path(), std::process::Stdio::null());
    let (found, seen) = first_line(&lines, |line| {
        (line.contains("INFO") && line.contains("new database created")).then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(found.is_some(), "no INFO line on stderr: {seen:?}");
}

/// A server whose standard output is closed before it prints its banner (whoever started it
/// went away) goes on serving: printing is never a reason to stop.
#[test]
fn a_closed_standard_output_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let (mut child, lines) = spawn_demo_server(dir.path(), writer.into());
    let (addr, seen) = first_line(&lines, |line| {
        let rest = line.split_once("fluxon server listening")?.1;
        let addr = rest.split_once("addr=")?.1.split_whitespace().next()?;
        addr.parse::<std::net::SocketAddr>().ok()
    });
    let addr = addr.unwrap_or_else(|| panic!("no listening line on stderr: {seen:?}"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echoed = rt.block_on(async {
        let config = ClientConfig::new(Trust::CertificateFile(
            dir.path().join("data").join(fluxon_server::DEV_CERT_FILE),
        ));
        let conn = Connection::connect(addr, config)
            .await
            .map_err(|e| e.to_string())?;
        // After the banner was written (and failed): the server still answers.
        conn.call::<_, String>("demo.Demo/Echo", &"still here".to_owned())
            .await
            .map_err(|e| e.to_string())
    });
    assert_eq!(echoed.expect("a call"), "still here");
    // SIGTERM is caught from before the server binds, so a server that is still running
    // (past its banner) stops gracefully with success; one that died printing would not.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..600 {
        exited = child.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let (_, said) = first_line(&lines, |_| None::<()>);
    assert!(
        exited.is_some_and(|s| s.success()),
        "the server did not stop gracefully ({exited:?}): {said:?}"
    );
}
