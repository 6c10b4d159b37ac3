//! The `coffee` binary's configuration, in layers, lowest to highest:
//! built-in defaults < a config file (`CONFIG_FILE` or `--config`, TOML or
//! YAML) < environment variables < command-line flags (`--set
//! section.key=value` and the subcommands' own flags).
//!
//! Every layer is merged into one tree before it is read, so an error
//! names the key, the value, what was expected, and which layer set it.
//!
//! ```
//! use coffee::config::{Layers, Service};
//!
//! let env = |name: &str| match name {
//!     "KAFKA_BROKERS" => Some("a:9092,b:9092".to_owned()),
//!     "SERVER_PORT" => Some("3100".to_owned()),
//!     _ => None,
//! };
//! let config = Layers::new(Service::Producer)
//!     .file_text("config.toml", "[producer]\nserver_port = 3001\n")?
//!     .env(env)?
//!     .load()?;
//! assert_eq!(config.kafka.brokers, ["a:9092", "b:9092"]);
//! // The environment wins over the file.
//! assert_eq!(config.producer.server_port, 3100);
//! # Ok::<(), coffee::config::ConfigError>(())
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use proto::menu::Menu;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::service::{BaristaServiceConfig, KafkaConfig, StreamsServiceConfig};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or YAML.
    #[error("the config file {path} is not valid {format}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// TOML or YAML.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A value does not fit its key.
    #[error("invalid setting {key} = {value}: expected {expected} (set by {origin})")]
    Invalid {
        /// The key, as `section.key`.
        key: String,
        /// The value given.
        value: String,
        /// What the key takes.
        expected: String,
        /// The layer that set it: the file, a variable, a flag.
        origin: String,
    },
}

/// Which service is starting: decides what the service-wide variables
/// (`SERVER_PORT`, `METRICS_PORT`) configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `coffee producer`.
    Producer,
    /// `coffee gateway`.
    Gateway,
    /// `coffee streams`.
    Streams,
    /// `coffee consumer`.
    Consumer,
    /// `coffee all`, `replay` and `topology`: service-wide variables are
    /// ambiguous and ignored; use the per-section variables or the file.
    All,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `coffee=debug,info`
    /// (`LOG_LEVEL`; `RUST_LOG` wins when set).
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `text` or `json` (`LOG_FORMAT`).
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn default_log_level() -> String {
    "info".into()
}
fn default_log_format() -> LogFormat {
    LogFormat::Text
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: default_log_format(),
        }
    }
}

/// Every service's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How every service reaches Kafka.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Drinks and their preparation times in seconds, shared by the
    /// producer (which refuses other drinks) and the streams application.
    #[serde(default)]
    pub menu: Menu,
    /// The producer (`coffee producer`).
    #[serde(default)]
    pub producer: gateway::producer::ProducerConfig,
    /// The API gateway (`coffee gateway`).
    #[serde(default)]
    pub gateway: gateway::api::GatewayConfig,
    /// The streams application and its query service (`coffee streams`).
    #[serde(default)]
    pub streams: StreamsServiceConfig,
    /// The barista (`coffee consumer`).
    #[serde(default)]
    pub barista: BaristaServiceConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

impl Config {
    /// Hands the shared sections to the services that keep their own copy:
    /// the producer's brokers (unless set in `[producer]`), its extra Kafka
    /// settings and its menu come from `[kafka]` and `menu`.
    fn resolve(mut self) -> Self {
        if self.producer.kafka_brokers.is_empty() {
            self.producer.kafka_brokers.clone_from(&self.kafka.brokers);
        }
        for (key, value) in &self.kafka.client {
            self.producer
                .kafka_settings
                .0
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        self.producer.menu = self.menu.clone();
        self
    }
}

/// How an environment variable's text becomes a value.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Number,
    Bool,
    /// A list: `a,b` or a JSON array `["a","b"]`.
    List,
}

/// An environment variable and the keys it sets.
struct Variable {
    name: &'static str,
    keys: &'static [&'static str],
    kind: Kind,
    /// Only for this service; `None` for all.
    only: Option<Service>,
}

