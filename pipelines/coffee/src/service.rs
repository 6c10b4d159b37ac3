//! The long-running services of the pipeline side — the streams
//! application with its query service, and the barista — with their
//! settings, and what every service shares: the Kafka connection, topic
//! creation and a `/metrics` + `/health` endpoint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use engine::{
    Cluster, KafkaStreams, OffsetReset, ProcessingGuarantee, StateBackend, StreamsConfig,
};
use prometheus::{Encoder, Registry, TextEncoder};
use proto::menu::Menu;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tracing::info;
use warp::Filter;
use warp::http::Response as HttpResponse;

use crate::barista::{self, BaristaConfig, BaristaMetrics};
use crate::query::{QueryServer, WATCH_BUFFER};
use crate::topology::{
    self, TopologyConfig, default_demand_grace_s, default_demand_retention_s, default_demand_topic,
    default_input_topic, default_output_topic, default_rejected_topic, default_stats_topic,
};

/// What can stop a pipeline service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A setting is invalid.
    #[error("invalid setting {key} = {value:?}: expected {expected}")]
    Config {
        /// The setting, as `section.key`.
        key: String,
        /// Its value.
        value: String,
        /// What it should be.
        expected: String,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// The barista failed.
    #[error(transparent)]
    Barista(#[from] barista::BaristaError),
    /// A port could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The query service's server failed.
    #[error("query service: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A task ended abnormally.
    #[error("{0}")]
    Task(String),
}

/// How every service reaches Kafka.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers (`KAFKA_BROKERS`: `a:9092,b:9092` or
    /// `["a:9092","b:9092"]`). Empty: the embedded in-memory cluster, for
    /// `coffee all` only.
    #[serde(default)]
    pub brokers: Vec<String>,
    /// Extra librdkafka settings for every client, e.g. TLS and SASL
    /// (`security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`). Values are never logged.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// Partitions of the topics a service creates when they are missing
    /// (`KAFKA_TOPIC_PARTITIONS`).
    #[serde(default = "default_topic_partitions")]
    pub topic_partitions: i32,
    /// Whether services create the topics they use when missing.
    #[serde(default = "default_true")]
    pub create_topics: bool,
}

fn default_topic_partitions() -> i32 {
    6
}
fn default_true() -> bool {
    true
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: Vec::new(),
            client: BTreeMap::new(),
            topic_partitions: default_topic_partitions(),
            create_topics: true,
        }
    }
}

/// Whether a librdkafka setting holds a secret that must not be logged.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "key", "token", "jaas"]
        .iter()
        .any(|word| key.contains(word))
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let client: BTreeMap<&str, &str> = self
            .client
            .iter()
            .map(|(key, value)| {
                let shown = if is_secret(key) { "<redacted>" } else { value };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client", &client)
            .field("topic_partitions", &self.topic_partitions)
            .field("create_topics", &self.create_topics)
            .finish()
    }
}

impl KafkaConfig {
    /// Checks every value; the error names the key, the value and what was expected.
    pub fn validate(&self) -> Result<(), ServiceError> {
        for broker in &self.brokers {
            let valid = broker
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.trim().is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(ServiceError::Config {
                    key: "kafka.brokers".into(),
                    value: broker.clone(),
                    expected: "host:port".into(),
                });
            }
        }
        if !(1..=10_000).contains(&self.topic_partitions) {
            return Err(ServiceError::Config {
                key: "kafka.topic_partitions".into(),
                value: self.topic_partitions.to_string(),
                expected: "1 to 10000".into(),
            });
        }
        Ok(())
    }

    /// The bootstrap servers, or `None` for the embedded cluster.
    pub fn bootstrap(&self) -> Option<String> {
        (!self.brokers.is_empty()).then(|| self.brokers.join(","))
    }

    /// Connects: the configured brokers, or a new embedded cluster.
    pub fn connect(&self) -> Result<Cluster, ServiceError> {
        Ok(Cluster::connect(self.bootstrap().as_deref())?.with_client_settings(&self.client))
    }

    /// A client config for `cluster` with the extra settings.
    pub fn client_for(&self, cluster: &Cluster) -> rdkafka::ClientConfig {
        let mut client = cluster.client_config();
        for (key, value) in &self.client {
            client.set(key, value);
        }
        client
    }
}

