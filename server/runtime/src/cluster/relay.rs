//! The messages nodes relay to each other, as bytes: no bus, no sockets (the NATS side is in
//! the parent module). A node that must act on a session held by another node sends a
//! [`Relayed`] request to that node's subject; the holder answers with a reply header and a
//! payload. Every decoder here reads bytes from the network and is fuzzed
//! (`fuzz/fuzz_targets/relay.rs`).

use bytes::Bytes;
use fluxon_proto::cluster::{relay_request, End, RelayReply, RelayRequest, SetUser};
use fluxon_proto::wire::{CallHeader, ReplyHeader};
use fluxon_proto::Status;
use prost::Message;

use crate::session::SessionId;

/// The longest node name a cluster accepts.
pub const MAX_NODE_ID_LEN: usize = 64;

/// What a node asks the holder of a session to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A reverse call to the session's client, with its request payload.
    Call {
        /// The call's route, timeout and metadata.
        header: CallHeader,
        /// The encoded request.
        payload: Bytes,
    },
    /// Log the session in as this user, or out (`None`).
    SetUser(Option<i64>),
    /// End the session and close its connection.
    End,
}

/// A request relayed to the node holding `session`.
#[derive(Clone, Debug, PartialEq)]
pub struct Relayed {
    /// The session acted on.
    pub session: SessionId,
    /// What to do.
    pub op: Op,
}

/// Bytes that are not a relayed request or reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The bytes are not the protobuf message expected.
    #[error("malformed relay message: {0}")]
    Malformed(String),
    /// The session id is not 16 bytes.
    #[error("a relayed session id is 16 bytes, not {0}")]
    SessionId(usize),
    /// The request names no operation.
    #[error("a relayed request names no operation")]
    NoOperation,
    /// The reply has no header.
    #[error("a relayed reply has no header")]
    NoHeader,
}

/// The NATS subject a node listens on for relayed requests: `<prefix>.node.<node>`.
pub fn node_subject(prefix: &str, node: &str) -> String {
    format!("{prefix}.node.{node}")
}

/// Whether `name` can be a node name or a subject prefix token in a cluster: 1 to
/// [`MAX_NODE_ID_LEN`] ASCII letters, digits, `-` or `_` (a NATS subject token without
/// wildcards, dots or spaces).
pub fn valid_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_ID_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Relayed {
    /// The request as sent on the bus.
    pub fn encode(&self) -> Bytes {
        let (op, payload) = match &self.op {
            Op::Call { header, payload } => {
                (relay_request::Op::Call(header.clone()), payload.clone())
            }
            Op::SetUser(user_id) => (
                relay_request::Op::SetUser(SetUser { user_id: *user_id }),
                Bytes::new(),
            ),
            Op::End => (relay_request::Op::End(End {}), Bytes::new()),
        };
        RelayRequest {
            session_id: self.session.as_bytes().to_vec(),
            op: Some(op),
            payload: payload.to_vec(),
        }
        .encode_to_vec()
        .into()
    }

    /// Reads a request received from the bus.
    pub fn decode(bytes: &[u8]) -> Result<Self, RelayError> {
        let req = RelayRequest::decode(bytes).map_err(|e| RelayError::Malformed(e.to_string()))?;
        let id = <[u8; 16]>::try_from(req.session_id.as_slice())
            .map_err(|_| RelayError::SessionId(req.session_id.len()))?;
        let op = match req.op.ok_or(RelayError::NoOperation)? {
            relay_request::Op::Call(header) => Op::Call {
                header,
                payload: Bytes::from(req.payload),
            },
            relay_request::Op::SetUser(set) => Op::SetUser(set.user_id),
            relay_request::Op::End(End {}) => Op::End,
        };
        Ok(Self {
            session: SessionId::from_bytes(id),
            op,
        })
    }
}

/// A reply as sent on the bus: the header and payload of a call's outcome.
pub fn encode_reply(header: &ReplyHeader, payload: &[u8]) -> Bytes {
    RelayReply {
        header: Some(header.clone()),
        payload: payload.to_vec(),
    }
    .encode_to_vec()
    .into()
}

