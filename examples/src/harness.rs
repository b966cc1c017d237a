//! Runs an example's server binary and its client binary as separate processes, for the
//! examples' end-to-end tests. Every wait is bounded.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to print its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client run may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a server or client could not be run.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The process could not be spawned or waited for.
    #[error("{program}: {source}")]
    Io {
        /// The binary.
        program: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The server exited or did not print its address in time.
    #[error("{program} did not print `{marker}` within {timeout:?}; its output so far:\n{output}")]
    NoAddress {
        /// The binary.
        program: String,
        /// The line prefix looked for.
        marker: String,
        /// The wait.
        timeout: Duration,
        /// What it printed.
        output: String,
    },
    /// The client did not finish in time (it was killed).
    #[error("{program} did not finish within {timeout:?}")]
    Timeout {
        /// The binary.
        program: String,
        /// The wait.
        timeout: Duration,
    },
}

/// A running server process, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: String,
}

impl ServerProcess {
    /// Starts `program` (an fluxon-app server) on 127.0.0.1 with an OS-chosen port and
    /// `data_dir`, without the console, and waits for the `NAME listening on ADDR` line.
    pub fn start(program: &Path, name: &str, data_dir: &Path) -> Result<Self, HarnessError> {
        Self::start_with(program, name, data_dir, &[])
    }

    /// [`ServerProcess::start`] with more arguments (`--database URL`, say).
    pub fn start_with(
        program: &Path,
        name: &str,
        data_dir: &Path,
        extra: &[&str],
    ) -> Result<Self, HarnessError> {
        Self::start_with_env(program, name, data_dir, extra, &[])
    }

    /// [`ServerProcess::start_with`] with more environment variables (an object store's
    /// `AWS_*` settings, say).
    pub fn start_with_env(
        program: &Path,
        name: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        let program_name = program.display().to_string();
        let mut child = Command::new(program)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-console",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| HarnessError::Io {
                program: program_name.clone(),
                source,
            })?;
        let marker = format!("{name} listening on ");
        let (tx, rx) = mpsc::channel::<String>();
        if let Some(stdout) = child.stdout.take() {
            // Reads the server's output on a thread so that the wait below is bounded. The
            // thread keeps reading after the address is found, until the server's stdout
            // closes: closing the pipe early would make the server's later writes fail.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
        }
        let mut server = Self {
            child,
            addr: String::new(),
        };
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix(&marker) {
                        server.addr = addr.trim().to_owned();
                        return Ok(server);
                    }
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(_) => {
                    return Err(HarnessError::NoAddress {
                        program: program_name,
                        marker,
                        timeout: START_TIMEOUT,
                        output: seen,
                    })
                }
            }
        }
    }

    /// The address the server listens on (`127.0.0.1:PORT`).
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// The nodes of one cluster, as processes of the same server binary on 127.0.0.1: they share
/// a secret key and the first node's development certificate (as nodes behind one name share
/// one certificate), and each has its own data directory `<dir>/nodeN` and node id `nodeN`.
#[derive(Debug)]
pub struct ClusterProcesses {
    /// The running nodes, in start order (`None` once killed).
    pub nodes: Vec<Option<ServerProcess>>,
    /// The certificate every node serves (the first node's `dev-cert.pem`).
    pub cert: std::path::PathBuf,
    /// The address of every node, in start order (kept after a node is killed).
    pub addrs: Vec<String>,
}

impl ClusterProcesses {
    /// Starts `count` nodes of `program` one after the other (the first one creates what the
    /// others share: the certificate and the application's tables). `extra` and `env` are
    /// given to every node: the shared database, the NATS server, the object store.
    pub fn start(
        program: &Path,
        name: &str,
        dir: &Path,
        count: usize,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        // One random key for the whole cluster, as hex.
        let (_, bytes) = fluxon_server::SecretKey::generate().map_err(|e| HarnessError::Io {
            program: "the cluster's secret key".into(),
            source: std::io::Error::other(e),
        })?;
        let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut env: Vec<(&str, &str)> = env.to_vec();
        env.push(("FLUXON_SECRET_KEY", &key));
        let cert = dir.join("node1").join(fluxon_server::DEV_CERT_FILE);
        let cert_key = dir.join("node1").join(fluxon_server::DEV_KEY_FILE);
        let (cert_text, key_text) = (cert.display().to_string(), cert_key.display().to_string());
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for n in 1..=count {
            let id = format!("node{n}");
            let mut args: Vec<&str> = extra.to_vec();
            args.extend(["--node-id", &id]);
            if n > 1 {
                args.extend(["--cert", &cert_text, "--key", &key_text]);
            }
            let node = ServerProcess::start_with_env(program, name, &dir.join(&id), &args, &env)?;
            addrs.push(node.addr().to_owned());
            nodes.push(Some(node));
        }
        Ok(Self { nodes, cert, addrs })
    }

    /// Kills node `index` (0-based) with SIGKILL, as a crash would, and waits for it to end.
    pub fn kill(&mut self, index: usize) {
        if let Some(slot) = self.nodes.get_mut(index) {
            drop(slot.take());
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `program` with `args` to completion, killing it after [`CLIENT_TIMEOUT`].
pub fn run_client(program: &Path, args: &[&std::ffi::OsStr]) -> Result<Output, HarnessError> {
    let program_name = program.display().to_string();
    let io = |source| HarnessError::Io {
        program: program_name.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io)?;
    // Drain both pipes on threads so a chatty client cannot block on a full pipe.
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = std::time::Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io)? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::Timeout {
                program: program_name,
                timeout: CLIENT_TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

fn drain<R: std::io::Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}
