//! Replaying an application: reset it to the earliest offset (or to a
//! time) and reprocess its input, with progress.
//!
//! [`reset`] does what Kafka Streams' application reset tool does, in one
//! call: it refuses while any instance of the application is running, sets
//! the committed offsets of the application's input topics to the chosen
//! point, deletes its internal topics (repartition topics and changelogs)
//! and its consumer group's other offsets, and wipes its local state. The
//! next start then rebuilds every table and window from the input alone.
//! Output topics are left alone: a replay appends its outputs again, as
//! the reset tool does, so consumers of outputs must tolerate repeats.
//!
//! [`replay`] resets, runs the topology until it has caught up with the
//! input as it was when the replay began (every input and repartition
//! partition consumed and committed), and stops; [`ProgressBar`] draws its
//! progress on a terminal. Replays need a real cluster: the embedded one
//! lives only inside the process that started it.
//!
//! ```no_run
//! # async fn demo(topology: engine::Topology) -> engine::Result<()> {
//! use engine::reset::{ProgressBar, ResetTo, replay};
//! use engine::{Cluster, StreamsConfig};
//!
//! let config = StreamsConfig::new("orders-app").bootstrap_servers(Some("127.0.0.1:9092"));
//! let cluster = Cluster::kafka("127.0.0.1:9092");
//! let mut bar = ProgressBar::stderr();
//! let report = replay(topology, config, cluster, "earliest".parse::<ResetTo>()?, |p| bar.draw(p)).await?;
//! bar.finish(&report);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::config::StreamsConfig;
use crate::error::{EngineError, Result};
use crate::runtime::KafkaStreams;
use crate::topology::{TopicName, Topology};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Where a reset puts the input offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The oldest record still in each partition.
    Earliest,
    /// The first record at or after this time (milliseconds since the
    /// epoch); partitions with none start at their end.
    Timestamp(i64),
}

impl std::str::FromStr for ResetTo {
    type Err = EngineError;

    /// `earliest`, or an RFC 3339 time such as `2026-01-01T08:00:00Z`.
    fn from_str(value: &str) -> Result<Self> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("earliest") {
            return Ok(Self::Earliest);
        }
        chrono::DateTime::parse_from_rfc3339(value)
            .map(|time| Self::Timestamp(time.timestamp_millis()))
            .map_err(|_| EngineError::Config {
                key: "from".into(),
                value: value.into(),
                expected: "earliest, or an RFC 3339 time such as 2026-01-01T08:00:00Z".into(),
            })
    }
}

/// What a reset did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetReport {
    /// The committed offset now set for each input partition.
    pub offsets: BTreeMap<(String, i32), i64>,
    /// The internal topics deleted (they are re-created at the next start).
    pub deleted_topics: Vec<String>,
    /// Whether a local state directory was removed.
    pub wiped_state: bool,
}

/// The internal topics of `topology` run as `application_id`: repartition
/// topics and store changelogs, sorted.
pub fn internal_topics(topology: &Topology, application_id: &str) -> Vec<String> {
    let mut topics: BTreeSet<String> = topology
        .internal_topics
        .iter()
        .map(|topic| topic.name.resolve(application_id))
        .collect();
    for specs in &topology.stores {
        for spec in specs {
            topics.insert(crate::stores::changelog_topic(application_id, &spec.name));
        }
    }
    topics.into_iter().collect()
}

fn repartition_topics(topology: &Topology, application_id: &str) -> Vec<String> {
    topology
        .internal_topics
        .iter()
        .filter(|topic| matches!(topic.name, TopicName::Repartition(_)))
        .map(|topic| topic.name.resolve(application_id))
        .collect()
}

fn refuse(message: String) -> EngineError {
    EngineError::Reset(message)
}

fn client(cluster: &Cluster, config: &StreamsConfig) -> ClientConfig {
    let mut client = cluster.client_config();
    for (key, value) in &config.client {
        client.set(key, value);
    }
    client
}

