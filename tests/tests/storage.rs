//! Cloud storage end to end over QUIC on loopback: grants issued by a route, operations performed
//! on storage streams, refusals, interrupted and concurrent transfers, resume, and a storage-only
//! endpoint.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fluxon_client::storage::{EntryKind, Grant, Op};
use fluxon_client::{CloudStorageConnector, Code, Connection, Status, StopSignal, TransferOptions};
use fluxon_e2e::{client_config, connect, init_tracing, server_config};
use fluxon_server::grant::GrantBuilder;
use fluxon_server::{Request, Router, SecretKey, Server, SessionId};
use fluxon_storage::{StorageConfig, StorageEvent, StorageHooks, StorageServer, StorageService};
use tokio::io::{AsyncRead, ReadBuf};

const GRANT: &str = "test.Storage/Grant";

/// What the test application's grant route is asked for.
#[derive(Clone, PartialEq, prost::Message)]
struct Ask {
    #[prost(int32, tag = "1")]
    op: i32,
    #[prost(string, tag = "2")]
    path: String,
    #[prost(string, tag = "3")]
    dest: String,
    #[prost(uint64, optional, tag = "4")]
    max_bytes: Option<u64>,
    #[prost(bool, tag = "5")]
    overwrite: bool,
    #[prost(bool, tag = "6")]
    reusable: bool,
    #[prost(bool, tag = "7")]
    resumable: bool,
    #[prost(string, tag = "8")]
    upload_id: String,
}

impl Ask {
    fn new(op: Op, path: &str) -> Self {
        Self {
            op: op as i32,
            path: path.to_owned(),
            ..Default::default()
        }
    }
}

/// The test application: grants whatever it is asked (authorization is the app's business; the
/// storage service only checks grants).
fn router() -> Router {
    Router::new().route(GRANT, |req: Request<Ask>| async move {
        let op = Op::try_from(req.op).unwrap_or(Op::Unspecified);
        let mut builder = req
            .grant(op, req.path.clone())
            .overwrite(req.overwrite)
            .reusable(req.reusable)
            .resumable(req.resumable);
        if let Some(max) = req.max_bytes {
            builder = builder.max_bytes(max);
        }
        if !req.dest.is_empty() {
            builder = builder.destination(req.dest.clone());
        }
        if !req.upload_id.is_empty() {
            builder = builder.upload_id(req.upload_id.clone());
        }
        builder.sign()
    })
}

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
    service: StorageService,
    root: PathBuf,
    conn: Connection,
    storage: CloudStorageConnector,
}

async fn start() -> Fixture {
    start_with(|config| config).await
}

async fn start_with(configure: impl FnOnce(StorageConfig) -> StorageConfig) -> Fixture {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cloud");
    let (server, service) = fluxon_storage::bind_server(
        server_config(dir.path()),
        router(),
        configure(StorageConfig::new(&root)),
    )
    .await
    .expect("server starts");
    let conn = connect(&server).await;
    let storage = CloudStorageConnector::new(conn.clone());
    Fixture {
        _dir: dir,
        server,
        service,
        root,
        conn,
        storage,
    }
}

impl Fixture {
    async fn ask(&self, ask: Ask) -> Grant {
        self.conn.call(GRANT, &ask).await.expect("grant issued")
    }

    async fn grant(&self, op: Op, path: &str) -> Grant {
        self.ask(Ask::new(op, path)).await
    }

    async fn put(&self, path: &str, data: &[u8]) -> Result<(), Status> {
        let grant = self
            .ask(Ask {
                overwrite: true,
                ..Ask::new(Op::WriteFile, path)
            })
            .await;
        self.storage
            .upload(
                &grant,
                path,
                data,
                TransferOptions::new().size(data.len() as u64),
            )
            .await
            .map(drop)
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>, Status> {
        let grant = self.grant(Op::ReadFile, path).await;
        let mut out = Vec::new();
        self.storage
            .download(&grant, path, &mut out, TransferOptions::new())
            .await?;
        Ok(out)
    }

    /// Files in `dir` on disk (including the service's hidden temporary files).
    fn files_on_disk(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn session_id(&self) -> SessionId {
        self.conn.session().id.parse().unwrap()
    }
}

/// Deterministic test bytes.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0] ^ seed)
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, needle: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "{status}");
            assert!(
                status.message().contains(needle),
                "`{}` does not mention `{needle}`",
                status.message()
            );
        }
        Ok(v) => panic!("expected {code}, got Ok({v:?})"),
    }
}

