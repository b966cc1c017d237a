//! The `hello` example client: runs the whole flow against a running `hello-server`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use fluxon_client::{ClientConfig, Connection, ReverseRouter, Status, Trust};
use fluxon_examples::{
    routes, HelloReply, HelloRequest, SignInRequest, SubscribeReply, SubscribeRequest, Tick,
    TickAck,
};

/// Calls a running hello-server.
#[derive(Debug, Parser)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7443")]
    addr: SocketAddr,
    /// The server's certificate (PEM). Default: `<data-dir>/dev-cert.pem`.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// The server's data directory, to find its development certificate.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Name to greet.
    #[arg(long, default_value = "Fluxon")]
    name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cert = args
        .cert
        .unwrap_or_else(|| fluxon_examples::dev_cert_path(&args.data_dir));
    let reverse = ReverseRouter::new().route(routes::TICK, |tick: Tick| async move {
        println!("  <- tick {} from the server", tick.seq);
        Ok::<_, Status>(TickAck { seq: tick.seq })
    });
    let config = ClientConfig::new(Trust::CertificateFile(cert)).reverse(reverse);
    let conn = Connection::connect(args.addr, config)
        .await
        .with_context(|| format!("cannot connect to {}", args.addr))?;
    println!("connected, session {}", conn.session().id);

    let reply: HelloReply = conn
        .call(
            routes::SAY_HELLO,
            &HelloRequest {
                name: args.name.clone(),
            },
        )
        .await?;
    println!("say_hello   -> {}", reply.message);

    match conn
        .call::<_, SubscribeReply>(routes::SUBSCRIBE, &SubscribeRequest { count: 1 })
        .await
    {
        Err(status) => println!("subscribe   -> refused before login: {status}"),
        Ok(_) => anyhow::bail!("subscribe should require a login"),
    }

    let reply: HelloReply = conn
        .call(routes::SIGN_IN, &SignInRequest { user_id: 1 })
        .await?;
    println!(
        "sign_in     -> {} (client sees user {:?})",
        reply.message,
        conn.user_id()
    );

    let reply: SubscribeReply = conn
        .call(routes::SUBSCRIBE, &SubscribeRequest { count: 3 })
        .await?;
    println!("subscribe   -> {} ticks acknowledged", reply.acknowledged);
    anyhow::ensure!(reply.acknowledged == 3, "expected 3 acknowledged ticks");
    conn.close();
    println!("done");
    Ok(())
}
