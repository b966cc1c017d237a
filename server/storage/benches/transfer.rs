//! Cloud-storage throughput against a raw quinn single-stream transfer of the same bytes.
//!
//! Not a timed test: run it and read the figures.
//!
//! ```text
//! cargo bench -p fluxon-storage --bench transfer                       # 256 MiB, 3 rounds
//! FLUXON_STORAGE_BENCH_MIB=1024 cargo bench -p fluxon-storage --bench transfer   # 1 GiB
//! FLUXON_STORAGE_BENCH_MAX_UDP=6500 cargo bench -p fluxon-storage --bench transfer # big datagrams
//! ```
//!
//! `FLUXON_STORAGE_BENCH_MAX_UDP` sets the QUIC datagram bound (`fluxon_proto::transport`) of
//! every endpoint, Fluxon's and the raw peer's alike (default 1452).
//!
//! The servers (a Fluxon server with storage on its main endpoint, and a raw quinn endpoint that
//! sinks uploads and sources downloads) run in a child process, so the server's RSS is measured
//! apart from the client's. Rounds interleave A/B: raw upload, Fluxon upload, raw download,
//! Fluxon download. Fluxon uploads read a local file, hash it, and the server writes, hashes,
//! fsyncs and renames; downloads read the stored file, hash on both sides and discard on the
//! client. The raw transfers send bytes from memory and discard them.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fluxon_client::storage::Op;
use fluxon_client::{ClientConfig, CloudStorageConnector, Connection, TransferOptions, Trust};
use fluxon_proto::transport::{self, MaxUdpPayload};
use fluxon_server::grant::GrantBuilder;
use fluxon_server::{Router, SecretKey, ServerConfig};
use fluxon_storage::StorageConfig;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

const ROLE_ENV: &str = "FLUXON_STORAGE_BENCH_ROLE";

/// The raw peer's transport, both sides: the Fluxon server's and client's flow-control windows
/// and the run's datagram bound, so the comparison measures the protocol, not the configuration.
fn raw_transport() -> BenchResult<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    transport::configure(&mut config, max_udp_payload()?);
    Ok(config)
}

/// The datagram bound every endpoint of the run uses (the child process inherits it).
fn max_udp_payload() -> BenchResult<MaxUdpPayload> {
    let size = std::env::var("FLUXON_STORAGE_BENCH_MAX_UDP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(transport::DEFAULT_MAX_UDP_PAYLOAD);
    Ok(MaxUdpPayload::new(size)?)
}

const CHUNK: usize = 256 * 1024;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> BenchResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if std::env::var(ROLE_ENV).as_deref() == Ok("server") {
        return runtime.block_on(serve());
    }
    runtime.block_on(drive())
}

// ---------------------------------------------------------------- server process

async fn serve() -> BenchResult<()> {
    let dir = PathBuf::from(std::env::var("FLUXON_STORAGE_BENCH_DIR")?);
    let config = ServerConfig::new("127.0.0.1:0".parse()?, &dir)
        .limits(fluxon_server::ServerLimits::default().max_udp_payload(max_udp_payload()?.get()));
    let (server, _service) =
        fluxon_storage::bind_server(config, Router::new(), StorageConfig::new(dir.join("cloud")))
            .await?;
    let raw = raw_server()?;
    println!(
        "READY {} {} {}",
        server.local_addr(),
        raw.local_addr()?,
        server
            .dev_certificate_path()
            .ok_or("no development certificate")?
            .display()
    );
    std::io::stdout().flush()?;
    // Run until the parent closes our stdin.
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await?;
    Ok(())
}