const fn var(name: &'static str, keys: &'static [&'static str], kind: Kind) -> Variable {
    Variable {
        name,
        keys,
        kind,
        only: None,
    }
}

const fn var_for(
    service: Service,
    name: &'static str,
    keys: &'static [&'static str],
    kind: Kind,
) -> Variable {
    Variable {
        name,
        keys,
        kind,
        only: Some(service),
    }
}

/// Every environment variable the binary reads, and what it sets.
const VARIABLES: &[Variable] = &[
    var("KAFKA_BROKERS", &["kafka.brokers"], Kind::List),
    var(
        "KAFKA_TOPIC_PARTITIONS",
        &["kafka.topic_partitions"],
        Kind::Integer,
    ),
    var("KAFKA_CREATE_TOPICS", &["kafka.create_topics"], Kind::Bool),
    var(
        "KAFKA_SECURITY_PROTOCOL",
        &["kafka.client.security.protocol"],
        Kind::Text,
    ),
    var(
        "KAFKA_SASL_MECHANISM",
        &["kafka.client.sasl.mechanism"],
        Kind::Text,
    ),
    var(
        "KAFKA_SASL_USERNAME",
        &["kafka.client.sasl.username"],
        Kind::Text,
    ),
    var(
        "KAFKA_SASL_PASSWORD",
        &["kafka.client.sasl.password"],
        Kind::Text,
    ),
    var(
        "KAFKA_SSL_CA_LOCATION",
        &["kafka.client.ssl.ca.location"],
        Kind::Text,
    ),
    var(
        "KAFKA_SSL_CERTIFICATE_LOCATION",
        &["kafka.client.ssl.certificate.location"],
        Kind::Text,
    ),
    var(
        "KAFKA_SSL_KEY_LOCATION",
        &["kafka.client.ssl.key.location"],
        Kind::Text,
    ),
    var(
        "KAFKA_SSL_KEY_PASSWORD",
        &["kafka.client.ssl.key.password"],
        Kind::Text,
    ),
    // The producer.
    var(
        "KAFKA_TOPIC",
        &["producer.kafka_topic", "barista.orders_topic"],
        Kind::Text,
    ),
    var(
        "KAFKA_REQUIRED_ACKS",
        &["producer.kafka_required_acks"],
        Kind::Text,
    ),
    var(
        "KAFKA_RETRY_MAX",
        &["producer.kafka_retry_max"],
        Kind::Integer,
    ),
    var(
        "KAFKA_SEND_TIMEOUT_MS",
        &["producer.kafka_send_timeout_ms"],
        Kind::Integer,
    ),
    var("GRPC_PORT", &["producer.grpc_port"], Kind::Integer),
    var(
        "CORS_ALLOWED_ORIGINS",
        &[
            "producer.cors_allowed_origins",
            "gateway.cors_allowed_origins",
        ],
        Kind::List,
    ),
    var_for(
        Service::Producer,
        "SERVER_PORT",
        &["producer.server_port"],
        Kind::Integer,
    ),
    // The gateway.
    var(
        "PRODUCER_GRPC_ADDRESS",
        &["gateway.producer_grpc_address"],
        Kind::Text,
    ),
    var(
        "CONSUMER_GRPC_ADDRESS",
        &[
            "gateway.consumer_grpc_address",
            "producer.consumer_grpc_address",
        ],
        Kind::Text,
    ),
    var_for(
        Service::Gateway,
        "SERVER_PORT",
        &["gateway.server_port"],
        Kind::Integer,
    ),
    // The streams application.
    var(
        "KAFKA_APPLICATION_ID",
        &["streams.application_id"],
        Kind::Text,
    ),
    var("KAFKA_INPUT_TOPIC", &["streams.input_topic"], Kind::Text),
    var(
        "KAFKA_OUTPUT_TOPIC",
        &["streams.output_topic", "barista.processed_topic"],
        Kind::Text,
    ),
    var(
        "KAFKA_AUTO_OFFSET_RESET",
        &["streams.auto_offset_reset"],
        Kind::Text,
    ),
    var(
        "KAFKA_PROCESSING_GUARANTEE",
        &["streams.processing_guarantee"],
        Kind::Text,
    ),
    var(
        "NUM_STREAM_THREADS",
        &["streams.num_stream_threads"],
        Kind::Integer,
    ),
    var("STATE_DIR", &["streams.state_dir"], Kind::Text),
    var("QUERY_GRPC_PORT", &["streams.query_port"], Kind::Integer),
    var_for(
        Service::Streams,
        "METRICS_PORT",
        &["streams.metrics_port"],
        Kind::Integer,
    ),
    // The barista.
    var(
        "KAFKA_PROCESSED_TOPIC",
        &["barista.processed_topic"],
        Kind::Text,
    ),
    var("KAFKA_CONSUMER_GROUP", &["barista.group_id"], Kind::Text),
    var("BARISTA_WORKERS", &["barista.workers"], Kind::Integer),
    var("BARISTA_NAME", &["barista.name"], Kind::Text),
    var(
        "BARISTA_SPEED_FACTOR",
        &["barista.speed_factor"],
        Kind::Number,
    ),
    var_for(
        Service::Consumer,
        "METRICS_PORT",
        &["barista.metrics_port"],
        Kind::Integer,
    ),
    // Logging.
    var("LOG_LEVEL", &["log.level"], Kind::Text),
    var("LOG_FORMAT", &["log.format"], Kind::Text),
];

