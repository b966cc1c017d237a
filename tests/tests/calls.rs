//! Calls over real QUIC on loopback: concurrency, routing, deadlines, cancellation.

use std::time::Duration;

use fluxon_client::{CallOptions, Code, Status};
use fluxon_e2e::msg::Echo;
use fluxon_e2e::{app_router, connect, init_tracing, routes, server_config, start};

#[tokio::test]
async fn two_hundred_concurrent_calls_on_one_connection() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        let conn = conn.clone();
        tasks.spawn(async move {
            let req = Echo {
                text: format!("call {i}"),
                n: i,
            };
            let reply: Echo = conn.call(routes::ECHO, &req).await?;
            Ok::<_, Status>((req, reply))
        });
    }
    let mut answered = 0;
    while let Some(joined) = tasks.join_next().await {
        let (req, reply) = joined.unwrap().unwrap();
        assert_eq!(req, reply);
        answered += 1;
    }
    assert_eq!(answered, 200);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn calls_of_one_session_run_at_once() {
    use std::sync::Arc;

    use fluxon_server::{Request, Router};
    use tokio::sync::Barrier;

    // Each handler waits until all ten are inside it at the same time: served one after
    // another, none would ever return.
    let barrier = Arc::new(Barrier::new(10));
    let router = Router::new().route("test.Parallel/Meet", move |_: Request<()>| {
        let barrier = Arc::clone(&barrier);
        async move {
            barrier.wait().await;
            Ok::<_, Status>(())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), router).await;
    let conn = connect(&server).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let conn = conn.clone();
        tasks.spawn(async move {
            conn.call_with::<_, ()>(
                "test.Parallel/Meet",
                &(),
                CallOptions::new().timeout(Duration::from_secs(10)),
            )
            .await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap().unwrap();
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn unknown_route_is_not_found_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let err = conn
        .call::<_, Echo>("test.App/Nope", &Echo::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("test.App/Nope"), "{err}");
    let ok: Echo = conn
        .call(
            routes::ECHO,
            &Echo {
                text: "still here".into(),
                n: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(ok.text, "still here");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn client_deadline_is_reported_as_deadline_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let err = conn
        .call_with::<_, Echo>(
            routes::SLOW,
            &Echo {
                text: String::new(),
                n: 2_000,
            },
            CallOptions::new().timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_enforces_the_deadline_the_client_sent() {
    use fluxon_server::{Request, Router};
    let dir = tempfile::tempdir().unwrap();
    let router = Router::new().route("test.Deadline/Remaining", |req: Request<()>| async move {
        let left = req
            .deadline()
            .saturating_duration_since(tokio::time::Instant::now());
        Ok::<_, Status>(left.as_millis() as u64)
    });
    let server = start(server_config(dir.path()), router).await;
    let conn = connect(&server).await;
    let left: u64 = conn
        .call_with(
            "test.Deadline/Remaining",
            &(),
            CallOptions::new().timeout(Duration::from_millis(1500)),
        )
        .await
        .unwrap();
    assert!(left > 0 && left <= 1500, "remaining {left} ms");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn dropping_a_call_cancels_the_handler() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use fluxon_server::{Request, Router};

    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    let dropped = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (d, f) = (Arc::clone(&dropped), Arc::clone(&finished));
    let router = Router::new().route("test.Cancel/Hang", move |_: Request<()>| {
        let guard = SetOnDrop(Arc::clone(&d));
        let finished = Arc::clone(&f);
        async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(30)).await;
            finished.store(true, Ordering::SeqCst);
            Ok::<_, Status>(())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), router).await;
    let conn = connect(&server).await;
    let call = conn.call::<_, ()>("test.Cancel/Hang", &());
    // Give the call time to reach the handler, then drop it.
    assert!(tokio::time::timeout(Duration::from_millis(300), call)
        .await
        .is_err());
    for _ in 0..100 {
        if dropped.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dropped.load(Ordering::SeqCst), "handler was not cancelled");
    assert!(!finished.load(Ordering::SeqCst));
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn metadata_reaches_the_handler() {
    use fluxon_server::{Request, Router};
    let dir = tempfile::tempdir().unwrap();
    let router = Router::new().route("test.Meta/Get", |req: Request<String>| async move {
        Ok::<_, Status>(
            req.metadata()
                .get(req.message().as_str())
                .cloned()
                .unwrap_or_default(),
        )
    });
    let server = start(server_config(dir.path()), router).await;
    let conn = connect(&server).await;
    let value: String = conn
        .call_with(
            "test.Meta/Get",
            &"x-trace".to_string(),
            CallOptions::new().metadata("x-trace", "abc123"),
        )
        .await
        .unwrap();
    assert_eq!(value, "abc123");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_panicking_handler_fails_its_call_and_leaves_no_call_counted() {
    use fluxon_server::{Request, Router};
    let router = Router::new()
        .route("test.Panic/Boom", |_: Request<()>| async move {
            if true {
                panic!("handler bug");
            }
            Ok::<_, Status>(())
        })
        .merge(app_router());
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), router).await;
    let conn = connect(&server).await;
    let id = conn.session().id.parse().unwrap();
    let handle = server.sessions().get(id).unwrap();
    assert!(conn.call::<_, ()>("test.Panic/Boom", &()).await.is_err());
    for _ in 0..100 {
        if handle.calls_in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(handle.calls_in_flight(), 0);
    // The connection and the session go on.
    let ok: Echo = conn
        .call(
            routes::ECHO,
            &Echo {
                text: "after".into(),
                n: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(ok.text, "after");
    server.shutdown(Duration::from_secs(1)).await;
}