/// Creates each of `topics` that does not exist, when allowed to.
pub fn ensure_topics(
    cluster: &Cluster,
    kafka: &KafkaConfig,
    topics: &[&str],
) -> Result<(), ServiceError> {
    if !kafka.create_topics {
        return Ok(());
    }
    let names: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    let existing = cluster.partition_counts(&names)?;
    for topic in topics {
        if !existing.contains_key(*topic) {
            cluster.create_topic(topic, kafka.topic_partitions, &[])?;
        }
    }
    Ok(())
}

/// The streams application's settings (`[streams]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsServiceConfig {
    /// Consumer group and internal-topic prefix (`KAFKA_APPLICATION_ID`).
    #[serde(default = "default_application_id")]
    pub application_id: String,
    /// Commands about orders (`KAFKA_INPUT_TOPIC`).
    #[serde(default = "default_input_topic")]
    pub input_topic: String,
    /// Decisions about orders (`KAFKA_OUTPUT_TOPIC`).
    #[serde(default = "default_output_topic")]
    pub output_topic: String,
    /// Commands that could not be accepted.
    #[serde(default = "default_rejected_topic")]
    pub rejected_topic: String,
    /// Per-customer statistics.
    #[serde(default = "default_stats_topic")]
    pub stats_topic: String,
    /// Orders per drink per minute.
    #[serde(default = "default_demand_topic")]
    pub demand_topic: String,
    /// Where a new application starts reading (`KAFKA_AUTO_OFFSET_RESET`).
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// `at_least_once` or `exactly_once` (`KAFKA_PROCESSING_GUARANTEE`).
    #[serde(default)]
    pub processing_guarantee: ProcessingGuarantee,
    /// Processing threads (`NUM_STREAM_THREADS`).
    #[serde(default = "default_threads")]
    pub num_stream_threads: usize,
    /// Commit interval in milliseconds; default 1000, 100 under exactly once.
    #[serde(default)]
    pub commit_interval_ms: Option<u64>,
    /// Local state directory (`STATE_DIR`).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// `sled` (kept across restarts) or `memory`.
    #[serde(default)]
    pub state_backend: StateBackend,
    /// Late orders still counted in their minute, in seconds.
    #[serde(default = "default_demand_grace_s")]
    pub demand_grace_s: u64,
    /// How long demand windows stay queryable, in seconds.
    #[serde(default = "default_demand_retention_s")]
    pub demand_retention_s: u64,
    /// Address the query service listens on.
    #[serde(default = "default_host")]
    pub query_host: String,
    /// The query service's gRPC port (`QUERY_GRPC_PORT`).
    #[serde(default = "default_query_port")]
    pub query_port: u16,
    /// The port of `/metrics` and `/health` (`METRICS_PORT` for `coffee streams`).
    #[serde(default = "default_streams_metrics_port")]
    pub metrics_port: u16,
}

fn default_application_id() -> String {
    "coffee-streams-app".into()
}
fn default_threads() -> usize {
    1
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("coffee-state")
}
fn default_host() -> String {
    "0.0.0.0".into()
}
fn default_query_port() -> u16 {
    50052
}
/// The streams application's default metrics port.
pub const STREAMS_METRICS_PORT: u16 = 9464;
/// The barista's default metrics port.
pub const BARISTA_METRICS_PORT: u16 = 9465;
fn default_streams_metrics_port() -> u16 {
    STREAMS_METRICS_PORT
}
fn default_barista_metrics_port() -> u16 {
    BARISTA_METRICS_PORT
}

