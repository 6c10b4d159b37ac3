//! The same runtime on the embedded in-memory cluster: no broker, same code
//! path — records flow, poison pills are dead-lettered, offsets commit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use engine::serdes::{Json, Utf8};
use engine::{Cluster, KafkaStreams, StreamsBuilder, StreamsConfig};
use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// 1,000 records (ten of them malformed) through a filter and a map on the
/// embedded cluster: 990 outputs, ten dead letters, then a clean shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_runs_on_the_embedded_cluster() {
    let cluster = Cluster::embedded().unwrap();
    assert!(cluster.is_embedded());
    cluster.create_topic("numbers", 3, &[]).unwrap();
    cluster.create_topic("doubled", 3, &[]).unwrap();
    // The runtime would create it at start-up, but the reader below
    // subscribes first, and subscribing to a missing topic is an error.
    cluster
        .create_topic("embedded-test-dead-letters", 1, &[])
        .unwrap();

    let producer: FutureProducer = cluster.client_config().create().unwrap();
    let sends = futures::stream::iter((0..1_000u32).map(|i| {
        let producer = &producer;
        async move {
            let value = if i % 100 == 7 {
                b"not a number".to_vec()
            } else {
                i.to_string().into_bytes()
            };
            let key = format!("k{}", i % 10);
            producer
                .send(
                    FutureRecord::to("numbers").key(&key).payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(error, _)| error)
        }
    }))
    .buffered(1_000);
    for result in sends.collect::<Vec<_>>().await {
        result.unwrap();
    }

    let builder = StreamsBuilder::new();
    builder
        .stream("numbers", Utf8, Json::<u32>::new())
        .map_values(|n| n * 2)
        .to("doubled", Utf8, Json::<u32>::new());
    let config = StreamsConfig::new("embedded-test");
    let streams = KafkaStreams::new(builder.build().unwrap(), config, cluster.clone()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = tokio::spawn(streams.run(async move {
        let _ = stopped.await;
    }));

    let consumer: StreamConsumer = cluster
        .client_config()
        .set("group.id", "embedded-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer
        .subscribe(&["doubled", "embedded-test-dead-letters"])
        .unwrap();
    let (mut doubled, mut dead) = (0, 0);
    while doubled + dead < 1_000 {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap()
            .unwrap();
        if message.topic() == "doubled" {
            let n: u32 = serde_json::from_slice(message.payload().unwrap()).unwrap();
            assert_eq!(n % 2, 0);
            doubled += 1;
        } else {
            dead += 1;
        }
    }
    stop.send(()).unwrap();
    app.await.unwrap().unwrap();
    assert_eq!((doubled, dead), (990, 10));
}
