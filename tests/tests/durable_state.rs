//! Durable, shared state, over real server processes (`tests/src/bin/crash-server.rs`): a used
//! single-use grant stays used after a graceful restart and after SIGKILL, and two nodes that
//! share the key and the state database accept each other's sessions and refuse each other's
//! used grants. Each runs on SQLite and, when `FLUXON_TEST_POSTGRES` names a server, on
//! PostgreSQL.

mod common;

use std::path::Path;

use common::process::{child_client, spawn_server_with, Child};
use fluxon_client::storage::{Grant, Op};
use fluxon_client::{CloudStorageConnector, Code, Connection, Status, TransferOptions};
use fluxon_e2e::msg::{Login, Whoami};
use fluxon_e2e::notes::{self, GrantAsk};
use fluxon_e2e::routes;
use fluxon_server::{StateLocation, StateStore};

const BODY: &[u8] = b"read me once per grant";

async fn grant(conn: &Connection, op: Op, path: &str) -> Grant {
    conn.call(
        notes::routes::GRANT,
        &GrantAsk {
            op: op as i32,
            path: path.into(),
            overwrite: true,
        },
    )
    .await
    .expect("grant issued")
}

async fn read(storage: &CloudStorageConnector, grant: &Grant) -> Result<Vec<u8>, Status> {
    let mut out = Vec::new();
    storage
        .download(grant, "r.txt", &mut out, TransferOptions::new())
        .await?;
    Ok(out)
}

fn assert_reused(result: Result<Vec<u8>, Status>, when: &str) {
    let err = result.expect_err(when);
    assert_eq!(err.code(), Code::PermissionDenied, "{when}: {err}");
    assert!(err.message().contains("already used"), "{when}: {err}");
}

/// Where a test's servers keep their state: `None` for each node's default SQLite file.
enum Backend {
    DefaultSqlite,
    SharedSqlite,
    Postgres(String),
}

impl Backend {
    /// The `--state` arguments for a server under `root`.
    fn args(&self, root: &Path) -> Vec<String> {
        match self {
            Self::DefaultSqlite => vec![],
            Self::SharedSqlite => vec![
                "--state".into(),
                root.join("shared-state.db").display().to_string(),
            ],
            Self::Postgres(url) => vec!["--state".into(), url.clone()],
        }
    }
}

async fn spawn(dir: &Path, backend: &Backend, root: &Path, extra: &[&str]) -> Child {
    let mut args = backend.args(root);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_server_with(dir, 0, None, &args).await
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    Graceful,
    Kill,
}

/// The reported bug: use a read grant, stop the server, start it again on the same data,
/// resume the session, present the grant again.
async fn replay_after_restart(stop: Stop, backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let child = spawn(&dir, &backend, tmp.path(), &[]).await;
    let conn = Connection::connect(child.addr, child_client(&dir))
        .await
        .unwrap();
    let storage = CloudStorageConnector::new(conn.clone());
    let write = grant(&conn, Op::WriteFile, "r.txt").await;
    storage
        .upload(&write, "r.txt", BODY, TransferOptions::new())
        .await
        .unwrap();
    let once = grant(&conn, Op::ReadFile, "r.txt").await;
    assert_eq!(read(&storage, &once).await.unwrap(), BODY);
    assert_reused(read(&storage, &once).await, "second use, same process");
    let token = conn.session().token;
    let session = conn.session().id;
    drop(storage);
    conn.close();

    match stop {
        Stop::Graceful => child.interrupt().await,
        Stop::Kill => child.kill().await,
    }
    let child = spawn(&dir, &backend, tmp.path(), &[]).await;
    let conn = Connection::connect(child.addr, child_client(&dir).resume_token(token))
        .await
        .unwrap();
    assert_eq!(conn.session().id, session, "the session resumed");
    let storage = CloudStorageConnector::new(conn.clone());
    assert_reused(
        read(&storage, &once).await,
        &format!("replay after {stop:?}"),
    );
    // A new grant still reads the file: the refusal is about the grant, not the server.
    let fresh = grant(&conn, Op::ReadFile, "r.txt").await;
    assert_eq!(read(&storage, &fresh).await.unwrap(), BODY);
    conn.close();
    child.kill().await;
}

#[tokio::test]
async fn a_used_grant_stays_used_after_a_graceful_restart() {
    replay_after_restart(Stop::Graceful, Backend::DefaultSqlite).await;
}

#[tokio::test]
async fn a_used_grant_stays_used_after_sigkill() {
    replay_after_restart(Stop::Kill, Backend::DefaultSqlite).await;
}

