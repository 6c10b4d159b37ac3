//! The barista: reads the pipeline's decisions from `processed_orders` in
//! consumer group `coffee-consumer-group`, claims accepted orders, brews the
//! ones whose claim was granted, and reports them brewed — all as commands
//! on `coffee_orders`, so the streams application decides every status.
//!
//! Records are dispatched to a pool of workers by order id, so one order's
//! records stay in order; each worker makes one drink at a time. A
//! partition's offset is committed only up to its lowest record not yet
//! finished, so a barista that stops mid-brew leaves that order to the
//! next one (at least once: a repeated `brewed` report is ignored by the
//! pipeline). Cancelled orders and refusals are skipped.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use chrono::Utc;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use proto::events::{self, CommandKind, OrderCommand, ProcessedOrder, Status};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::{mpsc as async_mpsc, watch};
use tracing::{Instrument, debug, error, info, info_span, warn};

/// What can stop the barista.
#[derive(Debug, thiserror::Error)]
pub enum BaristaError {
    /// A setting is invalid.
    #[error("invalid barista setting {key} = {value:?}: expected {expected}")]
    Config {
        /// The setting.
        key: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// Kafka refused a client or a subscription.
    #[error("kafka: {context}: {source}")]
    Kafka {
        /// What was being done.
        context: &'static str,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A thread could not be started or ended abnormally.
    #[error("barista thread: {0}")]
    Thread(String),
}

fn kafka(context: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> BaristaError {
    move |source| BaristaError::Kafka { context, source }
}

/// The barista's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaristaConfig {
    /// The consumer group (`KAFKA_CONSUMER_GROUP`).
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Where decisions are read (`KAFKA_PROCESSED_TOPIC`).
    #[serde(default = "default_processed_topic")]
    pub processed_topic: String,
    /// Where claims and reports are written (`KAFKA_TOPIC`).
    #[serde(default = "default_orders_topic")]
    pub orders_topic: String,
    /// Drinks made at once (`BARISTA_WORKERS`).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Brewing takes the menu's preparation time times this
    /// (`BARISTA_SPEED_FACTOR`): 1 is real time, 0.01 a hundred times faster.
    #[serde(default = "default_speed_factor")]
    pub speed_factor: f64,
    /// Records received but not finished above which the barista stops
    /// fetching until it catches up.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How often finished offsets are committed, in milliseconds.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// How long a graceful stop waits for drinks being made, in milliseconds.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// This barista's name in its claims; default `barista-<pid>@<host>`,
    /// unique per process on a host and telling containers apart (a
    /// container's host name is its own, while its pid is usually 1).
    #[serde(default)]
    pub name: Option<String>,
    /// Also count the commands on the orders topic, for metrics.
    #[serde(default = "default_true")]
    pub count_order_traffic: bool,
}

fn default_group() -> String {
    "coffee-consumer-group".into()
}
fn default_processed_topic() -> String {
    events::PROCESSED_TOPIC.into()
}
fn default_orders_topic() -> String {
    events::ORDERS_TOPIC.into()
}
fn default_workers() -> usize {
    3
}
fn default_speed_factor() -> f64 {
    1.0
}
fn default_max_in_flight() -> usize {
    1_000
}
fn default_commit_interval_ms() -> u64 {
    500
}
fn default_shutdown_timeout_ms() -> u64 {
    10_000
}
fn default_true() -> bool {
    true
}

impl Default for BaristaConfig {
    fn default() -> Self {
        Self {
            group_id: default_group(),
            processed_topic: default_processed_topic(),
            orders_topic: default_orders_topic(),
            workers: default_workers(),
            speed_factor: default_speed_factor(),
            max_in_flight: default_max_in_flight(),
            commit_interval_ms: default_commit_interval_ms(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            name: None,
            count_order_traffic: default_true(),
        }
    }
}

impl BaristaConfig {
    /// Checks every value; the error names the key, the value and what was expected.
    pub fn validate(&self) -> Result<(), BaristaError> {
        let bad = |key, value: String, expected| {
            Err(BaristaError::Config {
                key,
                value,
                expected,
            })
        };
        if !(1..=256).contains(&self.workers) {
            return bad("workers", self.workers.to_string(), "1 to 256");
        }
        if !(self.speed_factor.is_finite() && (0.0..=100.0).contains(&self.speed_factor)) {
            return bad(
                "speed_factor",
                self.speed_factor.to_string(),
                "a number from 0 to 100 (1 is real time)",
            );
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "0".into(), "at least 1");
        }
        if !(10..=60_000).contains(&self.commit_interval_ms) {
            return bad(
                "commit_interval_ms",
                self.commit_interval_ms.to_string(),
                "10 to 60000",
            );
        }
        for (key, topic) in [
            ("group_id", &self.group_id),
            ("processed_topic", &self.processed_topic),
            ("orders_topic", &self.orders_topic),
        ] {
            if topic.trim().is_empty() {
                return bad(key, topic.clone(), "a non-empty name");
            }
        }
        if let Some(name) = &self.name
            && (name.trim().is_empty()
                || name.chars().count() > MAX_NAME_CHARS
                || name.chars().any(char::is_control))
        {
            return bad(
                "name",
                name.clone(),
                "1 to 128 characters, none of them control characters",
            );
        }
        Ok(())
    }

    fn barista_name(&self) -> String {
        self.name.clone().unwrap_or_else(default_name)
    }
}

/// The longest barista name accepted: it travels in every claim.
const MAX_NAME_CHARS: usize = 128;

/// `barista-<pid>@<host>`, or `barista-<pid>` where the host has no name.
fn default_name() -> String {
    let pid = std::process::id();
    // Linux keeps the name in /proc; `HOSTNAME` is the shells' copy of it.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty() && !host.chars().any(char::is_control));
    match host {
        Some(host) => format!("barista-{pid}@{host}"),
        None => format!("barista-{pid}"),
    }
}

/// The barista's metrics.
#[derive(Clone)]
pub struct BaristaMetrics {
    processed: IntCounter,
    skipped: IntCounterVec,
    claims: IntCounter,
    preparation: Histogram,
    in_flight: IntGauge,
    queue_limit: IntGauge,
    traffic: IntCounterVec,
    commit_failures: IntCounter,
}

impl BaristaMetrics {
    /// Registers the barista's metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            processed: IntCounter::new(
                "coffee_orders_processed_total",
                "Orders the barista brewed and reported completed.",
            )?,
            skipped: IntCounterVec::new(
                Opts::new(
                    "coffee_barista_skipped_total",
                    "Decisions the barista did not act on, by reason.",
                ),
                &["reason"],
            )?,
            claims: IntCounter::new(
                "coffee_barista_claims_total",
                "Claims the barista sent for accepted orders.",
            )?,
            preparation: Histogram::with_opts(
                HistogramOpts::new(
                    "coffee_order_preparation_seconds",
                    "Time spent brewing one drink.",
                )
                .buckets(vec![
                    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0,
                ]),
            )?,
            in_flight: IntGauge::new(
                "coffee_barista_queue_depth",
                "Decisions received and not yet finished.",
            )?,
            queue_limit: IntGauge::new(
                "coffee_barista_queue_limit",
                "Decisions in flight at which the barista stops fetching.",
            )?,
            traffic: IntCounterVec::new(
                Opts::new(
                    "coffee_orders_consumed_total",
                    "Commands seen on the orders topic, by type.",
                ),
                &["type"],
            )?,
            commit_failures: IntCounter::new(
                "coffee_barista_commit_failures_total",
                "Offset commits of the barista that failed.",
            )?,
        };
        registry.register(Box::new(metrics.processed.clone()))?;
        registry.register(Box::new(metrics.skipped.clone()))?;
        registry.register(Box::new(metrics.claims.clone()))?;
        registry.register(Box::new(metrics.preparation.clone()))?;
        registry.register(Box::new(metrics.in_flight.clone()))?;
        registry.register(Box::new(metrics.queue_limit.clone()))?;
        registry.register(Box::new(metrics.traffic.clone()))?;
        registry.register(Box::new(metrics.commit_failures.clone()))?;
        Ok(metrics)
    }
}

