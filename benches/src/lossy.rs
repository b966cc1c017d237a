//! Calls through a lossy, delaying network: a UDP relay on loopback between each client and
//! its server drops datagrams with a given probability and holds every datagram for a fixed
//! one-way delay, in each direction, from a fixed seed. Fluxon (calls sharing one CALLS
//! stream) against raw quinn (one stream per call), interleaved round by round.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fluxon_client::{ClientConfig, Congestion, Connection, Trust};
use fluxon_server::{Server, ServerConfig, ServerLimits};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::calls::{self, Client, Payload};
use crate::raw_quinn;
use crate::report::Comparison;
use crate::stats::Run;

pub const NOTES: &str = "\
calls-lossy: every client reaches its server through a UDP relay on 127.0.0.1 that drops each \
datagram with the given probability and delays each by the given one-way time, both directions, \
from a fixed seed (the same drop pattern for both contenders). Fluxon: one connection, calls \
sharing its CALLS stream; raw quinn: one connection, one bidirectional stream per call. Rounds \
rotate which contender goes first; `N lanes` spreads Fluxon's calls over N CALLS streams; `(bbr)` / `(newreno)` name the congestion controller both ends of that contender ran (CUBIC, quinn's default, otherwise).";

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    pub payloads: Vec<usize>,
    pub in_flight: Vec<usize>,
    /// Drop probabilities, in percent.
    pub loss_pct: Vec<f64>,
    pub delay: Duration,
    pub duration: Duration,
    pub warmup: Duration,
    pub rounds: usize,
    /// Fluxon contenders: one per lane count (`ClientConfig::call_lanes`).
    pub lanes: Vec<usize>,
    /// Congestion controllers: each runs a Fluxon server and clients (one per lane count) and a
    /// raw quinn pair of its own; the first one's raw quinn is everyone's baseline.
    pub congestion: Vec<Congestion>,
}

/// The relay's settings for one direction and both.
#[derive(Clone, Copy, Debug)]
struct Impairment {
    /// Drop probability in [0, 1].
    loss: f64,
    delay: Duration,
    seed: u64,
}

/// Counts of what a relay did.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
}

/// A deterministic coin: xorshift64 from `seed`.
struct Coin(u64);

