//! `fluxon call`: JSON in, protobuf over the wire, JSON out, with the request and reply types
//! found in descriptors: the server's own (its reflection route) or compiled from `--proto`.

use anyhow::{anyhow, Context as _};
use clap::Args;
use fluxon_client::Connection;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};

use crate::raw::Raw;
use crate::session::ConnectArgs;

/// The route generated servers answer with their descriptor set.
pub const REFLECTION_ROUTE: &str = "fluxon.Reflection/FileDescriptorSet";

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The server, HOST:PORT.
    addr: String,
    /// The route, `package.Service/Method`.
    route: String,
    /// The request as JSON (protobuf's JSON mapping). A method that takes a stream of
    /// requests reads them from standard input instead, one JSON object per line; a streaming
    /// method's replies are printed as JSON lines as they arrive.
    #[arg(long, default_value = "{}")]
    json: String,
    /// Take the types from these .proto files instead of asking the server.
    #[arg(long = "proto", value_name = "FILE")]
    protos: Vec<std::path::PathBuf>,
    /// Include directories for --proto.
    #[arg(short = 'I', long = "include", value_name = "DIR")]
    includes: Vec<std::path::PathBuf>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// The descriptors of the server's schema: from `.proto` files when given, else from the
/// server's reflection route.
pub async fn descriptors(
    conn: &Connection,
    protos: &[std::path::PathBuf],
    includes: &[std::path::PathBuf],
) -> anyhow::Result<DescriptorPool> {
    let bytes = if protos.is_empty() {
        let bytes: Vec<u8> = conn
            .call(REFLECTION_ROUTE, &())
            .await
            .map_err(|e| anyhow!("the server does not describe its routes ({e}); give --proto"))?;
        bytes
    } else {
        crate::ProtoArgs {
            protos: protos.to_vec(),
            includes: includes.to_vec(),
        }
        .generate()?
        .file_descriptor_set
    };
    DescriptorPool::decode(bytes.as_slice()).context("malformed descriptor set")
}

/// The method named by `route`.
pub fn method(pool: &DescriptorPool, route: &str) -> anyhow::Result<MethodDescriptor> {
    let (service, name) = route
        .split_once('/')
        .ok_or_else(|| anyhow!("route `{route}` is not of the form package.Service/Method"))?;
    let svc = pool
        .get_service_by_name(service)
        .ok_or_else(|| anyhow!("no service `{service}` in the schema"))?;
    let found = svc.methods().find(|m| m.name() == name);
    found.ok_or_else(|| anyhow!("service `{service}` has no method `{name}`"))
}

/// Calls `method` with `json`; returns the reply message.
pub async fn call_json(
    conn: &Connection,
    route: &str,
    method: &MethodDescriptor,
    json: &str,
) -> anyhow::Result<DynamicMessage> {
    let request = fluxon_cli::json::request_from_json(&method.input(), json)?;
    let reply: Raw = conn
        .call(route, &Raw(request.encode_to_vec()))
        .await
        .map_err(|e| anyhow!("{route}: {e}"))?;
    DynamicMessage::decode(method.output(), reply.0.as_slice())
        .map_err(|e| anyhow!("malformed reply: {e}"))
}

/// Calls streaming `method`: its requests are `json` (one request) or, when the method takes a
/// stream of them, the JSON lines of standard input; each reply is printed as one JSON line
/// as it arrives.
async fn call_streaming(
    conn: &Connection,
    route: &str,
    method: &MethodDescriptor,
    json: &str,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let input = method.input();
    let (mut sink, mut replies) = conn
        .open_streaming::<Raw, Raw>(route, fluxon_client::CallOptions::new())
        .await
        .map_err(|e| anyhow!("{route}: {e}"))?;
    let send = async move {
        if method.is_client_streaming() {
            let mut lines =
                tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio::io::stdin()));
            let mut n = 0usize;
            while let Some(line) = lines.next_line().await.context("reading standard input")? {
                n += 1;
                if line.trim().is_empty() {
                    continue;
                }
                let request = match fluxon_cli::json::request_from_json(&input, &line) {
                    Ok(request) => request,
                    Err(e) => {
                        // Abandon the call rather than end the requests: a half-read input
                        // must not reach the server as if it were whole.
                        sink.cancel();
                        return Err(
                            anyhow::Error::new(e).context(format!("standard input, line {n}"))
                        );
                    }
                };
                if sink.send(&Raw(request.encode_to_vec())).await.is_err() {
                    // The server ended the call: its status follows on the replies.
                    return Ok(());
                }
            }
        } else {
            let request = fluxon_cli::json::request_from_json(&input, json)?;
            // A refusal stops the server reading: its status follows on the replies.
            let _ = sink.send(&Raw(request.encode_to_vec())).await;
        }
        sink.finish();
        anyhow::Ok(())
    };
    let receive = async {
        while let Some(reply) = replies
            .message()
            .await
            .map_err(|e| anyhow!("{route}: {e}"))?
        {
            let reply = DynamicMessage::decode(method.output(), reply.0.as_slice())
                .map_err(|e| anyhow!("malformed reply: {e}"))?;
            // A reader that went away (`| head`) ends the call: dropping the replies cancels it.
            let line = serde_json::to_string(&reply)?;
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
        }
        anyhow::Ok(())
    };
    let (sent, received) = tokio::join!(send, receive);
    // A bad request line explains the cancelled call, so it comes first.
    sent?;
    received
}

pub async fn run(args: CallArgs) -> anyhow::Result<()> {
    let conn = args.connect.connect(&args.addr).await?;
    let result = async {
        let pool = descriptors(&conn, &args.protos, &args.includes).await?;
        let m = method(&pool, &args.route)?;
        if m.is_client_streaming() || m.is_server_streaming() {
            call_streaming(&conn, &args.route, &m, &args.json).await?;
            return Ok(None);
        }
        call_json(&conn, &args.route, &m, &args.json)
            .await
            .map(Some)
    }
    .await;
    // Keep the session (and a login this call made) for the next invocation, even on error.
    args.connect.save(&args.addr, &conn)?;
    if let Some(reply) = result? {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    }
    Ok(())
}
