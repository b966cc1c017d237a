//! The cloud application on three nodes (separate processes on 127.0.0.1) sharing PostgreSQL
//! (sessions, used grants, presence and the application's tables), NATS and an S3-compatible
//! object store (the files). Skipped (one line each) without `FLUXON_TEST_POSTGRES`,
//! `FLUXON_TEST_NATS` or `FLUXON_TEST_S3`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud::cloud::{
    CloudClient, CreateOwnerRequest, Credentials, GrantReply, PathRequest, WriteFileRequest,
};
use fluxon_client::{
    CloudStorageConnector, Code, Connection, ReconnectPolicy, Status, TransferOptions, Trust,
};
use fluxon_examples::harness::ClusterProcesses;
use fluxon_proto::storage::Grant;
use fluxon_storage::ObjectStoreConfig;
use futures_util::StreamExt;
use object_store::ObjectStore;

/// Three nodes of the cloud server, the object store they share, and their directory.
struct Cloud {
    nodes: ClusterProcesses,
    store: ObjectStoreConfig,
    _dir: tempfile::TempDir,
}

async fn start(suite: &str) -> Option<Cloud> {
    let nats = fluxon_server::testing::nats(suite)?;
    let store = fluxon_storage::testing::s3_test_store(suite)?;
    let url = fluxon_server::testing::fresh_postgres(suite).await?;
    let prefix = fluxon_server::testing::unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (key, secret) = (
        var("FLUXON_TEST_S3_ACCESS_KEY"),
        var("FLUXON_TEST_S3_SECRET_KEY"),
    );
    let program = Path::new(env!("CARGO_BIN_EXE_cloud-server")).to_owned();
    let root = store.url().to_owned();
    let endpoint = store.endpoint_url().unwrap_or_default().to_owned();
    let dir_path = dir.path().to_owned();
    let nodes = tokio::task::spawn_blocking(move || {
        ClusterProcesses::start(
            &program,
            cloud::APP_NAME,
            &dir_path,
            3,
            &[
                "--database",
                &url,
                "--state-database",
                &url,
                "--nats",
                &nats,
                "--cluster-prefix",
                &prefix,
                "--cloud-root",
                &root,
            ],
            &[
                ("AWS_ENDPOINT", &endpoint),
                ("AWS_ALLOW_HTTP", "true"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", &key),
                ("AWS_SECRET_ACCESS_KEY", &secret),
            ],
        )
    })
    .await
    .unwrap()
    .expect("three nodes start");
    Some(Cloud {
        nodes,
        store,
        _dir: dir,
    })
}

/// A client of node `node` that fails over to the others; it notices a dead node within a few
/// seconds (keep-alives every second, lost after three silent ones).
async fn connect(cloud: &Cloud, node: usize) -> Connection {
    let others: Vec<String> = cloud
        .nodes
        .addrs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != node)
        .map(|(_, a)| a.clone())
        .collect();
    let config = fluxon_client::ClientConfig::new(Trust::CertificateFile(cloud.nodes.cert.clone()))
        .connect_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(3), Duration::from_secs(1))
        .reconnect(ReconnectPolicy::default().max_attempts(30))
        .nodes(others);
    let addr = cloud.nodes.addrs[node].parse().unwrap();
    Connection::connect(addr, config).await.unwrap()
}

fn grant(reply: &GrantReply) -> &Grant {
    reply.grant.as_ref().expect("the reply carries a grant")
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed * 7) % 251) as u8)
        .collect()
}

/// Signs up `name`, makes them an owner and creates their root directory; the root's id.
async fn owner(client: &CloudClient, storage: &CloudStorageConnector, name: &str) -> i64 {
    client
        .signup(Credentials {
            username: name.into(),
            password: "correct horse battery".into(),
        })
        .await
        .unwrap();
    let owner = client
        .create_owner(CreateOwnerRequest {
            storage_limit: Some(1 << 30),
        })
        .await
        .unwrap();
    storage
        .create_directory(owner.grant.as_ref().unwrap(), &owner.storage_path)
        .await
        .unwrap();
    owner.root
}

