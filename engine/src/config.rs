//! Configuration of the runtime: what a user sets, checked once at start-up.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{EngineError, Result};

/// Where a new consumer group starts reading a partition without a
/// committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// From the oldest record still in the log.
    #[default]
    Earliest,
    /// Only records written from now on.
    Latest,
}

impl OffsetReset {
    fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

impl std::str::FromStr for OffsetReset {
    type Err = EngineError;

    fn from_str(value: &str) -> Result<Self> {
        match value {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            other => Err(EngineError::Config {
                key: "auto_offset_reset".into(),
                value: other.into(),
                expected: "earliest or latest".into(),
            }),
        }
    }
}

/// How the runtime runs a topology. Deserialisable from a config file;
/// every field but `application_id` has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsConfig {
    /// The application's id: its consumer group, and the prefix of its
    /// internal topics. Letters, digits, `.`, `_` and `-`.
    pub application_id: String,
    /// Kafka's bootstrap servers, `host:port[,host:port…]`. `None` runs on
    /// the embedded in-memory cluster.
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// Where to start without a committed offset.
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// At least once (the default) or exactly once.
    #[serde(default)]
    pub processing_guarantee: ProcessingGuarantee,
    /// How often processed offsets are committed (under exactly-once: how
    /// often the transaction commits). Shorter means fewer records read
    /// twice after a crash (at least once) or lower end-to-end latency
    /// (exactly once). Default: 1000 ms at least once, 100 ms exactly once.
    #[serde(default)]
    pub commit_interval_ms: Option<u64>,
    /// Names this instance in its transactional ids (exactly once). Default:
    /// a random id kept in the state directory, so a restarted instance
    /// takes over (and fences) its predecessor's transactions.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Processing threads, each with its own consumer and producer; tasks
    /// are spread over them by the group's assignment.
    #[serde(default = "default_threads")]
    pub num_stream_threads: usize,
    /// The producer's `linger.ms`: how long it waits to fill a batch.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// How long a graceful shutdown may take to drain and commit.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// The consumer's session timeout; a member silent for longer is
    /// removed from the group and its partitions reassigned.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// Where tasks keep their local state: `<state_dir>/<application_id>/<task>`.
    #[serde(default = "default_state_dir")]
    pub state_dir: std::path::PathBuf,
    /// Which store backend holds local state.
    #[serde(default)]
    pub state_backend: StateBackend,
    /// sled's page cache per task, in bytes.
    #[serde(default = "default_state_cache_bytes")]
    pub state_cache_bytes: u64,
    /// Write-back cache per sled store, in bytes (0: none). Repeated
    /// updates of a key cost sled one write per flush instead of one per
    /// update; reads, interactive queries and changelogs are unaffected
    /// (see [`state::cache`]).
    #[serde(default = "default_state_write_cache_bytes")]
    pub state_write_cache_bytes: u64,
    /// Extra librdkafka settings for every client (e.g. `security.protocol`,
    /// `sasl.mechanism`); they win over the engine's.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
}

fn default_state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("engine-state")
}
fn default_state_cache_bytes() -> u64 {
    state::sled::DEFAULT_CACHE_CAPACITY_BYTES
}
fn default_state_write_cache_bytes() -> u64 {
    1024 * 1024
}

/// Where local state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateBackend {
    /// sled on disk: survives restarts, so only the changelog's tail is
    /// replayed after a clean shutdown.
    #[default]
    Sled,
    /// Memory: rebuilt from the changelog at every start.
    Memory,
}

impl StreamsConfig {
    /// The backend this configuration asks for.
    pub fn backend(&self) -> std::sync::Arc<dyn state::Backend> {
        match self.state_backend {
            StateBackend::Sled => {
                let sled = state::sled::SledBackend::new(
                    state::sled::SledConfig::default()
                        .with_cache_capacity_bytes(self.state_cache_bytes),
                );
                match usize::try_from(self.state_write_cache_bytes).unwrap_or(usize::MAX) {
                    0 => std::sync::Arc::new(sled),
                    bytes => std::sync::Arc::new(state::cache::CachingBackend::new(sled, bytes)),
                }
            }
            StateBackend::Memory => std::sync::Arc::new(state::memory::MemoryBackend),
        }
    }

