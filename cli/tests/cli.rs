//! Every `fluxon` subcommand, run as the built binary; `call` and `cloud` against a real
//! server (with cloud storage) on 127.0.0.1, port 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use fluxon_server::grant::{Grant, Op};
use fluxon_server::{Request, RouteOptions, Router, ServerConfig, Status};
use fluxon_storage::StorageConfig;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture")
}

/// Fluxon's own .proto files (`fluxon/storage.proto` is not embedded by codegen yet).
fn fluxon_protos() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto")
}

fn fluxon() -> Command {
    let mut c = Command::cargo_bin("fluxon").unwrap();
    c.timeout(Duration::from_secs(60))
        .env_remove("FLUXON_SESSION_FILE");
    c
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[derive(Clone, PartialEq, prost::Message)]
struct LoginRequest {
    #[prost(int64, tag = "1")]
    user_id: i64,
}
#[derive(Clone, PartialEq, prost::Message)]
struct WhoReply {
    #[prost(int64, tag = "1")]
    user_id: i64,
    #[prost(string, tag = "2")]
    greeting: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct GrantRequest {
    #[prost(string, tag = "1")]
    op: String,
    #[prost(string, tag = "2")]
    path: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct GrantReply {
    #[prost(message, optional, tag = "1")]
    grant: Option<Grant>,
}

/// Starts the shop server on its own thread; returns its address and data directory.
fn start_server(dir: &Path) -> SocketAddr {
    let fds = fluxon_codegen::configure()
        .generate(
            &[fixture().join("shop.proto")],
            &[fixture(), fluxon_protos()],
        )
        .unwrap()
        .file_descriptor_set;
    let router = Router::new()
        .route(
            "fluxon.Reflection/FileDescriptorSet",
            move |_: Request<()>| {
                let fds = fds.clone();
                async move { Ok::<_, Status>(fds) }
            },
        )
        .route("shop.Shop/Login", |req: Request<LoginRequest>| async move {
            req.login(req.user_id).await?;
            Ok::<_, Status>(WhoReply {
                user_id: req.user_id,
                greeting: "welcome".into(),
            })
        })
        .route_with(
            "shop.Shop/Who",
            RouteOptions::new().requires_login(),
            |req: Request<()>| async move {
                Ok::<_, Status>(WhoReply {
                    user_id: req.require_user()?,
                    greeting: "hello".into(),
                })
            },
        )
        .route_with(
            "shop.Shop/Grant",
            RouteOptions::new().requires_login(),
            |req: Request<GrantRequest>| async move {
                let op = match req.op.as_str() {
                    "write_file" => Op::WriteFile,
                    "read_file" => Op::ReadFile,
                    "read_tree" => Op::ReadTree,
                    "delete_item" => Op::DeleteItem,
                    "create_directory" => Op::CreateDirectory,
                    other => return Err(Status::invalid_argument(format!("op {other}"))),
                };
                let grant = req.grant(op, req.path.clone()).overwrite(true).sign()?;
                Ok(GrantReply { grant: Some(grant) })
            },
        )
        .server_streaming(
            "shop.Shop/Countdown",
            RouteOptions::new(),
            |req: Request<LoginRequest>| async move {
                let from = req.user_id;
                if from < 0 {
                    return Err(Status::invalid_argument("a countdown from below zero"));
                }
                Ok(futures_util::stream::iter((1..=from).rev().map(|i| {
                    Ok(WhoReply {
                        user_id: i,
                        greeting: "tick".into(),
                    })
                })))
            },
        )
        .client_streaming(
            "shop.Shop/Tally",
            RouteOptions::new(),
            |req: Request<fluxon_server::Streaming<LoginRequest>>| async move {
                let mut requests = req.into_inner();
                let mut sum = 0;
                while let Some(r) = requests.message().await? {
                    sum += r.user_id;
                }
                Ok(WhoReply {
                    user_id: sum,
                    greeting: "tally".into(),
                })
            },
        );
    serve(dir, |_| async move { router })
}

/// Serves the router `make` builds (given the data directory) with cloud storage under
/// `dir/cloud`, on its own thread; returns the address.
fn serve<F, Fut>(dir: &Path, make: F) -> SocketAddr
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Router>,
{
    let data = dir.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let router = make(data.clone()).await;
            let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), &data);
            let (server, _storage) =
                fluxon_storage::bind_server(config, router, StorageConfig::new(data.join("cloud")))
                    .await
                    .unwrap();
            tx.send(server.local_addr()).unwrap();
            server.stopped().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(30)).unwrap()
}

