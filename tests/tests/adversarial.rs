//! Adversarial clients over real QUIC on loopback. Each test attacks one surface, checks the
//! documented error, that the server stays up and its other clients are unaffected, and that the
//! server (in this process) is back to its file-descriptor count, connection count and, within a
//! tolerance, memory once the attackers are gone.
//!
//! The tests of this file run one at a time (`common::SERIAL`) so their measurements do not mix.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{close_code, hello, raw_connect, raw_endpoint, raw_hello, Baseline, SERIAL};
use fluxon_client::storage::{Grant, Op};
use fluxon_client::{
    CallOptions, ClientConfig, CloudStorageConnector, Code, ConnectError, Connection,
    ReconnectPolicy, ReverseRouter, Status, TransferOptions,
};
use fluxon_e2e::msg::{Echo, Login, NotAnEcho, Whoami};
use fluxon_e2e::{app_router, client_config, connect, connect_with, routes, server_config};
use fluxon_proto::io::{FrameReader, ReadError};
use fluxon_proto::wire::{CallHeader, ReplyHeader};
use fluxon_proto::{close, frame, Limits, StreamKind};
use fluxon_server::grant::GrantBuilder;
use fluxon_server::token::{self, TokenClaims};
use fluxon_server::{
    Request, RouteOptions, Router, SecretKey, Server, ServerConfig, ServerLimits, SessionId,
};
use fluxon_storage::StorageConfig;

const POST: &str = "adv.App/Post";

/// How much the process's resident memory may grow over one test. A coarse bound: the
/// allocator keeps freed memory, and every TLS connection warms caches; a leak per stream or per
/// connection multiplied by the thousands of attempts here exceeds it. File descriptors and
/// connections are checked exactly.
const RSS_SLACK_MIB: u64 = 64;
const GRANT: &str = "adv.Storage/Grant";

/// A post whose author the client claims.
#[derive(Clone, PartialEq, prost::Message)]
struct Post {
    /// The author the client claims to be (ignored by the server).
    #[prost(int64, tag = "1")]
    author_id: i64,
    #[prost(string, tag = "2")]
    text: String,
}

/// What the server recorded.
#[derive(Clone, PartialEq, prost::Message)]
struct Posted {
    /// The author the server recorded: the session's user.
    #[prost(int64, tag = "1")]
    author_id: i64,
    /// What the client claimed, echoed for the test.
    #[prost(int64, tag = "2")]
    claimed: i64,
}

/// What the grant route is asked for.
#[derive(Clone, PartialEq, prost::Message)]
struct Ask {
    #[prost(int32, tag = "1")]
    op: i32,
    #[prost(string, tag = "2")]
    path: String,
    #[prost(bool, tag = "3")]
    overwrite: bool,
}

/// The test application plus a login-required route that takes an author id in its payload, and
/// a route that grants any storage operation (authorization is the application's business).
fn router() -> Router {
    app_router()
        .route_with(
            POST,
            RouteOptions::new().requires_login(),
            |req: Request<Post>| async move {
                // The pattern Fluxon makes the default: identity comes from the session.
                let author_id = req.require_user()?;
                Ok::<_, Status>(Posted {
                    author_id,
                    claimed: req.author_id,
                })
            },
        )
        .route(GRANT, |req: Request<Ask>| async move {
            let op = Op::try_from(req.op).unwrap_or(Op::Unspecified);
            req.grant(op, req.path.clone())
                .overwrite(req.overwrite)
                .sign()
        })
}

struct Fixture {
    dir: tempfile::TempDir,
    server: Server,
    root: std::path::PathBuf,
    /// A well-behaved client that must be unaffected by every attack.
    bystander: Connection,
}

async fn start_with(config: impl FnOnce(ServerConfig) -> ServerConfig) -> Fixture {
    fluxon_e2e::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cloud");
    let (server, _storage) = fluxon_storage::bind_server(
        config(server_config(&dir.path().join("server"))),
        router(),
        StorageConfig::new(&root),
    )
    .await
    .expect("server starts");
    let bystander = connect(&server).await;
    // Warm up: the first calls allocate pools and caches that are not leaks.
    for i in 0..20 {
        echo(&bystander, i).await;
    }
    Fixture {
        dir,
        server,
        root,
        bystander,
    }
}

async fn start() -> Fixture {
    start_with(|c| c).await
}