    /// The directory of this application's local state.
    pub fn application_state_dir(&self) -> std::path::PathBuf {
        self.state_dir.join(&self.application_id)
    }
}

/// What the runtime guarantees about each input record's effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingGuarantee {
    /// Every record's effects happen at least once: outputs are acknowledged
    /// before offsets are committed; a crash may repeat some.
    #[default]
    AtLeastOnce,
    /// Every record's effects — outputs, state changes, its offset — commit
    /// together in one Kafka transaction, or not at all.
    #[serde(alias = "exactly_once_v2")]
    ExactlyOnce,
}

impl std::str::FromStr for ProcessingGuarantee {
    type Err = EngineError;

    fn from_str(value: &str) -> Result<Self> {
        match value {
            "at_least_once" => Ok(Self::AtLeastOnce),
            "exactly_once" | "exactly_once_v2" => Ok(Self::ExactlyOnce),
            other => Err(EngineError::Config {
                key: "processing_guarantee".into(),
                value: other.into(),
                expected: "at_least_once or exactly_once (exactly_once_v2)".into(),
            }),
        }
    }
}
fn default_threads() -> usize {
    1
}
fn default_linger_ms() -> u64 {
    5
}
fn default_shutdown_timeout_ms() -> u64 {
    30_000
}
fn default_session_timeout_ms() -> u64 {
    10_000
}

