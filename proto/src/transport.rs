//! The QUIC transport settings a Fluxon server and its clients share: flow-control windows, and
//! how large the datagrams (UDP payloads) are that each endpoint sends and accepts.
//!
//! quinn starts every path at 1,200 bytes and probes upward (path MTU discovery) to an upper
//! bound, 1,452 by default: what fits a 1,500-byte Ethernet MTU under IPv6 and UDP headers, so
//! the probes succeed on almost every internet path. Where a path is known to carry more
//! (loopback, a datacenter network with jumbo frames), raising the bound cuts the per-packet work
//! of a large transfer several-fold. Both sides must raise it: the bound limits what an endpoint
//! sends, and the size it accepts (announced in the handshake) limits what its peer sends.

use std::fmt;
use std::sync::Arc;

/// QUIC flow-control window of each stream an endpoint receives on. quinn's default (1.25 MB)
/// caps one stream at about 12.5 MB/s at 100 ms round trip, which large transfers (storage
/// streams) reach on real networks; 8 MiB allows about 80 MB/s there. Bytes are only buffered
/// up to it when the receiver reads slower than the sender sends.
pub const STREAM_RECEIVE_WINDOW: u32 = 8 << 20;

/// QUIC flow-control window of a whole connection (quinn's default is unlimited): what one
/// peer can make the other buffer across all its streams.
pub const CONNECTION_RECEIVE_WINDOW: u32 = 32 << 20;

/// quinn's default upper bound for path MTU discovery; Fluxon's default on both sides.
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1452;

/// The smallest datagram QUIC allows (RFC 9000, section 14).
pub const MIN_UDP_PAYLOAD: u16 = 1200;

/// The largest bound Fluxon accepts: quinn sends up to 10 datagrams in one segmentation-offload
/// call, which Linux caps at 64 KiB in all; a larger datagram makes every such send fail, and
/// quinn then falls back to the 1,200-byte minimum.
pub const MAX_UDP_PAYLOAD_LIMIT: u16 = 6_500;

/// A datagram size outside [`MIN_UDP_PAYLOAD`]..=[`MAX_UDP_PAYLOAD_LIMIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SizeError(pub u16);

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max UDP payload of {} bytes is outside {MIN_UDP_PAYLOAD}..={MAX_UDP_PAYLOAD_LIMIT}",
            self.0
        )
    }
}

/// A datagram-size bound, checked to lie in [`MIN_UDP_PAYLOAD`]..=[`MAX_UDP_PAYLOAD_LIMIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxUdpPayload(u16);

impl MaxUdpPayload {
    /// Checks a configured bound.
    pub fn new(bytes: u16) -> Result<Self, SizeError> {
        if (MIN_UDP_PAYLOAD..=MAX_UDP_PAYLOAD_LIMIT).contains(&bytes) {
            Ok(Self(bytes))
        } else {
            Err(SizeError(bytes))
        }
    }

    /// The bound in bytes.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for MaxUdpPayload {
    fn default() -> Self {
        Self(DEFAULT_MAX_UDP_PAYLOAD)
    }
}

/// The congestion controller an endpoint runs on its connections (quinn's three). It governs
/// what that endpoint sends, so a server's choice shapes replies and downloads, a client's its
/// requests and uploads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Congestion {
    /// CUBIC (RFC 8312), quinn's default: backs off on every loss.
    #[default]
    Cubic,
    /// NewReno (RFC 6582): halves the window on a loss.
    NewReno,
    /// BBR (version 1): paces at the measured bottleneck bandwidth, so random loss that is not
    /// congestion costs it little. quinn marks its implementation experimental.
    Bbr,
}

impl Congestion {
    /// The name used in configuration (`cubic`, `newreno`, `bbr`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Cubic => "cubic",
            Self::NewReno => "newreno",
            Self::Bbr => "bbr",
        }
    }

    /// Makes `transport` run this controller.
    pub fn apply(self, transport: &mut quinn::TransportConfig) -> &mut quinn::TransportConfig {
        use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
        match self {
            Self::Cubic => {
                transport.congestion_controller_factory(Arc::new(CubicConfig::default()))
            }
            Self::NewReno => {
                transport.congestion_controller_factory(Arc::new(NewRenoConfig::default()))
            }
            Self::Bbr => transport.congestion_controller_factory(Arc::new(BbrConfig::default())),
        }
    }
}

impl fmt::Display for Congestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A congestion controller name other than `cubic`, `newreno` and `bbr`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown congestion controller {0:?}: cubic, newreno or bbr")]
pub struct UnknownCongestion(pub String);

impl std::str::FromStr for Congestion {
    type Err = UnknownCongestion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cubic" => Ok(Self::Cubic),
            "newreno" | "new-reno" | "reno" => Ok(Self::NewReno),
            "bbr" => Ok(Self::Bbr),
            _ => Err(UnknownCongestion(s.to_owned())),
        }
    }
}