async fn echo(conn: &Connection, n: u64) {
    let reply: Echo = conn
        .call(
            routes::ECHO,
            &Echo {
                text: "still here".into(),
                n,
            },
        )
        .await
        .expect("the bystander's call succeeds");
    assert_eq!((reply.text.as_str(), reply.n), ("still here", n));
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn refused(result: Result<Connection, ConnectError>) -> Status {
    match result {
        Err(ConnectError::Refused(status)) => status,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got a session"),
    }
}

fn no_reconnect(server: &Server) -> ClientConfig {
    client_config(server).reconnect(ReconnectPolicy::disabled())
}

impl Fixture {
    async fn finish(self, base: Baseline, what: &str, rss_slack_mib: u64) {
        echo(&self.bystander, 99).await;
        base.assert_recovered(&self.server, what, rss_slack_mib)
            .await;
        echo(&self.bystander, 100).await;
        self.server.shutdown(Duration::from_secs(2)).await;
        drop(self.dir);
    }
}

#[tokio::test]
async fn session_tokens_forged_expired_replayed_and_foreign_are_refused() {
    let _serial = SERIAL.lock().await;
    let fx = start().await;
    let server = &fx.server;
    let base = Baseline::take(server);

    let victim = connect_with(server, no_reconnect(server)).await.unwrap();
    let me: Whoami = victim
        .call(routes::LOGIN, &Login { user_id: 7 })
        .await
        .unwrap();
    assert_eq!(me.user_id, Some(7));
    let token = victim.session().token;
    let id: SessionId = victim.session().id.parse().unwrap();

    // Forged: every single-byte alteration, a truncation, garbage, the empty-but-present kind.
    for i in [0, 1, 16, 17, 25, 33, 64] {
        let mut forged = token.clone();
        forged[i] ^= 0x01;
        let status = refused(connect_with(server, no_reconnect(server).resume_token(forged)).await);
        assert_eq!(status.code(), Code::Unauthenticated, "byte {i}: {status}");
    }
    for bad in [
        token[..64].to_vec(),
        vec![0; 65],
        vec![0xff; 1000],
        b"x".to_vec(),
    ] {
        let status = refused(connect_with(server, no_reconnect(server).resume_token(bad)).await);
        assert_eq!(status.code(), Code::Unauthenticated, "{status}");
    }

    // Foreign: the victim's session id, signed with another key.
    let other_key = SecretKey::from_bytes(&[0x42; 32]).unwrap();
    let claims = TokenClaims {
        session_id: id,
        issued_at: now(),
        expires_at: now() + 3600,
    };
    let status = refused(
        connect_with(
            server,
            no_reconnect(server).resume_token(token::sign(&other_key, &claims)),
        )
        .await,
    );
    assert!(status.message().contains("signature"), "{status}");

    // Expired: genuinely signed by the server, validity window passed.
    let expired = TokenClaims {
        session_id: id,
        issued_at: now() - 7200,
        expires_at: now() - 3600,
    };
    let status = refused(
        connect_with(
            server,
            no_reconnect(server).resume_token(token::sign(server.secret_key(), &expired)),
        )
        .await,
    );
    assert!(status.message().contains("expired"), "{status}");

    // Cross-session: a genuine token cannot name a session the server does not have (only the
    // server can sign one; this is what a token of a deleted session looks like).
    let unknown = TokenClaims {
        session_id: SessionId::from_bytes([0xab; 16]),
        ..claims
    };
    let status = refused(
        connect_with(
            server,
            no_reconnect(server).resume_token(token::sign(server.secret_key(), &unknown)),
        )
        .await,
    );
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");
    assert!(status.message().contains("not found"), "{status}");

    // Replayed: a token is a bearer credential for its session. Presenting it again resumes
    // that session (its user comes from the server, not the client) and the connection that held
    // it is told it was superseded...
    let thief = connect_with(server, no_reconnect(server).resume_token(token.clone()))
        .await
        .unwrap();
    assert!(thief.session().resumed);
    assert_eq!(thief.session().user_id, Some(7));
    let why = tokio::time::timeout(Duration::from_secs(5), victim.closed())
        .await
        .expect("the old connection is closed");
    assert!(why.message().contains("session"), "{why}");
    // ... and once the session is ended (logout everywhere, console kick), the token is dead.
    server.sessions().get(id).unwrap().end().await.unwrap();
    let status = refused(connect_with(server, no_reconnect(server).resume_token(token)).await);
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");

    // A fresh session never inherits anyone's login.
    let fresh = connect(server).await;
    assert_eq!(fresh.session().user_id, None);
    drop((victim, thief, fresh));
    fx.finish(base, "tokens", RSS_SLACK_MIB).await;
}

#[tokio::test]
async fn hostile_handshakes_are_refused_and_closed() {
    let _serial = SERIAL.lock().await;
    let fx = start_with(|c| {
        let mut limits = ServerLimits::default();
        limits.handshake_timeout = Duration::from_millis(500);
        c.limits(limits)
    })
    .await;
    let server = &fx.server;
    let base = Baseline::take(server);
    let endpoint = raw_endpoint();

    // A protocol version the server does not speak: failed_precondition, in-band and as the close.
    let conn = raw_connect(&endpoint, server).await.unwrap();
    let mut h = hello(Vec::new());
    h.protocol_version = 2;
    let welcome = raw_hello(&conn, &h).await.expect("a refusal frame");
    assert_eq!(
        welcome.code,
        Code::FailedPrecondition.as_u32(),
        "{}",
        welcome.message
    );
    assert!(welcome.session_token.is_empty());
    let err = conn.closed().await;
    assert_eq!(close_code(&err), Some(close::connection::HANDSHAKE_REFUSED));

    // A first stream that is not a handshake, a handshake that is not protobuf, a Hello over
    // 4 KiB, and a connection that never says hello: all closed with PROTOCOL_ERROR.
    let attempts: [&[u8]; 3] = [
        &[StreamKind::Call as u8, 0, 0],
        &[StreamKind::Hello as u8, 3, 0xff, 0xff, 0xff, 0],
        &[StreamKind::Hello as u8, 0x80, 0x80, 0x01],
    ];
    for bytes in attempts {
        let conn = raw_connect(&endpoint, server).await.unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        let _ = send.finish();
        let err = tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .expect("closed");
        assert_eq!(
            close_code(&err),
            Some(close::connection::PROTOCOL_ERROR),
            "{bytes:?}: {err}"
        );
    }
    let silent = raw_connect(&endpoint, server).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), silent.closed())
        .await
        .expect("a silent connection is closed after the handshake timeout");
    assert_eq!(
        close_code(&err),
        Some(close::connection::PROTOCOL_ERROR),
        "{err}"
    );

    endpoint.close(0u32.into(), b"");
    endpoint.wait_idle().await;
    drop(endpoint);
    fx.finish(base, "handshakes", RSS_SLACK_MIB).await;
}

