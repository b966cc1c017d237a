//! Nodes behind a list of addresses: a client whose node goes away reconnects to another node
//! of the deployment and resumes its session there, without logging in again. The nodes share
//! a state store and a secret key (here a SQLite file in one process; the cluster suites use
//! PostgreSQL and separate processes).

use std::time::Duration;

use fluxon_client::{Connection, ReconnectPolicy};
use fluxon_e2e::msg::{Echo, Login, Whoami};
use fluxon_e2e::{app_router, client_config, routes, server_config};
use fluxon_server::{Server, StateLocation, StateStore, StreamServices, TlsSource, DEV_KEY_FILE};

const KEY: [u8; 32] = [4; 32];

async fn nodes(n: usize) -> (Vec<Server>, Vec<tempfile::TempDir>) {
    let shared = tempfile::tempdir().unwrap();
    let state = StateStore::open(&StateLocation::Sqlite(shared.path().join("state.db")))
        .await
        .unwrap();
    let mut servers: Vec<Server> = Vec::new();
    let mut dirs = vec![shared];
    for i in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path())
            .secret_key(KEY)
            .node_id(format!("n{i}"));
        // One certificate for the deployment, as behind one name: the first node's.
        if let Some(first) = servers.first() {
            let cert = first.dev_certificate_path().unwrap();
            config = config.tls(TlsSource::Files {
                key: cert.with_file_name(DEV_KEY_FILE),
                cert,
            });
        }
        servers.push(
            Server::bind_with_state(config, app_router(), StreamServices::new(), state.clone())
                .await
                .unwrap(),
        );
        dirs.push(dir);
    }
    (servers, dirs)
}

#[tokio::test]
async fn a_client_given_a_dead_address_connects_to_the_next_node() {
    let (servers, _dirs) = nodes(2).await;
    // A loopback port nobody listens on: the handshake gets no answer.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = client_config(&servers[0])
        .connect_timeout(Duration::from_secs(5))
        .nodes([servers[1].local_addr().to_string()]);
    let conn = Connection::connect(dead, config).await.unwrap();
    assert_eq!(conn.remote_addr(), servers[1].local_addr());
    let echo: Echo = conn
        .call(
            routes::ECHO,
            &Echo {
                text: "hi".into(),
                n: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(echo.text, "hi");
    for s in &servers {
        s.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_node_when_its_node_stops() {
    let (servers, _dirs) = nodes(3).await;
    let others: Vec<String> = servers[1..]
        .iter()
        .map(|s| s.local_addr().to_string())
        .collect();
    let config = client_config(&servers[0])
        .nodes(others.clone())
        .reconnect(ReconnectPolicy::default().max_attempts(20));
    let conn = Connection::connect(servers[0].local_addr(), config)
        .await
        .unwrap();
    let _: Whoami = conn
        .call(routes::LOGIN, &Login { user_id: 77 })
        .await
        .unwrap();
    let session = conn.session().id;

    servers[0].shutdown(Duration::from_secs(1)).await;
    let echo: Echo = conn
        .call(
            routes::ECHO,
            &Echo {
                text: "still here".into(),
                n: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(echo.text, "still here");
    let me: Whoami = conn.call(routes::WHOAMI, &()).await.unwrap();
    assert_eq!(me.user_id, Some(77), "logged in without logging in again");
    assert_eq!(me.session_id, session, "the same session");
    assert!(conn.session().resumed);
    assert_eq!(
        conn.remote_addr().to_string(),
        others[0],
        "the next node in the list"
    );
    for s in &servers[1..] {
        s.shutdown(Duration::from_secs(1)).await;
    }
}
