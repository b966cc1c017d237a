//! Streaming calls end to end over QUIC on loopback: each shape, flow control with a slow
//! reader, cancellation from either side, deadlines, login checks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fluxon_client::{CallOptions, Code};
use fluxon_e2e::msg::{Echo, Login};
use fluxon_e2e::{app_router, connect, routes, server_config, start};
use fluxon_server::{Request, RouteOptions, Router, Status, Streaming};
use futures_util::StreamExt as _;

const COUNT: &str = "test.Stream/Count";
const SUM: &str = "test.Stream/Sum";
const SHOUT: &str = "test.Stream/Shout";
const BIG: &str = "test.Stream/Big";
const FOREVER: &str = "test.Stream/Forever";
const PRIVATE: &str = "test.Stream/Private";
const PANICS: &str = "test.Stream/Panics";

/// 64 KiB: the message size of the slow-reader test.
const BIG_MESSAGE: usize = 64 * 1024;

/// What the server's handlers report to the test.
#[derive(Default)]
struct Probe {
    /// Messages the `Big` handler has produced.
    produced: AtomicU64,
    /// Set when a `Forever` handler's reply stream is dropped (its call ended).
    forever_dropped: AtomicBool,
    /// Messages a `Shout` handler has read.
    shout_read: AtomicU64,
}

/// Sets a flag when dropped: tells the test that the server let go of a handler's stream.
struct DropFlag(Arc<Probe>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.forever_dropped.store(true, Ordering::SeqCst);
    }
}

fn router(probe: &Arc<Probe>) -> Router {
    let big = Arc::clone(probe);
    let forever = Arc::clone(probe);
    let shout = Arc::clone(probe);
    app_router()
        .server_streaming(
            COUNT,
            RouteOptions::new(),
            |req: Request<Echo>| async move {
                let Echo { text, n } = req.into_inner();
                Ok::<_, Status>(futures_util::stream::iter((0..n).map(move |i| {
                    Ok(Echo {
                        text: format!("{text} {i}"),
                        n: i,
                    })
                })))
            },
        )
        .client_streaming(
            SUM,
            RouteOptions::new(),
            |req: Request<Streaming<Echo>>| async move {
                let mut messages = req.into_inner();
                let mut sum = 0u64;
                let mut texts = Vec::new();
                while let Some(m) = messages.message().await? {
                    sum += m.n;
                    texts.push(m.text);
                }
                if texts.iter().any(|t| t == "refuse") {
                    return Err(Status::invalid_argument("refused on request"));
                }
                Ok(Echo {
                    text: texts.join(","),
                    n: sum,
                })
            },
        )
        .bidi_streaming(
            SHOUT,
            RouteOptions::new(),
            move |req: Request<Streaming<Echo>>| {
                let probe = Arc::clone(&shout);
                async move {
                    let messages = req.into_inner();
                    Ok::<_, Status>(messages.map(move |m| {
                        probe.shout_read.fetch_add(1, Ordering::SeqCst);
                        let m = m?;
                        if m.text == "stop" {
                            return Err(Status::aborted("told to stop"));
                        }
                        if m.text == "cancel" {
                            // The application's own `cancelled`: an end like any other status.
                            return Err(Status::cancelled("told to cancel"));
                        }
                        Ok(Echo {
                            text: m.text.to_uppercase(),
                            n: m.n,
                        })
                    }))
                }
            },
        )
        .server_streaming(BIG, RouteOptions::new(), move |req: Request<Echo>| {
            let probe = Arc::clone(&big);
            async move {
                let count = req.n;
                Ok::<_, Status>(futures_util::stream::iter(0..count).map(move |i| {
                    probe.produced.fetch_add(1, Ordering::SeqCst);
                    Ok(Echo {
                        text: "x".repeat(BIG_MESSAGE),
                        n: i,
                    })
                }))
            }
        })
        .server_streaming(FOREVER, RouteOptions::new(), move |_: Request<Echo>| {
            let probe = Arc::clone(&forever);
            async move {
                probe.forever_dropped.store(false, Ordering::SeqCst);
                let flag = DropFlag(Arc::clone(&probe));
                Ok::<_, Status>(futures_util::stream::unfold(
                    (0u64, flag),
                    |(i, flag)| async move {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Some((
                            Ok(Echo {
                                text: String::new(),
                                n: i,
                            }),
                            (i + 1, flag),
                        ))
                    },
                ))
            }
        })
        .server_streaming(
            PANICS,
            RouteOptions::new(),
            |req: Request<Echo>| async move {
                let after = req.n;
                Ok::<_, Status>(futures_util::stream::iter(0..after + 10).map(move |i| {
                    assert!(
                        i < after,
                        "the handler's stream fails after {after} messages"
                    );
                    Ok(Echo {
                        text: format!("m{i}"),
                        n: i,
                    })
                }))
            },
        )
        .server_streaming(
            PRIVATE,
            RouteOptions::new().requires_login(),
            |req: Request<Echo>| async move {
                let user = req.require_user()?;
                Ok::<_, Status>(futures_util::stream::iter([Ok(Echo {
                    text: format!("user {user}"),
                    n: 1,
                })]))
            },
        )
}

