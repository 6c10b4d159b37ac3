//! The engine's Prometheus metrics, registered in a registry the
//! application passes in. Hot loops count locally and publish per batch.

use std::path::{Path, PathBuf};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::error::{EngineError, Result};
use crate::queries::Queries;

/// The engine's metric families.
#[derive(Clone)]
pub struct EngineMetrics {
    /// Records read, by application and task.
    pub records_consumed: IntCounterVec,
    /// Records written (outputs, repartitions and dead letters), by application and task.
    pub records_produced: IntCounterVec,
    /// Records into each operator, by application and operator.
    pub operator_records_in: IntCounterVec,
    /// Records out of each operator, by application and operator.
    pub operator_records_out: IntCounterVec,
    /// Records that failed, by application, operator, error class and policy.
    pub record_errors: IntCounterVec,
    /// Records written to the dead-letter topic, by application.
    pub dead_letters: IntCounterVec,
    /// Time to process one polled batch of records, by application.
    pub process_latency: HistogramVec,
    /// Time an offset commit took, by application.
    pub commit_latency: HistogramVec,
    /// Offset commits that failed, by application.
    pub commit_failures: IntCounterVec,
    /// Changelog records restored into stores, by application and store.
    pub restored_records: IntCounterVec,
    /// Changelog records still to restore, by application.
    pub restore_remaining: IntGaugeVec,
    /// Transactions aborted (exactly once), by application.
    pub transaction_aborts: IntCounterVec,
    /// Stream threads torn down and built again after their transactional
    /// producer failed for good (exactly once), by application.
    pub thread_rebuilds: IntCounterVec,
    /// Rebalances seen, by application and kind (assign, revoke).
    pub rebalances: IntCounterVec,
    /// Partitions assigned now, by application.
    pub assigned_partitions: IntGaugeVec,
    /// Records behind the log end, by application, topic and partition.
    pub consumer_lag: IntGaugeVec,
}

fn to_error(error: prometheus::Error) -> EngineError {
    EngineError::Internal(format!("registering metrics: {error}"))
}

impl EngineMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels).map_err(to_error)?;
            registry
                .register(Box::new(counter.clone()))
                .map_err(to_error)?;
            Ok::<_, EngineError>(counter)
        };
        let histogram = |name: &str, help: &str| {
            let buckets = vec![
                0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            ];
            let histogram = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets),
                &["application"],
            )
            .map_err(to_error)?;
            registry
                .register(Box::new(histogram.clone()))
                .map_err(to_error)?;
            Ok::<_, EngineError>(histogram)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let gauge = IntGaugeVec::new(Opts::new(name, help), labels).map_err(to_error)?;
            registry
                .register(Box::new(gauge.clone()))
                .map_err(to_error)?;
            Ok::<_, EngineError>(gauge)
        };
        Ok(Self {
            records_consumed: counter(
                "engine_records_consumed_total",
                "Records read from input topics.",
                &["application", "task"],
            )?,
            records_produced: counter(
                "engine_records_produced_total",
                "Records written to output, repartition and dead-letter topics.",
                &["application", "task"],
            )?,
            operator_records_in: counter(
                "engine_operator_records_in_total",
                "Records into an operator (a sink's are the records it writes).",
                &["application", "operator"],
            )?,
            operator_records_out: counter(
                "engine_operator_records_out_total",
                "Records an operator passed on.",
                &["application", "operator"],
            )?,
            record_errors: counter(
                "engine_record_errors_total",
                "Records whose decoding, processing or encoding failed.",
                &["application", "operator", "class", "policy"],
            )?,
            dead_letters: counter(
                "engine_dead_letters_total",
                "Records written to the dead-letter topic.",
                &["application"],
            )?,
            process_latency: histogram(
                "engine_process_latency_seconds",
                "Time to process one polled record, outputs handed to the producer.",
            )?,
            commit_latency: histogram(
                "engine_commit_latency_seconds",
                "Time an offset commit took.",
            )?,
            commit_failures: counter(
                "engine_commit_failures_total",
                "Offset commits that failed.",
                &["application"],
            )?,
            restored_records: counter(
                "engine_restored_records_total",
                "Changelog records restored into state stores.",
                &["application", "store"],
            )?,
            restore_remaining: gauge(
                "engine_restore_remaining_records",
                "Changelog records still to restore before tasks can process.",
                &["application"],
            )?,
            transaction_aborts: counter(
                "engine_transaction_aborts_total",
                "Transactions aborted and rewound (exactly once).",
                &["application"],
            )?,
            thread_rebuilds: counter(
                "engine_thread_rebuilds_total",
                "Stream threads rebuilt (new producer, tasks restored) after a fatal \
                 transactional error such as being fenced (exactly once).",
                &["application"],
            )?,
            rebalances: counter(
                "engine_rebalances_total",
                "Consumer group rebalances seen.",
                &["application", "kind"],
            )?,
            assigned_partitions: gauge(
                "engine_assigned_partitions",
                "Input partitions assigned to this instance.",
                &["application"],
            )?,
            consumer_lag: gauge(
                "engine_consumer_lag_records",
                "Records between the processed position and the log end.",
                &["application", "topic", "partition"],
            )?,
        })
    }

    /// Publishes `application`'s series at zero before anything happens,
    /// so dashboards show them and an alert on `increase()` sees the first
    /// dead letter, abort or failed commit (a series that appears at 1 has
    /// no increase).
    pub fn initialise(&self, application: &str, stores: &[&str]) {
        for counter in [
            &self.dead_letters,
            &self.commit_failures,
            &self.transaction_aborts,
            &self.thread_rebuilds,
        ] {
            counter.with_label_values(&[application]);
        }
        for kind in ["assign", "revoke"] {
            self.rebalances.with_label_values(&[application, kind]);
        }
        self.restore_remaining.with_label_values(&[application]);
        self.assigned_partitions.with_label_values(&[application]);
        for store in stores {
            self.restored_records
                .with_label_values(&[application, store]);
        }
    }
}

