//! A stream thread: one consumer and one producer driving the tasks of the
//! partitions the group assigns to it.
//!
//! The thread polls, processes each record to completion, hands its outputs
//! to the producer and moves on; the producer's delivery reports say which
//! outputs the broker acknowledged, and [`Progress`] turns them into offsets
//! that are safe to commit. Memory stays bounded: the producer's queue is
//! bounded and a full queue stops the thread from polling until it drains,
//! so librdkafka's bounded prefetch is the only buffer in front of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use std::path::PathBuf;

use state::{Backend, TaskState};

use super::progress::Progress;
use super::restore::{self, ChangelogRestore, Restoring};
use crate::config::StreamsConfig;
use crate::error::{EngineError, Result};
use crate::metrics::EngineMetrics;
use crate::policy::{Handled, handle_failure};
use crate::processor::Ctx;
use crate::record::{OutputRecord, RawRecord};
use crate::stores::changelog_topic;
use crate::task::{Task, TaskId};
use crate::topology::Topology;

const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const FAILURES_LOGGED_PER_INTERVAL: u32 = 10;
/// How often tasks' timers run, at most.
const TICK_INTERVAL_MS: i64 = 100;

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
/// Records processed between looks at delivery reports and the clock.
const HOUSEKEEPING_EVERY: u32 = 32;
/// Outputs held back while an exactly-once commit is under way, past which
/// processing waits for the commit instead of going on.
const MAX_HELD_OUTPUTS: usize = 100_000;
/// Changelog records one restore step reads at most, and for how long,
/// before the thread polls its consumer again (for rebalances). Larger
/// batches hold more repeated keys, which are written once; a batch keeps
/// one entry per distinct key, so at most this many (tens of MB for small
/// records) while it is applied.
const RESTORE_BATCH_RECORDS: u64 = 200_000;
const RESTORE_BATCH_TIME: Duration = Duration::from_millis(250);

/// Writes the batches of a restore step to their stores, spread over the
/// machine's cores: every task has a database of its own, so the writes of
/// different tasks do not contend, and inserting into sled is the bulk of
/// a restore's work. Each batch is written in key order, which a B-tree
/// takes more cheaply than scattered keys. On failure, returns the store's
/// name with the error.
fn apply_restore_batches(
    work: &[(Arc<dyn state::KeyValueStore>, &RestoreBatch)],
) -> Result<(), (String, state::StateError)> {
    fn write(
        (store, batch): &(Arc<dyn state::KeyValueStore>, &RestoreBatch),
    ) -> Result<(), (String, state::StateError)> {
        let mut sorted: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = batch.latest.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        store
            .write_batch(
                &mut sorted
                    .into_iter()
                    .map(|(key, value)| (key.as_slice(), value.as_deref())),
            )
            .map_err(|error| (batch.store_name.clone(), error))
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(work.len());
    if workers <= 1 {
        return work.iter().try_for_each(write);
    }
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..workers)
            .map(|first| {
                scope.spawn(move || work.iter().skip(first).step_by(workers).try_for_each(write))
            })
            .collect();
        let mut outcome = work.iter().step_by(workers).try_for_each(write);
        for helper in helpers {
            let joined = helper.join().unwrap_or_else(|_| {
                Err((
                    "(restore writer)".to_owned(),
                    state::StateError::Corrupted {
                        location: "a restore writer thread".to_owned(),
                        message: "it panicked".to_owned(),
                    },
                ))
            });
            outcome = outcome.and(joined);
        }
        outcome
    })
}

/// The changelog records of one store read in a restore step: the last
/// value (`None`: deleted) of each key, and how many records there were.
struct RestoreBatch {
    task: TaskId,
    store: usize,
    store_name: String,
    records: u64,
    latest: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

/// What a stream thread needs to run.
pub(crate) struct ThreadSetup {
    pub(crate) index: usize,
    pub(crate) topology: Arc<Topology>,
    pub(crate) config: Arc<StreamsConfig>,
    pub(crate) bootstrap: String,
    pub(crate) metrics: Option<EngineMetrics>,
    pub(crate) stop: Arc<AtomicBool>,
    /// Resolved topic name → the sub-topology reading it.
    pub(crate) source_of: HashMap<String, usize>,
    pub(crate) dead_letter_topic: Arc<str>,
    pub(crate) queries: crate::queries::Queries,
    /// Under exactly-once: the thread's transactional id.
    pub(crate) transactional_id: Option<String>,
}

/// Receives the producer's delivery reports (on this thread, inside `poll`).
struct Deliveries {
    reports: Mutex<Vec<(usize, Option<String>)>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        let error = result.as_ref().err().map(|(error, _)| error.to_string());
        lock(&self.reports).push((id, error));
    }
}

/// An assigned input partition.
struct Slot {
    topic: String,
    partition: i32,
    task: TaskId,
    progress: Progress,
    /// Records read since the last metrics publication.
    consumed: u64,
    /// Records written since the last metrics publication.
    produced: u64,
}

/// Assigned partitions by slot id. Ids are indices that are never reused
/// while the thread lives, so a late delivery report can never be credited
/// to a partition assigned after its own was revoked.
#[derive(Default)]
struct Slots {
    slots: Vec<Option<Slot>>,
    live: usize,
}

impl Slots {
    fn insert(&mut self, slot: Slot) -> usize {
        self.slots.push(Some(slot));
        self.live += 1;
        self.slots.len() - 1
    }

    fn get(&self, id: usize) -> Option<&Slot> {
        self.slots.get(id).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, id: usize) -> Option<&mut Slot> {
        self.slots.get_mut(id).and_then(Option::as_mut)
    }

    fn remove(&mut self, id: usize) -> Option<Slot> {
        let slot = self.slots.get_mut(id).and_then(Option::take);
        if slot.is_some() {
            self.live -= 1;
        }
        slot
    }

    fn iter(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| Some((id, slot.as_ref()?)))
    }

    fn values(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().flatten()
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.slots.iter_mut().flatten()
    }

    fn len(&self) -> usize {
        self.live
    }
}

/// Everything the loop and the rebalance callbacks share. Both run on the
/// stream thread, so the lock is never contended; it exists because the
/// callbacks run inside `poll`.
struct ThreadState {
    application: String,
    topology: Arc<Topology>,
    producer: BaseProducer<Deliveries>,
    source_of: HashMap<String, usize>,
    tasks: BTreeMap<TaskId, Task>,
    /// Topic → partition → slot. A thread reads a few topics, so a scan
    /// beats hashing every record's topic name.
    slot_of: Vec<(String, Vec<Option<usize>>)>,
    slots: Slots,
    /// Delivery id → the input (slot, offset) the output came from.
    in_flight: Vec<Option<(usize, i64)>>,
    free_ids: Vec<usize>,
    ctx: Ctx,
    dead_letter_topic: Arc<str>,
    fatal: Option<EngineError>,
    /// Under exactly-once: the producer cannot go on (fenced by a newer
    /// producer with the same transactional id, or a fatal error). The
    /// thread stops without committing and is built again from scratch.
    rebuild: Option<EngineError>,
    /// Transactions committed by this incarnation of the thread.
    commits: u64,
    metrics: Option<EngineMetrics>,
    drain_timeout: Duration,
    /// Failed records seen since the last commit.
    failures_logged: u32,
    /// Where tasks' local state lives, and how it is kept.
    backend: Arc<dyn Backend>,
    state_root: PathBuf,
    /// Open state of the tasks that have stores.
    task_states: BTreeMap<TaskId, Arc<dyn TaskState>>,
    /// Tasks replaying their changelogs; their input is paused meanwhile.
    restoring: BTreeMap<TaskId, Restoring>,
    /// Reads changelogs during restores (assigned, never subscribed).
    restore_consumer: BaseConsumer,
    /// Wall-clock milliseconds, refreshed at every housekeeping pass.
    now: i64,
    /// When tasks' timers last ran.
    last_tick: i64,
    /// Where hosted stores are published for interactive queries.
    queries: crate::queries::Queries,
    /// Exactly once: outputs, state changes and offsets commit together.
    exactly_once: bool,
    /// A transaction is open.
    in_transaction: bool,
    /// Something was written or processed since the last commit.
    transaction_dirty: bool,
    /// Exactly once: a commit under way while processing goes on (see
    /// [`ThreadState::begin_commit`]).
    pending_commit: Option<PendingCommit>,
    /// Outputs of records processed while a commit is under way, with
    /// their slot and input offset: they belong to the next transaction
    /// and go to the producer when it begins.
    held: Vec<(OutputRecord, usize, i64)>,
    /// A record was processed while a commit was under way, so the next
    /// transaction has something to commit even without outputs.
    processed_during_commit: bool,
    /// The last transaction was aborted: every task goes back to its last
    /// committed offsets and state (through a rejoin) before going on.
    resetting: bool,
    /// The loop must rewind every task to the last commit (set with `resetting`).
    rejoin: bool,
    /// Where a partition without a committed offset starts.
    reset_to_beginning: bool,
}