impl Default for StreamsServiceConfig {
    fn default() -> Self {
        Self {
            application_id: default_application_id(),
            input_topic: default_input_topic(),
            output_topic: default_output_topic(),
            rejected_topic: default_rejected_topic(),
            stats_topic: default_stats_topic(),
            demand_topic: default_demand_topic(),
            auto_offset_reset: OffsetReset::default(),
            processing_guarantee: ProcessingGuarantee::default(),
            num_stream_threads: default_threads(),
            commit_interval_ms: None,
            state_dir: default_state_dir(),
            state_backend: StateBackend::default(),
            demand_grace_s: default_demand_grace_s(),
            demand_retention_s: default_demand_retention_s(),
            query_host: default_host(),
            query_port: default_query_port(),
            metrics_port: default_streams_metrics_port(),
        }
    }
}

impl StreamsServiceConfig {
    /// The topology's settings, with `menu`.
    pub fn topology(&self, menu: &Menu) -> TopologyConfig {
        TopologyConfig {
            input_topic: self.input_topic.clone(),
            output_topic: self.output_topic.clone(),
            rejected_topic: self.rejected_topic.clone(),
            stats_topic: self.stats_topic.clone(),
            demand_topic: self.demand_topic.clone(),
            demand_grace_s: self.demand_grace_s,
            demand_retention_s: self.demand_retention_s,
            menu: menu.clone(),
        }
    }

    /// The engine's settings for running on `kafka`.
    pub fn engine(&self, kafka: &KafkaConfig) -> StreamsConfig {
        let mut config = StreamsConfig::new(&self.application_id)
            .bootstrap_servers(kafka.bootstrap().as_deref());
        config.auto_offset_reset = self.auto_offset_reset;
        config.processing_guarantee = self.processing_guarantee;
        config.num_stream_threads = self.num_stream_threads;
        config.commit_interval_ms = self.commit_interval_ms;
        config.state_dir.clone_from(&self.state_dir);
        config.state_backend = self.state_backend;
        config.client.clone_from(&kafka.client);
        config
    }

    /// Checks what the engine does not: the topics and the ports.
    pub fn validate(&self, kafka: &KafkaConfig) -> Result<(), ServiceError> {
        self.engine(kafka).validate()?;
        for (key, topic) in [
            ("streams.input_topic", &self.input_topic),
            ("streams.output_topic", &self.output_topic),
            ("streams.rejected_topic", &self.rejected_topic),
            ("streams.stats_topic", &self.stats_topic),
            ("streams.demand_topic", &self.demand_topic),
        ] {
            if topic.trim().is_empty() || topic.contains(char::is_whitespace) {
                return Err(ServiceError::Config {
                    key: key.into(),
                    value: topic.clone(),
                    expected: "a topic name".into(),
                });
            }
        }
        if self.demand_retention_s < 60 + self.demand_grace_s {
            return Err(ServiceError::Config {
                key: "streams.demand_retention_s".into(),
                value: self.demand_retention_s.to_string(),
                expected: "at least the one-minute window plus demand_grace_s".into(),
            });
        }
        Ok(())
    }
}

/// The barista's settings (`[barista]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaristaServiceConfig {
    /// How the barista works.
    #[serde(flatten)]
    pub barista: BaristaConfig,
    /// The port of `/metrics` and `/health` (`METRICS_PORT` for `coffee consumer`).
    #[serde(default = "default_barista_metrics_port")]
    pub metrics_port: u16,
}

impl Default for BaristaServiceConfig {
    fn default() -> Self {
        Self {
            barista: BaristaConfig::default(),
            metrics_port: default_barista_metrics_port(),
        }
    }
}

/// Binds `host:port` (port 0 picks a free one).
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, ServiceError> {
    TcpListener::bind((host, port))
        .await
        .map_err(|source| ServiceError::Bind {
            address: format!("{host}:{port}"),
            source,
        })
}

