//! `fluxon-bench`: side-by-side benchmarks, each comparison interleaved A B A B in one run.
//!
//! ```sh
//! cargo run --release -p fluxon-bench -- calls
//! cargo run --release -p fluxon-bench -- calls --seconds 1 --rounds 3 --payloads 64 --in-flight 16
//! cargo run --release -p fluxon-bench -- transfers --mib 128 --rounds 2
//! cargo run --release -p fluxon-bench -- db
//! cargo run --release -p fluxon-bench -- all            # everything, one table
//! cargo run --release -p fluxon-bench -- all --quick    # a smoke run of everything
//! ```

// A binary: `pub` marks what modules share, not an API.
#![allow(unreachable_pub)]

mod calls;
mod db;
mod db_postgres;
mod lossy;
mod raw_quinn;
mod report;
mod rng;
mod sessions;
mod stats;
mod streams;
mod tls;
#[cfg(feature = "tonic")]
mod tonic_peer;
mod transfers;

use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::report::Comparison;

#[derive(Debug, Parser)]
#[command(about = "Fluxon's side-by-side benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Seconds per measured run (calls, sessions).
    #[arg(long, global = true, default_value_t = 2.0)]
    seconds: f64,
    /// Measured runs per contender (alternating which goes first).
    #[arg(long, global = true, default_value_t = 4)]
    rounds: usize,
}

/// `--seconds` and `--rounds` with `all --quick`'s smaller defaults when not given.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Timing {
    duration: Duration,
    rounds: usize,
}

