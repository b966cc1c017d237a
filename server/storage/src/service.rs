//! The storage stream protocol: verify the grant, then perform its operation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use fluxon_proto::storage::{Entry, Op, Stage, StorageReply, StorageRequest};
use fluxon_proto::{close, frame, Code, FrameDecoder, Limits, Status};
use fluxon_server::grant::{self, GrantClaims, GrantError, StoragePath};
use fluxon_server::{BoxFuture, SecretKey, ServiceStream, SessionId, StateStore, StreamService};
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::fs::{self, Upload, PART_PREFIX, TEMP_PREFIX};
use crate::hooks::{StorageEvent, StorageHooks};
use crate::object::{ObjectBackend, ObjectStoreConfig};
use crate::StorageError;

mod object_ops;

/// Size of the blocks moved between the network and the disk.
const CHUNK: usize = 256 * 1024;

/// Longest wait for more bytes once some have arrived (see [`read_batch`]).
const LINGER: Duration = Duration::from_millis(5);
/// Blocks in flight between the network task and the disk thread (memory bound per transfer:
/// `CHUNK * QUEUE` plus QUIC's receive window).
const QUEUE: usize = 8;
/// Entries per read_tree frame.
const ENTRY_BATCH: usize = 1000;
/// Largest storage request header accepted (a grant and two paths fit easily).
const MAX_REQUEST_HEADER: usize = 64 * 1024;

/// Configuration of a [`StorageService`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StorageConfig {
    /// The directory holding the stored tree (created when absent). Paths are relative to it.
    /// Not used when [`object_store`](Self::object_store) is set.
    pub root: PathBuf,
    /// Keep the stored tree in this S3-compatible object store instead of under `root`.
    pub object_store: Option<ObjectStoreConfig>,
    /// Largest file accepted, whatever a grant says.
    pub max_file_size: u64,
    /// Time a client has to send its request header after opening a storage stream.
    pub request_timeout: Duration,
    /// An upload that receives nothing for this long is abandoned (kept for a resume when its
    /// grant is resumable), so a stalled client cannot hold a transfer forever.
    pub idle_timeout: Duration,
    /// Partial uploads untouched for this long are deleted (at startup).
    pub partial_ttl: Duration,
    /// Most entries a read_tree answers with.
    pub max_tree_entries: usize,
    /// The application's completion hooks ([`StorageConfig::hooks`]).
    pub hooks: Hooks,
}

/// The completion hooks of a [`StorageConfig`], if any.
#[derive(Clone, Default)]
pub struct Hooks(Option<Arc<dyn StorageHooks>>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hooks(set)"
        } else {
            "Hooks(none)"
        })
    }
}

impl StorageConfig {
    /// Defaults, storing under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            object_store: None,
            max_file_size: 1 << 40,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            partial_ttl: Duration::from_secs(24 * 3600),
            max_tree_entries: 100_000,
            hooks: Hooks::default(),
        }
    }

    /// Defaults, storing in an S3-compatible object store (see [`ObjectStoreConfig`]). The
    /// service behaves as on a local disk (grants, size caps, checksums, atomic visibility,
    /// resumable uploads, hooks), except that moving a directory moves its files one by one.
    pub fn object_store(store: ObjectStoreConfig) -> Self {
        Self {
            object_store: Some(store),
            ..Self::new(PathBuf::new())
        }
    }

    /// Tells `hooks` of every write, directory creation, move and delete once it is durable,
    /// before the client hears of it; a hook's error is the client's answer and undoes what
    /// can be undone (see [`crate::hooks`]).
    pub fn hooks(mut self, hooks: impl StorageHooks) -> Self {
        self.hooks = Hooks(Some(Arc::new(hooks)));
        self
    }

    /// Sets the largest file accepted.
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// Sets how long an upload may receive nothing before it is abandoned.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets how long partial uploads are kept for a resume.
    pub fn partial_ttl(mut self, ttl: Duration) -> Self {
        self.partial_ttl = ttl;
        self
    }
}

/// Transfer counters of a storage service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageStats {
    /// Bytes received in uploads (committed or not).
    pub bytes_uploaded: u64,
    /// Bytes sent in downloads.
    pub bytes_downloaded: u64,
    /// Files committed.
    pub files_written: u64,
    /// Requests refused (bad grant, bad path, ...) or failed.
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    written: AtomicU64,
    refused: AtomicU64,
}

/// A resumable upload's turn ([`StorageService::upload_turn`]): held while it writes.
type UploadTurn = (tokio::sync::OwnedMutexGuard<()>, Arc<UploadSlot>);

