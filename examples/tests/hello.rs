//! Runs the `hello` example: its client against its server, as separate processes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the server when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hello_client_runs_its_flow_against_hello_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_hello-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let stdout = server.stdout.take().unwrap();
    let _server = KillOnDrop(server);

    // The server prints its address once it listens.
    let started = Instant::now();
    let mut addr = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref().take(20) {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("hello-server listening on ") {
            addr = Some(a.trim().to_owned());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server too slow to start"
        );
    }
    let addr = addr.expect("server printed its address");
    // Keep reading what it prints after, until it exits: the pipe stays open.
    std::thread::spawn(move || lines.for_each(drop));

    let output = Command::new(env!("CARGO_BIN_EXE_hello-client"))
        .args(["--addr", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("say_hello   -> Hello, Fluxon!"), "{stdout}");
    assert!(
        stdout.contains("refused before login: unauthenticated"),
        "{stdout}"
    );
    assert!(
        stdout.contains("subscribe   -> 3 ticks acknowledged"),
        "{stdout}"
    );
}
