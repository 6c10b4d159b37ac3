//! A deterministic, in-process test driver: run a topology without a broker.
//!
//! Unlike Kafka Streams' `TopologyTestDriver`, input topics may have any
//! number of partitions: records are placed by key exactly as on Kafka
//! (murmur2), every partition gets its own task, and repartition topics are
//! real (in-memory) topics between tasks. Each piped record is processed to
//! completion, repartition hops included, before `pipe` returns.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use state::Backend;
use state::memory::MemoryBackend;
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::policy::{Handled, handle_failure, headers};
use crate::processor::Ctx;
use crate::queries::Queries;
use crate::record::{OutputRecord, RawRecord};
use crate::serdes::Serde;
use crate::task::{Task, TaskId};
use crate::topology::{TopicName, Topology};

/// The application id the driver uses unless told otherwise.
pub const DEFAULT_APPLICATION_ID: &str = "test-app";

/// Configures a [`TestDriver`].
pub struct TestDriverBuilder {
    topology: Topology,
    application_id: String,
    partitions: HashMap<String, i32>,
    default_partitions: i32,
}

impl TestDriverBuilder {
    /// The application id (default `test-app`); internal topics are named after it.
    pub fn application_id(mut self, id: &str) -> Self {
        id.clone_into(&mut self.application_id);
        self
    }

    /// The partition count of `topic` (an input or an output topic).
    pub fn partitions(mut self, topic: &str, partitions: i32) -> Self {
        self.partitions.insert(topic.to_owned(), partitions);
        self
    }

    /// The partition count of every topic not set with [`Self::partitions`] (default 1).
    pub fn default_partitions(mut self, partitions: i32) -> Self {
        self.default_partitions = partitions;
        self
    }

    /// Checks the partition counts against the topology and creates the tasks.
    pub fn build(self) -> Result<TestDriver> {
        let Self {
            topology,
            application_id,
            mut partitions,
            default_partitions,
        } = self;
        if default_partitions < 1 {
            return Err(EngineError::Config {
                key: "default_partitions".into(),
                value: default_partitions.to_string(),
                expected: "at least 1".into(),
            });
        }
        if let Some((topic, n)) = partitions.iter().find(|(_, n)| **n < 1) {
            return Err(EngineError::Config {
                key: format!("partitions({topic})"),
                value: n.to_string(),
                expected: "at least 1".into(),
            });
        }
        let mut known: HashMap<TopicName, i32> = HashMap::new();
        for topic in topology.external_source_topics() {
            let n = *partitions
                .entry(topic.clone())
                .or_insert(default_partitions);
            known.insert(TopicName::External(topic), n);
        }
        let internal = topology.repartition_partitions(&known)?;
        for (name, n) in &internal {
            partitions.insert(name.resolve(&application_id), *n);
            known.insert(name.clone(), *n);
        }
        let task_counts = topology.task_counts(&known)?;
        let mut tasks = BTreeMap::new();
        for (sub, count) in task_counts.iter().enumerate() {
            for partition in 0..*count {
                let id = TaskId {
                    subtopology: sub,
                    partition,
                };
                // The driver keeps state in memory; its changelogs are
                // topics of the driver like any other.
                let state = MemoryBackend.open(Path::new("test-driver"))?;
                tasks.insert(id, Task::new(&topology, id, &application_id, Some(&state))?);
            }
        }
        let mut source_of = HashMap::new();
        for (sub, topics) in topology.source_topics.iter().enumerate() {
            for topic in topics.keys() {
                source_of.insert(topic.resolve(&application_id), sub);
            }
        }
        // Every store is hosted here, and never restoring: the driver's
        // queries answer like those of a single running instance.
        let queries = Queries::default();
        for (sub, specs) in topology.stores.iter().enumerate() {
            for spec in specs {
                queries.declare(
                    &spec.name,
                    task_counts.get(sub).copied().unwrap_or(1),
                    spec.kind,
                );
            }
        }
        for (id, task) in &tasks {
            for store in &task.stores {
                queries.host(&store.name, id.partition, Arc::clone(&store.store), false);
            }
        }
        let dead_letter_topic: Arc<str> = topology.dead_letter_topic(&application_id).into();
        let ctx = Ctx::new(topology.node_names());
        Ok(TestDriver {
            topology,
            application_id,
            partitions,
            default_partitions,
            tasks,
            source_of,
            logs: HashMap::new(),
            cursors: HashMap::new(),
            ctx,
            dead_letter_topic,
            round_robin: 0,
            wall_clock: 0,
            skipped: Vec::new(),
            queries,
        })
    }
}