#[tokio::test]
async fn a_used_grant_stays_used_after_a_graceful_restart_on_postgres() {
    if let Some(url) = fluxon_server::testing::fresh_postgres("replay_graceful").await {
        replay_after_restart(Stop::Graceful, Backend::Postgres(url)).await;
    }
}

#[tokio::test]
async fn a_used_grant_stays_used_after_sigkill_on_postgres() {
    if let Some(url) = fluxon_server::testing::fresh_postgres("replay_kill").await {
        replay_after_restart(Stop::Kill, Backend::Postgres(url)).await;
    }
}

/// Copies node 1's key and development certificate to node 2: the nodes of a deployment share
/// the key (sessions and grants are signed with it) and, behind one name, the certificate.
fn share_identity(from: &Path, to: &Path) {
    let (from, to) = (from.join("server"), to.join("server"));
    std::fs::create_dir_all(&to).unwrap();
    for file in [
        fluxon_server::SECRET_KEY_FILE,
        fluxon_server::DEV_CERT_FILE,
        fluxon_server::DEV_KEY_FILE,
    ] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

/// Two server processes sharing the key, the state database and the storage root.
async fn two_nodes(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir1, dir2) = (tmp.path().join("node1"), tmp.path().join("node2"));
    let cloud = tmp.path().join("cloud").display().to_string();
    let node1 = spawn(
        &dir1,
        &backend,
        tmp.path(),
        &["--cloud", &cloud, "--node", "n1"],
    )
    .await;
    share_identity(&dir1, &dir2);
    let node2 = spawn(
        &dir2,
        &backend,
        tmp.path(),
        &["--cloud", &cloud, "--node", "n2"],
    )
    .await;

    // A session made and logged in on node 1 ...
    let on1 = Connection::connect(node1.addr, child_client(&dir1))
        .await
        .unwrap();
    let me: Whoami = on1
        .call(routes::LOGIN, &Login { user_id: 5 })
        .await
        .unwrap();
    assert_eq!(me.user_id, Some(5));
    let storage1 = CloudStorageConnector::new(on1.clone());
    let write = grant(&on1, Op::WriteFile, "r.txt").await;
    storage1
        .upload(&write, "r.txt", BODY, TransferOptions::new())
        .await
        .unwrap();
    let once = grant(&on1, Op::ReadFile, "r.txt").await;
    assert_eq!(read(&storage1, &once).await.unwrap(), BODY);

    // ... resumes on node 2, still logged in, with no new login.
    let on2 = Connection::connect(
        node2.addr,
        child_client(&dir1).resume_token(on1.session().token),
    )
    .await
    .unwrap();
    assert_eq!(on2.session().id, on1.session().id);
    let me: Whoami = on2.call(routes::WHOAMI, &()).await.unwrap();
    assert_eq!(
        me.user_id,
        Some(5),
        "the login made on node 1 holds on node 2"
    );

    // The grant node 1 saw used is refused on node 2; one issued by node 2 works on node 1.
    let storage2 = CloudStorageConnector::new(on2.clone());
    assert_reused(read(&storage2, &once).await, "replay on the other node");
    let from2 = grant(&on2, Op::ReadFile, "r.txt").await;
    assert_eq!(read(&storage1, &from2).await.unwrap(), BODY);
    assert_reused(
        read(&storage2, &from2).await,
        "node 2's grant after node 1 used it",
    );

    // Presence: the session's latest connection is on node 2, as any node sees it.
    let location = match &backend {
        Backend::Postgres(url) => StateLocation::Postgres(url.clone()),
        _ => StateLocation::Sqlite(tmp.path().join("shared-state.db")),
    };
    let state = StateStore::open(&location).await.unwrap();
    let presence = state.presence_of_user(5).await.unwrap();
    assert_eq!(presence.len(), 1, "{presence:?}");
    assert_eq!(presence[0].session.to_string(), on1.session().id);
    assert_eq!(presence[0].node, "n2");

    on1.close();
    on2.close();
    node1.kill().await;
    node2.kill().await;
}

#[tokio::test]
async fn two_nodes_sharing_a_sqlite_file_share_sessions_and_used_grants() {
    two_nodes(Backend::SharedSqlite).await;
}

#[tokio::test]
async fn two_nodes_sharing_postgres_share_sessions_and_used_grants() {
    if let Some(url) = fluxon_server::testing::fresh_postgres("two_nodes").await {
        two_nodes(Backend::Postgres(url)).await;
    }
}
