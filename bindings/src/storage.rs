//! Cloud storage: the grant record and the transfers it authorizes.
//!
//! An application's route hands out a [`Grant`] (a `fluxon.storage.Grant` field of its reply,
//! which the generated glue maps to this record); [`CloudStorage`] performs the granted operation
//! on a storage stream of the client's connection, through the Rust
//! [`CloudStorageConnector`].

use std::sync::{Arc, Mutex};

use fluxon_client::storage::{DownloadReceipt as RustDownload, UploadReceipt as RustUpload};
use fluxon_client::{storage, CloudStorageConnector, Status, StopSignal, TransferOptions};
use tokio::sync::Notify;

use crate::client::FluxonClient;
use crate::error::FluxonError;
use crate::foreign::{self, exit_safe, Foreign};

/// The operation a grant authorizes (`fluxon.storage.Op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum StorageOp {
    /// No operation (also what an operation number unknown to this library becomes).
    Unspecified,
    /// Create one directory (its parent must exist).
    CreateDirectory,
    /// Upload a file.
    WriteFile,
    /// Download a file.
    ReadFile,
    /// Delete a file or a whole directory tree.
    DeleteItem,
    /// List a directory tree recursively.
    ReadTree,
    /// Describe one file or directory.
    Stat,
    /// Rename `path` to `dest_path`.
    Move,
}

impl StorageOp {
    /// The operation with protobuf number `number`; unknown numbers become `Unspecified`.
    pub fn from_number(number: i32) -> Self {
        match storage::Op::try_from(number).unwrap_or(storage::Op::Unspecified) {
            storage::Op::Unspecified => Self::Unspecified,
            storage::Op::CreateDirectory => Self::CreateDirectory,
            storage::Op::WriteFile => Self::WriteFile,
            storage::Op::ReadFile => Self::ReadFile,
            storage::Op::DeleteItem => Self::DeleteItem,
            storage::Op::ReadTree => Self::ReadTree,
            storage::Op::Stat => Self::Stat,
            storage::Op::Move => Self::Move,
        }
    }

    /// The protobuf number.
    pub fn number(self) -> i32 {
        let op = match self {
            Self::Unspecified => storage::Op::Unspecified,
            Self::CreateDirectory => storage::Op::CreateDirectory,
            Self::WriteFile => storage::Op::WriteFile,
            Self::ReadFile => storage::Op::ReadFile,
            Self::DeleteItem => storage::Op::DeleteItem,
            Self::ReadTree => storage::Op::ReadTree,
            Self::Stat => storage::Op::Stat,
            Self::Move => storage::Op::Move,
        };
        op as i32
    }
}

/// Kind of a storage entry (`fluxon.storage.EntryKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum StorageEntryKind {
    /// Not set (or a kind unknown to this library).
    Unspecified,
    /// A file.
    File,
    /// A directory.
    Directory,
}

impl StorageEntryKind {
    /// The kind with protobuf number `number`; unknown numbers become `Unspecified`.
    pub fn from_number(number: i32) -> Self {
        match storage::EntryKind::try_from(number).unwrap_or(storage::EntryKind::Unspecified) {
            storage::EntryKind::Unspecified => Self::Unspecified,
            storage::EntryKind::File => Self::File,
            storage::EntryKind::Directory => Self::Directory,
        }
    }

    /// The protobuf number.
    pub fn number(self) -> i32 {
        let kind = match self {
            Self::Unspecified => storage::EntryKind::Unspecified,
            Self::File => storage::EntryKind::File,
            Self::Directory => storage::EntryKind::Directory,
        };
        kind as i32
    }
}

/// Permission to perform one storage operation on one path (`fluxon.storage.Grant`), signed by
/// the server. Pass it on unchanged: every field is covered by `signature`, so an altered grant
/// is refused (`PermissionDenied`). The conversion to and from the protobuf message is lossless
/// for every operation this library knows.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Grant {
    /// Format version of the signed fields.
    pub version: u32,
    /// The operation granted.
    pub op: StorageOp,
    /// Normalized path relative to the storage root (`""` is the root).
    pub path: String,
    /// Destination of a move; empty otherwise.
    pub dest_path: String,
    /// The session (16 bytes) allowed to use the grant.
    pub session_id: Vec<u8>,
    /// Seconds since the Unix epoch after which the grant is refused.
    pub expires_at: u64,
    /// Largest file a write may produce, in bytes (`None`: the storage service's own limit).
    pub max_bytes: Option<u64>,
    /// Whether a write may replace an existing file.
    pub overwrite: bool,
    /// Whether the grant may be used more than once before it expires.
    pub reusable: bool,
    /// Random bytes naming the grant (single-use grants are refused the second time).
    pub nonce: Vec<u8>,
    /// Writes: the upload's id; a later grant with the same id resumes it.
    pub upload_id: String,
    /// Writes: an interrupted upload keeps its bytes for a resume.
    pub resumable: bool,
    /// The server's signature over every other field.
    pub signature: Vec<u8>,
}