/// An exactly-once commit that has begun: the input positions it commits,
/// fixed when it began, waiting for the transaction's outputs to be
/// acknowledged.
struct PendingCommit {
    offsets: TopicPartitionList,
    /// Slot and position of each partition in `offsets`.
    committing: Vec<(usize, i64)>,
    started: Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The consumer's context: rebalances create and retire tasks.
struct StreamContext {
    state: Arc<Mutex<ThreadState>>,
    /// Consumer lag comes from librdkafka's statistics, which know the log
    /// end of every fetched partition: no request of our own, nothing that
    /// could block the processing loop.
    lag: Option<(EngineMetrics, String)>,
}

impl ClientContext for StreamContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some((metrics, application)) = &self.lag else {
            return;
        };
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                // -1 is librdkafka's internal "unassigned" partition; a
                // negative lag means unknown yet.
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    metrics
                        .consumer_lag
                        .with_label_values(&[application, topic, &partition.to_string()])
                        .set(stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for StreamContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            lock(&self.state).revoke(consumer, partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => lock(&self.state).assign(consumer, partitions),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => warn!(%error, "Rebalance failed."),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            let state = lock(&self.state);
            warn!(%error, application = state.application, "Offset commit failed.");
            if let Some(metrics) = &state.metrics {
                metrics
                    .commit_failures
                    .with_label_values(&[&state.application])
                    .inc();
            }
        }
    }
}

