//! The cloud example end to end: `cloud-client` against `cloud-server`, as separate processes
//! on loopback with a fresh data directory (database and storage root inside it).

use std::ffi::OsStr;
use std::path::Path;

use fluxon_examples::harness::{run_client, ServerProcess};

#[test]
fn cloud_client_runs_its_flow_against_cloud_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_cloud-server")),
        cloud::APP_NAME,
        dir.path(),
    )
    .expect("the server starts");
    run_flow(&server, dir.path());
}

/// The same flow with the application database and the shared state (sessions, used grants)
/// on PostgreSQL; the files stay in the local storage root.
#[test]
fn cloud_flow_on_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(url) = rt.block_on(fluxon_server::testing::fresh_postgres("cloud_flow")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        Path::new(env!("CARGO_BIN_EXE_cloud-server")),
        cloud::APP_NAME,
        dir.path(),
        &["--database", &url, "--state-database", &url],
    )
    .expect("the server starts on PostgreSQL");
    run_flow(&server, dir.path());
    assert!(!dir.path().join("cloud.db").exists(), "no SQLite file");
    assert!(
        !dir.path().join("fluxon.db").exists(),
        "no SQLite state file"
    );
}

/// Runs the client's whole flow and checks what it printed and what it left in storage.
fn run_flow(server: &ServerProcess, dir: &Path) {
    let output = run_client(
        Path::new(env!("CARGO_BIN_EXE_cloud-client")),
        &[
            OsStr::new("--addr"),
            OsStr::new(server.addr()),
            OsStr::new("--data-dir"),
            dir.as_os_str(),
            OsStr::new("--run-id"),
            OsStr::new("t1"),
        ],
    )
    .expect("the client runs");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed ({}):\n{out}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "signup                             -> user 1 (ada-t1)",
        "create_folder before create_owner  -> refused: failed_precondition",
        "create_owner                       -> root directory 1 at u1 (0 of 1048576 bytes used)",
        "create_folder docs/reports         -> u1/docs/reports",
        "create_folder missing/inner        -> refused: not_found",
        "create_folder ../escape            -> refused: invalid_argument",
        "upload 614400/614400 bytes (100%)",
        "upload                             -> stored 614400 bytes",
        "write_file over the quota          -> refused: resource_exhausted: quota exceeded",
        "upload past the grant's cap        -> refused: resource_exhausted",
        "refused upload docs/liar.bin       -> not recorded, reservation released (614437 of 1048576 bytes used)",
        "download 614400/614400 bytes (100%)",
        "matches the upload, bytes identical",
        "  docs/reports/data.bin (614400 bytes)",
        "tree check                         -> 4 entries, same as in storage",
        "another user reads the file        -> refused: permission_denied",
        "delete_item docs/reports           -> freed 614400 bytes\n",
        "read_tree                          -> docs, docs/hello.txt (37 of 1048576 bytes used)\n",
        "login                              -> user 1",
        "done",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }

    // The files are where the grants said, inside the server's storage root.
    let stored = dir.join("cloud/u1/docs/hello.txt");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        b"Hello from the Fluxon cloud example!\n"
    );
    assert!(!dir.join("cloud/u1/docs/reports").exists());
    assert!(!dir.join("cloud/u1/docs/liar.bin").exists());
}
