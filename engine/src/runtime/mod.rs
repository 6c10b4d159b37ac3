//! Runs a [`Topology`] on Kafka as a consumer group, at least once.
//!
//! The application id is the group: every process started with the same id
//! shares the input partitions, and takes over those of a process that
//! leaves, from its committed offsets. Each input partition of a
//! sub-topology is a task; co-partitioned topics of one sub-topology are
//! assigned together.
//!
//! **At least once:** an input offset is committed only once every output
//! of the records before it has been acknowledged by the broker (idempotent
//! producer, `acks=all`). On revoke and on shutdown, in-flight outputs are
//! drained and what is done is committed before partitions are given up.

mod progress;
mod restore;
mod thread;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Instrument, info, info_span};

use crate::cluster::Cluster;
use crate::config::StreamsConfig;
use crate::error::{EngineError, Result};
use crate::metrics::EngineMetrics;
use crate::topology::{TopicName, Topology};

/// A topology ready to run on a cluster.
pub struct KafkaStreams {
    topology: Arc<Topology>,
    config: Arc<StreamsConfig>,
    cluster: Cluster,
    metrics: Option<EngineMetrics>,
    queries: crate::queries::Queries,
}

/// What start-up found and created on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Partition count of every topic the application reads, internal ones included.
    pub partitions: HashMap<String, i32>,
    /// Number of tasks of each sub-topology.
    pub tasks: Vec<i32>,
    /// The dead-letter topic.
    pub dead_letter_topic: String,
}

