//! Stream kinds and the frame codec.
//!
//! Every stream starts with one byte naming its [`StreamKind`] (streams opened by either side), then
//! carries frames. A frame is
//!
//! ```text
//! varint(header_len) header varint(payload_len) payload
//! ```
//!
//! where `header` is a protobuf message (`Hello`, `CallHeader`, `ReplyHeader`, ...) and `payload` is the
//! application's protobuf message. Varints are protobuf's (LEB128, at most 10 bytes). Lengths are
//! checked against [`Limits`] as soon as they are read, so an oversized message is refused before
//! any of its bytes are buffered.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

/// What a stream carries, named by its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StreamKind {
    /// The session handshake: `Hello` then `Welcome`. Always the client's first stream.
    Hello = 1,
    /// One call: a `CallHeader` frame with its payload, answered by a `ReplyHeader` frame.
    Call = 2,
    /// A cloud-storage transfer (see the cloud-storage part of `docs/protocol.md`).
    Storage = 3,
    /// Many calls at once, for as long as the stream lives: `CallHeader` frames tagged with a
    /// `call_id`, answered by `ReplyHeader` frames carrying it back, in any order (see
    /// `docs/protocol.md`).
    Calls = 4,
    /// A streaming call: a `CallHeader` frame, then any number of message frames each way
    /// (frames with an empty header), ended by the server's `ReplyHeader` frame with
    /// `end = true` (see `docs/protocol.md`).
    Streaming = 5,
}

impl StreamKind {
    /// Parses the first byte of a stream.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Hello),
            2 => Some(Self::Call),
            3 => Some(Self::Storage),
            4 => Some(Self::Calls),
            5 => Some(Self::Streaming),
            _ => None,
        }
    }
}

/// Size limits a decoder enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest header accepted, in bytes.
    pub max_header: usize,
    /// Largest payload accepted, in bytes.
    pub max_payload: usize,
}

impl Limits {
    /// Default largest header: 64 KiB (route, metadata).
    pub const DEFAULT_MAX_HEADER: usize = 64 * 1024;
    /// Default largest payload: 4 MiB.
    pub const DEFAULT_MAX_PAYLOAD: usize = 4 * 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header: Self::DEFAULT_MAX_HEADER,
            max_payload: Self::DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// One decoded frame: the encoded header and the encoded payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header message's bytes.
    pub header: Bytes,
    /// The payload message's bytes.
    pub payload: Bytes,
}

impl Frame {
    /// Decodes the header as protobuf message `H`.
    pub fn decode_header<H: Message + Default>(&self) -> Result<H, prost::DecodeError> {
        H::decode(self.header.clone())
    }
}

/// Why bytes could not be decoded as a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A length prefix was not a valid varint (more than 10 bytes or over `u64`).
    #[error("malformed length prefix")]
    BadLength,
    /// The header is longer than allowed.
    #[error("header of {len} bytes exceeds the limit of {max} bytes")]
    HeaderTooLarge {
        /// Length announced by the peer.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The payload is longer than allowed.
    #[error("payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Length announced by the peer.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
}

/// Bytes a [`FrameDecoder`] reads from: a growable [`BytesMut`] or a received [`Bytes`] chunk,
/// which frames are then sliced out of without copying.
pub trait FrameInput {
    /// The bytes not consumed yet.
    fn unread(&self) -> &[u8];
    /// Drops the first `n` unread bytes.
    fn skip(&mut self, n: usize);
    /// Takes the first `n` unread bytes.
    fn take(&mut self, n: usize) -> Bytes;
    /// Hints that `n` more bytes will be needed.
    fn expect(&mut self, _n: usize) {}
}

impl FrameInput for BytesMut {
    fn unread(&self) -> &[u8] {
        self
    }

    fn skip(&mut self, n: usize) {
        self.advance(n);
    }

    fn take(&mut self, n: usize) -> Bytes {
        self.split_to(n).freeze()
    }

    fn expect(&mut self, n: usize) {
        self.reserve(n);
    }
}

impl FrameInput for Bytes {
    fn unread(&self) -> &[u8] {
        self
    }

    fn skip(&mut self, n: usize) {
        self.advance(n);
    }

    fn take(&mut self, n: usize) -> Bytes {
        self.split_to(n)
    }
}

#[derive(Clone, Debug)]
enum State {
    HeaderLen,
    Header(usize),
    PayloadLen(Bytes),
    Payload(Bytes, usize),
}

