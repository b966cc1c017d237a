//! `fluxon cloud`: asks the application for a grant through one of its routes, then performs
//! the granted operation on the storage service, with a progress bar and checksum checks.
//!
//! The grant route is the application's: `--route` names it and `--json` is its request, in
//! which `{path}` and `{op}` are replaced by the remote path and the operation
//! (`write_file`, `read_file`, `read_tree`, `delete_item`, `create_directory`), and `{size}` by
//! the local file's size for `put` (0 otherwise). The reply must contain a
//! `fluxon.storage.Grant` field (at any depth).
//!
//! The remote path is the application's to interpret: the operation is performed on the path
//! the grant names, so a route that takes paths relative to the user's own folder and signs
//! grants for `u<id>/...` in storage (as the cloud example's `StorageGrant` does) works as is.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use clap::{Args, Subcommand};
use fluxon_client::storage::{EntryKind, Grant};
use fluxon_client::{CloudStorageConnector, TransferOptions};
use indicatif::{ProgressBar, ProgressStyle};
use prost_reflect::{DynamicMessage, ReflectMessage as _, Value};

use crate::session::ConnectArgs;

#[derive(Debug, Args)]
pub struct CloudArgs {
    /// The server, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:7443")]
    addr: String,
    /// The application's route that hands out grants.
    #[arg(long, env = "FLUXON_GRANT_ROUTE")]
    route: String,
    /// The grant route's request as JSON; `{path}`, `{op}` and `{size}` are filled in.
    #[arg(long, default_value = r#"{"path": "{path}"}"#)]
    json: String,
    /// Take the types from these .proto files instead of asking the server.
    #[arg(long = "proto", value_name = "FILE")]
    protos: Vec<PathBuf>,
    /// Include directories for --proto.
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    includes: Vec<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    op: CloudOp,
}

#[derive(Debug, Subcommand)]
enum CloudOp {
    /// Upload a local file.
    Put {
        /// The local file.
        local: PathBuf,
        /// Where it goes in the cloud.
        remote: String,
    },
    /// Download a file.
    Get {
        /// The file in the cloud.
        remote: String,
        /// Where it goes locally.
        local: PathBuf,
    },
    /// List a directory.
    Ls {
        /// The directory (default: the root).
        #[arg(default_value = "")]
        remote: String,
    },
    /// Delete a file or a directory tree.
    Rm {
        /// What to delete.
        remote: String,
    },
    /// Create a directory.
    Mkdir {
        /// The new directory (default: the root, for applications that create it in storage
        /// on demand).
        #[arg(default_value = "")]
        remote: String,
    },
}

impl CloudOp {
    fn op_name(&self) -> &'static str {
        match self {
            Self::Put { .. } => "write_file",
            Self::Get { .. } => "read_file",
            Self::Ls { .. } => "read_tree",
            Self::Rm { .. } => "delete_item",
            Self::Mkdir { .. } => "create_directory",
        }
    }

    fn remote(&self) -> &str {
        match self {
            Self::Put { remote, .. }
            | Self::Get { remote, .. }
            | Self::Ls { remote }
            | Self::Rm { remote }
            | Self::Mkdir { remote } => remote,
        }
    }
}

/// `template` with `{path}` and `{op}` replaced by JSON-escaped values, and `{size}` by `size`.
pub fn fill(template: &str, path: &str, op: &str, size: u64) -> String {
    let esc = |s: &str| {
        let quoted = serde_json::Value::String(s.to_owned()).to_string();
        quoted[1..quoted.len() - 1].to_owned()
    };
    template
        .replace("{path}", &esc(path))
        .replace("{op}", &esc(op))
        .replace("{size}", &size.to_string())
}

/// The first `fluxon.storage.Grant` in `msg`, searched depth first.
pub fn find_grant(msg: &DynamicMessage) -> Option<Grant> {
    for (field, value) in msg.fields() {
        let nested: Vec<&DynamicMessage> = match value {
            Value::Message(m) => vec![m],
            Value::List(items) => items.iter().filter_map(Value::as_message).collect(),
            _ => continue,
        };
        for m in nested {
            if m.descriptor().full_name() == "fluxon.storage.Grant" {
                return m.transcode_to::<Grant>().ok();
            }
            if let Some(g) = find_grant(m) {
                return Some(g);
            }
        }
        let _ = field;
    }
    None
}