/// Polls `f` until it holds, for up to 10 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn every_operation_end_to_end() {
    let fx = start().await;
    let s = &fx.storage;

    s.create_directory(&fx.grant(Op::CreateDirectory, "docs").await, "docs")
        .await
        .unwrap();
    assert_code(
        s.create_directory(&fx.grant(Op::CreateDirectory, "docs").await, "docs")
            .await,
        Code::AlreadyExists,
        "already exists",
    );
    assert_code(
        s.create_directory(&fx.grant(Op::CreateDirectory, "no/such").await, "no/such")
            .await,
        Code::NotFound,
        "does not exist",
    );

    // Upload with progress.
    let body = data(3 * 1024 * 1024 + 17, 1);
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = Arc::clone(&seen);
    let grant = fx.grant(Op::WriteFile, "docs/a.bin").await;
    let receipt = s
        .upload(
            &grant,
            "docs/a.bin",
            &body[..],
            TransferOptions::new()
                .size(body.len() as u64)
                .progress(move |done, total| {
                    assert!(done <= total);
                    seen2.store(done, Ordering::Relaxed);
                }),
        )
        .await
        .unwrap();
    assert_eq!(receipt.size, body.len() as u64);
    assert_eq!(receipt.checksum, *blake3::hash(&body).as_bytes());
    assert_eq!(seen.load(Ordering::Relaxed), body.len() as u64);
    assert_eq!(std::fs::read(fx.root.join("docs/a.bin")).unwrap(), body);

    // Without overwrite, an existing file is refused.
    let again = fx.grant(Op::WriteFile, "docs/a.bin").await;
    assert_code(
        s.upload(&again, "docs/a.bin", &b"x"[..], TransferOptions::new())
            .await,
        Code::AlreadyExists,
        "already exists",
    );

    // Stat.
    let entry = s
        .stat(&fx.grant(Op::Stat, "docs/a.bin").await, "docs/a.bin")
        .await
        .unwrap();
    assert_eq!(entry.name, "a.bin");
    assert_eq!(entry.kind, EntryKind::File as i32);
    assert_eq!(entry.size, body.len() as u64);
    assert!(entry.modified_ms > 0);

    // Download to memory and to a file.
    let grant = fx.grant(Op::ReadFile, "docs/a.bin").await;
    let mut out = Vec::new();
    let got = s
        .download(&grant, "docs/a.bin", &mut out, TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(out, body);
    assert_eq!(got.checksum, receipt.checksum);
    let local = fx.root.parent().unwrap().join("local.bin");
    let grant = fx.grant(Op::ReadFile, "docs/a.bin").await;
    s.download_to_file(&grant, "docs/a.bin", &local, TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&local).unwrap(), body);

    // Upload from a file path.
    let grant = fx.grant(Op::WriteFile, "docs/sub.bin").await;
    s.upload_file(&grant, "docs/sub.bin", &local, TransferOptions::new())
        .await
        .unwrap();

    // Tree.
    s.create_directory(
        &fx.grant(Op::CreateDirectory, "docs/inner").await,
        "docs/inner",
    )
    .await
    .unwrap();
    let tree = s
        .read_tree(&fx.grant(Op::ReadTree, "").await, "")
        .await
        .unwrap();
    let names: Vec<(&str, i32)> = tree.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        names,
        vec![
            ("docs", EntryKind::Directory as i32),
            ("docs/a.bin", EntryKind::File as i32),
            ("docs/inner", EntryKind::Directory as i32),
            ("docs/sub.bin", EntryKind::File as i32),
        ]
    );
    assert_eq!(tree[1].size, body.len() as u64);

    // Move.
    let grant = fx
        .ask(Ask {
            dest: "docs/inner/b.bin".into(),
            ..Ask::new(Op::Move, "docs/a.bin")
        })
        .await;
    s.move_item(&grant, "docs/a.bin", "docs/inner/b.bin")
        .await
        .unwrap();
    assert_eq!(fx.get("docs/inner/b.bin").await.unwrap(), body);
    assert_code(fx.get("docs/a.bin").await, Code::NotFound, "does not exist");

    // Delete a file, then a whole tree.
    s.delete_item(
        &fx.grant(Op::DeleteItem, "docs/sub.bin").await,
        "docs/sub.bin",
    )
    .await
    .unwrap();
    s.delete_item(&fx.grant(Op::DeleteItem, "docs").await, "docs")
        .await
        .unwrap();
    let tree = s
        .read_tree(&fx.grant(Op::ReadTree, "").await, "")
        .await
        .unwrap();
    assert!(tree.is_empty(), "{tree:?}");
    assert!(fx.service.stats().files_written >= 2);
    fx.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bad_grants_are_refused() {
    let fx = start().await;
    let s = &fx.storage;
    fx.put("a.txt", b"hello").await.unwrap();

    // Forged: a grant for one path edited to name another.
    let mut forged = fx.grant(Op::ReadFile, "a.txt").await;
    forged.path = "b.txt".into();
    assert_code(
        s.stat(&forged, "b.txt").await,
        Code::PermissionDenied,
        "signature is invalid",
    );
    // Signed with another key.
    let foreign = GrantBuilder::new(
        SecretKey::from_bytes(&[7; 32]).unwrap(),
        fx.session_id(),
        Op::ReadFile,
        "a.txt",
    )
    .sign()
    .unwrap();
    let mut sink = Vec::new();
    assert_code(
        s.download(&foreign, "a.txt", &mut sink, TransferOptions::new())
            .await,
        Code::PermissionDenied,
        "signature is invalid",
    );
    // No grant at all is refused too (an empty grant has no valid signature).
    assert_code(
        s.stat(&Grant::default(), "a.txt").await,
        Code::InvalidArgument,
        "version",
    );

    // Expired: signed by the server's own key, an hour ago, for a minute.
    let expired = GrantBuilder::new(
        fx.server.secret_key().clone(),
        fx.session_id(),
        Op::Stat,
        "a.txt",
    )
    .sign_at(now() - 3600, [1; 16], String::new())
    .unwrap();
    assert_code(
        s.stat(&expired, "a.txt").await,
        Code::PermissionDenied,
        "expired",
    );

    // Reused: single-use by default.
    let once = fx.grant(Op::Stat, "a.txt").await;
    s.stat(&once, "a.txt").await.unwrap();
    assert_code(
        s.stat(&once, "a.txt").await,
        Code::PermissionDenied,
        "already used",
    );
    // ... unless issued as reusable.
    let many = fx
        .ask(Ask {
            reusable: true,
            ..Ask::new(Op::Stat, "a.txt")
        })
        .await;
    for _ in 0..3 {
        s.stat(&many, "a.txt").await.unwrap();
    }

    // Another session's grant.
    let other = connect(&fx.server).await;
    let theirs: Grant = other
        .call(GRANT, &Ask::new(Op::Stat, "a.txt"))
        .await
        .unwrap();
    assert_code(
        s.stat(&theirs, "a.txt").await,
        Code::PermissionDenied,
        "another session",
    );
    // It still works for its owner.
    CloudStorageConnector::new(other)
        .stat(&theirs, "a.txt")
        .await
        .unwrap();

    // Wrong operation and wrong path.
    let read = fx.grant(Op::ReadFile, "a.txt").await;
    assert_code(
        s.delete_item(&read, "a.txt").await,
        Code::PermissionDenied,
        "is for read_file, not delete_item",
    );
    let read = fx.grant(Op::ReadFile, "a.txt").await;
    let mut sink = Vec::new();
    assert_code(
        s.download(&read, "b.txt", &mut sink, TransferOptions::new())
            .await,
        Code::PermissionDenied,
        "is for `a.txt`, not `b.txt`",
    );
    // The file survived every refused attempt.
    assert_eq!(fx.get("a.txt").await.unwrap(), b"hello");
    assert!(fx.service.stats().refused >= 8);
}