/// Serializes resumable uploads with the same id: a newer request takes over from an older one
/// (whose client may be gone without the server knowing yet).
#[derive(Default)]
struct UploadSlot {
    current: Mutex<CancellationToken>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// Where the stored tree is.
enum Backend {
    /// Under a local directory.
    Local(Dir),
    /// In an object store.
    Object(ObjectBackend),
}

struct Inner {
    config: StorageConfig,
    key: SecretKey,
    backend: Backend,
    /// Where used single-use grants are recorded (shared with the server and other nodes).
    state: StateStore,
    uploads: Mutex<HashMap<String, Arc<UploadSlot>>>,
    counters: Counters,
}

/// The cloud-storage service: serves `StreamKind::Storage` streams under a root directory,
/// performing only what a valid grant allows.
///
/// Cheap to clone. Register it on a [`Server`](fluxon_server::Server) with
/// [`StorageService::stream_services`] and [`Server::bind_with`](fluxon_server::Server::bind_with),
/// run it on its own port with [`StorageServer`](crate::StorageServer), or both with the same
/// instance (so single-use grants stay single-use across both).
#[derive(Clone)]
pub struct StorageService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StorageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageService")
            .field("root", &self.inner.config.root)
            .field("object_store", &self.inner.config.object_store)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 128 random bits in hex: the unguessable part of a temporary name.
pub(crate) fn random_hex() -> Result<String, Status> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Status::internal("random generator failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Status::internal("storage worker failed"))?
}

/// What the hooks are told of `claims`' operation.
fn event(claims: &GrantClaims, size: u64, checksum: Vec<u8>) -> StorageEvent {
    StorageEvent {
        op: claims.op,
        path: claims.path.clone(),
        dest_path: claims.dest_path.clone(),
        session_id: claims.session_id,
        size,
        checksum,
        grant_nonce: claims.nonce.to_vec(),
    }
}

/// Where a request ended, as seen by the service.
enum Outcome {
    /// Send this DONE reply.
    Reply(StorageReply),
    /// Refuse with this status; stop the client's sending side with `stop` if set.
    Refuse(Status, Option<u32>),
    /// The stream is gone or the reply was already sent.
    Gone,
}

impl From<Status> for Outcome {
    fn from(status: Status) -> Self {
        Self::Refuse(status, None)
    }
}

/// The DATA frame that opens a download of the file `entry` describes.
fn download_head(entry: Entry) -> StorageReply {
    StorageReply {
        stage: Stage::Data as i32,
        size: entry.size,
        entry: Some(entry),
        ..Default::default()
    }
}

fn done(code: Code, message: impl Into<String>) -> StorageReply {
    StorageReply {
        code: code.as_u32(),
        message: message.into(),
        stage: Stage::Done as i32,
        ..Default::default()
    }
}

async fn send_frame(send: &mut SendStream, reply: &StorageReply) -> Result<(), quinn::WriteError> {
    send.write_all(&frame::encode_head(None, reply, 0)).await
}

impl StorageService {
    /// A service storing under `config.root` (created when absent), verifying grants with `key`
    /// (the main server's key: `ServerConfig::load_secret_key` or `Server::secret_key`) and
    /// recording the use of single-use grants in `state` (the server's:
    /// `ServerConfig::open_state` or `Server::state`), so that a grant is used once whichever
    /// service or node sees it, across restarts.
    ///
    /// Leftover temporary files and stale partial uploads under the root are removed in the
    /// background.
    pub fn new(
        config: StorageConfig,
        key: SecretKey,
        state: StateStore,
    ) -> Result<Self, StorageError> {
        let ttl = config.partial_ttl;
        let backend = match &config.object_store {
            Some(store) => {
                let store = ObjectBackend::connect(store)?;
                let sweeper = store.clone();
                tokio::spawn(async move {
                    let removed = sweeper.sweep(ttl).await;
                    if removed > 0 {
                        tracing::info!(removed, "removed stale multipart uploads");
                    }
                });
                Backend::Object(store)
            }
            None => {
                std::fs::create_dir_all(&config.root)
                    .map_err(|e| StorageError::io(&config.root, e))?;
                let root = Dir::open_ambient_dir(&config.root, ambient_authority())
                    .map_err(|e| StorageError::io(&config.root, e))?;
                if let Ok(root) = root.try_clone() {
                    tokio::task::spawn_blocking(move || {
                        let removed = fs::sweep(&root, ttl);
                        if removed > 0 {
                            tracing::info!(removed, "removed stale temporary and partial uploads");
                        }
                    });
                }
                Backend::Local(root)
            }
        };
        let inner = Arc::new(Inner {
            state,
            uploads: Mutex::default(),
            counters: Counters::default(),
            config,
            key,
            backend,
        });
        Ok(Self { inner })
    }

