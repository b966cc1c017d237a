//! The floor: a raw quinn echo, one bidirectional stream per request, same TLS setup.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use fluxon_proto::transport::{self, Congestion, MaxUdpPayload, DEFAULT_MAX_UDP_PAYLOAD};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use crate::tls::{self, TlsPair};

const ALPN: &[u8] = b"bench-echo";

/// A raw echo server and a client endpoint trusting it.
pub struct RawEcho {
    server: quinn::Endpoint,
    client: quinn::Endpoint,
}

impl RawEcho {
    /// A new client connection to the echo server.
    pub async fn connect(&self) -> anyhow::Result<quinn::Connection> {
        self.client
            .connect(self.server.local_addr()?, "localhost")?
            .await
            .context("raw quinn connect")
    }

    /// The echo server's address.
    pub fn server_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.server.local_addr()?)
    }

    /// A new client connection to the echo server through `addr` (a relay in front of it).
    pub async fn connect_to(&self, addr: SocketAddr) -> anyhow::Result<quinn::Connection> {
        self.client
            .connect(addr, "localhost")?
            .await
            .context("raw quinn connect")
    }

    pub async fn close(self) {
        self.client.close(0u32.into(), b"done");
        self.client.wait_idle().await;
        self.server.close(0u32.into(), b"done");
    }
}

pub async fn start(max_streams: u32) -> anyhow::Result<RawEcho> {
    start_with(max_streams, Congestion::default()).await
}

/// [`start`] with both endpoints running `congestion`.
pub async fn start_with(max_streams: u32, congestion: Congestion) -> anyhow::Result<RawEcho> {
    let (server, client) = endpoints_with(ALPN, max_streams, DEFAULT_MAX_UDP_PAYLOAD, congestion)?;
    tokio::spawn(serve(server.clone()));
    Ok(RawEcho { server, client })
}

/// A raw quinn server endpoint and a client endpoint trusting it (both on 127.0.0.1, ephemeral
/// ports), with quinn's default transport except for the stream limit, a client keep-alive, and
/// the receive windows and datagram size bound, which are Fluxon's (`max_udp_payload` on both
/// sides) so that transfers compare fairly.
pub fn endpoints(
    alpn: &[u8],
    max_streams: u32,
    max_udp_payload: u16,
) -> anyhow::Result<(quinn::Endpoint, quinn::Endpoint)> {
    endpoints_with(alpn, max_streams, max_udp_payload, Congestion::default())
}

/// [`endpoints`] with both running `congestion`.
pub fn endpoints_with(
    alpn: &[u8],
    max_streams: u32,
    max_udp_payload: u16,
    congestion: Congestion,
) -> anyhow::Result<(quinn::Endpoint, quinn::Endpoint)> {
    let max_udp_payload = MaxUdpPayload::new(max_udp_payload)?;
    let TlsPair {
        server: server_tls,
        client: client_tls,
    } = tls::pair(alpn)?;
    let mut server_config =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server_tls)?));
    let mut server_transport = quinn::TransportConfig::default();
    congestion.apply(&mut server_transport);
    transport::configure(&mut server_transport, max_udp_payload)
        .max_concurrent_bidi_streams(max_streams.into());
    server_config.transport_config(Arc::new(server_transport));
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = transport::bind_endpoint(loopback, max_udp_payload, Some(server_config))?;

    let mut client = transport::bind_endpoint(loopback, max_udp_payload, None)?;
    let mut client_config =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client_tls)?));
    // Like Fluxon's client: keep idle connections (the multi-connection scenario's) alive.
    let mut client_transport = quinn::TransportConfig::default();
    congestion.apply(&mut client_transport);
    transport::configure(&mut client_transport, max_udp_payload)
        .keep_alive_interval(Some(std::time::Duration::from_secs(5)));
    client_config.transport_config(Arc::new(client_transport));
    client.set_default_client_config(client_config);
    Ok((server, client))
}

async fn serve(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    if let Ok(data) = recv.read_to_end(64 * 1024 * 1024).await {
                        let _ = send.write_chunk(Bytes::from(data)).await;
                        let _ = send.finish();
                    }
                });
            }
        });
    }
}

/// One request: open a stream, send the payload, read the echo; returns the bytes echoed.
pub async fn echo(conn: &quinn::Connection, payload: Bytes) -> anyhow::Result<usize> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_chunk(payload).await?;
    send.finish()?;
    let data = recv.read_to_end(64 * 1024 * 1024).await?;
    Ok(data.len())
}
