//! The tonic 0.14 peer: the same echo over gRPC with TLS (rustls, ring), same self-signed setup.

use std::net::SocketAddr;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig};

mod pb {
    #![allow(clippy::all, unreachable_pub, missing_docs, unused_qualifications)]
    tonic::include_proto!("bench");
}

use pb::echo_client::EchoClient;
use pb::echo_server::{Echo, EchoServer};
use pb::Blob;

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
        .add_service(EchoServer::new(EchoService));
    tokio::spawn(router.serve_with_incoming(incoming));
    Ok(TonicEcho { addr, cert_pem })
}

impl TonicEcho {
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