    /// The key grants are verified with.
    pub(crate) fn key(&self) -> &SecretKey {
        &self.inner.key
    }

    /// The state store used grants are recorded in.
    pub(crate) fn state(&self) -> &StateStore {
        &self.inner.state
    }

    /// The local storage root (empty when the tree is in an object store).
    pub fn root(&self) -> &Path {
        &self.inner.config.root
    }

    /// Transfer counters since the service started.
    pub fn stats(&self) -> StorageStats {
        let c = &self.inner.counters;
        StorageStats {
            bytes_uploaded: c.uploaded.load(Ordering::Relaxed),
            bytes_downloaded: c.downloaded.load(Ordering::Relaxed),
            files_written: c.written.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
        }
    }

    /// This service as the storage entry of a server's stream services.
    pub fn stream_services(&self) -> fluxon_server::StreamServices {
        fluxon_server::StreamServices::new().storage(Arc::new(self.clone()))
    }

    /// Serves one storage stream of `session` (everything after the kind byte; `buffered` holds
    /// bytes already read from `recv`).
    pub async fn serve_stream(
        &self,
        session: SessionId,
        peer: SocketAddr,
        mut send: SendStream,
        mut recv: RecvStream,
        buffered: Bytes,
    ) {
        let inner = &self.inner;
        let mut buf = BytesMut::from(&buffered[..]);
        let header = tokio::time::timeout(
            inner.config.request_timeout,
            read_request(&mut recv, &mut buf),
        )
        .await;
        let request = match header {
            Ok(Ok(request)) => request,
            Ok(Err(Some(status))) => {
                inner.counters.refused.fetch_add(1, Ordering::Relaxed);
                let _ = recv.stop(VarInt::from_u32(close::stream::MALFORMED));
                let _ = send_frame(&mut send, &done(status.code(), status.message())).await;
                let _ = send.finish();
                return;
            }
            Ok(Err(None)) => return,
            Err(_) => {
                let _ = recv.stop(VarInt::from_u32(close::stream::TIMED_OUT));
                let _ = send.reset(VarInt::from_u32(close::stream::TIMED_OUT));
                return;
            }
        };
        let op = Op::try_from(request.op).unwrap_or(Op::Unspecified);
        let span = tracing::info_span!(
            "storage",
            op = grant::op_name(op),
            path = %request.path,
            session = %session,
            %peer,
            status = tracing::field::Empty,
        );
        async {
            let outcome = match self.authorize(session, op, &request).await {
                Err(status) => status.into(),
                Ok(claims) => {
                    self.perform(op, claims, &request, &mut send, &mut recv, buf)
                        .await
                }
            };
            let span = tracing::Span::current();
            match outcome {
                Outcome::Reply(reply) => {
                    span.record("status", Code::from_u32(reply.code).as_str());
                    if send_frame(&mut send, &reply).await.is_ok() {
                        let _ = send.finish();
                    }
                }
                Outcome::Refuse(status, stop) => {
                    inner.counters.refused.fetch_add(1, Ordering::Relaxed);
                    span.record("status", status.code().as_str());
                    tracing::info!(reason = %status.message(), "storage request refused");
                    let _ = recv.stop(VarInt::from_u32(stop.unwrap_or(close::stream::CANCELLED)));
                    if send_frame(&mut send, &done(status.code(), status.message()))
                        .await
                        .is_ok()
                    {
                        let _ = send.finish();
                    }
                }
                Outcome::Gone => {
                    span.record("status", Code::Cancelled.as_str());
                }
            }
            tracing::debug!("storage request served");
        }
        .instrument(span)
        .await;
    }

    async fn authorize(
        &self,
        session: SessionId,
        op: Op,
        request: &StorageRequest,
    ) -> Result<GrantClaims, Status> {
        let grant = request
            .grant
            .as_ref()
            .ok_or_else(|| Status::permission_denied("storage request carries no grant"))?;
        let now = now_secs();
        let claims = grant::verify(&self.inner.key, grant, now).map_err(|e| e.to_status())?;
        claims
            .authorize(session, op, &request.path, &request.dest_path)
            .map_err(|e| e.to_status())?;
        if !claims.reusable {
            // Committed before the operation runs: a crash after this point leaves the grant
            // used, never usable twice.
            match self
                .inner
                .state
                .record_grant_use(claims.nonce, claims.expires_at)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Err(GrantError::Reused.to_status()),
                Err(e) => {
                    tracing::error!(error = %e, "cannot record a grant's use");
                    return Err(Status::unavailable(
                        "cannot record the grant's use right now; try again",
                    ));
                }
            }
        }
        Ok(claims)
    }

