//! Helpers shared by the hardening tests (adversarial, faults, load): resource measurements of
//! this process (the server runs in-process), raw QUIC clients that bypass the SDK, and a lock
//! that runs the tests of one file one at a time so their measurements do not mix.

#![allow(dead_code)]

pub(crate) mod process;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluxon_proto::io::FrameReader;
use fluxon_proto::wire::{Hello, Welcome};
use fluxon_proto::{frame, Limits, StreamKind, PROTOCOL_VERSION};
use fluxon_server::Server;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Tests of one file take this lock so that only one measures the process at a time.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Open file descriptors of this process.
pub(crate) fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resident set size of this process, in KiB.
pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// File descriptors and memory before an attack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Baseline {
    pub(crate) fds: usize,
    pub(crate) rss_kib: u64,
    pub(crate) connections: usize,
}

impl Baseline {
    pub(crate) fn take(server: &Server) -> Self {
        Self {
            fds: fd_count(),
            rss_kib: rss_kib(),
            connections: server.connection_count(),
        }
    }

    /// Waits (up to 15 s) for the server to be back to the baseline's connections and file
    /// descriptors, then asserts that, and that memory grew by at most `rss_slack_mib`.
    pub(crate) async fn assert_recovered(&self, server: &Server, what: &str, rss_slack_mib: u64) {
        let mut fds = fd_count();
        for _ in 0..150 {
            fds = fd_count();
            if server.connection_count() <= self.connections && fds <= self.fds + 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rss = rss_kib();
        eprintln!(
            "[{what}] fds {} -> {fds}, rss {} -> {rss} KiB, connections {} -> {}",
            self.fds,
            self.rss_kib,
            self.connections,
            server.connection_count()
        );
        assert!(
            server.connection_count() <= self.connections,
            "{what}: {} connections left open (baseline {})",
            server.connection_count(),
            self.connections
        );
        assert!(
            fds <= self.fds + 2,
            "{what}: file descriptors leaked: {} before, {fds} after",
            self.fds
        );
        assert!(
            rss <= self.rss_kib + rss_slack_mib * 1024,
            "{what}: memory grew from {} KiB to {rss} KiB",
            self.rss_kib
        );
    }
}

/// A QUIC client configuration trusting `server`'s development certificate, speaking Fluxon's
/// ALPN, for connections that bypass the SDK (no handshake, hand-written frames).
pub(crate) fn raw_client_config(server: &Server) -> quinn::ClientConfig {
    let pem = std::fs::read(server.dev_certificate_path().expect("dev certificate")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![fluxon_proto::ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(20).try_into().unwrap()));
    config.transport_config(Arc::new(transport));
    config
}

/// A client endpoint on loopback.
pub(crate) fn raw_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client((std::net::Ipv4Addr::LOCALHOST, 0).into()).unwrap()
}

/// A raw QUIC connection to `server` (TLS done, no Fluxon handshake yet).
pub(crate) async fn raw_connect(
    endpoint: &quinn::Endpoint,
    server: &Server,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    endpoint
        .connect_with(raw_client_config(server), server.local_addr(), "localhost")
        .unwrap()
        .await
}

/// Sends `hello` on a new stream and reads the server's `Welcome`.
pub(crate) async fn raw_hello(conn: &quinn::Connection, hello: &Hello) -> Option<Welcome> {
    let (mut send, mut recv) = conn.open_bi().await.ok()?;
    let head = frame::encode_head(Some(StreamKind::Hello), hello, 0);
    fluxon_proto::io::write_frame_and_finish(&mut send, head, Bytes::new())
        .await
        .ok()?;
    let frame = FrameReader::new(Limits::default())
        .read_frame(&mut recv)
        .await
        .ok()?;
    frame.decode_header().ok()
}

/// A version-1 `Hello` with `token`.
pub(crate) fn hello(token: Vec<u8>) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        resume_token: token,
        client_name: "adversary".into(),
    }
}

/// The application close code of a closed connection, if it was closed that way.
pub(crate) fn close_code(err: &quinn::ConnectionError) -> Option<u32> {
    match err {
        quinn::ConnectionError::ApplicationClosed(c) => {
            u32::try_from(c.error_code.into_inner()).ok()
        }
        _ => None,
    }
}

/// Deterministic pseudo-random numbers (xorshift64*), for reproducible fault schedules.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `percent` / 100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
