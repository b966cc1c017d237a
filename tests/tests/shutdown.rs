//! Graceful shutdown, and what clients see of it: in-flight calls finish, then a clear close.

use std::time::Duration;

use fluxon_client::{CallOptions, Code, ReconnectPolicy};
use fluxon_e2e::msg::Echo;
use fluxon_e2e::{app_router, client_config, connect_with, routes, server_config, start};
use fluxon_server::{Server, ServerConfig};

#[tokio::test]
async fn graceful_shutdown_lets_a_call_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let config = client_config(&server).reconnect(ReconnectPolicy::disabled());
    let conn = connect_with(&server, config).await.unwrap();

    let in_flight = {
        let conn = conn.clone();
        tokio::spawn(async move {
            conn.call::<_, Echo>(
                routes::SLOW,
                &Echo {
                    text: "finish me".into(),
                    n: 400,
                },
            )
            .await
        })
    };
    // Let the call reach its handler, then shut down with time to spare.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown(Duration::from_secs(5)).await;

    let reply = in_flight
        .await
        .unwrap()
        .expect("the call in flight completed");
    assert_eq!(reply.text, "finish me");
    let status = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("server shutting down"),
        "{status}"
    );
    let err = conn
        .call::<_, Echo>(routes::ECHO, &Echo::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[tokio::test]
async fn calls_past_the_grace_period_are_cut_off_as_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let config = client_config(&server).reconnect(ReconnectPolicy::disabled());
    let conn = connect_with(&server, config).await.unwrap();
    let in_flight = {
        let conn = conn.clone();
        tokio::spawn(async move {
            conn.call::<_, Echo>(
                routes::SLOW,
                &Echo {
                    text: String::new(),
                    n: 10_000,
                },
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown(Duration::from_millis(100)).await;
    let err = in_flight.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("not idempotent"), "{err}");
}

async fn bind_when_free(addr: std::net::SocketAddr, dir: &std::path::Path) -> Server {
    for _ in 0..100 {
        if let Ok(server) = Server::bind(ServerConfig::new(addr, dir), app_router()).await {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("port {addr} was not released");
}

#[tokio::test]
async fn only_idempotent_calls_are_retried_after_a_lost_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let addr = server.local_addr();
    let conn = connect_with(&server, client_config(&server)).await.unwrap();
    let call = |route: &'static str, options: CallOptions| {
        let conn = conn.clone();
        tokio::spawn(async move {
            conn.call_with::<_, Echo>(
                route,
                &Echo {
                    text: route.into(),
                    n: 1_000,
                },
                options,
            )
            .await
        })
    };
    let plain = call(
        routes::SLOW,
        CallOptions::new().timeout(Duration::from_secs(20)),
    );
    let retried = call(
        routes::SLOW_IDEMPOTENT,
        CallOptions::new()
            .timeout(Duration::from_secs(20))
            .idempotent(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Both calls are cut off by the shutdown; the server comes back on the same port.
    server.shutdown(Duration::ZERO).await;
    drop(server);
    let restarted = bind_when_free(addr, dir.path()).await;

    let err = plain.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    let reply = retried
        .await
        .unwrap()
        .expect("idempotent call retried after reconnecting");
    assert_eq!(reply.text, routes::SLOW_IDEMPOTENT);
    restarted.shutdown(Duration::from_secs(1)).await;
}
