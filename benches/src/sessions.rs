//! Sessions at scale: server memory per idle session, connect and resume times, and calls/s
//! while many sessions are connected.
//!
//! Each server runs in a child process of its own (this binary again, `sessions --serve
//! fluxon|raw`), so its resident memory is its own: the parent reads `/proc/<pid>/status` before
//! and after connecting N idle sessions. The peer is a raw quinn server with the same
//! certificate, TLS and transport configuration (`fluxon_server::endpoint_config`) that accepts
//! connections and waits for streams on each, without Fluxon's handshake, session registry or
//! session store: the ratio is Fluxon's per-session overhead over a bare QUIC connection.
//!
//! All client connections of one kind share one client endpoint (one UDP socket).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fluxon_client::{ClientConfig, ClientEndpoint, Connection, ReconnectPolicy, Trust};
use fluxon_server::{Server, ServerConfig, ServerLimits};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::calls;
use crate::report::{Comparison, Metric};
use crate::stats::{percentile, Run, Summary};

/// What a child server prints on stdout once it listens: `<marker> <addr> <cert path>`.
const READY: &str = "FLUXON-BENCH-SERVER";
/// Fluxon's ALPN (`fluxon_proto::ALPN`), which the raw peer speaks too.
const ALPN: &[u8] = b"fluxon/1";
/// Connections opened at once while filling a server with idle sessions.
const CONNECT_CONCURRENCY: usize = 64;
/// Time allowed for one connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Warm-up connects per server before the memory baseline.
const WARMUP_CONNECTS: usize = 16;

/// Which server a child process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeKind {
    /// A Fluxon server with an echo route.
    Fluxon,
    /// A raw quinn server with the same TLS and transport configuration.
    Raw,
}

impl ServeKind {
    fn arg(self) -> &'static str {
        match self {
            Self::Fluxon => "fluxon",
            Self::Raw => "raw",
        }
    }
}

/// How to start a child server process.
#[derive(Clone, Debug)]
pub enum Launcher {
    /// This benchmark binary: `<current exe> sessions --serve <kind>`.
    Bench,
    /// A test binary, running the named (ignored) test that serves when `FLUXON_BENCH_SERVE`
    /// is set.
    #[cfg_attr(not(test), allow(dead_code))]
    Test(&'static str),
}

/// Environment variable that makes the test launcher's test serve.
pub const SERVE_ENV: &str = "FLUXON_BENCH_SERVE";

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Idle session counts to measure at.
    pub sessions: Vec<usize>,
    /// Sequential connects timed per round and contender (new session, resume, raw handshake).
    pub connects: usize,
    /// Calls in flight on the one measured connection.
    pub in_flight: usize,
    /// Echo payload in bytes.
    pub payload: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub rounds: usize,
    /// Longest wait for a server's memory to settle after connecting.
    pub settle: Duration,
    pub launcher: Launcher,
}

