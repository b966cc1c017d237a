//! CALLS streams: many calls at once on one stream, answered as they finish.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluxon_client::Code;
use fluxon_e2e::msg::Echo;
use fluxon_e2e::{app_router, client_config, connect, connect_with, routes, server_config, start};
use fluxon_proto::io::{FrameReader, ReadError};
use fluxon_proto::wire::{CallHeader, ReplyHeader};
use fluxon_proto::{frame, Limits, StreamKind};
use fluxon_server::{Request, ServerLimits, Status};
use prost::Message;

fn echo(text: &str, n: u64) -> Bytes {
    Bytes::from(
        Echo {
            text: text.into(),
            n,
        }
        .encode_to_vec(),
    )
}

fn echoed(reply: &ReplyHeader, payload: Bytes) -> String {
    assert_eq!(reply.code, 0, "{}", reply.message);
    Echo::decode(payload).unwrap().text
}

/// A CALLS stream driven by hand.
struct RawCalls {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
    opened: bool,
}

impl RawCalls {
    async fn open(conn: &quinn::Connection) -> Self {
        let (send, recv) = conn.open_bi().await.unwrap();
        Self {
            send,
            recv,
            reader: FrameReader::new(Limits::default()),
            opened: false,
        }
    }

    /// The bytes of request `call_id` (with the kind byte if it is the stream's first).
    fn request(
        &mut self,
        call_id: u64,
        route: &str,
        metadata: &[(&str, String)],
        body: Bytes,
    ) -> Vec<u8> {
        let header = CallHeader {
            route: route.to_owned(),
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            timeout_ms: 5_000,
            call_id,
            cancel: false,
        };
        let kind = (!self.opened).then_some(StreamKind::Calls);
        self.opened = true;
        let mut bytes = frame::encode_head(kind, &header, body.len()).to_vec();
        bytes.extend_from_slice(&body);
        bytes
    }

    async fn call(&mut self, call_id: u64, route: &str, body: Bytes) {
        let bytes = self.request(call_id, route, &[], body);
        self.send.write_all(&bytes).await.unwrap();
    }

    /// Reads the stream-level reply (call id 0) that ends a refused stream, checks its status,
    /// and checks that the stream then ends.
    async fn expect_refusal(&mut self, code: Code) {
        let (reply, _) = self.reply().await.unwrap();
        assert_eq!(reply.call_id, 0);
        assert_eq!(Code::from_u32(reply.code), code, "{}", reply.message);
        assert!(matches!(self.reply().await, Err(ReadError::Empty)));
    }

    async fn reply(&mut self) -> Result<(ReplyHeader, Bytes), ReadError> {
        let frame = tokio::time::timeout(
            Duration::from_secs(10),
            self.reader.read_frame(&mut self.recv),
        )
        .await
        .expect("a reply or the stream's end within 10 s")?;
        Ok((frame.decode_header().unwrap(), frame.payload))
    }
}

/// Starts a call of the slow route that takes `ms` milliseconds.
fn spawn_slow_call(
    conn: &fluxon_client::Connection,
    text: &str,
    ms: u64,
) -> tokio::task::JoinHandle<Result<Echo, Status>> {
    let (conn, request) = (
        conn.clone(),
        Echo {
            text: text.into(),
            n: ms,
        },
    );
    tokio::spawn(async move { conn.call::<_, Echo>(routes::SLOW, &request).await })
}

