//! The school client in Python, Kotlin and Swift against a live server on loopback.
//!
//! Each test starts the school server in-process on 127.0.0.1:0, generates the language's
//! sources from this crate's cdylib with the workspace `uniffi-bindgen` (library mode), runs the
//! language's test program with the server address and development certificate, and asserts its
//! exit status and its output.
//!
//! Python always runs. Kotlin and Swift need toolchains that `bindings/scripts/test-kotlin.sh`
//! and `test-swift.sh` install; they set `FLUXON_KOTLIN_HOME` / `FLUXON_SWIFT_CHROOT` and run
//! these tests, which otherwise say they were skipped.

use futures_util::StreamExt as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use fluxon_foreign_testkit::{assert_clean_exits, output_within, run};
use fluxon_server::grant::{Grant, Op};
use fluxon_server::{Request, Server, ServerConfig, Status};
use fluxon_storage::StorageConfig;

/// The school cdylib cargo built for this test.
fn cdylib() -> PathBuf {
    fluxon_foreign_testkit::cdylib("fluxon_school")
}

/// Generates `language` sources for the school cdylib into `out`.
fn generate(language: &str, out: &Path) -> PathBuf {
    fluxon_foreign_testkit::generate(&cdylib(), language, out)
}

/// The Python package `school_app` in a temp dir.
fn python_package() -> tempfile::TempDir {
    fluxon_foreign_testkit::python_package(&cdylib(), "school_app")
}

/// The school schema's server side, generated into `OUT_DIR/server` by build.rs.
#[allow(dead_code, unreachable_pub, clippy::all)]
mod school {
    include!(concat!(env!("OUT_DIR"), "/server/school.rs"));
}

use school::{
    BroadcastReply, BroadcastRequest, GrantReply, GrantRequest, LoginReply, LoginRequest, Notice,
    PathRequest, Profile, SchoolEventsCaller, SignupReply, SignupRequest, SlowReply, SlowRequest,
};

/// Accounts and profiles in memory.
#[derive(Default)]
struct App {
    users: Mutex<HashMap<String, (String, i64, i32)>>,
    profiles: Mutex<HashMap<i64, Profile>>,
    grants_issued: AtomicU64,
}

/// `path` inside user `user`'s storage folder `u<user>/`.
fn user_path(user: i64, path: &str) -> String {
    if path.is_empty() {
        format!("u{user}")
    } else {
        format!("u{user}/{path}")
    }
}

