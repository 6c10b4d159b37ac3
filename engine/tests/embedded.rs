//! The same runtime on the embedded in-memory cluster: no broker, same code
//! path — records flow, poison pills are dead-lettered, offsets commit, and
//! window stores answer interactive queries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use engine::operators::{TimeWindows, Windowed, WindowedSerde};
use engine::queries::{Queries, QueryError};
use engine::serdes::{Json, Serde, U64, Utf8};
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

const MINUTE: Duration = Duration::from_secs(60);
const M: i64 = 60_000;

/// Writes `(drink, timestamp)` records keyed by drink, so each drink's
/// records stay in order on their way to the window task.
async fn order_at(cluster: &Cluster, orders: &[(&str, i64)]) {
    let producer: FutureProducer = cluster.client_config().create().unwrap();
    for (drink, timestamp) in orders {
        producer
            .send(
                FutureRecord::to("orders")
                    .key(*drink)
                    .payload(*drink)
                    .timestamp(*timestamp),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)
            .unwrap();
    }
}

/// Starts the demand application: per-drink counts in one-minute windows,
/// emitted once when they close, kept ten minutes.
fn start_demand(
    cluster: &Cluster,
    state_dir: &std::path::Path,
) -> (
    Queries,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<engine::Result<()>>,
) {
    let builder = StreamsBuilder::new();
    builder
        .stream("orders", Utf8, Utf8)
        .group_by(|_key: &String, drink: &String| drink.clone(), Utf8, Utf8)
        .windowed_by(
            TimeWindows::tumbling(MINUTE)
                .retention(10 * MINUTE)
                .emit_final(),
        )
        .count("demand-per-minute")
        .to_stream()
        .to("demand", WindowedSerde::new(Utf8, MINUTE), U64);
    let mut config = StreamsConfig::new("embedded-windows");
    config.state_dir = state_dir.to_path_buf();
    config.commit_interval_ms = Some(100);
    let streams = KafkaStreams::new(builder.build().unwrap(), config, cluster.clone()).unwrap();
    let queries = streams.queries();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = tokio::spawn(streams.run(async move {
        let _ = stopped.await;
    }));
    (queries, stop, app)
}

/// `(key, start, count)` of every window the instance hosts.
fn all_windows(queries: &Queries) -> Vec<(String, i64, u64)> {
    match queries.all_windows("demand-per-minute", i64::MIN, i64::MAX, &Utf8, &U64) {
        Ok(windows) => windows
            .into_iter()
            .map(|(window, count)| (window.key, window.start, count))
            .collect(),
        // Stores are declared once start-up has checked the topics.
        Err(QueryError::UnknownStore(_)) => Vec::new(),
        Err(error) => panic!("querying the windows: {error}"),
    }
}

/// Waits until the instance hosts exactly `expected` windows.
async fn wait_for_windows(queries: &Queries, expected: &[(&str, i64, u64)]) {
    let expected: Vec<(String, i64, u64)> = expected
        .iter()
        .map(|(key, start, count)| ((*key).to_owned(), *start, *count))
        .collect();
    let mut seen = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            seen = all_windows(queries);
            if seen == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "expected windows {expected:?}, last saw {seen:?}"
    );
}

/// Every `(key, start, count)` the application emitted, read to the end.
async fn emitted(cluster: &Cluster) -> Vec<(String, i64, u64)> {
    let consumer: StreamConsumer = cluster
        .client_config()
        .set("group.id", format!("demand-reader-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&["demand"]).unwrap();
    let serde = WindowedSerde::new(Utf8, MINUTE);
    let mut ended = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    while ended.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("the demand topic to reach its end")
        {
            Ok(message) => {
                let window: Windowed<String> = serde.deserialize(message.key().unwrap()).unwrap();
                let count = U64.deserialize(message.payload().unwrap()).unwrap();
                out.push((window.key, window.start, count));
            }
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                ended.insert(partition);
            }
            Err(error) => panic!("reading demand: {error}"),
        }
    }
    out.sort();
    out
}

