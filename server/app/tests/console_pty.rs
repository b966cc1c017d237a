//! The console once through a real pseudo-terminal: rustyline only runs its editor on a
//! terminal, so this is the test of the prompt, completion, log control and shutdown as an
//! operator sees them.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fluxon-demo-server");

#[test]
fn console_under_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let schema = dir.path().join("schema");
    let status = Command::new(BIN)
        .args(["schema", "--schema-dir"])
        .arg(&schema)
        .args(["save", "initial"])
        .status()
        .unwrap();
    assert!(status.success());

    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--port", "0", "--log-level", "info", "--data-dir"])
        .arg(&data)
        .arg("--schema-dir")
        .arg(&schema)
        .env_remove("RUST_LOG");
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    p.exp_string("demo listening on 127.0.0.1:").unwrap();
    p.exp_string("demo> ").unwrap();

    p.send_line("routes").unwrap();
    p.exp_string("demo.Demo/Me  login required").unwrap();
    p.exp_string("3 routes").unwrap();

    // Tab completes `sta` to `stats`.
    p.send("sta\t").unwrap();
    p.send_line("").unwrap();
    p.exp_string("total: 0 calls, 0 errors").unwrap();

    p.send_line("schemas").unwrap();
    p.exp_string("*    1  initial").unwrap();

    p.send_line("bogus").unwrap();
    p.exp_string("error: unknown command `bogus`").unwrap();

    p.send_line("loglevel debug").unwrap();
    p.exp_string("log filter is now `debug`").unwrap();

    p.send_line("shutdown").unwrap();
    p.exp_string("shutting down").unwrap();
    // The shutdown's log line comes through the logger after the console ended.
    p.exp_string("server stopped").unwrap();
    p.exp_eof().unwrap();
}
