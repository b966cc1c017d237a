//! The cloud example end to end: `cloud-client` against `cloud-server`, as separate processes
//! on loopback with a fresh data directory (database and storage root inside it).

use std::ffi::OsStr;
use std::path::Path;

use fluxon_examples::harness::{run_client, ServerProcess};

#[test]
fn cloud_client_runs_its_flow_against_cloud_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_cloud-server")),
        cloud::APP_NAME,
        dir.path(),
    )
    .expect("the server starts");
    run_flow(&server, dir.path());
    assert_stored_on_disk(dir.path());
}

/// The same flow with the application database and the shared state (sessions, used grants)
/// on PostgreSQL; the files stay in the local storage root.
#[test]
fn cloud_flow_on_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(url) = rt.block_on(fluxon_server::testing::fresh_postgres("cloud_flow")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        Path::new(env!("CARGO_BIN_EXE_cloud-server")),
        cloud::APP_NAME,
        dir.path(),
        &["--database", &url, "--state-database", &url],
    )
    .expect("the server starts on PostgreSQL");
    run_flow(&server, dir.path());
    assert_stored_on_disk(dir.path());
    assert!(!dir.path().join("cloud.db").exists(), "no SQLite file");
    assert!(
        !dir.path().join("fluxon.db").exists(),
        "no SQLite state file"
    );
}

/// The same flow with the files in an S3-compatible object store (`--cloud-root s3://...`, the
/// store's address and keys in the AWS_* variables), as `.ci/run` provides one.
#[test]
fn cloud_flow_on_an_object_store() {
    let Some(store) = fluxon_storage::testing::s3_test_store("cloud_flow") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (key, secret) = (
        var("FLUXON_TEST_S3_ACCESS_KEY"),
        var("FLUXON_TEST_S3_SECRET_KEY"),
    );
    let server = ServerProcess::start_with_env(
        Path::new(env!("CARGO_BIN_EXE_cloud-server")),
        cloud::APP_NAME,
        dir.path(),
        &["--cloud-root", store.url()],
        &[
            ("AWS_ENDPOINT", store.endpoint_url().unwrap_or_default()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", &key),
            ("AWS_SECRET_ACCESS_KEY", &secret),
        ],
    )
    .expect("the server starts with its files in the object store");
    run_flow(&server, dir.path());
    assert!(!dir.path().join("cloud").exists(), "no local storage root");
}

/// Runs the client's whole flow and checks what it printed and what it left in storage.
fn run_flow(server: &ServerProcess, dir: &Path) {
    let output = run_client(
        Path::new(env!("CARGO_BIN_EXE_cloud-client")),
        &[
            OsStr::new("--addr"),
            OsStr::new(server.addr()),
            OsStr::new("--data-dir"),
            dir.as_os_str(),
            OsStr::new("--run-id"),
            OsStr::new("t1"),
        ],
    )
    .expect("the client runs");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed ({}):\n{out}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "signup                             -> user 1 (ada-t1)",
        "create_folder before create_owner  -> refused: failed_precondition",
        "create_owner                       -> root directory 1 at u1 (0 of 1048576 bytes used)",
        "create_folder docs/reports         -> u1/docs/reports",
        "create_folder missing/inner        -> refused: not_found",
        "create_folder ../escape            -> refused: invalid_argument",
        "upload 614400/614400 bytes (100%)",
        "upload                             -> stored 614400 bytes",
        "write_file over the quota          -> refused: resource_exhausted: quota exceeded",
        "upload past the grant's cap        -> refused: resource_exhausted",
        "refused upload docs/liar.bin       -> not recorded, reservation released (614437 of 1048576 bytes used)",
        "download 614400/614400 bytes (100%)",
        "matches the upload, bytes identical",
        "  docs/reports/data.bin (614400 bytes)",
        "tree check                         -> 4 entries, same as in storage",
        "another user reads the file        -> refused: permission_denied",
        "delete_item docs/reports           -> freed 614400 bytes\n",
        "read_tree                          -> docs, docs/hello.txt (37 of 1048576 bytes used)\n",
        "login                              -> user 1",
        "done",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

/// The files are where the grants said, inside the server's local storage root.
fn assert_stored_on_disk(dir: &Path) {
    let stored = dir.join("cloud/u1/docs/hello.txt");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        b"Hello from the Fluxon cloud example!\n"
    );
    assert!(!dir.join("cloud/u1/docs/reports").exists());
    assert!(!dir.join("cloud/u1/docs/liar.bin").exists());
}

/// A source that yields `left` bytes and then waits forever: an upload that stops mid-file
/// with its connection open.
struct Stalls {
    left: usize,
}

impl tokio::io::AsyncRead for Stalls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            return std::task::Poll::Pending;
        }
        let n = self.left.min(buf.remaining()).min(64 * 1024);
        buf.put_slice(&vec![7u8; n]);
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