/// A record as stored in one of the driver's topics.
#[derive(Debug, Clone)]
struct Stored {
    partition: i32,
    offset: i64,
    record: OutputRecord,
}

/// An input topic of a [`TestDriver`], with the serdes to encode records.
pub struct TestInputTopic<K: 'static, V: 'static> {
    topic: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

/// An output topic of a [`TestDriver`], with the serdes to decode records.
pub struct TestOutputTopic<K: 'static, V: 'static> {
    topic: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

/// A record read from an output topic, with where it landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord<K, V> {
    /// Its key.
    pub key: K,
    /// Its value.
    pub value: V,
    /// Its timestamp.
    pub timestamp: i64,
    /// The partition it was written to.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Its headers: those of the input record it came from.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A record set aside under the dead-letter policy, as its headers describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The original key bytes.
    pub key: Option<Vec<u8>>,
    /// The original value bytes.
    pub value: Option<Vec<u8>>,
    /// Where it was read from.
    pub topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The operator that failed.
    pub operator: String,
    /// The error class.
    pub class: String,
    /// The error message.
    pub message: String,
}

/// Runs a [`Topology`] in process, deterministically, without a broker.
pub struct TestDriver {
    topology: Topology,
    application_id: String,
    partitions: HashMap<String, i32>,
    default_partitions: i32,
    tasks: BTreeMap<TaskId, Task>,
    /// Sub-topology reading each resolved source topic.
    source_of: HashMap<String, usize>,
    logs: HashMap<String, Vec<Stored>>,
    cursors: HashMap<String, usize>,
    ctx: Ctx,
    dead_letter_topic: Arc<str>,
    round_robin: usize,
    /// The driver's wall clock, in milliseconds; moved by `advance_wall_clock`.
    wall_clock: i64,
    skipped: Vec<crate::error::ProcessingError>,
    queries: Queries,
}

impl TestDriver {
    /// A driver with one partition per topic and application id `test-app`.
    pub fn new(topology: Topology) -> Result<Self> {
        Self::builder(topology).build()
    }

    /// A driver to configure: partition counts, application id.
    pub fn builder(topology: Topology) -> TestDriverBuilder {
        TestDriverBuilder {
            topology,
            application_id: DEFAULT_APPLICATION_ID.to_owned(),
            partitions: HashMap::new(),
            default_partitions: 1,
        }
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// The number of tasks the driver runs (one per sub-topology and partition).
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// A handle to pipe typed records into `topic`.
    pub fn input_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> TestInputTopic<K, V> {
        TestInputTopic {
            topic: topic.to_owned(),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }

    /// A handle to read typed records from `topic`.
    pub fn output_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic {
            topic: topic.to_owned(),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }

    /// Pipes a record with timestamp 0 into the partition its key chooses.
    pub fn pipe<K: 'static, V: 'static>(
        &mut self,
        input: &TestInputTopic<K, V>,
        key: K,
        value: V,
    ) -> Result<()> {
        self.pipe_record(input, None, key, value, 0)
    }

    /// Pipes a record with a timestamp into the partition its key chooses.
    pub fn pipe_at<K: 'static, V: 'static>(
        &mut self,
        input: &TestInputTopic<K, V>,
        key: K,
        value: V,
        timestamp: i64,
    ) -> Result<()> {
        self.pipe_record(input, None, key, value, timestamp)
    }

    /// Pipes a record into a chosen partition (`None`: by key).
    pub fn pipe_record<K: 'static, V: 'static>(
        &mut self,
        input: &TestInputTopic<K, V>,
        partition: Option<i32>,
        key: K,
        value: V,
        timestamp: i64,
    ) -> Result<()> {
        let key = input.key_serde.serialize(&key)?;
        let value = input.value_serde.serialize(&value)?;
        self.pipe_raw(&input.topic, partition, Some(key), Some(value), timestamp)
    }

    /// Pipes raw bytes, e.g. a malformed record, into `topic`.
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp: i64,
    ) -> Result<()> {
        self.pipe_raw_with_headers(topic, partition, key, value, timestamp, Vec::new())
    }

    /// Pipes raw bytes with headers into `topic`. Sinks copy an input
    /// record's headers onto the records it leads to.
    ///
    /// ```
    /// use engine::serdes::Utf8;
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Utf8, Utf8).map_values(|v: String| v.to_uppercase()).to("out", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let headers = vec![("x-request-id".to_string(), b"r-1".to_vec())];
    /// driver.pipe_raw_with_headers("in", None, Some(b"k".to_vec()), Some(b"v".to_vec()), 0, headers.clone())?;
    /// let out = driver.output_topic("out", Utf8, Utf8);
    /// assert_eq!(driver.read_records(&out)?[0].headers, headers);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn pipe_raw_with_headers(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp: i64,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        if !self.source_of.contains_key(topic) {
            return Err(EngineError::Topics(format!(
                "the topology does not read topic {topic}"
            )));
        }
        let record = OutputRecord {
            topic: topic.into(),
            partition: None,
            key,
            value,
            timestamp,
            headers,
        };
        let mut queue = VecDeque::new();
        queue.push_back(self.append(record, partition)?);
        while let Some((topic, index)) = queue.pop_front() {
            for written in self.process(&topic, index)? {
                if self.source_of.contains_key(written.0.as_str()) {
                    queue.push_back(written);
                }
            }
        }
        Ok(())
    }

