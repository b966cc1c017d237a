//! Cloud storage transfers: Fluxon's real storage path against a raw quinn single-stream
//! transfer and a tokio TCP + rustls single-connection transfer of the same bytes, and (uploads
//! only) the disk alone. All on 127.0.0.1 in this one process; every round runs every contender,
//! rotating which goes first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use fluxon_client::storage::Grant;
use fluxon_client::{ClientConfig, CloudStorageConnector, Connection, TransferOptions, Trust};
use fluxon_server::grant::Op;
use fluxon_server::{Request, Router, Server, ServerConfig, ServerLimits};
use fluxon_storage::StorageConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use object_store::aws::AmazonS3;
use object_store::path::Path as StoreKey;
use object_store::{ObjectStoreExt, WriteMultipart};

use crate::report::{Comparison, Metric};
use crate::rng::xorshift;
use crate::stats::Summary;
use crate::{raw_quinn, tls};

/// Size of every read and write, as in Fluxon's client and storage service.
const CHUNK: usize = 256 * 1024;
const GRANT_WRITE: &str = "bench.Storage/GrantWrite";
const GRANT_READ: &str = "bench.Storage/GrantRead";
const STORED: &str = "bench.bin";
const ALPN: &[u8] = b"bench-transfer";

/// What each contender does, printed with the table.
pub const NOTES: &str = "\
transfers: all contenders on 127.0.0.1 in one process (client and server share the 2 cores), \
TLS 1.3 with a self-signed certificate, quinn's default transport with Fluxon's receive windows and \
`--max-udp-payload` datagram bound, 256 KiB reads and writes.
- fluxon: asks a route for a signed grant (`Request::grant`), then `CloudStorageConnector::upload_file` \
(client reads the file and hashes it with BLAKE3; server writes a temporary file, hashes, fsyncs, renames, \
answers size + checksum, checked by the client) or `download_to_file` (server reads the stored file and \
hashes it; client hashes, writes a temporary file, fsyncs, renames, checks the checksum).
- raw quinn: one bidirectional stream per transfer on one connection; upload: client reads the file, \
server writes a temporary file, fsyncs, renames, acknowledges the byte count; download: server reads \
the stored file, client writes a temporary file, fsyncs, renames. No checksum.
- tokio TCP + rustls: the same protocol and file handling on one TLS connection (TCP_NODELAY).
- disk alone (uploads): read the source file, write a temporary file, fsync, rename; no network.
- CPU s/GB: user + system CPU time of the whole process (client and server together, 10 ms \
resolution) per GB moved; steadier than MB/s when other programs load the machine.
- peak RSS growth: VmHWM (reset before each transfer) minus VmRSS before it, of the whole process \
(client and server together); 0 when /proc is not available.";

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Bytes per measured transfer.
    pub bytes: u64,
    /// Bytes of the warm-up transfer each contender makes each way first.
    pub warmup_bytes: u64,
    pub rounds: usize,
    /// Where the temporary directory goes (default: the system's temporary directory).
    pub dir: Option<PathBuf>,
    /// Bound on QUIC datagrams, for Fluxon and raw quinn alike (path MTU discovery).
    pub max_udp_payload: u16,
}

/// A local file to upload, and what its bytes hash to.
struct Source {
    path: PathBuf,
    len: u64,
    checksum: blake3::Hash,
}

impl Source {
    /// Writes `len` pseudo-random (incompressible, deterministic) bytes to `path`, synced.
    fn create(path: PathBuf, len: u64) -> anyhow::Result<Self> {
        use std::io::Write;
        let block = pattern(4 << 20);
        let mut hasher = blake3::Hasher::new();
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut left = len;
        while left > 0 {
            let take = left.min(block.len() as u64) as usize;
            file.write_all(&block[..take])?;
            hasher.update(&block[..take]);
            left -= take as u64;
        }
        file.into_inner()?.sync_all()?;
        Ok(Self {
            path,
            len,
            checksum: hasher.finalize(),
        })
    }
}

/// Incompressible, deterministic bytes.
fn pattern(len: usize) -> Vec<u8> {
    xorshift().take(len).map(|x| x as u8).collect()
}