/// Resets application `config.application_id` to `to` (see the module
/// docs). Blocking. Refuses, changing nothing, while the application's
/// consumer group has members, or on the embedded cluster.
pub fn reset(
    cluster: &Cluster,
    topology: &Topology,
    config: &StreamsConfig,
    to: ResetTo,
) -> Result<ResetReport> {
    let application = config.application_id.as_str();
    if cluster.is_embedded() {
        return Err(refuse(
            "the embedded cluster lives only inside the process that runs the application; \
             replay on a Kafka cluster (set its bootstrap servers)"
                .into(),
        ));
    }
    let probe: BaseConsumer = client(cluster, config)
        .create()
        .map_err(|error| EngineError::kafka("creating a client", error))?;
    let groups = retrying(|| probe.fetch_group_list(Some(application), TIMEOUT))
        .map_err(|error| EngineError::kafka(format!("describing group {application}"), error))?;
    if let Some(group) = groups.groups().iter().find(|g| g.name() == application)
        && !group.members().is_empty()
    {
        let members: Vec<&str> = group.members().iter().map(|m| m.client_id()).collect();
        return Err(refuse(format!(
            "application {application} is running: its group has {} active member(s) ({}); \
             stop every instance, then reset",
            members.len(),
            members.join(", ")
        )));
    }

    // Where each input partition goes.
    let inputs = topology.external_source_topics();
    let counts = cluster.partition_counts(&inputs)?;
    let mut offsets = BTreeMap::new();
    for topic in &inputs {
        let partitions = *counts
            .get(topic)
            .ok_or_else(|| EngineError::Topics(format!("input topic {topic} does not exist")))?;
        for partition in 0..partitions {
            let (low, high) =
                probe
                    .fetch_watermarks(topic, partition, TIMEOUT)
                    .map_err(|error| {
                        EngineError::kafka(format!("reading offsets of {topic}/{partition}"), error)
                    })?;
            let offset = match to {
                ResetTo::Earliest => low,
                ResetTo::Timestamp(at) => {
                    let mut wanted = TopicPartitionList::new();
                    wanted
                        .add_partition_offset(topic, partition, Offset::Offset(at))
                        .map_err(|error| EngineError::kafka("building a query", error))?;
                    let found = probe.offsets_for_times(wanted, TIMEOUT).map_err(|error| {
                        EngineError::kafka(format!("finding offsets of {topic} by time"), error)
                    })?;
                    match found
                        .find_partition(topic, partition)
                        .map(|element| element.offset())
                    {
                        Some(Offset::Offset(offset)) => offset,
                        // No record at or after the time: start at the end.
                        _ => high,
                    }
                }
            };
            offsets.insert((topic.clone(), partition), offset);
        }
    }

    // Forget every committed offset (repartition topics included), then
    // set the inputs'. Deleting the group refuses if a member joined meanwhile.
    let admin: AdminClient<DefaultClientContext> = client(cluster, config)
        .create()
        .map_err(|error| EngineError::kafka("creating an admin client", error))?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let deleted = futures::executor::block_on(admin.delete_groups(&[application], &options))
            .map_err(|error| EngineError::kafka(format!("deleting group {application}"), error))?;
        let mut busy = false;
        for result in deleted {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                Err((_, RDKafkaErrorCode::NonEmptyGroup)) => {
                    return Err(refuse(format!(
                        "application {application} started while it was being reset; stop it \
                         and reset again"
                    )));
                }
                Err((_, code)) if coordinator_busy(code) && Instant::now() < deadline => {
                    busy = true;
                }
                Err((group, code)) => {
                    return Err(refuse(format!("cannot delete group {group}: {code}")));
                }
            }
        }
        if !busy {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let committer: BaseConsumer = client(cluster, config)
        .set("group.id", application)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|error| EngineError::kafka("creating a client", error))?;
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in &offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|error| EngineError::kafka("building the offsets", error))?;
    }
    if list.count() > 0 {
        retrying(|| committer.commit(&list, CommitMode::Sync))
            .map_err(|error| EngineError::kafka("committing the reset offsets", error))?;
    }

    // Internal topics go; the next start creates them empty.
    let internal = internal_topics(topology, application);
    let existing = cluster.partition_counts(&internal)?;
    let mut deleted_topics: Vec<String> = internal
        .into_iter()
        .filter(|topic| existing.contains_key(topic))
        .collect();
    deleted_topics.sort();
    if !deleted_topics.is_empty() {
        let names: Vec<&str> = deleted_topics.iter().map(String::as_str).collect();
        let results = futures::executor::block_on(admin.delete_topics(&names, &options))
            .map_err(|error| EngineError::kafka("deleting internal topics", error))?;
        for result in results {
            match result {
                Ok(topic) => info!(topic, "Deleted internal topic."),
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, code)) => {
                    return Err(refuse(format!("cannot delete topic {topic}: {code}")));
                }
            }
        }
        wait_until_gone(cluster, &deleted_topics)?;
    }

    let dir = config.application_state_dir();
    let wiped_state = dir.exists();
    if wiped_state {
        std::fs::remove_dir_all(&dir).map_err(|source| {
            EngineError::State(state::StateError::Io {
                location: dir.display().to_string(),
                source,
            })
        })?;
    }
    info!(
        application,
        partitions = offsets.len(),
        deleted = deleted_topics.len(),
        wiped_state,
        "Reset the application."
    );
    Ok(ResetReport {
        offsets,
        deleted_topics,
        wiped_state,
    })
}

