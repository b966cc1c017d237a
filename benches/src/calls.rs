//! Small calls: Fluxon against its peers (a raw quinn stream-per-request echo, and tonic with
//! TLS when built with `--features tonic`), interleaved so each round runs every contender.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fluxon_client::{ClientConfig, ClientEndpoint, Connection, Trust};
use fluxon_server::{Request, Router, Server, ServerConfig, ServerLimits, Status};

use crate::raw_quinn;
use crate::report::{Comparison, Metric};
use crate::stats::{Run, Summary};

/// The echo route every Fluxon benchmark calls.
pub const ROUTE: &str = "bench.Echo/Echo";

/// A router with the echo route.
pub fn echo_router() -> Router {
    Router::new().route(ROUTE, |req: Request<Vec<u8>>| async move {
        Ok::<_, Status>(req.into_inner())
    })
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    pub payloads: Vec<usize>,
    pub in_flight: Vec<usize>,
    /// Extra scenario: this many connections, each with `multi_in_flight` calls in flight.
    pub connections: usize,
    pub multi_in_flight: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub rounds: usize,
    /// Run only the contender whose name starts with this (for profiling one side alone:
    /// prints its rates instead of comparisons).
    pub only: Option<String>,
    /// Add Fluxon with this many CALLS streams per connection as a peer.
    pub lanes_peer: Option<usize>,
    /// Add the same server as a node of a cluster (NATS, and PostgreSQL state when the test
    /// server is set) as a peer.
    pub cluster_peer: bool,
}

/// The request both sides send: Fluxon's `Vec<u8>` message and the same bytes pre-encoded for
/// the raw echo, so every contender moves identical bytes.
pub struct Payload {
    message: Vec<u8>,
    encoded: Bytes,
}

impl Payload {
    /// `size` bytes of filler, as a message and pre-encoded.
    pub fn new(size: usize) -> Arc<Self> {
        let message = vec![0x5a_u8; size];
        Arc::new(Self {
            encoded: Bytes::from(prost::Message::encode_to_vec(&message)),
            message,
        })
    }
}

/// One client connection of one contender.
#[derive(Clone)]
pub enum Client {
    Fluxon(Connection),
    Raw(quinn::Connection),
    #[cfg(feature = "tonic")]
    Tonic(crate::tonic_peer::Client),
}

impl Client {
    async fn echo(&self, payload: &Payload) -> anyhow::Result<()> {
        let (echoed, sent) = match self {
            Self::Fluxon(conn) => (
                conn.call::<_, Vec<u8>>(ROUTE, &payload.message)
                    .await?
                    .len(),
                payload.message.len(),
            ),
            Self::Raw(conn) => (
                raw_quinn::echo(conn, payload.encoded.clone()).await?,
                payload.encoded.len(),
            ),
            #[cfg(feature = "tonic")]
            Self::Tonic(client) => (
                client.echo(payload.message.clone()).await?,
                payload.message.len(),
            ),
        };
        anyhow::ensure!(echoed == sent, "short echo");
        Ok(())
    }
}

/// A contender: a name and its client connections.
struct Contender {
    name: String,
    single: Client,
    many: Vec<Client>,
}

/// Runs `in_flight` workers per client, calls back to back for `duration`.
pub async fn load(
    clients: &[Client],
    in_flight: usize,
    duration: Duration,
    payload: &Arc<Payload>,
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for client in clients {
        for _ in 0..in_flight {
            let client = client.clone();
            let payload = Arc::clone(payload);
            workers.spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    client.echo(&payload).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            });
        }
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

/// Runs one scenario for every contender, rotating the order each round.
async fn scenario(
    contenders: &[Contender],
    multi: bool,
    in_flight: usize,
    payload: &Arc<Payload>,
    plan: &Plan,
) -> anyhow::Result<Vec<Vec<Run>>> {
    let clients = |c: &Contender| -> Vec<Client> {
        if multi {
            c.many.clone()
        } else {
            vec![c.single.clone()]
        }
    };
    for c in contenders {
        load(&clients(c), in_flight, plan.warmup, payload).await?;
    }
    let mut runs = vec![Vec::new(); contenders.len()];
    for round in 0..plan.rounds {
        for k in 0..contenders.len() {
            let i = (round + k) % contenders.len();
            let run = load(&clients(&contenders[i]), in_flight, plan.duration, payload).await?;
            runs[i].push(run);
        }
    }
    Ok(runs)
}

