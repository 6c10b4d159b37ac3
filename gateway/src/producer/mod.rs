//! The producer: HTTP (`:3000`) and gRPC `CoffeeService` (`:50051`) in
//! front of Kafka.
//!
//! Orders are written to [`ProducerConfig::kafka_topic`] keyed by order id
//! and reported placed only once Kafka acknowledged them. Reads come from
//! the pipeline's `QueryService` ([`ProducerConfig::consumer_grpc_address`]),
//! never from this process's memory, so every replica answers the same.
//!
//! ```no_run
//! use gateway::producer::{Producer, ProducerConfig};
//!
//! # async fn demo() -> Result<(), gateway::GatewayError> {
//! let config = ProducerConfig {
//!     kafka_brokers: vec!["localhost:9092".into()],
//!     server_port: 0,
//!     grpc_port: 0,
//!     ..ProducerConfig::default()
//! };
//! let registry = prometheus::Registry::new();
//! let producer = Producer::bind(config, None, &registry).await?;
//! println!("HTTP on {}, gRPC on {}", producer.http_addr(), producer.grpc_addr());
//! producer.run(async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```

mod core;
mod grpc;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::menu::Menu;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::config::{KafkaSettings, check_host, check_range};
use crate::error::{ConfigError, GatewayError, Result};
use crate::http::{self, Cors, HttpMetrics, Stack};
use crate::kafka::OrderWriter;
use crate::metrics::{KafkaMetrics, OrderMetrics};
use crate::query::{QueryClient, check_address, lazy_channel};
use crate::routes::Routes;
use crate::shutdown::{Shutdown, drain};

use self::core::Core;

/// Settings the producer manages itself; `kafka_settings` may not set them.
const MANAGED_KAFKA_KEYS: [(&str, &str); 12] = [
    ("bootstrap.servers", "kafka_brokers"),
    ("metadata.broker.list", "kafka_brokers"),
    ("enable.idempotence", "kafka_enable_idempotence"),
    ("acks", "kafka_required_acks"),
    ("request.required.acks", "kafka_required_acks"),
    ("retries", "kafka_retry_max"),
    ("message.send.max.retries", "kafka_retry_max"),
    ("message.timeout.ms", "kafka_send_timeout_ms"),
    ("delivery.timeout.ms", "kafka_send_timeout_ms"),
    ("linger.ms", "kafka_linger_ms"),
    ("queue.buffering.max.ms", "kafka_linger_ms"),
    ("transactional.id", "(not supported by the producer)"),
];