/// One decision handed to a worker.
struct Job {
    partition: i32,
    offset: i64,
    generation: u64,
    decision: ProcessedOrder,
    request_id: Option<Vec<u8>>,
}

impl Job {
    /// The request id the order's records carry (the request that placed
    /// it), for the log; empty when there is none.
    fn request_id(&self) -> &str {
        self.request_id
            .as_deref()
            .and_then(|id| std::str::from_utf8(id).ok())
            .unwrap_or("")
    }
}

/// A worker finished a record.
struct Done {
    partition: i32,
    offset: i64,
    generation: u64,
}

/// Offsets received and not yet finished, per assigned partition.
#[derive(Default)]
struct Tracker {
    /// The last generation handed out: each partition gets a new one when
    /// it is (re)assigned, so completions of records received before a
    /// revoke are ignored, while the partitions kept go on as they were.
    generation: u64,
    partitions: HashMap<i32, PartitionProgress>,
    topic: String,
    in_flight: usize,
}

#[derive(Default)]
struct PartitionProgress {
    /// Which ownership of the partition these offsets belong to.
    generation: u64,
    pending: BTreeSet<i64>,
    /// The next offset after the highest one received.
    next: Option<i64>,
    /// The last offset committed (the next to read).
    committed: Option<i64>,
}

