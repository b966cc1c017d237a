//! The frames of a STREAMING stream ([`StreamKind::Streaming`](crate::StreamKind)), without I/O.
//!
//! After the caller's `CallHeader` frame, every frame with an **empty header** is one message.
//! The callee ends the call with a frame whose header is a `ReplyHeader` with `end = true`
//! (never empty, since `end` is set) and whose payload is empty.

use bytes::Bytes;
use prost::Message as _;

use crate::frame::{encode_head, Frame};
use crate::wire::ReplyHeader;
use crate::{Code, Status};

/// What a frame from the callee on a STREAMING stream is.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamFrame {
    /// One message.
    Message(Bytes),
    /// The end of the call, with its status.
    End(ReplyHeader),
}

/// Why a frame is not a valid STREAMING frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamFrameError {
    /// The header is not a `ReplyHeader`.
    #[error("malformed end of stream: {0}")]
    Header(String),
    /// A non-empty header that does not say `end`.
    #[error("a frame with a header must end the stream")]
    NotEnd,
    /// The end frame carries a payload.
    #[error("the end of a stream carries no message")]
    EndWithPayload,
    /// The caller sent a header after its `CallHeader`.
    #[error("after the call header, a caller's frames carry messages only")]
    HeaderFromCaller,
}

/// The head of a message frame of `len` bytes (an empty header, then the payload's length).
pub fn message_head(len: usize) -> Bytes {
    encode_head(None, &(), len)
}

/// The whole frame that ends a call with `status` (and `session`, the login change the call
/// made, if any).
pub fn end_frame(status: &Status, session: Option<crate::wire::SessionUpdate>) -> Bytes {
    let reply = ReplyHeader {
        code: status.code().as_u32(),
        message: status.message().to_owned(),
        metadata: Default::default(),
        session,
        call_id: 0,
        end: true,
    };
    encode_head(None, &reply, 0)
}

/// Reads a frame the callee sent.
pub fn callee_frame(frame: Frame) -> Result<StreamFrame, StreamFrameError> {
    if frame.header.is_empty() {
        return Ok(StreamFrame::Message(frame.payload));
    }
    let reply =
        ReplyHeader::decode(frame.header).map_err(|e| StreamFrameError::Header(e.to_string()))?;
    if !reply.end {
        return Err(StreamFrameError::NotEnd);
    }
    if !frame.payload.is_empty() {
        return Err(StreamFrameError::EndWithPayload);
    }
    Ok(StreamFrame::End(reply))
}

/// Reads a frame the caller sent after its `CallHeader`: a message.
pub fn caller_frame(frame: Frame) -> Result<Bytes, StreamFrameError> {
    if frame.header.is_empty() {
        Ok(frame.payload)
    } else {
        Err(StreamFrameError::HeaderFromCaller)
    }
}

/// The status an end frame carries.
pub fn end_status(reply: &ReplyHeader) -> Status {
    if reply.code == Code::Ok.as_u32() {
        Status::new(Code::Ok, "")
    } else {
        Status::from_wire(reply.code, reply.message.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameDecoder, Limits};

    fn decode(bytes: &[u8]) -> Frame {
        let mut buf = Bytes::copy_from_slice(bytes);
        FrameDecoder::new(Limits::default())
            .decode(&mut buf)
            .unwrap()
            .expect("a whole frame")
    }

    #[test]
    fn messages_and_the_end_round_trip() {
        let mut bytes = message_head(3).to_vec();
        bytes.extend_from_slice(b"abc");
        assert_eq!(
            callee_frame(decode(&bytes)),
            Ok(StreamFrame::Message(Bytes::from_static(b"abc")))
        );
        assert_eq!(caller_frame(decode(&bytes)), Ok(Bytes::from_static(b"abc")));
        // An empty message is a frame of two zero lengths.
        assert_eq!(&message_head(0)[..], &[0, 0]);

        let ok = end_frame(&Status::new(Code::Ok, ""), None);
        let StreamFrame::End(reply) = callee_frame(decode(&ok)).unwrap() else {
            panic!("not the end")
        };
        assert_eq!(end_status(&reply).code(), Code::Ok);
        let failed = end_frame(&Status::not_found("gone"), None);
        let StreamFrame::End(reply) = callee_frame(decode(&failed)).unwrap() else {
            panic!("not the end")
        };
        let status = end_status(&reply);
        assert_eq!((status.code(), status.message()), (Code::NotFound, "gone"));
    }

    #[test]
    fn headers_that_do_not_end_the_stream_are_refused() {
        let reply = ReplyHeader {
            code: 0,
            message: "x".into(),
            ..Default::default()
        };
        let not_end = encode_head(None, &reply, 0);
        assert_eq!(
            callee_frame(decode(&not_end)),
            Err(StreamFrameError::NotEnd)
        );
        let mut with_payload = encode_head(
            None,
            &ReplyHeader {
                end: true,
                ..Default::default()
            },
            1,
        )
        .to_vec();
        with_payload.push(7);
        assert_eq!(
            callee_frame(decode(&with_payload)),
            Err(StreamFrameError::EndWithPayload)
        );
        assert_eq!(
            callee_frame(decode(&[1, 0xff, 0])),
            Err(StreamFrameError::Header(
                ReplyHeader::decode(&[0xffu8][..]).unwrap_err().to_string()
            ))
        );
        assert_eq!(
            caller_frame(decode(&ok_header())),
            Err(StreamFrameError::HeaderFromCaller)
        );
    }

    fn ok_header() -> Vec<u8> {
        end_frame(&Status::new(Code::Ok, ""), None).to_vec()
    }
}
