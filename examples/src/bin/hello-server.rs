//! The `hello` example server: greetings, a login, and reverse calls.
//!
//! `cargo run --release --bin hello-server` runs it on 127.0.0.1:7443 with its state (SQLite
//! session database, secret key, development certificate) in `./data`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fluxon_examples::{
    routes, HelloReply, HelloRequest, SignInRequest, SubscribeReply, SubscribeRequest, Tick,
    TickAck,
};
use fluxon_server::{Request, RouteOptions, Router, Server, ServerConfig, Status};

/// Runs the hello example server.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7443", env = "FLUXON_LISTEN")]
    listen: SocketAddr,
    /// Directory for the session database, secret key and development certificate.
    #[arg(long, default_value = "data", env = "FLUXON_DATA_DIR")]
    data_dir: PathBuf,
}

async fn say_hello(req: Request<HelloRequest>) -> Result<HelloReply, Status> {
    if req.name.trim().is_empty() {
        return Err(Status::invalid_argument("name must not be empty"));
    }
    Ok(HelloReply {
        message: format!("Hello, {}!", req.name.trim()),
        user_id: req.user_id(),
    })
}

async fn sign_in(req: Request<SignInRequest>) -> Result<HelloReply, Status> {
    req.login(req.user_id).await?;
    Ok(HelloReply {
        message: format!("signed in as user {}", req.user_id),
        user_id: Some(req.user_id),
    })
}

async fn subscribe(req: Request<SubscribeRequest>) -> Result<SubscribeReply, Status> {
    let session = req.session().clone();
    let mut acknowledged = 0;
    for seq in 1..=req.count.min(100) {
        let ack: TickAck = session
            .call(routes::TICK, &Tick { seq }, Duration::from_secs(5))
            .await?;
        if ack.seq == seq {
            acknowledged += 1;
        }
    }
    Ok(SubscribeReply { acknowledged })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fluxon_examples::init_logging();
    let args = Args::parse();
    let router = Router::new()
        .route(routes::SAY_HELLO, say_hello)
        .route(routes::SIGN_IN, sign_in)
        .route_with(
            routes::SUBSCRIBE,
            RouteOptions::new().requires_login(),
            subscribe,
        );
    let server = Server::bind(ServerConfig::new(args.listen, &args.data_dir), router).await?;
    // One write whose failure is ignored: a closed standard output (whoever started the
    // server read the address and left) must not stop the server, as `println!` would.
    let mut banner = format!("hello-server listening on {}\n", server.local_addr());
    banner += &format!(
        "certificate fingerprint {}\n",
        server.certificate_fingerprint()
    );
    if let Some(cert) = server.dev_certificate_path() {
        banner += &format!("development certificate {}\n", cert.display());
    }
    banner += "press Ctrl-C to stop\n";
    let _ = std::io::stdout().write_all(banner.as_bytes());
    server.run_until_ctrl_c().await;
    Ok(())
}