fn bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn blake3_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(*hasher.finalize().as_bytes())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn run(args: CloudArgs) -> anyhow::Result<()> {
    if let CloudOp::Put { local, .. } = &args.op {
        if !local.is_file() {
            return Err(anyhow!("{} is not a file", local.display()));
        }
    }
    let conn = args.connect.connect(&args.addr).await?;
    let result = transfer(&args, &conn).await;
    args.connect.save(&args.addr, &conn)?;
    result
}

async fn transfer(args: &CloudArgs, conn: &fluxon_client::Connection) -> anyhow::Result<()> {
    let pool = crate::call::descriptors(conn, &args.protos, &args.includes).await?;
    let method = crate::call::method(&pool, &args.route)?;
    let size = match &args.op {
        CloudOp::Put { local, .. } => std::fs::metadata(local)
            .with_context(|| format!("cannot read {}", local.display()))?
            .len(),
        _ => 0,
    };
    let request = fill(&args.json, args.op.remote(), args.op.op_name(), size);
    let reply = crate::call::call_json(conn, &args.route, &method, &request).await?;
    let grant = find_grant(&reply).ok_or_else(|| {
        anyhow!(
            "the reply of {} carries no fluxon.storage.Grant",
            args.route
        )
    })?;
    let storage = CloudStorageConnector::new(conn.clone());
    // What the user typed names the item in messages; the storage path is the grant's.
    let remote = args.op.remote();
    let stored = grant.path.as_str();
    let status = |e: fluxon_client::Status| anyhow!("{remote}: {e}");
    match &args.op {
        CloudOp::Put { local, .. } => {
            let pb = bar(size, args.quiet);
            let progress = pb.clone();
            let options = TransferOptions::new()
                .size(size)
                .progress(move |done, _| progress.set_position(done));
            let receipt = storage
                .upload_file(&grant, stored, local, options)
                .await
                .map_err(status)?;
            pb.finish_and_clear();
            let local_sum = blake3_file(local)?;
            if local_sum != receipt.checksum {
                return Err(anyhow!(
                    "checksum mismatch: the server stored other bytes than {}",
                    local.display()
                ));
            }
            println!(
                "uploaded {} ({} bytes, blake3 {})",
                remote,
                receipt.size,
                hex(&receipt.checksum)
            );
        }
        CloudOp::Get { local, .. } => {
            let pb = bar(0, args.quiet);
            let progress = pb.clone();
            let options = TransferOptions::new().progress(move |done, total| {
                progress.set_length(total);
                progress.set_position(done);
            });
            let receipt = storage
                .download_to_file(&grant, stored, local, options)
                .await
                .map_err(status)?;
            pb.finish_and_clear();
            if blake3_file(local)? != receipt.checksum {
                return Err(anyhow!(
                    "checksum mismatch: {} differs from what the server sent",
                    local.display()
                ));
            }
            println!(
                "downloaded {} ({} bytes, blake3 {})",
                local.display(),
                receipt.size,
                hex(&receipt.checksum)
            );
        }
        CloudOp::Ls { .. } => {
            let entries = storage.read_tree(&grant, stored).await.map_err(status)?;
            for e in &entries {
                let kind = if e.kind == EntryKind::Directory as i32 {
                    "dir "
                } else {
                    "file"
                };
                println!("{kind} {:>12}  {}", e.size, e.name);
            }
        }
        CloudOp::Rm { .. } => {
            storage.delete_item(&grant, stored).await.map_err(status)?;
            println!("deleted {remote}");
        }
        CloudOp::Mkdir { .. } => {
            storage
                .create_directory(&grant, stored)
                .await
                .map_err(status)?;
            println!("created {}", if remote.is_empty() { "/" } else { remote });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_templates_with_escaped_values() {
        assert_eq!(
            fill(
                r#"{"path": "{path}", "op": "{op}", "size": {size}}"#,
                "a \"b\"/c",
                "read_file",
                42
            ),
            r#"{"path": "a \"b\"/c", "op": "read_file", "size": 42}"#
        );
    }
}