/// The producer's configuration.
///
/// Keys are the lower-case names of the environment variables the `coffee`
/// binary reads (`SERVER_PORT` → `server_port`), except where the original
/// system used another name (noted on the field).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// HTTP port (`SERVER_PORT`); 0 picks a free one.
    #[serde(default = "default_server_port")]
    pub server_port: u16,
    /// gRPC port of the `CoffeeService`; 0 picks a free one.
    #[serde(default = "default_grpc_port")]
    pub grpc_port: u16,
    /// Address both servers listen on.
    #[serde(default = "default_bind_host")]
    pub bind_host: String,
    /// Kafka bootstrap brokers, `host:port` each (`KAFKA_BROKERS`). Empty
    /// means the caller passes the embedded cluster's address.
    #[serde(default)]
    pub kafka_brokers: Vec<String>,
    /// Topic orders and cancel requests are written to (`KAFKA_TOPIC`).
    #[serde(default = "default_kafka_topic")]
    pub kafka_topic: String,
    /// Acknowledgements a write needs (`KAFKA_REQUIRED_ACKS`): `all` (or
    /// `-1`), `1` or `0`. Anything but `all` needs
    /// `kafka_enable_idempotence = false`, because librdkafka refuses
    /// weaker acks for an idempotent producer.
    #[serde(default = "default_kafka_required_acks")]
    pub kafka_required_acks: String,
    /// Idempotent producer: retries never duplicate or reorder a record.
    /// Turn off only to use `kafka_required_acks` `1` or `0`.
    #[serde(default = "default_true")]
    pub kafka_enable_idempotence: bool,
    /// How often librdkafka retries a failed write (`KAFKA_RETRY_MAX`);
    /// at least 1 with idempotence.
    #[serde(default = "default_kafka_retry_max")]
    pub kafka_retry_max: u32,
    /// How long a write may take before the client gets 503 (milliseconds;
    /// librdkafka's `message.timeout.ms`).
    #[serde(default = "default_kafka_send_timeout_ms")]
    pub kafka_send_timeout_ms: u64,
    /// How long librdkafka waits to fill a batch (milliseconds). Small keeps
    /// latency low; larger saves CPU per record under load.
    #[serde(default = "default_kafka_linger_ms")]
    pub kafka_linger_ms: u64,
    /// Extra librdkafka settings (TLS, SASL/SCRAM, queue sizes), passed
    /// through; secret values are never logged.
    #[serde(default)]
    pub kafka_settings: KafkaSettings,
    /// The pipeline's query service (`CONSUMER_GRPC_ADDRESS`).
    #[serde(default = "default_consumer_grpc_address")]
    pub consumer_grpc_address: String,
    /// Deadline of each query-service call (milliseconds).
    #[serde(default = "default_query_timeout_ms")]
    pub query_timeout_ms: u64,
    /// How long a cancel waits for the pipeline's decision before answering
    /// 202 (milliseconds; 0 answers at once).
    #[serde(default = "default_cancel_wait_ms")]
    pub cancel_wait_ms: u64,
    /// The drinks that can be ordered, with preparation times in seconds.
    #[serde(default)]
    pub menu: Menu,
    /// Largest request body accepted, in bytes (larger gets 413).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Longest customer name and coffee type, in characters.
    #[serde(default = "default_max_name_chars")]
    pub max_name_chars: usize,
    /// How many idempotency keys one process remembers.
    #[serde(default = "default_idempotency_cache_capacity")]
    pub idempotency_cache_capacity: usize,
    /// How long one process remembers an idempotency key (seconds); after
    /// that the query service still recognises the order.
    #[serde(default = "default_idempotency_ttl_s")]
    pub idempotency_ttl_s: u64,
    /// Origins browsers may call from; `["*"]` (the default) allows any.
    #[serde(default = "default_cors_allowed_origins")]
    pub cors_allowed_origins: Vec<String>,
}

fn default_server_port() -> u16 {
    3000
}
fn default_grpc_port() -> u16 {
    50051
}
pub(crate) fn default_bind_host() -> String {
    "0.0.0.0".into()
}
fn default_kafka_topic() -> String {
    proto::events::ORDERS_TOPIC.into()
}
fn default_kafka_required_acks() -> String {
    "all".into()
}
fn default_true() -> bool {
    true
}
fn default_kafka_retry_max() -> u32 {
    5
}
fn default_kafka_send_timeout_ms() -> u64 {
    5_000
}
fn default_kafka_linger_ms() -> u64 {
    1
}
pub(crate) fn default_consumer_grpc_address() -> String {
    "http://localhost:50052".into()
}
fn default_query_timeout_ms() -> u64 {
    2_000
}
fn default_cancel_wait_ms() -> u64 {
    3_000
}
pub(crate) fn default_max_body_bytes() -> usize {
    16 * 1024
}
pub(crate) fn default_max_name_chars() -> usize {
    100
}
fn default_idempotency_cache_capacity() -> usize {
    100_000
}
fn default_idempotency_ttl_s() -> u64 {
    24 * 3600
}
pub(crate) fn default_cors_allowed_origins() -> Vec<String> {
    vec!["*".into()]
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            server_port: default_server_port(),
            grpc_port: default_grpc_port(),
            bind_host: default_bind_host(),
            kafka_brokers: Vec::new(),
            kafka_topic: default_kafka_topic(),
            kafka_required_acks: default_kafka_required_acks(),
            kafka_enable_idempotence: true,
            kafka_retry_max: default_kafka_retry_max(),
            kafka_send_timeout_ms: default_kafka_send_timeout_ms(),
            kafka_linger_ms: default_kafka_linger_ms(),
            kafka_settings: KafkaSettings::default(),
            consumer_grpc_address: default_consumer_grpc_address(),
            query_timeout_ms: default_query_timeout_ms(),
            cancel_wait_ms: default_cancel_wait_ms(),
            menu: Menu::default(),
            max_body_bytes: default_max_body_bytes(),
            max_name_chars: default_max_name_chars(),
            idempotency_cache_capacity: default_idempotency_cache_capacity(),
            idempotency_ttl_s: default_idempotency_ttl_s(),
            cors_allowed_origins: default_cors_allowed_origins(),
        }
    }
}

