//! Load: many concurrent client connections (each its own QUIC endpoint and session), each
//! logging in and making calls, a third of which write a row through `fluxon-db`. Zero errors are
//! allowed and every write must be in the database afterwards. Prints the server's memory growth
//! and call latency percentiles (figures, not assertions).
//!
//! The always-on variant runs 200 clients × 20 calls. The full one (1,000 × 100) and a soak run
//! by hand:
//!
//! ```sh
//! cargo test --release -p fluxon-e2e --test load -- --ignored --nocapture
//! FLUXON_SOAK_CLIENTS=1000 FLUXON_SOAK_CALLS=2000 \
//!   cargo test --release -p fluxon-e2e --test load soak -- --ignored --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use common::rss_kib;
use fluxon_client::Connection;
use fluxon_e2e::msg::{Echo, Login, Whoami};
use fluxon_e2e::notes::{self, AddNote, Id, Note};
use fluxon_e2e::{app_router, client_config, routes, server_config};
use fluxon_server::ServerLimits;

async fn run(clients: usize, calls: usize) {
    fluxon_e2e::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("notes.db");
    let db = notes::open(&db_path, 8).await.unwrap();
    let config = server_config(&dir.path().join("server"))
        .limits(ServerLimits::default().max_connections(clients + 10));
    let server = fluxon_e2e::start(config, app_router().merge(notes::router(db))).await;
    let rss_before = rss_kib();
    let started = Instant::now();

    // Connect everyone first (bounded concurrency for the TLS handshakes), then run the calls.
    let mut conns = Vec::with_capacity(clients);
    for chunk in (0..clients).collect::<Vec<_>>().chunks(50) {
        let mut set = tokio::task::JoinSet::new();
        for &c in chunk {
            let config = client_config(&server).connect_timeout(Duration::from_secs(60));
            let addr = server.local_addr();
            set.spawn(async move { (c, Connection::connect(addr, config).await) });
        }
        while let Some(r) = set.join_next().await {
            let (c, conn) = r.unwrap();
            conns.push((c, conn.expect("client connects")));
        }
    }
    let connected = started.elapsed();
    assert_eq!(server.connection_count(), clients);
    let rss_connected = rss_kib();

    let mut set = tokio::task::JoinSet::new();
    for (c, conn) in conns {
        set.spawn(async move {
            let user = 1000 + c as i64;
            let me: Whoami = conn.call(routes::LOGIN, &Login { user_id: user }).await?;
            assert_eq!(me.user_id, Some(user));
            let mut latencies = Vec::with_capacity(calls);
            let mut writes = 0i64;
            for i in 0..calls {
                let t = Instant::now();
                if i % 3 == 0 {
                    let _: Id = conn
                        .call(
                            notes::routes::ADD,
                            &AddNote {
                                seq: i as i64,
                                text: format!("{c}:{i}"),
                            },
                        )
                        .await?;
                    writes += 1;
                } else {
                    let e: Echo = conn
                        .call(
                            routes::ECHO,
                            &Echo {
                                text: "load".into(),
                                n: i as u64,
                            },
                        )
                        .await?;
                    assert_eq!(e.n, i as u64);
                }
                latencies.push(t.elapsed());
            }
            let count: Id = conn.call(notes::routes::COUNT, &()).await?;
            assert_eq!(count.id, writes, "client {c} sees all its writes");
            Ok::<_, fluxon_client::Status>((latencies, writes, conn))
        });
    }
    let mut latencies = Vec::with_capacity(clients * calls);
    let mut writes = 0;
    let mut errors = Vec::new();
    let mut keep = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok((l, w, conn)) => {
                latencies.extend(l);
                writes += w;
                keep.push(conn);
            }
            Err(e) => errors.push(e),
        }
    }
    let elapsed = started.elapsed();
    let rss_peak = rss_kib();
    assert!(
        errors.is_empty(),
        "{} clients failed; first: {}",
        errors.len(),
        errors[0]
    );

    // Every write is in the database.
    let db = fluxon_db::Database::open(&db_path).unwrap();
    let rows = db.handle().select::<Note>().fetch().unwrap();
    assert_eq!(rows.len() as i64, writes);
    let mut per_client = std::collections::HashMap::<i64, usize>::new();
    for n in &rows {
        *per_client.entry(n.author).or_default() += 1;
    }
    assert_eq!(per_client.len(), clients);
    assert!(per_client.values().all(|&n| n == calls.div_ceil(3)));

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let total_calls = clients * (calls + 2);
    eprintln!(
        "load: {clients} clients x {calls} calls ({total_calls} calls, {writes} db writes) in {elapsed:.1?} \
         (connect {connected:.1?}); {:.0} calls/s; latency p50 {:?} p90 {:?} p99 {:?} max {:?}; \
         process RSS {} MiB before, {} MiB connected, {} MiB at the end",
        total_calls as f64 / (elapsed - connected).as_secs_f64(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        latencies[latencies.len() - 1],
        rss_before / 1024,
        rss_connected / 1024,
        rss_peak / 1024,
    );
    drop(keep);
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_twenty_calls_each() {
    run(200, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "about 3 minutes on 2 busy cores in a debug build; run by hand (see the module docs)"]
async fn thousand_clients_hundred_calls_each() {
    run(1000, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run by hand with FLUXON_SOAK_CLIENTS and FLUXON_SOAK_CALLS"]
async fn soak() {
    let var = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    run(
        var("FLUXON_SOAK_CLIENTS", 1000),
        var("FLUXON_SOAK_CALLS", 2000),
    )
    .await;
}