#[tokio::test]
async fn traversal_is_refused() {
    let fx = start().await;
    let s = &fx.storage;
    let outside = fx.root.parent().unwrap().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"top secret").unwrap();

    let variants = [
        "../outside/secret.txt",
        "a/../../outside/secret.txt",
        "..",
        "/etc/passwd",
        "C:/Windows/win.ini",
        "c:secret",
        "\\\\server\\share\\x",
        "..\\outside",
        "a\0b",
        "a//b",
        ".fluxon-part-0",
    ];
    for bad in variants {
        // The application cannot sign a grant for it...
        let refused: Result<Grant, Status> =
            fx.conn.call(GRANT, &Ask::new(Op::ReadFile, bad)).await;
        assert_code(refused, Code::InvalidArgument, "");
        // ... nor can a valid grant be pointed at it ...
        let grant = fx.grant(Op::Stat, "fine.txt").await;
        assert_code(s.stat(&grant, bad).await, Code::InvalidArgument, "");
        // ... nor is a grant carrying it accepted, even signed with the right key.
        let claims = fluxon_server::grant::GrantClaims {
            op: Op::Stat,
            path: fluxon_server::grant::StoragePath::root(),
            dest_path: fluxon_server::grant::StoragePath::root(),
            session_id: fx.session_id(),
            expires_at: now() + 60,
            max_bytes: None,
            overwrite: false,
            reusable: false,
            nonce: [9; 16],
            upload_id: String::new(),
            resumable: false,
        };
        let mut grant = fluxon_server::grant::sign(fx.server.secret_key(), &claims);
        grant.path = bad.to_owned();
        assert!(s.stat(&grant, bad).await.is_err(), "{bad:?} accepted");
    }

    // Symlinks planted inside the root that point outside it.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, fx.root.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), fx.root.join("link.txt")).unwrap();
        assert_code(
            fx.get("escape/secret.txt").await,
            Code::PermissionDenied,
            "",
        );
        assert_code(fx.get("link.txt").await, Code::PermissionDenied, "");
        let grant = fx.grant(Op::WriteFile, "escape/new.txt").await;
        assert!(s
            .upload(
                &grant,
                "escape/new.txt",
                &b"pwned"[..],
                TransferOptions::new()
            )
            .await
            .is_err());
        assert!(!outside.join("new.txt").exists());
        let grant = fx.grant(Op::ReadTree, "escape").await;
        assert!(s.read_tree(&grant, "escape").await.is_err());
        let grant = fx.grant(Op::CreateDirectory, "escape/d").await;
        assert!(s.create_directory(&grant, "escape/d").await.is_err());
        assert!(!outside.join("d").exists());
        // Listing the root does not follow them out.
        let tree = s
            .read_tree(&fx.grant(Op::ReadTree, "").await, "")
            .await
            .unwrap();
        assert!(tree.iter().all(|e| !e.name.contains("secret")), "{tree:?}");
        // A symlink inside the root is fine.
        std::fs::write(fx.root.join("real.txt"), b"inside").unwrap();
        std::os::unix::fs::symlink("real.txt", fx.root.join("alias.txt")).unwrap();
        assert_eq!(fx.get("alias.txt").await.unwrap(), b"inside");
        // Deleting the escape link removes the link, not what it points to.
        let grant = fx.grant(Op::DeleteItem, "escape").await;
        s.delete_item(&grant, "escape").await.unwrap();
        assert!(outside.join("secret.txt").exists());
    }
    assert_eq!(
        std::fs::read(outside.join("secret.txt")).unwrap(),
        b"top secret"
    );
}