impl From<storage::Grant> for Grant {
    fn from(g: storage::Grant) -> Self {
        Self {
            version: g.version,
            op: StorageOp::from_number(g.op),
            path: g.path,
            dest_path: g.dest_path,
            session_id: g.session_id,
            expires_at: g.expires_at,
            max_bytes: g.max_bytes,
            overwrite: g.overwrite,
            reusable: g.reusable,
            nonce: g.nonce,
            upload_id: g.upload_id,
            resumable: g.resumable,
            signature: g.signature,
        }
    }
}

impl From<Grant> for storage::Grant {
    fn from(g: Grant) -> Self {
        Self {
            version: g.version,
            op: g.op.number(),
            path: g.path,
            dest_path: g.dest_path,
            session_id: g.session_id,
            expires_at: g.expires_at,
            max_bytes: g.max_bytes,
            overwrite: g.overwrite,
            reusable: g.reusable,
            nonce: g.nonce,
            upload_id: g.upload_id,
            resumable: g.resumable,
            signature: g.signature,
        }
    }
}

/// A file or directory in storage (`fluxon.storage.Entry`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StorageEntry {
    /// Path relative to the directory listed (`read_tree`), or the item's own name (`stat`).
    pub name: String,
    /// File or directory.
    pub kind: StorageEntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time, milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

impl From<storage::Entry> for StorageEntry {
    fn from(e: storage::Entry) -> Self {
        Self {
            name: e.name,
            kind: StorageEntryKind::from_number(e.kind),
            size: e.size,
            modified_ms: e.modified_ms,
        }
    }
}

impl From<StorageEntry> for storage::Entry {
    fn from(e: StorageEntry) -> Self {
        Self {
            name: e.name,
            kind: e.kind.number(),
            size: e.size,
            modified_ms: e.modified_ms,
        }
    }
}

/// What a completed upload stored.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UploadReceipt {
    /// Size of the stored file, in bytes.
    pub size: u64,
    /// BLAKE3 of the stored file (64 lowercase hex digits), computed by the server and checked
    /// against the client's.
    pub checksum: String,
    /// Bytes the server already had when the upload was resumed; 0 for a fresh upload.
    pub resumed_from: u64,
}

impl From<RustUpload> for UploadReceipt {
    fn from(r: RustUpload) -> Self {
        Self {
            size: r.size,
            checksum: hex(&r.checksum),
            resumed_from: r.resumed_from,
        }
    }
}

/// What a completed download delivered.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DownloadReceipt {
    /// Bytes delivered.
    pub size: u64,
    /// BLAKE3 of the file (64 lowercase hex digits), sent by the server and checked against the
    /// bytes received.
    pub checksum: String,
    /// The file as the server described it.
    pub entry: StorageEntry,
}