impl ThreadState {
    fn assign(&mut self, consumer: &BaseConsumer<StreamContext>, partitions: &TopicPartitionList) {
        for element in partitions.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let Some(&subtopology) = self.source_of.get(topic) else {
                warn!(
                    topic,
                    partition, "Assigned a partition of a topic no task reads."
                );
                continue;
            };
            let id = TaskId {
                subtopology,
                partition,
            };
            if !self.tasks.contains_key(&id) {
                let state = match self.open_state(id) {
                    Ok(state) => state,
                    Err(error) => {
                        error!(%error, task = %id, "Cannot open the task's state.");
                        self.fatal.get_or_insert(error);
                        continue;
                    }
                };
                match Task::new(&self.topology, id, &self.application, state.as_ref()) {
                    Ok(task) => {
                        info!(application = self.application, task = %id, "Created task.");
                        let restoring = self.restoring.contains_key(&id);
                        for store in &task.stores {
                            self.queries.host(
                                &store.name,
                                id.partition,
                                Arc::clone(&store.store),
                                restoring,
                            );
                        }
                        self.tasks.insert(id, task);
                    }
                    Err(error) => {
                        error!(%error, task = %id, "Cannot create task.");
                        self.fatal.get_or_insert(error);
                        continue;
                    }
                }
            }
            let slot = self.slots.insert(Slot {
                topic: topic.to_owned(),
                partition,
                task: id,
                progress: Progress::default(),
                consumed: 0,
                produced: 0,
            });
            let index = match self.slot_of.iter().position(|(t, _)| t == topic) {
                Some(index) => index,
                None => {
                    self.slot_of.push((topic.to_owned(), Vec::new()));
                    self.slot_of.len() - 1
                }
            };
            let by_partition = &mut self.slot_of[index].1;
            let index = usize::try_from(partition).unwrap_or(0);
            if by_partition.len() <= index {
                by_partition.resize(index + 1, None);
            }
            by_partition[index] = Some(slot);
            if let Some(restoring) = self.restoring.get_mut(&id) {
                restoring.inputs.push((topic.to_owned(), partition));
            }
        }
        // Tasks with changelogs to replay wait for it: pause their input.
        let mut paused = TopicPartitionList::new();
        for restoring in self.restoring.values() {
            for (topic, partition) in &restoring.inputs {
                paused.add_partition(topic, *partition);
            }
        }
        if paused.count() > 0
            && let Err(error) = consumer.pause(&paused)
        {
            error!(%error, "Cannot pause the input of restoring tasks.");
            self.fatal
                .get_or_insert(EngineError::kafka("pausing restoring tasks", error));
        }
        self.publish_restore_remaining();
        self.publish_assignment("assign");
    }

    /// Opens task `id`'s state when its sub-topology has stores, and plans
    /// the restore of every store whose changelog holds more than it does.
    fn open_state(&mut self, id: TaskId) -> Result<Option<Arc<dyn TaskState>>> {
        let specs = self
            .topology
            .stores
            .get(id.subtopology)
            .cloned()
            .unwrap_or_default();
        if specs.is_empty() {
            return Ok(None);
        }
        let dir = restore::task_dir(&self.state_root, &id);
        let (state, starts) = restore::open_task_state(self.backend.as_ref(), &dir, &specs)?;
        let mut changelogs = Vec::new();
        for (index, (spec, start)) in specs.iter().zip(starts).enumerate() {
            let topic = changelog_topic(&self.application, &spec.name);
            let (_, end) = self
                .restore_consumer
                .fetch_watermarks(&topic, id.partition, Duration::from_secs(30))
                .map_err(|error| {
                    EngineError::kafka(format!("reading the end of {topic}"), error)
                })?;
            let mut start = start;
            if start > end {
                // The changelog is shorter than the checkpoint says (it was
                // recreated): the local store cannot be trusted.
                warn!(
                    topic,
                    partition = id.partition,
                    start,
                    end,
                    "Changelog is behind the checkpoint; restoring from scratch."
                );
                state.key_value_store(&spec.name)?.clear()?;
                start = 0;
            }
            if start < end {
                changelogs.push(ChangelogRestore {
                    store: index,
                    store_name: spec.name.clone(),
                    topic,
                    partition: id.partition,
                    position: start,
                    end,
                });
            }
        }
        if !changelogs.is_empty() {
            let remaining: i64 = changelogs.iter().map(|c| c.end - c.position).sum();
            info!(task = %id, remaining, "Restoring the task's stores before it processes input.");
            self.start_restoring(&changelogs);
            self.restoring.insert(
                id,
                Restoring {
                    changelogs,
                    inputs: Vec::new(),
                    restored: 0,
                    started: Instant::now(),
                },
            );
        }
        self.task_states.insert(id, Arc::clone(&state));
        Ok(Some(state))
    }

    /// Adds changelogs to the restore consumer, each from its position.
    /// Incremental, so the fetches of other restores go on undisturbed.
    fn start_restoring(&mut self, changelogs: &[ChangelogRestore]) {
        let mut list = TopicPartitionList::new();
        for changelog in changelogs {
            if let Err(error) = list.add_partition_offset(
                &changelog.topic,
                changelog.partition,
                Offset::Offset(changelog.position),
            ) {
                warn!(%error, topic = changelog.topic, "Cannot list a changelog to restore.");
            }
        }
        if let Err(error) = self.restore_consumer.incremental_assign(&list) {
            error!(%error, "Cannot assign changelogs to the restore consumer.");
            self.fatal
                .get_or_insert(EngineError::kafka("assigning changelogs", error));
        }
    }

    /// Removes changelogs from the restore consumer.
    fn stop_restoring(&mut self, changelogs: &[ChangelogRestore]) {
        let mut list = TopicPartitionList::new();
        for changelog in changelogs {
            list.add_partition(&changelog.topic, changelog.partition);
        }
        if let Err(error) = self.restore_consumer.incremental_unassign(&list) {
            warn!(%error, "Cannot unassign changelogs from the restore consumer.");
        }
    }

    fn publish_restore_remaining(&self) {
        if let Some(metrics) = &self.metrics {
            let remaining: i64 = self.restoring.values().map(Restoring::remaining).sum();
            metrics
                .restore_remaining
                .with_label_values(&[&self.application])
                .set(remaining);
        }
    }

    /// Applies up to a batch of changelog records; resumes the input of
    /// tasks whose stores have caught up. Returns whether anything moved.
    ///
    /// A batch keeps only the last write of each key per store and hands
    /// those to the store at once ([`state::KeyValueStore::write_batch`]):
    /// the state after the batch is the same, and an update-heavy changelog
    /// (an aggregate logs every step of every key) costs one store write
    /// per key and batch instead of one per record.
    fn restore_step(&mut self, consumer: &BaseConsumer<StreamContext>) -> bool {
        let deadline = Instant::now() + RESTORE_BATCH_TIME;
        let mut applied = 0u64;
        let mut idle = false;
        let mut batches: Vec<RestoreBatch> = Vec::new();
        while applied < RESTORE_BATCH_RECORDS {
            // The clock is read every few hundred records, not per record.
            if applied % 256 == 255 && Instant::now() >= deadline {
                break;
            }
            // Wait a little for the first record, not at all for the rest.
            let wait = if applied == 0 {
                Duration::from_millis(10)
            } else {
                Duration::ZERO
            };
            let message = match self.restore_consumer.poll(wait) {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    warn!(%error, "Restore consumer error.");
                    break;
                }
                None => {
                    idle = true;
                    break;
                }
            };
            let (topic, partition, offset) =
                (message.topic(), message.partition(), message.offset());
            let Some((id, restoring)) = self.restoring.iter_mut().find(|(_, r)| {
                r.changelogs
                    .iter()
                    .any(|c| c.topic == topic && c.partition == partition)
            }) else {
                continue;
            };
            let Some(changelog) = restoring
                .changelogs
                .iter_mut()
                .find(|c| c.topic == topic && c.partition == partition)
            else {
                continue;
            };
            let batch = match batches
                .iter()
                .position(|b| b.task == *id && b.store == changelog.store)
            {
                Some(index) => &mut batches[index],
                None => {
                    batches.push(RestoreBatch {
                        task: *id,
                        store: changelog.store,
                        store_name: changelog.store_name.clone(),
                        records: 0,
                        latest: HashMap::new(),
                    });
                    let last = batches.len() - 1;
                    &mut batches[last]
                }
            };
            if let Some(key) = message.key() {
                let value = message.payload().map(<[u8]>::to_vec);
                match batch.latest.get_mut(key) {
                    Some(latest) => *latest = value,
                    None => {
                        batch.latest.insert(key.to_vec(), value);
                    }
                }
            }
            batch.records += 1;
            changelog.position = changelog.position.max(offset + 1);
            restoring.restored += 1;
            applied += 1;
        }
        let work: Vec<(Arc<dyn state::KeyValueStore>, &RestoreBatch)> = batches
            .iter()
            .filter_map(|batch| {
                let task = self.tasks.get(&batch.task)?;
                Some((Arc::clone(&task.stores.get(batch.store)?.store), batch))
            })
            .collect();
        if let Err((store, error)) = apply_restore_batches(&work) {
            error!(%error, store, "Restoring a store failed.");
            self.fatal.get_or_insert(error.into());
            return false;
        }
        // Counted per store and published once per batch, not per record.
        if let Some(metrics) = &self.metrics {
            for batch in &batches {
                metrics
                    .restored_records
                    .with_label_values(&[&self.application, &batch.store_name])
                    .inc_by(batch.records);
            }
        }
        if idle {
            // Transaction markers take offsets but are never delivered: ask
            // where the consumer really is.
            if let Ok(positions) = self.restore_consumer.position() {
                for restoring in self.restoring.values_mut() {
                    for changelog in &mut restoring.changelogs {
                        if let Some(Offset::Offset(position)) = positions
                            .find_partition(&changelog.topic, changelog.partition)
                            .map(|e| e.offset())
                        {
                            changelog.position = changelog.position.max(position);
                        }
                    }
                }
            }
        }
        let done: Vec<TaskId> = self
            .restoring
            .iter()
            .filter(|(_, r)| r.done())
            .map(|(id, _)| *id)
            .collect();
        for id in &done {
            if let Some(restoring) = self.restoring.remove(id) {
                self.stop_restoring(&restoring.changelogs);
                for changelog in &restoring.changelogs {
                    self.queries.restored(&changelog.store_name, id.partition);
                }
                let mut inputs = TopicPartitionList::new();
                for (topic, partition) in &restoring.inputs {
                    inputs.add_partition(topic, *partition);
                }
                if let Err(error) = consumer.resume(&inputs) {
                    self.fatal
                        .get_or_insert(EngineError::kafka("resuming a restored task", error));
                }
                let seconds = restoring.started.elapsed().as_secs_f64();
                info!(
                    task = %id,
                    records = restoring.restored,
                    seconds,
                    rate = (restoring.restored as f64 / seconds.max(1e-6)) as u64,
                    "Restored the task's stores; processing input."
                );
            }
        }
        if !done.is_empty() || applied > 0 {
            self.publish_restore_remaining();
        }
        applied > 0 || !done.is_empty()
    }

    /// Flushes task `id`'s state and records up to where it holds its
    /// changelogs, so the next start replays only what came after.
    fn checkpoint(&self, id: TaskId) {
        let Some(state) = self.task_states.get(&id) else {
            return;
        };
        if !self.backend.is_persistent() {
            return;
        }
        if let Err(error) = state.flush() {
            warn!(%error, task = %id, "Cannot flush the task's state; it will be rebuilt next time.");
            return;
        }
        let mut offsets = BTreeMap::new();
        let specs = self
            .topology
            .stores
            .get(id.subtopology)
            .cloned()
            .unwrap_or_default();
        for spec in &specs {
            let restoring = self.restoring.get(&id).and_then(|r| {
                r.changelogs
                    .iter()
                    .find(|c| c.store_name == spec.name)
                    .map(|c| c.position)
            });
            let offset = match restoring {
                Some(position) => position,
                None => {
                    // Every write of ours is acknowledged by now (the
                    // producer was flushed): the log end covers them all.
                    let topic = changelog_topic(&self.application, &spec.name);
                    match self.restore_consumer.fetch_watermarks(
                        &topic,
                        id.partition,
                        Duration::from_secs(10),
                    ) {
                        Ok((_, end)) => end,
                        Err(error) => {
                            warn!(%error, topic, "Cannot read a changelog's end; no checkpoint.");
                            return;
                        }
                    }
                }
            };
            offsets.insert(spec.name.clone(), offset);
        }
        let dir = restore::task_dir(&self.state_root, &id);
        match restore::write_checkpoint(&dir, &offsets) {
            Ok(()) => debug!(task = %id, ?offsets, "Checkpointed the task's state."),
            Err(error) => {
                warn!(%error, task = %id, "Cannot write a checkpoint; the state will be rebuilt next time.");
            }
        }
    }

    /// Before partitions are taken away: wait for in-flight outputs, commit
    /// what is done, then retire their tasks.
    fn revoke(&mut self, consumer: &BaseConsumer<StreamContext>, partitions: &TopicPartitionList) {
        if !self.await_outputs(self.drain_timeout) {
            warn!(
                in_flight = self.producer.in_flight_count(),
                "Outputs were still in flight when partitions were revoked."
            );
        }
        self.drain_deliveries();
        let revoked: Vec<(String, i32)> = partitions
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        if !self.resetting {
            self.commit(consumer, CommitMode::Sync, Some(&revoked));
        }
        for (topic, partition) in &revoked {
            let slot = self
                .slot_of
                .iter_mut()
                .find(|(t, _)| t == topic)
                .and_then(|(_, slots)| slots.get_mut(usize::try_from(*partition).ok()?))
                .and_then(Option::take);
            if let Some(slot) = slot.and_then(|slot| self.slots.remove(slot)) {
                debug!(
                    topic,
                    partition,
                    in_flight = slot.progress.in_flight(),
                    "Revoked partition."
                );
            }
        }
        let live: std::collections::BTreeSet<TaskId> =
            self.slots.values().map(|s| s.task).collect();
        let closing: Vec<TaskId> = self
            .tasks
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        for id in closing {
            if !self.resetting {
                self.checkpoint(id);
            }
            if let Some(restoring) = self.restoring.remove(&id) {
                self.stop_restoring(&restoring.changelogs);
            }
            self.task_states.remove(&id);
            if let Some(task) = self.tasks.remove(&id) {
                for store in &task.stores {
                    self.queries.unhost(&store.name, id.partition);
                }
            }
            info!(task = %id, "Closed task.");
        }
        self.publish_restore_remaining();
        self.publish_assignment("revoke");
    }

    fn publish_assignment(&self, kind: &str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .rebalances
                .with_label_values(&[&self.application, kind])
                .inc();
            metrics
                .assigned_partitions
                .with_label_values(&[&self.application])
                .set(self.slots.len() as i64);
        }
    }

    fn process<M: Message>(&mut self, message: &M) {
        if self.resetting || self.rebuild.is_some() {
            // Left over from before the abort: it is read again after the rejoin.
            return;
        }
        if !self.ensure_transaction() {
            return;
        }
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let slot_id = self
            .slot_of
            .iter()
            .find(|(t, _)| t == topic)
            .and_then(|(_, slots)| slots.get(usize::try_from(partition).ok()?))
            .copied()
            .flatten();
        let Some(slot_id) = slot_id else {
            warn!(
                topic,
                partition, offset, "Record from a partition this thread does not own."
            );
            return;
        };
        let Some(task_id) = self.slots.get(slot_id).map(|slot| slot.task) else {
            return;
        };
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let raw = RawRecord {
            topic,
            partition,
            offset,
            timestamp: message.timestamp().to_millis().unwrap_or(0),
            key: message.key(),
            value: message.payload(),
        };
        self.ctx.headers.clear();
        if let Some(headers) = message.headers() {
            use rdkafka::message::Headers;
            for header in headers.iter() {
                if let Some(value) = header.value {
                    self.ctx
                        .headers
                        .push((header.key.to_owned(), value.to_vec()));
                }
            }
        }
        task.process(&raw, self.now, &mut self.ctx);
        if let Some(failure) = self.ctx.error.take() {
            let policy = self
                .topology
                .node_named(&failure.operator)
                .map(|id| self.topology.policy_of(id))
                .unwrap_or(self.topology.default_policy);
            if let Some(metrics) = &self.metrics {
                metrics
                    .record_errors
                    .with_label_values(&[
                        &self.application,
                        &failure.operator,
                        failure.class.as_str(),
                        policy.as_str(),
                    ])
                    .inc();
            }
            let span = self.tasks.get(&task_id).map(|task| task.span.clone());
            let _entered = span.as_ref().map(tracing::Span::enter);
            // A burst of bad records must not flood the log: the first few
            // per commit interval are logged, the rest are summed up.
            let loud = self.failures_logged < FAILURES_LOGGED_PER_INTERVAL;
            self.failures_logged += 1;
            match handle_failure(
                &self.topology,
                &raw,
                &mut self.ctx,
                failure,
                &self.dead_letter_topic,
            ) {
                Ok(Handled::Skipped(failure)) => {
                    if loud {
                        warn!(topic, partition, offset, error = %failure, "Skipped a record that failed.");
                    }
                }
                Ok(Handled::DeadLettered(failure)) => {
                    if loud {
                        warn!(topic, partition, offset, error = %failure, "Dead-lettered a record that failed.");
                    }
                    if let Some(metrics) = &self.metrics {
                        metrics
                            .dead_letters
                            .with_label_values(&[&self.application])
                            .inc();
                    }
                }
                Err(error) => {
                    error!(topic, partition, offset, %error, "A record failed under the fail policy.");
                    // Never commit past it: a restart must read it again.
                    if let Some(slot) = self.slots.get_mut(slot_id) {
                        slot.progress.failed(offset);
                    }
                    self.fatal.get_or_insert(error);
                    return;
                }
            }
        }
        let mut outputs = std::mem::take(&mut self.ctx.outputs);
        let produced = outputs.len() as u64;
        self.mark_dirty();
        let sent = self.hand_over(&mut outputs, slot_id, offset);
        self.ctx.outputs = outputs;
        if let Some(slot) = self.slots.get_mut(slot_id) {
            slot.progress.processed(offset, sent);
            slot.consumed += 1;
            slot.produced += produced;
        }
    }

    /// Lets tasks with timers act on the passing of wall-clock time. Their
    /// outputs count against the last record of the task's first partition,
    /// so a commit still waits for them when one is due.
    fn tick_tasks(&mut self) {
        if self.now.saturating_sub(self.last_tick) < TICK_INTERVAL_MS {
            return;
        }
        self.last_tick = self.now;
        let ids: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(id, task)| task.has_ticks() && !self.restoring.contains_key(id))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            self.ctx.headers.clear();
            task.tick(self.now, &mut self.ctx);
            if let Some(failure) = self.ctx.error.take() {
                error!(task = %id, error = %failure, "A timer failed.");
                self.fatal.get_or_insert(EngineError::Processing(failure));
                return;
            }
            let anchor = self
                .slots
                .iter()
                .find(|(_, slot)| slot.task == id)
                .and_then(|(slot_id, slot)| Some((slot_id, slot.progress.last_processed()?)));
            let mut outputs = std::mem::take(&mut self.ctx.outputs);
            let Some((slot_id, offset)) = anchor else {
                continue;
            };
            if !outputs.is_empty() && !self.ensure_transaction() {
                return;
            }
            let produced = outputs.len() as u64;
            let sent = self.hand_over(&mut outputs, slot_id, offset);
            if let Some(slot) = self.slots.get_mut(slot_id) {
                slot.progress.processed(offset, sent);
                slot.produced += produced;
            }
        }
    }

    /// Notes that the open transaction has something to commit — or, while
    /// a commit is under way, that the next one will.
    fn mark_dirty(&mut self) {
        if self.pending_commit.is_some() {
            self.processed_during_commit = true;
        } else {
            self.transaction_dirty = true;
        }
    }

    /// Hands a record's outputs to the producer, or holds them while a
    /// commit is under way; empties `outputs`. Returns how many are on
    /// their way (held ones included: they are acknowledged later like the
    /// rest).
    fn hand_over(&mut self, outputs: &mut Vec<OutputRecord>, slot: usize, offset: i64) -> u32 {
        let count = u32::try_from(outputs.len()).unwrap_or(u32::MAX);
        if count == 0 {
            return 0;
        }
        // A timer's outputs, too, leave the transaction something to commit.
        self.mark_dirty();
        if self.pending_commit.is_some() {
            self.held
                .extend(outputs.drain(..).map(|output| (output, slot, offset)));
            return count;
        }
        let mut sent = 0u32;
        for output in outputs.iter() {
            if self.send(output, slot, offset) {
                sent += 1;
            }
        }
        outputs.clear();
        sent
    }

    /// Hands one output to the producer, waiting while its queue is full.
    /// Returns whether it was handed over (a refusal pins the commit).
    fn send(&mut self, output: &OutputRecord, slot: usize, offset: i64) -> bool {
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.in_flight[id] = Some((slot, offset));
                id
            }
            None => {
                self.in_flight.push(Some((slot, offset)));
                self.in_flight.len() - 1
            }
        };
        let mut record = BaseRecord::with_opaque_to(&output.topic, id).timestamp(output.timestamp);
        if let Some(partition) = output.partition {
            record = record.partition(partition);
        }
        if let Some(key) = &output.key {
            record = record.key(key);
        }
        if let Some(value) = &output.value {
            record = record.payload(value);
        }
        // librdkafka allocates (and later frees) a header list even for
        // none, which showed at 5 % of a stateful job's stream thread.
        if !output.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(output.headers.len());
            for (key, value) in &output.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            record = record.headers(headers);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return true,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // Backpressure: serve delivery reports until there is room.
                    record = returned;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) if self.exactly_once && self.producer_is_broken() => {
                    self.in_flight[id] = None;
                    self.free_ids.push(id);
                    self.request_rebuild(EngineError::kafka(
                        format!("producing to {}", output.topic),
                        error,
                    ));
                    return false;
                }
                Err((error, _)) => {
                    self.in_flight[id] = None;
                    self.free_ids.push(id);
                    error!(%error, topic = %output.topic, "The producer refused an output.");
                    if let Some(slot) = self.slots.get_mut(slot) {
                        slot.progress.failed(offset);
                    }
                    self.fatal.get_or_insert(EngineError::Delivery {
                        topic: output.topic.to_string(),
                        message: error.to_string(),
                    });
                    return false;
                }
            }
        }
    }

    /// Waits until every output handed to the producer is acknowledged, or
    /// `timeout` passes; returns whether they all were. rust-rdkafka's
    /// `flush` (which `commit_transaction` calls first) waits in whole
    /// 100 ms steps once anything is outstanding, which under exactly-once
    /// added 100 ms to every commit, half of the time between commits; this
    /// looks every millisecond.
    fn await_outputs(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.serve_deliveries();
            if self.producer.in_flight_count() == 0 {
                return true;
            }
            // A producer in a fatal state acknowledges nothing more.
            if Instant::now() >= deadline || self.producer_is_broken() {
                return false;
            }
            self.producer.poll(Duration::from_millis(1));
        }
    }

    /// Serves every delivery report librdkafka has ready. One `poll` serves
    /// a single event (one batch of reports), so a lone call per pass would
    /// let acknowledgements, and with them commits, fall far behind.
    fn serve_deliveries(&self) {
        for _ in 0..10_000 {
            let before = lock(&self.producer.context().reports).len();
            self.producer.poll(Duration::ZERO);
            if lock(&self.producer.context().reports).len() == before {
                break;
            }
        }
    }

    fn drain_deliveries(&mut self) {
        let reports = std::mem::take(&mut *lock(&self.producer.context().reports));
        for (id, failure) in reports {
            let Some((slot, offset)) = self.in_flight.get_mut(id).and_then(Option::take) else {
                continue;
            };
            self.free_ids.push(id);
            let Some(slot) = self.slots.get_mut(slot) else {
                continue;
            };
            match failure {
                None => slot.progress.acked(offset),
                Some(message) if self.exactly_once => {
                    // The transaction cannot commit now; committing it
                    // fails as abortable, and everything since the last
                    // commit is redone.
                    warn!(
                        topic = slot.topic,
                        error = message,
                        "An output failed; the transaction will abort."
                    );
                }
                Some(message) => {
                    error!(
                        topic = slot.topic,
                        partition = slot.partition,
                        offset,
                        error = message,
                        "An output was not acknowledged; its input will not be committed."
                    );
                    slot.progress.failed(offset);
                    self.fatal.get_or_insert(EngineError::Delivery {
                        topic: slot.topic.clone(),
                        message,
                    });
                }
            }
        }
    }

    /// After an abort: forgets every task and its uncommitted state, moves
    /// every assigned partition back to its committed offset, and creates
    /// the tasks again, which restore their stores from the committed
    /// changelogs (there is no checkpoint to trust).
    fn rewind(&mut self, consumer: &BaseConsumer<StreamContext>) -> Result<()> {
        let assignment = consumer
            .assignment()
            .map_err(|error| EngineError::kafka("reading the assignment", error))?;
        for (id, task) in std::mem::take(&mut self.tasks) {
            for store in &task.stores {
                self.queries.unhost(&store.name, id.partition);
            }
        }
        for (_, restoring) in std::mem::take(&mut self.restoring) {
            self.stop_restoring(&restoring.changelogs);
        }
        self.task_states.clear();
        self.slots = Slots::default();
        self.slot_of.clear();
        self.in_flight.clear();
        self.free_ids.clear();
        self.pending_commit = None;
        self.held.clear();
        let committed = consumer
            .committed_offsets(assignment.clone(), Duration::from_secs(30))
            .map_err(|error| EngineError::kafka("reading committed offsets", error))?;
        let mut positions = TopicPartitionList::new();
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(offset) => Offset::Offset(offset),
                _ if self.reset_to_beginning => Offset::Beginning,
                _ => Offset::End,
            };
            positions
                .add_partition_offset(element.topic(), element.partition(), offset)
                .map_err(|error| EngineError::kafka("listing rewind positions", error))?;
        }
        consumer
            .seek_partitions(positions, Duration::from_secs(30))
            .map_err(|error| EngineError::kafka("rewinding to committed offsets", error))?;
        self.resetting = false;
        info!(
            partitions = assignment.count(),
            "Rewound to the last commit; rebuilding tasks."
        );
        self.assign(consumer, &assignment);
        Ok(())
    }

    /// Under exactly-once, makes sure a transaction is open before anything
    /// is produced. Returns false when none can be (the thread is stopping).
    fn ensure_transaction(&mut self) -> bool {
        if !self.exactly_once || self.in_transaction {
            return true;
        }
        if self.resetting || self.fatal.is_some() || self.rebuild.is_some() {
            return false;
        }
        match self.producer.begin_transaction() {
            Ok(()) => {
                self.in_transaction = true;
                true
            }
            Err(error) => {
                self.transaction_failed(error);
                false
            }
        }
    }

    /// Commits the open transaction and waits for it: every output and
    /// changelog write since the last commit, and the position of every
    /// assigned partition, with the consumer's group metadata so a fenced
    /// zombie cannot commit. For revokes and shutdown; a commit already
    /// under way is finished first, and what it held back is covered by
    /// this one.
    fn commit_transaction(&mut self, consumer: &BaseConsumer<StreamContext>, begin_next: bool) {
        let timeout = Duration::from_secs(30);
        if let Some(pending) = self.pending_commit.take() {
            self.await_outputs(timeout);
            self.finish_commit(consumer, pending, true);
        }
        let Some(pending) = self.snapshot_commit() else {
            return;
        };
        // What is still in flight after the timeout is left to the commit,
        // which then fails and aborts.
        self.await_outputs(timeout);
        self.finish_commit(consumer, pending, begin_next);
    }

    /// Begins a commit without waiting for it: the input positions are
    /// fixed now, and the transaction commits once every output handed
    /// over so far is acknowledged ([`ThreadState::advance_commit`]).
    /// Meanwhile records go on being processed; their outputs are held
    /// back and go into the next transaction. Waiting instead left the
    /// thread idle for most of each commit (the acknowledgements of up to
    /// 100 ms of outputs): in the stateful benchmark exactly once cost
    /// 27–55 % of at-least-once's throughput that way, 9–24 % this way.
    fn begin_commit(&mut self) {
        if self.pending_commit.is_none()
            && let Some(pending) = self.snapshot_commit()
        {
            self.pending_commit = Some(pending);
        }
    }

    /// The positions a commit would commit now, or `None` when there is
    /// nothing to commit (or no transaction may commit now).
    fn snapshot_commit(&mut self) -> Option<PendingCommit> {
        if self.resetting
            || self.rebuild.is_some()
            || !self.in_transaction
            || !self.transaction_dirty
        {
            return None;
        }
        let mut offsets = TopicPartitionList::new();
        let mut committing = Vec::new();
        for (id, slot) in self.slots.iter() {
            if let Some(position) = slot.progress.position()
                && offsets
                    .add_partition_offset(&slot.topic, slot.partition, Offset::Offset(position))
                    .is_ok()
            {
                committing.push((id, position));
            }
        }
        self.processed_during_commit = false;
        Some(PendingCommit {
            offsets,
            committing,
            started: Instant::now(),
        })
    }

    /// Whether an exactly-once commit is under way.
    fn commit_pending(&self) -> bool {
        self.pending_commit.is_some()
    }

    /// Finishes the commit under way once its outputs are acknowledged (or
    /// the producer can no longer acknowledge anything), or at once when
    /// too many outputs are held back.
    fn advance_commit(&mut self, consumer: &BaseConsumer<StreamContext>) {
        if self.pending_commit.is_none() {
            return;
        }
        if self.held.len() >= MAX_HELD_OUTPUTS {
            self.await_outputs(Duration::from_secs(30));
        }
        if self.producer.in_flight_count() > 0 && !self.producer_is_broken() {
            return;
        }
        if let Some(pending) = self.pending_commit.take() {
            self.finish_commit(consumer, pending, true);
        }
    }

    /// Sends the offsets of `pending` to the transaction and commits it;
    /// then begins the next transaction (when `begin_next`, or when outputs
    /// are held back for it) and hands it the held outputs.
    fn finish_commit(
        &mut self,
        consumer: &BaseConsumer<StreamContext>,
        pending: PendingCommit,
        begin_next: bool,
    ) {
        let Some(metadata) = consumer.group_metadata() else {
            // The transaction stays open: what was held back joins it.
            warn!("No group metadata yet; the transaction commits later.");
            self.release_held();
            return;
        };
        let PendingCommit {
            offsets,
            committing,
            started,
        } = pending;
        let flushed = started.elapsed();
        let timeout = Duration::from_secs(30);
        let result = if offsets.count() > 0 {
            self.producer
                .send_offsets_to_transaction(&offsets, &metadata, timeout)
        } else {
            Ok(())
        }
        .and_then(|()| self.producer.commit_transaction(timeout));
        match result {
            Ok(()) => {
                debug!(
                    partitions = offsets.count(),
                    millis = started.elapsed().as_millis() as u64,
                    flush_millis = flushed.as_millis() as u64,
                    held = self.held.len(),
                    "Committed a transaction."
                );
                self.in_transaction = false;
                self.transaction_dirty = self.processed_during_commit;
                self.processed_during_commit = false;
                self.commits += 1;
                for (id, position) in committing {
                    if let Some(slot) = self.slots.get_mut(id) {
                        slot.progress.committed(position);
                    }
                }
                self.drain_deliveries();
                if let Some(metrics) = &self.metrics {
                    metrics
                        .commit_latency
                        .with_label_values(&[&self.application])
                        .observe(started.elapsed().as_secs_f64());
                }
                if begin_next || !self.held.is_empty() {
                    if self.ensure_transaction() {
                        self.release_held();
                    } else {
                        self.held.clear();
                    }
                }
            }
            Err(error) => {
                // The held outputs' records are read again after the rewind.
                self.held.clear();
                self.transaction_failed(error);
            }
        }
    }

    /// Hands the outputs held back during a commit to the producer, in the
    /// order they were produced.
    fn release_held(&mut self) {
        for (output, slot, offset) in std::mem::take(&mut self.held) {
            self.send(&output, slot, offset);
        }
    }

    /// An abortable transaction error aborts and rewinds every task to its
    /// last commit (outputs, state and offsets); anything else — fenced by a
    /// newer instance, a fatal producer error, an indeterminate commit, or
    /// an error that says neither — rebuilds the thread: a new producer
    /// with the same transactional id, tasks restored from their committed
    /// changelogs, input from the committed offsets.
    fn transaction_failed(&mut self, error: KafkaError) {
        let abortable = matches!(&error, KafkaError::Transaction(e) if e.txn_requires_abort());
        if !abortable {
            self.request_rebuild(EngineError::kafka("running a transaction", error));
            return;
        }
        warn!(%error, "Transaction aborted: rewinding to the last commit and rebuilding state.");
        if let Some(metrics) = &self.metrics {
            metrics
                .transaction_aborts
                .with_label_values(&[&self.application])
                .inc();
        }
        if let Err(abort) = self.producer.abort_transaction(Duration::from_secs(30)) {
            self.request_rebuild(EngineError::kafka("aborting a transaction", abort));
            return;
        }
        self.in_transaction = false;
        self.transaction_dirty = false;
        self.pending_commit = None;
        self.held.clear();
        self.drain_deliveries();
        self.resetting = true;
        self.rejoin = true;
    }

    /// Whether the producer has hit a fatal error (after which librdkafka
    /// refuses everything it is asked).
    fn producer_is_broken(&self) -> bool {
        self.producer.client().fatal_error().is_some()
    }

    /// Stops this incarnation of the thread so that it is built again; the
    /// first reason is kept.
    fn request_rebuild(&mut self, error: EngineError) {
        if self.rebuild.is_none() {
            error!(%error, "The transactional producer cannot go on; rebuilding the stream thread.");
            self.rebuild = Some(error);
        }
    }

    /// Before the thread is built again: nothing of this incarnation may be
    /// committed or vouched for. Pending outputs are purged (their
    /// transaction is aborted, or was by the fencing producer), and every
    /// task is dropped without a checkpoint, so the next incarnation wipes
    /// and restores their stores from the committed changelogs. Also stops
    /// the consumer's revoke callback from committing when it leaves.
    fn abandon(&mut self) {
        self.resetting = true;
        self.in_transaction = false;
        self.pending_commit = None;
        self.held.clear();
        self.producer
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        for (_, restoring) in std::mem::take(&mut self.restoring) {
            self.stop_restoring(&restoring.changelogs);
        }
        for (id, task) in std::mem::take(&mut self.tasks) {
            for store in &task.stores {
                self.queries.unhost(&store.name, id.partition);
            }
        }
        self.task_states.clear();
        self.slots = Slots::default();
        self.slot_of.clear();
        self.in_flight.clear();
        self.free_ids.clear();
        self.publish_restore_remaining();
    }

    /// Commits what is safe, for all partitions or only `only`.
    fn commit(
        &mut self,
        consumer: &BaseConsumer<StreamContext>,
        mode: CommitMode,
        only: Option<&[(String, i32)]>,
    ) {
        if self.exactly_once {
            match mode {
                CommitMode::Async => self.begin_commit(),
                CommitMode::Sync => self.commit_transaction(consumer, true),
            }
            return;
        }
        let mut offsets = TopicPartitionList::new();
        let mut committing = Vec::new();
        for (id, slot) in self.slots.iter() {
            if only.is_some_and(|only| {
                !only
                    .iter()
                    .any(|(t, p)| *t == slot.topic && *p == slot.partition)
            }) {
                continue;
            }
            if let Some(offset) = slot.progress.committable() {
                if let Err(error) = offsets.add_partition_offset(
                    &slot.topic,
                    slot.partition,
                    Offset::Offset(offset),
                ) {
                    warn!(%error, topic = slot.topic, "Cannot list an offset to commit.");
                    continue;
                }
                committing.push((id, offset));
            }
        }
        if committing.is_empty() {
            return;
        }
        let started = Instant::now();
        match consumer.commit(&offsets, mode) {
            Ok(()) => {
                for (id, offset) in committing {
                    if let Some(slot) = self.slots.get_mut(id) {
                        slot.progress.committed(offset);
                    }
                }
                if let Some(metrics) = &self.metrics {
                    metrics
                        .commit_latency
                        .with_label_values(&[&self.application])
                        .observe(started.elapsed().as_secs_f64());
                }
            }
            Err(error) => {
                warn!(%error, "Offset commit failed; the next commit retries.");
                if let Some(metrics) = &self.metrics {
                    metrics
                        .commit_failures
                        .with_label_values(&[&self.application])
                        .inc();
                }
            }
        }
    }

    fn publish_counts(&mut self) {
        if self.failures_logged > FAILURES_LOGGED_PER_INTERVAL {
            warn!(
                failed = self.failures_logged,
                logged = FAILURES_LOGGED_PER_INTERVAL,
                "More records failed than were logged since the last commit."
            );
        }
        self.failures_logged = 0;
        let Some(metrics) = &self.metrics else {
            // Nobody reads the counts: keep them from growing without end.
            self.ctx.take_counts();
            return;
        };
        let counts = self.ctx.take_counts();
        for (node, (records_in, records_out)) in counts.into_iter().enumerate() {
            let Some(name) = self.ctx.names.get(node) else {
                continue;
            };
            if records_in > 0 {
                metrics
                    .operator_records_in
                    .with_label_values(&[&self.application, name])
                    .inc_by(records_in);
            }
            if records_out > 0 {
                metrics
                    .operator_records_out
                    .with_label_values(&[&self.application, name])
                    .inc_by(records_out);
            }
        }
        let mut by_task: BTreeMap<TaskId, (u64, u64)> = BTreeMap::new();
        for slot in self.slots.values_mut() {
            let counts = by_task.entry(slot.task).or_default();
            counts.0 += std::mem::take(&mut slot.consumed);
            counts.1 += std::mem::take(&mut slot.produced);
        }
        for (task, (consumed, produced)) in by_task {
            let task = task.to_string();
            metrics
                .records_consumed
                .with_label_values(&[&self.application, &task])
                .inc_by(consumed);
            metrics
                .records_produced
                .with_label_values(&[&self.application, &task])
                .inc_by(produced);
        }
    }

    fn in_flight(&self) -> u64 {
        self.slots
            .values()
            .map(|slot| slot.progress.in_flight())
            .sum()
    }
}

