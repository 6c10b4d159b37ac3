//! Writing commands to Kafka, with a bounded wait and load shedding.
//!
//! Built on rdkafka's `ThreadedProducer` (one librdkafka client, one thread
//! polling delivery reports) with a one-shot channel per record as its
//! delivery opaque, so every HTTP request awaits its own acknowledgement
//! while thousands are in flight. rdkafka's `FutureProducer` does the same
//! but sleeps 100 ms and retries when librdkafka's queue is full; here a
//! full queue is answered at once with `overloaded` (429), so the service
//! sheds load instead of stalling.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::{FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use tokio::sync::oneshot;

use crate::error::{ApiError, ErrorKind};
use crate::metrics::KafkaMetrics;

/// What a client is told when a write's fate is unknown.
const UNKNOWN_OUTCOME: &str = "whether it was written is unknown; retry with the same \
                               Idempotency-Key to place it exactly once";

/// Routes librdkafka's logs and errors to `tracing` and hands each
/// delivery report to the request waiting for it.
struct WriterContext;

impl ClientContext for WriterContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(facility, message, "librdkafka."),
            RDKafkaLogLevel::Warning => tracing::warn!(facility, message, "librdkafka."),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility, message, "librdkafka.");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility, message, "librdkafka."),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error.");
    }
}

impl ProducerContext for WriterContext {
    type DeliveryOpaque = Box<oneshot::Sender<Result<(), KafkaError>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiter: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error.clone()),
        };
        // The request may have given up waiting; nothing to do then.
        let _ = waiter.send(outcome);
    }
}

/// A Kafka writer for one topic.
pub(crate) struct OrderWriter {
    /// `None` only for the HTTP-ceiling benchmark, which acknowledges
    /// without writing.
    producer: Option<ThreadedProducer<WriterContext>>,
    topic: String,
    /// librdkafka's `message.timeout.ms`; the wait for a report adds a
    /// little on top, so librdkafka's own verdict normally arrives first.
    timeout: Duration,
    metrics: KafkaMetrics,
}

impl OrderWriter {
    /// A writer with `config` (bootstrap, acks, idempotence, timeouts) to `topic`.
    pub(crate) fn new(
        config: &ClientConfig,
        topic: &str,
        timeout: Duration,
        metrics: KafkaMetrics,
    ) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: Some(ThreadedProducer::from_config_and_context(
                config,
                WriterContext,
            )?),
            topic: topic.to_owned(),
            timeout,
            metrics,
        })
    }

    /// A writer that acknowledges every record at once and writes nothing:
    /// the HTTP ceiling of the ingest benchmark.
    #[cfg(feature = "http-ceiling")]
    pub(crate) fn discarding(metrics: KafkaMetrics) -> Self {
        Self {
            producer: None,
            topic: String::new(),
            timeout: Duration::from_secs(1),
            metrics,
        }
    }

    /// Writes `value` keyed by `key` with the request id in a header, and
    /// waits until Kafka acknowledged it.
    ///
    /// A full librdkafka queue is `overloaded` at once; a write not
    /// acknowledged within the timeout is `kafka_unavailable`, telling the
    /// client the outcome is unknown (a timed-out record may still have
    /// been written).
    pub(crate) async fn write(
        &self,
        key: &str,
        value: &[u8],
        request_id: &str,
    ) -> Result<(), ApiError> {
        let Some(producer) = &self.producer else {
            self.metrics.sent.inc();
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: proto::events::REQUEST_ID_HEADER,
            value: Some(request_id),
        });
        let record = BaseRecord::with_opaque_to(&self.topic, Box::new(tx))
            .key(key)
            .payload(value)
            .headers(headers);
        if let Err((error, _record)) = producer.send(record) {
            return Err(self.refused(error, key));
        }
        let grace = Duration::from_millis(500);
        match tokio::time::timeout(self.timeout + grace, rx).await {
            Ok(Ok(Ok(()))) => {
                self.metrics.sent.inc();
                Ok(())
            }
            Ok(Ok(Err(error))) => Err(self.failed(error, key)),
            Ok(Err(_dropped)) => {
                // The producer is gone: the service is shutting down.
                self.metrics.failed.with_label_values(&["error"]).inc();
                Err(ApiError::new(
                    ErrorKind::KafkaUnavailable,
                    format!("the service is shutting down; {UNKNOWN_OUTCOME}"),
                ))
            }
            Err(_elapsed) => {
                self.metrics.failed.with_label_values(&["timeout"]).inc();
                tracing::warn!(key, topic = %self.topic, "Kafka did not report on a write in time.");
                Err(self.timed_out())
            }
        }
    }

    fn refused(&self, error: KafkaError, key: &str) -> ApiError {
        if error == KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) {
            self.metrics.failed.with_label_values(&["queue_full"]).inc();
            tracing::debug!(key, "Kafka send queue full; shedding load.");
            return ApiError::new(
                ErrorKind::Overloaded,
                "too many orders in flight to Kafka; nothing was written, retry shortly",
            );
        }
        self.metrics.failed.with_label_values(&["error"]).inc();
        tracing::error!(%error, key, topic = %self.topic, "Kafka refused a write.");
        ApiError::new(
            ErrorKind::KafkaUnavailable,
            "Kafka refused the write; nothing was written, retry later",
        )
    }

    fn failed(&self, error: KafkaError, key: &str) -> ApiError {
        let timed_out = error == KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        self.metrics
            .failed
            .with_label_values(&[if timed_out { "timeout" } else { "error" }])
            .inc();
        tracing::warn!(%error, key, topic = %self.topic, "Kafka write failed.");
        if timed_out {
            self.timed_out()
        } else {
            ApiError::new(
                ErrorKind::KafkaUnavailable,
                format!("Kafka did not accept the write; {UNKNOWN_OUTCOME}"),
            )
        }
    }

    fn timed_out(&self) -> ApiError {
        ApiError::new(
            ErrorKind::KafkaUnavailable,
            format!(
                "Kafka did not acknowledge the write within {} ms; {UNKNOWN_OUTCOME}",
                self.timeout.as_millis()
            ),
        )
    }

    /// Waits up to `timeout` for records in flight to be delivered.
    pub(crate) fn flush(&self, timeout: Duration) {
        if let Some(Err(error)) = self
            .producer
            .as_ref()
            .map(|producer| producer.flush(Timeout::After(timeout)))
        {
            tracing::warn!(%error, "Kafka records still in flight at shutdown.");
        }
    }
}
