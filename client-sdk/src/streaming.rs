//! Streaming calls: each on a STREAMING stream of its own, request messages through a
//! [`RequestSink`], reply messages from a [`Streaming`] (see `docs/protocol.md`).
//!
//! Nothing is buffered beyond QUIC's flow-control windows: the server sends the next reply only
//! as the client reads, and [`RequestSink::send`] waits while the server is not reading.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use fluxon_proto::io::{call_error_status, CallError, FrameReader, ReadError};
use fluxon_proto::streaming::{callee_frame, end_status, message_head, StreamFrame};
use fluxon_proto::wire::CallHeader;
use fluxon_proto::{close, frame, Code, Status, StreamKind};
use futures_core::Stream;
use futures_util::StreamExt as _;
use prost::Message;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::time::Instant;

use crate::{CallOptions, Connection};

type Replies = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// The reply messages of a streaming call, decoded as `T`, as the server sends them.
///
/// The stream ends (`None`) when the server ends the call with success; an `Err` item is the
/// call's failure status (or a lost connection, or the deadline), after which it ends.
/// Dropping it before the end cancels the call: the server stops its handler.
pub struct Streaming<T> {
    replies: Replies,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming").finish_non_exhaustive()
    }
}

impl<T: Message + Default> Streaming<T> {
    /// The next reply; `Ok(None)` once the server has ended the call with success.
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        self.next().await.transpose()
    }
}

impl<T: Message + Default> Stream for Streaming<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.replies.as_mut().poll_next(cx).map(|item| {
            item.map(|bytes| {
                T::decode(bytes?)
                    .map_err(|e| Status::internal(format!("malformed reply message: {e}")))
            })
        })
    }
}

/// Sends the request messages of a streaming call.
///
/// [`finish`](Self::finish) (or dropping it) tells the server there are no more;
/// [`cancel`](Self::cancel) abandons the call.
pub struct RequestSink<T> {
    send: SendStream,
    max_message_size: usize,
    _type: PhantomData<fn(&T)>,
}

impl<T> std::fmt::Debug for RequestSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSink").finish_non_exhaustive()
    }
}

impl<T: Message> RequestSink<T> {
    /// Sends one message, waiting while the server's flow control holds it back.
    ///
    /// Fails once the server no longer reads the call's messages: `cancelled` when it ended the
    /// call (the reply stream says how), or the status of the refusal when it refused a message
    /// (too large, malformed).
    pub async fn send(&mut self, message: &T) -> Result<(), Status> {
        let len = message.encoded_len();
        if len > self.max_message_size {
            return Err(Status::resource_exhausted(format!(
                "message of {len} bytes exceeds the server's limit of {} bytes",
                self.max_message_size
            )));
        }
        // Head and message in one buffer: one allocation, and QUIC packs a contiguous buffer
        // with its neighbours into full packets.
        let head = message_head(len);
        let mut frame = bytes::BytesMut::with_capacity(head.len() + len);
        frame.extend_from_slice(&head);
        message.encode_raw(&mut frame);
        self.send
            .write_all_chunks(&mut [frame.freeze()])
            .await
            .map_err(|e| call_error_status(&CallError::Write(e)))
    }

    /// Tells the server no more messages follow.
    pub fn finish(mut self) {
        let _ = self.send.finish();
    }

    /// Abandons the call: the server stops its handler.
    pub fn cancel(mut self) {
        let _ = self.send.reset(VarInt::from_u32(close::stream::CANCELLED));
    }
}

impl Connection {
    /// Opens a streaming call to `route`: request messages go through the [`RequestSink`],
    /// replies come from the [`Streaming`], both at once (a bidirectional call; the other
    /// shapes are special cases). `options.timeout` is the deadline of the whole call; without
    /// one, the call runs until either side ends it.
    pub async fn open_streaming<Req: Message, Rep: Message + Default>(
        &self,
        route: &str,
        options: CallOptions,
    ) -> Result<(RequestSink<Req>, Streaming<Rep>), Status> {
        let deadline = options.timeout.map(|t| Instant::now() + t);
        let header = CallHeader {
            route: route.to_owned(),
            metadata: options.metadata,
            timeout_ms: options.timeout.map_or(0, |t| {
                u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
            }),
            ..Default::default()
        };
        let (mut send, recv) = self.open_stream(StreamKind::Streaming).await?;
        send.write_all(&frame::encode_head(None, &header, 0))
            .await
            .map_err(|e| Status::unavailable(format!("cannot start `{route}`: {e}")))?;
        let sink = RequestSink {
            send,
            max_message_size: self.max_message_size(),
            _type: PhantomData,
        };
        let replies = Streaming {
            replies: replies(self.clone(), recv, deadline, route.to_owned()),
            _type: PhantomData,
        };
        Ok((sink, replies))
    }