// ------------------------------------------------------------------ the raw peers' protocol
//
// A request is `U` or `D` and a big-endian u64 length. Upload: the bytes follow; the server
// stores them and answers the count. Download: the server answers the stored file's length and
// its bytes. Requests follow one another on a TCP connection; quinn uses a stream per request.

/// Writes exactly `len` bytes read from `source` to a temporary file beside `dest`, fsyncs it
/// and renames it to `dest`: what a receiver that keeps the bytes durably does.
async fn store<R: AsyncRead + Unpin>(source: &mut R, len: u64, dest: &Path) -> anyhow::Result<()> {
    let temp = dest.with_extension("tmp");
    let mut file = tokio::fs::File::create(&temp).await?;
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        // Gather a whole block first (QUIC delivers packet-sized pieces), as Fluxon does.
        let want = left.min(CHUNK as u64) as usize;
        source
            .read_exact(&mut buf[..want])
            .await
            .with_context(|| format!("the source ended {left} bytes short"))?;
        file.write_all(&buf[..want]).await?;
        left -= want as u64;
    }
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&temp, dest).await?;
    Ok(())
}

/// Sends the first `len` bytes of the file at `path` to `sink`.
async fn send_file<W: AsyncWrite + Unpin>(
    sink: &mut W,
    path: &Path,
    len: u64,
) -> anyhow::Result<()> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let want = left.min(CHUNK as u64) as usize;
        let n = file.read(&mut buf[..want]).await?;
        ensure!(n > 0, "{} ended {left} bytes short", path.display());
        sink.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    sink.flush().await?;
    Ok(())
}

fn header(op: u8, len: u64) -> [u8; 9] {
    let mut head = [op; 9];
    head[1..].copy_from_slice(&len.to_be_bytes());
    head
}

/// Serves requests on one duplex stream until the client closes it.
async fn serve_requests<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    dir: &Path,
) -> anyhow::Result<()> {
    let stored = dir.join("stored.bin");
    loop {
        let mut head = [0u8; 9];
        match s.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let len = u64::from_be_bytes(head[1..].try_into()?);
        match head[0] {
            b'U' => {
                store(s, len, &stored).await?;
                s.write_all(&len.to_be_bytes()).await?;
                s.flush().await?;
            }
            b'D' => {
                let size = tokio::fs::metadata(&stored).await?.len();
                s.write_all(&size.to_be_bytes()).await?;
                send_file(s, &stored, size).await?;
            }
            other => anyhow::bail!("unknown request {other}"),
        }
    }
}

async fn raw_upload<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    src: &Source,
) -> anyhow::Result<()> {
    s.write_all(&header(b'U', src.len)).await?;
    send_file(s, &src.path, src.len).await?;
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack).await?;
    ensure!(
        u64::from_be_bytes(ack) == src.len,
        "the server stored a different length"
    );
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Upload,
    Download,
}

async fn raw_transfer<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    direction: Direction,
    src: &Source,
    dest: &Path,
) -> anyhow::Result<()> {
    match direction {
        Direction::Upload => raw_upload(s, src).await,
        Direction::Download => raw_download(s, src.len, dest).await,
    }
}

async fn raw_download<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    expected: u64,
    dest: &Path,
) -> anyhow::Result<()> {
    s.write_all(&header(b'D', expected)).await?;
    s.flush().await?;
    let mut len = [0u8; 8];
    s.read_exact(&mut len).await?;
    let len = u64::from_be_bytes(len);
    ensure!(
        len == expected,
        "the server holds {len} bytes, expected {expected}"
    );
    store(s, len, dest).await
}

/// Aborts a background task when dropped.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ------------------------------------------------------------------ contenders

enum Side {
    Fluxon {
        server: Server,
        conn: Connection,
        storage: CloudStorageConnector,
    },
    Quinn {
        server: quinn::Endpoint,
        client: quinn::Endpoint,
        conn: quinn::Connection,
    },
    Tcp {
        stream: Box<tokio_rustls::client::TlsStream<TcpStream>>,
        _server: Task,
    },
    Disk {
        dir: PathBuf,
    },
    /// An S3-compatible store through its own client, no Fluxon in between.
    Store {
        client: Arc<AmazonS3>,
        key: StoreKey,
    },
}

