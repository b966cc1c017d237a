//! Nodes of one deployment acting on each other's sessions, over NATS.
//!
//! Every node of a cluster shares the state store (PostgreSQL), which records which node holds
//! each session's connection (presence), and a NATS server. A node listens on its own subject,
//! `<prefix>.node.<node_id>`; to call a client connected elsewhere, it looks the session up in
//! presence and sends the call to the holder's subject as a request. The holder makes the
//! reverse call over its QUIC connection and answers with the client's reply. Login changes and
//! the end of a session travel the same way, so the holder's view of its sessions stays true.
//!
//! [`relay`] holds the message codec (pure, fuzzed); this module the bus I/O around it.

pub mod relay;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluxon_proto::wire::ReplyHeader;
use fluxon_proto::Status;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::error::ServerError;
use crate::server::Shared;
use crate::session::SessionHandle;
use relay::{Op, Relayed};

/// The default subject prefix of a cluster's messages.
pub const DEFAULT_SUBJECT_PREFIX: &str = "fluxon";

/// Relayed requests a node serves at once; more are refused with `resource_exhausted`.
const MAX_RELAYED_IN_FLIGHT: usize = 1024;

/// How long a relayed login change or end may take.
const RELAY_OP_TIMEOUT: Duration = Duration::from_secs(10);

/// How a node joins its cluster: the NATS server that links the nodes.
///
/// Every node of one deployment names the same NATS server (or cluster of them), the same
/// subject prefix, the same state database ([`ServerConfig::state`](crate::ServerConfig)) and
/// the same secret key, and a node id of its own
/// ([`ServerConfig::node_id`](crate::ServerConfig)).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222` (several, comma-separated).
    pub nats_url: String,
    /// The first token of every subject the nodes use, so that deployments can share a NATS
    /// server. Letters, digits, `-` and `_`; default [`DEFAULT_SUBJECT_PREFIX`].
    pub subject_prefix: String,
    /// How long joining the bus may take at start.
    pub connect_timeout: Duration,
}