/// The environment variables the binary reads, for documentation.
pub fn variables() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    VARIABLES.iter().map(|v| (v.name, v.keys))
}

/// The layers of a configuration being built.
#[derive(Debug, Clone)]
pub struct Layers {
    service: Service,
    tree: Value,
    /// Which layer set each key, for error messages.
    origins: BTreeMap<String, String>,
}

impl Layers {
    /// Only the built-in defaults, for starting `service`.
    pub fn new(service: Service) -> Self {
        Self {
            service,
            tree: Value::Object(Map::new()),
            origins: BTreeMap::new(),
        }
    }

    /// Adds the config file at `path` (`.toml`, `.yaml` or `.yml`).
    pub fn file(self, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.file_text(&path.display().to_string(), &text)
    }

    /// Adds a config file's text; `name` picks the format by its extension.
    pub fn file_text(mut self, name: &str, text: &str) -> Result<Self, ConfigError> {
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        let parsed: Value = if yaml {
            serde_yaml::from_str(text).map_err(|error| ConfigError::Parse {
                path: name.into(),
                format: "YAML",
                message: error.to_string(),
            })?
        } else {
            toml::from_str(text).map_err(|error| ConfigError::Parse {
                path: name.into(),
                format: "TOML",
                message: error.to_string(),
            })?
        };
        let parsed = match parsed {
            Value::Null => Value::Object(Map::new()),
            Value::Object(map) => Value::Object(map),
            _ => {
                return Err(ConfigError::Parse {
                    path: name.into(),
                    format: if yaml { "YAML" } else { "TOML" },
                    message: "the top level must be a table of sections".into(),
                });
            }
        };
        let mut keys = Vec::new();
        leaf_keys(&parsed, String::new(), &mut keys);
        for key in keys {
            self.origins.insert(key, format!("the config file {name}"));
        }
        merge(&mut self.tree, parsed);
        Ok(self)
    }

