//! The tonic 0.14 peer: the same echo over gRPC with TLS (rustls, ring), same self-signed setup.

use std::net::SocketAddr;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig};

mod pb {
    #![allow(clippy::all, unreachable_pub, missing_docs, unused_qualifications)]
    tonic::include_proto!("bench");
}

use pb::echo_client::EchoClient;
use pb::echo_server::{Echo, EchoServer};
use pb::stream_client::StreamClient;
use pb::stream_server::{Stream, StreamServer};
use pb::{Blob, StreamRequest};

struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(
        &self,
        request: tonic::Request<Blob>,
    ) -> Result<tonic::Response<Blob>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }
}

type Blobs = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<Blob, tonic::Status>> + Send + 'static>,
>;

struct StreamService;

#[tonic::async_trait]
impl Stream for StreamService {
    type FirehoseStream = Blobs;
    type BounceStream = Blobs;

    async fn firehose(
        &self,
        request: tonic::Request<StreamRequest>,
    ) -> Result<tonic::Response<Blobs>, tonic::Status> {
        let StreamRequest { count, size } = request.into_inner();
        let blob = Blob {
            data: vec![0x5a; usize::try_from(size).unwrap_or(0)],
        };
        let blobs = tokio_stream::StreamExt::take(
            tokio_stream::iter(std::iter::repeat_with(move || Ok(blob.clone()))),
            usize::try_from(count).unwrap_or(usize::MAX),
        );
        Ok(tonic::Response::new(Box::pin(blobs)))
    }

    async fn bounce(
        &self,
        request: tonic::Request<tonic::Streaming<Blob>>,
    ) -> Result<tonic::Response<Blobs>, tonic::Status> {
        Ok(tonic::Response::new(Box::pin(request.into_inner())))
    }
}

/// A running tonic echo server and the certificate clients trust.
pub struct TonicEcho {
    addr: SocketAddr,
    cert_pem: String,
}

#[derive(Clone)]
pub struct Client(EchoClient<Channel>);

impl Client {
    pub async fn echo(&self, data: Vec<u8>) -> anyhow::Result<usize> {
        let reply = self.0.clone().echo(Blob { data }).await?;
        Ok(reply.into_inner().data.len())
    }
}

pub async fn start() -> anyhow::Result<TonicEcho> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert_pem = cert.cert.pem();
    let identity = Identity::from_pem(&cert_pem, cert.signing_key.serialize_pem());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    // Small messages must not wait for Nagle's algorithm (tonic's own `serve` sets this too).
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |stream| {
            stream.and_then(|s| {
                s.set_nodelay(true)?;
                Ok(s)
            })
        },
    );
    let router = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(identity))?
        .add_service(EchoServer::new(EchoService))
        .add_service(StreamServer::new(StreamService));
    tokio::spawn(router.serve_with_incoming(incoming));
    Ok(TonicEcho { addr, cert_pem })
}

/// A client of the stream benchmark's service.
#[derive(Clone)]
pub struct Streams(StreamClient<Channel>);

impl Streams {
    /// Asks for `count` messages of `size` bytes.
    pub async fn firehose(
        &self,
        count: u64,
        size: usize,
    ) -> anyhow::Result<tonic::Streaming<Blob>> {
        let request = StreamRequest {
            count,
            size: size as u64,
        };
        Ok(self.0.clone().firehose(request).await?.into_inner())
    }

    /// Opens a bounce call whose requests are `requests`.
    pub async fn bounce(
        &self,
        requests: tokio::sync::mpsc::Receiver<Vec<u8>>,
    ) -> anyhow::Result<tonic::Streaming<Blob>> {
        let requests = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(requests),
            |data| Blob { data },
        );
        Ok(self.0.clone().bounce(requests).await?.into_inner())
    }
}

impl TonicEcho {
    /// A new HTTP/2 connection to the server for the stream benchmark.
    pub async fn connect_streams(&self) -> anyhow::Result<Streams> {
        Ok(Streams(StreamClient::new(self.channel().await?)))
    }

    async fn channel(&self) -> anyhow::Result<Channel> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.cert_pem))
            .domain_name("localhost");
        Ok(Channel::from_shared(format!("https://{}", self.addr))?
            .tcp_nodelay(true)
            .tls_config(tls)?
            .connect()
            .await?)
    }

    /// A new HTTP/2 connection (one channel) to the server.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.cert_pem))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://{}", self.addr))?
            .tcp_nodelay(true)
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(Client(EchoClient::new(channel)))
    }
}