    async fn perform(
        &self,
        op: Op,
        claims: GrantClaims,
        request: &StorageRequest,
        send: &mut SendStream,
        recv: &mut RecvStream,
        buffered: BytesMut,
    ) -> Outcome {
        let root = match &self.inner.backend {
            Backend::Local(root) => match root.try_clone() {
                Ok(root) => root,
                Err(e) => return fs::status(&claims.path, &e).into(),
            },
            Backend::Object(store) => {
                return self
                    .perform_object(store, op, claims, request, send, recv, buffered)
                    .await
            }
        };
        let path = claims.path.clone();
        let ok = |reply: StorageReply| Outcome::Reply(reply);
        let result = match op {
            Op::CreateDirectory => match blocking(move || fs::create_directory(&root, &path)).await
            {
                Ok(()) => {
                    let path = claims.path.clone();
                    self.settle(&claims, move |root| fs::undo_create_directory(root, &path))
                        .await
                }
                Err(status) => Err(status),
            },
            // Nothing to undo: the hook's error tells the client the application did not record
            // the delete.
            Op::DeleteItem => match blocking(move || fs::delete_item(&root, &path)).await {
                Ok(()) => self.settle(&claims, |_| Ok(())).await,
                Err(status) => Err(status),
            },
            Op::Stat => blocking(move || fs::stat(&root, &path)).await.map(|entry| {
                ok(StorageReply {
                    entry: Some(entry),
                    ..done(Code::Ok, "")
                })
            }),
            Op::Move => {
                let to = claims.dest_path.clone();
                let overwrite = claims.overwrite;
                match blocking(move || fs::move_item(&root, &path, &to, overwrite)).await {
                    Ok(()) => {
                        let (from, to) = (claims.path.clone(), claims.dest_path.clone());
                        self.settle(&claims, move |root| fs::move_item(root, &to, &from, false))
                            .await
                    }
                    Err(status) => Err(status),
                }
            }
            Op::ReadTree => {
                let max = self.inner.config.max_tree_entries;
                match blocking(move || fs::read_tree(&root, &path, max)).await {
                    Ok(entries) => return send_tree(send, entries).await,
                    Err(status) => Err(status),
                }
            }
            Op::ReadFile => return self.read_file(root, &claims.path, send).await,
            Op::WriteFile => {
                let write = self.write_file(root, claims.clone(), request, send, recv, buffered);
                return self.reporting_abandoned(&claims, write).await;
            }
            Op::Unspecified => Err(Status::invalid_argument("no operation")),
        };
        result.unwrap_or_else(Outcome::from)
    }

    /// Runs `write`, then tells the hooks, if any, of a write that stored nothing. Only a write
    /// that is not resumable is reported abandoned (see the hooks).
    async fn reporting_abandoned(
        &self,
        claims: &GrantClaims,
        write: impl std::future::Future<Output = Outcome>,
    ) -> Outcome {
        let abandoned = match &self.inner.config.hooks.0 {
            Some(hooks) if !claims.resumable => {
                Some((Arc::clone(hooks), event(claims, 0, Vec::new())))
            }
            _ => None,
        };
        let outcome = write.await;
        let stored = matches!(&outcome, Outcome::Reply(r) if r.code == Code::Ok.as_u32());
        if let (false, Some((hooks, event))) = (stored, abandoned) {
            // On a task of its own: a panicking hook ends only that task.
            let _ = tokio::spawn(async move { hooks.abandoned(event).await }).await;
        }
        outcome
    }

    /// Tells the application's hooks, if any, that `claims`' operation is durable. A hook
    /// that panics is an internal error of that one request.
    async fn tell(&self, claims: &GrantClaims, size: u64, checksum: Vec<u8>) -> Result<(), Status> {
        let Some(hooks) = self.inner.config.hooks.0.clone() else {
            return Ok(());
        };
        let event = event(claims, size, checksum);
        let told = tokio::spawn(async move { hooks.completed(event).await })
            .await
            .unwrap_or_else(|_| Err(Status::internal("the storage hook failed")));
        if let Err(status) = &told {
            tracing::info!(code = status.code().as_str(), reason = %status.message(), "the application refused a storage change; undoing it");
        }
        told
    }

    /// After a durable directory creation, move or delete: the client's DONE reply once the
    /// hooks agree; their error otherwise, after `undo` (best effort, logged when it fails).
    async fn settle(
        &self,
        claims: &GrantClaims,
        undo: impl FnOnce(&Dir) -> Result<(), Status> + Send + 'static,
    ) -> Result<Outcome, Status> {
        let root = match &self.inner.backend {
            Backend::Local(root) => root.try_clone(),
            Backend::Object(_) => return Err(Status::internal("not a local tree")),
        };
        self.settle_with(claims, || async move {
            match root {
                Ok(root) => blocking(move || undo(&root)).await,
                Err(e) => Err(Status::internal(e.to_string())),
            }
        })
        .await
    }