/// Starts the cloud example's server (`cloud::app()`, as `cloud-server` runs it: its schema,
/// routes, cloud storage and storage hooks) on a new data directory `dir`.
fn start_cloud_example(dir: &Path) -> SocketAddr {
    let data = dir.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let mut settings = fluxon_app::Settings::for_data_dir(
                &data,
                concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cloud/schema"),
            );
            settings.cloud = Some(fluxon_app::CloudSettings {
                root: data.join("cloud"),
                port: None,
            });
            let running = cloud::app().start(settings).await.unwrap();
            tx.send(running.server().local_addr()).unwrap();
            running.server().stopped().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(30)).unwrap()
}

#[test]
fn help_everywhere() {
    for sub in [
        vec![],
        vec!["new"],
        vec!["gen"],
        vec!["schema"],
        vec!["schema", "apply"],
        vec!["call"],
        vec!["cloud"],
        vec!["cloud", "put"],
    ] {
        let out = fluxon().args(&sub).arg("--help").output().unwrap();
        assert!(out.status.success(), "{sub:?}");
        assert!(stdout(&out).contains("Usage: fluxon"), "{sub:?}");
    }
}

#[test]
fn errors_are_one_line_with_a_failure_status() {
    let out = fluxon()
        .args(["gen", "--proto", "missing.proto", "--out", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("fluxon: error: "), "{err}");
}

#[test]
fn gen_writes_rust_and_sql() {
    let dir = tempfile::tempdir().unwrap();
    let out = fluxon()
        .args(["gen", "-I"])
        .arg(fixture())
        .arg("-I")
        .arg(fluxon_protos())
        .arg("--proto")
        .arg(fixture().join("shop.proto"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rust = std::fs::read_to_string(dir.path().join("shop.rs")).unwrap();
    assert!(rust.contains("pub struct Item"));
    assert!(rust.contains("FILE_DESCRIPTOR_SET"));
    let sql = std::fs::read_to_string(dir.path().join("shop.sql")).unwrap();
    assert!(sql.contains("CREATE TABLE \"item\""), "{sql}");
}

#[test]
fn schema_versions_offline() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        fluxon()
            .arg("schema")
            .arg("--proto")
            .arg(fixture().join("shop.proto"))
            .arg("-I")
            .arg(fixture())
            .arg("-I")
            .arg(fluxon_protos())
            .arg("--schema-dir")
            .arg(dir.path().join("schema"))
            .arg("--database")
            .arg(dir.path().join("app.db"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["diff"]);
    assert!(
        stdout(&out).contains("create table item"),
        "{}",
        stdout(&out)
    );
    let out = run(&["save", "initial"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("saved schema version 1 (initial)"));
    assert!(stdout(&run(&["list"])).contains("     1  initial\ndatabase at version 0"));
    let out = run(&["apply", "1"]);
    assert!(
        stdout(&out).contains("from version 0 to 1"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&run(&["list"])).contains("*    1  initial"));
    assert!(stdout(&run(&["status"])).ends_with("up to date\n"));
    let out = run(&["apply", "5"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no schema version 5"));
}

/// In a `fluxon new` application's folder, `fluxon schema` works on the database its server
/// uses (`data/<package>.db`), and the read-only commands create nothing.
#[test]
fn schema_finds_the_scaffolded_applications_database() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("my-shop");
    let out = fluxon()
        .arg("new")
        .arg(&app)
        .env_remove("FLUXON_PATH")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let schema = |cwd: &Path, args: &[&str]| {
        fluxon()
            .current_dir(cwd)
            .args(["schema", "--proto"])
            .arg(app.join("proto/my_shop.proto"))
            .args(args)
            .env_remove("FLUXON_DATABASE")
            .env_remove("FLUXON_CONFIG")
            .env_remove("FLUXON_DATA_DIR")
            .env_remove("FLUXON_SCHEMA_DIR")
            .output()
            .unwrap()
    };
    for read_only in [&["status"][..], &["list"], &["diff"]] {
        let out = schema(&app, read_only);
        assert!(out.status.success(), "{read_only:?}: {}", stderr(&out));
        assert!(
            !app.join("data").exists(),
            "{read_only:?} created a database"
        );
    }
    let status = stdout(&schema(&app, &["status"]));
    assert!(
        status.starts_with("no database at data/my-shop.db: version 0 of 1 saved"),
        "{status}"
    );
    let out = schema(&app, &["apply", "1"]);
    assert!(stdout(&out).contains("from version 0 to 1"), "{out:?}");
    assert!(app.join("data/my-shop.db").exists());
    assert!(!app.join("data/app.db").exists());
    let status = stdout(&schema(&app, &["status"]));
    assert!(
        status.starts_with("database data/my-shop.db: version 1 of 1 saved"),
        "{status}"
    );
    assert!(status.ends_with("up to date\n"), "{status}");

    // Outside an application's folder the database must be named, in one line...
    let out = schema(dir.path(), &["status"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("which database?"), "{err}");
    assert!(
        err.contains("--app NAME") && err.contains("--database FILE"),
        "{err}"
    );
    // ...by --app (or --database)...
    let out = schema(dir.path(), &["--app", "shop", "status"]);
    assert!(
        stdout(&out).starts_with("no database at data/shop.db"),
        "{out:?}"
    );
    // ...except for the commands that do not use it.
    let schema_dir = app.join("schema");
    let out = schema(
        dir.path(),
        &["--schema-dir", schema_dir.to_str().unwrap(), "diff"],
    );
    assert!(
        stdout(&out).contains("the models match the latest saved version"),
        "{out:?}"
    );
    assert!(!dir.path().join("data").exists());
}

#[test]
fn call_keeps_the_session_between_invocations() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start_server(&dir.path().join("server")).to_string();
    let session = dir.path().join("sessions.json");
    let call = |route: &str, json: &str| {
        fluxon()
            .args(["call", &addr, route, "--json", json, "--data-dir"])
            .arg(dir.path().join("server"))
            .arg("--session-file")
            .arg(&session)
            .output()
            .unwrap()
    };
    // Not logged in yet.
    let out = call("shop.Shop/Who", "{}");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unauthenticated"), "{}", stderr(&out));
    let out = call("shop.Shop/Login", r#"{"userId": 42}"#);
    assert!(out.status.success(), "{}", stderr(&out));
    let reply: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(reply["userId"], "42");
    // A second process resumes the logged-in session.
    let out = call("shop.Shop/Who", "{}");
    assert!(out.status.success(), "{}", stderr(&out));
    let reply: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(reply["greeting"], "hello");
    assert_eq!(reply["userId"], "42");
    // Types from a .proto instead of the server's descriptors.
    let out = fluxon()
        .args(["call", &addr, "shop.Shop/Who", "--proto"])
        .arg(fixture().join("shop.proto"))
        .arg("-I")
        .arg(fixture())
        .arg("-I")
        .arg(fluxon_protos())
        .arg("--data-dir")
        .arg(dir.path().join("server"))
        .arg("--session-file")
        .arg(&session)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Bad input is one clear line.
    let out = call("shop.Shop/Login", r#"{"nope": 1}"#);
    assert!(
        stderr(&out).contains("request is not a valid shop.LoginRequest"),
        "{}",
        stderr(&out)
    );
    let out = call("shop.Shop/Nope", "{}");
    assert!(
        stderr(&out).contains("has no method `Nope`"),
        "{}",
        stderr(&out)
    );
}

/// A server stream is printed as JSON lines; a stream of requests is read as JSON lines from
/// standard input; a refusal is one line on stderr.
#[test]
fn call_streams_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start_server(&dir.path().join("server")).to_string();
    let call = |route: &str, json: &str, stdin: &str| {
        fluxon()
            .args(["call", &addr, route, "--json", json, "--data-dir"])
            .arg(dir.path().join("server"))
            .arg("--session-file")
            .arg(dir.path().join("sessions.json"))
            .write_stdin(stdin)
            .output()
            .unwrap()
    };
    let out = call("shop.Shop/Countdown", r#"{"userId": 3}"#, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let counted: Vec<&str> = lines
        .iter()
        .map(|v| v["userId"].as_str().unwrap())
        .collect();
    assert_eq!(counted, ["3", "2", "1"]);
    assert!(lines.iter().all(|v| v["greeting"] == "tick"));

    let out = call("shop.Shop/Countdown", r#"{"userId": -1}"#, "");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a countdown from below zero"),
        "{}",
        stderr(&out)
    );

    let out = call(
        "shop.Shop/Tally",
        "{}",
        "{\"userId\": 4}\n\n{\"userId\": 38}\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let reply: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(reply["userId"], "42");

    let out = call("shop.Shop/Tally", "{}", "{\"userId\": 4}\nnot json\n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    // The call was abandoned, not ended early: no tally of the first line alone.
    assert_eq!(stdout(&out), "", "{}", stderr(&out));
}

/// A saved token the server refuses (here: one it never signed, as after a change of its key)
/// is reported in one line on stderr before a new session starts.
#[test]
fn a_refused_saved_session_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start_server(&dir.path().join("server")).to_string();
    let session = dir.path().join("sessions.json");
    let call = |route: &str, json: &str| {
        fluxon()
            .args(["call", &addr, route, "--json", json, "--data-dir"])
            .arg(dir.path().join("server"))
            .arg("--session-file")
            .arg(&session)
            .output()
            .unwrap()
    };
    let out = call("shop.Shop/Login", r#"{"userId": 5}"#);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "a first session is nothing to report");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&session).unwrap()).unwrap();
    let token = saved["sessions"][addr.as_str()]
        .as_str()
        .unwrap()
        .to_owned();
    // The saved session resumes silently.
    let out = call("shop.Shop/Who", "{}");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    // A token with its signature altered is refused: one line says so, and why.
    let last = if token.ends_with('0') { "1" } else { "0" };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    std::fs::write(
        &session,
        serde_json::json!({ "sessions": { addr.as_str(): forged } }).to_string(),
    )
    .unwrap();
    let out = call("shop.Shop/Who", "{}");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "fluxon: the saved session for {addr} was refused (unauthenticated"
        )),
        "{err}"
    );
    assert!(
        lines[0].ends_with("starting a new one, not logged in"),
        "{err}"
    );
    // The new session is not logged in, so the call itself is refused.
    assert!(lines[1].contains("unauthenticated"), "{err}");
    assert!(!out.status.success());
    // The new session was saved: the next call resumes it without a word.
    let out = call("shop.Shop/Login", r#"{"userId": 5}"#);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn cloud_transfers_with_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let addr = start_server(&server_dir).to_string();
    let session = dir.path().join("sessions.json");
    let login = fluxon()
        .args([
            "call",
            &addr,
            "shop.Shop/Login",
            "--json",
            r#"{"userId": 7}"#,
            "--data-dir",
        ])
        .arg(&server_dir)
        .arg("--session-file")
        .arg(&session)
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", stderr(&login));
    let cloud = |args: &[&std::ffi::OsStr]| {
        fluxon()
            .args([
                "cloud",
                "--quiet",
                "--addr",
                &addr,
                "--route",
                "shop.Shop/Grant",
            ])
            .args([
                "--json",
                r#"{"op": "{op}", "path": "{path}"}"#,
                "--data-dir",
            ])
            .arg(&server_dir)
            .arg("--session-file")
            .arg(&session)
            .args(args)
            .output()
            .unwrap()
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let out = cloud(&[&os("mkdir"), &os("docs")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let local = dir.path().join("report.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let out = cloud(&[&os("put"), local.as_os_str(), &os("docs/report.bin")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("uploaded docs/report.bin (300000 bytes, blake3 "));
    assert_eq!(
        std::fs::read(server_dir.join("cloud/docs/report.bin")).unwrap(),
        data
    );
    let out = cloud(&[&os("ls"), &os("docs")]);
    assert!(
        stdout(&out).contains("300000  report.bin"),
        "{}",
        stdout(&out)
    );
    let back = dir.path().join("back.bin");
    let out = cloud(&[&os("get"), &os("docs/report.bin"), back.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let out = cloud(&[&os("rm"), &os("docs")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!server_dir.join("cloud/docs").exists());
    let out = cloud(&[&os("get"), &os("docs/report.bin"), back.as_os_str()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not_found") || stderr(&out).contains("not found"),
        "{}",
        stderr(&out)
    );
}

/// `fluxon cloud` against the cloud example: its `StorageGrant` route takes paths relative to
/// the user's root and signs grants for `u<id>/...`, and the command performs each operation
/// on the path the grant names.
#[test]
fn cloud_works_with_the_cloud_example() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let addr = start_cloud_example(&server_dir).to_string();
    let session = dir.path().join("sessions.json");
    let call = |route: &str, json: &str| {
        let out = fluxon()
            .args(["call", &addr, route, "--json", json, "--data-dir"])
            .arg(&server_dir)
            .arg("--session-file")
            .arg(&session)
            .output()
            .unwrap();
        assert!(out.status.success(), "{route}: {}", stderr(&out));
        stdout(&out)
    };
    let account = call(
        "cloud.Cloud/Signup",
        r#"{"username": "ada", "password": "correct horse"}"#,
    );
    assert!(account.contains(r#""userId": "1""#), "{account}");
    let owner = call("cloud.Cloud/CreateOwner", r#"{"storageLimit": "1000000"}"#);
    assert!(owner.contains(r#""storagePath": "u1""#), "{owner}");
    let cloud = |args: &[&std::ffi::OsStr]| {
        fluxon()
            .args(["cloud", "--quiet", "--addr", &addr])
            .args(["--route", "cloud.Cloud/StorageGrant"])
            .args([
                "--json",
                r#"{"op": "{op}", "path": "{path}", "size": "{size}"}"#,
                "--data-dir",
            ])
            .arg(&server_dir)
            .arg("--session-file")
            .arg(&session)
            .args(args)
            .output()
            .unwrap()
    };
    let os = std::ffi::OsStr::new;
    // The root create_owner recorded, made in storage.
    let out = cloud(&[os("mkdir")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "created /\n");
    assert!(server_dir.join("cloud/u1").is_dir());
    let out = cloud(&[os("mkdir"), os("docs")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "created docs\n");
    assert!(server_dir.join("cloud/u1/docs").is_dir());
    let local = dir.path().join("report.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let out = cloud(&[os("put"), local.as_os_str(), os("docs/report.bin")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("uploaded docs/report.bin (200000 bytes, blake3 "),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read(server_dir.join("cloud/u1/docs/report.bin")).unwrap(),
        data
    );
    let out = cloud(&[os("ls"), os("docs")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("200000  report.bin"),
        "{}",
        stdout(&out)
    );
    let out = cloud(&[os("ls")]);
    assert!(stdout(&out).contains("docs"), "{}", stdout(&out));
    let back = dir.path().join("back.bin");
    let out = cloud(&[os("get"), os("docs/report.bin"), back.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&back).unwrap(), data);
    // The quota is the application's: the size went into the request and is reserved.
    let tree = call("cloud.Cloud/ReadTree", r#"{"root": "1", "path": "docs"}"#);
    assert!(tree.contains(r#""storageUsed": "200000""#), "{tree}");
    let out = cloud(&[os("rm"), os("docs/report.bin")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!server_dir.join("cloud/u1/docs/report.bin").exists());
    // The application refuses what its rules forbid, in one line.
    let out = cloud(&[os("get"), os("../u2/x"), back.as_os_str()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid_argument"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn new_scaffolds_an_application() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("my-shop");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // No --fluxon-path: the crates come from the checkout this `fluxon` was built from.
    let out = fluxon()
        .arg("new")
        .arg(&app)
        .env_remove("FLUXON_PATH")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest = std::fs::read_to_string(app.join("Cargo.toml")).unwrap();
    let app_crate = workspace.canonicalize().unwrap().join("server/app");
    assert!(
        manifest.contains(&format!(
            "fluxon-app = {{ path = {:?} }}",
            app_crate.display().to_string()
        )),
        "{manifest}"
    );
    for f in [
        "Cargo.lock",
        "Cargo.toml",
        "build.rs",
        "proto/my_shop.proto",
        "src/lib.rs",
        "src/bin/my-shop-server.rs",
        "src/bin/my-shop-client.rs",
        "schema/0001_initial.up.sql",
    ] {
        assert!(app.join(f).exists(), "{f}");
    }
    let again = fluxon().arg("new").arg(&app).output().unwrap();
    assert!(!again.status.success());
    assert!(stderr(&again).contains("is not empty"));
    if std::env::var_os("FLUXON_TEST_SKIP_SCAFFOLD_BUILD").is_some() {
        return;
    }
    // It builds as it stands, offline: `fluxon new` copied the workspace's lock file.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--offline", "--quiet", "--bins"])
        .current_dir(&app)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the scaffolded application does not build"
    );
    // And its server answers `schema status` on a new database.
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| app.join("target"), PathBuf::from);
    let server = target.join("debug/my-shop-server");
    let out = std::process::Command::new(server)
        .args(["schema", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("status")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no database at"),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("version 0 of 1 saved"),
        "{out:?}"
    );
    // A read-only command creates no database.
    assert!(!dir.path().join("data").exists());
}