/// A running application's window store answers interactive queries while
/// windows are open and after they closed (kept for their retention), by
/// key and over every key; each closed window is emitted exactly once, also
/// across a restart, after which the closed windows are still readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_stores_answer_interactive_queries_and_emit_once_across_a_restart() {
    common::init_logging();
    let cluster = Cluster::embedded().unwrap();
    cluster.create_topic("orders", 2, &[]).unwrap();
    cluster.create_topic("demand", 2, &[]).unwrap();
    let state_dir = tempfile::tempdir().unwrap();

    let (queries, stop, app) = start_demand(&cluster, state_dir.path());
    // Each step waits for the last, so no record is ever late.
    order_at(
        &cluster,
        &[("latte", 1_000), ("latte", 2_000), ("mocha", 3_000)],
    )
    .await;
    wait_for_windows(&queries, &[("latte", 0, 2), ("mocha", 0, 1)]).await;
    order_at(&cluster, &[("latte", M + 1_000), ("mocha", M + 2_000)]).await;
    wait_for_windows(
        &queries,
        &[
            ("latte", 0, 2),
            ("mocha", 0, 1),
            ("latte", M, 1),
            ("mocha", M, 1),
        ],
    )
    .await;
    order_at(
        &cluster,
        &[("latte", 2 * M + 5_000), ("mocha", 2 * M + 5_000)],
    )
    .await;
    // The first two minutes have closed, and are still readable.
    wait_for_windows(
        &queries,
        &[
            ("latte", 0, 2),
            ("mocha", 0, 1),
            ("latte", M, 1),
            ("mocha", M, 1),
            ("latte", 2 * M, 1),
            ("mocha", 2 * M, 1),
        ],
    )
    .await;
    let latte = "latte".to_owned();
    let lattes = queries
        .fetch_windows("demand-per-minute", &latte, M, 2 * M, &Utf8, &U64)
        .unwrap();
    assert_eq!(
        lattes,
        [
            (
                Windowed {
                    key: latte.clone(),
                    start: M,
                    end: 2 * M
                },
                1
            ),
            (
                Windowed {
                    key: latte.clone(),
                    start: 2 * M,
                    end: 3 * M
                },
                1
            ),
        ]
    );
    let metadata = queries.metadata("demand-per-minute").unwrap();
    assert_eq!(metadata.partitions, 2);
    assert!(metadata.hosted.values().all(|restoring| !restoring));
    assert!(matches!(
        queries.get("demand-per-minute", &latte, &Utf8, &U64),
        Err(QueryError::WrongStoreKind { .. })
    ));
    stop.send(()).unwrap();
    app.await.unwrap().unwrap();
    assert!(matches!(
        queries.fetch_windows("demand-per-minute", &latte, 0, M, &Utf8, &U64),
        Err(QueryError::NotHosted { .. })
    ));

    // Restart: the closed windows come back (from the local store and the
    // changelog) but are not emitted again; the next minute closes once.
    let (queries, stop, app) = start_demand(&cluster, state_dir.path());
    order_at(
        &cluster,
        &[("latte", 3 * M + 1_000), ("mocha", 3 * M + 1_000)],
    )
    .await;
    wait_for_windows(
        &queries,
        &[
            ("latte", 0, 2),
            ("mocha", 0, 1),
            ("latte", M, 1),
            ("mocha", M, 1),
            ("latte", 2 * M, 1),
            ("mocha", 2 * M, 1),
            ("latte", 3 * M, 1),
            ("mocha", 3 * M, 1),
        ],
    )
    .await;
    stop.send(()).unwrap();
    app.await.unwrap().unwrap();
    let mut expected = vec![
        ("latte".to_owned(), 0, 2),
        ("latte".to_owned(), M, 1),
        ("latte".to_owned(), 2 * M, 1),
        ("mocha".to_owned(), 0, 1),
        ("mocha".to_owned(), M, 1),
        ("mocha".to_owned(), 2 * M, 1),
    ];
    expected.sort();
    assert_eq!(
        emitted(&cluster).await,
        expected,
        "each closed window emitted exactly once"
    );
}
