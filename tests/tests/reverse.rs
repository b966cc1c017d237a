//! Reverse calls: the server calls handlers the client registered.

use std::time::Duration;

use fluxon_client::{Code, ReverseRouter, Status};
use fluxon_e2e::msg::{Echo, Login, Whoami};
use fluxon_e2e::{app_router, client_config, connect, connect_with, routes, server_config, start};

fn pinging_client(name: &'static str) -> ReverseRouter {
    ReverseRouter::new().route(routes::CLIENT_PING, move |req: Echo| async move {
        Ok::<_, Status>(Echo {
            text: format!("{name} got {}", req.text),
            n: req.n + 1,
        })
    })
}

#[tokio::test]
async fn reverse_call_round_trip_from_inside_a_handler() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect_with(
        &server,
        client_config(&server).reverse(pinging_client("phone")),
    )
    .await
    .unwrap();
    let reply: Echo = conn
        .call(
            routes::CALL_ME_BACK,
            &Echo {
                text: "ping".into(),
                n: 5_000,
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.text, "phone got ping");
    assert_eq!(reply.n, 5_001);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_task_notifies_every_device_of_a_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let phone = connect_with(
        &server,
        client_config(&server).reverse(pinging_client("phone")),
    )
    .await
    .unwrap();
    let laptop = connect_with(
        &server,
        client_config(&server).reverse(pinging_client("laptop")),
    )
    .await
    .unwrap();
    let other = connect(&server).await;
    for c in [&phone, &laptop] {
        let _: Whoami = c.call(routes::LOGIN, &Login { user_id: 5 }).await.unwrap();
    }
    let _: Whoami = other
        .call(routes::LOGIN, &Login { user_id: 6 })
        .await
        .unwrap();

    let sessions = server.sessions().for_user(5).await.unwrap();
    assert_eq!(sessions.len(), 2);
    let mut answers = Vec::new();
    for s in sessions {
        let reply: Echo = s
            .call(
                routes::CLIENT_PING,
                &Echo {
                    text: "news".into(),
                    n: 0,
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        answers.push(reply.text);
    }
    answers.sort();
    assert_eq!(answers, ["laptop got news", "phone got news"]);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn reverse_call_to_an_unhandled_route_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await; // registers no reverse handler
    let err = conn
        .call::<_, Echo>(
            routes::CALL_ME_BACK,
            &Echo {
                text: "x".into(),
                n: 5_000,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn reverse_call_to_a_departed_client_is_unavailable_within_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect_with(
        &server,
        client_config(&server).reverse(pinging_client("gone")),
    )
    .await
    .unwrap();
    let id = conn.session().id.parse().unwrap();
    let handle = server.sessions().get(id).unwrap();
    conn.close();
    drop(conn);

    let timeout = Duration::from_secs(3);
    let started = std::time::Instant::now();
    let err = handle
        .call::<Echo, Echo>(routes::CLIENT_PING, &Echo::default(), timeout)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(started.elapsed() <= timeout, "took {:?}", started.elapsed());
    assert!(!handle.is_connected());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn reverse_call_that_is_never_answered_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let slow = ReverseRouter::new().route(routes::CLIENT_PING, |_: Echo| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, Status>(Echo::default())
    });
    let conn = connect_with(&server, client_config(&server).reverse(slow))
        .await
        .unwrap();
    let id = conn.session().id.parse().unwrap();
    let handle = server.sessions().get(id).unwrap();
    let err = handle
        .call::<Echo, Echo>(
            routes::CLIENT_PING,
            &Echo::default(),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    // The connection is fine afterwards.
    let ok: Echo = conn
        .call(
            routes::ECHO,
            &Echo {
                text: "ok".into(),
                n: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(ok.text, "ok");
    server.shutdown(Duration::from_secs(1)).await;
}
