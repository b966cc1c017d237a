//! The cloud example's client: runs the whole flow against a running `cloud-server`. Routes
//! hand out grants; this client performs the transfers with `CloudStorageConnector`, printing
//! progress, and checks what it reads back.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context as _};
use clap::Parser;
use cloud::cloud::{
    CloudClient, CreateOwnerRequest, Credentials, GrantReply, PathRequest, Usage, WriteFileRequest,
};
use fluxon_client::storage::{EntryKind, Grant};
use fluxon_client::{CloudStorageConnector, Code, Connection, Status, TransferOptions};
use fluxon_examples::ServerArgs;

/// Runs the cloud flow against a running cloud-server.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Suffix making this run's usernames unique (default: from the clock).
    #[arg(long)]
    run_id: Option<String>,
    /// The demo owner's quota in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    quota: i64,
}

/// Size of the demo's large file.
const BIG: usize = 600 * 1024;

fn usage(u: Option<&Usage>) -> String {
    u.map_or_else(String::new, |u| {
        format!("{} of {} bytes used", u.storage_used, u.storage_limit)
    })
}

fn grant(reply: &GrantReply) -> anyhow::Result<&Grant> {
    reply.grant.as_ref().context("the reply carries no grant")
}

fn refused<T>(step: &str, result: Result<T, Status>, code: Code) -> anyhow::Result<()> {
    match result {
        Err(status) if status.code() == code => {
            println!("{step:<34} -> refused: {status}");
            Ok(())
        }
        Err(status) => bail!("{step}: expected {code:?}, got {status}"),
        Ok(_) => bail!("{step}: expected {code:?}, but it succeeded"),
    }
}

