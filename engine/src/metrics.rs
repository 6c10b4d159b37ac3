//! The engine's Prometheus metrics, registered in a registry the
//! application passes in. Hot loops count locally and publish per batch.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::error::{EngineError, Result};

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
}