struct Contender {
    name: &'static str,
    side: Side,
}

impl Contender {
    async fn fluxon(
        dir: &Path,
        max_udp_payload: u16,
        storage: StorageConfig,
    ) -> anyhow::Result<Self> {
        let grant = |op: Op| {
            move |req: Request<String>| async move {
                req.grant(op, req.message().as_str()).overwrite(true).sign()
            }
        };
        let router = Router::new()
            .route(GRANT_WRITE, grant(Op::WriteFile))
            .route(GRANT_READ, grant(Op::ReadFile));
        let config = ServerConfig::new(([127, 0, 0, 1], 0).into(), dir)
            .limits(ServerLimits::default().max_udp_payload(max_udp_payload));
        let (server, _service) = fluxon_storage::bind_server(config, router, storage).await?;
        let cert = server
            .dev_certificate_path()
            .context("no development certificate")?;
        let conn = Connection::connect(
            server.local_addr(),
            ClientConfig::new(Trust::CertificateFile(cert)).max_udp_payload(max_udp_payload),
        )
        .await?;
        Ok(Self {
            name: "fluxon",
            side: Side::Fluxon {
                storage: CloudStorageConnector::new(conn.clone()),
                conn,
                server,
            },
        })
    }

    async fn quinn(dir: PathBuf, max_udp_payload: u16) -> anyhow::Result<Self> {
        let (server, client) = raw_quinn::endpoints(ALPN, 16, max_udp_payload)?;
        let accept = server.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accept.accept().await {
                let dir = dir.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        let mut stream = tokio::io::join(recv, send);
                        if serve_requests(&mut stream, &dir).await.is_ok() {
                            let _ = stream.shutdown().await;
                        }
                    }
                });
            }
        });
        let conn = client.connect(server.local_addr()?, "localhost")?.await?;
        Ok(Self {
            name: "raw quinn, 1 stream",
            side: Side::Quinn {
                server,
                client,
                conn,
            },
        })
    }

    async fn tcp(dir: PathBuf) -> anyhow::Result<Self> {
        let pair = tls::pair(ALPN)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pair.server));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = Task(tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let dir = dir.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = serve_requests(&mut tls, &dir).await;
                    }
                });
            }
        }));
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(pair.client));
        let stream = connector
            .connect(rustls::pki_types::ServerName::try_from("localhost")?, tcp)
            .await?;
        Ok(Self {
            name: "tokio TCP + rustls, 1 connection",
            side: Side::Tcp {
                stream: Box::new(stream),
                _server: server,
            },
        })
    }

    /// The object store `store` names, through object_store's own client (built as Fluxon's
    /// backend builds it): a multipart upload of 8 MiB parts (as Fluxon's backend), a streamed
    /// GET, beside Fluxon's files.
    fn object_store(store: &fluxon_storage::ObjectStoreConfig) -> Self {
        let (client, prefix) = fluxon_storage::testing::store_client(store);
        Self {
            name: "object_store client",
            side: Side::Store {
                client,
                key: StoreKey::from(format!("{prefix}-peer/{STORED}")),
            },
        }
    }

    /// Uploads `src`, or downloads what the last upload stored to `dest`; false when this
    /// contender has no such transfer (the disk alone downloads nothing).
    async fn transfer(
        &mut self,
        direction: Direction,
        src: &Source,
        dest: &Path,
    ) -> anyhow::Result<bool> {
        match &mut self.side {
            Side::Fluxon { conn, storage, .. } => {
                let route = match direction {
                    Direction::Upload => GRANT_WRITE,
                    Direction::Download => GRANT_READ,
                };
                let grant: Grant = conn.call(route, &STORED.to_owned()).await?;
                let options = TransferOptions::new();
                let (size, checksum) = match direction {
                    Direction::Upload => {
                        let r = storage
                            .upload_file(&grant, STORED, &src.path, options)
                            .await?;
                        (r.size, r.checksum)
                    }
                    Direction::Download => {
                        let r = storage
                            .download_to_file(&grant, STORED, dest, options)
                            .await?;
                        (r.size, r.checksum)
                    }
                };
                ensure!(
                    size == src.len && checksum == *src.checksum.as_bytes(),
                    "fluxon moved {size} bytes with another checksum"
                );
            }
            Side::Quinn { conn, .. } => {
                let (send, recv) = conn.open_bi().await?;
                let mut stream = tokio::io::join(recv, send);
                raw_transfer(&mut stream, direction, src, dest).await?;
                stream.shutdown().await?;
            }
            Side::Tcp { stream, .. } => {
                raw_transfer(stream.as_mut(), direction, src, dest).await?;
            }
            Side::Store { client, key } => match direction {
                Direction::Upload => {
                    let upload = client.put_multipart(key).await?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
                    let mut file = tokio::fs::File::open(&src.path).await?;
                    let mut buf = vec![0u8; CHUNK];
                    loop {
                        let n = file.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        writer.wait_for_capacity(2).await?;
                        writer.write(&buf[..n]);
                    }
                    writer.finish().await?;
                }
                Direction::Download => {
                    let mut bytes = client.get(key).await?.into_stream();
                    let mut file = tokio::fs::File::create(dest).await?;
                    while let Some(chunk) = futures_util::StreamExt::next(&mut bytes).await {
                        file.write_all(&chunk?).await?;
                    }
                    file.sync_all().await?;
                }
            },
            Side::Disk { dir } => match direction {
                Direction::Upload => {
                    let mut file = tokio::fs::File::open(&src.path).await?;
                    store(&mut file, src.len, &dir.join("stored.bin")).await?;
                }
                Direction::Download => return Ok(false),
            },
        }
        Ok(true)
    }

    async fn close(self) {
        match self.side {
            Side::Fluxon { server, conn, .. } => {
                conn.close();
                server.shutdown(Duration::from_secs(1)).await;
            }
            Side::Quinn {
                server,
                client,
                conn,
            } => {
                conn.close(0u32.into(), b"done");
                client.wait_idle().await;
                server.close(0u32.into(), b"done");
            }
            Side::Tcp { mut stream, .. } => {
                let _ = stream.shutdown().await;
            }
            Side::Disk { .. } | Side::Store { .. } => {}
        }
    }
}

