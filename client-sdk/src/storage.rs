//! Cloud storage: performing the operations that grants authorize, on dedicated streams.
//!
//! The application's own route hands out a [`Grant`] (embedded in its reply); a
//! [`CloudStorageConnector`] then performs the granted operation on the storage service, on the
//! main connection or on a storage-only endpoint. Uploads and downloads stream (memory stays
//! bounded whatever the file size), report progress, are cancelled by dropping their future, and
//! are checked end to end with BLAKE3 checksums.
//!
//! ```no_run
//! # async fn run(conn: fluxon_client::Connection, grant: fluxon_client::storage::Grant) -> Result<(), fluxon_client::Status> {
//! use fluxon_client::{CloudStorageConnector, TransferOptions};
//!
//! let storage = CloudStorageConnector::new(conn);
//! let options = TransferOptions::new().progress(|done, total| println!("{done}/{total}"));
//! let receipt = storage.upload_file(&grant, "photos/cat.jpg", "cat.jpg", options).await?;
//! println!("stored {} bytes", receipt.size);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fluxon_proto::storage::{Stage, StorageReply, StorageRequest};
use fluxon_proto::{close, frame, Code, FrameDecoder, Limits, Status, StreamKind};
use quinn::{RecvStream, SendStream, VarInt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub use fluxon_proto::storage::{Entry, EntryKind, Grant, Op};

use crate::{ClientConfig, ConnectError, Connection};

/// Size of the buffers read from a source and sent.
const CHUNK: usize = 256 * 1024;
/// Largest reply header accepted (a read_tree batch of entries).
const MAX_REPLY_HEADER: usize = 4 * 1024 * 1024;

/// A progress callback: bytes done and total bytes (0 when the total is unknown).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Options of an upload or download.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TransferOptions {
    /// Called as bytes move: (done, total).
    pub progress: Option<Progress>,
    /// Upload: continue the grant's upload from the server's durable offset. The grant must be
    /// resumable and carry the interrupted upload's id; the source is read from its start (its
    /// first `offset` bytes are hashed, not sent).
    pub resume: bool,
    /// Upload: the total size, when known (the server checks it against the grant's cap before
    /// any byte moves, and a stream that ends short is not committed).
    pub size: Option<u64>,
    /// Stops the transfer once raised (checked after every block and before an upload is
    /// finished): it fails with `cancelled`, an upload commits nothing, a download to a file
    /// leaves nothing.
    pub stop: Option<StopSignal>,
}

/// A flag that stops a transfer, raised from another task or from its own progress callback.
///
/// Dropping a transfer's future stops it too; this is for code that cannot reach the future,
/// such as a progress callback, which runs inside it.
#[derive(Clone, Debug, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    /// A signal not raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the signal: the transfer stops at its next block.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the signal was raised.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for TransferOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferOptions")
            .field("progress", &self.progress.is_some())
            .field("resume", &self.resume)
            .field("size", &self.size)
            .field("stop", &self.stop)
            .finish()
    }
}

impl TransferOptions {
    /// No progress callback, no resume, size unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the progress callback.
    pub fn progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Resumes an interrupted upload (see [`TransferOptions::resume`](Self#structfield.resume)).
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Announces the upload's total size.
    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// Stops the transfer when `signal` is raised (see [`StopSignal`]).
    pub fn stop_signal(mut self, signal: StopSignal) -> Self {
        self.stop = Some(signal);
        self
    }

    /// Reports progress, then fails if the transfer was asked to stop.
    fn report(&self, done: u64, total: u64) -> Result<(), Status> {
        if let Some(progress) = &self.progress {
            progress(done, total);
        }
        self.check_stop()
    }

    fn check_stop(&self) -> Result<(), Status> {
        match &self.stop {
            Some(signal) if signal.is_stopped() => {
                Err(Status::cancelled("the transfer was stopped"))
            }
            _ => Ok(()),
        }
    }
}

/// What a completed upload stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadReceipt {
    /// Size of the stored file.
    pub size: u64,
    /// BLAKE3 of the stored file, as computed by the server and checked against the client's.
    pub checksum: [u8; 32],
    /// Bytes the server already had (a resumed upload); 0 for a fresh one.
    pub resumed_from: u64,
}

/// What a completed download delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadReceipt {
    /// Bytes delivered.
    pub size: u64,
    /// BLAKE3 of the file, sent by the server and checked against the bytes received.
    pub checksum: [u8; 32],
    /// The file as the server described it.
    pub entry: Entry,
}