impl ProducerConfig {
    /// Checks every value; the error names the key, the value and what was
    /// expected.
    ///
    /// # Errors
    ///
    /// The first invalid value found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server_port != 0 && self.server_port == self.grpc_port {
            return Err(ConfigError::new(
                "grpc_port",
                self.grpc_port,
                format!("a port other than server_port ({})", self.server_port),
            ));
        }
        check_host("bind_host", &self.bind_host)?;
        for broker in &self.kafka_brokers {
            let valid = broker
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.trim().is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(ConfigError::new(
                    "kafka_brokers",
                    broker,
                    "host:port, such as localhost:9092",
                ));
            }
        }
        let topic_ok = (1..=249).contains(&self.kafka_topic.len())
            && self.kafka_topic != "."
            && self.kafka_topic != ".."
            && self
                .kafka_topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !topic_ok {
            return Err(ConfigError::new(
                "kafka_topic",
                &self.kafka_topic,
                "a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-'",
            ));
        }
        let acks = self.acks()?;
        if self.kafka_enable_idempotence && acks != "all" {
            return Err(ConfigError::new(
                "kafka_required_acks",
                &self.kafka_required_acks,
                "all while kafka_enable_idempotence is true (librdkafka refuses weaker acks \
                 for an idempotent producer; set kafka_enable_idempotence = false to use 1 or 0)",
            ));
        }
        let min_retries = u32::from(self.kafka_enable_idempotence);
        check_range(
            "kafka_retry_max",
            self.kafka_retry_max,
            min_retries..=1_000_000,
            "a number of retries",
        )?;
        check_range(
            "kafka_send_timeout_ms",
            self.kafka_send_timeout_ms,
            100..=300_000,
            "milliseconds",
        )?;
        check_range(
            "kafka_linger_ms",
            self.kafka_linger_ms,
            0..=self.kafka_send_timeout_ms.saturating_sub(1).min(900_000),
            "milliseconds, below kafka_send_timeout_ms,",
        )?;
        for key in self.kafka_settings.0.keys() {
            if let Some((_, field)) = MANAGED_KAFKA_KEYS
                .iter()
                .find(|(managed, _)| managed == key)
            {
                return Err(ConfigError::new(
                    format!("kafka_settings.{key}"),
                    "(a value)",
                    format!("no value here; the producer sets {key} from {field}"),
                ));
            }
            if key.trim().is_empty() {
                return Err(ConfigError::new(
                    "kafka_settings",
                    format!("{key:?}"),
                    "librdkafka property names",
                ));
            }
        }
        check_address("consumer_grpc_address", &self.consumer_grpc_address)?;
        check_range(
            "query_timeout_ms",
            self.query_timeout_ms,
            1..=60_000,
            "milliseconds",
        )?;
        check_range(
            "cancel_wait_ms",
            self.cancel_wait_ms,
            0..=60_000,
            "milliseconds",
        )?;
        self.menu
            .validate()
            .map_err(|reason| ConfigError::new("menu", format!("{:?}", self.menu), reason))?;
        check_range(
            "max_body_bytes",
            self.max_body_bytes,
            256..=16 * 1024 * 1024,
            "bytes",
        )?;
        check_range(
            "max_name_chars",
            self.max_name_chars,
            1..=10_000,
            "characters",
        )?;
        check_range(
            "idempotency_cache_capacity",
            self.idempotency_cache_capacity,
            1..=100_000_000,
            "keys",
        )?;
        check_range(
            "idempotency_ttl_s",
            self.idempotency_ttl_s,
            1..=30 * 24 * 3600,
            "seconds",
        )?;
        Cors::new("cors_allowed_origins", &self.cors_allowed_origins)?;
        Ok(())
    }

    /// The brokers as one bootstrap list, or `None` when none are set (the
    /// caller then runs on the embedded cluster).
    pub fn kafka_bootstrap(&self) -> Option<String> {
        let brokers: Vec<&str> = self
            .kafka_brokers
            .iter()
            .map(|broker| broker.trim())
            .filter(|broker| !broker.is_empty())
            .collect();
        (!brokers.is_empty()).then(|| brokers.join(","))
    }

    /// The normalised acks value (`all`, `1` or `0`).
    fn acks(&self) -> Result<&'static str, ConfigError> {
        match self
            .kafka_required_acks
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "all" | "-1" => Ok("all"),
            "1" => Ok("1"),
            "0" => Ok("0"),
            _ => Err(ConfigError::new(
                "kafka_required_acks",
                &self.kafka_required_acks,
                "all, -1, 1 or 0",
            )),
        }
    }

    /// The librdkafka settings for writing to `bootstrap`.
    fn client_config(&self, bootstrap: &str) -> Result<ClientConfig, ConfigError> {
        let mut config = ClientConfig::new();
        // Orders are small and latency-bound: don't let Nagle hold a
        // produce request back until the previous one is acknowledged.
        // Overridable through `kafka_settings`.
        config.set("socket.nagle.disable", "true");
        for (key, value) in &self.kafka_settings.0 {
            config.set(key, value);
        }
        config
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "coffee-producer")
            .set(
                "enable.idempotence",
                self.kafka_enable_idempotence.to_string(),
            )
            .set("acks", self.acks()?)
            .set("message.send.max.retries", self.kafka_retry_max.to_string())
            .set("message.timeout.ms", self.kafka_send_timeout_ms.to_string())
            .set(
                "request.timeout.ms",
                self.kafka_send_timeout_ms.min(30_000).to_string(),
            )
            .set("linger.ms", self.kafka_linger_ms.to_string())
            // Kafka's default (Java) partitioner, as every writer of the
            // orders topic uses: an order's commands (placed, cancel, the
            // barista's claim) must share its partition, and the pipeline's
            // queries look keys up there. librdkafka's own default (CRC32)
            // would scatter them.
            .set("partitioner", "murmur2_random");
        Ok(config)
    }
}