#[tokio::test]
async fn calls_on_one_stream_run_at_once_and_are_answered_as_they_finish() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let mut stream = RawCalls::open(&conn.raw_connection().unwrap()).await;

    stream.call(1, routes::SLOW, echo("slow", 400)).await;
    stream.call(2, routes::ECHO, echo("two", 0)).await;
    stream.call(3, routes::ECHO, echo("three", 0)).await;
    let mut order = Vec::new();
    for _ in 0..3 {
        let (reply, payload) = stream.reply().await.unwrap();
        let text = echoed(&reply, payload);
        let expected = match reply.call_id {
            1 => "slow",
            2 => "two",
            3 => "three",
            other => panic!("reply to unknown call {other}"),
        };
        assert_eq!(text, expected);
        order.push(reply.call_id);
    }
    assert_eq!(order[2], 1, "the slow call is answered last: {order:?}");

    // A login on the stream is visible to the next call on it.
    let login = fluxon_e2e::msg::Login { user_id: 42 };
    stream
        .call(4, routes::LOGIN, Bytes::from(login.encode_to_vec()))
        .await;
    let (reply, _) = stream.reply().await.unwrap();
    assert_eq!(
        (reply.call_id, reply.session.and_then(|s| s.user_id)),
        (4, Some(42))
    );
    stream.call(5, routes::WHOAMI, Bytes::new()).await;
    let (reply, payload) = stream.reply().await.unwrap();
    assert_eq!((reply.call_id, reply.code), (5, 0), "{}", reply.message);
    let who = fluxon_e2e::msg::Whoami::decode(payload).unwrap();
    assert_eq!(who.user_id, Some(42));

    // The client ends the stream; the server ends its side too.
    stream.send.finish().unwrap();
    assert!(matches!(stream.reply().await, Err(ReadError::Empty)));
    server.shutdown(Duration::from_secs(1)).await;
}

/// The SDK sends concurrent calls on one stream: they need no more stream credit than the
/// server grants at first, while one stream per call does (the server grants more with
/// MAX_STREAMS). Calls beyond the server's per-stream limit wait their turn.
#[tokio::test]
async fn concurrent_sdk_calls_share_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        server_config(dir.path()).limits(ServerLimits::default().max_concurrent_streams(4));
    let server = start(config, app_router()).await;
    let request = Echo {
        text: "again".into(),
        n: 30,
    };

    let conn = connect(&server).await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let conn = conn.clone();
        let request = request.clone();
        calls.spawn(async move { conn.call::<_, Echo>(routes::SLOW, &request).await });
    }
    while let Some(reply) = calls.join_next().await {
        assert_eq!(reply.unwrap().unwrap().text, "again");
    }
    let shared = conn
        .raw_connection()
        .unwrap()
        .stats()
        .frame_rx
        .max_streams_bidi;

    // The same calls, one stream each, on another connection.
    let other = connect(&server).await;
    let raw = other.raw_connection().unwrap();
    let header = CallHeader {
        route: routes::SLOW.to_owned(),
        ..Default::default()
    };
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (raw, header, body) = (
            raw.clone(),
            header.clone(),
            Bytes::from(request.encode_to_vec()),
        );
        calls.spawn(
            async move { fluxon_proto::io::call(&raw, &header, body, Limits::default()).await },
        );
    }
    while let Some(reply) = calls.join_next().await {
        let (reply, payload) = reply.unwrap().unwrap();
        assert_eq!(echoed(&reply, payload), "again");
    }
    let one_each = raw.stats().frame_rx.max_streams_bidi;
    // The server raises the limit as streams close (batching several closes in one update at
    // times): 40 streams over a limit of 4 take several updates, while the shared stream needs
    // at most the one that replaces the handshake's stream.
    assert!(
        one_each >= 5,
        "{one_each} stream-credit updates for 40 streams"
    );
    assert!(
        shared <= 1,
        "concurrent SDK calls needed {shared} stream-credit updates"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_idle_stream_waits_past_the_read_timeout_but_a_started_request_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ServerLimits::default().request_read_timeout(Duration::from_millis(300));
    let server = start(server_config(dir.path()).limits(limits), app_router()).await;
    let conn = connect(&server).await;
    let mut stream = RawCalls::open(&conn.raw_connection().unwrap()).await;

    stream.call(1, routes::ECHO, echo("hi", 0)).await;
    let (reply, payload) = stream.reply().await.unwrap();
    assert_eq!((reply.call_id, echoed(&reply, payload).as_str()), (1, "hi"));

    // Idle between calls for twice the read timeout: the stream is still served.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream.call(2, routes::ECHO, echo("hi", 0)).await;
    let (reply, payload) = stream.reply().await.unwrap();
    assert_eq!((reply.call_id, echoed(&reply, payload).as_str()), (2, "hi"));

    // A request that starts and stalls ends the stream after the read timeout, with a
    // stream-level reply (call id 0).
    let third = stream.request(3, routes::ECHO, &[], echo("hi", 0));
    stream.send.write_all(&third[..2]).await.unwrap();
    stream.expect_refusal(Code::DeadlineExceeded).await;
    // The connection is unharmed.
    let reply: Echo = conn.call(routes::ECHO, &Echo::default()).await.unwrap();
    assert_eq!(reply, Echo::default());
    server.shutdown(Duration::from_secs(1)).await;
}