/// Performs granted storage operations over a [`Connection`].
///
/// Cheap to clone. [`CloudStorageConnector::new`] uses the application's connection (storage on
/// the main endpoint); [`CloudStorageConnector::connect`] connects to a storage-only endpoint.
#[derive(Clone, Debug)]
pub struct CloudStorageConnector {
    conn: Connection,
}

/// Owns a send stream and resets it when dropped unfinished, so a cancelled upload can never
/// look complete to the server (quinn finishes a dropped stream).
struct ResetOnDrop(Option<SendStream>);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if let Some(stream) = self.0.as_mut() {
            let _ = stream.reset(VarInt::from_u32(close::stream::CANCELLED));
        }
    }
}

impl ResetOnDrop {
    fn get(&mut self) -> Result<&mut SendStream, Status> {
        self.0
            .as_mut()
            .ok_or_else(|| Status::internal("stream already finished"))
    }

    fn finish(&mut self) {
        if let Some(mut stream) = self.0.take() {
            let _ = stream.finish();
        }
    }
}

/// Reads reply frames and raw bytes from a storage stream.
struct Replies {
    recv: RecvStream,
    decoder: FrameDecoder,
    buf: BytesMut,
}

fn lost(err: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("storage stream lost: {err}"))
}

impl Replies {
    fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::new(Limits {
                max_header: MAX_REPLY_HEADER,
                max_payload: 0,
            }),
            buf: BytesMut::new(),
        }
    }

    /// The next reply frame; a non-ok DONE becomes an error.
    async fn next(&mut self) -> Result<StorageReply, Status> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| Status::internal(format!("malformed storage reply: {e}")))?
            {
                let reply: StorageReply = frame
                    .decode_header()
                    .map_err(|e| Status::internal(format!("malformed storage reply: {e}")))?;
                if reply.code != Code::Ok.as_u32() {
                    return Err(Status::from_wire(reply.code, reply.message));
                }
                return Ok(reply);
            }
            match self.recv.read_chunk(CHUNK, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) => {
                    return Err(Status::unavailable("storage stream ended without a reply"))
                }
                Err(quinn::ReadError::Reset(code)) => {
                    return Err(Status::aborted(format!(
                        "the server aborted the transfer (code {code})"
                    )))
                }
                Err(e) => return Err(lost(e)),
            }
        }
    }

    /// The next frame, which must be DONE (READY frames are skipped).
    async fn done(&mut self) -> Result<StorageReply, Status> {
        loop {
            let reply = self.next().await?;
            if reply.stage == Stage::Done as i32 {
                return Ok(reply);
            }
        }
    }

    /// Reads up to `max` raw bytes (buffered ones first) into the start of `out`, gathered into
    /// one block so that hashing and writing work on large blocks rather than on single
    /// packets; returns how many (0 at the end of the stream). `out` is reused from call to call:
    /// it is zeroed once, when first grown, not for every block.
    async fn raw_into(&mut self, out: &mut Vec<u8>, max: usize) -> Result<usize, Status> {
        if out.len() < max {
            out.resize(max, 0);
        }
        if !self.buf.is_empty() {
            let n = self.buf.len().min(max);
            out[..n].copy_from_slice(&self.buf.split_to(n));
            return Ok(n);
        }
        let mut filled = 0;
        while filled < max {
            // One `read` takes every chunk QUIC has ready (one lock of the connection).
            match self.recv.read(&mut out[filled..max]).await {
                Ok(Some(n)) => filled += n,
                Ok(None) => break,
                Err(quinn::ReadError::Reset(code)) => {
                    return Err(Status::aborted(format!(
                        "the server aborted the download (code {code})"
                    )))
                }
                Err(e) => return Err(lost(e)),
            }
            // Hand over a good share without waiting for a full buffer.
            if filled >= max / 4 {
                break;
            }
        }
        Ok(filled)
    }
}