/// Whether a group coordinator error only means "ask again shortly" (a
/// broker that just started is still loading its coordinator).
fn coordinator_busy(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
    )
}

/// Runs `call` again while it fails because the coordinator is busy, for
/// up to [`TIMEOUT`].
fn retrying<T>(mut call: impl FnMut() -> Result<T, KafkaError>) -> Result<T, KafkaError> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match call() {
            Err(error)
                if error.rdkafka_error_code().is_some_and(coordinator_busy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            result => return result,
        }
    }
}

/// Waits until the cluster no longer lists `topics` (deletion is
/// asynchronous; re-creating a topic still being deleted fails).
fn wait_until_gone(cluster: &Cluster, topics: &[String]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = cluster.partition_counts(topics)?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let mut names: Vec<&String> = left.keys().collect();
            names.sort();
            return Err(refuse(format!(
                "topics still listed a minute after their deletion: {names:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How far a replay has come.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Input records processed and committed.
    pub done: u64,
    /// Input records to process (from the reset point to the end offsets
    /// when the replay began).
    pub total: u64,
    /// Time since processing started.
    pub elapsed: Duration,
}

impl Progress {
    /// Records per second so far.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.done as f64 / seconds
        } else {
            0.0
        }
    }

    /// The estimated time left, once there is a rate to go by.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        (rate > 0.0)
            .then(|| Duration::from_secs_f64(self.total.saturating_sub(self.done) as f64 / rate))
    }
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The reset.
    pub reset: ResetReport,
    /// Input records reprocessed.
    pub records: u64,
    /// Time from the start of processing until it caught up.
    pub elapsed: Duration,
}

/// Resets the application (see [`reset`]), runs `topology` until it has
/// processed and committed everything up to the end offsets of its input
/// as they were when the replay began — and drained its repartition
/// topics — then stops it gracefully. `progress` is called about twice a
/// second.
pub async fn replay(
    topology: Topology,
    config: StreamsConfig,
    cluster: Cluster,
    to: ResetTo,
    mut progress: impl FnMut(&Progress) + Send,
) -> Result<ReplayReport> {
    let (topology, report, targets, monitor) = {
        let (cluster, config) = (cluster.clone(), config.clone());
        tokio::task::spawn_blocking(move || -> Result<_> {
            let report = reset(&cluster, &topology, &config, to)?;
            let monitor = Monitor::new(&cluster, &config, &topology)?;
            let targets = monitor.input_ends(&report.offsets)?;
            Ok((topology, report, targets, monitor))
        })
        .await
        .map_err(|error| EngineError::Internal(format!("the reset panicked: {error}")))??
    };
    let streams = KafkaStreams::new(topology, config, cluster)?;
    let total: u64 = targets
        .iter()
        .map(|(key, end)| end.saturating_sub(report.offsets.get(key).copied().unwrap_or(0)) as u64)
        .sum();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(streams.run(async move {
        let _ = stop_rx.await;
    }));
    let started = Instant::now();
    let monitor = std::sync::Arc::new(monitor);
    let outcome = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if running.is_finished() {
            break Err(EngineError::Internal(
                "the application stopped before the replay finished".into(),
            ));
        }
        let checking = std::sync::Arc::clone(&monitor);
        let (start, targets_now) = (report.offsets.clone(), targets.clone());
        let checked = tokio::task::spawn_blocking(move || checking.check(&start, &targets_now))
            .await
            .map_err(|error| {
                EngineError::Internal(format!("the progress probe panicked: {error}"))
            })?;
        match checked {
            Ok((done, caught_up)) => {
                progress(&Progress {
                    done,
                    total,
                    elapsed: started.elapsed(),
                });
                if caught_up {
                    break Ok(());
                }
            }
            Err(error) => warn!(%error, "Cannot read the replay's progress."),
        }
    };
    let elapsed = started.elapsed();
    let _ = stop_tx.send(());
    let stopped = running
        .await
        .map_err(|error| EngineError::Internal(format!("the application panicked: {error}")))?;
    outcome?;
    stopped?;
    Ok(ReplayReport {
        reset: report,
        records: total,
        elapsed,
    })
}