/// The size of an application's local state, measured when Prometheus
/// scrapes rather than in the processing loop: entries per store
/// (`engine_state_store_entries`) over the partitions this instance hosts,
/// and the bytes its state directory takes on disk
/// (`engine_state_disk_bytes`; sled's files can be several times the size
/// of the data).
pub struct StateMetrics {
    application: String,
    queries: Queries,
    dir: PathBuf,
    entries: IntGaugeVec,
    disk: IntGaugeVec,
}

impl StateMetrics {
    /// Registers the state gauges of `application`, whose stores `queries`
    /// knows and whose local state lives in `dir`.
    pub fn register(
        registry: &Registry,
        application: &str,
        queries: Queries,
        dir: PathBuf,
    ) -> Result<()> {
        let entries = IntGaugeVec::new(
            Opts::new(
                "engine_state_store_entries",
                "Entries in a state store, over the partitions this instance hosts.",
            ),
            &["application", "store"],
        )
        .map_err(to_error)?;
        let disk = IntGaugeVec::new(
            Opts::new(
                "engine_state_disk_bytes",
                "Bytes the application's local state directory takes on disk.",
            ),
            &["application"],
        )
        .map_err(to_error)?;
        registry
            .register(Box::new(Self {
                application: application.to_owned(),
                queries,
                dir,
                entries,
                disk,
            }))
            .map_err(to_error)
    }
}

/// The bytes of the files under `dir`; 0 when it does not exist. Files
/// that vanish while it is walked (sled rewrites its snapshots) are skipped.
fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => disk_usage(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

impl Collector for StateMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.entries
            .desc()
            .into_iter()
            .chain(self.disk.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.entries.reset();
        for (store, entries) in self.queries.store_entries() {
            self.entries
                .with_label_values(&[self.application.as_str(), store.as_str()])
                .set(i64::try_from(entries).unwrap_or(i64::MAX));
        }
        self.disk
            .with_label_values(&[self.application.as_str()])
            .set(i64::try_from(disk_usage(&self.dir)).unwrap_or(i64::MAX));
        let mut families = self.entries.collect();
        families.extend(self.disk.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(registry: &Registry) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap()
    }

    #[test]
    fn rare_events_are_exported_at_zero_before_they_happen() {
        let registry = Registry::new();
        let metrics = EngineMetrics::register(&registry).unwrap();
        assert!(!scrape(&registry).contains("engine_dead_letters_total"));
        metrics.initialise("app", &["counts"]);
        let text = scrape(&registry);
        for series in [
            r#"engine_dead_letters_total{application="app"} 0"#,
            r#"engine_commit_failures_total{application="app"} 0"#,
            r#"engine_transaction_aborts_total{application="app"} 0"#,
            r#"engine_thread_rebuilds_total{application="app"} 0"#,
            r#"engine_rebalances_total{application="app",kind="revoke"} 0"#,
            r#"engine_restored_records_total{application="app",store="counts"} 0"#,
            r#"engine_restore_remaining_records{application="app"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
    }

    #[test]
    fn the_state_directory_is_measured_at_each_scrape() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new();
        StateMetrics::register(&registry, "app", Queries::default(), dir.path().join("app"))
            .unwrap();
        // Not created yet: nothing on disk.
        assert!(scrape(&registry).contains(r#"engine_state_disk_bytes{application="app"} 0"#));
        std::fs::create_dir_all(dir.path().join("app/0_1/store")).unwrap();
        std::fs::write(dir.path().join("app/0_1/store/db"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("app/0_1/conf"), vec![0u8; 24]).unwrap();
        assert!(scrape(&registry).contains(r#"engine_state_disk_bytes{application="app"} 1024"#));
    }
}
