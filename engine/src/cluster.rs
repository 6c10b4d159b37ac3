//! The Kafka cluster a runtime talks to: a real one, or the embedded
//! in-memory one (librdkafka's mock cluster) when no broker is configured.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::mocking::MockCluster;
use tracing::{info, warn};

use crate::error::{EngineError, Result};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle to a Kafka cluster; clones share it. The embedded cluster lives
/// as long as any handle to it does.
#[derive(Clone)]
pub struct Cluster {
    bootstrap: String,
    embedded: Option<Arc<Mutex<mpsc::Sender<Command>>>>,
    client: ClientConfig,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.bootstrap)
            .field("embedded", &self.embedded.is_some())
            .finish()
    }
}

/// Keeps the first error librdkafka reported for a client (a failed
/// login, say), so a failed request can say why.
#[derive(Default)]
struct ErrorCapture {
    first: Mutex<Option<String>>,
}

impl ErrorCapture {
    fn first(&self) -> Option<String> {
        self.first.lock().ok().and_then(|first| first.clone())
    }
}

impl ErrorCapture {
    /// Keeps the first reason: the cause ("SASL authentication error: …")
    /// comes before its consequences ("1/1 brokers are down").
    fn keep(&self, reason: &str) {
        if let Ok(mut first) = self.first.lock()
            && first.is_none()
        {
            *first = Some(reason.to_owned());
        }
    }
}

impl rdkafka::ClientContext for ErrorCapture {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        warn!(%error, reason, "Kafka client error.");
        self.keep(reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel::{Alert, Critical, Emerg, Error, Warning};
        match level {
            Emerg | Alert | Critical | Error => {
                tracing::error!(target: "librdkafka", facility, "{message}");
                self.keep(message);
            }
            Warning => warn!(target: "librdkafka", facility, "{message}"),
            _ => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ErrorCapture {}

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: mpsc::Sender<Result<()>>,
    },
}

impl Cluster {
    /// A real cluster at `bootstrap` (`host:port[,…]`), or the embedded one
    /// when `bootstrap` is `None`.
    pub fn connect(bootstrap: Option<&str>) -> Result<Self> {
        match bootstrap {
            Some(bootstrap) => Ok(Self::kafka(bootstrap)),
            None => Self::embedded(),
        }
    }

    /// A real cluster.
    pub fn kafka(bootstrap: &str) -> Self {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", bootstrap);
        Self {
            bootstrap: bootstrap.to_owned(),
            embedded: None,
            client,
        }
    }

    /// Adds librdkafka settings (e.g. security) to the cluster's admin client.
    pub fn with_client_settings<'a>(
        mut self,
        settings: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        for (key, value) in settings {
            self.client.set(key, value);
        }
        self
    }

    /// Starts an embedded, in-memory cluster of one broker. Its data lives
    /// in this process only and is gone when the last handle is dropped.
    pub fn embedded() -> Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (command_tx, command_rx) = mpsc::channel::<Command>();
        // librdkafka's mock cluster is not Send: it lives on a thread of its
        // own and takes commands over a channel.
        std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(error) => {
                        let _ = ready_tx.send(Err(EngineError::Embedded(error.to_string())));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(command) = command_rx.recv() {
                    match command {
                        Command::CreateTopic {
                            name,
                            partitions,
                            reply,
                        } => {
                            let result =
                                cluster.create_topic(&name, partitions, 1).map_err(|error| {
                                    EngineError::kafka(format!("creating {name}"), error)
                                });
                            let _ = reply.send(result);
                        }
                    }
                }
            })
            .map_err(|error| EngineError::Embedded(format!("cannot start its thread: {error}")))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| EngineError::Embedded("its thread ended during start-up".into()))??;
        info!(
            bootstrap,
            "Running on the embedded Kafka cluster: data lives in memory only and is lost at exit."
        );
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &bootstrap);
        Ok(Self {
            bootstrap,
            embedded: Some(Arc::new(Mutex::new(command_tx))),
            client,
        })
    }

    /// The bootstrap servers to give clients.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Whether this is the embedded in-memory cluster.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// A client config for this cluster, with its settings.
    pub fn client_config(&self) -> ClientConfig {
        self.client.clone()
    }

    /// The partition counts of `topics`; a topic that does not exist is absent.
    pub fn partition_counts(&self, topics: &[String]) -> Result<HashMap<String, i32>> {
        let consumer: BaseConsumer<ErrorCapture> = self
            .client_config()
            .set("allow.auto.create.topics", "false")
            .create_with_context(ErrorCapture::default())
            .map_err(|error| EngineError::kafka("creating a metadata client", error))?;
        let mut counts = HashMap::new();
        for topic in topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                .map_err(|error| {
                    // A failed login shows only as a transport failure here;
                    // librdkafka reports the reason as a client error event.
                    for _ in 0..10 {
                        if consumer.poll(Duration::from_millis(10)).is_none()
                            && consumer.context().first().is_some()
                        {
                            break;
                        }
                    }
                    let context = match consumer.context().first() {
                        Some(reason) => format!("reading metadata of {topic} ({reason})"),
                        None => format!("reading metadata of {topic}"),
                    };
                    EngineError::kafka(context, error)
                })?;
            for entry in metadata.topics() {
                if entry.name() == topic
                    && entry.error().is_none()
                    && !entry.partitions().is_empty()
                {
                    counts.insert(topic.clone(), entry.partitions().len() as i32);
                }
            }
        }
        Ok(counts)
    }

    /// Creates `topic` unless it exists. `configs` (e.g. `cleanup.policy`)
    /// apply on a real cluster; the embedded one ignores them.
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        if let Some(commands) = &self.embedded {
            let (reply, result) = mpsc::channel();
            commands
                .lock()
                .map_err(|_| EngineError::Embedded("its command channel is poisoned".into()))?
                .send(Command::CreateTopic {
                    name: topic.to_owned(),
                    partitions,
                    reply,
                })
                .map_err(|_| EngineError::Embedded("its thread has ended".into()))?;
            return result
                .recv()
                .map_err(|_| EngineError::Embedded("its thread has ended".into()))?;
        }
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .map_err(|error| EngineError::kafka("creating an admin client", error))?;
        let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
        for (key, value) in configs {
            new_topic = new_topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = futures::executor::block_on(admin.create_topics([&new_topic], &options))
            .map_err(|error| EngineError::kafka(format!("creating topic {topic}"), error))?;
        for result in results {
            match result {
                Ok(_) => info!(topic, partitions, "Created topic."),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    warn!(topic, "Topic was created concurrently.");
                }
                Err((name, code)) => {
                    return Err(EngineError::Topics(format!(
                        "cannot create topic {name}: {code}"
                    )));
                }
            }
        }
        Ok(())
    }
}