#[tokio::test]
async fn login_required_routes_and_claimed_identities() {
    let _serial = SERIAL.lock().await;
    let fx = start().await;
    let server = &fx.server;
    let base = Baseline::take(server);

    // Without login: unauthenticated, whatever the payload or metadata claims.
    let anon = connect(server).await;
    let err = anon
        .call::<_, Whoami>(routes::WHOAMI, &())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = anon
        .call_with::<_, Posted>(
            POST,
            &Post {
                author_id: 1,
                text: "as admin".into(),
            },
            CallOptions::new()
                .metadata("user-id", "1")
                .metadata("x-user-id", "1")
                .metadata("authorization", "admin"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    // Logged in as 2, claiming to be 1: the server records 2.
    let mallory = connect(server).await;
    let _: Whoami = mallory
        .call(routes::LOGIN, &Login { user_id: 2 })
        .await
        .unwrap();
    let posted: Posted = mallory
        .call_with(
            POST,
            &Post {
                author_id: 1,
                text: "hi".into(),
            },
            CallOptions::new().metadata("user-id", "1"),
        )
        .await
        .unwrap();
    assert_eq!((posted.author_id, posted.claimed), (2, 1));
    // Another client's session is untouched by it.
    let alice = connect(server).await;
    let _: Whoami = alice
        .call(routes::LOGIN, &Login { user_id: 1 })
        .await
        .unwrap();
    let me: Whoami = mallory.call(routes::WHOAMI, &()).await.unwrap();
    assert_eq!(me.user_id, Some(2));
    let her: Whoami = alice.call(routes::WHOAMI, &()).await.unwrap();
    assert_eq!(her.user_id, Some(1));
    drop((anon, mallory, alice));
    fx.finish(base, "identity", RSS_SLACK_MIB).await;
}

/// Every form of path traversal, against grant issuing, grant use and the disk.
#[tokio::test]
async fn path_traversal_in_every_form() {
    let _serial = SERIAL.lock().await;
    let fx = start().await;
    let server = &fx.server;
    let base = Baseline::take(server);
    let conn = connect(server).await;
    let storage = CloudStorageConnector::new(conn.clone());
    let outside = fx.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"top secret").unwrap();
    let before = tree(fx.dir.path());
    let grant = |op: Op, path: &str| {
        let conn = conn.clone();
        let path = path.to_owned();
        async move {
            conn.call::<_, Grant>(
                GRANT,
                &Ask {
                    op: op as i32,
                    path,
                    overwrite: true,
                },
            )
            .await
        }
    };

    let long_name = "n".repeat(256);
    let long_path = "d/".repeat(2100) + "f";
    let refused_forms = [
        "..",
        "../outside/secret.txt",
        "a/../../outside/secret.txt",
        "a/./../../outside",
        "/etc/passwd",
        "//server/share/x",
        "C:/Windows/win.ini",
        "C:\\Windows\\win.ini",
        "c:secret",
        "\\\\server\\share\\x",
        "\\\\?\\C:\\x",
        "..\\outside\\secret.txt",
        "file.txt:stream",
        "a\0b",
        "secret.txt\0.jpg",
        "a\u{7f}b",
        "a\nb",
        "a//b",
        "a/",
        ".fluxon-tmp-0123",
        long_name.as_str(),
        long_path.as_str(),
    ];
    for bad in refused_forms {
        // The application cannot sign a grant for it...
        let err = grant(Op::WriteFile, bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err}");
        // ... nor can a valid grant be pointed at it.
        let ok = grant(Op::WriteFile, "fine.txt").await.unwrap();
        let err = storage
            .upload(&ok, bad, &b"pwned"[..], TransferOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err.code(), Code::InvalidArgument | Code::PermissionDenied),
            "{bad:?}: {err}"
        );
        // ... nor is a grant carrying it accepted, even signed with the server's own key.
        let session: SessionId = conn.session().id.parse().unwrap();
        let mut forged =
            GrantBuilder::new(server.secret_key().clone(), session, Op::WriteFile, "x")
                .sign()
                .unwrap();
        forged.path = bad.to_owned();
        assert!(storage
            .upload(&forged, bad, &b"pwned"[..], TransferOptions::new())
            .await
            .is_err());
    }

    // Unicode look-alikes of dots and slashes are ordinary characters: they name files inside the
    // root, literally, and never a parent or a separator.
    for lookalike in [
        "\u{2024}\u{2024}",               // one dot leader, twice
        "\u{2024}\u{2024}\u{2215}x",      // "‥∕x": one name
        "\u{ff0e}\u{ff0e}\u{ff0f}secret", // fullwidth full stops and solidus
        "..\u{ff0f}outside\u{ff0f}secret.txt",
        "\u{2215}etc\u{2215}passwd", // division slash
        "\u{2044}x",                 // fraction slash
    ] {
        let g = grant(Op::WriteFile, lookalike).await.unwrap();
        match storage
            .upload(&g, lookalike, &b"inside"[..], TransferOptions::new())
            .await
        {
            Ok(_) => assert_eq!(
                std::fs::read(fx.root.join(lookalike)).unwrap(),
                b"inside",
                "{lookalike:?} must be a file inside the root"
            ),
            Err(e) => panic!("{lookalike:?}: {e}"),
        }
    }

    // Symlinks planted inside the root that point out of it.
    std::os::unix::fs::symlink(&outside, fx.root.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), fx.root.join("link.txt")).unwrap();
    let g = grant(Op::ReadFile, "link.txt").await.unwrap();
    let mut sink = Vec::new();
    let err = storage
        .download(&g, "link.txt", &mut sink, TransferOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(sink.is_empty());
    let g = grant(Op::ReadFile, "escape/secret.txt").await.unwrap();
    let err = storage
        .download(&g, "escape/secret.txt", &mut sink, TransferOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let g = grant(Op::WriteFile, "escape/new.txt").await.unwrap();
    assert!(storage
        .upload(&g, "escape/new.txt", &b"pwned"[..], TransferOptions::new())
        .await
        .is_err());
    // Overwriting the link replaces the link itself, never the file it points to.
    let g = grant(Op::WriteFile, "link.txt").await.unwrap();
    storage
        .upload(&g, "link.txt", &b"replaced"[..], TransferOptions::new())
        .await
        .unwrap();
    assert!(!fx.root.join("link.txt").is_symlink());
    assert_eq!(
        std::fs::read(fx.root.join("link.txt")).unwrap(),
        b"replaced"
    );

    // Nothing outside the root changed.
    assert_eq!(
        std::fs::read(outside.join("secret.txt")).unwrap(),
        b"top secret"
    );
    let after = tree(fx.dir.path());
    let outside_root: Vec<_> = after
        .iter()
        .filter(|p| !p.starts_with(&fx.root) && !before.contains(p))
        .filter(|p| !p.starts_with(fx.dir.path().join("server")))
        .collect();
    assert!(
        outside_root.is_empty(),
        "created outside the root: {outside_root:?}"
    );
    drop((storage, conn));
    fx.finish(base, "traversal", RSS_SLACK_MIB).await;
}

/// Every path under `dir`, not following symlinks.
fn tree(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// Sends raw bytes on a new stream and reads the reply header.
async fn raw_call(conn: &quinn::Connection, bytes: &[u8]) -> Result<ReplyHeader, ReadError> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    let frame = FrameReader::new(Limits::default())
        .read_frame(&mut recv)
        .await?;
    Ok(frame.decode_header().unwrap())
}

fn call_head(route: &str, payload_len: usize) -> Vec<u8> {
    let header = CallHeader {
        route: route.into(),
        ..Default::default()
    };
    frame::encode_head(Some(StreamKind::Call), &header, payload_len).to_vec()
}

#[tokio::test]
async fn oversized_malformed_and_unknown_requests() {
    let _serial = SERIAL.lock().await;
    let fx = start_with(|c| c.limits(ServerLimits::default().max_message_size(64 * 1024))).await;
    let server = &fx.server;
    let base = Baseline::take(server);
    let conn = connect(server).await;
    let raw = conn.raw_connection().unwrap();
    let code = |r: Result<ReplyHeader, ReadError>| r.map(|h| h.code).unwrap_or(u32::MAX);

    for _ in 0..20 {
        // A header over 64 KiB (huge metadata), announced by its length alone.
        let mut huge = vec![StreamKind::Call as u8];
        prost::encoding::encode_varint(1 << 20, &mut huge);
        assert_eq!(
            code(raw_call(&raw, &huge).await),
            Code::ResourceExhausted.as_u32()
        );
        let header = CallHeader {
            route: routes::ECHO.into(),
            metadata: [("k".to_owned(), "v".repeat(70_000))].into(),
            ..Default::default()
        };
        let head = frame::encode_head(Some(StreamKind::Call), &header, 0);
        assert_eq!(
            code(raw_call(&raw, &head).await),
            Code::ResourceExhausted.as_u32()
        );
        // A payload over the limit, announced; and one announced small but longer.
        let mut big = call_head(routes::ECHO, 1 << 30);
        big.extend_from_slice(&[0; 1000]);
        assert_eq!(
            code(raw_call(&raw, &big).await),
            Code::ResourceExhausted.as_u32()
        );
        let mut longer = call_head(routes::ECHO, 4);
        longer.extend_from_slice(&[0; 100]);
        assert_eq!(
            code(raw_call(&raw, &longer).await),
            Code::InvalidArgument.as_u32()
        );
        // Malformed: varint overflow, truncated frame, a header that is not protobuf, a payload
        // that is not the route's message, an unknown stream kind, an empty stream.
        let mut overflow = vec![StreamKind::Call as u8];
        overflow.extend_from_slice(&[0xff; 11]);
        assert_eq!(
            code(raw_call(&raw, &overflow).await),
            Code::InvalidArgument.as_u32()
        );
        let mut cut = call_head(routes::ECHO, 100);
        cut.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            code(raw_call(&raw, &cut).await),
            Code::InvalidArgument.as_u32()
        );
        let garbage = [StreamKind::Call as u8, 4, 0xff, 0xff, 0xff, 0xff, 0];
        assert_eq!(
            code(raw_call(&raw, &garbage).await),
            Code::InvalidArgument.as_u32()
        );
        let err = conn
            .call::<_, Echo>(routes::ECHO, &NotAnEcho { text: 5 })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        let mut bad_payload = call_head(routes::ECHO, 3);
        bad_payload.extend_from_slice(&[0x0a, 0x05, 0x01]);
        assert_eq!(
            code(raw_call(&raw, &bad_payload).await),
            Code::InvalidArgument.as_u32()
        );
        assert_eq!(
            code(raw_call(&raw, &[0x7f]).await),
            Code::InvalidArgument.as_u32()
        );
        assert!(matches!(
            raw_call(&raw, &[]).await,
            Err(ReadError::Reset(_))
        ));
        // Unknown routes, including odd names.
        for route in [
            "",
            "nope",
            "test.App/Echo2",
            "test.App/echo",
            "/",
            &"r".repeat(60_000),
            "ü/\u{0}",
        ] {
            assert_eq!(
                code(raw_call(&raw, &call_head(route, 0)).await),
                Code::NotFound.as_u32(),
                "{route:.20}"
            );
        }
        echo(&fx.bystander, 1).await;
    }
    // The attacker's own connection survived all of it.
    echo(&conn, 2).await;
    drop((raw, conn));
    fx.finish(base, "malformed", RSS_SLACK_MIB).await;
}