/// A request the server refuses (a header over its limit) ends the stream: the calls it took
/// before are still answered, then a stream-level reply says why.
#[tokio::test]
async fn a_refused_request_ends_the_stream_after_the_calls_taken_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let mut stream = RawCalls::open(&conn.raw_connection().unwrap()).await;

    stream.call(1, routes::SLOW, echo("taken", 300)).await;
    let oversized = stream.request(
        2,
        routes::ECHO,
        &[("filler", "x".repeat(70 * 1024))],
        echo("no", 0),
    );
    // The server may stop reading before all of it is written.
    let _ = stream.send.write_all(&oversized).await;
    let (reply, payload) = stream.reply().await.unwrap();
    assert_eq!(
        (reply.call_id, echoed(&reply, payload).as_str()),
        (1, "taken")
    );
    stream.expect_refusal(Code::ResourceExhausted).await;

    // Through the SDK, such a call fails alone and the next call succeeds.
    let request = Echo {
        text: "ok".into(),
        n: 0,
    };
    for _ in 0..3 {
        let big = fluxon_client::CallOptions::default().metadata("filler", "x".repeat(70 * 1024));
        let err = conn
            .call_with::<_, Echo>(routes::ECHO, &request, big)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        let reply: Echo = conn.call(routes::ECHO, &request).await.unwrap();
        assert_eq!(reply.text, "ok");
    }
    server.shutdown(Duration::from_secs(1)).await;
}

/// Shutdown stops reading CALLS streams: a request sent afterwards is not taken (the stream
/// ends without answering it), while a call in flight on another stream still completes.
#[tokio::test]
async fn shutdown_ends_call_streams_without_taking_new_requests() {
    let dir = tempfile::tempdir().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&taken);
    let router = app_router().route("test.Count/Take", move |_: Request<()>| {
        let counted = Arc::clone(&counted);
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Status>(())
        }
    });
    let server = start(server_config(dir.path()), router).await;
    let conn = connect(&server).await;
    let mut idle = RawCalls::open(&conn.raw_connection().unwrap()).await;
    idle.call(1, "test.Count/Take", Bytes::new()).await;
    let (reply, _) = idle.reply().await.unwrap();
    assert_eq!((reply.call_id, reply.code), (1, 0));
    assert_eq!(taken.load(Ordering::SeqCst), 1);

    // A slow call keeps the server's shutdown waiting.
    let slow = spawn_slow_call(&conn, "slow", 1_500);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;

    let late = idle.request(2, "test.Count/Take", &[], Bytes::new());
    // The server stopped reading: the write may fail.
    let _ = idle.send.write_all(&late).await;
    assert!(
        matches!(idle.reply().await, Err(ReadError::Empty)),
        "the stream ends without a reply"
    );
    assert_eq!(taken.load(Ordering::SeqCst), 1, "the request was not taken");
    let slow = slow.await.unwrap().expect("the call in flight completes");
    assert_eq!(slow.text, "slow");
    shutdown.await.unwrap();
}