fn checksum(bytes: &[u8]) -> Result<[u8; 32], Status> {
    bytes
        .try_into()
        .map_err(|_| Status::internal("the server sent no valid checksum"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CloudStorageConnector {
    /// Storage on the application's own connection (the main endpoint serves storage streams).
    pub fn new(conn: Connection) -> Self {
        Self { conn }
    }

    /// Connects to a storage-only endpoint at `addr`. `config` must carry the main connection's
    /// session token (`config.resume_token(main.session().token)`): grants are bound to that
    /// session, and the endpoint checks the token with the key it shares with the main server.
    pub async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Self, ConnectError> {
        if config.resume_token.is_none() {
            return Err(ConnectError::Config(
                "a storage endpoint needs the main connection's session token (resume_token)"
                    .into(),
            ));
        }
        Ok(Self::new(Connection::connect(addr, config).await?))
    }

    /// The connection storage streams are opened on.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    async fn open(&self, request: &StorageRequest) -> Result<(ResetOnDrop, Replies), Status> {
        let (send, recv) = self.conn.open_stream(StreamKind::Storage).await?;
        let mut send = ResetOnDrop(Some(send));
        send.get()?
            .write_all(&frame::encode_head(None, request, 0))
            .await
            .map_err(lost)?;
        Ok((send, Replies::new(recv)))
    }

    /// Sends a request without data and returns its DONE reply (and, for read_tree, the entries).
    async fn simple(&self, request: StorageRequest) -> Result<(StorageReply, Vec<Entry>), Status> {
        let (mut send, mut replies) = self.open(&request).await?;
        send.finish();
        let mut entries = Vec::new();
        loop {
            let reply = replies.next().await?;
            if reply.stage == Stage::Entries as i32 {
                entries.extend(reply.entries);
                continue;
            }
            return Ok((reply, entries));
        }
    }

    fn request(grant: &Grant, op: Op, path: &str) -> StorageRequest {
        StorageRequest {
            grant: Some(grant.clone()),
            op: op as i32,
            path: path.to_owned(),
            ..Default::default()
        }
    }

    /// Creates the directory `path` (its parent must exist; an existing path is refused).
    pub async fn create_directory(&self, grant: &Grant, path: &str) -> Result<(), Status> {
        self.simple(Self::request(grant, Op::CreateDirectory, path))
            .await
            .map(drop)
    }

    /// Deletes the file or directory tree at `path`.
    pub async fn delete_item(&self, grant: &Grant, path: &str) -> Result<(), Status> {
        self.simple(Self::request(grant, Op::DeleteItem, path))
            .await
            .map(drop)
    }

    /// Describes the file or directory at `path`.
    pub async fn stat(&self, grant: &Grant, path: &str) -> Result<Entry, Status> {
        let (reply, _) = self.simple(Self::request(grant, Op::Stat, path)).await?;
        reply
            .entry
            .ok_or_else(|| Status::internal("stat reply without an entry"))
    }

    /// Lists the directory tree at `path` (recursively; names relative to `path`, sorted).
    pub async fn read_tree(&self, grant: &Grant, path: &str) -> Result<Vec<Entry>, Status> {
        let (_, entries) = self
            .simple(Self::request(grant, Op::ReadTree, path))
            .await?;
        Ok(entries)
    }

    /// Moves (renames) `from` to `to`.
    pub async fn move_item(&self, grant: &Grant, from: &str, to: &str) -> Result<(), Status> {
        let mut request = Self::request(grant, Op::Move, from);
        request.dest_path = to.to_owned();
        self.simple(request).await.map(drop)
    }

    /// Uploads the local file `local` to `path`, announcing its size.
    pub async fn upload_file(
        &self,
        grant: &Grant,
        path: &str,
        local: impl AsRef<Path>,
        options: TransferOptions,
    ) -> Result<UploadReceipt, Status> {
        let local = local.as_ref();
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| Status::invalid_argument(format!("{}: {e}", local.display())))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| Status::invalid_argument(format!("{}: {e}", local.display())))?
            .len();
        // Read and hash on a blocking thread, a few blocks ahead of the sending task.
        let file = file.into_std().await;
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let reader = tokio::task::spawn_blocking(move || read_file_chunks(file, &tx));
        let chunks = Chunks::<tokio::io::Empty>::File { rx, reader };
        self.upload_chunks(grant, path, chunks, options.size(size))
            .await
    }

    /// Uploads everything `source` yields to `path`, streaming: the server writes a temporary
    /// file and puts it in place only once complete, so a failed or cancelled upload (drop the
    /// future) leaves the previous version untouched. Fails with `data_loss` when the server's
    /// checksum differs from the client's.
    pub async fn upload<R: AsyncRead + Unpin + Send>(
        &self,
        grant: &Grant,
        path: &str,
        source: R,
        options: TransferOptions,
    ) -> Result<UploadReceipt, Status> {
        let chunks = Chunks::Reader {
            source,
            hasher: Box::default(),
        };
        self.upload_chunks(grant, path, chunks, options).await
    }

    async fn upload_chunks<R: AsyncRead + Unpin + Send>(
        &self,
        grant: &Grant,
        path: &str,
        mut chunks: Chunks<R>,
        options: TransferOptions,
    ) -> Result<UploadReceipt, Status> {
        let mut request = Self::request(grant, Op::WriteFile, path);
        request.size = options.size;
        request.resume = options.resume;
        let (mut send, mut replies) = self.open(&request).await?;
        let offset = if options.resume {
            let ready = replies.next().await?;
            if ready.stage != Stage::Ready as i32 {
                return Err(Status::internal(
                    "expected the server's READY before resuming",
                ));
            }
            ready.offset
        } else {
            0
        };
        let total = options.size.unwrap_or(0);
        let mut read = 0u64;
        let mut write_error = None;
        loop {
            // A source that is slow to yield must not hide the end of the upload: the server
            // stopping the stream, or the connection going, ends the wait.
            let next = {
                let stream = send.get()?;
                tokio::select! {
                    biased;
                    next = chunks.next() => next?,
                    stopped = stream.stopped() => match stopped {
                        Ok(None) => chunks.next().await?,
                        Ok(Some(code)) => {
                            write_error = Some(quinn::WriteError::Stopped(code));
                            break;
                        }
                        Err(quinn::StoppedError::ConnectionLost(e)) => {
                            write_error = Some(quinn::WriteError::ConnectionLost(e));
                            break;
                        }
                        Err(quinn::StoppedError::ZeroRttRejected) => {
                            write_error = Some(quinn::WriteError::ZeroRttRejected);
                            break;
                        }
                    },
                }
            };
            let Some(buf) = next else { break };
            let start = read;
            read += buf.len() as u64;
            if read <= offset {
                continue; // the server has these bytes already
            }
            let skip = usize::try_from(offset.saturating_sub(start)).unwrap_or(0);
            if let Err(e) = send.get()?.write_chunk(buf.slice(skip..)).await {
                write_error = Some(e);
                break;
            }
            options.report(read, total)?;
        }
        // The source's hash; a source that failed midway fails the upload here, before the
        // stream is finished (dropping it unfinished resets it: nothing is committed).
        let ours = if write_error.is_none() {
            Some(chunks.finish().await?)
        } else {
            None
        };
        if write_error.is_none() {
            if read < offset {
                return Err(Status::failed_precondition(format!(
                    "the source has {read} bytes but the server already holds {offset}"
                )));
            }
            // Last chance to stop: once finished, the server commits.
            options.check_stop()?;
            send.finish();
        }
        let reply = match replies.done().await {
            Ok(reply) => reply,
            Err(status) => {
                return Err(match write_error {
                    Some(e) if status.code() == Code::Unavailable => lost(e),
                    _ => status,
                })
            }
        };
        if let Some(e) = write_error {
            // The server answered ok although it stopped reading: should not happen.
            return Err(lost(e));
        }
        let server = checksum(&reply.checksum)?;
        let ours = ours.ok_or_else(|| Status::internal("upload ended without its hash"))?;
        if server != *ours.as_bytes() || reply.size != read {
            return Err(Status::data_loss(format!(
                "checksum mismatch after upload: server has {} bytes with BLAKE3 {}, client sent {read} bytes with {}",
                reply.size,
                hex(&server),
                ours.to_hex()
            )));
        }
        Ok(UploadReceipt {
            size: reply.size,
            checksum: server,
            resumed_from: offset,
        })
    }

    /// Downloads `path` into `dest`, verifying its checksum (`data_loss` on a mismatch; the
    /// bytes were written to `dest` by then, so prefer [`Self::download_to_file`] for files).
    pub async fn download<W: AsyncWrite + Unpin + Send>(
        &self,
        grant: &Grant,
        path: &str,
        dest: W,
        options: TransferOptions,
    ) -> Result<DownloadReceipt, Status> {
        self.download_into(grant, path, Dest::Writer(dest), options)
            .await
            .map(|(receipt, _)| receipt)
    }

    async fn download_into<W: AsyncWrite + Unpin + Send>(
        &self,
        grant: &Grant,
        path: &str,
        mut dest: Dest<W>,
        options: TransferOptions,
    ) -> Result<(DownloadReceipt, Dest<W>), Status> {
        let (mut send, mut replies) = self.open(&Self::request(grant, Op::ReadFile, path)).await?;
        send.finish();
        let head = replies.next().await?;
        if head.stage != Stage::Data as i32 {
            return Err(Status::internal("expected the file's DATA frame"));
        }
        let size = head.size;
        let mut hasher = blake3::Hasher::new();
        let mut done = 0u64;
        let mut chunk = Vec::with_capacity(CHUNK);
        while done < size {
            let want = usize::try_from((size - done).min(CHUNK as u64)).unwrap_or(CHUNK);
            let n = replies.raw_into(&mut chunk, want).await?;
            if n == 0 {
                return Err(Status::unavailable(format!(
                    "download ended after {done} of {size} bytes"
                )));
            }
            hasher.update(&chunk[..n]);
            done += n as u64;
            chunk = dest.put(chunk, n).await?;
            options.report(done, size)?;
        }
        let dest = dest.finish().await?;
        let reply = replies.done().await?;
        let server = checksum(&reply.checksum)?;
        let ours = hasher.finalize();
        if server != *ours.as_bytes() {
            return Err(Status::data_loss(format!(
                "checksum mismatch after download: server sent BLAKE3 {}, received bytes hash to {}",
                hex(&server),
                ours.to_hex()
            )));
        }
        let receipt = DownloadReceipt {
            size,
            checksum: server,
            entry: head.entry.unwrap_or_default(),
        };
        Ok((receipt, dest))
    }

    /// Downloads `path` to the local file `local`: written to a temporary file beside it, synced,
    /// checked, then renamed into place, so `local` is never left half-written.
    pub async fn download_to_file(
        &self,
        grant: &Grant,
        path: &str,
        local: impl AsRef<Path>,
        options: TransferOptions,
    ) -> Result<DownloadReceipt, Status> {
        let local = local.as_ref();
        let temp = temp_path(local);
        let io_err = |e: std::io::Error| Status::internal(format!("{}: {e}", temp.display()));
        let file = tokio::fs::File::create(&temp).await.map_err(io_err)?;
        let mut guard = RemoveOnDrop(Some(temp.clone()));
        // Written by a blocking thread while the next blocks arrive.
        let dest = Dest::<tokio::io::Sink>::file(file.into_std().await);
        let (receipt, dest) = self.download_into(grant, path, dest, options).await?;
        if let Dest::File {
            file: Some(file), ..
        } = dest
        {
            tokio::task::spawn_blocking(move || file.sync_all())
                .await
                .map_err(|_| Status::internal("the file writer failed"))?
                .map_err(io_err)?;
        }
        tokio::fs::rename(&temp, local)
            .await
            .map_err(|e| Status::internal(format!("{}: {e}", local.display())))?;
        guard.0 = None;
        Ok(receipt)
    }
}

