//! Blocking file-system operations under the storage root, through cap-std.
//!
//! Every path is resolved relative to the root's directory handle: `..` and symlinks that lead
//! outside the root are refused by cap-std at open time. Callers run these functions on tokio's
//! blocking pool.

use std::io::{self, Read, Write};
use std::time::UNIX_EPOCH;

use cap_std::fs::{Dir, File, Metadata, OpenOptions};
use fluxon_proto::storage::{Entry, EntryKind};
use fluxon_proto::Status;
use fluxon_server::grant::{StoragePath, RESERVED_PREFIX};

/// Prefix of a non-resumable upload's temporary file.
pub(crate) const TEMP_PREFIX: &str = ".fluxon-tmp-";
/// Prefix of a resumable upload's partial file.
pub(crate) const PART_PREFIX: &str = ".fluxon-part-";

/// Maps an I/O error on `path` to the status the client sees (never leaking host paths).
pub(crate) fn status(path: &StoragePath, err: &io::Error) -> Status {
    match err.kind() {
        io::ErrorKind::NotFound => Status::not_found(format!("`{path}` does not exist")),
        io::ErrorKind::AlreadyExists => Status::already_exists(format!("`{path}` already exists")),
        io::ErrorKind::PermissionDenied => Status::permission_denied(format!(
            "`{path}` is not accessible (outside the storage root or not permitted)"
        )),
        io::ErrorKind::NotADirectory => {
            Status::failed_precondition(format!("a component of `{path}` is not a directory"))
        }
        io::ErrorKind::IsADirectory => {
            Status::failed_precondition(format!("`{path}` is a directory"))
        }
        io::ErrorKind::DirectoryNotEmpty => {
            Status::failed_precondition(format!("`{path}` is not empty"))
        }
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            Status::resource_exhausted("the storage is full")
        }
        // EFBIG: the file system (or RLIMIT_FSIZE) does not allow a file this large.
        io::ErrorKind::FileTooLarge => {
            Status::resource_exhausted(format!("`{path}` is larger than the storage allows"))
        }
        io::ErrorKind::InvalidInput => Status::invalid_argument(format!("`{path}`: {err}")),
        _ => {
            tracing::warn!(%path, error = %err, "storage I/O failed");
            Status::internal(format!("storage I/O failed on `{path}`"))
        }
    }
}

/// The parent directory of `path` and `path`'s name in it. Refuses the root.
pub(crate) fn open_parent<'a>(root: &Dir, path: &'a StoragePath) -> Result<(Dir, &'a str), Status> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Status::invalid_argument(
            "this operation needs a path below the storage root",
        ));
    };
    let dir = open_dir(root, &parent)?;
    Ok((dir, name))
}

/// Opens a directory (the root itself for the root path).
pub(crate) fn open_dir(root: &Dir, path: &StoragePath) -> Result<Dir, Status> {
    if path.is_root() {
        return root.try_clone().map_err(|e| status(path, &e));
    }
    root.open_dir(path.as_str()).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Status::not_found(format!("directory `{path}` does not exist")),
        _ => status(path, &e),
    })
}

