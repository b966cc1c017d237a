//! The university example end to end: `university-client` against `university-server`, as
//! separate processes on loopback with a fresh data directory.

use std::ffi::OsStr;
use std::path::Path;

use fluxon_examples::harness::{run_client, ServerProcess};

fn run_flow(server: &ServerProcess, data_dir: &Path, run_id: &str) -> String {
    let output = run_client(
        Path::new(env!("CARGO_BIN_EXE_university-client")),
        &[
            OsStr::new("--addr"),
            OsStr::new(server.addr()),
            OsStr::new("--data-dir"),
            data_dir.as_os_str(),
            OsStr::new("--run-id"),
            OsStr::new(run_id),
        ],
    )
    .expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "client failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn university_client_runs_its_flow_against_university_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_university-server")),
        university::APP_NAME,
        dir.path(),
    )
    .expect("the server starts");

    let out = run_flow(&server, dir.path(), "t1");
    for expected in [
        "teacher signup               -> user 1 (teacher, Ada Lovelace)",
        "enroll before login          -> refused: unauthenticated",
        "student signup (laptop)      -> user 2 (student, Alan Turing)",
        "login with a wrong password  -> refused: unauthenticated: wrong username or password",
        "student login (phone)        -> user 2 (student)",
        "student creates a course     -> refused: permission_denied: teachers only",
        "create course                -> CS101-t1 Programming (taught by Ada Lovelace)",
        "create course                -> MA101-t1 Calculus (taught by Ada Lovelace)",
        "enroll                       -> CS101-t1 Programming",
        "enroll again                 -> refused: already_exists",
        "teacher enrolls              -> refused: permission_denied: students only",
        "student's courses            -> CS101-t1\n",
        "teacher's courses            -> CS101-t1, MA101-t1\n",
        "catalog (streamed)           -> CS101-t1, MA101-t1\n",
        "  <- [phone] announcement in CS101-t1 (Programming) from Ada Lovelace: the exam moves to Friday",
        "  <- [laptop] announcement in CS101-t1 (Programming) from Ada Lovelace: the exam moves to Friday",
        "announce                     -> 1 student(s), delivered to 2 device(s), 0 failed",
        "notified devices             -> laptop, phone",
        "done",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }

    // The database persists accounts: a second run with other names works on the same server
    // (new users 3 and 4), and the first run's course codes are taken.
    let out = run_flow(&server, dir.path(), "t2");
    assert!(
        out.contains("teacher signup               -> user 3"),
        "{out}"
    );
    assert!(out.contains("delivered to 2 device(s)"), "{out}");

    // Passwords are stored as argon2id hashes only (in the database file or its WAL).
    let mut db = std::fs::read(dir.path().join("university.db")).unwrap();
    db.extend(std::fs::read(dir.path().join("university.db-wal")).unwrap_or_default());
    let text = String::from_utf8_lossy(&db);
    assert!(
        text.contains("$argon2id$"),
        "no argon2id hash in the database"
    );
    assert!(
        !text.contains("correct horse t1"),
        "a plaintext password is stored"
    );
}

/// The same flow with the application database and the shared state on PostgreSQL.
#[test]
fn university_flow_on_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(url) = rt.block_on(fluxon_server::testing::fresh_postgres("university_flow")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        Path::new(env!("CARGO_BIN_EXE_university-server")),
        university::APP_NAME,
        dir.path(),
        &["--database", &url, "--state-database", &url],
    )
    .expect("the server starts on PostgreSQL");
    let out = run_flow(&server, dir.path(), "p1");
    for expected in [
        "teacher signup               -> user 1 (teacher, Ada Lovelace)",
        "enroll again                 -> refused: already_exists",
        "teacher's courses            -> CS101-p1, MA101-p1\n",
        "announce                     -> 1 student(s), delivered to 2 device(s), 0 failed",
        "done",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let out = run_flow(&server, dir.path(), "p2");
    assert!(
        out.contains("teacher signup               -> user 3"),
        "{out}"
    );
    assert!(
        !dir.path().join("university.db").exists(),
        "no SQLite file beside a PostgreSQL database"
    );
}
