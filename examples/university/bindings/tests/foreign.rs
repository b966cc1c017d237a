//! The university example's Python client against a live university server (`university::app()`
//! in this process on 127.0.0.1:0, SQLite database in a temp dir), the client generated from
//! this crate's cdylib: the schema's oneof and a reverse call answered in Python.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fluxon_app::Settings;
use fluxon_foreign_testkit::{cdylib, output_within, python_package};

#[test]
fn python_runs_the_university_flow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let work = python_package(&cdylib("university_bindings"), "university_app");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let settings = Settings::for_data_dir(
        dir.path().join("data"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/../schema"),
    );
    let running = runtime
        .block_on(university::app().start(settings))
        .expect("the university server starts");
    let addr = running.server().local_addr().to_string();
    let cert = running
        .server()
        .dev_certificate_path()
        .expect("development certificate");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/university_flow.py");
    let output = output_within(
        Command::new("python3")
            .arg(script)
            .arg(&addr)
            .arg(&cert)
            .env("PYTHONPATH", work.path()),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("--- stdout\n{stdout}");
    eprintln!("--- stderr\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "python failed: {}", output.status);
    for step in [
        "connect",
        "signup-oneof",
        "signup-without-profile",
        "courses",
        "catalog-stream",
        "announce-reverse-call",
        "close",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("ok {step}")),
            "python did not report `ok {step}`"
        );
    }
    runtime.block_on(async move {
        running.server().shutdown(Duration::from_secs(1)).await;
        drop(running);
    });
}