/// Applies the shared settings to `transport`: Fluxon's receive windows, and path MTU discovery
/// probing up to `max_udp_payload`.
pub fn configure(
    transport: &mut quinn::TransportConfig,
    max_udp_payload: MaxUdpPayload,
) -> &mut quinn::TransportConfig {
    let mut discovery = quinn::MtuDiscoveryConfig::default();
    discovery.upper_bound(max_udp_payload.get());
    transport
        .stream_receive_window(STREAM_RECEIVE_WINDOW.into())
        .receive_window(CONNECTION_RECEIVE_WINDOW.into())
        .mtu_discovery_config(Some(discovery))
}

/// An endpoint configuration accepting datagrams of up to `max_udp_payload` + 20 bytes: the
/// margin quinn's own defaults keep between what an endpoint sends (1,452, sized for IPv6
/// headers) and what it accepts (1,472, for IPv4), and never less than those 1,472.
fn endpoint_config(max_udp_payload: MaxUdpPayload) -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    let accepted = max_udp_payload.get().saturating_add(20).max(1472);
    // Only values below 1,200 are refused, and `accepted` is at least 1,472.
    let _ = config.max_udp_payload_size(accepted);
    config
}

/// What each endpoint asks of the kernel for its UDP socket's receive and send buffers.
///
/// One socket carries every connection of an endpoint, so a server's socket takes the bursts
/// of all its clients at once. Linux's default receive buffer (208 KiB) overflows under load on
/// loopback: with 64 connections × 16 calls of 4 KiB in flight, about 30,000 datagrams were
/// dropped in 10 s of load (`RcvbufErrors` in `/proc/net/snmp`), and each drop cost a
/// loss-recovery delay: p99 latency was ≈ 240 ms. With 1 MiB it was ≈ 110 ms (fewer
/// drops remained); with 4 MiB ≈ 85 ms and no drops, but faster large uploads then left a
/// server ≈ 20 MiB more memory held by the allocator, so 1 MiB is the default. The kernel caps
/// the request at `net.core.rmem_max` / `wmem_max`; a smaller grant only means more drops
/// under overload.
pub const SOCKET_BUFFER_BYTES: usize = 1 << 20;

/// Raises the socket's buffers toward [`SOCKET_BUFFER_BYTES`], logging (not failing) when the
/// kernel refuses: QUIC works with any buffer, only less well under bursts.
fn enlarge_buffers(socket: &std::net::UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!(error = %e, "cannot enlarge the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!(error = %e, "cannot enlarge the UDP send buffer");
    }
}

/// Binds a UDP socket on `addr` and runs a quinn endpoint on it in the current tokio runtime,
/// accepting datagrams up to `max_udp_payload` (a server when `server` is given).
pub fn bind_endpoint(
    addr: std::net::SocketAddr,
    max_udp_payload: MaxUdpPayload,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)?;
    enlarge_buffers(&socket);
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime to drive the QUIC endpoint"))?;
    quinn::Endpoint::new(endpoint_config(max_udp_payload), server, socket, runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn endpoint_sockets_get_larger_buffers_than_the_default() {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let fresh = std::net::UdpSocket::bind(loopback).unwrap();
        let enlarged = std::net::UdpSocket::bind(loopback).unwrap();
        enlarge_buffers(&enlarged);
        let size = |s: &std::net::UdpSocket| {
            let s = socket2::SockRef::from(s);
            (s.recv_buffer_size().unwrap(), s.send_buffer_size().unwrap())
        };
        let (fresh_recv, fresh_send) = size(&fresh);
        let (recv, send) = size(&enlarged);
        // Linux grants at most `rmem_max` / `wmem_max` (doubled for its bookkeeping), which
        // is still above the default a fresh socket gets.
        assert!(
            recv > fresh_recv,
            "receive buffer {recv} not above {fresh_recv}"
        );
        assert!(
            send > fresh_send,
            "send buffer {send} not above {fresh_send}"
        );
    }

    #[test]
    fn congestion_names_round_trip_and_unknown_ones_are_refused() {
        for c in [Congestion::Cubic, Congestion::NewReno, Congestion::Bbr] {
            assert_eq!(c.name().parse::<Congestion>(), Ok(c));
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!("BBR".parse::<Congestion>(), Ok(Congestion::Bbr));
        assert_eq!(Congestion::default(), Congestion::Cubic);
        let err = "vegas".parse::<Congestion>().unwrap_err();
        assert!(err.to_string().contains("cubic, newreno or bbr"), "{err}");
    }

    #[test]
    fn bounds_are_checked() {
        assert_eq!(
            MaxUdpPayload::new(DEFAULT_MAX_UDP_PAYLOAD).map(MaxUdpPayload::get),
            Ok(1452)
        );
        assert_eq!(MaxUdpPayload::default().get(), 1452);
        assert_eq!(
            MaxUdpPayload::new(MAX_UDP_PAYLOAD_LIMIT).map(MaxUdpPayload::get),
            Ok(6_500)
        );
        assert_eq!(MaxUdpPayload::new(1199), Err(SizeError(1199)));
        assert_eq!(MaxUdpPayload::new(9000), Err(SizeError(9000)));
        assert!(SizeError(9000).to_string().contains("1200..=6500"));
    }
}