/// How often in a row a stream thread may be rebuilt after its
/// transactional producer failed for good before the application stops:
/// a fault no new producer can fix (a setting the broker refuses, a
/// transactional id another live instance keeps taking over) must end in
/// an error, not in a loop.
pub(crate) const MAX_CONSECUTIVE_REBUILDS: u32 = 5;

/// An incarnation that committed and ran at least this long was healthy:
/// its failure starts a new count of consecutive rebuilds.
const STABLE_RUN: Duration = Duration::from_secs(30);

/// The wait before the first rebuild of a series; it doubles with each
/// further one, up to [`MAX_REBUILD_BACKOFF`].
const FIRST_REBUILD_BACKOFF: Duration = Duration::from_millis(250);
const MAX_REBUILD_BACKOFF: Duration = Duration::from_secs(10);

/// Why an incarnation of a stream thread ended early.
#[derive(Debug)]
pub(crate) enum ThreadError {
    /// Stop the application with this error.
    Fatal(EngineError),
    /// The transactional producer cannot go on: build the thread again.
    Rebuild {
        error: EngineError,
        /// Transactions this incarnation committed.
        commits: u64,
    },
}

impl From<EngineError> for ThreadError {
    fn from(error: EngineError) -> Self {
        Self::Fatal(error)
    }
}