impl StreamsConfig {
    /// Defaults for `application_id`, on the embedded cluster.
    pub fn new(application_id: &str) -> Self {
        Self {
            application_id: application_id.to_owned(),
            bootstrap_servers: None,
            auto_offset_reset: OffsetReset::default(),
            processing_guarantee: ProcessingGuarantee::default(),
            commit_interval_ms: None,
            instance_id: None,
            num_stream_threads: default_threads(),
            linger_ms: default_linger_ms(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            session_timeout_ms: default_session_timeout_ms(),
            state_dir: default_state_dir(),
            state_backend: StateBackend::default(),
            state_cache_bytes: default_state_cache_bytes(),
            state_write_cache_bytes: default_state_write_cache_bytes(),
            client: BTreeMap::new(),
        }
    }

    /// Sets the bootstrap servers (`None`: the embedded cluster).
    pub fn bootstrap_servers(mut self, servers: Option<&str>) -> Self {
        self.bootstrap_servers = servers.map(str::to_owned);
        self
    }

    /// Checks every value; the error names the key, the value and what was expected.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, expected: &str| {
            Err(EngineError::Config {
                key: key.into(),
                value,
                expected: expected.into(),
            })
        };
        if crate::builder::validate_topic_name(&self.application_id).is_err() {
            return bad(
                "application_id",
                self.application_id.clone(),
                "a non-empty name of ASCII letters, digits, '.', '_' and '-'",
            );
        }
        if let Some(servers) = &self.bootstrap_servers
            && (servers.trim().is_empty() || servers.split(',').any(|s| !s.trim().contains(':')))
        {
            return bad(
                "bootstrap_servers",
                servers.clone(),
                "host:port[,host:port...]",
            );
        }
        let interval = self.commit_interval().as_millis();
        if interval == 0 || interval > 3_600_000 {
            return bad(
                "commit_interval_ms",
                interval.to_string(),
                "1 to 3600000 milliseconds",
            );
        }
        if !(1..=64).contains(&self.num_stream_threads) {
            return bad(
                "num_stream_threads",
                self.num_stream_threads.to_string(),
                "1 to 64",
            );
        }
        if self.linger_ms > 900_000 {
            return bad(
                "linger_ms",
                self.linger_ms.to_string(),
                "0 to 900000 milliseconds",
            );
        }
        if !(1_000..=3_600_000).contains(&self.shutdown_timeout_ms) {
            return bad(
                "shutdown_timeout_ms",
                self.shutdown_timeout_ms.to_string(),
                "1000 to 3600000 milliseconds",
            );
        }
        if !(1_000..=300_000).contains(&self.session_timeout_ms) {
            return bad(
                "session_timeout_ms",
                self.session_timeout_ms.to_string(),
                "1000 to 300000 milliseconds",
            );
        }
        Ok(())
    }

    pub(crate) fn commit_interval(&self) -> Duration {
        Duration::from_millis(
            self.commit_interval_ms
                .unwrap_or(match self.processing_guarantee {
                    ProcessingGuarantee::AtLeastOnce => 1_000,
                    ProcessingGuarantee::ExactlyOnce => 100,
                }),
        )
    }

    /// Whether records are processed exactly once.
    pub fn exactly_once(&self) -> bool {
        self.processing_guarantee == ProcessingGuarantee::ExactlyOnce
    }

    pub(crate) fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// The consumer settings the at-least-once contract needs.
    pub(crate) fn consumer(&self, bootstrap: &str) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("group.id", &self.application_id)
            .set("client.id", format!("{}-consumer", self.application_id))
            // Offsets move only when the engine commits what is done.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", self.auto_offset_reset.as_str())
            // Range assignment gives one consumer the same partition numbers
            // of co-partitioned topics, so a task's inputs stay together.
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (self.session_timeout_ms / 4).max(250).to_string())
            // Bounds what librdkafka prefetches into the consumer's one queue,
            // all partitions together (default 64 MiB).
            .set("queued.max.messages.kbytes", "16384")
            // Once that queue is full, librdkafka postpones the next fetch of
            // each partition by this much (default a whole second). A
            // topology that reads its own repartition topic fills the queue
            // with input and then, having drained it in a few milliseconds,
            // waits out the rest of the second for the repartitioned records:
            // the stateful benchmark went from 56,000 to 86,000 records/s.
            .set("fetch.queue.backoff.ms", "10")
            .set("isolation.level", "read_committed");
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }

    /// The consumer that replays changelogs: assigned partitions only, no
    /// group membership, committed data only.
    pub(crate) fn restore_consumer(&self, bootstrap: &str, thread: usize) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("{}-restore", self.application_id))
            .set(
                "client.id",
                format!("{}-restore-{thread}", self.application_id),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("fetch.max.bytes", "52428800")
            // Restores read to a known end: never wait long for more.
            .set("fetch.wait.max.ms", "10")
            // librdkafka stops fetching a partition whose prefetched queue is
            // full and, by default, waits a whole second before it looks
            // again: a restore, which drains its queue much faster than
            // that, would spend most of its time waiting.
            .set("fetch.queue.backoff.ms", "10");
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }

    /// The producer settings the processing guarantee needs; under exactly
    /// once, with the thread's transactional id.
    pub(crate) fn producer(
        &self,
        bootstrap: &str,
        thread: usize,
        transactional_id: Option<&str>,
    ) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("client.id", format!("{}-producer-{thread}", self.application_id))
            // librdkafka's default is false; idempotence implies acks=all
            // and ordered retries.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger_ms.to_string())
            // Java clients' partitioner, so keys land where they would from Java.
            .set("partitioner", "murmur2_random")
            .set("queue.buffering.max.messages", "100000");
        if let Some(id) = transactional_id {
            // A message may not outlive its transaction.
            config
                .set("transactional.id", id)
                .set("transaction.timeout.ms", "60000")
                .set("message.timeout.ms", "55000");
        }
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        StreamsConfig::new("app").validate().unwrap();
    }

    #[test]
    fn bad_values_name_key_value_and_expectation() {
        let mut config = StreamsConfig::new("bad id!");
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("application_id") && error.contains("bad id!"),
            "{error}"
        );
        config = StreamsConfig::new("app").bootstrap_servers(Some("nohost"));
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("host:port")
        );
        config = StreamsConfig::new("app");
        config.num_stream_threads = 0;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("num_stream_threads")
        );
    }

    #[test]
    fn config_files_reject_unknown_keys() {
        let error = serde_json::from_str::<StreamsConfig>(
            r#"{"application_id":"a","comit_interval_ms":5}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("comit_interval_ms"), "{error}");
        let config: StreamsConfig =
            serde_json::from_str(r#"{"application_id":"a","auto_offset_reset":"latest"}"#).unwrap();
        assert_eq!(config.auto_offset_reset, OffsetReset::Latest);
        assert_eq!(config.commit_interval(), Duration::from_secs(1));
        let config: StreamsConfig = serde_json::from_str(
            r#"{"application_id":"a","processing_guarantee":"exactly_once_v2"}"#,
        )
        .unwrap();
        assert!(config.exactly_once());
        assert_eq!(config.commit_interval(), Duration::from_millis(100));
    }
}