impl Coin {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// True with probability `p`.
    fn flip(&mut self, p: f64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// A relay in front of `server`: returns the address a client connects to. It serves the
/// first client that writes to it; the tasks end when the returned handle is dropped.
async fn relay(
    server: SocketAddr,
    how: Impairment,
    stats: Arc<RelayStats>,
) -> anyhow::Result<(SocketAddr, RelayTasks)> {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    back.connect(server).await?;
    let addr = front.local_addr()?;
    let (client_tx, client_rx) = tokio::sync::watch::channel(None::<SocketAddr>);
    // Each direction: a reader that drops or stamps datagrams, and a writer that sends each
    // at its time (a constant delay keeps the order).
    let (up_tx, up_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let (down_tx, down_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let mut tasks = Vec::new();
    {
        let (front, stats) = (Arc::clone(&front), Arc::clone(&stats));
        tasks.push(tokio::spawn(async move {
            let mut coin = Coin::new(how.seed);
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                client_tx.send_replace(Some(from));
                if coin.flip(how.loss) {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if up_tx
                    .send((Instant::now() + how.delay, buf[..n].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
        }));
    }
    {
        let (back, stats) = (Arc::clone(&back), Arc::clone(&stats));
        tasks.push(tokio::spawn(async move {
            let mut coin = Coin::new(how.seed.rotate_left(32));
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = back.recv(&mut buf).await {
                if coin.flip(how.loss) {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if down_tx
                    .send((Instant::now() + how.delay, buf[..n].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
        }));
    }
    tasks.push(tokio::spawn(deliver(up_rx, Arc::clone(&stats), {
        let back = Arc::clone(&back);
        move |packet| {
            let back = Arc::clone(&back);
            async move {
                let _ = back.send(&packet).await;
            }
        }
    })));
    tasks.push(tokio::spawn(deliver(down_rx, stats, {
        let front = Arc::clone(&front);
        move |packet| {
            let front = Arc::clone(&front);
            let client = *client_rx.borrow();
            async move {
                if let Some(to) = client {
                    let _ = front.send_to(&packet, to).await;
                }
            }
        }
    })));
    Ok((addr, RelayTasks(tasks)))
}

/// Sends each queued datagram when its time comes.
async fn deliver<F, Fut>(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    stats: Arc<RelayStats>,
    send: F,
) where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(item) => queue.push_back(item),
                None => return,
            }
        }
        while let Ok(item) = rx.try_recv() {
            queue.push_back(item);
        }
        let Some(&(at, _)) = queue.front() else {
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(at) => {
                while queue.front().is_some_and(|(t, _)| *t <= Instant::now()) {
                    if let Some((_, packet)) = queue.pop_front() {
                        stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        send(packet).await;
                    }
                }
            }
            item = rx.recv() => match item {
                Some(item) => queue.push_back(item),
                None => return,
            },
        }
    }
}

/// The relay's tasks, aborted when dropped.
struct RelayTasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for RelayTasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The suffix naming a contender's congestion controller (none for CUBIC, the default).
fn tag(c: Congestion) -> String {
    match c {
        Congestion::Cubic => String::new(),
        other => format!(" ({other})"),
    }
}

pub async fn run(plan: &Plan) -> anyhow::Result<Vec<Comparison>> {
    let dir = tempfile::tempdir()?;
    let controllers = if plan.congestion.is_empty() {
        vec![Congestion::default()]
    } else {
        plan.congestion.clone()
    };
    // One Fluxon server and one raw quinn pair per controller.
    let mut servers = Vec::new();
    let mut raws = Vec::new();
    for &c in &controllers {
        let limits = ServerLimits::default()
            .max_concurrent_streams(256)
            .congestion(c);
        let config =
            ServerConfig::new(([127, 0, 0, 1], 0).into(), dir.path().join(c.name())).limits(limits);
        servers.push(Server::bind(config, calls::echo_router()).await?);
        raws.push(raw_quinn::start_with(256, c).await?);
    }
    let baseline = format!("raw quinn stream-per-call{}", tag(controllers[0]));
    let mut out = Vec::new();
    for &loss in &plan.loss_pct {
        let how = Impairment {
            loss: loss / 100.0,
            delay: plan.delay,
            seed: 0x5eed_0000 + loss.to_bits(),
        };
        let fluxon_stats = Arc::new(RelayStats::default());
        let raw_stats = Arc::new(RelayStats::default());
        // Every contender has a relay of its own, with the same seed: the same drop pattern.
        // The baseline goes last.
        let mut relays = Vec::new();
        let mut contenders: Vec<(String, Client)> = Vec::new();
        for (i, &c) in controllers.iter().enumerate() {
            let server = &servers[i];
            let cert = server
                .dev_certificate_path()
                .ok_or_else(|| anyhow::anyhow!("no development certificate"))?;
            for &lanes in &plan.lanes {
                let (addr, tasks) =
                    relay(server.local_addr(), how, Arc::clone(&fluxon_stats)).await?;
                relays.push(tasks);
                let config = ClientConfig::new(Trust::CertificateFile(cert.clone()))
                    .call_lanes(lanes)
                    .congestion(c);
                let name = match lanes {
                    1 => format!("fluxon{}", tag(c)),
                    n => format!("fluxon, {n} lanes{}", tag(c)),
                };
                contenders.push((
                    name,
                    Client::Fluxon(Connection::connect(addr, config).await?),
                ));
            }
        }
        for (i, &c) in controllers
            .iter()
            .enumerate()
            .skip(1)
            .chain(std::iter::once((0, &controllers[0])))
        {
            let (raw_addr, raw_relay) =
                relay(raws[i].server_addr()?, how, Arc::clone(&raw_stats)).await?;
            relays.push(raw_relay);
            contenders.push((
                format!("raw quinn stream-per-call{}", tag(c)),
                Client::Raw(raws[i].connect_to(raw_addr).await?),
            ));
        }
        let n = contenders.len();
        for &size in &plan.payloads {
            let payload = Payload::new(size);
            for &in_flight in &plan.in_flight {
                for (_, c) in &contenders {
                    calls::load(std::slice::from_ref(c), in_flight, plan.warmup, &payload).await?;
                }
                let mut runs: Vec<Vec<Run>> = vec![Vec::new(); n];
                for round in 0..plan.rounds {
                    for k in 0..n {
                        let i = (round + k) % n;
                        let c = std::slice::from_ref(&contenders[i].1);
                        runs[i].push(calls::load(c, in_flight, plan.duration, &payload).await?);
                    }
                }
                let raw_runs = &runs[n - 1];
                for ((who, _), fluxon_runs) in contenders.iter().zip(&runs).take(n - 1) {
                    let name = format!(
                        "calls-lossy/{loss}%-loss/{}ms/{size}B/{in_flight}-in-flight/{who}",
                        plan.delay.as_millis()
                    );
                    out.push(calls::compare(&name, &baseline, fluxon_runs, raw_runs));
                }
            }
        }
        drop(contenders);
        drop(relays);
        for (who, stats) in [("fluxon", &fluxon_stats), ("raw quinn", &raw_stats)] {
            eprintln!(
                "calls-lossy {loss}%: relays for {who} forwarded {} and dropped {} datagrams",
                stats.forwarded.load(Ordering::Relaxed),
                stats.dropped.load(Ordering::Relaxed)
            );
        }
    }
    for server in servers {
        server.shutdown(Duration::from_secs(1)).await;
    }
    for raw in raws {
        raw.close().await;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{Coin, Congestion};

    #[test]
    fn the_coin_lands_near_its_probability_and_repeats() {
        let mut a = Coin::new(7);
        let hits = (0..100_000).filter(|_| a.flip(0.03)).count();
        assert!((2_500..3_500).contains(&hits), "{hits}");
        let mut b = Coin::new(7);
        let mut c = Coin::new(7);
        assert!((0..1000).all(|_| b.flip(0.5) == c.flip(0.5)));
        let mut never = Coin::new(9);
        assert!((0..1000).all(|_| !never.flip(0.0)));
    }

    /// Calls through the relay work at 3% loss (a smoke run, not a measurement).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_get_through_a_lossy_relay() {
        let plan = super::Plan {
            payloads: vec![64],
            in_flight: vec![4],
            loss_pct: vec![3.0],
            delay: std::time::Duration::from_millis(2),
            duration: std::time::Duration::from_millis(300),
            warmup: std::time::Duration::from_millis(100),
            rounds: 1,
            lanes: vec![1, 4],
            congestion: vec![Congestion::Cubic, Congestion::Bbr],
        };
        let rows = tokio::time::timeout(std::time::Duration::from_secs(120), super::run(&plan))
            .await
            .expect("the smoke run took too long")
            .unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.bench.as_str()).collect();
        assert_eq!(
            names,
            [
                "calls-lossy/3%-loss/2ms/64B/4-in-flight/fluxon",
                "calls-lossy/3%-loss/2ms/64B/4-in-flight/fluxon, 4 lanes",
                "calls-lossy/3%-loss/2ms/64B/4-in-flight/fluxon (bbr)",
                "calls-lossy/3%-loss/2ms/64B/4-in-flight/fluxon, 4 lanes (bbr)",
                "calls-lossy/3%-loss/2ms/64B/4-in-flight/raw quinn stream-per-call (bbr)"
            ]
        );
        for r in &rows {
            assert!(r.metrics[0].fluxon.median > 0.0, "{r:?}");
            assert!(r.metrics[0].peer.median > 0.0, "{r:?}");
        }
    }
}