/// Decides, after each failed incarnation of a thread, whether to build it
/// again and after how long.
#[derive(Debug, Default)]
pub(crate) struct RebuildPolicy {
    /// Failed incarnations since the last healthy one.
    consecutive: u32,
}

impl RebuildPolicy {
    /// After an incarnation that ran for `ran` and committed `commits`
    /// transactions failed: the wait before the next one, or `None` when
    /// the thread has failed too often in a row.
    pub(crate) fn after_failure(&mut self, ran: Duration, commits: u64) -> Option<Duration> {
        if commits > 0 && ran >= STABLE_RUN {
            self.consecutive = 0;
        }
        self.consecutive += 1;
        if self.consecutive > MAX_CONSECUTIVE_REBUILDS {
            return None;
        }
        let doubling = 2u32.saturating_pow(self.consecutive - 1);
        Some(
            FIRST_REBUILD_BACKOFF
                .saturating_mul(doubling)
                .min(MAX_REBUILD_BACKOFF),
        )
    }

    /// Failed incarnations since the last healthy one.
    pub(crate) fn consecutive(&self) -> u32 {
        self.consecutive
    }
}

/// Runs a stream thread until `stop` is set or it fails. Under
/// exactly-once, when its transactional producer fails for good (fenced,
/// or a fatal error), the thread is torn down without committing and built
/// again — new producer with the same transactional id, tasks restored
/// from their changelogs, input from the committed offsets — up to
/// [`MAX_CONSECUTIVE_REBUILDS`] times in a row, with a growing wait.
pub(crate) fn run(setup: ThreadSetup) -> Result<()> {
    let mut policy = RebuildPolicy::default();
    loop {
        let started = Instant::now();
        let (error, commits) = match run_once(&setup) {
            Ok(()) => return Ok(()),
            Err(ThreadError::Fatal(error)) => return Err(error),
            Err(ThreadError::Rebuild { error, commits }) => (error, commits),
        };
        let application = &setup.config.application_id;
        if setup.stop.load(Ordering::Relaxed) {
            // Nothing of the failed transaction was committed: the next
            // start redoes it.
            warn!(%error, application, thread = setup.index, "Stopping instead of rebuilding the stream thread.");
            return Ok(());
        }
        let Some(backoff) = policy.after_failure(started.elapsed(), commits) else {
            error!(%error, application, thread = setup.index, attempts = policy.consecutive(), "The stream thread keeps failing; stopping.");
            return Err(EngineError::TransactionsFailed {
                thread: setup.index,
                attempts: policy.consecutive(),
                source: Box::new(error),
            });
        };
        warn!(
            %error,
            application,
            thread = setup.index,
            attempt = policy.consecutive(),
            of = MAX_CONSECUTIVE_REBUILDS,
            backoff_ms = backoff.as_millis() as u64,
            "Rebuilding the stream thread: new producer, tasks restored from their changelogs."
        );
        if let Some(metrics) = &setup.metrics {
            metrics
                .thread_rebuilds
                .with_label_values(&[application])
                .inc();
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if setup.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(POLL_TIMEOUT.min(until.saturating_duration_since(Instant::now())));
        }
    }
}