    /// Adds the environment, read through `lookup` (e.g. `std::env::var`).
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        for variable in VARIABLES {
            if variable.only.is_some_and(|only| only != self.service) {
                continue;
            }
            let Some(text) = lookup(variable.name) else {
                continue;
            };
            let origin = format!("environment variable {}", variable.name);
            let value = parse(variable.kind, &text).map_err(|expected| ConfigError::Invalid {
                key: variable.keys.first().copied().unwrap_or_default().into(),
                value: text.clone(),
                expected,
                origin: origin.clone(),
            })?;
            for key in variable.keys {
                self.set_value(key, value.clone(), &origin);
            }
        }
        Ok(self)
    }

    /// Sets one key from a flag, `section.key=value`: the value is read as
    /// JSON when it parses (numbers, booleans, lists), else as text.
    pub fn set(mut self, assignment: &str) -> Result<Self, ConfigError> {
        let Some((key, text)) = assignment.split_once('=') else {
            return Err(ConfigError::Invalid {
                key: assignment.into(),
                value: String::new(),
                expected: "section.key=value".into(),
                origin: "flag --set".into(),
            });
        };
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into()));
        self.set_value(key.trim(), value, &format!("flag --set {}", key.trim()));
        Ok(self)
    }

    /// Sets `key` to `value` from a named flag.
    pub fn flag(mut self, key: &str, value: Value, flag: &str) -> Self {
        self.set_value(key, value, &format!("flag {flag}"));
        self
    }

    fn set_value(&mut self, key: &str, value: Value, origin: &str) {
        // `kafka.client.*` keys are librdkafka names with dots of their own.
        let path: Vec<&str> = match key.strip_prefix("kafka.client.") {
            Some(setting) => vec!["kafka", "client", setting],
            None => key.split('.').collect(),
        };
        let mut node = &mut self.tree;
        for (i, part) in path.iter().enumerate() {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else {
                return;
            };
            if i + 1 == path.len() {
                map.insert((*part).to_owned(), value);
                break;
            }
            node = map
                .entry((*part).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        self.origins.insert(key.to_owned(), origin.to_owned());
    }

    /// Whether some layer above the defaults set `key`.
    pub fn is_set(&self, key: &str) -> bool {
        self.origins.contains_key(key)
    }

    /// Reads the merged layers into a [`Config`] and checks every value.
    pub fn load(self) -> Result<Config, ConfigError> {
        let config: Config =
            serde_path_to_error::deserialize(self.tree.clone()).map_err(|error| {
                let key = error.path().to_string();
                let value = lookup(&self.tree, &key)
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| "(missing)".into());
                ConfigError::Invalid {
                    origin: self.origin_of(&key),
                    key,
                    value,
                    expected: error.into_inner().to_string(),
                }
            })?;
        let config = config.resolve();
        self.check(&config)?;
        Ok(config)
    }

    fn origin_of(&self, key: &str) -> String {
        self.origins
            .iter()
            .filter(|(set, _)| {
                key == set.as_str()
                    || key.starts_with(&format!("{set}."))
                    || set.starts_with(&format!("{key}."))
            })
            .map(|(_, origin)| origin.clone())
            .next()
            .unwrap_or_else(|| "the defaults".into())
    }

    /// The checks serde cannot make, reported the same way.
    fn check(&self, config: &Config) -> Result<(), ConfigError> {
        let invalid = |key: String, value: String, expected: String| ConfigError::Invalid {
            origin: self.origin_of(&key),
            key,
            value,
            expected,
        };
        config
            .menu
            .validate()
            .map_err(|message| invalid("menu".into(), format!("{:?}", config.menu), message))?;
        config
            .kafka
            .validate()
            .map_err(|error| service_invalid(error, &invalid))?;
        config
            .streams
            .validate(&config.kafka)
            .map_err(|error| service_invalid(error, &invalid))?;
        config
            .barista
            .barista
            .validate()
            .map_err(|error| match error {
                crate::barista::BaristaError::Config {
                    key,
                    value,
                    expected,
                } => invalid(format!("barista.{key}"), value, expected.into()),
                other => invalid("barista".into(), String::new(), other.to_string()),
            })?;
        config.producer.validate().map_err(|error| {
            invalid(
                format!("producer.{}", error.key),
                error.value.clone(),
                error.expected.clone(),
            )
        })?;
        config.gateway.validate().map_err(|error| {
            invalid(
                format!("gateway.{}", error.key),
                error.value.clone(),
                error.expected.clone(),
            )
        })?;
        Ok(())
    }
}

