//! Small calls: Fluxon against the raw quinn stream-per-request floor, interleaved A B A B.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fluxon_client::{ClientConfig, Connection, Trust};
use fluxon_server::{Request, Router, Server, ServerConfig, ServerLimits, Status};

use crate::raw_quinn;
use crate::report::{Comparison, Metric};
use crate::stats::{Run, Summary};

const ROUTE: &str = "bench.Echo/Echo";

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    pub payloads: Vec<usize>,
    pub in_flight: Vec<usize>,
    pub duration: Duration,
    pub warmup: Duration,
    pub rounds: usize,
}

/// Runs `in_flight` workers making calls back to back for `duration`.
async fn load<F, Fut>(in_flight: usize, duration: Duration, call: F) -> anyhow::Result<Run>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let call = Arc::clone(&call);
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let t = Instant::now();
                call().await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut run = Run::default();
    while let Some(joined) = workers.join_next().await {
        let latencies = joined??;
        run.calls += latencies.len() as u64;
        run.latencies.extend(latencies);
    }
    run.elapsed = started.elapsed();
    Ok(run)
}

pub async fn run(plan: &Plan) -> anyhow::Result<Vec<Comparison>> {
    let dir = tempfile::tempdir()?;
    let limits = ServerLimits::default().max_concurrent_streams(256);
    let config = ServerConfig::new(([127, 0, 0, 1], 0).into(), dir.path()).limits(limits);
    let router = Router::new().route(ROUTE, |req: Request<Vec<u8>>| async move {
        Ok::<_, Status>(req.into_inner())
    });
    let server = Server::bind(config, router).await?;
    let cert = server
        .dev_certificate_path()
        .ok_or_else(|| anyhow::anyhow!("no development certificate"))?;
    let fluxon = Connection::connect(
        server.local_addr(),
        ClientConfig::new(Trust::CertificateFile(cert)),
    )
    .await?;
    let raw = raw_quinn::start(256).await?;

    let mut out = Vec::new();
    for &size in &plan.payloads {
        for &in_flight in &plan.in_flight {
            let payload = vec![0x5a_u8; size];
            let raw_payload = Bytes::from(prost_encoded(&payload));
            let f = {
                let conn = fluxon.clone();
                let payload = payload.clone();
                move || {
                    let conn = conn.clone();
                    let payload = payload.clone();
                    async move {
                        let reply: Vec<u8> = conn.call(ROUTE, &payload).await?;
                        anyhow::ensure!(reply.len() == payload.len(), "short echo");
                        Ok(())
                    }
                }
            };
            let r = {
                let conn = raw.conn.clone();
                move || {
                    let conn = conn.clone();
                    let payload = raw_payload.clone();
                    async move {
                        let n = raw_quinn::echo(&conn, payload.clone()).await?;
                        anyhow::ensure!(n == payload.len(), "short echo");
                        Ok(())
                    }
                }
            };
            // Warm both up, then alternate which goes first in each round.
            load(in_flight, plan.warmup, f.clone()).await?;
            load(in_flight, plan.warmup, r.clone()).await?;
            let mut a = Vec::new();
            let mut b = Vec::new();
            for round in 0..plan.rounds {
                if round % 2 == 0 {
                    a.push(load(in_flight, plan.duration, f.clone()).await?);
                    b.push(load(in_flight, plan.duration, r.clone()).await?);
                } else {
                    b.push(load(in_flight, plan.duration, r.clone()).await?);
                    a.push(load(in_flight, plan.duration, f.clone()).await?);
                }
            }
            let name = format!("calls/{}B/{}-in-flight", size, in_flight);
            out.push(compare(&name, "raw quinn stream-per-call", &a, &b));
        }
    }
    fluxon.close();
    server.shutdown(Duration::from_secs(1)).await;
    raw.conn.close(0u32.into(), b"done");
    raw.client.wait_idle().await;
    raw.server.close(0u32.into(), b"done");
    Ok(out)
}

/// The same bytes a Fluxon payload of `Vec<u8>` puts on the wire, so both carry equal data.
fn prost_encoded(payload: &Vec<u8>) -> Vec<u8> {
    prost::Message::encode_to_vec(payload)
}

fn compare(name: &str, peer: &str, fluxon: &[Run], other: &[Run]) -> Comparison {
    let rate = |runs: &[Run]| Summary::of(&runs.iter().map(Run::rate).collect::<Vec<_>>());
    let pct = |runs: &[Run], p: f64| {
        Summary::of(
            &runs
                .iter()
                .map(|r| r.percentile(p).as_secs_f64() * 1e6)
                .collect::<Vec<_>>(),
        )
    };
    Comparison {
        bench: name.to_owned(),
        peer: peer.to_owned(),
        metrics: vec![
            Metric::higher_is_better("calls/s", rate(fluxon), rate(other)),
            Metric::lower_is_better("p50 µs", pct(fluxon, 50.0), pct(other, 50.0)),
            Metric::lower_is_better("p99 µs", pct(fluxon, 99.0), pct(other, 99.0)),
        ],
    }
}
