//! The engine's error type.

use std::fmt;

/// A `Result` whose error is an [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The topology is not valid; fix the pipeline's code.
    #[error("invalid topology: {0}")]
    Topology(String),
    /// A configuration value is not valid; fix the configuration.
    #[error("invalid configuration: {key} = {value:?}: {expected}")]
    Config {
        /// The configuration key.
        key: String,
        /// The value given.
        value: String,
        /// What was expected instead.
        expected: String,
    },
    /// The topics on the cluster do not fit the topology (missing, or
    /// co-partitioned topics with different partition counts).
    #[error("topics do not fit the topology: {0}")]
    Topics(String),
    /// Kafka reported an error.
    #[error("kafka: {context}: {source}")]
    Kafka {
        /// What the engine was doing.
        context: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A record could not be processed and its error policy is `fail`.
    #[error("processing failed: {0}")]
    Processing(#[from] ProcessingError),
    /// An output record was not acknowledged by the broker; offsets were not
    /// committed past its input, so a restart reprocesses it.
    #[error("output to {topic} was not acknowledged: {message}")]
    Delivery {
        /// The output topic.
        topic: String,
        /// Why it failed.
        message: String,
    },
    /// Under exactly-once, a stream thread's transactional producer failed
    /// for good (fenced by another producer with the same transactional id,
    /// or a fatal error) again and again, and rebuilding the thread each
    /// time did not help: a fault no new producer can fix, such as a
    /// setting the broker refuses or another live instance configured
    /// with the same `instance_id`.
    #[error(
        "stream thread {thread} failed {attempts} times in a row with a fatal transactional \
         error, rebuilding it in between; giving up. Last error: {source}"
    )]
    TransactionsFailed {
        /// The stream thread's index.
        thread: usize,
        /// Failed incarnations in a row.
        attempts: u32,
        /// The last incarnation's error.
        #[source]
        source: Box<EngineError>,
    },
    /// A key or value could not be encoded or decoded outside a topology
    /// (e.g. a record piped into the test driver).
    #[error("serde: {0}")]
    Serde(#[from] crate::serdes::SerdeError),
    /// A state store failed.
    #[error("state: {0}")]
    State(#[from] state::StateError),
    /// An application could not be reset for a replay (it is running, or
    /// the cluster cannot hold a reset).
    #[error("cannot reset the application: {0}")]
    Reset(String),
    /// The engine's embedded (in-memory) cluster failed.
    #[error("embedded cluster: {0}")]
    Embedded(String),
    /// An internal invariant failed: a bug in the engine.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// Wraps a Kafka error with what the engine was doing.
    pub fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Self::Kafka {
            context: context.into(),
            source,
        }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Kafka { source, .. } => source
                .rdkafka_error_code()
                .is_some_and(|code| matches!(code, rdkafka::types::RDKafkaErrorCode::QueueFull)),
            _ => false,
        }
    }
}

/// The class of a record-level error, used by error policies, dead-letter
/// headers and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The source's key or value serde could not decode the bytes.
    Deserialization,
    /// A sink's key or value serde could not encode a record.
    Serialization,
    /// A user function returned an error.
    Processing,
    /// A user function panicked.
    Panic,
    /// A state store could not be read or written. Not the record's fault:
    /// it always stops the application, whatever the policy.
    State,
}

impl ErrorClass {
    /// A stable, lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deserialization => "deserialization",
            Self::Serialization => "serialization",
            Self::Processing => "processing",
            Self::Panic => "panic",
            Self::State => "state",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record that could not be processed: which operator, which class, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class} error in operator {operator}: {message}")]
pub struct ProcessingError {
    /// The operator's name.
    pub operator: String,
    /// The class of error.
    pub class: ErrorClass,
    /// A human-readable description.
    pub message: String,
}
