//! Client configuration.

use std::time::Duration;

use fluxon_proto::Metadata;

use crate::endpoint::ClientEndpoint;
use crate::reverse::ReverseRouter;
use crate::tls::Trust;

/// The most CALLS streams one connection spreads its calls over.
pub const MAX_CALL_LANES: usize = 64;

/// How a [`Connection`](crate::Connection) connects, trusts, retries and answers reverse calls.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Which server certificates to accept.
    pub trust: Trust,
    /// Name the certificate must be valid for (default `localhost`).
    pub server_name: String,
    /// A token from an earlier session to resume (see [`Connection::session`](crate::Connection::session)).
    pub resume_token: Option<Vec<u8>>,
    /// Deadline for calls that do not set one.
    pub default_timeout: Duration,
    /// Time allowed to establish the connection and session.
    pub connect_timeout: Duration,
    /// Keep-alive interval; keeps NAT bindings and the server's idle timer alive.
    pub keep_alive: Duration,
    /// A connection silent for this long is considered lost.
    pub idle_timeout: Duration,
    /// Largest reply accepted, in bytes.
    pub max_message_size: usize,
    /// Reconnection after a lost connection.
    pub reconnect: ReconnectPolicy,
    /// Handlers for the server's reverse calls.
    pub reverse: ReverseRouter,
    /// Describes the client in the server's logs.
    pub client_name: String,
    /// A shared endpoint to connect through (`None`: the connection binds its own).
    pub endpoint: Option<ClientEndpoint>,
    /// Largest QUIC datagram (UDP payload) sent, and accepted on an endpoint the connection
    /// binds itself, in bytes (default 1,452; at most 6,500). Raise it with the server's
    /// `max_udp_payload` where the network carries larger datagrams (loopback, jumbo frames); a
    /// shared [`ClientEndpoint`] sets what it accepts when bound
    /// ([`ClientEndpoint::bind_with_max_udp_payload`]).
    pub max_udp_payload: u16,
    /// The congestion controller of the connection (what the client sends: requests,
    /// uploads, reverse-call replies). CUBIC unless set.
    pub congestion: fluxon_proto::transport::Congestion,
    /// How many CALLS streams (lanes) the connection spreads its calls over, round robin
    /// (default 1, at most 64). A lost packet holds back only the calls queued behind it on
    /// its own lane, so more lanes keep tail latency lower on a lossy network; on a clean one
    /// they cost calls/s, since each lane batches its own writes (4 lanes: 23%-46% fewer on
    /// loopback, see docs/performance.md).
    pub call_lanes: usize,
    /// Other addresses of the same deployment (`host:port`, names resolved at each attempt):
    /// when the server the client talks to cannot be reached, it connects to one of these
    /// instead and resumes its session there. For the nodes of a cluster, which accept each
    /// other's sessions (see `docs/deploy.md`). Empty by default.
    pub nodes: Vec<String>,
}

impl ClientConfig {
    /// Defaults, trusting the server as `trust` says.
    pub fn new(trust: Trust) -> Self {
        Self {
            trust,
            server_name: "localhost".to_owned(),
            resume_token: None,
            default_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_message_size: fluxon_proto::Limits::DEFAULT_MAX_PAYLOAD,
            reconnect: ReconnectPolicy::default(),
            reverse: ReverseRouter::new(),
            client_name: format!("fluxon-client/{} rust", env!("CARGO_PKG_VERSION")),
            endpoint: None,
            max_udp_payload: fluxon_proto::transport::DEFAULT_MAX_UDP_PAYLOAD,
            congestion: fluxon_proto::transport::Congestion::default(),
            call_lanes: 1,
            nodes: Vec::new(),
        }
    }

    /// Sets the other addresses of the deployment (`host:port` each) that the client fails
    /// over to, in this order after the one it connects to.
    pub fn nodes<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.nodes = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// Spreads calls over `lanes` CALLS streams (1 to 64; see [`ClientConfig::call_lanes`]).
    pub fn call_lanes(mut self, lanes: usize) -> Self {
        self.call_lanes = lanes.clamp(1, MAX_CALL_LANES);
        self
    }

    /// Sets the largest QUIC datagram sent and accepted (1,200 to 6,500 bytes).
    pub fn max_udp_payload(mut self, bytes: u16) -> Self {
        self.max_udp_payload = bytes;
        self
    }

    /// Sets the congestion controller of the connection.
    pub fn congestion(mut self, congestion: fluxon_proto::transport::Congestion) -> Self {
        self.congestion = congestion;
        self
    }

    /// Sets the name the server certificate must match.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }

    /// Resumes the session this token names instead of starting a new one.
    pub fn resume_token(mut self, token: impl Into<Vec<u8>>) -> Self {
        self.resume_token = Some(token.into());
        self
    }

    /// Sets the deadline for calls that do not set one.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the reconnection policy.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Sets the handlers for reverse calls.
    pub fn reverse(mut self, router: ReverseRouter) -> Self {
        self.reverse = router;
        self
    }

    /// Connects through `endpoint`, shared with other connections, instead of binding a socket
    /// of its own (see [`ClientEndpoint`]).
    pub fn endpoint(mut self, endpoint: ClientEndpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Sets the connection idle timeout and keep-alive interval.
    pub fn idle_timeout(mut self, idle: Duration, keep_alive: Duration) -> Self {
        self.idle_timeout = idle;
        self.keep_alive = keep_alive;
        self
    }
}

/// Reconnection with exponential backoff after the connection is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// Whether to reconnect at all.
    pub enabled: bool,
    /// Wait before the first attempt.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// Never reconnect: a lost connection closes the client.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Gives up after `attempts` failures in a row.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The wait before attempt `n` (0-based): doubling from the initial backoff, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Per-call options.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CallOptions {
    /// How long to wait for the reply (default: the client's default timeout).
    pub timeout: Option<Duration>,
    /// Metadata to send with the call.
    pub metadata: Metadata,
    /// The route is safe to run twice: after a lost connection the call is retried on the
    /// reconnected session instead of failing with `unavailable`.
    pub idempotent: bool,
}

impl CallOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Marks the call safe to retry after a lost connection.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = ReconnectPolicy::default();
        assert_eq!(p.backoff(0), Duration::from_millis(50));
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(10), Duration::from_secs(5));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(5));
    }
}
