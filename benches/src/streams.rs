//! Streaming calls: Fluxon against tonic's streaming (built with `--features tonic`), the same
//! messages both ways, interleaved so each round runs every contender.
//!
//! Two shapes per message size:
//! - **firehose**: one server-streaming call; the client reads for the run's duration, then
//!   drops the stream (cancelling it). Messages/s, and the gap between consecutive messages
//!   (p50/p99: how evenly they arrive).
//! - **bounce**: one bidirectional call with a fixed number of messages in flight; the server
//!   echoes each. Messages/s, and each message's round trip (p50/p99).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fluxon_client::{CallOptions, ClientConfig, Connection, Trust};
use fluxon_server::{
    Request, RouteOptions, Router, Server, ServerConfig, ServerLimits, Status, Streaming,
};
use futures_util::StreamExt as _;

use crate::report::Comparison;
use crate::stats::Run;

const FIREHOSE: &str = "bench.Stream/Firehose";
const BOUNCE: &str = "bench.Stream/Bounce";

/// The sizes of a contender's reply messages as they arrive: one loop times both contenders.
type Lengths = std::pin::Pin<Box<dyn futures_util::Stream<Item = anyhow::Result<usize>> + Send>>;

/// `bench.StreamRequest` (benches/proto/echo.proto), as Fluxon's side declares it.
#[derive(Clone, PartialEq, prost::Message)]
struct StreamRequest {
    #[prost(uint64, tag = "1")]
    count: u64,
    #[prost(uint64, tag = "2")]
    size: u64,
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    pub sizes: Vec<usize>,
    /// Messages in flight on a bounce call.
    pub in_flight: usize,
    /// Bound on Fluxon's QUIC datagrams, both sides.
    pub max_udp_payload: u16,
    pub duration: Duration,
    pub warmup: Duration,
    pub rounds: usize,
}

pub const NOTES: &str = "streams: firehose = one server-streaming call read for the run's \
duration (p50/p99 = gap between consecutive messages); bounce = one bidirectional call echoing \
messages with a fixed number in flight (p50/p99 = round trip per message). Messages are \
`bytes` fields of the given size; Fluxon's stream and tonic's (HTTP/2 + TLS) carry the same \
protobuf bytes. Ratios are Fluxon / tonic.";

/// Fluxon's side: the two routes (`Vec<u8>` is the same wire message as `bench.Blob`).
fn router() -> Router {
    Router::new()
        .server_streaming(
            FIREHOSE,
            RouteOptions::new(),
            |req: Request<StreamRequest>| async move {
                let StreamRequest { count, size } = req.into_inner();
                let blob = vec![0x5a_u8; usize::try_from(size).unwrap_or(0)];
                let blobs = std::iter::repeat_with(move || Ok(blob.clone()));
                Ok::<_, Status>(
                    futures_util::stream::iter(blobs)
                        .take(usize::try_from(count).unwrap_or(usize::MAX)),
                )
            },
        )
        .bidi_streaming(
            BOUNCE,
            RouteOptions::new(),
            |req: Request<Streaming<Vec<u8>>>| async move { Ok::<_, Status>(req.into_inner()) },
        )
}

#[derive(Clone)]
enum Client {
    Fluxon(Connection),
    #[cfg(feature = "tonic")]
    Tonic(crate::tonic_peer::Streams),
}

impl Client {
    /// Reads a firehose of `size`-byte messages for `duration`.
    async fn firehose(&self, size: usize, duration: Duration) -> anyhow::Result<Run> {
        let mut lengths: Lengths = match self {
            Self::Fluxon(conn) => {
                let request = StreamRequest {
                    count: u64::MAX,
                    size: size as u64,
                };
                let messages = conn
                    .server_streaming::<_, Vec<u8>>(FIREHOSE, &request, CallOptions::new())
                    .await?;
                Box::pin(messages.map(|m| Ok(m?.len())))
            }
            #[cfg(feature = "tonic")]
            Self::Tonic(client) => {
                let messages = client.firehose(u64::MAX, size).await?;
                Box::pin(messages.map(|m| Ok(m?.data.len())))
            }
        };
        let mut gaps = Vec::with_capacity(1 << 16);
        let started = Instant::now();
        let mut last = started;
        while last.duration_since(started) < duration {
            let len = lengths
                .next()
                .await
                .ok_or_else(|| anyhow::anyhow!("firehose ended"))??;
            anyhow::ensure!(len == size, "short message");
            let now = Instant::now();
            gaps.push(now - last);
            last = now;
        }
        Ok(Run {
            calls: gaps.len() as u64,
            elapsed: started.elapsed(),
            latencies: gaps,
        })
    }