impl Plan {
    /// The defaults for `sessions`, `duration` per calls run and `rounds`.
    pub fn new(sessions: Vec<usize>, connects: usize, duration: Duration, rounds: usize) -> Self {
        Self {
            sessions,
            connects,
            in_flight: 16,
            payload: 64,
            duration,
            warmup: duration / 4,
            rounds: rounds.max(1),
            settle: Duration::from_secs(20),
            launcher: Launcher::Bench,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The child side.

/// Runs a server for the parent benchmark: prints `READY <addr> <cert>` on stdout and serves
/// until stdin closes, then exits the process.
pub async fn serve(kind: ServeKind) -> anyhow::Result<Vec<Comparison>> {
    let dir = tempfile::tempdir()?;
    let stop = async {
        // Stdin closes when the parent closes it or dies.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await
    };
    // The default connection limit (10,000) is exactly the largest default session count; the
    // measured connections, warm-up and timed connects come on top.
    let config = ServerConfig::new(([127, 0, 0, 1], 0).into(), dir.path())
        .limits(ServerLimits::default().max_connections(usize::MAX));
    match kind {
        ServeKind::Fluxon => {
            let server = Server::bind(config, calls::echo_router()).await?;
            let cert = server
                .dev_certificate_path()
                .context("no development certificate")?;
            announce(server.local_addr(), &cert)?;
            stop.await?;
            server.shutdown(Duration::from_secs(1)).await;
        }
        ServeKind::Raw => {
            let quic = fluxon_server::endpoint_config(&config)?;
            let endpoint = quinn::Endpoint::server(quic, config.listen)?;
            tokio::spawn(serve_raw(endpoint.clone()));
            let cert = config.data_dir.join(fluxon_server::DEV_CERT_FILE);
            announce(endpoint.local_addr()?, &cert)?;
            stop.await?;
            endpoint.close(0u32.into(), b"done");
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
    }
    drop(dir);
    // Exit here: the caller would print an (empty) report on a stdout nobody reads any more.
    std::process::exit(0)
}

fn announce(addr: SocketAddr, cert: &std::path::Path) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{READY} {addr} {}", cert.display())?;
    out.flush()?;
    Ok(())
}

/// Holds every connection and waits for streams on it, as a bare QUIC server would.
async fn serve_raw(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    if let Ok(data) = recv.read_to_end(64 * 1024).await {
                        let _ = send.write_all(&data).await;
                        let _ = send.finish();
                    }
                });
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The parent side.

/// A child server process; killed when dropped if it has not exited by then.
struct ServerProcess {
    kind: ServeKind,
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    cert: PathBuf,
}

impl ServerProcess {
    fn spawn(kind: ServeKind, launcher: &Launcher) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut command = std::process::Command::new(exe);
        match launcher {
            Launcher::Bench => {
                command.args(["sessions", "--serve", kind.arg()]);
            }
            Launcher::Test(name) => {
                command
                    .args([
                        name,
                        "--exact",
                        "--ignored",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(SERVE_ENV, kind.arg());
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the server process")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        // Read the announcement on a thread (bounded wait), then keep draining stdout.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // (A test harness may print its own text before it on the same line.)
                if let Some(at) = line.find(READY) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line[at..].to_owned());
                    }
                }
            }
        });
        let mut process = Self {
            kind,
            child,
            stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert: PathBuf::new(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .context("the server process did not announce its address")?;
        let mut parts = line.split_whitespace().skip(1);
        process.addr = parts.next().context("no address")?.parse()?;
        process.cert = parts.next().context("no certificate path")?.into();
        Ok(process)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB.
    fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(&format!("/proc/{}/status", self.pid()))
    }

    /// CPU time used so far (user + system).
    fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').context("bad stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // USER_HZ, which the kernel fixes at 100 for /proc on Linux.
        Ok(Duration::from_millis(ticks * 10))
    }

    /// Waits until the resident memory stops moving (three samples 500 ms apart within 0.5%),
    /// at most `limit`; returns it in KiB.
    async fn settled_rss_kib(&self, limit: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + limit;
        let mut samples = vec![self.rss_kib()?];
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            samples.push(self.rss_kib()?);
            let last = &samples[samples.len().saturating_sub(3)..];
            let (lo, hi) = (last.iter().min().unwrap(), last.iter().max().unwrap());
            if (last.len() == 3 && (hi - lo) * 200 <= *hi) || Instant::now() >= deadline {
                return Ok(*samples.last().unwrap());
            }
        }
    }

    /// Closes stdin so the server shuts down, waits briefly, then kills it if needed.
    fn stop(mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "sessions: the {:?} server did not exit; killing it",
            self.kind
        );
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stdin.take();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn rss_kib(status_path: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(status_path)?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS")?
        .parse()?)
}

/// Connects to the Fluxon server through one shared endpoint.
struct FluxonClient {
    addr: SocketAddr,
    config: ClientConfig,
}

impl FluxonClient {
    fn new(server: &ServerProcess) -> anyhow::Result<Self> {
        let endpoint = ClientEndpoint::for_server(server.addr)?;
        let config = ClientConfig::new(Trust::CertificateFile(server.cert.clone()))
            .endpoint(endpoint)
            .connect_timeout(CONNECT_TIMEOUT)
            // An idle session that loses its connection must not come back on its own.
            .reconnect(ReconnectPolicy::disabled());
        Ok(Self {
            addr: server.addr,
            config,
        })
    }

    async fn connect(&self, resume: Option<Vec<u8>>) -> anyhow::Result<Connection> {
        let mut config = self.config.clone();
        if let Some(token) = resume {
            config = config.resume_token(token);
        }
        Ok(Connection::connect(self.addr, config).await?)
    }
}