impl App {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, i64, i32)>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl school::School for App {
    async fn signup(&self, request: Request<SignupRequest>) -> Result<SignupReply, Status> {
        if request.username.is_empty() {
            return Err(Status::invalid_argument("a username is required"));
        }
        let user_id = {
            let mut users = self.users();
            if users.contains_key(&request.username) {
                return Err(Status::already_exists(format!(
                    "user {} exists",
                    request.username
                )));
            }
            let id = i64::try_from(users.len()).unwrap_or(0) + 1;
            users.insert(
                request.username.clone(),
                (request.password.clone(), id, request.role),
            );
            id
        };
        request.login(user_id).await?;
        Ok(SignupReply { user_id })
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<LoginReply, Status> {
        let found = self.users().get(&request.username).cloned();
        match found {
            Some((password, user_id, role)) if password == request.password => {
                request.login(user_id).await?;
                Ok(LoginReply { user_id, role })
            }
            _ => Err(Status::unauthenticated("wrong username or password")),
        }
    }

    async fn update_profile(&self, request: Request<Profile>) -> Result<Profile, Status> {
        let user_id = request.require_user()?;
        let mut profile = request.into_inner();
        profile.user_id = user_id;
        profile.updated_at = Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        });
        profile.counters.insert("updates".into(), 1);
        self.profiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user_id, profile.clone());
        Ok(profile)
    }

    async fn me(&self, request: Request<()>) -> Result<Profile, Status> {
        let user_id = request.require_user()?;
        self.profiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&user_id)
            .cloned()
            .ok_or_else(|| Status::not_found("no profile yet"))
    }

    async fn slow(&self, request: Request<SlowRequest>) -> Result<SlowReply, Status> {
        tokio::time::sleep(Duration::from_millis(request.millis.min(30_000))).await;
        Ok(SlowReply {
            text: request.text.clone(),
        })
    }

    async fn ticks(
        &self,
        request: Request<SlowRequest>,
    ) -> Result<fluxon_server::Replies<SlowReply>, Status> {
        let SlowRequest { millis, text } = request.into_inner();
        let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        let pause = Duration::from_millis(millis.min(30_000));
        Ok(Box::pin(futures_util::stream::iter(words).then(
            move |text| async move {
                tokio::time::sleep(pause).await;
                Ok(SlowReply { text })
            },
        )))
    }

    async fn tally(
        &self,
        request: Request<fluxon_server::Streaming<SlowRequest>>,
    ) -> Result<SlowReply, Status> {
        let mut requests = request.into_inner();
        let mut words = Vec::new();
        while let Some(r) = requests.message().await? {
            words.push(r.text);
        }
        Ok(SlowReply {
            text: words.join(" "),
        })
    }

    async fn chat(
        &self,
        request: Request<fluxon_server::Streaming<SlowRequest>>,
    ) -> Result<fluxon_server::Replies<SlowReply>, Status> {
        Ok(Box::pin(request.into_inner().map(|r| {
            Ok(SlowReply {
                text: r?.text.to_uppercase(),
            })
        })))
    }

    async fn broadcast(
        &self,
        request: Request<BroadcastRequest>,
    ) -> Result<BroadcastReply, Status> {
        let caller = SchoolEventsCaller::new(request.session().clone());
        let notice = Notice {
            text: request.text.clone(),
            sent_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        };
        let ack = caller.notify(&notice, Duration::from_secs(10)).await?;
        Ok(BroadcastReply { answer: ack.reply })
    }

    async fn storage_grant(&self, request: Request<GrantRequest>) -> Result<GrantReply, Status> {
        let user = request.require_user()?;
        let op = Op::try_from(request.op)
            .ok()
            .filter(|op| *op != Op::Unspecified)
            .ok_or_else(|| Status::invalid_argument("an operation is required"))?;
        let mut grant = request.grant(op, user_path(user, &request.path));
        if op == Op::Move {
            grant = grant.destination(user_path(user, &request.dest_path));
        }
        if let Some(max) = request.max_bytes {
            grant = grant.max_bytes(max);
        }
        if request.resumable {
            grant = grant.resumable(true);
        }
        if !request.upload_id.is_empty() {
            grant = grant.upload_id(request.upload_id.clone());
        }
        let grant = grant.sign()?;
        let issued = self.grants_issued.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(GrantReply {
            grant: Some(grant),
            issued,
        })
    }

    async fn read_grant(&self, request: Request<PathRequest>) -> Result<Grant, Status> {
        let user = request.require_user()?;
        self.grants_issued.fetch_add(1, Ordering::Relaxed);
        request
            .grant(Op::ReadFile, user_path(user, &request.path))
            .sign()
    }
}

/// The school server with cloud storage (under `dir/cloud`) on the same endpoint.
async fn start_server(dir: &Path) -> Server {
    let router = school::SchoolServer::new(App::default()).into_router();
    let config = ServerConfig::new(([127, 0, 0, 1], 0).into(), dir);
    let (server, _storage) =
        fluxon_storage::bind_server(config, router, StorageConfig::new(dir.join("cloud")))
            .await
            .expect("server starts");
    server
}

/// Starts the server, runs `program(addr, cert)` and checks it printed every step.
fn run_against_server(language: &str, program: impl FnOnce(&str, &Path) -> Output) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(start_server(dir.path()));
    let addr = server.local_addr().to_string();
    let cert = server
        .dev_certificate_path()
        .expect("development certificate");
    let output = program(&addr, &cert);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("--- {language} stdout\n{stdout}");
    eprintln!(
        "--- {language} stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{language} test failed: {}",
        output.status
    );
    for step in STEPS {
        assert!(
            stdout.lines().any(|l| l == format!("ok {step}")),
            "{language} did not report `ok {step}`"
        );
    }
    runtime.block_on(server.shutdown(Duration::from_secs(1)));
}

/// What each language's test program prints, one `ok <step>` line per check passed.
const STEPS: &[&str] = &[
    "connect",
    "login-required-before-login",
    "signup",
    "signup-duplicate",
    "login-wrong-password",
    "login",
    "profile-round-trip",
    "me",
    "concurrent",
    "reverse",
    "cancel",
    "server-stream",
    "client-stream",
    "bidi-stream",
    "raw-call",
    "storage-grant",
    "storage-upload",
    "storage-download",
    "storage-refused",
    "storage-ops",
    "storage-cancel",
    "resume",
    "bad-trust",
    "close",
];

