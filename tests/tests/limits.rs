//! Bad input and limits: malformed and oversized messages, slow streams, too many connections.

use std::time::Duration;

use bytes::Bytes;
use fluxon_client::{Code, Status};
use fluxon_e2e::msg::{Echo, NotAnEcho};
use fluxon_e2e::{app_router, client_config, connect, connect_with, routes, server_config, start};
use fluxon_proto::io::{write_frame_and_finish, FrameReader, ReadError};
use fluxon_proto::wire::{CallHeader, ReplyHeader};
use fluxon_proto::{close, frame, Limits, StreamKind};
use fluxon_server::ServerLimits;

/// Sends raw bytes on a new stream of `conn` and reads the reply header.
async fn raw_call(conn: &quinn::Connection, bytes: &[u8]) -> Result<ReplyHeader, ReadError> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    let frame = FrameReader::new(Limits::default())
        .read_frame(&mut recv)
        .await?;
    Ok(frame.decode_header().unwrap())
}

async fn still_answers(conn: &fluxon_client::Connection) {
    let ok: Echo = conn
        .call(
            routes::ECHO,
            &Echo {
                text: "alive".into(),
                n: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(ok.text, "alive");
}

#[tokio::test]
async fn malformed_payload_is_invalid_argument_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let err = conn
        .call::<_, Echo>(routes::ECHO, &NotAnEcho { text: 12 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    still_answers(&conn).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn malformed_frames_are_invalid_argument_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let raw = conn.raw_connection().unwrap();

    // A length prefix that never ends.
    let mut bytes = vec![StreamKind::Call as u8];
    bytes.extend_from_slice(&[0xff; 12]);
    let reply = raw_call(&raw, &bytes).await.unwrap();
    assert_eq!(
        reply.code,
        Code::InvalidArgument.as_u32(),
        "{}",
        reply.message
    );

    // A frame cut short by the end of the stream.
    let header = CallHeader {
        route: routes::ECHO.into(),
        ..Default::default()
    };
    let head = frame::encode_head(Some(StreamKind::Call), &header, 100);
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(&[1, 2, 3]);
    let reply = raw_call(&raw, &bytes).await.unwrap();
    assert_eq!(
        reply.code,
        Code::InvalidArgument.as_u32(),
        "{}",
        reply.message
    );

    // A header that is not a CallHeader.
    let bytes = [StreamKind::Call as u8, 3, 0xff, 0xff, 0xff, 0];
    let reply = raw_call(&raw, &bytes).await.unwrap();
    assert_eq!(
        reply.code,
        Code::InvalidArgument.as_u32(),
        "{}",
        reply.message
    );

    // An unknown stream kind.
    let reply = raw_call(&raw, &[0x7f, 0, 0]).await.unwrap();
    assert_eq!(
        reply.code,
        Code::InvalidArgument.as_u32(),
        "{}",
        reply.message
    );

    still_answers(&conn).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn oversized_payload_is_resource_exhausted_without_being_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let config = server_config(dir.path()).limits(ServerLimits::default().max_message_size(1024));
    let server = start(config, app_router()).await;
    let conn = connect(&server).await;
    assert_eq!(conn.session().max_message_size, 1024);

    // The SDK refuses it before sending anything.
    let big = Echo {
        text: "x".repeat(2000),
        n: 0,
    };
    let err = conn.call::<_, Echo>(routes::ECHO, &big).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");

    // A raw client announcing 1 GiB gets its answer from the length alone, and the server stops
    // the stream instead of reading (the 1 GiB is never sent).
    let raw = conn.raw_connection().unwrap();
    let header = CallHeader {
        route: routes::ECHO.into(),
        ..Default::default()
    };
    let head = frame::encode_head(Some(StreamKind::Call), &header, 1 << 30);
    let (mut send, mut recv) = raw.open_bi().await.unwrap();
    send.write_all(&head).await.unwrap();
    let frame = FrameReader::new(Limits::default())
        .read_frame(&mut recv)
        .await
        .unwrap();
    let reply: ReplyHeader = frame.decode_header().unwrap();
    assert_eq!(
        reply.code,
        Code::ResourceExhausted.as_u32(),
        "{}",
        reply.message
    );
    let stopped = tokio::time::timeout(Duration::from_secs(5), send.stopped())
        .await
        .expect("server stops the stream");
    assert_eq!(stopped.unwrap(), Some(close::stream::TOO_LARGE.into()));

    still_answers(&conn).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_stream_that_never_delivers_its_request_is_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ServerLimits::default().request_read_timeout(Duration::from_millis(200));
    let server = start(server_config(dir.path()).limits(limits), app_router()).await;
    let conn = connect(&server).await;
    let raw = conn.raw_connection().unwrap();
    let (mut send, mut recv) = raw.open_bi().await.unwrap();
    // The stream kind and half a header, then silence.
    send.write_all(&[StreamKind::Call as u8, 40, 1])
        .await
        .unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        FrameReader::new(Limits::default()).read_frame(&mut recv),
    )
    .await
    .expect("the server gives up on the stream");
    match result {
        Err(ReadError::Reset(code)) => assert_eq!(code, u64::from(close::stream::TIMED_OUT)),
        other => panic!("expected a reset, got {other:?}"),
    }
    still_answers(&conn).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ServerLimits::default().max_connections(2);
    let server = start(server_config(dir.path()).limits(limits), app_router()).await;
    let a = connect(&server).await;
    let b = connect(&server).await;
    let err = connect_with(&server, client_config(&server))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    still_answers(&a).await;
    still_answers(&b).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn handler_errors_reach_the_client_unchanged() {
    use fluxon_server::{Request, Router};
    let dir = tempfile::tempdir().unwrap();
    let router = Router::new().route("test.Err/Fail", |_: Request<()>| async move {
        Err::<(), _>(Status::already_exists("username `bob` is taken"))
    });
    let server = start(server_config(dir.path()), router).await;
    let conn = connect(&server).await;
    let err = conn.call::<_, ()>("test.Err/Fail", &()).await.unwrap_err();
    assert_eq!(err, Status::already_exists("username `bob` is taken"));
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn raw_frames_written_by_hand_work() {
    // The documented frame layout, written without the SDK, is answered.
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let raw = conn.raw_connection().unwrap();
    let header = CallHeader {
        route: routes::ECHO.into(),
        ..Default::default()
    };
    let payload = Bytes::from(prost::Message::encode_to_vec(&Echo {
        text: "hi".into(),
        n: 9,
    }));
    let (mut send, mut recv) = raw.open_bi().await.unwrap();
    let head = frame::encode_head(Some(StreamKind::Call), &header, payload.len());
    write_frame_and_finish(&mut send, head, payload)
        .await
        .unwrap();
    let frame = FrameReader::new(Limits::default())
        .read_frame(&mut recv)
        .await
        .unwrap();
    let reply: ReplyHeader = frame.decode_header().unwrap();
    assert_eq!(reply.code, 0);
    let echo: Echo = prost::Message::decode(frame.payload).unwrap();
    assert_eq!((echo.text.as_str(), echo.n), ("hi", 9));
    server.shutdown(Duration::from_secs(1)).await;
}

/// The path MTU quinn reaches for `conn` during large calls, waiting up to `attempts` × 100 ms
/// for discovery to pass `want_above` (it probes a few round trips after the handshake).
async fn settled_mtu(conn: &fluxon_client::Connection, want_above: u16, attempts: u32) -> u16 {
    let quic = conn.raw_connection().expect("connected");
    let big = Echo {
        text: "x".repeat(60 * 1024),
        n: 0,
    };
    let mut mtu = 0;
    for _ in 0..attempts {
        let reply: Echo = conn.call(routes::ECHO, &big).await.expect("echo");
        assert_eq!(reply.text.len(), big.text.len());
        mtu = quic.stats().path.current_mtu;
        if mtu > want_above {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mtu
}

#[tokio::test]
async fn larger_datagrams_are_used_when_both_sides_allow_them() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ServerLimits::default().max_udp_payload(4096);
    let server = start(server_config(dir.path()).limits(limits), app_router()).await;

    let raised = connect_with(&server, client_config(&server).max_udp_payload(4096))
        .await
        .unwrap();
    let mtu = settled_mtu(&raised, 1452, 50).await;
    assert!(mtu > 1452 && mtu <= 4096, "path MTU {mtu}");

    // Only one side raised: the default bound holds (given as long as discovery took above).
    let default = connect(&server).await;
    let mtu = settled_mtu(&default, 1452, 10).await;
    assert!(mtu <= 1452, "path MTU {mtu}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn datagram_sizes_outside_the_supported_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ServerLimits::default().max_udp_payload(9000);
    let err = fluxon_server::Server::bind(server_config(dir.path()).limits(limits), app_router())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1200..=6500"), "{err}");

    let server = start(server_config(dir.path()), app_router()).await;
    let err = connect_with(&server, client_config(&server).max_udp_payload(1000))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1200..=6500"), "{err}");
    server.shutdown(Duration::from_secs(1)).await;
}