#[tokio::test]
async fn slowloris_streams_are_timed_out() {
    let _serial = SERIAL.lock().await;
    // Room for all 200 streams at once: the client below holds its halves of the streams, so
    // under the default limit (100) it could not open more until it let them go.
    let fx = start_with(|c| {
        c.limits(
            ServerLimits::default()
                .request_read_timeout(Duration::from_millis(300))
                .max_concurrent_streams(256),
        )
    })
    .await;
    let server = &fx.server;
    let base = Baseline::take(server);
    let conn = connect(server).await;
    let raw = conn.raw_connection().unwrap();

    // 200 call streams that send a kind byte (and, for half of them, half a header), then
    // nothing.
    let mut streams = Vec::new();
    for i in 0..200 {
        let (mut send, recv) = raw.open_bi().await.unwrap();
        let bytes: &[u8] = if i % 2 == 0 {
            &[StreamKind::Call as u8, 40, 1]
        } else {
            &[StreamKind::Call as u8]
        };
        send.write_all(bytes).await.unwrap();
        streams.push((send, recv));
    }
    // Calls from everyone still go through while they hang.
    echo(&fx.bystander, 1).await;
    echo(&conn, 2).await;
    for (_send, mut recv) in streams {
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            FrameReader::new(Limits::default()).read_frame(&mut recv),
        )
        .await
        .expect("the server gives up on the stream");
        match result {
            Err(ReadError::Reset(code)) => assert_eq!(code, u64::from(close::stream::TIMED_OUT)),
            other => panic!("expected a reset, got {other:?}"),
        }
    }
    echo(&conn, 3).await;
    drop((raw, conn));
    fx.finish(base, "slowloris", RSS_SLACK_MIB).await;
}