impl From<RustDownload> for DownloadReceipt {
    fn from(r: RustDownload) -> Self {
        Self {
            size: r.size,
            checksum: hex(&r.checksum),
            entry: r.entry.into(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A local file's path: a string; in Python also any `os.PathLike`, such as a `pathlib.Path`
/// (converted with `os.fspath`, see `bindings/uniffi.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPath(pub String);

uniffi::custom_newtype!(LocalPath, String);

/// Told how a transfer advances: called synchronously after each block (up to 256 KiB) while
/// the transfer runs, on the thread that drives it (which may be the one awaiting it, e.g. the
/// asyncio loop's): keep it short and do not block.
#[uniffi::export(foreign)]
pub trait TransferProgress: Send + Sync {
    /// `done` bytes of `total` have moved (`total` is 0 when unknown). Raising an error (e.g.
    /// `FluxonError.Cancelled`) stops the transfer: it fails with that error, an upload's
    /// stream is reset (the server keeps nothing, unless the grant is resumable), and a
    /// download leaves no file behind.
    fn on_progress(&self, done: u64, total: u64) -> Result<(), FluxonError>;
}

/// Set when a progress callback refuses to continue.
#[derive(Default)]
struct Stop {
    error: Mutex<Option<FluxonError>>,
    notify: Notify,
}

impl Stop {
    fn request(&self, error: FluxonError) {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(error);
            self.notify.notify_one();
        }
    }

    fn requested(&self) -> bool {
        self.error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn take(&self) -> FluxonError {
        self.error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| FluxonError::Cancelled {
                detail: "transfer stopped".into(),
            })
    }
}

/// Runs `transfer` with `progress` reporting, stopping it (dropping its future) as soon as the
/// callback raises.
async fn with_progress<T, F>(
    progress: Option<Arc<dyn TransferProgress>>,
    transfer: impl FnOnce(TransferOptions) -> F,
) -> Result<T, FluxonError>
where
    F: std::future::Future<Output = Result<T, Status>>,
{
    let stop = Arc::new(Stop::default());
    // The transfer checks the signal right after each report, so it stops before sending or
    // writing another block (and before an upload is finished) even when it would otherwise
    // run on without yielding.
    let signal = StopSignal::new();
    let mut options = TransferOptions::new().stop_signal(signal.clone());
    if let Some(progress) = progress {
        let stop = Arc::clone(&stop);
        // Released only while the foreign runtime is up (see `foreign`).
        let progress = Foreign::new(progress);
        options = options.progress(move |done, total| {
            if stop.requested() {
                return;
            }
            // Reports run on the thread polling the transfer (the foreign one); none is made
            // once the process is exiting: the transfer stops instead.
            let Some(_entered) = foreign::enter() else {
                stop.request(FluxonError::Cancelled {
                    detail: "the process is exiting".into(),
                });
                signal.stop();
                return;
            };
            if let Err(error) = progress.on_progress(done, total) {
                tracing::debug!(%error, done, total, "progress callback stopped the transfer");
                stop.request(error);
                signal.stop();
            }
        });
    }
    let transfer = transfer(options);
    tokio::select! {
        biased;
        () = stop.notify.notified() => Err(stop.take()),
        result = transfer => match result {
            // Stopped by the callback: report the callback's own error.
            Err(_) if stop.requested() => Err(stop.take()),
            other => other.map_err(FluxonError::from),
        },
    }
}

/// Performs granted storage operations on a client's connection (storage streams run beside
/// calls, on the same connection and session). Get one with `FluxonClient.storage()`.
///
/// Cancelling: cancelling the Kotlin coroutine or Python task awaiting a transfer drops its Rust
/// future, and so does raising from [`TransferProgress::on_progress`] (which also works in
/// Swift, whose task cancellation uniffi 0.32 does not pass on). An upload's stream is then
/// reset: the server commits nothing and the previous version of the file stays (a resumable
/// grant keeps the received bytes for a resume). A download is written to a temporary file
/// beside the destination and renamed into place only once complete and verified, so a
/// cancelled or failed download leaves no partial file.
#[derive(Debug, uniffi::Object)]
pub struct CloudStorage {
    connector: CloudStorageConnector,
}

impl CloudStorage {
    /// The Rust connector.
    pub fn connector(&self) -> &CloudStorageConnector {
        &self.connector
    }
}

#[uniffi::export]
impl FluxonClient {
    /// Cloud storage on this client's connection.
    pub fn storage(&self) -> Arc<CloudStorage> {
        Arc::new(CloudStorage {
            connector: CloudStorageConnector::new(self.connection().clone()),
        })
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl CloudStorage {
    /// Storage on `client`'s connection (the same as `client.storage()`).
    #[uniffi::constructor]
    pub fn new(client: Arc<FluxonClient>) -> Arc<Self> {
        client.storage()
    }

    /// Uploads the local file `local_path` to `path` (which must be the grant's path), streaming
    /// it and reporting progress with the file's size as total. The server writes a temporary
    /// file and puts it in place only once complete; the receipt's checksum has been checked
    /// against the bytes sent (`DataLoss` otherwise). `resume` continues an interrupted upload
    /// of a resumable grant with the same upload id from the server's durable offset.
    #[uniffi::method(default(progress = None, resume = false))]
    pub async fn upload_file(
        &self,
        grant: Grant,
        path: String,
        local_path: LocalPath,
        progress: Option<Arc<dyn TransferProgress>>,
        resume: bool,
    ) -> Result<UploadReceipt, FluxonError> {
        let grant = storage::Grant::from(grant);
        exit_safe(with_progress(progress, |options| {
            self.connector
                .upload_file(&grant, &path, &local_path.0, options.resume(resume))
        }))
        .await
        .map(Into::into)
    }

    /// Uploads `data` to `path` (for small contents; use `upload_file` for files).
    pub async fn upload_bytes(
        &self,
        grant: Grant,
        path: String,
        data: Vec<u8>,
    ) -> Result<UploadReceipt, FluxonError> {
        let grant = storage::Grant::from(grant);
        let size = u64::try_from(data.len()).unwrap_or(u64::MAX);
        exit_safe(self.connector.upload(
            &grant,
            &path,
            data.as_slice(),
            TransferOptions::new().size(size),
        ))
        .await
        .map(Into::into)
        .map_err(Into::into)
    }

    /// Downloads `path` to the local file `local_path`, verifying its checksum: the bytes go to
    /// a temporary file beside it, renamed into place only once complete and verified (an
    /// existing file is replaced then), so `local_path` is never left half-written.
    #[uniffi::method(default(progress = None))]
    pub async fn download_file(
        &self,
        grant: Grant,
        path: String,
        local_path: LocalPath,
        progress: Option<Arc<dyn TransferProgress>>,
    ) -> Result<DownloadReceipt, FluxonError> {
        let grant = storage::Grant::from(grant);
        exit_safe(with_progress(progress, |options| {
            self.connector
                .download_to_file(&grant, &path, &local_path.0, options)
        }))
        .await
        .map(Into::into)
    }

    /// Creates the directory `path` (its parent must exist; an existing path is refused).
    pub async fn create_directory(&self, grant: Grant, path: String) -> Result<(), FluxonError> {
        let grant = storage::Grant::from(grant);
        Ok(exit_safe(self.connector.create_directory(&grant, &path)).await?)
    }

    /// Deletes the file or directory tree at `path`.
    pub async fn delete_item(&self, grant: Grant, path: String) -> Result<(), FluxonError> {
        let grant = storage::Grant::from(grant);
        Ok(exit_safe(self.connector.delete_item(&grant, &path)).await?)
    }

    /// Describes the file or directory at `path`.
    pub async fn stat(&self, grant: Grant, path: String) -> Result<StorageEntry, FluxonError> {
        let grant = storage::Grant::from(grant);
        Ok(exit_safe(self.connector.stat(&grant, &path)).await?.into())
    }

    /// Lists the directory tree at `path`, recursively (names relative to `path`, sorted).
    pub async fn read_tree(
        &self,
        grant: Grant,
        path: String,
    ) -> Result<Vec<StorageEntry>, FluxonError> {
        let grant = storage::Grant::from(grant);
        let entries = exit_safe(self.connector.read_tree(&grant, &path)).await?;
        Ok(entries.into_iter().map(Into::into).collect())
    }

    /// Moves (renames) `path` to `dest_path` (the grant's path and destination; not `from`,
    /// a keyword in Python).
    pub async fn move_item(
        &self,
        grant: Grant,
        path: String,
        dest_path: String,
    ) -> Result<(), FluxonError> {
        let grant = storage::Grant::from(grant);
        Ok(exit_safe(self.connector.move_item(&grant, &path, &dest_path)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_round_trips_without_loss() {
        let grant = storage::Grant {
            version: 1,
            op: storage::Op::Move as i32,
            path: "a/b.txt".into(),
            dest_path: "a/c.txt".into(),
            session_id: (0u8..16).collect(),
            expires_at: 1_900_000_000,
            max_bytes: Some(0),
            overwrite: true,
            reusable: false,
            nonce: vec![0xff; 16],
            upload_id: "0123456789abcdef0123456789abcdef".into(),
            resumable: true,
            signature: (0u8..32).rev().collect(),
        };
        let record = Grant::from(grant.clone());
        assert_eq!(record.op, StorageOp::Move);
        assert_eq!(storage::Grant::from(record), grant);
    }

    #[test]
    fn enums_match_protobuf_numbers() {
        for n in 0..=7 {
            assert_eq!(StorageOp::from_number(n).number(), n);
        }
        assert_eq!(StorageOp::from_number(99), StorageOp::Unspecified);
        for n in 0..=2 {
            assert_eq!(StorageEntryKind::from_number(n).number(), n);
        }
    }

    #[test]
    fn receipts_carry_hex_checksums() {
        let entry = storage::Entry {
            name: "f".into(),
            kind: storage::EntryKind::File as i32,
            size: 3,
            modified_ms: 5,
        };
        let hexed = hex(&[0x00, 0xab, 0x10]);
        assert_eq!(hexed, "00ab10");
        let e = StorageEntry::from(entry.clone());
        assert_eq!(e.kind, StorageEntryKind::File);
        assert_eq!(storage::Entry::from(e), entry);
    }
}