pub async fn run(plan: &Plan) -> anyhow::Result<Vec<Comparison>> {
    let dir = tempfile::tempdir()?;
    let limits = ServerLimits::default().max_concurrent_streams(256);
    let config = ServerConfig::new(([127, 0, 0, 1], 0).into(), dir.path()).limits(limits);
    let server = Server::bind(config, echo_router()).await?;
    let cert = server
        .dev_certificate_path()
        .ok_or_else(|| anyhow::anyhow!("no development certificate"))?;
    // Like the raw peer, every Fluxon connection goes through one client endpoint (socket).
    let endpoint = ClientEndpoint::for_server(server.local_addr())?;
    let connect_fluxon = || async {
        Connection::connect(
            server.local_addr(),
            ClientConfig::new(Trust::CertificateFile(cert.clone())).endpoint(endpoint.clone()),
        )
        .await
    };
    let raw = raw_quinn::start(256).await?;

    let mut contenders = vec![
        Contender {
            name: "fluxon".to_owned(),
            single: Client::Fluxon(connect_fluxon().await?),
            many: Vec::new(),
        },
        Contender {
            name: "raw quinn stream-per-call".to_owned(),
            single: Client::Raw(raw.connect().await?),
            many: Vec::new(),
        },
    ];
    #[cfg(feature = "tonic")]
    let tonic = crate::tonic_peer::start().await?;
    #[cfg(feature = "tonic")]
    contenders.push(Contender {
        name: "tonic 0.14 + TLS".to_owned(),
        single: Client::Tonic(tonic.connect().await?),
        many: Vec::new(),
    });
    if plan.connections > 0 {
        for _ in 0..plan.connections {
            let f = Client::Fluxon(connect_fluxon().await?);
            let r = Client::Raw(raw.connect().await?);
            contenders[0].many.push(f);
            contenders[1].many.push(r);
            #[cfg(feature = "tonic")]
            contenders[2]
                .many
                .push(Client::Tonic(tonic.connect().await?));
        }
    }

    if let Some(lanes) = plan.lanes_peer {
        let connect = |lanes: usize| {
            Connection::connect(
                server.local_addr(),
                ClientConfig::new(Trust::CertificateFile(cert.clone()))
                    .endpoint(endpoint.clone())
                    .call_lanes(lanes),
            )
        };
        let mut many = Vec::new();
        for _ in 0..plan.connections {
            many.push(Client::Fluxon(connect(lanes).await?));
        }
        contenders.push(Contender {
            name: format!("fluxon, {lanes} lanes"),
            single: Client::Fluxon(connect(lanes).await?),
            many,
        });
    }
    // The same echo server as a node of a cluster: what the cluster wiring costs a local call.
    let clustered = if plan.cluster_peer {
        let nats = fluxon_server::testing::nats("bench_calls")
            .ok_or_else(|| anyhow::anyhow!("--cluster-peer needs FLUXON_TEST_NATS"))?;
        let node_dir = tempfile::tempdir()?;
        let mut config = ServerConfig::new(([127, 0, 0, 1], 0).into(), node_dir.path())
            .limits(ServerLimits::default().max_concurrent_streams(256))
            .node_id("bench-node")
            .cluster(
                fluxon_server::ClusterConfig::nats(nats)
                    .subject_prefix(fluxon_server::testing::unique_prefix()),
            );
        let state = match fluxon_server::testing::fresh_postgres("bench_calls").await {
            Some(url) => {
                config = config.state(fluxon_server::StateLocation::Postgres(url));
                "NATS + PostgreSQL state"
            }
            None => "NATS",
        };
        let node = Server::bind(config, echo_router()).await?;
        let node_cert = node
            .dev_certificate_path()
            .ok_or_else(|| anyhow::anyhow!("no development certificate"))?;
        let node_endpoint = ClientEndpoint::for_server(node.local_addr())?;
        let connect = || {
            Connection::connect(
                node.local_addr(),
                ClientConfig::new(Trust::CertificateFile(node_cert.clone()))
                    .endpoint(node_endpoint.clone()),
            )
        };
        let mut many = Vec::new();
        for _ in 0..plan.connections {
            many.push(Client::Fluxon(connect().await?));
        }
        contenders.push(Contender {
            name: format!("fluxon, clustered node ({state})"),
            single: Client::Fluxon(connect().await?),
            many,
        });
        Some((node, node_dir))
    } else {
        None
    };
    if let Some(only) = &plan.only {
        contenders.retain(|c| c.name.starts_with(only.as_str()));
        anyhow::ensure!(!contenders.is_empty(), "no contender named `{only}`");
    }
    let mut out = Vec::new();
    for &size in &plan.payloads {
        let payload = Payload::new(size);
        let mut scenarios: Vec<(String, bool, usize)> = plan
            .in_flight
            .iter()
            .map(|&n| (format!("calls/{size}B/1-conn/{n}-in-flight"), false, n))
            .collect();
        if plan.connections > 0 {
            scenarios.push((
                format!(
                    "calls/{size}B/{}-conns/{}-in-flight-each",
                    plan.connections, plan.multi_in_flight
                ),
                true,
                plan.multi_in_flight,
            ));
        }
        for (name, multi, in_flight) in scenarios {
            let runs = scenario(&contenders, multi, in_flight, &payload, plan).await?;
            if plan.only.is_some() {
                for (c, runs) in contenders.iter().zip(&runs) {
                    let rates: Vec<f64> = runs.iter().map(Run::rate).collect();
                    let calls: u64 = runs.iter().map(|r| r.calls).sum();
                    eprintln!("{name} {}: {calls} calls, rates {rates:.0?}", c.name);
                }
            }
            for (peer, peer_runs) in contenders.iter().zip(&runs).skip(1) {
                out.push(compare(&name, &peer.name, &runs[0], peer_runs));
            }
        }
    }
    drop(contenders);
    server.shutdown(Duration::from_secs(1)).await;
    if let Some((node, _dir)) = clustered {
        node.shutdown(Duration::from_secs(1)).await;
    }
    raw.close().await;
    Ok(out)
}

pub fn compare(name: &str, peer: &str, fluxon: &[Run], other: &[Run]) -> Comparison {
    compare_as(name, peer, "calls/s", fluxon, other)
}

/// [`compare`] with the rate named `unit` (what a run's `calls` count).
pub fn compare_as(name: &str, peer: &str, unit: &str, fluxon: &[Run], other: &[Run]) -> Comparison {
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
            Metric::higher_is_better(unit, rate(fluxon), rate(other)),
            Metric::lower_is_better("p50 µs", pct(fluxon, 50.0), pct(other, 50.0)),
            Metric::lower_is_better("p99 µs", pct(fluxon, 99.0), pct(other, 99.0)),
        ],
    }
}