/// Connects to the raw server through one shared endpoint, with Fluxon's client transport
/// settings (keep-alive 5 s, idle timeout 30 s, 64 streams).
struct RawClient {
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
}

impl RawClient {
    fn new(server: &ServerProcess) -> anyhow::Result<Self> {
        let pem = std::fs::read(&server.cert)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let defaults = ClientConfig::new(Trust::CertificatePem(pem));
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(defaults.keep_alive))
            .max_idle_timeout(Some(defaults.idle_timeout.try_into()?))
            .max_concurrent_bidi_streams(64u32.into())
            .max_concurrent_uni_streams(0u32.into());
        let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
        config.transport_config(Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        endpoint.set_default_client_config(config);
        Ok(Self {
            addr: server.addr,
            endpoint,
        })
    }

    async fn connect(&self) -> anyhow::Result<quinn::Connection> {
        let connecting = self.endpoint.connect(self.addr, "localhost")?;
        Ok(tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .context("raw connect timed out")??)
    }
}

/// Opens `n` connections with `connect`, `CONNECT_CONCURRENCY` at a time; every one must
/// succeed (one retry each).
async fn connect_many<T, F, Fut>(n: usize, connect: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let connect = Arc::new(connect);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONNECT_CONCURRENCY.min(n.max(1)) {
        let next = Arc::clone(&next);
        let connect = Arc::clone(&connect);
        workers.spawn(async move {
            let mut mine = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let conn = match connect().await {
                    Ok(conn) => conn,
                    Err(first) => connect()
                        .await
                        .with_context(|| format!("connect failed twice (first: {first:#})"))?,
                };
                mine.push(conn);
            }
            Ok::<_, anyhow::Error>(mine)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(joined) = workers.join_next().await {
        all.extend(joined??);
    }
    Ok(all)
}

/// Times `n` sequential connects of each kind. Returns (new, resumed, raw) latencies.
async fn time_connects(
    fluxon: &FluxonClient,
    raw: &RawClient,
    n: usize,
    raw_first: bool,
) -> anyhow::Result<[Vec<Duration>; 3]> {
    let time_raw = || async {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let conn = raw.connect().await?;
            times.push(t.elapsed());
            conn.close(0u32.into(), b"done");
        }
        Ok::<_, anyhow::Error>(times)
    };
    let mut raw_times = if raw_first {
        time_raw().await?
    } else {
        Vec::new()
    };
    let mut new_times = Vec::with_capacity(n);
    let mut originals = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let conn = fluxon.connect(None).await?;
        new_times.push(t.elapsed());
        originals.push(conn.session());
        conn.close();
    }
    // Let the server see the closes: the resumes then reload their sessions from the store, as
    // after a real reconnect.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut resume_times = Vec::with_capacity(n);
    for original in originals {
        let t = Instant::now();
        let conn = fluxon.connect(Some(original.token.clone())).await?;
        resume_times.push(t.elapsed());
        let resumed = conn.session();
        anyhow::ensure!(
            resumed.resumed && resumed.id == original.id,
            "resume returned session {} (resumed: {}), expected {}",
            resumed.id,
            resumed.resumed,
            original.id
        );
        conn.close();
    }
    if !raw_first {
        raw_times = time_raw().await?;
    }
    Ok([new_times, resume_times, raw_times])
}

/// `in_flight` workers calling the echo route back to back on `conn` for `duration`.
async fn load(
    conn: &Connection,
    in_flight: usize,
    payload: usize,
    duration: Duration,
) -> anyhow::Result<Run> {
    let clients = [calls::Client::Fluxon(conn.clone())];
    calls::load(&clients, in_flight, duration, &calls::Payload::new(payload)).await
}

async fn load_runs(conn: &Connection, plan: &Plan, rounds: usize) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        runs.push(load(conn, plan.in_flight, plan.payload, plan.duration).await?);
    }
    Ok(runs)
}

