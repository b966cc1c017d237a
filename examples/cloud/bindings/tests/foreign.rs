//! The cloud example's Python (and Kotlin) client against a live cloud server: the server as `cloud-server`
//! runs it (`cloud::app()`: SQLite database, storage root, storage hooks) in this process on
//! 127.0.0.1:0, the client generated from this crate's cdylib, each script in its own
//! interpreter.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fluxon_app::{CloudSettings, Running, Settings};
use fluxon_foreign_testkit::{assert_clean_exits, cdylib, output_within, python_package};

/// The cloud server on a fresh data directory in `dir`.
async fn start_server(dir: &Path) -> Running {
    let data = dir.join("data");
    let mut settings =
        Settings::for_data_dir(&data, concat!(env!("CARGO_MANIFEST_DIR"), "/../schema"));
    settings.cloud = Some(CloudSettings {
        root: data.join("cloud"),
        port: None,
    });
    cloud::app()
        .start(settings)
        .await
        .expect("the cloud server starts")
}

/// A running cloud server and what a client needs to reach it.
struct Live {
    runtime: tokio::runtime::Runtime,
    running: Running,
    addr: String,
    cert: std::path::PathBuf,
}

fn live(dir: &Path) -> Live {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let running = runtime.block_on(start_server(dir));
    let addr = running.server().local_addr().to_string();
    let cert = running
        .server()
        .dev_certificate_path()
        .expect("development certificate");
    Live {
        runtime,
        running,
        addr,
        cert,
    }
}

/// Runs the Python script `name` against `live` with the package in `work`, within `limit`.
fn python(name: &str, live: &Live, work: &Path, limit: Duration) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name);
    output_within(
        Command::new("python3")
            .arg(script)
            .arg(&live.addr)
            .arg(&live.cert)
            .arg(work)
            .env("PYTHONPATH", work),
        limit,
    )
}

/// Files named `name` anywhere under `dir`.
fn files_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    fluxon_foreign_testkit::walk(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .collect()
}

/// What each language's cloud flow prints, one `ok <step>` line per check passed.
const FLOW_STEPS: &[&str] = &[
    "connect",
    "signup",
    "owner-and-folder",
    "upload",
    "download",
    "tree",
    "quota-refused",
    "no-phantom",
    "callback-raises",
    "delete",
    "close",
];

#[test]
fn python_runs_the_cloud_flow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let work = python_package(&cdylib("cloud_bindings"), "cloud_app");
    let live = live(dir.path());
    let output = python(
        "cloud_flow.py",
        &live,
        work.path(),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("--- stdout\n{stdout}");
    eprintln!("--- stderr\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "python failed: {}", output.status);
    for step in FLOW_STEPS {
        assert!(
            stdout.lines().any(|l| l == format!("ok {step}")),
            "python did not report `ok {step}`"
        );
    }
    assert!(files_named(&dir.path().join("data/cloud"), "half.bin").is_empty());
    assert!(files_named(&dir.path().join("data/cloud"), "liar.bin").is_empty());
}

/// No `big.bin` in storage and no file row in the application's database: the interrupted
/// uploads left nothing.
fn assert_nothing_recorded_of_big_uploads(dir: &Path) {
    assert!(files_named(&dir.join("data/cloud"), "big.bin").is_empty());
    let db = fluxon_db::Database::open(dir.join("data/app.db")).expect("the app database");
    let recorded = db
        .select::<cloud::cloud::models::File>()
        .filter(cloud::cloud::models::File::NAME.eq("big.bin"))
        .count()
        .expect("count files");
    assert_eq!(
        recorded, 0,
        "a file was recorded for an upload that never finished"
    );
}

#[test]
fn python_exits_cleanly_with_an_upload_in_flight_and_nothing_is_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let work = python_package(&cdylib("cloud_bindings"), "cloud_app");
    let live = live(dir.path());
    assert_clean_exits("python", |_| {
        python(
            "exit_in_flight.py",
            &live,
            work.path(),
            Duration::from_secs(60),
        )
    });
    // The interrupted uploads left nothing: no file in storage, no row in the database.
    assert_nothing_recorded_of_big_uploads(dir.path());
    live.runtime
        .block_on(live.running.server().shutdown(Duration::from_secs(1)));
}

#[test]
#[ignore = "needs the Kotlin toolchain: run by bindings/scripts/test-kotlin.sh (in .ci/run)"]
fn kotlin_runs_the_cloud_flow() {
    let kotlin = fluxon_foreign_testkit::Kotlin::from_env();
    let kotlin_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kotlin");
    let build = kotlin.build(
        &cdylib("cloud_bindings"),
        &[
            kotlin_dir.join("CloudFlow.kt"),
            kotlin_dir.join("ExitInFlight.kt"),
        ],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let live = live(dir.path());
    let output = output_within(
        build
            .java("CloudFlowKt")
            .arg(&live.addr)
            .arg(&live.cert)
            .arg(build.work.path()),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("--- stdout\n{stdout}");
    eprintln!("--- stderr\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "kotlin failed: {}", output.status);
    for step in FLOW_STEPS {
        assert!(
            stdout.lines().any(|l| l == format!("ok {step}")),
            "kotlin did not report `ok {step}`"
        );
    }
    assert!(files_named(&dir.path().join("data/cloud"), "half.bin").is_empty());
    assert!(files_named(&dir.path().join("data/cloud"), "liar.bin").is_empty());

    // Leaving the JVM with an upload in flight, alternately by returning from main and by
    // exitProcess: a clean exit each time, and nothing recorded or stored.
    assert_clean_exits("kotlin", |run| {
        let mode = if run % 2 == 1 { "return" } else { "exit" };
        output_within(
            build
                .java("cloudexit.ExitInFlightKt")
                .arg(&live.addr)
                .arg(&live.cert)
                .arg(build.work.path())
                .arg(mode),
            Duration::from_secs(120),
        )
    });
    assert_nothing_recorded_of_big_uploads(dir.path());
    live.runtime
        .block_on(live.running.server().shutdown(Duration::from_secs(1)));
}