/// A producer with its listeners bound, ready to [`run`](Producer::run).
pub struct Producer {
    http_listener: tokio::net::TcpListener,
    grpc_listener: tokio::net::TcpListener,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    core: Arc<Core>,
    routes: Arc<Routes<Core>>,
    stack: Stack,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("http_addr", &self.http_addr)
            .field("grpc_addr", &self.grpc_addr)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Validates `config`, creates the Kafka client and binds both ports.
    ///
    /// Kafka is written to at `config.kafka_brokers`, or at
    /// `embedded_bootstrap` (the embedded cluster's address) when the
    /// config names no brokers. Metrics are registered in `registry` with
    /// `service="producer"`, and `/metrics` serves the whole registry.
    ///
    /// # Errors
    ///
    /// An invalid configuration (naming the key), no brokers at all, a
    /// Kafka client that cannot be created, or a port that cannot be bound.
    pub async fn bind(
        config: ProducerConfig,
        embedded_bootstrap: Option<&str>,
        registry: &prometheus::Registry,
    ) -> Result<Self> {
        config.validate()?;
        let bootstrap = config
            .kafka_bootstrap()
            .or_else(|| embedded_bootstrap.map(str::to_owned))
            .ok_or_else(|| {
                ConfigError::new(
                    "kafka_brokers",
                    "[]",
                    "at least one broker, or an embedded cluster",
                )
            })?;
        let writer = OrderWriter::new(
            &config.client_config(&bootstrap)?,
            &config.kafka_topic,
            Duration::from_millis(config.kafka_send_timeout_ms),
            KafkaMetrics::new(registry, "producer")?,
        )?;
        tracing::info!(topic = %config.kafka_topic, %bootstrap, "Writing to Kafka.");
        Self::bind_with(config, writer, registry).await
    }