/// Reads a group's committed offsets and whether partitions have data
/// past them.
struct Monitor {
    group: BaseConsumer,
    probe: BaseConsumer,
    repartition: Vec<String>,
}

impl Monitor {
    fn new(cluster: &Cluster, config: &StreamsConfig, topology: &Topology) -> Result<Self> {
        let group: BaseConsumer = client(cluster, config)
            .set("group.id", &config.application_id)
            .set("enable.auto.commit", "false")
            // Reading committed offsets must not wait out open transactions.
            .set("isolation.level", "read_uncommitted")
            .create()
            .map_err(|error| EngineError::kafka("creating a client", error))?;
        let probe: BaseConsumer = client(cluster, config)
            .set(
                "group.id",
                format!("{}-replay-probe", config.application_id),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|error| EngineError::kafka("creating a client", error))?;
        Ok(Self {
            group,
            probe,
            repartition: repartition_topics(topology, &config.application_id),
        })
    }

    /// The end offsets of the input partitions now.
    fn input_ends(
        &self,
        inputs: &BTreeMap<(String, i32), i64>,
    ) -> Result<BTreeMap<(String, i32), i64>> {
        inputs
            .keys()
            .map(|(topic, partition)| {
                let (_, high) = self
                    .group
                    .fetch_watermarks(topic, *partition, TIMEOUT)
                    .map_err(|error| EngineError::kafka("reading end offsets", error))?;
                Ok(((topic.clone(), *partition), high))
            })
            .collect()
    }