// ------------------------------------------------------------------ measuring

/// (VmRSS, VmHWM) of this process in KiB, when /proc tells.
fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system, every thread) this process has used, when /proc tells.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name (in parentheses, may hold spaces): state is field 0, utime and
    // stime fields 11 and 12, in clock ticks (USER_HZ, 100 per second on Linux).
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let mut ticks = || fields.next()?.parse::<u64>().ok();
    Some((ticks()? + ticks()?) as f64 / 100.0)
}

/// One measured transfer: MB/s, CPU seconds per GB (client and server together) and the
/// process's peak RSS growth in MiB.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    mb_per_s: f64,
    cpu_s_per_gb: f64,
    rss_growth_mib: f64,
}

async fn measure<F: std::future::Future<Output = anyhow::Result<bool>>>(
    bytes: u64,
    transfer: F,
) -> anyhow::Result<Option<Sample>> {
    // Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = rss_kib();
    let cpu_before = cpu_secs();
    let start = Instant::now();
    if !transfer.await? {
        return Ok(None);
    }
    let elapsed = start.elapsed();
    let cpu = match (cpu_before, cpu_secs()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let growth = match (before, rss_kib()) {
        (Some((rss, _)), Some((_, peak))) => peak.saturating_sub(rss) as f64 / 1024.0,
        _ => 0.0,
    };
    Ok(Some(Sample {
        mb_per_s: bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9),
        cpu_s_per_gb: cpu / (bytes as f64 / 1e9),
        rss_growth_mib: growth,
    }))
}

/// Checks a raw peer's download outside the timed part (the raw protocol has no checksum).
fn verify(dest: &Path, src: &Source) -> anyhow::Result<()> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(dest)?)?;
    ensure!(
        hasher.finalize() == src.checksum,
        "{} differs from the source",
        dest.display()
    );
    Ok(())
}

