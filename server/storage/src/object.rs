//! The stored tree in an S3-compatible object store (`object_store`'s S3 client).
//!
//! A storage path `a/b.bin` is the object `<prefix>/a/b.bin`. Object stores have no
//! directories: a directory exists while some object lies below it, and `create_directory`
//! leaves a marker object (`.fluxon-dir`) so that an empty directory exists too. Names starting
//! with [`RESERVED_PREFIX`] are never listed, like on the local disk.
//!
//! Writes go through a multipart upload to the final key (or a single PUT when the file fits in
//! one part): the object is visible under its name only once the store completes it, so a reader
//! sees the old version or the new one, never a mix. Every multipart upload is recorded under
//! `<prefix>/.fluxon-uploads/` so that one left behind by a crash is aborted by the next sweep;
//! a resumable upload records there the parts it has stored, and a resume continues after them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fluxon_proto::storage::{Entry, EntryKind};
use fluxon_proto::Status;
use fluxon_server::grant::{StoragePath, RESERVED_PREFIX};
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::service::random_hex;
use crate::StorageError;

/// Bytes per multipart part, at least (S3 wants at least 5 MiB for every part but the last; a
/// part is the blocks received since the last one, so it may exceed this by less than a block).
pub(crate) const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload sent to the store at once (memory per upload: about
/// `PART_SIZE * (PARTS_IN_FLIGHT + 1)`).
const PARTS_IN_FLIGHT: usize = 2;
/// The marker object that makes an empty directory exist.
const DIR_MARKER: &str = ".fluxon-dir";
/// Where multipart uploads in progress are recorded.
const UPLOADS: &str = ".fluxon-uploads";
/// Where a version being replaced is kept until the application's hooks agree.
const ASIDE: &str = ".fluxon-tmp";

/// Where an S3-compatible object store is and how to sign requests to it.
///
/// ```no_run
/// use fluxon_storage::{ObjectStoreConfig, StorageConfig};
///
/// // Credentials, region and endpoint from the usual AWS_* variables:
/// let aws = StorageConfig::object_store(ObjectStoreConfig::from_env("s3://my-bucket/files"));
/// // Or all given here, for a store on another endpoint:
/// let local = StorageConfig::object_store(
///     ObjectStoreConfig::new("s3://dev/cloud")
///         .endpoint("http://127.0.0.1:9000")
///         .credentials("access key", "secret key"),
/// );
/// ```
#[derive(Clone)]
pub struct ObjectStoreConfig {
    url: String,
    from_env: bool,
    endpoint: Option<String>,
    region: Option<String>,
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credentials", &self.credentials.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl ObjectStoreConfig {
    /// The bucket and key prefix as `s3://bucket` or `s3://bucket/prefix`; nothing else set.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            from_env: false,
            endpoint: None,
            region: None,
            credentials: None,
        }
    }

    /// As [`new`](Self::new), with credentials, region and endpoint read from the environment
    /// as AWS tools read them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT`, ...). What is set explicitly afterwards wins.
    pub fn from_env(url: impl Into<String>) -> Self {
        Self {
            from_env: true,
            ..Self::new(url)
        }
    }

    /// The store's endpoint, for stores other than AWS (`http://` is allowed only here).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The region (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The access key id and secret access key requests are signed with.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.credentials = Some((access_key_id.into(), secret.into()));
        self
    }

    /// The `s3://bucket/prefix` location.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The endpoint, when one is set.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The bucket and the key prefix (without slashes at either end).
    fn bucket_and_prefix(&self) -> Result<(&str, &str), StorageError> {
        let rest = self
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| self.invalid("expected s3://bucket[/prefix]"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(self.invalid("no bucket name"));
        }
        Ok((bucket, prefix.trim_matches('/')))
    }

    fn invalid(&self, why: &str) -> StorageError {
        StorageError::ObjectStore(format!("`{}`: {why}", self.url))
    }
}

/// What a path names in the store.
enum Found {
    Nothing,
    File(ObjectMeta),
    Directory,
}

/// A stored tree in an object store.
#[derive(Clone, Debug)]
pub(crate) struct ObjectBackend {
    pub(crate) store: Arc<AmazonS3>,
    pub(crate) prefix: Key,
}