fn service_invalid(
    error: crate::service::ServiceError,
    invalid: &impl Fn(String, String, String) -> ConfigError,
) -> ConfigError {
    match error {
        crate::service::ServiceError::Config {
            key,
            value,
            expected,
        } => invalid(key, value, expected),
        crate::service::ServiceError::Engine(engine::EngineError::Config {
            key,
            value,
            expected,
        }) => invalid(format!("streams.{key}"), value, expected),
        other => invalid("streams".into(), String::new(), other.to_string()),
    }
}

/// Reads a variable's text as `kind`; the error says what was expected.
fn parse(kind: Kind, text: &str) -> Result<Value, String> {
    let text = text.trim();
    match kind {
        Kind::Text => Ok(Value::String(text.to_owned())),
        Kind::Integer => text
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| "a whole number".into()),
        Kind::Number => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| "a number".into()),
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err("true or false".into()),
        },
        Kind::List => {
            if text.starts_with('[') {
                let items: Vec<String> = serde_json::from_str(text)
                    .map_err(|_| "a JSON array of strings such as [\"a:9092\",\"b:9092\"]")?;
                Ok(Value::from(items))
            } else {
                Ok(Value::from(
                    text.split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .collect::<Vec<_>>(),
                ))
            }
        }
    }
}

/// Merges `over` into `base`: tables key by key, anything else replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value);
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

fn leaf_keys(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !(prefix == "kafka.client" || prefix == "menu") => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaf_keys(value, path, out);
            }
        }
        _ => out.push(prefix),
    }
}

