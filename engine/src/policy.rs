//! What happens to a record that fails: error policies and dead letters.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{EngineError, ProcessingError};
use crate::processor::Ctx;
use crate::record::{OutputRecord, RawRecord};
use crate::topology::Topology;

/// What to do with a record whose decoding, processing or encoding fails.
///
/// Set for a whole topology with
/// [`StreamsBuilder::default_error_policy`](crate::StreamsBuilder::default_error_policy)
/// and for one operator with [`Stream::on_error`](crate::Stream::on_error).
/// Whatever the policy, a failing record never loops and never blocks the
/// records behind it: it is either dropped, set aside, or stops the
/// application before its offset is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// Stop the application with the error; the record's offset is not
    /// committed, so it is read again after a restart.
    Fail,
    /// Drop the record, count it, log it, and go on.
    Skip,
    /// Write the original key and value bytes to the dead-letter topic with
    /// headers saying where they came from and why they failed, and go on.
    #[default]
    DeadLetter,
}

impl ErrorPolicy {
    /// A stable, lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Skip => "skip",
            Self::DeadLetter => "dead-letter",
        }
    }
}

impl std::str::FromStr for ErrorPolicy {
    type Err = EngineError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "fail" => Ok(Self::Fail),
            "skip" => Ok(Self::Skip),
            "dead-letter" | "dead_letter" | "dlq" => Ok(Self::DeadLetter),
            other => Err(EngineError::Config {
                key: "error_policy".into(),
                value: other.into(),
                expected: "one of fail, skip, dead-letter".into(),
            }),
        }
    }
}

/// Header names on dead-lettered records.
pub mod headers {
    /// The topic the record was read from.
    pub const TOPIC: &str = "dead-letter.topic";
    /// Its partition, as decimal text.
    pub const PARTITION: &str = "dead-letter.partition";
    /// Its offset, as decimal text.
    pub const OFFSET: &str = "dead-letter.offset";
    /// The operator that failed.
    pub const OPERATOR: &str = "dead-letter.operator";
    /// The error class: deserialization, serialization, processing or panic.
    pub const ERROR_CLASS: &str = "dead-letter.error.class";
    /// The error message.
    pub const ERROR_MESSAGE: &str = "dead-letter.error.message";
    /// When it was dead-lettered, in milliseconds since the epoch, as decimal text.
    pub const TIMESTAMP: &str = "dead-letter.timestamp";
}

/// How a failed record was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Handled {
    Skipped(ProcessingError),
    DeadLettered(ProcessingError),
}

/// Applies the failing operator's policy to the input whose processing left
/// an error in `ctx`: its partial outputs are discarded, and a dead letter
/// may take their place.
pub(crate) fn handle_failure(
    topology: &Topology,
    raw: &RawRecord<'_>,
    ctx: &mut Ctx,
    error: ProcessingError,
    dead_letter_topic: &Arc<str>,
) -> Result<Handled, EngineError> {
    ctx.outputs.clear();
    ctx.pending.clear();
    if error.class == crate::error::ErrorClass::State {
        return Err(EngineError::Processing(error));
    }
    let policy = topology
        .node_named(&error.operator)
        .map(|id| topology.policy_of(id))
        .unwrap_or(topology.default_policy);
    match policy {
        ErrorPolicy::Fail => Err(EngineError::Processing(error)),
        ErrorPolicy::Skip => Ok(Handled::Skipped(error)),
        ErrorPolicy::DeadLetter => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            ctx.outputs.push(OutputRecord {
                topic: Arc::clone(dead_letter_topic),
                partition: None,
                key: raw.key.map(<[u8]>::to_vec),
                value: raw.value.map(<[u8]>::to_vec),
                timestamp: raw.timestamp,
                // The record's own headers first (a request id, say), then
                // where it came from and why it failed.
                headers: std::mem::take(&mut ctx.headers)
                    .into_iter()
                    .chain([
                        (headers::TOPIC.into(), raw.topic.as_bytes().to_vec()),
                        (
                            headers::PARTITION.into(),
                            raw.partition.to_string().into_bytes(),
                        ),
                        (headers::OFFSET.into(), raw.offset.to_string().into_bytes()),
                        (
                            headers::OPERATOR.into(),
                            error.operator.clone().into_bytes(),
                        ),
                        (
                            headers::ERROR_CLASS.into(),
                            error.class.as_str().as_bytes().to_vec(),
                        ),
                        (
                            headers::ERROR_MESSAGE.into(),
                            error.message.clone().into_bytes(),
                        ),
                        (headers::TIMESTAMP.into(), now.to_string().into_bytes()),
                    ])
                    .collect(),
            });
            Ok(Handled::DeadLettered(error))
        }
    }
}
