//! The cloud example: the original Fluxon's cloud-storage application on codegen, fluxon-db,
//! fluxon-storage and fluxon-app.
//!
//! Routes never touch file contents: they check that the caller may do what they ask (one
//! shared helper, [`Service::target`]) and answer with a signed storage grant; the client
//! performs the operation on a storage stream. Each owner's files live under `u<user id>/` in
//! the storage root.
//!
//! The database follows the bytes, never runs ahead of them: the storage service's completion
//! hooks ([`Service`] implements [`StorageHooks`]) record a file, a folder or a delete in one
//! transaction once storage has made it durable, and the hook's refusal undoes the change in
//! storage. So a refused, interrupted or killed upload leaves no entry behind.
//!
//! The quota is enforced twice. A write grant reserves its declared size (a [`Reservation`],
//! for [`RESERVATION_TTL`] seconds) and caps the upload at exactly that size, so the storage
//! service cuts off a client that sends more; when the upload completes, the reservation
//! becomes the file (or, expired, the quota is checked again); an upload that stores nothing
//! releases it at once.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fluxon_db::{AsyncDatabase, Handle, Password};
use fluxon_server::grant::{normalize_path, Grant, Op, StoragePath};
use fluxon_server::{BoxFuture, Request, Router, Status};
use fluxon_storage::{StorageEvent, StorageHooks};

/// Everything generated for package `cloud`.
pub mod cloud {
    fluxon_codegen::include_schema!("cloud");
}

use cloud::models::{Directory, File, FileMetadata, Owner, Reservation, User};
use cloud::{
    Account, CreateOwnerRequest, Credentials, GrantReply, OwnerInfo, PathRequest,
    StorageGrantRequest, TreeEntry, TreeReply, Usage, WriteFileRequest,
};

/// The application's name: the server binary prints `cloud listening on ADDR`.
pub const APP_NAME: &str = "cloud";

/// Quota of an owner who asks for none, and the largest one granted.
pub const DEFAULT_STORAGE_LIMIT: i64 = 1 << 30;

/// Seconds a write grant's reservation holds quota.
pub const RESERVATION_TTL: i64 = 3600;

/// Seconds after its expiry an unused reservation is deleted (until then a late upload still
/// finds where it was meant to go).
const STALE_RESERVATION: i64 = 24 * 3600;

/// The cloud service over its database: the routes, and the storage service's hooks.
#[derive(Debug, Clone)]
pub struct Service {
    db: Arc<AsyncDatabase>,
}

impl Service {
    /// The service over `db`.
    pub fn new(db: Arc<AsyncDatabase>) -> Self {
        Self { db }
    }
}

/// The cloud server as a fluxon-app application (what `cloud-server` runs): the models and
/// their schema versions, the routes, cloud storage on the main endpoint, and the storage hooks
/// that record each change once storage has made it durable.
pub fn app() -> fluxon_app::App {
    fluxon_app::App::new(APP_NAME)
        .about("Fluxon's cloud example: owners with quotas, folders and files")
        .models(cloud::models::all())
        .schema_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schema"))
        .cloud_storage(true)
        .router_with(|ctx| router(ctx.database()))
        .storage_hooks_with(|ctx| Service::new(ctx.database()))
}

