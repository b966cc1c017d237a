//! Server processes for crash and restart tests: `tests/src/bin/crash-server.rs`, started with
//! its own data directory, stopped with SIGINT or killed with SIGKILL.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use fluxon_client::{ClientConfig, Trust};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A child server process and the address it listens on.
pub(crate) struct Child {
    pub(crate) process: tokio::process::Child,
    pub(crate) addr: SocketAddr,
}

impl Child {
    /// Kills the process with SIGKILL and waits for it.
    pub(crate) async fn kill(mut self) {
        self.process.start_kill().expect("SIGKILL sent");
        let _ = self.process.wait().await;
    }

    /// Asks the process to stop with SIGINT (as Ctrl-C does) and waits for it to exit cleanly.
    pub(crate) async fn interrupt(mut self) {
        let pid = self.process.id().expect("the process is running");
        let sent = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGINT sent");
        let status = tokio::time::timeout(Duration::from_secs(60), self.process.wait())
            .await
            .expect("the server stops within 60 s of SIGINT")
            .expect("exit status");
        assert!(status.success(), "graceful stop exits cleanly: {status}");
    }
}

/// Starts crash-server on `dir` and `port` (0: any) with extra `args` (`--state`, `--cloud`,
/// `--node`), under an `RLIMIT_FSIZE` of `fsize_limit` bytes when given.
pub(crate) async fn spawn_server_with(
    dir: &Path,
    port: u16,
    fsize_limit: Option<u64>,
    args: &[&str],
) -> Child {
    let bin = env!("CARGO_BIN_EXE_crash-server");
    let mut command = match fsize_limit {
        // RLIMIT_FSIZE through prlimit(1); SIGXFSZ ignored (inherited across exec) so that an
        // oversized write fails with EFBIG instead of killing the process.
        Some(limit) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c")
                .arg(format!(
                    "trap '' XFSZ; exec prlimit --fsize={limit} \"$0\" \"$@\""
                ))
                .arg(bin);
            c
        }
        None => tokio::process::Command::new(bin),
    };
    command.arg(dir).arg(port.to_string()).args(args);
    let mut process = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("crash-server starts");
    let stdout = process.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("server prints its address")
        .expect("stdout readable")
        .expect("a line");
    let addr = line
        .strip_prefix("LISTENING ")
        .expect("LISTENING line")
        .parse()
        .expect("an address");
    Child { process, addr }
}

/// Starts crash-server on `dir` and `port`, as [`spawn_server_with`] with no extra arguments.
pub(crate) async fn spawn_server(dir: &Path, port: u16, fsize_limit: Option<u64>) -> Child {
    spawn_server_with(dir, port, fsize_limit, &[]).await
}

/// A client trusting the development certificate of the crash-server on `dir`.
pub(crate) fn child_client(dir: &Path) -> ClientConfig {
    ClientConfig::new(Trust::CertificateFile(
        dir.join("server").join(fluxon_server::DEV_CERT_FILE),
    ))
    .connect_timeout(Duration::from_secs(10))
    .default_timeout(Duration::from_secs(20))
}