/// Starts a server and runs `program(addr, cert)` as [`assert_clean_exits`] does: every run must
/// print that it is leaving with the upload in flight, then exit cleanly.
fn exit_with_work_in_flight(language: &str, program: impl Fn(&str, &Path) -> Output) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(start_server(dir.path()));
    let addr = server.local_addr().to_string();
    let cert = server
        .dev_certificate_path()
        .expect("development certificate");
    assert_clean_exits(language, |_| program(&addr, &cert));
    runtime.block_on(server.shutdown(Duration::from_secs(1)));
}

#[test]
fn python_exits_cleanly_with_an_upload_in_flight() {
    let work = python_package();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("foreign/exit_in_flight.py");
    exit_with_work_in_flight("python", |addr, cert| {
        output_within(
            Command::new("python3")
                .arg(&script)
                .arg(addr)
                .arg(cert)
                .arg(work.path())
                .env("PYTHONPATH", work.path()),
            Duration::from_secs(60),
        )
    });
}

#[test]
fn python_client_against_live_server() {
    let work = python_package();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("foreign/test_school.py");
    run_against_server("python", |addr, cert| {
        Command::new("python3")
            .arg(&script)
            .arg(addr)
            .arg(cert)
            .env("PYTHONPATH", work.path())
            .output()
            .expect("python3 runs")
    });
}

#[test]
#[ignore = "needs the Kotlin toolchain: run by bindings/scripts/test-kotlin.sh (in .ci/run)"]
fn kotlin_client_against_live_server() {
    let kotlin = fluxon_foreign_testkit::Kotlin::from_env();
    let foreign = Path::new(env!("CARGO_MANIFEST_DIR")).join("foreign");
    let build = kotlin.build(
        &cdylib(),
        &[
            foreign.join("TestSchool.kt"),
            foreign.join("ExitInFlight.kt"),
        ],
    );
    run_against_server("kotlin", |addr, cert| {
        build
            .java("TestSchoolKt")
            .arg(addr)
            .arg(cert)
            .output()
            .expect("java runs")
    });
    // Exiting with work in flight, alternately by returning from main and by exitProcess.
    let run = std::cell::Cell::new(0);
    exit_with_work_in_flight("kotlin", |addr, cert| {
        run.set(run.get() + 1);
        let mode = if run.get() % 2 == 1 { "return" } else { "exit" };
        output_within(
            build
                .java("exitinflight.ExitInFlightKt")
                .arg(addr)
                .arg(cert)
                .arg(build.work.path())
                .arg(mode),
            Duration::from_secs(60),
        )
    });
}

#[test]
#[ignore = "needs the Swift chroot: run by bindings/scripts/test-swift.sh (in .ci/run)"]
fn swift_client_against_live_server() {
    let root = std::env::var("FLUXON_SWIFT_CHROOT")
        .expect("FLUXON_SWIFT_CHROOT is not set: run bindings/scripts/test-swift.sh");
    let root = PathBuf::from(root);
    assert!(
        root.join("proc/self").exists(),
        "mount /proc in the chroot first (test-swift.sh does)"
    );
    let inside = Path::new("/fluxon-swift-test");
    let work = root.join(inside.strip_prefix("/").expect("absolute"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir in chroot");
    generate("swift", &work);
    std::fs::copy(cdylib(), work.join("libfluxon_school.so")).expect("copy cdylib");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("foreign/main.swift"),
        work.join("main.swift"),
    )
    .expect("copy main.swift");
    // Swift 5 language mode: Swift 6 mode crashes this compiler build on uniffi's async
    // callback helper. Absolute paths: clang's module cache records the module maps' directory.
    let dir = inside.display();
    let compile = format!(
        "cd {dir} && swiftc -swift-version 5 -module-name SchoolTest \
         -module-cache-path {dir}/module-cache \
         -Xcc -fmodule-map-file={dir}/fluxonFFI.modulemap \
         -Xcc -fmodule-map-file={dir}/schoolFFI.modulemap \
         -I {dir} -L {dir} -lfluxon_school fluxon.swift school.swift main.swift -o school-test"
    );
    run(Command::new("chroot")
        .arg(&root)
        .args(["/bin/sh", "-c", &compile]));
    run_against_server("swift", |addr, cert| {
        std::fs::copy(cert, work.join("dev-cert.pem")).expect("copy certificate");
        let cert_inside = inside.join("dev-cert.pem");
        Command::new("chroot")
            .arg(&root)
            .args([
                "/usr/bin/env",
                &format!("LD_LIBRARY_PATH={}", inside.display()),
            ])
            .arg(inside.join("school-test"))
            .arg(addr)
            .arg(cert_inside)
            .output()
            .expect("chroot runs")
    });
    let _ = std::fs::remove_dir_all(&work);
}