/// The server's router: the generated `Cloud` routes plus schema reflection.
pub fn router(db: Arc<AsyncDatabase>) -> Router {
    cloud::CloudServer::new(Service::new(db))
        .into_router()
        .merge(cloud::reflection_router())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Where an owner's files live in storage.
fn owner_dir(owner: i64) -> String {
    format!("u{owner}")
}

/// What a request's `(root, path)` designates, once every ownership check has passed.
#[derive(Debug)]
pub struct Target {
    /// The caller, an owner.
    pub owner: Owner,
    /// The path below the root, normalized ("" for the root itself).
    pub path: StoragePath,
    /// The existing directory that holds the item (the root itself when the path is the root).
    pub parent: Directory,
    /// The item, when it is an existing directory.
    pub directory: Option<Directory>,
    /// The item, when it is an existing file.
    pub file: Option<File>,
}

impl Target {
    /// The item's path in storage.
    pub fn storage_path(&self) -> String {
        if self.path.is_root() {
            owner_dir(self.owner.user)
        } else {
            format!("{}/{}", owner_dir(self.owner.user), self.path.as_str())
        }
    }

    /// The item's name, or an error for the root itself.
    fn name(&self) -> Result<&str, Status> {
        self.path.file_name().ok_or_else(|| {
            Status::invalid_argument("the root directory itself cannot be used here")
        })
    }
}

/// An owner's usage: stored bytes plus what live reservations hold.
fn usage(owner: &Owner, reserved: i64) -> Usage {
    Usage {
        storage_limit: owner.storage_limit,
        storage_used: owner.storage_used + reserved,
    }
}

/// Bytes held by `owner`'s reservations that have not expired at `now`, but `except`'s.
fn reserved(tx: &Handle<'_>, owner: i64, now: i64, except: Option<i64>) -> fluxon_db::Result<i64> {
    let live = tx
        .select::<Reservation>()
        .filter(Reservation::OWNER.eq(owner) & Reservation::EXPIRES_AT.gt(now))
        .fetch()?;
    Ok(live
        .iter()
        .filter(|r| Some(r.id) != except)
        .map(|r| r.size)
        .sum())
}

/// The owner and the components below the owner's root of a storage path (`u7/docs/a.txt`).
fn split_storage_path(path: &StoragePath) -> Result<(i64, Vec<&str>), Status> {
    let mut parts = path.components();
    let owner = parts
        .next()
        .and_then(|dir| dir.strip_prefix('u'))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| Status::invalid_argument(format!("`{path}` is not an owner's path")))?;
    Ok((owner, parts.collect()))
}

/// The directory at `components` below `owner`'s root (the root for none), if recorded.
fn directory_at(
    tx: &Handle<'_>,
    owner: i64,
    components: &[&str],
) -> fluxon_db::Result<Option<Directory>> {
    let mut dir = tx
        .select::<Directory>()
        .filter(Directory::OWNER.eq(owner) & Directory::PARENT.is_null())
        .first()?;
    for name in components {
        let Some(parent) = dir else { return Ok(None) };
        dir = tx
            .select::<Directory>()
            .filter(Directory::PARENT.eq(Some(parent.id)) & Directory::NAME.eq(*name))
            .first()?;
    }
    Ok(dir)
}

/// Bytes of the files in `dir` and below.
fn bytes_below(tx: &Handle<'_>, dir: i64) -> fluxon_db::Result<i64> {
    let mut total = 0;
    let mut pending = vec![dir];
    while let Some(id) = pending.pop() {
        for f in tx.select::<File>().filter(File::DIRECTORY.eq(id)).fetch()? {
            total += f.size;
        }
        for d in tx
            .select::<Directory>()
            .filter(Directory::PARENT.eq(Some(id)))
            .fetch()?
        {
            pending.push(d.id);
        }
    }
    Ok(total)
}

/// The signed grant as the reply field.
fn grant_of(grant: Result<Grant, Status>) -> Result<Option<Grant>, Status> {
    grant.map(Some)
}