fn raw_server() -> BenchResult<quinn::Endpoint> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let key = PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let mut crypto = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key.into())?;
    crypto.alpn_protocols = vec![b"raw".to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(raw_transport()?));
    let endpoint =
        transport::bind_endpoint("127.0.0.1:0".parse()?, max_udp_payload()?, Some(config))?;
    let accept = endpoint.clone();
    tokio::spawn(async move {
        let payload = Bytes::from(pattern(4 << 20));
        while let Some(incoming) = accept.accept().await {
            let payload = payload.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let payload = payload.clone();
                    tokio::spawn(async move {
                        let mut head = [0u8; 9];
                        if recv.read_exact(&mut head).await.is_err() {
                            return;
                        }
                        let n = u64::from_be_bytes(head[1..].try_into().unwrap_or_default());
                        if head[0] == b'U' {
                            let mut got = 0u64;
                            while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
                                got += chunk.bytes.len() as u64;
                            }
                            let _ = send.write_all(&got.to_be_bytes()).await;
                        } else {
                            let _ = send_bytes(&mut send, &payload, n).await;
                        }
                        let _ = send.finish();
                        let _ = send.stopped().await;
                    });
                }
            });
        }
    });
    Ok(endpoint)
}

async fn send_bytes(send: &mut quinn::SendStream, payload: &Bytes, n: u64) -> BenchResult<()> {
    let mut left = n;
    let mut pos = 0usize;
    while left > 0 {
        let take = (left.min(CHUNK as u64) as usize).min(payload.len() - pos);
        send.write_chunk(payload.slice(pos..pos + take)).await?;
        pos = (pos + take) % payload.len();
        left -= take as u64;
    }
    Ok(())
}

fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------- client process

struct ServerProcess {
    child: Child,
    fluxon: SocketAddr,
    raw: SocketAddr,
    cert: PathBuf,
}

fn spawn_server(dir: &Path) -> BenchResult<ServerProcess> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(ROLE_ENV, "server")
        .env("FLUXON_STORAGE_BENCH_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    if parts.next() != Some("READY") {
        return Err(format!("server did not start: {line:?}").into());
    }
    Ok(ServerProcess {
        fluxon: parts.next().ok_or("no address")?.parse()?,
        raw: parts.next().ok_or("no address")?.parse()?,
        cert: parts.next().ok_or("no certificate")?.into(),
        child,
    })
}

/// (current RSS, peak RSS) of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system, all threads) a process has used so far, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after its closing ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 after the name), in
    // clock ticks (100 per second on Linux).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Client and server CPU seconds used while `f` runs, and its result.
async fn with_cpu<T>(server: u32, f: impl std::future::Future<Output = T>) -> (T, [f64; 2]) {
    let me = std::process::id();
    let (c0, s0) = (cpu_secs(me), cpu_secs(server));
    let out = f.await;
    (out, [cpu_secs(me) - c0, cpu_secs(server) - s0])
}

/// Resets the process's peak RSS (VmHWM) to its current RSS (Linux `clear_refs` value 5).
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

async fn raw_client(addr: SocketAddr) -> BenchResult<quinn::Connection> {
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            // Benchmark only: the raw baseline talks to our own child process on loopback.
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    crypto.alpn_protocols = vec![b"raw".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)?;
    let mut endpoint = transport::bind_endpoint("127.0.0.1:0".parse()?, max_udp_payload()?, None)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(raw_transport()?));
    endpoint.set_default_client_config(config);
    Ok(endpoint.connect(addr, "localhost")?.await?)
}

async fn raw_upload(conn: &quinn::Connection, payload: &Bytes, n: u64) -> BenchResult<Duration> {
    let start = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut head = vec![b'U'];
    head.extend_from_slice(&n.to_be_bytes());
    send.write_all(&head).await?;
    send_bytes(&mut send, payload, n).await?;
    send.finish()?;
    let mut ack = [0u8; 8];
    recv.read_exact(&mut ack).await?;
    if u64::from_be_bytes(ack) != n {
        return Err("raw upload lost bytes".into());
    }
    Ok(start.elapsed())
}

