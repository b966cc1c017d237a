//! The cloud example: the original Fluxon's cloud-storage application on codegen, fluxon-db,
//! fluxon-storage and fluxon-app.
//!
//! Routes never touch file contents: they check that the caller may do what they ask (one
//! shared helper, [`Service::target`]), record it in the database and answer with a signed
//! storage grant; the client performs the operation on a storage stream. Each owner's files
//! live under `u<user id>/` in the storage root. The quota is enforced by the grant: a write
//! reserves its declared size from the owner's remaining quota and the grant caps the upload
//! at exactly that size, so the storage service cuts off a client that sends more.

use std::sync::Arc;

use fluxon_db::{AsyncDatabase, Password};
use fluxon_server::grant::{normalize_path, Grant, Op, StoragePath};
use fluxon_server::{Request, Router, Status};

/// Everything generated for package `cloud`.
pub mod cloud {
    fluxon_codegen::include_schema!("cloud");
}

use cloud::models::{Directory, File, FileMetadata, Owner, User};
use cloud::{
    Account, CreateOwnerRequest, Credentials, GrantReply, OwnerInfo, PathRequest,
    StorageGrantRequest, TreeEntry, TreeReply, Usage, WriteFileRequest,
};

/// The application's name: the server binary prints `cloud listening on ADDR`.
pub const APP_NAME: &str = "cloud";

/// Quota of an owner who asks for none, and the largest one granted.
pub const DEFAULT_STORAGE_LIMIT: i64 = 1 << 30;

/// The cloud service over its database.
#[derive(Debug, Clone)]
pub struct Service {
    db: Arc<AsyncDatabase>,
}

/// The server's router: the generated `Cloud` routes plus schema reflection.
pub fn router(db: Arc<AsyncDatabase>) -> Router {
    cloud::CloudServer::new(Service { db })
        .into_router()
        .merge(cloud::reflection_router())
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

    fn usage(&self) -> Usage {
        usage(&self.owner)
    }
}

fn usage(owner: &Owner) -> Usage {
    Usage {
        storage_limit: owner.storage_limit,
        storage_used: owner.storage_used,
    }
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
        let owner = Owner {
            user,
            storage_limit: limit,
            storage_used: 0,
        };
        let row = owner.clone();
        let root = self
            .db
            .transaction(move |tx| -> Result<i64, Status> {
                tx.insert(&row).map_err(|e| match e.kind() {
                    fluxon_db::ErrorKind::AlreadyExists => {
                        Status::already_exists("already an owner")
                    }
                    _ => e.into(),
                })?;
                Ok(tx.insert(&Directory {
                    owner: row.user,
                    parent: None,
                    name: String::new(),
                    ..Directory::default()
                })?)
            })
            .await?;
        let storage_path = owner_dir(user);
        Ok(OwnerInfo {
            root,
            usage: Some(usage(&owner)),
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
                    usage: Some(t.usage()),
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
        let name = t.name()?.to_owned();
        if t.directory.is_some() || t.file.is_some() {
            return Err(Status::already_exists(format!(
                "{} already exists",
                t.path.as_str()
            )));
        }
        self.db
            .insert(Directory {
                owner: t.owner.user,
                parent: Some(t.parent.id),
                name,
                ..Directory::default()
            })
            .await?;
        let storage_path = t.storage_path();
        Ok(GrantReply {
            grant: grant_of(req.grant(Op::CreateDirectory, storage_path.as_str()).sign())?,
            storage_path,
            size: 0,
            usage: Some(t.usage()),
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
        // Reserve the size from the quota, atomically with recording the file.
        let owner = self
            .db
            .transaction(move |tx| -> Result<Owner, Status> {
                let mut owner: Owner = tx
                    .get(owner_id)?
                    .ok_or_else(|| Status::failed_precondition("the owner no longer exists"))?;
                let existing = tx
                    .select::<File>()
                    .filter(File::DIRECTORY.eq(dir_id) & File::NAME.eq(name.as_str()))
                    .first()?;
                let replaced = existing.as_ref().map_or(0, |f| f.size);
                let remaining = owner.storage_limit - (owner.storage_used - replaced);
                if size > remaining {
                    return Err(Status::resource_exhausted(format!(
                        "quota exceeded: {size} bytes asked, {remaining} of {} left",
                        owner.storage_limit
                    )));
                }
                match existing {
                    Some(f) => {
                        tx.update::<File>()
                            .set(File::SIZE, size)
                            .filter(File::ID.eq(f.id))
                            .execute()?;
                        tx.update::<FileMetadata>()
                            .set(FileMetadata::MIME_TYPE, mime.as_str())
                            .filter(FileMetadata::FILE.eq(f.id))
                            .execute()?;
                    }
                    None => {
                        let id = tx.insert(&File {
                            owner: owner_id,
                            directory: dir_id,
                            name,
                            size,
                            ..File::default()
                        })?;
                        tx.insert(&FileMetadata {
                            file: id,
                            mime_type: mime,
                        })?;
                    }
                }
                owner.storage_used += size - replaced;
                tx.update::<Owner>()
                    .set(Owner::STORAGE_USED, owner.storage_used)
                    .filter(Owner::USER.eq(owner_id))
                    .execute()?;
                Ok(owner)
            })
            .await?;
        let storage_path = t.storage_path();
        let cap = u64::try_from(size).unwrap_or(0);
        let grant = req
            .grant(Op::WriteFile, storage_path.as_str())
            .max_bytes(cap)
            .overwrite(overwrite)
            .sign();
        Ok(GrantReply {
            grant: grant_of(grant)?,
            storage_path,
            size,
            usage: Some(usage(&owner)),
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
            usage: Some(t.usage()),
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
        let freed = match (&t.file, &t.directory) {
            (Some(f), _) => {
                let id = f.id;
                self.db
                    .transaction(move |tx| -> Result<(), Status> {
                        tx.delete::<File>().filter(File::ID.eq(id)).execute()?;
                        Ok(())
                    })
                    .await?;
                f.size
            }
            (None, Some(d)) => {
                let freed: i64 = self.tree(d).await?.iter().map(|e| e.size).sum();
                self.db.delete_by_id::<Directory>(d.id).await?; // cascades to everything below
                freed
            }
            (None, None) => {
                return Err(Status::not_found(format!(
                    "no file or folder {}",
                    t.path.as_str()
                )))
            }
        };
        let owner_id = t.owner.user;
        let owner = self
            .db
            .transaction(move |tx| -> Result<Owner, Status> {
                let mut owner: Owner = tx
                    .get(owner_id)?
                    .ok_or_else(|| Status::failed_precondition("the owner no longer exists"))?;
                owner.storage_used = (owner.storage_used - freed).max(0);
                tx.update::<Owner>()
                    .set(Owner::STORAGE_USED, owner.storage_used)
                    .filter(Owner::USER.eq(owner_id))
                    .execute()?;
                Ok(owner)
            })
            .await?;
        let storage_path = t.storage_path();
        Ok(GrantReply {
            grant: grant_of(req.grant(Op::DeleteItem, storage_path.as_str()).sign())?,
            storage_path,
            size: freed,
            usage: Some(usage(&owner)),
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
            usage: Some(t.usage()),
        })
    }
}