/// One incarnation of a stream thread: its own producer, consumers and
/// tasks. On the way out it drains in-flight outputs (within the shutdown
/// timeout), commits, and leaves the group — unless it must be rebuilt,
/// in which case it commits nothing and leaves no checkpoint.
fn run_once(setup: &ThreadSetup) -> Result<(), ThreadError> {
    let ThreadSetup {
        index,
        topology,
        config,
        bootstrap,
        metrics,
        stop,
        source_of,
        dead_letter_topic,
        queries,
        transactional_id,
    } = setup;
    let index = *index;
    let application = config.application_id.clone();
    let producer: BaseProducer<Deliveries> = config
        .producer(bootstrap, index, transactional_id.as_deref())
        .create_with_context(Deliveries {
            reports: Mutex::new(Vec::new()),
        })
        .map_err(|error| EngineError::kafka("creating the producer", error))?;
    let exactly_once = transactional_id.is_some();
    if exactly_once {
        // Fences any earlier producer with this id and aborts what it left
        // open. A failure here is worth another incarnation (the broker's
        // transaction coordinator may be moving); the policy bounds them.
        if let Err(error) = producer.init_transactions(Duration::from_secs(60)) {
            return Err(ThreadError::Rebuild {
                error: EngineError::kafka("initialising transactions", error),
                commits: 0,
            });
        }
    }
    let restore_consumer: BaseConsumer = config
        .restore_consumer(bootstrap, index)
        .create()
        .map_err(|error| EngineError::kafka("creating the restore consumer", error))?;
    let state = Arc::new(Mutex::new(ThreadState {
        application: application.clone(),
        ctx: Ctx::new(topology.node_names()),
        topology: Arc::clone(topology),
        producer,
        source_of: source_of.clone(),
        tasks: BTreeMap::new(),
        slot_of: Vec::new(),
        slots: Slots::default(),
        in_flight: Vec::new(),
        free_ids: Vec::new(),
        dead_letter_topic: Arc::clone(dead_letter_topic),
        fatal: None,
        rebuild: None,
        commits: 0,
        metrics: metrics.clone(),
        drain_timeout: config.shutdown_timeout(),
        failures_logged: 0,
        backend: config.backend(),
        state_root: config.application_state_dir(),
        task_states: BTreeMap::new(),
        restoring: BTreeMap::new(),
        restore_consumer,
        now: wall_clock_ms(),
        last_tick: wall_clock_ms(),
        queries: queries.clone(),
        exactly_once,
        in_transaction: false,
        transaction_dirty: false,
        pending_commit: None,
        held: Vec::new(),
        processed_during_commit: false,
        resetting: false,
        rejoin: false,
        reset_to_beginning: config.auto_offset_reset == crate::config::OffsetReset::Earliest,
    }));
    let consumer: BaseConsumer<StreamContext> = config
        .consumer(bootstrap)
        .set(
            "statistics.interval.ms",
            if metrics.is_some() { "5000" } else { "0" },
        )
        .create_with_context(StreamContext {
            state: Arc::clone(&state),
            lag: metrics
                .clone()
                .map(|metrics| (metrics, application.clone())),
        })
        .map_err(|error| EngineError::kafka("creating the consumer", error))?;
    let mut topics: Vec<&str> = source_of.keys().map(String::as_str).collect();
    topics.sort_unstable();
    consumer
        .subscribe(&topics)
        .map_err(|error| EngineError::kafka("subscribing to the source topics", error))?;
    info!(
        application,
        thread = index,
        ?topics,
        "Stream thread started."
    );

    let commit_interval = config.commit_interval();
    let mut next_commit = Instant::now() + commit_interval;
    let mut outcome: Result<(), ThreadError> = Ok(());
    let latency = metrics
        .as_ref()
        .map(|metrics| metrics.process_latency.with_label_values(&[&application]));
    let mut busy = 0u32;
    while !stop.load(Ordering::Relaxed) {
        {
            let mut state = lock(&state);
            if std::mem::take(&mut state.rejoin)
                && let Err(error) = state.rewind(&consumer)
            {
                outcome = Err(error.into());
                break;
            }
        }
        // Restores run a batch at a time between polls, so a long restore
        // never keeps the consumer from the group.
        let (restoring, committing) = {
            let mut state = lock(&state);
            let committing = state.commit_pending();
            let restoring = if state.restoring.is_empty() {
                false
            } else {
                state.restore_step(&consumer);
                if let Some(error) = state.fatal.take() {
                    outcome = Err(error.into());
                    break;
                }
                !state.restoring.is_empty()
            };
            (restoring, committing)
        };
        // Never hold the state while polling: rebalance callbacks take it.
        // A commit under way is looked at again soon even without input.
        let polled = consumer.poll(if restoring {
            Duration::ZERO
        } else if committing {
            Duration::from_millis(1)
        } else {
            POLL_TIMEOUT
        });
        let mut state = lock(&state);
        match polled {
            Some(Ok(message)) => {
                match &latency {
                    Some(histogram) => {
                        let started = Instant::now();
                        state.process(&message);
                        histogram.observe(started.elapsed().as_secs_f64());
                    }
                    None => state.process(&message),
                }
                busy += 1;
                if state.fatal.is_some() || state.rebuild.is_some() {
                    busy = HOUSEKEEPING_EVERY;
                }
            }
            Some(Err(error)) => warn!(%error, application = state.application, "Consumer error."),
            None => busy = HOUSEKEEPING_EVERY,
        }
        // Delivery reports, failures and the clock are looked at every few
        // records while busy, and at once when idle.
        if busy < HOUSEKEEPING_EVERY {
            continue;
        }
        busy = 0;
        state.now = wall_clock_ms();
        state.tick_tasks();
        state.serve_deliveries();
        state.drain_deliveries();
        state.advance_commit(&consumer);
        if let Some(error) = state.fatal.take() {
            outcome = Err(error.into());
            break;
        }
        let now = Instant::now();
        // An exactly-once commit still under way is waited for: the next
        // one begins only after it.
        if now >= next_commit && !state.commit_pending() {
            state.commit(&consumer, CommitMode::Async, None);
            state.publish_counts();
            // From when the commit ended: a slow commit must not make the next one due at once.
            next_commit = Instant::now() + commit_interval;
        }
        if let Some(error) = state.rebuild.take() {
            outcome = Err(ThreadError::Rebuild {
                error,
                commits: state.commits,
            });
            break;
        }
    }

    if matches!(outcome, Err(ThreadError::Rebuild { .. })) {
        // Nothing to drain or commit: the transaction is lost either way.
        lock(&state).abandon();
        drop(consumer);
        info!(
            application,
            thread = index,
            "Stream thread torn down for a rebuild."
        );
        return outcome;
    }

    // Drain: every output handed over is acknowledged (or the deadline
    // passes), then commit exactly what is safe.
    {
        let mut state = lock(&state);
        if !state.await_outputs(config.shutdown_timeout()) {
            warn!(
                in_flight = state.in_flight(),
                "Shutdown deadline passed with outputs in flight."
            );
        }
        state.drain_deliveries();
        if state.exactly_once {
            if outcome.is_ok() && state.fatal.is_none() {
                state.commit_transaction(&consumer, false);
            }
        } else {
            state.commit(&consumer, CommitMode::Sync, None);
        }
        state.publish_counts();
        if outcome.is_ok() && state.fatal.is_none() && state.rebuild.is_none() {
            // Only a clean stop may vouch for the local state.
            let tasks: Vec<TaskId> = state.tasks.keys().copied().collect();
            for id in tasks {
                state.checkpoint(id);
            }
        }
        if let Some(error) = state.fatal.take() {
            outcome = outcome.and(Err(error.into()));
        }
        if let Some(error) = state.rebuild.take() {
            // The last commit failed for good while stopping: nothing of
            // it is committed, so the next start redoes it. No checkpoint
            // was written, so the stores are rebuilt then too.
            let commits = state.commits;
            state.abandon();
            outcome = outcome.and(Err(ThreadError::Rebuild { error, commits }));
        }
    }
    // Dropping the consumer leaves the group; its revoke callback finds
    // nothing left to commit.
    drop(consumer);
    info!(application, thread = index, "Stream thread stopped.");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_back_off_and_stop_after_too_many_failures_in_a_row() {
        let mut policy = RebuildPolicy::default();
        let quick = Duration::from_millis(300);
        let waits: Vec<Option<Duration>> = (0..=MAX_CONSECUTIVE_REBUILDS)
            .map(|_| policy.after_failure(quick, 3))
            .collect();
        assert_eq!(
            waits[..MAX_CONSECUTIVE_REBUILDS as usize],
            [250, 500, 1_000, 2_000, 4_000].map(|ms| Some(Duration::from_millis(ms)))
        );
        assert_eq!(waits[MAX_CONSECUTIVE_REBUILDS as usize], None);
        assert_eq!(policy.consecutive(), MAX_CONSECUTIVE_REBUILDS + 1);
    }

    #[test]
    fn a_healthy_run_starts_a_new_series_but_a_long_idle_or_short_one_does_not() {
        let mut policy = RebuildPolicy::default();
        for _ in 0..MAX_CONSECUTIVE_REBUILDS {
            assert!(policy.after_failure(Duration::from_secs(1), 10).is_some());
        }
        // Long but never committed (a fault that shows only with input):
        // still the same series.
        assert_eq!(policy.after_failure(STABLE_RUN * 2, 0), None);

        let mut policy = RebuildPolicy::default();
        for _ in 0..MAX_CONSECUTIVE_REBUILDS {
            assert!(policy.after_failure(Duration::from_secs(1), 10).is_some());
        }
        // Committed for a good while before failing: a new series.
        assert_eq!(
            policy.after_failure(STABLE_RUN, 1),
            Some(FIRST_REBUILD_BACKOFF)
        );
        assert_eq!(policy.consecutive(), 1);
    }
}
