//! Faults: a lossy network (an in-test UDP relay that drops, delays and reorders datagrams),
//! clients that vanish mid-call, a server killed with SIGKILL mid-write and restarted, and
//! storage errors under the cloud root.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::{child_client, spawn_server};
use common::{Baseline, Rng, SERIAL};
use fluxon_client::storage::{Grant, Op};
use fluxon_client::{CloudStorageConnector, Code, Connection, TransferOptions};
use fluxon_e2e::msg::{Echo, Login, Whoami};
use fluxon_e2e::notes::{self, AddNote, GrantAsk, Id, Note};
use fluxon_e2e::{app_router, client_config, connect, routes, server_config};
use fluxon_storage::StorageConfig;
use tokio::net::UdpSocket;

/// Deterministic test bytes.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

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

/// What the relay did.
#[derive(Default, Debug)]
struct RelayStats {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
}

/// A UDP relay between one client and `server` on loopback that drops `drop_pct`% of datagrams
/// and delays `delay_pct`% by 1-40 ms (which reorders them), in both directions, with a fixed
/// seed. Returns the address clients connect to.
async fn lossy_relay(
    server: SocketAddr,
    drop_pct: u64,
    delay_pct: u64,
    stats: Arc<RelayStats>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut rng = Rng::new(0x005e_edf1_u64);
        let mut client: Option<SocketAddr> = None;
        let mut a = vec![0u8; 65_536];
        let mut b = vec![0u8; 65_536];
        loop {
            // (datagram, towards the server?)
            let (packet, upstream) = tokio::select! {
                r = front.recv_from(&mut a) => {
                    let Ok((n, from)) = r else { return };
                    client = Some(from);
                    (a[..n].to_vec(), true)
                }
                r = back.recv(&mut b) => {
                    let Ok(n) = r else { return };
                    (b[..n].to_vec(), false)
                }
            };
            if rng.chance(drop_pct) {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let delay = rng
                .chance(delay_pct)
                .then(|| Duration::from_millis(1 + rng.below(40)));
            let (front, back) = (Arc::clone(&front), Arc::clone(&back));
            let stats = Arc::clone(&stats);
            let send = async move {
                if let Some(d) = delay {
                    stats.delayed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(d).await;
                }
                stats.forwarded.fetch_add(1, Ordering::Relaxed);
                if upstream {
                    let _ = back.send(&packet).await;
                } else if let Some(to) = client {
                    let _ = front.send_to(&packet, to).await;
                }
            };
            if delay.is_some() {
                tokio::spawn(send);
            } else {
                send.await;
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn calls_and_a_large_upload_survive_a_lossy_reordering_network() {
    let _serial = SERIAL.lock().await;
    fluxon_e2e::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = notes::open(&dir.path().join("notes.db"), 4).await.unwrap();
    let (server, _storage) = fluxon_storage::bind_server(
        server_config(&dir.path().join("server")),
        app_router().merge(notes::router(db)),
        StorageConfig::new(dir.path().join("cloud")),
    )
    .await
    .unwrap();
    let stats = Arc::new(RelayStats::default());
    let (relay, relay_task) = lossy_relay(server.local_addr(), 3, 5, Arc::clone(&stats)).await;
    let config = client_config(&server).connect_timeout(Duration::from_secs(20));
    let conn = tokio::time::timeout(Duration::from_secs(30), Connection::connect(relay, config))
        .await
        .expect("connects through the relay")
        .expect("connects through the relay");

    // 300 calls, 30 at a time, and database writes.
    let _: Whoami = conn
        .call(routes::LOGIN, &Login { user_id: 3 })
        .await
        .unwrap();
    for batch in 0..10u64 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..30u64 {
            let conn = conn.clone();
            let n = batch * 30 + i;
            tasks.spawn(async move {
                let e: Echo = conn
                    .call(
                        routes::ECHO,
                        &Echo {
                            text: "lossy".repeat(50),
                            n,
                        },
                    )
                    .await?;
                assert_eq!(e.n, n);
                if n % 3 == 0 {
                    let _: Id = conn
                        .call(
                            notes::routes::ADD,
                            &AddNote {
                                seq: n as i64,
                                text: "x".into(),
                            },
                        )
                        .await?;
                }
                Ok::<_, fluxon_client::Status>(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().expect("call through the lossy relay");
        }
    }
    let count: Id = conn.call(notes::routes::COUNT, &()).await.unwrap();
    assert_eq!(count.id, 100);

    // A 6 MiB upload, then a download, compared byte for byte.
    let body = data(6 << 20, 9);
    let storage = CloudStorageConnector::new(conn.clone());
    let g = grant(&conn, Op::WriteFile, "big.bin").await;
    let receipt = tokio::time::timeout(
        Duration::from_secs(120),
        storage.upload(
            &g,
            "big.bin",
            &body[..],
            TransferOptions::new().size(body.len() as u64),
        ),
    )
    .await
    .expect("upload finishes")
    .expect("upload succeeds");
    assert_eq!(receipt.size, body.len() as u64);
    let g = grant(&conn, Op::ReadFile, "big.bin").await;
    let mut back = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(120),
        storage.download(&g, "big.bin", &mut back, TransferOptions::new()),
    )
    .await
    .expect("download finishes")
    .expect("download succeeds");
    assert!(back == body, "downloaded bytes differ");
    assert_eq!(
        std::fs::read(dir.path().join("cloud/big.bin")).unwrap(),
        body
    );

    eprintln!("relay: {stats:?}");
    assert!(stats.dropped.load(Ordering::Relaxed) > 10, "{stats:?}");
    assert!(stats.delayed.load(Ordering::Relaxed) > 10, "{stats:?}");
    relay_task.abort();
    drop((storage, conn));
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_client_that_vanishes_mid_call_and_mid_upload_costs_nothing() {
    let _serial = SERIAL.lock().await;
    fluxon_e2e::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = notes::open(&dir.path().join("notes.db"), 4).await.unwrap();
    let root = dir.path().join("cloud");
    // A vanished client is noticed by its CONNECTION_CLOSE when that reaches the server, else by
    // the idle timeout (the SDK may drop its endpoint before its close is sent); keep the latter
    // short so the test covers both.
    let limits = fluxon_server::ServerLimits::default().idle_timeout(Duration::from_secs(3));
    let (server, _storage) = fluxon_storage::bind_server(
        server_config(&dir.path().join("server")).limits(limits),
        app_router().merge(notes::router(db)),
        StorageConfig::new(&root),
    )
    .await
    .unwrap();
    let bystander = connect(&server).await;
    let _: Echo = bystander
        .call(routes::ECHO, &Echo::default())
        .await
        .unwrap();
    let base = Baseline::take(&server);

    for round in 0..5u64 {
        let doomed = connect(&server).await;
        // A slow call and an upload that never ends, both in flight...
        let call = {
            let doomed = doomed.clone();
            tokio::spawn(async move {
                doomed
                    .call::<_, Echo>(
                        routes::SLOW,
                        &Echo {
                            text: "slow".into(),
                            n: 30_000,
                        },
                    )
                    .await
            })
        };
        let g = grant(&doomed, Op::WriteFile, &format!("up{round}.bin")).await;
        let (mut writer, reader) = tokio::io::duplex(1 << 16);
        let upload = {
            let storage = CloudStorageConnector::new(doomed.clone());
            let path = format!("up{round}.bin");
            tokio::spawn(async move {
                storage
                    .upload(&g, &path, reader, TransferOptions::new())
                    .await
            })
        };
        let feeder = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let chunk = vec![7u8; 64 * 1024];
            for _ in 0..64 {
                if writer.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            // Then hold the upload open.
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        // ... until the bytes are flowing and the handler is running; then the client vanishes.
        for _ in 0..100 {
            let busy = server
                .sessions()
                .all()
                .iter()
                .any(|s| s.calls_in_flight() > 0);
            if busy && std::fs::read_dir(&root).map(|d| d.count()).unwrap_or(0) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        doomed.close();
        drop(doomed);
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(upload.await.unwrap().is_err());
        feeder.abort();
        // The server forgets the calls and the half-written file.
        for _ in 0..100 {
            let idle = server
                .sessions()
                .all()
                .iter()
                .all(|s| s.calls_in_flight() == 0);
            let files = std::fs::read_dir(&root).map(|d| d.count()).unwrap_or(0);
            if idle && files == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let left: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "round {round}: left behind {left:?}");
        let _: Echo = bystander
            .call(
                routes::ECHO,
                &Echo {
                    text: "ok".into(),
                    n: round,
                },
            )
            .await
            .unwrap();
    }
    base.assert_recovered(&server, "vanishing clients", 64)
        .await;
    server.shutdown(Duration::from_secs(1)).await;
}

fn integrity_check(path: &Path) {
    let db = fluxon_db::Database::open(path).unwrap();
    let result: String = db
        .handle()
        .connection()
        .expect("a SQLite database")
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(result, "ok", "{}", path.display());
}

#[tokio::test]
async fn server_killed_mid_write_restarts_with_every_acknowledged_write() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let child = spawn_server(dir, 0, None).await;
    let port = child.addr.port();
    let conn = Connection::connect(child.addr, child_client(dir))
        .await
        .unwrap();
    let _: Whoami = conn
        .call(routes::LOGIN, &Login { user_id: 5 })
        .await
        .unwrap();
    let session_id = conn.session().id;

    // Writers: notes (database) and files (storage), recording what the server acknowledged.
    let acked_notes = Arc::new(Mutex::new(Vec::<i64>::new()));
    let acked_files = Arc::new(Mutex::new(Vec::<(String, u8)>::new()));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..6i64 {
        let conn = conn.clone();
        let acked = Arc::clone(&acked_notes);
        writers.spawn(async move {
            for i in 0..100_000i64 {
                let seq = w * 1_000_000 + i;
                match conn
                    .call::<_, Id>(
                        notes::routes::ADD,
                        &AddNote {
                            seq,
                            text: "n".into(),
                        },
                    )
                    .await
                {
                    Ok(_) => acked.lock().unwrap().push(seq),
                    Err(_) => return,
                }
            }
        });
    }
    {
        let conn = conn.clone();
        let acked = Arc::clone(&acked_files);
        writers.spawn(async move {
            let storage = CloudStorageConnector::new(conn.clone());
            for i in 0..1000u32 {
                let path = format!("f{i}.bin");
                let seed = (i % 250) as u8;
                let body = data(1 << 20, seed);
                let Ok(g) = conn
                    .call::<_, Grant>(
                        notes::routes::GRANT,
                        &GrantAsk {
                            op: Op::WriteFile as i32,
                            path: path.clone(),
                            overwrite: true,
                        },
                    )
                    .await
                else {
                    return;
                };
                match storage
                    .upload(
                        &g,
                        &path,
                        &body[..],
                        TransferOptions::new().size(body.len() as u64),
                    )
                    .await
                {
                    Ok(_) => acked.lock().unwrap().push((path, seed)),
                    Err(_) => return,
                }
            }
        });
    }
    // Let them write, then SIGKILL the server in the middle of it.
    for _ in 0..200 {
        if acked_notes.lock().unwrap().len() > 300 && acked_files.lock().unwrap().len() > 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut process = child.process;
    process.start_kill().unwrap(); // SIGKILL
    let _ = process.wait().await;
    let notes_before = acked_notes.lock().unwrap().len();
    let files_before = acked_files.lock().unwrap().len();
    // Writers see errors (or a reconnect that fails) and stop within their timeouts.
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while writers.join_next().await.is_some() {}
    })
    .await;
    writers.abort_all();
    eprintln!("acknowledged before the kill: {notes_before} notes, {files_before} files");

    // The databases are intact.
    integrity_check(&dir.join("notes.db"));
    integrity_check(&dir.join("server").join("fluxon.db"));

    // Restart on the same port: the client resumes its session by itself, logged in.
    let child = spawn_server(dir, port, None).await;
    let mut resumed = false;
    for _ in 0..100 {
        if let Ok(me) = conn.call::<_, Whoami>(routes::WHOAMI, &()).await {
            assert_eq!(me.user_id, Some(5));
            assert_eq!(me.session_id, session_id);
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(resumed, "the session resumes after the restart");

    // Every acknowledged note is present.
    let acked: Vec<i64> = acked_notes.lock().unwrap().clone();
    let db = fluxon_db::Database::open(dir.join("notes.db")).unwrap();
    let present: std::collections::HashSet<i64> = db
        .handle()
        .select::<Note>()
        .fetch()
        .unwrap()
        .into_iter()
        .map(|n| {
            assert_eq!(n.author, 5);
            n.seq
        })
        .collect();
    let missing: Vec<_> = acked.iter().filter(|s| !present.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged notes lost: {missing:?}",
        missing.len()
    );

    // Every visible file is complete; every acknowledged one is present. Leftover temporary
    // files are swept at startup.
    let cloud = dir.join("cloud");
    for (path, seed) in acked_files.lock().unwrap().iter() {
        assert_eq!(
            std::fs::read(cloud.join(path)).unwrap(),
            data(1 << 20, *seed),
            "{path}"
        );
    }
    for entry in std::fs::read_dir(&cloud).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".fluxon-") {
            continue;
        }
        let i: u32 = name
            .trim_start_matches('f')
            .trim_end_matches(".bin")
            .parse()
            .unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        assert!(
            bytes == data(1 << 20, (i % 250) as u8),
            "{name} is incomplete ({} bytes)",
            bytes.len()
        );
    }
    let mut swept = false;
    for _ in 0..50 {
        swept = std::fs::read_dir(&cloud)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with(".fluxon-tmp-"));
        if swept {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        swept,
        "temporary files of interrupted uploads are swept at startup"
    );
    drop(conn);
    let mut process = child.process;
    let _ = process.start_kill();
    let _ = process.wait().await;
}

#[tokio::test]
async fn storage_errors_are_clear_and_leave_nothing_half_written() {
    let _serial = SERIAL.lock().await;
    fluxon_e2e::init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // File-size limit (what a full disk looks like to a writer): a child server whose
    // RLIMIT_FSIZE is 4 MiB; an 8 MiB upload fails cleanly, and the server lives on.
    let child = spawn_server(dir, 0, Some(4 << 20)).await;
    let conn = Connection::connect(child.addr, child_client(dir))
        .await
        .unwrap();
    let storage = CloudStorageConnector::new(conn.clone());
    let body = data(8 << 20, 1);
    let g = grant(&conn, Op::WriteFile, "big.bin").await;
    let err = storage
        .upload(
            &g,
            "big.bin",
            &body[..],
            TransferOptions::new().size(body.len() as u64),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    let small = data(1000, 2);
    let g = grant(&conn, Op::WriteFile, "small.bin").await;
    storage
        .upload(&g, "small.bin", &small[..], TransferOptions::new())
        .await
        .unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.join("cloud"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["small.bin"], "nothing half-written is left");
    drop((storage, conn));
    let mut process = child.process;
    let _ = process.start_kill();
    let _ = process.wait().await;

    // In process: a directory replaced by a file, and a read-only directory.
    let db = notes::open(&dir.join("notes2.db"), 2).await.unwrap();
    let root = dir.join("cloud2");
    let (server, _storage) = fluxon_storage::bind_server(
        server_config(&dir.join("server2")),
        app_router().merge(notes::router(db)),
        StorageConfig::new(&root),
    )
    .await
    .unwrap();
    let conn = connect(&server).await;
    let storage = CloudStorageConnector::new(conn.clone());
    std::fs::write(root.join("docs"), b"I am a file").unwrap();
    let g = grant(&conn, Op::WriteFile, "docs/a.txt").await;
    let err = storage
        .upload(&g, "docs/a.txt", &b"data"[..], TransferOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::FailedPrecondition | Code::NotFound),
        "{err}"
    );
    assert_eq!(std::fs::read(root.join("docs")).unwrap(), b"I am a file");

    std::fs::create_dir(root.join("ro")).unwrap();
    set_mode(&root.join("ro"), 0o555);
    let denied = std::fs::write(root.join("ro").join("probe"), b"x").is_err();
    if denied {
        let g = grant(&conn, Op::WriteFile, "ro/a.txt").await;
        let err = storage
            .upload(&g, "ro/a.txt", &b"data"[..], TransferOptions::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    } else {
        // Running as root: permission bits do not deny; the RLIMIT_FSIZE case above covers a
        // failing disk instead.
        eprintln!("read-only directory not enforced (running as root); skipped");
        let _ = std::fs::remove_file(root.join("ro").join("probe"));
    }
    let left: Vec<_> = std::fs::read_dir(root.join("ro"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    set_mode(&root.join("ro"), 0o755);
    let _: Echo = conn.call(routes::ECHO, &Echo::default()).await.unwrap();
    drop((storage, conn));
    server.shutdown(Duration::from_secs(1)).await;
}

fn set_mode(path: &PathBuf, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
