//! Helpers shared by the coffee system's test suites: the repository's
//! files, the `coffee` binary as a child process, plain HTTP, waiting for a
//! condition, reading a topic back, and logging.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the repository, by its path from the root.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub use testkit::init_logging;

/// The `coffee` binary, with none of the settings of the environment the
/// test runs in.
pub fn coffee() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffee"));
    for (name, _) in coffee::config::variables() {
        command.env_remove(name);
    }
    command.env_remove("CONFIG_FILE").env("LOG_LEVEL", "warn");
    command
}

/// Kills the child when the test ends, however it ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The metrics ports `coffee all` prints in its banner, by service:
/// `gateway`, `producer` (both their HTTP ports), `streams`, `barista`.
/// Reads up to the banner's last line.
pub fn banner_ports(stdout: impl Read) -> BTreeMap<String, u16> {
    let mut ports = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("metrics") {
            // http://localhost:P/metrics (gateway)  :P/metrics (producer)  …
            for part in rest.split("/metrics (").collect::<Vec<_>>().windows(2) {
                let port: String = part[0]
                    .chars()
                    .rev()
                    .take_while(char::is_ascii_digit)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let service = part[1].split(')').next().unwrap();
                ports.insert(service.to_owned(), port.parse().unwrap());
            }
        }
        if line.starts_with("Stop with Ctrl-C") {
            break;
        }
    }
    ports
}

/// One HTTP/1.1 request over a fresh connection: the status and the body.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// A body as JSON.
pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Polls `check` until it returns `Some`; fails after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `check` until it returns `Some`; fails after `limit`.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every record of `topic` from the beginning (committed ones), decoded
/// as JSON `T`, read with `client` (a broker's client config).
pub fn read_all<T: serde::de::DeserializeOwned>(
    client: rdkafka::ClientConfig,
    topic: &str,
) -> Vec<T> {
    read_all_with_headers(client, topic)
        .into_iter()
        .map(|(value, _)| value)
        .collect()
}

/// Every record of `topic` from the beginning: its value as JSON `T` and
/// its headers (values as text).
pub fn read_all_with_headers<T: serde::de::DeserializeOwned>(
    client: rdkafka::ClientConfig,
    topic: &str,
) -> Vec<(T, BTreeMap<String, String>)> {
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", testkit::unique_name("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len();
    consumer.subscribe(&[topic]).unwrap();
    let (mut records, mut ended) = (Vec::new(), BTreeSet::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while ended.len() < partitions {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| {
                                let value =
                                    h.value.map(String::from_utf8_lossy).unwrap_or_default();
                                (h.key.to_owned(), value.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let value = serde_json::from_slice(message.payload().unwrap()).unwrap();
                records.push((value, headers));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
            }
            _ => {}
        }
    }
    records
}

/// The configuration layers of a whole system for one test: unique topic,
/// group and application names on `brokers`, local state in `state`, every
/// port picked by the OS, a barista two thousand times faster than real
/// time. Add layers (`.env`, `.set`) before `.load()`.
pub fn system_layers(brokers: &str, state: &Path) -> coffee::config::Layers {
    init_logging();
    let name = testkit::unique_name("system");
    let sets = [
        format!("streams.application_id={name}-app"),
        format!("streams.input_topic={name}-orders"),
        format!("producer.kafka_topic={name}-orders"),
        format!("barista.orders_topic={name}-orders"),
        format!("streams.output_topic={name}-processed"),
        format!("barista.processed_topic={name}-processed"),
        format!("streams.rejected_topic={name}-rejected"),
        format!("streams.stats_topic={name}-stats"),
        format!("streams.demand_topic={name}-demand"),
        format!("barista.group_id={name}-baristas"),
        format!("streams.state_dir={}", state.display()),
        "streams.query_host=127.0.0.1".into(),
        "streams.query_port=0".into(),
        "streams.metrics_port=0".into(),
        "barista.metrics_port=0".into(),
        "barista.speed_factor=0.0005".into(),
        "barista.commit_interval_ms=100".into(),
        "producer.bind_host=127.0.0.1".into(),
        "producer.server_port=0".into(),
        "producer.grpc_port=0".into(),
        "gateway.bind_host=127.0.0.1".into(),
        "gateway.server_port=0".into(),
        "kafka.topic_partitions=3".into(),
    ];
    let mut layers = coffee::config::Layers::new(coffee::config::Service::All)
        .set(&format!("kafka.brokers=[\"{brokers}\"]"))
        .unwrap();
    for set in &sets {
        layers = layers.set(set).unwrap();
    }
    layers
}