impl Timing {
    fn of(cli: &Cli, matches: &clap::ArgMatches) -> Self {
        let given = |name: &str| {
            let sub = matches.subcommand().map(|(_, m)| m);
            [Some(matches), sub]
                .into_iter()
                .flatten()
                .any(|m| m.value_source(name) == Some(ValueSource::CommandLine))
        };
        let quick = matches!(cli.command, Command::All { quick: true, .. });
        Self {
            duration: if quick && !given("seconds") {
                Duration::from_millis(250)
            } else {
                Duration::from_secs_f64(cli.seconds)
            },
            rounds: if quick && !given("rounds") {
                2
            } else {
                cli.rounds
            },
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Small calls: Fluxon vs a raw quinn stream-per-request echo.
    Calls {
        /// Payload sizes in bytes.
        #[arg(long, value_delimiter = ',', default_value = "64,4096")]
        payloads: Vec<usize>,
        /// Calls in flight on the one connection.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        in_flight: Vec<usize>,
        /// Also measure this many connections at once (0: skip).
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Calls in flight on each of those connections.
        #[arg(long, default_value_t = 16)]
        in_flight_each: usize,
        /// Run one contender alone (`fluxon`, `raw`, `tonic`), for profiling.
        #[arg(long, hide = true)]
        only: Option<String>,
        /// Also compare Fluxon with N CALLS streams per connection (`call_lanes`) as a peer.
        #[arg(long)]
        lanes_peer: Option<usize>,
        /// Also compare with the same server as a node of a cluster: linked by the NATS server
        /// FLUXON_TEST_NATS names, its state in PostgreSQL when FLUXON_TEST_POSTGRES is set.
        #[arg(long)]
        cluster_peer: bool,
    },
    /// Sessions at scale: server memory per idle session (own process), connect and resume
    /// times, calls/s with many sessions connected.
    Sessions {
        /// Idle session counts.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        sessions: Vec<usize>,
        /// Sequential connects timed per round (new session, resume, raw handshake).
        #[arg(long, default_value_t = 200)]
        connects: usize,
        /// Serve for the parent benchmark (internal).
        #[arg(long, hide = true)]
        serve: Option<sessions::ServeKind>,
    },
    /// Cloud storage: Fluxon upload/download vs raw quinn (1 stream), tokio TCP + rustls and
    /// the disk alone, files on disk with fsync.
    Transfers(TransferArgs),
    /// Cloud storage on an S3-compatible store (FLUXON_TEST_S3): Fluxon upload/download vs
    /// the store's own client (object_store), the same file.
    TransfersS3(TransferArgs),
    /// Database: typed layer vs raw rusqlite; AsyncDatabase read scaling with 1/2/4/8 tasks.
    Db {
        /// Run one workload alone and exit (for instruction counts under valgrind):
        /// raw-bulk, typed-bulk, raw-single, typed-single, raw-get, typed-get, raw-join, typed-join.
        #[arg(long)]
        case: Option<String>,
        /// Iterations of `--case`.
        #[arg(long, default_value_t = 1000)]
        iters: usize,
    },
    /// Small calls through a lossy, delaying UDP relay: Fluxon vs raw quinn stream-per-call
    /// (calls/s, p50, p99) at each loss rate.
    CallsLossy {
        /// Payload sizes in bytes.
        #[arg(long, value_delimiter = ',', default_value = "64,4096")]
        payloads: Vec<usize>,
        /// Calls in flight on the one connection.
        #[arg(long, value_delimiter = ',', default_value = "16,64")]
        in_flight: Vec<usize>,
        /// Drop probabilities in percent, each direction.
        #[arg(long, value_delimiter = ',', default_value = "0,1,3")]
        loss: Vec<f64>,
        /// One-way delay in milliseconds, each direction.
        #[arg(long, default_value_t = 10)]
        delay_ms: u64,
        /// Fluxon clients to compare: one per lane count (CALLS streams per connection).
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        lanes: Vec<usize>,
        /// Congestion controllers (cubic, newreno, bbr): each runs its own Fluxon and raw quinn
        /// contenders; the first one's raw quinn is the baseline.
        #[arg(long, value_delimiter = ',', default_value = "cubic")]
        congestion: Vec<fluxon_client::Congestion>,
    },
    /// Streaming calls: Fluxon vs tonic's streaming (`--features tonic`): a server stream read
    /// flat out (firehose) and a bidirectional echo with messages in flight (bounce).
    Streams {
        /// Message sizes in bytes.
        #[arg(long, value_delimiter = ',', default_value = "64,4096")]
        sizes: Vec<usize>,
        /// Messages in flight on a bounce call.
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Bound on Fluxon's QUIC datagrams (path MTU discovery), both sides; up to 6500 where
        /// the path carries it, as loopback does. tonic's TCP is unaffected.
        #[arg(long, default_value_t = fluxon_proto::transport::DEFAULT_MAX_UDP_PAYLOAD)]
        max_udp_payload: u16,
    },
    /// Database on PostgreSQL: AsyncDatabase vs raw tokio-postgres (insert, point select,
    /// join), in a fresh database on the server that FLUXON_TEST_POSTGRES names.
    DbPostgres,
    /// Every benchmark with its default points (calls, transfers, db, sessions): one table.
    All {
        /// A smoke run: few points, small sizes, short runs (--seconds/--rounds still apply).
        #[arg(long)]
        quick: bool,
        #[command(flatten)]
        transfers: TransferArgs,
    },
}

#[derive(Debug, clap::Args)]
struct TransferArgs {
    /// MiB per transfer (default 1024; 32 with `all --quick`).
    #[arg(long)]
    mib: Option<u64>,
    /// Directory for the temporary files (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Bound on QUIC datagrams (path MTU discovery) for Fluxon and raw quinn alike; up to
    /// 6500 where the path carries it, as loopback does.
    #[arg(long, default_value_t = fluxon_proto::transport::DEFAULT_MAX_UDP_PAYLOAD)]
    max_udp_payload: u16,
}

impl TransferArgs {
    fn plan(&self, quick: bool, rounds: usize) -> transfers::Plan {
        let mib = self.mib.unwrap_or(if quick { 32 } else { 1024 });
        transfers::Plan {
            bytes: mib << 20,
            warmup_bytes: mib.min(64) << 20,
            rounds,
            dir: self.dir.clone(),
            max_udp_payload: self.max_udp_payload,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    let timing = Timing::of(&cli, &matches);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Command::Db {
        case: Some(case),
        iters,
    } = &cli.command
    {
        return db::single_case(case, *iters);
    }
    let (rows, notes) = runtime.block_on(run(cli.command, timing))?;
    println!("{}", report::markdown(&rows));
    for note in notes {
        println!("{note}\n");
    }
    print!("{}", report::json_lines(&rows));
    Ok(())
}

/// Runs one command; returns its rows and the notes describing what each contender does.
async fn run(
    command: Command,
    timing: Timing,
) -> anyhow::Result<(Vec<Comparison>, Vec<&'static str>)> {
    let Timing { duration, rounds } = timing;
    let calls_plan = |payloads, in_flight, connections, multi_in_flight, only| calls::Plan {
        payloads,
        in_flight,
        connections,
        multi_in_flight,
        duration,
        warmup: duration / 4,
        rounds,
        only,
        lanes_peer: None,
        cluster_peer: false,
    };
    Ok(match command {
        Command::Calls {
            payloads,
            in_flight,
            connections,
            in_flight_each,
            only,
            lanes_peer,
            cluster_peer,
        } => {
            let mut plan = calls_plan(payloads, in_flight, connections, in_flight_each, only);
            plan.lanes_peer = lanes_peer;
            plan.cluster_peer = cluster_peer;
            (calls::run(&plan).await?, Vec::new())
        }
        Command::Sessions {
            sessions,
            connects,
            serve,
        } => match serve {
            Some(kind) => (sessions::serve(kind).await?, Vec::new()),
            None => {
                let plan = sessions::Plan::new(sessions, connects, duration, rounds);
                (sessions::run(&plan).await?, Vec::new())
            }
        },
        Command::Transfers(args) => (
            transfers::run(&args.plan(false, rounds)).await?,
            vec![transfers::NOTES],
        ),
        Command::TransfersS3(args) => (
            transfers::run_s3(&args.plan(false, rounds)).await?,
            vec![transfers::S3_NOTES],
        ),
        Command::Db { .. } => (db::run(&db::Plan::full(rounds)).await?, vec![db::NOTES]),
        Command::CallsLossy {
            payloads,
            in_flight,
            loss,
            delay_ms,
            lanes,
            congestion,
        } => {
            let plan = lossy::Plan {
                payloads,
                in_flight,
                loss_pct: loss,
                delay: Duration::from_millis(delay_ms),
                duration,
                warmup: duration / 4,
                rounds,
                lanes,
                congestion,
            };
            (lossy::run(&plan).await?, vec![lossy::NOTES])
        }
        Command::Streams {
            sizes,
            in_flight,
            max_udp_payload,
        } => {
            let plan = streams::Plan {
                sizes,
                in_flight,
                max_udp_payload,
                duration,
                warmup: duration / 4,
                rounds,
            };
            (streams::run(&plan).await?, vec![streams::NOTES])
        }
        Command::DbPostgres => {
            let Some(url) = fluxon_server::testing::fresh_postgres("db-postgres bench").await
            else {
                anyhow::bail!(
                    "db-postgres needs a PostgreSQL server: set FLUXON_TEST_POSTGRES to its URL"
                );
            };
            let plan = db_postgres::Plan::full(rounds);
            (
                db_postgres::run(&url, &plan).await?,
                vec![db_postgres::NOTES],
            )
        }
        Command::All { quick, transfers } => {
            let mut rows = Vec::new();
            eprintln!("fluxon-bench all: calls");
            let plan = if quick {
                calls_plan(vec![64], vec![1, 16], 8, 4, None)
            } else {
                calls_plan(vec![64, 4096], vec![1, 16, 64], 64, 16, None)
            };
            rows.extend(calls::run(&plan).await?);
            eprintln!("fluxon-bench all: transfers");
            rows.extend(transfers::run(&transfers.plan(quick, rounds)).await?);
            eprintln!("fluxon-bench all: db");
            let plan = db::Plan::full(rounds);
            let plan = if quick { plan.scaled_down(20) } else { plan };
            rows.extend(db::run(&plan).await?);
            // On PostgreSQL when a server is named (FLUXON_TEST_POSTGRES).
            if std::env::var_os(fluxon_server::testing::POSTGRES_ENV).is_some() {
                if let Some(url) = fluxon_server::testing::fresh_postgres("db-postgres").await {
                    eprintln!("fluxon-bench all: db-postgres");
                    let plan = db_postgres::Plan::full(rounds);
                    let plan = if quick { plan.scaled_down(20) } else { plan };
                    rows.extend(db_postgres::run(&url, &plan).await?);
                }
            }
            // Sessions at scale (benches/src/sessions.rs).
            eprintln!("fluxon-bench all: sessions");
            let plan = if quick {
                let mut plan = sessions::Plan::new(vec![100], 20, duration, rounds);
                plan.settle = Duration::from_secs(3);
                plan
            } else {
                sessions::Plan::new(vec![1000, 10000], 200, duration, rounds)
            };
            rows.extend(sessions::run(&plan).await?);
            (rows, vec![transfers::NOTES, db::NOTES])
        }
    })
}

#[cfg(test)]
mod tests {
    /// The benchmark's own code path works end to end (a smoke run, not a measurement).
    #[tokio::test]
    async fn calls_benchmark_smoke_run() {
        let plan = super::calls::Plan {
            payloads: vec![64],
            in_flight: vec![4],
            connections: 2,
            multi_in_flight: 2,
            duration: std::time::Duration::from_millis(100),
            warmup: std::time::Duration::from_millis(20),
            rounds: 2,
            only: None,
            lanes_peer: Some(4),
            cluster_peer: false,
        };
        let rows = super::calls::run(&plan).await.unwrap();
        // One-connection and two-connection scenarios, each against every peer (raw quinn,
        // Fluxon with 4 lanes, and tonic when built in).
        let peers = if cfg!(feature = "tonic") { 3 } else { 2 };
        assert_eq!(rows.len(), 2 * peers);
        let rate = &rows[0].metrics[0];
        assert!(
            rate.fluxon.median > 0.0 && rate.peer.median > 0.0,
            "{rate:?}"
        );
        assert!(
            super::report::json_lines(&rows).contains("\"bench\":\"calls/64B/1-conn/4-in-flight\"")
        );
    }

    /// `all --quick` shortens runs unless `--seconds` / `--rounds` are given.
    #[test]
    fn quick_timing_yields_to_explicit_flags() {
        use clap::{CommandFactory, FromArgMatches};
        use std::time::Duration;
        let timing = |args: &[&str]| {
            let matches = super::Cli::command().try_get_matches_from(args).unwrap();
            let cli = super::Cli::from_arg_matches(&matches).unwrap();
            let t = super::Timing::of(&cli, &matches);
            (t.duration, t.rounds)
        };
        assert_eq!(
            timing(&["b", "all", "--quick"]),
            (Duration::from_millis(250), 2)
        );
        assert_eq!(
            timing(&["b", "all", "--quick", "--rounds", "3", "--seconds", "1"]),
            (Duration::from_secs(1), 3)
        );
        assert_eq!(
            timing(&["b", "--rounds", "5", "all", "--quick"]),
            (Duration::from_millis(250), 5)
        );
        assert_eq!(timing(&["b", "all"]), (Duration::from_secs(2), 4));
        assert_eq!(
            timing(&["b", "transfers", "--mib", "8"]),
            (Duration::from_secs(2), 4)
        );
    }
}
