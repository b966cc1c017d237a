//! Two nodes of a cluster in one process, linked by a real NATS server and sharing one state
//! store: reverse calls, login changes and ends reach a session whichever node holds it.
//! Skipped (one line) without `FLUXON_TEST_NATS`; with `FLUXON_TEST_POSTGRES` too, the nodes
//! share a PostgreSQL database, else a SQLite file.

use std::path::Path;
use std::time::Duration;

use fluxon_client::{Code, Connection, ReverseRouter, Status};
use fluxon_e2e::msg::{Echo, Login, Whoami};
use fluxon_e2e::{app_router, client_config, connect_with, routes, server_config};
use fluxon_server::{
    ClusterConfig, Server, ServerConfig, SessionHandle, StateLocation, StateStore, StreamServices,
};

const KEY: [u8; 32] = [9; 32];

struct Nodes {
    a: Server,
    b: Server,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// Two nodes, `a` and `b`, of a cluster of their own on the test NATS server.
async fn two_nodes(suite: &str) -> Option<Nodes> {
    let nats = fluxon_server::testing::nats(suite)?;
    let location = match fluxon_server::testing::fresh_postgres(suite).await {
        Some(url) => StateLocation::Postgres(url),
        None => StateLocation::Sqlite(tempfile::tempdir().unwrap().keep().join("shared.db")),
    };
    let state = StateStore::open(&location).await.unwrap();
    let cluster = ClusterConfig::nats(nats).subject_prefix(fluxon_server::testing::unique_prefix());
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let node = |dir: &Path, id: &str| -> ServerConfig {
        server_config(dir)
            .secret_key(KEY)
            .node_id(id)
            .cluster(cluster.clone())
    };
    let a = Server::bind_with_state(
        node(dir_a.path(), "a"),
        app_router(),
        StreamServices::new(),
        state.clone(),
    )
    .await
    .expect("node a starts");
    let b = Server::bind_with_state(
        node(dir_b.path(), "b"),
        app_router(),
        StreamServices::new(),
        state,
    )
    .await
    .expect("node b starts");
    Some(Nodes {
        a,
        b,
        _dirs: (dir_a, dir_b),
    })
}

fn answering(name: &'static str) -> ReverseRouter {
    ReverseRouter::new().route(routes::CLIENT_PING, move |req: Echo| async move {
        Ok::<_, Status>(Echo {
            text: format!("{name} got {}", req.text),
            n: req.n + 1,
        })
    })
}

/// A client of `server` logged in as `user`, answering reverse calls as `name`.
async fn device(server: &Server, user: i64, name: &'static str) -> Connection {
    let conn = connect_with(server, client_config(server).reverse(answering(name)))
        .await
        .unwrap();
    let _: Whoami = conn
        .call(routes::LOGIN, &Login { user_id: user })
        .await
        .unwrap();
    conn
}

async fn ping(session: &SessionHandle, text: &str) -> Result<Echo, Status> {
    session
        .call::<Echo, Echo>(
            routes::CLIENT_PING,
            &Echo {
                text: text.into(),
                n: 1,
            },
            Duration::from_secs(10),
        )
        .await
}

/// Waits (bounded) until node `server` sees `user` with `n` sessions.
async fn sessions_of(server: &Server, user: i64, n: usize) -> Vec<SessionHandle> {
    for _ in 0..200 {
        let found = server.sessions().for_user(user).await.unwrap();
        if found.len() == n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("user {user} never had {n} sessions");
}

#[tokio::test]
async fn a_reverse_call_reaches_a_device_on_another_node() {
    let Some(nodes) = two_nodes("cluster_reverse").await else {
        return;
    };
    let phone = device(&nodes.b, 7, "phone").await;
    let laptop = device(&nodes.a, 7, "laptop").await;

    let sessions = nodes.a.sessions().for_user(7).await.unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let remote = sessions
        .iter()
        .find(|s| !s.is_local())
        .expect("the phone's session, held by b");
    assert_eq!(remote.node(), "b");
    assert_eq!(remote.id().to_string(), phone.session().id);
    assert_eq!(remote.user_id(), Some(7));
    let local = sessions.iter().find(|s| s.is_local()).unwrap();
    assert_eq!(local.node(), "a");
    assert_eq!(local.id().to_string(), laptop.session().id);

    let reply = ping(remote, "from a").await.unwrap();
    assert_eq!((reply.text.as_str(), reply.n), ("phone got from a", 2));
    let reply = ping(local, "from a").await.unwrap();
    assert_eq!(reply.text, "laptop got from a");

    // The same from the other side: b reaches the laptop through a.
    let from_b = nodes.b.sessions().for_user(7).await.unwrap();
    let laptop_on_a = from_b.iter().find(|s| s.node() == "a").unwrap();
    assert_eq!(
        ping(laptop_on_a, "from b").await.unwrap().text,
        "laptop got from b"
    );

    // A user nobody is logged in as has no sessions anywhere.
    assert!(nodes.a.sessions().for_user(8).await.unwrap().is_empty());
    nodes.a.shutdown(Duration::from_secs(1)).await;
    nodes.b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_client_s_errors_come_back_through_the_relay() {
    let Some(nodes) = two_nodes("cluster_errors").await else {
        return;
    };
    // This client answers no reverse route.
    let conn = connect_with(&nodes.b, client_config(&nodes.b))
        .await
        .unwrap();
    let _: Whoami = conn
        .call(routes::LOGIN, &Login { user_id: 3 })
        .await
        .unwrap();
    let sessions = sessions_of(&nodes.a, 3, 1).await;
    let err = ping(&sessions[0], "hello").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(err.message().contains("handles no reverse call"), "{err}");
    nodes.a.shutdown(Duration::from_secs(1)).await;
    nodes.b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_offline_device_gives_the_same_error_as_on_one_node() {
    let Some(nodes) = two_nodes("cluster_offline").await else {
        return;
    };
    let phone = device(&nodes.b, 11, "phone").await;
    let sessions = sessions_of(&nodes.a, 11, 1).await;
    let remote = sessions[0].clone();
    phone.close();
    // Once b has seen the connection go, presence forgets it ...
    sessions_of(&nodes.a, 11, 0).await;
    // ... and a handle taken before gets b's answer: not connected.
    let err = ping(&remote, "still there?").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("not connected"), "{err}");
    nodes.a.shutdown(Duration::from_secs(1)).await;
    nodes.b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_stopped_node_is_reported_unavailable() {
    let Some(nodes) = two_nodes("cluster_stopped").await else {
        return;
    };
    let _phone = device(&nodes.b, 12, "phone").await;
    let sessions = sessions_of(&nodes.a, 12, 1).await;
    nodes.b.shutdown(Duration::from_secs(1)).await;
    let err = ping(&sessions[0], "anyone?").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    nodes.a.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn logins_and_ends_are_relayed_to_the_holder() {
    let Some(nodes) = two_nodes("cluster_ops").await else {
        return;
    };
    let phone = device(&nodes.b, 21, "phone").await;
    let sessions = sessions_of(&nodes.a, 21, 1).await;
    let remote = &sessions[0];

    // Logged in as another user from node a: b's view changes, so the client's next call
    // runs as that user.
    remote.login(22).await.unwrap();
    assert_eq!(remote.user_id(), Some(22));
    let me: Whoami = phone.call(routes::WHOAMI, &()).await.unwrap();
    assert_eq!(me.user_id, Some(22));
    assert_eq!(nodes.b.sessions().for_user(22).await.unwrap().len(), 1);
    let moved = sessions_of(&nodes.a, 22, 1).await;

    // Ended from node a: b closes the connection and the session cannot be resumed.
    moved[0].end().await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), phone.closed())
        .await
        .expect("the connection closes");
    assert!(reason.message().contains("session ended"), "{reason}");
    assert!(nodes.b.sessions().for_user(22).await.unwrap().is_empty());
    let token = phone.session().token;
    let err = connect_with(&nodes.a, client_config(&nodes.a).resume_token(token))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    nodes.a.shutdown(Duration::from_secs(1)).await;
    nodes.b.shutdown(Duration::from_secs(1)).await;
}

/// These two need no NATS server: a node that cannot join its cluster does not start.
#[tokio::test]
async fn an_unreachable_bus_or_a_bad_node_name_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = ClusterConfig::nats(format!("nats://fluxon:s3cret@127.0.0.1:{port}"))
        .connect_timeout(Duration::from_secs(5));
    let err = Server::bind(
        server_config(dir.path())
            .node_id("n1")
            .cluster(unreachable.clone()),
        app_router(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cannot join the cluster through NATS"),
        "{text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(
        !text.contains("s3cret"),
        "the password is not shown: {text}"
    );

    let err = Server::bind(
        server_config(dir.path())
            .node_id("node.1")
            .cluster(unreachable),
        app_router(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("node id `node.1`"), "{err}");
}