/// Prints progress at every quarter.
fn progress(label: &'static str) -> TransferOptions {
    let last = Arc::new(AtomicU64::new(0));
    TransferOptions::new().progress(move |done, total| {
        if total == 0 {
            return;
        }
        let quarter = done * 4 / total;
        if quarter > last.swap(quarter, Ordering::Relaxed) {
            println!("  {label} {done}/{total} bytes ({}%)", quarter * 25);
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn upload(
    client: &CloudClient,
    storage: &CloudStorageConnector,
    root: i64,
    path: &str,
    local: &Path,
    mime: &str,
) -> anyhow::Result<[u8; 32]> {
    let size = std::fs::metadata(local)?.len();
    let reply = client
        .write_file(WriteFileRequest {
            root,
            path: path.into(),
            size: i64::try_from(size)?,
            mime_type: mime.into(),
        })
        .await?;
    println!(
        "{:<34} -> grant for {} capped at {} bytes ({})",
        format!("write_file {path}"),
        reply.storage_path,
        reply.size,
        usage(reply.usage.as_ref())
    );
    let receipt = storage
        .upload_file(
            grant(&reply)?,
            &reply.storage_path,
            local,
            progress("upload"),
        )
        .await?;
    println!(
        "{:<34} -> stored {} bytes, BLAKE3 {}",
        "upload",
        receipt.size,
        &hex(&receipt.checksum)[..16]
    );
    Ok(receipt.checksum)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = args.run_id.clone().unwrap_or_else(|| {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{:x}", millis & 0xff_ffff)
    });
    let connect = || async {
        Connection::connect(args.server.addr, args.server.client_config())
            .await
            .with_context(|| {
                format!(
                    "cannot connect to {} (certificate {})",
                    args.server.addr,
                    args.server.cert_path().display()
                )
            })
    };
    let conn = connect().await?;
    let client = CloudClient::new(conn.clone());
    let storage = CloudStorageConnector::new(conn);
    println!("connected to {}", args.server.addr);

    let creds = Credentials {
        username: format!("ada-{run}"),
        password: format!("correct horse {run}"),
    };
    let account = client.signup(creds.clone()).await?;
    println!(
        "{:<34} -> user {} ({})",
        "signup", account.user_id, account.username
    );
    refused(
        "create_folder before create_owner",
        client
            .create_folder(PathRequest {
                root: 1,
                path: "docs".into(),
            })
            .await,
        Code::FailedPrecondition,
    )?;
    let owner = client
        .create_owner(CreateOwnerRequest {
            storage_limit: Some(args.quota),
        })
        .await?;
    let root = owner.root;
    let root_grant = owner
        .grant
        .as_ref()
        .context("create_owner returned no grant")?;
    storage
        .create_directory(root_grant, &owner.storage_path)
        .await?;
    println!(
        "{:<34} -> root directory {root} at {} ({})",
        "create_owner",
        owner.storage_path,
        usage(owner.usage.as_ref())
    );

    // Folders: the parent must exist.
    for path in ["docs", "docs/reports"] {
        let reply = client
            .create_folder(PathRequest {
                root,
                path: path.into(),
            })
            .await?;
        storage
            .create_directory(grant(&reply)?, &reply.storage_path)
            .await?;
        println!(
            "{:<34} -> {}",
            format!("create_folder {path}"),
            reply.storage_path
        );
    }
    refused(
        "create_folder missing/inner",
        client
            .create_folder(PathRequest {
                root,
                path: "missing/inner".into(),
            })
            .await,
        Code::NotFound,
    )?;
    refused(
        "create_folder ../escape",
        client
            .create_folder(PathRequest {
                root,
                path: "../escape".into(),
            })
            .await,
        Code::InvalidArgument,
    )?;

    // Files: uploads with progress, the quota reserved by the route and capped by the grant.
    let work = tempfile::tempdir()?;
    let hello = work.path().join("hello.txt");
    std::fs::write(&hello, b"Hello from the Fluxon cloud example!\n")?;
    let big = work.path().join("data.bin");
    let data: Vec<u8> = (0..BIG).map(|i| (i * 31 + i / 251) as u8).collect();
    std::fs::write(&big, &data)?;
    upload(
        &client,
        &storage,
        root,
        "docs/hello.txt",
        &hello,
        "text/plain",
    )
    .await?;
    let sent = upload(
        &client,
        &storage,
        root,
        "docs/reports/data.bin",
        &big,
        "application/octet-stream",
    )
    .await?;
    refused(
        "write_file over the quota",
        client
            .write_file(WriteFileRequest {
                root,
                path: "docs/too-big.bin".into(),
                size: i64::try_from(BIG)?,
                mime_type: String::new(),
            })
            .await,
        Code::ResourceExhausted,
    )?;
    // A client that declares 1 KiB and sends more is cut off by the storage service.
    let reply = client
        .write_file(WriteFileRequest {
            root,
            path: "docs/liar.bin".into(),
            size: 1024,
            mime_type: String::new(),
        })
        .await?;
    let result = storage
        .upload(
            grant(&reply)?,
            &reply.storage_path,
            &data[..64 * 1024],
            TransferOptions::new(),
        )
        .await;
    refused(
        "upload past the grant's cap",
        result,
        Code::ResourceExhausted,
    )?;
    // Nothing was stored, so nothing is recorded and the reservation is released at once.
    let docs = client
        .read_tree(PathRequest {
            root,
            path: "docs".into(),
        })
        .await?;
    ensure!(
        !docs.entries.iter().any(|e| e.path == "liar.bin"),
        "the refused upload was recorded: {:?}",
        docs.entries
    );
    println!(
        "{:<34} -> not recorded, reservation released ({})",
        "refused upload docs/liar.bin",
        usage(docs.usage.as_ref())
    );

    // Download and check.
    let reply = client
        .read_file(PathRequest {
            root,
            path: "docs/reports/data.bin".into(),
        })
        .await?;
    let copy = work.path().join("copy.bin");
    let receipt = storage
        .download_to_file(
            grant(&reply)?,
            &reply.storage_path,
            &copy,
            progress("download"),
        )
        .await?;
    ensure!(
        receipt.checksum == sent,
        "the download's checksum differs from the upload's"
    );
    ensure!(std::fs::read(&copy)? == data, "the downloaded bytes differ");
    println!(
        "{:<34} -> {} bytes, BLAKE3 {} matches the upload, bytes identical",
        "read_file docs/reports/data.bin",
        receipt.size,
        &hex(&receipt.checksum)[..16]
    );

    // The tree as the database records it, checked against storage.
    let tree = client
        .read_tree(PathRequest {
            root,
            path: String::new(),
        })
        .await?;
    let tree_grant = tree.grant.as_ref().context("read_tree returned no grant")?;
    let listed = storage.read_tree(tree_grant, &tree.storage_path).await?;
    println!("{:<34} -> {}", "read_tree", usage(tree.usage.as_ref()));
    for e in &tree.entries {
        if e.directory {
            println!("  {}/", e.path);
        } else {
            println!("  {} ({} bytes)", e.path, e.size);
        }
    }
    let mut ours: Vec<(String, bool, u64)> = tree
        .entries
        .iter()
        .map(|e| {
            (
                e.path.clone(),
                e.directory,
                u64::try_from(e.size).unwrap_or(0),
            )
        })
        .collect();
    let mut theirs: Vec<(String, bool, u64)> = listed
        .iter()
        .map(|e| {
            let dir = e.kind() == EntryKind::Directory;
            (e.name.clone(), dir, if dir { 0 } else { e.size })
        })
        .collect();
    ours.sort();
    theirs.sort();
    ensure!(
        ours == theirs,
        "the database's tree {ours:?} differs from storage's {theirs:?}"
    );
    println!(
        "{:<34} -> {} entries, same as in storage",
        "tree check",
        theirs.len()
    );

    // Another user cannot reach this owner's files.
    let other = CloudClient::new(connect().await?);
    other
        .signup(Credentials {
            username: format!("mallory-{run}"),
            password: format!("another password {run}"),
        })
        .await?;
    other.create_owner(CreateOwnerRequest::default()).await?;
    refused(
        "another user reads the file",
        other
            .read_file(PathRequest {
                root,
                path: "docs/hello.txt".into(),
            })
            .await,
        Code::PermissionDenied,
    )?;

    // Deleting a folder frees its files' bytes.
    let reply = client
        .delete_item(PathRequest {
            root,
            path: "docs/reports".into(),
        })
        .await?;
    storage
        .delete_item(grant(&reply)?, &reply.storage_path)
        .await?;
    println!(
        "{:<34} -> freed {} bytes",
        "delete_item docs/reports", reply.size,
    );
    let tree = client
        .read_tree(PathRequest {
            root,
            path: String::new(),
        })
        .await?;
    let paths: Vec<&str> = tree.entries.iter().map(|e| e.path.as_str()).collect();
    println!(
        "{:<34} -> {} ({})",
        "read_tree",
        paths.join(", "),
        usage(tree.usage.as_ref())
    );
    ensure!(
        paths == ["docs", "docs/hello.txt"],
        "unexpected tree after the delete"
    );

    // Login on a new connection (a second device) with the hashed password.
    let again = CloudClient::new(connect().await?);
    let account = again.login(creds).await?;
    println!("{:<34} -> user {}", "login", account.user_id);
    println!("done");
    Ok(())
}
