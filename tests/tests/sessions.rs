//! Sessions: login binding, resume after reconnect and restart, refused tokens, expiry.

use std::time::Duration;

use fluxon_client::{Code, ConnectError, Connection, ReconnectPolicy};
use fluxon_e2e::msg::{Login, Whoami};
use fluxon_e2e::{app_router, client_config, connect, connect_with, routes, server_config, start};
use fluxon_server::ServerConfig;

#[tokio::test]
async fn login_is_visible_in_later_calls_and_to_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    assert_eq!(conn.user_id(), None);
    let err = conn
        .call::<_, Whoami>(routes::WHOAMI, &())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let me: Whoami = conn
        .call(routes::LOGIN, &Login { user_id: 42 })
        .await
        .unwrap();
    assert_eq!(me.user_id, Some(42));
    assert_eq!(
        conn.user_id(),
        Some(42),
        "the reply told the client about the login"
    );
    let me: Whoami = conn.call(routes::WHOAMI, &()).await.unwrap();
    assert_eq!(me.user_id, Some(42));
    assert_eq!(me.session_id, conn.session().id);
    assert_eq!(server.sessions().for_user(42).await.unwrap().len(), 1);

    let out: Whoami = conn.call(routes::LOGOUT, &()).await.unwrap();
    assert_eq!(out.user_id, None);
    assert_eq!(conn.user_id(), None);
    let err = conn
        .call::<_, Whoami>(routes::WHOAMI, &())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(server.sessions().for_user(42).await.unwrap().is_empty());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn session_resumes_with_its_token_after_the_client_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let first = connect(&server).await;
    let _: Whoami = first
        .call(routes::LOGIN, &Login { user_id: 7 })
        .await
        .unwrap();
    let session = first.session();
    assert!(!session.resumed);
    first.close();
    drop(first);

    let config = client_config(&server).resume_token(session.token.clone());
    let second = connect_with(&server, config).await.unwrap();
    let resumed = second.session();
    assert!(resumed.resumed);
    assert_eq!(resumed.id, session.id);
    assert_eq!(resumed.user_id, Some(7));
    let me: Whoami = second.call(routes::WHOAMI, &()).await.unwrap();
    assert_eq!((me.user_id, me.session_id), (Some(7), session.id));
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn session_survives_a_server_restart_and_the_client_reconnects_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let addr = server.local_addr();
    let conn = connect(&server).await;
    let _: Whoami = conn
        .call(routes::LOGIN, &Login { user_id: 99 })
        .await
        .unwrap();
    let before = conn.session();
    server.shutdown(Duration::from_secs(1)).await;
    drop(server);

    // Same data directory (key, sessions, certificate) and the same port, which the old
    // endpoint releases once its last task has ended.
    let mut restarted = None;
    for attempt in 0..100 {
        match fluxon_server::Server::bind(ServerConfig::new(addr, dir.path()), app_router()).await {
            Ok(s) => {
                eprintln!("port free again after {attempt} retries");
                restarted = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let restarted = restarted.expect("the port is released after shutdown");
    let me: Whoami = conn.call(routes::WHOAMI, &()).await.unwrap();
    assert_eq!(me.user_id, Some(99));
    assert_eq!(me.session_id, before.id);
    let after = conn.session();
    assert!(after.resumed);
    assert_eq!(after.id, before.id);
    restarted.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn forged_and_foreign_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let mut token = conn.session().token;

    // One altered byte in the session id.
    token[3] ^= 0x40;
    let err = connect_with(&server, client_config(&server).resume_token(token))
        .await
        .unwrap_err();
    let ConnectError::Refused(status) = err else {
        panic!("expected a refusal, got {err}");
    };
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("signature"), "{status}");

    // A token from another server (another key).
    let other_dir = tempfile::tempdir().unwrap();
    let other = start(server_config(other_dir.path()), app_router()).await;
    let foreign = connect(&other).await.session().token;
    let err = connect_with(&server, client_config(&server).resume_token(foreign))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Refused(s) if s.code() == Code::Unauthenticated),
        "{err}"
    );

    // Garbage.
    let err = connect_with(
        &server,
        client_config(&server).resume_token(b"garbage".to_vec()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Refused(s) if s.message().contains("malformed")),
        "{err}"
    );
    server.shutdown(Duration::from_secs(1)).await;
    other.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn expired_tokens_and_idle_sessions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = server_config(dir.path()).token_lifetime(Duration::from_secs(1));
    let server = start(config, app_router()).await;
    let conn = connect(&server).await;
    let token = conn.session().token;
    conn.close();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = connect_with(&server, client_config(&server).resume_token(token))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Refused(s) if s.message().contains("expired")),
        "{err}"
    );
    server.shutdown(Duration::from_secs(1)).await;

    let dir = tempfile::tempdir().unwrap();
    let config = server_config(dir.path()).session_idle_timeout(Duration::from_secs(1));
    let server = start(config, app_router()).await;
    let conn = connect(&server).await;
    let token = conn.session().token;
    conn.close();
    drop(conn);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = connect_with(&server, client_config(&server).resume_token(token))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Refused(s) if s.code() == Code::Unauthenticated && s.message().contains("idle")),
        "{err}"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn ended_session_cannot_be_resumed_and_its_client_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect_with(
        &server,
        client_config(&server).reconnect(ReconnectPolicy::disabled()),
    )
    .await
    .unwrap();
    let token = conn.session().token;
    let id = conn.session().id.parse().unwrap();
    server.sessions().get(id).unwrap().end().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap();
    assert!(status.message().contains("session ended"), "{status}");
    let err = connect_with(&server, client_config(&server).resume_token(token))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Refused(s) if s.message().contains("not found")),
        "{err}"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn pinned_fingerprint_is_trusted_and_a_wrong_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let pinned = fluxon_client::ClientConfig::new(fluxon_client::Trust::Fingerprint(
        server.certificate_fingerprint().to_owned(),
    ));
    let conn = Connection::connect(server.local_addr(), pinned)
        .await
        .unwrap();
    assert!(conn.is_connected());

    let wrong =
        fluxon_client::ClientConfig::new(fluxon_client::Trust::Fingerprint("00".repeat(32)));
    let err = Connection::connect(server.local_addr(), wrong)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Connect { .. }), "{err}");

    // Another server's development certificate is not this server's.
    let other_dir = tempfile::tempdir().unwrap();
    let other = start(server_config(other_dir.path()), app_router()).await;
    let err = connect_with(&server, client_config(&other))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Connect { .. }), "{err}");
    server.shutdown(Duration::from_secs(1)).await;
    other.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_token_kept_from_before_logout_does_not_bring_the_login_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let _: Whoami = conn
        .call(routes::LOGIN, &Login { user_id: 11 })
        .await
        .unwrap();
    let token_while_logged_in = conn.session().token;
    let _: Whoami = conn.call(routes::LOGOUT, &()).await.unwrap();
    conn.close();

    let config = client_config(&server).resume_token(token_while_logged_in);
    let again = connect_with(&server, config).await.unwrap();
    assert!(again.session().resumed);
    assert_eq!(again.user_id(), None);
    let err = again
        .call::<_, Whoami>(routes::WHOAMI, &())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_server_notices_a_closed_client_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // The default idle timeout is 30 s: noticing within 2 s means the close frame arrived.
    let server = start(server_config(dir.path()), app_router()).await;
    let conn = connect(&server).await;
    let id = conn.session().id.parse().unwrap();
    let handle = server.sessions().get(id).unwrap();
    assert!(handle.is_connected());
    conn.close();
    drop(conn);
    for _ in 0..100 {
        if !handle.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !handle.is_connected(),
        "the server did not see the client leave"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn connections_sharing_one_endpoint_keep_their_own_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    let endpoint = fluxon_client::ClientEndpoint::for_server(server.local_addr()).unwrap();
    let config = client_config(&server).endpoint(endpoint.clone());
    let a = connect_with(&server, config.clone()).await.unwrap();
    let b = connect_with(&server, config).await.unwrap();
    assert_eq!(endpoint.open_connections(), 2, "both use the one socket");
    assert_ne!(a.session().id, b.session().id);

    let _: Whoami = a.call(routes::LOGIN, &Login { user_id: 5 }).await.unwrap();
    let me: Whoami = a.call(routes::WHOAMI, &()).await.unwrap();
    assert_eq!(me.user_id, Some(5));
    let err = b.call::<_, Whoami>(routes::WHOAMI, &()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "b's session is its own");

    // Closing one connection tells the server at once and leaves the endpoint and the other
    // connection working.
    let handle = server
        .sessions()
        .get(a.session().id.parse().unwrap())
        .unwrap();
    a.close();
    assert_eq!(a.closed().await.code(), Code::Cancelled);
    for _ in 0..100 {
        if !handle.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!handle.is_connected(), "the server did not see a leave");
    let echoed: fluxon_e2e::msg::Echo = b
        .call(
            routes::ECHO,
            &fluxon_e2e::msg::Echo {
                text: "still here".into(),
                n: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(echoed.text, "still here");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_session_that_leaves_with_calls_in_flight_is_dropped_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), app_router()).await;
    // The connection's end and its calls' ends race; whichever comes last must evict the
    // session, so try it a few times.
    for _ in 0..5 {
        let conn = connect(&server).await;
        let id = conn.session().id.parse().unwrap();
        let handle = server.sessions().get(id).unwrap();
        let slow = {
            let conn = conn.clone();
            tokio::spawn(async move {
                let request = fluxon_e2e::msg::Echo {
                    text: "slow".into(),
                    n: 5_000,
                };
                conn.call::<_, fluxon_e2e::msg::Echo>(routes::SLOW, &request)
                    .await
            })
        };
        for _ in 0..100 {
            if handle.calls_in_flight() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(handle.calls_in_flight(), 1);
        conn.close();
        let err = slow.await.unwrap().unwrap_err();
        assert!(
            matches!(err.code(), Code::Cancelled | Code::Unavailable),
            "{err}"
        );
        for _ in 0..100 {
            if server.sessions().get(id).is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            server.sessions().get(id).is_none(),
            "the session stayed in memory"
        );
        assert_eq!(handle.calls_in_flight(), 0);
    }
    assert!(server.sessions().is_empty());
    server.shutdown(Duration::from_secs(1)).await;
}