/// One direction's samples per contender.
type Samples = Vec<Vec<Sample>>;

fn temp_dir(plan: &Plan) -> anyhow::Result<tempfile::TempDir> {
    ensure!(plan.bytes > 0 && plan.rounds > 0, "nothing to transfer");
    Ok(match &plan.dir {
        Some(base) => tempfile::tempdir_in(base)?,
        None => tempfile::tempdir()?,
    })
}

fn sub(dir: &tempfile::TempDir, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.path().join(name);
    std::fs::create_dir_all(&path)?;
    Ok(path)
}

pub async fn run(plan: &Plan) -> anyhow::Result<Vec<Comparison>> {
    let dir = temp_dir(plan)?;
    let fluxon_dir = sub(&dir, "fluxon")?;
    let contenders = vec![
        Contender::fluxon(
            &fluxon_dir,
            plan.max_udp_payload,
            StorageConfig::new(fluxon_dir.join("cloud")),
        )
        .await?,
        Contender::quinn(sub(&dir, "quinn")?, plan.max_udp_payload).await?,
        Contender::tcp(sub(&dir, "tcp")?).await?,
        Contender {
            name: "disk alone",
            side: Side::Disk {
                dir: sub(&dir, "disk")?,
            },
        },
    ];
    race(plan, &dir, contenders).await
}

/// What `transfers-s3` prints with its table.
pub const S3_NOTES: &str = "\
transfers-s3: the object store that FLUXON_TEST_S3 names (s3s-fs on 127.0.0.1 in CI), the client, \
Fluxon's server and the benchmark in one process.
- fluxon: as in `transfers`, with the server's files in the object store \
(`StorageConfig::object_store`): the upload streams over QUIC into a multipart upload (8 MiB parts, \
two in flight), BLAKE3 on the way; the download streams the object back through the server.
- object_store client: the same file put with object_store's own `WriteMultipart` (8 MiB parts, two \
in flight) and read back with a streamed GET into a file (fsynced); no QUIC, no grant, no checksum.";

/// Fluxon's storage service on an object store against the store's own client, same file.
pub async fn run_s3(plan: &Plan) -> anyhow::Result<Vec<Comparison>> {
    let store = fluxon_storage::testing::s3_test_store("bench").with_context(|| {
        format!(
            "transfers-s3 needs an S3-compatible store: set {} (see .ci/s3.sh)",
            fluxon_storage::testing::S3_ENV
        )
    })?;
    let dir = temp_dir(plan)?;
    let contenders = vec![
        Contender::fluxon(
            &sub(&dir, "fluxon")?,
            plan.max_udp_payload,
            StorageConfig::object_store(store.clone()),
        )
        .await?,
        Contender::object_store(&store),
    ];
    race(plan, &dir, contenders).await
}