    /// The producer with Kafka stubbed out: every order is acknowledged at
    /// once and written nowhere. Only for measuring the HTTP ceiling next
    /// to the real thing (`bench http-load`); never for serving.
    ///
    /// # Errors
    ///
    /// As [`Producer::bind`], without the Kafka errors.
    #[cfg(feature = "http-ceiling")]
    pub async fn bind_http_ceiling(
        config: ProducerConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self> {
        config.validate()?;
        let writer = OrderWriter::discarding(KafkaMetrics::new(registry, "producer")?);
        Self::bind_with(config, writer, registry).await
    }

    /// Binds with a validated `config` and a ready writer.
    async fn bind_with(
        config: ProducerConfig,
        writer: OrderWriter,
        registry: &prometheus::Registry,
    ) -> Result<Self> {
        let query_timeout = Duration::from_millis(config.query_timeout_ms);
        let channel = lazy_channel(
            "consumer_grpc_address",
            &config.consumer_grpc_address,
            query_timeout,
            query_timeout,
        )?;
        let core = Arc::new(Core::new(
            &config,
            writer,
            QueryClient::new(channel),
            OrderMetrics::new(registry, "producer")?,
        ));
        let stack = Stack::new(
            Cors::new("cors_allowed_origins", &config.cors_allowed_origins)?,
            HttpMetrics::new(registry, "producer")?,
        );
        let routes = Arc::new(Routes::new(
            Arc::clone(&core),
            registry.clone(),
            false,
            config.max_body_bytes,
            config.max_name_chars,
        ));
        let http_listener = http::bind(&config.bind_host, config.server_port).await?;
        let grpc_listener = http::bind(&config.bind_host, config.grpc_port).await?;
        let local = |listener: &tokio::net::TcpListener, port: u16| {
            listener.local_addr().map_err(|source| GatewayError::Bind {
                address: format!("{}:{port}", config.bind_host),
                source,
            })
        };
        let http_addr = local(&http_listener, config.server_port)?;
        let grpc_addr = local(&grpc_listener, config.grpc_port)?;
        tracing::info!(
            %http_addr,
            %grpc_addr,
            query = %config.consumer_grpc_address,
            "Producer bound."
        );
        Ok(Self {
            http_listener,
            grpc_listener,
            http_addr,
            grpc_addr,
            core,
            routes,
            stack,
        })
    }

    /// The HTTP address actually bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The gRPC address actually bound.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Serves HTTP and gRPC until `shutdown` completes (or a server fails),
    /// lets requests in progress finish, and flushes Kafka.
    ///
    /// # Errors
    ///
    /// A server that failed before `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let stop = Shutdown::new();
        let routes = self.routes;
        let handler = move |request| {
            let routes = Arc::clone(&routes);
            async move { routes.handle(request).await }
        };
        let mut http_task = tokio::spawn(http::serve(
            self.http_listener,
            self.stack,
            handler,
            stop.signal(),
        ));
        let mut grpc_task = tokio::spawn(grpc::serve(
            self.grpc_listener,
            Arc::clone(&self.core),
            stop.signal(),
        ));
        let outcome = tokio::select! {
            () = shutdown => Ok(()),
            result = &mut http_task => Err(GatewayError::Task(format!(
                "the HTTP server stopped unexpectedly: {result:?}"
            ))),
            result = &mut grpc_task => Err(match result {
                Ok(Err(error)) => error,
                other => GatewayError::Task(format!("the gRPC server stopped unexpectedly: {other:?}")),
            }),
        };
        stop.trigger();
        tracing::info!("Producer shutting down.");
        drain(http_task, "HTTP").await;
        drain(grpc_task, "gRPC").await;
        let core = self.core;
        // Flushing blocks; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || core.flush(Duration::from_secs(5))).await;
        outcome
    }
}

