//! Proves the test harness against a real broker: what an idempotent producer
//! writes, a consumer group reads back exactly once and in produce order per
//! partition; and the broker script's `stop` leaves no process behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

const RECORDS: usize = 10_000;
const PARTITIONS: i32 = 6;

/// 10,000 keyed records through an idempotent producer (`acks=all`) into six
/// partitions come back through a consumer group exactly once each, and in
/// the order they were produced within every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_round_trip_is_exactly_once_and_ordered_per_partition() {
    let kafka = testkit::kafka();
    let topic = testkit::unique_name("harness");
    kafka.create_topic(&topic, PARTITIONS).await;

    let producer: FutureProducer = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();

    // All sends are enqueued in sequence order before any is awaited, so the
    // produce order within a partition is ascending sequence numbers.
    let deliveries = join_all((0..RECORDS).map(|seq| {
        let key = format!("customer-{}", seq % 97);
        let value = seq.to_string();
        let producer = &producer;
        let topic = &topic;
        async move {
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map(|delivery| (seq, key, delivery.partition, delivery.offset))
                .map_err(|(error, _)| error)
        }
    }))
    .await;
    let mut produced: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    let mut key_partition: HashMap<String, i32> = HashMap::new();
    for delivery in deliveries {
        let (seq, key, partition, offset) = delivery.expect("every record is acknowledged");
        produced.entry(partition).or_default().push((offset, seq));
        let first = *key_partition.entry(key.clone()).or_insert(partition);
        assert_eq!(first, partition, "key {key} landed in two partitions");
    }
    assert_eq!(
        produced.len(),
        PARTITIONS as usize,
        "keys spread over every partition"
    );
    for (partition, records) in &mut produced {
        records.sort();
        let seqs: Vec<usize> = records.iter().map(|(_, seq)| *seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "partition {partition}: offsets follow produce order"
        );
    }

    let group = testkit::unique_name("harness-group");
    let consumer: StreamConsumer = kafka
        .client_config()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();

    let mut consumed: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    let mut seen = vec![false; RECORDS];
    for _ in 0..RECORDS {
        let message = next_message(&consumer).await;
        let seq: usize = std::str::from_utf8(message.payload().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert!(!seen[seq], "record {seq} delivered twice");
        seen[seq] = true;
        consumed
            .entry(message.partition())
            .or_default()
            .push((message.offset(), seq));
    }
    assert!(seen.iter().all(|s| *s), "every record arrives");
    assert_eq!(
        consumed, produced,
        "each partition reads back in produce order"
    );

    // Nothing beyond the 10,000: the log end offsets add up to exactly that.
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, Duration::from_secs(10))
            .unwrap();
        total += high - low;
    }
    assert_eq!(total, RECORDS as i64, "no duplicate was written to the log");
}

/// `kafka.sh start` on a chosen port and directory yields a broker that
/// answers clients; `kafka.sh stop` stops it by pid and leaves no process.
///
/// The cluster id begins with '-', as one random id in 64 would: the storage
/// tool must take it as the id, not as an option.
#[tokio::test]
async fn script_start_then_stop_leaves_no_process_behind() {
    const CLUSTER_ID: &str = "-starts-with-a-dash-0A";
    let script = testkit::script_path();
    let dir = tempfile_dir("script-start-stop");
    let port = testkit::free_port().unwrap();
    let output = Command::new("bash")
        .arg(&script)
        .args(["start", "--no-fetch", "--port", &port.to_string()])
        .args(["--cluster-id", CLUSTER_ID, "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "start failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("127.0.0.1:{port}")
    );
    let meta = std::fs::read_to_string(dir.join("data/meta.properties")).unwrap();
    assert!(
        meta.lines()
            .any(|line| line == format!("cluster.id={CLUSTER_ID}")),
        "the storage is formatted with the given cluster id: {meta}"
    );
    let pid: u32 = std::fs::read_to_string(dir.join("broker.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_alive(pid), "broker process {pid} runs after start");

    // A client sees one broker in the cluster metadata.
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    assert_eq!(metadata.brokers().len(), 1);
    assert_eq!(metadata.brokers()[0].port(), i32::from(port));
    drop(consumer);

    let status = Command::new("bash")
        .arg(&script)
        .args(["stop", "--dir"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        !process_alive(pid),
        "broker process {pid} is gone after stop"
    );
    assert!(!dir.join("broker.pid").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A cluster id that is not 16 bytes of base64url is refused with a clear
/// line before anything starts.
#[test]
fn script_start_refuses_a_malformed_cluster_id() {
    let dir = tempfile_dir("script-bad-cluster-id");
    let output = Command::new("bash")
        .arg(testkit::script_path())
        .args(["start", "--no-fetch", "--cluster-id", "not-an-id", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--cluster-id must be 16 bytes in unpadded base64url"),
        "{stderr}"
    );
    assert!(
        !dir.join("server.properties").exists(),
        "nothing was written"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn process_alive(pid: u32) -> bool {
    // A zombie is not alive: only the state field tells them apart.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn tempfile_dir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(testkit::unique_name(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The next message, failing the test if none arrives within 60 s.
async fn next_message(consumer: &StreamConsumer) -> rdkafka::message::BorrowedMessage<'_> {
    tokio::time::timeout(Duration::from_secs(60), consumer.recv())
        .await
        .expect("a message within 60 s")
        .expect("no consumer error")
}