/// The value at a `serde_path_to_error` path such as `streams.query_port`.
fn lookup<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = tree;
    for part in path.split('.') {
        node = match node {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(
                part.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<usize>()
                    .ok()?,
            )?,
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_match_the_original_system() {
        let config = Layers::new(Service::All).load().unwrap();
        assert_eq!(config.streams.application_id, "coffee-streams-app");
        assert_eq!(config.streams.input_topic, "coffee_orders");
        assert_eq!(config.streams.output_topic, "processed_orders");
        assert_eq!(config.streams.query_port, 50052);
        assert_eq!(config.barista.barista.group_id, "coffee-consumer-group");
        assert_eq!(config.barista.barista.workers, 3);
        assert!(config.kafka.brokers.is_empty());
    }

    #[test]
    fn each_layer_wins_over_the_one_below() {
        let file = "[streams]\napplication_id = \"from-file\"\nquery_port = 6000\nnum_stream_threads = 2\n[barista]\nworkers = 5\n";
        let base = Layers::new(Service::Streams)
            .file_text("c.toml", file)
            .unwrap();
        let config = base.clone().load().unwrap();
        assert_eq!(config.streams.application_id, "from-file");
        assert_eq!(config.streams.query_port, 6000);

        let vars = env(&[
            ("KAFKA_APPLICATION_ID", "from-env"),
            ("QUERY_GRPC_PORT", "6001"),
        ]);
        let with_env = base.env(vars).unwrap();
        let config = with_env.clone().load().unwrap();
        assert_eq!(config.streams.application_id, "from-env");
        assert_eq!(config.streams.query_port, 6001);
        // Keys no higher layer touched keep the file's value.
        assert_eq!(config.streams.num_stream_threads, 2);
        assert_eq!(config.barista.barista.workers, 5);

        let config = with_env
            .set("streams.application_id=from-flag")
            .unwrap()
            .flag("streams.query_port", Value::from(6002), "--query-port")
            .load()
            .unwrap();
        assert_eq!(config.streams.application_id, "from-flag");
        assert_eq!(config.streams.query_port, 6002);
    }

    #[test]
    fn yaml_files_work_like_toml() {
        let yaml = "streams:\n  processing_guarantee: exactly_once\nkafka:\n  brokers: [\"k:9092\"]\n  client:\n    security.protocol: SASL_SSL\n";
        let config = Layers::new(Service::All)
            .file_text("c.yaml", yaml)
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(
            config.streams.processing_guarantee,
            engine::ProcessingGuarantee::ExactlyOnce
        );
        assert_eq!(config.kafka.brokers, ["k:9092"]);
        assert_eq!(config.kafka.client["security.protocol"], "SASL_SSL");
    }

    #[test]
    fn brokers_take_a_comma_list_or_a_json_array() {
        for text in [
            "a:9092,b:9092",
            "[\"a:9092\",\"b:9092\"]",
            " a:9092 , b:9092 ",
        ] {
            let config = Layers::new(Service::All)
                .env(|name| (name == "KAFKA_BROKERS").then(|| text.to_owned()))
                .unwrap()
                .load()
                .unwrap();
            assert_eq!(config.kafka.brokers, ["a:9092", "b:9092"], "{text}");
        }
    }

    #[test]
    fn bad_values_name_the_key_the_value_the_expectation_and_the_layer() {
        let error = Layers::new(Service::Streams)
            .env(env(&[("KAFKA_PROCESSING_GUARANTEE", "twice")]))
            .unwrap()
            .load()
            .unwrap_err()
            .to_string();
        assert!(error.contains("streams.processing_guarantee"), "{error}");
        assert!(error.contains("twice"), "{error}");
        assert!(error.contains("exactly_once"), "{error}");
        assert!(error.contains("KAFKA_PROCESSING_GUARANTEE"), "{error}");

        let error = Layers::new(Service::Consumer)
            .env(env(&[("BARISTA_WORKERS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("BARISTA_WORKERS") && error.contains("a whole number"),
            "{error}"
        );

        let error = Layers::new(Service::All)
            .file_text("c.toml", "[streams]\nquery_prot = 1\n")
            .unwrap()
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("query_prot") && error.contains("c.toml"),
            "{error}"
        );

        let error = Layers::new(Service::All)
            .set("barista.speed_factor=-2")
            .unwrap()
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("barista.speed_factor") && error.contains("--set"),
            "{error}"
        );

        let error = Layers::new(Service::All)
            .env(env(&[("KAFKA_BROKERS", "localhost")]))
            .unwrap()
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("kafka.brokers") && error.contains("host:port"),
            "{error}"
        );
    }

    #[test]
    fn service_wide_variables_configure_only_the_service_started() {
        let vars = env(&[("SERVER_PORT", "4000"), ("METRICS_PORT", "9999")]);
        let producer = Layers::new(Service::Producer)
            .env(&vars)
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(producer.producer.server_port, 4000);
        assert_eq!(producer.gateway.server_port, 8080);
        let gateway = Layers::new(Service::Gateway)
            .env(&vars)
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(gateway.gateway.server_port, 4000);
        let streams = Layers::new(Service::Streams)
            .env(&vars)
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(streams.streams.metrics_port, 9999);
        assert_eq!(
            streams.barista.metrics_port,
            crate::service::BARISTA_METRICS_PORT
        );
        let all = Layers::new(Service::All)
            .env(&vars)
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(all.producer.server_port, 3000);
    }

    #[test]
    fn secrets_are_not_shown_in_debug_output() {
        let config = Layers::new(Service::All)
            .env(env(&[
                ("KAFKA_SASL_PASSWORD", "hunter2"),
                ("KAFKA_SASL_USERNAME", "shop"),
            ]))
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(config.kafka.client["sasl.password"], "hunter2");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("shop"));
    }
}

#[cfg(test)]
mod documentation {
    /// `docs/configuration.md` names every variable the binary reads, and
    /// every key it names under a variable is one the variable sets.
    #[test]
    fn every_variable_is_documented() {
        let docs = include_str!("../../../docs/configuration.md");
        for (name, keys) in super::variables() {
            assert!(
                docs.contains(&format!("`{name}`")),
                "{name} is not documented"
            );
            for key in keys {
                let leaf = key.rsplit('.').next().unwrap_or(key);
                assert!(
                    docs.contains(&format!("`{leaf}`")) || key.starts_with("kafka.client."),
                    "{key} (set by {name}) is not documented"
                );
            }
        }
    }
}