impl KafkaStreams {
    /// Checks `config` and pairs the topology with the cluster it runs on.
    pub fn new(topology: Topology, config: StreamsConfig, cluster: Cluster) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            topology: Arc::new(topology),
            config: Arc::new(config),
            cluster,
            metrics: None,
            queries: crate::queries::Queries::default(),
        })
    }

    /// Registers the engine's metrics in `registry`: the application's
    /// series start at zero, and the state gauges are read at each scrape.
    pub fn with_metrics(mut self, registry: &prometheus::Registry) -> Result<Self> {
        let metrics = EngineMetrics::register(registry)?;
        let stores: Vec<&str> = self
            .topology
            .stores
            .iter()
            .flatten()
            .map(|spec| spec.name.as_str())
            .collect();
        metrics.initialise(&self.config.application_id, &stores);
        crate::metrics::StateMetrics::register(
            registry,
            &self.config.application_id,
            self.queries.clone(),
            self.config.application_state_dir(),
        )?;
        self.metrics = Some(metrics);
        Ok(self)
    }

    /// A handle for interactive queries of this application's stores,
    /// usable from any thread while [`KafkaStreams::run`] runs.
    pub fn queries(&self) -> crate::queries::Queries {
        self.queries.clone()
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Checks the source topics, sizes and creates the internal topics and
    /// the dead-letter topic. Called by [`KafkaStreams::run`]; blocking.
    pub fn prepare(&self) -> Result<Plan> {
        let application = &self.config.application_id;
        let sources = self.topology.external_source_topics();
        let found = self.cluster.partition_counts(&sources)?;
        let missing: Vec<&String> = sources.iter().filter(|t| !found.contains_key(*t)).collect();
        if !missing.is_empty() {
            return Err(EngineError::Topics(format!(
                "source topics do not exist: {}; create them before starting {application}",
                missing
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut known: HashMap<TopicName, i32> = found
            .iter()
            .map(|(topic, n)| (TopicName::External(topic.clone()), *n))
            .collect();
        let internal = self.topology.repartition_partitions(&known)?;
        let mut internal_names: Vec<(&TopicName, &i32)> = internal.iter().collect();
        internal_names.sort();
        let resolved: Vec<String> = internal_names
            .iter()
            .map(|(name, _)| name.resolve(application))
            .collect();
        let existing = self.cluster.partition_counts(&resolved)?;
        for ((name, wanted), topic) in internal_names.iter().zip(&resolved) {
            match existing.get(topic) {
                Some(have) if have == *wanted => {}
                Some(have) => {
                    return Err(EngineError::Topics(format!(
                        "internal topic {topic} has {have} partitions but the topology needs \
                         {wanted}; reset the application (or delete the topic) to resize it"
                    )));
                }
                None => self.cluster.create_topic(
                    topic,
                    **wanted,
                    &[("cleanup.policy", "delete"), ("retention.ms", "604800000")],
                )?,
            }
            known.insert((*name).clone(), **wanted);
        }
        let tasks = self.topology.task_counts(&known)?;
        // Changelogs: compacted (only the latest value per key matters),
        // one partition per task of the store's sub-topology.
        for (sub, specs) in self.topology.stores.iter().enumerate() {
            let wanted = tasks.get(sub).copied().unwrap_or(1);
            for spec in specs {
                let topic = crate::stores::changelog_topic(application, &spec.name);
                match self
                    .cluster
                    .partition_counts(std::slice::from_ref(&topic))?
                    .get(&topic)
                {
                    Some(have) if *have == wanted => {}
                    Some(have) => {
                        return Err(EngineError::Topics(format!(
                            "changelog {topic} has {have} partitions but store {} has {wanted} \
                             tasks; reset the application to resize it",
                            spec.name
                        )));
                    }
                    None => self.cluster.create_topic(
                        &topic,
                        wanted,
                        &[("cleanup.policy", "compact")],
                    )?,
                }
                known.insert(TopicName::External(topic), wanted);
            }
        }
        let dead_letter_topic = self.topology.dead_letter_topic(application);
        if self
            .cluster
            .partition_counts(std::slice::from_ref(&dead_letter_topic))?
            .is_empty()
        {
            let partitions = tasks.iter().copied().max().unwrap_or(1).max(1);
            self.cluster
                .create_topic(&dead_letter_topic, partitions, &[])?;
        }
        let partitions = known
            .iter()
            .map(|(name, n)| (name.resolve(application), *n))
            .collect();
        Ok(Plan {
            partitions,
            tasks,
            dead_letter_topic,
        })
    }

    /// Runs until `shutdown` resolves, then drains, commits and leaves the
    /// group within the configured shutdown timeout. Returns early with the
    /// error when a stream thread fails (e.g. a record under the fail
    /// policy); the other threads are then stopped the same graceful way.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let application = self.config.application_id.clone();
        let span = info_span!("streams", application);
        async move {
            let streams = Arc::new(self);
            let preparing = Arc::clone(&streams);
            let plan = tokio::task::spawn_blocking(move || preparing.prepare())
                .await
                .map_err(|error| EngineError::Internal(format!("start-up panicked: {error}")))??;
            info!(tasks = ?plan.tasks, dead_letters = plan.dead_letter_topic, "Starting.");
            for (sub, specs) in streams.topology.stores.iter().enumerate() {
                for spec in specs {
                    streams.queries.declare(
                        &spec.name,
                        plan.tasks.get(sub).copied().unwrap_or(1),
                        spec.kind,
                    );
                }
            }
            let mut source_of = HashMap::new();
            for (sub, topics) in streams.topology.source_topics.iter().enumerate() {
                for topic in topics.keys() {
                    source_of.insert(topic.resolve(&streams.config.application_id), sub);
                }
            }
            let stop = Arc::new(AtomicBool::new(false));
            let threads = streams.config.num_stream_threads;
            let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(threads);
            let dead_letter_topic: Arc<str> = plan.dead_letter_topic.clone().into();
            let instance = if streams.config.exactly_once() {
                Some(instance_id(&streams.config)?)
            } else {
                None
            };
            for index in 0..threads {
                let setup = thread::ThreadSetup {
                    index,
                    topology: Arc::clone(&streams.topology),
                    config: Arc::clone(&streams.config),
                    bootstrap: streams.cluster.bootstrap_servers().to_owned(),
                    metrics: streams.metrics.clone(),
                    stop: Arc::clone(&stop),
                    source_of: source_of.clone(),
                    dead_letter_topic: Arc::clone(&dead_letter_topic),
                    queries: streams.queries.clone(),
                    transactional_id: instance.as_ref().map(|instance| {
                        format!("{}-{instance}-{index}", streams.config.application_id)
                    }),
                };
                let done = done_tx.clone();
                let span = tracing::Span::current();
                std::thread::Builder::new()
                    .name(format!("stream-{index}"))
                    .spawn(move || {
                        let _entered = span.enter();
                        let result = thread::run(setup);
                        let _ = done.blocking_send(result);
                    })
                    .map_err(|error| {
                        EngineError::Internal(format!("cannot start a thread: {error}"))
                    })?;
            }
            drop(done_tx);
            let mut outcome = Ok(());
            tokio::select! {
                () = shutdown => info!("Shutting down: draining and committing."),
                Some(result) = done_rx.recv() => outcome = result,
            }
            stop.store(true, Ordering::Relaxed);
            while let Some(result) = done_rx.recv().await {
                if outcome.is_ok() {
                    outcome = result;
                }
            }
            info!("Stopped.");
            outcome
        }
        .instrument(span)
        .await
    }
}

/// This instance's id for transactional ids: configured, or a random one
/// kept in the application's state directory, so that a restarted instance
/// reuses its ids and thereby fences its predecessor and aborts whatever
/// transactions it left open, at once rather than after their timeout.
fn instance_id(config: &StreamsConfig) -> Result<String> {
    use std::hash::{BuildHasher, Hasher};
    if let Some(id) = &config.instance_id {
        return Ok(id.clone());
    }
    let dir = config.application_state_dir();
    let io = |source| {
        EngineError::State(state::StateError::Io {
            location: dir.display().to_string(),
            source,
        })
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let path = dir.join("instance-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    let id = format!("{:016x}", hasher.finish());
    std::fs::write(&path, &id).map_err(io)?;
    Ok(id)
}