/// A sans-IO frame decoder: feed it bytes, take frames out.
///
/// ```
/// use bytes::BytesMut;
/// use fluxon_proto::{frame::encode_head, FrameDecoder, Limits, wire::CallHeader};
///
/// let header = CallHeader { route: "a.B/C".into(), ..Default::default() };
/// let mut buf = BytesMut::from(&encode_head(None, &header, 3)[..]);
/// buf.extend_from_slice(b"xyz");
/// let frame = FrameDecoder::new(Limits::default()).decode(&mut buf).unwrap().unwrap();
/// assert_eq!(&frame.payload[..], b"xyz");
/// ```
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    limits: Limits,
    state: State,
}

impl FrameDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::HeaderLen,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes one complete frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed; consumed bytes are removed from `buf`, and the
    /// decoder remembers where it stopped. After an error the decoder must not be used again.
    pub fn decode<B: FrameInput>(&mut self, buf: &mut B) -> Result<Option<Frame>, FrameError> {
        loop {
            match &self.state {
                State::HeaderLen => {
                    let Some(len) = take_varint(buf)? else {
                        return Ok(None);
                    };
                    let len = check(len, self.limits.max_header)
                        .map_err(|(len, max)| FrameError::HeaderTooLarge { len, max })?;
                    self.state = State::Header(len);
                }
                State::Header(len) => {
                    let have = buf.unread().len();
                    if have < *len {
                        buf.expect(*len - have);
                        return Ok(None);
                    }
                    let header = buf.take(*len);
                    self.state = State::PayloadLen(header);
                }
                State::PayloadLen(header) => {
                    let Some(len) = take_varint(buf)? else {
                        return Ok(None);
                    };
                    let len = check(len, self.limits.max_payload)
                        .map_err(|(len, max)| FrameError::PayloadTooLarge { len, max })?;
                    self.state = State::Payload(header.clone(), len);
                }
                State::Payload(header, len) => {
                    let have = buf.unread().len();
                    if have < *len {
                        buf.expect(*len - have);
                        return Ok(None);
                    }
                    let payload = buf.take(*len);
                    let header = header.clone();
                    self.state = State::HeaderLen;
                    return Ok(Some(Frame { header, payload }));
                }
            }
        }
    }

    /// Whether the decoder is between frames (so an end of stream here is clean).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::HeaderLen)
    }
}

fn check(len: u64, max: usize) -> Result<usize, (u64, usize)> {
    match usize::try_from(len) {
        Ok(l) if l <= max => Ok(l),
        _ => Err((len, max)),
    }
}

/// Reads a varint from the front of `buf` without consuming it unless it is complete.
fn take_varint<B: FrameInput>(buf: &mut B) -> Result<Option<u64>, FrameError> {
    let mut value: u64 = 0;
    let bytes = buf.unread();
    let available = bytes.len();
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(FrameError::BadLength);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            buf.skip(i + 1);
            return Ok(Some(value));
        }
    }
    if available >= 10 {
        return Err(FrameError::BadLength);
    }
    Ok(None)
}

/// Encodes everything of a frame up to its payload: the optional stream-kind byte, the header and
/// the payload's length prefix. The caller sends the payload's `payload_len` bytes right after.
///
/// Keeping the payload separate lets it be written without copying (`write_all_chunks`).
pub fn encode_head<H: Message>(kind: Option<StreamKind>, header: &H, payload_len: usize) -> Bytes {
    let header_len = header.encoded_len();
    let mut buf = BytesMut::with_capacity(1 + 10 + header_len + 10);
    if let Some(kind) = kind {
        buf.put_u8(kind as u8);
    }
    prost::encoding::encode_varint(header_len as u64, &mut buf);
    // Cannot fail: the buffer has room for `encoded_len` bytes and grows anyway.
    header.encode_raw(&mut buf);
    prost::encoding::encode_varint(payload_len as u64, &mut buf);
    buf.freeze()
}

