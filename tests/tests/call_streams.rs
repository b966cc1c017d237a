//! CALLS streams: calls one after another on a stream that stays open between them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluxon_client::Code;
use fluxon_e2e::msg::Echo;
use fluxon_e2e::{app_router, client_config, connect, connect_with, routes, server_config, start};
use fluxon_proto::io::{CallStream, FrameReader, ReadError, StreamCallError};
use fluxon_proto::wire::{CallHeader, ReplyHeader};
use fluxon_proto::{close, frame, Limits, StreamKind};
use fluxon_server::{Request, ServerLimits, Status};
use prost::Message;

fn header(route: &str) -> CallHeader {
    CallHeader {
        route: route.to_owned(),
        metadata: Default::default(),
        timeout_ms: 5_000,
    }
}

fn echo(text: &str) -> Bytes {
    Bytes::from(
        Echo {
            text: text.into(),
            n: 0,
        }
        .encode_to_vec(),
    )
}

fn echoed(reply: &ReplyHeader, payload: Bytes) -> String {
    assert_eq!(reply.code, 0, "{}", reply.message);
    Echo::decode(payload).unwrap().text
}

#[tokio::test]
async fn one_stream_carries_many_calls_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let raw = conn.raw_connection().unwrap();

    let mut stream = CallStream::open(&raw).await.unwrap();
    assert!(!stream.is_reused());
    for i in 0..20 {
        let text = format!("call {i}");
        let (reply, payload) = stream
            .call(&header(routes::ECHO), echo(&text), Limits::default())
            .await
            .unwrap();
        assert_eq!(echoed(&reply, payload), text);
    }
    assert!(stream.is_reused());
    // A login on the stream is visible to the next call on it.
    let login = fluxon_e2e::msg::Login { user_id: 42 };
    let (reply, _) = stream
        .call(
            &header(routes::LOGIN),
            Bytes::from(login.encode_to_vec()),
            Limits::default(),
        )
        .await
        .unwrap();
    assert_eq!(reply.session.and_then(|s| s.user_id), Some(42));
    let (reply, payload) = stream
        .call(&header(routes::WHOAMI), Bytes::new(), Limits::default())
        .await
        .unwrap();
    assert_eq!(reply.code, 0, "{}", reply.message);
    let who = fluxon_e2e::msg::Whoami::decode(payload).unwrap();
    assert_eq!(who.user_id, Some(42));
    stream.finish();
    server.shutdown(Duration::from_secs(1)).await;
}