    /// Bounces `size`-byte messages with `in_flight` of them outstanding, for `duration`.
    async fn bounce(
        &self,
        size: usize,
        in_flight: usize,
        duration: Duration,
    ) -> anyhow::Result<Run> {
        let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let sent_at = Arc::new(Mutex::new(VecDeque::<Instant>::with_capacity(in_flight)));
        let blob = vec![0x5a_u8; size];
        let started = Instant::now();
        let deadline = started + duration;
        // Each side's sender: waits for a free slot, notes the time, sends.
        let mark = {
            let permits = Arc::clone(&permits);
            let sent_at = Arc::clone(&sent_at);
            move || {
                let permits = Arc::clone(&permits);
                let sent_at = Arc::clone(&sent_at);
                async move {
                    let permit = permits.acquire().await?;
                    permit.forget();
                    sent_at
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push_back(Instant::now());
                    anyhow::Ok(())
                }
            }
        };
        let mut latencies = Vec::with_capacity(1 << 16);
        let mut received = |len: usize| -> anyhow::Result<()> {
            anyhow::ensure!(len == size, "short echo");
            let at = sent_at
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .pop_front()
                .ok_or_else(|| anyhow::anyhow!("an echo nobody sent"))?;
            latencies.push(at.elapsed());
            permits.add_permits(1);
            Ok(())
        };
        let (mut lengths, sender): (Lengths, tokio::task::JoinHandle<anyhow::Result<()>>) =
            match self {
                Self::Fluxon(conn) => {
                    let (mut sink, replies) = conn
                        .open_streaming::<Vec<u8>, Vec<u8>>(BOUNCE, CallOptions::new())
                        .await?;
                    let sender = tokio::spawn(async move {
                        while Instant::now() < deadline {
                            mark().await?;
                            sink.send(&blob).await?;
                        }
                        sink.finish();
                        anyhow::Ok(())
                    });
                    (Box::pin(replies.map(|m| Ok(m?.len()))), sender)
                }
                #[cfg(feature = "tonic")]
                Self::Tonic(client) => {
                    let (tx, rx) = tokio::sync::mpsc::channel(in_flight.max(1));
                    let replies = client.bounce(rx).await?;
                    let sender = tokio::spawn(async move {
                        while Instant::now() < deadline {
                            mark().await?;
                            tx.send(blob.clone()).await?;
                        }
                        anyhow::Ok(())
                    });
                    (Box::pin(replies.map(|m| Ok(m?.data.len()))), sender)
                }
            };
        while let Some(len) = lengths.next().await {
            received(len?)?;
        }
        sender.await??;
        Ok(Run {
            calls: latencies.len() as u64,
            elapsed: started.elapsed(),
            latencies,
        })
    }
}

pub async fn run(plan: &Plan) -> anyhow::Result<Vec<Comparison>> {
    let dir = tempfile::tempdir()?;
    let limits = ServerLimits::default().max_udp_payload(plan.max_udp_payload);
    let config = ServerConfig::new(([127, 0, 0, 1], 0).into(), dir.path()).limits(limits);
    let server = Server::bind(config, router()).await?;
    let cert = server
        .dev_certificate_path()
        .ok_or_else(|| anyhow::anyhow!("no development certificate"))?;
    let fluxon = Connection::connect(
        server.local_addr(),
        ClientConfig::new(Trust::CertificateFile(cert)).max_udp_payload(plan.max_udp_payload),
    )
    .await?;
    #[cfg_attr(not(feature = "tonic"), allow(unused_mut))]
    let mut contenders = vec![("fluxon".to_owned(), Client::Fluxon(fluxon))];
    #[cfg(feature = "tonic")]
    let tonic = crate::tonic_peer::start().await?;
    #[cfg(feature = "tonic")]
    contenders.push((
        "tonic 0.14 + TLS".to_owned(),
        Client::Tonic(tonic.connect_streams().await?),
    ));
    if contenders.len() < 2 {
        eprintln!(
            "fluxon-bench streams: no peer to compare with; build with `--features tonic` \
             (Fluxon's own rates follow)"
        );
    }
    let mut out = Vec::new();
    for &size in &plan.sizes {
        for bounce in [false, true] {
            let name = if bounce {
                format!("streams/{size}B/bounce/{}-in-flight", plan.in_flight)
            } else {
                format!("streams/{size}B/firehose")
            };
            let once = |client: Client, d: Duration| async move {
                if bounce {
                    client.bounce(size, plan.in_flight, d).await
                } else {
                    client.firehose(size, d).await
                }
            };
            for (_, client) in &contenders {
                once(client.clone(), plan.warmup).await?;
            }
            let mut runs = vec![Vec::new(); contenders.len()];
            for round in 0..plan.rounds {
                for k in 0..contenders.len() {
                    let i = (round + k) % contenders.len();
                    runs[i].push(once(contenders[i].1.clone(), plan.duration).await?);
                }
            }
            for ((peer, _), peer_runs) in contenders.iter().zip(&runs).skip(1) {
                out.push(crate::calls::compare_as(
                    &name,
                    peer,
                    "messages/s",
                    &runs[0],
                    peer_runs,
                ));
            }
            if contenders.len() < 2 {
                let rates: Vec<f64> = runs[0].iter().map(Run::rate).collect();
                eprintln!("{name}: fluxon messages/s {rates:.0?}");
            }
        }
    }
    drop(contenders);
    server.shutdown(Duration::from_secs(1)).await;
    Ok(out)
}