#[tokio::test]
async fn two_thousand_streams_at_once() {
    let _serial = SERIAL.lock().await;
    let fx = start_with(|c| {
        c.limits(ServerLimits::default().request_read_timeout(Duration::from_secs(1)))
    })
    .await;
    let server = &fx.server;
    let base = Baseline::take(server);
    let conn = connect(server).await;

    // 2,000 calls started at once on one connection: QUIC's stream limit (100 by default)
    // queues the excess; every call completes.
    let calls = (0..2000u64).map(|n| {
        let conn = conn.clone();
        async move {
            let reply: Echo = conn
                .call(
                    routes::ECHO,
                    &Echo {
                        text: "x".into(),
                        n,
                    },
                )
                .await?;
            Ok::<_, Status>(reply.n == n)
        }
    });
    let results = tokio::time::timeout(Duration::from_secs(60), join_all(calls))
        .await
        .expect("2,000 calls finish");
    assert!(
        results.iter().all(|r| matches!(r, Ok(true))),
        "{:?}",
        results.iter().find(|r| !matches!(r, Ok(true)))
    );

    // 2,000 raw streams opened at once and abandoned after their kind byte: the server times each
    // out and frees it (QUIC lets the client open only as many as the server allows).
    let raw = conn.raw_connection().unwrap();
    let opens = (0..2000).map(|_| {
        let raw = raw.clone();
        async move {
            let (mut send, recv) = raw.open_bi().await.ok()?;
            send.write_all(&[StreamKind::Call as u8]).await.ok()?;
            // Hold the stream until the server resets it.
            let mut recv = recv;
            let _ = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(64)).await;
            Some(())
        }
    });
    let opened = tokio::time::timeout(Duration::from_secs(120), join_all(opens))
        .await
        .expect("abandoned streams are reaped");
    assert!(opened.iter().all(Option::is_some));
    echo(&fx.bystander, 1).await;
    echo(&conn, 2).await;
    drop((raw, conn));
    fx.finish(base, "2000 streams", RSS_SLACK_MIB).await;
}