impl ClusterConfig {
    /// A cluster linked by the NATS server at `url`.
    pub fn nats(url: impl Into<String>) -> Self {
        Self {
            nats_url: url.into(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the subject prefix.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Sets how long joining the bus may take at start.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// Shows the URL without a password.
impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("nats_url", &redact(&self.nats_url))
            .field("subject_prefix", &self.subject_prefix)
            .finish_non_exhaustive()
    }
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &one[scheme + 3..at];
                match userinfo.find(':') {
                    Some(colon) => format!(
                        "{}{}:***{}",
                        &one[..scheme + 3],
                        &userinfo[..colon],
                        &one[at..]
                    ),
                    None => one.to_owned(),
                }
            }
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A node's link to the rest of its cluster.
pub(crate) struct Cluster {
    client: async_nats::Client,
    prefix: String,
    /// Requests of other nodes this node serves at once.
    in_flight: Arc<Semaphore>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Joins the bus as `node` and subscribes to its subject, so that other nodes can reach
    /// it as soon as this returns. The subscription is served by [`serve`] once the server is
    /// built.
    pub(crate) async fn join(
        config: &ClusterConfig,
        node: &str,
    ) -> Result<(Self, async_nats::Subscriber), ServerError> {
        if !relay::valid_token(node) {
            return Err(ServerError::Config(format!(
                "node id `{node}` cannot name a node in a cluster: use 1 to {} letters, digits, \
                 `-` or `_`",
                relay::MAX_NODE_ID_LEN
            )));
        }
        if !relay::valid_token(&config.subject_prefix) {
            return Err(ServerError::Config(format!(
                "cluster subject prefix `{}`: use letters, digits, `-` or `_`",
                config.subject_prefix
            )));
        }
        let unreachable = |reason: String| ServerError::Cluster {
            url: redact(&config.nats_url),
            reason,
        };
        let client = async_nats::ConnectOptions::new()
            .name(format!("fluxon node {node}"))
            .connection_timeout(config.connect_timeout)
            .connect(config.nats_url.as_str())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let subject = relay::node_subject(&config.subject_prefix, node);
        let subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // The subscription is in place at the server once a flush returns.
        client
            .flush()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tracing::info!(%subject, "joined the cluster");
        Ok((
            Self {
                client,
                prefix: config.subject_prefix.clone(),
                in_flight: Arc::new(Semaphore::new(MAX_RELAYED_IN_FLIGHT)),
            },
            subscriber,
        ))
    }

    /// Sends `op` on `session` to `node`, the holder of its connection, and waits for its
    /// answer at most `timeout`.
    pub(crate) async fn relay(
        &self,
        node: &str,
        relayed: Relayed,
        timeout: Duration,
    ) -> Result<(ReplyHeader, Bytes), Status> {
        let subject = relay::node_subject(&self.prefix, node);
        let request = async_nats::Request::new()
            .payload(relayed.encode())
            .timeout(Some(timeout));
        let message = self
            .client
            .send_request(subject, request)
            .await
            .map_err(|e| request_error(&e, node, timeout))?;
        relay::decode_reply(&message.payload).map_err(|e| {
            tracing::warn!(%node, error = %e, "malformed answer from a node");
            Status::internal(format!("node {node} answered with a malformed message"))
        })
    }

    /// Like [`Self::relay`] for operations without a payload.
    pub(crate) async fn relay_op(&self, node: &str, relayed: Relayed) -> Result<(), Status> {
        let (header, _) = self.relay(node, relayed, RELAY_OP_TIMEOUT).await?;
        relay::outcome(&header)
    }

    /// Leaves the bus: pending answers are sent first.
    pub(crate) async fn leave(&self) {
        if let Err(e) = self.client.drain().await {
            tracing::debug!(error = %e, "leaving the cluster");
        }
    }
}

fn request_error(e: &async_nats::RequestError, node: &str, timeout: Duration) -> Status {
    use async_nats::RequestErrorKind as Kind;
    match e.kind() {
        Kind::NoResponders => Status::unavailable(format!(
            "the client's node {node} is not reachable (it may have stopped; the client will \
             reconnect to another node)"
        )),
        Kind::TimedOut => {
            Status::deadline_exceeded(format!("node {node} did not answer within {timeout:?}"))
        }
        Kind::MaxPayloadExceeded => Status::resource_exhausted(format!(
            "the request is too large to relay to node {node}: {e}"
        )),
        _ => Status::unavailable(format!("cannot reach node {node}: {e}")),
    }
}

/// Serves the requests other nodes send to this one, until the server shuts down.
pub(crate) async fn serve(shared: Arc<Shared>, mut subscriber: async_nats::Subscriber) {
    let Some(cluster) = shared.cluster.as_ref() else {
        return;
    };
    loop {
        let message = tokio::select! {
            () = shared.shutdown.cancelled() => break,
            message = subscriber.next() => message,
        };
        let Some(message) = message else {
            tracing::warn!("the cluster subscription ended");
            break;
        };
        let Some(reply_to) = message.reply else {
            tracing::debug!("a relayed request without a reply subject; ignored");
            continue;
        };
        let Ok(permit) = Arc::clone(&cluster.in_flight).try_acquire_owned() else {
            let busy = Status::resource_exhausted("the node is serving too many relayed requests");
            if let Err(e) = cluster
                .client
                .publish(reply_to, relay::encode_outcome(Err(&busy)))
                .await
            {
                tracing::debug!(error = %e, "cannot answer a relayed request");
            }
            continue;
        };
        let shared = Arc::clone(&shared);
        shared.calls.clone().spawn(async move {
            let answer = answer(&shared, &message.payload).await;
            if let Some(cluster) = shared.cluster.as_ref() {
                if let Err(e) = cluster.client.publish(reply_to, answer).await {
                    tracing::debug!(error = %e, "cannot answer a relayed request");
                }
            }
            drop(permit);
        });
    }
    if let Err(e) = subscriber.unsubscribe().await {
        tracing::debug!(error = %e, "leaving the node subject");
    }
}

/// Acts on a request from another node; the answer's bytes.
async fn answer(shared: &Arc<Shared>, payload: &[u8]) -> Bytes {
    let relayed = match Relayed::decode(payload) {
        Ok(relayed) => relayed,
        Err(e) => {
            tracing::warn!(error = %e, "malformed relayed request");
            return relay::encode_outcome(Err(&Status::invalid_argument(e.to_string())));
        }
    };
    let Some(state) = shared.sessions.get(relayed.session) else {
        // Not (or no longer) here: the client left, or moved to another node.
        let gone = Status::unavailable("the client is not connected");
        return relay::encode_outcome(Err(&gone));
    };
    let handle = SessionHandle::local(state, Arc::clone(shared));
    tracing::debug!(session = %relayed.session, "serving a relayed request");
    match relayed.op {
        Op::Call { header, payload } => {
            let timeout = Duration::from_millis(header.timeout_ms);
            match handle.call_here(header, payload, timeout).await {
                Ok((reply, payload)) => relay::encode_reply(&reply, &payload),
                Err(status) => relay::encode_outcome(Err(&status)),
            }
        }
        Op::SetUser(user) => done(handle.set_user(user).await),
        Op::End => done(handle.end().await),
    }
}

fn done(result: Result<(), Status>) -> Bytes {
    relay::encode_outcome(result.as_ref().map(|&()| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("nats://app:s3cret@127.0.0.1:4222"),
            "nats://app:***@127.0.0.1:4222"
        );
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact("nats://a:b@h1:1,nats://h2:2"),
            "nats://a:***@h1:1,nats://h2:2"
        );
        let shown = format!("{:?}", ClusterConfig::nats("nats://u:pw@h:1"));
        assert!(!shown.contains("pw"), "{shown}");
    }
}