/// Asks for a grant to write `path` and uploads `data`: the grant used and the checksum.
async fn upload(
    client: &CloudClient,
    storage: &CloudStorageConnector,
    root: i64,
    path: &str,
    data: &[u8],
) -> Result<(Grant, String, [u8; 32]), Status> {
    let reply = client
        .write_file(WriteFileRequest {
            root,
            path: path.into(),
            size: data.len() as i64,
            mime_type: String::new(),
        })
        .await?;
    let receipt = storage
        .upload(
            grant(&reply),
            &reply.storage_path,
            data,
            TransferOptions::new().size(data.len() as u64),
        )
        .await?;
    Ok((grant(&reply).clone(), reply.storage_path, receipt.checksum))
}

async fn download(
    client: &CloudClient,
    storage: &CloudStorageConnector,
    root: i64,
    path: &str,
) -> Result<(Vec<u8>, [u8; 32]), Status> {
    let reply = client
        .read_file(PathRequest {
            root,
            path: path.into(),
        })
        .await?;
    let mut out = Vec::new();
    let receipt = storage
        .download(
            grant(&reply),
            &reply.storage_path,
            &mut out,
            TransferOptions::new(),
        )
        .await?;
    Ok((out, receipt.checksum))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_uploaded_through_node_1_downloads_through_node_3() {
    let Some(cloud) = start("cloud_cluster_files").await else {
        return;
    };
    let one = connect(&cloud, 0).await;
    let (client, storage) = (
        CloudClient::new(one.clone()),
        CloudStorageConnector::new(one.clone()),
    );
    let root = owner(&client, &storage, "ada").await;
    // Over one multipart part, so the upload is a multipart upload to the store.
    let data = bytes(1, 9 << 20);
    let (used, path, sent) = upload(&client, &storage, root, "big.bin", &data)
        .await
        .unwrap();

    // The same user on node 3, logged in there.
    let three = connect(&cloud, 2).await;
    let (client3, storage3) = (
        CloudClient::new(three.clone()),
        CloudStorageConnector::new(three.clone()),
    );
    client3
        .login(Credentials {
            username: "ada".into(),
            password: "correct horse battery".into(),
        })
        .await
        .unwrap();
    let (got, checksum) = download(&client3, &storage3, root, "big.bin")
        .await
        .unwrap();
    assert_eq!(checksum, sent, "the same checksum through node 3");
    assert!(got == data, "the same bytes through node 3");

    // The grant used on node 1 is refused on node 3 (its session is node 1's, so it is
    // presented on that session's connection, resumed on node 3).
    let resumed = Connection::connect(
        cloud.nodes.addrs[2].parse().unwrap(),
        fluxon_client::ClientConfig::new(Trust::CertificateFile(cloud.nodes.cert.clone()))
            .resume_token(one.session().token),
    )
    .await
    .unwrap();
    assert!(resumed.session().resumed);
    let again = CloudStorageConnector::new(resumed)
        .upload(&used, &path, &data[..10], TransferOptions::new())
        .await
        .unwrap_err();
    assert!(again.message().contains("already used"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_node_under_100_clients_loses_no_acknowledged_write() {
    const CLIENTS: usize = 100;
    const FILES: usize = 3;
    const SIZE: usize = 48 * 1024;
    let Some(mut cloud) = start("cloud_cluster_kill").await else {
        return;
    };

    // 100 users, one connection each, spread over the three nodes.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let conn = connect(&cloud, i % 3).await;
        let client = CloudClient::new(conn.clone());
        let storage = CloudStorageConnector::new(conn.clone());
        let root = owner(&client, &storage, &format!("user{i}")).await;
        clients.push((conn, client, storage, root));
    }
    let sessions: Vec<String> = clients.iter().map(|c| c.0.session().id).collect();

    // Each client uploads FILES files, listing its root between them; an operation the kill
    // interrupts is done again under a new name. Acknowledged files are recorded.
    let acked = Arc::new(Mutex::new(Vec::<(usize, String, [u8; 32])>::new()));
    let used_on_node1 = Arc::new(Mutex::new(None::<(Grant, String)>));
    let mut work = tokio::task::JoinSet::new();
    for (i, (_, client, storage, root)) in clients.iter().cloned().enumerate() {
        let acked = Arc::clone(&acked);
        let used_on_node1 = Arc::clone(&used_on_node1);
        work.spawn(async move {
            for f in 0..FILES {
                let mut done = false;
                for attempt in 0..10 {
                    let name = format!("f{f}-{attempt}.bin");
                    let data = bytes((i * FILES + f) as u64, SIZE);
                    match upload(&client, &storage, root, &name, &data).await {
                        Ok((grant, path, checksum)) => {
                            if i == 0 && f == 0 {
                                // Client 0 starts on node 1: its first grant is used there.
                                *used_on_node1.lock().unwrap() = Some((grant, path));
                            }
                            acked.lock().unwrap().push((i, name, checksum));
                            done = true;
                            break;
                        }
                        Err(status) => {
                            assert!(
                                matches!(
                                    status.code(),
                                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
                                ),
                                "client {i}: {status}"
                            );
                        }
                    }
                }
                assert!(done, "client {i} could not store file {f}");
                let listed = client
                    .read_tree(PathRequest {
                        root,
                        path: String::new(),
                    })
                    .await;
                if let Err(status) = listed {
                    assert_eq!(status.code(), Code::Unavailable, "client {i}: {status}");
                }
            }
        });
    }
    // Once a third of the files are acknowledged, node 1 dies.
    for _ in 0..1200 {
        if acked.lock().unwrap().len() >= CLIENTS * FILES / 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed_addr = cloud.nodes.addrs[0].clone();
    cloud.nodes.kill(0);
    let finished = tokio::time::timeout(Duration::from_secs(600), async {
        while let Some(result) = work.join_next().await {
            result.expect("a client's work");
        }
    })
    .await;
    assert!(finished.is_ok(), "the clients finished their work");

    // Every client is on a live node, in the same session, still logged in.
    for (i, (conn, client, _, root)) in clients.iter().enumerate() {
        let tree = client
            .read_tree(PathRequest {
                root: *root,
                path: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_ne!(conn.remote_addr().to_string(), killed_addr, "client {i}");
        assert_eq!(
            conn.session().id,
            sessions[i],
            "client {i} kept its session"
        );
        // Only whole files are listed.
        for entry in tree.entries.iter().filter(|e| !e.directory) {
            assert_eq!(entry.size, SIZE as i64, "client {i}: {}", entry.path);
        }
    }

    // Every acknowledged file is there, with the checksum acknowledged.
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), CLIENTS * FILES);
    for (i, name, checksum) in &acked {
        let (_, client, storage, root) = &clients[*i];
        let (data, got) = download(client, storage, *root, name)
            .await
            .unwrap_or_else(|e| panic!("client {i}, {name}: {e}"));
        assert_eq!(got, *checksum, "client {i}, {name}");
        assert_eq!(data.len(), SIZE);
    }

    // In the store itself, no object under its final key is partial.
    let (store, prefix) = fluxon_storage::testing::store_client(&cloud.store);
    let mut listing = store.list(Some(&prefix));
    let mut files = HashSet::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.unwrap();
        let key = meta.location.to_string();
        if key.contains("/.fluxon-") {
            continue;
        }
        assert_eq!(meta.size, SIZE as u64, "{key}");
        files.insert(key);
    }
    assert!(files.len() >= acked.len(), "{} objects", files.len());

    // A grant used on node 1 before it died stays used on the others.
    let (used, path) = used_on_node1
        .lock()
        .unwrap()
        .clone()
        .expect("a grant used on node 1");
    let (conn, ..) = &clients[0];
    let again = CloudStorageConnector::new(conn.clone())
        .upload(&used, &path, &b"again"[..], TransferOptions::new())
        .await
        .unwrap_err();
    assert!(again.message().contains("already used"), "{again}");
}