/// Maps an object store error on `path` to the client's status (never leaking the store's
/// address or credentials; the details go to the log).
fn status(path: &StoragePath, err: &object_store::Error) -> Status {
    match err {
        object_store::Error::NotFound { .. } => {
            Status::not_found(format!("`{path}` does not exist"))
        }
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            Status::already_exists(format!("`{path}` already exists"))
        }
        _ => {
            tracing::warn!(%path, error = %err, "object store request failed");
            Status::unavailable(format!(
                "the object store did not answer for `{path}`; try again"
            ))
        }
    }
}

fn is_not_found(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. })
}

fn file_entry(name: &str, meta: &ObjectMeta) -> Entry {
    Entry {
        name: name.to_owned(),
        kind: EntryKind::File as i32,
        size: meta.size,
        modified_ms: meta.last_modified.timestamp_millis(),
    }
}

fn dir_entry(name: &str) -> Entry {
    Entry {
        name: name.to_owned(),
        kind: EntryKind::Directory as i32,
        size: 0,
        modified_ms: 0,
    }
}

/// A key's part as the name it was stored under.
fn decode(part: &str) -> String {
    percent_encoding::percent_decode_str(part)
        .decode_utf8_lossy()
        .into_owned()
}

impl ObjectBackend {
    /// A client for `config`'s bucket (no request is made yet).
    pub(crate) fn connect(config: &ObjectStoreConfig) -> Result<Self, StorageError> {
        // reqwest's TLS takes the process's rustls provider: the same ring provider as QUIC.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (bucket, prefix) = config.bucket_and_prefix()?;
        let mut builder = if config.from_env {
            AmazonS3Builder::from_env()
        } else {
            AmazonS3Builder::new().with_region("us-east-1")
        }
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch);
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some((id, secret)) = &config.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| config.invalid(&e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: Key::from_iter(prefix.split('/').filter(|p| !p.is_empty())),
        })
    }

    fn key(&self, path: &StoragePath) -> Key {
        path.components()
            .fold(self.prefix.clone(), |key, part| key.join(part))
    }

    fn reserved(&self, area: &str, name: &str) -> Key {
        self.prefix.clone().join(area).join(name)
    }

    /// What is at `path`.
    ///
    /// Asks whether `path` is a directory before asking for a file: a store that keeps objects
    /// as files (s3s-fs, for one) fails a HEAD of a directory's key instead of answering "not
    /// found".
    async fn find(&self, path: &StoragePath) -> Result<Found, Status> {
        if self.is_dir(path).await? {
            return Ok(Found::Directory);
        }
        match self.store.head(&self.key(path)).await {
            Ok(meta) => Ok(Found::File(meta)),
            Err(e) if is_not_found(&e) => Ok(Found::Nothing),
            Err(e) => Err(status(path, &e)),
        }
    }

    /// Whether `path` is a directory: the root, or a prefix some object lies below.
    async fn is_dir(&self, path: &StoragePath) -> Result<bool, Status> {
        if path.is_root() {
            return Ok(true);
        }
        match self.store.list(Some(&self.key(path))).next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(status(path, &e)),
        }
    }

    /// Refuses the root, and a path whose parent is not a directory.
    async fn parent_must_exist(&self, path: &StoragePath) -> Result<(), Status> {
        let Some(parent) = path.parent() else {
            return Err(Status::invalid_argument(
                "this operation needs a path below the storage root",
            ));
        };
        match self.find(&parent).await? {
            Found::Directory => Ok(()),
            Found::File(_) => Err(Status::failed_precondition(format!(
                "a component of `{path}` is not a directory"
            ))),
            Found::Nothing => Err(Status::not_found(format!(
                "directory `{parent}` does not exist"
            ))),
        }
    }

    pub(crate) async fn create_directory(&self, path: &StoragePath) -> Result<(), Status> {
        self.parent_must_exist(path).await?;
        if !matches!(self.find(path).await?, Found::Nothing) {
            return Err(Status::already_exists(format!("`{path}` already exists")));
        }
        let marker = self.key(path).join(DIR_MARKER);
        self.store
            .put(&marker, PutPayload::default())
            .await
            .map_err(|e| status(path, &e))?;
        Ok(())
    }

    /// After the application refused a created directory: removes it if nothing else was put
    /// in it since.
    pub(crate) async fn undo_create_directory(&self, path: &StoragePath) -> Result<(), Status> {
        let keys: Vec<Key> = self
            .store
            .list(Some(&self.key(path)))
            .map_ok(|meta| meta.location)
            .take(2)
            .try_collect()
            .await
            .map_err(|e| status(path, &e))?;
        let marker = self.key(path).join(DIR_MARKER);
        if keys != [marker.clone()] {
            return Err(Status::failed_precondition(format!(
                "`{path}` is not empty"
            )));
        }
        self.delete_key(path, &marker).await
    }

    async fn delete_key(&self, path: &StoragePath, key: &Key) -> Result<(), Status> {
        match self.store.delete(key).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(status(path, &e)),
        }
    }

    /// Every object at or below `path` (the file itself, or a directory's contents).
    fn objects(&self, path: &StoragePath) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.store.list(Some(&self.key(path)))
    }

    pub(crate) async fn delete_item(&self, path: &StoragePath) -> Result<(), Status> {
        if path.is_root() {
            return Err(Status::invalid_argument(
                "this operation needs a path below the storage root",
            ));
        }
        match self.find(path).await? {
            Found::File(_) => return self.delete_key(path, &self.key(path)).await,
            Found::Nothing => return Err(Status::not_found(format!("`{path}` does not exist"))),
            Found::Directory => {}
        }
        let keys = self.objects(path).map_ok(|meta| meta.location).boxed();
        self.store
            .delete_stream(keys)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| status(path, &e))?;
        Ok(())
    }

    pub(crate) async fn stat(&self, path: &StoragePath) -> Result<Entry, Status> {
        let name = path.file_name().unwrap_or("");
        match self.find(path).await? {
            Found::File(meta) => Ok(file_entry(name, &meta)),
            Found::Directory => Ok(dir_entry(name)),
            Found::Nothing => Err(Status::not_found(format!("`{path}` does not exist"))),
        }
    }

    /// Moves a file (copy, then delete) or a directory (each object in turn: not atomic; an
    /// interruption leaves some objects at each place, none lost).
    pub(crate) async fn move_item(
        &self,
        from: &StoragePath,
        to: &StoragePath,
        overwrite: bool,
    ) -> Result<(), Status> {
        if from.is_root() || to.is_root() {
            return Err(Status::invalid_argument(
                "this operation needs a path below the storage root",
            ));
        }
        let source = self.find(from).await?;
        if matches!(source, Found::Nothing) {
            return Err(Status::not_found(format!("`{from}` does not exist")));
        }
        match self.find(to).await? {
            Found::Directory => {
                return Err(Status::failed_precondition(format!(
                    "`{to}` is a directory; moving over a directory is refused"
                )))
            }
            Found::File(_) if !overwrite => {
                return Err(Status::already_exists(format!("`{to}` already exists")))
            }
            _ => {}
        }
        if to.as_str().starts_with(&format!("{from}/")) {
            return Err(Status::invalid_argument(format!(
                "`{from}` cannot be moved into itself"
            )));
        }
        self.parent_must_exist(to).await?;
        if let Found::File(_) = source {
            let (src, dst) = (self.key(from), self.key(to));
            self.store
                .copy(&src, &dst)
                .await
                .map_err(|e| status(to, &e))?;
            return self.delete_key(from, &src).await;
        }
        let (src, dst) = (self.key(from), self.key(to));
        let mut objects = self.objects(from);
        while let Some(meta) = objects.next().await {
            let meta = meta.map_err(|e| status(from, &e))?;
            let Some(rest) = meta.location.prefix_match(&src) else {
                continue;
            };
            let target = rest.fold(dst.clone(), |key, part| key.join(part));
            self.store
                .copy(&meta.location, &target)
                .await
                .map_err(|e| status(to, &e))?;
            self.delete_key(from, &meta.location).await?;
        }
        Ok(())
    }

    /// Lists `path` recursively, as the local tree does: names relative to it, sorted,
    /// directories included, reserved names hidden.
    pub(crate) async fn read_tree(
        &self,
        path: &StoragePath,
        max: usize,
    ) -> Result<Vec<Entry>, Status> {
        match self.find(path).await? {
            Found::Directory => {}
            Found::File(_) => {
                return Err(Status::failed_precondition(format!(
                    "a component of `{path}` is not a directory"
                )))
            }
            Found::Nothing => {
                return Err(Status::not_found(format!(
                    "directory `{path}` does not exist"
                )))
            }
        }
        let base = self.key(path);
        let mut dirs = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        let mut objects = self.objects(path);
        while let Some(meta) = objects.next().await {
            let meta = meta.map_err(|e| status(path, &e))?;
            let Some(rest) = meta.location.prefix_match(&base) else {
                continue;
            };
            let parts: Vec<String> = rest.map(|p| decode(p.as_ref())).collect();
            if parts.iter().any(|p| p.starts_with(RESERVED_PREFIX)) {
                // Reserved objects still make their directories exist (an empty directory's
                // marker), but are not listed themselves.
                if parts.last().is_some_and(|p| p == DIR_MARKER) {
                    let dir = &parts[..parts.len() - 1];
                    if !dir.iter().any(|p| p.starts_with(RESERVED_PREFIX)) {
                        for depth in 1..=dir.len() {
                            dirs.insert(dir[..depth].join("/"));
                        }
                    }
                }
                continue;
            }
            for depth in 1..parts.len() {
                dirs.insert(parts[..depth].join("/"));
            }
            out.push(file_entry(&parts.join("/"), &meta));
            if out.len() + dirs.len() > max {
                return Err(Status::resource_exhausted(format!(
                    "`{path}` holds more than {max} entries"
                )));
            }
        }
        out.extend(dirs.iter().map(|d| dir_entry(d)));
        if out.len() > max {
            return Err(Status::resource_exhausted(format!(
                "`{path}` holds more than {max} entries"
            )));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Opens a file for reading: its entry and its bytes.
    pub(crate) async fn open(
        &self,
        path: &StoragePath,
    ) -> Result<(Entry, BoxStream<'static, object_store::Result<Bytes>>), Status> {
        if self.is_dir(path).await? {
            return Err(Status::failed_precondition(format!(
                "`{path}` is a directory"
            )));
        }
        match self.store.get(&self.key(path)).await {
            Ok(got) => {
                let entry = file_entry(path.file_name().unwrap_or(""), &got.meta);
                Ok((entry, got.into_stream()))
            }
            Err(e) => Err(status(path, &e)),
        }
    }

    /// Prepares a write to `path`: checks the target and, for a resumable upload being resumed,
    /// finds the parts already stored.
    pub(crate) async fn begin_upload(
        &self,
        path: &StoragePath,
        overwrite: bool,
        resumable: Option<&str>,
        resume: bool,
    ) -> Result<ObjectUpload, Status> {
        self.parent_must_exist(path).await?;
        match self.find(path).await? {
            Found::Directory => {
                return Err(Status::failed_precondition(format!(
                    "`{path}` is a directory"
                )))
            }
            Found::File(_) if !overwrite => {
                return Err(Status::already_exists(format!(
                    "`{path}` already exists and the grant does not allow overwriting it"
                )))
            }
            _ => {}
        }
        let record = match resumable {
            Some(id) => self.reserved(UPLOADS, &format!("part-{id}")),
            None => self.reserved(UPLOADS, &format!("tmp-{}", random_hex()?)),
        };
        let mut upload = ObjectUpload {
            backend: self.clone(),
            path: path.clone(),
            key: self.key(path),
            record,
            resumable: resumable.is_some(),
            multipart: None,
            offset: 0,
            hasher: Some(blake3::Hasher::new()),
            pending: Vec::new(),
            pending_len: 0,
        };
        if let Some(saved) = self.load_record(&upload.record).await {
            if resume && saved.key == upload.key.as_ref() {
                upload.offset = saved.offset;
                // The stored parts cannot be read back before the upload completes: the
                // checksum is computed from the whole object then.
                upload.hasher = None;
                upload.multipart = Some(Multipart {
                    id: saved.id,
                    ahead: BTreeMap::new(),
                    parts: saved
                        .parts
                        .into_iter()
                        .map(|content_id| PartId { content_id })
                        .collect(),
                });
            } else {
                // A fresh start: the old parts are worthless.
                let key = Key::from(saved.key.as_str());
                let _ = self.store.abort_multipart(&key, &saved.id).await;
            }
        }
        Ok(upload)
    }

    async fn load_record(&self, record: &Key) -> Option<Record> {
        let bytes = self.store.get(record).await.ok()?.bytes().await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes multipart uploads and versions kept aside that are older than `max_age` (left by
    /// a crash, or resumable uploads never resumed). Returns how many were removed.
    pub(crate) async fn sweep(&self, max_age: Duration) -> usize {
        let now = SystemTime::now();
        let mut removed = 0;
        for area in [UPLOADS, ASIDE] {
            let mut objects = self.store.list(Some(&self.prefix.clone().join(area)));
            while let Some(Ok(meta)) = objects.next().await {
                let age = now
                    .duration_since(SystemTime::from(meta.last_modified))
                    .unwrap_or_default();
                if age < max_age {
                    continue;
                }
                if area == UPLOADS {
                    if let Some(saved) = self.load_record(&meta.location).await {
                        let key = Key::from(saved.key.as_str());
                        let _ = self.store.abort_multipart(&key, &saved.id).await;
                    }
                }
                if self.store.delete(&meta.location).await.is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Keeps the current version of `path` aside (for an undo), if there is one.
    pub(crate) async fn keep_aside(&self, path: &StoragePath) -> Result<Option<Key>, Status> {
        let aside = self.reserved(ASIDE, &random_hex()?);
        match self.store.copy(&self.key(path), &aside).await {
            Ok(()) => Ok(Some(aside)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(status(path, &e)),
        }
    }

    /// After the application recorded a new version: drops the previous one kept aside.
    pub(crate) async fn forget_aside(&self, path: &StoragePath, aside: Option<Key>) {
        if let Some(aside) = aside {
            if let Err(e) = self.delete_key(path, &aside).await {
                tracing::warn!(%path, reason = %e.message(), "cannot remove a replaced version");
            }
        }
    }

    /// After the application refused a new version: puts the previous one back, or removes
    /// the new one when there was none.
    pub(crate) async fn undo_upload(
        &self,
        path: &StoragePath,
        aside: Option<Key>,
    ) -> Result<(), Status> {
        let key = self.key(path);
        match aside {
            Some(aside) => {
                self.store
                    .copy(&aside, &key)
                    .await
                    .map_err(|e| status(path, &e))?;
                self.delete_key(path, &aside).await
            }
            None => self.delete_key(path, &key).await,
        }
    }

    /// Reads `path` whole to compute its checksum.
    async fn checksum(&self, path: &StoragePath) -> Result<blake3::Hash, Status> {
        let (_, mut bytes) = self.open(path).await?;
        let mut hasher = blake3::Hasher::new();
        while let Some(chunk) = bytes.next().await {
            hasher.update(&chunk.map_err(|e| status(path, &e))?);
        }
        Ok(hasher.finalize())
    }
}

/// What `.fluxon-uploads/` records of a multipart upload.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    /// The final key.
    key: String,
    /// The store's upload id.
    id: String,
    /// The stored parts' ids, in order.
    parts: Vec<String>,
    /// Bytes in those parts.
    offset: u64,
}

#[derive(Debug)]
struct Multipart {
    id: String,
    /// The stored parts without a gap from the first: what a resume continues after.
    parts: Vec<PartId>,
    /// Parts stored while one before them is still on its way (two are sent at once and may
    /// finish in either order), by index, with their lengths.
    ahead: BTreeMap<usize, (PartId, u64)>,
}

impl Multipart {
    /// Takes part `index`, stored, of `len` bytes: it and the parts stored ahead that now
    /// follow the prefix without a gap join it. Returns the bytes the prefix grew by.
    fn settle(&mut self, index: usize, part: PartId, len: u64) -> u64 {
        self.ahead.insert(index, (part, len));
        let mut grown = 0;
        while let Some((part, len)) = self.ahead.remove(&self.parts.len()) {
            self.parts.push(part);
            grown += len;
        }
        grown
    }
}

/// A write in progress to the object store.
#[derive(Debug)]
pub(crate) struct ObjectUpload {
    backend: ObjectBackend,
    path: StoragePath,
    key: Key,
    /// Where this upload is recorded once it is a multipart upload.
    record: Key,
    resumable: bool,
    multipart: Option<Multipart>,
    /// Bytes stored in completed parts (where a resume continues).
    pub(crate) offset: u64,
    /// The checksum so far; `None` for a resumed upload (computed from the object at the end).
    hasher: Option<blake3::Hasher>,
    /// Blocks received since the last part, as received (a part is sent without copying them).
    pending: Vec<Bytes>,
    /// Their total length.
    pending_len: usize,
}

impl ObjectUpload {
    fn store(&self) -> &AmazonS3 {
        &self.backend.store
    }

    /// Stores the received batches as parts, [`PARTS_IN_FLIGHT`] at a time; what is left
    /// (less than a part) waits for [`commit`](Self::commit).
    pub(crate) async fn write_batches(
        &mut self,
        batches: &mut mpsc::Receiver<Vec<Bytes>>,
    ) -> Result<(), Status> {
        let mut sending: JoinSet<(usize, object_store::Result<PartId>, u64)> = JoinSet::new();
        let result = self.pump(batches, &mut sending).await;
        // Whatever happened, the parts already sent are waited for (and recorded).
        while let Some(done) = sending.join_next().await {
            self.settle_part(done).await?;
        }
        result
    }

    async fn pump(
        &mut self,
        batches: &mut mpsc::Receiver<Vec<Bytes>>,
        sending: &mut JoinSet<(usize, object_store::Result<PartId>, u64)>,
    ) -> Result<(), Status> {
        loop {
            let batch = tokio::select! {
                // A stored part is recorded as soon as the store has it (a resume starts there).
                Some(done) = sending.join_next(), if !sending.is_empty() => {
                    self.settle_part(done).await?;
                    continue;
                }
                batch = batches.recv() => match batch {
                    Some(batch) => batch,
                    None => break,
                },
            };
            for chunk in batch {
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(&chunk);
                }
                self.pending_len += chunk.len();
                self.pending.push(chunk);
            }
            if self.pending_len >= PART_SIZE {
                // At least a part's worth (and less than one more block): one part, no copy.
                let part = self.take_pending();
                if sending.len() >= PARTS_IN_FLIGHT {
                    if let Some(done) = sending.join_next().await {
                        self.settle_part(done).await?;
                    }
                }
                self.send_part(part, sending).await?;
            }
        }
        Ok(())
    }

    /// The blocks received since the last part, as one payload.
    fn take_pending(&mut self) -> PutPayload {
        self.pending_len = 0;
        std::mem::take(&mut self.pending).into_iter().collect()
    }

    /// Starts the multipart upload if needed, then sends `part` on a task of its own.
    async fn send_part(
        &mut self,
        part: PutPayload,
        sending: &mut JoinSet<(usize, object_store::Result<PartId>, u64)>,
    ) -> Result<(), Status> {
        if self.multipart.is_none() {
            let id = self
                .store()
                .create_multipart(&self.key)
                .await
                .map_err(|e| status(&self.path, &e))?;
            self.multipart = Some(Multipart {
                id,
                parts: Vec::new(),
                ahead: BTreeMap::new(),
            });
            self.save_record().await?;
        }
        let Some(multipart) = &mut self.multipart else {
            return Err(Status::internal("multipart upload lost"));
        };
        let index = multipart.parts.len() + multipart.ahead.len() + sending.len();
        let (store, key, id) = (
            Arc::clone(&self.backend.store),
            self.key.clone(),
            multipart.id.clone(),
        );
        let len = part.content_length() as u64;
        sending.spawn(async move {
            let stored = store.put_part(&key, &id, index, part).await;
            (index, stored, len)
        });
        Ok(())
    }

    /// Records a finished part. Parts may finish in any order, but they are recorded (and
    /// counted in `offset`) only once every part before them is: the recorded parts are always
    /// a prefix of the file. One that fails fails the upload.
    async fn settle_part(
        &mut self,
        done: Result<(usize, object_store::Result<PartId>, u64), tokio::task::JoinError>,
    ) -> Result<(), Status> {
        let (index, stored, len) = done.map_err(|_| Status::internal("storage worker failed"))?;
        let part = stored.map_err(|e| status(&self.path, &e))?;
        let Some(multipart) = &mut self.multipart else {
            return Err(Status::internal("multipart upload lost"));
        };
        let advanced = multipart.settle(index, part, len);
        self.offset += advanced;
        if advanced > 0 && self.resumable {
            self.save_record().await?;
        }
        Ok(())
    }

    async fn save_record(&self) -> Result<(), Status> {
        let Some(multipart) = &self.multipart else {
            return Ok(());
        };
        let record = Record {
            key: self.key.to_string(),
            id: multipart.id.clone(),
            parts: multipart
                .parts
                .iter()
                .map(|p| p.content_id.clone())
                .collect(),
            offset: self.offset,
        };
        let body =
            serde_json::to_vec(&record).map_err(|_| Status::internal("cannot record an upload"))?;
        self.store()
            .put(&self.record, body.into())
            .await
            .map_err(|e| status(&self.path, &e))?;
        Ok(())
    }

    /// Makes the upload the object at its path and returns its checksum. Without `overwrite`,
    /// an object put there since the upload began makes this fail (checked just before the
    /// store completes a multipart upload; a single PUT is conditional).
    pub(crate) async fn commit(mut self, overwrite: bool) -> Result<blake3::Hash, Status> {
        let path = self.path.clone();
        let rest = self.take_pending();
        let Some(mut multipart) = self.multipart.take() else {
            let mode = if overwrite {
                PutMode::Overwrite
            } else {
                PutMode::Create
            };
            self.store()
                .put_opts(&self.key, rest, PutOptions::from(mode))
                .await
                .map_err(|e| status(&path, &e))?;
            return Ok(self.hasher.take().unwrap_or_default().finalize());
        };
        if rest.content_length() > 0 || multipart.parts.is_empty() {
            let index = multipart.parts.len();
            let part = self
                .store()
                .put_part(&self.key, &multipart.id, index, rest)
                .await
                .map_err(|e| status(&path, &e))?;
            multipart.parts.push(part);
        }
        if !overwrite && !matches!(self.backend.find(&path).await?, Found::Nothing) {
            let _ = self.store().abort_multipart(&self.key, &multipart.id).await;
            let _ = self.store().delete(&self.record).await;
            return Err(Status::already_exists(format!("`{path}` already exists")));
        }
        self.store()
            .complete_multipart(&self.key, &multipart.id, multipart.parts)
            .await
            .map_err(|e| status(&path, &e))?;
        if let Err(e) = self.store().delete(&self.record).await {
            tracing::warn!(%path, error = %e, "cannot remove an upload's record");
        }
        match self.hasher.take() {
            Some(hasher) => Ok(hasher.finalize()),
            None => self.backend.checksum(&path).await,
        }
    }

    /// Ends an upload that will not be committed: keeps the stored parts for a resume, or
    /// aborts the multipart upload.
    pub(crate) async fn abandon(mut self, keep: bool) {
        let Some(multipart) = self.multipart.take() else {
            return;
        };
        if keep {
            tracing::info!(offset = self.offset, "partial upload kept for a resume");
            return;
        }
        if let Err(e) = self.store().abort_multipart(&self.key, &multipart.id).await {
            tracing::warn!(path = %self.path, error = %e, "cannot abort a multipart upload");
        }
        let _ = self.store().delete(&self.record).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: usize) -> PartId {
        PartId {
            content_id: format!("etag-{n}"),
        }
    }

    fn ids(m: &Multipart) -> Vec<String> {
        m.parts.iter().map(|p| p.content_id.clone()).collect()
    }

    #[test]
    fn parts_finishing_out_of_order_are_recorded_in_order() {
        let mut m = Multipart {
            id: "u".into(),
            parts: Vec::new(),
            ahead: BTreeMap::new(),
        };
        // Part 1 is stored before part 0: nothing is recorded until part 0 is.
        assert_eq!(m.settle(1, part(1), 20), 0);
        assert!(m.parts.is_empty());
        assert_eq!(m.settle(0, part(0), 10), 30);
        assert_eq!(ids(&m), ["etag-0", "etag-1"]);
        assert_eq!(m.settle(3, part(3), 5), 0);
        assert_eq!(m.settle(2, part(2), 7), 12);
        assert_eq!(ids(&m), ["etag-0", "etag-1", "etag-2", "etag-3"]);
        assert!(m.ahead.is_empty());
    }

    #[test]
    fn a_resumed_upload_continues_after_its_recorded_parts() {
        let mut m = Multipart {
            id: "u".into(),
            parts: vec![part(0), part(1)],
            ahead: BTreeMap::new(),
        };
        assert_eq!(m.settle(2, part(2), 8), 8);
        assert_eq!(ids(&m).len(), 3);
    }
}
