//! A client-side QUIC endpoint that many connections can share.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use fluxon_proto::transport::{self, MaxUdpPayload};

/// One UDP socket and the task that drives it, shared by any number of [`Connection`]s.
///
/// By default every [`Connection`] binds its own endpoint, which is what a typical app with one
/// connection wants. A process holding many connections at once (a gateway, a load generator,
/// a test) should share one endpoint among them, set with [`ClientConfig::endpoint`]: one socket
/// instead of one per connection, and the driver batches datagrams for all of them.
///
/// Cheap to clone; the socket closes when the last clone and the last connection using it are
/// gone. Create it inside a tokio runtime, and use it from that runtime only.
///
/// ```no_run
/// # async fn run(addr: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
/// use fluxon_client::{ClientConfig, ClientEndpoint, Connection, Trust};
///
/// let endpoint = ClientEndpoint::for_server(addr)?;
/// let config = ClientConfig::new(Trust::CertificateFile("data/dev-cert.pem".into()))
///     .endpoint(endpoint);
/// let a = Connection::connect(addr, config.clone()).await?;
/// let b = Connection::connect(addr, config).await?; // same socket, its own session
/// # Ok(()) }
/// ```
///
/// [`Connection`]: crate::Connection
/// [`ClientConfig::endpoint`]: crate::ClientConfig::endpoint
#[derive(Clone, Debug)]
pub struct ClientEndpoint {
    inner: quinn::Endpoint,
}

impl ClientEndpoint {
    /// Binds an endpoint to `local` (port 0 picks a free port).
    pub fn bind(local: SocketAddr) -> io::Result<Self> {
        Self::bind_with_max_udp_payload(local, transport::DEFAULT_MAX_UDP_PAYLOAD)
    }

    /// Binds an endpoint to `local` that accepts QUIC datagrams of up to `max_udp_payload`
    /// bytes (1,200 to 6,500; see [`ClientConfig::max_udp_payload`](crate::ClientConfig)). Its
    /// receive buffers grow with the size.
    pub fn bind_with_max_udp_payload(local: SocketAddr, max_udp_payload: u16) -> io::Result<Self> {
        let size = MaxUdpPayload::new(max_udp_payload)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Self {
            inner: transport::bind_endpoint(local, size, None)?,
        })
    }

    /// Binds an endpoint on any local address of the same family as `server`, on a free port.
    pub fn for_server(server: SocketAddr) -> io::Result<Self> {
        Self::bind(unspecified_like(server))
    }

    /// The local address the endpoint's socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// How many connections currently use this endpoint.
    pub fn open_connections(&self) -> usize {
        self.inner.open_connections()
    }

    pub(crate) fn quinn(&self) -> &quinn::Endpoint {
        &self.inner
    }
}

/// The unspecified address (any interface, free port) of the same family as `addr`.
pub(crate) fn unspecified_like(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_the_server_family() {
        assert!(unspecified_like("127.0.0.1:7443".parse().unwrap()).is_ipv4());
        assert!(unspecified_like("[::1]:7443".parse().unwrap()).is_ipv6());
        assert_eq!(
            unspecified_like("127.0.0.1:7443".parse().unwrap()).port(),
            0
        );
    }

    #[tokio::test]
    async fn a_datagram_bound_outside_the_range_is_refused() {
        let local = (Ipv4Addr::LOCALHOST, 0).into();
        let err = ClientEndpoint::bind_with_max_udp_payload(local, 9000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("1200..=6500"), "{err}");
        let endpoint = ClientEndpoint::bind_with_max_udp_payload(local, 6500).unwrap();
        assert_ne!(endpoint.local_addr().unwrap().port(), 0);
    }

    #[tokio::test]
    async fn binds_a_free_loopback_port() {
        let endpoint = ClientEndpoint::bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let local = endpoint.local_addr().unwrap();
        assert_eq!(local.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(local.port(), 0);
        assert_eq!(endpoint.open_connections(), 0);
    }
}