async fn setup() -> (tempfile::TempDir, fluxon_server::Server, Arc<Probe>) {
    let dir = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe::default());
    let server = start(server_config(dir.path()), router(&probe)).await;
    (dir, server, probe)
}

/// Polls `f` until it holds, for up to 30 s.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn echo(text: &str, n: u64) -> Echo {
    Echo {
        text: text.into(),
        n,
    }
}

#[tokio::test]
async fn each_shape_of_streaming_call() {
    let (_dir, server, _probe) = setup().await;
    let conn = connect(&server).await;

    // Server streaming: one request, its replies in order, then the end.
    let mut replies = conn
        .server_streaming::<_, Echo>(COUNT, &echo("n", 5), CallOptions::new())
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(m) = replies.message().await.unwrap() {
        got.push(m.text);
    }
    assert_eq!(got, ["n 0", "n 1", "n 2", "n 3", "n 4"]);
    // An empty stream ends at once.
    let empty: Vec<_> = conn
        .server_streaming::<_, Echo>(COUNT, &echo("n", 0), CallOptions::new())
        .await
        .unwrap()
        .collect()
        .await;
    assert!(empty.is_empty());

    // Client streaming: many requests, one reply.
    let requests = futures_util::stream::iter((1..=4).map(|i| echo(&i.to_string(), i)));
    let sum: Echo = conn
        .client_streaming(SUM, requests, CallOptions::new())
        .await
        .unwrap();
    assert_eq!((sum.text.as_str(), sum.n), ("1,2,3,4", 10));
    let none: Echo = conn
        .client_streaming(
            SUM,
            futures_util::stream::empty::<Echo>(),
            CallOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(none.n, 0);
    let refused = conn
        .client_streaming::<_, Echo, _>(
            SUM,
            futures_util::stream::iter([echo("refuse", 1)]),
            CallOptions::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused}");

    // Bidirectional: each request answered while the next is still to be sent.
    let (mut sink, mut replies) = conn
        .open_streaming::<Echo, Echo>(SHOUT, CallOptions::new())
        .await
        .unwrap();
    for (i, word) in ["one", "two", "three"].into_iter().enumerate() {
        sink.send(&echo(word, i as u64)).await.unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert_eq!(reply.text, word.to_uppercase());
    }
    sink.finish();
    assert!(
        replies.message().await.unwrap().is_none(),
        "ends after the requests do"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn streaming_and_unary_routes_are_not_mixed_up() {
    let (_dir, server, _probe) = setup().await;
    let conn = connect(&server).await;
    let unary = conn
        .call::<_, Echo>(COUNT, &echo("x", 1))
        .await
        .unwrap_err();
    assert_eq!(unary.code(), Code::Unimplemented, "{unary}");
    let mut streamed = conn
        .server_streaming::<_, Echo>(routes::ECHO, &echo("x", 1), CallOptions::new())
        .await
        .unwrap();
    let err = streamed.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err}");
    let mut missing = conn
        .server_streaming::<_, Echo>("test.Stream/Nothing", &echo("x", 1), CallOptions::new())
        .await
        .unwrap();
    assert_eq!(missing.message().await.unwrap_err().code(), Code::NotFound);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_streaming_route_checks_the_login_like_a_unary_one() {
    let (_dir, server, _probe) = setup().await;
    let conn = connect(&server).await;
    let mut refused = conn
        .server_streaming::<_, Echo>(PRIVATE, &echo("", 0), CallOptions::new())
        .await
        .unwrap();
    assert_eq!(
        refused.message().await.unwrap_err().code(),
        Code::Unauthenticated
    );
    conn.call::<_, fluxon_e2e::msg::Whoami>(routes::LOGIN, &Login { user_id: 7 })
        .await
        .unwrap();
    let mut allowed = conn
        .server_streaming::<_, Echo>(PRIVATE, &echo("", 0), CallOptions::new())
        .await
        .unwrap();
    assert_eq!(allowed.message().await.unwrap().unwrap().text, "user 7");
    assert!(allowed.message().await.unwrap().is_none());
    server.shutdown(Duration::from_secs(1)).await;
}

/// 1 GiB to a reader that starts slowly: the server produces each message only as the reader
/// makes room, so what it holds stays within the flow-control windows the whole time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_the_server_back() {
    let (_dir, server, probe) = setup().await;
    let conn = connect(&server).await;
    let total: u64 = std::env::var("FLUXON_STREAM_TEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
        * (1 << 20)
        / BIG_MESSAGE as u64;
    // Unread bytes can sit in the client's stream window and in the server's send buffer
    // (quinn's default, 10 MB); anything beyond would be the server buffering on its own.
    let window = fluxon_server::STREAM_RECEIVE_WINDOW as u64 + 10_000_000;
    let bound = window / BIG_MESSAGE as u64 + 4;
    let mut replies = conn
        .server_streaming::<_, Echo>(BIG, &echo("", total), CallOptions::new())
        .await
        .unwrap();
    let mut read = 0u64;
    let mut most_ahead = 0u64;
    while let Some(m) = replies.message().await.unwrap() {
        assert_eq!(m.n, read, "in order");
        assert_eq!(m.text.len(), BIG_MESSAGE);
        read += 1;
        let ahead = probe.produced.load(Ordering::SeqCst) - read;
        most_ahead = most_ahead.max(ahead);
        assert!(
            ahead <= bound,
            "the server ran {ahead} messages ahead of the reader (bound {bound})"
        );
        // Slow at first: the server fills the windows and must then wait.
        if read < 200 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert_eq!(read, total);
    assert!(
        most_ahead > 0,
        "the server never ran ahead: the reader was not slower than the writer"
    );
    println!(
        "read {read} messages of 64 KiB; the server was at most {most_ahead} ahead (bound {bound})"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_client_that_drops_the_replies_cancels_the_handler() {
    let (_dir, server, probe) = setup().await;
    let conn = connect(&server).await;
    let mut replies = conn
        .server_streaming::<_, Echo>(FOREVER, &echo("", 0), CallOptions::new())
        .await
        .unwrap();
    for i in 0..3 {
        assert_eq!(replies.message().await.unwrap().unwrap().n, i);
    }
    assert!(!probe.forever_dropped.load(Ordering::SeqCst));
    drop(replies);
    eventually("the server drops the cancelled call's stream", || {
        probe.forever_dropped.load(Ordering::SeqCst)
    })
    .await;
    // The connection carries on.
    let ok = conn.call::<_, Echo>(routes::ECHO, &echo("after", 1)).await;
    assert_eq!(ok.unwrap().text, "after");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_server_that_ends_the_call_mid_stream_stops_the_client_sending() {
    let (_dir, server, probe) = setup().await;
    let conn = connect(&server).await;
    let (mut sink, mut replies) = conn
        .open_streaming::<Echo, Echo>(SHOUT, CallOptions::new())
        .await
        .unwrap();
    sink.send(&echo("a", 0)).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().text, "A");
    sink.send(&echo("stop", 1)).await.unwrap();
    let err = replies.message().await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Aborted, "told to stop"));
    assert!(
        replies.message().await.unwrap().is_none(),
        "nothing after the end"
    );
    // The server no longer reads: sending fails (within the bounded number of messages the
    // windows still take), and the handler read nothing more.
    let mut refused = None;
    for i in 0..100_000u64 {
        if let Err(e) = sink.send(&echo("more", i)).await {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(refused.expect("sending stops").code(), Code::Cancelled);
    assert_eq!(probe.shout_read.load(Ordering::SeqCst), 2);

    // A handler that ends the call with `cancelled` itself: its message arrives whole.
    let (mut sink, mut replies) = conn
        .open_streaming::<Echo, Echo>(SHOUT, CallOptions::new())
        .await
        .unwrap();
    sink.send(&echo("cancel", 0)).await.unwrap();
    let err = replies.message().await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Cancelled, "told to cancel")
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_deadline_ends_the_call_mid_stream() {
    let (_dir, server, probe) = setup().await;
    let conn = connect(&server).await;
    let mut replies = conn
        .server_streaming::<_, Echo>(
            FOREVER,
            &echo("", 0),
            CallOptions::new().timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    let mut read = 0;
    let err = loop {
        match replies.message().await {
            Ok(Some(_)) => read += 1,
            Ok(None) => panic!("a stream without end ended"),
            Err(e) => break e,
        }
        assert!(read < 1_000_000, "the deadline never came");
    };
    assert_eq!(
        err.code(),
        Code::DeadlineExceeded,
        "{err} (after {read} messages)"
    );
    eventually("the server drops the expired call's stream", || {
        probe.forever_dropped.load(Ordering::SeqCst)
    })
    .await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_handler_that_panics_mid_stream_fails_only_its_call() {
    let (_dir, server, _probe) = setup().await;
    let conn = connect(&server).await;
    let mut replies = conn
        .server_streaming::<_, Echo>(PANICS, &echo("", 3), CallOptions::new())
        .await
        .unwrap();
    let mut got = Vec::new();
    let end = loop {
        match replies.message().await {
            Ok(Some(m)) => got.push(m.n),
            Ok(None) => panic!("the stream ended cleanly after {got:?}: a panic must not"),
            Err(status) => break status,
        }
    };
    // The reset may overtake messages still queued (QUIC drops unsent stream data on a reset):
    // what arrived is a prefix of what the handler produced, never more.
    assert!([0u64, 1, 2].starts_with(&got), "{got:?}");
    assert_eq!(end.code(), Code::Internal, "{end}");
    assert!(end.message().contains("handler failed"), "{end}");
    // The connection, the session and the server go on.
    let again: Vec<u64> = conn
        .server_streaming::<_, Echo>(COUNT, &echo("n", 2), CallOptions::new())
        .await
        .unwrap()
        .map(|m| m.unwrap().n)
        .collect()
        .await;
    assert_eq!(again, [0, 1]);
    let echoed: Echo = conn.call(routes::ECHO, &echo("still up", 1)).await.unwrap();
    assert_eq!(echoed.text, "still up");
    server.shutdown(Duration::from_secs(1)).await;
}