/// Every round runs every contender each way, rotating which goes first; the first contender
/// (Fluxon) is compared with each other one.
async fn race(
    plan: &Plan,
    dir: &tempfile::TempDir,
    mut contenders: Vec<Contender>,
) -> anyhow::Result<Vec<Comparison>> {
    let source = Source::create(dir.path().join("source.bin"), plan.bytes)?;
    let warmup = Source::create(
        dir.path().join("warmup.bin"),
        plan.warmup_bytes.clamp(1, plan.bytes),
    )?;
    let downloads = sub(dir, "downloads")?;
    let n = contenders.len();
    let dest = |i: usize| downloads.join(format!("{i}.bin"));

    let result = async {
        for (i, c) in contenders.iter_mut().enumerate() {
            c.transfer(Direction::Upload, &warmup, &dest(i)).await?;
            c.transfer(Direction::Download, &warmup, &dest(i)).await?;
        }
        let (mut up, mut down): (Samples, Samples) = (vec![Vec::new(); n], vec![Vec::new(); n]);
        for round in 0..plan.rounds {
            for (direction, samples) in [
                (Direction::Upload, &mut up),
                (Direction::Download, &mut down),
            ] {
                for k in 0..n {
                    let i = (round + k) % n;
                    let target = dest(i);
                    let transfer = contenders[i].transfer(direction, &source, &target);
                    let Some(sample) = measure(plan.bytes, transfer).await? else {
                        continue;
                    };
                    if direction == Direction::Download {
                        verify(&target, &source)?;
                        std::fs::remove_file(&target)?;
                    }
                    samples[i].push(sample);
                }
            }
        }
        anyhow::Ok((up, down))
    }
    .await;
    let names: Vec<&str> = contenders.iter().map(|c| c.name).collect();
    for c in contenders {
        c.close().await;
    }
    let (up, down) = result?;

    let size = match plan.bytes % (1 << 20) {
        0 => format!("{}MiB", plan.bytes >> 20),
        _ => format!("{}B", plan.bytes),
    };
    let mut out = Vec::new();
    let summary = |samples: &[Sample], f: fn(&Sample) -> f64| {
        Summary::of(&samples.iter().map(f).collect::<Vec<_>>())
    };
    for (direction, samples) in [("upload", &up), ("download", &down)] {
        for (i, (peer, peer_samples)) in names.iter().zip(samples).enumerate().skip(1) {
            if peer_samples.is_empty() {
                continue;
            }
            let mut metrics = vec![
                Metric::higher_is_better(
                    "MB/s",
                    summary(&samples[0], |s| s.mb_per_s),
                    summary(peer_samples, |s| s.mb_per_s),
                ),
                Metric::lower_is_better(
                    "CPU s/GB",
                    summary(&samples[0], |s| s.cpu_s_per_gb),
                    summary(peer_samples, |s| s.cpu_s_per_gb),
                ),
            ];
            // Memory once per direction, against the raw quinn transfer.
            if i == 1 {
                metrics.push(Metric::lower_is_better(
                    "peak RSS growth MiB",
                    summary(&samples[0], |s| s.rss_growth_mib),
                    summary(peer_samples, |s| s.rss_growth_mib),
                ));
            }
            out.push(Comparison {
                bench: format!("transfers/{direction}/{size}"),
                peer: (*peer).to_owned(),
                metrics,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// The benchmark's code path end to end with a few MiB: every contender moves the bytes
    /// (Fluxon's checksums and the raw peers' downloads are checked inside `run`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transfers_smoke_run() {
        let plan = super::Plan {
            // Not a multiple of the 256 KiB blocks: the last block is partial.
            bytes: (2 << 20) + 4321,
            warmup_bytes: 300 * 1024,
            rounds: 2,
            dir: None,
            // Larger datagrams, as `--max-udp-payload` sets them (loopback carries them).
            max_udp_payload: 4096,
        };
        let rows = tokio::time::timeout(Duration::from_secs(120), super::run(&plan))
            .await
            .expect("the smoke run took too long")
            .unwrap();
        let benches: Vec<(&str, &str)> = rows
            .iter()
            .map(|c| (c.bench.as_str(), c.peer.as_str()))
            .collect();
        let (up, down) = ("transfers/upload/2101473B", "transfers/download/2101473B");
        assert_eq!(
            benches,
            [
                (up, "raw quinn, 1 stream"),
                (up, "tokio TCP + rustls, 1 connection"),
                (up, "disk alone"),
                (down, "raw quinn, 1 stream"),
                (down, "tokio TCP + rustls, 1 connection"),
            ]
        );
        for c in &rows {
            let rate = &c.metrics[0];
            assert_eq!(rate.unit, "MB/s");
            assert!(rate.fluxon.median > 0.0 && rate.peer.median > 0.0, "{c:?}");
            assert!(rate.ratio > 0.0, "{c:?}");
        }
        assert_eq!(rows[0].metrics[1].unit, "CPU s/GB");
        assert_eq!(rows[0].metrics[2].unit, "peak RSS growth MiB");
        let json = crate::report::json_lines(&rows);
        assert_eq!(json.lines().count(), 12);
        assert!(json.contains(
            "{\"bench\":\"transfers/download/2101473B\",\"peer\":\"tokio TCP + rustls, 1 connection\",\"unit\":\"MB/s\""
        ));
    }
}