impl PartitionProgress {
    /// What may be committed: the lowest unfinished offset, or past the
    /// highest received when all are finished.
    fn committable(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }
}

impl Tracker {
    /// Records a received offset; returns the partition's generation.
    fn received(&mut self, partition: i32, offset: i64) -> u64 {
        if !self.partitions.contains_key(&partition) {
            self.generation += 1;
            let generation = self.generation;
            self.partitions.insert(
                partition,
                PartitionProgress {
                    generation,
                    ..PartitionProgress::default()
                },
            );
        }
        let Some(progress) = self.partitions.get_mut(&partition) else {
            return 0;
        };
        if progress.pending.insert(offset) {
            self.in_flight += 1;
        }
        progress.next = Some(progress.next.map_or(offset + 1, |n| n.max(offset + 1)));
        progress.generation
    }

    fn finished(&mut self, done: &Done) {
        if let Some(progress) = self.partitions.get_mut(&done.partition)
            && progress.generation == done.generation
            && progress.pending.remove(&done.offset)
        {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
    }

    /// The offsets to commit now (those that moved), marked committed.
    fn take_committable(&mut self, only: Option<&BTreeSet<i32>>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (partition, progress) in &mut self.partitions {
            if only.is_some_and(|only| !only.contains(partition)) {
                continue;
            }
            if let Some(offset) = progress.committable()
                && progress.committed != Some(offset)
                && list
                    .add_partition_offset(&self.topic, *partition, Offset::Offset(offset))
                    .is_ok()
            {
                progress.committed = Some(offset);
            }
        }
        list
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct BaristaContext {
    tracker: Arc<Mutex<Tracker>>,
    metrics: BaristaMetrics,
}

impl ClientContext for BaristaContext {}

impl ConsumerContext for BaristaContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Commit what is finished before the partitions go, and forget
            // the rest: the next owner starts from the lowest unfinished.
            let mut tracker = lock(&self.tracker);
            let revoked: BTreeSet<i32> = partitions
                .elements()
                .iter()
                .map(|e| e.partition())
                .collect();
            let offsets = tracker.take_committable(Some(&revoked));
            if offsets.count() > 0
                && let Err(error) = consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync)
            {
                warn!(%error, "Commit on revoke failed.");
                self.metrics.commit_failures.inc();
            }
            // Forgetting a partition retires its generation: completions
            // still on their way for it are ignored.
            for partition in &revoked {
                if let Some(progress) = tracker.partitions.remove(partition) {
                    tracker.in_flight = tracker.in_flight.saturating_sub(progress.pending.len());
                }
            }
            info!(partitions = ?revoked, "Partitions revoked.");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let assigned: Vec<i32> = partitions
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                info!(partitions = ?assigned, "Partitions assigned.");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => warn!(%error, "Rebalance failed."),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            warn!(%error, "Offset commit failed.");
            self.metrics.commit_failures.inc();
        }
    }
}

