//! Completion hooks: the application hears of each change to storage once it is durable, and
//! records it in its own database, so its metadata never runs ahead of the bytes.
//!
//! A route hands out a grant; the client performs the operation on a storage stream; only then,
//! with the change on disk and synced, the service calls [`StorageHooks::completed`] and waits
//! for it before answering the client. The hook's error is the client's answer, and undoes
//! what can be undone:
//!
//! | operation          | durable before the hook        | when the hook fails                     |
//! |--------------------|--------------------------------|-----------------------------------------|
//! | `WriteFile`        | file renamed into place, synced | new file removed, or the previous version put back |
//! | `CreateDirectory`  | directory created, synced       | directory removed (when still empty)    |
//! | `Move`             | renamed, synced                 | moved back                               |
//! | `DeleteItem`       | removed, synced                 | nothing to undo: the client is told     |
//!
//! A write that stores nothing is reported to [`StorageHooks::abandoned`]. Reads, stats and
//! tree listings change nothing and call no hook. A process that dies between the change and
//! the hook's commit (a window of one database transaction) leaves a written file without the
//! application's record, or, for a delete, the record of an item storage no longer has.

use std::future::Future;

use fluxon_proto::storage::Op;
use fluxon_proto::Status;
use fluxon_server::grant::StoragePath;
use fluxon_server::{BoxFuture, SessionId};

/// One completed storage operation, as the application's hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageEvent {
    /// What was done: `WriteFile`, `CreateDirectory`, `DeleteItem` or `Move`.
    pub op: Op,
    /// The path the grant named.
    pub path: StoragePath,
    /// A move's destination (the root for other operations).
    pub dest_path: StoragePath,
    /// The session that used the grant.
    pub session_id: SessionId,
    /// Bytes written (0 for operations other than a write).
    pub size: u64,
    /// BLAKE3 of a written file (empty for other operations).
    pub checksum: Vec<u8>,
    /// The grant's nonce, equal to the `nonce` of the [`Grant`](fluxon_server::grant::Grant) a
    /// route signed: it ties the event to what the route recorded (a reservation, say).
    pub grant_nonce: Vec<u8>,
}

/// The application's side of storage: told of every change once it is durable.
///
/// Implemented for any `Fn(StorageEvent) -> impl Future<Output = Result<(), Status>>`.
pub trait StorageHooks: Send + Sync + 'static {
    /// Records `event`. An error is the client's answer and undoes the change where it can
    /// (see the module documentation).
    fn completed(&self, event: StorageEvent) -> BoxFuture<Result<(), Status>>;

    /// A write under a grant that is not resumable ended without storing anything (refused,
    /// over its cap, interrupted, or refused by [`StorageHooks::completed`]): whatever the
    /// route reserved for it can be released now. `size` and `checksum` are empty. A resumable
    /// write keeps its bytes for a later grant, and is not reported.
    fn abandoned(&self, event: StorageEvent) -> BoxFuture<()> {
        drop(event);
        Box::pin(async {})
    }
}

impl<F, Fut> StorageHooks for F
where
    F: Fn(StorageEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    fn completed(&self, event: StorageEvent) -> BoxFuture<Result<(), Status>> {
        Box::pin(self(event))
    }
}