/// Runs a producer until `shutdown`: [`Producer::bind`], then
/// [`Producer::run`].
///
/// # Errors
///
/// As [`Producer::bind`] and [`Producer::run`].
pub async fn run_producer(
    config: ProducerConfig,
    embedded_bootstrap: Option<&str>,
    registry: &prometheus::Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    Producer::bind(config, embedded_bootstrap, registry)
        .await?
        .run(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(change: impl FnOnce(&mut ProducerConfig)) -> ConfigError {
        let mut config = ProducerConfig::default();
        change(&mut config);
        config.validate().unwrap_err()
    }

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let config = ProducerConfig::default();
        config.validate().unwrap();
        let parsed: ProducerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, config);
        assert_eq!((config.server_port, config.grpc_port), (3000, 50051));
        assert_eq!(config.kafka_topic, "coffee_orders");
        assert_eq!(config.kafka_required_acks, "all");
        assert_eq!(config.kafka_retry_max, 5);
        assert_eq!(config.consumer_grpc_address, "http://localhost:50052");
        assert_eq!(config.kafka_bootstrap(), None);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = serde_json::from_str::<ProducerConfig>(r#"{"server_prot":1}"#).unwrap_err();
        assert!(error.to_string().contains("server_prot"), "{error}");
    }

    #[test]
    fn bad_values_name_the_key_value_and_expectation() {
        let error = invalid(|c| c.kafka_required_acks = "1".into());
        assert_eq!(error.key, "kafka_required_acks");
        assert!(error.expected.contains("kafka_enable_idempotence"));
        let error = invalid(|c| c.kafka_required_acks = "most".into());
        assert_eq!(
            (error.key.as_str(), error.value.as_str()),
            ("kafka_required_acks", "most")
        );
        assert_eq!(
            invalid(|c| c.kafka_brokers = vec!["nohost".into()]).key,
            "kafka_brokers"
        );
        assert_eq!(invalid(|c| c.kafka_topic = "a b".into()).key, "kafka_topic");
        assert_eq!(
            invalid(|c| c.kafka_send_timeout_ms = 0).key,
            "kafka_send_timeout_ms"
        );
        assert_eq!(
            invalid(|c| c.kafka_linger_ms = 10_000).key,
            "kafka_linger_ms"
        );
        assert_eq!(
            invalid(|c| c.consumer_grpc_address = "x".into()).key,
            "consumer_grpc_address"
        );
        assert_eq!(invalid(|c| c.grpc_port = 3000).key, "grpc_port");
        assert_eq!(invalid(|c| c.max_name_chars = 0).key, "max_name_chars");
        assert_eq!(invalid(|c| c.menu = Menu::new([])).key, "menu");
        assert_eq!(
            invalid(|c| c.cors_allowed_origins = vec!["example.com".into()]).key,
            "cors_allowed_origins"
        );
        let error = invalid(|c| {
            c.kafka_settings.0.insert("acks".into(), "1".into());
        });
        assert_eq!(error.key, "kafka_settings.acks");
        assert!(error.to_string().contains("kafka_required_acks"), "{error}");
    }

    #[test]
    fn weaker_acks_work_once_idempotence_is_off() {
        let config = ProducerConfig {
            kafka_required_acks: "1".into(),
            kafka_enable_idempotence: false,
            kafka_retry_max: 0,
            ..ProducerConfig::default()
        };
        config.validate().unwrap();
        let client = config.client_config("localhost:9092").unwrap();
        assert_eq!(client.get("acks"), Some("1"));
        assert_eq!(client.get("enable.idempotence"), Some("false"));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let mut config = ProducerConfig::default();
        config
            .kafka_settings
            .0
            .insert("sasl.password".into(), "hunter2".into());
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