/// Blocks read ahead of the network by a local file's reader thread.
const READ_AHEAD: usize = 4;

/// Where an upload's bytes come from, hashed as they are read.
enum Chunks<R> {
    /// Read and hashed on the uploading task.
    Reader {
        source: R,
        hasher: Box<blake3::Hasher>,
    },
    /// Read and hashed by a blocking thread ([`read_file_chunks`]), in parallel with sending.
    File {
        rx: mpsc::Receiver<Bytes>,
        reader: tokio::task::JoinHandle<std::io::Result<blake3::Hash>>,
    },
}

fn source_error(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("cannot read the source: {e}"))
}

impl<R: AsyncRead + Unpin> Chunks<R> {
    /// The next block; `None` when the source is exhausted (or, for a file, its reader stopped:
    /// [`Chunks::finish`] tells which).
    async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        match self {
            Self::Reader { source, hasher } => {
                // `read_buf` fills the spare capacity: no zeroing of each fresh block.
                let mut buf = BytesMut::with_capacity(CHUNK);
                if source.read_buf(&mut buf).await.map_err(source_error)? == 0 {
                    return Ok(None);
                }
                hasher.update(&buf);
                Ok(Some(buf.freeze()))
            }
            Self::File { rx, .. } => Ok(rx.recv().await),
        }
    }

    /// The hash of everything read, or the error that stopped the reader.
    async fn finish(self) -> Result<blake3::Hash, Status> {
        match self {
            Self::Reader { hasher, .. } => Ok(hasher.finalize()),
            Self::File { rx, reader } => {
                drop(rx);
                reader
                    .await
                    .map_err(|_| Status::internal("the file reader failed"))?
                    .map_err(source_error)
            }
        }
    }
}