#[tokio::test]
async fn writes_over_the_size_cap_are_refused() {
    let fx = start().await;
    let s = &fx.storage;
    let capped = |path: &str| Ask {
        max_bytes: Some(100_000),
        ..Ask::new(Op::WriteFile, path)
    };
    let body = data(1_000_000, 2);

    // Announced size over the cap: refused before any byte is stored.
    let grant = fx.ask(capped("big.bin")).await;
    assert_code(
        s.upload(
            &grant,
            "big.bin",
            &body[..],
            TransferOptions::new().size(body.len() as u64),
        )
        .await,
        Code::ResourceExhausted,
        "exceed the limit of 100000 bytes",
    );
    // Unannounced: refused while streaming.
    let grant = fx.ask(capped("big.bin")).await;
    assert_code(
        s.upload(&grant, "big.bin", &body[..], TransferOptions::new())
            .await,
        Code::ResourceExhausted,
        "exceed the limit of 100000 bytes",
    );
    eventually("no temporary file left", || fx.files_on_disk("").is_empty()).await;
    // At the cap exactly: fine.
    let grant = fx.ask(capped("ok.bin")).await;
    s.upload(&grant, "ok.bin", &body[..100_000], TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(fx.files_on_disk(""), vec!["ok.bin".to_owned()]);
}

/// A source that yields `prefix`, then never ends (a client stuck or about to be killed).
struct Stall {
    prefix: Vec<u8>,
    pos: usize,
}

impl AsyncRead for Stall {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let pos = self.pos;
            buf.put_slice(&self.prefix[pos..pos + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

/// Uploads `body` with the resumable grant `first` through a source that stalls after its
/// first MiB, waits until the server holds that MiB in the upload's part file, then gives up
/// (drops the upload).
async fn upload_first_mib_then_stall(fx: &Fixture, first: Grant, path: &'static str, body: &[u8]) {
    let storage = fx.storage.clone();
    let prefix = body[..1 << 20].to_vec();
    let total = body.len() as u64;
    let part = format!(".fluxon-part-{}", first.upload_id);
    let attempt = tokio::spawn(async move {
        storage
            .upload(
                &first,
                path,
                Stall { prefix, pos: 0 },
                TransferOptions::new().size(total),
            )
            .await
    });
    eventually("the server holds the first MiB", || {
        partial_files(&fx.root).contains(&(part.clone(), 1 << 20))
    })
    .await;
    attempt.abort();
}

fn partial_files(dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".fluxon-"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect()
}

#[tokio::test]
async fn client_killed_mid_upload_leaves_old_version_and_no_partial_file() {
    let fx = start().await;
    fx.put("doc.txt", b"version 1").await.unwrap();

    // A second client starts overwriting, gets 1 MiB through, and dies.
    let victim = connect(&fx.server).await;
    let grant: Grant = victim
        .call(
            GRANT,
            &Ask {
                overwrite: true,
                ..Ask::new(Op::WriteFile, "doc.txt")
            },
        )
        .await
        .unwrap();
    let storage = CloudStorageConnector::new(victim.clone());
    let upload = tokio::spawn(async move {
        let source = Stall {
            prefix: data(1 << 20, 3),
            pos: 0,
        };
        storage
            .upload(
                &grant,
                "doc.txt",
                source,
                TransferOptions::new().size(4 << 20),
            )
            .await
    });
    eventually("the server receives the first MiB", || {
        partial_files(&fx.root)
            .iter()
            .any(|(_, len)| *len == 1 << 20)
    })
    .await;
    // Killed: the connection goes away with the upload in flight.
    upload.abort();
    victim.close();
    drop(victim);

    eventually("the temporary file is removed", || {
        partial_files(&fx.root).is_empty()
    })
    .await;
    assert_eq!(fx.files_on_disk(""), vec!["doc.txt".to_owned()]);
    assert_eq!(fx.get("doc.txt").await.unwrap(), b"version 1");
}

#[tokio::test]
async fn concurrent_uploads_to_different_paths() {
    let fx = Arc::new(start().await);
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let fx = Arc::clone(&fx);
        tasks.push(tokio::spawn(async move {
            let body = data(512 * 1024 + usize::from(i), i);
            let path = format!("file-{i}.bin");
            fx.put(&path, &body).await.unwrap();
            (path, body)
        }));
    }
    for task in tasks {
        let (path, body) = task.await.unwrap();
        assert_eq!(fx.get(&path).await.unwrap(), body, "{path}");
    }
    assert_eq!(fx.files_on_disk("").len(), 8);
}

#[tokio::test]
async fn readers_see_old_or_new_content_never_a_mix() {
    let fx = Arc::new(start().await);
    const LEN: usize = 2 << 20;
    let old = vec![b'a'; LEN];
    let new = vec![b'b'; LEN];
    fx.put("hot.bin", &old).await.unwrap();

    let writer = {
        let fx = Arc::clone(&fx);
        let old = old.clone();
        tokio::spawn(async move {
            for round in 0..6 {
                let body = if round % 2 == 0 { &new } else { &old };
                fx.put("hot.bin", body).await.unwrap();
            }
        })
    };
    let grant = fx
        .ask(Ask {
            reusable: true,
            ..Ask::new(Op::ReadFile, "hot.bin")
        })
        .await;
    let mut reads = 0;
    let mut kinds = std::collections::HashSet::new();
    while !writer.is_finished() || reads < 6 {
        let mut out = Vec::new();
        fx.storage
            .download(&grant, "hot.bin", &mut out, TransferOptions::new())
            .await
            .unwrap();
        assert_eq!(out.len(), LEN);
        assert!(
            out.iter().all(|b| *b == out[0]),
            "read {reads} mixed old and new content"
        );
        kinds.insert(out[0]);
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads >= 6);
    // The last write left the old content (round 5 writes `old`).
    assert_eq!(fx.get("hot.bin").await.unwrap(), old);
}

#[tokio::test]
async fn interrupted_upload_resumes_with_a_new_grant() {
    let fx = start().await;
    let body = data(3 << 20, 5);
    let first = fx
        .ask(Ask {
            resumable: true,
            ..Ask::new(Op::WriteFile, "big.bin")
        })
        .await;
    let upload_id = first.upload_id.clone();
    assert_eq!(upload_id.len(), 32);

    // First attempt: 1 MiB, then the link stalls and the client gives up (drops the upload).
    upload_first_mib_then_stall(&fx, first, "big.bin", &body).await;
    let total = body.len() as u64;
    assert!(!fx.root.join("big.bin").exists());

    // A resume needs a new grant (the first was single-use) naming the same upload.
    let second = fx
        .ask(Ask {
            resumable: true,
            upload_id: upload_id.clone(),
            ..Ask::new(Op::WriteFile, "big.bin")
        })
        .await;
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = Arc::clone(&seen);
    let receipt = fx
        .storage
        .upload(
            &second,
            "big.bin",
            &body[..],
            TransferOptions::new()
                .size(total)
                .resume(true)
                .progress(move |done, _| {
                    seen2.fetch_max(done, Ordering::Relaxed);
                }),
        )
        .await
        .unwrap();
    assert_eq!(receipt.resumed_from, 1 << 20);
    assert_eq!(receipt.checksum, *blake3::hash(&body).as_bytes());
    assert_eq!(seen.load(Ordering::Relaxed), total);
    assert_eq!(fx.get("big.bin").await.unwrap(), body);
    assert!(partial_files(&fx.root).is_empty());
}

#[tokio::test]
async fn storage_on_its_own_endpoint_shares_the_key_and_the_state() {
    let fx = start().await;
    // A second endpoint on another port, with its own service over the same root, sharing the
    // main server's key and state store (it would run the same way in another process, opening
    // the same state database).
    let mut config = server_config(fx.root.parent().unwrap());
    config.listen = fluxon_e2e::loopback();
    let key = config.load_secret_key().unwrap();
    let service =
        StorageService::new(StorageConfig::new(&fx.root), key, fx.server.state().clone()).unwrap();
    let endpoint = StorageServer::bind(&config, service).await.unwrap();
    assert_ne!(endpoint.local_addr(), fx.server.local_addr());

    let token = fx.conn.session().token;
    let remote = CloudStorageConnector::connect(
        endpoint.local_addr(),
        client_config(&fx.server).resume_token(token),
    )
    .await
    .unwrap();
    assert_eq!(remote.connection().session().id, fx.conn.session().id);
    let body = data(1 << 20, 6);
    let grant = fx.grant(Op::WriteFile, "remote.bin").await;
    remote
        .upload(&grant, "remote.bin", &body[..], TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(fx.get("remote.bin").await.unwrap(), body);

    // Without a token, or with a forged one, the endpoint refuses the connection.
    let refused =
        CloudStorageConnector::connect(endpoint.local_addr(), client_config(&fx.server)).await;
    assert!(refused.is_err());
    let mut forged = fx.conn.session().token;
    forged[5] ^= 1;
    let refused = Connection::connect(
        endpoint.local_addr(),
        client_config(&fx.server).resume_token(forged),
    )
    .await;
    assert!(refused.is_err());

    // A session ended on the main server is gone for the endpoint too (they share the state
    // store), although its token's signature and expiry are still good.
    let token = fx.conn.session().token;
    let id: SessionId = fx.conn.session().id.parse().unwrap();
    fx.server.sessions().get(id).unwrap().end().await.unwrap();
    let refused = Connection::connect(
        endpoint.local_addr(),
        client_config(&fx.server).resume_token(token),
    )
    .await
    .expect_err("an ended session's token is refused");
    assert!(
        refused.to_string().contains("session not found"),
        "{refused}"
    );
    endpoint.shutdown(Duration::from_secs(1)).await;
}

/// The file paths of the SDK (`upload_file` reads and hashes on a blocking thread,
/// `download_to_file` writes on one) with files of many blocks (past the service's and the
/// client's 8 MiB writeback hints), a resumed `upload_file`, and a failed `download_to_file`
/// that leaves nothing behind.
#[tokio::test]
async fn local_files_round_trip_through_upload_file_and_download_to_file() {
    let fx = start().await;
    let local = tempfile::tempdir().unwrap();
    let body = data((20 << 20) + 12_345, 9);
    let src = local.path().join("src.bin");
    std::fs::write(&src, &body).unwrap();

    let grant = fx
        .ask(Ask {
            overwrite: true,
            ..Ask::new(Op::WriteFile, "big.bin")
        })
        .await;
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = Arc::clone(&seen);
    let receipt = fx
        .storage
        .upload_file(
            &grant,
            "big.bin",
            &src,
            TransferOptions::new().progress(move |done, total| {
                assert_eq!(total, (20 << 20) + 12_345);
                seen2.fetch_max(done, Ordering::Relaxed);
            }),
        )
        .await
        .unwrap();
    assert_eq!(receipt.size, body.len() as u64);
    assert_eq!(receipt.checksum, *blake3::hash(&body).as_bytes());
    assert_eq!(seen.load(Ordering::Relaxed), body.len() as u64);
    assert_eq!(std::fs::read(fx.root.join("big.bin")).unwrap(), body);

    let dest = local.path().join("dest.bin");
    let grant = fx.grant(Op::ReadFile, "big.bin").await;
    let got = fx
        .storage
        .download_to_file(&grant, "big.bin", &dest, TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(got.size, body.len() as u64);
    assert_eq!(got.checksum, receipt.checksum);
    assert_eq!(std::fs::read(&dest).unwrap(), body);

    // A missing file: an error, and neither the destination nor its temporary file.
    let grant = fx.grant(Op::ReadFile, "missing.bin").await;
    let missing = local.path().join("missing.bin");
    assert_code(
        fx.storage
            .download_to_file(&grant, "missing.bin", &missing, TransferOptions::new())
            .await,
        Code::NotFound,
        "missing.bin",
    );
    let mut names: Vec<String> = std::fs::read_dir(local.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dest.bin", "src.bin"]);

    // A resumable upload cut after 1 MiB, finished by `upload_file` from the server's offset.
    let first = fx
        .ask(Ask {
            resumable: true,
            ..Ask::new(Op::WriteFile, "resumed.bin")
        })
        .await;
    let upload_id = first.upload_id.clone();
    upload_first_mib_then_stall(&fx, first, "resumed.bin", &body).await;
    let second = fx
        .ask(Ask {
            resumable: true,
            upload_id,
            ..Ask::new(Op::WriteFile, "resumed.bin")
        })
        .await;
    let receipt = fx
        .storage
        .upload_file(
            &second,
            "resumed.bin",
            &src,
            TransferOptions::new().resume(true),
        )
        .await
        .unwrap();
    assert_eq!(receipt.resumed_from, 1 << 20);
    assert_eq!(receipt.checksum, *blake3::hash(&body).as_bytes());
    assert_eq!(fx.get("resumed.bin").await.unwrap(), body);
}

/// A progress callback that raises a `StopSignal` stops the transfer before its next block,
/// even when the whole file fits the flow-control window: the upload commits nothing and the
/// download leaves no file.
#[tokio::test]
async fn a_stop_signal_raised_from_the_progress_callback_stops_the_transfer() {
    let fx = start().await;
    let local = tempfile::tempdir().unwrap();
    let body = data(700 * 1024, 4);
    let src = local.path().join("src.bin");
    std::fs::write(&src, &body).unwrap();

    let stop = StopSignal::new();
    let raise = stop.clone();
    let options = TransferOptions::new()
        .stop_signal(stop)
        .progress(move |_, _| raise.stop());
    let grant = fx.grant(Op::WriteFile, "half.bin").await;
    assert_code(
        fx.storage
            .upload_file(&grant, "half.bin", &src, options)
            .await,
        Code::Cancelled,
        "stopped",
    );
    assert_code(
        fx.storage
            .stat(&fx.grant(Op::Stat, "half.bin").await, "half.bin")
            .await,
        Code::NotFound,
        "",
    );
    assert!(!fx.root.join("half.bin").exists());
    eventually("the stopped upload's temporary file to go", || {
        partial_files(&fx.root).is_empty()
    })
    .await;

    fx.storage
        .upload_file(
            &fx.grant(Op::WriteFile, "whole.bin").await,
            "whole.bin",
            &src,
            TransferOptions::new(),
        )
        .await
        .unwrap();
    let stop = StopSignal::new();
    let raise = stop.clone();
    let options = TransferOptions::new()
        .stop_signal(stop)
        .progress(move |_, _| raise.stop());
    let dest = local.path().join("dest.bin");
    assert_code(
        fx.storage
            .download_to_file(
                &fx.grant(Op::ReadFile, "whole.bin").await,
                "whole.bin",
                &dest,
                options,
            )
            .await,
        Code::Cancelled,
        "stopped",
    );
    let left: Vec<_> = std::fs::read_dir(local.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("src.bin")],
        "no partial download"
    );
}

/// What the test application's hook saw: the event, and whether the change was on disk then.
#[derive(Debug, Clone)]
struct Heard {
    event: StorageEvent,
    on_disk: bool,
}

/// A hook recording every event and refusing paths that start with `refuse`.
fn recording_hook(root: PathBuf, heard: Arc<Mutex<Vec<Heard>>>) -> impl StorageHooks {
    move |event: StorageEvent| {
        let (root, heard) = (root.clone(), Arc::clone(&heard));
        async move {
            let target = match event.op {
                Op::Move => &event.dest_path,
                _ => &event.path,
            };
            let on_disk = root.join(target.as_str()).exists();
            let refuse = event.path.as_str().starts_with("refuse")
                || event.dest_path.as_str().starts_with("refuse");
            heard.lock().unwrap().push(Heard { event, on_disk });
            if refuse {
                Err(Status::failed_precondition("the application says no"))
            } else {
                Ok(())
            }
        }
    }
}

#[tokio::test]
async fn hooks_hear_of_each_durable_change_and_a_refusal_undoes_it() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let fx = {
        let heard = Arc::clone(&heard);
        start_with(move |config| {
            let root = config.root.clone();
            config.hooks(recording_hook(root, heard))
        })
        .await
    };
    let s = &fx.storage;
    let last = || heard.lock().unwrap().last().cloned().expect("an event");

    // A write: the hook hears of it once the file is in place, with its size and checksum,
    // the grant's nonce and the session.
    let body = data(300_000, 3);
    let grant = fx.grant(Op::WriteFile, "a.bin").await;
    s.upload(&grant, "a.bin", &body[..], TransferOptions::new())
        .await
        .expect("stored");
    let h = last();
    assert_eq!(h.event.op, Op::WriteFile);
    assert_eq!(h.event.path.as_str(), "a.bin");
    assert_eq!(h.event.size, body.len() as u64);
    assert_eq!(h.event.checksum, blake3::hash(&body).as_bytes().to_vec());
    assert_eq!(h.event.grant_nonce, grant.nonce);
    assert_eq!(h.event.session_id, fx.session_id());
    assert!(h.on_disk, "durable before the hook");

    // A new file the application refuses: the client gets its status; nothing stays.
    let grant = fx.grant(Op::WriteFile, "refuse.bin").await;
    assert_code(
        s.upload(&grant, "refuse.bin", &body[..], TransferOptions::new())
            .await,
        Code::FailedPrecondition,
        "the application says no",
    );
    assert!(last().on_disk, "the hook ran after the file was in place");
    assert_eq!(fx.files_on_disk(""), ["a.bin"], "no file, no temporary");

    // An overwrite the application refuses: the previous version comes back.
    fx.put("refuse-keep.bin", b"first version")
        .await
        .expect_err("the first write of a refused path is refused too");
    assert_eq!(fx.files_on_disk(""), ["a.bin"]);
    let grant = fx
        .ask(Ask {
            overwrite: true,
            ..Ask::new(Op::WriteFile, "a.bin")
        })
        .await;
    s.upload(&grant, "a.bin", &b"second"[..], TransferOptions::new())
        .await
        .expect("an accepted overwrite");
    assert_eq!(fx.get("a.bin").await.expect("read"), b"second");
    let moved = fx
        .ask(Ask {
            dest: "refuse-moved.bin".into(),
            ..Ask::new(Op::Move, "a.bin")
        })
        .await;
    assert_code(
        s.move_item(&moved, "a.bin", "refuse-moved.bin").await,
        Code::FailedPrecondition,
        "says no",
    );
    assert!(last().on_disk, "the move was made before the hook");
    assert_eq!(fx.files_on_disk(""), ["a.bin"], "moved back");
    assert_eq!(fx.get("a.bin").await.expect("read"), b"second");

    // Directories: a refused one is removed; an accepted one and its delete are heard.
    assert_code(
        s.create_directory(
            &fx.grant(Op::CreateDirectory, "refuse-dir").await,
            "refuse-dir",
        )
        .await,
        Code::FailedPrecondition,
        "says no",
    );
    assert!(last().on_disk);
    assert_eq!(fx.files_on_disk(""), ["a.bin"]);
    s.create_directory(&fx.grant(Op::CreateDirectory, "d").await, "d")
        .await
        .expect("created");
    assert_eq!(last().event.op, Op::CreateDirectory);
    s.delete_item(&fx.grant(Op::DeleteItem, "d").await, "d")
        .await
        .expect("deleted");
    let h = last();
    assert_eq!((h.event.op, h.event.path.as_str()), (Op::DeleteItem, "d"));
    assert!(!h.on_disk, "gone before the hook");

    // Reads change nothing and are not heard.
    let before = heard.lock().unwrap().len();
    fx.get("a.bin").await.expect("read");
    s.stat(&fx.grant(Op::Stat, "a.bin").await, "a.bin")
        .await
        .expect("stat");
    assert_eq!(heard.lock().unwrap().len(), before);
}

/// An overwrite refused by the application puts the previous bytes back.
#[tokio::test]
async fn a_refused_overwrite_keeps_the_previous_version() {
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fx = {
        let refuse = Arc::clone(&refuse);
        start_with(move |config| {
            config.hooks(move |_event: StorageEvent| {
                let no = refuse.load(Ordering::SeqCst);
                async move {
                    if no {
                        Err(Status::resource_exhausted("over quota"))
                    } else {
                        Ok(())
                    }
                }
            })
        })
        .await
    };
    fx.put("f.bin", b"old bytes").await.expect("first version");
    refuse.store(true, Ordering::SeqCst);
    assert_code(
        fx.put("f.bin", &data(500_000, 9)).await,
        Code::ResourceExhausted,
        "over quota",
    );
    refuse.store(false, Ordering::SeqCst);
    assert_eq!(fx.get("f.bin").await.expect("read"), b"old bytes");
    assert_eq!(
        fx.files_on_disk(""),
        ["f.bin"],
        "the kept version is not left aside"
    );
}

/// A hook with both methods, recording what it hears.
#[derive(Clone, Default)]
struct Ledger {
    completed: Arc<Mutex<Vec<StorageEvent>>>,
    abandoned: Arc<Mutex<Vec<StorageEvent>>>,
}

impl StorageHooks for Ledger {
    fn completed(&self, event: StorageEvent) -> fluxon_server::BoxFuture<Result<(), Status>> {
        self.completed.lock().unwrap().push(event);
        Box::pin(async { Ok(()) })
    }

    fn abandoned(&self, event: StorageEvent) -> fluxon_server::BoxFuture<()> {
        self.abandoned.lock().unwrap().push(event);
        Box::pin(async {})
    }
}

#[tokio::test]
async fn a_write_that_stores_nothing_is_reported_abandoned() {
    let ledger = Ledger::default();
    let fx = {
        let ledger = ledger.clone();
        start_with(move |config| config.hooks(ledger)).await
    };
    let grant = fx
        .ask(Ask {
            max_bytes: Some(1000),
            ..Ask::new(Op::WriteFile, "capped.bin")
        })
        .await;
    assert_code(
        fx.storage
            .upload(
                &grant,
                "capped.bin",
                &data(5000, 1)[..],
                TransferOptions::new(),
            )
            .await,
        Code::ResourceExhausted,
        "exceed",
    );
    let abandoned = ledger.abandoned.lock().unwrap().clone();
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    assert_eq!(abandoned[0].op, Op::WriteFile);
    assert_eq!(abandoned[0].path.as_str(), "capped.bin");
    assert_eq!(abandoned[0].grant_nonce, grant.nonce);
    assert!(ledger.completed.lock().unwrap().is_empty());

    // A stored write is completed, not abandoned.
    fx.put("ok.bin", b"fine").await.expect("stored");
    assert_eq!(ledger.completed.lock().unwrap().len(), 1);
    assert_eq!(ledger.abandoned.lock().unwrap().len(), 1);
}

/// The same service with its tree in an S3-compatible object store (`FLUXON_TEST_S3`; skipped
/// with one line without it): what the local tests check on disk, checked through the store's
/// own client.
mod object_store_backend {
    use futures_util::StreamExt;
    use object_store::aws::AmazonS3;
    use object_store::path::Path as Key;
    use object_store::{ObjectStore, ObjectStoreExt};

    use super::*;
    use fluxon_storage::ObjectStoreConfig;

    /// A server storing under a fresh prefix of the test bucket, and the store's own client.
    async fn start_s3(suite: &str) -> Option<(Fixture, Store)> {
        start_s3_with(suite, |config| config).await
    }

    async fn start_s3_with(
        suite: &str,
        configure: impl FnOnce(StorageConfig) -> StorageConfig,
    ) -> Option<(Fixture, Store)> {
        let config = fluxon_storage::testing::s3_test_store(suite)?;
        let store = Store::new(&config);
        let fx = start_with(move |_| configure(StorageConfig::object_store(config))).await;
        Some((fx, store))
    }

    /// The object store as other programs see it.
    struct Store {
        client: Arc<AmazonS3>,
        prefix: Key,
    }

    impl Store {
        fn new(config: &ObjectStoreConfig) -> Self {
            let (client, prefix) = fluxon_storage::testing::store_client(config);
            Self { client, prefix }
        }

        /// Every key under the prefix (relative to it), sorted.
        async fn keys(&self) -> Vec<String> {
            let mut keys: Vec<String> = self
                .client
                .list(Some(&self.prefix))
                .map(|meta| {
                    let key = meta.unwrap().location.to_string();
                    key[self.prefix.as_ref().len() + 1..].to_owned()
                })
                .collect()
                .await;
            keys.sort();
            keys
        }

        async fn exists(&self, key: &str) -> bool {
            self.client
                .head(&Key::from(format!("{}/{key}", self.prefix)))
                .await
                .is_ok()
        }

        /// The recorded multipart uploads: (record name, bytes stored in parts).
        async fn uploads(&self) -> Vec<(String, u64)> {
            let mut out = Vec::new();
            for key in self.keys().await {
                let Some(name) = key.strip_prefix(".fluxon-uploads/") else {
                    continue;
                };
                let path = Key::from(format!("{}/{key}", self.prefix));
                let Ok(got) = self.client.get(&path).await else {
                    continue; // removed meanwhile
                };
                let record: serde_json::Value =
                    serde_json::from_slice(&got.bytes().await.unwrap()).unwrap();
                out.push((name.to_owned(), record["offset"].as_u64().unwrap()));
            }
            out
        }
    }

    /// Polls the store until `f` holds, for up to 20 s.
    async fn eventually_in<F: std::future::Future<Output = bool>>(
        what: &str,
        mut f: impl FnMut() -> F,
    ) {
        for _ in 0..400 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    /// Two parts are in flight at once and either may be stored first: a file of many parts
    /// comes back whole, whatever order they finished in.
    #[tokio::test]
    async fn a_file_of_many_parts_comes_back_whole() {
        let Some((fx, store)) = start_s3("many-parts").await else {
            return;
        };
        let body = data(6 * 8 * 1024 * 1024 + 11, 9);
        let grant = fx.grant(Op::WriteFile, "many.bin").await;
        let receipt = fx
            .storage
            .upload(
                &grant,
                "many.bin",
                &body[..],
                TransferOptions::new().size(body.len() as u64),
            )
            .await
            .unwrap();
        assert_eq!(receipt.checksum, *blake3::hash(&body).as_bytes());
        let mut out = Vec::new();
        fx.storage
            .download(
                &fx.grant(Op::ReadFile, "many.bin").await,
                "many.bin",
                &mut out,
                TransferOptions::new(),
            )
            .await
            .unwrap();
        assert!(out == body, "the object holds the parts in order");
        assert!(store.uploads().await.is_empty(), "no upload left recorded");
    }

    #[tokio::test]
    async fn every_operation_end_to_end_on_s3() {
        let Some((fx, store)) = start_s3("every-op").await else {
            return;
        };
        let s = &fx.storage;
        s.create_directory(&fx.grant(Op::CreateDirectory, "docs").await, "docs")
            .await
            .unwrap();
        assert_code(
            s.create_directory(&fx.grant(Op::CreateDirectory, "docs").await, "docs")
                .await,
            Code::AlreadyExists,
            "already exists",
        );
        assert_code(
            s.create_directory(&fx.grant(Op::CreateDirectory, "no/such").await, "no/such")
                .await,
            Code::NotFound,
            "does not exist",
        );

        // A small file (one PUT) and a large one (a multipart upload of three parts).
        let small = data(3 * 1024 * 1024 + 17, 1);
        let large = data(20 * 1024 * 1024 + 5, 2);
        for (path, body) in [("docs/a.bin", &small), ("docs/large.bin", &large)] {
            let grant = fx.grant(Op::WriteFile, path).await;
            let receipt = s
                .upload(
                    &grant,
                    path,
                    &body[..],
                    TransferOptions::new().size(body.len() as u64),
                )
                .await
                .unwrap();
            assert_eq!(receipt.size, body.len() as u64);
            assert_eq!(receipt.checksum, *blake3::hash(body).as_bytes());
            let grant = fx.grant(Op::ReadFile, path).await;
            let mut out = Vec::new();
            let got = s
                .download(&grant, path, &mut out, TransferOptions::new())
                .await
                .unwrap();
            assert!(out == *body, "{path} reads back as stored");
            assert_eq!(got.checksum, receipt.checksum);
        }
        assert!(store.exists("docs/large.bin").await);
        assert!(store.uploads().await.is_empty(), "no upload left recorded");

        // Without overwrite, an existing object is refused (a small and a multipart upload).
        for body in [&b"x"[..], &large[..]] {
            let again = fx.grant(Op::WriteFile, "docs/a.bin").await;
            assert_code(
                s.upload(&again, "docs/a.bin", body, TransferOptions::new())
                    .await,
                Code::AlreadyExists,
                "already exists",
            );
        }
        assert_eq!(fx.get("docs/a.bin").await.unwrap(), small);

        let entry = s
            .stat(&fx.grant(Op::Stat, "docs/a.bin").await, "docs/a.bin")
            .await
            .unwrap();
        assert_eq!(
            (entry.name.as_str(), entry.kind, entry.size),
            ("a.bin", EntryKind::File as i32, small.len() as u64)
        );
        assert!(entry.modified_ms > 0);
        let entry = s
            .stat(&fx.grant(Op::Stat, "docs").await, "docs")
            .await
            .unwrap();
        assert_eq!(entry.kind, EntryKind::Directory as i32);

        s.create_directory(
            &fx.grant(Op::CreateDirectory, "docs/inner").await,
            "docs/inner",
        )
        .await
        .unwrap();
        let tree = s
            .read_tree(&fx.grant(Op::ReadTree, "").await, "")
            .await
            .unwrap();
        let names: Vec<(&str, i32)> = tree.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            vec![
                ("docs", EntryKind::Directory as i32),
                ("docs/a.bin", EntryKind::File as i32),
                ("docs/inner", EntryKind::Directory as i32),
                ("docs/large.bin", EntryKind::File as i32),
            ]
        );

        // Move a file, then a directory.
        let grant = fx
            .ask(Ask {
                dest: "docs/inner/b.bin".into(),
                ..Ask::new(Op::Move, "docs/a.bin")
            })
            .await;
        s.move_item(&grant, "docs/a.bin", "docs/inner/b.bin")
            .await
            .unwrap();
        assert_eq!(fx.get("docs/inner/b.bin").await.unwrap(), small);
        assert_code(fx.get("docs/a.bin").await, Code::NotFound, "does not exist");
        let grant = fx
            .ask(Ask {
                dest: "moved".into(),
                ..Ask::new(Op::Move, "docs")
            })
            .await;
        s.move_item(&grant, "docs", "moved").await.unwrap();
        assert_eq!(fx.get("moved/inner/b.bin").await.unwrap(), small);
        assert!(!store.exists("docs/large.bin").await);

        // Delete a file, then a whole tree.
        s.delete_item(
            &fx.grant(Op::DeleteItem, "moved/large.bin").await,
            "moved/large.bin",
        )
        .await
        .unwrap();
        s.delete_item(&fx.grant(Op::DeleteItem, "moved").await, "moved")
            .await
            .unwrap();
        let tree = s
            .read_tree(&fx.grant(Op::ReadTree, "").await, "")
            .await
            .unwrap();
        assert!(tree.is_empty(), "{tree:?}");
        assert!(store.keys().await.is_empty(), "{:?}", store.keys().await);
        fx.server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn an_interrupted_upload_is_never_visible_and_leaves_no_parts_on_s3() {
        let Some((fx, store)) = start_s3("interrupted").await else {
            return;
        };
        fx.put("doc.bin", b"version 1").await.unwrap();

        // A second client overwrites with 20 MiB, stalls after 9 MiB (one part stored), dies.
        let victim = connect(&fx.server).await;
        let grant: Grant = victim
            .call(
                GRANT,
                &Ask {
                    overwrite: true,
                    ..Ask::new(Op::WriteFile, "doc.bin")
                },
            )
            .await
            .unwrap();
        let storage = CloudStorageConnector::new(victim.clone());
        let upload = tokio::spawn(async move {
            let source = Stall {
                prefix: data(9 << 20, 3),
                pos: 0,
            };
            storage
                .upload(
                    &grant,
                    "doc.bin",
                    source,
                    TransferOptions::new().size(20 << 20),
                )
                .await
        });
        eventually_in("the multipart upload begins", || async {
            !store.uploads().await.is_empty()
        })
        .await;
        // Mid-upload: readers still see the old version, whole.
        assert_eq!(fx.get("doc.bin").await.unwrap(), b"version 1");
        upload.abort();
        victim.close();
        drop(victim);

        eventually_in("the multipart upload is aborted", || async {
            store.uploads().await.is_empty()
        })
        .await;
        assert_eq!(store.keys().await, vec!["doc.bin".to_owned()]);
        assert_eq!(fx.get("doc.bin").await.unwrap(), b"version 1");
    }

    #[tokio::test]
    async fn an_interrupted_upload_resumes_after_its_stored_parts_on_s3() {
        let Some((fx, store)) = start_s3("resume").await else {
            return;
        };
        let body = data(20 << 20, 5);
        let first = fx
            .ask(Ask {
                resumable: true,
                ..Ask::new(Op::WriteFile, "big.bin")
            })
            .await;
        let upload_id = first.upload_id.clone();
        let storage = fx.storage.clone();
        let prefix = body[..9 << 20].to_vec();
        let total = body.len() as u64;
        let attempt = tokio::spawn(async move {
            storage
                .upload(
                    &first,
                    "big.bin",
                    Stall { prefix, pos: 0 },
                    TransferOptions::new().size(total),
                )
                .await
        });
        eventually_in("the first part is recorded", || async {
            store.uploads().await.iter().any(|(_, offset)| *offset > 0)
        })
        .await;
        attempt.abort();
        let stored = store.uploads().await[0].1;
        assert!(
            !store.exists("big.bin").await,
            "nothing under the final key"
        );

        let second = fx
            .ask(Ask {
                resumable: true,
                upload_id,
                ..Ask::new(Op::WriteFile, "big.bin")
            })
            .await;
        let receipt = fx
            .storage
            .upload(
                &second,
                "big.bin",
                &body[..],
                TransferOptions::new().size(total).resume(true),
            )
            .await
            .unwrap();
        assert_eq!(receipt.resumed_from, stored);
        assert_eq!(receipt.checksum, *blake3::hash(&body).as_bytes());
        assert!(fx.get("big.bin").await.unwrap() == body);
        assert!(store.uploads().await.is_empty());
    }

    #[tokio::test]
    async fn size_caps_and_single_use_grants_hold_on_s3() {
        let Some((fx, store)) = start_s3("limits").await else {
            return;
        };
        let s = &fx.storage;
        // Refused while streaming, after parts were stored: they are aborted.
        let body = data(12 << 20, 2);
        let grant = fx
            .ask(Ask {
                max_bytes: Some(10 << 20),
                ..Ask::new(Op::WriteFile, "big.bin")
            })
            .await;
        assert_code(
            s.upload(&grant, "big.bin", &body[..], TransferOptions::new())
                .await,
            Code::ResourceExhausted,
            "exceed the limit",
        );
        eventually_in("no upload left", || async {
            store.uploads().await.is_empty()
        })
        .await;
        assert!(store.keys().await.is_empty());

        // A used grant stays used.
        let grant = fx.grant(Op::WriteFile, "once.bin").await;
        s.upload(&grant, "once.bin", &b"one"[..], TransferOptions::new())
            .await
            .unwrap();
        let grant_again = grant.clone();
        assert_code(
            s.upload(
                &grant_again,
                "once.bin",
                &b"two"[..],
                TransferOptions::new(),
            )
            .await,
            Code::PermissionDenied,
            "already used",
        );
        assert_eq!(fx.get("once.bin").await.unwrap(), b"one");
    }

    #[tokio::test]
    async fn a_refusing_hook_undoes_each_change_on_s3() {
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hook_refuses = Arc::clone(&refuse);
        let Some((fx, store)) = start_s3_with("hooks", move |config| {
            config.hooks(move |_event: StorageEvent| {
                let no = hook_refuses.load(Ordering::SeqCst);
                async move {
                    if no {
                        Err(Status::resource_exhausted("over quota"))
                    } else {
                        Ok(())
                    }
                }
            })
        })
        .await
        else {
            return;
        };
        fx.put("f.bin", b"old bytes").await.expect("first version");
        refuse.store(true, Ordering::SeqCst);
        // Refused overwrites, by one PUT and by a multipart upload: the old version stays.
        for body in [data(500_000, 9), data(17 << 20, 8)] {
            assert_code(
                fx.put("f.bin", &body).await,
                Code::ResourceExhausted,
                "over quota",
            );
        }
        // A refused new file and a refused directory are removed.
        assert_code(
            fx.put("new.bin", b"new").await,
            Code::ResourceExhausted,
            "over quota",
        );
        assert_code(
            fx.storage
                .create_directory(&fx.grant(Op::CreateDirectory, "dir").await, "dir")
                .await,
            Code::ResourceExhausted,
            "over quota",
        );
        refuse.store(false, Ordering::SeqCst);
        assert_eq!(fx.get("f.bin").await.expect("read"), b"old bytes");
        assert_eq!(
            store.keys().await,
            ["f.bin"],
            "nothing new, nothing left aside, no upload recorded"
        );
    }
}