/// Serves `/metrics` (Prometheus text) and `/health` on `listener`.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        let mut body = Vec::new();
        let encoder = TextEncoder::new();
        match encoder.encode(&registry.gather(), &mut body) {
            Ok(()) => HttpResponse::builder()
                .header("content-type", encoder.format_type())
                .body(body),
            Err(error) => HttpResponse::builder()
                .status(500)
                .body(format!("cannot encode metrics: {error}").into_bytes()),
        }
    });
    let health = warp::path!("health")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})));
    warp::serve(metrics.or(health))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// Where a running streams application answers.
#[derive(Debug, Clone, Copy)]
pub struct StreamsAddresses {
    /// The query service.
    pub query: SocketAddr,
    /// `/metrics` and `/health`.
    pub metrics: SocketAddr,
}

/// Runs the coffee topology with its query service until `shutdown`
/// resolves or the application fails. `started` learns the bound
/// addresses (ports 0 pick free ones).
pub async fn run_streams(
    config: &StreamsServiceConfig,
    kafka: &KafkaConfig,
    menu: &Menu,
    cluster: Cluster,
    shutdown: impl Future<Output = ()> + Send + 'static,
    started: Option<tokio::sync::oneshot::Sender<StreamsAddresses>>,
) -> Result<(), ServiceError> {
    config.validate(kafka)?;
    let topology_config = config.topology(menu);
    ensure_topics(
        &cluster,
        kafka,
        &[
            &topology_config.input_topic,
            &topology_config.output_topic,
            &topology_config.rejected_topic,
            &topology_config.stats_topic,
            &topology_config.demand_topic,
        ],
    )?;
    let (decisions, _) = broadcast::channel(WATCH_BUFFER);
    let topology = topology::build(&topology_config, Some(decisions.clone()))?;
    let description = topology.describe();
    let registry = Registry::new();
    let streams =
        KafkaStreams::new(topology, config.engine(kafka), cluster)?.with_metrics(&registry)?;
    let queries = streams.queries();
    let query_listener = bind(&config.query_host, config.query_port).await?;
    let metrics_listener = bind(&config.query_host, config.metrics_port).await?;
    let addresses = StreamsAddresses {
        query: local(&query_listener)?,
        metrics: local(&metrics_listener)?,
    };
    info!(query = %addresses.query, metrics = %addresses.metrics, application = config.application_id, "Streams application starting.");
    if let Some(started) = started {
        let _ = started.send(addresses);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let query = tokio::spawn(
        QueryServer::new(queries, decisions, menu, &description)
            .serve(query_listener, stopped(stop_rx.clone())),
    );
    let metrics = tokio::spawn(serve_metrics(
        metrics_listener,
        registry,
        stopped(stop_rx.clone()),
    ));
    let result = streams.run(shutdown).await;
    let _ = stop_tx.send(true);
    let served = query
        .await
        .map_err(|error| ServiceError::Task(format!("the query service panicked: {error}")))?;
    let _ = metrics.await;
    result?;
    served?;
    Ok(())
}

/// Runs the barista until `shutdown` resolves, with its metrics endpoint.
pub async fn run_barista(
    config: &BaristaServiceConfig,
    kafka: &KafkaConfig,
    cluster: &Cluster,
    metrics_host: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
    started: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), ServiceError> {
    config.barista.validate()?;
    ensure_topics(
        cluster,
        kafka,
        &[
            &config.barista.processed_topic,
            &config.barista.orders_topic,
        ],
    )?;
    let registry = Registry::new();
    let metrics = BaristaMetrics::register(&registry)?;
    let listener = bind(metrics_host, config.metrics_port).await?;
    let address = local(&listener)?;
    info!(metrics = %address, "Barista metrics listening.");
    if let Some(started) = started {
        let _ = started.send(address);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve_metrics(listener, registry, async move {
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));
    let result = barista::run(
        config.barista.clone(),
        kafka.client_for(cluster),
        metrics,
        shutdown,
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(result?)
}

fn local(listener: &TcpListener) -> Result<SocketAddr, ServiceError> {
    listener.local_addr().map_err(|source| ServiceError::Bind {
        address: "a bound listener".into(),
        source,
    })
}