impl Service {
    /// The one place ownership is checked. The caller must be logged in and an owner; `root`
    /// must be a root directory (no parent) that the caller owns; `path` must be a valid
    /// relative path; every directory on the way to its last component must exist under that
    /// root. Returns the item's parent directory and the item itself when it exists.
    pub async fn target<T>(
        &self,
        req: &Request<T>,
        root: i64,
        path: &str,
    ) -> Result<Target, Status> {
        let user = req.require_user()?;
        let owner: Owner = self.db.get(user).await?.ok_or_else(|| {
            Status::failed_precondition("not an owner yet: call create_owner first")
        })?;
        let root_dir: Option<Directory> = self.db.get(root).await?;
        let mut parent = match root_dir {
            Some(d) if d.owner == owner.user && d.parent.is_none() => d,
            // Someone else's directory and a missing one look the same.
            _ => {
                return Err(Status::permission_denied(format!(
                    "{root} is not one of your root directories"
                )))
            }
        };
        let path = normalize_path(path)
            .map_err(|e| Status::invalid_argument(format!("bad path {path:?}: {e}")))?;
        let components: Vec<&str> = path.components().collect();
        if !parent.stored && !components.is_empty() {
            return Err(Status::failed_precondition(
                "your root directory is not in storage yet: create it with the grant \
                 create_owner answered (call create_owner again for a new one)",
            ));
        }
        let Some((last, ancestors)) = components.split_last() else {
            return Ok(Target {
                owner,
                path: StoragePath::root(),
                directory: Some(parent.clone()),
                parent,
                file: None,
            });
        };
        for name in ancestors {
            parent = self
                .child_directory(&owner, parent.id, name)
                .await?
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "folder {name:?} does not exist in {}",
                        path.as_str()
                    ))
                })?;
        }
        let directory = self.child_directory(&owner, parent.id, last).await?;
        let file = self
            .db
            .select::<File>()
            .filter(File::DIRECTORY.eq(parent.id) & File::NAME.eq(*last))
            .first()
            .await?;
        Ok(Target {
            owner,
            path,
            parent,
            directory,
            file,
        })
    }

    async fn child_directory(
        &self,
        owner: &Owner,
        parent: i64,
        name: &str,
    ) -> Result<Option<Directory>, Status> {
        Ok(self
            .db
            .select::<Directory>()
            .filter(
                Directory::OWNER.eq(owner.user)
                    & Directory::PARENT.eq(Some(parent))
                    & Directory::NAME.eq(name),
            )
            .first()
            .await?)
    }

    /// `owner`'s usage now, reservations included.
    async fn usage_of(&self, owner: &Owner) -> Result<Usage, Status> {
        let (id, now) = (owner.user, now_secs());
        let held = self.db.read(move |h| reserved(h, id, now, None)).await?;
        Ok(usage(owner, held))
    }

    /// Every directory and file below `dir`, as paths relative to it, sorted.
    async fn tree(&self, dir: &Directory) -> Result<Vec<TreeEntry>, Status> {
        let mut out = Vec::new();
        let mut pending = vec![(dir.id, String::new())];
        while let Some((id, prefix)) = pending.pop() {
            let dirs = self
                .db
                .select::<Directory>()
                .filter(Directory::PARENT.eq(Some(id)))
                .fetch()
                .await?;
            for d in dirs {
                let path = format!("{prefix}{}", d.name);
                out.push(TreeEntry {
                    path: path.clone(),
                    directory: true,
                    size: 0,
                });
                pending.push((d.id, format!("{path}/")));
            }
            let files = self
                .db
                .select::<File>()
                .filter(File::DIRECTORY.eq(id))
                .fetch()
                .await?;
            for f in files {
                out.push(TreeEntry {
                    path: format!("{prefix}{}", f.name),
                    directory: false,
                    size: f.size,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

impl cloud::Cloud for Service {
    async fn signup(&self, req: Request<Credentials>) -> Result<Account, Status> {
        let username = req.username.trim().to_owned();
        if username.is_empty() {
            return Err(Status::invalid_argument("username must not be empty"));
        }
        if req.password.len() < 8 {
            return Err(Status::invalid_argument(
                "the password must have at least 8 characters",
            ));
        }
        let user_id = self
            .db
            .insert(User {
                username: username.clone(),
                // Hashed with argon2id by the database layer before it is stored.
                password: Password::new(req.password.clone()),
                ..User::default()
            })
            .await?;
        req.login(user_id).await?;
        Ok(Account { user_id, username })
    }

    async fn login(&self, req: Request<Credentials>) -> Result<Account, Status> {
        let user_id = self
            .db
            .verify_password(
                User::USERNAME.eq(req.username.as_str()),
                req.password.clone(),
            )
            .await?
            .ok_or_else(|| Status::unauthenticated("wrong username or password"))?;
        req.login(user_id).await?;
        Ok(Account {
            user_id,
            username: req.username.clone(),
        })
    }

    async fn create_owner(&self, req: Request<CreateOwnerRequest>) -> Result<OwnerInfo, Status> {
        let user = req.require_user()?;
        let limit = req.storage_limit.unwrap_or(DEFAULT_STORAGE_LIMIT);
        if !(1..=DEFAULT_STORAGE_LIMIT).contains(&limit) {
            return Err(Status::invalid_argument(format!(
                "storage_limit must be between 1 and {DEFAULT_STORAGE_LIMIT} bytes"
            )));
        }
        // The owner and its root are recorded now, the root as not yet stored: the client
        // creates it in storage with the grant below, and the hook marks it stored. A client
        // that never did calls again and gets a new grant for the same root.
        let (owner, root) = self
            .db
            .transaction(move |tx| -> Result<(Owner, i64), Status> {
                if let Some(owner) = tx.get::<Owner>(user)? {
                    let root = directory_at(tx, user, &[])?
                        .ok_or_else(|| Status::internal("an owner without a root directory"))?;
                    if root.stored {
                        return Err(Status::already_exists("already an owner"));
                    }
                    return Ok((owner, root.id));
                }
                let owner = Owner {
                    user,
                    storage_limit: limit,
                    storage_used: 0,
                };
                tx.insert(&owner)?;
                let root = tx.insert(&Directory {
                    owner: user,
                    parent: None,
                    name: String::new(),
                    stored: false,
                    ..Directory::default()
                })?;
                Ok((owner, root))
            })
            .await?;
        let storage_path = owner_dir(user);
        Ok(OwnerInfo {
            root,
            usage: Some(usage(&owner, 0)),
            grant: grant_of(req.grant(Op::CreateDirectory, storage_path.as_str()).sign())?,
            storage_path,
        })
    }

    async fn create_folder(&self, req: Request<PathRequest>) -> Result<GrantReply, Status> {
        self.create_folder_at(&req, req.root, &req.path).await
    }

    async fn write_file(&self, req: Request<WriteFileRequest>) -> Result<GrantReply, Status> {
        self.write_file_at(&req, req.root, &req.path, req.size, &req.mime_type)
            .await
    }

    async fn read_file(&self, req: Request<PathRequest>) -> Result<GrantReply, Status> {
        self.read_file_at(&req, req.root, &req.path).await
    }

    async fn delete_item(&self, req: Request<PathRequest>) -> Result<GrantReply, Status> {
        self.delete_item_at(&req, req.root, &req.path).await
    }

    async fn read_tree(&self, req: Request<PathRequest>) -> Result<TreeReply, Status> {
        self.read_tree_at(&req, req.root, &req.path).await
    }

    async fn storage_grant(&self, req: Request<StorageGrantRequest>) -> Result<GrantReply, Status> {
        let root = match req.root {
            0 => self.own_root(req.require_user()?).await?,
            root => root,
        };
        let path = req.path.as_str();
        let is_root = normalize_path(path).is_ok_and(|p| p.is_root());
        match req.op.as_str() {
            // The root itself: create_owner recorded it, this makes it in storage.
            "create_directory" if is_root => {
                let t = self.target(&req, root, path).await?;
                let storage_path = t.storage_path();
                Ok(GrantReply {
                    grant: grant_of(req.grant(Op::CreateDirectory, storage_path.as_str()).sign())?,
                    storage_path,
                    size: 0,
                    usage: Some(self.usage_of(&t.owner).await?),
                })
            }
            "create_directory" => self.create_folder_at(&req, root, path).await,
            "write_file" => self.write_file_at(&req, root, path, req.size, "").await,
            "read_file" => self.read_file_at(&req, root, path).await,
            "delete_item" => self.delete_item_at(&req, root, path).await,
            "read_tree" => {
                let tree = self.read_tree_at(&req, root, path).await?;
                Ok(GrantReply {
                    grant: tree.grant,
                    storage_path: tree.storage_path,
                    size: 0,
                    usage: tree.usage,
                })
            }
            other => Err(Status::invalid_argument(format!(
                "unknown operation {other:?}: create_directory, write_file, read_file, \
                 delete_item or read_tree"
            ))),
        }
    }
}

/// The operations, for the routes above and for [`cloud::Cloud::storage_grant`]: each checks
/// the target with [`Service::target`], records the change and signs a grant for it.
impl Service {
    /// The root directory `create_owner` made for `user`.
    async fn own_root(&self, user: i64) -> Result<i64, Status> {
        let root = self
            .db
            .select::<Directory>()
            .filter(Directory::OWNER.eq(user) & Directory::PARENT.is_null())
            .first()
            .await?;
        root.map(|d| d.id)
            .ok_or_else(|| Status::failed_precondition("not an owner yet: call create_owner first"))
    }

    async fn create_folder_at<T>(
        &self,
        req: &Request<T>,
        root: i64,
        path: &str,
    ) -> Result<GrantReply, Status> {
        let t = self.target(req, root, path).await?;
        t.name()?;
        if t.directory.is_some() || t.file.is_some() {
            return Err(Status::already_exists(format!(
                "{} already exists",
                t.path.as_str()
            )));
        }
        // Recorded by the hook once storage has made it.
        let storage_path = t.storage_path();
        Ok(GrantReply {
            grant: grant_of(req.grant(Op::CreateDirectory, storage_path.as_str()).sign())?,
            storage_path,
            size: 0,
            usage: Some(self.usage_of(&t.owner).await?),
        })
    }

    async fn write_file_at<T>(
        &self,
        req: &Request<T>,
        root: i64,
        path: &str,
        size: i64,
        mime_type: &str,
    ) -> Result<GrantReply, Status> {
        let t = self.target(req, root, path).await?;
        let name = t.name()?.to_owned();
        if t.directory.is_some() {
            return Err(Status::already_exists(format!(
                "{} is a folder",
                t.path.as_str()
            )));
        }
        if size < 0 {
            return Err(Status::invalid_argument("size must not be negative"));
        }
        let mime = if mime_type.trim().is_empty() {
            "application/octet-stream".to_owned()
        } else {
            mime_type.trim().to_owned()
        };
        let (owner_id, dir_id, overwrite) = (t.owner.user, t.parent.id, t.file.is_some());
        let storage_path = t.storage_path();
        let cap = u64::try_from(size).unwrap_or(0);
        let grant = req
            .grant(Op::WriteFile, storage_path.as_str())
            .max_bytes(cap)
            .overwrite(overwrite)
            .sign()?;
        let nonce = grant.nonce.clone();
        // Reserve the size from the quota: the hook turns the reservation into the file.
        let used = self
            .db
            .transaction(move |tx| -> Result<Usage, Status> {
                let owner: Owner = tx
                    .get(owner_id)?
                    .ok_or_else(|| Status::failed_precondition("the owner no longer exists"))?;
                let now = now_secs();
                tx.delete::<Reservation>()
                    .filter(
                        Reservation::OWNER.eq(owner_id)
                            & Reservation::EXPIRES_AT.lt(now - STALE_RESERVATION),
                    )
                    .execute()?;
                let replaced = tx
                    .select::<File>()
                    .filter(File::DIRECTORY.eq(dir_id) & File::NAME.eq(name.as_str()))
                    .first()?
                    .map_or(0, |f| f.size);
                let held = reserved(tx, owner_id, now, None)?;
                let remaining = owner.storage_limit - (owner.storage_used - replaced) - held;
                if size > remaining {
                    return Err(Status::resource_exhausted(format!(
                        "quota exceeded: {size} bytes asked, {remaining} of {} left",
                        owner.storage_limit
                    )));
                }
                tx.insert(&Reservation {
                    owner: owner_id,
                    grant_nonce: nonce,
                    directory: dir_id,
                    name,
                    size,
                    mime_type: mime,
                    expires_at: now + RESERVATION_TTL,
                    ..Reservation::default()
                })?;
                Ok(usage(&owner, held + size))
            })
            .await?;
        Ok(GrantReply {
            grant: Some(grant),
            storage_path,
            size,
            usage: Some(used),
        })
    }

    async fn read_file_at<T>(
        &self,
        req: &Request<T>,
        root: i64,
        path: &str,
    ) -> Result<GrantReply, Status> {
        let t = self.target(req, root, path).await?;
        let file = t
            .file
            .as_ref()
            .ok_or_else(|| Status::not_found(format!("no file {}", t.path.as_str())))?;
        let storage_path = t.storage_path();
        Ok(GrantReply {
            grant: grant_of(req.grant(Op::ReadFile, storage_path.as_str()).sign())?,
            size: file.size,
            storage_path,
            usage: Some(self.usage_of(&t.owner).await?),
        })
    }

    async fn delete_item_at<T>(
        &self,
        req: &Request<T>,
        root: i64,
        path: &str,
    ) -> Result<GrantReply, Status> {
        let t = self.target(req, root, path).await?;
        t.name()?;
        // What the delete will free; the hook deletes the rows once storage has.
        let freed = match (&t.file, &t.directory) {
            (Some(f), _) => f.size,
            (None, Some(d)) => {
                let id = d.id;
                self.db.read(move |h| bytes_below(h, id)).await?
            }
            (None, None) => {
                return Err(Status::not_found(format!(
                    "no file or folder {}",
                    t.path.as_str()
                )))
            }
        };
        let storage_path = t.storage_path();
        Ok(GrantReply {
            grant: grant_of(req.grant(Op::DeleteItem, storage_path.as_str()).sign())?,
            storage_path,
            size: freed,
            usage: Some(self.usage_of(&t.owner).await?),
        })
    }

    async fn read_tree_at<T>(
        &self,
        req: &Request<T>,
        root: i64,
        path: &str,
    ) -> Result<TreeReply, Status> {
        let t = self.target(req, root, path).await?;
        let dir = t
            .directory
            .as_ref()
            .ok_or_else(|| Status::not_found(format!("no folder {}", t.path.as_str())))?;
        let entries = self.tree(dir).await?;
        let storage_path = t.storage_path();
        Ok(TreeReply {
            entries,
            grant: grant_of(req.grant(Op::ReadTree, storage_path.as_str()).sign())?,
            storage_path,
            usage: Some(self.usage_of(&t.owner).await?),
        })
    }
}

/// The storage service's side: each change is recorded once storage has made it durable, in
/// one transaction; an error makes storage undo the change.
impl StorageHooks for Service {
    fn completed(&self, event: StorageEvent) -> BoxFuture<Result<(), Status>> {
        let db = Arc::clone(&self.db);
        Box::pin(async move {
            db.transaction(move |tx| match event.op {
                Op::WriteFile => file_stored(tx, &event),
                Op::CreateDirectory => directory_created(tx, &event),
                Op::DeleteItem => item_deleted(tx, &event),
                // This application hands out no other write grants.
                _ => Err(Status::failed_precondition(format!(
                    "this application does not record {:?}",
                    event.op
                ))),
            })
            .await
        })
    }

    fn abandoned(&self, event: StorageEvent) -> BoxFuture<()> {
        let db = Arc::clone(&self.db);
        Box::pin(async move {
            let released = db
                .delete::<Reservation>()
                .filter(Reservation::GRANT_NONCE.eq(event.grant_nonce))
                .execute()
                .await;
            if let Err(e) = released {
                tracing::warn!(error = %e, path = %event.path, "cannot release a reservation; it expires on its own");
            }
        })
    }
}

/// A write is durable: its reservation becomes the file (created or replaced), and the quota
/// counts its actual size.
fn file_stored(tx: &Handle<'_>, event: &StorageEvent) -> Result<(), Status> {
    let reservation = tx
        .select::<Reservation>()
        .filter(Reservation::GRANT_NONCE.eq(event.grant_nonce.clone()))
        .first()?
        .ok_or_else(|| {
            Status::failed_precondition(format!(
                "no reservation for the upload of {}: ask write_file for a new grant",
                event.path
            ))
        })?;
    let mut owner: Owner = tx
        .get(reservation.owner)?
        .ok_or_else(|| Status::failed_precondition("the owner no longer exists"))?;
    let size = i64::try_from(event.size)
        .map_err(|_| Status::invalid_argument("a file larger than any quota"))?;
    let existing = tx
        .select::<File>()
        .filter(
            File::DIRECTORY.eq(reservation.directory) & File::NAME.eq(reservation.name.as_str()),
        )
        .first()?;
    let replaced = existing.as_ref().map_or(0, |f| f.size);
    let now = now_secs();
    if reservation.expires_at <= now {
        // The reservation held nothing any more: the quota decides now.
        let held = reserved(tx, owner.user, now, Some(reservation.id))?;
        let remaining = owner.storage_limit - (owner.storage_used - replaced) - held;
        if size > remaining {
            return Err(Status::resource_exhausted(format!(
                "quota exceeded: the upload's reservation expired and {size} bytes no longer fit \
                 ({remaining} of {} left)",
                owner.storage_limit
            )));
        }
    }
    match existing {
        Some(f) => {
            tx.update::<File>()
                .set(File::SIZE, size)
                .set(File::CHECKSUM, event.checksum.clone())
                .filter(File::ID.eq(f.id))
                .execute()?;
            tx.update::<FileMetadata>()
                .set(FileMetadata::MIME_TYPE, reservation.mime_type.as_str())
                .filter(FileMetadata::FILE.eq(f.id))
                .execute()?;
        }
        None => {
            let id = tx.insert(&File {
                owner: owner.user,
                directory: reservation.directory,
                name: reservation.name.clone(),
                size,
                checksum: event.checksum.clone(),
                ..File::default()
            })?;
            tx.insert(&FileMetadata {
                file: id,
                mime_type: if reservation.mime_type.is_empty() {
                    "application/octet-stream".to_owned()
                } else {
                    reservation.mime_type.clone()
                },
            })?;
        }
    }
    owner.storage_used += size - replaced;
    tx.update::<Owner>()
        .set(Owner::STORAGE_USED, owner.storage_used)
        .filter(Owner::USER.eq(owner.user))
        .execute()?;
    tx.delete_by_id::<Reservation>(reservation.id)?;
    Ok(())
}

/// A directory exists in storage: an owner's root is marked stored; another is recorded.
fn directory_created(tx: &Handle<'_>, event: &StorageEvent) -> Result<(), Status> {
    let (owner, components) = split_storage_path(&event.path)?;
    let Some((name, ancestors)) = components.split_last() else {
        tx.update::<Directory>()
            .set(Directory::STORED, true)
            .filter(Directory::OWNER.eq(owner) & Directory::PARENT.is_null())
            .execute()?;
        return Ok(());
    };
    let parent = directory_at(tx, owner, ancestors)?.ok_or_else(|| {
        Status::not_found(format!("the folder holding {} is not recorded", event.path))
    })?;
    let exists = tx
        .select::<Directory>()
        .filter(Directory::PARENT.eq(Some(parent.id)) & Directory::NAME.eq(*name))
        .exists()?;
    if !exists {
        tx.insert(&Directory {
            owner,
            parent: Some(parent.id),
            name: (*name).to_owned(),
            ..Directory::default()
        })?;
    }
    Ok(())
}

/// A file or folder is gone from storage: its rows go (a folder's cascade to everything below)
/// and the quota frees their bytes.
fn item_deleted(tx: &Handle<'_>, event: &StorageEvent) -> Result<(), Status> {
    let (owner_id, components) = split_storage_path(&event.path)?;
    let Some((name, ancestors)) = components.split_last() else {
        return Err(Status::failed_precondition(
            "an owner's root is not deleted",
        ));
    };
    let Some(parent) = directory_at(tx, owner_id, ancestors)? else {
        return Ok(()); // already gone from the database
    };
    let file = tx
        .select::<File>()
        .filter(File::DIRECTORY.eq(parent.id) & File::NAME.eq(*name))
        .first()?;
    let freed = if let Some(f) = file {
        tx.delete_by_id::<File>(f.id)?;
        f.size
    } else if let Some(d) = tx
        .select::<Directory>()
        .filter(Directory::PARENT.eq(Some(parent.id)) & Directory::NAME.eq(*name))
        .first()?
    {
        let freed = bytes_below(tx, d.id)?;
        tx.delete_by_id::<Directory>(d.id)?; // cascades to everything below
        freed
    } else {
        return Ok(());
    };
    if let Some(mut owner) = tx.get::<Owner>(owner_id)? {
        owner.storage_used = (owner.storage_used - freed).max(0);
        tx.update::<Owner>()
            .set(Owner::STORAGE_USED, owner.storage_used)
            .filter(Owner::USER.eq(owner_id))
            .execute()?;
    }
    Ok(())
}