    /// The driver's wall clock, in milliseconds (it starts at 0).
    pub fn wall_clock(&self) -> i64 {
        self.wall_clock
    }

    /// Moves the driver's wall clock forward and lets every task act on it
    /// (e.g. windows closing on an idle partition), processing whatever
    /// that writes to repartition topics.
    pub fn advance_wall_clock(&mut self, by: std::time::Duration) -> Result<()> {
        self.wall_clock = self
            .wall_clock
            .saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
        let ids: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.has_ticks())
            .map(|(id, _)| *id)
            .collect();
        let mut queue = VecDeque::new();
        for id in ids {
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            self.ctx.headers.clear();
            task.tick(self.wall_clock, &mut self.ctx);
            if let Some(error) = self.ctx.error.take() {
                return Err(EngineError::Processing(error));
            }
            for record in std::mem::take(&mut self.ctx.outputs) {
                let written = self.append(record, None)?;
                if self.source_of.contains_key(written.0.as_str()) {
                    queue.push_back(written);
                }
            }
        }
        while let Some((topic, index)) = queue.pop_front() {
            for written in self.process(&topic, index)? {
                if self.source_of.contains_key(written.0.as_str()) {
                    queue.push_back(written);
                }
            }
        }
        Ok(())
    }

    /// Reads the records written to `output` since the last read, in the
    /// order they were written.
    pub fn read_records<K: 'static, V: 'static>(
        &mut self,
        output: &TestOutputTopic<K, V>,
    ) -> Result<Vec<TestRecord<K, V>>> {
        let log = self
            .logs
            .get(&output.topic)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let cursor = self.cursors.entry(output.topic.clone()).or_insert(0);
        let unread = &log[(*cursor).min(log.len())..];
        let mut records = Vec::with_capacity(unread.len());
        for stored in unread {
            records.push(TestRecord {
                key: output
                    .key_serde
                    .deserialize(stored.record.key.as_deref().unwrap_or_default())?,
                value: output
                    .value_serde
                    .deserialize(stored.record.value.as_deref().unwrap_or_default())?,
                timestamp: stored.record.timestamp,
                partition: stored.partition,
                offset: stored.offset,
                headers: stored.record.headers.clone(),
            });
        }
        *cursor = log.len();
        Ok(records)
    }

    /// Reads the keys and values written to `output` since the last read.
    pub fn read_key_values<K: 'static, V: 'static>(
        &mut self,
        output: &TestOutputTopic<K, V>,
    ) -> Result<Vec<(K, V)>> {
        Ok(self
            .read_records(output)?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect())
    }

    /// Every record written to the dead-letter topic so far.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        let header = |record: &OutputRecord, name: &str| {
            record
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
                .unwrap_or_default()
        };
        self.logs
            .get(&*self.dead_letter_topic)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|stored| DeadLetter {
                key: stored.record.key.clone(),
                value: stored.record.value.clone(),
                topic: header(&stored.record, headers::TOPIC),
                partition: header(&stored.record, headers::PARTITION)
                    .parse()
                    .unwrap_or(-1),
                offset: header(&stored.record, headers::OFFSET)
                    .parse()
                    .unwrap_or(-1),
                operator: header(&stored.record, headers::OPERATOR),
                class: header(&stored.record, headers::ERROR_CLASS),
                message: header(&stored.record, headers::ERROR_MESSAGE),
            })
            .collect()
    }

    /// Records into and out of the operator named `name` so far, or `None`
    /// when no operator has that name.
    pub fn operator_records(&self, name: &str) -> Option<(u64, u64)> {
        let node = self.topology.node_named(name)?;
        self.ctx.counts.get(node).copied()
    }

    /// The value of `key` in store `store`, read from whichever task holds it.
    pub fn store_get<K: 'static, V: 'static>(
        &self,
        store: &str,
        key: &K,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Result<Option<V>> {
        let key = key_serde.serialize(key)?;
        for task in self.tasks.values() {
            if let Some(open) = task.stores.iter().find(|open| open.name == store)
                && let Some(bytes) = open.store.get(&key)?
            {
                return Ok(Some(value_serde.deserialize(&bytes)?));
            }
        }
        if self
            .tasks
            .values()
            .any(|task| task.stores.iter().any(|open| open.name == store))
        {
            Ok(None)
        } else {
            Err(EngineError::Topology(format!(
                "the topology has no store named {store}"
            )))
        }
    }

    /// Every entry of store `store` across all tasks, in key-byte order.
    pub fn store_entries<K: 'static, V: 'static>(
        &self,
        store: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Result<Vec<(K, V)>> {
        let mut entries = Vec::new();
        for task in self.tasks.values() {
            if let Some(open) = task.stores.iter().find(|open| open.name == store) {
                for entry in open.store.range(None, None)? {
                    entries.push(entry?);
                }
            }
        }
        entries.sort();
        entries
            .into_iter()
            .map(|(key, value)| {
                Ok((
                    key_serde.deserialize(&key)?,
                    value_serde.deserialize(&value)?,
                ))
            })
            .collect()
    }

    /// Interactive queries over the driver's stores, the same API a running
    /// application offers ([`KafkaStreams::queries`](crate::KafkaStreams::queries)):
    /// every partition is hosted here and none is ever restoring. The
    /// handle reads the stores live, so it sees records piped after it was
    /// taken.
    pub fn queries(&self) -> Queries {
        self.queries.clone()
    }

    /// The errors of records dropped under the skip policy.
    pub fn skipped(&self) -> &[crate::error::ProcessingError] {
        &self.skipped
    }

    /// Appends a record to its topic's log; returns where it went.
    fn append(&mut self, record: OutputRecord, partition: Option<i32>) -> Result<(String, usize)> {
        let topic = record.topic.to_string();
        let count = *self
            .partitions
            .get(&topic)
            .unwrap_or(&self.default_partitions);
        let partition = match (partition.or(record.partition), &record.key) {
            (Some(p), _) if (0..count).contains(&p) => p,
            (Some(p), _) => {
                return Err(EngineError::Topics(format!(
                    "topic {topic} has {count} partitions; there is no partition {p}"
                )));
            }
            (None, Some(key)) => crate::partitioner::partition_for_key(key, count),
            (None, None) => {
                self.round_robin += 1;
                (self.round_robin % count as usize) as i32
            }
        };
        let log = self.logs.entry(topic.clone()).or_default();
        let offset = log.iter().filter(|s| s.partition == partition).count() as i64;
        log.push(Stored {
            partition,
            offset,
            record,
        });
        Ok((topic, log.len() - 1))
    }

    /// Processes the record at `index` of `topic`'s log; returns where its
    /// outputs went.
    fn process(&mut self, topic: &str, index: usize) -> Result<Vec<(String, usize)>> {
        let stored = self
            .logs
            .get(topic)
            .and_then(|log| log.get(index))
            .cloned()
            .ok_or_else(|| EngineError::Internal(format!("no record {index} in {topic}")))?;
        let sub = self.source_of[topic];
        let id = TaskId {
            subtopology: sub,
            partition: stored.partition,
        };
        let task = self
            .tasks
            .get_mut(&id)
            .ok_or_else(|| EngineError::Internal(format!("no task {id}")))?;
        let raw = RawRecord {
            topic,
            partition: stored.partition,
            offset: stored.offset,
            timestamp: stored.record.timestamp,
            key: stored.record.key.as_deref(),
            value: stored.record.value.as_deref(),
        };
        self.ctx.headers.clone_from(&stored.record.headers);
        task.process(&raw, self.wall_clock, &mut self.ctx);
        if let Some(error) = self.ctx.error.take() {
            match handle_failure(
                &self.topology,
                &raw,
                &mut self.ctx,
                error,
                &self.dead_letter_topic,
            )? {
                Handled::Skipped(error) => self.skipped.push(error),
                Handled::DeadLettered(_) => {}
            }
        }
        let outputs = std::mem::take(&mut self.ctx.outputs);
        outputs
            .into_iter()
            .map(|record| self.append(record, None))
            .collect()
    }
}
