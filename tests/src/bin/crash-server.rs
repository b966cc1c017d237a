//! A Fluxon server for crash and restart tests (`tests/tests/faults.rs`,
//! `tests/tests/durable_state.rs`): the test application, the notes application (database
//! writes) and cloud storage, with its state under the data directory given as its first
//! argument. Prints `LISTENING <addr>` once it accepts connections; the tests stop it (SIGINT)
//! or kill it (SIGKILL) and start it again on the same directory, or start several nodes that
//! share one state database.
//!
//! ```text
//! crash-server DATA_DIR [PORT] [--state LOCATION] [--cloud DIR] [--node NAME]
//! ```
//!
//! `--state` takes a SQLite path or a `postgres://` URL (default: `DATA_DIR/server/fluxon.db`);
//! `--cloud` the storage root (default: `DATA_DIR/cloud`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use fluxon_server::{ServerConfig, StateLocation};
use fluxon_storage::StorageConfig;

const USAGE: &str =
    "usage: crash-server DATA_DIR [PORT] [--state LOCATION] [--cloud DIR] [--node NAME]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    fluxon_e2e::init_tracing();
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or(USAGE)?);
    let mut port = 0u16;
    let mut state = None;
    let mut cloud = dir.join("cloud");
    let mut node = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--state" => state = Some(StateLocation::parse(&args.next().ok_or(USAGE)?)),
            "--cloud" => cloud = PathBuf::from(args.next().ok_or(USAGE)?),
            "--node" => node = Some(args.next().ok_or(USAGE)?),
            p => port = p.parse().map_err(|_| USAGE)?,
        }
    }
    std::fs::create_dir_all(&dir)?;
    let db = fluxon_e2e::notes::open(&dir.join("notes.db"), 4).await?;
    let router = fluxon_e2e::app_router().merge(fluxon_e2e::notes::router(db));
    let mut config =
        ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], port)), dir.join("server"));
    config.state = state;
    config.node_id = node;
    let (server, _storage) =
        fluxon_storage::bind_server(config, router, StorageConfig::new(cloud)).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {}", server.local_addr())?;
    out.flush()?;
    drop(out);
    server.run_until_ctrl_c().await;
    Ok(())
}