/// Runs the barista on the cluster `client` points at until `shutdown`
/// resolves; then finishes or abandons (within the shutdown timeout) the
/// drinks in progress, commits what is finished and leaves the group.
pub async fn run(
    config: BaristaConfig,
    client: ClientConfig,
    metrics: BaristaMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BaristaError> {
    config.validate()?;
    let name = config.barista_name();
    let span = info_span!("barista", barista = name);
    async move {
        let producer: FutureProducer = client
            .clone()
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            // Kafka's default (Java) partitioner: a claim lands in its
            // order's partition, where the pipeline looks for it.
            .set("partitioner", "murmur2_random")
            .create()
            .map_err(kafka("creating the producer"))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let mut workers = Vec::with_capacity(config.workers);
        let mut queues = Vec::with_capacity(config.workers);
        for index in 0..config.workers {
            let (queue_tx, queue_rx) = async_mpsc::unbounded_channel::<Job>();
            queues.push(queue_tx);
            let worker = Worker {
                name: name.clone(),
                orders_topic: config.orders_topic.clone(),
                speed_factor: config.speed_factor,
                producer: producer.clone(),
                metrics: metrics.clone(),
                done: done_tx.clone(),
                stop: stop_rx.clone(),
            };
            workers.push(tokio::spawn(
                worker.run(queue_rx).instrument(info_span!("worker", index)),
            ));
        }
        drop(done_tx);

        let traffic = if config.count_order_traffic {
            Some(spawn_traffic_counter(
                &config,
                &client,
                &metrics,
                stop_rx.clone(),
            )?)
        } else {
            None
        };

        let stopping = Arc::new(AtomicBool::new(false));
        let poller = {
            let config = config.clone();
            let metrics = metrics.clone();
            let stopping = Arc::clone(&stopping);
            let span = tracing::Span::current();
            std::thread::Builder::new()
                .name("barista-poll".into())
                .spawn(move || {
                    let _entered = span.enter();
                    poll_loop(&config, &client, &metrics, &queues, &done_rx, &stopping)
                })
                .map_err(|error| BaristaError::Thread(error.to_string()))?
        };
        info!(
            group = config.group_id,
            workers = config.workers,
            speed = config.speed_factor,
            "Barista started."
        );
        shutdown.await;
        info!("Barista stopping: finishing drinks in progress.");
        stopping.store(true, Ordering::Relaxed);
        let result = tokio::task::spawn_blocking(move || poller.join())
            .await
            .map_err(|error| BaristaError::Thread(error.to_string()))?
            .map_err(|_| BaristaError::Thread("the poll thread panicked".into()))?;
        // Drinks not finished by now are left to the next barista.
        let _ = stop_tx.send(true);
        for worker in workers {
            let _ = worker.await;
        }
        if let Some(traffic) = traffic {
            let _ = tokio::task::spawn_blocking(move || traffic.join()).await;
        }
        info!("Barista stopped.");
        result
    }
    .instrument(span)
    .await
}

fn poll_loop(
    config: &BaristaConfig,
    client: &ClientConfig,
    metrics: &BaristaMetrics,
    queues: &[async_mpsc::UnboundedSender<Job>],
    done: &mpsc::Receiver<Done>,
    stopping: &AtomicBool,
) -> Result<(), BaristaError> {
    let tracker = Arc::new(Mutex::new(Tracker {
        topic: config.processed_topic.clone(),
        ..Tracker::default()
    }));
    let context = BaristaContext {
        tracker: Arc::clone(&tracker),
        metrics: metrics.clone(),
    };
    let consumer: BaseConsumer<BaristaContext> = client
        .clone()
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create_with_context(context)
        .map_err(kafka("creating the consumer"))?;
    consumer
        .subscribe(&[&config.processed_topic])
        .map_err(kafka("subscribing"))?;
    metrics.queue_limit.set(config.max_in_flight as i64);
    let commit_interval = Duration::from_millis(config.commit_interval_ms);
    let mut last_commit = Instant::now();
    let mut paused = false;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if stopping.load(Ordering::Relaxed) && drain_deadline.is_none() {
            drain_deadline =
                Some(Instant::now() + Duration::from_millis(config.shutdown_timeout_ms));
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.pause(&assignment);
            }
        }
        // Finished records first, so commits and the in-flight count are current.
        while let Ok(finished) = done.try_recv() {
            lock(&tracker).finished(&finished);
        }
        let in_flight = lock(&tracker).in_flight;
        metrics.in_flight.set(in_flight as i64);
        if let Some(deadline) = drain_deadline {
            if in_flight == 0 || Instant::now() >= deadline {
                if in_flight > 0 {
                    warn!(in_flight, "Leaving unfinished drinks to the next barista.");
                }
                break;
            }
        } else if !paused && in_flight >= config.max_in_flight {
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.pause(&assignment);
            }
            paused = true;
            debug!(in_flight, "Pausing: too many drinks waiting.");
        } else if paused && in_flight <= config.max_in_flight / 2 {
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.resume(&assignment);
            }
            paused = false;
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let (partition, offset) = (message.partition(), message.offset());
                let generation = lock(&tracker).received(partition, offset);
                let decoded = message
                    .payload()
                    .map(serde_json::from_slice::<ProcessedOrder>);
                let request_id = message.headers().and_then(|headers| {
                    use rdkafka::message::Headers;
                    headers
                        .iter()
                        .find(|h| h.key == events::REQUEST_ID_HEADER)
                        .and_then(|h| h.value.map(<[u8]>::to_vec))
                });
                match decoded {
                    Some(Ok(decision)) => {
                        let worker = worker_for(&decision.order_id, queues.len());
                        let job = Job {
                            partition,
                            offset,
                            generation,
                            decision,
                            request_id,
                        };
                        if queues[worker].send(job).is_err() {
                            return Err(BaristaError::Thread("a worker has stopped".into()));
                        }
                    }
                    other => {
                        let problem = match other {
                            Some(Err(error)) => error.to_string(),
                            _ => "no value".into(),
                        };
                        warn!(
                            partition,
                            offset, problem, "Skipping a record that is not a decision."
                        );
                        metrics.skipped.with_label_values(&["unreadable"]).inc();
                        lock(&tracker).finished(&Done {
                            partition,
                            offset,
                            generation,
                        });
                    }
                }
            }
            Some(Err(error)) => warn!(%error, "Consumer error."),
            None => {}
        }
        if last_commit.elapsed() >= commit_interval {
            commit(
                &consumer,
                &tracker,
                rdkafka::consumer::CommitMode::Async,
                metrics,
            );
            last_commit = Instant::now();
        }
    }
    while let Ok(finished) = done.try_recv() {
        lock(&tracker).finished(&finished);
    }
    commit(
        &consumer,
        &tracker,
        rdkafka::consumer::CommitMode::Sync,
        metrics,
    );
    consumer.unsubscribe();
    Ok(())
}