/// Reads `file` to its end in blocks, hashing them, into `tx`. Runs on a blocking thread.
fn read_file_chunks(
    mut file: std::fs::File,
    tx: &mpsc::Sender<Bytes>,
) -> std::io::Result<blake3::Hash> {
    use std::io::Read;
    let mut hasher = blake3::Hasher::new();
    loop {
        // A fresh block each time (QUIC holds it until acknowledged), filled without zeroing.
        let mut buf = Vec::with_capacity(CHUNK);
        (&mut file).take(CHUNK as u64).read_to_end(&mut buf)?;
        if buf.is_empty() {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf);
        if tx.blocking_send(Bytes::from(buf)).is_err() {
            // The upload ended (failed or cancelled) before the file did.
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
    }
}

/// Blocks queued for a download's file writer thread.
const WRITE_BEHIND: usize = 4;

/// Where a download's bytes go.
enum Dest<W> {
    /// Written on the downloading task.
    Writer(W),
    /// Written by a blocking thread ([`write_file_blocks`]), in parallel with receiving; the
    /// buffers it is done with come back through `spare`.
    File {
        tx: Option<mpsc::Sender<(Vec<u8>, usize)>>,
        spare: mpsc::Receiver<Vec<u8>>,
        writer: Option<tokio::task::JoinHandle<std::io::Result<std::fs::File>>>,
        file: Option<std::fs::File>,
    },
}

fn write_error(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("cannot write the download: {e}"))
}