fn millis(meta: &Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.into_std().duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn entry(name: &str, meta: &Metadata) -> Entry {
    let kind = if meta.is_dir() {
        EntryKind::Directory
    } else {
        EntryKind::File
    };
    Entry {
        name: name.to_owned(),
        kind: kind as i32,
        size: if meta.is_dir() { 0 } else { meta.len() },
        modified_ms: millis(meta),
    }
}

pub(crate) fn create_directory(root: &Dir, path: &StoragePath) -> Result<(), Status> {
    let (parent, name) = open_parent(root, path)?;
    parent.create_dir(name).map_err(|e| status(path, &e))?;
    sync_dir(&parent);
    Ok(())
}

pub(crate) fn delete_item(root: &Dir, path: &StoragePath) -> Result<(), Status> {
    let (parent, name) = open_parent(root, path)?;
    let meta = parent
        .symlink_metadata(name)
        .map_err(|e| status(path, &e))?;
    if meta.is_dir() {
        parent.remove_dir_all(name)
    } else {
        parent.remove_file(name)
    }
    .map_err(|e| status(path, &e))?;
    sync_dir(&parent);
    Ok(())
}

pub(crate) fn stat(root: &Dir, path: &StoragePath) -> Result<Entry, Status> {
    let meta = if path.is_root() {
        root.dir_metadata()
    } else {
        root.metadata(path.as_str())
    }
    .map_err(|e| status(path, &e))?;
    Ok(entry(path.file_name().unwrap_or(""), &meta))
}

pub(crate) fn move_item(
    root: &Dir,
    from: &StoragePath,
    to: &StoragePath,
    overwrite: bool,
) -> Result<(), Status> {
    let (src, src_name) = open_parent(root, from)?;
    let (dst, dst_name) = open_parent(root, to)?;
    src.symlink_metadata(src_name)
        .map_err(|e| status(from, &e))?;
    match dst.symlink_metadata(dst_name) {
        Ok(_) if !overwrite => {
            return Err(Status::already_exists(format!("`{to}` already exists")))
        }
        Ok(meta) if meta.is_dir() => {
            return Err(Status::failed_precondition(format!(
                "`{to}` is a directory; moving over a directory is refused"
            )))
        }
        _ => {}
    }
    src.rename(src_name, &dst, dst_name)
        .map_err(|e| status(to, &e))?;
    sync_dir(&src);
    sync_dir(&dst);
    Ok(())
}

/// Lists `path` recursively: entries named relative to it, sorted, reserved names hidden,
/// symlinks reported as what they point to (when that is inside the root) but not descended.
pub(crate) fn read_tree(
    root: &Dir,
    path: &StoragePath,
    max_entries: usize,
) -> Result<Vec<Entry>, Status> {
    let dir = open_dir(root, path)?;
    let mut out = Vec::new();
    walk(&dir, "", &mut out, max_entries, path)?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn walk(
    dir: &Dir,
    prefix: &str,
    out: &mut Vec<Entry>,
    max: usize,
    path: &StoragePath,
) -> Result<(), Status> {
    for item in dir.entries().map_err(|e| status(path, &e))? {
        let item = item.map_err(|e| status(path, &e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else {
            continue; // not UTF-8: not addressable through the API
        };
        if name.starts_with(RESERVED_PREFIX) {
            continue;
        }
        let file_type = item.file_type().map_err(|e| status(path, &e))?;
        let meta = if file_type.is_symlink() {
            match dir.metadata(name) {
                Ok(meta) => meta,
                Err(_) => continue, // dangling, or leads outside the root
            }
        } else {
            item.metadata().map_err(|e| status(path, &e))?
        };
        if out.len() >= max {
            return Err(Status::resource_exhausted(format!(
                "`{path}` holds more than {max} entries"
            )));
        }
        let full = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        out.push(entry(&full, &meta));
        if file_type.is_dir() {
            let sub = dir.open_dir(name).map_err(|e| status(path, &e))?;
            walk(&sub, &full, out, max, path)?;
        }
    }
    Ok(())
}

/// Best-effort fsync of a directory, making renames and creations in it durable.
pub(crate) fn sync_dir(dir: &Dir) {
    if let Ok(clone) = dir.try_clone() {
        if let Err(e) = clone.into_std_file().sync_all() {
            tracing::debug!(error = %e, "directory fsync failed");
        }
    }
}

/// A write in progress: the temporary file in the target's directory.
#[derive(Debug)]
pub(crate) struct Upload {
    pub(crate) parent: Dir,
    pub(crate) name: String,
    pub(crate) temp: String,
    pub(crate) file: std::fs::File,
    /// Bytes already in the temporary file (a resumed upload's durable prefix).
    pub(crate) offset: u64,
    /// Hash of those bytes.
    pub(crate) hasher: blake3::Hasher,
}

/// Prepares a write: checks the target, opens (or, resuming, reopens) the temporary file.
pub(crate) fn begin_upload(
    root: &Dir,
    path: &StoragePath,
    overwrite: bool,
    temp: String,
    resume: bool,
) -> Result<Upload, Status> {
    let (parent, name) = open_parent(root, path)?;
    match parent.symlink_metadata(name) {
        Ok(meta) if meta.is_dir() => {
            return Err(Status::failed_precondition(format!(
                "`{path}` is a directory"
            )))
        }
        Ok(_) if !overwrite => {
            return Err(Status::already_exists(format!(
                "`{path}` already exists and the grant does not allow overwriting it"
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(status(path, &e)),
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    let file: File = parent
        .open_with(&temp, &options)
        .map_err(|e| status(path, &e))?;
    let mut file = file.into_std();
    let mut hasher = blake3::Hasher::new();
    let mut offset = 0;
    if resume {
        // Hash the durable prefix again: the final checksum covers the whole file.
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(|e| status(path, &e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
    } else {
        file.set_len(0).map_err(|e| status(path, &e))?;
    }
    Ok(Upload {
        parent,
        name: name.to_owned(),
        temp,
        file,
        offset,
        hasher,
    })
}

/// Bytes written between two writeback hints (see [`start_writeback`]).
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// Appends batches of received chunks to an upload's file, hashing them. Runs on a blocking
/// thread. `offset` is where the file ends when it starts (a resumed upload's durable prefix).
///
/// Each batch is gathered into one reused block before it is hashed and written: BLAKE3 only
/// uses its SIMD paths on inputs of several KiB, and single QUIC chunks are ≈1.2 KB. Every
/// [`WRITEBACK_EVERY`] bytes the kernel is asked to start writing the new range to disk, so the
/// final fsync does not have to write the whole file while the client waits.
pub(crate) fn write_batches(
    file: &mut std::fs::File,
    hasher: &mut blake3::Hasher,
    batches: &mut tokio::sync::mpsc::Receiver<Vec<bytes::Bytes>>,
    mut offset: u64,
) -> io::Result<()> {
    let mut block = Vec::new();
    let mut hinted = offset;
    while let Some(batch) = batches.blocking_recv() {
        let data: &[u8] = if let [only] = batch.as_slice() {
            only
        } else {
            block.clear();
            for chunk in &batch {
                block.extend_from_slice(chunk);
            }
            &block
        };
        file.write_all(data)?;
        hasher.update(data);
        offset += data.len() as u64;
        if offset - hinted >= WRITEBACK_EVERY {
            start_writeback(file, hinted, offset - hinted);
            hinted = offset;
        }
    }
    Ok(())
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to disk now, without
/// waiting (best effort: the commit's fsync still makes the file durable).
///
/// Without it, dirty pages stay in memory until the fsync at the end (the background writeback
/// threshold is a share of RAM, often gigabytes), which then writes the whole file while the
/// client waits for its reply. On Linux, `POSIX_FADV_DONTNEED` on freshly written (still dirty)
/// pages starts their writeback and leaves them cached (dirty pages are not dropped), which is
/// what `sync_file_range(SYNC_FILE_RANGE_WRITE)` does, without unsafe code.
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

/// Makes the upload the file at its path: fsync, then an atomic rename (overwrite allowed) or a
/// hard link that fails when the name exists (no overwrite), then fsync of the directory.
pub(crate) fn commit_upload(
    upload: &Upload,
    path: &StoragePath,
    overwrite: bool,
    keep_previous: Option<String>,
) -> Result<Option<String>, Status> {
    upload.file.sync_all().map_err(|e| status(path, &e))?;
    // The version being replaced, kept under a temporary name (swept after a crash) until the
    // application has recorded the new one.
    let previous = match keep_previous {
        Some(aside) if overwrite => {
            match upload
                .parent
                .hard_link(&upload.name, &upload.parent, &aside)
            {
                Ok(()) => Some(aside),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(status(path, &e)),
            }
        }
        _ => None,
    };
    let placed = if overwrite {
        upload
            .parent
            .rename(&upload.temp, &upload.parent, &upload.name)
    } else {
        let linked = upload
            .parent
            .hard_link(&upload.temp, &upload.parent, &upload.name);
        let _ = upload.parent.remove_file(&upload.temp);
        linked
    };
    if let Err(e) = placed {
        if let Some(aside) = &previous {
            let _ = upload.parent.remove_file(aside);
        }
        return Err(status(path, &e));
    }
    sync_dir(&upload.parent);
    Ok(previous)
}

/// After the application recorded a committed upload: drops the previous version kept aside.
pub(crate) fn forget_previous(parent: &Dir, previous: Option<&str>) {
    if let Some(aside) = previous {
        if let Err(e) = parent.remove_file(aside) {
            tracing::warn!(file = aside, error = %e, "cannot remove a replaced version");
        }
    }
}

/// After the application refused a committed upload: puts the previous version back, or
/// removes the new file when there was none.
pub(crate) fn undo_upload(parent: &Dir, name: &str, previous: Option<&str>) -> io::Result<()> {
    match previous {
        Some(aside) => parent.rename(aside, parent, name)?,
        None => parent.remove_file(name)?,
    }
    sync_dir(parent);
    Ok(())
}

/// After the application refused a created directory: removes it if it is still empty.
pub(crate) fn undo_create_directory(root: &Dir, path: &StoragePath) -> Result<(), Status> {
    let (parent, name) = open_parent(root, path)?;
    parent.remove_dir(name).map_err(|e| status(path, &e))?;
    sync_dir(&parent);
    Ok(())
}

/// Removes an upload's temporary file (best effort).
pub(crate) fn discard_upload(upload: &Upload) {
    if let Err(e) = upload.parent.remove_file(&upload.temp) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(temp = %upload.temp, error = %e, "cannot remove a temporary upload file");
        }
    }
}

/// Removes leftover temporary files (from a crash) and partial uploads older than `max_age`
/// anywhere under the root. Returns how many files were removed.
pub(crate) fn sweep(root: &Dir, max_age: std::time::Duration) -> usize {
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    let mut stack = match root.try_clone() {
        Ok(dir) => vec![dir],
        Err(_) => return 0,
    };
    while let Some(dir) = stack.pop() {
        let Ok(entries) = dir.entries() else { continue };
        for item in entries.flatten() {
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(file_type) = item.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                if let Ok(sub) = dir.open_dir(name) {
                    stack.push(sub);
                }
                continue;
            }
            let stale = name.starts_with(TEMP_PREFIX)
                || (name.starts_with(PART_PREFIX)
                    && item
                        .metadata()
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| now.duration_since(t.into_std()).ok())
                        .is_some_and(|age| age > max_age));
            if stale && dir.remove_file(name).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluxon_proto::Code;
    use fluxon_server::grant::normalize_path;

    fn root() -> (tempfile::TempDir, Dir) {
        let dir = tempfile::tempdir().unwrap();
        let root = Dir::open_ambient_dir(dir.path(), cap_std::ambient_authority()).unwrap();
        (dir, root)
    }

    fn p(s: &str) -> StoragePath {
        normalize_path(s).unwrap()
    }

    fn write(root: &Dir, path: &str, body: &[u8], overwrite: bool) -> Result<(), Status> {
        let path = p(path);
        let mut up = begin_upload(root, &path, overwrite, format!("{TEMP_PREFIX}t"), false)?;
        up.file.write_all(body).unwrap();
        commit_upload(&up, &path, overwrite, None).map(drop)
    }

    #[test]
    fn upload_commit_and_overwrite_rules() {
        let (dir, root) = root();
        write(&root, "a.txt", b"one", false).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"one");
        let err = write(&root, "a.txt", b"two", false).unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists);
        write(&root, "a.txt", b"two", true).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"two");
        // No temporary file is left behind either way.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // A target that appears between begin and commit is not overwritten without permission.
        let path = p("b.txt");
        let up = begin_upload(&root, &path, false, format!("{TEMP_PREFIX}u"), false).unwrap();
        std::fs::write(dir.path().join("b.txt"), b"raced").unwrap();
        assert_eq!(
            commit_upload(&up, &path, false, None).unwrap_err().code(),
            Code::AlreadyExists
        );
        assert_eq!(std::fs::read(dir.path().join("b.txt")).unwrap(), b"raced");
        assert!(!dir.path().join(format!("{TEMP_PREFIX}u")).exists());
    }

    #[test]
    fn resume_rehashes_the_durable_prefix() {
        let (_dir, root) = root();
        let path = p("r.bin");
        let temp = format!("{PART_PREFIX}x");
        let mut up = begin_upload(&root, &path, false, temp.clone(), false).unwrap();
        up.file.write_all(b"hello ").unwrap();
        drop(up);
        let mut up = begin_upload(&root, &path, false, temp, true).unwrap();
        assert_eq!(up.offset, 6);
        up.file.write_all(b"world").unwrap();
        up.hasher.update(b"world");
        commit_upload(&up, &path, false, None).unwrap();
        assert_eq!(up.hasher.finalize(), blake3::hash(b"hello world"));
    }

    #[test]
    fn tree_hides_reserved_names_and_sweep_removes_leftovers() {
        let (dir, root) = root();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"12345").unwrap();
        std::fs::write(dir.path().join(format!("d/{TEMP_PREFIX}1")), b"x").unwrap();
        std::fs::write(dir.path().join(format!("{PART_PREFIX}2")), b"x").unwrap();
        let tree = read_tree(&root, &StoragePath::root(), 100).unwrap();
        let names: Vec<_> = tree.iter().map(|e| (e.name.as_str(), e.size)).collect();
        assert_eq!(names, vec![("d", 0), ("d/f", 5)]);
        assert_eq!(
            read_tree(&root, &StoragePath::root(), 1)
                .unwrap_err()
                .code(),
            Code::ResourceExhausted
        );
        // Temporary files always go; fresh partial uploads stay until they are stale.
        assert_eq!(sweep(&root, std::time::Duration::from_secs(3600)), 1);
        assert!(dir.path().join(format!("{PART_PREFIX}2")).exists());
        assert_eq!(sweep(&root, std::time::Duration::ZERO), 1);
        assert!(!dir.path().join(format!("{PART_PREFIX}2")).exists());
    }

    #[test]
    fn root_cannot_be_deleted_or_replaced() {
        let (_dir, root) = root();
        let r = StoragePath::root();
        assert_eq!(
            delete_item(&root, &r).unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            begin_upload(&root, &r, true, format!("{TEMP_PREFIX}t"), false)
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        assert_eq!(stat(&root, &r).unwrap().kind, EntryKind::Directory as i32);
    }
}