    /// Calls server-streaming `route` with `request` and returns its replies.
    pub async fn server_streaming<Req: Message, Rep: Message + Default>(
        &self,
        route: &str,
        request: &Req,
        options: CallOptions,
    ) -> Result<Streaming<Rep>, Status> {
        let (mut sink, replies) = self.open_streaming(route, options).await?;
        if let Err(status) = sink.send(request).await {
            // A server that refused the call at once stopped reading: its reply says why.
            if status.code() != Code::Cancelled {
                return Err(status);
            }
        }
        sink.finish();
        Ok(replies)
    }

    /// Calls client-streaming `route` with the messages of `requests` and returns its reply.
    /// The server may answer before the requests end (a refusal, say); sending stops then.
    pub async fn client_streaming<Req, Rep, S>(
        &self,
        route: &str,
        requests: S,
        options: CallOptions,
    ) -> Result<Rep, Status>
    where
        Req: Message,
        Rep: Message + Default,
        S: Stream<Item = Req> + Send,
    {
        let (mut sink, mut replies) = self.open_streaming::<Req, Rep>(route, options).await?;
        let pump = async move {
            let mut requests = std::pin::pin!(requests);
            while let Some(request) = requests.next().await {
                sink.send(&request).await?;
            }
            sink.finish();
            Ok::<(), Status>(())
        };
        let mut pump = std::pin::pin!(pump);
        let mut pumped = false;
        // A refused send means the server ended the call: its reply says why.
        let first = loop {
            tokio::select! {
                _ = &mut pump, if !pumped => pumped = true,
                first = replies.message() => break first,
            }
        };
        let reply =
            first?.ok_or_else(|| Status::internal(format!("`{route}` ended without a reply")))?;
        match replies.message().await? {
            None => Ok(reply),
            Some(_) => Err(Status::internal(format!(
                "`{route}` sent more than one reply to a client-streaming call"
            ))),
        }
    }
}

/// The replies read off `recv`, ending with the server's end frame.
fn replies(
    conn: Connection,
    recv: RecvStream,
    deadline: Option<Instant>,
    route: String,
) -> Replies {
    let reader = FrameReader::new(conn.reply_limits());
    let state = Some(ReplyState {
        conn,
        route,
        deadline,
        reader,
        recv,
    });
    let stream = futures_util::stream::unfold(state, |state| async move {
        let mut state = state?;
        let item = state.next().await?;
        let more = item.is_ok();
        Some((item, more.then_some(state)))
    });
    Box::pin(stream)
}

/// What reading a call's replies needs between two of them.
struct ReplyState {
    conn: Connection,
    route: String,
    deadline: Option<Instant>,
    reader: FrameReader,
    recv: RecvStream,
}

impl ReplyState {
    /// The next reply, an error that ends the stream, or `None` at its successful end.
    async fn next(&mut self) -> Option<Result<Bytes, Status>> {
        let read = self.reader.read_frame(&mut self.recv);
        let frame = match self.deadline {
            Some(at) => match tokio::time::timeout_at(at, read).await {
                Ok(r) => r,
                Err(_) => {
                    let _ = self.recv.stop(VarInt::from_u32(close::stream::CANCELLED));
                    return Some(Err(Status::deadline_exceeded(format!(
                        "`{}` did not finish within its deadline",
                        self.route
                    ))));
                }
            },
            None => read.await,
        };
        let frame = match frame {
            Ok(frame) => frame,
            // Finished without an end frame: not a stream a server sends.
            Err(ReadError::Empty) => {
                return Some(Err(Status::internal(format!(
                    "`{}` ended without a status",
                    self.route
                ))))
            }
            Err(e) => return Some(Err(call_error_status(&CallError::Read(e)))),
        };
        match callee_frame(frame) {
            Ok(StreamFrame::Message(bytes)) => Some(Ok(bytes)),
            Ok(StreamFrame::End(reply)) => {
                self.conn.apply_reply(&reply);
                let status = end_status(&reply);
                (status.code() != Code::Ok).then_some(Err(status))
            }
            Err(e) => {
                let _ = self.recv.stop(VarInt::from_u32(close::stream::MALFORMED));
                Some(Err(Status::internal(e.to_string())))
            }
        }
    }
}