impl<W: AsyncWrite + Unpin> Dest<W> {
    fn file(file: std::fs::File) -> Self {
        let (tx, rx) = mpsc::channel(WRITE_BEHIND);
        let (spare_tx, spare) = mpsc::channel(WRITE_BEHIND + 1);
        let writer = tokio::task::spawn_blocking(move || write_file_blocks(file, rx, &spare_tx));
        Self::File {
            tx: Some(tx),
            spare,
            writer: Some(writer),
            file: None,
        }
    }

    /// Writes the first `len` bytes of `block`; returns the buffer to fill next.
    async fn put(&mut self, block: Vec<u8>, len: usize) -> Result<Vec<u8>, Status> {
        match self {
            Self::Writer(w) => {
                w.write_all(&block[..len]).await.map_err(write_error)?;
                Ok(block)
            }
            Self::File { tx, spare, .. } => {
                let sent = match tx {
                    Some(tx) => tx.send((block, len)).await.is_ok(),
                    None => false,
                };
                if !sent {
                    // The writer stopped: its error comes from `finish`.
                    *tx = None;
                    self.finish_file().await?;
                    return Err(write_error("the file writer stopped"));
                }
                Ok(spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(CHUNK)))
            }
        }
    }

    async fn finish_file(&mut self) -> Result<(), Status> {
        if let Self::File {
            tx, writer, file, ..
        } = self
        {
            *tx = None;
            if let Some(writer) = writer.take() {
                let written = writer
                    .await
                    .map_err(|_| Status::internal("the file writer failed"))?
                    .map_err(write_error)?;
                *file = Some(written);
            }
        }
        Ok(())
    }

    /// Flushes everything written.
    async fn finish(mut self) -> Result<Self, Status> {
        if let Self::Writer(w) = &mut self {
            w.flush().await.map_err(write_error)?;
        }
        self.finish_file().await?;
        Ok(self)
    }
}

/// Writes the blocks from `rx` to `file` and hands the buffers back through `spare`; every
/// 8 MiB asks the kernel to start writing them out, so the final fsync has little left to do.
/// Runs on a blocking thread.
fn write_file_blocks(
    mut file: std::fs::File,
    mut rx: mpsc::Receiver<(Vec<u8>, usize)>,
    spare: &mpsc::Sender<Vec<u8>>,
) -> std::io::Result<std::fs::File> {
    use std::io::Write;
    const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;
    let (mut written, mut hinted) = (0u64, 0u64);
    while let Some((block, len)) = rx.blocking_recv() {
        file.write_all(&block[..len])?;
        written += len as u64;
        if written - hinted >= WRITEBACK_EVERY {
            start_writeback(&file, hinted, written - hinted);
            hinted = written;
        }
        let _ = spare.try_send(block);
    }
    Ok(file)
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to disk now (best
/// effort; the fsync at the end makes the file durable). On Linux, `POSIX_FADV_DONTNEED` on
/// freshly written, still dirty pages starts their writeback and keeps them cached, like
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    if let Err(e) = rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    ) {
        tracing::debug!(error = %e, "writeback hint failed");
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

fn temp_path(local: &Path) -> PathBuf {
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    local.with_file_name(format!(".{name}.fluxon-download"))
}

/// Removes a temporary download when the download fails or is cancelled.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
