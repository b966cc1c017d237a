//! `fluxon-bench`: side-by-side benchmarks, each comparison interleaved A B A B in one run.
//!
//! ```sh
//! cargo run --release -p fluxon-bench -- calls
//! cargo run --release -p fluxon-bench -- calls --seconds 1 --rounds 3 --payloads 64 --in-flight 16
//! ```

// A binary: `pub` marks what modules share, not an API.
#![allow(unreachable_pub)]

mod calls;
mod raw_quinn;
mod report;
mod sessions;
mod stats;
#[cfg(feature = "tonic")]
mod tonic_peer;

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Fluxon's side-by-side benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Seconds per measured run.
    #[arg(long, global = true, default_value_t = 2.0)]
    seconds: f64,
    /// Measured runs per contender (alternating which goes first).
    #[arg(long, global = true, default_value_t = 4)]
    rounds: usize,
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let duration = Duration::from_secs_f64(cli.seconds);
    let rows = runtime.block_on(async {
        match cli.command {
            Command::Calls {
                payloads,
                in_flight,
                connections,
                in_flight_each,
            } => {
                let plan = calls::Plan {
                    payloads,
                    in_flight,
                    connections,
                    multi_in_flight: in_flight_each,
                    duration,
                    warmup: duration / 4,
                    rounds: cli.rounds,
                };
                calls::run(&plan).await
            }
            Command::Sessions {
                sessions,
                connects,
                serve,
            } => match serve {
                Some(kind) => sessions::serve(kind).await,
                None => {
                    let plan = sessions::Plan::new(sessions, connects, duration, cli.rounds);
                    sessions::run(&plan).await
                }
            },
        }
    })?;
    println!("{}", report::markdown(&rows));
    print!("{}", report::json_lines(&rows));
    Ok(())
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
        };
        let rows = super::calls::run(&plan).await.unwrap();
        // One-connection and two-connection scenarios, each against every peer.
        let peers = if cfg!(feature = "tonic") { 2 } else { 1 };
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
}
