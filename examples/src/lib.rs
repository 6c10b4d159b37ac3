//! Runnable example pipelines built on the engine; each binary under
//! `src/bin/` starts with a line saying how to run it. This library holds
//! what they share: connecting, loading input, and waiting for output.

use std::time::Duration;

use anyhow::Context;
use engine::{Cluster, KafkaStreams, StreamsConfig, Topology};
use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Logs to stderr at `info` (or as `RUST_LOG` says).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The cluster `KAFKA_BROKERS` names, or the embedded one when it is unset.
pub fn cluster_from_env() -> anyhow::Result<Cluster> {
    let brokers = std::env::var("KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.trim().is_empty());
    Cluster::connect(brokers.as_deref()).context("connecting to Kafka")
}

/// Creates each topic that does not exist yet.
pub fn ensure_topics(cluster: &Cluster, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let names: Vec<String> = topics.iter().map(|(t, _)| (*t).to_owned()).collect();
    let existing = cluster.partition_counts(&names)?;
    for (topic, partitions) in topics {
        if !existing.contains_key(*topic) {
            cluster.create_topic(topic, *partitions, &[])?;
        }
    }
    Ok(())
}

/// Writes `records` (key, value) to `topic` with an idempotent producer,
/// many in flight at once, and waits for every acknowledgement.
pub async fn produce_all(
    cluster: &Cluster,
    topic: &str,
    records: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let producer: FutureProducer = cluster
        .client_config()
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()?;
    let sends = futures::stream::iter(records.into_iter().map(|(key, value)| {
        let producer = &producer;
        async move {
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ())
                .map_err(|(error, _)| error)
        }
    }))
    .buffer_unordered(10_000);
    let results: Vec<_> = sends.collect().await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(())
}

/// Reads `topics` from the beginning (in a group of its own) until `total`
/// records have arrived; returns them as (topic, partition, key, value).
pub async fn read_until(
    cluster: &Cluster,
    group: &str,
    topics: &[&str],
    total: usize,
) -> anyhow::Result<Vec<(String, i32, String, Vec<u8>)>> {
    let consumer: StreamConsumer = cluster
        .client_config()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(topics)?;
    let mut records = Vec::with_capacity(total);
    while records.len() < total {
        let message = consumer.recv().await?;
        records.push((
            message.topic().to_owned(),
            message.partition(),
            String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            message.payload().unwrap_or_default().to_vec(),
        ));
    }
    Ok(records)
}

/// Runs `topology` as application `application_id` on `cluster` while
/// reading `topics` from the beginning until `count` records have arrived,
/// then shuts it down gracefully (as SIGINT or SIGTERM would); returns what
/// arrived as (topic, partition, key, value).
pub async fn run_until_outputs(
    cluster: &Cluster,
    application_id: &str,
    topology: Topology,
    topics: &[&str],
    count: usize,
) -> anyhow::Result<Vec<(String, i32, String, Vec<u8>)>> {
    let mut config = StreamsConfig::new(application_id);
    config.bootstrap_servers = (!cluster.is_embedded()).then(|| cluster.bootstrap_servers().into());
    let streams = KafkaStreams::new(topology, config, cluster.clone())?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let app = tokio::spawn(streams.run(async move {
        tokio::select! {
            () = engine::shutdown::signal() => {}
            _ = done_rx => {}
        }
    }));
    let group = format!("{application_id}-reader-{}", std::process::id());
    let outputs = read_until(cluster, &group, topics, count).await?;
    let _ = done_tx.send(());
    app.await.context("the pipeline task panicked")??;
    Ok(outputs)
}