/// A panicking handler fails its own call (`internal`, not retried); the calls beside it on the
/// same stream complete.
#[tokio::test]
async fn a_panicking_handler_fails_only_its_own_call() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    fn handler_bug() -> Result<(), Status> {
        panic!("handler bug")
    }
    let router = app_router().route("test.Bug/Panic", move |_: Request<()>| {
        let counted = Arc::clone(&counted);
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            handler_bug()
        }
    });
    let server = start(server_config(dir.path()), router).await;
    let conn = connect_with(&server, client_config(&server)).await.unwrap();

    let slow = spawn_slow_call(&conn, "beside", 300);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = conn.call::<_, ()>("test.Bug/Panic", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "ran once, not retried");
    assert_eq!(slow.await.unwrap().unwrap().text, "beside");

    // The connection and later calls are unharmed.
    let reply: Echo = conn.call(routes::ECHO, &Echo::default()).await.unwrap();
    assert_eq!(reply, Echo::default());
    server.shutdown(Duration::from_secs(1)).await;
}

/// Many concurrent calls of different sizes share the stream, their frames gathered into common
/// writes on both sides: each gets its own reply back, whole.
#[tokio::test]
async fn concurrent_calls_of_mixed_sizes_each_get_their_own_reply() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        let conn = conn.clone();
        calls.spawn(async move {
            // Sizes from empty to 20 KB, across packet boundaries.
            let text = format!("{i:03}-").repeat((i as usize * 37) % 4_000);
            let reply: Echo = conn
                .call(
                    routes::ECHO,
                    &Echo {
                        text: text.clone(),
                        n: i,
                    },
                )
                .await
                .unwrap();
            assert_eq!((reply.n, reply.text.len()), (i, text.len()));
            assert_eq!(reply.text, text);
        });
    }
    let mut done = 0;
    while let Some(joined) = calls.join_next().await {
        joined.unwrap();
        done += 1;
    }
    assert_eq!(done, 200);
    server.shutdown(Duration::from_secs(1)).await;
}

/// With `call_lanes(4)` the client spreads its calls over four CALLS streams: a server that
/// runs at most 4 calls per stream then runs 16 at once, which one stream never allows.
#[tokio::test]
async fn calls_spread_over_lanes_run_past_one_streams_limit() {
    const LIMIT: usize = 4;
    const CALLS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let config = server_config(dir.path())
        .limits(ServerLimits::default().max_concurrent_streams(LIMIT as u32));
    let running = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let router = {
        let (running, gate) = (Arc::clone(&running), Arc::clone(&gate));
        fluxon_server::Router::new().route("test.Lanes/Hold", move |req: Request<Echo>| {
            let (running, gate) = (Arc::clone(&running), Arc::clone(&gate));
            async move {
                running.fetch_add(1, Ordering::SeqCst);
                let _permit = gate
                    .acquire()
                    .await
                    .map_err(|_| Status::internal("gate closed"))?;
                Ok::<_, Status>(req.into_inner())
            }
        })
    };
    let server = start(config, router).await;
    let conn = connect_with(&server, client_config(&server).call_lanes(4))
        .await
        .unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..CALLS {
        let conn = conn.clone();
        calls.spawn(async move {
            let request = Echo {
                text: "held".into(),
                n: n as u64,
            };
            conn.call::<_, Echo>("test.Lanes/Hold", &request).await
        });
    }
    // Every call reaches its handler at once: bounded wait, no timing assumption beyond it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while running.load(Ordering::SeqCst) < CALLS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {CALLS} calls running at once over 4 lanes",
            running.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.add_permits(CALLS);
    while let Some(reply) = calls.join_next().await {
        assert_eq!(reply.unwrap().unwrap().text, "held");
    }
    server.shutdown(Duration::from_secs(1)).await;
}
