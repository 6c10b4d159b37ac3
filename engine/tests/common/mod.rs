//! Helpers shared by the real-broker tests: configs, producing, reading
//! back, committed and end offsets, and a runtime started in the background.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use engine::{Cluster, KafkaStreams, StreamsConfig, Topology};
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

/// The number of partitions of `topic`.
pub(crate) fn partitions(topic: &str) -> i32 {
    let consumer = metadata_consumer("partitions");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32)
}

pub(crate) use testkit::init_logging;

/// Spins for `work`: stands in for CPU-heavy processing, so a test can
/// catch a pipeline mid-stream.
pub(crate) fn busy_work(work: Duration) {
    let until = Instant::now() + work;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Whether a Kafka error is one the protocol says to retry.
fn is_retriable(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            NotCoordinator | CoordinatorLoadInProgress | CoordinatorNotAvailable | RequestTimedOut
        )
    )
}

/// Sums a counter family of a registry.
pub(crate) fn counter(registry: &prometheus::Registry, name: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| {
            family
                .get_metric()
                .iter()
                .map(|m| m.get_counter().get_value() as u64)
        })
        .sum()
}

pub(crate) fn config(app: &str) -> StreamsConfig {
    let mut config =
        StreamsConfig::new(app).bootstrap_servers(Some(testkit::kafka().bootstrap_servers()));
    config.commit_interval_ms = Some(200);
    config.shutdown_timeout_ms = 10_000;
    config.session_timeout_ms = 6_000;
    config
}

pub(crate) fn cluster() -> Cluster {
    Cluster::kafka(testkit::kafka().bootstrap_servers())
}

pub(crate) async fn produce_raw(topic: &str, records: Vec<(String, Vec<u8>)>) -> Vec<(i32, i64)> {
    let producer: FutureProducer = testkit::kafka()
        .client_config()
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let sends = futures::stream::iter(records.into_iter().map(|(key, value)| {
        let producer = &producer;
        async move {
            let delivery = producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
            (delivery.partition, delivery.offset)
        }
    }))
    .buffered(20_000);
    sends.collect().await
}

/// A record read back: partition, offset, key, value, headers.
pub(crate) type Read = (i32, i64, String, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Reads `topic` from the start until `count` records arrived.
pub(crate) async fn read_records(topic: &str, count: usize) -> Vec<Read> {
    let consumer: StreamConsumer = testkit::kafka()
        .client_config()
        .set("group.id", testkit::unique_name("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut records = Vec::with_capacity(count);
    while records.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {count} records arrived in {topic}",
                    records.len()
                )
            })
            .unwrap();
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        records.push((
            message.partition(),
            message.offset(),
            String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            message.payload().unwrap_or_default().to_vec(),
            headers,
        ));
    }
    records
}

pub(crate) fn metadata_consumer(group: &str) -> BaseConsumer {
    testkit::kafka()
        .client_config()
        .set("group.id", group)
        // read_committed would make OffsetFetch wait out open transactions.
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap()
}

/// Records in `topic` (sum of log end offsets; topics here are never truncated).
pub(crate) fn topic_size(topic: &str) -> i64 {
    let consumer = metadata_consumer("sizer");
    (0..partitions(topic))
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// The group's committed offset on each partition of `topic` (0 when none).
pub(crate) fn committed(group: &str, topic: &str) -> Vec<i64> {
    let consumer = metadata_consumer(group);
    let mut list = TopicPartitionList::new();
    for p in 0..partitions(topic) {
        list.add_partition(topic, p);
    }
    // Right after a group or the broker starts, its coordinator may still
    // be loading or moving: those answers are retriable by definition.
    let deadline = Instant::now() + Duration::from_secs(30);
    let committed = loop {
        match consumer.committed_offsets(list.clone(), Duration::from_secs(10)) {
            Ok(committed) => break committed,
            Err(error) if Instant::now() < deadline && is_retriable(&error) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("reading committed offsets of {group}: {error}"),
        }
    };
    (0..partitions(topic))
        .map(
            |p| match committed.find_partition(topic, p).unwrap().offset() {
                Offset::Offset(o) => o,
                _ => 0,
            },
        )
        .collect()
}

pub(crate) fn end_offsets(topic: &str) -> Vec<i64> {
    let consumer = metadata_consumer("ends");
    (0..partitions(topic))
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

/// Polls `condition` every 50 ms until it holds, failing after `limit`.
pub(crate) async fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) struct Running {
    pub(crate) stop: Option<oneshot::Sender<()>>,
    pub(crate) handle: tokio::task::JoinHandle<engine::Result<()>>,
    pub(crate) registry: prometheus::Registry,
    pub(crate) queries: engine::queries::Queries,
}

impl Running {
    pub(crate) fn start(topology: Topology, config: StreamsConfig) -> Self {
        init_logging();
        let registry = prometheus::Registry::new();
        let streams = KafkaStreams::new(topology, config, cluster())
            .unwrap()
            .with_metrics(&registry)
            .unwrap();
        let queries = streams.queries();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(streams.run(async move {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            handle,
            registry,
            queries,
        }
    }

    pub(crate) fn gauge(&self, name: &str) -> i64 {
        self.registry
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| {
                family
                    .get_metric()
                    .iter()
                    .map(|m| m.get_gauge().get_value() as i64)
            })
            .sum()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle.await.unwrap().unwrap();
    }
}