async fn raw_download(conn: &quinn::Connection, n: u64) -> BenchResult<Duration> {
    let start = Instant::now();
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut head = vec![b'D'];
    head.extend_from_slice(&n.to_be_bytes());
    send.write_all(&head).await?;
    send.finish()?;
    let mut got = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        got += chunk.bytes.len() as u64;
    }
    if got != n {
        return Err("raw download lost bytes".into());
    }
    Ok(start.elapsed())
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn drive() -> BenchResult<()> {
    let mib: u64 = std::env::var("FLUXON_STORAGE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let rounds: usize = std::env::var("FLUXON_STORAGE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let n = mib << 20;
    let base = std::env::var_os("FLUXON_STORAGE_BENCH_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base)?;
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir)?;

    // The file to upload.
    let local = dir.path().join("upload.bin");
    {
        let block = pattern(4 << 20);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&local)?);
        let mut left = n;
        while left > 0 {
            let take = left.min(block.len() as u64) as usize;
            f.write_all(&block[..take])?;
            left -= take as u64;
        }
        f.into_inner()?.sync_all()?;
    }

    let mut server = spawn_server(&server_dir)?;
    let pid = server.child.id();
    let result = async {
        let key = SecretKey::load_or_create(None, &server_dir)?;
        let config = ClientConfig::new(Trust::CertificateFile(server.cert.clone()))
            .max_udp_payload(max_udp_payload()?.get());
        let conn = Connection::connect(server.fluxon, config).await?;
        let storage = CloudStorageConnector::new(conn.clone());
        let session = conn.session().id.parse()?;
        let grant = |op| {
            GrantBuilder::new(key.clone(), session, op, "bench.bin")
                .overwrite(true)
                .reusable(true)
                .ttl(Duration::from_secs(3600))
                .sign()
        };
        let write = grant(Op::WriteFile)?;
        let read = grant(Op::ReadFile)?;
        let raw = raw_client(server.raw).await?;
        let payload = Bytes::from(pattern(4 << 20));

        // Profiling aid: `FLUXON_STORAGE_BENCH_PROFILE=upload|download` runs only Fluxon
        // transfers of one direction (under `perf record`, say), printing their CPU cost;
        // `raw-upload|raw-download` the raw peer's.
        if let Ok(only) = std::env::var("FLUXON_STORAGE_BENCH_PROFILE") {
            let upload = || storage.upload_file(&write, "bench.bin", &local, TransferOptions::new());
            if only == "download" {
                upload().await?;
            }
            for round in 0..rounds {
                let start = Instant::now();
                let (size, used) = match only.as_str() {
                    "raw-upload" => {
                        let (t, used) = with_cpu(pid, raw_upload(&raw, &payload, n)).await;
                        t?;
                        (n, used)
                    }
                    "raw-download" => {
                        let (t, used) = with_cpu(pid, raw_download(&raw, n)).await;
                        t?;
                        (n, used)
                    }
                    "download" => {
                        let sink = tokio::io::sink();
                        let (got, used) =
                            with_cpu(pid, storage.download(&read, "bench.bin", sink, TransferOptions::new()))
                                .await;
                        (got?.size, used)
                    }
                    "upload" => {
                        let (receipt, used) = with_cpu(pid, upload()).await;
                        (receipt?.size, used)
                    }
                    other => {
                        return Err(format!(
                            "FLUXON_STORAGE_BENCH_PROFILE={other}: expected upload, download, \
                             raw-upload or raw-download"
                        )
                        .into())
                    }
                };
                let gb = size as f64 / 1e9;
                let (rss, peak) = rss_kib(pid);
                println!(
                    "{only} {round}: {:.1} MB/s, CPU s/GB client {:.2} server {:.2}, server RSS {:.1} MiB (peak {:.1})",
                    mbps(size, start.elapsed()),
                    used[0] / gb,
                    used[1] / gb,
                    rss as f64 / 1024.0,
                    peak as f64 / 1024.0
                );
            }
            conn.close();
            return BenchResult::Ok(());
        }

        let (rss_before, _) = rss_kib(pid);
        let (mut up_peak, mut down_peak) = (0u64, 0u64);
        let (mut ru, mut fu, mut rd, mut fd) = (vec![], vec![], vec![], vec![]);
        // CPU seconds per GB (client, server) of each kind of transfer, summed over the rounds.
        let mut cpu = [[0f64; 2]; 4];
        let mut add_cpu = |kind: usize, used: [f64; 2]| {
            cpu[kind][0] += used[0];
            cpu[kind][1] += used[1];
        };
        println!("fluxon-storage transfer benchmark: {mib} MiB per transfer, {rounds} rounds, interleaved");
        for round in 0..rounds {
            let (t, used) = with_cpu(pid, raw_upload(&raw, &payload, n)).await;
            ru.push(mbps(n, t?));
            add_cpu(0, used);
            reset_peak(pid);
            let start = Instant::now();
            let (receipt, used) = with_cpu(
                pid,
                storage.upload_file(&write, "bench.bin", &local, TransferOptions::new()),
            )
            .await;
            let receipt = receipt?;
            fu.push(mbps(n, start.elapsed()));
            add_cpu(1, used);
            assert_eq!(receipt.size, n);
            up_peak = up_peak.max(rss_kib(pid).1);
            let (t, used) = with_cpu(pid, raw_download(&raw, n)).await;
            rd.push(mbps(n, t?));
            add_cpu(2, used);
            reset_peak(pid);
            let start = Instant::now();
            let (got, used) = with_cpu(
                pid,
                storage.download(&read, "bench.bin", tokio::io::sink(), TransferOptions::new()),
            )
            .await;
            let got = got?;
            fd.push(mbps(n, start.elapsed()));
            add_cpu(3, used);
            assert_eq!(got.checksum, receipt.checksum);
            down_peak = down_peak.max(rss_kib(pid).1);
            println!(
                "round {round}: upload raw {:7.1} MB/s fluxon {:7.1} MB/s | download raw {:7.1} MB/s fluxon {:7.1} MB/s",
                ru[round], fu[round], rd[round], fd[round]
            );
        }
        // Reference: what the disk alone does with the same bytes (write in 256 KiB blocks, fsync).
        let disk = {
            let path = server_dir.join("disk-probe.bin");
            let block = pattern(CHUNK);
            let start = Instant::now();
            let mut f = std::fs::File::create(&path)?;
            let mut left = n;
            while left > 0 {
                let take = left.min(CHUNK as u64) as usize;
                f.write_all(&block[..take])?;
                left -= take as u64;
            }
            f.sync_all()?;
            let t = start.elapsed();
            std::fs::remove_file(&path)?;
            mbps(n, t)
        };
        let (mru, mfu, mrd, mfd) = (median(&mut ru), median(&mut fu), median(&mut rd), median(&mut fd));
        println!();
        println!("| direction | raw quinn MB/s (median) | fluxon storage MB/s (median) | ratio |");
        println!("|---|---|---|---|");
        println!("| upload (write, BLAKE3, fsync, rename) | {mru:.1} | {mfu:.1} | {:.2} |", mfu / mru);
        println!("| download (read, BLAKE3 both sides) | {mrd:.1} | {mfd:.1} | {:.2} |", mfd / mrd);
        println!();
        // CPU per GB is steadier than throughput on a shared machine: with both processes on
        // the same cores, throughput follows it once the cores are saturated.
        let gb = (n as f64 / 1e9) * rounds as f64;
        let per_gb = |kind: usize| {
            let [c, s] = cpu[kind];
            format!("client {:.2} + server {:.2} = {:.2}", c / gb, s / gb, (c + s) / gb)
        };
        println!("CPU seconds per GB: upload raw {} | fluxon {}", per_gb(0), per_gb(1));
        println!("CPU seconds per GB: download raw {} | fluxon {}", per_gb(2), per_gb(3));
        println!();
        println!("disk alone (write + fsync of the same bytes, same file system): {disk:.1} MB/s");
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "server process RSS before the transfers: {:.1} MiB; peak during Fluxon uploads {:.1} MiB, during Fluxon downloads {:.1} MiB (growth over the start: {:.1} / {:.1} MiB)",
            mib(rss_before),
            mib(up_peak),
            mib(down_peak),
            mib(up_peak.saturating_sub(rss_before)),
            mib(down_peak.saturating_sub(rss_before)),
        );
        conn.close();
        BenchResult::Ok(())
    }
    .await;
    drop(server.child.stdin.take());
    let _ = server.child.wait();
    result
}