    fn committed(&self, partitions: &[(String, i32)]) -> Result<BTreeMap<(String, i32), i64>> {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition(topic, *partition);
        }
        let committed = self
            .group
            .committed_offsets(list, TIMEOUT)
            .map_err(|error| EngineError::kafka("reading committed offsets", error))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some(((e.topic().to_owned(), e.partition()), offset)),
                _ => None,
            })
            .collect())
    }

    /// Input records committed so far, and whether everything up to the
    /// targets is processed with nothing left in the repartition topics.
    fn check(
        &self,
        start: &BTreeMap<(String, i32), i64>,
        targets: &BTreeMap<(String, i32), i64>,
    ) -> Result<(u64, bool)> {
        let inputs: Vec<(String, i32)> = targets.keys().cloned().collect();
        let committed = self.committed(&inputs)?;
        let mut done = 0u64;
        let mut behind = Vec::new();
        for (key, target) in targets {
            let from = start.get(key).copied().unwrap_or(0);
            let at = committed.get(key).copied().unwrap_or(from);
            done += at.clamp(from, *target).saturating_sub(from) as u64;
            if at < *target {
                behind.push((key.clone(), at));
            }
        }
        if !behind.is_empty() && !self.nothing_past(&behind)? {
            return Ok((done, false));
        }
        // Inputs done: every output to the repartition topics is written,
        // so their ends are final; they must be consumed too.
        let mut internal = Vec::new();
        for topic in &self.repartition {
            let partitions = self
                .group
                .fetch_metadata(Some(topic), TIMEOUT)
                .map_err(|error| EngineError::kafka(format!("reading metadata of {topic}"), error))?
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len() as i32);
            internal.extend((0..partitions).map(|p| (topic.clone(), p)));
        }
        let committed = self.committed(&internal)?;
        let mut behind = Vec::new();
        for key in internal {
            let (_, high) = self
                .group
                .fetch_watermarks(&key.0, key.1, TIMEOUT)
                .map_err(|error| EngineError::kafka("reading end offsets", error))?;
            let at = committed.get(&key).copied().unwrap_or(0);
            if at < high {
                behind.push((key, at));
            }
        }
        Ok((done, behind.is_empty() || self.nothing_past(&behind)?))
    }

    /// Whether a read-committed reader finds no record past these offsets
    /// (under exactly-once, transaction markers sit after the last record,
    /// so a committed offset can be one short of the end with nothing left
    /// to read).
    fn nothing_past(&self, positions: &[((String, i32), i64)]) -> Result<bool> {
        // End-of-partition events name only the partition: probe one
        // topic at a time.
        let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
        for ((topic, partition), offset) in positions {
            by_topic
                .entry(topic.as_str())
                .or_default()
                .push((*partition, *offset));
        }
        for (topic, partitions) in by_topic {
            let mut list = TopicPartitionList::new();
            for (partition, offset) in &partitions {
                list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(|error| EngineError::kafka("building a probe", error))?;
            }
            self.probe
                .assign(&list)
                .map_err(|error| EngineError::kafka("assigning the probe", error))?;
            let mut at_end = BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            let empty = loop {
                if at_end.len() == partitions.len() {
                    break true;
                }
                if Instant::now() >= deadline {
                    break false;
                }
                match self.probe.poll(Duration::from_millis(100)) {
                    Some(Ok(_)) => break false,
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        at_end.insert(partition);
                    }
                    Some(Err(error)) => warn!(%error, topic, "Replay probe error."),
                    None => {}
                }
            };
            let _ = self.probe.unassign();
            if !empty {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Draws a replay's progress on stderr: one redrawn line on a terminal,
/// a line every few seconds otherwise (logs, CI).
pub struct ProgressBar {
    terminal: bool,
    last_line: Option<Instant>,
}

impl ProgressBar {
    /// A progress bar on stderr.
    pub fn stderr() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
        }
    }

    /// The bar's text for `progress`, e.g.
    /// `[##########----------]  50.0%  500000/1000000 records  81234 rec/s  ETA 6s`.
    pub fn render(progress: &Progress) -> String {
        const WIDTH: usize = 30;
        let fraction = if progress.total == 0 {
            1.0
        } else {
            (progress.done as f64 / progress.total as f64).clamp(0.0, 1.0)
        };
        let filled = (fraction * WIDTH as f64).round() as usize;
        let eta = match progress.eta() {
            Some(eta) if progress.done < progress.total => format!("ETA {}s", eta.as_secs()),
            Some(_) => "ETA 0s".to_owned(),
            None => "ETA -".to_owned(),
        };
        format!(
            "[{}{}] {:5.1}%  {}/{} records  {:.0} rec/s  {}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            fraction * 100.0,
            progress.done,
            progress.total,
            progress.rate(),
            eta
        )
    }

    /// Draws `progress`.
    pub fn draw(&mut self, progress: &Progress) {
        let line = Self::render(progress);
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r{line}");
            let _ = stderr.flush();
        } else if self
            .last_line
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(5))
        {
            let _ = writeln!(stderr, "{line}");
            self.last_line = Some(Instant::now());
        }
    }

    /// Ends the bar with a summary line.
    pub fn finish(&mut self, report: &ReplayReport) {
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = writeln!(stderr);
        }
        let _ = writeln!(
            stderr,
            "Replayed {} records in {:.1}s; deleted {} internal topics.",
            report.records,
            report.elapsed.as_secs_f64(),
            report.reset.deleted_topics.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_points_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!("earliest".parse::<ResetTo>().unwrap(), ResetTo::Earliest);
        assert_eq!(
            "2026-01-01T00:00:01+00:00".parse::<ResetTo>().unwrap(),
            ResetTo::Timestamp(1_767_225_601_000)
        );
        let error = "yesterday".parse::<ResetTo>().unwrap_err().to_string();
        assert!(error.contains("RFC 3339"), "{error}");
    }

    #[test]
    fn the_bar_shows_fraction_rate_and_eta() {
        let progress = Progress {
            done: 500,
            total: 1_000,
            elapsed: Duration::from_secs(5),
        };
        let line = ProgressBar::render(&progress);
        assert!(
            line.starts_with("[###############---------------]  50.0%"),
            "{line}"
        );
        assert!(
            line.contains("500/1000 records  100 rec/s  ETA 5s"),
            "{line}"
        );
        let empty = Progress {
            done: 0,
            total: 0,
            elapsed: Duration::ZERO,
        };
        assert!(ProgressBar::render(&empty).contains("100.0%"));
    }
}