    /// [`settle`](Self::settle) with any undo.
    async fn settle_with<F: std::future::Future<Output = Result<(), Status>>>(
        &self,
        claims: &GrantClaims,
        undo: impl FnOnce() -> F,
    ) -> Result<Outcome, Status> {
        let Err(status) = self.tell(claims, 0, Vec::new()).await else {
            return Ok(Outcome::Reply(done(Code::Ok, "")));
        };
        let undone = undo().await;
        if let Err(why) = undone {
            tracing::error!(reason = %why.message(), "cannot undo a refused storage change");
        }
        Err(status)
    }

    async fn read_file(&self, root: Dir, path: &StoragePath, send: &mut SendStream) -> Outcome {
        let p = path.clone();
        let opened = blocking(move || {
            let file = root.open(p.as_str()).map_err(|e| fs::status(&p, &e))?;
            let meta = file.metadata().map_err(|e| fs::status(&p, &e))?;
            if meta.is_dir() {
                return Err(Status::failed_precondition(format!("`{p}` is a directory")));
            }
            Ok((
                file.into_std(),
                fs::entry(p.file_name().unwrap_or(""), &meta),
            ))
        })
        .await;
        let (file, entry) = match opened {
            Ok(x) => x,
            Err(status) => return status.into(),
        };
        let size = entry.size;
        if send_frame(send, &download_head(entry)).await.is_err() {
            return Outcome::Gone;
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        let reader = tokio::task::spawn_blocking(move || read_chunks(file, size, &tx));
        let mut sent = 0u64;
        while let Some(chunk) = rx.recv().await {
            let len = chunk.len() as u64;
            if send.write_chunk(chunk).await.is_err() {
                // The client went away or stopped reading: the reader thread ends on its own
                // once the channel is closed.
                drop(rx);
                self.inner
                    .counters
                    .downloaded
                    .fetch_add(sent, Ordering::Relaxed);
                return Outcome::Gone;
            }
            sent += len;
        }
        let hash = match reader.await {
            Ok(Ok(hash)) => Some(hash),
            Ok(Err(_)) | Err(_) => None,
        };
        self.end_download(send, path, sent, size, hash)
    }

    /// Ends a download of a `size`-byte file of which `sent` bytes went out: counts them, then
    /// answers with the checksum, or, when the file came short or its reading failed (`hash`
    /// is `None`), resets the stream.
    fn end_download(
        &self,
        send: &mut SendStream,
        path: &StoragePath,
        sent: u64,
        size: u64,
        hash: Option<blake3::Hash>,
    ) -> Outcome {
        self.inner
            .counters
            .downloaded
            .fetch_add(sent, Ordering::Relaxed);
        match hash {
            Some(hash) if sent == size => Outcome::Reply(StorageReply {
                size,
                checksum: hash.as_bytes().to_vec(),
                ..done(Code::Ok, "")
            }),
            _ => {
                tracing::warn!(%path, sent, size, "download failed mid-file");
                // The client cannot tell a short file from a cut one unless the stream breaks.
                let _ = send.reset(VarInt::from_u32(close::stream::CANCELLED));
                Outcome::Gone
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_file(
        &self,
        root: Dir,
        claims: GrantClaims,
        request: &StorageRequest,
        send: &mut SendStream,
        recv: &mut RecvStream,
        buffered: BytesMut,
    ) -> Outcome {
        let inner = &self.inner;
        let path = claims.path.clone();
        let (max, too_large) = match self.upload_limit(&claims, request) {
            Ok(limit) => limit,
            Err(outcome) => return outcome,
        };
        // Resumable uploads use a stable partial file and one writer at a time; others a fresh
        // temporary file.
        let (_turn, cancelled) = match self.upload_turn(&claims).await {
            Ok(turn) => turn,
            Err(outcome) => return outcome,
        };
        let temp = if claims.resumable {
            format!("{PART_PREFIX}{}", claims.upload_id)
        } else {
            match random_hex() {
                Ok(hex) => format!("{TEMP_PREFIX}{hex}"),
                Err(status) => return status.into(),
            }
        };
        let resume = request.resume && claims.resumable;
        let overwrite = claims.overwrite;
        let p = path.clone();
        let upload =
            match blocking(move || fs::begin_upload(&root, &p, overwrite, temp, resume)).await {
                Ok(upload) => upload,
                Err(status) => return Outcome::Refuse(status, Some(close::stream::CANCELLED)),
            };
        let offset = upload.offset;
        if offset > max {
            let p = path.clone();
            let _ = blocking(move || {
                fs::discard_upload(&upload);
                drop(p);
                Ok(())
            })
            .await;
            return too_large(offset);
        }
        let ready = StorageReply {
            stage: Stage::Ready as i32,
            offset,
            ..Default::default()
        };
        if send_frame(send, &ready).await.is_err() {
            return self.abandon(upload, claims.resumable).await;
        }

        // The disk thread writes and hashes; this task moves bytes from QUIC to it.
        let Upload {
            parent,
            name,
            temp,
            mut file,
            offset: _,
            mut hasher,
        } = upload;
        let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(QUEUE);
        let writer = tokio::task::spawn_blocking(move || {
            let result = fs::write_batches(&mut file, &mut hasher, &mut rx, offset);
            (result, file, hasher)
        });
        let first = (!buffered.is_empty()).then(|| vec![buffered.freeze()]);
        let (end, total) = self
            .receive(
                recv,
                first,
                tx,
                offset,
                max,
                request.size,
                &cancelled,
                &too_large,
            )
            .await;
        let (written, file, hasher) = match writer.await {
            Ok(x) => x,
            Err(_) => return Status::internal("storage worker failed").into(),
        };
        let upload = Upload {
            parent,
            name,
            temp,
            file,
            offset: total,
            hasher,
        };
        if let Err(e) = written {
            let status = fs::status(&path, &e);
            self.abandon(upload, false).await;
            return status.into();
        }
        match end {
            Err(outcome) => {
                // Over the cap or the announced size: the bytes are worthless. Interrupted or
                // taken over by a newer request: keep them when the upload is resumable.
                let worthless = matches!(&outcome, Outcome::Refuse(s, _)
                    if matches!(s.code(), Code::ResourceExhausted | Code::InvalidArgument));
                let keep = claims.resumable && !worthless;
                self.abandon(upload, keep).await;
                outcome
            }
            Ok(()) => {
                if let Some(size) = request.size {
                    if total != size {
                        let keep = claims.resumable;
                        self.abandon(upload, keep).await;
                        return Status::failed_precondition(format!(
                            "upload ended after {total} of its announced {size} bytes"
                        ))
                        .into();
                    }
                }
                let checksum = upload.hasher.finalize();
                let p = path.clone();
                // With hooks, the version being replaced is kept aside until they agree.
                let aside = match &inner.config.hooks.0 {
                    Some(_) => match random_hex() {
                        Ok(hex) => Some(format!("{TEMP_PREFIX}{hex}")),
                        Err(status) => return status.into(),
                    },
                    None => None,
                };
                let committed = blocking(move || {
                    let result = fs::commit_upload(&upload, &p, overwrite, aside);
                    if result.is_err() {
                        fs::discard_upload(&upload);
                    }
                    result.map(|previous| (upload.parent, upload.name, previous))
                })
                .await;
                let (parent, name, previous) = match committed {
                    Ok(placed) => placed,
                    Err(status) => return status.into(),
                };
                let told = self
                    .tell(&claims, total, checksum.as_bytes().to_vec())
                    .await;
                // Without hooks there is no previous version aside and nothing to undo: no
                // second trip to a blocking thread.
                if told.is_err() || previous.is_some() {
                    let told = told.clone();
                    let _ = blocking(move || {
                        match told {
                            Ok(()) => fs::forget_previous(&parent, previous.as_deref()),
                            Err(_) => {
                                if let Err(e) =
                                    fs::undo_upload(&parent, &name, previous.as_deref())
                                {
                                    tracing::error!(file = %name, error = %e, "cannot undo a refused upload");
                                }
                            }
                        }
                        Ok(())
                    })
                    .await;
                }
                told.map(|()| {
                    inner.counters.written.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(size = total, "file stored");
                    Outcome::Reply(StorageReply {
                        size: total,
                        checksum: checksum.as_bytes().to_vec(),
                        ..done(Code::Ok, "")
                    })
                })
                .unwrap_or_else(Outcome::from)
            }
        }
    }

    /// Moves an upload's bytes from QUIC to `tx` (the writer) until the client ends its
    /// stream, with the size cap, the announced size, the idle timeout and a take-over by a
    /// newer request enforced. Returns how it ended and the upload's length (`offset`, the
    /// bytes already stored, plus what was received).
    #[allow(clippy::too_many_arguments)]
    async fn receive(
        &self,
        recv: &mut RecvStream,
        mut first: Option<Vec<Bytes>>,
        tx: mpsc::Sender<Vec<Bytes>>,
        offset: u64,
        max: u64,
        announced: Option<u64>,
        cancelled: &CancellationToken,
        too_large: &(dyn Fn(u64) -> Outcome + Send + Sync),
    ) -> (Result<(), Outcome>, u64) {
        let idle = self.inner.config.idle_timeout;
        let mut total = offset;
        let mut received = 0u64;
        let end: Result<(), Outcome> = loop {
            let batch = match first.take() {
                Some(batch) => Some(batch),
                None => tokio::select! {
                    _ = cancelled.cancelled() => break Err(Status::aborted("a newer request took over this upload").into()),
                    batch = tokio::time::timeout(idle, read_batch(recv)) => match batch {
                        Ok(Ok(chunk)) => chunk,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "upload interrupted");
                            break Err(Outcome::Gone);
                        }
                        Err(_) => {
                            tracing::info!(?idle, "upload stalled; abandoned");
                            break Err(Outcome::Refuse(
                                Status::deadline_exceeded(format!("no data for {idle:?}")),
                                Some(close::stream::TIMED_OUT),
                            ));
                        }
                    },
                },
            };
            let Some(batch) = batch else { break Ok(()) };
            let len: u64 = batch.iter().map(|chunk| chunk.len() as u64).sum();
            total += len;
            received += len;
            if total > max {
                break Err(too_large(total));
            }
            if announced.is_some_and(|size| total > size) {
                break Err(Outcome::Refuse(
                    Status::invalid_argument(format!(
                        "upload is longer than its announced {} bytes",
                        announced.unwrap_or(0)
                    )),
                    Some(close::stream::TOO_LARGE),
                ));
            }
            if tx.send(batch).await.is_err() {
                break Err(Outcome::Refuse(
                    Status::internal("the storage writer failed"),
                    None,
                ));
            }
        };
        drop(tx);
        self.inner
            .counters
            .uploaded
            .fetch_add(received, Ordering::Relaxed);
        (end, total)
    }

    /// The most bytes an upload may have, and the refusal of a larger one; refuses an upload
    /// announced larger than that.
    // Outcome is what every step of a request ends with; it is moved once per request.
    #[allow(clippy::type_complexity, clippy::result_large_err)]
    fn upload_limit(
        &self,
        claims: &GrantClaims,
        request: &StorageRequest,
    ) -> Result<(u64, Box<dyn Fn(u64) -> Outcome + Send + Sync>), Outcome> {
        let max = claims
            .max_bytes
            .unwrap_or(u64::MAX)
            .min(self.inner.config.max_file_size);
        let path = claims.path.clone();
        let too_large = move |size: u64| {
            Outcome::Refuse(
                Status::resource_exhausted(format!(
                    "`{path}`: {size} bytes exceed the limit of {max} bytes"
                )),
                Some(close::stream::TOO_LARGE),
            )
        };
        match request.size {
            Some(size) if size > max => Err(too_large(size)),
            _ => Ok((max, Box::new(too_large))),
        }
    }

    /// A resumable upload's turn: one writer per upload id at a time, a newer request taking
    /// over (the token is cancelled then). Other uploads need no turn.
    async fn upload_turn(
        &self,
        claims: &GrantClaims,
    ) -> Result<(Option<UploadTurn>, CancellationToken), Outcome> {
        if !claims.resumable {
            return Ok((None, CancellationToken::new()));
        }
        let (slot, token) = self.take_upload_slot(&claims.upload_id);
        let guard = Arc::clone(&slot.lock).lock_owned().await;
        if token.is_cancelled() {
            return Err(Status::aborted("a newer request took over this upload").into());
        }
        Ok((Some((guard, slot)), token))
    }

    /// Ends an upload that will not be committed: keeps a resumable partial (made durable) or
    /// removes the temporary file.
    async fn abandon(&self, upload: Upload, keep: bool) -> Outcome {
        let _ = blocking(move || {
            if keep {
                if let Err(e) = upload.file.sync_all() {
                    tracing::warn!(error = %e, "cannot make a partial upload durable");
                }
                tracing::info!(offset = upload.offset, "partial upload kept for a resume");
            } else {
                fs::discard_upload(&upload);
            }
            Ok(())
        })
        .await;
        Outcome::Gone
    }

    /// The slot of a resumable upload id, cancelling whoever held it.
    fn take_upload_slot(&self, id: &str) -> (Arc<UploadSlot>, CancellationToken) {
        let slot = {
            let mut uploads = lock(&self.inner.uploads);
            // Forget slots nobody uses (only the map holds them).
            uploads.retain(|_, slot| Arc::strong_count(slot) > 1);
            Arc::clone(uploads.entry(id.to_owned()).or_default())
        };
        let token = {
            let mut current = lock(&slot.current);
            current.cancel();
            *current = CancellationToken::new();
            current.clone()
        };
        (slot, token)
    }
}

impl StreamService for StorageService {
    fn serve(&self, stream: ServiceStream) -> BoxFuture<()> {
        let this = self.clone();
        Box::pin(async move {
            this.serve_stream(
                stream.session_id,
                stream.peer,
                stream.send,
                stream.recv,
                stream.buffered,
            )
            .await;
        })
    }
}

/// Reads the request header frame. `Err(None)`: the stream is gone.
async fn read_request(
    recv: &mut RecvStream,
    buf: &mut BytesMut,
) -> Result<StorageRequest, Option<Status>> {
    let mut decoder = FrameDecoder::new(Limits {
        max_header: MAX_REQUEST_HEADER,
        max_payload: 0,
    });
    loop {
        match decoder.decode(buf) {
            Ok(Some(frame)) => {
                return frame.decode_header().map_err(|e| {
                    Some(Status::invalid_argument(format!(
                        "malformed storage request: {e}"
                    )))
                })
            }
            Ok(None) => {}
            Err(e) => {
                return Err(Some(Status::invalid_argument(format!(
                    "malformed storage request: {e}"
                ))))
            }
        }
        match recv.read_chunk(CHUNK, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(Some(Status::invalid_argument(
                    "storage stream ended before its request",
                )))
            }
            Err(_) => return Err(None),
        }
    }
}

/// Reads about [`CHUNK`] bytes as QUIC delivered them (no copy; the disk thread gathers them
/// into one block). Once the first bytes are in, it waits at most [`LINGER`] for the rest: bytes
/// never sit here while the sender pauses (what arrived is written, and counts for a resume).
/// `None` at the end of the stream.
async fn read_batch(recv: &mut RecvStream) -> Result<Option<Vec<Bytes>>, quinn::ReadError> {
    // `read_chunks` takes every chunk QUIC has ready, up to the slots, with one lock of the
    // connection. A chunk is at most one packet's payload, so a batch stays near CHUNK.
    let mut slots: [Bytes; 32] = Default::default();
    let Some(n) = recv.read_chunks(&mut slots).await? else {
        return Ok(None);
    };
    let mut batch = Vec::with_capacity(256);
    let mut len = take_chunks(&mut slots[..n], &mut batch);
    let linger = tokio::time::sleep(LINGER);
    tokio::pin!(linger);
    while len < CHUNK {
        tokio::select! {
            biased;
            // `read_chunks` is cancel-safe: losing the race to the timer loses no bytes.
            more = recv.read_chunks(&mut slots) => match more? {
                Some(n) => len += take_chunks(&mut slots[..n], &mut batch),
                None => break,
            },
            _ = &mut linger => break,
        }
    }
    Ok(Some(batch))
}

/// Moves chunks from `slots` to `batch`; returns their length.
fn take_chunks(slots: &mut [Bytes], batch: &mut Vec<Bytes>) -> usize {
    slots
        .iter_mut()
        .map(|slot| {
            let chunk = std::mem::take(slot);
            let len = chunk.len();
            batch.push(chunk);
            len
        })
        .sum()
}

/// Reads `size` bytes of `file` in chunks, hashing them, into `tx`. Runs on a blocking thread.
fn read_chunks(
    mut file: std::fs::File,
    size: u64,
    tx: &mpsc::Sender<Bytes>,
) -> std::io::Result<blake3::Hash> {
    use std::io::Read;
    let mut hasher = blake3::Hasher::new();
    let mut left = size;
    while left > 0 {
        let want = left.min(CHUNK as u64);
        // A fresh buffer per chunk (QUIC holds it until acknowledged), filled without zeroing.
        let mut buf = Vec::with_capacity(CHUNK);
        (&mut file).take(want).read_to_end(&mut buf)?;
        if (buf.len() as u64) < want {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        hasher.update(&buf);
        left -= want;
        if tx.blocking_send(Bytes::from(buf)).is_err() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
    }
    Ok(hasher.finalize())
}

async fn send_tree(send: &mut SendStream, entries: Vec<Entry>) -> Outcome {
    let total = entries.len() as u64;
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let batch: Vec<Entry> = entries.by_ref().take(ENTRY_BATCH).collect();
        let reply = StorageReply {
            stage: Stage::Entries as i32,
            entries: batch,
            ..Default::default()
        };
        if send_frame(send, &reply).await.is_err() {
            return Outcome::Gone;
        }
    }
    Outcome::Reply(StorageReply {
        size: total,
        ..done(Code::Ok, "")
    })
}