/// Names in `dir` on disk, the storage service's hidden temporary files included.
fn on_disk(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Polls `f` until it holds, for up to 30 s (every 50 ms).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A signed-in owner's client, with its root created in storage.
struct Owner {
    client: cloud::cloud::CloudClient,
    storage: fluxon_client::CloudStorageConnector,
    root: i64,
}

async fn sign_in(server: &ServerProcess, dir: &Path, signup: bool) -> Owner {
    use cloud::cloud::{CloudClient, CreateOwnerRequest, Credentials, PathRequest};
    let config = fluxon_client::ClientConfig::new(fluxon_client::Trust::CertificateFile(
        fluxon_examples::dev_cert_path(dir),
    ));
    let conn = fluxon_client::Connection::connect(server.addr().parse().unwrap(), config)
        .await
        .expect("connect");
    let client = CloudClient::new(conn.clone());
    let storage = fluxon_client::CloudStorageConnector::new(conn);
    let creds = Credentials {
        username: "kim".into(),
        password: "a long enough password".into(),
    };
    if !signup {
        client.login(creds).await.expect("login");
        let tree = client
            .storage_grant(cloud::cloud::StorageGrantRequest {
                op: "read_tree".into(),
                ..Default::default()
            })
            .await
            .expect("the owner's root");
        assert_eq!(tree.storage_path, "u1");
        return Owner {
            client,
            storage,
            root: 1,
        };
    }
    client.signup(creds).await.expect("signup");
    let owner = client
        .create_owner(CreateOwnerRequest::default())
        .await
        .expect("owner");
    storage
        .create_directory(owner.grant.as_ref().unwrap(), &owner.storage_path)
        .await
        .expect("root in storage");
    let folder = client
        .create_folder(PathRequest {
            root: owner.root,
            path: "up".into(),
        })
        .await
        .expect("folder");
    storage
        .create_directory(folder.grant.as_ref().unwrap(), &folder.storage_path)
        .await
        .expect("folder in storage");
    Owner {
        client,
        storage,
        root: owner.root,
    }
}

impl Owner {
    /// The files of `up/` as the application records them, and its usage.
    async fn recorded(&self) -> (Vec<String>, i64) {
        let tree = self
            .client
            .read_tree(cloud::cloud::PathRequest {
                root: self.root,
                path: "up".into(),
            })
            .await
            .expect("tree");
        let listed = self
            .storage
            .read_tree(tree.grant.as_ref().unwrap(), &tree.storage_path)
            .await
            .expect("storage's tree");
        let mut names: Vec<String> = tree.entries.iter().map(|e| e.path.clone()).collect();
        let mut stored: Vec<String> = listed.iter().map(|e| e.name.clone()).collect();
        names.sort();
        stored.sort();
        assert_eq!(names, stored, "the application and storage disagree");
        (names, tree.usage.unwrap().storage_used)
    }

    /// Starts uploading 8 MiB to `path` and stalls after 1 MiB; returns the upload's task.
    async fn stalled_upload(&self, path: &str) -> tokio::task::JoinHandle<()> {
        let reply = self
            .client
            .write_file(cloud::cloud::WriteFileRequest {
                root: self.root,
                path: path.into(),
                size: 8 << 20,
                mime_type: String::new(),
            })
            .await
            .expect("write grant");
        let storage = self.storage.clone();
        tokio::spawn(async move {
            let _ = storage
                .upload(
                    reply.grant.as_ref().unwrap(),
                    &reply.storage_path,
                    Stalls { left: 1 << 20 },
                    fluxon_client::TransferOptions::new().size(8 << 20),
                )
                .await;
        })
    }
}

/// Kills the client, then the server, in the middle of an upload: afterwards the application's
/// tree and storage agree (no phantom entry), nothing partial is left on disk, and the quota
/// holds only the reservation of the upload the killed server never heard end.
#[test]
fn killed_uploads_leave_the_application_and_storage_in_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let program = Path::new(env!("CARGO_BIN_EXE_cloud-server"));
    let server = ServerProcess::start(program, cloud::APP_NAME, dir.path()).expect("starts");
    let up = dir.path().join("cloud/u1/up");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(async {
        let owner = sign_in(&server, dir.path(), true).await;
        let kept = owner
            .client
            .write_file(cloud::cloud::WriteFileRequest {
                root: owner.root,
                path: "up/kept.txt".into(),
                size: 5,
                mime_type: "text/plain".into(),
            })
            .await
            .expect("grant");
        owner
            .storage
            .upload(
                kept.grant.as_ref().unwrap(),
                &kept.storage_path,
                &b"kept!"[..],
                fluxon_client::TransferOptions::new(),
            )
            .await
            .expect("stored");
        assert_eq!(owner.recorded().await, (vec!["kept.txt".to_owned()], 5));

        // The client dies mid-upload: the server drops the bytes and releases the reservation.
        let upload = owner.stalled_upload("up/big.bin").await;
        eventually("the first MiB on the server's disk", || {
            std::fs::read_dir(&up).unwrap().any(|e| {
                let e = e.unwrap();
                e.file_name().to_string_lossy().starts_with(".fluxon-tmp-")
                    && e.metadata().unwrap().len() > 0
            })
        })
        .await;
        upload.abort();
        owner.storage.connection().close();
        drop(owner);
        let owner = sign_in(&server, dir.path(), false).await;
        eventually("the temporary file removed", || {
            on_disk(&up) == ["kept.txt"]
        })
        .await;
        for _ in 0..600 {
            if owner.recorded().await.1 == 5 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            owner.recorded().await,
            (vec!["kept.txt".to_owned()], 5),
            "no phantom big.bin, its reservation released"
        );

        // The server dies mid-upload.
        let _upload = owner.stalled_upload("up/big2.bin").await;
        eventually("bytes of big2.bin on the server's disk", || {
            on_disk(&up).iter().any(|n| n.starts_with(".fluxon-tmp-"))
        })
        .await;
        server
    });
    drop(server); // SIGKILL
    let server = ServerProcess::start(program, cloud::APP_NAME, dir.path()).expect("restarts");
    rt.block_on(async {
        let owner = sign_in(&server, dir.path(), false).await;
        let (names, used) = owner.recorded().await;
        assert_eq!(names, ["kept.txt"], "no phantom big2.bin after the crash");
        assert_eq!(
            used,
            5 + (8 << 20),
            "the killed upload's reservation holds its quota until it expires"
        );
        eventually("the crash's temporary file swept", || {
            on_disk(&up) == ["kept.txt"]
        })
        .await;
    });
}