/// The SDK keeps a finished call's stream for the next call: sequential calls use no more
/// stream credit, while one stream per call does (the server grants more with MAX_STREAMS).
#[tokio::test]
async fn the_client_reuses_idle_call_streams() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        server_config(dir.path()).limits(ServerLimits::default().max_concurrent_streams(8));
    let server = start(config, app_router()).await;
    let request = Echo {
        text: "again".into(),
        n: 0,
    };

    let conn = connect(&server).await;
    for _ in 0..40 {
        let reply: Echo = conn.call(routes::ECHO, &request).await.unwrap();
        assert_eq!(reply.text, "again");
    }
    let reused = conn
        .raw_connection()
        .unwrap()
        .stats()
        .frame_rx
        .max_streams_bidi;

    // The same calls, one stream each, on another connection.
    let other = connect(&server).await;
    let raw = other.raw_connection().unwrap();
    for _ in 0..40 {
        let (reply, payload) = fluxon_proto::io::call(
            &raw,
            &header(routes::ECHO),
            Bytes::from(request.encode_to_vec()),
            Limits::default(),
        )
        .await
        .unwrap();
        assert_eq!(echoed(&reply, payload), "again");
    }
    let one_each = raw.stats().frame_rx.max_streams_bidi;
    assert!(
        one_each > 0,
        "40 streams over a limit of 8 need more credit"
    );
    assert_eq!(reused, 0, "sequential calls opened more than 8 streams");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_idle_stream_waits_past_the_read_timeout_but_a_started_request_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ServerLimits::default().request_read_timeout(Duration::from_millis(300));
    let server = start(server_config(dir.path()).limits(limits), app_router()).await;
    let conn = connect(&server).await;
    let raw = conn.raw_connection().unwrap();
    let (mut send, mut recv) = raw.open_bi().await.unwrap();

    let request = |kind| {
        let payload = echo("hi");
        let mut bytes = frame::encode_head(kind, &header(routes::ECHO), payload.len()).to_vec();
        bytes.extend_from_slice(&payload);
        bytes
    };
    let mut reader = FrameReader::new(Limits::default());
    send.write_all(&request(Some(StreamKind::Calls)))
        .await
        .unwrap();
    let first = reader.read_frame(&mut recv).await.unwrap();
    assert_eq!(echoed(&first.decode_header().unwrap(), first.payload), "hi");

    // Idle between calls for twice the read timeout: the stream is still served.
    tokio::time::sleep(Duration::from_millis(600)).await;
    send.write_all(&request(None)).await.unwrap();
    let second = reader.read_frame(&mut recv).await.unwrap();
    assert_eq!(
        echoed(&second.decode_header().unwrap(), second.payload),
        "hi"
    );

    // A request that starts and stalls is cut off after the read timeout.
    let third = request(None);
    send.write_all(&third[..2]).await.unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(5), reader.read_frame(&mut recv))
        .await
        .expect("the server gives up on the stalled request");
    assert!(
        matches!(cut, Err(ReadError::Reset(code)) if code == u64::from(close::stream::TIMED_OUT)),
        "{cut:?}"
    );
    // The connection is unharmed.
    let reply: Echo = conn.call(routes::ECHO, &Echo::default()).await.unwrap();
    assert_eq!(reply, Echo::default());
    server.shutdown(Duration::from_secs(1)).await;
}

/// Shutdown retires idle call streams between calls; a request sent on one afterwards was not
/// taken, and says so, while a call in flight on another stream still completes.
#[tokio::test]
async fn shutdown_retires_idle_call_streams_without_taking_their_next_request() {
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
    let raw = conn.raw_connection().unwrap();

    let mut idle = CallStream::open(&raw).await.unwrap();
    let (reply, _) = idle
        .call(&header("test.Count/Take"), Bytes::new(), Limits::default())
        .await
        .unwrap();
    assert_eq!(reply.code, 0);
    assert_eq!(taken.load(Ordering::SeqCst), 1);

    // A slow call keeps the server's shutdown waiting while the idle stream is retired.
    let slow = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.call::<_, Echo>(
                routes::SLOW,
                &Echo {
                    text: "slow".into(),
                    n: 1_500,
                },
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;

    let retired = idle
        .call(&header("test.Count/Take"), Bytes::new(), Limits::default())
        .await;
    assert!(
        matches!(retired, Err(StreamCallError::Retired)),
        "{retired:?}"
    );
    assert_eq!(taken.load(Ordering::SeqCst), 1, "the request was not taken");
    let slow = slow.await.unwrap().expect("the call in flight completes");
    assert_eq!(slow.text, "slow");
    shutdown.await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_is_internal_and_never_retried() {
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

    // Warm the pool, so the failing call runs on a reused stream.
    let reply: Echo = conn.call(routes::ECHO, &Echo::default()).await.unwrap();
    assert_eq!(reply, Echo::default());
    let err = conn.call::<_, ()>("test.Bug/Panic", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "ran once, not retried");

    // The connection and later calls are unharmed.
    let reply: Echo = conn.call(routes::ECHO, &Echo::default()).await.unwrap();
    assert_eq!(reply, Echo::default());
    server.shutdown(Duration::from_secs(1)).await;
}

/// A request the server refuses ends its stream; the client's next call, which takes that
/// stream from its pool, goes again on a new one and succeeds.
#[tokio::test]
async fn a_refused_request_ends_its_stream_and_the_next_call_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let request = Echo {
        text: "ok".into(),
        n: 0,
    };
    for _ in 0..5 {
        // Metadata over the server's 64 KiB header limit: refused before the handler.
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