fn one(value: f64) -> Summary {
    Summary::of(&[value])
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Per-session memory of one server: KiB per session, total MiB, and CPU % while idle.
struct Memory {
    per_session_kib: f64,
    total_mib: f64,
    idle_cpu_pct: f64,
}

async fn fill<T, F, Fut>(
    server: &ServerProcess,
    n: usize,
    plan: &Plan,
    connect: F,
) -> anyhow::Result<(Vec<T>, Memory, f64)>
where
    T: Send + 'static,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send,
{
    let before = server.settled_rss_kib(plan.settle).await?;
    let client_before = rss_kib("/proc/self/status")?;
    let started = Instant::now();
    let conns = connect_many(n, connect).await?;
    let took = started.elapsed();
    let after = server.settled_rss_kib(plan.settle).await?;
    let client_after = rss_kib("/proc/self/status")?;
    let window = Duration::from_secs(3).min(plan.settle);
    let cpu_before = server.cpu_time()?;
    tokio::time::sleep(window).await;
    let cpu = (server.cpu_time()? - cpu_before).as_secs_f64() / window.as_secs_f64() * 100.0;
    eprintln!(
        "sessions: {n} {:?} connections in {:.1} s; server RSS {} -> {} KiB, idle CPU {cpu:.0}%",
        server.kind,
        took.as_secs_f64(),
        before,
        after
    );
    let memory = Memory {
        per_session_kib: (after as f64 - before as f64) / n as f64,
        total_mib: after as f64 / 1024.0,
        idle_cpu_pct: cpu,
    };
    let client_per_conn = (client_after as f64 - client_before as f64) / n as f64;
    Ok((conns, memory, client_per_conn))
}

/// Measures one session count.
async fn measure(n: usize, plan: &Plan, out: &mut Vec<Comparison>) -> anyhow::Result<()> {
    let fluxon_server = ServerProcess::spawn(ServeKind::Fluxon, &plan.launcher)?;
    let raw_server = ServerProcess::spawn(ServeKind::Raw, &plan.launcher)?;
    let fluxon = Arc::new(FluxonClient::new(&fluxon_server)?);
    let raw = Arc::new(RawClient::new(&raw_server)?);

    // Warm both servers up (TLS, allocator, store) and take the calls baseline before.
    time_connects(&fluxon, &raw, WARMUP_CONNECTS, false).await?;
    let caller = fluxon.connect(None).await?;
    load(&caller, plan.in_flight, plan.payload, plan.warmup).await?;
    let before_rounds = plan.rounds.div_ceil(2);
    let mut quiet = load_runs(&caller, plan, before_rounds).await?;

    let raw_for_fill = Arc::clone(&raw);
    let (raw_idle, raw_mem, raw_client) = fill(&raw_server, n, plan, move || {
        let raw = Arc::clone(&raw_for_fill);
        async move { raw.connect().await }
    })
    .await?;
    let fluxon_for_fill = Arc::clone(&fluxon);
    let (fluxon_idle, fluxon_mem, fluxon_client) = fill(&fluxon_server, n, plan, move || {
        let fluxon = Arc::clone(&fluxon_for_fill);
        async move { fluxon.connect(None).await }
    })
    .await?;
    let alive = fluxon_idle.iter().filter(|c| c.is_connected()).count();
    anyhow::ensure!(
        alive == n,
        "only {alive} of {n} idle sessions are connected"
    );

    let bench = |what: &str| format!("sessions/{n}/{what}");
    out.push(Comparison {
        bench: bench("rss-per-session"),
        peer: "raw quinn connection".into(),
        metrics: vec![
            Metric::lower_is_better(
                "server KiB/session",
                one(fluxon_mem.per_session_kib),
                one(raw_mem.per_session_kib),
            ),
            Metric::lower_is_better(
                "server RSS MiB",
                one(fluxon_mem.total_mib),
                one(raw_mem.total_mib),
            ),
            Metric::lower_is_better(
                "server idle CPU %",
                one(fluxon_mem.idle_cpu_pct),
                one(raw_mem.idle_cpu_pct),
            ),
            Metric::lower_is_better("client KiB/connection", one(fluxon_client), one(raw_client)),
        ],
    });

    // Connect and resume times while both servers hold n idle connections.
    let mut rounds: [Vec<Vec<Duration>>; 3] = Default::default();
    for round in 0..plan.rounds {
        let times = time_connects(&fluxon, &raw, plan.connects, round % 2 == 1).await?;
        for (all, these) in rounds.iter_mut().zip(times) {
            all.push(these);
        }
    }
    let pct = |runs: &[Vec<Duration>], p: f64| {
        Summary::of(
            &runs
                .iter()
                .map(|r| micros(percentile(r, p)))
                .collect::<Vec<_>>(),
        )
    };
    let [new_times, resume_times, raw_times] = &rounds;
    for (what, times) in [("connect-new", new_times), ("resume", resume_times)] {
        out.push(Comparison {
            bench: bench(what),
            peer: "raw quinn handshake".into(),
            metrics: vec![
                Metric::lower_is_better("p50 µs", pct(times, 50.0), pct(raw_times, 50.0)),
                Metric::lower_is_better("p99 µs", pct(times, 99.0), pct(raw_times, 99.0)),
            ],
        });
    }

    // Calls with n idle sessions, then again with none (bracketing the loaded runs).
    drop(raw_idle);
    raw.endpoint.close(0u32.into(), b"done");
    let loaded = load_runs(&caller, plan, plan.rounds).await?;
    for conn in &fluxon_idle {
        conn.close();
    }
    drop(fluxon_idle);
    tokio::time::sleep(Duration::from_secs(1)).await;
    quiet.extend(load_runs(&caller, plan, plan.rounds - before_rounds).await?);
    let rate = |runs: &[Run]| Summary::of(&runs.iter().map(Run::rate).collect::<Vec<_>>());
    let p99 = |runs: &[Run]| {
        Summary::of(
            &runs
                .iter()
                .map(|r| micros(r.percentile(99.0)))
                .collect::<Vec<_>>(),
        )
    };
    out.push(Comparison {
        bench: bench(&format!("calls-{}-in-flight", plan.in_flight)),
        peer: "no other sessions".into(),
        metrics: vec![
            Metric::higher_is_better("calls/s", rate(&loaded), rate(&quiet)),
            Metric::lower_is_better("p99 µs", p99(&loaded), p99(&quiet)),
        ],
    });

    drop(caller);
    fluxon_server.stop();
    raw_server.stop();
    Ok(())
}

pub async fn run(plan: &Plan) -> anyhow::Result<Vec<Comparison>> {
    let mut out = Vec::new();
    for &n in &plan.sessions {
        anyhow::ensure!(n > 0, "session counts must be positive");
        measure(n, plan, &mut out).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVE_TEST: &str = "sessions::tests::serve_for_parent";

    /// Not a test: the server process of the smoke run below (it serves when `SERVE_ENV` is
    /// set, and returns at once otherwise).
    #[tokio::test]
    #[ignore = "the server process of sessions_benchmark_smoke_run"]
    async fn serve_for_parent() {
        let kind = match std::env::var(SERVE_ENV).as_deref() {
            Ok("fluxon") => ServeKind::Fluxon,
            Ok("raw") => ServeKind::Raw,
            _ => return,
        };
        serve(kind).await.unwrap();
    }

    /// The benchmark's own code path with a few sessions (a smoke run, not a measurement).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_benchmark_smoke_run() {
        let mut plan = Plan::new(vec![50], 10, Duration::from_millis(100), 2);
        plan.settle = Duration::from_secs(3);
        plan.launcher = Launcher::Test(SERVE_TEST);
        let rows = tokio::time::timeout(Duration::from_secs(120), run(&plan))
            .await
            .expect("the smoke run took too long")
            .unwrap();
        let json = crate::report::json_lines(&rows);
        let row = |bench: &str| {
            rows.iter()
                .find(|c| c.bench == bench)
                .unwrap_or_else(|| panic!("no {bench} in {json}"))
        };
        let rss = &row("sessions/50/rss-per-session").metrics[0];
        assert!(rss.fluxon.median > 0.0 && rss.peer.median > 0.0, "{rss:?}");
        for bench in ["sessions/50/connect-new", "sessions/50/resume"] {
            let p50 = &row(bench).metrics[0];
            assert!(p50.fluxon.median > 0.0 && p50.peer.median > 0.0, "{p50:?}");
        }
        let calls = &row("sessions/50/calls-16-in-flight").metrics[0];
        assert!(
            calls.fluxon.median > 0.0 && calls.peer.median > 0.0,
            "{calls:?}"
        );
    }
}