/// A reply carrying only an outcome: `Ok` for a done operation, or the error met.
pub fn encode_outcome(outcome: Result<(), &Status>) -> Bytes {
    let header = match outcome {
        Ok(()) => ReplyHeader::default(),
        Err(status) => ReplyHeader {
            code: status.code().as_u32(),
            message: status.message().to_owned(),
            ..Default::default()
        },
    };
    encode_reply(&header, &[])
}

/// Reads a reply received from the bus.
pub fn decode_reply(bytes: &[u8]) -> Result<(ReplyHeader, Bytes), RelayError> {
    let reply = RelayReply::decode(bytes).map_err(|e| RelayError::Malformed(e.to_string()))?;
    let header = reply.header.ok_or(RelayError::NoHeader)?;
    Ok((header, Bytes::from(reply.payload)))
}

/// The outcome a reply header tells, for operations without a payload.
pub fn outcome(header: &ReplyHeader) -> Result<(), Status> {
    if header.code == fluxon_proto::Code::Ok.as_u32() {
        Ok(())
    } else {
        Err(Status::from_wire(header.code, header.message.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluxon_proto::Code;

    fn id() -> SessionId {
        SessionId::from_bytes([7; 16])
    }

    #[test]
    fn every_operation_round_trips() {
        let call = Op::Call {
            header: CallHeader {
                route: "school.Events/Notify".into(),
                timeout_ms: 1500,
                ..Default::default()
            },
            payload: Bytes::from_static(b"\x0a\x02hi"),
        };
        for op in [call, Op::SetUser(Some(42)), Op::SetUser(None), Op::End] {
            let relayed = Relayed {
                session: id(),
                op: op.clone(),
            };
            assert_eq!(Relayed::decode(&relayed.encode()), Ok(relayed));
        }
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert!(matches!(
            Relayed::decode(b"\xff\xff\xff"),
            Err(RelayError::Malformed(_))
        ));
        let short = RelayRequest {
            session_id: vec![1; 15],
            op: Some(relay_request::Op::End(End {})),
            payload: vec![],
        }
        .encode_to_vec();
        assert_eq!(Relayed::decode(&short), Err(RelayError::SessionId(15)));
        let no_op = RelayRequest {
            session_id: vec![1; 16],
            op: None,
            payload: vec![],
        }
        .encode_to_vec();
        assert_eq!(Relayed::decode(&no_op), Err(RelayError::NoOperation));
    }

    #[test]
    fn replies_round_trip() {
        let header = ReplyHeader {
            code: Code::Ok.as_u32(),
            ..Default::default()
        };
        let (h, p) = decode_reply(&encode_reply(&header, b"abc")).unwrap();
        assert_eq!((h, p.as_ref()), (header, &b"abc"[..]));

        let refused = Status::unavailable("the client is not connected");
        let (h, p) = decode_reply(&encode_outcome(Err(&refused))).unwrap();
        assert!(p.is_empty());
        let back = outcome(&h).unwrap_err();
        assert_eq!(back.code(), Code::Unavailable);
        assert_eq!(back.message(), "the client is not connected");
        let (h, _) = decode_reply(&encode_outcome(Ok(()))).unwrap();
        assert!(outcome(&h).is_ok());

        assert_eq!(decode_reply(&[]), Err(RelayError::NoHeader));
    }

    #[test]
    fn node_names_are_subject_tokens() {
        assert!(valid_token("node-1"));
        assert!(valid_token("a1b2c3d4e5f6"));
        assert!(!valid_token(""));
        assert!(!valid_token("a.b"));
        assert!(!valid_token("a*"));
        assert!(!valid_token("a b"));
        assert!(!valid_token(">"));
        assert!(!valid_token(&"x".repeat(MAX_NODE_ID_LEN + 1)));
        assert_eq!(node_subject("fluxon", "n1"), "fluxon.node.n1");
    }
}