/// Encodes a whole frame (kind byte, header, payload) into one buffer.
pub fn encode_frame<H: Message, P: Message>(
    kind: Option<StreamKind>,
    header: &H,
    payload: &P,
) -> Bytes {
    let head = encode_head(kind, header, payload.encoded_len());
    let mut buf = BytesMut::with_capacity(head.len() + payload.encoded_len());
    buf.extend_from_slice(&head);
    payload.encode_raw(&mut buf);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{CallHeader, ReplyHeader};

    fn header(route: &str) -> CallHeader {
        CallHeader {
            route: route.into(),
            timeout_ms: 1500,
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_in_one_piece() {
        let h = header("pkg.Svc/Method");
        let reply = ReplyHeader {
            code: 5,
            message: "gone".into(),
            ..Default::default()
        };
        let bytes = encode_frame(None, &h, &reply);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = FrameDecoder::new(Limits::default());
        let frame = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.decode_header::<CallHeader>().unwrap(), h);
        assert_eq!(ReplyHeader::decode(frame.payload).unwrap(), reply);
        assert!(buf.is_empty());
        assert!(dec.is_idle());
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let h = header("a.B/C");
        let payload = vec![7u8; 300];
        let mut bytes = encode_head(None, &h, payload.len()).to_vec();
        bytes.extend_from_slice(&payload);
        let mut dec = FrameDecoder::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut out = None;
        for (i, b) in bytes.iter().enumerate() {
            assert!(out.is_none(), "frame finished early at byte {i}");
            buf.put_u8(*b);
            out = dec.decode(&mut buf).unwrap();
        }
        let frame = out.expect("frame after the last byte");
        assert_eq!(&frame.payload[..], &payload[..]);
    }

    #[test]
    fn two_frames_back_to_back() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&encode_frame(None, &header("x.Y/1"), &header("p1")));
        buf.extend_from_slice(&encode_frame(None, &header("x.Y/2"), &header("p2")));
        let mut dec = FrameDecoder::new(Limits::default());
        let a = dec.decode(&mut buf).unwrap().unwrap();
        let b = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(a.decode_header::<CallHeader>().unwrap().route, "x.Y/1");
        assert_eq!(b.decode_header::<CallHeader>().unwrap().route, "x.Y/2");
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn oversized_payload_refused_from_its_length_alone() {
        let limits = Limits {
            max_header: 1024,
            max_payload: 100,
        };
        // Only the head is given: the decoder must refuse before any payload byte arrives.
        let head = encode_head(None, &header("a.B/C"), 101);
        let mut buf = BytesMut::from(&head[..]);
        let err = FrameDecoder::new(limits).decode(&mut buf).unwrap_err();
        assert_eq!(err, FrameError::PayloadTooLarge { len: 101, max: 100 });
    }

    #[test]
    fn oversized_header_refused() {
        let limits = Limits {
            max_header: 4,
            max_payload: 100,
        };
        let head = encode_head(None, &header("a.B/Long"), 0);
        let mut buf = BytesMut::from(&head[..]);
        let err = FrameDecoder::new(limits).decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::HeaderTooLarge { max: 4, .. }));
    }

    #[test]
    fn overlong_varint_is_an_error_not_a_wait() {
        let mut buf = BytesMut::from(&[0xffu8; 11][..]);
        let err = FrameDecoder::new(Limits::default())
            .decode(&mut buf)
            .unwrap_err();
        assert_eq!(err, FrameError::BadLength);
        // Ten bytes whose last one overflows u64.
        let mut buf =
            BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..]);
        let err = FrameDecoder::new(Limits::default())
            .decode(&mut buf)
            .unwrap_err();
        assert_eq!(err, FrameError::BadLength);
    }

    #[test]
    fn max_u64_length_is_too_large_not_a_panic() {
        let mut buf = BytesMut::new();
        prost::encoding::encode_varint(u64::MAX, &mut buf);
        let err = FrameDecoder::new(Limits::default())
            .decode(&mut buf)
            .unwrap_err();
        assert!(matches!(
            err,
            FrameError::HeaderTooLarge { len: u64::MAX, .. }
        ));
    }

    #[test]
    fn decoding_from_bytes_slices_without_copying() {
        let bytes = encode_frame(None, &header("a.B/C"), &header("payload"));
        let mut input = bytes.clone();
        let frame = FrameDecoder::new(Limits::default())
            .decode(&mut input)
            .unwrap()
            .unwrap();
        assert!(input.is_empty());
        // The payload points into the original buffer.
        let start = bytes.as_ptr() as usize;
        let p = frame.payload.as_ptr() as usize;
        assert!(p > start && p < start + bytes.len());
    }

    #[test]
    fn stream_kind_bytes() {
        for kind in [
            StreamKind::Hello,
            StreamKind::Call,
            StreamKind::Storage,
            StreamKind::Calls,
        ] {
            assert_eq!(StreamKind::from_byte(kind as u8), Some(kind));
        }
        assert_eq!(StreamKind::from_byte(0), None);
        assert_eq!(StreamKind::from_byte(200), None);
    }

    #[test]
    fn kind_byte_leads_the_head() {
        let head = encode_head(Some(StreamKind::Call), &header("a.B/C"), 0);
        assert_eq!(head[0], StreamKind::Call as u8);
    }
}