fn commit(
    consumer: &BaseConsumer<BaristaContext>,
    tracker: &Mutex<Tracker>,
    mode: rdkafka::consumer::CommitMode,
    metrics: &BaristaMetrics,
) {
    let offsets = lock(tracker).take_committable(None);
    if offsets.count() == 0 {
        return;
    }
    if let Err(error) = consumer.commit(&offsets, mode) {
        warn!(%error, "Offset commit failed.");
        metrics.commit_failures.inc();
        // Try these offsets again next time.
        let mut tracker = lock(tracker);
        for element in offsets.elements() {
            if let Some(progress) = tracker.partitions.get_mut(&element.partition()) {
                progress.committed = None;
            }
        }
    }
}

/// The worker for an order: stable, so an order's records stay in order.
fn worker_for(order_id: &str, workers: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    order_id.hash(&mut hasher);
    (hasher.finish() % workers.max(1) as u64) as usize
}

struct Worker {
    name: String,
    orders_topic: String,
    speed_factor: f64,
    producer: FutureProducer,
    metrics: BaristaMetrics,
    done: mpsc::Sender<Done>,
    stop: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self, mut queue: async_mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = tokio::select! {
            job = queue.recv() => job,
            _ = self.stop.wait_for(|stop| *stop) => None,
        } {
            if self.handle(&job).await {
                let _ = self.done.send(Done {
                    partition: job.partition,
                    offset: job.offset,
                    generation: job.generation,
                });
            } else {
                // Stopped mid-drink: the record stays unfinished.
                return;
            }
        }
    }

    /// Acts on one decision; `false` when stopped before finishing it.
    async fn handle(&mut self, job: &Job) -> bool {
        let decision = &job.decision;
        let id = decision.order_id.as_str();
        if decision.refused.is_some() {
            self.metrics.skipped.with_label_values(&["refusal"]).inc();
            return true;
        }
        match decision.status {
            Status::Processing => {
                let claim =
                    OrderCommand::about(CommandKind::Claimed, id, Utc::now()).by(&self.name);
                let sent = self.send(&claim, job).await;
                if sent {
                    self.metrics.claims.inc();
                    debug!(order = id, request_id = job.request_id(), "Claimed.");
                }
                sent
            }
            Status::Brewing => {
                let brewing = Duration::from_secs_f64(
                    f64::from(decision.preparation_time) * self.speed_factor,
                );
                let started = Instant::now();
                tokio::select! {
                    () = tokio::time::sleep(brewing) => {}
                    _ = self.stop.wait_for(|stop| *stop) => return false,
                }
                self.metrics
                    .preparation
                    .observe(started.elapsed().as_secs_f64());
                let brewed =
                    OrderCommand::about(CommandKind::Brewed, id, Utc::now()).by(&self.name);
                let sent = self.send(&brewed, job).await;
                if sent {
                    self.metrics.processed.inc();
                    info!(
                        order = id,
                        drink = decision.coffee_type,
                        customer = decision.customer_name,
                        request_id = job.request_id(),
                        "Brewed."
                    );
                }
                sent
            }
            Status::Cancelled => {
                self.metrics.skipped.with_label_values(&["cancelled"]).inc();
                debug!(order = id, "Skipping a cancelled order.");
                true
            }
            Status::Pending | Status::Completed => true,
        }
    }

    /// Sends a command until Kafka acknowledges it; `false` if stopped first.
    async fn send(&mut self, command: &OrderCommand, job: &Job) -> bool {
        let Ok(payload) = serde_json::to_vec(command) else {
            error!(order = command.id, "Cannot encode a command.");
            return true;
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut headers = OwnedHeaders::new();
            if let Some(request_id) = &job.request_id {
                headers = headers.insert(Header {
                    key: events::REQUEST_ID_HEADER,
                    value: Some(request_id.as_slice()),
                });
            }
            let record = FutureRecord::to(&self.orders_topic)
                .key(command.id.as_str())
                .payload(&payload)
                .headers(headers);
            let delivery = self.producer.send(record, Duration::from_secs(30));
            tokio::select! {
                result = delivery => match result {
                    Ok(_) => return true,
                    Err((error, _)) => {
                        warn!(%error, order = command.id, kind = %command.kind, "Sending failed; retrying.");
                    }
                },
                _ = self.stop.wait_for(|stop| *stop) => return false,
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = self.stop.wait_for(|stop| *stop) => return false,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Counts the commands on the orders topic by type, in a group of its own
/// reading from the end, as the original consumer did for its metrics.
fn spawn_traffic_counter(
    config: &BaristaConfig,
    client: &ClientConfig,
    metrics: &BaristaMetrics,
    stop: watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<()>, BaristaError> {
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", format!("{}-traffic", config.group_id))
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "latest")
        .create()
        .map_err(kafka("creating the traffic consumer"))?;
    consumer
        .subscribe(&[&config.orders_topic])
        .map_err(kafka("subscribing the traffic consumer"))?;
    let traffic = metrics.traffic.clone();
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("barista-traffic".into())
        .spawn(move || {
            let _entered = span.enter();
            let mut counts: HashMap<CommandKind, u64> = HashMap::new();
            let mut unreadable = 0u64;
            let mut last_flush = Instant::now();
            while !*stop.borrow() {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    match message
                        .payload()
                        .map(serde_json::from_slice::<OrderCommand>)
                    {
                        Some(Ok(command)) => *counts.entry(command.kind).or_insert(0) += 1,
                        _ => unreadable += 1,
                    }
                }
                // Count per batch, not per record.
                if last_flush.elapsed() >= Duration::from_millis(200) {
                    for (kind, count) in std::mem::take(&mut counts) {
                        traffic.with_label_values(&[kind.as_str()]).inc_by(count);
                    }
                    traffic
                        .with_label_values(&["unreadable"])
                        .inc_by(std::mem::take(&mut unreadable));
                    last_flush = Instant::now();
                }
            }
            for (kind, count) in counts {
                traffic.with_label_values(&[kind.as_str()]).inc_by(count);
            }
            consumer.unsubscribe();
        })
        .map_err(|error| BaristaError::Thread(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_stop_at_the_lowest_unfinished_offset() {
        let mut tracker = Tracker {
            topic: "processed_orders".into(),
            ..Tracker::default()
        };
        let mut generation = 0;
        for offset in 10..15 {
            generation = tracker.received(0, offset);
        }
        let done = |offset| Done {
            partition: 0,
            offset,
            generation,
        };
        tracker.finished(&done(10));
        tracker.finished(&done(12));
        let committed = |list: TopicPartitionList| {
            list.elements()
                .iter()
                .map(|e| (e.partition(), e.offset()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            committed(tracker.take_committable(None)),
            [(0, Offset::Offset(11))]
        );
        // Nothing moved: nothing to commit.
        assert!(committed(tracker.take_committable(None)).is_empty());
        for offset in [11, 13, 14] {
            tracker.finished(&done(offset));
        }
        assert_eq!(
            committed(tracker.take_committable(None)),
            [(0, Offset::Offset(15))]
        );
        assert_eq!(tracker.in_flight, 0);
    }

    #[test]
    fn completions_from_before_a_revoke_are_ignored_and_kept_partitions_go_on() {
        let mut tracker = Tracker::default();
        let kept = tracker.received(0, 7);
        let before = tracker.received(1, 5);
        // Partition 1 is revoked, then assigned again and re-read.
        tracker.partitions.remove(&1);
        tracker.in_flight -= 1;
        let after = tracker.received(1, 5);
        assert_ne!(before, after);
        let done = |partition, offset, generation| Done {
            partition,
            offset,
            generation,
        };
        // The first owner's completion is stale…
        tracker.finished(&done(1, 5, before));
        assert_eq!(tracker.in_flight, 2);
        // …while the kept partition's and the new owner's count.
        tracker.finished(&done(0, 7, kept));
        tracker.finished(&done(1, 5, after));
        assert_eq!(tracker.in_flight, 0);
    }

    #[test]
    fn an_order_always_goes_to_the_same_worker() {
        assert_eq!(worker_for("o-1", 3), worker_for("o-1", 3));
        let used: BTreeSet<usize> = (0..100).map(|i| worker_for(&format!("o-{i}"), 3)).collect();
        assert_eq!(used.len(), 3);
    }

    #[test]
    fn the_default_name_tells_processes_and_hosts_apart() {
        let name = BaristaConfig::default().barista_name();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(
            name,
            format!("barista-{}@{}", std::process::id(), host.trim())
        );
        let named = BaristaConfig {
            name: Some("barista-a".into()),
            ..BaristaConfig::default()
        };
        assert_eq!(named.barista_name(), "barista-a");
    }

    #[test]
    fn a_blank_long_or_control_name_is_refused() {
        for name in ["  ", &"b".repeat(129), "bar\nista"] {
            let config = BaristaConfig {
                name: Some(name.to_owned()),
                ..BaristaConfig::default()
            };
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("name"), "{error}");
        }
        let config = BaristaConfig {
            name: Some("b".repeat(128)),
            ..BaristaConfig::default()
        };
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_settings_name_the_key() {
        let config = BaristaConfig {
            speed_factor: -1.0,
            ..BaristaConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("speed_factor")
        );
        let config = BaristaConfig {
            workers: 0,
            ..BaristaConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("workers")
        );
    }
}
