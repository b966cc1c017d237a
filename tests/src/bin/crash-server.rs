//! A Fluxon server for crash tests (`tests/tests/faults.rs`): the test application, the notes
//! application (database writes) and cloud storage, with all state under the data directory
//! given as its first argument. Prints `LISTENING <addr>` once it accepts connections; the test
//! kills it with SIGKILL and starts it again on the same directory.
//!
//! ```text
//! crash-server DATA_DIR [PORT]
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use fluxon_server::ServerConfig;
use fluxon_storage::StorageConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    fluxon_e2e::init_tracing();
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: crash-server DATA_DIR [PORT]")?);
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(0);
    let db = fluxon_e2e::notes::open(&dir.join("notes.db"), 4).await?;
    let router = fluxon_e2e::app_router().merge(fluxon_e2e::notes::router(db));
    let config = ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], port)), dir.join("server"));
    let (server, _storage) =
        fluxon_storage::bind_server(config, router, StorageConfig::new(dir.join("cloud"))).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {}", server.local_addr())?;
    out.flush()?;
    drop(out);
    server.run_until_ctrl_c().await;
    Ok(())
}