/// Runs futures concurrently (each on its own task) and returns their outputs in order.
async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task finished"));
    }
    out
}

#[tokio::test]
async fn connection_flood_up_to_the_limit() {
    let _serial = SERIAL.lock().await;
    const LIMIT: usize = 64;
    let fx = start_with(|c| {
        let mut limits = ServerLimits::default().max_connections(LIMIT);
        limits.handshake_timeout = Duration::from_secs(5);
        c.limits(limits)
    })
    .await;
    let server = &fx.server;
    let base = Baseline::take(server);
    assert_eq!(base.connections, 1);

    for round in 0..2 {
        for _ in 0..100 {
            if server.connection_count() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Fill every remaining slot with connections that finish TLS but never say hello.
        let endpoint = raw_endpoint();
        let mut flood = Vec::new();
        for _ in 1..LIMIT {
            flood.push(
                raw_connect(&endpoint, server)
                    .await
                    .expect("a slot is free"),
            );
        }
        assert_eq!(server.connection_count(), LIMIT, "round {round}");
        // The next one is refused at the QUIC level; the SDK reports it.
        let err = raw_connect(&endpoint, server).await.unwrap_err();
        assert!(
            matches!(err, quinn::ConnectionError::ConnectionClosed(_)),
            "{err}"
        );
        let err = connect_with(server, client_config(server))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        // The established client is unaffected.
        echo(&fx.bystander, round).await;
        // The flood is closed after the handshake timeout, freeing the slots.
        for conn in &flood {
            let err = tokio::time::timeout(Duration::from_secs(10), conn.closed())
                .await
                .expect("closed by the server");
            assert_eq!(
                close_code(&err),
                Some(close::connection::PROTOCOL_ERROR),
                "{err}"
            );
        }
        drop(flood);
        endpoint.wait_idle().await;
        // A real client gets in again.
        let late = connect(server).await;
        echo(&late, round).await;
        drop(late);
    }
    fx.finish(base, "flood", RSS_SLACK_MIB).await;
}

/// A reverse call's reply travels on the very stream the server opened to the client it calls;
/// there is no reply id that another connection could name. So "a reply from the wrong session"
/// can only be a *new* stream from another client dressed up as a reply: the server reads it as
/// a request of that other client (a `ReplyHeader` is not a valid `CallHeader`, and a client
/// route is not a server route), and the pending reverse call still gets its answer from the
/// client it called, or times out.
#[tokio::test]
async fn reverse_call_replies_cannot_come_from_another_session() {
    let _serial = SERIAL.lock().await;
    let fx = start().await;
    let server = &fx.server;
    let base = Baseline::take(server);
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let reverse = {
        let gate = std::sync::Arc::clone(&gate);
        ReverseRouter::new().route(routes::CLIENT_PING, move |req: Echo| {
            let gate = std::sync::Arc::clone(&gate);
            async move {
                gate.notified().await;
                Ok::<_, Status>(Echo {
                    text: format!("from A: {}", req.text),
                    n: req.n,
                })
            }
        })
    };
    let a = connect_with(server, client_config(server).reverse(reverse))
        .await
        .unwrap();
    let pending = {
        let a = a.clone();
        tokio::spawn(async move {
            a.call_with::<_, Echo>(
                routes::CALL_ME_BACK,
                &Echo {
                    text: "ping".into(),
                    n: 10_000,
                },
                CallOptions::new().timeout(Duration::from_secs(20)),
            )
            .await
        })
    };
    // Wait until the reverse call is in flight.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let b = connect(server).await;
    let raw = b.raw_connection().unwrap();
    let forged_reply = ReplyHeader {
        code: 0,
        message: String::new(),
        ..Default::default()
    };
    let payload = prost::Message::encode_to_vec(&Echo {
        text: "from B".into(),
        n: 10_000,
    });
    for kind in [Some(StreamKind::Call), None] {
        let mut bytes = frame::encode_head(kind, &forged_reply, payload.len()).to_vec();
        bytes.extend_from_slice(&payload);
        let reply = raw_call(&raw, &bytes).await;
        let code = reply.map(|h| h.code).unwrap_or(u32::MAX);
        assert_ne!(code, 0, "a forged reply was accepted as a call");
    }
    // B calling the client route on the server: the server has no such route.
    let err = b
        .call::<_, Echo>(routes::CLIENT_PING, &Echo::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    // B asking the server to call *it* back reaches B's own (absent) handler, not A's call.
    let err = b
        .call::<_, Echo>(
            routes::CALL_ME_BACK,
            &Echo {
                text: "x".into(),
                n: 500,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");

    assert!(
        !pending.is_finished(),
        "the reverse call must still wait for A"
    );
    gate.notify_one();
    let answer = pending.await.unwrap().expect("A's answer arrives");
    assert_eq!(answer.text, "from A: ping");
    drop((a, b, raw));
    fx.finish(base, "reverse", RSS_SLACK_MIB).await;
}

#[tokio::test]
async fn storage_grants_forged_expired_replayed_and_cross_session() {
    let _serial = SERIAL.lock().await;
    let fx = start_with(|c| c.limits(ServerLimits::default())).await;
    let server = &fx.server;
    let base = Baseline::take(server);
    let conn = connect(server).await;
    let storage = CloudStorageConnector::new(conn.clone());
    let ask = |op: Op, path: &str| Ask {
        op: op as i32,
        path: path.into(),
        overwrite: true,
    };
    let g: Grant = conn
        .call(GRANT, &ask(Op::WriteFile, "a.txt"))
        .await
        .unwrap();
    storage
        .upload(&g, "a.txt", &b"hello"[..], TransferOptions::new())
        .await
        .unwrap();
    let session: SessionId = conn.session().id.parse().unwrap();

    for round in 0..10 {
        // Replayed.
        let err = storage
            .upload(&g, "a.txt", &b"again"[..], TransferOptions::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        // Forged (edited op), foreign key, expired.
        let mut forged: Grant = conn.call(GRANT, &ask(Op::Stat, "a.txt")).await.unwrap();
        forged.op = Op::DeleteItem as i32;
        let err = storage.delete_item(&forged, "a.txt").await.unwrap_err();
        assert!(err.message().contains("signature"), "{err}");
        let foreign = GrantBuilder::new(
            SecretKey::from_bytes(&[1; 32]).unwrap(),
            session,
            Op::DeleteItem,
            "a.txt",
        )
        .sign()
        .unwrap();
        let err = storage.delete_item(&foreign, "a.txt").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        let expired = GrantBuilder::new(
            server.secret_key().clone(),
            session,
            Op::DeleteItem,
            "a.txt",
        )
        .sign_at(now() - 3600, [round as u8; 16], String::new())
        .unwrap();
        let err = storage.delete_item(&expired, "a.txt").await.unwrap_err();
        assert!(err.message().contains("expired"), "{err}");
        // Cross-session: B's grant used on A's connection.
        let b = connect(server).await;
        let theirs: Grant = b.call(GRANT, &ask(Op::DeleteItem, "a.txt")).await.unwrap();
        let err = storage.delete_item(&theirs, "a.txt").await.unwrap_err();
        assert!(err.message().contains("another session"), "{err}");
        // Malformed storage request bytes on a raw storage stream.
        let (mut send, mut recv) = conn.open_stream(StreamKind::Storage).await.unwrap();
        send.write_all(&[4, 0xff, 0xff, 0xff, 0xff, 0])
            .await
            .unwrap();
        let _ = send.finish();
        let frame = FrameReader::new(Limits::default())
            .read_frame(&mut recv)
            .await
            .unwrap();
        let reply: fluxon_proto::storage::StorageReply = frame.decode_header().unwrap();
        assert_eq!(
            reply.code,
            Code::InvalidArgument.as_u32(),
            "{}",
            reply.message
        );
        drop(b);
    }
    let g: Grant = conn.call(GRANT, &ask(Op::ReadFile, "a.txt")).await.unwrap();
    let mut out = Vec::new();
    storage
        .download(&g, "a.txt", &mut out, TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(out, b"hello");
    drop((storage, conn));
    fx.finish(base, "grants", RSS_SLACK_MIB).await;
}
