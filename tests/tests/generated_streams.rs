//! Generated streaming stubs over QUIC: a service implemented through its generated trait, called
//! through its generated client (codegen/tests/fixtures/streams/streams.proto).

use std::time::Duration;

use fluxon_e2e::{connect, server_config, start};
use fluxon_server::{Replies, Request, Status, Streaming};
use futures_util::StreamExt as _;

use fluxon_e2e::ticker::{CountRequest, Tick, Ticker, TickerClient, TickerServer, Total};

struct Clock;

impl Ticker for Clock {
    async fn once(&self, request: Request<Tick>) -> Result<Tick, Status> {
        Ok(request.into_inner())
    }

    async fn count(&self, request: Request<CountRequest>) -> Result<Replies<Tick>, Status> {
        let CountRequest { count, label } = request.into_inner();
        Ok(Box::pin(futures_util::stream::iter((0..count).map(
            move |seq| {
                Ok(Tick {
                    seq,
                    label: label.clone(),
                })
            },
        ))))
    }

    async fn sum(&self, request: Request<Streaming<Tick>>) -> Result<Total, Status> {
        let mut ticks = request.into_inner();
        let mut total = Total::default();
        while let Some(tick) = ticks.message().await? {
            total.sum += tick.seq;
            total.ticks += 1;
        }
        Ok(total)
    }

    async fn echo(&self, request: Request<Streaming<Tick>>) -> Result<Replies<Tick>, Status> {
        Ok(Box::pin(request.into_inner().map(|tick| {
            let tick = tick?;
            Ok(Tick {
                seq: tick.seq,
                label: tick.label.to_uppercase(),
            })
        })))
    }
}

#[tokio::test]
async fn generated_stubs_carry_every_shape_of_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        server_config(dir.path()),
        TickerServer::new(Clock).into_router(),
    )
    .await;
    let client = TickerClient::new(connect(&server).await);

    let once = client
        .once(Tick {
            seq: 7,
            label: "one".into(),
        })
        .await
        .unwrap();
    assert_eq!(once.seq, 7);

    let ticks: Vec<Tick> = client
        .count(CountRequest {
            count: 3,
            label: "t".into(),
        })
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let seqs: Vec<u64> = ticks.iter().map(|t| t.seq).collect();
    assert_eq!(seqs, [0, 1, 2]);

    let total = client
        .sum(futures_util::stream::iter((1..=10).map(|seq| Tick {
            seq,
            label: String::new(),
        })))
        .await
        .unwrap();
    assert_eq!((total.sum, total.ticks), (55, 10));

    let (mut sink, mut replies) = client
        .echo_with(fluxon_client::CallOptions::new().timeout(Duration::from_secs(60)))
        .await
        .unwrap();
    for (seq, label) in ["a", "b"].into_iter().enumerate() {
        sink.send(&Tick {
            seq: seq as u64,
            label: label.into(),
        })
        .await
        .unwrap();
        let back = replies.message().await.unwrap().unwrap();
        assert_eq!(
            (back.seq, back.label.as_str()),
            (seq as u64, &*label.to_uppercase())
        );
    }
    sink.finish();
    assert!(replies.message().await.unwrap().is_none());
    server.shutdown(Duration::from_secs(1)).await;
}
