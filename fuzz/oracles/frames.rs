//! Oracle for the frame decoder and the protobuf headers carried in frames.
//!
//! Shared, file for file, by the `frames` and `headers` fuzz targets and by
//! `proto/tests/fuzz_frames.rs` (which includes it with `#[path]`), so CI checks the same
//! properties the fuzzer does.

use bytes::{Bytes, BytesMut};
use fluxon_proto::storage::StorageRequest;
use fluxon_proto::wire::{CallHeader, Hello, ReplyHeader, SessionUpdate, Welcome};
use fluxon_proto::{Frame, FrameDecoder, FrameError, Limits, StreamKind};
use prost::Message;

/// Everything a decoder produced from a byte stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub(crate) frames: Vec<Frame>,
    pub(crate) error: Option<FrameError>,
    pub(crate) idle_at_end: bool,
}

/// Decodes `data` in one piece, slicing frames out of a `Bytes` without copying.
pub(crate) fn decode_whole(data: &[u8], limits: Limits) -> Decoded {
    let mut decoder = FrameDecoder::new(limits);
    let mut input = Bytes::copy_from_slice(data);
    let mut frames = Vec::new();
    loop {
        match decoder.decode(&mut input) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => {
                return Decoded {
                    frames,
                    error: None,
                    idle_at_end: decoder.is_idle() && input.is_empty(),
                }
            }
            Err(e) => {
                return Decoded {
                    frames,
                    error: Some(e),
                    idle_at_end: false,
                }
            }
        }
    }
}

/// Decodes `data` delivered in chunks whose sizes cycle through `chunk_sizes` (each taken
/// modulo 64, plus one; one byte at a time when empty), into a growing `BytesMut`.
pub(crate) fn decode_chunked(data: &[u8], chunk_sizes: &[u8], limits: Limits) -> Decoded {
    let mut decoder = FrameDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let size = chunk_sizes
            .get(i % chunk_sizes.len().max(1))
            .map_or(1, |s| usize::from(s % 64) + 1)
            .min(rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    return Decoded {
                        frames,
                        error: Some(e),
                        idle_at_end: false,
                    }
                }
            }
        }
    }
    Decoded {
        frames,
        error: None,
        idle_at_end: decoder.is_idle() && buf.is_empty(),
    }
}

/// Decodes as every header type a peer may send; a decoded message survives a round trip.
pub(crate) fn check_headers(bytes: &[u8]) {
    fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
        if let Ok(msg) = M::decode(bytes) {
            let again =
                M::decode(msg.encode_to_vec().as_slice()).expect("re-encoded message decodes");
            assert_eq!(msg, again);
        }
    }
    round_trip::<Hello>(bytes);
    round_trip::<Welcome>(bytes);
    round_trip::<CallHeader>(bytes);
    round_trip::<ReplyHeader>(bytes);
    round_trip::<SessionUpdate>(bytes);
    round_trip::<StorageRequest>(bytes);
    if let Ok(reply) = ReplyHeader::decode(bytes) {
        // Unknown status codes decode (as `unknown`), never panic.
        let status = fluxon_proto::Status::from_wire(reply.code, reply.message);
        let _ = status.code().as_str();
    }
    if let Some(&first) = bytes.first() {
        if let Some(kind) = StreamKind::from_byte(first) {
            assert_eq!(kind as u8, first);
        }
    }
}

/// A frame read as a STREAMING stream's frame, from either side: a message exactly when its
/// header is empty, an end only with `end` set and no payload, and the end's status decodes.
pub(crate) fn check_streaming(frame: &Frame) {
    use fluxon_proto::streaming::{callee_frame, caller_frame, end_status, StreamFrame};
    match callee_frame(frame.clone()) {
        Ok(StreamFrame::Message(payload)) => {
            assert!(frame.header.is_empty());
            assert_eq!(payload, frame.payload);
        }
        Ok(StreamFrame::End(reply)) => {
            assert!(reply.end && frame.payload.is_empty() && !frame.header.is_empty());
            let _ = end_status(&reply).code().as_str();
        }
        Err(_) => assert!(!frame.header.is_empty()),
    }
    assert_eq!(caller_frame(frame.clone()).is_ok(), frame.header.is_empty());
}

/// The whole oracle: chunking never changes what is decoded, limits always hold, and every
/// decoded header is handled by every header decoder without panicking.
pub(crate) fn check(data: &[u8], chunk_sizes: &[u8], max_header: u16, max_payload: u16) {
    let limits = Limits {
        max_header: usize::from(max_header),
        max_payload: usize::from(max_payload),
    };
    let whole = decode_whole(data, limits);
    let chunked = decode_chunked(data, chunk_sizes, limits);
    assert_eq!(whole, chunked, "chunking changed the decoding");
    for frame in &whole.frames {
        assert!(frame.header.len() <= limits.max_header);
        assert!(frame.payload.len() <= limits.max_payload);
        check_headers(&frame.header);
        check_streaming(frame);
    }
    match &whole.error {
        Some(FrameError::HeaderTooLarge { len, max })
        | Some(FrameError::PayloadTooLarge { len, max }) => {
            assert!(*len > *max as u64)
        }
        _ => {}
    }
}
